/*
 * Integration-test harness: a private redis-server (unix socket) and
 * sg-broker, the four stages, and helpers to run tools, produce and consume.
 * Every process it starts is stopped by pid in h_stop_all() and dies with
 * the test process (PR_SET_PDEATHSIG) if the test crashes.
 */
#ifndef SG_HARNESS_H
#define SG_HARNESS_H

#include <librdkafka/rdkafka.h>
#include <sys/types.h>

#include "marker.h"

#define H_MAX_PROCS 16

typedef struct h_proc {
        pid_t pid;
        char name[32];
} h_proc_t;

typedef struct harness {
        char dir[256];       /* private temp dir: sockets, logs, files */
        char redis_url[320]; /* unix:///.../redis.sock */
        char redis_sock[300];
        char bootstrap[256];
        char control[300]; /* sg-broker control socket */
        char group_prefix[64];
        h_proc_t procs[H_MAX_PROCS];
        int proc_cnt;
        int redis_persist; /* set before h_start_infra(): an AOF, fsynced */
        char kafka_dir[300]; /* SG_KAFKA=real: the broker's config, logs */
} harness_t;

/* The global harness of the running test (one per test process). */
extern harness_t H;

/* Creates the temp dir and sets SG_REDIS/SG_GROUP_PREFIX/SG_CONFIG for
 * children (the shipped config, overridden by env), and
 * SG_METRICS_LISTEN=off (see h_spawn_env). */
void h_init(void);
/*
 * Writes dir/test.yaml, the shipped config with absolute paths, and points
 * SG_CONFIG at it. subst: pairs {"  idle_s: 10", "idle_s: 2", ..., NULL}: a
 * line containing the first gets the second in its place (indent kept);
 * append is added at the end (may be NULL). Call after h_init().
 */
void h_config(const char *const *subst, const char *append);
/*
 * 1 when the environment says SG_KAFKA=real: h_start_infra() then starts
 * a real Apache Kafka broker (tools/kafka.sh run, single-node KRaft, in
 * dir/kafka; process name "kafka") instead of sg-broker, and creates the
 * topics on it with `sg-broker --create-on` (of the sg-broker arguments,
 * only -t and --partitions/-p apply). h_broker_ctl() needs sg-broker.
 */
int h_real_kafka(void);
/* SIGKILLs the real broker, waits down_ms, and starts it again on its log
 * dir and ports. Returns at once: clients reconnect when it is back. */
void h_kafka_restart(int down_ms);
/* Starts redis-server and sg-broker and waits until both answer. */
void h_start_infra(void);
/* Starts redis-server alone (tests of a library module against the real
 * server) and waits until it answers. */
void h_start_redis(void);
/* h_start_infra, with more sg-broker arguments (e.g. "--partitions", "8"). */
void h_start_infra_args(const char *const *broker_args);
/* SIGKILLs a started process, reaps it and starts bin/<name> again
 * (without arguments); returns the new pid. */
pid_t h_kill_restart(pid_t pid, const char *name);
/* Stops redis-server with SIGTERM (it must exit 0) and starts it again on
 * the same socket; with H.redis_persist its data survives. */
void h_redis_restart(void);
/* One command (printf-style, as redisCommand) on a fresh connection to the
 * test's redis-server; its reply into out as a string ("" for nil, the
 * number for an integer). Fails the test on an error reply. Returns out. */
const char *h_redis_str(char *out, size_t size, const char *fmt, ...);
/*
 * A Redis outage with a real restart: SHUTDOWN SAVE (the data goes to
 * dir/dump.rdb; password: for AUTH, NULL if none), down_ms with no server
 * and no socket, then redis-server again on the same socket with the
 * original arguments plus extra (NULL-terminated, may be NULL, e.g.
 * "--requirepass", "pw"); it loads the dump. Returns once it answers.
 */
void h_redis_outage(int down_ms, const char *password,
                    const char *const *extra);
/*
 * A Redis restart that loads slowly: SHUTDOWN SAVE, then redis-server on
 * the same socket loading the dump key_delay_us per key (its hidden
 * key-load-delay), answering -LOADING meanwhile. Returns once it says it
 * is loading (INFO persistence).
 */
void h_redis_reload_slowly(int key_delay_us);
/* Polls until redis-server has loaded its data: 0, or -1 after ms. */
int h_redis_wait_loaded(int ms);
/* The pid of a started process by name ("sg-aggregate"), 0 if none. */
pid_t h_pid(const char *name);
/* Starts sg-ingest, sg-aggregate, sg-rules, sg-sink. */
void h_start_stages(void);
/* Starts bin/<name> with args (NULL-terminated), stderr to dir/<name>.log. */
pid_t h_spawn(const char *name, const char *const *args);
/* h_spawn with extra environment for the child only: "NAME=value"
 * entries, NULL-terminated (env may be NULL). */
pid_t h_spawn_env(const char *name, const char *const *args,
                  const char *const *env);
/* Stops one process: SIGTERM, then SIGKILL after 10 s. Returns its exit
 * status (as waitpid), or -1. */
int h_stop(pid_t pid);
/* Waits up to timeout_ms (0: just looks) for a started process to exit by
 * itself. Returns its exit code, or -1 (still running, or killed by a
 * signal). */
int h_wait(pid_t pid, int timeout_ms);
/* Sends one command to sg-broker's control socket (fault injection, e.g.
 * "broker down 1", "error Produce 5 NOT_LEADER_FOR_PARTITION"); asserts
 * the reply is ok. */
void h_broker_ctl(const char *cmd);
/* Stops everything started, in reverse order; safe to call twice. Returns
 * how many did not exit 0 on SIGTERM (a crash, a sanitizer report, a leak),
 * naming them on stderr. */
int h_stop_all(void);
/* The usual suite fixture, for TestSuite(.init/.fini): h_init(),
 * h_start_infra(), h_start_stages(); and asserts that h_stop_all() found
 * every process stopping cleanly (a crash, a sanitizer report or a leak
 * fails the test). */
void h_stack_up(void);
void h_stack_down(void);

/* Runs bin/<name> (or an absolute path) to completion, stdout into out
 * (NUL-terminated, truncated to size). Returns the exit code, -1 on error. */
int h_run(const char *name, const char *const *args, char *out, size_t size);
/* Lines of the process's log (<dir>/<name>.log) that contain needle. */
int h_log_count(const char *name, const char *needle);

/* Path of a built program. */
const char *h_bin(const char *name, char *buf, size_t size);
/* Path of a file in the source tree. */
const char *h_src(const char *rel, char *buf, size_t size);

/* A client for admin requests (rd_kafka_AlterConfigs, ...) on the test's
 * broker; the caller rd_kafka_destroy()s it. */
rd_kafka_t *h_admin(void);
/* The result event of the admin request what that was sent with queue q:
 * fails the test unless it comes within 60 s without a request-level
 * error. The caller rd_kafka_event_destroy()s it. */
rd_kafka_event_t *h_admin_result(rd_kafka_queue_t *q, const char *what);

/* Produces one message and waits for its acknowledgement. */
int h_produce(const char *topic, const void *key, size_t key_len,
              const void *val, size_t len);
/* The same, to one partition (RD_KAFKA_PARTITION_UA: by key). */
int h_produce_to(const char *topic, int32_t partition, const void *key,
                 size_t key_len, const void *val, size_t len);
/* h_produce_to without waiting; h_flush() waits for everything sent and
 * returns -1 unless all of it was acknowledged in 10 s. */
int h_produce_async(const char *topic, int32_t partition, const void *key,
                    size_t key_len, const void *val, size_t len);
int h_flush(void);
/* Produces every record of a file written by the Python encoders
 * (tests/interop/encode_*.py): <u16 topic len><topic><u32 len><value>,
 * big-endian, unkeyed. Asserts each is acknowledged; returns the count. */
int h_produce_records(const char *path);

/*
 * Reads topic from the beginning until at least min messages arrived and
 * the topic has no more, or timeout_ms passed. Returns the count; *out is an
 * array the caller frees with h_msgs_free().
 */
int h_consume_all(const char *topic, int min, int timeout_ms,
                  rd_kafka_message_t ***out);
void h_msgs_free(rd_kafka_message_t **msgs, int cnt);

/*
 * The entries of the well-formed watermark markers among msgs, in order
 * (events and malformed markers left out). Returns their count; *out is an
 * array the caller frees with free().
 */
int h_marker_entries(rd_kafka_message_t **msgs, int cnt, sg_marker_t **out);

/* The value of header name of m, copied into buf ("" if absent). */
const char *h_header(const rd_kafka_message_t *m, const char *name, char *buf,
                     size_t size);

/* 1 when group has committed, on every partition of topic, the end of the
 * partition (it has consumed everything), else 0. */
int h_group_caught_up(const char *group_suffix, const char *topic);
/* Polls h_group_caught_up() until it holds; fails the test after ms. */
void h_wait_caught_up(const char *group_suffix, const char *topic, int ms);

/* The size of dir/<name>.log now (0 if none): a start for h_wait_log. */
long h_log_size(const char *name);
/* Polls dir/<name>.log from byte from on until a line contains pattern;
 * returns the ms it took, or -1 after ms. */
long long h_wait_log(const char *name, long from, const char *pattern, int ms);

/* Monotonic ms. */
long long h_now_ms(void);
/* Wall-clock ms since the epoch: what ingest judges event time by. */
long long h_wall_ms(void);

/* A TCP port on 127.0.0.1 that nothing listens on right now. */
int h_free_port(void);
/* GET path from 127.0.0.1:port over HTTP/1.0; the body into body
 * (NUL-terminated, truncated to size). Returns the status, -1 if nothing
 * answered. */
int h_http_get(int port, const char *path, char *body, size_t size);
/* The value of one series (name and labels, as exposed) in a Prometheus
 * exposition, or -1 when it is absent. */
double h_metric(const char *text, const char *series);

#include <jansson.h>

/* Each line of a JSON-lines file (or text), as a JSON array of objects.
 * Lines that are not objects are skipped. */
json_t *h_jsonl_file(const char *path);
json_t *h_jsonl_text(const char *text);

/* `sg-ctl kpis --json [--channel C]` as an array of objects. */
json_t *h_kpis(const char *channel);

/*
 * 1 when every row of truth (channel, campaign_id and the ChannelKpi
 * counters) has a row in kpis with the same values, else 0 with the first
 * difference in why. Rows of truth without "channel" are ignored.
 */
int h_kpis_match(json_t *truth, json_t *kpis, char *why, size_t size);

/*
 * Polls h_kpis(channel) (NULL: all channels) every 300 ms until it matches
 * truth (h_kpis_match) or timeout_ms passed. Returns the matching array, for
 * further checks (the caller json_decref()s it), or NULL when it never
 * matched; why then holds the last difference.
 */
json_t *h_kpis_wait(json_t *truth, const char *channel, int timeout_ms,
                    char *why, size_t why_size);

/* The "sent" row of sg-gen's truth (--truth): events it had
 * acknowledged. */
long long h_truth_sent(json_t *truth);

/* Waits (up to timeout_ms) until every KPI equals the truth sg-gen wrote
 * to truth_path, failing the test if they never do; returns the events
 * sg-gen sent. */
long long h_kpis_match_truth_file(const char *truth_path, int timeout_ms);

/*
 * What the input topics hold, once per event id (the mock broker can lose
 * acknowledged records and write a retried batch twice across an outage):
 * per channel, {"impressions", "clicks", "conversions", "spend_micros",
 * "revenue_micros"}. *held is the count of distinct events.
 */
json_t *h_held_events(long long *held);
/*
 * Polls sg-ctl kpis until every channel-level row has the counters of
 * h_held_events()' object, or timeout_ms passed: 1, or 0 with the first
 * difference in why.
 */
int h_kpis_wait_held(json_t *held, int timeout_ms, char *why, size_t size);

/*
 * Runs tests/interop/<script> (an encoder using Python's avro library) with
 * the schemas folder, dir/<prefix>.records, dir/<prefix>.truth and a base
 * time ten minutes ago, asserts it succeeded, produces every record it
 * wrote, and returns the truth file's rows; *produced is the record count.
 */
json_t *h_python_encode(const char *script, const char *prefix, int *produced);

/* Writes dir/rules.yaml with rules_yaml and the test config pointing
 * rules.file at it (h_config with subst, which may be NULL, plus that). */
void h_rules_config(const char *rules_yaml, const char *const *subst);

struct sg_codec;
/* The codec over the source tree's schemas (opened once; the process
 * keeps it). */
struct sg_codec *h_codec(void);
/* A channel's today snapshot ending at end (1,000,000 impressions, 10,000
 * clicks, 100 conversions when it has revenue), produced to topic keyed by
 * the channel and acknowledged. */
void h_produce_today(const char *topic, const char *channel,
                     long long spend_micros, long long revenue_micros,
                     long long end);

/* A complete 1m snapshot of (channel, campaign: "" = the channel) ending
 * at end (watermark end), zero counters, no sources, into *s. */
struct sg_snapshot;
void h_snapshot_1m(struct sg_snapshot *s, const char *channel,
                   const char *campaign, long long end);
/* Produces s to sg.aggregates keyed by its channel, unacknowledged until
 * h_flush(). */
void h_produce_snapshot(const struct sg_snapshot *s);

#endif
