/* headless.h -- the batch mode: a progress line, evaluations, a summary, and metrics as JSON
 * Lines, for scripts and terminals alike. */
#ifndef DP_APP_HEADLESS_H
#define DP_APP_HEADLESS_H

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>

#include "engine/trainer.h"
#include "tui/dashboard.h"

/* --switch-at: from step `step` on, train with `plan`. */
typedef struct dp_switch_at {
    long step;
    dp_plan_request plan;
} dp_switch_at;

typedef struct dp_headless_opts {
    long total_steps;
    long eval_every;          /* 0: at the end of each epoch only */
    const dp_switch_at *switches; /* in increasing step order */
    int n_switches;
    FILE *out;                /* progress, evaluations, summary; NULL under the dashboard */
    int out_is_tty;           /* redraw the progress line in place */
    FILE *metrics;            /* JSON Lines, or NULL */
    atomic_int *stop;         /* set by a signal handler: finish the step and stop */
    dp_run_status *status;    /* the dashboard's view of the run, or NULL */
    /* Checkpoints (NULL: none): write_checkpoint(arg, t, path, size, err) after every
     * checkpoint_every steps (0: never on a schedule), when the dashboard asks, and when the
     * run ends, stopped or not. */
    int (*write_checkpoint)(void *arg, dp_trainer *t, char *path, size_t size, dp_err *err);
    void *checkpoint_arg;
    long checkpoint_every;
    double watchdog_s;        /* under mpirun: end the run after this long without progress */
} dp_headless_opts;

/* What the run ended with. */
typedef struct dp_headless_result {
    long steps;
    long first_step;          /* the step this session started at (a resumed run's checkpoint) */
    double seconds;
    double final_loss;
    double test_accuracy;     /* of the last evaluation; -1 when none ran */
    double samples_per_s;     /* training samples over step time (evaluations excluded) */
    int interrupted;          /* stopped early by a signal */
    int quit;                 /* stopped early by the dashboard's q */
    int failed;               /* stopped by an error (a non-finite loss, a full disk) */
} dp_headless_result;

/* Trains until total_steps or a stop request (a signal, or the dashboard's quit). Returns 0, or
 * -1 with err filled when the run failed (a non-finite loss with on_nan = stop). */
int dp_headless_run(dp_trainer *t, const dp_headless_opts *o, dp_headless_result *res,
                    dp_err *err);

/* Prints the summary line and the per-device table to out. */
void dp_headless_print_summary(dp_trainer *t, const dp_headless_result *res, FILE *out);

#endif
