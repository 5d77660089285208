/* run_loop.h -- the training loop of both modes: steps, evaluations, switches, checkpoints, and
 * the control's requests between steps, told to observers as they happen.
 *
 * Threads: the loop runs on the caller's thread (the main one headless, a thread of its own
 * under the dashboard); its observers are called on that thread, in their order in the
 * options. What it shares with other threads goes through the dp_control (requests in, the
 * plan in use out) and the stop flag a signal handler sets. */
#ifndef DP_APP_RUN_LOOP_H
#define DP_APP_RUN_LOOP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>

#include "engine/control.h"
#include "engine/trainer.h"

/* --switch-at: from step `step` on, train with `plan`. */
typedef struct dp_switch_at {
    long step;
    dp_plan_request plan;
} dp_switch_at;

/* What the run ended with. */
typedef struct dp_run_result {
    long steps;
    long first_step;          /* the step this session started at (a resumed run's checkpoint) */
    double seconds;
    double final_loss;        /* a GAN's: D's */
    bool gan;                 /* a GAN's run: final_loss_g is G's */
    bool masked;              /* a masked language model's: final_loss is over masked bytes */
    double final_loss_g;
    double active_s;          /* seconds less the pauses */
    double test_accuracy;     /* of the last evaluation; -1 when none ran */
    double test_loss;         /* of the last evaluation */
    bool test_text;           /* its loss / ln 2 is bits per byte */
    bool test_masked;         /* ... per masked byte (a masked language model's) */
    long test_step;           /* the step it followed */
    bool test_gan;            /* a GAN's: its discriminator's loss and share judged real, */
    long test_generated;      /* ... and the quality of this many samples (0: none) */
    double test_frechet, test_score;
    double samples_per_s;     /* training samples over step time (evaluations excluded) */
    int interrupted;          /* stopped early by a signal */
    int quit;                 /* stopped early by the dashboard's q */
    int failed;               /* stopped by an error (a non-finite loss, a full disk) */
    bool eval_stopped;        /* an evaluation was stopped by q or a signal (it reported
                               * nothing); the run then counts as stopped early */
    char checkpoint[4200];    /* the checkpoint holding the run's end ("": none) */
} dp_run_result;

/* Where the run is, beside a step's report, for observers that show progress. */
typedef struct dp_run_progress {
    long total_steps, epochs;
    long first_step;          /* as in dp_run_result */
    double started;           /* dp_now_s() when the loop began */
    double mean_rate;         /* samples/s over all step time so far */
    double recent_rate;       /* samples/s over the last DP_RATE_WINDOW_S s of training */
    double eta_s;             /* the control's ETA (engine/control.h); < 0: not known */
} dp_run_progress;

/* Something that happened beside steps and evaluations. */
typedef enum dp_run_event_kind {
    DP_RUN_SKIPPED,           /* a non-finite loss: the step's update was skipped (step) */
    DP_RUN_SWITCHED,          /* the step began with a switch (step) */
    DP_RUN_CHECKPOINT,        /* a checkpoint was written (path, ms) */
    DP_RUN_ADVICE,            /* the plan advisor's search ended (advice; step: the last it
                                 measured) */
} dp_run_event_kind;

typedef struct dp_run_event {
    dp_run_event_kind kind;
    long step;
    const dp_step_report *step_report; /* SKIPPED, SWITCHED */
    const char *path;                  /* CHECKPOINT */
    double ms;                         /* CHECKPOINT: how long writing it took */
    const dp_advice_table *advice;     /* ADVICE */
} dp_run_event;

/* An observer of the loop: any hook may be NULL. `finished` gets the loop's status (0, or -1
 * with err filled). */
typedef struct dp_run_observer {
    void *arg;
    void (*event)(void *arg, const dp_run_event *e);
    void (*step_done)(void *arg, dp_trainer *t, const dp_step_report *r,
                      const dp_run_progress *p);
    void (*eval_done)(void *arg, const dp_step_report *r, const dp_eval_report *e);
    void (*finished)(void *arg, dp_trainer *t, const dp_run_result *res, int rc,
                     const dp_err *err);
} dp_run_observer;

enum { DP_RUN_MAX_OBSERVERS = 4 };

typedef struct dp_run_loop_opts {
    long total_steps;
    long eval_every;          /* 0: at the end of each epoch only */
    long test_samples;        /* the test split's (for the ETA before an evaluation ran) */
    const dp_switch_at *switches; /* in increasing step order */
    int n_switches;
    atomic_int *stop;         /* set by a signal handler: finish the step and stop */
    dp_control *control;      /* pause, quit, switch and checkpoint requests; the run's state,
                               * steps, rates, evaluations and end, published by the loop */
    /* Checkpoints (NULL: none): write_checkpoint(arg, t, path, size, err) after every
     * checkpoint_every steps (0: never on a schedule), when the control asks, and when the
     * run ends, stopped or not. */
    int (*write_checkpoint)(void *arg, dp_trainer *t, char *path, size_t size, dp_err *err);
    void *checkpoint_arg;
    long checkpoint_every;
    double watchdog_s;        /* under mpirun: end the run after this long without progress */
    /* The plan advisor (engine/advisor.h): search before the first step (--strategy auto),
     * and whenever the control asks; bn_micro_ok: it may try pipelines whose micro-batches
     * batch normalisation normalises on their own ([parallel] auto_bn_micro). */
    bool advise;
    bool advise_bn_micro_ok;
    int advise_plans;         /* plans measured at most ([parallel] auto_plans; 0: all) */
    dp_run_observer observers[DP_RUN_MAX_OBSERVERS];
    int n_observers;
} dp_run_loop_opts;

/* Adds an observer to o (at most DP_RUN_MAX_OBSERVERS). */
void dp_run_observe(dp_run_loop_opts *o, dp_run_observer obs);

/* Trains until total_steps or a stop request (a signal, or the control's quit). Returns 0, or
 * -1 with err filled when the run failed (a non-finite loss with on_nan = stop). */
int dp_run_loop(dp_trainer *t, const dp_run_loop_opts *o, dp_run_result *res, dp_err *err);

#endif
