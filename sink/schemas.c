/*
 * The sink's output schemas in a schema registry: Decision and ChannelKpi
 * registered under the topic-name strategy (<topic>-value) at start, each
 * checked for compatibility with the subject's latest version first, so
 * that registry-aware readers (Kafka Connect, ksqlDB, Flink) can resolve
 * the ids the sink frames its records with.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "schemareg.h"
#include "sink.h"
#include "stage.h"

/*
 * After a request that found the registry unavailable, waits the backoff of
 * *attempt and returns 1 (ask again): a sink that starts before its
 * registry waits for it, as ingest does. 0 on any other outcome, or once
 * stopped.
 */
static int again(const sg_schemareg_conf_t *c, sg_schemareg_rc_t rc,
                 int *attempt, const char *what, const char *err)
{
        char q[512];
        int ms;

        if (rc != SG_SR_UNAVAILABLE || sg_stop)
                return 0;
        ms = sg_schemareg_backoff_ms(*attempt, c->backoff_ms,
                                     c->backoff_max_ms);
        (*attempt)++;
        sg_warn("event=schema_registry_unavailable what=%s attempt=%d "
                "retry_in_ms=%d detail=%s",
                what, *attempt, ms, sg_log_quote(q, sizeof(q), err));
        sg_sleep_ms(ms);
        return !sg_stop;
}

/* Checks and registers schema under <topic>-value; the codec then frames
 * schema's records with the id the registry gave. */
static int register_one(sg_schemareg_t *reg, const sg_schemareg_conf_t *rconf,
                        sg_codec_t *codec, const char *topic, int schema,
                        const char *file, char *errstr, size_t errstr_size)
{
        const char *text = sg_codec_schema_text(codec, schema);
        char subject[160];
        sg_schemareg_rc_t rc;
        int compatible = 0, attempt = 0;
        uint32_t id = 0;

        snprintf(subject, sizeof(subject), "%s-value", topic);
        do
                rc = sg_schemareg_compatible(reg, subject, text, &compatible,
                                             errstr, errstr_size);
        while (again(rconf, rc, &attempt, "compatibility", errstr));
        /* Unavailable: stopped. Rejected: the registry cannot parse it. */
        if (rc == SG_SR_UNAVAILABLE || rc == SG_SR_REJECTED)
                return -1;
        if (rc == SG_SR_OK && !compatible) {
                snprintf(errstr, errstr_size,
                         "%s is not compatible with the latest version of "
                         "subject %s in the schema registry (its "
                         "compatibility level); not registered, not used",
                         file, subject);
                return -1;
        }
        attempt = 0;
        do
                rc = sg_schemareg_register(reg, subject, text, &id, errstr,
                                           errstr_size);
        while (again(rconf, rc, &attempt, "register", errstr));
        if (rc != SG_SR_OK) {
                if (rc == SG_SR_NOT_FOUND)
                        snprintf(errstr + strlen(errstr),
                                 errstr_size - strlen(errstr),
                                 " (registering %s)", subject);
                return -1;
        }
        if (sg_codec_set_wire_id(codec, schema, id)) {
                snprintf(errstr, errstr_size, "%s", sg_codec_error(codec));
                return -1;
        }
        sg_info("event=schema_registered subject=%s schema=%s id=%u url=%s",
                subject, file, id, sg_schemareg_url(reg));
        return 0;
}

int sg_sink_register_schemas(const sg_conf_t *conf, sg_codec_t *codec,
                             char *errstr, size_t errstr_size)
{
        sg_schemareg_t *reg;
        int rc = -1;

        if (!conf->schema_registry.urls[0])
                return 0;
        if (strcmp(conf->sink.format, "avro") != 0) {
                sg_info("event=schema_registry_unused format=%s",
                        conf->sink.format);
                return 0;
        }
        reg = sg_schemareg_new(&conf->schema_registry, errstr, errstr_size);
        if (!reg)
                return -1;
        if (!register_one(reg, &conf->schema_registry, codec,
                          conf->topics.out_decisions, SG_SCHEMA_DECISION,
                          "decision.avsc", errstr, errstr_size) &&
            !register_one(reg, &conf->schema_registry, codec,
                          conf->topics.kpis, SG_SCHEMA_KPI,
                          "channel_kpi.avsc", errstr, errstr_size))
                rc = 0;
        sg_schemareg_destroy(reg);
        return rc;
}
