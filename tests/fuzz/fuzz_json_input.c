/*
 * The ingest decoder on JSON: any object text must decode or be rejected
 * with a reason, for each default type of the input topics.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char detail[256];
        const char *reason = NULL;
        sg_event_t ev;

        /* Leave the Avro path to its own harness. */
        if (size == 0 || data[0] == 0)
                return -1;
        if (sg_codec_decode_input(fuzz_codec(), data, size,
                                  (sg_event_type_t)(1 + size % 3), &ev, &reason,
                                  detail, sizeof(detail)) == -1) {
                if (!reason || !reason[0])
                        abort();
        }
        return 0;
}
