/*
 * Rules: loading and validating the rules file, evaluating snapshots, and
 * the decision (deterministic id, reason, metrics) a tripped rule yields.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "rules.h"

/* 2026-11-22T10:00:00Z and a 60 s window. */
#define T0 1795341600000LL
#define T1 (T0 + 60000)

/* One rule per metric and op the table below exercises. */
static const char test_rules[] =
    "rules:\n"
    "  - {id: ivt, metric: ivt_rate, op: \">\", threshold: 0.25,"
    " min_clicks: 100, action: PAUSE}\n"
    "  - {id: ivt_ge, metric: ivt_rate, op: \">=\", threshold: 0.25,"
    " min_clicks: 100, action: ALERT}\n"
    "  - {id: cpa_overrun, metric: cpa, op: \">\", target_factor: 1.3,"
    " min_clicks: 100, min_spend_micros: 50000000, action: PAUSE}\n"
    "  - {id: cpa_abs, metric: cpa, op: \">\", threshold: 26000000,"
    " min_clicks: 100, action: ALERT}\n"
    "  - {id: cpa_floor, metric: cpa, op: \"<\", threshold: 5000000,"
    " min_clicks: 100, action: ALERT}\n"
    "  - {id: ctr_floor, metric: ctr, op: \"<\", threshold: 0.01,"
    " min_impressions: 1000, action: PAUSE}\n"
    "  - {id: ctr_cap, metric: ctr, op: \">\", threshold: 0.5,"
    " min_clicks: 10, action: ALERT}\n"
    "  - {id: cvr_floor, metric: cvr, op: \"<=\", threshold: 0.02,"
    " min_clicks: 100, action: ALERT}\n"
    "  - {id: roas_floor, metric: roas, op: \"<\", threshold: 1,"
    " min_spend_micros: 1000000, action: PAUSE}\n"
    "  - {id: cpm_cap, metric: cpm, op: \">=\", threshold: 5000000,"
    " min_impressions: 1000, action: ALERT}\n";

static sg_rules_t *load(const char *yaml)
{
        char err[512] = "";
        sg_rules_t *rules = sg_rules_load_string(yaml, strlen(yaml), "t.yaml",
                                                 err, sizeof(err));

        cr_assert_not_null(rules, "load failed: %s", err);
        return rules;
}

static const sg_rule_t *find(const sg_rules_t *rules, const char *id)
{
        for (int i = 0; i < rules->cnt; i++)
                if (strcmp(rules->rule[i].id, id) == 0)
                        return &rules->rule[i];
        cr_assert_fail("no rule %s", id);
        return NULL;
}

static sg_snapshot_t snapshot(const char *campaign, sg_counters_t c)
{
        sg_snapshot_t s;

        memset(&s, 0, sizeof(s));
        strcpy(s.channel, "social");
        strcpy(s.campaign_id, campaign);
        s.window_start = T0;
        s.window_end = T1;
        s.watermark = T1 + 5000;
        s.c = c;
        return s;
}

/* ------------------------------------------------------------ evaluation */

typedef struct {
        const char *rule;
        const char *campaign;
        sg_counters_t c;
        int64_t target;
        sg_rule_outcome_t outcome;
        double value, threshold; /* checked for HEALTHY and TRIPPED */
        int zero_conversions;
} eval_case_t;

static void check_eval(const eval_case_t *tc)
{
        sg_rules_t *rules = load(test_rules);
        sg_snapshot_t s = snapshot(tc->campaign ? tc->campaign : "", tc->c);
        sg_rule_eval_t ev;
        sg_rule_outcome_t got =
            sg_rule_eval(find(rules, tc->rule), &s, NULL,
                         &(sg_rule_ctx_t){.target = tc->target}, &ev);

        cr_assert_eq(got, tc->outcome, "outcome %d, want %d", got, tc->outcome);
        cr_assert_eq(ev.outcome, tc->outcome);
        if (tc->outcome == SG_RULE_HEALTHY || tc->outcome == SG_RULE_TRIPPED) {
                cr_assert(ev.value == tc->value, "value %.17g, want %.17g",
                          ev.value, tc->value);
                cr_assert(ev.threshold == tc->threshold,
                          "threshold %.17g, want %.17g", ev.threshold,
                          tc->threshold);
                cr_assert_eq(ev.zero_conversions, tc->zero_conversions);
        }
        sg_rules_destroy(rules);
}

#define EVAL(name, ...)                                                        \
        Test(eval, name)                                                       \
        {                                                                      \
                check_eval(&(const eval_case_t){__VA_ARGS__});                 \
        }

EVAL(pauses_channel_when_ivt_rate_above_threshold, .rule = "ivt",
     .c = {.clicks = 412, .invalid_clicks = 251}, .outcome = SG_RULE_TRIPPED,
     .value = 251.0 / 412, .threshold = 0.25)
EVAL(healthy_ivt_rate_does_not_trip, .rule = "ivt",
     .c = {.clicks = 1000, .invalid_clicks = 20}, .outcome = SG_RULE_HEALTHY,
     .value = 0.02, .threshold = 0.25)
EVAL(ivt_rate_at_threshold_does_not_trip_strict_greater, .rule = "ivt",
     .c = {.clicks = 400, .invalid_clicks = 100}, .outcome = SG_RULE_HEALTHY,
     .value = 0.25, .threshold = 0.25)
EVAL(ivt_rate_at_threshold_trips_greater_or_equal, .rule = "ivt_ge",
     .c = {.clicks = 400, .invalid_clicks = 100}, .outcome = SG_RULE_TRIPPED,
     .value = 0.25, .threshold = 0.25)
EVAL(no_decision_below_min_clicks, .rule = "ivt",
     .c = {.clicks = 99, .invalid_clicks = 99}, .outcome = SG_RULE_SMALL_SAMPLE)
EVAL(min_clicks_is_inclusive, .rule = "ivt",
     .c = {.clicks = 100, .invalid_clicks = 30}, .outcome = SG_RULE_TRIPPED,
     .value = 0.3, .threshold = 0.25)
EVAL(ignores_campaign_snapshot_for_channel_rule, .rule = "ivt",
     .campaign = "spring-sale", .c = {.clicks = 412, .invalid_clicks = 251},
     .outcome = SG_RULE_OUT_OF_SCOPE)
EVAL(pauses_channel_when_cpa_above_target_factor, .rule = "cpa_overrun",
     .c = {.clicks = 500, .conversions = 3, .spend_micros = 120000000},
     .target = 20000000, .outcome = SG_RULE_TRIPPED, .value = 40000000,
     .threshold = 1.3 * 20000000)
EVAL(cpa_below_target_factor_is_healthy, .rule = "cpa_overrun",
     .c = {.clicks = 500, .conversions = 8, .spend_micros = 120000000},
     .target = 20000000, .outcome = SG_RULE_HEALTHY, .value = 15000000,
     .threshold = 1.3 * 20000000)
EVAL(cpa_with_zero_conversions_counts_spend_as_overrun, .rule = "cpa_overrun",
     .c = {.clicks = 500, .spend_micros = 60000000}, .target = 20000000,
     .outcome = SG_RULE_TRIPPED, .value = 60000000, .threshold = 1.3 * 20000000,
     .zero_conversions = 1)
EVAL(cpa_with_zero_conversions_and_spend_below_threshold_is_healthy,
     .rule = "cpa_abs", .c = {.clicks = 500, .spend_micros = 20000000},
     .outcome = SG_RULE_HEALTHY, .value = 20000000, .threshold = 26000000,
     .zero_conversions = 1)
EVAL(cpa_floor_with_zero_conversions_does_not_fire, .rule = "cpa_floor",
     .c = {.clicks = 500, .spend_micros = 1000}, .outcome = SG_RULE_UNDEFINED)
EVAL(target_factor_rule_never_fires_on_channel_without_target,
     .rule = "cpa_overrun",
     .c = {.clicks = 500, .conversions = 1, .spend_micros = 900000000},
     .target = 0, .outcome = SG_RULE_NO_TARGET)
EVAL(no_decision_until_every_guard_holds, .rule = "cpa_overrun",
     .c = {.clicks = 500, .spend_micros = 49999999}, .target = 20000000,
     .outcome = SG_RULE_SMALL_SAMPLE)
EVAL(ctr_below_floor_trips, .rule = "ctr_floor",
     .c = {.impressions = 10000, .clicks = 50}, .outcome = SG_RULE_TRIPPED,
     .value = 0.005, .threshold = 0.01)
EVAL(metric_with_zero_denominator_does_not_fire, .rule = "ctr_cap",
     .c = {.clicks = 20}, .outcome = SG_RULE_UNDEFINED)
EVAL(cvr_at_floor_trips_less_or_equal, .rule = "cvr_floor",
     .c = {.clicks = 200, .conversions = 4}, .outcome = SG_RULE_TRIPPED,
     .value = 0.02, .threshold = 0.02)
EVAL(roas_below_one_trips, .rule = "roas_floor",
     .c = {.spend_micros = 10000000, .revenue_micros = 5000000},
     .outcome = SG_RULE_TRIPPED, .value = 0.5, .threshold = 1)
EVAL(cpm_is_in_micros_per_thousand_impressions, .rule = "cpm_cap",
     .c = {.impressions = 2000, .spend_micros = 20000000},
     .outcome = SG_RULE_TRIPPED, .value = 10000000, .threshold = 5000000)

Test(eval, target_comes_from_channel_cpa_target_in_config)
{
        sg_rules_t *rules = load(test_rules);
        sg_conf_t *conf = calloc(1, sizeof(*conf));

        conf->channel_cnt = 1;
        strcpy(conf->channels[0].name, "social");
        conf->channels[0].target_cpa_micros = 20000000;
        cr_assert_eq(sg_rule_target(find(rules, "cpa_overrun"), conf, "social"),
                     20000000);
        cr_assert_eq(
            sg_rule_target(find(rules, "cpa_overrun"), conf, "unknown"), 0);
        cr_assert_eq(sg_rule_target(find(rules, "cpa_abs"), conf, "social"), 0);
        free(conf);
        sg_rules_destroy(rules);
}

/* --------------------------------------------------------------- loading */

Test(load, loads_shipped_default_rules)
{
        char path[4096], err[512] = "";
        const char *src = getenv("SG_SOURCE_DIR");
        sg_rules_t *rules;
        const sg_rule_t *r;

        snprintf(path, sizeof(path), "%s/config/rules.yaml",
                 src ? src : SG_SOURCE_DIR);
        rules = sg_rules_load_file(path, err, sizeof(err));
        cr_assert_not_null(rules, "%s", err);
        cr_assert_eq(rules->cnt, 13);
        /* Early trips: rates of the window's own events only. */
        {
                static const char *const early[] = {
                    "ivt_circuit_breaker", "click_flood_ip", "click_share_ip",
                    "click_injection", "frequency_cap_waste", NULL};

                for (int i = 0; i < rules->cnt; i++) {
                        int want = 0;

                        for (int k = 0; early[k]; k++)
                                want |= !strcmp(rules->rule[i].id, early[k]);
                        cr_assert_eq(rules->rule[i].early, want, "%s",
                                     rules->rule[i].id);
                }
        }

        r = &rules->rule[0];
        cr_assert_str_eq(r->id, "ivt_circuit_breaker");
        cr_assert_eq(r->scope, SG_SCOPE_CHANNEL);
        cr_assert_str_eq(r->window, "1m");
        cr_assert_eq(r->window_ms, 60000);
        cr_assert_eq(r->metric, SG_METRIC_IVT_RATE);
        cr_assert_eq(r->op, SG_OP_GT);
        cr_assert_eq(r->cmp, SG_CMP_ABSOLUTE);
        cr_assert(r->threshold == 0.25);
        cr_assert(r->resume_threshold == 0.10);
        cr_assert_eq(r->cooldown_ms, 300000);
        cr_assert_eq(r->min_clicks, 100);
        cr_assert_eq(r->min_spend_micros, 0);
        cr_assert_eq(r->action, SG_ACT_PAUSE);

        r = &rules->rule[1];
        cr_assert_str_eq(r->id, "cpa_overrun");
        cr_assert_eq(r->metric, SG_METRIC_CPA);
        cr_assert_eq(r->cmp, SG_CMP_TARGET);
        cr_assert(r->threshold == 1.3);
        cr_assert(r->resume_threshold == 1.1);
        cr_assert_eq(r->min_clicks, 100);
        cr_assert_eq(r->min_spend_micros, 50000000);

        r = &rules->rule[2];
        cr_assert_str_eq(r->id, "campaign_cpa_overrun");
        cr_assert_eq(r->scope, SG_SCOPE_CAMPAIGN);

        r = &rules->rule[3];
        cr_assert_str_eq(r->id, "roi_stop_loss");
        cr_assert_eq(r->for_windows, 3);
        cr_assert_eq(r->window_ms, 300000);

        r = &rules->rule[6];
        cr_assert_str_eq(r->id, "click_flood_ip");
        cr_assert_eq(r->scope, SG_SCOPE_SOURCE);
        cr_assert_str_eq(r->source_kind, "ip");
        cr_assert_eq(r->ttl_ms, 3600000);
        cr_assert_eq(r->action, SG_ACT_BLOCK_SOURCE);

        r = &rules->rule[7];
        cr_assert_str_eq(r->id, "click_share_ip");
        cr_assert_eq(r->scope, SG_SCOPE_SOURCE);
        cr_assert_eq(r->metric, SG_METRIC_SOURCE_SHARE);
        cr_assert(r->threshold == 0.05);
        cr_assert_eq(r->min_clicks, 300);
        cr_assert_eq(r->action, SG_ACT_BLOCK_SOURCE);

        r = &rules->rule[10];
        cr_assert_str_eq(r->id, "cpa_swing");
        cr_assert_eq(r->cmp, SG_CMP_BASELINE);
        cr_assert_eq(r->op, SG_OP_OUTSIDE);
        cr_assert_eq(r->baseline_windows, 1);

        cr_assert_eq(rules->realloc.enabled, 1);
        cr_assert_str_eq(rules->realloc.window, "1h");
        cr_assert_eq(rules->realloc.every_ms, 3600000);
        cr_assert(rules->realloc.reserve_pct == 10);
        cr_assert(rules->realloc.step_pct == 15);
        cr_assert(rules->realloc.min_roas == 1);
        sg_rules_destroy(rules);
}

Test(load, empty_rules_list_loads_with_no_rules)
{
        sg_rules_t *rules = load("rules: []\n");

        cr_assert_eq(rules->cnt, 0);
        sg_rules_destroy(rules);
}

Test(load, missing_file_names_the_path)
{
        char err[512] = "";

        cr_assert_null(
            sg_rules_load_file("/nonexistent/rules.yaml", err, sizeof(err)));
        cr_assert_str_eq(err,
                         "/nonexistent/rules.yaml: No such file or directory");
}

static void check_reject(const char *yaml, const char *want)
{
        char err[512] = "";
        sg_rules_t *rules = sg_rules_load_string(yaml, strlen(yaml), "t.yaml",
                                                 err, sizeof(err));

        cr_assert_null(rules, "loaded, want error: %s", want);
        cr_assert_str_eq(err, want);
}

#define REJECT(name, yaml, want)                                               \
        Test(load, name)                                                       \
        {                                                                      \
                check_reject(yaml, want);                                      \
        }

REJECT(early_true_on_a_conversion_lagged_metric,
       "rules:\n  - id: cpa\n    metric: cpa\n    op: \">\"\n"
       "    threshold: 30000000\n    min_clicks: 100\n    early: true\n"
       "    action: PAUSE\n",
       "t.yaml:7: rule cpa: early: only PAUSE, ALERT and BLOCK_SOURCE rules "
       "on a rate of the window's own events (ivt_rate and its reasons, ctr, "
       "freq_cap_rate, short_ctc_share, source_clicks, source_share), without "
       "for_windows or change, may trip on a running window")
REJECT(mode_neither_live_nor_shadow,
       "rules:\n  - id: ivt\n    metric: ivt_rate\n    op: \">\"\n"
       "    threshold: 0.25\n    min_clicks: 100\n    mode: dry\n"
       "    action: PAUSE\n",
       "t.yaml:7: rule ivt: mode: \"dry\" is not live or shadow")
REJECT(mode_in_upper_case,
       "rules:\n  - id: ivt\n    metric: ivt_rate\n    op: \">\"\n"
       "    threshold: 0.25\n    min_clicks: 100\n    action: PAUSE\n"
       "    mode: SHADOW\n",
       "t.yaml:8: rule ivt: mode: \"SHADOW\" is not live or shadow")

Test(load, mode_is_live_unless_the_rule_says_shadow)
{
        sg_rules_t *rules = load(
            "rules:\n"
            "  - {id: a, metric: ivt_rate, op: \">\", threshold: 0.25,"
            " min_clicks: 100, action: PAUSE}\n"
            "  - {id: b, metric: ivt_rate, op: \">\", threshold: 0.25,"
            " min_clicks: 100, action: PAUSE, mode: live}\n"
            "  - {id: c, metric: ivt_rate, op: \">\", threshold: 0.1,"
            " min_clicks: 100, action: PAUSE, mode: shadow}\n"
            "  - {id: d, scope: source, metric: source_clicks, op: \">\","
            " threshold: 10, min_clicks: 10, action: BLOCK_SOURCE,"
            " mode: shadow}\n");

        cr_assert_eq(rules->cnt, 4);
        cr_assert_eq(find(rules, "a")->mode, SG_MODE_LIVE);
        cr_assert_eq(find(rules, "b")->mode, SG_MODE_LIVE);
        cr_assert_eq(find(rules, "c")->mode, SG_MODE_SHADOW);
        cr_assert_eq(find(rules, "d")->mode, SG_MODE_SHADOW);
        cr_assert_str_eq(sg_rule_mode_name(SG_MODE_LIVE), "live");
        cr_assert_str_eq(sg_rule_mode_name(SG_MODE_SHADOW), "shadow");
        cr_assert_str_eq(sg_rule_mode_name((sg_rule_mode_t)7), "?");
        sg_rules_destroy(rules);
}

REJECT(early_not_a_boolean,
       "rules:\n  - id: ivt\n    metric: ivt_rate\n    op: \">\"\n"
       "    threshold: 0.25\n    min_clicks: 100\n    early: yes\n"
       "    action: PAUSE\n",
       "t.yaml:7: rule ivt: early: \"yes\" is not true or false")

/* A valid rule, lines 2-7, to break one key at a time. */
#define R_HEAD "rules:\n  - id: ivt\n    metric: ivt_rate\n"
#define R_OP   "    op: \">\"\n"
#define R_THR  "    threshold: 0.25\n"
#define R_MIN  "    min_clicks: 100\n"
#define R_ACT  "    action: PAUSE\n"

REJECT(rejects_unknown_key, R_HEAD R_OP R_THR R_MIN R_ACT "    thresold: 1\n",
       "t.yaml:8: rule ivt: unknown key thresold")
REJECT(rejects_unknown_metric,
       "rules:\n  - id: ivt\n    metric: cpc\n" R_OP R_THR R_MIN R_ACT,
       "t.yaml:3: rule ivt: metric: unknown metric \"cpc\" (docs/rules.md "
       "lists them)")
REJECT(rejects_unknown_op, R_HEAD "    op: \"=>\"\n" R_THR R_MIN R_ACT,
       "t.yaml:4: rule ivt: op: unknown op \"=>\" (>, >=, <, <=, <>; quote "
       "it: op: \">\")")
REJECT(rejects_unquoted_greater_than_op, R_HEAD "    op: >\n" R_THR R_MIN R_ACT,
       "t.yaml:4: rule ivt: op: unknown op \"\" (>, >=, <, <=, <>; quote "
       "it: op: \">\")")
REJECT(rejects_unknown_action, R_HEAD R_OP R_THR R_MIN "    action: STOP\n",
       "t.yaml:7: rule ivt: action: unknown action \"STOP\" (PAUSE, ALERT, "
       "BLOCK_SOURCE)")
REJECT(rejects_resume_action_since_breakers_decide_it,
       R_HEAD R_OP R_THR R_MIN "    action: RESUME\n",
       "t.yaml:7: rule ivt: action: RESUME is decided by the breaker of a "
       "PAUSE rule (resume_threshold, cooldown_s)")
REJECT(rejects_reallocate_action_outside_its_section,
       R_HEAD R_OP R_THR R_MIN "    action: REALLOCATE\n",
       "t.yaml:7: rule ivt: action: REALLOCATE is set up in the "
       "reallocation: section")
REJECT(rejects_missing_threshold, R_HEAD R_OP R_MIN R_ACT,
       "t.yaml:2: rule ivt: missing threshold (or target_factor, or change)")
REJECT(rejects_threshold_and_target_factor_together,
       "rules:\n  - id: cpa\n    metric: cpa\n" R_OP R_THR
       "    target_factor: 1.3\n" R_MIN R_ACT,
       "t.yaml:6: rule cpa: threshold, target_factor and change are "
       "exclusive")
REJECT(rejects_negative_threshold,
       R_HEAD R_OP "    threshold: -0.1\n" R_MIN R_ACT,
       "t.yaml:5: rule ivt: threshold: -0.1 is negative")
REJECT(rejects_non_numeric_threshold,
       R_HEAD R_OP "    threshold: high\n" R_MIN R_ACT,
       "t.yaml:5: rule ivt: threshold: \"high\" is not a number")
REJECT(rejects_infinite_threshold,
       R_HEAD R_OP "    threshold: inf\n" R_MIN R_ACT,
       "t.yaml:5: rule ivt: threshold: \"inf\" is not a number")
REJECT(rejects_duplicate_id,
       R_HEAD R_OP R_THR R_MIN R_ACT
       "  - {id: ivt, metric: ctr, op: \"<\", threshold: 0.01, "
       "min_impressions: 1000, action: ALERT}\n",
       "t.yaml:8: rule ivt: duplicate id (first at line 2)")
REJECT(rejects_rule_without_min_guard, R_HEAD R_OP R_THR R_ACT,
       "t.yaml:2: rule ivt: no minimum-sample guard (min_impressions, "
       "min_clicks, min_conversions or min_spend_micros above 0)")
REJECT(rejects_rule_whose_only_guard_is_zero,
       R_HEAD R_OP R_THR "    min_clicks: 0\n" R_ACT,
       "t.yaml:2: rule ivt: no minimum-sample guard (min_impressions, "
       "min_clicks, min_conversions or min_spend_micros above 0)")
REJECT(rejects_non_integer_guard,
       R_HEAD R_OP R_THR "    min_clicks: 1.5\n" R_ACT,
       "t.yaml:6: rule ivt: min_clicks: \"1.5\" is not a non-negative "
       "integer")
REJECT(rejects_missing_id, "rules:\n  - metric: ivt_rate\n",
       "t.yaml:2: rule #1: missing id")
REJECT(rejects_id_outside_lowercase_digits_underscore,
       "rules:\n  - id: IVT-1\n",
       "t.yaml:2: rule #1: id: \"IVT-1\" must match [a-z0-9_]+ (at most 63 "
       "chars)")
REJECT(rejects_unknown_scope,
       R_HEAD "    scope: country\n" R_OP R_THR R_MIN R_ACT,
       "t.yaml:4: rule ivt: scope: unknown scope \"country\" (channel, "
       "campaign, source)")
REJECT(rejects_target_factor_on_metric_without_target,
       "rules:\n  - id: ctr\n    metric: ctr\n" R_OP
       "    target_factor: 0.5\n" R_MIN R_ACT,
       "t.yaml:5: rule ctr: target_factor: metric ctr has no per-channel "
       "target (only cpa)")
REJECT(rejects_key_given_twice, R_HEAD R_OP R_THR R_THR R_MIN R_ACT,
       "t.yaml:6: rule ivt: threshold: given twice")
REJECT(rejects_missing_op, R_HEAD R_THR R_MIN R_ACT,
       "t.yaml:2: rule ivt: missing op")
REJECT(rejects_file_without_rules_list, "channels: []\n",
       "t.yaml:1: unknown key channels (only rules: and reallocation:)")
REJECT(rejects_empty_file, "", "t.yaml:1: missing rules: (a list of rules)")
REJECT(rejects_rules_that_is_not_a_list, "rules: 3\n",
       "t.yaml:1: rules: must be a list")
REJECT(rejects_rule_that_is_not_a_map, "rules:\n  - ivt\n",
       "t.yaml:2: rule #1: must be a map (id, metric, op, threshold, ...)")
REJECT(names_the_buffer_in_yaml_syntax_errors, "rules: [\n",
       "t.yaml:2: did not find expected node content (while parsing a flow "
       "node)")

/* -------------------------------------------------------------- decisions */

Test(decision, decision_id_is_fnv1a_128_of_the_trigger)
{
        char id[33];

        /* Pinned: a changed id would defeat the sink's dedupe across an
         * upgrade. Checked against an independent Python FNV-1a 128. */
        sg_decision_id("ivt_circuit_breaker", SG_ACT_PAUSE, "social", "", T0,
                       T1, id);
        cr_assert_str_eq(id, "41c7ed0824e531413404fcec889febfc");
        sg_decision_id("cpa_overrun", SG_ACT_PAUSE, "search", "", T0, T1, id);
        cr_assert_str_eq(id, "fe13424dfbb47b70b6c3e3d5e4c347eb");
}

Test(decision, decision_id_changes_with_every_trigger_field)
{
        char ids[7][33];

        sg_decision_id("r", SG_ACT_PAUSE, "social", "", T0, T1, ids[0]);
        sg_decision_id("r2", SG_ACT_PAUSE, "social", "", T0, T1, ids[1]);
        sg_decision_id("r", SG_ACT_ALERT, "social", "", T0, T1, ids[2]);
        sg_decision_id("r", SG_ACT_PAUSE, "search", "", T0, T1, ids[3]);
        sg_decision_id("r", SG_ACT_PAUSE, "social", "c1", T0, T1, ids[4]);
        sg_decision_id("r", SG_ACT_PAUSE, "social", "", T0 + 1, T1, ids[5]);
        sg_decision_id("r", SG_ACT_PAUSE, "social", "", T0, T1 + 1, ids[6]);
        for (int i = 0; i < 7; i++) {
                cr_assert_eq(strlen(ids[i]), 32);
                cr_assert_eq(strspn(ids[i], "0123456789abcdef"), 32);
                for (int j = 0; j < i; j++)
                        cr_assert_str_neq(ids[i], ids[j], "%d == %d", i, j);
        }
}

Test(decision, decision_id_fields_do_not_run_together)
{
        char a[33], b[33];

        sg_decision_id("ab", SG_ACT_PAUSE, "c", "", T0, T1, a);
        sg_decision_id("a", SG_ACT_PAUSE, "bc", "", T0, T1, b);
        cr_assert_str_neq(a, b);
}

/* Evaluates rule id of the shipped-like set and builds its decision. */
static void decide(const char *rule, sg_snapshot_t s, int64_t target,
                   sg_decision_t *d)
{
        sg_rules_t *rules = load(test_rules);
        const sg_rule_t *r = find(rules, rule);
        sg_rule_eval_t ev;

        cr_assert_eq(
            sg_rule_eval(r, &s, NULL, &(sg_rule_ctx_t){.target = target}, &ev),
            SG_RULE_TRIPPED);
        memset(d, 0x5a, sizeof(*d)); /* every field must be written */
        sg_rule_decision(r, r->action, &s, &ev, d);
        sg_rules_destroy(rules);
}

Test(decision, ivt_decision_explains_rule_metric_threshold_window_and_sample)
{
        sg_decision_t *d = malloc(sizeof(*d));
        char id[33];

        decide(
            "ivt",
            snapshot("", (sg_counters_t){.clicks = 412, .invalid_clicks = 251}),
            0, d);
        sg_decision_id("ivt", SG_ACT_PAUSE, "social", "", T0, T1, id);
        cr_assert_str_eq(d->decision_id, id);
        cr_assert_str_eq(d->rule_id, "ivt");
        cr_assert_eq(d->action, SG_ACT_PAUSE);
        cr_assert_str_eq(d->channel, "social");
        cr_assert_str_eq(d->campaign_id, "");
        cr_assert_str_eq(d->source, "");
        cr_assert_str_eq(d->reason,
                         "ivt: ivt_rate 0.6092 > 0.25, window 1m over "
                         "[2026-11-22T10:00:00Z, 10:01:00Z) (60 s), "
                         "clicks=412");
        cr_assert_eq(d->window_start, T0);
        cr_assert_eq(d->window_end, T1);
        cr_assert_eq(d->budget_cnt, -1);
        cr_assert_eq(d->dry_run, 0);
        free(d);
}

Test(decision, dry_run_id_is_the_live_id_hashed_on_with_dry_run)
{
        char live[33], src[33], dry[33];

        /* Pinned against an independent Python FNV-1a 128, as above. */
        sg_decision_id_mode("ivt_circuit_breaker", SG_ACT_PAUSE, "social", "",
                            "", T0, T1, 1, dry);
        cr_assert_str_eq(dry, "e48a0a7ca88ca5db885b16d895367245");
        sg_decision_id_mode("ivt_circuit_breaker", SG_ACT_PAUSE, "social", "",
                            "", T0, T1, 0, live);
        cr_assert_str_eq(live, "41c7ed0824e531413404fcec889febfc");
        sg_decision_id_mode("r", SG_ACT_BLOCK_SOURCE, "social", "", "ip:1.2.3.4",
                            T0, T1, 0, live);
        sg_decision_id_source("r", SG_ACT_BLOCK_SOURCE, "social", "",
                              "ip:1.2.3.4", T0, T1, src);
        cr_assert_str_eq(live, src);
        sg_decision_id_mode("r", SG_ACT_BLOCK_SOURCE, "social", "", "ip:1.2.3.4",
                            T0, T1, 1, dry);
        cr_assert_str_neq(dry, src);
}

Test(decision, a_shadow_rule_decides_a_dry_run_with_its_own_id)
{
        sg_rules_t *rules = load(
            "rules:\n"
            "  - {id: ivt_circuit_breaker, metric: ivt_rate, op: \">\","
            " threshold: 0.25, min_clicks: 100, action: PAUSE,"
            " mode: shadow}\n");
        const sg_rule_t *r = find(rules, "ivt_circuit_breaker");
        sg_snapshot_t s =
            snapshot("", (sg_counters_t){.clicks = 412, .invalid_clicks = 251});
        sg_decision_t *d = malloc(sizeof(*d));
        sg_rule_eval_t ev;

        cr_assert_eq(sg_rule_eval(r, &s, NULL, &(sg_rule_ctx_t){0}, &ev),
                     SG_RULE_TRIPPED);
        memset(d, 0x5a, sizeof(*d));
        sg_rule_decision(r, SG_ACT_PAUSE, &s, &ev, d);
        cr_assert_eq(d->dry_run, 1);
        cr_assert_str_eq(d->decision_id, "e48a0a7ca88ca5db885b16d895367245");
        cr_assert_str_eq(d->reason,
                         "ivt_circuit_breaker: ivt_rate 0.6092 > 0.25, window "
                         "1m over [2026-11-22T10:00:00Z, 10:01:00Z) (60 s), "
                         "clicks=412, dry run (shadow rule)");
        free(d);
        sg_rules_destroy(rules);
}

Test(decision, decided_at_is_window_end_not_wall_clock)
{
        sg_decision_t *d = malloc(sizeof(*d));

        decide(
            "ivt",
            snapshot("", (sg_counters_t){.clicks = 412, .invalid_clicks = 251}),
            0, d);
        cr_assert_eq(d->decided_at, T1);
        free(d);
}

Test(decision, metrics_map_holds_value_threshold_and_counters)
{
        static const char *const names[] = {
            "cpa",         "threshold",    "impressions",    "clicks",
            "conversions", "spend_micros", "revenue_micros", "invalid_clicks"};
        const double values[] = {40000000, 1.3 * 20000000, 9000,     500,
                                 3,        120000000,      80000000, 12};
        sg_decision_t *d = malloc(sizeof(*d));

        decide("cpa_overrun",
               snapshot("", (sg_counters_t){.impressions = 9000,
                                            .clicks = 500,
                                            .conversions = 3,
                                            .spend_micros = 120000000,
                                            .revenue_micros = 80000000,
                                            .invalid_clicks = 12}),
               20000000, d);
        cr_assert_eq(d->metric_cnt, 8);
        for (int i = 0; i < 8; i++) {
                cr_assert_str_eq(d->metrics[i].name, names[i]);
                cr_assert(d->metrics[i].value == values[i], "%s = %.17g",
                          names[i], d->metrics[i].value);
        }
        cr_assert_str_eq(d->reason,
                         "cpa_overrun: cpa 40000000 > 26000000 (1.3 x target "
                         "20000000), window 1m over [2026-11-22T10:00:00Z, "
                         "10:01:00Z) "
                         "(60 s), clicks=500 spend_micros=120000000");
        free(d);
}

Test(decision, zero_conversion_overrun_reports_spend_with_a_note)
{
        sg_decision_t *d = malloc(sizeof(*d));

        decide("cpa_overrun",
               snapshot("", (sg_counters_t){.clicks = 500,
                                            .spend_micros = 60000000}),
               20000000, d);
        cr_assert_str_eq(d->reason,
                         "cpa_overrun: cpa n/a (0 conversions): spend_micros "
                         "60000000 > 26000000 (1.3 x target 20000000), window "
                         "1m over "
                         "[2026-11-22T10:00:00Z, 10:01:00Z) (60 s), "
                         "clicks=500 spend_micros=60000000");
        cr_assert_str_eq(d->metrics[0].name, "cpa");
        cr_assert(d->metrics[0].value == 60000000);
        cr_assert_str_eq(d->metrics[4].name, "conversions");
        cr_assert(d->metrics[4].value == 0);
        free(d);
}

Test(decision, window_across_midnight_shows_both_dates_and_millis)
{
        sg_decision_t *d = malloc(sizeof(*d));
        sg_snapshot_t s =
            snapshot("", (sg_counters_t){.clicks = 412, .invalid_clicks = 251});

        s.window_start = 1795391970500LL; /* 2026-11-22T23:59:30.500Z */
        s.window_end = s.window_start + 60000;
        s.watermark = s.window_end; /* complete */
        decide("ivt", s, 0, d);
        cr_assert_str_eq(d->reason,
                         "ivt: ivt_rate 0.6092 > 0.25, window 1m over "
                         "[2026-11-22T23:59:30.500Z, "
                         "2026-11-23T00:00:30.500Z) (60 s), clicks=412");
        free(d);
}

Test(decision, same_snapshot_yields_identical_decision)
{
        sg_decision_t *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
        sg_snapshot_t s =
            snapshot("", (sg_counters_t){.clicks = 412, .invalid_clicks = 251});

        decide("ivt_ge", s, 0, a);
        decide("ivt_ge", s, 0, b);
        cr_assert_eq(a->action, SG_ACT_ALERT);
        cr_assert_str_eq(a->decision_id, b->decision_id);
        cr_assert_str_eq(a->reason, b->reason);
        cr_assert_eq(a->decided_at, b->decided_at);
        free(a);
        free(b);
}

/* Block before pause: the engine hands the rule a snapshot net of its
 * blocked sources; the decision says so, with the clicks it took out. */
Test(decision, a_net_snapshot_says_how_many_blocked_clicks_it_left_out)
{
        sg_rules_t *rules = load(test_rules);
        const sg_rule_t *r = find(rules, "ivt");
        sg_snapshot_t s =
            snapshot("", (sg_counters_t){.clicks = 412, .invalid_clicks = 251});
        sg_decision_t *d = malloc(sizeof(*d));
        sg_rule_eval_t ev;
        int found = 0;

        cr_assert_eq(sg_rule_eval(r, &s, NULL,
                                  &(sg_rule_ctx_t){.blocked_clicks = 150}, &ev),
                     SG_RULE_TRIPPED);
        sg_rule_decision(r, r->action, &s, &ev, d);
        cr_assert(strstr(d->reason, ", clicks=412, net of 150 clicks of "
                                    "blocked sources"),
                  "%s", d->reason);
        for (int i = 0; i < d->metric_cnt; i++)
                if (!strcmp(d->metrics[i].name, "blocked_source_clicks")) {
                        cr_assert(d->metrics[i].value == 150);
                        found++;
                }
        cr_assert_eq(found, 1);
        free(d);
        sg_rules_destroy(rules);
}

/* Regression: the flood rule's metric is also its sample, and a decision
 * naming source_clicks twice could not be encoded (a map holds a name
 * once): no BLOCK_SOURCE ever left sg-rules. */
Test(decision, block_source_decision_names_each_metric_once)
{
        static const char yaml[] =
            "rules:\n"
            "  - {id: click_flood_ip, scope: source, source_kind: ip,"
            " metric: source_clicks, op: \">\", threshold: 100,"
            " min_clicks: 100, ttl_s: 3600, action: BLOCK_SOURCE}\n";
        sg_rules_t *rules = load(yaml);
        const sg_rule_t *r = find(rules, "click_flood_ip");
        sg_snapshot_t s = snapshot("", (sg_counters_t){.clicks = 1200});
        sg_decision_t *d = malloc(sizeof(*d));
        sg_rule_eval_t ev;

        strcpy(s.window, "1m");
        s.top_cnt = 1;
        strcpy(s.top[0].source, "ip:203.0.113.9");
        s.top[0].clicks = 200;
        cr_assert_eq(sg_rule_eval(r, &s, &s.top[0], &(sg_rule_ctx_t){0}, &ev),
                     SG_RULE_TRIPPED);
        sg_rule_decision(r, r->action, &s, &ev, d);
        cr_assert_str_eq(d->source, "ip:203.0.113.9");
        for (int i = 0; i < d->metric_cnt; i++)
                for (int j = 0; j < i; j++)
                        cr_assert_str_neq(d->metrics[i].name,
                                          d->metrics[j].name);
        {
                int found = 0;
                for (int i = 0; i < d->metric_cnt; i++)
                        if (!strcmp(d->metrics[i].name, "source_clicks")) {
                                cr_assert(d->metrics[i].value == 200);
                                found++;
                        }
                cr_assert_eq(found, 1);
        }
        free(d);
        sg_rules_destroy(rules);
}
