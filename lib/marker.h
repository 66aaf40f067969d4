/*
 * Watermark markers on sg.events: ingest's word, written into every
 * sg.events partition, on how far its input partitions' event time has
 * come and whether they are idle; aggregate builds each partition's
 * watermark from them (lib/watermark.h, docs/watermark.md).
 *
 * Wire format, version 2 (written; docs/watermark.md is the contract):
 *   record header "sg.marker" = "2" (the format version; its presence is
 *   what tells a marker from an event, without decoding anything);
 *   key: none; value, big-endian:
 *     0..3   magic "SGWM" (byte 0 is not 0: never Confluent framing, so a
 *            NormalizedEvent decoder rejects it as bad_framing)
 *     4      version, 2
 *     5      0 (reserved)
 *     6..7   n, the entries that follow (>= 1), one per input partition:
 *       0      flags: bit 0 idle; the other bits are 0
 *       1..8   event_time, int64 ms since the epoch; INT64_MIN = none yet
 *       9..10  len, the length of source (1 .. SG_MARKER_SOURCE_LEN - 1)
 *       11..   source, "topic/partition" of the input, not NUL-terminated
 * Version 1 (header "1"; one input per record: magic, 1, flags, event_time,
 * len, source) is still read, so that records an older ingest wrote are
 * understood.
 */
#ifndef SG_MARKER_H
#define SG_MARKER_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "event.h"
#include "kafka.h"

#define SG_MARKER_HEADER     "sg.marker"
#define SG_MARKER_VERSION    2 /* written; 1 is read too */
#define SG_MARKER_SOURCE_LEN (SG_TOPIC_LEN + 16)
#define SG_MARKER_FIXED      8  /* value bytes before the entries */
#define SG_MARKER_ENTRY      11 /* entry bytes before its source */
#define SG_MARKER_MAX        16384 /* the longest value written: further
                                      entries go in the next record */

typedef struct sg_marker {
        char source[SG_MARKER_SOURCE_LEN]; /* "topic/partition" of the input */
        int64_t event_time; /* the input's event-time progress (ms); INT64_MIN:
                               none yet */
        int idle;           /* read to its end, all acknowledged */
} sg_marker_t;

/* The entries of one marker record, read in order (sg_marker_next). */
typedef struct sg_marker_reader {
        const unsigned char *p; /* the next entry */
        int left;               /* entries not read yet */
        int version;
} sg_marker_reader_t;

/*
 * 1: m is a marker, every entry checked, r set to read them; 0: not a
 * marker (an event: no sg.marker header); -1: a malformed marker (err says
 * why; nothing of it is to be used). Reads the message's headers, which
 * librdkafka parses on first use (a few comparisons for a record without
 * headers).
 */
int sg_marker_open(const rd_kafka_message_t *m, sg_marker_reader_t *r,
                   char *err, size_t errsize);

/*
 * The same from a record's headers (NULL: none) and value: what
 * sg_marker_open() does once it has the headers. For tests and tools.
 */
int sg_marker_open_record(const rd_kafka_headers_t *hdrs, const void *value,
                          size_t len, sg_marker_reader_t *r, char *err,
                          size_t errsize);

/* The next entry of an opened marker into out: 1, or 0 after the last. */
int sg_marker_next(sg_marker_reader_t *r, sg_marker_t *out);

/*
 * Writes a version-2 marker of the first entries of v (n of them) into buf,
 * as many as fit in size bytes (at least one): its length, with *used set
 * to the entries written; -1 if n < 1, if an entry's source is empty or
 * too long, or if not even the first fits.
 */
int sg_marker_encode(const sg_marker_t *v, int n, unsigned char *buf,
                     size_t size, int *used);

/*
 * Enqueues the n entries of v to topic/partition as markers with their
 * sg.marker header (one record per SG_MARKER_MAX bytes), through p (see
 * sg_producer_send: they are counted for a pipeline batch only if one is
 * open). The count of records enqueued, or -1 (logged; some may be out).
 */
int sg_marker_send(sg_producer_t *p, const char *topic, int32_t partition,
                   const sg_marker_t *v, int n);

#endif
