/*
 * Every kind of bad record next to good ones, through the real stack
 * (sg-broker, redis-server, the four stages): each bad record is on
 * sg.deadletter with its reason code and its original bytes; each good one
 * is counted exactly once, with list-based and duplicate-click invalid
 * traffic tagged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "codec.h"
#include "harness.h"
#include "marker.h"

TestSuite(ingest, .init = h_stack_up, .fini = h_stack_down, .timeout = 240);

#define BROWSER                                                                \
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 "     \
        "Safari/537.36"

static long long now_ms(void)
{
        return (long long)time(NULL) * 1000;
}

/* A JSON click for channel ingt with the given extra members. */
static int json_click(char *buf, size_t size, const char *id, long long t,
                      const char *extra)
{
        return snprintf(buf, size,
                        "{\"type\":\"click\",\"event_id\":\"%s\","
                        "\"event_time\":%lld,\"channel\":\"ingt\","
                        "\"campaign_id\":\"c1\"%s%s}",
                        id, t, extra[0] ? "," : "", extra);
}

typedef struct bad {
        const char *reason; /* expected sg.error */
        const char *topic;
        char value[256];
        int len;
} bad_t;

Test(ingest, every_bad_record_is_dead_lettered_and_every_good_one_counted)
{
        char schemas[512], err[256], key[32], hbuf[256];
        static char big[70000];
        long long t = now_ms() - 120000;
        unsigned char avro[1024];
        rd_kafka_message_t **msgs;
        sg_codec_t *codec;
        sg_event_t ev;
        bad_t bad[16];
        int nbad = 0, n;

        codec = sg_codec_new(h_src("schemas", schemas, sizeof(schemas)), err,
                             sizeof(err));
        cr_assert_not_null(codec, "%s", err);

        /* ---- good records (all on device d1's partition, in order) */
        memset(&ev, 0, sizeof(ev));
        ev.type = SG_EV_IMPRESSION;
        strcpy(ev.event_id, "ig-imp-1");
        ev.event_time = t;
        strcpy(ev.channel, "ingt");
        strcpy(ev.campaign_id, "c1");
        strcpy(ev.device_id, "d1");
        ev.has_device_id = 1;
        strcpy(ev.ad_id, "a1");
        ev.has_ad_id = 1;
        strcpy(ev.user_agent, BROWSER);
        ev.has_user_agent = 1;
        ev.cost_micros = 1000;
        n = sg_codec_encode_input(codec, SG_FMT_AVRO, &ev, avro, sizeof(avro));
        cr_assert_gt(n, 0);
        cr_assert_eq(h_produce("ad-impressions", "d1", 2, avro, n), 0);

        ev.type = SG_EV_CLICK;
        strcpy(ev.event_id, "ig-clk-1");
        ev.event_time = t + 1000;
        ev.cost_micros = 200000;
        n = sg_codec_encode_input(codec, SG_FMT_AVRO, &ev, avro, sizeof(avro));
        cr_assert_eq(h_produce("ad-clicks", "d1", 2, avro, n), 0);

        /* The same device and ad 5 s later: accepted, invalid (dup_click). */
        strcpy(ev.event_id, "ig-clk-2");
        ev.event_time = t + 6000;
        n = sg_codec_encode_input(codec, SG_FMT_AVRO, &ev, avro, sizeof(avro));
        cr_assert_eq(h_produce("ad-clicks", "d1", 2, avro, n), 0);

        /* An HTTP library: invalid (bot_ua). */
        n = json_click((char *)avro, sizeof(avro), "ig-clk-3", t + 7000,
                       "\"cost_micros\":200000,\"device_id\":\"d3\","
                       "\"user_agent\":\"curl/8.4.0\"");
        cr_assert_eq(h_produce("ad-clicks", "d1", 2, avro, n), 0);

        /* No user agent: invalid (no_ua). */
        n = json_click((char *)avro, sizeof(avro), "ig-clk-4", t + 8000,
                       "\"cost_micros\":200000,\"device_id\":\"d4\"");
        cr_assert_eq(h_produce("ad-clicks", "d1", 2, avro, n), 0);

        /* A data-center address (203.0.113.0/24 in config/dc_cidr.txt):
         * invalid (dc_ip). */
        n = json_click((char *)avro, sizeof(avro), "ig-clk-5", t + 9000,
                       "\"cost_micros\":200000,\"device_id\":\"d5\","
                       "\"ip\":\"203.0.113.5\",\"user_agent\":\"" BROWSER "\"");
        cr_assert_eq(h_produce("ad-clicks", "d1", 2, avro, n), 0);

        /* Names are trimmed and lower-cased: counted as ingt / c1. */
        n = snprintf((char *)avro, sizeof(avro),
                     "{\"event_id\":\"ig-clk-6\",\"event_time\":%lld,"
                     "\"channel\":\" INGT \",\"campaign_id\":\"C1\","
                     "\"cost_micros\":200000,\"user_agent\":\"" BROWSER "\"}",
                     t + 10000);
        cr_assert_eq(h_produce("ad-clicks", "d1", 2, avro, n), 0);

        n = snprintf((char *)avro, sizeof(avro),
                     "{\"event_id\":\"ig-conv-1\",\"event_time\":%lld,"
                     "\"channel\":\"ingt\",\"campaign_id\":\"c1\","
                     "\"revenue_micros\":5000000,\"click_id\":\"ig-clk-1\","
                     "\"user_agent\":\"" BROWSER "\"}",
                     t + 20000);
        cr_assert_eq(h_produce("ad-conversions", "d1", 2, avro, n), 0);

        /* ---- bad records, each with its own key */
#define BAD(r, tp, ...)                                                        \
        do {                                                                   \
                bad[nbad].reason = r;                                          \
                bad[nbad].topic = tp;                                          \
                bad[nbad].len = snprintf(bad[nbad].value,                      \
                                         sizeof(bad[0].value), __VA_ARGS__);   \
                nbad++;                                                        \
        } while (0)
        BAD("bad_framing", "ad-clicks", "%s", "\x01not a record");
        BAD("json_parse", "ad-clicks", "%s", "{\"event_id\": \"x\",");
        BAD("missing_field", "ad-clicks",
            "{\"event_id\":\"ig-b3\",\"event_time\":%lld,\"channel\":\"ingt\","
            "\"campaign_id\":\"c1\"}",
            t);
        BAD("bad_value", "ad-clicks",
            "{\"event_id\":\"ig-b4\",\"event_time\":%lld,\"channel\":\"ingt\","
            "\"campaign_id\":\"c1\",\"cost_micros\":-1}",
            t);
        BAD("bad_value", "ad-clicks",
            "{\"event_id\":\"\",\"event_time\":%lld,\"channel\":\"ingt\","
            "\"campaign_id\":\"c1\",\"cost_micros\":1}",
            t);
        BAD("bad_value", "ad-clicks",
            "{\"event_id\":\"ig-b6\",\"event_time\":%lld,\"channel\":\"ingt\","
            "\"campaign_id\":\"c1\",\"cost_micros\":2000000000000}",
            t);
        BAD("bad_value", "ad-clicks",
            "{\"event_id\":\"ig-b7\",\"event_time\":%lld,\"channel\":\"ingt\","
            "\"campaign_id\":\"c1\",\"cost_micros\":1,\"ip\":\"999.1.1.1\"}",
            t);
        BAD("future_time", "ad-clicks",
            "{\"event_id\":\"ig-b8\",\"event_time\":%lld,\"channel\":\"ingt\","
            "\"campaign_id\":\"c1\",\"cost_micros\":1}",
            now_ms() + 3600000);
        BAD("too_old", "ad-clicks",
            "{\"event_id\":\"ig-b9\",\"event_time\":%lld,\"channel\":\"ingt\","
            "\"campaign_id\":\"c1\",\"cost_micros\":1}",
            now_ms() - 3 * 86400000LL);
        BAD("unknown_type", "ad-clicks",
            "{\"type\":\"view\",\"event_id\":\"ig-b10\",\"event_time\":%lld,"
            "\"channel\":\"ingt\",\"campaign_id\":\"c1\",\"cost_micros\":1}",
            t);
        /* The same event_id as ig-clk-1, on its partition: duplicate. */
        BAD("duplicate", "ad-clicks",
            "{\"event_id\":\"ig-clk-1\",\"event_time\":%lld,"
            "\"channel\":\"ingt\",\"campaign_id\":\"c1\","
            "\"cost_micros\":200000,\"user_agent\":\"" BROWSER "\"}",
            t + 1000);
        /* Confluent framing with an id no registry knows. */
        bad[nbad].reason = "unknown_schema";
        bad[nbad].topic = "ad-clicks";
        memcpy(bad[nbad].value, "\x00\x00\x00\x03\xe7rest", 9);
        bad[nbad].len = 9;
        nbad++;
        /* Framing id 2, truncated Avro. */
        bad[nbad].reason = "avro_decode";
        bad[nbad].topic = "ad-clicks";
        memcpy(bad[nbad].value,
               "\x00\x00\x00\x00\x02\x10"
               "ab",
               8);
        bad[nbad].len = 8;
        nbad++;
#undef BAD
        for (int i = 0; i < nbad; i++) {
                /* The duplicate goes where the original went. */
                const char *k =
                    strcmp(bad[i].reason, "duplicate") == 0 ? "d1" : key;
                snprintf(key, sizeof(key), "bad-%d", i);
                cr_assert_eq(h_produce(bad[i].topic, k, strlen(k), bad[i].value,
                                       bad[i].len),
                             0);
        }
        /* Oversize: above ingest.max_message_bytes (65536). */
        memset(big, ' ', sizeof(big));
        big[0] = '{';
        big[sizeof(big) - 1] = '}';
        cr_assert_eq(h_produce("ad-clicks", "bad-big", 7, big, sizeof(big)), 0);

        /* ---- the good ones, counted exactly once */
        {
                char truth_line[1024], why[512] = "";
                json_t *truth, *kpis;

                snprintf(truth_line, sizeof(truth_line),
                         "{\"channel\":\"ingt\",\"campaign_id\":null,"
                         "\"impressions\":1,\"clicks\":6,\"conversions\":1,"
                         "\"spend_micros\":%d,\"revenue_micros\":5000000,"
                         "\"invalid_clicks\":4,\"invalid_impressions\":0,"
                         "\"invalid_spend_micros\":800000}\n"
                         "{\"channel\":\"ingt\",\"campaign_id\":\"c1\","
                         "\"impressions\":1,\"clicks\":6,\"conversions\":1,"
                         "\"spend_micros\":%d,\"revenue_micros\":5000000,"
                         "\"invalid_clicks\":4,\"invalid_impressions\":0,"
                         "\"invalid_spend_micros\":800000}\n",
                         1000 + 6 * 200000, 1000 + 6 * 200000);
                truth = h_jsonl_text(truth_line);
                kpis = h_kpis_wait(truth, "ingt", 90000, why, sizeof(why));
                cr_assert(kpis, "KPIs: %s (logs in %s)", why, H.dir);
                cr_assert_eq(json_array_size(kpis), 2);
                json_decref(kpis);
                json_decref(truth);
        }

        /* ---- each bad one on sg.deadletter, with its code and bytes */
        n = h_consume_all("sg.deadletter", nbad + 1, 30000, &msgs);
        cr_assert_eq(n, nbad + 1, "dead letters: want %d, got %d", nbad + 1, n);
        for (int i = 0; i < n; i++) {
                const rd_kafka_message_t *m = msgs[i];
                int found = 0;

                h_header(m, "sg.src", hbuf, sizeof(hbuf));
                cr_assert_eq(strncmp(hbuf, "ad-clicks/", 10), 0, "sg.src %s",
                             hbuf);
                h_header(m, "sg.error", hbuf, sizeof(hbuf));
                if (m->len == sizeof(big)) {
                        cr_assert_str_eq(hbuf, "oversize");
                        continue;
                }
                for (int b = 0; b < nbad; b++) {
                        if ((size_t)bad[b].len != m->len ||
                            memcmp(bad[b].value, m->payload, m->len) != 0)
                                continue;
                        cr_assert_str_eq(hbuf, bad[b].reason,
                                         "record %d (%.40s): sg.error %s, "
                                         "want %s",
                                         b, bad[b].value, hbuf, bad[b].reason);
                        bad[b].len = -1; /* each exactly once */
                        found = 1;
                        break;
                }
                cr_assert(found, "unexpected dead letter (%s): %.60s", hbuf,
                          (const char *)m->payload);
                cr_assert_neq(h_header(m, "sg.detail", hbuf, sizeof(hbuf))[0],
                              '\0');
        }
        h_msgs_free(msgs, n);
        sg_codec_destroy(codec);
}

/* ------------------------------------------------- delivery failures */

/* sg-ingest alone, with small batches so that several are in flight. */
static void ingest_only_up(void)
{
        /* A restarted ingest rejoins within the session timeout. */
        const char *subst[] = {
            "  batch_size: 2000", "batch_size: 100\n  inflight_batches: 4",
            "  fetch.wait.max.ms: 10",
            "fetch.wait.max.ms: 10\n  session.timeout.ms: 6000", NULL};

        h_init();
        h_config(subst, NULL);
        h_start_infra();
        h_spawn("sg-ingest", NULL);
}

TestSuite(ingest_retry, .init = ingest_only_up, .fini = h_stack_down,
          .timeout = 240);

#define RETRY_OLD 600  /* committed before the failures */
#define MAX_CLAIMS 64  /* (sg.events partition, input partition) pairs */

/* The records of msgs that are events, not ingest's watermark markers. */
static int events_in(rd_kafka_message_t **msgs, int n)
{
        int events = 0;

        for (int i = 0; i < n; i++) {
                sg_marker_reader_t rd;
                char err[128];

                events += sg_marker_open(msgs[i], &rd, err, sizeof(err)) == 0;
        }
        return events;
}

/* The highest progress a watermark marker claimed so far for an input in
 * an sg.events partition. */
typedef struct claim {
        int32_t partition;
        char source[SG_MARKER_SOURCE_LEN];
        int64_t t;
} claim_t;

static claim_t *claim_get(claim_t *c, int *n, int32_t partition,
                          const char *source)
{
        for (int i = 0; i < *n; i++)
                if (c[i].partition == partition &&
                    strcmp(c[i].source, source) == 0)
                        return &c[i];
        cr_assert_lt(*n, MAX_CLAIMS);
        c[*n].partition = partition;
        snprintf(c[*n].source, sizeof(c[*n].source), "%s", source);
        c[*n].t = INT64_MIN;
        return &c[(*n)++];
}
#define RETRY_NEW 1200 /* consumed while Produce requests fail */

/* Produces JSON clicks <prefix>-<i>, i < n, spread over the partitions. */
static void produce_clicks(const char *prefix, int n, long long t)
{
        char id[32], dev[32], extra[256], buf[512];

        for (int i = 0; i < n; i++) {
                int len;

                snprintf(id, sizeof(id), "%s-%d", prefix, i);
                snprintf(dev, sizeof(dev), "%s-dev-%d", prefix, i);
                snprintf(extra, sizeof(extra),
                         "\"cost_micros\":1000,\"device_id\":\"%s\","
                         "\"user_agent\":\"%s\"",
                         dev, BROWSER);
                len = json_click(buf, sizeof(buf), id, t + i, extra);
                cr_assert_eq(h_produce_async("ad-clicks", RD_KAFKA_PARTITION_UA,
                                             dev, strlen(dev), buf,
                                             (size_t)len),
                             0);
        }
        cr_assert_eq(h_flush(), 0);
}

/*
 * Deliveries to sg.events fail while batches are in flight: ingest consumes
 * every batch that was in flight again and commits its input only once
 * all of it is acknowledged. Every record reaches sg.events; those
 * committed before the failures are not read again (the rewind goes back
 * to the first unacknowledged batch, no further); and a record read again
 * does not meet itself as a duplicate (no dead letters).
 */
Test(ingest_retry, failed_deliveries_rewind_to_the_first_unacknowledged_batch)
{
        char schemas[512], err[256], log[512], line[1024];
        long long t = now_ms() - 60000;
        rd_kafka_message_t **msgs;
        static int seen_old[RETRY_OLD], seen_new[RETRY_NEW];
        static claim_t claims[MAX_CLAIMS];
        int n, retries = 0, claim_cnt = 0;
        sg_codec_t *codec;
        pid_t ingest = h_pid("sg-ingest");
        FILE *f;

        codec = sg_codec_new(h_src("schemas", schemas, sizeof(schemas)), err,
                             sizeof(err));
        cr_assert_not_null(codec, "%s", err);

        produce_clicks("old", RETRY_OLD, t);
        h_wait_caught_up("ingest", "ad-clicks", 60000);
        /* With ingest stopped, so that its first Produce requests are the
         * ones that fail, not the test's. Its first requests may carry only
         * the watermark markers it sends at assignment (a failed marker
         * fails no batch): enough errors for batches to get some too. */
        cr_assert_eq(h_stop(ingest), 0);
        produce_clicks("new", RETRY_NEW, t + RETRY_OLD);
        h_broker_ctl("error Produce 12 MSG_SIZE_TOO_LARGE");
        h_spawn("sg-ingest", NULL);
        h_wait_caught_up("ingest", "ad-clicks", 60000);

        n = h_consume_all("sg.events", RETRY_OLD + RETRY_NEW, 30000, &msgs);
        for (int i = 0; i < n; i++) {
                sg_marker_reader_t rd;
                sg_marker_t mk;
                sg_event_t ev;
                int k;

                char src[SG_MARKER_SOURCE_LEN];
                claim_t *c;

                /* Watermark markers are not events; one never comes before
                 * an event whose time it claims, even across the rewinds
                 * (each input partition's clicks are in time order). */
                if (sg_marker_open(msgs[i], &rd, err, sizeof(err)) == 1) {
                        while (sg_marker_next(&rd, &mk)) {
                                c = claim_get(claims, &claim_cnt,
                                              msgs[i]->partition, mk.source);
                                if (mk.event_time > c->t)
                                        c->t = mk.event_time;
                        }
                        continue;
                }
                cr_assert_eq(sg_codec_decode_normalized(codec, msgs[i]->payload,
                                                        msgs[i]->len, &ev),
                             0);
                snprintf(src, sizeof(src), "%s/%d", ev.src_topic,
                         (int)ev.src_partition);
                c = claim_get(claims, &claim_cnt, msgs[i]->partition, src);
                cr_assert_lt(c->t, ev.event_time,
                             "%s on sg.events %d after a marker for %s "
                             "claiming %lld",
                             ev.event_id, (int)msgs[i]->partition, src,
                             (long long)c->t);
                if (sscanf(ev.event_id, "old-%d", &k) == 1 && k >= 0 &&
                    k < RETRY_OLD)
                        seen_old[k]++;
                else if (sscanf(ev.event_id, "new-%d", &k) == 1 && k >= 0 &&
                         k < RETRY_NEW)
                        seen_new[k]++;
                else
                        cr_assert_fail("unexpected event %s", ev.event_id);
        }
        h_msgs_free(msgs, n);
        {
                int claimed = 0;

                for (int k = 0; k < claim_cnt; k++)
                        claimed += claims[k].t != INT64_MIN;
                cr_assert_gt(claimed, 0, "no marker with progress");
        }
        for (int k = 0; k < RETRY_OLD; k++)
                cr_assert_eq(seen_old[k], 1,
                             "old-%d on sg.events %d times: the rewind went "
                             "back past committed input",
                             k, seen_old[k]);
        for (int k = 0; k < RETRY_NEW; k++)
                cr_assert_geq(seen_new[k], 1, "new-%d never on sg.events", k);

        /* The failures happened and were retried. */
        snprintf(log, sizeof(log), "%s/sg-ingest.log", H.dir);
        f = fopen(log, "r");
        cr_assert_not_null(f);
        while (fgets(line, sizeof(line), f))
                retries += strstr(line, "event=batch_retry") != NULL;
        fclose(f);
        cr_assert_gt(retries, 0, "no batch_retry in %s", log);

        n = h_consume_all("sg.deadletter", 0, 2000, &msgs);
        cr_assert_eq(n, 0,
                     "%d dead letters: a record read again was taken "
                     "for a duplicate",
                     n);
        h_msgs_free(msgs, n);
        sg_codec_destroy(codec);
}

/* ------------------------------------------------- oversize records */

#define BIG_LEN 1000500 /* above librdkafka's message.max.bytes, 1,000,000 */
#define AFTER_BIG 20

/*
 * A record just above the producer's message.max.bytes (Kafka's default
 * topic limit, 1,048,588, accepts it): ingest dead-letters it truncated,
 * with its original size in sg.size, and the records after it on the same
 * partition reach sg.events. Before, the dead letter was refused, the
 * batch rewound, and the partition never advanced.
 */
Test(ingest_retry, a_record_above_the_producer_limit_is_dead_lettered_truncated)
{
        char extra[256], buf[512], id[32], hbuf[256];
        long long t = now_ms() - 60000;
        rd_kafka_message_t **msgs;
        char *big = malloc(BIG_LEN);
        int n, k;

        cr_assert_not_null(big);
        /* JSON-looking: an opening brace, then a long string. */
        memset(big, 'x', BIG_LEN);
        memcpy(big, "{\"type\":\"click\",\"pad\":\"", 24);
        cr_assert_eq(h_produce_to("ad-clicks", 0, "big", 3, big, BIG_LEN), 0);
        for (int i = 0; i < AFTER_BIG; i++) {
                int len;

                snprintf(id, sizeof(id), "after-big-%d", i);
                snprintf(extra, sizeof(extra),
                         "\"cost_micros\":1000,\"device_id\":\"dev-%d\","
                         "\"user_agent\":\"%s\"",
                         i, BROWSER);
                len = json_click(buf, sizeof(buf), id, t + i, extra);
                cr_assert_eq(h_produce_async("ad-clicks", 0, "k", 1, buf,
                                             (size_t)len),
                             0);
        }
        cr_assert_eq(h_flush(), 0);

        /* Fails the test when ingest never commits past the big record. */
        h_wait_caught_up("ingest", "ad-clicks", 30000);
        n = h_consume_all("sg.events", AFTER_BIG, 30000, &msgs);
        n = events_in(msgs, (k = n));
        h_msgs_free(msgs, k);
        msgs = NULL;
        cr_assert_eq(n, AFTER_BIG,
                     "%d of %d records after the big one on sg.events: "
                     "the partition is stalled behind it",
                     n, AFTER_BIG);

        n = h_consume_all("sg.deadletter", 1, 10000, &msgs);
        cr_assert_eq(n, 1);
        cr_assert_str_eq(h_header(msgs[0], "sg.error", hbuf, sizeof(hbuf)),
                         "oversize");
        cr_assert_str_eq(h_header(msgs[0], "sg.size", hbuf, sizeof(hbuf)),
                         "1000500");
        cr_assert_str_eq(h_header(msgs[0], "sg.src", hbuf, sizeof(hbuf)),
                         "ad-clicks/0/0");
        cr_assert_lt(msgs[0]->len, 1000000);
        cr_assert_gt(msgs[0]->len, 900000);
        cr_assert_eq(memcmp(msgs[0]->payload, big, msgs[0]->len), 0,
                     "the dead letter is not the record's first bytes");
        h_msgs_free(msgs, n);
        free(big);
}

/* ------------------------------------- dead letters refused for good */

/* sg-ingest alone, with the smallest message.max.bytes librdkafka takes. */
static void ingest_small_up(void)
{
        const char *subst[] = {"  fetch.wait.max.ms: 10",
                               "fetch.wait.max.ms: 10\n"
                               "  message.max.bytes: 1000",
                               NULL};

        h_init();
        h_config(subst, NULL);
        h_start_infra();
        h_spawn("sg-ingest", NULL);
}

TestSuite(ingest_small, .init = ingest_small_up, .fini = h_stack_down,
          .timeout = 240);

/*
 * A bad record whose dead letter the producer refuses even cut down (a
 * 2,000-byte key, cut to 1,024, above message.max.bytes 1,000): counted
 * and logged as refused, never retried, and the records after it on the
 * same partition go through.
 */
Test(ingest_small, a_dead_letter_refused_for_good_does_not_stall_the_partition)
{
        char extra[256], buf[512], id[32], key[2000];
        long long t = now_ms() - 60000;
        rd_kafka_message_t **msgs;
        int n;

        memset(key, 'k', sizeof(key));
        cr_assert_eq(h_produce_to("ad-clicks", 0, key, sizeof(key),
                                  "not json", 8),
                     0);
        for (int i = 0; i < 5; i++) {
                int len;

                snprintf(id, sizeof(id), "after-refused-%d", i);
                snprintf(extra, sizeof(extra),
                         "\"cost_micros\":1000,\"device_id\":\"dev-%d\","
                         "\"user_agent\":\"%s\"",
                         i, BROWSER);
                len = json_click(buf, sizeof(buf), id, t + i, extra);
                cr_assert_eq(h_produce_async("ad-clicks", 0, "k", 1, buf,
                                             (size_t)len),
                             0);
        }
        cr_assert_eq(h_flush(), 0);

        h_wait_caught_up("ingest", "ad-clicks", 30000);
        n = h_consume_all("sg.events", 5, 30000, &msgs);
        {
                int events = events_in(msgs, n);

                h_msgs_free(msgs, n);
                cr_assert_eq(events, 5);
        }
        n = h_consume_all("sg.deadletter", 0, 3000, &msgs);
        cr_assert_eq(n, 0);
        h_msgs_free(msgs, n);
        cr_assert_eq(h_log_count("sg-ingest", "event=deadletter_failed "
                                            "topic=sg.deadletter "
                                            "err=MSG_SIZE_TOO_LARGE"),
                     1);
        cr_assert_eq(h_log_count("sg-ingest", "event=batch_retry"), 0);
}

/* ------------------------------------------- more than 1,024 inputs */

#define WIDE_CLICKS 1000 /* ad-clicks partitions: sg-broker's maximum */
#define WIDE_IMPS   100  /* ad-impressions partitions */

/* sg-ingest alone on 1,100 input partitions, with small dedupe tables
 * (1,100 of the default size would be 7 GB of address space). */
static void ingest_wide_up(void)
{
        const char *broker_args[] = {
            "-t", "ad-impressions:100", "-t", "ad-clicks:1000",
            "-t", "ad-conversions", "-t", "sg.events",
            "-t", "sg.deadletter", "-t", "sg.aggregates",
            "-t", "sg.decisions", "-t", "ad-decisions",
            "-t", "channel-kpis", NULL};
        const char *subst[] = {"  dedupe_max_entries:",
                               "dedupe_max_entries: 1024",
                               "  dup_click_max_entries:",
                               "dup_click_max_entries: 1024", NULL};

        h_init();
        h_config(subst, NULL);
        h_start_infra_args(broker_args);
        h_spawn("sg-ingest", NULL);
}

TestSuite(ingest_wide, .init = ingest_wide_up, .fini = h_stack_down,
          .timeout = 300);

/* Sends event <prefix>-<p> twice to partition p of topic, p < n. */
static void produce_twice(const char *topic, const char *type, int n,
                          long long t)
{
        char buf[512];

        for (int r = 0; r < 2; r++) {
                for (int p = 0; p < n; p++) {
                        int len = snprintf(
                            buf, sizeof(buf),
                            "{\"type\":\"%s\",\"event_id\":\"%s-%d\","
                            "\"event_time\":%lld,\"channel\":\"ingt\","
                            "\"campaign_id\":\"c1\",\"cost_micros\":1000,"
                            "\"device_id\":\"dev-%d\",\"user_agent\":\"%s\"}",
                            type, type, p, t + p, p, BROWSER);

                        cr_assert_eq(h_produce_async(topic, p, "k", 1, buf,
                                                     (size_t)len),
                                     0);
                }
                cr_assert_eq(h_flush(), 0);
        }
}

/*
 * Review F10: ingest kept the dedupe state of at most 1,024 input
 * partitions; the others passed a re-sent event twice. Every partition
 * of 1,100 gets the same event twice: 1,100 reach sg.events, 1,100 are
 * dead-lettered as duplicates, whatever the order ingest reads them in.
 */
Test(ingest_wide, every_input_partition_past_1024_keeps_its_dedupe)
{
        long long t = now_ms() - 60000;
        rd_kafka_message_t **msgs;
        char hbuf[64];
        int n, k, dups = 0;

        produce_twice("ad-clicks", "click", WIDE_CLICKS, t);
        produce_twice("ad-impressions", "impression", WIDE_IMPS, t);

        h_wait_caught_up("ingest", "ad-clicks", 60000);
        h_wait_caught_up("ingest", "ad-impressions", 60000);
        n = h_consume_all("sg.events", WIDE_CLICKS + WIDE_IMPS, 60000, &msgs);
        n = events_in(msgs, (k = n));
        h_msgs_free(msgs, k);
        cr_assert_eq(n, WIDE_CLICKS + WIDE_IMPS, "%d events on sg.events", n);

        n = h_consume_all("sg.deadletter", WIDE_CLICKS + WIDE_IMPS, 60000,
                          &msgs);
        for (int i = 0; i < n; i++)
                dups += strcmp(h_header(msgs[i], "sg.error", hbuf,
                                        sizeof(hbuf)),
                               "duplicate") == 0;
        h_msgs_free(msgs, n);
        cr_assert_eq(n, WIDE_CLICKS + WIDE_IMPS, "%d dead letters", n);
        cr_assert_eq(dups, WIDE_CLICKS + WIDE_IMPS, "%d duplicates", dups);
        cr_assert_eq(h_log_count("sg-ingest", "event=dedupe_unavailable"), 0);
}
