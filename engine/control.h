/* control.h -- what steers a run while it trains (pause, quit, checkpoint now, switch the
 * strategy or the micro-batches), and what the run publishes about itself for a view of it.
 *
 * Two sides, usually two threads: the run loop takes requests and applies them between steps,
 * and publishes its state, steps, evaluations, plan in use and events; a view (the dashboard)
 * makes requests and reads a snapshot of the status at its own pace. The control keeps the
 * run's clocks: the time spent in each state goes to its account (pauses, evaluations,
 * training), from which it derives the rate, the active time and the ETA; the snapshot brings
 * those up to date with the clock (dp_now_s, or a test's), so a view between two steps sees
 * the time go on. Every function takes the module's lock
 * for the time of one copy: no caller touches a mutex or condition variable, and any thread may
 * call any function. A signal handler may call none of them (it sets the run's stop flag).
 *
 * A switch goes request -> take -> apply: the view asks for a plan (dp_control_request_switch),
 * the loop takes it before a step (dp_control_take_switch) and reports the plan in use once the
 * step made it (dp_control_switch_applied). A request stays pending until the plan in use
 * reflects it, so a key pressed in between computes its change from it
 * (dp_control_switch_base): fast `+` presses add up. */
#ifndef DP_ENGINE_CONTROL_H
#define DP_ENGINE_CONTROL_H

#include <stdatomic.h>
#include <stdbool.h>

#include "base/shape.h"
#include "engine/advisor.h"
#include "engine/plan.h"

typedef struct dp_control dp_control;

/* What the run is doing. */
typedef enum dp_run_state {
    DP_STATE_STARTING,       /* before its first step */
    DP_STATE_TRAINING,
    DP_STATE_EVALUATING,     /* eval_done of eval_total batches */
    DP_STATE_PAUSED,
    DP_STATE_FINISHED,       /* the loop has ended (see `finished`, `stopped_early`) */
} dp_run_state;

#define DP_RATE_WINDOW_S 10.0 /* samples_per_s is measured over this much training time */
#define DP_EVAL_HISTORY 128   /* evaluations kept (thinned, first and last kept, when more) */

/* One evaluation's result; step < 0: none. */
typedef struct dp_eval_point {
    long step;
    double loss, accuracy;
    bool text;               /* loss / ln 2 is bits per byte */
    bool masked;             /* a masked language model's: loss, bits and accuracy per masked
                                byte of the test split */
    /* A GAN's (objective.h, dp_eval_report): loss and accuracy are D's on the real test split
     * (accuracy the share it judges real), d_real its mean output there, D(x); the Frechet
     * distance and score of `generated` samples (0: no classifier, and both NAN). */
    bool gan;
    double d_real;
    long generated;
    double frechet, score;
} dp_eval_point;

/* A copy of the run's status, for a view to draw. */
typedef struct dp_control_status {
    long step, total_steps, epoch, epochs;
    double loss, lr;
    double samples_per_s;    /* over the last DP_RATE_WINDOW_S s of training (pauses and
                              * evaluations excluded); 0 while paused; frozen at the end */
    double started;          /* CLOCK_MONOTONIC seconds when training began */
    double active_s;         /* seconds since `started` less the pauses; frozen at the end */
    double eta_s;            /* to the last step at the recent rate, with the evaluations still
                              * due at their measured length; < 0: not known yet */
    dp_run_state state;
    long eval_done, eval_total; /* DP_STATE_EVALUATING: batches done of the evaluation's
                                 * (this process's part of the test split) */
    double last_step_end;    /* CLOCK_MONOTONIC seconds when the last step ended, or when
                              * training last resumed after a pause or an evaluation (the later
                              * one): what a view measures a stall from */
    double typical_step_s;   /* the recent steps' median wall time, for finding a stall */
    long skipped;            /* steps whose update a non-finite loss skipped */
    double test_accuracy;    /* of the last evaluation; < 0 before the first */
    long test_step;
    dp_eval_point last_eval, best_eval; /* best: the lowest finite test loss (a GAN's: the
                                         * lowest finite Frechet distance; without quality
                                         * figures none); step < 0: none */
    dp_eval_point evals[DP_EVAL_HISTORY];
    int n_evals;
    long evals_done;         /* evaluations completed in all (evals[] keeps n_evals of them) */
    char exit_checkpoint[256]; /* the checkpoint written as the run ended; "" when none */
    bool stopped_early;      /* finished by q, a signal or an error before the last step */
    char plan[64];           /* "DP x4"; "" before the first step */
    dp_plan_request request; /* the plan in use, as a request */
    bool pipeline;           /* the plan in use has more than one stage */
    char event[160];         /* the last thing that happened, for the event line */
    double event_time;
    bool finished;           /* the loop has ended */
    bool paused, quit;       /* as requested */
    bool can_checkpoint;     /* a checkpoint directory is configured */
    bool advising;           /* the plan advisor is measuring plans (asked, or under way) */
    unsigned long advice_generation; /* tables published so far (dp_control_copy_advice) */
} dp_control_status;

/* A run of total_steps steps in `epochs` epochs; NULL when out of memory. */
dp_control *dp_control_create(long total_steps, long epochs);
void dp_control_destroy(dp_control *c);

/* ---- the view's side: requests and the snapshot ---- */

void dp_control_snapshot(dp_control *c, dp_control_status *out);
/* The plan a new switch request starts from: the pending request, else the plan in use. */
dp_plan_request dp_control_switch_base(dp_control *c);
/* Asks for a plan (already checked against the trainer); replaces a pending one. */
void dp_control_request_switch(dp_control *c, const dp_plan_request *req);
/* Pauses a running loop, or resumes a paused one; returns whether it is now paused. */
bool dp_control_toggle_pause(dp_control *c);
/* Asks the loop to stop after the current step; wakes it when paused. */
void dp_control_request_quit(dp_control *c);
/* Asks for a checkpoint after the current step; false (and no request) when none can be
 * written. */
bool dp_control_request_checkpoint(dp_control *c);

/* ---- the loop's side: taking requests, publishing the run ---- */

void dp_control_set_can_checkpoint(dp_control *c, bool can);
bool dp_control_quit_requested(dp_control *c);
bool dp_control_paused(dp_control *c);
/* Waits up to max_s while the run is paused (and neither a quit nor *stop came). */
void dp_control_wait_while_paused(dp_control *c, const atomic_int *stop, double max_s);
/* Takes the pending switch request into *req, once: true when there was one not taken yet.
 * The request stays the base of new ones until dp_control_switch_applied. */
bool dp_control_take_switch(dp_control *c, dp_plan_request *req);
/* The plan in use is now `in_use` (described as `text`): drops the pending request when it is
 * the one taken last (a newer one stays pending). */
void dp_control_switch_applied(dp_control *c, const dp_plan_request *in_use, const char *text);
/* Whether a checkpoint was asked for (and clears the request). */
bool dp_control_take_checkpoint(dp_control *c);

/* ---- the plan advisor (engine/advisor.h): asked for by a view, run by the loop ---- */

/* Asks the loop to find the fastest plan from the next step on; false (and nothing asked)
 * while a search is asked for or under way. */
bool dp_control_request_advice(dp_control *c);
/* Whether advice was asked for (and clears the request; `advising` stays until the loop
 * publishes the search's table). */
bool dp_control_take_advice(dp_control *c);
/* The loop's search begins (for a search the loop starts itself, as --strategy auto's). */
void dp_control_advice_begins(dp_control *c);
/* Keeps a copy of a search's table as the latest (the search has ended). Returns 0, or -1
 * when out of memory (the previous table stays). */
int dp_control_publish_advice(dp_control *c, const dp_advice_table *t);
/* Copies the latest table into *out when it is newer than *generation (out->c needs room for
 * DP_ADVICE_MAX candidates); returns true when copied. */
bool dp_control_copy_advice(dp_control *c, dp_advice_table *out, unsigned long *generation);

/* The clock every time of the run is read from: dp_now_s() unless set (a test's fake clock);
 * set it before dp_control_begin. */
void dp_control_set_clock(dp_control *c, double (*now)(void *arg), void *arg);

/* What the ETA needs to know of the run besides its steps. */
typedef struct dp_run_schedule {
    long first_step;         /* the step it starts at (a resumed run's checkpoint) */
    long steps_per_epoch;    /* an evaluation follows each epoch's last step ... */
    long eval_every;         /* ... and every eval_every steps (0: none more); and the last */
    long test_samples;       /* for the length of an evaluation before one was measured */
} dp_run_schedule;

/* The loop begins: `started` is now, the state STARTING. */
void dp_control_begin(dp_control *c, const dp_run_schedule *s);

/* One step ended: what it did, for the status, the rate window and the ETA. */
typedef struct dp_control_step {
    long step, epoch;
    double loss, lr;
    int rows;                /* samples of the step (every process's) */
    double seconds;          /* its wall time */
    bool skipped;            /* its update skipped for a non-finite loss */
} dp_control_step;
void dp_control_step_done(dp_control *c, const dp_control_step *s);

/* The loop pauses (DP_STATE_PAUSED) or goes on (DP_STATE_STARTING or DP_STATE_TRAINING). */
void dp_control_set_state(dp_control *c, dp_run_state state);

/* An evaluation of `total` batches begins; `done` of them are done; it ended with *result,
 * or was stopped (result NULL: nothing is recorded). */
void dp_control_eval_begin(dp_control *c, long total);
void dp_control_eval_progress(dp_control *c, long done, long total);
void dp_control_eval_end(dp_control *c, const dp_eval_point *result);

/* ---- a GAN's latest samples: published by the loop's thread, copied by a view ---- */

/* A copy of the samples an evaluation generated from the fixed noise: n images of `shape`
 * (CHW, as dp_eval_report's image_shape) in x[n * dp_shape_count(shape)], values meant to lie
 * in [lo, hi] (lo >= hi: the data's range was not told, see dp_control_set_samples_range). */
typedef struct dp_control_samples {
    unsigned long generation; /* 0: none yet; grows by one with each publication */
    long step;               /* the step the evaluation followed */
    int n;
    dp_shape shape;
    float lo, hi;
    float *x;                /* the copy's own memory (dp_control_samples_free) */
    size_t cap;              /* floats x has room for */
} dp_control_samples;

/* The range the samples' values are meant to lie in (the data's: [-1, 1] or [0, 1]), told
 * once before the run. */
void dp_control_set_samples_range(dp_control *c, float lo, float hi);
/* Keeps a copy of n images x[n * dp_shape_count(shape)] of evaluation `step` as the latest
 * samples (x need stay valid only for the call). Returns 0, or -1 when out of memory (the
 * previous samples stay). */
int dp_control_publish_samples(dp_control *c, long step, const float *x, int n, dp_shape shape);
/* Copies the latest samples into *out when they are newer than out->generation (out starts
 * zeroed; its x grows as needed). Returns 1 when copied, 0 when none newer, -1 when out of
 * memory (out unchanged). */
int dp_control_copy_samples(dp_control *c, dp_control_samples *out);
void dp_control_samples_free(dp_control_samples *s);

/* The loop has ended: stopped_early as in the status; checkpoint: the one written as it
 * ended (NULL or "": none). Freezes the rate and the active time. */
void dp_control_finish(dp_control *c, bool stopped_early, const char *checkpoint);

/* Evaluations still due after step `step` of `total`: after each epoch's last step, every
 * eval_every steps (0: never), and after the last step if none of those is (a pure function,
 * for the ETA). */
long dp_evals_remaining(long step, long total, long steps_per_epoch, long eval_every);
/* Sets the event line (printf-style). */
void dp_control_event(dp_control *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
