/*
 * The rules and the sink through the real stack (sg-broker, redis-server,
 * the four stages, sg-gen scenarios): a bot wave trips a channel's breaker
 * and, after the cooldown and clean traffic, resumes it exactly once; a
 * click flood from a few IPs blocks those IPs and leaves the channel
 * running, even when its clicks are tagged invalid (block before pause),
 * while a wave spread over many IPs pauses its channel; a CPA overrun pauses only the overrunning campaign;
 * reallocations preserve the total and the reserve within the step; and
 * SIGKILLed rules and sink stages duplicate no decision on ad-decisions.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "codec.h"
#include "harness.h"

/* The shipped config with absolute paths and the rules file given ("" =
 * the shipped one). */
static void write_config(const char *rules_yaml)
{
        char path[512], rules[600];
        /* A short session: a SIGKILLed member leaves the group in seconds,
         * not the default 45. */
        const char *subst[] = {"kafka:",
                               "kafka:\n"
                               "  session.timeout.ms: 6000\n"
                               "  heartbeat.interval.ms: 500",
                               "file: rules.yaml", rules, NULL};
        FILE *out;

        if (!rules_yaml[0]) {
                subst[2] = NULL; /* the shipped config/rules.yaml */
                h_config(subst, NULL);
                return;
        }
        snprintf(path, sizeof(path), "%s/rules.yaml", H.dir);
        out = fopen(path, "w");
        cr_assert_not_null(out);
        fputs(rules_yaml, out);
        fclose(out);
        snprintf(rules, sizeof(rules), "file: %s", path);
        h_config(subst, NULL);
}

static void setup(void)
{
        h_init();
        h_start_infra();
}

TestSuite(rules, .init = setup, .fini = h_stack_down, .timeout = 600);

static sg_codec_t *codec(void)
{
        char schemas[512], err[256];
        sg_codec_t *c = sg_codec_new(h_src("schemas", schemas, sizeof(schemas)),
                                     err, sizeof(err));

        cr_assert_not_null(c, "%s", err);
        return c;
}

/* Runs sg-gen to completion with args, waits until every stage consumed
 * everything, and returns the truth rows. */
static json_t *run_scenario(const char *const *args)
{
        char truth_path[512], why[512] = "";
        const char *argv[40];
        int n = 0;
        json_t *truth, *kpis;

        snprintf(truth_path, sizeof(truth_path), "%s/truth.jsonl", H.dir);
        for (; args[n]; n++)
                argv[n] = args[n];
        argv[n++] = "--truth";
        argv[n++] = truth_path;
        argv[n] = NULL;
        cr_assert_eq(h_run("sg-gen", argv, NULL, 0), 0,
                     "sg-gen failed (log: %s/sg-gen.log)", H.dir);
        truth = h_jsonl_file(truth_path);
        kpis = h_kpis_wait(truth, NULL, 180000, why, sizeof(why));
        cr_assert(kpis, "KPIs never matched the truth: %s (logs in %s)", why,
                  H.dir);
        json_decref(kpis);
        return truth;
}

static void wait_pipeline(void)
{
        h_wait_caught_up("aggregate", "sg.events", 90000);
        h_wait_caught_up("rules", "sg.aggregates", 90000);
        h_wait_caught_up("sink", "sg.decisions", 90000);
}

/* Every decision on ad-decisions, decoded; asserts no id twice. */
static int decisions(sg_decision_t **out, int min)
{
        rd_kafka_message_t **msgs;
        sg_codec_t *c = codec();
        int n = h_consume_all("ad-decisions", min, 20000, &msgs);
        sg_decision_t *d = calloc((size_t)(n ? n : 1), sizeof(*d));

        for (int i = 0; i < n; i++) {
                cr_assert_eq(sg_codec_decode_decision(c, msgs[i]->payload,
                                                      msgs[i]->len, &d[i]),
                             0, "%s", sg_codec_error(c));
                for (int j = 0; j < i; j++)
                        cr_assert_str_neq(d[i].decision_id, d[j].decision_id,
                                          "decision %s (%s %s) delivered "
                                          "twice",
                                          d[i].decision_id,
                                          sg_action_name(d[i].action),
                                          d[i].channel);
        }
        h_msgs_free(msgs, n);
        sg_codec_destroy(c);
        *out = d;
        return n;
}

static void dump(const sg_decision_t *d, int n)
{
        for (int i = 0; i < n; i++)
                fprintf(stderr, "  %s %s %s/%s %s [%lld] %s\n",
                        sg_action_name(d[i].action), d[i].rule_id, d[i].channel,
                        d[i].campaign_id, d[i].source,
                        (long long)d[i].window_end, d[i].reason);
}

static const char ivt_rules[] = "rules:\n"
                                "  - id: ivt_circuit_breaker\n"
                                "    metric: ivt_rate\n"
                                "    op: \">\"\n"
                                "    threshold: 0.25\n"
                                "    resume_threshold: 0.10\n"
                                "    cooldown_s: 90\n"
                                "    min_clicks: 100\n"
                                "    action: PAUSE\n";

Test(rules, bot_wave_pauses_the_channel_and_resumes_it_exactly_once)
{
        const char *args[] = {"--seed",
                              "3",
                              "--duration",
                              "300",
                              "--fraud-channel",
                              "kol",
                              "--fraud-start",
                              "20",
                              "--fraud-end",
                              "60",
                              "--overrun-channel",
                              "",
                              "--rate",
                              "5000",
                              NULL};
        const char *bargs[] = {"breakers", "--json", NULL};
        static char out[65536];
        sg_decision_t *d;
        json_t *truth, *rows;
        int n;

        write_config(ivt_rules);
        h_start_stages();
        truth = run_scenario(args);
        wait_pipeline();
        n = decisions(&d, 2);
        if (n != 2 || d[1].action != SG_ACT_RESUME)
                dump(d, n);
        cr_assert_eq(n, 2, "decisions: want 2 (PAUSE, RESUME of kol), got %d",
                     n);
        cr_assert_eq(d[0].action, SG_ACT_PAUSE);
        cr_assert_str_eq(d[0].channel, "kol");
        cr_assert_str_eq(d[0].rule_id, "ivt_circuit_breaker");
        cr_assert_eq(d[1].action, SG_ACT_RESUME);
        cr_assert_str_eq(d[1].channel, "kol");
        cr_assert_str_eq(d[1].campaign_id, "");
        /* The resumed window starts after the cooldown (90 s of event
         * time). The wave (seconds 20-60) trips the breaker at a window
         * ending at second 40 or later, so when it half-opens (second 130
         * or later) the wave has left the window: no second PAUSE. */
        cr_assert_geq(d[1].window_start, d[0].window_end + 90000);
        cr_assert_neq(strstr(d[1].reason, "resume: ivt_rate"), NULL, "%s",
                      d[1].reason);
        cr_assert_eq(h_run("sg-ctl", bargs, out, sizeof(out)), 0);
        rows = h_jsonl_text(out);
        cr_assert_eq(json_array_size(rows), 1, "%s", out);
        cr_assert_str_eq(json_string_value(
                             json_object_get(json_array_get(rows, 0), "state")),
                         "closed");
        json_decref(rows);
        free(d);
        json_decref(truth);
}

/* The value of metric name in d, or -1 when d has none. */
static double metric_of(const sg_decision_t *d, const char *name)
{
        for (int i = 0; i < d->metric_cnt; i++)
                if (strcmp(d->metrics[i].name, name) == 0)
                        return d->metrics[i].value;
        return -1;
}

/*
 * Live traffic at the shipped config (1m windows, 30 s lateness): kol's
 * bot wave is paused on a running window, before the watermark completed
 * it (metric running = 1, window_end beyond the watermark), once; gifts'
 * CPA overrun, if its complete window comes within the run, is paused on
 * that, never on a running one (a conversion-lagged metric waits).
 */
Test(rules, a_live_bot_wave_trips_on_the_running_window_cpa_waits)
{
        const char *args[] = {"--seed",          "11",    "--realtime",
                              "--duration",      "50",    "--fraud-channel",
                              "kol",             "--fraud-start", "5",
                              "--overrun-channel", "gifts", NULL};
        sg_decision_t *d;
        json_t *truth;
        int n, kol = 0, gifts = 0;

        write_config("");
        h_start_stages();
        truth = run_scenario(args);
        wait_pipeline();
        n = decisions(&d, 1);
        dump(d, n);
        for (int i = 0; i < n; i++) {
                if (d[i].action != SG_ACT_PAUSE || d[i].campaign_id[0])
                        continue;
                if (strcmp(d[i].channel, "kol") == 0) {
                        kol++;
                        cr_assert_str_eq(d[i].rule_id, "ivt_circuit_breaker");
                        cr_assert_eq(metric_of(&d[i], "running"), 1,
                                     "kol paused on a complete window: %s",
                                     d[i].reason);
                        cr_assert(strstr(d[i].reason, "running window"),
                                  "%s", d[i].reason);
                } else if (strcmp(d[i].channel, "gifts") == 0) {
                        gifts++;
                        cr_assert_str_eq(d[i].rule_id, "cpa_overrun");
                        cr_assert_eq(metric_of(&d[i], "running"), -1,
                                     "gifts paused on a running window: %s",
                                     d[i].reason);
                } else {
                        cr_assert_fail("a healthy channel paused: %s %s",
                                       d[i].channel, d[i].reason);
                }
        }
        cr_assert_eq(kol, 1, "kol PAUSEs: want 1, got %d", kol);
        cr_assert_leq(gifts, 1, "gifts PAUSEs: want at most 1, got %d", gifts);
        free(d);
        json_decref(truth);
}

Test(rules, cpa_overrun_pauses_only_the_overrunning_campaign)
{
        const char *args[] = {"--seed",
                              "4",
                              "--duration",
                              "120",
                              "--fraud-channel",
                              "",
                              "--overrun-channel",
                              "",
                              "--overrun-campaign",
                              "social",
                              "--rate",
                              "5000",
                              NULL};
        static const char cpa_rules[] =
            "rules:\n"
            "  - {id: cpa_overrun, metric: cpa, op: \">\", target_factor: "
            "1.3, min_clicks: 100, min_spend_micros: 50000000, action: "
            "PAUSE}\n"
            "  - {id: campaign_cpa_overrun, scope: campaign, metric: cpa, "
            "op: \">\", target_factor: 1.3, min_clicks: 100, "
            "min_spend_micros: 50000000, action: PAUSE}\n";
        sg_decision_t *d;
        json_t *truth;
        int n;

        write_config(cpa_rules);
        h_start_stages();
        truth = run_scenario(args);
        wait_pipeline();
        n = decisions(&d, 1);
        if (n != 1)
                dump(d, n);
        cr_assert_eq(n, 1, "decisions: want 1, got %d", n);
        cr_assert_eq(d[0].action, SG_ACT_PAUSE);
        cr_assert_str_eq(d[0].rule_id, "campaign_cpa_overrun");
        cr_assert_str_eq(d[0].channel, "social");
        cr_assert_str_eq(d[0].campaign_id, "social-c1");
        free(d);
        json_decref(truth);
}

/* The IP flood's sources from the truth's roles line: want of them. */
static json_t *flood_sources(json_t *truth, size_t want)
{
        json_t *sources = NULL, *row;
        size_t i;

        json_array_foreach(truth, i, row)
        {
                json_t *roles = json_object_get(row, "roles");
                if (roles)
                        sources = json_object_get(roles, "flood_sources");
        }
        cr_assert_not_null(sources, "no flood sources in the truth");
        cr_assert_eq(json_array_size(sources), want);
        return sources;
}

/* source is one of the flood's, once. */
static void assert_flood_source(json_t *sources, const char *source)
{
        json_t *row;
        size_t i;
        int found = 0;

        json_array_foreach(sources, i, row) found +=
            strcmp(json_string_value(row), source) == 0;
        cr_assert_eq(found, 1, "blocked %s, not a flood IP", source);
}

Test(rules, click_flood_from_few_ips_blocks_them_and_keeps_the_channel)
{
        const char *args[] = {"--seed",
                              "5",
                              "--duration",
                              "150",
                              "--fraud-channel",
                              "",
                              "--overrun-channel",
                              "",
                              "--flood-channel",
                              "search",
                              "--flood-ips",
                              "3",
                              "--flood-rate",
                              "10",
                              "--rate",
                              "5000",
                              NULL};
        const char *bargs[] = {"breakers", "--json", NULL};
        static char out[65536];
        sg_decision_t *d;
        json_t *truth, *sources, *rows;
        int n;

        write_config("");
        h_start_stages();
        truth = run_scenario(args);
        sources = flood_sources(truth, 3);
        wait_pipeline();
        n = decisions(&d, 3);
        if (n != 3)
                dump(d, n);
        cr_assert_eq(n, 3, "decisions: want 3 BLOCK_SOURCE, got %d", n);
        for (int k = 0; k < n; k++) {
                cr_assert_eq(d[k].action, SG_ACT_BLOCK_SOURCE);
                cr_assert_str_eq(d[k].channel, "search");
                /* At 16.7% of search's clicks each, long before 100 a
                 * minute. */
                cr_assert_str_eq(d[k].rule_id, "click_share_ip");
                assert_flood_source(sources, d[k].source);
        }
        /* The channel keeps running: no breaker anywhere. */
        cr_assert_eq(h_run("sg-ctl", bargs, out, sizeof(out)), 0);
        rows = h_jsonl_text(out);
        cr_assert_eq(json_array_size(rows), 0, "%s", out);
        json_decref(rows);
        free(d);
        json_decref(truth);
}

/* Block before pause (docs/rules.md): an invalid flood from 3 IPs, 28% of
 * search's clicks, is blocked by source and search keeps running; kol's bot
 * wave, half of it spread over 500 IPs, pauses kol once its 4 hosts are
 * blocked too. */
Test(rules, a_concentrated_flood_is_blocked_a_spread_wave_pauses)
{
        const char *args[] = {"--seed",          "5",
                              "--duration",      "150",
                              "--overrun-channel", "",
                              "--flood-channel", "search",
                              "--flood-ips",     "3",
                              "--flood-rate",    "4",
                              "--flood-invalid", "--rate",
                              "5000",            NULL};
        sg_decision_t *d;
        json_t *truth, *sources;
        int n, search_blocks = 0, kol_blocks = 0, kol_pauses = 0, other = 0;

        write_config("");
        h_start_stages();
        truth = run_scenario(args);
        sources = flood_sources(truth, 3);
        wait_pipeline();
        n = decisions(&d, 8);
        for (int k = 0; k < n; k++) {
                int blocks = d[k].action == SG_ACT_BLOCK_SOURCE;

                if (blocks && !strcmp(d[k].channel, "search")) {
                        assert_flood_source(sources, d[k].source);
                        cr_assert_str_eq(d[k].rule_id, "click_share_ip");
                        search_blocks++;
                } else if (blocks && !strcmp(d[k].channel, "kol")) {
                        cr_assert_str_eq(d[k].rule_id, "click_share_ip");
                        kol_blocks++;
                } else if (d[k].action == SG_ACT_PAUSE &&
                           !strcmp(d[k].channel, "kol")) {
                        cr_assert_str_eq(d[k].rule_id, "ivt_circuit_breaker");
                        kol_pauses++;
                } else if (d[k].action != SG_ACT_REALLOCATE) {
                        other++;
                }
        }
        if (search_blocks != 3 || kol_blocks != 4 || kol_pauses != 1 || other)
                dump(d, n);
        cr_assert_eq(search_blocks, 3);
        cr_assert_eq(kol_blocks, 4);
        cr_assert_eq(kol_pauses, 1);
        cr_assert_eq(other, 0, "a decision other than kol's pause and the "
                               "blocks (search paused?)");
        free(d);
        json_decref(truth);
}

/* SIGKILL, reap, start again. */
static pid_t restart(pid_t pid, const char *name)
{
        int status;

        kill(pid, SIGKILL);
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        for (int i = 0; i < H.proc_cnt; i++)
                if (H.procs[i].pid == pid)
                        H.procs[i].pid = 0;
        return h_spawn(name, NULL);
}

Test(rules, killed_rules_and_sink_duplicate_no_decision_and_realloc_holds)
{
        char truth_path[512], why[512] = "";
        const char *args[] = {"--seed",  "8",        "--duration",
                              "180",     "--rate",   "2500",
                              "--truth", truth_path, NULL};
        const char *dargs[] = {"decisions", "--json", NULL};
        const char *budget_args[] = {"budgets", "--json", NULL};
        static char out[65536];
        pid_t rules, sink, gen;
        sg_decision_t *d;
        json_t *truth, *kpis, *rows;
        long long deadline;
        int n, pauses = 0, reallocs = 0, kills = 0;

        write_config("");
        h_spawn("sg-ingest", NULL);
        h_spawn("sg-aggregate", NULL);
        rules = h_spawn("sg-rules", NULL);
        sink = h_spawn("sg-sink", NULL);
        snprintf(truth_path, sizeof(truth_path), "%s/truth.jsonl", H.dir);
        gen = h_spawn("sg-gen", args);

        /* Kill both as soon as the first decision is delivered, and twice
         * more a few seconds apart while the scenario runs. */
        deadline = h_now_ms() + 120000;
        for (;;) {
                cr_assert_eq(h_run("sg-ctl", dargs, out, sizeof(out)), 0);
                if (out[0] || h_now_ms() > deadline)
                        break;
                usleep(200 * 1000);
        }
        cr_assert_neq(out[0], '\0', "no decision within 120 s (logs in %s)",
                      H.dir);
        for (; kills < 3; kills++) {
                rules = restart(rules, "sg-rules");
                sink = restart(sink, "sg-sink");
                usleep(3000 * 1000);
        }
        (void)rules;
        (void)sink;
        cr_assert_eq(h_wait(gen, 300000), 0, "sg-gen failed (log: %s)", H.dir);
        truth = h_jsonl_file(truth_path);
        kpis = h_kpis_wait(truth, NULL, 180000, why, sizeof(why));
        cr_assert(kpis, "KPIs never matched the truth: %s (logs in %s)", why,
                  H.dir);
        json_decref(kpis);
        wait_pipeline();

        n = decisions(&d, 6);
        for (int i = 0; i < n; i++) {
                /* Each trigger once: the same (action, rule, scope,
                 * source) twice would be a duplicate under a new id. */
                for (int j = 0; j < i; j++)
                        cr_assert(
                            d[i].action != d[j].action ||
                                strcmp(d[i].rule_id, d[j].rule_id) ||
                                strcmp(d[i].channel, d[j].channel) ||
                                strcmp(d[i].campaign_id, d[j].campaign_id) ||
                                strcmp(d[i].source, d[j].source),
                            "%s %s %s/%s twice", sg_action_name(d[i].action),
                            d[i].rule_id, d[i].channel, d[i].campaign_id);
                if (d[i].action == SG_ACT_PAUSE)
                        pauses++;
                if (d[i].action == SG_ACT_BLOCK_SOURCE)
                        cr_assert_str_eq(d[i].channel, "kol");
                if (d[i].action != SG_ACT_REALLOCATE)
                        continue;
                reallocs++;
                {
                        /* Total preserved, reserve kept, step respected. */
                        int64_t total = 0, before_total = 0;
                        int64_t reserve_before = -1;

                        for (int k = 0; k < d[i].metric_cnt; k++) {
                                if (!strcmp(d[i].metrics[k].name,
                                            "reserve_before"))
                                        reserve_before =
                                            (int64_t)d[i].metrics[k].value;
                                if (!strcmp(d[i].metrics[k].name,
                                            "total_micros"))
                                        before_total =
                                            (int64_t)d[i].metrics[k].value;
                        }
                        cr_assert_eq(before_total, 95000000000LL);
                        for (int b = 0; b < d[i].budget_cnt; b++) {
                                const char *ch = d[i].budgets[b].channel;
                                int64_t after = d[i].budgets[b].budget_micros;
                                char name[80];

                                total += after;
                                if (!strcmp(ch, "(reserve)")) {
                                        cr_assert_geq(after, reserve_before);
                                        continue;
                                }
                                snprintf(name, sizeof(name), "before.%s", ch);
                                for (int k = 0; k < d[i].metric_cnt; k++) {
                                        int64_t was, delta;

                                        if (strcmp(d[i].metrics[k].name, name))
                                                continue;
                                        was = (int64_t)d[i].metrics[k].value;
                                        delta = after - was;
                                        if (delta < 0)
                                                delta = -delta;
                                        cr_assert_leq(delta, was * 15 / 100,
                                                      "%s moved %lld of %lld",
                                                      ch, (long long)delta,
                                                      (long long)was);
                                }
                        }
                        cr_assert_eq(total, 95000000000LL, "total after %lld",
                                     (long long)total);
                }
        }
        if (pauses != 4 || reallocs != 2)
                dump(d, n);
        /* kol (IVT), gifts (CPA) and both gifts campaigns; a reallocation
         * for each paused channel. */
        cr_assert_eq(pauses, 4);
        cr_assert_eq(reallocs, 2);
        cr_assert_eq(h_run("sg-ctl", budget_args, out, sizeof(out)), 0);
        rows = h_jsonl_text(out);
        cr_assert_eq(json_array_size(rows), 6, "%s", out);
        {
                int64_t sum = 0;
                size_t i;
                json_t *row;

                json_array_foreach(rows, i, row) sum +=
                    json_integer_value(json_object_get(row, "budget_micros"));
                cr_assert_eq(sum, 95000000000LL, "%s", out);
        }
        json_decref(rows);
        free(d);
        json_decref(truth);
}

/* The whole log of a process started by the harness. */
static char *read_log(const char *name)
{
        char path[512];
        static char buf[1 << 20];
        FILE *fp;
        size_t n;

        snprintf(path, sizeof(path), "%s/%s.log", H.dir, name);
        fp = fopen(path, "r");
        if (!fp)
                return strcpy(buf, "");
        n = fread(buf, 1, sizeof(buf) - 1, fp);
        buf[n] = '\0';
        fclose(fp);
        return buf;
}

static void write_rules(const char *text)
{
        char path[512];
        FILE *fp;

        snprintf(path, sizeof(path), "%s/rules.yaml", H.dir);
        fp = fopen(path, "w");
        cr_assert_not_null(fp);
        fputs(text, fp);
        fclose(fp);
}

Test(rules, bad_rules_exit_2_and_sighup_keeps_the_old_rules_on_a_bad_file)
{
        static const char bad[] =
            "rules:\n  - {id: r, window: 2x, metric: ctr, op: \"<\", "
            "threshold: 1, min_clicks: 1, action: ALERT}\n";
        long long deadline;
        pid_t rules;

        write_config(bad);
        cr_assert_eq(h_run("sg-rules", NULL, NULL, 0), 2);
        cr_assert_neq(strstr(read_log("sg-rules"),
                             "rules.yaml:2: rule r: window: unknown window "
                             "\"2x\""),
                      NULL, "%s", read_log("sg-rules"));

        write_rules(ivt_rules);
        rules = h_spawn("sg-rules", NULL);
        deadline = h_now_ms() + 30000;
        while (!strstr(read_log("sg-rules"), "event=start")) {
                cr_assert_lt(h_now_ms(), deadline, "sg-rules did not start");
                usleep(50000);
        }
        write_rules(bad);
        kill(rules, SIGHUP);
        deadline = h_now_ms() + 30000;
        while (!strstr(read_log("sg-rules"), "event=rules_reload_failed")) {
                cr_assert_lt(h_now_ms(), deadline, "no reload failure logged");
                usleep(50000);
        }
        cr_assert_neq(strstr(read_log("sg-rules"), "keeping the previous "
                                                   "rules"),
                      NULL);
        write_rules(ivt_rules);
        kill(rules, SIGHUP);
        deadline = h_now_ms() + 30000;
        while (!strstr(read_log("sg-rules"), "event=rules_reloaded")) {
                cr_assert_lt(h_now_ms(), deadline, "no reload logged");
                usleep(50000);
        }
        cr_assert_neq(strstr(read_log("sg-rules"), "rules=1"), NULL);
}
