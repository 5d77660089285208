/* layernorm.c -- ln, nn.LayerNorm over the last dimension (of sequences [T, D], or of any
 * samples); it keeps each position's mean and 1 / std from forward to backward. */
#include "engine/layer.h"

static int last_dim(const dp_layer *l)
{
    return l->in_shape.d[l->in_shape.ndim - 1];
}

static int ln_infer(dp_layer *l, dp_err *err)
{
    l->out_shape = l->in_shape;
    l->param_count = 2 * (size_t)last_dim(l);
    l->saved = 2 * (size_t)(l->in / last_dim(l)); /* mean and 1 / std per position */
    return 0;
}

static int ln_tensors(const dp_layer *l, dp_tensor_info out[DP_MAX_LAYER_TENSORS])
{
    int d = last_dim(l);
    out[0] = (dp_tensor_info){ "weight", 1, { d }, 0, (size_t)d, false, false, false };
    out[1] = (dp_tensor_info){ "bias", 1, { d }, (size_t)d, (size_t)d, false, false, false };
    return 2;
}

/* nn.LayerNorm's init: weight 1, bias 0. */
static void ln_init(const dp_layer *l, float *params, uint64_t seed)
{
    int d = last_dim(l);
    for (int i = 0; i < d; i++) {
        params[i] = 1.0f;
        params[d + i] = 0.0f;
    }
}

static void ln_forward(const dp_layer *l, const dp_pass *p, const float *params, const float *x,
                       float *y)
{
    int d = last_dim(l);
    p->dev->be->layernorm_forward(p->dev, y, p->saved, x, params, params + d,
                                  p->rows * (l->in / d), d);
}

static void ln_backward(const dp_layer *l, const dp_pass *p, const float *params, float *grads,
                        const float *x, const float *y, const float *dy, float *dx)
{
    int d = last_dim(l);
    p->dev->be->layernorm_backward(p->dev, dx, grads, grads + d, dy, x, p->saved, params,
                                   p->rows * (l->in / d), d, p->accumulate);
}

static double ln_flops(const dp_layer *l)
{
    return 8.0 * l->in;
}

const dp_layer_ops dp_layer_ln = {
    .name = "ln",
    .usage = "ln",
    .help = "layer normalisation over the last dimension; nn.LayerNorm",
    .min_args = 0,
    .max_args = 0,
    .infer = ln_infer,
    .tensors = ln_tensors,
    .init = ln_init,
    .forward = ln_forward,
    .backward = ln_backward,
    .flops = ln_flops,
};
