#include <string.h>

#include <criterion/criterion.h>

#include "codec.h"
#include "validate.h"

#define NOW 1700000000000LL

static const sg_validate_conf_t vc = {300000, 1000000000000LL, 86400000};

static sg_event_t click(void)
{
        sg_event_t ev;

        memset(&ev, 0, sizeof(ev));
        ev.type = SG_EV_CLICK;
        strcpy(ev.event_id, "e1");
        ev.event_time = NOW - 1000;
        strcpy(ev.channel, "social");
        strcpy(ev.campaign_id, "c1");
        ev.cost_micros = 250000;
        return ev;
}

static void expect_reject(const sg_event_t *ev, const char *code,
                          const char *detail_part)
{
        const char *reason = NULL;
        char detail[256] = "";

        cr_assert_eq(
            sg_validate_event(ev, &vc, NOW, &reason, detail, sizeof(detail)),
            -1);
        cr_assert_str_eq(reason, code);
        cr_assert_not_null(strstr(detail, detail_part), "detail: %s", detail);
}

Test(validate, accepts_a_well_formed_click)
{
        sg_event_t ev = click();
        const char *reason = NULL;
        char detail[256];

        cr_assert_eq(
            sg_validate_event(&ev, &vc, NOW, &reason, detail, sizeof(detail)),
            0);
}

Test(validate, rejects_click_with_negative_cost)
{
        sg_event_t ev = click();

        ev.cost_micros = -1;
        expect_reject(&ev, SG_ERR_BAD_VALUE, "field=cost_micros negative");
}

Test(validate, rejects_conversion_with_negative_revenue)
{
        sg_event_t ev = click();

        ev.type = SG_EV_CONVERSION;
        ev.cost_micros = 0;
        ev.revenue_micros = -5;
        expect_reject(&ev, SG_ERR_BAD_VALUE, "field=revenue_micros negative");
}

Test(validate, rejects_absurd_amount_above_the_ceiling)
{
        sg_event_t ev = click();

        ev.cost_micros = 1000000000001LL;
        expect_reject(&ev, SG_ERR_BAD_VALUE, "above the ceiling");
}

Test(validate, rejects_empty_ids)
{
        sg_event_t ev = click();

        ev.event_id[0] = '\0';
        expect_reject(&ev, SG_ERR_BAD_VALUE, "field=event_id empty");
        ev = click();
        ev.channel[0] = '\0';
        expect_reject(&ev, SG_ERR_BAD_VALUE, "field=channel empty");
        ev = click();
        ev.campaign_id[0] = '\0';
        expect_reject(&ev, SG_ERR_BAD_VALUE, "field=campaign_id empty");
}

Test(validate, rejects_scope_separator_in_names)
{
        sg_event_t ev = click();

        strcpy(ev.channel, "soc|ial");
        expect_reject(&ev, SG_ERR_BAD_VALUE, "field=channel");
        ev = click();
        strcpy(ev.campaign_id, "c\n1");
        expect_reject(&ev, SG_ERR_BAD_VALUE, "field=campaign_id");
}

Test(validate, rejects_event_time_beyond_tolerance_as_future_time)
{
        sg_event_t ev = click();

        ev.event_time = NOW + 300001;
        expect_reject(&ev, SG_ERR_FUTURE_TIME, "ahead of the clock");
        ev.event_time = NOW + 300000;
        {
                const char *reason = NULL;
                char d[256];
                cr_assert_eq(
                    sg_validate_event(&ev, &vc, NOW, &reason, d, sizeof(d)), 0);
        }
}

Test(validate, rejects_non_positive_event_time)
{
        sg_event_t ev = click();

        ev.event_time = 0;
        expect_reject(&ev, SG_ERR_BAD_VALUE, "field=event_time");
}

Test(validate, rejects_unparsable_ip_and_accepts_v4_and_v6)
{
        sg_event_t ev = click();
        const char *reason;
        char d[256];

        ev.has_ip = 1;
        strcpy(ev.ip, "300.1.1.1");
        expect_reject(&ev, SG_ERR_BAD_VALUE, "field=ip");
        strcpy(ev.ip, "192.0.2.7");
        cr_assert_eq(sg_validate_event(&ev, &vc, NOW, &reason, d, sizeof(d)),
                     0);
        strcpy(ev.ip, "2001:db8::1");
        cr_assert_eq(sg_validate_event(&ev, &vc, NOW, &reason, d, sizeof(d)),
                     0);
}

Test(validate, rejects_event_time_older_than_the_limit_as_too_old)
{
        sg_event_t ev = click();

        ev.event_time = NOW - 86400001;
        expect_reject(&ev, SG_ERR_TOO_OLD, "behind the clock");
}

Test(validate, too_old_check_is_off_at_zero)
{
        sg_validate_conf_t off = vc;
        sg_event_t ev = click();
        const char *reason = NULL;
        char d[256];

        off.too_old_ms = 0;
        ev.event_time = 1;
        cr_assert_eq(sg_validate_event(&ev, &off, NOW, &reason, d, sizeof(d)),
                     0);
}

Test(validate, normalize_trims_and_lower_cases_channel_and_campaign)
{
        sg_event_t ev = click();

        strcpy(ev.channel, "  Social\t");
        strcpy(ev.campaign_id, " Spring-SALE ");
        sg_validate_normalize(&ev);
        cr_assert_str_eq(ev.channel, "social");
        cr_assert_str_eq(ev.campaign_id, "spring-sale");
        strcpy(ev.channel, "   ");
        sg_validate_normalize(&ev);
        cr_assert_str_eq(ev.channel, "");
}
