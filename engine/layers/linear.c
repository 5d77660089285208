/* linear.c -- fully connected layer, as torch.nn.Linear: y = x W^T + b,
 * W [out, in] ("weight"), b [out] ("bias"), over a sample's last dimension: a vector, or each
 * position of a sequence [T, D]. Images are flattened first, as the MLPs on Fashion-MNIST
 * always had it. Here l->in and l->out are the widths of that dimension; a
 * pass covers rows * positions of them. */
#include <math.h>

#include "engine/layer.h"
#include "base/rng.h"

static int linear_infer(dp_layer *l, dp_err *err)
{
    if (l->args[0] < 1)
        return dp_fail(err, "linear:%d: the output width must be at least 1", l->args[0]);
    if (l->in_shape.ndim == 3) /* images are taken flattened (as after nn.Flatten) */
        l->in_shape = (dp_shape){ 1, { l->in } };
    l->out_shape = l->in_shape;
    l->out_shape.d[l->in_shape.ndim - 1] = l->args[0];
    int in = l->in_shape.d[l->in_shape.ndim - 1];
    l->param_count = dp_size_add(dp_size_mul(l->args[0], in), l->args[0]);
    return 0;
}

/* Rows of a pass, and the widths of the dimension the layer acts on. */
static int linear_rows(const dp_layer *l, const dp_pass *p, int *in, int *out)
{
    *in = l->in_shape.d[l->in_shape.ndim - 1];
    *out = l->args[0];
    return p->rows * (l->in / *in);
}

static int linear_tensors(const dp_layer *l, dp_tensor_info out[DP_MAX_LAYER_TENSORS])
{
    int in = l->in_shape.d[l->in_shape.ndim - 1];
    size_t nw = (size_t)l->args[0] * (size_t)in;
    out[0] = (dp_tensor_info){ "weight", 2, { l->args[0], in }, 0, nw, false, false, false };
    out[1] = (dp_tensor_info){ "bias", 1, { l->args[0] }, nw, (size_t)l->args[0],
                               false, false, false };
    return 2;
}

/* nn.Linear's reset_parameters: kaiming_uniform_(a = sqrt(5)) gives the bound
 * sqrt(6 / ((1 + a^2) fan_in)) = 1 / sqrt(fan_in), the same bound the bias uses. */
static void linear_init(const dp_layer *l, float *params, uint64_t seed)
{
    dp_rng r = dp_rng_stream(seed, DP_RNG_INIT, (uint64_t)l->index);
    double bound = 1.0 / sqrt((double)l->in_shape.d[l->in_shape.ndim - 1]);
    for (size_t i = 0; i < l->param_count; i++)
        params[i] = (float)((2.0 * dp_rng_uniform(&r) - 1.0) * bound);
}

static void linear_forward(const dp_layer *l, const dp_pass *p, const float *params,
                           const float *x, float *y)
{
    const dp_backend *be = p->dev->be;
    int in, out, rows = linear_rows(l, p, &in, &out);
    const float *w = params, *b = params + (size_t)out * in;
    if (rows == 0) /* an empty shard or micro-batch (a short last batch) */
        return;
    be->linear(p->dev, rows, out, in, x, w, b, y, p->then_relu);
}

static void linear_backward(const dp_layer *l, const dp_pass *p, const float *params,
                            float *grads, const float *x, const float *y, const float *dy,
                            float *dx)
{
    const dp_backend *be = p->dev->be;
    int in, out, rows = linear_rows(l, p, &in, &out);
    float *dw = grads, *db = grads + (size_t)out * in;
    float beta = p->accumulate ? 1.0f : 0.0f;
    if (rows == 0) { /* no samples: a zero gradient */
        if (!p->accumulate)
            be->zero(p->dev, grads, l->param_count * sizeof(float));
        return;
    }
    /* dW [out, in] = dy^T [out, rows] x [rows, in] */
    be->gemm(p->dev, 1, 0, out, in, rows, 1.0f, dy, out, x, in, beta, dw, in);
    be->sum_rows(p->dev, db, dy, rows, out, p->accumulate);
    /* dx [rows, in] = dy [rows, out] W [out, in] */
    if (dx)
        be->gemm(p->dev, 0, 0, rows, in, out, 1.0f, dy, out, params, in, 0.0f, dx, in);
}

static double linear_flops(const dp_layer *l)
{
    return 2.0 * (double)l->in * l->args[0];
}

const dp_layer_ops dp_layer_linear = {
    .name = "linear",
    .usage = "linear:OUT",
    .help = "fully connected, OUT outputs (on each position of a sequence); nn.Linear",
    .min_args = 1,
    .max_args = 1,
    .infer = linear_infer,
    .tensors = linear_tensors,
    .init = linear_init,
    .forward = linear_forward,
    .backward = linear_backward,
    .flops = linear_flops,
};
