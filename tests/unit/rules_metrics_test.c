/*
 * Rules beyond the basics: every metric, the target, baseline and
 * consecutive-window comparisons, scopes and windows, the breaker state
 * machine (cooldown in event time, hysteresis, idempotence), reallocation
 * and the decisions they yield, edge cases included.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "rules.h"

#define T0 1795341600000LL /* 2026-11-22T10:00:00Z */
#define T1 (T0 + 60000)

static sg_rules_t *load(const char *yaml)
{
        char err[512] = "";
        sg_rules_t *rules = sg_rules_load_string(yaml, strlen(yaml), "t.yaml",
                                                 err, sizeof(err));

        cr_assert_not_null(rules, "load failed: %s", err);
        return rules;
}

/* One rule from a flow-style map's inside. */
static sg_rules_t *load_one(const char *body)
{
        char yaml[1024];

        snprintf(yaml, sizeof(yaml), "rules:\n  - {id: r, %s}\n", body);
        return load(yaml);
}

static sg_snapshot_t snap(const char *campaign, const char *window)
{
        sg_snapshot_t s;

        memset(&s, 0, sizeof(s));
        strcpy(s.channel, "social");
        strcpy(s.campaign_id, campaign);
        strcpy(s.window, window);
        s.window_start = T0;
        s.window_end = T1;
        s.watermark = T1;
        return s;
}

/* ---------------------------------------------------------------- metrics */

typedef struct {
        const char *name;
        sg_metric_t metric;
        sg_counters_t c;
        sg_signals_t x;
        int64_t budget;
        int64_t span_ms; /* window length; 0 = 60 s */
        int defined;
        double want;
} metric_case_t;

static const metric_case_t metric_cases[] = {
    {"ivt_rate",
     SG_METRIC_IVT_RATE,
     {.clicks = 200, .invalid_clicks = 50},
     {0},
     0,
     0,
     1,
     0.25},
    {"ivt_rate_zero_clicks", SG_METRIC_IVT_RATE, {0}, {0}, 0, 0, 0, 0},
    {"cpa",
     SG_METRIC_CPA,
     {.conversions = 4, .spend_micros = 100000000},
     {0},
     0,
     0,
     1,
     25000000},
    {"cpa_zero_conversions",
     SG_METRIC_CPA,
     {.spend_micros = 1},
     {0},
     0,
     0,
     0,
     0},
    {"ctr",
     SG_METRIC_CTR,
     {.impressions = 1000, .clicks = 25},
     {0},
     0,
     0,
     1,
     0.025},
    {"ctr_zero_impressions", SG_METRIC_CTR, {.clicks = 5}, {0}, 0, 0, 0, 0},
    {"cvr",
     SG_METRIC_CVR,
     {.clicks = 400, .conversions = 10},
     {0},
     0,
     0,
     1,
     0.025},
    {"roas",
     SG_METRIC_ROAS,
     {.spend_micros = 4000000, .revenue_micros = 12000000},
     {0},
     0,
     0,
     1,
     3},
    {"roi",
     SG_METRIC_ROI,
     {.spend_micros = 4000000, .revenue_micros = 12000000},
     {0},
     0,
     0,
     1,
     2},
    {"roi_negative",
     SG_METRIC_ROI,
     {.spend_micros = 4000000, .revenue_micros = 1000000},
     {0},
     0,
     0,
     1,
     -0.75},
    {"roi_zero_spend", SG_METRIC_ROI, {.revenue_micros = 5}, {0}, 0, 0, 0, 0},
    {"cpm",
     SG_METRIC_CPM,
     {.impressions = 2000, .spend_micros = 10000000},
     {0},
     0,
     0,
     1,
     5000000},
    {"ivt_bot_ua",
     SG_METRIC_IVT_BOT_UA,
     {.impressions = 900, .clicks = 100},
     {.ivt_bot_ua = 50},
     0,
     0,
     1,
     0.05},
    {"ivt_no_ua",
     SG_METRIC_IVT_NO_UA,
     {.impressions = 900, .clicks = 100},
     {.ivt_no_ua = 10},
     0,
     0,
     1,
     0.01},
    {"ivt_dc_ip",
     SG_METRIC_IVT_DC_IP,
     {.impressions = 900, .clicks = 100},
     {.ivt_dc_ip = 200},
     0,
     0,
     1,
     0.2},
    {"ivt_dup_click",
     SG_METRIC_IVT_DUP_CLICK,
     {.impressions = 900, .clicks = 100},
     {.ivt_dup_click = 1},
     0,
     0,
     1,
     0.001},
    {"ivt_by_reason_zero_events", SG_METRIC_IVT_DC_IP, {0}, {0}, 0, 0, 0, 0},
    {"spend", SG_METRIC_SPEND, {.spend_micros = 123}, {0}, 0, 0, 1, 123},
    {"spend_pct_of_budget",
     SG_METRIC_SPEND_PCT,
     {.spend_micros = 900},
     {0},
     1000,
     0,
     1,
     0.9},
    {"spend_pct_of_zero_budget",
     SG_METRIC_SPEND_PCT,
     {.spend_micros = 900},
     {0},
     0,
     0,
     0,
     0},
    /* 6 h of a day is a quarter: 500 of 1000 spent = twice the pace. */
    {"pacing",
     SG_METRIC_PACING,
     {.spend_micros = 500},
     {0},
     1000,
     6 * 3600000LL,
     1,
     2},
    {"pacing_zero_budget",
     SG_METRIC_PACING,
     {.spend_micros = 500},
     {0},
     0,
     6 * 3600000LL,
     0,
     0},
    {"freq_cap_rate",
     SG_METRIC_FREQ_CAP_RATE,
     {.impressions = 400},
     {.freq_cap_impressions = 100},
     0,
     0,
     1,
     0.25},
    {"freq_cap_rate_zero_impressions",
     SG_METRIC_FREQ_CAP_RATE,
     {0},
     {.freq_cap_impressions = 1},
     0,
     0,
     0,
     0},
    /* 50 conversions, 10 without a click: 8 of the 40 tracked < 10 s. */
    {"short_ctc_share",
     SG_METRIC_SHORT_CTC_SHARE,
     {.conversions = 50},
     {.ctc_lt_10s = 8,
      .ctc_lt_1m = 12,
      .ctc_lt_1h = 20,
      .conversions_no_click = 10},
     0,
     0,
     1,
     0.2},
    {"short_ctc_share_no_tracked",
     SG_METRIC_SHORT_CTC_SHARE,
     {.conversions = 3},
     {.conversions_no_click = 3},
     0,
     0,
     0,
     0},
};

Test(metrics, every_metric_and_its_zero_denominator)
{
        for (size_t i = 0; i < sizeof(metric_cases) / sizeof(metric_cases[0]);
             i++) {
                const metric_case_t *tc = &metric_cases[i];
                sg_snapshot_t s = snap("", "1m");
                double v = -12345;
                int got;

                s.c = tc->c;
                s.x = tc->x;
                if (tc->span_ms)
                        s.window_start = s.window_end - tc->span_ms;
                got = sg_metric_value(tc->metric, &s, NULL, tc->budget, &v);
                cr_assert_eq(got, tc->defined, "%s: defined %d, want %d",
                             tc->name, got, tc->defined);
                if (tc->defined)
                        cr_assert(
                            v >= tc->want - 1e-12 && v <= tc->want + 1e-12,
                            "%s: %.17g, want %.17g", tc->name, v, tc->want);
                else
                        cr_assert(v == -12345, "%s: wrote an undefined value",
                                  tc->name);
        }
}

Test(metrics, source_clicks_is_the_clicks_of_that_source)
{
        sg_snapshot_t s = snap("", "1m");
        sg_source_count_t src = {"ip:1.2.3.4", 321};
        double v = 0;

        cr_assert_eq(sg_metric_value(SG_METRIC_SOURCE_CLICKS, &s, &src, 0, &v),
                     1);
        cr_assert(v == 321);
        cr_assert_eq(sg_metric_value(SG_METRIC_SOURCE_CLICKS, &s, NULL, 0, &v),
                     0);
}

Test(metrics, source_share_is_its_share_of_the_channels_clicks)
{
        sg_snapshot_t s = snap("", "1m");
        sg_source_count_t src = {"ip:1.2.3.4", 30};
        double v = 0;

        s.c.clicks = 400;
        cr_assert_eq(sg_metric_value(SG_METRIC_SOURCE_SHARE, &s, &src, 0, &v),
                     1);
        cr_assert(v == 0.075, "share %.17g, want 0.075", v);
        cr_assert_eq(sg_metric_value(SG_METRIC_SOURCE_SHARE, &s, NULL, 0, &v),
                     0);
        s.c.clicks = 0;
        cr_assert_eq(sg_metric_value(SG_METRIC_SOURCE_SHARE, &s, &src, 0, &v),
                     0);
}

Test(metrics, every_metric_name_loads)
{
        for (int m = 0; m < SG_METRIC__CNT; m++) {
                char body[256];
                sg_rules_t *rules;

                if (m == SG_METRIC_SOURCE_CLICKS ||
                    m == SG_METRIC_SOURCE_SHARE)
                        snprintf(body, sizeof(body),
                                 "scope: source, metric: %s, op: \">\", "
                                 "threshold: 1, min_clicks: 1, action: "
                                 "BLOCK_SOURCE",
                                 sg_metric_name((sg_metric_t)m));
                else
                        snprintf(body, sizeof(body),
                                 "metric: %s, op: \">\", threshold: 1, "
                                 "min_clicks: 1, action: ALERT",
                                 sg_metric_name((sg_metric_t)m));
                rules = load_one(body);
                cr_assert_eq(rules->rule[0].metric, m);
                sg_rules_destroy(rules);
        }
}

/* ------------------------------------------------------------ comparisons */

typedef struct {
        const char *name;
        const char *rule; /* flow-map body */
        const char *campaign, *window;
        sg_counters_t c;
        sg_rule_ctx_t ctx;
        sg_rule_outcome_t outcome;
        double value, threshold;
} cmp_case_t;

#define IVT   "metric: ivt_rate, op: \">\", threshold: 0.25, min_clicks: 100"
#define CPA_T "metric: cpa, op: \">\", target_factor: 1.3, min_clicks: 100"

static const cmp_case_t cmp_cases[] = {
    {"absolute_trips",
     IVT ", action: PAUSE",
     "",
     "1m",
     {.clicks = 200, .invalid_clicks = 100},
     {0},
     SG_RULE_TRIPPED,
     0.5,
     0.25},
    {"absolute_healthy",
     IVT ", action: PAUSE",
     "",
     "1m",
     {.clicks = 200, .invalid_clicks = 10},
     {0},
     SG_RULE_HEALTHY,
     0.05,
     0.25},
    {"min_sample_blocks",
     IVT ", action: PAUSE",
     "",
     "1m",
     {.clicks = 99, .invalid_clicks = 99},
     {0},
     SG_RULE_SMALL_SAMPLE,
     0,
     0},
    {"zero_impressions_ctr_undefined",
     "metric: ctr, op: \"<\", threshold: 0.01, min_clicks: 1, action: ALERT",
     "",
     "1m",
     {.clicks = 5},
     {0},
     SG_RULE_UNDEFINED,
     0,
     0},
    {"target_trips",
     CPA_T ", action: PAUSE",
     "",
     "1m",
     {.clicks = 500, .conversions = 2, .spend_micros = 80000000},
     {.target = 20000000},
     SG_RULE_TRIPPED,
     40000000,
     26000000},
    {"target_zero_conversions_spend_overrun",
     CPA_T ", action: PAUSE",
     "",
     "1m",
     {.clicks = 500, .spend_micros = 30000000},
     {.target = 20000000},
     SG_RULE_TRIPPED,
     30000000,
     26000000},
    {"target_zero_conversions_spend_within",
     CPA_T ", action: PAUSE",
     "",
     "1m",
     {.clicks = 500, .spend_micros = 20000000},
     {.target = 20000000},
     SG_RULE_HEALTHY,
     20000000,
     26000000},
    {"target_missing",
     CPA_T ", action: PAUSE",
     "",
     "1m",
     {.clicks = 500, .conversions = 2, .spend_micros = 80000000},
     {0},
     SG_RULE_NO_TARGET,
     0,
     0},
    {"campaign_scope_takes_campaign",
     CPA_T ", scope: campaign, action: PAUSE",
     "c1",
     "1m",
     {.clicks = 500, .conversions = 2, .spend_micros = 80000000},
     {.target = 20000000},
     SG_RULE_TRIPPED,
     40000000,
     26000000},
    {"campaign_scope_skips_channel",
     CPA_T ", scope: campaign, action: PAUSE",
     "",
     "1m",
     {.clicks = 500},
     {.target = 20000000},
     SG_RULE_OUT_OF_SCOPE,
     0,
     0},
    {"channel_scope_skips_campaign",
     IVT ", action: PAUSE",
     "c1",
     "1m",
     {.clicks = 500},
     {0},
     SG_RULE_OUT_OF_SCOPE,
     0,
     0},
    {"other_window_skipped",
     IVT ", window: 5m, action: PAUSE",
     "",
     "1m",
     {.clicks = 200, .invalid_clicks = 100},
     {0},
     SG_RULE_OUT_OF_SCOPE,
     0,
     0},
    {"unnamed_window_is_the_default",
     IVT ", action: PAUSE",
     "",
     "",
     {.clicks = 200, .invalid_clicks = 100},
     {0},
     SG_RULE_TRIPPED,
     0.5,
     0.25},
    {"unnamed_window_is_not_5m",
     IVT ", window: 5m, action: PAUSE",
     "",
     "",
     {.clicks = 200, .invalid_clicks = 100},
     {0},
     SG_RULE_OUT_OF_SCOPE,
     0,
     0},
    {"consecutive_not_yet",
     "metric: roi, op: \"<\", threshold: 1, "
     "for_windows: 3, min_spend_micros: 1, action: PAUSE",
     "",
     "1m",
     {.spend_micros = 100, .revenue_micros = 150},
     {.prior_held = 1},
     SG_RULE_HEALTHY,
     0.5,
     1},
    {"consecutive_third_window_trips",
     "metric: roi, op: \"<\", threshold: 1, "
     "for_windows: 3, min_spend_micros: 1, action: PAUSE",
     "",
     "1m",
     {.spend_micros = 100, .revenue_micros = 150},
     {.prior_held = 2},
     SG_RULE_TRIPPED,
     0.5,
     1},
    {"baseline_first_window_has_none",
     "metric: ctr, op: \"<>\", change: "
     "0.15, min_impressions: 1, action: ALERT",
     "",
     "1m",
     {.impressions = 1000, .clicks = 100},
     {0},
     SG_RULE_NO_BASELINE,
     0,
     0},
    {"baseline_rise_beyond_15pct",
     "metric: ctr, op: \"<>\", change: "
     "0.15, min_impressions: 1, action: ALERT",
     "",
     "1m",
     {.impressions = 1000, .clicks = 120},
     {.has_baseline = 1, .baseline = 0.1},
     SG_RULE_TRIPPED,
     0.2,
     0.15},
    {"baseline_fall_beyond_15pct",
     "metric: ctr, op: \"<>\", change: "
     "0.15, min_impressions: 1, action: ALERT",
     "",
     "1m",
     {.impressions = 1000, .clicks = 80},
     {.has_baseline = 1, .baseline = 0.1},
     SG_RULE_TRIPPED,
     -0.2,
     0.15},
    {"baseline_within_15pct",
     "metric: ctr, op: \"<>\", change: "
     "0.15, min_impressions: 1, action: ALERT",
     "",
     "1m",
     {.impressions = 1000, .clicks = 110},
     {.has_baseline = 1, .baseline = 0.1},
     SG_RULE_HEALTHY,
     0.1,
     0.15},
    {"baseline_rise_only",
     "metric: ctr, op: \">\", change: "
     "0.15, min_impressions: 1, action: ALERT",
     "",
     "1m",
     {.impressions = 1000, .clicks = 80},
     {.has_baseline = 1, .baseline = 0.1},
     SG_RULE_HEALTHY,
     -0.2,
     0.15},
    {"baseline_of_zero_is_none",
     "metric: ctr, op: \"<>\", change: "
     "0.15, min_impressions: 1, action: ALERT",
     "",
     "1m",
     {.impressions = 1000, .clicks = 80},
     {.has_baseline = 1},
     SG_RULE_NO_BASELINE,
     0,
     0},
    {"budget_90pct_alert",
     "window: today, metric: spend_pct_of_budget, "
     "op: \">=\", threshold: 0.9, min_spend_micros: 1, action: ALERT",
     "",
     "today",
     {.spend_micros = 900},
     {.budget_micros = 1000},
     SG_RULE_TRIPPED,
     0.9,
     0.9},
    {"budget_zero_never_fires",
     "window: today, metric: spend_pct_of_budget, "
     "op: \">=\", threshold: 0.9, min_spend_micros: 1, action: ALERT",
     "",
     "today",
     {.spend_micros = 900},
     {0},
     SG_RULE_UNDEFINED,
     0,
     0},
};

Test(compare, absolute_target_baseline_consecutive_scope_window)
{
        for (size_t i = 0; i < sizeof(cmp_cases) / sizeof(cmp_cases[0]); i++) {
                const cmp_case_t *tc = &cmp_cases[i];
                sg_rules_t *rules = load_one(tc->rule);
                sg_snapshot_t s = snap(tc->campaign, tc->window);
                sg_rule_eval_t ev;
                sg_rule_outcome_t got;

                s.c = tc->c;
                got = sg_rule_eval(&rules->rule[0], &s, NULL, &tc->ctx, &ev);
                cr_assert_eq(got, tc->outcome, "%s: outcome %d, want %d",
                             tc->name, got, tc->outcome);
                if (got == SG_RULE_TRIPPED || got == SG_RULE_HEALTHY) {
                        cr_assert(ev.value >= tc->value - 1e-9 &&
                                      ev.value <= tc->value + 1e-9,
                                  "%s: value %.17g, want %.17g", tc->name,
                                  ev.value, tc->value);
                        cr_assert(ev.threshold == tc->threshold,
                                  "%s: threshold %.17g, want %.17g", tc->name,
                                  ev.threshold, tc->threshold);
                }
                sg_rules_destroy(rules);
        }
}

Test(compare, source_rule_matches_only_its_kind)
{
        sg_rules_t *rules = load_one(
            "scope: source, source_kind: ip, metric: source_clicks, op: "
            "\">\", threshold: 100, min_clicks: 100, action: BLOCK_SOURCE");
        sg_snapshot_t s = snap("", "1m");
        sg_source_count_t ip = {"ip:1.2.3.4", 150}, dev = {"device:d1", 500},
                          low = {"ip:5.6.7.8", 100};
        sg_rule_ctx_t ctx = {0};
        sg_rule_eval_t ev;

        s.c.clicks = 1000;
        cr_assert_eq(sg_rule_eval(&rules->rule[0], &s, &ip, &ctx, &ev),
                     SG_RULE_TRIPPED);
        cr_assert(ev.value == 150);
        cr_assert_eq(sg_rule_eval(&rules->rule[0], &s, &dev, &ctx, &ev),
                     SG_RULE_OUT_OF_SCOPE);
        cr_assert_eq(sg_rule_eval(&rules->rule[0], &s, &low, &ctx, &ev),
                     SG_RULE_HEALTHY);
        s.c.clicks = 99; /* the channel's own sample guard */
        cr_assert_eq(sg_rule_eval(&rules->rule[0], &s, &ip, &ctx, &ev),
                     SG_RULE_SMALL_SAMPLE);
        sg_rules_destroy(rules);
}

/* ---------------------------------------------------------------- loading */

static void reject(const char *body, const char *want)
{
        char yaml[1024], err[512] = "";

        snprintf(yaml, sizeof(yaml), "rules:\n  - {id: r, %s}\n", body);
        cr_assert_null(sg_rules_load_string(yaml, strlen(yaml), "t.yaml", err,
                                            sizeof(err)),
                       "loaded: %s", body);
        cr_assert_str_eq(err, want);
}

Test(load, rejects_bad_new_keys_naming_rule_and_key)
{
        reject("window: 2x, metric: ctr, op: \"<\", threshold: 1, "
               "min_clicks: 1, action: ALERT",
               "t.yaml:2: rule r: window: unknown window \"2x\" (today, or "
               "<n>s, <n>m, <n>h, <n>d: 1m, 5m, 1h, ...)");
        reject("metric: ivt_rate, op: \">\", threshold: 0.25, "
               "resume_threshold: 0.3, min_clicks: 1, action: PAUSE",
               "t.yaml:2: rule r: resume_threshold: 0.3 must be stricter than "
               "0.25 (the trip threshold), or the breaker flaps");
        reject("metric: roi, op: \"<\", threshold: 1, resume_threshold: 0.9, "
               "min_clicks: 1, action: PAUSE",
               "t.yaml:2: rule r: resume_threshold: 0.9 must be stricter than "
               "1 (the trip threshold), or the breaker flaps");
        reject("metric: ctr, op: \"<>\", threshold: 1, min_clicks: 1, "
               "action: ALERT",
               "t.yaml:2: rule r: op: <> is for change (baseline) rules only");
        reject("metric: ctr, op: \">\", change: 0.15, min_clicks: 1, "
               "action: PAUSE",
               "t.yaml:2: rule r: change: a PAUSE rule needs a threshold or "
               "target_factor to resume against");
        reject("metric: source_clicks, op: \">\", threshold: 1, min_clicks: "
               "1, action: BLOCK_SOURCE",
               "t.yaml:2: rule r: scope: source rules use metric "
               "source_clicks or source_share, and only they");
        reject("metric: ctr, op: \">\", threshold: 1, min_clicks: 1, "
               "for_windows: 0, action: ALERT",
               "t.yaml:2: rule r: for_windows: \"0\" is not an integer in "
               "1..24");
        reject("metric: ctr, op: \">\", threshold: 1, min_clicks: 1, "
               "cooldown_s: 5, action: ALERT",
               "t.yaml:2: rule r: resume_threshold, resume_factor and "
               "cooldown_s are for PAUSE rules");
        reject("metric: ctr, op: \">\", threshold: 1, min_clicks: 1, "
               "ttl_s: 5, action: ALERT",
               "t.yaml:2: rule r: ttl_s: only for BLOCK_SOURCE");
}

Test(load, rejects_bad_reallocation_section)
{
        static const char yaml[] = "rules: []\nreallocation:\n  step_pct: "
                                   "150\n";
        char err[512] = "";

        cr_assert_null(sg_rules_load_string(yaml, strlen(yaml), "t.yaml", err,
                                            sizeof(err)));
        cr_assert_str_eq(err, "t.yaml:3: reallocation: step_pct: 150 is above "
                              "100");
}

Test(load, default_resume_threshold_is_20pct_inside)
{
        sg_rules_t *rules =
            load("rules:\n"
                 "  - {id: a, metric: ivt_rate, op: \">\", threshold: 0.5, "
                 "min_clicks: 1, action: PAUSE}\n"
                 "  - {id: b, metric: ctr, op: \"<\", threshold: 0.01, "
                 "min_clicks: 1, action: PAUSE}\n");

        cr_assert(rules->rule[0].resume_threshold == 0.4);
        cr_assert(rules->rule[1].resume_threshold == 0.0125);
        cr_assert_eq(rules->realloc.enabled, 0);
        sg_rules_destroy(rules);
}

/* --------------------------------------------------------------- breakers */

#define BRK                                                                    \
        "metric: ivt_rate, op: \">\", threshold: 0.25, resume_threshold: "     \
        "0.1, cooldown_s: 120, min_clicks: 100, action: PAUSE"

/* Feeds a channel snapshot with that IVT share at window end `end` s after
 * T0 (a 60 s window) through the breaker; returns the action or -1. */
static int feed(sg_breaker_t *b, const sg_rule_t *r, int end_s, int ivt_pct)
{
        sg_snapshot_t s = snap("", "1m");
        sg_rule_ctx_t ctx = {0};
        sg_rule_eval_t ev, rev;
        int resume;

        s.window_end = T0 + end_s * 1000LL;
        s.window_start = s.window_end - 60000;
        s.c.clicks = 1000;
        s.c.invalid_clicks = ivt_pct * 10;
        sg_rule_eval(r, &s, NULL, &ctx, &ev);
        resume = sg_rule_resume_ok(r, &s, &ctx, &rev);
        return sg_breaker_step(b, r, s.window_end, s.window_start,
                               ev.outcome == SG_RULE_TRIPPED, resume);
}

typedef struct {
        int end_s, ivt_pct;
        int want_action; /* -1 none */
        sg_breaker_state_t want_state;
} step_t;

static void run_steps(const step_t *steps, size_t n)
{
        sg_rules_t *rules = load_one(BRK);
        sg_breaker_t b;

        memset(&b, 0, sizeof(b));
        for (size_t i = 0; i < n; i++) {
                int got =
                    feed(&b, &rules->rule[0], steps[i].end_s, steps[i].ivt_pct);

                cr_assert_eq(got, steps[i].want_action,
                             "step %zu (end %d s, ivt %d%%): action %d, want "
                             "%d",
                             i, steps[i].end_s, steps[i].ivt_pct, got,
                             steps[i].want_action);
                cr_assert_eq(b.state, steps[i].want_state,
                             "step %zu: state %s, want %s", i,
                             sg_breaker_state_name(b.state),
                             sg_breaker_state_name(steps[i].want_state));
        }
        sg_rules_destroy(rules);
}

Test(breaker, trips_cools_down_half_opens_and_resumes_once)
{
        static const step_t steps[] = {
            {60, 2, -1, SG_BREAKER_CLOSED},
            {70, 40, SG_ACT_PAUSE, SG_BREAKER_OPEN},
            {80, 40, -1, SG_BREAKER_OPEN}, /* already open */
            {180, 5, -1, SG_BREAKER_OPEN}, /* cooldown ends at 190 */
            /* half-open, but the window [140,200) began before 190 */
            {200, 5, -1, SG_BREAKER_HALF_OPEN},
            {250, 5, SG_ACT_RESUME, SG_BREAKER_CLOSED},
            {260, 5, -1, SG_BREAKER_CLOSED}, /* resumed once */
        };

        run_steps(steps, sizeof(steps) / sizeof(steps[0]));
}

Test(breaker, between_resume_and_trip_thresholds_stays_half_open)
{
        static const step_t steps[] = {
            {60, 40, SG_ACT_PAUSE, SG_BREAKER_OPEN},
            {300, 20, -1, SG_BREAKER_HALF_OPEN}, /* 20% > 10% resume */
            {310, 20, -1, SG_BREAKER_HALF_OPEN}, /* no flapping */
            {320, 9, SG_ACT_RESUME, SG_BREAKER_CLOSED},
        };

        run_steps(steps, sizeof(steps) / sizeof(steps[0]));
}

Test(breaker, half_open_trips_again_and_reopens)
{
        static const step_t steps[] = {
            {60, 40, SG_ACT_PAUSE, SG_BREAKER_OPEN},
            {400, 40, SG_ACT_PAUSE, SG_BREAKER_OPEN},
            {410, 5, -1, SG_BREAKER_OPEN}, /* a new cooldown */
        };

        run_steps(steps, sizeof(steps) / sizeof(steps[0]));
}

Test(breaker, same_or_older_snapshot_twice_decides_nothing_new)
{
        static const step_t steps[] = {
            {60, 40, SG_ACT_PAUSE, SG_BREAKER_OPEN},
            {60, 40, -1, SG_BREAKER_OPEN}, /* re-read after a crash */
            {50, 40, -1, SG_BREAKER_OPEN}, /* older */
            {300, 5, SG_ACT_RESUME, SG_BREAKER_CLOSED},
            {300, 5, -1, SG_BREAKER_CLOSED},
            {290, 40, -1, SG_BREAKER_CLOSED}, /* older than the resume */
        };

        run_steps(steps, sizeof(steps) / sizeof(steps[0]));
}

Test(breaker, small_sample_never_trips_nor_resumes)
{
        sg_rules_t *rules = load_one(BRK);
        sg_snapshot_t s = snap("", "1m");
        sg_rule_ctx_t ctx = {0};
        sg_rule_eval_t ev;

        s.c.clicks = 50;
        cr_assert_eq(sg_rule_eval(&rules->rule[0], &s, NULL, &ctx, &ev),
                     SG_RULE_SMALL_SAMPLE);
        cr_assert_eq(sg_rule_resume_ok(&rules->rule[0], &s, &ctx, &ev), 0);
        sg_rules_destroy(rules);
}

Test(breaker, resume_decision_explains_the_resume_threshold)
{
        sg_rules_t *rules = load_one(BRK);
        const sg_rule_t *r = &rules->rule[0];
        sg_snapshot_t s = snap("", "1m");
        sg_rule_ctx_t ctx = {0};
        sg_rule_eval_t ev;
        sg_decision_t *d = malloc(sizeof(*d));
        char id[33];

        s.c.clicks = 1000;
        s.c.invalid_clicks = 50;
        cr_assert_eq(sg_rule_resume_ok(r, &s, &ctx, &ev), 1);
        sg_rule_decision(r, SG_ACT_RESUME, &s, &ev, d);
        sg_decision_id("r", SG_ACT_RESUME, "social", "", T0, T1, id);
        cr_assert_str_eq(d->decision_id, id);
        cr_assert_eq(d->action, SG_ACT_RESUME);
        cr_assert_str_eq(d->reason,
                         "r: resume: ivt_rate 0.05 < 0.1, window 1m over "
                         "[2026-11-22T10:00:00Z, 10:01:00Z) (60 s), "
                         "clicks=1000");
        free(d);
        sg_rules_destroy(rules);
}

/* ------------------------------------------------------------- decisions */

Test(decision, block_source_id_includes_the_source)
{
        sg_rules_t *rules = load_one(
            "scope: source, metric: source_clicks, op: \">\", threshold: 100, "
            "min_clicks: 100, action: BLOCK_SOURCE");
        sg_snapshot_t s = snap("", "1m");
        sg_source_count_t a = {"ip:1.2.3.4", 150}, b = {"ip:1.2.3.5", 150};
        sg_rule_ctx_t ctx = {0};
        sg_rule_eval_t ev;
        sg_decision_t *da = malloc(sizeof(*da)), *db = malloc(sizeof(*db));
        char plain[33];

        s.c.clicks = 1000;
        sg_rule_eval(&rules->rule[0], &s, &a, &ctx, &ev);
        sg_rule_decision(&rules->rule[0], SG_ACT_BLOCK_SOURCE, &s, &ev, da);
        sg_rule_eval(&rules->rule[0], &s, &b, &ctx, &ev);
        sg_rule_decision(&rules->rule[0], SG_ACT_BLOCK_SOURCE, &s, &ev, db);
        cr_assert_str_eq(da->source, "ip:1.2.3.4");
        cr_assert_str_neq(da->decision_id, db->decision_id);
        sg_decision_id("r", SG_ACT_BLOCK_SOURCE, "social", "", T0, T1, plain);
        cr_assert_str_neq(da->decision_id, plain);
        cr_assert_str_eq(da->reason,
                         "r: source ip:1.2.3.4: source_clicks 150 > 100, "
                         "window 1m over [2026-11-22T10:00:00Z, 10:01:00Z) "
                         "(60 s), clicks=1000");
        free(da);
        free(db);
        sg_rules_destroy(rules);
}

Test(decision, source_id_without_source_is_the_plain_id)
{
        char a[33], b[33];

        sg_decision_id("r", SG_ACT_PAUSE, "kol", "", T0, T1, a);
        sg_decision_id_source("r", SG_ACT_PAUSE, "kol", "", "", T0, T1, b);
        cr_assert_str_eq(a, b);
}

Test(decision, baseline_decision_names_baseline_and_change)
{
        sg_rules_t *rules = load_one("metric: ctr, op: \"<>\", change: 0.15, "
                                     "min_impressions: 1, action: ALERT");
        sg_snapshot_t s = snap("", "1m");
        sg_rule_ctx_t ctx = {.has_baseline = 1, .baseline = 0.1};
        sg_rule_eval_t ev;
        sg_decision_t *d = malloc(sizeof(*d));

        s.c.impressions = 1000;
        s.c.clicks = 80;
        cr_assert_eq(sg_rule_eval(&rules->rule[0], &s, NULL, &ctx, &ev),
                     SG_RULE_TRIPPED);
        sg_rule_decision(&rules->rule[0], SG_ACT_ALERT, &s, &ev, d);
        cr_assert_str_eq(d->reason,
                         "r: ctr 0.08 vs baseline 0.1 (mean of the 1 previous "
                         "window): change -20.0% <> +/-15.0%, window 1m over "
                         "[2026-11-22T10:00:00Z, 10:01:00Z) (60 s), "
                         "impressions=1000");
        cr_assert_str_eq(d->metrics[1].name, "baseline");
        cr_assert(d->metrics[1].value == 0.1);
        free(d);
        sg_rules_destroy(rules);
}

/* ----------------------------------------------------------- reallocation */

static const sg_realloc_policy_t policy = {1,    "1h", 3600000, 1,
                                           10.0, 15,   1.0,     0};

static int64_t sum(const sg_realloc_channel_t *ch, int n, int64_t reserve)
{
        for (int i = 0; i < n; i++)
                reserve += ch[i].budget;
        return reserve;
}

static sg_realloc_channel_t chan(const char *name, int64_t budget, int paused,
                                 double roas)
{
        sg_realloc_channel_t c;

        memset(&c, 0, sizeof(c));
        snprintf(c.name, sizeof(c.name), "%s", name);
        c.budget = budget;
        c.paused = paused;
        c.has_roas = roas >= 0;
        c.roas = roas >= 0 ? roas : 0;
        return c;
}

Test(realloc, paused_channel_funds_reserve_then_the_best_roas)
{
        /* Total 1000 + reserve 100 = 1100: the reserve wants 110. */
        sg_realloc_channel_t ch[] = {
            chan("social", 400, 0, 2.0), chan("search", 300, 0, 4.0),
            chan("kol", 200, 1, -1), chan("gifts", 100, 0, 3.0)};
        int64_t reserve = 100, before[4] = {400, 300, 200, 100};
        int64_t moved = sg_realloc_step(&policy, ch, 4, &reserve);

        cr_assert_eq(moved, 30); /* 15% of kol's 200 */
        cr_assert_eq(ch[2].budget, 170);
        cr_assert_eq(reserve, 110);      /* topped up first */
        cr_assert_eq(ch[1].budget, 320); /* best ROAS gets the rest */
        cr_assert_eq(ch[0].budget, 400);
        cr_assert_eq(ch[3].budget, 100);
        cr_assert_eq(sum(ch, 4, reserve), 1100);
        for (int i = 0; i < 4; i++) {
                int64_t d = ch[i].budget - before[i];
                cr_assert_leq(d < 0 ? -d : d, before[i] * 15 / 100,
                              "%s moved %lld", ch[i].name, (long long)d);
        }
}

Test(realloc, recipients_respect_step_and_cap_leftover_to_reserve)
{
        sg_realloc_channel_t ch[] = {chan("a", 1000, 1, -1),
                                     chan("b", 1000, 1, -1),
                                     chan("c", 100, 0, 5.0)};
        int64_t reserve = 1000; /* already above 10% */

        ch[2].cap = 110;
        sg_realloc_step(&policy, ch, 3, &reserve);
        cr_assert_eq(ch[0].budget, 850);
        cr_assert_eq(ch[1].budget, 850);
        cr_assert_eq(ch[2].budget, 110); /* step 15 capped at 110 */
        cr_assert_eq(reserve, 1290);
        cr_assert_eq(sum(ch, 3, reserve), 3100);
}

Test(realloc, floor_limits_what_a_donor_gives)
{
        sg_realloc_channel_t ch[] = {chan("a", 1000, 0, 0.5),
                                     chan("b", 1000, 0, 3.0)};
        int64_t reserve = 300;

        ch[0].floor = 950;
        sg_realloc_step(&policy, ch, 2, &reserve);
        cr_assert_eq(ch[0].budget, 950); /* under-performer, down to floor */
        cr_assert_eq(ch[1].budget, 1050);
        cr_assert_eq(reserve, 300);
}

Test(realloc, all_channels_paused_moves_everything_to_reserve)
{
        sg_realloc_channel_t ch[] = {chan("a", 1000, 1, 3.0),
                                     chan("b", 500, 1, 9.0)};
        int64_t reserve = 0;

        cr_assert_eq(sg_realloc_step(&policy, ch, 2, &reserve), 225);
        cr_assert_eq(reserve, 225);
        cr_assert_eq(sum(ch, 2, reserve), 1500);
}

Test(realloc, single_channel_and_zero_budget)
{
        sg_realloc_channel_t one[] = {chan("a", 1000, 0, 3.0)};
        sg_realloc_channel_t zero[] = {chan("a", 0, 1, -1),
                                       chan("b", 100, 0, 2.0)};
        int64_t reserve = 0;

        cr_assert_eq(sg_realloc_step(&policy, one, 1, &reserve), 0);
        cr_assert_eq(one[0].budget, 1000);
        cr_assert_eq(reserve, 0);
        cr_assert_eq(sg_realloc_step(&policy, zero, 2, &reserve), 0);
        cr_assert_eq(zero[1].budget, 100);
}

Test(realloc, ties_break_by_name_whatever_the_order)
{
        sg_realloc_channel_t x[] = {chan("zeta", 100, 0, 3.0),
                                    chan("alpha", 100, 0, 3.0),
                                    chan("paused", 1000, 1, -1)};
        int64_t reserve = 1000;

        sg_realloc_step(&policy, x, 3, &reserve);
        cr_assert_eq(x[1].budget, 115); /* alpha first */
        cr_assert_eq(x[0].budget, 115);
        cr_assert_eq(reserve, 1120);
}

Test(realloc, decision_states_before_and_after)
{
        sg_realloc_channel_t ch[] = {chan("kol", 200, 1, -1),
                                     chan("search", 300, 0, 4.0)};
        int64_t before[] = {200, 300}, reserve = 100;
        sg_decision_t *d = malloc(sizeof(*d));

        sg_realloc_step(&policy, ch, 2, &reserve);
        sg_realloc_decision(&policy, ch, before, 2, 100, reserve, "kol", T0, T1,
                            d);
        cr_assert_eq(d->action, SG_ACT_REALLOCATE);
        cr_assert_str_eq(d->rule_id, "reallocate");
        cr_assert_str_eq(d->channel, "kol");
        cr_assert_eq(d->budget_cnt, 3);
        cr_assert_str_eq(d->budgets[0].channel, "kol");
        cr_assert_eq(d->budgets[0].budget_micros, 170);
        cr_assert_str_eq(d->budgets[1].channel, "search");
        cr_assert_eq(d->budgets[1].budget_micros, 330);
        cr_assert_str_eq(d->budgets[2].channel, SG_RESERVE_NAME);
        cr_assert_eq(d->budgets[2].budget_micros, 100);
        cr_assert_str_eq(d->reason,
                         "reallocate (kol paused): moved 30 of 600 micros "
                         "(step 15%, reserve 10%, donors: paused or roas < "
                         "1); kol 200 -> 170 (paused), search 300 -> 330 "
                         "(roas 4), (reserve) 100 -> 100 over "
                         "[2026-11-22T10:00:00Z, 10:01:00Z) (60 s)");
        free(d);
}
