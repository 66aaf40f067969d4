/*
 * Why rules stores its input offsets in Redis. sg:epoch finds a Redis
 * that lost everything, but not one that came back from an older RDB, a
 * lagging replica or an `everysec` AOF: the epoch is there, and only the
 * latest writes are gone. For rules those writes are breakers opened (the
 * PAUSE went out, no RESUME would ever follow), budgets and blocks. Every
 * batch's MULTI/EXEC therefore also sets, per partition read, the offset
 * after it; the batch is committed to Kafka only afterwards. Redis can so
 * only be ahead of the Kafka commit or level with it, and a commit past
 * it at start says Redis lost writes that rules made.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "offsets.h"

int sg_rules_offsets_append(sg_redis_t *redis, rd_kafka_message_t **msgs,
                            int cnt)
{
        const char **argv = malloc((2 + 2 * (size_t)cnt) * sizeof(*argv));
        char(*num)[24] = malloc(2 * (size_t)cnt * sizeof(*num));
        int argc = 2, rc = -1;

        if (!argv || !num)
                goto out;
        argv[0] = "HSET";
        argv[1] = SG_RULES_OFFSETS_KEY;
        /* A batch holds each partition's records in order: the last one
         * of a partition is its highest offset. */
        for (int i = cnt - 1; i >= 0; i--) {
                int seen = 0;

                for (int j = i + 1; j < cnt && !seen; j++)
                        seen = msgs[j]->partition == msgs[i]->partition;
                if (seen)
                        continue;
                snprintf(num[argc - 2], sizeof(num[0]), "%" PRId32,
                         msgs[i]->partition);
                snprintf(num[argc - 1], sizeof(num[0]), "%" PRId64,
                         msgs[i]->offset + 1);
                argv[argc] = num[argc - 2];
                argv[argc + 1] = num[argc - 1];
                argc += 2;
        }
        rc = argc == 2 ? 0
             : sg_redis_append_argv(redis, argc, argv, NULL) == 0 ? 1
                                                                  : -1;
out:
        free(argv);
        free(num);
        return rc;
}

int sg_rules_offsets_rolled_back(const sg_conf_t *conf, sg_redis_t *redis,
                                 rd_kafka_t *rk)
{
        rd_kafka_topic_partition_list_t *l;
        char group[192], err[256];
        redisReply *r;
        int rolled = 0;

        r = sg_redis_command(redis, "HGETALL %s", SG_RULES_OFFSETS_KEY);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
                if (r)
                        freeReplyObject(r);
                return 0;
        }
        snprintf(group, sizeof(group), "%s.rules", conf->group_prefix);
        l = sg_kafka_group_offsets(rk, group, conf->topics.aggregates, err,
                                   sizeof(err));
        if (!l) {
                sg_warn("event=rules_offsets_unchecked err=\"%s\"", err);
                freeReplyObject(r);
                return 0;
        }
        for (int i = 0; i < l->cnt && !rolled; i++) {
                int64_t stored = -1;

                if (l->elems[i].offset < 0)
                        continue;
                for (size_t k = 0; k + 1 < r->elements; k += 2)
                        if (atoi(r->element[k]->str) == l->elems[i].partition)
                                stored = strtoll(r->element[k + 1]->str, NULL,
                                                 10);
                /* A partition not stored yet is no evidence: rules may
                 * not have written since the offsets were forgotten. */
                if (stored >= 0 && stored < l->elems[i].offset) {
                        rolled = 1;
                        sg_error("event=rules_offsets_behind partition=%" PRId32
                                 " committed=%" PRId64 " stored=%" PRId64
                                 " msg=\"Redis lost writes of rules (a "
                                 "rollback)\"",
                                 l->elems[i].partition, l->elems[i].offset,
                                 stored);
                }
        }
        rd_kafka_topic_partition_list_destroy(l);
        freeReplyObject(r);
        return rolled;
}

int sg_rules_offsets_forget(sg_redis_t *redis)
{
        redisReply *r = sg_redis_command(redis, "DEL %s", SG_RULES_OFFSETS_KEY);

        if (!r)
                return -1;
        freeReplyObject(r);
        return 0;
}
