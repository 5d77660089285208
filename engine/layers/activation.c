/* activation.c -- element-wise layers without parameters: relu, gelu (tanh approximation, as
 * nn.GELU(approximate='tanh')), tanh, and dropout. The math is in kernels.h. */
#include "engine/layer.h"

static int act_infer(dp_layer *l, dp_err *err)
{
    l->out_shape = l->in_shape;
    l->param_count = 0;
    return 0;
}

static int act_tensors(const dp_layer *l, dp_tensor_info out[DP_MAX_LAYER_TENSORS])
{
    return 0;
}

static void act_init(const dp_layer *l, float *params, uint64_t seed)
{
}

/* Which activation a layer applies, from its ops table. */
static dp_act act_of(const dp_layer *l)
{
    if (l->ops == &dp_layer_gelu)
        return DP_ACT_GELU;
    if (l->ops == &dp_layer_tanh)
        return DP_ACT_TANH;
    return DP_ACT_RELU;
}

static void act_forward(const dp_layer *l, const dp_pass *p, const float *params, const float *x,
                        float *y)
{
    p->dev->be->act_forward(p->dev, act_of(l), y, x, (size_t)p->rows * l->in);
}

static void act_backward(const dp_layer *l, const dp_pass *p, const float *params, float *grads,
                         const float *x, const float *y, const float *dy, float *dx)
{
    if (dx)
        p->dev->be->act_backward(p->dev, act_of(l), dx, x, y, dy, (size_t)p->rows * l->in);
}

static double act_flops(const dp_layer *l)
{
    return (double)l->in;
}

#define ACTIVATION_OPS(NAME, HELP)                                                              \
    {                                                                                           \
        .name = NAME, .usage = NAME, .help = HELP, .min_args = 0, .max_args = 0,                \
        .infer = act_infer, .tensors = act_tensors, .init = act_init, .forward = act_forward,   \
        .backward = act_backward, .flops = act_flops,                                           \
    }

const dp_layer_ops dp_layer_relu = ACTIVATION_OPS("relu", "max(x, 0); nn.ReLU");
const dp_layer_ops dp_layer_gelu =
    ACTIVATION_OPS("gelu", "GELU, tanh approximation; nn.GELU(approximate='tanh')");
const dp_layer_ops dp_layer_tanh = ACTIVATION_OPS("tanh", "nn.Tanh");

/* ---- dropout:PERCENT ---- */

static int dropout_infer(dp_layer *l, dp_err *err)
{
    if (l->args[0] >= 100)
        return dp_fail(err, "dropout:%d drops every value; give a percentage below 100",
                       l->args[0]);
    return act_infer(l, err);
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
    .tensors = act_tensors,
    .init = act_init,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .flops = act_flops,
};

const dp_layer_ops *const dp_layer_kinds[] = {
    &dp_layer_linear, &dp_layer_conv,  &dp_layer_maxpool, &dp_layer_avgpool, &dp_layer_flatten,
    &dp_layer_relu,   &dp_layer_gelu,  &dp_layer_tanh,    &dp_layer_embed,   &dp_layer_pos,
    &dp_layer_ln,     &dp_layer_attn,  &dp_layer_dropout, &dp_layer_res,     &dp_layer_block,
    NULL,
};
