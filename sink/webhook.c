/*
 * A minimal HTTP/1.1 client over a socket (POST, Connection: close): the
 * webhook needs nothing more, and it keeps the sink free of a TLS stack.
 * One worker thread drains a ring of copied bodies.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "stage.h"
#include "webhook.h"

#define MAX_BACKOFF_MS 30000

typedef struct item {
        char *body;
        size_t len;
} item_t;

struct sg_webhook {
        sg_webhook_conf_t conf;
        char host[256], port[8], path[512];
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        item_t *ring;
        int head, cnt, stop;
        sg_counter_t *c_sent, *c_failed, *c_dropped;
};

static int parse_url(sg_webhook_t *w, const char *url)
{
        const char *p, *slash, *colon;
        size_t hl;

        if (strncmp(url, "http://", 7) != 0)
                return -1;
        p = url + 7;
        slash = strchr(p, '/');
        hl = slash ? (size_t)(slash - p) : strlen(p);
        colon = memchr(p, ':', hl);
        if (colon) {
                size_t pl = hl - (size_t)(colon - p) - 1;

                if (pl == 0 || pl >= sizeof(w->port) ||
                    strspn(colon + 1, "0123456789") < pl)
                        return -1;
                snprintf(w->port, sizeof(w->port), "%.*s", (int)pl, colon + 1);
                hl = (size_t)(colon - p);
        } else {
                snprintf(w->port, sizeof(w->port), "80");
        }
        if (hl == 0 || hl >= sizeof(w->host))
                return -1;
        snprintf(w->host, sizeof(w->host), "%.*s", (int)hl, p);
        snprintf(w->path, sizeof(w->path), "%s", slash ? slash : "/");
        return 0;
}

static int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for fd to be ready for events until the deadline. */
static int wait_fd(int fd, short events, int64_t deadline)
{
        struct pollfd pfd = {fd, events, 0};
        int64_t left = deadline - now_ms();

        if (left <= 0)
                return -1;
        return poll(&pfd, 1, (int)left) == 1 ? 0 : -1;
}

/* One POST: 0 on a 2xx answer, else -1 with why. */
static int post_once(sg_webhook_t *w, const item_t *it, char *why, size_t size)
{
        struct addrinfo hints, *res = NULL;
        int64_t deadline = now_ms() + w->conf.timeout_ms;
        char head[1024], resp[64];
        size_t off = 0, hlen;
        int fd = -1, rc = -1, status = 0, err;
        ssize_t n;

        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        if ((err = getaddrinfo(w->host, w->port, &hints, &res)) != 0) {
                snprintf(why, size, "resolve: %s", gai_strerror(err));
                return -1;
        }
        fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (fd < 0 || (connect(fd, res->ai_addr, res->ai_addrlen) == -1 &&
                       errno != EINPROGRESS)) {
                snprintf(why, size, "connect: %s", strerror(errno));
                goto out;
        }
        if (wait_fd(fd, POLLOUT, deadline) == -1) {
                snprintf(why, size, "connect: timeout");
                goto out;
        }
        {
                int so = 0;
                socklen_t sl = sizeof(so);

                getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl);
                if (so) {
                        snprintf(why, size, "connect: %s", strerror(so));
                        goto out;
                }
        }
        hlen = (size_t)snprintf(head, sizeof(head),
                                "POST %s HTTP/1.1\r\nHost: %s\r\n"
                                "Content-Type: application/json\r\n"
                                "Content-Length: %zu\r\n"
                                "User-Agent: sg-sink\r\n"
                                "Connection: close\r\n\r\n",
                                w->path, w->host, it->len);
        for (int part = 0; part < 2; part++) {
                const char *buf = part ? it->body : head;
                size_t len = part ? it->len : hlen;

                for (off = 0; off < len;) {
                        if (wait_fd(fd, POLLOUT, deadline) == -1) {
                                snprintf(why, size, "send: timeout");
                                goto out;
                        }
                        n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
                        if (n < 0 && errno != EAGAIN && errno != EINTR) {
                                snprintf(why, size, "send: %s",
                                         strerror(errno));
                                goto out;
                        }
                        if (n > 0)
                                off += (size_t)n;
                }
        }
        /* The status line is all we need. */
        for (off = 0; off < sizeof(resp) - 1 && !memchr(resp, '\n', off);) {
                if (wait_fd(fd, POLLIN, deadline) == -1) {
                        snprintf(why, size, "answer: timeout");
                        goto out;
                }
                n = recv(fd, resp + off, sizeof(resp) - 1 - off, 0);
                if (n == 0)
                        break;
                if (n < 0 && errno != EAGAIN && errno != EINTR) {
                        snprintf(why, size, "recv: %s", strerror(errno));
                        goto out;
                }
                if (n > 0)
                        off += (size_t)n;
        }
        resp[off] = '\0';
        if (sscanf(resp, "HTTP/%*s %d", &status) != 1) {
                snprintf(why, size, "answer: not HTTP");
                goto out;
        }
        if (status < 200 || status > 299) {
                snprintf(why, size, "answer: status %d", status);
                goto out;
        }
        rc = 0;
out:
        if (fd >= 0)
                close(fd);
        freeaddrinfo(res);
        return rc;
}

static void *worker(void *opaque)
{
        sg_webhook_t *w = opaque;

        for (;;) {
                item_t it;
                int delay = w->conf.backoff_ms, ok = 0;
                char why[256] = "";

                pthread_mutex_lock(&w->lock);
                while (!w->cnt && !w->stop)
                        pthread_cond_wait(&w->cond, &w->lock);
                if (w->stop) {
                        pthread_mutex_unlock(&w->lock);
                        break;
                }
                it = w->ring[w->head];
                w->head = (w->head + 1) % w->conf.queue;
                w->cnt--;
                pthread_mutex_unlock(&w->lock);

                for (int attempt = 0; attempt <= w->conf.retries; attempt++) {
                        if (post_once(w, &it, why, sizeof(why)) == 0) {
                                ok = 1;
                                break;
                        }
                        if (attempt == w->conf.retries)
                                break;
                        sg_debug("event=webhook_retry attempt=%d delay_ms=%d "
                                 "err=\"%s\"",
                                 attempt + 1, delay, why);
                        /* The backoff ends early when the sink stops. */
                        for (int slept = 0;
                             slept < delay &&
                             !__atomic_load_n(&w->stop, __ATOMIC_RELAXED);
                             slept += 50)
                                sg_sleep_ms(50);
                        if (__atomic_load_n(&w->stop, __ATOMIC_RELAXED))
                                break;
                        delay = delay * 2 > MAX_BACKOFF_MS ? MAX_BACKOFF_MS
                                                           : delay * 2;
                }
                if (ok) {
                        sg_counter_add(w->c_sent, 1);
                } else {
                        sg_counter_add(w->c_failed, 1);
                        sg_warn("event=webhook_failed retries=%d err=\"%s\"",
                                w->conf.retries, why);
                }
                free(it.body);
        }
        return NULL;
}

sg_webhook_t *sg_webhook_new(const sg_webhook_conf_t *conf, char *errstr,
                             size_t errstr_size)
{
        sg_webhook_t *w = calloc(1, sizeof(*w));

        if (!w) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        w->conf = *conf;
        if (parse_url(w, conf->url) == -1) {
                snprintf(errstr, errstr_size,
                         "sink.webhook_url: \"%s\" is not http://host[:port]"
                         "[/path]",
                         conf->url);
                free(w);
                return NULL;
        }
        w->conf.url = NULL; /* not kept */
        w->ring = calloc((size_t)conf->queue, sizeof(*w->ring));
        if (!w->ring) {
                free(w);
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->cond, NULL);
        w->c_sent = sg_counter("webhook_total{result=\"sent\"}");
        w->c_failed = sg_counter("webhook_total{result=\"failed\"}");
        w->c_dropped = sg_counter("webhook_total{result=\"dropped\"}");
        if (pthread_create(&w->thread, NULL, worker, w) != 0) {
                snprintf(errstr, errstr_size,
                         "cannot start the webhook "
                         "thread");
                pthread_mutex_destroy(&w->lock);
                pthread_cond_destroy(&w->cond);
                free(w->ring);
                free(w);
                return NULL;
        }
        return w;
}

void sg_webhook_destroy(sg_webhook_t *w)
{
        int left;

        if (!w)
                return;
        pthread_mutex_lock(&w->lock);
        w->stop = 1;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
        left = w->cnt;
        for (; w->cnt; w->cnt--) {
                free(w->ring[w->head].body);
                w->head = (w->head + 1) % w->conf.queue;
        }
        if (left)
                sg_warn("event=webhook_dropped count=%d why=stopping", left);
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->cond);
        free(w->ring);
        free(w);
}

int sg_webhook_post(sg_webhook_t *w, const char *body, size_t len)
{
        char *copy = malloc(len + 1);
        int full;

        if (copy) {
                memcpy(copy, body, len);
                copy[len] = '\0';
        }
        pthread_mutex_lock(&w->lock);
        full = !copy || w->cnt == w->conf.queue;
        if (!full) {
                w->ring[(w->head + w->cnt) % w->conf.queue] =
                    (item_t){copy, len};
                w->cnt++;
                pthread_cond_signal(&w->cond);
        }
        pthread_mutex_unlock(&w->lock);
        if (full) {
                free(copy);
                sg_counter_add(w->c_dropped, 1);
                sg_warn("event=webhook_dropped count=1 why=queue_full "
                        "queue=%d",
                        w->conf.queue);
                return -1;
        }
        return 0;
}
