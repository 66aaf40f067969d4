/*
 * The sg-gen scenario: deterministic, and with the ratios the rules are
 * expected to act on (healthy CPA under 1.3 x target and ~2% IVT in every
 * 60 s window; the fraud channel ~60% IVT under the flood; the overrun
 * channel ~2 x target CPA) — so that an integration test can assert exact
 * decisions.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "scenario.h"

#define START_MS   1795000000000LL /* an arbitrary whole second */
#define DURATION_S 180
#define NCH        5

static const sg_channel_conf_t channels[NCH] = {
    {"social", 40000000000LL, 20000000, 0, 0},
    {"search", 30000000000LL, 15000000, 0, 0},
    {"display", 10000000000LL, 25000000, 0, 0},
    {"kol", 10000000000LL, 25000000, 0, 0},
    {"gifts", 5000000000LL, 10000000, 0, 0},
};
enum { SOCIAL, SEARCH, DISPLAY, KOL, GIFTS };

static sg_scenario_opts_t default_opts(void)
{
        sg_scenario_opts_t o = {0};

        o.seed = 1;
        o.start_ms = START_MS;
        o.duration_ms = DURATION_S * 1000;
        o.fraud_start_ms = 20000;
        o.fraud_channel = "kol";
        o.overrun_channel = "gifts";
        return o;
}

static sg_scenario_t *new_scenario(const sg_scenario_opts_t *o)
{
        char errstr[256] = "";
        sg_scenario_t *sc =
            sg_scenario_new(channels, NCH, o, errstr, sizeof(errstr));

        cr_assert_not_null(sc, "%s", errstr);
        return sc;
}

/* Per channel (and campaign) per event-time second. */
typedef struct sec {
        int64_t imps, clicks, convs, spend, inv_clicks;
} sec_t;

static sec_t by_sec[NCH][2 + 1][DURATION_S]; /* [.][0..1]=campaign, [2]=all */

static void tally(sg_scenario_t *sc)
{
        sg_scenario_rec_t rec;

        memset(by_sec, 0, sizeof(by_sec));
        while (sg_scenario_next(sc, &rec)) {
                int s = (int)((rec.ev.event_time - START_MS) / 1000);

                sg_scenario_account(sc, &rec);
                if (rec.bad)
                        continue;
                cr_assert(s >= 0 && s < DURATION_S);
                for (int k = 0; k < 2; k++) {
                        sec_t *x = &by_sec[rec.channel_idx]
                                          [k ? 2 : rec.campaign_idx][s];

                        switch (rec.ev.type) {
                        case SG_EV_IMPRESSION:
                                x->imps++;
                                x->spend += rec.ev.cost_micros;
                                break;
                        case SG_EV_CLICK:
                                x->clicks++;
                                x->inv_clicks += rec.bot;
                                x->spend += rec.ev.cost_micros;
                                break;
                        default:
                                x->convs++;
                        }
                }
        }
}

static sec_t window(int ch, int scope, int from_s, int len_s)
{
        sec_t w = {0};

        for (int s = from_s; s < from_s + len_s && s < DURATION_S; s++) {
                const sec_t *x = &by_sec[ch][scope][s];

                w.imps += x->imps;
                w.clicks += x->clicks;
                w.convs += x->convs;
                w.spend += x->spend;
                w.inv_clicks += x->inv_clicks;
        }
        return w;
}

static char *stream_text(const sg_scenario_opts_t *o, size_t *len)
{
        sg_scenario_t *sc = new_scenario(o);
        sg_scenario_rec_t rec;
        char *buf = NULL;
        FILE *fp = open_memstream(&buf, len);

        while (sg_scenario_next(sc, &rec)) {
                sg_scenario_account(sc, &rec);
                fprintf(fp, "%d %s %lld %s %s %s %s %s %s %s %lld %lld %d\n",
                        rec.ev.type, rec.ev.event_id,
                        (long long)rec.ev.event_time, rec.ev.channel,
                        rec.ev.campaign_id, rec.ev.ad_id, rec.ev.device_id,
                        rec.ev.ip, rec.ev.user_agent, rec.ev.ref_id,
                        (long long)rec.ev.cost_micros,
                        (long long)rec.ev.revenue_micros, rec.bad);
        }
        cr_assert_eq(sg_scenario_write_truth(sc, fp), 0);
        fclose(fp);
        sg_scenario_destroy(sc);
        return buf;
}

Test(scenario, same_seed_yields_identical_stream_and_truth)
{
        sg_scenario_opts_t o = default_opts();
        size_t la, lb, lc;
        char *a, *b, *c;

        o.bad = 7;
        a = stream_text(&o, &la);
        b = stream_text(&o, &lb);
        o.seed = 2;
        c = stream_text(&o, &lc);
        cr_assert_eq(la, lb);
        cr_assert(memcmp(a, b, la) == 0);
        cr_assert(la != lc || memcmp(a, c, la) != 0,
                  "another seed must give another stream");
        free(a);
        free(b);
        free(c);
}

Test(scenario, healthy_channels_stay_under_1_3x_target_cpa_in_every_window)
{
        sg_scenario_t *sc =
            new_scenario(&(sg_scenario_opts_t){.seed = 1,
                                               .start_ms = START_MS,
                                               .duration_ms = DURATION_S * 1000,
                                               .fraud_start_ms = 20000,
                                               .fraud_channel = "kol",
                                               .overrun_channel = "gifts"});
        const int healthy[] = {SOCIAL, SEARCH, DISPLAY};

        tally(sc);
        for (size_t i = 0; i < 3; i++) {
                int ch = healthy[i];
                double target = (double)channels[ch].target_cpa_micros;

                for (int scope = 0; scope <= 2; scope++) {
                        /* Every window, including the partial ones at the
                         * start (spend before the first conversion). */
                        for (int s = -59; s + 60 <= DURATION_S; s++) {
                                int from = s < 0 ? 0 : s;
                                sec_t w =
                                    window(ch, scope, from, 60 - (from - s));

                                if (w.spend == 0)
                                        continue;
                                cr_assert(w.convs > 0,
                                          "%s scope %d: spend without "
                                          "conversions at %d s",
                                          channels[ch].name, scope, s);
                                cr_assert_lt((double)w.spend / w.convs,
                                             1.3 * target);
                        }
                        {
                                sec_t w = window(ch, scope, 60, 60);
                                double cpa = (double)w.spend / w.convs;

                                cr_assert(cpa >= 0.55 * target &&
                                              cpa <= 0.85 * target,
                                          "%s: cpa %.0f", channels[ch].name,
                                          cpa);
                        }
                }
        }
        sg_scenario_destroy(sc);
}

Test(scenario, healthy_ivt_is_2_percent_and_ctr_10_percent)
{
        sg_scenario_opts_t o = default_opts();
        sg_scenario_t *sc = new_scenario(&o);

        tally(sc);
        for (int ch = SOCIAL; ch <= DISPLAY; ch++)
                for (int s = 0; s + 60 <= DURATION_S; s += 10) {
                        sec_t w = window(ch, 2, s, 60);

                        cr_assert_eq(w.imps, 6000);
                        cr_assert_eq(w.clicks, 600);
                        cr_assert_eq(w.convs, 60);
                        cr_assert_eq(w.inv_clicks, 12);
                }
        sg_scenario_destroy(sc);
}

Test(scenario, fraud_channel_ivt_is_0_6_under_the_flood_only)
{
        sg_scenario_opts_t o = default_opts();
        sg_scenario_t *sc = new_scenario(&o);
        double target = (double)channels[KOL].target_cpa_micros;

        tally(sc);
        {
                sec_t w = window(KOL, 2, 0, 20);

                cr_assert_eq(w.clicks, 200);
                cr_assert_eq(w.inv_clicks, 4);
        }
        for (int s = 20; s + 60 <= DURATION_S; s++) {
                sec_t w = window(KOL, 2, s, 60);
                double ivt = (double)w.inv_clicks / w.clicks;

                cr_assert(ivt > 0.58 && ivt < 0.63, "ivt %.3f at %d", ivt, s);
                cr_assert_lt((double)w.spend / w.convs, 1.3 * target,
                             "the flood alone must not trip CPA");
                cr_assert_eq(w.clicks, 1800);
        }
        sg_scenario_destroy(sc);
}

Test(scenario, fraud_burst_ends_at_fraud_end)
{
        sg_scenario_opts_t o = default_opts();
        sg_scenario_t *sc;

        o.fraud_end_ms = 80000;
        sc = new_scenario(&o);
        tally(sc);
        cr_assert_eq(window(KOL, 2, 20, 60).inv_clicks, 18 * 60 + 12);
        cr_assert_eq(window(KOL, 2, 80, 60).clicks, 600);
        cr_assert_eq(window(KOL, 2, 80, 60).inv_clicks, 12);
        sg_scenario_destroy(sc);
}

Test(scenario, overrun_channel_cpa_is_2x_target)
{
        sg_scenario_opts_t o = default_opts();
        sg_scenario_t *sc = new_scenario(&o);
        double target = (double)channels[GIFTS].target_cpa_micros;

        tally(sc);
        for (int s = 0; s + 60 <= DURATION_S; s += 10) {
                sec_t w = window(GIFTS, 2, s, 60);
                double cpa = (double)w.spend / w.convs;

                cr_assert(cpa > 1.8 * target && cpa < 2.2 * target,
                          "cpa %.0f at %d", cpa, s);
                cr_assert_eq(w.inv_clicks, 12);
        }
        sg_scenario_destroy(sc);
}

Test(scenario, times_increase_per_channel_and_ids_are_unique)
{
        sg_scenario_opts_t o = default_opts();
        sg_scenario_t *sc;
        sg_scenario_rec_t rec;
        int64_t last[NCH], newest = 0;
        size_t n = 0, cap = 1 << 17;
        char(*ids)[SG_ID_LEN] = malloc(cap * sizeof(*ids));

        o.bad = 10;
        sc = new_scenario(&o);

        for (int i = 0; i < NCH; i++)
                last[i] = 0;
        while (sg_scenario_next(sc, &rec)) {
                if (!rec.bad) {
                        cr_assert_gt(rec.ev.event_time, last[rec.channel_idx]);
                        last[rec.channel_idx] = rec.ev.event_time;
                }
                cr_assert_gt(rec.ev.event_time, newest - 5000);
                if (rec.ev.event_time > newest)
                        newest = rec.ev.event_time;
                cr_assert_lt(rec.ev.event_time, START_MS + DURATION_S * 1000);
                if (n == cap) {
                        cap *= 2;
                        ids = realloc(ids, cap * sizeof(*ids));
                }
                memcpy(ids[n++], rec.ev.event_id, SG_ID_LEN);
        }
        qsort(ids, n, sizeof(*ids),
              (int (*)(const void *, const void *))strcmp);
        for (size_t i = 1; i < n; i++)
                cr_assert_str_neq(ids[i - 1], ids[i]);
        cr_assert_str_eq(ids[0], "e-1-bad-0");
        free(ids);
        sg_scenario_destroy(sc);
}

Test(scenario, clicks_and_conversions_point_at_earlier_events)
{
        sg_scenario_opts_t o = default_opts();
        sg_scenario_t *sc = new_scenario(&o);
        sg_scenario_rec_t rec;
        /* event id -> time, by the id's counter per channel */
        static int64_t seen[NCH][200000];
        int with_click = 0, without = 0;

        while (sg_scenario_next(sc, &rec)) {
                char prefix[SG_ID_LEN];
                long n;

                snprintf(prefix, sizeof(prefix), "e-1-%s-", rec.ev.channel);
                n = strtol(rec.ev.event_id + strlen(prefix), NULL, 10);
                cr_assert(n >= 0 && n < 200000);
                seen[rec.channel_idx][n] = rec.ev.event_time;
                cr_assert(rec.ev.has_user_agent && rec.ev.has_device_id &&
                          rec.ev.has_ip);
                cr_assert_eq(rec.bot, sg_scenario_is_bot_ua(rec.ev.user_agent));
                if (rec.ev.type == SG_EV_CONVERSION) {
                        cr_assert_not(rec.bot);
                        if (!rec.ev.has_ref_id) {
                                without++;
                                cr_assert_lt(rec.ev.event_time,
                                             START_MS + 12000);
                                continue;
                        }
                        with_click++;
                }
                if (rec.ev.type == SG_EV_IMPRESSION)
                        continue;
                cr_assert(rec.ev.has_ref_id);
                cr_assert(strncmp(rec.ev.ref_id, prefix, strlen(prefix)) == 0);
                n = strtol(rec.ev.ref_id + strlen(prefix), NULL, 10);
                cr_assert_gt(seen[rec.channel_idx][n], 0,
                             "%s points at an unseen event", rec.ev.event_id);
                if (rec.ev.type == SG_EV_CONVERSION)
                        cr_assert_geq(rec.ev.event_time -
                                          seen[rec.channel_idx][n],
                                      12000, "click injection look-alike");
        }
        cr_assert_gt(with_click, 10 * without);
        sg_scenario_destroy(sc);
}

Test(scenario, truth_channel_lines_sum_campaigns_and_count_rejects)
{
        sg_scenario_opts_t o = default_opts();
        sg_scenario_t *sc;
        sg_scenario_rec_t rec;
        char *buf = NULL, line[512];
        size_t len;
        FILE *fp;
        long sent = 0;

        o.bad = 7;
        o.duration_ms = 10000;
        sc = new_scenario(&o);
        while (sg_scenario_next(sc, &rec)) {
                sg_scenario_account(sc, &rec);
                sent++;
        }
        fp = open_memstream(&buf, &len);
        sg_scenario_write_truth(sc, fp);
        fclose(fp);
        fp = fmemopen(buf, len, "r");
        cr_assert(fgets(line, sizeof(line), fp));
        cr_assert_str_eq(
            line, "{\"channel\":\"display\",\"campaign_id\":null,"
                  "\"impressions\":1000,\"clicks\":100,\"conversions\":10,"
                  "\"spend_micros\":200000000,\"revenue_micros\":750000000,"
                  "\"invalid_clicks\":2,\"invalid_impressions\":12,"
                  "\"invalid_spend_micros\":3040000}\n");
        cr_assert(fgets(line, sizeof(line), fp));
        cr_assert(strstr(line, "\"campaign_id\":\"display-c1\""));
        for (int i = 0; i < 13; i++)
                cr_assert(fgets(line, sizeof(line), fp));
        cr_assert(fgets(line, sizeof(line), fp));
        {
                char want[256];

                snprintf(want, sizeof(want),
                         "{\"rejected\":{\"bad_value\":2,\"missing_field\":2,"
                         "\"json_parse\":1,\"bad_framing\":1,"
                         "\"unknown_schema\":1},\"sent\":%ld}\n",
                         sent);
                cr_assert_str_eq(line, want);
        }
        cr_assert_null(fgets(line, sizeof(line), fp));
        fclose(fp);
        free(buf);
        sg_scenario_destroy(sc);
}

Test(scenario, rejects_unknown_role_channel)
{
        sg_scenario_opts_t o = default_opts();
        char errstr[256];

        o.fraud_channel = "tv";
        cr_assert_null(
            sg_scenario_new(channels, NCH, &o, errstr, sizeof(errstr)));
        cr_assert_str_eq(errstr, "channel tv is not in the config's channels");
}

Test(scenario, ip_flood_comes_from_a_few_ips_at_the_rate_and_is_not_invalid)
{
        sg_scenario_opts_t o = default_opts();
        sg_scenario_t *sc;
        sg_scenario_rec_t rec;
        char src[SG_SCN_FLOOD_IPS_MAX][SG_SOURCE_LEN];
        int64_t per_ip[3] = {0}, flood = 0, in_window = 0;

        o.flood_channel = "search";
        o.flood_start_ms = 30000;
        o.flood_end_ms = 90000;
        o.flood_ips = 3;
        o.flood_rate = 12;
        sc = new_scenario(&o);
        cr_assert_eq(sg_scenario_flood_sources(sc, src, SG_SCN_FLOOD_IPS_MAX),
                     3);
        while (sg_scenario_next(sc, &rec)) {
                if (!rec.flood)
                        continue;
                flood++;
                cr_assert_eq(rec.ev.type, SG_EV_CLICK);
                cr_assert_eq(rec.bot, 0);
                cr_assert_str_eq(rec.ev.channel, "search");
                cr_assert_eq(sg_scenario_is_bot_ua(rec.ev.user_agent), 0);
                for (int k = 0; k < 3; k++)
                        if (strcmp(src[k] + 3, rec.ev.ip) == 0)
                                per_ip[k]++;
                in_window += rec.ev.event_time >= START_MS + 30000 &&
                             rec.ev.event_time < START_MS + 90000;
        }
        /* 12/s for 60 s, round-robin over the 3 IPs. */
        cr_assert_eq(flood, 720);
        cr_assert_eq(in_window, 720);
        for (int k = 0; k < 3; k++)
                cr_assert_eq(per_ip[k], 240, "%s: %lld", src[k],
                             (long long)per_ip[k]);
        sg_scenario_destroy(sc);
}

Test(scenario, an_invalid_ip_flood_carries_bot_agents_from_the_same_ips)
{
        sg_scenario_opts_t o = default_opts();
        sg_scenario_t *sc;
        sg_scenario_rec_t rec;
        char src[SG_SCN_FLOOD_IPS_MAX][SG_SOURCE_LEN];
        int64_t per_ip[3] = {0}, flood = 0;

        o.flood_channel = "search";
        o.flood_start_ms = 30000;
        o.flood_end_ms = 90000;
        o.flood_ips = 3;
        o.flood_rate = 4;
        o.flood_invalid = 1;
        sc = new_scenario(&o);
        cr_assert_eq(sg_scenario_flood_sources(sc, src, SG_SCN_FLOOD_IPS_MAX),
                     3);
        while (sg_scenario_next(sc, &rec)) {
                if (!rec.flood)
                        continue;
                flood++;
                cr_assert_eq(rec.bot, 1);
                cr_assert_eq(sg_scenario_is_bot_ua(rec.ev.user_agent), 1);
                for (int k = 0; k < 3; k++)
                        if (strcmp(src[k] + 3, rec.ev.ip) == 0)
                                per_ip[k]++;
        }
        cr_assert_eq(flood, 240);
        for (int k = 0; k < 3; k++)
                cr_assert_eq(per_ip[k], 80, "%s: %lld", src[k],
                             (long long)per_ip[k]);
        sg_scenario_destroy(sc);
}

/* Half of the fraud channel's bot wave from its 4 cloud hosts (blocked by
 * source), half spread over hundreds of others (paused with the channel). */
Test(scenario, the_bot_wave_is_half_concentrated_half_spread)
{
        sg_scenario_opts_t o = default_opts();
        sg_scenario_t *sc;
        sg_scenario_rec_t rec;
        struct {
                char ip[64];
                int64_t n;
        } *ips = calloc(4096, sizeof(*ips));
        int cnt = 0, heavy = 0, one = 0;
        int64_t bots = 0, heavy_clicks = 0;

        o.duration_ms = 60000;
        sc = new_scenario(&o);
        while (sg_scenario_next(sc, &rec)) {
                int k;

                if (!rec.bot || rec.ev.type != SG_EV_CLICK ||
                    strcmp(rec.ev.channel, "kol") != 0 ||
                    rec.ev.event_time < START_MS + 20000)
                        continue;
                bots++;
                for (k = 0; k < cnt && strcmp(ips[k].ip, rec.ev.ip); k++)
                        ;
                if (k == cnt) {
                        cr_assert_lt(cnt, 4096);
                        snprintf(ips[cnt++].ip, sizeof(ips[0].ip), "%s",
                                 rec.ev.ip);
                }
                ips[k].n++;
        }
        for (int k = 0; k < cnt; k++) {
                if (ips[k].n > 50) {
                        heavy++;
                        heavy_clicks += ips[k].n;
                }
                one += ips[k].n == 1;
        }
        /* 40 s of the flood's 800 clicks: 720 bots (every 10th, n = 9,
         * 19, ..., a browser agent) and the background's 8 (1 in 50 of
         * 400 clicks). The even ones and the background on the 4 hosts;
         * the 320 odd ones on pool entry n % 500: the 120 odd n < 300
         * (not 9 mod 10) meet again at n + 500, the 80 in [300, 500) not. */
        cr_assert_eq(bots, 728, "bots %lld", (long long)bots);
        cr_assert_eq(heavy, 4);
        cr_assert_eq(heavy_clicks, 408, "%lld", (long long)heavy_clicks);
        cr_assert_eq(cnt, 204, "distinct IPs %d", cnt);
        cr_assert_eq(one, 80);
        free(ips);
        sg_scenario_destroy(sc);
}

Test(scenario, overrun_campaign_converts_at_a_third_of_its_sibling)
{
        sg_scenario_opts_t o = default_opts();
        sg_scenario_t *sc;
        sg_scenario_rec_t rec;
        int64_t clicks[2] = {0}, convs[2] = {0};

        o.overrun_channel = "";
        o.overrun_campaign_channel = "social";
        sc = new_scenario(&o);
        while (sg_scenario_next(sc, &rec)) {
                if (strcmp(rec.ev.channel, "social") != 0)
                        continue;
                clicks[rec.campaign_idx] += rec.ev.type == SG_EV_CLICK;
                convs[rec.campaign_idx] += rec.ev.type == SG_EV_CONVERSION;
        }
        /* 10% vs 3.5% of clicks convert; the first click converts. */
        cr_assert_eq(clicks[0], clicks[1]);
        cr_assert_eq(convs[1], clicks[1] / 10);
        cr_assert_eq(convs[0], (clicks[0] * 35 + 965) / 1000);
        sg_scenario_destroy(sc);
}

/* --------------------------------------------------------------- incidents */

static sg_scenario_opts_t incident_opts(void)
{
        sg_scenario_opts_t o = default_opts();

        /* kol and gifts have roles: social, search, display are free. */
        o.incidents = 3;
        o.incident_start_ms = 20000;
        o.incident_every_ms = 5000;
        o.incident_rates[0] = 10;
        o.incident_rates[1] = 40;
        o.incident_rate_cnt = 2;
        o.incident_lengths_ms[0] = 30000;
        o.incident_lengths_ms[1] = 60000;
        o.incident_length_cnt = 2;
        o.trigger_ivt = 0.25;
        o.trigger_min_clicks = 100;
        o.trigger_window_ms = 60000;
        o.trigger_step_ms = 10000;
        return o;
}

/* The clicks of one channel, in the order they were sent. */
typedef struct click_log {
        int64_t t[8192];
        int bot[8192];
        int n;
} click_log_t;

/* The first click at or after from_ms after which the 60 s window ending at
 * the 10 s step after it holds >= 100 clicks, over 25% of them invalid;
 * counted by brute force over the log. -1 if none. */
static int64_t brute_trigger(const click_log_t *l, int64_t from_ms)
{
        for (int i = 0; i < l->n; i++) {
                int64_t end = (l->t[i] / 10000 + 1) * 10000, clicks = 0,
                        invalid = 0;

                if (l->t[i] < from_ms)
                        continue;
                for (int j = 0; j <= i; j++)
                        if (l->t[j] >= end - 60000) {
                                clicks++;
                                invalid += l->bot[j];
                        }
                if (clicks >= 100 && invalid * 4 > clicks)
                        return l->t[i];
        }
        return -1;
}

/* A field of the truth's line for incident i (a number, or -1 for null). */
static int64_t incident_field(const char *truth, int i, const char *key)
{
        char head[64], pat[64];
        const char *line, *p;

        snprintf(head, sizeof(head), "{\"incident\":{\"index\":%d,", i);
        line = strstr(truth, head);
        cr_assert_not_null(line, "no truth line for incident %d", i);
        snprintf(pat, sizeof(pat), "\"%s\":", key);
        p = strstr(line, pat);
        cr_assert(p && p < strchr(line, '\n'), "incident %d: no %s", i, key);
        p += strlen(pat);
        return strncmp(p, "null", 4) == 0 ? -1 : strtoll(p, NULL, 10);
}

Test(scenario, incidents_go_to_distinct_free_channels_with_the_sizes_given)
{
        sg_scenario_opts_t o = incident_opts();
        static const int want_ch[3] = {SOCIAL, SEARCH, DISPLAY};
        static const int want_rate[3] = {10, 40, 10};
        static const int64_t want_start[3] = {20000, 25000, 30000};
        static const int64_t want_end[3] = {50000, 85000, 60000};
        static click_log_t logs[3];
        int64_t clicks[3] = {0}, first[3] = {-1, -1, -1}, last[3] = {0};
        sg_scenario_t *sc = new_scenario(&o);
        sg_scenario_rec_t rec;
        char *truth = NULL;
        size_t len = 0;
        FILE *fp;
        int ch, rate;
        int64_t start, end;

        memset(logs, 0, sizeof(logs));
        for (int i = 0; i < 3; i++) {
                cr_assert_eq(sg_scenario_incident(sc, i, &ch, &rate, &start,
                                                  &end),
                             0);
                cr_assert_eq(ch, want_ch[i]);
                cr_assert_eq(rate, want_rate[i]);
                cr_assert_eq(start, want_start[i]);
                cr_assert_eq(end, want_end[i]);
        }
        cr_assert_eq(sg_scenario_incident(sc, 3, &ch, &rate, &start, &end),
                     -1);
        while (sg_scenario_next(sc, &rec)) {
                int k = rec.channel_idx;

                sg_scenario_account(sc, &rec);
                sg_scenario_sent_at(sc, &rec, rec.ev.event_time + 7);
                if (k < 3 && rec.ev.type == SG_EV_CLICK) {
                        click_log_t *l = &logs[k];

                        cr_assert_lt(l->n, 8192);
                        l->t[l->n] = rec.ev.event_time;
                        l->bot[l->n++] = rec.bot;
                }
                if (!rec.incident)
                        continue;
                cr_assert(k < 3, "incident click on %s", rec.ev.channel);
                cr_assert_eq(rec.incident, k + 1);
                cr_assert_eq(rec.ev.type, SG_EV_CLICK);
                cr_assert_eq(rec.bot, 1);
                cr_assert(sg_scenario_is_bot_ua(rec.ev.user_agent));
                clicks[k]++;
                if (first[k] < 0)
                        first[k] = rec.ev.event_time;
                last[k] = rec.ev.event_time;
        }
        fp = open_memstream(&truth, &len);
        cr_assert_eq(sg_scenario_write_truth(sc, fp), 0);
        fclose(fp);
        for (int i = 0; i < 3; i++) {
                int64_t t = brute_trigger(&logs[i], first[i]);

                /* rate clicks/s for the length, within [start, end). */
                cr_assert_eq(clicks[i],
                             want_rate[i] * (want_end[i] - want_start[i]) /
                                 1000);
                /* The first click with the first tick, at +8 ms. */
                cr_assert_eq(first[i], START_MS + want_start[i] + 8);
                cr_assert_lt(last[i], START_MS + want_end[i]);
                cr_assert_eq(incident_field(truth, i, "clicks"), clicks[i]);
                cr_assert_eq(incident_field(truth, i, "rate"), want_rate[i]);
                cr_assert_eq(incident_field(truth, i, "start_ms"),
                             want_start[i]);
                cr_assert_eq(incident_field(truth, i, "end_ms"), want_end[i]);
                cr_assert_eq(incident_field(truth, i, "onset_event_ms"),
                             first[i]);
                cr_assert_eq(incident_field(truth, i, "onset_wall_ms"),
                             first[i] + 7);
                cr_assert_eq(incident_field(truth, i, "invalid_spend_micros"),
                             clicks[i] *
                                 incident_field(truth, i, "click_cost_micros"));
                cr_assert_neq(t, -1, "incident %d never trips", i);
                cr_assert_eq(incident_field(truth, i, "trigger_event_ms"), t);
                cr_assert_eq(incident_field(truth, i, "trigger_wall_ms"),
                             t + 7);
        }
        /* Four times the bots, much sooner over the threshold. */
        cr_assert_lt(incident_field(truth, 1, "trigger_event_ms") - first[1],
                     incident_field(truth, 0, "trigger_event_ms") - first[0]);
        cr_assert(strstr(truth, "{\"healthy_channels\":[]}\n"), "%s", truth);
        free(truth);
        sg_scenario_destroy(sc);
}

Test(scenario, incidents_leave_the_channels_beyond_them_healthy)
{
        sg_scenario_opts_t o = incident_opts();
        sg_scenario_t *sc;
        char *truth = NULL;
        size_t len = 0;
        FILE *fp;

        o.incidents = 1;
        o.overrun_channel = "";
        sc = new_scenario(&o);
        fp = open_memstream(&truth, &len);
        cr_assert_eq(sg_scenario_write_truth(sc, fp), 0);
        fclose(fp);
        cr_assert(strstr(truth, "{\"healthy_channels\":[\"search\","
                                "\"display\",\"gifts\"]}\n"),
                  "%s", truth);
        free(truth);
        sg_scenario_destroy(sc);
}

Test(scenario, more_incidents_than_free_channels_is_refused)
{
        sg_scenario_opts_t o = incident_opts();
        char errstr[256];

        o.incidents = 4;
        cr_assert_null(
            sg_scenario_new(channels, NCH, &o, errstr, sizeof(errstr)));
        cr_assert_str_eq(errstr, "4 incidents need 4 channels without another "
                                 "role; the config has 3");
}
