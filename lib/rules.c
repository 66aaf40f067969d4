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
    [SG_METRIC_IVT_RATE] = "ivt_rate", [SG_METRIC_CPA] = "cpa",
    [SG_METRIC_CTR] = "ctr",           [SG_METRIC_CVR] = "cvr",
    [SG_METRIC_ROAS] = "roas",         [SG_METRIC_CPM] = "cpm",
};

static const char *const op_names[] = {
    [SG_OP_GT] = ">", [SG_OP_GE] = ">=", [SG_OP_LT] = "<", [SG_OP_LE] = "<="};

const char *sg_metric_name(sg_metric_t m)
{
        if ((int)m < 0 || m >= SG_METRIC__CNT)
                return "unknown";
        return metric_names[m];
}

const char *sg_op_name(sg_op_t op)
{
        if ((int)op < 0 || op > SG_OP_LE)
                return "?";
        return op_names[op];
}

/* Money metrics print as whole micros, ratios with 4 significant digits. */
static int metric_is_money(sg_metric_t m)
{
        return m == SG_METRIC_CPA || m == SG_METRIC_CPM;
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

static const char *const rule_keys[] = {"id",
                                        "description",
                                        "scope",
                                        "metric",
                                        "op",
                                        "threshold",
                                        "target_factor",
                                        "min_impressions",
                                        "min_clicks",
                                        "min_conversions",
                                        "min_spend_micros",
                                        "action",
                                        NULL};

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

static int load_rule(loader_t *l, const sg_yaml_node_t *m, int index,
                     sg_rule_t *r)
{
        const sg_yaml_node_t *idn = sg_yaml_get(m, "id");
        char label[SG_NAME_LEN + 16];
        int guards = 0;

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
        for (const sg_yaml_node_t *k = m->child; k; k = k->next) {
                int known = 0;

                for (int i = 0; rule_keys[i]; i++)
                        if (strcmp(k->key, rule_keys[i]) == 0)
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

        r->scope = SG_SCOPE_CHANNEL;
        r->metric = SG_METRIC__CNT;
        r->op = (sg_op_t)-1;
        r->action = SG_ACT__CNT;
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
                        if (strcmp(v, "channel") != 0)
                                return fail(l, k->line, label,
                                            "scope: \"%s\" is not supported "
                                            "yet (only channel)",
                                            v);
                } else if (strcmp(k->key, "metric") == 0) {
                        for (int i = 0; i < SG_METRIC__CNT; i++)
                                if (strcmp(v, metric_names[i]) == 0)
                                        r->metric = (sg_metric_t)i;
                        if (r->metric == SG_METRIC__CNT)
                                return fail(l, k->line, label,
                                            "metric: unknown metric \"%s\" "
                                            "(ivt_rate, cpa, ctr, cvr, roas, "
                                            "cpm)",
                                            v);
                } else if (strcmp(k->key, "op") == 0) {
                        for (int i = SG_OP_GT; i <= SG_OP_LE; i++)
                                if (strcmp(v, op_names[i]) == 0)
                                        r->op = (sg_op_t)i;
                        if ((int)r->op == -1)
                                return fail(l, k->line, label,
                                            "op: unknown op \"%s\" (>, >=, "
                                            "<, <=; quote it: op: \">\")",
                                            v);
                } else if (strcmp(k->key, "threshold") == 0) {
                        if (parse_threshold(l, k, label, &r->threshold))
                                return -1;
                        r->has_threshold = 1;
                } else if (strcmp(k->key, "target_factor") == 0) {
                        if (parse_threshold(l, k, label, &r->target_factor))
                                return -1;
                        if (r->target_factor == 0)
                                return fail(l, k->line, label,
                                            "target_factor: must be above 0");
                        r->has_target_factor = 1;
                } else if (strcmp(k->key, "action") == 0) {
                        int a = sg_action_parse(v);

                        if (a == SG_ACT_RESUME || a == SG_ACT_BLOCK_SOURCE ||
                            a == SG_ACT_REALLOCATE)
                                return fail(l, k->line, label,
                                            "action: %s is not supported yet "
                                            "(PAUSE, ALERT)",
                                            v);
                        if (a != SG_ACT_PAUSE && a != SG_ACT_ALERT)
                                return fail(l, k->line, label,
                                            "action: unknown action \"%s\" "
                                            "(PAUSE, ALERT)",
                                            v);
                        r->action = (sg_action_t)a;
                } else {
                        if (strcmp(k->key, "min_impressions") == 0)
                                guard = &r->min_impressions;
                        else if (strcmp(k->key, "min_clicks") == 0)
                                guard = &r->min_clicks;
                        else if (strcmp(k->key, "min_conversions") == 0)
                                guard = &r->min_conversions;
                        else
                                guard = &r->min_spend_micros;
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
        if (r->has_threshold && r->has_target_factor)
                return fail(l, sg_yaml_get(m, "target_factor")->line, label,
                            "threshold and target_factor are exclusive");
        if (!r->has_threshold && !r->has_target_factor)
                return fail(l, m->line, label,
                            "missing threshold (or target_factor)");
        if (r->has_target_factor && r->metric != SG_METRIC_CPA)
                return fail(l, sg_yaml_get(m, "target_factor")->line, label,
                            "target_factor: metric %s has no per-channel "
                            "target (only cpa)",
                            metric_names[r->metric]);
        if (guards == 0)
                return fail(l, m->line, label,
                            "no minimum-sample guard (min_impressions, "
                            "min_clicks, min_conversions or "
                            "min_spend_micros above 0)");
        return 0;
}

static sg_rules_t *load_tree(loader_t *l, const sg_yaml_node_t *root)
{
        const sg_yaml_node_t *seq = NULL;
        sg_rules_t *rules;
        int n = 0;

        if (root->type != SG_YAML_MAP) {
                fail(l, root->line, NULL,
                     "the rules file must be a map with a rules: list");
                return NULL;
        }
        for (const sg_yaml_node_t *e = root->child; e; e = e->next) {
                if (strcmp(e->key, "rules") != 0) {
                        fail(l, e->line, NULL, "unknown key %s (only rules:)",
                             e->key);
                        return NULL;
                }
                seq = e;
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

int64_t sg_rule_target(const sg_rule_t *r, const sg_conf_t *conf,
                       const char *channel)
{
        const sg_channel_conf_t *ch;

        if (!r->has_target_factor || r->metric != SG_METRIC_CPA)
                return 0;
        ch = sg_conf_channel(conf, channel);
        return ch ? ch->target_cpa_micros : 0;
}

static int metric_value(sg_metric_t m, const sg_counters_t *c, double *out)
{
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
        }
        return 0;
}

sg_rule_outcome_t sg_rule_eval(const sg_rule_t *r, const sg_snapshot_t *s,
                               int64_t target, sg_rule_eval_t *ev)
{
        const sg_counters_t *c = &s->c;

        memset(ev, 0, sizeof(*ev));
        if (r->scope == SG_SCOPE_CHANNEL && s->campaign_id[0] != '\0')
                return ev->outcome = SG_RULE_OUT_OF_SCOPE;
        if (c->impressions < r->min_impressions || c->clicks < r->min_clicks ||
            c->conversions < r->min_conversions ||
            c->spend_micros < r->min_spend_micros)
                return ev->outcome = SG_RULE_SMALL_SAMPLE;
        if (r->has_target_factor) {
                if (target <= 0)
                        return ev->outcome = SG_RULE_NO_TARGET;
                ev->target = (double)target;
                ev->threshold = r->target_factor * (double)target;
        } else {
                ev->threshold = r->threshold;
        }
        if (!metric_value(r->metric, c, &ev->value)) {
                /* No conversions yet: the CPA will be at least the spend,
                 * so spend above a ceiling is already an overrun. */
                if (r->metric != SG_METRIC_CPA ||
                    (r->op != SG_OP_GT && r->op != SG_OP_GE))
                        return ev->outcome = SG_RULE_UNDEFINED;
                ev->zero_conversions = 1;
                ev->value = (double)c->spend_micros;
        }
        ev->outcome = compare(r->op, ev->value, ev->threshold)
                          ? SG_RULE_TRIPPED
                          : SG_RULE_HEALTHY;
        return ev->outcome;
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

void sg_decision_id(const char *rule_id, sg_action_t action,
                    const char *channel, const char *campaign_id,
                    int64_t window_start, int64_t window_end, char *out)
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
        h = fnv128_add(h, num);
        snprintf(out, 33, "%016" PRIx64 "%016" PRIx64, h.hi, h.lo);
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

static void metric_add(sg_decision_t *d, const char *name, double v)
{
        if (d->metric_cnt == SG_DECISION_MAX_METRICS)
                return;
        snprintf(d->metrics[d->metric_cnt].name, sizeof(d->metrics[0].name),
                 "%s", name);
        d->metrics[d->metric_cnt].value = v;
        d->metric_cnt++;
}

void sg_rule_decision(const sg_rule_t *r, const sg_snapshot_t *s,
                      const sg_rule_eval_t *ev, sg_decision_t *d)
{
        const sg_counters_t *c = &s->c;
        const char *metric = metric_names[r->metric];
        char value[32], threshold[32], start[40], end[40];
        int64_t span = s->window_end - s->window_start;
        size_t n = 0;

        d->decision_id[0] = '\0';
        sg_decision_id(r->id, r->action, s->channel, s->campaign_id,
                       s->window_start, s->window_end, d->decision_id);
        snprintf(d->rule_id, sizeof(d->rule_id), "%s", r->id);
        d->action = r->action;
        snprintf(d->channel, sizeof(d->channel), "%s", s->channel);
        snprintf(d->campaign_id, sizeof(d->campaign_id), "%s", s->campaign_id);
        d->source[0] = '\0';
        d->window_start = s->window_start;
        d->window_end = s->window_end;
        d->decided_at = s->window_end;
        d->budget_cnt = -1;

        /* "cpa_overrun: cpa 40000000 > 26000000 (1.3 x target 20000000)
         *  over [2026-11-22T10:00:00Z, 10:01:00Z) (60 s), clicks=412" */
        d->reason[0] = '\0';
        fmt_metric(value, sizeof(value), r->metric, ev->value);
        fmt_metric(threshold, sizeof(threshold), r->metric, ev->threshold);
        if (ev->zero_conversions)
                reason_add(d, &n,
                           "%s: %s n/a (0 conversions): spend_micros "
                           "%s %s %s",
                           r->id, metric, value, op_names[r->op], threshold);
        else
                reason_add(d, &n, "%s: %s %s %s %s", r->id, metric, value,
                           op_names[r->op], threshold);
        if (r->has_target_factor)
                reason_add(d, &n, " (%g x target %.0f)", r->target_factor,
                           ev->target);
        fmt_time(start, sizeof(start), s->window_start, 1);
        fmt_time(end, sizeof(end), s->window_end,
                 day_of(s->window_start) != day_of(s->window_end));
        if (span % 1000 == 0)
                reason_add(d, &n, " over [%s, %s) (%" PRId64 " s)", start, end,
                           span / 1000);
        else
                reason_add(d, &n, " over [%s, %s) (%.3f s)", start, end,
                           (double)span / 1000.0);
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

        d->metric_cnt = 0;
        metric_add(d, metric, ev->value);
        metric_add(d, "threshold", ev->threshold);
        metric_add(d, "impressions", (double)c->impressions);
        metric_add(d, "clicks", (double)c->clicks);
        metric_add(d, "conversions", (double)c->conversions);
        metric_add(d, "spend_micros", (double)c->spend_micros);
        metric_add(d, "revenue_micros", (double)c->revenue_micros);
        metric_add(d, "invalid_clicks", (double)c->invalid_clicks);
}
