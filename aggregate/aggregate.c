/*
 * The aggregate stage: the state of the sg.events partitions it is assigned
 * lives in memory (state.c); Redis is its checkpoint, written for each
 * changed partition every aggregate.checkpoint_ms (checkpoint.c), and the
 * queryable view for sg-ctl.
 * Each sg.events partition carries its own watermark: ingest writes
 * watermark markers into every partition (lib/marker.h), so no partition is
 * ever compared with another read at a different speed.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "aggregate.h"
#include "checkpoint.h"
#include "codec.h"
#include "kafka.h"
#include "log.h"
#include "marker.h"
#include "metrics.h"
#include "redis.h"
#include "stage.h"
#include "state.h"
#include "validate.h"
#include "watermark.h"
#include "window.h"

#define OUT_MAX 4096

struct sg_aggregate {
        sg_conf_t conf;
        sg_codec_t *codec;
        sg_redis_t *redis;
        sg_consumer_t *consumer;
        sg_producer_t *producer;
        ag_model_t model;
        int64_t now_ms; /* the wall clock at the batch's start */
        sg_tz_t *tz; /* aggregate.tz, NULL: aggregate.tz_offset_min */
        ag_ckpt_t ckpt;

        rd_kafka_message_t **msgs;
        sg_event_t ev;
        ag_pstate_t **parts; /* by sg.events partition */
        int part_cap;
        ag_pstate_t **todo; /* the partitions of a batch to checkpoint */
        ag_inputs_t inputs;  /* every input partition, from the metadata */
        int64_t lateness_ms;
        unsigned early_wins; /* aggregate.early_windows as a window mask */
        long long batches, batch_events, batch_round_trips;
        int64_t overflow_logged;
        int64_t ckpt_at; /* sg_mono_ms of the last checkpoint */
        int64_t epoch_at; /* sg_mono_ms of the last epoch check */
        int halted;       /* Redis lost its data: nothing applied */

        unsigned char out[OUT_MAX];

        /* events_total by result and sg_event_type_t */
        sg_counter_t *applied[4], *skipped[4], *late[4];
        sg_counter_t *snapshots, *running, *finals, *scripts, *bad, *overflow, *markers,
            *fenced;
        sg_gauge_t *state_bytes;
        sg_histogram_t *batch_seconds;
};

static int type_ix(sg_event_type_t t)
{
        return t >= SG_EV_IMPRESSION && t <= SG_EV_CONVERSION ? (int)t : 0;
}

/* ------------------------------------------------------------ partitions */

static ag_pstate_t *part_at(sg_aggregate_t *ag, int32_t p)
{
        if (p < 0)
                return NULL;
        if (p >= ag->part_cap) {
                int cap = ag->part_cap ? ag->part_cap : 16;
                ag_pstate_t **n;

                while (cap <= p)
                        cap *= 2;
                n = realloc(ag->parts, cap * sizeof(*n));
                if (!n)
                        return NULL;
                memset(n + ag->part_cap, 0,
                       (cap - ag->part_cap) * sizeof(*n));
                ag->parts = n;
                {
                        ag_pstate_t **t = realloc(ag->todo, cap * sizeof(*t));

                        if (!t)
                                return NULL;
                        ag->todo = t;
                }
                ag->part_cap = cap;
        }
        return ag->parts[p];
}

static void part_drop(sg_aggregate_t *ag, int32_t p)
{
        if (p < 0 || p >= ag->part_cap || !ag->parts[p])
                return;
        ag_pstate_destroy(ag->parts[p]);
        ag->parts[p] = NULL;
}

static int collect(sg_aggregate_t *ag);

/* Loads partition p from its checkpoint in Redis (retrying until Redis
 * answers or the stage stops). Returns the offset to consume from, or -1
 * when none is stored (the Kafka commit then decides). */
static int64_t part_load(sg_aggregate_t *ag, int32_t p)
{
        ag_pstate_t *ps;

        /* The replies to checkpoints in flight come first on the
         * connection (and say whether their partitions stand). */
        if (ag->ckpt.fl_cnt)
                collect(ag);

        part_drop(ag, p);
        if (!part_at(ag, p) && p >= ag->part_cap)
                return -1;
        ps = ag_pstate_load(&ag->ckpt, p);
        if (!ps)
                return -1;
        ag->parts[p] = ps;
        sg_info("event=partition_resume partition=%d offset=%" PRId64
                " scopes=%zu watermark=%" PRId64 " state_bytes=%zu",
                (int)p, ps->off, ps->st->scope_cnt, ps->wm,
                ag_part_memory(ps->st));
        return ps->off;
}

static void on_rebalance(void *opaque, int assign,
                         rd_kafka_topic_partition_list_t *parts)
{
        sg_aggregate_t *ag = opaque;

        for (int i = 0; i < parts->cnt; i++) {
                rd_kafka_topic_partition_t *tp = &parts->elems[i];

                if (assign) {
                        int64_t off = part_load(ag, tp->partition);
                        if (off >= 0)
                                tp->offset = off;
                } else {
                        /* Revoked: its state goes; a batch in hand for it
                         * is not applied (the new owner does). */
                        part_drop(ag, tp->partition);
                }
        }
}

/* Seeks partition p to where its checkpoint stands (after a reload). */
static void part_seek(sg_aggregate_t *ag, int32_t p, int64_t off)
{
        rd_kafka_topic_partition_list_t *l;
        rd_kafka_error_t *err;

        if (off < 0)
                return;
        l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, ag->conf.topics.events, p)
            ->offset = off;
        err = rd_kafka_seek_partitions(sg_consumer_handle(ag->consumer), l,
                                       5000);
        if (err) {
                sg_warn("event=seek_failed partition=%d offset=%" PRId64
                        " err=\"%s\"",
                        (int)p, off, rd_kafka_error_string(err));
                rd_kafka_error_destroy(err);
        }
        rd_kafka_topic_partition_list_destroy(l);
}

/* Throws away what partition p did since its checkpoint: its state is
 * loaded again and its consumer seeks there (to the first record it read,
 * when no checkpoint is stored yet). */
static void part_reset(sg_aggregate_t *ag, int32_t p)
{
        int64_t first = ag->parts[p] ? ag->parts[p]->first : -1;
        int64_t off = part_load(ag, p);

        part_seek(ag, p, off >= 0 ? off : first);
}

/* ----------------------------------------------------- Redis data loss */

/*
 * Whether Redis still holds the data the partitions stand on (the epoch,
 * sg_redis_epoch_ok): a Redis that lost it (restart without persistence,
 * failover to an empty replica, FLUSHALL) would have aggregate count again
 * from empty state. Once lost, nothing is applied, checkpointed or
 * committed; when the data comes back (restored), every partition is
 * loaded again from it and consumed from its checkpoint. 1 lost, 0 not.
 */
static int data_lost(sg_aggregate_t *ag)
{
        int ok;

        /* The replies to checkpoints in flight come first on the
         * connection (collect looks again if one was fenced). */
        if (ag->ckpt.fl_cnt)
                collect(ag);
        ok = sg_redis_epoch_ok(ag->redis);
        ag->epoch_at = sg_mono_ms();
        if (ok == 1 && ag->halted) {
                ag->halted = 0;
                for (int p = 0; p < ag->part_cap; p++)
                        if (ag->parts[p])
                                part_reset(ag, p);
        } else if (ok == 0) {
                ag->halted = 1;
        }
        return ag->halted;
}

/* ------------------------------------------------------------- output */

static int send_snapshot(void *opaque, const sg_snapshot_t *s)
{
        sg_aggregate_t *ag = opaque;
        int n =
            sg_codec_encode_snapshot(ag->codec, s, ag->out, sizeof(ag->out));

        if (n < 0) {
                sg_error("event=encode_failed what=snapshot err=\"%s\"",
                         sg_codec_error(ag->codec));
                return -1;
        }
        sg_counter_add(s->final                       ? ag->finals
                       : s->window_end > s->watermark ? ag->running
                                                      : ag->snapshots,
                       1);
        return sg_producer_send(ag->producer, ag->conf.topics.aggregates, -1,
                                s->channel, strlen(s->channel), ag->out, n,
                                NULL);
}

/* --------------------------------------------------------------- batch */

static int deadletter(sg_aggregate_t *ag, const rd_kafka_message_t *m,
                      const char *reason, const char *detail)
{
        return sg_producer_deadletter(ag->producer, ag->conf.topics.deadletter,
                                      m, reason, detail);
}

/* Applies one record of partition ps: a marker or an event. 0, or -1 if
 * the batch must be redone. */
static int record(sg_aggregate_t *ag, ag_pstate_t *ps,
                  const rd_kafka_message_t *m)
{
        sg_event_t *ev = &ag->ev;
        sg_marker_reader_t rd;
        sg_marker_t mk;
        char detail[256];
        int in, rc;

        rc = sg_marker_open(m, &rd, detail, sizeof(detail));
        if (rc == 1) {
                sg_counter_add(ag->markers, 1);
                while (sg_marker_next(&rd, &mk)) {
                        in = ag_input_of(&ag->inputs, ps, mk.source);
                        if (in >= 0)
                                sg_watermark_observe(&ps->wmi[in],
                                                     mk.event_time, mk.idle);
                }
                return 0;
        }
        if (rc == -1) {
                sg_counter_add(ag->bad, 1);
                return deadletter(ag, m, SG_ERR_AVRO_DECODE, detail) ? -1 : 0;
        }
        if (sg_codec_decode_normalized(ag->codec, m->payload, m->len, ev) ==
            -1) {
                snprintf(detail, sizeof(detail), "%s",
                         sg_codec_error(ag->codec));
                sg_counter_add(ag->bad, 1);
                return deadletter(ag, m, SG_ERR_AVRO_DECODE, detail) ? -1 : 0;
        }
        in = ag_input_at(&ag->inputs, ps, ev->src_topic, ev->src_partition);
        if (in >= 0 && ev->src_offset <= ps->src_off[in]) {
                /* Re-produced by ingest after a crash: counted. */
                sg_counter_add(ag->skipped[type_ix(ev->type)], 1);
                return 0;
        }
        if (in >= 0)
                ag_input_event(ps, in, ev->src_offset, ev->event_time,
                               ag->now_ms);
        if (ps->wm_batch != INT64_MIN &&
            sg_window_is_closed(ev->event_time, ag->model.kpi_ms,
                                ps->wm_batch)) {
                snprintf(detail, sizeof(detail),
                         "event_time %" PRId64
                         " is in a window closed by watermark %" PRId64,
                         ev->event_time, ps->wm_batch);
                sg_counter_add(ag->late[type_ix(ev->type)], 1);
                return deadletter(ag, m, SG_ERR_LATE, detail) ? -1 : 0;
        }
        if (ag_part_apply(ps->st, ev) == -1) {
                sg_error("event=oom what=state partition=%d", (int)ps->id);
                return -1;
        }
        sg_counter_add(ag->applied[type_ix(ev->type)], 1);
        return 0;
}

/* The snapshots and final windows of partition ps at its watermark. */
static int emit(sg_aggregate_t *ag, ag_pstate_t *ps)
{
        int64_t wm = ag_pstate_watermark(ps, &ag->inputs, ag->lateness_ms);

        ps->wm = wm;
        if (ag_part_emit(ps->st, wm, send_snapshot, ag) < 0)
                return -1;
        /* The running windows, at most every early_ms: rules may trip on
         * them before the watermark completes them. */
        if (ag->conf.aggregate.early_ms > 0 && ag->early_wins &&
            sg_mono_ms() - ps->early_at >= ag->conf.aggregate.early_ms) {
                ps->early_at = sg_mono_ms();
                if (ag_part_emit_running(ps->st, wm, ag->now_ms,
                                         ag->lateness_ms + ag->model.snap_ms,
                                         ag->early_wins, send_snapshot,
                                         ag) < 0)
                        return -1;
        }
        return 0;
}

static void overflow_note(sg_aggregate_t *ag, ag_pstate_t *ps)
{
        if (!ps->st->overflow)
                return;
        sg_counter_add(ag->overflow, (uint64_t)ps->st->overflow);
        ps->st->overflow = 0;
        if (sg_mono_ms() - ag->overflow_logged >= 60000) {
                ag->overflow_logged = sg_mono_ms();
                sg_warn("event=scope_overflow partition=%d max_scopes=%d "
                        "msg=\"new scopes are counted as _other\"",
                        (int)ps->id, ag->conf.aggregate.max_scopes);
        }
}

/* Throws away what the partitions did since their checkpoint (a failed
 * batch, send or checkpoint): their state is loaded again and their
 * consumer seeks there. */
static void parts_reset_pending(sg_aggregate_t *ag)
{
        for (int p = 0; p < ag->part_cap; p++)
                if (ag->parts[p] && (ag->parts[p]->pending ||
                                     ag->parts[p]->in_batch))
                        part_reset(ag, p);
}

/* Commits the checkpointed offsets to Kafka too: they only matter when
 * Redis lost everything (a restart then starts from there). */
static void commit_checkpointed(sg_aggregate_t *ag, ag_pstate_t **done,
                                int n)
{
        rd_kafka_topic_partition_list_t *l;
        rd_kafka_resp_err_t err;

        if (!n)
                return;
        l = rd_kafka_topic_partition_list_new(n);
        for (int k = 0; k < n; k++)
                rd_kafka_topic_partition_list_add(l, ag->conf.topics.events,
                                                  done[k]->id)
                    ->offset = done[k]->off;
        err = rd_kafka_commit(sg_consumer_handle(ag->consumer), l, 1);
        if (err)
                sg_warn("event=commit_failed err=%s", rd_kafka_err2name(err));
        rd_kafka_topic_partition_list_destroy(l);
}

/* The outcomes of the checkpoints in flight: a partition checkpointed has
 * its offset committed to Kafka too; one that was not reads again from
 * where Redis says it stands. 0, or -1 when partitions were loaded again. */
static int collect(sg_aggregate_t *ag)
{
        ag_pstate_t **done = ag->todo;
        ag_flight_t *f;
        int n = ag_ckpt_collect(&ag->ckpt, &f), ok = 0, lost = 0;

        /* A fence is also what a Redis that lost everything looks like:
         * found out before any partition is loaded from it. */
        for (int k = 0; k < n; k++)
                if (f[k].rc == AG_CKPT_FENCED) {
                        data_lost(ag);
                        break;
                }
        for (int k = 0; k < n; k++) {
                ag_pstate_t *ps = f[k].id < ag->part_cap ? ag->parts[f[k].id]
                                                          : NULL;

                sg_counter_add(ag->scripts, 1);
                if (f[k].rc == AG_CKPT_FENCED)
                        sg_counter_add(ag->fenced, 1);
                if (!ps)
                        continue; /* revoked meanwhile */
                if (f[k].rc != AG_CKPT_OK) {
                        lost = 1;
                        part_reset(ag, f[k].id);
                        continue;
                }
                ps->off = f[k].next;
                done[ok++] = ps;
        }
        commit_checkpointed(ag, done, ok);
        return lost ? -1 : 0;
}

/* Sends every partition changed since its checkpoint, after the outcome
 * of the previous checkpoint: what the partitions sent is delivered first
 * (a crash in between sends it again, rules and sink drop repeats; it is
 * never lost), then one pipelined write of fenced scripts, which Redis runs
 * while the next batches are applied. 0, or -1 when partitions were loaded
 * again from Redis. */
static int checkpoint(sg_aggregate_t *ag, int flush_ms)
{
        int sent = 0, failed = 0;

        ag->ckpt_at = sg_mono_ms();
        if (collect(ag) == -1 || ag->halted)
                return -1;
        for (int p = 0; p < ag->part_cap && !sent; p++)
                sent = ag->parts[p] && ag->parts[p]->pending;
        if (!sent)
                return 0;
        if (sg_producer_flush(ag->producer, flush_ms) != 0) {
                parts_reset_pending(ag);
                return -1;
        }
        for (int p = 0; p < ag->part_cap; p++) {
                ag_pstate_t *ps = ag->parts[p];

                if (!ps || !ps->pending)
                        continue;
                if (ag_ckpt_send(&ag->ckpt, ps) == -1) {
                        sg_error("event=oom what=checkpoint partition=%d", p);
                        failed = 1; /* still pending: loaded again below */
                        continue;
                }
                ps->pending = 0;
                overflow_note(ag, ps);
                ag_part_evict(ps->st, ps->wm);
        }
        ag_ckpt_push(&ag->ckpt);
        if (failed) {
                collect(ag);
                parts_reset_pending(ag);
                return -1;
        }
        return 0;
}

static int checkpoint_due(const sg_aggregate_t *ag)
{
        return sg_mono_ms() - ag->ckpt_at >= ag->conf.aggregate.checkpoint_ms;
}

static int batch(sg_aggregate_t *ag, int cnt)
{
        int failed = 0;

        ag->now_ms = sg_now_ms();
        for (int p = 0; p < ag->part_cap; p++)
                if (ag->parts[p])
                        ag->parts[p]->in_batch = 0;
        for (int i = 0; i < cnt; i++) {
                ag_pstate_t *ps = part_at(ag, ag->msgs[i]->partition);

                if (ps && !ps->in_batch) {
                        ps->in_batch = 1;
                        ps->wm_batch = ps->wm;
                }
        }
        for (int i = 0; i < cnt && !failed; i++) {
                const rd_kafka_message_t *m = ag->msgs[i];
                ag_pstate_t *ps = part_at(ag, m->partition);

                if (!ps)
                        continue; /* not ours (revoked meanwhile) */
                if (m->offset < ps->next)
                        continue; /* read again after a seek */
                if (ps->first < 0)
                        ps->first = m->offset;
                if (record(ag, ps, m) == -1)
                        failed = 1;
                ps->next = m->offset + 1;
        }
        for (int p = 0; p < ag->part_cap && !failed; p++) {
                ag_pstate_t *ps = ag->parts[p];

                if (ps && ps->in_batch && emit(ag, ps) == -1)
                        failed = 1;
        }
        if (failed) {
                /* Wait out sends in flight, then read again, each partition
                 * from its checkpoint. */
                sg_producer_flush(ag->producer, 60000);
                sg_consumer_rewind(ag->consumer, ag->msgs, cnt);
                parts_reset_pending(ag);
                return -1;
        }
        for (int p = 0; p < ag->part_cap; p++)
                if (ag->parts[p] && ag->parts[p]->in_batch) {
                        ag->parts[p]->pending = 1;
                        ag->parts[p]->in_batch = 0;
                }
        return checkpoint_due(ag) ? checkpoint(ag, 60000) : 0;
}

int sg_aggregate_run(sg_aggregate_t *ag)
{
        int64_t last_stats = sg_mono_ms();

        while (!sg_stop) {
                int cnt;

                /* Once a second, and before anything while stopped; before
                 * a batch is taken, so that a partition loaded again
                 * (restored, or its checkpoint in flight failed) is read
                 * from where it now stands, not from a batch fetched
                 * before its seek. */
                if (ag->halted || sg_mono_ms() - ag->epoch_at >= 1000)
                        data_lost(ag);
                cnt = sg_consumer_batch(ag->consumer, ag->msgs,
                                        ag->conf.aggregate.batch_size,
                                        ag->conf.aggregate.batch_ms);
                if (ag->halted) {
                        if (cnt) {
                                sg_warn("event=batch_refused "
                                        "reason=redis_data_lost records=%d",
                                        cnt);
                                sg_consumer_rewind(ag->consumer, ag->msgs,
                                                   cnt);
                                sg_consumer_batch_free(ag->msgs, cnt);
                        }
                        sg_sleep_ms(1000);
                        continue;
                }
                if (cnt) {
                        int64_t t0 = sg_mono_us();
                        long long rt0 = sg_redis_round_trips(ag->redis);

                        if (batch(ag, cnt) == -1) {
                                sg_warn("event=batch_retry records=%d", cnt);
                                sg_sleep_ms(500);
                        } else {
                                ag->batches++;
                                ag->batch_round_trips +=
                                    sg_redis_round_trips(ag->redis) - rt0;
                                ag->batch_events += cnt;
                                sg_histogram_observe(
                                    ag->batch_seconds,
                                    (double)(sg_mono_us() - t0) / 1e6);
                        }
                        sg_consumer_batch_free(ag->msgs, cnt);
                } else if (checkpoint(ag, 60000) == -1) {
                        /* Caught up: what is pending is written now. */
                        sg_sleep_ms(500);
                }
                /* The rest of a checkpoint Redis could not take yet. */
                ag_ckpt_push(&ag->ckpt);
                sg_producer_poll(ag->producer);
                if (sg_mono_ms() - last_stats >= 10000) {
                        size_t bytes = 0;

                        for (int p = 0; p < ag->part_cap; p++)
                                if (ag->parts[p])
                                        bytes +=
                                            ag_part_memory(ag->parts[p]->st);
                        sg_gauge_set(ag->state_bytes, (double)bytes);
                        sg_metrics_log();
                        last_stats = sg_mono_ms();
                }
        }
        /* What changed since the last checkpoint is written on the way
         * out, so that a restart does not read it again. */
        if (checkpoint(ag, 5000) == -1 || collect(ag) == -1)
                sg_warn("event=stop_checkpoint_failed msg=\"the next owner "
                        "reads again from the last checkpoint\"");
        sg_metrics_log();
        /* Redis round trips of the batches alone (one checkpoint per
         * partition per batch): they grow with partitions, not with events
         * (aggregate_test.c). */
        sg_info("event=stop redis_commands=%lld redis_round_trips=%lld "
                "batches=%lld batch_events=%lld batch_round_trips=%lld",
                sg_redis_commands(ag->redis), sg_redis_round_trips(ag->redis),
                ag->batches, ag->batch_events, ag->batch_round_trips);
        return 0;
}

/* -------------------------------------------------------- new / destroy */

/* Learns every input partition from the broker, so that each holds the
 * watermark back until its first marker (or event) says how far it is. */
static void inputs_load(sg_aggregate_t *ag)
{
        const char *topics[3] = {ag->conf.topics.impressions,
                                 ag->conf.topics.clicks,
                                 ag->conf.topics.conversions};
        rd_kafka_t *rk = sg_consumer_handle(ag->consumer);

        for (int t = 0; t < 3 && !sg_stop; t++) {
                const struct rd_kafka_metadata *md;
                rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topics[t], NULL);
                rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
                char name[SG_TOPIC_LEN + 16];

                /* 10 s at most, in steps that notice a stop signal. */
                for (int k = 0; k < 10 && !sg_stop &&
                                err == RD_KAFKA_RESP_ERR__TIMED_OUT;
                     k++)
                        err = rd_kafka_metadata(rk, 0, rkt, &md, 1000);
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
                        snprintf(name, sizeof(name), "%s/%d", topics[t],
                                 md->topics[0].partitions[p].id);
                        ag_inputs_add(&ag->inputs, name);
                }
                rd_kafka_metadata_destroy(md);
        }
}

/*
 * Whether Redis should hold aggregate's checkpoints: its group committed
 * offsets on sg.events (it commits only what a checkpoint in Redis holds),
 * yet no partition's sg:{pN}:off is there. Then the Redis it starts on lost
 * them while it did not run (sg_redis_epoch_fenced). 0 when unsure.
 */
static int checkpoints_gone(sg_aggregate_t *ag)
{
        rd_kafka_t *rk = sg_consumer_handle(ag->consumer);
        rd_kafka_topic_t *rkt =
            rd_kafka_topic_new(rk, ag->conf.topics.events, NULL);
        const struct rd_kafka_metadata *md;
        rd_kafka_topic_partition_list_t *l;
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
        int committed = 0, stored = 0;

        rd_kafka_topic_destroy(rkt);
        if (err)
                return 0;
        if (md->topic_cnt != 1 || md->topics[0].err) {
                rd_kafka_metadata_destroy(md);
                return 0;
        }
        l = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
        for (int p = 0; p < md->topics[0].partition_cnt; p++)
                rd_kafka_topic_partition_list_add(
                    l, ag->conf.topics.events, md->topics[0].partitions[p].id);
        rd_kafka_metadata_destroy(md);
        if (!rd_kafka_committed(rk, l, 10000))
                for (int i = 0; i < l->cnt; i++)
                        committed += !l->elems[i].err && l->elems[i].offset >= 0;
        for (int i = 0; committed && i < l->cnt && !stored; i++) {
                redisReply *r = sg_redis_command(ag->redis,
                                                 "EXISTS sg:{p%d}:off",
                                                 (int)l->elems[i].partition);

                stored = !r || r->type != REDIS_REPLY_INTEGER || r->integer;
                if (r)
                        freeReplyObject(r);
        }
        rd_kafka_topic_partition_list_destroy(l);
        return committed && !stored;
}

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

        if (!ag) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        ag->conf = *conf;
        conf = &ag->conf;
#define a (&conf->aggregate)
        if (ag_model_init(&ag->model, a->bucket_s, a->windows, a->snapshot_s,
                          a->kpi_window_s, a->tz_offset_min, a->freq_cap,
                          a->click_ttl_s, a->retention_s, a->max_sources,
                          a->max_scopes, a->max_clicks, errstr,
                          errstr_size) == -1)
                goto err;
        ag->model.max_devices = a->max_devices;
        if (a->tz[0] && !(ag->tz = sg_tz_new(a->tz, errstr, errstr_size)))
                goto err;
        ag->model.tz = ag->tz;
        ag->lateness_ms = (int64_t)a->lateness_s * 1000;
        {
                int mask = sg_window_mask(a->early_windows, ag->model.wins,
                                          ag->model.win_cnt, errstr,
                                          errstr_size);

                if (mask == -1)
                        goto err;
                ag->early_wins = (unsigned)mask;
        }
        ag->msgs = calloc(a->batch_size, sizeof(*ag->msgs));
        if (!ag->msgs) {
                snprintf(errstr, errstr_size, "out of memory");
                goto err;
        }
        ag->codec = sg_codec_new(conf->schemas_dir, errstr, errstr_size);
        if (!ag->codec)
                goto err;
        ag->redis = sg_redis_new(conf->redis, 0, errstr, errstr_size);
        if (!ag->redis)
                goto err;
        ag_ckpt_init(&ag->ckpt, ag->redis, &ag->model, &ag->inputs);
        ag->producer =
            sg_producer_new(conf, "sg-aggregate", errstr, errstr_size);
        if (!ag->producer)
                goto err;
        for (int t = SG_EV_IMPRESSION; t <= SG_EV_CONVERSION; t++) {
                ag->applied[t] = events_counter(t, "applied");
                ag->skipped[t] = events_counter(t, "redelivered");
                ag->late[t] = events_counter(t, "late");
        }
        ag->bad = events_counter(SG_EV_NONE, "undecodable");
        ag->snapshots = sg_counter("snapshots_total{kind=\"rolling\"}");
        ag->running = sg_counter("snapshots_total{kind=\"running\"}");
        ag->finals = sg_counter("snapshots_total{kind=\"final\"}");
        ag->scripts = sg_counter("redis_scripts_total");
        ag->overflow = sg_counter("scope_overflow_total");
        ag->markers = sg_counter("watermark_markers_total");
        ag->fenced = sg_counter("checkpoint_fenced_total");
        ag->state_bytes = sg_gauge("state_bytes");
        ag->batch_seconds =
            sg_histogram("batch_duration_seconds", sg_metrics_batch_buckets,
                         sg_metrics_batch_bucket_cnt);
        topics[0] = conf->topics.events;
        ag->consumer = sg_consumer_new(conf, "aggregate", topics, 1,
                                       on_rebalance, ag, errstr, errstr_size);
        if (!ag->consumer)
                goto err;
        inputs_load(ag);
        /* Before any partition is assigned (and loaded). */
        sg_redis_epoch_fenced(ag->redis, checkpoints_gone(ag));
        if (sg_redis_epoch_start(ag->redis, "aggregate") == -1) {
                snprintf(errstr, errstr_size, "stopped");
                goto err;
        }
        ag->halted = !sg_redis_epoch_ok(ag->redis);
        sg_info("event=start inputs=%d in=%s out=%s bucket_s=%d windows=%s "
                "snapshot_s=%d kpi_window_s=%d lateness_s=%d",
                ag->inputs.cnt, conf->topics.events, conf->topics.aggregates,
                a->bucket_s, a->windows, a->snapshot_s, a->kpi_window_s,
                a->lateness_s);
#undef a
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
        sg_producer_destroy(ag->producer);
        for (int p = 0; p < ag->part_cap; p++)
                part_drop(ag, p);
        free(ag->parts);
        free(ag->todo);
        ag_ckpt_fini(&ag->ckpt);
        ag_inputs_fini(&ag->inputs);
        sg_redis_destroy(ag->redis);
        sg_codec_destroy(ag->codec);
        sg_tz_destroy(ag->tz);
        free(ag->msgs);
        free(ag);
}
