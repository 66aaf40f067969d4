/*
 * The state aggregate keeps in memory for each sg.events partition it is
 * assigned, as a Kafka Streams state store or Flink keyed state: per scope
 * ("<channel>|" or "<channel>|<campaign>") the bucket counters, the unique
 * device and IP HyperLogLogs and the clicks per source (per bucket, and per
 * minute and hour where a window reads them), the running sums of the
 * rolling windows and the KPI windows not yet final; per partition the
 * frequency-cap counts and the click times. No Kafka, no Redis: the stage
 * (aggregate.c) feeds it events, asks it for snapshots and final windows,
 * and writes what changed to Redis as the partition's checkpoint
 * (checkpoint.c). docs/redis-layout.md has the layout, docs/aggregate.md
 * the memory bound.
 */
#ifndef SG_AGG_STATE_H
#define SG_AGG_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "hll.h"
#include "tz.h"
#include "window.h"

#define AG_SCOPE_LEN (2 * SG_NAME_LEN)
#define AG_LEVELS    3 /* bucket, minute, hour */

/* The counters of a bucket, in the order of the b: hash's fields. */
enum {
        F_IMPRESSIONS,
        F_CLICKS,
        F_CONVERSIONS,
        F_SPEND,
        F_REVENUE,
        F_INVALID_CLICKS,
        F_INVALID_IMPRESSIONS,
        F_INVALID_SPEND,
        F_IVT_BOT_UA, /* the four reasons, in SG_IVT_* bit order */
        F_IVT_NO_UA,
        F_IVT_DC_IP,
        F_IVT_DUP_CLICK,
        F_FREQ_CAP,
        F_CTC_10S,
        F_CTC_1M,
        F_CTC_1H,
        F_CTC_GE_1H,
        F_NO_CLICK,
        F_UNTRACKED,
        NF
};
extern const char *const ag_field_names[NF];

enum { AG_U, AG_I }; /* the HyperLogLogs of a cell: devices, IPs */

/* What a cell changed since the last checkpoint. */
#define AG_D_N   0x1
#define AG_D_U   0x2
#define AG_D_I   0x4
#define AG_D_SRC 0x8

typedef struct ag_srcmap ag_srcmap_t;

/* One bucket (level 0) or one minute or hour (levels 1, 2) of a scope. */
typedef struct ag_cell {
        int64_t start;
        int64_t n[NF]; /* level 0 only */
        sg_hll_t *hll[2];
        ag_srcmap_t *src; /* channel scopes, once a click came */
        uint8_t dirty;
        uint8_t fresh;  /* not in Redis yet: its keys get a TTL */
        uint8_t listed; /* on its scope's dirty list */
} ag_cell_t;

typedef struct ag_cells {
        ag_cell_t **v; /* by start, ascending */
        int cnt, cap;
} ag_cells_t;

/* The running sums of a rolling window over [s, e); e == 0: none. */
typedef struct ag_wsum {
        int64_t s, e;
        int64_t n[NF];
} ag_wsum_t;

typedef struct ag_i64s {
        int64_t *v;
        int cnt, cap;
} ag_i64s_t;

typedef struct ag_scope {
        char name[AG_SCOPE_LEN];
        uint64_t fc_seed; /* ag_hash's state after the name and separator */
        int channel; /* "<channel>|" */
        ag_cells_t lv[AG_LEVELS];
        ag_wsum_t win[SG_MAX_WINDOWS];
        int64_t snap_end;  /* end of the last rolling snapshots; 0 none */
        ag_i64s_t open;    /* KPI window starts with data, not final */
        ag_i64s_t closing; /* final windows sent, to drop from open */
        ag_cell_t **dirty;
        int dirty_cnt, dirty_cap;
        uint8_t fresh;     /* not in sg:{pN}:scopes yet */
        uint8_t win_dirty; /* w: and snap to write */
        uint8_t listed;    /* on the partition's dirty list */
        uint8_t run_dirty; /* changed since its last running snapshots */
} ag_scope_t;

/* What the model is configured with (from the aggregate section). */
typedef struct ag_model {
        int64_t bucket_ms, snap_ms, kpi_ms, tz_ms, click_ttl_ms, retention_ms;
        int freq_cap, max_sources, max_scopes;
        int64_t max_clicks; /* click times kept per partition */
        int64_t max_devices; /* frequency-cap pairs per partition */
        sg_window_def_t wins[SG_MAX_WINDOWS];
        int win_cnt;
        char kpi_name[SG_WINDOW_LEN];
        int64_t level_ms[AG_LEVELS];
        const char *level_tag[AG_LEVELS];
        int level_cnt; /* levels kept (bucket first), as the windows read */
        int64_t max_len; /* the longest fixed window, or the KPI window */
        const sg_tz_t *tz; /* aggregate.tz (NULL: the fixed tz_ms) */
} ag_model_t;

/* The first instant of the account-time-zone day holding t (ms). */
int64_t ag_day_start(const ag_model_t *m, int64_t t);

/* Fills m from the config values; -1 with errstr on a bad window list. */
int ag_model_init(ag_model_t *m, int bucket_s, const char *windows,
                  int snapshot_s, int kpi_window_s, int tz_offset_min,
                  int freq_cap, int click_ttl_s, int retention_s,
                  int max_sources, int max_scopes, int64_t max_clicks,
                  char *errstr, size_t errstr_size);

/* A record appended to a log key per batch: frequency-cap counts by day,
 * click times by hour. */
typedef struct ag_log {
        int64_t key; /* the day or hour (ms) */
        unsigned char *buf;
        size_t len, cap;
} ag_log_t;

typedef struct ag_logs {
        ag_log_t *v;
        int cnt, cap;
} ag_logs_t;

/* An open-addressing table of 64-bit hashes and values. A slot's key,
 * value and aux share one cache line: a probe of a big table (the
 * frequency cap's) misses once, not three times. */
typedef struct ag_hent {
        uint64_t key; /* 0 = empty */
        int64_t val;
        int64_t aux;
} ag_hent_t;

typedef struct ag_htab {
        ag_hent_t *e;
        size_t mask, cnt;
} ag_htab_t;

typedef struct ag_part {
        const ag_model_t *m;
        int32_t id;
        ag_scope_t **slots; /* by name, open addressing */
        size_t mask, scope_cnt;
        ag_scope_t **dirty;
        int dirty_cnt, dirty_cap;
        ag_htab_t fc;     /* hash(scope, device) ^ day -> impressions */
        ag_htab_t clicks; /* hash(click id) -> click time */
        ag_logs_t fc_log, ck_log;
        int64_t fc_day;     /* the newest day the frequency cap counted */
        int64_t overflow;   /* entries mapped to an _other scope */
        int64_t evicted_clicks;
        int64_t maxt;       /* newest event time applied; INT64_MIN none */
        int64_t horizon;    /* cells before it are gone */
} ag_part_t;

ag_part_t *ag_part_new(const ag_model_t *m, int32_t id);
void ag_part_destroy(ag_part_t *p);

/* Adds one accepted event (the caller checked it is not late): 0, or -1
 * out of memory. */
int ag_part_apply(ag_part_t *p, const sg_event_t *ev);

/*
 * The snapshots of the rolling windows the watermark wm completed (every
 * scope, each step of aggregate.snapshot_s up to wm, at most MAX_STEPS
 * behind) and the KPI windows it closed, through emit. Returns the count,
 * or -1 if emit failed (then the caller reloads the partition).
 */
typedef int(ag_emit_fn)(void *opaque, const sg_snapshot_t *s);
int ag_part_emit(ag_part_t *p, int64_t wm, ag_emit_fn *emit, void *opaque);

/*
 * The running snapshots: for every scope changed since its last ones, the
 * windows in the bit mask wins (bit w: the model's window w) that end at
 * the snapshot step after the newest event time applied (held back to
 * now, so a forged future timestamp cannot move them), with what has been
 * applied so far. Nothing when the watermark wm already completed that
 * step (the snapshots of ag_part_emit cover it), nor for a step that ended
 * live_ms or more before now: a partition catching up on old records
 * (a replay, a backlog) is judged on complete windows only, so that it
 * decides the same whatever its batches were. A running snapshot has
 * window_end > watermark; a complete one never does. Returns the count, or
 * -1 if emit failed.
 */
int ag_part_emit_running(ag_part_t *p, int64_t wm, int64_t now,
                         int64_t live_ms, unsigned wins, ag_emit_fn *emit,
                         void *opaque);

/* Drops the cells, click times and frequency-cap days nothing can read any
 * more at watermark wm. */
void ag_part_evict(ag_part_t *p, int64_t wm);

/* Heap bytes held (the memory bound's measure). */
size_t ag_part_memory(const ag_part_t *p);

/* ---- for the checkpoint (checkpoint.c) */
ag_scope_t *ag_part_scope(ag_part_t *p, const char *name, int create);
ag_cell_t *ag_scope_cell(ag_part_t *p, ag_scope_t *s, int level,
                         int64_t start, int create);
void ag_part_clean(ag_part_t *p); /* forgets dirty flags and closing */
int ag_log_add(ag_logs_t *l, int64_t key, const void *rec, size_t len);
void ag_logs_clear(ag_logs_t *l);
int ag_i64s_add(ag_i64s_t *a, int64_t v); /* sorted, no duplicates */
int ag_htab_put(ag_htab_t *t, uint64_t key, int64_t val, int64_t aux);
int64_t *ag_htab_get(ag_htab_t *t, uint64_t key);

/* Source maps: (source, clicks). */
int ag_srcmap_add(ag_srcmap_t **m, const char *src, size_t len, int64_t n);
size_t ag_srcmap_encode(const ag_srcmap_t *m, unsigned char **out);
int ag_srcmap_decode(ag_srcmap_t **m, const unsigned char *buf, size_t len);
int64_t ag_srcmap_trim(ag_srcmap_t *m, int max); /* clicks dropped */

uint64_t ag_hash(const void *a, size_t alen, const void *b, size_t blen);

#endif
