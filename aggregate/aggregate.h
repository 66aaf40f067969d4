/*
 * The aggregate stage: sg.events -> event-time buckets per channel and per
 * (channel, campaign) in Redis, applied exactly once per batch by one Lua
 * script per partition; rolling-window snapshots and final (closed) KPI
 * windows -> sg.aggregates.
 */
#ifndef SG_AGGREGATE_H
#define SG_AGGREGATE_H

#include "conf.h"

typedef struct sg_aggregate sg_aggregate_t;

sg_aggregate_t *sg_aggregate_new(const sg_conf_t *conf, char *errstr,
                                 size_t errstr_size);
int sg_aggregate_run(sg_aggregate_t *ag);
void sg_aggregate_destroy(sg_aggregate_t *ag);

#endif
