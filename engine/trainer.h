/* trainer.h -- the coordinator: runs training steps and evaluations over the devices.
 *
 * This version drives one device that holds the whole model; the plan, worker and comm
 * modules of the multi-device engine plug in behind the same calls. */
#ifndef DP_TRAINER_H
#define DP_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "datasets/dataset.h"
#include "engine/metrics.h"
#include "engine/model.h"
#include "engine/optim.h"

typedef enum dp_on_nan { DP_NAN_STOP, DP_NAN_SKIP } dp_on_nan;

typedef struct dp_trainer_config {
    const dp_model *model;
    dp_optim_config optim;
    int batch;
    bool shuffle;
    uint64_t seed;
    long total_steps;   /* for the LR schedule */
    dp_on_nan on_nan;
    int blas_threads;   /* 0 = every core */
} dp_trainer_config;

/* What one step did. */
typedef struct dp_step_report {
    long step;          /* 1-based count of steps taken, this one included */
    long epoch;         /* 1-based epoch this step's batch came from */
    bool epoch_end;     /* this step took the last batch of its epoch */
    int rows;           /* samples in the batch */
    double loss;        /* mean over the batch, as nn.CrossEntropyLoss */
    double lr;
    double grad_norm;   /* global gradient norm before clipping (0 when clipping is off) */
    bool skipped;       /* non-finite loss with on_nan = skip: no update */
    double seconds;     /* wall time of the step */
} dp_step_report;

typedef struct dp_eval_report {
    long samples;
    double loss;        /* mean cross-entropy over the test split */
    double accuracy;    /* fraction classified correctly */
} dp_eval_report;

typedef struct dp_trainer dp_trainer;

/* Places the model on the device and sets its parameters: init[n_params] when given (from
 * --init), else the seeded default initialisation. */
dp_trainer *dp_trainer_create(const dp_trainer_config *c, const dp_dataset *train,
                              const dp_dataset *test, const float *init, dp_err *err);
void dp_trainer_destroy(dp_trainer *t);

/* Takes one step. Fails (-1) on a non-finite loss when on_nan = stop. */
int dp_trainer_step(dp_trainer *t, dp_step_report *r, dp_err *err);

/* Evaluates the current parameters on the whole test split. */
void dp_trainer_evaluate(dp_trainer *t, dp_eval_report *r);

/* Batches per epoch. */
long dp_trainer_steps_per_epoch(const dp_trainer *t);

/* Copies the current parameters into host[n_params] in the model's flat layout. */
void dp_trainer_get_params(dp_trainer *t, float *host);

/* The run's devices, and their metrics (published after every step). */
int dp_trainer_device_count(const dp_trainer *t);
dp_device *dp_trainer_device(dp_trainer *t, int i);
dp_metrics *dp_trainer_metrics(dp_trainer *t);

#endif
