/*
 * The sg-rules batch loop: decode snapshots, evaluate the rules, step the
 * breakers, then write the state and the batch's decisions (the outbox,
 * sg:rules:outbox) to Redis in one MULTI/EXEC, then produce the decisions,
 * and once Kafka has acknowledged them empty the outbox and commit the
 * input.
 *
 * Why state first (the transactional outbox): a decision that depends on
 * budgets is not reproducible on replay (another channel's reallocation,
 * read in another order, changes the budget; review F13). Had the
 * decisions gone out first, a crash before the state write could be
 * followed by a replay that decides otherwise, and the delivered PAUSE
 * would never be matched by a breaker, nor ever RESUMEd. Now a crash
 * before the EXEC leaves nothing written and nothing sent (the replay
 * decides afresh); a crash after it leaves the decisions in the outbox,
 * which the next start sends before anything else (same ids and bytes; the
 * sink dedupes what was sent twice); and the replayed batch meets the
 * state it produced (breaker since, latch since, block until), so it
 * decides nothing twice.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "log.h"
#include "metrics.h"
#include "offsets.h"
#include "stage.h"
#include "state.h"

#define BATCH_MAX        1000
#define FLUSH_TIMEOUT_MS 30000
#define RETRY_PAUSE_MS   1000
#define KEY_LEN          512
#define VAL_LEN          256
#define SWEEP_MIN        4096 /* entries before history is swept */
#define OUTBOX_KEY       "sg:rules:outbox"

/* A decision of the batch in hand, counted once committed. */
typedef struct done {
        sg_action_t action;
        char rule[SG_NAME_LEN];
        int dry_run;
} done_t;

struct sg_rules_engine {
        const sg_conf_t *conf;
        sg_rules_t *rules;
        sg_codec_t *codec;
        sg_redis_t *redis;
        sg_producer_t *producer;

        sg_rstate_t *st;
        int state_stale; /* reload before the next batch */
        int halted;      /* refused a batch: Redis lost its data */
        int assigned_once;
        /* Per channel, the newest window end seen ("%lld"): the event
         * time that the sweep measures the channel's entries against. */
        sg_rstate_t *ends;
        size_t sweep_at; /* state size that triggers the next sweep */

        done_t *done;
        int done_cnt, done_cap;
        int batch_failed; /* out of memory: redo the batch */

        /* The batch's decisions: per decision <u32 key len><key><u32 len>
         * <Avro>, big-endian; the value of sg:rules:outbox. */
        unsigned char *out;
        size_t out_len, out_cap;
        int out_cnt;

        rd_kafka_message_t *msgs[BATCH_MAX];
        sg_snapshot_t snap;
        sg_snapshot_t net; /* snap net of its blocked sources ... */
        int64_t net_clicks; /* ... which had this many clicks */
        sg_decision_t decision;
        unsigned char buf[16384];

        /* events_total{type="snapshot",result=...} */
        sg_counter_t *c_evaluated, *c_skipped, *c_undecodable, *c_running;
        sg_histogram_t *batch_seconds;
};

/* ---------------------------------------------------------------- metrics */

/* breaker_state{channel}: 0 closed, 1 open, 2 half-open. */
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

/* decisions_total{action,rule}, or decisions_shadow_total{action,rule}
 * for a shadow rule's dry runs, counted once the decision is committed. */
static void decision_count(const done_t *d)
{
        char name[SG_METRICS_NAME_LEN];

        if (sg_metrics_name(name, sizeof(name),
                            d->dry_run ? "decisions_shadow_total"
                                       : "decisions_total",
                            "action", sg_action_name(d->action), "rule",
                            d->rule, NULL) == 0)
                sg_counter_add(sg_counter(name), 1);
}

/* ------------------------------------------------------------------ state */

/*
 * Keys of the state map (and fields of the Redis hash sg:rstate); a scope
 * is "<channel>|<campaign_id>":
 *   k|<scope>                      breaker: state since cooldown rule id
 *   x|<rule>|<scope>               a shadow rule's own breaker: the same
 *   l|<rule>|<scope>|<source>      alert latch: on(0/1) since
 *   b|<channel>|<source>           blocked source: until ttl_ms id
 *   y|<rule>|<channel>|<source>    a shadow rule's own block: the same
 *   h|<rule>|<scope>|<source>|<E>  history: held(0/1/u) value
 *   s|<channel>                    realloc stats: E spend revenue
 *   g|<channel>, g|(reserve)       current budgets
 *   a                              the next periodic reallocation (E)
 * Redis values are "<exp> <value>": exp is the event time after which a
 * sweep may drop the entry (0 = never).
 *
 * A shadow rule (docs/rules.md, "Shadow mode") keeps breakers and blocks
 * of its own under x| and y|, which nothing mirrors out of sg:rstate: its
 * dry runs go on as the live rule would, but never open, hold or close a
 * scope's breaker (k|, sg:breaker:*, what bidders and reallocation go by),
 * never block a source (b|, sg:block:*, the pre-bid feed, netted out of
 * ivt_rate) and so never suppress a live rule's decision on the same scope.
 */

/* The breaker key of scope for rule r (NULL: the scope's own). */
static void breaker_key(const sg_rule_t *r, const char *scope, char *key,
                        size_t size)
{
        if (r && r->mode == SG_MODE_SHADOW)
                snprintf(key, size, "x|%s|%s", r->id, scope);
        else
                snprintf(key, size, "k|%s", scope);
}

/* The block key of source in channel for rule r (NULL: the channel's). */
static void block_key(const sg_rule_t *r, const char *channel,
                      const char *source, char *key, size_t size)
{
        if (r && r->mode == SG_MODE_SHADOW)
                snprintf(key, size, "y|%s|%s|%s", r->id, channel, source);
        else
                snprintf(key, size, "b|%s|%s", channel, source);
}

static void scope_of(const sg_snapshot_t *s, char *out, size_t size)
{
        snprintf(out, size, "%s|%s", s->channel, s->campaign_id);
}

static void put(sg_rules_engine_t *e, const char *key, const char *val,
                int64_t exp)
{
        if (sg_rstate_put(e->st, key, val, exp) == -1) {
                sg_error("event=out_of_memory what=rules_state");
                e->batch_failed = 1;
        }
}

/* The breaker at key (breaker_key()); 0 when it has none: closed. */
static int breaker_get(sg_rules_engine_t *e, const char *key, sg_breaker_t *b)
{
        char state[16];
        const char *v;
        long long since, until;
        int n = 0;

        memset(b, 0, sizeof(*b));
        v = sg_rstate_get(e->st, key);
        if (!v)
                return 0;
        if (sscanf(v, "%15s %lld %lld %63s %32s%n", state, &since, &until,
                   b->rule, b->decision_id, &n) < 5)
                return 0;
        b->state = (sg_breaker_state_t)(sg_breaker_state_parse(state) < 0
                                            ? 0
                                            : sg_breaker_state_parse(state));
        b->since = since;
        b->cooldown_until = until;
        return 1;
}

static void breaker_put(sg_rules_engine_t *e, const char *key,
                        const sg_breaker_t *b)
{
        char val[VAL_LEN];

        snprintf(val, sizeof(val), "%s %" PRId64 " %" PRId64 " %s %s",
                 sg_breaker_state_name(b->state), b->since, b->cooldown_until,
                 b->rule[0] ? b->rule : "-",
                 b->decision_id[0] ? b->decision_id : "-");
        put(e, key, val, 0);
}

static int64_t budget_of(sg_rules_engine_t *e, const char *channel)
{
        char key[KEY_LEN];
        const char *v;
        const sg_channel_conf_t *ch;

        snprintf(key, sizeof(key), "g|%s", channel);
        v = sg_rstate_get(e->st, key);
        if (v)
                return strtoll(v, NULL, 10);
        if (strcmp(channel, SG_RESERVE_NAME) == 0)
                return e->conf->rules.reserve_micros;
        ch = sg_conf_channel(e->conf, channel);
        return ch ? ch->budget_micros : 0;
}

/* How far back history is needed: for_windows - 1 or baseline_windows
 * windows, plus one for the sweep's slack. */
static int64_t history_span(const sg_rule_t *r)
{
        int back = r->for_windows - 1 > r->baseline_windows
                       ? r->for_windows - 1
                       : r->baseline_windows;

        return (int64_t)(back + 1) * r->window_ms;
}

static int keeps_history(const sg_rule_t *r)
{
        return r->for_windows > 1 || r->cmp == SG_CMP_BASELINE;
}

static void history_key(char *key, size_t size, const sg_rule_t *r,
                        const char *scope, const char *source, int64_t end)
{
        snprintf(key, size, "h|%s|%s|%s|%" PRId64, r->id, scope, source, end);
}

/*
 * The previous windows of the same length, end - k x window_ms: how many
 * in a row the condition held, and the mean metric of the last
 * baseline_windows (all of them defined, else no baseline).
 */
static void history_ctx(sg_rules_engine_t *e, const sg_rule_t *r,
                        const char *scope, const char *source, int64_t end,
                        sg_rule_ctx_t *ctx)
{
        char key[KEY_LEN];
        double sum = 0;
        int defined = 0, chain = 1;

        for (int k = 1; k <= r->for_windows - 1 || k <= r->baseline_windows;
             k++) {
                const char *v;
                char held = 'u';
                double val = 0;

                history_key(key, sizeof(key), r, scope, source,
                            end - k * r->window_ms);
                v = sg_rstate_get(e->st, key);
                if (v && sscanf(v, "%c %lf", &held, &val) < 1)
                        held = 'u';
                if (chain && k <= r->for_windows - 1 && held == '1')
                        ctx->prior_held++;
                else
                        chain = 0;
                if (k <= r->baseline_windows && v && held != 'u') {
                        sum += val;
                        defined++;
                }
        }
        if (r->cmp == SG_CMP_BASELINE && defined == r->baseline_windows) {
                ctx->has_baseline = 1;
                ctx->baseline = sum / defined;
        }
}

static void history_put(sg_rules_engine_t *e, const sg_rule_t *r,
                        const char *scope, const char *source, int64_t end,
                        const sg_rule_eval_t *ev)
{
        char key[KEY_LEN], val[64];
        int defined = ev->outcome == SG_RULE_HEALTHY ||
                      ev->outcome == SG_RULE_TRIPPED ||
                      ev->outcome == SG_RULE_NO_BASELINE;

        history_key(key, sizeof(key), r, scope, source, end);
        if (defined)
                snprintf(val, sizeof(val), "%c %.17g", ev->held ? '1' : '0',
                         ev->metric);
        else
                snprintf(val, sizeof(val), "u");
        put(e, key, val, end + history_span(r));
}

/* ---------------------------------------------------------- Redis I/O */

typedef struct writer {
        sg_rules_engine_t *e;
        int sent;
} writer_t;

static int append(writer_t *w, int argc, const char **argv)
{
        if (sg_redis_append_argv(w->e->redis, argc, argv, NULL))
                return -1;
        w->sent++;
        return 0;
}

/* One overlay entry: sg:rstate, and the operator-facing mirrors. */
static int write_one(void *opaque, const char *key, const char *val,
                     int64_t exp)
{
        writer_t *w = opaque;
        char field[VAL_LEN + 32], mirror[KEY_LEN + 16];

        if (!val) {
                const char *argv[3] = {"HDEL", "sg:rstate", key};

                return append(w, 3, argv);
        }
        {
                char hv[VAL_LEN + 32];
                const char *argv[4] = {"HSET", "sg:rstate", key, hv};

                /* The expiry the cache has: a load then sweeps the same. */
                snprintf(hv, sizeof(hv), "%" PRId64 " %s", exp, val);
                if (append(w, 4, argv))
                        return -1;
        }
        if (key[0] == 'k') {
                /* sg:breaker:<channel> (channel scope) or
                 * sg:breaker:<channel>|<campaign>: what sg-ctl shows. */
                sg_breaker_t b;
                char state[16], since[24], until[24];
                long long s1 = 0, s2 = 0;
                const char *argv[12] = {
                    "HSET",           mirror, "state",       state,
                    "rule",           b.rule, "since",       since,
                    "cooldown_until", until,  "decision_id", b.decision_id};
                size_t len = strlen(key + 2);

                memset(&b, 0, sizeof(b));
                if (sscanf(val, "%15s %lld %lld %63s %32s", state, &s1, &s2,
                           b.rule, b.decision_id) < 5)
                        return 0;
                snprintf(since, sizeof(since), "%lld", s1);
                snprintf(until, sizeof(until), "%lld", s2);
                if (len && key[2 + len - 1] == '|')
                        len--;
                snprintf(mirror, sizeof(mirror), "sg:breaker:%.*s", (int)len,
                         key + 2);
                return append(w, 12, argv);
        }
        if (key[0] == 'g') {
                const char *argv[4] = {"HSET", "sg:budgets", key + 2, val};

                return append(w, 4, argv);
        }
        if (key[0] == 'b') {
                /* The pre-bid feed: sg:block:<channel>|<source>, for the
                 * rule's TTL of wall-clock time. */
                long long until = 0, ttl = 0;
                char id[40] = "", px[24];
                const char *argv[6] = {"SET", mirror, id, "PX", px, NULL};

                if (sscanf(val, "%lld %lld %39s", &until, &ttl, id) < 3)
                        return 0;
                snprintf(px, sizeof(px), "%lld", ttl > 0 ? ttl : 1);
                snprintf(mirror, sizeof(mirror), "sg:block:%s", key + 2);
                (void)field;
                return append(w, 5, argv);
        }
        return 0;
}

/* The overlay to Redis, pipelined: one round trip. */
static int append_outbox(writer_t *w)
{
        const char *argv[3] = {"SET", OUTBOX_KEY, (const char *)w->e->out};
        size_t len[3] = {3, strlen(OUTBOX_KEY), w->e->out_len};

        if (sg_redis_append_argv(w->e->redis, 3, argv, len))
                return -1;
        w->sent++;
        return 0;
}

/* The batch's offsets (rules/offsets.c): with its state, or not at all. */
static int append_offsets(writer_t *w, int n)
{
        int k = sg_rules_offsets_append(w->e->redis, w->e->msgs, n);

        if (k < 0)
                return -1;
        w->sent += k;
        return 0;
}

/*
 * The overlay, the outbox and the batch's offsets to Redis in one
 * MULTI/EXEC (every batch, also one that changed nothing), pipelined: one
 * round trip, all or nothing. 0, or -1 when stopped. An EXEC that Redis
 * refuses (a command it rejected while queueing) is retried, loudly: going
 * on would send decisions whose state is not stored.
 */
static int state_write(sg_rules_engine_t *e, int n)
{
        for (;;) {
                /* MULTI/EXEC: a crash or a lost connection mid-write leaves
                 * all of it or none (F19d); a redo after a lost EXEC reply
                 * writes the same values again. */
                const char *multi[1] = {"MULTI"}, *exec[1] = {"EXEC"};
                writer_t w = {e, 0};
                int ok = append(&w, 1, multi) == 0 &&
                         sg_rstate_each_pending(e->st, write_one, &w) == 0 &&
                         (e->out_cnt == 0 || append_outbox(&w) == 0) &&
                         append_offsets(&w, n) == 0 &&
                         append(&w, 1, exec) == 0;
                int aborted = 0;

                for (int i = 0; ok && i < w.sent; i++) {
                        redisReply *r = sg_redis_pipeline_get(e->redis);

                        if (!r) {
                                ok = 0;
                                break;
                        }
                        if (i < w.sent - 1) {
                                if (r->type == REDIS_REPLY_ERROR)
                                        sg_error("event=state_write_failed "
                                                 "err=%s",
                                                 r->str);
                        } else if (r->type != REDIS_REPLY_ARRAY) {
                                aborted = 1;
                                sg_error("event=state_write_failed err=%s "
                                         "msg=\"nothing written, retrying\"",
                                         r->type == REDIS_REPLY_ERROR
                                             ? r->str
                                             : "EXEC aborted");
                        } else {
                                for (size_t k = 0; k < r->elements; k++)
                                        if (r->element[k]->type ==
                                            REDIS_REPLY_ERROR)
                                                sg_error("event=state_write_"
                                                         "failed err=%s",
                                                         r->element[k]->str);
                        }
                        freeReplyObject(r);
                }
                if (ok && !aborted)
                        return 0;
                if (ok) {
                        sg_sleep_ms(RETRY_PAUSE_MS);
                        if (sg_stop)
                                return -1;
                        continue;
                }
                if (sg_redis_reconnect(e->redis) == -1)
                        return -1;
        }
}

static void gauges_from_state(sg_rules_engine_t *e)
{
        for (int i = 0; i < e->conf->channel_cnt; i++) {
                char scope[SG_NAME_LEN + 2], key[KEY_LEN];
                sg_breaker_t b;

                snprintf(scope, sizeof(scope), "%s|",
                         e->conf->channels[i].name);
                breaker_key(NULL, scope, key, sizeof(key));
                breaker_get(e, key, &b);
                breaker_gauge(e->conf->channels[i].name, (int)b.state);
        }
}

/* Replaces the state with Redis' sg:rstate (HSCAN). -1 only if stopped
 * while Redis is unreachable. */
static int state_load(sg_rules_engine_t *e)
{
        char cursor[32];
        size_t open = 0;

restart:
        sg_rstate_clear(e->st);
        strcpy(cursor, "0");
        do {
                redisReply *r = sg_redis_command(
                    e->redis, "HSCAN sg:rstate %s COUNT 1000", cursor);

                if (!r)
                        return -1;
                if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
                    r->element[0]->type != REDIS_REPLY_STRING ||
                    r->element[1]->type != REDIS_REPLY_ARRAY) {
                        sg_error("event=state_load_failed err=%s",
                                 r->type == REDIS_REPLY_ERROR
                                     ? r->str
                                     : "unexpected HSCAN reply");
                        freeReplyObject(r);
                        sg_sleep_ms(RETRY_PAUSE_MS);
                        if (sg_stop)
                                return -1;
                        goto restart;
                }
                snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
                for (size_t i = 0; i + 1 < r->element[1]->elements; i += 2) {
                        const redisReply *k = r->element[1]->element[i];
                        const redisReply *v = r->element[1]->element[i + 1];
                        char *rest;
                        long long exp;

                        if (k->type != REDIS_REPLY_STRING ||
                            v->type != REDIS_REPLY_STRING)
                                continue;
                        exp = strtoll(v->str, &rest, 10);
                        if (*rest == ' ')
                                rest++;
                        /* Written with exp 0 before blocks and latches
                         * expired: a block at its end, a latch a day after
                         * it was set. */
                        if (exp == 0 && k->str[0] == 'b') {
                                exp = strtoll(rest, NULL, 10);
                        } else if (exp == 0 && k->str[0] == 'l') {
                                long long on, since;

                                if (sscanf(rest, "%lld %lld", &on, &since) ==
                                    2)
                                        exp = since + 86400000LL;
                        }
                        if (sg_rstate_put_committed(e->st, k->str, rest, exp) ==
                            -1) {
                                freeReplyObject(r);
                                sg_error("event=out_of_memory "
                                         "what=rules_state");
                                return -1;
                        }
                        if (k->str[0] == 'k' && strncmp(rest, "open", 4) == 0)
                                open++;
                }
                freeReplyObject(r);
        } while (strcmp(cursor, "0") != 0);
        gauges_from_state(e);
        e->sweep_at = sg_rstate_size(e->st) * 2 + SWEEP_MIN;
        sg_info("event=state_loaded entries=%zu open_breakers=%zu",
                sg_rstate_size(e->st), open);
        return 0;
}

/* ------------------------------------------------------------- decisions */

static void deadletter(sg_rules_engine_t *e, const rd_kafka_message_t *m,
                       const char *reason, const char *detail)
{
        if (sg_producer_deadletter(e->producer, e->conf->topics.deadletter, m,
                                   reason, detail))
                e->batch_failed = 1;
}

/* ---------------------------------------------------------- the outbox */

static void put_u32(unsigned char *p, uint32_t v)
{
        p[0] = (unsigned char)(v >> 24);
        p[1] = (unsigned char)(v >> 16);
        p[2] = (unsigned char)(v >> 8);
        p[3] = (unsigned char)v;
}

static uint32_t get_u32(const unsigned char *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
               (uint32_t)p[2] << 8 | p[3];
}

static int outbox_add(sg_rules_engine_t *e, const char *key, const void *val,
                      size_t len)
{
        size_t klen = strlen(key), need = e->out_len + 8 + klen + len;

        if (need > e->out_cap) {
                size_t cap = e->out_cap ? e->out_cap : 4096;
                unsigned char *n;

                while (cap < need)
                        cap *= 2;
                if (!(n = realloc(e->out, cap)))
                        return -1;
                e->out = n;
                e->out_cap = cap;
        }
        put_u32(e->out + e->out_len, (uint32_t)klen);
        memcpy(e->out + e->out_len + 4, key, klen);
        put_u32(e->out + e->out_len + 4 + klen, (uint32_t)len);
        memcpy(e->out + e->out_len + 8 + klen, val, len);
        e->out_len = need;
        e->out_cnt++;
        return 0;
}

/* Waits for the acknowledgements: 0 all delivered, -1 stopped, else how
 * many failed. */
static int flush(sg_rules_engine_t *e);

/*
 * Sends the outbox to topics.decisions until all of it is acknowledged
 * (the state that goes with it is in Redis already: there is no going
 * back). 0, or -1 when stopped (the outbox stays in Redis for the next
 * start).
 */
static int outbox_deliver(sg_rules_engine_t *e)
{
        for (;;) {
                int rc, sent = 0;

                for (size_t at = 0; at + 8 <= e->out_len;) {
                        uint32_t klen = get_u32(e->out + at), len;

                        if (at + 8 + klen > e->out_len)
                                break;
                        len = get_u32(e->out + at + 4 + klen);
                        if (at + 8 + klen + len > e->out_len)
                                break;
                        if (sg_producer_send(e->producer,
                                             e->conf->topics.decisions,
                                             RD_KAFKA_PARTITION_UA,
                                             e->out + at + 4, klen,
                                             e->out + at + 8 + klen, len,
                                             NULL) == 0)
                                sent++;
                        at += 8 + klen + len;
                }
                rc = flush(e);
                if (rc == -1)
                        return -1;
                if (rc == 0 && sent == e->out_cnt)
                        return 0;
                sg_warn("event=outbox_retry decisions=%d failed=%d", e->out_cnt,
                        rc > 0 ? rc : e->out_cnt - sent);
                sg_sleep_ms(RETRY_PAUSE_MS);
                if (sg_stop)
                        return -1;
        }
}

/* DEL sg:rules:outbox once delivered. 0, or -1 when stopped. */
static int outbox_clear(sg_rules_engine_t *e)
{
        redisReply *r = sg_redis_command(e->redis, "DEL %s", OUTBOX_KEY);

        if (!r)
                return -1;
        freeReplyObject(r);
        e->out_len = 0;
        e->out_cnt = 0;
        return 0;
}

/*
 * At start: decisions a crashed predecessor stored with their state but
 * may not have delivered are sent first. 0, or -1 when stopped.
 */
static int outbox_recover(sg_rules_engine_t *e)
{
        redisReply *r = sg_redis_command(e->redis, "GET %s", OUTBOX_KEY);
        int rc = 0;

        if (!r)
                return -1;
        e->out_len = 0;
        e->out_cnt = 0;
        if (r->type == REDIS_REPLY_STRING && r->len > 0) {
                for (size_t at = 0; at + 8 <= r->len;) {
                        const unsigned char *p = (const unsigned char *)r->str;
                        uint32_t klen = get_u32(p + at), len;
                        char key[SG_NAME_LEN];

                        if (at + 8 + klen > r->len || klen >= sizeof(key))
                                break;
                        len = get_u32(p + at + 4 + klen);
                        if (at + 8 + klen + len > r->len)
                                break;
                        memcpy(key, p + at + 4, klen);
                        key[klen] = '\0';
                        if (outbox_add(e, key, p + at + 8 + klen, len) == -1) {
                                rc = -1;
                                break;
                        }
                        at += 8 + klen + len;
                }
        }
        freeReplyObject(r);
        if (rc == -1 || e->out_cnt == 0)
                return rc;
        sg_info("event=outbox_redeliver decisions=%d msg=\"stored with their "
                "state before the last stop, maybe not delivered\"",
                e->out_cnt);
        if (outbox_deliver(e) == -1)
                return -1;
        return outbox_clear(e);
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
        if (e->done_cnt == e->done_cap) {
                int cap = e->done_cap * 2;
                done_t *nd = realloc(e->done, (size_t)cap * sizeof(*nd));

                if (!nd) {
                        e->batch_failed = 1;
                        return;
                }
                e->done = nd;
                e->done_cap = cap;
        }
        if (outbox_add(e, d->channel, e->buf, (size_t)n) == -1) {
                sg_error("event=out_of_memory what=rules_outbox");
                e->batch_failed = 1;
                return;
        }
        e->done[e->done_cnt].action = d->action;
        snprintf(e->done[e->done_cnt].rule, sizeof(e->done[0].rule), "%s",
                 d->rule_id);
        e->done[e->done_cnt].dry_run = d->dry_run;
        e->done_cnt++;
        sg_info("event=decision id=%s action=%s channel=%s campaign=%s "
                "source=%s rule=%s dry_run=%d window_end=%" PRId64
                " reason=%s",
                d->decision_id, sg_action_name(d->action), d->channel,
                d->campaign_id[0] ? d->campaign_id : "-",
                d->source[0] ? d->source : "-", d->rule_id, d->dry_run ? 1 : 0,
                d->window_end, sg_log_quote(q, sizeof(q), d->reason));
}

/* --------------------------------------------------------- reallocation */

/* Runs one reallocation step at event time end; emits it if money moved. */
static void reallocate(sg_rules_engine_t *e, const char *trigger, int64_t end)
{
        const sg_realloc_policy_t *p = &e->rules->realloc;
        sg_realloc_channel_t ch[SG_DECISION_MAX_BUDGETS - 1];
        int64_t before[SG_DECISION_MAX_BUDGETS - 1], reserve, reserve0;
        int n = 0;

        for (int i = 0;
             i < e->conf->channel_cnt && n < (int)(sizeof(ch) / sizeof(ch[0]));
             i++) {
                const sg_channel_conf_t *c = &e->conf->channels[i];
                char key[KEY_LEN], scope[SG_NAME_LEN + 2];
                const char *v;
                sg_breaker_t b;
                long long at, spend, revenue;

                memset(&ch[n], 0, sizeof(ch[n]));
                snprintf(ch[n].name, sizeof(ch[n].name), "%s", c->name);
                ch[n].budget = before[n] = budget_of(e, c->name);
                ch[n].floor = c->floor_micros;
                ch[n].cap = c->cap_micros;
                snprintf(scope, sizeof(scope), "%s|", c->name);
                breaker_key(NULL, scope, key, sizeof(key));
                ch[n].paused =
                    breaker_get(e, key, &b) && b.state != SG_BREAKER_CLOSED;
                snprintf(key, sizeof(key), "s|%s", c->name);
                v = sg_rstate_get(e->st, key);
                if (v &&
                    sscanf(v, "%lld %lld %lld", &at, &spend, &revenue) == 3 &&
                    spend > 0 && spend >= p->min_spend_micros) {
                        ch[n].has_roas = 1;
                        ch[n].roas = (double)revenue / (double)spend;
                }
                n++;
        }
        reserve = reserve0 = budget_of(e, SG_RESERVE_NAME);
        if (sg_realloc_step(p, ch, n, &reserve) <= 0)
                return;
        sg_realloc_decision(p, ch, before, n, reserve0, reserve, trigger,
                            end - sg_window_ms(p->window), end, &e->decision);
        for (int i = 0; i < n; i++) {
                char key[KEY_LEN], val[32];

                if (ch[i].budget == before[i])
                        continue;
                snprintf(key, sizeof(key), "g|%.63s", ch[i].name);
                snprintf(val, sizeof(val), "%" PRId64, ch[i].budget);
                put(e, key, val, 0);
        }
        {
                char val[32];

                snprintf(val, sizeof(val), "%" PRId64, reserve);
                put(e, "g|" SG_RESERVE_NAME, val, 0);
        }
        emit(e, &e->decision);
}

/* ------------------------------------------------------------ evaluation */

static void rule_ctx(sg_rules_engine_t *e, const sg_rule_t *r,
                     const sg_snapshot_t *s, sg_rule_ctx_t *ctx)
{
        memset(ctx, 0, sizeof(*ctx));
        ctx->target = sg_rule_target(r, e->conf, s->channel);
        ctx->budget_micros = budget_of(e, s->channel);
}

/*
 * How long an alert latch outlives the last window that evaluated it, in
 * event time: two rule windows, at least an hour (aggregate sends
 * snapshots of changed scopes only, so a quiet scope is not evaluated). A
 * scope not evaluated that long (a campaign gone, a rule removed) is
 * forgotten, and alerts again if it comes back still tripped.
 */
#define LATCH_HOLD_MIN_MS 3600000

static int64_t latch_hold(const sg_rule_t *r)
{
        return 2 * r->window_ms > LATCH_HOLD_MIN_MS ? 2 * r->window_ms
                                                     : LATCH_HOLD_MIN_MS;
}

/* ALERT: once when the condition starts, again only after it cleared. */
static void alert(sg_rules_engine_t *e, const sg_rule_t *r,
                  const sg_snapshot_t *s, const char *scope,
                  const sg_rule_eval_t *ev)
{
        char key[KEY_LEN], val[48];
        const char *v;
        int on = 0;
        long long since = 0;

        snprintf(key, sizeof(key), "l|%s|%s|%s", r->id, scope,
                 ev->source ? ev->source->source : "");
        v = sg_rstate_get(e->st, key);
        if (v)
                sscanf(v, "%d %lld", &on, &since);
        if (s->window_end <= since)
                return; /* seen already */
        if (ev->outcome == SG_RULE_TRIPPED && !on) {
                sg_rule_decision(r, SG_ACT_ALERT, s, ev, &e->decision);
                emit(e, &e->decision);
                snprintf(val, sizeof(val), "1 %" PRId64, s->window_end);
                put(e, key, val, s->window_end + latch_hold(r));
        } else if (ev->outcome == SG_RULE_HEALTHY && !ev->held && on) {
                /* Only a complete window clears: a running one may still
                 * fill up. */
                if (sg_snapshot_running(s))
                        return;
                snprintf(val, sizeof(val), "0 %" PRId64, s->window_end);
                put(e, key, val, s->window_end + latch_hold(r));
        } else if (ev->outcome == SG_RULE_TRIPPED && on &&
                   sg_snapshot_running(s)) {
                /* Still tripped as far as the running windows go: the
                 * complete windows behind them cannot clear it. */
                snprintf(val, sizeof(val), "1 %" PRId64, s->window_end);
                put(e, key, val, s->window_end + latch_hold(r));
        } else if (ev->outcome == SG_RULE_TRIPPED && on &&
                   sg_rstate_exp(e->st, key) - s->window_end < r->window_ms) {
                /* Still tripped: kept while it holds (one write a window
                 * at most), dropped latch_hold after it was last seen. */
                snprintf(val, sizeof(val), "%s", v);
                put(e, key, val, s->window_end + latch_hold(r));
        }
}

/* 1 while source is blocked in s's channel at s's end (in event time):
 * by the channel's blocks (r NULL or live), or by shadow rule r's own; key
 * gets its state key. */
static int blocked(sg_rules_engine_t *e, const sg_rule_t *r,
                   const sg_snapshot_t *s, const char *source, char *key,
                   size_t size)
{
        const char *v;

        block_key(r, s->channel, source, key, size);
        v = sg_rstate_get(e->st, key);
        return v && s->window_end < strtoll(v, NULL, 10);
}

static void block(sg_rules_engine_t *e, const sg_rule_t *r,
                  const sg_snapshot_t *s, const sg_rule_eval_t *ev)
{
        char key[KEY_LEN], val[VAL_LEN];

        if (blocked(e, r, s, ev->source->source, key, sizeof(key)))
                return;
        sg_rule_decision(r, SG_ACT_BLOCK_SOURCE, s, ev, &e->decision);
        snprintf(val, sizeof(val), "%" PRId64 " %" PRId64 " %s",
                 s->window_end + r->ttl_ms, r->ttl_ms, e->decision.decision_id);
        /* Swept once the block has ended in its channel's event time. */
        put(e, key, val, s->window_end + r->ttl_ms);
        emit(e, &e->decision);
}

/* Returns 1 when the breaker of the channel scope opened (a live PAUSE). */
static int breaker(sg_rules_engine_t *e, const sg_rule_t *r,
                   const sg_snapshot_t *s, const char *scope,
                   const sg_rule_ctx_t *ctx, const sg_rule_eval_t *ev)
{
        sg_breaker_t b, b0;
        sg_rule_eval_t rev;
        char key[KEY_LEN];
        int act, resume_ok = 0;

        breaker_key(r, scope, key, sizeof(key));
        breaker_get(e, key, &b);
        /* A running window may open a closed breaker, nothing else:
         * half-open and RESUME are judged on complete windows. */
        if (sg_snapshot_running(s) && b.state != SG_BREAKER_CLOSED)
                return 0;
        b0 = b;
        if (b.state != SG_BREAKER_CLOSED && strcmp(b.rule, r->id) == 0)
                resume_ok = sg_rule_resume_ok(r, s, ctx, &rev);
        act = sg_breaker_step(&b, r, s->window_end, s->window_start,
                              ev->outcome == SG_RULE_TRIPPED, resume_ok);
        if (act == SG_ACT_PAUSE) {
                sg_rule_decision(r, SG_ACT_PAUSE, s, ev, &e->decision);
                snprintf(b.decision_id, sizeof(b.decision_id), "%s",
                         e->decision.decision_id);
                emit(e, &e->decision);
        } else if (act == SG_ACT_RESUME) {
                sg_rule_decision(r, SG_ACT_RESUME, s, &rev, &e->decision);
                snprintf(b.decision_id, sizeof(b.decision_id), "%s",
                         e->decision.decision_id);
                emit(e, &e->decision);
        }
        if (memcmp(&b, &b0, sizeof(b)) != 0)
                breaker_put(e, key, &b);
        return act == SG_ACT_PAUSE && s->campaign_id[0] == '\0' &&
               r->mode == SG_MODE_LIVE;
}

static void evaluate(sg_rules_engine_t *e, const sg_rule_t *r,
                     const sg_snapshot_t *s, const char *scope,
                     const sg_source_count_t *src, int *paused)
{
        sg_rule_ctx_t ctx;
        sg_rule_eval_t ev;
        const char *source = src ? src->source : "";

        rule_ctx(e, r, s, &ctx);
        if (s == &e->net)
                ctx.blocked_clicks = e->net_clicks;
        if (keeps_history(r))
                history_ctx(e, r, scope, source, s->window_end, &ctx);
        if (sg_rule_eval(r, s, src, &ctx, &ev) == SG_RULE_OUT_OF_SCOPE)
                return;
        if (keeps_history(r))
                history_put(e, r, scope, source, s->window_end, &ev);
        switch (r->action) {
        case SG_ACT_PAUSE:
                if (breaker(e, r, s, scope, &ctx, &ev))
                        *paused = 1;
                break;
        case SG_ACT_ALERT:
                alert(e, r, s, scope, &ev);
                break;
        case SG_ACT_BLOCK_SOURCE:
                if (ev.outcome == SG_RULE_TRIPPED)
                        block(e, r, s, &ev);
                break;
        default:
                break;
        }
}

/* The periodic reallocation: every every_ms of event time after the first
 * channel snapshot of the realloc window. */
static void periodic(sg_rules_engine_t *e, const sg_snapshot_t *s)
{
        const sg_realloc_policy_t *p = &e->rules->realloc;
        const char *v = sg_rstate_get(e->st, "a");
        char val[24];
        int64_t next;

        if (!v) {
                snprintf(val, sizeof(val), "%" PRId64,
                         s->window_end + p->every_ms);
                put(e, "a", val, 0);
                return;
        }
        next = strtoll(v, NULL, 10);
        if (s->window_end < next)
                return;
        while (next <= s->window_end)
                next += p->every_ms;
        snprintf(val, sizeof(val), "%" PRId64, next);
        put(e, "a", val, 0);
        reallocate(e, "*", s->window_end);
}

static void channel_end(sg_rules_engine_t *e, const sg_snapshot_t *s);

/*
 * Block before pause: a channel's ivt_rate is judged net of the sources
 * blocked in it (its top sources with a block not ended at the window's
 * end). Their clicks leave both the clicks and the invalid clicks: a
 * blocked source's clicks are taken as invalid (the snapshot does not say
 * which of a source's clicks were tagged). So a flood from a few sources
 * is blocked and the channel keeps running; a wave spread over many
 * sources, none of them blocked, pauses it. Returns s itself when nothing
 * in it is blocked.
 */
static const sg_snapshot_t *net_of_blocked(sg_rules_engine_t *e,
                                           const sg_snapshot_t *s)
{
        char key[KEY_LEN];
        int64_t n = 0;

        for (int k = 0; k < s->top_cnt; k++)
                if (blocked(e, NULL, s, s->top[k].source, key, sizeof(key)))
                        n += s->top[k].clicks;
        if (n == 0)
                return s;
        e->net = *s;
        e->net_clicks = n;
        e->net.c.clicks = s->c.clicks > n ? s->c.clicks - n : 0;
        e->net.c.invalid_clicks =
            s->c.invalid_clicks > n ? s->c.invalid_clicks - n : 0;
        return &e->net;
}

/* Source rules first, so that a source blocked by this very snapshot is
 * already netted out of the channel rules that follow. */
static void evaluate_all(sg_rules_engine_t *e, const sg_snapshot_t *s,
                         const char *scope, int running, int *paused)
{
        const sg_snapshot_t *net;

        for (int i = 0; i < e->rules->cnt; i++) {
                const sg_rule_t *r = &e->rules->rule[i];

                if (r->scope != SG_SCOPE_SOURCE || (running && !r->early))
                        continue;
                for (int k = 0; k < s->top_cnt; k++)
                        evaluate(e, r, s, scope, &s->top[k], paused);
        }
        net = net_of_blocked(e, s);
        for (int i = 0; i < e->rules->cnt; i++) {
                const sg_rule_t *r = &e->rules->rule[i];

                if (r->scope == SG_SCOPE_SOURCE || (running && !r->early))
                        continue;
                evaluate(e, r, r->metric == SG_METRIC_IVT_RATE ? net : s,
                         scope, NULL, paused);
        }
}

static void process(sg_rules_engine_t *e, const rd_kafka_message_t *m)
{
        sg_snapshot_t *s = &e->snap;
        const sg_realloc_policy_t *p = &e->rules->realloc;
        char scope[2 * SG_NAME_LEN + 2];
        int paused = 0, realloc_window, running;

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
        running = sg_snapshot_running(s);
        sg_counter_add(running ? e->c_running : e->c_evaluated, 1);
        channel_end(e, s);
        scope_of(s, scope, sizeof(scope));
        /* Budgets and reallocation go by complete windows. */
        realloc_window =
            !running && p->enabled && s->campaign_id[0] == '\0' &&
            sg_conf_channel(e->conf, s->channel) &&
            (s->window[0] ? strcmp(s->window, p->window) == 0
                          : strcmp(p->window, SG_RULE_WINDOW_DEFAULT) == 0);
        if (!running && s->campaign_id[0] == '\0' &&
            sg_conf_channel(e->conf, s->channel) &&
            (s->window[0] == '\0' ||
             strcmp(s->window, SG_RULE_WINDOW_DEFAULT) == 0))
                channel_gauges(s);
        if (realloc_window) {
                char key[KEY_LEN], val[80];

                snprintf(key, sizeof(key), "s|%s", s->channel);
                snprintf(val, sizeof(val), "%" PRId64 " %" PRId64 " %" PRId64,
                         s->window_end, s->c.spend_micros, s->c.revenue_micros);
                put(e, key, val, 0);
        }
        evaluate_all(e, s, scope, running, &paused);
        if (paused && p->enabled && p->on_pause)
                reallocate(e, s->channel, s->window_end);
        if (realloc_window && p->every_ms > 0)
                periodic(e, s);
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

/* Notes the newest window end of the snapshot's channel. */
static void channel_end(sg_rules_engine_t *e, const sg_snapshot_t *s)
{
        const char *v = sg_rstate_get(e->ends, s->channel);
        char buf[24];

        if (v && strtoll(v, NULL, 10) >= s->window_end)
                return;
        snprintf(buf, sizeof(buf), "%" PRId64, s->window_end);
        if (sg_rstate_put_committed(e->ends, s->channel, buf, 0) == -1)
                sg_error("event=out_of_memory what=rules_channel_ends");
}

/*
 * The event time a key's expiry is measured against: its channel's newest
 * window end (h|rule|channel|..., l|rule|channel|..., y|rule|channel|...,
 * b|channel|...). A channel that lags behind another keeps what it still
 * needs; one not seen since the start sweeps nothing (INT64_MIN).
 */
static int64_t sweep_before(void *opaque, const char *key)
{
        sg_rules_engine_t *e = opaque;
        const char *p = key, *q, *v;
        char channel[SG_NAME_LEN];
        int bars = key[0] == 'b' ? 1 : 2;

        for (int i = 0; i < bars; i++) {
                if (!(p = strchr(p, '|')))
                        return INT64_MIN;
                p++;
        }
        q = strchr(p, '|');
        if (!q || (size_t)(q - p) >= sizeof(channel))
                return INT64_MIN;
        memcpy(channel, p, (size_t)(q - p));
        channel[q - p] = '\0';
        v = sg_rstate_get(e->ends, channel);
        return v ? strtoll(v, NULL, 10) : INT64_MIN;
}

/* Drops what no rule needs any more (history older than any rule looks
 * back, ended blocks, latches not evaluated for two windows), now and then. */
static void sweep(sg_rules_engine_t *e)
{
        size_t n;

        if (sg_rstate_size(e->st) < e->sweep_at)
                return;
        n = sg_rstate_sweep(e->st, sweep_before, e);
        e->sweep_at = (sg_rstate_size(e->st) - n) * 2 + SWEEP_MIN;
        sg_debug("event=state_sweep dropped=%zu", n);
}

/* The batch is acknowledged and written: the cache may now follow. */
static void commit_state(sg_rules_engine_t *e)
{
        int gauges = 0;

        for (int i = 0; i < e->done_cnt; i++) {
                decision_count(&e->done[i]);
                if (!e->done[i].dry_run &&
                    (e->done[i].action == SG_ACT_PAUSE ||
                     e->done[i].action == SG_ACT_RESUME))
                        gauges = 1;
        }
        sg_rstate_commit(e->st);
        if (gauges || e->done_cnt == 0)
                gauges_from_state(e);
}

/*
 * Redis lost the data this stage decides on (sg_redis_epoch_ok): the batch
 * is neither decided nor committed, only consumed again a second later.
 * 1 refused, 0 go on, -1 the stage must stop.
 */
static int refuse_on_lost_data(sg_rules_engine_t *e, sg_consumer_t *consumer,
                               int n)
{
        int ok = sg_redis_epoch_ok(e->redis);

        if (ok == -1)
                return -1;
        if (ok == 1) {
                /* The data is back (restored) or the loss accepted: what
                 * Redis holds now is the state, and its offsets no longer
                 * say what rules wrote. */
                if (e->halted) {
                        e->state_stale = 1;
                        if (sg_rules_offsets_forget(e->redis) == -1)
                                return -1;
                }
                e->halted = 0;
                return 0;
        }
        e->halted = 1;
        sg_warn("event=batch_refused reason=redis_data_lost messages=%d", n);
        if (sg_consumer_rewind(consumer, e->msgs, n) == -1)
                return -1;
        sg_sleep_ms(1000);
        return 1;
}

/* 0 done (committed or rewound), -1 the stage must stop. */
static int batch(sg_rules_engine_t *e, sg_consumer_t *consumer, int n)
{
        int rc;

        rc = refuse_on_lost_data(e, consumer, n);
        if (rc != 0)
                return rc == -1 ? -1 : 0;
        if (e->state_stale) {
                if (state_load(e) == -1)
                        return -1;
                e->state_stale = 0;
        }
        sg_rstate_rollback(e->st);
        e->done_cnt = 0;
        e->batch_failed = 0;
        e->out_len = 0;
        e->out_cnt = 0;
        for (int i = 0; i < n; i++)
                process(e, e->msgs[i]);
        sweep(e);

        /* Dead letters (undecodable snapshots) went out already. */
        rc = flush(e);
        if (rc == -1)
                return -1; /* stopped, unacknowledged: redo on restart */
        if (rc > 0 || e->batch_failed) {
                sg_warn("event=batch_retry messages=%d failed=%d", n, rc);
                sg_rstate_rollback(e->st);
                if (sg_consumer_rewind(consumer, e->msgs, n) == -1)
                        return -1;
                sg_sleep_ms(RETRY_PAUSE_MS);
                return 0;
        }
        /* State and decisions stored together, then the decisions sent. */
        if (state_write(e, n) == -1)
                return -1; /* stopped while Redis is down: no commit */
        if (e->out_cnt &&
            (outbox_deliver(e) == -1 || outbox_clear(e) == -1))
                return -1; /* stopped: the next start sends the outbox */
        commit_state(e);
        sg_consumer_commit(consumer, e->msgs, n);
        return 0;
}

int sg_rules_engine_run(sg_rules_engine_t *e, sg_consumer_t *consumer)
{
        int64_t last_stats = sg_mono_ms(), last_epoch = last_stats;
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
                if (n == 0) {
                        /* A flush without traffic is noticed too. */
                        if (sg_mono_ms() - last_epoch >= 1000) {
                                sg_redis_epoch_ok(e->redis);
                                last_epoch = sg_mono_ms();
                        }
                        continue;
                }
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
                        e->state_stale = 1;
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
        e->st = sg_rstate_new();
        e->ends = sg_rstate_new();
        e->done_cap = 64;
        e->done = calloc((size_t)e->done_cap, sizeof(*e->done));
        if (!e->st || !e->ends || !e->done)
                goto oom;
        e->c_evaluated =
            sg_counter("events_total{type=\"snapshot\",result=\"evaluated\"}");
        e->c_running = sg_counter(
            "events_total{type=\"snapshot\",result=\"running\"}");
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
        if (state_load(e) == -1 || outbox_recover(e) == -1) {
                snprintf(errstr, errstr_size,
                         "stopped while loading the rules state from Redis");
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
        sg_rstate_destroy(e->st);
        sg_rstate_destroy(e->ends);
        free(e->done);
        free(e->out);
        free(e);
}
