/* conv.c -- the window layers over images [C, H, W], which share their window geometry: conv
 * (torch.nn.Conv2d), maxpool and avgpool (nn.MaxPool2d, nn.AvgPool2d; avgpool with no numbers
 * is nn.AdaptiveAvgPool2d(1)). flatten, which takes images to vectors, is in flatten.c.
 *
 * A convolution runs through the backend's library (oneDNN, cuDNN: dp_device_conv_library),
 * or else as a product per sample: W [OUT, C * K * K] times the sample's patch matrix
 * [C * K * K, P] (P = output positions) gives its output [OUT, P], NCHW as it stands; then the
 * bias per channel. Samples go through in chunks, so that the patch matrices of a chunk stay
 * within CHUNK_FLOATS. The second way is also the reference the tests hold the first to. */
#include <math.h>

#include "engine/layers/common.h"
#include "base/rng.h"

#define CHUNK_FLOATS ((size_t)8 << 20) /* 32 MB of patches at a time */

static int need_image(const dp_layer *l, dp_err *err)
{
    if (l->in_shape.ndim != 3)
        return dp_fail(err, "%s needs images [channels, height, width] as input, but gets %s "
                            "of %d values; it belongs before flatten and linear layers",
                       l->ops->name, l->in_shape.ndim == 1 ? "vectors" : "sequences", l->in);
    return 0;
}

/* The window geometry of a conv or pool layer on its input. */
static dp_conv_geom geom_of(const dp_layer *l)
{
    dp_conv_geom g = { .c = l->in_shape.d[0], .h = l->in_shape.d[1], .w = l->in_shape.d[2] };
    if (l->ops == &dp_layer_conv) {
        g.kh = g.kw = l->args[1];
        g.sh = g.sw = l->nargs > 2 ? l->args[2] : 1;
        g.ph = g.pw = l->nargs > 3 ? l->args[3] : 0;
    } else if (l->nargs == 0) { /* global average */
        g.kh = g.sh = g.h;
        g.kw = g.sw = g.w;
    } else {
        g.kh = g.kw = l->args[0];
        g.sh = g.sw = l->nargs > 1 ? l->args[1] : l->args[0];
    }
    g.oh = (g.h + 2 * g.ph - g.kh) / g.sh + 1;
    g.ow = (g.w + 2 * g.pw - g.kw) / g.sw + 1;
    return g;
}

/* Checks the window against the input and sets the output shape. */
static int window_infer(dp_layer *l, int out_channels, dp_err *err)
{
    if (need_image(l, err) < 0)
        return -1;
    bool conv = l->ops == &dp_layer_conv;
    for (int a = conv ? 1 : 0; a < l->nargs && a < (conv ? 3 : 2); a++)
        if (l->args[a] < 1)
            return dp_fail(err, "the kernel size and the stride must be at least 1");
    if (conv && l->args[0] < 1)
        return dp_fail(err, "a convolution needs at least 1 output channel");
    dp_conv_geom g = geom_of(l);
    if (g.ph * 2 > g.kh)
        return dp_fail(err, "padding %d is more than half the kernel size %d", g.ph, g.kh);
    if (g.h + 2 * g.ph < g.kh || g.w + 2 * g.pw < g.kw)
        return dp_fail(err, "a %dx%d window does not fit the %dx%d input (padding %d); use a "
                            "smaller kernel or fewer pooling layers before it",
                       g.kh, g.kw, g.h, g.w, g.ph);
    l->out_shape = (dp_shape){ 3, { out_channels, g.oh, g.ow } };
    return 0;
}

/* ---- conv ---- */

static int conv_infer(dp_layer *l, dp_err *err)
{
    if (window_infer(l, l->args[0], err) < 0)
        return -1;
    if (l->nargs > 4 && l->args[4] > 1)
        return dp_fail(err, "BIAS is 1 (a bias, the default) or 0 (none, PyTorch's bias=False)");
    size_t k = (size_t)l->args[1], ckk = dp_size_mul(dp_size_mul(l->in_shape.d[0], k), k);
    l->param_count = dp_size_add(dp_size_mul(l->args[0], ckk),
                                 dp_conv_has_bias(l) ? (size_t)l->args[0] : 0);
    return 0;
}

static int conv_tensors(const dp_layer *l, dp_tensor_info out[DP_MAX_LAYER_TENSORS])
{
    int oc = l->args[0], k = l->args[1], c = l->in_shape.d[0];
    size_t nw = (size_t)oc * c * k * k;
    out[0] = (dp_tensor_info){ "weight", 4, { oc, c, k, k }, 0, nw, false, false, false };
    out[1] = (dp_tensor_info){ "bias", 1, { oc }, nw, (size_t)oc, false, false, false };
    return dp_conv_has_bias(l) ? 2 : 1;
}

/* nn.Conv2d's reset_parameters, as nn.Linear's: uniform within 1 / sqrt(fan_in), fan_in =
 * C * K * K, for the weights and the bias. */
static void conv_init(const dp_layer *l, float *params, uint64_t seed)
{
    dp_rng r = dp_rng_stream(seed, DP_RNG_INIT, (uint64_t)l->index);
    double bound = 1.0 / sqrt((double)l->in_shape.d[0] * l->args[1] * l->args[1]);
    for (size_t i = 0; i < l->param_count; i++)
        params[i] = (float)((2.0 * dp_rng_uniform(&r) - 1.0) * bound);
}

/* Samples per chunk: as many as keep the patch matrix within CHUNK_FLOATS, at least one. */
static int conv_chunk(const dp_layer *l, int max_rows)
{
    dp_conv_geom g = geom_of(l);
    size_t per_sample = dp_size_mul(dp_size_mul((size_t)g.oh * g.ow, (size_t)g.c * g.kh),
                                    (size_t)g.kw);
    size_t n = CHUNK_FLOATS / per_sample;
    n = n < 1 ? 1 : n;
    return (int)(n < (size_t)max_rows ? n : (size_t)max_rows);
}

/* The patch matrices of a chunk; through the library, the gradients of a pass that adds to
 * the ones there (a micro-batch's). */
static size_t conv_scratch(const dp_layer *l, int max_rows, const dp_device *d)
{
    dp_conv_geom g = geom_of(l);
    size_t patches = dp_size_mul(dp_size_mul(conv_chunk(l, max_rows), (size_t)g.oh * g.ow),
                                 dp_size_mul((size_t)g.c * g.kh, (size_t)g.kw));
    size_t library = l->param_count;
    if (d)
        return dp_device_conv_library(d) ? library : patches;
    return patches > library ? patches : library;
}

/* The weights' and bias's gradients through the library: written, or added through the
 * scratch when the pass accumulates. The deconvolution's weights are its convolution's
 * (deconv.c), so it shares this. */
void dp_conv_library_weights(const dp_layer *l, const dp_pass *p, dp_conv_geom g, int oc,
                             float *grads, float *db, const float *x, const float *dy)
{
    const dp_backend *be = p->dev->be;
    size_t nw = (size_t)oc * g.c * g.kh * g.kw;
    if (p->rows == 0) {
        if (!p->accumulate)
            be->zero(p->dev, grads, (nw + (db ? (size_t)oc : 0)) * sizeof(float));
        return;
    }
    float *dw = p->accumulate ? p->scratch : grads;
    be->conv_backward_weights(p->dev, g, oc, p->rows, dw, db ? dw + nw : NULL, x, dy);
    if (p->accumulate)
        be->add(p->dev, grads, grads, dw, nw + (db ? (size_t)oc : 0));
}

static void conv_forward(const dp_layer *l, const dp_pass *p, const float *params,
                         const float *x, float *y)
{
    const dp_backend *be = p->dev->be;
    dp_conv_geom g = geom_of(l);
    int oc = l->args[0], ckk = g.c * g.kh * g.kw, pos = g.oh * g.ow;
    if (dp_device_conv_library(p->dev)) {
        if (p->rows > 0)
            be->conv_forward(p->dev, g, oc, p->rows, y, x, params,
                             dp_conv_has_bias(l) ? params + (size_t)oc * ckk : NULL);
        return;
    }
    int chunk = conv_chunk(l, p->rows > 0 ? p->rows : 1);
    long col_stride = (long)ckk * pos;
    for (int n0 = 0; n0 < p->rows; n0 += chunk) {
        int n = p->rows - n0 < chunk ? p->rows - n0 : chunk;
        float *out = y + (size_t)n0 * l->out;
        be->im2col(p->dev, p->scratch, x + (size_t)n0 * l->in, n, g);
        /* each sample: [OUT, P] = W [OUT, CKK] col [CKK, P] */
        be->gemm_batched(p->dev, 0, 0, oc, pos, ckk, 1.0f, params, ckk, 0, p->scratch, pos,
                         col_stride, 0.0f, out, pos, (long)oc * pos, n);
        if (dp_conv_has_bias(l))
            be->channel_bias(p->dev, out, params + (size_t)oc * ckk, n, oc, pos);
    }
}

static void conv_backward(const dp_layer *l, const dp_pass *p, const float *params,
                          float *grads, const float *x, const float *y, const float *dy,
                          float *dx)
{
    const dp_backend *be = p->dev->be;
    dp_conv_geom g = geom_of(l);
    int oc = l->args[0], ckk = g.c * g.kh * g.kw, pos = g.oh * g.ow;
    int chunk = conv_chunk(l, p->rows > 0 ? p->rows : 1);
    float *col = p->scratch, *dw = grads, *db = grads + (size_t)oc * ckk;
    long col_stride = (long)ckk * pos;
    if (dp_device_conv_library(p->dev)) {
        dp_conv_library_weights(l, p, g, oc, grads, dp_conv_has_bias(l) ? db : NULL, x, dy);
        if (dx && p->rows > 0)
            be->conv_backward_data(p->dev, g, oc, p->rows, dx, dy, params);
        return;
    }
    if (p->rows == 0 && !p->accumulate)
        be->zero(p->dev, grads, l->param_count * sizeof(float));
    for (int n0 = 0; n0 < p->rows; n0 += chunk) {
        int n = p->rows - n0 < chunk ? p->rows - n0 : chunk;
        bool add = p->accumulate || n0 > 0;
        const float *g_out = dy + (size_t)n0 * l->out;
        be->im2col(p->dev, col, x + (size_t)n0 * l->in, n, g);
        /* dW [OUT, CKK] (+)= sum over samples of dy [OUT, P] col^T [P, CKK], one at a time
         * (a batched product would write dW from all of them at once) */
        for (int i = 0; i < n; i++)
            be->gemm(p->dev, 0, 1, oc, ckk, pos, 1.0f, g_out + (size_t)i * oc * pos, pos,
                     col + i * col_stride, pos, add || i > 0 ? 1.0f : 0.0f, dw, ckk);
        if (dp_conv_has_bias(l))
            be->channel_bias_grad(p->dev, db, g_out, n, oc, pos, add);
        if (dx) { /* dcol [CKK, P] = W^T [CKK, OUT] dy [OUT, P], into the patches' place */
            be->gemm_batched(p->dev, 1, 0, ckk, pos, oc, 1.0f, params, ckk, 0, g_out, pos,
                             (long)oc * pos, 0.0f, col, pos, col_stride, n);
            be->col2im(p->dev, dx + (size_t)n0 * l->in, col, n, g);
        }
    }
}

static double conv_flops(const dp_layer *l)
{
    dp_conv_geom g = geom_of(l);
    return 2.0 * g.oh * g.ow * l->args[0] * g.c * g.kh * g.kw;
}

const dp_layer_ops dp_layer_conv = {
    .name = "conv",
    .usage = "conv:OUT:K[:STRIDE[:PAD[:BIAS]]]",
    .help = "2-D convolution, OUT channels, K x K kernel (stride 1, padding 0 unless given; "
            "BIAS 0: no bias); nn.Conv2d",
    .min_args = 2,
    .max_args = 5,
    .infer = conv_infer,
    .tensors = conv_tensors,
    .init = conv_init,
    .forward = conv_forward,
    .backward = conv_backward,
    .flops = conv_flops,
    .scratch = conv_scratch,
};

/* ---- pooling ---- */

static int pool_infer(dp_layer *l, dp_err *err)
{
    if (window_infer(l, l->in_shape.ndim == 3 ? l->in_shape.d[0] : 0, err) < 0)
        return -1;
    l->param_count = 0;
    if (l->ops == &dp_layer_maxpool) /* where each maximum was, as int32 in float slots */
        l->saved = dp_shape_count(l->out_shape);
    return 0;
}

static void pool_forward(const dp_layer *l, const dp_pass *p, const float *params,
                         const float *x, float *y)
{
    bool max = l->ops == &dp_layer_maxpool;
    p->dev->be->pool_forward(p->dev, max, y, max ? (int32_t *)p->saved : NULL, x,
                             p->rows * l->in_shape.d[0], geom_of(l));
}

static void pool_backward(const dp_layer *l, const dp_pass *p, const float *params,
                          float *grads, const float *x, const float *y, const float *dy,
                          float *dx)
{
    bool max = l->ops == &dp_layer_maxpool;
    if (dx)
        p->dev->be->pool_backward(p->dev, max, dx, max ? (const int32_t *)p->saved : NULL, dy,
                                  p->rows * l->in_shape.d[0], geom_of(l));
}

static double pool_flops(const dp_layer *l)
{
    dp_conv_geom g = geom_of(l);
    return (double)g.c * g.oh * g.ow * g.kh * g.kw;
}

const dp_layer_ops dp_layer_maxpool = {
    .name = "maxpool",
    .usage = "maxpool:K[:STRIDE]",
    .help = "maximum over K x K windows, stride K unless given; nn.MaxPool2d",
    .min_args = 1,
    .max_args = 2,
    .infer = pool_infer,
    .tensors = dp_layer_no_tensors,
    .init = dp_layer_no_init,
    .forward = pool_forward,
    .backward = pool_backward,
    .flops = pool_flops,
};

const dp_layer_ops dp_layer_avgpool = {
    .name = "avgpool",
    .usage = "avgpool[:K[:STRIDE]]",
    .help = "mean over K x K windows, stride K unless given; without K the mean of each whole "
            "channel (global average pooling, nn.AdaptiveAvgPool2d(1)); nn.AvgPool2d",
    .min_args = 0,
    .max_args = 2,
    .infer = pool_infer,
    .tensors = dp_layer_no_tensors,
    .init = dp_layer_no_init,
    .forward = pool_forward,
    .backward = pool_backward,
    .flops = pool_flops,
};
