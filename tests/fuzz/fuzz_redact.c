/*
 * The log redaction runs on every log line, including the details of
 * hostile records: any text, any registered secrets, any buffer size must
 * leave a NUL-terminated line no longer than the buffer, without *** left
 * out where a registered secret was.
 */
#include <string.h>

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static int init;
        char buf[4200];
        size_t cap;

        if (!init) {
                sg_log_secret("fuzz-secret-1");
                sg_log_secret("p@ss:word");
                init = 1;
        }
        if (size < 1 || size > 4000)
                return -1;
        /* Byte 0 picks the buffer size, the rest is the line. */
        cap = 1 + data[0] * 16;
        if (cap > sizeof(buf))
                cap = sizeof(buf);
        memset(buf, 0x55, sizeof(buf));
        memcpy(buf, data + 1, size - 1 < cap - 1 ? size - 1 : cap - 1);
        buf[size - 1 < cap - 1 ? size - 1 : cap - 1] = '\0';
        sg_log_redact(buf, cap);
        if (strlen(buf) >= cap || buf[cap] != 0x55)
                abort();
        if (strstr(buf, "fuzz-secret-1"))
                abort();
        return 0;
}
