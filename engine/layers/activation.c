/* activation.c -- element-wise layers without parameters: relu, gelu (tanh approximation, as
 * nn.GELU(approximate='tanh')), tanh. The math is in kernels.h. */
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

const dp_layer_ops *const dp_layer_kinds[] = {
    &dp_layer_linear, &dp_layer_conv,  &dp_layer_maxpool, &dp_layer_avgpool, &dp_layer_flatten,
    &dp_layer_relu,   &dp_layer_gelu,  &dp_layer_tanh,    &dp_layer_embed,   &dp_layer_pos,
    &dp_layer_ln,     &dp_layer_attn,  &dp_layer_res,     &dp_layer_block,   NULL,
};
