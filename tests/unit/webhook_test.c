/*
 * The sink's webhook against a tiny HTTP server on a thread: a POST is
 * retried until it succeeds, and a full queue drops (and counts) instead
 * of blocking the caller.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "metrics.h"
/* The webhook is part of sg-sink, not of the library. */
#include "../../sink/webhook.c"

typedef struct server {
        int fd, port;
        int fail_first; /* answer 500 to that many requests */
        int hang;       /* accept, never answer */
        int accepted, ok;
        char last_body[512];
        pthread_t thread;
} server_t;

static void *serve(void *opaque)
{
        server_t *s = opaque;

        for (;;) {
                char buf[4096];
                ssize_t n, got = 0;
                int c = accept(s->fd, NULL, NULL);
                char *body;

                if (c < 0)
                        return NULL;
                __atomic_add_fetch(&s->accepted, 1, __ATOMIC_SEQ_CST);
                if (s->hang) {
                        sleep(5);
                        close(c);
                        continue;
                }
                while ((n = recv(c, buf + got, sizeof(buf) - 1 - got, 0)) > 0) {
                        got += n;
                        buf[got] = '\0';
                        body = strstr(buf, "\r\n\r\n");
                        if (body && strlen(body + 4) >= 2 &&
                            body[strlen(body) - 1] == '}')
                                break;
                }
                buf[got] = '\0';
                body = strstr(buf, "\r\n\r\n");
                if (s->fail_first > 0) {
                        s->fail_first--;
                        dprintf(c, "HTTP/1.1 500 Oops\r\nContent-Length: "
                                   "0\r\n\r\n");
                } else {
                        snprintf(s->last_body, sizeof(s->last_body), "%s",
                                 body ? body + 4 : "");
                        __atomic_add_fetch(&s->ok, 1, __ATOMIC_SEQ_CST);
                        dprintf(c, "HTTP/1.1 204 No Content\r\n\r\n");
                }
                close(c);
        }
}

static void server_start(server_t *s)
{
        struct sockaddr_in a = {0};
        socklen_t len = sizeof(a);

        s->fd = socket(AF_INET, SOCK_STREAM, 0);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        cr_assert_eq(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
        cr_assert_eq(listen(s->fd, 16), 0);
        getsockname(s->fd, (struct sockaddr *)&a, &len);
        s->port = ntohs(a.sin_port);
        pthread_create(&s->thread, NULL, serve, s);
}

static void wait_for(int *v, int want)
{
        for (int i = 0; i < 500 && __atomic_load_n(v, __ATOMIC_SEQ_CST) < want;
             i++)
                usleep(10000);
        cr_assert_geq(__atomic_load_n(v, __ATOMIC_SEQ_CST), want);
}

Test(webhook, rejects_a_url_that_is_not_http)
{
        sg_webhook_conf_t c = {"https://example.com/x", 4, 1000, 0, 10};
        char err[256];

        cr_assert_null(sg_webhook_new(&c, err, sizeof(err)));
        cr_assert_str_eq(err, "sink.webhook_url: \"https://example.com/x\" is "
                              "not http://host[:port][/path]");
}

Test(webhook, retries_with_backoff_until_the_endpoint_answers_2xx)
{
        static server_t s = {.fail_first = 2};
        char url[64], err[256];
        sg_webhook_conf_t c = {url, 4, 2000, 5, 10};
        sg_webhook_t *w;
        uint64_t sent0 = sg_counter_value("webhook_total{result=\"sent\"}");

        server_start(&s);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", s.port);
        w = sg_webhook_new(&c, err, sizeof(err));
        cr_assert_not_null(w, "%s", err);
        cr_assert_eq(sg_webhook_post(w, "{\"action\":\"PAUSE\"}", 18), 0);
        wait_for(&s.ok, 1);
        cr_assert_eq(s.accepted, 3); /* two 500s, then the 204 */
        cr_assert_str_eq(s.last_body, "{\"action\":\"PAUSE\"}");
        sg_webhook_destroy(w);
        cr_assert_eq(sg_counter_value("webhook_total{result=\"sent\"}"),
                     sent0 + 1);
}

Test(webhook, full_queue_drops_and_counts_instead_of_blocking)
{
        static server_t s = {.hang = 1};
        char url[64], err[256];
        sg_webhook_conf_t c = {url, 2, 3000, 0, 10};
        sg_webhook_t *w;
        uint64_t dropped0 =
            sg_counter_value("webhook_total{result=\"dropped\"}");

        server_start(&s);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/", s.port);
        w = sg_webhook_new(&c, err, sizeof(err));
        cr_assert_not_null(w, "%s", err);
        cr_assert_eq(sg_webhook_post(w, "{}", 2), 0);
        wait_for(&s.accepted, 1); /* the worker holds the first */
        cr_assert_eq(sg_webhook_post(w, "{}", 2), 0);
        cr_assert_eq(sg_webhook_post(w, "{}", 2), 0);
        cr_assert_eq(sg_webhook_post(w, "{}", 2), -1); /* queue of 2 full */
        cr_assert_eq(sg_counter_value("webhook_total{result=\"dropped\"}"),
                     dropped0 + 1);
        sg_webhook_destroy(w);
}
