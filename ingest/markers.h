/*
 * Ingest's watermark markers: for every input partition it owns, how far
 * its acknowledged event time has come and whether it is idle, written into
 * every sg.events partition (format: lib/marker.h; rules: docs/watermark.md).
 */
#ifndef SG_INGEST_MARKERS_H
#define SG_INGEST_MARKERS_H

#include <stdint.h>

#include "kafka.h"

typedef struct sg_markers sg_markers_t;

/*
 * Markers to topic (sg.events) through p, about the partitions c is
 * assigned; every changed input is sent within marker_ms, an unchanged one
 * every second. An input is said idle once it has been caught up for
 * idle_ms. Borrows p and c: they must outlive the result. NULL if out
 * of memory.
 */
sg_markers_t *sg_markers_new(sg_producer_t *p, sg_consumer_t *c,
                             const char *topic, int marker_ms, int idle_ms);
void sg_markers_destroy(sg_markers_t *mk); /* accepts NULL */

/* The consumer's assignment changed (the rebalance callback's arguments:
 * an assignment replaces the set, a revocation removes parts). */
void sg_markers_rebalance(sg_markers_t *mk, int assign,
                          const rd_kafka_topic_partition_list_t *parts);

/* An sg_pipeline_acked_fn: opaque is the sg_markers_t. */
void sg_markers_acked(void *opaque, const rd_kafka_topic_partition_list_t *next,
                      const int64_t *max_t);

/*
 * Sends the markers that are due (between pipeline batches: a marker is
 * never counted for a batch). final: every changed one now, regardless of
 * marker_ms (at a stop), all of them in one record per sg.events partition
 * (or more, past SG_MARKER_MAX bytes). Returns the records enqueued.
 */
int sg_markers_tick(sg_markers_t *mk, int final);

#endif
