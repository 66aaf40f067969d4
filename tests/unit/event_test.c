/*
 * Event type and action names as they appear on the wire, and the derived
 * KPI ratios with their "undefined when the denominator is zero" rule.
 */
#include <criterion/criterion.h>

#include "event.h"

Test(event_type, names_match_the_json_type_field)
{
        cr_assert_str_eq(sg_event_type_name(SG_EV_IMPRESSION), "impression");
        cr_assert_str_eq(sg_event_type_name(SG_EV_CLICK), "click");
        cr_assert_str_eq(sg_event_type_name(SG_EV_CONVERSION), "conversion");
}

Test(event_type, name_of_an_invalid_type_is_printable)
{
        cr_assert_str_eq(sg_event_type_name(SG_EV_NONE), "none");
        cr_assert_str_eq(sg_event_type_name((sg_event_type_t)42), "none");
}

Test(event_type, parse_round_trips_every_name)
{
        cr_assert_eq(sg_event_type_parse("impression"), SG_EV_IMPRESSION);
        cr_assert_eq(sg_event_type_parse("click"), SG_EV_CLICK);
        cr_assert_eq(sg_event_type_parse("conversion"), SG_EV_CONVERSION);
}

Test(event_type, parse_rejects_unknown_case_and_null)
{
        cr_assert_eq(sg_event_type_parse("view"), SG_EV_NONE);
        cr_assert_eq(sg_event_type_parse("Click"), SG_EV_NONE);
        cr_assert_eq(sg_event_type_parse(""), SG_EV_NONE);
        cr_assert_eq(sg_event_type_parse("none"), SG_EV_NONE);
        cr_assert_eq(sg_event_type_parse(NULL), SG_EV_NONE);
}

Test(action, names_are_the_avro_enum_symbols_in_order)
{
        cr_assert_str_eq(sg_action_name(SG_ACT_PAUSE), "PAUSE");
        cr_assert_str_eq(sg_action_name(SG_ACT_RESUME), "RESUME");
        cr_assert_str_eq(sg_action_name(SG_ACT_BLOCK_SOURCE), "BLOCK_SOURCE");
        cr_assert_str_eq(sg_action_name(SG_ACT_REALLOCATE), "REALLOCATE");
        cr_assert_str_eq(sg_action_name(SG_ACT_ALERT), "ALERT");
}

Test(action, name_of_an_invalid_action_is_printable)
{
        cr_assert_str_eq(sg_action_name(SG_ACT__CNT), "UNKNOWN");
        cr_assert_str_eq(sg_action_name((sg_action_t)-1), "UNKNOWN");
}

Test(action, parse_round_trips_every_name)
{
        int a;

        for (a = 0; a < SG_ACT__CNT; a++)
                cr_assert_eq(sg_action_parse(sg_action_name((sg_action_t)a)), a,
                             "action %d", a);
}

Test(action, parse_rejects_unknown_case_and_null)
{
        cr_assert_eq(sg_action_parse("pause"), -1);
        cr_assert_eq(sg_action_parse("STOP"), -1);
        cr_assert_eq(sg_action_parse(""), -1);
        cr_assert_eq(sg_action_parse(NULL), -1);
}

static const sg_counters_t busy = {
    .impressions = 200000,
    .clicks = 4000,
    .conversions = 80,
    .spend_micros = 60000000,
    .revenue_micros = 210000000,
    .invalid_clicks = 300,
};

Test(ratios, ctr_is_clicks_per_impression)
{
        double v = -1;

        cr_assert_eq(sg_counters_ctr(&busy, &v), 1);
        cr_assert_eq(v, 4000.0 / 200000.0);
}

Test(ratios, cvr_is_conversions_per_click)
{
        double v = -1;

        cr_assert_eq(sg_counters_cvr(&busy, &v), 1);
        cr_assert_eq(v, 0.02);
}

Test(ratios, cpa_is_spend_per_conversion_in_micros)
{
        double v = -1;

        cr_assert_eq(sg_counters_cpa(&busy, &v), 1);
        cr_assert_eq(v, 750000.0);
}

Test(ratios, cpm_is_spend_per_thousand_impressions_in_micros)
{
        double v = -1;

        cr_assert_eq(sg_counters_cpm(&busy, &v), 1);
        cr_assert_eq(v, 300000.0);
}

Test(ratios, roas_is_revenue_per_spend)
{
        double v = -1;

        cr_assert_eq(sg_counters_roas(&busy, &v), 1);
        cr_assert_eq(v, 3.5);
}

Test(ratios, ivt_rate_is_invalid_clicks_per_click)
{
        double v = -1;

        cr_assert_eq(sg_counters_ivt_rate(&busy, &v), 1);
        cr_assert_eq(v, 0.075);
}

Test(ratios, zero_numerator_is_a_defined_zero)
{
        sg_counters_t c = {.impressions = 10, .clicks = 5};
        double v = -1;

        cr_assert_eq(sg_counters_cvr(&c, &v), 1);
        cr_assert_eq(v, 0.0);
}

Test(ratios, negative_counters_are_divided_not_judged)
{
        sg_counters_t c = {.spend_micros = -500, .impressions = 2};
        double v = 0;

        cr_assert_eq(sg_counters_cpm(&c, &v), 1);
        cr_assert_eq(v, -250000.0);
}

Test(ratios, zero_denominator_returns_0_and_leaves_out_alone)
{
        sg_counters_t zero = {0};
        double v = 123.5;

        cr_assert_eq(sg_counters_ctr(&zero, &v), 0);
        cr_assert_eq(sg_counters_cvr(&zero, &v), 0);
        cr_assert_eq(sg_counters_cpa(&zero, &v), 0);
        cr_assert_eq(sg_counters_cpm(&zero, &v), 0);
        cr_assert_eq(sg_counters_roas(&zero, &v), 0);
        cr_assert_eq(sg_counters_ivt_rate(&zero, &v), 0);
        cr_assert_eq(v, 123.5);
}

Test(ratios, each_ratio_checks_its_own_denominator)
{
        /* Clicks but no impressions: CVR and IVT rate exist, CTR not. */
        sg_counters_t c = {.clicks = 4, .invalid_clicks = 1, .conversions = 1};
        double v = 9;

        cr_assert_eq(sg_counters_ctr(&c, &v), 0);
        cr_assert_eq(sg_counters_cpm(&c, &v), 0);
        cr_assert_eq(sg_counters_roas(&c, &v), 0);
        cr_assert_eq(v, 9);
        cr_assert_eq(sg_counters_cvr(&c, &v), 1);
        cr_assert_eq(v, 0.25);
        cr_assert_eq(sg_counters_ivt_rate(&c, &v), 1);
        cr_assert_eq(v, 0.25);
        cr_assert_eq(sg_counters_cpa(&c, &v), 1);
        cr_assert_eq(v, 0.0);
}
