/*
 * sg-sink: delivers decisions to ad-decisions exactly once per decision id
 * and closed-window KPI rows to channel-kpis once per scope and window.
 */
#include <stdio.h>

#include "codec.h"
#include "kafka.h"
#include "log.h"
#include "redis.h"
#include "sink.h"
#include "stage.h"

static const char *const sections[] = {"", "topics.", "sink.",
                                            "schema_registry.", NULL};
static const sg_stage_desc_t desc = {
    "sink",
    "Delivers decisions to the bidders' topic once per decision id, and one "
    "KPI row per scope and closed window to the BI topic.",
    sections,
    0 /* without_redis */};

int main(int argc, char **argv)
{
        static sg_conf_t conf;
        const char *topics[2];
        sg_codec_t *codec = NULL;
        sg_redis_t *redis = NULL;
        sg_producer_t *producer = NULL;
        sg_sink_t *sink = NULL;
        sg_consumer_t *consumer = NULL;
        const char *what = NULL;
        char err[512];
        int rc = 1;

        sg_stage_init(&desc, argc, argv, &conf);
        if (!(codec = sg_codec_new(conf.schemas_dir, err, sizeof(err)))) {
                what = "schemas";
                goto out;
        }
        if (sg_sink_register_schemas(&conf, codec, err, sizeof(err))) {
                what = "schema registry";
                rc = 2; /* an incompatible or refused schema */
                goto out;
        }
        if (!(redis = sg_redis_new(conf.redis, 0, err, sizeof(err))) ||
            sg_redis_epoch_start(redis, "sink") == -1) {
                /* The guard fails only when stopped: no message. */
                what = "redis";
                goto out;
        }
        if (conf.sink.transactions) {
                char inst[320], txn_id[400];

                /* One id per instance: a restarted sink fences its
                 * predecessor and aborts what it left open. */
                sg_kafka_instance_id(&conf, "sink", inst, sizeof(inst));
                snprintf(txn_id, sizeof(txn_id), "%s.%s", conf.group_prefix,
                         inst);
                producer = sg_producer_new_transactional(
                    &conf, "sg-sink", txn_id, err, sizeof(err));
        } else {
                producer = sg_producer_new(&conf, "sg-sink", err, sizeof(err));
        }
        if (!producer) {
                what = "kafka producer";
                goto out;
        }
        if (!(sink = sg_sink_new(&conf, codec, redis, producer, err,
                                 sizeof(err)))) {
                what = "sink";
                rc = 2; /* a bad sink.* value */
                goto out;
        }
        topics[0] = conf.topics.decisions;
        topics[1] = conf.topics.aggregates;
        if (!(consumer = sg_consumer_new(&conf, "sink", topics, 2, NULL, NULL,
                                         err, sizeof(err)))) {
                what = "kafka consumer";
                goto out;
        }
        sg_info("event=start decisions=%s aggregates=%s out=%s kpis=%s "
                "format=%s",
                conf.topics.decisions, conf.topics.aggregates,
                conf.topics.out_decisions, conf.topics.kpis, conf.sink.format);
        rc = sg_sink_run(sink, consumer) == 0 ? 0 : 1;
        sg_info("event=stop rc=%d", rc);
out:
        if (what) {
                if (sg_stop)
                        rc = 0; /* asked to stop while still starting */
                else
                        fprintf(stderr, "sg-sink: %s: %s\n", what, err);
        }
        sg_consumer_destroy(consumer);
        sg_sink_destroy(sink);
        sg_producer_destroy(producer);
        sg_redis_destroy(redis);
        sg_codec_destroy(codec);
        return rc;
}
