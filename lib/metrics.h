/*
 * Process-wide metrics (counters, gauges, histograms) in fixed tables, and
 * their Prometheus text exposition (format 0.0.4). Look a series up once (it
 * is created on first use) and keep the pointer: updating it is then a few
 * atomic operations, never a lock or an allocation.
 *
 * A series is named "<family>{<labels>}" without the "spendguard_" prefix
 * and without the stage label, e.g. "events_total{type=\"click\",
 * result=\"accepted\"}"; the exposition adds both:
 * spendguard_events_total{stage="ingest",type="click",result="accepted"}.
 * Build names holding data (channels, topics) with sg_metrics_name(), which
 * escapes label values.
 */
#ifndef SG_METRICS_H
#define SG_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define SG_METRICS_PREFIX     "spendguard_"
#define SG_METRICS_NAME_LEN   256
#define SG_METRICS_MAX        256 /* counters */
#define SG_METRICS_GAUGES_MAX 1024
#define SG_METRICS_HIST_MAX   16
#define SG_METRICS_BUCKETS    16 /* bounds per histogram, +Inf aside */

typedef struct sg_counter {
        char name[SG_METRICS_NAME_LEN];
        uint64_t value;
} sg_counter_t;

typedef struct sg_gauge {
        char name[SG_METRICS_NAME_LEN];
        uint64_t bits; /* a double */
        int live;      /* 0: not exported (e.g. a revoked partition) */
} sg_gauge_t;

typedef struct sg_histogram {
        char name[SG_METRICS_NAME_LEN];
        int bound_cnt;
        double bounds[SG_METRICS_BUCKETS];       /* upper bounds, ascending */
        uint64_t counts[SG_METRICS_BUCKETS + 1]; /* per bucket, +Inf last */
        uint64_t sum_bits;                       /* a double */
} sg_histogram_t;

/* Bucket bounds (seconds) for batch durations and Redis round trips. */
extern const double sg_metrics_batch_buckets[];
extern const int sg_metrics_batch_bucket_cnt;
extern const double sg_metrics_redis_buckets[];
extern const int sg_metrics_redis_bucket_cnt;

/* The value of the stage label on every series ("" or NULL = none). The
 * string must outlive the metrics. sg_stage_init sets it. */
void sg_metrics_init(const char *stage);

/*
 * Writes family{k1="v1",k2="v2"} into buf: the variadic part is key, value
 * pairs ended by NULL; values are escaped (\\, \", \n). 0, or -1 if it does
 * not fit.
 */
int sg_metrics_name(char *buf, size_t size, const char *family, ...)
    __attribute__((sentinel));

/* --------------------------------------------------------------- counters */

/* The counter of that name, created at zero; NULL when the table is full. */
sg_counter_t *sg_counter(const char *name);

static inline void sg_counter_add(sg_counter_t *c, uint64_t n)
{
        if (c)
                __atomic_add_fetch(&c->value, n, __ATOMIC_RELAXED);
}

/* Current value of a counter by name (0 if it does not exist). */
uint64_t sg_counter_value(const char *name);

/* ----------------------------------------------------------------- gauges */

/* The gauge of that name, created at zero; NULL when the table is full. */
sg_gauge_t *sg_gauge(const char *name);
void sg_gauge_set(sg_gauge_t *g, double v);
void sg_gauge_add(sg_gauge_t *g, double v);
/* Stops exporting the gauge until it is set again. */
void sg_gauge_hide(sg_gauge_t *g);
double sg_gauge_get(const sg_gauge_t *g);

/* ------------------------------------------------------------- histograms */

/*
 * The histogram of that name with the given upper bounds (ascending, at most
 * SG_METRICS_BUCKETS; ignored if it exists already); NULL when the table is
 * full or the bounds are bad.
 */
sg_histogram_t *sg_histogram(const char *name, const double *bounds,
                             int bound_cnt);
void sg_histogram_observe(sg_histogram_t *h, double v);

/* ------------------------------------------------------------- exposition */

/*
 * Every series in the Prometheus text format 0.0.4, families grouped with
 * their HELP and TYPE lines: counters, then gauges, then histograms, each
 * in the order of creation. Returns a malloc'd NUL-terminated string (the
 * caller frees it) and its length in *len, or NULL when out of memory.
 */
char *sg_metrics_expose(size_t *len);

/* Logs every non-zero counter, one logfmt line: event=stats name=value... */
void sg_metrics_log(void);

#endif
