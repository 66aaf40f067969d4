/*
 * Input validation and list-based invalid-traffic tagging of decoded events:
 * pure functions, no I/O. Reason codes are the stable sg.error values.
 */
#ifndef SG_VALIDATE_H
#define SG_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

#define SG_ERR_FUTURE_TIME "future_time"
#define SG_ERR_OVERSIZE    "oversize"
#define SG_ERR_LATE        "late"
#define SG_ERR_TOO_OLD     "too_old"
#define SG_ERR_DUPLICATE   "duplicate"

typedef struct sg_validate_conf {
        int64_t future_tolerance_ms; /* event_time beyond now + this */
        int64_t max_money_micros;    /* absurd-amount ceiling */
        int64_t too_old_ms;          /* event_time before now - this; 0 = off */
} sg_validate_conf_t;

/*
 * Checks the values of a decoded event: non-empty ids, channel and campaign
 * without '|' or control bytes (the Redis scope separator), money in
 * [0, max_money_micros], a positive event_time not beyond now + tolerance
 * and not before now - too_old_ms, a parsable IPv4/IPv6 address when
 * present. Returns 0, or -1 with *reason (SG_ERR_BAD_VALUE,
 * SG_ERR_FUTURE_TIME or SG_ERR_TOO_OLD) and a detail naming the field.
 */
int sg_validate_event(const sg_event_t *ev, const sg_validate_conf_t *vc,
                      int64_t now_ms, const char **reason, char *detail,
                      size_t detail_size);

/*
 * Normalizes the names that make up a scope: channel and campaign_id are
 * trimmed of white space and lower-cased (ASCII), so " Social" and "social"
 * are one channel.
 */
void sg_validate_normalize(sg_event_t *ev);

#endif
