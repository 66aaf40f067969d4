#include <stdint.h>

#include <criterion/criterion.h>

#include "watermark.h"

#define LATE 30000

/* An input as a marker left it. */
static sg_wm_input_t in(int64_t t, int idle)
{
        sg_wm_input_t i = {0};

        sg_watermark_observe(&i, t, idle);
        return i;
}

Test(watermark, is_the_slowest_active_input_minus_lateness)
{
        /* Skew: one input far ahead of the others does not pull the
         * watermark along; the slowest one holds it. */
        sg_wm_input_t v[] = {in(1700000600000, 0), in(1700000010000, 0),
                             in(1700000300000, 0)};

        cr_assert_eq(sg_watermark_compute(v, 3, LATE), 1700000010000 - LATE);
}

Test(watermark, holds_while_an_input_is_unseen)
{
        sg_wm_input_t v[] = {in(1700000600000, 0), {0}};

        cr_assert_eq(sg_watermark_compute(v, 2, LATE), INT64_MIN);
        v[1] = in(1700000500000, 0);
        cr_assert_eq(sg_watermark_compute(v, 2, LATE), 1700000500000 - LATE);
}

Test(watermark, holds_while_an_active_input_has_no_progress)
{
        sg_wm_input_t v[] = {in(1700000600000, 0), in(INT64_MIN, 0)};

        cr_assert_eq(sg_watermark_compute(v, 2, LATE), INT64_MIN);
}

Test(watermark, idle_inputs_do_not_hold_it_back)
{
        sg_wm_input_t v[] = {in(1700000600000, 0), in(1700000010000, 1),
                             in(INT64_MIN, 1)};

        cr_assert_eq(sg_watermark_compute(v, 3, LATE), 1700000600000 - LATE);
}

Test(watermark, all_idle_is_the_highest_progress)
{
        sg_wm_input_t v[] = {in(1700000010000, 1), in(1700000600000, 1),
                             in(INT64_MIN, 1)};

        cr_assert_eq(sg_watermark_compute(v, 3, LATE), 1700000600000 - LATE);
}

Test(watermark, all_idle_without_progress_is_none)
{
        sg_wm_input_t v[] = {in(INT64_MIN, 1), in(INT64_MIN, 1)};

        cr_assert_eq(sg_watermark_compute(v, 2, LATE), INT64_MIN);
}

Test(watermark, no_inputs_is_none)
{
        cr_assert_eq(sg_watermark_compute(NULL, 0, LATE), INT64_MIN);
}

Test(watermark, lateness_is_subtracted_exactly)
{
        sg_wm_input_t v[] = {in(1700000010000, 0)};

        cr_assert_eq(sg_watermark_compute(v, 1, 0), 1700000010000);
        cr_assert_eq(sg_watermark_compute(v, 1, 1), 1700000009999);
        cr_assert_eq(sg_watermark_compute(v, 1, LATE), 1699999980000);
}

Test(watermark, does_not_overflow_near_the_lowest_time)
{
        sg_wm_input_t v[] = {in(INT64_MIN + 10, 0)};

        cr_assert_eq(sg_watermark_compute(v, 1, LATE), INT64_MIN);
        cr_assert_eq(sg_watermark_compute(v, 1, 10), INT64_MIN);
        cr_assert_eq(sg_watermark_compute(v, 1, 9), INT64_MIN + 1);
}

Test(watermark, an_input_keeps_its_highest_progress)
{
        sg_wm_input_t i = {0};

        sg_watermark_observe(&i, 1700000600000, 0);
        /* A restarted ingest re-reads from its committed offsets. */
        sg_watermark_observe(&i, 1700000500000, 0);
        cr_assert_eq(i.event_time, 1700000600000);
        cr_assert_eq(i.idle, 0);
        cr_assert_eq(i.seen, 1);
        sg_watermark_observe(&i, INT64_MIN, 1);
        cr_assert_eq(i.event_time, 1700000600000);
        cr_assert_eq(i.idle, 1);
}

Test(watermark, an_input_turning_active_again_holds_it)
{
        sg_wm_input_t v[] = {in(1700000600000, 0), in(1700000010000, 1)};

        cr_assert_eq(sg_watermark_compute(v, 2, LATE), 1700000600000 - LATE);
        sg_watermark_observe(&v[1], 1700000020000, 0);
        cr_assert_eq(sg_watermark_compute(v, 2, LATE), 1700000020000 - LATE);
}

Test(watermark, advance_never_goes_below_the_floor)
{
        cr_assert_eq(sg_watermark_advance(INT64_MIN, INT64_MIN), INT64_MIN);
        cr_assert_eq(sg_watermark_advance(INT64_MIN, 1700000000000),
                     1700000000000);
        cr_assert_eq(sg_watermark_advance(1700000000000, 1699999990000),
                     1700000000000);
        cr_assert_eq(sg_watermark_advance(1700000000000, INT64_MIN),
                     1700000000000);
        cr_assert_eq(sg_watermark_advance(1700000000000, 1700000000001),
                     1700000000001);
}

Test(watermark, monotone_through_a_falling_minimum)
{
        /* An idle input turns active below the others: the candidate falls,
         * the watermark stays. */
        sg_wm_input_t v[] = {in(1700000600000, 0), in(1700000010000, 1)};
        int64_t wm = INT64_MIN;

        wm = sg_watermark_advance(wm, sg_watermark_compute(v, 2, LATE));
        cr_assert_eq(wm, 1700000600000 - LATE);
        sg_watermark_observe(&v[1], 1700000020000, 0);
        wm = sg_watermark_advance(wm, sg_watermark_compute(v, 2, LATE));
        cr_assert_eq(wm, 1700000600000 - LATE);
}
