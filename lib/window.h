/*
 * Event-time arithmetic: buckets and windows as half-open [start, end)
 * intervals of ms since the epoch, floor-aligned to their width.
 */
#ifndef SG_WINDOW_H
#define SG_WINDOW_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

#define SG_MAX_WINDOWS 8

/* A named rolling window: "1m", "5m", "1h", "today" (len_ms 0: from the
 * start of the account-time-zone day). */
typedef struct sg_window_def {
        char name[SG_WINDOW_LEN];
        int64_t len_ms;
} sg_window_def_t;

/*
 * Parses a comma-separated list of windows: "<n>s", "<n>m", "<n>h", "<n>d"
 * (n > 0) or "today", each at most once. With unit_ms > 0 every length
 * must be a multiple of it. Returns the count, or -1 with errstr set.
 */
int sg_window_parse_list(const char *list, sg_window_def_t *out, int max,
                         int64_t unit_ms, char *errstr, size_t errstr_size);

/*
 * The windows of list (comma-separated, as sg_window_parse_list reads them;
 * "" = none) as a bit mask over wins[0..cnt): bit i for wins[i], matched by
 * length. -1 with errstr set when one is not among wins (or cnt < 0).
 */
int sg_window_mask(const char *list, const sg_window_def_t *wins, int cnt,
                   char *errstr, size_t errstr_size);

/* The name of a length: 60000 -> "1m", 90000 -> "90s", 86400000 -> "1d". */
void sg_window_name(int64_t ms, char *buf, size_t size);

/* Start of the width_ms-wide interval holding t (floor, also for t < 0). */
int64_t sg_window_floor(int64_t t, int64_t width_ms);

/*
 * 1 if an event at t falls in a window already closed by watermark wm, i.e.
 * the end of its width_ms window is at or before wm.
 */
int sg_window_is_closed(int64_t t, int64_t width_ms, int64_t wm);

#endif
