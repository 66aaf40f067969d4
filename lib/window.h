/*
 * Event-time arithmetic: buckets and windows as half-open [start, end)
 * intervals of ms since the epoch, floor-aligned to their width.
 */
#ifndef SG_WINDOW_H
#define SG_WINDOW_H

#include <stdint.h>

/* Start of the width_ms-wide interval holding t (floor, also for t < 0). */
int64_t sg_window_floor(int64_t t, int64_t width_ms);

/*
 * The stage watermark: the minimum over the partitions that have seen data
 * of (max event time - lateness); INT64_MIN when none has.
 */
int64_t sg_watermark(const int64_t *max_event_time, int cnt,
                     int64_t lateness_ms);

/*
 * 1 if an event at t falls in a window already closed by watermark wm, i.e.
 * the end of its width_ms window is at or before wm.
 */
int sg_window_is_closed(int64_t t, int64_t width_ms, int64_t wm);

#endif
