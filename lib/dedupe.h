/*
 * Bounded-memory, event-time duplicate detection for one input partition:
 * event_id dedupe within a horizon, and duplicate clicks (same device and ad
 * within an interval). Pure logic: nothing is allocated after _new.
 */
#ifndef SG_DEDUPE_H
#define SG_DEDUPE_H

#include <stddef.h>
#include <stdint.h>

#define SG_DEDUPE_HORIZON_MS_DEFAULT    (15 * 60 * 1000) /* 15 min */
#define SG_DUPCLICK_INTERVAL_MS_DEFAULT (30 * 1000)      /* 30 s */
#define SG_DEDUPE_MAX_ENTRIES           (1u << 30) /* 32-bit slot indexes */

/*
 * Memory: every held key is a 128-bit hash (MurmurHash3 x64_128; the string
 * itself is not kept) plus its event time and LRU links: 32 bytes in an
 * entry array of max_entries, plus an open-addressing table of 4-byte slots
 * sized to the next power of two >= 2 * max_entries (load <= 1/2), i.e. 8 to
 * 16 more bytes per entry. sg_dedupe_bytes() gives the exact total, e.g.
 * 2^20 entries = 40 MiB + 112 bytes (x86-64).
 *
 * False positives: two different keys are taken for the same one only when
 * all 128 hash bits agree. With n keys held, a new key is falsely reported
 * with probability <= n / 2^128: <= 2^-98 (3.2e-30) per check at the bound
 * n = 2^30. The hash is not keyed: this is a bound for honest traffic, not
 * against someone crafting colliding ids on purpose.
 */

/* Counters are monotonic: sg_*_reset clears the held keys, not these. */
typedef struct sg_dedupe_stats {
        size_t entries;          /* keys held now */
        size_t capacity;         /* max_entries */
        uint64_t checked;        /* calls with a usable key */
        uint64_t hits;           /* duplicates (dedupe) / dup clicks */
        uint64_t expired;        /* keys dropped: their time left the horizon */
        uint64_t evicted_early;  /* keys dropped still inside it: table full */
        uint64_t beyond_horizon; /* events too old to check: answered 0 */
} sg_dedupe_stats_t;

/* Exact bytes that _new allocates for max_entries (0 if out of range). */
size_t sg_dedupe_bytes(size_t max_entries);

/* ------------------------------------------------------- event_id dedupe */

typedef struct sg_dedupe sg_dedupe_t;

/*
 * One per input partition. max_entries in [1, SG_DEDUPE_MAX_ENTRIES],
 * horizon_ms > 0. NULL with errstr filled on bad arguments or no memory.
 */
sg_dedupe_t *sg_dedupe_new(size_t max_entries, int64_t horizon_ms, char *errstr,
                           size_t errstr_size);
void sg_dedupe_destroy(sg_dedupe_t *d); /* NULL is fine */

/*
 * 1 if event_id was seen before and is still held, else 0 and it is
 * remembered. "newest" is the largest event_time seen so far:
 * - an id is held at least while its event_time >= newest - horizon_ms;
 *   keys leave in insertion order, so under disorder one may stay longer
 *   (and still be detected) behind a newer key;
 * - an event with event_time < newest - horizon_ms cannot be checked
 *   reliably: it answers 0, is not remembered, and counts beyond_horizon;
 * - when max_entries keys are held, the oldest inserted one is dropped to
 *   make room (evicted_early): a duplicate of it arriving later is NOT
 *   detected. Size max_entries >= peak events/s * horizon s to avoid it.
 * NULL or "" event_id: 0, nothing remembered, not counted.
 */
int sg_dedupe_check(sg_dedupe_t *d, const char *event_id, int64_t event_time);

/* Forgets every key and "newest" (partition revoked); counters stay. */
void sg_dedupe_reset(sg_dedupe_t *d);
void sg_dedupe_stats(const sg_dedupe_t *d, sg_dedupe_stats_t *out);

/* ------------------------------------------------------ duplicate clicks */

typedef struct sg_dupclick sg_dupclick_t;

/* max_pairs in [1, SG_DEDUPE_MAX_ENTRIES], interval_ms > 0. */
sg_dupclick_t *sg_dupclick_new(size_t max_pairs, int64_t interval_ms,
                               char *errstr, size_t errstr_size);
void sg_dupclick_destroy(sg_dupclick_t *d); /* NULL is fine */

/*
 * 1 if a click of the same (device_id, ad_id) pair was seen with
 * |event_time - its time| <= interval_ms (before or after: mild disorder),
 * else 0; the click is remembered either way. Exact for every click with
 * event_time >= newest - interval_ms (pairs are kept for 2 * interval_ms of
 * event time and store their latest click time); an older click answers 0,
 * is not remembered and counts beyond_horizon. When max_pairs pairs are
 * held, the least recently clicked pair is dropped (evicted_early) and its
 * next click is not a dup. Missing (NULL or "") device or ad: never a dup,
 * nothing remembered, not counted.
 *
 * A re-delivered click (same event_id) would also match: call
 * sg_dedupe_check first and only pass the events it accepts.
 */
int sg_dupclick_check(sg_dupclick_t *d, const char *device_id,
                      const char *ad_id, int64_t event_time);

void sg_dupclick_reset(sg_dupclick_t *d); /* as sg_dedupe_reset */
void sg_dupclick_stats(const sg_dupclick_t *d, sg_dedupe_stats_t *out);

#endif
