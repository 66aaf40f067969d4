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

int sg_marker_encode(const sg_marker_t *m, unsigned char *buf, size_t size)
{
        size_t n = strnlen(m->source, sizeof(m->source));

        if (n == 0 || n == sizeof(m->source) || SG_MARKER_FIXED + n > size)
                return -1;
        memcpy(buf, magic, 4);
        buf[4] = SG_MARKER_VERSION;
        buf[5] = m->idle ? 1 : 0;
        put64(buf + 6, m->event_time);
        buf[14] = (unsigned char)(n >> 8);
        buf[15] = (unsigned char)(n & 0xff);
        memcpy(buf + SG_MARKER_FIXED, m->source, n);
        return (int)(SG_MARKER_FIXED + n);
}

int sg_marker_parse_record(const rd_kafka_headers_t *hdrs, const void *value,
                           size_t len, sg_marker_t *out, char *err,
                           size_t errsize)
{
        const unsigned char *v = value;
        const void *hv;
        size_t hlen, n;

        if (!hdrs || rd_kafka_header_get_last(hdrs, SG_MARKER_HEADER, &hv,
                                              &hlen) != RD_KAFKA_RESP_ERR_NO_ERROR)
                return 0;
        if (!hv || hlen != 1 || *(const char *)hv != '0' + SG_MARKER_VERSION) {
                snprintf(err, errsize,
                         "sg.marker header \"%.*s\": version %d expected",
                         hv ? (int)(hlen > 16 ? 16 : hlen) : 0,
                         hv ? (const char *)hv : "", SG_MARKER_VERSION);
                return -1;
        }
        if (!v || len < SG_MARKER_FIXED) {
                snprintf(err, errsize,
                         "marker of %zu bytes, at least %d expected", len,
                         SG_MARKER_FIXED + 1);
                return -1;
        }
        if (memcmp(v, magic, 4) != 0 || v[4] != SG_MARKER_VERSION) {
                snprintf(err, errsize,
                         "marker without magic SGWM and version %d",
                         SG_MARKER_VERSION);
                return -1;
        }
        if (v[5] & ~1u) {
                snprintf(err, errsize, "marker flags 0x%02x: unknown bits",
                         v[5]);
                return -1;
        }
        n = (size_t)v[14] << 8 | v[15];
        if (n == 0 || n >= sizeof(out->source) ||
            len != SG_MARKER_FIXED + n) {
                snprintf(err, errsize,
                         "marker source of %zu bytes in a value of %zu", n,
                         len);
                return -1;
        }
        if (memchr(v + SG_MARKER_FIXED, '\0', n)) {
                snprintf(err, errsize, "marker source holds a NUL byte");
                return -1;
        }
        memcpy(out->source, v + SG_MARKER_FIXED, n);
        out->source[n] = '\0';
        out->idle = v[5] & 1;
        out->event_time = get64(v + 6);
        return 1;
}

int sg_marker_parse(const rd_kafka_message_t *m, sg_marker_t *out, char *err,
                    size_t errsize)
{
        rd_kafka_headers_t *hdrs;

        if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
                return 0;
        return sg_marker_parse_record(hdrs, m->payload, m->len, out, err,
                                      errsize);
}

int sg_marker_send(sg_producer_t *p, const char *topic, int32_t partition,
                   const sg_marker_t *m)
{
        unsigned char buf[SG_MARKER_MAX];
        char version[2] = {'0' + SG_MARKER_VERSION, '\0'};
        rd_kafka_headers_t *h;
        int n = sg_marker_encode(m, buf, sizeof(buf));

        if (n < 0) {
                sg_error("event=marker_failed source=%.*s msg=\"bad source\"",
                         (int)sizeof(m->source), m->source);
                return -1;
        }
        h = rd_kafka_headers_new(1);
        rd_kafka_header_add(h, SG_MARKER_HEADER, -1, version, 1);
        return sg_producer_send(p, topic, partition, NULL, 0, buf, (size_t)n,
                                h);
}
