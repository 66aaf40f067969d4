/*
 * aggregate's checkpoint in Redis (checkpoint.h, docs/redis-layout.md).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "log.h"
#include "stage.h"

extern const char sg_aggregate_checkpoint_lua[];

#define DAY        86400000LL
#define HOUR       3600000LL
#define MAX_STEPS  60 /* as state.c: rolling snapshots' catch-up */
#define FC_TTL_S   172800
#define LOAD_PIPE  512 /* commands per pipelined round trip on load */
#define HEAD_ARGS  3   /* EVALSHA, its SHA, the key count */

/* -------------------------------------------------------------- inputs */

static uint64_t name_hash(const char *s)
{
        uint64_t h = 1469598103934665603ULL;

        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        return h ^ (h >> 29);
}

/* The index of name's slot: where it is, or the empty one it would go. */
static int input_slot(const ag_inputs_t *a, const char *name)
{
        int k = (int)(name_hash(name) & (uint64_t)a->mask);

        while (a->slot[k] && strcmp(a->name[a->slot[k] - 1], name) != 0)
                k = (k + 1) & a->mask;
        return k;
}

static int inputs_rehash(ag_inputs_t *a, int size)
{
        int *slot = calloc((size_t)size, sizeof(*slot));

        if (!slot)
                return -1;
        free(a->slot);
        a->slot = slot;
        a->mask = size - 1;
        for (int i = 0; i < a->cnt; i++)
                a->slot[input_slot(a, a->name[i])] = i + 1;
        return 0;
}

int ag_inputs_add(ag_inputs_t *a, const char *name)
{
        int k;

        if (a->slot) {
                k = input_slot(a, name);
                if (a->slot[k])
                        return a->slot[k] - 1;
        }
        if (a->cnt == a->cap) {
                int cap = a->cap ? 2 * a->cap : 64;
                void *n = realloc(a->name, cap * sizeof(*a->name));
                if (!n)
                        return -1;
                a->name = n; /* before the rehash, which reads the names */
                a->cap = cap;
                if (inputs_rehash(a, 4 * cap) == -1)
                        return -1;
        }
        snprintf(a->name[a->cnt], sizeof(a->name[0]), "%s", name);
        a->slot[input_slot(a, name)] = a->cnt + 1;
        return a->cnt++;
}

void ag_inputs_fini(ag_inputs_t *a)
{
        free(a->name);
        free(a->slot);
        memset(a, 0, sizeof(*a));
}

static int pstate_inputs(ag_pstate_t *ps, int cnt)
{
        sg_wm_input_t *w;
        int64_t *o;

        if (cnt <= ps->in_cnt)
                return 0;
        w = realloc(ps->wmi, cnt * sizeof(*w));
        if (!w)
                return -1;
        ps->wmi = w;
        o = realloc(ps->src_off, cnt * sizeof(*o));
        if (!o)
                return -1;
        ps->src_off = o;
        for (int i = ps->in_cnt; i < cnt; i++) {
                w[i].event_time = INT64_MIN;
                w[i].idle = 0;
                w[i].seen = 0;
                o[i] = -1;
        }
        ps->in_cnt = cnt;
        return 0;
}

int ag_input_of(ag_inputs_t *a, ag_pstate_t *ps, const char *name)
{
        int i = ag_inputs_add(a, name);

        if (i < 0 || pstate_inputs(ps, a->cnt) == -1)
                return -1;
        return i;
}

int ag_input_at(ag_inputs_t *a, ag_pstate_t *ps, const char *topic,
                int32_t partition)
{
        char name[AG_INPUT_LEN], digits[12], *d = digits + sizeof(digits);
        size_t n = strlen(topic), k;
        uint32_t u = (uint32_t)partition;

        /* "topic/partition" without snprintf: this runs for every event. */
        do
                *--d = (char)('0' + u % 10);
        while ((u /= 10));
        k = (size_t)(digits + sizeof(digits) - d);
        if (partition < 0 || n + 1 + k >= sizeof(name))
                return -1;
        memcpy(name, topic, n);
        name[n] = '/';
        memcpy(name + n + 1, d, k);
        name[n + 1 + k] = '\0';
        return ag_input_of(a, ps, name);
}

void ag_input_event(ag_pstate_t *ps, int i, int64_t offset,
                    int64_t event_time, int64_t now_ms)
{
        ps->src_off[i] = offset;
        /* An event stamped in the future is counted, but does not move
         * the watermark past the clock. */
        sg_watermark_observe(&ps->wmi[i],
                             event_time < now_ms ? event_time : now_ms, 0);
}

int64_t ag_pstate_watermark(ag_pstate_t *ps, const ag_inputs_t *a,
                            int64_t lateness_ms)
{
        /* Every input partition the metadata lists holds it back until
         * its first marker. */
        if (pstate_inputs(ps, a->cnt) == -1)
                return ps->wm;
        ps->wm = sg_watermark_advance(
            ps->wm, sg_watermark_compute(ps->wmi, ps->in_cnt, lateness_ms));
        return ps->wm;
}

void ag_pstate_destroy(ag_pstate_t *ps)
{
        if (!ps)
                return;
        ag_part_destroy(ps->st);
        free(ps->wmi);
        free(ps->src_off);
        free(ps);
}

/* ----------------------------------------------------------- arguments */

void ag_ckpt_init(ag_ckpt_t *ck, sg_redis_t *r, const ag_model_t *m,
                  ag_inputs_t *inputs)
{
        memset(ck, 0, sizeof(*ck));
        ck->redis = r;
        ck->m = m;
        ck->inputs = inputs;
        ck->script.source = sg_aggregate_checkpoint_lua;
        sg_redis_script_load(r, &ck->script);
        ck->script_conn = sg_redis_connects(r);
}

void ag_ckpt_fini(ag_ckpt_t *ck)
{
        free(ck->arena);
        free(ck->off);
        free(ck->len);
        free(ck->argv);
        free(ck->fl);
}

static int arg_room(ag_ckpt_t *ck, size_t bytes)
{
        if (ck->argc == ck->argcap) {
                int cap = ck->argcap ? 2 * ck->argcap : 1024;
                size_t *o = realloc(ck->off, cap * sizeof(*o));
                size_t *l;

                if (!o)
                        return -1;
                ck->off = o;
                l = realloc(ck->len, cap * sizeof(*l));
                if (!l)
                        return -1;
                ck->len = l;
                ck->argcap = cap;
        }
        if (ck->used + bytes > ck->cap) {
                size_t cap = ck->cap ? 2 * ck->cap : 65536;
                char *n;

                while (cap < ck->used + bytes)
                        cap *= 2;
                n = realloc(ck->arena, cap);
                if (!n)
                        return -1;
                ck->arena = n;
                ck->cap = cap;
        }
        return 0;
}

static int arg_bytes(ag_ckpt_t *ck, const void *buf, size_t len)
{
        if (arg_room(ck, len + 1) == -1)
                return -1;
        memcpy(ck->arena + ck->used, buf, len);
        ck->arena[ck->used + len] = '\0';
        ck->off[ck->argc] = ck->used;
        ck->len[ck->argc++] = len;
        ck->used += len + 1;
        return 0;
}

static int arg_fmt(ag_ckpt_t *ck, const char *fmt, ...)
{
        char buf[AG_SCOPE_LEN + 128];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= sizeof(buf))
                return -1;
        return arg_bytes(ck, buf, (size_t)n);
}

static int arg_i64(ag_ckpt_t *ck, int64_t v)
{
        char buf[24], *e = buf + sizeof(buf), *d = e;
        uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;

        do
                *--d = (char)('0' + u % 10);
        while ((u /= 10));
        if (v < 0)
                *--d = '-';
        return arg_bytes(ck, d, (size_t)(e - d));
}

static int arg_str(ag_ckpt_t *ck, const char *s)
{
        return arg_bytes(ck, s, strlen(s));
}

/* A command's head: its argument count (the script's framing), its name
 * and key "sg:{pN}:<suffix>". */
static int cmd(ag_ckpt_t *ck, int argc, const char *name, int32_t p,
               const char *keyfmt, ...)
{
        char key[AG_SCOPE_LEN + 96];
        int n = snprintf(key, sizeof(key), "sg:{p%d}:", (int)p);
        va_list ap;

        va_start(ap, keyfmt);
        vsnprintf(key + n, sizeof(key) - n, keyfmt, ap);
        va_end(ap);
        if (arg_i64(ck, argc) == -1 || arg_str(ck, name) == -1)
                return -1;
        return arg_bytes(ck, key, strlen(key));
}

/* ------------------------------------------------------------- writing */

/* The bucket counters: absolute values of the non-zero ones. */
static int put_counts(ag_ckpt_t *ck, int32_t p, const ag_scope_t *s,
                      const ag_cell_t *c, int64_t xat)
{
        int nz = 0;

        for (int f = 0; f < NF; f++)
                nz += c->n[f] != 0;
        if (nz) {
                if (cmd(ck, 2 + 2 * nz, "HSET", p, "b:%s:%" PRId64, s->name,
                        c->start) == -1)
                        return -1;
                for (int f = 0; f < NF; f++)
                        if (c->n[f] && (arg_str(ck, ag_field_names[f]) ||
                                        arg_i64(ck, c->n[f])))
                                return -1;
        }
        if (!c->fresh)
                return 0;
        if (cmd(ck, 3, "PEXPIREAT", p, "b:%s:%" PRId64, s->name, c->start) ||
            arg_i64(ck, xat) ||
            cmd(ck, 4, "ZADD", p, "bi:%s", s->name) ||
            arg_i64(ck, c->start) || arg_i64(ck, c->start))
                return -1;
        return 0;
}

static int put_blob(ag_ckpt_t *ck, int32_t p, const char *kind,
                    const char *tag, const ag_scope_t *s, int64_t start,
                    const unsigned char *blob, size_t len, int64_t xat)
{
        return cmd(ck, 5, "SET", p, "%s%s:%s:%" PRId64, kind, tag, s->name,
                   start) ||
               arg_bytes(ck, blob, len) || arg_str(ck, "PXAT") ||
               arg_i64(ck, xat);
}

static int put_hll(ag_ckpt_t *ck, int32_t p, const char *kind,
                   const char *tag, const ag_scope_t *s, const ag_cell_t *c,
                   const sg_hll_t *h, int64_t xat)
{
        /* One pass: encoded into the scratch buffer (a dense blob is the
         * largest any HyperLogLog takes), then framed. */
        static unsigned char blob[SG_HLL_DENSE_SIZE];
        size_t n = sg_hll_encode(h, blob, sizeof(blob));

        if (!n)
                return -1;
        return put_blob(ck, p, kind, tag, s, c->start, blob, n, xat);
}

static int put_cell(ag_ckpt_t *ck, int32_t p, const ag_scope_t *s,
                    const ag_cell_t *c, int level, int64_t xat)
{
        const char *tag = ck->m->level_tag[level];

        if (level == 0 && (c->dirty & AG_D_N) &&
            put_counts(ck, p, s, c, xat) == -1)
                return -1;
        if ((c->dirty & AG_D_U) && c->hll[AG_U] &&
            put_hll(ck, p, "u", tag, s, c, c->hll[AG_U], xat) == -1)
                return -1;
        if ((c->dirty & AG_D_I) && c->hll[AG_I] &&
            put_hll(ck, p, "i", tag, s, c, c->hll[AG_I], xat) == -1)
                return -1;
        if ((c->dirty & AG_D_SRC) && c->src) {
                unsigned char *b = NULL;
                size_t n = ag_srcmap_encode(c->src, &b);
                int rc = n ? put_blob(ck, p, "sx", tag, s, c->start, b, n,
                                      xat)
                           : 0;

                free(b);
                if (rc == -1)
                        return -1;
        }
        return 0;
}

static int cell_level(const ag_model_t *m, ag_part_t *st, ag_scope_t *s,
                      const ag_cell_t *c)
{
        for (int l = 0; l < m->level_cnt; l++)
                if (c->start % m->level_ms[l] == 0 &&
                    ag_scope_cell(st, s, l, c->start, 0) == c)
                        return l;
        return -1;
}

/*
 * Where Redis' retention of a partition's cells starts: aggregate.retention_s
 * back from its newest event, down to a multiple of the top level kept, so
 * that a bucket older than the cut lies in a minute and an hour that end
 * by it. Event time, not the wall clock: a replay or a flood of old event
 * times cannot keep more than the retention per scope (F15).
 */
static int64_t cells_cut(const ag_model_t *m, int64_t maxt)
{
        int64_t top = m->level_ms[m->level_cnt - 1];

        return sg_window_floor(maxt - m->retention_ms, top);
}

/* SGTRIM (checkpoint.lua): the scope's buckets before cut leave its index
 * and Redis, each kind at each level kept. */
static int put_trim(ag_ckpt_t *ck, int32_t p, const ag_scope_t *s,
                    int64_t cut)
{
        const ag_model_t *m = ck->m;
        static const char *const kinds[] = {"u", "i", "sx"};
        int pairs = 1, k;
        char kind[8];

        for (int l = 0; l < m->level_cnt; l++)
                pairs += s->channel ? 3 : 2;
        if (cmd(ck, 5 + 2 * pairs, "SGTRIM", p, "bi:%s", s->name) ||
            arg_i64(ck, cut) || arg_fmt(ck, "sg:{p%d}:", (int)p) ||
            arg_str(ck, s->name) || arg_str(ck, "b") ||
            arg_i64(ck, m->level_ms[0]))
                return -1;
        for (int l = 0; l < m->level_cnt; l++)
                for (k = 0; k < (s->channel ? 3 : 2); k++) {
                        snprintf(kind, sizeof(kind), "%s%s", kinds[k],
                                 m->level_tag[l]);
                        if (arg_str(ck, kind) || arg_i64(ck, m->level_ms[l]))
                                return -1;
                }
        return 0;
}

static int put_scope(ag_ckpt_t *ck, ag_pstate_t *ps, ag_scope_t *s,
                     int64_t xat)
{
        const ag_model_t *m = ck->m;
        int32_t p = ps->id;
        int grew = 0, wrote = 0;
        int64_t cut = ps->st->maxt != INT64_MIN
                          ? cells_cut(m, ps->st->maxt)
                          : INT64_MIN;

        if (s->fresh && (cmd(ck, 3, "SADD", p, "scopes") ||
                         arg_str(ck, s->name)))
                return -1;
        for (int k = 0; k < s->dirty_cnt; k++) {
                const ag_cell_t *c = s->dirty[k];
                int l = cell_level(m, ps->st, s, c);

                /* Past the retention (SGTRIM removed it, or will): not
                 * written again. */
                if (l < 0 || c->start < cut)
                        continue;
                wrote = 1;
                if (l == 0 && c->fresh) {
                        int64_t ws = sg_window_floor(c->start, m->kpi_ms);

                        grew = 1;
                        if (cmd(ck, 4, "ZADD", p, "open") ||
                            arg_i64(ck, ws + m->kpi_ms) ||
                            arg_fmt(ck, "%s|%" PRId64, s->name, ws))
                                return -1;
                }
                if (put_cell(ck, p, s, c, l, xat) == -1)
                        return -1;
        }
        /* The scope forgets its buckets past the retention when it
         * grows; its index outlives every key it lists. */
        if (grew && cut != INT64_MIN && put_trim(ck, p, s, cut) == -1)
                return -1;
        if (wrote && (cmd(ck, 3, "PEXPIREAT", p, "bi:%s", s->name) ||
                      arg_i64(ck, xat)))
                return -1;
        for (int k = 0; k < s->closing.cnt; k++)
                if (cmd(ck, 3, "ZREM", p, "open") ||
                    arg_fmt(ck, "%s|%" PRId64, s->name, s->closing.v[k]))
                        return -1;
        if (!s->win_dirty)
                return 0;
        for (int w = 0; w < m->win_cnt; w++) {
                const ag_wsum_t *ws = &s->win[w];

                if (!ws->e)
                        continue;
                if (cmd(ck, 2 + 4 + 2 * NF, "HSET", p, "w:%s:%s", s->name,
                        m->wins[w].name) ||
                    arg_str(ck, "s") || arg_i64(ck, ws->s) ||
                    arg_str(ck, "e") || arg_i64(ck, ws->e))
                        return -1;
                for (int f = 0; f < NF; f++)
                        if (arg_str(ck, ag_field_names[f]) ||
                            arg_i64(ck, ws->n[f]))
                                return -1;
                if (cmd(ck, 3, "PEXPIREAT", p, "w:%s:%s", s->name,
                        m->wins[w].name) ||
                    arg_i64(ck, xat))
                        return -1;
        }
        return cmd(ck, 4, "HSET", p, "snap") || arg_str(ck, s->name) ||
               arg_i64(ck, s->snap_end);
}

/* SGLOG (checkpoint.lua): each log's records appended up to cap bytes
 * (-1: none), the log listed in the partition's index of its kind, and
 * the logs listed there before cut deleted. */
static int put_logs(ag_ckpt_t *ck, int32_t p, const ag_logs_t *l,
                    const char *kind, int64_t ttl_s, int64_t cap, int rec,
                    int64_t cut)
{
        for (int i = 0; i < l->cnt; i++) {
                const ag_log_t *g = &l->v[i];

                if (!g->len)
                        continue;
                if (cmd(ck, 9, "SGLOG", p, "%s:%" PRId64, kind, g->key) ||
                    arg_bytes(ck, g->buf, g->len) || arg_i64(ck, cap) ||
                    arg_i64(ck, rec) || arg_i64(ck, ttl_s) ||
                    arg_fmt(ck, "sg:{p%d}:%si", (int)p, kind) ||
                    arg_i64(ck, g->key) || arg_i64(ck, cut))
                        return -1;
        }
        return 0;
}

/* The partition's own strings: input offsets and markers, watermark,
 * newest event time. */
static int put_partition(ag_ckpt_t *ck, ag_pstate_t *ps)
{
        int32_t p = ps->id;
        int n = 0;

        for (int i = 0; i < ps->in_cnt; i++)
                n += ps->src_off[i] >= 0 || ps->wmi[i].seen;
        if (n) {
                if (cmd(ck, 2 + 2 * n, "HSET", p, "src"))
                        return -1;
                for (int i = 0; i < ps->in_cnt; i++)
                        if ((ps->src_off[i] >= 0 || ps->wmi[i].seen) &&
                            (arg_str(ck, ck->inputs->name[i]) ||
                             arg_i64(ck, ps->src_off[i])))
                                return -1;
                if (cmd(ck, 2 + 2 * n, "HSET", p, "srct"))
                        return -1;
                for (int i = 0; i < ps->in_cnt; i++)
                        if ((ps->src_off[i] >= 0 || ps->wmi[i].seen) &&
                            (arg_str(ck, ck->inputs->name[i]) ||
                             arg_fmt(ck, "%" PRId64 " %d %d",
                                     ps->wmi[i].event_time,
                                     ps->wmi[i].idle, ps->wmi[i].seen)))
                                return -1;
        }
        if (ps->wm != INT64_MIN &&
            (cmd(ck, 3, "SET", p, "wm") || arg_i64(ck, ps->wm)))
                return -1;
        if (ps->st->maxt != INT64_MIN &&
            (cmd(ck, 3, "SET", p, "maxt") || arg_i64(ck, ps->st->maxt)))
                return -1;
        /* A KPI window that ends past the retention is not kept open for
         * the next owner (its buckets are gone): the watermark's lag does
         * not grow the set. */
        if (ps->st->maxt != INT64_MIN &&
            (cmd(ck, 4, "ZREMRANGEBYSCORE", p, "open") ||
             arg_str(ck, "-inf") ||
             arg_fmt(ck, "(%" PRId64, cells_cut(ck->m, ps->st->maxt))))
                return -1;
        return 0;
}

static int build(ag_ckpt_t *ck, ag_pstate_t *ps)
{
        int64_t xat = sg_now_ms() + ck->m->retention_ms;
        ag_part_t *st = ps->st;

        ck->argc = 0;
        ck->used = 0;
        /* EVALSHA's head first (HEAD_ARGS), so that a pipelined call sends
         * the arguments as they are; sg_redis_eval() makes its own. */
        if (arg_str(ck, "EVALSHA") || arg_str(ck, ck->script.sha) ||
            arg_str(ck, "1") ||
            arg_fmt(ck, "sg:{p%d}:off", (int)ps->id) ||
            arg_i64(ck, ps->sent) || arg_i64(ck, ps->next))
                return -1;
        for (int i = 0; i < st->dirty_cnt; i++)
                if (put_scope(ck, ps, st->dirty[i], xat) == -1)
                        return -1;
        /* The logs the loader reads (from yesterday; click times from
         * click_ttl_s and an hour back, an hour of margin more), at most
         * the records aggregate keeps in memory. */
        if (st->maxt != INT64_MIN &&
            (put_logs(ck, ps->id, &st->fc_log, "fcl", FC_TTL_S,
                      ck->m->max_devices > 0
                          ? 9 * (ck->m->freq_cap + 1) * ck->m->max_devices
                          : -1,
                      9,
                      ag_day_start(ck->m, ag_day_start(ck->m, st->maxt) - 1)) ||
             put_logs(ck, ps->id, &st->ck_log, "ckl",
                      ck->m->click_ttl_ms / 1000 + 3600,
                      ck->m->max_clicks > 0 ? 16 * ck->m->max_clicks : -1, 16,
                      sg_window_floor(st->maxt - ck->m->click_ttl_ms -
                                          2 * HOUR,
                                      HOUR))))
                return -1;
        return put_partition(ck, ps);
}

/* The call's argv from the arena (which may have moved while it grew). */
static int args_ready(ag_ckpt_t *ck, ag_pstate_t *ps)
{
        const char **argv;

        if (build(ck, ps) == -1 || ck->argc <= HEAD_ARGS) {
                sg_error("event=oom what=checkpoint partition=%d", (int)ps->id);
                return -1;
        }
        argv = realloc(ck->argv, ck->argc * sizeof(*argv));
        if (!argv)
                return -1;
        ck->argv = argv;
        for (int i = 0; i < ck->argc; i++)
                argv[i] = ck->arena + ck->off[i];
        return 0;
}

/* What the script's reply r says of a checkpoint of partition f->id
 * fenced at f->from up to f->next. */
static int outcome(ag_ckpt_t *ck, const ag_flight_t *f, const redisReply *r)
{
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
            r->element[0]->type == REDIS_REPLY_INTEGER &&
            r->element[1]->type == REDIS_REPLY_STRING) {
                int64_t cur = strtoll(r->element[1]->str, NULL, 10);

                /* Applied (or applied before a lost reply). */
                if (r->element[0]->integer == 1 ||
                    (cur == f->next && f->next != f->from))
                        return AG_CKPT_OK;
                sg_warn("event=checkpoint_fenced partition=%d "
                        "expected=%" PRId64 " stored=%" PRId64
                        " msg=\"Redis holds another offset (another "
                        "owner, or lost writes): reloading\"",
                        (int)f->id, f->from, cur);
                return AG_CKPT_FENCED;
        }
        if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0)
                ck->script.sha[0] = '\0'; /* loaded again before the next */
        sg_error("event=checkpoint_failed partition=%d err=\"%s\"",
                 (int)f->id,
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        return AG_CKPT_ERROR;
}

static ag_flight_t *flight_add(ag_ckpt_t *ck, const ag_pstate_t *ps)
{
        ag_flight_t *f;

        if (ck->fl_cnt == ck->fl_cap) {
                int cap = ck->fl_cap ? 2 * ck->fl_cap : 16;

                f = realloc(ck->fl, cap * sizeof(*f));
                if (!f)
                        return NULL;
                ck->fl = f;
                ck->fl_cap = cap;
        }
        f = &ck->fl[ck->fl_cnt++];
        f->id = ps->id;
        f->from = ps->sent;
        f->next = ps->next;
        f->rc = AG_CKPT_ERROR;
        f->replied = 0;
        return f;
}

int ag_ckpt_write(ag_ckpt_t *ck, ag_pstate_t *ps)
{
        ag_flight_t f = {ps->id, ps->sent, ps->next, AG_CKPT_ERROR, 1};
        redisReply *r;

        if (args_ready(ck, ps) == -1)
                return AG_CKPT_ERROR;
        r = sg_redis_eval(ck->redis, &ck->script, 1, ck->argc - HEAD_ARGS,
                          ck->argv + HEAD_ARGS, ck->len + HEAD_ARGS);
        if (!r)
                return AG_CKPT_ERROR; /* stopping */
        f.rc = outcome(ck, &f, r);
        freeReplyObject(r);
        if (f.rc == AG_CKPT_OK) {
                ps->off = ps->sent = ps->next;
                ag_part_clean(ps->st);
        }
        return f.rc;
}

int ag_ckpt_send(ag_ckpt_t *ck, ag_pstate_t *ps)
{
        ag_flight_t *f;

        /* A Redis connected to since the script was loaded may have
         * restarted without it: load it again rather than meet NOSCRIPT
         * (which would throw the partitions' state away). */
        if (!ck->script.sha[0] ||
            ck->script_conn != sg_redis_connects(ck->redis)) {
                ck->script_conn = sg_redis_connects(ck->redis);
                sg_redis_script_load(ck->redis, &ck->script);
        }
        if (!(f = flight_add(ck, ps)))
                return -1;
        if (!ck->script.sha[0]) {
                /* Redis refused the script's SHA: one EVAL at a time. */
                f->rc = ag_ckpt_write(ck, ps);
                f->replied = 1;
                return 0;
        }
        if (args_ready(ck, ps) == -1 ||
            sg_redis_append_argv(ck->redis, ck->argc, ck->argv, ck->len) ==
                -1) {
                ck->fl_cnt--;
                return -1;
        }
        ps->sent = ps->next;
        ag_part_clean(ps->st);
        return 0;
}

int ag_ckpt_push(ag_ckpt_t *ck)
{
        return ck->fl_cnt ? sg_redis_pipeline_push(ck->redis) : 1;
}

int ag_ckpt_collect(ag_ckpt_t *ck, ag_flight_t **out)
{
        int n = ck->fl_cnt, broken = 0;

        for (int k = 0; k < n; k++) {
                ag_flight_t *f = &ck->fl[k];
                redisReply *r;

                if (f->replied)
                        continue;
                if (broken || !(r = sg_redis_pipeline_get(ck->redis))) {
                        /* The connection went: what was applied is in
                         * Redis; the caller loads these partitions. */
                        f->rc = AG_CKPT_ERROR;
                        broken = 1;
                        continue;
                }
                f->rc = outcome(ck, f, r);
                freeReplyObject(r);
        }
        if (broken)
                sg_redis_reconnect(ck->redis);
        ck->fl_cnt = 0;
        *out = ck->fl;
        return n;
}

/* ------------------------------------------------------------- loading */

typedef struct loader {
        ag_ckpt_t *ck;
        ag_pstate_t *ps;
        int failed; /* an error reply: load again */
} loader_t;

static redisReply *get(loader_t *ld, int argc, const char **argv)
{
        redisReply *r = sg_redis_argv(ld->ck->redis, argc, argv, NULL);

        if (!r || r->type == REDIS_REPLY_ERROR) {
                if (r)
                        sg_warn("event=load_retry cmd=%s key=%s err=\"%s\"",
                                argv[0], argv[1], r->str);
                ld->failed = 1;
                if (r)
                        freeReplyObject(r);
                return NULL;
        }
        return r;
}

static redisReply *get2(loader_t *ld, const char *c, const char *key)
{
        const char *argv[2] = {c, key};

        return get(ld, 2, argv);
}

static void keyf(char *buf, size_t size, int32_t p, const char *fmt, ...)
{
        int n = snprintf(buf, size, "sg:{p%d}:", (int)p);
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf + n, size - n, fmt, ap);
        va_end(ap);
}

static int load_partition_keys(loader_t *ld, int64_t *base)
{
        ag_pstate_t *ps = ld->ps;
        char key[AG_SCOPE_LEN + 96];
        redisReply *r;

        keyf(key, sizeof(key), ps->id, "off");
        if (!(r = get2(ld, "GET", key)))
                return -1;
        ps->off = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10)
                                                : -1;
        ps->next = ps->sent = ps->off;
        freeReplyObject(r);
        keyf(key, sizeof(key), ps->id, "src");
        if (!(r = get2(ld, "HGETALL", key)))
                return -1;
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
                int k = ag_input_of(ld->ck->inputs, ps, r->element[i]->str);

                if (k >= 0)
                        ps->src_off[k] =
                            strtoll(r->element[i + 1]->str, NULL, 10);
        }
        freeReplyObject(r);
        keyf(key, sizeof(key), ps->id, "srct");
        if (!(r = get2(ld, "HGETALL", key)))
                return -1;
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
                int k = ag_input_of(ld->ck->inputs, ps, r->element[i]->str);
                long long t = INT64_MIN;
                int idle = 0, seen = 0;

                if (k >= 0 && sscanf(r->element[i + 1]->str, "%lld %d %d", &t,
                                     &idle, &seen) >= 1) {
                        ps->wmi[k].event_time = t;
                        ps->wmi[k].idle = idle;
                        ps->wmi[k].seen = seen;
                }
        }
        freeReplyObject(r);
        keyf(key, sizeof(key), ps->id, "wm");
        if (!(r = get2(ld, "GET", key)))
                return -1;
        if (r->type == REDIS_REPLY_STRING)
                ps->wm = strtoll(r->str, NULL, 10);
        freeReplyObject(r);
        keyf(key, sizeof(key), ps->id, "maxt");
        if (!(r = get2(ld, "GET", key)))
                return -1;
        if (r->type == REDIS_REPLY_STRING)
                ps->st->maxt = strtoll(r->str, NULL, 10);
        freeReplyObject(r);
        *base = ps->wm != INT64_MIN ? ps->wm : ps->st->maxt;
        return 0;
}

static int load_scopes(loader_t *ld)
{
        ag_pstate_t *ps = ld->ps;
        char key[AG_SCOPE_LEN + 96];
        redisReply *r;

        keyf(key, sizeof(key), ps->id, "scopes");
        if (!(r = get2(ld, "SMEMBERS", key)))
                return -1;
        for (size_t i = 0; i < r->elements; i++)
                if (!ag_part_scope(ps->st, r->element[i]->str, 1)) {
                        freeReplyObject(r);
                        return -1;
                }
        freeReplyObject(r);
        keyf(key, sizeof(key), ps->id, "snap");
        if (!(r = get2(ld, "HGETALL", key)))
                return -1;
        for (size_t i = 0; i + 1 < r->elements; i += 2) {
                ag_scope_t *s = ag_part_scope(ps->st, r->element[i]->str, 0);
                if (s)
                        s->snap_end = strtoll(r->element[i + 1]->str, NULL, 10);
        }
        freeReplyObject(r);
        return 0;
}

/* Loads the open KPI windows ("<scope>|<start>"). */
static int load_open(loader_t *ld)
{
        ag_pstate_t *ps = ld->ps;
        char key[AG_SCOPE_LEN + 96];
        const char *argv[4] = {"ZRANGE", key, "0", "-1"};
        redisReply *r;

        keyf(key, sizeof(key), ps->id, "open");
        if (!(r = get(ld, 4, argv)))
                return -1;
        for (size_t i = 0; i < r->elements; i++) {
                char *m = r->element[i]->str, *bar = strrchr(m, '|');
                ag_scope_t *s;

                if (!bar)
                        continue;
                *bar = '\0';
                s = ag_part_scope(ps->st, m, 1);
                if (!s || ag_i64s_add(&s->open, strtoll(bar + 1, NULL, 10)) <
                              0) {
                        freeReplyObject(r);
                        return -1;
                }
        }
        freeReplyObject(r);
        return 0;
}

/* Pipelined GETs of one scope's cells and windows. */
typedef struct want {
        int level;
        int64_t start;
        int what; /* 0 counters, 1 u, 2 i, 3 sx, 4 window w */
        int w;
} want_t;

static int load_scope_cells(loader_t *ld, ag_scope_t *s, int64_t from,
                            int64_t day_from)
{
        const ag_model_t *m = ld->ck->m;
        ag_pstate_t *ps = ld->ps;
        char key[AG_SCOPE_LEN + 96], lo[32];
        const char *argv[4] = {"ZRANGEBYSCORE", key, lo, "+inf"};
        redisReply *r;
        want_t *want;
        int nw = 0, cap;
        int64_t first = day_from < from ? day_from : from;

        keyf(key, sizeof(key), ps->id, "bi:%s", s->name);
        snprintf(lo, sizeof(lo), "%" PRId64, first);
        if (!(r = get(ld, 4, argv)))
                return -1;
        cap = (int)r->elements * (4 + 4 * AG_LEVELS) + m->win_cnt + 1;
        want = malloc(cap * sizeof(*want));
        if (!want) {
                freeReplyObject(r);
                return -1;
        }
        for (size_t i = 0; i < r->elements; i++) {
                int64_t b = strtoll(r->element[i]->str, NULL, 10);

                for (int l = 0; l < m->level_cnt; l++) {
                        int64_t c = sg_window_floor(b, m->level_ms[l]);
                        int dup = 0;

                        if (l == 0 && b < from)
                                continue;
                        if (l > 0 && c < sg_window_floor(day_from < from
                                                             ? day_from
                                                             : from,
                                                         m->level_ms[l]))
                                continue;
                        for (int k = nw - 1; k >= 0 && !dup; k--)
                                dup = want[k].level == l &&
                                      want[k].start == c;
                        if (dup)
                                continue;
                        for (int what = l ? 1 : 0; what < 4; what++) {
                                if (what == 3 && !s->channel)
                                        continue;
                                want[nw].level = l;
                                want[nw].start = c;
                                want[nw++].what = what;
                        }
                }
        }
        freeReplyObject(r);
        for (int w = 0; w < m->win_cnt; w++) {
                want[nw].what = 4;
                want[nw].level = 0;
                want[nw].start = 0;
                want[nw++].w = w;
        }
        for (int k0 = 0; k0 < nw && !ld->failed; k0 += LOAD_PIPE) {
                int k1 = k0 + LOAD_PIPE < nw ? k0 + LOAD_PIPE : nw;

                for (int k = k0; k < k1; k++) {
                        const want_t *x = &want[k];
                        const char *tag = m->level_tag[x->level];
                        const char *a[2] = {"GET", key};

                        if (x->what == 0)
                                keyf(key, sizeof(key), ps->id,
                                     "b:%s:%" PRId64, s->name, x->start);
                        else if (x->what == 4)
                                keyf(key, sizeof(key), ps->id, "w:%s:%s",
                                     s->name, m->wins[x->w].name);
                        else
                                keyf(key, sizeof(key), ps->id,
                                     "%s%s:%s:%" PRId64,
                                     x->what == 1   ? "u"
                                     : x->what == 2 ? "i"
                                                    : "sx",
                                     tag, s->name, x->start);
                        if (x->what == 0 || x->what == 4)
                                a[0] = "HGETALL";
                        if (sg_redis_append_argv(ld->ck->redis, 2, a, NULL)) {
                                ld->failed = 1;
                                break;
                        }
                }
                for (int k = k0; k < k1 && !ld->failed; k++) {
                        const want_t *x = &want[k];
                        ag_cell_t *c;

                        r = sg_redis_pipeline_get(ld->ck->redis);
                        if (!r || r->type == REDIS_REPLY_ERROR) {
                                if (r)
                                        freeReplyObject(r);
                                else
                                        sg_redis_reconnect(ld->ck->redis);
                                ld->failed = 1;
                                break;
                        }
                        if (x->what == 4) {
                                ag_wsum_t *ws = &s->win[x->w];

                                for (size_t i = 0; i + 1 < r->elements;
                                     i += 2) {
                                        const char *f = r->element[i]->str;
                                        int64_t v = strtoll(
                                            r->element[i + 1]->str, NULL, 10);

                                        if (!strcmp(f, "s"))
                                                ws->s = v;
                                        else if (!strcmp(f, "e"))
                                                ws->e = v;
                                        for (int j = 0; j < NF; j++)
                                                if (!strcmp(f,
                                                            ag_field_names[j]))
                                                        ws->n[j] = v;
                                }
                                freeReplyObject(r);
                                continue;
                        }
                        if (r->type != REDIS_REPLY_STRING &&
                            !(x->what == 0 && r->elements)) {
                                freeReplyObject(r);
                                continue;
                        }
                        c = ag_scope_cell(ps->st, s, x->level, x->start, 1);
                        if (!c) {
                                freeReplyObject(r);
                                ld->failed = 2;
                                break;
                        }
                        c->fresh = 0;
                        if (x->what == 0) {
                                for (size_t i = 0; i + 1 < r->elements;
                                     i += 2)
                                        for (int j = 0; j < NF; j++)
                                                if (!strcmp(r->element[i]->str,
                                                            ag_field_names[j]))
                                                        c->n[j] = strtoll(
                                                            r->element[i + 1]
                                                                ->str,
                                                            NULL, 10);
                        } else if (x->what == 3) {
                                ag_srcmap_decode(
                                    &c->src, (const unsigned char *)r->str,
                                    r->len);
                        } else {
                                int kind = x->what == 1 ? AG_U : AG_I;

                                if (!c->hll[kind])
                                        c->hll[kind] = sg_hll_new();
                                if (c->hll[kind] &&
                                    sg_hll_decode(c->hll[kind],
                                                  (const unsigned char *)r->str,
                                                  r->len) == -1)
                                        sg_warn("event=bad_hll key=%s "
                                                "msg=\"not a HyperLogLog we "
                                                "read: counted from empty\"",
                                                key);
                        }
                        freeReplyObject(r);
                }
                if (ld->failed)
                        /* Replies still queued: a new connection drops
                         * them. */
                        sg_redis_reconnect(ld->ck->redis);
        }
        free(want);
        return ld->failed ? -1 : 0;
}

/* The frequency-cap counts of the last two days and the click times
 * within aggregate.click_ttl_s. */
static int load_logs(loader_t *ld, int64_t base)
{
        const ag_model_t *m = ld->ck->m;
        ag_part_t *st = ld->ps->st;
        char key[96];
        int64_t day = ag_day_start(m, base);
        int64_t days[3] = {ag_day_start(m, day - 1), day,
                           ag_day_start(m, day + DAY + 2 * HOUR)};

        for (int k0 = 0; k0 < 3; k0++) {
                int64_t d = days[k0];
                redisReply *r;

                keyf(key, sizeof(key), ld->ps->id, "fcl:%" PRId64, d);
                if (!(r = get2(ld, "GET", key)))
                        return -1;
                for (size_t k = 0; r->type == REDIS_REPLY_STRING &&
                                   k + 9 <= (size_t)r->len;
                     k += 9) {
                        const unsigned char *b =
                            (const unsigned char *)r->str + k;
                        uint64_t h = 0;

                        for (int i = 0; i < 8; i++)
                                h |= (uint64_t)b[i] << (8 * i);
                        if (ag_htab_put(&st->fc, h, b[8], d) == -1) {
                                freeReplyObject(r);
                                return -1;
                        }
                        if (d > st->fc_day)
                                st->fc_day = d;
                }
                freeReplyObject(r);
        }
        for (int64_t h0 = sg_window_floor(base - m->click_ttl_ms - HOUR, HOUR);
             h0 <= base + HOUR; h0 += HOUR) {
                redisReply *r;

                keyf(key, sizeof(key), ld->ps->id, "ckl:%" PRId64, h0);
                if (!(r = get2(ld, "GET", key)))
                        return -1;
                for (size_t k = 0; r->type == REDIS_REPLY_STRING &&
                                   k + 16 <= (size_t)r->len;
                     k += 16) {
                        const unsigned char *b =
                            (const unsigned char *)r->str + k;
                        uint64_t h = 0, t = 0;

                        for (int i = 0; i < 8; i++) {
                                h |= (uint64_t)b[i] << (8 * i);
                                t |= (uint64_t)b[8 + i] << (8 * i);
                        }
                        if (ag_htab_put(&st->clicks, h, (int64_t)t,
                                        (int64_t)t) == -1) {
                                freeReplyObject(r);
                                return -1;
                        }
                }
                freeReplyObject(r);
        }
        return 0;
}

static ag_pstate_t *load_once(ag_ckpt_t *ck, int32_t p, int *failed)
{
        const ag_model_t *m = ck->m;
        loader_t ld = {ck, NULL, 0};
        ag_pstate_t *ps = calloc(1, sizeof(*ps));
        int64_t base = INT64_MIN;

        if (!ps)
                return NULL;
        ps->id = p;
        ps->wm = INT64_MIN;
        ps->off = ps->sent = ps->next = ps->first = -1;
        ps->st = ag_part_new(m, p);
        ld.ps = ps;
        if (!ps->st || pstate_inputs(ps, ck->inputs->cnt) == -1)
                goto fail;
        if (load_partition_keys(&ld, &base) || load_scopes(&ld) ||
            load_open(&ld))
                goto fail;
        if (base != INT64_MIN) {
                int64_t from = base - MAX_STEPS * m->snap_ms - m->max_len -
                               m->kpi_ms - m->bucket_ms;
                int64_t day_from = from;

                for (int w = 0; w < m->win_cnt; w++)
                        if (m->wins[w].len_ms == 0) {
                                int64_t d = ag_day_start(m, from);
                                if (d < day_from)
                                        day_from = d;
                        }
                for (size_t i = 0; ps->st->mask && i <= ps->st->mask; i++)
                        if (ps->st->slots[i] &&
                            load_scope_cells(&ld, ps->st->slots[i], from,
                                             day_from))
                                goto fail;
                if (load_logs(&ld, base))
                        goto fail;
        }
        ag_part_clean(ps->st);
        for (size_t i = 0; ps->st->mask && i <= ps->st->mask; i++)
                if (ps->st->slots[i])
                        ps->st->slots[i]->fresh = 0;
        ps->st->horizon = INT64_MIN;
        return ps;
fail:
        *failed = ld.failed ? 1 : -1;
        ag_pstate_destroy(ps);
        return NULL;
}

ag_pstate_t *ag_pstate_load(ag_ckpt_t *ck, int32_t p)
{
        int backoff = 100;

        while (!sg_stop) {
                int failed = 0;
                ag_pstate_t *ps = load_once(ck, p, &failed);

                if (ps)
                        return ps;
                if (failed != 1)
                        return NULL; /* out of memory */
                sg_warn("event=load_retry partition=%d backoff_ms=%d", (int)p,
                        backoff);
                sg_sleep_ms(backoff);
                backoff = backoff < 5000 ? 2 * backoff : 5000;
        }
        return NULL;
}
