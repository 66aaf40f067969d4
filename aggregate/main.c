#include <stdio.h>

#include "aggregate.h"
#include "stage.h"

int main(int argc, char **argv)
{
        static const char *const sections[] = {"", "topics.", "aggregate.",
                                               NULL};
        static const sg_stage_desc_t desc = {
            "aggregate",
            "Keeps event-time buckets per channel and per (channel, "
            "campaign) in Redis,\napplied exactly once per batch; writes "
            "rolling-window snapshots and final\nKPI windows to "
            "sg.aggregates.",
            sections,
            0 /* without_redis */};
        static sg_conf_t conf;
        char errstr[512];
        sg_aggregate_t *ag;
        int rc;

        sg_stage_init(&desc, argc, argv, &conf);
        ag = sg_aggregate_new(&conf, errstr, sizeof(errstr));
        if (!ag) {
                if (sg_stop)
                        return 0; /* asked to stop while still starting */
                fprintf(stderr, "sg-aggregate: %s\n", errstr);
                return 1;
        }
        rc = sg_aggregate_run(ag);
        sg_aggregate_destroy(ag);
        return rc == 0 ? 0 : 1;
}
