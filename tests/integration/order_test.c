/*
 * F13 (../shared/reviews/correctness-ace1912.md): rules' budget-dependent
 * decisions depend on the order it reads the sg.aggregates partitions in.
 * Two channels spend their whole daily budget at the same event time; the
 * first one read pauses, and its on-pause reallocation raises the other's
 * budget so that the other does not. Two runs of sg-rules over the same
 * snapshots, read in the two orders, must take the same decisions. Each run
 * has its own Redis database and its own copy of the topic.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>

#include "codec.h"
#include "harness.h"

#define M 1000000LL /* micros per unit */

static const char rules_yaml[] =
    "rules:\n"
    "  - id: budget_exhausted\n"
    "    scope: channel\n"
    "    window: today\n"
    "    metric: spend_pct_of_budget\n"
    "    op: \">=\"\n"
    "    threshold: 1.0\n"
    "    resume_threshold: 0.95\n"
    "    cooldown_s: 3600\n"
    "    min_spend_micros: 1\n"
    "    action: PAUSE\n"
    "reallocation:\n"
    "  window: today\n"
    "  every_s: 0\n"
    "  on_pause: true\n"
    "  reserve_pct: 0\n"
    "  step_pct: 15\n"
    "  min_roas: 1.0\n"
    "  min_spend_micros: 1\n";

static void setup(void)
{
        const char *broker_args[] = {
            "-t", "ad-impressions", "-t", "ad-clicks",     "-t",
            "ad-conversions", "-t", "sg.events",     "-t", "sg.deadletter",
            "-t", "sg.aggregates", "-t", "sg.aggregates.b", "-t",
            "sg.decisions",   "-t", "ad-decisions",  "-t", "channel-kpis",
            NULL};

        h_init();
        h_rules_config(rules_yaml, NULL);
        h_start_infra_args(broker_args);
}

TestSuite(order, .init = setup, .fini = h_stack_down, .timeout = 300);


/* "<state of social> <state of search>" of the breakers in db. */
static void breakers(int db, char *out, size_t size)
{
        redisContext *c = redisConnectUnix(H.redis_sock);
        const char *ch[2] = {"social", "search"};
        char st[2][32];

        cr_assert(c && !c->err);
        for (int i = 0; i < 2; i++) {
                redisReply *r = redisCommand(c, "SELECT %d", db);

                freeReplyObject(r);
                r = redisCommand(c, "HGET sg:breaker:%s state", ch[i]);
                cr_assert_not_null(r);
                snprintf(st[i], sizeof(st[i]), "%s",
                         r->type == REDIS_REPLY_STRING ? r->str : "closed");
                freeReplyObject(r);
        }
        redisFree(c);
        snprintf(out, size, "social %s, search %s", st[0], st[1]);
}

/* dir/<name>.yaml: the test's config reading topic for sg.aggregates. */
static const char *config_for(const char *topic, char *path, size_t size)
{
        char in[512], line[1024];
        FILE *fi, *fo;

        snprintf(in, sizeof(in), "%s/test.yaml", H.dir);
        snprintf(path, size, "%s/%s.yaml", H.dir, topic);
        fi = fopen(in, "r");
        fo = fopen(path, "w");
        cr_assert(fi && fo);
        while (fgets(line, sizeof(line), fi))
                if (strstr(line, "aggregates: sg.aggregates"))
                        fprintf(fo, "  aggregates: %s\n", topic);
                else
                        fputs(line, fo);
        fclose(fi);
        fclose(fo);
        return path;
}

/*
 * One run of sg-rules (its own database and topic): both channels earn
 * (ROAS 5, so each can take money), then spend their whole budget at the
 * same event time, first then second, each read and decided before the
 * next is sent.
 */
static void run(int db, const char *topic, const char *first,
                const char *second, long long end, char *out, size_t size)
{
        char env_redis[400], env_conf[600], path[512];
        const char *env[] = {env_redis, env_conf, NULL};
        const char *order[2] = {first, second};
        pid_t pid;

        snprintf(env_redis, sizeof(env_redis), "SG_REDIS=%s?db=%d",
                 H.redis_url, db);
        snprintf(env_conf, sizeof(env_conf), "SG_CONFIG=%s",
                 config_for(topic, path, sizeof(path)));
        pid = h_spawn_env("sg-rules", NULL, env);
        h_produce_today(topic, "social", 1000 * M, 5000 * M, end - 60000);
        h_produce_today(topic, "search", 1000 * M, 5000 * M, end - 60000);
        h_wait_caught_up("rules", topic, 30000);
        for (int i = 0; i < 2; i++) {
                /* the whole budget of config/spendguard.yaml */
                h_produce_today(topic, order[i],
                                (strcmp(order[i], "social") ? 30000 : 40000) *
                                    M,
                                200000 * M, end);
                h_wait_caught_up("rules", topic, 30000);
        }
        cr_assert_eq(h_stop(pid), 0);
        for (int i = 0; i < H.proc_cnt; i++)
                if (H.procs[i].pid == pid)
                        H.procs[i].pid = 0;
        breakers(db, out, size);
}

Test(order, budget_decisions_do_not_depend_on_the_read_order)
{
        long long end = (long long)time(NULL) * 1000 - 3600 * 1000;
        char one[128], two[128];

        end -= end % 60000;
        run(1, "sg.aggregates", "social", "search", end, one, sizeof(one));
        run(2, "sg.aggregates.b", "search", "social", end, two, sizeof(two));
        cr_assert_str_eq(one, two,
                         "social read first: %s; search read first: %s", one,
                         two);
}
