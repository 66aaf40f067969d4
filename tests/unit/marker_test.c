#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include "codec.h"
#include "marker.h"

static rd_kafka_headers_t *hdrs_with(const char *version)
{
        rd_kafka_headers_t *h = rd_kafka_headers_new(2);

        rd_kafka_header_add(h, "other", -1, "x", 1);
        if (version)
                rd_kafka_header_add(h, SG_MARKER_HEADER, -1, version, -1);
        return h;
}

static int encode(const char *source, int64_t t, int idle, unsigned char *buf)
{
        sg_marker_t m = {.event_time = t, .idle = idle};

        snprintf(m.source, sizeof(m.source), "%s", source);
        return sg_marker_encode(&m, buf, SG_MARKER_MAX);
}

Test(marker, encodes_the_documented_bytes)
{
        unsigned char buf[SG_MARKER_MAX];
        static const unsigned char want[] = {
            'S',  'G',  'W',  'M', 1,   1,   0x00, 0x00, 0x01, 0x8b, 0xcf,
            0xe5, 0x68, 0x00, 0,   12,  'a', 'd',  '-',  'c',  'l',  'i',
            'c',  'k',  's',  '/', '1', '2'};

        /* 1700000000000 = 0x0000018bcfe56800 */
        cr_assert_eq(encode("ad-clicks/12", 1700000000000, 1, buf),
                     (int)sizeof(want));
        cr_assert_arr_eq(buf, want, sizeof(want));
}

Test(marker, round_trips)
{
        static const int64_t times[] = {1700000000000, INT64_MIN, 0, -1,
                                        INT64_MAX};
        unsigned char buf[SG_MARKER_MAX];
        rd_kafka_headers_t *h = hdrs_with("1");
        char err[256];

        for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
                sg_marker_t out;
                int n = encode("ad-impressions/3", times[i], (int)(i & 1), buf);

                cr_assert_gt(n, 0);
                memset(&out, 0x55, sizeof(out));
                cr_assert_eq(sg_marker_parse_record(h, buf, (size_t)n, &out,
                                                    err, sizeof(err)),
                             1, "%s", err);
                cr_assert_str_eq(out.source, "ad-impressions/3");
                cr_assert_eq(out.event_time, times[i]);
                cr_assert_eq(out.idle, (int)(i & 1));
        }
        rd_kafka_headers_destroy(h);
}

Test(marker, round_trips_the_longest_source)
{
        unsigned char buf[SG_MARKER_MAX];
        char src[SG_MARKER_SOURCE_LEN];
        rd_kafka_headers_t *h = hdrs_with("1");
        sg_marker_t out;
        char err[256];
        int n;

        memset(src, 't', sizeof(src) - 1);
        src[sizeof(src) - 1] = '\0';
        n = encode(src, 5, 0, buf);
        cr_assert_eq(n, SG_MARKER_MAX - 1);
        cr_assert_eq(sg_marker_parse_record(h, buf, (size_t)n, &out, err,
                                            sizeof(err)),
                     1, "%s", err);
        cr_assert_str_eq(out.source, src);
        rd_kafka_headers_destroy(h);
}

Test(marker, refuses_to_encode_an_empty_source_or_a_small_buffer)
{
        sg_marker_t m = {.source = "", .event_time = 1};
        unsigned char buf[SG_MARKER_MAX];

        cr_assert_eq(sg_marker_encode(&m, buf, sizeof(buf)), -1);
        snprintf(m.source, sizeof(m.source), "ad-clicks/0");
        cr_assert_eq(sg_marker_encode(&m, buf, SG_MARKER_FIXED + 10), -1);
        cr_assert_eq(sg_marker_encode(&m, buf, SG_MARKER_FIXED + 11),
                     SG_MARKER_FIXED + 11);
}

Test(marker, a_record_without_the_header_is_an_event)
{
        unsigned char buf[SG_MARKER_MAX];
        rd_kafka_headers_t *h = hdrs_with(NULL);
        sg_marker_t out;
        char err[256];
        int n = encode("ad-clicks/0", 1, 0, buf);

        cr_assert_eq(sg_marker_parse_record(NULL, buf, (size_t)n, &out, err,
                                            sizeof(err)),
                     0);
        cr_assert_eq(sg_marker_parse_record(h, buf, (size_t)n, &out, err,
                                            sizeof(err)),
                     0);
        rd_kafka_headers_destroy(h);
}

/* Parses value under a version-1 header: -1 expected, err returned. */
static void assert_malformed(const unsigned char *v, size_t len,
                             const char *why)
{
        rd_kafka_headers_t *h = hdrs_with("1");
        sg_marker_t out;
        char err[256] = "";

        cr_assert_eq(sg_marker_parse_record(h, v, len, &out, err, sizeof(err)),
                     -1, "%s: accepted", why);
        cr_assert_neq(err[0], '\0', "%s: no reason", why);
        rd_kafka_headers_destroy(h);
}

Test(marker, rejects_malformed_values)
{
        unsigned char buf[SG_MARKER_MAX], bad[SG_MARKER_MAX + 4];
        int n = encode("ad-clicks/0", 1700000000000, 0, buf);

        assert_malformed(NULL, 0, "no value");
        assert_malformed(buf, SG_MARKER_FIXED - 1, "short");
        assert_malformed(buf, SG_MARKER_FIXED, "no source");
        assert_malformed(buf, (size_t)n - 1, "truncated source");
        memcpy(bad, buf, (size_t)n);
        bad[n] = 'x';
        assert_malformed(bad, (size_t)n + 1, "trailing byte");
        memcpy(bad, buf, (size_t)n);
        bad[0] = 0; /* Confluent framing */
        assert_malformed(bad, (size_t)n, "magic");
        memcpy(bad, buf, (size_t)n);
        bad[4] = 2;
        assert_malformed(bad, (size_t)n, "version");
        memcpy(bad, buf, (size_t)n);
        bad[5] = 2;
        assert_malformed(bad, (size_t)n, "flags");
        memcpy(bad, buf, (size_t)n);
        bad[14] = 0;
        bad[15] = 0;
        assert_malformed(bad, SG_MARKER_FIXED, "empty source");
        memcpy(bad, buf, (size_t)n);
        bad[SG_MARKER_FIXED + 2] = '\0';
        assert_malformed(bad, (size_t)n, "NUL in source");
}

Test(marker, rejects_an_unknown_header_version)
{
        unsigned char buf[SG_MARKER_MAX];
        int n = encode("ad-clicks/0", 1, 0, buf);
        const char *versions[] = {"2", "", "11"};

        for (int i = 0; i < 3; i++) {
                rd_kafka_headers_t *h = hdrs_with(versions[i]);
                sg_marker_t out;
                char err[256] = "";

                cr_assert_eq(sg_marker_parse_record(h, buf, (size_t)n, &out,
                                                    err, sizeof(err)),
                             -1, "version \"%s\" accepted", versions[i]);
                cr_assert_neq(err[0], '\0');
                rd_kafka_headers_destroy(h);
        }
}

Test(marker, is_never_decoded_as_a_normalized_event)
{
        unsigned char buf[SG_MARKER_MAX];
        char err[256];
        sg_codec_t *c;
        sg_event_t ev;
        int n = encode("ad-clicks/0", 1700000000000, 1, buf);

        c = sg_codec_new(SG_SOURCE_DIR "/schemas", err, sizeof(err));
        cr_assert_not_null(c, "%s", err);
        cr_assert_eq(sg_codec_decode_normalized(c, buf, (size_t)n, &ev), -1);
        sg_codec_destroy(c);
}
