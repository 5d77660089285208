/* dashboard.h -- the interactive mode: a live ncurses view of the run, and keys that steer it.
 *
 * The training loop runs on its own thread and reports through a dp_run_status; the dashboard
 * runs on the main thread, the only one that touches ncurses, and reads the status and the
 * engine's metrics at its own pace. Hand-off: the status's fields are read and written under
 * its lock only; the training loop waits on `changed` while paused. */
#ifndef DP_TUI_DASHBOARD_H
#define DP_TUI_DASHBOARD_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "engine/monitor.h"
#include "engine/plan.h"
#include "engine/trainer.h"

typedef struct dp_run_status {
    pthread_mutex_t lock;
    pthread_cond_t changed;  /* signalled when paused or quit change */
    /* written by the training loop */
    long step, total_steps, epoch, epochs;
    double loss, lr, samples_per_s; /* samples_per_s: over the recent steps */
    double started;          /* CLOCK_MONOTONIC seconds when training began */
    double test_accuracy;    /* of the last evaluation; < 0 before the first */
    long test_step;
    char plan[64];           /* "DP x4" */
    dp_plan_request request; /* the plan in use, as a request (for keys that change it) */
    bool pipeline;           /* the plan has more than one stage */
    char event[160];         /* the last thing that happened, for the event line */
    double event_time;
    bool finished;           /* the loop has ended */
    /* written by the dashboard */
    bool paused;
    bool quit;
    bool checkpoint;         /* c: write a checkpoint after the current step (the loop clears it) */
    bool switch_asked;       /* a key asked for switch_to (checked; the loop takes it) */
    dp_plan_request switch_to;
    bool can_checkpoint;     /* set by the loop: a checkpoint directory is configured */
} dp_run_status;

void dp_run_status_init(dp_run_status *s, long total_steps, long epochs);
void dp_run_status_destroy(dp_run_status *s);
/* Sets the event line (printf-style), under the lock. */
void dp_run_status_event(dp_run_status *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* What the header shows and how the dashboard draws. */
typedef struct dp_dashboard_info {
    const char *version;
    const char *run_name;
    const char *data_name;   /* "fashion-mnist train" */
    long samples;
    const char *model;       /* the layer list */
    size_t params;
    int refresh_ms;
    bool color;              /* dashboard.color, and no NO_COLOR in the environment */
    dp_monitor *monitor;     /* the other processes' devices under mpirun, or NULL */
    /* The terminal: -1 for stdin and stdout; under mpirun the launcher's, whose foreground
     * job the dashboard becomes while it runs (keys and Ctrl-C come to it). */
    int tty;
} dp_dashboard_info;

/* Runs the dashboard until the user quits (q or F10) or *stop is set by a signal, and the
 * training loop has finished (or 3 s after the signal when it is stuck; under mpirun at once,
 * as the signal may be the launcher ending the run). Restores the terminal before returning. Returns 0, or -1 when
 * the terminal cannot be used (with a message on stderr). */
int dp_dashboard_run(dp_trainer *t, dp_run_status *st, const dp_dashboard_info *info,
                     atomic_int *stop);

/* Gives the terminal back as it was before the dashboard (settings, cursor, main screen)
 * without ncurses, from a signal handler about to _exit; does nothing when no dashboard runs.
 * Async-signal-safe. */
void dp_dashboard_restore_terminal(void);

#endif
