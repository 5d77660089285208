/* activation.c -- element-wise layers without parameters: relu, gelu (tanh approximation, as
 * nn.GELU(approximate='tanh')) and tanh. The math is in kernels.h. */
#include "engine/layers/common.h"

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
    p->dev->be->act_forward(p->dev, act_of(l), 0.0f, y, x, (size_t)p->rows * l->in);
}

static void act_backward(const dp_layer *l, const dp_pass *p, const float *params, float *grads,
                         const float *x, const float *y, const float *dy, float *dx)
{
    if (dx)
        p->dev->be->act_backward(p->dev, act_of(l), 0.0f, dx, x, y, dy, (size_t)p->rows * l->in);
}

#define ACTIVATION_OPS(NAME, HELP)                                                              \
    {                                                                                           \
        .name = NAME, .usage = NAME, .help = HELP, .min_args = 0, .max_args = 0,                \
        .infer = dp_layer_keep_shape, .tensors = dp_layer_no_tensors,                           \
        .init = dp_layer_no_init, .forward = act_forward,                                       \
        .backward = act_backward, .flops = dp_layer_flops_per_value,                            \
    }

const dp_layer_ops dp_layer_relu = ACTIVATION_OPS("relu", "max(x, 0); nn.ReLU");
const dp_layer_ops dp_layer_gelu =
    ACTIVATION_OPS("gelu", "GELU, tanh approximation; nn.GELU(approximate='tanh')");
const dp_layer_ops dp_layer_tanh = ACTIVATION_OPS("tanh", "nn.Tanh");
