#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "stage.h"

struct sg_producer {
        rd_kafka_t *rk;
        /* Delivery accounting since the last flush (the delivery report
         * callback runs on the thread that polls, so no locking). */
        int64_t inflight;
        int64_t failed;
        /* The pipeline whose open batch the messages sent now count for
         * (sg_pipeline_begin/end), and that batch's sequence number. */
        sg_pipeline_t *pl;
        int64_t track; /* -1: none */
        /* message.max.bytes: the largest record producev accepts. */
        int64_t max_bytes;
        /* Dead letters refused for good (deadletter_failed_total). */
        sg_counter_t *dl_failed;
};

static void pipeline_sent(sg_pipeline_t *pl, int64_t seq, int ok);
static void pipeline_delivered(sg_pipeline_t *pl, int64_t seq, int ok);
static void offset_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *offsets,
                             void *opaque);

struct sg_consumer {
        rd_kafka_t *rk;
        sg_rebalance_fn *on_rebalance;
        void *opaque;
        int assigned;       /* partitions, for /readyz */
        int64_t last_lag;   /* when the lag gauges were last updated */
        int64_t last_probe; /* when the broker was last probed (down) */
        int linger_ms;      /* conf batch_linger_ms */
        /* Held while the stage's rebalance callback runs; abandoned is set
         * when a close that did not return is given up (see
         * sg_consumer_destroy). */
        pthread_mutex_t cb_mu;
        int abandoned;
};

static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf)
{
        char q[1024];
        sg_log_level_t l = level <= 3   ? SG_LOG_ERROR
                           : level <= 4 ? SG_LOG_WARN
                           : level <= 6 ? SG_LOG_INFO
                                        : SG_LOG_DEBUG;

        sg_log(l, "event=rdkafka client=%s fac=%s msg=%s", rd_kafka_name(rk),
               fac, sg_log_quote(q, sizeof(q), buf));
}

/* A fatal error ends a client for good (a fenced static consumer, a
 * fenced transactional producer): carrying on would only stall, so the
 * stage exits 1 for its supervisor to restart it. */
static void fatal_exit(rd_kafka_t *rk)
{
        char why[512], q[1024];
        rd_kafka_resp_err_t ferr = rd_kafka_fatal_error(rk, why, sizeof(why));

        sg_error("event=kafka_fatal client=%s err=%s reason=%s",
                 rd_kafka_name(rk), rd_kafka_err2name(ferr),
                 sg_log_quote(q, sizeof(q), why));
        _exit(1);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
        char q[1024];

        sg_warn("event=kafka_error client=%s err=%s reason=%s",
                rd_kafka_name(rk), rd_kafka_err2name(err),
                sg_log_quote(q, sizeof(q), reason));
        if (err == RD_KAFKA_RESP_ERR__FATAL)
                fatal_exit(rk);
        /* Not on a lone __TRANSPORT: one broker of several going away
         * does not make the stage unready. Any later sign of life (a
         * message, an acknowledgement, an assignment, a metadata reply)
         * sets it back. */
        if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
                sg_ready_set(SG_READY_BROKER, 0);
}

int sg_kafka_instance_id(const sg_conf_t *conf, const char *stage, char *buf,
                         size_t size)
{
        char host[256] = "";

        if (conf->instance_id[0]) {
                snprintf(buf, size, "%s.%s", conf->instance_id, stage);
                return 1;
        }
        if (gethostname(host, sizeof(host) - 1) != 0 || !host[0])
                snprintf(host, sizeof(host), "localhost");
        snprintf(buf, size, "%s.%s", host, stage);
        return 0;
}

/* The common part of both clients' configs. */
static rd_kafka_conf_t *conf_new(const sg_conf_t *conf, const char *client_id,
                                 char *errstr, size_t errstr_size)
{
        rd_kafka_conf_t *kc = rd_kafka_conf_new();

        if (rd_kafka_conf_set(kc, "bootstrap.servers", conf->brokers, errstr,
                              errstr_size) != RD_KAFKA_CONF_OK ||
            rd_kafka_conf_set(kc, "client.id", client_id, errstr,
                              errstr_size) != RD_KAFKA_CONF_OK)
                goto err;
        rd_kafka_conf_set_log_cb(kc, log_cb);
        rd_kafka_conf_set_error_cb(kc, error_cb);
        return kc;
err:
        rd_kafka_conf_destroy(kc);
        return NULL;
}

/*
 * One kafka: map serves consumers and producers alike; librdkafka warns at
 * start for a property of the other kind, so those are left out.
 */
static int other_kind(const char *name, int producer)
{
        static const char *const consumer_only[] = {"fetch.",
                                                    "group.",
                                                    "session.timeout.ms",
                                                    "heartbeat.interval.ms",
                                                    "max.poll.interval.ms",
                                                    "auto.offset.reset",
                                                    "enable.auto.",
                                                    "auto.commit.",
                                                    "isolation.level",
                                                    "partition.assignment.",
                                                    "queued.m",
                                                    "enable.partition.eof",
                                                    "check.crcs",
                                                    "allow.auto.create.topics",
                                                    "consume.callback.",
                                                    "coordinator.query.",
                                                    NULL};
        static const char *const producer_only[] = {"acks",
                                                    "request.required.acks",
                                                    "linger.ms",
                                                    "queue.buffering.",
                                                    "batch.",
                                                    "compression.",
                                                    "enable.idempotence",
                                                    "transactional.id",
                                                    "transaction.timeout.ms",
                                                    "message.send.max.retries",
                                                    "retries",
                                                    "delivery.timeout.ms",
                                                    "message.timeout.ms",
                                                    "enable.gapless.guarantee",
                                                    "sticky.partitioning.",
                                                    "partitioner",
                                                    "queuing.strategy",
                                                    NULL};
        const char *const *l = producer ? consumer_only : producer_only;

        for (; *l; l++)
                if (strncmp(name, *l, strlen(*l)) == 0)
                        return 1;
        return 0;
}

/* The kafka: map goes last so that it can override our defaults. */
static int conf_passthrough(rd_kafka_conf_t *kc, const sg_conf_t *conf,
                            int producer, char *errstr, size_t errstr_size)
{
        for (int i = 0; i < conf->kafka_cnt; i++) {
                char why[256];

                if (other_kind(conf->kafka[i].name, producer))
                        continue;
                if (rd_kafka_conf_set(kc, conf->kafka[i].name,
                                      conf->kafka[i].value, why,
                                      sizeof(why)) != RD_KAFKA_CONF_OK) {
                        snprintf(errstr, errstr_size, "kafka.%s: %s",
                                 conf->kafka[i].name, why);
                        return -1;
                }
        }
        return 0;
}

static int conf_set_all(rd_kafka_conf_t *kc, const char *const *kv,
                        char *errstr, size_t errstr_size)
{
        for (; kv[0]; kv += 2)
                if (rd_kafka_conf_set(kc, kv[0], kv[1], errstr, errstr_size) !=
                    RD_KAFKA_CONF_OK)
                        return -1;
        return 0;
}

/*
 * A client of type: the common config, group.id (consumers), defaults
 * (name, value, ..., NULL), the kafka: map, then callbacks(kc) and opaque.
 * NULL with errstr set on error.
 */
static rd_kafka_t *client_new(rd_kafka_type_t type, const sg_conf_t *conf,
                              const char *client_id, const char *group,
                              const char *const *defaults,
                              void (*callbacks)(rd_kafka_conf_t *kc),
                              void *opaque, char *errstr, size_t errstr_size)
{
        rd_kafka_conf_t *kc = conf_new(conf, client_id, errstr, errstr_size);
        rd_kafka_t *rk;

        if (!kc)
                return NULL;
        if ((group && rd_kafka_conf_set(kc, "group.id", group, errstr,
                                        errstr_size) != RD_KAFKA_CONF_OK) ||
            conf_set_all(kc, defaults, errstr, errstr_size) ||
            conf_passthrough(kc, conf, type == RD_KAFKA_PRODUCER, errstr,
                             errstr_size)) {
                rd_kafka_conf_destroy(kc);
                return NULL;
        }
        if (callbacks)
                callbacks(kc);
        rd_kafka_conf_set_opaque(kc, opaque);
        /* rd_kafka_new() takes ownership of kc on success only. */
        rk = rd_kafka_new(type, kc, errstr, errstr_size);
        if (!rk)
                rd_kafka_conf_destroy(kc);
        return rk;
}

/* ---------------------------------------------------------------- producer */

/*
 * Errors that the same record gets again however often it is sent: the
 * record itself is refused (too large, malformed for the broker).
 */
static int permanent_error(rd_kafka_resp_err_t err)
{
        return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
               err == RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE ||
               err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE ||
               err == RD_KAFKA_RESP_ERR_INVALID_RECORD ||
               err == RD_KAFKA_RESP_ERR__INVALID_ARG;
}

/*
 * A dead letter refused for good is counted and logged, and its record
 * counts as handled: retrying it would rewind its partition for ever, and
 * a record that cannot even be dead-lettered must not stop the ones after
 * it (F5 of the 2026-12 review).
 */
static void deadletter_failed(sg_producer_t *p, const char *topic,
                              rd_kafka_resp_err_t err)
{
        sg_counter_add(p->dl_failed, 1);
        sg_error("event=deadletter_failed topic=%s err=%s msg=\"record "
                 "refused for good, not retried\"",
                 topic, rd_kafka_err2name(err));
}

/* A message's opaque: its pipelined batch's sequence number + 1 (0 for
 * none) times two, plus 1 for a dead letter. */
#define OPAQUE(seq1, dl) ((void *)(intptr_t)((seq1) * 2 + ((dl) ? 1 : 0)))

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        sg_producer_t *p = opaque;
        intptr_t priv = (intptr_t)m->_private;
        intptr_t seq = priv / 2;
        int ok = !m->err;

        p->inflight--;
        if (m->err && (priv & 1) && permanent_error(m->err)) {
                deadletter_failed(p, rd_kafka_topic_name(m->rkt), m->err);
                ok = 1;
        }
        if (seq && p->pl)
                pipeline_delivered(p->pl, (int64_t)seq - 1, ok);
        if (!m->err)
                sg_ready_set(SG_READY_BROKER, 1);
        if (!ok) {
                static int64_t last_log;
                static long suppressed;
                int64_t now = sg_mono_ms();

                p->failed++;
                /* A dead broker fails every message: one line a second. */
                if (now - last_log < 1000) {
                        suppressed++;
                        return;
                }
                sg_error("event=delivery_failed topic=%s partition=%d "
                         "err=%s suppressed=%ld",
                         rd_kafka_topic_name(m->rkt), m->partition,
                         rd_kafka_err2name(m->err), suppressed);
                last_log = now;
                suppressed = 0;
        }
}

static void producer_callbacks(rd_kafka_conf_t *kc)
{
        rd_kafka_conf_set_dr_msg_cb(kc, dr_msg_cb);
}

sg_producer_t *sg_producer_new(const sg_conf_t *conf, const char *client_id,
                               char *errstr, size_t errstr_size)
{
        static const char *const defaults[] = {
            "enable.idempotence", "true", "acks", "all", "linger.ms", "5",
            "compression.type",   "lz4",  NULL};
        sg_producer_t *p = calloc(1, sizeof(*p));

        if (!p) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        p->track = -1;
        p->rk = client_new(RD_KAFKA_PRODUCER, conf, client_id, NULL, defaults,
                           producer_callbacks, p, errstr, errstr_size);
        if (!p->rk) {
                free(p);
                return NULL;
        }
        {
                char v[32];
                size_t size = sizeof(v);

                p->max_bytes = 1000000; /* librdkafka's default */
                if (rd_kafka_conf_get(rd_kafka_conf(p->rk),
                                      "message.max.bytes", v,
                                      &size) == RD_KAFKA_CONF_OK)
                        p->max_bytes = atoll(v);
        }
        p->dl_failed = sg_counter("deadletter_failed_total");
        return p;
}

/* 1 when *e is a retriable transaction error and the stage is not
 * stopping: logged, destroyed, paused for; the caller calls again. */
static int txn_again(rd_kafka_error_t **e, const char *op)
{
        if (!*e || !rd_kafka_error_is_retriable(*e) || sg_stop)
                return 0;
        sg_warn("event=txn_retry op=%s err=%s", op, rd_kafka_error_name(*e));
        rd_kafka_error_destroy(*e);
        *e = NULL;
        sg_sleep_ms(200);
        return 1;
}

sg_producer_t *sg_producer_new_transactional(const sg_conf_t *conf,
                                             const char *client_id,
                                             const char *transactional_id,
                                             char *errstr, size_t errstr_size)
{
        const char *const defaults[] = {"enable.idempotence",
                                        "true",
                                        "acks",
                                        "all",
                                        "linger.ms",
                                        "5",
                                        "compression.type",
                                        "lz4",
                                        "transaction.timeout.ms",
                                        "30000",
                                        "transactional.id",
                                        transactional_id,
                                        NULL};
        sg_producer_t *p = calloc(1, sizeof(*p));
        rd_kafka_error_t *e;

        if (!p) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        p->track = -1;
        p->rk = client_new(RD_KAFKA_PRODUCER, conf, client_id, NULL, defaults,
                           producer_callbacks, p, errstr, errstr_size);
        if (!p->rk) {
                free(p);
                return NULL;
        }
        do
                e = rd_kafka_init_transactions(p->rk, 30000);
        while (txn_again(&e, "init"));
        if (e || sg_stop) {
                snprintf(errstr, errstr_size, "init_transactions: %s",
                         e ? rd_kafka_error_string(e) : "stopped");
                if (e)
                        rd_kafka_error_destroy(e);
                rd_kafka_destroy(p->rk);
                free(p);
                return NULL;
        }
        sg_info("event=txn_init transactional_id=%s", transactional_id);
        return p;
}

int sg_producer_txn_begin(sg_producer_t *p)
{
        rd_kafka_error_t *e = rd_kafka_begin_transaction(p->rk);

        if (!e)
                return 0;
        sg_error("event=txn_begin_failed err=%s reason=\"%s\"",
                 rd_kafka_error_name(e), rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return -1;
}

void sg_producer_destroy(sg_producer_t *p)
{
        if (!p)
                return;
        /* Within the stop budget: with the broker gone nothing more will
         * be delivered, and what is still queued is dropped, said so. */
        if (rd_kafka_flush(p->rk, sg_stop_bound_ms(10000)) !=
            RD_KAFKA_RESP_ERR_NO_ERROR) {
                sg_warn("event=producer_close outq=%d msg=\"messages not "
                        "delivered at close\"",
                        rd_kafka_outq_len(p->rk));
                rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE |
                                          RD_KAFKA_PURGE_F_INFLIGHT);
                rd_kafka_poll(p->rk, 0);
        }
        rd_kafka_destroy(p->rk);
        free(p);
}

rd_kafka_t *sg_producer_handle(sg_producer_t *p)
{
        return p->rk;
}

rd_kafka_topic_partition_list_t *sg_kafka_group_offsets(rd_kafka_t *rk,
                                                        const char *group,
                                                        const char *topic,
                                                        char *errstr,
                                                        size_t errstr_size)
{
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        rd_kafka_topic_partition_list_t *out = NULL, *want;
        rd_kafka_ListConsumerGroupOffsets_t *req;
        const struct rd_kafka_metadata *md;
        const rd_kafka_group_result_t **gr;
        const rd_kafka_topic_partition_list_t *l;
        rd_kafka_event_t *ev = NULL;
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        rd_kafka_queue_t *q;
        size_t n;

        /* Every partition by name: a broker need not list "all topics"
         * (librdkafka's mock cluster does not). */
        rd_kafka_topic_destroy(rkt);
        if (err || md->topic_cnt != 1 || md->topics[0].err) {
                snprintf(errstr, errstr_size, "no metadata for %s: %s", topic,
                         rd_kafka_err2str(err ? err : md->topics[0].err));
                if (!err)
                        rd_kafka_metadata_destroy(md);
                return NULL;
        }
        want = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
        for (int p = 0; p < md->topics[0].partition_cnt; p++)
                rd_kafka_topic_partition_list_add(
                    want, topic, md->topics[0].partitions[p].id);
        rd_kafka_metadata_destroy(md);
        req = rd_kafka_ListConsumerGroupOffsets_new(group, want);
        rd_kafka_topic_partition_list_destroy(want);
        q = rd_kafka_queue_new(rk);
        rd_kafka_ListConsumerGroupOffsets(rk, &req, 1, NULL, q);
        ev = rd_kafka_queue_poll(q, 30000);
        if (!ev) {
                snprintf(errstr, errstr_size, "no answer in 30 s");
                goto out;
        }
        if (rd_kafka_event_error(ev)) {
                snprintf(errstr, errstr_size, "%s",
                         rd_kafka_event_error_string(ev));
                goto out;
        }
        gr = rd_kafka_ListConsumerGroupOffsets_result_groups(
            rd_kafka_event_ListConsumerGroupOffsets_result(ev), &n);
        if (n != 1 || rd_kafka_group_result_error(gr[0])) {
                snprintf(errstr, errstr_size, "%s",
                         n == 1 ? rd_kafka_error_string(
                                      rd_kafka_group_result_error(gr[0]))
                                : "no group in the reply");
                goto out;
        }
        l = rd_kafka_group_result_partitions(gr[0]);
        out = rd_kafka_topic_partition_list_new(l ? l->cnt : 1);
        for (int i = 0; l && i < l->cnt; i++)
                if (strcmp(l->elems[i].topic, topic) == 0 && !l->elems[i].err)
                        rd_kafka_topic_partition_list_add(
                            out, topic, l->elems[i].partition)
                            ->offset = l->elems[i].offset;
out:
        if (ev)
                rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
        rd_kafka_ListConsumerGroupOffsets_destroy(req);
        return out;
}

static int producer_send(sg_producer_t *p, const char *topic,
                         int32_t partition, const void *key, size_t key_len,
                         const void *value, size_t value_len,
                         rd_kafka_headers_t *hdrs, int deadletter)
{
        void *opaque = OPAQUE(p->track + 1, deadletter);

        for (;;) {
                rd_kafka_resp_err_t err = rd_kafka_producev(
                    p->rk, RD_KAFKA_V_TOPIC(topic),
                    RD_KAFKA_V_PARTITION(partition),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                    RD_KAFKA_V_KEY((void *)key, key_len),
                    RD_KAFKA_V_VALUE((void *)value, value_len),
                    RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(opaque),
                    RD_KAFKA_V_END);

                if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                        p->inflight++;
                        if (p->track >= 0)
                                pipeline_sent(p->pl, p->track, 1);
                        return 0;
                }
                if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                        /* Back-pressure: serve delivery reports, retry. */
                        rd_kafka_poll(p->rk, 10);
                        continue;
                }
                if (hdrs)
                        rd_kafka_headers_destroy(hdrs);
                if (deadletter && permanent_error(err)) {
                        deadletter_failed(p, topic, err);
                        return 0;
                }
                sg_error("event=produce_failed topic=%s err=%s", topic,
                         rd_kafka_err2name(err));
                if (p->track >= 0)
                        pipeline_sent(p->pl, p->track, 0);
                return -1;
        }
}

int sg_producer_send(sg_producer_t *p, const char *topic, int32_t partition,
                     const void *key, size_t key_len, const void *value,
                     size_t value_len, rd_kafka_headers_t *hdrs)
{
        return producer_send(p, topic, partition, key, key_len, value,
                             value_len, hdrs, 0);
}

/* Room for the record framing and the sg.* headers besides their values. */
#define DL_OVERHEAD 1024
/* A longer key is cut to this in a dead letter that does not fit. */
#define DL_MAX_KEY 1024

int sg_producer_deadletter(sg_producer_t *p, const char *topic,
                           const rd_kafka_message_t *m, const char *reason,
                           const char *detail)
{
        size_t key_len = m->key_len, len = m->len, room;
        static int64_t last_log;
        static long suppressed;
        rd_kafka_headers_t *h = rd_kafka_headers_new(3);
        char src[256], q[512], name[SG_METRICS_NAME_LEN];
        int64_t now = sg_mono_ms();

        snprintf(src, sizeof(src), "%s/%d/%lld", rd_kafka_topic_name(m->rkt),
                 (int)m->partition, (long long)m->offset);
        rd_kafka_header_add(h, "sg.error", -1, reason, -1);
        rd_kafka_header_add(h, "sg.detail", -1, detail, -1);
        rd_kafka_header_add(h, "sg.src", -1, src, -1);
        /*
         * A record the producer would refuse (message.max.bytes) goes out
         * cut to what fits, with its original size in sg.size: the whole
         * record would be refused on every retry and stall its partition.
         */
        room = (size_t)p->max_bytes > DL_OVERHEAD + strlen(reason) +
                                          strlen(detail) + strlen(src)
                   ? (size_t)p->max_bytes - DL_OVERHEAD - strlen(reason) -
                         strlen(detail) - strlen(src)
                   : 0;
        if (key_len + len > room) {
                char size[32];

                snprintf(size, sizeof(size), "%zu", m->len);
                rd_kafka_header_add(h, "sg.size", -1, size, -1);
                if (key_len > DL_MAX_KEY)
                        key_len = DL_MAX_KEY;
                len = room > key_len + strlen(size) + 16
                          ? room - key_len - strlen(size) - 16
                          : 0;
        }
        if (sg_metrics_name(name, sizeof(name), "deadletter_total", "reason",
                            reason, NULL) == 0)
                sg_counter_add(sg_counter(name), 1);
        /* A flood of garbage must not become a flood of log lines. */
        if (now - last_log >= 1000) {
                sg_warn("event=deadletter reason=%s src=%s detail=%s "
                        "suppressed=%ld",
                        reason, src, sg_log_quote(q, sizeof(q), detail),
                        suppressed);
                last_log = now;
                suppressed = 0;
        } else {
                suppressed++;
        }
        return producer_send(p, topic, -1, m->key, key_len, m->payload, len,
                             h, 1);
}

int sg_producer_flush(sg_producer_t *p, int timeout_ms)
{
        int64_t deadline = sg_mono_ms() + timeout_ms;
        int failed;

        while (p->inflight > 0) {
                int64_t left = sg_stop_deadline(deadline) - sg_mono_ms();

                if (left <= 0)
                        return -1;
                rd_kafka_flush(p->rk, left > 100 ? 100 : (int)left);
                rd_kafka_poll(p->rk, 0);
        }
        failed = (int)p->failed;
        p->failed = 0;
        return failed;
}

void sg_producer_poll(sg_producer_t *p)
{
        rd_kafka_poll(p->rk, 0);
}

/* ---------------------------------------------------------------- consumer */

/* The consumer_lag gauge of one partition (NULL if the table is full). */
static sg_gauge_t *lag_gauge(const char *topic, int32_t partition)
{
        char name[SG_METRICS_NAME_LEN], part[16];

        snprintf(part, sizeof(part), "%d", (int)partition);
        if (sg_metrics_name(name, sizeof(name), "consumer_lag", "topic", topic,
                            "partition", part, NULL) == -1)
                return NULL;
        return sg_gauge(name);
}

/*
 * Lag per assigned partition: the high watermark librdkafka last fetched
 * minus the position. Runs on the stage thread, at most once a second, so
 * a scrape never calls into librdkafka.
 */
static void lag_update(sg_consumer_t *c)
{
        rd_kafka_topic_partition_list_t *parts = NULL;
        int64_t now = sg_mono_ms();

        if (now - c->last_lag < 1000)
                return;
        c->last_lag = now;
        if (rd_kafka_assignment(c->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
                return;
        rd_kafka_position(c->rk, parts);
        for (int i = 0; i < parts->cnt; i++) {
                const rd_kafka_topic_partition_t *tp = &parts->elems[i];
                int64_t lo, hi, pos = tp->offset;

                if (rd_kafka_get_watermark_offsets(
                        c->rk, tp->topic, tp->partition, &lo, &hi) != 0 ||
                    hi < 0)
                        continue;
                /* Nothing consumed yet: only an empty partition is known
                 * to be caught up. */
                if (pos < 0 && hi != lo)
                        continue;
                sg_gauge_set(lag_gauge(tp->topic, tp->partition),
                             pos < 0 || hi < pos ? 0 : (double)(hi - pos));
        }
        rd_kafka_topic_partition_list_destroy(parts);
}

/* While the broker counts as down (after "all brokers down") and nothing
 * arrives, asks it for metadata every 2 s (briefly), so that an idle stage
 * turns ready again. */
static void broker_probe(sg_consumer_t *c)
{
        const struct rd_kafka_metadata *md;
        int64_t now = sg_mono_ms();

        /* Before the first assignment, the assignment itself tells. */
        if (sg_ready_get(SG_READY_BROKER) || c->assigned == 0 ||
            now - c->last_probe < 2000)
                return;
        c->last_probe = now;
        if (rd_kafka_metadata(c->rk, 0, NULL, &md, 200) ==
            RD_KAFKA_RESP_ERR_NO_ERROR) {
                sg_ready_set(SG_READY_BROKER, 1);
                rd_kafka_metadata_destroy(md);
        }
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        sg_consumer_t *c = opaque;
        int assign = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;

        sg_info("event=%s partitions=%d", assign ? "assigned" : "revoked",
                parts->cnt);
        pthread_mutex_lock(&c->cb_mu);
        if (c->on_rebalance && !c->abandoned)
                c->on_rebalance(c->opaque, assign, parts);
        pthread_mutex_unlock(&c->cb_mu);
        if (assign) {
                rd_kafka_assign(rk, parts);
                /* The group coordinator answered: the broker is there. */
                sg_ready_set(SG_READY_BROKER, 1);
        } else {
                rd_kafka_assign(rk, NULL);
                for (int i = 0; i < parts->cnt; i++)
                        sg_gauge_hide(lag_gauge(parts->elems[i].topic,
                                                parts->elems[i].partition));
        }
        /* Eager protocol: an assignment replaces the previous one. */
        sg_ready_add(SG_READY_ASSIGNED,
                     (assign ? parts->cnt : 0) - c->assigned);
        c->assigned = assign ? parts->cnt : 0;
}

static void consumer_callbacks(rd_kafka_conf_t *kc)
{
        rd_kafka_conf_set_rebalance_cb(kc, rebalance_cb);
        rd_kafka_conf_set_offset_commit_cb(kc, offset_commit_cb);
}

sg_consumer_t *sg_consumer_new(const sg_conf_t *conf, const char *stage,
                               const char *const *topics, int topic_cnt,
                               sg_rebalance_fn *on_rebalance, void *opaque,
                               char *errstr, size_t errstr_size)
{
        /* A session of 6 s (Kafka's smallest by default), not
         * librdkafka's 45: a restarted or dead instance's partitions are
         * handed out again once its session expires, so this bounds the
         * recovery time (docs/reliability.md "Recovery time"). With
         * instance_id set the consumer is a static member and a restart
         * needs no expiry at all.
         *
         * queued.min.messages: librdkafka 2.0.2 stops fetching when the
         * consumer's queue holds that many records and looks again only
         * after a fixed 1 s (fetch.queue.backoff.ms, configurable from
         * 2.1.0). At the default 100,000, a stage with a backlog emptied
         * the queue in 0.3-0.6 s and then waited: aggregate was idle in
         * 3-4 polls of 100 ms every 110,000 records (docs/performance.md).
         * The memory bound stays queued.max.messages.kbytes (64 MiB of
         * records). */
        const char *defaults[] = {"enable.auto.commit",
                                  "false",
                                  "auto.offset.reset",
                                  "earliest",
                                  "enable.partition.eof",
                                  "false",
                                  "session.timeout.ms",
                                  "6000",
                                  "queued.min.messages",
                                  "1000000",
                                  NULL,
                                  NULL,
                                  NULL};
        char instance[320];
        sg_consumer_t *c = calloc(1, sizeof(*c));
        rd_kafka_topic_partition_list_t *subs;
        rd_kafka_resp_err_t err;
        char group[192], client[192];

        if (!c) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        c->on_rebalance = on_rebalance;
        c->opaque = opaque;
        pthread_mutex_init(&c->cb_mu, NULL);
        c->linger_ms = conf->batch_linger_ms;
        if (sg_kafka_instance_id(conf, stage, instance, sizeof(instance))) {
                defaults[10] = "group.instance.id";
                defaults[11] = instance;
        }
        snprintf(group, sizeof(group), "%s.%s", conf->group_prefix, stage);
        snprintf(client, sizeof(client), "sg-%s", stage);
        c->rk = client_new(RD_KAFKA_CONSUMER, conf, client, group, defaults,
                           consumer_callbacks, c, errstr, errstr_size);
        if (!c->rk)
                goto err;
        rd_kafka_poll_set_consumer(c->rk);
        subs = rd_kafka_topic_partition_list_new(topic_cnt);
        for (int i = 0; i < topic_cnt; i++)
                rd_kafka_topic_partition_list_add(subs, topics[i],
                                                  RD_KAFKA_PARTITION_UA);
        err = rd_kafka_subscribe(c->rk, subs);
        rd_kafka_topic_partition_list_destroy(subs);
        if (err) {
                snprintf(errstr, errstr_size, "subscribe: %s",
                         rd_kafka_err2str(err));
                rd_kafka_destroy(c->rk);
                goto err;
        }
        return c;
err:
        free(c);
        return NULL;
}

/*
 * rd_kafka_consumer_close() leaves the group and waits for the final
 * commits; in librdkafka 2.0.2 it waits forever when the broker is gone
 * (there is no rd_kafka_consumer_close_queue() yet). So it runs on a
 * thread of its own and is waited for within the stop budget; if it does
 * not return, the consumer is abandoned (its handle and sg_consumer_t are
 * leaked, the process is about to exit) and its rebalance callback no
 * longer reaches the stage, whose state is destroyed next.
 */
typedef struct close_job {
        rd_kafka_t *rk;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        int done;
} close_job_t;

static void *close_thread(void *arg)
{
        close_job_t *j = arg;

        rd_kafka_consumer_close(j->rk);
        pthread_mutex_lock(&j->mu);
        j->done = 1;
        pthread_cond_signal(&j->cv);
        pthread_mutex_unlock(&j->mu);
        return NULL;
}

/* 1 when rd_kafka_consumer_close() returned within timeout_ms. */
static int close_bounded(sg_consumer_t *c, int timeout_ms)
{
        close_job_t *j = calloc(1, sizeof(*j));
        struct timespec ts;
        pthread_t t;
        int done;

        if (!j || timeout_ms <= 0)
                goto skip;
        j->rk = c->rk;
        pthread_mutex_init(&j->mu, NULL);
        pthread_cond_init(&j->cv, NULL);
        if (pthread_create(&t, NULL, close_thread, j) != 0)
                goto skip;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&j->mu);
        while (!j->done &&
               pthread_cond_timedwait(&j->cv, &j->mu, &ts) != ETIMEDOUT)
                ;
        done = j->done;
        pthread_mutex_unlock(&j->mu);
        if (!done) {
                pthread_detach(t); /* it keeps j */
                return 0;
        }
        pthread_join(t, NULL);
        pthread_mutex_destroy(&j->mu);
        pthread_cond_destroy(&j->cv);
        free(j);
        return 1;
skip:
        free(j);
        return 0;
}

void sg_consumer_destroy(sg_consumer_t *c)
{
        if (!c)
                return;
        if (close_bounded(c, sg_stop_bound_ms(10000))) {
                rd_kafka_destroy(c->rk);
        } else {
                sg_error("event=consumer_close_timeout msg=\"could not leave "
                         "the group (broker gone?): offsets not committed at "
                         "close are consumed again by the next owner\"");
                pthread_mutex_lock(&c->cb_mu);
                c->abandoned = 1;
                pthread_mutex_unlock(&c->cb_mu);
                sg_ready_add(SG_READY_ASSIGNED, -c->assigned);
                return; /* leaked on purpose: the close thread holds rk */
        }
        sg_ready_add(SG_READY_ASSIGNED, -c->assigned);
        pthread_mutex_destroy(&c->cb_mu);
        free(c);
}

rd_kafka_t *sg_consumer_handle(sg_consumer_t *c)
{
        return c->rk;
}

int sg_consumer_batch(sg_consumer_t *c, rd_kafka_message_t **msgs, int max,
                      int timeout_ms)
{
        int64_t deadline = sg_mono_ms() + timeout_ms;
        int n = 0, since_clock = 0;

        lag_update(c);
        broker_probe(c);
        while (n < max && !sg_stop) {
                rd_kafka_message_t *m = NULL;

                /* What is queued is taken without a wait and, but for
                 * every 256th record, without reading the clock: that was
                 * 3.5% of aggregate's time, one clock_gettime per record. */
                if (since_clock < 256) {
                        m = rd_kafka_consumer_poll(c->rk, 0);
                        since_clock++;
                }
                if (!m) {
                        int64_t left = deadline - sg_mono_ms();
                        int wait;

                        since_clock = 0;
                        if (left < 0)
                                left = 0;
                        if (n && left == 0)
                                break;
                        /* Short polls so that a stop signal is noticed; a
                         * batch under way ends when the input pauses for
                         * linger_ms. */
                        wait = left > 100 ? 100 : (int)left;
                        if (n && c->linger_ms >= 0 && wait > c->linger_ms)
                                wait = c->linger_ms;
                        m = rd_kafka_consumer_poll(c->rk, wait);
                        if (!m) {
                                if (left == 0 || (n && c->linger_ms >= 0))
                                        break;
                                continue;
                        }
                }
                if (m->err == RD_KAFKA_RESP_ERR__FATAL)
                        fatal_exit(c->rk);
                if (m->err) {
                        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                sg_warn(
                                    "event=consume_error topic=%s "
                                    "partition=%d err=%s",
                                    m->rkt ? rd_kafka_topic_name(m->rkt) : "-",
                                    m->partition, rd_kafka_err2name(m->err));
                        rd_kafka_message_destroy(m);
                        continue;
                }
                msgs[n++] = m;
        }
        if (n)
                sg_ready_set(SG_READY_BROKER, 1);
        return n;
}

void sg_consumer_batch_free(rd_kafka_message_t **msgs, int cnt)
{
        for (int i = 0; i < cnt; i++)
                rd_kafka_message_destroy(msgs[i]);
}

/* Per partition of msgs, the lowest (first) or highest offset. */
static rd_kafka_topic_partition_list_t *batch_offsets(rd_kafka_message_t **msgs,
                                                      int cnt, int highest)
{
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(cnt > 16 ? 16 : cnt);

        for (int i = 0; i < cnt; i++) {
                const char *t = rd_kafka_topic_name(msgs[i]->rkt);
                rd_kafka_topic_partition_t *tp =
                    rd_kafka_topic_partition_list_find(l, t,
                                                       msgs[i]->partition);
                int64_t off = msgs[i]->offset + (highest ? 1 : 0);

                if (!tp) {
                        tp = rd_kafka_topic_partition_list_add(
                            l, t, msgs[i]->partition);
                        tp->offset = off;
                } else if (highest ? off > tp->offset : off < tp->offset) {
                        tp->offset = off;
                }
        }
        return l;
}

int sg_consumer_commit(sg_consumer_t *c, rd_kafka_message_t **msgs, int cnt)
{
        rd_kafka_topic_partition_list_t *l;
        rd_kafka_resp_err_t err;

        if (cnt == 0)
                return 0;
        l = batch_offsets(msgs, cnt, 1);
        /* The result comes to offset_commit_cb; a lost commit only means
         * records read again, which every stage skips or dedupes. */
        err = rd_kafka_commit(c->rk, l, 1 /* async */);
        rd_kafka_topic_partition_list_destroy(l);
        if (err) {
                sg_warn("event=commit_failed err=%s", rd_kafka_err2name(err));
                return -1;
        }
        return 0;
}

/* Seeks each partition of l to its offset. */
static int seek_list(sg_consumer_t *c, rd_kafka_topic_partition_list_t *l)
{
        rd_kafka_error_t *error = rd_kafka_seek_partitions(c->rk, l, 5000);
        int rc = 0;

        if (error) {
                sg_error("event=rewind_failed err=%s",
                         rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
                return -1;
        }
        for (int i = 0; i < l->cnt; i++) {
                if (l->elems[i].err) {
                        sg_error("event=rewind_failed topic=%s partition=%d "
                                 "err=%s",
                                 l->elems[i].topic, l->elems[i].partition,
                                 rd_kafka_err2name(l->elems[i].err));
                        rc = -1;
                }
        }
        return rc;
}

int sg_producer_txn_commit(sg_producer_t *p, sg_consumer_t *c,
                           rd_kafka_message_t **msgs, int cnt)
{
        rd_kafka_consumer_group_metadata_t *md =
            rd_kafka_consumer_group_metadata(c->rk);
        rd_kafka_topic_partition_list_t *l = batch_offsets(msgs, cnt, 1);
        rd_kafka_error_t *e;
        const char *op = "send_offsets";

        do
                e = rd_kafka_send_offsets_to_transaction(p->rk, l, md, 30000);
        while (txn_again(&e, op));
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_consumer_group_metadata_destroy(md);
        if (!e) {
                op = "commit";
                do
                        e = rd_kafka_commit_transaction(p->rk, 30000);
                while (txn_again(&e, op));
        }
        if (!e)
                return 0;
        sg_warn("event=txn_failed op=%s err=%s abort=%d fatal=%d reason=\"%s\"",
                op, rd_kafka_error_name(e),
                rd_kafka_error_txn_requires_abort(e),
                rd_kafka_error_is_fatal(e), rd_kafka_error_string(e));
        if (rd_kafka_error_is_fatal(e) || sg_stop) {
                rd_kafka_error_destroy(e);
                return -1;
        }
        rd_kafka_error_destroy(e);
        return sg_producer_txn_abort(p) == 0 ? 1 : -1;
}

int sg_producer_txn_abort(sg_producer_t *p)
{
        rd_kafka_error_t *e;

        do
                e = rd_kafka_abort_transaction(p->rk, 30000);
        while (txn_again(&e, "abort"));
        /* What the aborted transaction had in flight is reported failed;
         * it is redone, so the accounting starts again. */
        p->inflight = 0;
        p->failed = 0;
        if (!e)
                return 0;
        sg_error("event=txn_abort_failed err=%s reason=\"%s\"",
                 rd_kafka_error_name(e), rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return -1;
}

int sg_consumer_rewind(sg_consumer_t *c, rd_kafka_message_t **msgs, int cnt)
{
        rd_kafka_topic_partition_list_t *l;
        int rc;

        if (cnt == 0)
                return 0;
        l = batch_offsets(msgs, cnt, 0);
        rc = seek_list(c, l);
        rd_kafka_topic_partition_list_destroy(l);
        return rc;
}

/* ------------------------------------------------------- pipelined batches */

/*
 * One batch: where its input records are, per partition the lowest offset
 * (first) and the highest + 1 (next, same indices), and how many of the
 * messages it produced are not yet reported (inflight) or failed. Slot of
 * sequence number seq: seq % depth; a report for a sequence number the
 * slot no longer holds (a batch given up after a failure) is ignored.
 */
typedef struct pl_batch {
        int64_t seq; /* -1: free */
        int open;    /* between begin and end */
        int64_t inflight;
        int64_t failed;
        int64_t records;
        int64_t t0_us;
        int last; /* index in first/next of the last record's partition */
        rd_kafka_topic_partition_list_t *first, *next;
        /* Per partition (same indices), the highest event time noted
         * (INT64_MIN: none). Kept across batches, grown only when a batch
         * holds more partitions than any before. */
        int64_t *max_t;
        int max_cap;
} pl_batch_t;

struct sg_pipeline {
        sg_consumer_t *c;
        sg_producer_t *p;
        sg_histogram_t *batch_seconds;
        int depth;
        int64_t oldest; /* sequence number of the oldest batch in flight */
        int64_t seq;    /* the next batch's */
        pl_batch_t *b;  /* [depth] */
        sg_pipeline_acked_fn *on_acked;
        void *acked_opaque;
};

static pl_batch_t *pl_slot(sg_pipeline_t *pl, int64_t seq)
{
        return &pl->b[seq % pl->depth];
}

static void pipeline_sent(sg_pipeline_t *pl, int64_t seq, int ok)
{
        pl_batch_t *b = pl_slot(pl, seq);

        if (b->seq != seq)
                return;
        if (ok)
                b->inflight++;
        else
                b->failed++;
}

static void pipeline_delivered(sg_pipeline_t *pl, int64_t seq, int ok)
{
        pl_batch_t *b = pl_slot(pl, seq);

        if (b->seq != seq)
                return;
        b->inflight--;
        if (!ok)
                b->failed++;
}

sg_pipeline_t *sg_pipeline_new(sg_consumer_t *c, sg_producer_t *p, int depth,
                               sg_histogram_t *batch_seconds)
{
        sg_pipeline_t *pl = calloc(1, sizeof(*pl));

        if (!pl || depth < 1 || !(pl->b = calloc(depth, sizeof(*pl->b)))) {
                free(pl);
                return NULL;
        }
        pl->c = c;
        pl->p = p;
        pl->batch_seconds = batch_seconds;
        pl->depth = depth;
        for (int i = 0; i < depth; i++)
                pl->b[i].seq = -1;
        p->pl = pl;
        return pl;
}

static void pl_free(pl_batch_t *b)
{
        int64_t *max_t = b->max_t;
        int max_cap = b->max_cap;

        if (b->first)
                rd_kafka_topic_partition_list_destroy(b->first);
        if (b->next)
                rd_kafka_topic_partition_list_destroy(b->next);
        memset(b, 0, sizeof(*b));
        b->seq = -1;
        b->max_t = max_t;
        b->max_cap = max_cap;
}

/* Tells the pipeline's owner that batch b is acknowledged in full, with
 * every batch before it (it is being committed). */
static void pl_acked(sg_pipeline_t *pl, const pl_batch_t *b)
{
        if (pl->on_acked)
                pl->on_acked(pl->acked_opaque, b->next, b->max_t);
}

/* Forgets the oldest batch. */
static void pl_pop(sg_pipeline_t *pl)
{
        pl_free(pl_slot(pl, pl->oldest));
        pl->oldest++;
}

void sg_pipeline_destroy(sg_pipeline_t *pl)
{
        if (!pl)
                return;
        while (pl->oldest < pl->seq)
                pl_pop(pl);
        if (pl->p->pl == pl) {
                pl->p->pl = NULL;
                pl->p->track = -1;
        }
        for (int i = 0; i < pl->depth; i++)
                free(pl->b[i].max_t);
        free(pl->b);
        free(pl);
}

int sg_pipeline_inflight(const sg_pipeline_t *pl)
{
        return (int)(pl->seq - pl->oldest);
}

void sg_pipeline_begin(sg_pipeline_t *pl)
{
        pl_batch_t *b = pl_slot(pl, pl->seq);

        if (b->seq != -1)
                abort(); /* no room: a caller's bug */
        b->seq = pl->seq++;
        b->open = 1;
        b->last = -1;
        b->t0_us = sg_mono_us();
        b->first = rd_kafka_topic_partition_list_new(16);
        b->next = rd_kafka_topic_partition_list_new(16);
        pl->p->track = b->seq;
}

void sg_pipeline_on_acked(sg_pipeline_t *pl, sg_pipeline_acked_fn *fn,
                          void *opaque)
{
        pl->on_acked = fn;
        pl->acked_opaque = opaque;
}

void sg_pipeline_add(sg_pipeline_t *pl, const rd_kafka_message_t *m)
{
        sg_pipeline_add_time(pl, m, INT64_MIN);
}

void sg_pipeline_add_time(sg_pipeline_t *pl, const rd_kafka_message_t *m,
                          int64_t event_time)
{
        pl_batch_t *b = pl_slot(pl, pl->seq - 1);
        const char *t = rd_kafka_topic_name(m->rkt);
        rd_kafka_topic_partition_t *f, *n;
        int i = b->last;

        /* A fetch hands out a partition's records in runs. */
        if (i < 0 || b->first->elems[i].partition != m->partition ||
            strcmp(b->first->elems[i].topic, t) != 0) {
                for (i = 0; i < b->first->cnt; i++)
                        if (b->first->elems[i].partition == m->partition &&
                            strcmp(b->first->elems[i].topic, t) == 0)
                                break;
                if (i == b->first->cnt) {
                        if (i == b->max_cap) {
                                int cap = b->max_cap ? 2 * b->max_cap : 16;
                                int64_t *mt = realloc(
                                    b->max_t, (size_t)cap * sizeof(*mt));

                                if (!mt)
                                        abort(); /* as librdkafka's lists */
                                b->max_t = mt;
                                b->max_cap = cap;
                        }
                        rd_kafka_topic_partition_list_add(b->first, t,
                                                          m->partition)
                            ->offset = m->offset;
                        rd_kafka_topic_partition_list_add(b->next, t,
                                                          m->partition)
                            ->offset = m->offset + 1;
                        b->max_t[i] = INT64_MIN;
                }
                b->last = i;
        }
        if (event_time > b->max_t[i])
                b->max_t[i] = event_time;
        f = &b->first->elems[i];
        n = &b->next->elems[i];
        if (m->offset < f->offset)
                f->offset = m->offset;
        if (m->offset + 1 > n->offset)
                n->offset = m->offset + 1;
        b->records++;
}

void sg_pipeline_end(sg_pipeline_t *pl)
{
        pl_slot(pl, pl->seq - 1)->open = 0;
        pl->p->track = -1;
}

static int pl_done(const pl_batch_t *b)
{
        return !b->open && b->inflight <= 0;
}

/* Serves delivery reports until every batch in flight is reported, or
 * timeout_ms. 1 if all are. */
static int pl_wait_all(sg_pipeline_t *pl, int timeout_ms)
{
        int64_t deadline = sg_mono_ms() + timeout_ms;

        for (;;) {
                int64_t s = pl->oldest,
                        left = sg_stop_deadline(deadline) - sg_mono_ms();

                while (s < pl->seq && pl_done(pl_slot(pl, s)))
                        s++;
                if (s == pl->seq)
                        return 1;
                if (left <= 0)
                        return 0;
                rd_kafka_poll(pl->p->rk, left > 100 ? 100 : (int)left);
        }
}

static void offset_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t *offsets,
                             void *opaque)
{
        (void)rk;
        (void)offsets;
        (void)opaque;
        /* Asynchronous commits only; a later commit covers a lost one. */
        if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
                sg_warn("event=commit_failed err=%s", rd_kafka_err2name(err));
}

int sg_pipeline_reap(sg_pipeline_t *pl)
{
        rd_kafka_topic_partition_list_t *l;
        int64_t batches, records = 0, failed = 0;

        rd_kafka_poll(pl->p->rk, 0);
        for (;;) {
                pl_batch_t *b = pl_slot(pl, pl->oldest);

                while (pl->oldest < pl->seq && pl_done(b) && !b->failed) {
                        rd_kafka_resp_err_t err =
                            rd_kafka_commit(pl->c->rk, b->next, 1 /* async */);

                        if (err)
                                sg_warn("event=commit_failed err=%s",
                                        rd_kafka_err2name(err));
                        if (pl->batch_seconds)
                                sg_histogram_observe(
                                    pl->batch_seconds,
                                    (double)(sg_mono_us() - b->t0_us) / 1e6);
                        pl_acked(pl, b);
                        pl_pop(pl);
                        b = pl_slot(pl, pl->oldest);
                }
                if (pl->oldest < pl->seq && pl_done(b) && b->failed)
                        break;
                if (sg_pipeline_inflight(pl) < pl->depth || sg_stop)
                        return 0;
                rd_kafka_poll(pl->p->rk, 100);
        }
        /* The oldest batch failed: all in flight are consumed again, once
         * their reports are in (so that none lands in a reused slot late:
         * a report after 60 s is ignored). */
        pl_wait_all(pl, 60000);
        batches = sg_pipeline_inflight(pl);
        l = rd_kafka_topic_partition_list_new(16);
        for (int64_t s = pl->oldest; s < pl->seq; s++) {
                pl_batch_t *o = pl_slot(pl, s);

                for (int i = 0; i < o->first->cnt; i++)
                        if (!rd_kafka_topic_partition_list_find(
                                l, o->first->elems[i].topic,
                                o->first->elems[i].partition))
                                rd_kafka_topic_partition_list_add(
                                    l, o->first->elems[i].topic,
                                    o->first->elems[i].partition)
                                    ->offset = o->first->elems[i].offset;
                records += o->records;
                failed += o->failed;
        }
        sg_warn("event=batch_retry batches=%lld records=%lld failed=%lld",
                (long long)batches, (long long)records, (long long)failed);
        seek_list(pl->c, l);
        rd_kafka_topic_partition_list_destroy(l);
        while (pl->oldest < pl->seq)
                pl_pop(pl);
        return -1;
}

int sg_pipeline_drain(sg_pipeline_t *pl, int timeout_ms)
{
        rd_kafka_topic_partition_list_t *l;
        int left;

        if (pl->oldest == pl->seq)
                return 0;
        pl_wait_all(pl, timeout_ms);
        l = rd_kafka_topic_partition_list_new(16);
        while (pl->oldest < pl->seq) {
                pl_batch_t *b = pl_slot(pl, pl->oldest);

                if (!pl_done(b) || b->failed)
                        break;
                /* Later batches hold later offsets. */
                for (int i = 0; i < b->next->cnt; i++) {
                        rd_kafka_topic_partition_t *tp =
                            rd_kafka_topic_partition_list_find(
                                l, b->next->elems[i].topic,
                                b->next->elems[i].partition);

                        if (!tp)
                                tp = rd_kafka_topic_partition_list_add(
                                    l, b->next->elems[i].topic,
                                    b->next->elems[i].partition);
                        tp->offset = b->next->elems[i].offset;
                }
                pl_acked(pl, b);
                pl_pop(pl);
        }
        left = sg_pipeline_inflight(pl);
        if (l->cnt) {
                /* Stopping, the commit goes out asynchronously: a
                 * synchronous one waits as long as the coordinator is
                 * away; the consumer's close waits for it, bounded. */
                rd_kafka_resp_err_t err =
                    rd_kafka_commit(pl->c->rk, l, sg_stop ? 1 : 0);

                if (err)
                        sg_warn("event=commit_failed err=%s",
                                rd_kafka_err2name(err));
        }
        rd_kafka_topic_partition_list_destroy(l);
        if (left)
                sg_warn("event=batches_not_committed batches=%d", left);
        while (pl->oldest < pl->seq)
                pl_pop(pl);
        return left;
}
