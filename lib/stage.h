/*
 * What every stage binary shares: the command line (-c, --help, --version),
 * loading the config (exit 2 with one line on error), logging setup, the
 * stop / reload signals, and the metrics / health HTTP endpoint with its
 * readiness inputs.
 */
#ifndef SG_STAGE_H
#define SG_STAGE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"

/* Set by SIGTERM / SIGINT: finish the batch in hand, commit, exit 0. */
extern volatile sig_atomic_t sg_stop;
/* Set by SIGHUP: reload what can be reloaded. */
extern volatile sig_atomic_t sg_reload;

/*
 * The stop budget. After the first stop signal, every wait on the broker
 * (flushes, drains, the consumer's close) ends by SG_STOP_GRACE_MS; a
 * watchdog ends the process with exit 1 SG_STOP_WATCHDOG_S after the
 * signal whatever it is blocked on; a second signal exits 128 + signal at
 * once.
 */
#define SG_STOP_GRACE_MS 6000
#define SG_STOP_WATCHDOG_S 9

/* deadline (monotonic ms), moved earlier to the end of the stop budget
 * once a stop signal came. */
int64_t sg_stop_deadline(int64_t deadline);
/* timeout_ms, cut to what is left of the stop budget once a stop signal
 * came (0 when none is left). */
int sg_stop_bound_ms(int timeout_ms);

typedef struct sg_stage_desc {
        const char *name;            /* "ingest" */
        const char *summary;         /* one line for --help */
        const char *const *sections; /* config prefixes for --help */
        /* 1 for a stage that never connects to Redis (ingest). A stage that
         * does is "redis not connected" on /readyz from sg_stage_init on,
         * not only from sg_redis_new on: the endpoint is up before it. */
        int without_redis;
} sg_stage_desc_t;

/*
 * Parses argv, loads the config into conf, sets up logging, metrics and
 * signals, and starts the HTTP endpoint (metrics.listen; see
 * sg_stage_serve). Exits 0 after --help / --version, 2 on a bad argument or
 * config, or when metrics.listen cannot be bound.
 */
void sg_stage_init(const sg_stage_desc_t *desc, int argc, char **argv,
                   sg_conf_t *conf);

/*
 * Serves /metrics, /healthz and /readyz on listen ("off", "host" = the
 * stage's default port: ingest 9731, aggregate 9732, rules 9733, sink 9734,
 * or "host:port") until the process exits (an atexit handler stops it).
 * 0, or -1 with errstr. sg_stage_init calls it.
 */
int sg_stage_serve(const char *stage, const char *listen, char *errstr,
                   size_t errstr_size);

/* The default metrics port of a stage, 0 if it has none. */
int sg_stage_default_port(const char *stage);

/*
 * Readiness inputs, set by lib/kafka.c and lib/redis.c from their threads,
 * read by /readyz: the broker reachable (no "all brokers down" since the
 * last sign of life), partitions assigned to the consumer, and Redis (-1 =
 * the stage does not use it, 0 down, 1 connected; sg_stage_init sets 0 or
 * -1 from sg_stage_desc_t.without_redis).
 */
typedef enum {
        SG_READY_BROKER = 0,
        SG_READY_ASSIGNED,
        SG_READY_REDIS,
        SG_READY_REDIS_DATA, /* 0: the data-loss guard tripped (redis.h) */
        SG_READY__CNT
} sg_ready_t;

void sg_ready_set(sg_ready_t what, int value);
void sg_ready_add(sg_ready_t what, int delta);
int sg_ready_get(sg_ready_t what);

/* 1 when every input is ready; else 0 and what is missing in why. */
int sg_stage_ready(char *why, size_t size);

/* Installs the SIGTERM/SIGINT/SIGHUP handlers (sg_stage_init does it). */
void sg_stage_signals(void);

/* Wall clock in ms since the epoch; monotonic clock in ms and in us. */
int64_t sg_now_ms(void);
int64_t sg_mono_ms(void);
int64_t sg_mono_us(void);

/* Sleeps ms, waking early when sg_stop is set. */
void sg_sleep_ms(int ms);

#endif
