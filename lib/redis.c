#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "stage.h"

struct sg_redis {
        redisContext *c;
        char host[256]; /* or the socket path */
        int port;       /* 0 = unix socket */
        int db;
        char password[256];
        long long commands;
        long long round_trips;
        /* A pipeline being written (sg_redis_pipeline_push): the bytes of
         * c->obuf already sent, and whether its round trip is counted. */
        size_t sent;
        int counted;
        sg_histogram_t *latency;  /* redis_latency_seconds */
        int connected_once;       /* a connect after that is a reconnect */
        long long connects;       /* connections made (sg_redis_connects) */
        sg_counter_t *io_errors;  /* redis_io_errors_total */
        sg_counter_t *reconnects; /* redis_reconnects_total */
        /* The data-loss guard (sg_redis_epoch_start). */
        int guard;
        char stage[32];
        char epoch[64];          /* remembered; "" = started while marked */
        int lost;                /* deciding stopped */
        int fenced, expect;      /* sg_redis_epoch_fenced */
        sg_counter_t *data_lost; /* redis_data_lost_total */
};

static void epoch_reconnected(sg_redis_t *r);
static int epoch_mark(sg_redis_t *r, int raw, const char *found);

static char default_password[256];

/* What a pipeline push left unsent becomes all of c->obuf again, for
 * hiredis to write the rest. */
static void settle(sg_redis_t *r)
{
        if (r->c && r->sent) {
                sdsrange(r->c->obuf, (int)r->sent, -1);
                r->sent = 0;
        }
}

/* Closes the connection, and forgets a pipeline push in progress on it. */
static void conn_drop(sg_redis_t *r)
{
        if (r->c)
                redisFree(r->c);
        r->c = NULL;
        r->sent = 0;
        r->counted = 0;
}

static void io_lost(sg_redis_t *r)
{
        sg_counter_add(r->io_errors, 1);
        sg_warn("event=redis_io_error err=\"%s\"",
                r->c->err ? r->c->errstr : strerror(errno));
        conn_drop(r);
        sg_ready_set(SG_READY_REDIS, 0);
}

void sg_redis_set_password(const char *password)
{
        snprintf(default_password, sizeof(default_password), "%s",
                 password ? password : "");
}

/* Records one round trip that started at t0 (sg_mono_us). */
static void observe(sg_redis_t *r, int64_t t0)
{
        sg_histogram_observe(r->latency, (double)(sg_mono_us() - t0) / 1e6);
}

static int parse_url(sg_redis_t *r, const char *url, char *errstr,
                     size_t errstr_size)
{
        const char *p, *q;

        if (strncmp(url, "unix://", 7) == 0) {
                p = url + 7;
                q = strchr(p, '?');
                if ((size_t)(q ? q - p : (long)strlen(p)) >= sizeof(r->host) ||
                    *p != '/')
                        goto bad;
                snprintf(r->host, sizeof(r->host), "%.*s",
                         (int)(q ? q - p : (long)strlen(p)), p);
                while (q && *q) {
                        q++;
                        if (strncmp(q, "db=", 3) == 0)
                                r->db = atoi(q + 3);
                        else if (strncmp(q, "password=", 9) == 0)
                                snprintf(r->password, sizeof(r->password),
                                         "%.*s", (int)strcspn(q + 9, "&"),
                                         q + 9);
                        else
                                goto bad;
                        q = strchr(q, '&');
                }
                return 0;
        }
        if (strncmp(url, "redis://", 8) != 0)
                goto bad;
        p = url + 8;
        q = strrchr(p, '@');
        if (q) {
                const char *colon = memchr(p, ':', q - p);
                const char *pw = colon ? colon + 1 : p;
                snprintf(r->password, sizeof(r->password), "%.*s",
                         (int)(q - pw), pw);
                p = q + 1;
        }
        r->port = 6379;
        q = p + strcspn(p, ":/");
        if (q == p || (size_t)(q - p) >= sizeof(r->host))
                goto bad;
        snprintf(r->host, sizeof(r->host), "%.*s", (int)(q - p), p);
        if (*q == ':') {
                char *end;
                long port = strtol(q + 1, &end, 10);
                if (port <= 0 || port > 65535 || (*end && *end != '/'))
                        goto bad;
                r->port = (int)port;
                q = end;
        }
        if (*q == '/' && q[1]) {
                char *end;
                r->db = (int)strtol(q + 1, &end, 10);
                if (*end || r->db < 0)
                        goto bad;
        }
        return 0;
bad : {
        char shown[512];

        snprintf(shown, sizeof(shown), "%s", url);
        snprintf(errstr, errstr_size,
                 "bad Redis URL \"%s\" (want redis://[:password@]host:port/db "
                 "or unix:///path.sock)",
                 sg_log_redact(shown, sizeof(shown)));
        return -1;
}
}

/* One connection attempt, with AUTH and SELECT. */
static int connect_once(sg_redis_t *r, char *errstr, size_t errstr_size)
{
        struct timeval tv = {2, 0};
        redisReply *reply;

        conn_drop(r);
        r->c = r->port ? redisConnectWithTimeout(r->host, r->port, tv)
                       : redisConnectUnixWithTimeout(r->host, tv);
        if (!r->c || r->c->err) {
                snprintf(errstr, errstr_size, "%s",
                         r->c ? r->c->errstr : "out of memory");
                goto err;
        }
        /* Commands must not hang forever on a dead server. */
        redisSetTimeout(r->c, (struct timeval){30, 0});
        if (r->password[0]) {
                reply = redisCommand(r->c, "AUTH %s", r->password);
                if (!reply || reply->type == REDIS_REPLY_ERROR) {
                        snprintf(errstr, errstr_size, "AUTH failed: %s",
                                 reply ? reply->str : r->c->errstr);
                        if (reply)
                                freeReplyObject(reply);
                        goto err;
                }
                freeReplyObject(reply);
        }
        if (r->db) {
                reply = redisCommand(r->c, "SELECT %d", r->db);
                if (!reply || reply->type == REDIS_REPLY_ERROR) {
                        snprintf(errstr, errstr_size, "SELECT %d failed",
                                 r->db);
                        if (reply)
                                freeReplyObject(reply);
                        goto err;
                }
                freeReplyObject(reply);
        }
        /* The data may have gone with the server: look before anyone
         * sends a command on this connection. */
        if (r->guard && r->connected_once) {
                epoch_reconnected(r);
                if (!r->c) {
                        snprintf(errstr, errstr_size, "epoch check failed");
                        goto err;
                }
        }
        sg_ready_set(SG_READY_REDIS, 1);
        return 0;
err:
        conn_drop(r);
        sg_ready_set(SG_READY_REDIS, 0);
        return -1;
}

static int connect_backoff(sg_redis_t *r, int timeout_ms, char *errstr,
                           size_t errstr_size)
{
        int64_t start = sg_mono_ms(), deadline = start + timeout_ms;
        int delay = 100, attempts = 0;

        for (;;) {
                attempts++;
                if (connect_once(r, errstr, errstr_size) == 0) {
                        if (r->connected_once) {
                                sg_counter_add(r->reconnects, 1);
                                sg_info("event=redis_reconnected attempts=%d "
                                        "ms=%lld",
                                        attempts,
                                        (long long)(sg_mono_ms() - start));
                        }
                        r->connected_once = 1;
                        r->connects++;
                        return 0;
                }
                sg_warn("event=redis_connect_failed host=%s port=%d "
                        "retry_ms=%d err=\"%s\"",
                        r->host, r->port, delay, errstr);
                if (sg_stop || (timeout_ms && sg_mono_ms() + delay > deadline))
                        return -1;
                sg_sleep_ms(delay);
                delay = delay * 2 > 5000 ? 5000 : delay * 2;
        }
}

sg_redis_t *sg_redis_new(const char *url, int connect_timeout_ms, char *errstr,
                         size_t errstr_size)
{
        sg_redis_t *r = calloc(1, sizeof(*r));

        if (!r) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        r->latency =
            sg_histogram("redis_latency_seconds", sg_metrics_redis_buckets,
                         sg_metrics_redis_bucket_cnt);
        r->io_errors = sg_counter("redis_io_errors_total");
        r->reconnects = sg_counter("redis_reconnects_total");
        if (parse_url(r, url, errstr, errstr_size))
                goto err;
        if (!r->password[0])
                memcpy(r->password, default_password, sizeof(r->password));
        /* From now on /readyz waits for Redis. */
        sg_ready_set(SG_READY_REDIS, 0);
        if (connect_backoff(r, connect_timeout_ms, errstr, errstr_size))
                goto err;
        return r;
err:
        free(r);
        return NULL;
}

void sg_redis_destroy(sg_redis_t *r)
{
        if (!r)
                return;
        conn_drop(r);
        free(r);
}

int sg_redis_reconnect(sg_redis_t *r)
{
        char errstr[256];

        return connect_backoff(r, 0, errstr, sizeof(errstr));
}

/*
 * Sends one formatted command and reads its reply, reconnecting with backoff
 * and sending it again after an I/O error, until a reply or sg_stop.
 */
static redisReply *roundtrip(sg_redis_t *r, const char *cmd, size_t len)
{
        for (;;) {
                void *reply = NULL;

                if (r->c) {
                        int64_t t0 = sg_mono_us();

                        settle(r);
                        r->commands++;
                        r->round_trips++;
                        if (redisAppendFormattedCommand(r->c, cmd, len) ==
                                REDIS_OK &&
                            redisGetReply(r->c, &reply) == REDIS_OK && reply) {
                                observe(r, t0);
                                return reply;
                        }
                }
                sg_ready_set(SG_READY_REDIS, 0);
                sg_counter_add(r->io_errors, 1);
                sg_warn("event=redis_io_error err=\"%s\"",
                        r->c ? r->c->errstr : "not connected");
                if (sg_redis_reconnect(r) == -1)
                        return NULL;
        }
}

redisReply *sg_redis_argv(sg_redis_t *r, int argc, const char **argv,
                          const size_t *argvlen)
{
        char *cmd = NULL;
        int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
        redisReply *reply;

        if (len < 0)
                return NULL; /* out of memory */
        reply = roundtrip(r, cmd, (size_t)len);
        redisFreeCommand(cmd);
        return reply;
}

static redisReply *vcommand(sg_redis_t *r, const char *fmt, va_list ap)
{
        char *cmd = NULL;
        redisReply *reply;
        int len = redisvFormatCommand(&cmd, fmt, ap);

        if (len < 0)
                return NULL; /* out of memory or a bad format */
        reply = roundtrip(r, cmd, (size_t)len);
        redisFreeCommand(cmd);
        return reply;
}

redisReply *sg_redis_command(sg_redis_t *r, const char *fmt, ...)
{
        redisReply *reply;
        va_list ap;

        va_start(ap, fmt);
        reply = vcommand(r, fmt, ap);
        va_end(ap);
        return reply;
}

int sg_redis_append_argv(sg_redis_t *r, int argc, const char **argv,
                         const size_t *argvlen)
{
        if (!r->c)
                return -1;
        r->commands++;
        return redisAppendCommandArgv(r->c, argc, argv, argvlen) == REDIS_OK
                   ? 0
                   : -1;
}

redisReply *sg_redis_pipeline_get(sg_redis_t *r)
{
        void *reply = NULL;
        int64_t t0 = 0;

        if (!r->c)
                return NULL;
        settle(r);
        /* The first read flushes the whole pipeline: one round trip. */
        if (r->c->obuf && r->c->obuf[0]) {
                if (!r->counted)
                        r->round_trips++;
                t0 = sg_mono_us();
        }
        r->counted = 0;
        if (redisGetReply(r->c, &reply) != REDIS_OK) {
                io_lost(r);
                return NULL;
        }
        if (t0)
                observe(r, t0);
        return reply;
}

int sg_redis_pipeline_push(sg_redis_t *r)
{
        size_t len;

        if (!r->c)
                return -1;
        len = r->c->obuf ? sdslen(r->c->obuf) : 0;
        if (r->sent >= len)
                return 1;
        if (!r->counted) {
                r->round_trips++;
                r->counted = 1;
        }
        while (r->sent < len) {
                ssize_t n = send(r->c->fd, r->c->obuf + r->sent,
                                 len - r->sent, MSG_DONTWAIT | MSG_NOSIGNAL);

                if (n > 0)
                        r->sent += (size_t)n;
                else if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        return 0;
                else if (n == -1 && errno == EINTR)
                        continue;
                else {
                        io_lost(r);
                        return -1;
                }
        }
        /* All written: an empty buffer, as hiredis leaves it. */
        sdsfree(r->c->obuf);
        r->c->obuf = sdsempty();
        r->sent = 0;
        return 1;
}

int sg_redis_script_load(sg_redis_t *r, sg_redis_script_t *script)
{
        redisReply *sha = sg_redis_command(r, "SCRIPT LOAD %s", script->source);
        int rc = 1;

        if (!sha)
                return -1;
        if (sha->type == REDIS_REPLY_STRING && sha->len == 40) {
                memcpy(script->sha, sha->str, 40);
                script->sha[40] = '\0';
                rc = 0;
        }
        freeReplyObject(sha);
        return rc;
}

redisReply *sg_redis_eval(sg_redis_t *r, sg_redis_script_t *script, int nkeys,
                          int argc, const char **argv, const size_t *argvlen)
{
        /* On the heap: a batch's checkpoint can carry many thousand
         * arguments (a stack array of them once overflowed the stack). */
        const char **av = malloc((size_t)(argc + 3) * sizeof(*av));
        size_t *avlen = malloc((size_t)(argc + 3) * sizeof(*avlen));
        char nk[16];
        redisReply *reply;

        if (!av || !avlen) {
                free(av);
                free(avlen);
                return NULL;
        }
        snprintf(nk, sizeof(nk), "%d", nkeys);
        for (;;) {
                int use_sha = script->sha[0] != '\0';

                av[0] = use_sha ? "EVALSHA" : "EVAL";
                av[1] = use_sha ? script->sha : script->source;
                av[2] = nk;
                avlen[0] = strlen(av[0]);
                avlen[1] = strlen(av[1]);
                avlen[2] = strlen(nk);
                for (int i = 0; i < argc; i++) {
                        av[i + 3] = argv[i];
                        avlen[i + 3] = argvlen ? argvlen[i] : strlen(argv[i]);
                }
                if (!use_sha) {
                        /* Learn the SHA for next time; the EVAL below also
                         * caches the script on the server. */
                        int rc = sg_redis_script_load(r, script);
                        if (rc == -1) {
                                reply = NULL;
                                break;
                        }
                        if (rc == 0) {
                                av[0] = "EVALSHA";
                                av[1] = script->sha;
                                avlen[0] = 7;
                                avlen[1] = 40;
                        }
                }
                reply = sg_redis_argv(r, argc + 3, av, avlen);
                if (reply && reply->type == REDIS_REPLY_ERROR &&
                    strncmp(reply->str, "NOSCRIPT", 8) == 0) {
                        /* The server lost its script cache (restart or
                         * SCRIPT FLUSH): load it again. */
                        freeReplyObject(reply);
                        script->sha[0] = '\0';
                        continue;
                }
                break;
        }
        free(av);
        free(avlen);
        return reply;
}

long long sg_redis_commands(const sg_redis_t *r)
{
        return r->commands;
}

long long sg_redis_round_trips(const sg_redis_t *r)
{
        return r->round_trips;
}

long long sg_redis_connects(const sg_redis_t *r)
{
        return r->connects;
}

/* ------------------------------------------------------ data-loss guard */

/*
 * Why an epoch: a Redis that restarts without persistence, fails over to an
 * empty replica or is flushed answers like any other; only the data is
 * gone (breakers, budgets, blocks, delivered ids). A random id written once
 * (sg:epoch, SET NX) and remembered by every guarded client tells them
 * apart: the same id is the same data. A client that finds another id, or
 * none, has lost its data; it marks that in Redis (sg:epoch:lost), so that
 * a stage started later does not take the empty Redis for a first start,
 * and stops deciding until the id it knows comes back (a restore) or an
 * operator removes the mark and restarts it (the loss accepted).
 */

#define EPOCH_KEY "sg:epoch"
#define LOST_KEY "sg:epoch:lost"

/*
 * A command for the guard: raw sends it once on the current connection
 * (from inside a connect: an I/O error then drops the connection and
 * returns NULL), else it is sg_redis_command (retried; NULL when stopped).
 */
static redisReply *guard_cmd(sg_redis_t *r, int raw, const char *fmt, ...)
{
        redisReply *reply;
        va_list ap;

        va_start(ap, fmt);
        if (!raw) {
                reply = vcommand(r, fmt, ap);
        } else {
                settle(r);
                reply = redisvCommand(r->c, fmt, ap);
                if (!reply)
                        conn_drop(r);
        }
        va_end(ap);
        return reply;
}

/* MGET sg:epoch sg:epoch:lost into epoch and mark ("" when absent). 0, or
 * -1 (I/O error when raw, else stopped; or an unexpected reply). */
static int epoch_fetch(sg_redis_t *r, int raw, char *epoch, size_t esize,
                       char *mark, size_t msize)
{
        redisReply *reply = guard_cmd(r, raw, "MGET %s %s", EPOCH_KEY, LOST_KEY);
        int rc = -1;

        if (!reply)
                return -1;
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
                const redisReply *e = reply->element[0], *m = reply->element[1];

                snprintf(epoch, esize, "%s",
                         e->type == REDIS_REPLY_STRING ? e->str : "");
                snprintf(mark, msize, "%s",
                         m->type == REDIS_REPLY_STRING ? m->str : "");
                rc = 0;
        } else {
                sg_error("event=redis_epoch_failed err=\"%s\"",
                         reply->type == REDIS_REPLY_ERROR ? reply->str
                                                          : "unexpected reply");
        }
        freeReplyObject(reply);
        return rc;
}

/* Stops deciding: counted, logged, /readyz, and marked in Redis (NX: the
 * first client to notice names the epoch that was lost). */
static int epoch_mark(sg_redis_t *r, int raw, const char *found)
{
        char mark[256];
        redisReply *reply;

        r->lost = 1;
        sg_counter_add(r->data_lost, 1);
        sg_ready_set(SG_READY_REDIS_DATA, 0);
        sg_error("event=redis_data_lost epoch=%s found=%s msg=\"Redis no "
                 "longer holds the data this stage decided on (restart "
                 "without persistence, failover or flush): deciding stops "
                 "until it is restored or the loss accepted, see "
                 "docs/reliability.md\"",
                 r->epoch[0] ? r->epoch : "unknown",
                 found[0] ? found : "none");
        snprintf(mark, sizeof(mark), "epoch=%s found=%s by=%s at_ms=%lld",
                 r->epoch[0] ? r->epoch : "unknown",
                 found[0] ? found : "none", r->stage,
                 (long long)sg_now_ms());
        reply = guard_cmd(r, raw, "SET %s %s NX", LOST_KEY, mark);
        if (!reply)
                return -1;
        freeReplyObject(reply);
        return 0;
}

/* After a reconnect (inside connect_once): only the step to "lost", and
 * only once an epoch is remembered (a reconnect inside
 * sg_redis_epoch_start has none to compare with: the start reads what
 * Redis holds itself). */
static void epoch_reconnected(sg_redis_t *r)
{
        char epoch[64], mark[256];

        if (r->lost || !r->epoch[0] ||
            epoch_fetch(r, 1, epoch, sizeof(epoch), mark, sizeof(mark)) == -1)
                return;
        if (strcmp(epoch, r->epoch) != 0 || mark[0])
                epoch_mark(r, 1, epoch);
}

/* Takes the epoch Redis holds, writing a new one if there is none. */
static int epoch_adopt(sg_redis_t *r)
{
        char id[64], epoch[64], mark[256];
        redisReply *reply;
        int created;

        /* Until it reads one back: a flush between the SET and the MGET
         * would leave it remembering none. */
        do {
                snprintf(id, sizeof(id), "%llx-%x",
                         (long long)sg_mono_us() ^ (long long)sg_now_ms() << 20,
                         (unsigned)getpid());
                reply = sg_redis_command(r, "SET %s %s NX", EPOCH_KEY, id);
                if (!reply)
                        return -1;
                created = reply->type == REDIS_REPLY_STATUS;
                freeReplyObject(reply);
                if (epoch_fetch(r, 0, epoch, sizeof(epoch), mark,
                                sizeof(mark)) == -1)
                        return -1;
        } while (!epoch[0] && !sg_stop);
        snprintf(r->epoch, sizeof(r->epoch), "%s", epoch);
        sg_info("event=redis_epoch epoch=%s created=%d", r->epoch, created);
        return 0;
}

int sg_redis_epoch_start(sg_redis_t *r, const char *stage)
{
        char epoch[64], mark[256], q[512];

        snprintf(r->stage, sizeof(r->stage), "%s", stage);
        r->data_lost = sg_counter("redis_data_lost_total");
        r->guard = 1;
        r->epoch[0] = '\0';
        /* An error reply (-LOADING while Redis reads its AOF) passes. */
        while (epoch_fetch(r, 0, epoch, sizeof(epoch), mark, sizeof(mark)) ==
               -1) {
                if (sg_stop)
                        return -1;
                sg_sleep_ms(1000);
        }
        if (mark[0]) {
                r->lost = 1;
                sg_counter_add(r->data_lost, 1);
                sg_ready_set(SG_READY_REDIS_DATA, 0);
                sg_error("event=redis_data_lost mark=%s msg=\"a stage found "
                         "Redis' data gone (%s): deciding waits until it is "
                         "restored or the mark removed, see "
                         "docs/reliability.md\"",
                         sg_log_quote(q, sizeof(q), mark), LOST_KEY);
                return 0;
        }
        /* The stage's data was here and is not (lost while it did not
         * run, and no epoch, or one a stage started since wrote): marked
         * as any loss, with no epoch remembered (the mark removed, it
         * takes the one Redis holds). */
        if (r->expect)
                return epoch_mark(r, 0, epoch) == -1 ? -1 : 0;
        return epoch_adopt(r);
}

void sg_redis_epoch_fenced(sg_redis_t *r, int had_data)
{
        r->fenced = 1;
        r->expect = had_data;
}

void sg_redis_epoch_expect(sg_redis_t *r, int had_data)
{
        r->expect = had_data;
}

int sg_redis_epoch_ok(sg_redis_t *r)
{
        char epoch[64], mark[256];

        if (!r->guard)
                return 1;
        if (epoch_fetch(r, 0, epoch, sizeof(epoch), mark, sizeof(mark)) == -1)
                return sg_stop ? -1 : 0;
        if (!r->lost) {
                if (strcmp(epoch, r->epoch) == 0 && !mark[0])
                        return 1;
                return epoch_mark(r, 0, epoch) == -1 ? -1 : 0;
        }
        if (mark[0])
                return 0;
        if (r->epoch[0] && strcmp(epoch, r->epoch) == 0) {
                sg_info("event=redis_data_restored epoch=%s", r->epoch);
        } else if (!r->epoch[0] || r->fenced) {
                /* Started while marked, or fenced writes; the mark is
                 * gone: accepted (or restored from another epoch). */
                if (epoch_adopt(r) == -1)
                        return -1;
        } else {
                return 0; /* still not our data */
        }
        r->lost = 0;
        sg_ready_set(SG_READY_REDIS_DATA, 1);
        return 1;
}
