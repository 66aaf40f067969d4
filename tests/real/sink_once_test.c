/*
 * The sink delivers each decision once, also when it dies between the
 * broker's acknowledgement and its Redis bookkeeping (review finding F6,
 * ../shared/reviews/correctness-ace1912.md). On a real broker, with
 * ad-decisions read as read_committed (librdkafka's default, as a bidder
 * would):
 *
 * Redis refuses writes for a while (CLIENT PAUSE WRITE: reads still
 * work), the test hands sg-sink one decision on sg.decisions, waits until
 * it is visible on ad-decisions (the sink produced it and the broker
 * acknowledged it; its Redis SET now waits), SIGKILLs the sink and starts
 * it again. Once Redis takes writes again and the sink has caught up, the
 * decision is on ad-decisions exactly once, and in the Redis decision log
 * at most once.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>

#include "codec.h"
#include "harness.h"

#define PAUSE_MS 12000

static void setup(void)
{
        setenv("SG_KAFKA", "real", 1); /* tests/real: never the mock */
        h_init();
        h_start_infra();
}

TestSuite(sink_once, .init = setup, .fini = h_stack_down, .timeout = 300);

static long long redis_int(redisContext *c, const char *cmd)
{
        redisReply *r = redisCommand(c, cmd);
        long long v;

        cr_assert(r && r->type == REDIS_REPLY_INTEGER, "%s: no integer", cmd);
        v = r->integer;
        freeReplyObject(r);
        return v;
}

Test(sink_once, sigkill_after_the_ack_before_redis_delivers_once)
{
        char schemas[512], err[256], pause[64];
        unsigned char buf[8192];
        sg_codec_t *codec =
            sg_codec_new(h_src("schemas", schemas, sizeof(schemas)), err,
                         sizeof(err));
        sg_decision_t d = {0}, got;
        rd_kafka_message_t **msgs;
        redisContext *rc;
        redisReply *r;
        long long t0;
        pid_t sink;
        int n, len, seen = 0;

        cr_assert_not_null(codec, "%s", err);
        snprintf(d.decision_id, sizeof(d.decision_id), "f6-once-0001");
        snprintf(d.rule_id, sizeof(d.rule_id), "ivt_circuit_breaker");
        d.action = SG_ACT_PAUSE;
        snprintf(d.channel, sizeof(d.channel), "kol");
        snprintf(d.reason, sizeof(d.reason), "ivt_rate 0.4 > 0.2 (test)");
        d.window_start = 1700000000000LL;
        d.window_end = d.window_start + 60000;
        d.decided_at = d.window_end;
        d.budget_cnt = -1;
        len = sg_codec_encode_decision(codec, SG_FMT_AVRO, &d, buf,
                                       sizeof(buf));
        cr_assert_gt(len, 0, "%s", sg_codec_error(codec));

        sink = h_spawn("sg-sink", NULL);
        /* The sink is in its group before Redis stops taking writes. */
        cr_assert_geq(h_wait_log("sg-sink", 0, "event=assigned partitions=8",
                                 60000),
                      0, "sg-sink never got its partitions (logs in %s)",
                      H.dir);

        rc = redisConnectUnix(H.redis_sock);
        cr_assert(rc && !rc->err);
        snprintf(pause, sizeof(pause), "CLIENT PAUSE %d WRITE", PAUSE_MS);
        r = redisCommand(rc, pause);
        cr_assert(r && r->type == REDIS_REPLY_STATUS, "CLIENT PAUSE failed");
        freeReplyObject(r);
        t0 = h_now_ms();
        cr_assert_eq(h_produce("sg.decisions", d.channel, strlen(d.channel),
                               buf, (size_t)len),
                     0);

        /* Delivered to ad-decisions and acknowledged; the SET waits. */
        while (!seen) {
                cr_assert_lt(h_now_ms() - t0, PAUSE_MS - 2000,
                             "the decision did not reach ad-decisions while "
                             "Redis was paused (logs in %s)",
                             H.dir);
                n = h_consume_all("ad-decisions", 1, 1000, &msgs);
                seen = n > 0;
                h_msgs_free(msgs, n);
        }
        sink = h_kill_restart(sink, "sg-sink");

        /* After the pause: the restarted sink has read everything. */
        h_wait_caught_up("sink", "sg.decisions", PAUSE_MS + 60000);
        n = h_consume_all("ad-decisions", 1, 5000, &msgs);
        for (int i = 0; i < n; i++) {
                cr_assert_eq(sg_codec_decode_decision(codec, msgs[i]->payload,
                                                      msgs[i]->len, &got),
                             0);
                cr_assert_str_eq(got.decision_id, d.decision_id);
        }
        cr_assert_eq(n, 1,
                     "decision %s is on ad-decisions %d times (logs in %s)",
                     d.decision_id, n, H.dir);
        h_msgs_free(msgs, n);
        /* The Redis decision log (sg-ctl decisions) is written after the
         * transaction's commit: a crash in between loses its line, never
         * doubles it (docs/reliability.md). */
        cr_assert_leq(redis_int(rc, "LLEN sg:decisions"), 1,
                      "the decision log holds it more than once");
        redisFree(rc);
        sg_codec_destroy(codec);
}
