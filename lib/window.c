#include "window.h"

int64_t sg_window_floor(int64_t t, int64_t width_ms)
{
        int64_t r = t % width_ms;

        return r < 0 ? t - r - width_ms : t - r;
}

int64_t sg_watermark(const int64_t *max_event_time, int cnt,
                     int64_t lateness_ms)
{
        int64_t wm = INT64_MIN;
        int seen = 0;

        for (int i = 0; i < cnt; i++) {
                int64_t w;

                if (max_event_time[i] == INT64_MIN)
                        continue;
                w = max_event_time[i] - lateness_ms;
                if (!seen || w < wm)
                        wm = w;
                seen = 1;
        }
        return wm;
}

int sg_window_is_closed(int64_t t, int64_t width_ms, int64_t wm)
{
        return sg_window_floor(t, width_ms) + width_ms <= wm;
}
