/* optim.h -- optimizers (SGD, AdamW), learning-rate schedules and gradient clipping, with
 * PyTorch's semantics. Updates run on the device through the backend table. */
#ifndef DP_OPTIM_H
#define DP_OPTIM_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/backend.h"

typedef enum dp_optim_kind { DP_OPTIM_SGD, DP_OPTIM_ADAMW } dp_optim_kind;
/* Their names ([optim] kind), indexed by dp_optim_kind, NULL-terminated. */
extern const char *const dp_optim_names[];
typedef enum dp_lr_schedule { DP_LR_CONSTANT, DP_LR_COSINE } dp_lr_schedule;

typedef struct dp_optim_config {
    dp_optim_kind kind;
    double lr;
    double momentum;     /* SGD */
    bool nesterov;       /* SGD */
    double weight_decay; /* SGD: L2 added to the gradient; AdamW: decoupled */
    double beta1, beta2, eps; /* AdamW */
    long warmup;         /* steps of linear warm-up from lr / warmup to lr */
    dp_lr_schedule schedule;
    double clip;         /* maximum global gradient norm; 0 = no clipping */
} dp_optim_config;

/* PyTorch's defaults: SGD lr 0.01, no momentum; AdamW betas (0.9, 0.999), eps 1e-8. */
dp_optim_config dp_optim_defaults(void);

/* Floats of optimizer state per parameter: SGD 1 with momentum (else 0), AdamW 2. */
size_t dp_optim_state_per_param(const dp_optim_config *c);
/* The names of those floats, as the keys of PyTorch's optimizer state ("momentum_buffer";
 * "exp_avg", "exp_avg_sq"). */
const char *const *dp_optim_state_names(const dp_optim_config *c);

/* The learning rate of step `step` (0-based) of `total` steps: linear warm-up over the first
 * `warmup` steps (lr * (step + 1) / warmup), then constant or cosine decay to 0 at `total`. */
double dp_optim_lr(const dp_optim_config *c, long step, long total);

/* PyTorch's clip_grad_norm_: the factor max_norm / (norm + 1e-6) when that is below 1, else 1. */
double dp_optim_clip_factor(const dp_optim_config *c, double grad_norm);

/* One update of n parameters p from gradients g with their state: state_per_param blocks
 * `stride` floats apart (SGD momentum; AdamW m then v), n of each at state + k * stride. t is
 * the 1-based update count. */
void dp_optim_update(const dp_optim_config *c, dp_device *d, float *p, const float *g,
                     float *state, size_t n, size_t stride, long t, double lr);

#endif
