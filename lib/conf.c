#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "redis.h"
#include "tz.h"
#include "window.h"

#define F(name, type, def, min, max, member, env, desc)                        \
        {                                                                      \
                name, type, def, min, max, offsetof(sg_conf_t, member),        \
                    sizeof(((sg_conf_t *)0)->member), env, desc                \
        }
#define STR(name, def, member, env, desc)                                      \
        F(name, SG_CONF_STR, def, 0, 0, member, env, desc)
#define PATHF(name, def, member, desc)                                         \
        F(name, SG_CONF_PATH, def, 0, 0, member, NULL, desc)
#define INT(name, def, min, max, member, desc)                                 \
        F(name, SG_CONF_INT, def, min, max, member, NULL, desc)
#define INT64(name, def, min, max, member, desc)                               \
        F(name, SG_CONF_INT64, def, min, max, member, NULL, desc)

const sg_conf_field_t sg_conf_fields[] = {
    STR("brokers", "127.0.0.1:9092", brokers, "SG_BROKERS",
        "Kafka bootstrap servers (host:port,...)"),
    STR("redis", "redis://127.0.0.1:6379/0", redis, "SG_REDIS",
        "Redis URL: redis://[:password@]host:port/db or unix:///path.sock "
        "(a password here is taken out of the URL; prefer "
        "redis_password_file or SG_REDIS_PASSWORD)"),
    F("redis_password_file", SG_CONF_PATH, "", 0, 0, redis_password_file,
      "SG_REDIS_PASSWORD_FILE",
      "file whose first line is the Redis AUTH password; "
      "$SG_REDIS_PASSWORD beats it; never logged"),
    STR("group_prefix", "spendguard", group_prefix, "SG_GROUP_PREFIX",
        "consumer group prefix; a stage's group is <prefix>.<stage>"),
    STR("instance_id", "", instance_id, "SG_INSTANCE_ID",
        "this instance's name: with a value, static group membership "
        "(group.instance.id = <instance_id>.<stage>: a restarted instance "
        "gets its partitions back at once; instances of one stage need "
        "different names; a fenced instance exits 1); empty: dynamic "
        "membership. Also names the sink's transactional.id (empty: the "
        "host name)"),
    PATHF("schemas_dir", "schemas", schemas_dir, "folder of the .avsc schemas"),
    STR("log_level", "info", log_level, "SG_LOG_LEVEL",
        "debug, info, warn or error"),
    STR("currency", "USD", currency, NULL,
        "the account currency (a code such as USD or EUR) that all money is "
        "in, as micros; sg-ctl and its status page show amounts in it"),
    INT("batch_linger_ms", "2", -1, 60000, batch_linger_ms,
        "every stage: once a batch holds a record, it ends when no further "
        "record arrives for this long (ms), so that a record waits for "
        "batch_ms only when input trickles in steadily; -1 = fill to "
        "batch_size or batch_ms"),

    STR("topics.impressions", "ad-impressions", topics.impressions, NULL,
        "input topic; default event type impression"),
    STR("topics.clicks", "ad-clicks", topics.clicks, NULL,
        "input topic; default event type click"),
    STR("topics.conversions", "ad-conversions", topics.conversions, NULL,
        "input topic; default event type conversion"),
    STR("topics.events", "sg.events", topics.events, NULL,
        "normalized events (ingest -> aggregate), key = channel"),
    STR("topics.deadletter", "sg.deadletter", topics.deadletter, NULL,
        "rejected records with sg.error, sg.detail, sg.src headers"),
    STR("topics.aggregates", "sg.aggregates", topics.aggregates, NULL,
        "aggregate snapshots (aggregate -> rules, sink)"),
    STR("topics.decisions", "sg.decisions", topics.decisions, NULL,
        "decisions (rules -> sink)"),
    STR("topics.out_decisions", "ad-decisions", topics.out_decisions, NULL,
        "decisions for bidders, delivered once per decision id"),
    STR("topics.kpis", "channel-kpis", topics.kpis, NULL,
        "one final KPI row per scope per closed window, for BI"),

    INT("ingest.batch_size", "2000", 1, 100000, ingest.batch_size,
        "records per batch (offsets are committed per batch)"),
    INT("ingest.batch_ms", "100", 1, 60000, ingest.batch_ms,
        "longest wait to fill a batch, ms"),
    INT("ingest.inflight_batches", "4", 1, 64, ingest.inflight_batches,
        "batches whose output may await acknowledgement while the next is "
        "processed (1: none)"),
    INT("ingest.future_tolerance_s", "300", 0, 86400, ingest.future_tolerance_s,
        "event_time further ahead of the clock is rejected (future_time)"),
    INT("ingest.max_message_bytes", "65536", 64, 16777216,
        ingest.max_message_bytes, "larger input records are rejected"),
    INT64("ingest.max_money_micros", "1000000000000", 1, INT64_MAX,
          ingest.max_money_micros,
          "cost or revenue above this is an absurd amount (bad_value)"),
    INT("ingest.too_old_s", "172800", 0, 31536000, ingest.too_old_s,
        "event_time further behind the clock is rejected (too_old); 0 = "
        "off. Default = aggregate.retention_s: older buckets have expired"),
    INT("ingest.normalize_names", "1", 0, 1, ingest.normalize_names,
        "1 = trim white space and lower-case channel and campaign_id"),
    INT("ingest.dedupe_horizon_s", "900", 0, 86400, ingest.dedupe_horizon_s,
        "an event_id seen again within this much event time is a duplicate; "
        "0 = off"),
    INT("ingest.dedupe_max_entries", "262144", 1024, 16777216,
        ingest.dedupe_max_entries,
        "event ids remembered per input partition (the memory bound: see "
        "docs/givt.md)"),
    INT("ingest.dup_click_s", "30", 0, 3600, ingest.dup_click_s,
        "a click on the same device and ad within this interval is tagged "
        "invalid (dup_click); 0 = off"),
    INT("ingest.dup_click_max_entries", "65536", 1024, 16777216,
        ingest.dup_click_max_entries,
        "(device, ad) pairs remembered per input partition"),
    PATHF("ingest.bot_ua_file", "", ingest.bot_ua_file,
          "bot user-agent substrings, one per line; empty = the built-in "
          "list (config/bot_ua.txt)"),
    PATHF("ingest.dc_cidr_file", "", ingest.dc_cidr_file,
          "data-center IP ranges (CIDR, IPv4 and IPv6), one per line; empty "
          "= none"),
    INT("ingest.tag_missing_ua", "1", 0, 1, ingest.tag_missing_ua,
        "1 = an event without a user agent is invalid traffic (no_ua)"),
    INT("ingest.marker_ms", "50", 1, 60000, ingest.marker_ms,
        "watermark markers (docs/watermark.md): an input partition's "
        "changed progress or idleness reaches every sg.events partition "
        "within this long (ms); unchanged, it is repeated every second"),
    INT("ingest.idle_ms", "5000", 0, 3600000, ingest.idle_ms,
        "an input partition caught up (read to its end, all acknowledged) "
        "for this long is marked idle and stops holding the watermark back "
        "(ms); shorter makes windows close sooner on quiet inputs, but an "
        "input that was empty for a moment and then gets older records "
        "sees them dead-lettered as late"),

    INT("aggregate.batch_size", "5000", 1, 100000, aggregate.batch_size,
        "events per batch: applied in memory, then the snapshots their "
        "watermark calls for are sent"),
    INT("aggregate.batch_ms", "100", 1, 60000, aggregate.batch_ms,
        "longest wait to fill a batch, ms"),
    INT("aggregate.bucket_s", "10", 1, 3600, aggregate.bucket_s,
        "event-time bucket width, seconds"),
    STR("aggregate.windows", "1m,5m,1h,today", aggregate.windows, NULL,
        "rolling windows of the snapshots sent to rules, comma-separated: "
        "<n>s, <n>m, <n>h, <n>d (multiples of snapshot_s) or today (from "
        "the start of the day in tz_offset_min)"),
    INT("aggregate.checkpoint_ms", "1000", 0, 600000,
        aggregate.checkpoint_ms,
        "under load, how often each changed sg.events partition is "
        "checkpointed to Redis with its offset (ms; 0 = after every batch); "
        "once caught up, at once: a cell changed by many batches in between "
        "is written once; a crash reads again at most this much and sends "
        "its snapshots again (rules and sink drop the repeats)"),
    INT("aggregate.snapshot_s", "10", 1, 86400, aggregate.snapshot_s,
        "snapshot cadence: a changed scope's windows are sent each time "
        "the watermark passes a multiple of this (multiple of bucket_s)"),
    INT("aggregate.early_ms", "250", 0, 60000, aggregate.early_ms,
        "how often the running windows of the scopes changed since are "
        "sent (ms of wall clock, per sg.events partition; 0 = never): "
        "rules may trip on them before the watermark completes the window "
        "(docs/rules.md, \"Early trips\")"),
    STR("aggregate.early_windows", "1m", aggregate.early_windows, NULL,
        "the windows (names from aggregate.windows, comma-separated) sent "
        "as running windows; a rule on another window trips only on "
        "complete ones"),
    INT("aggregate.kpi_window_s", "60", 1, 86400, aggregate.kpi_window_s,
        "tumbling window of the final KPI rows (multiple of bucket_s)"),
    INT("aggregate.lateness_s", "30", 0, 86400, aggregate.lateness_s,
        "allowed lateness: an sg.events partition's watermark is the "
        "least event-time progress its inputs' watermark markers report, "
        "minus this; events in a KPI window it closed are late"),
    INT("aggregate.retention_s", "172800", 60, 31536000, aggregate.retention_s,
        "TTL of bucket keys in Redis"),
    INT("aggregate.tz_offset_min", "0", -720, 840, aggregate.tz_offset_min,
        "the account time zone as a fixed offset from UTC, minutes: where "
        "the today window and the frequency-cap day start (ignored when "
        "aggregate.tz is set)"),
    STR("aggregate.tz", "", aggregate.tz, NULL,
        "the account time zone by IANA name (e.g. America/New_York, from "
        "the system tz database, daylight saving time included): where the "
        "today window and the frequency-cap day start; empty = "
        "tz_offset_min"),
    INT("aggregate.freq_cap", "3", 0, 250, aggregate.freq_cap,
        "impressions per device per day and scope; those beyond count as "
        "freq_cap_impressions (0 = off)"),
    INT("aggregate.click_ttl_s", "86400", 60, 2592000, aggregate.click_ttl_s,
        "how long click times are kept to time conversions against them "
        "(click-to-conversion histogram)"),
    INT("aggregate.max_sources", "1000", 10, 1000000, aggregate.max_sources,
        "sources (IPs, devices) counted per channel and bucket; the "
        "lightest beyond it are dropped into source_clicks_untracked"),
    INT("aggregate.max_scopes", "10000", 10, 10000000, aggregate.max_scopes,
        "scopes (channels and campaigns) per sg.events partition; past it a "
        "new channel counts as _other and a new campaign as <channel>|_other "
        "(spendguard_scope_overflow_total)"),
    INT("aggregate.max_clicks", "2000000", 0, 1000000000, aggregate.max_clicks,
        "click times kept in memory per sg.events partition to time "
        "conversions against (24 bytes each); past it the oldest hours go "
        "first and their conversions count as conversions_no_click (0 = no "
        "bound)"),
    INT("aggregate.max_devices", "2000000", 0, 1000000000,
        aggregate.max_devices,
        "(scope, device) pairs the frequency cap counts per sg.events "
        "partition over two days (24 bytes each in memory, at most "
        "9 x (freq_cap + 1) bytes each in Redis); past it a new pair's "
        "impressions are not capped (0 = no bound)"),

    PATHF("rules.file", "config/rules.yaml", rules.file, "the rules file"),
    INT("rules.batch_ms", "100", 1, 60000, rules.batch_ms,
        "longest wait to fill a batch, ms"),
    INT64("rules.reserve_micros", "0", 0, INT64_MAX / 4, rules.reserve_micros,
          "the budget reserve before any reallocation (reallocation tops "
          "it up to reallocation.reserve_pct of the total)"),

    STR("sink.format", "avro", sink.format, NULL,
        "ad-decisions and channel-kpis encoding: avro or json"),
    INT("sink.dedupe_ttl_s", "604800", 60, 31536000, sink.dedupe_ttl_s,
        "how long delivered decision ids are remembered"),
    INT("sink.decision_log_len", "1000", 1, 1000000, sink.decision_log_len,
        "decisions kept in the Redis decision log (sg-ctl)"),
    STR("sink.webhook_url", "", sink.webhook_url, NULL,
        "POST PAUSE, BLOCK_SOURCE and ALERT decisions as JSON to this "
        "http(s) URL (not a shadow rule's dry runs); empty = no webhook"),
    INT("sink.webhook_queue", "1000", 1, 1000000, sink.webhook_queue,
        "webhook notifications waiting for the worker; when full, new ones "
        "are dropped, counted and logged"),
    INT("sink.webhook_timeout_ms", "2000", 100, 60000, sink.webhook_timeout_ms,
        "timeout of one webhook POST"),
    INT("sink.webhook_retries", "5", 0, 100, sink.webhook_retries,
        "retries of a failed webhook POST, with doubling backoff"),
    INT("sink.transactions", "1", 0, 1, sink.transactions,
        "1: each batch's output and its input offsets commit in one Kafka "
        "transaction (transactional.id <group_prefix>.<instance>.sink), so "
        "a crash after the broker's ack delivers nothing twice to "
        "read_committed readers; 0: idempotent producer, Redis dedupe only"),
    INT("sink.webhook_backoff_ms", "200", 1, 60000, sink.webhook_backoff_ms,
        "the first retry's delay; doubles with each retry (at most 30 s)"),

    STR("schema_registry.url", "", schema_registry.urls,
        "SG_SCHEMA_REGISTRY_URL",
        "Confluent Schema Registry base URLs (http(s)://host:port[/path], "
        "comma-separated: tried in turn) for ingest's writer ids and the "
        "sink's output schemas; empty = the file registry "
        "<schemas_dir>/registry and the contract ids (docs/schemas.md)"),
    STR("schema_registry.user", "", schema_registry.user,
        "SG_SCHEMA_REGISTRY_USER",
        "basic-auth user; empty = no authentication"),
    F("schema_registry.password_file", SG_CONF_PATH, "", 0, 0,
      schema_registry_password_file, "SG_SCHEMA_REGISTRY_PASSWORD_FILE",
      "file whose first line is the basic-auth password; "
      "$SG_SCHEMA_REGISTRY_PASSWORD beats it; never logged"),
    F("schema_registry.ca_file", SG_CONF_PATH, "", 0, 0,
      schema_registry.ca_file, "SG_SCHEMA_REGISTRY_CA_FILE",
      "https: PEM file of the CAs to trust; empty = the system's"),
    INT("schema_registry.timeout_ms", "5000", 100, 120000,
        schema_registry.timeout_ms,
        "deadline of one request, connecting included"),
    INT("schema_registry.retries", "3", 0, 100, schema_registry.retries,
        "retries of a failed request (next URL each time) before the "
        "registry counts as unavailable"),
    INT("schema_registry.backoff_ms", "200", 1, 60000,
        schema_registry.backoff_ms,
        "delay before the first retry; doubles with each retry, and "
        "between ingest's attempts while the registry is unavailable"),
    INT("schema_registry.backoff_max_ms", "10000", 1, 600000,
        schema_registry.backoff_max_ms, "the longest such delay"),

    STR("metrics.listen", "127.0.0.1", metrics.listen, "SG_METRICS_LISTEN",
        "HTTP /metrics, /healthz, /readyz: host (port by stage: ingest "
        "9731, aggregate 9732, rules 9733, sink 9734), host:port, or off; "
        "a bad value or an address that cannot be bound exits 2"),
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, NULL},
};

static const sg_conf_field_t *field_find(const char *name)
{
        for (const sg_conf_field_t *f = sg_conf_fields; f->name; f++)
                if (strcmp(f->name, name) == 0)
                        return f;
        return NULL;
}

void sg_conf_path(const sg_conf_t *conf, const char *rel, char *out,
                  size_t out_size)
{
        int n;

        if (rel[0] == '/' || conf->dir[0] == '\0')
                n = snprintf(out, out_size, "%s", rel);
        else
                n = snprintf(out, out_size, "%s/%s", conf->dir, rel);
        /* Too long: leave a path that fails to open with a clear name
         * rather than a silently truncated one. */
        if (n < 0 || (size_t)n >= out_size)
                snprintf(out, out_size, "%s", "(path too long)");
}

static int parse_int64(const char *s, int64_t *out)
{
        char *end;
        long long v;

        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno || end == s || *end != '\0')
                return -1;
        *out = v;
        return 0;
}

/* Sets one field from text; from_file says whether paths are relative to
 * the config file. */
static int field_set(sg_conf_t *conf, const sg_conf_field_t *f,
                     const char *value, int from_file, char *errstr,
                     size_t errstr_size)
{
        char *dst = (char *)conf + f->offset;
        int64_t v;

        switch (f->type) {
        case SG_CONF_STR:
        case SG_CONF_PATH:
                if (f->type == SG_CONF_PATH && from_file && value[0]) {
                        char tmp[PATH_MAX];
                        sg_conf_path(conf, value, tmp, sizeof(tmp));
                        value = tmp;
                        if (strlen(value) >= f->size)
                                goto too_long;
                        memcpy(dst, value, strlen(value) + 1);
                        return 0;
                }
                if (strlen(value) >= f->size)
                        goto too_long;
                memcpy(dst, value, strlen(value) + 1);
                return 0;
        case SG_CONF_INT:
        case SG_CONF_INT64:
                if (parse_int64(value, &v) == -1) {
                        snprintf(errstr, errstr_size,
                                 "%s: \"%s\" is not an integer", f->name,
                                 value);
                        return -1;
                }
                if (v < f->min || v > f->max) {
                        snprintf(errstr, errstr_size,
                                 "%s: %" PRId64 " is out of range [%" PRId64
                                 ", %" PRId64 "]",
                                 f->name, v, f->min, f->max);
                        return -1;
                }
                if (f->type == SG_CONF_INT)
                        *(int *)dst = (int)v;
                else
                        *(int64_t *)dst = v;
                return 0;
        }
        return -1;
too_long:
        snprintf(errstr, errstr_size, "%s: value longer than %zu bytes",
                 f->name, f->size - 1);
        return -1;
}

static int apply_kafka(sg_conf_t *conf, const sg_yaml_node_t *map,
                       const char *name, char *errstr, size_t errstr_size)
{
        if (map->type != SG_YAML_MAP) {
                snprintf(errstr, errstr_size,
                         "%s:%d: kafka: must be a map of librdkafka "
                         "properties",
                         name, map->line);
                return -1;
        }
        for (const sg_yaml_node_t *c = map->child; c; c = c->next) {
                int i;

                if (c->type != SG_YAML_SCALAR) {
                        snprintf(errstr, errstr_size,
                                 "%s:%d: kafka.%s: must be a scalar", name,
                                 c->line, c->key);
                        return -1;
                }
                if (strlen(c->key) >= sizeof(conf->kafka[0].name) ||
                    strlen(c->value) >= sizeof(conf->kafka[0].value)) {
                        snprintf(errstr, errstr_size,
                                 "%s:%d: kafka.%s: too long", name, c->line,
                                 c->key);
                        return -1;
                }
                for (i = 0; i < conf->kafka_cnt; i++)
                        if (strcmp(conf->kafka[i].name, c->key) == 0)
                                break;
                if (i == conf->kafka_cnt) {
                        if (conf->kafka_cnt == SG_CONF_MAX_KAFKA) {
                                snprintf(errstr, errstr_size,
                                         "%s:%d: kafka: more than %d "
                                         "properties",
                                         name, c->line, SG_CONF_MAX_KAFKA);
                                return -1;
                        }
                        conf->kafka_cnt++;
                }
                strcpy(conf->kafka[i].name, c->key);
                strcpy(conf->kafka[i].value, c->value);
        }
        return 0;
}

static int apply_channels(sg_conf_t *conf, const sg_yaml_node_t *seq,
                          const char *name, char *errstr, size_t errstr_size)
{
        if (seq->type != SG_YAML_SEQ) {
                snprintf(errstr, errstr_size, "%s:%d: channels: must be a list",
                         name, seq->line);
                return -1;
        }
        conf->channel_cnt = 0;
        for (const sg_yaml_node_t *c = seq->child; c; c = c->next) {
                sg_channel_conf_t *ch;

                if (conf->channel_cnt == SG_CONF_MAX_CHANNELS) {
                        snprintf(errstr, errstr_size,
                                 "%s:%d: channels: more than %d", name, c->line,
                                 SG_CONF_MAX_CHANNELS);
                        return -1;
                }
                if (c->type != SG_YAML_MAP) {
                        snprintf(errstr, errstr_size,
                                 "%s:%d: channels: each entry must be a map "
                                 "with name, budget_micros, "
                                 "target_cpa_micros",
                                 name, c->line);
                        return -1;
                }
                ch = &conf->channels[conf->channel_cnt];
                memset(ch, 0, sizeof(*ch));
                for (const sg_yaml_node_t *k = c->child; k; k = k->next) {
                        int64_t v = 0;

                        if (k->type != SG_YAML_SCALAR)
                                goto bad_key;
                        if (strcmp(k->key, "name") == 0) {
                                if (k->value[0] == '\0' ||
                                    strlen(k->value) >= sizeof(ch->name))
                                        goto bad_value;
                                strcpy(ch->name, k->value);
                                continue;
                        }
                        if (parse_int64(k->value, &v) == -1 || v < 0)
                                goto bad_value;
                        if (strcmp(k->key, "budget_micros") == 0)
                                ch->budget_micros = v;
                        else if (strcmp(k->key, "target_cpa_micros") == 0)
                                ch->target_cpa_micros = v;
                        else if (strcmp(k->key, "floor_micros") == 0)
                                ch->floor_micros = v;
                        else if (strcmp(k->key, "cap_micros") == 0)
                                ch->cap_micros = v;
                        else
                                goto bad_key;
                        continue;
                bad_key:
                        snprintf(errstr, errstr_size,
                                 "%s:%d: channels: unknown key %s", name,
                                 k->line, k->key);
                        return -1;
                bad_value:
                        snprintf(errstr, errstr_size,
                                 "%s:%d: channels.%s: bad value \"%s\"", name,
                                 k->line, k->key, k->value ? k->value : "");
                        return -1;
                }
                if (ch->name[0] == '\0') {
                        snprintf(errstr, errstr_size,
                                 "%s:%d: channels: entry without a name", name,
                                 c->line);
                        return -1;
                }
                if (sg_conf_channel(conf, ch->name)) {
                        snprintf(errstr, errstr_size,
                                 "%s:%d: channels: %s is listed twice", name,
                                 c->line, ch->name);
                        return -1;
                }
                conf->channel_cnt++;
        }
        return 0;
}

int sg_conf_apply(sg_conf_t *conf, const sg_yaml_node_t *root, const char *name,
                  char *errstr, size_t errstr_size)
{
        char key[256], why[256];

        if (root->type != SG_YAML_MAP) {
                snprintf(errstr, errstr_size, "%s:%d: the config must be a map",
                         name, root->line);
                return -1;
        }
        for (const sg_yaml_node_t *e = root->child; e; e = e->next) {
                const sg_yaml_node_t *leaf = e;
                const sg_conf_field_t *f;

                if (strcmp(e->key, "kafka") == 0) {
                        if (apply_kafka(conf, e, name, errstr, errstr_size))
                                return -1;
                        continue;
                }
                if (strcmp(e->key, "channels") == 0) {
                        if (apply_channels(conf, e, name, errstr, errstr_size))
                                return -1;
                        continue;
                }
                if (e->type == SG_YAML_MAP) {
                        /* A section: every entry is section.key. */
                        for (leaf = e->child; leaf; leaf = leaf->next) {
                                snprintf(key, sizeof(key), "%s.%s", e->key,
                                         leaf->key);
                                f = field_find(key);
                                if (!f || leaf->type != SG_YAML_SCALAR)
                                        goto unknown;
                                if (field_set(conf, f, leaf->value, 1, why,
                                              sizeof(why)))
                                        goto bad;
                        }
                        continue;
                }
                snprintf(key, sizeof(key), "%s", e->key);
                f = field_find(key);
                if (!f || f->name[strcspn(f->name, ".")] == '.' ||
                    e->type != SG_YAML_SCALAR)
                        goto unknown;
                if (field_set(conf, f, e->value, 1, why, sizeof(why)))
                        goto bad;
                continue;
        unknown:
                snprintf(errstr, errstr_size,
                         "%s:%d: unknown key %s (see --help for the keys)",
                         name, leaf->line, key);
                return -1;
        bad:
                snprintf(errstr, errstr_size, "%s:%d: %s", name, leaf->line,
                         why);
                return -1;
        }
        return 0;
}

static int validate(const sg_conf_t *conf, char *errstr, size_t errstr_size)
{
        const char *name = conf->path[0] ? conf->path : "config";
        int bs = conf->aggregate.bucket_s;
        sg_window_def_t wins[SG_MAX_WINDOWS];
        char why[160];
        int nw;

        if (conf->aggregate.snapshot_s % bs ||
            conf->aggregate.kpi_window_s % bs) {
                snprintf(errstr, errstr_size,
                         "%s: aggregate.snapshot_s and aggregate.kpi_window_s "
                         "must be multiples of aggregate.bucket_s (%d)",
                         name, bs);
                return -1;
        }
        nw = sg_window_parse_list(conf->aggregate.windows, wins,
                                  SG_MAX_WINDOWS,
                                  conf->aggregate.snapshot_s * 1000LL, why,
                                  sizeof(why));
        if (nw < 0) {
                snprintf(errstr, errstr_size, "%s: aggregate.windows: %s", name,
                         why);
                return -1;
        }
        if (sg_window_mask(conf->aggregate.early_windows, wins, nw, why,
                           sizeof(why)) == -1) {
                snprintf(errstr, errstr_size,
                         "%s: aggregate.early_windows: %s", name, why);
                return -1;
        }
        if (conf->aggregate.tz[0]) {
                sg_tz_t *tz = sg_tz_new(conf->aggregate.tz, why, sizeof(why));

                if (!tz) {
                        snprintf(errstr, errstr_size, "%s: aggregate.tz: %s",
                                 name, why);
                        return -1;
                }
                sg_tz_destroy(tz);
                if (conf->aggregate.tz_offset_min) {
                        snprintf(errstr, errstr_size,
                                 "%s: aggregate.tz and aggregate.tz_offset_min "
                                 "are both set: keep one",
                                 name);
                        return -1;
                }
        }
        if (strcmp(conf->sink.format, "avro") &&
            strcmp(conf->sink.format, "json")) {
                snprintf(errstr, errstr_size,
                         "%s: sink.format: \"%s\" is not avro or json", name,
                         conf->sink.format);
                return -1;
        }
        if (strcmp(conf->log_level, "debug") &&
            strcmp(conf->log_level, "info") &&
            strcmp(conf->log_level, "warn") &&
            strcmp(conf->log_level, "error")) {
                snprintf(errstr, errstr_size,
                         "%s: log_level: \"%s\" is not debug, info, warn or "
                         "error",
                         name, conf->log_level);
                return -1;
        }
        if (strncmp(conf->redis, "redis://", 8) &&
            strncmp(conf->redis, "unix://", 7)) {
                char url[sizeof(conf->redis)];

                snprintf(url, sizeof(url), "%s", conf->redis);
                snprintf(errstr, errstr_size,
                         "%s: redis: \"%s\" is not a redis:// or unix:// URL",
                         name, sg_log_redact(url, sizeof(url)));
                return -1;
        }
        return 0;
}

static int conf_load(sg_conf_t *conf, const char *path, char *errstr,
                     size_t errstr_size);

int sg_conf_kafka_secret(const char *name)
{
        return strcasestr(name, "password") || strcasestr(name, "secret") ||
               strcmp(name, "ssl.key.pem") == 0 ||
               strcmp(name, "sasl.oauthbearer.config") == 0;
}

/*
 * Takes the password out of the Redis URL into pw (size pwsize): the
 * userinfo of redis://[user][:password]@host..., or the password=
 * parameter of unix://...?password=P. The URL left behind holds no secret,
 * so that printing it anywhere is safe.
 */
static void url_take_password(char *url, char *pw, size_t pwsize)
{
        char *p, *at, *q, *end;

        pw[0] = '\0';
        if (strncmp(url, "redis://", 8) == 0) {
                p = url + 8;
                at = strrchr(p, '@');
                if (!at)
                        return;
                q = memchr(p, ':', at - p);
                q = q ? q + 1 : p;
                snprintf(pw, pwsize, "%.*s", (int)(at - q), q);
                memmove(p, at + 1, strlen(at + 1) + 1);
                return;
        }
        if (strncmp(url, "unix://", 7) != 0 || !(q = strchr(url, '?')))
                return;
        for (p = q + 1; *p; p = end + (*end == '&')) {
                end = p + strcspn(p, "&");
                if (strncmp(p, "password=", 9) != 0)
                        continue;
                snprintf(pw, pwsize, "%.*s", (int)(end - p - 9), p + 9);
                /* Drop "password=P" and one separator next to it. */
                if (*end == '&')
                        memmove(p, end + 1, strlen(end + 1) + 1);
                else
                        p[-1] = '\0';
                return;
        }
}

/* The first line of path into pw. 0, or -1 with errstr naming the key. */
static int read_password_file(const char *key, const char *path, char *pw,
                              size_t pwsize, char *errstr, size_t errstr_size)
{
        FILE *fp = fopen(path, "r");
        int ok;

        if (!fp) {
                snprintf(errstr, errstr_size, "%s: %s: %s", key, path,
                         strerror(errno));
                return -1;
        }
        ok = fgets(pw, (int)pwsize, fp) != NULL;
        fclose(fp);
        pw[ok ? strcspn(pw, "\r\n") : 0] = '\0';
        if (pw[0] == '\0') {
                snprintf(errstr, errstr_size,
                         "%s: %s: no password on its first line", key, path);
                return -1;
        }
        return 0;
}

/* The schema registry's password (env > file), and its URLs checked. */
static int registry_load(sg_conf_t *conf, char *errstr, size_t errstr_size)
{
        sg_schemareg_conf_t *r = &conf->schema_registry;
        const char *env = getenv("SG_SCHEMA_REGISTRY_PASSWORD");
        char urls[SG_SCHEMAREG_MAX_URLS][SG_SCHEMAREG_URL_LEN];

        if (env && env[0])
                snprintf(r->password, sizeof(r->password), "%s", env);
        else if (conf->schema_registry_password_file[0] &&
                 read_password_file("schema_registry.password_file",
                                    conf->schema_registry_password_file,
                                    r->password, sizeof(r->password), errstr,
                                    errstr_size))
                return -1;
        sg_log_secret(r->password);
        if (r->password[0] && !r->user[0]) {
                snprintf(errstr, errstr_size,
                         "schema_registry.user: empty, but a password is "
                         "set");
                return -1;
        }
        if (r->urls[0] &&
            sg_schemareg_urls_parse(r->urls, urls, SG_SCHEMAREG_MAX_URLS,
                                    errstr, errstr_size) < 0)
                return -1;
        return 0;
}

/* The Redis password (env > file > URL) and the secrets to keep out of
 * every log line. */
static int secrets_load(sg_conf_t *conf, char *errstr, size_t errstr_size)
{
        const char *env = getenv("SG_REDIS_PASSWORD");
        char url_pw[sizeof(conf->redis_password)];

        url_take_password(conf->redis, url_pw, sizeof(url_pw));
        if (env && env[0])
                snprintf(conf->redis_password, sizeof(conf->redis_password),
                         "%s", env);
        else if (conf->redis_password_file[0]) {
                if (read_password_file(
                        "redis_password_file", conf->redis_password_file,
                        conf->redis_password, sizeof(conf->redis_password),
                        errstr, errstr_size))
                        return -1;
        } else
                snprintf(conf->redis_password, sizeof(conf->redis_password),
                         "%s", url_pw);
        sg_log_secret(url_pw);
        sg_log_secret(conf->redis_password);
        sg_redis_set_password(conf->redis_password);
        for (int i = 0; i < conf->kafka_cnt; i++)
                if (sg_conf_kafka_secret(conf->kafka[i].name))
                        sg_log_secret(conf->kafka[i].value);
        return registry_load(conf, errstr, errstr_size);
}

int sg_conf_load(sg_conf_t *conf, const char *path, char *errstr,
                 size_t errstr_size)
{
        int rc = conf_load(conf, path, errstr, errstr_size);

        /* An error may quote a value: never a secret. */
        if (rc == -1 && errstr_size)
                sg_log_redact(errstr, errstr_size);
        return rc;
}

static int conf_load(sg_conf_t *conf, const char *path, char *errstr,
                     size_t errstr_size)
{
        sg_yaml_node_t *root = NULL;
        char why[256];

        memset(conf, 0, sizeof(*conf));
        for (const sg_conf_field_t *f = sg_conf_fields; f->name; f++)
                if (field_set(conf, f, f->def, 0, errstr, errstr_size))
                        return -1;

        /* SG_CONFIG= (set but empty) means "not set", as for a shell's
         * ${SG_CONFIG:-default}. */
        if (!path && getenv("SG_CONFIG") && *getenv("SG_CONFIG"))
                path = getenv("SG_CONFIG");
        if (!path && access("config/spendguard.yaml", R_OK) == 0)
                path = "config/spendguard.yaml";
        if (path) {
                const char *slash;

                if (strlen(path) >= sizeof(conf->path)) {
                        snprintf(errstr, errstr_size, "%s: path too long",
                                 path);
                        return -1;
                }
                strcpy(conf->path, path);
                slash = strrchr(path, '/');
                if (slash)
                        snprintf(conf->dir, sizeof(conf->dir), "%.*s",
                                 (int)(slash - path), path);
                else
                        strcpy(conf->dir, ".");
                root = sg_yaml_load_file(path, errstr, errstr_size);
                if (!root)
                        return -1;
                if (sg_conf_apply(conf, root, path, errstr, errstr_size)) {
                        sg_yaml_free(root);
                        return -1;
                }
                sg_yaml_free(root);
        }

        for (const sg_conf_field_t *f = sg_conf_fields; f->name; f++) {
                const char *v = f->env ? getenv(f->env) : NULL;

                if (v && field_set(conf, f, v, 0, why, sizeof(why))) {
                        snprintf(errstr, errstr_size, "$%s: %s", f->env, why);
                        return -1;
                }
        }
        if (secrets_load(conf, errstr, errstr_size))
                return -1;
        return validate(conf, errstr, errstr_size);
}

const sg_channel_conf_t *sg_conf_channel(const sg_conf_t *conf,
                                         const char *name)
{
        for (int i = 0; i < conf->channel_cnt; i++)
                if (strcmp(conf->channels[i].name, name) == 0)
                        return &conf->channels[i];
        return NULL;
}

static int has_prefix(const char *name, const char *const *prefixes)
{
        for (; *prefixes; prefixes++) {
                size_t n = strlen(*prefixes);

                if (n == 0 ? strchr(name, '.') == NULL
                           : strncmp(name, *prefixes, n) == 0)
                        return 1;
        }
        return 0;
}

void sg_conf_print_help(FILE *fp, const char *const *prefixes)
{
        for (const sg_conf_field_t *f = sg_conf_fields; f->name; f++) {
                if (!has_prefix(f->name, prefixes))
                        continue;
                char line[1024];

                snprintf(line, sizeof(line), "  %-28s %s (default: %s%s%s)",
                         f->name, f->desc, f->def, f->env ? "; env " : "",
                         f->env ? f->env : "");
                fprintf(fp, "%s\n", sg_log_redact(line, sizeof(line)));
        }
}

static const char *type_name(sg_conf_type_t t)
{
        switch (t) {
        case SG_CONF_STR:
                return "string";
        case SG_CONF_PATH:
                return "path";
        case SG_CONF_INT:
        case SG_CONF_INT64:
                return "integer";
        }
        return "?";
}

void sg_conf_write_reference(FILE *fp)
{
        fprintf(fp,
                "# Configuration reference\n\n"
                "Generated from the table in `lib/conf.c` by "
                "`sg-ctl config-reference`; a test fails when this file "
                "drifts from the code.\n\n"
                "One YAML file for every stage (`-c FILE`, else "
                "`$SG_CONFIG` if set and not empty, else "
                "`config/spendguard.yaml`). A dotted key "
                "`a.b` is key `b` in the section `a:`. Relative paths in the "
                "file resolve against the file's folder. Environment "
                "variables beat the file.\n\n"
                "| key | type | default | range | env | description |\n"
                "|---|---|---|---|---|---|\n");
        for (const sg_conf_field_t *f = sg_conf_fields; f->name; f++) {
                char range[64] = "";

                if (f->type == SG_CONF_INT || f->type == SG_CONF_INT64)
                        snprintf(range, sizeof(range), "%" PRId64 "..%" PRId64,
                                 f->min, f->max);
                fprintf(fp, "| `%s` | %s | `%s` | %s | %s | %s |\n", f->name,
                        type_name(f->type), f->def, range, f->env ? f->env : "",
                        f->desc);
        }
        fprintf(
            fp,
            "\n## `kafka:` (map)\n\nAny librdkafka property, passed "
            "through verbatim to every consumer and producer, e.g. "
            "`security.protocol: SASL_SSL`, `sasl.mechanisms: PLAIN`, "
            "`fetch.wait.max.ms: 10`. Consumer-only properties are not given "
            "to producers and producer-only ones not to consumers. The value "
            "of a property whose name contains `password` or `secret` (and "
            "`ssl.key.pem`, `sasl.oauthbearer.config`) is shown as `***` in "
            "every log line and error message (docs/security.md).\n\n"
            "## Secrets\n\n"
            "`SG_REDIS_PASSWORD` (environment only) is the Redis AUTH "
            "password; it beats `redis_password_file`, which beats a "
            "password in the `redis` URL. The password is taken out of the "
            "URL at load and never logged. `SG_SCHEMA_REGISTRY_PASSWORD` "
            "(environment only) is the schema registry's basic-auth "
            "password; it beats `schema_registry.password_file`, and is "
            "never logged either.\n\n"
            "## `channels:` (list)\n\nOne entry per paid-media channel:\n\n"
            "| key | type | description |\n|---|---|---|\n"
            "| `name` | string | channel name as it appears in events |\n"
            "| `budget_micros` | integer | daily budget in micros of "
            "the account currency |\n"
            "| `target_cpa_micros` | integer | target cost per "
            "acquisition in micros (0 = none) |\n"
            "| `floor_micros` | integer | reallocation never takes the "
            "budget below this (default 0) |\n"
            "| `cap_micros` | integer | reallocation never raises the "
            "budget above this (0 = no cap) |\n"
            "\n## What a reload changes\n\n"
            "Every key is read once, at start. `SIGHUP` to `sg-rules` "
            "reloads its rules file (`rules.file`) and nothing else; to "
            "change anything else (the `channels:` budgets, "
            "`target_cpa_micros`, floors and caps included) edit the file "
            "and restart the stage that reads it (for `channels:`: "
            "`sg-rules`; `sg-ctl` reads it on each run). Once a reallocation has moved a "
            "channel's budget, the budget in Redis (`sg-ctl budgets`) wins "
            "over `budget_micros`, also after a restart.\n");
}
