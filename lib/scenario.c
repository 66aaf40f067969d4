/*
 * The sg-gen scenario. Rates and ratios come from integer accumulators, not
 * dice, so that every 60 s window of a channel has the same CTR, CVR, CPA and
 * invalid share: a test or a demo can then state what the rules must decide.
 * The seeded PRNG (splitmix64, one stream per channel) only picks ids,
 * devices, IPs, user agents and a millisecond of jitter.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "scenario.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------- parameters */

#define TICK_MS              10 /* one impression per channel per tick: 100/s */
#define ACC_ONE              1000 /* accumulators count in thousandths */
#define CTR_PM               100  /* clicks per impression: 10% */
#define CVR_PM               100  /* conversions per click: 10% */
#define CVR_OVERRUN_PM       35   /* 3.5%: CPA = 0.7 * 100/35 = 2.0 x target */
#define BOT_CLICK_EVERY      50   /* 1 in 50 clicks of a campaign from a bot */
#define CRAWLER_IMP_EVERY    100  /* 1 in 100 impressions, one never clicked */
#define CRAWLER_IMP_PHASE    55
#define FLOOD_PM_PER_TICK    200   /* 0.2 extra clicks per tick: 20/s */
#define FLOOD_HUMAN_EVERY    10    /* 1 in 10 flood clicks with a browser UA */
#define CONV_DELAY_MS        30000 /* click-to-conversion: 30-40 s ... */
#define CONV_DELAY_JITTER_MS 10000
#define CONV_MIN_DELAY_MS    12000   /* ... never under 12 s (no injection) */
#define DEVICE_POOL          1000000 /* human devices repeat after 10,000 s */
#define BOT_DEVICES          8
#define BOT_IPS              4
#define SPREAD_IPS           500 /* half of a bot wave: one click per IP */
#define PROXY_IPS            4
#define ADS_PER_CAMPAIGN     3
#define RING                 512 /* clicks remembered per campaign (~100 s) */
#define DEFAULT_TARGET_CPA   20000000 /* pricing base without a target */

/* Spend per second = ratio x target CPA at 1 conversion/s; impressions take
 * 60% of it, clicks 40%, so a 20 clicks/s flood adds 80%. */
#define IMP_SHARE_PM        600
#define HEALTHY_RATIO_PM(i) (600 + 100 * ((i) % 3)) /* 0.6, 0.7, 0.8 */
#define FRAUD_RATIO_PM      600 /* 1.8 x 0.6 = 1.08 x target under flood */
#define OVERRUN_RATIO_PM    700 /* with CVR_OVERRUN_PM: 2.0 x target */
#define REVENUE_X_TARGET    3   /* revenue per conversion = 3 x target */

static const char *const bot_substrings[] = {
    "Googlebot", "bingbot", "curl/", "python-requests", "HeadlessChrome"};

const char *const sg_scn_bot_uas[] = {
    "Mozilla/5.0 (compatible; Googlebot/2.1; "
    "+http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; "
    "+http://www.bing.com/bingbot.htm)",
    "curl/7.88.1",
    "python-requests/2.31.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/119.0.6045.105 Safari/537.36",
};
const size_t sg_scn_bot_ua_cnt = NELEM(sg_scn_bot_uas);

const char *const sg_scn_human_uas[] = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, "
    "like Gecko) Chrome/119.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) "
    "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 "
    "Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, "
    "like Gecko) Chrome/119.0.6045.163 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 "
    "Firefox/120.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, "
    "like Gecko) Chrome/119.0.0.0 Safari/537.36 Edg/119.0.2151.72",
    "Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S911B) AppleWebKit/537.36 "
    "(KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile "
    "Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Safari/605.1.15",
};
const size_t sg_scn_human_ua_cnt = NELEM(sg_scn_human_uas);

/* Consumer ISP /8s (no cloud ranges: a human event must not be tagged as
 * data-center traffic, or the truth would be off). */
static const int human_octets[] = {24, 68, 71, 73, 76, 98};
/* Cloud /8s for the bots (already invalid by user agent). */
static const int cloud_octets[] = {3, 34, 35, 52};

static const char *const countries[] = {"US", "US", "US", "GB", "DE",
                                        "FR", "BR", "IN", "JP", "CA"};

/* ------------------------------------------------------------------ state */

typedef struct scn_truth {
        int64_t impressions, clicks, conversions, spend_micros, revenue_micros,
            invalid_clicks, invalid_impressions, invalid_spend_micros;
} scn_truth_t;

typedef struct scn_click {
        char id[SG_ID_LEN];
        int64_t time;
        uint64_t dev;
        int ad;
} scn_click_t;

typedef struct scn_campaign {
        char id[SG_NAME_LEN];
        int cvr_pm;
        int ctr_acc, cvr_acc;
        int64_t imps, clicks;
        char last_imp[SG_ID_LEN]; /* for flood clicks to point at */
        int last_ad;
        scn_click_t ring[RING]; /* human clicks, for conversions */
        int ring_head, ring_cnt;
        scn_truth_t truth;
} scn_campaign_t;

typedef struct scn_channel {
        sg_channel_conf_t conf;
        int idx;
        uint64_t seed;
        sg_scn_role_t role;
        uint64_t rng;
        uint64_t salt; /* of the channel's device pool */
        int cvr_pm;
        int64_t imp_cost, click_cost, revenue;
        int64_t tick;    /* next tick to generate */
        int64_t ids;     /* event ids issued */
        int64_t human_n; /* human devices drawn */
        int flood_acc;
        int64_t flood_n;
        int ip_flood; /* the channel of the IP flood */
        int ipf_acc;
        int64_t ipf_n;
        char flood_ips[SG_SCN_FLOOD_IPS_MAX][16];
        int done;
        sg_scenario_rec_t q[5]; /* the events of one tick, in time order */
        int q_len, q_pos;
        char bot_ips[BOT_IPS][16];
        char proxy_ips[PROXY_IPS][16];
        uint64_t bot_devs[BOT_DEVICES];
        scn_campaign_t camp[SG_SCN_CAMPAIGNS];
} scn_channel_t;

/* A fraud incident: its schedule, what it sent, and the running-window
 * counts of its channel's clicks that find its trigger. */
typedef struct scn_incident {
        int channel_idx;
        int rate;                 /* clicks/s */
        int64_t start_ms, end_ms; /* offsets from the scenario's start */
        int acc;
        int64_t n;                /* clicks generated */
        int64_t clicks, invalid_spend; /* sent */
        int64_t onset_ms, onset_wall, trigger_ms, trigger_wall; /* -1: none */
        int64_t step[SG_SCN_TRIGGER_STEPS]; /* the step each slot counts */
        int64_t step_clicks[SG_SCN_TRIGGER_STEPS];
        int64_t step_invalid[SG_SCN_TRIGGER_STEPS];
} scn_incident_t;

struct sg_scenario {
        sg_scenario_opts_t o;
        scn_channel_t *ch;
        int cnt;
        scn_incident_t *inc; /* o.incidents of them */
        int *incident_of;    /* per channel: 1 + its incident, 0 = none */
        int trigger_pending; /* 1 + the incident the last record triggered */
        int bad_next;
        int64_t rejected[SG_SCN_BAD__CNT];
        int64_t sent;
        int64_t flood_clicks; /* IP-flood clicks sent */
        char flood_channel[SG_NAME_LEN];
        char overrun_campaign[SG_NAME_LEN];
};

/* ---------------------------------------------------------------- helpers */

uint64_t sg_splitmix64(uint64_t *state)
{
        uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

/* A stateless hash: the identity of pool member n never depends on the
 * order it was drawn in. */
static uint64_t mix(uint64_t a, uint64_t b)
{
        uint64_t s = a ^ (b * 0xd1b54a32d192ed03ULL);

        return sg_splitmix64(&s);
}

static uint64_t fnv1a(const char *s)
{
        uint64_t h = 0xcbf29ce484222325ULL;

        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
        return h;
}

static void format_ip(char *buf, size_t size, int octet1, uint64_t h)
{
        snprintf(buf, size, "%d.%d.%d.%d", octet1, (int)((h >> 16) & 0xff),
                 (int)((h >> 24) & 0xff), 1 + (int)((h >> 32) % 254));
}

const char *sg_scenario_bad_reason(sg_scn_bad_t kind)
{
        switch (kind) {
        case SG_SCN_BAD_NEG_COST:
                return SG_ERR_BAD_VALUE;
        case SG_SCN_BAD_NO_CAMPAIGN:
                return SG_ERR_MISSING_FIELD;
        case SG_SCN_BAD_JSON:
                return SG_ERR_JSON_PARSE;
        case SG_SCN_BAD_FRAMING:
                return SG_ERR_BAD_FRAMING;
        case SG_SCN_BAD_UNKNOWN_SCHEMA:
                return SG_ERR_UNKNOWN_SCHEMA;
        default:
                return "ok";
        }
}

int sg_scenario_is_bot_ua(const char *ua)
{
        for (size_t i = 0; i < NELEM(bot_substrings); i++)
                if (strstr(ua, bot_substrings[i]))
                        return 1;
        return 0;
}

/* --------------------------------------------------------- construction */

/*
 * Incident i goes to the i-th channel, in config order, that has no other
 * role (fraud, overrun, IP flood, overrunning campaign): one incident per
 * channel, so that each breaker's PAUSE answers one incident and the
 * channels left over stay healthy. Sizes and lengths are cycled through,
 * so that neighbours in time differ in both.
 */
static int plan_incidents(sg_scenario_t *sc, const sg_scenario_opts_t *o,
                          char *errstr, size_t errstr_size)
{
        int n = o->incidents, free_cnt = 0, k = 0;

        if (n > SG_SCN_INCIDENTS_MAX || o->incident_rate_cnt < 1 ||
            o->incident_rate_cnt > SG_SCN_SIZES_MAX ||
            o->incident_length_cnt < 1 ||
            o->incident_length_cnt > SG_SCN_SIZES_MAX ||
            o->incident_start_ms < 0 || o->incident_every_ms < 0) {
                snprintf(errstr, errstr_size,
                         "incidents: at most %d, with 1..%d rates and "
                         "lengths, start and spacing >= 0",
                         SG_SCN_INCIDENTS_MAX, SG_SCN_SIZES_MAX);
                return -1;
        }
        for (int i = 0; i < o->incident_rate_cnt; i++)
                if (o->incident_rates[i] < 1 || o->incident_rates[i] > 100) {
                        snprintf(errstr, errstr_size,
                                 "incident rate %d: not in 1..100 clicks/s",
                                 o->incident_rates[i]);
                        return -1;
                }
        for (int i = 0; i < o->incident_length_cnt; i++)
                if (o->incident_lengths_ms[i] <= 0) {
                        snprintf(errstr, errstr_size,
                                 "incident length must be > 0");
                        return -1;
                }
        if (o->trigger_step_ms <= 0 || o->trigger_window_ms <= 0 ||
            o->trigger_window_ms % o->trigger_step_ms ||
            o->trigger_window_ms / o->trigger_step_ms > SG_SCN_TRIGGER_STEPS) {
                snprintf(errstr, errstr_size,
                         "incident trigger: the window must be 1..%d whole "
                         "steps",
                         SG_SCN_TRIGGER_STEPS);
                return -1;
        }
        for (int i = 0; i < sc->cnt; i++)
                free_cnt += sc->ch[i].role == SG_SCN_HEALTHY &&
                            !sc->ch[i].ip_flood &&
                            strcmp(sc->ch[i].camp[0].id, sc->overrun_campaign);
        if (n > free_cnt) {
                snprintf(errstr, errstr_size,
                         "%d incidents need %d channels without another "
                         "role; the config has %d",
                         n, n, free_cnt);
                return -1;
        }
        sc->inc = calloc(n, sizeof(*sc->inc));
        sc->incident_of = calloc(sc->cnt, sizeof(*sc->incident_of));
        if (!sc->inc || !sc->incident_of) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
        }
        for (int i = 0; i < sc->cnt && k < n; i++) {
                scn_incident_t *in = &sc->inc[k];
                const scn_channel_t *ch = &sc->ch[i];

                if (ch->role != SG_SCN_HEALTHY || ch->ip_flood ||
                    !strcmp(ch->camp[0].id, sc->overrun_campaign))
                        continue;
                in->channel_idx = i;
                in->rate = o->incident_rates[k % o->incident_rate_cnt];
                in->start_ms = o->incident_start_ms + k * o->incident_every_ms;
                in->end_ms =
                    in->start_ms +
                    o->incident_lengths_ms[k % o->incident_length_cnt];
                /* The wave's first click comes with its first tick. */
                in->acc = ACC_ONE - in->rate * ACC_ONE / 100;
                in->onset_ms = in->onset_wall = -1;
                in->trigger_ms = in->trigger_wall = -1;
                for (int s = 0; s < SG_SCN_TRIGGER_STEPS; s++)
                        in->step[s] = -1;
                sc->incident_of[i] = ++k;
        }
        return 0;
}

sg_scenario_t *sg_scenario_new(const sg_channel_conf_t *channels, int cnt,
                               const sg_scenario_opts_t *opts, char *errstr,
                               size_t errstr_size)
{
        const char *fraud = opts->fraud_channel ? opts->fraud_channel : "";
        const char *overrun =
            opts->overrun_channel ? opts->overrun_channel : "";
        const char *flood = opts->flood_channel ? opts->flood_channel : "";
        const char *ocamp = opts->overrun_campaign_channel
                                ? opts->overrun_campaign_channel
                                : "";
        int found_flood = 0, found_ocamp = 0;
        sg_scenario_t *sc;
        int healthy = 0, found_fraud = 0, found_overrun = 0;

        if (cnt < 1) {
                snprintf(errstr, errstr_size, "no channels configured");
                return NULL;
        }
        if (*fraud && !strcmp(fraud, overrun)) {
                snprintf(errstr, errstr_size,
                         "channel %s cannot be both the fraud and the "
                         "overrun channel",
                         fraud);
                return NULL;
        }
        sc = calloc(1, sizeof(*sc));
        if (!sc || !(sc->ch = calloc(cnt, sizeof(*sc->ch)))) {
                free(sc);
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        sc->o = *opts;
        sc->o.fraud_channel = NULL; /* not kept: the caller owns them */
        sc->o.overrun_channel = NULL;
        sc->o.flood_channel = NULL;
        sc->o.overrun_campaign_channel = NULL;
        if (*flood && (!strcmp(flood, fraud) || opts->flood_ips < 1 ||
                       opts->flood_ips > SG_SCN_FLOOD_IPS_MAX ||
                       opts->flood_rate < 1 || opts->flood_rate > 100)) {
                snprintf(errstr, errstr_size,
                         "flood channel %s: not the fraud channel, 1..%d IPs, "
                         "1..100 clicks/s",
                         flood, SG_SCN_FLOOD_IPS_MAX);
                free(sc->ch);
                free(sc);
                return NULL;
        }
        sc->cnt = cnt;
        for (int i = 0; i < cnt; i++) {
                scn_channel_t *ch = &sc->ch[i];
                int64_t target, per_s;
                int ratio;

                ch->conf = channels[i];
                ch->idx = i;
                ch->seed = opts->seed;
                ch->salt = mix(opts->seed, fnv1a(ch->conf.name));
                ch->rng = ch->salt;
                if (*fraud && !strcmp(ch->conf.name, fraud)) {
                        ch->role = SG_SCN_FRAUD;
                        ratio = FRAUD_RATIO_PM;
                        found_fraud = 1;
                } else if (*overrun && !strcmp(ch->conf.name, overrun)) {
                        ch->role = SG_SCN_OVERRUN;
                        ratio = OVERRUN_RATIO_PM;
                        found_overrun = 1;
                } else {
                        ch->role = SG_SCN_HEALTHY;
                        ratio = HEALTHY_RATIO_PM(healthy);
                        healthy++;
                }
                ch->cvr_pm =
                    ch->role == SG_SCN_OVERRUN ? CVR_OVERRUN_PM : CVR_PM;
                target = ch->conf.target_cpa_micros > 0
                             ? ch->conf.target_cpa_micros
                             : DEFAULT_TARGET_CPA;
                per_s = target * ratio / 1000;
                /* 100 impressions and 10 clicks per second. */
                ch->imp_cost = per_s * IMP_SHARE_PM / 1000 / 100;
                ch->click_cost = per_s * (1000 - IMP_SHARE_PM) / 1000 / 10;
                ch->revenue = target * REVENUE_X_TARGET;
                for (int k = 0; k < BOT_IPS; k++)
                        format_ip(ch->bot_ips[k], sizeof(ch->bot_ips[k]),
                                  cloud_octets[k % NELEM(cloud_octets)],
                                  sg_splitmix64(&ch->rng));
                for (int k = 0; k < PROXY_IPS; k++) {
                        uint64_t h = sg_splitmix64(&ch->rng);

                        format_ip(ch->proxy_ips[k], sizeof(ch->proxy_ips[k]),
                                  human_octets[h % NELEM(human_octets)], h);
                }
                for (int k = 0; k < BOT_DEVICES; k++)
                        ch->bot_devs[k] = sg_splitmix64(&ch->rng);
                if (*flood && !strcmp(ch->conf.name, flood)) {
                        ch->ip_flood = 1;
                        found_flood = 1;
                        snprintf(sc->flood_channel, sizeof(sc->flood_channel),
                                 "%s", flood);
                        for (int k = 0; k < opts->flood_ips; k++) {
                                uint64_t h = mix(ch->salt ^ 0x1f100d, k + 1);

                                format_ip(
                                    ch->flood_ips[k], sizeof(ch->flood_ips[k]),
                                    human_octets[h % NELEM(human_octets)], h);
                        }
                }
                for (int c = 0; c < SG_SCN_CAMPAIGNS; c++) {
                        scn_campaign_t *cp = &ch->camp[c];

                        snprintf(cp->id, sizeof(cp->id), "%.56s-c%d",
                                 ch->conf.name, c + 1);
                        cp->cvr_pm = ch->cvr_pm;
                        if (c == 0 && *ocamp && !strcmp(ch->conf.name, ocamp)) {
                                cp->cvr_pm = CVR_OVERRUN_PM;
                                found_ocamp = 1;
                                snprintf(sc->overrun_campaign,
                                         sizeof(sc->overrun_campaign), "%s",
                                         cp->id);
                        }
                        /* The first impression clicks and the first click
                         * converts: no spend piles up before a conversion. */
                        cp->ctr_acc = ACC_ONE - CTR_PM;
                        cp->cvr_acc = ACC_ONE - cp->cvr_pm;
                }
        }
        if ((*fraud && !found_fraud) || (*overrun && !found_overrun) ||
            (*flood && !found_flood) || (*ocamp && !found_ocamp)) {
                snprintf(errstr, errstr_size,
                         "channel %s is not in the config's channels",
                         *fraud && !found_fraud       ? fraud
                         : *overrun && !found_overrun ? overrun
                         : *flood && !found_flood     ? flood
                                                      : ocamp);
                sg_scenario_destroy(sc);
                return NULL;
        }
        if (opts->incidents > 0 &&
            plan_incidents(sc, opts, errstr, errstr_size) != 0) {
                sg_scenario_destroy(sc);
                return NULL;
        }
        return sc;
}

void sg_scenario_destroy(sg_scenario_t *sc)
{
        if (!sc)
                return;
        free(sc->inc);
        free(sc->incident_of);
        free(sc->ch);
        free(sc);
}

int sg_scenario_incident(const sg_scenario_t *sc, int i, int *channel_idx,
                         int *rate, int64_t *start_ms, int64_t *end_ms)
{
        const scn_incident_t *in;

        if (i < 0 || i >= sc->o.incidents)
                return -1;
        in = &sc->inc[i];
        *channel_idx = in->channel_idx;
        *rate = in->rate;
        *start_ms = in->start_ms;
        *end_ms = in->end_ms;
        return 0;
}

int sg_scenario_flood_sources(const sg_scenario_t *sc,
                              char out[][SG_SOURCE_LEN], int max)
{
        for (int i = 0; i < sc->cnt; i++) {
                int n = 0;

                if (!sc->ch[i].ip_flood)
                        continue;
                for (; n < sc->o.flood_ips && n < max; n++)
                        snprintf(out[n], SG_SOURCE_LEN, "ip:%s",
                                 sc->ch[i].flood_ips[n]);
                return n;
        }
        return 0;
}

sg_scn_role_t sg_scenario_role(const sg_scenario_t *sc, const char *channel)
{
        for (int i = 0; i < sc->cnt; i++)
                if (!strcmp(sc->ch[i].conf.name, channel))
                        return sc->ch[i].role;
        return SG_SCN_HEALTHY;
}

/* ------------------------------------------------------------ generation */

/* Copies a NUL-terminated string that fits (the buffers are sized alike). */
static void copy_str(char *dst, size_t size, const char *src)
{
        size_t n = strnlen(src, size - 1);

        memcpy(dst, src, n);
        dst[n] = '\0';
}

static sg_scenario_rec_t *push(scn_channel_t *ch, int camp,
                               sg_event_type_t type, int64_t time)
{
        sg_scenario_rec_t *r = &ch->q[ch->q_len++];
        sg_event_t *ev = &r->ev;

        memset(r, 0, sizeof(*r));
        r->channel_idx = ch->idx;
        r->campaign_idx = camp;
        ev->type = type;
        ev->event_time = time;
        copy_str(ev->channel, sizeof(ev->channel), ch->conf.name);
        copy_str(ev->campaign_id, sizeof(ev->campaign_id), ch->camp[camp].id);
        {
                /* Formatted aside: ev lives inside ch, and GCC cannot tell
                 * that the fields do not overlap. */
                char id[SG_ID_LEN];
                snprintf(id, sizeof(id), "e-%" PRIu64 "-%s-%" PRId64, ch->seed,
                         ch->conf.name, ch->ids++);
                copy_str(ev->event_id, sizeof(ev->event_id), id);
        }
        return r;
}

static void set_ad(const scn_channel_t *ch, int camp, int ad, sg_event_t *ev)
{
        snprintf(ev->ad_id, sizeof(ev->ad_id), "%s-ad%d", ch->camp[camp].id,
                 ad + 1);
        ev->has_ad_id = 1;
}

/* A human device: id, IP, user agent and country all follow from its
 * number in the channel's pool. */
static void set_human(const scn_channel_t *ch, uint64_t dev, sg_event_t *ev)
{
        uint64_t h = mix(ch->salt, dev + 1);

        snprintf(ev->device_id, sizeof(ev->device_id), "d-%016" PRIx64, h);
        format_ip(ev->ip, sizeof(ev->ip),
                  human_octets[(h >> 8) % NELEM(human_octets)], h);
        snprintf(ev->user_agent, sizeof(ev->user_agent), "%s",
                 sg_scn_human_uas[(h >> 40) % sg_scn_human_ua_cnt]);
        snprintf(ev->country, sizeof(ev->country), "%s",
                 countries[(h >> 52) % NELEM(countries)]);
        ev->has_device_id = ev->has_ip = ev->has_user_agent = ev->has_country =
            1;
}

/* Half of a bot wave comes from the channel's few cloud hosts (blocked
 * by source), half spread over SPREAD_IPS others (only a pause stops it):
 * the n-th flood click's host, without a draw from the channel's rng. */
static void spread_ip(const scn_channel_t *ch, int64_t n, sg_event_t *ev)
{
        uint64_t h = mix(ch->salt ^ 0x5b7ead, (uint64_t)(n % SPREAD_IPS) + 1);

        format_ip(ev->ip, sizeof(ev->ip),
                  cloud_octets[h % NELEM(cloud_octets)], h >> 8);
}

/* A declared bot from the channel's small pool of cloud hosts. */
static void set_bot(scn_channel_t *ch, sg_event_t *ev)
{
        uint64_t r = sg_splitmix64(&ch->rng);

        snprintf(ev->device_id, sizeof(ev->device_id), "bot-%016" PRIx64,
                 ch->bot_devs[r % BOT_DEVICES]);
        snprintf(ev->ip, sizeof(ev->ip), "%s", ch->bot_ips[(r >> 8) % BOT_IPS]);
        snprintf(ev->user_agent, sizeof(ev->user_agent), "%s",
                 sg_scn_bot_uas[(r >> 16) % sg_scn_bot_ua_cnt]);
        snprintf(ev->country, sizeof(ev->country), "US");
        ev->has_device_id = ev->has_ip = ev->has_user_agent = ev->has_country =
            1;
}

static int jitter(scn_channel_t *ch)
{
        return (int)(sg_splitmix64(&ch->rng) & 1);
}

/* The human click a conversion at time t is attributed to: the latest one at
 * least 30-40 s old, else the oldest one at least 12 s old, else none. */
static const scn_click_t *pick_click(scn_channel_t *ch, scn_campaign_t *cp,
                                     int64_t t)
{
        int64_t delay = CONV_DELAY_MS + (int64_t)(sg_splitmix64(&ch->rng) %
                                                  (CONV_DELAY_JITTER_MS + 1));
        const scn_click_t *oldest = NULL;

        for (int i = 0; i < cp->ring_cnt; i++) {
                const scn_click_t *c =
                    &cp->ring[(cp->ring_head - 1 - i + RING) % RING];

                if (c->time <= t - delay)
                        return c;
                oldest = c;
        }
        if (oldest && oldest->time <= t - CONV_MIN_DELAY_MS)
                return oldest;
        return NULL;
}

static void ring_add(scn_campaign_t *cp, const sg_event_t *click, uint64_t dev,
                     int ad)
{
        scn_click_t *c = &cp->ring[cp->ring_head];

        snprintf(c->id, sizeof(c->id), "%s", click->event_id);
        c->time = click->event_time;
        c->dev = dev;
        c->ad = ad;
        cp->ring_head = (cp->ring_head + 1) % RING;
        if (cp->ring_cnt < RING)
                cp->ring_cnt++;
}

static int flooding(const sg_scenario_t *sc, const scn_channel_t *ch,
                    int64_t offset)
{
        return ch->role == SG_SCN_FRAUD && offset >= sc->o.fraud_start_ms &&
               (sc->o.fraud_end_ms <= 0 || offset < sc->o.fraud_end_ms);
}

/* An extra click (flood, incident) of campaign fc at t, on the campaign's
 * latest ad and impression. */
static sg_scenario_rec_t *extra_click(scn_channel_t *ch, int fc, int64_t t)
{
        const scn_campaign_t *fp = &ch->camp[fc];
        sg_scenario_rec_t *r = push(ch, fc, SG_EV_CLICK, t);

        set_ad(ch, fc, fp->last_ad, &r->ev);
        if (fp->last_imp[0]) {
                snprintf(r->ev.ref_id, sizeof(r->ev.ref_id), "%s",
                         fp->last_imp);
                r->ev.has_ref_id = 1;
        }
        return r;
}

/* The channel's incident, while it lasts: rate clicks/s from declared
 * bots (the fraud channel's flood without its browser-agent share, each
 * click from one of the spread pool's hosts), at
 * +8 ms of the tick, after its conversion; alternate campaigns. */
static void gen_incident(sg_scenario_t *sc, scn_channel_t *ch, int64_t offset,
                         int64_t t0)
{
        scn_incident_t *in = &sc->inc[sc->incident_of[ch->idx] - 1];
        sg_scenario_rec_t *r;

        if (offset < in->start_ms || offset >= in->end_ms)
                return;
        /* rate clicks/s = rate / 100 per 10 ms tick. */
        in->acc += in->rate * ACC_ONE / 100;
        if (in->acc < ACC_ONE)
                return;
        in->acc -= ACC_ONE;
        r = extra_click(ch, (int)(in->n++ % SG_SCN_CAMPAIGNS), t0 + 8);
        set_bot(ch, &r->ev);
        /* Spread over the pool: a wave no source block stops, so each
         * incident is a case for the channel's pause. */
        spread_ip(ch, in->n, &r->ev);
        r->bot = 1;
        r->incident = sc->incident_of[ch->idx];
        r->ev.cost_micros = ch->click_cost;
}

/* Fills the channel's queue with the events of its next tick: an
 * impression at +0-1 ms, maybe its click at +3-4, maybe a conversion at
 * +6-7, maybe a flood click at +8-9 (strictly increasing times). */
static void gen_tick(sg_scenario_t *sc, scn_channel_t *ch)
{
        int64_t offset = ch->tick * TICK_MS;
        int64_t t0 = sc->o.start_ms + offset;
        int c = (int)(ch->tick % SG_SCN_CAMPAIGNS);
        scn_campaign_t *cp = &ch->camp[c];
        sg_scenario_rec_t *imp, *r;
        uint64_t dev = 0;
        int ad, clicks, bot;

        ch->q_len = ch->q_pos = 0;
        if (sc->o.duration_ms > 0 && offset >= sc->o.duration_ms) {
                ch->done = 1;
                return;
        }
        ch->tick++;

        ad = (int)(sg_splitmix64(&ch->rng) % ADS_PER_CAMPAIGN);
        cp->ctr_acc += CTR_PM;
        clicks = cp->ctr_acc >= ACC_ONE;
        if (clicks)
                cp->ctr_acc -= ACC_ONE;
        bot = clicks ? cp->clicks % BOT_CLICK_EVERY == BOT_CLICK_EVERY - 1
                     : cp->imps % CRAWLER_IMP_EVERY == CRAWLER_IMP_PHASE;
        cp->imps++;

        imp = push(ch, c, SG_EV_IMPRESSION, t0 + jitter(ch));
        set_ad(ch, c, ad, &imp->ev);
        if (bot) {
                set_bot(ch, &imp->ev);
        } else {
                dev = (uint64_t)(ch->human_n++ % DEVICE_POOL);
                set_human(ch, dev, &imp->ev);
        }
        imp->bot = bot;
        imp->ev.cost_micros = ch->imp_cost;
        snprintf(cp->last_imp, sizeof(cp->last_imp), "%s", imp->ev.event_id);
        cp->last_ad = ad;

        if (clicks) {
                r = push(ch, c, SG_EV_CLICK, t0 + 3 + jitter(ch));
                /* Same ad, device, IP, agent and country as its impression. */
                memcpy(r->ev.ad_id, imp->ev.ad_id, sizeof(r->ev.ad_id));
                memcpy(r->ev.device_id, imp->ev.device_id,
                       sizeof(r->ev.device_id));
                memcpy(r->ev.ip, imp->ev.ip, sizeof(r->ev.ip));
                memcpy(r->ev.user_agent, imp->ev.user_agent,
                       sizeof(r->ev.user_agent));
                memcpy(r->ev.country, imp->ev.country, sizeof(r->ev.country));
                r->ev.has_ad_id = r->ev.has_device_id = r->ev.has_ip =
                    r->ev.has_user_agent = r->ev.has_country = 1;
                snprintf(r->ev.ref_id, sizeof(r->ev.ref_id), "%s",
                         imp->ev.event_id);
                r->ev.has_ref_id = 1;
                r->ev.cost_micros = ch->click_cost;
                r->bot = bot;
                cp->clicks++;
                if (!bot)
                        ring_add(cp, &r->ev, dev, ad);

                cp->cvr_acc += cp->cvr_pm;
                if (cp->cvr_acc >= ACC_ONE) {
                        int64_t t = t0 + 6 + jitter(ch);
                        const scn_click_t *k = pick_click(ch, cp, t);

                        cp->cvr_acc -= ACC_ONE;
                        r = push(ch, c, SG_EV_CONVERSION, t);
                        if (k) {
                                set_ad(ch, c, k->ad, &r->ev);
                                set_human(ch, k->dev, &r->ev);
                                snprintf(r->ev.ref_id, sizeof(r->ev.ref_id),
                                         "%s", k->id);
                                r->ev.has_ref_id = 1;
                        } else {
                                /* Converted from a click before the
                                 * scenario began: no click_id. */
                                set_ad(ch, c, ad, &r->ev);
                                set_human(
                                    ch, (uint64_t)(ch->human_n++ % DEVICE_POOL),
                                    &r->ev);
                        }
                        r->ev.revenue_micros = ch->revenue;
                }
        }

        if (flooding(sc, ch, offset)) {
                ch->flood_acc += FLOOD_PM_PER_TICK;
                if (ch->flood_acc >= ACC_ONE) {
                        int64_t n = ch->flood_n++;
                        /* Alternate campaigns, and their browser-agent
                         * clicks too (every 10th: n = 9, 19, ...). */
                        int fc = (int)((n + n / FLOOD_HUMAN_EVERY) %
                                       SG_SCN_CAMPAIGNS);

                        ch->flood_acc -= ACC_ONE;
                        r = extra_click(ch, fc, t0 + 8 + jitter(ch));
                        if (n % FLOOD_HUMAN_EVERY == FLOOD_HUMAN_EVERY - 1) {
                                /* A browser agent behind a few residential
                                 * proxies: behavioural (SIVT) fraud that the
                                 * agent lists do not catch. Each has its own
                                 * device, so no duplicate-click tag either. */
                                uint64_t h = mix(ch->salt ^ 0xf100d, n + 1);

                                set_human(ch, DEVICE_POOL + (uint64_t)n,
                                          &r->ev);
                                snprintf(r->ev.ip, sizeof(r->ev.ip), "%s",
                                         ch->proxy_ips[h % PROXY_IPS]);
                        } else {
                                set_bot(ch, &r->ev);
                                r->bot = 1;
                                if (n % 2)
                                        spread_ip(ch, n, &r->ev);
                        }
                        r->ev.cost_micros = ch->click_cost;
                }
        }

        if (ch->ip_flood && offset >= sc->o.flood_start_ms &&
            (sc->o.flood_end_ms <= 0 || offset < sc->o.flood_end_ms)) {
                /* flood_rate clicks/s = flood_rate / 100 per 10 ms tick. */
                ch->ipf_acc += sc->o.flood_rate * ACC_ONE / 100;
                if (ch->ipf_acc >= ACC_ONE) {
                        int64_t n = ch->ipf_n++;
                        int fc = (int)(n % SG_SCN_CAMPAIGNS);

                        ch->ipf_acc -= ACC_ONE;
                        /* After this tick's conversion (+6-7): +9. */
                        r = extra_click(ch, fc, t0 + 9);
                        /* A fresh device each time (no duplicate-click
                         * tag), a browser agent, one of a few IPs. */
                        set_human(ch, 3 * DEVICE_POOL + (uint64_t)n, &r->ev);
                        snprintf(r->ev.ip, sizeof(r->ev.ip), "%s",
                                 ch->flood_ips[n % sc->o.flood_ips]);
                        if (sc->o.flood_invalid) {
                                /* Tagged invalid by ingest: the channel's
                                 * IVT breaker sees it. */
                                snprintf(r->ev.user_agent,
                                         sizeof(r->ev.user_agent), "%s",
                                         sg_scn_bot_uas[n % sg_scn_bot_ua_cnt]);
                                r->bot = 1;
                        }
                        r->ev.cost_micros = ch->click_cost;
                        r->flood = 1;
                }
        }

        if (sc->incident_of && sc->incident_of[ch->idx])
                gen_incident(sc, ch, offset, t0);
}

/* The i-th malformed record: kinds in turn, spread evenly over the run. */
static int64_t bad_time(const sg_scenario_t *sc, int i)
{
        if (sc->o.duration_ms > 0)
                return sc->o.start_ms + (2 * (int64_t)i + 1) *
                                            sc->o.duration_ms /
                                            (2 * (int64_t)sc->o.bad);
        return sc->o.start_ms + ((int64_t)i + 1) * 10000;
}

static void gen_bad(sg_scenario_t *sc, int i, sg_scenario_rec_t *rec)
{
        const scn_channel_t *ch = &sc->ch[i % sc->cnt];
        sg_event_t *ev = &rec->ev;

        memset(rec, 0, sizeof(*rec));
        rec->bad = (sg_scn_bad_t)(1 + i % (SG_SCN_BAD__CNT - 1));
        rec->channel_idx = ch->idx;
        ev->type =
            rec->bad == SG_SCN_BAD_NEG_COST ? SG_EV_CLICK : SG_EV_IMPRESSION;
        ev->event_time = bad_time(sc, i);
        snprintf(ev->event_id, sizeof(ev->event_id), "e-%" PRIu64 "-bad-%d",
                 sc->o.seed, i);
        snprintf(ev->channel, sizeof(ev->channel), "%s", ch->conf.name);
        snprintf(ev->campaign_id, sizeof(ev->campaign_id), "%s",
                 ch->camp[0].id);
        set_ad(ch, 0, 0, ev);
        set_human(ch, DEVICE_POOL * 2 + (uint64_t)i, ev);
        ev->cost_micros =
            rec->bad == SG_SCN_BAD_NEG_COST ? -ch->click_cost : ch->imp_cost;
}

int sg_scenario_next(sg_scenario_t *sc, sg_scenario_rec_t *rec)
{
        scn_channel_t *best = NULL;

        for (int i = 0; i < sc->cnt; i++) {
                scn_channel_t *ch = &sc->ch[i];

                if (ch->q_pos == ch->q_len && !ch->done)
                        gen_tick(sc, ch);
                if (ch->q_pos == ch->q_len)
                        continue;
                if (!best || ch->q[ch->q_pos].ev.event_time <
                                 best->q[best->q_pos].ev.event_time)
                        best = ch;
        }
        if (sc->bad_next < sc->o.bad &&
            (!best || bad_time(sc, sc->bad_next) <=
                          best->q[best->q_pos].ev.event_time)) {
                gen_bad(sc, sc->bad_next++, rec);
                return 1;
        }
        if (!best)
                return 0;
        *rec = best->q[best->q_pos++];
        return 1;
}

/* ----------------------------------------------------------------- truth */

static void incident_click(sg_scenario_t *sc, const sg_scenario_rec_t *rec);

void sg_scenario_account(sg_scenario_t *sc, const sg_scenario_rec_t *rec)
{
        scn_truth_t *t;
        int64_t cost;

        sc->sent++;
        if (rec->bad != SG_SCN_OK) {
                sc->rejected[rec->bad]++;
                return;
        }
        t = &sc->ch[rec->channel_idx].camp[rec->campaign_idx].truth;
        sc->flood_clicks += rec->flood;
        cost = rec->ev.type == SG_EV_CONVERSION ? 0 : rec->ev.cost_micros;
        switch (rec->ev.type) {
        case SG_EV_IMPRESSION:
                t->impressions++;
                t->invalid_impressions += rec->bot;
                break;
        case SG_EV_CLICK:
                t->clicks++;
                t->invalid_clicks += rec->bot;
                break;
        case SG_EV_CONVERSION:
                t->conversions++;
                t->revenue_micros += rec->ev.revenue_micros;
                break;
        default:
                break;
        }
        t->spend_micros += cost;
        if (rec->bot)
                t->invalid_spend_micros += cost;
        if (sc->incident_of && sc->incident_of[rec->channel_idx] &&
            rec->ev.type == SG_EV_CLICK)
                incident_click(sc, rec);
}

/*
 * Counts a click of an incident's channel in the running window the
 * trigger is judged on, and finds the trigger: from the incident's first
 * click on, the first click after which the window (trigger_window_ms,
 * made of trigger_step_ms steps, the last one the click's) holds at least
 * trigger_min_clicks clicks and more than trigger_ivt of them invalid.
 */
static void incident_click(sg_scenario_t *sc, const sg_scenario_rec_t *rec)
{
        int k = sc->incident_of[rec->channel_idx] - 1;
        scn_incident_t *in = &sc->inc[k];
        int64_t step = rec->ev.event_time / sc->o.trigger_step_ms;
        int nsteps = (int)(sc->o.trigger_window_ms / sc->o.trigger_step_ms);
        int slot = (int)(step % nsteps);
        int64_t clicks = 0, invalid = 0;

        if (in->step[slot] != step) {
                in->step[slot] = step;
                in->step_clicks[slot] = in->step_invalid[slot] = 0;
        }
        in->step_clicks[slot]++;
        in->step_invalid[slot] += rec->bot;
        if (rec->incident) {
                in->clicks++;
                in->invalid_spend += rec->ev.cost_micros;
                if (in->onset_ms < 0)
                        in->onset_ms = rec->ev.event_time;
        }
        if (in->onset_ms < 0 || in->trigger_ms >= 0)
                return;
        for (int s = 0; s < nsteps; s++)
                if (in->step[s] > step - nsteps) {
                        clicks += in->step_clicks[s];
                        invalid += in->step_invalid[s];
                }
        if (clicks >= sc->o.trigger_min_clicks &&
            (double)invalid > sc->o.trigger_ivt * (double)clicks) {
                in->trigger_ms = rec->ev.event_time;
                sc->trigger_pending = k + 1;
        }
}

void sg_scenario_sent_at(sg_scenario_t *sc, const sg_scenario_rec_t *rec,
                         int64_t wall_ms)
{
        if (rec->incident && sc->inc[rec->incident - 1].onset_wall < 0)
                sc->inc[rec->incident - 1].onset_wall = wall_ms;
        if (sc->trigger_pending) {
                sc->inc[sc->trigger_pending - 1].trigger_wall = wall_ms;
                sc->trigger_pending = 0;
        }
}

static void truth_add(scn_truth_t *sum, const scn_truth_t *t)
{
        sum->impressions += t->impressions;
        sum->clicks += t->clicks;
        sum->conversions += t->conversions;
        sum->spend_micros += t->spend_micros;
        sum->revenue_micros += t->revenue_micros;
        sum->invalid_clicks += t->invalid_clicks;
        sum->invalid_impressions += t->invalid_impressions;
        sum->invalid_spend_micros += t->invalid_spend_micros;
}

static void put_truth(FILE *fp, const char *channel, const char *campaign,
                      const scn_truth_t *t)
{
        fputs("{\"channel\":", fp);
        sg_json_put_str(fp, channel);
        fputs(",\"campaign_id\":", fp);
        if (campaign)
                sg_json_put_str(fp, campaign);
        else
                fputs("null", fp);
        fprintf(fp,
                ",\"impressions\":%" PRId64 ",\"clicks\":%" PRId64
                ",\"conversions\":%" PRId64 ",\"spend_micros\":%" PRId64
                ",\"revenue_micros\":%" PRId64 ",\"invalid_clicks\":%" PRId64
                ",\"invalid_impressions\":%" PRId64
                ",\"invalid_spend_micros\":%" PRId64 "}\n",
                t->impressions, t->clicks, t->conversions, t->spend_micros,
                t->revenue_micros, t->invalid_clicks, t->invalid_impressions,
                t->invalid_spend_micros);
}

static void put_ms(FILE *fp, const char *key, int64_t ms)
{
        if (ms < 0)
                fprintf(fp, ",\"%s\":null", key);
        else
                fprintf(fp, ",\"%s\":%" PRId64, key, ms);
}

static void put_incidents(const sg_scenario_t *sc, FILE *fp)
{
        int first = 1;

        for (int i = 0; i < sc->o.incidents; i++) {
                const scn_incident_t *in = &sc->inc[i];
                const scn_channel_t *ch = &sc->ch[in->channel_idx];

                fprintf(fp, "{\"incident\":{\"index\":%d,\"channel\":", i);
                sg_json_put_str(fp, ch->conf.name);
                fprintf(fp,
                        ",\"rate\":%d,\"start_ms\":%" PRId64
                        ",\"end_ms\":%" PRId64
                        ",\"click_cost_micros\":%" PRId64
                        ",\"clicks\":%" PRId64
                        ",\"invalid_spend_micros\":%" PRId64,
                        in->rate, in->start_ms, in->end_ms, ch->click_cost,
                        in->clicks, in->invalid_spend);
                put_ms(fp, "onset_event_ms", in->onset_ms);
                put_ms(fp, "onset_wall_ms", in->onset_wall);
                put_ms(fp, "trigger_event_ms", in->trigger_ms);
                put_ms(fp, "trigger_wall_ms", in->trigger_wall);
                fputs("}}\n", fp);
        }
        fputs("{\"healthy_channels\":[", fp);
        for (int i = 0; i < sc->cnt; i++) {
                const scn_channel_t *ch = &sc->ch[i];

                if (ch->role != SG_SCN_HEALTHY || ch->ip_flood ||
                    sc->incident_of[i] ||
                    !strcmp(ch->camp[0].id, sc->overrun_campaign))
                        continue;
                if (!first)
                        fputc(',', fp);
                first = 0;
                sg_json_put_str(fp, ch->conf.name);
        }
        fputs("]}\n", fp);
}

static int by_name(const void *a, const void *b)
{
        const scn_channel_t *x = *(const scn_channel_t *const *)a;
        const scn_channel_t *y = *(const scn_channel_t *const *)b;

        return strcmp(x->conf.name, y->conf.name);
}

int sg_scenario_write_truth(const sg_scenario_t *sc, FILE *fp)
{
        const scn_channel_t *sorted[SG_CONF_MAX_CHANNELS];
        int n = sc->cnt < SG_CONF_MAX_CHANNELS ? sc->cnt : SG_CONF_MAX_CHANNELS;

        for (int i = 0; i < n; i++)
                sorted[i] = &sc->ch[i];
        qsort(sorted, n, sizeof(sorted[0]), by_name);
        for (int i = 0; i < n; i++) {
                const scn_channel_t *ch = sorted[i];
                scn_truth_t sum = {0};

                for (int c = 0; c < SG_SCN_CAMPAIGNS; c++)
                        truth_add(&sum, &ch->camp[c].truth);
                put_truth(fp, ch->conf.name, NULL, &sum);
                for (int c = 0; c < SG_SCN_CAMPAIGNS; c++)
                        put_truth(fp, ch->conf.name, ch->camp[c].id,
                                  &ch->camp[c].truth);
        }
        if (sc->flood_channel[0] || sc->overrun_campaign[0]) {
                char src[SG_SCN_FLOOD_IPS_MAX][SG_SOURCE_LEN];
                int k =
                    sg_scenario_flood_sources(sc, src, SG_SCN_FLOOD_IPS_MAX);

                fputs("{\"roles\":{\"flood_channel\":", fp);
                sg_json_put_str(fp, sc->flood_channel);
                fputs(",\"flood_sources\":[", fp);
                for (int i = 0; i < k; i++) {
                        if (i)
                                fputc(',', fp);
                        sg_json_put_str(fp, src[i]);
                }
                fprintf(fp,
                        "],\"flood_clicks\":%" PRId64 ",\"overrun_campaign\":",
                        sc->flood_clicks);
                sg_json_put_str(fp, sc->overrun_campaign);
                fputs("}}\n", fp);
        }
        if (sc->o.incidents > 0)
                put_incidents(sc, fp);
        fputs("{\"rejected\":{", fp);
        for (int k = 1; k < SG_SCN_BAD__CNT; k++)
                fprintf(fp, "%s\"%s\":%" PRId64, k > 1 ? "," : "",
                        sg_scenario_bad_reason((sg_scn_bad_t)k),
                        sc->rejected[k]);
        fprintf(fp, "},\"sent\":%" PRId64 "}\n", sc->sent);
        return fflush(fp) == 0 && !ferror(fp) ? 0 : -1;
}
