/*
 * Two sg-rules instances keep the budgets consistent (review finding F12,
 * ../shared/reviews/correctness-ace1912.md). On real Kafka, with two rules
 * instances in one group ("ra" and "rb": the range assignor gives ra
 * sg.aggregates partitions 0-1, where kol's snapshots go, and rb 2-3,
 * where gifts' go), the default scenario pauses kol (bots) on ra and gifts
 * (CPA) on rb, and each reallocates. Afterwards:
 *
 * - the budgets and the reserve add up to what was configured (a
 *   reallocation preserves the total), and
 * - neither paused channel has more budget than it was configured with
 *   (a paused channel never receives money).
 *
 * KNOWN FAILING until F12 is fixed: each instance reallocates from its own
 * cached view, so each sees the other's paused channel as closed and
 * overwrites the other's budgets. Label "known" keeps it out of make test
 * (tests/CMakeLists.txt); run it with `ctest -R real/rules_budgets`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

static void setup(void)
{
        setenv("SG_KAFKA", "real", 1); /* tests/real: never the mock */
        h_init();
        h_start_infra();
}

TestSuite(rules_budgets, .init = setup, .fini = h_stack_down, .timeout = 400);

Test(rules_budgets, two_rules_instances_preserve_the_total_and_skip_paused)
{
        const char *gen_args[] = {"--seed", "7", "--duration", "180", NULL};
        const char *env_a[] = {"SG_INSTANCE_ID=ra", NULL};
        const char *env_b[] = {"SG_INSTANCE_ID=rb", NULL};
        const char *budget_args[] = {"budgets", "--json", NULL};
        static char out[65536];
        rd_kafka_message_t **msgs;
        long long configured = 0, current = 0;
        json_t *rows, *row;
        size_t i;
        int n;

        h_spawn("sg-ingest", NULL);
        h_spawn("sg-aggregate", NULL);
        h_spawn("sg-sink", NULL);
        h_spawn_env("sg-rules", NULL, env_a);
        cr_assert_geq(h_wait_log("sg-rules", 0, "event=assigned partitions=4",
                                 60000),
                      0, "rules ra got no partitions (logs in %s)", H.dir);
        {
                long from = h_log_size("sg-rules");

                h_spawn_env("sg-rules", NULL, env_b);
                cr_assert_geq(h_wait_log("sg-rules", from,
                                         "event=assigned partitions=2", 60000),
                              0, "the rules group never split (logs in %s)",
                              H.dir);
        }
        cr_assert_eq(h_run("sg-gen", gen_args, NULL, 0), 0,
                     "sg-gen failed (log: %s/sg-gen.log)", H.dir);
        /* The scenario's 10 decisions, 2 of them REALLOCATE. */
        n = h_consume_all("ad-decisions", 10, 120000, &msgs);
        h_msgs_free(msgs, n);
        cr_assert_geq(n, 10, "decisions: want 10, got %d (logs in %s)", n,
                      H.dir);
        h_wait_caught_up("rules", "sg.aggregates", 60000);

        cr_assert_eq(h_run("sg-ctl", budget_args, out, sizeof(out)), 0);
        rows = h_jsonl_text(out);
        json_array_foreach(rows, i, row)
        {
                const char *ch =
                    json_string_value(json_object_get(row, "channel"));
                long long conf =
                    json_integer_value(json_object_get(row, "configured_micros"));
                long long cur =
                    json_integer_value(json_object_get(row, "budget_micros"));

                configured += conf;
                current += cur;
                if (!strcmp(ch, "kol") || !strcmp(ch, "gifts"))
                        cr_expect_leq(cur, conf,
                                      "paused channel %s got money: %lld > "
                                      "%lld configured",
                                      ch, cur, conf);
        }
        fprintf(stderr, "rules_budgets: %s", out);
        cr_assert_eq(current, configured,
                     "budgets + reserve = %lld, configured %lld (%s)", current,
                     configured, out);
        json_decref(rows);
}
