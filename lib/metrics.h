/*
 * Process-wide counters for metrics. Look a counter up once (it is created on
 * first use) and keep the pointer: adding is then one atomic increment.
 * Names are Prometheus-style with labels, e.g.
 * "events_total{type=\"click\",result=\"accepted\"}".
 */
#ifndef SG_METRICS_H
#define SG_METRICS_H

#include <stdint.h>

#define SG_METRICS_MAX 256

typedef struct sg_counter {
        char name[112];
        uint64_t value;
} sg_counter_t;

/* The counter of that name, created at zero; NULL when the table is full. */
sg_counter_t *sg_counter(const char *name);

static inline void sg_counter_add(sg_counter_t *c, uint64_t n)
{
        if (c)
                __atomic_add_fetch(&c->value, n, __ATOMIC_RELAXED);
}

/* Current value of a counter by name (0 if it does not exist). */
uint64_t sg_counter_value(const char *name);

/* Logs every non-zero counter, one logfmt line: event=stats name=value... */
void sg_metrics_log(void);

#endif
