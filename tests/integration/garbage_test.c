/*
 * A flood of hostile records through the real stack: 5,000 random-byte
 * records, 500 with a Confluent header and garbage after it, 500 JSON-ish
 * ones and 3 empty ones, produced to the three input topics while sg-gen
 * sends a valid scenario. No stage exits; every garbage record is on
 * sg.deadletter exactly once, with its original bytes, a known reason code,
 * a detail and its source; the valid events are counted exactly.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(garbage, .init = h_stack_up, .fini = h_stack_down, .timeout = 400);

#define N_RANDOM 5000
#define N_HEADER 500
#define N_JSON   500
#define N_EMPTY  3
#define N_ALL    (N_RANDOM + N_HEADER + N_JSON + N_EMPTY)

typedef struct rec {
        unsigned char *val;
        size_t len;
        const char *want; /* the reason it must get, or NULL: any code */
        const char *topic;
        int seen;
} rec_t;

static rec_t recs[N_ALL];

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t next(void)
{
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
}

static const char *const topics[] = {"ad-impressions", "ad-clicks",
                                     "ad-conversions"};

static const char *const reasons[] = {
    "bad_framing",   "unknown_schema", "avro_decode",  "json_parse",
    "missing_field", "bad_value",      "unknown_type", "future_time",
    "too_old",       "oversize",       "duplicate",    NULL};

static int is_reason(const char *s)
{
        for (const char *const *r = reasons; *r; r++)
                if (strcmp(*r, s) == 0)
                        return 1;
        return 0;
}

static rec_t *add(int i, size_t len)
{
        recs[i].val = malloc(len ? len : 1);
        recs[i].len = len;
        recs[i].topic = topics[next() % 3];
        cr_assert_not_null(recs[i].val);
        return &recs[i];
}

static int json_start(const unsigned char *b, size_t len)
{
        size_t i = 0;

        while (i < len && strchr(" \t\r\n", b[i]) && b[i])
                i++;
        return i < len && b[i] == '{';
}

static void make_garbage(void)
{
        static const uint32_t ids[] = {1, 2, 3, 4, 5, 6, 7, 101, 999};
        long long t = (long long)time(NULL) * 1000 - 60000;
        int i = 0;

        /* Random bytes: whatever the first byte selects (Avro framing,
         * JSON, neither); neither is always bad_framing. */
        for (; i < N_RANDOM; i++) {
                rec_t *r = add(i, 8 + next() % 393);

                for (size_t k = 0; k < r->len; k++)
                        r->val[k] = (unsigned char)next();
                if (r->val[0] != 0 && !json_start(r->val, r->len))
                        r->want = "bad_framing";
        }
        /* A valid Confluent header, garbage after it. */
        for (; i < N_RANDOM + N_HEADER; i++) {
                uint32_t id = ids[next() % 9];
                rec_t *r = add(i, 5 + 8 + next() % 200);

                r->val[0] = 0;
                r->val[1] = (unsigned char)(id >> 24);
                r->val[2] = (unsigned char)(id >> 16);
                r->val[3] = (unsigned char)(id >> 8);
                r->val[4] = (unsigned char)id;
                for (size_t k = 5; k < r->len; k++)
                        r->val[k] = (unsigned char)next();
                /* Contract ids that are not input events, and an id no
                 * registry knows. */
                if ((id >= 4 && id <= 7) || id == 999)
                        r->want = "unknown_schema";
        }
        /* JSON-ish: '{' and printable noise, a valid event cut short, an
         * event with a wrongly typed field. */
        for (; i < N_RANDOM + N_HEADER + N_JSON; i++) {
                char ev[512];
                int n = snprintf(ev, sizeof(ev),
                                 "{\"type\":\"click\",\"event_id\":\"g-%d\","
                                 "\"event_time\":%lld,\"channel\":\"garb\","
                                 "\"campaign_id\":\"c\",\"cost_micros\":1}",
                                 i, t);
                rec_t *r;

                switch (i % 3) {
                case 0:
                        r = add(i, 2 + next() % 200);
                        r->val[0] = '{';
                        for (size_t k = 1; k < r->len; k++)
                                r->val[k] = (unsigned char)(' ' + next() % 95);
                        /* "{}" and "{ }" would be valid JSON */
                        r->val[1] = '"';
                        r->want = "json_parse";
                        break;
                case 1:
                        r = add(i, 1 + next() % (n - 1));
                        memcpy(r->val, ev, r->len);
                        r->want = "json_parse";
                        break;
                default:
                        n = snprintf(ev, sizeof(ev),
                                     "{\"type\":\"click\",\"event_id\":"
                                     "\"g-%d\",\"event_time\":\"soon\","
                                     "\"channel\":\"garb\",\"campaign_id\":"
                                     "\"c\",\"cost_micros\":1}",
                                     i);
                        r = add(i, (size_t)n);
                        memcpy(r->val, ev, r->len);
                        break;
                }
        }
        for (; i < N_ALL; i++)
                add(i, 0)->want = "bad_framing";
}

/* Produces every garbage record, acknowledged, keyed g-<i>. */
static void produce_garbage(void)
{
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_t *p;
        char err[256], key[16];

        cr_assert_eq(rd_kafka_conf_set(c, "bootstrap.servers", H.bootstrap, err,
                                       sizeof(err)),
                     RD_KAFKA_CONF_OK);
        rd_kafka_conf_set(c, "log_level", "3", err, sizeof(err));
        p = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
        cr_assert_not_null(p, "%s", err);
        for (int i = 0; i < N_ALL; i++) {
                rd_kafka_resp_err_t e;

                snprintf(key, sizeof(key), "g-%d", i);
                do {
                        e = rd_kafka_producev(
                            p, RD_KAFKA_V_TOPIC(recs[i].topic),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_KEY(key, strlen(key)),
                            RD_KAFKA_V_VALUE(recs[i].val, recs[i].len),
                            RD_KAFKA_V_END);
                        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                                rd_kafka_poll(p, 50);
                } while (e == RD_KAFKA_RESP_ERR__QUEUE_FULL);
                cr_assert_eq(e, 0, "produce: %s", rd_kafka_err2str(e));
        }
        cr_assert_eq(rd_kafka_flush(p, 60000), 0, "not every record acked");
        rd_kafka_destroy(p);
}

Test(garbage, every_garbage_record_is_dead_lettered_once_and_valid_ones_count)
{
        char truth_path[512], why[512] = "", buf[512];
        const char *gen_args[] = {"--seed",  "5",        "--duration",
                                  "30",      "--rate",   "4000",
                                  "--truth", truth_path, NULL};
        static const char *const stages[] = {"sg-ingest", "sg-aggregate",
                                             "sg-rules", "sg-sink", NULL};
        rd_kafka_message_t **msgs;
        int n, per_reason[16] = {0};
        json_t *truth, *kpis;
        pid_t gen;

        make_garbage();
        snprintf(truth_path, sizeof(truth_path), "%s/truth.jsonl", H.dir);
        /* Valid traffic while the garbage arrives. */
        gen = h_spawn("sg-gen", gen_args);
        produce_garbage();
        cr_assert_eq(h_wait(gen, 120000), 0, "sg-gen failed (log: %s)", H.dir);

        /* The valid events, counted exactly. */
        truth = h_jsonl_file(truth_path);
        kpis = h_kpis_wait(truth, NULL, 180000, why, sizeof(why));
        cr_assert(kpis, "KPIs never matched the truth: %s (logs in %s)", why,
                  H.dir);
        cr_assert_eq(json_array_size(kpis), 15);
        json_decref(kpis);
        json_decref(truth);

        /* Each garbage record exactly once, nothing else. */
        n = h_consume_all("sg.deadletter", N_ALL, 120000, &msgs);
        cr_assert_eq(n, N_ALL, "dead letters: want %d, got %d (logs in %s)",
                     N_ALL, n, H.dir);
        for (int m = 0; m < n; m++) {
                const rd_kafka_message_t *msg = msgs[m];
                int found = -1;

                char src[256];

                /* Records cut short may be the same bytes on two topics:
                 * match the bytes and the source topic. */
                h_header(msg, "sg.src", src, sizeof(src));
                h_header(msg, "sg.error", buf, sizeof(buf));
                cr_assert(is_reason(buf), "unknown sg.error \"%s\"", buf);
                for (int r = 0; reasons[r]; r++)
                        per_reason[r] += strcmp(reasons[r], buf) == 0;
                for (int i = 0; i < N_ALL && found < 0; i++)
                        if (!recs[i].seen && recs[i].len == msg->len &&
                            strncmp(src, recs[i].topic,
                                    strlen(recs[i].topic)) == 0 &&
                            src[strlen(recs[i].topic)] == '/' &&
                            (msg->len == 0 ||
                             memcmp(recs[i].val, msg->payload, msg->len) == 0))
                                found = i;
                cr_assert_geq(found, 0,
                              "a dead letter that is no garbage record (or "
                              "one twice): sg.error=%s sg.src=%s len=%zu",
                              buf, src, msg->len);
                recs[found].seen = 1;
                if (recs[found].want)
                        cr_assert_str_eq(buf, recs[found].want,
                                         "record %d: sg.error %s, want %s",
                                         found, buf, recs[found].want);
                cr_assert_neq(h_header(msg, "sg.detail", buf, sizeof(buf))[0],
                              '\0', "record %d without sg.detail", found);
                h_header(msg, "sg.src", buf, sizeof(buf));
                cr_assert_eq(
                    strncmp(buf, recs[found].topic, strlen(recs[found].topic)),
                    0, "record %d: sg.src %s, produced to %s", found, buf,
                    recs[found].topic);
        }
        h_msgs_free(msgs, n);
        for (int r = 0; reasons[r]; r++)
                if (per_reason[r])
                        fprintf(stderr, "garbage: sg.error=%s %d\n", reasons[r],
                                per_reason[r]);

        /* Nobody fell over. */
        for (const char *const *s = stages; *s; s++)
                cr_assert_eq(h_wait(h_pid(*s), 0), -1,
                             "%s exited (log: %s/%s.log)", *s, H.dir, *s);
        for (int i = 0; i < N_ALL; i++)
                free(recs[i].val);
}
