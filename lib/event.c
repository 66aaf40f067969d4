/*
 * Names of the event types and decision actions as they appear on the wire,
 * and the derived KPI ratios every stage computes the same way.
 */
#include <string.h>

#include "event.h"

static const char *const event_type_names[] = {
    [SG_EV_IMPRESSION] = "impression",
    [SG_EV_CLICK] = "click",
    [SG_EV_CONVERSION] = "conversion",
};

static const char *const action_names[SG_ACT__CNT] = {
    [SG_ACT_PAUSE] = "PAUSE",
    [SG_ACT_RESUME] = "RESUME",
    [SG_ACT_BLOCK_SOURCE] = "BLOCK_SOURCE",
    [SG_ACT_REALLOCATE] = "REALLOCATE",
    [SG_ACT_ALERT] = "ALERT",
};

/* Never NULL, so that a corrupt value still prints in a log line. */
const char *sg_event_type_name(sg_event_type_t t)
{
        if (t < SG_EV_IMPRESSION || t > SG_EV_CONVERSION)
                return "none";
        return event_type_names[t];
}

sg_event_type_t sg_event_type_parse(const char *s)
{
        int t;

        if (!s)
                return SG_EV_NONE;
        for (t = SG_EV_IMPRESSION; t <= SG_EV_CONVERSION; t++)
                if (!strcmp(s, event_type_names[t]))
                        return (sg_event_type_t)t;
        return SG_EV_NONE;
}

const char *sg_action_name(sg_action_t a)
{
        if ((int)a < 0 || a >= SG_ACT__CNT)
                return "UNKNOWN";
        return action_names[a];
}

int sg_action_parse(const char *s)
{
        int a;

        if (!s)
                return -1;
        for (a = 0; a < SG_ACT__CNT; a++)
                if (!strcmp(s, action_names[a]))
                        return a;
        return -1;
}

/*
 * A zero denominator means "no data", which is not the same as a zero ratio:
 * callers publish null and rules skip the metric rather than trip on it.
 */
static int ratio(double num, int64_t den, double *out)
{
        if (den == 0)
                return 0;
        *out = num / (double)den;
        return 1;
}

int sg_counters_ctr(const sg_counters_t *c, double *out)
{
        return ratio((double)c->clicks, c->impressions, out);
}

int sg_counters_cvr(const sg_counters_t *c, double *out)
{
        return ratio((double)c->conversions, c->clicks, out);
}

int sg_counters_cpa(const sg_counters_t *c, double *out)
{
        return ratio((double)c->spend_micros, c->conversions, out);
}

int sg_counters_cpm(const sg_counters_t *c, double *out)
{
        return ratio(1000.0 * (double)c->spend_micros, c->impressions, out);
}

int sg_counters_roas(const sg_counters_t *c, double *out)
{
        return ratio((double)c->revenue_micros, c->spend_micros, out);
}

int sg_counters_ivt_rate(const sg_counters_t *c, double *out)
{
        return ratio((double)c->invalid_clicks, c->clicks, out);
}
