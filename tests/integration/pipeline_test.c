/*
 * The whole pipeline on real parts: sg-broker, a private redis-server, the
 * four stages and the sg-gen scenario. Pins the exact KPI totals, the
 * dead-lettered records, and the decisions: the fraud channel and the
 * CPA-overrun channel (and its campaigns) paused, a reallocation for each,
 * nothing for the healthy channels.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "codec.h"
#include "harness.h"

/*
 * What the shipped rules decide on the default scenario (docs/rules.md):
 * 4 PAUSE (kol; gifts and its two campaigns), 2 REALLOCATE, and a
 * BLOCK_SOURCE per bot IP of kol once aggregate reports top sources.
 */
#define WANT_BLOCKS    4
#define WANT_DECISIONS (6 + WANT_BLOCKS)

TestSuite(pipeline, .init = h_stack_up, .fini = h_stack_down, .timeout = 400);

static json_int_t truth_rejected(json_t *truth, const char *reason)
{
        size_t i;
        json_t *row;

        json_array_foreach(truth, i, row)
        {
                json_t *rej = json_object_get(row, "rejected");
                if (rej)
                        return json_integer_value(json_object_get(rej, reason));
        }
        return -1;
}

Test(pipeline, scenario_counts_exactly_and_pauses_only_the_bad_channels)
{
        char truth_path[512], why[512] = "", schemas[512], buf[256];
        const char *gen_args[] = {"--seed",  "7",        "--duration",
                                  "180",     "--bad",    "5",
                                  "--truth", truth_path, NULL};
        rd_kafka_message_t **msgs;
        sg_decision_t d[32];
        sg_codec_t *codec;
        json_t *truth, *kpis;
        int n, bad_total = 0;

        snprintf(truth_path, sizeof(truth_path), "%s/truth.jsonl", H.dir);
        cr_assert_eq(h_run("sg-gen", gen_args, NULL, 0), 0,
                     "sg-gen failed (log: %s/sg-gen.log)", H.dir);
        truth = h_jsonl_file(truth_path);

        /* 1. Every KPI total equals the generator's ground truth. */
        kpis = h_kpis_wait(truth, NULL, 120000, why, sizeof(why));
        cr_assert(kpis, "KPIs never matched the truth: %s (logs in %s)", why,
                  H.dir);
        /* 5 channels x (channel + 2 campaigns). */
        cr_assert_eq(json_array_size(kpis), 15);

        /* 2. Every bad record is dead-lettered with its reason. */
        n = h_consume_all("sg.deadletter", 5, 30000, &msgs);
        cr_assert_eq(n, 5, "dead letters: want 5, got %d", n);
        {
                static const char *const reasons[] = {
                    "bad_value",   "missing_field",  "json_parse",
                    "bad_framing", "unknown_schema", NULL};
                for (const char *const *r = reasons; *r; r++) {
                        int got = 0;
                        for (int i = 0; i < n; i++)
                                got += strcmp(h_header(msgs[i], "sg.error", buf,
                                                       sizeof(buf)),
                                              *r) == 0;
                        cr_assert_eq(got, truth_rejected(truth, *r),
                                     "dead letters with sg.error=%s: want "
                                     "%lld, got %d",
                                     *r, (long long)truth_rejected(truth, *r),
                                     got);
                        bad_total += got;
                }
                for (int i = 0; i < n; i++)
                        cr_assert_neq(
                            h_header(msgs[i], "sg.src", buf, sizeof(buf))[0],
                            '\0', "a dead letter without sg.src");
        }
        cr_assert_eq(bad_total, 5);
        h_msgs_free(msgs, n);

        /* 3. Decisions, once every stage has consumed everything. */
        h_wait_caught_up("aggregate", "sg.events", 60000);
        h_wait_caught_up("rules", "sg.aggregates", 60000);
        h_wait_caught_up("sink", "sg.decisions", 60000);
        n = h_consume_all("ad-decisions", WANT_DECISIONS, 20000, &msgs);
        cr_assert_eq(n, WANT_DECISIONS,
                     "decisions on ad-decisions: want %d, got %d",
                     WANT_DECISIONS, n);
        codec = sg_codec_new(h_src("schemas", schemas, sizeof(schemas)), buf,
                             sizeof(buf));
        cr_assert_not_null(codec, "%s", buf);
        for (int i = 0; i < n; i++) {
                const unsigned char *p = msgs[i]->payload;
                cr_assert_eq(p[0], 0, "not Confluent framing");
                cr_assert_eq(p[4], 6, "schema id %d, want 6", p[4]);
                cr_assert_eq(sg_codec_decode_decision(codec, msgs[i]->payload,
                                                      msgs[i]->len, &d[i]),
                             0, "%s", sg_codec_error(codec));
                cr_assert_neq(d[i].reason[0], '\0');
                for (int j = 0; j < i; j++)
                        cr_assert_str_neq(d[i].decision_id, d[j].decision_id);
        }
        /* The default rules on the default scenario: kol paused for its
         * bots, gifts and both its campaigns for their CPA, a
         * reallocation for each paused channel, kol's bot IPs blocked;
         * nothing about the healthy channels. */
        {
                static const struct {
                        sg_action_t action;
                        const char *rule, *channel, *campaign;
                } want[] = {
                    {SG_ACT_PAUSE, "ivt_circuit_breaker", "kol", ""},
                    {SG_ACT_PAUSE, "cpa_overrun", "gifts", ""},
                    {SG_ACT_PAUSE, "campaign_cpa_overrun", "gifts", "gifts-c1"},
                    {SG_ACT_PAUSE, "campaign_cpa_overrun", "gifts", "gifts-c2"},
                    {SG_ACT_REALLOCATE, "reallocate", "kol", ""},
                    {SG_ACT_REALLOCATE, "reallocate", "gifts", ""},
                };
                int blocks = 0;

                for (size_t w = 0; w < sizeof(want) / sizeof(want[0]); w++) {
                        int found = 0;
                        for (int i = 0; i < n; i++)
                                found +=
                                    d[i].action == want[w].action &&
                                    !strcmp(d[i].rule_id, want[w].rule) &&
                                    !strcmp(d[i].channel, want[w].channel) &&
                                    !strcmp(d[i].campaign_id, want[w].campaign);
                        cr_assert_eq(found, 1, "%s %s %s/%s: %d times",
                                     sg_action_name(want[w].action),
                                     want[w].rule, want[w].channel,
                                     want[w].campaign, found);
                }
                for (int i = 0; i < n; i++) {
                        if (d[i].action != SG_ACT_BLOCK_SOURCE)
                                continue;
                        blocks++;
                        cr_assert_str_eq(d[i].channel, "kol");
                        cr_assert_eq(strncmp(d[i].source, "ip:", 3), 0);
                }
                cr_assert_eq(blocks, WANT_BLOCKS);
        }

        /* 4. The same bytes decode with an independent Avro implementation
         * and the project's decision.avsc. */
        {
                char rec[512], avsc[512], script[512];
                static char out[65536];
                const char *args[] = {script, avsc, rec, NULL};
                FILE *fp;
                json_t *rows;

                snprintf(rec, sizeof(rec), "%s/decisions.records", H.dir);
                fp = fopen(rec, "wb");
                cr_assert_not_null(fp);
                for (int i = 0; i < n; i++) {
                        unsigned char len[4] = {
                            (unsigned char)(msgs[i]->len >> 24),
                            (unsigned char)(msgs[i]->len >> 16),
                            (unsigned char)(msgs[i]->len >> 8),
                            (unsigned char)msgs[i]->len};
                        fwrite(len, 1, 4, fp);
                        fwrite(msgs[i]->payload, 1, msgs[i]->len, fp);
                }
                fclose(fp);
                h_src("schemas/decision.avsc", avsc, sizeof(avsc));
                h_src("tests/interop/decode_decisions.py", script,
                      sizeof(script));
                cr_assert_eq(h_run("/usr/bin/python3", args, out, sizeof(out)),
                             0, "decode_decisions.py failed");
                rows = h_jsonl_text(out);
                cr_assert_eq(json_array_size(rows), (size_t)n);
                for (size_t i = 0; i < (size_t)n; i++) {
                        json_t *row = json_array_get(rows, i);
                        cr_assert_str_eq(json_string_value(json_object_get(
                                             row, "decision_id")),
                                         d[i].decision_id);
                        cr_assert_str_eq(
                            json_string_value(json_object_get(row, "action")),
                            sg_action_name(d[i].action));
                        cr_assert(json_is_boolean(
                            json_object_get(row, "dry_run")));
                        cr_assert_eq(
                            json_is_true(json_object_get(row, "dry_run")),
                            d[i].dry_run);
                }
                json_decref(rows);
        }
        h_msgs_free(msgs, n);

        /* 5. Once the sources go idle the watermark closes the windows the
         * scenario has left behind: one final row per scope and window on
         * channel-kpis, equal to the Redis buckets of that window. */
        n = h_consume_all("channel-kpis", 15, 60000, &msgs);
        cr_assert_geq(n, 15, "final KPI rows: want >= 15, got %d", n);
        for (int i = 0; i < n; i++) {
                sg_snapshot_t k;
                json_t *o;
                char from[32], to[32];
                const char *args[] = {"kpis",    "--json", "--channel",
                                      k.channel, "--from", from,
                                      "--to",    to,       NULL};
                static char out[65536];
                json_t *rows, *row = NULL;
                size_t j;

                cr_assert_eq(sg_codec_decode_kpi(codec, msgs[i]->payload,
                                                 msgs[i]->len, &k),
                             0, "%s", sg_codec_error(codec));
                cr_assert_eq(k.window_end - k.window_start, 60000);
                for (int m = 0; m < i; m++) {
                        /* no (scope, window) twice */
                        sg_snapshot_t prev;
                        sg_codec_decode_kpi(codec, msgs[m]->payload,
                                            msgs[m]->len, &prev);
                        cr_assert(strcmp(prev.channel, k.channel) ||
                                      strcmp(prev.campaign_id, k.campaign_id) ||
                                      prev.window_start != k.window_start,
                                  "final row twice: %s/%s at %lld", k.channel,
                                  k.campaign_id, (long long)k.window_start);
                }
                snprintf(from, sizeof(from), "%lld", (long long)k.window_start);
                snprintf(to, sizeof(to), "%lld", (long long)k.window_end);
                cr_assert_eq(h_run("sg-ctl", args, out, sizeof(out)), 0);
                rows = h_jsonl_text(out);
                json_array_foreach(rows, j, o)
                {
                        json_t *c = json_object_get(o, "campaign_id");
                        if (k.campaign_id[0] ? json_is_string(c) &&
                                                   strcmp(json_string_value(c),
                                                          k.campaign_id) == 0
                                             : json_is_null(c))
                                row = o;
                }
                cr_assert_not_null(row, "no Redis KPIs for %s/%s", k.channel,
                                   k.campaign_id);
#define SAME(f)                                                                \
        cr_assert_eq(k.c.f, json_integer_value(json_object_get(row, #f)),      \
                     "%s/%s %s at %lld: row %lld, Redis %lld", k.channel,      \
                     k.campaign_id, #f, (long long)k.window_start,             \
                     (long long)k.c.f,                                         \
                     (long long)json_integer_value(json_object_get(row, #f)))
                SAME(impressions);
                SAME(clicks);
                SAME(conversions);
                SAME(spend_micros);
                SAME(revenue_micros);
                SAME(invalid_clicks);
                SAME(invalid_impressions);
                SAME(invalid_spend_micros);
                SAME(unique_devices);
#undef SAME
                json_decref(rows);
        }
        h_msgs_free(msgs, n);
        sg_codec_destroy(codec);
        json_decref(kpis);
        json_decref(truth);
}
