/*
 * The rules file and rule evaluation: pure logic, no I/O beyond reading the
 * file. Loads and validates docs/rules.md's format, evaluates a snapshot
 * against one rule, steps circuit breakers, computes reallocations, and
 * builds the explainable, deterministic decisions they yield.
 */
#ifndef SG_RULES_H
#define SG_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "event.h"

typedef enum {
        SG_METRIC_IVT_RATE = 0,    /* invalid_clicks / clicks */
        SG_METRIC_CPA,             /* spend_micros / conversions (micros) */
        SG_METRIC_CTR,             /* clicks / impressions */
        SG_METRIC_CVR,             /* conversions / clicks */
        SG_METRIC_ROAS,            /* revenue_micros / spend_micros */
        SG_METRIC_CPM,             /* 1000 * spend_micros / impressions */
        SG_METRIC_ROI,             /* (revenue - spend) / spend */
        SG_METRIC_IVT_BOT_UA,      /* ivt_bot_ua / (impressions + clicks) */
        SG_METRIC_IVT_NO_UA,       /* ivt_no_ua / (impressions + clicks) */
        SG_METRIC_IVT_DC_IP,       /* ivt_dc_ip / (impressions + clicks) */
        SG_METRIC_IVT_DUP_CLICK,   /* ivt_dup_click / (impressions + clicks) */
        SG_METRIC_SPEND,           /* spend_micros */
        SG_METRIC_SPEND_PCT,       /* spend_micros / budget */
        SG_METRIC_PACING,          /* spend / (budget x window's day share) */
        SG_METRIC_FREQ_CAP_RATE,   /* freq_cap_impressions / impressions */
        SG_METRIC_SHORT_CTC_SHARE, /* ctc_lt_10s / tracked conversions */
        SG_METRIC_SOURCE_CLICKS,   /* clicks of one source (scope source) */
        SG_METRIC_SOURCE_SHARE,    /* its share of the channel's clicks */
        SG_METRIC__CNT
} sg_metric_t;

typedef enum {
        SG_OP_GT = 0,
        SG_OP_GE,
        SG_OP_LT,
        SG_OP_LE,
        SG_OP_OUTSIDE /* "<>": beyond +/- threshold (baseline rules only) */
} sg_op_t;

typedef enum {
        SG_SCOPE_CHANNEL = 0, /* channel snapshots (campaign_id "") */
        SG_SCOPE_CAMPAIGN,    /* (channel, campaign) snapshots */
        SG_SCOPE_SOURCE       /* each top source of a channel snapshot */
} sg_scope_t;

/* What a rule's decisions do (docs/rules.md, "Shadow mode"). */
typedef enum {
        SG_MODE_LIVE = 0, /* they act: breakers, budgets, blocks */
        SG_MODE_SHADOW    /* dry runs: delivered, counted, never acted on */
} sg_rule_mode_t;

const char *sg_rule_mode_name(sg_rule_mode_t m); /* "live", "shadow" */

/* How the metric is compared. */
typedef enum {
        SG_CMP_ABSOLUTE = 0, /* metric op threshold */
        SG_CMP_TARGET,       /* metric op target_factor x the scope's target */
        SG_CMP_BASELINE      /* (metric / baseline - 1) op change */
} sg_cmp_t;

const char *sg_metric_name(sg_metric_t m); /* "ivt_rate", ... */
const char *sg_op_name(sg_op_t op);        /* ">", ... */
const char *sg_scope_name(sg_scope_t s);   /* "channel", ... */

#define SG_RULE_WINDOW_DEFAULT "1m"
#define SG_DAY_MS              86400000LL

/* A window name's length in ms: "today" a day, "<n>s|m|h|d"; 0 if not a
 * window name. */
int64_t sg_window_ms(const char *name);

typedef struct sg_rule {
        char id[SG_NAME_LEN]; /* [a-z0-9_]+, unique in the file */
        char description[256];
        sg_scope_t scope;
        char window[SG_WINDOW_LEN]; /* "1m" (default), "5m", "1h", "today" */
        int64_t window_ms;          /* its length; "today" = one day */
        sg_metric_t metric;
        sg_op_t op;
        sg_cmp_t cmp;
        double threshold;     /* ABSOLUTE; the factor for TARGET; the relative
                               * change for BASELINE */
        int baseline_windows; /* BASELINE: mean of that many previous */
        int for_windows;      /* consecutive windows the condition holds */
        /* PAUSE: the breaker's resume threshold (absolute or factor, as
         * threshold), strictly healthier than threshold; and the cooldown
         * in event time before it may resume. */
        double resume_threshold;
        int64_t cooldown_ms;
        /* BLOCK_SOURCE: how long a source stays blocked, and which kind
         * ("ip", "device" or "" = any). */
        int64_t ttl_ms;
        char source_kind[8];
        /* Minimum-sample guards, all of which must hold; 0 = no guard. */
        int64_t min_impressions;
        int64_t min_clicks;
        int64_t min_conversions;
        int64_t min_spend_micros;
        sg_action_t action; /* PAUSE, ALERT or BLOCK_SOURCE */
        /* May trip on a running window (docs/rules.md, "Early trips"):
         * by default every rule whose metric allows it; `early: false`
         * waits for complete windows. */
        int early;
        /* `mode: shadow`: evaluated with state of its own (breakers,
         * blocks), its decisions dry runs. */
        sg_rule_mode_t mode;
        int line;           /* of the rule in its file */
} sg_rule_t;

/* The reallocation: section of the rules file. */
typedef struct sg_realloc_policy {
        int enabled;
        char window[SG_WINDOW_LEN]; /* the window ROAS is ranked on */
        int64_t every_ms;           /* periodic, in event time; 0 = never */
        int on_pause;               /* also when a channel is paused */
        double reserve_pct;         /* of the total, kept in reserve */
        double step_pct;            /* of a channel's budget, per step */
        double min_roas;            /* below: under-performing, a donor */
        int64_t min_spend_micros;   /* below: ROAS unknown */
} sg_realloc_policy_t;

typedef struct sg_rules {
        sg_rule_t *rule; /* in file order: the order of evaluation */
        int cnt;
        sg_realloc_policy_t realloc;
} sg_rules_t;

/*
 * Loads and validates a rules file. NULL and one line in errstr
 * ("file:line: rule <id>: <key>: why") on any error. The string variant
 * names the buffer `name` in messages. Free with sg_rules_destroy().
 */
sg_rules_t *sg_rules_load_file(const char *path, char *errstr,
                               size_t errstr_size);
sg_rules_t *sg_rules_load_string(const char *buf, size_t len, const char *name,
                                 char *errstr, size_t errstr_size);
void sg_rules_destroy(sg_rules_t *rules); /* accepts NULL */

/* 1 when the snapshot is one of the rule's window ("" counts as the
 * default window, as snapshots without a window name are). */
int sg_rule_window_matches(const sg_rule_t *r, const sg_snapshot_t *s);

/* What evaluating one rule against one snapshot found. */
typedef enum {
        SG_RULE_HEALTHY = 0,  /* enough samples, condition false (or not
                               * for enough windows yet) */
        SG_RULE_TRIPPED,      /* enough samples, condition true */
        SG_RULE_OUT_OF_SCOPE, /* other scope or other window */
        SG_RULE_SMALL_SAMPLE, /* a min_* guard does not hold */
        SG_RULE_UNDEFINED,    /* the metric's denominator is 0 */
        SG_RULE_NO_TARGET,    /* target rule, scope without a target */
        SG_RULE_NO_BASELINE   /* baseline rule without (usable) history */
} sg_rule_outcome_t;

/* What the evaluation needs besides the snapshot: the engine's state. */
typedef struct sg_rule_ctx {
        int64_t target;        /* TARGET: the scope's target, 0 = none */
        int64_t budget_micros; /* the channel's current budget, 0 = none */
        int has_baseline;      /* BASELINE: mean metric of earlier windows */
        double baseline;
        int prior_held; /* consecutive previous windows the condition held */
        int64_t blocked_clicks; /* taken out of the snapshot: its blocked
                                 * sources' clicks (block before pause) */
} sg_rule_ctx_t;

typedef struct sg_rule_eval {
        sg_rule_outcome_t outcome;
        int held;         /* the condition holds in this window */
        double value;     /* the metric (spend_micros if zero_conversions) */
        double metric;    /* BASELINE: the metric itself (value = change) */
        double threshold; /* the absolute threshold applied */
        double target;    /* TARGET: the scope's target */
        double baseline;  /* BASELINE: what it was compared with */
        int zero_conversions; /* cpa with 0 conversions: spend compared */
        const sg_source_count_t *source; /* SOURCE scope */
        int64_t blocked_clicks; /* from the context: said in the reason */
} sg_rule_eval_t;

/*
 * The scope's target for the rule's metric from the main config (cpa:
 * channels[].target_cpa_micros), 0 when the channel has none.
 */
int64_t sg_rule_target(const sg_rule_t *r, const sg_conf_t *conf,
                       const char *channel);

/*
 * Evaluates r against s (and, for scope source, against src, one of
 * s->top) with ctx. Fills *ev and returns ev->outcome. A cpa rule with op
 * > or >= on a snapshot with 0 conversions compares spend_micros (a lower
 * bound of the CPA to come); any other metric with a zero denominator is
 * UNDEFINED. TRIPPED needs the condition in this window and in
 * for_windows - 1 previous ones (ctx->prior_held).
 */
sg_rule_outcome_t sg_rule_eval(const sg_rule_t *r, const sg_snapshot_t *s,
                               const sg_source_count_t *src,
                               const sg_rule_ctx_t *ctx, sg_rule_eval_t *ev);

/*
 * 1 when the metric is healthy against the rule's resume threshold (the
 * stricter one) with enough samples: what a half-open breaker needs to
 * close. ev is filled as by sg_rule_eval with the resume threshold.
 */
int sg_rule_resume_ok(const sg_rule_t *r, const sg_snapshot_t *s,
                      const sg_rule_ctx_t *ctx, sg_rule_eval_t *ev);

/* The value of a metric, 1, or 0 when undefined (zero denominator, no
 * budget). For scope source, src->clicks. */
int sg_metric_value(sg_metric_t m, const sg_snapshot_t *s,
                    const sg_source_count_t *src, int64_t budget_micros,
                    double *out);

/* ------------------------------------------------------------ breakers */

typedef enum {
        SG_BREAKER_CLOSED = 0,
        SG_BREAKER_OPEN = 1,
        SG_BREAKER_HALF_OPEN = 2
} sg_breaker_state_t;

const char *sg_breaker_state_name(sg_breaker_state_t s); /* "closed", ... */
int sg_breaker_state_parse(const char *s);               /* -1 if unknown */

/* One scope's circuit breaker. Times are event time (window ends). */
typedef struct sg_breaker {
        sg_breaker_state_t state;
        char rule[SG_NAME_LEN]; /* the rule that opened it */
        int64_t since;          /* last transition */
        int64_t cooldown_until; /* open: half-open from then on */
        char decision_id[SG_ID_LEN];
} sg_breaker_t;

/*
 * Steps b with one PAUSE rule's evaluation at event time now (the
 * snapshot's window_end; window_start its start): tripped = the rule
 * tripped, resume_ok = sg_rule_resume_ok(). Returns SG_ACT_PAUSE or
 * SG_ACT_RESUME when a decision is due, -1 otherwise.
 *  closed    -> open (PAUSE) when tripped;
 *  open      -> half-open once now >= cooldown_until (no decision);
 *  half-open -> open (PAUSE) when tripped again, -> closed (RESUME) when
 *               the opening rule is healthy against its resume threshold
 *               over a window starting at or after the cooldown's end.
 * Idempotent: a snapshot older than the last transition changes nothing,
 * and seeing the same snapshot twice decides nothing new.
 */
int sg_breaker_step(sg_breaker_t *b, const sg_rule_t *r, int64_t now,
                    int64_t window_start, int tripped, int resume_ok);

/* --------------------------------------------------------- reallocation */

typedef struct sg_realloc_channel {
        char name[SG_NAME_LEN];
        int64_t budget; /* in: current; out: after the step */
        int64_t floor;  /* never below */
        int64_t cap;    /* never above; 0 = no cap */
        int paused;
        int has_roas;
        double roas;
} sg_realloc_channel_t;

/*
 * One reallocation step over ch[0..n) and the reserve: donors (paused, or
 * ROAS known and below min_roas) each give up to step_pct of their budget,
 * never below their floor; the reserve is topped up to reserve_pct of the
 * total first; the rest goes to the others by ROAS, best first (name breaks
 * ties), each taking at most step_pct of its budget and never above its
 * cap; what nobody can take goes to the reserve. The total (budgets plus
 * reserve) is preserved exactly and the reserve never shrinks.
 * Deterministic. Returns the micros moved out of donors.
 */
int64_t sg_realloc_step(const sg_realloc_policy_t *p, sg_realloc_channel_t *ch,
                        int n, int64_t *reserve);

/* ------------------------------------------------------------ decisions */

/*
 * The decision id: FNV-1a 128 over rule_id, action name, channel,
 * campaign_id, window_start and window_end (decimal), each followed by a NUL
 * byte, as 32 lowercase hex chars into out (at least 33 bytes). The same
 * trigger always yields the same id, across restarts and versions.
 */
void sg_decision_id(const char *rule_id, sg_action_t action,
                    const char *channel, const char *campaign_id,
                    int64_t window_start, int64_t window_end, char *out);
/* The same, and then source (with its NUL) when not empty. */
void sg_decision_id_source(const char *rule_id, sg_action_t action,
                           const char *channel, const char *campaign_id,
                           const char *source, int64_t window_start,
                           int64_t window_end, char *out);
/* The same, and then "dry_run" (with its NUL) when dry_run: a shadow
 * rule's decision never shares an id with a live one, not even with the
 * same rule id once it goes live (the sink would drop it as delivered). */
void sg_decision_id_mode(const char *rule_id, sg_action_t action,
                         const char *channel, const char *campaign_id,
                         const char *source, int64_t window_start,
                         int64_t window_end, int dry_run, char *out);

/*
 * Fills d for a TRIPPED evaluation (or a RESUME: action SG_ACT_RESUME and
 * ev from sg_rule_resume_ok): id, rule, action, scope (and source), the
 * reason (rule, metric, value, threshold, window, sample size), the metrics
 * map, the window, decided_at = window_end (event time, so that a replay
 * yields the same decision byte for byte), no budgets.
 */
void sg_rule_decision(const sg_rule_t *r, sg_action_t action,
                      const sg_snapshot_t *s, const sg_rule_eval_t *ev,
                      sg_decision_t *d);

/*
 * Fills d for a reallocation at event time [window_start, window_end):
 * before[i] and ch[i].budget (after), the reserve before and after, and
 * channel = the paused channel that triggered it ("*" when periodic).
 */
void sg_realloc_decision(const sg_realloc_policy_t *p,
                         const sg_realloc_channel_t *ch, const int64_t *before,
                         int n, int64_t reserve_before, int64_t reserve_after,
                         const char *trigger, int64_t window_start,
                         int64_t window_end, sg_decision_t *d);

#define SG_RESERVE_NAME "(reserve)" /* its entry in a decision's budgets */

#endif
