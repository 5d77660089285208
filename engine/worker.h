/* worker.h -- the thread that drives one device for one plan.
 *
 * A team is the set of workers of a plan. The coordinator posts a command to the whole team
 * through its gate and waits until every worker has carried it out; in between, workers talk
 * only to each other (links between pipeline stages, all-reduce among replicas of a stage).
 *
 * Hand-off: everything a command points at (the batch in host memory, host parameter vectors)
 * belongs to the workers from dp_team_run until it returns; a worker's result is written by
 * that worker only, and read by the coordinator after dp_team_run returns. The devices' metrics
 * slots are written by the coordinator, in dp_team_wait after an UPDATE: every device's figures
 * over one wall time (the STEP's posting to the last update's end); workers set only their
 * slot's activity. */
#ifndef DP_WORKER_H
#define DP_WORKER_H

#include <stdbool.h>

#include "datasets/dataset.h"
#include "engine/comm.h"
#include "engine/gan.h"
#include "engine/link.h"
#include "engine/metrics.h"
#include "engine/optim.h"
#include "engine/plan.h"
#include "engine/schedule.h"
#include "engine/stage.h"

typedef enum dp_cmd_kind {
    DP_CMD_STEP,    /* forward, loss, backward and the gradient all-reduce of one batch */
    DP_CMD_UPDATE,  /* the optimizer step, then publish metrics */
    DP_CMD_EVAL,    /* forward-only over a labelled split: the objective's sums */
    DP_CMD_GATHER,  /* copy parameters and optimizer state out to host vectors */
    DP_CMD_SCATTER, /* copy them in */
    DP_CMD_DIAGNOSE, /* after a non-finite loss or gradient: where the values went bad */
    DP_CMD_GENERATE, /* a GAN's generator, in evaluation, on noise: its images to the host;
                        or a model, in evaluation, on host rows: its outputs to the host */
    DP_CMD_QUIT,
} dp_cmd_kind;

/* The data sets copied to a device (when they fit; trainer.c decides), so that a batch is
 * gathered there from its samples' indices instead of gathered on the host and uploaded. */
typedef struct dp_resident {
    float *train_x, *test_x;   /* [n, features] */
    int32_t *train_y, *test_y; /* [n] */
    int32_t *idx;              /* [batch]: the indices of the micro-batch being loaded */
} dp_resident;

typedef struct dp_cmd {
    dp_cmd_kind kind;
    /* STEP */
    const float *x;        /* [rows, features] the global batch (NULL with resident data) */
    const int32_t *y;      /* [rows] (NULL with resident data) */
    const int32_t *idx;    /* [rows] its samples' indices in the training set */
    int rows;              /* this process's rows of the global batch ... */
    int batch_rows;        /* ... of these (every process's) */
    long first_row;        /* where this process's rows start in it */
    long step;             /* 1-based, for the metrics */
    dp_pass_kind pass;     /* what the pass runs (a GAN's passes: engine/gan.h); EVAL too */
    bool continues;        /* a later pass of the step (the first starts its timing) */
    /* UPDATE */
    dp_model_part part;    /* the layers updated */
    bool mid_step;         /* a pass of the step follows (a GAN's D update): no metrics yet */
    double lr;
    float clip_factor;     /* gradients are multiplied by this first (1: no clipping) */
    long t;                /* 1-based count of updates, AdamW's bias correction */
    bool skip;             /* a non-finite loss with on_nan = skip: no update */
    const double *replica_loss; /* [replicas]: each replica's mean loss, for the metrics */
    /* EVAL */
    const dp_dataset *data;
    long data_first, data_rows; /* the samples of it to evaluate (this process's part) */
    /* GENERATE: rows of noise of purpose noise_purpose for samples [sample0, sample0 + rows)
     * of it, each replica its share, the generator's images into out [rows, image values];
     * with x (a model that is not a GAN), the rows x [rows, layer 0's inputs] instead, the
     * last layer's outputs into out [rows, outputs] */
    uint64_t noise_purpose;
    long sample0;
    float *out;
    /* GATHER / SCATTER */
    float *params;         /* [n_params] */
    float *state;          /* [state_per_param][n_params] */
} dp_cmd;

/* What a worker reports for a command. */
typedef struct dp_worker_result {
    double stats[DP_OBJECTIVE_STATS]; /* last stage: the objective's sums over its samples;
                                         stats[0] is the summed loss (classify: stats[1] the
                                         correctly classified targets) */
    double grad_sumsq; /* replica 0: sum of squared gradients of its stage */
    /* DIAGNOSE: the first layer (a model index) whose weights or last output are not finite,
     * and which of the two; the last layer whose gradient is not finite; -1 where none */
    int bad_forward, bad_backward;
    bool bad_weights;
    int failed;        /* set with err when the worker could not set up */
    dp_err err;
} dp_worker_result;

typedef struct dp_team dp_team;

/* Everything a team needs besides its plan. */
typedef struct dp_team_config {
    const dp_model *model;
    const dp_optim_config *optim;
    dp_device *devices;     /* the run's devices; the plan uses the first plan->workers */
    int batch;              /* rows of a full global batch */
    double bucket_mb;       /* all-reduce bucket size */
    dp_metrics *metrics;    /* one slot per device */
    const dp_resident *resident; /* [devices]: the data sets on each device, or NULL */
    uint64_t seed;          /* the run's seed (dropout's masks) */
} dp_team_config;

/* Starts one worker per device of the plan; each allocates its stage. Fails (with the first
 * worker's message) when a device cannot hold its part. */
dp_team *dp_team_start(const dp_plan *plan, const dp_team_config *c, dp_err *err);
/* Stops the workers and frees what they held. */
void dp_team_stop(dp_team *t);
/* The bytes a team of `plan` allocates on each of its devices (bytes[plan->workers]): each
 * worker's stage and the pipeline links it receives on. What dp_team_start would take on
 * c->devices (which must be set: a layer's scratch depends on its device's library). */
void dp_team_bytes(const dp_plan *plan, const dp_team_config *c, size_t *bytes);

/* Runs a command on every worker and waits for all of them. */
void dp_team_run(dp_team *t, const dp_cmd *cmd);
/* The same in two halves, so the coordinator can work while the team does: post, then wait.
 * (A one-worker team carries the command out inside dp_team_post.) */
void dp_team_post(dp_team *t, const dp_cmd *cmd);
void dp_team_wait(dp_team *t);
/* The result of worker i for the last command. */
const dp_worker_result *dp_team_result(const dp_team *t, int i);

/* Role of worker i: replica and stage. */
void dp_team_role(const dp_team *t, int i, int *replica, int *stage);

#endif
