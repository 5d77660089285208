/* dropout.c -- dropout:PERCENT, nn.Dropout: in training, a mask drawn from the run's seed, the
 * step, the layer and each sample's place in the global batch (dp_dropout_scale in kernels.h),
 * so that every strategy draws the same; in evaluation the identity. */
#include "engine/layers/common.h"

static int dropout_infer(dp_layer *l, dp_err *err)
{
    if (l->args[0] >= 100)
        return dp_fail(err, "dropout:%d drops every value; give a percentage below 100",
                       l->args[0]);
    return dp_layer_keep_shape(l, err);
}

/* The mask of a training pass (dp_dropout_scale); evaluation passes have no key. */
static dp_dropout_args dropout_args(const dp_layer *l, const dp_pass *p)
{
    return (dp_dropout_args){ .seed = p->key->seed, .step = (uint64_t)p->key->step,
                              .sample0 = (uint64_t)p->key->sample0, .layer = (uint32_t)l->index,
                              .p = (float)l->args[0] / 100.0f };
}

static void dropout_forward(const dp_layer *l, const dp_pass *p, const float *params,
                            const float *x, float *y)
{
    if (p->key && l->args[0] > 0)
        p->dev->be->dropout(p->dev, y, x, p->rows, l->in, dropout_args(l, p));
    else
        p->dev->be->copy(p->dev, y, x, (size_t)p->rows * l->in * sizeof *y);
}

static void dropout_backward(const dp_layer *l, const dp_pass *p, const float *params,
                             float *grads, const float *x, const float *y, const float *dy,
                             float *dx)
{
    if (dx && p->key && l->args[0] > 0)
        p->dev->be->dropout(p->dev, dx, dy, p->rows, l->in, dropout_args(l, p));
    else if (dx)
        p->dev->be->copy(p->dev, dx, dy, (size_t)p->rows * l->in * sizeof *dx);
}

const dp_layer_ops dp_layer_dropout = {
    .name = "dropout",
    .usage = "dropout:PERCENT",
    .help = "in training, zeroes each value with probability PERCENT / 100 and scales the rest "
            "by 1 / (1 - p); the mask depends only on the seed, the step, the layer and the "
            "sample's place in the global batch, so every strategy draws the same; nn.Dropout",
    .min_args = 1,
    .max_args = 1,
    .infer = dropout_infer,
    .tensors = dp_layer_no_tensors,
    .init = dp_layer_no_init,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .flops = dp_layer_flops_per_value,
};
