/*
 * The aggregate stage's decoder of sg.events (NormalizedEvent, schema 4):
 * hostile bytes on an internal topic must be rejected, never trusted.
 */
#include <string.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static uint8_t buf[1 << 17];
        sg_event_t ev;

        /* Confluent framing with id 4, then the fuzzer's bytes. */
        if (size + 5 > sizeof(buf))
                return -1;
        memcpy(buf, "\x00\x00\x00\x00\x04", 5);
        memcpy(buf + 5, data, size);
        if (sg_codec_decode_normalized(fuzz_codec(), buf, size + 5, &ev) == 0 &&
            (ev.type < SG_EV_IMPRESSION || ev.type > SG_EV_CONVERSION))
                abort(); /* an accepted event has a valid type */
        return 0;
}
