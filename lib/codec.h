/*
 * The wire codec: Avro in Confluent framing (byte 0 = 0, 4-byte big-endian
 * schema id, Avro binary) with the contract schema ids or evolved writer
 * schemas from a local registry, and JSON objects with the same field names.
 * One codec per thread: it reuses its Avro values and buffers between calls.
 */
#ifndef SG_CODEC_H
#define SG_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "event.h"

typedef struct sg_codec sg_codec_t;

typedef enum { SG_FMT_AVRO = 0, SG_FMT_JSON = 1 } sg_format_t;

/* "avro" | "json" -> 0 and *out; -1 otherwise. */
int sg_format_parse(const char *s, sg_format_t *out);

/*
 * Loads the seven contract schemas from schema_dir (impression.avsc,
 * click.avsc, conversion.avsc, normalized_event.avsc,
 * aggregate_snapshot.avsc, decision.avsc, channel_kpi.avsc).
 * Writer schemas of other ids are read later, at first sight, from
 * <schema_dir>/registry/<id>.avsc (docs/schemas.md); the folder may be
 * missing. Returns NULL and fills errstr on failure. Free with
 * sg_codec_destroy().
 */
sg_codec_t *sg_codec_new(const char *schema_dir, char *errstr,
                         size_t errstr_size);
void sg_codec_destroy(sg_codec_t *codec);

/*
 * A schema registry's answer for writer id: 0 with *schema (the Avro
 * schema's JSON, malloc'ed: the codec frees it), 1 when the registry does
 * not know the id, -1 when it could not be asked (down, timed out); err
 * says why for 1 and -1.
 */
typedef int(sg_codec_fetch_fn)(void *opaque, uint32_t id, char **schema,
                               char *err, size_t err_size);

/*
 * Registry mode: every schema id framed on an input record (1-7 included:
 * they are the registry's ids now) is resolved through fetch, once per id
 * (the cache of the file registry: positive answers for good, negative
 * ones for 30 s). An id fetch could not ask about is not cached, and
 * sg_codec_decode_input() returns -2 for its records. fetch NULL: back to
 * the file registry. Drops what the cache held.
 */
void sg_codec_set_registry(sg_codec_t *codec, sg_codec_fetch_fn *fetch,
                           void *opaque);

/*
 * The id encoders frame contract schema `schema` (SG_SCHEMA_*) with, e.g.
 * the one a registry gave the sink's Decision schema; its decoder accepts
 * that id as well as the contract id. -1 if schema is not 1-7.
 */
int sg_codec_set_wire_id(sg_codec_t *codec, int schema, uint32_t id);

/* The contract schema's .avsc text as loaded (owned by the codec), or NULL
 * if schema is not 1-7. */
const char *sg_codec_schema_text(const sg_codec_t *codec, int schema);

/*
 * Rejection reason codes, as returned by the decoders (README,
 * "Topics"). Stable strings: they are the value of the sg.error dead-letter
 * header.
 */
#define SG_ERR_BAD_FRAMING    "bad_framing"
#define SG_ERR_UNKNOWN_SCHEMA "unknown_schema"
#define SG_ERR_AVRO_DECODE    "avro_decode"
#define SG_ERR_JSON_PARSE     "json_parse"
#define SG_ERR_MISSING_FIELD  "missing_field"
#define SG_ERR_BAD_VALUE      "bad_value"
#define SG_ERR_UNKNOWN_TYPE   "unknown_type"
/* Not a rejection: the record is to be decoded again later (-2). */
#define SG_ERR_REGISTRY_UNAVAILABLE "registry_unavailable"

/*
 * Decodes one input event (Impression, Click or Conversion). A payload whose
 * first byte is 0 is Confluent-framed Avro and the schema id gives the type
 * (ids 1-3, or an id above 7 whose writer schema is in the registry: its
 * record name gives the type and the record is resolved into the contract
 * schema; an id with no readable writer schema is unknown_schema); a payload
 * starting with '{' (after white space) is JSON and the type comes from its
 * "type" field, else from default_type. Allocates only when it meets a
 * registry id for the first time (or again after a negative answer
 * expired).
 * Fills *ev (src_* and ivt_* are left zero). On rejection returns -1, points
 * *reason at one of the SG_ERR_* codes and writes a human-readable detail
 * (naming the field) into detail. In registry mode (sg_codec_set_registry)
 * it returns -2, reason SG_ERR_REGISTRY_UNAVAILABLE, when the registry
 * could not be asked about the record's id: the record is not bad, it is
 * to be decoded again later.
 */
int sg_codec_decode_input(sg_codec_t *codec, const void *buf, size_t len,
                          sg_event_type_t default_type, sg_event_t *ev,
                          const char **reason, char *detail,
                          size_t detail_size);

/*
 * Encoders write into buf (capacity bufsize) and return the number of bytes
 * written, or -1 if it does not fit or the value is not encodable (errstr in
 * the codec: sg_codec_error()). Avro output is Confluent-framed.
 */
int sg_codec_encode_input(sg_codec_t *codec, sg_format_t fmt,
                          const sg_event_t *ev, void *buf, size_t bufsize);
int sg_codec_encode_normalized(sg_codec_t *codec, const sg_event_t *ev,
                               void *buf, size_t bufsize);
int sg_codec_encode_snapshot(sg_codec_t *codec, const sg_snapshot_t *s,
                             void *buf, size_t bufsize);
int sg_codec_encode_decision(sg_codec_t *codec, sg_format_t fmt,
                             const sg_decision_t *d, void *buf, size_t bufsize);
/* ChannelKpi row (schema 7): the snapshot's counters plus derived ratios. */
int sg_codec_encode_kpi(sg_codec_t *codec, sg_format_t fmt,
                        const sg_snapshot_t *s, void *buf, size_t bufsize);

/*
 * Decoders of the internal topics (Avro, Confluent framing, expected id).
 * Return 0, or -1 with sg_codec_error() set.
 */
int sg_codec_decode_normalized(sg_codec_t *codec, const void *buf, size_t len,
                               sg_event_t *ev);
int sg_codec_decode_snapshot(sg_codec_t *codec, const void *buf, size_t len,
                             sg_snapshot_t *s);
/* Accepts Avro (id 6) or JSON. */
int sg_codec_decode_decision(sg_codec_t *codec, const void *buf, size_t len,
                             sg_decision_t *d);
/* Accepts Avro (id 7) or JSON; ratios are recomputed, not read. */
int sg_codec_decode_kpi(sg_codec_t *codec, const void *buf, size_t len,
                        sg_snapshot_t *s);

/* Writes s as a JSON string (quoted, escaped) to fp. */
void sg_json_put_str(FILE *fp, const char *s);

/* The last error of an encoder or internal decoder. */
const char *sg_codec_error(const sg_codec_t *codec);

#endif
