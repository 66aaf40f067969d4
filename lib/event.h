/*
 * The records that flow between the stages, as plain C structs with fixed
 * buffers: decoding fills a caller's struct, so the hot path never allocates.
 */
#ifndef SG_EVENT_H
#define SG_EVENT_H

#include <stdint.h>

/* Confluent schema ids (a contract: docs/schemas.md). */
enum {
        SG_SCHEMA_IMPRESSION = 1,
        SG_SCHEMA_CLICK = 2,
        SG_SCHEMA_CONVERSION = 3,
        SG_SCHEMA_NORMALIZED = 4,
        SG_SCHEMA_SNAPSHOT = 5,
        SG_SCHEMA_DECISION = 6,
        SG_SCHEMA_KPI = 7,
        SG_SCHEMA_MAX = 7
};

typedef enum {
        SG_EV_NONE = 0,
        SG_EV_IMPRESSION = 1, /* same numbers as the schema ids */
        SG_EV_CLICK = 2,
        SG_EV_CONVERSION = 3
} sg_event_type_t;

const char *sg_event_type_name(sg_event_type_t t);  /* "impression", ... */
sg_event_type_t sg_event_type_parse(const char *s); /* SG_EV_NONE if unknown */

/* Field sizes include the NUL. A longer value is rejected as bad_value. */
#define SG_ID_LEN      128
#define SG_NAME_LEN    64
#define SG_IP_LEN      64
#define SG_UA_LEN      512
#define SG_COUNTRY_LEN 8
#define SG_TOPIC_LEN   128
#define SG_REASON_LEN  32
#define SG_SOURCE_LEN  (SG_ID_LEN + 8) /* "ip:<ip>" or "device:<device_id>" */
#define SG_WINDOW_LEN  8               /* "1m", "5m", "1h", "today", ... */

/* Invalid-traffic bits of sg_event_t.ivt_mask. */
#define SG_IVT_BOT_UA    0x1 /* declared bot / crawler / HTTP library */
#define SG_IVT_NO_UA     0x2 /* missing user agent */
#define SG_IVT_DC_IP     0x4 /* data-center IP range */
#define SG_IVT_DUP_CLICK 0x8 /* same device and ad within the interval */

/*
 * One event. Optional string fields are empty ("") when absent; has_* says
 * whether an optional field was present at all. cost_micros is set for
 * impressions and clicks, revenue_micros for conversions; ref_id is the
 * impression_id of a click or the click_id of a conversion.
 * src_* are the input coordinates stamped by ingest.
 */
typedef struct sg_event {
        sg_event_type_t type;
        char event_id[SG_ID_LEN];
        int64_t event_time; /* ms since the epoch, UTC */
        char channel[SG_NAME_LEN];
        char campaign_id[SG_NAME_LEN];
        char ad_id[SG_ID_LEN];
        char device_id[SG_ID_LEN];
        char ip[SG_IP_LEN];
        char user_agent[SG_UA_LEN];
        char country[SG_COUNTRY_LEN];
        char ref_id[SG_ID_LEN];
        unsigned has_ad_id : 1, has_device_id : 1, has_ip : 1,
            has_user_agent : 1, has_country : 1, has_ref_id : 1;
        int64_t cost_micros;
        int64_t revenue_micros;
        uint32_t ivt_mask;
        char ivt_reason[SG_REASON_LEN];
        char src_topic[SG_TOPIC_LEN];
        int32_t src_partition;
        int64_t src_offset;
} sg_event_t;

/* The additive counters of one scope over one window. */
typedef struct sg_counters {
        int64_t impressions;
        int64_t clicks;
        int64_t conversions;
        int64_t spend_micros;
        int64_t revenue_micros;
        int64_t invalid_clicks;
        int64_t invalid_impressions;
        int64_t invalid_spend_micros;
        int64_t unique_devices; /* not additive: a HyperLogLog estimate */
} sg_counters_t;

/*
 * The behavioural signals of one scope over one window, next to the
 * counters in an AggregateSnapshot (not in ChannelKpi). ivt_* count the
 * invalid impressions and clicks carrying each reason bit (an event with two
 * reasons is in both). ctc_* is the click-to-conversion time of conversions
 * whose click_id names a click aggregate has seen; conversions_no_click the
 * others. freq_cap_impressions: impressions beyond aggregate.freq_cap per
 * device and campaign and day. source_clicks_untracked: clicks of sources
 * that did not fit in aggregate.max_sources (docs/redis-layout.md).
 */
typedef struct sg_signals {
        int64_t unique_ips; /* a HyperLogLog estimate */
        int64_t ivt_bot_ua;
        int64_t ivt_no_ua;
        int64_t ivt_dc_ip;
        int64_t ivt_dup_click;
        int64_t freq_cap_impressions;
        int64_t ctc_lt_10s;
        int64_t ctc_lt_1m;
        int64_t ctc_lt_1h;
        int64_t ctc_ge_1h;
        int64_t conversions_no_click;
        int64_t source_clicks_untracked;
} sg_signals_t;

/* Clicks of one source ("ip:1.2.3.4", "device:abc") in a window. */
typedef struct sg_source_count {
        char source[SG_SOURCE_LEN];
        int64_t clicks;
} sg_source_count_t;

#define SG_SNAPSHOT_TOP 10 /* heaviest sources in a channel snapshot */

/*
 * A scope's counters over [window_start, window_end): an AggregateSnapshot
 * (schema 5) on sg.aggregates, and a ChannelKpi row (schema 7) when final.
 * campaign_id is "" for a channel-level scope.
 */
typedef struct sg_snapshot {
        char channel[SG_NAME_LEN];
        char campaign_id[SG_NAME_LEN];
        int64_t window_start;
        int64_t window_end;
        int final;
        char window[SG_WINDOW_LEN]; /* the window's name (aggregate.windows) */
        sg_counters_t c;
        sg_signals_t x;
        int top_cnt; /* channel scope only; clicks, heaviest first */
        sg_source_count_t top[SG_SNAPSHOT_TOP];
        int64_t watermark; /* aggregate's watermark when it was written */
} sg_snapshot_t;

/* A running window: sent before the watermark completed it (window_end
 * beyond the watermark), with what had been applied so far. */
static inline int sg_snapshot_running(const sg_snapshot_t *s)
{
        return !s->final && s->window_end > s->watermark;
}

typedef enum {
        SG_ACT_PAUSE = 0, /* the order of the Avro enum symbols */
        SG_ACT_RESUME,
        SG_ACT_BLOCK_SOURCE,
        SG_ACT_REALLOCATE,
        SG_ACT_ALERT,
        SG_ACT__CNT
} sg_action_t;

const char *sg_action_name(sg_action_t a); /* "PAUSE", ... */
int sg_action_parse(const char *s);        /* -1 if unknown */

#define SG_DECISION_MAX_METRICS 16
#define SG_DECISION_MAX_BUDGETS 32

typedef struct sg_decision {
        char decision_id[SG_ID_LEN];
        char rule_id[SG_NAME_LEN];
        sg_action_t action;
        char channel[SG_NAME_LEN];
        char campaign_id[SG_NAME_LEN]; /* "" = none */
        char source[SG_SOURCE_LEN];    /* "" = none */
        char reason[512];
        int metric_cnt;
        struct {
                char name[32];
                double value;
        } metrics[SG_DECISION_MAX_METRICS];
        int64_t window_start;
        int64_t window_end;
        int64_t decided_at;
        int budget_cnt; /* -1 = budgets is null; >= 0 for REALLOCATE */
        struct {
                char channel[SG_NAME_LEN];
                int64_t budget_micros;
        } budgets[SG_DECISION_MAX_BUDGETS];
        /* A shadow rule's decision (docs/rules.md, "Shadow mode"): made
         * and delivered, but nothing acts on it. Avro/JSON "dry_run",
         * false when a record has none (written before the field). */
        int dry_run;
} sg_decision_t;

/* Derived ratios: each returns 1 and sets *out, or returns 0 and leaves
 * *out alone when the denominator is zero (the ratio is undefined). */
int sg_counters_ctr(const sg_counters_t *c, double *out);
int sg_counters_cvr(const sg_counters_t *c, double *out);
int sg_counters_cpa(const sg_counters_t *c, double *out); /* micros */
int sg_counters_cpm(const sg_counters_t *c, double *out); /* micros */
int sg_counters_roas(const sg_counters_t *c, double *out);
int sg_counters_ivt_rate(const sg_counters_t *c,
                         double *out); /* invalid_clicks / clicks */

#endif
