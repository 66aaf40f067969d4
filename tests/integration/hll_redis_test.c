/*
 * lib/hll against a real redis-server: blobs Redis writes decode to the
 * registers we compute ourselves, blobs we write are HLLs to Redis (PFCOUNT,
 * PFADD, PFMERGE), and every count agrees with PFCOUNT's.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>

#include "harness.h"
#include "hll.h"

static redisContext *rc;

static void redis_up(void)
{
        h_init();
        h_start_redis();
        rc = redisConnectUnix(H.redis_sock);
        cr_assert(rc && !rc->err, "connect %s", H.redis_sock);
}

static void redis_down(void)
{
        if (rc)
                redisFree(rc);
        rc = NULL;
        cr_assert_eq(h_stop_all(), 0, "redis-server did not stop cleanly");
}

TestSuite(hll_redis, .init = redis_up, .fini = redis_down, .timeout = 120);

/* ------------------------------------------------------------- helpers */

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

/* e<from> .. e<to - 1>, the elements of the unit test's known answers. */
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

/* PFADD key e<from> .. e<to - 1>, 1000 a command; 1 if any reply was 1. */
static int pfadd_range(const char *key, int from, int to)
{
        enum { BATCH = 1000 };
        static char bufs[BATCH][16];
        const char *argv[BATCH + 2];
        size_t lens[BATCH + 2];
        int changed = 0;

        for (int i = from; i < to;) {
                int argc = 2;

                argv[0] = "PFADD", lens[0] = 5;
                argv[1] = key, lens[1] = strlen(key);
                for (; i < to && argc < BATCH + 2; i++, argc++) {
                        int k = argc - 2;

                        lens[argc] = (size_t)snprintf(bufs[k], sizeof(bufs[k]),
                                                      "e%d", i);
                        argv[argc] = bufs[k];
                }
                redisReply *r = redisCommandArgv(rc, argc, argv, lens);

                cr_assert(r && r->type == REDIS_REPLY_INTEGER, "PFADD %s: %s",
                          key, r && r->str ? r->str : "no reply");
                changed |= r->integer == 1;
                freeReplyObject(r);
        }
        return changed;
}

/* A command whose reply must be an integer (not an error). */
static long long cmd_int(const char *fmt, ...)
{
        va_list ap;
        redisReply *r;
        long long v;

        va_start(ap, fmt);
        r = redisvCommand(rc, fmt, ap);
        va_end(ap);
        cr_assert_not_null(r, "%s: no reply", fmt);
        cr_assert_eq(r->type, REDIS_REPLY_INTEGER, "%s: %s", fmt,
                     r->str ? r->str : "not an integer");
        v = r->integer;
        freeReplyObject(r);
        return v;
}

static void set_ours(const char *key, const sg_hll_t *h)
{
        static unsigned char blob[SG_HLL_DENSE_SIZE];
        size_t n = sg_hll_encode(h, blob, sizeof(blob));
        redisReply *r;

        cr_assert_gt(n, 0);
        r = redisCommand(rc, "SET %s %b", key, blob, n);
        cr_assert(r && r->type == REDIS_REPLY_STATUS, "SET %s", key);
        freeReplyObject(r);
}

/* GET key, decoded; *encoding gets the blob's encoding byte. */
static sg_hll_t *get_theirs(const char *key, int *encoding)
{
        redisReply *r = redisCommand(rc, "GET %s", key);
        sg_hll_t *h = hll();

        cr_assert(r && r->type == REDIS_REPLY_STRING, "GET %s", key);
        cr_assert_eq(sg_hll_decode(h, (unsigned char *)r->str, r->len), 0,
                     "%s: Redis's blob (%zu bytes) rejected", key, r->len);
        if (encoding)
                *encoding = r->len > 4 ? (unsigned char)r->str[4] : -1;
        freeReplyObject(r);
        return h;
}

/* ----------------------------------------------------------------- tests */

/* PFCOUNT of e0 .. e(n-1) on redis-server 7.0.15: the unit test's known
 * answers come from here. */
static const struct {
        int n;
        long long count;
        int encoding; /* Redis's, after the PFADDs */
} known[] = {{1, 1, 1},       {10, 10, 1},       {100, 100, 1},
             {1000, 1008, 1}, {5000, 4968, 0},   {100000, 100853, 0}};
#define KNOWN (sizeof(known) / sizeof(known[0]))

Test(hll_redis, redis_blobs_decode_to_the_registers_we_compute)
{
        for (size_t i = 0; i < KNOWN; i++) {
                char key[32];
                int enc;
                sg_hll_t *ours = hll_of(0, known[i].n), *theirs;

                snprintf(key, sizeof(key), "A%d", known[i].n);
                cr_expect_eq(pfadd_range(key, 0, known[i].n), 1);
                cr_expect_eq(cmd_int("PFCOUNT %s", key), known[i].count,
                             "n=%d", known[i].n);
                theirs = get_theirs(key, &enc);
                cr_expect_eq(enc, known[i].encoding, "n=%d", known[i].n);
                cr_expect(sg_hll_equal(ours, theirs), "n=%d", known[i].n);
                cr_expect_eq(sg_hll_count(theirs), known[i].count, "n=%d",
                             known[i].n);
                cr_expect_eq(sg_hll_count(ours), known[i].count, "n=%d",
                             known[i].n);
                sg_hll_destroy(ours);
                sg_hll_destroy(theirs);
        }
        cr_expect_eq(cmd_int("PFCOUNT nothing"), 0);
}

/* Not a requirement (registers are what matter, and Redis never turns a
 * dense key back to sparse, and PFMERGE always writes dense), but for keys
 * built by PFADD alone our encoding is Redis's own, byte for byte, but for
 * the cached cardinality (bytes 8-15). */
Test(hll_redis, our_blob_is_the_blob_redis_writes)
{
        static unsigned char ours[SG_HLL_DENSE_SIZE];

        for (size_t i = 0; i < KNOWN; i++) {
                char key[32];
                sg_hll_t *h = hll_of(0, known[i].n);
                size_t n = sg_hll_encode(h, ours, sizeof(ours));
                redisReply *r;

                snprintf(key, sizeof(key), "A%d", known[i].n);
                pfadd_range(key, 0, known[i].n);
                r = redisCommand(rc, "GET %s", key);
                cr_assert(r && r->type == REDIS_REPLY_STRING);
                cr_expect_eq((size_t)r->len, n, "n=%d", known[i].n);
                cr_expect(n == (size_t)r->len && !memcmp(ours, r->str, 8) &&
                                  !memcmp(ours + 16, r->str + 16, n - 16),
                          "n=%d: bytes differ", known[i].n);
                freeReplyObject(r);
                sg_hll_destroy(h);
        }
}

Test(hll_redis, our_blobs_count_in_redis_and_pfadd_changes_nothing)
{
        for (size_t i = 0; i < KNOWN; i++) {
                char key[32];
                sg_hll_t *ours = hll_of(0, known[i].n), *back;

                snprintf(key, sizeof(key), "B%d", known[i].n);
                set_ours(key, ours);
                cr_expect_eq(cmd_int("PFCOUNT %s", key),
                             (long long)sg_hll_count(ours), "n=%d", known[i].n);
                cr_expect_eq(pfadd_range(key, 0, known[i].n), 0, "n=%d",
                             known[i].n);
                /* Elements new to it: Redis's PFADD on our blob and our add
                 * on our HLL set the same registers. */
                pfadd_range(key, 200000, 200050);
                for (int e = 200000; e < 200050; e++) {
                        char b[16];

                        sg_hll_add(ours, b, (size_t)snprintf(b, sizeof(b),
                                                             "e%d", e));
                }
                back = get_theirs(key, NULL);
                cr_expect(sg_hll_equal(ours, back), "n=%d", known[i].n);
                cr_expect_eq(cmd_int("PFCOUNT %s", key),
                             (long long)sg_hll_count(ours), "n=%d", known[i].n);
                sg_hll_destroy(ours);
                sg_hll_destroy(back);
        }
}

Test(hll_redis, union_count_is_pfcount_of_several_keys)
{
        sg_hll_t *b = hll_of(400, 3000), *c = hll_of(2000, 50000), *a;
        const sg_hll_t *abc[3];

        pfadd_range("A", 0, 600);
        set_ours("B", b);
        set_ours("C", c);
        a = get_theirs("A", NULL);
        abc[0] = a, abc[1] = b, abc[2] = c;
        cr_expect_eq(cmd_int("PFCOUNT A B C"),
                     (long long)sg_hll_count_union(abc, 3));
        cr_expect_eq(cmd_int("PFCOUNT A B"),
                     (long long)sg_hll_count_union(abc, 2));
        cr_expect_eq(cmd_int("PFCOUNT A missing"),
                     (long long)sg_hll_count_union(abc, 1));
        sg_hll_destroy(a);
        sg_hll_destroy(b);
        sg_hll_destroy(c);
}

Test(hll_redis, sparse_blob_promoted_to_dense_by_pfadd_still_round_trips)
{
        sg_hll_t *ours = hll_of(0, 700), *all = hll_of(0, 5000), *back;
        unsigned char blob[SG_HLL_DENSE_SIZE];
        int enc;

        cr_assert_eq(sg_hll_encode(ours, blob, sizeof(blob)),
                     sg_hll_encoded_size(ours));
        cr_assert_eq(blob[4], 1, "700 elements should encode sparse");
        set_ours("S", ours);
        pfadd_range("S", 700, 5000);
        back = get_theirs("S", &enc);
        cr_expect_eq(enc, 0, "Redis kept it sparse");
        cr_expect(sg_hll_equal(back, all));
        cr_expect_eq(cmd_int("PFCOUNT S"), (long long)sg_hll_count(all));
        /* And back to Redis once more, now dense from us. */
        set_ours("S2", back);
        cr_expect_eq(cmd_int("PFCOUNT S2"), (long long)sg_hll_count(all));
        sg_hll_destroy(ours);
        sg_hll_destroy(all);
        sg_hll_destroy(back);
}

Test(hll_redis, pfmerge_merges_our_blobs)
{
        sg_hll_t *x = hll_of(0, 300), *y = hll_of(100, 40000), *m = hll(),
                 *z;

        set_ours("X", x);
        set_ours("Y", y);
        cr_assert_eq(sg_hll_merge(m, x), 0);
        cr_assert_eq(sg_hll_merge(m, y), 0);
        redisReply *r = redisCommand(rc, "PFMERGE Z X Y");
        cr_assert(r && r->type == REDIS_REPLY_STATUS, "PFMERGE: %s",
                  r && r->str ? r->str : "no reply");
        freeReplyObject(r);
        z = get_theirs("Z", NULL);
        cr_expect(sg_hll_equal(z, m));
        cr_expect_eq(cmd_int("PFCOUNT Z"), (long long)sg_hll_count(m));
        /* PFMERGE of two sparse ones of ours, too. */
        sg_hll_destroy(y);
        y = hll_of(250, 900);
        set_ours("Y", y);
        r = redisCommand(rc, "PFMERGE Z2 X Y");
        cr_assert(r && r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
        sg_hll_destroy(z);
        z = get_theirs("Z2", NULL);
        sg_hll_destroy(m);
        m = hll_of(0, 900);
        cr_expect(sg_hll_equal(z, m));
        sg_hll_destroy(x);
        sg_hll_destroy(y);
        sg_hll_destroy(z);
        sg_hll_destroy(m);
}

/* Registers 1, 3, .., 2k - 1 = 1: k = 1491 is a 3000-byte sparse blob. */
static sg_hll_t *every_other(int k)
{
        sg_hll_t *h = hll();

        for (int i = 0; i < k; i++)
                sg_hll_add_hash(h, hash_for(2 * (uint32_t)i + 1, 1));
        return h;
}

Test(hll_redis, redis_accepts_every_blob_we_write)
{
        static const int sizes[] = {0,    1,    2,    5,    50,   300,  1000,
                                    1040, 1060, 1200, 1500, 3000, 20000};
        sg_hll_t *h[32];
        int n = 0;

        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
                h[n++] = hll_of(0, sizes[i]);
        h[n++] = every_other(1491); /* sparse, exactly 3000 bytes */
        h[n++] = every_other(1492); /* dense: 3002 would be too long */
        h[n] = hll();               /* one register of 51: dense */
        sg_hll_add_hash(h[n++], hash_for(77, 51));
        h[n] = hll(); /* 32, the largest sparse value */
        sg_hll_add_hash(h[n++], hash_for(78, 32));
        h[n] = hll(); /* all 16384 registers set, runs of one */
        for (uint32_t i = 0; i < SG_HLL_REGISTERS; i++)
                sg_hll_add_hash(h[n], hash_for(i, 1 + i % 7));
        n++;
        for (int i = 0; i < n; i++) {
                sg_hll_t *back;

                set_ours("W", h[i]);
                cr_expect_eq(cmd_int("PFCOUNT W"),
                             (long long)sg_hll_count(h[i]), "blob %d", i);
                cr_expect_geq(cmd_int("PFADD W e-new"), 0);
                sg_hll_add(h[i], "e-new", 5);
                back = get_theirs("W", NULL);
                cr_expect(sg_hll_equal(h[i], back), "blob %d", i);
                sg_hll_destroy(back);
                sg_hll_destroy(h[i]);
        }
}

/* Registers of 52 to 63 cannot come from the hash, but a dense blob can
 * hold them: Redis counts them as if absent from the histogram's tail, and
 * so must we (here and in a union). */
Test(hll_redis, registers_above_51_count_as_redis_counts_them)
{
        unsigned char blob[SG_HLL_DENSE_SIZE];
        sg_hll_t *h = hll_of(0, 3000), *back = hll();
        const sg_hll_t *one[1];
        redisReply *r;

        cr_assert_eq(sg_hll_encode(h, blob, sizeof(blob)), SG_HLL_DENSE_SIZE);
        blob[16] |= 0x3f;                    /* register 0 = 63 */
        blob[17] = (blob[17] & 0xf0) | 0x0e; /* register 1 >= 56 */
        cr_assert_eq(sg_hll_decode(back, blob, sizeof(blob)), 0);
        cr_expect_eq(sg_hll_register(back, 0), 63);
        r = redisCommand(rc, "SET hi %b", blob, sizeof(blob));
        freeReplyObject(r);
        cr_expect_eq(cmd_int("PFCOUNT hi"), (long long)sg_hll_count(back));
        pfadd_range("lo", 5000, 5100);
        one[0] = back;
        sg_hll_t *lo = get_theirs("lo", NULL);
        const sg_hll_t *both[2] = {back, lo};
        cr_expect_eq(cmd_int("PFCOUNT hi lo"),
                     (long long)sg_hll_count_union(both, 2));
        cr_expect_eq(cmd_int("PFCOUNT hi"),
                     (long long)sg_hll_count_union(one, 1));
        sg_hll_destroy(h);
        sg_hll_destroy(back);
        sg_hll_destroy(lo);
}

Test(hll_redis, corrupt_blob_is_rejected_by_us_and_by_redis)
{
        /* XZERO 16383: one register short. */
        static const unsigned char bad[] = {'H', 'Y', 'L', 'L', 1, 0, 0, 0, 0,
                                            0,   0,   0,   0,   0, 0, 0x80,
                                            0x7f, 0xfe};
        sg_hll_t *h = hll();
        redisReply *r;

        cr_expect_eq(sg_hll_decode(h, bad, sizeof(bad)), -1);
        r = redisCommand(rc, "SET bad %b", bad, sizeof(bad));
        freeReplyObject(r);
        r = redisCommand(rc, "PFCOUNT bad");
        cr_assert_not_null(r);
        cr_expect_eq(r->type, REDIS_REPLY_ERROR);
        cr_expect(r->str && strstr(r->str, "INVALIDOBJ"), "%s",
                  r->str ? r->str : "");
        freeReplyObject(r);
        sg_hll_destroy(h);
}
