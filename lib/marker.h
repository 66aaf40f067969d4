/*
 * Watermark markers on sg.events: ingest's word, written into every
 * sg.events partition, on how far one input partition's event time has come
 * and whether it is idle; aggregate builds each partition's watermark from
 * them (lib/watermark.h, docs/watermark.md).
 *
 * Wire format (version 1; docs/watermark.md is the contract):
 *   record header "sg.marker" = "1" (the format version; its presence is
 *   what tells a marker from an event, without decoding anything);
 *   key: none; value, big-endian, 16 + n bytes:
 *     0..3   magic "SGWM" (byte 0 is not 0: never Confluent framing, so a
 *            NormalizedEvent decoder rejects it as bad_framing)
 *     4      version, 1
 *     5      flags: bit 0 idle; the other bits are 0
 *     6..13  event_time, int64 ms since the epoch; INT64_MIN = none yet
 *     14..15 n, the length of source (1 .. SG_MARKER_SOURCE_LEN - 1)
 *     16..   source, "topic/partition" of the input, not NUL-terminated
 */
#ifndef SG_MARKER_H
#define SG_MARKER_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "event.h"
#include "kafka.h"

#define SG_MARKER_HEADER     "sg.marker"
#define SG_MARKER_VERSION    1
#define SG_MARKER_SOURCE_LEN (SG_TOPIC_LEN + 16)
#define SG_MARKER_FIXED      16 /* value bytes before the source */
#define SG_MARKER_MAX        (SG_MARKER_FIXED + SG_MARKER_SOURCE_LEN)

typedef struct sg_marker {
        char source[SG_MARKER_SOURCE_LEN]; /* "topic/partition" of the input */
        int64_t event_time; /* the input's event-time progress (ms); INT64_MIN:
                               none yet */
        int idle;           /* read to its end, all acknowledged */
} sg_marker_t;

/*
 * 1: m is a marker, *out filled; 0: not a marker (an event: no sg.marker
 * header); -1: a malformed marker (err says why). Reads the message's
 * headers, which librdkafka parses on first use (a few comparisons for a
 * record without headers).
 */
int sg_marker_parse(const rd_kafka_message_t *m, sg_marker_t *out, char *err,
                    size_t errsize);

/*
 * The same from a record's headers (NULL: none) and value: what
 * sg_marker_parse() does once it has the headers. For tests and tools.
 */
int sg_marker_parse_record(const rd_kafka_headers_t *hdrs, const void *value,
                           size_t len, sg_marker_t *out, char *err,
                           size_t errsize);

/*
 * Writes m's value into buf (at least SG_MARKER_MAX bytes are always
 * enough). Returns its length, or -1 if the source is empty, too long or
 * does not fit.
 */
int sg_marker_encode(const sg_marker_t *m, unsigned char *buf, size_t size);

/*
 * Enqueues m to topic/partition with its sg.marker header, through p (see
 * sg_producer_send: it is counted for a pipeline batch only if one is
 * open). 0, or -1 (logged).
 */
int sg_marker_send(sg_producer_t *p, const char *topic, int32_t partition,
                   const sg_marker_t *m);

#endif
