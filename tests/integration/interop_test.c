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
        char schemas[512], script[512], rec[512], truth_path[512], base[32],
            why[512] = "";
        const char *args[6];
        json_t *truth, *kpis;
        int n;

        h_src("schemas", schemas, sizeof(schemas));
        h_src("tests/interop/encode_events.py", script, sizeof(script));
        snprintf(rec, sizeof(rec), "%s/py.records", H.dir);
        snprintf(truth_path, sizeof(truth_path), "%s/py.truth", H.dir);
        /* Ten minutes ago: neither in the future nor behind a watermark. */
        snprintf(base, sizeof(base), "%lld",
                 (long long)time(NULL) * 1000 - 600000);
        args[0] = script;
        args[1] = schemas;
        args[2] = rec;
        args[3] = truth_path;
        args[4] = base;
        args[5] = NULL;
        cr_assert_eq(h_run("/usr/bin/python3", args, NULL, 0), 0,
                     "encode_events.py failed (needs python3-avro; log: "
                     "%s/python3.log)",
                     H.dir);
        n = h_produce_records(rec);
        cr_assert_eq(n, 300 + 100 + 34);

        truth = h_jsonl_file(truth_path);
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
