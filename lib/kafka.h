/*
 * Kafka consumer and producer wrappers over librdkafka: the config's
 * brokers and kafka: map applied, librdkafka's logs routed through sg_log,
 * manual offset commits, and per-batch delivery accounting so a stage can
 * commit its input only after everything it produced is acknowledged.
 */
#ifndef SG_KAFKA_H
#define SG_KAFKA_H

#include <librdkafka/rdkafka.h>

#include "conf.h"
#include "metrics.h"

typedef struct sg_pipeline sg_pipeline_t;

/* ---------------------------------------------------------------- producer */

typedef struct sg_producer sg_producer_t;

/*
 * An idempotent producer (enable.idempotence=true, acks=all), with the
 * config's kafka: properties on top. NULL and errstr on error.
 */
sg_producer_t *sg_producer_new(const sg_conf_t *conf, const char *client_id,
                               char *errstr, size_t errstr_size);
void sg_producer_destroy(sg_producer_t *p); /* flushes for up to 10 s */

rd_kafka_t *sg_producer_handle(sg_producer_t *p);
/*
 * The offsets consumer group group has committed on the partitions of
 * topic, asked through rk (any client: the admin API). NULL on error,
 * errstr filled. The caller destroys the list.
 */
rd_kafka_topic_partition_list_t *sg_kafka_group_offsets(rd_kafka_t *rk,
                                                        const char *group,
                                                        const char *topic,
                                                        char *errstr,
                                                        size_t errstr_size);

/*
 * Enqueues one message (copied). partition -1 = by key. hdrs may be NULL; it
 * is taken over on success and on failure alike. Waits (serving delivery
 * reports) while the local queue is full. 0, or -1 with the error logged.
 */
int sg_producer_send(sg_producer_t *p, const char *topic, int32_t partition,
                     const void *key, size_t key_len, const void *value,
                     size_t value_len, rd_kafka_headers_t *hdrs);

/*
 * Waits until every message sent since the last flush is delivered or has
 * failed. Returns the number that failed (0 = all acknowledged), or -1 if
 * they are still in flight after timeout_ms.
 */
int sg_producer_flush(sg_producer_t *p, int timeout_ms);

/*
 * Sends a rejected record to the dead-letter topic: the original key and
 * bytes, with headers sg.error (the reason code), sg.detail and sg.src
 * (topic/partition/offset). Counts it in deadletter_total{reason} and logs
 * it (at most one line a second; the rest are counted in the next line).
 * A record that would not fit the producer's message.max.bytes goes out
 * cut to its first bytes (a key to its first 1024), with header sg.size
 * (the original value's size in bytes). A dead letter refused for good
 * (too large for the broker, invalid) counts as sent: it is logged
 * (event=deadletter_failed), counted in deadletter_failed_total, and
 * never fails the batch. 0, or -1 if it could not be enqueued.
 */
int sg_producer_deadletter(sg_producer_t *p, const char *topic,
                           const rd_kafka_message_t *m, const char *reason,
                           const char *detail);

/* Serves delivery reports without blocking. */
void sg_producer_poll(sg_producer_t *p);

/*
 * A transactional producer: sg_producer_new plus transactional.id, its
 * transactions initialised (which fences an older instance with the same
 * id and aborts what it left open). Retries while the broker is not
 * ready; NULL and errstr on error or when stopped.
 */
sg_producer_t *sg_producer_new_transactional(const sg_conf_t *conf,
                                             const char *client_id,
                                             const char *transactional_id,
                                             char *errstr, size_t errstr_size);
/* Begins a transaction. 0, or -1 (logged; the producer is unusable). */
int sg_producer_txn_begin(sg_producer_t *p);
/* Aborts the open transaction (its messages are never visible to
 * read_committed readers). 0, or -1: the producer is unusable. */
int sg_producer_txn_abort(sg_producer_t *p);

/* ---------------------------------------------------------------- consumer */

typedef struct sg_consumer sg_consumer_t;

/*
 * Called on every assignment (before it takes effect: the callback may set
 * each partition's .offset to seek) and revocation.
 */
typedef void(sg_rebalance_fn)(void *opaque, int assign,
                              rd_kafka_topic_partition_list_t *parts);

/*
 * This instance's name for stage into buf: conf instance_id (else the
 * host name) + "." + stage; the base of a transactional.id, and with
 * instance_id set the group.instance.id of its consumer (static
 * membership). Returns 1 when instance_id is set, else 0.
 */
int sg_kafka_instance_id(const sg_conf_t *conf, const char *stage, char *buf,
                         size_t size);

/*
 * A consumer in group <group_prefix>.<stage>, subscribed to topics, with
 * auto commit off and auto.offset.reset=earliest. on_rebalance may be NULL.
 */
sg_consumer_t *sg_consumer_new(const sg_conf_t *conf, const char *stage,
                               const char *const *topics, int topic_cnt,
                               sg_rebalance_fn *on_rebalance, void *opaque,
                               char *errstr, size_t errstr_size);
/* Leaves the group (without committing) and frees. Accepts NULL. */
void sg_consumer_destroy(sg_consumer_t *c);

rd_kafka_t *sg_consumer_handle(sg_consumer_t *c);

/*
 * Fills msgs with up to max messages, waiting at most timeout_ms for the
 * first and the rest of the batch; once it holds one, the batch also ends
 * when no message comes for the config's batch_linger_ms (unless that is
 * -1). Consumer errors are logged and skipped.
 * Returns the count; free them with sg_consumer_batch_free().
 */
int sg_consumer_batch(sg_consumer_t *c, rd_kafka_message_t **msgs, int max,
                      int timeout_ms);
void sg_consumer_batch_free(rd_kafka_message_t **msgs, int cnt);

/* Commits, per partition, the highest offset in msgs + 1, asynchronously
 * (a failure is logged when the consumer is next polled); -1 if the request
 * could not be queued. */
int sg_consumer_commit(sg_consumer_t *c, rd_kafka_message_t **msgs, int cnt);

/*
 * Commits p's open transaction together with c's offsets after msgs (the
 * consumer's group metadata fences a zombie). Call after sg_producer_flush
 * found everything acknowledged. Retriable errors are retried; an
 * abortable one aborts the transaction. Returns 0 committed, 1 aborted
 * (rewind and redo the batch), -1 fatal or stopped.
 */
int sg_producer_txn_commit(sg_producer_t *p, sg_consumer_t *c,
                           rd_kafka_message_t **msgs, int cnt);

/* Rewinds each partition in msgs to its lowest offset there, so the batch
 * is consumed again. */
int sg_consumer_rewind(sg_consumer_t *c, rd_kafka_message_t **msgs, int cnt);

/* ------------------------------------------------------- pipelined batches */

/*
 * A consumer's batches whose produced records are still being acknowledged,
 * so that the next batches are consumed and processed meanwhile. Every
 * message sent through the producer between sg_pipeline_begin() and
 * sg_pipeline_end() (records and dead letters alike) counts for the open
 * batch; sg_pipeline_add() notes an input record's offset, after which the
 * input message may be freed (the producer copies what it sends). A
 * batch's input offsets are committed, asynchronously and oldest first,
 * once it and every batch before it are acknowledged in full: a lost
 * asynchronous commit only means re-delivery. Single-threaded: call
 * everything, and poll the producer, from the stage's thread.
 */

/* depth: batches in flight at most (1 = the next batch is consumed only
 * once the previous one is committed). batch_seconds may be NULL: it
 * observes each batch from sg_pipeline_begin() to its commit. NULL if out
 * of memory. */
sg_pipeline_t *sg_pipeline_new(sg_consumer_t *c, sg_producer_t *p, int depth,
                               sg_histogram_t *batch_seconds);
/* Forgets what is in flight (commits nothing: drain first). Accepts NULL. */
void sg_pipeline_destroy(sg_pipeline_t *pl);

/* Opens a batch: there must be room (sg_pipeline_reap() returned 0). */
void sg_pipeline_begin(sg_pipeline_t *pl);
/* Notes an input record of the open batch. */
void sg_pipeline_add(sg_pipeline_t *pl, const rd_kafka_message_t *m);
/* The same, with the event time the record brings to its partition's
 * progress (INT64_MIN: none, e.g. a rejected record): per partition, a
 * batch keeps the highest, for sg_pipeline_acked_fn. */
void sg_pipeline_add_time(sg_pipeline_t *pl, const rd_kafka_message_t *m,
                          int64_t event_time);

/*
 * Called for each batch when it is acknowledged in full together with
 * every batch before it, as it is committed (sg_pipeline_reap and
 * sg_pipeline_drain), oldest first; never for a batch that failed or was
 * given up. next: per input partition the offset after the batch's last
 * record; max_t[i]: the highest event time noted for next->elems[i]
 * (INT64_MIN: none). Both are valid during the call only.
 */
typedef void(sg_pipeline_acked_fn)(void *opaque,
                                   const rd_kafka_topic_partition_list_t *next,
                                   const int64_t *max_t);
/* Sets (or with NULL clears) the callback. */
void sg_pipeline_on_acked(sg_pipeline_t *pl, sg_pipeline_acked_fn *fn,
                          void *opaque);
/* Closes the open batch: no more sends count for it. */
void sg_pipeline_end(sg_pipeline_t *pl);

/*
 * Serves delivery reports and commits the batches completed, in order.
 * While depth batches are in flight it waits, until one is committed or
 * sg_stop. If the oldest batch has a record that failed (to be enqueued
 * or delivered), it waits up to 60 s for the other batches' reports,
 * rewinds the consumer to each partition's first record in flight, so
 * that all of them are consumed again, forgets them and returns -1 (the
 * caller drops state that would meet those records as duplicates).
 * Otherwise 0.
 */
int sg_pipeline_reap(sg_pipeline_t *pl);

/*
 * Waits up to timeout_ms for every batch in flight, commits synchronously
 * those acknowledged, oldest first up to the first that failed or is still
 * in flight, and forgets them all. For a stop or a revocation: what was
 * not committed is consumed again by whoever owns the partitions next.
 * Returns how many batches were not committed.
 */
int sg_pipeline_drain(sg_pipeline_t *pl, int timeout_ms);

/* Batches in flight (open or awaiting acknowledgement or commit). */
int sg_pipeline_inflight(const sg_pipeline_t *pl);

#endif
