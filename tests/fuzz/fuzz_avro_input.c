/*
 * The ingest decoder on Confluent-framed Avro: any bytes after a zero magic
 * byte (schema ids 1-3, other contract ids, registry ids) must decode or be
 * rejected with a reason, never crash, leak or hang.
 */
#include <string.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static uint8_t buf[1 << 17];
        char detail[256];
        const char *reason = NULL;
        sg_event_t ev;

        /* Keep the fuzzer on the Avro path: byte 0 is always the magic. */
        if (size + 1 > sizeof(buf))
                return -1;
        buf[0] = 0;
        memcpy(buf + 1, data, size);
        if (sg_codec_decode_input(fuzz_codec(), buf, size + 1, SG_EV_CLICK, &ev,
                                  &reason, detail, sizeof(detail)) == -1) {
                if (!reason || !reason[0])
                        abort(); /* a rejection always has a reason */
        }
        return 0;
}
