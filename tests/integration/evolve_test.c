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

TestSuite(evolve, .init = setup, .fini = teardown, .timeout = 240);

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

Test(evolve, counts_events_of_an_evolved_writer_schema_exactly)
{
        char schemas[512], script[512], rec[512], truth_path[512], base[32],
            why[512] = "", buf[256];
        const char *args[6];
        rd_kafka_message_t **msgs;
        long long deadline;
        json_t *truth, *kpis = NULL;
        int matched = 0, n;

        h_src("schemas", schemas, sizeof(schemas));
        h_src("tests/interop/encode_evolved.py", script, sizeof(script));
        snprintf(rec, sizeof(rec), "%s/evolve.records", H.dir);
        snprintf(truth_path, sizeof(truth_path), "%s/evolve.truth", H.dir);
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
                     "encode_evolved.py failed (needs python3-avro; log: "
                     "%s/python3.log)",
                     H.dir);
        n = produce_records(rec);
        /* 120 clicks of id 101, 60 of id 2, 60 impressions, 1 of id 999. */
        cr_assert_eq(n, 120 + 60 + 60 + 1);

        truth = h_jsonl_file(truth_path);
        cr_assert_eq(json_array_size(truth), 4);
        cr_assert_eq(json_integer_value(
                         json_object_get(json_array_get(truth, 0), "clicks")),
                     180);
        deadline = h_now_ms() + 90000;
        while (!matched && h_now_ms() < deadline) {
                json_decref(kpis);
                kpis = h_kpis("evolve");
                matched = h_kpis_match(truth, kpis, why, sizeof(why));
                if (!matched)
                        usleep(200 * 1000);
        }
        cr_assert(matched,
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
