/*
 * `sg-ctl top --once` on a pipe, after a real pipeline run: one plain frame
 * (no ANSI), a row per configured channel in config order with its breaker
 * state, the delivered decisions below the table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

TestSuite(top, .init = h_stack_up, .fini = h_stack_down, .timeout = 300);

#define MAX_TOKENS 16

/* Splits line (modified) at blanks into at most MAX_TOKENS words. */
static int split(char *line, char **tok)
{
        int n = 0;

        for (char *p = strtok(line, " "); p && n < MAX_TOKENS;
             p = strtok(NULL, " "))
                tok[n++] = p;
        return n;
}

/* The index of name among the header's words, or -1. */
static int column(char **head, int n, const char *name)
{
        for (int i = 0; i < n; i++)
                if (strcmp(head[i], name) == 0)
                        return i;
        return -1;
}

/* The next line of *text (NUL-terminated in place), or NULL at the end. */
static char *next_line(char **text)
{
        char *line = *text, *nl;

        if (!line || !*line)
                return NULL;
        nl = strchr(line, '\n');
        if (nl) {
                *nl = '\0';
                *text = nl + 1;
        } else {
                *text = line + strlen(line);
        }
        return line;
}

/* Waits until sg-ctl kpis equals the truth and the six decisions of the
 * default rules (docs/rules.md) are in the sink's log. */
static void wait_for_pipeline(json_t *truth)
{
        const char *dargs[] = {"decisions", "--json", NULL};
        static char out[65536];
        long long deadline = h_now_ms() + 150000;
        char why[512] = "";
        json_t *kpis, *d = NULL;

        /* The decisions below share the deadline. */
        kpis = h_kpis_wait(truth, NULL, 150000, why, sizeof(why));
        cr_assert(kpis, "KPIs never matched the truth: %s (logs in %s)", why,
                  H.dir);
        json_decref(kpis);
        for (;;) {
                cr_assert_eq(h_run("sg-ctl", dargs, out, sizeof(out)), 0);
                json_decref(d);
                d = h_jsonl_text(out);
                if (json_array_size(d) >= 10 || h_now_ms() >= deadline)
                        break;
                usleep(300 * 1000);
        }
        cr_assert_eq(json_array_size(d), 10,
                     "decisions delivered: want 10, got %zu (logs in %s)",
                     json_array_size(d), H.dir);
        json_decref(d);
}

Test(top, once_on_a_pipe_prints_one_plain_frame_in_config_order)
{
        static const struct {
                const char *channel, *breaker, *budget;
        } want[] = {{"social", "closed", "40000.00"},
                    {"search", "closed", "30000.00"},
                    {"display", "closed", "10000.00"},
                    {"kol", "OPEN", "10000.00"},
                    {"gifts", "OPEN", "5000.00"}};
        const size_t nwant = sizeof(want) / sizeof(want[0]);
        char truth_path[512];
        const char *gen_args[] = {"--seed",  "5",        "--duration", "90",
                                  "--truth", truth_path, NULL};
        const char *top_args[] = {"top", "--once", NULL};
        static char out[65536];
        char *text = out, *line, *head[MAX_TOKENS], *tok[MAX_TOKENS];
        int nhead, ctr_col, budget_col, ntok, kol = 0, gifts = 0, ndec = 0;
        json_t *truth;

        snprintf(truth_path, sizeof(truth_path), "%s/truth.jsonl", H.dir);
        cr_assert_eq(h_run("sg-gen", gen_args, NULL, 0), 0,
                     "sg-gen failed (log: %s/sg-gen.log)", H.dir);
        truth = h_jsonl_file(truth_path);
        wait_for_pipeline(truth);
        json_decref(truth);

        cr_assert_eq(h_run("sg-ctl", top_args, out, sizeof(out)), 0,
                     "sg-ctl top --once failed (log: %s/sg-ctl.log)", H.dir);
        cr_assert_null(strchr(out, '\033'), "ANSI escape on a pipe:\n%s", out);

        line = next_line(&text);
        cr_assert_not_null(line);
        cr_assert_eq(strncmp(line, "spendguard top  ", 16), 0, "title: %s",
                     line);
        cr_assert_not_null(strstr(line, "last 60 s of event time"), "%s", line);
        line = next_line(&text);
        cr_assert(line && !*line, "no blank line after the title");

        line = next_line(&text);
        cr_assert_not_null(line);
        nhead = split(line, head);
        cr_assert_str_eq(head[0], "CHANNEL");
        cr_assert_str_eq(head[nhead - 1], "BREAKER");
        ctr_col = column(head, nhead, "CTR");
        budget_col = column(head, nhead, "BUDGET");
        cr_assert_geq(ctr_col, 0);
        cr_assert_geq(budget_col, 0);

        for (size_t i = 0; i < nwant; i++) {
                line = next_line(&text);
                cr_assert_not_null(line, "row %zu missing", i);
                ntok = split(line, tok);
                cr_assert_eq(ntok, nhead, "row %zu has %d columns, want %d", i,
                             ntok, nhead);
                cr_assert_str_eq(tok[0], want[i].channel);
                cr_assert_str_eq(tok[ntok - 1], want[i].breaker,
                                 "%s: breaker %s, want %s", tok[0],
                                 tok[ntok - 1], want[i].breaker);
                cr_assert_str_eq(tok[budget_col], want[i].budget);
                /* Every whole second of a healthy channel has exactly 10
                 * clicks per 100 impressions; buckets hold whole seconds. */
                if (strcmp(want[i].channel, "social") == 0)
                        cr_assert_str_eq(tok[ctr_col], "10.00%");
        }
        line = next_line(&text);
        cr_assert(line && !*line, "a sixth row: %s", line ? line : "(end)");

        line = next_line(&text);
        cr_assert_not_null(line, "no decisions after the table");
        cr_assert_str_eq(line, "last 5 decisions (newest first)");
        while ((line = next_line(&text)) && *line) {
                ntok = split(line, tok);
                cr_assert_geq(ntok, 4, "decision line: %s", line);
                /* Only the bad channels: paused, reallocated from, or
                 * (kol) their bot IPs blocked. */
                cr_assert(!strcmp(tok[1], "PAUSE") ||
                              !strcmp(tok[1], "REALLOCATE") ||
                              !strcmp(tok[1], "BLOCK_SOURCE"),
                          "decision line: %s", line);
                if (strncmp(tok[2], "kol", 3) == 0)
                        kol++;
                else if (strncmp(tok[2], "gifts", 5) == 0)
                        gifts++;
                ndec++;
        }
        /* The last 5 of the 10 (kol: PAUSE, REALLOCATE, 4 BLOCK_SOURCE;
         * gifts: 2 PAUSE of its campaigns, PAUSE, REALLOCATE), in the
         * order sink delivered them. */
        cr_assert_eq(ndec, 5, "decision lines: want 5, got %d", ndec);
        cr_assert_eq(kol + gifts, 5);
        cr_assert_null(next_line(&text), "output after the frame");
}
