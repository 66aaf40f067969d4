/*
 * Watermark markers through the real stack (sg-broker, redis-server, the
 * four stages): sg-ingest writes, into every sg.events partition, a marker
 * for every input partition with the highest event time it forwarded from
 * it (capped at the clock, rejected records left out) and idle=1 once it
 * has read and acknowledged all of it; markers come after the events they
 * cover, are never dead-lettered, are not counted as events, and a
 * restarted ingest takes its inputs' idleness up from its committed
 * offsets.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "codec.h"
#include "harness.h"
#include "marker.h"

#define BROWSER                                                                \
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 "     \
        "Safari/537.36"

#define EVENT_PARTS 3
#define INPUTS      5
#define CHANNELS    3

/* The input partitions the broker is started with (setup). */
static const char *const inputs[INPUTS] = {
    "ad-impressions/0", "ad-impressions/1", "ad-clicks/0", "ad-clicks/1",
    "ad-conversions/0"};

static void setup(void)
{
        const char *broker_args[] = {
            "-t", "ad-impressions:2", "-t", "ad-clicks:2",
            "-t", "ad-conversions:1", "-t", "sg.events:3",
            "-t", "sg.deadletter",    "-t", "sg.aggregates",
            "-t", "sg.decisions",     "-t", "ad-decisions",
            "-t", "channel-kpis",     NULL};
        /* A restarted ingest rejoins within the session timeout. */
        const char *subst[] = {
            "  fetch.wait.max.ms: 10",
            "fetch.wait.max.ms: 10\n  session.timeout.ms: 6000", NULL};

        h_init();
        h_config(subst, NULL);
        h_start_infra_args(broker_args);
        h_start_stages();
}

TestSuite(watermark, .init = setup, .fini = h_stack_down, .timeout = 240);

/* Per channel, what aggregate must count. */
typedef struct truth {
        long long impressions, clicks, conversions, spend, revenue;
} truth_t;

static truth_t truth[CHANNELS];

/* Produces one JSON event of type to topic/partition; counts it in truth
 * unless money is negative (ingest rejects it: bad_value). */
static void produce(const char *topic, int partition, const char *type,
                    const char *id, long long t, int channel, long long money)
{
        char buf[512];
        int n;

        n = snprintf(buf, sizeof(buf),
                     "{\"type\":\"%s\",\"event_id\":\"%s\","
                     "\"event_time\":%lld,\"channel\":\"wm%d\","
                     "\"campaign_id\":\"c1\",\"%s\":%lld,"
                     "\"user_agent\":\"" BROWSER "\"}",
                     type, id, t, channel,
                     strcmp(type, "conversion") == 0 ? "revenue_micros"
                                                     : "cost_micros",
                     money);
        cr_assert_eq(h_produce_to(topic, partition, id, strlen(id), buf,
                                  (size_t)n),
                     0);
        if (money < 0)
                return;
        if (strcmp(type, "impression") == 0) {
                truth[channel].impressions++;
                truth[channel].spend += money;
        } else if (strcmp(type, "click") == 0) {
                truth[channel].clicks++;
                truth[channel].spend += money;
        } else {
                truth[channel].conversions++;
                truth[channel].revenue += money;
        }
}

/* What sg.events shows: per partition and input, the latest marker. */
typedef struct view {
        int have[EVENT_PARTS][INPUTS];
        sg_marker_t last[EVENT_PARTS][INPUTS];
        int events;
        int markers; /* entries: one input's word in one partition */
} view_t;

static int input_ix(const char *source)
{
        for (int x = 0; x < INPUTS; x++)
                if (strcmp(inputs[x], source) == 0)
                        return x;
        return -1;
}

/*
 * Reads sg.events from the beginning into v, asserting on the way that
 * every record is a marker or a NormalizedEvent, that markers name known
 * inputs, and that no event follows, in its partition, a marker for its
 * input that claims its event time (the inputs here are in event-time
 * order, so that would be a marker ahead of its events).
 */
static void view_read(sg_codec_t *codec, view_t *v)
{
        int64_t claimed[EVENT_PARTS][INPUTS];
        rd_kafka_message_t **msgs;
        int n;

        memset(v, 0, sizeof(*v));
        for (int p = 0; p < EVENT_PARTS; p++)
                for (int x = 0; x < INPUTS; x++)
                        claimed[p][x] = INT64_MIN;
        n = h_consume_all("sg.events", 0, 10000, &msgs);
        for (int i = 0; i < n; i++) {
                const rd_kafka_message_t *m = msgs[i];
                char err[256] = "", src[SG_MARKER_SOURCE_LEN];
                sg_marker_reader_t rd;
                sg_marker_t mk;
                sg_event_t ev;
                int rc = sg_marker_open(m, &rd, err, sizeof(err));
                int p = m->partition, x;

                cr_assert(p >= 0 && p < EVENT_PARTS);
                cr_assert_neq(rc, -1, "malformed marker at %d/%lld: %s", p,
                              (long long)m->offset, err);
                if (rc == 1) {
                        while (sg_marker_next(&rd, &mk)) {
                                x = input_ix(mk.source);
                                cr_assert_geq(x, 0,
                                              "marker for unknown input %s",
                                              mk.source);
                                v->have[p][x] = 1;
                                v->last[p][x] = mk;
                                if (mk.event_time > claimed[p][x])
                                        claimed[p][x] = mk.event_time;
                                v->markers++;
                        }
                        continue;
                }
                cr_assert_eq(sg_codec_decode_normalized(codec, m->payload,
                                                        m->len, &ev),
                             0, "sg.events %d/%lld: neither marker nor event",
                             p, (long long)m->offset);
                snprintf(src, sizeof(src), "%s/%d", ev.src_topic,
                         (int)ev.src_partition);
                x = input_ix(src);
                cr_assert_geq(x, 0, "event from unknown input %s", src);
                cr_assert_lt(claimed[p][x], (int64_t)ev.event_time,
                             "event %s (time %lld) on sg.events %d after a "
                             "marker for %s claiming %lld",
                             ev.event_id, (long long)ev.event_time, p, src,
                             (long long)claimed[p][x]);
                v->events++;
        }
        h_msgs_free(msgs, n);
}

/* 1 when every partition's latest marker for every input is (want[x],
 * idle); want[x] == -1: any value in [lo, hi] (the clock cap). */
static int view_is(const view_t *v, const int64_t *want, long long lo,
                   long long hi)
{
        for (int p = 0; p < EVENT_PARTS; p++)
                for (int x = 0; x < INPUTS; x++) {
                        const sg_marker_t *m = &v->last[p][x];

                        if (!v->have[p][x] || !m->idle)
                                return 0;
                        if (want[x] == -1 ? m->event_time < lo ||
                                                m->event_time > hi
                                          : m->event_time != want[x])
                                return 0;
                }
        return 1;
}

/* Polls sg.events until view_is() holds; fails with the last view. */
static void wait_markers(sg_codec_t *codec, view_t *v, const int64_t *want,
                         long long lo, long long hi, int timeout_ms)
{
        long long deadline = h_now_ms() + timeout_ms;

        for (;;) {
                view_read(codec, v);
                if (view_is(v, want, lo, hi))
                        return;
                if (h_now_ms() > deadline)
                        break;
                usleep(200 * 1000);
        }
        for (int p = 0; p < EVENT_PARTS; p++)
                for (int x = 0; x < INPUTS; x++)
                        cr_log_error("sg.events %d %s: have=%d event_time=%lld "
                                     "idle=%d want=%lld",
                                     p, inputs[x], v->have[p][x],
                                     (long long)v->last[p][x].event_time,
                                     v->last[p][x].idle, (long long)want[x]);
        cr_assert_fail("markers not as expected after %d ms", timeout_ms);
}

/* sg-ctl kpis matches truth (per channel). */
static void assert_kpis(void)
{
        json_t *want = json_array(), *got;
        char why[512] = "";

        for (int c = 0; c < CHANNELS; c++) {
                char ch[16];

                snprintf(ch, sizeof(ch), "wm%d", c);
                json_array_append_new(
                    want, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}",
                                    "channel", ch, "impressions",
                                    (json_int_t)truth[c].impressions, "clicks",
                                    (json_int_t)truth[c].clicks, "conversions",
                                    (json_int_t)truth[c].conversions,
                                    "spend_micros", (json_int_t)truth[c].spend,
                                    "revenue_micros",
                                    (json_int_t)truth[c].revenue));
        }
        got = h_kpis_wait(want, NULL, 60000, why, sizeof(why));
        cr_assert_not_null(got, "KPIs: %s", why);
        json_decref(got);
        json_decref(want);
}

static int total_events(void)
{
        int n = 0;

        for (int c = 0; c < CHANNELS; c++)
                n += (int)(truth[c].impressions + truth[c].clicks +
                           truth[c].conversions);
        return n;
}

Test(watermark, every_partition_gets_each_inputs_progress_and_idleness)
{
        /* Within 20 s of each other: the old watermark in aggregate finds
         * none of them late, whatever order it reads them in. */
        long long base = (h_wall_ms() - 600000) / 1000 * 1000;
        int64_t want[INPUTS];
        char schemas[512], err[256], id[64], hbuf[64];
        rd_kafka_message_t **msgs;
        sg_codec_t *codec;
        view_t v;
        pid_t ingest;
        int n;

        codec = sg_codec_new(h_src("schemas", schemas, sizeof(schemas)), err,
                             sizeof(err));
        cr_assert_not_null(codec, "%s", err);
        memset(truth, 0, sizeof(truth));

        for (int i = 0; i < 20; i++) {
                snprintf(id, sizeof(id), "wi0-%d", i);
                produce("ad-impressions", 0, "impression", id, base + i * 1000,
                        i % CHANNELS, 1000);
        }
        want[0] = base + 19000;
        for (int i = 0; i < 10; i++) {
                snprintf(id, sizeof(id), "wi1-%d", i);
                produce("ad-impressions", 1, "impression", id,
                        base + 8000 + i * 1000, (i + 1) % CHANNELS, 1000);
        }
        want[1] = base + 17000;
        for (int i = 0; i < 15; i++) {
                snprintf(id, sizeof(id), "wc0-%d", i);
                produce("ad-clicks", 0, "click", id, base + 11000 + i * 500,
                        i % CHANNELS, 200000);
        }
        want[2] = base + 18000;
        want[3] = INT64_MIN; /* ad-clicks/1: nothing, idle from the start */
        for (int i = 0; i < 5; i++) {
                snprintf(id, sizeof(id), "wv0-%d", i);
                produce("ad-conversions", 0, "conversion", id,
                        base + 10000 + i * 1000, i % CHANNELS, 5000000);
        }
        /* Rejected (bad_value), later than the rest: not progress. */
        produce("ad-conversions", 0, "conversion", "wv0-bad", base + 19900, 0,
                -5);
        want[4] = base + 14000;

        wait_markers(codec, &v, want, 0, 0, 60000);
        cr_assert_eq(v.events, total_events(),
                     "sg.events holds %d events, %d produced and accepted",
                     v.events, total_events());
        cr_assert_geq(v.markers, EVENT_PARTS * INPUTS);

        /* The rejected record alone is dead-lettered: no marker there. */
        n = h_consume_all("sg.deadletter", 1, 10000, &msgs);
        cr_assert_eq(n, 1, "%d dead letters, 1 expected", n);
        cr_assert_str_eq(h_header(msgs[0], "sg.error", hbuf, sizeof(hbuf)),
                         "bad_value");
        cr_assert_str_eq(h_header(msgs[0], SG_MARKER_HEADER, hbuf,
                                  sizeof(hbuf)),
                         "");
        h_msgs_free(msgs, n);
        /* Aggregate counts the events, and only them. */
        assert_kpis();

        /*
         * A restarted ingest resumes from its committed offsets: it has
         * acknowledged nothing yet, so its markers carry no progress (lower
         * than before: aggregate keeps the highest per input), and every
         * input is idle again at once, from the committed offsets.
         */
        ingest = h_pid("sg-ingest");
        cr_assert_eq(h_stop(ingest), 0);
        h_spawn("sg-ingest", NULL);
        for (int x = 0; x < INPUTS; x++)
                want[x] = INT64_MIN;
        wait_markers(codec, &v, want, 0, 0, 60000);

        produce("ad-impressions", 0, "impression", "wi0-late", base + 19500, 1,
                1000);
        want[0] = base + 19500;
        wait_markers(codec, &v, want, 0, 0, 60000);
        cr_assert_eq(v.events, total_events());
        assert_kpis();

        n = h_consume_all("sg.deadletter", 1, 2000, &msgs);
        cr_assert_eq(n, 1, "%d dead letters, 1 expected", n);
        h_msgs_free(msgs, n);
        sg_codec_destroy(codec);
}

Test(watermark, an_event_from_the_future_moves_its_input_only_to_the_clock)
{
        long long base = (h_wall_ms() - 600000) / 1000 * 1000, before, after;
        long long future = h_wall_ms() + 120000;
        int64_t want[INPUTS] = {INT64_MIN, INT64_MIN, -1, base, INT64_MIN};
        char schemas[512], err[256];
        sg_codec_t *codec;
        view_t v;

        codec = sg_codec_new(h_src("schemas", schemas, sizeof(schemas)), err,
                             sizeof(err));
        cr_assert_not_null(codec, "%s", err);
        memset(truth, 0, sizeof(truth));

        before = h_wall_ms();
        /* Accepted (within ingest.future_tolerance_s) and counted. */
        produce("ad-clicks", 0, "click", "wf-1", future, 0, 200000);
        produce("ad-clicks", 1, "click", "wf-2", base, 0, 200000);
        /* ad-clicks/0: when ingest processed the click, no later. */
        wait_markers(codec, &v, want, before, future - 1, 60000);
        after = h_wall_ms();
        for (int p = 0; p < EVENT_PARTS; p++)
                cr_assert_leq(v.last[p][2].event_time, after,
                              "ad-clicks/0 progress %lld past the clock %lld",
                              (long long)v.last[p][2].event_time, after);
        cr_assert_eq(v.events, 2);
        sg_codec_destroy(codec);
}

/* ------------------------------------------------ idle_ms: 0, in a backlog */

#define BACKLOG 50000

static void setup_backlog(void)
{
        const char *subst[] = {"  idle_ms: 5000", "idle_ms: 0", NULL};

        h_init();
        h_config(subst, NULL);
        h_start_infra();
}

TestSuite(idle, .init = setup_backlog, .fini = h_stack_down, .timeout = 240);

/*
 * ingest.idle_ms: 0 makes an input idle as soon as it is caught up, never
 * before: with 50,000 clicks waiting in ad-clicks/0 when ingest starts,
 * no marker may call that input idle before it says the last click's time
 * (an input called idle in its backlog stops holding the watermark: the
 * other inputs' progress runs ahead and its own events are dead-lettered
 * as late, as redis_bound_test saw by chance).
 */
Test(idle, an_input_with_a_backlog_is_not_idle_until_caught_up)
{
        long long t0 = h_wall_ms() - 3600 * 1000, last = t0 + BACKLOG - 1;
        rd_kafka_message_t **msgs;
        sg_marker_t *mk;
        int n, e, entries = 0, idle_early = 0, idle_last = 0;
        char buf[256];
        pid_t ingest;

        for (int i = 0; i < BACKLOG; i++) {
                int len = snprintf(buf, sizeof(buf),
                                   "{\"type\":\"click\",\"event_id\":\"b%d\","
                                   "\"event_time\":%lld,\"channel\":\"bk\","
                                   "\"campaign_id\":\"c1\",\"cost_micros\":1,"
                                   "\"user_agent\":\"" BROWSER "\"}",
                                   i, t0 + i);
                cr_assert_eq(h_produce_async("ad-clicks", 0, "bk", 2, buf,
                                             (size_t)len),
                             0);
        }
        cr_assert_eq(h_flush(), 0);
        ingest = h_spawn("sg-ingest", NULL);
        h_wait_caught_up("ingest", "ad-clicks", 120000);
        cr_assert_eq(h_stop(ingest), 0);

        n = h_consume_all("sg.events", BACKLOG, 30000, &msgs);
        e = h_marker_entries(msgs, n, &mk);
        for (int k = 0; k < e; k++) {
                if (strcmp(mk[k].source, "ad-clicks/0") != 0)
                        continue;
                entries++;
                if (mk[k].idle && mk[k].event_time != last)
                        idle_early++;
                if (mk[k].idle && mk[k].event_time == last)
                        idle_last++;
        }
        free(mk);
        h_msgs_free(msgs, n);
        cr_assert_gt(entries, 0, "no marker for ad-clicks/0");
        cr_assert_eq(idle_early, 0,
                     "%d of %d markers for ad-clicks/0 call it idle before "
                     "its last click",
                     idle_early, entries);
        /* Once caught up, it is idle (the stop sends a last marker). */
        cr_assert_gt(idle_last, 0, "ad-clicks/0 never idle");
}
