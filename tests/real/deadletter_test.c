/*
 * A dead letter that the broker itself refuses (review finding F5,
 * ../shared/reviews/correctness-ace1912.md). The producer's own limit
 * (message.max.bytes) is covered in integration/ingest_test; here the
 * producer accepts the dead letter and the broker answers
 * MESSAGE_TOO_LARGE, because sg.deadletter has a topic-level
 * max.message.bytes of 1,000 bytes, something only a real Kafka broker
 * can do for one topic. Ingest must log and count the refusal, never
 * rewind for it, and lose or repeat nothing else: every good record
 * reaches sg.events once, every other dead letter reaches sg.deadletter.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "codec.h"
#include "harness.h"
#include "marker.h"

#define DL_TOPIC_MAX "1000" /* sg.deadletter's max.message.bytes */
#define BIG_LEN      2000   /* a bad record whose dead letter exceeds it */
#define GOOD         5      /* good clicks after each bad record */
/* ingest's log line for a dead letter refused for good. */
#define REFUSED                                                                \
        "event=deadletter_failed topic=sg.deadletter err=MSG_SIZE_TOO_LARGE"

/* The value of config name of topic as the broker describes it ("" when it
 * does not say). */
static void topic_config(rd_kafka_t *rk, const char *topic, const char *name,
                         char *out, size_t size)
{
        rd_kafka_ConfigResource_t *res =
            rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        const rd_kafka_DescribeConfigs_result_t *r;
        const rd_kafka_ConfigResource_t **rs;
        const rd_kafka_ConfigEntry_t **es;
        rd_kafka_event_t *ev;
        size_t rn, en;

        out[0] = '\0';
        rd_kafka_DescribeConfigs(rk, &res, 1, NULL, q);
        ev = h_admin_result(q, "DescribeConfigs");
        r = rd_kafka_event_DescribeConfigs_result(ev);
        rs = rd_kafka_DescribeConfigs_result_resources(r, &rn);
        for (size_t i = 0; i < rn; i++) {
                es = rd_kafka_ConfigResource_configs(rs[i], &en);
                for (size_t j = 0; j < en; j++)
                        if (strcmp(rd_kafka_ConfigEntry_name(es[j]), name) ==
                                0 &&
                            rd_kafka_ConfigEntry_value(es[j]))
                                snprintf(out, size, "%s",
                                         rd_kafka_ConfigEntry_value(es[j]));
        }
        rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
        rd_kafka_ConfigResource_destroy(res);
}

/* Sets max.message.bytes of sg.deadletter and waits until the broker
 * describes it so: its own view, which is what it checks a produce by. */
static void deadletter_topic_small(void)
{
        rd_kafka_t *rk = h_admin();
        rd_kafka_ConfigResource_t *res =
            rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC,
                                        "sg.deadletter");
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        const rd_kafka_ConfigResource_t **rs;
        long long deadline;
        rd_kafka_event_t *ev;
        char val[64];
        size_t rn;

        cr_assert_eq(rd_kafka_ConfigResource_set_config(
                         res, "max.message.bytes", DL_TOPIC_MAX),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_AlterConfigs(rk, &res, 1, NULL, q);
        ev = h_admin_result(q, "AlterConfigs");
        rs = rd_kafka_AlterConfigs_result_resources(
            rd_kafka_event_AlterConfigs_result(ev), &rn);
        cr_assert_eq(rn, 1);
        cr_assert_eq(rd_kafka_ConfigResource_error(rs[0]),
                     RD_KAFKA_RESP_ERR_NO_ERROR, "AlterConfigs: %s",
                     rd_kafka_ConfigResource_error_string(rs[0]));
        rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
        rd_kafka_ConfigResource_destroy(res);

        deadline = h_now_ms() + 30000;
        for (;;) {
                topic_config(rk, "sg.deadletter", "max.message.bytes", val,
                             sizeof(val));
                if (strcmp(val, DL_TOPIC_MAX) == 0)
                        break;
                cr_assert_lt(h_now_ms(), deadline,
                             "sg.deadletter max.message.bytes is '%s', "
                             "not " DL_TOPIC_MAX " after 30 s",
                             val);
                usleep(100000);
        }
        rd_kafka_destroy(rk);
}

/* The real broker, sg.deadletter refusing anything above 1,000 bytes,
 * redis-server and sg-ingest alone. */
static void setup(void)
{
        setenv("SG_KAFKA", "real", 1); /* tests/real: never the mock */
        h_init();
        h_start_infra();
        deadletter_topic_small();
        h_spawn("sg-ingest", NULL);
}

TestSuite(deadletter, .init = setup, .fini = h_stack_down, .timeout = 300);

/* A bad record (neither Avro nor JSON: bad_framing) of len random bytes, then GOOD good clicks
 * <prefix>-0.., all on ad-clicks partition 0, acknowledged. */
static void bad_then_good(size_t len, const char *prefix)
{
        char *bad = malloc(len), buf[512];
        long long t = h_wall_ms() - 60000;

        cr_assert_not_null(bad);
        /* Incompressible (the producer compresses with lz4), first byte
         * 'x'. */
        for (size_t i = 0, x = 12345; i < len; i++) {
                x = x * 1103515245 + 12345;
                bad[i] = (char)(x >> 16);
        }
        bad[0] = 'x';
        cr_assert_eq(h_produce_async("ad-clicks", 0, "bad", 3, bad, len), 0);
        free(bad);
        for (int i = 0; i < GOOD; i++) {
                int n = snprintf(buf, sizeof(buf),
                                 "{\"type\":\"click\",\"event_id\":"
                                 "\"%s-%d\",\"event_time\":%lld,\"channel\":"
                                 "\"dlt\",\"campaign_id\":\"c1\","
                                 "\"cost_micros\":1000}",
                                 prefix, i, t + i);

                cr_assert_eq(h_produce_async("ad-clicks", 0, "k", 1, buf,
                                             (size_t)n),
                             0);
        }
        cr_assert_eq(h_flush(), 0);
}

/*
 * Three bad records on one input partition, each followed by 5 good
 * clicks: the first and the last dead letters are small, the middle one
 * (2,000 bytes) is refused by the broker. Each step waits for ingest's
 * answer to the one before, so no two dead letters share a produce
 * batch (Kafka refuses a batch as a whole).
 */
Test(deadletter, a_dead_letter_the_broker_refuses_stalls_and_loses_nothing)
{
        const char *prefixes[] = {"before", "refused", "after"};
        char schemas[512], err[256], hbuf[128];
        sg_codec_t *codec =
            sg_codec_new(h_src("schemas", schemas, sizeof(schemas)), err,
                         sizeof(err));
        int seen[3][GOOD] = {{0}};
        rd_kafka_message_t **msgs;
        int n, events = 0;

        cr_assert_not_null(codec, "%s", err);
        bad_then_good(8, prefixes[0]);
        n = h_consume_all("sg.deadletter", 1, 60000, &msgs);
        h_msgs_free(msgs, n);
        cr_assert_eq(n, 1, "first dead letter: %d on sg.deadletter", n);

        bad_then_good(BIG_LEN, prefixes[1]);
        cr_assert_geq(h_wait_log("sg-ingest", 0, REFUSED, 60000), 0, "the broker did not refuse the 2,000-byte dead "
                         "letter (logs in %s)",
                      H.dir);

        bad_then_good(8, prefixes[2]);
        /* Fails the test when ingest never commits past a bad record. */
        h_wait_caught_up("ingest", "ad-clicks", 60000);

        n = h_consume_all("sg.events", 3 * GOOD, 30000, &msgs);
        for (int i = 0; i < n; i++) {
                sg_marker_reader_t mk;
                sg_event_t ev;

                if (sg_marker_open(msgs[i], &mk, err, sizeof(err)) != 0)
                        continue;
                cr_assert_eq(sg_codec_decode_normalized(codec,
                                                        msgs[i]->payload,
                                                        msgs[i]->len, &ev),
                             0, "%s", sg_codec_error(codec));
                events++;
                for (int p = 0; p < 3; p++) {
                        size_t pl = strlen(prefixes[p]);
                        int k;

                        if (strncmp(ev.event_id, prefixes[p], pl) == 0 &&
                            ev.event_id[pl] == '-' &&
                            (k = atoi(ev.event_id + pl + 1)) >= 0 &&
                            k < GOOD)
                                seen[p][k]++;
                }
        }
        h_msgs_free(msgs, n);
        cr_assert_eq(events, 3 * GOOD, "%d events on sg.events, want %d",
                     events, 3 * GOOD);
        for (int p = 0; p < 3; p++)
                for (int k = 0; k < GOOD; k++)
                        cr_assert_eq(seen[p][k], 1,
                                     "%s-%d on sg.events %d times",
                                     prefixes[p], k, seen[p][k]);

        /* The two small dead letters, each once, with their sources:
         * offsets 0 and 12 (the refused one was 6). */
        n = h_consume_all("sg.deadletter", 2, 30000, &msgs);
        cr_assert_eq(n, 2, "%d dead letters, want 2", n);
        cr_assert_str_eq(h_header(msgs[0], "sg.src", hbuf, sizeof(hbuf)),
                         "ad-clicks/0/0");
        cr_assert_str_eq(h_header(msgs[1], "sg.src", hbuf, sizeof(hbuf)),
                         "ad-clicks/0/12");
        for (int i = 0; i < n; i++)
                cr_assert_str_eq(h_header(msgs[i], "sg.error", hbuf,
                                          sizeof(hbuf)),
                                 "bad_framing");
        h_msgs_free(msgs, n);

        n = h_log_count("sg-ingest", REFUSED);
        cr_assert_eq(n, 1, "%d dead letters refused, want 1", n);
        n = h_log_count("sg-ingest", "event=batch_retry");
        cr_assert_eq(n, 0, "ingest rewound its batches %d times", n);
        sg_codec_destroy(codec);
}
