/*
 * spendguard against a real schema registry: Apicurio Registry's
 * Confluent-compatible API (tools/registry.sh, started once for the whole
 * binary by the runner, stopped by pid at the end). The client's requests,
 * ingest resolving the ids the registry assigned and waiting out a hung
 * registry, the sink registering its output schemas and refusing an
 * incompatible one, and interop with Confluent's own Python serializer
 * and deserializer (tests/registry/produce_events.py and
 * consume_outputs.py, in a cached venv: tools/pyvenv.sh).
 */
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <curl/curl.h>

#include "codec.h"
#include "harness.h"
#include "marker.h"
#include "schemareg.h"

/* ----------------------------------------------- the registry, once */

static pid_t reg_pid;
static char reg_dir[256];

/* Runs in the runner, before any test: builds (first use: Maven Central)
 * and starts the registry, serving http and https (a self-signed
 * certificate for 127.0.0.1, made by openssl), and passes its URLs, the
 * certificate and its pid to the tests in the environment. A failure is
 * reported by every test. */
ReportHook(PRE_ALL)(struct criterion_test_set *set)
{
        char script[512], cmd[1100], path[300], url[256] = "";
        const char *src = getenv("SG_SOURCE_DIR");
        long long deadline;
        sg_schemareg_conf_t c = {.timeout_ms = 1000};
        FILE *fp;

        (void)set;
        snprintf(script, sizeof(script), "%s/tools/registry.sh",
                 src && *src ? src : SG_SOURCE_DIR);
        snprintf(reg_dir, sizeof(reg_dir), "/tmp/sg-registry-test-XXXXXX");
        if (!mkdtemp(reg_dir)) {
                setenv("SG_TEST_REGISTRY_ERR", "mkdtemp failed", 1);
                return;
        }
        snprintf(cmd, sizeof(cmd), "'%s' fetch >'%s/fetch.log' 2>&1", script,
                 reg_dir);
        if (system(cmd) != 0) {
                snprintf(cmd, sizeof(cmd), "tools/registry.sh fetch failed: "
                         "see %s/fetch.log", reg_dir);
                setenv("SG_TEST_REGISTRY_ERR", cmd, 1);
                return;
        }
        snprintf(cmd, sizeof(cmd),
                 "cd '%s' && openssl req -x509 -newkey rsa:2048 -nodes "
                 "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
                 "-days 2 -keyout key.pem -out cert.pem >openssl.log 2>&1",
                 reg_dir);
        if (system(cmd) != 0) {
                snprintf(cmd, sizeof(cmd), "openssl could not make a "
                         "certificate: see %s/openssl.log", reg_dir);
                setenv("SG_TEST_REGISTRY_ERR", cmd, 1);
                return;
        }
        snprintf(path, sizeof(path), "%s/cert.pem", reg_dir);
        setenv("SG_REGISTRY_TLS_CERT", path, 1);
        setenv("SG_TEST_REGISTRY_CA", path, 1);
        snprintf(path, sizeof(path), "%s/key.pem", reg_dir);
        setenv("SG_REGISTRY_TLS_KEY", path, 1);
        reg_pid = fork();
        if (reg_pid == 0) {
                /* run execs the JVM: this pid is the registry's, and it
                 * dies with the runner. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                snprintf(path, sizeof(path), "%s/registry.log", reg_dir);
                if (!freopen(path, "w", stdout) || !freopen(path, "a", stderr))
                        _exit(127);
                execl(script, script, "run", reg_dir, (char *)NULL);
                _exit(127);
        }
        snprintf(path, sizeof(path), "%s/url", reg_dir);
        deadline = h_now_ms() + 120000;
        while (h_now_ms() < deadline && waitpid(reg_pid, NULL, WNOHANG) == 0) {
                sg_schemareg_t *r;
                char *schema = NULL, err[256];
                int up = 0;

                if (!url[0] && (fp = fopen(path, "r"))) {
                        if (!fgets(url, sizeof(url), fp))
                                url[0] = '\0';
                        url[strcspn(url, "\n")] = '\0';
                        fclose(fp);
                }
                if (url[0]) {
                        snprintf(c.urls, sizeof(c.urls), "%s", url);
                        r = sg_schemareg_new(&c, err, sizeof(err));
                        /* An id no one registered: 404 once it serves. */
                        up = r && sg_schemareg_get(r, 2000000000, &schema, err,
                                                   sizeof(err)) ==
                                      SG_SR_NOT_FOUND;
                        sg_schemareg_destroy(r);
                        free(schema);
                }
                if (up) {
                        char pid[32], tls[256];

                        /* Written before url. */
                        snprintf(path, sizeof(path), "%s/tls_url", reg_dir);
                        if ((fp = fopen(path, "r"))) {
                                if (fgets(tls, sizeof(tls), fp)) {
                                        tls[strcspn(tls, "\n")] = '\0';
                                        setenv("SG_TEST_REGISTRY_TLS_URL", tls,
                                               1);
                                }
                                fclose(fp);
                        }
                        snprintf(pid, sizeof(pid), "%d", (int)reg_pid);
                        setenv("SG_TEST_REGISTRY_URL", url, 1);
                        setenv("SG_TEST_REGISTRY_PID", pid, 1);
                        return;
                }
                usleep(200000);
        }
        snprintf(cmd, sizeof(cmd), "the registry did not answer in 120 s: "
                 "see %s/registry.log", reg_dir);
        setenv("SG_TEST_REGISTRY_ERR", cmd, 1);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
        if (reg_pid <= 0)
                return;
        kill(reg_pid, SIGCONT); /* in case a test left it stopped */
        kill(reg_pid, SIGTERM);
        for (int i = 0; i < 300 && waitpid(reg_pid, NULL, WNOHANG) == 0; i++)
                usleep(100000);
        if (waitpid(reg_pid, NULL, WNOHANG) == 0) {
                kill(reg_pid, SIGKILL);
                waitpid(reg_pid, NULL, 0);
        }
        /* Its log is kept only for a failure. */
        if (stats->tests_failed == 0 && stats->tests_crashed == 0) {
                char cmd[300];

                snprintf(cmd, sizeof(cmd), "rm -rf '%s'", reg_dir);
                if (system(cmd) != 0)
                        fprintf(stderr, "could not remove %s\n", reg_dir);
        }
}

/* ------------------------------------------------------------ helpers */

static const char *reg_url(void)
{
        const char *err = getenv("SG_TEST_REGISTRY_ERR");
        const char *url = getenv("SG_TEST_REGISTRY_URL");

        cr_assert(!err, "%s", err);
        cr_assert(url && *url, "no registry");
        return url;
}

static pid_t reg_jvm(void)
{
        const char *pid = getenv("SG_TEST_REGISTRY_PID");

        cr_assert(pid && *pid);
        return (pid_t)atoi(pid);
}

static sg_schemareg_t *client(const char *urls)
{
        sg_schemareg_conf_t c = {.timeout_ms = 5000,
                                 .retries = 2,
                                 .backoff_ms = 50,
                                 .backoff_max_ms = 200};
        char err[256];
        sg_schemareg_t *r;

        snprintf(c.urls, sizeof(c.urls), "%s", urls);
        r = sg_schemareg_new(&c, err, sizeof(err));
        cr_assert_not_null(r, "%s", err);
        return r;
}

static char *read_text(const char *rel)
{
        char path[512];
        static char text[3][16384];
        static int next;
        char *t = text[next++ % 3];
        FILE *fp = fopen(h_src(rel, path, sizeof(path)), "r");
        size_t n;

        cr_assert_not_null(fp, "%s", path);
        n = fread(t, 1, sizeof(text[0]) - 1, fp);
        t[n] = '\0';
        fclose(fp);
        return t;
}

static uint32_t reg_register(const char *subject, const char *schema)
{
        sg_schemareg_t *r = client(reg_url());
        char err[512];
        uint32_t id = 0;

        cr_assert_eq(sg_schemareg_register(r, subject, schema, &id, err,
                                           sizeof(err)),
                     SG_SR_OK, "register %s: %s", subject, err);
        sg_schemareg_destroy(r);
        return id;
}

/* PUT /config/{subject}: the compatibility level (the client never sets
 * one: that is the registry operator's call). */
static void reg_set_compat(const char *subject, const char *level)
{
        char url[512], body[64];
        struct curl_slist *h =
            curl_slist_append(NULL, "Content-Type: application/json");
        CURL *c = curl_easy_init();
        long status = 0;
        FILE *sink = fopen("/dev/null", "w");

        snprintf(url, sizeof(url), "%s/config/%s", reg_url(), subject);
        snprintf(body, sizeof(body), "{\"compatibility\":\"%s\"}", level);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, sink);
        cr_assert_eq(curl_easy_perform(c), CURLE_OK);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        cr_assert_eq(status, 200, "PUT %s: HTTP %ld", url, status);
        curl_easy_cleanup(c);
        curl_slist_free_all(h);
        fclose(sink);
}

/* The test config with the registry (extra: more schema_registry keys). */
static void config_with_registry(const char *extra)
{
        char append[1024];

        snprintf(append, sizeof(append), "schema_registry:\n  url: %s\n%s",
                 reg_url(), extra ? extra : "");
        h_config(NULL, append);
}

static sg_codec_t *codec(void)
{
        char schemas[512], err[256];
        sg_codec_t *c = sg_codec_new(h_src("schemas", schemas,
                                           sizeof(schemas)),
                                     err, sizeof(err));

        cr_assert_not_null(c, "%s", err);
        return c;
}

static void set_frame_id(void *buf, uint32_t id)
{
        uint32_t be = htonl(id);

        memcpy((char *)buf + 1, &be, 4);
}

static uint32_t frame_id(const void *buf)
{
        uint32_t be;

        memcpy(&be, (const char *)buf + 1, 4);
        return ntohl(be);
}

/* n clicks of channel "regc" in the contract Click schema, framed with id,
 * event ids <prefix>-0.. */
static void produce_clicks(sg_codec_t *c, uint32_t id, const char *prefix,
                           int n)
{
        static char buf[4096];
        long long now = (long long)time(NULL) * 1000;

        for (int i = 0; i < n; i++) {
                sg_event_t ev;
                int len;

                memset(&ev, 0, sizeof(ev));
                ev.type = SG_EV_CLICK;
                snprintf(ev.event_id, sizeof(ev.event_id), "%s-%d", prefix, i);
                ev.event_time = now - 60000 + i;
                strcpy(ev.channel, "regc");
                strcpy(ev.campaign_id, "regc-1");
                ev.cost_micros = 1000 + i;
                len = sg_codec_encode_input(c, SG_FMT_AVRO, &ev, buf,
                                            sizeof(buf));
                cr_assert_gt(len, 5, "%s", sg_codec_error(c));
                set_frame_id(buf, id);
                cr_assert_eq(h_produce("ad-clicks", NULL, 0, buf, (size_t)len),
                             0);
        }
}

static int count_msgs(const char *topic, int min, int timeout_ms)
{
        rd_kafka_message_t **msgs;
        int n = h_consume_all(topic, min, timeout_ms, &msgs);

        h_msgs_free(msgs, n);
        return n;
}

/*
 * The events (not ingest's watermark markers) on sg.events once there are
 * want of them, polled until timeout_ms; want 0: what is there now.
 */
static int count_events(int want, int timeout_ms)
{
        long long deadline = h_now_ms() + timeout_ms;
        int events;

        for (;;) {
                rd_kafka_message_t **msgs;
                int n = h_consume_all("sg.events", want, 2000, &msgs);

                events = 0;
                for (int i = 0; i < n; i++) {
                        sg_marker_reader_t mk;
                        char err[128];

                        events += sg_marker_open(msgs[i], &mk, err,
                                                 sizeof(err)) == 0;
                }
                h_msgs_free(msgs, n);
                if (events >= want || h_now_ms() >= deadline)
                        return events;
                usleep(200000);
        }
}

TestSuite(registry, .timeout = 300);

/* --------------------------------------------------------- the client */

Test(registry, client_registers_fetches_and_checks_compatibility)
{
        const char *v1 = "{\"type\":\"record\",\"name\":\"SgTestA\","
                         "\"fields\":[{\"name\":\"a\",\"type\":\"long\"}]}";
        const char *v2 = "{\"type\":\"record\",\"name\":\"SgTestA\","
                         "\"fields\":[{\"name\":\"a\",\"type\":\"long\"},"
                         "{\"name\":\"b\",\"type\":\"string\"}]}";
        char err[512], urls[600];
        sg_schemareg_t *r = client(reg_url());
        char *schema = NULL;
        uint32_t id, again;
        int ok = -1;

        h_init();
        id = reg_register("sg-test-a-value", v1);
        again = reg_register("sg-test-a-value", v1);
        cr_assert_eq(again, id, "registering twice: %u then %u", id, again);
        cr_assert_eq(sg_schemareg_get(r, id, &schema, err, sizeof(err)),
                     SG_SR_OK, "%s", err);
        cr_assert_not_null(strstr(schema, "\"SgTestA\""), "%s", schema);
        free(schema);

        cr_assert_eq(sg_schemareg_get(r, 2000000001, &schema, err,
                                      sizeof(err)),
                     SG_SR_NOT_FOUND);
        cr_assert_null(schema);
        cr_assert_not_null(strstr(err, ": HTTP 404 error_code 40403"), "%s",
                           err);

        /* The same schema is compatible with itself; under BACKWARD a new
         * field without a default is not. */
        reg_set_compat("sg-test-a-value", "BACKWARD");
        cr_assert_eq(sg_schemareg_compatible(r, "sg-test-a-value", v1, &ok,
                                             err, sizeof(err)),
                     SG_SR_OK, "%s", err);
        cr_assert_eq(ok, 1);
        cr_assert_eq(sg_schemareg_compatible(r, "sg-test-a-value", v2, &ok,
                                             err, sizeof(err)),
                     SG_SR_OK, "%s", err);
        cr_assert_eq(ok, 0);
        cr_assert_eq(sg_schemareg_compatible(r, "sg-no-such-subject", v1, &ok,
                                             err, sizeof(err)),
                     SG_SR_NOT_FOUND, "%s", err);
        sg_schemareg_destroy(r);

        /* A dead URL first: the next one answers, and is kept. */
        snprintf(urls, sizeof(urls), "http://127.0.0.1:1,%s", reg_url());
        r = client(urls);
        cr_assert_eq(sg_schemareg_get(r, id, &schema, err, sizeof(err)),
                     SG_SR_OK, "%s", err);
        free(schema);
        cr_assert_str_eq(sg_schemareg_url(r), reg_url());
        sg_schemareg_destroy(r);

        /* The server without the API's path: its 404 is no answer about
         * the id, so records would wait, not be dead-lettered. */
        snprintf(urls, sizeof(urls), "%s", reg_url());
        *strstr(urls, "/apis/ccompat/v6") = '\0';
        r = client(urls);
        cr_assert_eq(sg_schemareg_get(r, id, &schema, err, sizeof(err)),
                     SG_SR_UNAVAILABLE);
        cr_assert_null(schema);
        cr_assert_not_null(strstr(err, " (not the API's answer: is the URL "
                                       "the base of the registry's "
                                       "Confluent API?)"),
                           "%s", err);
        sg_schemareg_destroy(r);
}

/* The registry over https: trusted with schema_registry.ca_file, refused
 * without it (a self-signed certificate no system CA signed). */
Test(registry, client_verifies_the_registry_over_tls_with_the_ca_file)
{
        const char *v = "{\"type\":\"record\",\"name\":\"SgTestTls\","
                        "\"fields\":[{\"name\":\"a\",\"type\":\"int\"}]}";
        const char *tls = getenv("SG_TEST_REGISTRY_TLS_URL");
        const char *ca = getenv("SG_TEST_REGISTRY_CA");
        sg_schemareg_conf_t c = {.timeout_ms = 5000};
        sg_schemareg_t *r;
        char err[512], *schema = NULL;
        uint32_t id;

        reg_url();
        cr_assert(tls && ca, "no https registry");
        cr_assert_eq(strncmp(tls, "https://", 8), 0, "%s", tls);
        id = reg_register("sg-test-tls-value", v);
        snprintf(c.urls, sizeof(c.urls), "%s", tls);
        snprintf(c.ca_file, sizeof(c.ca_file), "%s", ca);
        r = sg_schemareg_new(&c, err, sizeof(err));
        cr_assert_not_null(r, "%s", err);
        cr_assert_eq(sg_schemareg_get(r, id, &schema, err, sizeof(err)),
                     SG_SR_OK, "%s", err);
        cr_assert_not_null(strstr(schema, "SgTestTls"));
        free(schema);
        sg_schemareg_destroy(r);

        c.ca_file[0] = '\0';
        r = sg_schemareg_new(&c, err, sizeof(err));
        cr_assert_not_null(r, "%s", err);
        cr_assert_eq(sg_schemareg_get(r, id, &schema, err, sizeof(err)),
                     SG_SR_UNAVAILABLE);
        cr_assert_null(schema);
        cr_assert_not_null(strstr(err, "SSL peer certificate or SSH remote "
                                       "key was not OK"),
                           "%s", err);
        sg_schemareg_destroy(r);
}

/* ------------------------------------------------------------- ingest */

Test(registry, ingest_reads_registry_ids_and_deadletters_what_it_cannot_resolve)
{
        const char *order = "{\"type\":\"record\",\"name\":\"Order\","
                            "\"fields\":[{\"name\":\"id\",\"type\":\"long\"}]}";
        uint8_t raw[4096];
        char path[512], hbuf[512];
        rd_kafka_message_t **msgs;
        sg_codec_t *c;
        uint32_t click_id, order_id;
        size_t n;
        FILE *fp;
        int cnt, got_unknown = 0, got_order = 0;

        h_init();
        config_with_registry(NULL);
        h_start_infra();
        h_spawn("sg-ingest", NULL);
        click_id = reg_register("ad-clicks-value",
                                read_text("schemas/click.avsc"));
        order_id = reg_register("sg-orders-value", order);
        cr_assert_neq(click_id, order_id);

        c = codec();
        produce_clicks(c, click_id, "rc", 50);
        /* Two records of ids ingest cannot use (their bytes are Python's
         * evolved click, which does not matter). */
        fp = fopen(h_src("tests/fixtures/evolved_click_101_full.bin", path,
                         sizeof(path)),
                   "rb");
        cr_assert_not_null(fp);
        n = fread(raw, 1, sizeof(raw), fp);
        fclose(fp);
        set_frame_id(raw, 2000000002); /* no such id */
        cr_assert_eq(h_produce("ad-clicks", NULL, 0, raw, n), 0);
        set_frame_id(raw, order_id); /* not an input event */
        cr_assert_eq(h_produce("ad-clicks", NULL, 0, raw, n), 0);

        cr_assert_eq(count_events(50, 60000), 50,
                     "events on sg.events (logs in %s)", H.dir);
        cnt = h_consume_all("sg.deadletter", 2, 30000, &msgs);
        cr_assert_eq(cnt, 2, "dead letters (logs in %s)", H.dir);
        for (int i = 0; i < cnt; i++) {
                char want[128];

                cr_assert_str_eq(h_header(msgs[i], "sg.error", hbuf,
                                          sizeof(hbuf)),
                                 "unknown_schema");
                h_header(msgs[i], "sg.detail", hbuf, sizeof(hbuf));
                if (strstr(hbuf, "schema id 2000000002 is not in the schema "
                                 "registry: ") == hbuf &&
                    strstr(hbuf, "HTTP 404 error_code 40403"))
                        got_unknown++;
                snprintf(want, sizeof(want),
                         "schema id %u: registry id %u holds record "
                         "\"Order\", not Impression, Click or Conversion",
                         order_id, order_id);
                if (!strcmp(hbuf, want))
                        got_order++;
        }
        cr_assert_eq(got_unknown, 1);
        cr_assert_eq(got_order, 1);
        h_msgs_free(msgs, cnt);
        /* Each id asked once, none twice. */
        cr_assert_eq(h_log_count("sg-ingest", "event=schema_loaded"), 1);
        cr_assert_eq(h_log_count("sg-ingest", "event=schema_unknown"), 1);
        cr_assert_eq(h_log_count("sg-ingest", "event=schema_rejected"), 1);
        sg_codec_destroy(c);
        cr_assert_eq(h_stop_all(), 0);
}

static void resume_registry(void)
{
        const char *pid = getenv("SG_TEST_REGISTRY_PID");

        if (pid && *pid)
                kill((pid_t)atoi(pid), SIGCONT);
        h_stop_all();
}

/* The registry hangs (SIGSTOP: connections are accepted by the kernel and
 * never answered, so every request times out): ingest holds the record,
 * dead-letters nothing, and carries on where it stopped once the registry
 * answers again. */
Test(registry, ingest_waits_out_a_hung_registry_and_loses_nothing,
     .fini = resume_registry)
{
        sg_codec_t *c;
        uint32_t id;
        long from;

        h_init();
        config_with_registry("  timeout_ms: 300\n  retries: 0\n"
                             "  backoff_ms: 100\n  backoff_max_ms: 400\n");
        h_start_infra();
        /* A new ingest process: every id is new to its cache. */
        id = reg_register("ad-clicks-value",
                          read_text("schemas/click.avsc"));
        cr_assert_eq(kill(reg_jvm(), SIGSTOP), 0);
        from = h_log_size("sg-ingest");
        h_spawn("sg-ingest", NULL);
        c = codec();
        produce_clicks(c, id, "hung", 20);
        cr_assert_geq(h_wait_log("sg-ingest", from,
                                 "event=schema_registry_unavailable", 30000),
                      0, "no wait logged (logs in %s)", H.dir);
        cr_assert_geq(h_wait_log("sg-ingest", from, "attempt=3 ", 30000), 0);
        cr_assert_eq(count_events(0, 0), 0);
        cr_assert_eq(count_msgs("sg.deadletter", 0, 1000), 0);

        cr_assert_eq(kill(reg_jvm(), SIGCONT), 0);
        cr_assert_eq(count_events(20, 60000), 20,
                     "events after the registry came back (logs in %s)",
                     H.dir);
        cr_assert_eq(count_msgs("sg.deadletter", 0, 1000), 0);
        cr_assert_eq(h_log_count("sg-ingest",
                                 "event=schema_registry_available"),
                     1);
        sg_codec_destroy(c);
        cr_assert_eq(h_stop_all(), 0);
}

/* --------------------------------------------------------------- sink */

/* A sink that starts while the registry hangs waits for it, then
 * registers both schemas and runs. */
Test(registry, sink_waits_for_a_hung_registry_at_start,
     .fini = resume_registry)
{
        long from;

        h_init();
        config_with_registry("  timeout_ms: 300\n  retries: 0\n"
                             "  backoff_ms: 100\n  backoff_max_ms: 400\n");
        h_start_infra();
        cr_assert_eq(kill(reg_jvm(), SIGSTOP), 0);
        from = h_log_size("sg-sink");
        h_spawn("sg-sink", NULL);
        cr_assert_geq(h_wait_log("sg-sink", from,
                                 "event=schema_registry_unavailable "
                                 "what=compatibility attempt=3 ",
                                 30000),
                      0, "no wait logged (logs in %s)", H.dir);
        cr_assert_eq(h_log_count("sg-sink", "event=schema_registered"), 0);
        cr_assert_eq(kill(reg_jvm(), SIGCONT), 0);
        cr_assert_geq(h_wait_log("sg-sink", from,
                                 "event=schema_registered "
                                 "subject=channel-kpis-value",
                                 30000),
                      0, "not registered (logs in %s)", H.dir);
        cr_assert_geq(h_wait_log("sg-sink", from, "event=start ", 30000), 0);
        cr_assert_eq(h_log_count("sg-sink", "event=schema_registered "
                                            "subject=ad-decisions-value"),
                     1);
        cr_assert_eq(h_stop_all(), 0);
}

Test(registry, sink_refuses_a_schema_its_subject_cannot_take)
{
        const char *old = "{\"type\":\"record\",\"name\":\"ChannelKpi\","
                          "\"namespace\":\"spendguard\",\"fields\":["
                          "{\"name\":\"channel\",\"type\":\"string\"}]}";
        const char *const subst[] = {"kpis: channel-kpis",
                                     "kpis: sg-strict-kpis", NULL};
        char append[512];
        pid_t pid;

        h_init();
        reg_register("sg-strict-kpis-value", old);
        reg_set_compat("sg-strict-kpis-value", "BACKWARD");
        snprintf(append, sizeof(append), "schema_registry:\n  url: %s\n",
                 reg_url());
        h_config(subst, append);
        pid = h_spawn("sg-sink", NULL);
        cr_assert_eq(h_wait(pid, 60000), 2, "sg-sink did not exit 2");
        cr_assert_eq(h_log_count("sg-sink",
                                 "channel_kpi.avsc is not compatible with the "
                                 "latest version of subject "
                                 "sg-strict-kpis-value"),
                     1, "logs in %s", H.dir);
        h_stop_all();
}

/* -------------------------------------- Confluent's Python serializers */

/* The venv's python (tools/pyvenv.sh, pinned requirements; cached). */
static void venv_python(char *out, size_t size)
{
        char script[512], req[512];
        const char *args[] = {req, NULL};

        h_src("tools/pyvenv.sh", script, sizeof(script));
        h_src("tests/registry/requirements.txt", req, sizeof(req));
        cr_assert_eq(h_run(script, args, out, size), 0,
                     "tools/pyvenv.sh failed (log in %s)", H.dir);
        out[strcspn(out, "\n")] = '\0';
}

Test(registry, python_confluent_serializers_interoperate_both_ways)
{
        char py[512], script[512], schemas[512], truth_path[512], base[32];
        char why[512] = "", mind[16], mink[16];
        static char out[1 << 20];
        rd_kafka_message_t **dec, **kpi;
        sg_decision_t d;
        sg_snapshot_t k;
        json_t *truth, *kpis, *rows;
        sg_codec_t *c;
        uint32_t dec_id, kpi_id;
        int nd, nk, pauses = 0, realloc_cnt = 0, want_kpis;
        size_t i;

        h_init();
        config_with_registry(NULL);
        h_start_infra();
        h_start_stages();
        venv_python(py, sizeof(py));

        /* 1. Confluent's producer writes evolved schemas it registers
         * itself; spendguard counts every event. The events span 160 s of
         * event time, so the watermark moves through their windows and
         * the rules see them open; they start 1 s into a minute 200-260 s
         * ago, so two KPI windows close, with 10 s to spare either way. */
        snprintf(truth_path, sizeof(truth_path), "%s/py.truth", H.dir);
        snprintf(base, sizeof(base), "%lld",
                 ((long long)time(NULL) * 1000 - 200000) / 60000 * 60000 +
                     1000);
        {
                const char *args[] = {script,     schemas, reg_url(),
                                      H.bootstrap, truth_path, base,
                                      NULL};

                h_src("tests/registry/produce_events.py", script,
                      sizeof(script));
                h_src("schemas", schemas, sizeof(schemas));
                cr_assert_eq(h_run(py, args, out, sizeof(out)), 0,
                             "produce_events.py failed (log in %s)", H.dir);
        }
        rows = h_jsonl_text(out);
        want_kpis = (int)json_integer_value(json_object_get(
            json_array_get(rows, json_array_size(rows) - 1), "kpi_rows"));
        json_decref(rows);
        /* kol and its two campaigns in two closed windows. */
        cr_assert_eq(want_kpis, 6);
        truth = h_jsonl_file(truth_path);
        cr_assert_eq(json_array_size(truth), 3);
        kpis = h_kpis_wait(truth, "kol", 120000, why, sizeof(why));
        cr_assert(kpis, "KPIs never matched the producer's truth: %s "
                        "(logs in %s)",
                  why, H.dir);
        cr_assert_eq(json_array_size(kpis), 3);
        json_decref(kpis);
        json_decref(truth);
        cr_assert_eq(count_msgs("sg.deadletter", 0, 1000), 0);

        /* 2. The sink framed its output with the registry's ids (asking
         * again for the same schema gives the same id). */
        c = codec();
        dec_id = reg_register("ad-decisions-value",
                              sg_codec_schema_text(c, SG_SCHEMA_DECISION));
        kpi_id = reg_register("channel-kpis-value",
                              sg_codec_schema_text(c, SG_SCHEMA_KPI));
        sg_codec_set_wire_id(c, SG_SCHEMA_DECISION, dec_id);
        sg_codec_set_wire_id(c, SG_SCHEMA_KPI, kpi_id);
        /* Once the watermark closes the windows (the last output), and
         * every stage has read everything, the outputs are complete. */
        nk = h_consume_all("channel-kpis", want_kpis, 150000, &kpi);
        cr_assert_eq(nk, want_kpis, "KPI rows: %d (logs in %s)", nk, H.dir);
        h_wait_caught_up("aggregate", "sg.events", 60000);
        h_wait_caught_up("rules", "sg.aggregates", 60000);
        h_wait_caught_up("sink", "sg.decisions", 60000);
        /* kol paused for its bots, and its budget reallocated. */
        nd = h_consume_all("ad-decisions", 2, 30000, &dec);
        cr_assert_eq(nd, 2, "decisions: %d (logs in %s)", nd, H.dir);
        for (int j = 0; j < nd; j++) {
                cr_assert_eq(frame_id(dec[j]->payload), dec_id);
                cr_assert_eq(sg_codec_decode_decision(c, dec[j]->payload,
                                                      dec[j]->len, &d),
                             0, "%s", sg_codec_error(c));
                cr_assert_str_eq(d.channel, "kol");
                pauses += d.action == SG_ACT_PAUSE &&
                          !strcmp(d.rule_id, "ivt_circuit_breaker");
                realloc_cnt += d.action == SG_ACT_REALLOCATE &&
                               !strcmp(d.rule_id, "reallocate");
        }
        cr_assert_eq(pauses, 1);
        cr_assert_eq(realloc_cnt, 1);
        for (int j = 0; j < nk; j++)
                cr_assert_eq(frame_id(kpi[j]->payload), kpi_id);

        /* 3. Confluent's consumer and deserializer read the same decisions
         * and rows, by the ids in the records. */
        snprintf(mind, sizeof(mind), "%d", nd);
        snprintf(mink, sizeof(mink), "%d", nk);
        {
                const char *args[] = {script, reg_url(), H.bootstrap,
                                      mind,   mink,      "60",
                                      NULL};

                h_src("tests/registry/consume_outputs.py", script,
                      sizeof(script));
                cr_assert_eq(h_run(py, args, out, sizeof(out)), 0,
                             "consume_outputs.py failed (log in %s)", H.dir);
        }
        rows = h_jsonl_text(out);
        cr_assert_eq(json_array_size(rows), (size_t)(nd + nk), "%s", out);
        for (i = 0; i < json_array_size(rows); i++) {
                json_t *r = json_array_get(rows, i);
                json_t *v = json_object_get(r, "value");
                const char *topic =
                    json_string_value(json_object_get(r, "topic"));
                int found = 0;

                if (!strcmp(topic, "ad-decisions")) {
                        cr_assert_eq(json_integer_value(
                                         json_object_get(r, "schema_id")),
                                     dec_id);
                        for (int j = 0; j < nd; j++) {
                                sg_codec_decode_decision(c, dec[j]->payload,
                                                         dec[j]->len, &d);
                                if (strcmp(d.decision_id,
                                           json_string_value(json_object_get(
                                               v, "decision_id"))))
                                        continue;
                                found++;
                                cr_assert_str_eq(
                                    json_string_value(
                                        json_object_get(v, "action")),
                                    sg_action_name(d.action));
                                cr_assert_str_eq(
                                    json_string_value(
                                        json_object_get(v, "rule_id")),
                                    d.rule_id);
                                cr_assert_eq(json_integer_value(json_object_get(
                                                 v, "window_start")),
                                             d.window_start);
                        }
                } else {
                        json_t *camp = json_object_get(v, "campaign_id");

                        cr_assert_eq(json_integer_value(
                                         json_object_get(r, "schema_id")),
                                     kpi_id);
                        for (int j = 0; j < nk; j++) {
                                sg_codec_decode_kpi(c, kpi[j]->payload,
                                                    kpi[j]->len, &k);
                                if (strcmp(k.campaign_id,
                                           json_is_string(camp)
                                               ? json_string_value(camp)
                                               : "") ||
                                    k.window_start !=
                                        json_integer_value(json_object_get(
                                            v, "window_start")))
                                        continue;
                                found++;
                                cr_assert_eq(json_integer_value(json_object_get(
                                                 v, "clicks")),
                                             k.c.clicks);
                                cr_assert_eq(json_integer_value(json_object_get(
                                                 v, "impressions")),
                                             k.c.impressions);
                                cr_assert_eq(json_integer_value(json_object_get(
                                                 v, "spend_micros")),
                                             k.c.spend_micros);
                                cr_assert_eq(json_integer_value(json_object_get(
                                                 v, "invalid_clicks")),
                                             k.c.invalid_clicks);
                        }
                }
                cr_assert_eq(found, 1, "row %zu matched %d times: %s", i,
                             found, json_dumps(r, JSON_COMPACT));
        }
        json_decref(rows);
        h_msgs_free(dec, nd);
        h_msgs_free(kpi, nk);
        sg_codec_destroy(c);
        cr_assert_eq(h_stop_all(), 0);
}
