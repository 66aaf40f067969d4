/*
 * Configuration: one YAML file for all stages, a section per stage, each
 * section a declarative table (name, type, default, bounds, description) from
 * which defaults, validation, --help and docs/config.md all come.
 * Precedence: built-in default < file < environment (SG_BROKERS, SG_REDIS,
 * SG_GROUP_PREFIX, SG_LOG_LEVEL, ...). Secrets (the Redis password, Kafka
 * passwords and secrets) are registered with the log redaction at load.
 */
#ifndef SG_CONF_H
#define SG_CONF_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "schemareg.h"
#include "yaml_tree.h"

#define SG_CONF_MAX_CHANNELS 64
#define SG_CONF_MAX_KAFKA    64

typedef struct sg_channel_conf {
        char name[64];
        int64_t budget_micros;     /* daily budget */
        int64_t target_cpa_micros; /* 0 = no CPA target */
        int64_t floor_micros;      /* reallocation never goes below */
        int64_t cap_micros;        /* nor above; 0 = no cap */
} sg_channel_conf_t;

typedef struct sg_conf {
        char path[PATH_MAX]; /* the file loaded, "" if none */
        char dir[PATH_MAX];  /* its folder: relative paths resolve here */

        char brokers[512];
        char redis[512]; /* without its password: see redis_password */
        char redis_password_file[PATH_MAX];
        /* AUTH password: $SG_REDIS_PASSWORD, else the first line of
         * redis_password_file, else the one in the redis URL (removed from
         * it). Never logged: sg_conf_load registers it with sg_log_secret
         * and hands it to sg_redis_set_password. */
        char redis_password[256];
        char group_prefix[64];
        /* Static group membership when set: group.instance.id is
         * <instance_id>.<stage>; "" = dynamic membership. */
        char instance_id[128];
        char schemas_dir[PATH_MAX];
        char log_level[16];
        char currency[16]; /* display only: money is micros of it */
        int batch_linger_ms; /* -1: batches fill to size or batch_ms */

        struct {
                char impressions[128];
                char clicks[128];
                char conversions[128];
                char events[128];
                char deadletter[128];
                char aggregates[128];
                char decisions[128];
                char out_decisions[128];
                char kpis[128];
        } topics;

        struct {
                int batch_size;
                int batch_ms;
                int inflight_batches;
                int future_tolerance_s;
                int max_message_bytes;
                int64_t max_money_micros;
                int too_old_s;
                int normalize_names;
                int dedupe_horizon_s;
                int dedupe_max_entries;
                int dup_click_s;
                int dup_click_max_entries;
                char bot_ua_file[PATH_MAX];
                char dc_cidr_file[PATH_MAX];
                int tag_missing_ua;
                int marker_ms;
                int idle_ms;
        } ingest;

        struct {
                int batch_size;
                int batch_ms;
                int checkpoint_ms;
                int bucket_s;
                char windows[128];
                int snapshot_s;
                int early_ms;
                char early_windows[128];
                int kpi_window_s;
                int lateness_s;
                int retention_s;
                int tz_offset_min;
                char tz[64]; /* IANA zone name; "" = tz_offset_min */
                int freq_cap;
                int click_ttl_s;
                int max_sources;
                int max_scopes;
                int max_clicks;
                int max_devices;
        } aggregate;

        struct {
                char file[PATH_MAX];
                int batch_ms;
                int64_t reserve_micros;
        } rules;

        struct {
                char format[8];
                int dedupe_ttl_s;
                int decision_log_len;
                char webhook_url[512];
                int webhook_queue;
                int webhook_timeout_ms;
                int webhook_retries;
                int webhook_backoff_ms;
                int transactions; /* 1: Kafka transactions per batch */
        } sink;

        /* ingest and sink; urls "" = the file registry (offline). The
         * password: $SG_SCHEMA_REGISTRY_PASSWORD, else the first line of
         * password_file; registered with sg_log_secret at load. */
        sg_schemareg_conf_t schema_registry;
        char schema_registry_password_file[PATH_MAX];

        struct {
                /* "host" (the stage's default port), "host:port", or
                 * "off" */
                char listen[128];
        } metrics;

        sg_channel_conf_t channels[SG_CONF_MAX_CHANNELS];
        int channel_cnt;

        /* librdkafka properties passed through verbatim (the kafka: map). */
        struct {
                char name[128];
                char value[512];
        } kafka[SG_CONF_MAX_KAFKA];
        int kafka_cnt;
} sg_conf_t;

typedef enum {
        SG_CONF_STR,
        SG_CONF_PATH,  /* string; relative to the config file's folder */
        SG_CONF_INT,   /* int */
        SG_CONF_INT64, /* int64_t */
} sg_conf_type_t;

typedef struct sg_conf_field {
        const char *name; /* dotted: "ingest.batch_size" */
        sg_conf_type_t type;
        const char *def;
        int64_t min, max; /* ints only */
        size_t offset;    /* into sg_conf_t */
        size_t size;      /* strings: buffer size */
        const char *env;  /* environment override, or NULL */
        const char *desc;
} sg_conf_field_t;

/* The table, terminated by a NULL name. */
extern const sg_conf_field_t sg_conf_fields[];

/*
 * Fills conf with the defaults, then the file (path; when NULL: $SG_CONFIG,
 * then config/spendguard.yaml if it exists), then the environment, and
 * validates. Returns 0, or -1 with one line in errstr naming the file, line
 * and key.
 */
int sg_conf_load(sg_conf_t *conf, const char *path, char *errstr,
                 size_t errstr_size);

/* Applies a parsed document on top of conf (no env, no validation). */
int sg_conf_apply(sg_conf_t *conf, const sg_yaml_node_t *root, const char *name,
                  char *errstr, size_t errstr_size);

/* 1 when a kafka: property holds a secret (its name contains "password"
 * or "secret", or it is ssl.key.pem or sasl.oauthbearer.config). */
int sg_conf_kafka_secret(const char *name);

/* The channel's config, or NULL. */
const sg_channel_conf_t *sg_conf_channel(const sg_conf_t *conf,
                                         const char *name);

/* Resolves a config-relative path into out: absolute paths stay. */
void sg_conf_path(const sg_conf_t *conf, const char *rel, char *out,
                  size_t out_size);

/* Prints the keys of the sections given (NULL-terminated prefixes, e.g.
 * {"", "ingest.", NULL}) with defaults and descriptions, for --help. */
void sg_conf_print_help(FILE *fp, const char *const *prefixes);

/* Writes the Markdown configuration reference (docs/config.md). */
void sg_conf_write_reference(FILE *fp);

#endif
