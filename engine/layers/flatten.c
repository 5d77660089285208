/* flatten.c -- flatten, nn.Flatten: the same values, seen as one vector per sample (images
 * [C, H, W] to vectors of C * H * W, for linear layers). */
#include "engine/layers/common.h"

static int flatten_infer(dp_layer *l, dp_err *err)
{
    l->out_shape = (dp_shape){ 1, { l->in } };
    l->param_count = 0;
    return 0;
}

static void flatten_forward(const dp_layer *l, const dp_pass *p, const float *params,
                            const float *x, float *y)
{
    p->dev->be->copy(p->dev, y, x, (size_t)p->rows * l->in * sizeof *y);
}

static void flatten_backward(const dp_layer *l, const dp_pass *p, const float *params,
                             float *grads, const float *x, const float *y, const float *dy,
                             float *dx)
{
    if (dx)
        p->dev->be->copy(p->dev, dx, dy, (size_t)p->rows * l->in * sizeof *dx);
}

static double flatten_flops(const dp_layer *l)
{
    return 0.0;
}

const dp_layer_ops dp_layer_flatten = {
    .name = "flatten",
    .usage = "flatten",
    .help = "images [C, H, W] to vectors of C * H * W, for linear layers; nn.Flatten",
    .min_args = 0,
    .max_args = 0,
    .infer = flatten_infer,
    .tensors = dp_layer_no_tensors,
    .init = dp_layer_no_init,
    .forward = flatten_forward,
    .backward = flatten_backward,
    .flops = flatten_flops,
};
