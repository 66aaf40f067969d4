/*
 * Shadow rules (docs/rules.md, "Shadow mode") through sg-rules and sg-sink,
 * fed hand-made snapshots on sg.aggregates: a shadow PAUSE reaches
 * ad-decisions marked as a dry run, its channel's breaker stays closed, no
 * budget moves and no webhook is called for it, while a live PAUSE on the
 * same scope opens its breaker, reallocates and notifies as before; each
 * is counted in its own metric and sg-ctl decisions tells them apart.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "codec.h"
#include "harness.h"

/*
 * The shadow rule first, at a lower threshold: were it to share the live
 * breaker, its PAUSE would open it and the live rule's PAUSE on the same
 * scope would never come.
 */
#define RULES                                                                  \
        "rules:\n"                                                             \
        "  - id: ivt_shadow\n"                                                 \
        "    mode: shadow\n"                                                   \
        "    metric: ivt_rate\n"                                               \
        "    op: \">\"\n"                                                      \
        "    threshold: 0.10\n"                                                \
        "    resume_threshold: 0.05\n"                                         \
        "    cooldown_s: 90\n"                                                 \
        "    min_clicks: 100\n"                                                \
        "    action: PAUSE\n"                                                  \
        "  - id: ivt_live\n"                                                   \
        "    metric: ivt_rate\n"                                               \
        "    op: \">\"\n"                                                      \
        "    threshold: 0.25\n"                                                \
        "    resume_threshold: 0.10\n"                                         \
        "    cooldown_s: 90\n"                                                 \
        "    min_clicks: 100\n"                                                \
        "    action: PAUSE\n"                                                  \
        "  - id: flood_shadow\n"                                               \
        "    mode: shadow\n"                                                   \
        "    scope: source\n"                                                  \
        "    metric: source_clicks\n"                                          \
        "    op: \">\"\n"                                                      \
        "    threshold: 200\n"                                                 \
        "    ttl_s: 600\n"                                                     \
        "    min_clicks: 10\n"                                                 \
        "    action: BLOCK_SOURCE\n"                                           \
        "reallocation:\n"                                                      \
        "  window: 1m\n"                                                       \
        "  every_s: 0\n"                                                       \
        "  on_pause: true\n"

static int rules_port, sink_port;

/* ------------------------------------------------ a webhook that listens */

static struct {
        int fd;
        pthread_t thread;
        pthread_mutex_t lock;
        json_t *bodies; /* what was POSTed, in order */
} hook = {-1, 0, PTHREAD_MUTEX_INITIALIZER, NULL};

/* One POST: headers, Content-Length bytes of body, "200 OK", close. */
static void hook_serve(int c)
{
        char buf[65536];
        size_t off = 0, need = 0;
        char *eoh = NULL;
        ssize_t n;

        while (off < sizeof(buf) - 1) {
                n = read(c, buf + off, sizeof(buf) - 1 - off);
                if (n <= 0)
                        break;
                off += (size_t)n;
                buf[off] = '\0';
                if (!eoh && (eoh = strstr(buf, "\r\n\r\n"))) {
                        const char *cl = strcasestr(buf, "Content-Length:");

                        need = (size_t)(eoh + 4 - buf) +
                               (cl ? strtoul(cl + 15, NULL, 10) : 0);
                }
                if (eoh && off >= need)
                        break;
        }
        if (eoh && off >= need) {
                json_t *o = json_loadb(eoh + 4, need - (size_t)(eoh + 4 - buf),
                                       0, NULL);

                pthread_mutex_lock(&hook.lock);
                json_array_append_new(hook.bodies, o ? o : json_null());
                pthread_mutex_unlock(&hook.lock);
        }
        (void)!write(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 38);
        close(c);
}

static void *hook_run(void *opaque)
{
        int c;

        (void)opaque;
        while ((c = accept(hook.fd, NULL, NULL)) >= 0)
                hook_serve(c);
        return NULL;
}

static int hook_start(void)
{
        struct sockaddr_in a;
        socklen_t len = sizeof(a);
        int one = 1;

        hook.bodies = json_array();
        hook.fd = socket(AF_INET, SOCK_STREAM, 0);
        cr_assert_geq(hook.fd, 0);
        setsockopt(hook.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        cr_assert_eq(bind(hook.fd, (struct sockaddr *)&a, sizeof(a)), 0);
        cr_assert_eq(listen(hook.fd, 16), 0);
        cr_assert_eq(getsockname(hook.fd, (struct sockaddr *)&a, &len), 0);
        cr_assert_eq(pthread_create(&hook.thread, NULL, hook_run, NULL), 0);
        return ntohs(a.sin_port);
}

/* Stops the listener: shutdown() wakes the accept(). */
static void hook_stop(void)
{
        if (hook.fd < 0)
                return;
        shutdown(hook.fd, SHUT_RDWR);
        pthread_join(hook.thread, NULL);
        close(hook.fd);
        hook.fd = -1;
        json_decref(hook.bodies);
        hook.bodies = NULL;
}

/* Waits until a POST of rule rule_id came; returns how many came. */
static size_t hook_wait_rule(const char *rule_id, int ms)
{
        long long deadline = h_now_ms() + ms;

        for (;;) {
                size_t n, i, found = 0;
                json_t *o;

                pthread_mutex_lock(&hook.lock);
                n = json_array_size(hook.bodies);
                json_array_foreach(hook.bodies, i, o)
                {
                        const char *r =
                            json_string_value(json_object_get(o, "rule_id"));

                        if (r && !strcmp(r, rule_id))
                                found = 1;
                }
                pthread_mutex_unlock(&hook.lock);
                if (found)
                        return n;
                cr_assert_lt(h_now_ms(), deadline,
                             "no webhook POST of %s in %d ms (%zu others)",
                             rule_id, ms, n);
                usleep(50000);
        }
}

/* ---------------------------------------------------------------- setup */

static void setup(void)
{
        const char *broker_args[] = {"--partitions", "1", NULL};
        char hook_line[128], rules_env[64], sink_env[64];
        const char *subst[] = {"decision_log_len: 1000", hook_line, NULL};
        const char *renv[] = {rules_env, NULL}, *senv[] = {sink_env, NULL};

        h_init();
        snprintf(hook_line, sizeof(hook_line),
                 "decision_log_len: 1000\n"
                 "  webhook_url: http://127.0.0.1:%d/hook\n"
                 "  webhook_retries: 0",
                 hook_start());
        h_rules_config(RULES, subst);
        /* One partition: decisions reach the sink, and the webhook, in
         * the order rules made them. */
        h_start_infra_args(broker_args);
        rules_port = h_free_port();
        snprintf(rules_env, sizeof(rules_env),
                 "SG_METRICS_LISTEN=127.0.0.1:%d", rules_port);
        h_spawn_env("sg-rules", NULL, renv);
        sink_port = h_free_port();
        snprintf(sink_env, sizeof(sink_env), "SG_METRICS_LISTEN=127.0.0.1:%d",
                 sink_port);
        h_spawn_env("sg-sink", NULL, senv);
}

static void teardown(void)
{
        h_stack_down();
        hook_stop();
}

TestSuite(shadow, .init = setup, .fini = teardown, .timeout = 300);

/* A complete 1m channel snapshot ending at end: 1,000 clicks, invalid of
 * them, ROAS 2; and, unless source is NULL, that top source with
 * source_clicks of them. */
static void snapshot_of(const char *channel, long long end, int invalid,
                        const char *source, int source_clicks)
{
        sg_snapshot_t s;

        h_snapshot_1m(&s, channel, "", end);
        s.c.impressions = 100000;
        s.c.clicks = 1000;
        s.c.invalid_clicks = invalid;
        s.c.spend_micros = 1000000000;
        s.c.revenue_micros = 2000000000;
        if (source) {
                snprintf(s.top[0].source, sizeof(s.top[0].source), "%s",
                         source);
                s.top[0].clicks = source_clicks;
                s.top_cnt = 1;
        }
        h_produce_snapshot(&s);
}

static void snapshot(const char *channel, long long end, int invalid)
{
        snapshot_of(channel, end, invalid, NULL, 0);
}

static void wait_pipeline(void)
{
        cr_assert_eq(h_flush(), 0);
        h_wait_caught_up("rules", "sg.aggregates", 60000);
        h_wait_caught_up("sink", "sg.decisions", 60000);
}

/* Every decision on ad-decisions (at least min), decoded, in order. */
static int decisions(sg_decision_t *d, int max, int min)
{
        rd_kafka_message_t **msgs;
        int n = h_consume_all("ad-decisions", min, 20000, &msgs);

        cr_assert_leq(n, max, "%d decisions on ad-decisions", n);
        for (int i = 0; i < n; i++)
                cr_assert_eq(sg_codec_decode_decision(h_codec(),
                                                      msgs[i]->payload,
                                                      msgs[i]->len, &d[i]),
                             0, "%s", sg_codec_error(h_codec()));
        h_msgs_free(msgs, n);
        return n;
}

/* The one decision of rule, action and channel in d[0..n); fails unless
 * there is exactly one. */
static const sg_decision_t *one(const sg_decision_t *d, int n,
                                const char *rule, sg_action_t action,
                                const char *channel)
{
        const sg_decision_t *found = NULL;

        for (int i = 0; i < n; i++) {
                if (strcmp(d[i].rule_id, rule) || d[i].action != action ||
                    strcmp(d[i].channel, channel))
                        continue;
                cr_assert_null(found, "%s %s of %s twice", rule,
                               sg_action_name(action), channel);
                found = &d[i];
        }
        cr_assert_not_null(found, "no %s %s of %s", rule,
                           sg_action_name(action), channel);
        return found;
}

/* A series of a stage's /metrics, e.g. decisions_total{action="PAUSE",
 * rule="r"} (without prefix and stage label); -1 if absent. */
static double metric(int port, const char *stage, const char *series)
{
        static char text[1 << 20];
        char full[256];

        cr_assert_eq(h_http_get(port, "/metrics", text, sizeof(text)), 200);
        snprintf(full, sizeof(full), "spendguard_%.*s{stage=\"%s\",%s",
                 (int)(strchr(series, '{') - series), series, stage,
                 strchr(series, '{') + 1);
        return h_metric(text, full);
}

/* Polls a series until it is want; fails after ms. */
static void wait_metric(int port, const char *stage, const char *series,
                        double want, int ms)
{
        long long deadline = h_now_ms() + ms;
        double got;

        while ((got = metric(port, stage, series)) != want) {
                cr_assert_lt(h_now_ms(), deadline, "%s %s: %g, want %g", stage,
                             series, got, want);
                usleep(100000);
        }
}

/* `sg-ctl <args>` as an array of JSON lines. */
static json_t *ctl_json(const char *const *args)
{
        static char out[1 << 18];

        cr_assert_eq(h_run("sg-ctl", args, out, sizeof(out)), 0);
        return h_jsonl_text(out);
}

static int is_true(json_t *o, const char *key)
{
        return json_is_true(json_object_get(o, key));
}

Test(shadow, a_shadow_pause_is_a_dry_run_and_leaves_the_breaker_closed)
{
        long long t0 = 1796000000000LL - 1796000000000LL % 60000;
        const char *bargs[] = {"breakers", "--json", NULL};
        const char *dargs[] = {"decisions", "--json", NULL};
        const char *targs[] = {"decisions", NULL};
        static char text[1 << 16];
        sg_decision_t d[16];
        const sg_decision_t *sp, *lp, *ssp, *re;
        char v[256];
        json_t *rows, *o;
        size_t i;
        int n, dry = 0, shadow_lines = 0;

        /* social: ivt 0.15, trips the shadow rule only; search: 0.30,
         * trips both. The next window again: no decision repeats. */
        snapshot("social", t0 + 60000, 150);
        snapshot("search", t0 + 60000, 300);
        snapshot("social", t0 + 120000, 150);
        snapshot("search", t0 + 120000, 300);
        wait_pipeline();

        n = decisions(d, 16, 4);
        cr_assert_eq(n, 4, "want shadow PAUSE social, shadow and live PAUSE "
                           "search, REALLOCATE; got %d",
                     n);
        sp = one(d, n, "ivt_shadow", SG_ACT_PAUSE, "social");
        ssp = one(d, n, "ivt_shadow", SG_ACT_PAUSE, "search");
        lp = one(d, n, "ivt_live", SG_ACT_PAUSE, "search");
        /* Only the live PAUSE reallocates. */
        re = one(d, n, "reallocate", SG_ACT_REALLOCATE, "search");
        cr_assert_eq(sp->dry_run, 1);
        cr_assert_eq(ssp->dry_run, 1);
        cr_assert_eq(lp->dry_run, 0);
        cr_assert_eq(re->dry_run, 0);
        cr_assert_eq(sp->window_end, t0 + 60000);
        cr_assert_eq(lp->window_end, t0 + 60000);
        cr_assert_str_neq(ssp->decision_id, lp->decision_id);
        cr_assert_neq(strstr(sp->reason, "dry run"), NULL, "%s", sp->reason);
        cr_assert_eq(strstr(lp->reason, "dry run"), NULL, "%s", lp->reason);

        /* The breakers: search open by the live rule, social never
         * written (closed), in Redis and in sg-rules' gauge. */
        rows = ctl_json(bargs);
        cr_assert_eq(json_array_size(rows), 1);
        o = json_array_get(rows, 0);
        cr_assert_str_eq(json_string_value(json_object_get(o, "channel")),
                         "search");
        cr_assert_str_eq(json_string_value(json_object_get(o, "state")),
                         "open");
        cr_assert_str_eq(json_string_value(json_object_get(o, "rule")),
                         "ivt_live");
        cr_assert_str_eq(
            json_string_value(json_object_get(o, "decision_id")),
            lp->decision_id);
        json_decref(rows);
        cr_assert_str_eq(h_redis_str(v, sizeof(v), "EXISTS sg:breaker:social"),
                         "0");
        cr_assert_str_eq(h_redis_str(v, sizeof(v), "HGET sg:rstate k|social|"),
                         "");
        cr_assert_eq(metric(rules_port, "rules",
                            "breaker_state{channel=\"social\"}"),
                     0);
        cr_assert_eq(metric(rules_port, "rules",
                            "breaker_state{channel=\"search\"}"),
                     1);

        /* Counted apart, in rules and in the sink. */
        cr_assert_eq(metric(rules_port, "rules",
                            "decisions_shadow_total{action=\"PAUSE\","
                            "rule=\"ivt_shadow\"}"),
                     2);
        cr_assert_eq(metric(rules_port, "rules",
                            "decisions_total{action=\"PAUSE\","
                            "rule=\"ivt_shadow\"}"),
                     -1);
        cr_assert_eq(metric(rules_port, "rules",
                            "decisions_total{action=\"PAUSE\","
                            "rule=\"ivt_live\"}"),
                     1);
        wait_metric(sink_port, "sink",
                    "decisions_shadow_total{action=\"PAUSE\","
                    "rule=\"ivt_shadow\"}",
                    2, 20000);
        cr_assert_eq(metric(sink_port, "sink",
                            "decisions_total{action=\"PAUSE\","
                            "rule=\"ivt_live\"}"),
                     1);
        cr_assert_eq(metric(sink_port, "sink",
                            "decisions_total{action=\"PAUSE\","
                            "rule=\"ivt_shadow\"}"),
                     -1);

        /* The webhook: the live PAUSE only. It was queued after both
         * shadow PAUSEs (one partition, rules in file order), so once it
         * came, they would have come before it. */
        cr_assert_eq(hook_wait_rule("ivt_live", 20000), 1);

        /* sg-ctl decisions: the field in --json, a marker in the table. */
        rows = ctl_json(dargs);
        cr_assert_eq(json_array_size(rows), 4);
        json_array_foreach(rows, i, o)
        {
                const char *rule =
                    json_string_value(json_object_get(o, "rule_id"));

                cr_assert(json_is_boolean(json_object_get(o, "dry_run")));
                cr_assert_eq(is_true(o, "dry_run"),
                             strcmp(rule, "ivt_shadow") == 0, "%s", rule);
                dry += is_true(o, "dry_run");
        }
        cr_assert_eq(dry, 2);
        json_decref(rows);
        cr_assert_eq(h_run("sg-ctl", targs, text, sizeof(text)), 0);
        for (char *line = strtok(text, "\n"); line;
             line = strtok(NULL, "\n")) {
                if (!strstr(line, "SHADOW"))
                        continue;
                cr_assert_neq(strstr(line, "ivt_shadow"), NULL, "%s", line);
                shadow_lines++;
        }
        cr_assert_eq(shadow_lines, 2);

        /* After the cooldown, healthy: the live breaker resumes as it
         * would have without the shadow rule, and the shadow rule's own
         * breakers resume as dry runs. */
        snapshot("social", t0 + 300000, 10);
        snapshot("search", t0 + 300000, 10);
        wait_pipeline();
        n = decisions(d, 16, 7);
        cr_assert_eq(n, 7, "want 3 RESUMEs more, got %d decisions", n);
        cr_assert_eq(one(d, n, "ivt_live", SG_ACT_RESUME, "search")->dry_run,
                     0);
        cr_assert_eq(one(d, n, "ivt_shadow", SG_ACT_RESUME, "search")->dry_run,
                     1);
        cr_assert_eq(one(d, n, "ivt_shadow", SG_ACT_RESUME, "social")->dry_run,
                     1);
        rows = ctl_json(bargs);
        cr_assert_eq(json_array_size(rows), 1);
        cr_assert_str_eq(json_string_value(json_object_get(
                             json_array_get(rows, 0), "state")),
                         "closed");
        json_decref(rows);
        cr_assert_eq(metric(rules_port, "rules",
                            "decisions_shadow_total{action=\"RESUME\","
                            "rule=\"ivt_shadow\"}"),
                     2);
        cr_assert_eq(metric(rules_port, "rules",
                            "decisions_total{action=\"RESUME\","
                            "rule=\"ivt_live\"}"),
                     1);
}

/*
 * A shadow BLOCK_SOURCE blocks nothing: no pre-bid entry (sg:block:*), and
 * the source's clicks stay in the channel's ivt_rate (block before pause
 * nets out live blocks only), so the live PAUSE it would have prevented
 * still comes.
 */
Test(shadow, a_shadow_block_feeds_no_prebid_list_and_nets_nothing_out)
{
        long long t0 = 1796000000000LL - 1796000000000LL % 60000;
        const char *src = "ip:203.0.113.9";
        sg_decision_t d[16];
        const sg_decision_t *blk, *lp;
        char v[256];
        int n;

        /* ivt 0.30, 300 of the clicks from one source, twice. */
        snapshot_of("display", t0 + 60000, 300, src, 300);
        snapshot_of("display", t0 + 120000, 300, src, 300);
        wait_pipeline();
        n = decisions(d, 16, 4);
        cr_assert_eq(n, 4, "want shadow BLOCK_SOURCE, shadow and live PAUSE, "
                           "REALLOCATE; got %d",
                     n);
        blk = one(d, n, "flood_shadow", SG_ACT_BLOCK_SOURCE, "display");
        cr_assert_eq(blk->dry_run, 1);
        cr_assert_str_eq(blk->source, src);
        cr_assert_eq(blk->window_end, t0 + 60000);
        cr_assert_eq(one(d, n, "ivt_shadow", SG_ACT_PAUSE, "display")->dry_run,
                     1);
        lp = one(d, n, "ivt_live", SG_ACT_PAUSE, "display");
        cr_assert_eq(lp->dry_run, 0);
        cr_assert_eq(strstr(lp->reason, "blocked sources"), NULL, "%s",
                     lp->reason);
        cr_assert_eq(one(d, n, "reallocate", SG_ACT_REALLOCATE, "display")
                         ->dry_run,
                     0);
        cr_assert_str_eq(
            h_redis_str(v, sizeof(v), "EXISTS sg:block:display|%s", src), "0");
        cr_assert_str_eq(
            h_redis_str(v, sizeof(v), "HGET sg:rstate b|display|%s", src), "");
        cr_assert_eq(metric(rules_port, "rules",
                            "decisions_shadow_total{action=\"BLOCK_SOURCE\","
                            "rule=\"flood_shadow\"}"),
                     1);
        /* The webhook: the live PAUSE only, queued after both dry runs. */
        cr_assert_eq(hook_wait_rule("ivt_live", 20000), 1);
}
