/*
 * The ingest stage: input topics -> decode, validate, tag list-based IVT,
 * normalize -> sg.events (key = channel); rejects -> sg.deadletter.
 */
#ifndef SG_INGEST_H
#define SG_INGEST_H

#include "conf.h"

typedef struct sg_ingest sg_ingest_t;

/* NULL and errstr on error. Takes nothing over from conf (it is copied). */
sg_ingest_t *sg_ingest_new(const sg_conf_t *conf, char *errstr,
                           size_t errstr_size);
/* Runs until sg_stop; returns 0 on a clean stop. */
int sg_ingest_run(sg_ingest_t *in);
void sg_ingest_destroy(sg_ingest_t *in);

#endif
