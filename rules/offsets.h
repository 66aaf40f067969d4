/*
 * sg:rules:off: the next sg.aggregates offset of each partition, written
 * in the MULTI/EXEC of every batch's state, before the batch is committed
 * to Kafka; so a Kafka commit past it means Redis lost some of rules'
 * writes (review F14: a rollback that kept sg:epoch).
 */
#ifndef SG_RULES_OFFSETS_H
#define SG_RULES_OFFSETS_H

#include "conf.h"
#include "kafka.h"
#include "redis.h"

#define SG_RULES_OFFSETS_KEY "sg:rules:off"

/* Appends to the connection's pipeline one HSET of the offset after the
 * last of msgs for each of their partitions. The commands appended (0 for
 * no msgs, else 1), or -1 (not connected, out of memory). */
int sg_rules_offsets_append(sg_redis_t *redis, rd_kafka_message_t **msgs,
                            int cnt);

/*
 * 1 when the rules group's Kafka commit on some sg.aggregates partition is
 * past the offset Redis holds for it (Redis rolled back), else 0: also
 * for a partition Redis holds no offset of (a first start, offsets
 * forgotten, or state written by a version that did not store them) and
 * when the commits cannot be read (then logged). rk: any client of the
 * cluster.
 */
int sg_rules_offsets_rolled_back(const sg_conf_t *conf, sg_redis_t *redis,
                                 rd_kafka_t *rk);

/*
 * Once a loss is accepted (or the data restored), the offsets Redis holds
 * are no longer evidence against the Kafka commit: forgotten, and written
 * again by the next batches. 0, or -1 when stopped.
 */
int sg_rules_offsets_forget(sg_redis_t *redis);

#endif
