/*
 * aggregate through the real stack (sg-broker, redis-server, the stages):
 * event-time windows and the watermark (out of order within the lateness,
 * late events dead-lettered, an idle input partition not stalling window
 * closing), the behavioural signals of a snapshot, and Redis round trips
 * per batch that do not grow with the events in the batch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "codec.h"
#include "harness.h"

#define BROWSER                                                                \
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 "     \
        "Safari/537.36"

/* A minute boundary two hours ago: every window of the test is in the
 * past, none crosses a minute it should not. */
static long long base_time(void)
{
        long long t = (long long)time(NULL) * 1000 - 2 * 3600 * 1000;

        return t - t % 60000;
}

static sg_codec_t *codec;

static void codec_open(void)
{
        char schemas[512], err[256];

        codec = sg_codec_new(h_src("schemas", schemas, sizeof(schemas)), err,
                             sizeof(err));
        cr_assert_not_null(codec, "%s", err);
}

/* Produces one JSON event to topic's partition; extra is more members. */
static void produce(const char *topic, int partition, const char *type,
                    const char *id, const char *channel, long long t,
                    const char *extra)
{
        char buf[1024];
        int n = snprintf(buf, sizeof(buf),
                         "{\"type\":\"%s\",\"event_id\":\"%s\","
                         "\"event_time\":%lld,\"channel\":\"%s\","
                         "\"campaign_id\":\"c1\"%s%s}",
                         type, id, t, channel, extra[0] ? "," : "", extra);

        cr_assert_eq(h_produce_to(topic, partition, channel, strlen(channel),
                                  buf, (size_t)n),
                     0, "produce %s", id);
}

static void click(int partition, const char *id, const char *channel,
                  long long t)
{
        produce("ad-clicks", partition, "click", id, channel, t,
                "\"cost_micros\":1000,\"user_agent\":\"" BROWSER "\"");
}

/* Many clicks of channel at t0 + i ms, acknowledged at the end. */
static void clicks_bulk(const char *prefix, const char *channel, int cnt,
                        long long t0)
{
        char buf[512];

        for (int i = 0; i < cnt; i++) {
                int n = snprintf(buf, sizeof(buf),
                                 "{\"type\":\"click\",\"event_id\":\"%s-%d\","
                                 "\"event_time\":%lld,\"channel\":\"%s\","
                                 "\"campaign_id\":\"c1\",\"cost_micros\":1000}",
                                 prefix, i, t0 + i, channel);
                cr_assert_eq(h_produce_async("ad-clicks", 0, channel,
                                             strlen(channel), buf, (size_t)n),
                             0);
        }
        cr_assert_eq(h_flush(), 0);
}

/* The channel-level row of `sg-ctl kpis --json --channel C [--from
 * --to]`: its clicks, or -1 when there is none. */
static long long channel_clicks(const char *channel, long long from,
                                long long to)
{
        char f[32], t[32];
        const char *args[] = {"kpis", "--json", "--channel", channel, "--from",
                              f,      "--to",   t,           NULL};
        static char out[1 << 16];
        long long clicks = -1;
        json_t *arr, *row;
        size_t i;

        snprintf(f, sizeof(f), "%lld", from);
        snprintf(t, sizeof(t), "%lld", to);
        if (from < 0)
                args[4] = NULL;
        cr_assert_eq(h_run("sg-ctl", args, out, sizeof(out)), 0,
                     "sg-ctl kpis failed (log: %s/sg-ctl.log)", H.dir);
        arr = h_jsonl_text(out);
        json_array_foreach(arr, i, row)
        {
                if (json_is_null(json_object_get(row, "campaign_id")))
                        clicks =
                            json_integer_value(json_object_get(row, "clicks"));
        }
        json_decref(arr);
        return clicks;
}

static void wait_clicks(const char *channel, long long want)
{
        long long deadline = h_now_ms() + 60000, got;

        while ((got = channel_clicks(channel, -1, -1)) != want) {
                cr_assert_lt(h_now_ms(), deadline,
                             "%s: want %lld clicks, got %lld (logs in %s)",
                             channel, want, got, H.dir);
                usleep(200 * 1000);
        }
}

/* --------------------------------------------------------- watermark */

static void setup_stack(void)
{
        /* An input partition without events for 2 s (and read to its end)
         * stops holding the watermark back. */
        const char *subst[] = {
                               "  max_scopes: 10000", "max_scopes: 10", NULL};

        h_init();
        h_config(subst, NULL);
        h_start_infra();
        h_start_stages();
        codec_open();
}

static void teardown_stack(void)
{
        sg_codec_destroy(codec);
        h_stack_down();
}

TestSuite(aggregate, .init = setup_stack, .fini = teardown_stack,
          .timeout = 300);

/* Polls channel-kpis for the channel-level final row of channel's window
 * starting at ws; returns its clicks. */
static long long final_clicks(const char *channel, long long ws)
{
        long long deadline = h_now_ms() + 60000;

        for (;;) {
                rd_kafka_message_t **msgs;
                int n = h_consume_all("channel-kpis", 1, 2000, &msgs);
                long long clicks = -1;

                for (int i = 0; i < n; i++) {
                        sg_snapshot_t k;

                        if (sg_codec_decode_kpi(codec, msgs[i]->payload,
                                                msgs[i]->len, &k) == 0 &&
                            !strcmp(k.channel, channel) && !k.campaign_id[0] &&
                            k.window_start == ws) {
                                cr_assert_eq(clicks, -1,
                                             "two final rows for %s at %lld",
                                             channel, ws);
                                clicks = k.c.clicks;
                        }
                }
                h_msgs_free(msgs, n);
                if (clicks >= 0)
                        return clicks;
                cr_assert_lt(h_now_ms(), deadline,
                             "no final row for %s at %lld (logs in %s)",
                             channel, ws, H.dir);
        }
}

Test(aggregate, watermark_orders_out_of_order_late_and_idle_partitions)
{
        long long t0 = base_time();
        rd_kafka_message_t **msgs;
        int n, late = 0;
        char hbuf[256];

        /* Two input partitions of ad-clicks; all the others never send. */
        click(0, "wm-1", "wmk", t0 + 5000);
        click(1, "wm-2", "wmk", t0 + 20000);
        wait_clicks("wmk", 2);

        /* Partition 0 moves on to t0+100 s; partition 1 goes quiet. Once it
         * is idle the watermark is t0+100-30 = t0+70 s and the minute
         * [t0, t0+60 s) closes with its two clicks: the quiet partition
         * does not stall it. */
        click(0, "wm-3", "wmk", t0 + 100000);
        cr_assert_eq(final_clicks("wmk", t0), 2);

        /* Out of order within the lateness: t0+95 s is behind partition
         * 0's t0+100 s but its minute is still open: counted, in its own
         * bucket. Partition 1 wakes up with t0+30 s, in the closed minute:
         * late, dead-lettered, not counted. */
        click(0, "wm-4", "wmk", t0 + 95000);
        click(1, "wm-5", "wmk", t0 + 30000);
        wait_clicks("wmk", 4);
        cr_assert_eq(channel_clicks("wmk", t0 + 90000, t0 + 100000), 1);
        cr_assert_eq(channel_clicks("wmk", t0 + 100000, t0 + 110000), 1);
        cr_assert_eq(channel_clicks("wmk", t0, t0 + 60000), 2);

        n = h_consume_all("sg.deadletter", 1, 30000, &msgs);
        for (int i = 0; i < n; i++) {
                h_header(msgs[i], "sg.error", hbuf, sizeof(hbuf));
                cr_assert_str_eq(hbuf, "late");
                /* aggregate dead-letters the sg.events record. */
                cr_assert(memmem(msgs[i]->payload, msgs[i]->len, "wm-5", 4));
                late++;
        }
        h_msgs_free(msgs, n);
        cr_assert_eq(late, 1, "late dead letters: want 1, got %d", late);
        /* The closed minute was final once and stays as it was. */
        cr_assert_eq(final_clicks("wmk", t0), 2);
        cr_assert_eq(channel_clicks("wmk", -1, -1), 4);
}

/* ------------------------------------------------------------ bounds */

/* The campaign-level clicks of `sg-ctl kpis --channel C` by campaign. */
static json_t *campaign_clicks(const char *channel)
{
        json_t *arr = h_kpis(channel), *out = json_object(), *row;
        size_t i;

        json_array_foreach(arr, i, row)
        {
                json_t *c = json_object_get(row, "campaign_id");
                if (json_is_string(c))
                        json_object_set(out, json_string_value(c),
                                        json_object_get(row, "clicks"));
        }
        json_decref(arr);
        return out;
}

Test(aggregate, scopes_past_the_bound_are_counted_as_other)
{
        long long t0 = base_time();
        char id[32], camp[64], buf[512];
        json_t *got;

        /* max_scopes 10: the channel and 9 campaigns; the other 6
         * campaigns are counted in ovf|_other, nothing is lost. */
        for (int i = 0; i < 15; i++) {
                int n;

                snprintf(id, sizeof(id), "ov-%d", i);
                snprintf(camp, sizeof(camp), "k%02d", i);
                n = snprintf(buf, sizeof(buf),
                             "{\"type\":\"click\",\"event_id\":\"%s\","
                             "\"event_time\":%lld,\"channel\":\"ovf\","
                             "\"campaign_id\":\"%s\",\"cost_micros\":1000,"
                             "\"user_agent\":\"" BROWSER "\"}",
                             id, t0 + i * 100, camp);
                cr_assert_eq(
                    h_produce_async("ad-clicks", 0, "ovf", 3, buf, (size_t)n),
                    0);
        }
        cr_assert_eq(h_flush(), 0);
        wait_clicks("ovf", 15);
        got = campaign_clicks("ovf");
        cr_assert_eq(json_object_size(got), 10, "%s",
                     json_dumps(got, JSON_COMPACT));
        for (int i = 0; i < 9; i++) {
                snprintf(camp, sizeof(camp), "k%02d", i);
                cr_assert_eq(json_integer_value(json_object_get(got, camp)), 1,
                             "%s", camp);
        }
        cr_assert_eq(json_integer_value(json_object_get(got, "_other")), 6);
        json_decref(got);
}

/* ----------------------------------------------------------- signals */

/* The newest non-final snapshot of (channel, "", window) ending at end. */
static sg_snapshot_t wait_snapshot(const char *channel, const char *window,
                                   long long end)
{
        long long deadline = h_now_ms() + 60000;
        sg_snapshot_t s, found;

        for (;;) {
                rd_kafka_message_t **msgs;
                int n = h_consume_all("sg.aggregates", 1, 2000, &msgs), hit = 0;

                for (int i = 0; i < n; i++)
                        if (sg_codec_decode_snapshot(codec, msgs[i]->payload,
                                                     msgs[i]->len, &s) == 0 &&
                            !s.final && !strcmp(s.channel, channel) &&
                            !s.campaign_id[0] && !strcmp(s.window, window) &&
                            s.window_end == end) {
                                found = s;
                                hit++;
                        }
                h_msgs_free(msgs, n);
                cr_assert_leq(hit, 1, "%d snapshots of %s %s at %lld", hit,
                              channel, window, end);
                if (hit)
                        return found;
                cr_assert_lt(h_now_ms(), deadline,
                             "no %s snapshot of %s ending at %lld (logs in %s)",
                             window, channel, end, H.dir);
        }
}

Test(aggregate, snapshots_carry_the_behavioural_signals)
{
        long long t0 = base_time();
        char id[32], extra[256];
        sg_snapshot_t s;
        long long top_sum = 0;

        /* Impressions: device d1 five times (cap 3: two over), d2 once. */
        for (int i = 0; i < 6; i++) {
                snprintf(id, sizeof(id), "si-%d", i);
                snprintf(extra, sizeof(extra),
                         "\"cost_micros\":1000,\"device_id\":\"%s\","
                         "\"ip\":\"100.64.0.20\",\"user_agent\":\"" BROWSER
                         "\"",
                         i < 5 ? "d1" : "d2");
                produce("ad-impressions", 0, "impression", id, "sig",
                        t0 + 12000 + i * 100, extra);
        }
        /* Clicks: six from one IP and device, two from another (the
         * second a duplicate click on the same ad), a bot, a data-center
         * IP, one without a user agent. */
        static const struct {
                const char *ip, *dev, *ua, *ad;
        } clicks[] = {
            {"100.64.0.7", "dA", BROWSER, "a1"},
            {"100.64.0.7", "dA", BROWSER, "a2"},
            {"100.64.0.7", "dA", BROWSER, "a3"},
            {"100.64.0.7", "dA", BROWSER, "a4"},
            {"100.64.0.7", "dA", BROWSER, "a5"},
            {"100.64.0.7", "dA", BROWSER, "a6"},
            {"100.64.0.8", "dB", BROWSER, "a9"},
            {"100.64.0.8", "dB", BROWSER, "a9"},
            {"100.64.0.9", "dC", "Googlebot/2.1", "b1"},
            {"203.0.113.5", "dD", BROWSER, "b2"},
            {"100.64.0.10", "dE", NULL, "b3"},
        };
        for (int i = 0; i < 11; i++) {
                int k = snprintf(extra, sizeof(extra),
                                 "\"cost_micros\":50000,\"device_id\":\"%s\","
                                 "\"ip\":\"%s\",\"ad_id\":\"%s\"",
                                 clicks[i].dev, clicks[i].ip, clicks[i].ad);
                if (clicks[i].ua)
                        snprintf(extra + k, sizeof(extra) - k,
                                 ",\"user_agent\":\"%s\"", clicks[i].ua);
                snprintf(id, sizeof(id), "sk-%d", i + 1);
                produce("ad-clicks", 0, "click", id, "sig", t0 + (i + 1) * 1000,
                        extra);
        }
        /* The clicks are applied before their conversions arrive. */
        wait_clicks("sig", 11);
        /* 5 s after click 1, 38 s after click 2, an unknown click, none. */
        produce("ad-conversions", 0, "conversion", "sv-1", "sig", t0 + 6000,
                "\"revenue_micros\":1000,\"click_id\":\"sk-1\"");
        produce("ad-conversions", 0, "conversion", "sv-2", "sig", t0 + 40000,
                "\"revenue_micros\":1000,\"click_id\":\"sk-2\"");
        produce("ad-conversions", 0, "conversion", "sv-3", "sig", t0 + 41000,
                "\"revenue_micros\":1000,\"click_id\":\"nope\"");
        produce("ad-conversions", 0, "conversion", "sv-4", "sig", t0 + 42000,
                "\"revenue_micros\":1000");
        /* Moves the watermark to t0+170 s once the rest is idle. */
        produce("ad-impressions", 0, "impression", "si-tick", "sig",
                t0 + 200000, "\"cost_micros\":0");

        s = wait_snapshot("sig", "5m", t0 + 170000);
        cr_assert_eq(s.window_start, t0 + 170000 - 300000);
        cr_assert_eq(s.c.impressions, 6);
        cr_assert_eq(s.c.clicks, 11);
        cr_assert_eq(s.c.conversions, 4);
        cr_assert_eq(s.c.spend_micros, 6 * 1000 + 11 * 50000);
        cr_assert_eq(s.c.revenue_micros, 4000);
        cr_assert_eq(s.c.invalid_clicks, 4);
        cr_assert_eq(s.c.invalid_impressions, 0);
        cr_assert_eq(s.c.unique_devices, 7);
        cr_assert_eq(s.x.unique_ips, 6);
        cr_assert_eq(s.x.ivt_bot_ua, 1);
        cr_assert_eq(s.x.ivt_dc_ip, 1);
        cr_assert_eq(s.x.ivt_no_ua, 1);
        cr_assert_eq(s.x.ivt_dup_click, 1);
        cr_assert_eq(s.x.freq_cap_impressions, 2);
        cr_assert_eq(s.x.ctc_lt_10s, 1);
        cr_assert_eq(s.x.ctc_lt_1m, 1);
        cr_assert_eq(s.x.ctc_lt_1h, 0);
        cr_assert_eq(s.x.ctc_ge_1h, 0);
        cr_assert_eq(s.x.conversions_no_click, 2);
        cr_assert_eq(s.x.source_clicks_untracked, 0);
        /* Ten sources; ties by name, descending. */
        cr_assert_eq(s.top_cnt, 10);
        cr_assert_str_eq(s.top[0].source, "ip:100.64.0.7");
        cr_assert_eq(s.top[0].clicks, 6);
        cr_assert_str_eq(s.top[1].source, "device:dA");
        cr_assert_eq(s.top[1].clicks, 6);
        cr_assert_str_eq(s.top[2].source, "ip:100.64.0.8");
        cr_assert_eq(s.top[2].clicks, 2);
        cr_assert_str_eq(s.top[3].source, "device:dB");
        cr_assert_eq(s.top[3].clicks, 2);
        for (int i = 0; i < s.top_cnt; i++)
                top_sum += s.top[i].clicks;
        cr_assert_eq(top_sum, 22);

        /* The one-minute window ending at t0+170 s holds none of it. */
        s = wait_snapshot("sig", "1m", t0 + 170000);
        cr_assert_eq(s.window_start, t0 + 110000);
        cr_assert_eq(s.c.impressions, 0);
        cr_assert_eq(s.c.clicks, 0);
        cr_assert_eq(s.top_cnt, 0);
}

/* ------------------------------------------------------- round trips */

static void setup_infra(void)
{
        /* A restarted ingest rejoins within the session timeout. */
        const char *subst[] = {
            "  fetch.wait.max.ms: 10",
            "fetch.wait.max.ms: 10\n  session.timeout.ms: 6000", NULL};

        h_init();
        h_config(subst, NULL);
        h_start_infra();
        codec_open();
}

/* Records sg.events holds: events and ingest's watermark markers. */
static long long events_records(void)
{
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        const struct rd_kafka_metadata *md;
        long long sum = 0;
        char err[256];
        rd_kafka_t *rk;

        rd_kafka_conf_set(c, "bootstrap.servers", H.bootstrap, err,
                          sizeof(err));
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
        cr_assert_not_null(rk, "%s", err);
        {
                rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, "sg.events",
                                                           NULL);

                cr_assert_eq(rd_kafka_metadata(rk, 0, rkt, &md, 5000), 0);
                rd_kafka_topic_destroy(rkt);
        }
        cr_assert_eq(md->topic_cnt, 1);
        for (int p = 0; p < md->topics[0].partition_cnt; p++) {
                int64_t lo, hi;

                cr_assert_eq(rd_kafka_query_watermark_offsets(
                                 rk, "sg.events", p, &lo, &hi, 5000),
                             0);
                sum += hi;
        }
        rd_kafka_metadata_destroy(md);
        rd_kafka_destroy(rk);
        return sum;
}

/* sg-ingest writes cnt clicks of channel to sg.events and stops: what it
 * wrote (watermark markers too) is then all sg.events holds. */
static void ingest_clicks(const char *prefix, const char *channel, int cnt,
                          long long t0)
{
        pid_t pid = h_spawn("sg-ingest", NULL);

        clicks_bulk(prefix, channel, cnt, t0);
        h_wait_caught_up("ingest", "ad-clicks", 60000);
        cr_assert_eq(h_stop(pid), 0);
}

TestSuite(aggregate_rt, .init = setup_infra, .fini = teardown_stack,
          .timeout = 300);

/* Runs sg-aggregate over what sg.events holds, with batches of exactly
 * batch events (no linger: a batch fills to its size) and a checkpoint
 * every ckpt_ms under load, until channel has
 * want clicks; stops it and returns its stop line's batches, batch_events
 * and batch_round_trips. */
static void aggregate_once(int batch, int ckpt_ms, const char *channel,
                           long long want, long long out[3])
{
        char size[96], line[512], path[512];
        const char *subst[] = {"  batch_size: 5000",
                               size,
                               "  batch_ms: 100",
                               "batch_ms: 10000",
                               "batch_linger_ms:",
                               "batch_linger_ms: -1",
                               NULL};
        pid_t pid;
        FILE *fp;

        /* (aggregate's batch_size is the only 5000) */
        snprintf(size, sizeof(size), "batch_size: %d\n  checkpoint_ms: %d",
                 batch, ckpt_ms);
        h_config(subst, NULL);
        pid = h_spawn("sg-aggregate", NULL);
        wait_clicks(channel, want);
        cr_assert_eq(h_stop(pid), 0);
        snprintf(path, sizeof(path), "%s/sg-aggregate.log", H.dir);
        fp = fopen(path, "r");
        cr_assert_not_null(fp);
        out[0] = -1;
        while (fgets(line, sizeof(line), fp)) {
                const char *at = strstr(line, "batches=");
                if (strstr(line, "event=stop") && at)
                        cr_assert_eq(sscanf(at,
                                            "batches=%lld batch_events=%lld "
                                            "batch_round_trips=%lld",
                                            &out[0], &out[1], &out[2]),
                                     3);
        }
        fclose(fp);
        cr_assert_neq(out[0], -1, "no stop line in %s", path);
}

Test(aggregate_rt, redis_round_trips_per_batch_do_not_grow_with_events)
{
        long long t0 = base_time(), small[3], big[3], before;

        /* A batch is exactly the records written: the events and ingest's
         * watermark markers (not events, and no script call). */
        ingest_clicks("rs", "rt-small", 100, t0);
        before = events_records();
        aggregate_once((int)before, 0, "rt-small", 100, small);

        ingest_clicks("rb", "rt-big", 10000, t0);
        aggregate_once((int)(events_records() - before), 0, "rt-big", 10000,
                       big);

        /* One batch each (exactly the records written), and one round
         * trip for it: the partitions' checkpoints, pipelined (the
         * watermark markers reach all 4), whatever the events: 100 or
         * 10,000. */
        cr_assert_eq(small[0], 1);
        cr_assert_eq(big[0], 1);
        cr_assert_eq(small[2], 1, "%lld round trips", small[2]);
        cr_assert_eq(big[2], 1, "%lld round trips", big[2]);
}

/* Under load, a checkpoint every aggregate.checkpoint_ms, not every
 * batch: batches of 100 records, a checkpoint interval longer than the
 * test, and the only checkpoint a batch waits for is the first one (the
 * next is written when aggregate has caught up). Every click counted. */
Test(aggregate_rt, checkpoints_come_every_checkpoint_ms_not_every_batch)
{
        long long t0 = base_time(), out[3], records;

        ingest_clicks("ck", "rt-ckpt", 3000, t0);
        records = events_records();
        aggregate_once(100, 600000, "rt-ckpt", 3000, out);
        cr_assert_eq(out[0], (records + 99) / 100, "%lld batches for %lld",
                     out[0], records);
        cr_assert_eq(out[1], records);
        cr_assert_eq(out[2], 1, "%lld round trips", out[2]);
}

/* ------------------------------------------------- account time zone */

static void setup_tz(void)
{
        const char *subst[] = {"  idle_s: 10", "idle_s: 2", "  tz_offset_min: 0",
                               "tz_offset_min: 0\n  tz: America/New_York",
                               NULL};

        h_init();
        h_config(subst, NULL);
        h_start_infra();
        h_start_stages();
        codec_open();
}

TestSuite(aggregate_tz, .init = setup_tz, .fini = teardown_stack,
          .timeout = 300);

/* Local midnight of the day holding t (ms) in zone, by glibc's own tz
 * code: an oracle independent of lib/tz.c. */
static long long glibc_day_start(const char *zone, long long t)
{
        time_t s = (time_t)(t / 1000);
        struct tm tm;

        setenv("TZ", zone, 1);
        tzset();
        localtime_r(&s, &tm);
        tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        tm.tm_isdst = -1;
        s = mktime(&tm);
        unsetenv("TZ");
        tzset();
        return (long long)s * 1000;
}

/*
 * aggregate.tz: America/New_York: the today window starts at midnight in
 * New York (05:00Z in winter, 04:00Z in summer), not at UTC midnight.
 */
Test(aggregate_tz, today_starts_at_midnight_in_the_account_time_zone)
{
        long long t0 = base_time(), end = t0 + 170000;
        sg_snapshot_t s;

        click(0, "tz-1", "tzc", t0 + 1000);
        /* Moves the watermark to t0+170 s once the rest is idle. */
        produce("ad-impressions", 0, "impression", "tz-tick", "tzc",
                t0 + 200000, "\"cost_micros\":0");
        s = wait_snapshot("tzc", "today", end);
        cr_assert_eq(s.window_start,
                     glibc_day_start("America/New_York", end - 1),
                     "today starts at %lld, not at New York's midnight %lld "
                     "(UTC midnight: %lld)",
                     (long long)s.window_start,
                     glibc_day_start("America/New_York", end - 1),
                     (end - 1) - (end - 1) % 86400000);
}
