/*
 * Metrics exposition (Prometheus text 0.0.4, exact text) and the HTTP
 * endpoint that serves it. Criterion runs each test in its own process, so
 * every test starts with empty tables.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "http.h"
#include "metrics.h"

static char *expose(void)
{
        size_t len = 0;
        char *text = sg_metrics_expose(&len);

        cr_assert_not_null(text);
        cr_assert_eq(strlen(text), len);
        return text;
}

Test(metrics, counters_carry_prefix_stage_label_help_and_type)
{
        char *text;

        sg_metrics_init("ingest");
        sg_counter_add(
            sg_counter("events_total{type=\"click\",result=\"accepted\"}"), 3);
        sg_counter_add(sg_counter("deadletter_total{reason=\"bad_value\"}"), 2);
        /* Looked up again: the same series. */
        sg_counter_add(
            sg_counter("events_total{type=\"click\",result=\"accepted\"}"), 1);
        sg_counter_add(sg_counter("events_total{type=\"click\",result="
                                  "\"rejected\"}"),
                       0);
        text = expose();
        cr_assert_str_eq(
            text,
            "# HELP spendguard_events_total Input records by type and what "
            "became of them (ingest: accepted, rejected; aggregate: applied, "
            "redelivered, late, undecodable; rules: evaluated, undecodable; "
            "sink: delivered, duplicate, skipped, undecodable).\n"
            "# TYPE spendguard_events_total counter\n"
            "spendguard_events_total{stage=\"ingest\",type=\"click\","
            "result=\"accepted\"} 4\n"
            "spendguard_events_total{stage=\"ingest\",type=\"click\","
            "result=\"rejected\"} 0\n"
            "# HELP spendguard_deadletter_total Records sent to the "
            "dead-letter topic, by reason.\n"
            "# TYPE spendguard_deadletter_total counter\n"
            "spendguard_deadletter_total{stage=\"ingest\",reason="
            "\"bad_value\"} 2\n");
        cr_assert_eq(sg_counter_value("deadletter_total{reason=\"bad_value\"}"),
                     2);
        free(text);
}

Test(metrics, series_without_labels_and_without_stage_have_no_braces)
{
        char *text;

        sg_counter_add(sg_counter("redis_scripts_total"), 7);
        text = expose();
        cr_assert_str_eq(text, "# HELP spendguard_redis_scripts_total Batch "
                               "apply script calls.\n"
                               "# TYPE spendguard_redis_scripts_total counter\n"
                               "spendguard_redis_scripts_total 7\n");
        free(text);
}

Test(metrics, gauges_set_add_and_hide)
{
        sg_gauge_t *kol, *search, *lag;
        char *text;

        sg_metrics_init("rules");
        kol = sg_gauge("breaker_state{channel=\"kol\"}");
        search = sg_gauge("breaker_state{channel=\"search\"}");
        lag = sg_gauge("consumer_lag{topic=\"sg.events\",partition=\"0\"}");
        sg_gauge_set(kol, 1);
        sg_gauge_set(search, 2);
        sg_gauge_add(search, -2);
        sg_gauge_set(lag, 12.5);
        sg_gauge_add(lag, 0.25);
        cr_assert_eq(sg_gauge_get(lag), 12.75);
        text = expose();
        cr_assert_str_eq(
            text,
            "# HELP spendguard_breaker_state Circuit breaker per channel: 0 "
            "closed, 1 open, 2 half-open.\n"
            "# TYPE spendguard_breaker_state gauge\n"
            "spendguard_breaker_state{stage=\"rules\",channel=\"kol\"} 1\n"
            "spendguard_breaker_state{stage=\"rules\",channel=\"search\"} 0\n"
            "# HELP spendguard_consumer_lag Messages behind the high "
            "watermark (high watermark - position), by topic and "
            "partition.\n"
            "# TYPE spendguard_consumer_lag gauge\n"
            "spendguard_consumer_lag{stage=\"rules\",topic=\"sg.events\","
            "partition=\"0\"} 12.75\n");
        free(text);

        /* A hidden gauge is left out until it is set again. */
        sg_gauge_hide(lag);
        text = expose();
        cr_assert_null(strstr(text, "spendguard_consumer_lag{"), "%s", text);
        free(text);
        sg_gauge_set(lag, 3);
        text = expose();
        cr_assert_not_null(strstr(text, "spendguard_consumer_lag{stage=\"rules"
                                        "\",topic=\"sg.events\",partition="
                                        "\"0\"} 3\n"),
                           "%s", text);
        free(text);
}

Test(metrics, histogram_buckets_are_cumulative_and_inclusive)
{
        static const double bounds[] = {0.25, 0.5, 1};
        sg_histogram_t *h;
        char *text;

        sg_metrics_init("aggregate");
        h = sg_histogram("redis_latency_seconds", bounds, 3);
        cr_assert_not_null(h);
        /* The same name again: the same histogram, bounds ignored. */
        cr_assert_eq(sg_histogram("redis_latency_seconds", bounds, 2), h);
        sg_histogram_observe(h, 0.125);
        sg_histogram_observe(h, 0.5); /* le is "less than or equal" */
        sg_histogram_observe(h, 0.75);
        sg_histogram_observe(h, 4);
        text = expose();
        cr_assert_str_eq(
            text,
            "# HELP spendguard_redis_latency_seconds Redis round-trip time "
            "(one command, or one pipeline).\n"
            "# TYPE spendguard_redis_latency_seconds histogram\n"
            "spendguard_redis_latency_seconds_bucket{stage=\"aggregate\","
            "le=\"0.25\"} 1\n"
            "spendguard_redis_latency_seconds_bucket{stage=\"aggregate\","
            "le=\"0.5\"} 2\n"
            "spendguard_redis_latency_seconds_bucket{stage=\"aggregate\","
            "le=\"1\"} 3\n"
            "spendguard_redis_latency_seconds_bucket{stage=\"aggregate\","
            "le=\"+Inf\"} 4\n"
            "spendguard_redis_latency_seconds_sum{stage=\"aggregate\"} "
            "5.375\n"
            "spendguard_redis_latency_seconds_count{stage=\"aggregate\"} 4\n");
        free(text);
}

Test(metrics, histogram_with_labels_puts_le_last)
{
        static const double bounds[] = {0.1};
        sg_histogram_t *h =
            sg_histogram("batch_duration_seconds{topic=\"t\"}", bounds, 1);
        char *text;

        sg_metrics_init("sink");
        sg_histogram_observe(h, 0.1);
        text = expose();
        cr_assert_not_null(
            strstr(text, "spendguard_batch_duration_seconds_bucket{stage="
                         "\"sink\",topic=\"t\",le=\"0.1\"} 1\n"
                         "spendguard_batch_duration_seconds_bucket{stage="
                         "\"sink\",topic=\"t\",le=\"+Inf\"} 1\n"
                         "spendguard_batch_duration_seconds_sum{stage="
                         "\"sink\",topic=\"t\"} 0.1\n"
                         "spendguard_batch_duration_seconds_count{stage="
                         "\"sink\",topic=\"t\"} 1\n"),
            "%s", text);
        free(text);
}

Test(metrics, rejects_unordered_or_too_many_bounds)
{
        static const double bad[] = {0.5, 0.25};
        double many[SG_METRICS_BUCKETS + 1];

        for (int i = 0; i <= SG_METRICS_BUCKETS; i++)
                many[i] = i + 1;
        cr_assert_null(sg_histogram("h1", bad, 2));
        cr_assert_null(sg_histogram("h2", many, SG_METRICS_BUCKETS + 1));
        cr_assert_null(sg_histogram("h3", many, 0));
}

Test(metrics, families_stay_grouped_whatever_the_creation_order)
{
        char *text;

        sg_counter_add(sg_counter("decisions_total{action=\"PAUSE\",rule="
                                  "\"cpa_overrun\"}"),
                       1);
        sg_counter_add(sg_counter("deadletter_total{reason=\"late\"}"), 1);
        sg_counter_add(sg_counter("decisions_total{action=\"ALERT\",rule="
                                  "\"ctr_floor\"}"),
                       2);
        text = expose();
        cr_assert_str_eq(text,
                         "# HELP spendguard_decisions_total Decisions emitted "
                         "(rules) or delivered (sink), by action and rule.\n"
                         "# TYPE spendguard_decisions_total counter\n"
                         "spendguard_decisions_total{action=\"PAUSE\",rule="
                         "\"cpa_overrun\"} 1\n"
                         "spendguard_decisions_total{action=\"ALERT\",rule="
                         "\"ctr_floor\"} 2\n"
                         "# HELP spendguard_deadletter_total Records sent to "
                         "the dead-letter topic, by reason.\n"
                         "# TYPE spendguard_deadletter_total counter\n"
                         "spendguard_deadletter_total{reason=\"late\"} 1\n");
        free(text);
}

Test(metrics, name_escapes_label_values)
{
        char buf[128];

        cr_assert_eq(sg_metrics_name(buf, sizeof(buf), "breaker_state",
                                     "channel", "a\"b\\c\nd", NULL),
                     0);
        cr_assert_str_eq(buf, "breaker_state{channel=\"a\\\"b\\\\c\\nd\"}");
        cr_assert_eq(sg_metrics_name(buf, sizeof(buf), "consumer_lag", "topic",
                                     "sg.events", "partition", "3", NULL),
                     0);
        cr_assert_str_eq(buf,
                         "consumer_lag{topic=\"sg.events\",partition=\"3\"}");
        cr_assert_eq(sg_metrics_name(buf, sizeof(buf), "x_total", NULL), 0);
        cr_assert_str_eq(buf, "x_total");
        cr_assert_eq(
            sg_metrics_name(buf, 10, "breaker_state", "channel", "kol", NULL),
            -1);
        cr_assert_str_eq(buf, "");
}

Test(metrics, unknown_family_gets_a_type_line_only)
{
        char *text;

        sg_gauge_set(sg_gauge("something_else"), -1.5);
        text = expose();
        cr_assert_str_eq(text, "# TYPE spendguard_something_else gauge\n"
                               "spendguard_something_else -1.5\n");
        free(text);
}

/* ------------------------------------------------------------------- http */

Test(http, parses_listen_values)
{
        char host[64], err[256];
        int port = -1;

        cr_assert_eq(sg_http_parse_listen("off", 9731, host, sizeof(host),
                                          &port, err, sizeof(err)),
                     1);
        cr_assert_eq(sg_http_parse_listen("127.0.0.1", 9731, host, sizeof(host),
                                          &port, err, sizeof(err)),
                     0);
        cr_assert_str_eq(host, "127.0.0.1");
        cr_assert_eq(port, 9731);
        cr_assert_eq(sg_http_parse_listen("0.0.0.0:9000", 9731, host,
                                          sizeof(host), &port, err,
                                          sizeof(err)),
                     0);
        cr_assert_str_eq(host, "0.0.0.0");
        cr_assert_eq(port, 9000);
        cr_assert_eq(sg_http_parse_listen("[::1]:9", 0, host, sizeof(host),
                                          &port, err, sizeof(err)),
                     0);
        cr_assert_str_eq(host, "::1");
        cr_assert_eq(port, 9);
        cr_assert_eq(sg_http_parse_listen("[::1]", 9734, host, sizeof(host),
                                          &port, err, sizeof(err)),
                     0);
        cr_assert_eq(port, 9734);
        cr_assert_eq(sg_http_parse_listen("localhost", 0, host, sizeof(host),
                                          &port, err, sizeof(err)),
                     -1);
        cr_assert_not_null(strstr(err, "no default port"), "%s", err);
        for (const char *const *bad =
                 (const char *const[]){"::1", "h:", "h:70000", "h:1x", ":80",
                                       "[::1", "[::1]x", "", NULL};
             *bad; bad++)
                cr_assert_eq(sg_http_parse_listen(*bad, 9731, host,
                                                  sizeof(host), &port, err,
                                                  sizeof(err)),
                             -1, "accepted \"%s\"", *bad);
}

static int not_ready(char *why, size_t size)
{
        snprintf(why, size, "redis not connected");
        return 0;
}

/* One HTTP/1.0 request; the whole response into buf. Returns the status. */
static int request(int port, const char *method, const char *path, char *buf,
                   size_t size)
{
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)port)};
        char req[256];
        size_t n = 0;
        int fd = socket(AF_INET, SOCK_STREAM, 0), status = -1;

        cr_assert_neq(fd, -1);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: t\r\n\r\n", method,
                 path);
        cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
        for (;;) {
                ssize_t r = read(fd, buf + n, size - 1 - n);
                if (r <= 0)
                        break;
                n += (size_t)r;
        }
        buf[n] = '\0';
        close(fd);
        sscanf(buf, "HTTP/1.%*d %d", &status);
        return status;
}

Test(http, serves_metrics_health_and_readiness)
{
        char err[256], buf[8192];
        sg_http_t *h;
        int port;

        sg_metrics_init("ingest");
        sg_counter_add(sg_counter("redis_scripts_total"), 5);
        h = sg_http_new("127.0.0.1", 0, not_ready, err, sizeof(err));
        cr_assert_not_null(h, "%s", err);
        port = sg_http_port(h);
        cr_assert_gt(port, 0);

        cr_assert_eq(request(port, "GET", "/healthz", buf, sizeof(buf)), 200);
        cr_assert_not_null(strstr(buf, "\r\n\r\nok\n"), "%s", buf);

        cr_assert_eq(request(port, "GET", "/readyz", buf, sizeof(buf)), 503);
        cr_assert_not_null(strstr(buf, "\r\n\r\nnot ready: redis not "
                                       "connected\n"),
                           "%s", buf);

        cr_assert_eq(request(port, "GET", "/metrics", buf, sizeof(buf)), 200);
        cr_assert_not_null(
            strstr(buf, "Content-Type: text/plain; version=0.0.4"), "%s", buf);
        cr_assert_not_null(strstr(buf, "\r\n\r\n# HELP "
                                       "spendguard_redis_scripts_total"),
                           "%s", buf);
        cr_assert_not_null(
            strstr(buf, "\nspendguard_redis_scripts_total{stage=\"ingest\"} "
                        "5\n"),
            "%s", buf);

        cr_assert_eq(request(port, "GET", "/nope", buf, sizeof(buf)), 404);
        cr_assert_eq(request(port, "POST", "/metrics", buf, sizeof(buf)), 405);
        cr_assert_not_null(strstr(buf, "Allow: GET, HEAD"), "%s", buf);
        sg_http_destroy(h);
}

Test(http, ready_without_a_callback_and_a_busy_port_fails_cleanly)
{
        char err[256], buf[4096];
        sg_http_t *h = sg_http_new("127.0.0.1", 0, NULL, err, sizeof(err));
        sg_http_t *h2;

        cr_assert_not_null(h, "%s", err);
        cr_assert_eq(
            request(sg_http_port(h), "GET", "/readyz", buf, sizeof(buf)), 200);
        h2 = sg_http_new("127.0.0.1", sg_http_port(h), NULL, err, sizeof(err));
        cr_assert_null(h2);
        cr_assert_not_null(strstr(err, "Address already in use"), "%s", err);
        sg_http_destroy(h);
        sg_http_destroy(NULL);
}
