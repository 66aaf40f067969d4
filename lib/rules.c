/*
 * Rules: loading and validating the rules file, evaluating a snapshot
 * against a rule, and the deterministic, explainable decision it yields.
 * No Kafka, no Redis: the sg-rules stage is the I/O shell around this.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rules.h"
#include "yaml_tree.h"

/* A file with more is a mistake, not a configuration. */
#define SG_RULES_MAX 256

static const char *const metric_names[SG_METRIC__CNT] = {
    [SG_METRIC_IVT_RATE] = "ivt_rate",
    [SG_METRIC_CPA] = "cpa",
    [SG_METRIC_CTR] = "ctr",
    [SG_METRIC_CVR] = "cvr",
    [SG_METRIC_ROAS] = "roas",
    [SG_METRIC_CPM] = "cpm",
    [SG_METRIC_ROI] = "roi",
    [SG_METRIC_IVT_BOT_UA] = "ivt_rate_bot_ua",
    [SG_METRIC_IVT_NO_UA] = "ivt_rate_no_ua",
    [SG_METRIC_IVT_DC_IP] = "ivt_rate_dc_ip",
    [SG_METRIC_IVT_DUP_CLICK] = "ivt_rate_dup_click",
    [SG_METRIC_SPEND] = "spend",
    [SG_METRIC_SPEND_PCT] = "spend_pct_of_budget",
    [SG_METRIC_PACING] = "pacing",
    [SG_METRIC_FREQ_CAP_RATE] = "freq_cap_rate",
    [SG_METRIC_SHORT_CTC_SHARE] = "short_ctc_share",
    [SG_METRIC_SOURCE_CLICKS] = "source_clicks",
    [SG_METRIC_SOURCE_SHARE] = "source_share",
};

static const char *const op_names[] = {[SG_OP_GT] = ">",
                                       [SG_OP_GE] = ">=",
                                       [SG_OP_LT] = "<",
                                       [SG_OP_LE] = "<=",
                                       [SG_OP_OUTSIDE] = "<>"};

static const char *const scope_names[] = {[SG_SCOPE_CHANNEL] = "channel",
                                          [SG_SCOPE_CAMPAIGN] = "campaign",
                                          [SG_SCOPE_SOURCE] = "source"};

const char *sg_metric_name(sg_metric_t m)
{
        if ((int)m < 0 || m >= SG_METRIC__CNT)
                return "unknown";
        return metric_names[m];
}

const char *sg_op_name(sg_op_t op)
{
        if ((int)op < 0 || op > SG_OP_OUTSIDE)
                return "?";
        return op_names[op];
}

static const char *const mode_names[] = {[SG_MODE_LIVE] = "live",
                                         [SG_MODE_SHADOW] = "shadow"};

const char *sg_rule_mode_name(sg_rule_mode_t m)
{
        if ((int)m < 0 || m > SG_MODE_SHADOW)
                return "?";
        return mode_names[m];
}

const char *sg_scope_name(sg_scope_t s)
{
        if ((int)s < 0 || s > SG_SCOPE_SOURCE)
                return "?";
        return scope_names[s];
}

/* Money metrics print as whole micros, ratios with 4 significant digits. */
static int metric_is_money(sg_metric_t m)
{
        return m == SG_METRIC_CPA || m == SG_METRIC_CPM || m == SG_METRIC_SPEND;
}

/* ------------------------------------------------------------------ loading
 */

typedef struct {
        const char *name; /* the file, for messages */
        char *errstr;
        size_t errstr_size;
} loader_t;

static int fail(loader_t *l, int line, const char *label, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes "file:line: label: why" and returns -1. */
static int fail(loader_t *l, int line, const char *label, const char *fmt, ...)
{
        char why[384];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(why, sizeof(why), fmt, ap);
        va_end(ap);
        if (label)
                snprintf(l->errstr, l->errstr_size, "%s:%d: %s: %s", l->name,
                         line, label, why);
        else
                snprintf(l->errstr, l->errstr_size, "%s:%d: %s", l->name, line,
                         why);
        return -1;
}

static int parse_number(const char *s, double *out)
{
        char *end;
        double v;

        errno = 0;
        v = strtod(s, &end);
        if (errno || end == s || *end != '\0' || !isfinite(v))
                return -1;
        *out = v;
        return 0;
}

static int parse_count(const char *s, int64_t *out)
{
        char *end;
        long long v;

        if (*s < '0' || *s > '9')
                return -1;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno || *end != '\0' || v < 0)
                return -1;
        *out = v;
        return 0;
}

static int id_valid(const char *s)
{
        if (*s == '\0' || strlen(s) >= SG_NAME_LEN)
                return 0;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
                      *s == '_'))
                        return 0;
        return 1;
}

/*
 * A window name's length: "today" is a day; "<n>s", "<n>m", "<n>h", "<n>d"
 * with n in 1..9999. 0 if not a window name.
 */
int64_t sg_window_ms(const char *w)
{
        char *end;
        long n;

        if (strcmp(w, "today") == 0)
                return SG_DAY_MS;
        if (*w < '1' || *w > '9' || strlen(w) >= SG_WINDOW_LEN)
                return 0;
        n = strtol(w, &end, 10);
        if (n < 1 || n > 9999 || end[0] == '\0' || end[1] != '\0')
                return 0;
        switch (*end) {
        case 's':
                return n * 1000LL;
        case 'm':
                return n * 60000LL;
        case 'h':
                return n * 3600000LL;
        case 'd':
                return n * SG_DAY_MS;
        }
        return 0;
}

static const char *const rule_keys[] = {"id",
                                        "description",
                                        "scope",
                                        "window",
                                        "metric",
                                        "op",
                                        "threshold",
                                        "target_factor",
                                        "change",
                                        "baseline_windows",
                                        "for_windows",
                                        "resume_threshold",
                                        "resume_factor",
                                        "cooldown_s",
                                        "ttl_s",
                                        "source_kind",
                                        "min_impressions",
                                        "min_clicks",
                                        "min_conversions",
                                        "min_spend_micros",
                                        "action",
                                        "early",
                                        "mode",
                                        NULL};

/*
 * Whether the rule may trip on a running window: its metric is a rate (or
 * count) over the window's own events, so what has arrived already says
 * it; conversions lag their clicks, so CPA, CVR, ROAS and ROI wait for the
 * complete window, as do spend, budgets, pacing and rules that compare
 * windows (for_windows, change).
 */
static int early_metric(const sg_rule_t *r)
{
        switch (r->metric) {
        case SG_METRIC_IVT_RATE:
        case SG_METRIC_IVT_BOT_UA:
        case SG_METRIC_IVT_NO_UA:
        case SG_METRIC_IVT_DC_IP:
        case SG_METRIC_IVT_DUP_CLICK:
        case SG_METRIC_CTR:
        case SG_METRIC_FREQ_CAP_RATE:
        case SG_METRIC_SHORT_CTC_SHARE:
        case SG_METRIC_SOURCE_CLICKS:
        case SG_METRIC_SOURCE_SHARE:
                break;
        default:
                return 0;
        }
        return r->for_windows <= 1 && r->cmp != SG_CMP_BASELINE &&
               (r->action == SG_ACT_PAUSE || r->action == SG_ACT_ALERT ||
                r->action == SG_ACT_BLOCK_SOURCE);
}

/* Parses one threshold-like value: a non-negative finite number. */
static int parse_threshold(loader_t *l, const sg_yaml_node_t *k,
                           const char *label, double *out)
{
        if (parse_number(k->value, out) == -1)
                return fail(l, k->line, label, "%s: \"%s\" is not a number",
                            k->key, k->value);
        if (*out < 0)
                return fail(l, k->line, label, "%s: %s is negative", k->key,
                            k->value);
        return 0;
}

/* A count-like key in [min, max]. */
static int parse_int_key(loader_t *l, const sg_yaml_node_t *k,
                         const char *label, int64_t min, int64_t max,
                         int64_t *out)
{
        if (parse_count(k->value, out) == -1 || *out < min || *out > max)
                return fail(l, k->line, label,
                            "%s: \"%s\" is not an integer in %" PRId64
                            "..%" PRId64,
                            k->key, k->value, min, max);
        return 0;
}

static int line_of(const sg_yaml_node_t *m, const char *key)
{
        const sg_yaml_node_t *k = sg_yaml_get(m, key);

        return k ? k->line : m->line;
}

/* Checks every key of map m is in keys, a scalar and given once. */
static int check_keys(loader_t *l, const sg_yaml_node_t *m,
                      const char *const *keys, const char *label)
{
        for (const sg_yaml_node_t *k = m->child; k; k = k->next) {
                int known = 0;

                for (int i = 0; keys[i]; i++)
                        if (strcmp(k->key, keys[i]) == 0)
                                known = 1;
                if (!known)
                        return fail(l, k->line, label, "unknown key %s",
                                    k->key);
                if (k->type != SG_YAML_SCALAR)
                        return fail(l, k->line, label, "%s: must be a scalar",
                                    k->key);
                for (const sg_yaml_node_t *p = m->child; p != k; p = p->next)
                        if (strcmp(p->key, k->key) == 0)
                                return fail(l, k->line, label,
                                            "%s: given twice", k->key);
        }
        return 0;
}

/* Whether value v is healthier than threshold t for the trip op. */
static int stricter(sg_op_t op, double v, double t)
{
        return op == SG_OP_GT || op == SG_OP_GE ? v < t : v > t;
}

static int load_rule(loader_t *l, const sg_yaml_node_t *m, int index,
                     sg_rule_t *r)
{
        const sg_yaml_node_t *idn = sg_yaml_get(m, "id");
        char label[SG_NAME_LEN + 16];
        int guards = 0, has_thr = 0, has_factor = 0, has_change = 0;
        int has_resume = 0, has_resume_factor = 0;
        int64_t v64;

        memset(r, 0, sizeof(*r));
        r->line = m->line;
        snprintf(label, sizeof(label), "rule #%d", index + 1);
        if (m->type != SG_YAML_MAP)
                return fail(l, m->line, label,
                            "must be a map (id, metric, op, threshold, ...)");
        if (!idn)
                return fail(l, m->line, label, "missing id");
        if (idn->type != SG_YAML_SCALAR || !id_valid(idn->value))
                return fail(l, idn->line, label,
                            "id: \"%s\" must match [a-z0-9_]+ (at most %d "
                            "chars)",
                            idn->value ? idn->value : "", SG_NAME_LEN - 1);
        strcpy(r->id, idn->value);
        snprintf(label, sizeof(label), "rule %s", r->id);

        /* Every key known, scalar and given once, before any meaning. */
        if (check_keys(l, m, rule_keys, label))
                return -1;

        r->scope = SG_SCOPE_CHANNEL;
        strcpy(r->window, SG_RULE_WINDOW_DEFAULT);
        r->window_ms = sg_window_ms(r->window);
        r->metric = SG_METRIC__CNT;
        r->op = (sg_op_t)-1;
        r->action = SG_ACT__CNT;
        r->for_windows = 1;
        r->cooldown_ms = 300000;
        r->ttl_ms = 3600000;
        r->early = -1;
        for (const sg_yaml_node_t *k = m->child; k; k = k->next) {
                const char *v = k->value;
                int64_t *guard = NULL;

                if (strcmp(k->key, "id") == 0) {
                        continue;
                } else if (strcmp(k->key, "description") == 0) {
                        if (strlen(v) >= sizeof(r->description))
                                return fail(l, k->line, label,
                                            "description: longer than %zu "
                                            "bytes",
                                            sizeof(r->description) - 1);
                        strcpy(r->description, v);
                } else if (strcmp(k->key, "scope") == 0) {
                        int found = -1;

                        for (int i = 0; i <= SG_SCOPE_SOURCE; i++)
                                if (strcmp(v, scope_names[i]) == 0)
                                        found = i;
                        if (found < 0)
                                return fail(l, k->line, label,
                                            "scope: unknown scope \"%s\" "
                                            "(channel, campaign, source)",
                                            v);
                        r->scope = (sg_scope_t)found;
                } else if (strcmp(k->key, "window") == 0) {
                        if (!sg_window_ms(v))
                                return fail(l, k->line, label,
                                            "window: unknown window \"%s\" "
                                            "(today, or <n>s, <n>m, <n>h, "
                                            "<n>d: 1m, 5m, 1h, ...)",
                                            v);
                        strcpy(r->window, v);
                        r->window_ms = sg_window_ms(v);
                } else if (strcmp(k->key, "metric") == 0) {
                        for (int i = 0; i < SG_METRIC__CNT; i++)
                                if (strcmp(v, metric_names[i]) == 0)
                                        r->metric = (sg_metric_t)i;
                        if (r->metric == SG_METRIC__CNT)
                                return fail(l, k->line, label,
                                            "metric: unknown metric \"%s\" "
                                            "(docs/rules.md lists them)",
                                            v);
                } else if (strcmp(k->key, "op") == 0) {
                        for (int i = SG_OP_GT; i <= SG_OP_OUTSIDE; i++)
                                if (strcmp(v, op_names[i]) == 0)
                                        r->op = (sg_op_t)i;
                        if ((int)r->op == -1)
                                return fail(l, k->line, label,
                                            "op: unknown op \"%s\" (>, >=, "
                                            "<, <=, <>; quote it: op: "
                                            "\">\")",
                                            v);
                } else if (strcmp(k->key, "threshold") == 0) {
                        if (parse_threshold(l, k, label, &r->threshold))
                                return -1;
                        has_thr = 1;
                } else if (strcmp(k->key, "target_factor") == 0) {
                        if (parse_threshold(l, k, label, &r->threshold))
                                return -1;
                        if (r->threshold == 0)
                                return fail(l, k->line, label,
                                            "target_factor: must be above 0");
                        has_factor = 1;
                } else if (strcmp(k->key, "change") == 0) {
                        if (parse_threshold(l, k, label, &r->threshold))
                                return -1;
                        if (r->threshold == 0)
                                return fail(l, k->line, label,
                                            "change: must be above 0");
                        has_change = 1;
                } else if (strcmp(k->key, "baseline_windows") == 0) {
                        if (parse_int_key(l, k, label, 1, 24, &v64))
                                return -1;
                        r->baseline_windows = (int)v64;
                } else if (strcmp(k->key, "for_windows") == 0) {
                        if (parse_int_key(l, k, label, 1, 24, &v64))
                                return -1;
                        r->for_windows = (int)v64;
                } else if (strcmp(k->key, "resume_threshold") == 0) {
                        if (parse_threshold(l, k, label, &r->resume_threshold))
                                return -1;
                        has_resume = 1;
                } else if (strcmp(k->key, "resume_factor") == 0) {
                        if (parse_threshold(l, k, label, &r->resume_threshold))
                                return -1;
                        has_resume_factor = 1;
                } else if (strcmp(k->key, "cooldown_s") == 0) {
                        if (parse_int_key(l, k, label, 0, 30 * 86400, &v64))
                                return -1;
                        r->cooldown_ms = v64 * 1000;
                } else if (strcmp(k->key, "ttl_s") == 0) {
                        if (parse_int_key(l, k, label, 1, 30 * 86400, &v64))
                                return -1;
                        r->ttl_ms = v64 * 1000;
                } else if (strcmp(k->key, "source_kind") == 0) {
                        if (strcmp(v, "ip") && strcmp(v, "device") &&
                            strcmp(v, "any"))
                                return fail(l, k->line, label,
                                            "source_kind: \"%s\" is not ip, "
                                            "device or any",
                                            v);
                        snprintf(r->source_kind, sizeof(r->source_kind), "%s",
                                 strcmp(v, "any") ? v : "");
                } else if (strcmp(k->key, "action") == 0) {
                        int a = sg_action_parse(v);

                        if (a == SG_ACT_RESUME)
                                return fail(l, k->line, label,
                                            "action: RESUME is decided by "
                                            "the breaker of a PAUSE rule "
                                            "(resume_threshold, cooldown_s)");
                        if (a == SG_ACT_REALLOCATE)
                                return fail(l, k->line, label,
                                            "action: REALLOCATE is set up in "
                                            "the reallocation: section");
                        if (a != SG_ACT_PAUSE && a != SG_ACT_ALERT &&
                            a != SG_ACT_BLOCK_SOURCE)
                                return fail(l, k->line, label,
                                            "action: unknown action \"%s\" "
                                            "(PAUSE, ALERT, BLOCK_SOURCE)",
                                            v);
                        r->action = (sg_action_t)a;
                } else if (strcmp(k->key, "early") == 0) {
                        if (strcmp(v, "true") && strcmp(v, "false"))
                                return fail(l, k->line, label,
                                            "early: \"%s\" is not true or "
                                            "false",
                                            v);
                        r->early = strcmp(v, "true") == 0;
                } else if (strcmp(k->key, "mode") == 0) {
                        if (strcmp(v, "live") == 0)
                                r->mode = SG_MODE_LIVE;
                        else if (strcmp(v, "shadow") == 0)
                                r->mode = SG_MODE_SHADOW;
                        else
                                return fail(l, k->line, label,
                                            "mode: \"%s\" is not live or "
                                            "shadow",
                                            v);
                } else if (strcmp(k->key, "min_impressions") == 0) {
                        guard = &r->min_impressions;
                } else if (strcmp(k->key, "min_clicks") == 0) {
                        guard = &r->min_clicks;
                } else if (strcmp(k->key, "min_conversions") == 0) {
                        guard = &r->min_conversions;
                } else if (strcmp(k->key, "min_spend_micros") == 0) {
                        guard = &r->min_spend_micros;
                }
                if (guard) {
                        if (parse_count(v, guard) == -1)
                                return fail(l, k->line, label,
                                            "%s: \"%s\" is not a "
                                            "non-negative integer",
                                            k->key, v);
                        if (*guard > 0)
                                guards++;
                }
        }
        if (r->metric == SG_METRIC__CNT)
                return fail(l, m->line, label, "missing metric");
        if ((int)r->op == -1)
                return fail(l, m->line, label, "missing op");
        if (r->action == SG_ACT__CNT)
                return fail(l, m->line, label, "missing action");
        if (has_thr + has_factor + has_change > 1)
                return fail(l,
                            line_of(m, has_change ? "change" : "target_factor"),
                            label,
                            "threshold, target_factor and change are "
                            "exclusive");
        if (!has_thr && !has_factor && !has_change)
                return fail(l, m->line, label,
                            "missing threshold (or target_factor, or "
                            "change)");
        r->cmp = has_factor   ? SG_CMP_TARGET
                 : has_change ? SG_CMP_BASELINE
                              : SG_CMP_ABSOLUTE;
        if (has_factor && r->metric != SG_METRIC_CPA)
                return fail(l, line_of(m, "target_factor"), label,
                            "target_factor: metric %s has no per-channel "
                            "target (only cpa)",
                            metric_names[r->metric]);
        if (r->baseline_windows && !has_change)
                return fail(l, line_of(m, "baseline_windows"), label,
                            "baseline_windows: only with change");
        if (has_change && !r->baseline_windows)
                r->baseline_windows = 1;
        if (r->op == SG_OP_OUTSIDE && !has_change)
                return fail(l, line_of(m, "op"), label,
                            "op: <> is for change (baseline) rules only");
        if ((r->metric == SG_METRIC_SOURCE_CLICKS ||
             r->metric == SG_METRIC_SOURCE_SHARE) !=
            (r->scope == SG_SCOPE_SOURCE))
                return fail(l, line_of(m, "scope"), label,
                            "scope: source rules use metric source_clicks "
                            "or source_share, and only they");
        if ((r->action == SG_ACT_BLOCK_SOURCE) != (r->scope == SG_SCOPE_SOURCE))
                return fail(l, line_of(m, "action"), label,
                            "action: BLOCK_SOURCE goes with scope source, "
                            "and only it");
        if (sg_yaml_get(m, "ttl_s") && r->action != SG_ACT_BLOCK_SOURCE)
                return fail(l, line_of(m, "ttl_s"), label,
                            "ttl_s: only for BLOCK_SOURCE");
        if (sg_yaml_get(m, "source_kind") && r->scope != SG_SCOPE_SOURCE)
                return fail(l, line_of(m, "source_kind"), label,
                            "source_kind: only for scope source");
        if ((has_resume || has_resume_factor || sg_yaml_get(m, "cooldown_s")) &&
            r->action != SG_ACT_PAUSE)
                return fail(l,
                            line_of(m, has_resume          ? "resume_threshold"
                                       : has_resume_factor ? "resume_factor"
                                                           : "cooldown_s"),
                            label,
                            "resume_threshold, resume_factor and cooldown_s "
                            "are for PAUSE rules");
        if (r->action == SG_ACT_PAUSE) {
                if (r->cmp == SG_CMP_BASELINE)
                        return fail(l, line_of(m, "change"), label,
                                    "change: a PAUSE rule needs a threshold "
                                    "or target_factor to resume against");
                if (has_resume && has_factor)
                        return fail(l, line_of(m, "resume_threshold"), label,
                                    "resume_threshold: use resume_factor "
                                    "with target_factor");
                if (has_resume_factor && !has_factor)
                        return fail(l, line_of(m, "resume_factor"), label,
                                    "resume_factor: only with "
                                    "target_factor");
                if (has_resume || has_resume_factor) {
                        if (!stricter(r->op, r->resume_threshold, r->threshold))
                                return fail(
                                    l,
                                    line_of(m, has_resume ? "resume_threshold"
                                                          : "resume_factor"),
                                    label,
                                    "%s: %g must be stricter than %g (the "
                                    "trip threshold), or the breaker flaps",
                                    has_resume ? "resume_threshold"
                                               : "resume_factor",
                                    r->resume_threshold, r->threshold);
                } else {
                        /* 20% inside the trip threshold. */
                        r->resume_threshold =
                            r->op == SG_OP_GT || r->op == SG_OP_GE
                                ? r->threshold * 0.8
                                : r->threshold * 1.25;
                }
        }
        if (r->early == 1 && !early_metric(r))
                return fail(l, line_of(m, "early"), label,
                            "early: only PAUSE, ALERT and BLOCK_SOURCE rules "
                            "on a rate of the window's own events (ivt_rate "
                            "and its reasons, ctr, freq_cap_rate, "
                            "short_ctc_share, source_clicks, source_share), "
                            "without for_windows or change, may trip on a "
                            "running window");
        if (r->early == -1)
                r->early = early_metric(r);
        if (guards == 0)
                return fail(l, m->line, label,
                            "no minimum-sample guard (min_impressions, "
                            "min_clicks, min_conversions or "
                            "min_spend_micros above 0)");
        return 0;
}

static const char *const realloc_keys[] = {
    "window",   "every_s",  "on_pause",         "reserve_pct",
    "step_pct", "min_roas", "min_spend_micros", NULL};

static int load_realloc(loader_t *l, const sg_yaml_node_t *m,
                        sg_realloc_policy_t *p)
{
        static const char label[] = "reallocation";
        int64_t v64;

        if (m->type != SG_YAML_MAP)
                return fail(l, m->line, NULL, "reallocation: must be a map");
        if (check_keys(l, m, realloc_keys, label))
                return -1;
        p->enabled = 1;
        for (const sg_yaml_node_t *k = m->child; k; k = k->next) {
                double d;

                if (strcmp(k->key, "window") == 0) {
                        if (!sg_window_ms(k->value))
                                return fail(l, k->line, label,
                                            "window: unknown window \"%s\"",
                                            k->value);
                        snprintf(p->window, sizeof(p->window), "%s", k->value);
                } else if (strcmp(k->key, "every_s") == 0) {
                        if (parse_int_key(l, k, label, 0, 30 * 86400, &v64))
                                return -1;
                        p->every_ms = v64 * 1000;
                } else if (strcmp(k->key, "on_pause") == 0) {
                        if (strcmp(k->value, "true") &&
                            strcmp(k->value, "false"))
                                return fail(l, k->line, label,
                                            "on_pause: \"%s\" is not true or "
                                            "false",
                                            k->value);
                        p->on_pause = strcmp(k->value, "true") == 0;
                } else if (strcmp(k->key, "min_spend_micros") == 0) {
                        if (parse_int_key(l, k, label, 0, INT64_MAX / 2,
                                          &p->min_spend_micros))
                                return -1;
                } else {
                        if (parse_threshold(l, k, label, &d))
                                return -1;
                        if (strcmp(k->key, "min_roas") == 0) {
                                p->min_roas = d;
                        } else {
                                if (d > 100)
                                        return fail(l, k->line, label,
                                                    "%s: %g is above 100",
                                                    k->key, d);
                                if (strcmp(k->key, "step_pct") == 0)
                                        p->step_pct = d;
                                else
                                        p->reserve_pct = d;
                        }
                }
        }
        return 0;
}

static sg_rules_t *load_tree(loader_t *l, const sg_yaml_node_t *root)
{
        const sg_yaml_node_t *seq = NULL, *re = NULL;
        sg_rules_t *rules;
        int n = 0;

        if (root->type != SG_YAML_MAP) {
                fail(l, root->line, NULL,
                     "the rules file must be a map with a rules: list");
                return NULL;
        }
        for (const sg_yaml_node_t *e = root->child; e; e = e->next) {
                if (strcmp(e->key, "rules") == 0) {
                        seq = e;
                } else if (strcmp(e->key, "reallocation") == 0) {
                        re = e;
                } else {
                        fail(l, e->line, NULL,
                             "unknown key %s (only rules: and "
                             "reallocation:)",
                             e->key);
                        return NULL;
                }
        }
        if (!seq) {
                fail(l, root->line, NULL, "missing rules: (a list of rules)");
                return NULL;
        }
        if (seq->type != SG_YAML_SEQ) {
                fail(l, seq->line, NULL, "rules: must be a list");
                return NULL;
        }
        for (const sg_yaml_node_t *c = seq->child; c; c = c->next)
                n++;
        if (n > SG_RULES_MAX) {
                fail(l, seq->line, NULL, "rules: more than %d rules",
                     SG_RULES_MAX);
                return NULL;
        }

        rules = calloc(1, sizeof(*rules));
        if (rules && n)
                rules->rule = calloc((size_t)n, sizeof(*rules->rule));
        if (!rules || (n && !rules->rule)) {
                snprintf(l->errstr, l->errstr_size, "%s: out of memory",
                         l->name);
                sg_rules_destroy(rules);
                return NULL;
        }
        /* The defaults of docs/rules.md, used once the section exists. */
        strcpy(rules->realloc.window, SG_RULE_WINDOW_DEFAULT);
        rules->realloc.every_ms = 3600000;
        rules->realloc.on_pause = 1;
        rules->realloc.reserve_pct = 10;
        rules->realloc.step_pct = 15;
        rules->realloc.min_roas = 1;
        rules->realloc.min_spend_micros = 10000000;
        if (re && load_realloc(l, re, &rules->realloc) == -1)
                goto err;
        for (const sg_yaml_node_t *c = seq->child; c; c = c->next) {
                sg_rule_t *r = &rules->rule[rules->cnt];

                if (load_rule(l, c, rules->cnt, r) == -1)
                        goto err;
                for (int i = 0; i < rules->cnt; i++) {
                        if (strcmp(rules->rule[i].id, r->id) == 0) {
                                char label[SG_NAME_LEN + 16];

                                snprintf(label, sizeof(label), "rule %s",
                                         r->id);
                                fail(l, r->line, label,
                                     "duplicate id (first at line %d)",
                                     rules->rule[i].line);
                                goto err;
                        }
                }
                rules->cnt++;
        }
        return rules;
err:
        sg_rules_destroy(rules);
        return NULL;
}

sg_rules_t *sg_rules_load_file(const char *path, char *errstr,
                               size_t errstr_size)
{
        loader_t l = {path, errstr, errstr_size};
        sg_yaml_node_t *root = sg_yaml_load_file(path, errstr, errstr_size);
        sg_rules_t *rules;

        if (!root)
                return NULL;
        rules = load_tree(&l, root);
        sg_yaml_free(root);
        return rules;
}

sg_rules_t *sg_rules_load_string(const char *buf, size_t len, const char *name,
                                 char *errstr, size_t errstr_size)
{
        static const char anon[] = "<string>";
        loader_t l = {name, errstr, errstr_size};
        sg_yaml_node_t *root =
            sg_yaml_load_string(buf, len, errstr, errstr_size);
        sg_rules_t *rules;

        if (!root) {
                /* The YAML layer names every buffer "<string>". */
                if (strncmp(errstr, anon, sizeof(anon) - 1) == 0) {
                        char tmp[512];

                        snprintf(tmp, sizeof(tmp), "%s%s", name,
                                 errstr + sizeof(anon) - 1);
                        snprintf(errstr, errstr_size, "%s", tmp);
                }
                return NULL;
        }
        rules = load_tree(&l, root);
        sg_yaml_free(root);
        return rules;
}

void sg_rules_destroy(sg_rules_t *rules)
{
        if (!rules)
                return;
        free(rules->rule);
        free(rules);
}

/* --------------------------------------------------------------- evaluation
 */

int sg_rule_window_matches(const sg_rule_t *r, const sg_snapshot_t *s)
{
        if (s->window[0] == '\0')
                return strcmp(r->window, SG_RULE_WINDOW_DEFAULT) == 0;
        return strcmp(r->window, s->window) == 0;
}

int64_t sg_rule_target(const sg_rule_t *r, const sg_conf_t *conf,
                       const char *channel)
{
        const sg_channel_conf_t *ch;

        if (r->cmp != SG_CMP_TARGET || r->metric != SG_METRIC_CPA)
                return 0;
        ch = sg_conf_channel(conf, channel);
        return ch ? ch->target_cpa_micros : 0;
}

static int ratio(int64_t num, int64_t den, double *out)
{
        if (den <= 0)
                return 0;
        *out = (double)num / (double)den;
        return 1;
}

int sg_metric_value(sg_metric_t m, const sg_snapshot_t *s,
                    const sg_source_count_t *src, int64_t budget_micros,
                    double *out)
{
        const sg_counters_t *c = &s->c;
        const sg_signals_t *x = &s->x;
        int64_t events = c->impressions + c->clicks;
        double share;

        switch (m) {
        case SG_METRIC_IVT_RATE:
                return sg_counters_ivt_rate(c, out);
        case SG_METRIC_CPA:
                return sg_counters_cpa(c, out);
        case SG_METRIC_CTR:
                return sg_counters_ctr(c, out);
        case SG_METRIC_CVR:
                return sg_counters_cvr(c, out);
        case SG_METRIC_ROAS:
                return sg_counters_roas(c, out);
        case SG_METRIC_CPM:
                return sg_counters_cpm(c, out);
        case SG_METRIC_ROI:
                return ratio(c->revenue_micros - c->spend_micros,
                             c->spend_micros, out);
        case SG_METRIC_IVT_BOT_UA:
                return ratio(x->ivt_bot_ua, events, out);
        case SG_METRIC_IVT_NO_UA:
                return ratio(x->ivt_no_ua, events, out);
        case SG_METRIC_IVT_DC_IP:
                return ratio(x->ivt_dc_ip, events, out);
        case SG_METRIC_IVT_DUP_CLICK:
                return ratio(x->ivt_dup_click, events, out);
        case SG_METRIC_SPEND:
                *out = (double)c->spend_micros;
                return 1;
        case SG_METRIC_SPEND_PCT:
                return ratio(c->spend_micros, budget_micros, out);
        case SG_METRIC_PACING:
                /* Spend against the budget's share of the window: for
                 * "today", the elapsed share of the day. */
                share = (double)(s->window_end - s->window_start) /
                        (double)SG_DAY_MS;
                if (budget_micros <= 0 || share <= 0)
                        return 0;
                *out =
                    (double)c->spend_micros / ((double)budget_micros * share);
                return 1;
        case SG_METRIC_FREQ_CAP_RATE:
                return ratio(x->freq_cap_impressions, c->impressions, out);
        case SG_METRIC_SHORT_CTC_SHARE:
                return ratio(x->ctc_lt_10s,
                             c->conversions - x->conversions_no_click, out);
        case SG_METRIC_SOURCE_CLICKS:
                if (!src)
                        return 0;
                *out = (double)src->clicks;
                return 1;
        case SG_METRIC_SOURCE_SHARE:
                if (!src)
                        return 0;
                return ratio(src->clicks, c->clicks, out);
        case SG_METRIC__CNT:
                break;
        }
        return 0;
}

static int compare(sg_op_t op, double v, double t)
{
        switch (op) {
        case SG_OP_GT:
                return v > t;
        case SG_OP_GE:
                return v >= t;
        case SG_OP_LT:
                return v < t;
        case SG_OP_LE:
                return v <= t;
        case SG_OP_OUTSIDE:
                return v > t || v < -t;
        }
        return 0;
}

/* "ip:..." or "device:..." against the rule's source_kind. */
static int source_kind_matches(const sg_rule_t *r, const char *source)
{
        size_t n = strlen(r->source_kind);

        return n == 0 ||
               (strncmp(source, r->source_kind, n) == 0 && source[n] == ':');
}

/* Everything up to the comparison: scope, window, guards, the threshold
 * (trip or resume) and the value. -1 when the outcome is already known. */
static int prepare(const sg_rule_t *r, const sg_snapshot_t *s,
                   const sg_source_count_t *src, const sg_rule_ctx_t *ctx,
                   double threshold, sg_rule_eval_t *ev)
{
        const sg_counters_t *c = &s->c;
        double v;

        memset(ev, 0, sizeof(*ev));
        ev->source = src;
        ev->blocked_clicks = ctx->blocked_clicks;
        if (s->final || !sg_rule_window_matches(r, s) ||
            (r->scope == SG_SCOPE_CAMPAIGN) != (s->campaign_id[0] != '\0') ||
            (r->scope == SG_SCOPE_SOURCE &&
             (!src || !source_kind_matches(r, src->source)))) {
                ev->outcome = SG_RULE_OUT_OF_SCOPE;
                return -1;
        }
        if (c->impressions < r->min_impressions || c->clicks < r->min_clicks ||
            c->conversions < r->min_conversions ||
            c->spend_micros < r->min_spend_micros) {
                ev->outcome = SG_RULE_SMALL_SAMPLE;
                return -1;
        }
        switch (r->cmp) {
        case SG_CMP_TARGET:
                if (ctx->target <= 0) {
                        ev->outcome = SG_RULE_NO_TARGET;
                        return -1;
                }
                ev->target = (double)ctx->target;
                ev->threshold = threshold * (double)ctx->target;
                break;
        case SG_CMP_ABSOLUTE:
        case SG_CMP_BASELINE:
                ev->threshold = threshold;
                break;
        }
        if (!sg_metric_value(r->metric, s, src, ctx->budget_micros, &v)) {
                /* No conversions yet: the CPA will be at least the spend,
                 * so spend above a ceiling is already an overrun. */
                if (r->metric != SG_METRIC_CPA || r->cmp == SG_CMP_BASELINE ||
                    (r->op != SG_OP_GT && r->op != SG_OP_GE) ||
                    c->conversions != 0) {
                        ev->outcome = SG_RULE_UNDEFINED;
                        return -1;
                }
                ev->zero_conversions = 1;
                v = (double)c->spend_micros;
        }
        ev->metric = v;
        ev->value = v;
        if (r->cmp == SG_CMP_BASELINE) {
                /* A first window, or a baseline of 0, has nothing to
                 * compare with: no decision rather than a guess. */
                if (!ctx->has_baseline || ctx->baseline == 0) {
                        ev->outcome = SG_RULE_NO_BASELINE;
                        return -1;
                }
                ev->baseline = ctx->baseline;
                ev->value = v / ctx->baseline - 1;
        }
        return 0;
}

sg_rule_outcome_t sg_rule_eval(const sg_rule_t *r, const sg_snapshot_t *s,
                               const sg_source_count_t *src,
                               const sg_rule_ctx_t *ctx, sg_rule_eval_t *ev)
{
        if (prepare(r, s, src, ctx, r->threshold, ev) == -1)
                return ev->outcome;
        ev->held = compare(r->op, ev->value, ev->threshold);
        ev->outcome = ev->held && ctx->prior_held >= r->for_windows - 1
                          ? SG_RULE_TRIPPED
                          : SG_RULE_HEALTHY;
        return ev->outcome;
}

int sg_rule_resume_ok(const sg_rule_t *r, const sg_snapshot_t *s,
                      const sg_rule_ctx_t *ctx, sg_rule_eval_t *ev)
{
        if (prepare(r, s, NULL, ctx, r->resume_threshold, ev) == -1)
                return 0;
        /* Healthy means on the good side of the resume threshold, which is
         * stricter than the trip threshold: no flapping at the edge. */
        ev->held = compare(r->op, ev->value, ev->threshold) ||
                   ev->value == ev->threshold;
        ev->outcome = ev->held ? SG_RULE_TRIPPED : SG_RULE_HEALTHY;
        return !ev->held;
}

/* ---------------------------------------------------------------- breakers
 */

static const char *const breaker_names[] = {"closed", "open", "half_open"};

const char *sg_breaker_state_name(sg_breaker_state_t s)
{
        if ((int)s < 0 || s > SG_BREAKER_HALF_OPEN)
                return "?";
        return breaker_names[s];
}

int sg_breaker_state_parse(const char *s)
{
        for (int i = 0; i <= SG_BREAKER_HALF_OPEN; i++)
                if (strcmp(s, breaker_names[i]) == 0)
                        return i;
        return -1;
}

int sg_breaker_step(sg_breaker_t *b, const sg_rule_t *r, int64_t now,
                    int64_t window_start, int tripped, int resume_ok)
{
        /* A snapshot from before the last transition is history: seeing it
         * again (a re-read after a crash) must not decide anything. */
        if (now < b->since)
                return -1;
        switch (b->state) {
        case SG_BREAKER_CLOSED:
                if (!tripped || now == b->since)
                        return -1;
                break;
        case SG_BREAKER_OPEN:
                if (now < b->cooldown_until)
                        return -1;
                b->state = SG_BREAKER_HALF_OPEN;
                /* half-open judges this window too */
                __attribute__((fallthrough));
        case SG_BREAKER_HALF_OPEN:
                if (tripped)
                        break;
                if (strcmp(b->rule, r->id) != 0 || !resume_ok ||
                    window_start < b->cooldown_until)
                        return -1;
                b->state = SG_BREAKER_CLOSED;
                b->since = now;
                return SG_ACT_RESUME;
        }
        b->state = SG_BREAKER_OPEN;
        snprintf(b->rule, sizeof(b->rule), "%s", r->id);
        b->since = now;
        b->cooldown_until = now + r->cooldown_ms;
        return SG_ACT_PAUSE;
}

/* ------------------------------------------------------------ reallocation
 */

static int64_t pct_of(int64_t v, double pct)
{
        return v <= 0 ? 0 : (int64_t)((double)v * pct / 100.0);
}

static int is_donor(const sg_realloc_policy_t *p, const sg_realloc_channel_t *c)
{
        return c->paused || (c->has_roas && c->roas < p->min_roas);
}

int64_t sg_realloc_step(const sg_realloc_policy_t *p, sg_realloc_channel_t *ch,
                        int n, int64_t *reserve)
{
        int64_t total = *reserve, freed = 0, want_reserve, moved;
        int order[SG_DECISION_MAX_BUDGETS], cnt = 0;

        for (int i = 0; i < n; i++)
                total += ch[i].budget;
        for (int i = 0; i < n; i++) {
                int64_t give;

                if (!is_donor(p, &ch[i]))
                        continue;
                give = pct_of(ch[i].budget, p->step_pct);
                if (ch[i].budget - give < ch[i].floor)
                        give = ch[i].budget - ch[i].floor;
                if (give <= 0)
                        continue;
                ch[i].budget -= give;
                freed += give;
        }
        moved = freed;
        /* The reserve first, up to its share of the total. */
        want_reserve = pct_of(total, p->reserve_pct) - *reserve;
        if (want_reserve > 0) {
                int64_t take = want_reserve < freed ? want_reserve : freed;

                *reserve += take;
                freed -= take;
        }
        /* Then the best ROAS first; ties by name, so the order never
         * depends on the order channels were listed or seen. */
        for (int i = 0; i < n && cnt < SG_DECISION_MAX_BUDGETS; i++)
                if (!is_donor(p, &ch[i]) && ch[i].has_roas)
                        order[cnt++] = i;
        for (int i = 1; i < cnt; i++) {
                for (int j = i; j > 0; j--) {
                        const sg_realloc_channel_t *a = &ch[order[j - 1]];
                        const sg_realloc_channel_t *b = &ch[order[j]];
                        int tmp;

                        if (a->roas > b->roas || (a->roas == b->roas &&
                                                  strcmp(a->name, b->name) < 0))
                                break;
                        tmp = order[j];
                        order[j] = order[j - 1];
                        order[j - 1] = tmp;
                }
        }
        for (int k = 0; k < cnt && freed > 0; k++) {
                sg_realloc_channel_t *c = &ch[order[k]];
                int64_t room = pct_of(c->budget, p->step_pct);

                if (c->cap > 0 && c->budget + room > c->cap)
                        room = c->cap - c->budget;
                if (room <= 0)
                        continue;
                if (room > freed)
                        room = freed;
                c->budget += room;
                freed -= room;
        }
        *reserve += freed; /* nobody could take it */
        return moved;
}

/* ---------------------------------------------------------------- decisions
 */

typedef struct {
        uint64_t hi, lo;
} u128_t;

/* h *= FNV-128 prime (2^88 + 0x13b), modulo 2^128, in 64-bit halves. */
static u128_t fnv128_mul(u128_t h)
{
        __extension__ typedef unsigned __int128 wide_t;
        wide_t lo = (wide_t)h.lo * 0x13b;
        u128_t r;

        r.lo = (uint64_t)lo;
        r.hi = (uint64_t)(lo >> 64) + h.hi * 0x13b + (h.lo << 24);
        return r;
}

static u128_t fnv128_add(u128_t h, const char *s)
{
        /* The terminating NUL is hashed too: it separates the fields. */
        do {
                h.lo ^= (unsigned char)*s;
                h = fnv128_mul(h);
        } while (*s++);
        return h;
}

static u128_t decision_hash(const char *rule_id, sg_action_t action,
                            const char *channel, const char *campaign_id,
                            int64_t window_start, int64_t window_end)
{
        u128_t h = {0x6c62272e07bb0142ULL, 0x62b821756295c58dULL};
        char num[24];

        h = fnv128_add(h, rule_id);
        h = fnv128_add(h, sg_action_name(action));
        h = fnv128_add(h, channel);
        h = fnv128_add(h, campaign_id);
        snprintf(num, sizeof(num), "%" PRId64, window_start);
        h = fnv128_add(h, num);
        snprintf(num, sizeof(num), "%" PRId64, window_end);
        return fnv128_add(h, num);
}

void sg_decision_id(const char *rule_id, sg_action_t action,
                    const char *channel, const char *campaign_id,
                    int64_t window_start, int64_t window_end, char *out)
{
        u128_t h = decision_hash(rule_id, action, channel, campaign_id,
                                 window_start, window_end);

        snprintf(out, 33, "%016" PRIx64 "%016" PRIx64, h.hi, h.lo);
}

void sg_decision_id_mode(const char *rule_id, sg_action_t action,
                         const char *channel, const char *campaign_id,
                         const char *source, int64_t window_start,
                         int64_t window_end, int dry_run, char *out)
{
        u128_t h = decision_hash(rule_id, action, channel, campaign_id,
                                 window_start, window_end);

        /* Appended, so that ids without a source, and live ids, stay what
         * they were. */
        if (source && *source)
                h = fnv128_add(h, source);
        if (dry_run)
                h = fnv128_add(h, "dry_run");
        snprintf(out, 33, "%016" PRIx64 "%016" PRIx64, h.hi, h.lo);
}

void sg_decision_id_source(const char *rule_id, sg_action_t action,
                           const char *channel, const char *campaign_id,
                           const char *source, int64_t window_start,
                           int64_t window_end, char *out)
{
        sg_decision_id_mode(rule_id, action, channel, campaign_id, source,
                            window_start, window_end, 0, out);
}

/* ISO 8601 UTC; the date only when with_date, milliseconds only if any. */
static void fmt_time(char *buf, size_t size, int64_t ms, int with_date)
{
        int64_t sec = ms / 1000, rem = ms % 1000;
        time_t t;
        struct tm tm;
        size_t n;

        if (rem < 0) {
                sec--;
                rem += 1000;
        }
        t = (time_t)sec;
        gmtime_r(&t, &tm);
        n = strftime(buf, size, with_date ? "%Y-%m-%dT%H:%M:%S" : "%H:%M:%S",
                     &tm);
        if (rem)
                snprintf(buf + n, size - n, ".%03" PRId64 "Z", rem);
        else
                snprintf(buf + n, size - n, "Z");
}

static int64_t day_of(int64_t ms)
{
        int64_t d = ms / 86400000;

        return ms % 86400000 < 0 ? d - 1 : d;
}

static void fmt_metric(char *buf, size_t size, sg_metric_t m, double v)
{
        if (metric_is_money(m))
                snprintf(buf, size, "%.0f", v);
        else
                snprintf(buf, size, "%.4g", v);
}

/* Appends to d->reason, truncating silently: the reason is for humans. */
static void reason_add(sg_decision_t *d, size_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reason_add(sg_decision_t *d, size_t *n, const char *fmt, ...)
{
        va_list ap;
        int w;

        if (*n >= sizeof(d->reason) - 1)
                return;
        va_start(ap, fmt);
        w = vsnprintf(d->reason + *n, sizeof(d->reason) - *n, fmt, ap);
        va_end(ap);
        if (w > 0)
                *n += (size_t)w;
        if (*n > sizeof(d->reason) - 1)
                *n = sizeof(d->reason) - 1;
}

/* Adds name = v to the decision's metrics map; a name already there (the
 * rule's metric may also be a sample, e.g. source_clicks) keeps one entry:
 * a map cannot hold a name twice. */
static void metric_add(sg_decision_t *d, const char *name, double v)
{
        for (int i = 0; i < d->metric_cnt; i++)
                if (strncmp(d->metrics[i].name, name,
                            sizeof(d->metrics[i].name)) == 0) {
                        d->metrics[i].value = v;
                        return;
                }
        if (d->metric_cnt == SG_DECISION_MAX_METRICS)
                return;
        snprintf(d->metrics[d->metric_cnt].name, sizeof(d->metrics[0].name),
                 "%s", name);
        d->metrics[d->metric_cnt].value = v;
        d->metric_cnt++;
}

/* " over [2026-11-22T10:00:00Z, 10:01:00Z) (60 s)" */
static void reason_window(sg_decision_t *d, size_t *n, int64_t from, int64_t to)
{
        char start[40], end[40];
        int64_t span = to - from;

        fmt_time(start, sizeof(start), from, 1);
        fmt_time(end, sizeof(end), to, day_of(from) != day_of(to));
        if (span % 1000 == 0)
                reason_add(d, n, " over [%s, %s) (%" PRId64 " s)", start, end,
                           span / 1000);
        else
                reason_add(d, n, " over [%s, %s) (%.3f s)", start, end,
                           (double)span / 1000.0);
}

static void decision_head(sg_decision_t *d, const char *rule_id,
                          sg_action_t action, const char *channel,
                          const char *campaign_id, const char *source,
                          int64_t window_start, int64_t window_end,
                          int dry_run)
{
        d->decision_id[0] = '\0';
        sg_decision_id_mode(rule_id, action, channel, campaign_id, source,
                            window_start, window_end, dry_run, d->decision_id);
        d->dry_run = dry_run;
        snprintf(d->rule_id, sizeof(d->rule_id), "%s", rule_id);
        d->action = action;
        snprintf(d->channel, sizeof(d->channel), "%s", channel);
        snprintf(d->campaign_id, sizeof(d->campaign_id), "%s", campaign_id);
        snprintf(d->source, sizeof(d->source), "%s", source ? source : "");
        d->window_start = window_start;
        d->window_end = window_end;
        d->decided_at = window_end;
        d->budget_cnt = -1;
        d->reason[0] = '\0';
        d->metric_cnt = 0;
}

void sg_rule_decision(const sg_rule_t *r, sg_action_t action,
                      const sg_snapshot_t *s, const sg_rule_eval_t *ev,
                      sg_decision_t *d)
{
        const sg_counters_t *c = &s->c;
        const char *metric = metric_names[r->metric];
        const char *source = ev->source ? ev->source->source : "";
        const char *op = op_names[r->op];
        char value[32], threshold[32];
        size_t n = 0;

        decision_head(d, r->id, action, s->channel, s->campaign_id, source,
                      s->window_start, s->window_end,
                      r->mode == SG_MODE_SHADOW);

        /* "cpa_overrun: cpa 40000000 > 26000000 (1.3 x target 20000000)
         *  over [2026-11-22T10:00:00Z, 10:01:00Z) (60 s), clicks=412" */
        if (action == SG_ACT_RESUME) {
                /* Healthy against the resume threshold: the opposite op. */
                op = r->op == SG_OP_GT || r->op == SG_OP_GE ? "<" : ">";
                reason_add(d, &n, "%s: resume: ", r->id);
        } else {
                reason_add(d, &n, "%s: ", r->id);
        }
        if (*source)
                reason_add(d, &n, "source %s: ", source);
        fmt_metric(value, sizeof(value), r->metric, ev->value);
        fmt_metric(threshold, sizeof(threshold), r->metric, ev->threshold);
        if (ev->zero_conversions) {
                reason_add(d, &n,
                           "%s n/a (0 conversions): spend_micros %s %s %s",
                           metric, value, op, threshold);
        } else if (r->cmp == SG_CMP_BASELINE) {
                char now[32], base[32];

                fmt_metric(now, sizeof(now), r->metric, ev->metric);
                fmt_metric(base, sizeof(base), r->metric, ev->baseline);
                reason_add(d, &n,
                           "%s %s vs baseline %s (mean of the %d previous "
                           "window%s): change %+.1f%% %s %s%.1f%%",
                           metric, now, base, r->baseline_windows,
                           r->baseline_windows > 1 ? "s" : "", ev->value * 100,
                           op, r->op == SG_OP_OUTSIDE ? "+/-" : "",
                           ev->threshold * 100);
        } else {
                reason_add(d, &n, "%s %s %s %s", metric, value, op, threshold);
        }
        if (r->cmp == SG_CMP_TARGET)
                reason_add(d, &n, " (%g x target %.0f)",
                           action == SG_ACT_RESUME ? r->resume_threshold
                                                   : r->threshold,
                           ev->target);
        if (r->for_windows > 1 && action != SG_ACT_RESUME)
                reason_add(d, &n, " for %d consecutive %s windows",
                           r->for_windows, r->window);
        reason_add(d, &n, ", window %s",
                   s->window[0] ? s->window : SG_RULE_WINDOW_DEFAULT);
        reason_window(d, &n, s->window_start, s->window_end);
        /* The sample size: the counters the rule's guards look at. */
        reason_add(d, &n, ",");
        if (r->min_impressions)
                reason_add(d, &n, " impressions=%" PRId64, c->impressions);
        if (r->min_clicks)
                reason_add(d, &n, " clicks=%" PRId64, c->clicks);
        if (r->min_conversions)
                reason_add(d, &n, " conversions=%" PRId64, c->conversions);
        if (r->min_spend_micros)
                reason_add(d, &n, " spend_micros=%" PRId64, c->spend_micros);

        if (ev->blocked_clicks)
                reason_add(d, &n,
                           ", net of %" PRId64 " clicks of blocked sources",
                           ev->blocked_clicks);
        if (sg_snapshot_running(s))
                reason_add(d, &n, ", running window (not yet complete)");
        if (d->dry_run)
                reason_add(d, &n, ", dry run (shadow rule)");

        metric_add(d, metric,
                   r->cmp == SG_CMP_BASELINE ? ev->metric : ev->value);
        if (r->cmp == SG_CMP_BASELINE) {
                metric_add(d, "baseline", ev->baseline);
                metric_add(d, "change", ev->value);
        }
        metric_add(d, "threshold", ev->threshold);
        metric_add(d, "impressions", (double)c->impressions);
        metric_add(d, "clicks", (double)c->clicks);
        metric_add(d, "conversions", (double)c->conversions);
        metric_add(d, "spend_micros", (double)c->spend_micros);
        metric_add(d, "revenue_micros", (double)c->revenue_micros);
        metric_add(d, "invalid_clicks", (double)c->invalid_clicks);
        if (ev->source)
                metric_add(d, "source_clicks", (double)ev->source->clicks);
        if (ev->blocked_clicks)
                metric_add(d, "blocked_source_clicks",
                           (double)ev->blocked_clicks);
        if (sg_snapshot_running(s))
                metric_add(d, "running", 1);
}

void sg_realloc_decision(const sg_realloc_policy_t *p,
                         const sg_realloc_channel_t *ch, const int64_t *before,
                         int n, int64_t reserve_before, int64_t reserve_after,
                         const char *trigger, int64_t window_start,
                         int64_t window_end, sg_decision_t *d)
{
        int64_t total = reserve_before, moved = 0;
        size_t len = 0;
        char name[32];

        decision_head(d, "reallocate", SG_ACT_REALLOCATE, trigger, "", "",
                      window_start, window_end, 0);
        for (int i = 0; i < n; i++) {
                total += before[i];
                if (ch[i].budget < before[i])
                        moved += before[i] - ch[i].budget;
        }
        if (strcmp(trigger, "*") == 0)
                reason_add(d, &len, "reallocate (periodic): ");
        else
                reason_add(d, &len, "reallocate (%s paused): ", trigger);
        reason_add(d, &len,
                   "moved %" PRId64 " of %" PRId64 " micros (step %g%%, "
                   "reserve %g%%, donors: paused or roas < %g); ",
                   moved, total, p->step_pct, p->reserve_pct, p->min_roas);
        for (int i = 0; i < n; i++) {
                if (ch[i].budget == before[i])
                        continue;
                reason_add(d, &len, "%s %" PRId64 " -> %" PRId64, ch[i].name,
                           before[i], ch[i].budget);
                if (ch[i].has_roas)
                        reason_add(d, &len, " (roas %.3g)", ch[i].roas);
                else if (ch[i].paused)
                        reason_add(d, &len, " (paused)");
                reason_add(d, &len, ", ");
        }
        reason_add(d, &len, "%s %" PRId64 " -> %" PRId64, SG_RESERVE_NAME,
                   reserve_before, reserve_after);
        reason_window(d, &len, window_start, window_end);

        d->budget_cnt = 0;
        for (int i = 0; i < n && d->budget_cnt < SG_DECISION_MAX_BUDGETS - 1;
             i++) {
                snprintf(d->budgets[d->budget_cnt].channel,
                         sizeof(d->budgets[0].channel), "%s", ch[i].name);
                d->budgets[d->budget_cnt++].budget_micros = ch[i].budget;
        }
        snprintf(d->budgets[d->budget_cnt].channel,
                 sizeof(d->budgets[0].channel), "%s", SG_RESERVE_NAME);
        d->budgets[d->budget_cnt++].budget_micros = reserve_after;

        metric_add(d, "total_micros", (double)total);
        metric_add(d, "moved_micros", (double)moved);
        metric_add(d, "reserve_before", (double)reserve_before);
        for (int i = 0; i < n; i++) {
                snprintf(name, sizeof(name), "before.%.24s", ch[i].name);
                metric_add(d, name, (double)before[i]);
        }
}
