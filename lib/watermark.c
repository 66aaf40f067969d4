/*
 * The watermark of an sg.events partition.
 *
 * Ingest reads input partitions (topic/partition of ad-impressions,
 * ad-clicks, ad-conversions) and routes their events by channel to
 * sg.events partitions: every sg.events partition may hold events of every
 * input, interleaved. An input's events come in roughly event-time order;
 * the watermark W of an sg.events partition claims that no event with an
 * event time before W is still to come on that partition, so windows
 * ending at or before W are final, and an event that still comes is late.
 *
 * Where the progress comes from. After the events of a batch are
 * acknowledged, and periodically, ingest writes to every sg.events
 * partition a marker per input partition it owns: the highest event time
 * it has produced from that input (capped at the wall clock) and whether
 * the input is idle (read to its end, all acknowledged). Because a marker
 * is written after the events it covers are acknowledged, everything
 * before it in the sg.events partition is all that input will ever send
 * there up to that progress, except events that are out of order by up to
 * the allowed lateness. Each sg.events partition thus carries the complete
 * watermark of its own: a reader never needs to compare partitions, which
 * is what made the old watermark (max per input over every partition) run
 * ahead when partitions were read at different speeds (review F1) or by
 * several instances (F7). This is how Flink carries watermarks across a
 * shuffle: every upstream channel broadcasts its watermark downstream, and
 * a downstream task takes the minimum over its channels.
 *
 * The function. An input is one of:
 *  - unseen (no marker yet): nothing is known, it may hold anything: no
 *    watermark;
 *  - not idle, without progress: its events are being read and none is
 *    acknowledged yet: no watermark;
 *  - not idle, with progress t: it holds the watermark at t;
 *  - idle: it has nothing in flight; it does not hold the watermark back
 *    (else one quiet input would stop every window). When it sends again
 *    its next marker says so, and its events are judged against the
 *    watermark the others allowed: they may be late, as in Flink.
 * The watermark is the minimum over the inputs that hold it; when every
 * input is idle, everything produced is acknowledged and read up to the
 * markers: the maximum progress of any input, so that the last windows
 * close once traffic stops. Both minus the allowed lateness.
 *
 * Monotone. A minimum can fall: an idle input turns active with a lower
 * progress, a restarted ingest reports less than before. The caller keeps
 * a floor and never moves the watermark below it (sg_watermark_advance):
 * windows already final stay final. An input's progress is the highest
 * any marker gave it, for the same reason (sg_watermark_observe).
 */
#include "watermark.h"

void sg_watermark_observe(sg_wm_input_t *in, int64_t event_time, int idle)
{
        if (!in->seen || event_time > in->event_time)
                in->event_time = event_time;
        in->idle = idle ? 1 : 0;
        in->seen = 1;
}

int64_t sg_watermark_compute(const sg_wm_input_t *in, int n,
                             int64_t lateness_ms)
{
        int64_t min = INT64_MAX, max = INT64_MIN;
        int holding = 0;

        for (int i = 0; i < n; i++) {
                if (!in[i].seen)
                        return INT64_MIN;
                if (in[i].event_time > max)
                        max = in[i].event_time;
                if (in[i].idle)
                        continue;
                if (in[i].event_time == INT64_MIN)
                        return INT64_MIN;
                if (in[i].event_time < min)
                        min = in[i].event_time;
                holding = 1;
        }
        if (holding)
                max = min;
        if (max == INT64_MIN)
                return INT64_MIN;
        /* No overflow for progress near INT64_MIN. */
        if (lateness_ms > 0 && max < INT64_MIN + lateness_ms)
                return INT64_MIN;
        return max - lateness_ms;
}

int64_t sg_watermark_advance(int64_t floor, int64_t candidate)
{
        return candidate > floor ? candidate : floor;
}
