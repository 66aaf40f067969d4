#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "aggregate.h"
#include "codec.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "stage.h"
#include "tz.h"
#include "validate.h"
#include "window.h"

extern const char sg_aggregate_apply_lua[];

#define MAX_PARTITIONS 1024
#define MAX_SOURCES    256 /* input (topic, partition) pairs per partition */
#define SCOPE_LEN      (2 * SG_NAME_LEN)
#define OUT_MAX        4096
#define CLOSE_LIMIT    1000 /* final windows per script call (apply.lua) */

/*
 * What aggregate tracks per input (topic, partition) within one sg.events
 * partition. The highest input offset applied: ingest re-produces events
 * after a crash, and those must count once. The highest event time: each
 * input partition is in event-time order, but ingest interleaves many of
 * them into one sg.events partition, so the watermark is taken over these
 * sources, not over the sg.events partition.
 */
typedef struct src_off {
        char key[SG_TOPIC_LEN + 16];  /* "topic/partition" */
        int64_t applied;              /* stored in Redis */
        int64_t pending;              /* in the batch being applied */
        int64_t max_t, pending_max_t; /* event time; INT64_MIN = none */
        int64_t last_seen;            /* monotonic ms of its last event */
        int idle;        /* caught up and quiet: does not hold the watermark */
        int64_t idle_at; /* sg.events offset that makes it idle; -1 none */
        int qi;          /* index in ag->inputs; -2 = not looked up yet */
} src_off_t;

/* State of one assigned sg.events partition. */
typedef struct part {
        int assigned;
        int in_batch;        /* has events in the current batch */
        int64_t next_offset; /* sg.events offset after the batch */
        /* sg.events' end when the partition was assigned: the watermark
         * holds until it is read up to there (0: caught up). A backlog's
         * partitions are read in no event-time order, so until then an
         * input partition's events in another partition may lie behind. */
        int64_t catchup_to;
        int64_t max_t; /* max event time applied (INT64_MIN: none) */
        int64_t batch_max_t;
        src_off_t src[MAX_SOURCES];
        int src_cnt;
        int src_dirty[MAX_SOURCES];
} part_t;

/* The counters of a bucket, in the order of apply.lua's fields. */
enum {
        F_IMPRESSIONS,
        F_CLICKS,
        F_CONVERSIONS,
        F_SPEND,
        F_REVENUE,
        F_INVALID_CLICKS,
        F_INVALID_IMPRESSIONS,
        F_INVALID_SPEND,
        F_IVT_BOT_UA, /* the four reasons, in SG_IVT_* bit order */
        F_IVT_NO_UA,
        F_IVT_DC_IP,
        F_IVT_DUP_CLICK,
        F_FREQ_CAP, /* from here on, counted by the script */
        F_CTC_10S,
        F_CTC_1M,
        F_CTC_1H,
        F_CTC_GE_1H,
        F_NO_CLICK,
        F_UNTRACKED,
        NF
};

/* The per-entry string lists. apply.lua gets the devices of impressions
 * and then those of the other events as one list (unique devices), the
 * first part of which is the frequency cap's. */
enum {
        L_DEV,       /* devices of clicks and conversions */
        L_IP,        /* IPs of all events: unique IPs */
        L_IMP_DEV,   /* devices of impressions: frequency cap */
        L_CLICK_IP,  /* IPs of clicks: clicks per source (channel scope) */
        L_CLICK_DEV, /* devices of clicks: clicks per source */
        NL
};
#define LIST_MAX_PER_EVENT 6 /* 2 entries x (a device, an IP) + 2 clicks */

/* One (partition, scope, bucket) of the batch's pre-aggregation. */
typedef struct entry {
        int used;
        int32_t partition;
        int64_t bucket;
        char scope[SCOPE_LEN];
        int64_t n[NF];
        int head[NL]; /* index into lst_next / lst_ptr, -1 = none */
        int cnt[NL];
        int idx; /* 1-based position among the script call's entries */
} entry_t;

/* A click, or a conversion naming a click, in stream order: apply.lua
 * times conversions against their clicks. */
typedef struct op {
        int32_t partition;
        int conversion;
        const char *id; /* click event_id, or the conversion's click_id */
        int64_t t;
        entry_t *channel, *campaign;
} op_t;

/* Strings and argv for one script call, reused between calls. */
typedef struct argbuf {
        char *arena;
        size_t used, cap;
        const char **argv;
        size_t *argvlen;
        int argc, argcap;
} argbuf_t;

struct sg_aggregate {
        sg_conf_t conf;
        sg_tz_t *tz; /* aggregate.tz, NULL: tz_offset_min */
        sg_codec_t *codec;
        sg_redis_t *redis;
        sg_consumer_t *consumer;
        sg_producer_t *producer;
        sg_progress_t *ingest; /* how far ingest has read its inputs */
        sg_redis_script_t apply;
        int64_t last_idle_check;

        rd_kafka_message_t **msgs;
        sg_event_t *evs;
        part_t *parts[MAX_PARTITIONS];

        entry_t *table; /* open addressing, power-of-two size */
        int table_mask;
        int *used_slots;
        int used_cnt;
        const char **lst_ptr;
        int *lst_next;
        int lst_cnt;
        op_t *ops;
        int op_cnt;
        sg_window_def_t wins[SG_MAX_WINDOWS];
        int win_cnt;
        char kpi_name[SG_WINDOW_LEN];

        argbuf_t args;
        /* Final windows produced in this batch, ZREM'd once delivered. */
        char (*closed)[SCOPE_LEN + 24];
        int32_t *closed_part;
        int closed_cnt, closed_cap;

        /* Every input partition ("topic/partition"), from the metadata,
         * and the watermark's scratch per input partition. */
        char (*inputs)[SG_TOPIC_LEN + 16];
        int input_cnt;
        int64_t *qmax;
        int *qactive;

        int more_to_close; /* a call left final windows or snapshots */
        int64_t wm_floor;  /* the highest watermark so far */
        long long batches, batch_events, batch_round_trips;
        int64_t overflow_logged;

        unsigned char out[OUT_MAX];
        int64_t bucket_ms, snapshot_ms, kpi_ms, lateness_ms, idle_ms;

        /* events_total by result and sg_event_type_t */
        sg_counter_t *applied[4], *skipped[4], *late[4];
        sg_counter_t *snapshots, *finals, *scripts, *bad, *overflow;
        sg_histogram_t *batch_seconds;
};

/* An index into the per-type counters (0, counted nowhere, for a type out
 * of range). */
static int type_ix(sg_event_type_t t)
{
        return t >= SG_EV_IMPRESSION && t <= SG_EV_CONVERSION ? (int)t : 0;
}

/* ------------------------------------------------------------ partitions */

static src_off_t *src_get(part_t *ps, const char *key);

static part_t *part_get(sg_aggregate_t *ag, int32_t p)
{
        if (p < 0 || p >= MAX_PARTITIONS)
                return NULL;
        if (!ag->parts[p]) {
                ag->parts[p] = calloc(1, sizeof(part_t));
                if (ag->parts[p])
                        ag->parts[p]->max_t = INT64_MIN;
        }
        return ag->parts[p];
}

static void prefix(char *buf, size_t size, int32_t p)
{
        snprintf(buf, size, "sg:{p%d}:", (int)p);
}

/* Loads the partition's offsets and watermark from Redis and sets where the
 * consumer starts: Redis, not the Kafka commit, is the source of truth. */
static void part_load(sg_aggregate_t *ag, rd_kafka_topic_partition_t *tp)
{
        part_t *ps = part_get(ag, tp->partition);
        char pre[32];
        redisReply *r;

        if (!ps)
                return;
        memset(ps, 0, sizeof(*ps));
        ps->max_t = INT64_MIN;
        ps->assigned = 1;
        prefix(pre, sizeof(pre), tp->partition);
        r = sg_redis_command(ag->redis, "GET %soff", pre);
        if (r && r->type == REDIS_REPLY_STRING)
                tp->offset = strtoll(r->str, NULL, 10);
        ps->next_offset = tp->offset >= 0 ? tp->offset : 0;
        if (r)
                freeReplyObject(r);
        r = sg_redis_command(ag->redis, "HGETALL %ssrc", pre);
        if (r && r->type == REDIS_REPLY_ARRAY) {
                for (size_t i = 0; i + 1 < r->elements; i += 2) {
                        src_off_t *so = src_get(ps, r->element[i]->str);
                        if (so)
                                so->applied = so->pending =
                                    strtoll(r->element[i + 1]->str, NULL, 10);
                }
        }
        if (r)
                freeReplyObject(r);
        r = sg_redis_command(ag->redis, "GET %swm", pre);
        if (r && r->type == REDIS_REPLY_STRING) {
                int64_t wm = strtoll(r->str, NULL, 10);
                if (wm > ag->wm_floor)
                        ag->wm_floor = wm;
        }
        if (r)
                freeReplyObject(r);
        /* The sources' event times, so that a restarted aggregate holds the
         * watermark where it was instead of starting from nothing. */
        r = sg_redis_command(ag->redis, "HGETALL %ssrct", pre);
        if (r && r->type == REDIS_REPLY_ARRAY) {
                for (size_t i = 0; i + 1 < r->elements; i += 2) {
                        src_off_t *so = src_get(ps, r->element[i]->str);
                        if (so)
                                so->max_t = so->pending_max_t =
                                    strtoll(r->element[i + 1]->str, NULL, 10);
                }
        }
        if (r)
                freeReplyObject(r);
        /* Every input partition may still send events to this one: each
         * holds the watermark back until it has or goes idle. */
        for (int i = 0; i < ag->input_cnt; i++)
                src_get(ps, ag->inputs[i]);
        {
                int64_t lo, hi;

                if (ag->consumer &&
                    rd_kafka_query_watermark_offsets(
                        sg_consumer_handle(ag->consumer),
                        ag->conf.topics.events, tp->partition, &lo, &hi,
                        5000) == RD_KAFKA_RESP_ERR_NO_ERROR)
                        ps->catchup_to = hi > ps->next_offset ? hi : 0;
                else
                        sg_warn("event=catchup_unknown partition=%d "
                                "msg=\"no high watermark: the watermark "
                                "does not wait for this partition's "
                                "backlog\"",
                                (int)tp->partition);
        }
        sg_info("event=partition_resume partition=%d offset=%" PRId64
                " sources=%d catchup_to=%" PRId64,
                (int)tp->partition, tp->offset, ps->src_cnt, ps->catchup_to);
}

static void on_rebalance(void *opaque, int assign,
                         rd_kafka_topic_partition_list_t *parts)
{
        sg_aggregate_t *ag = opaque;

        for (int i = 0; i < parts->cnt; i++) {
                part_t *ps = part_get(ag, parts->elems[i].partition);

                if (assign)
                        part_load(ag, &parts->elems[i]);
                else if (ps)
                        ps->assigned = 0;
        }
}

/*
 * The stage watermark: the minimum, over the sources (input partitions) of
 * every assigned partition that are not idle, of their highest event time,
 * minus the lateness. A source that has sent nothing yet holds it back
 * (-inf) until it is idle. A source is idle only when it has been quiet for
 * aggregate.idle_s *and* ingest has read everything its input partition
 * holds *and* aggregate has read everything ingest wrote (idle_check()):
 * wall-clock silence alone is not enough, since a killed or lagging ingest
 * is silent too, and a lagging source whose events come later would
 * otherwise find the watermark gone past them. When every source is idle
 * the stream is quiet and the watermark is the newest event time minus
 * the lateness.
 */
/* The index of so's input partition in ag->inputs, found once; -1 for a
 * source the broker's metadata does not list (then it counts alone). */
static int input_index(const sg_aggregate_t *ag, src_off_t *so)
{
        if (so->qi == -2) {
                so->qi = -1;
                for (int q = 0; q < ag->input_cnt; q++)
                        if (strcmp(ag->inputs[q], so->key) == 0)
                                so->qi = q;
        }
        return so->qi;
}

static int64_t stage_watermark_now(sg_aggregate_t *ag)
{
        int64_t min = INT64_MAX, max = INT64_MIN;
        int active = 0;

        /* An input partition's progress is its newest event time in any
         * assigned sg.events partition: ingest routes its events by
         * channel, so most (partition, input) pairs may never see one. It
         * is active while any of its pairs is not idle. */
        /* No watermark while a partition reads the backlog it was
         * assigned with. */
        for (int p = 0; p < MAX_PARTITIONS; p++) {
                part_t *ps = ag->parts[p];

                if (!ps || !ps->assigned || !ps->catchup_to)
                        continue;
                if (ps->next_offset < ps->catchup_to)
                        return INT64_MIN;
                ps->catchup_to = 0;
        }
        for (int q = 0; q < ag->input_cnt; q++) {
                ag->qmax[q] = INT64_MIN;
                ag->qactive[q] = 0;
        }
        for (int p = 0; p < MAX_PARTITIONS; p++) {
                part_t *ps = ag->parts[p];

                if (!ps || !ps->assigned)
                        continue;
                for (int i = 0; i < ps->src_cnt; i++) {
                        src_off_t *so = &ps->src[i];
                        int q = input_index(ag, so);

                        if (so->max_t != INT64_MIN && so->max_t > max)
                                max = so->max_t;
                        if (q >= 0) {
                                if (so->max_t > ag->qmax[q])
                                        ag->qmax[q] = so->max_t;
                                ag->qactive[q] |= !so->idle;
                                continue;
                        }
                        if (so->idle)
                                continue;
                        if (so->max_t == INT64_MIN)
                                return INT64_MIN;
                        if (so->max_t < min)
                                min = so->max_t;
                        active++;
                }
        }
        for (int q = 0; q < ag->input_cnt; q++) {
                if (!ag->qactive[q])
                        continue;
                if (ag->qmax[q] == INT64_MIN)
                        return INT64_MIN;
                if (ag->qmax[q] < min)
                        min = ag->qmax[q];
                active++;
        }
        if (active)
                return min - ag->lateness_ms;
        return max == INT64_MIN ? INT64_MIN : max - ag->lateness_ms;
}

/*
 * The watermark never goes back: a source that was idle and sends again
 * would pull the minimum down, and windows already final would take events
 * again. The highest watermark applied is kept in Redis per partition
 * (sg:{pN}:wm) and taken up again on assignment, so it holds across
 * restarts and hand-overs too.
 */
static int64_t stage_watermark(sg_aggregate_t *ag)
{
        int64_t wm = stage_watermark_now(ag);

        if (wm < ag->wm_floor)
                return ag->wm_floor;
        ag->wm_floor = wm;
        return wm;
}

/* "topic/partition" into tp's topic and partition; -1 if malformed. */
static int src_split(const char *key, char *topic, size_t size, int32_t *part)
{
        const char *slash = strrchr(key, '/');

        if (!slash || (size_t)(slash - key) >= size)
                return -1;
        snprintf(topic, size, "%.*s", (int)(slash - key), key);
        *part = (int32_t)strtol(slash + 1, NULL, 10);
        return 0;
}

/* A source that has sent nothing has nothing to be late for: it may be
 * idle as soon as ingest has read its input partition to the end. One that
 * has sent must first be quiet for aggregate.idle_s, so that a partition
 * between two events does not drop out of the watermark and back. */
static int quiet(const sg_aggregate_t *ag, const src_off_t *so, int64_t now)
{
        return so->max_t == INT64_MIN || now - so->last_seen > ag->idle_ms;
}

/*
 * Marks idle the sources quiet for aggregate.idle_s whose input partition
 * ingest has read to its end, once aggregate has applied what ingest wrote
 * before: ingest commits an input offset only after sg.events acknowledged
 * what it produced from it, so with its commit at the input's end, every
 * event of the source is below sg.events' high watermark of that moment;
 * the source turns idle when the partition's applied offset reaches it.
 * At most once a second, between batches.
 */
static void idle_check(sg_aggregate_t *ag)
{
        rd_kafka_topic_partition_list_t *parts;
        rd_kafka_t *rk = sg_consumer_handle(ag->consumer);
        int64_t now = sg_mono_ms();
        char topic[SG_TOPIC_LEN];
        int32_t pn;

        if (!ag->ingest || now - ag->last_idle_check < 1000)
                return;
        ag->last_idle_check = now;
        parts = rd_kafka_topic_partition_list_new(16);
        for (int p = 0; p < MAX_PARTITIONS; p++) {
                part_t *ps = ag->parts[p];
                for (int i = 0; ps && ps->assigned && i < ps->src_cnt; i++) {
                        src_off_t *so = &ps->src[i];

                        if (so->idle_at >= 0 &&
                            ps->next_offset >= so->idle_at) {
                                so->idle = 1;
                                so->idle_at = -1;
                                sg_debug("event=source_idle partition=%d "
                                         "source=%s",
                                         p, so->key);
                        }
                        if (so->idle || so->idle_at >= 0 ||
                            !quiet(ag, so, now) ||
                            src_split(so->key, topic, sizeof(topic), &pn) ||
                            rd_kafka_topic_partition_list_find(parts, topic,
                                                               pn))
                                continue;
                        rd_kafka_topic_partition_list_add(parts, topic, pn);
                }
        }
        if (parts->cnt == 0 ||
            sg_progress_caught_up(ag->ingest, parts, 2000) != 0) {
                rd_kafka_topic_partition_list_destroy(parts);
                return;
        }
        for (int p = 0; p < MAX_PARTITIONS; p++) {
                part_t *ps = ag->parts[p];
                int64_t lo, hi = -1;

                for (int i = 0; ps && ps->assigned && i < ps->src_cnt; i++) {
                        src_off_t *so = &ps->src[i];
                        rd_kafka_topic_partition_t *tp;

                        if (so->idle || so->idle_at >= 0 ||
                            !quiet(ag, so, now) ||
                            src_split(so->key, topic, sizeof(topic), &pn))
                                continue;
                        tp = rd_kafka_topic_partition_list_find(parts, topic,
                                                                pn);
                        if (!tp || tp->err || tp->offset != 1)
                                continue;
                        if (hi < 0 && rd_kafka_query_watermark_offsets(
                                          rk, ag->conf.topics.events, p, &lo,
                                          &hi, 2000) != 0)
                                break;
                        so->idle_at = hi;
                }
        }
        rd_kafka_topic_partition_list_destroy(parts);
}

static src_off_t *src_get(part_t *ps, const char *key)
{
        src_off_t *so;

        for (int i = 0; i < ps->src_cnt; i++)
                if (strcmp(ps->src[i].key, key) == 0)
                        return &ps->src[i];
        if (ps->src_cnt == MAX_SOURCES)
                return NULL;
        so = &ps->src[ps->src_cnt++];
        snprintf(so->key, sizeof(so->key), "%s", key);
        so->applied = so->pending = -1;
        so->max_t = so->pending_max_t = INT64_MIN;
        so->last_seen = sg_mono_ms();
        so->idle_at = -1;
        so->qi = -2;
        return so;
}

static src_off_t *src_find(part_t *ps, const sg_event_t *ev)
{
        char key[SG_TOPIC_LEN + 16];

        snprintf(key, sizeof(key), "%s/%d", ev->src_topic,
                 (int)ev->src_partition);
        return src_get(ps, key);
}

/* ----------------------------------------------------- pre-aggregation */

static uint64_t hash_entry(int32_t p, const char *scope, int64_t bucket)
{
        uint64_t h = 1469598103934665603ULL ^ (uint64_t)p;

        for (const unsigned char *s = (const unsigned char *)scope; *s; s++)
                h = (h ^ *s) * 1099511628211ULL;
        h = (h ^ (uint64_t)bucket) * 1099511628211ULL;
        return h ^ (h >> 29);
}

static entry_t *entry_get(sg_aggregate_t *ag, int32_t p, const char *scope,
                          int64_t bucket)
{
        uint64_t i = hash_entry(p, scope, bucket) & ag->table_mask;

        for (;; i = (i + 1) & ag->table_mask) {
                entry_t *e = &ag->table[i];

                if (!e->used) {
                        e->used = 1;
                        e->partition = p;
                        e->bucket = bucket;
                        snprintf(e->scope, sizeof(e->scope), "%s", scope);
                        memset(e->n, 0, sizeof(e->n));
                        for (int l = 0; l < NL; l++) {
                                e->head[l] = -1;
                                e->cnt[l] = 0;
                        }
                        ag->used_slots[ag->used_cnt++] = (int)i;
                        return e;
                }
                if (e->partition == p && e->bucket == bucket &&
                    strcmp(e->scope, scope) == 0)
                        return e;
        }
}

static void list_add(sg_aggregate_t *ag, entry_t *e, int l, const char *str)
{
        ag->lst_ptr[ag->lst_cnt] = str;
        ag->lst_next[ag->lst_cnt] = e->head[l];
        e->head[l] = ag->lst_cnt++;
        e->cnt[l]++;
}

/* Adds ev to e; channel says e is the channel-scope entry. */
static void entry_add(sg_aggregate_t *ag, entry_t *e, const sg_event_t *ev,
                      int channel)
{
        int invalid = ev->ivt_mask != 0;
        int dev = ev->has_device_id && ev->device_id[0];
        int ip = ev->has_ip && ev->ip[0];

        switch (ev->type) {
        case SG_EV_IMPRESSION:
                e->n[F_IMPRESSIONS]++;
                e->n[F_SPEND] += ev->cost_micros;
                if (invalid) {
                        e->n[F_INVALID_IMPRESSIONS]++;
                        e->n[F_INVALID_SPEND] += ev->cost_micros;
                }
                if (dev)
                        list_add(ag, e, L_IMP_DEV, ev->device_id);
                break;
        case SG_EV_CLICK:
                e->n[F_CLICKS]++;
                e->n[F_SPEND] += ev->cost_micros;
                if (invalid) {
                        e->n[F_INVALID_CLICKS]++;
                        e->n[F_INVALID_SPEND] += ev->cost_micros;
                }
                if (channel && ip)
                        list_add(ag, e, L_CLICK_IP, ev->ip);
                if (channel && dev)
                        list_add(ag, e, L_CLICK_DEV, ev->device_id);
                break;
        case SG_EV_CONVERSION:
                e->n[F_CONVERSIONS]++;
                e->n[F_REVENUE] += ev->revenue_micros;
                if (!ev->has_ref_id || !ev->ref_id[0])
                        e->n[F_NO_CLICK]++;
                break;
        default:
                break;
        }
        /* Invalid traffic by reason, of impressions and clicks (as the
         * invalid_* counters). */
        for (int b = 0; b < 4 && ev->type != SG_EV_CONVERSION; b++)
                if (ev->ivt_mask & (1u << b))
                        e->n[F_IVT_BOT_UA + b]++;
        if (dev && ev->type != SG_EV_IMPRESSION)
                list_add(ag, e, L_DEV, ev->device_id);
        if (ip)
                list_add(ag, e, L_IP, ev->ip);
}

/* Records a click, or a conversion that names one, for apply.lua. */
static void op_add(sg_aggregate_t *ag, int32_t p, const sg_event_t *ev,
                   entry_t *channel, entry_t *campaign)
{
        op_t *o;

        if (ev->type == SG_EV_CONVERSION && (!ev->has_ref_id || !ev->ref_id[0]))
                return;
        if (ev->type != SG_EV_CLICK && ev->type != SG_EV_CONVERSION)
                return;
        o = &ag->ops[ag->op_cnt++];
        o->partition = p;
        o->conversion = ev->type == SG_EV_CONVERSION;
        o->id = o->conversion ? ev->ref_id : ev->event_id;
        o->t = ev->event_time;
        o->channel = channel;
        o->campaign = campaign;
}

static void table_clear(sg_aggregate_t *ag)
{
        for (int i = 0; i < ag->used_cnt; i++)
                ag->table[ag->used_slots[i]].used = 0;
        ag->used_cnt = 0;
        ag->lst_cnt = 0;
        ag->op_cnt = 0;
}

/* ------------------------------------------------------------ arguments */

static int args_reserve(argbuf_t *a, size_t bytes, int argc)
{
        if (bytes > a->cap) {
                char *n = realloc(a->arena, bytes);
                if (!n)
                        return -1;
                a->arena = n;
                a->cap = bytes;
        }
        if (argc > a->argcap) {
                const char **v = realloc(a->argv, argc * sizeof(*v));
                size_t *l;
                if (!v)
                        return -1;
                a->argv = v;
                l = realloc(a->argvlen, argc * sizeof(*l));
                if (!l)
                        return -1;
                a->argvlen = l;
                a->argcap = argc;
        }
        a->used = 0;
        a->argc = 0;
        return 0;
}

/* Adds a copy of s (or a pointer to it when it outlives the call). */
static void args_str(argbuf_t *a, const char *s, int copy)
{
        size_t n = strlen(s);

        if (copy) {
                memcpy(a->arena + a->used, s, n + 1);
                s = a->arena + a->used;
                a->used += n + 1;
        }
        a->argv[a->argc] = s;
        a->argvlen[a->argc++] = n;
}

static void args_int(argbuf_t *a, int64_t v)
{
        int n = snprintf(a->arena + a->used, 24, "%" PRId64, v);

        a->argv[a->argc] = a->arena + a->used;
        a->argvlen[a->argc++] = n;
        a->used += n + 1;
}

/* Adds the strings of e's list l (they outlive the call). */
static void args_list(sg_aggregate_t *ag, const entry_t *e, int l)
{
        for (int d = e->head[l]; d != -1; d = ag->lst_next[d])
                args_str(&ag->args, ag->lst_ptr[d], 0);
}

/* ------------------------------------------------------------- output */

static int64_t reply_int(const redisReply *r)
{
        if (r->type == REDIS_REPLY_INTEGER)
                return r->integer;
        if (r->type == REDIS_REPLY_STRING)
                return strtoll(r->str, NULL, 10);
        return 0;
}

/* Elements of one snapshot in the script's reply before its top sources:
 * scope, window, start, end, NF counters, unique devices and IPs, ntop. */
#define SNAP_ELEMENTS (4 + NF + 3)

/* Fills s from the SNAP_ELEMENTS (and top sources) at r->element[*i]. */
static int reply_snapshot(const redisReply *r, size_t *i, sg_snapshot_t *s)
{
        int64_t v[NF];
        const char *scope, *bar;
        int64_t ntop;

        if (*i + SNAP_ELEMENTS > r->elements ||
            r->element[*i]->type != REDIS_REPLY_STRING ||
            r->element[*i + 1]->type != REDIS_REPLY_STRING)
                return -1;
        memset(s, 0, sizeof(*s));
        scope = r->element[(*i)++]->str;
        bar = strchr(scope, '|');
        snprintf(s->channel, sizeof(s->channel), "%.*s",
                 (int)(bar ? bar - scope : (long)strlen(scope)), scope);
        snprintf(s->campaign_id, sizeof(s->campaign_id), "%s",
                 bar ? bar + 1 : "");
        snprintf(s->window, sizeof(s->window), "%s", r->element[(*i)++]->str);
        s->window_start = reply_int(r->element[(*i)++]);
        s->window_end = reply_int(r->element[(*i)++]);
        for (int f = 0; f < NF; f++)
                v[f] = reply_int(r->element[(*i)++]);
        s->c.impressions = v[F_IMPRESSIONS];
        s->c.clicks = v[F_CLICKS];
        s->c.conversions = v[F_CONVERSIONS];
        s->c.spend_micros = v[F_SPEND];
        s->c.revenue_micros = v[F_REVENUE];
        s->c.invalid_clicks = v[F_INVALID_CLICKS];
        s->c.invalid_impressions = v[F_INVALID_IMPRESSIONS];
        s->c.invalid_spend_micros = v[F_INVALID_SPEND];
        s->x.ivt_bot_ua = v[F_IVT_BOT_UA];
        s->x.ivt_no_ua = v[F_IVT_NO_UA];
        s->x.ivt_dc_ip = v[F_IVT_DC_IP];
        s->x.ivt_dup_click = v[F_IVT_DUP_CLICK];
        s->x.freq_cap_impressions = v[F_FREQ_CAP];
        s->x.ctc_lt_10s = v[F_CTC_10S];
        s->x.ctc_lt_1m = v[F_CTC_1M];
        s->x.ctc_lt_1h = v[F_CTC_1H];
        s->x.ctc_ge_1h = v[F_CTC_GE_1H];
        s->x.conversions_no_click = v[F_NO_CLICK];
        s->x.source_clicks_untracked = v[F_UNTRACKED];
        s->c.unique_devices = reply_int(r->element[(*i)++]);
        s->x.unique_ips = reply_int(r->element[(*i)++]);
        ntop = reply_int(r->element[(*i)++]);
        if (ntop < 0 || ntop > SG_SNAPSHOT_TOP ||
            *i + 2 * (size_t)ntop > r->elements)
                return -1;
        for (int k = 0; k < ntop; k++) {
                const redisReply *src = r->element[(*i)++];
                snprintf(s->top[k].source, sizeof(s->top[k].source), "%s",
                         src->type == REDIS_REPLY_STRING ? src->str : "");
                s->top[k].clicks = reply_int(r->element[(*i)++]);
        }
        s->top_cnt = (int)ntop;
        return 0;
}

static int send_snapshot(sg_aggregate_t *ag, const sg_snapshot_t *s)
{
        int n =
            sg_codec_encode_snapshot(ag->codec, s, ag->out, sizeof(ag->out));

        if (n < 0) {
                sg_error("event=encode_failed what=snapshot err=\"%s\"",
                         sg_codec_error(ag->codec));
                return -1;
        }
        return sg_producer_send(ag->producer, ag->conf.topics.aggregates, -1,
                                s->channel, strlen(s->channel), ag->out, n,
                                NULL);
}

static int closed_add(sg_aggregate_t *ag, int32_t p, const char *member)
{
        if (ag->closed_cnt == ag->closed_cap) {
                int cap = ag->closed_cap ? ag->closed_cap * 2 : 64;
                void *n = realloc(ag->closed, cap * sizeof(*ag->closed));
                int32_t *np;
                if (!n)
                        return -1;
                ag->closed = n;
                np = realloc(ag->closed_part, cap * sizeof(*np));
                if (!np)
                        return -1;
                ag->closed_part = np;
                ag->closed_cap = cap;
        }
        snprintf(ag->closed[ag->closed_cnt], sizeof(ag->closed[0]), "%s",
                 member);
        ag->closed_part[ag->closed_cnt++] = p;
        return 0;
}

/* Parses the script's reply, sends its snapshots and final windows. */
static int handle_reply(sg_aggregate_t *ag, int32_t p, const redisReply *r,
                        int64_t wm)
{
        size_t i = 2, nsnap, nfinal;
        sg_snapshot_t s;

        if (r->elements < 3)
                return -1;
        nsnap = (size_t)reply_int(r->element[1]);
        for (size_t k = 0; k < nsnap; k++) {
                if (reply_snapshot(r, &i, &s) == -1) {
                        sg_error("event=bad_script_reply partition=%d", (int)p);
                        return -1;
                }
                s.watermark = wm;
                if (send_snapshot(ag, &s) == -1)
                        return -1;
                sg_counter_add(ag->snapshots, 1);
        }
        if (i >= r->elements)
                return -1;
        nfinal = (size_t)reply_int(r->element[i++]);
        if (nfinal >= CLOSE_LIMIT)
                ag->more_to_close = 1;
        for (size_t k = 0; k < nfinal && i < r->elements; k++) {
                const char *member = r->element[i++]->str;

                if (reply_snapshot(r, &i, &s) == -1) {
                        sg_error("event=bad_script_reply partition=%d", (int)p);
                        return -1;
                }
                s.final = 1;
                s.watermark = wm;
                if (send_snapshot(ag, &s) == -1 ||
                    closed_add(ag, p, member) == -1)
                        return -1;
                sg_counter_add(ag->finals, 1);
        }
        if (i + 1 < r->elements && reply_int(r->element[i + 1]) == 1)
                ag->more_to_close = 1; /* snapshots left: come back */
        if (i < r->elements) {
                int64_t overflow = reply_int(r->element[i]);
                if (overflow > 0 && reply_int(r->element[0]) == 1) {
                        sg_counter_add(ag->overflow, (uint64_t)overflow);
                        /* Once a minute at most. */
                        if (sg_mono_ms() - ag->overflow_logged >= 60000) {
                                ag->overflow_logged = sg_mono_ms();
                                sg_warn("event=scope_overflow partition=%d "
                                        "max_scopes=%d msg=\"new scopes "
                                        "are counted as _other\"",
                                        (int)p, ag->conf.aggregate.max_scopes);
                        }
                }
        }
        return 0;
}

/* Applies the batch's entries of partition p with one script call. */
static int apply_partition(sg_aggregate_t *ag, int32_t p, part_t *ps,
                           int64_t wm)
{
        argbuf_t *a = &ag->args;
        size_t bytes = 4096;
        int argc = 16 + 2 * SG_MAX_WINDOWS, nent = 0, nsrc = 0, nops = 0;
        char pre[32], wmbuf[24];
        redisReply *r;
        int rc;

        for (int k = 0; k < ag->used_cnt; k++) {
                entry_t *e = &ag->table[ag->used_slots[k]];
                if (e->partition != p)
                        continue;
                e->idx = ++nent;
                argc += 3 + 2 * NF + NL;
                for (int l = 0; l < NL; l++)
                        argc += e->cnt[l];
                bytes += SCOPE_LEN + (3 + 2 * NF + NL) * 24;
        }
        for (int k = 0; k < ag->op_cnt; k++)
                if (ag->ops[k].partition == p) {
                        nops++;
                        argc += 5;
                        bytes += 4 * 24;
                }
        for (int k = 0; k < ps->src_cnt; k++) {
                ps->src_dirty[k] = ps->src[k].pending > ps->src[k].applied;
                nsrc += ps->src_dirty[k];
        }
        argc += 3 * nsrc;
        bytes += nsrc * 48;
        if (args_reserve(a, bytes, argc) == -1) {
                sg_error("event=oom what=script_args");
                return -1;
        }

        prefix(pre, sizeof(pre), p);
        if (wm == INT64_MIN)
                snprintf(wmbuf, sizeof(wmbuf), "-inf");
        else
                snprintf(wmbuf, sizeof(wmbuf), "%" PRId64, wm);
        args_str(a, pre, 1);
        args_int(a, ps->next_offset);
        args_str(a, wmbuf, 1);
        args_int(a, ps->batch_max_t);
        args_int(a, ag->conf.aggregate.retention_s);
        args_int(a, ag->bucket_ms);
        args_int(a, ag->snapshot_ms);
        args_int(a, ag->kpi_ms);
        args_str(a, ag->kpi_name, 0);
        /* The script takes one offset: the one in effect at the start of
         * the local day of the batch's newest event (exact for that day;
         * see docs/known-issues.md for a batch across a DST day's end). */
        args_int(a, ag->tz ? sg_tz_offset_ms(ag->tz,
                                             sg_tz_day_start(ag->tz,
                                                             ps->batch_max_t))
                           : (int64_t)ag->conf.aggregate.tz_offset_min * 60000);
        args_int(a, ag->conf.aggregate.freq_cap);
        args_int(a, ag->conf.aggregate.click_ttl_s);
        args_int(a, ag->conf.aggregate.max_sources);
        args_int(a, ag->conf.aggregate.max_scopes);
        args_int(a, ag->win_cnt);
        for (int w = 0; w < ag->win_cnt; w++) {
                args_str(a, ag->wins[w].name, 0);
                args_int(a, ag->wins[w].len_ms);
        }
        args_int(a, nsrc);
        for (int k = 0; k < ps->src_cnt; k++) {
                if (!ps->src_dirty[k])
                        continue;
                args_str(a, ps->src[k].key, 0);
                args_int(a, ps->src[k].pending);
                args_int(a, ps->src[k].pending_max_t);
        }
        args_int(a, nent);
        for (int k = 0; k < ag->used_cnt; k++) {
                const entry_t *e = &ag->table[ag->used_slots[k]];
                if (e->partition != p)
                        continue;
                int nz = 0;

                args_str(a, e->scope, 0);
                args_int(a, e->bucket);
                /* The non-zero counters: field number (1-based), value. */
                for (int f = 0; f < NF; f++)
                        nz += e->n[f] != 0;
                args_int(a, nz);
                for (int f = 0; f < NF; f++) {
                        if (e->n[f] == 0)
                                continue;
                        args_int(a, f + 1);
                        args_int(a, e->n[f]);
                }
                args_int(a, e->cnt[L_IMP_DEV] + e->cnt[L_DEV]);
                args_int(a, e->cnt[L_IMP_DEV]);
                args_list(ag, e, L_IMP_DEV);
                args_list(ag, e, L_DEV);
                args_int(a, e->cnt[L_IP]);
                args_list(ag, e, L_IP);
                /* Click sources: channel entries only. */
                if (e->scope[0] && e->scope[strlen(e->scope) - 1] == '|') {
                        args_int(a, e->cnt[L_CLICK_IP]);
                        args_list(ag, e, L_CLICK_IP);
                        args_int(a, e->cnt[L_CLICK_DEV]);
                        args_list(ag, e, L_CLICK_DEV);
                }
        }
        args_int(a, nops);
        for (int k = 0; k < ag->op_cnt; k++) {
                const op_t *o = &ag->ops[k];
                if (o->partition != p)
                        continue;
                args_str(a, o->conversion ? "v" : "c", 0);
                args_str(a, o->id, 0);
                args_int(a, o->t);
                if (o->conversion) {
                        args_int(a, o->channel->idx);
                        args_int(a, o->campaign->idx);
                }
        }

        r = sg_redis_eval(ag->redis, &ag->apply, 0, a->argc, a->argv,
                          a->argvlen);
        sg_counter_add(ag->scripts, 1);
        if (!r)
                return -1; /* stopping */
        if (r->type == REDIS_REPLY_ERROR || r->type != REDIS_REPLY_ARRAY ||
            r->elements < 1) {
                sg_error("event=script_failed partition=%d err=\"%s\"", (int)p,
                         r->type == REDIS_REPLY_ERROR ? r->str
                                                      : "unexpected reply");
                freeReplyObject(r);
                return -1;
        }
        /* Redis now holds the batch: the offsets are applied. */
        for (int k = 0; k < ps->src_cnt; k++)
                ps->src[k].applied = ps->src[k].pending;
        if (ps->batch_max_t > ps->max_t)
                ps->max_t = ps->batch_max_t;
        if (reply_int(r->element[0]) == 0 && nent > 0)
                sg_info("event=batch_already_applied partition=%d "
                        "next_offset=%" PRId64,
                        (int)p, ps->next_offset);
        rc = handle_reply(ag, p, r, wm);
        freeReplyObject(r);
        return rc;
}

/* ZREMs the delivered final windows from the open set: one pipeline. */
static void forget_closed(sg_aggregate_t *ag)
{
        const char *argv[3];
        char key[64];
        int sent = 0;

        for (int k = 0; k < ag->closed_cnt; k++) {
                prefix(key, sizeof(key) - 8, ag->closed_part[k]);
                strcat(key, "open");
                argv[0] = "ZREM";
                argv[1] = key;
                argv[2] = ag->closed[k];
                if (sg_redis_append_argv(ag->redis, 3, argv, NULL) == 0)
                        sent++;
        }
        for (int k = 0; k < sent; k++) {
                redisReply *r = sg_redis_pipeline_get(ag->redis);
                if (!r) {
                        /* They stay open and are sent again: the sink
                         * drops the repeat. */
                        sg_redis_reconnect(ag->redis);
                        break;
                }
                freeReplyObject(r);
        }
        ag->closed_cnt = 0;
}

/* --------------------------------------------------------------- batch */

static int deadletter(sg_aggregate_t *ag, const rd_kafka_message_t *m,
                      const char *reason, const char *detail)
{
        return sg_producer_deadletter(ag->producer, ag->conf.topics.deadletter,
                                      m, reason, detail);
}

static int batch(sg_aggregate_t *ag, int cnt)
{
        int64_t wm_before = stage_watermark(ag), wm;
        char scope[SCOPE_LEN], detail[256];
        int failed = 0;

        for (int i = 0; i < cnt; i++) {
                const rd_kafka_message_t *m = ag->msgs[i];
                sg_event_t *ev = &ag->evs[i];
                part_t *ps = part_get(ag, m->partition);
                src_off_t *so;

                if (!ps) {
                        sg_error("event=partition_out_of_range partition=%d",
                                 (int)m->partition);
                        return -1;
                }
                if (!ps->in_batch) {
                        ps->in_batch = 1;
                        ps->batch_max_t = INT64_MIN;
                }
                ps->next_offset = m->offset + 1;
                if (sg_codec_decode_normalized(ag->codec, m->payload, m->len,
                                               ev) == -1) {
                        snprintf(detail, sizeof(detail), "%s",
                                 sg_codec_error(ag->codec));
                        sg_counter_add(ag->bad, 1);
                        failed +=
                            deadletter(ag, m, SG_ERR_AVRO_DECODE, detail) != 0;
                        continue;
                }
                so = src_find(ps, ev);
                if (so && ev->src_offset <= so->pending) {
                        /* Re-produced by ingest after a crash: counted. */
                        sg_counter_add(ag->skipped[type_ix(ev->type)], 1);
                        continue;
                }
                if (so) {
                        so->pending = ev->src_offset;
                        so->last_seen = sg_mono_ms();
                        so->idle = 0;
                        so->idle_at = -1;
                        if (ev->event_time > so->pending_max_t)
                                so->pending_max_t = ev->event_time;
                }
                if (wm_before != INT64_MIN &&
                    sg_window_is_closed(ev->event_time, ag->kpi_ms,
                                        wm_before)) {
                        snprintf(detail, sizeof(detail),
                                 "event_time %" PRId64
                                 " is in a window closed by watermark "
                                 "%" PRId64,
                                 ev->event_time, wm_before);
                        sg_counter_add(ag->late[type_ix(ev->type)], 1);
                        failed += deadletter(ag, m, SG_ERR_LATE, detail) != 0;
                        continue;
                }
                if (ev->event_time > ps->batch_max_t)
                        ps->batch_max_t = ev->event_time;
                {
                        int64_t b =
                            sg_window_floor(ev->event_time, ag->bucket_ms);
                        entry_t *ech, *ecp;

                        snprintf(scope, sizeof(scope), "%s|", ev->channel);
                        ech = entry_get(ag, m->partition, scope, b);
                        entry_add(ag, ech, ev, 1);
                        snprintf(scope, sizeof(scope), "%s|%s", ev->channel,
                                 ev->campaign_id);
                        ecp = entry_get(ag, m->partition, scope, b);
                        entry_add(ag, ecp, ev, 0);
                        op_add(ag, m->partition, ev, ech, ecp);
                }
                sg_counter_add(ag->applied[type_ix(ev->type)], 1);
        }

        /* The watermark after this batch decides which windows close. */
        for (int p = 0; p < MAX_PARTITIONS; p++) {
                part_t *ps = ag->parts[p];
                for (int k = 0; ps && k < ps->src_cnt; k++)
                        ps->src[k].max_t = ps->src[k].pending_max_t;
        }
        wm = stage_watermark(ag);
        for (int p = 0; p < MAX_PARTITIONS && !failed; p++) {
                part_t *ps = ag->parts[p];
                if (!ps || !ps->in_batch)
                        continue;
                if (ps->batch_max_t == INT64_MIN)
                        ps->batch_max_t =
                            ps->max_t == INT64_MIN ? 0 : ps->max_t;
                if (apply_partition(ag, p, ps, wm) == -1)
                        failed++;
        }
        for (int p = 0; p < MAX_PARTITIONS; p++)
                if (ag->parts[p])
                        ag->parts[p]->in_batch = 0;
        table_clear(ag);
        return failed ? -1 : 0;
}

/* Forgets what the failed batch left pending, so it is redone. */
static void batch_undo(sg_aggregate_t *ag)
{
        for (int p = 0; p < MAX_PARTITIONS; p++) {
                part_t *ps = ag->parts[p];
                if (!ps)
                        continue;
                for (int k = 0; k < ps->src_cnt; k++) {
                        ps->src[k].pending = ps->src[k].applied;
                        ps->src[k].pending_max_t = ps->src[k].max_t;
                }
        }
        ag->closed_cnt = 0;
}

/*
 * With no input, the watermark still moves (sources go idle), so windows
 * must close without a batch: one script call per assigned partition with
 * no entries returns the windows the watermark closed.
 */
static int idle_tick(sg_aggregate_t *ag, int64_t *last_wm)
{
        int64_t wm;
        int failed = 0;

        wm = stage_watermark(ag);
        if (wm == INT64_MIN || (wm <= *last_wm && !ag->more_to_close))
                return 0;
        /* The watermark moved without input: close windows and send the
         * snapshots of the windows it completed. */
        ag->more_to_close = 0;
        for (int p = 0; p < MAX_PARTITIONS && !failed; p++) {
                part_t *ps = ag->parts[p];

                if (!ps || !ps->assigned || ps->next_offset <= 0)
                        continue;
                ps->batch_max_t = ps->max_t == INT64_MIN ? 0 : ps->max_t;
                if (apply_partition(ag, p, ps, wm) == -1)
                        failed++;
        }
        table_clear(ag);
        if (failed || sg_producer_flush(ag->producer, 60000) != 0) {
                ag->closed_cnt = 0;
                return -1;
        }
        forget_closed(ag);
        *last_wm = wm;
        return 0;
}

int sg_aggregate_run(sg_aggregate_t *ag)
{
        int64_t last_stats = sg_mono_ms(), last_wm = INT64_MIN;

        while (!sg_stop) {
                int cnt;

                /* Also while batches flow: a source with no events must
                 * not hold the watermark for the whole stream. */
                idle_check(ag);
                cnt = sg_consumer_batch(ag->consumer, ag->msgs,
                                        ag->conf.aggregate.batch_size,
                                        ag->conf.aggregate.batch_ms);
                if (cnt) {
                        int64_t t0 = sg_mono_us();
                        long long rt0 = sg_redis_round_trips(ag->redis);
                        int rc = batch(ag, cnt);
                        int lost = rc == 0
                                       ? sg_producer_flush(ag->producer, 60000)
                                       : 0;

                        if (rc == -1 || lost != 0) {
                                sg_warn("event=batch_retry records=%d "
                                        "delivery_failed=%d",
                                        cnt, lost);
                                /* Wait out in-flight sends, then redo. */
                                sg_producer_flush(ag->producer, 60000);
                                batch_undo(ag);
                                sg_consumer_rewind(ag->consumer, ag->msgs, cnt);
                                sg_sleep_ms(500);
                        } else {
                                forget_closed(ag);
                                ag->batches++;
                                ag->batch_round_trips +=
                                    sg_redis_round_trips(ag->redis) - rt0;
                                ag->batch_events += cnt;
                                /* Kafka's commit only matters if Redis is
                                 * wiped; Redis holds the real offsets. */
                                sg_consumer_commit(ag->consumer, ag->msgs, cnt);
                                sg_histogram_observe(
                                    ag->batch_seconds,
                                    (double)(sg_mono_us() - t0) / 1e6);
                        }
                        sg_consumer_batch_free(ag->msgs, cnt);
                } else {
                        idle_tick(ag, &last_wm);
                }
                sg_producer_poll(ag->producer);
                if (sg_mono_ms() - last_stats >= 10000) {
                        sg_metrics_log();
                        last_stats = sg_mono_ms();
                }
        }
        sg_metrics_log();
        /* Redis round trips of the batches alone (a script call per
         * partition, and one pipeline for the windows they closed): they
         * grow with partitions, not with events (aggregate_test.c). */
        sg_info("event=stop redis_commands=%lld redis_round_trips=%lld "
                "batches=%lld batch_events=%lld batch_round_trips=%lld",
                sg_redis_commands(ag->redis), sg_redis_round_trips(ag->redis),
                ag->batches, ag->batch_events, ag->batch_round_trips);
        return 0;
}

/* -------------------------------------------------------- new / destroy */

/* Learns every input partition from the broker, so that each can hold the
 * watermark back before its first event arrives. */
static void inputs_load(sg_aggregate_t *ag)
{
        const char *topics[3] = {ag->conf.topics.impressions,
                                 ag->conf.topics.clicks,
                                 ag->conf.topics.conversions};
        rd_kafka_t *rk = sg_consumer_handle(ag->consumer);

        for (int t = 0; t < 3; t++) {
                const struct rd_kafka_metadata *md;
                rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topics[t], NULL);
                rd_kafka_resp_err_t err =
                    rd_kafka_metadata(rk, 0, rkt, &md, 10000);

                rd_kafka_topic_destroy(rkt);
                if (err || md->topic_cnt != 1 || md->topics[0].err) {
                        sg_warn(
                            "event=metadata_failed topic=%s err=%s "
                            "msg=\"the watermark will not wait for this "
                            "topic's partitions\"",
                            topics[t],
                            rd_kafka_err2name(err ? err : md->topics[0].err));
                        if (!err)
                                rd_kafka_metadata_destroy(md);
                        continue;
                }
                for (int p = 0; p < md->topics[0].partition_cnt; p++) {
                        void *n = realloc(ag->inputs, (ag->input_cnt + 1) *
                                                          sizeof(*ag->inputs));
                        if (!n)
                                break;
                        ag->inputs = n;
                        snprintf(ag->inputs[ag->input_cnt++],
                                 sizeof(ag->inputs[0]), "%s/%d", topics[t],
                                 md->topics[0].partitions[p].id);
                }
                rd_kafka_metadata_destroy(md);
        }
        ag->qmax = calloc((size_t)ag->input_cnt + 1, sizeof(*ag->qmax));
        ag->qactive = calloc((size_t)ag->input_cnt + 1, sizeof(*ag->qactive));
        if (!ag->qmax || !ag->qactive)
                ag->input_cnt = 0; /* every source then counts alone */
}

/* events_total{type,result}; SG_EV_NONE is type="unknown". */
static sg_counter_t *events_counter(sg_event_type_t t, const char *result)
{
        char name[SG_METRICS_NAME_LEN];

        sg_metrics_name(name, sizeof(name), "events_total", "type",
                        t == SG_EV_NONE ? "unknown" : sg_event_type_name(t),
                        "result", result, NULL);
        return sg_counter(name);
}

sg_aggregate_t *sg_aggregate_new(const sg_conf_t *conf, char *errstr,
                                 size_t errstr_size)
{
        sg_aggregate_t *ag = calloc(1, sizeof(*ag));
        const char *topics[1];
        int bs, tsize = 1;

        if (!ag) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        ag->conf = *conf;
        conf = &ag->conf;
        bs = conf->aggregate.batch_size;
        ag->apply.source = sg_aggregate_apply_lua;
        ag->bucket_ms = (int64_t)conf->aggregate.bucket_s * 1000;
        ag->snapshot_ms = (int64_t)conf->aggregate.snapshot_s * 1000;
        ag->win_cnt =
            sg_window_parse_list(conf->aggregate.windows, ag->wins,
                                 SG_MAX_WINDOWS, 0, errstr, errstr_size);
        if (ag->win_cnt < 0)
                goto err;
        if (conf->aggregate.tz[0] &&
            !(ag->tz = sg_tz_new(conf->aggregate.tz, errstr, errstr_size)))
                goto err;
        sg_window_name(conf->aggregate.kpi_window_s * 1000LL, ag->kpi_name,
                       sizeof(ag->kpi_name));
        ag->kpi_ms = (int64_t)conf->aggregate.kpi_window_s * 1000;
        ag->lateness_ms = (int64_t)conf->aggregate.lateness_s * 1000;
        ag->wm_floor = INT64_MIN;
        ag->idle_ms = (int64_t)conf->aggregate.idle_s * 1000;
        /* Two entries per event at most (channel and campaign scope); a
         * load factor <= 1/2. */
        while (tsize < 4 * bs)
                tsize <<= 1;
        ag->table = calloc(tsize, sizeof(*ag->table));
        ag->table_mask = tsize - 1;
        ag->used_slots = calloc(2 * bs, sizeof(int));
        ag->lst_ptr = calloc((size_t)LIST_MAX_PER_EVENT * bs, sizeof(char *));
        ag->lst_next = calloc((size_t)LIST_MAX_PER_EVENT * bs, sizeof(int));
        ag->ops = calloc(bs, sizeof(*ag->ops));
        ag->msgs = calloc(bs, sizeof(*ag->msgs));
        ag->evs = calloc(bs, sizeof(*ag->evs));
        if (!ag->table || !ag->used_slots || !ag->lst_ptr || !ag->lst_next ||
            !ag->ops || !ag->msgs || !ag->evs) {
                snprintf(errstr, errstr_size, "out of memory");
                goto err;
        }
        ag->codec = sg_codec_new(conf->schemas_dir, errstr, errstr_size);
        if (!ag->codec)
                goto err;
        ag->redis = sg_redis_new(conf->redis, 0, errstr, errstr_size);
        if (!ag->redis)
                goto err;
        /* Loaded now, so that batches make one round trip from the first. */
        sg_redis_script_load(ag->redis, &ag->apply);
        ag->producer =
            sg_producer_new(conf, "sg-aggregate", errstr, errstr_size);
        if (!ag->producer)
                goto err;
        for (int t = SG_EV_IMPRESSION; t <= SG_EV_CONVERSION; t++) {
                ag->applied[t] = events_counter(t, "applied");
                ag->skipped[t] = events_counter(t, "redelivered");
                ag->late[t] = events_counter(t, "late");
        }
        /* [0] stays NULL (adding to it is a no-op): the codec only
         * decodes the three types. */
        ag->bad = events_counter(SG_EV_NONE, "undecodable");
        ag->snapshots = sg_counter("snapshots_total{kind=\"rolling\"}");
        ag->finals = sg_counter("snapshots_total{kind=\"final\"}");
        ag->scripts = sg_counter("redis_scripts_total");
        ag->overflow = sg_counter("scope_overflow_total");
        ag->batch_seconds =
            sg_histogram("batch_duration_seconds", sg_metrics_batch_buckets,
                         sg_metrics_batch_bucket_cnt);
        topics[0] = conf->topics.events;
        ag->consumer = sg_consumer_new(conf, "aggregate", topics, 1,
                                       on_rebalance, ag, errstr, errstr_size);
        if (!ag->consumer)
                goto err;
        ag->ingest = sg_progress_new(conf, "ingest", errstr, errstr_size);
        if (!ag->ingest)
                goto err;
        inputs_load(ag);
        sg_info("event=start inputs=%d in=%s out=%s bucket_s=%d windows=%s "
                "snapshot_s=%d kpi_window_s=%d lateness_s=%d",
                ag->input_cnt, conf->topics.events, conf->topics.aggregates,
                conf->aggregate.bucket_s, conf->aggregate.windows,
                conf->aggregate.snapshot_s, conf->aggregate.kpi_window_s,
                conf->aggregate.lateness_s);
        return ag;
err:
        sg_aggregate_destroy(ag);
        return NULL;
}

void sg_aggregate_destroy(sg_aggregate_t *ag)
{
        if (!ag)
                return;
        sg_consumer_destroy(ag->consumer);
        sg_progress_destroy(ag->ingest);
        sg_producer_destroy(ag->producer);
        sg_redis_destroy(ag->redis);
        sg_codec_destroy(ag->codec);
        sg_tz_destroy(ag->tz);
        for (int p = 0; p < MAX_PARTITIONS; p++)
                free(ag->parts[p]);
        free(ag->table);
        free(ag->used_slots);
        free(ag->lst_ptr);
        free(ag->lst_next);
        free(ag->ops);
        free(ag->msgs);
        free(ag->evs);
        free(ag->args.arena);
        free(ag->args.argv);
        free(ag->args.argvlen);
        free(ag->closed);
        free(ag->closed_part);
        free(ag->inputs);
        free(ag->qmax);
        free(ag->qactive);
        free(ag);
}
