/*
 * sg-rules: evaluates the rules file against aggregate snapshots, emits
 * decisions to sg.decisions and keeps the circuit breakers in Redis.
 */
#include <stdio.h>

#include "codec.h"
#include "engine.h"
#include "kafka.h"
#include "log.h"
#include "offsets.h"
#include "redis.h"
#include "rules.h"
#include "stage.h"

static const char *const sections[] = {"", "topics.", "rules.", NULL};
static const sg_stage_desc_t desc = {
    "rules",
    "Evaluates the rules file (docs/rules.md) against the aggregate "
    "snapshots, emits PAUSE/ALERT decisions and keeps one circuit breaker "
    "per channel in Redis. SIGHUP reloads the rules file.",
    sections,
    0 /* without_redis */};

int main(int argc, char **argv)
{
        static sg_conf_t conf;
        const char *topics[1];
        sg_rules_t *rules;
        sg_codec_t *codec = NULL;
        sg_redis_t *redis = NULL;
        sg_producer_t *producer = NULL;
        sg_rules_engine_t *engine = NULL;
        sg_consumer_t *consumer = NULL;
        const char *what = NULL;
        char err[512];
        int rc = 1;

        sg_stage_init(&desc, argc, argv, &conf);
        rules = sg_rules_load_file(conf.rules.file, err, sizeof(err));
        if (!rules) {
                fprintf(stderr, "sg-rules: bad rules file: %s\n", err);
                return 2;
        }
        if (!(codec = sg_codec_new(conf.schemas_dir, err, sizeof(err)))) {
                what = "schemas";
                sg_rules_destroy(rules);
                goto out;
        }
        if (!(redis = sg_redis_new(conf.redis, 0, err, sizeof(err)))) {
                what = "redis";
                sg_rules_destroy(rules);
                goto out;
        }
        if (!(producer =
                  sg_producer_new(&conf, "sg-rules", err, sizeof(err)))) {
                what = "kafka producer";
                sg_rules_destroy(rules);
                goto out;
        }
        /* A Kafka commit past what Redis holds: writes lost (F14). */
        sg_redis_epoch_expect(redis, sg_rules_offsets_rolled_back(
                                         &conf, redis,
                                         sg_producer_handle(producer)));
        if (sg_redis_epoch_start(redis, "rules") == -1) {
                /* The guard fails only when stopped: no message. */
                what = "redis";
                sg_rules_destroy(rules);
                goto out;
        }
        /* The engine takes the rules, on failure too. */
        if (!(engine = sg_rules_engine_new(&conf, rules, codec, redis, producer,
                                           err, sizeof(err)))) {
                what = "engine";
                goto out;
        }
        topics[0] = conf.topics.aggregates;
        if (!(consumer = sg_consumer_new(&conf, "rules", topics, 1,
                                         sg_rules_engine_on_rebalance, engine,
                                         err, sizeof(err)))) {
                what = "kafka consumer";
                goto out;
        }
        sg_info("event=start rules_file=%s topic=%s decisions=%s",
                conf.rules.file, conf.topics.aggregates, conf.topics.decisions);
        rc = sg_rules_engine_run(engine, consumer) == 0 ? 0 : 1;
        sg_info("event=stop rc=%d", rc);
out:
        if (what) {
                if (sg_stop)
                        rc = 0; /* asked to stop while still starting */
                else
                        fprintf(stderr, "sg-rules: %s: %s\n", what, err);
        }
        sg_consumer_destroy(consumer);
        sg_rules_engine_destroy(engine);
        sg_producer_destroy(producer);
        sg_redis_destroy(redis);
        sg_codec_destroy(codec);
        return rc;
}
