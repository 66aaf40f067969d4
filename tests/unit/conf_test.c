#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "conf.h"
#include "log.h"

static int apply(sg_conf_t *conf, const char *yaml, char *err, size_t size)
{
        sg_yaml_node_t *root =
            sg_yaml_load_string(yaml, strlen(yaml), err, size);
        int rc;

        if (!root)
                return -2;
        rc = sg_conf_apply(conf, root, "test.yaml", err, size);
        sg_yaml_free(root);
        return rc;
}

static void defaults(sg_conf_t *conf)
{
        char err[256];

        unsetenv("SG_CONFIG");
        unsetenv("SG_BROKERS");
        unsetenv("SG_REDIS");
        unsetenv("SG_GROUP_PREFIX");
        unsetenv("SG_LOG_LEVEL");
        cr_assert_eq(sg_conf_load(conf, "/dev/null", err, sizeof(err)), 0, "%s",
                     err);
}

Test(conf, defaults_come_from_the_table)
{
        sg_conf_t conf;

        defaults(&conf);
        cr_assert_str_eq(conf.brokers, "127.0.0.1:9092");
        cr_assert_str_eq(conf.topics.events, "sg.events");
        cr_assert_eq(conf.ingest.batch_size, 2000);
        cr_assert_eq(conf.aggregate.bucket_s, 10);
        cr_assert_eq(conf.ingest.max_money_micros, 1000000000000LL);
        cr_assert_eq(conf.channel_cnt, 0);
}

Test(conf, file_values_and_sections_apply)
{
        sg_conf_t conf;
        char err[256];

        defaults(&conf);
        cr_assert_eq(apply(&conf,
                           "brokers: k1:9092\n"
                           "ingest:\n  batch_size: 7\n"
                           "kafka:\n  fetch.wait.max.ms: 10\n"
                           "channels:\n"
                           "  - name: social\n"
                           "    budget_micros: 100\n"
                           "    target_cpa_micros: 20\n",
                           err, sizeof(err)),
                     0, "%s", err);
        cr_assert_str_eq(conf.brokers, "k1:9092");
        cr_assert_eq(conf.ingest.batch_size, 7);
        cr_assert_eq(conf.kafka_cnt, 1);
        cr_assert_str_eq(conf.kafka[0].name, "fetch.wait.max.ms");
        cr_assert_str_eq(conf.kafka[0].value, "10");
        cr_assert_eq(conf.channel_cnt, 1);
        cr_assert_eq(sg_conf_channel(&conf, "social")->target_cpa_micros, 20);
        cr_assert_null(sg_conf_channel(&conf, "search"));
}

Test(conf, unknown_key_names_file_line_and_key)
{
        sg_conf_t conf;
        char err[256];

        defaults(&conf);
        cr_assert_eq(
            apply(&conf, "ingest:\n  batch_sze: 7\n", err, sizeof(err)), -1);
        cr_assert_str_eq(err, "test.yaml:2: unknown key ingest.batch_sze (see "
                              "--help for the keys)");
}

Test(conf, out_of_range_value_is_rejected_with_its_bounds)
{
        sg_conf_t conf;
        char err[256];

        defaults(&conf);
        cr_assert_eq(
            apply(&conf, "ingest:\n  batch_size: 0\n", err, sizeof(err)), -1);
        cr_assert_str_eq(err, "test.yaml:2: ingest.batch_size: 0 is out of "
                              "range [1, 100000]");
        cr_assert_eq(
            apply(&conf, "aggregate:\n  bucket_s: ten\n", err, sizeof(err)),
            -1);
        cr_assert_str_eq(err, "test.yaml:2: aggregate.bucket_s: \"ten\" is "
                              "not an integer");
}

Test(conf, duplicate_channel_is_rejected)
{
        sg_conf_t conf;
        char err[256];

        defaults(&conf);
        cr_assert_eq(apply(&conf, "channels:\n  - name: a\n  - name: a\n", err,
                           sizeof(err)),
                     -1);
        cr_assert_str_eq(err, "test.yaml:3: channels: a is listed twice");
}

Test(conf, environment_beats_the_file)
{
        sg_conf_t conf;
        char err[256];
        char path[] = "/tmp/sg-conf-XXXXXX";
        int fd = mkstemp(path);
        const char *text = "brokers: file:1\nredis: redis://f:1/0\n";

        cr_assert_neq(fd, -1);
        cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
        setenv("SG_BROKERS", "env:2", 1);
        setenv("SG_REDIS", "unix:///tmp/x.sock", 1);
        setenv("SG_GROUP_PREFIX", "gp", 1);
        cr_assert_eq(sg_conf_load(&conf, path, err, sizeof(err)), 0, "%s", err);
        unlink(path);
        cr_assert_str_eq(conf.brokers, "env:2");
        cr_assert_str_eq(conf.redis, "unix:///tmp/x.sock");
        cr_assert_str_eq(conf.group_prefix, "gp");
}

Test(conf, paths_in_the_file_resolve_against_its_folder)
{
        sg_conf_t conf;
        char err[256];

        defaults(&conf);
        strcpy(conf.dir, "/etc/spendguard");
        cr_assert_eq(apply(&conf,
                           "schemas_dir: ../schemas\n"
                           "rules:\n  file: /abs/rules.yaml\n",
                           err, sizeof(err)),
                     0, "%s", err);
        cr_assert_str_eq(conf.schemas_dir, "/etc/spendguard/../schemas");
        cr_assert_str_eq(conf.rules.file, "/abs/rules.yaml");
}

Test(conf, bad_yaml_reports_the_line)
{
        sg_conf_t conf;
        char err[256];

        defaults(&conf);
        cr_assert_eq(apply(&conf, "a: [1, 2\nb: 3\n", err, sizeof(err)), -2);
        cr_assert_not_null(strstr(err, "<string>:"), "%s", err);
}

Test(conf, bad_yaml_names_the_line_of_the_broken_construct)
{
        sg_conf_t conf;
        char err[256];

        defaults(&conf);
        /* A key without ':' on line 2: libyaml only notices on line 3. */
        cr_assert_eq(apply(&conf, "log_level: info\nredis\nbrokers: x\n",
                           err, sizeof(err)),
                     -2);
        cr_assert_str_eq(err, "<string>:2: could not find expected ':' "
                              "(while scanning a simple key)");
        /* A '[' never closed on line 1. */
        cr_assert_eq(apply(&conf, "a: [1, 2\nb: 3\n", err, sizeof(err)), -2);
        cr_assert_str_eq(err, "<string>:1: did not find expected ',' or ']' "
                              "(while parsing a flow sequence)");
}

Test(conf, a_directory_as_config_is_named_a_directory)
{
        sg_conf_t conf;
        char err[256];

        cr_assert_eq(sg_conf_load(&conf, "/tmp", err, sizeof(err)), -1);
        cr_assert_str_eq(err, "/tmp: is a directory, not a config file");
}

Test(conf, empty_sg_config_means_the_default_file)
{
        sg_conf_t conf;
        char err[256];

        cr_assert_eq(chdir(getenv("SG_SOURCE_DIR") ? getenv("SG_SOURCE_DIR")
                                                   : SG_SOURCE_DIR),
                     0);
        unsetenv("SG_BROKERS");
        unsetenv("SG_REDIS");
        setenv("SG_CONFIG", "", 1);
        cr_assert_eq(sg_conf_load(&conf, NULL, err, sizeof(err)), 0, "%s", err);
        cr_assert_str_eq(conf.path, "config/spendguard.yaml");
        cr_assert_eq(conf.channel_cnt, 5);
}

Test(conf, shipped_config_loads)
{
        sg_conf_t conf;
        char err[256], path[512];

        snprintf(path, sizeof(path), "%s/config/spendguard.yaml",
                 getenv("SG_SOURCE_DIR") ? getenv("SG_SOURCE_DIR")
                                         : SG_SOURCE_DIR);
        unsetenv("SG_BROKERS");
        unsetenv("SG_REDIS");
        cr_assert_eq(sg_conf_load(&conf, path, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(conf.channel_cnt, 5);
        cr_assert_eq(sg_conf_channel(&conf, "gifts")->target_cpa_micros,
                     10000000);
}

Test(log, quotes_values_that_need_it)
{
        char buf[64];

        cr_assert_str_eq(sg_log_quote(buf, sizeof(buf), "plain"), "plain");
        cr_assert_str_eq(sg_log_quote(buf, sizeof(buf), "two words"),
                         "\"two words\"");
        cr_assert_str_eq(sg_log_quote(buf, sizeof(buf), "a\"b\\c"),
                         "\"a\\\"b\\\\c\"");
        cr_assert_str_eq(sg_log_quote(buf, sizeof(buf), "x\ny"), "\"x\\x0ay\"");
        cr_assert_str_eq(sg_log_quote(buf, sizeof(buf), ""), "\"\"");
}

Test(conf, docs_config_md_matches_the_table)
{
        char path[512], *want = NULL, *got = NULL;
        size_t want_len = 0, got_len = 0;
        FILE *fp, *mem;

        snprintf(path, sizeof(path), "%s/docs/config.md",
                 getenv("SG_SOURCE_DIR") ? getenv("SG_SOURCE_DIR")
                                         : SG_SOURCE_DIR);
        fp = fopen(path, "r");
        cr_assert_not_null(fp,
                           "%s missing: run `build/bin/sg-ctl "
                           "config-reference > docs/config.md`",
                           path);
        mem = open_memstream(&want, &want_len);
        for (int c; (c = fgetc(fp)) != EOF;)
                fputc(c, mem);
        fclose(fp);
        fclose(mem);
        mem = open_memstream(&got, &got_len);
        sg_conf_write_reference(mem);
        fclose(mem);
        cr_assert_str_eq(got, want,
                         "docs/config.md drifted from lib/conf.c: run "
                         "`build/bin/sg-ctl config-reference > "
                         "docs/config.md`");
        free(want);
        free(got);
}

/* 1 when name is a key of the config table. */
static int conf_key_exists(const char *name)
{
        for (const sg_conf_field_t *f = sg_conf_fields; f->name; f++)
                if (strcmp(f->name, name) == 0)
                        return 1;
        return 0;
}

/* Every `section.key` a document names is a key the code reads: a
 * renamed or invented key in prose (docs/tools.md once named
 * `aggregate.window_s`) fails here. File names such as `rules.yaml` are
 * not keys. */
Test(conf, every_key_a_document_names_exists)
{
        static const char *const sections[] = {"ingest.",  "aggregate.",
                                               "rules.",   "sink.",
                                               "metrics.", "topics.", NULL};
        const char *src = getenv("SG_SOURCE_DIR") ? getenv("SG_SOURCE_DIR")
                                                  : SG_SOURCE_DIR;
        char pattern[512], readme[512];
        int checked = 0;
        glob_t g;

        snprintf(pattern, sizeof(pattern), "%s/docs/*.md", src);
        snprintf(readme, sizeof(readme), "%s/README.md", src);
        cr_assert_eq(glob(pattern, 0, NULL, &g), 0);
        cr_assert_eq(glob(readme, GLOB_APPEND, NULL, &g), 0);
        for (size_t i = 0; i < g.gl_pathc; i++) {
                FILE *fp = fopen(g.gl_pathv[i], "r");
                char line[4096];
                int lineno = 0;

                cr_assert_not_null(fp, "%s", g.gl_pathv[i]);
                while (fgets(line, sizeof(line), fp)) {
                        lineno++;
                        for (char *p = strchr(line, '`'); p;
                             p = strchr(p + 1, '`')) {
                                char *end = strchr(p + 1, '`');
                                char tok[128];
                                size_t n, k;

                                if (!end)
                                        break;
                                n = (size_t)(end - p - 1);
                                if (n == 0 || n >= sizeof(tok)) {
                                        p = end;
                                        continue;
                                }
                                memcpy(tok, p + 1, n);
                                tok[n] = '\0';
                                p = end;
                                for (k = 0; sections[k]; k++)
                                        if (!strncmp(tok, sections[k],
                                                     strlen(sections[k])))
                                                break;
                                if (!sections[k] ||
                                    strspn(tok + strlen(sections[k]),
                                           "abcdefghijklmnopqrstuvwxyz_") !=
                                        n - strlen(sections[k]) ||
                                    n == strlen(sections[k]))
                                        continue;
                                if (!strcmp(strrchr(tok, '.'), ".yaml") ||
                                    !strcmp(strrchr(tok, '.'), ".md"))
                                        continue;
                                cr_expect(conf_key_exists(tok),
                                          "%s:%d: `%s` is not a config key",
                                          g.gl_pathv[i], lineno, tok);
                                checked++;
                        }
                }
                fclose(fp);
        }
        globfree(&g);
        cr_assert_gt(checked, 50, "only %d key mentions found", checked);
}

static int load_text(sg_conf_t *conf, const char *yaml, char *err, size_t size)
{
        char path[] = "/tmp/sg-conf-XXXXXX";
        int fd = mkstemp(path), rc;

        cr_assert_geq(fd, 0);
        cr_assert_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
        close(fd);
        unsetenv("SG_CONFIG");
        rc = sg_conf_load(conf, path, err, size);
        unlink(path);
        return rc;
}

Test(conf, account_time_zone_by_iana_name_is_checked_at_load)
{
        static sg_conf_t conf;
        char err[512];

        cr_assert_eq(load_text(&conf, "aggregate:\n  tz: America/New_York\n",
                               err, sizeof(err)),
                     0, "%s", err);
        cr_assert_str_eq(conf.aggregate.tz, "America/New_York");
        cr_assert_eq(load_text(&conf, "aggregate:\n  tz: America/Nowhere\n",
                               err, sizeof(err)),
                     -1);
        cr_assert(strstr(err, ": aggregate.tz: unknown time zone "
                              "\"America/Nowhere\" (no "
                              "/usr/share/zoneinfo/America/Nowhere)") != NULL,
                  "%s", err);
        cr_assert_eq(load_text(&conf,
                               "aggregate:\n  tz: Europe/Berlin\n"
                               "  tz_offset_min: 60\n",
                               err, sizeof(err)),
                     -1);
        cr_assert(strstr(err, ": aggregate.tz and aggregate.tz_offset_min "
                              "are both set: keep one") != NULL,
                  "%s", err);
}
