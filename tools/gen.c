/*
 * sg-gen: produces the deterministic scenario of lib/scenario.c to the input
 * topics (Avro in Confluent framing, or JSON), paced as asked, and writes the
 * ground truth of what it sent for tests to compare with `sg-ctl kpis`.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "conf.h"
#include "kafka.h"
#include "log.h"
#include "scenario.h"
#include "stage.h"

#define RECORD_MAX       4096 /* an encoded input event is well below */
#define FLUSH_TIMEOUT_MS 60000

typedef struct gen_opts {
        const char *config;
        uint64_t seed;
        int64_t duration_s;
        double rate;
        int realtime;
        int has_start;
        int64_t start_ms;
        const char *truth;
        int bad;
        sg_format_t fmt;
        const char *fraud_channel;
        const char *overrun_channel;
        int fraud_set, overrun_set; /* given on the command line */
        int64_t fraud_start_s;
        int64_t fraud_end_s;
        const char *flood_channel;
        int64_t flood_start_s, flood_end_s;
        int flood_ips, flood_rate, flood_invalid;
        const char *overrun_campaign;
        int incidents;
        int64_t incident_start_s, incident_every_s;
        int incident_rates[SG_SCN_SIZES_MAX], incident_rate_cnt;
        int64_t incident_lengths_s[SG_SCN_SIZES_MAX];
        int incident_length_cnt;
        double trigger_ivt;
        int trigger_min_clicks;
} gen_opts_t;

static void usage(FILE *fp)
{
        fprintf(
            fp,
            "Usage: sg-gen [options]\n\n"
            "Produces a deterministic ad-traffic scenario to the input topics "
            "(topics.impressions,\n.clicks, .conversions): healthy channels, "
            "a click-fraud channel, a CPA-overrun\nchannel; optionally "
            "malformed records; and writes the ground truth it sent.\n\n"
            "Options:\n"
            "  -c, --config FILE        YAML config (default: $SG_CONFIG, "
            "then config/spendguard.yaml)\n"
            "      --seed N             PRNG seed (default 1)\n"
            "      --duration S         event-time length of the scenario, s "
            "(default 180;\n"
            "                           0 = until stopped, with --realtime "
            "only)\n"
            "      --rate R             send at most R records/s of wall "
            "clock (default 0 = as fast\n"
            "                           as possible); never changes what is "
            "sent\n"
            "      --realtime           event times follow the wall clock: "
            "start now, send each\n"
            "                           record when its event time comes\n"
            "      --start-ms T         event time of the first tick, ms "
            "since the epoch (default:\n"
            "                           now - duration, or now with "
            "--realtime)\n"
            "      --truth FILE         write the ground truth (JSON lines) "
            "to FILE\n"
            "      --bad N              also send N malformed records spread "
            "over the run\n"
            "      --json               JSON events instead of Avro\n"
            "      --fraud-channel C    channel with the bot click flood "
            "(default kol; \"\" = none)\n"
            "      --fraud-start S      second of the scenario the flood "
            "starts (default 20)\n"
            "      --fraud-end S        second it stops (default 0 = never)\n"
            "      --overrun-channel C  channel at ~2x its target CPA "
            "(default gifts; \"\" = none)\n"
            "      --flood-channel C    channel with a click flood from a few "
            "residential IPs with\n"
            "                           browser agents (not tagged invalid; "
            "default none)\n"
            "      --flood-start S      second the IP flood starts (default "
            "20)\n"
            "      --flood-end S        second it stops (default 0 = never)\n"
            "      --flood-ips N        IPs of the flood, 1-8 (default 3)\n"
            "      --flood-rate R       flood clicks per second, 1-100 "
            "(default 10)\n"
            "      --flood-invalid      the flood's clicks carry a bot user "
            "agent (tagged invalid)\n"
            "      --overrun-campaign C channel whose campaign <C>-c1 alone "
            "runs at ~1.7x target\n"
            "                           CPA (default none)\n"
            "      --incidents N        N fraud incidents (bot click waves), "
            "one per channel, on the\n"
            "                           first N channels without another "
            "role (default 0)\n"
            "      --incident-start S   second the first incident starts "
            "(default 30)\n"
            "      --incident-every S   seconds between incident onsets "
            "(default 5)\n"
            "      --incident-rates L   bot clicks/s, 1-100, cycled over the "
            "incidents (default\n"
            "                           10,20,40,80)\n"
            "      --incident-lengths L seconds each lasts, cycled (default "
            "60,90,120)\n"
            "      --trigger-ivt X      the truth's trigger of an incident: "
            "first click after which\n"
            "                           the channel's running 1m window is "
            "over X invalid ...\n"
            "      --trigger-min-clicks N  ... with N clicks or more (default "
            "0.25 and 100:\n"
            "                           ivt_circuit_breaker of "
            "config/rules.yaml)\n"
            "  -h, --help               this help\n"
            "  -V, --version            print the version\n\n"
            "Environment: SG_BROKERS, SG_CONFIG, SG_LOG_LEVEL.\n"
            "Signals: SIGTERM/SIGINT stop early: flush, write the truth of "
            "what was sent, exit 0.\n"
            "Exit: 0 when every record was acknowledged, 1 if some were "
            "not, 2 on bad usage.\n");
}

static void bad_usage(const char *fmt, const char *arg)
{
        fprintf(stderr, "sg-gen: ");
        fprintf(stderr, fmt, arg);
        fprintf(stderr, " (try --help)\n");
        exit(2);
}

static int64_t parse_int(const char *opt, const char *s, int64_t min,
                         int64_t max)
{
        char *end;
        long long v;

        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno || end == s || *end || v < min || v > max) {
                fprintf(stderr,
                        "sg-gen: %s: \"%s\" is not an integer in %" PRId64
                        "..%" PRId64 " (try --help)\n",
                        opt, s, min, max);
                exit(2);
        }
        return v;
}

/* A comma-separated list of 1..SG_SCN_SIZES_MAX integers in min..max. */
static int parse_list(const char *opt, const char *s, int64_t min, int64_t max,
                      int64_t *out)
{
        char buf[256], *save = NULL, *tok;
        int n = 0;

        if (strlen(s) >= sizeof(buf))
                bad_usage("list too long: %s", s);
        snprintf(buf, sizeof(buf), "%s", s);
        for (tok = strtok_r(buf, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
                if (n == SG_SCN_SIZES_MAX) {
                        fprintf(stderr,
                                "sg-gen: %s: at most %d values (try "
                                "--help)\n",
                                opt, SG_SCN_SIZES_MAX);
                        exit(2);
                }
                out[n++] = parse_int(opt, tok, min, max);
        }
        if (n == 0)
                bad_usage("empty list: %s", s);
        return n;
}

static void parse_args(int argc, char **argv, gen_opts_t *o)
{
        enum {
                O_SEED = 256,
                O_DURATION,
                O_RATE,
                O_REALTIME,
                O_START,
                O_TRUTH,
                O_BAD,
                O_JSON,
                O_FRAUD,
                O_FRAUD_START,
                O_FRAUD_END,
                O_OVERRUN,
                O_FLOOD,
                O_FLOOD_START,
                O_FLOOD_END,
                O_FLOOD_IPS,
                O_FLOOD_RATE,
                O_FLOOD_INVALID,
                O_OVERRUN_CAMPAIGN,
                O_INCIDENTS,
                O_INCIDENT_START,
                O_INCIDENT_EVERY,
                O_INCIDENT_RATES,
                O_INCIDENT_LENGTHS,
                O_TRIGGER_IVT,
                O_TRIGGER_MIN_CLICKS,
        };
        static const struct option opts[] = {
            {"config", required_argument, NULL, 'c'},
            {"seed", required_argument, NULL, O_SEED},
            {"duration", required_argument, NULL, O_DURATION},
            {"rate", required_argument, NULL, O_RATE},
            {"realtime", no_argument, NULL, O_REALTIME},
            {"start-ms", required_argument, NULL, O_START},
            {"truth", required_argument, NULL, O_TRUTH},
            {"bad", required_argument, NULL, O_BAD},
            {"json", no_argument, NULL, O_JSON},
            {"fraud-channel", required_argument, NULL, O_FRAUD},
            {"fraud-start", required_argument, NULL, O_FRAUD_START},
            {"fraud-end", required_argument, NULL, O_FRAUD_END},
            {"overrun-channel", required_argument, NULL, O_OVERRUN},
            {"flood-channel", required_argument, NULL, O_FLOOD},
            {"flood-start", required_argument, NULL, O_FLOOD_START},
            {"flood-end", required_argument, NULL, O_FLOOD_END},
            {"flood-ips", required_argument, NULL, O_FLOOD_IPS},
            {"flood-rate", required_argument, NULL, O_FLOOD_RATE},
            {"flood-invalid", no_argument, NULL, O_FLOOD_INVALID},
            {"overrun-campaign", required_argument, NULL, O_OVERRUN_CAMPAIGN},
            {"incidents", required_argument, NULL, O_INCIDENTS},
            {"incident-start", required_argument, NULL, O_INCIDENT_START},
            {"incident-every", required_argument, NULL, O_INCIDENT_EVERY},
            {"incident-rates", required_argument, NULL, O_INCIDENT_RATES},
            {"incident-lengths", required_argument, NULL, O_INCIDENT_LENGTHS},
            {"trigger-ivt", required_argument, NULL, O_TRIGGER_IVT},
            {"trigger-min-clicks", required_argument, NULL,
             O_TRIGGER_MIN_CLICKS},
            {"help", no_argument, NULL, 'h'},
            {"version", no_argument, NULL, 'V'},
            {NULL, 0, NULL, 0}};
        int64_t lst[SG_SCN_SIZES_MAX];
        int c;

        memset(o, 0, sizeof(*o));
        o->seed = 1;
        o->duration_s = 180;
        o->fmt = SG_FMT_AVRO;
        o->fraud_channel = "kol";
        o->overrun_channel = "gifts";
        o->fraud_start_s = 20;
        o->flood_channel = "";
        o->flood_start_s = 20;
        o->flood_ips = 3;
        o->flood_rate = 10;
        o->overrun_campaign = "";
        o->incident_start_s = 30;
        o->incident_every_s = 5;
        o->incident_rate_cnt = parse_list("--incident-rates", "10,20,40,80", 1,
                                          100, lst);
        for (int i = 0; i < o->incident_rate_cnt; i++)
                o->incident_rates[i] = (int)lst[i];
        o->incident_length_cnt =
            parse_list("--incident-lengths", "60,90,120", 1, 86400,
                       o->incident_lengths_s);
        o->trigger_ivt = 0.25;
        o->trigger_min_clicks = 100;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        o->config = optarg;
                        break;
                case O_SEED:
                        o->seed =
                            (uint64_t)parse_int("--seed", optarg, 0, INT64_MAX);
                        break;
                case O_DURATION:
                        o->duration_s =
                            parse_int("--duration", optarg, 0, 366 * 86400);
                        break;
                case O_RATE: {
                        char *end;

                        errno = 0;
                        o->rate = strtod(optarg, &end);
                        if (errno || end == optarg || *end || o->rate < 0 ||
                            o->rate != o->rate)
                                bad_usage("--rate: \"%s\" is not a number "
                                          ">= 0",
                                          optarg);
                        break;
                }
                case O_REALTIME:
                        o->realtime = 1;
                        break;
                case O_START:
                        o->start_ms =
                            parse_int("--start-ms", optarg, 1, INT64_MAX / 2);
                        o->has_start = 1;
                        break;
                case O_TRUTH:
                        o->truth = optarg;
                        break;
                case O_BAD:
                        o->bad = (int)parse_int("--bad", optarg, 0, 1000000);
                        break;
                case O_JSON:
                        o->fmt = SG_FMT_JSON;
                        break;
                case O_FRAUD:
                        o->fraud_channel = optarg;
                        o->fraud_set = 1;
                        break;
                case O_FRAUD_START:
                        o->fraud_start_s =
                            parse_int("--fraud-start", optarg, 0, 366 * 86400);
                        break;
                case O_FRAUD_END:
                        o->fraud_end_s =
                            parse_int("--fraud-end", optarg, 0, 366 * 86400);
                        break;
                case O_FLOOD:
                        o->flood_channel = optarg;
                        break;
                case O_FLOOD_START:
                        o->flood_start_s =
                            parse_int("--flood-start", optarg, 0, 366 * 86400);
                        break;
                case O_FLOOD_END:
                        o->flood_end_s =
                            parse_int("--flood-end", optarg, 0, 366 * 86400);
                        break;
                case O_FLOOD_IPS:
                        o->flood_ips = (int)parse_int("--flood-ips", optarg, 1,
                                                      SG_SCN_FLOOD_IPS_MAX);
                        break;
                case O_FLOOD_RATE:
                        o->flood_rate =
                            (int)parse_int("--flood-rate", optarg, 1, 100);
                        break;
                case O_FLOOD_INVALID:
                        o->flood_invalid = 1;
                        break;
                case O_OVERRUN_CAMPAIGN:
                        o->overrun_campaign = optarg;
                        break;
                case O_INCIDENTS:
                        o->incidents = (int)parse_int("--incidents", optarg, 0,
                                                      SG_SCN_INCIDENTS_MAX);
                        break;
                case O_INCIDENT_START:
                        o->incident_start_s = parse_int(
                            "--incident-start", optarg, 0, 366 * 86400);
                        break;
                case O_INCIDENT_EVERY:
                        o->incident_every_s = parse_int(
                            "--incident-every", optarg, 0, 86400);
                        break;
                case O_INCIDENT_RATES:
                        o->incident_rate_cnt = parse_list(
                            "--incident-rates", optarg, 1, 100, lst);
                        for (int i = 0; i < o->incident_rate_cnt; i++)
                                o->incident_rates[i] = (int)lst[i];
                        break;
                case O_INCIDENT_LENGTHS:
                        o->incident_length_cnt =
                            parse_list("--incident-lengths", optarg, 1, 86400,
                                       o->incident_lengths_s);
                        break;
                case O_TRIGGER_IVT: {
                        char *end;

                        errno = 0;
                        o->trigger_ivt = strtod(optarg, &end);
                        if (errno || end == optarg || *end ||
                            !(o->trigger_ivt >= 0 && o->trigger_ivt < 1))
                                bad_usage("--trigger-ivt: \"%s\" is not a "
                                          "number in [0, 1)",
                                          optarg);
                        break;
                }
                case O_TRIGGER_MIN_CLICKS:
                        o->trigger_min_clicks = (int)parse_int(
                            "--trigger-min-clicks", optarg, 0, 1000000000);
                        break;
                case O_OVERRUN:
                        o->overrun_channel = optarg;
                        o->overrun_set = 1;
                        break;
                case 'h':
                        usage(stdout);
                        exit(0);
                case 'V':
                        printf("sg-gen %s\n", SG_VERSION);
                        exit(0);
                default:
                        bad_usage("unknown option or missing argument: %s",
                                  argv[optind - 1]);
                }
        }
        if (optind < argc)
                bad_usage("unexpected argument %s", argv[optind]);
        if (o->duration_s == 0 && !o->realtime)
                bad_usage("%s--duration 0 (until stopped) needs --realtime",
                          "");
        if (o->realtime && o->rate > 0)
                bad_usage("%s--realtime and --rate exclude each other", "");
        if (o->fraud_end_s && o->fraud_end_s <= o->fraud_start_s)
                bad_usage("%s--fraud-end must be after --fraud-start", "");
        if (o->flood_end_s && o->flood_end_s <= o->flood_start_s)
                bad_usage("%s--flood-end must be after --flood-start", "");
}

/* A default role channel the config does not have is dropped quietly; one
 * named on the command line must exist. */
static const char *role_channel(const sg_conf_t *conf, const char *name,
                                int explicit, const char *opt)
{
        if (!*name || sg_conf_channel(conf, name))
                return name;
        if (explicit) {
                fprintf(stderr,
                        "sg-gen: %s: channel \"%s\" is not in the config's "
                        "channels (try --help)\n",
                        opt, name);
                exit(2);
        }
        sg_info("event=role_dropped option=%s channel=%s "
                "msg=\"not configured\"",
                opt, name);
        return "";
}

/* ---------------------------------------------------------------- records */

/* JSON string contents: the scenario's values never need more than this. */
static void json_field(char **p, char *end, const char *name, const char *v)
{
        int n = snprintf(*p, end - *p, ",\"%s\":\"%s\"", name, v);

        *p += n < end - *p ? n : end - *p - 1;
}

/*
 * The bytes of one record. Malformed kinds are made from the record's base
 * event, so that everything else about them is plausible and only the one
 * defect is there. Returns the length, or -1 with the reason in errstr.
 */
static int encode(sg_codec_t *codec, sg_format_t fmt,
                  const sg_scenario_rec_t *rec, unsigned char *buf, size_t size,
                  char *errstr, size_t errstr_size)
{
        const sg_event_t *ev = &rec->ev;
        int n;

        switch (rec->bad) {
        case SG_SCN_BAD_NO_CAMPAIGN: {
                char *p = (char *)buf, *end = (char *)buf + size;

                p += snprintf(p, end - p,
                              "{\"type\":\"%s\",\"event_id\":\"%s\","
                              "\"event_time\":%" PRId64,
                              sg_event_type_name(ev->type), ev->event_id,
                              ev->event_time);
                json_field(&p, end, "channel", ev->channel);
                json_field(&p, end, "ad_id", ev->ad_id);
                json_field(&p, end, "device_id", ev->device_id);
                json_field(&p, end, "ip", ev->ip);
                json_field(&p, end, "country", ev->country);
                p += snprintf(p, end - p, ",\"cost_micros\":%" PRId64 "}",
                              ev->cost_micros);
                return (int)(p - (char *)buf);
        }
        case SG_SCN_BAD_JSON:
                n = sg_codec_encode_input(codec, SG_FMT_JSON, ev, buf, size);
                if (n < 0)
                        break;
                return n / 2; /* cut mid-object */
        case SG_SCN_BAD_FRAMING:
        case SG_SCN_BAD_UNKNOWN_SCHEMA:
                n = sg_codec_encode_input(codec, SG_FMT_AVRO, ev, buf, size);
                if (n < 5)
                        break;
                if (rec->bad == SG_SCN_BAD_FRAMING) {
                        buf[0] = 1; /* magic byte must be 0 */
                } else {
                        buf[1] = buf[2] = buf[3] = 0;
                        buf[4] = 99;
                }
                return n;
        default: /* valid events, and the negative cost in either format */
                n = sg_codec_encode_input(codec, fmt, ev, buf, size);
                if (n < 0)
                        break;
                return n;
        }
        snprintf(errstr, errstr_size, "encode %s: %s", ev->event_id,
                 sg_codec_error(codec));
        return -1;
}

static const char *topic_of(const sg_conf_t *conf, sg_event_type_t t)
{
        switch (t) {
        case SG_EV_CLICK:
                return conf->topics.clicks;
        case SG_EV_CONVERSION:
                return conf->topics.conversions;
        default:
                return conf->topics.impressions;
        }
}

/* Written next to the target and renamed, so a reader never sees half. */
static int write_truth(const sg_scenario_t *sc, const char *path)
{
        char tmp[4096];
        FILE *fp;

        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        fp = fopen(tmp, "w");
        if (!fp) {
                sg_error("event=truth_failed path=%s err=\"%s\"", tmp,
                         strerror(errno));
                return -1;
        }
        if (sg_scenario_write_truth(sc, fp) != 0 || fclose(fp) != 0 ||
            rename(tmp, path) != 0) {
                sg_error("event=truth_failed path=%s err=\"%s\"", path,
                         strerror(errno));
                return -1;
        }
        return 0;
}

/* ------------------------------------------------------------------- main */

int main(int argc, char **argv)
{
        static sg_conf_t conf;
        static unsigned char buf[RECORD_MAX];
        sg_scenario_opts_t so = {0};
        sg_scenario_rec_t rec;
        sg_scenario_t *sc = NULL;
        sg_producer_t *producer = NULL;
        sg_codec_t *codec = NULL;
        gen_opts_t o;
        char errstr[512];
        int64_t sent = 0, by_type[4] = {0}, bad = 0;
        int64_t mono0, last_log;
        int rc = 1, failed, broken = 0;

        sg_log_init("gen");
        parse_args(argc, argv, &o);
        if (sg_conf_load(&conf, o.config, errstr, sizeof(errstr)) == -1) {
                fprintf(stderr, "sg-gen: bad config: %s\n", errstr);
                return 2;
        }
        sg_log_set_level(conf.log_level);
        sg_stage_signals();

        so.seed = o.seed;
        so.duration_ms = o.duration_s * 1000;
        so.start_ms = o.has_start  ? o.start_ms
                      : o.realtime ? sg_now_ms()
                                   : (sg_now_ms() / 1000 - o.duration_s) * 1000;
        so.fraud_start_ms = o.fraud_start_s * 1000;
        so.fraud_end_ms = o.fraud_end_s * 1000;
        so.flood_channel =
            role_channel(&conf, o.flood_channel, 1, "--flood-channel");
        so.flood_start_ms = o.flood_start_s * 1000;
        so.flood_end_ms = o.flood_end_s * 1000;
        so.flood_ips = o.flood_ips;
        so.flood_rate = o.flood_rate;
        so.flood_invalid = o.flood_invalid;
        so.overrun_campaign_channel =
            role_channel(&conf, o.overrun_campaign, 1, "--overrun-campaign");
        so.fraud_channel = role_channel(&conf, o.fraud_channel, o.fraud_set,
                                        "--fraud-channel");
        so.overrun_channel = role_channel(&conf, o.overrun_channel,
                                          o.overrun_set, "--overrun-channel");
        so.bad = o.bad;
        so.incidents = o.incidents;
        so.incident_start_ms = o.incident_start_s * 1000;
        so.incident_every_ms = o.incident_every_s * 1000;
        so.incident_rate_cnt = o.incident_rate_cnt;
        memcpy(so.incident_rates, o.incident_rates, sizeof(so.incident_rates));
        so.incident_length_cnt = o.incident_length_cnt;
        for (int i = 0; i < o.incident_length_cnt; i++)
                so.incident_lengths_ms[i] = o.incident_lengths_s[i] * 1000;
        /* Aggregate's running window: early_windows (1m) ending at the
         * snapshot step after the newest event. */
        so.trigger_ivt = o.trigger_ivt;
        so.trigger_min_clicks = o.trigger_min_clicks;
        so.trigger_window_ms = 60000;
        so.trigger_step_ms = (int64_t)conf.aggregate.snapshot_s * 1000;
        sc = sg_scenario_new(conf.channels, conf.channel_cnt, &so, errstr,
                             sizeof(errstr));
        if (!sc) {
                fprintf(stderr, "sg-gen: %s\n", errstr);
                return 2;
        }
        codec = sg_codec_new(conf.schemas_dir, errstr, sizeof(errstr));
        if (!codec) {
                fprintf(stderr, "sg-gen: %s\n", errstr);
                goto out;
        }
        producer = sg_producer_new(&conf, "sg-gen", errstr, sizeof(errstr));
        if (!producer) {
                fprintf(stderr, "sg-gen: %s\n", errstr);
                goto out;
        }
        sg_info("event=start brokers=%s seed=%" PRIu64 " start_ms=%" PRId64
                " duration_s=%" PRId64 " rate=%g realtime=%d format=%s "
                "fraud=%s overrun=%s bad=%d incidents=%d",
                conf.brokers, so.seed, so.start_ms, o.duration_s, o.rate,
                o.realtime, o.fmt == SG_FMT_JSON ? "json" : "avro",
                *so.fraud_channel ? so.fraud_channel : "-",
                *so.overrun_channel ? so.overrun_channel : "-", o.bad,
                o.incidents);

        mono0 = last_log = sg_mono_ms();
        while (!sg_stop && sg_scenario_next(sc, &rec)) {
                const char *key =
                    rec.ev.has_device_id ? rec.ev.device_id : rec.ev.event_id;
                int n;

                /* Pacing only decides when, never what. */
                if (o.realtime) {
                        int64_t wait;

                        while (!sg_stop &&
                               (wait = rec.ev.event_time - sg_now_ms()) > 0) {
                                sg_producer_poll(producer);
                                sg_sleep_ms(wait > 100 ? 100 : (int)wait);
                        }
                } else if (o.rate > 0) {
                        int64_t due =
                            mono0 + (int64_t)((double)sent * 1000.0 / o.rate);
                        int64_t wait = due - sg_mono_ms();

                        if (wait > 0) {
                                sg_producer_poll(producer);
                                sg_sleep_ms(wait > 100 ? 100 : (int)wait);
                        }
                }
                if (sg_stop)
                        break;
                n = encode(codec, o.fmt, &rec, buf, sizeof(buf), errstr,
                           sizeof(errstr));
                if (n < 0) {
                        sg_error("event=encode_failed err=\"%s\"", errstr);
                        broken = 1;
                        break;
                }
                if (sg_producer_send(producer, topic_of(&conf, rec.ev.type), -1,
                                     key, strlen(key), buf, (size_t)n,
                                     NULL) == -1) {
                        broken = 1;
                        break;
                }
                sg_scenario_account(sc, &rec);
                sg_scenario_sent_at(sc, &rec, sg_now_ms());
                sent++;
                if (rec.bad)
                        bad++;
                else
                        by_type[rec.ev.type]++;
                if (sent % 1000 == 0)
                        sg_producer_poll(producer);
                if (sg_mono_ms() - last_log >= 10000) {
                        last_log = sg_mono_ms();
                        sg_info("event=progress sent=%" PRId64
                                " event_time=%" PRId64,
                                sent, rec.ev.event_time);
                }
        }
        if (sg_stop)
                sg_info("event=stopping sent=%" PRId64, sent);

        /* Stopped by a signal, the flush ends with the stop budget. */
        failed = sg_producer_flush(producer, FLUSH_TIMEOUT_MS);
        if (o.truth && write_truth(sc, o.truth) != 0)
                failed = failed ? failed : -1;
        sg_info("event=done sent=%" PRId64 " impressions=%" PRId64
                " clicks=%" PRId64 " conversions=%" PRId64 " bad=%" PRId64
                " failed=%d",
                sent, by_type[SG_EV_IMPRESSION], by_type[SG_EV_CLICK],
                by_type[SG_EV_CONVERSION], bad, failed);
        if (failed == -1)
                sg_error("event=flush_timeout msg=\"records still in flight "
                         "after %d ms\"",
                         sg_stop ? SG_STOP_GRACE_MS : FLUSH_TIMEOUT_MS);
        rc = failed == 0 && !broken ? 0 : 1;
out:
        sg_producer_destroy(producer);
        sg_codec_destroy(codec);
        sg_scenario_destroy(sc);
        return rc;
}
