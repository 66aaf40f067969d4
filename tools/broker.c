/*
 * sg-broker: a single-process Kafka-protocol cluster on librdkafka's mock
 * cluster, for development, demos and tests, with its fault injection
 * (broker down/up, RTT, request errors) exposed on a unix control socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "log.h"

#ifndef SG_VERSION
#define SG_VERSION "unknown"
#endif

#define SG_BROKER_DEFAULT_PARTITIONS 4
#define SG_BROKER_MAX_PARTITIONS     1000
#define SG_BROKER_MAX_BROKERS        32
#define SG_BROKER_MAX_TOPIC_LEN      249 /* Kafka's own limit */
#define SG_BROKER_MAX_RTT_MS         3600000
#define SG_BROKER_MAX_ERROR_COUNT    100000
#define SG_BROKER_POLL_MS            200

#define SG_CTL_MAX_CLIENTS 32
#define SG_CTL_LINE_MAX    1024
/* A client that stops reading its replies is dropped past this. */
#define SG_CTL_OUT_MAX   65536
#define SG_CTL_MAX_ARGS  8
#define SG_CTL_SEND_MS   10000
#define SG_CTL_REPLY_MAX 4096

/* The spendguard topics (docs/config.md, topics.*), created when no -t
 * is given. */
static const char *const sg_broker_default_topics[] = {
    "ad-impressions", "ad-clicks",     "ad-conversions",
    "sg.events",      "sg.deadletter", "sg.aggregates",
    "sg.decisions",   "ad-decisions",  "channel-kpis",
};

typedef struct sg_broker_topic_s {
        char name[SG_BROKER_MAX_TOPIC_LEN + 1];
        int partitions; /* -1 until resolved to --partitions */
} sg_broker_topic_t;

typedef struct sg_broker_opts_s {
        sg_broker_topic_t *topics;
        int topic_cnt;
        int partitions;
        int brokers;
        const char *bootstrap_file;
        const char *control_path;
        const char *send_path;
        char *send_cmd;        /* owned */
        const char *create_on; /* a real cluster's bootstrap.servers */
} sg_broker_opts_t;

typedef struct sg_ctl_client_s {
        int fd;
        char in[SG_CTL_LINE_MAX];
        size_t in_len;
        int discarding; /* dropping the rest of an over-long line */
        char *out;
        size_t out_len;
        size_t out_cap;
} sg_ctl_client_t;

typedef struct sg_broker_s {
        const sg_broker_opts_t *opts;
        rd_kafka_t *rk; /* dummy producer the mock cluster hangs off */
        rd_kafka_mock_cluster_t *mcluster;
        int replication;
        int listen_fd;
        dev_t ctl_dev; /* identity of our socket file, so that exit */
        ino_t ctl_ino; /* never unlinks a successor's socket */
        sg_ctl_client_t clients[SG_CTL_MAX_CLIENTS];
        int client_cnt;
        struct timespec last_cmd; /* when the last mock command returned */
        int bs_fd;                /* --bootstrap-file's tmp, until renamed */
        char bs_tmp[PATH_MAX];
} sg_broker_t;

static volatile sig_atomic_t sg_broker_stop_sig;

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

/* Strict integer parse: the whole string, within [min, max]. */
static int sg_broker_parse_long(const char *s, long min, long max, long *out)
{
        char *end;
        long v;

        if (!s || !*s)
                return -1;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || *end != '\0' || v < min || v > max)
                return -1;
        *out = v;
        return 0;
}

/* Kafka's legal topic names; the mock itself accepts anything. */
static int sg_broker_topic_valid(const char *name)
{
        size_t len = strlen(name);

        if (len == 0 || len > SG_BROKER_MAX_TOPIC_LEN)
                return 0;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                return 0;
        for (const char *p = name; *p; p++) {
                char c = *p;

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                      c == '-'))
                        return 0;
        }
        return 1;
}

/*
 * librdkafka 2.0.2's mock thread serves its command queue and only then
 * drains its wake-up pipe, so a command queued right after the previous
 * one returned can lose its wake-up and wait out the thread's 1 s poll.
 * Leaving a short gap after each command closes that window: creating the
 * nine default topics back to back stalled 2-3 s in 34 of 40 starts, with
 * the gap in none of 40.
 */
#define SG_BROKER_MOCK_GAP_NS 5000000L

static void sg_broker_mock_pace(sg_broker_t *b)
{
        struct timespec now, until = b->last_cmd;

        if (until.tv_sec == 0 && until.tv_nsec == 0)
                return;
        until.tv_nsec += SG_BROKER_MOCK_GAP_NS;
        if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec < until.tv_sec ||
            (now.tv_sec == until.tv_sec && now.tv_nsec < until.tv_nsec))
                while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until,
                                       NULL) == EINTR)
                        ;
}

static rd_kafka_resp_err_t sg_broker_mock_done(sg_broker_t *b,
                                               rd_kafka_resp_err_t err)
{
        clock_gettime(CLOCK_MONOTONIC, &b->last_cmd);
        return err;
}

/* ------------------------------------------------------------------ */
/* Name tables for the control protocol                                 */
/* ------------------------------------------------------------------ */

typedef struct sg_ctl_api_s {
        const char *name;
        int16_t key;
} sg_ctl_api_t;

/* Kafka protocol ApiKeys; librdkafka exports no name lookup for them. */
static const sg_ctl_api_t sg_ctl_apis[] = {
    {"Produce", 0},
    {"Fetch", 1},
    {"ListOffsets", 2},
    {"Metadata", 3},
    {"OffsetCommit", 8},
    {"OffsetFetch", 9},
    {"FindCoordinator", 10},
    {"JoinGroup", 11},
    {"Heartbeat", 12},
    {"LeaveGroup", 13},
    {"SyncGroup", 14},
    {"DescribeGroups", 15},
    {"ListGroups", 16},
    {"ApiVersions", 18},
    {"InitProducerId", 22},
    {"OffsetForLeaderEpoch", 23},
    {"AddPartitionsToTxn", 24},
    {"AddOffsetsToTxn", 25},
    {"EndTxn", 26},
    {"TxnOffsetCommit", 28},
};

#define SG_CTL_API_CNT (int)(sizeof(sg_ctl_apis) / sizeof(sg_ctl_apis[0]))

/* Highest ApiKey Kafka defines today, with headroom. */
#define SG_CTL_API_KEY_MAX 127

static int sg_ctl_api_parse(const char *s, int16_t *key)
{
        long v;

        for (int i = 0; i < SG_CTL_API_CNT; i++) {
                if (strcasecmp(s, sg_ctl_apis[i].name) == 0) {
                        *key = sg_ctl_apis[i].key;
                        return 0;
                }
        }
        if (sg_broker_parse_long(s, 0, SG_CTL_API_KEY_MAX, &v) == 0) {
                *key = (int16_t)v;
                return 0;
        }
        return -1;
}

/*
 * Error codes by number or by librdkafka's own name table, so every code
 * the library knows is accepted, not just a hand-picked few.
 */
static int sg_ctl_errcode_parse(const char *s, rd_kafka_resp_err_t *err)
{
        static const char prefix[] = "RD_KAFKA_RESP_ERR_";
        const struct rd_kafka_err_desc *descs;
        size_t cnt;
        long v;
        int numeric;

        if (strncasecmp(s, prefix, sizeof(prefix) - 1) == 0)
                s += sizeof(prefix) - 1;
        numeric = sg_broker_parse_long(s, INT_MIN, INT_MAX, &v) == 0;

        rd_kafka_get_err_descs(&descs, &cnt);
        for (size_t i = 0; i < cnt; i++) {
                if (!descs[i].name)
                        continue; /* holes in the table */
                if ((numeric && (long)descs[i].code == v) ||
                    (!numeric && strcasecmp(s, descs[i].name) == 0)) {
                        *err = descs[i].code;
                        return 0;
                }
        }
        return -1;
}

/* ------------------------------------------------------------------ */
/* Control commands                                                     */
/* ------------------------------------------------------------------ */

typedef int (*sg_ctl_fn_t)(sg_broker_t *b, int argc, char **argv, char *errstr,
                           size_t size);

typedef struct sg_ctl_cmd_s {
        const char *name;
        int argc; /* including the command word */
        sg_ctl_fn_t fn;
        const char *usage;
} sg_ctl_cmd_t;

/* "all" and -1 address every broker, as the mock API does. */
static int sg_ctl_broker_id(sg_broker_t *b, const char *s, int32_t *id,
                            char *errstr, size_t size)
{
        long v;

        if (strcasecmp(s, "all") == 0) {
                *id = -1;
                return 0;
        }
        if (sg_broker_parse_long(s, -1, b->opts->brokers, &v) == 0 && v != 0) {
                *id = (int32_t)v;
                return 0;
        }
        snprintf(errstr, size, "bad broker id '%.32s' (1..%d, -1 or all)", s,
                 b->opts->brokers);
        return -1;
}

static int sg_ctl_mock_result(rd_kafka_resp_err_t err, char *errstr,
                              size_t size)
{
        if (!err)
                return 0;
        snprintf(errstr, size, "%s", rd_kafka_err2name(err));
        return -1;
}

static int sg_ctl_ping(sg_broker_t *b, int argc, char **argv, char *errstr,
                       size_t size)
{
        return 0;
}

static int sg_ctl_broker(sg_broker_t *b, int argc, char **argv, char *errstr,
                         size_t size)
{
        rd_kafka_resp_err_t err;
        int32_t id;

        if (sg_ctl_broker_id(b, argv[2], &id, errstr, size) == -1)
                return -1;
        if (strcasecmp(argv[1], "down") == 0) {
                sg_broker_mock_pace(b);
                err = rd_kafka_mock_broker_set_down(b->mcluster, id);
        } else if (strcasecmp(argv[1], "up") == 0) {
                sg_broker_mock_pace(b);
                err = rd_kafka_mock_broker_set_up(b->mcluster, id);
        } else {
                snprintf(errstr, size, "usage: broker down|up <id>");
                return -1;
        }
        return sg_ctl_mock_result(sg_broker_mock_done(b, err), errstr, size);
}

static int sg_ctl_rtt(sg_broker_t *b, int argc, char **argv, char *errstr,
                      size_t size)
{
        int32_t id;
        long ms;

        if (sg_ctl_broker_id(b, argv[1], &id, errstr, size) == -1)
                return -1;
        if (sg_broker_parse_long(argv[2], 0, SG_BROKER_MAX_RTT_MS, &ms) == -1) {
                snprintf(errstr, size, "bad rtt '%.32s' (0..%d ms)", argv[2],
                         SG_BROKER_MAX_RTT_MS);
                return -1;
        }
        sg_broker_mock_pace(b);
        return sg_ctl_mock_result(
            sg_broker_mock_done(
                b, rd_kafka_mock_broker_set_rtt(b->mcluster, id, (int)ms)),
            errstr, size);
}

static int sg_ctl_error(sg_broker_t *b, int argc, char **argv, char *errstr,
                        size_t size)
{
        rd_kafka_resp_err_t code, *codes;
        int16_t key;
        long cnt;

        if (sg_ctl_api_parse(argv[1], &key) == -1) {
                snprintf(errstr, size, "unknown api '%.64s'", argv[1]);
                return -1;
        }
        if (sg_broker_parse_long(argv[2], 1, SG_BROKER_MAX_ERROR_COUNT, &cnt) ==
            -1) {
                snprintf(errstr, size, "bad count '%.32s' (1..%d)", argv[2],
                         SG_BROKER_MAX_ERROR_COUNT);
                return -1;
        }
        if (sg_ctl_errcode_parse(argv[3], &code) == -1) {
                snprintf(errstr, size, "unknown error code '%.64s'", argv[3]);
                return -1;
        }
        /* The array form avoids building a va_list of cnt arguments. */
        codes = malloc((size_t)cnt * sizeof(*codes));
        if (!codes) {
                snprintf(errstr, size, "out of memory");
                return -1;
        }
        for (long i = 0; i < cnt; i++)
                codes[i] = code;
        rd_kafka_mock_push_request_errors_array(b->mcluster, key, (size_t)cnt,
                                                codes);
        free(codes);
        return 0;
}

static int sg_ctl_clear(sg_broker_t *b, int argc, char **argv, char *errstr,
                        size_t size)
{
        int16_t key;

        /* Every key, so errors pushed by number are cleared too. */
        if (strcasecmp(argv[1], "all") == 0) {
                for (int k = 0; k <= SG_CTL_API_KEY_MAX; k++)
                        rd_kafka_mock_clear_request_errors(b->mcluster,
                                                           (int16_t)k);
                return 0;
        }
        if (sg_ctl_api_parse(argv[1], &key) == -1) {
                snprintf(errstr, size, "unknown api '%.64s'", argv[1]);
                return -1;
        }
        rd_kafka_mock_clear_request_errors(b->mcluster, key);
        return 0;
}

static int sg_broker_topic_create(sg_broker_t *b, const char *name,
                                  int partitions, char *errstr, size_t size);

static int sg_ctl_topic(sg_broker_t *b, int argc, char **argv, char *errstr,
                        size_t size)
{
        long partitions;

        if (!sg_broker_topic_valid(argv[1])) {
                snprintf(errstr, size,
                         "bad topic name (1..%d of [a-zA-Z0-9._-])",
                         SG_BROKER_MAX_TOPIC_LEN);
                return -1;
        }
        if (sg_broker_parse_long(argv[2], 1, SG_BROKER_MAX_PARTITIONS,
                                 &partitions) == -1) {
                snprintf(errstr, size, "bad partition count '%.32s' (1..%d)",
                         argv[2], SG_BROKER_MAX_PARTITIONS);
                return -1;
        }
        return sg_broker_topic_create(b, argv[1], (int)partitions, errstr,
                                      size);
}

static int sg_ctl_help(sg_broker_t *b, int argc, char **argv, char *errstr,
                       size_t size);

static const sg_ctl_cmd_t sg_ctl_cmds[] = {
    {"ping", 1, sg_ctl_ping, "ping"},
    {"broker", 3, sg_ctl_broker, "broker down|up <id>"},
    {"rtt", 3, sg_ctl_rtt, "rtt <broker_id> <ms>"},
    {"error", 4, sg_ctl_error, "error <api> <count> <errcode>"},
    {"clear", 2, sg_ctl_clear, "clear <api>|all"},
    {"topic", 3, sg_ctl_topic, "topic <name> <partitions>"},
    {"help", 1, sg_ctl_help, "help"},
};

#define SG_CTL_CMD_CNT (int)(sizeof(sg_ctl_cmds) / sizeof(sg_ctl_cmds[0]))

/* Text left in errstr on success rides along: "ok <text>". */
static int sg_ctl_help(sg_broker_t *b, int argc, char **argv, char *errstr,
                       size_t size)
{
        size_t o = 0;

        o += (size_t)snprintf(errstr, size, "commands:");
        for (int i = 0; i < SG_CTL_CMD_CNT && o < size; i++)
                o += (size_t)snprintf(errstr + o, size - o, " %s%s",
                                      sg_ctl_cmds[i].usage,
                                      i + 1 < SG_CTL_CMD_CNT ? ";" : "");
        return 0;
}

/*
 * Runs one command line and writes the reply line (without newline) into
 * reply. Returns 0 when nothing is to be sent (a blank line).
 */
static int sg_ctl_execute(sg_broker_t *b, char *line, char *reply, size_t size)
{
        char *argv[SG_CTL_MAX_ARGS + 1];
        char errstr[512] = "";
        char qcmd[SG_CTL_LINE_MAX + 64];
        char *save = NULL, *tok;
        int argc = 0;
        const sg_ctl_cmd_t *cmd = NULL;

        sg_log_quote(qcmd, sizeof(qcmd), line);
        for (tok = strtok_r(line, " \t", &save); tok;
             tok = strtok_r(NULL, " \t", &save)) {
                if (argc == SG_CTL_MAX_ARGS) {
                        argc++;
                        break;
                }
                argv[argc++] = tok;
        }
        if (argc == 0)
                return 0;
        argv[argc < SG_CTL_MAX_ARGS ? argc : SG_CTL_MAX_ARGS] = NULL;

        for (int i = 0; i < SG_CTL_CMD_CNT; i++) {
                if (strcasecmp(argv[0], sg_ctl_cmds[i].name) == 0) {
                        cmd = &sg_ctl_cmds[i];
                        break;
                }
        }
        if (!cmd) {
                snprintf(reply, size, "err unknown command");
        } else if (argc != cmd->argc) {
                snprintf(reply, size, "err usage: %s", cmd->usage);
        } else if (cmd->fn(b, argc, argv, errstr, sizeof(errstr)) == -1) {
                snprintf(reply, size, "err %s", errstr);
        } else {
                snprintf(reply, size, "ok%s%s", *errstr ? " " : "", errstr);
        }

        if (cmd && cmd->fn != sg_ctl_ping && cmd->fn != sg_ctl_help) {
                char qreply[SG_CTL_REPLY_MAX];

                sg_info("event=control cmd=%s reply=%s", qcmd,
                        sg_log_quote(qreply, sizeof(qreply), reply));
        }
        return 1;
}

/* ------------------------------------------------------------------ */
/* Control socket server                                                */
/* ------------------------------------------------------------------ */

static void sg_ctl_client_close(sg_broker_t *b, int idx)
{
        sg_ctl_client_t *c = &b->clients[idx];

        close(c->fd);
        free(c->out);
        b->client_cnt--;
        if (idx != b->client_cnt)
                b->clients[idx] = b->clients[b->client_cnt];
        memset(&b->clients[b->client_cnt], 0, sizeof(b->clients[0]));
}

static int sg_ctl_client_queue(sg_ctl_client_t *c, const char *s)
{
        size_t len = strlen(s);

        if (c->out_len + len + 1 > SG_CTL_OUT_MAX)
                return -1;
        if (c->out_len + len + 1 > c->out_cap) {
                size_t cap = c->out_cap ? c->out_cap : 256;
                char *p;

                while (cap < c->out_len + len + 1)
                        cap *= 2;
                p = realloc(c->out, cap);
                if (!p)
                        return -1;
                c->out = p;
                c->out_cap = cap;
        }
        memcpy(c->out + c->out_len, s, len);
        c->out[c->out_len + len] = '\n';
        c->out_len += len + 1;
        return 0;
}

/* Returns -1 when the client is gone. */
static int sg_ctl_client_flush(sg_ctl_client_t *c)
{
        while (c->out_len > 0) {
                ssize_t n = send(c->fd, c->out, c->out_len,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return 0;
                        return -1;
                }
                memmove(c->out, c->out + n, c->out_len - (size_t)n);
                c->out_len -= (size_t)n;
        }
        return 0;
}

static int sg_ctl_client_line(sg_broker_t *b, sg_ctl_client_t *c, char *line,
                              size_t len)
{
        char reply[SG_CTL_REPLY_MAX];

        if (len > 0 && line[len - 1] == '\r')
                line[--len] = '\0';
        if (memchr(line, '\0', len)) {
                snprintf(reply, sizeof(reply), "err unknown command");
        } else if (!sg_ctl_execute(b, line, reply, sizeof(reply))) {
                return 0;
        }
        return sg_ctl_client_queue(c, reply);
}

/*
 * Splits what has arrived into lines; a line may come in several reads and
 * a read may hold several lines. Returns -1 to drop the client.
 */
static int sg_ctl_client_consume(sg_broker_t *b, sg_ctl_client_t *c)
{
        size_t start = 0;
        char *nl;

        while ((nl = memchr(c->in + start, '\n', c->in_len - start))) {
                size_t len = (size_t)(nl - (c->in + start));

                *nl = '\0';
                if (c->discarding)
                        c->discarding = 0;
                else if (sg_ctl_client_line(b, c, c->in + start, len) == -1)
                        return -1;
                start += len + 1;
        }
        memmove(c->in, c->in + start, c->in_len - start);
        c->in_len -= start;

        if (c->in_len == sizeof(c->in)) {
                c->in_len = 0;
                if (!c->discarding) {
                        c->discarding = 1;
                        return sg_ctl_client_queue(c, "err line too long");
                }
        }
        return 0;
}

/* Returns -1 to drop the client. */
static int sg_ctl_client_read(sg_broker_t *b, sg_ctl_client_t *c)
{
        for (;;) {
                ssize_t n = recv(c->fd, c->in + c->in_len,
                                 sizeof(c->in) - c->in_len, MSG_DONTWAIT);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return 0;
                        return -1;
                }
                if (n == 0) {
                        /* A last line without a newline still counts;
                         * its reply is sent best effort. */
                        if (c->in_len > 0 && !c->discarding &&
                            c->in_len < sizeof(c->in)) {
                                c->in[c->in_len] = '\0';
                                sg_ctl_client_line(b, c, c->in, c->in_len);
                                c->in_len = 0;
                        }
                        sg_ctl_client_flush(c);
                        return -1;
                }
                c->in_len += (size_t)n;
                if (sg_ctl_client_consume(b, c) == -1)
                        return -1;
        }
}

static void sg_ctl_accept(sg_broker_t *b)
{
        for (;;) {
                int fd = accept4(b->listen_fd, NULL, NULL,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (fd < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN && errno != EWOULDBLOCK)
                                sg_warn("event=control_accept_failed "
                                        "error=\"%s\"",
                                        strerror(errno));
                        return;
                }
                if (b->client_cnt == SG_CTL_MAX_CLIENTS) {
                        static const char msg[] = "err too many clients\n";

                        (void)!send(fd, msg, sizeof(msg) - 1,
                                    MSG_NOSIGNAL | MSG_DONTWAIT);
                        close(fd);
                        continue;
                }
                memset(&b->clients[b->client_cnt], 0, sizeof(b->clients[0]));
                b->clients[b->client_cnt].fd = fd;
                b->client_cnt++;
        }
}

static int sg_ctl_listen(sg_broker_t *b, const char *path, char *errstr,
                         size_t size)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct stat st;
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path)) {
                snprintf(errstr, size, "--control path longer than %zu bytes",
                         sizeof(sa.sun_path) - 1);
                return -1;
        }
        strcpy(sa.sun_path, path);

        if (lstat(path, &st) == 0) {
                int probe;

                /* Refuse to delete anything but a socket: a typo in
                 * --control must not cost a file. */
                if (!S_ISSOCK(st.st_mode)) {
                        snprintf(errstr, size,
                                 "--control %s exists and is not a socket",
                                 path);
                        return -1;
                }
                /* A socket someone still answers on is not stale. */
                probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (probe >= 0 &&
                    connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
                        close(probe);
                        snprintf(errstr, size,
                                 "--control %s is in use by a running "
                                 "process",
                                 path);
                        return -1;
                }
                if (probe >= 0)
                        close(probe);
                if (unlink(path) == -1 && errno != ENOENT) {
                        snprintf(errstr, size, "cannot remove stale %s: %s",
                                 path, strerror(errno));
                        return -1;
                }
        }

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                snprintf(errstr, size, "socket: %s", strerror(errno));
                return -1;
        }
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
            listen(fd, 16) == -1 || stat(path, &st) == -1) {
                snprintf(errstr, size, "cannot listen on %s: %s", path,
                         strerror(errno));
                close(fd);
                return -1;
        }
        b->listen_fd = fd;
        b->ctl_dev = st.st_dev;
        b->ctl_ino = st.st_ino;
        return 0;
}

static void sg_ctl_close(sg_broker_t *b)
{
        struct stat st;

        while (b->client_cnt > 0)
                sg_ctl_client_close(b, b->client_cnt - 1);
        if (b->listen_fd < 0)
                return;
        close(b->listen_fd);
        b->listen_fd = -1;
        if (lstat(b->opts->control_path, &st) == 0 && st.st_dev == b->ctl_dev &&
            st.st_ino == b->ctl_ino)
                unlink(b->opts->control_path);
}

/* ------------------------------------------------------------------ */
/* Cluster                                                              */
/* ------------------------------------------------------------------ */

static void sg_broker_log_cb(const rd_kafka_t *rk, int level, const char *fac,
                             const char *buf)
{
        char qmsg[1024];
        sg_log_level_t l = level <= 3   ? SG_LOG_ERROR
                           : level == 4 ? SG_LOG_WARN
                           : level <= 6 ? SG_LOG_INFO
                                        : SG_LOG_DEBUG;

        /* The handle that hosts the cluster has no brokers on purpose. */
        if (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "bootstrap.servers"))
                l = SG_LOG_DEBUG;

        sg_log(l, "event=rdkafka fac=%s msg=%s", fac,
               sg_log_quote(qmsg, sizeof(qmsg), buf));
}

static int sg_broker_topic_create(sg_broker_t *b, const char *name,
                                  int partitions, char *errstr, size_t size)
{
        rd_kafka_resp_err_t err;

        sg_broker_mock_pace(b);
        err = sg_broker_mock_done(
            b, rd_kafka_mock_topic_create(b->mcluster, name, partitions,
                                          b->replication));
        if (err) {
                snprintf(errstr, size, "topic %s: %s", name,
                         rd_kafka_err2name(err));
                return -1;
        }
        sg_info("event=topic_create topic=%s partitions=%d replication=%d",
                name, partitions, b->replication);
        return 0;
}

static int sg_broker_cluster_new(sg_broker_t *b, char *errstr, size_t size)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char kerr[256];

        rd_kafka_conf_set_log_cb(conf, sg_broker_log_cb);
        if (rd_kafka_conf_set(conf, "client.id", "sg-broker", kerr,
                              sizeof(kerr)) != RD_KAFKA_CONF_OK) {
                snprintf(errstr, size, "rdkafka conf: %s", kerr);
                rd_kafka_conf_destroy(conf);
                return -1;
        }
        /* rd_kafka_new() takes ownership of conf only on success. */
        b->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
        if (!b->rk) {
                snprintf(errstr, size, "rd_kafka_new: %s", kerr);
                rd_kafka_conf_destroy(conf);
                return -1;
        }
        b->mcluster = rd_kafka_mock_cluster_new(b->rk, b->opts->brokers);
        if (!b->mcluster) {
                snprintf(errstr, size, "cannot create mock cluster");
                return -1;
        }
        return 0;
}

static void sg_broker_bootstrap_abort(sg_broker_t *b);

static void sg_broker_destroy(sg_broker_t *b)
{
        sg_broker_bootstrap_abort(b);
        sg_ctl_close(b);
        if (b->mcluster)
                rd_kafka_mock_cluster_destroy(b->mcluster);
        b->mcluster = NULL;
        if (b->rk)
                rd_kafka_destroy(b->rk);
        b->rk = NULL;
}

/*
 * The bootstrap file is written to a tmp file and renamed, so that a reader
 * never sees half of it. The tmp file is created before the cluster, so a
 * bad path fails fast like a bad argument.
 */
static int sg_broker_bootstrap_open(sg_broker_t *b, const char *path,
                                    char *errstr, size_t size)
{
        if (snprintf(b->bs_tmp, sizeof(b->bs_tmp), "%s.tmp.%ld", path,
                     (long)getpid()) >= (int)sizeof(b->bs_tmp)) {
                snprintf(errstr, size, "--bootstrap-file path too long");
                b->bs_tmp[0] = '\0';
                return -1;
        }
        b->bs_fd =
            open(b->bs_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (b->bs_fd < 0) {
                snprintf(errstr, size,
                         "--bootstrap-file: cannot create %.300s: %s",
                         b->bs_tmp, strerror(errno));
                b->bs_tmp[0] = '\0';
                return -1;
        }
        return 0;
}

static int sg_broker_bootstrap_commit(sg_broker_t *b, const char *path,
                                      const char *bootstrap, char *errstr,
                                      size_t size)
{
        size_t len = strlen(bootstrap);
        int fd = b->bs_fd;

        b->bs_fd = -1;
        if (write(fd, bootstrap, len) != (ssize_t)len ||
            write(fd, "\n", 1) != 1 || fsync(fd) == -1) {
                snprintf(errstr, size, "cannot write %.300s: %s", b->bs_tmp,
                         strerror(errno));
                close(fd);
                return -1;
        }
        close(fd);
        if (rename(b->bs_tmp, path) == -1) {
                snprintf(errstr, size, "cannot rename %.200s to %.200s: %s",
                         b->bs_tmp, path, strerror(errno));
                return -1;
        }
        b->bs_tmp[0] = '\0';
        return 0;
}

/* Drops a tmp file that never got renamed. */
static void sg_broker_bootstrap_abort(sg_broker_t *b)
{
        if (b->bs_fd >= 0)
                close(b->bs_fd);
        b->bs_fd = -1;
        if (b->bs_tmp[0])
                unlink(b->bs_tmp);
        b->bs_tmp[0] = '\0';
}

static void sg_broker_on_signal(int sig)
{
        sg_broker_stop_sig = sig;
}

/* Serves the control socket until SIGTERM/SIGINT. */
static void sg_broker_loop(sg_broker_t *b, const sigset_t *waitmask)
{
        struct pollfd fds[1 + SG_CTL_MAX_CLIENTS];
        const struct timespec tmo = {.tv_sec = 0,
                                     .tv_nsec = SG_BROKER_POLL_MS * 1000000L};

        while (!sg_broker_stop_sig) {
                int nfds = 0, ctl = b->listen_fd >= 0;
                int cnt = b->client_cnt;

                if (ctl)
                        fds[nfds++] = (struct pollfd){.fd = b->listen_fd,
                                                      .events = POLLIN};
                for (int i = 0; i < cnt; i++)
                        fds[nfds++] = (struct pollfd){
                            .fd = b->clients[i].fd,
                            .events =
                                POLLIN |
                                (b->clients[i].out_len > 0 ? POLLOUT : 0)};

                /* Signals are unblocked only inside ppoll(), so a
                 * SIGTERM can never slip in between check and sleep. */
                if (ppoll(fds, (nfds_t)nfds, &tmo, waitmask) < 0) {
                        if (errno == EINTR)
                                continue;
                        sg_error("event=poll_failed error=\"%s\"",
                                 strerror(errno));
                        return;
                }

                /* Walk backwards: closing swaps the last client in. */
                for (int i = cnt - 1; i >= 0; i--) {
                        sg_ctl_client_t *c = &b->clients[i];
                        short re = fds[ctl + i].revents;
                        int drop = 0;

                        if (re & (POLLIN | POLLHUP | POLLERR))
                                drop = sg_ctl_client_read(b, c) == -1;
                        if (!drop && c->out_len > 0)
                                drop = sg_ctl_client_flush(c) == -1;
                        if (drop)
                                sg_ctl_client_close(b, i);
                }
                if (ctl && (fds[0].revents & POLLIN))
                        sg_ctl_accept(b);
        }
}

/* ------------------------------------------------------------------ */
/* Client mode: --send PATH 'command'                                   */
/* ------------------------------------------------------------------ */

static int sg_broker_send(const char *path, const char *cmd)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char reply[SG_CTL_REPLY_MAX];
        size_t len = 0, cmdlen = strlen(cmd);
        char *line;
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "sg-broker: --send path too long\n");
                return 2;
        }
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
                fprintf(stderr, "sg-broker: cannot connect to %s: %s\n", path,
                        strerror(errno));
                if (fd >= 0)
                        close(fd);
                return 1;
        }

        line = malloc(cmdlen + 2);
        if (!line) {
                close(fd);
                return 1;
        }
        memcpy(line, cmd, cmdlen);
        line[cmdlen] = '\n';
        for (size_t off = 0; off < cmdlen + 1;) {
                ssize_t n =
                    send(fd, line + off, cmdlen + 1 - off, MSG_NOSIGNAL);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        fprintf(stderr, "sg-broker: send to %s: %s\n", path,
                                strerror(errno));
                        free(line);
                        close(fd);
                        return 1;
                }
                off += (size_t)n;
        }
        free(line);

        /* A dead broker must not hang a test script forever. */
        while (len < sizeof(reply) - 1 && !memchr(reply, '\n', len)) {
                struct pollfd pfd = {.fd = fd, .events = POLLIN};
                int r = poll(&pfd, 1, SG_CTL_SEND_MS);
                ssize_t n;

                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0) {
                        fprintf(stderr, "sg-broker: no reply from %s\n", path);
                        close(fd);
                        return 1;
                }
                n = recv(fd, reply + len, sizeof(reply) - 1 - len, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                len += (size_t)n;
        }
        close(fd);
        reply[len] = '\0';
        reply[strcspn(reply, "\r\n")] = '\0';
        if (len == 0) {
                fprintf(stderr, "sg-broker: connection closed by %s\n", path);
                return 1;
        }
        printf("%s\n", reply);
        return strncmp(reply, "ok", 2) == 0 ? 0 : 1;
}

/* ------------------------------------------------------------------ */
/* Client mode: --create-on BOOTSTRAP (a real Kafka cluster)            */
/* ------------------------------------------------------------------ */

#define SG_CREATE_WAIT_MS 60000

/* 1 when the cluster's metadata shows every topic of o with all its
 * partitions led, else 0 (also when the broker does not answer yet). */
static int sg_broker_real_ready(rd_kafka_t *rk, const sg_broker_opts_t *o)
{
        const struct rd_kafka_metadata *md;
        int ready = 1;

        if (rd_kafka_metadata(rk, 1, NULL, &md, 5000))
                return 0;
        for (int i = 0; ready && i < o->topic_cnt; i++) {
                int found = 0;

                for (int t = 0; t < md->topic_cnt; t++) {
                        const struct rd_kafka_metadata_topic *mt =
                            &md->topics[t];

                        if (strcmp(mt->topic, o->topics[i].name))
                                continue;
                        found = !mt->err &&
                                mt->partition_cnt == o->topics[i].partitions;
                        for (int p = 0; found && p < mt->partition_cnt; p++)
                                found = mt->partitions[p].leader >= 0;
                }
                ready = found;
        }
        rd_kafka_metadata_destroy(md);
        return ready;
}

/*
 * Creates the topics of o (-t / -p, the spendguard topics by default) on a
 * real Kafka cluster and waits until every partition has a leader. A topic
 * that already exists is left as it is. The broker may still be starting:
 * requests are retried until SG_CREATE_WAIT_MS. Returns the exit code.
 */
static int sg_broker_create_on(const sg_broker_opts_t *o)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_NewTopic_t **nt = NULL;
        rd_kafka_queue_t *q = NULL;
        rd_kafka_t *rk = NULL;
        struct timespec ts;
        long long deadline;
        char errstr[512];
        int rc = 1, replication = o->brokers < 3 ? o->brokers : 3;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        deadline = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 +
                   SG_CREATE_WAIT_MS;
        if (rd_kafka_conf_set(conf, "bootstrap.servers", o->create_on, errstr,
                              sizeof(errstr)) != RD_KAFKA_CONF_OK)
                goto err_conf;
        rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!rk)
                goto err_conf;
        conf = NULL;
        q = rd_kafka_queue_new(rk);
        nt = calloc((size_t)o->topic_cnt, sizeof(*nt));
        if (!nt) {
                snprintf(errstr, sizeof(errstr), "out of memory");
                goto err;
        }
        for (int i = 0; i < o->topic_cnt; i++) {
                nt[i] = rd_kafka_NewTopic_new(o->topics[i].name,
                                              o->topics[i].partitions,
                                              replication, errstr,
                                              sizeof(errstr));
                if (!nt[i])
                        goto err;
        }
        for (;;) {
                rd_kafka_event_t *ev;
                const rd_kafka_topic_result_t **res;
                size_t cnt = 0;

                if (sg_broker_real_ready(rk, o)) {
                        rc = 0;
                        break;
                }
                clock_gettime(CLOCK_MONOTONIC, &ts);
                if ((long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 >
                    deadline) {
                        snprintf(errstr, sizeof(errstr),
                                 "topics not ready on %s within %d s",
                                 o->create_on, SG_CREATE_WAIT_MS / 1000);
                        goto err;
                }
                rd_kafka_CreateTopics(rk, nt, (size_t)o->topic_cnt, NULL, q);
                ev = rd_kafka_queue_poll(q, 15000);
                if (!ev)
                        continue;
                res = rd_kafka_CreateTopics_result_topics(
                    rd_kafka_event_CreateTopics_result(ev), &cnt);
                for (size_t i = 0; i < cnt; i++) {
                        rd_kafka_resp_err_t e =
                            rd_kafka_topic_result_error(res[i]);

                        if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
                                sg_warn("event=create_topic topic=%s err=%s",
                                        rd_kafka_topic_result_name(res[i]),
                                        rd_kafka_err2name(e));
                }
                rd_kafka_event_destroy(ev);
                /* Leaders are elected just after creation: look again. */
                nanosleep(&(struct timespec){0, 200000000L}, NULL);
        }
        sg_info("event=topics_ready bootstrap=%s topics=%d", o->create_on,
                o->topic_cnt);
err:
        if (rc)
                fprintf(stderr, "sg-broker: --create-on: %s\n", errstr);
        for (int i = 0; nt && i < o->topic_cnt; i++)
                if (nt[i])
                        rd_kafka_NewTopic_destroy(nt[i]);
        free(nt);
        if (q)
                rd_kafka_queue_destroy(q);
        if (rk)
                rd_kafka_destroy(rk);
        return rc;
err_conf:
        fprintf(stderr, "sg-broker: --create-on: %s\n", errstr);
        if (conf)
                rd_kafka_conf_destroy(conf);
        return 2;
}

/* ------------------------------------------------------------------ */
/* Arguments                                                            */
/* ------------------------------------------------------------------ */

enum {
        SG_OPT_BOOTSTRAP_FILE = 256,
        SG_OPT_CONTROL,
        SG_OPT_SEND,
        SG_OPT_CREATE_ON,
};

typedef struct sg_broker_optdesc_s {
        const char *name;
        int val;
        int has_arg;
        const char *arg;
        const char *help;
} sg_broker_optdesc_t;

/* One table drives both getopt_long() and --help. */
static const sg_broker_optdesc_t sg_broker_optdescs[] = {
    {"topic", 't', required_argument, "NAME:PARTITIONS",
     "create a topic (repeatable; default: the spendguard topics)"},
    {"partitions", 'p', required_argument, "N",
     "partitions for default topics and bare -t NAME (default 4)"},
    {"brokers", 'b', required_argument, "N", "mock brokers (default 1)"},
    {"bootstrap-file", SG_OPT_BOOTSTRAP_FILE, required_argument, "FILE",
     "also write bootstrap.servers to FILE (atomically)"},
    {"control", SG_OPT_CONTROL, required_argument, "PATH",
     "serve the fault-injection control socket at PATH"},
    {"send", SG_OPT_SEND, required_argument, "PATH",
     "client mode: send the command (the remaining arguments) to PATH"},
    {"create-on", SG_OPT_CREATE_ON, required_argument, "BOOTSTRAP",
     "client mode: create the topics (-t/-p) on a real Kafka cluster, wait "
     "for their leaders, exit"},
    {"help", 'h', no_argument, NULL, "show this help"},
    {"version", 'V', no_argument, NULL, "show the version"},
};

#define SG_BROKER_OPT_CNT                                                      \
        (int)(sizeof(sg_broker_optdescs) / sizeof(sg_broker_optdescs[0]))

static void sg_broker_usage(FILE *fp)
{
        fprintf(fp, "usage: sg-broker [options]\n"
                    "       sg-broker --send PATH 'command'\n"
                    "       sg-broker --create-on BOOTSTRAP [-t ...] "
                    "[-p N]\n\n"
                    "A local Kafka-protocol cluster (librdkafka mock) for "
                    "development and tests.\nPrints bootstrap.servers as its "
                    "first line, runs until SIGTERM/SIGINT.\n\n");
        for (int i = 0; i < SG_BROKER_OPT_CNT; i++) {
                const sg_broker_optdesc_t *d = &sg_broker_optdescs[i];
                char left[64];

                if (d->val < 256)
                        snprintf(left, sizeof(left), "-%c, --%s%s%s", d->val,
                                 d->name, d->arg ? " " : "",
                                 d->arg ? d->arg : "");
                else
                        snprintf(left, sizeof(left), "    --%s%s%s", d->name,
                                 d->arg ? " " : "", d->arg ? d->arg : "");
                fprintf(fp, "  %-30s %s\n", left, d->help);
        }
        fprintf(fp, "\ncontrol commands: ");
        for (int i = 0; i < SG_CTL_CMD_CNT; i++)
                fprintf(fp, "%s%s", sg_ctl_cmds[i].usage,
                        i + 1 < SG_CTL_CMD_CNT ? " | " : "\n");
}

static void sg_broker_opts_destroy(sg_broker_opts_t *o)
{
        free(o->topics);
        free(o->send_cmd);
        o->topics = NULL;
        o->send_cmd = NULL;
}

static int sg_broker_topic_add(sg_broker_opts_t *o, const char *name,
                               int partitions, char *errstr, size_t size)
{
        sg_broker_topic_t *t;

        if (!sg_broker_topic_valid(name)) {
                snprintf(errstr, size,
                         "-t: bad topic name '%s' (1..%d of [a-zA-Z0-9._-])",
                         name, SG_BROKER_MAX_TOPIC_LEN);
                return -1;
        }
        for (int i = 0; i < o->topic_cnt; i++) {
                if (strcmp(o->topics[i].name, name) == 0) {
                        snprintf(errstr, size, "-t: topic '%s' given twice",
                                 name);
                        return -1;
                }
        }
        t = realloc(o->topics, (size_t)(o->topic_cnt + 1) * sizeof(*t));
        if (!t) {
                snprintf(errstr, size, "out of memory");
                return -1;
        }
        o->topics = t;
        t = &o->topics[o->topic_cnt++];
        snprintf(t->name, sizeof(t->name), "%s", name);
        t->partitions = partitions;
        return 0;
}

/* -t NAME:PARTITIONS, or a bare NAME that takes --partitions. */
static int sg_broker_topic_arg(sg_broker_opts_t *o, const char *arg,
                               char *errstr, size_t size)
{
        char name[SG_BROKER_MAX_TOPIC_LEN + 2];
        const char *colon = strrchr(arg, ':');
        long partitions = -1;
        size_t len = colon ? (size_t)(colon - arg) : strlen(arg);

        if (len >= sizeof(name)) {
                snprintf(errstr, size, "-t: topic name longer than %d",
                         SG_BROKER_MAX_TOPIC_LEN);
                return -1;
        }
        memcpy(name, arg, len);
        name[len] = '\0';
        if (colon &&
            sg_broker_parse_long(colon + 1, 1, SG_BROKER_MAX_PARTITIONS,
                                 &partitions) == -1) {
                snprintf(errstr, size, "-t %s: partitions must be 1..%d", arg,
                         SG_BROKER_MAX_PARTITIONS);
                return -1;
        }
        return sg_broker_topic_add(o, name, (int)partitions, errstr, size);
}

/*
 * Returns 0 to run, 1 when done (help/version printed), -1 on a bad
 * argument with errstr filled.
 */
static int sg_broker_opts_parse(sg_broker_opts_t *o, int argc, char **argv,
                                char *errstr, size_t size)
{
        struct option longopts[SG_BROKER_OPT_CNT + 1];
        char shortopts[2 * SG_BROKER_OPT_CNT + 3] = "+:";
        size_t sl = 2;
        long v;
        int c;

        for (int i = 0; i < SG_BROKER_OPT_CNT; i++) {
                const sg_broker_optdesc_t *d = &sg_broker_optdescs[i];

                longopts[i] =
                    (struct option){d->name, d->has_arg, NULL, d->val};
                if (d->val < 256) {
                        shortopts[sl++] = (char)d->val;
                        if (d->has_arg)
                                shortopts[sl++] = ':';
                }
        }
        longopts[SG_BROKER_OPT_CNT] = (struct option){0};
        shortopts[sl] = '\0';

        o->partitions = SG_BROKER_DEFAULT_PARTITIONS;
        o->brokers = 1;
        opterr = 0;
        while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
                switch (c) {
                case 't':
                        if (sg_broker_topic_arg(o, optarg, errstr, size) == -1)
                                return -1;
                        break;
                case 'p':
                        if (sg_broker_parse_long(optarg, 1,
                                                 SG_BROKER_MAX_PARTITIONS,
                                                 &v) == -1) {
                                snprintf(errstr, size,
                                         "--partitions must be 1..%d, not "
                                         "'%s'",
                                         SG_BROKER_MAX_PARTITIONS, optarg);
                                return -1;
                        }
                        o->partitions = (int)v;
                        break;
                case 'b':
                        if (sg_broker_parse_long(
                                optarg, 1, SG_BROKER_MAX_BROKERS, &v) == -1) {
                                snprintf(errstr, size,
                                         "--brokers must be 1..%d, not '%s'",
                                         SG_BROKER_MAX_BROKERS, optarg);
                                return -1;
                        }
                        o->brokers = (int)v;
                        break;
                case SG_OPT_BOOTSTRAP_FILE:
                        o->bootstrap_file = optarg;
                        break;
                case SG_OPT_CONTROL:
                        o->control_path = optarg;
                        break;
                case SG_OPT_SEND:
                        o->send_path = optarg;
                        break;
                case SG_OPT_CREATE_ON:
                        o->create_on = optarg;
                        break;
                case 'h':
                        sg_broker_usage(stdout);
                        return 1;
                case 'V':
                        printf("sg-broker %s\n", SG_VERSION);
                        return 1;
                case ':':
                        snprintf(errstr, size, "%s needs an argument",
                                 argv[optind - 1]);
                        return -1;
                default:
                        /* optopt names a bad letter inside a cluster. */
                        if (optopt > 0 && optopt < 256)
                                snprintf(errstr, size, "unknown option '-%c'",
                                         optopt);
                        else
                                snprintf(errstr, size, "unknown option '%s'",
                                         argv[optind - 1]);
                        return -1;
                }
        }

        if (o->send_path) {
                size_t len = 0;

                /* Words after PATH form the command, so both
                 * --send P 'rtt 1 50' and --send P rtt 1 50 work. */
                if (optind >= argc) {
                        snprintf(errstr, size, "--send needs a command");
                        return -1;
                }
                for (int i = optind; i < argc; i++)
                        len += strlen(argv[i]) + 1;
                o->send_cmd = calloc(1, len);
                if (!o->send_cmd) {
                        snprintf(errstr, size, "out of memory");
                        return -1;
                }
                for (int i = optind; i < argc; i++) {
                        if (i > optind)
                                strcat(o->send_cmd, " ");
                        strcat(o->send_cmd, argv[i]);
                }
                if (strpbrk(o->send_cmd, "\r\n")) {
                        snprintf(errstr, size,
                                 "--send: one command, without newlines");
                        return -1;
                }
                return 0;
        }
        if (optind < argc) {
                snprintf(errstr, size, "unexpected argument '%s'",
                         argv[optind]);
                return -1;
        }

        if (o->topic_cnt == 0) {
                for (size_t i = 0; i < sizeof(sg_broker_default_topics) /
                                           sizeof(sg_broker_default_topics[0]);
                     i++)
                        if (sg_broker_topic_add(o, sg_broker_default_topics[i],
                                                -1, errstr, size) == -1)
                                return -1;
        }
        for (int i = 0; i < o->topic_cnt; i++)
                if (o->topics[i].partitions == -1)
                        o->topics[i].partitions = o->partitions;
        return 0;
}

/* ------------------------------------------------------------------ */
/* main                                                                 */
/* ------------------------------------------------------------------ */

int main(int argc, char **argv)
{
        sg_broker_opts_t opts = {0};
        sg_broker_t b = {.opts = &opts, .listen_fd = -1, .bs_fd = -1};
        struct sigaction sa = {.sa_handler = sg_broker_on_signal};
        sigset_t block, waitmask;
        char errstr[512];
        char qbs[512], qctl[PATH_MAX + 8];
        const char *bootstrap;
        struct timespec t0, t1;
        int total_partitions = 0;
        int r, rc = 2;

        sg_log_init("broker");

        r = sg_broker_opts_parse(&opts, argc, argv, errstr, sizeof(errstr));
        if (r != 0) {
                if (r == -1)
                        fprintf(stderr, "sg-broker: %s (see --help)\n", errstr);
                sg_broker_opts_destroy(&opts);
                return r == -1 ? 2 : 0;
        }
        if (opts.send_path) {
                r = sg_broker_send(opts.send_path, opts.send_cmd);
                sg_broker_opts_destroy(&opts);
                return r;
        }
        if (opts.create_on) {
                r = sg_broker_create_on(&opts);
                sg_broker_opts_destroy(&opts);
                return r;
        }

        /* Block the stop signals before librdkafka starts its threads, so
         * they inherit the mask and only ppoll() in this thread sees them. */
        sigemptyset(&block);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGINT);
        pthread_sigmask(SIG_BLOCK, &block, &waitmask);
        sigdelset(&waitmask, SIGTERM);
        sigdelset(&waitmask, SIGINT);
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        clock_gettime(CLOCK_MONOTONIC, &t0);

        /* Paths first: a wrong one is the caller's mistake (exit 2). */
        if (opts.control_path &&
            sg_ctl_listen(&b, opts.control_path, errstr, sizeof(errstr)) == -1)
                goto err;
        if (opts.bootstrap_file &&
            sg_broker_bootstrap_open(&b, opts.bootstrap_file, errstr,
                                     sizeof(errstr)) == -1)
                goto err;

        rc = 1;
        b.replication = opts.brokers < 3 ? opts.brokers : 3;
        if (sg_broker_cluster_new(&b, errstr, sizeof(errstr)) == -1)
                goto err;
        for (int i = 0; i < opts.topic_cnt; i++) {
                if (sg_broker_topic_create(&b, opts.topics[i].name,
                                           opts.topics[i].partitions, errstr,
                                           sizeof(errstr)) == -1)
                        goto err;
                total_partitions += opts.topics[i].partitions;
        }

        /* Announce last: once the address is out, topics and the control
         * socket are ready, so a harness needs no other readiness check. */
        bootstrap = rd_kafka_mock_cluster_bootstraps(b.mcluster);
        if (opts.bootstrap_file &&
            sg_broker_bootstrap_commit(&b, opts.bootstrap_file, bootstrap,
                                       errstr, sizeof(errstr)) == -1)
                goto err;
        printf("%s\n", bootstrap);
        fflush(stdout);
        sg_info("event=start bootstrap=%s brokers=%d topics=%d "
                "partitions=%d control=%s version=%s",
                sg_log_quote(qbs, sizeof(qbs), bootstrap), opts.brokers,
                opts.topic_cnt, total_partitions,
                sg_log_quote(qctl, sizeof(qctl),
                             opts.control_path ? opts.control_path : "-"),
                SG_VERSION);

        sg_broker_loop(&b, &waitmask);

        clock_gettime(CLOCK_MONOTONIC, &t1);
        sg_info("event=stop signal=%s uptime_s=%ld",
                sg_broker_stop_sig == SIGINT    ? "SIGINT"
                : sg_broker_stop_sig == SIGTERM ? "SIGTERM"
                                                : "none",
                (long)(t1.tv_sec - t0.tv_sec));
        sg_broker_destroy(&b);
        sg_broker_opts_destroy(&opts);
        return sg_broker_stop_sig ? 0 : 1;

err:
        fprintf(stderr, "sg-broker: %s\n", errstr);
        sg_broker_destroy(&b);
        sg_broker_opts_destroy(&opts);
        return rc;
}
