#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "tz.h"

/* Expected values from Python's zoneinfo over the same tz database. */

#define H 3600000LL

static sg_tz_t *zone(const char *name)
{
        char err[256];
        sg_tz_t *tz = sg_tz_new(name, err, sizeof(err));

        cr_assert_not_null(tz, "%s", err);
        return tz;
}

Test(tz, new_york_days_across_the_spring_change_are_23_hours)
{
        sg_tz_t *tz = zone("America/New_York");

        /* 2026-03-08 10:00 EDT: the day began at 00:00 EST = 05:00Z. */
        cr_assert_eq(sg_tz_day_start(tz, 1772978400000), 1772946000000);
        /* 2026-03-09 10:00 EDT: 00:00 EDT = 04:00Z. */
        cr_assert_eq(sg_tz_day_start(tz, 1773064800000), 1773028800000);
        cr_assert_eq(1773028800000 - 1772946000000, 23 * H);
        /* The last ms of 2026-03-07 (23:59:59.999 EST). */
        cr_assert_eq(sg_tz_day_start(tz, 1772945999999), 1772859600000);
        cr_assert_eq(sg_tz_offset_ms(tz, 1772978400000), -4 * H);
        cr_assert_eq(sg_tz_offset_ms(tz, 1772945999999), -5 * H);
        sg_tz_destroy(tz);
}

Test(tz, new_york_days_across_the_autumn_change_are_25_hours)
{
        sg_tz_t *tz = zone("America/New_York");

        /* 2026-11-01 07:00 EST (after 02:00 EDT -> 01:00 EST). */
        cr_assert_eq(sg_tz_day_start(tz, 1793534400000), 1793505600000);
        cr_assert_eq(sg_tz_day_start(tz, 1793620800000), 1793595600000);
        cr_assert_eq(1793595600000 - 1793505600000, 25 * H);
        /* Both ends of the repeated hour are on the same day. */
        cr_assert_eq(sg_tz_day_start(tz, 1793510000000), 1793505600000);
        cr_assert_eq(sg_tz_day_start(tz, 1793514000000), 1793505600000);
        sg_tz_destroy(tz);
}

Test(tz, years_past_the_transition_table_follow_the_footer_rule)
{
        sg_tz_t *tz = zone("America/New_York");

        /* 2040: EST5EDT,M3.2.0,M11.1.0 (March 11, November 4). */
        cr_assert_eq(sg_tz_day_start(tz, 2215087200000), 2215054800000);
        cr_assert_eq(sg_tz_day_start(tz, 2215173600000), 2215137600000);
        cr_assert_eq(sg_tz_day_start(tz, 2235643200000), 2235614400000);
        cr_assert_eq(sg_tz_day_start(tz, 2235729600000), 2235704400000);
        sg_tz_destroy(tz);
        /* Sydney 2040, AEST-10AEDT,M10.1.0,M4.1.0/3: DST over new year. */
        tz = zone("Australia/Sydney");
        cr_assert_eq(sg_tz_day_start(tz, 2216894400000), 2216811600000);
        cr_assert_eq(sg_tz_day_start(tz, 2216980800000), 2216901600000);
        cr_assert_eq(sg_tz_day_start(tz, 2233224000000), 2233144800000);
        cr_assert_eq(sg_tz_day_start(tz, 2233310400000), 2233227600000);
        cr_assert_eq(sg_tz_day_start(tz, 2241864000000), 2241781200000);
        sg_tz_destroy(tz);
}

Test(tz, a_day_whose_midnight_is_skipped_starts_when_the_clocks_jump)
{
        /* Havana: 2026-03-08 00:00 CST -> 01:00 CDT, at 05:00Z. */
        sg_tz_t *tz = zone("America/Havana");

        cr_assert_eq(sg_tz_day_start(tz, 1772971200000), 1772946000000);
        sg_tz_destroy(tz);
}

Test(tz, other_zones_half_hours_and_the_southern_hemisphere)
{
        sg_tz_t *k = zone("Asia/Kolkata"), *b = zone("Europe/Berlin"),
                *s = zone("Australia/Sydney"), *u = zone("UTC");

        /* 2026-01-01 05:30 IST: 2025-12-31 18:30Z. */
        cr_assert_eq(sg_tz_day_start(k, 1767225600000), 1767205800000);
        /* Berlin, the days of both changes: midnight CET = 23:00Z; the
         * autumn one began in CEST = 22:00Z. */
        cr_assert_eq(sg_tz_day_start(b, 1774785600000), 1774738800000);
        cr_assert_eq(sg_tz_day_start(b, 1792929600000), 1792879200000);
        /* Sydney: DST from October to April. */
        cr_assert_eq(sg_tz_day_start(s, 1775390400000), 1775307600000);
        cr_assert_eq(sg_tz_day_start(s, 1791115200000), 1791036000000);
        cr_assert_eq(sg_tz_day_start(u, 1772978400000), 1772928000000);
        cr_assert_eq(sg_tz_offset_ms(u, 1772978400000), 0);
        sg_tz_destroy(k);
        sg_tz_destroy(b);
        sg_tz_destroy(s);
        sg_tz_destroy(u);
}

Test(tz, unknown_zones_and_files_that_are_not_tzif_are_refused)
{
        char err[256], dir[] = "/tmp/sg-tz-XXXXXX", path[300];
        FILE *fp;

        cr_assert_null(sg_tz_new("Mars/Olympus_Mons", err, sizeof(err)));
        cr_assert_str_eq(err, "unknown time zone \"Mars/Olympus_Mons\" (no "
                              "/usr/share/zoneinfo/Mars/Olympus_Mons)");
        cr_assert_null(sg_tz_new("../etc/passwd", err, sizeof(err)));
        cr_assert_str_eq(err, "\"../etc/passwd\" is not a time zone name "
                              "(want e.g. America/New_York)");
        cr_assert_not_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/Bad", dir);
        fp = fopen(path, "w");
        cr_assert_not_null(fp);
        fputs("TZif2 but truncated", fp);
        fclose(fp);
        setenv("TZDIR", dir, 1);
        cr_assert_null(sg_tz_new("Bad", err, sizeof(err)));
        unsetenv("TZDIR");
        unlink(path);
        rmdir(dir);
        cr_assert(strstr(err, "is not a TZif file") != NULL, "%s", err);
}
