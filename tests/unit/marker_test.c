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

static sg_marker_t entry(const char *source, int64_t t, int idle)
{
        sg_marker_t m = {.event_time = t, .idle = idle};

        snprintf(m.source, sizeof(m.source), "%s", source);
        return m;
}

/* One entry into buf (SG_MARKER_MAX bytes): its length. */
static int encode(const char *source, int64_t t, int idle, unsigned char *buf)
{
        sg_marker_t m = entry(source, t, idle);
        int used;

        return sg_marker_encode(&m, 1, buf, SG_MARKER_MAX, &used);
}

/* Opens value under header version: the rc, its entries into out. */
static int read_all(const char *version, const unsigned char *v, size_t len,
                    sg_marker_t *out, int max, int *cnt, char *err)
{
        rd_kafka_headers_t *h = hdrs_with(version);
        sg_marker_reader_t r;
        int rc = sg_marker_open_record(h, v, len, &r, err, 256);

        *cnt = 0;
        while (rc == 1 && *cnt < max && sg_marker_next(&r, &out[*cnt]))
                (*cnt)++;
        rd_kafka_headers_destroy(h);
        return rc;
}

Test(marker, encodes_the_documented_bytes)
{
        unsigned char buf[SG_MARKER_MAX];
        sg_marker_t m[2] = {entry("ad-clicks/12", 1700000000000, 1),
                            entry("c/1", INT64_MIN, 0)};
        static const unsigned char want[] = {
            'S', 'G', 'W', 'M', 2, 0, 0, 2,
            /* 1700000000000 = 0x0000018bcfe56800, idle */
            1, 0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, 0, 12,
            'a', 'd', '-', 'c', 'l', 'i', 'c', 'k', 's', '/', '1', '2',
            0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 3, 'c', '/', '1'};
        int used = 0;

        cr_assert_eq(sg_marker_encode(m, 2, buf, sizeof(buf), &used),
                     (int)sizeof(want));
        cr_assert_eq(used, 2);
        cr_assert_arr_eq(buf, want, sizeof(want));
}

Test(marker, round_trips_many_entries_in_one_record)
{
        static const int64_t times[] = {1700000000000, INT64_MIN, 0, -1,
                                        INT64_MAX};
        sg_marker_t in[5], out[8];
        unsigned char buf[SG_MARKER_MAX];
        char err[256], src[32];
        int used, cnt, n;

        for (int i = 0; i < 5; i++) {
                snprintf(src, sizeof(src), "ad-impressions/%d", i);
                in[i] = entry(src, times[i], i & 1);
        }
        n = sg_marker_encode(in, 5, buf, sizeof(buf), &used);
        cr_assert_gt(n, 0);
        cr_assert_eq(used, 5);
        memset(out, 0x55, sizeof(out));
        cr_assert_eq(read_all("2", buf, (size_t)n, out, 8, &cnt, err), 1,
                     "%s", err);
        cr_assert_eq(cnt, 5);
        for (int i = 0; i < 5; i++) {
                cr_assert_str_eq(out[i].source, in[i].source);
                cr_assert_eq(out[i].event_time, times[i]);
                cr_assert_eq(out[i].idle, i & 1);
        }
}

Test(marker, round_trips_the_longest_source)
{
        unsigned char buf[SG_MARKER_MAX];
        char src[SG_MARKER_SOURCE_LEN];
        sg_marker_t out;
        char err[256];
        int n, cnt;

        memset(src, 't', sizeof(src) - 1);
        src[sizeof(src) - 1] = '\0';
        n = encode(src, 5, 0, buf);
        cr_assert_eq(n, SG_MARKER_FIXED + SG_MARKER_ENTRY +
                            SG_MARKER_SOURCE_LEN - 1);
        cr_assert_eq(read_all("2", buf, (size_t)n, &out, 1, &cnt, err), 1,
                     "%s", err);
        cr_assert_eq(cnt, 1);
        cr_assert_str_eq(out.source, src);
}

Test(marker, writes_what_fits_and_says_how_many)
{
        sg_marker_t m[3] = {entry("ad-clicks/0", 1, 0),
                            entry("ad-clicks/1", 2, 0),
                            entry("ad-clicks/2", 3, 1)};
        unsigned char buf[SG_MARKER_MAX];
        size_t one = SG_MARKER_ENTRY + 11;
        int used = -1;

        /* Room for two entries, not three. */
        cr_assert_eq(sg_marker_encode(m, 3, buf, SG_MARKER_FIXED + 3 * one - 1,
                                      &used),
                     (int)(SG_MARKER_FIXED + 2 * one));
        cr_assert_eq(used, 2);
        cr_assert_eq(sg_marker_encode(m, 3, buf, SG_MARKER_FIXED + one - 1,
                                      &used),
                     -1, "not even one fits");
}

Test(marker, refuses_to_encode_an_empty_source_or_nothing)
{
        sg_marker_t m[2] = {entry("ad-clicks/0", 1, 0), entry("", 1, 0)};
        unsigned char buf[SG_MARKER_MAX];
        int used;

        cr_assert_eq(sg_marker_encode(m, 0, buf, sizeof(buf), &used), -1);
        cr_assert_eq(sg_marker_encode(m, 2, buf, sizeof(buf), &used), -1);
        cr_assert_eq(sg_marker_encode(m + 1, 1, buf, sizeof(buf), &used), -1);
}

Test(marker, reads_version_1)
{
        /* What ingest wrote before version 2: one input per record. */
        static const unsigned char v1[] = {
            'S',  'G',  'W',  'M', 1,   1,   0x00, 0x00, 0x01, 0x8b, 0xcf,
            0xe5, 0x68, 0x00, 0,   12,  'a', 'd',  '-',  'c',  'l',  'i',
            'c',  'k',  's',  '/', '1', '2'};
        sg_marker_t out[2];
        char err[256];
        int cnt;

        cr_assert_eq(read_all("1", v1, sizeof(v1), out, 2, &cnt, err), 1,
                     "%s", err);
        cr_assert_eq(cnt, 1);
        cr_assert_str_eq(out[0].source, "ad-clicks/12");
        cr_assert_eq(out[0].event_time, 1700000000000);
        cr_assert_eq(out[0].idle, 1);
        cr_assert_eq(read_all("1", v1, sizeof(v1) - 1, out, 2, &cnt, err), -1);
        cr_assert_eq(read_all("2", v1, sizeof(v1), out, 2, &cnt, err), -1,
                     "a version-1 value under a version-2 header");
}

Test(marker, a_record_without_the_header_is_an_event)
{
        unsigned char buf[SG_MARKER_MAX];
        rd_kafka_headers_t *h = hdrs_with(NULL);
        sg_marker_reader_t r;
        char err[256];
        int n = encode("ad-clicks/0", 1, 0, buf);

        cr_assert_eq(sg_marker_open_record(NULL, buf, (size_t)n, &r, err,
                                           sizeof(err)),
                     0);
        cr_assert_eq(sg_marker_open_record(h, buf, (size_t)n, &r, err,
                                           sizeof(err)),
                     0);
        rd_kafka_headers_destroy(h);
}

/* Opens value under a version-2 header: -1 expected, err returned. */
static void assert_malformed(const unsigned char *v, size_t len,
                             const char *why)
{
        sg_marker_t out;
        char err[256] = "";
        int cnt;

        cr_assert_eq(read_all("2", v, len, &out, 1, &cnt, err), -1,
                     "%s: accepted", why);
        cr_assert_neq(err[0], '\0', "%s: no reason", why);
}

Test(marker, rejects_malformed_values)
{
        sg_marker_t m[2] = {entry("ad-clicks/0", 1700000000000, 0),
                            entry("ad-clicks/1", 1700000000000, 1)};
        unsigned char buf[SG_MARKER_MAX], bad[SG_MARKER_MAX + 4];
        size_t two = SG_MARKER_FIXED + SG_MARKER_ENTRY; /* 2nd entry */
        int used, n = sg_marker_encode(m, 2, buf, sizeof(buf), &used);

        two += 11;
        assert_malformed(NULL, 0, "no value");
        assert_malformed(buf, SG_MARKER_FIXED - 1, "short");
        assert_malformed(buf, SG_MARKER_FIXED, "no entries");
        assert_malformed(buf, (size_t)n - 1, "truncated source");
        assert_malformed(buf, two + 5, "truncated entry");
        memcpy(bad, buf, (size_t)n);
        bad[n] = 'x';
        assert_malformed(bad, (size_t)n + 1, "trailing byte");
        memcpy(bad, buf, (size_t)n);
        bad[0] = 0; /* Confluent framing */
        assert_malformed(bad, (size_t)n, "magic");
        memcpy(bad, buf, (size_t)n);
        bad[4] = 1;
        assert_malformed(bad, (size_t)n, "version");
        memcpy(bad, buf, (size_t)n);
        bad[5] = 1;
        assert_malformed(bad, (size_t)n, "reserved byte");
        memcpy(bad, buf, (size_t)n);
        bad[7] = 0;
        assert_malformed(bad, (size_t)n, "zero entries");
        memcpy(bad, buf, (size_t)n);
        bad[7] = 3;
        assert_malformed(bad, (size_t)n, "more entries than bytes");
        memcpy(bad, buf, (size_t)n);
        bad[two] = 2;
        assert_malformed(bad, (size_t)n, "flags of the second entry");
        memcpy(bad, buf, (size_t)n);
        bad[two + 9] = 0;
        bad[two + 10] = 0;
        assert_malformed(bad, (size_t)n, "empty source");
        memcpy(bad, buf, (size_t)n);
        bad[two + SG_MARKER_ENTRY + 2] = '\0';
        assert_malformed(bad, (size_t)n, "NUL in source");
}

Test(marker, rejects_an_unknown_header_version)
{
        unsigned char buf[SG_MARKER_MAX];
        int n = encode("ad-clicks/0", 1, 0, buf);
        const char *versions[] = {"3", "", "22"};

        for (int i = 0; i < 3; i++) {
                sg_marker_t out;
                char err[256] = "";
                int cnt;

                cr_assert_eq(read_all(versions[i], buf, (size_t)n, &out, 1,
                                      &cnt, err),
                             -1, "version \"%s\" accepted", versions[i]);
                cr_assert_neq(err[0], '\0');
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
