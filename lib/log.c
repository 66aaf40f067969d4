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

static char secrets[SG_LOG_MAX_SECRETS][512];
static int secret_cnt;

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
        sg_log_redact(line, sizeof(line));
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

void sg_log_secret(const char *value)
{
        if (!value || strlen(value) < 4 ||
            strlen(value) >= sizeof(secrets[0]) || strchr(value, '*'))
                return;
        for (int i = 0; i < secret_cnt; i++)
                if (strcmp(secrets[i], value) == 0)
                        return;
        if (secret_cnt < SG_LOG_MAX_SECRETS)
                strcpy(secrets[secret_cnt++], value);
}

/* Where a value ends in a log line, a URL or JSON text. */
static int value_end(char c)
{
        return c == '\0' || c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
               c == '"' || c == '\'' || c == '&' || c == ',' || c == ';' ||
               c == '}' || c == '\\';
}

static int key_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* The registered secret starting at p, its length; 0 if none. */
static size_t secret_at(const char *p)
{
        for (int i = 0; i < secret_cnt; i++) {
                size_t n = strlen(secrets[i]);
                if (strncmp(p, secrets[i], n) == 0)
                        return n;
        }
        return 0;
}

char *sg_log_redact(char *buf, size_t size)
{
        char in[4096];
        size_t o = 0, i = 0, n;

        if (size == 0)
                return buf;
        /*
         * First the registered secrets, wherever they are (also inside what
         * looks like a key below); then the patterns. Secrets hold no '*',
         * so the *** put in cannot join text into a secret.
         */
        for (const char *p = buf; *p && o + 1 < sizeof(in);) {
                if ((n = secret_at(p)) > 0) {
                        for (int k = 0; k < 3 && o + 1 < sizeof(in); k++)
                                in[o++] = '*';
                        p += n;
                        continue;
                }
                in[o++] = *p++;
        }
        in[o] = '\0';
        o = 0;
#define PUT(c)                                                                 \
        do {                                                                   \
                if (o + 1 < size)                                              \
                        buf[o++] = (c);                                        \
        } while (0)
#define PUTS(s)                                                                \
        do {                                                                   \
                for (const char *s_ = (s); *s_; s_++)                          \
                        PUT(*s_);                                              \
        } while (0)
        while (in[i]) {
                if (strncmp(in + i, "://", 3) == 0) {
                        /* userinfo: up to '@' before the host's end */
                        size_t j = i + 3, colon = 0;

                        while (in[j] && in[j] != '@' && in[j] != '/' &&
                               !value_end(in[j])) {
                                if (in[j] == ':' && !colon)
                                        colon = j;
                                j++;
                        }
                        if (in[j] == '@') {
                                PUTS("://");
                                for (size_t k = i + 3; colon && k <= colon; k++)
                                        PUT(in[k]);
                                PUTS("***@");
                                i = j + 1;
                                continue;
                        }
                }
                if (strncasecmp(in + i, "password", 8) == 0 ||
                    strncasecmp(in + i, "secret", 6) == 0) {
                        /* The whole key, then "=v", ":v" or "\":\"v". */
                        size_t k = i, v;
                        int file;

                        while (key_char(in[k]))
                                k++;
                        file = memmem(in + i, k - i, "file", 4) != NULL;
                        v = k;
                        /* The key's closing quote, bare or escaped. */
                        if (in[v] == '"')
                                v++;
                        else if (in[v] == '\\' && in[v + 1] == '"')
                                v += 2;
                        if (!file && (in[v] == '=' ||
                                      (in[v] == ':' && in[v + 1] != ' ' &&
                                       in[v + 1] != '\0'))) {
                                size_t q = 0; /* the value's opening quote */

                                v++;
                                if (in[v] == '"')
                                        q = 1;
                                else if (in[v] == '\\' && in[v + 1] == '"')
                                        q = 2;
                                for (; i < v + q; i++)
                                        PUT(in[i]);
                                v += q;
                                if (q == 1)
                                        while (in[v] && in[v] != '"')
                                                v += in[v] == '\\' && in[v + 1]
                                                         ? 2
                                                         : 1;
                                else
                                        while (!value_end(in[v]))
                                                v++;
                                PUTS("***");
                                i = v;
                                continue;
                        }
                        for (; i < k; i++)
                                PUT(in[i]);
                        continue;
                }
                PUT(in[i]);
                i++;
        }
#undef PUTS
#undef PUT
        buf[o] = '\0';
        return buf;
}
