/*
 * Exactly once under crashes: while sg-gen feeds the stack, sg-ingest and
 * sg-aggregate are killed with SIGKILL at random moments, at least 20 times,
 * and restarted each time. At the end every KPI total equals the
 * generator's ground truth exactly: nothing lost, nothing counted twice.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

#define KILLS 20

static void setup(void)
{
        /* The mock broker keeps about 5 MiB per partition, consumed or
         * not: 32 partitions hold the whole run with room to spare. */
        const char *broker_args[] = {"--partitions", "32", NULL};

        h_init();
        /* A short consumer session, so that the group notices a killed
         * member in seconds, not in the default 45. */
        h_config(NULL, "kafka:\n  session.timeout.ms: 6000\n"
                       "  heartbeat.interval.ms: 500\n");
        h_start_infra_args(broker_args);
}

TestSuite(crash, .init = setup, .fini = h_stack_down, .timeout = 600);

Test(crash, sigkilled_ingest_and_aggregate_count_every_event_exactly_once)
{
        char truth_path[512], why[512] = "";
        /* About 230,000 events sent over about 60 s. */
        const char *gen_args[] = {"--seed",  "21",       "--duration",
                                  "400",     "--rate",   "4000",
                                  "--truth", truth_path, NULL};
        pid_t ingest, aggregate, gen;
        json_t *truth, *kpis;
        int kills = 0, gen_rc = -1;

        snprintf(truth_path, sizeof(truth_path), "%s/truth.jsonl", H.dir);
        ingest = h_spawn("sg-ingest", NULL);
        aggregate = h_spawn("sg-aggregate", NULL);
        h_spawn("sg-rules", NULL);
        h_spawn("sg-sink", NULL);
        gen = h_spawn("sg-gen", gen_args);

        srand((unsigned)getpid());
        /* 20 kills at random moments 0.5 to 3 s apart: all within the
         * minute sg-gen is sending. */
        for (; kills < KILLS; kills++) {
                usleep((useconds_t)(500 + rand() % 2500) * 1000);
                if (rand() % 2)
                        ingest = h_kill_restart(ingest, "sg-ingest");
                else
                        aggregate = h_kill_restart(aggregate, "sg-aggregate");
        }
        gen_rc = h_wait(gen, 300000);
        cr_assert_eq(gen_rc, 0, "sg-gen failed (log: %s/sg-gen.log)", H.dir);

        truth = h_jsonl_file(truth_path);
        kpis = h_kpis_wait(truth, NULL, 300000, why, sizeof(why));
        cr_assert(kpis,
                  "after %d SIGKILLs the KPIs never matched the truth: %s "
                  "(logs in %s)",
                  kills, why, H.dir);
        json_decref(kpis);
        json_decref(truth);
}
