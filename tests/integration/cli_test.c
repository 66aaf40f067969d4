/*
 * What a new operator types first: the stages' command lines and --help.
 * Each program is run for real (SG_BIN_DIR) and its own words checked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <criterion/criterion.h>

#include "harness.h"

static const char *const stages[] = {"ingest", "aggregate", "rules", "sink"};

/* Runs a shell command line, stdout and stderr into out; the exit code. */
static int sh(const char *cmd, char *out, size_t size)
{
        FILE *p = popen(cmd, "r");
        size_t n = 0;
        int status;

        cr_assert_not_null(p, "popen %s", cmd);
        while (n + 1 < size && fgets(out + n, (int)(size - n), p))
                n += strlen(out + n);
        out[n] = '\0';
        status = pclose(p);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Test(cli, c_without_a_file_says_it_needs_an_argument)
{
        char bin[512], cmd[1024], out[512];

        for (size_t i = 0; i < sizeof(stages) / sizeof(stages[0]); i++) {
                char want[128], name[32];

                snprintf(name, sizeof(name), "sg-%s", stages[i]);
                snprintf(cmd, sizeof(cmd), "%s -c 2>&1",
                         h_bin(name, bin, sizeof(bin)));
                cr_assert_eq(sh(cmd, out, sizeof(out)), 2);
                snprintf(want, sizeof(want),
                         "%s: option -c needs an argument (try --help)\n",
                         name);
                cr_assert_str_eq(out, want);
        }
        snprintf(cmd, sizeof(cmd), "%s --config 2>&1",
                 h_bin("sg-rules", bin, sizeof(bin)));
        cr_assert_eq(sh(cmd, out, sizeof(out)), 2);
        cr_assert_str_eq(out,
                         "sg-rules: option --config needs an argument (try "
                         "--help)\n");
        snprintf(cmd, sizeof(cmd), "%s -x 2>&1",
                 h_bin("sg-rules", bin, sizeof(bin)));
        cr_assert_eq(sh(cmd, out, sizeof(out)), 2);
        cr_assert_str_eq(out, "sg-rules: unknown option -x (try --help)\n");
}

Test(cli, sg_config_naming_a_directory_says_so)
{
        char bin[512], cmd[1024], out[512];

        snprintf(cmd, sizeof(cmd), "SG_CONFIG=/tmp %s 2>&1",
                 h_bin("sg-ingest", bin, sizeof(bin)));
        cr_assert_eq(sh(cmd, out, sizeof(out)), 2);
        cr_assert_str_eq(out, "sg-ingest: bad config: /tmp: is a directory, "
                              "not a config file\n");
}

/* Every key docs/config.md documents is in the --help of a stage, and the
 * keys every stage reads (the top-level ones and metrics.*) are in the
 * --help of every stage. */
Test(cli, every_documented_key_is_in_a_stage_help)
{
        static char help[4][32768];
        char path[512], bin[512], cmd[1024], line[2048];
        int keys = 0;
        FILE *fp;

        for (int i = 0; i < 4; i++) {
                char name[32];

                snprintf(name, sizeof(name), "sg-%s", stages[i]);
                snprintf(cmd, sizeof(cmd), "%s --help",
                         h_bin(name, bin, sizeof(bin)));
                cr_assert_eq(sh(cmd, help[i], sizeof(help[i])), 0);
        }
        fp = fopen(h_src("docs/config.md", path, sizeof(path)), "r");
        cr_assert_not_null(fp);
        /* The key table: rows "| `key` | type | ...", up to the first
         * section after it (kafka, channels: keys of their own). */
        while (fgets(line, sizeof(line), fp)) {
                char key[128], *end;
                int in = 0;

                if (strncmp(line, "## `kafka:`", 11) == 0)
                        break;
                if (strncmp(line, "| `", 3) != 0)
                        continue;
                end = strchr(line + 3, '`');
                cr_assert_not_null(end);
                snprintf(key, sizeof(key), "  %.*s ", (int)(end - line - 3),
                         line + 3);
                for (int i = 0; i < 4; i++) {
                        int here = strstr(help[i], key) != NULL;
                        int everywhere = !strchr(key + 2, '.') ||
                                         strncmp(key + 2, "metrics.", 8) == 0;

                        in += here;
                        cr_expect(here || !everywhere,
                                  "sg-%s --help lacks%s", stages[i], key);
                }
                cr_expect_gt(in, 0, "no stage's --help has%s", key);
                keys++;
        }
        fclose(fp);
        cr_assert_gt(keys, 50, "docs/config.md: only %d keys found", keys);
}
