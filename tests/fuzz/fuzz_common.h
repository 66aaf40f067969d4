/*
 * What every libFuzzer harness shares: quiet logging and the codec over the
 * repository's schemas (SG_SOURCE_DIR/schemas, the contract ids and
 * schemas/registry/).
 */
#ifndef SG_FUZZ_COMMON_H
#define SG_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "codec.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Warnings about hostile input are expected by the thousand per second. */
static inline void fuzz_quiet(void)
{
        sg_log_verbosity = SG_LOG_ERROR + 1;
}

/* One codec for the whole run, as a stage keeps one per thread. */
static inline sg_codec_t *fuzz_codec(void)
{
        static sg_codec_t *codec;
        char err[256];

        if (codec)
                return codec;
        fuzz_quiet();
        codec = sg_codec_new(SG_SOURCE_DIR "/schemas", err, sizeof(err));
        if (!codec) {
                fprintf(stderr, "fuzz: sg_codec_new: %s\n", err);
                abort();
        }
        return codec;
}

#endif
