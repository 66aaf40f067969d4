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

Test(window, watermark_is_min_over_partitions_with_data_minus_lateness)
{
        int64_t t[] = {100000, INT64_MIN, 70000, 90000};

        cr_assert_eq(sg_watermark(t, 4, 30000), 40000);
}

Test(window, watermark_without_data_is_minus_infinity)
{
        int64_t t[] = {INT64_MIN, INT64_MIN};

        cr_assert_eq(sg_watermark(t, 2, 30000), INT64_MIN);
        cr_assert_eq(sg_watermark(t, 0, 30000), INT64_MIN);
}

Test(window, window_closes_when_watermark_reaches_its_end)
{
        /* window [60000, 120000) */
        cr_assert_eq(sg_window_is_closed(61000, 60000, 119999), 0);
        cr_assert_eq(sg_window_is_closed(61000, 60000, 120000), 1);
        cr_assert_eq(sg_window_is_closed(120000, 60000, 120000), 0);
}
