/*
 * Recovery in seconds on a real Kafka broker (static group membership,
 * docs/reliability.md "Recovery time"). While sg-gen feeds the stack:
 *
 * 1. sg-ingest instance "a", a static member (SG_INSTANCE_ID=a) with a 45 s
 *    session (librdkafka's default), is SIGKILLed and restarted at once
 *    under the same instance id. Static membership gives it its 12
 *    partitions back without waiting for the dead member's session to
 *    expire: the test requires them back within 30 s (dynamic membership
 *    needs the 45 s expiry first) and prints the time it took.
 * 2. A second instance "b" with the shipped defaults (dynamic membership,
 *    a 6 s session) joins, takes half of the partitions, and is SIGKILLed
 *    for good: "a" must get all 12 again (after b's session expires) and
 *    the test prints when.
 *
 * At the end every KPI equals sg-gen's ground truth: nothing lost or
 * counted twice across the kills and the hand-overs.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

/* ad-impressions, ad-clicks, ad-conversions x 4 partitions. */
#define INGEST_PARTITIONS 12

static void setup(void)
{
        setenv("SG_KAFKA", "real", 1); /* tests/real: never the mock */
        h_init();
        h_config(NULL, "kafka:\n  session.timeout.ms: 45000\n");
        h_start_infra();
}

TestSuite(recovery, .init = setup, .fini = h_stack_down, .timeout = 600);

/* Waits for "event=assigned partitions=<want>" in sg-ingest.log after
 * byte from: the ms it took, or -1 after deadline_ms. */
static long long wait_assigned(long from, int want, int deadline_ms)
{
        char pat[64];

        snprintf(pat, sizeof(pat), "event=assigned partitions=%d\n", want);
        return h_wait_log("sg-ingest", from, pat, deadline_ms);
}

Test(recovery, restarted_ingest_resumes_at_once_and_a_dead_one_is_replaced)
{
        char truth_path[512], shipped[512], cfg_b[600];
        const char *gen_args[] = {"--seed",  "41",       "--duration",
                                  "150",     "--rate",   "4000",
                                  "--truth", truth_path, NULL};
        const char *env_a[] = {"SG_INSTANCE_ID=a", NULL};
        const char *env_b[] = {cfg_b, NULL};
        long long restart_ms, replace_ms;
        pid_t a, b, gen;
        long from;

        snprintf(truth_path, sizeof(truth_path), "%s/truth.jsonl", H.dir);
        snprintf(cfg_b, sizeof(cfg_b), "SG_CONFIG=%s",
                 h_src("config/spendguard.yaml", shipped, sizeof(shipped)));
        a = h_spawn_env("sg-ingest", NULL, env_a);
        h_spawn("sg-aggregate", NULL);
        h_spawn("sg-rules", NULL);
        h_spawn("sg-sink", NULL);
        cr_assert_geq(wait_assigned(0, INGEST_PARTITIONS, 60000), 0,
                      "ingest never got its partitions (logs in %s)", H.dir);
        gen = h_spawn("sg-gen", gen_args);
        sleep(3);

        /* 1. SIGKILL and restart under the same group.instance.id. */
        from = h_log_size("sg-ingest");
        kill(a, SIGKILL);
        cr_assert_eq(h_wait(a, 10000), -1);
        a = h_spawn_env("sg-ingest", NULL, env_a);
        restart_ms = wait_assigned(from, INGEST_PARTITIONS, 30000);
        cr_assert_geq(restart_ms, 0,
                      "the restarted ingest had not got its partitions back "
                      "after 30 s (static membership; logs in %s)",
                      H.dir);
        fprintf(stderr,
                "recovery: restarted ingest (45 s session) had its %d "
                "partitions back %lld ms after the restart\n",
                INGEST_PARTITIONS, restart_ms);

        /* 2. A second instance with the shipped defaults, killed for good. */
        from = h_log_size("sg-ingest");
        b = h_spawn_env("sg-ingest", NULL, env_b);
        cr_assert_geq(wait_assigned(from, INGEST_PARTITIONS / 2, 60000),
                      0, "instance b never got half of the partitions "
                         "(logs in %s)",
                      H.dir);
        sleep(2);
        from = h_log_size("sg-ingest");
        kill(b, SIGKILL);
        cr_assert_eq(h_wait(b, 10000), -1);
        replace_ms = wait_assigned(from, INGEST_PARTITIONS, 120000);
        cr_assert_geq(replace_ms, 0,
                      "instance a never took over b's partitions (logs in %s)",
                      H.dir);
        fprintf(stderr,
                "recovery: instance a had all %d partitions again %lld ms "
                "after b was SIGKILLed (b: shipped defaults, 6 s session)\n",
                INGEST_PARTITIONS, replace_ms);

        cr_assert_eq(h_wait(gen, 300000), 0,
                     "sg-gen failed (log: %s/sg-gen.log)", H.dir);
        fprintf(stderr, "recovery: %lld events counted exactly\n",
                h_kpis_match_truth_file(truth_path, 180000));
}
