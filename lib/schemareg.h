/*
 * A Confluent Schema Registry client (REST API over libcurl): writer
 * schemas by id for ingest, registration and compatibility checks of the
 * output schemas for the sink. Blocking calls, one client per thread.
 */
#ifndef SG_SCHEMAREG_H
#define SG_SCHEMAREG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#define SG_SCHEMAREG_MAX_URLS 8
#define SG_SCHEMAREG_URL_LEN  512

typedef struct sg_schemareg sg_schemareg_t;

typedef struct sg_schemareg_conf {
        char urls[1024];    /* comma-separated base URLs */
        char user[256];     /* basic auth; "" = none */
        char password[256]; /* a secret: never logged */
        char ca_file[PATH_MAX]; /* https: CA bundle; "" = the system's */
        int timeout_ms;     /* one request, connecting included */
        int retries;        /* after the first attempt, over all URLs */
        int backoff_ms;     /* the first retry's delay; doubles */
        int backoff_max_ms; /* the longest delay */
} sg_schemareg_conf_t;

/* Outcomes of a request. */
typedef enum {
        SG_SR_OK = 0,
        SG_SR_NOT_FOUND = 1,   /* 404 404xx: no such id or subject */
        SG_SR_REJECTED = 2,    /* 409/422: incompatible or invalid schema */
        SG_SR_UNAVAILABLE = -1 /* down, timed out, 5xx, 401/403, a bare 404
                                  or not the API's JSON: retry later */
} sg_schemareg_rc_t;

/*
 * Splits a comma-separated list of http(s) base URLs into urls (trailing
 * slashes and blanks dropped). URLs with credentials are refused: those go
 * in schema_registry.user and the password. Returns the count (>= 1), or
 * -1 with errstr.
 */
int sg_schemareg_urls_parse(const char *list,
                            char urls[][SG_SCHEMAREG_URL_LEN], int max,
                            char *errstr, size_t errstr_size);

/* The delay before retry attempt (0 = the first retry): backoff_ms doubled
 * attempt times, at most max_ms. */
int sg_schemareg_backoff_ms(int attempt, int backoff_ms, int max_ms);

/*
 * Response bodies. Each returns 0, or -1 with errstr when the body is not
 * the JSON the API defines.
 * parse_schema: {"schema": "...", "schemaType"?: "AVRO"} -> *schema
 * (malloc'ed, the caller frees); another schemaType is -2.
 * parse_id: {"id": N}. parse_compat: {"is_compatible": bool}.
 * parse_error: {"error_code": N, "message": "..."} (either may be missing:
 * *code 0, msg "").
 */
int sg_schemareg_parse_schema(const char *body, size_t len, char **schema,
                              char *errstr, size_t errstr_size);
int sg_schemareg_parse_id(const char *body, size_t len, uint32_t *id,
                          char *errstr, size_t errstr_size);
int sg_schemareg_parse_compat(const char *body, size_t len, int *compatible,
                              char *errstr, size_t errstr_size);
int sg_schemareg_parse_error(const char *body, size_t len, int *code,
                             char *msg, size_t msg_size);

/* What an HTTP answer means for a request: its status and the error_code
 * of its body (0 if none). A 404 is SG_SR_NOT_FOUND only with the API's
 * own 404xx code: a bare one is a wrong URL, SG_SR_UNAVAILABLE. */
sg_schemareg_rc_t sg_schemareg_classify(long status, int error_code);

/*
 * A client of conf's registries (copied). NULL and errstr when the URL
 * list is bad or libcurl cannot start. Free with sg_schemareg_destroy().
 */
sg_schemareg_t *sg_schemareg_new(const sg_schemareg_conf_t *conf,
                                 char *errstr, size_t errstr_size);
void sg_schemareg_destroy(sg_schemareg_t *r);

/*
 * GET /schemas/ids/{id}: *schema (malloc'ed, the caller frees) on SG_SR_OK.
 * A failed request is tried on the next URL, with backoff, up to
 * conf.retries times before SG_SR_UNAVAILABLE; errstr says why on any
 * outcome but SG_SR_OK.
 */
sg_schemareg_rc_t sg_schemareg_get(sg_schemareg_t *r, uint32_t id,
                                   char **schema, char *errstr,
                                   size_t errstr_size);

/* POST /subjects/{subject}/versions: the id of schema (registered, or the
 * one it already has) in *id. */
sg_schemareg_rc_t sg_schemareg_register(sg_schemareg_t *r, const char *subject,
                                        const char *schema, uint32_t *id,
                                        char *errstr, size_t errstr_size);

/* POST /compatibility/subjects/{subject}/versions/latest: *compatible 1 or
 * 0 (SG_SR_OK), or SG_SR_NOT_FOUND when the subject has no version yet. */
sg_schemareg_rc_t sg_schemareg_compatible(sg_schemareg_t *r,
                                          const char *subject,
                                          const char *schema, int *compatible,
                                          char *errstr, size_t errstr_size);

/* The base URL the last request went to. */
const char *sg_schemareg_url(const sg_schemareg_t *r);

#endif
