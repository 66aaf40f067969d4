/*
 * The operations endpoints on real parts: each stage serves /healthz,
 * /readyz and /metrics on its own port while the sg-gen scenario runs
 * through sg-broker and a private redis-server. Pins exact counter values
 * against the generator's ground truth, and the 503 of a stage that is not
 * ready.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

static const char *const stages[4] = {"ingest", "aggregate", "rules", "sink"};
static int ports[4];

TestSuite(ops, .fini = h_stack_down, .timeout = 400);

/* Polls until GET path answers want, or fails the test after ms. */
static void wait_status(int stage, const char *path, int want, int ms,
                        char *body, size_t size)
{
        long long deadline = h_now_ms() + ms;
        int got;

        while ((got = h_http_get(ports[stage], path, body, size)) != want) {
                cr_assert_lt(h_now_ms(), deadline,
                             "%s %s: want %d, got %d (%s) within %d ms (logs "
                             "in %s)",
                             stages[stage], path, want, got, body, ms, H.dir);
                usleep(100 * 1000);
        }
}

/* The sum of every series starting with prefix (e.g. a family and some of
 * its labels), and how many there are in *cnt. */
static double metric_sum(const char *text, const char *prefix, int *cnt)
{
        size_t n = strlen(prefix);
        double sum = 0;

        *cnt = 0;
        for (const char *p = text; (p = strstr(p, prefix)) != NULL; p += n) {
                const char *sp;

                if (p != text && p[-1] != '\n')
                        continue;
                sp = strchr(p, ' ');
                if (!sp)
                        break;
                sum += strtod(sp + 1, NULL);
                (*cnt)++;
        }
        return sum;
}

static char metrics_text[1 << 20];

static const char *scrape(int stage)
{
        int st = h_http_get(ports[stage], "/metrics", metrics_text,
                          sizeof(metrics_text));

        cr_assert_eq(st, 200, "%s /metrics: %d", stages[stage], st);
        return metrics_text;
}

/* Starts the four stages, each with its own metrics port. */
static void start_stages(const char *const *extra_env)
{
        static const char *const bins[4] = {"sg-ingest", "sg-aggregate",
                                            "sg-rules", "sg-sink"};

        for (int i = 0; i < 4; i++) {
                char listen[64];
                const char *env[4] = {listen, NULL, NULL, NULL};

                for (int k = 0; extra_env && extra_env[k] && k < 2; k++)
                        env[1 + k] = extra_env[k];
                ports[i] = h_free_port();
                snprintf(listen, sizeof(listen),
                         "SG_METRICS_LISTEN=127.0.0.1:%d", ports[i]);
                h_spawn_env(bins[i], NULL, env);
        }
}

/* Polls stage's /metrics until series has value want, else fails. */
static void wait_metric(int stage, const char *series, double want, int ms)
{
        long long deadline = h_now_ms() + ms;
        double got;

        while ((got = h_metric(scrape(stage), series)) != want) {
                cr_assert_lt(h_now_ms(), deadline,
                             "%s: %s is %g, want %g after %d ms (logs in %s)",
                             stages[stage], series, got, want, ms, H.dir);
                usleep(200 * 1000);
        }
}

/* Waits until series on stage's /metrics is above zero. */
static void wait_metric_positive(int stage, const char *series, int ms)
{
        long long deadline = h_now_ms() + ms;

        while (h_metric(scrape(stage), series) <= 0) {
                cr_assert_lt(h_now_ms(), deadline,
                             "%s: %s still 0 after %d ms (logs in %s)",
                             stages[stage], series, ms, H.dir);
                usleep(200 * 1000);
        }
}

Test(ops, stages_answer_health_readiness_and_metrics_matching_the_truth)
{
        static const char *const types[3] = {"impression", "click",
                                             "conversion"};
        static const char *const truth_keys[3] = {"impressions", "clicks",
                                                  "conversions"};
        char truth_path[512], body[4096], series[256];
        const char *gen_args[] = {"--seed",  "7",        "--duration",
                                  "60",      "--bad",    "5",
                                  "--truth", truth_path, NULL};
        long long want[3] = {0, 0, 0}, rejected = 0;
        const char *text;
        json_t *truth, *row, *rej = NULL;
        size_t i;
        int cnt;
        double sum;

        h_init();
        h_start_infra();
        start_stages(NULL);

        /* 1. Alive at once; ready once connected and assigned. */
        for (int s = 0; s < 4; s++) {
                wait_status(s, "/healthz", 200, 15000, body, sizeof(body));
                cr_assert_str_eq(body, "ok\n");
        }
        for (int s = 0; s < 4; s++) {
                wait_status(s, "/readyz", 200, 60000, body, sizeof(body));
                cr_assert_str_eq(body, "ready\n");
        }
        cr_assert_eq(h_http_get(ports[0], "/nothing", body, sizeof(body)), 404);

        /* 2. The scenario, and its ground truth per event type. */
        snprintf(truth_path, sizeof(truth_path), "%s/truth.jsonl", H.dir);
        cr_assert_eq(h_run("sg-gen", gen_args, NULL, 0), 0,
                     "sg-gen failed (log: %s/sg-gen.log)", H.dir);
        truth = h_jsonl_file(truth_path);
        json_array_foreach(truth, i, row)
        {
                json_t *camp = json_object_get(row, "campaign_id");

                if (json_object_get(row, "rejected"))
                        rej = json_object_get(row, "rejected");
                if (!json_object_get(row, "channel") ||
                    (camp && !json_is_null(camp)))
                        continue;
                for (int t = 0; t < 3; t++)
                        want[t] += json_integer_value(
                            json_object_get(row, truth_keys[t]));
        }
        cr_assert_not_null(rej, "no rejected row in the truth");
        cr_assert_gt(want[0] + want[1] + want[2], 0);

        /* 3. ingest: accepted per type and dead letters per reason. */
        for (int t = 0; t < 3; t++) {
                snprintf(series, sizeof(series),
                         "spendguard_events_total{stage=\"ingest\",type="
                         "\"%s\",result=\"accepted\"}",
                         types[t]);
                wait_metric(0, series, (double)want[t], 120000);
        }
        h_wait_caught_up("ingest", "ad-clicks", 60000);
        text = scrape(0);
        {
                const char *reason;
                json_t *v;

                json_object_foreach(rej, reason, v)
                {
                        snprintf(series, sizeof(series),
                                 "spendguard_deadletter_total{stage="
                                 "\"ingest\",reason=\"%s\"}",
                                 reason);
                        if (json_integer_value(v) == 0)
                                continue; /* a reason never seen: no series */
                        cr_assert_eq(h_metric(text, series),
                                     (double)json_integer_value(v),
                                     "%s: want %lld", series,
                                     (long long)json_integer_value(v));
                        rejected += json_integer_value(v);
                }
        }
        cr_assert_eq(rejected, 5);
        sum = metric_sum(
            text, "spendguard_events_total{stage=\"ingest\",type=", &cnt);
        cr_assert_eq(sum, (double)(want[0] + want[1] + want[2] + rejected),
                     "ingest events_total sums to %g", sum);
        cr_assert_gt(h_metric(text, "spendguard_batch_duration_seconds_count{"
                                  "stage=\"ingest\"}"),
                     0);

        /* 4. aggregate applied exactly what ingest accepted. */
        for (int t = 0; t < 3; t++) {
                snprintf(series, sizeof(series),
                         "spendguard_events_total{stage=\"aggregate\",type="
                         "\"%s\",result=\"applied\"}",
                         types[t]);
                wait_metric(1, series, (double)want[t], 120000);
        }
        text = scrape(1);
        cr_assert_gt(h_metric(text, "spendguard_redis_latency_seconds_count{"
                                  "stage=\"aggregate\"}"),
                     0);
        cr_assert_gt(h_metric(text, "spendguard_batch_duration_seconds_count{"
                                  "stage=\"aggregate\"}"),
                     0);
        /* Rolling snapshots cover windows the watermark completed: the
         * first comes once every input partition has been read. */
        wait_metric_positive(1,
                             "spendguard_snapshots_total{stage=\"aggregate\","
                             "kind=\"rolling\"}",
                             60000);

        /* 5. Once caught up, the lag gauges of aggregate's input read 0
         * (they are refreshed within a second of the stage's loop). */
        h_wait_caught_up("aggregate", "sg.events", 60000);
        {
                long long deadline = h_now_ms() + 30000;

                for (;;) {
                        sum = metric_sum(scrape(1),
                                         "spendguard_consumer_lag{stage="
                                         "\"aggregate\",topic=\"sg.events\",",
                                         &cnt);
                        if (cnt > 0 && sum == 0)
                                break;
                        cr_assert_lt(h_now_ms(), deadline,
                                     "aggregate lag on sg.events: %d series, "
                                     "sum %g",
                                     cnt, sum);
                        usleep(200 * 1000);
                }
        }

        /* 6. rules evaluated snapshots and exposes a breaker per configured
         * channel; sink delivered exactly the decisions rules committed. */
        wait_metric_positive(2,
                             "spendguard_events_total{stage=\"rules\","
                             "type=\"snapshot\",result=\"evaluated\"}",
                             60000);
        h_wait_caught_up("rules", "sg.aggregates", 60000);
        h_wait_caught_up("sink", "sg.decisions", 60000);
        text = scrape(2);
        metric_sum(text,
                   "spendguard_breaker_state{stage=\"rules\",channel=", &cnt);
        cr_assert_eq(cnt, 5, "breaker_state series: %d", cnt);
        /* The last complete window of every configured channel, for the
         * dashboards. */
        metric_sum(
            text,
            "spendguard_channel_spend_micros{stage=\"rules\",channel=", &cnt);
        cr_assert_eq(cnt, 5, "channel_spend_micros series: %d", cnt);
        metric_sum(
            text, "spendguard_channel_ivt_rate{stage=\"rules\",channel=", &cnt);
        cr_assert_eq(cnt, 5, "channel_ivt_rate series: %d", cnt);
        {
                int rcnt, scnt;
                double rsum = metric_sum(
                    text, "spendguard_decisions_total{stage=\"rules\",", &rcnt);
                double ssum;

                text = scrape(3);
                ssum = metric_sum(
                    text, "spendguard_decisions_total{stage=\"sink\",", &scnt);
                cr_assert_eq(rsum, ssum,
                             "rules committed %g decisions, sink delivered %g",
                             rsum, ssum);
                cr_assert_eq(rcnt, scnt);
                cr_assert_eq(h_metric(text, "spendguard_events_total{stage="
                                          "\"sink\",type=\"decision\","
                                          "result=\"delivered\"}"),
                             ssum);
        }
        json_decref(truth);
}

Test(ops, readyz_is_503_and_names_what_is_missing)
{
        char body[4096], broker[64], redis[400];
        const char *env[] = {broker, redis, NULL};

        h_init();
        /* Nothing listens on the broker port nor on the Redis socket. */
        snprintf(broker, sizeof(broker), "SG_BROKERS=127.0.0.1:%d",
                 h_free_port());
        snprintf(redis, sizeof(redis), "SG_REDIS=unix://%s/none.sock", H.dir);
        ports[0] = h_free_port();
        ports[1] = h_free_port();
        {
                char l0[64], l1[64];
                const char *e0[] = {l0, env[0], env[1], NULL};
                const char *e1[] = {l1, env[0], env[1], NULL};

                snprintf(l0, sizeof(l0), "SG_METRICS_LISTEN=127.0.0.1:%d",
                         ports[0]);
                snprintf(l1, sizeof(l1), "SG_METRICS_LISTEN=127.0.0.1:%d",
                         ports[1]);
                h_spawn_env("sg-ingest", NULL, e0);
                h_spawn_env("sg-aggregate", NULL, e1);
        }
        /* Alive, not ready: ingest has no Redis to wait for. */
        wait_status(0, "/healthz", 200, 15000, body, sizeof(body));
        wait_status(0, "/readyz", 503, 15000, body, sizeof(body));
        cr_assert_str_eq(body, "not ready: broker not reachable; no partitions "
                               "assigned\n");
        wait_status(1, "/healthz", 200, 15000, body, sizeof(body));
        wait_status(1, "/readyz", 503, 15000, body, sizeof(body));
        cr_assert_str_eq(body, "not ready: broker not reachable; no partitions "
                               "assigned; redis not connected\n");
        /* Still not ready a moment later: nothing flips by itself. */
        usleep(500 * 1000);
        cr_assert_eq(h_http_get(ports[1], "/readyz", body, sizeof(body)), 503);
}

Test(ops, a_busy_metrics_port_is_a_config_error)
{
        char listen[64], out[256];
        const char *env_args[] = {NULL};
        int port, status;
        pid_t pid;

        h_init();
        port = h_free_port();
        snprintf(listen, sizeof(listen), "SG_METRICS_LISTEN=127.0.0.1:%d",
                 port);
        {
                const char *env[] = {listen, "SG_BROKERS=127.0.0.1:1", NULL};
                ports[0] = port;
                h_spawn_env("sg-ingest", env_args, env);
        }
        wait_status(0, "/healthz", 200, 15000, out, sizeof(out));
        /* A second ingest on the same port exits 2 at once. */
        {
                const char *env[] = {listen, "SG_BROKERS=127.0.0.1:1", NULL};
                long long deadline = h_now_ms() + 15000;

                pid = h_spawn_env("sg-ingest", env_args, env);
                while (waitpid(pid, &status, WNOHANG) != pid) {
                        cr_assert_lt(h_now_ms(), deadline,
                                     "the second sg-ingest still runs");
                        usleep(50 * 1000);
                }
        }
        for (int i = 0; i < H.proc_cnt; i++)
                if (H.procs[i].pid == pid)
                        H.procs[i].pid = 0;
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2,
                  "status %d, want exit 2", status);
}
