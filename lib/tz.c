/*
 * A TZif reader (RFC 8536) and the POSIX TZ rule of its footer.
 *
 * Why not localtime_r/mktime: they read the zone from the TZ environment,
 * process-wide; a stage would have to set TZ before librdkafka starts its
 * threads, and tests could not hold two zones. The files are simple: a
 * sorted table of transition instants, each naming a local time type (an
 * offset from UTC), and a footer rule ("EST5EDT,M3.2.0,M11.1.0") for the
 * instants after the last transition (slim tz data ends its table in 2007
 * and leaves the rest to the rule; Debian's fat files list until 2037).
 *
 * The start of a local day is the first instant whose local date is that
 * day: found by bisection over the offset function, so that days of 23 and
 * 25 hours and clocks that jump over midnight (America/Havana) need no
 * special case.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tz.h"

#define DAY_MS  86400000LL
#define MAX_TZIF (1 << 20)

typedef struct tz_rule {
        int month, week, wday; /* Mm.w.d: day wday of week 1..5 (5 = last) */
        int32_t secs;          /* local time of the change, seconds */
} tz_rule_t;

struct sg_tz {
        int64_t *trans;  /* transition instants, seconds, ascending */
        uint8_t *idx;    /* local time type of each */
        int32_t *utoff;  /* offset of each type, seconds east */
        size_t timecnt, typecnt;
        int rule;        /* footer: 0 none (last type holds), 1 fixed, 2 DST */
        int32_t std_off, dst_off;
        tz_rule_t start, end;
};

static int64_t floor_div(int64_t a, int64_t b)
{
        return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
        int64_t era;
        unsigned yoe, doy, doe;

        y -= m <= 2;
        era = (y >= 0 ? y : y - 399) / 400;
        yoe = (unsigned)(y - era * 400);
        doy = (unsigned)((153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1);
        doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + (int64_t)doe - 719468;
}

static int64_t year_of_days(int64_t z)
{
        int64_t era;
        unsigned doe, yoe, doy, mp;

        z += 719468;
        era = (z >= 0 ? z : z - 146096) / 146097;
        doe = (unsigned)(z - era * 146097);
        yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        mp = (5 * doy + 2) / 153;
        return (int64_t)yoe + era * 400 + (mp >= 10);
}

/* The local instant (seconds, as if UTC) a rule names in year y. */
static int64_t rule_local(const tz_rule_t *r, int64_t y)
{
        int64_t first = days_from_civil(y, r->month, 1), day, next;
        int wd_first = (int)(((first + 4) % 7 + 7) % 7); /* 0 = Sunday */

        day = first + (r->wday - wd_first + 7) % 7 + (int64_t)(r->week - 1) * 7;
        next = r->month == 12 ? days_from_civil(y + 1, 1, 1)
                              : days_from_civil(y, r->month + 1, 1);
        while (day >= next) /* week 5: the last one */
                day -= 7;
        return day * 86400 + r->secs;
}

static int32_t rule_offset(const sg_tz_t *tz, int64_t t)
{
        int64_t y, start, end;

        if (tz->rule == 1)
                return tz->std_off;
        y = year_of_days(floor_div(t + tz->std_off, 86400));
        start = rule_local(&tz->start, y) - tz->std_off;
        end = rule_local(&tz->end, y) - tz->dst_off;
        if (start < end)
                return t >= start && t < end ? tz->dst_off : tz->std_off;
        /* Southern hemisphere: DST across the new year. */
        return t >= end && t < start ? tz->std_off : tz->dst_off;
}

int64_t sg_tz_offset_ms(const sg_tz_t *tz, int64_t utc_ms)
{
        int64_t t = floor_div(utc_ms, 1000);
        size_t lo = 0, hi;

        if (tz->timecnt == 0)
                return (int64_t)(tz->rule ? rule_offset(tz, t) : tz->utoff[0]) *
                       1000;
        if (t < tz->trans[0])
                return (int64_t)tz->utoff[0] * 1000;
        if (t >= tz->trans[tz->timecnt - 1] && tz->rule)
                return (int64_t)rule_offset(tz, t) * 1000;
        /* The last transition at or before t. */
        hi = tz->timecnt;
        while (hi - lo > 1) {
                size_t mid = (lo + hi) / 2;

                if (tz->trans[mid] <= t)
                        lo = mid;
                else
                        hi = mid;
        }
        return (int64_t)tz->utoff[tz->idx[lo]] * 1000;
}

static int64_t local_day(const sg_tz_t *tz, int64_t t)
{
        return floor_div(t + sg_tz_offset_ms(tz, t), DAY_MS);
}

int64_t sg_tz_day_start(const sg_tz_t *tz, int64_t ts_ms)
{
        int64_t day = local_day(tz, ts_ms);
        int64_t lo = ts_ms - 2 * DAY_MS, hi = ts_ms;

        /* Invariant: local_day(lo) < day <= local_day(hi). */
        while (hi - lo > 1) {
                int64_t mid = lo + (hi - lo) / 2;

                if (local_day(tz, mid) >= day)
                        hi = mid;
                else
                        lo = mid;
        }
        return hi;
}

/* ------------------------------------------------------------ loading */

static uint32_t be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
               (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const uint8_t *p)
{
        return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

/* [+-]hh[:mm[:ss]] into seconds; NULL if malformed. */
static const char *parse_hms(const char *s, int32_t *secs)
{
        int sign = 1, part = 0;
        long v[3] = {0, 0, 0};

        if (*s == '+' || *s == '-')
                sign = *s++ == '-' ? -1 : 1;
        if (!isdigit((unsigned char)*s))
                return NULL;
        for (;;) {
                char *end;

                v[part] = strtol(s, &end, 10);
                if (end == s || v[part] > 167)
                        return NULL;
                s = end;
                if (*s != ':' || part == 2)
                        break;
                s++;
                part++;
        }
        *secs = sign * (int32_t)(v[0] * 3600 + v[1] * 60 + v[2]);
        return s;
}

static const char *parse_name(const char *s)
{
        if (*s == '<') {
                s = strchr(s, '>');
                return s ? s + 1 : NULL;
        }
        while (isalpha((unsigned char)*s))
                s++;
        return s;
}

/* ,Mm.w.d[/time] */
static const char *parse_rule(const char *s, tz_rule_t *r)
{
        char *end;

        if (*s++ != ',' || *s++ != 'M')
                return NULL;
        r->month = (int)strtol(s, &end, 10);
        if (end == s || *end != '.' || r->month < 1 || r->month > 12)
                return NULL;
        s = end + 1;
        r->week = (int)strtol(s, &end, 10);
        if (end == s || *end != '.' || r->week < 1 || r->week > 5)
                return NULL;
        s = end + 1;
        r->wday = (int)strtol(s, &end, 10);
        if (end == s || r->wday < 0 || r->wday > 6)
                return NULL;
        s = end;
        r->secs = 7200;
        if (*s == '/')
                s = parse_hms(s + 1, &r->secs);
        return s;
}

/* The footer's POSIX TZ string; forms it cannot read leave rule 0 (the
 * last transition's type then holds). */
static void parse_footer(sg_tz_t *tz, const char *s)
{
        int32_t off;

        if (!(s = parse_name(s)) || !(s = parse_hms(s, &off)))
                return;
        tz->std_off = -off;
        if (!*s) {
                tz->rule = 1;
                return;
        }
        if (!(s = parse_name(s)))
                return;
        tz->dst_off = tz->std_off + 3600;
        if (*s && *s != ',') {
                if (!(s = parse_hms(s, &off)))
                        return;
                tz->dst_off = -off;
        }
        if (!(s = parse_rule(s, &tz->start)) || !(s = parse_rule(s, &tz->end)) ||
            *s)
                return;
        tz->rule = 2;
}

static int parse_tzif(sg_tz_t *tz, const uint8_t *p, size_t len)
{
        const uint8_t *h = p, *d;
        uint32_t isut, isstd, leap, timecnt, typecnt, charcnt;
        size_t tsize = 4, need;

        if (len < 44 || memcmp(p, "TZif", 4) != 0)
                return -1;
        for (int pass = 0;; pass++) {
                isut = be32(h + 20);
                isstd = be32(h + 24);
                leap = be32(h + 28);
                timecnt = be32(h + 32);
                typecnt = be32(h + 36);
                charcnt = be32(h + 40);
                if (timecnt > 100000 || typecnt == 0 || typecnt > 256 ||
                    charcnt > 100000 || leap > 100000 || isut > 256 ||
                    isstd > 256)
                        return -1;
                need = 44 + (size_t)timecnt * (tsize + 1) + typecnt * 6 +
                       charcnt + leap * (tsize + 4) + isstd + isut;
                if ((size_t)(h - p) + need > len)
                        return -1;
                /* Version 2+: skip the 32-bit block for the 64-bit one. */
                if (pass == 0 && p[4] >= '2') {
                        h += need;
                        tsize = 8;
                        if ((size_t)(h - p) + 44 > len ||
                            memcmp(h, "TZif", 4) != 0)
                                return -1;
                        continue;
                }
                break;
        }
        d = h + 44;
        tz->timecnt = timecnt;
        tz->typecnt = typecnt;
        tz->trans = calloc(timecnt ? timecnt : 1, sizeof(*tz->trans));
        tz->idx = calloc(timecnt ? timecnt : 1, 1);
        tz->utoff = calloc(typecnt, sizeof(*tz->utoff));
        if (!tz->trans || !tz->idx || !tz->utoff)
                return -1;
        for (uint32_t i = 0; i < timecnt; i++, d += tsize)
                tz->trans[i] =
                    tsize == 8 ? be64(d) : (int64_t)(int32_t)be32(d);
        for (uint32_t i = 0; i < timecnt; i++, d++) {
                if (*d >= typecnt)
                        return -1;
                tz->idx[i] = *d;
        }
        for (uint32_t i = 0; i < typecnt; i++, d += 6)
                tz->utoff[i] = (int32_t)be32(d);
        for (uint32_t i = 1; i < timecnt; i++)
                if (tz->trans[i] <= tz->trans[i - 1])
                        return -1;
        d = h + need;
        if (tsize == 8 && d < p + len && *d == '\n') {
                const uint8_t *nl = memchr(d + 1, '\n', (size_t)(p + len - d - 1));
                char footer[128];

                if (nl && (size_t)(nl - d - 1) < sizeof(footer)) {
                        memcpy(footer, d + 1, (size_t)(nl - d - 1));
                        footer[nl - d - 1] = '\0';
                        parse_footer(tz, footer);
                }
        }
        return 0;
}

sg_tz_t *sg_tz_new(const char *name, char *errstr, size_t errstr_size)
{
        const char *dir = getenv("TZDIR");
        char path[1024];
        uint8_t *buf = NULL;
        sg_tz_t *tz = NULL;
        size_t len;
        FILE *fp;

        if (!name[0] || name[0] == '/' || strstr(name, "..")) {
                snprintf(errstr, errstr_size,
                         "\"%s\" is not a time zone name (want e.g. "
                         "America/New_York)",
                         name);
                return NULL;
        }
        snprintf(path, sizeof(path), "%s/%s",
                 dir && dir[0] ? dir : "/usr/share/zoneinfo", name);
        fp = fopen(path, "rb");
        if (!fp) {
                snprintf(errstr, errstr_size,
                         "unknown time zone \"%s\" (no %s)", name, path);
                return NULL;
        }
        buf = malloc(MAX_TZIF);
        tz = calloc(1, sizeof(*tz));
        len = buf ? fread(buf, 1, MAX_TZIF, fp) : 0;
        fclose(fp);
        if (!buf || !tz || parse_tzif(tz, buf, len) == -1) {
                snprintf(errstr, errstr_size,
                         "time zone \"%s\": %s is not a TZif file", name, path);
                sg_tz_destroy(tz);
                tz = NULL;
        }
        free(buf);
        return tz;
}

void sg_tz_destroy(sg_tz_t *tz)
{
        if (!tz)
                return;
        free(tz->trans);
        free(tz->idx);
        free(tz->utoff);
        free(tz);
}
