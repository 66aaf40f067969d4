/*
 * The Redis password: from SG_REDIS_PASSWORD, else redis_password_file,
 * else the URL (taken out of it); the schema registry's password, from
 * SG_SCHEMA_REGISTRY_PASSWORD, else its file; Kafka secrets registered for
 * redaction; config errors never quote a secret.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "conf.h"
#include "log.h"

static char dir[] = "/tmp/sg-secrets-XXXXXX";

static void setup(void)
{
        static const char *const env[] = {"SG_CONFIG",
                                          "SG_BROKERS",
                                          "SG_REDIS",
                                          "SG_GROUP_PREFIX",
                                          "SG_LOG_LEVEL",
                                          "SG_METRICS_LISTEN",
                                          "SG_REDIS_PASSWORD",
                                          "SG_REDIS_PASSWORD_FILE",
                                          "SG_SCHEMA_REGISTRY_URL",
                                          "SG_SCHEMA_REGISTRY_USER",
                                          "SG_SCHEMA_REGISTRY_PASSWORD",
                                          "SG_SCHEMA_REGISTRY_PASSWORD_FILE",
                                          NULL};

        for (const char *const *e = env; *e; e++)
                unsetenv(*e);
        cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
        char cmd[300];

        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        cr_assert_eq(system(cmd), 0);
}

TestSuite(secrets, .init = setup, .fini = teardown);

/* Writes name in the temp dir; returns its path (static buffer per name). */
static const char *put(const char *name, const char *text, char *path,
                       size_t size)
{
        FILE *fp;

        snprintf(path, size, "%s/%s", dir, name);
        fp = fopen(path, "w");
        cr_assert_not_null(fp);
        fputs(text, fp);
        fclose(fp);
        return path;
}

static int load(sg_conf_t *conf, const char *yaml, char *err, size_t size)
{
        char path[300];

        return sg_conf_load(conf, put("sg.yaml", yaml, path, sizeof(path)), err,
                            size);
}

Test(secrets, password_file_first_line_is_the_password)
{
        sg_conf_t conf;
        char err[512], pw[300];

        put("redis.pw", "pw-from-file\nsecond line\n", pw, sizeof(pw));
        /* Relative to the config file's folder. */
        cr_assert_eq(load(&conf,
                          "redis: redis://127.0.0.1:6379/0\n"
                          "redis_password_file: redis.pw\n",
                          err, sizeof(err)),
                     0, "%s", err);
        cr_assert_str_eq(conf.redis_password, "pw-from-file");
        cr_assert_str_eq(conf.redis_password_file, pw);
        cr_assert_str_eq(conf.redis, "redis://127.0.0.1:6379/0");
        cr_assert_str_eq(sg_log_redact((char[64]){"x pw-from-file y"}, 64),
                         "x *** y");
}

Test(secrets, env_password_beats_the_file_and_the_url)
{
        sg_conf_t conf;
        char err[512], pw[300];

        put("redis.pw", "pw-from-file\n", pw, sizeof(pw));
        setenv("SG_REDIS_PASSWORD", "pw-from-env", 1);
        cr_assert_eq(load(&conf,
                          "redis: redis://:pw-in-url@127.0.0.1:6379/0\n"
                          "redis_password_file: redis.pw\n",
                          err, sizeof(err)),
                     0, "%s", err);
        cr_assert_str_eq(conf.redis_password, "pw-from-env");
        cr_assert_str_eq(conf.redis, "redis://127.0.0.1:6379/0");
}

Test(secrets, url_password_is_taken_out_of_the_url)
{
        sg_conf_t conf;
        char err[512];

        cr_assert_eq(load(&conf, "redis: redis://user:pw-in-url@h:1/2\n", err,
                          sizeof(err)),
                     0, "%s", err);
        cr_assert_str_eq(conf.redis, "redis://h:1/2");
        cr_assert_str_eq(conf.redis_password, "pw-in-url");

        setenv("SG_REDIS", "unix:///tmp/r.sock?password=pw-unix&db=3", 1);
        cr_assert_eq(load(&conf, "", err, sizeof(err)), 0, "%s", err);
        cr_assert_str_eq(conf.redis, "unix:///tmp/r.sock?db=3");
        cr_assert_str_eq(conf.redis_password, "pw-unix");

        setenv("SG_REDIS", "unix:///tmp/r.sock?db=3&password=pw-unix", 1);
        cr_assert_eq(load(&conf, "", err, sizeof(err)), 0, "%s", err);
        cr_assert_str_eq(conf.redis, "unix:///tmp/r.sock?db=3");

        setenv("SG_REDIS", "unix:///tmp/r.sock?password=pw-unix", 1);
        cr_assert_eq(load(&conf, "", err, sizeof(err)), 0, "%s", err);
        cr_assert_str_eq(conf.redis, "unix:///tmp/r.sock");
        cr_assert_str_eq(conf.redis_password, "pw-unix");
}

Test(secrets, no_password_anywhere_means_no_auth)
{
        sg_conf_t conf;
        char err[512];

        cr_assert_eq(load(&conf, "", err, sizeof(err)), 0, "%s", err);
        cr_assert_str_eq(conf.redis_password, "");
}

Test(secrets, missing_or_empty_password_file_names_the_key)
{
        sg_conf_t conf;
        char err[512], pw[300];

        cr_assert_eq(load(&conf, "redis_password_file: /nonexistent/pw\n", err,
                          sizeof(err)),
                     -1);
        cr_assert_str_eq(err, "redis_password_file: /nonexistent/pw: No such "
                              "file or directory");
        put("empty.pw", "\n", pw, sizeof(pw));
        cr_assert_eq(
            load(&conf, "redis_password_file: empty.pw\n", err, sizeof(err)),
            -1);
        cr_assert_not_null(strstr(err, "no password on its first line"), "%s",
                           err);
}

Test(secrets, registry_password_from_its_file_or_the_env_is_redacted)
{
        sg_conf_t conf;
        char err[512], pw[300];

        put("registry.pw", "reg-pw-file\n", pw, sizeof(pw));
        cr_assert_eq(load(&conf,
                          "schema_registry:\n"
                          "  url: https://sr.example:8081\n"
                          "  user: spendguard\n"
                          "  password_file: registry.pw\n",
                          err, sizeof(err)),
                     0, "%s", err);
        cr_assert_str_eq(conf.schema_registry.password, "reg-pw-file");
        cr_assert_str_eq(conf.schema_registry_password_file, pw);
        cr_assert_str_eq(conf.schema_registry.user, "spendguard");
        cr_assert_str_eq(sg_log_redact((char[64]){"a reg-pw-file b"}, 64),
                         "a *** b");
        setenv("SG_SCHEMA_REGISTRY_PASSWORD", "reg-pw-env", 1);
        cr_assert_eq(load(&conf,
                          "schema_registry:\n"
                          "  url: https://sr.example:8081\n"
                          "  user: spendguard\n"
                          "  password_file: registry.pw\n",
                          err, sizeof(err)),
                     0, "%s", err);
        cr_assert_str_eq(conf.schema_registry.password, "reg-pw-env");
        cr_assert_str_eq(sg_log_redact((char[64]){"a reg-pw-env b"}, 64),
                         "a *** b");
}

Test(secrets, registry_credentials_need_a_user_and_stay_out_of_urls)
{
        sg_conf_t conf;
        char err[512];

        setenv("SG_SCHEMA_REGISTRY_PASSWORD", "lonely-pw", 1);
        cr_assert_eq(load(&conf, "schema_registry:\n  url: http://sr:8081\n",
                          err, sizeof(err)),
                     -1);
        cr_assert_str_eq(err, "schema_registry.user: empty, but a password is "
                              "set");
        unsetenv("SG_SCHEMA_REGISTRY_PASSWORD");
        cr_assert_eq(load(&conf,
                          "schema_registry:\n"
                          "  url: http://u:topsecret2@sr:8081\n",
                          err, sizeof(err)),
                     -1);
        cr_assert_null(strstr(err, "topsecret2"), "%s", err);
        cr_assert_str_eq(err, "schema_registry.url: URL 1 holds credentials; "
                              "set schema_registry.user and the password "
                              "(docs/config.md)");
}

Test(secrets, config_errors_never_quote_a_secret)
{
        sg_conf_t conf;
        char err[512];

        cr_assert_eq(
            load(&conf, "redis: http://u:topsecret1@h/0\n", err, sizeof(err)),
            -1);
        cr_assert_null(strstr(err, "topsecret1"), "%s", err);
        cr_assert_not_null(strstr(err, "http://u:***@h/0"), "%s", err);
}

Test(secrets, kafka_password_and_secret_values_are_registered)
{
        sg_conf_t conf;
        char err[512], line[256];

        cr_assert_eq(load(&conf,
                          "kafka:\n"
                          "  security.protocol: SASL_SSL\n"
                          "  sasl.mechanisms: PLAIN\n"
                          "  sasl.username: spendguard\n"
                          "  sasl.password: kafka-pw-123\n"
                          "  ssl.key.password: key-pw-456\n"
                          "  sasl.oauthbearer.client.secret: oauth-789\n",
                          err, sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(conf.kafka_cnt, 6);
        snprintf(line, sizeof(line),
                 "msg=\"conf %s %s %s\" user=spendguard protocol=SASL_SSL",
                 "kafka-pw-123", "key-pw-456", "oauth-789");
        cr_assert_str_eq(sg_log_redact(line, sizeof(line)),
                         "msg=\"conf *** *** ***\" user=spendguard "
                         "protocol=SASL_SSL");
        cr_assert(sg_conf_kafka_secret("sasl.password"));
        cr_assert(sg_conf_kafka_secret("ssl.keystore.password"));
        cr_assert(sg_conf_kafka_secret("ssl.key.pem"));
        cr_assert_not(sg_conf_kafka_secret("sasl.username"));
}

Test(secrets, help_shows_no_secret)
{
        static const char *const all[] = {"", "ingest.", NULL};
        char path[] = "/tmp/sg-help-XXXXXX", text[16384];
        int fd = mkstemp(path);
        FILE *fp = fdopen(fd, "w+");
        size_t n;

        setenv("SG_REDIS_PASSWORD", "help-pw-1", 1);
        sg_log_secret("help-pw-1");
        sg_conf_print_help(fp, all);
        rewind(fp);
        n = fread(text, 1, sizeof(text) - 1, fp);
        text[n] = '\0';
        fclose(fp);
        unlink(path);
        cr_assert_not_null(strstr(text, "redis_password_file"));
        cr_assert_null(strstr(text, "help-pw-1"));
}

Test(secrets, metrics_listen_defaults_to_loopback)
{
        sg_conf_t conf;
        char err[512];

        cr_assert_eq(load(&conf, "", err, sizeof(err)), 0, "%s", err);
        cr_assert_str_eq(conf.metrics.listen, "127.0.0.1");
}
