/*
 * aggregate on more than 1,024 sg.events partitions (review finding F19f,
 * ../shared/reviews/correctness-ace1912.md: partitions from 1,024 on got
 * "partition_out_of_range" and were retried for ever). sg-broker makes at
 * most 1,000 partitions a topic, so this runs on a real Kafka broker:
 * sg.events has 1,030, and events on a partition past 1,024 are counted
 * exactly as those on a low one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "codec.h"
#include "harness.h"

#define EVENTS_PARTS 1030
#define HIGH_CLICKS  7
#define LOW_CLICKS   3

/* The partitions of topic that have a leader, by metadata. */
static int led_partitions(rd_kafka_t *rk, const char *topic)
{
        rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
        const struct rd_kafka_metadata *md;
        int led = 0;

        if (rd_kafka_metadata(rk, 0, t, &md, 10000) ==
            RD_KAFKA_RESP_ERR_NO_ERROR) {
                for (int i = 0; md->topic_cnt == 1 &&
                                i < md->topics[0].partition_cnt;
                     i++)
                        led += md->topics[0].partitions[i].leader >= 0;
                rd_kafka_metadata_destroy(md);
        }
        rd_kafka_topic_destroy(t);
        return led;
}

/* sg-broker --create-on takes at most 1,000 partitions a topic (its own
 * limit); sg.events grows to EVENTS_PARTS with the admin API, and the test
 * goes on once every partition has a leader. */
static void grow_events(void)
{
        rd_kafka_t *rk = h_admin();
        rd_kafka_NewPartitions_t *np;
        const rd_kafka_topic_result_t **tr;
        rd_kafka_queue_t *q;
        rd_kafka_event_t *ev;
        long long deadline;
        char err[256];
        size_t n;

        np = rd_kafka_NewPartitions_new("sg.events", EVENTS_PARTS, err,
                                        sizeof(err));
        cr_assert_not_null(np, "%s", err);
        q = rd_kafka_queue_new(rk);
        rd_kafka_CreatePartitions(rk, &np, 1, NULL, q);
        ev = h_admin_result(q, "CreatePartitions");
        tr = rd_kafka_CreatePartitions_result_topics(
            rd_kafka_event_CreatePartitions_result(ev), &n);
        cr_assert_eq(n, 1);
        cr_assert_eq(rd_kafka_topic_result_error(tr[0]),
                     RD_KAFKA_RESP_ERR_NO_ERROR, "CreatePartitions: %s",
                     rd_kafka_topic_result_error_string(tr[0]));
        rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
        rd_kafka_NewPartitions_destroy(np);

        deadline = h_now_ms() + 120000;
        while ((n = (size_t)led_partitions(rk, "sg.events")) <
               EVENTS_PARTS) {
                cr_assert_lt(h_now_ms(), deadline,
                             "sg.events: %zu of %d partitions led after "
                             "120 s",
                             n, EVENTS_PARTS);
                usleep(200000);
        }
        rd_kafka_destroy(rk);
}

static void setup(void)
{
        setenv("SG_KAFKA", "real", 1); /* tests/real: never the mock */
        h_init();
        h_start_infra();
        grow_events();
        h_spawn("sg-aggregate", NULL);
}

TestSuite(partitions, .init = setup, .fini = h_stack_down, .timeout = 400);

/* A channel name that ingest's producer (librdkafka's default partitioner,
 * by key) routes to a partition that is (high) or is not past 1,023;
 * *part gets it. */
static void channel_routed(int high, char *name, size_t size, int32_t *part)
{
        for (int i = 0;; i++) {
                snprintf(name, size, "%s%d", high ? "wide" : "narrow", i);
                *part = rd_kafka_msg_partitioner_consistent(
                    NULL, name, strlen(name), EVENTS_PARTS, NULL, NULL);
                if ((*part >= 1024) == high)
                        return;
        }
}

/* n normalized clicks of channel on sg.events partition part, as ingest
 * writes them (source ad-clicks/0 from offset *src_off on). */
static void clicks_to(const char *channel, int32_t part, int n,
                      long long *src_off)
{
        char schemas[512], err[256];
        static sg_codec_t *codec;
        unsigned char buf[4096];
        sg_event_t ev;

        if (!codec)
                codec = sg_codec_new(h_src("schemas", schemas, sizeof(schemas)),
                                     err, sizeof(err));
        cr_assert_not_null(codec, "%s", err);
        for (int i = 0; i < n; i++) {
                int len;

                memset(&ev, 0, sizeof(ev));
                ev.type = SG_EV_CLICK;
                snprintf(ev.event_id, sizeof(ev.event_id), "%s-%d", channel,
                         i);
                ev.event_time = h_wall_ms() - 60000;
                snprintf(ev.channel, sizeof(ev.channel), "%s", channel);
                snprintf(ev.campaign_id, sizeof(ev.campaign_id), "c1");
                ev.cost_micros = 1000;
                snprintf(ev.src_topic, sizeof(ev.src_topic), "ad-clicks");
                ev.src_partition = 0;
                ev.src_offset = (*src_off)++;
                len = sg_codec_encode_normalized(codec, &ev, buf, sizeof(buf));
                cr_assert_gt(len, 0, "%s", sg_codec_error(codec));
                cr_assert_eq(h_produce_async("sg.events", part, channel,
                                             strlen(channel), buf,
                                             (size_t)len),
                             0);
        }
        cr_assert_eq(h_flush(), 0);
}

/* A channel-level truth row: n clicks of 1,000 micros. */
static json_t *clicks_row(const char *channel, int n)
{
        return json_pack("{s:s, s:i, s:i}", "channel", channel, "clicks", n,
                         "spend_micros", n * 1000);
}

Test(partitions, events_past_partition_1023_are_counted)
{
        char high[32], low[32], why[256];
        int32_t ph, pl;
        long long src_off = 0;
        json_t *truth, *kpis;

        channel_routed(1, high, sizeof(high), &ph);
        channel_routed(0, low, sizeof(low), &pl);
        clicks_to(high, ph, HIGH_CLICKS, &src_off);
        clicks_to(low, pl, LOW_CLICKS, &src_off);

        /* Fails the test when a partition is never committed. */
        h_wait_caught_up("aggregate", "sg.events", 120000);
        truth = json_pack("[o, o]", clicks_row(high, HIGH_CLICKS),
                          clicks_row(low, LOW_CLICKS));
        kpis = h_kpis_wait(truth, NULL, 30000, why, sizeof(why));
        cr_assert_not_null(kpis, "%s (partition %d and %d; logs in %s)", why,
                           ph, pl, H.dir);
        json_decref(kpis);
        json_decref(truth);
}
