/* optim.c -- SGD and AdamW updates, LR schedule, clipping. */
#include "engine/optim.h"

#include <math.h>

const char *const dp_optim_names[] = { "sgd", "adamw", NULL };

dp_optim_config dp_optim_defaults(void)
{
    return (dp_optim_config){
        .kind = DP_OPTIM_SGD,
        .lr = 0.01,
        .beta1 = 0.9,
        .beta2 = 0.999,
        .eps = 1e-8,
        .schedule = DP_LR_CONSTANT,
    };
}

size_t dp_optim_state_per_param(const dp_optim_config *c)
{
    if (c->kind == DP_OPTIM_ADAMW)
        return 2;
    return c->momentum != 0.0 ? 1 : 0;
}

const char *const *dp_optim_state_names(const dp_optim_config *c)
{
    static const char *const sgd[] = { "momentum_buffer" }; /* PyTorch's state keys */
    static const char *const adamw[] = { "exp_avg", "exp_avg_sq" };
    return c->kind == DP_OPTIM_ADAMW ? adamw : sgd;
}

double dp_optim_lr(const dp_optim_config *c, long step, long total)
{
    if (step < c->warmup)
        return c->lr * (double)(step + 1) / (double)c->warmup;
    if (c->schedule == DP_LR_CONSTANT || total <= c->warmup)
        return c->lr;
    double progress = (double)(step - c->warmup) / (double)(total - c->warmup);
    return c->lr * 0.5 * (1.0 + cos(M_PI * progress));
}

double dp_optim_clip_factor(const dp_optim_config *c, double grad_norm)
{
    if (c->clip <= 0.0)
        return 1.0;
    double f = c->clip / (grad_norm + 1e-6);
    return f < 1.0 ? f : 1.0;
}

void dp_optim_update(const dp_optim_config *c, dp_device *d, float *p, const float *g,
                     float *state, size_t n, size_t stride, long t, double lr)
{
    if (c->kind == DP_OPTIM_ADAMW) {
        dp_adamw_args a = {
            .lr = (float)lr,
            .beta1 = (float)c->beta1,
            .beta2 = (float)c->beta2,
            .eps = (float)c->eps,
            .weight_decay = (float)c->weight_decay,
            .one_minus_beta1 = (float)(1.0 - c->beta1),
            .one_minus_beta2 = (float)(1.0 - c->beta2),
            .bias_correction1 = (float)(1.0 - pow(c->beta1, (double)t)),
            .bias_correction2 = (float)(1.0 - pow(c->beta2, (double)t)),
        };
        d->be->adamw_step(d, p, g, state, state + stride, n, a);
    } else {
        dp_sgd_args a = {
            .lr = (float)lr,
            .momentum = (float)c->momentum,
            .weight_decay = (float)c->weight_decay,
            .nesterov = c->nesterov,
        };
        d->be->sgd_step(d, p, g, state, n, a);
    }
}
