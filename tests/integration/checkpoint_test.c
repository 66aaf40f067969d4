/*
 * aggregate's state in memory and its checkpoint in Redis, against the
 * review's findings (../shared/reviews/correctness-ace1912.md): a Redis
 * that lost writes is detected and redone (F4), a batch of 10,000
 * conversions naming unknown clicks is counted (F9), a failed checkpoint is
 * redone without turning its own events late (F11), eight windows and a
 * restart (F17), a backlog read at different speeds per sg.events
 * partition loses nothing as late (F1), and snapshots whose delivery
 * failed are sent again, not lost (F8).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>

#include "codec.h"
#include "harness.h"

/* A minute boundary two hours ago. */
static long long base_time(void)
{
        long long t = (long long)time(NULL) * 1000 - 2 * 3600 * 1000;

        return t - t % 60000;
}

static void redis_do(const char *cmd)
{
        redisContext *c = redisConnectUnix(H.redis_sock);
        redisReply *r;

        cr_assert(c && !c->err);
        r = redisCommand(c, cmd);
        cr_assert(r && r->type != REDIS_REPLY_ERROR, "%s: %s", cmd,
                  r ? r->str : "no reply");
        freeReplyObject(r);
        redisFree(c);
}

/* cnt JSON events of type on topic's partition, ids prefix-i, at t0 + i *
 * step_ms, acknowledged at the end. */
static void bulk(const char *topic, int partition, const char *type,
                 const char *prefix, const char *channel, int cnt,
                 long long t0, long long step_ms, const char *extra)
{
        char buf[512];

        for (int i = 0; i < cnt; i++) {
                int n = snprintf(buf, sizeof(buf),
                                 "{\"type\":\"%s\",\"event_id\":\"%s-%d\","
                                 "\"event_time\":%lld,\"channel\":\"%s\","
                                 "\"campaign_id\":\"c1\",\"device_id\":"
                                 "\"d%d\"%s}",
                                 type, prefix, i, t0 + i * step_ms, channel,
                                 i % 97, extra);
                cr_assert_eq(h_produce_async(topic, partition, channel,
                                             strlen(channel), buf, (size_t)n),
                             0);
        }
        cr_assert_eq(h_flush(), 0);
}

/* field of the channel-level row of `sg-ctl kpis --channel C`; -1 none. */
static long long kpi(const char *channel, const char *field)
{
        json_t *arr = h_kpis(channel), *row;
        long long v = -1;
        size_t i;

        json_array_foreach(arr, i, row)
        {
                if (json_is_null(json_object_get(row, "campaign_id")))
                        v = json_integer_value(json_object_get(row, field));
        }
        json_decref(arr);
        return v;
}

static void wait_kpi(const char *channel, const char *field, long long want,
                     int ms)
{
        long long deadline = h_now_ms() + ms, got;

        while ((got = kpi(channel, field)) != want) {
                cr_assert_lt(h_now_ms(), deadline,
                             "%s %s: want %lld, got %lld (logs in %s)",
                             channel, field, want, got, H.dir);
                usleep(200 * 1000);
        }
}

static void wait_log(const char *name, const char *needle, int ms)
{
        long long deadline = h_now_ms() + ms;

        while (!h_log_count(name, needle)) {
                cr_assert_lt(h_now_ms(), deadline,
                             "no %s in %s's log within %d ms (logs in %s)",
                             needle, name, ms, H.dir);
                usleep(100 * 1000);
        }
}

/* Records on sg.deadletter with sg.error=late. */
static int late_dead_letters(void)
{
        rd_kafka_message_t **msgs;
        char buf[64];
        int n = h_consume_all("sg.deadletter", 0, 3000, &msgs), late = 0;

        for (int i = 0; i < n; i++)
                late += !strcmp(
                    h_header(msgs[i], "sg.error", buf, sizeof(buf)), "late");
        h_msgs_free(msgs, n);
        return late;
}

TestSuite(checkpoint, .fini = h_stack_down, .timeout = 400);

/*
 * F4: Redis restarts from an older snapshot while aggregate runs (RDB, or
 * appendfsync everysec losing its last second). Before, the next batch
 * was applied on top of the rolled-back offset and the batches in between
 * were lost; now the checkpoint is fenced, the partition reloaded from
 * what Redis holds and consumed again from there.
 */
Test(checkpoint, a_redis_rolled_back_to_an_older_snapshot_is_redone)
{
        long long t0 = base_time();
        int resumed;

        h_init();
        h_start_infra();
        h_start_stages();
        bulk("ad-clicks", 0, "click", "rb1", "rollback", 100, t0, 10,
             ",\"cost_micros\":1000");
        wait_kpi("rollback", "clicks", 100, 60000);
        redis_do("SAVE");
        bulk("ad-clicks", 0, "click", "rb2", "rollback", 100, t0 + 2000, 10,
             ",\"cost_micros\":1000");
        wait_kpi("rollback", "clicks", 200, 60000);
        resumed = h_log_count("sg-aggregate", "event=partition_resume");
        /* Restarted without its last writes: it loads the SAVE. */
        h_redis_restart();
        cr_assert_eq(kpi("rollback", "clicks"), 100);
        bulk("ad-clicks", 0, "click", "rb3", "rollback", 100, t0 + 4000, 10,
             ",\"cost_micros\":1000");
        wait_kpi("rollback", "clicks", 300, 60000);
        /* aggregate noticed (the connection that broke, or the fence of
         * its next checkpoint) and loaded its partitions again from the
         * older snapshot, then read again from there. */
        cr_assert_gt(h_log_count("sg-aggregate", "event=partition_resume"),
                     resumed);
        cr_assert_eq(kpi("rollback", "spend_micros"), 300000);
}

/*
 * Redis flushed under a running aggregate, the connection intact: the next
 * checkpoint's fence finds no offset where it expected its last one, the
 * partitions are loaded again (empty) and read again from their first
 * record, and the counts come back whole.
 */
/* A flush is fenced too, and stops aggregate (F14, aggregate_epoch_test.c)
 * until the loss is accepted: then it counts again from the first record it
 * read, here the first of all. */
Test(checkpoint, a_flushed_redis_is_caught_by_the_fence_and_redone)
{
        long long t0 = base_time();

        h_init();
        h_start_infra();
        h_start_stages();
        bulk("ad-clicks", 0, "click", "fl1", "flushed", 100, t0, 10,
             ",\"cost_micros\":1000");
        wait_kpi("flushed", "clicks", 100, 60000);
        redis_do("FLUSHALL");
        bulk("ad-clicks", 0, "click", "fl2", "flushed", 100, t0 + 2000, 10,
             ",\"cost_micros\":1000");
        /* Every stage noticed before the mark goes (one noticing later
         * would mark the loss again). */
        wait_log("sg-aggregate", "event=redis_data_lost", 60000);
        wait_log("sg-rules", "event=redis_data_lost", 60000);
        wait_log("sg-sink", "event=redis_data_lost", 60000);
        redis_do("DEL sg:epoch:lost");
        wait_kpi("flushed", "clicks", 200, 60000);
        cr_assert_eq(kpi("flushed", "spend_micros"), 200000);
}

/*
 * F9: 10,000 conversions in one batch whose click_id names no click. The
 * old script looked them up with one unbounded unpack() and failed for
 * ever ("too many results to unpack"); now each is timed in memory.
 */
Test(checkpoint, ten_thousand_conversions_naming_unknown_clicks_count)
{
        const char *subst[] = {"  batch_size: 5000", "batch_size: 10000",
                               "  batch_ms: 100", "batch_ms: 5000", NULL};
        long long t0 = base_time();

        h_init();
        h_config(subst, NULL);
        h_start_infra();
        bulk("ad-conversions", 0, "conversion", "cv", "unknown-clicks", 10000,
             t0, 1, ",\"revenue_micros\":100,\"click_id\":\"nope\"");
        h_spawn("sg-ingest", NULL);
        h_wait_caught_up("ingest", "ad-conversions", 60000);
        h_spawn("sg-aggregate", NULL);
        wait_kpi("unknown-clicks", "conversions", 10000, 120000);
        cr_assert_eq(kpi("unknown-clicks", "revenue_micros"), 1000000);
        cr_assert_eq(h_log_count("sg-aggregate", "event=checkpoint_failed"), 0);
}

/*
 * F11: the checkpoint fails (Redis out of memory) for a batch that moves
 * the watermark 120 s; once Redis takes writes again the batch is redone
 * from the checkpoint, and none of its own events is late.
 */
Test(checkpoint, a_failed_checkpoint_is_redone_without_late_events)
{
        long long t0 = base_time();

        h_init();
        h_start_infra();
        /* aggregate takes the epoch before Redis refuses writes. */
        h_spawn("sg-aggregate", NULL);
        wait_log("sg-aggregate", "event=start ", 60000);
        bulk("ad-clicks", 0, "click", "oom", "oom", 121, t0, 1000,
             ",\"cost_micros\":1000");
        redis_do("CONFIG SET maxmemory 1");
        h_spawn("sg-ingest", NULL);
        wait_log("sg-aggregate", "event=checkpoint_failed", 60000);
        redis_do("CONFIG SET maxmemory 0");
        wait_kpi("oom", "clicks", 121, 60000);
        cr_assert_eq(late_dead_letters(), 0);
}

/*
 * F17: eight windows (the most aggregate.windows takes), data, then a
 * restart with no new traffic: the restarted stage loads its state and
 * runs (under AddressSanitizer, an overflow aborts it).
 */
Test(checkpoint, eight_windows_and_a_restart_without_traffic)
{
        const char *subst[] = {"  windows: 1m,5m,1h,today",
                               "windows: 1m,2m,5m,10m,15m,30m,1h,today",
                               NULL};
        long long t0 = base_time();
        pid_t pid;

        h_init();
        h_config(subst, NULL);
        h_start_infra();
        h_spawn("sg-ingest", NULL);
        pid = h_spawn("sg-aggregate", NULL);
        bulk("ad-clicks", 0, "click", "w8", "eight", 50, t0, 1000,
             ",\"cost_micros\":1000");
        wait_kpi("eight", "clicks", 50, 60000);
        cr_assert_eq(h_stop(pid), 0);
        pid = h_spawn("sg-aggregate", NULL);
        /* Loaded (its partitions resumed: the group may wait out the
         * first member's session, 45 s), still running. */
        {
                long long deadline = h_now_ms() + 90000;

                while (h_log_count("sg-aggregate", "event=partition_resume") <
                       8) {
                        cr_assert_lt(h_now_ms(), deadline,
                                     "no second resume (logs in %s)", H.dir);
                        usleep(100 * 1000);
                }
        }
        cr_assert_eq(kill(pid, 0), 0, "sg-aggregate died after its restart");
        cr_assert_eq(kpi("eight", "clicks"), 50);
}

/*
 * F1: a backlog is read at different speeds per sg.events partition: a
 * hot channel's partition is minutes behind a cold one's. Before, an input
 * partition's progress was its newest event time in any sg.events
 * partition, so the cold partition's fresh events moved the watermark past
 * the hot partition's backlog and it was dead-lettered as late. Now each
 * partition has its own watermark from the markers ingest writes into it.
 */
Test(checkpoint, a_backlog_read_at_different_speeds_loses_nothing_as_late)
{
        const char *subst[] = {"  batch_size: 5000", "batch_size: 500", NULL};
        long long now = (long long)time(NULL) * 1000, t0 = now - 300000;
        char hot[16] = "", cold[16] = "";
        int ph = -1;

        /* Two channels on different sg.events partitions (of 4), as
         * ingest's producer routes them (consistent hash of the key). */
        for (int i = 0; i < 64 && !cold[0]; i++) {
                char name[16];
                int p;

                snprintf(name, sizeof(name), "ch%d", i);
                p = rd_kafka_msg_partitioner_consistent(NULL, name,
                                                        strlen(name), 4, NULL,
                                                        NULL);
                if (ph < 0) {
                        ph = p;
                        snprintf(hot, sizeof(hot), "%s", name);
                } else if (p != ph) {
                        snprintf(cold, sizeof(cold), "%s", name);
                }
        }
        h_init();
        h_config(subst, NULL);
        h_start_infra();
        h_spawn("sg-aggregate", NULL);
        /* 5 minutes of event time on every input partition of ad-clicks,
         * in event-time order: 100 clicks a second of hot, 1 of cold. */
        for (int part = 0; part < 4; part++) {
                char buf[512];

                for (int i = 0; i < 7500; i++) {
                        const char *ch = i % 100 == 99 ? cold : hot;
                        int n = snprintf(
                            buf, sizeof(buf),
                            "{\"type\":\"click\",\"event_id\":\"%s-%d-%d\","
                            "\"event_time\":%lld,\"channel\":\"%s\","
                            "\"campaign_id\":\"c1\",\"cost_micros\":1000}",
                            ch, part, i, t0 + i * 40, ch);

                        cr_assert_eq(h_produce_async("ad-clicks", part, ch,
                                                     strlen(ch), buf,
                                                     (size_t)n),
                                     0);
                }
        }
        cr_assert_eq(h_flush(), 0);
        h_spawn("sg-ingest", NULL);
        wait_kpi(hot, "clicks", 29700, 180000);
        wait_kpi(cold, "clicks", 300, 60000);
        cr_assert_eq(late_dead_letters(), 0);
}

/*
 * F8: the deliveries of aggregate's first snapshots fail (the broker
 * refuses 5 Produce requests). The snapshots are recorded as sent only in
 * the checkpoint after their delivery, so the retried batch sends them
 * again: the 1m window's series has no hole. Before, the script recorded
 * them as sent before C produced them and the retry sent none of them.
 */
Test(checkpoint, snapshots_whose_delivery_failed_are_sent_again)
{
        long long t0 = base_time(), prev = -1;
        char schemas[512], err[256];
        rd_kafka_message_t **msgs;
        sg_codec_t *codec;
        pid_t ingest;
        int n, steps = 0;

        /* Inputs idle as soon as ingest has read them: its last markers,
         * before it stops, say so. */
        const char *subst[] = {"  idle_ms: 5000", "idle_ms: 0", NULL};

        h_init();
        h_config(subst, NULL);
        h_start_infra();
        bulk("ad-clicks", 0, "click", "gap", "gap", 180, t0, 1000,
             ",\"cost_micros\":1000");
        ingest = h_spawn("sg-ingest", NULL);
        h_wait_caught_up("ingest", "ad-clicks", 60000);
        cr_assert_eq(h_stop(ingest), 0);
        h_broker_ctl("error Produce 5 MSG_SIZE_TOO_LARGE");
        h_spawn("sg-aggregate", NULL);
        wait_kpi("gap", "clicks", 180, 60000);
        cr_assert_geq(h_log_count("sg-aggregate", "event=batch_retry"), 1);
        h_wait_caught_up("aggregate", "sg.events", 60000);

        codec = sg_codec_new(h_src("schemas", schemas, sizeof(schemas)), err,
                             sizeof(err));
        cr_assert_not_null(codec, "%s", err);
        /* The watermark ends at t0 + 179 s - 30 s: 1m snapshots every 10 s
         * from the first bucket's step to t0 + 140 s. */
        n = h_consume_all("sg.aggregates", 1, 5000, &msgs);
        {
                long long ends[4096];
                int ne = 0;

                for (int i = 0; i < n; i++) {
                        sg_snapshot_t sn;

                        cr_assert_eq(sg_codec_decode_snapshot(
                                         codec, msgs[i]->payload, msgs[i]->len,
                                         &sn),
                                     0);
                        if (strcmp(sn.channel, "gap") || sn.campaign_id[0] ||
                            sn.final || strcmp(sn.window, "1m"))
                                continue;
                        cr_assert_lt(ne, 4096);
                        ends[ne++] = sn.window_end;
                }
                for (long long e = t0 + 10000; e <= t0 + 140000; e += 10000) {
                        int seen = 0;

                        for (int k = 0; k < ne; k++)
                                seen += ends[k] == e;
                        cr_assert_geq(seen, 1,
                                      "no 1m snapshot ending at t0+%lld s "
                                      "(logs in %s)",
                                      (e - t0) / 1000, H.dir);
                        steps++;
                        prev = e;
                }
        }
        cr_assert_eq(steps, 14);
        cr_assert_eq(prev, t0 + 140000);
        h_msgs_free(msgs, n);
        sg_codec_destroy(codec);
}
