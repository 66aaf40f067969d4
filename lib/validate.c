#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "validate.h"

static int bad_name(const char *s)
{
        for (; *s; s++)
                if (*s == '|' || (unsigned char)*s < 0x20 || *s == 0x7f)
                        return 1;
        return 0;
}

#define REJECT(code, ...)                                                      \
        do {                                                                   \
                *reason = code;                                                \
                snprintf(detail, detail_size, __VA_ARGS__);                    \
                return -1;                                                     \
        } while (0)

int sg_validate_event(const sg_event_t *ev, const sg_validate_conf_t *vc,
                      int64_t now_ms, const char **reason, char *detail,
                      size_t detail_size)
{
        int64_t money =
            ev->type == SG_EV_CONVERSION ? ev->revenue_micros : ev->cost_micros;
        const char *money_field =
            ev->type == SG_EV_CONVERSION ? "revenue_micros" : "cost_micros";

        if (ev->event_id[0] == '\0')
                REJECT(SG_ERR_BAD_VALUE, "field=event_id empty");
        if (ev->channel[0] == '\0')
                REJECT(SG_ERR_BAD_VALUE, "field=channel empty");
        if (ev->campaign_id[0] == '\0')
                REJECT(SG_ERR_BAD_VALUE, "field=campaign_id empty");
        if (bad_name(ev->channel))
                REJECT(SG_ERR_BAD_VALUE,
                       "field=channel contains '|' or a control byte");
        if (bad_name(ev->campaign_id))
                REJECT(SG_ERR_BAD_VALUE,
                       "field=campaign_id contains '|' or a control byte");
        if (money < 0)
                REJECT(SG_ERR_BAD_VALUE, "field=%s negative (%" PRId64 ")",
                       money_field, money);
        if (money > vc->max_money_micros)
                REJECT(SG_ERR_BAD_VALUE,
                       "field=%s %" PRId64 " above the ceiling %" PRId64,
                       money_field, money, vc->max_money_micros);
        if (ev->event_time <= 0)
                REJECT(SG_ERR_BAD_VALUE,
                       "field=event_time %" PRId64
                       " not a positive epoch time in ms",
                       ev->event_time);
        if (ev->event_time > now_ms + vc->future_tolerance_ms)
                REJECT(SG_ERR_FUTURE_TIME,
                       "field=event_time %" PRId64 " is %" PRId64
                       " ms ahead of the clock (tolerance %" PRId64 " ms)",
                       ev->event_time, ev->event_time - now_ms,
                       vc->future_tolerance_ms);
        if (vc->too_old_ms > 0 && ev->event_time < now_ms - vc->too_old_ms)
                REJECT(SG_ERR_TOO_OLD,
                       "field=event_time %" PRId64 " is %" PRId64
                       " ms behind the clock (limit %" PRId64 " ms)",
                       ev->event_time, now_ms - ev->event_time, vc->too_old_ms);
        if (ev->has_ip && ev->ip[0]) {
                unsigned char addr[16];

                if (inet_pton(AF_INET, ev->ip, addr) != 1 &&
                    inet_pton(AF_INET6, ev->ip, addr) != 1)
                        REJECT(SG_ERR_BAD_VALUE,
                               "field=ip \"%s\" is not an IPv4 or IPv6 "
                               "address",
                               ev->ip);
        }
        return 0;
}

static void normalize_name(char *s)
{
        size_t n = strlen(s), start = 0;

        while (start < n && isspace((unsigned char)s[start]))
                start++;
        while (n > start && isspace((unsigned char)s[n - 1]))
                n--;
        for (size_t i = start; i < n; i++)
                s[i - start] = (char)tolower((unsigned char)s[i]);
        s[n - start] = '\0';
}

void sg_validate_normalize(sg_event_t *ev)
{
        normalize_name(ev->channel);
        normalize_name(ev->campaign_id);
}
