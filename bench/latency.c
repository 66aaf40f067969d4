/*
 * sg-bench-latency: watches topics.out_decisions and prints, per decision,
 * when it was read (wall clock, ms) next to what it decided, so that the
 * harness can compare it with the moment its window became decidable; then
 * the record's Kafka timestamp (ms), the campaign ("-" for none) and 1 if
 * it came from a running window (bench/quality.py).
 *
 * With -t FILE it also reads the internal topics and writes, per channel
 * snapshot of a complete window on topics.aggregates and per decision on
 * topics.decisions, where the time went before the decision reached
 * topics.out_decisions (bench/report.py, "where the latency goes"):
 *   agg|dec recv_ms window_end kafka_ts_ms channel
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "conf.h"
#include "kafka.h"
#include "log.h"
#include "stage.h"

/* One line of the -t trace for m, read at now from an internal topic. */
static void trace_one(FILE *f, sg_codec_t *codec, const sg_conf_t *conf,
                      const rd_kafka_message_t *m, int64_t now,
                      sg_snapshot_t *s, sg_decision_t *d)
{
        int64_t ts = rd_kafka_message_timestamp(m, NULL);

        if (strcmp(rd_kafka_topic_name(m->rkt), conf->topics.aggregates) == 0) {
                if (sg_codec_decode_snapshot(codec, m->payload, m->len, s) ==
                        0 &&
                    !s->campaign_id[0] && !sg_snapshot_running(s))
                        fprintf(f, "agg %" PRId64 " %" PRId64 " %" PRId64
                                   " %s\n",
                                now, s->window_end, ts, s->channel);
        } else if (sg_codec_decode_decision(codec, m->payload, m->len, d) ==
                   0) {
                fprintf(f, "dec %" PRId64 " %" PRId64 " %" PRId64 " %s\n", now,
                        d->window_end, ts, d->channel);
        }
}

int main(int argc, char **argv)
{
        static sg_conf_t conf;
        static sg_decision_t d;
        static sg_snapshot_t snap;
        const char *config = NULL, *topics[3];
        FILE *trace = NULL;
        int ntopics = 1;
        char errstr[512];
        sg_consumer_t *c;
        sg_codec_t *codec;
        rd_kafka_t *rk;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
                        config = argv[++i];
                } else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
                        trace = fopen(argv[++i], "w");
                        if (!trace) {
                                perror(argv[i]);
                                return 1;
                        }
                } else {
                        fprintf(stderr,
                                "Usage: sg-bench-latency [-c FILE] [-t FILE]\n"
                                "Until SIGTERM, prints one line per decision "
                                "on topics.out_decisions:\n"
                                "recv_ms window_start window_end action "
                                "rule channel kafka_ts_ms campaign "
                                "running\n");
                        return 2;
                }
        }
        sg_log_init("bench-latency");
        if (sg_conf_load(&conf, config, errstr, sizeof(errstr)) == -1) {
                fprintf(stderr, "sg-bench-latency: bad config: %s\n", errstr);
                return 2;
        }
        sg_log_set_level(conf.log_level);
        sg_stage_signals();
        topics[0] = conf.topics.out_decisions;
        if (trace) {
                topics[ntopics++] = conf.topics.aggregates;
                topics[ntopics++] = conf.topics.decisions;
                setvbuf(trace, NULL, _IOLBF, 0);
        }
        codec = sg_codec_new(conf.schemas_dir, errstr, sizeof(errstr));
        c = codec ? sg_consumer_new(&conf, "latency", topics, ntopics, NULL, NULL,
                                    errstr, sizeof(errstr))
                  : NULL;
        if (!c) {
                fprintf(stderr, "sg-bench-latency: %s\n", errstr);
                sg_codec_destroy(codec);
                return 1;
        }
        rk = sg_consumer_handle(c);
        setvbuf(stdout, NULL, _IOLBF, 0);
        while (!sg_stop) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
                int64_t now = sg_now_ms();

                if (!m)
                        continue;
                if (!m->err && trace &&
                    strcmp(rd_kafka_topic_name(m->rkt),
                           conf.topics.out_decisions) != 0) {
                        trace_one(trace, codec, &conf, m, now, &snap, &d);
                } else if (!m->err && sg_codec_decode_decision(codec, m->payload,
                                                        m->len, &d) == 0) {
                        int running = 0;

                        for (int i = 0; i < d.metric_cnt; i++)
                                if (!strcmp(d.metrics[i].name, "running"))
                                        running = d.metrics[i].value != 0;
                        printf("%" PRId64 " %" PRId64 " %" PRId64
                               " %s %s %s %" PRId64 " %s %d\n",
                               now, d.window_start, d.window_end,
                               sg_action_name(d.action), d.rule_id, d.channel,
                               rd_kafka_message_timestamp(m, NULL),
                               d.campaign_id[0] ? d.campaign_id : "-",
                               running);
                }
                rd_kafka_message_destroy(m);
        }
        sg_consumer_destroy(c);
        sg_codec_destroy(codec);
        if (trace)
                fclose(trace);
        return 0;
}
