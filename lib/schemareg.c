/*
 * The Confluent Schema Registry REST API (the subset spendguard needs)
 * over libcurl. Requests are rare (one per unknown writer id, a few at the
 * sink's start), so each is a blocking call on the caller's thread with
 * its own deadline; a failure moves on to the next URL of the list, with
 * doubling backoff between attempts.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "log.h"
#include "schemareg.h"
#include "stage.h"

#define MAX_BODY (1 << 20) /* a registry response larger is refused */

struct sg_schemareg {
        sg_schemareg_conf_t conf;
        char urls[SG_SCHEMAREG_MAX_URLS][SG_SCHEMAREG_URL_LEN];
        int nurl;
        int cur; /* the URL that answered last */
        CURL *curl;
        struct curl_slist *headers;
        char *body; /* the response being read */
        size_t len, cap;
        int too_big;
};

/* ------------------------------------------------------------ pure logic */

int sg_schemareg_urls_parse(const char *list,
                            char urls[][SG_SCHEMAREG_URL_LEN], int max,
                            char *errstr, size_t errstr_size)
{
        const char *p = list, *end;
        int n = 0;

        while (*p) {
                size_t len;

                while (*p == ' ' || *p == '\t' || *p == ',')
                        p++;
                if (!*p)
                        break;
                end = p + strcspn(p, ",");
                len = (size_t)(end - p);
                while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
                        len--;
                while (len && p[len - 1] == '/')
                        len--;
                if (n == max) {
                        snprintf(errstr, errstr_size,
                                 "schema_registry.url: more than %d URLs",
                                 max);
                        return -1;
                }
                if (len >= SG_SCHEMAREG_URL_LEN) {
                        snprintf(errstr, errstr_size,
                                 "schema_registry.url: URL %d longer than "
                                 "%d bytes",
                                 n + 1, SG_SCHEMAREG_URL_LEN - 1);
                        return -1;
                }
                memcpy(urls[n], p, len);
                urls[n][len] = '\0';
                if (strncmp(urls[n], "http://", 7) != 0 &&
                    strncmp(urls[n], "https://", 8) != 0) {
                        snprintf(errstr, errstr_size,
                                 "schema_registry.url: URL %d is not "
                                 "http:// or https://",
                                 n + 1);
                        return -1;
                }
                /* user:password@ before the host: kept out of URLs, which
                 * are logged. */
                {
                        const char *host = strstr(urls[n], "//") + 2;
                        size_t hlen = strcspn(host, "/?#");

                        if (memchr(host, '@', hlen)) {
                                snprintf(errstr, errstr_size,
                                         "schema_registry.url: URL %d "
                                         "holds credentials; set "
                                         "schema_registry.user and the "
                                         "password (docs/config.md)",
                                         n + 1);
                                return -1;
                        }
                        if (hlen == 0) {
                                snprintf(errstr, errstr_size,
                                         "schema_registry.url: URL %d has "
                                         "no host",
                                         n + 1);
                                return -1;
                        }
                }
                n++;
                p = end;
        }
        if (n == 0) {
                snprintf(errstr, errstr_size, "schema_registry.url: empty");
                return -1;
        }
        return n;
}

int sg_schemareg_backoff_ms(int attempt, int backoff_ms, int max_ms)
{
        int64_t d = backoff_ms;

        for (int i = 0; i < attempt && d < max_ms; i++)
                d *= 2;
        return d > max_ms ? max_ms : (int)d;
}

static json_t *parse_object(const char *body, size_t len, char *errstr,
                            size_t errstr_size)
{
        json_error_t je;
        json_t *o = json_loadb(body, len, 0, &je);

        if (!o) {
                snprintf(errstr, errstr_size, "response is not JSON: %s",
                         je.text);
                return NULL;
        }
        if (!json_is_object(o)) {
                snprintf(errstr, errstr_size,
                         "response is not a JSON object");
                json_decref(o);
                return NULL;
        }
        return o;
}

int sg_schemareg_parse_schema(const char *body, size_t len, char **schema,
                              char *errstr, size_t errstr_size)
{
        json_t *o = parse_object(body, len, errstr, errstr_size), *s, *t;
        int rc = -1;

        *schema = NULL;
        if (!o)
                return -1;
        s = json_object_get(o, "schema");
        t = json_object_get(o, "schemaType");
        if (!json_is_string(s)) {
                snprintf(errstr, errstr_size,
                         "response has no string \"schema\"");
        } else if (t && !json_is_null(t) &&
                   !(json_is_string(t) &&
                     !strcmp(json_string_value(t), "AVRO"))) {
                snprintf(errstr, errstr_size,
                         "schemaType %.32s, not AVRO",
                         json_is_string(t) ? json_string_value(t) : "?");
                rc = -2;
        } else if (!(*schema = strdup(json_string_value(s)))) {
                snprintf(errstr, errstr_size, "out of memory");
        } else {
                rc = 0;
        }
        json_decref(o);
        return rc;
}

int sg_schemareg_parse_id(const char *body, size_t len, uint32_t *id,
                          char *errstr, size_t errstr_size)
{
        json_t *o = parse_object(body, len, errstr, errstr_size);
        json_t *v = json_object_get(o, "id"); /* NULL o: NULL */
        int ok = json_is_integer(v) && json_integer_value(v) >= 0 &&
                 json_integer_value(v) <= (json_int_t)UINT32_MAX;

        if (ok)
                *id = (uint32_t)json_integer_value(v);
        else if (o)
                snprintf(errstr, errstr_size,
                         "response has no \"id\" from 0 to 2^32-1");
        json_decref(o);
        return ok ? 0 : -1;
}

int sg_schemareg_parse_compat(const char *body, size_t len, int *compatible,
                              char *errstr, size_t errstr_size)
{
        json_t *o = parse_object(body, len, errstr, errstr_size);
        json_t *v = json_object_get(o, "is_compatible");
        int ok = json_is_boolean(v);

        if (ok)
                *compatible = json_is_true(v);
        else if (o)
                snprintf(errstr, errstr_size,
                         "response has no boolean \"is_compatible\"");
        json_decref(o);
        return ok ? 0 : -1;
}

int sg_schemareg_parse_error(const char *body, size_t len, int *code,
                             char *msg, size_t msg_size)
{
        json_t *o, *c, *m;

        *code = 0;
        if (msg_size)
                msg[0] = '\0';
        o = json_loadb(body, len, 0, NULL);
        if (!json_is_object(o)) {
                json_decref(o);
                return -1;
        }
        c = json_object_get(o, "error_code");
        m = json_object_get(o, "message");
        if (json_is_integer(c))
                *code = (int)json_integer_value(c);
        if (json_is_string(m))
                snprintf(msg, msg_size, "%s", json_string_value(m));
        json_decref(o);
        return 0;
}

sg_schemareg_rc_t sg_schemareg_classify(long status, int error_code)
{
        if (status >= 200 && status < 300)
                return SG_SR_OK;
        /* The API's own 404s carry 404xx (40401 subject, 40402 version,
         * 40403 schema). A bare 404 is a path the server does not serve:
         * a wrong base URL, which must not dead-letter records. */
        if (status == 404)
                return error_code / 100 == 404 ? SG_SR_NOT_FOUND
                                               : SG_SR_UNAVAILABLE;
        if (status == 409 || status == 422)
                return SG_SR_REJECTED;
        /* No answer, 5xx, 401/403 (credentials: an operator's fix, not the
         * record's fault), 408, 429 and the rest: try again later. */
        return SG_SR_UNAVAILABLE;
}

/* ---------------------------------------------------------------- client */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
        curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t on_data(char *data, size_t size, size_t n, void *opaque)
{
        sg_schemareg_t *r = opaque;
        size_t len = size * n;

        if (r->len + len + 1 > MAX_BODY) {
                r->too_big = 1;
                return 0; /* aborts the transfer */
        }
        if (r->len + len + 1 > r->cap) {
                size_t cap = r->cap ? r->cap : 4096;
                char *b;

                while (cap < r->len + len + 1)
                        cap *= 2;
                if (!(b = realloc(r->body, cap)))
                        return 0;
                r->body = b;
                r->cap = cap;
        }
        memcpy(r->body + r->len, data, len);
        r->len += len;
        r->body[r->len] = '\0';
        return len;
}

sg_schemareg_t *sg_schemareg_new(const sg_schemareg_conf_t *conf,
                                 char *errstr, size_t errstr_size)
{
        sg_schemareg_t *r = calloc(1, sizeof(*r));
        struct curl_slist *h;

        if (!r) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        r->conf = *conf;
        r->nurl = sg_schemareg_urls_parse(conf->urls, r->urls,
                                          SG_SCHEMAREG_MAX_URLS, errstr,
                                          errstr_size);
        if (r->nurl < 0)
                goto err;
        pthread_once(&curl_once, curl_init);
        if (curl_init_rc != CURLE_OK || !(r->curl = curl_easy_init())) {
                snprintf(errstr, errstr_size, "libcurl failed to start");
                goto err;
        }
        h = curl_slist_append(NULL, "Content-Type: "
                                    "application/vnd.schemaregistry.v1+json");
        if (h)
                r->headers = h;
        h = curl_slist_append(r->headers,
                              "Accept: application/vnd.schemaregistry.v1+json, "
                              "application/json");
        if (!h) {
                snprintf(errstr, errstr_size, "out of memory");
                goto err;
        }
        r->headers = h;
        return r;
err:
        sg_schemareg_destroy(r);
        return NULL;
}

void sg_schemareg_destroy(sg_schemareg_t *r)
{
        if (!r)
                return;
        if (r->curl)
                curl_easy_cleanup(r->curl);
        curl_slist_free_all(r->headers);
        /* The password lives in conf: not left in freed memory. */
        memset(r->conf.password, 0, sizeof(r->conf.password));
        free(r->body);
        free(r);
}

const char *sg_schemareg_url(const sg_schemareg_t *r)
{
        return r->urls[r->cur];
}

/* One attempt at base+path: what its answer means; errstr says why for
 * anything but SG_SR_OK. */
static sg_schemareg_rc_t perform(sg_schemareg_t *r, const char *base,
                                 const char *path, const char *post,
                                 char *errstr, size_t errstr_size)
{
        char url[SG_SCHEMAREG_URL_LEN + 512], msg[256];
        CURL *c = r->curl;
        long status = 0;
        sg_schemareg_rc_t res;
        CURLcode rc;
        int code;

        snprintf(url, sizeof(url), "%s%s", base, path);
        curl_easy_reset(c);
        r->len = 0;
        r->too_big = 0;
        if (r->body)
                r->body[0] = '\0';
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)r->conf.timeout_ms);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                         (long)r->conf.timeout_ms);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->headers);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(c, CURLOPT_USERAGENT, "spendguard/" SG_VERSION);
        if (r->conf.user[0]) {
                curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
                curl_easy_setopt(c, CURLOPT_USERNAME, r->conf.user);
                curl_easy_setopt(c, CURLOPT_PASSWORD, r->conf.password);
        }
        if (r->conf.ca_file[0])
                curl_easy_setopt(c, CURLOPT_CAINFO, r->conf.ca_file);
        if (post) {
                curl_easy_setopt(c, CURLOPT_POST, 1L);
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
        }
        rc = curl_easy_perform(c);
        if (rc != CURLE_OK) {
                snprintf(errstr, errstr_size, "%s: %s", base,
                         r->too_big ? "response larger than 1 MiB"
                                    : curl_easy_strerror(rc));
                return SG_SR_UNAVAILABLE;
        }
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300)
                return SG_SR_OK;
        sg_schemareg_parse_error(r->body ? r->body : "", r->len, &code, msg,
                                 sizeof(msg));
        res = sg_schemareg_classify(status, code);
        if (code)
                snprintf(errstr, errstr_size, "%s: HTTP %ld error_code %d%s%s",
                         base, status, code, msg[0] ? ": " : "", msg);
        else
                snprintf(errstr, errstr_size, "%s: HTTP %ld", base, status);
        if (status == 404 && res == SG_SR_UNAVAILABLE) {
                size_t n = strlen(errstr);

                snprintf(errstr + n, errstr_size - n,
                         " (not the API's answer: is the URL the base of the "
                         "registry's Confluent API?)");
        }
        return res;
}

/*
 * path on each URL in turn, from the one that answered last, until one
 * gives an answer that is not "unavailable" or retries are used up. The
 * body of the answer is in r->body (NUL-terminated, r->len bytes).
 */
static sg_schemareg_rc_t request(sg_schemareg_t *r, const char *path,
                                 const char *post, char *errstr,
                                 size_t errstr_size)
{
        sg_schemareg_rc_t rc = SG_SR_UNAVAILABLE;

        for (int attempt = 0; attempt <= r->conf.retries; attempt++) {
                int u = (r->cur + attempt) % r->nurl;

                if (attempt) {
                        if (sg_stop)
                                break;
                        sg_sleep_ms(sg_schemareg_backoff_ms(
                            attempt - 1, r->conf.backoff_ms,
                            r->conf.backoff_max_ms));
                }
                rc = perform(r, r->urls[u], path, post, errstr, errstr_size);
                if (rc != SG_SR_UNAVAILABLE) {
                        r->cur = u;
                        break;
                }
                sg_debug("event=schema_registry_retry url=%s attempt=%d",
                         r->urls[u], attempt + 1);
        }
        if (!r->body && rc == SG_SR_OK) {
                snprintf(errstr, errstr_size, "%s: empty response",
                         r->urls[r->cur]);
                return SG_SR_UNAVAILABLE;
        }
        return rc;
}

sg_schemareg_rc_t sg_schemareg_get(sg_schemareg_t *r, uint32_t id,
                                   char **schema, char *errstr,
                                   size_t errstr_size)
{
        char path[64], err[256];
        sg_schemareg_rc_t rc;

        *schema = NULL;
        snprintf(path, sizeof(path), "/schemas/ids/%u", id);
        rc = request(r, path, NULL, errstr, errstr_size);
        if (rc != SG_SR_OK)
                return rc == SG_SR_REJECTED ? SG_SR_UNAVAILABLE : rc;
        switch (sg_schemareg_parse_schema(r->body, r->len, schema, err,
                                          sizeof(err))) {
        case 0:
                break;
        case -2: /* a schema, but not one an Avro record can have */
                snprintf(errstr, errstr_size, "%s", err);
                return SG_SR_NOT_FOUND;
        default: /* not the API's answer: not the records' fault */
                snprintf(errstr, errstr_size, "%s/schemas/ids/%u: %s",
                         r->urls[r->cur], id, err);
                return SG_SR_UNAVAILABLE;
        }
        return SG_SR_OK;
}

/* {"schema": schema} */
static char *schema_body(const char *schema)
{
        json_t *o = json_pack("{s:s}", "schema", schema);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

        json_decref(o);
        return s;
}

/* /<pre><escaped subject><post> into out. */
static int subject_path(sg_schemareg_t *r, const char *pre,
                        const char *subject, const char *post, char *out,
                        size_t size)
{
        char *esc = curl_easy_escape(r->curl, subject, 0);
        int n;

        if (!esc)
                return -1;
        n = snprintf(out, size, "%s%s%s", pre, esc, post);
        curl_free(esc);
        return n < 0 || (size_t)n >= size ? -1 : 0;
}

sg_schemareg_rc_t sg_schemareg_register(sg_schemareg_t *r, const char *subject,
                                        const char *schema, uint32_t *id,
                                        char *errstr, size_t errstr_size)
{
        char path[1024], err[256];
        char *body = schema_body(schema);
        sg_schemareg_rc_t rc;

        if (!body || subject_path(r, "/subjects/", subject, "/versions", path,
                                  sizeof(path))) {
                free(body);
                snprintf(errstr, errstr_size, "subject %.200s: out of memory "
                         "or too long", subject);
                return SG_SR_REJECTED;
        }
        rc = request(r, path, body, errstr, errstr_size);
        free(body);
        if (rc != SG_SR_OK)
                return rc;
        if (sg_schemareg_parse_id(r->body, r->len, id, err, sizeof(err))) {
                snprintf(errstr, errstr_size, "%s%s: %s", r->urls[r->cur],
                         path, err);
                return SG_SR_UNAVAILABLE;
        }
        return SG_SR_OK;
}

sg_schemareg_rc_t sg_schemareg_compatible(sg_schemareg_t *r,
                                          const char *subject,
                                          const char *schema, int *compatible,
                                          char *errstr, size_t errstr_size)
{
        char path[1024], err[256];
        char *body = schema_body(schema);
        sg_schemareg_rc_t rc;

        if (!body || subject_path(r, "/compatibility/subjects/", subject,
                                  "/versions/latest", path, sizeof(path))) {
                free(body);
                snprintf(errstr, errstr_size, "subject %.200s: out of memory "
                         "or too long", subject);
                return SG_SR_REJECTED;
        }
        rc = request(r, path, body, errstr, errstr_size);
        free(body);
        if (rc != SG_SR_OK)
                return rc;
        if (sg_schemareg_parse_compat(r->body, r->len, compatible, err,
                                      sizeof(err))) {
                snprintf(errstr, errstr_size, "%s%s: %s", r->urls[r->cur],
                         path, err);
                return SG_SR_UNAVAILABLE;
        }
        return SG_SR_OK;
}
