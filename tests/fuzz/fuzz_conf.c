/*
 * The config loader, end to end: a YAML file (written by the harness),
 * parsed, applied over the defaults and validated by sg_conf_load().
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "fuzz_common.h"

static char path[64];

static void cleanup(void)
{
        unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        /* The environment beats the file: keep it out of the way. */
        static const char *const env[] = {
            "SG_CONFIG",         "SG_BROKERS",
            "SG_REDIS",          "SG_GROUP_PREFIX",
            "SG_LOG_LEVEL",      "SG_METRICS_LISTEN",
            "SG_REDIS_PASSWORD", NULL};

        for (const char *const *e = env; *e; e++)
                unsetenv(*e);
        fuzz_quiet();
        snprintf(path, sizeof(path), "/tmp/sg-fuzz-conf-%d.yaml",
                 (int)getpid());
        atexit(cleanup);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static sg_conf_t conf;
        char errstr[512];
        FILE *fp = fopen(path, "wb");

        if (!fp)
                abort();
        if (size && fwrite(data, 1, size, fp) != size)
                abort();
        fclose(fp);
        errstr[0] = '\0';
        if (sg_conf_load(&conf, path, errstr, sizeof(errstr)) == -1 &&
            errstr[0] == '\0')
                abort(); /* every refusal says why */
        return 0;
}
