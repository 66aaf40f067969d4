/*
 * The sg-rules batch loop: decode snapshots, evaluate the rules, produce
 * decisions, and only once Kafka has acknowledged them write the breaker
 * states to Redis and commit the input. A crash anywhere in between redoes
 * the batch and re-emits the same decision ids, which the sink dedupes.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "log.h"
#include "metrics.h"
#include "stage.h"

#define BATCH_MAX        1000
#define FLUSH_TIMEOUT_MS 30000
#define RETRY_PAUSE_MS   1000
#define ALERT_CACHE      4096 /* power of two */
#define ID_LEN           33

/* One channel's circuit breaker as cached from / written to Redis. */
typedef struct breaker {
        char channel[SG_NAME_LEN]; /* "" = free slot */
        int open;
        char rule[SG_NAME_LEN];
        int64_t since;
        char decision_id[ID_LEN];
} breaker_t;

/* A decision of the batch in hand: its effect on the cache waits for the
 * acknowledgement, so that a redone batch decides the same again. */
typedef struct pending {
        sg_action_t action;
        char channel[SG_NAME_LEN];
        char rule[SG_NAME_LEN];
        int64_t since;
        char decision_id[ID_LEN];
} pending_t;

struct sg_rules_engine {
        const sg_conf_t *conf;
        sg_rules_t *rules;
        sg_codec_t *codec;
        sg_redis_t *redis;
        sg_producer_t *producer;

        breaker_t *breakers; /* open addressing, cap a power of two */
        size_t breaker_cap, breaker_cnt;
        int breakers_stale; /* reload before the next batch */
        int assigned_once;

        pending_t *pending;
        int pending_cnt, pending_cap;
        int batch_failed; /* a produce failed: redo the batch */

        /* Recently emitted ALERT ids, direct-mapped: a miss only means the
         * sink dedupes instead. */
        char (*alerts)[ID_LEN];

        rd_kafka_message_t *msgs[BATCH_MAX];
        sg_snapshot_t snap;
        sg_decision_t decision;
        unsigned char buf[16384];

        /* events_total{type="snapshot",result=...} */
        sg_counter_t *c_evaluated, *c_skipped, *c_undecodable;
        sg_histogram_t *batch_seconds;
};

/* ---------------------------------------------------------------- metrics */

/* breaker_state{channel}: 0 closed, 1 open (2 half-open, once it exists). */
static void breaker_gauge(const char *channel, int state)
{
        char name[SG_METRICS_NAME_LEN];

        if (sg_metrics_name(name, sizeof(name), "breaker_state", "channel",
                            channel, NULL) == 0)
                sg_gauge_set(sg_gauge(name), state);
}

/*
 * channel_{spend_micros,cpa_micros,roas,ivt_rate}{channel}: the KPIs of the
 * last complete rolling window rules judged, for dashboards. Configured
 * channels only, so the series stay bounded; a ratio without a denominator
 * is hidden rather than shown as 0.
 */
static void channel_gauges(const sg_snapshot_t *s)
{
        static const char *const fam[4] = {"channel_spend_micros",
                                           "channel_cpa_micros", "channel_roas",
                                           "channel_ivt_rate"};
        double v[4];
        int have[4];
        char name[SG_METRICS_NAME_LEN];

        v[0] = (double)s->c.spend_micros;
        have[0] = 1;
        have[1] = sg_counters_cpa(&s->c, &v[1]);
        have[2] = sg_counters_roas(&s->c, &v[2]);
        have[3] = sg_counters_ivt_rate(&s->c, &v[3]);
        for (int i = 0; i < 4; i++) {
                sg_gauge_t *g;

                if (sg_metrics_name(name, sizeof(name), fam[i], "channel",
                                    s->channel, NULL) == -1)
                        continue;
                g = sg_gauge(name);
                if (have[i])
                        sg_gauge_set(g, v[i]);
                else
                        sg_gauge_hide(g);
        }
}

/* decisions_total{action,rule}, counted once the decision is committed. */
static void decision_count(sg_action_t action, const char *rule)
{
        char name[SG_METRICS_NAME_LEN];

        if (sg_metrics_name(name, sizeof(name), "decisions_total", "action",
                            sg_action_name(action), "rule", rule, NULL) == 0)
                sg_counter_add(sg_counter(name), 1);
}

/* ---------------------------------------------------------- breaker cache */

static uint64_t hash_str(const char *s)
{
        uint64_t h = 0xcbf29ce484222325ULL;

        for (; *s; s++) {
                h ^= (unsigned char)*s;
                h *= 0x100000001b3ULL;
        }
        return h;
}

static breaker_t *breaker_find(sg_rules_engine_t *e, const char *channel)
{
        size_t mask = e->breaker_cap - 1;

        for (size_t i = hash_str(channel) & mask;; i = (i + 1) & mask) {
                breaker_t *b = &e->breakers[i];

                if (b->channel[0] == '\0')
                        return NULL;
                if (strcmp(b->channel, channel) == 0)
                        return b;
        }
}

/* The slot of channel, created (closed) if new; NULL when out of memory.
 * Allocates only when a channel is seen for the first time. */
static breaker_t *breaker_put(sg_rules_engine_t *e, const char *channel)
{
        breaker_t *b = breaker_find(e, channel);
        size_t mask;

        if (b)
                return b;
        if ((e->breaker_cnt + 1) * 4 > e->breaker_cap * 3) {
                breaker_t *old = e->breakers;
                size_t old_cap = e->breaker_cap;
                breaker_t *nb = calloc(old_cap * 2, sizeof(*nb));

                if (!nb)
                        return NULL;
                e->breakers = nb;
                e->breaker_cap = old_cap * 2;
                e->breaker_cnt = 0;
                for (size_t i = 0; i < old_cap; i++)
                        if (old[i].channel[0])
                                *breaker_put(e, old[i].channel) = old[i];
                free(old);
        }
        mask = e->breaker_cap - 1;
        for (size_t i = hash_str(channel) & mask;; i = (i + 1) & mask) {
                b = &e->breakers[i];
                if (b->channel[0] == '\0')
                        break;
        }
        memset(b, 0, sizeof(*b));
        snprintf(b->channel, sizeof(b->channel), "%s", channel);
        e->breaker_cnt++;
        return b;
}

static void str_field(char *dst, size_t size, const redisReply *v)
{
        snprintf(dst, size, "%.*s", (int)v->len, v->str ? v->str : "");
}

/* Fills b from an HGETALL reply (field, value, ...). */
static void breaker_parse(breaker_t *b, const redisReply *h)
{
        for (size_t i = 0; i + 1 < h->elements; i += 2) {
                const redisReply *k = h->element[i], *v = h->element[i + 1];

                if (k->type != REDIS_REPLY_STRING ||
                    v->type != REDIS_REPLY_STRING)
                        continue;
                if (strcmp(k->str, "state") == 0)
                        b->open = strcmp(v->str, "open") == 0;
                else if (strcmp(k->str, "rule") == 0)
                        str_field(b->rule, sizeof(b->rule), v);
                else if (strcmp(k->str, "since") == 0)
                        b->since = strtoll(v->str, NULL, 10);
                else if (strcmp(k->str, "decision_id") == 0)
                        str_field(b->decision_id, sizeof(b->decision_id), v);
        }
}

/* One page of SCAN keys: HGETALL of each, pipelined. 0, or -1 on an I/O
 * error (the caller reconnects and starts over). */
static int breakers_load_page(sg_rules_engine_t *e, const redisReply *keys)
{
        static const char prefix[] = "sg:breaker:";
        size_t sent = 0;

        for (size_t i = 0; i < keys->elements; i++) {
                const char *argv[2] = {"HGETALL", keys->element[i]->str};
                size_t argvlen[2] = {7, (size_t)keys->element[i]->len};

                if (sg_redis_append_argv(e->redis, 2, argv, argvlen))
                        return -1;
                sent++;
        }
        for (size_t i = 0; i < sent; i++) {
                const char *key = keys->element[i]->str;
                redisReply *h = sg_redis_pipeline_get(e->redis);
                breaker_t *b;

                if (!h)
                        return -1;
                if (h->type == REDIS_REPLY_ARRAY && h->elements &&
                    strncmp(key, prefix, sizeof(prefix) - 1) == 0 &&
                    strlen(key + sizeof(prefix) - 1) < SG_NAME_LEN) {
                        b = breaker_put(e, key + sizeof(prefix) - 1);
                        if (b)
                                breaker_parse(b, h);
                }
                freeReplyObject(h);
        }
        return 0;
}

/* Replaces the cache with Redis' sg:breaker:* in one SCAN pass. -1 only
 * if stopped while Redis is unreachable. */
static int breakers_load(sg_rules_engine_t *e)
{
        char cursor[32];
        size_t open = 0;

        /* A breaker Redis no longer holds is closed. */
        for (size_t i = 0; i < e->breaker_cap; i++)
                if (e->breakers[i].channel[0] && e->breakers[i].open)
                        breaker_gauge(e->breakers[i].channel, 0);
restart:
        memset(e->breakers, 0, e->breaker_cap * sizeof(*e->breakers));
        e->breaker_cnt = 0;
        strcpy(cursor, "0");
        do {
                redisReply *r = sg_redis_command(
                    e->redis, "SCAN %s MATCH sg:breaker:* COUNT 1000", cursor);
                int rc;

                if (!r)
                        return -1;
                if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
                    r->element[0]->type != REDIS_REPLY_STRING ||
                    r->element[1]->type != REDIS_REPLY_ARRAY) {
                        sg_error("event=breaker_load_failed err=%s",
                                 r->type == REDIS_REPLY_ERROR
                                     ? r->str
                                     : "unexpected SCAN reply");
                        freeReplyObject(r);
                        sg_sleep_ms(RETRY_PAUSE_MS);
                        if (sg_stop)
                                return -1;
                        goto restart;
                }
                str_field(cursor, sizeof(cursor), r->element[0]);
                rc = breakers_load_page(e, r->element[1]);
                freeReplyObject(r);
                if (rc == -1) {
                        if (sg_redis_reconnect(e->redis) == -1)
                                return -1;
                        goto restart;
                }
        } while (strcmp(cursor, "0") != 0);
        for (size_t i = 0; i < e->breaker_cap; i++) {
                if (!e->breakers[i].channel[0])
                        continue;
                breaker_gauge(e->breakers[i].channel, e->breakers[i].open);
                if (e->breakers[i].open)
                        open++;
        }
        sg_info("event=breakers_loaded channels=%zu open=%zu", e->breaker_cnt,
                open);
        return 0;
}

/* HSET of every breaker the batch opened, pipelined: one round trip. */
static int breakers_write(sg_rules_engine_t *e)
{
        for (;;) {
                int sent = 0, ok = 1;

                for (int i = 0; i < e->pending_cnt; i++) {
                        const pending_t *p = &e->pending[i];
                        char key[SG_NAME_LEN + 16], since[24];
                        const char *argv[10] = {
                            "HSET",        key,           "state", "open",
                            "rule",        p->rule,       "since", since,
                            "decision_id", p->decision_id};

                        if (p->action != SG_ACT_PAUSE)
                                continue;
                        snprintf(key, sizeof(key), "sg:breaker:%s", p->channel);
                        snprintf(since, sizeof(since), "%" PRId64, p->since);
                        if (sg_redis_append_argv(e->redis, 10, argv, NULL)) {
                                ok = 0;
                                break;
                        }
                        sent++;
                }
                for (int i = 0; ok && i < sent; i++) {
                        redisReply *r = sg_redis_pipeline_get(e->redis);

                        if (!r) {
                                ok = 0;
                                break;
                        }
                        if (r->type == REDIS_REPLY_ERROR)
                                sg_error("event=breaker_write_failed err=%s",
                                         r->str);
                        freeReplyObject(r);
                }
                if (ok)
                        return 0;
                if (sg_redis_reconnect(e->redis) == -1)
                        return -1;
        }
}

/* ------------------------------------------------------------- evaluation */

static int breaker_open(sg_rules_engine_t *e, const char *channel)
{
        breaker_t *b;

        for (int i = 0; i < e->pending_cnt; i++)
                if (e->pending[i].action == SG_ACT_PAUSE &&
                    strcmp(e->pending[i].channel, channel) == 0)
                        return 1;
        b = breaker_find(e, channel);
        return b && b->open;
}

static size_t alert_slot(const char *id)
{
        char head[9];

        memcpy(head, id, 8);
        head[8] = '\0';
        return strtoul(head, NULL, 16) & (ALERT_CACHE - 1);
}

static int alert_seen(sg_rules_engine_t *e, const char *id)
{
        for (int i = 0; i < e->pending_cnt; i++)
                if (e->pending[i].action == SG_ACT_ALERT &&
                    strcmp(e->pending[i].decision_id, id) == 0)
                        return 1;
        return strcmp(e->alerts[alert_slot(id)], id) == 0;
}

static int pending_add(sg_rules_engine_t *e, const sg_decision_t *d)
{
        pending_t *p;

        if (e->pending_cnt == e->pending_cap) {
                int cap = e->pending_cap * 2;
                pending_t *np = realloc(e->pending, (size_t)cap * sizeof(*np));

                if (!np)
                        return -1;
                e->pending = np;
                e->pending_cap = cap;
        }
        p = &e->pending[e->pending_cnt++];
        p->action = d->action;
        snprintf(p->channel, sizeof(p->channel), "%s", d->channel);
        snprintf(p->rule, sizeof(p->rule), "%s", d->rule_id);
        p->since = d->decided_at;
        snprintf(p->decision_id, sizeof(p->decision_id), "%.32s",
                 d->decision_id);
        return 0;
}

/* The batch is acknowledged and written: the cache may now follow. */
static void pending_apply(sg_rules_engine_t *e)
{
        for (int i = 0; i < e->pending_cnt; i++) {
                const pending_t *p = &e->pending[i];
                breaker_t *b;

                decision_count(p->action, p->rule);
                if (p->action == SG_ACT_ALERT) {
                        strcpy(e->alerts[alert_slot(p->decision_id)],
                               p->decision_id);
                        continue;
                }
                b = breaker_put(e, p->channel);
                if (!b) {
                        /* Redis has it; the next reload will too. */
                        sg_error("event=out_of_memory what=breaker_cache");
                        continue;
                }
                b->open = 1;
                breaker_gauge(p->channel, 1);
                snprintf(b->rule, sizeof(b->rule), "%s", p->rule);
                b->since = p->since;
                snprintf(b->decision_id, sizeof(b->decision_id), "%s",
                         p->decision_id);
        }
        e->pending_cnt = 0;
}

static void deadletter(sg_rules_engine_t *e, const rd_kafka_message_t *m,
                       const char *reason, const char *detail)
{
        if (sg_producer_deadletter(e->producer, e->conf->topics.deadletter, m,
                                   reason, detail))
                e->batch_failed = 1;
}

static void emit(sg_rules_engine_t *e, const sg_decision_t *d)
{
        int n = sg_codec_encode_decision(e->codec, SG_FMT_AVRO, d, e->buf,
                                         sizeof(e->buf));
        char q[1024];

        if (n < 0) {
                /* A bug, not an input problem: say so loudly, carry on. */
                sg_error("event=decision_encode_failed id=%s rule=%s "
                         "channel=%s err=%s",
                         d->decision_id, d->rule_id, d->channel,
                         sg_log_quote(q, sizeof(q), sg_codec_error(e->codec)));
                return;
        }
        if (sg_producer_send(e->producer, e->conf->topics.decisions,
                             RD_KAFKA_PARTITION_UA, d->channel,
                             strlen(d->channel), e->buf, (size_t)n, NULL) ||
            pending_add(e, d)) {
                e->batch_failed = 1;
                return;
        }
        sg_info("event=decision id=%s action=%s channel=%s rule=%s "
                "window_end=%" PRId64 " reason=%s",
                d->decision_id, sg_action_name(d->action), d->channel,
                d->rule_id, d->window_end,
                sg_log_quote(q, sizeof(q), d->reason));
}

static void process(sg_rules_engine_t *e, const rd_kafka_message_t *m)
{
        sg_snapshot_t *s = &e->snap;

        if (sg_codec_decode_snapshot(e->codec, m->payload, m->len, s) == -1) {
                sg_counter_add(e->c_undecodable, 1);
                deadletter(e, m, SG_ERR_AVRO_DECODE, sg_codec_error(e->codec));
                return;
        }
        /* Closed windows are KPI rows for the sink; the rolling windows
         * are what rules watch. */
        if (s->final) {
                sg_counter_add(e->c_skipped, 1);
                return;
        }
        sg_counter_add(e->c_evaluated, 1);
        if (s->campaign_id[0] == '\0' && sg_conf_channel(e->conf, s->channel))
                channel_gauges(s);
        for (int i = 0; i < e->rules->cnt; i++) {
                const sg_rule_t *r = &e->rules->rule[i];
                sg_rule_eval_t ev;
                char id[ID_LEN];

                if (sg_rule_eval(r, s, sg_rule_target(r, e->conf, s->channel),
                                 &ev) != SG_RULE_TRIPPED)
                        continue;
                if (r->action == SG_ACT_PAUSE) {
                        /* Open already: nothing until RESUME exists. */
                        if (breaker_open(e, s->channel))
                                continue;
                } else {
                        sg_decision_id(r->id, r->action, s->channel,
                                       s->campaign_id, s->window_start,
                                       s->window_end, id);
                        if (alert_seen(e, id))
                                continue;
                }
                sg_rule_decision(r, s, &ev, &e->decision);
                emit(e, &e->decision);
        }
}

/* --------------------------------------------------------------- the loop */

static void rules_reload(sg_rules_engine_t *e)
{
        char err[512], q[600];
        sg_rules_t *nr =
            sg_rules_load_file(e->conf->rules.file, err, sizeof(err));

        if (!nr) {
                sg_warn("event=rules_reload_failed file=%s err=%s "
                        "msg=\"keeping the previous rules\"",
                        e->conf->rules.file, sg_log_quote(q, sizeof(q), err));
                return;
        }
        sg_rules_destroy(e->rules);
        e->rules = nr;
        sg_info("event=rules_reloaded file=%s rules=%d", e->conf->rules.file,
                nr->cnt);
}

/* Waits for the batch's acknowledgements: 0 all delivered, else failed. */
static int flush(sg_rules_engine_t *e)
{
        int rc = sg_producer_flush(e->producer, FLUSH_TIMEOUT_MS);

        while (rc == -1 && !sg_stop) {
                sg_warn("event=flush_slow waited_ms=%d msg=\"still waiting "
                        "for the broker\"",
                        FLUSH_TIMEOUT_MS);
                rc = sg_producer_flush(e->producer, FLUSH_TIMEOUT_MS);
        }
        return rc;
}

/* 0 done (committed or rewound), -1 the stage must stop. */
static int batch(sg_rules_engine_t *e, sg_consumer_t *consumer, int n)
{
        int rc;

        if (e->breakers_stale) {
                if (breakers_load(e) == -1)
                        return -1;
                e->breakers_stale = 0;
        }
        e->pending_cnt = 0;
        e->batch_failed = 0;
        for (int i = 0; i < n; i++)
                process(e, e->msgs[i]);

        rc = flush(e);
        if (rc == -1)
                return -1; /* stopped, unacknowledged: redo on restart */
        if (rc > 0 || e->batch_failed) {
                sg_warn("event=batch_retry messages=%d failed=%d", n, rc);
                e->pending_cnt = 0;
                if (sg_consumer_rewind(consumer, e->msgs, n) == -1)
                        return -1;
                sg_sleep_ms(RETRY_PAUSE_MS);
                return 0;
        }
        if (breakers_write(e) == -1)
                return -1; /* stopped while Redis is down: no commit */
        pending_apply(e);
        sg_consumer_commit(consumer, e->msgs, n);
        return 0;
}

int sg_rules_engine_run(sg_rules_engine_t *e, sg_consumer_t *consumer)
{
        int64_t last_stats = sg_mono_ms();
        int rc = 0;

        while (!sg_stop) {
                int64_t t0;
                int n;

                if (sg_mono_ms() - last_stats >= 10000) {
                        sg_metrics_log();
                        last_stats = sg_mono_ms();
                }
                if (sg_reload) {
                        sg_reload = 0;
                        rules_reload(e);
                }
                n = sg_consumer_batch(consumer, e->msgs, BATCH_MAX,
                                      e->conf->rules.batch_ms);
                if (n == 0)
                        continue;
                t0 = sg_mono_us();
                rc = batch(e, consumer, n);
                sg_consumer_batch_free(e->msgs, n);
                if (rc == -1)
                        break;
                sg_histogram_observe(e->batch_seconds,
                                     (double)(sg_mono_us() - t0) / 1e6);
        }
        sg_metrics_log();
        /* Stopped while Redis or the broker was away: nothing is lost, the
         * uncommitted batch is redone on restart. */
        return rc == -1 && !sg_stop ? -1 : 0;
}

void sg_rules_engine_on_rebalance(void *opaque, int assign,
                                  rd_kafka_topic_partition_list_t *parts)
{
        sg_rules_engine_t *e = opaque;

        /* Another instance may have opened breakers of the channels we
         * now own; the state loaded at start covers the first one. */
        if (assign) {
                if (e->assigned_once)
                        e->breakers_stale = 1;
                e->assigned_once = 1;
        }
}

sg_rules_engine_t *sg_rules_engine_new(const sg_conf_t *conf, sg_rules_t *rules,
                                       sg_codec_t *codec, sg_redis_t *redis,
                                       sg_producer_t *producer, char *errstr,
                                       size_t errstr_size)
{
        sg_rules_engine_t *e = calloc(1, sizeof(*e));

        if (!e) {
                sg_rules_destroy(rules);
                goto oom;
        }
        e->conf = conf;
        e->rules = rules;
        e->codec = codec;
        e->redis = redis;
        e->producer = producer;
        e->breaker_cap = 64;
        e->breakers = calloc(e->breaker_cap, sizeof(*e->breakers));
        e->pending_cap = 64;
        e->pending = calloc((size_t)e->pending_cap, sizeof(*e->pending));
        e->alerts = calloc(ALERT_CACHE, sizeof(*e->alerts));
        if (!e->breakers || !e->pending || !e->alerts)
                goto oom;
        e->c_evaluated =
            sg_counter("events_total{type=\"snapshot\",result=\"evaluated\"}");
        e->c_skipped =
            sg_counter("events_total{type=\"snapshot\",result=\"skipped\"}");
        e->c_undecodable = sg_counter(
            "events_total{type=\"snapshot\",result=\"undecodable\"}");
        e->batch_seconds =
            sg_histogram("batch_duration_seconds", sg_metrics_batch_buckets,
                         sg_metrics_batch_bucket_cnt);
        /* Every configured channel starts closed unless Redis says open. */
        for (int i = 0; i < conf->channel_cnt; i++)
                breaker_gauge(conf->channels[i].name, 0);
        if (breakers_load(e) == -1) {
                snprintf(errstr, errstr_size,
                         "stopped while loading breaker states from Redis");
                sg_rules_engine_destroy(e);
                return NULL;
        }
        return e;
oom:
        snprintf(errstr, errstr_size, "out of memory");
        sg_rules_engine_destroy(e);
        return NULL;
}

void sg_rules_engine_destroy(sg_rules_engine_t *e)
{
        if (!e)
                return;
        sg_rules_destroy(e->rules);
        free(e->breakers);
        free(e->pending);
        free(e->alerts);
        free(e);
}
