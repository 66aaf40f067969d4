#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"

int sg_log_verbosity = SG_LOG_INFO;
static const char *log_stage = "sg";

static const char *level_names[] = {"debug", "info", "warn", "error"};

void sg_log_init(const char *stage)
{
        log_stage = stage;
}

int sg_log_set_level(const char *name)
{
        for (int i = 0; i < 4; i++) {
                if (strcasecmp(name, level_names[i]) == 0) {
                        sg_log_verbosity = i;
                        return 0;
                }
        }
        return -1;
}

void sg_log_write(sg_log_level_t level, const char *fmt, ...)
{
        char line[2048];
        struct timespec ts;
        struct tm tm;
        size_t n;
        va_list ap;

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
        n += snprintf(line + n, sizeof(line) - n, ".%03ldZ level=%s stage=%s ",
                      ts.tv_nsec / 1000000, level_names[level], log_stage);
        va_start(ap, fmt);
        if (n < sizeof(line))
                vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
        /* One write per line so that concurrent stages do not interleave. */
        fprintf(stderr, "%s\n", line);
}

char *sg_log_quote(char *buf, size_t size, const char *s)
{
        size_t o = 0;
        int quote = (*s == '\0') || strpbrk(s, " =\"\\\t\n\r") != NULL;

        if (size == 0)
                return buf;
        for (const char *p = s; *p && !quote; p++)
                if ((unsigned char)*p < 0x20)
                        quote = 1;
        if (!quote) {
                snprintf(buf, size, "%s", s);
                return buf;
        }
#define PUT(c)                                                                 \
        do {                                                                   \
                if (o + 1 < size)                                              \
                        buf[o++] = (c);                                        \
        } while (0)
        PUT('"');
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if (*p == '"' || *p == '\\') {
                        PUT('\\');
                        PUT(*p);
                } else if (*p < 0x20) {
                        char hex[5];
                        snprintf(hex, sizeof(hex), "\\x%02x", *p);
                        for (int i = 0; hex[i]; i++)
                                PUT(hex[i]);
                } else {
                        PUT(*p);
                }
        }
        PUT('"');
#undef PUT
        buf[o] = '\0';
        return buf;
}
