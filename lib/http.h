/*
 * The operations HTTP endpoint of a stage (libmicrohttpd, one thread):
 * GET /metrics (Prometheus text 0.0.4), /healthz (alive) and /readyz
 * (ready to work, else 503 naming what is missing).
 */
#ifndef SG_HTTP_H
#define SG_HTTP_H

#include <stddef.h>

typedef struct sg_http sg_http_t;

/*
 * Readiness: 1 when ready; else 0 with what is missing in why. Called on
 * the HTTP thread, so it must only read thread-safe state.
 */
typedef int(sg_http_ready_fn)(char *why, size_t size);

/*
 * Parses a metrics.listen value: "off", "host" (port = default_port) or
 * "host:port" ("[v6addr]:port" for IPv6). Returns 0 with host and *port
 * filled, 1 for "off", -1 with errstr when malformed or when a port is
 * needed and default_port is 0.
 */
int sg_http_parse_listen(const char *listen, int default_port, char *host,
                         size_t host_size, int *port, char *errstr,
                         size_t errstr_size);

/*
 * Binds host:port (port 0 = any free port) and serves on its own thread.
 * NULL and errstr if the address cannot be resolved or bound.
 */
sg_http_t *sg_http_new(const char *host, int port, sg_http_ready_fn *ready,
                       char *errstr, size_t errstr_size);

/*
 * A program's own pages, asked for every GET the server does not answer
 * itself (anything but /metrics, /healthz, /readyz), on the server thread,
 * one request at a time. Returns the HTTP status with *body (malloc'ed;
 * the server frees it), *len and *type set, or 0 for "no such page" (404).
 */
typedef int(sg_http_page_fn)(void *opaque, const char *url, char **body,
                             size_t *len, const char **type);

/* sg_http_new, with pages (page may be NULL). */
sg_http_t *sg_http_new_pages(const char *host, int port,
                             sg_http_ready_fn *ready, sg_http_page_fn *page,
                             void *opaque, char *errstr, size_t errstr_size);
/* Stops serving, joins the thread, closes the socket. Accepts NULL. */
void sg_http_destroy(sg_http_t *h);

/* The port bound (useful after port 0). */
int sg_http_port(const sg_http_t *h);

#endif
