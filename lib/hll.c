/*
 * Two in-memory forms. Sparse: the set registers only, a sorted array of
 * uint32 (index << 8 | value) grown by half from 4 to 1024 entries (4 KiB).
 * An add is a binary search, plus a memmove of at most 4 KiB the first time
 * a register is set, which happens at most 1024 times before the HLL goes
 * dense. Dense: Redis's own packed layout (6 bits a register, least
 * significant bits first), so a dense blob is a memcpy either way. The
 * encoding written for Redis follows from the registers, not from the form
 * they are held in.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hll.h"

#define HLL_Q          (64 - SG_HLL_P) /* hash bits left for the rank: 50 */
#define HLL_MASK       (SG_HLL_REGISTERS - 1)
#define HLL_MAX        63 /* a 6-bit register */
#define DENSE_BYTES    (SG_HLL_REGISTERS * 6 / 8)
#define ENC_DENSE      0
#define ENC_SPARSE     1
#define SPARSE_VAL_MAX 32 /* largest value a sparse VAL opcode holds */
#define SPARSE_MIN     4
#define SPARSE_MAX     1024 /* 4 KiB of entries, then dense */
#define ALPHA_INF      0.721347520444481703680 /* 0.5 / ln(2), as Redis */

struct sg_hll {
        uint32_t *reg;  /* sparse: sorted entries; NULL if empty or dense */
        uint8_t *dense; /* DENSE_BYTES, or NULL */
        uint32_t used;  /* entries in reg */
        uint32_t cap;   /* entries reg has room for */
};

/* ----------------------------------------------------------------- hash */

static inline uint64_t load_le64(const unsigned char *p)
{
        uint64_t k;

        memcpy(&k, p, sizeof(k));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        k = __builtin_bswap64(k);
#endif
        return k;
}

/* MurmurHash64A (Austin Appleby, public domain), reading the input as
 * little-endian words on any host, as Redis does. */
uint64_t sg_hll_hash(const void *ele, size_t len)
{
        const uint64_t m = 0xc6a4a7935bd1e995ULL;
        const unsigned char *p = ele;
        uint64_t h = 0xadc83b19ULL ^ ((uint64_t)len * m);
        size_t words = len / 8, tail = len & 7;

        for (size_t i = 0; i < words; i++, p += 8) {
                uint64_t k = load_le64(p) * m;

                k ^= k >> 47;
                h ^= k * m;
                h *= m;
        }
        for (size_t i = tail; i > 0; i--)
                h ^= (uint64_t)p[i - 1] << (8 * (i - 1));
        if (tail)
                h *= m;
        h ^= h >> 47;
        h *= m;
        h ^= h >> 47;
        return h;
}

/* Redis's hllPatLen: the low P bits pick the register; the rank is the
 * position of the first 1 in the rest, with bit Q forced to 1 so it is at
 * most Q + 1. */
static inline unsigned hash_rank(uint64_t hash, uint32_t *idx)
{
        *idx = (uint32_t)(hash & HLL_MASK);
        hash >>= SG_HLL_P;
        hash |= 1ULL << HLL_Q;
        return (unsigned)__builtin_ctzll(hash) + 1;
}

/* ----------------------------------------------------------------- dense */

/* A register at bit offset 0 or 2 of its byte lies in that byte; only
 * offsets 4 and 6 reach into the next one. So the last register (offset 2)
 * never reads past the 12288 bytes, as Redis's blobs have no padding. */
static inline unsigned dense_get(const uint8_t *d, uint32_t i)
{
        uint32_t bit = i * 6, byte = bit >> 3, fb = bit & 7;
        unsigned v = d[byte] >> fb;

        if (fb > 2)
                v |= (unsigned)d[byte + 1] << (8 - fb);
        return v & HLL_MAX;
}

static inline void dense_set(uint8_t *d, uint32_t i, unsigned v)
{
        uint32_t bit = i * 6, byte = bit >> 3, fb = bit & 7;

        d[byte] = (uint8_t)((d[byte] & ~(HLL_MAX << fb)) | (v << fb));
        if (fb > 2)
                d[byte + 1] = (uint8_t)((d[byte + 1] & ~(HLL_MAX >> (8 - fb))) |
                                        (v >> (8 - fb)));
}

/* ---------------------------------------------------------------- sparse */

#define E_IDX(e) ((e) >> 8)
#define E_VAL(e) ((e) & 0xff)

/* The first entry whose index is >= idx (h->used if none). Branch-free
 * halving (a conditional move), as the hot path's branches are coin flips. */
static inline uint32_t sparse_find(const sg_hll_t *h, uint32_t idx)
{
        const uint32_t *b = h->reg;
        uint32_t n = h->used, key = idx << 8;

        if (!n)
                return 0;
        while (n > 1) {
                uint32_t half = n / 2;

                b = b[half] < key ? b + half : b;
                n -= half;
        }
        return (uint32_t)(b - h->reg) + (*b < key);
}

/* Moves the sparse registers into the dense form; -1 on OOM (unchanged). */
static int to_dense(sg_hll_t *h)
{
        uint8_t *d = calloc(1, DENSE_BYTES);

        if (!d)
                return -1;
        for (uint32_t i = 0; i < h->used; i++)
                dense_set(d, E_IDX(h->reg[i]), E_VAL(h->reg[i]));
        free(h->reg);
        h->reg = NULL;
        h->cap = h->used = 0;
        h->dense = d;
        return 0;
}

/* Half as much room again (multiples of 4 entries), or dense past
 * SPARSE_MAX. -1 on OOM (unchanged). */
static int grow(sg_hll_t *h)
{
        uint32_t cap = h->cap ? (h->cap + h->cap / 2 + 3) & ~3u : SPARSE_MIN;
        uint32_t *reg;

        if (h->cap >= SPARSE_MAX)
                return to_dense(h);
        if (cap > SPARSE_MAX)
                cap = SPARSE_MAX;
        reg = realloc(h->reg, cap * sizeof(*reg));
        if (!reg)
                return -1;
        h->reg = reg;
        h->cap = cap;
        return 0;
}

/* Register idx = max(register, v), v >= 1: 1 if it grew, 0, -1 on OOM. */
static int set_max(sg_hll_t *h, uint32_t idx, unsigned v)
{
        uint32_t pos;

        if (h->dense) {
                if (dense_get(h->dense, idx) >= v)
                        return 0;
                dense_set(h->dense, idx, v);
                return 1;
        }
        pos = sparse_find(h, idx);
        if (pos < h->used && E_IDX(h->reg[pos]) == idx) {
                if (E_VAL(h->reg[pos]) >= v)
                        return 0;
                h->reg[pos] = idx << 8 | v;
                return 1;
        }
        if (h->used == h->cap) {
                if (grow(h) < 0)
                        return -1;
                if (h->dense)
                        return set_max(h, idx, v);
        }
        memmove(&h->reg[pos + 1], &h->reg[pos],
                (h->used - pos) * sizeof(*h->reg));
        h->reg[pos] = idx << 8 | v;
        h->used++;
        return 1;
}

static unsigned get_reg(const sg_hll_t *h, uint32_t idx)
{
        uint32_t pos;

        if (h->dense)
                return dense_get(h->dense, idx);
        pos = sparse_find(h, idx);
        return pos < h->used && E_IDX(h->reg[pos]) == idx ? E_VAL(h->reg[pos])
                                                          : 0;
}

/* ------------------------------------------------------------ lifecycle */

sg_hll_t *sg_hll_new(void)
{
        return calloc(1, sizeof(sg_hll_t));
}

void sg_hll_clear(sg_hll_t *h)
{
        free(h->reg);
        free(h->dense);
        memset(h, 0, sizeof(*h));
}

void sg_hll_destroy(sg_hll_t *h)
{
        if (!h)
                return;
        sg_hll_clear(h);
        free(h);
}

size_t sg_hll_memory(const sg_hll_t *h)
{
        return sizeof(*h) + (h->dense ? DENSE_BYTES : 0) +
               (size_t)h->cap * sizeof(*h->reg);
}

int sg_hll_is_empty(const sg_hll_t *h)
{
        /* The dense form only ever holds more than SPARSE_MAX registers. */
        return !h->dense && h->used == 0;
}

int sg_hll_register(const sg_hll_t *h, uint32_t idx)
{
        return idx < SG_HLL_REGISTERS ? (int)get_reg(h, idx) : -1;
}

int sg_hll_equal(const sg_hll_t *a, const sg_hll_t *b)
{
        for (uint32_t i = 0; i < SG_HLL_REGISTERS; i++)
                if (get_reg(a, i) != get_reg(b, i))
                        return 0;
        return 1;
}

/* ------------------------------------------------------------------ add */

int sg_hll_add_hash(sg_hll_t *h, uint64_t hash)
{
        uint32_t idx;
        unsigned rank = hash_rank(hash, &idx);

        return set_max(h, idx, rank);
}

int sg_hll_add(sg_hll_t *h, const void *ele, size_t len)
{
        return sg_hll_add_hash(h, sg_hll_hash(ele, len));
}

int sg_hll_merge(sg_hll_t *dst, const sg_hll_t *src)
{
        if (src->dense) {
                if (!dst->dense && to_dense(dst) < 0)
                        return -1;
                for (uint32_t i = 0; i < SG_HLL_REGISTERS; i++) {
                        unsigned v = dense_get(src->dense, i);

                        if (v && dense_get(dst->dense, i) < v)
                                dense_set(dst->dense, i, v);
                }
                return 0;
        }
        for (uint32_t i = 0; i < src->used; i++)
                if (set_max(dst, E_IDX(src->reg[i]), E_VAL(src->reg[i])) < 0)
                        return -1;
        return 0;
}

/* ------------------------------------------------------------ estimator */

/* The estimator of Otmar Ertl, "New cardinality estimation algorithms for
 * HyperLogLog sketches" (2017), as Redis 7.0's hllCount computes it, in the
 * same order of operations so that the doubles round the same way. */
static double hll_sigma(double x)
{
        double y = 1, z = x, prev;

        if (x == 1.)
                return INFINITY;
        do {
                x *= x;
                prev = z;
                z += x * y;
                y += y;
        } while (prev != z);
        return z;
}

static double hll_tau(double x)
{
        double y = 1.0, z = 1 - x, prev;

        if (x == 0. || x == 1.)
                return 0.;
        do {
                x = sqrt(x);
                prev = z;
                y *= 0.5;
                z -= pow(1 - x, 2) * y;
        } while (prev != z);
        return z / 3;
}

/* histo[v]: registers holding v. Values above Q + 1 cannot come from the
 * hash; a blob may still hold them, and Redis ignores them: so do we. */
static uint64_t estimate(const int *histo)
{
        double m = SG_HLL_REGISTERS;
        double z = m * hll_tau((m - histo[HLL_Q + 1]) / m);

        for (int j = HLL_Q; j >= 1; j--) {
                z += histo[j];
                z *= 0.5;
        }
        z += m * hll_sigma(histo[0] / m);
        return (uint64_t)llroundl(ALPHA_INF * m * m / z);
}

uint64_t sg_hll_count(const sg_hll_t *h)
{
        int histo[HLL_MAX + 1] = {0};

        if (h->dense) {
                for (uint32_t i = 0; i < SG_HLL_REGISTERS; i++)
                        histo[dense_get(h->dense, i)]++;
        } else {
                histo[0] = (int)(SG_HLL_REGISTERS - h->used);
                for (uint32_t i = 0; i < h->used; i++)
                        histo[E_VAL(h->reg[i])]++;
        }
        return estimate(histo);
}

/* The union of sparse HLLs only: the registers they set, without a pass
 * over all 16384 (a window's buckets are mostly small). reg is all zero
 * between calls: only the registers a call set are cleared after it (a
 * memset of all 16 KiB, twice per snapshot, was 11% of aggregate's
 * instructions). */
static uint64_t count_union_sparse(const sg_hll_t *const *hs, int n)
{
        static __thread uint8_t reg[SG_HLL_REGISTERS];
        static __thread uint16_t touched[SG_HLL_REGISTERS];
        int histo[HLL_MAX + 1] = {0};
        uint32_t nt = 0;

        for (int k = 0; k < n; k++) {
                const sg_hll_t *h = hs[k];

                for (uint32_t i = 0; h && i < h->used; i++) {
                        uint32_t e = h->reg[i], idx = E_IDX(e);

                        if (!reg[idx])
                                touched[nt++] = (uint16_t)idx;
                        if (E_VAL(e) > reg[idx])
                                reg[idx] = (uint8_t)E_VAL(e);
                }
        }
        histo[0] = (int)(SG_HLL_REGISTERS - nt);
        for (uint32_t i = 0; i < nt; i++) {
                histo[reg[touched[i]]]++;
                reg[touched[i]] = 0;
        }
        return estimate(histo);
}

/* reg[i] = max(reg[i], register i of the dense d): four registers per
 * three bytes, unpacked together (a window's union reads every register
 * of each dense bucket, each snapshot). */
static void dense_max_into(uint8_t *reg, const uint8_t *d)
{
        for (uint32_t i = 0; i < SG_HLL_REGISTERS; i += 4, d += 3) {
                uint32_t w = d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16;

                for (uint32_t k = 0; k < 4; k++) {
                        uint8_t v = (uint8_t)(w >> (6 * k) & HLL_MAX);

                        if (v > reg[i + k])
                                reg[i + k] = v;
                }
        }
}

uint64_t sg_hll_count_union(const sg_hll_t *const *hs, int n)
{
        uint8_t reg[SG_HLL_REGISTERS] = {0};
        int histo[HLL_MAX + 1] = {0};
        int dense = 0;

        for (int k = 0; k < n; k++)
                dense |= hs[k] && hs[k]->dense != NULL;
        if (!dense)
                return count_union_sparse(hs, n);
        for (int k = 0; k < n; k++) {
                const sg_hll_t *h = hs[k];

                if (!h)
                        continue;
                if (h->dense)
                        dense_max_into(reg, h->dense);
                for (uint32_t i = 0; i < h->used; i++) {
                        uint32_t e = h->reg[i];

                        if (E_VAL(e) > reg[E_IDX(e)])
                                reg[E_IDX(e)] = (uint8_t)E_VAL(e);
                }
        }
        for (uint32_t i = 0; i < SG_HLL_REGISTERS; i++)
                histo[reg[i]]++;
        return estimate(histo);
}

/* ------------------------------------------------------------- encoding */

/*
 * Redis's sparse opcodes: ZERO 00xxxxxx (1-64 zero registers), XZERO
 * 01xxxxxx yyyyyyyy (1-16384 zeros), VAL 1vvvvvxx (1-4 registers of value
 * 1-32). The writer takes the set registers in index order and emits
 * maximal runs, the shortest encoding; with out NULL it only measures.
 */
typedef struct sparse_w {
        unsigned char *out;
        size_t len;     /* body bytes so far */
        uint32_t next;  /* first register not written yet */
        uint32_t start; /* pending run of equal values */
        uint32_t run;
        unsigned val;
        int no_fit; /* a register > 32: sparse impossible */
} sparse_w_t;

static void w_byte(sparse_w_t *w, unsigned b)
{
        if (w->out)
                w->out[w->len] = (unsigned char)b;
        w->len++;
}

static void w_zeros(sparse_w_t *w, uint32_t n)
{
        while (n) {
                uint32_t k = n > SG_HLL_REGISTERS ? SG_HLL_REGISTERS : n;

                if (k <= 64) {
                        w_byte(w, k - 1);
                } else {
                        w_byte(w, 0x40 | (k - 1) >> 8);
                        w_byte(w, (k - 1) & 0xff);
                }
                n -= k;
        }
}

static void w_flush(sparse_w_t *w)
{
        if (!w->run)
                return;
        w_zeros(w, w->start - w->next);
        for (uint32_t n = w->run; n;) {
                uint32_t k = n > 4 ? 4 : n;

                w_byte(w, 0x80 | (w->val - 1) << 2 | (k - 1));
                n -= k;
        }
        w->next = w->start + w->run;
        w->run = 0;
}

static void w_reg(sparse_w_t *w, uint32_t idx, unsigned v)
{
        if (v > SPARSE_VAL_MAX) {
                w->no_fit = 1;
                return;
        }
        if (w->run && v == w->val && idx == w->start + w->run) {
                w->run++;
                return;
        }
        w_flush(w);
        w->start = idx;
        w->run = 1;
        w->val = v;
}

/* Runs the writer over h's registers. 0, or -1 when the sparse encoding is
 * impossible or longer than SG_HLL_SPARSE_MAX_BYTES. */
static int sparse_body(const sg_hll_t *h, sparse_w_t *w)
{
        const size_t limit = SG_HLL_SPARSE_MAX_BYTES - SG_HLL_HDR_SIZE;

        if (h->dense) {
                for (uint32_t i = 0; i < SG_HLL_REGISTERS; i++) {
                        unsigned v = dense_get(h->dense, i);

                        if (v)
                                w_reg(w, i, v);
                        if (w->no_fit || w->len > limit)
                                return -1;
                }
        } else {
                for (uint32_t i = 0; i < h->used && !w->no_fit; i++)
                        w_reg(w, E_IDX(h->reg[i]), E_VAL(h->reg[i]));
        }
        w_flush(w);
        w_zeros(w, SG_HLL_REGISTERS - w->next);
        return w->no_fit || w->len > limit ? -1 : 0;
}

size_t sg_hll_encoded_size(const sg_hll_t *h)
{
        sparse_w_t w = {0};

        if (sparse_body(h, &w) < 0)
                return SG_HLL_DENSE_SIZE;
        return SG_HLL_HDR_SIZE + w.len;
}

static void write_header(unsigned char *out, int encoding)
{
        memset(out, 0, SG_HLL_HDR_SIZE);
        memcpy(out, "HYLL", 4);
        out[4] = (unsigned char)encoding;
        out[15] = 0x80; /* cached cardinality invalid: Redis recomputes */
}

size_t sg_hll_encode(const sg_hll_t *h, unsigned char *out, size_t cap)
{
        size_t size = sg_hll_encoded_size(h);
        sparse_w_t w = {0};

        if (cap < size)
                return 0;
        if (size < SG_HLL_DENSE_SIZE) {
                write_header(out, ENC_SPARSE);
                w.out = out + SG_HLL_HDR_SIZE;
                sparse_body(h, &w);
                return size;
        }
        write_header(out, ENC_DENSE);
        if (h->dense) {
                memcpy(out + SG_HLL_HDR_SIZE, h->dense, DENSE_BYTES);
                return size;
        }
        /* Sparse in memory, dense on the wire (a value > 32). */
        memset(out + SG_HLL_HDR_SIZE, 0, DENSE_BYTES);
        for (uint32_t i = 0; i < h->used; i++)
                dense_set(out + SG_HLL_HDR_SIZE, E_IDX(h->reg[i]),
                          E_VAL(h->reg[i]));
        return size;
}

/* ------------------------------------------------------------- decoding */

/* Reads Redis's sparse body into the empty h; -1 unless the opcodes cover
 * exactly the 16384 registers (Redis's own check), or on OOM. */
static int load_sparse(sg_hll_t *h, const unsigned char *p, size_t len)
{
        uint32_t idx = 0;

        for (size_t i = 0; i < len;) {
                unsigned b = p[i], v = 0;
                uint32_t run;

                if ((b & 0xc0) == 0x00) {
                        run = (b & 0x3f) + 1;
                        i += 1;
                } else if ((b & 0xc0) == 0x40) {
                        if (i + 1 >= len)
                                return -1; /* truncated XZERO */
                        run = ((b & 0x3f) << 8 | p[i + 1]) + 1;
                        i += 2;
                } else {
                        v = ((b >> 2) & 0x1f) + 1;
                        run = (b & 3) + 1;
                        i += 1;
                }
                if (run > SG_HLL_REGISTERS - idx)
                        return -1;
                for (uint32_t k = 0; v && k < run; k++)
                        if (set_max(h, idx + k, v) < 0)
                                return -1;
                idx += run;
        }
        return idx == SG_HLL_REGISTERS ? 0 : -1;
}

/* Dense registers: kept sparse in memory when few are set. */
static int load_dense(sg_hll_t *h, const unsigned char *p)
{
        uint32_t set = 0;

        for (uint32_t i = 0; i < SG_HLL_REGISTERS; i++)
                set += dense_get(p, i) != 0;
        if (set > SPARSE_MAX) {
                h->dense = malloc(DENSE_BYTES);
                if (!h->dense)
                        return -1;
                memcpy(h->dense, p, DENSE_BYTES);
                return 0;
        }
        for (uint32_t i = 0; i < SG_HLL_REGISTERS; i++) {
                unsigned v = dense_get(p, i);

                if (v && set_max(h, i, v) < 0)
                        return -1;
        }
        return 0;
}

int sg_hll_decode(sg_hll_t *h, const unsigned char *buf, size_t len)
{
        sg_hll_t tmp = {0};
        int rc;

        if (!buf || len < SG_HLL_HDR_SIZE || memcmp(buf, "HYLL", 4) != 0)
                return -1;
        if (buf[4] == ENC_DENSE && len == SG_HLL_DENSE_SIZE)
                rc = load_dense(&tmp, buf + SG_HLL_HDR_SIZE);
        else if (buf[4] == ENC_SPARSE)
                rc = load_sparse(&tmp, buf + SG_HLL_HDR_SIZE,
                                 len - SG_HLL_HDR_SIZE);
        else
                rc = -1;
        if (rc < 0) {
                sg_hll_clear(&tmp);
                return -1;
        }
        sg_hll_clear(h);
        *h = tmp;
        return 0;
}
