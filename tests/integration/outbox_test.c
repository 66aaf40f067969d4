/*
 * A decision rules has delivered agrees with the state it stored, whatever
 * moment rules is killed at (review F13): a budget-dependent decision is not
 * reproducible on replay (another channel's reallocation, read in another
 * order, changes the budget), so a PAUSE delivered before its state was
 * written could be followed by a replay that keeps the breaker closed, and
 * no RESUME would ever come. sg-rules alone, fed hand-made snapshots.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>

#include "codec.h"
#include "harness.h"

#define RULES                                                                  \
        "rules:\n"                                                             \
        "  - id: budget_exhausted\n"                                           \
        "    scope: channel\n"                                                 \
        "    window: today\n"                                                  \
        "    metric: spend_pct_of_budget\n"                                    \
        "    op: \">=\"\n"                                                     \
        "    threshold: 1.0\n"                                                 \
        "    resume_threshold: 0.95\n"                                         \
        "    cooldown_s: 3600\n"                                               \
        "    min_spend_micros: 1\n"                                            \
        "    action: PAUSE\n"

static void setup(void)
{
        char path[512], rules[600];
        /* A SIGKILLed member leaves the group in seconds. */
        const char *subst[] = {"kafka:",
                               "kafka:\n"
                               "  session.timeout.ms: 6000\n"
                               "  heartbeat.interval.ms: 500",
                               "file: rules.yaml", rules, NULL};
        FILE *out;

        h_init();
        snprintf(path, sizeof(path), "%s/rules.yaml", H.dir);
        out = fopen(path, "w");
        cr_assert_not_null(out);
        fputs(RULES, out);
        fclose(out);
        snprintf(rules, sizeof(rules), "file: %s", path);
        h_config(subst, NULL);
        h_start_infra();
        h_spawn("sg-rules", NULL);
}

TestSuite(outbox, .init = setup, .fini = h_stack_down, .timeout = 300);

/* The today snapshot of channel ending at end, spend = its whole budget
 * (config/spendguard.yaml). */
static void spent_all(const char *channel, long long budget, long long end)
{
        h_produce_today("sg.aggregates", channel, budget, 0, end);
}

static redisReply *redis(const char *fmt, const char *arg)
{
        redisContext *c = redisConnectUnix(H.redis_sock);
        redisReply *r;

        cr_assert(c && !c->err);
        r = arg ? redisCommand(c, fmt, arg) : redisCommand(c, fmt);
        cr_assert_not_null(r);
        redisFree(c);
        return r;
}

/* 1 when a client of Redis is blocked (CLIENT PAUSE WRITE holds a write). */
static int a_client_is_blocked(void)
{
        redisReply *r = redis("CLIENT LIST", NULL);
        int blocked = 0;

        for (const char *p = r->str; p && (p = strstr(p, " flags="));) {
                p += 7;
                for (; *p && *p != ' '; p++)
                        blocked |= *p == 'b';
        }
        freeReplyObject(r);
        return blocked;
}

static void wait_for(int (*cond)(void), const char *what, int ms)
{
        long long deadline = h_now_ms() + ms;

        while (!cond()) {
                cr_assert_lt(h_now_ms(), deadline, "%s not within %d ms (%s)",
                             what, ms, H.dir);
                usleep(50 * 1000);
        }
}

static int rules_assigned(void)
{
        return h_log_count("sg-rules", "event=assigned") > 0;
}

static int decided(void)
{
        return h_log_count("sg-rules", "rule=budget_exhausted") > 0;
}

static int decided_search(void)
{
        return h_log_count("sg-rules", "channel=search") > 0;
}

/*
 * Every PAUSE of channel on sg.decisions is what Redis holds: the breaker
 * open with that decision id. Returns how many distinct PAUSE ids there
 * are.
 */
static int pauses_agree_with_the_breaker(const char *channel)
{
        rd_kafka_message_t **msgs;
        char ids[8][SG_ID_LEN], key[128];
        int n = h_consume_all("sg.decisions", 0, 3000, &msgs), cnt = 0;
        redisReply *r;

        for (int i = 0; i < n; i++) {
                sg_decision_t d;
                int seen = 0;

                cr_assert_eq(sg_codec_decode_decision(h_codec(), msgs[i]->payload,
                                                      msgs[i]->len, &d),
                             0);
                if (d.action != SG_ACT_PAUSE || strcmp(d.channel, channel))
                        continue;
                for (int k = 0; k < cnt; k++)
                        seen |= !strcmp(ids[k], d.decision_id);
                if (!seen && cnt < 8)
                        snprintf(ids[cnt++], sizeof(ids[0]), "%s",
                                 d.decision_id);
        }
        h_msgs_free(msgs, n);
        cr_assert_leq(cnt, 1, "%d different PAUSE ids for %s", cnt, channel);
        snprintf(key, sizeof(key), "sg:breaker:%s", channel);
        for (int k = 0; k < cnt; k++) {
                r = redis("HGET %s decision_id", key);
                cr_assert_str_eq(r->type == REDIS_REPLY_STRING ? r->str : "",
                                 ids[k],
                                 "PAUSE %s of %s delivered, but Redis holds "
                                 "breaker decision \"%s\"",
                                 ids[k], channel,
                                 r->type == REDIS_REPLY_STRING ? r->str : "");
                freeReplyObject(r);
                r = redis("HGET %s state", key);
                cr_assert_str_eq(r->type == REDIS_REPLY_STRING ? r->str : "",
                                 "open");
                freeReplyObject(r);
        }
        return cnt;
}

static pid_t kill_rules(void)
{
        pid_t pid = h_pid("sg-rules");
        int status;

        kill(pid, SIGKILL);
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        for (int i = 0; i < H.proc_cnt; i++)
                if (H.procs[i].pid == pid)
                        H.procs[i].pid = 0;
        return pid;
}

Test(outbox, a_delivered_pause_agrees_with_the_stored_breaker_at_any_kill)
{
        long long end = 1796000000000LL - 1796000000000LL % 60000;
        redisReply *r;

        wait_for(rules_assigned, "sg-rules assigned", 30000);

        /* 1. Killed while its state write waits (CLIENT PAUSE WRITE). */
        r = redis("CLIENT PAUSE 60000 WRITE", NULL);
        freeReplyObject(r);
        spent_all("social", 40000000000LL, end);
        wait_for(decided, "the budget_exhausted decision", 30000);
        wait_for(a_client_is_blocked, "rules blocked on a write", 30000);
        kill_rules();
        pauses_agree_with_the_breaker("social");
        r = redis("CLIENT UNPAUSE", NULL);
        freeReplyObject(r);

        /* Restarted: decides again, delivers once, stores what it sent. */
        h_spawn("sg-rules", NULL);
        h_wait_caught_up("rules", "sg.aggregates", 60000);
        cr_assert_eq(pauses_agree_with_the_breaker("social"), 1);

        /* 2. Killed after the state write, while the broker refuses the
         * decision: the restarted rules delivers what it stored. */
        r = redis("CLIENT PAUSE 60000 WRITE", NULL);
        freeReplyObject(r);
        spent_all("search", 30000000000LL, end);
        wait_for(decided_search, "the PAUSE of search", 30000);
        wait_for(a_client_is_blocked, "rules blocked on a write", 30000);
        h_broker_ctl("error Produce 100000 NOT_ENOUGH_REPLICAS");
        r = redis("CLIENT UNPAUSE", NULL);
        freeReplyObject(r);
        {
                long long deadline = h_now_ms() + 30000;

                for (;;) {
                        r = redis("HGET sg:breaker:search state", NULL);
                        if (r->type == REDIS_REPLY_STRING &&
                            !strcmp(r->str, "open")) {
                                freeReplyObject(r);
                                break;
                        }
                        freeReplyObject(r);
                        cr_assert_lt(h_now_ms(), deadline,
                                     "search's breaker never stored (%s)",
                                     H.dir);
                        usleep(50 * 1000);
                }
        }
        kill_rules();
        h_broker_ctl("clear all");
        h_spawn("sg-rules", NULL);
        h_wait_caught_up("rules", "sg.aggregates", 60000);
        {
                long long deadline = h_now_ms() + 30000;

                while (pauses_agree_with_the_breaker("search") != 1)
                        cr_assert_lt(h_now_ms(), deadline,
                                     "the stored PAUSE of search was never "
                                     "delivered (%s)",
                                     H.dir);
        }
        cr_assert_eq(h_log_count("sg-rules", "event=outbox_redeliver decisions=1"),
                     1, "the restarted rules did not send the stored outbox "
                        "(%s)",
                     H.dir);
        cr_assert_eq(pauses_agree_with_the_breaker("social"), 1);
}
