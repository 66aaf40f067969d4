/*
 * The schema registry client's pure logic: the URL list, the backoff,
 * the API's response bodies and what an HTTP status means. Requests
 * against a real registry are in tests/integration/registry_test.c.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schemareg.h"

static char urls[SG_SCHEMAREG_MAX_URLS][SG_SCHEMAREG_URL_LEN];
static char err[256];

static int parse(const char *list)
{
        err[0] = '\0';
        return sg_schemareg_urls_parse(list, urls, SG_SCHEMAREG_MAX_URLS, err,
                                       sizeof(err));
}

Test(urls, splits_a_list_and_drops_blanks_and_trailing_slashes)
{
        cr_assert_eq(parse(" http://a:8081/apis/ccompat/v6/ , https://b//,,"
                           "http://[::1]:9"),
                     3, "%s", err);
        cr_assert_str_eq(urls[0], "http://a:8081/apis/ccompat/v6");
        cr_assert_str_eq(urls[1], "https://b");
        cr_assert_str_eq(urls[2], "http://[::1]:9");
}

Test(urls, refuses_credentials_in_a_url)
{
        cr_assert_eq(parse("http://a:8081,https://user:pw@b:8081/x"), -1);
        cr_assert_str_eq(err, "schema_registry.url: URL 2 holds credentials; "
                              "set schema_registry.user and the password "
                              "(docs/config.md)");
        cr_assert_null(strstr(err, "pw"));
}

Test(urls, an_at_sign_in_the_path_is_not_a_credential)
{
        cr_assert_eq(parse("http://a:8081/x@y"), 1, "%s", err);
        cr_assert_str_eq(urls[0], "http://a:8081/x@y");
}

Test(urls, refuses_other_schemes_empty_lists_and_missing_hosts)
{
        cr_assert_eq(parse("ftp://a"), -1);
        cr_assert_str_eq(err,
                         "schema_registry.url: URL 1 is not http:// or https://");
        cr_assert_eq(parse(" , "), -1);
        cr_assert_str_eq(err, "schema_registry.url: empty");
        cr_assert_eq(parse("http://a,http:///x"), -1);
        cr_assert_str_eq(err, "schema_registry.url: URL 2 has no host");
}

Test(urls, refuses_more_urls_than_fit)
{
        cr_assert_eq(parse("http://1,http://2,http://3,http://4,http://5,"
                           "http://6,http://7,http://8,http://9"),
                     -1);
        cr_assert_str_eq(err, "schema_registry.url: more than 8 URLs");
}

Test(urls, refuses_a_url_longer_than_the_buffer)
{
        char list[SG_SCHEMAREG_URL_LEN + 16];

        memset(list, 'a', sizeof(list) - 1);
        memcpy(list, "http://", 7);
        list[sizeof(list) - 1] = '\0';
        cr_assert_eq(parse(list), -1);
        cr_assert_str_eq(err, "schema_registry.url: URL 1 longer than 511 "
                              "bytes");
}

Test(backoff, doubles_from_the_first_delay_up_to_the_cap)
{
        int want[] = {200, 400, 800, 1600, 3200, 6400, 10000, 10000};

        for (int i = 0; i < 8; i++)
                cr_assert_eq(sg_schemareg_backoff_ms(i, 200, 10000), want[i],
                             "attempt %d", i);
        cr_assert_eq(sg_schemareg_backoff_ms(1000000, 200, 10000), 10000);
        cr_assert_eq(sg_schemareg_backoff_ms(0, 500, 100), 100);
}

Test(parse, reads_a_schema_and_accepts_avro_or_no_type)
{
        const char *b1 = "{\"schema\":\"{\\\"type\\\":\\\"string\\\"}\"}";
        const char *b2 = "{\"schema\":\"\\\"long\\\"\",\"schemaType\":\"AVRO\","
                         "\"references\":[]}";
        char *s = NULL;

        cr_assert_eq(sg_schemareg_parse_schema(b1, strlen(b1), &s, err,
                                               sizeof(err)),
                     0, "%s", err);
        cr_assert_str_eq(s, "{\"type\":\"string\"}");
        free(s);
        cr_assert_eq(sg_schemareg_parse_schema(b2, strlen(b2), &s, err,
                                               sizeof(err)),
                     0, "%s", err);
        cr_assert_str_eq(s, "\"long\"");
        free(s);
}

Test(parse, refuses_protobuf_and_bodies_that_are_not_the_api)
{
        const char *pb = "{\"schema\":\"syntax\",\"schemaType\":\"PROTOBUF\"}";
        char *s = (char *)1;

        cr_assert_eq(sg_schemareg_parse_schema(pb, strlen(pb), &s, err,
                                               sizeof(err)),
                     -2);
        cr_assert_null(s);
        cr_assert_str_eq(err, "schemaType PROTOBUF, not AVRO");
        cr_assert_eq(sg_schemareg_parse_schema("[1]", 3, &s, err, sizeof(err)),
                     -1);
        cr_assert_str_eq(err, "response is not a JSON object");
        cr_assert_eq(sg_schemareg_parse_schema("{\"schema\":1}", 12, &s, err,
                                               sizeof(err)),
                     -1);
        cr_assert_str_eq(err, "response has no string \"schema\"");
        cr_assert_eq(sg_schemareg_parse_schema("<html>", 6, &s, err,
                                               sizeof(err)),
                     -1);
        cr_assert(strncmp(err, "response is not JSON: ", 22) == 0, "%s", err);
}

Test(parse, reads_ids_within_32_bits)
{
        uint32_t id = 0;

        cr_assert_eq(sg_schemareg_parse_id("{\"id\":4294967295}", 17, &id, err,
                                           sizeof(err)),
                     0);
        cr_assert_eq(id, 4294967295u);
        cr_assert_eq(sg_schemareg_parse_id("{\"id\":4294967296}", 17, &id, err,
                                           sizeof(err)),
                     -1);
        cr_assert_eq(sg_schemareg_parse_id("{\"id\":-1}", 9, &id, err,
                                           sizeof(err)),
                     -1);
        cr_assert_eq(sg_schemareg_parse_id("{\"id\":\"7\"}", 10, &id, err,
                                           sizeof(err)),
                     -1);
        cr_assert_str_eq(err, "response has no \"id\" from 0 to 2^32-1");
}

Test(parse, reads_compatibility_and_errors)
{
        const char *e = "{\"error_code\":40403,\"message\":\"Schema not found\"}";
        char msg[64];
        int ok = -1, code = -1;

        cr_assert_eq(sg_schemareg_parse_compat("{\"is_compatible\":false}", 23,
                                               &ok, err, sizeof(err)),
                     0);
        cr_assert_eq(ok, 0);
        cr_assert_eq(sg_schemareg_parse_compat("{\"is_compatible\":true}", 22,
                                               &ok, err, sizeof(err)),
                     0);
        cr_assert_eq(ok, 1);
        cr_assert_eq(sg_schemareg_parse_compat("{}", 2, &ok, err, sizeof(err)),
                     -1);
        cr_assert_eq(sg_schemareg_parse_error(e, strlen(e), &code, msg,
                                              sizeof(msg)),
                     0);
        cr_assert_eq(code, 40403);
        cr_assert_str_eq(msg, "Schema not found");
        cr_assert_eq(sg_schemareg_parse_error("oops", 4, &code, msg,
                                              sizeof(msg)),
                     -1);
        cr_assert_eq(code, 0);
        cr_assert_str_eq(msg, "");
}

Test(classify, only_an_answer_about_the_request_is_final)
{
        cr_assert_eq(sg_schemareg_classify(200, 0), SG_SR_OK);
        cr_assert_eq(sg_schemareg_classify(404, 40403), SG_SR_NOT_FOUND);
        cr_assert_eq(sg_schemareg_classify(404, 40401), SG_SR_NOT_FOUND);
        cr_assert_eq(sg_schemareg_classify(409, 409), SG_SR_REJECTED);
        cr_assert_eq(sg_schemareg_classify(422, 42201), SG_SR_REJECTED);
        cr_assert_eq(sg_schemareg_classify(401, 40101), SG_SR_UNAVAILABLE);
        cr_assert_eq(sg_schemareg_classify(403, 0), SG_SR_UNAVAILABLE);
        cr_assert_eq(sg_schemareg_classify(500, 50001), SG_SR_UNAVAILABLE);
        cr_assert_eq(sg_schemareg_classify(503, 0), SG_SR_UNAVAILABLE);
}

Test(classify, a_bare_404_is_a_wrong_url_not_a_missing_schema)
{
        /* Apicurio's answer for a path outside its API: error_code 404. */
        cr_assert_eq(sg_schemareg_classify(404, 404), SG_SR_UNAVAILABLE);
        cr_assert_eq(sg_schemareg_classify(404, 0), SG_SR_UNAVAILABLE);
}

Test(client, a_registry_that_refuses_connections_is_unavailable_after_retries)
{
        sg_schemareg_conf_t c = {.timeout_ms = 1000,
                                 .retries = 2,
                                 .backoff_ms = 1,
                                 .backoff_max_ms = 2};
        sg_schemareg_t *r;
        char *schema = (char *)1;

        /* Port 1 on loopback: nothing listens there. */
        snprintf(c.urls, sizeof(c.urls),
                 "http://127.0.0.1:1,http://127.0.0.1:1/b");
        r = sg_schemareg_new(&c, err, sizeof(err));
        cr_assert_not_null(r, "%s", err);
        cr_assert_eq(sg_schemareg_get(r, 5, &schema, err, sizeof(err)),
                     SG_SR_UNAVAILABLE);
        cr_assert_null(schema);
        cr_assert(strncmp(err, "http://127.0.0.1:1", 18) == 0, "%s", err);
        sg_schemareg_destroy(r);
}

Test(client, new_refuses_a_bad_url_list)
{
        sg_schemareg_conf_t c = {.timeout_ms = 1000};

        snprintf(c.urls, sizeof(c.urls), "redis://x");
        cr_assert_null(sg_schemareg_new(&c, err, sizeof(err)));
        cr_assert_str_eq(err,
                         "schema_registry.url: URL 1 is not http:// or https://");
        sg_schemareg_destroy(NULL);
}

/*
 * What goes on the wire: a loopback listener records the one request the
 * client sends (no registry behind it: it answers 404 to anything).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

static int lfd;
static char request[4096];

static void *record_one(void *arg)
{
        static const char reply[] = "HTTP/1.1 404 Not Found\r\n"
                                    "Content-Type: application/json\r\n"
                                    "Content-Length: 41\r\n"
                                    "Connection: close\r\n\r\n"
                                    "{\"error_code\":40403,\"message\":\"not here\"}";
        size_t n = 0;
        int fd = accept(lfd, NULL, NULL);

        (void)arg;
        if (fd < 0)
                return NULL;
        while (n < sizeof(request) - 1 && !strstr(request, "\r\n\r\n")) {
                ssize_t r = read(fd, request + n, sizeof(request) - 1 - n);

                if (r <= 0)
                        break;
                n += (size_t)r;
                request[n] = '\0';
        }
        if (write(fd, reply, sizeof(reply) - 1) < 0)
                n = 0;
        close(fd);
        return NULL;
}

Test(client, sends_basic_auth_and_the_api_media_type)
{
        struct sockaddr_in a = {.sin_family = AF_INET};
        socklen_t alen = sizeof(a);
        sg_schemareg_conf_t c = {.timeout_ms = 5000, .retries = 0};
        sg_schemareg_t *r;
        char *schema = NULL;
        pthread_t t;

        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        lfd = socket(AF_INET, SOCK_STREAM, 0);
        cr_assert_geq(lfd, 0);
        cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
        cr_assert_eq(listen(lfd, 1), 0);
        cr_assert_eq(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
        cr_assert_eq(pthread_create(&t, NULL, record_one, NULL), 0);

        snprintf(c.urls, sizeof(c.urls), "http://127.0.0.1:%d/base/",
                 ntohs(a.sin_port));
        snprintf(c.user, sizeof(c.user), "sg");
        snprintf(c.password, sizeof(c.password), "s3cret");
        r = sg_schemareg_new(&c, err, sizeof(err));
        cr_assert_not_null(r, "%s", err);
        cr_assert_eq(sg_schemareg_get(r, 7, &schema, err, sizeof(err)),
                     SG_SR_NOT_FOUND, "%s", err);
        pthread_join(t, NULL);
        close(lfd);
        sg_schemareg_destroy(r);

        cr_assert(strncmp(request, "GET /base/schemas/ids/7 HTTP/1.1\r\n",
                          34) == 0,
                  "%s", request);
        /* base64("sg:s3cret") */
        cr_assert_not_null(strstr(request, "\r\nAuthorization: Basic "
                                           "c2c6czNjcmV0\r\n"),
                           "%s", request);
        cr_assert_not_null(
            strstr(request, "\r\nAccept: application/vnd.schemaregistry.v1+json, "
                            "application/json\r\n"),
            "%s", request);
        cr_assert_not_null(strstr(err, ": HTTP 404 error_code 40403: not here"),
                           "%s", err);
        cr_assert_null(strstr(err, "s3cret"));
}
