/* trainer.h -- the coordinator: runs training steps and evaluations over the devices, and
 * switches strategy between steps.
 *
 * All calls are made from one thread (the training loop's), except these, which any thread may
 * call: dp_trainer_check_switch and dp_trainer_request_switch; dp_trainer_device_count,
 * dp_trainer_device (its name, model and bus id, fixed once made) and dp_trainer_metrics (read
 * under its locks), for the dashboard and the monitor. */
#ifndef DP_TRAINER_H
#define DP_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "datasets/dataset.h"
#include "engine/checkpoint.h"
#include "engine/devices.h"
#include "engine/metrics.h"
#include "engine/model.h"
#include "engine/objective.h"
#include "engine/optim.h"
#include "engine/plan.h"

typedef enum dp_on_nan { DP_NAN_STOP, DP_NAN_SKIP } dp_on_nan;

typedef struct dp_trainer_config {
    const dp_model *model;
    dp_optim_config optim;
    int batch;
    bool shuffle;
    uint64_t seed;
    long total_steps;   /* for the LR schedule */
    dp_on_nan on_nan;
    dp_device_set *devices; /* the devices to train on: borrowed, and destroyed by whoever
                               made them, after the trainer (devices.h) */
    bool data_on_device; /* copy the data sets to GPU devices with room for them */
    dp_plan_request plan;
    double bucket_mb;   /* all-reduce bucket size (PyTorch DDP's default is 25) */
    bool balance_by_time; /* pipeline stages by each layer's measured time (else FLOPs) */
    int team_threads;   /* a worker's OpenMP team (its GEMMs, convolutions and large
                           kernels); 0 = the cores divided among the workers */
    /* Continuing from a checkpoint: where it stood, and its optimizer state
     * [state_per_param][n_params] (its parameters come as `init`); NULL: from the start. */
    const dp_train_state *resume;
    const float *resume_state;
    /* A GAN's evaluation (engine/gan.h): the quality of `quality_samples` generated samples
     * against the test split in the feature space of a classifier (engine/quality.h), when
     * one is given: its model and parameters [classifier->n_params]; samples are mapped from
     * [range_lo, range_hi] (the data's range) to [0, 1] first. */
    const dp_model *classifier;
    const float *classifier_params;
    long quality_samples;
    float range_lo, range_hi;
} dp_trainer_config;

/* What one step did. */
typedef struct dp_step_report {
    long step;          /* 1-based count of steps taken, this one included */
    long epoch;         /* 1-based epoch this step's batch came from */
    bool epoch_end;     /* this step took the last batch of its epoch */
    int rows;           /* samples in the batch */
    double loss;        /* mean over the batch, as nn.CrossEntropyLoss (a GAN: D's loss, the
                           mean over the real samples plus the mean over the fakes, as
                           errD in PyTorch's DCGAN example) */
    /* a GAN's step: G's loss (the non-saturating one, through the updated D), and D's mean
     * sigmoid output on the real batch, D(x), and on the fakes before and after D's update,
     * D(G(z)); grad_norm is D's, grad_norm_g G's */
    bool gan;
    bool masked;       /* a masked language model's: loss is over the chosen positions */
    double loss_g, d_real, d_fake, d_fake_after, grad_norm_g;
    double lr;
    double grad_norm;   /* global gradient norm before clipping */
    bool skipped;       /* non-finite loss with on_nan = skip: no update */
    char nonfinite[160]; /* then: where the values went non-finite */
    double seconds;     /* wall time of the step (a switch before it excluded) */
    /* a switch made before this step */
    bool switched;
    bool switch_failed; /* the step failed before it began: the switch asked for could not be
                           made (the old plan goes on) */
    char switch_from[64], switch_to[64];
    double switch_seconds;
    char batch_stats[160]; /* when the switch changes the samples batch normalisation
                              normalises over: "batch normalisation now over ..., not ..."; ""
                              otherwise */
    char batch_stats_short[48]; /* the same in a few words, for the dashboard's event line */
} dp_step_report;

typedef struct dp_trainer dp_trainer;

/* Makes the plan on c->devices and sets the parameters: init[n_params] when given (from
 * --init), else the seeded default initialisation. A plan that cannot be made is refused with
 * *plan_refused set (bad usage, rather than a failure of the run). */
dp_trainer *dp_trainer_create(const dp_trainer_config *c, const dp_dataset *train,
                              const dp_dataset *test, const float *init, bool *plan_refused,
                              dp_err *err);
void dp_trainer_destroy(dp_trainer *t);

/* Whether the plan of `req` can be made for this model, batch and device count (err says why
 * not); any thread may ask. */
int dp_trainer_check_switch(const dp_trainer *t, const dp_plan_request *req, dp_err *err);
/* Asks for another strategy from the next step on; fails at once when that plan cannot be
 * made. */
int dp_trainer_request_switch(dp_trainer *t, const dp_plan_request *req, dp_err *err);

/* The plan req makes here, with its pipeline stages cut as a switch to it would cut them (by
 * the layers' measured times when the configuration asks: measured now if not yet, as
 * dp_trainer_layer_costs does), and the
 * bytes it would hold on each device, bytes[device count]: the data kept there and its team's
 * stages and links (dp_team_bytes). What the engine's accounting would show as each device's
 * mem_plan_peak under it. Collective under mpirun (the layers' times). */
int dp_trainer_plan_bytes(dp_trainer *t, const dp_plan_request *req, dp_plan *p, size_t *bytes,
                          dp_err *err);
/* Each layer's measured forward plus backward seconds on device 0 into *cost ([n_layers]), the
 * rows and GEMM threads they were measured with; *cost NULL when the model did not fit device
 * 0 to be measured. Measured now, for passes of a whole batch, if no pipeline plan measured
 * them yet: the plan in use is taken down meanwhile (as a switch does), so that the devices
 * hold only the profile. Fails (err) only when the plan cannot be started again. Collective
 * under mpirun. */
int dp_trainer_layer_costs(dp_trainer *t, const double **cost, int *rows, int *threads,
                           dp_err *err);
/* The OpenMP team a CPU device's operations get when a plan has `workers` workers. */
int dp_trainer_team_threads(const dp_trainer *t, int workers);

/* Takes one step (making a requested switch first). Fails (-1) on a non-finite loss when
 * on_nan = stop, when a requested switch could not allocate (the old plan then goes on), or
 * when a device reports a failure (a CUDA error). */
int dp_trainer_step(dp_trainer *t, dp_step_report *r, dp_err *err);

/* How an evaluation is watched, and stopped. */
#define DP_EVAL_PARTS 20
typedef struct dp_eval_watch {
    /* Called before the first part (done 0) and after each: `done` of `total` batches of this
     * process's part of the test split; returns true to stop the evaluation there. NULL: none. */
    bool (*progress)(void *arg, long done, long total);
    void *arg;
    int parts;          /* the evaluation's parts (at most one a batch); 0: DP_EVAL_PARTS */
} dp_eval_watch;

/* Evaluates the current parameters on the whole test split, in parts (w may be NULL): what r
 * holds is the model objective's report (dp_eval_report in objective.h), the same whatever the
 * parts. Under mpirun every process stops at the same part when any process's progress asks
 * (each calls it the same number of times). Returns false, with r untouched, when stopped
 * before the discriminator's figures of a GAN (after them: r holds those). */
bool dp_trainer_evaluate(dp_trainer *t, const dp_eval_watch *w, dp_eval_report *r);

/* A GAN's generator in evaluation on n latent vectors of `purpose` (kernels.h:
 * DP_NOISE_FIXED, _EVAL, _GENERATE), samples [sample0, sample0 + n) of it: their images into
 * out [n, image values], in the data's range. */
void dp_trainer_generate(dp_trainer *t, uint64_t purpose, long sample0, long n, float *out);

/* A model that is not a GAN, in evaluation (no dropout; batch normalisation's running
 * statistics), on n rows x [n, layer 0's inputs]: its last layer's outputs into
 * out [n, outputs] (a language model's logits: a language model's --generate and --fill). */
void dp_trainer_forward(dp_trainer *t, const float *x, long n, float *out);

/* The model trained, and the global batch. */
const dp_model *dp_trainer_model(const dp_trainer *t);
int dp_trainer_batch(const dp_trainer *t);

/* Batches per epoch. */
long dp_trainer_steps_per_epoch(const dp_trainer *t);

/* Copies the current parameters into host[n_params] in the model's flat layout. */
void dp_trainer_get_params(dp_trainer *t, float *host);
/* Where the run stands (for a checkpoint): steps and updates done, the data position of the
 * next batch, the plan. */
void dp_trainer_train_state(const dp_trainer *t, dp_train_state *ts);
/* Copies the parameters into params[n_params] and the optimizer state into
 * state[state_per_param][n_params]. */
void dp_trainer_get_state(dp_trainer *t, float *params, float *state);

/* The plan in use: its description ("DP x4"), its strategy's name ("dp"), and itself as a
 * request with every default filled in (the stages and micro-batches it has). */
void dp_trainer_describe(const dp_trainer *t, char *buf, size_t size);
const char *dp_trainer_strategy(const dp_trainer *t);
/* What batch normalisation normalises over under the current plan ("the whole batch of 64",
 * "8 micro-batches of 8"), or "" for a model without it. */
void dp_trainer_batch_stats(const dp_trainer *t, char *buf, size_t size);
dp_plan_request dp_trainer_request(const dp_trainer *t);

/* The run's devices, and their metrics (published after every step). */
int dp_trainer_device_count(const dp_trainer *t);
dp_device *dp_trainer_device(dp_trainer *t, int i);
dp_metrics *dp_trainer_metrics(dp_trainer *t);

#endif
