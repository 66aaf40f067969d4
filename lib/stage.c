#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "metrics.h"
#include "stage.h"

volatile sig_atomic_t sg_stop = 0;
volatile sig_atomic_t sg_reload = 0;

/* When the first stop signal came (monotonic ms), 0 before. */
static int64_t stop_at;
/* The watchdog's last words, written from a signal handler. */
static char watchdog_msg[160];
static size_t watchdog_len;

/* Redis starts as "not used" (sg-ctl, tests); sg_stage_init marks it
 * needed for every stage but ingest, before /readyz is served. */
static int ready[SG_READY__CNT] = {0, 0, -1, 1};
static sg_http_t *http;

void sg_ready_set(sg_ready_t what, int value)
{
        __atomic_store_n(&ready[what], value, __ATOMIC_RELAXED);
}

void sg_ready_add(sg_ready_t what, int delta)
{
        __atomic_add_fetch(&ready[what], delta, __ATOMIC_RELAXED);
}

int sg_ready_get(sg_ready_t what)
{
        return __atomic_load_n(&ready[what], __ATOMIC_RELAXED);
}

int sg_stage_ready(char *why, size_t size)
{
        int n = 0;

        why[0] = '\0';
#define MISSING(cond, text)                                                    \
        do {                                                                   \
                if ((cond) && (size_t)n < size)                                \
                        n += snprintf(why + n, size - n, "%s%s",               \
                                      n ? "; " : "", text);                    \
        } while (0)
        MISSING(!sg_ready_get(SG_READY_BROKER), "broker not reachable");
        MISSING(sg_ready_get(SG_READY_ASSIGNED) <= 0, "no partitions assigned");
        MISSING(sg_ready_get(SG_READY_REDIS) == 0, "redis not connected");
        MISSING(sg_ready_get(SG_READY_REDIS_DATA) == 0, "redis data lost");
#undef MISSING
        return n == 0;
}

int sg_stage_default_port(const char *stage)
{
        static const struct {
                const char *stage;
                int port;
        } ports[] = {{"ingest", 9731},
                     {"aggregate", 9732},
                     {"rules", 9733},
                     {"sink", 9734}};

        for (size_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++)
                if (strcmp(ports[i].stage, stage) == 0)
                        return ports[i].port;
        return 0;
}

static void http_stop(void)
{
        sg_http_destroy(http);
        http = NULL;
}

int sg_stage_serve(const char *stage, const char *listen, char *errstr,
                   size_t errstr_size)
{
        char host[256], why[300];
        int port, rc;

        rc = sg_http_parse_listen(listen, sg_stage_default_port(stage), host,
                                  sizeof(host), &port, why, sizeof(why));
        if (rc == 1)
                return 0;
        if (rc == -1) {
                snprintf(errstr, errstr_size, "metrics.listen: %s", why);
                return -1;
        }
        if (http) {
                snprintf(errstr, errstr_size,
                         "metrics.listen: already serving");
                return -1;
        }
        http = sg_http_new(host, port, sg_stage_ready, why, sizeof(why));
        if (!http) {
                snprintf(errstr, errstr_size, "metrics.listen: %s", why);
                return -1;
        }
        atexit(http_stop);
        sg_info("event=http_listen addr=%s%s%s:%d paths=/metrics,/healthz,"
                "/readyz",
                strchr(host, ':') ? "[" : "", host,
                strchr(host, ':') ? "]" : "", sg_http_port(http));
        return 0;
}

int64_t sg_stop_deadline(int64_t deadline)
{
        int64_t at = __atomic_load_n(&stop_at, __ATOMIC_RELAXED);

        if (!sg_stop || at == 0)
                return deadline;
        return deadline < at + SG_STOP_GRACE_MS ? deadline
                                                : at + SG_STOP_GRACE_MS;
}

int sg_stop_bound_ms(int timeout_ms)
{
        int64_t left = sg_stop_deadline(sg_mono_ms() + timeout_ms) -
                       sg_mono_ms();

        return left < 0 ? 0 : (int)left;
}

/*
 * The first SIGTERM / SIGINT asks for a clean stop (finish the batch,
 * commit) and arms a watchdog: whatever the clean stop waits on (a broker
 * or a Redis that is gone) may not answer, and a process that ignores
 * SIGTERM is killed hard by systemd or Kubernetes. A second signal means
 * "now". Only async-signal-safe calls here.
 */
static void on_signal(int sig)
{
        struct timespec ts;

        if (sig == SIGHUP) {
                sg_reload = 1;
                return;
        }
        if (sig == SIGALRM) {
                if (write(2, watchdog_msg, watchdog_len) < 0) {
                        /* nothing left to report it to */
                }
                _exit(1);
        }
        if (sg_stop) {
                static const char msg[] = "second stop signal: exiting now\n";

                if (write(2, msg, sizeof(msg) - 1) < 0) {
                        /* nothing left to report it to */
                }
                _exit(128 + sig);
        }
        clock_gettime(CLOCK_MONOTONIC, &ts);
        __atomic_store_n(&stop_at,
                         (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
                         __ATOMIC_RELAXED);
        sg_stop = 1;
        alarm(SG_STOP_WATCHDOG_S);
}

void sg_stage_signals(void)
{
        struct sigaction sa;

        watchdog_len = (size_t)snprintf(
            watchdog_msg, sizeof(watchdog_msg),
            "%s: event=stop_timeout msg=\"not stopped %d s after the stop "
            "signal: exiting without a clean stop\"\n",
            program_invocation_short_name, SG_STOP_WATCHDOG_S);
        if (watchdog_len >= sizeof(watchdog_msg))
                watchdog_len = sizeof(watchdog_msg) - 1;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        sigaction(SIGALRM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
}

static void usage(const sg_stage_desc_t *desc, FILE *fp)
{
        fprintf(fp,
                "Usage: sg-%s [-c FILE] [--help] [--version]\n\n%s\n\n"
                "Options:\n"
                "  -c, --config FILE  YAML config (default: $SG_CONFIG, then "
                "config/spendguard.yaml)\n"
                "  -h, --help         this help\n"
                "  -V, --version      print the version\n\n"
                "Environment: SG_BROKERS, SG_REDIS, SG_GROUP_PREFIX, "
                "SG_LOG_LEVEL, SG_METRICS_LISTEN\n"
                "  beat the file; SG_CONFIG names it (empty: the default).\n"
                "Signals: SIGTERM/SIGINT finish the batch in hand, commit "
                "and exit 0,\n"
                "  within %d s whatever is down (else exit 1); a second "
                "signal exits at once.\n"
                "  SIGHUP: sg-rules reloads its rules file (rules.file); "
                "every other key,\n"
                "  channels[] budgets and target_cpa_micros included, is read "
                "at start:\n"
                "  change it and restart the stage.\n\n"
                "Config keys this stage reads:\n",
                desc->name, desc->summary, SG_STOP_WATCHDOG_S);
        sg_conf_print_help(fp, desc->sections);
        /* What sg_stage_init itself serves, in every stage. */
        sg_conf_print_help(fp, (const char *const[]){"metrics.", NULL});
        fprintf(fp, "  %-28s %s\n", "kafka.<property>",
                "any librdkafka property, passed through");
}

void sg_stage_init(const sg_stage_desc_t *desc, int argc, char **argv,
                   sg_conf_t *conf)
{
        static const struct option opts[] = {
            {"config", required_argument, NULL, 'c'},
            {"help", no_argument, NULL, 'h'},
            {"version", no_argument, NULL, 'V'},
            {NULL, 0, NULL, 0}};
        const char *path = NULL;
        char errstr[512];
        int c;

        sg_log_init(desc->name);
        opterr = 0;
        /* The leading ':' tells a missing argument (':') from an unknown
         * option ('?'). */
        while ((c = getopt_long(argc, argv, ":c:hV", opts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        path = optarg;
                        break;
                case 'h':
                        usage(desc, stdout);
                        exit(0);
                case 'V':
                        printf("sg-%s %s\n", desc->name, SG_VERSION);
                        exit(0);
                case ':':
                        fprintf(stderr,
                                "sg-%s: option %s needs an argument (try "
                                "--help)\n",
                                desc->name, argv[optind - 1]);
                        exit(2);
                default:
                        fprintf(stderr,
                                "sg-%s: unknown option %s (try --help)\n",
                                desc->name, argv[optind - 1]);
                        exit(2);
                }
        }
        if (optind < argc) {
                fprintf(stderr, "sg-%s: unexpected argument %s (try --help)\n",
                        desc->name, argv[optind]);
                exit(2);
        }
        if (sg_conf_load(conf, path, errstr, sizeof(errstr)) == -1) {
                fprintf(stderr, "sg-%s: bad config: %s\n", desc->name, errstr);
                exit(2);
        }
        sg_log_set_level(conf->log_level);
        sg_ready_set(SG_READY_REDIS, desc->without_redis ? -1 : 0);
        sg_metrics_init(desc->name);
        sg_stage_signals();
        /* A port in use is a config problem like any other: exit 2. */
        if (sg_stage_serve(desc->name, conf->metrics.listen, errstr,
                           sizeof(errstr)) == -1) {
                fprintf(stderr, "sg-%s: bad config: %s\n", desc->name, errstr);
                exit(2);
        }
}

int64_t sg_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sg_mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sg_mono_us(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void sg_sleep_ms(int ms)
{
        while (ms > 0 && !sg_stop) {
                int step = ms > 50 ? 50 : ms;
                struct timespec ts = {0, step * 1000000L};

                nanosleep(&ts, NULL);
                ms -= step;
        }
}
