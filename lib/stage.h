/*
 * What every stage binary shares: the command line (-c, --help, --version),
 * loading the config (exit 2 with one line on error), logging setup and the
 * stop / reload signals.
 */
#ifndef SG_STAGE_H
#define SG_STAGE_H

#include <signal.h>

#include "conf.h"

/* Set by SIGTERM / SIGINT: finish the batch in hand, commit, exit 0. */
extern volatile sig_atomic_t sg_stop;
/* Set by SIGHUP: reload what can be reloaded. */
extern volatile sig_atomic_t sg_reload;

typedef struct sg_stage_desc {
        const char *name;            /* "ingest" */
        const char *summary;         /* one line for --help */
        const char *const *sections; /* config prefixes for --help */
} sg_stage_desc_t;

/*
 * Parses argv, loads the config into conf, sets up logging and signals.
 * Exits 0 after --help / --version, 2 on a bad argument or config.
 */
void sg_stage_init(const sg_stage_desc_t *desc, int argc, char **argv,
                   sg_conf_t *conf);

/* Installs the SIGTERM/SIGINT/SIGHUP handlers (sg_stage_init does it). */
void sg_stage_signals(void);

/* Wall clock in ms since the epoch; monotonic clock in ms. */
int64_t sg_now_ms(void);
int64_t sg_mono_ms(void);

/* Sleeps ms, waking early when sg_stop is set. */
void sg_sleep_ms(int ms);

#endif
