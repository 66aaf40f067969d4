/*
 * HyperLogLog distinct counts that are bit-for-bit Redis 7.0's: the same
 * hash, registers and estimator, and blobs Redis reads as its own (PFCOUNT,
 * PFADD, PFMERGE work on what sg_hll_encode writes, and the other way round).
 */
#ifndef SG_HLL_H
#define SG_HLL_H

#include <stddef.h>
#include <stdint.h>

#define SG_HLL_P         14                 /* index bits, as Redis */
#define SG_HLL_REGISTERS (1u << SG_HLL_P)   /* 16384 */
#define SG_HLL_HDR_SIZE  16                 /* "HYLL", encoding, 3, card[8] */
#define SG_HLL_DENSE_SIZE (SG_HLL_HDR_SIZE + SG_HLL_REGISTERS * 6 / 8)
/* Largest sparse blob written (Redis's hll-sparse-max-bytes default). */
#define SG_HLL_SPARSE_MAX_BYTES 3000

/*
 * Memory: an empty HLL is one 24-byte struct (sg_hll_memory() gives the
 * exact bytes held); set registers go into a sorted array of 4-byte entries
 * that grows by half up to 1024 registers (4 KiB), past which the HLL turns
 * into Redis's packed dense form, 12288 bytes, for good. Adding is a binary
 * search while sparse, O(1) when dense. Not thread-safe: one owner at a
 * time.
 */
typedef struct sg_hll sg_hll_t;

sg_hll_t *sg_hll_new(void);          /* empty; NULL on OOM */
void sg_hll_destroy(sg_hll_t *h);    /* NULL is fine */
void sg_hll_clear(sg_hll_t *h);      /* empty again; frees the registers */

/* MurmurHash64A with Redis's seed (0xadc83b19), as PFADD hashes elements. */
uint64_t sg_hll_hash(const void *ele, size_t len);

/* 1 if a register grew, 0 if not (as PFADD's reply), -1 on OOM (h is
 * unchanged then). */
int sg_hll_add_hash(sg_hll_t *h, uint64_t hash);
int sg_hll_add(sg_hll_t *h, const void *ele, size_t len);

/* dst = register-wise max of dst and src (PFMERGE). 0, or -1 on OOM (dst
 * may then hold part of src: still a valid HLL). */
int sg_hll_merge(sg_hll_t *dst, const sg_hll_t *src);

/* The estimate PFCOUNT gives for the same registers. */
uint64_t sg_hll_count(const sg_hll_t *h);
/* As PFCOUNT k1 .. kn: the count of the register-wise max. NULL entries
 * are empty HLLs; n <= 0 gives 0. */
uint64_t sg_hll_count_union(const sg_hll_t *const *hs, int n);

/*
 * Redis's string format: sparse when every register is <= 32 and the blob
 * fits in SG_HLL_SPARSE_MAX_BYTES, else dense (SG_HLL_DENSE_SIZE bytes).
 * The cached cardinality is marked invalid, so Redis computes it.
 * sg_hll_encode writes into the caller's out and returns the bytes written,
 * 0 if cap < sg_hll_encoded_size(h) (nothing written then).
 */
size_t sg_hll_encoded_size(const sg_hll_t *h);
size_t sg_hll_encode(const sg_hll_t *h, unsigned char *out, size_t cap);

/*
 * Replaces h's registers with those of a blob Redis wrote (GET of a PFADD
 * key), sparse or dense. 0, or -1 when buf is not a valid HLL (or on OOM):
 * h is unchanged then. The buffer stays the caller's.
 */
int sg_hll_decode(sg_hll_t *h, const unsigned char *buf, size_t len);

/* Heap bytes h holds (struct and registers), for memory bounds. */
size_t sg_hll_memory(const sg_hll_t *h);
int sg_hll_is_empty(const sg_hll_t *h);

/* Register idx's value (0..63), -1 if idx is out of range. */
int sg_hll_register(const sg_hll_t *h, uint32_t idx);
/* 1 if both hold the same registers (whatever their form), else 0. */
int sg_hll_equal(const sg_hll_t *a, const sg_hll_t *b);

#endif
