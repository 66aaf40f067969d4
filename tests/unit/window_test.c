#include <stdint.h>

#include <criterion/criterion.h>

#include "window.h"

Test(window, floors_to_the_bucket_start)
{
        cr_assert_eq(sg_window_floor(1700000012345, 10000), 1700000010000);
        cr_assert_eq(sg_window_floor(1700000010000, 10000), 1700000010000);
        cr_assert_eq(sg_window_floor(1700000019999, 10000), 1700000010000);
}

Test(window, floors_negative_times_downwards)
{
        cr_assert_eq(sg_window_floor(-1, 10000), -10000);
        cr_assert_eq(sg_window_floor(-10000, 10000), -10000);
        cr_assert_eq(sg_window_floor(0, 10000), 0);
}

Test(window, window_closes_when_watermark_reaches_its_end)
{
        /* window [60000, 120000) */
        cr_assert_eq(sg_window_is_closed(61000, 60000, 119999), 0);
        cr_assert_eq(sg_window_is_closed(61000, 60000, 120000), 1);
        cr_assert_eq(sg_window_is_closed(120000, 60000, 120000), 0);
}

Test(window, parses_the_default_window_list)
{
        sg_window_def_t w[SG_MAX_WINDOWS];
        char err[160] = "";

        cr_assert_eq(sg_window_parse_list("1m, 5m,1h ,today", w, SG_MAX_WINDOWS,
                                          10000, err, sizeof(err)),
                     4, "%s", err);
        cr_assert_str_eq(w[0].name, "1m");
        cr_assert_eq(w[0].len_ms, 60000);
        cr_assert_str_eq(w[1].name, "5m");
        cr_assert_eq(w[1].len_ms, 300000);
        cr_assert_str_eq(w[2].name, "1h");
        cr_assert_eq(w[2].len_ms, 3600000);
        cr_assert_str_eq(w[3].name, "today");
        cr_assert_eq(w[3].len_ms, 0);
        cr_assert_eq(sg_window_parse_list("90s,2d", w, SG_MAX_WINDOWS, 0, err,
                                          sizeof(err)),
                     2);
        cr_assert_eq(w[0].len_ms, 90000);
        cr_assert_eq(w[1].len_ms, 172800000);
}

Test(window, refuses_bad_window_lists)
{
        static const struct {
                const char *list, *err;
        } bad[] = {
            {"", "window \"\": expected <n>s, <n>m, <n>h, <n>d or today"},
            {"1m,,5m", "window \"\": expected <n>s, <n>m, <n>h, <n>d or today"},
            {"0m", "window \"0m\": expected <n>s, <n>m, <n>h, <n>d or today"},
            {"5x", "window \"5x\": expected <n>s, <n>m, <n>h, <n>d or today"},
            {"m", "window \"m\": expected <n>s, <n>m, <n>h, <n>d or today"},
            {"1mm", "window \"1mm\": expected <n>s, <n>m, <n>h, <n>d or today"},
            {"15s", "window \"15s\" is not a multiple of 10 s"},
            {"1m,60s", "window \"60s\" given twice"},
            {"today,today", "window \"today\" given twice"},
            {"1m,2m,3m,4m,5m,6m,7m,8m,9m", "more than 8 windows"},
        };
        sg_window_def_t w[SG_MAX_WINDOWS];
        char err[160];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                err[0] = '\0';
                cr_assert_eq(sg_window_parse_list(bad[i].list, w,
                                                  SG_MAX_WINDOWS, 10000, err,
                                                  sizeof(err)),
                             -1, "%s accepted", bad[i].list);
                cr_assert_str_eq(err, bad[i].err, "%s", bad[i].list);
        }
}

Test(window, names_lengths_in_their_largest_unit)
{
        char b[16];

        sg_window_name(60000, b, sizeof(b));
        cr_assert_str_eq(b, "1m");
        sg_window_name(90000, b, sizeof(b));
        cr_assert_str_eq(b, "90s");
        sg_window_name(7200000, b, sizeof(b));
        cr_assert_str_eq(b, "2h");
        sg_window_name(86400000, b, sizeof(b));
        cr_assert_str_eq(b, "1d");
}
