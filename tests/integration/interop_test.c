/*
 * Events encoded by an independent Avro implementation (Apache Avro for
 * Python, the project's .avsc files, Confluent framing ids 1-3) go through
 * the real stack (sg-broker, redis-server, the four stages) and are counted
 * exactly in `sg-ctl kpis --json`.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(interop, .init = h_stack_up, .fini = h_stack_down, .timeout = 240);

Test(interop, counts_events_encoded_by_python_avro_exactly)
{
        char why[512] = "";
        json_t *truth, *kpis;
        int n;

        truth = h_python_encode("encode_events.py", "py", &n);
        cr_assert_eq(n, 300 + 100 + 34);

        cr_assert_eq(json_array_size(truth), 5);
        kpis = h_kpis_wait(truth, "pyint", 90000, why, sizeof(why));
        cr_assert(kpis,
                  "KPIs never matched the Python-encoded truth: %s "
                  "(logs in %s)",
                  why, H.dir);
        /* Nothing else: exactly the channel row and the four campaigns. */
        cr_assert_eq(json_array_size(kpis), 5);
        json_decref(kpis);
        json_decref(truth);
}
