/*
 * F15 (../shared/reviews/correctness-ace1912.md): Redis memory must have a
 * bound that the configuration states and aggregate enforces, also when the
 * ids and names in the events are chosen by an attacker. Two floods of
 * 12 h of event time each (distinct device ids, click ids, IPs, campaigns
 * and channels, far past aggregate.max_scopes) go through ingest and
 * aggregate; after each, every kind of key is counted against the bound of
 * docs/redis-layout.md ("The bound on Redis"), and the second flood must
 * leave Redis no bigger than the first did.
 *
 * Nothing here depends on the wall clock: aggregate.retention_s is an hour
 * and the test takes minutes, so no key reaches its TTL; what bounds the
 * keys is event time (the retention counted back from the partition's
 * newest event). The events are all produced before ingest and aggregate
 * start, so no input is idle while it still has records and nothing is
 * late.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>

#include "harness.h"

#define BUCKET_MS   10000LL
#define RETENTION_S 3600
#define MAX_SCOPES  12
#define MAX_CLICKS  100
#define MAX_DEVICES 50
#define FREQ_CAP    3
#define CLICK_TTL_S 60
#define STEADY      4    /* channels with an impression in every bucket */
#define FLOOD_MS    (12 * 3600 * 1000LL)
#define BUCKETS     (FLOOD_MS / BUCKET_MS)
#define HOUR_MS     3600000LL
#define PARTS_MAX   64

static void setup(void)
{
        static char ret[64], scopes[96], cap[64], ttl[64];
        const char *subst[] = {"  windows: 1m,5m,1h,today", "windows: 1m",
                               "  lateness_s: 30", "lateness_s: 0",
                               "  retention_s: 172800", ret,
                               "  max_scopes: 10000", scopes,
                               "  freq_cap: 3", cap,
                               "  click_ttl_s: 86400", ttl,
                               "  max_sources: 1000", "max_sources: 10",
                               "  snapshot_s: 10", "snapshot_s: 60",
                               "  idle_ms: 5000", "idle_ms: 0",
                               NULL};

        snprintf(ret, sizeof(ret), "retention_s: %d", RETENTION_S);
        snprintf(scopes, sizeof(scopes),
                 "max_scopes: %d\n  max_clicks: %d\n  max_devices: %d",
                 MAX_SCOPES, MAX_CLICKS, MAX_DEVICES);
        snprintf(cap, sizeof(cap), "freq_cap: %d", FREQ_CAP);
        snprintf(ttl, sizeof(ttl), "click_ttl_s: %d", CLICK_TTL_S);
        h_init();
        h_config(subst, NULL);
        h_start_infra();
}

TestSuite(redis_bound, .init = setup, .fini = h_stack_down, .timeout = 500);

static redisContext *conn(void)
{
        redisContext *c = redisConnectUnix(H.redis_sock);

        cr_assert(c && !c->err, "redis: %s", c ? c->errstr : "oom");
        return c;
}

static long long info_used_memory(redisContext *c)
{
        redisReply *r = redisCommand(c, "INFO memory");
        const char *p;
        long long v;

        cr_assert(r && r->type == REDIS_REPLY_STRING);
        p = strstr(r->str, "used_memory:");
        cr_assert_not_null(p);
        v = atoll(p + strlen("used_memory:"));
        freeReplyObject(r);
        return v;
}

/*
 * One flood: for each 10 s bucket of [t0, t0 + 12 h), an impression of
 * every steady channel (each its own campaign, device and IP), two clicks
 * (own ids, campaigns, devices, IPs) and an impression of a channel never
 * seen before. Impressions go to ad-impressions/0, clicks to ad-clicks/0,
 * in event-time order.
 */
static long long flood(int f, long long t0)
{
        char buf[512], ch[32];
        long long n = 0;

        for (long long j = 0; j < BUCKETS; j++) {
                long long t = t0 + j * BUCKET_MS;

                for (int k = 0; k < STEADY + 3; k++, n++) {
                        const char *type = k < STEADY || k == STEADY + 2
                                               ? "impression"
                                               : "click";
                        int len;

                        if (k < STEADY)
                                snprintf(ch, sizeof(ch), "s%d", k);
                        else if (k < STEADY + 2)
                                snprintf(ch, sizeof(ch), "s%lld",
                                         (j + k) % STEADY);
                        else
                                snprintf(ch, sizeof(ch), "x%d_%lld", f, j);
                        len = snprintf(
                            buf, sizeof(buf),
                            "{\"type\":\"%s\",\"event_id\":\"f%d-%lld-%d\","
                            "\"event_time\":%lld,\"channel\":\"%s\","
                            "\"campaign_id\":\"f%dc%lld_%d\","
                            "\"cost_micros\":10,\"device_id\":\"f%dd%lld_%d\","
                            "\"ip\":\"10.%d.%lld.%lld\","
                            "\"user_agent\":\"Mozilla/5.0\"}",
                            type, f, j, k, t + k * 100, ch, f, j, k, f, j, k,
                            f, (n >> 8) & 255, n & 255);
                        cr_assert_eq(h_produce_async(type[0] == 'i'
                                                         ? "ad-impressions"
                                                         : "ad-clicks",
                                                     0, ch, strlen(ch), buf,
                                                     (size_t)len),
                                     0);
                }
        }
        cr_assert_eq(h_flush(), 0);
        return n;
}

/* ingest and aggregate over everything produced, then stopped: aggregate
 * checkpoints on its way out. */
static void run_stages(void)
{
        pid_t in = h_spawn("sg-ingest", NULL), ag = h_spawn("sg-aggregate", NULL);
        int st;

        h_wait_caught_up("ingest", "ad-impressions", 240000);
        h_wait_caught_up("ingest", "ad-clicks", 240000);
        h_wait_caught_up("aggregate", "sg.events", 240000);
        st = h_stop(ag);
        cr_assert_eq(st, 0, "sg-aggregate exit status %d (logs in %s)", st,
                     H.dir);
        st = h_stop(in);
        cr_assert_eq(st, 0, "sg-ingest exit status %d (logs in %s)", st,
                     H.dir);
        for (int i = 0; i < H.proc_cnt; i++)
                if (H.procs[i].pid == in || H.procs[i].pid == ag)
                        H.procs[i].pid = 0;
}

/* What each partition holds, by kind of key. */
typedef struct part_keys {
        int seen;
        long long scopes, snap, fixed, fcl, ckl, w, bi, open;
        long long fcl_max, ckl_max; /* longest log, bytes */
        long long cell_max;         /* most cell keys of one kind and scope */
        long long steady_min;       /* fewest b: keys of a steady channel */
        int steady;                 /* steady channels seen */
} part_keys_t;

static long long strlen_of(redisContext *c, const char *key)
{
        redisReply *r = redisCommand(c, "STRLEN %s", key);
        long long v;

        cr_assert(r && r->type == REDIS_REPLY_INTEGER);
        v = r->integer;
        freeReplyObject(r);
        return v;
}

static long long card(redisContext *c, const char *cmd, const char *key)
{
        redisReply *r = redisCommand(c, "%s %s", cmd, key);
        long long v;

        cr_assert(r && r->type == REDIS_REPLY_INTEGER, "%s %s", cmd, key);
        v = r->integer;
        freeReplyObject(r);
        return v;
}

/* Counts of cell keys per (partition, kind, scope): a small table. */
typedef struct cell_count {
        int p;
        char kind[8];
        char scope[96];
        long long n;
} cell_count_t;

static void survey(redisContext *c, part_keys_t *pk, long long *keys)
{
        redisReply *r = redisCommand(c, "KEYS sg:{p*");
        cell_count_t *cc = calloc(r->elements + 1, sizeof(*cc));
        int ccn = 0;

        cr_assert(r && r->type == REDIS_REPLY_ARRAY);
        cr_assert_not_null(cc);
        memset(pk, 0, PARTS_MAX * sizeof(*pk));
        *keys = (long long)r->elements;
        for (size_t i = 0; i < r->elements; i++) {
                const char *k = r->element[i]->str, *rest, *colon;
                char kind[8], scope[96];
                int p;

                cr_assert_eq(sscanf(k, "sg:{p%d}:", &p), 1,
                             "key %s belongs to no partition", k);
                cr_assert(p >= 0 && p < PARTS_MAX);
                pk[p].seen = 1;
                rest = strchr(k, '}') + 2;
                colon = strchr(rest, ':');
                if (!colon) {
                        if (!strcmp(rest, "scopes"))
                                pk[p].scopes = card(c, "SCARD", k);
                        else if (!strcmp(rest, "snap"))
                                pk[p].snap = card(c, "HLEN", k);
                        else if (!strcmp(rest, "open"))
                                pk[p].open = card(c, "ZCARD", k);
                        pk[p].fixed++;
                        continue;
                }
                snprintf(kind, sizeof(kind), "%.*s", (int)(colon - rest),
                         rest);
                if (!strcmp(kind, "fcl") || !strcmp(kind, "ckl")) {
                        long long len = strlen_of(c, k);
                        int fc = kind[0] == 'f';
                        long long *cnt = fc ? &pk[p].fcl : &pk[p].ckl;
                        long long *max = fc ? &pk[p].fcl_max : &pk[p].ckl_max;

                        (*cnt)++;
                        if (len > *max)
                                *max = len;
                        continue;
                }
                if (!strcmp(kind, "w")) {
                        pk[p].w++;
                        continue;
                }
                if (!strcmp(kind, "bi")) {
                        pk[p].bi++;
                        continue;
                }
                /* <kind>:<scope>:<start> */
                cr_assert_not_null(strrchr(k, ':'));
                snprintf(scope, sizeof(scope), "%.*s",
                         (int)(strrchr(k, ':') - colon - 1), colon + 1);
                {
                        int at = 0;

                        while (at < ccn && !(cc[at].p == p &&
                                             !strcmp(cc[at].kind, kind) &&
                                             !strcmp(cc[at].scope, scope)))
                                at++;
                        if (at == ccn) {
                                cc[ccn].p = p;
                                snprintf(cc[ccn].kind, sizeof(cc[0].kind),
                                         "%s", kind);
                                snprintf(cc[ccn].scope, sizeof(cc[0].scope),
                                         "%s", scope);
                                ccn++;
                        }
                        cc[at].n++;
                }
        }
        for (int p = 0; p < PARTS_MAX; p++)
                pk[p].steady_min = -1;
        for (int i = 0; i < ccn; i++) {
                part_keys_t *q = &pk[cc[i].p];

                if (cc[i].n > q->cell_max)
                        q->cell_max = cc[i].n;
                if (!strcmp(cc[i].kind, "b") && cc[i].scope[0] == 's' &&
                    cc[i].scope[2] == '|' && !cc[i].scope[3]) {
                        q->steady++;
                        if (q->steady_min < 0 || cc[i].n < q->steady_min)
                                q->steady_min = cc[i].n;
                }
        }
        free(cc);
        freeReplyObject(r);
}

/*
 * The bound of docs/redis-layout.md for this configuration (windows 1m:
 * the bucket level alone), checked partition by partition.
 */
static void check_bound(const part_keys_t *pk, const char *when)
{
        /* Scopes: max_scopes admitted, then "<channel>|_other" for each
         * admitted channel, "_other|" and "_other|_other". */
        long long s_max = 2LL * MAX_SCOPES + 2;
        /* Buckets a scope keeps: from its partition's newest event back
         * aggregate.retention_s (the bucket level is the top level). */
        long long cells = RETENTION_S * 1000LL / BUCKET_MS + 1;
        /* The logs: days from yesterday on, hours from click_ttl_s + 2 h
         * back. */
        long long fcl_keys = 2, ckl_keys = (CLICK_TTL_S * 1000LL + 2 * HOUR_MS) / HOUR_MS + 1;
        long long fcl_bytes = 9LL * (FREQ_CAP + 1) * MAX_DEVICES;
        long long ckl_bytes = 16LL * MAX_CLICKS;
        /* Open KPI windows: those ending after the retention's start. */
        long long open = (RETENTION_S * 1000LL + BUCKET_MS + 60000) / 60000 + 1;
        int parts = 0, steady = 0;

        for (int p = 0; p < PARTS_MAX; p++) {
                const part_keys_t *q = &pk[p];

                if (!q->seen)
                        continue;
                parts++;
                steady += q->steady;
                cr_assert_leq(q->scopes, s_max, "%s: p%d has %lld scopes",
                              when, p, q->scopes);
                cr_assert_leq(q->snap, q->scopes, "%s: p%d", when, p);
                cr_assert_leq(q->bi, q->scopes, "%s: p%d", when, p);
                cr_assert_leq(q->w, q->scopes, "%s: p%d (1 window)", when, p);
                cr_assert_leq(q->open, q->scopes * open,
                              "%s: p%d has %lld open KPI windows", when, p,
                              q->open);
                cr_assert_leq(q->cell_max, cells,
                              "%s: p%d keeps %lld keys of one kind for one "
                              "scope, bound %lld",
                              when, p, q->cell_max, cells);
                /* A steady channel had an event in every bucket: it keeps
                 * exactly the retention's buckets. */
                if (q->steady)
                        cr_assert_eq(q->steady_min, cells,
                                     "%s: p%d steady channel keeps %lld "
                                     "buckets",
                                     when, p, q->steady_min);
                cr_assert_leq(q->fcl, fcl_keys, "%s: p%d fcl keys", when, p);
                cr_assert_leq(q->ckl, ckl_keys, "%s: p%d ckl keys", when, p);
                cr_assert_leq(q->fcl_max, fcl_bytes, "%s: p%d fcl bytes",
                              when, p);
                cr_assert_leq(q->ckl_max, ckl_bytes, "%s: p%d ckl bytes",
                              when, p);
        }
        cr_assert_gt(parts, 0);
        cr_assert_eq(steady, STEADY, "%s: %d steady channels found", when,
                     steady);
}

Test(redis_bound, a_flood_of_distinct_ids_and_names_reaches_a_plateau)
{
        long long t0 = (long long)time(NULL) * 1000 - 2 * FLOOD_MS - HOUR_MS;
        long long base, used1, used2, keys1, keys2;
        part_keys_t pk[PARTS_MAX];
        redisContext *c = conn();

        t0 -= t0 % HOUR_MS;
        base = info_used_memory(c);
        flood(1, t0);
        run_stages();
        survey(c, pk, &keys1);
        check_bound(pk, "after one flood");
        used1 = info_used_memory(c);

        flood(2, t0 + FLOOD_MS);
        run_stages();
        survey(c, pk, &keys2);
        check_bound(pk, "after two floods");
        used2 = info_used_memory(c);
        fprintf(stderr,
                "redis_bound: used_memory %lld at start, %lld after one "
                "flood (%lld keys), %lld after two (%lld keys)\n",
                base, used1, keys1, used2, keys2);
        /* The plateau: twice the flood, no more keys and no more memory
         * (a quarter of slack for encodings and allocator classes). */
        cr_assert_leq(keys2, keys1 + keys1 / 10);
        cr_assert_leq(used2 - base, (used1 - base) * 5 / 4,
                      "used_memory grew from %lld to %lld over %lld", used1,
                      used2, base);
        redisFree(c);
}
