/*
 * sg-replay: replays CSV click logs (the TalkingData AdTracking format) into
 * the input topics, as real traffic for tests, demos and benchmarks. Every
 * row is a click; every attributed row also a conversion linked to it.
 * The mapping is in docs/tools.md.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "conf.h"
#include "kafka.h"
#include "log.h"
#include "stage.h"

/* One event to send: a click (row's click_time) or a conversion. */
typedef struct rec {
        int64_t t; /* original event time, ms */
        uint32_t row;
        uint32_t ip, app, device, os, channel;
        unsigned conversion : 1;
} rec_t;

typedef struct opts {
        const char *config;
        const char *csv;
        int64_t cpc_micros;
        int64_t revenue_micros;
        double speed;
        int rebase;
        int realtime;
        long limit;
        const char *user_agent; /* "" = none */
        sg_format_t fmt;
} opts_t;

static void usage(FILE *fp)
{
        fprintf(fp,
                "Usage: sg-replay [options] FILE.csv\n\n"
                "Replays a TalkingData click log (ip,app,device,os,channel,"
                "click_time,\nattributed_time,is_attributed) into the input "
                "topics: each row a click,\neach attributed row also a "
                "conversion linked to it, in event-time order.\n\n"
                "Options:\n"
                "  -c, --config FILE        config (topics, brokers; default "
                "$SG_CONFIG, then config/spendguard.yaml)\n"
                "  --cpc-micros N           cost of every click (default "
                "100000 = 0.10)\n"
                "  --revenue-micros N       revenue of every conversion "
                "(default 2000000 = 2.00)\n"
                "  --speed X                compress event time X-fold "
                "(default 1)\n"
                "  --rebase                 shift times so the newest event "
                "is now\n"
                "  --realtime               rebase so the first event is now "
                "and send each\n"
                "                           event when its (compressed) time "
                "comes\n"
                "  --limit N                only the first N rows\n"
                "  --user-agent S           user agent of every event "
                "(default\n"
                "                           \"TalkingData-replay/1.0\": the "
                "data has none;\n"
                "                           \"\" sends none, which ingest "
                "tags as no_ua)\n"
                "  --json                   JSON instead of Avro\n"
                "  -h, --help, -V, --version\n\n"
                "Prints the totals sent on stdout. Exit 0 when every record "
                "was acknowledged,\n1 if not, 2 on bad usage or an unreadable "
                "file.\n");
}

static void die_usage(const char *what, const char *arg)
{
        fprintf(stderr, "sg-replay: %s%s%s (try --help)\n", what,
                arg ? ": " : "", arg ? arg : "");
        exit(2);
}

static void parse_args(int argc, char **argv, opts_t *o)
{
        enum {
                O_CPC = 256,
                O_REV,
                O_SPEED,
                O_REBASE,
                O_RT,
                O_LIMIT,
                O_JSON,
                O_UA
        };
        static const struct option lopts[] = {
            {"config", required_argument, NULL, 'c'},
            {"cpc-micros", required_argument, NULL, O_CPC},
            {"revenue-micros", required_argument, NULL, O_REV},
            {"speed", required_argument, NULL, O_SPEED},
            {"rebase", no_argument, NULL, O_REBASE},
            {"realtime", no_argument, NULL, O_RT},
            {"limit", required_argument, NULL, O_LIMIT},
            {"json", no_argument, NULL, O_JSON},
            {"user-agent", required_argument, NULL, O_UA},
            {"help", no_argument, NULL, 'h'},
            {"version", no_argument, NULL, 'V'},
            {NULL, 0, NULL, 0}};
        char *end;
        int c;

        memset(o, 0, sizeof(*o));
        o->cpc_micros = 100000;
        o->revenue_micros = 2000000;
        o->speed = 1;
        o->fmt = SG_FMT_AVRO;
        o->user_agent = "TalkingData-replay/1.0";
        opterr = 0;
        while ((c = getopt_long(argc, argv, "c:hV", lopts, NULL)) != -1) {
                errno = 0;
                switch (c) {
                case 'c':
                        o->config = optarg;
                        break;
                case O_CPC:
                case O_REV: {
                        long long v = strtoll(optarg, &end, 10);
                        if (errno || end == optarg || *end || v < 0)
                                die_usage("not a money amount in micros",
                                          optarg);
                        *(c == O_CPC ? &o->cpc_micros : &o->revenue_micros) = v;
                        break;
                }
                case O_SPEED:
                        o->speed = strtod(optarg, &end);
                        if (errno || end == optarg || *end ||
                            !(o->speed > 0 && o->speed < 1e9))
                                die_usage("--speed wants a number > 0", optarg);
                        break;
                case O_REBASE:
                        o->rebase = 1;
                        break;
                case O_RT:
                        o->realtime = 1;
                        break;
                case O_LIMIT:
                        o->limit = strtol(optarg, &end, 10);
                        if (errno || end == optarg || *end || o->limit <= 0)
                                die_usage("--limit wants a count > 0", optarg);
                        break;
                case O_JSON:
                        o->fmt = SG_FMT_JSON;
                        break;
                case O_UA:
                        if (strlen(optarg) >= SG_UA_LEN)
                                die_usage("--user-agent too long", NULL);
                        o->user_agent = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        exit(0);
                case 'V':
                        printf("sg-replay %s\n", SG_VERSION);
                        exit(0);
                default:
                        die_usage("unknown option", argv[optind - 1]);
                }
        }
        if (optind != argc - 1)
                die_usage("give exactly one CSV file", NULL);
        o->csv = argv[optind];
        if (o->speed != 1 && !o->rebase && !o->realtime)
                die_usage("--speed needs --rebase or --realtime (compressed "
                          "times must be moved to the present)",
                          NULL);
}

/* "2017-11-07 09:30:38" (UTC) -> ms; -1 if malformed. */
static int64_t parse_time(const char *s)
{
        struct tm tm;
        const char *end;

        memset(&tm, 0, sizeof(tm));
        end = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
        if (!end || *end)
                return -1;
        return (int64_t)timegm(&tm) * 1000;
}

static int parse_u32(const char *s, uint32_t *out)
{
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || end == s || *end || v > UINT32_MAX)
                return -1;
        *out = (uint32_t)v;
        return 0;
}

/*
 * Reads the CSV into recs (clicks and conversions). Returns the count, or
 * -1 if the file cannot be read or has no header; malformed rows are
 * counted in *bad and named on stderr (the first few).
 */
static long load(const opts_t *o, rec_t **out, long *bad)
{
        FILE *fp = fopen(o->csv, "r");
        char line[512];
        long n = 0, cap = 0, row = 0;
        rec_t *recs = NULL;

        *bad = 0;
        if (!fp) {
                fprintf(stderr, "sg-replay: %s: %s\n", o->csv, strerror(errno));
                return -1;
        }
        if (!fgets(line, sizeof(line), fp) ||
            strncmp(line, "ip,app,device,os,channel,click_time", 35) != 0) {
                fprintf(stderr,
                        "sg-replay: %s: not a TalkingData CSV (header "
                        "ip,app,device,os,channel,click_time,...)\n",
                        o->csv);
                fclose(fp);
                return -1;
        }
        while (fgets(line, sizeof(line), fp) && (!o->limit || row < o->limit)) {
                char *f[8], *p = line;
                rec_t r;
                int k = 0;
                int64_t at = -1;

                row++;
                line[strcspn(line, "\r\n")] = '\0';
                /* strsep keeps empty fields (attributed_time is often ""). */
                while (k < 8 && (f[k] = strsep(&p, ",")) != NULL)
                        k++;
                memset(&r, 0, sizeof(r));
                r.row = (uint32_t)row;
                if (k != 8 || parse_u32(f[0], &r.ip) ||
                    parse_u32(f[1], &r.app) || parse_u32(f[2], &r.device) ||
                    parse_u32(f[3], &r.os) || parse_u32(f[4], &r.channel) ||
                    (r.t = parse_time(f[5])) < 0 ||
                    (strcmp(f[7], "1") == 0 && (at = parse_time(f[6])) < 0) ||
                    (strcmp(f[7], "0") && strcmp(f[7], "1"))) {
                        if ((*bad)++ < 5)
                                fprintf(stderr,
                                        "sg-replay: %s:%ld: malformed row, "
                                        "skipped\n",
                                        o->csv, row + 1);
                        continue;
                }
                if (n + 2 > cap) {
                        cap = cap ? cap * 2 : 4096;
                        recs = realloc(recs, cap * sizeof(*recs));
                        if (!recs) {
                                fprintf(stderr, "sg-replay: out of memory\n");
                                exit(1);
                        }
                }
                recs[n++] = r;
                if (at >= 0) {
                        /* A download before its click is a logging error of
                         * the source: keep the order click, then
                         * conversion. */
                        r.conversion = 1;
                        r.t = at < r.t ? r.t : at;
                        recs[n++] = r;
                }
        }
        fclose(fp);
        *out = recs;
        return n;
}

static int rec_cmp(const void *a, const void *b)
{
        const rec_t *x = a, *y = b;

        if (x->t != y->t)
                return x->t < y->t ? -1 : 1;
        if (x->row != y->row)
                return x->row < y->row ? -1 : 1;
        return (int)x->conversion - (int)y->conversion;
}

/* The event a record becomes (see docs/tools.md for the mapping). */
static void to_event(const opts_t *o, const rec_t *r, int64_t t, sg_event_t *ev)
{
        memset(ev, 0, sizeof(*ev));
        ev->type = r->conversion ? SG_EV_CONVERSION : SG_EV_CLICK;
        ev->event_time = t;
        snprintf(ev->channel, sizeof(ev->channel), "td-%" PRIu32, r->channel);
        snprintf(ev->campaign_id, sizeof(ev->campaign_id), "app-%" PRIu32,
                 r->app);
        snprintf(ev->device_id, sizeof(ev->device_id),
                 "%" PRIu32 "-%" PRIu32 "-%" PRIu32, r->ip, r->device, r->os);
        ev->has_device_id = 1;
        /* The data set's ip is an anonymised id: map it into 10.0.0.0/8. */
        snprintf(ev->ip, sizeof(ev->ip), "10.%u.%u.%u", (r->ip >> 16) & 255,
                 (r->ip >> 8) & 255, r->ip & 255);
        ev->has_ip = 1;
        if (o->user_agent[0]) {
                snprintf(ev->user_agent, sizeof(ev->user_agent), "%s",
                         o->user_agent);
                ev->has_user_agent = 1;
        }
        if (r->conversion) {
                snprintf(ev->event_id, sizeof(ev->event_id),
                         "td-%" PRIu32 "-conv", r->row);
                snprintf(ev->ref_id, sizeof(ev->ref_id), "td-%" PRIu32, r->row);
                ev->has_ref_id = 1;
                ev->revenue_micros = o->revenue_micros;
        } else {
                snprintf(ev->event_id, sizeof(ev->event_id), "td-%" PRIu32,
                         r->row);
                ev->cost_micros = o->cpc_micros;
        }
}

int main(int argc, char **argv)
{
        static sg_conf_t conf;
        unsigned char buf[4096];
        char errstr[512];
        long n, bad, clicks = 0, convs = 0;
        int64_t t0, base, start_mono;
        sg_producer_t *producer;
        sg_codec_t *codec;
        rec_t *recs = NULL;
        opts_t o;
        int failed;

        parse_args(argc, argv, &o);
        sg_log_init("replay");
        if (sg_conf_load(&conf, o.config, errstr, sizeof(errstr)) == -1) {
                fprintf(stderr, "sg-replay: bad config: %s\n", errstr);
                return 2;
        }
        sg_log_set_level(conf.log_level);
        sg_stage_signals();
        n = load(&o, &recs, &bad);
        if (n < 0)
                return 2;
        qsort(recs, n, sizeof(*recs), rec_cmp);
        codec = sg_codec_new(conf.schemas_dir, errstr, sizeof(errstr));
        if (!codec) {
                fprintf(stderr, "sg-replay: %s\n", errstr);
                return 1;
        }
        producer = sg_producer_new(&conf, "sg-replay", errstr, sizeof(errstr));
        if (!producer) {
                fprintf(stderr, "sg-replay: %s\n", errstr);
                sg_codec_destroy(codec);
                return 1;
        }
        t0 = n ? recs[0].t : 0;
        base = t0;
        if (o.realtime)
                base = sg_now_ms();
        else if (o.rebase && n)
                base = sg_now_ms() -
                       (int64_t)((double)(recs[n - 1].t - t0) / o.speed);
        start_mono = sg_mono_ms();
        sg_info("event=start file=%s events=%ld malformed=%ld speed=%g "
                "first_event_ms=%" PRId64,
                o.csv, n, bad, o.speed, base);
        for (long i = 0; i < n && !sg_stop; i++) {
                int64_t off = (int64_t)((double)(recs[i].t - t0) / o.speed);
                sg_event_t ev;
                int len;

                if (o.realtime)
                        while (!sg_stop && sg_mono_ms() - start_mono < off) {
                                sg_producer_poll(producer);
                                sg_sleep_ms(
                                    (int)(off - (sg_mono_ms() - start_mono)));
                        }
                to_event(&o, &recs[i], base + off, &ev);
                len =
                    sg_codec_encode_input(codec, o.fmt, &ev, buf, sizeof(buf));
                if (len < 0) {
                        fprintf(stderr, "sg-replay: encode: %s\n",
                                sg_codec_error(codec));
                        break;
                }
                if (sg_producer_send(producer,
                                     ev.type == SG_EV_CLICK
                                         ? conf.topics.clicks
                                         : conf.topics.conversions,
                                     -1, ev.device_id, strlen(ev.device_id),
                                     buf, len, NULL) == -1)
                        break;
                if (ev.type == SG_EV_CLICK)
                        clicks++;
                else
                        convs++;
        }
        failed = sg_producer_flush(producer, 60000);
        printf("clicks=%ld conversions=%ld malformed=%ld failed=%d\n", clicks,
               convs, bad, failed);
        sg_info("event=done clicks=%ld conversions=%ld malformed=%ld "
                "failed=%d",
                clicks, convs, bad, failed);
        sg_producer_destroy(producer);
        sg_codec_destroy(codec);
        free(recs);
        return failed == 0 ? 0 : 1;
}
