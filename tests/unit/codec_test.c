/*
 * The wire codec: round trips of every record in both formats, every
 * rejection reason of decode_input, byte-for-byte agreement with Python's
 * avro library (tests/fixtures/make_fixtures.py), evolved writer schemas
 * from the registry resolved into the contract schemas, and no crash,
 * over-read or allocation blow-up on malformed input.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <avro.h>
#include <jansson.h>

#include "codec.h"
#include "event.h"
#include "log.h"

static sg_codec_t *codec;
static char buf[8192];

static const char *source_dir(void)
{
        const char *d = getenv("SG_SOURCE_DIR");

        return d && *d ? d : SG_SOURCE_DIR;
}

static void setup(void)
{
        char path[PATH_MAX], err[256] = "";

        snprintf(path, sizeof(path), "%s/schemas", source_dir());
        codec = sg_codec_new(path, err, sizeof(err));
        cr_assert_not_null(codec, "sg_codec_new: %s", err);
}

static void teardown(void)
{
        sg_codec_destroy(codec);
        codec = NULL;
}

TestSuite(codec, .init = setup, .fini = teardown);

/*
 * Helpers
 */

static size_t load_fixture(const char *name, uint8_t *out, size_t size)
{
        char path[PATH_MAX];
        FILE *fp;
        size_t n;

        snprintf(path, sizeof(path), "%s/tests/fixtures/%s", source_dir(),
                 name);
        fp = fopen(path, "rb");
        cr_assert_not_null(fp, "cannot open %s", path);
        n = fread(out, 1, size, fp);
        fclose(fp);
        cr_assert(n > 0 && n < size, "%s: %zu bytes", path, n);
        return n;
}

static sg_event_t make_event(sg_event_type_t type, int full)
{
        sg_event_t ev;

        memset(&ev, 0, sizeof(ev));
        ev.type = type;
        strcpy(ev.event_id, "evt-1");
        ev.event_time = 1709294400123;
        strcpy(ev.channel, "social");
        strcpy(ev.campaign_id, "spring-sale");
        if (type == SG_EV_CONVERSION)
                ev.revenue_micros = 123456789012;
        else
                ev.cost_micros = 2500;
        if (!full)
                return ev;
        strcpy(ev.ad_id, "ad-42");
        strcpy(ev.device_id, "dev-9f3c");
        strcpy(ev.ip, "203.0.113.7");
        strcpy(ev.user_agent, "Mozilla/5.0 \"quoted\" \\ caf\xc3\xa9");
        strcpy(ev.country, "FR");
        ev.has_ad_id = ev.has_device_id = ev.has_ip = ev.has_user_agent =
            ev.has_country = 1;
        if (type != SG_EV_IMPRESSION) {
                strcpy(ev.ref_id, "ref-7");
                ev.has_ref_id = 1;
        }
        return ev;
}

static void assert_event_eq(const sg_event_t *a, const sg_event_t *b)
{
        cr_assert_eq(a->type, b->type);
        cr_assert_str_eq(a->event_id, b->event_id);
        cr_assert_eq(a->event_time, b->event_time);
        cr_assert_str_eq(a->channel, b->channel);
        cr_assert_str_eq(a->campaign_id, b->campaign_id);
        cr_assert_str_eq(a->ad_id, b->ad_id);
        cr_assert_str_eq(a->device_id, b->device_id);
        cr_assert_str_eq(a->ip, b->ip);
        cr_assert_str_eq(a->user_agent, b->user_agent);
        cr_assert_str_eq(a->country, b->country);
        cr_assert_str_eq(a->ref_id, b->ref_id);
        cr_assert_eq(a->has_ad_id, b->has_ad_id);
        cr_assert_eq(a->has_device_id, b->has_device_id);
        cr_assert_eq(a->has_ip, b->has_ip);
        cr_assert_eq(a->has_user_agent, b->has_user_agent);
        cr_assert_eq(a->has_country, b->has_country);
        cr_assert_eq(a->has_ref_id, b->has_ref_id);
        cr_assert_eq(a->cost_micros, b->cost_micros);
        cr_assert_eq(a->revenue_micros, b->revenue_micros);
        cr_assert_eq(a->ivt_mask, b->ivt_mask);
        cr_assert_str_eq(a->ivt_reason, b->ivt_reason);
        cr_assert_str_eq(a->src_topic, b->src_topic);
        cr_assert_eq(a->src_partition, b->src_partition);
        cr_assert_eq(a->src_offset, b->src_offset);
}

/* Decodes an input payload that must be accepted. */
static sg_event_t decode_ok(const void *p, size_t len, sg_event_type_t def)
{
        sg_event_t ev;
        const char *reason = NULL;
        char detail[256] = "";

        cr_assert_eq(sg_codec_decode_input(codec, p, len, def, &ev, &reason,
                                           detail, sizeof(detail)),
                     0, "rejected: %s %s", reason, detail);
        return ev;
}

static void decode_rejects(const void *p, size_t len, const char *reason,
                           const char *detail)
{
        sg_event_t ev;
        const char *got = NULL;
        char d[256] = "";

        cr_assert_eq(sg_codec_decode_input(codec, p, len, SG_EV_CLICK, &ev,
                                           &got, d, sizeof(d)),
                     -1, "accepted");
        cr_assert_str_eq(got, reason, "detail: %s", d);
        cr_assert_str_eq(d, detail);
}

static sg_snapshot_t make_snapshot(const char *campaign)
{
        sg_snapshot_t s;

        memset(&s, 0, sizeof(s));
        strcpy(s.channel, "search");
        strcpy(s.campaign_id, campaign);
        s.window_start = 1709294400000;
        s.window_end = 1709294460000;
        s.final = 1;
        s.c.impressions = 1000;
        s.c.clicks = 20;
        s.c.conversions = 0;
        s.c.spend_micros = 4000000;
        s.c.revenue_micros = 0;
        s.c.invalid_clicks = 1;
        s.c.invalid_impressions = 3;
        s.c.invalid_spend_micros = 200000;
        s.c.unique_devices = 850;
        strcpy(s.window, "5m");
        s.x.unique_ips = 700;
        s.x.ivt_bot_ua = 2;
        s.x.ivt_no_ua = 1;
        s.x.ivt_dc_ip = 3;
        s.x.ivt_dup_click = 1;
        s.x.freq_cap_impressions = 12;
        s.x.ctc_lt_10s = 1;
        s.x.ctc_lt_1m = 2;
        s.x.ctc_lt_1h = 3;
        s.x.ctc_ge_1h = 4;
        s.x.conversions_no_click = 5;
        s.x.source_clicks_untracked = 6;
        s.top_cnt = 2;
        strcpy(s.top[0].source, "ip:203.0.113.7");
        s.top[0].clicks = 9;
        strcpy(s.top[1].source, "device:d1");
        s.top[1].clicks = 4;
        s.watermark = 1709294490000;
        return s;
}

static void assert_scope_eq(const sg_snapshot_t *a, const sg_snapshot_t *b)
{
        cr_assert_str_eq(a->channel, b->channel);
        cr_assert_str_eq(a->campaign_id, b->campaign_id);
        cr_assert_eq(a->window_start, b->window_start);
        cr_assert_eq(a->window_end, b->window_end);
        cr_assert_eq(memcmp(&a->c, &b->c, sizeof(a->c)), 0);
}

static sg_decision_t make_decision(int reallocate)
{
        sg_decision_t d;

        memset(&d, 0, sizeof(d));
        strcpy(d.decision_id, "d-5e1f");
        strcpy(d.rule_id, reallocate ? "realloc-roas" : "cpa-overrun");
        d.action = reallocate ? SG_ACT_REALLOCATE : SG_ACT_PAUSE;
        strcpy(d.channel, "social");
        strcpy(d.reason, "cpa 1.35x target 1.30x over 1h (n=412)");
        /* Names in non-sorted order: the order must survive. */
        strcpy(d.metrics[0].name, "cpa");
        d.metrics[0].value = 13500000.25;
        strcpy(d.metrics[1].name, "target");
        d.metrics[1].value = 0.1;
        strcpy(d.metrics[2].name, "conversions");
        d.metrics[2].value = -412;
        d.metric_cnt = 3;
        d.window_start = 1709290800000;
        d.window_end = 1709294400000;
        d.decided_at = 1709294400500;
        d.budget_cnt = -1;
        if (reallocate) {
                strcpy(d.budgets[0].channel, "social");
                d.budgets[0].budget_micros = 460000000;
                strcpy(d.budgets[1].channel, "kol");
                d.budgets[1].budget_micros = 110000000;
                d.budget_cnt = 2;
        } else {
                strcpy(d.campaign_id, "brand");
                strcpy(d.source, "ip:1.2.3.4");
                d.dry_run = 1;
        }
        return d;
}

static void assert_decision_eq(const sg_decision_t *a, const sg_decision_t *b)
{
        int i;

        cr_assert_str_eq(a->decision_id, b->decision_id);
        cr_assert_str_eq(a->rule_id, b->rule_id);
        cr_assert_eq(a->action, b->action);
        cr_assert_str_eq(a->channel, b->channel);
        cr_assert_str_eq(a->campaign_id, b->campaign_id);
        cr_assert_str_eq(a->source, b->source);
        cr_assert_str_eq(a->reason, b->reason);
        cr_assert_eq(a->metric_cnt, b->metric_cnt);
        for (i = 0; i < a->metric_cnt; i++) {
                cr_assert_str_eq(a->metrics[i].name, b->metrics[i].name);
                cr_assert_eq(a->metrics[i].value, b->metrics[i].value,
                             "metric %s", a->metrics[i].name);
        }
        cr_assert_eq(a->window_start, b->window_start);
        cr_assert_eq(a->window_end, b->window_end);
        cr_assert_eq(a->decided_at, b->decided_at);
        cr_assert_eq(a->budget_cnt, b->budget_cnt);
        cr_assert_eq(a->dry_run, b->dry_run);
        for (i = 0; i < a->budget_cnt; i++) {
                cr_assert_str_eq(a->budgets[i].channel, b->budgets[i].channel);
                cr_assert_eq(a->budgets[i].budget_micros,
                             b->budgets[i].budget_micros);
        }
}

/*
 * Construction
 */

Test(codec_new, fails_with_the_path_when_schemas_are_missing)
{
        char err[256] = "";

        cr_assert_null(sg_codec_new("/nonexistent", err, sizeof(err)));
        cr_assert_str_eq(err, "/nonexistent/impression.avsc: No such file or "
                              "directory");
}

/* Copies the schemas to a temporary folder, one of them replaced. */
static char *schema_copy(const char *file, const char *text)
{
        static const char *const files[] = {
            "impression.avsc",         "click.avsc",
            "conversion.avsc",         "normalized_event.avsc",
            "decision.avsc",           "channel_kpi.avsc",
            "aggregate_snapshot.avsc", NULL};
        static char dir[] = "/tmp/sg-codec-test-XXXXXX";
        char src[PATH_MAX], dst[PATH_MAX], data[8192];
        FILE *in, *out;
        size_t n;
        int i;

        cr_assert_not_null(mkdtemp(dir));
        for (i = 0; files[i]; i++) {
                snprintf(dst, sizeof(dst), "%s/%s", dir, files[i]);
                out = fopen(dst, "wb");
                cr_assert_not_null(out);
                if (!strcmp(files[i], file)) {
                        fputs(text, out);
                } else {
                        snprintf(src, sizeof(src), "%s/schemas/%s",
                                 source_dir(), files[i]);
                        in = fopen(src, "rb");
                        cr_assert_not_null(in);
                        n = fread(data, 1, sizeof(data), in);
                        fwrite(data, 1, n, out);
                        fclose(in);
                }
                fclose(out);
        }
        return dir;
}

static void schema_copy_remove(const char *dir)
{
        char cmd[PATH_MAX + 16];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        cr_assert_eq(system(cmd), 0);
}

Test(codec_new, refuses_a_schema_whose_field_order_changed)
{
        /* cost_micros moved before campaign_id: valid Avro, but the hot
         * path would misread every byte after event_time. */
        char *dir = schema_copy(
            "impression.avsc",
            "{\"type\":\"record\",\"name\":\"Impression\",\"fields\":["
            "{\"name\":\"event_id\",\"type\":\"string\"},"
            "{\"name\":\"event_time\",\"type\":\"long\"},"
            "{\"name\":\"channel\",\"type\":\"string\"},"
            "{\"name\":\"cost_micros\",\"type\":\"long\"},"
            "{\"name\":\"campaign_id\",\"type\":\"string\"}]}");
        char err[256] = "";
        sg_codec_t *c = sg_codec_new(dir, err, sizeof(err));

        schema_copy_remove(dir);
        cr_assert_null(c);
        cr_assert_str_eq(err, "impression.avsc: field 3 is \"cost_micros:l\", "
                              "the codec expects \"campaign_id:s\"");
}

Test(codec_new, refuses_reordered_action_symbols)
{
        char *dir = schema_copy(
            "decision.avsc",
            "{\"type\":\"record\",\"name\":\"Decision\",\"fields\":["
            "{\"name\":\"decision_id\",\"type\":\"string\"},"
            "{\"name\":\"rule_id\",\"type\":\"string\"},"
            "{\"name\":\"action\",\"type\":{\"type\":\"enum\",\"name\":"
            "\"Action\",\"symbols\":[\"RESUME\",\"PAUSE\",\"BLOCK_SOURCE\","
            "\"REALLOCATE\",\"ALERT\"]}},"
            "{\"name\":\"channel\",\"type\":\"string\"},"
            "{\"name\":\"campaign_id\",\"type\":[\"null\",\"string\"]},"
            "{\"name\":\"source\",\"type\":[\"null\",\"string\"]},"
            "{\"name\":\"reason\",\"type\":\"string\"},"
            "{\"name\":\"metrics\",\"type\":{\"type\":\"map\",\"values\":"
            "\"double\"}},"
            "{\"name\":\"window_start\",\"type\":\"long\"},"
            "{\"name\":\"window_end\",\"type\":\"long\"},"
            "{\"name\":\"decided_at\",\"type\":\"long\"},"
            "{\"name\":\"budgets\",\"type\":[\"null\",{\"type\":\"array\","
            "\"items\":{\"type\":\"record\",\"name\":\"Budget\",\"fields\":["
            "{\"name\":\"channel\",\"type\":\"string\"},"
            "{\"name\":\"budget_micros\",\"type\":\"long\"}]}}]},"
            "{\"name\":\"dry_run\",\"type\":\"boolean\"}]}");
        char err[256] = "";
        sg_codec_t *c = sg_codec_new(dir, err, sizeof(err));

        schema_copy_remove(dir);
        cr_assert_null(c);
        cr_assert_str_eq(err, "decision.avsc: enum \"Action\" symbols differ "
                              "from the codec's");
}

Test(codec_new, destroy_accepts_null)
{
        sg_codec_destroy(NULL);
}

Test(format, parses_avro_and_json_only)
{
        sg_format_t f = SG_FMT_AVRO;

        cr_assert_eq(sg_format_parse("json", &f), 0);
        cr_assert_eq(f, SG_FMT_JSON);
        cr_assert_eq(sg_format_parse("avro", &f), 0);
        cr_assert_eq(f, SG_FMT_AVRO);
        cr_assert_eq(sg_format_parse("AVRO", &f), -1);
        cr_assert_eq(sg_format_parse("", &f), -1);
        cr_assert_eq(sg_format_parse(NULL, &f), -1);
        cr_assert_eq(f, SG_FMT_AVRO);
}

/*
 * Input events: round trips
 */

static void round_trip_input(sg_format_t fmt, sg_event_type_t type, int full)
{
        sg_event_t in = make_event(type, full), out;
        int n;

        n = sg_codec_encode_input(codec, fmt, &in, buf, sizeof(buf));
        cr_assert_gt(n, 0, "%s", sg_codec_error(codec));
        /* The payload says its type: the default must not matter. */
        out = decode_ok(buf, (size_t)n, SG_EV_NONE);
        assert_event_eq(&out, &in);
}

Test(codec, round_trips_every_input_type_in_avro)
{
        round_trip_input(SG_FMT_AVRO, SG_EV_IMPRESSION, 1);
        round_trip_input(SG_FMT_AVRO, SG_EV_IMPRESSION, 0);
        round_trip_input(SG_FMT_AVRO, SG_EV_CLICK, 1);
        round_trip_input(SG_FMT_AVRO, SG_EV_CLICK, 0);
        round_trip_input(SG_FMT_AVRO, SG_EV_CONVERSION, 1);
        round_trip_input(SG_FMT_AVRO, SG_EV_CONVERSION, 0);
}

Test(codec, round_trips_every_input_type_in_json)
{
        round_trip_input(SG_FMT_JSON, SG_EV_IMPRESSION, 1);
        round_trip_input(SG_FMT_JSON, SG_EV_IMPRESSION, 0);
        round_trip_input(SG_FMT_JSON, SG_EV_CLICK, 1);
        round_trip_input(SG_FMT_JSON, SG_EV_CLICK, 0);
        round_trip_input(SG_FMT_JSON, SG_EV_CONVERSION, 1);
        round_trip_input(SG_FMT_JSON, SG_EV_CONVERSION, 0);
}

Test(codec, avro_input_uses_the_schema_id_of_the_type)
{
        sg_event_t ev = make_event(SG_EV_CONVERSION, 0);
        int n =
            sg_codec_encode_input(codec, SG_FMT_AVRO, &ev, buf, sizeof(buf));

        cr_assert_gt(n, 5);
        cr_assert_eq(memcmp(buf, "\0\0\0\0\3", 5), 0);
}

Test(codec, json_input_has_a_type_and_omits_absent_fields)
{
        sg_event_t ev = make_event(SG_EV_CLICK, 0);
        const char *want = "{\"type\":\"click\",\"event_id\":\"evt-1\","
                           "\"event_time\":1709294400123,\"channel\":"
                           "\"social\",\"campaign_id\":\"spring-sale\","
                           "\"cost_micros\":2500}";
        int n =
            sg_codec_encode_input(codec, SG_FMT_JSON, &ev, buf, sizeof(buf));

        cr_assert_eq(n, (int)strlen(want));
        cr_assert_eq(memcmp(buf, want, (size_t)n), 0, "%.*s", n, buf);
}

Test(codec, json_input_escapes_strings_and_names_the_reference)
{
        sg_event_t ev = make_event(SG_EV_CONVERSION, 1);
        json_t *root;
        int n =
            sg_codec_encode_input(codec, SG_FMT_JSON, &ev, buf, sizeof(buf));

        cr_assert_gt(n, 0);
        root = json_loadb(buf, (size_t)n, 0, NULL);
        cr_assert_not_null(root, "%.*s", n, buf);
        cr_assert_str_eq(json_string_value(json_object_get(root, "type")),
                         "conversion");
        cr_assert_str_eq(json_string_value(json_object_get(root, "user_agent")),
                         "Mozilla/5.0 \"quoted\" \\ caf\xc3\xa9");
        cr_assert_str_eq(json_string_value(json_object_get(root, "click_id")),
                         "ref-7");
        cr_assert_null(json_object_get(root, "cost_micros"));
        cr_assert_eq(
            json_integer_value(json_object_get(root, "revenue_micros")),
            123456789012);
        json_decref(root);
}

Test(codec, encode_input_refuses_an_event_without_a_type)
{
        sg_event_t ev = make_event(SG_EV_NONE, 0);

        cr_assert_eq(
            sg_codec_encode_input(codec, SG_FMT_AVRO, &ev, buf, sizeof(buf)),
            -1);
        cr_assert_str_eq(sg_codec_error(codec),
                         "event type 0 is not encodable");
        cr_assert_eq(
            sg_codec_encode_input(codec, SG_FMT_JSON, &ev, buf, sizeof(buf)),
            -1);
}

/* Every size short of the encoding fails; the exact size succeeds. */
#define ASSERT_NEEDS_EXACTLY(call_with_size)                                   \
        do {                                                                   \
                size_t size;                                                   \
                int need;                                                      \
                for (size = 0;; size++) {                                      \
                        need = (call_with_size);                               \
                        if (need >= 0)                                         \
                                break;                                         \
                        cr_assert_neq(sg_codec_error(codec)[0], '\0');         \
                        cr_assert_lt(size, sizeof(buf));                       \
                }                                                              \
                cr_assert_eq((size_t)need, size);                              \
        } while (0)

Test(codec, encoders_fail_cleanly_on_a_short_buffer)
{
        sg_event_t ev = make_event(SG_EV_CLICK, 1);
        sg_snapshot_t s = make_snapshot("brand");
        sg_decision_t d = make_decision(1);

        ASSERT_NEEDS_EXACTLY(
            sg_codec_encode_input(codec, SG_FMT_AVRO, &ev, buf, size));
        ASSERT_NEEDS_EXACTLY(
            sg_codec_encode_input(codec, SG_FMT_JSON, &ev, buf, size));
        ASSERT_NEEDS_EXACTLY(sg_codec_encode_normalized(codec, &ev, buf, size));
        ASSERT_NEEDS_EXACTLY(sg_codec_encode_snapshot(codec, &s, buf, size));
        ASSERT_NEEDS_EXACTLY(
            sg_codec_encode_decision(codec, SG_FMT_AVRO, &d, buf, size));
        ASSERT_NEEDS_EXACTLY(
            sg_codec_encode_decision(codec, SG_FMT_JSON, &d, buf, size));
        ASSERT_NEEDS_EXACTLY(
            sg_codec_encode_kpi(codec, SG_FMT_AVRO, &s, buf, size));
        ASSERT_NEEDS_EXACTLY(
            sg_codec_encode_kpi(codec, SG_FMT_JSON, &s, buf, size));
}

Test(codec, short_buffer_is_reported)
{
        sg_event_t ev = make_event(SG_EV_CLICK, 1);

        cr_assert_eq(sg_codec_encode_normalized(codec, &ev, buf, 20), -1);
        cr_assert_str_eq(sg_codec_error(codec), "buffer of 20 bytes too small");
}

/*
 * Input events: accepted JSON variants
 */

#define JSON_CLICK_HEAD                                                        \
        "{\"event_id\":\"c1\",\"event_time\":1700000000000,"                   \
        "\"channel\":\"search\",\"campaign_id\":\"k\""

Test(codec, json_without_type_uses_the_topic_default)
{
        const char *j = JSON_CLICK_HEAD ",\"cost_micros\":7}";
        sg_event_t ev = decode_ok(j, strlen(j), SG_EV_CLICK);

        cr_assert_eq(ev.type, SG_EV_CLICK);
        cr_assert_eq(ev.cost_micros, 7);
}

Test(codec, json_type_field_beats_the_topic_default)
{
        const char *j = JSON_CLICK_HEAD ",\"type\":\"conversion\","
                                        "\"revenue_micros\":5}";
        sg_event_t ev = decode_ok(j, strlen(j), SG_EV_CLICK);

        cr_assert_eq(ev.type, SG_EV_CONVERSION);
        cr_assert_eq(ev.revenue_micros, 5);
        cr_assert_eq(ev.cost_micros, 0);
}

Test(codec, json_null_optional_field_is_absent)
{
        const char *j = JSON_CLICK_HEAD ",\"cost_micros\":7,\"ip\":null,"
                                        "\"impression_id\":null,"
                                        "\"ad_id\":\"a\"}";
        sg_event_t ev = decode_ok(j, strlen(j), SG_EV_CLICK);

        cr_assert_eq(ev.has_ip, 0);
        cr_assert_str_eq(ev.ip, "");
        cr_assert_eq(ev.has_ref_id, 0);
        cr_assert_eq(ev.has_ad_id, 1);
        cr_assert_str_eq(ev.ad_id, "a");
}

Test(codec, json_click_maps_impression_id_to_ref_id)
{
        const char *j = JSON_CLICK_HEAD ",\"cost_micros\":7,"
                                        "\"impression_id\":\"imp-9\"}";
        sg_event_t ev = decode_ok(j, strlen(j), SG_EV_CLICK);

        cr_assert_eq(ev.has_ref_id, 1);
        cr_assert_str_eq(ev.ref_id, "imp-9");
}

Test(codec, json_allows_leading_white_space_and_unknown_fields)
{
        const char *j = " \r\n\t" JSON_CLICK_HEAD ",\"cost_micros\":7,"
                        "\"extra\":{\"nested\":[1,2]}}\n";
        sg_event_t ev = decode_ok(j, strlen(j), SG_EV_CLICK);

        cr_assert_str_eq(ev.event_id, "c1");
}

Test(codec, decodes_negative_money_faithfully)
{
        const char *j = JSON_CLICK_HEAD ",\"cost_micros\":-250}";
        sg_event_t ev = decode_ok(j, strlen(j), SG_EV_CLICK);

        cr_assert_eq(ev.cost_micros, -250);
}

Test(codec, accepts_strings_that_fill_the_buffer_exactly)
{
        char ua[SG_UA_LEN];
        char *j = malloc(2048);
        sg_event_t ev;

        memset(ua, 'u', sizeof(ua) - 1);
        ua[sizeof(ua) - 1] = '\0';
        snprintf(j, 2048,
                 JSON_CLICK_HEAD ",\"cost_micros\":1,"
                                 "\"user_agent\":\"%s\"}",
                 ua);
        ev = decode_ok(j, strlen(j), SG_EV_CLICK);
        cr_assert_str_eq(ev.user_agent, ua);
        free(j);
}

Test(codec, rejects_json_user_agent_longer_than_its_buffer)
{
        char ua[SG_UA_LEN + 1];
        char *j = malloc(2048);

        memset(ua, 'u', sizeof(ua) - 1);
        ua[sizeof(ua) - 1] = '\0';
        snprintf(j, 2048,
                 JSON_CLICK_HEAD ",\"cost_micros\":1,"
                                 "\"user_agent\":\"%s\"}",
                 ua);
        decode_rejects(j, strlen(j), SG_ERR_BAD_VALUE,
                       "field=user_agent too long (max 511 bytes)");
        free(j);
}

Test(codec, rejects_avro_channel_longer_than_its_buffer)
{
        sg_event_t ev = make_event(SG_EV_IMPRESSION, 0);
        uint8_t *p;
        int n;

        n = sg_codec_encode_input(codec, SG_FMT_AVRO, &ev, buf, sizeof(buf));
        cr_assert_gt(n, 0);
        decode_ok(buf, (size_t)n, SG_EV_NONE);
        /* Rewrite "social" (6) as 64 x's: zigzag(64) = 128 = 0x80 0x01. */
        p = (uint8_t *)buf + 5;
        p += 1 + p[0] / 2; /* event_id */
        p += 6;            /* event_time: 1709294400123 is 6 varint bytes */
        cr_assert_eq(p[0], 12);
        memmove(p + 66, p + 7, (size_t)((uint8_t *)buf + n - (p + 7)));
        p[0] = 0x80;
        p[1] = 0x01;
        memset(p + 2, 'x', 64);
        n += 66 - 7;
        decode_rejects(buf, (size_t)n, SG_ERR_BAD_VALUE,
                       "field=channel too long (max 63 bytes)");
}

/*
 * Input events: every rejection reason
 */

struct reject_case {
        const char *name;
        const char *bytes;
        size_t len;
        sg_event_type_t default_type;
        const char *reason;
        const char *detail;
};

#define BYTES(s)  s, sizeof(s) - 1
#define FRAME(id) "\0\0\0\0" id
/* A minimal impression: "e", 1, "c", "k", five nulls, cost 5. */
#define IMP_BODY                                                               \
        "\x02"                                                                 \
        "e"                                                                    \
        "\x02"                                                                 \
        "\x02"                                                                 \
        "c"                                                                    \
        "\x02"                                                                 \
        "k"                                                                    \
        "\0\0\0\0\0"                                                           \
        "\x0a"
#define IMP_HEAD                                                               \
        "\x02"                                                                 \
        "e"                                                                    \
        "\x02"                                                                 \
        "\x02"                                                                 \
        "c"                                                                    \
        "\x02"                                                                 \
        "k"

static const struct reject_case reject_cases[] = {
    {"empty payload", BYTES(""), SG_EV_CLICK, SG_ERR_BAD_FRAMING,
     "empty payload"},
    {"framing cut at 4 bytes", BYTES("\0\0\0\1"), SG_EV_CLICK,
     SG_ERR_BAD_FRAMING, "4 bytes, Avro framing needs 5"},
    {"plain text", BYTES("hello"), SG_EV_CLICK, SG_ERR_BAD_FRAMING,
     "first byte 0x68 is neither Avro framing nor a JSON object"},
    {"white space only", BYTES(" \n\t "), SG_EV_CLICK, SG_ERR_BAD_FRAMING,
     "first byte 0x20 is neither Avro framing nor a JSON object"},
    {"JSON array", BYTES("[{}]"), SG_EV_CLICK, SG_ERR_BAD_FRAMING,
     "first byte 0x5b is neither Avro framing nor a JSON object"},
    {"magic byte 1", BYTES("\1\0\0\0\1" IMP_BODY), SG_EV_CLICK,
     SG_ERR_BAD_FRAMING,
     "first byte 0x01 is neither Avro framing nor a JSON object"},
    {"schema id 0", BYTES(FRAME("\0") IMP_BODY), SG_EV_CLICK,
     SG_ERR_UNKNOWN_SCHEMA, "schema id 0 is not an input event"},
    {"schema id 4 (normalized)", BYTES(FRAME("\4") IMP_BODY), SG_EV_CLICK,
     SG_ERR_UNKNOWN_SCHEMA, "schema id 4 is not an input event"},
    {"schema id 99", BYTES(FRAME("\x63") IMP_BODY), SG_EV_CLICK,
     SG_ERR_UNKNOWN_SCHEMA,
     "schema id 99 is not an input event and has no registry/99.avsc"},
    {"schema id 2^24+1", BYTES("\0\1\0\0\1" IMP_BODY), SG_EV_CLICK,
     SG_ERR_UNKNOWN_SCHEMA,
     "schema id 16777217 is not an input event and has no "
     "registry/16777217.avsc"},
    {"framing without a body", BYTES(FRAME("\1")), SG_EV_CLICK,
     SG_ERR_AVRO_DECODE, "field=event_id truncated"},
    {"body cut inside the nulls", BYTES(FRAME("\1") IMP_HEAD "\0\0"),
     SG_EV_CLICK, SG_ERR_AVRO_DECODE, "field=ip truncated"},
    {"body without cost", BYTES(FRAME("\1") IMP_HEAD "\0\0\0\0\0"), SG_EV_CLICK,
     SG_ERR_AVRO_DECODE, "field=cost_micros truncated"},
    {"trailing byte", BYTES(FRAME("\1") IMP_BODY "\0"), SG_EV_CLICK,
     SG_ERR_AVRO_DECODE, "1 trailing bytes after the record"},
    {"string length past the end",
     BYTES(FRAME("\1") "\x08"
                       "abc"),
     SG_EV_CLICK, SG_ERR_AVRO_DECODE,
     "field=event_id length 4 exceeds the 3 bytes left"},
    {"string length 2^62-1",
     BYTES(FRAME("\1") "\xfe\xff\xff\xff\xff\xff\xff\xff\x7f"), SG_EV_CLICK,
     SG_ERR_AVRO_DECODE,
     "field=event_id length 4611686018427387903 exceeds the 0 bytes left"},
    {"string length -1",
     BYTES(FRAME("\1") "\x01"
                       "abc"),
     SG_EV_CLICK, SG_ERR_AVRO_DECODE,
     "field=event_id length -1 exceeds the 3 bytes left"},
    {"union branch 2",
     BYTES(FRAME("\1") IMP_HEAD "\x04"
                                "\0\0\0\0\x0a"),
     SG_EV_CLICK, SG_ERR_AVRO_DECODE, "field=ad_id index 2 out of range [0,2)"},
    {"union branch -1", BYTES(FRAME("\2") IMP_HEAD "\0\0\0\0\x01"), SG_EV_CLICK,
     SG_ERR_AVRO_DECODE, "field=country index -1 out of range [0,2)"},
    {"varint of 11 bytes",
     BYTES(FRAME("\1") "\x02"
                       "e"
                       "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),
     SG_EV_CLICK, SG_ERR_AVRO_DECODE,
     "field=event_time varint overflows 64 bits"},
    {"varint of 11 bytes, 64 bits clean",
     BYTES(FRAME("\1") "\x02"
                       "e"
                       "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x81\x00"),
     SG_EV_CLICK, SG_ERR_AVRO_DECODE,
     "field=event_time varint longer than 10 bytes"},
    {"Avro string with a NUL",
     BYTES(FRAME("\1") "\x04"
                       "e\0"
                       "\x02" IMP_HEAD),
     SG_EV_CLICK, SG_ERR_BAD_VALUE, "field=event_id contains a NUL byte"},
    {"Avro string not UTF-8",
     BYTES(FRAME("\1") "\x04"
                       "\xc3\x28"
                       "\x02"),
     SG_EV_CLICK, SG_ERR_AVRO_DECODE, "field=event_id is not valid UTF-8"},
    {"JSON cut short", BYTES("{\"event_id\":"), SG_EV_CLICK, SG_ERR_JSON_PARSE,
     "unexpected token near end of file at line 1 column 12 (position 12)"},
    {"JSON with trailing garbage", BYTES("{} x"), SG_EV_CLICK,
     SG_ERR_JSON_PARSE,
     "end of file expected near 'x' at line 1 column 4 (position 4)"},
    {"JSON with a repeated key", BYTES("{\"a\":1,\"a\":2}"), SG_EV_CLICK,
     SG_ERR_JSON_PARSE,
     "duplicate object key near '\"a\"' at line 1 column 10 (position 10)"},
    {"JSON type unknown", BYTES("{\"type\":\"view\"}"), SG_EV_CLICK,
     SG_ERR_UNKNOWN_TYPE, "type=view"},
    {"JSON type unknown and quoted", BYTES("{\"type\":\"page view\"}"),
     SG_EV_CLICK, SG_ERR_UNKNOWN_TYPE, "type=\"page view\""},
    {"JSON without type and no default", BYTES(JSON_CLICK_HEAD "}"), SG_EV_NONE,
     SG_ERR_UNKNOWN_TYPE, "no type field and no default type"},
    {"JSON type not a string", BYTES("{\"type\":2}"), SG_EV_CLICK,
     SG_ERR_BAD_VALUE, "field=type expected a string"},
    {"click without cost", BYTES(JSON_CLICK_HEAD "}"), SG_EV_CLICK,
     SG_ERR_MISSING_FIELD, "field=cost_micros"},
    {"impression without cost", BYTES(JSON_CLICK_HEAD ",\"cost_micros\":null}"),
     SG_EV_IMPRESSION, SG_ERR_MISSING_FIELD, "field=cost_micros"},
    {"conversion without revenue", BYTES(JSON_CLICK_HEAD ",\"cost_micros\":1}"),
     SG_EV_CONVERSION, SG_ERR_MISSING_FIELD, "field=revenue_micros"},
    {"without event_id",
     BYTES("{\"event_time\":1,\"channel\":\"c\","
           "\"campaign_id\":\"k\",\"cost_micros\":1}"),
     SG_EV_CLICK, SG_ERR_MISSING_FIELD, "field=event_id"},
    {"null event_id", BYTES("{\"event_id\":null}"), SG_EV_CLICK,
     SG_ERR_MISSING_FIELD, "field=event_id"},
    {"without event_time", BYTES("{\"event_id\":\"e\"}"), SG_EV_CLICK,
     SG_ERR_MISSING_FIELD, "field=event_time"},
    {"without channel", BYTES("{\"event_id\":\"e\",\"event_time\":1}"),
     SG_EV_CLICK, SG_ERR_MISSING_FIELD, "field=channel"},
    {"without campaign_id",
     BYTES("{\"event_id\":\"e\",\"event_time\":1,\"channel\":\"c\"}"),
     SG_EV_CLICK, SG_ERR_MISSING_FIELD, "field=campaign_id"},
    {"string event_time",
     BYTES("{\"event_id\":\"e\",\"event_time\":\"1700000000000\"}"),
     SG_EV_CLICK, SG_ERR_BAD_VALUE, "field=event_time expected an integer"},
    {"float cost", BYTES(JSON_CLICK_HEAD ",\"cost_micros\":2.5}"), SG_EV_CLICK,
     SG_ERR_BAD_VALUE, "field=cost_micros expected an integer"},
    {"integral float revenue",
     BYTES(JSON_CLICK_HEAD ",\"revenue_micros\":1e6}"), SG_EV_CONVERSION,
     SG_ERR_BAD_VALUE, "field=revenue_micros expected an integer"},
    {"numeric event_id", BYTES("{\"event_id\":42}"), SG_EV_CLICK,
     SG_ERR_BAD_VALUE, "field=event_id expected a string"},
    {"boolean country",
     BYTES(JSON_CLICK_HEAD ",\"cost_micros\":1,\"country\":true}"), SG_EV_CLICK,
     SG_ERR_BAD_VALUE, "field=country expected a string"},
    {"object impression_id",
     BYTES(JSON_CLICK_HEAD ",\"cost_micros\":1,\"impression_id\":{}}"),
     SG_EV_CLICK, SG_ERR_BAD_VALUE, "field=impression_id expected a string"},
    {"JSON string with a NUL",
     BYTES(JSON_CLICK_HEAD ",\"cost_micros\":1,\"ip\":\"1.2\\u00003.4\"}"),
     SG_EV_CLICK, SG_ERR_BAD_VALUE, "field=ip contains a NUL byte"},
    {"country longer than 7 bytes",
     BYTES(JSON_CLICK_HEAD ",\"cost_micros\":1,\"country\":\"FRANCE!!\"}"),
     SG_EV_CLICK, SG_ERR_BAD_VALUE, "field=country too long (max 7 bytes)"},
};

#define N_REJECT_CASES (sizeof(reject_cases) / sizeof(reject_cases[0]))

/* Criterion copies parameters into another process image where pointers
 * into this one are meaningless: pass the index into the table. */
ParameterizedTestParameters(decode_input, rejects_with_reason_and_detail)
{
        static size_t idx[N_REJECT_CASES];
        size_t i;

        for (i = 0; i < N_REJECT_CASES; i++)
                idx[i] = i;
        return cr_make_param_array(size_t, idx, N_REJECT_CASES);
}

ParameterizedTest(size_t *i, decode_input, rejects_with_reason_and_detail,
                  .init = setup, .fini = teardown)
{
        const struct reject_case *tc = &reject_cases[*i];
        sg_event_t ev;
        const char *reason = NULL;
        char detail[256] = "";
        int rc;

        memset(&ev, 0xa5, sizeof(ev));
        rc = sg_codec_decode_input(codec, tc->bytes, tc->len, tc->default_type,
                                   &ev, &reason, detail, sizeof(detail));
        cr_assert_eq(rc, -1, "%s: accepted", tc->name);
        cr_assert_str_eq(reason, tc->reason, "%s: reason", tc->name);
        cr_assert_str_eq(detail, tc->detail, "%s: detail", tc->name);
        /* A rejected event is never half-filled. */
        cr_assert_eq(ev.type, SG_EV_NONE, "%s", tc->name);
        cr_assert_str_eq(ev.event_id, "", "%s", tc->name);
}

Test(codec, rejection_detail_fits_a_small_buffer)
{
        sg_event_t ev;
        const char *reason = NULL;
        char detail[8];

        cr_assert_eq(sg_codec_decode_input(codec, "{\"event_id\":42}", 15,
                                           SG_EV_CLICK, &ev, &reason, detail,
                                           sizeof(detail)),
                     -1);
        cr_assert_str_eq(reason, SG_ERR_BAD_VALUE);
        cr_assert_str_eq(detail, "field=e");
}

/*
 * Fixtures written by Python's avro library (make_fixtures.py)
 */

static sg_event_t decode_fixture(const char *name, uint8_t *raw, size_t *n)
{
        *n = load_fixture(name, raw, 4096);
        return decode_ok(raw, *n, SG_EV_NONE);
}

/* Our encoding of what we decoded is Python's encoding, byte for byte. */
static void assert_reencodes_input(const sg_event_t *ev, const uint8_t *raw,
                                   size_t n)
{
        int m = sg_codec_encode_input(codec, SG_FMT_AVRO, ev, buf, sizeof(buf));

        cr_assert_eq(m, (int)n, "%s", sg_codec_error(codec));
        cr_assert_eq(memcmp(buf, raw, n), 0);
}

Test(codec, decodes_python_impression_with_every_optional_field)
{
        uint8_t raw[4096];
        size_t n;
        sg_event_t ev = decode_fixture("impression_full.bin", raw, &n);

        cr_assert_eq(ev.type, SG_EV_IMPRESSION);
        cr_assert_str_eq(ev.event_id, "imp-0001");
        cr_assert_eq(ev.event_time, 1709294400123);
        cr_assert_str_eq(ev.channel, "social");
        cr_assert_str_eq(ev.campaign_id, "spring-sale");
        cr_assert_eq(ev.has_ad_id, 1);
        cr_assert_str_eq(ev.ad_id, "ad-42");
        cr_assert_eq(ev.has_device_id, 1);
        cr_assert_str_eq(ev.device_id, "dev-9f3c");
        cr_assert_eq(ev.has_ip, 1);
        cr_assert_str_eq(ev.ip, "203.0.113.7");
        cr_assert_eq(ev.has_user_agent, 1);
        cr_assert_str_eq(
            ev.user_agent,
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) caf\xc3\xa9");
        cr_assert_eq(ev.has_country, 1);
        cr_assert_str_eq(ev.country, "FR");
        cr_assert_eq(ev.cost_micros, 2500);
        cr_assert_eq(ev.revenue_micros, 0);
        cr_assert_eq(ev.has_ref_id, 0);
        assert_reencodes_input(&ev, raw, n);
}

Test(codec, decodes_python_impression_with_null_optional_fields)
{
        uint8_t raw[4096];
        size_t n;
        sg_event_t ev = decode_fixture("impression_min.bin", raw, &n);

        cr_assert_eq(ev.type, SG_EV_IMPRESSION);
        cr_assert_str_eq(ev.event_id, "imp-0002");
        cr_assert_eq(ev.event_time, 1709294400999);
        cr_assert_str_eq(ev.channel, "search");
        cr_assert_str_eq(ev.campaign_id, "brand");
        cr_assert_eq(ev.has_ad_id + ev.has_device_id + ev.has_ip +
                         ev.has_user_agent + ev.has_country + ev.has_ref_id,
                     0);
        cr_assert_str_eq(ev.ad_id, "");
        cr_assert_str_eq(ev.user_agent, "");
        cr_assert_eq(ev.cost_micros, 0);
        assert_reencodes_input(&ev, raw, n);
}

Test(codec, decodes_python_click_with_impression_id)
{
        uint8_t raw[4096];
        size_t n;
        sg_event_t ev = decode_fixture("click_full.bin", raw, &n);

        cr_assert_eq(ev.type, SG_EV_CLICK);
        cr_assert_str_eq(ev.event_id, "clk-0001");
        cr_assert_eq(ev.event_time, 1709294401500);
        cr_assert_str_eq(ev.channel, "social");
        cr_assert_str_eq(ev.campaign_id, "spring-sale");
        cr_assert_str_eq(ev.ad_id, "ad-42");
        cr_assert_str_eq(ev.device_id, "dev-9f3c");
        cr_assert_str_eq(ev.ip, "2001:db8::1");
        cr_assert_str_eq(ev.user_agent, "Mozilla/5.0 (X11; Linux x86_64)");
        cr_assert_str_eq(ev.country, "DE");
        cr_assert_eq(ev.cost_micros, 350000);
        cr_assert_eq(ev.has_ref_id, 1);
        cr_assert_str_eq(ev.ref_id, "imp-0001");
        assert_reencodes_input(&ev, raw, n);
}

Test(codec, decodes_python_click_with_negative_cost_and_no_options)
{
        uint8_t raw[4096];
        size_t n;
        sg_event_t ev = decode_fixture("click_min.bin", raw, &n);

        cr_assert_eq(ev.type, SG_EV_CLICK);
        cr_assert_str_eq(ev.event_id, "clk-0002");
        cr_assert_eq(ev.event_time, 1);
        cr_assert_str_eq(ev.channel, "kol");
        cr_assert_str_eq(ev.campaign_id, "c-7");
        cr_assert_eq(ev.cost_micros, -250);
        cr_assert_eq(ev.has_ad_id + ev.has_device_id + ev.has_ip +
                         ev.has_user_agent + ev.has_country + ev.has_ref_id,
                     0);
        assert_reencodes_input(&ev, raw, n);
}

Test(codec, decodes_python_conversion_with_click_id)
{
        uint8_t raw[4096];
        size_t n;
        sg_event_t ev = decode_fixture("conversion_full.bin", raw, &n);

        cr_assert_eq(ev.type, SG_EV_CONVERSION);
        cr_assert_str_eq(ev.event_id, "cnv-0001");
        cr_assert_eq(ev.event_time, 1709294460000);
        cr_assert_str_eq(ev.channel, "social");
        cr_assert_str_eq(ev.campaign_id, "spring-sale");
        cr_assert_str_eq(ev.ad_id, "ad-42");
        cr_assert_str_eq(ev.device_id, "dev-9f3c");
        cr_assert_str_eq(ev.ip, "203.0.113.7");
        cr_assert_str_eq(ev.user_agent,
                         "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)");
        cr_assert_str_eq(ev.country, "FR");
        cr_assert_eq(ev.revenue_micros, 123456789012);
        cr_assert_eq(ev.cost_micros, 0);
        cr_assert_eq(ev.has_ref_id, 1);
        cr_assert_str_eq(ev.ref_id, "clk-0001");
        assert_reencodes_input(&ev, raw, n);
}

Test(codec, decodes_python_conversion_with_some_options)
{
        uint8_t raw[4096];
        size_t n;
        sg_event_t ev = decode_fixture("conversion_min.bin", raw, &n);

        cr_assert_eq(ev.type, SG_EV_CONVERSION);
        cr_assert_str_eq(ev.event_id, "cnv-0002");
        cr_assert_eq(ev.event_time, 1709294460001);
        cr_assert_str_eq(ev.channel, "gifts");
        cr_assert_str_eq(ev.campaign_id, "");
        cr_assert_eq(ev.has_device_id, 1);
        cr_assert_str_eq(ev.device_id, "dev-1");
        cr_assert_eq(ev.has_ad_id + ev.has_ip + ev.has_user_agent +
                         ev.has_country + ev.has_ref_id,
                     0);
        cr_assert_eq(ev.revenue_micros, 9990000);
        assert_reencodes_input(&ev, raw, n);
}

Test(codec, decodes_python_normalized_event)
{
        uint8_t raw[4096];
        size_t n = load_fixture("normalized_click.bin", raw, sizeof(raw));
        sg_event_t ev;
        int m;

        cr_assert_eq(sg_codec_decode_normalized(codec, raw, n, &ev), 0, "%s",
                     sg_codec_error(codec));
        cr_assert_eq(ev.type, SG_EV_CLICK);
        cr_assert_str_eq(ev.event_id, "clk-0001");
        cr_assert_eq(ev.event_time, 1709294401500);
        cr_assert_str_eq(ev.channel, "social");
        cr_assert_str_eq(ev.campaign_id, "spring-sale");
        cr_assert_eq(ev.has_ad_id, 0);
        cr_assert_str_eq(ev.device_id, "dev-9f3c");
        cr_assert_str_eq(ev.ip, "198.51.100.20");
        cr_assert_str_eq(ev.user_agent, "curl/8.0");
        cr_assert_eq(ev.has_country, 0);
        cr_assert_eq(ev.cost_micros, 350000);
        cr_assert_eq(ev.revenue_micros, 0);
        cr_assert_eq(ev.has_ref_id, 1);
        cr_assert_str_eq(ev.ref_id, "imp-0001");
        cr_assert_eq(ev.ivt_mask, SG_IVT_BOT_UA | SG_IVT_DC_IP);
        cr_assert_str_eq(ev.ivt_reason, "bot_ua");
        cr_assert_str_eq(ev.src_topic, "ad-clicks");
        cr_assert_eq(ev.src_partition, 3);
        cr_assert_eq(ev.src_offset, 9876543210);
        m = sg_codec_encode_normalized(codec, &ev, buf, sizeof(buf));
        cr_assert_eq(m, (int)n);
        cr_assert_eq(memcmp(buf, raw, n), 0);
}

Test(codec, decodes_python_snapshot)
{
        uint8_t raw[4096];
        size_t n = load_fixture("snapshot.bin", raw, sizeof(raw));
        sg_snapshot_t s;
        int m;

        cr_assert_eq(sg_codec_decode_snapshot(codec, raw, n, &s), 0, "%s",
                     sg_codec_error(codec));
        cr_assert_str_eq(s.channel, "search");
        cr_assert_str_eq(s.campaign_id, "");
        cr_assert_eq(s.window_start, 1709294400000);
        cr_assert_eq(s.window_end, 1709294460000);
        cr_assert_eq(s.final, 1);
        cr_assert_eq(s.c.impressions, 100000);
        cr_assert_eq(s.c.clicks, 2000);
        cr_assert_eq(s.c.conversions, 40);
        cr_assert_eq(s.c.spend_micros, 50000000);
        cr_assert_eq(s.c.revenue_micros, 150000000);
        cr_assert_eq(s.c.invalid_clicks, 100);
        cr_assert_eq(s.c.invalid_impressions, 7);
        cr_assert_eq(s.c.invalid_spend_micros, 2500000);
        cr_assert_eq(s.c.unique_devices, 31337);
        cr_assert_str_eq(s.window, "1m");
        cr_assert_eq(s.x.unique_ips, 2999);
        cr_assert_eq(s.x.ivt_bot_ua, 60);
        cr_assert_eq(s.x.ivt_no_ua, 5);
        cr_assert_eq(s.x.ivt_dc_ip, 44);
        cr_assert_eq(s.x.ivt_dup_click, 3);
        cr_assert_eq(s.x.freq_cap_impressions, 1234);
        cr_assert_eq(s.x.ctc_lt_10s, 4);
        cr_assert_eq(s.x.ctc_lt_1m, 6);
        cr_assert_eq(s.x.ctc_lt_1h, 20);
        cr_assert_eq(s.x.ctc_ge_1h, 2);
        cr_assert_eq(s.x.conversions_no_click, 8);
        cr_assert_eq(s.x.source_clicks_untracked, 17);
        cr_assert_eq(s.top_cnt, 2);
        cr_assert_str_eq(s.top[0].source, "ip:203.0.113.7");
        cr_assert_eq(s.top[0].clicks, 400);
        cr_assert_str_eq(s.top[1].source, "device:dev-42");
        cr_assert_eq(s.top[1].clicks, 90);
        cr_assert_eq(s.watermark, 1709294490000);
        m = sg_codec_encode_snapshot(codec, &s, buf, sizeof(buf));
        cr_assert_eq(m, (int)n);
        cr_assert_eq(memcmp(buf, raw, n), 0);
}

/*
 * A decision of the writer before dry_run (the Python fixtures) re-encodes
 * with the current schema: the same bytes, then dry_run false (one 0
 * byte).
 */
static void assert_reencodes_old_decision(const sg_decision_t *d,
                                          const uint8_t *raw, size_t n)
{
        int m = sg_codec_encode_decision(codec, SG_FMT_AVRO, d, buf,
                                         sizeof(buf));

        cr_assert_eq(m, (int)n + 1);
        cr_assert_eq(memcmp(buf, raw, n), 0);
        cr_assert_eq(buf[n], 0);
}

Test(codec, decodes_python_reallocate_decision_in_map_order)
{
        uint8_t raw[4096];
        size_t n = load_fixture("decision_reallocate.bin", raw, sizeof(raw));
        sg_decision_t d;

        cr_assert_eq(sg_codec_decode_decision(codec, raw, n, &d), 0, "%s",
                     sg_codec_error(codec));
        cr_assert_str_eq(d.decision_id, "d-5e1f");
        cr_assert_str_eq(d.rule_id, "realloc-roas");
        cr_assert_eq(d.action, SG_ACT_REALLOCATE);
        cr_assert_str_eq(d.channel, "social");
        cr_assert_str_eq(d.campaign_id, "");
        cr_assert_str_eq(d.source, "");
        cr_assert_str_eq(d.reason, "roas 3.2 >= 3.0 over 1h");
        cr_assert_eq(d.metric_cnt, 2);
        cr_assert_str_eq(d.metrics[0].name, "roas");
        cr_assert_eq(d.metrics[0].value, 3.2);
        cr_assert_str_eq(d.metrics[1].name, "spend");
        cr_assert_eq(d.metrics[1].value, 1500000.0);
        cr_assert_eq(d.window_start, 1709290800000);
        cr_assert_eq(d.window_end, 1709294400000);
        cr_assert_eq(d.decided_at, 1709294400500);
        cr_assert_eq(d.budget_cnt, 2);
        cr_assert_str_eq(d.budgets[0].channel, "social");
        cr_assert_eq(d.budgets[0].budget_micros, 460000000);
        cr_assert_str_eq(d.budgets[1].channel, "kol");
        cr_assert_eq(d.budgets[1].budget_micros, 110000000);
        cr_assert_eq(d.dry_run, 0);
        assert_reencodes_old_decision(&d, raw, n);
}

Test(codec, decodes_python_block_decision_with_null_budgets)
{
        uint8_t raw[4096];
        size_t n = load_fixture("decision_block.bin", raw, sizeof(raw));
        sg_decision_t d;

        cr_assert_eq(sg_codec_decode_decision(codec, raw, n, &d), 0, "%s",
                     sg_codec_error(codec));
        cr_assert_str_eq(d.decision_id, "d-77");
        cr_assert_str_eq(d.rule_id, "click-flood");
        cr_assert_eq(d.action, SG_ACT_BLOCK_SOURCE);
        cr_assert_str_eq(d.channel, "search");
        cr_assert_str_eq(d.campaign_id, "brand");
        cr_assert_str_eq(d.source, "ip:203.0.113.9");
        cr_assert_str_eq(d.reason, "clicks_per_ip 57 > 20 over 1m");
        cr_assert_eq(d.metric_cnt, 0);
        cr_assert_eq(d.window_start, 1709294340000);
        cr_assert_eq(d.window_end, 1709294400000);
        cr_assert_eq(d.decided_at, 1709294401000);
        cr_assert_eq(d.budget_cnt, -1);
        cr_assert_eq(d.dry_run, 0);
        assert_reencodes_old_decision(&d, raw, n);
}

Test(codec, decodes_python_dry_run_decision_and_reencodes_it_exactly)
{
        uint8_t raw[4096];
        size_t n = load_fixture("decision_pause_dry_run.bin", raw, sizeof(raw));
        sg_decision_t d;
        int m;

        cr_assert_eq(sg_codec_decode_decision(codec, raw, n, &d), 0, "%s",
                     sg_codec_error(codec));
        cr_assert_str_eq(d.decision_id, "0f3a9c51e2d84b7a9c0d1e2f3a4b5c6d");
        cr_assert_str_eq(d.rule_id, "ivt_shadow");
        cr_assert_eq(d.action, SG_ACT_PAUSE);
        cr_assert_str_eq(d.channel, "social");
        cr_assert_str_eq(d.campaign_id, "");
        cr_assert_str_eq(d.reason,
                         "ivt_shadow: ivt_rate 0.15 > 0.1, dry run (shadow "
                         "rule)");
        cr_assert_eq(d.metric_cnt, 2);
        cr_assert_eq(d.window_end, 1709294400000);
        cr_assert_eq(d.budget_cnt, -1);
        cr_assert_eq(d.dry_run, 1);
        m = sg_codec_encode_decision(codec, SG_FMT_AVRO, &d, buf, sizeof(buf));
        cr_assert_eq(m, (int)n);
        cr_assert_eq(memcmp(buf, raw, n), 0);
}

Test(codec, an_old_decision_one_byte_short_of_a_new_one_is_not_a_dry_run)
{
        uint8_t raw[4096];
        size_t n = load_fixture("decision_pause_dry_run.bin", raw, sizeof(raw));
        sg_decision_t d;

        /* Without its last byte the record is exactly what the writer
         * before dry_run wrote for the same decision. */
        cr_assert_eq(raw[n - 1], 1);
        cr_assert_eq(sg_codec_decode_decision(codec, raw, n - 1, &d), 0, "%s",
                     sg_codec_error(codec));
        cr_assert_str_eq(d.rule_id, "ivt_shadow");
        cr_assert_eq(d.dry_run, 0);
        /* A byte too many is neither. */
        raw[n] = 0;
        cr_assert_eq(sg_codec_decode_decision(codec, raw, n + 1, &d), -1);
        cr_assert_str_eq(sg_codec_error(codec),
                         "1 trailing bytes after the record");
}

Test(codec, decodes_python_kpi_and_reencodes_its_ratios_exactly)
{
        uint8_t raw[4096];
        size_t n = load_fixture("kpi.bin", raw, sizeof(raw));
        sg_snapshot_t s;
        int m;

        cr_assert_eq(sg_codec_decode_kpi(codec, raw, n, &s), 0, "%s",
                     sg_codec_error(codec));
        cr_assert_str_eq(s.channel, "social");
        cr_assert_str_eq(s.campaign_id, "spring-sale");
        cr_assert_eq(s.window_start, 1709294400000);
        cr_assert_eq(s.window_end, 1709294460000);
        cr_assert_eq(s.final, 1);
        cr_assert_eq(s.c.impressions, 1000);
        cr_assert_eq(s.c.clicks, 20);
        cr_assert_eq(s.c.conversions, 0);
        cr_assert_eq(s.c.spend_micros, 4000000);
        cr_assert_eq(s.c.revenue_micros, 0);
        cr_assert_eq(s.c.invalid_clicks, 1);
        cr_assert_eq(s.c.invalid_impressions, 0);
        cr_assert_eq(s.c.invalid_spend_micros, 200000);
        cr_assert_eq(s.c.unique_devices, 850);
        /* Python wrote ctr 0.02, cvr 0, cpa null, cpm 4e6, roas 0,
         * ivt_rate 0.05: the same bytes means the same ratios. */
        m = sg_codec_encode_kpi(codec, SG_FMT_AVRO, &s, buf, sizeof(buf));
        cr_assert_eq(m, (int)n);
        cr_assert_eq(memcmp(buf, raw, n), 0);
}

/*
 * Normalized events
 */

static sg_event_t make_normalized(void)
{
        sg_event_t ev = make_event(SG_EV_CONVERSION, 1);

        ev.cost_micros = -1; /* both money fields travel */
        ev.ivt_mask = 0x80000001u;
        strcpy(ev.ivt_reason, "dc_ip");
        strcpy(ev.src_topic, "ad-conversions");
        ev.src_partition = 11;
        ev.src_offset = INT64_MAX;
        return ev;
}

Test(codec, round_trips_normalized_events)
{
        sg_event_t in = make_normalized(), out;
        int n = sg_codec_encode_normalized(codec, &in, buf, sizeof(buf));

        cr_assert_gt(n, 0, "%s", sg_codec_error(codec));
        cr_assert_eq(memcmp(buf, "\0\0\0\0\4", 5), 0);
        cr_assert_eq(sg_codec_decode_normalized(codec, buf, (size_t)n, &out), 0,
                     "%s", sg_codec_error(codec));
        assert_event_eq(&out, &in);

        in = make_event(SG_EV_IMPRESSION, 0);
        n = sg_codec_encode_normalized(codec, &in, buf, sizeof(buf));
        cr_assert_eq(sg_codec_decode_normalized(codec, buf, (size_t)n, &out), 0,
                     "%s", sg_codec_error(codec));
        assert_event_eq(&out, &in);
}

/* avro-c, an implementation the hand-written hot path does not share,
 * reads what encode_normalized writes. */
Test(codec, normalized_encoding_is_read_by_avro_c)
{
        sg_event_t ev = make_normalized();
        char path[PATH_MAX];
        avro_schema_t schema;
        avro_value_iface_t *iface;
        avro_value_t v, f, br;
        avro_reader_t rd;
        FILE *fp;
        char text[4096];
        size_t len;
        const char *s;
        int64_t l;
        int32_t i;
        int e, n;

        n = sg_codec_encode_normalized(codec, &ev, buf, sizeof(buf));
        cr_assert_gt(n, 0);
        snprintf(path, sizeof(path), "%s/schemas/normalized_event.avsc",
                 source_dir());
        fp = fopen(path, "rb");
        cr_assert_not_null(fp);
        len = fread(text, 1, sizeof(text), fp);
        fclose(fp);
        cr_assert_eq(avro_schema_from_json_length(text, len, &schema), 0);
        iface = avro_generic_class_from_schema(schema);
        cr_assert_eq(avro_generic_value_new(iface, &v), 0);
        rd = avro_reader_memory(buf + 5, n - 5);
        cr_assert_eq(avro_value_read(rd, &v), 0, "%s", avro_strerror());

        avro_value_get_by_name(&v, "type", &f, NULL);
        avro_value_get_enum(&f, &e);
        cr_assert_eq(e, 2);
        avro_value_get_by_name(&v, "user_agent", &f, NULL);
        avro_value_get_current_branch(&f, &br);
        avro_value_get_string(&br, &s, &len);
        cr_assert_str_eq(s, "Mozilla/5.0 \"quoted\" \\ caf\xc3\xa9");
        avro_value_get_by_name(&v, "cost_micros", &f, NULL);
        avro_value_get_long(&f, &l);
        cr_assert_eq(l, -1);
        avro_value_get_by_name(&v, "revenue_micros", &f, NULL);
        avro_value_get_long(&f, &l);
        cr_assert_eq(l, 123456789012);
        avro_value_get_by_name(&v, "ref_id", &f, NULL);
        avro_value_get_current_branch(&f, &br);
        avro_value_get_string(&br, &s, &len);
        cr_assert_str_eq(s, "ref-7");
        avro_value_get_by_name(&v, "ivt_mask", &f, NULL);
        avro_value_get_int(&f, &i);
        cr_assert_eq((uint32_t)i, 0x80000001u);
        avro_value_get_by_name(&v, "src_offset", &f, NULL);
        avro_value_get_long(&f, &l);
        cr_assert_eq(l, INT64_MAX);

        avro_reader_free(rd);
        avro_value_decref(&v);
        avro_value_iface_decref(iface);
        avro_schema_decref(schema);
}

Test(codec, decode_normalized_refuses_other_schema_ids)
{
        sg_event_t ev = make_event(SG_EV_CLICK, 0);
        int n =
            sg_codec_encode_input(codec, SG_FMT_AVRO, &ev, buf, sizeof(buf));

        cr_assert_eq(sg_codec_decode_normalized(codec, buf, (size_t)n, &ev),
                     -1);
        cr_assert_str_eq(sg_codec_error(codec), "schema id 2, expected 4");
        cr_assert_eq(sg_codec_decode_normalized(codec, "{}", 2, &ev), -1);
        cr_assert_str_eq(sg_codec_error(codec), "not Confluent-framed Avro");
}

Test(codec, decode_normalized_rejects_an_out_of_range_type)
{
        sg_event_t ev = make_normalized();
        int n = sg_codec_encode_normalized(codec, &ev, buf, sizeof(buf));

        buf[5] = 6; /* zigzag(3): a fourth symbol EventType does not have */
        cr_assert_eq(sg_codec_decode_normalized(codec, buf, (size_t)n, &ev),
                     -1);
        cr_assert_str_eq(sg_codec_error(codec),
                         "field=type index 3 out of range [0,3)");
        cr_assert_eq(ev.type, SG_EV_NONE);
}

/*
 * Snapshots
 */

Test(codec, round_trips_snapshots_at_both_scopes)
{
        const char *campaigns[] = {"brand", ""};
        sg_snapshot_t in, out;
        int i, n;

        for (i = 0; i < 2; i++) {
                in = make_snapshot(campaigns[i]);
                in.final = i;
                n = sg_codec_encode_snapshot(codec, &in, buf, sizeof(buf));
                cr_assert_gt(n, 0, "%s", sg_codec_error(codec));
                cr_assert_eq(memcmp(buf, "\0\0\0\0\5", 5), 0);
                cr_assert_eq(
                    sg_codec_decode_snapshot(codec, buf, (size_t)n, &out), 0,
                    "%s", sg_codec_error(codec));
                assert_scope_eq(&out, &in);
                cr_assert_eq(out.final, in.final);
                cr_assert_eq(out.watermark, in.watermark);
                cr_assert_str_eq(out.window, "5m");
                cr_assert_eq(memcmp(&out.x, &in.x, sizeof(in.x)), 0);
                cr_assert_eq(out.top_cnt, 2);
                cr_assert_str_eq(out.top[0].source, "ip:203.0.113.7");
                cr_assert_eq(out.top[0].clicks, 9);
                cr_assert_str_eq(out.top[1].source, "device:d1");
                cr_assert_eq(out.top[1].clicks, 4);
        }
}

Test(codec, snapshot_refuses_too_many_top_sources)
{
        sg_snapshot_t s = make_snapshot("");

        s.top_cnt = SG_SNAPSHOT_TOP + 1;
        cr_assert_eq(sg_codec_encode_snapshot(codec, &s, buf, sizeof(buf)), -1);
        cr_assert_str_eq(sg_codec_error(codec),
                         "field=top_sources count 11 out of range");
}

Test(codec, snapshot_of_a_channel_has_a_null_campaign)
{
        sg_snapshot_t s = make_snapshot("");
        int n = sg_codec_encode_snapshot(codec, &s, buf, sizeof(buf));

        /* channel "search" is 7 bytes, then the union index 0 (null). */
        cr_assert_gt(n, 13);
        cr_assert_eq(buf[12], 0);
        s = make_snapshot("k");
        n = sg_codec_encode_snapshot(codec, &s, buf, sizeof(buf));
        cr_assert_eq(buf[12], 2);
}

/*
 * Decisions
 */

Test(codec, round_trips_decisions_in_avro)
{
        sg_decision_t in, out;
        int r, n;

        for (r = 0; r < 2; r++) {
                in = make_decision(r);
                n = sg_codec_encode_decision(codec, SG_FMT_AVRO, &in, buf,
                                             sizeof(buf));
                cr_assert_gt(n, 0, "%s", sg_codec_error(codec));
                cr_assert_eq(memcmp(buf, "\0\0\0\0\6", 5), 0);
                cr_assert_eq(
                    sg_codec_decode_decision(codec, buf, (size_t)n, &out), 0,
                    "%s", sg_codec_error(codec));
                assert_decision_eq(&out, &in);
        }
}

Test(codec, round_trips_decisions_in_json)
{
        sg_decision_t in, out;
        int r, n;

        for (r = 0; r < 2; r++) {
                in = make_decision(r);
                n = sg_codec_encode_decision(codec, SG_FMT_JSON, &in, buf,
                                             sizeof(buf));
                cr_assert_gt(n, 0, "%s", sg_codec_error(codec));
                cr_assert_eq(
                    sg_codec_decode_decision(codec, buf, (size_t)n, &out), 0,
                    "%s", sg_codec_error(codec));
                assert_decision_eq(&out, &in);
        }
}

Test(codec, json_decision_spells_out_nulls_and_the_action)
{
        sg_decision_t d = make_decision(1);
        const char *want =
            "{\"decision_id\":\"d-5e1f\",\"rule_id\":\"realloc-roas\","
            "\"action\":\"REALLOCATE\",\"channel\":\"social\","
            "\"campaign_id\":null,\"source\":null,"
            "\"reason\":\"cpa 1.35x target 1.30x over 1h (n=412)\","
            "\"metrics\":{\"cpa\":13500000.25,\"target\":0.1,"
            "\"conversions\":-412.0},\"window_start\":1709290800000,"
            "\"window_end\":1709294400000,\"decided_at\":1709294400500,"
            "\"budgets\":[{\"channel\":\"social\",\"budget_micros\":460000000},"
            "{\"channel\":\"kol\",\"budget_micros\":110000000}],"
            "\"dry_run\":false}";
        int n =
            sg_codec_encode_decision(codec, SG_FMT_JSON, &d, buf, sizeof(buf));

        cr_assert_eq(n, (int)strlen(want), "%.*s", n, buf);
        cr_assert_eq(memcmp(buf, want, (size_t)n), 0, "%.*s", n, buf);

        d = make_decision(0);
        n = sg_codec_encode_decision(codec, SG_FMT_JSON, &d, buf, sizeof(buf));
        cr_assert_gt(n, 0);
        buf[n] = '\0';
        cr_assert_not_null(strstr(buf, "\"campaign_id\":\"brand\","
                                       "\"source\":\"ip:1.2.3.4\""));
        cr_assert_not_null(strstr(buf, "\"budgets\":null,"
                                       "\"dry_run\":true}"));
}

Test(codec, reallocation_with_no_budgets_is_an_empty_array)
{
        sg_decision_t in = make_decision(1), out;
        int n;

        in.budget_cnt = 0;
        n = sg_codec_encode_decision(codec, SG_FMT_AVRO, &in, buf, sizeof(buf));
        cr_assert_eq(sg_codec_decode_decision(codec, buf, (size_t)n, &out), 0);
        cr_assert_eq(out.budget_cnt, 0);
        n = sg_codec_encode_decision(codec, SG_FMT_JSON, &in, buf, sizeof(buf));
        cr_assert_eq(sg_codec_decode_decision(codec, buf, (size_t)n, &out), 0);
        cr_assert_eq(out.budget_cnt, 0);
}

Test(codec, encode_decision_refuses_what_the_wire_cannot_carry)
{
        sg_decision_t d = make_decision(0);

        d.metrics[1].value = NAN;
        cr_assert_eq(
            sg_codec_encode_decision(codec, SG_FMT_JSON, &d, buf, sizeof(buf)),
            -1);
        /* Avro doubles carry NaN. */
        cr_assert_gt(
            sg_codec_encode_decision(codec, SG_FMT_AVRO, &d, buf, sizeof(buf)),
            0);

        d = make_decision(0);
        strcpy(d.metrics[2].name, "cpa");
        cr_assert_eq(
            sg_codec_encode_decision(codec, SG_FMT_AVRO, &d, buf, sizeof(buf)),
            -1);
        cr_assert_str_eq(sg_codec_error(codec),
                         "field=metrics name \"cpa\" repeated");

        d = make_decision(0);
        d.metric_cnt = SG_DECISION_MAX_METRICS + 1;
        cr_assert_eq(
            sg_codec_encode_decision(codec, SG_FMT_AVRO, &d, buf, sizeof(buf)),
            -1);
        d = make_decision(0);
        d.action = SG_ACT__CNT;
        cr_assert_eq(
            sg_codec_encode_decision(codec, SG_FMT_JSON, &d, buf, sizeof(buf)),
            -1);
        cr_assert_str_eq(sg_codec_error(codec), "field=action 5 out of range");
}

Test(codec, decode_decision_names_a_bad_json_field)
{
        sg_decision_t d;
        const char *j = "{\"decision_id\":\"d\",\"rule_id\":\"r\","
                        "\"channel\":\"c\",\"reason\":\"x\","
                        "\"window_start\":1,\"window_end\":2,"
                        "\"decided_at\":\"3\"}";

        cr_assert_eq(sg_codec_decode_decision(codec, j, strlen(j), &d), -1);
        cr_assert_str_eq(sg_codec_error(codec),
                         "field=decided_at expected an integer");
        cr_assert_eq(sg_codec_decode_decision(codec, "nope", 4, &d), -1);
        cr_assert_str_eq(sg_codec_error(codec),
                         "neither Avro framing nor a JSON object");
}

Test(codec, json_decision_without_dry_run_is_not_a_dry_run)
{
        sg_decision_t d;
        char j[512];
        const char *head = "{\"decision_id\":\"d\",\"rule_id\":\"r\","
                           "\"action\":\"PAUSE\",\"channel\":\"c\","
                           "\"reason\":\"x\",\"metrics\":{},"
                           "\"window_start\":1,\"window_end\":2,"
                           "\"decided_at\":3";
        int n;

        n = snprintf(j, sizeof(j), "%s}", head);
        cr_assert_eq(sg_codec_decode_decision(codec, j, (size_t)n, &d), 0,
                     "%s", sg_codec_error(codec));
        cr_assert_eq(d.dry_run, 0);
        n = snprintf(j, sizeof(j), "%s,\"dry_run\":null}", head);
        cr_assert_eq(sg_codec_decode_decision(codec, j, (size_t)n, &d), 0);
        cr_assert_eq(d.dry_run, 0);
        n = snprintf(j, sizeof(j), "%s,\"dry_run\":true}", head);
        cr_assert_eq(sg_codec_decode_decision(codec, j, (size_t)n, &d), 0);
        cr_assert_eq(d.dry_run, 1);
        n = snprintf(j, sizeof(j), "%s,\"dry_run\":1}", head);
        cr_assert_eq(sg_codec_decode_decision(codec, j, (size_t)n, &d), -1);
        cr_assert_str_eq(sg_codec_error(codec),
                         "field=dry_run not a boolean");
}

Test(codec, decode_decision_refuses_more_metrics_than_fit)
{
        sg_decision_t d;
        char j[2048];
        size_t n;
        int i;

        n = (size_t)snprintf(j, sizeof(j),
                             "{\"decision_id\":\"d\",\"rule_id\":\"r\","
                             "\"action\":\"ALERT\",\"channel\":\"c\","
                             "\"reason\":\"x\",\"window_start\":1,"
                             "\"window_end\":2,\"decided_at\":3,"
                             "\"metrics\":{");
        for (i = 0; i <= SG_DECISION_MAX_METRICS; i++)
                n += (size_t)snprintf(j + n, sizeof(j) - n, "%s\"m%d\":%d",
                                      i ? "," : "", i, i);
        n += (size_t)snprintf(j + n, sizeof(j) - n, "}}");
        cr_assert_eq(sg_codec_decode_decision(codec, j, n, &d), -1);
        cr_assert_str_eq(sg_codec_error(codec),
                         "field=metrics has 17 entries, max 16");
}

/*
 * KPI rows
 */

Test(codec, round_trips_kpi_rows_in_both_formats)
{
        sg_format_t fmts[] = {SG_FMT_AVRO, SG_FMT_JSON};
        sg_snapshot_t in = make_snapshot("brand"), out;
        int f, n;

        for (f = 0; f < 2; f++) {
                n = sg_codec_encode_kpi(codec, fmts[f], &in, buf, sizeof(buf));
                cr_assert_gt(n, 0, "%s", sg_codec_error(codec));
                cr_assert_eq(sg_codec_decode_kpi(codec, buf, (size_t)n, &out),
                             0, "%s", sg_codec_error(codec));
                assert_scope_eq(&out, &in);
                cr_assert_eq(out.final, 1);
                cr_assert_eq(out.watermark, 0);
        }
        cr_assert_eq(memcmp(buf, "{", 1), 0);
}

Test(codec, json_kpi_has_null_for_undefined_ratios)
{
        sg_snapshot_t s = make_snapshot("");
        const char *want =
            "{\"channel\":\"search\",\"campaign_id\":null,"
            "\"window_start\":1709294400000,\"window_end\":1709294460000,"
            "\"impressions\":1000,\"clicks\":20,\"conversions\":0,"
            "\"spend_micros\":4000000,\"revenue_micros\":0,"
            "\"invalid_clicks\":1,\"invalid_impressions\":3,"
            "\"invalid_spend_micros\":200000,\"unique_devices\":850,"
            "\"ctr\":0.02,\"cvr\":0.0,\"cpa_micros\":null,"
            "\"cpm_micros\":4000000.0,\"roas\":0.0,\"ivt_rate\":0.05}";
        int n = sg_codec_encode_kpi(codec, SG_FMT_JSON, &s, buf, sizeof(buf));

        cr_assert_eq(n, (int)strlen(want), "%.*s", n, buf);
        cr_assert_eq(memcmp(buf, want, (size_t)n), 0, "%.*s", n, buf);
}

Test(codec, kpi_of_an_empty_window_has_every_ratio_null)
{
        sg_snapshot_t s = make_snapshot("");
        int n;

        memset(&s.c, 0, sizeof(s.c));
        n = sg_codec_encode_kpi(codec, SG_FMT_AVRO, &s, buf, sizeof(buf));
        /* The six ratio unions are the last six bytes: all branch 0. */
        cr_assert_gt(n, 6);
        cr_assert_eq(memcmp(buf + n - 6, "\0\0\0\0\0\0", 6), 0);
}

/*
 * Malformed input: never a crash, an over-read or a huge allocation
 */

/* Rewrites the 9-byte "string length 2^62-1" into a copy of msg at off. */
static size_t with_huge_length(const uint8_t *msg, size_t n, size_t off,
                               uint8_t *out)
{
        static const uint8_t huge[] = {0xfe, 0xff, 0xff, 0xff, 0xff,
                                       0xff, 0xff, 0xff, 0x7f};

        memcpy(out, msg, off);
        memcpy(out + off, huge, sizeof(huge));
        memcpy(out + off + sizeof(huge), msg + off + 1, n - off - 1);
        return n - 1 + sizeof(huge);
}

Test(codec, internal_decoders_reject_huge_and_negative_lengths)
{
        uint8_t raw[4096], bad[4096];
        size_t n = load_fixture("decision_block.bin", raw, sizeof(raw));
        size_t m;
        sg_decision_t d;
        sg_snapshot_t s;

        /* decision_id's length byte is at offset 5. */
        m = with_huge_length(raw, n, 5, bad);
        cr_assert_eq(sg_codec_decode_decision(codec, bad, m, &d), -1);
        cr_assert_str_eq(sg_codec_error(codec),
                         "field=decision_id length 4611686018427387903 "
                         "exceeds the 97 bytes left");
        n = load_fixture("snapshot.bin", raw, sizeof(raw));
        raw[5] = 0x01;
        cr_assert_eq(sg_codec_decode_snapshot(codec, raw, n, &s), -1);
        cr_assert_str_eq(sg_codec_error(codec),
                         "field=channel length -1 exceeds the 103 bytes left");
}

Test(codec, internal_decoders_reject_a_huge_block_count)
{
        uint8_t raw[4096], bad[4096];
        size_t n = load_fixture("decision_block.bin", raw, sizeof(raw));
        sg_decision_t d;
        size_t off = 5, i;

        /* Skip the six strings before metrics to its empty-map byte. */
        off += 1 + raw[off] / 2;     /* decision_id */
        off += 1 + raw[off] / 2;     /* rule_id */
        off += 1;                    /* action */
        off += 1 + raw[off] / 2;     /* channel */
        off += 2 + raw[off + 1] / 2; /* campaign_id, branch 1 */
        off += 2 + raw[off + 1] / 2; /* source, branch 1 */
        off += 1 + raw[off] / 2;     /* reason */
        cr_assert_eq(raw[off], 0);
        memcpy(bad, raw, n);
        with_huge_length(raw, n, off, bad);
        for (i = 0; i < 2; i++) {
                cr_assert_eq(sg_codec_decode_decision(codec, bad, n + 8, &d),
                             -1);
                cr_assert_not_null(strstr(sg_codec_error(codec),
                                          "field=metrics block of "
                                          "4611686018427387903 items"),
                                   "%s", sg_codec_error(codec));
                /* A negative count (with a block size) is the same. */
                bad[off] = 0xfd;
        }
}

/* Every decoder, for one payload: 0 or -1, never a crash. */
static void decode_everything(const uint8_t *p, size_t n)
{
        sg_event_t ev;
        sg_snapshot_t s;
        sg_decision_t d;
        const char *reason = NULL;
        char detail[256];
        int rc;

        rc = sg_codec_decode_input(codec, p, n, SG_EV_CLICK, &ev, &reason,
                                   detail, sizeof(detail));
        cr_assert(rc == 0 || (rc == -1 && reason && detail[0]));
        rc = sg_codec_decode_normalized(codec, p, n, &ev);
        cr_assert(rc == 0 || rc == -1);
        rc = sg_codec_decode_snapshot(codec, p, n, &s);
        cr_assert(rc == 0 || rc == -1);
        rc = sg_codec_decode_decision(codec, p, n, &d);
        cr_assert(rc == 0 || rc == -1);
        rc = sg_codec_decode_kpi(codec, p, n, &s);
        cr_assert(rc == 0 || rc == -1);
}

static const char *const all_fixtures[] = {"impression_full.bin",
                                           "impression_min.bin",
                                           "click_full.bin",
                                           "click_min.bin",
                                           "conversion_full.bin",
                                           "conversion_min.bin",
                                           "normalized_click.bin",
                                           "snapshot.bin",
                                           "decision_block.bin",
                                           "decision_reallocate.bin",
                                           "decision_pause_dry_run.bin",
                                           "kpi.bin",
                                           NULL};

/* The decoder meant for schema id of the untruncated record. */
static int decode_as(int id, const uint8_t *p, size_t n)
{
        sg_event_t ev;
        sg_snapshot_t s;
        sg_decision_t d;
        const char *reason;
        char detail[256];

        switch (id) {
        case SG_SCHEMA_NORMALIZED:
                return sg_codec_decode_normalized(codec, p, n, &ev);
        case SG_SCHEMA_SNAPSHOT:
                return sg_codec_decode_snapshot(codec, p, n, &s);
        case SG_SCHEMA_DECISION:
                return sg_codec_decode_decision(codec, p, n, &d);
        case SG_SCHEMA_KPI:
                return sg_codec_decode_kpi(codec, p, n, &s);
        default:
                return sg_codec_decode_input(codec, p, n, SG_EV_CLICK, &ev,
                                             &reason, detail, sizeof(detail));
        }
}

Test(codec, rejects_every_truncation_of_every_record)
{
        uint8_t raw[4096], *cut;
        size_t n, len;
        int i;

        for (i = 0; all_fixtures[i]; i++) {
                n = load_fixture(all_fixtures[i], raw, sizeof(raw));
                cr_assert_eq(decode_as(raw[4], raw, n), 0, "%s",
                             all_fixtures[i]);
                for (len = 0; len < n; len++) {
                        /* A dry run without its last byte is a decision of
                         * the writer before dry_run (an_old_decision_...). */
                        if (!strcmp(all_fixtures[i],
                                    "decision_pause_dry_run.bin") &&
                            len == n - 1)
                                continue;
                        /* An exact-size copy: ASan sees any over-read. */
                        cut = malloc(len ? len : 1);
                        memcpy(cut, raw, len);
                        cr_assert_eq(decode_as(raw[4], cut, len), -1,
                                     "%s cut at %zu", all_fixtures[i], len);
                        decode_everything(cut, len);
                        free(cut);
                }
        }
}

/* xorshift64: the same "random" damage on every run. */
static uint64_t next_rand(uint64_t *x)
{
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        return *x;
}

Test(codec, survives_random_damage_to_every_record)
{
        uint8_t raw[4096], *bad;
        uint64_t x = 0x5eed5eed5eedULL;
        size_t n, k;
        int i, round;

        for (i = 0; all_fixtures[i]; i++) {
                n = load_fixture(all_fixtures[i], raw, sizeof(raw));
                for (round = 0; round < 3000; round++) {
                        bad = malloc(n);
                        memcpy(bad, raw, n);
                        /* Keep the framing mostly intact so that the damage
                         * reaches the Avro body. */
                        for (k = 0; k <= next_rand(&x) % 3; k++)
                                bad[5 + next_rand(&x) % (n - 5)] =
                                    (uint8_t)next_rand(&x);
                        if (round % 16 == 0)
                                bad[next_rand(&x) % 5] = (uint8_t)next_rand(&x);
                        decode_everything(bad, n);
                        free(bad);
                }
        }
}

/*
 * The hot path allocates nothing per event. Counting needs our own malloc,
 * which the sanitizer build already replaces: there the test is skipped.
 */
#if defined(__SANITIZE_ADDRESS__)
#define SG_COUNT_MALLOC 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SG_COUNT_MALLOC 0
#endif
#endif
#ifndef SG_COUNT_MALLOC
#define SG_COUNT_MALLOC 1
#endif

#if SG_COUNT_MALLOC
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static volatile long allocations;

void *malloc(size_t n)
{
        allocations++;
        return __libc_malloc(n);
}

void *calloc(size_t n, size_t size)
{
        allocations++;
        return __libc_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
        allocations++;
        return __libc_realloc(p, n);
}

void free(void *p)
{
        __libc_free(p);
}
#endif

Test(codec, hot_path_does_not_allocate_per_event)
{
#if SG_COUNT_MALLOC
        uint8_t raw[6][4096];
        size_t n[6];
        sg_event_t ev, in = make_normalized();
        const char *reason;
        char detail[256];
        long before;
        int i, m, round;

        for (i = 0; i < 6; i++)
                n[i] = load_fixture(all_fixtures[i], raw[i], sizeof(raw[i]));
        before = allocations;
        for (round = 0; round < 100; round++) {
                for (i = 0; i < 6; i++) {
                        cr_assert_eq(sg_codec_decode_input(
                                         codec, raw[i], n[i], SG_EV_NONE, &ev,
                                         &reason, detail, sizeof(detail)),
                                     0);
                        m = sg_codec_encode_normalized(codec, &ev, buf,
                                                       sizeof(buf));
                        cr_assert_eq(sg_codec_decode_normalized(codec, buf,
                                                                (size_t)m, &ev),
                                     0);
                }
                /* Rejections too: a flood of garbage is a hot path. */
                m = sg_codec_decode_input(codec, raw[0], n[0] - 1, SG_EV_NONE,
                                          &ev, &reason, detail, sizeof(detail));
                cr_assert_eq(m, -1);
                m = sg_codec_encode_normalized(codec, &in, buf, sizeof(buf));
                cr_assert_gt(m, 0);
        }
        cr_assert_eq(allocations - before, 0);
#else
        cr_skip_test("malloc is the sanitizer's in this build");
#endif
}

/*
 * Evolved writer schemas: the registry (<schema_dir>/registry/<id>.avsc)
 * and schema resolution into the contract reader schemas. The records are
 * written by Python's avro library with the writer schemas of
 * schemas/registry/ and tests/fixtures/registry/ (make_fixtures.py).
 */

static char reg_dir[] = "/tmp/sg-codec-reg-XXXXXX";

/* Symlinks every *.avsc of from into to. */
static void link_schemas(const char *from, const char *to)
{
        char src[PATH_MAX], dst[PATH_MAX];
        struct dirent *de;
        DIR *d = opendir(from);
        size_t n;

        cr_assert_not_null(d, "%s", from);
        while ((de = readdir(d))) {
                n = strlen(de->d_name);
                if (n < 5 || strcmp(de->d_name + n - 5, ".avsc"))
                        continue;
                snprintf(src, sizeof(src), "%s/%s", from, de->d_name);
                snprintf(dst, sizeof(dst), "%s/%s", to, de->d_name);
                cr_assert_eq(symlink(src, dst), 0, "%s", dst);
        }
        closedir(d);
}

/* A schema folder with the contract schemas and a registry holding the
 * shipped example (101) and the test writers (201-208). */
static void reg_setup(void)
{
        char from[PATH_MAX], to[PATH_MAX], err[256] = "";

        /* Loads and rejections log at info and warn: keep the output to
         * the test results. */
        sg_log_verbosity = SG_LOG_ERROR + 1;
        strcpy(reg_dir, "/tmp/sg-codec-reg-XXXXXX");
        cr_assert_not_null(mkdtemp(reg_dir));
        snprintf(from, sizeof(from), "%s/schemas", source_dir());
        link_schemas(from, reg_dir);
        snprintf(to, sizeof(to), "%s/registry", reg_dir);
        cr_assert_eq(mkdir(to, 0700), 0);
        snprintf(from, sizeof(from), "%s/schemas/registry", source_dir());
        link_schemas(from, to);
        snprintf(from, sizeof(from), "%s/tests/fixtures/registry",
                 source_dir());
        link_schemas(from, to);
        codec = sg_codec_new(reg_dir, err, sizeof(err));
        cr_assert_not_null(codec, "sg_codec_new: %s", err);
}

static void reg_teardown(void)
{
        sg_codec_destroy(codec);
        codec = NULL;
        schema_copy_remove(reg_dir);
}

TestSuite(registry, .init = reg_setup, .fini = reg_teardown);

/* Writes text as <reg_dir>/registry/<name>. */
static void reg_write(const char *name, const char *text)
{
        char path[PATH_MAX];
        FILE *fp;

        snprintf(path, sizeof(path), "%s/registry/%s", reg_dir, name);
        fp = fopen(path, "w");
        cr_assert_not_null(fp, "%s", path);
        fputs(text, fp);
        fclose(fp);
}

static void set_frame_id(uint8_t *p, uint32_t id)
{
        p[1] = (uint8_t)(id >> 24);
        p[2] = (uint8_t)(id >> 16);
        p[3] = (uint8_t)(id >> 8);
        p[4] = (uint8_t)id;
}

static sg_event_t expect_click(const char *id, int64_t time,
                               const char *channel, const char *campaign,
                               int64_t cost)
{
        sg_event_t ev;

        memset(&ev, 0, sizeof(ev));
        ev.type = SG_EV_CLICK;
        strcpy(ev.event_id, id);
        ev.event_time = time;
        strcpy(ev.channel, channel);
        strcpy(ev.campaign_id, campaign);
        ev.cost_micros = cost;
        return ev;
}

Test(registry, reads_a_click_with_an_added_field_reordered_and_an_int_cost)
{
        uint8_t raw[4096], contract[4096];
        size_t n, m;
        sg_event_t ev, want = expect_click("clk-ev-1", 1709294401500, "social",
                                           "spring-sale", 350000);

        strcpy(want.ad_id, "ad-42");
        strcpy(want.device_id, "dev-9f3c");
        strcpy(want.ip, "2001:db8::1");
        strcpy(want.user_agent, "Mozilla/5.0 (X11; Linux x86_64)");
        strcpy(want.country, "DE");
        strcpy(want.ref_id, "imp-0001");
        want.has_ad_id = want.has_device_id = want.has_ip =
            want.has_user_agent = want.has_country = want.has_ref_id = 1;
        n = load_fixture("evolved_click_101_full.bin", raw, sizeof(raw));
        cr_assert_eq(raw[4], 101);
        ev = decode_ok(raw, n, SG_EV_NONE);
        assert_event_eq(&ev, &want);
        /* The same event in the contract schema is Python's click_full.bin
         * byte for byte (it differs only by its id). */
        strcpy(ev.event_id, "clk-0001");
        m = load_fixture("click_full.bin", contract, sizeof(contract));
        assert_reencodes_input(&ev, contract, m);
}

Test(registry, promotes_the_largest_int_and_reads_null_options_as_absent)
{
        uint8_t raw[4096];
        size_t n = load_fixture("evolved_click_101_min.bin", raw, sizeof(raw));
        sg_event_t ev = decode_ok(raw, n, SG_EV_IMPRESSION),
                   want = expect_click("clk-ev-2", 1709294401501, "kol", "c-7",
                                       2147483647);

        assert_event_eq(&ev, &want);
}

Test(registry, gives_fields_the_writer_removed_the_reader_default)
{
        uint8_t raw[4096];
        size_t n = load_fixture("evolved_impression_201.bin", raw, sizeof(raw));
        sg_event_t ev = decode_ok(raw, n, SG_EV_CLICK), want;

        memset(&want, 0, sizeof(want));
        want.type = SG_EV_IMPRESSION;
        strcpy(want.event_id, "imp-ev-1");
        want.event_time = 1709294400123;
        strcpy(want.channel, "search");
        strcpy(want.campaign_id, "brand");
        /* ad_id: ["string","null"]; device_id: a plain string read into
         * the reader's optional field; no user_agent, no country. */
        strcpy(want.ad_id, "ad-7");
        strcpy(want.device_id, "dev-1");
        want.has_ad_id = want.has_device_id = 1;
        want.cost_micros = 2500;
        assert_event_eq(&ev, &want);
}

Test(registry, skips_nested_writer_fields_of_every_type_the_reader_lacks)
{
        uint8_t raw[4096];
        size_t n = load_fixture("evolved_conversion_202.bin", raw, sizeof(raw));
        sg_event_t ev = decode_ok(raw, n, SG_EV_CLICK), want;

        memset(&want, 0, sizeof(want));
        want.type = SG_EV_CONVERSION;
        strcpy(want.event_id, "cnv-ev-1");
        want.event_time = 1709294460000;
        strcpy(want.channel, "social");
        strcpy(want.campaign_id, "spring-sale");
        want.revenue_micros = 9990000;
        strcpy(want.ref_id, "clk-0001");
        want.has_ref_id = 1;
        assert_event_eq(&ev, &want);
}

Test(registry, reads_a_writer_union_into_a_required_field)
{
        uint8_t raw[4096];
        size_t n = load_fixture("evolved_click_203.bin", raw, sizeof(raw));
        sg_event_t ev = decode_ok(raw, n, SG_EV_NONE),
                   want = expect_click("clk-ev-3", 1709294401502, "search",
                                       "brand", 1234);

        strcpy(want.ad_id, "ad-1");
        want.has_ad_id = 1;
        assert_event_eq(&ev, &want);
}

Test(registry, rejects_a_union_branch_the_required_field_cannot_take)
{
        static const struct {
                const char *fixture, *detail;
        } cases[] = {
            {"evolved_click_203_null_cost.bin",
             "field=cost_micros is null, the reader requires a long"},
            {"evolved_click_203_null_channel.bin",
             "field=channel is null, the reader requires a string"},
            {"evolved_click_203_string_cost.bin",
             "field=cost_micros union branch 2 (string) cannot be read as "
             "long"},
        };
        uint8_t raw[4096];
        size_t i, n;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                n = load_fixture(cases[i].fixture, raw, sizeof(raw));
                decode_rejects(raw, n, SG_ERR_AVRO_DECODE, cases[i].detail);
        }
}

Test(registry, skips_a_recursive_field_down_to_the_depth_limit)
{
        uint8_t raw[4096];
        size_t n = load_fixture("evolved_click_208.bin", raw, sizeof(raw));
        sg_event_t ev = decode_ok(raw, n, SG_EV_NONE),
                   want = expect_click("clk-ev-8", 1709294401508, "social",
                                       "c-8", 77);

        assert_event_eq(&ev, &want);
        /* Twenty hops nest deeper than the reader follows. */
        n = load_fixture("evolved_click_208_deep.bin", raw, sizeof(raw));
        decode_rejects(raw, n, SG_ERR_AVRO_DECODE,
                       "field=next nested too deep");
}

Test(registry, an_id_without_a_file_is_an_unknown_schema)
{
        uint8_t raw[4096];
        size_t n = load_fixture("evolved_click_101_full.bin", raw, sizeof(raw));

        set_frame_id(raw, 999);
        decode_rejects(raw, n, SG_ERR_UNKNOWN_SCHEMA,
                       "schema id 999 is not an input event and has no "
                       "registry/999.avsc");
}

Test(registry, rejects_a_writer_record_that_is_not_an_event)
{
        uint8_t raw[4096];
        size_t n = load_fixture("registry_order_204.bin", raw, sizeof(raw));

        decode_rejects(raw, n, SG_ERR_UNKNOWN_SCHEMA,
                       "schema id 204: registry/204.avsc holds record "
                       "\"Order\", not Impression, Click or Conversion");
}

Test(registry, rejects_a_writer_without_a_required_field_that_has_no_default)
{
        uint8_t raw[4096];
        size_t n = load_fixture("registry_click_205.bin", raw, sizeof(raw));

        decode_rejects(raw, n, SG_ERR_UNKNOWN_SCHEMA,
                       "schema id 205: registry/205.avsc lacks field "
                       "cost_micros, which Click requires (no default)");
}

Test(registry, rejects_a_writer_type_that_no_rule_promotes)
{
        uint8_t raw[4096];
        size_t n = load_fixture("evolved_click_203.bin", raw, sizeof(raw));

        set_frame_id(raw, 206);
        decode_rejects(raw, n, SG_ERR_UNKNOWN_SCHEMA,
                       "schema id 206: registry/206.avsc field cost_micros: "
                       "string cannot be read as long");
}

Test(registry, rejects_a_file_that_is_not_a_schema)
{
        uint8_t raw[4096];
        size_t n = load_fixture("evolved_click_203.bin", raw, sizeof(raw));

        set_frame_id(raw, 207);
        decode_rejects(raw, n, SG_ERR_UNKNOWN_SCHEMA,
                       "schema id 207: registry/207.avsc: Error parsing JSON: "
                       "']' expected near end of file");
}

Test(registry, never_reads_the_contract_ids_from_the_registry)
{
        uint8_t raw[4096];
        size_t n = load_fixture("evolved_click_101_full.bin", raw, sizeof(raw));
        sg_event_t ev;

        reg_write("2.avsc", "{\"type\":\"record\",\"name\":\"Order\","
                            "\"fields\":[]}");
        reg_write("4.avsc", "{\"type\":\"record\",\"name\":\"Click\","
                            "\"fields\":[]}");
        set_frame_id(raw, 4);
        decode_rejects(raw, n, SG_ERR_UNKNOWN_SCHEMA,
                       "schema id 4 is not an input event");
        n = load_fixture("click_full.bin", raw, sizeof(raw));
        ev = decode_ok(raw, n, SG_EV_NONE);
        cr_assert_str_eq(ev.event_id, "clk-0001");
}

Test(registry, remembers_a_missing_id_rather_than_reading_the_disk_again)
{
        uint8_t raw[4096], text[4096];
        char path[PATH_MAX], err[256];
        size_t n = load_fixture("evolved_click_101_full.bin", raw, sizeof(raw));
        sg_codec_t *fresh;
        sg_event_t ev;
        const char *reason;
        char detail[256];
        FILE *fp;
        size_t len;

        set_frame_id(raw, 300);
        decode_rejects(raw, n, SG_ERR_UNKNOWN_SCHEMA,
                       "schema id 300 is not an input event and has no "
                       "registry/300.avsc");
        /* Registered now: this codec still believes it missing (for
         * 30 s), a new one reads it. */
        snprintf(path, sizeof(path), "%s/schemas/registry/101.avsc",
                 source_dir());
        fp = fopen(path, "rb");
        cr_assert_not_null(fp);
        len = fread(text, 1, sizeof(text) - 1, fp);
        fclose(fp);
        text[len] = '\0';
        reg_write("300.avsc", (const char *)text);
        decode_rejects(raw, n, SG_ERR_UNKNOWN_SCHEMA,
                       "schema id 300 is not an input event and has no "
                       "registry/300.avsc");
        fresh = sg_codec_new(reg_dir, err, sizeof(err));
        cr_assert_not_null(fresh, "%s", err);
        cr_assert_eq(sg_codec_decode_input(fresh, raw, n, SG_EV_NONE, &ev,
                                           &reason, detail, sizeof(detail)),
                     0, "%s", detail);
        cr_assert_str_eq(ev.event_id, "clk-ev-1");
        cr_assert_eq(ev.cost_micros, 350000);
        sg_codec_destroy(fresh);
}

Test(registry, stays_bounded_under_a_flood_of_unknown_ids)
{
        uint8_t raw[4096];
        size_t n = load_fixture("evolved_click_101_full.bin", raw, sizeof(raw));
        char want[128];
        sg_event_t ev;
        uint32_t id;

        for (id = 1000; id < 2000; id++) {
                set_frame_id(raw, id);
                snprintf(want, sizeof(want),
                         "schema id %u is not an input event and has no "
                         "registry/%u.avsc",
                         id, id);
                decode_rejects(raw, n, SG_ERR_UNKNOWN_SCHEMA, want);
        }
        set_frame_id(raw, 101);
        ev = decode_ok(raw, n, SG_EV_NONE);
        cr_assert_str_eq(ev.event_id, "clk-ev-1");
}

static const char *const registry_fixtures[] = {"evolved_click_101_full.bin",
                                                "evolved_click_101_min.bin",
                                                "evolved_impression_201.bin",
                                                "evolved_conversion_202.bin",
                                                "evolved_click_203.bin",
                                                "evolved_click_208.bin",
                                                NULL};

Test(registry, rejects_every_truncation_of_a_registry_record)
{
        uint8_t raw[4096], *cut;
        const char *reason;
        char detail[256];
        sg_event_t ev;
        size_t n, len;
        int i;

        for (i = 0; registry_fixtures[i]; i++) {
                n = load_fixture(registry_fixtures[i], raw, sizeof(raw));
                for (len = 0; len < n; len++) {
                        /* An exact-size copy: ASan sees any over-read. */
                        cut = malloc(len ? len : 1);
                        memcpy(cut, raw, len);
                        reason = NULL;
                        cr_assert_eq(sg_codec_decode_input(
                                         codec, cut, len, SG_EV_NONE, &ev,
                                         &reason, detail, sizeof(detail)),
                                     -1, "%s cut at %zu", registry_fixtures[i],
                                     len);
                        cr_assert_str_eq(reason,
                                         len >= 5 ? SG_ERR_AVRO_DECODE
                                                  : SG_ERR_BAD_FRAMING,
                                         "%s cut at %zu: %s",
                                         registry_fixtures[i], len, detail);
                        cr_assert_eq(ev.type, SG_EV_NONE);
                        free(cut);
                }
        }
}

Test(registry, survives_random_damage_to_registry_records)
{
        uint8_t raw[4096], *bad;
        uint64_t x = 0x5eed0101ULL;
        const char *reason;
        char detail[256];
        sg_event_t ev;
        size_t n, k;
        int i, round, rc, accepted = 0;

        for (i = 0; registry_fixtures[i]; i++) {
                n = load_fixture(registry_fixtures[i], raw, sizeof(raw));
                for (round = 0; round < 3000; round++) {
                        bad = malloc(n);
                        memcpy(bad, raw, n);
                        for (k = 0; k <= next_rand(&x) % 3; k++)
                                bad[5 + next_rand(&x) % (n - 5)] =
                                    (uint8_t)next_rand(&x);
                        reason = NULL;
                        detail[0] = '\0';
                        rc = sg_codec_decode_input(codec, bad, n, SG_EV_NONE,
                                                   &ev, &reason, detail,
                                                   sizeof(detail));
                        cr_assert(rc == 0 || (rc == -1 && reason && detail[0]));
                        accepted += rc == 0;
                        free(bad);
                }
        }
        /* Damage to a string's bytes still decodes: the test reached the
         * accepting path too. */
        cr_assert_gt(accepted, 0);
}

Test(registry, reads_registry_records_without_allocating_once_loaded)
{
#if SG_COUNT_MALLOC
        static const char *const names[] = {
            "evolved_click_101_full.bin", "evolved_conversion_202.bin",
            "evolved_click_208.bin", "registry_order_204.bin"};
        uint8_t raw[5][4096];
        size_t n[5];
        sg_event_t ev;
        const char *reason;
        char detail[256];
        long before;
        int i, round;

        for (i = 0; i < 4; i++)
                n[i] = load_fixture(names[i], raw[i], sizeof(raw[i]));
        /* And an id with no file at all. */
        memcpy(raw[4], raw[0], n[0]);
        n[4] = n[0];
        set_frame_id(raw[4], 777);
        for (i = 0; i < 5; i++) /* first sight: load, plan, cache */
                sg_codec_decode_input(codec, raw[i], n[i], SG_EV_NONE, &ev,
                                      &reason, detail, sizeof(detail));
        before = allocations;
        for (round = 0; round < 100; round++)
                for (i = 0; i < 5; i++)
                        cr_assert_eq(sg_codec_decode_input(
                                         codec, raw[i], n[i], SG_EV_NONE, &ev,
                                         &reason, detail, sizeof(detail)),
                                     i < 3 ? 0 : -1, "%s", detail);
        cr_assert_eq(allocations - before, 0);
#else
        /* A skipped test does not run its .fini. */
        reg_teardown();
        cr_skip_test("malloc is the sanitizer's in this build");
#endif
}

/*
 * Registry mode (sg_codec_set_registry): ids are looked up through the
 * fetch function once and cached; an unavailable registry is -2 and not
 * cached; an unknown id is a cached unknown_schema.
 */

static struct {
        int calls;
        int rc;           /* what fetch answers: 0, 1 or -1 */
        uint32_t last_id;
        char schema[8192]; /* served when rc is 0 */
} srv;

static int fake_fetch(void *opaque, uint32_t id, char **schema, char *err,
                      size_t err_size)
{
        (void)opaque;
        srv.calls++;
        srv.last_id = id;
        if (srv.rc == 0) {
                *schema = strdup(srv.schema);
                return 0;
        }
        snprintf(err, err_size, "%s",
                 srv.rc > 0 ? "HTTP 404 error_code 40403" : "connection refused");
        return srv.rc;
}

static void srv_serve_file(const char *rel)
{
        char path[PATH_MAX];
        FILE *fp;
        size_t n;

        snprintf(path, sizeof(path), "%s/%s", source_dir(), rel);
        fp = fopen(path, "r");
        cr_assert_not_null(fp, "%s", path);
        n = fread(srv.schema, 1, sizeof(srv.schema) - 1, fp);
        srv.schema[n] = '\0';
        fclose(fp);
}

static void srv_setup(void)
{
        setup();
        memset(&srv, 0, sizeof(srv));
        sg_codec_set_registry(codec, fake_fetch, NULL);
}

TestSuite(registry_mode, .init = srv_setup, .fini = teardown);

Test(registry_mode, looks_an_id_up_once_and_decodes_every_record_of_it)
{
        uint8_t raw[4096];
        size_t n = load_fixture("evolved_click_101_full.bin", raw, sizeof(raw));
        sg_event_t ev;

        srv_serve_file("schemas/registry/101.avsc");
        set_frame_id(raw, 7); /* a registry's id 7 is no contract id */
        for (int i = 0; i < 1000; i++) {
                ev = decode_ok(raw, n, SG_EV_NONE);
                cr_assert_eq(ev.type, SG_EV_CLICK);
                cr_assert_eq(ev.cost_micros, 350000);
        }
        cr_assert_eq(srv.calls, 1);
        cr_assert_eq(srv.last_id, 7);
}

Test(registry_mode, reads_contract_ids_through_the_registry_too)
{
        uint8_t raw[4096];
        size_t n = load_fixture("impression_full.bin", raw, sizeof(raw));
        sg_event_t ev;

        cr_assert_eq(raw[4], 1);
        srv_serve_file("schemas/impression.avsc");
        ev = decode_ok(raw, n, SG_EV_NONE);
        cr_assert_eq(ev.type, SG_EV_IMPRESSION);
        cr_assert_eq(srv.calls, 1);
        cr_assert_eq(srv.last_id, 1);
}

Test(registry_mode, an_unavailable_registry_is_minus_two_and_asked_again)
{
        uint8_t raw[4096];
        size_t n = load_fixture("evolved_click_101_full.bin", raw, sizeof(raw));
        const char *reason = NULL;
        char detail[256];
        sg_event_t ev;

        srv.rc = -1;
        for (int i = 0; i < 3; i++) {
                cr_assert_eq(sg_codec_decode_input(codec, raw, n, SG_EV_NONE,
                                                   &ev, &reason, detail,
                                                   sizeof(detail)),
                             -2);
                cr_assert_str_eq(reason, SG_ERR_REGISTRY_UNAVAILABLE);
                cr_assert_str_eq(detail, "schema id 101: connection refused");
                cr_assert_eq(ev.type, SG_EV_NONE);
        }
        cr_assert_eq(srv.calls, 3);
        /* Back: the record decodes, and the answer is kept. */
        srv.rc = 0;
        srv_serve_file("schemas/registry/101.avsc");
        ev = decode_ok(raw, n, SG_EV_NONE);
        ev = decode_ok(raw, n, SG_EV_NONE);
        cr_assert_eq(ev.type, SG_EV_CLICK);
        cr_assert_eq(srv.calls, 4);
}

Test(registry_mode, an_id_the_registry_does_not_know_is_unknown_and_cached)
{
        uint8_t raw[4096];
        size_t n = load_fixture("evolved_click_101_full.bin", raw, sizeof(raw));

        srv.rc = 1;
        set_frame_id(raw, 4242);
        for (int i = 0; i < 100; i++)
                decode_rejects(raw, n, SG_ERR_UNKNOWN_SCHEMA,
                               "schema id 4242 is not in the schema registry: "
                               "HTTP 404 error_code 40403");
        cr_assert_eq(srv.calls, 1);
}

Test(registry_mode, a_schema_that_does_not_resolve_is_unknown_with_why)
{
        uint8_t raw[4096];
        size_t n = load_fixture("evolved_click_101_full.bin", raw, sizeof(raw));

        snprintf(srv.schema, sizeof(srv.schema),
                 "{\"type\":\"record\",\"name\":\"Click\",\"fields\":["
                 "{\"name\":\"event_id\",\"type\":\"string\"}]}");
        set_frame_id(raw, 31);
        decode_rejects(raw, n, SG_ERR_UNKNOWN_SCHEMA,
                       "schema id 31: registry id 31 lacks field event_time, "
                       "which Click requires (no default)");
        snprintf(srv.schema, sizeof(srv.schema), "{\"type\":");
        set_frame_id(raw, 32);
        {
                sg_event_t ev;
                const char *got = NULL;
                char d[256] = "";

                cr_assert_eq(sg_codec_decode_input(codec, raw, n, SG_EV_CLICK,
                                                   &ev, &got, d, sizeof(d)),
                             -1);
                cr_assert_str_eq(got, SG_ERR_UNKNOWN_SCHEMA);
                cr_assert(strncmp(d, "schema id 32: registry id 32: ", 30) == 0,
                          "%s", d);
        }
        cr_assert_eq(srv.calls, 2);
}

Test(registry_mode, json_input_never_asks_the_registry)
{
        const char *js = "{\"type\":\"impression\",\"event_id\":\"i1\","
                         "\"event_time\":1,\"channel\":\"search\","
                         "\"campaign_id\":\"c\",\"cost_micros\":0}";
        sg_event_t ev = decode_ok(js, strlen(js), SG_EV_NONE);

        cr_assert_eq(ev.type, SG_EV_IMPRESSION);
        cr_assert_eq(srv.calls, 0);
}

Test(registry_mode, output_schemas_are_framed_with_the_wire_id_and_read_back)
{
        sg_decision_t d = make_decision(0), got;
        int n;

        cr_assert_eq(sg_codec_set_wire_id(codec, SG_SCHEMA_DECISION, 70001),
                     0);
        cr_assert_eq(sg_codec_set_wire_id(codec, 8, 1), -1);
        n = sg_codec_encode_decision(codec, SG_FMT_AVRO, &d, buf, sizeof(buf));
        cr_assert_gt(n, 5);
        cr_assert_eq(((uint8_t *)buf)[0], 0);
        cr_assert_eq(((uint8_t)buf[1] << 24 | (uint8_t)buf[2] << 16 |
                      (uint8_t)buf[3] << 8 | (uint8_t)buf[4]),
                     70001);
        cr_assert_eq(sg_codec_decode_decision(codec, buf, (size_t)n, &got), 0,
                     "%s", sg_codec_error(codec));
        assert_decision_eq(&got, &d);
        cr_assert_not_null(strstr(sg_codec_schema_text(codec,
                                                       SG_SCHEMA_DECISION),
                                  "\"Decision\""));
        cr_assert_null(sg_codec_schema_text(codec, 0));
}

Test(registry_mode, cached_ids_decode_without_allocating)
{
#if SG_COUNT_MALLOC
        uint8_t raw[4096];
        size_t n = load_fixture("evolved_click_101_full.bin", raw, sizeof(raw));
        const char *reason;
        char detail[256];
        sg_event_t ev;
        long before;

        srv_serve_file("schemas/registry/101.avsc");
        decode_ok(raw, n, SG_EV_NONE); /* the lookup: allocates once */
        before = allocations;
        for (int i = 0; i < 1000; i++)
                cr_assert_eq(sg_codec_decode_input(codec, raw, n, SG_EV_NONE,
                                                   &ev, &reason, detail,
                                                   sizeof(detail)),
                             0);
        cr_assert_eq(allocations - before, 0);
        cr_assert_eq(srv.calls, 1);
#else
        cr_skip_test("malloc is the sanitizer's in this build");
#endif
}
