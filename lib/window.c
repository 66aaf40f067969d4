#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "window.h"

int64_t sg_window_floor(int64_t t, int64_t width_ms)
{
        int64_t r = t % width_ms;

        return r < 0 ? t - r - width_ms : t - r;
}

int sg_window_is_closed(int64_t t, int64_t width_ms, int64_t wm)
{
        return sg_window_floor(t, width_ms) + width_ms <= wm;
}

int sg_window_parse_list(const char *list, sg_window_def_t *out, int max,
                         int64_t unit_ms, char *errstr, size_t errstr_size)
{
        const char *p = list;
        int cnt = 0;

        for (;;) {
                const char *end = strchr(p, ',');
                size_t n = end ? (size_t)(end - p) : strlen(p);
                char tok[32], *num_end;
                int64_t len = 0;
                long long v;

                while (n && (*p == ' ' || *p == '\t'))
                        p++, n--;
                while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
                        n--;
                if (n == 0 || n >= sizeof(tok) || n >= SG_WINDOW_LEN) {
                        snprintf(errstr, errstr_size,
                                 "window \"%.*s\": expected <n>s, <n>m, <n>h, "
                                 "<n>d or today",
                                 (int)n, p);
                        return -1;
                }
                memcpy(tok, p, n);
                tok[n] = '\0';
                if (strcmp(tok, "today") != 0) {
                        v = strtoll(tok, &num_end, 10);
                        if (v <= 0 || num_end == tok || num_end[1] != '\0' ||
                            !strchr("smhd", num_end[0]) || v > 366LL * 86400) {
                                snprintf(errstr, errstr_size,
                                         "window \"%s\": expected <n>s, "
                                         "<n>m, <n>h, <n>d or today",
                                         tok);
                                return -1;
                        }
                        len = v * 1000 *
                              (num_end[0] == 's'   ? 1
                               : num_end[0] == 'm' ? 60
                               : num_end[0] == 'h' ? 3600
                                                   : 86400);
                        if (unit_ms > 0 && len % unit_ms) {
                                snprintf(errstr, errstr_size,
                                         "window \"%s\" is not a multiple of "
                                         "%lld s",
                                         tok, (long long)(unit_ms / 1000));
                                return -1;
                        }
                }
                for (int i = 0; i < cnt; i++)
                        if (strcmp(out[i].name, tok) == 0 ||
                            (len && out[i].len_ms == len)) {
                                snprintf(errstr, errstr_size,
                                         "window \"%s\" given twice", tok);
                                return -1;
                        }
                if (cnt == max) {
                        snprintf(errstr, errstr_size, "more than %d windows",
                                 max);
                        return -1;
                }
                memcpy(out[cnt].name, tok, n + 1); /* n < SG_WINDOW_LEN */
                out[cnt++].len_ms = len;
                if (!end)
                        return cnt;
                p = end + 1;
        }
}

int sg_window_mask(const char *list, const sg_window_def_t *wins, int cnt,
                   char *errstr, size_t errstr_size)
{
        sg_window_def_t want[SG_MAX_WINDOWS];
        int n, mask = 0;

        if (cnt < 0)
                return -1;
        if (!list[0])
                return 0;
        n = sg_window_parse_list(list, want, SG_MAX_WINDOWS, 0, errstr,
                                 errstr_size);
        if (n < 0)
                return -1;
        for (int i = 0; i < n; i++) {
                int k = 0;

                while (k < cnt && wins[k].len_ms != want[i].len_ms)
                        k++;
                if (k == cnt) {
                        snprintf(errstr, errstr_size,
                                 "window \"%s\" is not in aggregate.windows",
                                 want[i].name);
                        return -1;
                }
                mask |= 1 << k;
        }
        return mask;
}

void sg_window_name(int64_t ms, char *buf, size_t size)
{
        long long s = (long long)(ms / 1000);

        if (s % 86400 == 0)
                snprintf(buf, size, "%lldd", s / 86400);
        else if (s % 3600 == 0)
                snprintf(buf, size, "%lldh", s / 3600);
        else if (s % 60 == 0)
                snprintf(buf, size, "%lldm", s / 60);
        else
                snprintf(buf, size, "%llds", s);
}
