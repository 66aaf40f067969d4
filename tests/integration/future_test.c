/*
 * Event time ahead of the wall clock through the real stack (sg-broker,
 * redis-server, the four stages; issue 15, review F3): an event stamped
 * minutes ahead is accepted and counted in ingest's
 * spendguard_events_future_total.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

#define BROWSER                                                                \
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 "     \
        "Safari/537.36"
#define AHEAD_MS 240000 /* 4 minutes, within ingest.future_tolerance_s */
#define CPC      100000 /* cost_micros of every event */

/* The shipped IVT breaker alone: no other rule to decide on kol. */
static const char ivt_rules[] =
    "rules:\n"
    "  - {id: ivt_circuit_breaker, scope: channel, window: 1m, metric: "
    "ivt_rate, op: \">\", threshold: 0.25, resume_threshold: 0.10, "
    "cooldown_s: 300, min_clicks: 100, action: PAUSE}\n";

static int ingest_port; /* ingest's /metrics */

/* One partition per input topic and for sg.events: the inputs whose
 * markers make the watermark are known (wait_marked). */
static void setup(void)
{
        const char *broker_args[] = {"--partitions", "1", NULL};
        char listen[64];
        const char *env[] = {listen, NULL};

        h_init();
        h_rules_config(ivt_rules, NULL);
        h_start_infra_args(broker_args);
        ingest_port = h_free_port();
        snprintf(listen, sizeof(listen), "SG_METRICS_LISTEN=127.0.0.1:%d",
                 ingest_port);
        h_spawn_env("sg-ingest", NULL, env);
        h_spawn("sg-aggregate", NULL);
        h_spawn("sg-rules", NULL);
        h_spawn("sg-sink", NULL);
}

TestSuite(future, .init = setup, .fini = h_stack_down, .timeout = 300);

/* Sends one JSON event to partition 0 of its input topic, unacknowledged
 * until h_flush(). */
static void send_event(const char *type, const char *id, long long t,
                       const char *ua)
{
        char topic[32], buf[512];
        int n;

        snprintf(topic, sizeof(topic), "ad-%ss", type);
        n = snprintf(buf, sizeof(buf),
                     "{\"type\":\"%s\",\"event_id\":\"%s\","
                     "\"event_time\":%lld,\"channel\":\"kol\","
                     "\"campaign_id\":\"kol-c1\",\"cost_micros\":%d,"
                     "\"user_agent\":\"%s\"}",
                     type, id, t, CPC, ua);
        cr_assert_lt(n, (int)sizeof(buf));
        cr_assert_eq(h_produce_async(topic, 0, id, strlen(id), buf, (size_t)n),
                     0);
}

/* The value of ingest's series, e.g. events_future_total{type="click"}
 * (without prefix and stage label); -1 if absent, -2 while ingest does
 * not answer yet. */
static double ingest_metric(const char *series)
{
        static char text[1 << 20];
        char full[256];

        if (h_http_get(ingest_port, "/metrics", text, sizeof(text)) != 200)
                return -2;
        snprintf(full, sizeof(full), "spendguard_%.*s{stage=\"ingest\",%s",
                 (int)(strchr(series, '{') - series), series,
                 strchr(series, '{') + 1);
        return h_metric(text, full);
}

/* Polls ingest's /metrics until series is want; fails after ms. */
static void wait_ingest_metric(const char *series, double want, int ms)
{
        long long deadline = h_now_ms() + ms;
        double got;

        while ((got = ingest_metric(series)) != want) {
                cr_assert_lt(h_now_ms(), deadline,
                             "ingest %s is %g, want %g (logs in %s)", series,
                             got, want, H.dir);
                usleep(100 * 1000);
        }
}

Test(future, an_accepted_event_ahead_of_the_clock_is_counted_once)
{
        long long now = h_wall_ms();

        /* Ahead: counted. Behind the clock: not. Beyond
         * ingest.future_tolerance_s (300 s): rejected, not counted. */
        send_event("click", "ahead", now + AHEAD_MS, BROWSER);
        send_event("impression", "behind", now - 1000, BROWSER);
        send_event("click", "too-far", now + 400000, BROWSER);
        cr_assert_eq(h_flush(), 0);
        wait_ingest_metric("events_total{type=\"click\",result=\"rejected\"}",
                           1, 30000);
        wait_ingest_metric("events_total{type=\"click\",result=\"accepted\"}",
                           1, 30000);
        wait_ingest_metric(
            "events_total{type=\"impression\",result=\"accepted\"}", 1, 30000);
        cr_assert_eq(ingest_metric("events_future_total{type=\"click\"}"), 1);
        cr_assert_eq(ingest_metric("events_future_total{type=\"impression\"}"),
                     0);
        cr_assert_eq(ingest_metric("events_future_total{type=\"conversion\"}"),
                     0);
}
