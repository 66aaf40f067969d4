#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "stage.h"

/*
 * /readyz is served from sg_stage_init on, before a stage reaches
 * sg_redis_new: a stage that uses Redis must not look "ready but for the
 * broker" in that gap (ops_test's readyz_is_503_and_names_what_is_missing
 * saw exactly that once from aggregate).
 */
static void init_stage(const sg_stage_desc_t *desc)
{
        static sg_conf_t conf;
        char path[1024];
        char *argv[] = {"sg-test", "-c", path, NULL};

        snprintf(path, sizeof(path), "%s/config/spendguard.yaml",
                 getenv("SG_SOURCE_DIR") ? getenv("SG_SOURCE_DIR") : ".");
        setenv("SG_METRICS_LISTEN", "off", 1);
        sg_stage_init(desc, 3, argv, &conf);
}

Test(stage, a_stage_that_uses_redis_is_not_ready_before_it_connects)
{
        static const char *const sections[] = {"", "rules.", NULL};
        static const sg_stage_desc_t desc = {"rules", "test", sections, 0};
        char why[300];

        init_stage(&desc);
        cr_assert_eq(sg_stage_ready(why, sizeof(why)), 0);
        cr_assert_str_eq(why, "broker not reachable; no partitions assigned; "
                              "redis not connected");
}

Test(stage, a_stage_without_redis_never_waits_for_it)
{
        static const char *const sections[] = {"", "ingest.", NULL};
        static const sg_stage_desc_t desc = {"ingest", "test", sections, 1};
        char why[300];

        init_stage(&desc);
        cr_assert_eq(sg_stage_ready(why, sizeof(why)), 0);
        cr_assert_str_eq(why, "broker not reachable; no partitions assigned");
}
