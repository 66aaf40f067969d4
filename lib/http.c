#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "http.h"
#include "log.h"
#include "metrics.h"

struct sg_http {
        struct MHD_Daemon *d;
        sg_http_ready_fn *ready;
        sg_http_page_fn *page;
        void *opaque;
        int port;
};

int sg_http_parse_listen(const char *listen, int default_port, char *host,
                         size_t host_size, int *port, char *errstr,
                         size_t errstr_size)
{
        const char *colon, *h = listen;
        size_t hlen;

        if (strcmp(listen, "off") == 0)
                return 1;
        if (*listen == '[') {
                const char *end = strchr(listen, ']');

                if (!end || (end[1] && end[1] != ':'))
                        goto bad;
                h = listen + 1;
                hlen = (size_t)(end - h);
                colon = end[1] ? end + 1 : NULL;
        } else {
                colon = strrchr(listen, ':');
                if (colon && strchr(listen, ':') != colon)
                        goto bad; /* a bare IPv6 address needs brackets */
                hlen = colon ? (size_t)(colon - listen) : strlen(listen);
        }
        if (hlen == 0 || hlen >= host_size)
                goto bad;
        memcpy(host, h, hlen);
        host[hlen] = '\0';
        if (colon) {
                char *end;
                long p = strtol(colon + 1, &end, 10);

                if (!colon[1] || *end || p < 0 || p > 65535)
                        goto bad;
                *port = (int)p;
        } else {
                if (default_port <= 0) {
                        snprintf(errstr, errstr_size,
                                 "\"%s\": no default port for this program, "
                                 "give host:port",
                                 listen);
                        return -1;
                }
                *port = default_port;
        }
        return 0;
bad:
        snprintf(errstr, errstr_size,
                 "\"%s\" is not off, host or host:port ([addr]:port for IPv6)",
                 listen);
        return -1;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned int status,
                             const char *type, char *body, size_t len,
                             enum MHD_ResponseMemoryMode mode)
{
        struct MHD_Response *r =
            MHD_create_response_from_buffer(len, body, mode);
        enum MHD_Result rc;

        if (!r)
                return MHD_NO;
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
                MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
        rc = MHD_queue_response(conn, status, r);
        MHD_destroy_response(r);
        return rc;
}

#define TEXT "text/plain; charset=utf-8"

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **state)
{
        sg_http_t *h = cls;

        if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
            strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
                return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, TEXT,
                             "method not allowed\n", 19,
                             MHD_RESPMEM_PERSISTENT);
        if (strcmp(url, "/metrics") == 0) {
                size_t len;
                char *body = sg_metrics_expose(&len);

                if (!body)
                        return reply(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, TEXT,
                                     "out of memory\n", 14,
                                     MHD_RESPMEM_PERSISTENT);
                /* MHD frees it with free(). */
                return reply(conn, MHD_HTTP_OK,
                             "text/plain; version=0.0.4; charset=utf-8", body,
                             len, MHD_RESPMEM_MUST_FREE);
        }
        if (strcmp(url, "/healthz") == 0)
                return reply(conn, MHD_HTTP_OK, TEXT, "ok\n", 3,
                             MHD_RESPMEM_PERSISTENT);
        if (strcmp(url, "/readyz") == 0) {
                char why[256], body[300];
                int n;

                why[0] = '\0';
                if (!h->ready || h->ready(why, sizeof(why)))
                        return reply(conn, MHD_HTTP_OK, TEXT, "ready\n", 6,
                                     MHD_RESPMEM_PERSISTENT);
                n = snprintf(body, sizeof(body), "not ready: %s\n", why);
                if (n < 0 || (size_t)n >= sizeof(body))
                        n = (int)strlen(body);
                return reply(conn, MHD_HTTP_SERVICE_UNAVAILABLE, TEXT, body,
                             (size_t)n, MHD_RESPMEM_MUST_COPY);
        }
        if (h->page) {
                const char *type = TEXT;
                char *body = NULL;
                size_t len = 0;
                int status = h->page(h->opaque, url, &body, &len, &type);

                if (status > 0 && body)
                        return reply(conn, (unsigned int)status, type, body,
                                     len, MHD_RESPMEM_MUST_FREE);
                free(body);
        }
        return reply(conn, MHD_HTTP_NOT_FOUND, TEXT, "not found\n", 10,
                     MHD_RESPMEM_PERSISTENT);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
        char msg[512], q[600];
        size_t n;

        vsnprintf(msg, sizeof(msg), fmt, ap);
        n = strlen(msg);
        while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
                msg[--n] = '\0';
        sg_warn("event=http_error msg=%s", sg_log_quote(q, sizeof(q), msg));
}

/* A listening socket on host:port, or -1 with errstr. */
static int listen_on(const char *host, int port, int *bound, char *errstr,
                     size_t errstr_size)
{
        struct addrinfo hints, *res = NULL;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        char svc[16];
        int fd = -1, one = 1, rc;

        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE;
        snprintf(svc, sizeof(svc), "%d", port);
        rc = getaddrinfo(host, svc, &hints, &res);
        if (rc != 0) {
                snprintf(errstr, errstr_size, "%s: %s", host, gai_strerror(rc));
                return -1;
        }
        fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC,
                    res->ai_protocol);
        if (fd == -1)
                goto err;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, res->ai_addr, res->ai_addrlen) == -1 ||
            listen(fd, 64) == -1 ||
            getsockname(fd, (struct sockaddr *)&ss, &sl) == -1)
                goto err;
        *bound = ntohs(ss.ss_family == AF_INET6
                           ? ((struct sockaddr_in6 *)&ss)->sin6_port
                           : ((struct sockaddr_in *)&ss)->sin_port);
        freeaddrinfo(res);
        return fd;
err:
        snprintf(errstr, errstr_size, "cannot listen on %s:%d: %s", host, port,
                 strerror(errno));
        if (fd != -1)
                close(fd);
        freeaddrinfo(res);
        return -1;
}

sg_http_t *sg_http_new(const char *host, int port, sg_http_ready_fn *ready,
                       char *errstr, size_t errstr_size)
{
        return sg_http_new_pages(host, port, ready, NULL, NULL, errstr,
                                 errstr_size);
}

sg_http_t *sg_http_new_pages(const char *host, int port,
                             sg_http_ready_fn *ready, sg_http_page_fn *page,
                             void *opaque, char *errstr, size_t errstr_size)
{
        sg_http_t *h = calloc(1, sizeof(*h));
        sigset_t block, old;
        int fd;

        if (!h) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        h->ready = ready;
        h->page = page;
        h->opaque = opaque;
        fd = listen_on(host, port, &h->port, errstr, errstr_size);
        if (fd == -1)
                goto err;
        /* The stop signals belong to the stage thread: the server thread
         * is created with them blocked. */
        sigemptyset(&block);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGHUP);
        sigaddset(&block, SIGALRM);
        pthread_sigmask(SIG_BLOCK, &block, &old);
        h->d = MHD_start_daemon(
            MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
            on_request, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
            MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT,
            (unsigned int)32, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10,
            MHD_OPTION_END);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (!h->d) {
                snprintf(errstr, errstr_size,
                         "cannot start the HTTP server on %s:%d", host, port);
                close(fd);
                goto err;
        }
        return h;
err:
        free(h);
        return NULL;
}

void sg_http_destroy(sg_http_t *h)
{
        if (!h)
                return;
        /* Closes the listening socket too. */
        MHD_stop_daemon(h->d);
        free(h);
}

int sg_http_port(const sg_http_t *h)
{
        return h->port;
}
