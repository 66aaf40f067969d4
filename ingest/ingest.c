#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dedupe.h"
#include "givt.h"
#include "ingest.h"
#include "kafka.h"
#include "log.h"
#include "markers.h"
#include "metrics.h"
#include "schemareg.h"
#include "stage.h"
#include "validate.h"

#define NORMALIZED_MAX 4096 /* an encoded NormalizedEvent is well below */

/*
 * Per input partition: the event ids and (device, ad) clicks seen, in
 * bounded memory (docs/givt.md). Created at the partition's first record,
 * dropped when it is revoked: another instance owns it then.
 */
typedef struct input {
        char topic[SG_TOPIC_LEN];
        int32_t partition;
        sg_dedupe_t *ids;
        sg_dupclick_t *clicks;
} input_t;

struct sg_ingest {
        sg_conf_t conf;
        sg_codec_t *codec;
        sg_schemareg_t *registry; /* NULL: the file registry */
        sg_counter_t *registry_waits;
        sg_consumer_t *consumer;
        sg_producer_t *producer;
        sg_pipeline_t *pipeline; /* batches awaiting acknowledgement */
        sg_markers_t *markers;   /* watermark markers into sg.events */
        sg_validate_conf_t vc;
        rd_kafka_message_t **msgs;
        sg_event_t ev; /* reused for every record */
        int64_t ev_progress; /* what process() forwarded: its event time,
                                capped at the clock; INT64_MIN: nothing */
        unsigned char out[NORMALIZED_MAX];
        /* events_total by sg_event_type_t (0 = unknown type) */
        sg_counter_t *accepted[4], *rejected[4];
        sg_counter_t *invalid[4]; /* events_invalid_total */
        sg_counter_t *future[4];  /* events_future_total */
        sg_histogram_t *batch_seconds;
        sg_givt_t *givt;
        input_t **inputs; /* every input partition read since assigned */
        int input_cnt, input_cap;
        int input_last; /* the last one input_get() found: runs of records
                           come from one partition */
};

static void input_destroy(input_t *ip)
{
        if (!ip)
                return;
        sg_dedupe_destroy(ip->ids);
        sg_dupclick_destroy(ip->clicks);
        free(ip);
}

static int input_is(const input_t *ip, const char *topic, int32_t part)
{
        return ip->partition == part && strcmp(ip->topic, topic) == 0;
}

/* The state of an input partition, created on first use, as many as are
 * assigned (review F10: at most 1,024 once); NULL if out of memory (then
 * no dedupe for it: logged). */
static input_t *input_get(sg_ingest_t *in, const char *topic, int32_t part)
{
        char errstr[256];
        input_t *ip;

        if (in->input_last < in->input_cnt &&
            input_is(in->inputs[in->input_last], topic, part))
                return in->inputs[in->input_last];
        for (int i = 0; i < in->input_cnt; i++)
                if (input_is(in->inputs[i], topic, part))
                        return in->inputs[(in->input_last = i)];
        if (in->input_cnt == in->input_cap) {
                int cap = in->input_cap ? 2 * in->input_cap : 64;
                input_t **n = realloc(in->inputs, (size_t)cap * sizeof(*n));

                if (!n)
                        goto fail;
                in->inputs = n;
                in->input_cap = cap;
        }
        if (!(ip = calloc(1, sizeof(*ip))))
                goto fail;
        snprintf(ip->topic, sizeof(ip->topic), "%s", topic);
        ip->partition = part;
        if (in->conf.ingest.dedupe_horizon_s > 0 &&
            !(ip->ids = sg_dedupe_new(
                  (size_t)in->conf.ingest.dedupe_max_entries,
                  (int64_t)in->conf.ingest.dedupe_horizon_s * 1000, errstr,
                  sizeof(errstr))))
                goto fail_ip;
        if (in->conf.ingest.dup_click_s > 0 &&
            !(ip->clicks =
                  sg_dupclick_new((size_t)in->conf.ingest.dup_click_max_entries,
                                  (int64_t)in->conf.ingest.dup_click_s * 1000,
                                  errstr, sizeof(errstr))))
                goto fail_ip;
        in->input_last = in->input_cnt;
        in->inputs[in->input_cnt++] = ip;
        return ip;
fail_ip:
        input_destroy(ip);
fail:
        sg_error("event=dedupe_unavailable topic=%s partition=%d "
                 "msg=\"out of memory: no dedupe for this partition\"",
                 topic, (int)part);
        return NULL;
}

/*
 * Forgets what was seen on these partitions. On revocation another
 * instance takes them over; on a rewind the batch is read again and must not
 * meet itself as a duplicate (a duplicate of an event before the batch goes
 * undetected then: the price of a broker failure, see docs/givt.md).
 */
static void inputs_forget(sg_ingest_t *in,
                          const rd_kafka_topic_partition_list_t *parts)
{
        for (int i = 0; i < in->input_cnt;) {
                int hit = !parts;

                for (int k = 0; parts && k < parts->cnt && !hit; k++)
                        hit = parts->elems[k].partition ==
                                  in->inputs[i]->partition &&
                              strcmp(parts->elems[k].topic,
                                     in->inputs[i]->topic) == 0;
                if (!hit) {
                        i++;
                        continue;
                }
                input_destroy(in->inputs[i]);
                in->inputs[i] = in->inputs[--in->input_cnt];
        }
}

static void on_rebalance(void *opaque, int assign,
                         rd_kafka_topic_partition_list_t *parts)
{
        sg_ingest_t *in = opaque;

        if (in->markers && assign)
                sg_markers_rebalance(in->markers, 1, parts);
        if (assign)
                return;
        /* Commit what is acknowledged while the partitions are still ours;
         * the next owner consumes the rest again. */
        if (in->pipeline)
                sg_pipeline_drain(in->pipeline, 60000);
        inputs_forget(in, parts);
        if (in->markers)
                sg_markers_rebalance(in->markers, 0, parts);
}

/* The codec's registry lookups (sg_codec_fetch_fn). */
static int registry_fetch(void *opaque, uint32_t id, char **schema, char *err,
                          size_t err_size)
{
        sg_ingest_t *in = opaque;

        switch (sg_schemareg_get(in->registry, id, schema, err, err_size)) {
        case SG_SR_OK:
                return 0;
        case SG_SR_NOT_FOUND:
                return 1;
        default:
                return -1;
        }
}

sg_ingest_t *sg_ingest_new(const sg_conf_t *conf, char *errstr,
                           size_t errstr_size)
{
        const char *topics[3];
        sg_ingest_t *in = calloc(1, sizeof(*in));

        if (!in) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        in->conf = *conf;
        conf = &in->conf;
        in->vc.future_tolerance_ms =
            (int64_t)conf->ingest.future_tolerance_s * 1000;
        in->vc.max_money_micros = conf->ingest.max_money_micros;
        in->vc.too_old_ms = (int64_t)conf->ingest.too_old_s * 1000;
        in->msgs = calloc(conf->ingest.batch_size, sizeof(*in->msgs));
        if (!in->msgs) {
                snprintf(errstr, errstr_size, "out of memory");
                goto err;
        }
        in->codec = sg_codec_new(conf->schemas_dir, errstr, errstr_size);
        if (!in->codec)
                goto err;
        if (conf->schema_registry.urls[0]) {
                in->registry = sg_schemareg_new(&conf->schema_registry, errstr,
                                                errstr_size);
                if (!in->registry)
                        goto err;
                sg_codec_set_registry(in->codec, registry_fetch, in);
        }
        in->registry_waits = sg_counter("schema_registry_waits_total");
        in->producer = sg_producer_new(conf, "sg-ingest", errstr, errstr_size);
        if (!in->producer)
                goto err;
        topics[0] = conf->topics.impressions;
        topics[1] = conf->topics.clicks;
        topics[2] = conf->topics.conversions;
        in->givt = sg_givt_new(
            conf->ingest.bot_ua_file[0] ? conf->ingest.bot_ua_file : NULL,
            conf->ingest.dc_cidr_file[0] ? conf->ingest.dc_cidr_file : NULL,
            conf->ingest.tag_missing_ua, errstr, errstr_size);
        if (!in->givt)
                goto err;
        in->consumer = sg_consumer_new(conf, "ingest", topics, 3, on_rebalance,
                                       in, errstr, errstr_size);
        if (!in->consumer)
                goto err;
        /* [SG_EV_NONE]: a rejected record whose type is unknown. */
        for (int t = SG_EV_IMPRESSION; t <= SG_EV_CONVERSION + 1; t++) {
                int ix = t <= SG_EV_CONVERSION ? t : SG_EV_NONE;
                const char *type = ix ? sg_event_type_name(ix) : "unknown";
                char name[SG_METRICS_NAME_LEN];

                if (ix) {
                        sg_metrics_name(name, sizeof(name), "events_total",
                                        "type", type, "result", "accepted",
                                        NULL);
                        in->accepted[ix] = sg_counter(name);
                        sg_metrics_name(name, sizeof(name),
                                        "events_invalid_total", "type", type,
                                        NULL);
                        in->invalid[ix] = sg_counter(name);
                        sg_metrics_name(name, sizeof(name),
                                        "events_future_total", "type", type,
                                        NULL);
                        in->future[ix] = sg_counter(name);
                }
                sg_metrics_name(name, sizeof(name), "events_total", "type",
                                type, "result", "rejected", NULL);
                in->rejected[ix] = sg_counter(name);
        }
        in->batch_seconds =
            sg_histogram("batch_duration_seconds", sg_metrics_batch_buckets,
                         sg_metrics_batch_bucket_cnt);
        in->pipeline =
            sg_pipeline_new(in->consumer, in->producer,
                            conf->ingest.inflight_batches, in->batch_seconds);
        if (!in->pipeline) {
                snprintf(errstr, errstr_size, "out of memory");
                goto err;
        }
        in->markers = sg_markers_new(in->producer, in->consumer,
                                     conf->topics.events, conf->ingest.marker_ms,
                                     conf->ingest.idle_ms);
        if (!in->markers) {
                snprintf(errstr, errstr_size, "out of memory");
                goto err;
        }
        sg_pipeline_on_acked(in->pipeline, sg_markers_acked, in->markers);
        sg_info("event=start topics=%s,%s,%s out=%s deadletter=%s "
                "schema_registry=%s",
                topics[0], topics[1], topics[2], conf->topics.events,
                conf->topics.deadletter,
                conf->schema_registry.urls[0] ? conf->schema_registry.urls
                                              : "off");
        return in;
err:
        sg_ingest_destroy(in);
        return NULL;
}

void sg_ingest_destroy(sg_ingest_t *in)
{
        if (!in)
                return;
        sg_consumer_destroy(in->consumer);
        sg_pipeline_destroy(in->pipeline);
        sg_markers_destroy(in->markers);
        sg_producer_destroy(in->producer);
        sg_codec_destroy(in->codec);
        sg_schemareg_destroy(in->registry);
        sg_givt_destroy(in->givt);
        inputs_forget(in, NULL);
        free(in->inputs);
        free(in->msgs);
        free(in);
}

/* The type an input topic carries when a JSON record has no "type". */
static sg_event_type_t topic_default_type(const sg_ingest_t *in,
                                          const char *topic)
{
        if (strcmp(topic, in->conf.topics.impressions) == 0)
                return SG_EV_IMPRESSION;
        if (strcmp(topic, in->conf.topics.clicks) == 0)
                return SG_EV_CLICK;
        if (strcmp(topic, in->conf.topics.conversions) == 0)
                return SG_EV_CONVERSION;
        return SG_EV_NONE;
}

/* type: the event's when it decoded, else the input topic's. */
static int deadletter(sg_ingest_t *in, const rd_kafka_message_t *m,
                      sg_event_type_t type, const char *reason,
                      const char *detail)
{
        sg_counter_add(in->rejected[type <= SG_EV_CONVERSION ? type : 0], 1);
        return sg_producer_deadletter(in->producer, in->conf.topics.deadletter,
                                      m, reason, detail);
}

/*
 * sg_codec_decode_input, waiting out a schema registry that cannot be
 * asked about the record's schema id: the record is not at fault, so it is
 * neither dead-lettered nor skipped; the stage stalls (no later record is
 * read either, so order and commits stay right) and tries again with
 * backoff. -2 when stopped while waiting.
 */
static int decode(sg_ingest_t *in, const rd_kafka_message_t *m,
                  sg_event_type_t topic_type, sg_event_t *ev,
                  const char **reason, char *detail, size_t detail_size)
{
        const sg_schemareg_conf_t *rc = &in->conf.schema_registry;
        char q[512];
        int attempt, n, ms;

        for (attempt = 0;; attempt++) {
                n = sg_codec_decode_input(in->codec, m->payload, m->len,
                                          topic_type, ev, reason, detail,
                                          detail_size);
                if (n != -2)
                        break;
                ms = sg_schemareg_backoff_ms(attempt, rc->backoff_ms,
                                             rc->backoff_max_ms);
                sg_counter_add(in->registry_waits, 1);
                sg_warn("event=schema_registry_unavailable topic=%s "
                        "partition=%" PRId32 " offset=%" PRId64 " attempt=%d "
                        "retry_in_ms=%d detail=%s",
                        rd_kafka_topic_name(m->rkt), m->partition, m->offset,
                        attempt + 1, ms, sg_log_quote(q, sizeof(q), detail));
                sg_sleep_ms(ms);
                if (sg_stop)
                        return -2;
        }
        if (attempt)
                sg_info("event=schema_registry_available topic=%s "
                        "partition=%" PRId32 " offset=%" PRId64 " attempts=%d",
                        rd_kafka_topic_name(m->rkt), m->partition, m->offset,
                        attempt + 1);
        return n;
}

/* Decodes, validates and forwards one record. -1 only if producing failed
 * (the pipeline counts that against the batch); -2 if stopped while the
 * schema registry was unavailable (the record was not processed). */
static int process(sg_ingest_t *in, const rd_kafka_message_t *m, int64_t now)
{
        const char *topic = rd_kafka_topic_name(m->rkt);
        sg_event_type_t topic_type = topic_default_type(in, topic);
        sg_event_t *ev = &in->ev;
        const char *reason = NULL;
        char detail[256];
        input_t *ip;
        size_t tlen;
        int n;

        in->ev_progress = INT64_MIN;
        if (m->len > (size_t)in->conf.ingest.max_message_bytes) {
                snprintf(detail, sizeof(detail),
                         "record of %zu bytes above ingest.max_message_bytes "
                         "%d",
                         m->len, in->conf.ingest.max_message_bytes);
                return deadletter(in, m, topic_type, SG_ERR_OVERSIZE, detail);
        }
        /* A failed decode leaves ev zeroed: its type is SG_EV_NONE. */
        switch (decode(in, m, topic_type, ev, &reason, detail,
                       sizeof(detail))) {
        case -1:
                return deadletter(in, m, topic_type, reason, detail);
        case -2:
                return -2;
        }
        /* Normalized first, so that a name of only white space is empty. */
        if (in->conf.ingest.normalize_names)
                sg_validate_normalize(ev);
        if (sg_validate_event(ev, &in->vc, now, &reason, detail,
                              sizeof(detail)) == -1)
                return deadletter(in, m, ev->type, reason, detail);

        ip = input_get(in, topic, m->partition);
        if (ip && ip->ids &&
            sg_dedupe_check(ip->ids, ev->event_id, ev->event_time) == 1) {
                snprintf(detail, sizeof(detail),
                         "event_id %.128s seen before on this partition "
                         "within %d s",
                         ev->event_id, in->conf.ingest.dedupe_horizon_s);
                return deadletter(in, m, ev->type, SG_ERR_DUPLICATE, detail);
        }
        ev->ivt_mask = 0;
        ev->ivt_reason[0] = '\0';
        sg_givt_tag(in->givt, ev);
        if (ev->type == SG_EV_CLICK && ip && ip->clicks && ev->has_device_id &&
            ev->has_ad_id &&
            sg_dupclick_check(ip->clicks, ev->device_id, ev->ad_id,
                              ev->event_time) == 1)
                sg_givt_mark(ev, SG_IVT_DUP_CLICK, SG_IVT_REASON_DUP_CLICK);
        /* Not snprintf: that was ~5% of process()'s instructions. */
        tlen = strnlen(topic, sizeof(ev->src_topic) - 1);
        memcpy(ev->src_topic, topic, tlen);
        ev->src_topic[tlen] = '\0';
        ev->src_partition = m->partition;
        ev->src_offset = m->offset;

        n = sg_codec_encode_normalized(in->codec, ev, in->out, sizeof(in->out));
        if (n < 0) {
                snprintf(detail, sizeof(detail), "normalize: %s",
                         sg_codec_error(in->codec));
                return deadletter(in, m, ev->type, SG_ERR_BAD_VALUE, detail);
        }
        sg_counter_add(in->accepted[ev->type], 1);
        if (ev->ivt_mask)
                sg_counter_add(in->invalid[ev->type], 1);
        /* A future event is counted, but moves the input's progress only
         * up to the clock (docs/watermark.md); the metric counts exactly
         * the events so capped. */
        if (ev->event_time > now)
                sg_counter_add(in->future[ev->type], 1);
        in->ev_progress = ev->event_time < now ? ev->event_time : now;
        /* Keyed by channel: a channel's events stay in one partition, in
         * order, so its aggregate state has a single owner. */
        return sg_producer_send(in->producer, in->conf.topics.events, -1,
                                ev->channel, strlen(ev->channel), in->out, n,
                                NULL);
}

/*
 * Batches are pipelined: while the records a batch produced await their
 * acknowledgements, the next batches are consumed and processed (up to
 * ingest.inflight_batches). A batch's input offsets are committed only
 * once it and every batch before it are acknowledged; if a record failed,
 * every batch in flight is consumed again (aggregate skips what it already
 * applied, by source offset).
 */
int sg_ingest_run(sg_ingest_t *in)
{
        int64_t last_stats = sg_mono_ms();
        /* The loop turns at least this often, for the markers. */
        int wait_ms = in->conf.ingest.batch_ms < in->conf.ingest.marker_ms
                          ? in->conf.ingest.batch_ms
                          : in->conf.ingest.marker_ms;

        while (!sg_stop) {
                int64_t now;
                int cnt;

                /* Commits what is acknowledged; waits while the pipeline
                 * is full. */
                if (sg_pipeline_reap(in->pipeline) == -1) {
                        inputs_forget(in, NULL);
                        sg_sleep_ms(500);
                        continue;
                }
                /* After the batches just acknowledged, outside any batch. */
                sg_markers_tick(in->markers, 0);
                cnt = sg_consumer_batch(in->consumer, in->msgs,
                                        in->conf.ingest.batch_size, wait_ms);
                if (cnt && !sg_stop) {
                        now = sg_now_ms();
                        sg_pipeline_begin(in->pipeline);
                        for (int i = 0; i < cnt; i++) {
                                /* A record that could not be produced
                                 * fails its batch (in the pipeline). One
                                 * left unprocessed at a stop is not noted,
                                 * nor is any after it: their offsets are
                                 * not committed. */
                                if (process(in, in->msgs[i], now) == -2)
                                        break;
                                sg_pipeline_add_time(in->pipeline,
                                                     in->msgs[i],
                                                     in->ev_progress);
                        }
                        sg_pipeline_end(in->pipeline);
                }
                /* The producer copied what it sends: only the offsets are
                 * kept. */
                sg_consumer_batch_free(in->msgs, cnt);
                if (sg_mono_ms() - last_stats >= 10000) {
                        sg_metrics_log();
                        last_stats = sg_mono_ms();
                }
        }
        sg_pipeline_drain(in->pipeline, 60000);
        /* What the drain acknowledged; the producer flushes it at
         * destroy. */
        sg_markers_tick(in->markers, 1);
        sg_metrics_log();
        sg_info("event=stop");
        return 0;
}
