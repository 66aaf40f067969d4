/*
 * aggregate's in-memory state of one sg.events partition (state.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"

#define DAY    86400000LL
#define HOUR   3600000LL
#define MINUTE 60000LL

/* Rolling snapshots catch up at most this many steps behind the watermark
 * (after an outage, the windows before are not sent). */
#define MAX_STEPS 60

const char *const ag_field_names[NF] = {
    "impressions",          "clicks",
    "conversions",          "spend_micros",
    "revenue_micros",       "invalid_clicks",
    "invalid_impressions",  "invalid_spend_micros",
    "ivt_bot_ua",           "ivt_no_ua",
    "ivt_dc_ip",            "ivt_dup_click",
    "freq_cap_impressions", "ctc_lt_10s",
    "ctc_lt_1m",            "ctc_lt_1h",
    "ctc_ge_1h",            "conversions_no_click",
    "source_clicks_untracked"};

static int64_t floor_to(int64_t t, int64_t w)
{
        return sg_window_floor(t, w);
}

/* ------------------------------------------------------------- hashing */

static uint64_t mix64(uint64_t h)
{
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
        h *= 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 33;
        return h;
}

static uint64_t fnv(uint64_t h, const void *buf, size_t len)
{
        const unsigned char *s = buf;

        for (size_t i = 0; i < len; i++)
                h = (h ^ s[i]) * 1099511628211ULL;
        return h;
}

/* ag_hash in two steps: the state after a and the separator, then the
 * hash with b. A scope keeps its first step (fc_seed), so the frequency
 * cap hashes only the device per impression. */
static uint64_t hash_seed(const void *a, size_t alen)
{
        uint64_t h = fnv(1469598103934665603ULL, a, alen);

        return (h ^ 0xff) * 1099511628211ULL;
}

static uint64_t hash_end(uint64_t seed, const void *b, size_t blen)
{
        uint64_t h = mix64(fnv(seed, b, blen));

        return h ? h : 1;
}

/* A 64-bit hash of a, a separator and b; never 0 (the empty slot). */
uint64_t ag_hash(const void *a, size_t alen, const void *b, size_t blen)
{
        return hash_end(hash_seed(a, alen), b, blen);
}

/* ------------------------------------------------------- model config */

static int level_for(const ag_model_t *m, int64_t len)
{
        for (int k = 0; k < AG_LEVELS; k++)
                if (m->level_ms[k] && len / m->level_ms[k] <= 64)
                        return k;
        return m->level_ms[2] ? 2 : m->level_ms[1] ? 1 : 0;
}

int ag_model_init(ag_model_t *m, int bucket_s, const char *windows,
                  int snapshot_s, int kpi_window_s, int tz_offset_min,
                  int freq_cap, int click_ttl_s, int retention_s,
                  int max_sources, int max_scopes, int64_t max_clicks,
                  char *errstr, size_t errstr_size)
{
        int need[AG_LEVELS] = {1, 0, 0}, k = 0;
        int64_t all[AG_LEVELS] = {0};
        const char *tags[AG_LEVELS] = {"", "m", "h"};

        memset(m, 0, sizeof(*m));
        m->bucket_ms = (int64_t)bucket_s * 1000;
        m->snap_ms = (int64_t)snapshot_s * 1000;
        m->kpi_ms = (int64_t)kpi_window_s * 1000;
        m->tz_ms = (int64_t)tz_offset_min * 60000;
        m->click_ttl_ms = (int64_t)click_ttl_s * 1000;
        m->retention_ms = (int64_t)retention_s * 1000;
        m->freq_cap = freq_cap;
        m->max_sources = max_sources;
        m->max_scopes = max_scopes;
        m->max_clicks = max_clicks;
        m->win_cnt = sg_window_parse_list(windows, m->wins, SG_MAX_WINDOWS, 0,
                                          errstr, errstr_size);
        if (m->win_cnt < 0)
                return -1;
        sg_window_name(m->kpi_ms, m->kpi_name, sizeof(m->kpi_name));
        /* The levels: a minute and an hour when they are multiples of the
         * bucket, as the HyperLogLog and source keys of longer windows. */
        all[0] = m->bucket_ms;
        if (MINUTE > m->bucket_ms && MINUTE % m->bucket_ms == 0)
                all[1] = MINUTE;
        if (HOUR > m->bucket_ms && HOUR % m->bucket_ms == 0)
                all[2] = HOUR;
        for (int l = 0; l < AG_LEVELS; l++)
                m->level_ms[l] = all[l];
        need[level_for(m, m->kpi_ms)] = 1;
        m->max_len = m->kpi_ms;
        for (int w = 0; w < m->win_cnt; w++) {
                int64_t len = m->wins[w].len_ms;

                if (len > 0) {
                        need[level_for(m, len)] = 1;
                        if (len > m->max_len)
                                m->max_len = len;
                        continue;
                }
                /* today: any level whose finer neighbour needs more than
                 * 64 keys for a day. */
                for (int l = 1; l < AG_LEVELS; l++)
                        if (all[l] && all[l - 1] * 64 < DAY)
                                need[l] = 1;
        }
        /* The kept levels, packed (bucket first). */
        memset(m->level_ms, 0, sizeof(m->level_ms));
        for (int l = 0; l < AG_LEVELS; l++) {
                if (!need[l] || !all[l])
                        continue;
                m->level_ms[k] = all[l];
                m->level_tag[k++] = tags[l];
        }
        m->level_cnt = k;
        return 0;
}

/* The level (index into level_ms) whose keys cover [from, to): the finest
 * kept one that needs at most 64, else the coarsest. */
static int level_of_range(const ag_model_t *m, int64_t from, int64_t to)
{
        for (int l = 0; l < m->level_cnt; l++)
                if ((to - from) / m->level_ms[l] <= 64)
                        return l;
        return m->level_cnt - 1;
}

int64_t ag_day_start(const ag_model_t *m, int64_t t)
{
        if (m->tz)
                return sg_tz_day_start(m->tz, t);
        return sg_window_floor(t + m->tz_ms, DAY) - m->tz_ms;
}

/* [start, end) of window w ending at e. */
static int64_t win_start(const ag_model_t *m, const sg_window_def_t *w,
                         int64_t e)
{
        if (w->len_ms > 0)
                return e - w->len_ms;
        return ag_day_start(m, e - 1);
}

/* ------------------------------------------------------------- arrays */

int ag_i64s_add(ag_i64s_t *a, int64_t v)
{
        int i = a->cnt;

        while (i > 0 && a->v[i - 1] > v)
                i--;
        if (i > 0 && a->v[i - 1] == v)
                return 0;
        if (a->cnt == a->cap) {
                int cap = a->cap ? 2 * a->cap : 4;
                int64_t *n = realloc(a->v, cap * sizeof(*n));
                if (!n)
                        return -1;
                a->v = n;
                a->cap = cap;
        }
        memmove(a->v + i + 1, a->v + i, (a->cnt - i) * sizeof(*a->v));
        a->v[i] = v;
        a->cnt++;
        return 1;
}

static void i64s_remove(ag_i64s_t *a, int64_t v)
{
        for (int i = 0; i < a->cnt; i++)
                if (a->v[i] == v) {
                        memmove(a->v + i, a->v + i + 1,
                                (a->cnt - i - 1) * sizeof(*a->v));
                        a->cnt--;
                        return;
                }
}

static int ptrs_push(void ***v, int *cnt, int *cap, void *p)
{
        if (*cnt == *cap) {
                int c = *cap ? 2 * *cap : 16;
                void **n = realloc(*v, c * sizeof(*n));
                if (!n)
                        return -1;
                *v = n;
                *cap = c;
        }
        (*v)[(*cnt)++] = p;
        return 0;
}

/* ---------------------------------------------------------- hash table */

static int htab_grow(ag_htab_t *t)
{
        size_t cap = t->mask ? 2 * (t->mask + 1) : 1024;
        ag_htab_t n = {0};

        n.e = calloc(cap, sizeof(*n.e));
        if (!n.e)
                return -1;
        n.mask = cap - 1;
        for (size_t i = 0; t->mask && i <= t->mask; i++) {
                size_t j;

                if (!t->e[i].key)
                        continue;
                for (j = t->e[i].key & n.mask; n.e[j].key; j = (j + 1) & n.mask)
                        ;
                n.e[j] = t->e[i];
        }
        n.cnt = t->cnt;
        free(t->e);
        *t = n;
        return 0;
}

/* The slot holding key, or the empty slot that ends its probe chain. */
static ag_hent_t *htab_slot(const ag_htab_t *t, uint64_t key)
{
        size_t i;

        for (i = key & t->mask; t->e[i].key; i = (i + 1) & t->mask)
                if (t->e[i].key == key)
                        break;
        return &t->e[i];
}

int64_t *ag_htab_get(ag_htab_t *t, uint64_t key)
{
        ag_hent_t *e;

        if (!t->mask)
                return NULL;
        e = htab_slot(t, key);
        return e->key ? &e->val : NULL;
}

int ag_htab_put(ag_htab_t *t, uint64_t key, int64_t val, int64_t aux)
{
        ag_hent_t *e;

        if ((t->cnt + 1) * 4 > (t->mask + 1) * 3 && htab_grow(t) == -1)
                return -1;
        e = htab_slot(t, key);
        if (!e->key)
                t->cnt++;
        e->key = key;
        e->val = val;
        e->aux = aux;
        return 0;
}

/* Keeps the entries whose aux is at least min_aux (rebuilds the table). */
static void htab_sweep(ag_htab_t *t, int64_t min_aux)
{
        ag_hent_t *old = t->e, *n;
        size_t live = 0;

        if (!t->mask)
                return;
        for (size_t i = 0; i <= t->mask; i++)
                if (old[i].key && old[i].aux < min_aux)
                        old[i].key = 0;
                else if (old[i].key)
                        live++;
        /* Reinsert the survivors so that no probe chain is broken. */
        n = calloc(t->mask + 1, sizeof(*n));
        if (!n) {
                /* Keep the old array: a cleared slot only shortens a probe
                 * chain, and entries past it are found again after the
                 * next successful sweep. */
                t->cnt = live;
                return;
        }
        t->e = n;
        t->cnt = 0;
        for (size_t i = 0; i <= t->mask; i++)
                if (old[i].key)
                        ag_htab_put(t, old[i].key, old[i].val, old[i].aux);
        free(old);
}

static void htab_free(ag_htab_t *t)
{
        free(t->e);
        memset(t, 0, sizeof(*t));
}

/* ---------------------------------------------------------------- logs */

int ag_log_add(ag_logs_t *l, int64_t key, const void *rec, size_t len)
{
        ag_log_t *g = NULL;

        for (int i = 0; i < l->cnt; i++)
                if (l->v[i].key == key)
                        g = &l->v[i];
        if (!g) {
                if (l->cnt == l->cap) {
                        int cap = l->cap ? 2 * l->cap : 4;
                        ag_log_t *n = realloc(l->v, cap * sizeof(*n));
                        if (!n)
                                return -1;
                        memset(n + l->cap, 0, (cap - l->cap) * sizeof(*n));
                        l->v = n;
                        l->cap = cap;
                }
                g = &l->v[l->cnt++];
                g->key = key;
                g->len = 0;
        }
        if (g->len + len > g->cap) {
                size_t cap = g->cap ? 2 * g->cap : 4096;
                unsigned char *n;

                while (cap < g->len + len)
                        cap *= 2;
                n = realloc(g->buf, cap);
                if (!n)
                        return -1;
                g->buf = n;
                g->cap = cap;
        }
        memcpy(g->buf + g->len, rec, len);
        g->len += len;
        return 0;
}

void ag_logs_clear(ag_logs_t *l)
{
        /* The buffers stay for the next batch (likely the same keys). */
        for (int i = 0; i < l->cnt; i++)
                l->v[i].len = 0;
        l->cnt = 0;
}

static void logs_free(ag_logs_t *l)
{
        for (int i = 0; i < l->cap; i++)
                free(l->v[i].buf);
        free(l->v);
        memset(l, 0, sizeof(*l));
}

/* --------------------------------------------------------- source maps */

typedef struct src_ent {
        uint64_t h; /* 0 = empty */
        int64_t n;
        uint32_t off;
        uint32_t len;
} src_ent_t;

struct ag_srcmap {
        src_ent_t *e;
        size_t mask, cnt;
        char *arena;
        size_t used, cap;
};

static int srcmap_grow(ag_srcmap_t *m)
{
        size_t cap = m->mask ? 2 * (m->mask + 1) : 16;
        src_ent_t *n = calloc(cap, sizeof(*n));

        if (!n)
                return -1;
        for (size_t i = 0; m->mask && i <= m->mask; i++) {
                size_t j;

                if (!m->e[i].h)
                        continue;
                for (j = m->e[i].h & (cap - 1); n[j].h; j = (j + 1) & (cap - 1))
                        ;
                n[j] = m->e[i];
        }
        free(m->e);
        m->e = n;
        m->mask = cap - 1;
        return 0;
}

int ag_srcmap_add(ag_srcmap_t **mp, const char *src, size_t len, int64_t n)
{
        ag_srcmap_t *m = *mp;
        uint64_t h = ag_hash(src, len, "", 0);
        size_t i;

        if (!m) {
                m = calloc(1, sizeof(*m));
                if (!m)
                        return -1;
                *mp = m;
        }
        if ((m->cnt + 1) * 4 > (m->mask + 1) * 3 && srcmap_grow(m) == -1)
                return -1;
        for (i = h & m->mask; m->e[i].h; i = (i + 1) & m->mask)
                if (m->e[i].h == h && m->e[i].len == len &&
                    memcmp(m->arena + m->e[i].off, src, len) == 0) {
                        m->e[i].n += n;
                        return 0;
                }
        if (m->used + len > m->cap) {
                size_t cap = m->cap ? 2 * m->cap : 256;
                char *a;

                while (cap < m->used + len)
                        cap *= 2;
                a = realloc(m->arena, cap);
                if (!a)
                        return -1;
                m->arena = a;
                m->cap = cap;
        }
        memcpy(m->arena + m->used, src, len);
        m->e[i].h = h;
        m->e[i].n = n;
        m->e[i].off = (uint32_t)m->used;
        m->e[i].len = (uint32_t)len;
        m->used += len;
        m->cnt++;
        return 0;
}

static void srcmap_free(ag_srcmap_t *m)
{
        if (!m)
                return;
        free(m->e);
        free(m->arena);
        free(m);
}

static int srcmap_cmp_str(const ag_srcmap_t *m, const src_ent_t *a,
                          const src_ent_t *b)
{
        size_t n = a->len < b->len ? a->len : b->len;
        int c = memcmp(m->arena + a->off, m->arena + b->off, n);

        if (c)
                return c;
        return a->len < b->len ? -1 : a->len > b->len;
}

/* Ascending by clicks, then by name: the order of a Redis sorted set. */
static const ag_srcmap_t *sort_map;
static int by_clicks_then_name(const void *x, const void *y)
{
        const src_ent_t *a = x, *b = y;

        if (a->n != b->n)
                return a->n < b->n ? -1 : 1;
        return srcmap_cmp_str(sort_map, a, b);
}

static src_ent_t *srcmap_sorted(const ag_srcmap_t *m, size_t *cnt)
{
        src_ent_t *v = malloc((m->cnt ? m->cnt : 1) * sizeof(*v));
        size_t k = 0;

        if (!v)
                return NULL;
        for (size_t i = 0; m->mask && i <= m->mask; i++)
                if (m->e[i].h)
                        v[k++] = m->e[i];
        sort_map = m;
        qsort(v, k, sizeof(*v), by_clicks_then_name);
        *cnt = k;
        return v;
}

/* Keeps the max heaviest sources (dropping the lightest as ZPOPMIN would);
 * returns the clicks dropped. */
int64_t ag_srcmap_trim(ag_srcmap_t *m, int max)
{
        ag_srcmap_t *n = NULL;
        src_ent_t *v;
        size_t cnt, drop;
        int64_t dropped = 0;

        if (!m || (int64_t)m->cnt <= max)
                return 0;
        v = srcmap_sorted(m, &cnt);
        if (!v)
                return 0;
        drop = cnt - (size_t)max;
        for (size_t i = 0; i < cnt; i++) {
                if (i < drop) {
                        dropped += v[i].n;
                        continue;
                }
                if (ag_srcmap_add(&n, m->arena + v[i].off, v[i].len,
                                  v[i].n) == -1) {
                        srcmap_free(n);
                        free(v);
                        return 0;
                }
        }
        free(v);
        if (!n)
                n = calloc(1, sizeof(*n));
        if (!n)
                return 0;
        free(m->e);
        free(m->arena);
        *m = *n;
        free(n);
        return dropped;
}

static void put_u64(unsigned char *p, uint64_t v)
{
        for (int i = 0; i < 8; i++)
                p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
        uint64_t v = 0;

        for (int i = 0; i < 8; i++)
                v |= (uint64_t)p[i] << (8 * i);
        return v;
}

/* [u16 length][source][i64 clicks] per source, little-endian. */
size_t ag_srcmap_encode(const ag_srcmap_t *m, unsigned char **out)
{
        size_t size = 0, k = 0;
        unsigned char *b;

        *out = NULL;
        if (!m || !m->cnt)
                return 0;
        size = m->used + m->cnt * 10;
        b = malloc(size);
        if (!b)
                return 0;
        for (size_t i = 0; i <= m->mask; i++) {
                const src_ent_t *e = &m->e[i];

                if (!e->h)
                        continue;
                b[k] = (unsigned char)(e->len & 0xff);
                b[k + 1] = (unsigned char)(e->len >> 8);
                memcpy(b + k + 2, m->arena + e->off, e->len);
                put_u64(b + k + 2 + e->len, (uint64_t)e->n);
                k += 10 + e->len;
        }
        *out = b;
        return k;
}

int ag_srcmap_decode(ag_srcmap_t **m, const unsigned char *buf, size_t len)
{
        size_t k = 0;

        while (k < len) {
                size_t n;

                if (k + 2 > len)
                        return -1;
                n = buf[k] | (size_t)buf[k + 1] << 8;
                if (k + 10 + n > len)
                        return -1;
                if (ag_srcmap_add(m, (const char *)buf + k + 2, n,
                                  (int64_t)get_u64(buf + k + 2 + n)) == -1)
                        return -1;
                k += 10 + n;
        }
        return 0;
}

/* --------------------------------------------------------------- cells */

static void cell_free(ag_cell_t *c)
{
        sg_hll_destroy(c->hll[AG_U]);
        sg_hll_destroy(c->hll[AG_I]);
        srcmap_free(c->src);
        free(c);
}

/* The index of the first cell starting at or after t. */
static int cells_lower(const ag_cells_t *cs, int64_t t)
{
        int lo = 0, hi = cs->cnt;

        while (lo < hi) {
                int mid = (lo + hi) / 2;
                if (cs->v[mid]->start < t)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static int scope_dirty(ag_part_t *p, ag_scope_t *s)
{
        if (s->listed)
                return 0;
        if (ptrs_push((void ***)&p->dirty, &p->dirty_cnt, &p->dirty_cap, s))
                return -1;
        s->listed = 1;
        return 0;
}

static int cell_dirty(ag_part_t *p, ag_scope_t *s, ag_cell_t *c, int what)
{
        c->dirty |= (uint8_t)what;
        if (!c->listed) {
                if (ptrs_push((void ***)&s->dirty, &s->dirty_cnt,
                              &s->dirty_cap, c))
                        return -1;
                c->listed = 1;
        }
        return scope_dirty(p, s);
}

ag_cell_t *ag_scope_cell(ag_part_t *p, ag_scope_t *s, int level,
                         int64_t start, int create)
{
        ag_cells_t *cs = &s->lv[level];
        ag_cell_t *c;
        int i;

        (void)p;
        /* Most events are in the newest cells. */
        for (i = cs->cnt - 1; i >= 0 && i >= cs->cnt - 4; i--) {
                if (cs->v[i]->start == start)
                        return cs->v[i];
                if (cs->v[i]->start < start)
                        break;
        }
        i = cells_lower(cs, start);
        if (i < cs->cnt && cs->v[i]->start == start)
                return cs->v[i];
        if (!create)
                return NULL;
        if (cs->cnt == cs->cap) {
                int cap = cs->cap ? 2 * cs->cap : 8;
                ag_cell_t **n = realloc(cs->v, cap * sizeof(*n));
                if (!n)
                        return NULL;
                cs->v = n;
                cs->cap = cap;
        }
        c = calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        c->start = start;
        c->fresh = 1;
        memmove(cs->v + i + 1, cs->v + i, (cs->cnt - i) * sizeof(*cs->v));
        cs->v[i] = c;
        cs->cnt++;
        return c;
}

/* -------------------------------------------------------------- scopes */

static uint64_t name_hash(const char *name)
{
        return ag_hash(name, strlen(name), "", 0);
}

static int scopes_grow(ag_part_t *p)
{
        size_t cap = p->mask ? 2 * (p->mask + 1) : 64;
        ag_scope_t **n = calloc(cap, sizeof(*n));

        if (!n)
                return -1;
        for (size_t i = 0; p->mask && i <= p->mask; i++) {
                size_t j;

                if (!p->slots[i])
                        continue;
                for (j = name_hash(p->slots[i]->name) & (cap - 1); n[j];
                     j = (j + 1) & (cap - 1))
                        ;
                n[j] = p->slots[i];
        }
        free(p->slots);
        p->slots = n;
        p->mask = cap - 1;
        return 0;
}

ag_scope_t *ag_part_scope(ag_part_t *p, const char *name, int create)
{
        size_t i;
        ag_scope_t *s;

        if (p->mask)
                for (i = name_hash(name) & p->mask; p->slots[i];
                     i = (i + 1) & p->mask)
                        if (strcmp(p->slots[i]->name, name) == 0)
                                return p->slots[i];
        if (!create)
                return NULL;
        if ((p->scope_cnt + 1) * 2 > p->mask + 1 && scopes_grow(p) == -1)
                return NULL;
        for (i = name_hash(name) & p->mask; p->slots[i]; i = (i + 1) & p->mask)
                ;
        s = calloc(1, sizeof(*s));
        if (!s)
                return NULL;
        snprintf(s->name, sizeof(s->name), "%s", name);
        s->fc_seed = hash_seed(s->name, strlen(s->name));
        s->channel = name[0] && name[strlen(name) - 1] == '|';
        s->fresh = 1;
        p->slots[i] = s;
        p->scope_cnt++;
        return s;
}

static void scope_free(ag_scope_t *s)
{
        for (int l = 0; l < AG_LEVELS; l++) {
                for (int i = 0; i < s->lv[l].cnt; i++)
                        cell_free(s->lv[l].v[i]);
                free(s->lv[l].v);
        }
        free(s->open.v);
        free(s->closing.v);
        free(s->dirty);
        free(s);
}

static int is_other(const char *name)
{
        size_t n = strlen(name);

        return strcmp(name, "_other|") == 0 ||
               (n >= 7 && strcmp(name + n - 7, "|_other") == 0);
}

/*
 * Bounded scopes: past max_scopes, a new channel counts as "_other" (its
 * campaigns as "_other|_other") and a new campaign of a known channel as
 * "<channel>|_other". The _other scopes are always admitted.
 */
static ag_scope_t *admit(ag_part_t *p, const char *name)
{
        ag_scope_t *s = ag_part_scope(p, name, 0);

        if (s)
                return s;
        if ((int)p->scope_cnt < p->m->max_scopes || is_other(name))
                return ag_part_scope(p, name, 1);
        return NULL;
}

/* ----------------------------------------------------------- partition */

ag_part_t *ag_part_new(const ag_model_t *m, int32_t id)
{
        ag_part_t *p = calloc(1, sizeof(*p));

        if (!p)
                return NULL;
        p->m = m;
        p->id = id;
        p->maxt = INT64_MIN;
        p->horizon = INT64_MIN;
        p->fc_day = INT64_MIN;
        return p;
}

void ag_part_destroy(ag_part_t *p)
{
        if (!p)
                return;
        for (size_t i = 0; p->mask && i <= p->mask; i++)
                if (p->slots[i])
                        scope_free(p->slots[i]);
        free(p->slots);
        free(p->dirty);
        htab_free(&p->fc);
        htab_free(&p->clicks);
        logs_free(&p->fc_log);
        logs_free(&p->ck_log);
        free(p);
}

/* Adds the counter deltas d to the running sums of s's windows that cover
 * bucket (an event within the lateness after its window was sent). */
static void add_to_windows(ag_part_t *p, ag_scope_t *s, int64_t bucket,
                           const int64_t *d)
{
        if (!s->snap_end || bucket >= s->snap_end)
                return;
        for (int w = 0; w < p->m->win_cnt; w++) {
                ag_wsum_t *ws = &s->win[w];

                if (!ws->e || bucket < ws->s || bucket >= ws->e)
                        continue;
                for (int f = 0; f < NF; f++)
                        ws->n[f] += d[f];
                s->win_dirty = 1;
        }
}

static int add_counts(ag_part_t *p, ag_scope_t *s, int64_t bucket,
                      const int64_t *d)
{
        ag_cell_t *c = ag_scope_cell(p, s, 0, bucket, 1);

        if (!c)
                return -1;
        for (int f = 0; f < NF; f++)
                c->n[f] += d[f];
        add_to_windows(p, s, bucket, d);
        if (c->fresh) {
                int64_t ws = floor_to(bucket, p->m->kpi_ms);
                if (ag_i64s_add(&s->open, ws) == -1)
                        return -1;
        }
        return cell_dirty(p, s, c, AG_D_N);
}

static int add_hll(ag_part_t *p, ag_scope_t *s, int64_t bucket, int kind,
                   uint64_t hash)
{
        for (int l = 0; l < p->m->level_cnt; l++) {
                ag_cell_t *c = ag_scope_cell(
                    p, s, l, floor_to(bucket, p->m->level_ms[l]), 1);
                int rc;

                if (!c)
                        return -1;
                if (!c->hll[kind] && !(c->hll[kind] = sg_hll_new()))
                        return -1;
                rc = sg_hll_add_hash(c->hll[kind], hash);
                if (rc == -1)
                        return -1;
                if ((rc || c->fresh) &&
                    cell_dirty(p, s, c, kind == AG_U ? AG_D_U : AG_D_I))
                        return -1;
        }
        return 0;
}

static int add_source(ag_part_t *p, ag_scope_t *s, int64_t bucket,
                      const char *src)
{
        size_t len = strlen(src);

        for (int l = 0; l < p->m->level_cnt; l++) {
                ag_cell_t *c = ag_scope_cell(
                    p, s, l, floor_to(bucket, p->m->level_ms[l]), 1);

                if (!c || ag_srcmap_add(&c->src, src, len, 1) == -1 ||
                    cell_dirty(p, s, c, AG_D_SRC))
                        return -1;
                /* Bounded within a batch too: at twice the cap, the
                 * lightest go now (as at the batch's end, below). */
                if ((int64_t)c->src->cnt >= 2 * (int64_t)p->m->max_sources) {
                        int64_t d[NF] = {0};

                        d[F_UNTRACKED] =
                            ag_srcmap_trim(c->src, p->m->max_sources);
                        if (l == 0 && d[F_UNTRACKED] &&
                            add_counts(p, s, c->start, d) == -1)
                                return -1;
                }
        }
        return 0;
}

/* The counter deltas of ev for one scope (the ones every scope gets). */
static void event_deltas(const sg_event_t *ev, int64_t *d)
{
        int invalid = ev->ivt_mask != 0;

        memset(d, 0, NF * sizeof(*d));
        switch (ev->type) {
        case SG_EV_IMPRESSION:
                d[F_IMPRESSIONS] = 1;
                d[F_SPEND] = ev->cost_micros;
                if (invalid) {
                        d[F_INVALID_IMPRESSIONS] = 1;
                        d[F_INVALID_SPEND] = ev->cost_micros;
                }
                break;
        case SG_EV_CLICK:
                d[F_CLICKS] = 1;
                d[F_SPEND] = ev->cost_micros;
                if (invalid) {
                        d[F_INVALID_CLICKS] = 1;
                        d[F_INVALID_SPEND] = ev->cost_micros;
                }
                break;
        case SG_EV_CONVERSION:
                d[F_CONVERSIONS] = 1;
                d[F_REVENUE] = ev->revenue_micros;
                if (!ev->has_ref_id || !ev->ref_id[0])
                        d[F_NO_CLICK] = 1;
                break;
        default:
                break;
        }
        /* Invalid traffic by reason, of impressions and clicks. */
        for (int b = 0; b < 4 && ev->type != SG_EV_CONVERSION; b++)
                if (ev->ivt_mask & (1u << b))
                        d[F_IVT_BOT_UA + b] = 1;
}

/* The frequency-cap key of device dev (dlen bytes) in scope s on day. */
static uint64_t fc_key(const ag_scope_t *s, const char *dev, size_t dlen,
                       int64_t day)
{
        return mix64(hash_end(s->fc_seed, dev, dlen) ^ (uint64_t)day) | 1;
}

/* Starts loading key's slot: the table outgrows the caches, and the
 * probe comes after the event's other work. */
static void fc_prefetch(const ag_part_t *p, uint64_t key)
{
        if (p->fc.mask)
                __builtin_prefetch(&p->fc.e[key & p->fc.mask], 1);
}

/* 1 if the impression with frequency-cap key (of its scope and device) is
 * over the cap on its day; counts it. */
static int freq_over(ag_part_t *p, uint64_t key, int64_t day)
{
        ag_hent_t *e = p->fc.mask ? htab_slot(&p->fc, key) : NULL;
        int64_t now = e && e->key ? e->val : 0;
        unsigned char rec[9];

        /* Counts saturate just past the cap: beyond it every impression
         * is over, and nothing changes to remember (so the log grows with
         * devices, not impressions). */
        if (now > p->m->freq_cap)
                return 1;
        /* Bounded (aggregate.max_devices): a pair past it is not capped. */
        if (!(e && e->key) && p->m->max_devices > 0 &&
            (int64_t)p->fc.cnt >= p->m->max_devices)
                return 0;
        now++;
        if (e && e->key)
                e->val = now;
        else if (ag_htab_put(&p->fc, key, now, day) == -1)
                return -1;
        if (day > p->fc_day)
                p->fc_day = day;
        put_u64(rec, key);
        rec[8] = (unsigned char)(now > 255 ? 255 : now);
        if (ag_log_add(&p->fc_log, day, rec, sizeof(rec)) == -1)
                return -1;
        return now > p->m->freq_cap;
}

/* Click to conversion: the CTC field of the time between them. */
static int ctc_field(int64_t dt)
{
        if (dt < 10000)
                return F_CTC_10S;
        if (dt < MINUTE)
                return F_CTC_1M;
        if (dt < HOUR)
                return F_CTC_1H;
        return F_CTC_GE_1H;
}

static void clicks_evict(ag_part_t *p, int64_t before)
{
        size_t n = p->clicks.cnt;

        htab_sweep(&p->clicks, before);
        p->evicted_clicks += (int64_t)(n - p->clicks.cnt);
}

static int click_put(ag_part_t *p, const sg_event_t *ev)
{
        uint64_t h = ag_hash(ev->event_id, strlen(ev->event_id), "c", 1);
        unsigned char rec[16];

        /* Bounded: past max_clicks, the oldest hours go first. */
        if (p->m->max_clicks > 0 && (int64_t)p->clicks.cnt >= p->m->max_clicks) {
                int64_t cut = p->maxt - p->m->click_ttl_ms;

                while ((int64_t)p->clicks.cnt >= p->m->max_clicks * 9 / 10 &&
                       cut <= p->maxt) {
                        cut += HOUR;
                        clicks_evict(p, cut);
                }
        }
        if (ag_htab_put(&p->clicks, h, ev->event_time, ev->event_time) == -1)
                return -1;
        put_u64(rec, h);
        put_u64(rec + 8, (uint64_t)ev->event_time);
        return ag_log_add(&p->ck_log, floor_to(ev->event_time, HOUR), rec,
                          sizeof(rec));
}

/* a, sep and b into dst (size bytes), cut to fit: snprintf's "%s%s%s"
 * without its cost, for the names every event builds. */
static void join3(char *dst, size_t size, const char *a, const char *sep,
                  const char *b)
{
        const char *part[3] = {a, sep, b};
        size_t n = 0;

        for (int i = 0; i < 3; i++) {
                size_t l = strlen(part[i]);

                if (l > size - 1 - n)
                        l = size - 1 - n;
                memcpy(dst + n, part[i], l);
                n += l;
        }
        dst[n] = '\0';
}

int ag_part_apply(ag_part_t *p, const sg_event_t *ev)
{
        const ag_model_t *m = p->m;
        char name[AG_SCOPE_LEN + 8];
        char src[SG_SOURCE_LEN + 8];
        int64_t bucket = floor_to(ev->event_time, m->bucket_ms);
        int64_t d[NF];
        ag_scope_t *sc[2];
        int dev = ev->has_device_id && ev->device_id[0];
        int ip = ev->has_ip && ev->ip[0];
        uint64_t hdev = 0, hip = 0, fck[2] = {0, 0}; /* 0: no cap */
        int64_t fc_day = 0;
        int ctc = -1;

        join3(name, sizeof(name), ev->channel, "|", "");
        sc[0] = admit(p, name);
        if (!sc[0]) {
                sc[0] = admit(p, "_other|");
                sc[1] = admit(p, "_other|_other");
                p->overflow += 2;
        } else {
                join3(name, sizeof(name), ev->channel, "|",
                      ev->campaign_id);
                sc[1] = admit(p, name);
                if (!sc[1]) {
                        join3(name, sizeof(name), ev->channel, "|",
                              "_other");
                        sc[1] = admit(p, name);
                        p->overflow++;
                }
        }
        if (!sc[0] || !sc[1])
                return -1;
        /* Click to conversion, once for both scopes: clicks earlier in
         * the stream, within aggregate.click_ttl_s. */
        if (ev->type == SG_EV_CLICK) {
                if (click_put(p, ev) == -1)
                        return -1;
        } else if (ev->type == SG_EV_CONVERSION && ev->has_ref_id &&
                   ev->ref_id[0]) {
                uint64_t h =
                    ag_hash(ev->ref_id, strlen(ev->ref_id), "c", 1);
                int64_t *ct = ag_htab_get(&p->clicks, h);

                ctc = ct && ev->event_time - *ct <= m->click_ttl_ms
                          ? ctc_field(ev->event_time - *ct)
                          : F_NO_CLICK;
        }
        if (ev->type == SG_EV_IMPRESSION && dev && m->freq_cap > 0) {
                size_t dlen = strlen(ev->device_id);

                fc_day = ag_day_start(m, bucket);
                for (int k = 0; k < 2; k++) {
                        fck[k] = fc_key(sc[k], ev->device_id, dlen, fc_day);
                        fc_prefetch(p, fck[k]);
                }
        }
        if (dev)
                hdev = sg_hll_hash(ev->device_id, strlen(ev->device_id));
        if (ip)
                hip = sg_hll_hash(ev->ip, strlen(ev->ip));
        for (int k = 0; k < 2; k++) {
                ag_scope_t *s = sc[k];

                event_deltas(ev, d);
                if (ctc >= 0)
                        d[ctc]++;
                if (fck[k]) {
                        int over = freq_over(p, fck[k], fc_day);
                        if (over == -1)
                                return -1;
                        d[F_FREQ_CAP] += over;
                }
                if (add_counts(p, s, bucket, d) == -1)
                        return -1;
                if (dev && add_hll(p, s, bucket, AG_U, hdev) == -1)
                        return -1;
                if (ip && add_hll(p, s, bucket, AG_I, hip) == -1)
                        return -1;
                if (k == 0 && ev->type == SG_EV_CLICK && s->channel) {
                        if (ip) {
                                join3(src, sizeof(src), "ip:", ev->ip, "");
                                if (add_source(p, s, bucket, src) == -1)
                                        return -1;
                        }
                        if (dev) {
                                join3(src, sizeof(src), "device:",
                                      ev->device_id, "");
                                if (add_source(p, s, bucket, src) == -1)
                                        return -1;
                        }
                }
        }
        sc[0]->run_dirty = sc[1]->run_dirty = 1;
        if (ev->event_time > p->maxt)
                p->maxt = ev->event_time;
        return 0;
}

/* ----------------------------------------------------------- snapshots */

/* Adds sign * the counters of s's buckets starting in [from, to) to tot. */
static void add_buckets(const ag_scope_t *s, int64_t from, int64_t to,
                        int64_t *tot, int sign)
{
        const ag_cells_t *cs = &s->lv[0];

        for (int i = cells_lower(cs, from); i < cs->cnt; i++) {
                const ag_cell_t *c = cs->v[i];

                if (c->start >= to)
                        break;
                for (int f = 0; f < NF; f++)
                        tot[f] += sign * c->n[f];
        }
}

/* The running sums of window w moved to [st, e): the buckets that entered
 * added and those that left subtracted, or recomputed when the ranges do
 * not overlap (or what left is no longer in memory). */
static void window_sums(ag_part_t *p, ag_scope_t *s, int w, int64_t st,
                        int64_t e, int64_t *out)
{
        ag_wsum_t *ws = &s->win[w];

        /* "today" only grows within its day: nothing leaves it. */
        if (ws->e && st >= ws->s && st < ws->e && e >= ws->e &&
            (st == ws->s || ws->s >= p->horizon)) {
                add_buckets(s, ws->e, e, ws->n, 1);
                add_buckets(s, ws->s, st, ws->n, -1);
        } else {
                memset(ws->n, 0, sizeof(ws->n));
                add_buckets(s, st, e, ws->n, 1);
        }
        ws->s = st;
        ws->e = e;
        memcpy(out, ws->n, sizeof(ws->n));
}

/* The cells of level l of s covering [from, to). */
static int range_cells(const ag_part_t *p, const ag_scope_t *s, int l,
                       int64_t from, int64_t to, const ag_cell_t **out,
                       int max)
{
        const ag_cells_t *cs = &s->lv[l];
        int n = 0;

        from = floor_to(from, p->m->level_ms[l]);
        for (int i = cells_lower(cs, from); i < cs->cnt && n < max; i++) {
                if (cs->v[i]->start >= to)
                        break;
                out[n++] = cs->v[i];
        }
        return n;
}

#define RANGE_MAX 128

static void uniques(const ag_part_t *p, const ag_scope_t *s, int64_t from,
                    int64_t to, int64_t *devices, int64_t *ips)
{
        const ag_cell_t *c[RANGE_MAX];
        const sg_hll_t *h[RANGE_MAX];
        int l = level_of_range(p->m, from, to);
        int n = range_cells(p, s, l, from, to, c, RANGE_MAX);

        for (int kind = 0; kind < 2; kind++) {
                for (int i = 0; i < n; i++)
                        h[i] = c[i]->hll[kind];
                *(kind == AG_U ? devices : ips) =
                    n ? (int64_t)sg_hll_count_union(h, n) : 0;
        }
}

/* Descending by clicks, then by name descending: ZREVRANGE's order. */
static int by_clicks_desc(const void *x, const void *y)
{
        return -by_clicks_then_name(x, y);
}

/* The heaviest sources of channel scope s over [from, to) (the sum of
 * its cells' counts), into snapshot out. */
static void top_sources(ag_part_t *p, const ag_scope_t *s, int64_t from,
                        int64_t to, sg_snapshot_t *out)
{
        const ag_cell_t *c[RANGE_MAX];
        int l = level_of_range(p->m, from, to);
        int n = range_cells(p, s, l, from, to, c, RANGE_MAX);
        ag_srcmap_t *u = NULL;
        src_ent_t *v;
        size_t cnt;

        out->top_cnt = 0;
        for (int i = 0; i < n; i++) {
                const ag_srcmap_t *m = c[i]->src;

                for (size_t j = 0; m && j <= m->mask; j++)
                        if (m->e[j].h &&
                            ag_srcmap_add(&u, m->arena + m->e[j].off,
                                          m->e[j].len, m->e[j].n) == -1) {
                                srcmap_free(u);
                                return;
                        }
        }
        if (!u)
                return;
        v = srcmap_sorted(u, &cnt);
        if (v) {
                sort_map = u;
                qsort(v, cnt, sizeof(*v), by_clicks_desc);
                for (size_t k = 0; k < cnt && k < SG_SNAPSHOT_TOP; k++) {
                        snprintf(out->top[k].source,
                                 sizeof(out->top[k].source), "%.*s",
                                 (int)v[k].len, u->arena + v[k].off);
                        out->top[k].clicks = v[k].n;
                        out->top_cnt++;
                }
                free(v);
        }
        srcmap_free(u);
}

static void fill(sg_snapshot_t *o, const ag_scope_t *s, const int64_t *v)
{
        const char *bar = strchr(s->name, '|');

        snprintf(o->channel, sizeof(o->channel), "%.*s",
                 (int)(bar ? bar - s->name : (long)strlen(s->name)), s->name);
        snprintf(o->campaign_id, sizeof(o->campaign_id), "%s",
                 bar ? bar + 1 : "");
        o->c.impressions = v[F_IMPRESSIONS];
        o->c.clicks = v[F_CLICKS];
        o->c.conversions = v[F_CONVERSIONS];
        o->c.spend_micros = v[F_SPEND];
        o->c.revenue_micros = v[F_REVENUE];
        o->c.invalid_clicks = v[F_INVALID_CLICKS];
        o->c.invalid_impressions = v[F_INVALID_IMPRESSIONS];
        o->c.invalid_spend_micros = v[F_INVALID_SPEND];
        o->x.ivt_bot_ua = v[F_IVT_BOT_UA];
        o->x.ivt_no_ua = v[F_IVT_NO_UA];
        o->x.ivt_dc_ip = v[F_IVT_DC_IP];
        o->x.ivt_dup_click = v[F_IVT_DUP_CLICK];
        o->x.freq_cap_impressions = v[F_FREQ_CAP];
        o->x.ctc_lt_10s = v[F_CTC_10S];
        o->x.ctc_lt_1m = v[F_CTC_1M];
        o->x.ctc_lt_1h = v[F_CTC_1H];
        o->x.ctc_ge_1h = v[F_CTC_GE_1H];
        o->x.conversions_no_click = v[F_NO_CLICK];
        o->x.source_clicks_untracked = v[F_UNTRACKED];
}

/* o as the snapshot of s over [st, e) named name, from its sums v. */
static void snapshot_of(ag_part_t *p, const ag_scope_t *s, const char *name,
                        int64_t st, int64_t e, int64_t wm, const int64_t *v,
                        int sources, sg_snapshot_t *o)
{
        memset(o, 0, sizeof(*o));
        fill(o, s, v);
        snprintf(o->window, sizeof(o->window), "%s", name);
        o->window_start = st;
        o->window_end = e;
        o->watermark = wm;
        uniques(p, s, st, e, &o->c.unique_devices, &o->x.unique_ips);
        if (sources && s->channel)
                top_sources(p, s, st, e, o);
}

/* The rolling snapshots of s the watermark completed. */
static int emit_rolling(ag_part_t *p, ag_scope_t *s, int64_t wm,
                        ag_emit_fn *emit, void *opaque, sg_snapshot_t *o)
{
        const ag_model_t *m = p->m;
        int64_t wm_end = floor_to(wm, m->snap_ms), from, e, v[NF];
        int sent = 0;

        if (wm_end <= s->snap_end)
                return 0;
        from = s->snap_end + m->snap_ms;
        if (from < wm_end - (MAX_STEPS - 1) * m->snap_ms)
                from = wm_end - (MAX_STEPS - 1) * m->snap_ms;
        if (!s->snap_end && s->lv[0].cnt) {
                int64_t fe = floor_to(s->lv[0].v[0]->start, m->snap_ms) +
                             m->snap_ms;
                if (fe > from)
                        from = fe;
        }
        for (e = from; e <= wm_end; e += m->snap_ms) {
                for (int w = 0; w < m->win_cnt; w++) {
                        int64_t st = win_start(m, &m->wins[w], e);

                        window_sums(p, s, w, st, e, v);
                        snapshot_of(p, s, m->wins[w].name, st, e, wm, v, 1,
                                    o);
                        if (emit(opaque, o) == -1)
                                return -1;
                        sent++;
                }
        }
        if (e > from) {
                s->snap_end = e - m->snap_ms;
                s->win_dirty = 1;
                if (scope_dirty(p, s))
                        return -1;
        }
        return sent;
}

int ag_part_emit_running(ag_part_t *p, int64_t wm, int64_t now,
                         int64_t live_ms, unsigned wins, ag_emit_fn *emit,
                         void *opaque)
{
        const ag_model_t *m = p->m;
        int64_t head = p->maxt < now ? p->maxt : now, e, v[NF];
        sg_snapshot_t *o;
        int sent = 0;

        if (!wins || p->maxt == INT64_MIN)
                return 0;
        e = floor_to(head, m->snap_ms) + m->snap_ms;
        if ((wm != INT64_MIN && e <= wm) || e <= now - live_ms)
                return 0;
        o = malloc(sizeof(*o));
        if (!o)
                return -1;
        for (size_t i = 0; p->mask && i <= p->mask; i++) {
                ag_scope_t *s = p->slots[i];

                if (!s || !s->run_dirty)
                        continue;
                for (int w = 0; w < m->win_cnt; w++) {
                        int64_t st = win_start(m, &m->wins[w], e);

                        if (!(wins & (1u << w)))
                                continue;
                        memset(v, 0, sizeof(v));
                        /* Not the rolling sums: those stay the complete
                         * windows'. */
                        add_buckets(s, st, e, v, 1);
                        snapshot_of(p, s, m->wins[w].name, st, e, wm, v, 1,
                                    o);
                        if (emit(opaque, o) == -1) {
                                free(o);
                                return -1;
                        }
                        sent++;
                }
                s->run_dirty = 0;
        }
        free(o);
        return sent;
}

/* The KPI windows of s the watermark closed, as final snapshots. */
static int emit_finals(ag_part_t *p, ag_scope_t *s, int64_t wm,
                       ag_emit_fn *emit, void *opaque, sg_snapshot_t *o)
{
        const ag_model_t *m = p->m;
        int sent = 0;

        while (s->open.cnt && s->open.v[0] + m->kpi_ms <= wm) {
                int64_t ws = s->open.v[0], v[NF] = {0};

                add_buckets(s, ws, ws + m->kpi_ms, v, 1);
                snapshot_of(p, s, m->kpi_name, ws, ws + m->kpi_ms, wm, v, 0,
                            o);
                o->final = 1;
                if (emit(opaque, o) == -1)
                        return -1;
                if (ag_i64s_add(&s->closing, ws) == -1 || scope_dirty(p, s))
                        return -1;
                i64s_remove(&s->open, ws);
                sent++;
        }
        return sent;
}

/* The source caps, applied to what the batch added (as ZPOPMIN after the
 * batch's ZINCRBYs): the clicks dropped at bucket level are counted in
 * source_clicks_untracked. */
static int trim_sources(ag_part_t *p)
{
        for (int i = 0; i < p->dirty_cnt; i++) {
                ag_scope_t *s = p->dirty[i];

                for (int k = 0; k < s->dirty_cnt; k++) {
                        ag_cell_t *c = s->dirty[k];
                        int64_t dropped, d[NF] = {0};

                        if (!(c->dirty & AG_D_SRC))
                                continue;
                        dropped = ag_srcmap_trim(c->src, p->m->max_sources);
                        if (!dropped || ag_scope_cell(p, s, 0, c->start, 0) != c)
                                continue;
                        d[F_UNTRACKED] = dropped;
                        if (add_counts(p, s, c->start, d) == -1)
                                return -1;
                }
        }
        return 0;
}

int ag_part_emit(ag_part_t *p, int64_t wm, ag_emit_fn *emit, void *opaque)
{
        sg_snapshot_t *o;
        int sent = 0, rc = 0;

        if (trim_sources(p) == -1)
                return -1;
        if (wm == INT64_MIN)
                return 0;
        o = malloc(sizeof(*o));
        if (!o)
                return -1;
        for (size_t i = 0; p->mask && i <= p->mask && rc != -1; i++)
                if (p->slots[i]) {
                        rc = emit_rolling(p, p->slots[i], wm, emit, opaque, o);
                        sent += rc;
                }
        for (size_t i = 0; p->mask && i <= p->mask && rc != -1; i++)
                if (p->slots[i]) {
                        rc = emit_finals(p, p->slots[i], wm, emit, opaque, o);
                        sent += rc;
                }
        free(o);
        return rc == -1 ? -1 : sent;
}

void ag_part_clean(ag_part_t *p)
{
        for (int i = 0; i < p->dirty_cnt; i++) {
                ag_scope_t *s = p->dirty[i];

                for (int k = 0; k < s->dirty_cnt; k++) {
                        s->dirty[k]->dirty = 0;
                        s->dirty[k]->fresh = 0;
                        s->dirty[k]->listed = 0;
                }
                s->dirty_cnt = 0;
                s->closing.cnt = 0;
                s->fresh = 0;
                s->win_dirty = 0;
                s->listed = 0;
        }
        p->dirty_cnt = 0;
        ag_logs_clear(&p->fc_log);
        ag_logs_clear(&p->ck_log);
}

/* ------------------------------------------------------------ eviction */

static void cells_evict(ag_cells_t *cs, int64_t before)
{
        int n = 0;

        while (n < cs->cnt && cs->v[n]->start < before && !cs->v[n]->listed)
                cell_free(cs->v[n++]);
        if (!n)
                return;
        memmove(cs->v, cs->v + n, (cs->cnt - n) * sizeof(*cs->v));
        cs->cnt -= n;
}

void ag_part_evict(ag_part_t *p, int64_t wm)
{
        const ag_model_t *m = p->m;
        int64_t wm_end, h0, today = INT64_MAX, e0;

        if (wm == INT64_MIN)
                return;
        wm_end = floor_to(wm, m->snap_ms);
        e0 = wm_end - MAX_STEPS * m->snap_ms;
        /* The open KPI windows and every window a snapshot can still
         * ask for. */
        h0 = floor_to(wm, m->kpi_ms) - m->kpi_ms;
        if (e0 - m->max_len < h0)
                h0 = e0 - m->max_len;
        for (int w = 0; w < m->win_cnt; w++)
                if (m->wins[w].len_ms == 0) {
                        int64_t st = win_start(m, &m->wins[w], e0);
                        if (st < today)
                                today = st;
                }
        if (h0 <= p->horizon)
                return;
        p->horizon = h0;
        for (size_t i = 0; p->mask && i <= p->mask; i++) {
                ag_scope_t *s = p->slots[i];

                if (!s)
                        continue;
                for (int l = 0; l < m->level_cnt; l++) {
                        int64_t before = floor_to(h0, m->level_ms[l]);

                        /* "today" reads its unique counts from the levels
                         * above the bucket: those are kept for the day
                         * (its running sums hold the counters). */
                        if (today < before &&
                            (l > 0 || wm_end - today <= 64 * m->level_ms[0]))
                                before = floor_to(today, m->level_ms[l]);
                        cells_evict(&s->lv[l], before);
                }
        }
        if (p->maxt != INT64_MIN && p->clicks.cnt)
                clicks_evict(p, wm - m->click_ttl_ms - HOUR);
        if (p->fc_day != INT64_MIN && p->fc.cnt)
                htab_sweep(&p->fc, ag_day_start(p->m, p->fc_day - 1));
}

/* -------------------------------------------------------------- memory */

size_t ag_part_memory(const ag_part_t *p)
{
        size_t n = sizeof(*p) + (p->mask ? (p->mask + 1) * sizeof(void *) : 0);

        for (size_t i = 0; p->mask && i <= p->mask; i++) {
                const ag_scope_t *s = p->slots[i];

                if (!s)
                        continue;
                n += sizeof(*s) + (size_t)s->open.cap * 8 +
                     (size_t)s->dirty_cap * sizeof(void *);
                for (int l = 0; l < AG_LEVELS; l++) {
                        n += (size_t)s->lv[l].cap * sizeof(void *);
                        for (int k = 0; k < s->lv[l].cnt; k++) {
                                const ag_cell_t *c = s->lv[l].v[k];

                                n += sizeof(*c);
                                for (int h = 0; h < 2; h++)
                                        if (c->hll[h])
                                                n += sg_hll_memory(c->hll[h]);
                                if (c->src)
                                        n += sizeof(*c->src) +
                                             (c->src->mask + 1) *
                                                 sizeof(src_ent_t) +
                                             c->src->cap;
                        }
                }
        }
        n += (p->fc.mask ? p->fc.mask + 1 : 0) * 24;
        n += (p->clicks.mask ? p->clicks.mask + 1 : 0) * 24;
        return n;
}
