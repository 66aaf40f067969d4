/*
 * aggregate loads a partition while Redis is still loading its data
 * (review finding F19c, ../shared/reviews/correctness-ace1912.md: an
 * error reply such as -LOADING was taken for "no state", and the
 * partition was consumed again from the Kafka commit into empty state).
 *
 * Two aggregate instances share sg.events. Redis restarts on its dump and
 * loads it slowly (key-load-delay), answering -LOADING; meanwhile one
 * instance stops, so the other is handed every partition and loads each
 * from Redis. It must wait for the data, not start empty: once Redis has
 * loaded, every click before and after the restart is counted once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>

#include "harness.h"

#define CHANNELS 10
#define FILLER   60000 /* keys in another db: the slow part of the load */
#define DELAY_US 500   /* per key loaded: 30 s or more of -LOADING */

#define BROWSER                                                                \
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 "     \
        "Safari/537.36"

static pid_t second; /* the instance that stops while Redis loads */

/* bin/sg-aggregate under another name, so that its log is its own. */
static pid_t spawn_second(void)
{
        char bin[512], link[600];

        h_bin("sg-aggregate", bin, sizeof(bin));
        snprintf(link, sizeof(link), "%s/sg-aggregate-2", H.dir);
        cr_assert_eq(symlink(bin, link), 0);
        return h_spawn(link, NULL);
}

static void setup(void)
{
        h_init();
        h_start_infra();
        h_spawn("sg-ingest", NULL);
        h_spawn("sg-aggregate", NULL);
        second = spawn_second();
        cr_assert_geq(h_wait_log("sg-aggregate-2", 0, "event=assigned",
                                 60000),
                      0, "the second aggregate got no partitions (logs in %s)",
                      H.dir);
}

TestSuite(aggregate_loading, .init = setup, .fini = h_stack_down,
          .timeout = 300);

/* per clicks on each of the channels ld0.., ids <round>-<channel>-<i>,
 * acknowledged; truth gets the channel-level counts so far. */
static void clicks(int round, int per, json_t *truth)
{
        long long t = h_wall_ms() - 60000;
        char buf[512];

        for (int ch = 0; ch < CHANNELS; ch++) {
                json_t *row = json_array_get(truth, ch);

                for (int i = 0; i < per; i++) {
                        int n = snprintf(
                            buf, sizeof(buf),
                            "{\"type\":\"click\",\"event_id\":\"%d-%d-%d\","
                            "\"event_time\":%lld,\"channel\":\"ld%d\","
                            "\"campaign_id\":\"c1\",\"cost_micros\":1000,"
                            "\"user_agent\":\"%s\"}",
                            round, ch, i, t + i, ch, BROWSER);

                        cr_assert_eq(h_produce_async("ad-clicks", -1, "k", 1,
                                                     buf, (size_t)n),
                                     0);
                }
                json_object_set_new(
                    row, "clicks",
                    json_integer(json_integer_value(
                                     json_object_get(row, "clicks")) +
                                 per));
                json_object_set_new(
                    row, "spend_micros",
                    json_integer(json_integer_value(
                                     json_object_get(row, "spend_micros")) +
                                 per * 1000));
        }
        cr_assert_eq(h_flush(), 0);
}

/* FILLER keys in db 9, which no stage reads: they make the load slow. */
static void filler(void)
{
        redisContext *c = redisConnectUnix(H.redis_sock);
        redisReply *r;

        cr_assert(c && !c->err, "redis-server does not answer");
        r = redisCommand(c, "SELECT 9");
        cr_assert(r && r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
        for (int i = 0; i < FILLER; i++)
                redisAppendCommand(c, "SET filler:%d x", i);
        for (int i = 0; i < FILLER; i++) {
                cr_assert_eq(redisGetReply(c, (void **)&r), REDIS_OK);
                cr_assert_eq(r->type, REDIS_REPLY_STATUS);
                freeReplyObject(r);
        }
        redisFree(c);
}

static void assert_counted(json_t *truth, const char *when)
{
        char why[256];
        json_t *kpis;

        h_wait_caught_up("aggregate", "sg.events", 60000);
        kpis = h_kpis_wait(truth, NULL, 30000, why, sizeof(why));
        cr_assert_not_null(kpis, "%s: %s (logs in %s)", when, why, H.dir);
        json_decref(kpis);
}

Test(aggregate_loading,
     a_partition_handed_over_while_redis_loads_waits_for_its_state)
{
        json_t *truth = json_array();
        long from;

        for (int ch = 0; ch < CHANNELS; ch++) {
                char name[16];

                snprintf(name, sizeof(name), "ld%d", ch);
                json_array_append_new(truth, json_pack("{s:s}", "channel",
                                                       name));
        }
        clicks(1, 10, truth);
        assert_counted(truth, "before the restart");

        filler();
        from = h_log_size("sg-aggregate");
        h_redis_reload_slowly(DELAY_US);
        cr_assert_eq(h_stop(second), 0,
                     "the second aggregate did not exit 0 while Redis "
                     "loaded (logs in %s)",
                     H.dir);
        cr_assert_eq(h_redis_wait_loaded(120000), 0,
                     "Redis still loading after 120 s");
        /* The first one was handed the second's partitions (and, in the
         * eager rebalance, its own again) while Redis said -LOADING: each
         * load waited, none took the error for "no state" (every
         * partition has a checkpoint by now). */
        cr_assert_eq(h_wait_log("sg-aggregate", from, "offset=-1 scopes=0",
                                0),
                     -1,
                     "a partition was resumed with no state while Redis "
                     "was loading (logs in %s)",
                     H.dir);
        cr_assert_geq(h_wait_log("sg-aggregate", from,
                                 "event=load_retry cmd=GET key=sg:{p", 0),
                      0,
                      "aggregate loaded no partition while Redis was "
                      "loading: the test did not happen (logs in %s)",
                      H.dir);

        clicks(2, 5, truth);
        assert_counted(truth, "after the restart");
        json_decref(truth);
}
