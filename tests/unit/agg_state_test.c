/*
 * aggregate's in-memory state (aggregate/state.c): counters, windows,
 * snapshots and final windows, the frequency cap, click-to-conversion
 * times, sources, scope bounds and eviction, without Kafka or Redis.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "checkpoint.h"
#include "state.h"

#define T0 1700000000000LL /* a multiple of 10 s */

static ag_model_t model;
static sg_snapshot_t got[4096];
static int ngot;

static int collect(void *opaque, const sg_snapshot_t *s)
{
        (void)opaque;
        cr_assert_lt(ngot, 4096);
        got[ngot++] = *s;
        return 0;
}

static void setup_model(int max_sources, int max_scopes)
{
        char err[256];

        ngot = 0;
        cr_assert_eq(ag_model_init(&model, 1, "10s", 1, 10, 0, 3, 3600, 7200,
                                   max_sources, max_scopes, 1000, err,
                                   sizeof(err)),
                     0, "%s", err);
}

static sg_event_t event(sg_event_type_t type, const char *id, int64_t t,
                        const char *channel, const char *campaign)
{
        sg_event_t ev;

        memset(&ev, 0, sizeof(ev));
        ev.type = type;
        snprintf(ev.event_id, sizeof(ev.event_id), "%s", id);
        ev.event_time = t;
        snprintf(ev.channel, sizeof(ev.channel), "%s", channel);
        snprintf(ev.campaign_id, sizeof(ev.campaign_id), "%s", campaign);
        if (type != SG_EV_CONVERSION)
                ev.cost_micros = 1000;
        else
                ev.revenue_micros = 5000;
        return ev;
}

static void with_device(sg_event_t *ev, const char *dev, const char *ip)
{
        ev->has_device_id = 1;
        snprintf(ev->device_id, sizeof(ev->device_id), "%s", dev);
        ev->has_ip = 1;
        snprintf(ev->ip, sizeof(ev->ip), "%s", ip);
}

/* The snapshot of scope (channel, campaign) ending at end, final or not. */
static const sg_snapshot_t *find(const char *channel, const char *campaign,
                                 int64_t end, int final)
{
        for (int i = 0; i < ngot; i++)
                if (!strcmp(got[i].channel, channel) &&
                    !strcmp(got[i].campaign_id, campaign) &&
                    got[i].window_end == end && got[i].final == final)
                        return &got[i];
        return NULL;
}

Test(agg_state, counters_windows_and_finals_are_exact)
{
        ag_part_t *p;
        const sg_snapshot_t *s;

        setup_model(1000, 100);
        p = ag_part_new(&model, 0);
        for (int i = 0; i < 10; i++) {
                char id[16];
                sg_event_t ev;

                snprintf(id, sizeof(id), "i%d", i);
                ev = event(SG_EV_IMPRESSION, id, T0 + i * 500, "social", "k1");
                with_device(&ev, i % 2 ? "d1" : "d2", "1.1.1.1");
                if (i == 3)
                        ev.ivt_mask = SG_IVT_BOT_UA;
                cr_assert_eq(ag_part_apply(p, &ev), 0);
        }
        {
                sg_event_t c = event(SG_EV_CLICK, "c1", T0 + 2000, "social",
                                     "k1");
                sg_event_t v = event(SG_EV_CONVERSION, "v1", T0 + 6000,
                                     "social", "k1");
                sg_event_t v2 = event(SG_EV_CONVERSION, "v2", T0 + 7000,
                                      "social", "k1");

                with_device(&c, "d1", "2.2.2.2");
                v.has_ref_id = 1;
                snprintf(v.ref_id, sizeof(v.ref_id), "c1");
                v2.has_ref_id = 1;
                snprintf(v2.ref_id, sizeof(v2.ref_id), "nope");
                cr_assert_eq(ag_part_apply(p, &c), 0);
                cr_assert_eq(ag_part_apply(p, &v), 0);
                cr_assert_eq(ag_part_apply(p, &v2), 0);
        }
        /* Watermark at T0 + 10 s: the 10 s window [T0, T0+10s) and the KPI
         * window of the same range are complete. */
        cr_assert_gt(ag_part_emit(p, T0 + 10000, collect, NULL), 0);
        s = find("social", "", T0 + 10000, 0);
        cr_assert_not_null(s);
        cr_assert_str_eq(s->window, "10s");
        cr_assert_eq(s->window_start, T0);
        cr_assert_eq(s->c.impressions, 10);
        cr_assert_eq(s->c.clicks, 1);
        cr_assert_eq(s->c.conversions, 2);
        cr_assert_eq(s->c.spend_micros, 11000);
        cr_assert_eq(s->c.revenue_micros, 10000);
        cr_assert_eq(s->c.invalid_impressions, 1);
        cr_assert_eq(s->c.invalid_spend_micros, 1000);
        cr_assert_eq(s->x.ivt_bot_ua, 1);
        /* d1 had 5 impressions, d2 5: 2 over the cap of 3 each. */
        cr_assert_eq(s->x.freq_cap_impressions, 4);
        cr_assert_eq(s->x.ctc_lt_10s, 1);
        cr_assert_eq(s->x.conversions_no_click, 1);
        cr_assert_eq(s->c.unique_devices, 2);
        cr_assert_eq(s->x.unique_ips, 2);
        cr_assert_eq(s->top_cnt, 2);
        cr_assert_str_eq(s->top[0].source, "ip:2.2.2.2");
        cr_assert_str_eq(s->top[1].source, "device:d1");
        cr_assert_eq(s->top[0].clicks, 1);
        s = find("social", "k1", T0 + 10000, 1);
        cr_assert_not_null(s, "the KPI window is final");
        cr_assert_str_eq(s->window, "10s");
        cr_assert_eq(s->c.impressions, 10);
        cr_assert_eq(s->x.freq_cap_impressions, 4);
        cr_assert_eq(s->top_cnt, 0);
        /* Each snapshot and each final once. */
        ngot = 0;
        cr_assert_eq(ag_part_emit(p, T0 + 10000, collect, NULL), 0);
        cr_assert_eq(ngot, 0);
        ag_part_destroy(p);
}

Test(agg_state, every_step_is_snapshotted_once_and_late_events_reach_the_sums)
{
        ag_part_t *p;
        sg_event_t ev;
        const sg_snapshot_t *s;

        setup_model(1000, 100);
        p = ag_part_new(&model, 0);
        ev = event(SG_EV_CLICK, "a", T0 + 500, "search", "k");
        cr_assert_eq(ag_part_apply(p, &ev), 0);
        cr_assert_eq(ag_part_emit(p, T0 + 3000, collect, NULL), 6);
        /* Steps T0+1s, 2s, 3s, for the channel and the campaign scope. */
        for (int k = 1; k <= 3; k++) {
                s = find("search", "", T0 + k * 1000, 0);
                cr_assert_not_null(s);
                cr_assert_eq(s->c.clicks, 1);
        }
        /* A late event within the lateness, in a bucket the window already
         * covers: the next step counts it. */
        ev = event(SG_EV_CLICK, "b", T0 + 1500, "search", "k");
        cr_assert_eq(ag_part_apply(p, &ev), 0);
        ngot = 0;
        cr_assert_eq(ag_part_emit(p, T0 + 4000, collect, NULL), 2);
        s = find("search", "k", T0 + 4000, 0);
        cr_assert_not_null(s);
        cr_assert_eq(s->c.clicks, 2);
        cr_assert_eq(s->window_start, T0 + 4000 - 10000);
        /* After the window moved past both events (T0 + 12 s). */
        ngot = 0;
        ag_part_emit(p, T0 + 12000, collect, NULL);
        s = find("search", "k", T0 + 12000, 0);
        cr_assert_not_null(s);
        cr_assert_eq(s->c.clicks, 0);
        s = find("search", "k", T0 + 11000, 0);
        cr_assert_not_null(s);
        cr_assert_eq(s->c.clicks, 1, "[T0+1s, T0+11s) holds b only");
        ag_part_destroy(p);
}

Test(agg_state, sources_past_the_cap_are_untracked)
{
        ag_part_t *p;
        const sg_snapshot_t *s;
        char id[32], ip[32];

        setup_model(10, 100);
        p = ag_part_new(&model, 0);
        /* 12 IPs: ip 0 clicks 5 times, the others once; devices none. */
        for (int i = 0; i < 16; i++) {
                sg_event_t ev;

                snprintf(id, sizeof(id), "c%d", i);
                snprintf(ip, sizeof(ip), "10.0.0.%d", i < 5 ? 0 : i - 4);
                ev = event(SG_EV_CLICK, id, T0 + 100, "kol", "k");
                ev.has_ip = 1;
                snprintf(ev.ip, sizeof(ev.ip), "%s", ip);
                cr_assert_eq(ag_part_apply(p, &ev), 0);
        }
        ag_part_emit(p, T0 + 1000, collect, NULL);
        s = find("kol", "", T0 + 1000, 0);
        cr_assert_not_null(s);
        cr_assert_eq(s->c.clicks, 16);
        /* 12 sources, 10 kept: the two lightest by name (10.0.0.1 and
         * 10.0.0.10) dropped, 1 click each. */
        cr_assert_eq(s->x.source_clicks_untracked, 2);
        cr_assert_str_eq(s->top[0].source, "ip:10.0.0.0");
        cr_assert_eq(s->top[0].clicks, 5);
        cr_assert_str_eq(s->top[1].source, "ip:10.0.0.9");
        ag_part_destroy(p);
}

Test(agg_state, scopes_past_the_bound_count_as_other)
{
        ag_part_t *p;
        char ch[16];

        setup_model(10, 10);
        p = ag_part_new(&model, 0);
        for (int i = 0; i < 8; i++) {
                sg_event_t ev;

                snprintf(ch, sizeof(ch), "ch%d", i);
                ev = event(SG_EV_IMPRESSION, "x", T0, ch, "k");
                cr_assert_eq(ag_part_apply(p, &ev), 0);
        }
        /* 10 scopes: ch0..ch4 with their campaigns; ch5 on are _other. */
        cr_assert_not_null(ag_part_scope(p, "ch4|k", 0));
        cr_assert_null(ag_part_scope(p, "ch5|", 0));
        cr_assert_not_null(ag_part_scope(p, "_other|", 0));
        cr_assert_not_null(ag_part_scope(p, "_other|_other", 0));
        cr_assert_eq(p->overflow, 6);
        ag_part_emit(p, T0 + 1000, collect, NULL);
        cr_assert_eq(find("_other", "", T0 + 1000, 0)->c.impressions, 3);
        ag_part_destroy(p);
}

Test(agg_state, memory_stays_bounded_as_the_watermark_moves)
{
        ag_part_t *p;
        size_t at_100 = 0;
        char dev[32], id[32];

        setup_model(1000, 100);
        p = ag_part_new(&model, 0);
        /* 400 s of 50 events a second on 4 campaigns, 1,000 devices. */
        for (int sec = 0; sec < 400; sec++) {
                for (int i = 0; i < 50; i++) {
                        sg_event_t ev;
                        int n = sec * 50 + i;

                        snprintf(id, sizeof(id), "c%d", n);
                        snprintf(dev, sizeof(dev), "d%d", n % 1000);
                        ev = event(i % 10 ? SG_EV_IMPRESSION : SG_EV_CLICK, id,
                                   T0 + sec * 1000 + i * 20, "social",
                                   i % 4 ? "a" : "b");
                        with_device(&ev, dev, dev);
                        cr_assert_eq(ag_part_apply(p, &ev), 0);
                }
                ngot = 0;
                ag_part_emit(p, T0 + sec * 1000, collect, NULL);
                ag_part_clean(p);
                ag_part_evict(p, T0 + sec * 1000);
                if (sec == 100)
                        at_100 = ag_part_memory(p);
        }
        /* Cells are kept for the windows a snapshot can still ask for
         * (60 steps + the 10 s window + the KPI window): flat. */
        cr_assert_lt(ag_part_memory(p), at_100 * 5 / 4, "%zu vs %zu",
                     ag_part_memory(p), at_100);
        cr_assert_lt(p->slots ? (int)ag_part_scope(p, "social|", 0)->lv[0].cnt
                              : 0,
                     100);
        ag_part_destroy(p);
}

/* F19e: a scope that gets no events still gets its snapshots at every
 * step the watermark passes (before, only on idle ticks, which never came
 * under continuous traffic). */
Test(agg_state, untouched_scopes_are_snapshotted_at_every_step)
{
        ag_part_t *p;

        setup_model(1000, 100);
        p = ag_part_new(&model, 0);
        {
                sg_event_t a = event(SG_EV_CLICK, "a", T0, "quiet", "k");
                cr_assert_eq(ag_part_apply(p, &a), 0);
        }
        for (int sec = 1; sec <= 20; sec++) {
                sg_event_t b = event(SG_EV_CLICK, "b", T0 + sec * 1000,
                                     "busy", "k");

                cr_assert_eq(ag_part_apply(p, &b), 0);
                ngot = 0;
                ag_part_emit(p, T0 + sec * 1000, collect, NULL);
                ag_part_clean(p);
                ag_part_evict(p, T0 + sec * 1000);
                cr_assert_not_null(find("quiet", "", T0 + sec * 1000, 0),
                                   "no snapshot of quiet at step %d", sec);
                cr_assert_eq(find("quiet", "", T0 + sec * 1000, 0)->c.clicks,
                             sec <= 10 ? 1 : 0);
        }
        ag_part_destroy(p);
}

/* The table of input partitions (checkpoint.c) grows past its first
 * capacity of 64: every name keeps its index (ASan caught the rehash
 * reading the names from the block realloc had freed). */
Test(agg_state, running_windows_follow_the_newest_event_held_to_the_clock)
{
        int64_t now = T0 + 3000;
        const sg_snapshot_t *s;
        ag_part_t *p;
        sg_event_t ev;

        setup_model(1000, 100);
        p = ag_part_new(&model, 0);
        ev = event(SG_EV_CLICK, "a", T0 + 2500, "search", "k");
        cr_assert_eq(ag_part_apply(p, &ev), 0);
        /* The step after the newest event, T0 + 3 s, for both scopes,
         * with what was applied so far; the watermark is behind it. */
        cr_assert_eq(ag_part_emit_running(p, T0, now, 40000, 1, collect, NULL),
                     2);
        s = find("search", "", T0 + 3000, 0);
        cr_assert_not_null(s);
        cr_assert_eq(s->c.clicks, 1);
        cr_assert_eq(s->window_start, T0 + 3000 - 10000);
        cr_assert_eq(s->watermark, T0);
        cr_assert(sg_snapshot_running(s));
        /* Nothing changed since: nothing sent. */
        ngot = 0;
        cr_assert_eq(ag_part_emit_running(p, T0, now, 40000, 1, collect, NULL),
                     0);
        /* A step the watermark completed is the complete snapshots'. */
        ev = event(SG_EV_CLICK, "c", T0 + 2600, "search", "k");
        cr_assert_eq(ag_part_apply(p, &ev), 0);
        cr_assert_eq(ag_part_emit_running(p, T0 + 3000, now, 40000, 1, collect,
                                          NULL),
                     0);
        /* Old records (a replay): complete windows only. */
        cr_assert_eq(ag_part_emit_running(p, T0, now + 60000, 40000, 1,
                                          collect, NULL),
                     0);
        cr_assert_eq(ngot, 0);
        /* An event stamped 4 minutes ahead is counted in its own bucket,
         * but the running window stops at the clock: it is not in it. */
        ev = event(SG_EV_CLICK, "b", now + 240000, "search", "k");
        cr_assert_eq(ag_part_apply(p, &ev), 0);
        cr_assert_eq(ag_part_emit_running(p, T0, now, 40000, 1, collect, NULL),
                     2);
        s = find("search", "k", T0 + 4000, 0);
        cr_assert_not_null(s);
        cr_assert_eq(s->c.clicks, 2);
        ngot = 0;
        /* No window asked for: nothing. */
        cr_assert_eq(ag_part_emit_running(p, T0, now, 40000, 0, collect, NULL),
                     0);
        cr_assert_eq(ngot, 0);
        ag_part_destroy(p);
}

Test(agg_inputs, names_keep_their_index_as_the_table_grows)
{
        ag_inputs_t a = {0};
        char name[64];

        for (int i = 0; i < 300; i++) {
                snprintf(name, sizeof(name), "sg.events-input-%d", i);
                cr_assert_eq(ag_inputs_add(&a, name), i);
        }
        cr_assert_eq(a.cnt, 300);
        for (int i = 0; i < 300; i++) {
                snprintf(name, sizeof(name), "sg.events-input-%d", i);
                cr_assert_eq(ag_inputs_add(&a, name), i);
                cr_assert_str_eq(a.name[i], name);
        }
        cr_assert_eq(a.cnt, 300);
        ag_inputs_fini(&a);
}
