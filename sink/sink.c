/*
 * The sg-sink batch loop. Per batch: decode, drop what this batch or Redis
 * says was delivered already (one pipelined round trip), produce the rest
 * in a Kafka transaction, wait for the acknowledgements, commit the
 * transaction with the input offsets, remember the deliveries in Redis
 * (one MULTI/EXEC round trip), then commit the offsets again the plain
 * way (for brokers that do not store transactional offsets: the mock).
 * On a real broker a crash after the transaction's commit cannot
 * redeliver (the offsets moved with it), and one before it redelivers
 * only what read_committed readers never saw. With sink.transactions 0,
 * or on the mock, the Redis keys are the dedupe: a crash between the ack
 * and the Redis write delivers twice (docs/reliability.md).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "sink.h"
#include "stage.h"
#include "webhook.h"

#define BATCH_MAX        1000
#define FLUSH_TIMEOUT_MS 30000
#define RETRY_PAUSE_MS   1000
#define KEY_LEN          256

/* What the batch does with a decoded record. */
enum { DELIVER = 0, DUP_IN_BATCH, DELIVERED_BEFORE };

struct sg_sink {
        const sg_conf_t *conf;
        sg_codec_t *codec;
        sg_redis_t *redis;
        sg_producer_t *producer;
        sg_format_t fmt;
        sg_webhook_t *webhook; /* NULL = none */

        rd_kafka_message_t *msgs[BATCH_MAX];
        sg_decision_t *dec; /* [BATCH_MAX] */
        sg_snapshot_t *kpi; /* [BATCH_MAX] final snapshots */
        unsigned char dec_state[BATCH_MAX], kpi_state[BATCH_MAX];
        int ndec, nkpi;
        int nrolling; /* rolling snapshots in the batch: not KPI rows */
        int order[2 * BATCH_MAX]; /* pipeline command -> record */
        int batch_failed;

        unsigned char buf[32768];
        char json[32768];

        /* events_total{type,result} */
        sg_counter_t *c_dec_delivered, *c_dec_duplicate, *c_dec_bad;
        sg_counter_t *c_kpi_delivered, *c_kpi_duplicate, *c_kpi_skipped,
            *c_kpi_bad;
        sg_histogram_t *batch_seconds;
};

/* ------------------------------------------------------------------ Redis */

static void dec_key(const sg_decision_t *d, char *key)
{
        snprintf(key, KEY_LEN, "sg:delivered:%s", d->decision_id);
}

static void kpi_key(const sg_snapshot_t *k, char *key)
{
        snprintf(key, KEY_LEN, "sg:kpidone:%s|%s|%" PRId64, k->channel,
                 k->campaign_id, k->window_start);
}

/*
 * Runs a pipeline: append() queues the commands and returns their count
 * (-1 if queueing failed), on_reply() sees each reply in order. After an
 * I/O error the whole pipeline is redone on a new connection. -1 only if
 * stopped while Redis is unreachable.
 */
static int pipeline(sg_sink_t *s, int (*append)(sg_sink_t *),
                    void (*on_reply)(sg_sink_t *, int, const redisReply *))
{
        for (;;) {
                int cnt = append(s), ok = cnt >= 0;

                for (int k = 0; ok && k < cnt; k++) {
                        redisReply *r = sg_redis_pipeline_get(s->redis);

                        if (!r) {
                                ok = 0;
                                break;
                        }
                        on_reply(s, k, r);
                        freeReplyObject(r);
                }
                if (ok)
                        return 0;
                if (sg_redis_reconnect(s->redis) == -1)
                        return -1;
        }
}

static int append2(sg_sink_t *s, const char *cmd, const char *key)
{
        const char *argv[2] = {cmd, key};

        return sg_redis_append_argv(s->redis, 2, argv, NULL);
}

/* EXISTS of every record still to deliver. */
static int append_exists(sg_sink_t *s)
{
        char key[KEY_LEN];
        int cnt = 0;

        for (int i = 0; i < s->ndec; i++) {
                if (s->dec_state[i] != DELIVER)
                        continue;
                dec_key(&s->dec[i], key);
                if (append2(s, "EXISTS", key))
                        return -1;
                s->order[cnt++] = i;
        }
        for (int i = 0; i < s->nkpi; i++) {
                if (s->kpi_state[i] != DELIVER)
                        continue;
                kpi_key(&s->kpi[i], key);
                if (append2(s, "EXISTS", key))
                        return -1;
                s->order[cnt++] = BATCH_MAX + i;
        }
        return cnt;
}

static void on_exists(sg_sink_t *s, int k, const redisReply *r)
{
        int i = s->order[k];
        unsigned char *state =
            i < BATCH_MAX ? &s->dec_state[i] : &s->kpi_state[i - BATCH_MAX];

        if (r->type == REDIS_REPLY_INTEGER && r->integer > 0)
                *state = DELIVERED_BEFORE;
        else if (r->type == REDIS_REPLY_ERROR)
                sg_error("event=redis_error cmd=EXISTS err=%s", r->str);
}

/* Remembers what the batch delivered: dedupe keys, the decision log, in
 * one MULTI/EXEC, so that a crash or a lost connection mid-write leaves
 * all of it or none (F19d). */
static int append_record(sg_sink_t *s)
{
        char key[KEY_LEN], ttl[16], len[16];
        const char *argv[5] = {"SET", key, "1", "EX", ttl};
        const char *multi[1] = {"MULTI"}, *exec[1] = {"EXEC"};
        int cnt = 1, logged = 0;

        if (sg_redis_append_argv(s->redis, 1, multi, NULL))
                return -1;

        snprintf(ttl, sizeof(ttl), "%d", s->conf->sink.dedupe_ttl_s);
        for (int i = 0; i < s->ndec; i++) {
                const sg_decision_t *d = &s->dec[i];
                int n;

                if (s->dec_state[i] != DELIVER)
                        continue;
                dec_key(d, key);
                argv[0] = "SET";
                if (sg_redis_append_argv(s->redis, 5, argv, NULL))
                        return -1;
                cnt++;
                n = sg_codec_encode_decision(s->codec, SG_FMT_JSON, d, s->json,
                                             sizeof(s->json));
                if (n < 0) {
                        sg_error("event=decision_log_encode_failed id=%s "
                                 "err=\"%s\"",
                                 d->decision_id, sg_codec_error(s->codec));
                        continue;
                }
                {
                        const char *lp[3] = {"LPUSH", "sg:decisions", s->json};
                        size_t lplen[3] = {5, 12, (size_t)n};

                        if (sg_redis_append_argv(s->redis, 3, lp, lplen))
                                return -1;
                }
                cnt++;
                logged++;
        }
        if (logged) {
                const char *lt[4] = {"LTRIM", "sg:decisions", "0", len};

                snprintf(len, sizeof(len), "%d",
                         s->conf->sink.decision_log_len - 1);
                if (sg_redis_append_argv(s->redis, 4, lt, NULL))
                        return -1;
                cnt++;
        }
        for (int i = 0; i < s->nkpi; i++) {
                if (s->kpi_state[i] != DELIVER)
                        continue;
                kpi_key(&s->kpi[i], key);
                if (sg_redis_append_argv(s->redis, 5, argv, NULL))
                        return -1;
                cnt++;
        }
        if (sg_redis_append_argv(s->redis, 1, exec, NULL))
                return -1;
        return cnt + 1;
}

static void on_record(sg_sink_t *s, int k, const redisReply *r)
{
        (void)s;
        (void)k;
        if (r->type == REDIS_REPLY_ERROR)
                sg_error("event=redis_error cmd=record err=%s", r->str);
        /* EXEC: the replies of the commands it ran. */
        for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements;
             i++)
                if (r->element[i]->type == REDIS_REPLY_ERROR)
                        sg_error("event=redis_error cmd=record err=%s",
                                 r->element[i]->str);
}

/* ------------------------------------------------------------------ input */

static void deadletter(sg_sink_t *s, const rd_kafka_message_t *m,
                       const char *reason, const char *detail)
{
        if (sg_producer_deadletter(s->producer, s->conf->topics.deadletter, m,
                                   reason, detail))
                s->batch_failed = 1;
}

static void take_decision(sg_sink_t *s, const rd_kafka_message_t *m)
{
        sg_decision_t *d = &s->dec[s->ndec];
        const unsigned char *p = m->payload;

        if (sg_codec_decode_decision(s->codec, m->payload, m->len, d) == -1) {
                sg_counter_add(s->c_dec_bad, 1);
                deadletter(s, m,
                           m->len == 0 || p[0] == 0 ? SG_ERR_AVRO_DECODE
                           : p[0] == '{'            ? SG_ERR_JSON_PARSE
                                                    : SG_ERR_BAD_FRAMING,
                           sg_codec_error(s->codec));
                return;
        }
        s->dec_state[s->ndec] = DELIVER;
        for (int i = 0; i < s->ndec; i++) {
                if (strcmp(s->dec[i].decision_id, d->decision_id) == 0) {
                        s->dec_state[s->ndec] = DUP_IN_BATCH;
                        break;
                }
        }
        s->ndec++;
}

static void take_snapshot(sg_sink_t *s, const rd_kafka_message_t *m)
{
        sg_snapshot_t *k = &s->kpi[s->nkpi];

        if (sg_codec_decode_snapshot(s->codec, m->payload, m->len, k) == -1) {
                sg_counter_add(s->c_kpi_bad, 1);
                deadletter(s, m, SG_ERR_AVRO_DECODE, sg_codec_error(s->codec));
                return;
        }
        /* Rolling windows are for rules; a closed window is a KPI row. */
        if (!k->final) {
                s->nrolling++;
                return;
        }
        s->kpi_state[s->nkpi] = DELIVER;
        for (int i = 0; i < s->nkpi; i++) {
                if (s->kpi[i].window_start == k->window_start &&
                    strcmp(s->kpi[i].channel, k->channel) == 0 &&
                    strcmp(s->kpi[i].campaign_id, k->campaign_id) == 0) {
                        s->kpi_state[s->nkpi] = DUP_IN_BATCH;
                        break;
                }
        }
        s->nkpi++;
}

/* ----------------------------------------------------------------- output */

static void send_one(sg_sink_t *s, const char *topic, const char *key, int n,
                     const char *what)
{
        char q[512];

        if (n < 0) {
                /* A bug, not an input problem: loud, and not retried. */
                sg_error("event=encode_failed what=%s key=%s err=%s", what, key,
                         sg_log_quote(q, sizeof(q), sg_codec_error(s->codec)));
                return;
        }
        if (sg_producer_send(s->producer, topic, RD_KAFKA_PARTITION_UA, key,
                             strlen(key), s->buf, (size_t)n, NULL))
                s->batch_failed = 1;
}

static void produce(sg_sink_t *s)
{
        for (int i = 0; i < s->ndec; i++) {
                const sg_decision_t *d = &s->dec[i];

                if (s->dec_state[i] != DELIVER) {
                        sg_debug("event=decision_duplicate id=%s why=%s",
                                 d->decision_id,
                                 s->dec_state[i] == DUP_IN_BATCH ? "batch"
                                                                 : "delivered");
                        continue;
                }
                send_one(s, s->conf->topics.out_decisions, d->channel,
                         sg_codec_encode_decision(s->codec, s->fmt, d, s->buf,
                                                  sizeof(s->buf)),
                         "decision");
        }
        for (int i = 0; i < s->nkpi; i++) {
                const sg_snapshot_t *k = &s->kpi[i];

                if (s->kpi_state[i] != DELIVER)
                        continue;
                send_one(s, s->conf->topics.kpis, k->channel,
                         sg_codec_encode_kpi(s->codec, s->fmt, k, s->buf,
                                             sizeof(s->buf)),
                         "kpi");
        }
}

/* decisions_total{action,rule}; a shadow rule's dry runs in
 * decisions_shadow_total{action,rule}. */
static void decision_count(const sg_decision_t *d)
{
        char name[SG_METRICS_NAME_LEN];

        if (sg_metrics_name(name, sizeof(name),
                            d->dry_run ? "decisions_shadow_total"
                                       : "decisions_total",
                            "action", sg_action_name(d->action), "rule",
                            d->rule_id, NULL) == 0)
                sg_counter_add(sg_counter(name), 1);
}

/* PAUSE, BLOCK_SOURCE and ALERT go to the webhook, if any: queued, so
 * that a slow or dead endpoint never holds the pipeline back. A dry run
 * does not: the webhook is how a bidder is told to act (docs/rules.md,
 * "Shadow mode"); it is on ad-decisions, marked, and in sg-ctl decisions. */
static void notify(sg_sink_t *s, const sg_decision_t *d)
{
        int n;

        if (!s->webhook || d->dry_run ||
            (d->action != SG_ACT_PAUSE && d->action != SG_ACT_BLOCK_SOURCE &&
             d->action != SG_ACT_ALERT))
                return;
        n = sg_codec_encode_decision(s->codec, SG_FMT_JSON, d, s->json,
                                     sizeof(s->json));
        if (n > 0)
                sg_webhook_post(s->webhook, s->json, (size_t)n);
}

/* The batch is committed: log and count what it did. */
static void log_delivered(sg_sink_t *s)
{
        sg_counter_add(s->c_kpi_skipped, (uint64_t)s->nrolling);
        for (int i = 0; i < s->ndec; i++) {
                const sg_decision_t *d = &s->dec[i];

                if (s->dec_state[i] != DELIVER) {
                        sg_counter_add(s->c_dec_duplicate, 1);
                        continue;
                }
                sg_counter_add(s->c_dec_delivered, 1);
                decision_count(d);
                notify(s, d);
                sg_info("event=decision_delivered id=%s action=%s channel=%s "
                        "rule=%s dry_run=%d",
                        d->decision_id, sg_action_name(d->action), d->channel,
                        d->rule_id, d->dry_run ? 1 : 0);
        }
        for (int i = 0; i < s->nkpi; i++)
                sg_counter_add(s->kpi_state[i] == DELIVER ? s->c_kpi_delivered
                                                          : s->c_kpi_duplicate,
                               1);
}

/* --------------------------------------------------------------- the loop */

static int flush(sg_sink_t *s)
{
        int rc = sg_producer_flush(s->producer, FLUSH_TIMEOUT_MS);

        while (rc == -1 && !sg_stop) {
                sg_warn("event=flush_slow waited_ms=%d msg=\"still waiting "
                        "for the broker\"",
                        FLUSH_TIMEOUT_MS);
                rc = sg_producer_flush(s->producer, FLUSH_TIMEOUT_MS);
        }
        return rc;
}

/* 0 done (committed or rewound), -1 the stage must stop. */
static int batch(sg_sink_t *s, sg_consumer_t *consumer, int n)
{
        const char *decisions = s->conf->topics.decisions;
        const char *aggregates = s->conf->topics.aggregates;
        int rc;

        /* Redis lost the delivered ids (sg_redis_epoch_ok): delivering now
         * would repeat decisions. Neither delivered nor committed; consumed
         * again a second later. */
        rc = sg_redis_epoch_ok(s->redis);
        if (rc == -1)
                return -1;
        if (rc == 0) {
                sg_warn("event=batch_refused reason=redis_data_lost "
                        "messages=%d",
                        n);
                if (sg_consumer_rewind(consumer, s->msgs, n) == -1)
                        return -1;
                sg_sleep_ms(1000);
                return 0;
        }

        s->ndec = s->nkpi = s->nrolling = 0;
        s->batch_failed = 0;
        /* Dead letters and deliveries alike belong to the transaction. */
        if (s->conf->sink.transactions && sg_producer_txn_begin(s->producer))
                return -1;
        for (int i = 0; i < n; i++) {
                const rd_kafka_message_t *m = s->msgs[i];
                const char *topic = rd_kafka_topic_name(m->rkt);

                if (strcmp(topic, decisions) == 0)
                        take_decision(s, m);
                else if (strcmp(topic, aggregates) == 0)
                        take_snapshot(s, m);
        }
        if ((s->ndec || s->nkpi) && pipeline(s, append_exists, on_exists) == -1)
                return -1;
        produce(s);

        rc = flush(s);
        if (rc == -1)
                return -1; /* stopped, unacknowledged: redo on restart */
        if (rc == 0 && !s->batch_failed && s->conf->sink.transactions) {
                /* The output and the input offsets become visible together
                 * (to read_committed readers), or not at all: a crash from
                 * here on delivers nothing twice. */
                rc = sg_producer_txn_commit(s->producer, consumer, s->msgs, n);
                if (rc == -1)
                        return -1;
        } else if (s->conf->sink.transactions &&
                   sg_producer_txn_abort(s->producer) == -1) {
                return -1;
        }
        if (rc > 0 || s->batch_failed) {
                sg_warn("event=batch_retry messages=%d failed=%d", n, rc);
                if (sg_consumer_rewind(consumer, s->msgs, n) == -1)
                        return -1;
                sg_sleep_ms(RETRY_PAUSE_MS);
                return 0;
        }
        if ((s->ndec || s->nkpi) && pipeline(s, append_record, on_record) == -1)
                return -1; /* stopped while Redis is down: no commit */
        log_delivered(s);
        sg_consumer_commit(consumer, s->msgs, n);
        return 0;
}

int sg_sink_run(sg_sink_t *s, sg_consumer_t *consumer)
{
        int64_t last_stats = sg_mono_ms(), last_epoch = last_stats;
        int rc = 0;

        while (!sg_stop) {
                int n = sg_consumer_batch(consumer, s->msgs, BATCH_MAX, 100);
                int64_t t0 = sg_mono_us();

                if (sg_mono_ms() - last_stats >= 10000) {
                        sg_metrics_log();
                        last_stats = sg_mono_ms();
                }
                if (n == 0) {
                        /* A flush without traffic is noticed too. */
                        if (sg_mono_ms() - last_epoch >= 1000) {
                                sg_redis_epoch_ok(s->redis);
                                last_epoch = sg_mono_ms();
                        }
                        continue;
                }
                rc = batch(s, consumer, n);
                sg_consumer_batch_free(s->msgs, n);
                if (rc == -1)
                        break;
                sg_histogram_observe(s->batch_seconds,
                                     (double)(sg_mono_us() - t0) / 1e6);
        }
        sg_metrics_log();
        return rc == -1 && !sg_stop ? -1 : 0;
}

sg_sink_t *sg_sink_new(const sg_conf_t *conf, sg_codec_t *codec,
                       sg_redis_t *redis, sg_producer_t *producer, char *errstr,
                       size_t errstr_size)
{
        sg_sink_t *s = calloc(1, sizeof(*s));

        if (!s)
                goto oom;
        s->conf = conf;
        s->codec = codec;
        s->redis = redis;
        s->producer = producer;
        if (sg_format_parse(conf->sink.format, &s->fmt) == -1) {
                snprintf(errstr, errstr_size,
                         "sink.format: \"%s\" is not avro or json",
                         conf->sink.format);
                sg_sink_destroy(s);
                return NULL;
        }
        if (conf->sink.webhook_url[0]) {
                sg_webhook_conf_t wc = {
                    conf->sink.webhook_url, conf->sink.webhook_queue,
                    conf->sink.webhook_timeout_ms, conf->sink.webhook_retries,
                    conf->sink.webhook_backoff_ms};

                if (!(s->webhook = sg_webhook_new(&wc, errstr, errstr_size))) {
                        sg_sink_destroy(s);
                        return NULL;
                }
        }
        s->dec = calloc(BATCH_MAX, sizeof(*s->dec));
        s->kpi = calloc(BATCH_MAX, sizeof(*s->kpi));
        if (!s->dec || !s->kpi)
                goto oom;
        s->c_dec_delivered =
            sg_counter("events_total{type=\"decision\",result=\"delivered\"}");
        s->c_dec_duplicate =
            sg_counter("events_total{type=\"decision\",result=\"duplicate\"}");
        s->c_dec_bad = sg_counter(
            "events_total{type=\"decision\",result=\"undecodable\"}");
        s->c_kpi_delivered =
            sg_counter("events_total{type=\"snapshot\",result=\"delivered\"}");
        s->c_kpi_duplicate =
            sg_counter("events_total{type=\"snapshot\",result=\"duplicate\"}");
        s->c_kpi_skipped =
            sg_counter("events_total{type=\"snapshot\",result=\"skipped\"}");
        s->c_kpi_bad = sg_counter(
            "events_total{type=\"snapshot\",result=\"undecodable\"}");
        s->batch_seconds =
            sg_histogram("batch_duration_seconds", sg_metrics_batch_buckets,
                         sg_metrics_batch_bucket_cnt);
        return s;
oom:
        snprintf(errstr, errstr_size, "out of memory");
        sg_sink_destroy(s);
        return NULL;
}

void sg_sink_destroy(sg_sink_t *s)
{
        if (!s)
                return;
        sg_webhook_destroy(s->webhook);
        free(s->dec);
        free(s->kpi);
        free(s);
}
