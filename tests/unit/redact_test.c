/*
 * Secrets never reach a log line: URL passwords, password / secret keys in
 * logfmt and JSON, and registered secret values are shown as ***, while
 * ordinary text (a password file's path, prose) stays as it is.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "log.h"

static const char *redact(const char *in)
{
        static char buf[1024];

        snprintf(buf, sizeof(buf), "%s", in);
        return sg_log_redact(buf, sizeof(buf));
}

Test(redact, hides_the_password_of_a_redis_url)
{
        cr_assert_str_eq(redact("redis=redis://:hunter2@h:6379/0 x=1"),
                         "redis=redis://:***@h:6379/0 x=1");
        cr_assert_str_eq(redact("url=redis://bob:hunter2@h/1"),
                         "url=redis://bob:***@h/1");
        cr_assert_str_eq(redact("url=redis://hunter2@h"), "url=redis://***@h");
        cr_assert_str_eq(redact("url=redis://h:6379/0"),
                         "url=redis://h:6379/0");
}

Test(redact, hides_the_password_parameter_of_a_unix_url)
{
        cr_assert_str_eq(redact("url=unix:///tmp/r.sock?db=1&password=pw9&x=2"),
                         "url=unix:///tmp/r.sock?db=1&password=***&x=2");
}

Test(redact, hides_values_of_password_and_secret_keys)
{
        cr_assert_str_eq(
            redact("kafka.sasl.password=abc ssl.key.password=\"x y\" "
                   "sasl.oauthbearer.client.secret=s3 n=1"),
            "kafka.sasl.password=*** ssl.key.password=\"***\" "
            "sasl.oauthbearer.client.secret=*** n=1");
        cr_assert_str_eq(redact("{\"sasl.password\":\"abc\",\"n\":1}"),
                         "{\"sasl.password\":\"***\",\"n\":1}");
        /* JSON quoted inside a logfmt value */
        cr_assert_str_eq(redact("detail=\"{\\\"password\\\":\\\"abc\\\"}\""),
                         "detail=\"{\\\"password\\\":\\\"***\\\"}\"");
        cr_assert_str_eq(redact("PASSWORD=Abc"), "PASSWORD=***");
}

Test(redact, keeps_paths_and_prose)
{
        const char *const same[] = {
            "redis_password_file=/etc/sg/redis.pw",
            "err=\"WRONGPASS invalid username-password pair\"",
            "kafka.sasl.password: too long",
            "event=start topics=ad-clicks",
            "password",
            "",
            NULL};

        for (const char *const *s = same; *s; s++)
                cr_assert_str_eq(redact(*s), *s);
}

Test(redact, hides_registered_secrets_anywhere)
{
        sg_log_secret("s3cr3t-value");
        sg_log_secret("ab"); /* too short to register */
        cr_assert_str_eq(redact("msg=\"x s3cr3t-value y\" z=s3cr3t-value"),
                         "msg=\"x *** y\" z=***");
        cr_assert_str_eq(redact("tab abc"), "tab abc");
}

/* Found by fuzz_redact: the text of a key was copied as it was, so a
 * secret inside a key followed by =value stayed visible. */
Test(redact, hides_a_registered_secret_inside_a_key)
{
        sg_log_secret("fuzz-secret-1");
        cr_assert_str_eq(
            redact("lz-secretnt.secretfuzz-secret-1ret-1sword=pw9&x=2"),
            "lz-secretnt.secret***ret-1sword=pw9&x=2");
}

Test(redact, truncates_safely_in_a_small_buffer)
{
        char buf[12];

        memcpy(buf, "password=ab", 12);
        cr_assert_str_eq(sg_log_redact(buf, sizeof(buf)), "password=**");
}

Test(redact, every_log_line_is_redacted)
{
        char path[] = "/tmp/sg-redact-XXXXXX", line[512] = "";
        int fd = mkstemp(path), saved = dup(2);
        FILE *fp;

        cr_assert_geq(fd, 0);
        fflush(stderr);
        dup2(fd, 2);
        sg_log_secret("kafka-pass-1");
        sg_info("event=start redis=redis://:pw12@h/0 sasl=kafka-pass-1");
        fflush(stderr);
        dup2(saved, 2);
        close(saved);
        fp = fdopen(fd, "r");
        rewind(fp);
        cr_assert_not_null(fgets(line, sizeof(line), fp));
        fclose(fp);
        unlink(path);
        cr_assert_not_null(strstr(line, " event=start redis=redis://:***@h/0 "
                                        "sasl=***\n"),
                           "%s", line);
}
