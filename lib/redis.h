/*
 * Redis client wrapper over hiredis: redis:// and unix:// URLs (with
 * password and db), reconnect with exponential backoff, and cached Lua
 * scripts (EVALSHA, falling back to EVAL on NOSCRIPT).
 */
#ifndef SG_REDIS_H
#define SG_REDIS_H

#include <stddef.h>

#include <hiredis/hiredis.h>

typedef struct sg_redis sg_redis_t;

/*
 * Parses url (redis://[:password@]host[:port][/db] or
 * unix:///path/to.sock[?db=N][&password=P]) and connects, retrying with
 * backoff until connected, sg_stop is set, or connect_timeout_ms has passed
 * (0 = retry until stopped). NULL and errstr on a bad URL or timeout.
 */
sg_redis_t *sg_redis_new(const char *url, int connect_timeout_ms, char *errstr,
                         size_t errstr_size);

/*
 * The AUTH password of every later sg_redis_new() whose URL carries none
 * (copied; "" or NULL = no AUTH). sg_conf_load() sets it from
 * SG_REDIS_PASSWORD / redis_password_file / the URL.
 */
void sg_redis_set_password(const char *password);
void sg_redis_destroy(sg_redis_t *r);

/*
 * Runs a command. On an I/O error it reconnects with backoff (100 ms
 * doubling to 5 s, logging each attempt) and retries, until it succeeds or
 * sg_stop is set (then NULL; also NULL when the command cannot be formatted,
 * out of memory). A Redis error reply (REDIS_REPLY_ERROR) is
 * returned as is. The caller frees the reply with freeReplyObject().
 * Commands are retried after a reconnect, so they must be idempotent (the
 * batch scripts are: they check the offsets they store).
 */
redisReply *sg_redis_command(sg_redis_t *r, const char *fmt, ...);
redisReply *sg_redis_argv(sg_redis_t *r, int argc, const char **argv,
                          const size_t *argvlen);

/*
 * Pipelining: append commands, then read their replies in order. On an I/O
 * error while reading, sg_redis_pipeline_get returns NULL; the caller must
 * redo the whole pipeline (after sg_redis_reconnect).
 */
int sg_redis_append_argv(sg_redis_t *r, int argc, const char **argv,
                         const size_t *argvlen);
redisReply *sg_redis_pipeline_get(sg_redis_t *r);
/* Writes the commands appended so far to Redis without waiting: as much
 * as the socket takes now (Redis takes a pipeline only as fast as it runs
 * it: a blocking write of a large one waited for all of that). Called
 * again, it goes on where it stopped; sg_redis_pipeline_get writes what is
 * left, waiting, then reads. Nothing else may use r until the replies are
 * read. 1 all written, 0 some left, -1 after an I/O error
 * (sg_redis_pipeline_get then returns NULL). */
int sg_redis_pipeline_push(sg_redis_t *r);

/* Reconnects with backoff; 0 when connected, -1 if stopped meanwhile. */
int sg_redis_reconnect(sg_redis_t *r);

/*
 * Runs a Lua script by its SHA1, loading it on NOSCRIPT. argv holds the
 * nkeys keys, then the arguments; binary-safe (argvlen NULL = strlen).
 * Retries across reconnects like sg_redis_command.
 */
typedef struct sg_redis_script {
        const char *source;
        char sha[41]; /* filled on first use */
} sg_redis_script_t;

/* SCRIPT LOAD: sets script->sha. 0, 1 if Redis refused it (the next
 * sg_redis_eval() falls back to EVAL), -1 when stopping. */
int sg_redis_script_load(sg_redis_t *r, sg_redis_script_t *script);
redisReply *sg_redis_eval(sg_redis_t *r, sg_redis_script_t *script, int nkeys,
                          int argc, const char **argv, const size_t *argvlen);

/*
 * Outages are counted in the process metrics: redis_io_errors_total (a
 * command or pipeline lost its connection), redis_reconnects_total (a
 * connection made again after one was lost), and logged as
 * event=redis_io_error, event=redis_connect_failed (each attempt) and
 * event=redis_reconnected (with the attempts and the time it took).
 */

/*
 * The data-loss guard of a stage that decides on what Redis holds (rules,
 * sink; see the essay in redis.c). sg_redis_epoch_start() at start: takes
 * the epoch Redis holds in sg:epoch, writing a new one at the first start,
 * unless sg:epoch:lost says a stage found the data gone (then deciding is
 * stopped from the start). From then on every reconnect checks the epoch,
 * and so does sg_redis_epoch_ok(): 1 while Redis holds the remembered
 * epoch; 0 once it does not (lost: logged event=redis_data_lost, counted in
 * redis_data_lost_total, /readyz "redis data lost", sg:epoch:lost set);
 * back to 1 when the remembered epoch returns without the mark (a restore,
 * event=redis_data_restored), or, for a stage started while marked, when
 * the mark is removed (the loss accepted). -1 when stopped meanwhile.
 * A stage must not decide nor commit while it is 0.
 */
int sg_redis_epoch_start(sg_redis_t *r, const char *stage);
int sg_redis_epoch_ok(sg_redis_t *r);
/*
 * Before sg_redis_epoch_start(), for a stage whose writes are fenced by
 * what Redis holds (aggregate's checkpoints): whatever data Redis holds
 * once the mark is gone, restored or not, is safe to go on from, so the
 * stage resumes on it (taking its epoch, or a new one) instead of waiting
 * for its own epoch. had_data: the stage knows its data was in Redis
 * (aggregate: its group committed offsets, which it does only once Redis
 * holds their checkpoint, and no checkpoint is left): Redis lost it while
 * the stage did not run, and the start is stopped and marked as for a
 * loss, not taken for a first start (also when a stage started since wrote
 * a new epoch: the others find the mark).
 */
void sg_redis_epoch_fenced(sg_redis_t *r, int had_data);
/*
 * Before sg_redis_epoch_start(), for a stage whose writes are not fenced
 * (rules): had_data, the stage knows Redis lost some of its writes while
 * it did not run (rules: its Kafka commit is past the offsets stored with
 * its state, a rollback that kept sg:epoch), so the start is stopped and
 * marked as for a loss, until the data is restored or the mark removed.
 */
void sg_redis_epoch_expect(sg_redis_t *r, int had_data);

/* Counters for metrics: commands sent and round trips made. */
long long sg_redis_commands(const sg_redis_t *r);
long long sg_redis_round_trips(const sg_redis_t *r);
/* Connections made so far: a new one may face a Redis that restarted and
 * lost its script cache. */
long long sg_redis_connects(const sg_redis_t *r);

#endif
