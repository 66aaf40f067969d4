/*
 * sg-ctl: the operator's view of the Redis state: KPI totals
 * per scope over an event-time range, recent decisions, circuit breakers, a
 * live per-channel view, and the generated configuration reference.
 * Read-only: it never writes to Redis. Key layout: docs/redis-layout.md.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <jansson.h>

#include "codec.h"
#include "conf.h"
#include "event.h"
#include "http.h"
#include "log.h"
#include "redis.h"
#include "stage.h"
#include "window.h"

#define CONNECT_TIMEOUT_MS 3000
#define PIPELINE_CHUNK     1000 /* commands per round trip */

static const char *const counter_fields[] = {
    "impressions",         "clicks",
    "conversions",         "spend_micros",
    "revenue_micros",      "invalid_clicks",
    "invalid_impressions", "invalid_spend_micros"};
#define NCOUNTERS 8

static sg_conf_t conf;
static const char *conf_path; /* -c, before or after the command */
static sg_redis_t *redis;

/* ------------------------------------------------------------ utilities */

static void usage(FILE *fp)
{
        fprintf(
            fp,
            "Usage: sg-ctl [-c FILE] <command> [options]\n\n"
            "Reads spendguard's Redis state (read-only).\n\n"
            "Commands:\n"
            "  kpis [--channel C] [--campaign K] [--from T] [--to T] "
            "[--json]\n"
            "      totals per scope (channel level, then its campaigns) "
            "over the buckets whose\n"
            "      start lies in [from, to); T is ms since the epoch or "
            "UTC ISO-8601\n"
            "      (2026-11-22T10:00:00Z); default: everything retained\n"
            "  decisions [--last N] [--json]\n"
            "      the last N delivered decisions, newest first (default "
            "20); a shadow\n"
            "      rule's dry runs marked \"SHADOW dry run:\" (--json: "
            "\"dry_run\": true)\n"
            "  breakers [--json]\n"
            "      circuit breaker state per channel (and campaign)\n"
            "  budgets [--json]\n"
            "      configured and current budget per channel (after "
            "reallocations) and the\n"
            "      reserve\n"
            "  top [--interval MS] [--once] [--window S] [--decisions N] "
            "[--note TEXT]\n"
            "      (alias: watch) live per-channel view: breaker, today's "
            "spend (UTC) vs the\n"
            "      current budget, CPA vs target, IVT, CTR, CVR, ROAS over "
            "the last S seconds\n"
            "      of event time (default the first of aggregate.windows), "
            "a legend, and as\n"
            "      many decisions as fit (off a terminal: N, default 5); "
            "money in the\n"
            "      config's currency; redrawn every MS ms (default 1000), "
            "cut to the\n"
            "      terminal's size; plain frames when stdout is not a "
            "terminal\n"
            "  serve [--listen HOST:PORT] [--window S] [--decisions N]\n"
            "      the status page and /api/status over HTTP (default "
            "127.0.0.1:9730;\n"
            "      port 0 = a free one), until SIGTERM\n"
            "  config-reference\n"
            "      print the configuration reference (docs/config.md)\n\n"
            "Options:\n"
            "  -c, --config FILE  YAML config (default: $SG_CONFIG, then "
            "config/spendguard.yaml)\n"
            "  -h, --help         this help\n"
            "  -V, --version      print the version\n\n"
            "Environment: SG_REDIS (redis://host:port/db or "
            "unix:///path.sock) beats the file.\n"
            "Exit: 0 ok (no data is not an error), 1 Redis unreachable or "
            "failing, 2 bad usage or config.\n");
}

static void bad_usage(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static void bad_usage(const char *fmt, ...)
{
        va_list ap;

        fputs("sg-ctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs(" (try --help)\n", stderr);
        exit(2);
}

static void die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
        va_list ap;

        fputs("sg-ctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(1);
}

static void *xmalloc(size_t n)
{
        void *p = calloc(1, n ? n : 1); /* zeroed: callers fill it partly */

        if (!p)
                die("out of memory");
        return p;
}

static void *xrealloc(void *p, size_t n)
{
        p = realloc(p, n ? n : 1);
        if (!p)
                die("out of memory");
        return p;
}

static char *xstrndup(const char *s, size_t n)
{
        char *p = xmalloc(n + 1);

        memcpy(p, s, n);
        p[n] = '\0';
        return p;
}

/* A growable list of strings. */
typedef struct strlist {
        char **v;
        size_t n, cap;
} strlist_t;

static void strlist_add(strlist_t *l, const char *s, size_t len)
{
        if (l->n == l->cap) {
                l->cap = l->cap ? l->cap * 2 : 16;
                l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
        }
        l->v[l->n++] = xstrndup(s, len);
}

static void strlist_free(strlist_t *l)
{
        for (size_t i = 0; i < l->n; i++)
                free(l->v[i]);
        free(l->v);
        memset(l, 0, sizeof(*l));
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts and removes duplicates (SCAN may return a key twice). */
static void strlist_sort_uniq(strlist_t *l)
{
        size_t j = 0;

        if (l->n == 0)
                return;
        qsort(l->v, l->n, sizeof(*l->v), cmp_str);
        for (size_t i = 1; i < l->n; i++) {
                if (strcmp(l->v[i], l->v[j]) == 0)
                        free(l->v[i]);
                else
                        l->v[++j] = l->v[i];
        }
        l->n = j + 1;
}

static int64_t parse_int_arg(const char *opt, const char *s, int64_t min,
                             int64_t max)
{
        char *end;
        long long v;

        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno || end == s || *end || v < min || v > max)
                bad_usage("%s: \"%s\" is not an integer in %" PRId64
                          "..%" PRId64,
                          opt, s, min, max);
        return v;
}

/*
 * A time argument: ms since the epoch, or UTC ISO-8601
 * (YYYY-MM-DD[THH:MM[:SS[.mmm]]][Z]). 0 and *out, or -1.
 */
static int parse_time(const char *s, int64_t *out)
{
        struct tm tm;
        int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0, n = 0, len;
        const char *p;
        char *end;

        if (*s && strspn(s, "0123456789") == strlen(s)) {
                errno = 0;
                *out = strtoll(s, &end, 10);
                return errno ? -1 : 0;
        }
        if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
                return -1;
        p = s + n;
        if (*p == 'T' || *p == ' ') {
                if (sscanf(p + 1, "%2d:%2d%n", &h, &mi, &n) != 2 || n != 5)
                        return -1;
                p += 1 + n;
                if (*p == ':') {
                        if (sscanf(p + 1, "%2d%n", &sec, &n) != 1 || n != 2)
                                return -1;
                        p += 1 + n;
                        if (*p == '.') {
                                len = (int)strspn(p + 1, "0123456789");
                                if (len < 1 || len > 3)
                                        return -1;
                                for (int i = 0; i < 3; i++)
                                        ms = ms * 10 +
                                             (i < len ? p[1 + i] - '0' : 0);
                                p += 1 + len;
                        }
                }
        }
        if (*p == 'Z')
                p++;
        if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
            sec > 60)
                return -1;
        memset(&tm, 0, sizeof(tm));
        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        tm.tm_hour = h;
        tm.tm_min = mi;
        tm.tm_sec = sec;
        *out = (int64_t)timegm(&tm) * 1000 + ms;
        return 0;
}

/* 2026-11-22T10:00:00.123Z */
static const char *iso_time(int64_t ms, char *buf, size_t size)
{
        time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
        struct tm tm;

        gmtime_r(&t, &tm);
        if (snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec,
                     (int)(ms - (int64_t)t * 1000)) >= (int)size)
                buf[0] = '\0';
        return buf;
}

static void put_json_str_or_null(FILE *fp, const char *s)
{
        if (s)
                sg_json_put_str(fp, s);
        else
                fputs("null", fp);
}

/* The shortest form that reads back as the same double. */
static void put_json_double(FILE *fp, double v)
{
        char buf[40];

        if (v != v || v > 1.7976931348623157e308 ||
            v < -1.7976931348623157e308) {
                fputs("null", fp);
                return;
        }
        for (int prec = 15; prec <= 17; prec++) {
                snprintf(buf, sizeof(buf), "%.*g", prec, v);
                if (strtod(buf, NULL) == v)
                        break;
        }
        fputs(buf, fp);
}

/* ----------------------------------------------------------------- Redis */

/* After the command's options are parsed: config, signals, Redis. */
static void connect_redis(void)
{
        char errstr[512];

        if (sg_conf_load(&conf, conf_path, errstr, sizeof(errstr)) == -1) {
                fprintf(stderr, "sg-ctl: bad config: %s\n", errstr);
                exit(2);
        }
        sg_stage_signals();
        redis = sg_redis_new(conf.redis, CONNECT_TIMEOUT_MS, errstr,
                             sizeof(errstr));
        if (!redis)
                die("cannot connect to Redis at %s: %s", conf.redis, errstr);
}

/* A reply that must not be NULL (lost connection) or an error. */
static redisReply *checked(redisReply *reply, const char *what)
{
        if (!reply)
                die("Redis: connection lost during %s", what);
        if (reply->type == REDIS_REPLY_ERROR)
                die("Redis: %s: %s", what, reply->str);
        return reply;
}

static redisReply *cmd_argv(int argc, const char **argv, const char *what)
{
        return checked(sg_redis_argv(redis, argc, argv, NULL), what);
}

/* All keys matching pattern, sorted. */
static void scan_keys(const char *pattern, strlist_t *out)
{
        char cursor[32] = "0";

        do {
                const char *argv[] = {"SCAN",  cursor,  "MATCH",
                                      pattern, "COUNT", "1000"};
                redisReply *r = cmd_argv(6, argv, "SCAN");

                if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
                    r->element[0]->type != REDIS_REPLY_STRING)
                        die("Redis: unexpected SCAN reply");
                snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
                for (size_t i = 0; i < r->element[1]->elements; i++) {
                        redisReply *k = r->element[1]->element[i];

                        strlist_add(out, k->str, k->len);
                }
                freeReplyObject(r);
        } while (strcmp(cursor, "0") != 0);
        strlist_sort_uniq(out);
}

/*
 * A pipeline of commands, sent in chunks; fn sees each reply in order.
 * Each command is an argv of strings built by the caller.
 */
typedef struct pipe_cmd {
        int argc;
        const char **argv;
} pipe_cmd_t;

typedef void(pipe_fn)(void *opaque, size_t i, redisReply *reply);

static void pipeline(const pipe_cmd_t *cmds, size_t n, pipe_fn *fn,
                     void *opaque, const char *what)
{
        for (size_t base = 0; base < n; base += PIPELINE_CHUNK) {
                size_t m =
                    n - base < PIPELINE_CHUNK ? n - base : PIPELINE_CHUNK;

                for (size_t i = 0; i < m; i++)
                        if (sg_redis_append_argv(redis, cmds[base + i].argc,
                                                 cmds[base + i].argv,
                                                 NULL) == -1)
                                die("Redis: cannot queue %s", what);
                for (size_t i = 0; i < m; i++) {
                        redisReply *r =
                            checked(sg_redis_pipeline_get(redis), what);

                        fn(opaque, base + i, r);
                        freeReplyObject(r);
                }
        }
}

/* ---------------------------------------------------------------- scopes */

/* One scope as one partition holds it. */
typedef struct scope_ref {
        char *prefix; /* "sg:{p3}:" */
        char *scope;  /* "social|social-c1" */
        char *channel;
        char *campaign; /* "" = channel level */
} scope_ref_t;

typedef struct scope_list {
        scope_ref_t *v;
        size_t n, cap;
} scope_list_t;

static int cmp_scope(const void *a, const void *b)
{
        const scope_ref_t *x = a, *y = b;
        int c = strcmp(x->channel, y->channel);

        if (!c)
                c = strcmp(x->campaign, y->campaign);
        if (!c)
                c = strcmp(x->prefix, y->prefix);
        return c;
}

/* Every scope of every partition (SCAN sg:{p*}:scopes, SMEMBERS), sorted
 * by channel, then campaign (channel level first). NULL filters = all. */
static void load_scopes(const char *channel, const char *campaign,
                        scope_list_t *out)
{
        strlist_t keys = {0};

        scan_keys("sg:{p*}:scopes", &keys);
        for (size_t i = 0; i < keys.n; i++) {
                size_t plen = strlen(keys.v[i]) - strlen("scopes");
                const char *argv[] = {"SMEMBERS", keys.v[i]};
                redisReply *r = cmd_argv(2, argv, "SMEMBERS");

                for (size_t j = 0;
                     r->type == REDIS_REPLY_ARRAY && j < r->elements; j++) {
                        redisReply *m = r->element[j];
                        const char *bar = memchr(m->str, '|', m->len);
                        scope_ref_t *s;

                        if (!bar)
                                continue; /* not a scope */
                        if (channel &&
                            ((size_t)(bar - m->str) != strlen(channel) ||
                             memcmp(m->str, channel, bar - m->str)))
                                continue;
                        if (campaign && strcmp(bar + 1, campaign))
                                continue;
                        if (out->n == out->cap) {
                                out->cap = out->cap ? out->cap * 2 : 32;
                                out->v = xrealloc(out->v,
                                                  out->cap * sizeof(*out->v));
                        }
                        s = &out->v[out->n++];
                        s->prefix = xstrndup(keys.v[i], plen);
                        s->scope = xstrndup(m->str, m->len);
                        s->channel = xstrndup(m->str, bar - m->str);
                        s->campaign =
                            xstrndup(bar + 1, m->len - (bar + 1 - m->str));
                }
                freeReplyObject(r);
        }
        strlist_free(&keys);
        if (out->n)
                qsort(out->v, out->n, sizeof(*out->v), cmp_scope);
}

static void scope_list_free(scope_list_t *l)
{
        for (size_t i = 0; i < l->n; i++) {
                free(l->v[i].prefix);
                free(l->v[i].scope);
                free(l->v[i].channel);
                free(l->v[i].campaign);
        }
        free(l->v);
        memset(l, 0, sizeof(*l));
}

/* A scope's totals over a range of buckets. */
typedef struct totals {
        sg_counters_t c;
        int64_t first, last; /* bucket starts; first > last = no bucket */
        int buckets;
} totals_t;

static void totals_init(totals_t *t)
{
        memset(t, 0, sizeof(*t));
        t->first = INT64_MAX;
        t->last = INT64_MIN;
}

static int64_t *counter_slot(sg_counters_t *c, int f)
{
        int64_t *slots[NCOUNTERS] = {
            &c->impressions,         &c->clicks,
            &c->conversions,         &c->spend_micros,
            &c->revenue_micros,      &c->invalid_clicks,
            &c->invalid_impressions, &c->invalid_spend_micros};

        return slots[f];
}

static void add_bucket_hash(void *opaque, size_t i, redisReply *r)
{
        totals_t *t = opaque;

        (void)i;
        if (r->type != REDIS_REPLY_ARRAY)
                return;
        for (size_t j = 0; j + 1 < r->elements; j += 2) {
                const char *name = r->element[j]->str;

                for (int f = 0; f < NCOUNTERS; f++)
                        if (strcmp(name, counter_fields[f]) == 0) {
                                *counter_slot(&t->c, f) +=
                                    strtoll(r->element[j + 1]->str, NULL, 10);
                                break;
                        }
        }
}

/*
 * Adds to t the buckets of one scope in one partition whose start lies in
 * [from, to] (Redis range strings: "-inf", "123", "(456"). With devices,
 * also adds the PFCOUNT over their HyperLogLogs.
 */
static void sum_scope(const scope_ref_t *s, const char *from, const char *to,
                      int devices, totals_t *t)
{
        char *bi = NULL;
        const char *zargv[4];
        redisReply *r;
        pipe_cmd_t *cmds;
        char **keys;
        const char **pfargv;
        size_t n;

        if (asprintf(&bi, "%sbi:%s", s->prefix, s->scope) < 0)
                die("out of memory");
        zargv[0] = "ZRANGEBYSCORE";
        zargv[1] = bi;
        zargv[2] = from;
        zargv[3] = to;
        r = cmd_argv(4, zargv, "ZRANGEBYSCORE");
        free(bi);
        n = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
        if (n == 0) {
                freeReplyObject(r);
                return;
        }
        cmds = xmalloc(n * sizeof(*cmds));
        keys = xmalloc(2 * n * sizeof(*keys));
        pfargv = xmalloc((n + 1) * sizeof(*pfargv));
        pfargv[0] = "PFCOUNT";
        for (size_t i = 0; i < n; i++) {
                const char *b = r->element[i]->str;
                int64_t start = strtoll(b, NULL, 10);

                if (asprintf(&keys[2 * i], "%sb:%s:%s", s->prefix, s->scope,
                             b) < 0 ||
                    asprintf(&keys[2 * i + 1], "%su:%s:%s", s->prefix, s->scope,
                             b) < 0)
                        die("out of memory");
                cmds[i].argc = 2;
                cmds[i].argv = xmalloc(2 * sizeof(char *));
                cmds[i].argv[0] = "HGETALL";
                cmds[i].argv[1] = keys[2 * i];
                pfargv[i + 1] = keys[2 * i + 1];
                if (start < t->first)
                        t->first = start;
                if (start > t->last)
                        t->last = start;
        }
        t->buckets += (int)n;
        freeReplyObject(r);
        pipeline(cmds, n, add_bucket_hash, t, "HGETALL");
        if (devices) {
                /* One command over all the buckets' HyperLogLogs: their
                 * union, not a sum. The keys share the hash tag. */
                r = checked(sg_redis_argv(redis, (int)n + 1, pfargv, NULL),
                            "PFCOUNT");
                if (r->type == REDIS_REPLY_INTEGER)
                        t->c.unique_devices += r->integer;
                freeReplyObject(r);
        }
        for (size_t i = 0; i < n; i++) {
                free((void *)cmds[i].argv);
                free(keys[2 * i]);
                free(keys[2 * i + 1]);
        }
        free(cmds);
        free(keys);
        free(pfargv);
}

/* ------------------------------------------------------------------ kpis */

static void print_kpi_json(const scope_ref_t *s, const totals_t *t,
                           int64_t bucket_ms)
{
        const sg_counters_t *c = &t->c;
        struct {
                const char *name;
                int (*fn)(const sg_counters_t *, double *);
        } ratios[] = {{"ctr", sg_counters_ctr},
                      {"cvr", sg_counters_cvr},
                      {"cpa_micros", sg_counters_cpa},
                      {"cpm_micros", sg_counters_cpm},
                      {"roas", sg_counters_roas},
                      {"ivt_rate", sg_counters_ivt_rate}};

        fputs("{\"channel\":", stdout);
        sg_json_put_str(stdout, s->channel);
        fputs(",\"campaign_id\":", stdout);
        if (s->campaign[0])
                sg_json_put_str(stdout, s->campaign);
        else
                fputs("null", stdout);
        printf(",\"window_start\":%" PRId64 ",\"window_end\":%" PRId64
               ",\"impressions\":%" PRId64 ",\"clicks\":%" PRId64
               ",\"conversions\":%" PRId64 ",\"spend_micros\":%" PRId64
               ",\"revenue_micros\":%" PRId64 ",\"invalid_clicks\":%" PRId64
               ",\"invalid_impressions\":%" PRId64
               ",\"invalid_spend_micros\":%" PRId64
               ",\"unique_devices\":%" PRId64,
               t->first, t->last + bucket_ms, c->impressions, c->clicks,
               c->conversions, c->spend_micros, c->revenue_micros,
               c->invalid_clicks, c->invalid_impressions,
               c->invalid_spend_micros, c->unique_devices);
        for (size_t i = 0; i < sizeof(ratios) / sizeof(ratios[0]); i++) {
                double v;

                printf(",\"%s\":", ratios[i].name);
                if (ratios[i].fn(c, &v))
                        put_json_double(stdout, v);
                else
                        fputs("null", stdout);
        }
        fputs("}\n", stdout);
}

/* A ratio for the table: "12.34%", "5.67", or "-" when undefined. */
static const char *fmt_ratio(int (*fn)(const sg_counters_t *, double *),
                             const sg_counters_t *c, double scale,
                             const char *suffix, char *buf, size_t size)
{
        double v;

        if (!fn(c, &v))
                return "-";
        snprintf(buf, size, "%.2f%s", v * scale, suffix);
        return buf;
}

/* Micros as currency units with 2 decimals, rounded half away from 0. */
static const char *fmt_money(int64_t micros, char *buf, size_t size)
{
        uint64_t abs = micros < 0 ? -(uint64_t)micros : (uint64_t)micros;
        uint64_t cents = (abs + 5000) / 10000;

        snprintf(buf, size, "%s%" PRIu64 ".%02" PRIu64,
                 micros < 0 && cents ? "-" : "", cents / 100, cents % 100);
        return buf;
}

typedef struct kpi_row {
        const scope_ref_t *s;
        totals_t t;
} kpi_row_t;

static void print_kpi_table(const kpi_row_t *rows, size_t n)
{
        int wch = 7, wca = 8;

        for (size_t i = 0; i < n; i++) {
                int a = (int)strlen(rows[i].s->channel);
                int b = (int)strlen(rows[i].s->campaign);

                wch = a > wch ? a : wch;
                wca = b > wca ? b : wca;
        }
        printf("%-*s  %-*s  %11s  %8s  %11s  %14s  %7s  %7s  %10s  %6s  "
               "%7s\n",
               wch, "CHANNEL", wca, "CAMPAIGN", "IMPRESSIONS", "CLICKS",
               "CONVERSIONS", "SPEND", "CTR", "CVR", "CPA", "ROAS", "IVT");
        for (size_t i = 0; i < n; i++) {
                const sg_counters_t *c = &rows[i].t.c;
                char spend[32], ctr[32], cvr[32], cpa[32], roas[32], ivt[32];
                double v;

                if (sg_counters_cpa(c, &v))
                        fmt_money((int64_t)(v + 0.5), cpa, sizeof(cpa));
                else
                        snprintf(cpa, sizeof(cpa), "-");
                printf(
                    "%-*s  %-*s  %11" PRId64 "  %8" PRId64 "  %11" PRId64
                    "  %14s  %7s  %7s  %10s  %6s  %7s\n",
                    wch, rows[i].s->channel, wca,
                    rows[i].s->campaign[0] ? rows[i].s->campaign : "-",
                    c->impressions, c->clicks, c->conversions,
                    fmt_money(c->spend_micros, spend, sizeof(spend)),
                    fmt_ratio(sg_counters_ctr, c, 100, "%", ctr, sizeof(ctr)),
                    fmt_ratio(sg_counters_cvr, c, 100, "%", cvr, sizeof(cvr)),
                    cpa,
                    fmt_ratio(sg_counters_roas, c, 1, "", roas, sizeof(roas)),
                    fmt_ratio(sg_counters_ivt_rate, c, 100, "%", ivt,
                              sizeof(ivt)));
        }
}

static int cmd_kpis(int argc, char **argv)
{
        static const struct option opts[] = {
            {"channel", required_argument, NULL, 'C'},
            {"campaign", required_argument, NULL, 'K'},
            {"from", required_argument, NULL, 'f'},
            {"to", required_argument, NULL, 't'},
            {"json", no_argument, NULL, 'j'},
            {"config", required_argument, NULL, 'c'},
            {NULL, 0, NULL, 0}};
        const char *channel = NULL, *campaign = NULL;
        char from[32] = "-inf", to[32] = "+inf";
        int json = 0, c;
        scope_list_t scopes = {0};
        kpi_row_t *rows;
        size_t nrows = 0;
        int64_t v;

        while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
                switch (c) {
                case 'C':
                        channel = optarg;
                        break;
                case 'K':
                        campaign = optarg;
                        break;
                case 'f':
                case 't':
                        if (parse_time(optarg, &v) == -1)
                                bad_usage("--%s: \"%s\" is neither ms since "
                                          "the epoch nor an ISO-8601 UTC "
                                          "time",
                                          c == 'f' ? "from" : "to", optarg);
                        if (c == 'f')
                                snprintf(from, sizeof(from), "%" PRId64, v);
                        else /* exclusive */
                                snprintf(to, sizeof(to), "(%" PRId64, v);
                        break;
                case 'j':
                        json = 1;
                        break;
                case 'c':
                        conf_path = optarg;
                        break;
                default:
                        bad_usage("kpis: unknown option or missing argument "
                                  "%s",
                                  argv[optind - 1]);
                }
        }
        if (optind < argc)
                bad_usage("kpis: unexpected argument %s", argv[optind]);
        connect_redis();
        load_scopes(channel, campaign, &scopes);
        rows = xmalloc(scopes.n * sizeof(*rows));
        /* Normally a scope lives in one partition; if a repartition left
         * it in two, its rows are merged. */
        for (size_t i = 0; i < scopes.n; i++) {
                const scope_ref_t *s = &scopes.v[i];

                if (nrows == 0 ||
                    strcmp(rows[nrows - 1].s->scope, s->scope) != 0) {
                        rows[nrows].s = s;
                        totals_init(&rows[nrows].t);
                        nrows++;
                }
                sum_scope(s, from, to, 1, &rows[nrows - 1].t);
        }
        if (json) {
                for (size_t i = 0; i < nrows; i++)
                        if (rows[i].t.buckets)
                                print_kpi_json(
                                    rows[i].s, &rows[i].t,
                                    (int64_t)conf.aggregate.bucket_s * 1000);
        } else {
                size_t k = 0;

                for (size_t i = 0; i < nrows; i++)
                        if (rows[i].t.buckets)
                                rows[k++] = rows[i];
                if (k)
                        print_kpi_table(rows, k);
        }
        free(rows);
        scope_list_free(&scopes);
        return 0;
}

/* ------------------------------------------------------------- decisions */

static int64_t json_ms(json_t *v)
{
        int64_t ms;

        if (json_is_integer(v))
                return json_integer_value(v);
        if (json_is_real(v))
                return (int64_t)json_real_value(v);
        if (json_is_string(v) && parse_time(json_string_value(v), &ms) == 0)
                return ms;
        return INT64_MIN;
}

static const char *json_str(json_t *o, const char *key)
{
        json_t *v = json_object_get(o, key);

        return json_is_string(v) ? json_string_value(v) : NULL;
}

/* One readable line: decided_at, action, channel[/campaign], rule, source,
 * reason. A non-JSON entry is printed as it is. */
/* --------------------------------------------- decisions, in money units */

/* The metrics the rules print as micros (lib/rules.c, metric_is_money). */
static int is_money_word(const char *w)
{
        return !strcmp(w, "cpa") || !strcmp(w, "cpm") || !strcmp(w, "spend") ||
               !strcmp(w, "spend_micros");
}

/* A whole number (how the rules print money), maybe followed by "," or
 * ")": 1 with *v and *rest, else 0. */
static int money_token(const char *tok, int64_t *v, const char **rest)
{
        char *end;
        long long x;

        if (!isdigit((unsigned char)tok[tok[0] == '-']))
                return 0;
        errno = 0;
        x = strtoll(tok, &end, 10);
        if (errno || (*end && !strchr(",);", *end)))
                return 0;
        *v = x;
        *rest = end;
        return 1;
}

/*
 * A rule decision's reason with its money in currency units. The reason is
 * part of the Decision record and writes money as micros; people read
 * units: a money metric's value and threshold ("cpa 32500000 > 32500000"),
 * "target N", "spend_micros N" and "spend_micros=N" (shown as "spend").
 */
static void money_reason(const char *reason, char *out, size_t size)
{
        char *copy = xstrndup(reason, strlen(reason)), *save = NULL;
        int money_next = 0, money_after_op = 0;
        size_t n = 0;

        out[0] = '\0';
        for (char *tok = strtok_r(copy, " ", &save); tok && n < size;
             tok = strtok_r(NULL, " ", &save)) {
                char buf[96], num[48], word[64];
                const char *rest, *text = tok;
                size_t l = strcspn(tok, ":,=");
                int64_t v;

                snprintf(word, sizeof(word), "%.*s", (int)l, tok);
                if (!strcmp(word, "spend_micros") && tok[l] == '=' &&
                    money_token(tok + l + 1, &v, &rest)) {
                        snprintf(buf, sizeof(buf), "spend=%s%s",
                                 fmt_money(v, num, sizeof(num)), rest);
                        text = buf;
                        money_next = 0;
                } else if (money_next && money_token(tok, &v, &rest)) {
                        snprintf(buf, sizeof(buf), "%s%s",
                                 fmt_money(v, num, sizeof(num)), rest);
                        text = buf;
                        money_next = 0;
                } else {
                        money_next = 0;
                        if (!strcmp(tok, "target")) {
                                money_next = 1;
                        } else if (is_money_word(tok)) {
                                money_next = money_after_op = 1;
                                if (!strcmp(tok, "spend_micros"))
                                        text = "spend";
                        } else if (money_after_op &&
                                   (!strcmp(tok, ">") || !strcmp(tok, "<") ||
                                    !strcmp(tok, ">=") || !strcmp(tok, "<="))) {
                                money_next = 1;
                                money_after_op = 0;
                        }
                }
                n += (size_t)snprintf(out + n, size - n, "%s%s", n ? " " : "",
                                      text);
        }
        free(copy);
}

static int64_t json_micros(json_t *v)
{
        double d = json_number_value(v);

        return (int64_t)(d < 0 ? d - 0.5 : d + 0.5);
}

/* A REALLOCATE decision from its fields: what moved, before -> after. */
static void money_realloc(json_t *o, const char *reason, char *out,
                          size_t size)
{
        json_t *m = json_object_get(o, "metrics"),
               *b = json_object_get(o, "budgets"), *e;
        const char *colon = strstr(reason, ": ");
        char x[32], y[32];
        size_t n, i;

        if (!json_is_object(m) || !json_is_array(b) || !colon ||
            !json_is_number(json_object_get(m, "moved_micros")) ||
            !json_is_number(json_object_get(m, "total_micros"))) {
                money_reason(reason, out, size);
                return;
        }
        n = (size_t)snprintf(
            out, size, "%.*s: moved %s of %s", (int)(colon - reason), reason,
            fmt_money(json_micros(json_object_get(m, "moved_micros")), x,
                      sizeof(x)),
            fmt_money(json_micros(json_object_get(m, "total_micros")), y,
                      sizeof(y)));
        json_array_foreach(b, i, e)
        {
                const char *ch = json_string_value(json_object_get(e, "channel"));
                int64_t after =
                    json_micros(json_object_get(e, "budget_micros"));
                char key[SG_NAME_LEN + 16];
                json_t *bv;

                if (!ch || n >= size)
                        continue;
                if (!strcmp(ch, "(reserve)")) {
                        bv = json_object_get(m, "reserve_before");
                } else {
                        snprintf(key, sizeof(key), "before.%s", ch);
                        bv = json_object_get(m, key);
                }
                if (!json_is_number(bv) || json_micros(bv) == after)
                        continue;
                n += (size_t)snprintf(out + n, size - n, "%s %s %s -> %s",
                                      n && strchr(out, '>') ? "," : ";", ch,
                                      fmt_money(json_micros(bv), x, sizeof(x)),
                                      fmt_money(after, y, sizeof(y)));
        }
}

/* What a decision says, money in currency units (the config's currency). */
static void decision_text(json_t *o, char *out, size_t size)
{
        const char *reason = json_str(o, "reason"), *action;

        action = json_str(o, "action");
        if (!action && json_is_integer(json_object_get(o, "action")))
                action = sg_action_name(
                    (sg_action_t)json_integer_value(json_object_get(o, "action")));
        if (!reason)
                reason = "";
        if (action && !strcmp(action, "REALLOCATE"))
                money_realloc(o, reason, out, size);
        else
                money_reason(reason, out, size);
}

static void print_decision(FILE *fp, const char *mark, const char *raw,
                           size_t len)
{
        json_t *o = json_loadb(raw, len, 0, NULL);
        const char *campaign, *source, *action;
        char when[40], scope[2 * SG_NAME_LEN + 2], text[2048];
        int64_t at;

        if (!o || !json_is_object(o)) {
                fprintf(fp, "%s%.*s\n", mark, (int)len, raw);
                json_decref(o);
                return;
        }
        at = json_ms(json_object_get(o, "decided_at"));
        action = json_str(o, "action");
        if (!action && json_is_integer(json_object_get(o, "action")))
                action = sg_action_name((sg_action_t)json_integer_value(
                    json_object_get(o, "action")));
        campaign = json_str(o, "campaign_id");
        source = json_str(o, "source");
        snprintf(scope, sizeof(scope), "%s%s%s",
                 json_str(o, "channel") ? json_str(o, "channel") : "?",
                 campaign ? "/" : "", campaign ? campaign : "");
        decision_text(o, text, sizeof(text));
        /* A shadow rule's dry run (absent in entries of older sinks: not
         * one) is told apart before anything it says. */
        fprintf(fp, "%s%-24s  %-12s  %-16s  %-22s  %s%s%s%s%s\n", mark,
                at == INT64_MIN ? "-" : iso_time(at, when, sizeof(when)),
                action ? action : "?", scope,
                json_str(o, "rule_id") ? json_str(o, "rule_id") : "?",
                json_is_true(json_object_get(o, "dry_run"))
                    ? "SHADOW dry run: "
                    : "",
                source ? "source=" : "", source ? source : "",
                source ? "  " : "", text);
        json_decref(o);
}

static redisReply *lrange_decisions(long n)
{
        char stop[32];
        const char *argv[] = {"LRANGE", "sg:decisions", "0", stop};

        snprintf(stop, sizeof(stop), "%ld", n - 1);
        return cmd_argv(4, argv, "LRANGE");
}

static int cmd_decisions(int argc, char **argv)
{
        static const struct option opts[] = {
            {"last", required_argument, NULL, 'n'},
            {"json", no_argument, NULL, 'j'},
            {"config", required_argument, NULL, 'c'},
            {NULL, 0, NULL, 0}};
        long last = 20;
        int json = 0, c;
        redisReply *r;

        while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
                switch (c) {
                case 'n':
                        last =
                            (long)parse_int_arg("--last", optarg, 1, 1000000);
                        break;
                case 'j':
                        json = 1;
                        break;
                case 'c':
                        conf_path = optarg;
                        break;
                default:
                        bad_usage("decisions: unknown option or missing "
                                  "argument %s",
                                  argv[optind - 1]);
                }
        }
        if (optind < argc)
                bad_usage("decisions: unexpected argument %s", argv[optind]);
        connect_redis();
        r = lrange_decisions(last);
        for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements;
             i++) {
                redisReply *e = r->element[i];

                if (json)
                        printf("%.*s\n", (int)e->len, e->str);
                else
                        print_decision(stdout, "", e->str, e->len);
        }
        freeReplyObject(r);
        return 0;
}

/* -------------------------------------------------------------- breakers */

typedef struct breaker {
        char *channel;
        char *state, *rule, *since, *decision_id;
} breaker_t;

static void fill_breaker(void *opaque, size_t i, redisReply *r)
{
        breaker_t *b = (breaker_t *)opaque + i;

        if (r->type != REDIS_REPLY_ARRAY)
                return;
        for (size_t j = 0; j + 1 < r->elements; j += 2) {
                const char *f = r->element[j]->str;
                char **slot = !strcmp(f, "state")         ? &b->state
                              : !strcmp(f, "rule")        ? &b->rule
                              : !strcmp(f, "since")       ? &b->since
                              : !strcmp(f, "decision_id") ? &b->decision_id
                                                          : NULL;

                if (slot && !*slot)
                        *slot = xstrndup(r->element[j + 1]->str,
                                         r->element[j + 1]->len);
        }
}

/* Every sg:breaker:<channel> hash, sorted by channel. */
static breaker_t *load_breakers(size_t *n)
{
        strlist_t keys = {0};
        pipe_cmd_t *cmds;
        breaker_t *b;

        scan_keys("sg:breaker:*", &keys);
        *n = keys.n;
        b = xmalloc(keys.n * sizeof(*b));
        cmds = xmalloc(keys.n * sizeof(*cmds));
        memset(b, 0, keys.n * sizeof(*b));
        for (size_t i = 0; i < keys.n; i++) {
                b[i].channel =
                    xstrndup(keys.v[i] + strlen("sg:breaker:"),
                             strlen(keys.v[i]) - strlen("sg:breaker:"));
                cmds[i].argc = 2;
                cmds[i].argv = xmalloc(2 * sizeof(char *));
                cmds[i].argv[0] = "HGETALL";
                cmds[i].argv[1] = keys.v[i];
        }
        pipeline(cmds, keys.n, fill_breaker, b, "HGETALL");
        for (size_t i = 0; i < keys.n; i++)
                free((void *)cmds[i].argv);
        free(cmds);
        strlist_free(&keys);
        return b;
}

static void breakers_free(breaker_t *b, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(b[i].channel);
                free(b[i].state);
                free(b[i].rule);
                free(b[i].since);
                free(b[i].decision_id);
        }
        free(b);
}

static const char *or_dash(const char *s)
{
        return s && *s ? s : "-";
}

/* A since value in ms as ISO time; anything else as it is. */
static const char *fmt_since(const char *since, char *buf, size_t size)
{
        int64_t ms;

        if (since && *since && strspn(since, "0123456789") == strlen(since) &&
            parse_time(since, &ms) == 0)
                return iso_time(ms, buf, size);
        return or_dash(since);
}

static int cmd_breakers(int argc, char **argv)
{
        static const struct option opts[] = {
            {"json", no_argument, NULL, 'j'},
            {"config", required_argument, NULL, 'c'},
            {NULL, 0, NULL, 0}};
        int json = 0, c, wscope = 7, wstate = 6, wrule = 4;
        breaker_t *b;
        size_t n;

        while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
                if (c == 'j')
                        json = 1;
                else if (c == 'c')
                        conf_path = optarg;
                else
                        bad_usage("breakers: unknown option %s",
                                  argv[optind - 1]);
        }
        if (optind < argc)
                bad_usage("breakers: unexpected argument %s", argv[optind]);
        connect_redis();
        b = load_breakers(&n);
        /* Columns as wide as their longest value: a campaign scope
         * ("gifts|gifts_c2") or a long rule id must not shift the rest. */
        for (size_t i = 0; i < n; i++) {
                if ((int)strlen(b[i].channel) > wscope)
                        wscope = (int)strlen(b[i].channel);
                if ((int)strlen(or_dash(b[i].state)) > wstate)
                        wstate = (int)strlen(or_dash(b[i].state));
                if ((int)strlen(or_dash(b[i].rule)) > wrule)
                        wrule = (int)strlen(or_dash(b[i].rule));
        }
        if (n && !json)
                printf("%-*s  %-*s  %-*s  %-24s  %s\n", wscope, "SCOPE", wstate,
                       "STATE", wrule, "RULE", "SINCE", "DECISION_ID");
        for (size_t i = 0; i < n; i++) {
                char when[40];

                if (!json) {
                        printf("%-*s  %-*s  %-*s  %-24s  %s\n", wscope,
                               b[i].channel, wstate, or_dash(b[i].state),
                               wrule, or_dash(b[i].rule),
                               fmt_since(b[i].since, when, sizeof(when)),
                               or_dash(b[i].decision_id));
                        continue;
                }
                fputs("{\"channel\":", stdout);
                sg_json_put_str(stdout, b[i].channel);
                fputs(",\"state\":", stdout);
                put_json_str_or_null(stdout, b[i].state);
                fputs(",\"rule\":", stdout);
                put_json_str_or_null(stdout, b[i].rule);
                fputs(",\"since\":", stdout);
                if (b[i].since && *b[i].since &&
                    strspn(b[i].since, "0123456789") == strlen(b[i].since))
                        fputs(b[i].since, stdout);
                else if (b[i].since)
                        sg_json_put_str(stdout, b[i].since);
                else
                        fputs("null", stdout);
                fputs(",\"decision_id\":", stdout);
                put_json_str_or_null(stdout, b[i].decision_id);
                fputs("}\n", stdout);
        }
        breakers_free(b, n);
        return 0;
}

/* --------------------------------------------------------------- budgets */

static void put_budget(int json, const char *channel, int64_t configured,
                       int has_configured, int64_t current)
{
        if (!json) {
                char c1[32], c2[32];

                printf("%-12s  %14s  %14s\n", channel,
                       has_configured ? fmt_money(configured, c1, sizeof(c1))
                                      : "-",
                       fmt_money(current, c2, sizeof(c2)));
                return;
        }
        fputs("{\"channel\":", stdout);
        sg_json_put_str(stdout, channel);
        if (has_configured)
                printf(",\"configured_micros\":%" PRId64, configured);
        else
                fputs(",\"configured_micros\":null", stdout);
        printf(",\"budget_micros\":%" PRId64 "}\n", current);
}

/* sg:budgets (what reallocations left) next to the configured budgets. */
static int cmd_budgets(int argc, char **argv)
{
        static const struct option opts[] = {
            {"json", no_argument, NULL, 'j'},
            {"config", required_argument, NULL, 'c'},
            {NULL, 0, NULL, 0}};
        int json = 0, c;
        int64_t reserve;
        redisReply *r;

        while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
                if (c == 'j')
                        json = 1;
                else if (c == 'c')
                        conf_path = optarg;
                else
                        bad_usage("budgets: unknown option %s",
                                  argv[optind - 1]);
        }
        if (optind < argc)
                bad_usage("budgets: unexpected argument %s", argv[optind]);
        connect_redis();
        r = sg_redis_command(redis, "HGETALL sg:budgets");
        if (!r || r->type != REDIS_REPLY_ARRAY)
                die("HGETALL sg:budgets: %s",
                    r && r->type == REDIS_REPLY_ERROR ? r->str : "failed");
        reserve = conf.rules.reserve_micros;
        if (!json)
                printf("%-12s  %14s  %14s\n", "CHANNEL", "CONFIGURED",
                       "CURRENT");
        for (int i = 0; i < conf.channel_cnt; i++) {
                int64_t cur = conf.channels[i].budget_micros;

                for (size_t j = 0; j + 1 < r->elements; j += 2)
                        if (strcmp(r->element[j]->str, conf.channels[i].name) ==
                            0)
                                cur = strtoll(r->element[j + 1]->str, NULL, 10);
                put_budget(json, conf.channels[i].name,
                           conf.channels[i].budget_micros, 1, cur);
        }
        for (size_t j = 0; j + 1 < r->elements; j += 2)
                if (strcmp(r->element[j]->str, "(reserve)") == 0)
                        reserve = strtoll(r->element[j + 1]->str, NULL, 10);
        put_budget(json, "(reserve)", conf.rules.reserve_micros, 1, reserve);
        freeReplyObject(r);
        return 0;
}

/* ------------------------------------------------------------------- top */

/*
 * The live view: per channel, today's spend (UTC day) against the daily
 * budget and the rates over the last window of event time, then the last
 * decisions. On a terminal it redraws in place, with colours; anywhere else
 * (a pipe, a log, TERM=dumb) it writes plain frames, a blank line apart.
 */

#define TOP_DECISIONS 5 /* off a terminal; on one, as many as fit */
#define DAY_MS        86400000LL
#define TOP_MAX_NOTES 4

typedef struct top_row {
        char channel[SG_NAME_LEN];
        totals_t day;    /* buckets of the current UTC day */
        totals_t window; /* the last window of event time */
        totals_t all;    /* every retained bucket (as sg-ctl kpis), if asked */
        int64_t newest;  /* newest bucket start, INT64_MIN = no data */
        char state[16];  /* as stored: closed, open, half_open */
        int64_t budget;     /* current: after reallocations (sg:budgets) */
        int64_t configured; /* channels[].budget_micros, 0 = none */
        int64_t target_cpa; /* channels[].target_cpa_micros, 0 = none */
} top_row_t;

typedef struct top_view {
        int64_t window_ms;
        int ansi;  /* cursor control and in-place redraw */
        int color; /* SGR colours (ansi, and NO_COLOR unset) */
        int cols, rows; /* the terminal's size each frame; 0 = no limit */
        long decisions; /* how many, when the height does not say */
        const char *notes[TOP_MAX_NOTES];
        int nnotes;
} top_view_t;

/* One picture of the state, for the terminal and the status page. */
typedef struct top_data {
        top_row_t *rows;
        size_t n;
        int64_t now, day_from;
        int64_t reserve; /* current reserve (sg:budgets) */
} top_data_t;

/* Whether the cursor is hidden, so that every way out shows it again. */
static int cursor_hidden;

static void top_show_cursor(void)
{
        if (cursor_hidden) {
                cursor_hidden = 0;
                fputs("\033[?25h", stdout);
                fflush(stdout);
        }
}

static void top_add_channel(top_row_t **rows, size_t *n, size_t *cap,
                            const char *channel)
{
        const sg_channel_conf_t *cc = sg_conf_channel(&conf, channel);
        top_row_t *r;

        for (size_t i = 0; i < *n; i++)
                if (strcmp((*rows)[i].channel, channel) == 0)
                        return;
        if (*n == *cap) {
                *cap = *cap ? *cap * 2 : 16;
                *rows = xrealloc(*rows, *cap * sizeof(**rows));
        }
        r = &(*rows)[(*n)++];
        memset(r, 0, sizeof(*r));
        snprintf(r->channel, sizeof(r->channel), "%s", channel);
        totals_init(&r->day);
        totals_init(&r->window);
        totals_init(&r->all);
        r->newest = INT64_MIN;
        snprintf(r->state, sizeof(r->state), "closed");
        if (cc) {
                r->configured = r->budget = cc->budget_micros;
                r->target_cpa = cc->target_cpa_micros;
        }
}

/* The newest bucket start of a channel-level scope in one partition. */
static int64_t newest_bucket(const scope_ref_t *s)
{
        const char *argv[] = {
            "ZREVRANGEBYSCORE", NULL, "+inf", "-inf", "LIMIT", "0", "1"};
        redisReply *r;
        int64_t v = INT64_MIN;
        char *bi;

        if (asprintf(&bi, "%sbi:%s", s->prefix, s->scope) < 0)
                die("out of memory");
        argv[1] = bi;
        r = cmd_argv(7, argv, "ZREVRANGEBYSCORE");
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 1)
                v = strtoll(r->element[0]->str, NULL, 10);
        freeReplyObject(r);
        free(bi);
        return v;
}

/* Which of two bucket ranges each HGETALL reply of top_sum_scope adds to. */
typedef struct top_sum {
        const int64_t *starts;
        int64_t day_from, day_to; /* [from, to) */
        int64_t win_from, win_to; /* [from, to] */
        totals_t *day, *win;
} top_sum_t;

static void totals_note(totals_t *t, int64_t start)
{
        if (start < t->first)
                t->first = start;
        if (start > t->last)
                t->last = start;
        t->buckets++;
}

static void top_add_bucket(void *opaque, size_t i, redisReply *r)
{
        top_sum_t *s = opaque;
        int64_t b = s->starts[i];

        if (b >= s->day_from && b < s->day_to) {
                add_bucket_hash(s->day, i, r);
                totals_note(s->day, b);
        }
        if (b >= s->win_from && b <= s->win_to) {
                add_bucket_hash(s->win, i, r);
                totals_note(s->win, b);
        }
}

/* Adds one scope's buckets to the day and window totals: one index read
 * and one HGETALL per bucket, even where the two ranges overlap. */
static void top_sum_scope(const scope_ref_t *sc, top_sum_t *s)
{
        int64_t from = s->day_from < s->win_from ? s->day_from : s->win_from;
        char *bi, min[32];
        const char *zargv[] = {"ZRANGEBYSCORE", NULL, min, "+inf"};
        pipe_cmd_t *cmds;
        char **keys;
        int64_t *starts;
        size_t n = 0;
        redisReply *r;

        if (asprintf(&bi, "%sbi:%s", sc->prefix, sc->scope) < 0)
                die("out of memory");
        snprintf(min, sizeof(min), "%" PRId64, from);
        zargv[1] = bi;
        r = cmd_argv(4, zargv, "ZRANGEBYSCORE");
        free(bi);
        if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
                freeReplyObject(r);
                return;
        }
        cmds = xmalloc(r->elements * sizeof(*cmds));
        keys = xmalloc(r->elements * sizeof(*keys));
        starts = xmalloc(r->elements * sizeof(*starts));
        for (size_t i = 0; i < r->elements; i++) {
                const char *b = r->element[i]->str;
                int64_t start = strtoll(b, NULL, 10);

                if (!(start >= s->day_from && start < s->day_to) &&
                    !(start >= s->win_from && start <= s->win_to))
                        continue;
                if (asprintf(&keys[n], "%sb:%s:%s", sc->prefix, sc->scope, b) <
                    0)
                        die("out of memory");
                starts[n] = start;
                cmds[n].argc = 2;
                cmds[n].argv = xmalloc(2 * sizeof(char *));
                cmds[n].argv[0] = "HGETALL";
                cmds[n].argv[1] = keys[n];
                n++;
        }
        freeReplyObject(r);
        s->starts = starts;
        pipeline(cmds, n, top_add_bucket, s, "HGETALL");
        for (size_t i = 0; i < n; i++) {
                free((void *)cmds[i].argv);
                free(keys[i]);
        }
        free(cmds);
        free(keys);
        free(starts);
}

/*
 * Reads the picture: a row per configured channel (config order), then
 * any other channel with data; today's spend, the window's counters, the
 * breaker, the current budget; with all, also every retained bucket of the
 * channel-level scope (what `sg-ctl kpis` sums).
 */
static void top_collect(const top_view_t *v, int all, top_data_t *d)
{
        int64_t bucket_ms = (int64_t)conf.aggregate.bucket_s * 1000;
        scope_list_t scopes = {0};
        size_t cap = 0, nb;
        breaker_t *b;
        redisReply *r;

        memset(d, 0, sizeof(*d));
        d->now = sg_now_ms();
        d->day_from = d->now - d->now % DAY_MS;
        d->reserve = conf.rules.reserve_micros;
        for (int i = 0; i < conf.channel_cnt; i++)
                top_add_channel(&d->rows, &d->n, &cap, conf.channels[i].name);
        load_scopes(NULL, "", &scopes);
        for (size_t i = 0; i < scopes.n; i++)
                top_add_channel(&d->rows, &d->n, &cap, scopes.v[i].channel);
        for (size_t k = 0; k < d->n; k++) {
                top_row_t *row = &d->rows[k];
                top_sum_t s;

                for (size_t i = 0; i < scopes.n; i++) {
                        int64_t t;

                        if (strcmp(scopes.v[i].channel, row->channel))
                                continue;
                        t = newest_bucket(&scopes.v[i]);
                        if (t > row->newest)
                                row->newest = t;
                        if (all)
                                sum_scope(&scopes.v[i], "-inf", "+inf", 1,
                                          &row->all);
                }
                if (row->newest == INT64_MIN)
                        continue;
                /* The window ends with the channel's newest bucket, so an
                 * idle or lagging channel still shows its last rates. */
                s.day_from = d->day_from;
                s.day_to = d->day_from + DAY_MS;
                s.win_from = row->newest + bucket_ms - v->window_ms;
                s.win_to = row->newest;
                s.day = &row->day;
                s.win = &row->window;
                for (size_t i = 0; i < scopes.n; i++)
                        if (!strcmp(scopes.v[i].channel, row->channel))
                                top_sum_scope(&scopes.v[i], &s);
        }
        b = load_breakers(&nb);
        for (size_t k = 0; k < d->n; k++)
                for (size_t i = 0; i < nb; i++)
                        if (!strcmp(b[i].channel, d->rows[k].channel) &&
                            b[i].state)
                                snprintf(d->rows[k].state,
                                         sizeof(d->rows[k].state), "%s",
                                         b[i].state);
        breakers_free(b, nb);
        /* What reallocations left (sg-ctl budgets). */
        r = sg_redis_command(redis, "HGETALL sg:budgets");
        for (size_t j = 0; r && r->type == REDIS_REPLY_ARRAY &&
                           j + 1 < r->elements;
             j += 2) {
                int64_t val = strtoll(r->element[j + 1]->str, NULL, 10);

                if (strcmp(r->element[j]->str, "(reserve)") == 0)
                        d->reserve = val;
                for (size_t k = 0; k < d->n; k++)
                        if (!strcmp(d->rows[k].channel, r->element[j]->str))
                                d->rows[k].budget = val;
        }
        if (r)
                freeReplyObject(r);
        scope_list_free(&scopes);
}

static void top_data_free(top_data_t *d)
{
        free(d->rows);
        memset(d, 0, sizeof(*d));
}

static int state_is(const char *stored, const char *what)
{
        if (!strcmp(what, "half_open"))
                return !strcmp(stored, "half_open") ||
                       !strcmp(stored, "half-open") ||
                       !strcmp(stored, "halfopen");
        return !strcmp(stored, what);
}

/* The IVT rate from which a channel shows yellow: the shipped IVT breaker
 * resumes below 10% (config/rules.yaml). */
#define TOP_IVT_WARN 0.10

/*
 * A channel's colour, the same on the terminal and the status page:
 * red = paused (breaker open) or spend at 100% of the budget;
 * yellow = on trial (half-open), spend at 90%, CPA over target or IVT at
 * 10% and more; green = none of these.
 */
static const char *top_health(const top_row_t *r)
{
        double pct = r->budget > 0 ? 100.0 * (double)r->day.c.spend_micros /
                                         (double)r->budget
                                   : 0,
               x;

        if (state_is(r->state, "open") || pct >= 100)
                return "red";
        if (state_is(r->state, "half_open") || pct >= 90 ||
            (r->target_cpa && sg_counters_cpa(&r->window.c, &x) &&
             x > (double)r->target_cpa) ||
            (sg_counters_ivt_rate(&r->window.c, &x) && x >= TOP_IVT_WARN))
                return "yellow";
        return "green";
}

/* The breaker column and its colour (SGR parameter, or NULL). */
static const char *top_state(const char *stored, char *buf, size_t size,
                             const char **sgr)
{
        *sgr = NULL;
        if (!stored || !*stored || strcmp(stored, "closed") == 0) {
                *sgr = "32";
                snprintf(buf, size, "closed");
        } else if (strcmp(stored, "open") == 0) {
                *sgr = "31";
                snprintf(buf, size, "OPEN");
        } else if (state_is(stored, "half_open")) {
                *sgr = "33";
                snprintf(buf, size, "HALF-OPEN");
        } else {
                snprintf(buf, size, "%s", stored);
        }
        return buf;
}

/* One cell, right- or left-aligned in width, coloured when sgr is set:
 * the padding stays outside the escape codes, so columns line up. */
static void top_cell(FILE *fp, const top_view_t *v, const char *text,
                     int width, int left, const char *sgr)
{
        int pad = width - (int)strlen(text);

        fputs("  ", fp);
        if (!left)
                fprintf(fp, "%*s", pad > 0 ? pad : 0, "");
        if (v->color && sgr)
                fprintf(fp, "\033[%sm%s\033[0m", sgr, text);
        else
                fputs(text, fp);
        if (left)
                fprintf(fp, "%*s", pad > 0 ? pad : 0, "");
}

/* Lines in buf so far. */
static int count_lines(const char *buf, size_t len)
{
        int n = 0;

        for (size_t i = 0; i < len; i++)
                n += buf[i] == '\n';
        return n;
}

/*
 * Writes a frame to stdout. On a terminal every line is cut to its width
 * (a line that wraps would leave the previous frame's leftovers on the
 * next row), erased to its end, and no more lines than its height are
 * written (a scroll would shift the frame); then the rest of the screen is
 * erased.
 */
static void top_emit(const top_view_t *v, const char *frame, size_t len)
{
        int line = 0;

        if (v->ansi)
                fputs("\033[H", stdout);
        for (size_t i = 0; i < len;) {
                size_t end = i;
                int visible = 0, cut = 0;

                while (end < len && frame[end] != '\n')
                        end++;
                for (size_t j = i; j < end;) {
                        if (frame[j] == '\033') { /* CSI ... final byte */
                                size_t k = j + 1;

                                if (k < end && frame[k] == '[')
                                        k++;
                                while (k < end && !isalpha((unsigned char)frame[k]))
                                        k++;
                                fwrite(frame + j, 1, k + 1 - j, stdout);
                                j = k + 1;
                                continue;
                        }
                        if (v->ansi && v->cols > 0 && visible >= v->cols) {
                                cut = 1;
                                break;
                        }
                        if (((unsigned char)frame[j] & 0xc0) != 0x80)
                                visible++;
                        fputc(frame[j], stdout);
                        j++;
                }
                if (cut && v->color)
                        fputs("\033[0m", stdout);
                line++;
                if (v->ansi)
                        fputs("\033[K", stdout);
                i = end + 1;
                /* The last row of the terminal: no newline, no scroll. */
                if (v->ansi && v->rows > 0 && line >= v->rows)
                        break;
                fputc('\n', stdout);
        }
        if (v->ansi)
                fputs("\033[J", stdout); /* what a longer frame left below */
}

/* One decision as a line of the view: time of day (UTC), action, scope,
 * what it says in currency units. */
static void top_decision(FILE *fp, const char *raw, size_t len)
{
        json_t *o = json_loadb(raw, len, 0, NULL);
        const char *campaign, *source, *action;
        char when[40], scope[2 * SG_NAME_LEN + 2], text[2048];
        int64_t at;

        if (!o || !json_is_object(o)) {
                fprintf(fp, "%.*s\n", (int)len, raw);
                json_decref(o);
                return;
        }
        at = json_ms(json_object_get(o, "decided_at"));
        action = json_str(o, "action");
        if (!action && json_is_integer(json_object_get(o, "action")))
                action = sg_action_name((sg_action_t)json_integer_value(
                    json_object_get(o, "action")));
        campaign = json_str(o, "campaign_id");
        source = json_str(o, "source");
        snprintf(scope, sizeof(scope), "%s%s%s",
                 json_str(o, "channel") ? json_str(o, "channel") : "?",
                 campaign ? "/" : "", campaign ? campaign : "");
        if (at == INT64_MIN)
                snprintf(when, sizeof(when), "-");
        else
                snprintf(when, sizeof(when), "%.8s",
                         iso_time(at, text, sizeof(text)) + 11);
        decision_text(o, text, sizeof(text));
        fprintf(fp, "%s  %-12s  %-14s  %s%s%s\n", when, action ? action : "?",
                scope, source ? source : "", source ? "  " : "", text);
        json_decref(o);
}

static void top_frame(const top_view_t *v, int first)
{
        static const char *const head[] = {
            "BREAKER", "SPEND", "BUDGET", "BUDGET%", "CPA", "TARGET",
            "CPA/T",   "IVT",   "CTR",    "CVR",     "ROAS"};
        static const int width[] = {9, 12, 12, 7, 10, 10, 6, 7, 7, 7, 6};
        top_data_t d;
        char *frame = NULL, when[40], day[40];
        size_t len = 0;
        long ndec;
        int wch = 7;
        redisReply *r;
        FILE *fp;

        top_collect(v, 0, &d);
        for (size_t k = 0; k < d.n; k++)
                if ((int)strlen(d.rows[k].channel) > wch)
                        wch = (int)strlen(d.rows[k].channel);
        fp = open_memstream(&frame, &len);
        if (!fp)
                die("out of memory");
        if (!v->ansi && !first)
                fputc('\n', stdout);
        iso_time(d.day_from, day, sizeof(day));
        day[10] = '\0';
        fprintf(fp,
                "spendguard top  %s  money in %s; spend: UTC day %s vs "
                "current budget; rates: last %" PRId64 " s of event time\n",
                iso_time(d.now, when, sizeof(when)), conf.currency, day,
                v->window_ms / 1000);
        for (int i = 0; i < v->nnotes; i++)
                fprintf(fp, "%s\n", v->notes[i]);
        fputc('\n', fp);
        fprintf(fp, "%-*s", wch, "CHANNEL");
        for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++)
                top_cell(fp, v, head[i], width[i], i == 0, NULL);
        fputc('\n', fp);
        for (size_t k = 0; k < d.n; k++) {
                const top_row_t *row = &d.rows[k];
                const sg_counters_t *c = &row->window.c;
                char spend[32], budget[32], pct[32], ctr[32], cvr[32], cpa[32],
                    target[32], ratio[32], roas[32], ivt[32], state[32];
                const char *pct_sgr = NULL, *state_sgr, *ratio_sgr = NULL,
                           *ivt_sgr = NULL;
                double x;

                snprintf(budget, sizeof(budget), "-");
                snprintf(pct, sizeof(pct), "-");
                snprintf(cpa, sizeof(cpa), "-");
                snprintf(target, sizeof(target), "-");
                snprintf(ratio, sizeof(ratio), "-");
                fmt_money(row->day.c.spend_micros, spend, sizeof(spend));
                if (row->budget > 0) {
                        x = 100.0 * (double)row->day.c.spend_micros /
                            (double)row->budget;
                        fmt_money(row->budget, budget, sizeof(budget));
                        snprintf(pct, sizeof(pct), "%.1f%%", x);
                        /* The playbook: warn at 90% of a cap, pause at
                         * 100%. */
                        pct_sgr = x >= 100 ? "31" : x >= 90 ? "33" : NULL;
                }
                if (row->target_cpa)
                        fmt_money(row->target_cpa, target, sizeof(target));
                if (sg_counters_cpa(c, &x)) {
                        fmt_money((int64_t)(x + 0.5), cpa, sizeof(cpa));
                        if (row->target_cpa) {
                                snprintf(ratio, sizeof(ratio), "%.2fx",
                                         x / (double)row->target_cpa);
                                if (x > (double)row->target_cpa)
                                        ratio_sgr = "33";
                        }
                }
                if (sg_counters_ivt_rate(c, &x) && x >= TOP_IVT_WARN)
                        ivt_sgr = "33";
                top_state(row->state, state, sizeof(state), &state_sgr);
                fprintf(fp, "%-*s", wch, row->channel);
                top_cell(fp, v, state, width[0], 1, state_sgr);
                top_cell(fp, v, spend, width[1], 0, NULL);
                top_cell(fp, v, budget, width[2], 0, NULL);
                top_cell(fp, v, pct, width[3], 0, pct_sgr);
                top_cell(fp, v, cpa, width[4], 0, NULL);
                top_cell(fp, v, target, width[5], 0, NULL);
                top_cell(fp, v, ratio, width[6], 0, ratio_sgr);
                top_cell(fp, v,
                         fmt_ratio(sg_counters_ivt_rate, c, 100, "%", ivt,
                                   sizeof(ivt)),
                         width[7], 0, ivt_sgr);
                top_cell(
                    fp, v,
                    fmt_ratio(sg_counters_ctr, c, 100, "%", ctr, sizeof(ctr)),
                    width[8], 0, NULL);
                top_cell(
                    fp, v,
                    fmt_ratio(sg_counters_cvr, c, 100, "%", cvr, sizeof(cvr)),
                    width[9], 0, NULL);
                top_cell(
                    fp, v,
                    fmt_ratio(sg_counters_roas, c, 1, "", roas, sizeof(roas)),
                    width[10], 0, NULL);
                fputc('\n', fp);
        }
        {
                char res[32];

                fprintf(fp,
                        "legend: BREAKER closed runs, OPEN (red) paused by a "
                        "rule, HALF-OPEN on trial\n"
                        "  BUDGET current, after reallocations (reserve %s); "
                        "BUDGET%% yellow >= 90\n"
                        "  CPA/T = CPA / TARGET, yellow above 1.00x; IVT "
                        "yellow from %.0f%%\n",
                        fmt_money(d.reserve, res, sizeof(res)),
                        TOP_IVT_WARN * 100);
        }
        fputc('\n', fp);
        /* As many decisions as the terminal has rows left. */
        ndec = v->decisions;
        if (v->ansi && v->rows > 0) {
                fflush(fp);
                ndec = v->rows - count_lines(frame, len) - 1;
                if (ndec > 200)
                        ndec = 200;
        }
        if (ndec > 0) {
                r = lrange_decisions(ndec);
                fprintf(fp, "last %ld decisions (newest first; money in %s)\n",
                        ndec, conf.currency);
                if (r->type != REDIS_REPLY_ARRAY || r->elements == 0)
                        fputs("(none)\n", fp);
                for (size_t i = 0; r->type == REDIS_REPLY_ARRAY &&
                                   i < r->elements;
                     i++)
                        top_decision(fp, r->element[i]->str,
                                     r->element[i]->len);
                freeReplyObject(r);
        }
        fclose(fp);
        top_emit(v, frame, len);
        free(frame);
        top_data_free(&d);
}

/* The rate window: --window S, else the first of aggregate.windows
 * unless it is "today", else 60 s. */
static int64_t top_window_ms(int window_s)
{
        sg_window_def_t w[SG_MAX_WINDOWS];
        char err[160];

        if (window_s)
                return (int64_t)window_s * 1000;
        if (sg_window_parse_list(conf.aggregate.windows, w, SG_MAX_WINDOWS, 0,
                                 err, sizeof(err)) > 0 &&
            w[0].len_ms > 0)
                return w[0].len_ms;
        return 60000;
}

/* `top`, and `watch`, its old name. */
static int cmd_top(int argc, char **argv)
{
        static const struct option opts[] = {
            {"interval", required_argument, NULL, 'i'},
            {"once", no_argument, NULL, '1'},
            {"window", required_argument, NULL, 'w'},
            {"decisions", required_argument, NULL, 'd'},
            {"note", required_argument, NULL, 'n'},
            {"config", required_argument, NULL, 'c'},
            {NULL, 0, NULL, 0}};
        const char *term = getenv("TERM"), *no_color = getenv("NO_COLOR");
        int interval = 1000, once = 0, window_s = 0, c;
        top_view_t v;

        memset(&v, 0, sizeof(v));
        v.decisions = TOP_DECISIONS;
        while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
                switch (c) {
                case 'i':
                        interval = (int)parse_int_arg("--interval", optarg, 100,
                                                      3600000);
                        break;
                case '1':
                        once = 1;
                        break;
                case 'w':
                        window_s = (int)parse_int_arg("--window", optarg, 1,
                                                      31 * 86400);
                        break;
                case 'd':
                        v.decisions =
                            (long)parse_int_arg("--decisions", optarg, 0, 1000);
                        break;
                case 'n':
                        if (v.nnotes == TOP_MAX_NOTES)
                                bad_usage("%s: at most %d --note", argv[0],
                                          TOP_MAX_NOTES);
                        v.notes[v.nnotes++] = optarg;
                        break;
                case 'c':
                        conf_path = optarg;
                        break;
                default:
                        bad_usage("%s: unknown option or missing argument %s",
                                  argv[0], argv[optind - 1]);
                }
        }
        if (optind < argc)
                bad_usage("%s: unexpected argument %s", argv[0], argv[optind]);
        connect_redis();
        v.window_ms = top_window_ms(window_s);
        /* Over SSH, in tmux or a console: anything that says it is a
         * terminal and not a dumb one understands these few sequences. */
        v.ansi =
            isatty(STDOUT_FILENO) && term && *term && strcmp(term, "dumb") != 0;
        v.color = v.ansi && !(no_color && *no_color);
        if (v.ansi) {
                cursor_hidden = 1;
                atexit(top_show_cursor); /* die() exits too */
                fputs("\033[?25l\033[H\033[2J", stdout);
        }
        for (int first = 1; !sg_stop; first = 0) {
                struct winsize ws;

                /* Read every frame: no SIGWINCH needed (make run starts
                 * the view in a session of its own). */
                if (v.ansi && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 &&
                    ws.ws_col > 0 && ws.ws_row > 0) {
                        v.cols = ws.ws_col;
                        v.rows = ws.ws_row;
                }
                top_frame(&v, first);
                /* A reader that went away (`| head`) ends the view. */
                if (fflush(stdout) == EOF || once)
                        break;
                sg_sleep_ms(interval);
        }
        top_show_cursor();
        return 0;
}

/* ----------------------------------------------------------------- serve */

/*
 * `sg-ctl serve`: the status page. One self-contained HTML page (no
 * external assets) that polls /api/status, a JSON picture built like
 * top's: per channel its colour, today's spend against the current
 * budget, CPA against target, IVT, the breaker, the totals `sg-ctl kpis`
 * prints; the breakers; the last decisions with what they say in currency
 * units. Served over lib/http.c on its one thread, which alone talks to
 * Redis while the main thread waits for SIGTERM.
 */
typedef struct serve_ctx {
        top_view_t v;
        long decisions;
} serve_ctx_t;

/* tools/status.html, embedded at build time (CMakeLists.txt). */
extern const char sg_status_html[];

static json_t *json_ratio(int (*fn)(const sg_counters_t *, double *),
                          const sg_counters_t *c)
{
        double v;

        return fn(c, &v) ? json_real(v) : json_null();
}

/* The ChannelKpi counters of t; unique_devices only where it was
 * counted (the totals, as sg-ctl kpis). */
static json_t *json_counters(const totals_t *t, int devices)
{
        json_t *o = json_object();

        for (int f = 0; f < NCOUNTERS; f++)
                json_object_set_new(
                    o, counter_fields[f],
                    json_integer(*counter_slot((sg_counters_t *)&t->c, f)));
        if (devices)
                json_object_set_new(o, "unique_devices",
                                    json_integer(t->c.unique_devices));
        return o;
}

static json_t *serve_status(serve_ctx_t *ctx)
{
        json_t *o = json_object(), *chs = json_array(), *brs = json_array(),
               *decs = json_array();
        top_data_t d;
        breaker_t *b;
        redisReply *r;
        size_t nb;

        top_collect(&ctx->v, 1, &d);
        json_object_set_new(o, "generated_at", json_integer(d.now));
        json_object_set_new(o, "currency", json_string(conf.currency));
        json_object_set_new(o, "window_s",
                            json_integer(ctx->v.window_ms / 1000));
        json_object_set_new(o, "day_from", json_integer(d.day_from));
        json_object_set_new(o, "reserve_micros", json_integer(d.reserve));
        for (size_t k = 0; k < d.n; k++) {
                const top_row_t *row = &d.rows[k];
                json_t *c = json_object();
                double x;

                json_object_set_new(c, "channel", json_string(row->channel));
                json_object_set_new(c, "health",
                                    json_string(top_health(row)));
                json_object_set_new(c, "state", json_string(row->state));
                json_object_set_new(c, "budget_micros",
                                    json_integer(row->budget));
                json_object_set_new(c, "configured_budget_micros",
                                    json_integer(row->configured));
                json_object_set_new(c, "day_spend_micros",
                                    json_integer(row->day.c.spend_micros));
                json_object_set_new(c, "target_cpa_micros",
                                    json_integer(row->target_cpa));
                json_object_set_new(c, "cpa_micros",
                                    sg_counters_cpa(&row->window.c, &x)
                                        ? json_integer((int64_t)(x + 0.5))
                                        : json_null());
                json_object_set_new(
                    c, "ivt_rate",
                    json_ratio(sg_counters_ivt_rate, &row->window.c));
                json_object_set_new(c, "ctr",
                                    json_ratio(sg_counters_ctr, &row->window.c));
                json_object_set_new(
                    c, "roas", json_ratio(sg_counters_roas, &row->window.c));
                json_object_set_new(c, "window", json_counters(&row->window, 0));
                json_object_set_new(c, "totals", json_counters(&row->all, 1));
                json_array_append_new(chs, c);
        }
        json_object_set_new(o, "channels", chs);
        b = load_breakers(&nb);
        for (size_t i = 0; i < nb; i++) {
                json_t *e = json_object();

                json_object_set_new(e, "scope", json_string(b[i].channel));
                json_object_set_new(e, "state", b[i].state
                                                    ? json_string(b[i].state)
                                                    : json_null());
                json_object_set_new(e, "rule", b[i].rule
                                                   ? json_string(b[i].rule)
                                                   : json_null());
                json_object_set_new(
                    e, "since",
                    b[i].since ? json_integer(strtoll(b[i].since, NULL, 10))
                               : json_null());
                json_array_append_new(brs, e);
        }
        breakers_free(b, nb);
        json_object_set_new(o, "breakers", brs);
        r = lrange_decisions(ctx->decisions);
        for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements;
             i++) {
                json_t *e = json_loadb(r->element[i]->str, r->element[i]->len,
                                       0, NULL);
                char text[2048];

                if (!json_is_object(e)) {
                        json_decref(e);
                        continue;
                }
                decision_text(e, text, sizeof(text));
                json_object_set_new(e, "text", json_string(text));
                json_array_append_new(decs, e);
        }
        freeReplyObject(r);
        json_object_set_new(o, "decisions", decs);
        top_data_free(&d);
        return o;
}

static int serve_page(void *opaque, const char *url, char **body, size_t *len,
                      const char **type)
{
        serve_ctx_t *ctx = opaque;

        if (!strcmp(url, "/") || !strcmp(url, "/index.html")) {
                *len = strlen(sg_status_html);
                *body = xstrndup(sg_status_html, *len);
                *type = "text/html; charset=utf-8";
                return 200;
        }
        if (!strcmp(url, "/api/status")) {
                json_t *o = serve_status(ctx);

                *body = json_dumps(o, JSON_COMPACT);
                json_decref(o);
                if (!*body)
                        return 0;
                *len = strlen(*body);
                *type = "application/json";
                return 200;
        }
        return 0;
}

static int cmd_serve(int argc, char **argv)
{
        static const struct option opts[] = {
            {"listen", required_argument, NULL, 'l'},
            {"window", required_argument, NULL, 'w'},
            {"decisions", required_argument, NULL, 'd'},
            {"config", required_argument, NULL, 'c'},
            {NULL, 0, NULL, 0}};
        const char *listen = "127.0.0.1:9730";
        char host[256], why[300];
        int window_s = 0, port, c;
        serve_ctx_t ctx;
        sg_http_t *http;

        memset(&ctx, 0, sizeof(ctx));
        ctx.decisions = 50;
        while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
                switch (c) {
                case 'l':
                        listen = optarg;
                        break;
                case 'w':
                        window_s = (int)parse_int_arg("--window", optarg, 1,
                                                      31 * 86400);
                        break;
                case 'd':
                        ctx.decisions =
                            (long)parse_int_arg("--decisions", optarg, 1, 1000);
                        break;
                case 'c':
                        conf_path = optarg;
                        break;
                default:
                        bad_usage("serve: unknown option or missing argument "
                                  "%s",
                                  argv[optind - 1]);
                }
        }
        if (optind < argc)
                bad_usage("serve: unexpected argument %s", argv[optind]);
        if (sg_http_parse_listen(listen, 9730, host, sizeof(host), &port, why,
                                 sizeof(why)) != 0)
                bad_usage("serve: --listen: %s", strcmp(listen, "off") == 0
                                                     ? "off is not an address"
                                                     : why);
        connect_redis();
        ctx.v.window_ms = top_window_ms(window_s);
        http = sg_http_new_pages(host, port, NULL, serve_page, &ctx, why,
                                 sizeof(why));
        if (!http)
                die("serve: %s", why);
        printf("event=http_listen addr=%s%s%s:%d url=http://%s%s%s:%d/\n",
               strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "",
               sg_http_port(http), strchr(host, ':') ? "[" : "", host,
               strchr(host, ':') ? "]" : "", sg_http_port(http));
        fflush(stdout);
        while (!sg_stop)
                sg_sleep_ms(200);
        sg_http_destroy(http);
        return 0;
}

/* ------------------------------------------------------------------ main */

typedef struct command {
        const char *name;
        int (*fn)(int argc, char **argv);
} command_t;

static const command_t commands[] = {{"kpis", cmd_kpis},
                                     {"decisions", cmd_decisions},
                                     {"breakers", cmd_breakers},
                                     {"budgets", cmd_budgets},
                                     {"top", cmd_top},
                                     {"watch", cmd_top},
                                     {"serve", cmd_serve},
                                     {NULL, NULL}};

int main(int argc, char **argv)
{
        static const struct option opts[] = {
            {"config", required_argument, NULL, 'c'},
            {"help", no_argument, NULL, 'h'},
            {"version", no_argument, NULL, 'V'},
            {NULL, 0, NULL, 0}};
        const char *path = NULL, *level = getenv("SG_LOG_LEVEL");
        const command_t *cmd;
        int c, rc;

        sg_log_init("ctl");
        /* A CLI prints its own one-line errors; the library's retry
         * warnings would only repeat them. */
        sg_log_set_level(level && sg_log_set_level(level) == 0 ? level
                                                               : "error");
        opterr = 0;
        /* "+": stop at the command; its options are its own. */
        while ((c = getopt_long(argc, argv, "+c:hV", opts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        path = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'V':
                        printf("sg-ctl %s\n", SG_VERSION);
                        return 0;
                default:
                        bad_usage("unknown option or missing argument %s",
                                  argv[optind - 1]);
                }
        }
        if (optind >= argc)
                bad_usage("a command is required: kpis, decisions, breakers, "
                          "budgets, top, serve or config-reference");
        if (strcmp(argv[optind], "config-reference") == 0) {
                if (optind + 1 < argc)
                        bad_usage("config-reference: unexpected argument %s",
                                  argv[optind + 1]);
                sg_conf_write_reference(stdout);
                return 0;
        }
        for (cmd = commands; cmd->name; cmd++)
                if (strcmp(argv[optind], cmd->name) == 0)
                        break;
        if (!cmd->name)
                bad_usage("unknown command \"%s\"", argv[optind]);
        conf_path = path;
        argc -= optind;
        argv += optind;
        optind = 0; /* GNU getopt: start over on the command's arguments */
        rc = cmd->fn(argc, argv);
        sg_redis_destroy(redis);
        return rc;
}
