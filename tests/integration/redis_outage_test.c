/*
 * Redis away for 10 s while events flow: redis-server is shut down (its
 * data saved), stays down 10 s, and comes back on the same socket. The
 * stages retry with backoff and lose nothing: afterwards every KPI equals
 * the generator's truth, every stage still runs, and the outage is in the
 * logs. Redis requires a password (SG_REDIS_PASSWORD), which no log holds.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>

#include "harness.h"

#define PASSWORD "it-redis-pw-7b1c"

static const char *const stages[] = {"sg-ingest", "sg-aggregate", "sg-rules",
                                     "sg-sink", NULL};

/* The stack, with Redis requiring a password that only the environment
 * gives the stages and sg-ctl. */
static void up(void)
{
        redisContext *c;
        redisReply *r;

        h_init();
        h_start_infra();
        c = redisConnectUnix(H.redis_sock);
        cr_assert(c && !c->err);
        r = redisCommand(c, "CONFIG SET requirepass %s", PASSWORD);
        cr_assert(r && r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
        redisFree(c);
        setenv("SG_REDIS_PASSWORD", PASSWORD, 1);
        h_start_stages();
}

TestSuite(redis_outage, .init = up, .fini = h_stack_down, .timeout = 400);

/* The event=redis_reconnected lines of a log, each with attempts=N. */
static int reconnected(const char *name)
{
        return h_log_count(name, "event=redis_reconnected attempts=");
}

Test(redis_outage, ten_seconds_without_redis_lose_nothing)
{
        char truth_path[512], why[512] = "";
        /* 60 s of event time (34,062 records) at 1,500 records/s: about
         * 23 s of sending, the outage in the middle of it. */
        const char *gen_args[] = {"--seed",  "11",       "--duration",
                                  "60",      "--rate",   "1500",
                                  "--truth", truth_path, NULL};
        const char *const auth[] = {"--requirepass", PASSWORD, NULL};
        long long t0, deadline;
        json_t *truth, *kpis;
        pid_t gen;

        snprintf(truth_path, sizeof(truth_path), "%s/truth.jsonl", H.dir);
        gen = h_spawn("sg-gen", gen_args);

        /* Events are flowing into Redis before it goes away. */
        deadline = h_now_ms() + 60000;
        for (;;) {
                json_t *k = h_kpis(NULL);
                size_t n = json_array_size(k);

                json_decref(k);
                if (n > 0)
                        break;
                cr_assert_lt(h_now_ms(), deadline,
                             "no KPIs in Redis within 60 s (logs in %s)",
                             H.dir);
                usleep(200000);
        }
        cr_assert_eq(h_wait(gen, 0), -1, "sg-gen finished before the outage");

        t0 = h_now_ms();
        h_redis_outage(10000, PASSWORD, auth);
        cr_assert_geq(h_now_ms() - t0, 10000);
        /* The generator was still sending when Redis came back. */
        cr_assert_eq(h_wait(gen, 0), -1,
                     "sg-gen finished during the outage: make it longer");

        cr_assert_eq(h_wait(gen, 120000), 0, "sg-gen failed (log: %s)", H.dir);
        truth = h_jsonl_file(truth_path);
        kpis = h_kpis_wait(truth, NULL, 180000, why, sizeof(why));
        cr_assert(kpis,
                  "KPIs never matched the truth after the outage: %s "
                  "(logs in %s)",
                  why, H.dir);
        /* 5 channels x (channel + 2 campaigns). */
        cr_assert_eq(json_array_size(kpis), 15);
        json_decref(kpis);
        json_decref(truth);

        /* Every stage rode it out. */
        for (const char *const *s = stages; *s; s++) {
                pid_t pid = h_pid(*s);

                cr_assert_gt(pid, 0, "%s is gone", *s);
                cr_assert_eq(h_wait(pid, 0), -1, "%s exited (log: %s/%s.log)",
                             *s, H.dir, *s);
        }
        /* The aggregate stage wrote to Redis all along: it saw the outage,
         * retried, and said when it was over. */
        cr_assert_geq(h_log_count("sg-aggregate", "event=redis_io_error"), 1);
        cr_assert_geq(h_log_count("sg-aggregate", "event=redis_connect_failed"),
                      1);
        cr_assert_eq(reconnected("sg-aggregate"), 1, "%s",
                     "want exactly one event=redis_reconnected");
        /* rules and sink reconnected at most once each (they only touch
         * Redis when there is work). */
        cr_assert_leq(reconnected("sg-rules"), 1);
        cr_assert_leq(reconnected("sg-sink"), 1);

        /* The password is in no log line. */
        for (const char *const *s = stages; *s; s++)
                cr_assert_eq(h_log_count(*s, PASSWORD), 0, "%s logs the password",
                             *s);
        cr_assert_eq(h_log_count("sg-ctl", PASSWORD), 0);
}
