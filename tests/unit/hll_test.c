#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "hll.h"

/* A hash that lands in register idx with rank r (1..51), as Redis's
 * hllPatLen reads it: rank r means r - 1 zero bits above the index. */
static uint64_t hash_for(uint32_t idx, unsigned r)
{
        return r > 50 ? idx : (uint64_t)idx | 1ULL << (SG_HLL_P + r - 1);
}

static sg_hll_t *hll(void)
{
        sg_hll_t *h = sg_hll_new();

        cr_assert_not_null(h);
        return h;
}

/* The elements the known answers (and the integration test) use. */
static sg_hll_t *hll_of(int from, int to)
{
        sg_hll_t *h = hll();
        char b[32];

        for (int i = from; i < to; i++) {
                int len = snprintf(b, sizeof(b), "e%d", i);

                cr_assert_geq(sg_hll_add(h, b, (size_t)len), 0);
        }
        return h;
}

static size_t encode(const sg_hll_t *h, unsigned char *out)
{
        size_t n = sg_hll_encode(h, out, SG_HLL_DENSE_SIZE);

        cr_assert_gt(n, 0);
        cr_assert_eq(n, sg_hll_encoded_size(h));
        return n;
}

#define EXPECT_HASH(str, want)                                                 \
        cr_expect_eq(sg_hll_hash(str, strlen(str)), want, "%s: %016llx", str,  \
                     (unsigned long long)sg_hll_hash(str, strlen(str)))

Test(hll, hash_is_murmurhash64a_with_redis_seed)
{
        /* MurmurHash64A(ele, len, 0xadc83b19); the integration test checks
         * the registers these hashes give against redis-server's. Lengths
         * 0, 1, 15 (a word and a tail of 7) and 18 (two words). */
        EXPECT_HASH("", 0xd8dfea6585bc9732ULL);
        EXPECT_HASH("a", 0x53d2470a9b43b1a7ULL);
        EXPECT_HASH("device-12345678", 0xd71f5ddf8ed46276ULL);
        EXPECT_HASH("0123456789abcdef01", 0xa91d9f9731a10754ULL);
}

Test(hll, register_and_rank_are_redis_pattern_length)
{
        sg_hll_t *h = hll();

        cr_expect_eq(sg_hll_add_hash(h, hash_for(5, 3)), 1);
        cr_expect_eq(sg_hll_register(h, 5), 3);
        /* No 1 bit above the index: the sentinel at bit Q gives Q + 1. */
        cr_expect_eq(sg_hll_add_hash(h, 16383), 1);
        cr_expect_eq(sg_hll_register(h, 16383), 51);
        cr_expect_eq(sg_hll_add_hash(h, 0xffffffffffffffffULL), 0); /* rank 1 */
        cr_expect_eq(sg_hll_register(h, 16383), 51);
        cr_expect_eq(sg_hll_register(h, 16384), -1);
        sg_hll_destroy(h);
}

Test(hll, add_reports_only_a_register_that_grew)
{
        sg_hll_t *h = hll();

        cr_expect_eq(sg_hll_add(h, "dev-1", 5), 1);
        cr_expect_eq(sg_hll_add(h, "dev-1", 5), 0);
        cr_expect_eq(sg_hll_add_hash(h, hash_for(7, 4)), 1);
        cr_expect_eq(sg_hll_add_hash(h, hash_for(7, 2)), 0);
        cr_expect_eq(sg_hll_add_hash(h, hash_for(7, 4)), 0);
        cr_expect_eq(sg_hll_add_hash(h, hash_for(7, 5)), 1);
        cr_expect_eq(sg_hll_register(h, 7), 5);
        sg_hll_destroy(h);
}

Test(hll, empty_counts_zero_and_is_small)
{
        sg_hll_t *h = hll();

        cr_expect(sg_hll_is_empty(h));
        cr_expect_eq(sg_hll_count(h), 0);
        cr_expect_lt(sg_hll_memory(h), 100, "%zu", sg_hll_memory(h));
        sg_hll_add(h, "x", 1);
        cr_expect_not(sg_hll_is_empty(h));
        sg_hll_clear(h);
        cr_expect(sg_hll_is_empty(h));
        cr_expect_eq(sg_hll_memory(h), 24);
        sg_hll_destroy(h);
        sg_hll_destroy(NULL);
}

/* Known answers: PFCOUNT of a key PFADDed with e0 .. e(n-1) on
 * redis-server 7.0.15 (the integration test asserts the same values
 * against the real server). */
Test(hll, counts_equal_redis_pfcount)
{
        static const struct {
                int n;
                uint64_t count;
        } known[] = {{0, 0},       {1, 1},       {10, 10},
                     {1000, 1008}, {5000, 4968}, {100000, 100853}};

        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
                sg_hll_t *h = hll_of(0, known[i].n);

                cr_expect_eq(sg_hll_count(h), known[i].count, "n=%d: %llu",
                             known[i].n,
                             (unsigned long long)sg_hll_count(h));
                sg_hll_destroy(h);
        }
}

Test(hll, memory_stays_small_while_few_registers_are_set)
{
        sg_hll_t *h = hll_of(0, 100);

        /* 100 registers in 108 entries of 4 bytes, and the struct. */
        cr_expect_eq(sg_hll_memory(h), 24 + 108 * 4, "%zu", sg_hll_memory(h));
        sg_hll_destroy(h);
        /* 1024 registers are the most the sparse form holds: 4 KiB. */
        h = hll();
        for (uint32_t i = 0; i < 1024; i++)
                sg_hll_add_hash(h, hash_for(i * 16, 1));
        cr_expect_eq(sg_hll_memory(h), 24 + 4096, "%zu", sg_hll_memory(h));
        sg_hll_add_hash(h, hash_for(1, 1));
        cr_expect_eq(sg_hll_memory(h), 24 + 12288, "%zu", sg_hll_memory(h));
        for (uint32_t i = 0; i < 1024; i++)
                cr_expect_eq(sg_hll_register(h, i * 16), 1);
        cr_expect_eq(sg_hll_register(h, 1), 1);
        cr_expect_eq(sg_hll_register(h, 2), 0);
        sg_hll_destroy(h);
        h = hll_of(0, 100000);
        cr_expect_eq(sg_hll_memory(h), 24 + 12288, "%zu", sg_hll_memory(h));
        sg_hll_destroy(h);
}

Test(hll, empty_encodes_as_one_xzero)
{
        static const unsigned char want[18] = {
                'H', 'Y', 'L', 'L', 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80,
                0x7f, 0xff};
        unsigned char out[SG_HLL_DENSE_SIZE];
        sg_hll_t *h = hll();

        cr_assert_eq(encode(h, out), sizeof(want));
        cr_expect_arr_eq(out, want, sizeof(want));
        cr_expect_eq(sg_hll_encode(h, out, sizeof(want) - 1), 0);
        sg_hll_destroy(h);
}

Test(hll, sparse_opcodes_are_redis_zero_xzero_val)
{
        /* Registers 100 and 101 = 2, 102 = 3: XZERO 100, VAL 2 x2, VAL 3,
         * XZERO 16281; then register 0 = 1 adds a VAL and shortens the
         * first run to XZERO 99 (ZERO holds at most 64). */
        static const unsigned char want1[] = {0x40, 0x63, 0x85, 0x88,
                                              0x7f, 0x98};
        static const unsigned char want2[] = {0x80, 0x40, 0x62, 0x85,
                                              0x88, 0x7f, 0x98};
        unsigned char out[SG_HLL_DENSE_SIZE];
        sg_hll_t *h = hll();

        sg_hll_add_hash(h, hash_for(100, 2));
        sg_hll_add_hash(h, hash_for(101, 2));
        sg_hll_add_hash(h, hash_for(102, 3));
        cr_assert_eq(encode(h, out), 16 + sizeof(want1));
        cr_expect_eq(out[4], 1);
        cr_expect_arr_eq(out + 16, want1, sizeof(want1));
        sg_hll_add_hash(h, hash_for(0, 1));
        cr_assert_eq(encode(h, out), 16 + sizeof(want2));
        cr_expect_arr_eq(out + 16, want2, sizeof(want2));
        sg_hll_destroy(h);
}

/* Registers 1, 3, .., 2k - 1 = 1: ZERO 1 + VAL per register, then XZERO. */
static sg_hll_t *every_other(int k)
{
        sg_hll_t *h = hll();

        for (int i = 0; i < k; i++)
                sg_hll_add_hash(h, hash_for(2 * (uint32_t)i + 1, 1));
        return h;
}

Test(hll, sparse_up_to_3000_bytes_then_dense)
{
        sg_hll_t *h = every_other(1491);

        cr_expect_eq(sg_hll_encoded_size(h), 3000);
        sg_hll_add_hash(h, hash_for(2983, 1));
        cr_expect_eq(sg_hll_encoded_size(h), SG_HLL_DENSE_SIZE);
        sg_hll_destroy(h);
}

Test(hll, value_above_32_forces_dense)
{
        unsigned char out[SG_HLL_DENSE_SIZE];
        sg_hll_t *h = hll(), *back = hll();

        sg_hll_add_hash(h, hash_for(9, 32));
        /* ZERO 9, VAL 32, XZERO 16374 */
        cr_expect_eq(sg_hll_encoded_size(h), 16 + 1 + 1 + 2);
        sg_hll_add_hash(h, hash_for(9, 33));
        cr_assert_eq(encode(h, out), SG_HLL_DENSE_SIZE);
        cr_expect_eq(out[4], 0);
        cr_assert_eq(sg_hll_decode(back, out, SG_HLL_DENSE_SIZE), 0);
        cr_expect_eq(sg_hll_register(back, 9), 33);
        cr_expect(sg_hll_equal(h, back));
        /* Few registers: dense on the wire, sparse in memory. */
        cr_expect_lt(sg_hll_memory(back), 100);
        sg_hll_destroy(h);
        sg_hll_destroy(back);
}

static void expect_round_trip(const sg_hll_t *h, int encoding)
{
        unsigned char out[SG_HLL_DENSE_SIZE], again[SG_HLL_DENSE_SIZE];
        sg_hll_t *back = hll();
        size_t n = encode(h, out);

        cr_expect_eq(out[4], encoding);
        cr_assert_eq(sg_hll_decode(back, out, n), 0);
        cr_expect(sg_hll_equal(h, back));
        cr_expect_eq(sg_hll_count(back), sg_hll_count(h));
        cr_expect_eq(encode(back, again), n);
        cr_expect_arr_eq(again, out, n);
        sg_hll_destroy(back);
}

Test(hll, round_trips_sparse_and_dense)
{
        static const int sizes[] = {0, 1, 100, 700, 1000, 2000, 100000};

        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
                sg_hll_t *h = hll_of(0, sizes[i]);

                expect_round_trip(h, sizes[i] <= 1000 ? 1 : 0);
                sg_hll_destroy(h);
        }
        /* Dense in memory (> 1024 registers), sparse on the wire. */
        sg_hll_t *h = every_other(1491);

        cr_expect_gt(sg_hll_memory(h), 12288);
        expect_round_trip(h, 1);
        sg_hll_destroy(h);
}

Test(hll, merge_is_register_max_and_union_counts_it)
{
        sg_hll_t *a = hll_of(0, 600), *b = hll_of(400, 3000),
                 *c = hll_of(0, 3000), *m = hll();
        const sg_hll_t *ab[] = {a, NULL, b};

        cr_assert_eq(sg_hll_merge(m, a), 0);
        cr_assert_eq(sg_hll_merge(m, b), 0);
        cr_expect(sg_hll_equal(m, c));
        cr_expect_eq(sg_hll_count_union(ab, 3), sg_hll_count(c));
        cr_expect_eq(sg_hll_count_union(ab, 1), sg_hll_count(a));
        cr_expect_eq(sg_hll_count_union(ab, 0), 0);
        /* Sparse into sparse stays sparse, dense into sparse goes dense. */
        sg_hll_clear(m);
        cr_assert_eq(sg_hll_merge(m, a), 0);
        cr_expect(sg_hll_equal(m, a));
        cr_expect_lt(sg_hll_memory(m), 12288);
        cr_assert_eq(sg_hll_merge(a, c), 0);
        cr_expect(sg_hll_equal(a, c));
        sg_hll_destroy(a);
        sg_hll_destroy(b);
        sg_hll_destroy(c);
        sg_hll_destroy(m);
}

Test(hll, union_of_dense_hlls_counts_their_merge)
{
        /* Both dense, overlapping: every register's max, at every offset
         * within the packed 3-byte groups. */
        sg_hll_t *a = hll_of(0, 20000), *b = hll_of(15000, 40000),
                 *m = hll();
        const sg_hll_t *ab[] = {a, b};

        cr_assert_gt(sg_hll_memory(a), 12288);
        cr_assert_gt(sg_hll_memory(b), 12288);
        cr_assert_eq(sg_hll_merge(m, a), 0);
        cr_assert_eq(sg_hll_merge(m, b), 0);
        cr_expect_eq(sg_hll_count_union(ab, 2), sg_hll_count(m));
        sg_hll_destroy(a);
        sg_hll_destroy(b);
        sg_hll_destroy(m);
}

/* ------------------------------------------------------ malformed blobs */

static void expect_rejected(const unsigned char *buf, size_t len,
                            const char *what)
{
        sg_hll_t *h = hll_of(0, 10), *before = hll_of(0, 10);

        cr_expect_eq(sg_hll_decode(h, buf, len), -1, "%s accepted", what);
        cr_expect(sg_hll_equal(h, before), "%s changed the HLL", what);
        sg_hll_destroy(h);
        sg_hll_destroy(before);
}

Test(hll, decode_rejects_malformed_headers)
{
        unsigned char out[SG_HLL_DENSE_SIZE + 1];
        sg_hll_t *h = hll_of(0, 100000);
        size_t n = encode(h, out);

        expect_rejected(NULL, 0, "NULL");
        expect_rejected(out, 15, "short header");
        expect_rejected(out, n - 1, "dense one byte short");
        out[n] = 0;
        expect_rejected(out, n + 1, "dense one byte long");
        out[4] = 2;
        expect_rejected(out, n, "encoding 2");
        out[4] = 255;
        expect_rejected(out, n, "raw encoding");
        out[4] = 0;
        out[0] = 'h';
        expect_rejected(out, n, "bad magic");
        sg_hll_destroy(h);
}

Test(hll, decode_rejects_sparse_not_covering_16384_registers)
{
        static const unsigned char hdr[16] = {'H', 'Y', 'L', 'L', 1};
        unsigned char b[32];

        memcpy(b, hdr, 16);
        expect_rejected(b, 16, "no opcodes");
        b[16] = 0x7f, b[17] = 0xfe; /* XZERO 16383 */
        expect_rejected(b, 18, "16383 registers");
        b[18] = 0x80; /* + VAL 1 */
        cr_expect_eq(sg_hll_decode(sg_hll_new(), b, 19), 0);
        b[19] = 0x00; /* + ZERO 1: 16385 */
        expect_rejected(b, 20, "16385 registers");
        b[16] = 0x7f, b[17] = 0xff; /* XZERO 16384 ... */
        expect_rejected(b, 19, "a VAL past the end");
        b[16] = 0x7f;
        expect_rejected(b, 17, "truncated XZERO");
}

/* Every prefix of a valid blob and every single-byte change: rejected or,
 * if accepted, a valid HLL that encodes and decodes again (ASan watches
 * the reads). */
static void fuzz_blob(const unsigned char *blob, size_t n)
{
        unsigned char *b = malloc(n);
        unsigned char out[SG_HLL_DENSE_SIZE];
        sg_hll_t *h = hll();
        unsigned seed = 1;

        cr_assert_not_null(b);
        for (size_t len = 0; len < n; len++) {
                memcpy(b, blob, len); /* exact-size copy: ASan bounds */
                cr_expect_eq(sg_hll_decode(h, b, len), -1, "prefix %zu", len);
        }
        for (int i = 0; i < 4000; i++) {
                memcpy(b, blob, n);
                seed = seed * 1103515245 + 12345;
                b[16 + (seed >> 8) % (n - 16)] ^=
                        (unsigned char)(1 + (seed >> 3) % 255);
                if (sg_hll_decode(h, b, n) == 0) {
                        size_t m = encode(h, out);
                        sg_hll_t *again = hll();

                        cr_expect_eq(sg_hll_decode(again, out, m), 0);
                        cr_expect(sg_hll_equal(h, again));
                        sg_hll_destroy(again);
                }
        }
        free(b);
        sg_hll_destroy(h);
}

Test(hll, corrupt_or_truncated_blobs_never_read_out_of_bounds)
{
        unsigned char out[SG_HLL_DENSE_SIZE];
        sg_hll_t *sparse = hll_of(0, 300), *dense = hll_of(0, 20000);

        fuzz_blob(out, encode(sparse, out));
        fuzz_blob(out, encode(dense, out));
        sg_hll_destroy(sparse);
        sg_hll_destroy(dense);
}

/* -------------------------------------------------------------- benchmark */

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 10M adds of 16-byte ids (1M distinct, made beforehand) into 1000 HLLs
 * (the aggregate's pattern: many HLLs, ids spread over them): prints the
 * rate, asserts nothing about it. */
Test(hll, add_rate, .timeout = 120)
{
        enum { HLLS = 1000, IDS = 1000000, ADDS = 10000000 };
        sg_hll_t **hs = calloc(HLLS, sizeof(*hs));
        char(*id)[16] = malloc((size_t)IDS * 16);
        size_t mem = 0;
        uint64_t hsum = 0;
        double t0, t_add, t_hash, t_one;

        cr_assert_not_null(hs);
        cr_assert_not_null(id);
        for (int i = 0; i < IDS; i++) {
                char b[24];

                snprintf(b, sizeof(b), "dev-%012d", i);
                memcpy(id[i], b, 16);
        }
        for (int i = 0; i < HLLS; i++)
                hs[i] = hll();
        t0 = now_s();
        for (int i = 0; i < ADDS; i++)
                hsum += sg_hll_hash(id[i % IDS], 16);
        t_hash = now_s() - t0;
        t0 = now_s();
        for (int i = 0; i < ADDS; i++)
                sg_hll_add(hs[(unsigned)i * 2654435761u % HLLS], id[i % IDS],
                           16);
        t_add = now_s() - t0;
        t0 = now_s();
        for (int i = 0; i < ADDS; i++)
                sg_hll_add(hs[0], id[i % IDS], 16);
        t_one = now_s() - t0;
        for (int i = 0; i < HLLS; i++) {
                mem += sg_hll_memory(hs[i]);
                sg_hll_destroy(hs[i]);
        }
        free(hs);
        free(id);
        fprintf(stderr,
                "hll: %.1f M adds/s over %d HLLs, %.1f M/s into one (hash "
                "alone %.1f M/s, sum %llx); the HLLs hold %zu bytes\n",
                ADDS / t_add / 1e6, HLLS, ADDS / t_one / 1e6,
                ADDS / t_hash / 1e6,
                (unsigned long long)hsum & 0xf, mem);
}

/* The sparse phase: 10,000 HLLs of ~300 distinct ids each (1000 adds per
 * HLL), none past 1024 registers. Prints the rate and the memory. */
Test(hll, add_rate_sparse, .timeout = 120)
{
        enum { HLLS = 10000, PER = 1000, DISTINCT = 300 };
        sg_hll_t **hs = calloc(HLLS, sizeof(*hs));
        size_t mem = 0;
        int sparse = 0;
        uint64_t x = 1;
        double t0, dt;

        cr_assert_not_null(hs);
        for (int i = 0; i < HLLS; i++)
                hs[i] = hll();
        t0 = now_s();
        for (int k = 0; k < PER; k++)
                for (int i = 0; i < HLLS; i++) {
                        uint64_t id = (uint64_t)i << 32 | (x % DISTINCT);

                        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                        sg_hll_add(hs[i], &id, sizeof(id));
                }
        dt = now_s() - t0;
        for (int i = 0; i < HLLS; i++) {
                mem += sg_hll_memory(hs[i]);
                sparse += sg_hll_memory(hs[i]) <= 24 + 4096;
                sg_hll_destroy(hs[i]);
        }
        free(hs);
        cr_expect_eq(sparse, HLLS);
        fprintf(stderr,
                "hll: sparse: %.1f M adds/s; %d HLLs of <= %d ids hold %zu "
                "bytes (%zu each)\n",
                (double)HLLS * PER / dt / 1e6, HLLS, DISTINCT, mem,
                mem / HLLS);
}
