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
 * Writes s as a logfmt value into buf: bare if it has no space, quote or
 * '=', else double-quoted with \" and \\ escaped and control bytes as \xNN.
 * Always NUL-terminates; returns buf.
 */
char *sg_log_quote(char *buf, size_t size, const char *s);

#endif
