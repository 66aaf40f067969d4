#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "dedupe.h"

#define T0 1700000000000LL /* an event time in 2023 */
#define H  SG_DEDUPE_HORIZON_MS_DEFAULT
#define I  SG_DUPCLICK_INTERVAL_MS_DEFAULT

static sg_dedupe_t *dedupe(size_t max, int64_t horizon)
{
        char err[256] = "";
        sg_dedupe_t *d = sg_dedupe_new(max, horizon, err, sizeof(err));

        cr_assert_not_null(d, "%s", err);
        return d;
}

static sg_dupclick_t *dupclick(size_t max, int64_t interval)
{
        char err[256] = "";
        sg_dupclick_t *d = sg_dupclick_new(max, interval, err, sizeof(err));

        cr_assert_not_null(d, "%s", err);
        return d;
}

static void expect_stats(const sg_dedupe_stats_t *st, size_t entries,
                         uint64_t checked, uint64_t hits, uint64_t expired,
                         uint64_t evicted_early, uint64_t beyond)
{
        cr_expect_eq(st->entries, entries, "entries %zu", st->entries);
        cr_expect_eq(st->checked, checked, "checked %lu",
                     (unsigned long)st->checked);
        cr_expect_eq(st->hits, hits, "hits %lu", (unsigned long)st->hits);
        cr_expect_eq(st->expired, expired, "expired %lu",
                     (unsigned long)st->expired);
        cr_expect_eq(st->evicted_early, evicted_early, "evicted_early %lu",
                     (unsigned long)st->evicted_early);
        cr_expect_eq(st->beyond_horizon, beyond, "beyond_horizon %lu",
                     (unsigned long)st->beyond_horizon);
}

/* ------------------------------------------------------- event_id dedupe */

Test(dedupe, detects_a_repeated_event_id_within_the_horizon)
{
        sg_dedupe_t *d = dedupe(16, H);
        sg_dedupe_stats_t st;

        cr_assert_eq(sg_dedupe_check(d, "e1", T0), 0);
        cr_assert_eq(sg_dedupe_check(d, "e2", T0), 0);
        cr_assert_eq(sg_dedupe_check(d, "e1", T0), 1);
        /* Still held when newest is exactly one horizon later. */
        cr_assert_eq(sg_dedupe_check(d, "e3", T0 + H), 0);
        cr_assert_eq(sg_dedupe_check(d, "e1", T0), 1);
        sg_dedupe_stats(d, &st);
        expect_stats(&st, 3, 5, 2, 0, 0, 0);
        cr_assert_eq(st.capacity, 16);
        sg_dedupe_destroy(d);
}

Test(dedupe, forgets_an_event_id_once_newest_passes_its_horizon)
{
        sg_dedupe_t *d = dedupe(16, H);
        sg_dedupe_stats_t st;

        cr_assert_eq(sg_dedupe_check(d, "e1", T0), 0);
        cr_assert_eq(sg_dedupe_check(d, "e2", T0 + H + 1), 0);
        /* Same id, a time inside the new horizon: a new event again. */
        cr_assert_eq(sg_dedupe_check(d, "e1", T0 + H + 1), 0);
        cr_assert_eq(sg_dedupe_check(d, "e1", T0 + H + 1), 1);
        sg_dedupe_stats(d, &st);
        expect_stats(&st, 2, 4, 1, 1, 0, 0);
        sg_dedupe_destroy(d);
}

Test(dedupe, does_not_check_or_remember_events_beyond_the_horizon)
{
        sg_dedupe_t *d = dedupe(16, H);
        sg_dedupe_stats_t st;

        cr_assert_eq(sg_dedupe_check(d, "new", T0), 0);
        cr_assert_eq(sg_dedupe_check(d, "old", T0 - H - 1), 0);
        cr_assert_eq(sg_dedupe_check(d, "old", T0 - H - 1), 0);
        /* Exactly at newest - horizon is still checked. */
        cr_assert_eq(sg_dedupe_check(d, "edge", T0 - H), 0);
        cr_assert_eq(sg_dedupe_check(d, "edge", T0 - H), 1);
        sg_dedupe_stats(d, &st);
        expect_stats(&st, 2, 5, 1, 0, 0, 2);
        sg_dedupe_destroy(d);
}

Test(dedupe, evicts_the_oldest_id_early_when_full_and_misses_its_duplicate)
{
        sg_dedupe_t *d = dedupe(3, H);
        sg_dedupe_stats_t st;

        cr_assert_eq(sg_dedupe_check(d, "a", T0 + 1), 0);
        cr_assert_eq(sg_dedupe_check(d, "b", T0 + 2), 0);
        cr_assert_eq(sg_dedupe_check(d, "c", T0 + 3), 0);
        cr_assert_eq(sg_dedupe_check(d, "d", T0 + 4), 0); /* evicts a */
        sg_dedupe_stats(d, &st);
        expect_stats(&st, 3, 4, 0, 0, 1, 0);
        /* The documented miss: a's duplicate passes, and evicts b. */
        cr_assert_eq(sg_dedupe_check(d, "a", T0 + 1), 0);
        cr_assert_eq(sg_dedupe_check(d, "b", T0 + 2), 0); /* evicts c */
        cr_assert_eq(sg_dedupe_check(d, "d", T0 + 4), 1);
        sg_dedupe_stats(d, &st);
        expect_stats(&st, 3, 7, 1, 0, 3, 0);
        sg_dedupe_destroy(d);
}

Test(dedupe, expires_before_evicting_when_the_horizon_frees_room)
{
        sg_dedupe_t *d = dedupe(2, 1000);
        sg_dedupe_stats_t st;

        cr_assert_eq(sg_dedupe_check(d, "a", T0), 0);
        cr_assert_eq(sg_dedupe_check(d, "b", T0 + 500), 0);
        cr_assert_eq(sg_dedupe_check(d, "c", T0 + 1001), 0); /* a expires */
        cr_assert_eq(sg_dedupe_check(d, "b", T0 + 500), 1);
        sg_dedupe_stats(d, &st);
        expect_stats(&st, 2, 4, 1, 1, 0, 0);
        sg_dedupe_destroy(d);
}

Test(dedupe, reset_forgets_ids_and_newest_but_keeps_counters)
{
        sg_dedupe_t *d = dedupe(8, H);
        sg_dedupe_stats_t st;

        cr_assert_eq(sg_dedupe_check(d, "a", T0), 0);
        cr_assert_eq(sg_dedupe_check(d, "a", T0), 1);
        sg_dedupe_reset(d);
        sg_dedupe_stats(d, &st);
        expect_stats(&st, 0, 2, 1, 0, 0, 0);
        /* newest was forgotten too: an old time is not beyond the horizon */
        cr_assert_eq(sg_dedupe_check(d, "b", T0 - 10 * H), 0);
        cr_assert_eq(sg_dedupe_check(d, "a", T0), 0); /* b expires */
        sg_dedupe_stats(d, &st);
        expect_stats(&st, 1, 4, 1, 1, 0, 0);
        sg_dedupe_reset(NULL);
        sg_dedupe_destroy(d);
}

Test(dedupe, ignores_missing_event_ids)
{
        sg_dedupe_t *d = dedupe(8, H);
        sg_dedupe_stats_t st;

        cr_assert_eq(sg_dedupe_check(d, NULL, T0), 0);
        cr_assert_eq(sg_dedupe_check(d, "", T0), 0);
        cr_assert_eq(sg_dedupe_check(d, "", T0), 0);
        sg_dedupe_stats(d, &st);
        expect_stats(&st, 0, 0, 0, 0, 0, 0);
        sg_dedupe_destroy(d);
}

Test(dedupe, survives_hostile_event_times_without_overflow)
{
        sg_dedupe_t *d = dedupe(8, H);

        cr_assert_eq(sg_dedupe_check(d, "a", INT64_MIN), 0);
        cr_assert_eq(sg_dedupe_check(d, "a", INT64_MIN), 1);
        cr_assert_eq(sg_dedupe_check(d, "b", INT64_MAX), 0);
        cr_assert_eq(sg_dedupe_check(d, "b", INT64_MAX), 1);
        cr_assert_eq(sg_dedupe_check(d, "a", INT64_MIN), 0); /* beyond */
        sg_dedupe_destroy(d);
}

Test(dedupe, rejects_bad_sizes_with_a_message)
{
        char err[256];

        cr_assert_null(sg_dedupe_new(0, H, err, sizeof(err)));
        cr_assert_str_eq(err, "dedupe max_entries must be between 1 and "
                              "1073741824 (got 0)");
        cr_assert_null(
            sg_dedupe_new(SG_DEDUPE_MAX_ENTRIES + 1, H, err, sizeof(err)));
        cr_assert_str_eq(err, "dedupe max_entries must be between 1 and "
                              "1073741824 (got 1073741825)");
        cr_assert_null(sg_dedupe_new(8, 0, err, sizeof(err)));
        cr_assert_str_eq(err, "dedupe horizon must be positive (got 0 ms)");
        cr_assert_null(sg_dupclick_new(8, -5, err, sizeof(err)));
        cr_assert_str_eq(err,
                         "dup-click interval must be positive (got -5 ms)");
        cr_assert_null(sg_dupclick_new(0, I, err, sizeof(err)));
        cr_assert_str_eq(err, "dup-click max_pairs must be between 1 and "
                              "1073741824 (got 0)");
        sg_dedupe_destroy(NULL);
        sg_dupclick_destroy(NULL);
}

Test(dedupe, states_its_memory_bound_per_entry)
{
        /* 32 bytes per entry, plus table slots (4 bytes) at load <= 1/2. */
        cr_assert_eq(sg_dedupe_bytes(1024) - sg_dedupe_bytes(512),
                     512 * 32 + 1024 * 4);
        cr_assert_eq(sg_dedupe_bytes(1u << 20) - sg_dedupe_bytes(1u << 19),
                     (1u << 19) * 32 + (1u << 20) * 4);
        cr_assert_eq(sg_dedupe_bytes(0), 0);
        cr_assert_eq(sg_dedupe_bytes(SG_DEDUPE_MAX_ENTRIES + 1), 0);
}

/* A straightforward model of the documented semantics: FIFO of ids with
 * their times, expiry from the front, eviction of the front when full. */
#define MODEL_MAX 64
static struct {
        int id[MODEL_MAX];
        int64_t t[MODEL_MAX];
        int n;
        int64_t newest;
        sg_dedupe_stats_t st;
} m;

static void model_pop(void)
{
        memmove(m.id, m.id + 1, (size_t)(m.n - 1) * sizeof(m.id[0]));
        memmove(m.t, m.t + 1, (size_t)(m.n - 1) * sizeof(m.t[0]));
        m.n--;
}

static int model_check(int id, int64_t t, int64_t horizon)
{
        m.st.checked++;
        if (t > m.newest)
                m.newest = t;
        if (t < m.newest - horizon) {
                m.st.beyond_horizon++;
                return 0;
        }
        while (m.n && m.t[0] < m.newest - horizon) {
                model_pop();
                m.st.expired++;
        }
        for (int i = 0; i < m.n; i++)
                if (m.id[i] == id) {
                        m.st.hits++;
                        return 1;
                }
        if (m.n == MODEL_MAX) {
                model_pop();
                m.st.evicted_early++;
        }
        m.id[m.n] = id;
        m.t[m.n++] = t;
        return 0;
}

Test(dedupe, agrees_with_a_simple_model_under_churn_and_disorder)
{
        sg_dedupe_t *d = dedupe(MODEL_MAX, 400);
        sg_dedupe_stats_t st;
        uint64_t x = 88172645463325252ULL;
        int64_t now = T0;
        char id[32];

        memset(&m, 0, sizeof(m));
        m.newest = INT64_MIN;
        for (int i = 0; i < 200000; i++) {
                int k;
                int64_t t;

                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                k = (int)(x % 300);
                now += (int64_t)(x >> 20) % 5;
                t = now - (int64_t)((x >> 40) % 500); /* up to 500 ms late */
                snprintf(id, sizeof(id), "ev-%d", k);
                cr_assert_eq(sg_dedupe_check(d, id, t), model_check(k, t, 400),
                             "step %d id %s", i, id);
        }
        sg_dedupe_stats(d, &st);
        expect_stats(&st, (size_t)m.n, m.st.checked, m.st.hits, m.st.expired,
                     m.st.evicted_early, m.st.beyond_horizon);
        /* The run must have exercised every path. */
        cr_assert_gt(m.st.hits, 0);
        cr_assert_gt(m.st.expired, 0);
        cr_assert_gt(m.st.evicted_early, 0);
        cr_assert_gt(m.st.beyond_horizon, 0);
        sg_dedupe_destroy(d);
}

/* ------------------------------------------------------ duplicate clicks */

Test(dupclick, flags_a_second_click_of_the_pair_within_the_interval)
{
        sg_dupclick_t *d = dupclick(16, I);
        sg_dedupe_stats_t st;

        cr_assert_eq(sg_dupclick_check(d, "dev1", "ad1", T0), 0);
        cr_assert_eq(sg_dupclick_check(d, "dev1", "ad1", T0 + I), 1);
        /* Compared with the latest click (T0 + I), not the first. */
        cr_assert_eq(sg_dupclick_check(d, "dev1", "ad1", T0 + 2 * I), 1);
        cr_assert_eq(sg_dupclick_check(d, "dev1", "ad1", T0 + 3 * I + 1), 0);
        sg_dupclick_stats(d, &st);
        expect_stats(&st, 1, 4, 2, 0, 0, 0);
        sg_dupclick_destroy(d);
}

Test(dupclick, flags_a_click_arriving_late_within_the_interval)
{
        sg_dupclick_t *d = dupclick(16, I);

        cr_assert_eq(sg_dupclick_check(d, "dev1", "ad1", T0 + 20000), 0);
        cr_assert_eq(sg_dupclick_check(d, "dev1", "ad1", T0), 1);
        cr_assert_eq(sg_dupclick_check(d, "dev2", "ad1", T0 + 25000), 0);
        cr_assert_eq(sg_dupclick_check(d, "dev2", "ad1", T0 - 4999), 1);
        sg_dupclick_destroy(d);
}

Test(dupclick, does_not_flag_other_ads_other_devices_or_joined_strings)
{
        sg_dupclick_t *d = dupclick(16, I);
        sg_dedupe_stats_t st;

        cr_assert_eq(sg_dupclick_check(d, "dev1", "ad1", T0), 0);
        cr_assert_eq(sg_dupclick_check(d, "dev1", "ad2", T0), 0);
        cr_assert_eq(sg_dupclick_check(d, "dev2", "ad1", T0), 0);
        cr_assert_eq(sg_dupclick_check(d, "ab", "c", T0), 0);
        cr_assert_eq(sg_dupclick_check(d, "a", "bc", T0), 0);
        sg_dupclick_stats(d, &st);
        expect_stats(&st, 5, 5, 0, 0, 0, 0);
        sg_dupclick_destroy(d);
}

Test(dupclick, never_flags_clicks_without_device_or_ad)
{
        sg_dupclick_t *d = dupclick(16, I);
        sg_dedupe_stats_t st;

        for (int i = 0; i < 2; i++) {
                cr_assert_eq(sg_dupclick_check(d, NULL, "ad1", T0), 0);
                cr_assert_eq(sg_dupclick_check(d, "", "ad1", T0), 0);
                cr_assert_eq(sg_dupclick_check(d, "dev1", NULL, T0), 0);
                cr_assert_eq(sg_dupclick_check(d, "dev1", "", T0), 0);
        }
        sg_dupclick_stats(d, &st);
        expect_stats(&st, 0, 0, 0, 0, 0, 0);
        sg_dupclick_destroy(d);
}

Test(dupclick, evicts_the_least_recently_clicked_pair_when_full)
{
        sg_dupclick_t *d = dupclick(2, I);
        sg_dedupe_stats_t st;

        cr_assert_eq(sg_dupclick_check(d, "p1", "ad", T0), 0);
        cr_assert_eq(sg_dupclick_check(d, "p2", "ad", T0 + 1), 0);
        cr_assert_eq(sg_dupclick_check(d, "p1", "ad", T0 + 2), 1);
        cr_assert_eq(sg_dupclick_check(d, "p3", "ad", T0 + 3), 0); /* -p2 */
        cr_assert_eq(sg_dupclick_check(d, "p1", "ad", T0 + 4), 1);
        cr_assert_eq(sg_dupclick_check(d, "p2", "ad", T0 + 5), 0); /* -p3 */
        sg_dupclick_stats(d, &st);
        expect_stats(&st, 2, 6, 2, 0, 2, 0);
        sg_dupclick_destroy(d);
}

Test(dupclick, keeps_pairs_two_intervals_and_skips_older_clicks)
{
        sg_dupclick_t *d = dupclick(16, I);
        sg_dedupe_stats_t st;

        cr_assert_eq(sg_dupclick_check(d, "dev1", "ad1", T0), 0);
        cr_assert_eq(sg_dupclick_check(d, "dev2", "ad2", T0 + 2 * I), 0);
        sg_dupclick_stats(d, &st);
        expect_stats(&st, 2, 2, 0, 0, 0, 0);
        cr_assert_eq(sg_dupclick_check(d, "dev3", "ad3", T0 + 2 * I + 1), 0);
        sg_dupclick_stats(d, &st);
        expect_stats(&st, 2, 3, 0, 1, 0, 0);
        /* Older than newest - interval: not checked, not remembered. */
        cr_assert_eq(sg_dupclick_check(d, "dev4", "ad4", T0 + I), 0);
        cr_assert_eq(sg_dupclick_check(d, "dev4", "ad4", T0 + I), 0);
        sg_dupclick_stats(d, &st);
        expect_stats(&st, 2, 5, 0, 1, 0, 2);
        sg_dupclick_reset(d);
        sg_dupclick_stats(d, &st);
        expect_stats(&st, 0, 5, 0, 1, 0, 2);
        cr_assert_eq(sg_dupclick_check(d, "dev4", "ad4", T0 + I), 0);
        cr_assert_eq(sg_dupclick_check(d, "dev4", "ad4", T0 + I), 1);
        sg_dupclick_destroy(d);
}

/*
 * The header's claim: with room enough, a checked click is flagged exactly
 * when some earlier remembered click of its pair is within the interval.
 * Brute force over every remembered click says what the answer must be.
 */
Test(dupclick, is_exact_for_checked_clicks_under_disorder)
{
        enum { N = 20000, PAIRS = 40 };
        static int64_t seen_t[N];
        static int seen_k[N];
        const int64_t iv = 1000;
        sg_dupclick_t *d = dupclick(1024, iv);
        sg_dedupe_stats_t st;
        uint64_t x = 0x9e3779b97f4a7c15ULL, dups = 0, beyond = 0;
        int64_t now = T0, newest = INT64_MIN;
        int n = 0;
        char dev[16], ad[16];

        for (int i = 0; i < N; i++) {
                int k, want = 0;
                int64_t t;

                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                k = (int)(x % PAIRS);
                now += (int64_t)(x >> 24) % 100;
                t = now - (int64_t)((x >> 44) % 1500);
                if (t > newest)
                        newest = t;
                snprintf(dev, sizeof(dev), "d%d", k % 7);
                snprintf(ad, sizeof(ad), "a%d", k);
                if (t < newest - iv) {
                        beyond++;
                } else {
                        for (int j = 0; j < n; j++)
                                if (seen_k[j] == k && t - seen_t[j] <= iv &&
                                    seen_t[j] - t <= iv)
                                        want = 1;
                        seen_k[n] = k;
                        seen_t[n++] = t;
                        dups += (uint64_t)want;
                }
                cr_assert_eq(sg_dupclick_check(d, dev, ad, t), want, "step %d",
                             i);
        }
        sg_dupclick_stats(d, &st);
        cr_assert_eq(st.hits, dups);
        cr_assert_eq(st.beyond_horizon, beyond);
        cr_assert_eq(st.evicted_early, 0);
        cr_assert_gt(dups, 0);
        cr_assert_gt(beyond, 0);
        sg_dupclick_destroy(d);
}
