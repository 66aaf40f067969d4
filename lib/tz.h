/*
 * Account time zones from the system's tz database (TZif files, RFC 8536):
 * where a local day starts in UTC, daylight saving time included. Pure
 * functions over a zone loaded once; no TZ environment, no locks.
 */
#ifndef SG_TZ_H
#define SG_TZ_H

#include <stddef.h>
#include <stdint.h>

typedef struct sg_tz sg_tz_t;

/*
 * Loads an IANA zone ("America/New_York", "UTC") from $TZDIR or
 * /usr/share/zoneinfo. NULL with errstr naming the zone when it is unknown,
 * unreadable or not a TZif file. The caller frees it with sg_tz_destroy().
 */
sg_tz_t *sg_tz_new(const char *name, char *errstr, size_t errstr_size);
void sg_tz_destroy(sg_tz_t *tz); /* accepts NULL */

/* The zone's offset from UTC (ms, east positive) at the instant utc_ms. */
int64_t sg_tz_offset_ms(const sg_tz_t *tz, int64_t utc_ms);

/*
 * The first instant (UTC ms) of the local day holding ts_ms: local
 * midnight, or, where the clocks jump over midnight, the instant they
 * jump. A day is 23 or 25 hours long across a DST change.
 */
int64_t sg_tz_day_start(const sg_tz_t *tz, int64_t ts_ms);

#endif
