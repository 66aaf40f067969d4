/*
 * A partial Redis rollback that keeps sg:epoch (review finding F14,
 * ../shared/reviews/correctness-ace1912.md): Redis comes back from an
 * older RDB (a restore, a failover to a lagging replica, `everysec`
 * persistence), so the epoch is the same but rules' latest state writes
 * are gone: a breaker it opened, and whose PAUSE went out, is closed
 * again, and no RESUME will ever follow. sg-rules must notice that its
 * Kafka commit is past what Redis holds, and stop deciding as for any
 * loss (event=redis_data_lost, sg:epoch:lost set), instead of going on
 * from the rolled-back state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

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
    "    action: PAUSE\n"
    "    min_spend_micros: 1\n";

static void setup(void)
{
        h_init();
        h_rules_config(rules_yaml, NULL);
        h_start_infra();
}

TestSuite(rollback, .init = setup, .fini = h_stack_down, .timeout = 240);

Test(rollback, a_rollback_that_keeps_the_epoch_stops_rules)
{
        long long end = (long long)time(NULL) * 1000 - 3600 * 1000;
        char epoch[128], got[128];
        long from;

        end -= end % 60000;
        h_spawn("sg-rules", NULL);
        /* social spends a fortieth of its budget: rules writes its state
         * (and Redis its epoch), saved in dump.rdb. */
        h_produce_today("sg.aggregates", "social", 1000 * M, 5000 * M,
                        end - 60000);
        h_wait_caught_up("rules", "sg.aggregates", 30000);
        h_redis_str(epoch, sizeof(epoch), "GET sg:epoch");
        cr_assert_neq(epoch[0], '\0', "no epoch in Redis");
        h_redis_str(got, sizeof(got), "SAVE");
        cr_assert_str_eq(got, "OK");

        /* Then its whole budget (config/spendguard.yaml): PAUSE. */
        h_produce_today("sg.aggregates", "social", 40000 * M, 200000 * M,
                        end);
        h_wait_caught_up("rules", "sg.aggregates", 30000);
        h_redis_str(got, sizeof(got), "HGET sg:breaker:social state");
        cr_assert_str_eq(got, "open");
        cr_assert_eq(h_stop(h_pid("sg-rules")), 0);

        /* Redis comes back from the older RDB: same epoch, breaker gone. */
        h_redis_restart();
        h_redis_str(got, sizeof(got), "GET sg:epoch");
        cr_assert_str_eq(got, epoch);
        h_redis_str(got, sizeof(got), "HGET sg:breaker:social state");
        cr_assert_str_eq(got, "", "the rollback did not happen");

        from = h_log_size("sg-rules");
        h_spawn("sg-rules", NULL);
        cr_assert_geq(h_wait_log("sg-rules", from, "event=redis_data_lost",
                                 30000),
                      0,
                      "sg-rules took the rolled-back state for its own "
                      "(logs in %s)",
                      H.dir);
        h_redis_str(got, sizeof(got), "EXISTS sg:epoch:lost");
        cr_assert_str_eq(got, "1");
}
