/*
 * Every input in the fuzz corpora (tests/fuzz/corpus/<harness>/: the seeds,
 * and any input a fuzzer found crashing, leaking or hanging, kept there
 * under its finding's name) goes through the same harness function as in
 * the fuzzer, here in the gcc build, under ASan + UBSan (make test-san) and
 * valgrind (make valgrind). A harness abort()s on a broken invariant.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#define LLVMFuzzerTestOneInput fuzz_avro_input
#include "../fuzz/fuzz_avro_input.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_json_input
#include "../fuzz/fuzz_json_input.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_normalized
#include "../fuzz/fuzz_normalized.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_rules
#include "../fuzz/fuzz_rules.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_redact
#include "../fuzz/fuzz_redact.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_conf
#define LLVMFuzzerInitialize   fuzz_conf_init
#include "../fuzz/fuzz_conf.c"
#undef LLVMFuzzerTestOneInput
#undef LLVMFuzzerInitialize

/* Feeds every file of corpus/<name> to fn; returns how many. */
static int replay(const char *name, int (*fn)(const uint8_t *, size_t))
{
        const char *src = getenv("SG_SOURCE_DIR");
        char dir[512], file[1024];
        struct dirent *de;
        int n = 0;
        DIR *d;

        snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/%s",
                 src ? src : SG_SOURCE_DIR, name);
        d = opendir(dir);
        cr_assert_not_null(d, "%s", dir);
        while ((de = readdir(d))) {
                static uint8_t buf[1 << 17];
                size_t len;
                FILE *fp;

                if (de->d_name[0] == '.')
                        continue;
                snprintf(file, sizeof(file), "%s/%s", dir, de->d_name);
                fp = fopen(file, "rb");
                cr_assert_not_null(fp, "%s", file);
                len = fread(buf, 1, sizeof(buf), fp);
                cr_assert(feof(fp), "%s: larger than %zu bytes", file,
                          sizeof(buf));
                fclose(fp);
                /* -1: the harness declines the input (too big); 0: ran. */
                cr_assert_geq(fn(buf, len), -1, "%s", file);
                n++;
        }
        closedir(d);
        return n;
}

Test(fuzz_corpus, avro_input_corpus_decodes_or_is_rejected_with_a_reason)
{
        cr_assert_gt(replay("avro_input", fuzz_avro_input), 0);
}

Test(fuzz_corpus, json_input_corpus_decodes_or_is_rejected_with_a_reason)
{
        cr_assert_gt(replay("json_input", fuzz_json_input), 0);
}

Test(fuzz_corpus, normalized_corpus_decodes_or_is_rejected)
{
        cr_assert_gt(replay("normalized", fuzz_normalized), 0);
}

Test(fuzz_corpus, rules_corpus_loads_or_is_refused_with_a_message)
{
        cr_assert_gt(replay("rules", fuzz_rules), 0);
}

/* Holds finding-secret-inside-a-key (fuzz_redact, fixed in lib/log.c). */
Test(fuzz_corpus, redact_corpus_never_shows_a_registered_secret)
{
        cr_assert_gt(replay("redact", fuzz_redact), 0);
}

Test(fuzz_corpus, conf_corpus_loads_or_is_refused_with_a_message)
{
        fuzz_conf_init(NULL, NULL);
        cr_assert_gt(replay("conf", fuzz_conf), 0);
}

/* The codec the harnesses keep for the whole run, freed for valgrind. */
static void __attribute__((destructor)) codec_free(void)
{
        sg_codec_destroy(fuzz_codec());
}
