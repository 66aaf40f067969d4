/*
 * logfmt logging: one line per event, `ts=... level=... stage=... <kv>`, to
 * stderr. The level is checked before anything is formatted.
 */
#ifndef SG_LOG_H
#define SG_LOG_H

#include <stddef.h>

typedef enum {
        SG_LOG_DEBUG = 0,
        SG_LOG_INFO,
        SG_LOG_WARN,
        SG_LOG_ERROR
} sg_log_level_t;

extern int sg_log_verbosity;

/* Tags every line with stage=<name>. The string must outlive logging. */
void sg_log_init(const char *stage);
/* "debug" | "info" | "warn" | "error" -> 0; -1 if unknown. */
int sg_log_set_level(const char *name);

void sg_log_write(sg_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* fmt is the key=value part: sg_log(SG_LOG_INFO, "event=start topics=%d", n) */
#define sg_log(level, ...)                                                     \
        do {                                                                   \
                if ((int)(level) < sg_log_verbosity)                           \
                        break;                                                 \
                sg_log_write(level, __VA_ARGS__);                              \
        } while (0)

#define sg_debug(...) sg_log(SG_LOG_DEBUG, __VA_ARGS__)
#define sg_info(...)  sg_log(SG_LOG_INFO, __VA_ARGS__)
#define sg_warn(...)  sg_log(SG_LOG_WARN, __VA_ARGS__)
#define sg_error(...) sg_log(SG_LOG_ERROR, __VA_ARGS__)

/*
 * Secrets never reach a log line: sg_log_write() passes every line through
 * sg_log_redact(). sg_log_secret() registers a value (a password, a Kafka
 * secret) to be shown as *** wherever it appears; the value is copied
 * (at most SG_LOG_MAX_SECRETS values of up to 511 bytes; values shorter
 * than 4 bytes, which would mask ordinary text, and values holding a '*'
 * are not registered: the URL and key patterns still hide them).
 * Register at start-up, before other threads log.
 */
#define SG_LOG_MAX_SECRETS 16
void sg_log_secret(const char *value);

/*
 * Rewrites buf (NUL-terminated, capacity size) with *** in place of: every
 * registered secret; the password of a URL (scheme://user:PASSWORD@ or
 * scheme://PASSWORD@); the value after a key containing "password" or
 * "secret" (case-insensitive) written key=value or "key":"value", unless
 * the key names a file (redis_password_file=PATH stays). Returns buf.
 */
char *sg_log_redact(char *buf, size_t size);

/*
 * Writes s as a logfmt value into buf: bare if it has no space, quote or
 * '=', else double-quoted with \" and \\ escaped and control bytes as \xNN.
 * Always NUL-terminates; returns buf.
 */
char *sg_log_quote(char *buf, size_t size, const char *s);

#endif
