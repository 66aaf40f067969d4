/*
 * The wire codec. Input and normalized events, the hot path, are read and
 * written by a small bounded Avro binary coder straight into the fixed
 * buffers of sg_event_t: avro-c's avro_value_read() allocates twice per
 * string, and 1.11.1 allocates whatever length the bytes claim before it
 * checks that they hold it (2^62 for a 9-byte varint). Snapshots, decisions
 * and KPI rows go through avro-c generic values, after a schema-driven pass
 * that proves the bytes are well-formed. Both agree on the layout because
 * sg_codec_new() checks every loaded schema against the layout this file
 * expects. Input events written with another writer schema (a registry id,
 * <schema_dir>/registry/<id>.avsc) are read through a resolution plan built
 * once per id: the same bounded reader, steered by the plan, still straight
 * into sg_event_t.
 */
#include <errno.h>
#include <limits.h>
#include <time.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>
#include <jansson.h>

#include "codec.h"
#include "log.h"

#define FRAME_LEN       5  /* magic byte + 4-byte schema id */
#define MAX_DEPTH       16 /* nesting the validator follows; ours is 4 */
#define MAX_SCHEMA_FILE (1 << 20)

#define REG_MAX_IDS      256   /* writer ids cached per codec */
#define REG_NEG_TTL_MS   30000 /* how long "no such id" is believed */
#define REG_MAX_BRANCHES 16    /* of a writer union read into a field */
#define REG_DETAIL_LEN   200

struct rs_plan;

/* One writer id seen: its plan, or why it cannot be read (negative). */
struct reg_entry {
        struct rs_plan *plan; /* NULL: negative, see detail */
        int64_t expires_ms;   /* negative entries: when to look again */
        uint64_t last_use;
        char detail[REG_DETAIL_LEN];
};

/* A schema the codec reads or writes with, and its reusable value. */
typedef struct codec_schema {
        avro_schema_t schema;
        char *text;       /* the .avsc as written, for registries */
        uint32_t wire_id; /* what encoders frame it with */
        avro_value_iface_t *iface;
        avro_value_t value; /* reused: reset before every use */
        int has_value;
} codec_schema_t;

static void codec_schema_clear(codec_schema_t *cs)
{
        if (cs->has_value)
                avro_value_decref(&cs->value);
        if (cs->iface)
                avro_value_iface_decref(cs->iface);
        if (cs->schema)
                avro_schema_decref(cs->schema);
        free(cs->text);
}

struct sg_codec {
        codec_schema_t s[SG_SCHEMA_MAX + 1];
        /* The Decision as written before dry_run (decision.avsc without
         * its last field): records of older writers under id 6. */
        codec_schema_t dec_v1;
        avro_reader_t reader;
        avro_writer_t writer;
        char err[256];
        /* The writer-schema registry: ids in reg_ids[i] <-> reg[i]. */
        char reg_dir[4096];
        sg_codec_fetch_fn *fetch; /* a schema registry; NULL: reg_dir */
        void *fetch_opaque;
        uint32_t reg_ids[REG_MAX_IDS];
        struct reg_entry reg[REG_MAX_IDS];
        int reg_cnt;
        uint64_t reg_tick;
        char unavail[REG_DETAIL_LEN]; /* why the registry was not asked */
};

static const char *const schema_files[SG_SCHEMA_MAX + 1] = {
    [SG_SCHEMA_IMPRESSION] = "impression.avsc",
    [SG_SCHEMA_CLICK] = "click.avsc",
    [SG_SCHEMA_CONVERSION] = "conversion.avsc",
    [SG_SCHEMA_NORMALIZED] = "normalized_event.avsc",
    [SG_SCHEMA_SNAPSHOT] = "aggregate_snapshot.avsc",
    [SG_SCHEMA_DECISION] = "decision.avsc",
    [SG_SCHEMA_KPI] = "channel_kpi.avsc",
};

/*
 * The field order and types this file encodes and decodes, as
 * "name:signature" (s string, l long, i int, b boolean, d double, e enum,
 * r record, m<x> map, a<x> array, ?<x> union of null and x). The hand coder
 * walks fields in exactly this order, so a schema edit that is not mirrored
 * here must stop the codec at start-up, not corrupt the wire.
 */
#define EVENT_COMMON_FIELDS                                                    \
        "event_id:s", "event_time:l", "channel:s", "campaign_id:s",            \
            "ad_id:?s", "device_id:?s", "ip:?s", "user_agent:?s", "country:?s"
#define COUNTER_FIELDS                                                         \
        "impressions:l", "clicks:l", "conversions:l", "spend_micros:l",        \
            "revenue_micros:l", "invalid_clicks:l", "invalid_impressions:l",   \
            "invalid_spend_micros:l", "unique_devices:l"

static const char *const layout_impression[] = {EVENT_COMMON_FIELDS,
                                                "cost_micros:l", NULL};
static const char *const layout_click[] = {EVENT_COMMON_FIELDS, "cost_micros:l",
                                           "impression_id:?s", NULL};
static const char *const layout_conversion[] = {
    EVENT_COMMON_FIELDS, "revenue_micros:l", "click_id:?s", NULL};
static const char *const layout_normalized[] = {"type:e",
                                                EVENT_COMMON_FIELDS,
                                                "cost_micros:l",
                                                "revenue_micros:l",
                                                "ref_id:?s",
                                                "ivt_mask:i",
                                                "ivt_reason:?s",
                                                "src_topic:s",
                                                "src_partition:i",
                                                "src_offset:l",
                                                NULL};
#define SIGNAL_FIELDS                                                          \
        "unique_ips:l", "ivt_bot_ua:l", "ivt_no_ua:l", "ivt_dc_ip:l",          \
            "ivt_dup_click:l", "freq_cap_impressions:l", "ctc_lt_10s:l",       \
            "ctc_lt_1m:l", "ctc_lt_1h:l", "ctc_ge_1h:l",                       \
            "conversions_no_click:l", "source_clicks_untracked:l"

static const char *const layout_snapshot[] = {"channel:s",
                                              "campaign_id:?s",
                                              "window_start:l",
                                              "window_end:l",
                                              "final:b",
                                              "window:s",
                                              COUNTER_FIELDS,
                                              SIGNAL_FIELDS,
                                              "top_sources:ar",
                                              "watermark:l",
                                              NULL};
static const char *const layout_source_clicks[] = {"source:s", "clicks:l",
                                                   NULL};
static const char *const layout_decision[] = {"decision_id:s",
                                              "rule_id:s",
                                              "action:e",
                                              "channel:s",
                                              "campaign_id:?s",
                                              "source:?s",
                                              "reason:s",
                                              "metrics:md",
                                              "window_start:l",
                                              "window_end:l",
                                              "decided_at:l",
                                              "budgets:?ar",
                                              "dry_run:b",
                                              NULL};
static const char *const layout_budget[] = {"channel:s", "budget_micros:l",
                                            NULL};
static const char *const layout_kpi[] = {
    "channel:s",     "campaign_id:?s", "window_start:l", "window_end:l",
    COUNTER_FIELDS,  "ctr:?d",         "cvr:?d",         "cpa_micros:?d",
    "cpm_micros:?d", "roas:?d",        "ivt_rate:?d",    NULL};

static const char *const *const layouts[SG_SCHEMA_MAX + 1] = {
    [SG_SCHEMA_IMPRESSION] = layout_impression,
    [SG_SCHEMA_CLICK] = layout_click,
    [SG_SCHEMA_CONVERSION] = layout_conversion,
    [SG_SCHEMA_NORMALIZED] = layout_normalized,
    [SG_SCHEMA_SNAPSHOT] = layout_snapshot,
    [SG_SCHEMA_DECISION] = layout_decision,
    [SG_SCHEMA_KPI] = layout_kpi,
};

/* NormalizedEvent.type symbols: index + 1 is the sg_event_type_t. */
static const char *const event_type_symbols[] = {"IMPRESSION", "CLICK",
                                                 "CONVERSION"};

/*
 * Errors
 */

static int fail(sg_codec_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(sg_codec_t *c, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(c->err, sizeof(c->err), fmt, ap);
        va_end(ap);
        return -1;
}

/* A rejection: one SG_ERR_* code plus a detail naming the field. */
struct sg_rej {
        const char *reason;
        char *detail;
        size_t size;
};

static int reject(struct sg_rej *r, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int reject(struct sg_rej *r, const char *reason, const char *fmt, ...)
{
        va_list ap;

        r->reason = reason;
        if (r->detail && r->size) {
                va_start(ap, fmt);
                vsnprintf(r->detail, r->size, fmt, ap);
                va_end(ap);
        }
        return -1;
}

/* Internal decoders report through the codec's error buffer. */
static struct sg_rej codec_rej(sg_codec_t *c)
{
        struct sg_rej r = {NULL, c->err, sizeof(c->err)};
        return r;
}

/* An Avro string is UTF-8 by definition: other bytes are bad Avro, and
 * would later make the JSON encoders fail. */
static int utf8_valid(const uint8_t *s, size_t n)
{
        size_t i = 0;

        while (i < n) {
                uint8_t b;
                size_t k;
                uint32_t cp;
                uint64_t w;

                /* Eight ASCII bytes at a time: user agents, ids and names
                 * are nearly always ASCII. */
                if (n - i >= 8) {
                        memcpy(&w, s + i, 8);
                        if ((w & 0x8080808080808080ULL) == 0) {
                                i += 8;
                                continue;
                        }
                }
                b = s[i];
                if (b < 0x80) {
                        i++;
                        continue;
                }
                if (b >= 0xc2 && b <= 0xdf) {
                        k = 1;
                        cp = b & 0x1f;
                } else if (b >= 0xe0 && b <= 0xef) {
                        k = 2;
                        cp = b & 0x0f;
                } else if (b >= 0xf0 && b <= 0xf4) {
                        k = 3;
                        cp = b & 0x07;
                } else {
                        return 0;
                }
                if (n - i <= k)
                        return 0;
                for (size_t j = 1; j <= k; j++) {
                        if ((s[i + j] & 0xc0) != 0x80)
                                return 0;
                        cp = (cp << 6) | (s[i + j] & 0x3f);
                }
                /* Overlong forms, surrogates and beyond U+10FFFF. */
                if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
                    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
                        return 0;
                i += k + 1;
        }
        return 1;
}

/*
 * Copies a decoded string into a fixed buffer. A value that does not fit,
 * or that a C string cannot carry, is rejected rather than cut: a truncated
 * id would silently merge two events.
 */
static int copy_str(struct sg_rej *r, const char *field, const void *s,
                    size_t n, char *buf, size_t size)
{
        if (memchr(s, 0, n))
                return reject(r, SG_ERR_BAD_VALUE,
                              "field=%s contains a NUL byte", field);
        if (n >= size)
                return reject(r, SG_ERR_BAD_VALUE,
                              "field=%s too long (max %zu bytes)", field,
                              size - 1);
        memcpy(buf, s, n);
        buf[n] = '\0';
        return 0;
}

/*
 * Bounded Avro binary reader. Every length is checked against the bytes
 * left before anything is read, so malformed input ends in a rejection.
 */

struct sg_rd {
        const uint8_t *p;
        const uint8_t *end;
        struct sg_rej *rej;
};

static int rd_long(struct sg_rd *rd, const char *field, int64_t *out)
{
        uint64_t v = 0;
        unsigned shift = 0;
        uint8_t b;

        do {
                if (rd->p >= rd->end)
                        return reject(rd->rej, SG_ERR_AVRO_DECODE,
                                      "field=%s truncated", field);
                b = *rd->p++;
                /* The tenth byte may carry only the 64th bit. */
                if (shift == 63 && (b & 0x7e))
                        return reject(rd->rej, SG_ERR_AVRO_DECODE,
                                      "field=%s varint overflows 64 bits",
                                      field);
                v |= (uint64_t)(b & 0x7f) << shift;
                shift += 7;
        } while ((b & 0x80) && shift <= 63);
        if (b & 0x80)
                return reject(rd->rej, SG_ERR_AVRO_DECODE,
                              "field=%s varint longer than 10 bytes", field);
        *out = (int64_t)((v >> 1) ^ (0 - (v & 1)));
        return 0;
}

static int rd_int(struct sg_rd *rd, const char *field, int32_t *out)
{
        int64_t v;

        if (rd_long(rd, field, &v))
                return -1;
        if (v < INT32_MIN || v > INT32_MAX)
                return reject(rd->rej, SG_ERR_AVRO_DECODE,
                              "field=%s int out of range", field);
        *out = (int32_t)v;
        return 0;
}

/* An enum symbol or union branch index in [0, n). */
static int rd_index(struct sg_rd *rd, const char *field, int64_t n,
                    int64_t *out)
{
        if (rd_long(rd, field, out))
                return -1;
        if (*out < 0 || *out >= n)
                return reject(rd->rej, SG_ERR_AVRO_DECODE,
                              "field=%s index %lld out of range [0,%lld)",
                              field, (long long)*out, (long long)n);
        return 0;
}

static int rd_skip(struct sg_rd *rd, const char *field, int64_t n)
{
        if (n < 0 || n > rd->end - rd->p)
                return reject(rd->rej, SG_ERR_AVRO_DECODE,
                              "field=%s length %lld exceeds the %td bytes "
                              "left",
                              field, (long long)n, rd->end - rd->p);
        rd->p += n;
        return 0;
}

static int rd_bytes(struct sg_rd *rd, const char *field, const uint8_t **s,
                    size_t *n)
{
        int64_t len;

        if (rd_long(rd, field, &len))
                return -1;
        *s = rd->p;
        if (rd_skip(rd, field, len))
                return -1;
        *n = (size_t)len;
        return 0;
}

static int rd_str(struct sg_rd *rd, const char *field, char *buf, size_t size)
{
        const uint8_t *s;
        size_t n;

        if (rd_bytes(rd, field, &s, &n))
                return -1;
        if (!utf8_valid(s, n))
                return reject(rd->rej, SG_ERR_AVRO_DECODE,
                              "field=%s is not valid UTF-8", field);
        return copy_str(rd->rej, field, s, n, buf, size);
}

/* ["null", "string"]: *has says which branch, buf is "" for null. */
static int rd_opt_str(struct sg_rd *rd, const char *field, char *buf,
                      size_t size, int *has)
{
        int64_t branch;

        if (rd_index(rd, field, 2, &branch))
                return -1;
        *has = branch == 1;
        buf[0] = '\0';
        return *has ? rd_str(rd, field, buf, size) : 0;
}

/* A string that need not fit anywhere yet: a map key, a skipped field. */
static int rd_check_str(struct sg_rd *rd, const char *field)
{
        const uint8_t *s;
        size_t n;

        if (rd_bytes(rd, field, &s, &n))
                return -1;
        if (!utf8_valid(s, n))
                return reject(rd->rej, SG_ERR_AVRO_DECODE,
                              "field=%s is not valid UTF-8", field);
        return 0;
}

static int rd_end(struct sg_rd *rd)
{
        if (rd->p != rd->end)
                return reject(rd->rej, SG_ERR_AVRO_DECODE,
                              "%td trailing bytes after the record",
                              rd->end - rd->p);
        return 0;
}

/* A type whose every value encodes to zero bytes: null, fixed(0) and
 * records of those. */
static int zero_size(avro_schema_t s, int depth)
{
        size_t i, n;

        if (depth > MAX_DEPTH)
                return 0;
        switch (avro_typeof(s)) {
        case AVRO_NULL:
                return 1;
        case AVRO_FIXED:
                return avro_schema_fixed_size(s) == 0;
        case AVRO_RECORD:
                n = avro_schema_record_size(s);
                for (i = 0; i < n; i++)
                        if (!zero_size(avro_schema_record_field_get_by_index(
                                           s, (int)i),
                                       depth + 1))
                                return 0;
                return 1;
        case AVRO_LINK:
                return zero_size(avro_schema_link_target(s), depth + 1);
        default:
                return 0;
        }
}

/*
 * Walks one value of any schema without decoding it: the proof that
 * avro_value_read() will find every length, index and count in range, and
 * the skip over a writer field the reader does not have. A block count is
 * bounded by the bytes left, since every item takes at least one byte,
 * except the items of a zero-size type: those take none, so a block of them
 * is passed over without a loop (skip only; the contract schemas have none,
 * and avro-c would allocate the count).
 */
static int rd_walk(struct sg_rd *rd, avro_schema_t s, const char *field,
                   int depth, int skip)
{
        int64_t v, n, i;
        int32_t i32 = 0;
        const uint8_t *str;
        size_t len;

        if (depth > MAX_DEPTH)
                return reject(rd->rej, SG_ERR_AVRO_DECODE,
                              "field=%s nested too deep", field);
        switch (avro_typeof(s)) {
        case AVRO_NULL:
                return 0;
        case AVRO_BOOLEAN:
                if (rd->p >= rd->end)
                        return reject(rd->rej, SG_ERR_AVRO_DECODE,
                                      "field=%s truncated", field);
                if (*rd->p > 1)
                        return reject(rd->rej, SG_ERR_AVRO_DECODE,
                                      "field=%s boolean byte 0x%02x", field,
                                      *rd->p);
                rd->p++;
                return 0;
        case AVRO_INT32:
                return rd_int(rd, field, &i32);
        case AVRO_INT64:
                return rd_long(rd, field, &v);
        case AVRO_FLOAT:
                return rd_skip(rd, field, 4);
        case AVRO_DOUBLE:
                return rd_skip(rd, field, 8);
        case AVRO_FIXED:
                return rd_skip(rd, field, avro_schema_fixed_size(s));
        case AVRO_BYTES:
                return rd_bytes(rd, field, &str, &len);
        case AVRO_STRING:
                return rd_check_str(rd, field);
        case AVRO_ENUM:
                return rd_index(rd, field,
                                avro_schema_enum_number_of_symbols(s), &v);
        case AVRO_UNION:
                if (rd_index(rd, field, (int64_t)avro_schema_union_size(s), &v))
                        return -1;
                return rd_walk(rd, avro_schema_union_branch(s, (int)v), field,
                               depth + 1, skip);
        case AVRO_RECORD:
                n = (int64_t)avro_schema_record_size(s);
                for (i = 0; i < n; i++)
                        if (rd_walk(rd,
                                    avro_schema_record_field_get_by_index(s, i),
                                    avro_schema_record_field_name(s, i),
                                    depth + 1, skip))
                                return -1;
                return 0;
        case AVRO_ARRAY:
        case AVRO_MAP:
                for (;;) {
                        if (rd_long(rd, field, &n))
                                return -1;
                        if (n == 0)
                                return 0;
                        if (n < 0) {
                                /* A negative count is followed by the
                                 * block's byte size. */
                                if (n == INT64_MIN || rd_long(rd, field, &v))
                                        return reject(
                                            rd->rej, SG_ERR_AVRO_DECODE,
                                            "field=%s bad block", field);
                                n = -n;
                        }
                        if (n > rd->end - rd->p && skip &&
                            avro_typeof(s) == AVRO_ARRAY &&
                            zero_size(avro_schema_array_items(s), depth + 1))
                                continue;
                        if (n > rd->end - rd->p)
                                return reject(rd->rej, SG_ERR_AVRO_DECODE,
                                              "field=%s block of %lld items "
                                              "exceeds the %td bytes left",
                                              field, (long long)n,
                                              rd->end - rd->p);
                        for (i = 0; i < n; i++) {
                                if (avro_typeof(s) == AVRO_MAP &&
                                    rd_check_str(rd, field))
                                        return -1;
                                if (rd_walk(rd,
                                            avro_typeof(s) == AVRO_MAP
                                                ? avro_schema_map_values(s)
                                                : avro_schema_array_items(s),
                                            field, depth + 1, skip))
                                        return -1;
                        }
                }
        case AVRO_LINK:
                return rd_walk(rd, avro_schema_link_target(s), field, depth + 1,
                               skip);
        }
        return reject(rd->rej, SG_ERR_AVRO_DECODE,
                      "field=%s unsupported schema type", field);
}

static int rd_validate(struct sg_rd *rd, avro_schema_t s, const char *field,
                       int depth)
{
        return rd_walk(rd, s, field, depth, 0);
}

/*
 * Bounded Avro binary writer: writes nothing past end, remembers that it
 * ran out instead.
 */

struct sg_wr {
        uint8_t *p;
        uint8_t *end;
        int full;
};

static void wr_raw(struct sg_wr *w, const void *s, size_t n)
{
        if (w->full || n > (size_t)(w->end - w->p)) {
                w->full = 1;
                return;
        }
        memcpy(w->p, s, n);
        w->p += n;
}

static void wr_long(struct sg_wr *w, int64_t v)
{
        uint64_t n = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
        uint8_t tmp[10];
        size_t len = 0;

        while (n & ~(uint64_t)0x7f) {
                tmp[len++] = (uint8_t)((n & 0x7f) | 0x80);
                n >>= 7;
        }
        tmp[len++] = (uint8_t)n;
        wr_raw(w, tmp, len);
}

/* size bounds the read for a buffer that lost its NUL. */
static void wr_str(struct sg_wr *w, const char *s, size_t size)
{
        size_t n = strnlen(s, size);

        wr_long(w, (int64_t)n);
        wr_raw(w, s, n);
}

static void wr_opt_str(struct sg_wr *w, const char *s, size_t size, int present)
{
        wr_long(w, present ? 1 : 0);
        if (present)
                wr_str(w, s, size);
}

/*
 * Framing
 */

static void put_frame(void *buf, uint32_t id)
{
        uint8_t *b = buf;

        b[0] = 0;
        b[1] = (uint8_t)(id >> 24);
        b[2] = (uint8_t)(id >> 16);
        b[3] = (uint8_t)(id >> 8);
        b[4] = (uint8_t)id;
}

static uint32_t get_frame_id(const uint8_t *b)
{
        return (uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 |
               (uint32_t)b[3] << 8 | (uint32_t)b[4];
}

static int is_json_space(uint8_t b)
{
        return b == ' ' || b == '\t' || b == '\r' || b == '\n';
}

/* Payloads that are JSON: '{' after optional white space. */
static int looks_like_json(const uint8_t *b, size_t len)
{
        size_t i = 0;

        while (i < len && is_json_space(b[i]))
                i++;
        return i < len && b[i] == '{';
}

/* Clamped so that byte counts always fit the int the encoders return. */
static size_t cap_size(size_t bufsize)
{
        return bufsize > INT_MAX ? INT_MAX : bufsize;
}

/*
 * Schemas and the codec's life cycle
 */

/* The signature notation of the layout tables, for one schema. */
static void type_sig(avro_schema_t s, char *out, size_t size, int depth)
{
        const char *t = "x";
        avro_schema_t inner = NULL;

        if (size < 2)
                return;
        out[0] = '\0';
        if (depth > MAX_DEPTH)
                return;
        switch (avro_typeof(s)) {
        case AVRO_STRING:
                t = "s";
                break;
        case AVRO_INT64:
                t = "l";
                break;
        case AVRO_INT32:
                t = "i";
                break;
        case AVRO_BOOLEAN:
                t = "b";
                break;
        case AVRO_DOUBLE:
                t = "d";
                break;
        case AVRO_ENUM:
                t = "e";
                break;
        case AVRO_RECORD:
                t = "r";
                break;
        case AVRO_MAP:
                t = "m";
                inner = avro_schema_map_values(s);
                break;
        case AVRO_ARRAY:
                t = "a";
                inner = avro_schema_array_items(s);
                break;
        case AVRO_UNION:
                if (avro_schema_union_size(s) == 2 &&
                    is_avro_null(avro_schema_union_branch(s, 0))) {
                        t = "?";
                        inner = avro_schema_union_branch(s, 1);
                }
                break;
        case AVRO_LINK:
                type_sig(avro_schema_link_target(s), out, size, depth + 1);
                return;
        default:
                break;
        }
        out[0] = t[0];
        out[1] = '\0';
        if (inner)
                type_sig(inner, out + 1, size - 1, depth + 1);
}

static int check_layout(avro_schema_t rec, const char *const *fields,
                        const char *file, char *errstr, size_t errstr_size)
{
        size_t n, i;
        char sig[16];

        if (!is_avro_record(rec)) {
                snprintf(errstr, errstr_size, "%s: not a record schema", file);
                return -1;
        }
        n = avro_schema_record_size(rec);
        for (i = 0; fields[i]; i++) {
                const char *colon = strchr(fields[i], ':');
                size_t nlen = (size_t)(colon - fields[i]);
                const char *name;

                if (i >= n) {
                        snprintf(errstr, errstr_size,
                                 "%s: field %zu missing, expected \"%s\"", file,
                                 i, fields[i]);
                        return -1;
                }
                name = avro_schema_record_field_name(rec, (int)i);
                type_sig(avro_schema_record_field_get_by_index(rec, (int)i),
                         sig, sizeof(sig), 0);
                if (strlen(name) != nlen || strncmp(name, fields[i], nlen) ||
                    strcmp(sig, colon + 1)) {
                        snprintf(errstr, errstr_size,
                                 "%s: field %zu is \"%s:%s\", the codec "
                                 "expects \"%s\"",
                                 file, i, name, sig, fields[i]);
                        return -1;
                }
        }
        if (i != n) {
                snprintf(errstr, errstr_size,
                         "%s: unexpected field \"%s\" (the codec knows %zu)",
                         file, avro_schema_record_field_name(rec, (int)i), i);
                return -1;
        }
        return 0;
}

/* Enum symbols are encoded by index: their order is part of the layout. */
static int check_enum(avro_schema_t e, const char *const *symbols, int n,
                      const char *file, char *errstr, size_t errstr_size)
{
        int i;

        if (avro_schema_enum_number_of_symbols(e) != n)
                goto bad;
        for (i = 0; i < n; i++)
                if (strcmp(avro_schema_enum_get(e, i), symbols[i]))
                        goto bad;
        return 0;
bad:
        snprintf(errstr, errstr_size,
                 "%s: enum \"%s\" symbols differ from "
                 "the codec's",
                 file, avro_schema_name(e));
        return -1;
}

static int check_schemas(sg_codec_t *c, char *errstr, size_t errstr_size)
{
        const char *actions[SG_ACT__CNT];
        avro_schema_t budgets, top;
        int id, a;

        for (id = 1; id <= SG_SCHEMA_MAX; id++)
                if (check_layout(c->s[id].schema, layouts[id], schema_files[id],
                                 errstr, errstr_size))
                        return -1;
        if (check_enum(avro_schema_record_field_get(
                           c->s[SG_SCHEMA_NORMALIZED].schema, "type"),
                       event_type_symbols, 3,
                       schema_files[SG_SCHEMA_NORMALIZED], errstr, errstr_size))
                return -1;
        for (a = 0; a < SG_ACT__CNT; a++)
                actions[a] = sg_action_name((sg_action_t)a);
        if (check_enum(avro_schema_record_field_get(
                           c->s[SG_SCHEMA_DECISION].schema, "action"),
                       actions, SG_ACT__CNT, schema_files[SG_SCHEMA_DECISION],
                       errstr, errstr_size))
                return -1;
        budgets = avro_schema_record_field_get(c->s[SG_SCHEMA_DECISION].schema,
                                               "budgets");
        budgets = avro_schema_array_items(avro_schema_union_branch(budgets, 1));
        if (is_avro_link(budgets))
                budgets = avro_schema_link_target(budgets);
        if (check_layout(budgets, layout_budget,
                         schema_files[SG_SCHEMA_DECISION], errstr, errstr_size))
                return -1;
        top = avro_schema_array_items(avro_schema_record_field_get(
            c->s[SG_SCHEMA_SNAPSHOT].schema, "top_sources"));
        if (is_avro_link(top))
                top = avro_schema_link_target(top);
        return check_layout(top, layout_source_clicks,
                            schema_files[SG_SCHEMA_SNAPSHOT], errstr,
                            errstr_size);
}

/*
 * Parses the schema file at path; label names it in errstr. Returns 0, -1,
 * or -2 when the file does not exist.
 */
static int load_schema_path(const char *path, const char *label,
                            avro_schema_t *out, char **text_out,
                            char *errstr, size_t errstr_size)
{
        FILE *fp;
        char *text = NULL;
        size_t n;
        int rc = -1, e;

        fp = fopen(path, "rb");
        if (!fp) {
                e = errno;
                snprintf(errstr, errstr_size, "%s: %s", label, strerror(e));
                return e == ENOENT ? -2 : -1;
        }
        text = malloc(MAX_SCHEMA_FILE);
        if (!text) {
                snprintf(errstr, errstr_size, "%s: out of memory", label);
                goto out;
        }
        n = fread(text, 1, MAX_SCHEMA_FILE, fp);
        if (ferror(fp) || n == MAX_SCHEMA_FILE) {
                snprintf(errstr, errstr_size, "%s: %s", label,
                         ferror(fp) ? "read error" : "too large");
                goto out;
        }
        if (avro_schema_from_json_length(text, n, out)) {
                snprintf(errstr, errstr_size, "%s: %s", label, avro_strerror());
                goto out;
        }
        if (text_out) {
                *text_out = strndup(text, n);
                if (!*text_out) {
                        snprintf(errstr, errstr_size, "%s: out of memory",
                                 label);
                        avro_schema_decref(*out);
                        *out = NULL;
                        goto out;
                }
        }
        rc = 0;
out:
        free(text);
        fclose(fp);
        return rc;
}

static int load_schema(const char *dir, const char *file, avro_schema_t *out,
                       char **text, char *errstr, size_t errstr_size)
{
        char path[4096];

        snprintf(path, sizeof(path), "%s/%s", dir, file);
        return load_schema_path(path, path, out, text, errstr, errstr_size)
                   ? -1
                   : 0;
}

/*
 * The Decision schema before dry_run was added: decision.avsc without its
 * last field. dry_run was appended with a default, so a record of the
 * older writer is the new encoding without its last byte; Avro resolution
 * needs the writer's schema to read it (the bytes do not say), and id 6
 * names both. The decoder tells them apart by length: a record is exactly
 * as long as one of the two schemas says, never as both.
 */
static int load_decision_v1(sg_codec_t *c, char *errstr, size_t errstr_size)
{
        const char *file = schema_files[SG_SCHEMA_DECISION];
        json_t *root = json_loads(c->s[SG_SCHEMA_DECISION].text, 0, NULL);
        json_t *fields = json_object_get(root, "fields");
        char *text = NULL;
        int rc = -1;

        /* check_schemas() proved that the last field is dry_run. */
        if (!json_is_array(fields) || json_array_size(fields) < 2 ||
            json_array_remove(fields, json_array_size(fields) - 1) ||
            !(text = json_dumps(root, JSON_COMPACT))) {
                snprintf(errstr, errstr_size, "%s: cannot derive the schema "
                         "before dry_run", file);
                goto out;
        }
        if (avro_schema_from_json_length(text, strlen(text),
                                         &c->dec_v1.schema) ||
            !(c->dec_v1.iface =
                  avro_generic_class_from_schema(c->dec_v1.schema)) ||
            avro_generic_value_new(c->dec_v1.iface, &c->dec_v1.value)) {
                snprintf(errstr, errstr_size, "%s before dry_run: %s", file,
                         avro_strerror());
                goto out;
        }
        c->dec_v1.has_value = 1;
        rc = 0;
out:
        free(text);
        json_decref(root);
        return rc;
}

/*
 * Writer-schema registry and schema resolution (Avro specification,
 * "Schema Resolution"), for input events. A writer id's plan says, for each
 * writer field in wire order, what becomes of its bytes: copied into a
 * reader field (int promoted to long, union branches resolved), or skipped.
 * Reader fields the writer lacks keep their default: absent for the
 * optional ones, while a required one (no default) makes the writer schema
 * unreadable. The plan is built once per id, so reading through it
 * allocates nothing.
 */

/* The reader fields of the input schemas: their index in the layouts. */
enum {
        D_EVENT_ID,
        D_EVENT_TIME,
        D_CHANNEL,
        D_CAMPAIGN_ID,
        D_AD_ID,
        D_DEVICE_ID,
        D_IP,
        D_USER_AGENT,
        D_COUNTRY,
        D_MONEY, /* cost_micros, or revenue_micros of a conversion */
        D_REF,   /* impression_id of a click, click_id of a conversion */
        D__CNT
};

/* What a reader field is, from its layout signature. */
enum { R_STR, R_OPT_STR, R_LONG };

/* What one writer value becomes. */
enum { A_SKIP, A_NULL, A_STR, A_INT, A_LONG, A_BAD };

struct rs_step {
        const char *name;     /* the writer's field name (in plan->writer) */
        avro_schema_t schema; /* the writer's field type */
        int dst;              /* D_*, or -1: skipped */
        int rkind;            /* R_* of dst */
        int nbranch;          /* > 0: the writer type is a union */
        uint8_t act;          /* A_* of a non-union */
        uint8_t branch[REG_MAX_BRANCHES]; /* A_* of each union branch */
};

struct rs_plan {
        sg_event_type_t type;
        avro_schema_t writer; /* a reference: step names point into it */
        int nstep;
        struct rs_step step[];
};

static const char *const rkind_names[] = {"string", "optional string", "long"};

static avro_schema_t deref(avro_schema_t s)
{
        int depth = 0;

        while (is_avro_link(s) && depth++ < MAX_DEPTH)
                s = avro_schema_link_target(s);
        return s;
}

static const char *type_name(avro_schema_t s)
{
        switch (avro_typeof(deref(s))) {
        case AVRO_NULL:
                return "null";
        case AVRO_BOOLEAN:
                return "boolean";
        case AVRO_INT32:
                return "int";
        case AVRO_INT64:
                return "long";
        case AVRO_FLOAT:
                return "float";
        case AVRO_DOUBLE:
                return "double";
        case AVRO_BYTES:
                return "bytes";
        case AVRO_STRING:
                return "string";
        case AVRO_FIXED:
                return "fixed";
        case AVRO_ENUM:
                return "enum";
        case AVRO_ARRAY:
                return "array";
        case AVRO_MAP:
                return "map";
        case AVRO_UNION:
                return "union";
        case AVRO_RECORD:
                return "record";
        default:
                return "unknown type";
        }
}

/* The reader field of type called name (-1 if none), and its kind. */
static int reader_field(sg_event_type_t type, const char *name, size_t nlen,
                        int *kind)
{
        const char *const *f = layouts[type];
        const char *colon;
        int i;

        for (i = 0; f[i]; i++) {
                colon = strchr(f[i], ':');
                if ((size_t)(colon - f[i]) != nlen || strncmp(f[i], name, nlen))
                        continue;
                *kind = !strcmp(colon + 1, "l")    ? R_LONG
                        : !strcmp(colon + 1, "?s") ? R_OPT_STR
                                                   : R_STR;
                return i;
        }
        return -1;
}

/* Promotions the spec allows into our reader types: string <-> bytes,
 * int -> long; null only where the reader's default is null. */
static int resolve_one(avro_schema_t t, int rkind)
{
        switch (avro_typeof(deref(t))) {
        case AVRO_NULL:
                return A_NULL;
        case AVRO_STRING:
        case AVRO_BYTES:
                return rkind != R_LONG ? A_STR : A_BAD;
        case AVRO_INT32:
                return rkind == R_LONG ? A_INT : A_BAD;
        case AVRO_INT64:
                return rkind == R_LONG ? A_LONG : A_BAD;
        default:
                return A_BAD;
        }
}

static int readable(int act, int rkind)
{
        return act != A_BAD && (act != A_NULL || rkind == R_OPT_STR);
}

static int plan_field(struct rs_step *st, const char *label, char *err,
                      size_t size)
{
        avro_schema_t t = deref(st->schema);
        size_t n, b;
        int ok = 0;

        if (!is_avro_union(t)) {
                st->act = (uint8_t)resolve_one(t, st->rkind);
                if (readable(st->act, st->rkind))
                        return 0;
                snprintf(err, size, "%s field %s: %s cannot be read as %s",
                         label, st->name, type_name(t), rkind_names[st->rkind]);
                return -1;
        }
        n = avro_schema_union_size(t);
        if (n > REG_MAX_BRANCHES) {
                snprintf(err, size,
                         "%s field %s: union of %zu branches, max %d", label,
                         st->name, n, REG_MAX_BRANCHES);
                return -1;
        }
        st->nbranch = (int)n;
        for (b = 0; b < n; b++) {
                st->branch[b] = (uint8_t)resolve_one(
                    avro_schema_union_branch(t, (int)b), st->rkind);
                ok |= readable(st->branch[b], st->rkind);
        }
        if (ok)
                return 0;
        snprintf(err, size,
                 "%s field %s: no branch of the union can be read as %s", label,
                 st->name, rkind_names[st->rkind]);
        return -1;
}

static void plan_free(struct rs_plan *pl)
{
        if (!pl)
                return;
        avro_schema_decref(pl->writer);
        free(pl);
}

/* The plan that reads writer w into the contract reader schema its record
 * name picks, or NULL and why in err. */
static struct rs_plan *plan_new(sg_codec_t *c, avro_schema_t w,
                                const char *label, char *err, size_t size)
{
        sg_event_type_t type = SG_EV_NONE;
        const char *name, *dot;
        int mapped[D__CNT] = {0};
        struct rs_plan *pl;
        size_t n, i;
        int t, kind;

        w = deref(w);
        if (!is_avro_record(w)) {
                snprintf(err, size, "%s is a %s, not a record", label,
                         type_name(w));
                return NULL;
        }
        /* Records resolve by unqualified name: any namespace will do. */
        name = avro_schema_name(w);
        dot = strrchr(name, '.');
        name = dot ? dot + 1 : name;
        for (t = SG_EV_IMPRESSION; t <= SG_EV_CONVERSION; t++)
                if (!strcmp(name, avro_schema_name(c->s[t].schema)))
                        type = (sg_event_type_t)t;
        if (type == SG_EV_NONE) {
                snprintf(err, size,
                         "%s holds record \"%.64s\", not Impression, Click or "
                         "Conversion",
                         label, name);
                return NULL;
        }
        n = avro_schema_record_size(w);
        pl = calloc(1, sizeof(*pl) + n * sizeof(pl->step[0]));
        if (!pl) {
                snprintf(err, size, "%s: out of memory", label);
                return NULL;
        }
        pl->type = type;
        pl->writer = avro_schema_incref(w);
        pl->nstep = (int)n;
        for (i = 0; i < n; i++) {
                struct rs_step *st = &pl->step[i];

                st->name = avro_schema_record_field_name(w, (int)i);
                st->schema = avro_schema_record_field_get_by_index(w, (int)i);
                st->dst = reader_field(type, st->name, strlen(st->name), &kind);
                if (st->dst < 0) {
                        st->act = A_SKIP;
                        continue;
                }
                st->rkind = kind;
                mapped[st->dst] = 1;
                if (plan_field(st, label, err, size))
                        goto err;
        }
        for (i = 0; layouts[type][i]; i++) {
                const char *f = layouts[type][i];
                const char *colon = strchr(f, ':');

                if (mapped[i] ||
                    reader_field(type, f, (size_t)(colon - f), &kind) < 0 ||
                    kind == R_OPT_STR)
                        continue;
                snprintf(err, size,
                         "%s lacks field %.*s, which %s requires (no default)",
                         label, (int)(colon - f), f,
                         avro_schema_name(c->s[type].schema));
                goto err;
        }
        return pl;
err:
        plan_free(pl);
        return NULL;
}

static char *dst_str(sg_event_t *ev, int dst, size_t *size)
{
#define DST(x)                                                                 \
        *size = sizeof(ev->x);                                                 \
        return ev->x
        switch (dst) {
        case D_EVENT_ID:
                DST(event_id);
        case D_CHANNEL:
                DST(channel);
        case D_CAMPAIGN_ID:
                DST(campaign_id);
        case D_AD_ID:
                DST(ad_id);
        case D_DEVICE_ID:
                DST(device_id);
        case D_IP:
                DST(ip);
        case D_USER_AGENT:
                DST(user_agent);
        case D_COUNTRY:
                DST(country);
        default:
                DST(ref_id);
        }
#undef DST
}

static void set_has(sg_event_t *ev, int dst)
{
        switch (dst) {
        case D_AD_ID:
                ev->has_ad_id = 1;
                break;
        case D_DEVICE_ID:
                ev->has_device_id = 1;
                break;
        case D_IP:
                ev->has_ip = 1;
                break;
        case D_USER_AGENT:
                ev->has_user_agent = 1;
                break;
        case D_COUNTRY:
                ev->has_country = 1;
                break;
        case D_REF:
                ev->has_ref_id = 1;
                break;
        default:
                break;
        }
}

static int64_t *dst_long(sg_event_t *ev, int dst)
{
        if (dst == D_EVENT_TIME)
                return &ev->event_time;
        return ev->type == SG_EV_CONVERSION ? &ev->revenue_micros
                                            : &ev->cost_micros;
}

/* Reads one record of the plan's writer schema into ev, resolved. */
static int rd_resolved(struct sg_rd *rd, const struct rs_plan *pl,
                       sg_event_t *ev)
{
        const struct rs_step *st;
        int64_t b;
        int32_t i32 = 0;
        size_t size;
        char *s;
        int i, act;

        ev->type = pl->type;
        for (i = 0; i < pl->nstep; i++) {
                st = &pl->step[i];
                if (st->dst < 0) {
                        if (rd_walk(rd, st->schema, st->name, 1, 1))
                                return -1;
                        continue;
                }
                act = st->act;
                if (st->nbranch) {
                        if (rd_index(rd, st->name, st->nbranch, &b))
                                return -1;
                        act = st->branch[b];
                        if (act == A_BAD)
                                return reject(
                                    rd->rej, SG_ERR_AVRO_DECODE,
                                    "field=%s union branch %lld (%s) cannot "
                                    "be read as %s",
                                    st->name, (long long)b,
                                    type_name(avro_schema_union_branch(
                                        deref(st->schema), (int)b)),
                                    rkind_names[st->rkind]);
                }
                switch (act) {
                case A_NULL:
                        if (st->rkind != R_OPT_STR)
                                return reject(rd->rej, SG_ERR_AVRO_DECODE,
                                              "field=%s is null, the reader "
                                              "requires a %s",
                                              st->name, rkind_names[st->rkind]);
                        break;
                case A_STR:
                        s = dst_str(ev, st->dst, &size);
                        if (rd_str(rd, st->name, s, size))
                                return -1;
                        set_has(ev, st->dst);
                        break;
                case A_INT:
                        if (rd_int(rd, st->name, &i32))
                                return -1;
                        *dst_long(ev, st->dst) = i32;
                        break;
                default:
                        if (rd_long(rd, st->name, dst_long(ev, st->dst)))
                                return -1;
                        break;
                }
        }
        return rd_end(rd);
}

static int64_t mono_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void reg_clear(struct reg_entry *e)
{
        plan_free(e->plan);
        memset(e, 0, sizeof(*e));
}

/* Reads <reg_dir>/<id>.avsc into e: a plan, or a negative entry that
 * says why and is believed for REG_NEG_TTL_MS. */
static void reg_load(sg_codec_t *c, uint32_t id, struct reg_entry *e)
{
        char path[sizeof(c->reg_dir) + 32], label[32], err[160], q[200];
        avro_schema_t w = NULL;
        int rc;

        snprintf(label, sizeof(label), "registry/%u.avsc", id);
        snprintf(path, sizeof(path), "%s/%u.avsc", c->reg_dir, id);
        rc = load_schema_path(path, label, &w, NULL, err, sizeof(err));
        if (rc == -2) {
                snprintf(e->detail, sizeof(e->detail),
                         "schema id %u is not an input event and has no %s", id,
                         label);
                sg_debug("event=schema_unknown id=%u path=%s", id,
                         sg_log_quote(q, sizeof(q), path));
        } else if (rc == 0 &&
                   (e->plan = plan_new(c, w, label, err, sizeof(err)))) {
                sg_info("event=schema_loaded id=%u path=%s type=%s "
                        "writer_fields=%d",
                        id, sg_log_quote(q, sizeof(q), path),
                        sg_event_type_name(e->plan->type), e->plan->nstep);
        } else {
                snprintf(e->detail, sizeof(e->detail), "schema id %u: %s", id,
                         err);
                sg_warn("event=schema_rejected id=%u detail=%s", id,
                        sg_log_quote(q, sizeof(q), err));
        }
        if (w)
                avro_schema_decref(w);
        if (!e->plan)
                e->expires_ms = mono_ms() + REG_NEG_TTL_MS;
}

/*
 * Asks the schema registry for writer id into e: a plan, or a negative
 * entry (the registry does not know the id, or its schema does not
 * resolve against the contract). -1 when the registry could not be asked:
 * e is left empty and nothing is cached, so the next record asks again.
 */
static int reg_fetch(sg_codec_t *c, uint32_t id, struct reg_entry *e)
{
        char label[48], err[160], q[200];
        avro_schema_t w = NULL;
        char *text = NULL;
        int rc;

        snprintf(label, sizeof(label), "registry id %u", id);
        rc = c->fetch(c->fetch_opaque, id, &text, err, sizeof(err));
        if (rc < 0) {
                snprintf(e->detail, sizeof(e->detail), "schema id %u: %s", id,
                         err);
                return -1;
        }
        if (rc > 0) {
                snprintf(e->detail, sizeof(e->detail),
                         "schema id %u is not in the schema registry: %.120s", id,
                         err);
                sg_warn("event=schema_unknown id=%u detail=%s", id,
                        sg_log_quote(q, sizeof(q), err));
        } else if (avro_schema_from_json_length(text, strlen(text), &w)) {
                snprintf(e->detail, sizeof(e->detail),
                         "schema id %u: %s: %s", id, label, avro_strerror());
                sg_warn("event=schema_rejected id=%u detail=%s", id,
                        sg_log_quote(q, sizeof(q), e->detail));
        } else if ((e->plan = plan_new(c, w, label, err, sizeof(err)))) {
                sg_info("event=schema_loaded id=%u source=registry type=%s "
                        "writer_fields=%d",
                        id, sg_event_type_name(e->plan->type), e->plan->nstep);
        } else {
                snprintf(e->detail, sizeof(e->detail), "schema id %u: %s", id,
                         err);
                sg_warn("event=schema_rejected id=%u detail=%s", id,
                        sg_log_quote(q, sizeof(q), err));
        }
        free(text);
        if (w)
                avro_schema_decref(w);
        if (!e->plan)
                e->expires_ms = mono_ms() + REG_NEG_TTL_MS;
        return 0;
}

/*
 * The cache entry of writer id, loaded at first sight. A full cache evicts
 * its least recently used id. Positive entries never expire: a Confluent
 * id never changes its schema.
 */
static struct reg_entry *reg_get(sg_codec_t *c, uint32_t id)
{
        struct reg_entry *e;
        int i, victim = 0;

        for (i = 0; i < c->reg_cnt; i++)
                if (c->reg_ids[i] == id)
                        break;
        if (i < c->reg_cnt) {
                e = &c->reg[i];
                if (e->plan || mono_ms() < e->expires_ms) {
                        e->last_use = ++c->reg_tick;
                        return e;
                }
                reg_clear(e);
        } else if (c->reg_cnt < REG_MAX_IDS) {
                i = c->reg_cnt++;
        } else {
                for (i = 1; i < REG_MAX_IDS; i++)
                        if (c->reg[i].last_use < c->reg[victim].last_use)
                                victim = i;
                i = victim;
                reg_clear(&c->reg[i]);
        }
        c->reg_ids[i] = id;
        e = &c->reg[i];
        if (c->fetch) {
                if (reg_fetch(c, id, e)) {
                        /* Not cached: the slot is handed back (it is the
                         * last one, or an evicted one that stays free). */
                        snprintf(c->unavail, sizeof(c->unavail), "%s",
                                 e->detail);
                        memset(e, 0, sizeof(*e));
                        c->reg_ids[i] = 0;
                        if (i == c->reg_cnt - 1)
                                c->reg_cnt--;
                        return NULL;
                }
        } else {
                reg_load(c, id, e);
        }
        e->last_use = ++c->reg_tick;
        return e;
}

sg_codec_t *sg_codec_new(const char *schema_dir, char *errstr,
                         size_t errstr_size)
{
        sg_codec_t *c;
        int id;

        c = calloc(1, sizeof(*c));
        if (!c) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        if ((size_t)snprintf(c->reg_dir, sizeof(c->reg_dir), "%s/registry",
                             schema_dir) >= sizeof(c->reg_dir)) {
                snprintf(errstr, errstr_size, "%s: path too long", schema_dir);
                goto err;
        }
        for (id = 1; id <= SG_SCHEMA_MAX; id++) {
                if (load_schema(schema_dir, schema_files[id], &c->s[id].schema,
                                &c->s[id].text, errstr, errstr_size))
                        goto err;
                c->s[id].wire_id = (uint32_t)id;
        }
        if (check_schemas(c, errstr, errstr_size))
                goto err;
        for (id = 1; id <= SG_SCHEMA_MAX; id++) {
                c->s[id].iface =
                    avro_generic_class_from_schema(c->s[id].schema);
                if (!c->s[id].iface ||
                    avro_generic_value_new(c->s[id].iface, &c->s[id].value)) {
                        snprintf(errstr, errstr_size, "%s: %s",
                                 schema_files[id], avro_strerror());
                        goto err;
                }
                c->s[id].has_value = 1;
        }
        if (load_decision_v1(c, errstr, errstr_size))
                goto err;
        c->reader = avro_reader_memory(NULL, 0);
        c->writer = avro_writer_memory(NULL, 0);
        if (!c->reader || !c->writer) {
                snprintf(errstr, errstr_size, "avro: %s", avro_strerror());
                goto err;
        }
        return c;
err:
        sg_codec_destroy(c);
        return NULL;
}

void sg_codec_destroy(sg_codec_t *c)
{
        int id;

        if (!c)
                return;
        for (id = 1; id <= SG_SCHEMA_MAX; id++)
                codec_schema_clear(&c->s[id]);
        codec_schema_clear(&c->dec_v1);
        for (id = 0; id < c->reg_cnt; id++)
                reg_clear(&c->reg[id]);
        if (c->reader)
                avro_reader_free(c->reader);
        if (c->writer)
                avro_writer_free(c->writer);
        free(c);
}

const char *sg_codec_error(const sg_codec_t *c)
{
        return c->err;
}

void sg_codec_set_registry(sg_codec_t *c, sg_codec_fetch_fn *fetch,
                           void *opaque)
{
        for (int i = 0; i < c->reg_cnt; i++)
                reg_clear(&c->reg[i]);
        c->reg_cnt = 0;
        c->fetch = fetch;
        c->fetch_opaque = opaque;
}

int sg_codec_set_wire_id(sg_codec_t *c, int schema, uint32_t id)
{
        if (schema < 1 || schema > SG_SCHEMA_MAX)
                return fail(c, "no contract schema %d", schema);
        c->s[schema].wire_id = id;
        return 0;
}

const char *sg_codec_schema_text(const sg_codec_t *c, int schema)
{
        return schema >= 1 && schema <= SG_SCHEMA_MAX ? c->s[schema].text
                                                       : NULL;
}

int sg_format_parse(const char *s, sg_format_t *out)
{
        if (s && !strcmp(s, "avro")) {
                *out = SG_FMT_AVRO;
                return 0;
        }
        if (s && !strcmp(s, "json")) {
                *out = SG_FMT_JSON;
                return 0;
        }
        return -1;
}

/*
 * avro-c generic values: field access by name
 */

static int field(sg_codec_t *c, avro_value_t *rec, const char *name,
                 avro_value_t *out)
{
        if (avro_value_get_by_name(rec, name, out, NULL))
                return fail(c, "field=%s: %s", name, avro_strerror());
        return 0;
}

static int set_str(sg_codec_t *c, avro_value_t *rec, const char *name,
                   const char *s, size_t size)
{
        avro_value_t f;

        if (field(c, rec, name, &f))
                return -1;
        if (strnlen(s, size) == size)
                return fail(c, "field=%s is not NUL-terminated", name);
        if (avro_value_set_string(&f, s))
                return fail(c, "field=%s: %s", name, avro_strerror());
        return 0;
}

static int set_opt_str(sg_codec_t *c, avro_value_t *rec, const char *name,
                       const char *s, size_t size, int present)
{
        avro_value_t f, branch;

        if (field(c, rec, name, &f))
                return -1;
        if (present && strnlen(s, size) == size)
                return fail(c, "field=%s is not NUL-terminated", name);
        if (avro_value_set_branch(&f, present ? 1 : 0, &branch) ||
            (present ? avro_value_set_string(&branch, s)
                     : avro_value_set_null(&branch)))
                return fail(c, "field=%s: %s", name, avro_strerror());
        return 0;
}

static int set_long(sg_codec_t *c, avro_value_t *rec, const char *name,
                    int64_t v)
{
        avro_value_t f;

        if (field(c, rec, name, &f))
                return -1;
        if (avro_value_set_long(&f, v))
                return fail(c, "field=%s: %s", name, avro_strerror());
        return 0;
}

static int set_opt_double(sg_codec_t *c, avro_value_t *rec, const char *name,
                          int present, double v)
{
        avro_value_t f, branch;

        if (field(c, rec, name, &f))
                return -1;
        if (avro_value_set_branch(&f, present ? 1 : 0, &branch) ||
            (present ? avro_value_set_double(&branch, v)
                     : avro_value_set_null(&branch)))
                return fail(c, "field=%s: %s", name, avro_strerror());
        return 0;
}

/* A string, or a ["null","string"] whose null reads as "" and *has = 0. */
static int get_str(sg_codec_t *c, avro_value_t *rec, const char *name,
                   char *buf, size_t size, int *has)
{
        struct sg_rej r = codec_rej(c);
        avro_value_t f, branch;
        const char *s;
        size_t n;

        if (field(c, rec, name, &f))
                return -1;
        if (avro_value_get_type(&f) == AVRO_UNION) {
                if (avro_value_get_current_branch(&f, &branch))
                        return fail(c, "field=%s: %s", name, avro_strerror());
                f = branch;
        }
        if (has)
                *has = avro_value_get_type(&f) != AVRO_NULL;
        if (avro_value_get_type(&f) == AVRO_NULL) {
                buf[0] = '\0';
                return 0;
        }
        if (avro_value_get_string(&f, &s, &n))
                return fail(c, "field=%s: %s", name, avro_strerror());
        /* avro-c counts the NUL it appends. */
        return copy_str(&r, name, s, n ? n - 1 : 0, buf, size);
}

static int get_long(sg_codec_t *c, avro_value_t *rec, const char *name,
                    int64_t *out)
{
        avro_value_t f;

        if (field(c, rec, name, &f))
                return -1;
        if (avro_value_get_long(&f, out))
                return fail(c, "field=%s: %s", name, avro_strerror());
        return 0;
}

/* Writes the codec's value of schema id, framed, into buf. */
static int write_value(sg_codec_t *c, int id, void *buf, size_t bufsize)
{
        bufsize = cap_size(bufsize);
        if (bufsize < FRAME_LEN)
                return fail(c, "buffer of %zu bytes too small", bufsize);
        put_frame(buf, c->s[id].wire_id);
        avro_writer_memory_set_dest(c->writer, (char *)buf + FRAME_LEN,
                                    (int64_t)(bufsize - FRAME_LEN));
        if (avro_value_write(c->writer, &c->s[id].value))
                return fail(c,
                            "schema %d: buffer of %zu bytes too small or "
                            "value not encodable: %s",
                            id, bufsize, avro_strerror());
        return FRAME_LEN + (int)avro_writer_tell(c->writer);
}

/*
 * Reads a framed payload of schema id, written with schema, into value,
 * after the validator proved it well-formed and exactly as long as the
 * payload.
 */
static int read_as(sg_codec_t *c, int id, avro_schema_t schema,
                   avro_value_t *value, const void *buf, size_t len)
{
        struct sg_rej r = codec_rej(c);
        const uint8_t *b = buf;
        struct sg_rd rd;
        uint32_t got;

        if (len < FRAME_LEN || b[0] != 0)
                return fail(c, "not Confluent-framed Avro");
        got = get_frame_id(b);
        if (got != (uint32_t)id && got != c->s[id].wire_id)
                return fail(c, "schema id %u, expected %d", got, id);
        rd.p = b + FRAME_LEN;
        rd.end = b + len;
        rd.rej = &r;
        if (rd_validate(&rd, schema, "record", 0) || rd_end(&rd))
                return -1;
        avro_reader_memory_set_source(c->reader, (const char *)b + FRAME_LEN,
                                      (int64_t)(len - FRAME_LEN));
        if (avro_value_read(c->reader, value))
                return fail(c, "schema %d: %s", id, avro_strerror());
        return 0;
}

/* A framed payload of schema id, read with its contract schema. */
static int read_value(sg_codec_t *c, int id, const void *buf, size_t len)
{
        return read_as(c, id, c->s[id].schema, &c->s[id].value, buf, len);
}

/*
 * JSON helpers. Jansson allocates; JSON is the slow, human-facing format.
 */

/* JSON null is the same as an absent member. */
static json_t *js_get(json_t *o, const char *name)
{
        json_t *v = json_object_get(o, name);

        return json_is_null(v) ? NULL : v;
}

static int js_str(struct sg_rej *r, json_t *o, const char *name, char *buf,
                  size_t size, int required, int *has)
{
        json_t *v = js_get(o, name);

        buf[0] = '\0';
        if (has)
                *has = v != NULL;
        if (!v)
                return required
                           ? reject(r, SG_ERR_MISSING_FIELD, "field=%s", name)
                           : 0;
        if (!json_is_string(v))
                return reject(r, SG_ERR_BAD_VALUE, "field=%s expected a string",
                              name);
        return copy_str(r, name, json_string_value(v), json_string_length(v),
                        buf, size);
}

static int js_long(struct sg_rej *r, json_t *o, const char *name, int64_t *out)
{
        json_t *v = js_get(o, name);

        if (!v)
                return reject(r, SG_ERR_MISSING_FIELD, "field=%s", name);
        if (!json_is_integer(v))
                return reject(r, SG_ERR_BAD_VALUE,
                              "field=%s expected an integer", name);
        *out = (int64_t)json_integer_value(v);
        return 0;
}

static json_t *js_parse(struct sg_rej *r, const void *buf, size_t len)
{
        json_error_t jerr;
        json_t *root;

        /* ALLOW_NUL so that "\u0000" reaches copy_str and is reported as
         * the bad value of a named field. */
        root = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
                          &jerr);
        if (!root) {
                reject(r, SG_ERR_JSON_PARSE,
                       "%s at line %d column %d (position %d)", jerr.text,
                       jerr.line, jerr.column, jerr.position);
                return NULL;
        }
        if (!json_is_object(root)) {
                json_decref(root);
                reject(r, SG_ERR_JSON_PARSE, "not a JSON object");
                return NULL;
        }
        return root;
}

/* Sets o[name] = v, stealing v; a NULL v (failed constructor) is counted. */
static int js_set(json_t *o, const char *name, json_t *v)
{
        return v ? json_object_set_new(o, name, v) : -1;
}

static json_t *js_string(const char *s, size_t size)
{
        return json_stringn(s, strnlen(s, size));
}

static json_t *js_opt_string(const char *s, size_t size)
{
        return s[0] ? js_string(s, size) : json_null();
}

static json_t *js_opt_real(int present, double v)
{
        return present ? json_real(v) : json_null();
}

/* Serializes and frees o. */
static int js_dump(sg_codec_t *c, json_t *o, int build_rc, void *buf,
                   size_t bufsize)
{
        size_t n;

        bufsize = cap_size(bufsize);
        if (!o || build_rc) {
                json_decref(o);
                return fail(c, "value not encodable as JSON (out of memory, "
                               "invalid UTF-8 or a non-finite number)");
        }
        n = json_dumpb(o, buf, bufsize, JSON_COMPACT | JSON_REAL_PRECISION(15));
        json_decref(o);
        if (n == 0)
                return fail(c, "JSON encoding failed");
        if (n > bufsize)
                return fail(c, "buffer of %zu bytes too small, JSON needs %zu",
                            bufsize, n);
        return (int)n;
}

/*
 * Input events
 */

#define FLD(x) #x, ev->x, sizeof(ev->x)

static int rd_event_common(struct sg_rd *rd, sg_event_t *ev)
{
        int has;

        if (rd_str(rd, FLD(event_id)) ||
            rd_long(rd, "event_time", &ev->event_time) ||
            rd_str(rd, FLD(channel)) || rd_str(rd, FLD(campaign_id)))
                return -1;
        if (rd_opt_str(rd, FLD(ad_id), &has))
                return -1;
        ev->has_ad_id = has;
        if (rd_opt_str(rd, FLD(device_id), &has))
                return -1;
        ev->has_device_id = has;
        if (rd_opt_str(rd, FLD(ip), &has))
                return -1;
        ev->has_ip = has;
        if (rd_opt_str(rd, FLD(user_agent), &has))
                return -1;
        ev->has_user_agent = has;
        if (rd_opt_str(rd, FLD(country), &has))
                return -1;
        ev->has_country = has;
        return 0;
}

static int avro_decode_input(struct sg_rd *rd, sg_event_type_t type,
                             sg_event_t *ev)
{
        const char *ref = type == SG_EV_CLICK ? "impression_id" : "click_id";
        int has;

        ev->type = type;
        if (rd_event_common(rd, ev))
                return -1;
        if (type == SG_EV_CONVERSION) {
                if (rd_long(rd, "revenue_micros", &ev->revenue_micros))
                        return -1;
        } else if (rd_long(rd, "cost_micros", &ev->cost_micros)) {
                return -1;
        }
        if (type != SG_EV_IMPRESSION) {
                if (rd_opt_str(rd, ref, ev->ref_id, sizeof(ev->ref_id), &has))
                        return -1;
                ev->has_ref_id = has;
        }
        return rd_end(rd);
}

static int json_decode_input(struct sg_rej *r, const void *buf, size_t len,
                             sg_event_type_t default_type, sg_event_t *ev)
{
        char quoted[64];
        json_t *root, *t;
        int has, rc = -1;

        root = js_parse(r, buf, len);
        if (!root)
                return -1;
        t = js_get(root, "type");
        if (t && !json_is_string(t)) {
                reject(r, SG_ERR_BAD_VALUE, "field=type expected a string");
                goto out;
        }
        ev->type = t ? sg_event_type_parse(json_string_value(t)) : default_type;
        if (ev->type < SG_EV_IMPRESSION || ev->type > SG_EV_CONVERSION) {
                if (t)
                        reject(r, SG_ERR_UNKNOWN_TYPE, "type=%s",
                               sg_log_quote(quoted, sizeof(quoted),
                                            json_string_value(t)));
                else
                        reject(r, SG_ERR_UNKNOWN_TYPE,
                               "no type field and no default type");
                goto out;
        }
        if (js_str(r, root, FLD(event_id), 1, NULL) ||
            js_long(r, root, "event_time", &ev->event_time) ||
            js_str(r, root, FLD(channel), 1, NULL) ||
            js_str(r, root, FLD(campaign_id), 1, NULL))
                goto out;
        if (js_str(r, root, FLD(ad_id), 0, &has))
                goto out;
        ev->has_ad_id = has;
        if (js_str(r, root, FLD(device_id), 0, &has))
                goto out;
        ev->has_device_id = has;
        if (js_str(r, root, FLD(ip), 0, &has))
                goto out;
        ev->has_ip = has;
        if (js_str(r, root, FLD(user_agent), 0, &has))
                goto out;
        ev->has_user_agent = has;
        if (js_str(r, root, FLD(country), 0, &has))
                goto out;
        ev->has_country = has;
        if (ev->type == SG_EV_CONVERSION) {
                if (js_long(r, root, "revenue_micros", &ev->revenue_micros))
                        goto out;
        } else if (js_long(r, root, "cost_micros", &ev->cost_micros)) {
                goto out;
        }
        if (ev->type != SG_EV_IMPRESSION) {
                if (js_str(r, root,
                           ev->type == SG_EV_CLICK ? "impression_id"
                                                   : "click_id",
                           ev->ref_id, sizeof(ev->ref_id), 0, &has))
                        goto out;
                ev->has_ref_id = has;
        }
        rc = 0;
out:
        json_decref(root);
        return rc;
}

int sg_codec_decode_input(sg_codec_t *c, const void *buf, size_t len,
                          sg_event_type_t default_type, sg_event_t *ev,
                          const char **reason, char *detail, size_t detail_size)
{
        struct sg_rej r = {NULL, detail, detail_size};
        const uint8_t *b = buf;
        struct reg_entry *e;
        struct sg_rd rd;
        uint32_t id;
        int rc;

        memset(ev, 0, sizeof(*ev));
        if (detail && detail_size)
                detail[0] = '\0';
        if (len == 0) {
                rc = reject(&r, SG_ERR_BAD_FRAMING, "empty payload");
        } else if (b[0] == 0) {
                if (len < FRAME_LEN) {
                        rc = reject(&r, SG_ERR_BAD_FRAMING,
                                    "%zu bytes, Avro framing needs 5", len);
                } else {
                        id = get_frame_id(b);
                        rd.p = b + FRAME_LEN;
                        rd.end = b + len;
                        rd.rej = &r;
                        if (c->fetch) {
                                /* Every id is the registry's, 1-7 too. */
                                if (!(e = reg_get(c, id))) {
                                        reject(&r, SG_ERR_REGISTRY_UNAVAILABLE,
                                               "%s", c->unavail);
                                        rc = -2;
                                } else if (!e->plan)
                                        rc = reject(&r, SG_ERR_UNKNOWN_SCHEMA,
                                                    "%s", e->detail);
                                else
                                        rc = rd_resolved(&rd, e->plan, ev);
                        } else if (id >= SG_SCHEMA_IMPRESSION &&
                                   id <= SG_SCHEMA_CONVERSION)
                                rc = avro_decode_input(&rd, (sg_event_type_t)id,
                                                       ev);
                        else if (id <= SG_SCHEMA_MAX)
                                rc = reject(&r, SG_ERR_UNKNOWN_SCHEMA,
                                            "schema id %u is not an input "
                                            "event",
                                            id);
                        else if (!(e = reg_get(c, id))->plan)
                                rc = reject(&r, SG_ERR_UNKNOWN_SCHEMA, "%s",
                                            e->detail);
                        else
                                rc = rd_resolved(&rd, e->plan, ev);
                }
        } else if (looks_like_json(b, len)) {
                rc = json_decode_input(&r, buf, len, default_type, ev);
        } else {
                rc = reject(&r, SG_ERR_BAD_FRAMING,
                            "first byte 0x%02x is neither Avro framing nor "
                            "a JSON object",
                            b[0]);
        }
        if (rc) {
                /* Never hand back a half-decoded event. */
                memset(ev, 0, sizeof(*ev));
                *reason = r.reason;
        }
        return rc;
}

static int avro_encode_input(sg_codec_t *c, const sg_event_t *ev, void *buf,
                             size_t bufsize)
{
        int id = (int)ev->type;
        avro_value_t *v = &c->s[id].value;

        avro_value_reset(v);
        if (set_str(c, v, FLD(event_id)) ||
            set_long(c, v, "event_time", ev->event_time) ||
            set_str(c, v, FLD(channel)) || set_str(c, v, FLD(campaign_id)) ||
            set_opt_str(c, v, FLD(ad_id), ev->has_ad_id) ||
            set_opt_str(c, v, FLD(device_id), ev->has_device_id) ||
            set_opt_str(c, v, FLD(ip), ev->has_ip) ||
            set_opt_str(c, v, FLD(user_agent), ev->has_user_agent) ||
            set_opt_str(c, v, FLD(country), ev->has_country))
                return -1;
        if (ev->type == SG_EV_CONVERSION
                ? set_long(c, v, "revenue_micros", ev->revenue_micros)
                : set_long(c, v, "cost_micros", ev->cost_micros))
                return -1;
        if (ev->type != SG_EV_IMPRESSION &&
            set_opt_str(c, v,
                        ev->type == SG_EV_CLICK ? "impression_id" : "click_id",
                        ev->ref_id, sizeof(ev->ref_id), ev->has_ref_id))
                return -1;
        return write_value(c, id, buf, bufsize);
}

static int json_encode_input(sg_codec_t *c, const sg_event_t *ev, void *buf,
                             size_t bufsize)
{
        json_t *o = json_object();
        int rc = 0;

        if (!o)
                return fail(c, "out of memory");
        rc |= js_set(o, "type", json_string(sg_event_type_name(ev->type)));
        rc |= js_set(o, "event_id",
                     js_string(ev->event_id, sizeof(ev->event_id)));
        rc |= js_set(o, "event_time", json_integer(ev->event_time));
        rc |= js_set(o, "channel", js_string(ev->channel, sizeof(ev->channel)));
        rc |= js_set(o, "campaign_id",
                     js_string(ev->campaign_id, sizeof(ev->campaign_id)));
        if (ev->has_ad_id)
                rc |=
                    js_set(o, "ad_id", js_string(ev->ad_id, sizeof(ev->ad_id)));
        if (ev->has_device_id)
                rc |= js_set(o, "device_id",
                             js_string(ev->device_id, sizeof(ev->device_id)));
        if (ev->has_ip)
                rc |= js_set(o, "ip", js_string(ev->ip, sizeof(ev->ip)));
        if (ev->has_user_agent)
                rc |= js_set(o, "user_agent",
                             js_string(ev->user_agent, sizeof(ev->user_agent)));
        if (ev->has_country)
                rc |= js_set(o, "country",
                             js_string(ev->country, sizeof(ev->country)));
        if (ev->type == SG_EV_CONVERSION)
                rc |= js_set(o, "revenue_micros",
                             json_integer(ev->revenue_micros));
        else
                rc |= js_set(o, "cost_micros", json_integer(ev->cost_micros));
        if (ev->type != SG_EV_IMPRESSION && ev->has_ref_id)
                rc |= js_set(
                    o, ev->type == SG_EV_CLICK ? "impression_id" : "click_id",
                    js_string(ev->ref_id, sizeof(ev->ref_id)));
        return js_dump(c, o, rc, buf, bufsize);
}

int sg_codec_encode_input(sg_codec_t *c, sg_format_t fmt, const sg_event_t *ev,
                          void *buf, size_t bufsize)
{
        if (ev->type < SG_EV_IMPRESSION || ev->type > SG_EV_CONVERSION)
                return fail(c, "event type %d is not encodable", (int)ev->type);
        if (fmt == SG_FMT_JSON)
                return json_encode_input(c, ev, buf, bufsize);
        if (fmt != SG_FMT_AVRO)
                return fail(c, "unknown format %d", (int)fmt);
        return avro_encode_input(c, ev, buf, bufsize);
}

/*
 * Normalized events (the hot path between ingest and aggregate)
 */

int sg_codec_encode_normalized(sg_codec_t *c, const sg_event_t *ev, void *buf,
                               size_t bufsize)
{
        struct sg_wr w;

        bufsize = cap_size(bufsize);
        if (ev->type < SG_EV_IMPRESSION || ev->type > SG_EV_CONVERSION)
                return fail(c, "event type %d is not encodable", (int)ev->type);
        if (bufsize < FRAME_LEN)
                return fail(c, "buffer of %zu bytes too small", bufsize);
        put_frame(buf, SG_SCHEMA_NORMALIZED);
        w.p = (uint8_t *)buf + FRAME_LEN;
        w.end = (uint8_t *)buf + bufsize;
        w.full = 0;
        wr_long(&w, (int64_t)ev->type - 1);
        wr_str(&w, ev->event_id, sizeof(ev->event_id));
        wr_long(&w, ev->event_time);
        wr_str(&w, ev->channel, sizeof(ev->channel));
        wr_str(&w, ev->campaign_id, sizeof(ev->campaign_id));
        wr_opt_str(&w, ev->ad_id, sizeof(ev->ad_id), ev->has_ad_id);
        wr_opt_str(&w, ev->device_id, sizeof(ev->device_id), ev->has_device_id);
        wr_opt_str(&w, ev->ip, sizeof(ev->ip), ev->has_ip);
        wr_opt_str(&w, ev->user_agent, sizeof(ev->user_agent),
                   ev->has_user_agent);
        wr_opt_str(&w, ev->country, sizeof(ev->country), ev->has_country);
        wr_long(&w, ev->cost_micros);
        wr_long(&w, ev->revenue_micros);
        wr_opt_str(&w, ev->ref_id, sizeof(ev->ref_id), ev->has_ref_id);
        wr_long(&w, (int32_t)ev->ivt_mask);
        wr_opt_str(&w, ev->ivt_reason, sizeof(ev->ivt_reason),
                   ev->ivt_reason[0] != '\0');
        wr_str(&w, ev->src_topic, sizeof(ev->src_topic));
        wr_long(&w, ev->src_partition);
        wr_long(&w, ev->src_offset);
        if (w.full)
                return fail(c, "buffer of %zu bytes too small", bufsize);
        return (int)(w.p - (uint8_t *)buf);
}

int sg_codec_decode_normalized(sg_codec_t *c, const void *buf, size_t len,
                               sg_event_t *ev)
{
        struct sg_rej r = codec_rej(c);
        const uint8_t *b = buf;
        struct sg_rd rd;
        int64_t type;
        int32_t mask = 0;
        int has;

        memset(ev, 0, sizeof(*ev));
        if (len < FRAME_LEN || b[0] != 0)
                return fail(c, "not Confluent-framed Avro");
        if (get_frame_id(b) != SG_SCHEMA_NORMALIZED)
                return fail(c, "schema id %u, expected %d", get_frame_id(b),
                            SG_SCHEMA_NORMALIZED);
        rd.p = b + FRAME_LEN;
        rd.end = b + len;
        rd.rej = &r;
        if (rd_index(&rd, "type", 3, &type))
                goto err;
        ev->type = (sg_event_type_t)(type + 1);
        if (rd_event_common(&rd, ev) ||
            rd_long(&rd, "cost_micros", &ev->cost_micros) ||
            rd_long(&rd, "revenue_micros", &ev->revenue_micros) ||
            rd_opt_str(&rd, FLD(ref_id), &has))
                goto err;
        ev->has_ref_id = has;
        if (rd_int(&rd, "ivt_mask", &mask) ||
            rd_opt_str(&rd, FLD(ivt_reason), &has) ||
            rd_str(&rd, FLD(src_topic)) ||
            rd_int(&rd, "src_partition", &ev->src_partition) ||
            rd_long(&rd, "src_offset", &ev->src_offset) || rd_end(&rd))
                goto err;
        ev->ivt_mask = (uint32_t)mask;
        return 0;
err:
        memset(ev, 0, sizeof(*ev));
        return -1;
}

/*
 * Aggregate snapshots
 */

#define SFLD(x) #x, s->x, sizeof(s->x)

/* The counters, in the same order in AggregateSnapshot and ChannelKpi. */
#define COUNTERS(X)                                                            \
        X(impressions)                                                         \
        X(clicks)                                                              \
        X(conversions)                                                         \
        X(spend_micros)                                                        \
        X(revenue_micros)                                                      \
        X(invalid_clicks)                                                      \
        X(invalid_impressions)                                                 \
        X(invalid_spend_micros)                                                \
        X(unique_devices)

static int set_scope(sg_codec_t *c, avro_value_t *v, const sg_snapshot_t *s)
{
#define SET_COUNTER(x)                                                         \
        if (set_long(c, v, #x, s->c.x))                                        \
                return -1;
        avro_value_reset(v);
        if (set_str(c, v, SFLD(channel)) ||
            set_opt_str(c, v, SFLD(campaign_id), s->campaign_id[0] != '\0') ||
            set_long(c, v, "window_start", s->window_start) ||
            set_long(c, v, "window_end", s->window_end))
                return -1;
        COUNTERS(SET_COUNTER)
        return 0;
#undef SET_COUNTER
}

static int get_scope(sg_codec_t *c, avro_value_t *v, sg_snapshot_t *s)
{
#define GET_COUNTER(x)                                                         \
        if (get_long(c, v, #x, &s->c.x))                                       \
                return -1;
        if (get_str(c, v, SFLD(channel), NULL) ||
            get_str(c, v, SFLD(campaign_id), NULL) ||
            get_long(c, v, "window_start", &s->window_start) ||
            get_long(c, v, "window_end", &s->window_end))
                return -1;
        COUNTERS(GET_COUNTER)
        return 0;
#undef GET_COUNTER
}

/* The snapshot-only fields: signals (sg_signals_t), in schema order. */
#define SIGNALS(X)                                                             \
        X(unique_ips)                                                          \
        X(ivt_bot_ua)                                                          \
        X(ivt_no_ua)                                                           \
        X(ivt_dc_ip)                                                           \
        X(ivt_dup_click)                                                       \
        X(freq_cap_impressions)                                                \
        X(ctc_lt_10s)                                                          \
        X(ctc_lt_1m)                                                           \
        X(ctc_lt_1h)                                                           \
        X(ctc_ge_1h)                                                           \
        X(conversions_no_click)                                                \
        X(source_clicks_untracked)

int sg_codec_encode_snapshot(sg_codec_t *c, const sg_snapshot_t *s, void *buf,
                             size_t bufsize)
{
#define SET_SIGNAL(f)                                                          \
        if (set_long(c, v, #f, s->x.f))                                        \
                return -1;
        avro_value_t *v = &c->s[SG_SCHEMA_SNAPSHOT].value;
        avro_value_t f, item;

        if (s->top_cnt < 0 || s->top_cnt > SG_SNAPSHOT_TOP)
                return fail(c, "field=top_sources count %d out of range",
                            s->top_cnt);
        if (set_scope(c, v, s) || field(c, v, "final", &f))
                return -1;
        if (avro_value_set_boolean(&f, s->final ? 1 : 0))
                return fail(c, "field=final: %s", avro_strerror());
        if (set_str(c, v, SFLD(window)))
                return -1;
        SIGNALS(SET_SIGNAL)
        if (field(c, v, "top_sources", &f))
                return -1;
        for (int i = 0; i < s->top_cnt; i++) {
                if (avro_value_append(&f, &item, NULL))
                        return fail(c, "field=top_sources: %s",
                                    avro_strerror());
                if (set_str(c, &item, "source", s->top[i].source,
                            sizeof(s->top[i].source)) ||
                    set_long(c, &item, "clicks", s->top[i].clicks))
                        return -1;
        }
        if (set_long(c, v, "watermark", s->watermark))
                return -1;
        return write_value(c, SG_SCHEMA_SNAPSHOT, buf, bufsize);
#undef SET_SIGNAL
}

int sg_codec_decode_snapshot(sg_codec_t *c, const void *buf, size_t len,
                             sg_snapshot_t *s)
{
#define GET_SIGNAL(f)                                                          \
        if (get_long(c, v, #f, &s->x.f))                                       \
                goto err;
        avro_value_t *v = &c->s[SG_SCHEMA_SNAPSHOT].value;
        avro_value_t f, item;
        size_t n;
        int final;

        memset(s, 0, sizeof(*s));
        if (read_value(c, SG_SCHEMA_SNAPSHOT, buf, len) || get_scope(c, v, s) ||
            field(c, v, "final", &f))
                goto err;
        if (avro_value_get_boolean(&f, &final)) {
                fail(c, "field=final: %s", avro_strerror());
                goto err;
        }
        s->final = final;
        if (get_str(c, v, SFLD(window), NULL))
                goto err;
        SIGNALS(GET_SIGNAL)
        if (field(c, v, "top_sources", &f) || avro_value_get_size(&f, &n)) {
                fail(c, "field=top_sources: %s", avro_strerror());
                goto err;
        }
        if (n > SG_SNAPSHOT_TOP) {
                fail(c, "field=top_sources: %zu entries, at most %d", n,
                     SG_SNAPSHOT_TOP);
                goto err;
        }
        for (size_t i = 0; i < n; i++) {
                if (avro_value_get_by_index(&f, i, &item, NULL) ||
                    get_str(c, &item, "source", s->top[i].source,
                            sizeof(s->top[i].source), NULL) ||
                    get_long(c, &item, "clicks", &s->top[i].clicks))
                        goto err;
        }
        s->top_cnt = (int)n;
        if (get_long(c, v, "watermark", &s->watermark))
                goto err;
        return 0;
err:
        memset(s, 0, sizeof(*s));
        return -1;
#undef GET_SIGNAL
}

/*
 * Decisions
 */

#define DFLD(x) #x, d->x, sizeof(d->x)

static int check_decision(sg_codec_t *c, const sg_decision_t *d)
{
        int i, j;

        if ((int)d->action < 0 || d->action >= SG_ACT__CNT)
                return fail(c, "field=action %d out of range", (int)d->action);
        if (d->metric_cnt < 0 || d->metric_cnt > SG_DECISION_MAX_METRICS)
                return fail(c, "field=metrics count %d out of range",
                            d->metric_cnt);
        if (d->budget_cnt > SG_DECISION_MAX_BUDGETS)
                return fail(c, "field=budgets count %d out of range",
                            d->budget_cnt);
        /* A map cannot hold a name twice: refuse rather than drop one. */
        for (i = 0; i < d->metric_cnt; i++)
                for (j = 0; j < i; j++)
                        if (!strncmp(d->metrics[i].name, d->metrics[j].name,
                                     sizeof(d->metrics[i].name)))
                                return fail(c,
                                            "field=metrics name \"%.*s\" "
                                            "repeated",
                                            (int)sizeof(d->metrics[i].name),
                                            d->metrics[i].name);
        return 0;
}

static int avro_encode_decision(sg_codec_t *c, const sg_decision_t *d,
                                void *buf, size_t bufsize)
{
        avro_value_t *v = &c->s[SG_SCHEMA_DECISION].value;
        avro_value_t f, child, branch, item;
        int i;

        avro_value_reset(v);
        if (set_str(c, v, DFLD(decision_id)) || set_str(c, v, DFLD(rule_id)) ||
            set_str(c, v, DFLD(channel)) ||
            set_opt_str(c, v, DFLD(campaign_id), d->campaign_id[0] != '\0') ||
            set_opt_str(c, v, DFLD(source), d->source[0] != '\0') ||
            set_str(c, v, DFLD(reason)) ||
            set_long(c, v, "window_start", d->window_start) ||
            set_long(c, v, "window_end", d->window_end) ||
            set_long(c, v, "decided_at", d->decided_at))
                return -1;
        if (field(c, v, "action", &f))
                return -1;
        if (avro_value_set_enum(&f, (int)d->action))
                return fail(c, "field=action: %s", avro_strerror());
        if (field(c, v, "metrics", &f))
                return -1;
        for (i = 0; i < d->metric_cnt; i++) {
                char name[sizeof(d->metrics[i].name) + 1];

                snprintf(name, sizeof(name), "%.*s",
                         (int)sizeof(d->metrics[i].name), d->metrics[i].name);
                if (avro_value_add(&f, name, &child, NULL, NULL) ||
                    avro_value_set_double(&child, d->metrics[i].value))
                        return fail(c, "field=metrics: %s", avro_strerror());
        }
        if (field(c, v, "budgets", &f))
                return -1;
        if (d->budget_cnt < 0) {
                if (avro_value_set_branch(&f, 0, &branch) ||
                    avro_value_set_null(&branch))
                        return fail(c, "field=budgets: %s", avro_strerror());
        } else {
                if (avro_value_set_branch(&f, 1, &branch))
                        return fail(c, "field=budgets: %s", avro_strerror());
                for (i = 0; i < d->budget_cnt; i++) {
                        if (avro_value_append(&branch, &item, NULL))
                                return fail(c, "field=budgets: %s",
                                            avro_strerror());
                        if (set_str(c, &item, "channel", d->budgets[i].channel,
                                    sizeof(d->budgets[i].channel)) ||
                            set_long(c, &item, "budget_micros",
                                     d->budgets[i].budget_micros))
                                return -1;
                }
        }
        if (field(c, v, "dry_run", &f))
                return -1;
        if (avro_value_set_boolean(&f, d->dry_run ? 1 : 0))
                return fail(c, "field=dry_run: %s", avro_strerror());
        return write_value(c, SG_SCHEMA_DECISION, buf, bufsize);
}

static int json_encode_decision(sg_codec_t *c, const sg_decision_t *d,
                                void *buf, size_t bufsize)
{
        json_t *o = json_object(), *m = json_object(), *b = NULL, *item;
        int i, rc = 0;

        if (d->budget_cnt >= 0) {
                b = json_array();
                for (i = 0; b && i < d->budget_cnt; i++) {
                        item = json_object();
                        rc |= js_set(item, "channel",
                                     js_string(d->budgets[i].channel,
                                               sizeof(d->budgets[i].channel)));
                        rc |= js_set(item, "budget_micros",
                                     json_integer(d->budgets[i].budget_micros));
                        rc |= item ? json_array_append_new(b, item) : -1;
                }
        } else {
                b = json_null();
        }
        for (i = 0; m && i < d->metric_cnt; i++) {
                char name[sizeof(d->metrics[i].name) + 1];

                snprintf(name, sizeof(name), "%.*s",
                         (int)sizeof(d->metrics[i].name), d->metrics[i].name);
                /* json_real() refuses NaN and infinities: JSON has none. */
                rc |= js_set(m, name, json_real(d->metrics[i].value));
        }
        if (!o) {
                json_decref(m);
                json_decref(b);
                return fail(c, "out of memory");
        }
        rc |= js_set(o, "decision_id",
                     js_string(d->decision_id, sizeof(d->decision_id)));
        rc |= js_set(o, "rule_id", js_string(d->rule_id, sizeof(d->rule_id)));
        rc |= js_set(o, "action", json_string(sg_action_name(d->action)));
        rc |= js_set(o, "channel", js_string(d->channel, sizeof(d->channel)));
        rc |= js_set(o, "campaign_id",
                     js_opt_string(d->campaign_id, sizeof(d->campaign_id)));
        rc |= js_set(o, "source", js_opt_string(d->source, sizeof(d->source)));
        rc |= js_set(o, "reason", js_string(d->reason, sizeof(d->reason)));
        rc |= js_set(o, "metrics", m);
        rc |= js_set(o, "window_start", json_integer(d->window_start));
        rc |= js_set(o, "window_end", json_integer(d->window_end));
        rc |= js_set(o, "decided_at", json_integer(d->decided_at));
        rc |= js_set(o, "budgets", b);
        rc |= js_set(o, "dry_run", json_boolean(d->dry_run));
        return js_dump(c, o, rc, buf, bufsize);
}

int sg_codec_encode_decision(sg_codec_t *c, sg_format_t fmt,
                             const sg_decision_t *d, void *buf, size_t bufsize)
{
        if (check_decision(c, d))
                return -1;
        if (fmt == SG_FMT_JSON)
                return json_encode_decision(c, d, buf, bufsize);
        if (fmt != SG_FMT_AVRO)
                return fail(c, "unknown format %d", (int)fmt);
        return avro_encode_decision(c, d, buf, bufsize);
}

/*
 * Reads a framed Decision into the codec's value of its writer schema: the
 * current one, or the one before dry_run (load_decision_v1); *v points at
 * it, *has_dry_run says which. The error is the current schema's.
 */
static int read_decision(sg_codec_t *c, const void *buf, size_t len,
                         avro_value_t **v, int *has_dry_run)
{
        char err[sizeof(c->err)];

        *v = &c->s[SG_SCHEMA_DECISION].value;
        *has_dry_run = 1;
        if (read_value(c, SG_SCHEMA_DECISION, buf, len) == 0)
                return 0;
        memcpy(err, c->err, sizeof(err));
        *v = &c->dec_v1.value;
        *has_dry_run = 0;
        if (read_as(c, SG_SCHEMA_DECISION, c->dec_v1.schema, *v, buf, len) ==
            0)
                return 0;
        memcpy(c->err, err, sizeof(err));
        return -1;
}

static int avro_decode_decision(sg_codec_t *c, const void *buf, size_t len,
                                sg_decision_t *d)
{
        struct sg_rej r = codec_rej(c);
        avro_value_t *v;
        avro_value_t f, child, branch, item;
        size_t n, i;
        const char *name;
        int action, has_dry_run, dry_run = 0;

        if (read_decision(c, buf, len, &v, &has_dry_run))
                return -1;
        if (has_dry_run &&
            (field(c, v, "dry_run", &f) || avro_value_get_boolean(&f, &dry_run)))
                return fail(c, "field=dry_run: %s", avro_strerror());
        d->dry_run = dry_run != 0;
        if (get_str(c, v, DFLD(decision_id), NULL) ||
            get_str(c, v, DFLD(rule_id), NULL) ||
            get_str(c, v, DFLD(channel), NULL) ||
            get_str(c, v, DFLD(campaign_id), NULL) ||
            get_str(c, v, DFLD(source), NULL) ||
            get_str(c, v, DFLD(reason), NULL) ||
            get_long(c, v, "window_start", &d->window_start) ||
            get_long(c, v, "window_end", &d->window_end) ||
            get_long(c, v, "decided_at", &d->decided_at) ||
            field(c, v, "action", &f))
                return -1;
        if (avro_value_get_enum(&f, &action))
                return fail(c, "field=action: %s", avro_strerror());
        d->action = (sg_action_t)action;
        if (field(c, v, "metrics", &f) || avro_value_get_size(&f, &n))
                return fail(c, "field=metrics: %s", avro_strerror());
        if (n > SG_DECISION_MAX_METRICS)
                return fail(c, "field=metrics has %zu entries, max %d", n,
                            SG_DECISION_MAX_METRICS);
        for (i = 0; i < n; i++) {
                if (avro_value_get_by_index(&f, i, &child, &name) ||
                    avro_value_get_double(&child, &d->metrics[i].value))
                        return fail(c, "field=metrics: %s", avro_strerror());
                if (copy_str(&r, "metrics", name, strlen(name),
                             d->metrics[i].name, sizeof(d->metrics[i].name)))
                        return -1;
        }
        d->metric_cnt = (int)n;
        if (field(c, v, "budgets", &f) ||
            avro_value_get_current_branch(&f, &branch))
                return fail(c, "field=budgets: %s", avro_strerror());
        if (avro_value_get_type(&branch) == AVRO_NULL) {
                d->budget_cnt = -1;
                return 0;
        }
        if (avro_value_get_size(&branch, &n))
                return fail(c, "field=budgets: %s", avro_strerror());
        if (n > SG_DECISION_MAX_BUDGETS)
                return fail(c, "field=budgets has %zu entries, max %d", n,
                            SG_DECISION_MAX_BUDGETS);
        for (i = 0; i < n; i++) {
                if (avro_value_get_by_index(&branch, i, &item, NULL))
                        return fail(c, "field=budgets: %s", avro_strerror());
                if (get_str(c, &item, "channel", d->budgets[i].channel,
                            sizeof(d->budgets[i].channel), NULL) ||
                    get_long(c, &item, "budget_micros",
                             &d->budgets[i].budget_micros))
                        return -1;
        }
        d->budget_cnt = (int)n;
        return 0;
}

static int json_decode_decision(sg_codec_t *c, const void *buf, size_t len,
                                sg_decision_t *d)
{
        struct sg_rej r = codec_rej(c);
        json_t *root, *v, *m, *b, *item;
        const char *name;
        size_t i;
        int rc = -1, a;

        root = js_parse(&r, buf, len);
        if (!root)
                return -1;
        if (js_str(&r, root, DFLD(decision_id), 1, NULL) ||
            js_str(&r, root, DFLD(rule_id), 1, NULL) ||
            js_str(&r, root, DFLD(channel), 1, NULL) ||
            js_str(&r, root, DFLD(campaign_id), 0, NULL) ||
            js_str(&r, root, DFLD(source), 0, NULL) ||
            js_str(&r, root, DFLD(reason), 1, NULL) ||
            js_long(&r, root, "window_start", &d->window_start) ||
            js_long(&r, root, "window_end", &d->window_end) ||
            js_long(&r, root, "decided_at", &d->decided_at))
                goto out;
        v = js_get(root, "action");
        if (!v || (a = sg_action_parse(json_string_value(v))) < 0) {
                fail(c, "field=action missing or not an action");
                goto out;
        }
        d->action = (sg_action_t)a;
        m = js_get(root, "metrics");
        if (!json_is_object(m)) {
                fail(c, "field=metrics missing or not an object");
                goto out;
        }
        if (json_object_size(m) > SG_DECISION_MAX_METRICS) {
                fail(c, "field=metrics has %zu entries, max %d",
                     json_object_size(m), SG_DECISION_MAX_METRICS);
                goto out;
        }
        json_object_foreach(m, name, v)
        {
                if (!json_is_number(v)) {
                        fail(c,
                             "field=metrics value of \"%s\" is not a "
                             "number",
                             name);
                        goto out;
                }
                if (copy_str(&r, "metrics", name, strlen(name),
                             d->metrics[d->metric_cnt].name,
                             sizeof(d->metrics[0].name)))
                        goto out;
                d->metrics[d->metric_cnt++].value = json_number_value(v);
        }
        b = js_get(root, "budgets");
        d->budget_cnt = -1;
        if (b) {
                if (!json_is_array(b) ||
                    json_array_size(b) > SG_DECISION_MAX_BUDGETS) {
                        fail(c, "field=budgets not an array of at most %d",
                             SG_DECISION_MAX_BUDGETS);
                        goto out;
                }
                json_array_foreach(b, i, item)
                {
                        if (!json_is_object(item)) {
                                fail(c, "field=budgets item %zu not an object",
                                     i);
                                goto out;
                        }
                        if (js_str(&r, item, "channel", d->budgets[i].channel,
                                   sizeof(d->budgets[i].channel), 1, NULL) ||
                            js_long(&r, item, "budget_micros",
                                    &d->budgets[i].budget_micros))
                                goto out;
                }
                d->budget_cnt = (int)json_array_size(b);
        }
        /* Absent (an older writer) or null: not a dry run. */
        v = js_get(root, "dry_run");
        if (v && !json_is_boolean(v)) {
                fail(c, "field=dry_run not a boolean");
                goto out;
        }
        d->dry_run = json_is_true(v);
        rc = 0;
out:
        json_decref(root);
        return rc;
}

int sg_codec_decode_decision(sg_codec_t *c, const void *buf, size_t len,
                             sg_decision_t *d)
{
        const uint8_t *b = buf;
        int rc;

        memset(d, 0, sizeof(*d));
        if (len > 0 && b[0] == 0)
                rc = avro_decode_decision(c, buf, len, d);
        else if (looks_like_json(b, len))
                rc = json_decode_decision(c, buf, len, d);
        else
                rc = fail(c, "neither Avro framing nor a JSON object");
        if (rc)
                memset(d, 0, sizeof(*d));
        return rc;
}

/*
 * ChannelKpi rows
 */

struct kpi_ratios {
        int has[6];
        double v[6];
};

static const char *const ratio_names[6] = {"ctr",        "cvr",  "cpa_micros",
                                           "cpm_micros", "roas", "ivt_rate"};

static void kpi_ratios(const sg_counters_t *cn, struct kpi_ratios *k)
{
        k->has[0] = sg_counters_ctr(cn, &k->v[0]);
        k->has[1] = sg_counters_cvr(cn, &k->v[1]);
        k->has[2] = sg_counters_cpa(cn, &k->v[2]);
        k->has[3] = sg_counters_cpm(cn, &k->v[3]);
        k->has[4] = sg_counters_roas(cn, &k->v[4]);
        k->has[5] = sg_counters_ivt_rate(cn, &k->v[5]);
}

static int avro_encode_kpi(sg_codec_t *c, const sg_snapshot_t *s, void *buf,
                           size_t bufsize)
{
        avro_value_t *v = &c->s[SG_SCHEMA_KPI].value;
        struct kpi_ratios k;
        int i;

        kpi_ratios(&s->c, &k);
        if (set_scope(c, v, s))
                return -1;
        for (i = 0; i < 6; i++)
                if (set_opt_double(c, v, ratio_names[i], k.has[i], k.v[i]))
                        return -1;
        return write_value(c, SG_SCHEMA_KPI, buf, bufsize);
}

static int json_encode_kpi(sg_codec_t *c, const sg_snapshot_t *s, void *buf,
                           size_t bufsize)
{
#define JS_COUNTER(x) rc |= js_set(o, #x, json_integer(s->c.x));
        json_t *o = json_object();
        struct kpi_ratios k;
        int i, rc = 0;

        if (!o)
                return fail(c, "out of memory");
        kpi_ratios(&s->c, &k);
        rc |= js_set(o, "channel", js_string(s->channel, sizeof(s->channel)));
        rc |= js_set(o, "campaign_id",
                     js_opt_string(s->campaign_id, sizeof(s->campaign_id)));
        rc |= js_set(o, "window_start", json_integer(s->window_start));
        rc |= js_set(o, "window_end", json_integer(s->window_end));
        COUNTERS(JS_COUNTER)
        for (i = 0; i < 6; i++)
                rc |= js_set(o, ratio_names[i], js_opt_real(k.has[i], k.v[i]));
        return js_dump(c, o, rc, buf, bufsize);
#undef JS_COUNTER
}

int sg_codec_encode_kpi(sg_codec_t *c, sg_format_t fmt, const sg_snapshot_t *s,
                        void *buf, size_t bufsize)
{
        if (fmt == SG_FMT_JSON)
                return json_encode_kpi(c, s, buf, bufsize);
        if (fmt != SG_FMT_AVRO)
                return fail(c, "unknown format %d", (int)fmt);
        return avro_encode_kpi(c, s, buf, bufsize);
}

static int json_decode_kpi(sg_codec_t *c, const void *buf, size_t len,
                           sg_snapshot_t *s)
{
#define JS_GET_COUNTER(x)                                                      \
        if (js_long(&r, root, #x, &s->c.x))                                    \
                goto out;
        struct sg_rej r = codec_rej(c);
        json_t *root;
        int rc = -1;

        root = js_parse(&r, buf, len);
        if (!root)
                return -1;
        if (js_str(&r, root, SFLD(channel), 1, NULL) ||
            js_str(&r, root, SFLD(campaign_id), 0, NULL) ||
            js_long(&r, root, "window_start", &s->window_start) ||
            js_long(&r, root, "window_end", &s->window_end))
                goto out;
        COUNTERS(JS_GET_COUNTER)
        rc = 0;
out:
        json_decref(root);
        return rc;
#undef JS_GET_COUNTER
}

int sg_codec_decode_kpi(sg_codec_t *c, const void *buf, size_t len,
                        sg_snapshot_t *s)
{
        const uint8_t *b = buf;
        int rc;

        memset(s, 0, sizeof(*s));
        if (len > 0 && b[0] == 0) {
                rc = read_value(c, SG_SCHEMA_KPI, buf, len);
                if (!rc)
                        rc = get_scope(c, &c->s[SG_SCHEMA_KPI].value, s);
        } else if (looks_like_json(b, len)) {
                rc = json_decode_kpi(c, buf, len, s);
        } else {
                rc = fail(c, "neither Avro framing nor a JSON object");
        }
        if (rc) {
                memset(s, 0, sizeof(*s));
                return -1;
        }
        /* A KPI row is only ever written for a closed window. */
        s->final = 1;
        return 0;
}

void sg_json_put_str(FILE *fp, const char *s)
{
        fputc('"', fp);
        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;

                if (c == '"' || c == '\\')
                        fprintf(fp, "\\%c", c);
                else if (c < 0x20)
                        fprintf(fp, "\\u%04x", c);
                else
                        fputc(c, fp);
        }
        fputc('"', fp);
}
