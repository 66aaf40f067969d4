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

static void setup(void)
{
        h_init();
        h_start_infra();
        h_start_stages();
}

static void teardown(void)
{
        cr_assert_eq(h_stop_all(), 0,
                     "a process did not stop cleanly (logs in %s)", H.dir);
}

TestSuite(interop, .init = setup, .fini = teardown, .timeout = 240);

/* Produces every <topic, value> record of the encoder's output file. */
static int produce_records(const char *path)
{
        FILE *fp = fopen(path, "rb");
        unsigned char hdr[4], *val = NULL;
        char topic[256];
        int n = 0;

        cr_assert_not_null(fp);
        for (;;) {
                uint16_t tl;
                uint32_t vl;

                if (fread(hdr, 1, 2, fp) != 2)
                        break;
                tl = (uint16_t)(hdr[0] << 8 | hdr[1]);
                cr_assert_lt(tl, sizeof(topic));
                cr_assert_eq(fread(topic, 1, tl, fp), tl);
                topic[tl] = '\0';
                cr_assert_eq(fread(hdr, 1, 4, fp), 4);
                vl = (uint32_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 |
                     hdr[3];
                val = realloc(val, vl);
                cr_assert_eq(fread(val, 1, vl, fp), vl);
                cr_assert_eq(h_produce(topic, NULL, 0, val, vl), 0);
                n++;
        }
        free(val);
        fclose(fp);
        return n;
}

Test(interop, counts_events_encoded_by_python_avro_exactly)
{
        char schemas[512], script[512], rec[512], truth_path[512], base[32],
            why[512] = "";
        const char *args[6];
        long long deadline;
        json_t *truth, *kpis = NULL;
        int matched = 0, n;

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
        n = produce_records(rec);
        cr_assert_eq(n, 300 + 100 + 34);

        truth = h_jsonl_file(truth_path);
        cr_assert_eq(json_array_size(truth), 5);
        deadline = h_now_ms() + 90000;
        while (!matched && h_now_ms() < deadline) {
                json_decref(kpis);
                kpis = h_kpis("pyint");
                matched = h_kpis_match(truth, kpis, why, sizeof(why));
                if (!matched)
                        usleep(200 * 1000);
        }
        cr_assert(matched,
                  "KPIs never matched the Python-encoded truth: %s "
                  "(logs in %s)",
                  why, H.dir);
        /* Nothing else: exactly the channel row and the four campaigns. */
        cr_assert_eq(json_array_size(kpis), 5);
        json_decref(kpis);
        json_decref(truth);
}
