/*
 * Event time ahead of the wall clock through the real stack (sg-broker,
 * redis-server, the four stages; issue 15, review F3): an event stamped
 * minutes ahead is accepted, counted in its own bucket and in ingest's
 * spendguard_events_future_total, but moves the watermark no further than
 * the clock, so the honest traffic behind it is counted, none of it late,
 * and a bot burst after it still pauses its channel.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "codec.h"
#include "harness.h"
#include "marker.h"
#include "scenario.h"

#define BROWSER                                                                \
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 "     \
        "Safari/537.36"
#define AHEAD_MS 240000 /* 4 minutes, within ingest.future_tolerance_s */
#define NORMAL   200    /* honest clicks after the one from the future */
#define BOTS     150    /* a bot burst: 150 of 351 clicks, 43% > 25% */
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

/* 1 when sg.events' latest markers say the empty inputs are idle and
 * ad-clicks/0 has come to t or beyond. */
static int marked(long long t)
{
        rd_kafka_message_t **msgs;
        sg_marker_t *mk;
        int imps = 0, convs = 0, clicks = 0;
        int n = h_consume_all("sg.events", 1, 5000, &msgs);
        int e = h_marker_entries(msgs, n, &mk);

        for (int k = 0; k < e; k++) {
                if (strcmp(mk[k].source, "ad-clicks/0") == 0)
                        clicks = mk[k].event_time >= t;
                else if (strcmp(mk[k].source, "ad-impressions/0") == 0)
                        imps = mk[k].idle;
                else
                        convs = mk[k].idle;
        }
        free(mk);
        h_msgs_free(msgs, n);
        return clicks && imps && convs;
}

/* Polls until marked(t) holds; fails after ms. */
static void wait_marked(long long t, int ms)
{
        long long deadline = h_now_ms() + ms;

        while (!marked(t)) {
                cr_assert_lt(h_now_ms(), deadline,
                             "no markers for the future click after %d ms "
                             "(logs in %s)",
                             ms, H.dir);
                usleep(200 * 1000);
        }
}

/* Polls sg-ctl kpis until kol's channel row has clicks, invalid of
 * them, their spend and nothing else; fails after ms. */
static void wait_kol(long long clicks, long long invalid, int ms)
{
        json_t *want = json_pack(
            "[{s:s, s:I, s:I, s:I, s:I}]", "channel", "kol", "clicks",
            (json_int_t)clicks, "spend_micros", (json_int_t)(clicks * CPC),
            "invalid_clicks", (json_int_t)invalid, "invalid_spend_micros",
            (json_int_t)(invalid * CPC));
        char why[512] = "";
        json_t *got = h_kpis_wait(want, "kol", ms, why, sizeof(why));

        cr_assert_not_null(got, "kol: %s (logs in %s)", why, H.dir);
        json_decref(got);
        json_decref(want);
}

/*
 * Before the clock cap, the future click moved ad-clicks/0's progress to
 * its own time; with the empty inputs idle that was the watermark, less
 * 30 s of lateness: 3.5 minutes ahead of the clock. Every honest click
 * after it then fell in a KPI window already closed and was dead-lettered
 * `late`: kol would have counted 1 click, not 1 + NORMAL, sg.deadletter
 * would hold NORMAL + BOTS records, and no window would have seen the bots.
 * wait_marked() makes sure aggregate has the future click's marker before
 * the honest traffic starts, so the test cannot pass by reading it late.
 */
Test(future, an_event_from_4_minutes_ahead_blinds_neither_counts_nor_breaker)
{
        const char *args[] = {"kpis",  "--channel", "kol", "--from",
                              NULL,    "--json",    NULL};
        long long t0 = h_wall_ms();
        static char out[65536];
        char from[32], id[32];
        rd_kafka_message_t **msgs;
        sg_decision_t d;
        json_t *rows;
        int n;

        send_event("click", "future", t0 + AHEAD_MS, BROWSER);
        cr_assert_eq(h_flush(), 0);
        wait_marked(t0, 30000);
        h_wait_caught_up("aggregate", "sg.events", 30000);

        for (int i = 0; i < NORMAL; i++) {
                snprintf(id, sizeof(id), "normal-%d", i);
                send_event("click", id, h_wall_ms(), BROWSER);
        }
        cr_assert_eq(h_flush(), 0);
        wait_kol(1 + NORMAL, 0, 60000);

        for (int i = 0; i < BOTS; i++) {
                snprintf(id, sizeof(id), "bot-%d", i);
                send_event("click", id, h_wall_ms(),
                           sg_scn_bot_uas[i % sg_scn_bot_ua_cnt]);
        }
        cr_assert_eq(h_flush(), 0);
        wait_kol(1 + NORMAL + BOTS, BOTS, 60000);

        n = h_consume_all("ad-decisions", 1, 120000, &msgs);
        cr_assert_eq(n, 1, "decisions on ad-decisions: want 1, got %d", n);
        cr_assert_eq(sg_codec_decode_decision(h_codec(), msgs[0]->payload,
                                              msgs[0]->len, &d),
                     0);
        h_msgs_free(msgs, n);
        cr_assert_eq(d.action, SG_ACT_PAUSE);
        cr_assert_str_eq(d.channel, "kol");
        cr_assert_str_eq(d.rule_id, "ivt_circuit_breaker");

        /* The future click sits in its own bucket, 4 minutes ahead. */
        snprintf(from, sizeof(from), "%lld", t0 + AHEAD_MS / 2);
        args[4] = from;
        cr_assert_eq(h_run("sg-ctl", args, out, sizeof(out)), 0);
        rows = h_jsonl_text(out);
        cr_assert_eq(json_array_size(rows), 2, "%s", out); /* channel, c1 */
        for (size_t i = 0; i < json_array_size(rows); i++)
                cr_assert_eq(json_integer_value(json_object_get(
                                 json_array_get(rows, i), "clicks")),
                             1, "%s", out);
        json_decref(rows);

        n = h_consume_all("sg.deadletter", 0, 2000, &msgs);
        cr_assert_eq(n, 0, "%d dead letters, none expected (logs in %s)", n,
                     H.dir);
        h_msgs_free(msgs, n);
        cr_assert_eq(ingest_metric("events_future_total{type=\"click\"}"), 1);
}
