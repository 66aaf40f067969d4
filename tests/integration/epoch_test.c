/*
 * Losing Redis' data (a restart without persistence, a failover to an empty
 * replica, a FLUSHALL) must not go unnoticed: rules and sink would decide on
 * empty state (breakers closed, budgets back to the config, delivered
 * decision ids forgotten). They write an epoch key at first start, check it
 * on every reconnect and every batch, and stop deciding once it is gone,
 * until the data is restored or an operator accepts the loss
 * (docs/reliability.md, "Redis data loss").
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>

#include "harness.h"
#include "metrics.h"
#include "redis.h"
#include "stage.h"

/* Rules and sink, the stages under test (records are produced straight
 * to sg.aggregates); aggregate, which also marks a loss it finds, is
 * aggregate_epoch_test's: here it could mark the second loss again after
 * the operator removed the mark, a race of the test, not of the stages. A
 * restarted stage rejoins within the session timeout. */
static void stack_up(void)
{
        const char *subst[] = {"  fetch.wait.max.ms: 10",
                               "fetch.wait.max.ms: 10\n  session.timeout.ms: 6000",
                               NULL};

        h_init();
        h_config(subst, NULL);
        h_start_infra();
        h_spawn("sg-rules", NULL);
        h_spawn("sg-sink", NULL);
}

TestSuite(epoch, .init = stack_up, .fini = h_stack_down, .timeout = 300);

/* Polls until dir/<name>.log holds needle at least min times. */
static void wait_log(const char *name, const char *needle, int min, int ms)
{
        long long deadline = h_now_ms() + ms;

        while (h_log_count(name, needle) < min) {
                cr_assert_lt(h_now_ms(), deadline,
                             "%s logged \"%s\" %d times, not %d, in %d ms "
                             "(logs in %s)",
                             name, needle, h_log_count(name, needle), min, ms,
                             H.dir);
                usleep(100 * 1000);
        }
}

/* Polls until key has a value; returns it in out. */
static const char *wait_key(const char *key, char *out, size_t size, int ms)
{
        long long deadline = h_now_ms() + ms;

        while (!h_redis_str(out, size, "GET %s", key)[0]) {
                cr_assert_lt(h_now_ms(), deadline,
                             "%s never written in %d ms (logs in %s)", key,
                             ms, H.dir);
                usleep(100 * 1000);
        }
        return out;
}

/* SIGTERM (it must exit 0, also while stopped deciding), start again: a
 * clean leave hands its partitions over at once. */
static void restart(const char *name)
{
        pid_t pid = h_pid(name);
        int status;

        cr_assert_gt(pid, 0);
        status = h_stop(pid);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "%s did not exit 0 (status %d)", name, status);
        for (int i = 0; i < H.proc_cnt; i++)
                if (H.procs[i].pid == pid)
                        H.procs[i].pid = 0;
        h_spawn(name, NULL);
}

Test(epoch, lost_redis_data_stops_rules_and_sink_until_restored_or_accepted)
{
        char epoch[256], now[256], buf[256];

        /* Rules and sink took the epoch at start (the first wrote it). A
         * flush before both have would be a first start for the other. */
        wait_log("sg-rules", "event=redis_epoch ", 1, 30000);
        wait_log("sg-sink", "event=redis_epoch ", 1, 30000);
        wait_key("sg:epoch", epoch, sizeof(epoch), 30000);

        /* The data goes: both notice, mark it, and refuse their next
         * batch (a record on sg.aggregates, which both consume). */
        h_redis_str(buf, sizeof(buf), "FLUSHALL");
        cr_assert_eq(h_produce("sg.aggregates", "x", 1, "garbage", 7), 0);
        wait_log("sg-rules", "event=redis_data_lost", 1, 30000);
        wait_log("sg-sink", "event=redis_data_lost", 1, 30000);
        wait_key("sg:epoch:lost", buf, sizeof(buf), 5000);
        wait_log("sg-rules", "event=batch_refused reason=redis_data_lost", 1,
                 30000);
        wait_log("sg-sink", "event=batch_refused reason=redis_data_lost", 1,
                 30000);
        /* A batch refused is not committed. */
        cr_assert_eq(h_group_caught_up("rules", "sg.aggregates"), 0);
        cr_assert_eq(h_group_caught_up("sink", "sg.aggregates"), 0);
        /* Nor written: rules put nothing into the empty Redis. */
        cr_assert_str_eq(
            h_redis_str(buf, sizeof(buf), "EXISTS sg:rstate"), "0");

        /* A rules started now stays stopped too: the mark says why. */
        restart("sg-rules");
        wait_log("sg-rules", "event=redis_data_lost", 2, 30000);

        /* The backup comes back (here: its epoch, without the mark): the
         * running sink resumes and consumes what it refused. */
        h_redis_str(buf, sizeof(buf), "SET sg:epoch %s", epoch);
        h_redis_str(buf, sizeof(buf), "DEL sg:epoch:lost");
        wait_log("sg-sink", "event=redis_data_restored", 1, 30000);
        h_wait_caught_up("sink", "sg.aggregates", 30000);

        /* The restarted rules had no epoch of its own: with the mark gone
         * it takes the one Redis holds and resumes. */
        wait_log("sg-rules", "event=redis_epoch ", 2, 30000);
        h_wait_caught_up("rules", "sg.aggregates", 30000);

        /* Lost again; the operator accepts the loss: removes the mark and
         * restarts the stages, which start a new epoch. */
        h_redis_str(buf, sizeof(buf), "FLUSHALL");
        /* Both have noticed before the mark goes: one noticing later would
         * mark the loss again. */
        wait_log("sg-sink", "event=redis_data_lost", 2, 30000);
        wait_log("sg-rules", "event=redis_data_lost", 3, 30000);
        wait_key("sg:epoch:lost", buf, sizeof(buf), 30000);
        h_redis_str(buf, sizeof(buf), "DEL sg:epoch:lost");
        restart("sg-sink");
        restart("sg-rules");
        wait_key("sg:epoch", now, sizeof(now), 30000);
        cr_assert_str_neq(now, epoch);
        cr_assert_eq(h_produce("sg.aggregates", "x", 1, "garbage", 7), 0);
        h_wait_caught_up("sink", "sg.aggregates", 30000);
        h_wait_caught_up("rules", "sg.aggregates", 30000);
        cr_assert_str_eq(
            h_redis_str(buf, sizeof(buf), "EXISTS sg:epoch:lost"), "0");
}

/* ---------------------------------------- the guard in lib/redis.c alone */

static void infra_up(void)
{
        /* As in a stage: a write to the closed socket is an error. */
        signal(SIGPIPE, SIG_IGN);
        h_init();
        h_start_infra();
}

TestSuite(epoch_guard, .init = infra_up, .fini = h_stack_down,
          .timeout = 120);

/*
 * A Redis restarted without persistence is found out on the reconnect
 * itself, before any stage code runs a command on it: counted once,
 * marked in Redis with the epoch that was lost, /readyz names it.
 */
Test(epoch_guard, a_redis_restarted_empty_is_found_out_on_the_reconnect)
{
        char err[256], epoch[256], mark[512], want[600], why[300];
        sg_redis_t *r = sg_redis_new(H.redis_url, 10000, err, sizeof(err));
        redisReply *reply;

        cr_assert_not_null(r, "%s", err);
        cr_assert_eq(sg_redis_epoch_start(r, "test"), 0);
        h_redis_str(epoch, sizeof(epoch), "GET sg:epoch");
        cr_assert_neq(epoch[0], '\0');
        cr_assert_eq(sg_redis_epoch_ok(r), 1);
        cr_assert_eq(sg_counter_value("redis_data_lost_total"), 0);

        h_redis_restart(); /* --save "" --appendonly no: empty */
        reply = sg_redis_command(r, "PING");
        cr_assert_not_null(reply);
        cr_assert_str_eq(reply->str, "PONG");
        freeReplyObject(reply);
        cr_assert_eq(sg_counter_value("redis_data_lost_total"), 1);
        sg_stage_ready(why, sizeof(why));
        cr_assert_str_eq(why, "broker not reachable; no partitions assigned; "
                              "redis data lost");
        h_redis_str(mark, sizeof(mark), "GET sg:epoch:lost");
        snprintf(want, sizeof(want), "epoch=%s found=none by=test at_ms=",
                 epoch);
        cr_assert_eq(strncmp(mark, want, strlen(want)), 0, "mark %s", mark);

        /* Stays lost, counted once, while the data is not back. */
        cr_assert_eq(sg_redis_epoch_ok(r), 0);
        cr_assert_eq(sg_redis_epoch_ok(r), 0);
        cr_assert_eq(sg_counter_value("redis_data_lost_total"), 1);

        /* Restored: the epoch back, the mark gone (a backup has none). */
        h_redis_str(err, sizeof(err), "SET sg:epoch %s", epoch);
        h_redis_str(err, sizeof(err), "DEL sg:epoch:lost");
        cr_assert_eq(sg_redis_epoch_ok(r), 1);
        sg_stage_ready(why, sizeof(why));
        cr_assert_str_eq(why, "broker not reachable; no partitions assigned");
        sg_redis_destroy(r);
}

/*
 * A Redis connection that breaks while a stage starts (chaos/short: Redis
 * restarted as sg-rules came up) is not a loss: the stage has no epoch yet
 * to compare with, and takes the one Redis holds. Before, the reconnect
 * inside sg_redis_epoch_start compared Redis' epoch with none and marked
 * the data lost, stopping every stage for good.
 */
Test(epoch_guard, a_reconnect_while_starting_is_not_a_loss)
{
        char err[256], epoch[256], buf[64];
        sg_redis_t *r = sg_redis_new(H.redis_url, 10000, err, sizeof(err));

        cr_assert_not_null(r, "%s", err);
        h_redis_str(buf, sizeof(buf), "SET sg:epoch other-stage-epoch");
        /* Every client but the test's own: the guard's next command meets
         * a closed connection and reconnects. */
        h_redis_str(buf, sizeof(buf), "CLIENT KILL TYPE normal SKIPME yes");
        cr_assert_eq(sg_redis_epoch_start(r, "test"), 0);
        cr_assert_str_eq(
            h_redis_str(buf, sizeof(buf), "EXISTS sg:epoch:lost"), "0");
        cr_assert_eq(sg_redis_epoch_ok(r), 1);
        cr_assert_eq(sg_counter_value("redis_data_lost_total"), 0);
        cr_assert_str_eq(h_redis_str(epoch, sizeof(epoch), "GET sg:epoch"),
                         "other-stage-epoch");
        sg_redis_destroy(r);
}
