/* flatten.c -- flatten, nn.Flatten: the same values, seen as one vector per sample (images
 * [C, H, W] to vectors of C * H * W, for linear layers); and unflatten:C:H:W,
 * nn.Unflatten(1, (C, H, W)), the other way (a generator's vectors to images, for deconv).
 * Both copy: NCHW images and vectors hold their values in the same order. */
#include <stdio.h>

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

/* Reads vectors of C * H * W values as images [C, H, W]. */
static int unflatten_infer(dp_layer *l, dp_err *err)
{
    int c = l->args[0], h = l->args[1], w = l->args[2];
    if (c < 1 || h < 1 || w < 1)
        return dp_fail(err, "unflatten:%d:%d:%d: the channels, height and width must be at "
                            "least 1", c, h, w);
    size_t chw = dp_size_mul(dp_size_mul((size_t)c, (size_t)h), (size_t)w);
    if (l->in_shape.ndim != 1) {
        const int *d = l->in_shape.d;
        char got[64];
        if (l->in_shape.ndim == 3)
            snprintf(got, sizeof got, "images [%d, %d, %d]", d[0], d[1], d[2]);
        else
            snprintf(got, sizeof got, "sequences [%d, %d]", d[0], d[1]);
        return dp_fail(err, "unflatten:%d:%d:%d needs vectors of C * H * W = %zu values as "
                            "input, but gets %s; put it after a linear layer (or flatten)",
                       c, h, w, chw, got);
    }
    if (chw != (size_t)l->in)
        return dp_fail(err, "unflatten:%d:%d:%d gets vectors of %d values, but C * H * W = %zu; "
                            "make the layer before it linear:%zu",
                       c, h, w, l->in, chw, chw);
    l->out_shape = (dp_shape){ 3, { c, h, w } };
    l->param_count = 0;
    return 0;
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

const dp_layer_ops dp_layer_unflatten = {
    .name = "unflatten",
    .usage = "unflatten:C:H:W",
    .help = "vectors of C * H * W values to images [C, H, W], for deconv and conv layers; "
            "nn.Unflatten(1, (C, H, W))",
    .min_args = 3,
    .max_args = 3,
    .infer = unflatten_infer,
    .tensors = dp_layer_no_tensors,
    .init = dp_layer_no_init,
    .forward = flatten_forward,
    .backward = flatten_backward,
    .flops = flatten_flops,
};
