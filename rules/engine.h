/*
 * The sg-rules stage: aggregate snapshots in, decisions out, one circuit
 * breaker per channel in Redis (cached in memory). docs/rules.md says what
 * it decides and in which order it produces, writes and commits.
 */
#ifndef SG_RULES_ENGINE_H
#define SG_RULES_ENGINE_H

#include "codec.h"
#include "conf.h"
#include "kafka.h"
#include "redis.h"
#include "rules.h"

typedef struct sg_rules_engine sg_rules_engine_t;

/*
 * Takes ownership of rules (on failure too); borrows the rest, which must
 * outlive the engine. Loads the breaker states from Redis (blocks while
 * Redis is down). NULL and errstr on error, or if stopped meanwhile.
 */
sg_rules_engine_t *sg_rules_engine_new(const sg_conf_t *conf, sg_rules_t *rules,
                                       sg_codec_t *codec, sg_redis_t *redis,
                                       sg_producer_t *producer, char *errstr,
                                       size_t errstr_size);
void sg_rules_engine_destroy(sg_rules_engine_t *e); /* accepts NULL */

/* The consumer's rebalance callback (opaque = the engine): a new
 * assignment reloads the breaker cache before the next batch. */
void sg_rules_engine_on_rebalance(void *opaque, int assign,
                                  rd_kafka_topic_partition_list_t *parts);

/*
 * Consumes batches until sg_stop, then returns after the batch in hand.
 * 0 on a clean stop; -1 when the input position could not be kept (a
 * failed rewind): the caller exits non-zero and a restart redoes the batch.
 */
int sg_rules_engine_run(sg_rules_engine_t *e, sg_consumer_t *consumer);

#endif
