/*
 * sg-bench-consume: the ceiling. A consumer with exactly the stages' settings
 * (sg_consumer_new: the config's kafka: map, manual commits, earliest) that
 * only polls and frees: no decode, no produce, no commit (it looks at a
 * record's headers, to leave watermark markers out of the count). No stage
 * reading the same input on the same broker can be faster.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "conf.h"
#include "kafka.h"
#include "log.h"
#include "marker.h"
#include "stage.h"

#define MAX_TOPICS 8

static double cpu_seconds(void)
{
        struct rusage ru;

        getrusage(RUSAGE_SELF, &ru);
        return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
               (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char **argv)
{
        static sg_conf_t conf;
        const char *topics[MAX_TOPICS];
        const char *config = NULL;
        int topic_cnt = 0, rc = 1;
        int64_t expect = 0, got = 0, t_first = 0, t_last = 0, timeout_ms;
        double cpu_first = 0, cpu_last = 0;
        char errstr[512];
        sg_consumer_t *c;
        sg_marker_reader_t mk;
        rd_kafka_t *rk;
        struct rusage ru;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
                        config = argv[++i];
                else if (strcmp(argv[i], "--expect") == 0 && i + 1 < argc)
                        expect = strtoll(argv[++i], NULL, 10);
                else if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc &&
                         topic_cnt < MAX_TOPICS)
                        topics[topic_cnt++] = argv[++i];
                else {
                        fprintf(stderr,
                                "Usage: sg-bench-consume [-c FILE] --topic T "
                                "[--topic T]... --expect N\n"
                                "Reads N messages; prints events=N eps=E "
                                "cpu_s=S cpu_s_per_m=M hwm_kb=K.\n");
                        return 2;
                }
        }
        if (!topic_cnt || expect <= 0) {
                fprintf(stderr, "sg-bench-consume: --topic and --expect are "
                                "needed (try --help)\n");
                return 2;
        }
        sg_log_init("bench-consume");
        if (sg_conf_load(&conf, config, errstr, sizeof(errstr)) == -1) {
                fprintf(stderr, "sg-bench-consume: bad config: %s\n", errstr);
                return 2;
        }
        sg_log_set_level(conf.log_level);
        sg_stage_signals();
        c = sg_consumer_new(&conf, "bare", topics, topic_cnt, NULL, NULL,
                            errstr, sizeof(errstr));
        if (!c) {
                fprintf(stderr, "sg-bench-consume: %s\n", errstr);
                return 1;
        }
        rk = sg_consumer_handle(c);
        timeout_ms = sg_mono_ms() + 120000;
        while (got < expect && !sg_stop && sg_mono_ms() < timeout_ms) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);

                if (!m)
                        continue;
                /* Watermark markers on sg.events (docs/watermark.md) are
                 * not events: a look at the headers, no decoding. */
                if (!m->err && !sg_marker_open(m, &mk, errstr,
                                               sizeof(errstr))) {
                        /* The clock starts at the first message, after
                         * the group join, as for the stages. */
                        if (got++ == 0) {
                                t_first = sg_mono_us();
                                cpu_first = cpu_seconds();
                        }
                }
                rd_kafka_message_destroy(m);
        }
        t_last = sg_mono_us();
        cpu_last = cpu_seconds();
        getrusage(RUSAGE_SELF, &ru);
        if (got == expect) {
                double s = (double)(t_last - t_first) / 1e6;

                printf("events=%" PRId64 " eps=%.0f cpu_s=%.2f "
                       "cpu_s_per_m=%.2f hwm_kb=%ld\n",
                       got, (double)(got - 1) / s, cpu_last - cpu_first,
                       (cpu_last - cpu_first) * 1e6 / (double)got,
                       ru.ru_maxrss);
                rc = 0;
        } else {
                fprintf(stderr,
                        "sg-bench-consume: read %" PRId64 " of %" PRId64
                        " messages\n",
                        got, expect);
        }
        sg_consumer_destroy(c);
        return rc;
}
