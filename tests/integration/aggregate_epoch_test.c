/*
 * F14, aggregate's part (../shared/reviews/correctness-ace1912.md): when
 * Redis loses its data (a restart without persistence, a failover to an
 * empty replica, a FLUSHALL), aggregate must not go on counting from
 * empty state as if nothing happened. Like rules and sink it holds the
 * epoch (sg:epoch) and stops when it is gone: nothing applied, nothing
 * written, nothing committed, until the data is restored (then every
 * partition is loaded again from it) or an operator accepts the loss
 * (docs/reliability.md, "Redis data loss").
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>

#include "harness.h"

#define BACKUP_MAX 4096

static void setup(void)
{
        h_init();
        h_start_infra();
}

TestSuite(aggregate_epoch, .init = setup, .fini = h_stack_down,
          .timeout = 300);

static redisContext *conn(void)
{
        redisContext *c = redisConnectUnix(H.redis_sock);

        cr_assert(c && !c->err, "redis: %s", c ? c->errstr : "oom");
        return c;
}

static long long count_keys(const char *pattern)
{
        redisContext *c = conn();
        redisReply *r = redisCommand(c, "KEYS %s", pattern);
        long long n;

        cr_assert(r && r->type == REDIS_REPLY_ARRAY);
        n = (long long)r->elements;
        freeReplyObject(r);
        redisFree(c);
        return n;
}

static void redis_ok(const char *cmd)
{
        redisContext *c = conn();
        redisReply *r = redisCommand(c, cmd);

        cr_assert(r && r->type != REDIS_REPLY_ERROR, "%s: %s", cmd,
                  r ? r->str : c->errstr);
        freeReplyObject(r);
        redisFree(c);
}

/* cnt clicks of channel on ad-clicks/0, ids prefix-i, acknowledged. */
static void clicks(const char *prefix, const char *channel, int cnt,
                   long long t0)
{
        char buf[512];

        for (int i = 0; i < cnt; i++) {
                int n = snprintf(buf, sizeof(buf),
                                 "{\"type\":\"click\",\"event_id\":\"%s-%d\","
                                 "\"event_time\":%lld,\"channel\":\"%s\","
                                 "\"campaign_id\":\"c1\",\"cost_micros\":5,"
                                 "\"device_id\":\"d%d\","
                                 "\"user_agent\":\"Mozilla/5.0\"}",
                                 prefix, i, t0 + i * 10, channel, i % 17);
                cr_assert_eq(h_produce_async("ad-clicks", 0, channel,
                                             strlen(channel), buf, (size_t)n),
                             0);
        }
        cr_assert_eq(h_flush(), 0);
}

static long long kpi_clicks(const char *channel)
{
        json_t *arr = h_kpis(channel), *row;
        long long v = -1;
        size_t i;

        json_array_foreach(arr, i, row)
        {
                if (json_is_null(json_object_get(row, "campaign_id")))
                        v = json_integer_value(json_object_get(row, "clicks"));
        }
        json_decref(arr);
        return v;
}

static void wait_clicks(const char *channel, long long want, int ms)
{
        long long deadline = h_now_ms() + ms, got;

        while ((got = kpi_clicks(channel)) != want) {
                cr_assert_lt(h_now_ms(), deadline,
                             "%s clicks: want %lld, got %lld (logs in %s)",
                             channel, want, got, H.dir);
                usleep(200 * 1000);
        }
}

static void wait_log(const char *name, const char *needle, int ms)
{
        cr_assert_geq(h_wait_log(name, 0, needle, ms), 0,
                      "%s did not log \"%s\" in %d ms (logs in %s)", name,
                      needle, ms, H.dir);
}

/* A backup: every key, its DUMP and its TTL, taken while writes are
 * paused (one consistent point in time). */
typedef struct backup {
        int n;
        char *key[BACKUP_MAX];
        char *val[BACKUP_MAX];
        size_t len[BACKUP_MAX];
        long long pttl[BACKUP_MAX];
} backup_t;

static void backup_take(backup_t *b)
{
        redisContext *c = conn();
        redisReply *keys, *r;

        r = redisCommand(c, "CLIENT PAUSE 30000 WRITE");
        cr_assert(r && r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
        keys = redisCommand(c, "KEYS *");
        cr_assert(keys && keys->type == REDIS_REPLY_ARRAY);
        cr_assert_lt(keys->elements, BACKUP_MAX);
        b->n = (int)keys->elements;
        for (int i = 0; i < b->n; i++) {
                b->key[i] = strdup(keys->element[i]->str);
                r = redisCommand(c, "DUMP %s", b->key[i]);
                cr_assert(r && r->type == REDIS_REPLY_STRING);
                b->val[i] = malloc(r->len);
                memcpy(b->val[i], r->str, r->len);
                b->len[i] = r->len;
                freeReplyObject(r);
                r = redisCommand(c, "PTTL %s", b->key[i]);
                cr_assert(r && r->type == REDIS_REPLY_INTEGER);
                b->pttl[i] = r->integer > 0 ? r->integer : 0;
                freeReplyObject(r);
        }
        freeReplyObject(keys);
        r = redisCommand(c, "CLIENT UNPAUSE");
        cr_assert(r && r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
        redisFree(c);
}

static void backup_restore(backup_t *b)
{
        redisContext *c = conn();

        for (int i = 0; i < b->n; i++) {
                redisReply *r = redisCommand(c, "RESTORE %s %lld %b REPLACE",
                                             b->key[i], b->pttl[i], b->val[i],
                                             b->len[i]);

                cr_assert(r && r->type == REDIS_REPLY_STATUS, "RESTORE %s: %s",
                          b->key[i], r ? r->str : c->errstr);
                freeReplyObject(r);
                free(b->key[i]);
                free(b->val[i]);
        }
        redisFree(c);
}

Test(aggregate_epoch, lost_redis_data_stops_aggregate_until_restored)
{
        long long t = (long long)time(NULL) * 1000 - 2 * 3600 * 1000;
        static backup_t b;
        long long deadline;

        h_spawn("sg-ingest", NULL);
        h_spawn("sg-aggregate", NULL);
        clicks("a", "lost", 200, t);
        wait_clicks("lost", 200, 60000);
        /* Every sg.events partition checkpointed (ingest's markers reach
         * all four): from now on each checkpoint is fenced at an offset
         * Redis holds. */
        deadline = h_now_ms() + 30000;
        while (count_keys("sg:{p*}:off") != 4) {
                cr_assert_lt(h_now_ms(), deadline,
                             "%lld of 4 partitions checkpointed",
                             count_keys("sg:{p*}:off"));
                usleep(100 * 1000);
        }
        backup_take(&b);

        /* The data goes, events keep coming. */
        redis_ok("FLUSHALL");
        clicks("b", "lost", 100, t + 5000);
        wait_log("sg-aggregate", "event=redis_data_lost", 30000);
        wait_log("sg-aggregate", "event=batch_refused reason=redis_data_lost",
                 30000);
        /* Nothing written into the empty Redis but the mark; nothing
         * committed. */
        cr_assert_eq(count_keys("sg:{p*}"), 0, "aggregate wrote %lld keys",
                     count_keys("sg:{p*}"));
        cr_assert_eq(count_keys("sg:epoch:lost"), 1);
        cr_assert_eq(h_group_caught_up("aggregate", "sg.events"), 0);

        /* The backup comes back (it has no mark): aggregate loads every
         * partition from it and counts the clicks it refused, once. */
        backup_restore(&b);
        redis_ok("DEL sg:epoch:lost");
        wait_log("sg-aggregate", "event=redis_data_restored", 30000);
        wait_clicks("lost", 300, 60000);
        h_wait_caught_up("aggregate", "sg.events", 30000);
        cr_assert_eq(kpi_clicks("lost"), 300);
}

/*
 * The loss while aggregate is down (and no rules or sink runs to have
 * marked it): a start that finds neither epoch nor mark is a first start
 * only if aggregate never checkpointed; its group's offsets on sg.events,
 * committed only after a checkpoint was in Redis, say it did. It starts
 * stopped, marks the loss for the other stages, and resumes when the
 * operator accepts it (the mark removed): counting from the Kafka commit.
 */
Test(aggregate_epoch, a_loss_while_aggregate_was_down_is_not_a_first_start)
{
        long long t = (long long)time(NULL) * 1000 - 2 * 3600 * 1000;
        long from;
        pid_t ag;

        h_spawn("sg-ingest", NULL);
        ag = h_spawn("sg-aggregate", NULL);
        clicks("a", "down", 200, t);
        wait_clicks("down", 200, 60000);
        h_wait_caught_up("aggregate", "sg.events", 30000);
        cr_assert_eq(h_stop(ag), 0);
        for (int i = 0; i < H.proc_cnt; i++)
                if (H.procs[i].pid == ag)
                        H.procs[i].pid = 0;

        redis_ok("FLUSHALL");
        h_spawn("sg-aggregate", NULL);
        clicks("b", "down", 50, t + 5000);
        wait_log("sg-aggregate", "event=redis_data_lost", 30000);
        wait_log("sg-aggregate", "event=batch_refused reason=redis_data_lost",
                 30000);
        cr_assert_eq(count_keys("sg:epoch:lost"), 1);
        cr_assert_eq(count_keys("sg:{p*}"), 0, "aggregate wrote %lld keys",
                     count_keys("sg:{p*}"));

        /* Accepted: counts restart from the Kafka commit (the 50 clicks
         * after it). */
        from = h_log_size("sg-aggregate");
        redis_ok("DEL sg:epoch:lost");
        cr_assert_geq(h_wait_log("sg-aggregate", from, "event=redis_epoch ",
                                 30000),
                      0, "no new epoch taken in 30 s (logs in %s)", H.dir);
        wait_clicks("down", 50, 60000);
        h_wait_caught_up("aggregate", "sg.events", 30000);
        cr_assert_eq(kpi_clicks("down"), 50);
        cr_assert_eq(count_keys("sg:epoch"), 1);
}
