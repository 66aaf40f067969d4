/*
 * The rules stage's state as one string map (breakers, alert latches,
 * blocked sources, history, budgets), mirrored in the Redis hash
 * sg:rstate. Writes of a batch wait in an overlay until Kafka has
 * acknowledged the batch's decisions, so a redone batch decides the same.
 */
#ifndef SG_RULES_STATE_H
#define SG_RULES_STATE_H

#include <stddef.h>
#include <stdint.h>

typedef struct sg_rstate sg_rstate_t;

sg_rstate_t *sg_rstate_new(void);        /* NULL when out of memory */
void sg_rstate_destroy(sg_rstate_t *st); /* accepts NULL */

/* The value of key: the batch's overlay first, then the committed map;
 * NULL when absent (or deleted in the overlay). */
const char *sg_rstate_get(const sg_rstate_t *st, const char *key);
/* Sets (val != NULL) or deletes (val == NULL) key in the overlay. exp is
 * the event time after which a sweep may drop it (0 = never). -1 when out
 * of memory. */
int sg_rstate_put(sg_rstate_t *st, const char *key, const char *val,
                  int64_t exp);

/* The exp of key as sg_rstate_get finds it; 0 when absent. */
int64_t sg_rstate_exp(const sg_rstate_t *st, const char *key);

/* Walks the overlay: fn(opaque, key, val or NULL for a delete, exp).
 * Stops and returns -1 when fn does. */
int sg_rstate_each_pending(const sg_rstate_t *st,
                           int (*fn)(void *, const char *, const char *,
                                     int64_t),
                           void *opaque);
size_t sg_rstate_pending(const sg_rstate_t *st);
/* Applies the overlay to the committed map, or drops it. */
void sg_rstate_commit(sg_rstate_t *st);
void sg_rstate_rollback(sg_rstate_t *st);
/* Replaces the committed map (a load from Redis): clear, then put_committed
 * each entry. */
void sg_rstate_clear(sg_rstate_t *st);
int sg_rstate_put_committed(sg_rstate_t *st, const char *key, const char *val,
                            int64_t exp);
/* Deletes (in the overlay) every committed entry whose exp is below
 * before(opaque, its key) (each key's own event time: its channel's);
 * returns how many. */
size_t sg_rstate_sweep(sg_rstate_t *st,
                       int64_t (*before)(void *opaque, const char *key),
                       void *opaque);
size_t sg_rstate_size(const sg_rstate_t *st);

#endif
