/*
 * What rules remembers (sg:rstate) is bounded by event time, per channel:
 * blocks and alert latches of sources that flooded once are swept once
 * their channel has moved on, history keeps in Redis the expiry it has in
 * memory, and a channel that lags behind another keeps what it still needs.
 * sg-rules alone, fed hand-made snapshots on sg.aggregates.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>

#include "codec.h"
#include "harness.h"

#define RULES                                                                  \
        "rules:\n"                                                             \
        "  - id: flood_block\n"                                                \
        "    scope: source\n"                                                  \
        "    source_kind: ip\n"                                                \
        "    window: 1m\n"                                                     \
        "    metric: source_clicks\n"                                          \
        "    op: \">\"\n"                                                      \
        "    threshold: 10\n"                                                  \
        "    ttl_s: 60\n"                                                      \
        "    min_clicks: 10\n"                                                 \
        "    action: BLOCK_SOURCE\n"                                           \
        "  - id: camp_alert\n"                                                 \
        "    scope: campaign\n"                                                \
        "    window: 1m\n"                                                     \
        "    metric: ctr\n"                                                    \
        "    op: \"<\"\n"                                                      \
        "    threshold: 0.01\n"                                                \
        "    min_impressions: 1\n"                                             \
        "    action: ALERT\n"                                                  \
        "  - id: ctr_hist\n"                                                   \
        "    scope: channel\n"                                                 \
        "    window: 1m\n"                                                     \
        "    metric: ctr\n"                                                    \
        "    op: \"<\"\n"                                                      \
        "    threshold: 0.01\n"                                                \
        "    for_windows: 3\n"                                                 \
        "    min_impressions: 1\n"                                             \
        "    action: ALERT\n"

static void setup(void)
{
        char path[512], rules[600];
        const char *subst[] = {"file: rules.yaml", rules, NULL};
        FILE *out;

        h_init();
        snprintf(path, sizeof(path), "%s/rules.yaml", H.dir);
        out = fopen(path, "w");
        cr_assert_not_null(out);
        fputs(RULES, out);
        fclose(out);
        snprintf(rules, sizeof(rules), "file: %s", path);
        h_config(subst, NULL);
        h_start_infra();
        h_spawn("sg-rules", NULL);
}

TestSuite(rstate, .init = setup, .fini = h_stack_down, .timeout = 300);

/* A rolling 1m snapshot ending at end, CTR 0.1%: of the channel, with
 * nsrc sources ip:<tag>.<i> of 50 clicks each, or of campaign. */
static void snapshot(const char *channel, const char *campaign, long long end,
                     const char *tag, int nsrc)
{
        sg_snapshot_t s;

        h_snapshot_1m(&s, channel, campaign, end);
        s.c.impressions = 100000;
        s.c.clicks = 100;
        s.c.spend_micros = 1000000;
        s.top_cnt = nsrc;
        for (int i = 0; i < nsrc; i++) {
                snprintf(s.top[i].source, sizeof(s.top[i].source),
                         "ip:%s.%d", tag, i);
                s.top[i].clicks = 50;
        }
        h_produce_snapshot(&s);
}

/* HGET sg:rstate field: the value, "" when absent. */
static const char *rstate(const char *field, char *out, size_t size)
{
        redisContext *c = redisConnectUnix(H.redis_sock);
        redisReply *r;

        cr_assert(c && !c->err);
        r = redisCommand(c, "HGET sg:rstate %s", field);
        cr_assert_not_null(r);
        snprintf(out, size, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
        freeReplyObject(r);
        redisFree(c);
        return out;
}

/*
 * x (10 blocks + a campaign latch + history) = 5,760 entries, produced in
 * chunks of 60 windows, each consumed before the next: rules sweeps after
 * a batch once it remembers 4,096 entries, so the seventh chunk's batch
 * sweeps, whatever the batch sizes.
 */
#define WINDOWS 480
#define CHUNK   60

Test(rstate, flooding_sources_are_swept_per_channel_and_history_keeps_its_expiry)
{
        long long t0 = 1796000000000LL - 1796000000000LL % 60000;
        char field[256], v[256], want[256];
        long long last = t0 + WINDOWS * 60000LL;

        /* A channel that stays behind: one window, three flooding IPs. */
        snapshot("slow", "", t0 + 60000, "9.9.9", 3);
        snapshot("slow", "s1", t0 + 60000, "", 0);
        cr_assert_eq(h_flush(), 0);
        h_wait_caught_up("rules", "sg.aggregates", 60000);
        /* A busy channel: every window ten new flooding IPs. */
        for (int w = 1; w <= WINDOWS; w++) {
                char tag[32], camp[32];

                snprintf(tag, sizeof(tag), "10.%d.%d", w / 256, w % 256);
                snprintf(camp, sizeof(camp), "c%d", w);
                snapshot("busy", "", t0 + w * 60000LL, tag, 10);
                snapshot("busy", camp, t0 + w * 60000LL, "", 0);
                if (w % CHUNK == 0) {
                        cr_assert_eq(h_flush(), 0);
                        h_wait_caught_up("rules", "sg.aggregates", 60000);
                }
        }

        /* The busy channel's first source, blocked until +60 s of event
         * time, and its first campaign, alerted once (its latch kept an
         * hour of event time): swept long since. */
        cr_assert_str_eq(rstate("b|busy|ip:10.0.1.0", v, sizeof(v)), "",
                         "block of a source 479 windows ago still kept: %s",
                         v);
        cr_assert_str_eq(rstate("l|camp_alert|busy|c1|", v, sizeof(v)), "",
                         "alert latch of a campaign 479 windows ago still "
                         "kept: %s",
                         v);
        /* Its last sources are kept, with their event-time expiry: the
         * block's end, an hour after the latch's window. */
        snprintf(field, sizeof(field), "b|busy|ip:10.%d.%d.9", WINDOWS / 256,
                 WINDOWS % 256);
        rstate(field, v, sizeof(v));
        snprintf(want, sizeof(want), "%lld %lld 60000 ", last + 60000,
                 last + 60000);
        cr_assert_eq(strncmp(v, want, strlen(want)), 0, "%s: \"%s\"", field,
                     v);
        snprintf(field, sizeof(field), "l|camp_alert|busy|c%d|", WINDOWS);
        snprintf(want, sizeof(want), "%lld 1 %lld", last + 3600000, last);
        cr_assert_str_eq(rstate(field, v, sizeof(v)), want, "%s", field);

        /* History: in Redis the expiry it has in memory, the window end
         * plus what the rule looks back (3 windows). */
        snprintf(field, sizeof(field), "h|ctr_hist|busy|||%lld", last);
        rstate(field, v, sizeof(v));
        snprintf(want, sizeof(want), "%lld 1 ", last + 180000);
        cr_assert_eq(strncmp(v, want, strlen(want)), 0, "%s: \"%s\"", field,
                     v);

        /* The slow channel has not moved on: it keeps everything. */
        snprintf(field, sizeof(field), "h|ctr_hist|slow|||%lld", t0 + 60000);
        snprintf(want, sizeof(want), "%lld 1 ", t0 + 240000);
        rstate(field, v, sizeof(v));
        cr_assert_eq(strncmp(v, want, strlen(want)), 0,
                     "%s: \"%s\" (swept by another channel's time?)", field,
                     v);
        cr_assert_neq(rstate("b|slow|ip:9.9.9.0", v, sizeof(v))[0], '\0');
        cr_assert_neq(rstate("l|camp_alert|slow|s1|", v, sizeof(v))[0], '\0');
}
