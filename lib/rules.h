/*
 * The rules file and rule evaluation: pure logic, no I/O beyond reading the
 * file. Loads and validates docs/rules.md's format, evaluates a snapshot
 * against one rule, and builds the explainable, deterministic decision.
 */
#ifndef SG_RULES_H
#define SG_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "event.h"

typedef enum {
        SG_METRIC_IVT_RATE = 0, /* invalid_clicks / clicks */
        SG_METRIC_CPA,          /* spend_micros / conversions (micros) */
        SG_METRIC_CTR,          /* clicks / impressions */
        SG_METRIC_CVR,          /* conversions / clicks */
        SG_METRIC_ROAS,         /* revenue_micros / spend_micros */
        SG_METRIC_CPM,          /* 1000 * spend_micros / impressions */
        SG_METRIC__CNT
} sg_metric_t;

typedef enum { SG_OP_GT = 0, SG_OP_GE, SG_OP_LT, SG_OP_LE } sg_op_t;

typedef enum { SG_SCOPE_CHANNEL = 0 } sg_scope_t;

const char *sg_metric_name(sg_metric_t m); /* "ivt_rate", ... */
const char *sg_op_name(sg_op_t op);        /* ">", ... */

typedef struct sg_rule {
        char id[SG_NAME_LEN]; /* [a-z0-9_]+, unique in the file */
        char description[256];
        sg_scope_t scope;
        sg_metric_t metric;
        sg_op_t op;
        /* Exactly one of the two is set (validated at load). */
        int has_threshold;
        double threshold;
        int has_target_factor;
        double target_factor; /* threshold = factor x the channel's target */
        /* Minimum-sample guards, all of which must hold; 0 = no guard. */
        int64_t min_impressions;
        int64_t min_clicks;
        int64_t min_conversions;
        int64_t min_spend_micros;
        sg_action_t action; /* PAUSE or ALERT for now */
        int line;           /* of the rule in its file */
} sg_rule_t;

typedef struct sg_rules {
        sg_rule_t *rule; /* in file order: the order of evaluation */
        int cnt;
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

/* What evaluating one rule against one snapshot found. */
typedef enum {
        SG_RULE_HEALTHY = 0,  /* enough samples, comparison false */
        SG_RULE_TRIPPED,      /* enough samples, comparison true */
        SG_RULE_OUT_OF_SCOPE, /* e.g. a campaign snapshot, channel rule */
        SG_RULE_SMALL_SAMPLE, /* a min_* guard does not hold */
        SG_RULE_UNDEFINED,    /* the metric's denominator is 0 */
        SG_RULE_NO_TARGET     /* target_factor, channel without a target */
} sg_rule_outcome_t;

typedef struct sg_rule_eval {
        sg_rule_outcome_t outcome;
        double value;     /* the metric (spend_micros if zero_conversions) */
        double threshold; /* the absolute threshold applied */
        double target;    /* the channel's target when target_factor */
        int zero_conversions; /* cpa with 0 conversions: spend compared */
} sg_rule_eval_t;

/*
 * The channel's target for the rule's metric from the main config (cpa:
 * channels[].target_cpa_micros), 0 when the channel has none.
 */
int64_t sg_rule_target(const sg_rule_t *r, const sg_conf_t *conf,
                       const char *channel);

/*
 * Evaluates r against s, with target as sg_rule_target() returns it.
 * Fills *ev and returns ev->outcome. A cpa rule with op > or >= on a
 * snapshot with 0 conversions compares spend_micros (a lower bound of the
 * CPA to come); any other metric with a zero denominator is UNDEFINED.
 */
sg_rule_outcome_t sg_rule_eval(const sg_rule_t *r, const sg_snapshot_t *s,
                               int64_t target, sg_rule_eval_t *ev);

/*
 * The decision id: FNV-1a 128 over rule_id, action name, channel,
 * campaign_id, window_start and window_end (decimal), each followed by a NUL
 * byte, as 32 lowercase hex chars into out (at least 33 bytes). The same
 * trigger always yields the same id, across restarts and versions.
 */
void sg_decision_id(const char *rule_id, sg_action_t action,
                    const char *channel, const char *campaign_id,
                    int64_t window_start, int64_t window_end, char *out);

/*
 * Fills d for a TRIPPED evaluation: id, rule, action, scope, the reason
 * (rule, metric, value, threshold, window, sample size), the metrics map,
 * the window, decided_at = window_end (event time, so that a replay yields
 * the same decision byte for byte), no source, no budgets.
 */
void sg_rule_decision(const sg_rule_t *r, const sg_snapshot_t *s,
                      const sg_rule_eval_t *ev, sg_decision_t *d);

#endif
