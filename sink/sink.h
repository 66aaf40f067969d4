/*
 * The sg-sink stage: delivers each decision to ad-decisions once (dedupe by
 * decision id in Redis) and each closed window's KPI row to channel-kpis
 * once (dedupe by scope and window).
 */
#ifndef SG_SINK_H
#define SG_SINK_H

#include "codec.h"
#include "conf.h"
#include "kafka.h"
#include "redis.h"

typedef struct sg_sink sg_sink_t;

/* Borrows everything (it must outlive the sink). NULL and errstr on
 * error. */
sg_sink_t *sg_sink_new(const sg_conf_t *conf, sg_codec_t *codec,
                       sg_redis_t *redis, sg_producer_t *producer, char *errstr,
                       size_t errstr_size);
void sg_sink_destroy(sg_sink_t *s); /* accepts NULL */

/*
 * Consumes batches of conf->topics.decisions and conf->topics.aggregates
 * until sg_stop, then returns after the batch in hand. 0 on a clean stop;
 * -1 when the input position could not be kept (a failed rewind).
 */
int sg_sink_run(sg_sink_t *s, sg_consumer_t *consumer);

/*
 * With schema_registry.url set and sink.format avro: checks Decision and
 * ChannelKpi against the subjects <out_decisions>-value and <kpis>-value,
 * registers them and makes the codec frame them with the registry's ids
 * (sink/schemas.c). Waits while the registry is unavailable. 0 (also when
 * there is nothing to do), or -1 with errstr: incompatible, refused, or
 * stopped while waiting.
 */
int sg_sink_register_schemas(const sg_conf_t *conf, sg_codec_t *codec,
                             char *errstr, size_t errstr_size);

#endif
