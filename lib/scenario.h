/*
 * The deterministic traffic scenario behind sg-gen: healthy channels, one
 * click-fraud channel and one CPA-overrun channel, as a stream of events in
 * event-time order plus the exact ground truth of what was emitted. Pure
 * logic (no I/O): the same seed and options always yield the same stream.
 */
#ifndef SG_SCENARIO_H
#define SG_SCENARIO_H

#include <stdint.h>
#include <stdio.h>

#include "conf.h"
#include "event.h"

/* Roles of a channel in the scenario. */
typedef enum {
        SG_SCN_HEALTHY = 0,
        SG_SCN_FRAUD,   /* bot click flood from fraud_start_ms */
        SG_SCN_OVERRUN, /* CPA about 2x target from the start */
} sg_scn_role_t;

/* Kinds of malformed records (--bad); each maps to one ingest reason. */
typedef enum {
        SG_SCN_OK = 0,
        SG_SCN_BAD_NEG_COST,       /* a click with cost_micros < 0 */
        SG_SCN_BAD_NO_CAMPAIGN,    /* JSON impression without campaign_id */
        SG_SCN_BAD_JSON,           /* truncated JSON */
        SG_SCN_BAD_FRAMING,        /* Avro with magic byte 1 */
        SG_SCN_BAD_UNKNOWN_SCHEMA, /* Avro with schema id 99 */
        SG_SCN_BAD__CNT
} sg_scn_bad_t;

/* User agents of generated traffic: people's browsers, and declared bots
 * (config/bot_ua.txt tags each of them). sg-bench-preload uses them too. */
extern const char *const sg_scn_human_uas[];
extern const size_t sg_scn_human_ua_cnt;
extern const char *const sg_scn_bot_uas[];
extern const size_t sg_scn_bot_ua_cnt;

/* The PRNG of generated traffic: splitmix64, one step of the stream. */
uint64_t sg_splitmix64(uint64_t *state);

/* The dead-letter reason code ingest gives a kind (SG_ERR_*). */
const char *sg_scenario_bad_reason(sg_scn_bad_t kind);

#define SG_SCN_CAMPAIGNS 2 /* per channel: <channel>-c1, <channel>-c2 */
#define SG_SCN_INCIDENTS_MAX 64 /* = SG_CONF_MAX_CHANNELS */
#define SG_SCN_SIZES_MAX     8  /* incident rates and lengths, cycled */
#define SG_SCN_TRIGGER_STEPS 64 /* trigger_window_ms / trigger_step_ms */

typedef struct sg_scenario_opts {
        uint64_t seed;
        int64_t start_ms;            /* event time of the first tick */
        int64_t duration_ms;         /* 0 = unlimited */
        int64_t fraud_start_ms;      /* offset from start */
        int64_t fraud_end_ms;        /* offset from start; 0 = never ends */
        const char *fraud_channel;   /* NULL or "" = none */
        const char *overrun_channel; /* NULL or "" = none */
        int bad;                     /* malformed records, spread evenly */
        /* A click flood from a few residential IPs with browser agents
         * (not tagged invalid): flood_rate clicks/s from flood_ips IPs,
         * [flood_start_ms, flood_end_ms) after start (end 0 = never). */
        const char *flood_channel; /* NULL or "" = none; not the fraud one */
        int64_t flood_start_ms;
        int64_t flood_end_ms;
        int flood_ips;  /* 1 .. SG_SCN_FLOOD_IPS_MAX */
        int flood_rate; /* clicks per second, 1 .. 100 */
        int flood_invalid; /* its clicks carry a bot user agent instead */
        /* A channel whose first campaign (<channel>-c1) alone runs at
         * about 1.7x the channel's target CPA; the channel stays below. */
        const char *overrun_campaign_channel; /* NULL or "" = none */
        /* Fraud incidents: bot click waves (every click from a declared
         * bot), one per channel, on the first `incidents` channels that
         * have no other role, in config order. Incident i starts
         * incident_start_ms + i * incident_every_ms after start and sends
         * incident_rates[i % incident_rate_cnt] clicks/s for
         * incident_lengths_ms[i % incident_length_cnt]. */
        int incidents; /* 0 = none */
        int64_t incident_start_ms;
        int64_t incident_every_ms;
        int incident_rates[SG_SCN_SIZES_MAX]; /* 1 .. 100 clicks/s */
        int incident_rate_cnt;
        int64_t incident_lengths_ms[SG_SCN_SIZES_MAX]; /* > 0 */
        int incident_length_cnt;
        /* An incident's trigger (in the truth) is the first click, from its
         * onset on, after which the channel's running window holds at least
         * trigger_min_clicks clicks of which more than trigger_ivt are
         * invalid: the window is trigger_window_ms long and ends at the
         * trigger_step_ms step after the click (aggregate's running
         * window; docs/rules.md, "Early trips"). */
        double trigger_ivt;
        int trigger_min_clicks;
        int64_t trigger_window_ms, trigger_step_ms;
} sg_scenario_opts_t;

#define SG_SCN_FLOOD_IPS_MAX 8

/* One record of the stream. For bad != SG_SCN_OK, ev is the base event the
 * malformed bytes are made from (its event_id is still unique). */
typedef struct sg_scenario_rec {
        sg_event_t ev;
        sg_scn_bad_t bad;
        int bot;         /* the user agent is a declared bot (ingest tags it) */
        int flood;       /* a click of the IP flood */
        int incident;    /* 1 + the index of its incident; 0 = none */
        int channel_idx; /* into the channels given to sg_scenario_new */
        int campaign_idx; /* 0 .. SG_SCN_CAMPAIGNS - 1 */
} sg_scenario_rec_t;

typedef struct sg_scenario sg_scenario_t;

/*
 * A scenario over the config's channels (at least one; the role channels
 * must be among them). NULL and errstr on error. Free with
 * sg_scenario_destroy().
 */
sg_scenario_t *sg_scenario_new(const sg_channel_conf_t *channels, int cnt,
                               const sg_scenario_opts_t *opts, char *errstr,
                               size_t errstr_size);
void sg_scenario_destroy(sg_scenario_t *sc);

/* The next record in event-time order: 1, or 0 when the scenario is over. */
int sg_scenario_next(sg_scenario_t *sc, sg_scenario_rec_t *rec);

/* Counts rec in the ground truth: call it for each record actually sent. */
void sg_scenario_account(sg_scenario_t *sc, const sg_scenario_rec_t *rec);

/*
 * Writes the ground truth as JSON lines: one per scope (channel level, with
 * "campaign_id":null, then its campaigns; channels sorted by name), then,
 * when a flood or an overrunning campaign is part of the scenario,
 * {"roles":{"flood_channel":..,"flood_sources":[..],"flood_clicks":n,
 * "overrun_campaign":..}}, then with incidents one line each,
 * {"incident":{"index":i,"channel":..,"rate":r,"start_ms":..,"end_ms":..
 * (offsets from start),"click_cost_micros":..,"clicks":n,
 * "invalid_spend_micros":..,"onset_event_ms":..,"onset_wall_ms":..,
 * "trigger_event_ms":..,"trigger_wall_ms":..}} (times null when there was
 * none), and {"healthy_channels":[..]} (no incident and no other role),
 * then {"rejected":{<reason>:n,...},"sent":N}.
 * Returns 0, or -1 on a write error.
 */
int sg_scenario_write_truth(const sg_scenario_t *sc, FILE *fp);

/*
 * Notes that rec, just counted by sg_scenario_account(), was sent at
 * wall-clock time wall_ms: the truth gives an incident's first click and
 * its trigger the wall-clock time they were sent at (null without it).
 */
void sg_scenario_sent_at(sg_scenario_t *sc, const sg_scenario_rec_t *rec,
                         int64_t wall_ms);

/* An incident as scheduled: its channel's index (into the channels given
 * to sg_scenario_new), clicks/s, and start and end offsets from start.
 * Returns 0, or -1 when i is not an incident. */
int sg_scenario_incident(const sg_scenario_t *sc, int i, int *channel_idx,
                         int *rate, int64_t *start_ms, int64_t *end_ms);

/* The flood's source ids ("ip:a.b.c.d") into out[0..n), n = flood_ips;
 * 0 when there is no flood channel. */
int sg_scenario_flood_sources(const sg_scenario_t *sc,
                              char out[][SG_SOURCE_LEN], int max);

/* The role the scenario gave a channel. */
sg_scn_role_t sg_scenario_role(const sg_scenario_t *sc, const char *channel);

/* 1 if ua contains one of the declared-bot substrings the scenario uses
 * ("Googlebot", "bingbot", "curl/", "python-requests", "HeadlessChrome"). */
int sg_scenario_is_bot_ua(const char *ua);

#endif
