/*
 * Resource bounds: 1,000,000 clicks from 1,000,000 distinct sources (IP and
 * device) through ingest and aggregate. Every click is counted; the peak RSS
 * of each stage stays under the bound its configuration sets (for
 * aggregate, the bound of its in-memory state, docs/redis-layout.md "The
 * memory bound"); aggregate's per-source sets hold at most
 * aggregate.max_sources members and count what they drop. A long test: `make chaos` runs it, `make test` does not.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>

#include "dedupe.h"
#include "event.h"
#include "harness.h"

#define EVENTS     1000000
#define CHANNELS   512 /* spread over sg.events' partitions */
#define INPUTS     64  /* ad-clicks partitions: ~3.6 MB of JSON each */
#define DEDUPE_MAX 65536
#define DUPS_MAX   8192

static void setup(void)
{
        /* The mock keeps about 5 MiB per partition, consumed or not: 64 for
         * the 230 MB of JSON clicks, 32 for sg.events. */
        const char *broker_args[] = {
            "-t", "ad-impressions", "-t", "ad-clicks:64",
            "-t", "ad-conversions", "-t", "sg.events:32",
            "-t", "sg.deadletter",  "-t", "sg.aggregates:8",
            "-t", "sg.decisions",   "-t", "ad-decisions",
            "-t", "channel-kpis:8", NULL};
        static char dedupe[64], dups[64];
        const char *subst[] = {"  dedupe_max_entries:", dedupe,
                               "  dup_click_max_entries:", dups, NULL};

        snprintf(dedupe, sizeof(dedupe), "dedupe_max_entries: %d", DEDUPE_MAX);
        snprintf(dups, sizeof(dups), "dup_click_max_entries: %d", DUPS_MAX);
        h_init();
        h_config(subst, NULL);
        h_start_infra_args(broker_args);
}

TestSuite(bounds, .init = setup, .fini = h_stack_down, .timeout = 900);

/* VmHWM of a running process, bytes. */
static long long peak_rss(pid_t pid)
{
        char path[64], line[256];
        long long kb = -1;
        FILE *fp;

        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        fp = fopen(path, "r");
        cr_assert_not_null(fp);
        while (fgets(line, sizeof(line), fp))
                if (sscanf(line, "VmHWM: %lld kB", &kb) == 1)
                        break;
        fclose(fp);
        return kb * 1024;
}

/* Sources in a source-set blob (sg:{pN}:sx...: [u16 len][source][i64]). */
static long long blob_sources(redisContext *c, const char *key)
{
        redisReply *r = redisCommand(c, "GET %s", key);
        long long n = 0;

        cr_assert(r && r->type == REDIS_REPLY_STRING, "GET %s", key);
        for (size_t k = 0; k + 2 <= (size_t)r->len; n++)
                k += 10 + ((unsigned char)r->str[k] |
                           (size_t)(unsigned char)r->str[k + 1] << 8);
        freeReplyObject(r);
        return n;
}

Test(bounds, a_million_distinct_sources_stay_within_the_configured_memory)
{
        long long t0 = (long long)time(NULL) * 1000 - 3600 * 1000, total = 0;
        long long ingest_bound, aggregate_bound, rss_in, rss_ag;
        char buf[512], ch[16];
        pid_t ingest, aggregate;
        redisContext *c;
        redisReply *keys;
        json_t *kpis, *row;
        size_t i;

        ingest = h_spawn("sg-ingest", NULL);
        aggregate = h_spawn("sg-aggregate", NULL);
        for (int k = 0; k < EVENTS; k++) {
                int n;

                snprintf(ch, sizeof(ch), "b%03d", k % CHANNELS);
                n = snprintf(buf, sizeof(buf),
                             "{\"type\":\"click\",\"event_id\":\"m%d\","
                             "\"event_time\":%lld,\"channel\":\"%s\","
                             "\"campaign_id\":\"c\",\"cost_micros\":10,"
                             "\"ip\":\"10.%d.%d.%d\",\"device_id\":\"v%d\","
                             "\"user_agent\":\"Mozilla/5.0\"}",
                             k, t0 + k / 100, ch, (k >> 16) & 255,
                             (k >> 8) & 255, k & 255, k);
                cr_assert_eq(h_produce_async("ad-clicks", k % INPUTS, ch,
                                             strlen(ch), buf, (size_t)n),
                             0);
        }
        cr_assert_eq(h_flush(), 0);

        /* Every click counted. */
        for (long long deadline = h_now_ms() + 600000;;) {
                total = 0;
                kpis = h_kpis(NULL);
                json_array_foreach(kpis, i, row)
                {
                        if (json_is_null(json_object_get(row, "campaign_id")))
                                total += json_integer_value(
                                    json_object_get(row, "clicks"));
                }
                json_decref(kpis);
                if (total == EVENTS)
                        break;
                cr_assert_lt(h_now_ms(), deadline,
                             "clicks counted: %lld of %d (logs in %s)", total,
                             EVENTS, H.dir);
                usleep(500 * 1000);
        }

        /*
         * The bounds the configuration sets: librdkafka may prefetch up to
         * queued.max.messages.kbytes (64 MiB by default) per consumer;
         * ingest holds, per input partition, an event-id table and a
         * duplicate-click table of fixed size (docs/givt.md). aggregate
         * holds one batch (aggregate.batch_size messages) and its state
         * (docs/redis-layout.md, "The memory bound"): the clicks span one
         * bucket, so each of the 1,024 scopes has a cell per kept level (3
         * for the default windows), each with two HyperLogLogs of at most
         * 12,312 bytes (dense); each channel cell at most 2 x max_sources
         * (1000) sources of at most 64 + 2 x 24 bytes (a table slot at 3/8
         * load or more, a name of at most 24 bytes in an arena that at most
         * doubles); 64 bytes per click time (a 24-byte slot, the same
         * tables). 32 MiB for the rest (code, librdkafka's producer, the
         * codec).
         */
        ingest_bound = (32LL + 64) * 1024 * 1024 +
                       INPUTS * (long long)(sg_dedupe_bytes(DEDUPE_MAX) +
                                            sg_dedupe_bytes(DUPS_MAX));
        aggregate_bound = (32LL + 64) * 1024 * 1024 +
                          5000LL * (long long)sizeof(sg_event_t) +
                          2LL * CHANNELS * 3 * (232 + 2 * 12312) +
                          (long long)CHANNELS * 3 * 2 * 1000 * (64 + 2 * 24) +
                          (long long)EVENTS * 64;
        rss_in = peak_rss(ingest);
        rss_ag = peak_rss(aggregate);
        fprintf(stderr,
                "bounds: %d clicks from %d sources; peak RSS ingest %lld "
                "MiB (bound %lld), aggregate %lld MiB (bound %lld)\n",
                EVENTS, EVENTS, rss_in >> 20, ingest_bound >> 20, rss_ag >> 20,
                aggregate_bound >> 20);
        cr_assert_lt(rss_in, ingest_bound);
        cr_assert_lt(rss_ag, aggregate_bound);

        /* Redis: no per-source set beyond aggregate.max_sources (1000). */
        c = redisConnectUnix(H.redis_sock);
        cr_assert(c && !c->err);
        keys = redisCommand(c, "KEYS sg:*:sx*");
        cr_assert_not_null(keys);
        cr_assert_gt(keys->elements, 0);
        for (i = 0; i < keys->elements; i++)
                cr_assert_leq(blob_sources(c, keys->element[i]->str), 1000,
                              "%s", keys->element[i]->str);
        freeReplyObject(keys);
        redisFree(c);
}
