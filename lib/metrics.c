#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

const double sg_metrics_batch_buckets[] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const int sg_metrics_batch_bucket_cnt =
    sizeof(sg_metrics_batch_buckets) / sizeof(sg_metrics_batch_buckets[0]);
const double sg_metrics_redis_buckets[] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025,  0.05,    0.1,    0.25,  0.5,    1};
const int sg_metrics_redis_bucket_cnt =
    sizeof(sg_metrics_redis_buckets) / sizeof(sg_metrics_redis_buckets[0]);

/* HELP text of the families spendguard exports (README lists the same). */
static const struct {
        const char *family;
        const char *help;
} helps[] = {
    {"events_total",
     "Input records by type and what became of them (ingest: accepted, "
     "rejected; aggregate: applied, redelivered, late, undecodable; rules: "
     "evaluated, undecodable; sink: delivered, duplicate, skipped, "
     "undecodable)."},
    {"events_invalid_total",
     "Accepted events tagged as invalid traffic, by type."},
    {"deadletter_total", "Records sent to the dead-letter topic, by reason."},
    {"schema_registry_waits_total",
     "Attempts that found the schema registry unavailable while a record "
     "waited for its writer schema (held, not dead-lettered)."},
    {"decisions_total",
     "Decisions emitted (rules) or delivered (sink), by action and rule."},
    {"markers_total",
     "Watermark markers ingest sent to sg.events (one per input partition "
     "and sg.events partition); not events."},
    {"snapshots_total", "Aggregate snapshots produced, by kind."},
    {"redis_scripts_total", "Batch apply script calls."},
    {"scope_overflow_total",
     "Pre-aggregated entries counted in an _other scope because the "
     "partition had aggregate.max_scopes scopes."},
    {"redis_io_errors_total",
     "Redis commands or pipelines that lost their connection (each is "
     "retried after a reconnect)."},
    {"redis_reconnects_total",
     "Redis connections made again after one was lost."},
    {"consumer_lag",
     "Messages behind the high watermark (high watermark - position), by "
     "topic and partition."},
    {"breaker_state",
     "Circuit breaker per channel: 0 closed, 1 open, 2 half-open."},
    {"batch_duration_seconds",
     "Time to process one consumed batch, from poll to commit."},
    {"redis_latency_seconds",
     "Redis round-trip time (one command, or one pipeline)."},
};

static sg_counter_t counters[SG_METRICS_MAX];
static int counter_cnt;
static sg_gauge_t gauges[SG_METRICS_GAUGES_MAX];
static int gauge_cnt;
static sg_histogram_t hists[SG_METRICS_HIST_MAX];
static int hist_cnt;
static const char *stage_label;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

void sg_metrics_init(const char *stage)
{
        stage_label = stage;
}

int sg_metrics_name(char *buf, size_t size, const char *family, ...)
{
        size_t n = 0;
        const char *k;
        int first = 1;
        va_list ap;

#define PUT(c)                                                                 \
        do {                                                                   \
                if (n + 1 >= size)                                             \
                        goto full;                                             \
                buf[n++] = (c);                                                \
        } while (0)
        for (const char *p = family; *p; p++)
                PUT(*p);
        va_start(ap, family);
        while ((k = va_arg(ap, const char *)) != NULL) {
                const char *v = va_arg(ap, const char *);

                PUT(first ? '{' : ',');
                first = 0;
                for (; *k; k++)
                        PUT(*k);
                PUT('=');
                PUT('"');
                for (; v && *v; v++) {
                        if (*v == '\\' || *v == '"') {
                                PUT('\\');
                                PUT(*v);
                        } else if (*v == '\n') {
                                PUT('\\');
                                PUT('n');
                        } else {
                                PUT(*v);
                        }
                }
                PUT('"');
        }
        va_end(ap);
        if (!first)
                PUT('}');
        buf[n] = '\0';
        return 0;
full:
        va_end(ap);
        if (size)
                buf[0] = '\0';
        return -1;
#undef PUT
}

/* ------------------------------------------------------------- the tables */

#define FIND_OR_ADD(table, cnt, max, name, init)                               \
        do {                                                                   \
                for (int i_ = 0; i_ < (cnt); i_++)                             \
                        if (strcmp((table)[i_].name, (name)) == 0) {           \
                                found = &(table)[i_];                          \
                                break;                                         \
                        }                                                      \
                if (!found && (cnt) < (max) &&                                 \
                    strlen(name) < sizeof((table)[0].name)) {                  \
                        found = &(table)[(cnt)];                               \
                        strcpy(found->name, (name));                           \
                        init;                                                  \
                        (cnt)++;                                               \
                }                                                              \
        } while (0)

sg_counter_t *sg_counter(const char *name)
{
        sg_counter_t *found = NULL;

        pthread_mutex_lock(&lock);
        FIND_OR_ADD(counters, counter_cnt, SG_METRICS_MAX, name, (void)0);
        pthread_mutex_unlock(&lock);
        return found;
}

uint64_t sg_counter_value(const char *name)
{
        uint64_t v = 0;

        pthread_mutex_lock(&lock);
        for (int i = 0; i < counter_cnt; i++)
                if (strcmp(counters[i].name, name) == 0)
                        v = __atomic_load_n(&counters[i].value,
                                            __ATOMIC_RELAXED);
        pthread_mutex_unlock(&lock);
        return v;
}

static uint64_t dbl_bits(double v)
{
        uint64_t b;

        memcpy(&b, &v, sizeof(b));
        return b;
}

static double bits_dbl(uint64_t b)
{
        double v;

        memcpy(&v, &b, sizeof(v));
        return v;
}

/* Adds to a double held in a uint64_t, lock-free. */
static void atomic_add_dbl(uint64_t *p, double v)
{
        uint64_t old = __atomic_load_n(p, __ATOMIC_RELAXED);

        while (!__atomic_compare_exchange_n(p, &old,
                                            dbl_bits(bits_dbl(old) + v), 1,
                                            __ATOMIC_RELAXED, __ATOMIC_RELAXED))
                ;
}

sg_gauge_t *sg_gauge(const char *name)
{
        sg_gauge_t *found = NULL;

        pthread_mutex_lock(&lock);
        FIND_OR_ADD(gauges, gauge_cnt, SG_METRICS_GAUGES_MAX, name,
                    (found->bits = dbl_bits(0), found->live = 1));
        pthread_mutex_unlock(&lock);
        return found;
}

void sg_gauge_set(sg_gauge_t *g, double v)
{
        if (!g)
                return;
        __atomic_store_n(&g->bits, dbl_bits(v), __ATOMIC_RELAXED);
        __atomic_store_n(&g->live, 1, __ATOMIC_RELAXED);
}

void sg_gauge_add(sg_gauge_t *g, double v)
{
        if (!g)
                return;
        atomic_add_dbl(&g->bits, v);
        __atomic_store_n(&g->live, 1, __ATOMIC_RELAXED);
}

void sg_gauge_hide(sg_gauge_t *g)
{
        if (g)
                __atomic_store_n(&g->live, 0, __ATOMIC_RELAXED);
}

double sg_gauge_get(const sg_gauge_t *g)
{
        return g ? bits_dbl(__atomic_load_n(&g->bits, __ATOMIC_RELAXED)) : 0;
}

sg_histogram_t *sg_histogram(const char *name, const double *bounds,
                             int bound_cnt)
{
        sg_histogram_t *found = NULL;

        if (bound_cnt < 1 || bound_cnt > SG_METRICS_BUCKETS)
                return NULL;
        for (int i = 1; i < bound_cnt; i++)
                if (!(bounds[i] > bounds[i - 1]))
                        return NULL;
        pthread_mutex_lock(&lock);
        FIND_OR_ADD(
            hists, hist_cnt, SG_METRICS_HIST_MAX, name,
            (found->bound_cnt = bound_cnt,
             memcpy(found->bounds, bounds, (size_t)bound_cnt * sizeof(*bounds)),
             found->sum_bits = dbl_bits(0)));
        pthread_mutex_unlock(&lock);
        return found;
}

void sg_histogram_observe(sg_histogram_t *h, double v)
{
        int i = 0;

        if (!h)
                return;
        /* Buckets are "less than or equal": the first bound >= v. */
        while (i < h->bound_cnt && v > h->bounds[i])
                i++;
        __atomic_add_fetch(&h->counts[i], 1, __ATOMIC_RELAXED);
        atomic_add_dbl(&h->sum_bits, v);
}

/* ------------------------------------------------------------- exposition */

/* The family of a series name: what comes before '{'. */
static size_t family_len(const char *name)
{
        return strcspn(name, "{");
}

static int same_family(const char *a, const char *b)
{
        size_t n = family_len(a);

        return n == family_len(b) && strncmp(a, b, n) == 0;
}

static void put_header(FILE *fp, const char *name, const char *type)
{
        size_t n = family_len(name);

        for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++)
                if (strlen(helps[i].family) == n &&
                    strncmp(helps[i].family, name, n) == 0)
                        fprintf(fp, "# HELP " SG_METRICS_PREFIX "%.*s %s\n",
                                (int)n, name, helps[i].help);
        fprintf(fp, "# TYPE " SG_METRICS_PREFIX "%.*s %s\n", (int)n, name,
                type);
}

/*
 * Writes the series name with suffix after the family, the stage label
 * first and extra (e.g. le="0.5") last: name_suffix{stage="x",a="b",extra}.
 */
static void put_name(FILE *fp, const char *name, const char *suffix,
                     const char *extra)
{
        size_t n = family_len(name);
        const char *labels = name[n] ? name + n + 1 : ""; /* a="b"} */
        size_t llen = strlen(labels);
        int any = 0;

        if (llen && labels[llen - 1] == '}')
                llen--;
        fprintf(fp, SG_METRICS_PREFIX "%.*s%s", (int)n, name, suffix);
        if (stage_label && *stage_label) {
                fprintf(fp, "{stage=\"%s\"", stage_label);
                any = 1;
        }
        if (llen) {
                fprintf(fp, "%s%.*s", any ? "," : "{", (int)llen, labels);
                any = 1;
        }
        if (extra) {
                fprintf(fp, "%s%s", any ? "," : "{", extra);
                any = 1;
        }
        if (any)
                fputc('}', fp);
}

/* The shortest text that reads back as v: 0.1, not 0.10000000000000001. */
static const char *fmt_double(char *buf, size_t size, double v)
{
        if (isnan(v))
                return "NaN";
        if (isinf(v))
                return v > 0 ? "+Inf" : "-Inf";
        for (int prec = 1; prec <= 17; prec++) {
                snprintf(buf, size, "%.*g", prec, v);
                if (strtod(buf, NULL) == v)
                        break;
        }
        return buf;
}

static void put_double(FILE *fp, double v)
{
        char buf[40];

        fputs(fmt_double(buf, sizeof(buf), v), fp);
}

/* Writes each family of table once, with all its series, in first-seen
 * order. seen[] marks the series already written. */
#define EXPOSE(table, cnt, type, put_series)                                   \
        do {                                                                   \
                char seen[sizeof(table) / sizeof((table)[0])] = {0};           \
                for (int i = 0; i < (cnt); i++) {                              \
                        if (seen[i])                                           \
                                continue;                                      \
                        put_header(fp, (table)[i].name, type);                 \
                        for (int j = i; j < (cnt); j++) {                      \
                                if (seen[j] || !same_family((table)[i].name,   \
                                                            (table)[j].name))  \
                                        continue;                              \
                                seen[j] = 1;                                   \
                                put_series(fp, &(table)[j]);                   \
                        }                                                      \
                }                                                              \
        } while (0)

static void put_counter(FILE *fp, const sg_counter_t *c)
{
        put_name(fp, c->name, "", NULL);
        fprintf(
            fp, " %llu\n",
            (unsigned long long)__atomic_load_n(&c->value, __ATOMIC_RELAXED));
}

static void put_gauge(FILE *fp, const sg_gauge_t *g)
{
        if (!__atomic_load_n(&g->live, __ATOMIC_RELAXED))
                return;
        put_name(fp, g->name, "", NULL);
        fputc(' ', fp);
        put_double(fp, sg_gauge_get(g));
        fputc('\n', fp);
}

static void put_histogram(FILE *fp, const sg_histogram_t *h)
{
        uint64_t cum = 0;
        char le[48], num[40];

        /* The count is the +Inf bucket, so that the two always agree. */
        for (int b = 0; b <= h->bound_cnt; b++) {
                cum += __atomic_load_n(&h->counts[b], __ATOMIC_RELAXED);
                if (b < h->bound_cnt)
                        snprintf(le, sizeof(le), "le=\"%s\"",
                                 fmt_double(num, sizeof(num), h->bounds[b]));
                else
                        snprintf(le, sizeof(le), "le=\"+Inf\"");
                put_name(fp, h->name, "_bucket", le);
                fprintf(fp, " %llu\n", (unsigned long long)cum);
        }
        put_name(fp, h->name, "_sum", NULL);
        fputc(' ', fp);
        put_double(fp,
                   bits_dbl(__atomic_load_n(&h->sum_bits, __ATOMIC_RELAXED)));
        fputc('\n', fp);
        put_name(fp, h->name, "_count", NULL);
        fprintf(fp, " %llu\n", (unsigned long long)cum);
}

char *sg_metrics_expose(size_t *len)
{
        char *buf = NULL;
        size_t n = 0;
        FILE *fp = open_memstream(&buf, &n);

        if (!fp)
                return NULL;
        pthread_mutex_lock(&lock);
        EXPOSE(counters, counter_cnt, "counter", put_counter);
        EXPOSE(gauges, gauge_cnt, "gauge", put_gauge);
        EXPOSE(hists, hist_cnt, "histogram", put_histogram);
        pthread_mutex_unlock(&lock);
        if (fclose(fp) != 0) {
                free(buf);
                return NULL;
        }
        if (len)
                *len = n;
        return buf;
}

void sg_metrics_log(void)
{
        char line[1800];
        size_t n = 0;

        line[0] = '\0';
        pthread_mutex_lock(&lock);
        for (int i = 0; i < counter_cnt && n < sizeof(line); i++) {
                uint64_t v =
                    __atomic_load_n(&counters[i].value, __ATOMIC_RELAXED);
                char key[SG_METRICS_NAME_LEN], q[SG_METRICS_NAME_LEN + 32];
                size_t j = 0;

                if (!v)
                        continue;
                /* logfmt keys cannot hold the label syntax: flatten
                 * name{a="x",b="y"} to name.x.y */
                for (const char *p = counters[i].name;
                     *p && j + 1 < sizeof(key); p++) {
                        if (*p == '{' || *p == ',')
                                key[j++] = '.';
                        else if (*p == ' ')
                                key[j++] = '_';
                        else if (*p != '}' && *p != '"' && *p != '=' &&
                                 *p != '\\')
                                key[j++] = *p;
                        else if (*p == '=') {
                                /* drop the label name */
                                while (j && key[j - 1] != '.')
                                        j--;
                        }
                }
                key[j] = '\0';
                snprintf(q, sizeof(q), "%s=%llu ", key, (unsigned long long)v);
                n += snprintf(line + n, sizeof(line) - n, "%s", q);
        }
        pthread_mutex_unlock(&lock);
        if (n)
                sg_info("event=stats %s", line);
}
