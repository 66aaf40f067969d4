/*
 * The watermark of one sg.events partition, as a pure function of the
 * latest watermark markers (lib/marker.h) of the input partitions feeding
 * it: no Kafka, no clock. The essay is in watermark.c; docs/watermark.md.
 */
#ifndef SG_WATERMARK_H
#define SG_WATERMARK_H

#include <stdint.h>

/* What an sg.events partition knows of one input partition. */
typedef struct sg_wm_input {
        int64_t event_time; /* highest progress any marker gave; INT64_MIN:
                               none */
        int idle;           /* what its latest marker said */
        int seen;           /* a marker for it has arrived */
} sg_wm_input_t;

/*
 * Takes one marker for the input into account: its progress is the highest
 * any marker gave (a restarted ingest may report less than before: its
 * first markers cover only what it has re-read), its idleness is the
 * latest marker's.
 */
void sg_watermark_observe(sg_wm_input_t *in, int64_t event_time, int idle);

/*
 * The watermark of one sg.events partition from its inputs' markers:
 * INT64_MIN while an input is unseen, or not idle and without progress;
 * else the minimum over the inputs that are not idle of their progress;
 * when every input is idle, the maximum over them (INT64_MIN if none has
 * progress); minus lateness_ms (>= 0; INT64_MIN stays INT64_MIN). n = 0:
 * INT64_MIN.
 */
int64_t sg_watermark_compute(const sg_wm_input_t *in, int n,
                             int64_t lateness_ms);

/* Monotone: the higher of floor and candidate. */
int64_t sg_watermark_advance(int64_t floor, int64_t candidate);

#endif
