/*
 * A string map with linear probing and backward-shift deletion, twice: the
 * committed state and the overlay of the batch in hand.
 */
#include <stdlib.h>
#include <string.h>

#include "state.h"

typedef struct ent {
        char *key; /* NULL = free slot */
        char *val; /* NULL in the overlay = a delete */
        int64_t exp;
} ent_t;

typedef struct map {
        ent_t *e;
        size_t cap, cnt; /* cap a power of two */
} map_t;

struct sg_rstate {
        map_t committed, overlay;
};

static uint64_t hash(const char *s)
{
        uint64_t h = 0xcbf29ce484222325ULL;

        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
        return h;
}

static int map_init(map_t *m, size_t cap)
{
        m->e = calloc(cap, sizeof(*m->e));
        m->cap = cap;
        m->cnt = 0;
        return m->e ? 0 : -1;
}

static ent_t *map_find(const map_t *m, const char *key)
{
        size_t mask = m->cap - 1;

        for (size_t i = hash(key) & mask;; i = (i + 1) & mask) {
                if (!m->e[i].key)
                        return NULL;
                if (strcmp(m->e[i].key, key) == 0)
                        return &m->e[i];
        }
}

static void map_free_all(map_t *m)
{
        for (size_t i = 0; i < m->cap; i++) {
                free(m->e[i].key);
                free(m->e[i].val);
                m->e[i].key = m->e[i].val = NULL;
        }
        m->cnt = 0;
}

static int map_grow(map_t *m)
{
        map_t n;

        if (map_init(&n, m->cap * 2))
                return -1;
        for (size_t i = 0; i < m->cap; i++) {
                size_t mask = n.cap - 1, j;

                if (!m->e[i].key)
                        continue;
                for (j = hash(m->e[i].key) & mask; n.e[j].key;
                     j = (j + 1) & mask)
                        ;
                n.e[j] = m->e[i];
                n.cnt++;
        }
        free(m->e);
        *m = n;
        return 0;
}

/* Takes ownership of val (may be NULL). */
static int map_set(map_t *m, const char *key, char *val, int64_t exp)
{
        ent_t *e = map_find(m, key);
        size_t mask, i;

        if (e) {
                free(e->val);
                e->val = val;
                e->exp = exp;
                return 0;
        }
        if ((m->cnt + 1) * 4 > m->cap * 3 && map_grow(m))
                goto oom;
        mask = m->cap - 1;
        for (i = hash(key) & mask; m->e[i].key; i = (i + 1) & mask)
                ;
        if (!(m->e[i].key = strdup(key)))
                goto oom;
        m->e[i].val = val;
        m->e[i].exp = exp;
        m->cnt++;
        return 0;
oom:
        free(val);
        return -1;
}

static void map_del(map_t *m, const char *key)
{
        ent_t *e = map_find(m, key);
        size_t mask = m->cap - 1, i, j;

        if (!e)
                return;
        free(e->key);
        free(e->val);
        e->key = e->val = NULL;
        m->cnt--;
        /* Backward shift: later members of the run move up if their home
         * slot allows, so lookups never stop at the hole. */
        i = (size_t)(e - m->e);
        for (j = (i + 1) & mask; m->e[j].key; j = (j + 1) & mask) {
                size_t home = hash(m->e[j].key) & mask;

                if (((j - home) & mask) >= ((j - i) & mask)) {
                        m->e[i] = m->e[j];
                        m->e[j].key = m->e[j].val = NULL;
                        i = j;
                }
        }
}

sg_rstate_t *sg_rstate_new(void)
{
        sg_rstate_t *st = calloc(1, sizeof(*st));

        if (!st || map_init(&st->committed, 256) ||
            map_init(&st->overlay, 64)) {
                sg_rstate_destroy(st);
                return NULL;
        }
        return st;
}

void sg_rstate_destroy(sg_rstate_t *st)
{
        if (!st)
                return;
        if (st->committed.e)
                map_free_all(&st->committed);
        if (st->overlay.e)
                map_free_all(&st->overlay);
        free(st->committed.e);
        free(st->overlay.e);
        free(st);
}

const char *sg_rstate_get(const sg_rstate_t *st, const char *key)
{
        const ent_t *e = map_find(&st->overlay, key);

        if (e)
                return e->val;
        e = map_find(&st->committed, key);
        return e ? e->val : NULL;
}

int sg_rstate_put(sg_rstate_t *st, const char *key, const char *val,
                  int64_t exp)
{
        char *v = NULL;

        if (val && !(v = strdup(val)))
                return -1;
        return map_set(&st->overlay, key, v, exp);
}

int64_t sg_rstate_exp(const sg_rstate_t *st, const char *key)
{
        const ent_t *e = map_find(&st->overlay, key);

        if (!e)
                e = map_find(&st->committed, key);
        return e && e->val ? e->exp : 0;
}

int sg_rstate_each_pending(const sg_rstate_t *st,
                           int (*fn)(void *, const char *, const char *,
                                     int64_t),
                           void *opaque)
{
        for (size_t i = 0; i < st->overlay.cap; i++)
                if (st->overlay.e[i].key &&
                    fn(opaque, st->overlay.e[i].key, st->overlay.e[i].val,
                       st->overlay.e[i].exp))
                        return -1;
        return 0;
}

size_t sg_rstate_pending(const sg_rstate_t *st)
{
        return st->overlay.cnt;
}

void sg_rstate_commit(sg_rstate_t *st)
{
        for (size_t i = 0; i < st->overlay.cap; i++) {
                ent_t *e = &st->overlay.e[i];

                if (!e->key)
                        continue;
                if (e->val) {
                        /* On out of memory the entry is lost from the
                         * cache only: Redis has it for the next load. */
                        map_set(&st->committed, e->key, e->val, e->exp);
                        e->val = NULL;
                } else {
                        map_del(&st->committed, e->key);
                }
        }
        map_free_all(&st->overlay);
}

void sg_rstate_rollback(sg_rstate_t *st)
{
        map_free_all(&st->overlay);
}

void sg_rstate_clear(sg_rstate_t *st)
{
        map_free_all(&st->committed);
        map_free_all(&st->overlay);
}

int sg_rstate_put_committed(sg_rstate_t *st, const char *key, const char *val,
                            int64_t exp)
{
        char *v = strdup(val);

        if (!v)
                return -1;
        return map_set(&st->committed, key, v, exp);
}

size_t sg_rstate_sweep(sg_rstate_t *st,
                       int64_t (*before)(void *opaque, const char *key),
                       void *opaque)
{
        size_t n = 0;

        for (size_t i = 0; i < st->committed.cap; i++) {
                const ent_t *e = &st->committed.e[i];

                if (e->key && e->exp && e->exp < before(opaque, e->key) &&
                    !map_find(&st->overlay, e->key)) {
                        if (map_set(&st->overlay, e->key, NULL, 0) == 0)
                                n++;
                }
        }
        return n;
}

size_t sg_rstate_size(const sg_rstate_t *st)
{
        return st->committed.cnt;
}
