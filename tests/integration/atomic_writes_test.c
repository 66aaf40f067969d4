/*
 * The state writes of rules and the sink are atomic (review finding F19d,
 * ../shared/reviews/correctness-ace1912.md): rules' sg:rstate updates and
 * the sink's delivery record (SET sg:delivered:<id>, LPUSH sg:decisions)
 * each reach Redis inside MULTI/EXEC, so a SIGKILL or a lost connection
 * in the middle of one leaves all of it or none, never a part. Watched
 * with redis-cli MONITOR during the default scenario.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(atomic, .init = h_stack_up, .fini = h_stack_down, .timeout = 300);

/* The writes that must never stand alone. */
static const char *const watched[] = {
    "\"SET\" \"sg:delivered:", "\"LPUSH\" \"sg:decisions\"",
    "\"HSET\" \"sg:rstate\"",  "\"HDEL\" \"sg:rstate\"", NULL};

Test(atomic, rules_and_sink_state_writes_are_in_multi_exec)
{
        const char *mon_args[] = {"-s", H.redis_sock, "monitor", NULL};
        const char *gen_args[] = {"--seed", "7", "--duration", "180", NULL};
        char path[600], line[8192];
        rd_kafka_message_t **msgs;
        int total = 0, alone = 0, in_multi = 0, n;
        char first_alone[512] = "";
        pid_t mon;
        FILE *fp;

        mon = h_spawn("redis-cli", mon_args);
        cr_assert_eq(h_run("sg-gen", gen_args, NULL, 0), 0,
                     "sg-gen failed (log: %s/sg-gen.log)", H.dir);
        /* The scenario's ten decisions delivered and recorded. */
        n = h_consume_all("ad-decisions", 10, 120000, &msgs);
        h_msgs_free(msgs, n);
        cr_assert_eq(n, 10, "decisions: want 10, got %d", n);
        h_wait_caught_up("sink", "sg.decisions", 60000);
        h_wait_caught_up("rules", "sg.aggregates", 60000);
        h_stop(mon); /* redis-cli dies of the SIGTERM: not a clean exit */

        snprintf(path, sizeof(path), "%s/redis-cli.log", H.dir);
        fp = fopen(path, "r");
        cr_assert_not_null(fp);
        while (fgets(line, sizeof(line), fp)) {
                if (strstr(line, "] \"MULTI\"")) {
                        in_multi = 1;
                        continue;
                }
                if (strstr(line, "] \"EXEC\"") ||
                    strstr(line, "] \"DISCARD\"")) {
                        in_multi = 0;
                        continue;
                }
                for (const char *const *w = watched; *w; w++) {
                        if (!strstr(line, *w))
                                continue;
                        total++;
                        if (!in_multi && !alone++)
                                snprintf(first_alone, sizeof(first_alone),
                                         "%.500s", line);
                }
        }
        fclose(fp);
        cr_assert_gt(total, 0, "MONITOR saw no state write (log: %s)", path);
        cr_assert_eq(alone, 0,
                     "%d of %d state writes outside MULTI/EXEC, the first: %s",
                     alone, total, first_alone);
}
