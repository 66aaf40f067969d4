/*
 * The status page of `sg-ctl serve`, as a browser shows it: headless
 * Chromium (Debian's chromium, tools/deps.sh) loads it after a real
 * pipeline run, its script fetches /api/status, and the DOM it leaves
 * must show what `sg-ctl kpis --json`, `breakers --json`, `budgets
 * --json` and `decisions --json` say: one card per channel with the same
 * totals, red for the paused channels and green for the healthy ones, the
 * decisions in the same order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(status_page, .init = h_stack_up, .fini = h_stack_down,
          .timeout = 400);

#define CHROMIUM "/usr/bin/chromium"

/* The value of attribute name in the tag that contains at (up to its
 * '>'), copied into buf; NULL if absent. */
static const char *attr(const char *at, const char *name, char *buf,
                        size_t size)
{
        const char *open = at, *end = strchr(at, '>'), *p, *q;
        char key[64];

        while (open > at - 4096 && *open != '<')
                open--;
        snprintf(key, sizeof(key), " %s=\"", name);
        p = strstr(open, key);
        if (!p || !end || p > end)
                return NULL;
        p += strlen(key);
        q = strchr(p, '"');
        snprintf(buf, size, "%.*s", (int)(q - p), p);
        return buf;
}

/* The JSON-lines output of `sg-ctl <args>` as an array. */
static json_t *ctl_json(const char *const *args)
{
        static char out[1 << 20];

        cr_assert_eq(h_run("sg-ctl", args, out, sizeof(out)), 0,
                     "sg-ctl %s failed (log in %s)", args[0], H.dir);
        return h_jsonl_text(out);
}

/* The element of arr whose key equals value (and, if campaign_null, whose
 * campaign_id is null). */
static json_t *find(json_t *arr, const char *key, const char *value,
                    int campaign_null)
{
        size_t i;
        json_t *e;

        json_array_foreach(arr, i, e)
        {
                json_t *v = json_object_get(e, key);

                if (json_is_string(v) && !strcmp(json_string_value(v), value) &&
                    (!campaign_null ||
                     json_is_null(json_object_get(e, "campaign_id"))))
                        return e;
        }
        return NULL;
}

/* The port sg-ctl serve printed in its log, waiting up to 10 s. */
static int serve_port(void)
{
        long long deadline = h_now_ms() + 10000;
        char path[512], line[512];

        snprintf(path, sizeof(path), "%s/sg-ctl.log", H.dir);
        while (h_now_ms() < deadline) {
                FILE *fp = fopen(path, "r");

                while (fp && fgets(line, sizeof(line), fp)) {
                        const char *p = strstr(line, "addr=127.0.0.1:");

                        if (p) {
                                fclose(fp);
                                return atoi(p + strlen("addr=127.0.0.1:"));
                        }
                }
                if (fp)
                        fclose(fp);
                usleep(50 * 1000);
        }
        cr_assert_fail("sg-ctl serve printed no address (log in %s)", H.dir);
        return 0;
}

Test(status_page, shows_in_chromium_what_sg_ctl_says)
{
        static const struct {
                const char *channel, *health, *state;
        } want[] = {{"social", "green", "closed"},
                    {"search", "green", "closed"},
                    {"display", "green", "closed"},
                    {"kol", "red", "open"},
                    {"gifts", "red", "open"}};
        char truth_path[512], url[128], profile[512], vtb[64], buf[256];
        const char *gen_args[] = {"--seed",  "5",        "--duration", "90",
                                  "--truth", truth_path, NULL};
        const char *serve_args[] = {"serve", "--listen", "127.0.0.1:0", NULL};
        const char *kpis_args[] = {"kpis", "--json", NULL};
        const char *budgets_args[] = {"budgets", "--json", NULL};
        const char *dec_args[] = {"decisions", "--json", "--last", "50", NULL};
        static char dom[1 << 21];
        char why[512] = "";
        json_t *truth, *kpis, *budgets, *decs, *d;
        const char *p;
        size_t i, ndec = 0;

        cr_assert_eq(access(CHROMIUM, X_OK), 0,
                     CHROMIUM " is missing: tools/deps.sh installs it");
        snprintf(truth_path, sizeof(truth_path), "%s/truth.jsonl", H.dir);
        cr_assert_eq(h_run("sg-gen", gen_args, NULL, 0), 0);
        truth = h_jsonl_file(truth_path);
        kpis = h_kpis_wait(truth, NULL, 150000, why, sizeof(why));
        cr_assert(kpis, "KPIs never matched the truth: %s (logs in %s)", why,
                  H.dir);
        json_decref(kpis);
        json_decref(truth);
        /* The ten decisions of the shipped rules (docs/rules.md). */
        for (long long deadline = h_now_ms() + 60000;;) {
                decs = ctl_json(dec_args);
                if (json_array_size(decs) >= 10 || h_now_ms() > deadline)
                        break;
                json_decref(decs);
                usleep(300 * 1000);
        }
        cr_assert_eq(json_array_size(decs), 10, "decisions: %zu",
                     json_array_size(decs));
        kpis = ctl_json(kpis_args);
        budgets = ctl_json(budgets_args);

        h_spawn("sg-ctl", serve_args);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/", serve_port());
        snprintf(profile, sizeof(profile), "--user-data-dir=%s/chromium",
                 H.dir);
        snprintf(vtb, sizeof(vtb), "--virtual-time-budget=%d", 5000);
        {
                const char *args[] = {"--headless",
                                      "--no-sandbox",
                                      "--disable-gpu",
                                      "--disable-quic",
                                      "--no-first-run",
                                      "--disable-background-networking",
                                      "--disable-component-update",
                                      "--disable-sync",
                                      profile,
                                      vtb,
                                      "--dump-dom",
                                      url,
                                      NULL};

                cr_assert_eq(h_run(CHROMIUM, args, dom, sizeof(dom)), 0,
                             "chromium failed (log in %s)", H.dir);
        }
        cr_assert_not_null(strstr(dom, "<div id=\"cards\">"), "%s", dom);
        cr_assert_not_null(strstr(dom, "<div id=\"error\"></div>"),
                           "the page could not read /api/status:\n%s", dom);

        /* One card per channel, in config order, with kpis' totals. */
        p = dom;
        for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
                json_t *k = find(kpis, "channel", want[i].channel, 1),
                       *b = find(budgets, "channel", want[i].channel, 0);
                static const char *const fields[] = {
                    "impressions", "clicks", "conversions", "spend_micros",
                    "revenue_micros", "invalid_clicks"};

                p = strstr(p, "data-channel=\"");
                cr_assert_not_null(p, "card %zu (%s) missing", i,
                                   want[i].channel);
                cr_assert_str_eq(attr(p, "data-channel", buf, sizeof(buf)),
                                 want[i].channel);
                cr_assert_not_null(k, "kpis has no %s", want[i].channel);
                cr_assert_not_null(b, "budgets has no %s", want[i].channel);
                for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]);
                     f++) {
                        char name[64], *u;
                        long long shown;

                        snprintf(name, sizeof(name), "data-%s", fields[f]);
                        for (u = name; *u; u++)
                                if (*u == '_')
                                        *u = '-';
                        cr_assert_not_null(attr(p, name, buf, sizeof(buf)),
                                           "%s: no %s", want[i].channel, name);
                        shown = atoll(buf);
                        cr_assert_eq(shown,
                                     json_integer_value(
                                         json_object_get(k, fields[f])),
                                     "%s %s: page %lld, sg-ctl kpis %lld",
                                     want[i].channel, fields[f], shown,
                                     (long long)json_integer_value(
                                         json_object_get(k, fields[f])));
                }
                attr(p, "data-budget-micros", buf, sizeof(buf));
                cr_assert_eq(
                    atoll(buf),
                    json_integer_value(json_object_get(b, "budget_micros")),
                    "%s: budget on the page %s", want[i].channel, buf);
                cr_assert_str_eq(attr(p, "data-health", buf, sizeof(buf)),
                                 want[i].health, "%s", want[i].channel);
                cr_assert_str_eq(attr(p, "data-state", buf, sizeof(buf)),
                                 want[i].state, "%s", want[i].channel);
                p++;
        }
        cr_assert_null(strstr(p, "data-channel=\""), "a sixth card");

        /* The decisions, newest first, as sg-ctl decisions has them. */
        p = dom;
        json_array_foreach(decs, i, d)
        {
                const char *id =
                    json_string_value(json_object_get(d, "decision_id"));

                p = strstr(p, "data-decision-id=\"");
                cr_assert_not_null(p, "decision %zu missing on the page", i);
                cr_assert_str_eq(attr(p, "data-decision-id", buf, sizeof(buf)),
                                 id, "decision %zu", i);
                p++;
                ndec++;
        }
        cr_assert_eq(ndec, 10);
        cr_assert_null(strstr(p, "data-decision-id=\""), "an 11th decision");
        /* Money in units, with the currency: no micros in the texts. */
        cr_assert_not_null(strstr(dom, "money in USD"), "%s", dom);
        cr_assert_null(strstr(dom, "spend_micros="), "micros shown");
        json_decref(kpis);
        json_decref(budgets);
        json_decref(decs);
}

/* Self-contained: no asset from anywhere else. A suite of its own: no
 * stack to start (a test's .init runs after its suite's, it does not
 * replace it). */
TestSuite(status_html);

Test(status_html, loads_nothing_from_elsewhere)
{
        char path[512], page[65536];
        size_t n;
        FILE *fp = fopen(h_src("tools/status.html", path, sizeof(path)), "r");

        cr_assert_not_null(fp);
        n = fread(page, 1, sizeof(page) - 1, fp);
        page[n] = '\0';
        fclose(fp);
        cr_assert_null(strstr(page, "://"), "a URL in the page");
        cr_assert_null(strstr(page, " src="), "an external script or image");
        cr_assert_null(strstr(page, "<link"), "an external style sheet");
        cr_assert_null(strstr(page, "@import"), "an imported style sheet");
}
