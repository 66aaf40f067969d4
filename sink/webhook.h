/*
 * The sink's optional webhook: decisions POSTed as JSON to an http:// URL
 * by a worker thread, with retries and doubling backoff. Never blocks the
 * pipeline: a bounded queue, and what does not fit is dropped, counted and
 * logged.
 */
#ifndef SG_SINK_WEBHOOK_H
#define SG_SINK_WEBHOOK_H

#include <stddef.h>

typedef struct sg_webhook sg_webhook_t;

typedef struct sg_webhook_conf {
        const char *url; /* http://host[:port][/path] */
        int queue;       /* notifications waiting, at most */
        int timeout_ms;  /* one POST: connect, send, answer */
        int retries;     /* after the first attempt */
        int backoff_ms;  /* first retry delay, doubling, at most 30 s */
} sg_webhook_conf_t;

/* Parses the URL and starts the worker. NULL and errstr on a bad URL (or
 * out of memory). */
sg_webhook_t *sg_webhook_new(const sg_webhook_conf_t *conf, char *errstr,
                             size_t errstr_size);
/* Stops the worker after the POST in hand; what is still queued is
 * dropped and logged. Accepts NULL. */
void sg_webhook_destroy(sg_webhook_t *w);

/* Queues a copy of body (JSON). 0, or -1 when the queue is full (the
 * notification is dropped, counted and logged). Never blocks. */
int sg_webhook_post(sg_webhook_t *w, const char *body, size_t len);

#endif
