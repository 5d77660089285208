/* activation.c -- element-wise layers without parameters: relu, gelu (tanh approximation, as
 * nn.GELU(approximate='tanh')), gelu_erf (the exact one, nn.GELU()), tanh, leakyrelu[:SLOPE] (nn.LeakyReLU) and sigmoid
 * (nn.Sigmoid). The math is in kernels.h. */
#include "engine/layers/common.h"

/* nn.LeakyReLU's default negative_slope. */
#define LEAKY_DEFAULT_SLOPE 0.01

/* Which activation a layer applies, from its ops table. */
static dp_act act_of(const dp_layer *l)
{
    if (l->ops == &dp_layer_gelu)
        return DP_ACT_GELU;
    if (l->ops == &dp_layer_gelu_erf)
        return DP_ACT_GELU_ERF;
    if (l->ops == &dp_layer_tanh)
        return DP_ACT_TANH;
    if (l->ops == &dp_layer_leakyrelu)
        return DP_ACT_LEAKY_RELU;
    if (l->ops == &dp_layer_sigmoid)
        return DP_ACT_SIGMOID;
    return DP_ACT_RELU;
}

/* Leaky ReLU's negative slope as the kernels take it (PyTorch too keeps it as a float for
 * float tensors); 0 for the other activations, which ignore it. */
static float slope_of(const dp_layer *l)
{
    if (l->ops != &dp_layer_leakyrelu)
        return 0.0f;
    return (float)(l->nargs > 0 ? l->reals[0] : LEAKY_DEFAULT_SLOPE);
}

static void act_forward(const dp_layer *l, const dp_pass *p, const float *params, const float *x,
                        float *y)
{
    p->dev->be->act_forward(p->dev, act_of(l), slope_of(l), y, x, (size_t)p->rows * l->in);
}

static void act_backward(const dp_layer *l, const dp_pass *p, const float *params, float *grads,
                         const float *x, const float *y, const float *dy, float *dx)
{
    if (dx)
        p->dev->be->act_backward(p->dev, act_of(l), slope_of(l), dx, x, y, dy,
                                 (size_t)p->rows * l->in);
}

#define ACTIVATION_OPS(NAME, USAGE, MAX_ARGS, HELP)                                             \
    {                                                                                           \
        .name = NAME, .usage = USAGE, .help = HELP, .min_args = 0, .max_args = MAX_ARGS,        \
        .real_args = MAX_ARGS > 0, .infer = dp_layer_keep_shape,                                \
        .tensors = dp_layer_no_tensors, .init = dp_layer_no_init, .forward = act_forward,       \
        .backward = act_backward, .flops = dp_layer_flops_per_value,                            \
    }

const dp_layer_ops dp_layer_relu = ACTIVATION_OPS("relu", "relu", 0, "max(x, 0); nn.ReLU");
const dp_layer_ops dp_layer_gelu = ACTIVATION_OPS(
    "gelu", "gelu", 0, "GELU, tanh approximation; nn.GELU(approximate='tanh')");
const dp_layer_ops dp_layer_gelu_erf = ACTIVATION_OPS(
    "gelu_erf", "gelu_erf", 0, "GELU, exact: x (1 + erf(x / sqrt 2)) / 2; nn.GELU()");
const dp_layer_ops dp_layer_tanh = ACTIVATION_OPS("tanh", "tanh", 0, "nn.Tanh");
const dp_layer_ops dp_layer_leakyrelu =
    ACTIVATION_OPS("leakyrelu", "leakyrelu[:SLOPE]", 1,
                   "x where x > 0, else SLOPE * x; SLOPE is any finite real number such as 0.2 "
                   "(0.01 unless given); nn.LeakyReLU(negative_slope=SLOPE)");
const dp_layer_ops dp_layer_sigmoid =
    ACTIVATION_OPS("sigmoid", "sigmoid", 0, "1 / (1 + exp(-x)); nn.Sigmoid");
