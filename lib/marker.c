/*
 * Watermark markers: encoding, parsing and producing (format in marker.h).
 *
 * Why a header and a magic both: the header lets a consumer tell a marker
 * from an event by looking at the record's headers only, before any Avro
 * decoding; the magic's first byte (not 0) makes sure a reader that ignores
 * headers fails to decode a marker as a NormalizedEvent (bad_framing) rather
 * than read garbage as an event.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "marker.h"

static const unsigned char magic[4] = {'S', 'G', 'W', 'M'};

static void put64(unsigned char *p, int64_t v)
{
        uint64_t u = (uint64_t)v;

        for (int i = 7; i >= 0; i--, u >>= 8)
                p[i] = (unsigned char)(u & 0xff);
}

static int64_t get64(const unsigned char *p)
{
        uint64_t u = 0;

        for (int i = 0; i < 8; i++)
                u = u << 8 | p[i];
        return (int64_t)u;
}

/* Checks one entry at v (at most len bytes, version 2): its size, or -1. */
static long entry_check(const unsigned char *v, size_t len, char *err,
                        size_t errsize)
{
        size_t n;

        if (len < SG_MARKER_ENTRY) {
                snprintf(err, errsize, "marker entry cut short");
                return -1;
        }
        if (v[0] & ~1u) {
                snprintf(err, errsize, "marker flags 0x%02x: unknown bits",
                         v[0]);
                return -1;
        }
        n = (size_t)v[9] << 8 | v[10];
        if (n == 0 || n >= SG_MARKER_SOURCE_LEN ||
            SG_MARKER_ENTRY + n > len) {
                snprintf(err, errsize,
                         "marker source of %zu bytes in %zu left", n, len);
                return -1;
        }
        if (memchr(v + SG_MARKER_ENTRY, '\0', n)) {
                snprintf(err, errsize, "marker source holds a NUL byte");
                return -1;
        }
        return (long)(SG_MARKER_ENTRY + n);
}

/* Version 1: one entry, laid out as a version-2 entry at byte 5, filling
 * the value. */
static int open_v1(const unsigned char *v, size_t len, sg_marker_reader_t *r,
                   char *err, size_t errsize)
{
        long e = entry_check(v + 5, len - 5, err, errsize);

        if (e < 0)
                return -1;
        if ((size_t)e != len - 5) {
                snprintf(err, errsize, "%zu bytes after the version 1 "
                         "marker's entry", len - 5 - (size_t)e);
                return -1;
        }
        r->p = v + 5;
        r->left = 1;
        r->version = 1;
        return 1;
}

int sg_marker_open_record(const rd_kafka_headers_t *hdrs, const void *value,
                          size_t len, sg_marker_reader_t *r, char *err,
                          size_t errsize)
{
        const unsigned char *v = value;
        const void *hv;
        size_t hlen, at;
        int version, n;

        if (!hdrs || rd_kafka_header_get_last(hdrs, SG_MARKER_HEADER, &hv,
                                              &hlen) != RD_KAFKA_RESP_ERR_NO_ERROR)
                return 0;
        version = hv && hlen == 1 ? *(const char *)hv - '0' : -1;
        if (version != 1 && version != SG_MARKER_VERSION) {
                snprintf(err, errsize,
                         "sg.marker header \"%.*s\": version 1 or %d expected",
                         hv ? (int)(hlen > 16 ? 16 : hlen) : 0,
                         hv ? (const char *)hv : "", SG_MARKER_VERSION);
                return -1;
        }
        if (!v || len < SG_MARKER_FIXED || memcmp(v, magic, 4) != 0 ||
            v[4] != version) {
                snprintf(err, errsize,
                         "marker of %zu bytes without magic SGWM and "
                         "version %d",
                         v ? len : 0, version);
                return -1;
        }
        if (version == 1)
                return open_v1(v, len, r, err, errsize);
        n = v[6] << 8 | v[7];
        if (v[5] != 0 || n == 0) {
                snprintf(err, errsize, "marker with %d entries, reserved "
                         "byte 0x%02x", n, v[5]);
                return -1;
        }
        /* Every entry is checked before any is used. */
        at = SG_MARKER_FIXED;
        for (int i = 0; i < n; i++) {
                long e = entry_check(v + at, len - at, err, errsize);

                if (e < 0)
                        return -1;
                at += (size_t)e;
        }
        if (at != len) {
                snprintf(err, errsize, "%zu bytes after the marker's %d "
                         "entries", len - at, n);
                return -1;
        }
        r->p = v + SG_MARKER_FIXED;
        r->left = n;
        r->version = version;
        return 1;
}

int sg_marker_open(const rd_kafka_message_t *m, sg_marker_reader_t *r,
                   char *err, size_t errsize)
{
        rd_kafka_headers_t *hdrs;

        if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
                return 0;
        return sg_marker_open_record(hdrs, m->payload, m->len, r, err,
                                     errsize);
}

int sg_marker_next(sg_marker_reader_t *r, sg_marker_t *out)
{
        size_t n;

        if (r->left <= 0)
                return 0;
        /* A version-1 value from byte 5 is one such entry (open_v1). */
        n = (size_t)r->p[9] << 8 | r->p[10];
        out->idle = r->p[0] & 1;
        out->event_time = get64(r->p + 1);
        memcpy(out->source, r->p + SG_MARKER_ENTRY, n);
        out->source[n] = '\0';
        r->p += SG_MARKER_ENTRY + n;
        r->left--;
        return 1;
}

int sg_marker_encode(const sg_marker_t *v, int n, unsigned char *buf,
                     size_t size, int *used)
{
        size_t at = SG_MARKER_FIXED;
        int i;

        if (n < 1 || size < SG_MARKER_FIXED)
                return -1;
        for (i = 0; i < n && i < 0xffff; i++) {
                size_t len = strnlen(v[i].source, sizeof(v[i].source));

                if (len == 0 || len == sizeof(v[i].source))
                        return -1;
                if (at + SG_MARKER_ENTRY + len > size)
                        break;
                buf[at] = v[i].idle ? 1 : 0;
                put64(buf + at + 1, v[i].event_time);
                buf[at + 9] = (unsigned char)(len >> 8);
                buf[at + 10] = (unsigned char)(len & 0xff);
                memcpy(buf + at + SG_MARKER_ENTRY, v[i].source, len);
                at += SG_MARKER_ENTRY + len;
        }
        if (i == 0)
                return -1;
        memcpy(buf, magic, 4);
        buf[4] = SG_MARKER_VERSION;
        buf[5] = 0;
        buf[6] = (unsigned char)(i >> 8);
        buf[7] = (unsigned char)(i & 0xff);
        *used = i;
        return (int)at;
}

int sg_marker_send(sg_producer_t *p, const char *topic, int32_t partition,
                   const sg_marker_t *v, int n)
{
        unsigned char buf[SG_MARKER_MAX];
        char version[2] = {'0' + SG_MARKER_VERSION, '\0'};
        int records = 0;

        while (n > 0) {
                rd_kafka_headers_t *h;
                int used, len = sg_marker_encode(v, n, buf, sizeof(buf), &used);

                if (len < 0) {
                        sg_error("event=marker_failed source=%.*s "
                                 "msg=\"bad source\"",
                                 (int)sizeof(v->source), v->source);
                        return -1;
                }
                h = rd_kafka_headers_new(1);
                rd_kafka_header_add(h, SG_MARKER_HEADER, -1, version, 1);
                if (sg_producer_send(p, topic, partition, NULL, 0, buf,
                                     (size_t)len, h) != 0)
                        return -1;
                records++;
                v += used;
                n -= used;
        }
        return records;
}
