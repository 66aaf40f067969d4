/*
 * `sg-ctl top` after a real pipeline run. --once on a pipe: one plain
 * frame (no ANSI), a row per configured channel in config order with its
 * breaker state and current budget, a legend, the delivered decisions
 * below. On a terminal (tmux): every row of the screen is the frame's row
 * cut to the width, at 200 columns and after a resize to 80 and back, so
 * nothing of an earlier frame is left anywhere.
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

/* `sg-ctl breakers` after the run: the campaign scopes (gifts|gifts-c1)
 * are longer than a channel's name; every column still starts where its
 * header does. */
static void breakers_line_up(void)
{
        static const char *const cols[] = {"STATE", "RULE", "SINCE",
                                           "DECISION_ID"};
        const char *args[] = {"breakers", NULL};
        static char out[16384];
        char *text = out, *line, *head;
        int rows = 0, campaigns = 0;

        cr_assert_eq(h_run("sg-ctl", args, out, sizeof(out)), 0);
        head = next_line(&text);
        cr_assert(head && !strncmp(head, "SCOPE", 5), "header: %s",
                  head ? head : "(none)");
        while ((line = next_line(&text))) {
                for (size_t c = 0; c < sizeof(cols) / sizeof(cols[0]); c++) {
                        size_t at = (size_t)(strstr(head, cols[c]) - head);

                        cr_assert(strlen(line) > at && line[at] != ' ' &&
                                      line[at - 1] == ' ' &&
                                      line[at - 2] == ' ',
                                  "column %s does not start at %zu:\n%s\n%s",
                                  cols[c], at, head, line);
                }
                campaigns += strchr(line, '|') != NULL;
                rows++;
        }
        /* kol, gifts and gifts' two campaigns (docs/rules.md). */
        cr_assert_eq(rows, 4, "breaker rows:\n%s", out);
        cr_assert_eq(campaigns, 2, "campaign rows:\n%s", out);
}

Test(top, once_on_a_pipe_prints_one_plain_frame_in_config_order)
{
        static const struct {
                const char *channel, *breaker;
        } want[] = {{"social", "closed"},
                    {"search", "closed"},
                    {"display", "closed"},
                    {"kol", "OPEN"},
                    {"gifts", "OPEN"}};
        const char *budgets_args[] = {"budgets", "--json", NULL};
        static char budgets_out[8192];
        json_t *budgets;
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
        cr_assert_eq(h_run("sg-ctl", budgets_args, budgets_out,
                           sizeof(budgets_out)),
                     0);
        budgets = h_jsonl_text(budgets_out);
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
        cr_assert_str_eq(head[1], "BREAKER");
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
                cr_assert_str_eq(tok[1], want[i].breaker,
                                 "%s: breaker %s, want %s", tok[0], tok[1],
                                 want[i].breaker);
                /* The current budget: after the reallocations. */
                {
                        size_t j;
                        json_t *b;
                        char units[32];

                        json_array_foreach(budgets, j, b)
                        {
                                long long m;

                                if (strcmp(json_string_value(json_object_get(
                                               b, "channel")),
                                           want[i].channel))
                                        continue;
                                m = json_integer_value(
                                    json_object_get(b, "budget_micros"));
                                snprintf(units, sizeof(units), "%lld.%02lld",
                                         m / 1000000, m % 1000000 / 10000);
                                cr_assert_str_eq(tok[budget_col], units,
                                                 "%s: budget %s, sg-ctl "
                                                 "budgets %s",
                                                 want[i].channel,
                                                 tok[budget_col], units);
                        }
                }
                /* Every whole second of a healthy channel has exactly 10
                 * clicks per 100 impressions; buckets hold whole seconds. */
                if (strcmp(want[i].channel, "social") == 0)
                        cr_assert_str_eq(tok[ctr_col], "10.00%");
        }
        line = next_line(&text);
        cr_assert(line && !strncmp(line, "legend: BREAKER closed runs", 27),
                  "a sixth row, not the legend: %s", line ? line : "(end)");
        line = next_line(&text);
        cr_assert(line && !strncmp(line, "  BUDGET current", 16), "%s",
                  line ? line : "(end)");
        line = next_line(&text);
        cr_assert(line && !strncmp(line, "  CPA/T = CPA / TARGET", 22), "%s",
                  line ? line : "(end)");
        line = next_line(&text);
        cr_assert(line && !*line, "no blank line after the legend");

        line = next_line(&text);
        cr_assert_not_null(line, "no decisions after the table");
        cr_assert_str_eq(line, "last 5 decisions (newest first; money in USD)");
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
        json_decref(budgets);
        breakers_line_up();
}

/* ------------------------------------------------------- under tmux */

static char tmux_sock[400];

static void tmux(const char *args)
{
        char cmd[2048];

        snprintf(cmd, sizeof(cmd), "tmux -S %s %s >/dev/null 2>&1", tmux_sock,
                 args);
        cr_assert_eq(system(cmd), 0, "%s", cmd);
}

static void tmux_down(void)
{
        char cmd[600];

        snprintf(cmd, sizeof(cmd), "tmux -S %s kill-server >/dev/null 2>&1",
                 tmux_sock);
        if (system(cmd) != 0) {
                /* no server left: nothing to stop */
        }
        h_stack_down();
}

/* The pane's rows, trailing blanks cut, into out ("\n"-separated). */
static void capture(char *out, size_t size)
{
        char cmd[600];
        size_t n = 0;
        FILE *p;

        snprintf(cmd, sizeof(cmd), "tmux -S %s capture-pane -p -t top",
                 tmux_sock);
        p = popen(cmd, "r");
        cr_assert_not_null(p);
        while (n + 1 < size && fgets(out + n, (int)(size - n), p))
                n += strlen(out + n);
        out[n] = '\0';
        pclose(p);
}

static void rtrim(char *s)
{
        size_t n = strlen(s);

        while (n && s[n - 1] == ' ')
                s[--n] = '\0';
}

/*
 * 1 when every row of the pane (width cols, height rows) is the row of the
 * plain frame cut to cols, from the second row on (the first has the
 * clock) and except the decisions' title (its count is the height's);
 * rows past the frame's end are empty. Else 0 and the first difference in
 * why.
 */
static int pane_matches(const char *plain, int cols, int rows, char *why,
                        size_t size)
{
        static char pane[1 << 16], frame[1 << 18];
        char *pl = pane, *fl = frame;

        capture(pane, sizeof(pane));
        snprintf(frame, sizeof(frame), "%s", plain);
        for (int row = 0; row < rows; row++) {
                char *p = next_line(&pl), *f = next_line(&fl), cut[1024];

                if (!p)
                        p = "";
                snprintf(cut, sizeof(cut), "%.*s", cols, f ? f : "");
                rtrim(cut);
                rtrim(p);
                if (row == 0 || !strncmp(cut, "last ", 5))
                        continue;
                if (strcmp(p, cut)) {
                        snprintf(why, size,
                                 "row %d at %d columns:\n pane  \"%s\"\n "
                                 "frame \"%s\"",
                                 row, cols, p, cut);
                        return 0;
                }
        }
        return 1;
}

static void wait_pane(const char *plain, int cols, int rows)
{
        long long deadline = h_now_ms() + 10000;
        char why[4096] = "";

        while (!pane_matches(plain, cols, rows, why, sizeof(why))) {
                cr_assert_lt(h_now_ms(), deadline,
                             "the screen never showed the frame: %s", why);
                usleep(100 * 1000);
        }
}

Test(top, redraws_cleanly_under_tmux_at_200_and_80_columns,
     .fini = tmux_down)
{
        char truth_path[512], bin[512], cmd[2048];
        const char *gen_args[] = {"--seed",  "5",        "--duration", "90",
                                  "--truth", truth_path, NULL};
        const char *once_args[] = {"top", "--once", "--decisions", "100",
                                   NULL};
        static char plain[1 << 18];
        json_t *truth;

        snprintf(tmux_sock, sizeof(tmux_sock), "%s/tmux.sock", H.dir);
        snprintf(truth_path, sizeof(truth_path), "%s/truth.jsonl", H.dir);
        cr_assert_eq(h_run("sg-gen", gen_args, NULL, 0), 0);
        truth = h_jsonl_file(truth_path);
        wait_for_pipeline(truth);
        json_decref(truth);
        /* The state is still now: the plain frame is what the screen
         * must show, whatever its size. */
        cr_assert_eq(h_run("sg-ctl", once_args, plain, sizeof(plain)), 0);

        snprintf(cmd, sizeof(cmd),
                 "new-session -d -s top -x 200 -y 40 -e SG_REDIS=%s "
                 "-e SG_CONFIG=%s -e NO_COLOR=1 '%s top --interval 200'",
                 getenv("SG_REDIS"), getenv("SG_CONFIG"),
                 h_bin("sg-ctl", bin, sizeof(bin)));
        tmux(cmd);
        wait_pane(plain, 200, 40);
        /* Narrower: every decision line was longer than 80 columns. */
        tmux("resize-window -t top -x 80 -y 24");
        wait_pane(plain, 80, 24);
        tmux("resize-window -t top -x 200 -y 40");
        wait_pane(plain, 200, 40);
}
