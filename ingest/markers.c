/*
 * Ingest's watermark markers (docs/watermark.md).
 *
 * What a marker may claim. A marker for input X in sg.events partition P
 * says: every event ingest will ever write to P from X with an event time
 * up to the marker's event_time is already in P, before the marker (up to
 * the allowed lateness for out-of-order events), and, when idle, that X
 * has nothing more at all for now. So its progress is taken only from
 * batches that are acknowledged in full, with every batch before them
 * (the pipeline's acked callback, the moment the batch is committed): an
 * acknowledged record is written, so the marker, produced after that,
 * lands behind it in every partition. Records in flight are not covered;
 * after a failed delivery the pipeline rewinds to the first batch in
 * flight, and those batches were never counted, so no marker claims
 * progress for an event that is sent again later. (A record re-sent after
 * a lost commit is a duplicate: aggregate skips it by source offset.)
 *
 * Idle: everything X holds is acknowledged: the offset after the last
 * acknowledged batch (or, before the first, the group's committed offset)
 * is at X's high watermark, as librdkafka last fetched it. A record
 * consumed came with a fetch reply whose high watermark is above it, so
 * nothing of X can be in flight then.
 *
 * The clock. Each event's time counts capped at the time ingest processed
 * it: a record stamped in the future is counted (aggregate buckets it) but
 * moves the marker only up to the clock (review F3).
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "marker.h"
#include "markers.h"
#include "metrics.h"
#include "stage.h"

#define HEARTBEAT_MS  1000  /* an unchanged input's marker is repeated */
#define METADATA_MS   30000 /* sg.events' partition count is refreshed */
#define COMMITTED_MS  2000  /* at most this often, ask for committed offsets */
#define BROKER_WAIT_MS 1000 /* longest a metadata or committed query waits */

typedef struct mk_input {
        char topic[SG_TOPIC_LEN];
        int32_t partition;
        char source[SG_MARKER_SOURCE_LEN];
        int64_t progress;   /* highest acknowledged event time, capped */
        int64_t acked_next; /* offset after what is acknowledged; -1 unknown */
        int sent;           /* a marker went out (in this assignment) */
        int64_t sent_t;
        int sent_idle;
        int64_t sent_at; /* mono ms */
        int64_t busy_at; /* mono ms it was last not caught up (or assigned) */
} mk_input_t;

struct sg_markers {
        sg_producer_t *p;
        rd_kafka_t *crk; /* the consumer: high watermarks, commits */
        rd_kafka_topic_t *rkt;
        char topic[SG_TOPIC_LEN];
        int marker_ms;
        int idle_ms;
        int partitions;     /* of sg.events; 0: not known yet */
        int64_t metadata_at; /* mono ms of the last query */
        int64_t committed_at;
        mk_input_t *in;
        int cnt, cap;
        sg_marker_t *out; /* a tick's entries (cap of them) ... */
        int *due;         /* ... and the inputs they are of */
        sg_counter_t *total;
};

sg_markers_t *sg_markers_new(sg_producer_t *p, sg_consumer_t *c,
                             const char *topic, int marker_ms, int idle_ms)
{
        sg_markers_t *mk = calloc(1, sizeof(*mk));

        if (!mk)
                return NULL;
        mk->p = p;
        mk->crk = sg_consumer_handle(c);
        snprintf(mk->topic, sizeof(mk->topic), "%s", topic);
        mk->rkt = rd_kafka_topic_new(sg_producer_handle(p), topic, NULL);
        if (!mk->rkt) {
                free(mk);
                return NULL;
        }
        mk->marker_ms = marker_ms;
        mk->idle_ms = idle_ms;
        mk->metadata_at = mk->committed_at = sg_mono_ms() - METADATA_MS;
        mk->total = sg_counter("markers_total");
        return mk;
}

void sg_markers_destroy(sg_markers_t *mk)
{
        if (!mk)
                return;
        rd_kafka_topic_destroy(mk->rkt);
        free(mk->in);
        free(mk->out);
        free(mk->due);
        free(mk);
}

static mk_input_t *find(sg_markers_t *mk, const char *topic, int32_t part)
{
        for (int i = 0; i < mk->cnt; i++)
                if (mk->in[i].partition == part &&
                    strcmp(mk->in[i].topic, topic) == 0)
                        return &mk->in[i];
        return NULL;
}

static int grow(sg_markers_t *mk, int cap)
{
        mk_input_t *in = realloc(mk->in, (size_t)cap * sizeof(*in));
        sg_marker_t *out;
        int *due;

        if (!in)
                return -1;
        mk->in = in;
        if (!(out = realloc(mk->out, (size_t)cap * sizeof(*out))))
                return -1;
        mk->out = out;
        if (!(due = realloc(mk->due, (size_t)cap * sizeof(*due))))
                return -1;
        mk->due = due;
        mk->cap = cap;
        return 0;
}

void sg_markers_rebalance(sg_markers_t *mk, int assign,
                          const rd_kafka_topic_partition_list_t *parts)
{
        /* Eager protocol: an assignment replaces the set; what another
         * instance acknowledged meanwhile is learnt again (committed). */
        if (assign || !parts) {
                mk->cnt = 0;
        } else {
                for (int k = 0; k < parts->cnt; k++) {
                        mk_input_t *e = find(mk, parts->elems[k].topic,
                                             parts->elems[k].partition);

                        if (e)
                                *e = mk->in[--mk->cnt];
                }
        }
        if (!assign || !parts)
                return;
        if (parts->cnt > mk->cap && grow(mk, parts->cnt) == -1) {
                sg_error("event=markers_unavailable msg=\"out of "
                         "memory: no watermark markers\"");
                return;
        }
        for (int k = 0; k < parts->cnt; k++) {
                mk_input_t *e = &mk->in[mk->cnt++];

                memset(e, 0, sizeof(*e));
                snprintf(e->topic, sizeof(e->topic), "%s",
                         parts->elems[k].topic);
                e->partition = parts->elems[k].partition;
                snprintf(e->source, sizeof(e->source), "%s/%d", e->topic,
                         (int)e->partition);
                e->progress = INT64_MIN;
                e->acked_next = -1;
                e->busy_at = sg_mono_ms();
        }
        /* Committed offsets of the new set: ask at the next tick. */
        mk->committed_at = sg_mono_ms() - COMMITTED_MS;
}

void sg_markers_acked(void *opaque, const rd_kafka_topic_partition_list_t *next,
                      const int64_t *max_t)
{
        sg_markers_t *mk = opaque;

        for (int i = 0; i < next->cnt; i++) {
                mk_input_t *e = find(mk, next->elems[i].topic,
                                     next->elems[i].partition);

                if (!e)
                        continue;
                if (next->elems[i].offset > e->acked_next)
                        e->acked_next = next->elems[i].offset;
                if (max_t[i] > e->progress)
                        e->progress = max_t[i];
        }
}

/* sg.events' partition count, asked at most every METADATA_MS (every
 * second while unknown). */
static void partitions_refresh(sg_markers_t *mk, int64_t now)
{
        const struct rd_kafka_metadata *md;
        rd_kafka_resp_err_t err;

        if (now - mk->metadata_at < (mk->partitions ? METADATA_MS : 1000))
                return;
        mk->metadata_at = now;
        err = rd_kafka_metadata(sg_producer_handle(mk->p), 0, mk->rkt, &md,
                                BROKER_WAIT_MS);
        if (err) {
                sg_warn("event=metadata_failed topic=%s err=%s", mk->topic,
                        rd_kafka_err2name(err));
                return;
        }
        if (md->topic_cnt == 1 && !md->topics[0].err &&
            md->topics[0].partition_cnt > 0) {
                if (md->topics[0].partition_cnt != mk->partitions)
                        sg_info("event=markers_partitions topic=%s "
                                "partitions=%d",
                                mk->topic, md->topics[0].partition_cnt);
                mk->partitions = md->topics[0].partition_cnt;
        }
        rd_kafka_metadata_destroy(md);
}

/*
 * Before a partition's first acknowledged batch, where the group stands on
 * it: its committed offset (whoever committed it had everything below
 * acknowledged), or with none its low watermark (auto.offset.reset is
 * earliest). An input caught up before a restart is idle again at once.
 */
static void committed_learn(sg_markers_t *mk, int64_t now)
{
        rd_kafka_topic_partition_list_t *l;

        if (now - mk->committed_at < COMMITTED_MS)
                return;
        l = rd_kafka_topic_partition_list_new(16);
        for (int i = 0; i < mk->cnt; i++)
                if (mk->in[i].acked_next < 0)
                        rd_kafka_topic_partition_list_add(
                            l, mk->in[i].topic, mk->in[i].partition);
        if (l->cnt == 0) {
                rd_kafka_topic_partition_list_destroy(l);
                return;
        }
        mk->committed_at = now;
        if (rd_kafka_committed(mk->crk, l, BROKER_WAIT_MS) ==
            RD_KAFKA_RESP_ERR_NO_ERROR) {
                for (int k = 0; k < l->cnt; k++) {
                        mk_input_t *e =
                            find(mk, l->elems[k].topic, l->elems[k].partition);
                        int64_t lo, hi, off = l->elems[k].offset;

                        if (!e || l->elems[k].err || e->acked_next >= 0)
                                continue;
                        if (off < 0 && rd_kafka_get_watermark_offsets(
                                           mk->crk, e->topic, e->partition,
                                           &lo, &hi) == 0 &&
                            lo >= 0)
                                off = lo;
                        if (off >= 0)
                                e->acked_next = off;
                }
        }
        rd_kafka_topic_partition_list_destroy(l);
}

/* 1 when everything the input holds is acknowledged (see the top). */
static int is_idle(sg_markers_t *mk, const mk_input_t *e)
{
        int64_t lo, hi;

        if (rd_kafka_get_watermark_offsets(mk->crk, e->topic, e->partition,
                                           &lo, &hi) != 0 ||
            hi < 0)
                return 0;
        if (e->acked_next >= 0)
                return e->acked_next >= hi;
        return lo >= 0 && lo == hi;
}

int sg_markers_tick(sg_markers_t *mk, int final)
{
        int64_t now = sg_mono_ms();
        int sent = 0, n = 0, p;

        partitions_refresh(mk, now);
        committed_learn(mk, now);
        if (mk->partitions == 0)
                return 0;
        for (int i = 0; i < mk->cnt; i++) {
                mk_input_t *e = &mk->in[i];
                sg_marker_t *m = &mk->out[n];
                int changed;

                m->event_time = e->progress;
                /* Idle once caught up and quiet for idle_ms (as Flink's
                 * withIdleness): a partition caught up for a moment, or
                 * empty when assigned, may still get records older than
                 * the other inputs' progress; those must not be late. */
                if (!is_idle(mk, e)) {
                        e->busy_at = now;
                        m->idle = 0; /* also with idle_ms 0 */
                } else {
                        m->idle = now - e->busy_at >= mk->idle_ms;
                }
                changed = !e->sent || m->event_time != e->sent_t ||
                          m->idle != e->sent_idle;
                if (!(changed &&
                      (final || !e->sent ||
                       now - e->sent_at >= mk->marker_ms)) &&
                    now - e->sent_at < HEARTBEAT_MS)
                        continue;
                memcpy(m->source, e->source, sizeof(m->source));
                mk->due[n++] = i;
        }
        if (n == 0)
                return 0;
        /* One record (per SG_MARKER_MAX bytes) for all of them, in every
         * partition. */
        for (p = 0; p < mk->partitions; p++) {
                int r = sg_marker_send(mk->p, mk->topic, p, mk->out, n);

                if (r < 0)
                        break;
                sent += r;
        }
        if (sent)
                sg_counter_add(mk->total, (uint64_t)sent);
        if (p < mk->partitions)
                return sent; /* not all out: again at the next tick */
        for (int k = 0; k < n; k++) {
                mk_input_t *e = &mk->in[mk->due[k]];
                const sg_marker_t *m = &mk->out[k];

                if (!e->sent || m->event_time != e->sent_t ||
                    m->idle != e->sent_idle)
                        sg_debug("event=marker source=%s event_time=%lld "
                                 "idle=%d partitions=%d",
                                 e->source, (long long)m->event_time, m->idle,
                                 mk->partitions);
                e->sent = 1;
                e->sent_t = m->event_time;
                e->sent_idle = m->idle;
                e->sent_at = now;
        }
        return sent;
}
