/*
 * Producers evolve their schemas without stopping ingest: clicks written by
 * an independent Avro implementation (Apache Avro for Python) with the
 * evolved writer schema of the registry (schemas/registry/101.avsc, id 101)
 * go through the real stack next to events of the contract schemas and are
 * counted exactly in `sg-ctl kpis --json`; a record of an id the registry
 * does not know is dead-lettered as unknown_schema and counted nowhere.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(evolve, .init = h_stack_up, .fini = h_stack_down, .timeout = 240);

Test(evolve, counts_events_of_an_evolved_writer_schema_exactly)
{
        char why[512] = "", buf[256];
        rd_kafka_message_t **msgs;
        json_t *truth, *kpis;
        int n;

        truth = h_python_encode("encode_evolved.py", "evolve", &n);
        /* 120 clicks of id 101, 60 of id 2, 60 impressions, 1 of id 999. */
        cr_assert_eq(n, 120 + 60 + 60 + 1);

        cr_assert_eq(json_array_size(truth), 4);
        cr_assert_eq(json_integer_value(
                         json_object_get(json_array_get(truth, 0), "clicks")),
                     180);
        kpis = h_kpis_wait(truth, "evolve", 90000, why, sizeof(why));
        cr_assert(kpis,
                  "KPIs never matched the Python-encoded truth: %s "
                  "(logs in %s)",
                  why, H.dir);
        /* Exactly the channel row and the three campaigns. */
        cr_assert_eq(json_array_size(kpis), 4);
        json_decref(kpis);
        json_decref(truth);

        /* The one record of an unregistered id, and nothing else. */
        n = h_consume_all("sg.deadletter", 1, 30000, &msgs);
        cr_assert_eq(n, 1);
        cr_assert_str_eq(h_header(msgs[0], "sg.error", buf, sizeof(buf)),
                         "unknown_schema");
        cr_assert_str_eq(h_header(msgs[0], "sg.detail", buf, sizeof(buf)),
                         "schema id 999 is not an input event and has no "
                         "registry/999.avsc");
        h_msgs_free(msgs, n);
}
