#include <stdio.h>
#include <stdlib.h>

#include "ingest.h"
#include "log.h"
#include "stage.h"

int main(int argc, char **argv)
{
        static const char *const sections[] = {"", "topics.", "ingest.",
                                               "schema_registry.", NULL};
        static const sg_stage_desc_t desc = {
            "ingest",
            "Reads ad impressions, clicks and conversions (Avro in Confluent "
            "framing, or JSON),\nvalidates and normalizes them, tags "
            "list-based invalid traffic, writes them to\nsg.events keyed by "
            "channel; every rejected record goes to sg.deadletter with a "
            "reason.",
            sections,
            1 /* without_redis */};
        static sg_conf_t conf;
        char errstr[512];
        sg_ingest_t *in;
        int rc;

        sg_stage_init(&desc, argc, argv, &conf);
        in = sg_ingest_new(&conf, errstr, sizeof(errstr));
        if (!in) {
                fprintf(stderr, "sg-ingest: %s\n", errstr);
                return 1;
        }
        rc = sg_ingest_run(in);
        sg_ingest_destroy(in);
        return rc == 0 ? 0 : 1;
}
