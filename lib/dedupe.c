/*
 * Both detectors share one structure, a "keyset": 128-bit keys with an event
 * time, in a fixed entry array threaded on a doubly linked list (oldest
 * first) and indexed by a linear-probing table of entry numbers. Expiry and
 * eviction only ever take the list head, so they are O(1); deleting from
 * the table uses backward shifting, so there are no tombstones and probe
 * lengths stay short however long the process runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dedupe.h"

#define NIL UINT32_MAX

typedef struct entry {
        uint64_t h1, h2;
        int64_t t;
        uint32_t prev, next; /* list order; next also chains free entries */
} entry_t;

typedef struct keyset {
        entry_t *e;
        uint32_t *table; /* entry index + 1; 0 = empty slot */
        uint32_t mask;   /* table size - 1 */
        uint32_t cap, cnt;
        uint32_t head, tail, free;
        uint32_t fresh; /* entries [fresh, cap) were never used */
        int64_t newest; /* INT64_MIN until the first event */
        sg_dedupe_stats_t st;
} keyset_t;

struct sg_dedupe {
        keyset_t ks;
        int64_t horizon_ms;
};

struct sg_dupclick {
        keyset_t ks;
        int64_t interval_ms;
};

/* --------------------------------------------------------------- hashing */

/*
 * MurmurHash3 x64_128 (Austin Appleby, public domain) with the two 64-bit
 * lanes seeded from h[] and the result left there, so a pair of strings can
 * be hashed by chaining without copying them into one buffer.
 */
static inline uint64_t rotl64(uint64_t x, int r)
{
        return (x << r) | (x >> (64 - r));
}

static inline uint64_t fmix64(uint64_t k)
{
        k ^= k >> 33;
        k *= 0xff51afd7ed558ccdULL;
        k ^= k >> 33;
        k *= 0xc4ceb9fe1a85ec53ULL;
        k ^= k >> 33;
        return k;
}

static void murmur3_128(const void *key, size_t len, uint64_t h[2])
{
        const uint8_t *data = key;
        const size_t nblocks = len / 16;
        const uint64_t c1 = 0x87c37b91114253d5ULL;
        const uint64_t c2 = 0x4cf5ad432745937fULL;
        uint64_t h1 = h[0], h2 = h[1], k1, k2;

        for (size_t i = 0; i < nblocks; i++) {
                memcpy(&k1, data + i * 16, 8);
                memcpy(&k2, data + i * 16 + 8, 8);
                k1 *= c1;
                k1 = rotl64(k1, 31);
                k1 *= c2;
                h1 ^= k1;
                h1 = rotl64(h1, 27);
                h1 += h2;
                h1 = h1 * 5 + 0x52dce729;
                k2 *= c2;
                k2 = rotl64(k2, 33);
                k2 *= c1;
                h2 ^= k2;
                h2 = rotl64(h2, 31);
                h2 += h1;
                h2 = h2 * 5 + 0x38495ab5;
        }

        const uint8_t *tail = data + nblocks * 16;
        k1 = 0;
        k2 = 0;
        switch (len & 15) {
        case 15:
                k2 ^= (uint64_t)tail[14] << 48; /* fall through */
        case 14:
                k2 ^= (uint64_t)tail[13] << 40; /* fall through */
        case 13:
                k2 ^= (uint64_t)tail[12] << 32; /* fall through */
        case 12:
                k2 ^= (uint64_t)tail[11] << 24; /* fall through */
        case 11:
                k2 ^= (uint64_t)tail[10] << 16; /* fall through */
        case 10:
                k2 ^= (uint64_t)tail[9] << 8; /* fall through */
        case 9:
                k2 ^= (uint64_t)tail[8];
                k2 *= c2;
                k2 = rotl64(k2, 33);
                k2 *= c1;
                h2 ^= k2;
                /* fall through */
        case 8:
                k1 ^= (uint64_t)tail[7] << 56; /* fall through */
        case 7:
                k1 ^= (uint64_t)tail[6] << 48; /* fall through */
        case 6:
                k1 ^= (uint64_t)tail[5] << 40; /* fall through */
        case 5:
                k1 ^= (uint64_t)tail[4] << 32; /* fall through */
        case 4:
                k1 ^= (uint64_t)tail[3] << 24; /* fall through */
        case 3:
                k1 ^= (uint64_t)tail[2] << 16; /* fall through */
        case 2:
                k1 ^= (uint64_t)tail[1] << 8; /* fall through */
        case 1:
                k1 ^= (uint64_t)tail[0];
                k1 *= c1;
                k1 = rotl64(k1, 31);
                k1 *= c2;
                h1 ^= k1;
        }

        h1 ^= (uint64_t)len;
        h2 ^= (uint64_t)len;
        h1 += h2;
        h2 += h1;
        h1 = fmix64(h1);
        h2 = fmix64(h2);
        h1 += h2;
        h2 += h1;
        h[0] = h1;
        h[1] = h2;
}

/* ------------------------------------------------------ time arithmetic */

/* Event times come from producers: keep hostile values from overflowing. */
static inline int64_t sat_sub(int64_t a, int64_t b)
{
        int64_t r;

        if (__builtin_sub_overflow(a, b, &r))
                return INT64_MIN;
        return r;
}

static inline int64_t sat_add(int64_t a, int64_t b)
{
        int64_t r;

        if (__builtin_add_overflow(a, b, &r))
                return INT64_MAX;
        return r;
}

/* ---------------------------------------------------------------- keyset */

static uint32_t table_size(size_t max_entries)
{
        uint32_t n = 2;

        while (n < 2 * max_entries)
                n <<= 1;
        return n;
}

size_t sg_dedupe_bytes(size_t max_entries)
{
        if (max_entries < 1 || max_entries > SG_DEDUPE_MAX_ENTRIES)
                return 0;
        /* sg_dedupe and sg_dupclick have the same size. */
        return sizeof(struct sg_dedupe) + max_entries * sizeof(entry_t) +
               (size_t)table_size(max_entries) * sizeof(uint32_t);
}

/*
 * Entries are handed out from the free list, else from the never-used tail
 * of the array, so only the memory a partition actually needs is touched:
 * 48 input partitions at the default sizes reserve ~600 MB, most of which
 * an idle or light partition never uses (RSS follows use, up to the bound).
 */
static void ks_clear(keyset_t *ks)
{
        if (ks->fresh)
                memset(ks->table, 0,
                       ((size_t)ks->mask + 1) * sizeof(*ks->table));
        ks->fresh = 0;
        ks->free = NIL;
        ks->head = ks->tail = NIL;
        ks->cnt = 0;
        ks->newest = INT64_MIN;
        ks->st.entries = 0;
}

static int ks_init(keyset_t *ks, size_t max_entries, const char *what,
                   char *errstr, size_t errstr_size)
{
        uint32_t tsize;

        memset(ks, 0, sizeof(*ks));
        if (max_entries < 1 || max_entries > SG_DEDUPE_MAX_ENTRIES) {
                snprintf(errstr, errstr_size,
                         "%s must be between 1 and %u (got %zu)", what,
                         SG_DEDUPE_MAX_ENTRIES, max_entries);
                return -1;
        }
        tsize = table_size(max_entries);
        ks->e = malloc(max_entries * sizeof(*ks->e));
        /* calloc: zeroed pages are mapped on first touch, not here. */
        ks->table = calloc((size_t)tsize, sizeof(*ks->table));
        if (!ks->e || !ks->table) {
                snprintf(errstr, errstr_size, "out of memory (%zu bytes)",
                         sg_dedupe_bytes(max_entries));
                free(ks->e);
                free(ks->table);
                ks->e = NULL;
                ks->table = NULL;
                return -1;
        }
        ks->mask = tsize - 1;
        ks->cap = (uint32_t)max_entries;
        ks->st.capacity = max_entries;
        ks_clear(ks);
        return 0;
}

static void ks_free(keyset_t *ks)
{
        free(ks->e);
        free(ks->table);
}

/* The entry index holding (h1, h2), or NIL. */
static uint32_t ks_find(const keyset_t *ks, uint64_t h1, uint64_t h2)
{
        for (uint32_t i = (uint32_t)h1 & ks->mask;; i = (i + 1) & ks->mask) {
                uint32_t s = ks->table[i];
                if (s == 0)
                        return NIL;
                if (ks->e[s - 1].h1 == h1 && ks->e[s - 1].h2 == h2)
                        return s - 1;
        }
}

static void list_unlink(keyset_t *ks, uint32_t x)
{
        entry_t *e = &ks->e[x];

        if (e->prev != NIL)
                ks->e[e->prev].next = e->next;
        else
                ks->head = e->next;
        if (e->next != NIL)
                ks->e[e->next].prev = e->prev;
        else
                ks->tail = e->prev;
}

static void list_append(keyset_t *ks, uint32_t x)
{
        ks->e[x].prev = ks->tail;
        ks->e[x].next = NIL;
        if (ks->tail != NIL)
                ks->e[ks->tail].next = x;
        else
                ks->head = x;
        ks->tail = x;
}

/* Caller guarantees cnt < cap and that the key is not held. */
static void ks_insert(keyset_t *ks, uint64_t h1, uint64_t h2, int64_t t)
{
        uint32_t x = ks->free, i;

        if (x != NIL)
                ks->free = ks->e[x].next;
        else
                x = ks->fresh++;
        ks->e[x].h1 = h1;
        ks->e[x].h2 = h2;
        ks->e[x].t = t;
        list_append(ks, x);
        for (i = (uint32_t)h1 & ks->mask; ks->table[i]; i = (i + 1) & ks->mask)
                ;
        ks->table[i] = x + 1;
        ks->cnt++;
        ks->st.entries = ks->cnt;
}

/* Drops the oldest entry; its table slot is refilled by backward shifting
 * the rest of its probe run, so lookups never meet a gap they should skip. */
static void ks_pop_head(keyset_t *ks)
{
        uint32_t x = ks->head, i, j;

        for (i = (uint32_t)ks->e[x].h1 & ks->mask; ks->table[i] != x + 1;
             i = (i + 1) & ks->mask)
                ;
        for (;;) {
                ks->table[i] = 0;
                j = i;
                for (;;) {
                        uint32_t home;

                        j = (j + 1) & ks->mask;
                        if (ks->table[j] == 0)
                                goto unlinked;
                        home = (uint32_t)ks->e[ks->table[j] - 1].h1 & ks->mask;
                        /* It may move into the hole only if the hole lies on
                         * its probe path, i.e. home is not in (i, j]. */
                        if (i <= j ? (home <= i || home > j)
                                   : (home <= i && home > j))
                                break;
                }
                ks->table[i] = ks->table[j];
                i = j;
        }
unlinked:
        list_unlink(ks, x);
        ks->e[x].next = ks->free;
        ks->free = x;
        ks->cnt--;
        ks->st.entries = ks->cnt;
}

/*
 * Advances "newest" and drops the entries whose time is below keep_from.
 * Only the list head is looked at: an entry inserted after a newer one waits
 * behind it, which keeps expiry O(1) per entry.
 */
static void ks_expire(keyset_t *ks, int64_t keep_from)
{
        while (ks->head != NIL && ks->e[ks->head].t < keep_from) {
                ks_pop_head(ks);
                ks->st.expired++;
        }
}

/* Makes room for one insertion. */
static void ks_make_room(keyset_t *ks)
{
        if (ks->cnt == ks->cap) {
                ks_pop_head(ks);
                ks->st.evicted_early++;
        }
}

/* ------------------------------------------------------- event_id dedupe */

sg_dedupe_t *sg_dedupe_new(size_t max_entries, int64_t horizon_ms, char *errstr,
                           size_t errstr_size)
{
        sg_dedupe_t *d;

        if (horizon_ms <= 0) {
                snprintf(errstr, errstr_size,
                         "dedupe horizon must be positive (got %lld ms)",
                         (long long)horizon_ms);
                return NULL;
        }
        d = malloc(sizeof(*d));
        if (!d) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        if (ks_init(&d->ks, max_entries, "dedupe max_entries", errstr,
                    errstr_size) == -1) {
                free(d);
                return NULL;
        }
        d->horizon_ms = horizon_ms;
        return d;
}

void sg_dedupe_destroy(sg_dedupe_t *d)
{
        if (!d)
                return;
        ks_free(&d->ks);
        free(d);
}

int sg_dedupe_check(sg_dedupe_t *d, const char *event_id, int64_t event_time)
{
        keyset_t *ks = &d->ks;
        uint64_t h[2] = {0, 0};
        int64_t cutoff;

        if (!event_id || !*event_id)
                return 0;
        ks->st.checked++;
        if (event_time > ks->newest)
                ks->newest = event_time;
        cutoff = sat_sub(ks->newest, d->horizon_ms);
        if (event_time < cutoff) {
                /* Its twin may have expired already: a 0 here would be a
                 * guess, so say so in the counter instead of remembering. */
                ks->st.beyond_horizon++;
                return 0;
        }
        ks_expire(ks, cutoff);
        murmur3_128(event_id, strlen(event_id), h);
        if (ks_find(ks, h[0], h[1]) != NIL) {
                ks->st.hits++;
                return 1;
        }
        ks_make_room(ks);
        ks_insert(ks, h[0], h[1], event_time);
        return 0;
}

void sg_dedupe_reset(sg_dedupe_t *d)
{
        if (d)
                ks_clear(&d->ks);
}

void sg_dedupe_stats(const sg_dedupe_t *d, sg_dedupe_stats_t *out)
{
        *out = d->ks.st;
}

/* ------------------------------------------------------ duplicate clicks */

sg_dupclick_t *sg_dupclick_new(size_t max_pairs, int64_t interval_ms,
                               char *errstr, size_t errstr_size)
{
        sg_dupclick_t *d;

        /* Pairs are kept for 2 * interval: that must not overflow. */
        if (interval_ms <= 0 || interval_ms > INT64_MAX / 2) {
                snprintf(errstr, errstr_size,
                         "dup-click interval must be positive (got %lld ms)",
                         (long long)interval_ms);
                return NULL;
        }
        d = malloc(sizeof(*d));
        if (!d) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        if (ks_init(&d->ks, max_pairs, "dup-click max_pairs", errstr,
                    errstr_size) == -1) {
                free(d);
                return NULL;
        }
        d->interval_ms = interval_ms;
        return d;
}

void sg_dupclick_destroy(sg_dupclick_t *d)
{
        if (!d)
                return;
        ks_free(&d->ks);
        free(d);
}

/*
 * Why one stored time per pair is exact: a click at t is only checked when
 * t >= newest - I, and the pair stores m, the latest time of its clicks, so
 * m <= newest <= t + I. If some earlier click p has |t - p| <= I then
 * t - I <= p <= m, hence |t - m| <= I; and if no click is within I of t,
 * then m is not either. Keeping pairs until m < newest - 2I covers every p
 * such a t can be within I of.
 */
int sg_dupclick_check(sg_dupclick_t *d, const char *device_id,
                      const char *ad_id, int64_t event_time)
{
        keyset_t *ks = &d->ks;
        uint64_t h[2] = {0, 0};
        int64_t cutoff;
        uint32_t x;
        int dup;

        if (!device_id || !*device_id || !ad_id || !*ad_id)
                return 0;
        ks->st.checked++;
        if (event_time > ks->newest)
                ks->newest = event_time;
        cutoff = sat_sub(ks->newest, d->interval_ms);
        if (event_time < cutoff) {
                ks->st.beyond_horizon++;
                return 0;
        }
        ks_expire(ks, sat_sub(cutoff, d->interval_ms));
        /* Chained: device's hash seeds ad's, so ("ab","c") != ("a","bc"). */
        murmur3_128(device_id, strlen(device_id), h);
        murmur3_128(ad_id, strlen(ad_id), h);
        x = ks_find(ks, h[0], h[1]);
        if (x == NIL) {
                ks_make_room(ks);
                ks_insert(ks, h[0], h[1], event_time);
                return 0;
        }
        dup = event_time >= sat_sub(ks->e[x].t, d->interval_ms) &&
              event_time <= sat_add(ks->e[x].t, d->interval_ms);
        if (event_time > ks->e[x].t)
                ks->e[x].t = event_time;
        /* Least recently clicked first: an active pair is evicted last. */
        list_unlink(ks, x);
        list_append(ks, x);
        if (dup)
                ks->st.hits++;
        return dup;
}

void sg_dupclick_reset(sg_dupclick_t *d)
{
        if (d)
                ks_clear(&d->ks);
}

void sg_dupclick_stats(const sg_dupclick_t *d, sg_dedupe_stats_t *out)
{
        *out = d->ks.st;
}
