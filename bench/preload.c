/*
 * sg-bench-preload: the benchmark's traffic. A realistic mix (impressions :
 * clicks : conversions = 100 : 5 : 0.5 over channels x campaigns) produced as
 * input events (Avro, Confluent framing), as the normalized events ingest
 * would write to topics.events, or as aggregate snapshots and decisions;
 * either preloaded as fast as possible or paced by schedule (--steps).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "conf.h"
#include "kafka.h"
#include "log.h"
#include "marker.h"
#include "rules.h"
#include "scenario.h"
#include "stage.h"

#define RECORD_MAX 4096
#define MAX_STEPS  16
#define DEVICES    1000000 /* human devices per channel */
#define IMP_COST   2000    /* micros: a CPM of 2 */
#define CLICK_COST 100000
#define REVENUE    5000000

typedef enum { W_INPUT, W_EVENTS, W_SNAPSHOTS, W_DECISIONS } what_t;

typedef struct step {
        double rate;
        int seconds;
} step_t;

typedef struct opts {
        const char *config;
        what_t what;
        int64_t events;
        int channels, campaigns, fraud;
        int fraud_period_s; /* 0: fraud channels are always on */
        double event_rate;  /* events per second of event time (preload) */
        int src_partitions;
        uint64_t seed;
        step_t steps[MAX_STEPS];
        int step_cnt;
} opts_t;

static const char *const countries[] = {"US", "US", "US", "GB", "DE",
                                        "FR", "BR", "IN", "JP", "CA"};
static const int human_octets[] = {24, 68, 71, 73, 76, 98};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static void usage(FILE *fp)
{
        fprintf(fp,
                "Usage: sg-bench-preload [-c FILE] --what "
                "input|events|snapshots|decisions [options]\n\n"
                "  --events N          records to produce (default 100000; "
                "with --steps: rate x time)\n"
                "  --channels C        channels (default 20)\n"
                "  --campaigns K       campaigns per channel (default 100)\n"
                "  --fraud F           the first F channels send 50%% bot "
                "clicks (others 2%%)\n"
                "  --fraud-period S    input and events: a fraud channel "
                "sends bots for S s, then\n"
                "                      none for S s, and so on (staggered "
                "by channel; default 0:\n"
                "                      always)\n"
                "  --event-rate E      events per second of event time "
                "(default 50000)\n"
                "  --src-partitions P  input partitions stamped on normalized "
                "events (default 16)\n"
                "  --steps R:S,...     paced: R records/s for S s each; event "
                "time = scheduled send time\n"
                "  --seed N            PRNG seed (default 1)\n\n"
                "Prints one line: sent=N seconds=S eps=E behind_max_ms=B, "
                "and with --steps one\n"
                "`step` line per step (rate, start_ms, end_ms, sent). Exit 1 "
                "when a record was not\n"
                "acknowledged or the broker no longer holds every record "
                "produced.\n");
}

static void bad_usage(const char *what, const char *arg)
{
        fprintf(stderr, "sg-bench-preload: %s: %s (try --help)\n", what, arg);
        exit(2);
}

static int64_t parse_int(const char *opt, const char *s, int64_t min,
                         int64_t max)
{
        char *end;
        long long v;

        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno || end == s || *end || v < min || v > max)
                bad_usage(opt, s);
        return v;
}

static void parse_steps(opts_t *o, const char *s)
{
        char *copy = strdup(s), *save = NULL;

        for (char *t = strtok_r(copy, ",", &save); t;
             t = strtok_r(NULL, ",", &save)) {
                step_t *st;

                if (o->step_cnt == MAX_STEPS)
                        bad_usage("--steps: too many", s);
                st = &o->steps[o->step_cnt++];
                if (sscanf(t, "%lf:%d", &st->rate, &st->seconds) != 2 ||
                    st->rate <= 0 || st->seconds <= 0)
                        bad_usage("--steps", t);
        }
        free(copy);
}

static void parse_args(int argc, char **argv, opts_t *o)
{
        enum {
                O_WHAT = 256,
                O_EVENTS,
                O_CHANNELS,
                O_CAMPAIGNS,
                O_FRAUD,
                O_FRAUD_PERIOD,
                O_EVENT_RATE,
                O_SRC_PARTS,
                O_STEPS,
                O_SEED,
        };
        static const struct option opts[] = {
            {"config", required_argument, NULL, 'c'},
            {"what", required_argument, NULL, O_WHAT},
            {"events", required_argument, NULL, O_EVENTS},
            {"channels", required_argument, NULL, O_CHANNELS},
            {"campaigns", required_argument, NULL, O_CAMPAIGNS},
            {"fraud", required_argument, NULL, O_FRAUD},
            {"fraud-period", required_argument, NULL, O_FRAUD_PERIOD},
            {"event-rate", required_argument, NULL, O_EVENT_RATE},
            {"src-partitions", required_argument, NULL, O_SRC_PARTS},
            {"steps", required_argument, NULL, O_STEPS},
            {"seed", required_argument, NULL, O_SEED},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0}};
        int c;

        memset(o, 0, sizeof(*o));
        o->events = 100000;
        o->channels = 20;
        o->campaigns = 100;
        o->event_rate = 50000;
        o->src_partitions = 16;
        o->seed = 1;
        o->what = -1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        o->config = optarg;
                        break;
                case O_WHAT:
                        o->what =
                            strcmp(optarg, "input") == 0       ? W_INPUT
                            : strcmp(optarg, "events") == 0    ? W_EVENTS
                            : strcmp(optarg, "snapshots") == 0 ? W_SNAPSHOTS
                            : strcmp(optarg, "decisions") == 0 ? W_DECISIONS
                                                               : (what_t)-1;
                        if ((int)o->what == -1)
                                bad_usage("--what", optarg);
                        break;
                case O_EVENTS:
                        o->events = parse_int("--events", optarg, 1, 1L << 40);
                        break;
                case O_CHANNELS:
                        o->channels =
                            (int)parse_int("--channels", optarg, 1, 1000);
                        break;
                case O_CAMPAIGNS:
                        o->campaigns =
                            (int)parse_int("--campaigns", optarg, 1, 1000000);
                        break;
                case O_FRAUD:
                        o->fraud = (int)parse_int("--fraud", optarg, 0, 1000);
                        break;
                case O_FRAUD_PERIOD:
                        o->fraud_period_s =
                            (int)parse_int("--fraud-period", optarg, 0, 86400);
                        break;
                case O_EVENT_RATE:
                        o->event_rate = (double)parse_int("--event-rate",
                                                          optarg, 1, 100000000);
                        break;
                case O_SRC_PARTS:
                        o->src_partitions =
                            (int)parse_int("--src-partitions", optarg, 1, 1000);
                        break;
                case O_STEPS:
                        parse_steps(o, optarg);
                        break;
                case O_SEED:
                        o->seed =
                            (uint64_t)parse_int("--seed", optarg, 0, INT64_MAX);
                        break;
                case 'h':
                        usage(stdout);
                        exit(0);
                default:
                        bad_usage("unknown option or missing argument",
                                  argv[optind - 1]);
                }
        }
        if ((int)o->what == -1)
                bad_usage("--what", "missing");
        if (o->step_cnt && o->what != W_INPUT)
                bad_usage("--steps", "only with --what input");
}

/* ------------------------------------------------------------ the mix */

/*
 * Impressions on a random channel and campaign; every 20th impression is
 * followed by its click (5%), every 10th click by its conversion (0.5%).
 * Counts come from accumulators, the rest from the PRNG.
 */
typedef struct mix {
        const opts_t *o;
        uint64_t rng;
        int64_t n;    /* events made */
        int click_in; /* impressions until the next click */
        int conv_in;  /* clicks until the next conversion */
        sg_event_t last_imp, last_click;
        int pending; /* 1: last_imp's click is next, 2: last_click's
                        conversion is next */
        int bot_next;
        int64_t bots; /* clicks from bots so far, per 50 */
} mix_t;

static void mix_init(mix_t *m, const opts_t *o)
{
        memset(m, 0, sizeof(*m));
        m->o = o;
        m->rng = o->seed * 0x2545f4914f6cdd1dULL + 1;
        m->click_in = 20;
        m->conv_in = 10;
}

static void set_str(char *dst, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_str(char *dst, size_t size, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(dst, size, fmt, ap);
        va_end(ap);
}

static void mix_id(mix_t *m, sg_event_t *ev)
{
        set_str(ev->event_id, sizeof(ev->event_id), "e%" PRIx64 "-%" PRIx64,
                m->o->seed, m->n);
}

/* The next event, at event time t. */
static void mix_next(mix_t *m, sg_event_t *ev, int64_t t)
{
        const opts_t *o = m->o;

        if (m->pending == 1) {
                /* The click on the last impression, from its device. */
                *ev = m->last_imp;
                ev->type = SG_EV_CLICK;
                mix_id(m, ev);
                ev->event_time = t;
                ev->cost_micros = CLICK_COST;
                snprintf(ev->ref_id, sizeof(ev->ref_id), "%s",
                         m->last_imp.event_id);
                ev->has_ref_id = 1;
                m->last_click = *ev;
                m->pending = --m->conv_in == 0 ? 2 : 0;
                if (m->pending)
                        m->conv_in = 10;
        } else if (m->pending == 2) {
                *ev = m->last_click;
                ev->type = SG_EV_CONVERSION;
                mix_id(m, ev);
                ev->event_time = t;
                ev->cost_micros = 0;
                ev->revenue_micros = REVENUE;
                snprintf(ev->ref_id, sizeof(ev->ref_id), "%s",
                         m->last_click.event_id);
                m->pending = 0;
        } else {
                uint64_t r = sg_splitmix64(&m->rng);
                int ch = (int)(r % (uint64_t)o->channels);
                int camp = (int)((r >> 20) % (uint64_t)o->campaigns);
                int clicked = --m->click_in == 0;
                /* 1 in 2 clicks from bots on a fraud channel (in its on
                 * phase), else 1 in 50: the clicked impression and its
                 * click alike. */
                int fraud = ch < o->fraud &&
                            (o->fraud_period_s == 0 ||
                             (t / 1000 / o->fraud_period_s + ch) % 2 == 0);
                int bot =
                    clicked && (fraud ? (r >> 60) & 1 : (r >> 50) % 50 == 0);
                uint64_t d = sg_splitmix64(&m->rng);

                memset(ev, 0, sizeof(*ev));
                ev->type = SG_EV_IMPRESSION;
                mix_id(m, ev);
                ev->event_time = t;
                set_str(ev->channel, sizeof(ev->channel), "ch%02d", ch);
                set_str(ev->campaign_id, sizeof(ev->campaign_id), "ch%02d-k%d",
                        ch, camp);
                set_str(ev->ad_id, sizeof(ev->ad_id), "ch%02d-k%d-a%d", ch,
                        camp, (int)(d % 3));
                ev->has_ad_id = 1;
                if (bot) {
                        set_str(ev->device_id, sizeof(ev->device_id),
                                "bot-%02x", (int)(d >> 8) & 0xf);
                        set_str(ev->ip, sizeof(ev->ip), "34.%d.%d.%d",
                                (int)(d >> 16) & 0xff, (int)(d >> 24) & 0xff,
                                1 + (int)((d >> 32) % 254));
                        snprintf(ev->user_agent, sizeof(ev->user_agent), "%s",
                                 sg_scn_bot_uas[(d >> 40) % sg_scn_bot_ua_cnt]);
                } else {
                        set_str(ev->device_id, sizeof(ev->device_id),
                                "d%02d%06" PRIx64, ch, (d >> 8) % DEVICES);
                        set_str(ev->ip, sizeof(ev->ip), "%d.%d.%d.%d",
                                human_octets[d % NELEM(human_octets)],
                                (int)(d >> 16) & 0xff, (int)(d >> 24) & 0xff,
                                1 + (int)((d >> 32) % 254));
                        snprintf(
                            ev->user_agent, sizeof(ev->user_agent), "%s",
                            sg_scn_human_uas[(d >> 40) % sg_scn_human_ua_cnt]);
                }
                ev->has_device_id = ev->has_ip = ev->has_user_agent = 1;
                snprintf(ev->country, sizeof(ev->country), "%s",
                         countries[(d >> 48) % NELEM(countries)]);
                ev->has_country = 1;
                ev->cost_micros = IMP_COST;
                if (bot)
                        ev->ivt_mask = SG_IVT_BOT_UA;
                m->last_imp = *ev;
                if (clicked) {
                        m->click_in = 20;
                        m->pending = 1;
                }
        }
        if (ev->ivt_mask)
                snprintf(ev->ivt_reason, sizeof(ev->ivt_reason), "bot_ua");
        m->n++;
}

/* --------------------------------------------------------- snapshots */

/*
 * What aggregate sends per second of event time with a 10 s window: a
 * rolling snapshot of every scope (channel, then its campaigns) and, every
 * 10 s, the final KPI row of each. Counts follow the mix at event_rate.
 */
static void snapshot_at(const opts_t *o, int64_t i, int64_t t0,
                        sg_snapshot_t *s)
{
        int64_t per_scope = o->channels * (int64_t)(o->campaigns + 1);
        int64_t sec = i / (2 * per_scope), k = i % (2 * per_scope);
        int final = k >= per_scope;
        int64_t scope = final ? k - per_scope : k;
        int ch = (int)(scope / (o->campaigns + 1));
        int camp = (int)(scope % (o->campaigns + 1)) - 1; /* -1: channel */
        double imps = o->event_rate * 10 / 1.055 / o->channels;

        memset(s, 0, sizeof(*s));
        set_str(s->channel, sizeof(s->channel), "ch%02d", ch);
        if (camp >= 0) {
                set_str(s->campaign_id, sizeof(s->campaign_id), "ch%02d-k%d",
                        ch, camp);
                imps /= o->campaigns;
        }
        s->window_end = t0 + (sec + 1) * 1000;
        s->window_start = s->window_end - 10000;
        s->final = final;
        /* The one rolling window of bench/run.sh's config. */
        snprintf(s->window, sizeof(s->window), "10s");
        s->c.impressions = (int64_t)imps;
        s->c.clicks = (int64_t)(imps * 0.05);
        s->c.conversions = (int64_t)(imps * 0.005);
        s->c.spend_micros =
            s->c.impressions * IMP_COST + s->c.clicks * CLICK_COST;
        s->c.revenue_micros = s->c.conversions * REVENUE;
        s->c.invalid_clicks =
            ch < o->fraud ? s->c.clicks / 2 : s->c.clicks / 50;
        s->c.invalid_impressions = s->c.invalid_clicks;
        s->c.invalid_spend_micros =
            s->c.invalid_clicks * (CLICK_COST + IMP_COST);
        s->c.unique_devices = s->c.impressions;
        s->watermark = s->window_end;
}

static void decision_at(const opts_t *o, int64_t i, int64_t t0,
                        sg_decision_t *d)
{
        memset(d, 0, sizeof(*d));
        snprintf(d->rule_id, sizeof(d->rule_id), "ivt_alert");
        d->action = SG_ACT_ALERT;
        set_str(d->channel, sizeof(d->channel), "ch%02d",
                (int)(i % o->channels));
        d->window_end = t0 + (i / o->channels + 1) * 1000;
        d->window_start = d->window_end - 10000;
        d->decided_at = d->window_end;
        d->budget_cnt = -1;
        snprintf(d->reason, sizeof(d->reason),
                 "ivt_alert: ivt_rate 0.5000 > 0.25 over a 10 s window, "
                 "clicks=2370");
        d->metric_cnt = 2;
        snprintf(d->metrics[0].name, sizeof(d->metrics[0].name), "ivt_rate");
        d->metrics[0].value = 0.5;
        snprintf(d->metrics[1].name, sizeof(d->metrics[1].name), "threshold");
        d->metrics[1].value = 0.25;
        sg_decision_id(d->rule_id, d->action, d->channel, d->campaign_id,
                       d->window_start, d->window_end, d->decision_id);
}

/* ------------------------------------------------------------- produce */

static const char *input_topic(const sg_conf_t *conf, sg_event_type_t t)
{
        return t == SG_EV_CLICK        ? conf->topics.clicks
               : t == SG_EV_CONVERSION ? conf->topics.conversions
                                       : conf->topics.impressions;
}

typedef struct out {
        const char *topic;
        int64_t sent;
} out_t;

/* Sum over the topic's partitions of (high - low), or -1. */
static int64_t retained(rd_kafka_t *rk, const char *topic)
{
        const struct rd_kafka_metadata *md;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        int64_t sum = 0;

        if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) != 0) {
                rd_kafka_topic_destroy(rkt);
                return -1;
        }
        for (int p = 0; md->topic_cnt == 1 && p < md->topics[0].partition_cnt;
             p++) {
                int64_t lo, hi;

                if (rd_kafka_query_watermark_offsets(
                        rk, topic, md->topics[0].partitions[p].id, &lo, &hi,
                        10000) != 0) {
                        sum = -1;
                        break;
                }
                sum += hi - lo;
        }
        rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        return sum;
}

static int partition_count(rd_kafka_t *rk, const char *topic)
{
        const struct rd_kafka_metadata *md;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        int n = -1;

        if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == 0) {
                if (md->topic_cnt == 1 && !md->topics[0].err)
                        n = md->topics[0].partition_cnt;
                rd_kafka_metadata_destroy(md);
        }
        rd_kafka_topic_destroy(rkt);
        return n;
}

/*
 * As ingest does (docs/watermark.md): a watermark marker for every input
 * partition stamped on the normalized events, into every sg.events
 * partition, saying its event time has come to t (or, at the end, that it
 * is idle), all of them in one record per partition. Returns the marker
 * records sent, or -1.
 */
static int64_t send_markers(sg_producer_t *p, const sg_conf_t *conf,
                            const opts_t *o, int parts, int64_t t, int idle)
{
        const char *topics[3] = {conf->topics.impressions, conf->topics.clicks,
                                 conf->topics.conversions};
        int cnt = 3 * o->src_partitions, k = 0;
        sg_marker_t *m = calloc((size_t)cnt, sizeof(*m));
        int64_t n = 0;

        if (!m)
                return -1;
        for (int x = 0; x < 3; x++)
                for (int sp = 0; sp < o->src_partitions; sp++, k++) {
                        snprintf(m[k].source, sizeof(m[k].source), "%s/%d",
                                 topics[x], sp);
                        m[k].event_time = t;
                        m[k].idle = idle;
                }
        for (int q = 0; q < parts && n >= 0; q++) {
                int r = sg_marker_send(p, conf->topics.events, q, m, cnt);

                n = r < 0 ? -1 : n + r;
        }
        free(m);
        return n;
}

static void sleep_us(int64_t us)
{
        struct timespec ts = {us / 1000000, (us % 1000000) * 1000};

        nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
        static sg_conf_t conf;
        static unsigned char buf[RECORD_MAX];
        static sg_event_t ev;
        static sg_snapshot_t snap;
        static sg_decision_t dec;
        out_t outs[4] = {{0}};
        int out_cnt = 0;
        sg_producer_t *producer = NULL;
        sg_codec_t *codec = NULL;
        int64_t *src_off = NULL;
        char errstr[512];
        opts_t o;
        mix_t mix;
        int64_t total, t0_ms, mono0, sent = 0, behind_max = 0;
        int rc = 1, step = 0;
        int64_t step_start_us = 0, step_base = 0, step_start_ms = 0;
        int64_t marked_s = INT64_MIN, markers = 0, last_t = INT64_MIN;
        int event_parts = 0;

        sg_log_init("bench-preload");
        parse_args(argc, argv, &o);
        if (sg_conf_load(&conf, o.config, errstr, sizeof(errstr)) == -1) {
                fprintf(stderr, "sg-bench-preload: bad config: %s\n", errstr);
                return 2;
        }
        sg_log_set_level(conf.log_level);
        sg_stage_signals();
        codec = sg_codec_new(conf.schemas_dir, errstr, sizeof(errstr));
        producer = codec ? sg_producer_new(&conf, "sg-bench-preload", errstr,
                                           sizeof(errstr))
                         : NULL;
        src_off = calloc(4 * (size_t)o.src_partitions, sizeof(*src_off));
        if (!codec || !producer || !src_off) {
                fprintf(stderr, "sg-bench-preload: %s\n", errstr);
                goto out;
        }
        if (o.what == W_EVENTS) {
                event_parts = partition_count(sg_producer_handle(producer),
                                              conf.topics.events);
                if (event_parts < 1) {
                        fprintf(stderr, "sg-bench-preload: no metadata for "
                                        "%s\n",
                                conf.topics.events);
                        goto out;
                }
        }
        mix_init(&mix, &o);
        total = o.events;
        if (o.step_cnt) {
                total = 0;
                for (int i = 0; i < o.step_cnt; i++)
                        total +=
                            (int64_t)(o.steps[i].rate * o.steps[i].seconds);
        }
        /* Preloaded event times end 2 s before now; paced ones are the
         * send schedule itself. */
        t0_ms = o.step_cnt ? sg_now_ms()
                           : sg_now_ms() - 2000 -
                                 (int64_t)(total * 1000 / o.event_rate);
        mono0 = sg_mono_us();
        step_start_us = mono0;
        step_start_ms = t0_ms;
        for (int64_t i = 0; i < total && !sg_stop; i++) {
                const char *topic, *key;
                int64_t t;
                int n;

                if (o.step_cnt) {
                        /* Record i of this step is due at its start +
                         * (i - base) / rate: a late send keeps its
                         * scheduled event time (no coordinated omission). */
                        const step_t *st = &o.steps[step];
                        int64_t k = i - step_base;
                        int64_t due_us =
                            step_start_us + (int64_t)(k * 1e6 / st->rate);
                        int64_t now_us = sg_mono_us();

                        if (k >= (int64_t)(st->rate * st->seconds)) {
                                printf("step rate=%.0f start_ms=%" PRId64
                                       " end_ms=%" PRId64 " sent=%" PRId64 "\n",
                                       st->rate, step_start_ms,
                                       step_start_ms + st->seconds * 1000, k);
                                step_start_us += (int64_t)st->seconds * 1000000;
                                step_start_ms += (int64_t)st->seconds * 1000;
                                step_base = i;
                                step++;
                                st = &o.steps[step];
                                k = 0;
                                due_us = step_start_us;
                        }
                        if (due_us > now_us) {
                                sg_producer_poll(producer);
                                sleep_us(due_us - now_us);
                        } else if (now_us - due_us > behind_max) {
                                behind_max = now_us - due_us;
                        }
                        t = step_start_ms + (due_us - step_start_us) / 1000;
                } else {
                        t = t0_ms + (int64_t)(i * 1000 / o.event_rate);
                }
                switch (o.what) {
                case W_INPUT:
                case W_EVENTS:
                        mix_next(&mix, &ev, t);
                        if (o.what == W_INPUT) {
                                n = sg_codec_encode_input(
                                    codec, SG_FMT_AVRO, &ev, buf, sizeof(buf));
                                topic = input_topic(&conf, ev.type);
                                key = ev.device_id;
                        } else {
                                /* As ingest stamps them: each input
                                 * partition's offsets increase. */
                                int sp = (int)(sg_splitmix64(&mix.rng) %
                                               (uint64_t)o.src_partitions);

                                snprintf(ev.src_topic, sizeof(ev.src_topic),
                                         "%s", input_topic(&conf, ev.type));
                                ev.src_partition = sp;
                                ev.src_offset =
                                    src_off[ev.type * o.src_partitions + sp]++;
                                /* Each second of event time, the markers
                                 * that ingest would send. */
                                if (t / 1000 != marked_s) {
                                        int64_t k = marked_s == INT64_MIN
                                                        ? 0
                                                        : send_markers(
                                                              producer, &conf,
                                                              &o, event_parts,
                                                              last_t, 0);
                                        if (k < 0)
                                                goto out;
                                        markers += k;
                                        marked_s = t / 1000;
                                }
                                last_t = t;
                                n = sg_codec_encode_normalized(codec, &ev, buf,
                                                               sizeof(buf));
                                topic = conf.topics.events;
                                key = ev.channel;
                        }
                        break;
                case W_SNAPSHOTS:
                        snapshot_at(&o, i, t0_ms, &snap);
                        n = sg_codec_encode_snapshot(codec, &snap, buf,
                                                     sizeof(buf));
                        topic = conf.topics.aggregates;
                        key = snap.channel;
                        break;
                default:
                        decision_at(&o, i, t0_ms, &dec);
                        n = sg_codec_encode_decision(codec, SG_FMT_AVRO, &dec,
                                                     buf, sizeof(buf));
                        topic = conf.topics.decisions;
                        key = dec.channel;
                        break;
                }
                if (n < 0) {
                        fprintf(stderr, "sg-bench-preload: encode: %s\n",
                                sg_codec_error(codec));
                        goto out;
                }
                if (sg_producer_send(producer, topic, -1, key, strlen(key), buf,
                                     (size_t)n, NULL) == -1)
                        goto out;
                for (int k = 0;; k++) {
                        if (k == out_cnt) {
                                outs[out_cnt].topic = topic;
                                outs[out_cnt++].sent = 0;
                        }
                        if (outs[k].topic == topic) {
                                outs[k].sent++;
                                break;
                        }
                }
                sent++;
                if (sent % 1000 == 0)
                        sg_producer_poll(producer);
        }
        if (o.what == W_EVENTS && last_t != INT64_MIN) {
                /* The end: every input is read, as ingest's idle markers
                 * say. */
                int64_t k = send_markers(producer, &conf, &o, event_parts,
                                         last_t, 1);
                if (k < 0)
                        goto out;
                markers += k;
                for (int j = 0; j < out_cnt; j++)
                        if (!strcmp(outs[j].topic, conf.topics.events))
                                outs[j].sent += markers;
        }
        if (o.step_cnt && !sg_stop)
                printf("step rate=%.0f start_ms=%" PRId64 " end_ms=%" PRId64
                       " sent=%" PRId64 "\n",
                       o.steps[step].rate, step_start_ms,
                       step_start_ms + o.steps[step].seconds * 1000,
                       sent - step_base);
        if (sg_producer_flush(producer, 60000) != 0) {
                fprintf(stderr, "sg-bench-preload: records not acknowledged\n");
                goto out;
        }
        {
                double s = (double)(sg_mono_us() - mono0) / 1e6;

                printf("sent=%" PRId64 " seconds=%.3f eps=%.0f "
                       "behind_max_ms=%.1f markers=%" PRId64 "\n",
                       sent, s, (double)sent / s, (double)behind_max / 1000,
                       markers);
        }
        rc = 0;
        /* A preload must still be whole: the mock broker evicts. */
        for (int k = 0; !o.step_cnt && k < out_cnt; k++) {
                int64_t held =
                    retained(sg_producer_handle(producer), outs[k].topic);

                if (held != outs[k].sent) {
                        fprintf(stderr,
                                "sg-bench-preload: %s holds %" PRId64
                                " of the %" PRId64
                                " records produced: the broker evicted "
                                "some (more partitions or fewer events)\n",
                                outs[k].topic, held, outs[k].sent);
                        rc = 1;
                }
        }
out:
        fflush(stdout);
        sg_producer_destroy(producer);
        sg_codec_destroy(codec);
        free(src_off);
        return rc;
}
