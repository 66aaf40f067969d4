/*
 * sg-bench-watch: measures one running stage over a preloaded input. It
 * polls the stage group's committed offsets (every stage commits its input
 * only once a batch is done) and the process's /proc entries, and reports
 * events/s, CPU seconds and memory between the first commit and the one
 * that covers the whole input.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "kafka.h"
#include "log.h"
#include "stage.h"

#define MAX_TOPICS 8

/* utime + stime of pid in seconds, -1 if it is gone. */
static double proc_cpu(int pid)
{
        char path[64], buf[1024], *p;
        unsigned long ut, st;
        FILE *fp;
        size_t n;

        snprintf(path, sizeof(path), "/proc/%d/stat", pid);
        if (!(fp = fopen(path, "r")))
                return -1;
        n = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        buf[n] = '\0';
        /* The command name may hold spaces: fields count from its ')'. */
        if (!(p = strrchr(buf, ')')) ||
            sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                   &ut, &st) != 2)
                return -1;
        return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* A "VmRSS:"-style line of /proc/pid/status in kB, -1 if absent. */
static long proc_kb(int pid, const char *field)
{
        char path[64], line[256];
        size_t len = strlen(field);
        long v = -1;
        FILE *fp;

        snprintf(path, sizeof(path), "/proc/%d/status", pid);
        if (!(fp = fopen(path, "r")))
                return -1;
        while (fgets(line, sizeof(line), fp))
                if (strncmp(line, field, len) == 0) {
                        v = strtol(line + len, NULL, 10);
                        break;
                }
        fclose(fp);
        return v;
}

/* Every partition of the topics, offsets unset. */
static rd_kafka_topic_partition_list_t *
partitions(rd_kafka_t *rk, const char *const *topics, int cnt)
{
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(64);

        for (int t = 0; t < cnt; t++) {
                const struct rd_kafka_metadata *md;
                rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topics[t], NULL);

                if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) != 0) {
                        rd_kafka_topic_destroy(rkt);
                        rd_kafka_topic_partition_list_destroy(l);
                        return NULL;
                }
                for (int p = 0; p < md->topics[0].partition_cnt; p++)
                        rd_kafka_topic_partition_list_add(
                            l, topics[t], md->topics[0].partitions[p].id);
                rd_kafka_metadata_destroy(md);
                rd_kafka_topic_destroy(rkt);
        }
        return l;
}

static int64_t committed_sum(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *l)
{
        int64_t sum = 0;

        for (int i = 0; i < l->cnt; i++)
                l->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
        if (rd_kafka_committed(rk, l, 5000) != 0)
                return -1;
        for (int i = 0; i < l->cnt; i++)
                if (l->elems[i].offset > 0)
                        sum += l->elems[i].offset;
        return sum;
}

int main(int argc, char **argv)
{
        static sg_conf_t conf;
        const char *topics[MAX_TOPICS];
        const char *config = NULL, *group = NULL;
        int topic_cnt = 0, pid = 0, also = 0, timeout_s = 300, rc = 1;
        int64_t expect = 0, c0 = -1, t0 = 0, c = 0, deadline;
        double cpu0 = 0, cpu = 0, also0 = 0;
        long rss_half = -1;
        char errstr[512];
        rd_kafka_conf_t *kc;
        rd_kafka_t *rk;
        rd_kafka_topic_partition_list_t *l;

        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
                        config = argv[++i];
                else if (strcmp(argv[i], "--group") == 0 && i + 1 < argc)
                        group = argv[++i];
                else if (strcmp(argv[i], "--pid") == 0 && i + 1 < argc)
                        pid = atoi(argv[++i]);
                else if (strcmp(argv[i], "--also") == 0 && i + 1 < argc)
                        also = atoi(argv[++i]);
                else if (strcmp(argv[i], "--expect") == 0 && i + 1 < argc)
                        expect = strtoll(argv[++i], NULL, 10);
                else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
                        timeout_s = atoi(argv[++i]);
                else if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc &&
                         topic_cnt < MAX_TOPICS)
                        topics[topic_cnt++] = argv[++i];
                else {
                        fprintf(stderr,
                                "Usage: sg-bench-watch [-c FILE] --group G "
                                "--topic T [--topic T]... --expect N --pid P "
                                "[--also PID] [--timeout S]\n"
                                "Prints events=N eps=E cpu_s=S "
                                "cpu_s_per_m=M hwm_kb=K rss_half_kb=H "
                                "rss_end_kb=R seconds=S [also_cpu_s=S]\n"
                                "--also: a helper process (redis-server) "
                                "whose CPU seconds over the same\n"
                                "interval are reported too.\n");
                        return 2;
                }
        }
        if (!group || !topic_cnt || expect <= 0 || pid <= 0) {
                fprintf(stderr, "sg-bench-watch: --group, --topic, --expect "
                                "and --pid are needed\n");
                return 2;
        }
        sg_log_init("bench-watch");
        if (sg_conf_load(&conf, config, errstr, sizeof(errstr)) == -1) {
                fprintf(stderr, "sg-bench-watch: bad config: %s\n", errstr);
                return 2;
        }
        sg_log_set_level(conf.log_level);
        /* Never subscribes: only reads the group's committed offsets. */
        kc = rd_kafka_conf_new();
        if (rd_kafka_conf_set(kc, "bootstrap.servers", conf.brokers, errstr,
                              sizeof(errstr)) ||
            rd_kafka_conf_set(kc, "group.id", group, errstr, sizeof(errstr)) ||
            !(rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr,
                                sizeof(errstr)))) {
                fprintf(stderr, "sg-bench-watch: %s\n", errstr);
                return 1;
        }
        if (!(l = partitions(rk, topics, topic_cnt))) {
                fprintf(stderr, "sg-bench-watch: no metadata\n");
                rd_kafka_destroy(rk);
                return 1;
        }
        deadline = sg_mono_ms() + (int64_t)timeout_s * 1000;
        while (sg_mono_ms() < deadline) {
                double now_cpu = proc_cpu(pid);

                if (now_cpu < 0 || kill(pid, 0) != 0) {
                        fprintf(stderr,
                                "sg-bench-watch: process %d is gone after "
                                "%" PRId64 " of %" PRId64 " events\n",
                                pid, c, expect);
                        goto out;
                }
                c = committed_sum(rk, l);
                if (c > 0 && c0 < 0) {
                        c0 = c;
                        t0 = sg_mono_us();
                        cpu0 = now_cpu;
                        also0 = also ? proc_cpu(also) : 0;
                }
                if (rss_half < 0 && c >= expect / 2)
                        rss_half = proc_kb(pid, "VmRSS:");
                if (c >= expect) {
                        int64_t t1 = sg_mono_us();
                        double s = (double)(t1 - t0) / 1e6;

                        cpu = proc_cpu(pid);
                        /* When the first commit already covered it all, the
                         * rate is unknown: say so with eps=0. */
                        printf("events=%" PRId64 " eps=%.0f cpu_s=%.2f "
                               "cpu_s_per_m=%.2f hwm_kb=%ld rss_half_kb=%ld "
                               "rss_end_kb=%ld seconds=%.3f",
                               c, c > c0 && s > 0 ? (double)(c - c0) / s : 0,
                               cpu - cpu0,
                               c > c0 ? (cpu - cpu0) * 1e6 / (double)(c - c0)
                                      : 0,
                               proc_kb(pid, "VmHWM:"), rss_half,
                               proc_kb(pid, "VmRSS:"), s);
                        if (also)
                                printf(" also_cpu_s=%.2f",
                                       proc_cpu(also) - also0);
                        printf("\n");
                        rc = 0;
                        goto out;
                }
                usleep(20000);
        }
        fprintf(stderr,
                "sg-bench-watch: timeout after %d s: %" PRId64 " of %" PRId64
                " committed\n",
                timeout_s, c, expect);
out:
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_destroy(rk);
        return rc;
}
