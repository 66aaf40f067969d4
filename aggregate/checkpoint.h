/*
 * aggregate's checkpoint in Redis (docs/redis-layout.md): per sg.events
 * partition, every aggregate.checkpoint_ms, what changed in the in-memory state
 * (state.h) at (scope, bucket) granularity plus the offsets and watermark
 * inputs that make it exactly once, in one fenced script call
 * (checkpoint.lua); and the state loaded back on assignment.
 */
#ifndef SG_AGG_CHECKPOINT_H
#define SG_AGG_CHECKPOINT_H

#include "redis.h"
#include "state.h"
#include "watermark.h"

#define AG_INPUT_LEN (SG_TOPIC_LEN + 16)

/* Every input partition ("topic/partition") any partition has heard of. */
typedef struct ag_inputs {
        char (*name)[AG_INPUT_LEN];
        int cnt, cap;
        int *slot; /* name hash -> index + 1 (0: empty), open addressing */
        int mask;
} ag_inputs_t;

/* An assigned sg.events partition: its state and where it stands. */
typedef struct ag_pstate {
        int32_t id;
        ag_part_t *st;
        /* What it knows of each input partition, by index into
         * ag_inputs_t: its watermark markers, and the highest input offset
         * applied (-1 none). */
        sg_wm_input_t *wmi;
        int64_t *src_off;
        int in_cnt;
        int64_t off;      /* the checkpoint's next offset; -1 none */
        int64_t sent;     /* the next offset of the last checkpoint sent */
        int64_t next;     /* after the last record applied */
        int64_t first;    /* the first offset read since loaded; -1 none */
        int64_t wm;       /* watermark (never goes back); INT64_MIN none */
        int64_t wm_batch; /* at the start of the batch in hand */
        int in_batch;
        int64_t early_at; /* sg_mono_ms of its last running snapshots */
        int pending; /* changed since its checkpoint */
} ag_pstate_t;

int ag_inputs_add(ag_inputs_t *a, const char *name); /* index, -1 OOM */
void ag_inputs_fini(ag_inputs_t *a);
/* The index of input name, with ps's entries grown to it (added when
 * new); -1 out of memory. */
int ag_input_of(ag_inputs_t *a, ag_pstate_t *ps, const char *name);
/* The same for input partition topic/partition; -1 also when it cannot
 * be named. */
int ag_input_at(ag_inputs_t *a, ag_pstate_t *ps, const char *topic,
                int32_t partition);
/* An event from input i: its offset, and progress up to its time (never
 * past the wall clock now_ms). */
void ag_input_event(ag_pstate_t *ps, int i, int64_t offset,
                    int64_t event_time, int64_t now_ms);
/* The partition's watermark (also raises ps->wm's floor). */
int64_t ag_pstate_watermark(ag_pstate_t *ps, const ag_inputs_t *a,
                            int64_t lateness_ms);
void ag_pstate_destroy(ag_pstate_t *ps);

/* A checkpoint sent: of partition id, fenced at from, up to next. */
typedef struct ag_flight {
        int32_t id;
        int64_t from, next;
        int rc;      /* AG_CKPT_*, once replied */
        int replied; /* written synchronously (no reply to read) */
} ag_flight_t;

typedef struct ag_ckpt {
        sg_redis_t *redis;
        const ag_model_t *m;
        ag_inputs_t *inputs;
        sg_redis_script_t script;
        long long script_conn; /* the connection it was loaded on */
        /* the arguments of one call: bytes, then offsets into them */
        char *arena;
        size_t used, cap;
        size_t *off, *len;
        const char **argv;
        int argc, argcap;
        ag_flight_t *fl; /* the checkpoints sent, their replies not read */
        int fl_cnt, fl_cap;
} ag_ckpt_t;

void ag_ckpt_init(ag_ckpt_t *ck, sg_redis_t *r, const ag_model_t *m,
                  ag_inputs_t *inputs);
void ag_ckpt_fini(ag_ckpt_t *ck);

enum { AG_CKPT_OK, AG_CKPT_FENCED, AG_CKPT_ERROR };

/* Writes what ps changed since its last checkpoint and waits for Redis;
 * on AG_CKPT_OK its state is clean and ps->off is ps->next.
 * AG_CKPT_FENCED: Redis holds another offset (logged); AG_CKPT_ERROR: not
 * written (logged). In both, the caller loads the partition again. */
int ag_ckpt_write(ag_ckpt_t *ck, ag_pstate_t *ps);
/* The same without waiting: the checkpoint is appended to the pipeline,
 * ps's state is clean at once and ps->sent is ps->next; ag_ckpt_push
 * writes what is appended to Redis as far as the socket takes it now
 * (1 all written, 0 call again, -1 connection lost), and Redis runs it
 * while the caller goes on; ag_ckpt_collect reads the outcomes of every checkpoint sent (out:
 * n flights, valid until the next send) and must come before any other
 * use of the connection. -1 from ag_ckpt_send: not sent (out of memory);
 * the caller loads the partition again. */
int ag_ckpt_send(ag_ckpt_t *ck, ag_pstate_t *ps);
int ag_ckpt_push(ag_ckpt_t *ck);
int ag_ckpt_collect(ag_ckpt_t *ck, ag_flight_t **out);

/* Loads partition p from Redis, retrying while Redis answers with errors
 * (LOADING after a restart, say) until it answers or the stage stops
 * (NULL then, or out of memory). */
ag_pstate_t *ag_pstate_load(ag_ckpt_t *ck, int32_t p);

#endif
