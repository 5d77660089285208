/* deconv.c -- deconv:OUT:K[:STRIDE[:PAD]], the transposed convolution over images [C, H, W]:
 * torch.nn.ConvTranspose2d(C, OUT, K, stride, padding) with output_padding 0, dilation 1,
 * groups 1 and a bias. Its output is [OUT, HO, WO] with HO = (H - 1) * STRIDE - 2 * PAD + K
 * (WO likewise): a generator's upsampling step.
 *
 * A transposed convolution is the adjoint of the convolution that takes its output's shape
 * [OUT, HO, WO] to its input's [C, H, W] with the same kernel, stride and padding (that
 * convolution's output size is exactly H x W), so it runs on conv.c's kernels the other way
 * round. The weight [C, OUT, K, K] is a matrix W [C, OUT * K * K]; per sample, forward makes
 * the patch matrix col [OUT K K, H W] = W^T x and sums its entries into the output with
 * col2im, then adds the bias per channel; backward takes dy's patch matrix dcol = im2col(dy),
 * then dx = W dcol and dW += x dcol^T. Samples go through in chunks, so that the patch
 * matrices of a chunk stay within CHUNK_FLOATS. Through the backend's library
 * (dp_device_conv_library) the same adjoint is that convolution's passes: forward is its
 * backward-data, backward its forward (dx) and its backward-weights with the roles of input
 * and output gradient swapped. */
#include <math.h>

#include "engine/layers/common.h"
#include "base/rng.h"

#define CHUNK_FLOATS ((size_t)8 << 20) /* 32 MB of patches at a time, as conv.c */

static int deconv_stride(const dp_layer *l)
{
    return l->nargs > 2 ? l->args[2] : 1;
}

static int deconv_pad(const dp_layer *l)
{
    return l->nargs > 3 ? l->args[3] : 0;
}

/* The geometry of the convolution whose adjoint the layer is: its input is the deconv's output
 * [OUT, HO, WO], its output the deconv's input's planes [H, W]. */
static dp_conv_geom geom_of(const dp_layer *l)
{
    int k = l->args[1], s = deconv_stride(l), pad = deconv_pad(l);
    return (dp_conv_geom){ .c = l->args[0], .h = l->out_shape.d[1], .w = l->out_shape.d[2],
                           .kh = k, .kw = k, .sh = s, .sw = s, .ph = pad, .pw = pad,
                           .oh = l->in_shape.d[1], .ow = l->in_shape.d[2] };
}

/* OUT K K: the rows of a sample's patch matrix (the columns of W). */
static size_t deconv_ckk(const dp_layer *l)
{
    return dp_size_mul(dp_size_mul((size_t)l->args[0], (size_t)l->args[1]), (size_t)l->args[1]);
}

/* One side of the output, (size - 1) * stride - 2 * pad + k, in 64 bits (it may be out of
 * range for int or below 1: the caller refuses those). */
static long long out_size(int size, int k, int stride, int pad)
{
    return (long long)(size - 1) * stride - 2LL * pad + k;
}

static int deconv_infer(dp_layer *l, dp_err *err)
{
    if (l->in_shape.ndim != 3)
        return dp_fail(err, "deconv needs images [channels, height, width] as input, but gets "
                            "%s of %d values; put unflatten:C:H:W before it",
                       l->in_shape.ndim == 1 ? "vectors" : "sequences", l->in);
    int oc = l->args[0], k = l->args[1], s = deconv_stride(l), pad = deconv_pad(l);
    if (oc < 1)
        return dp_fail(err, "a transposed convolution needs at least 1 output channel");
    if (k < 1 || s < 1)
        return dp_fail(err, "the kernel size and the stride must be at least 1");
    int h = l->in_shape.d[1], w = l->in_shape.d[2];
    long long oh = out_size(h, k, s, pad), ow = out_size(w, k, s, pad);
    if (oh < 1 || ow < 1)
        return dp_fail(err, "deconv:%d:%d:%d:%d on a %dx%d input gives a %lldx%lld output "
                            "((size - 1) * stride - 2 * padding + kernel must be at least 1); "
                            "use less padding",
                       oc, k, s, pad, h, w, oh, ow);
    if (oh > DP_MAX_SAMPLE || ow > DP_MAX_SAMPLE)
        return dp_fail(err, "deconv:%d:%d:%d:%d on a %dx%d input gives a %lldx%lld output (at "
                            "most %d values per sample); use a smaller stride or kernel",
                       oc, k, s, pad, h, w, oh, ow, DP_MAX_SAMPLE);
    l->out_shape = (dp_shape){ 3, { oc, (int)oh, (int)ow } };
    if (l->nargs > 4 && l->args[4] > 1)
        return dp_fail(err, "BIAS is 1 (a bias, the default) or 0 (none, PyTorch's bias=False)");
    size_t c = (size_t)l->in_shape.d[0];
    l->param_count = dp_size_add(dp_size_mul(c, deconv_ckk(l)),
                                 dp_conv_has_bias(l) ? (size_t)oc : 0);
    return 0;
}

/* PyTorch's state_dict: weight [C_in, OUT, K, K] (a transposed convolution's weight has its
 * input channels first), bias [OUT]. */
static int deconv_tensors(const dp_layer *l, dp_tensor_info out[DP_MAX_LAYER_TENSORS])
{
    int oc = l->args[0], k = l->args[1], c = l->in_shape.d[0];
    size_t nw = (size_t)c * oc * k * k;
    out[0] = (dp_tensor_info){ "weight", 4, { c, oc, k, k }, 0, nw, false, false, false };
    out[1] = (dp_tensor_info){ "bias", 1, { oc }, nw, (size_t)oc, false, false, false };
    return dp_conv_has_bias(l) ? 2 : 1;
}

/* nn.ConvTranspose2d's reset_parameters (_ConvNd's): kaiming_uniform_(a = sqrt(5)) for the
 * weight, which is uniform within 1 / sqrt(fan_in), and the bias uniform within the same
 * bound; fan_in is computed from the weight's dimension 1 and its kernel, which for a
 * transposed convolution is OUT * K * K (not C * K * K). */
static void deconv_init(const dp_layer *l, float *params, uint64_t seed)
{
    dp_rng r = dp_rng_stream(seed, DP_RNG_INIT, (uint64_t)l->index);
    double bound = 1.0 / sqrt((double)l->args[0] * l->args[1] * l->args[1]);
    for (size_t i = 0; i < l->param_count; i++)
        params[i] = (float)((2.0 * dp_rng_uniform(&r) - 1.0) * bound);
}

/* Floats of one sample's patch matrix [OUT K K, H W] (saturating). */
static size_t col_per_sample(const dp_layer *l)
{
    return dp_size_mul(deconv_ckk(l), (size_t)l->in_shape.d[1] * l->in_shape.d[2]);
}

/* Samples per chunk: as many as keep the patch matrices within CHUNK_FLOATS, at least one. */
static int deconv_chunk(const dp_layer *l, int max_rows)
{
    size_t n = CHUNK_FLOATS / col_per_sample(l);
    n = n < 1 ? 1 : n;
    return (int)(n < (size_t)max_rows ? n : (size_t)max_rows);
}

/* The patch matrices of a chunk; through the library, the weights' gradient of a pass that
 * adds to the one there. */
static size_t deconv_scratch(const dp_layer *l, int max_rows, const dp_device *d)
{
    size_t patches = dp_size_mul((size_t)deconv_chunk(l, max_rows), col_per_sample(l));
    size_t library = l->param_count;
    if (d)
        return dp_device_conv_library(d) ? library : patches;
    return patches > library ? patches : library;
}

static void deconv_forward(const dp_layer *l, const dp_pass *p, const float *params,
                           const float *x, float *y)
{
    const dp_backend *be = p->dev->be;
    dp_conv_geom g = geom_of(l);
    int oc = l->args[0], c = l->in_shape.d[0], ckk = (int)deconv_ckk(l), pos = g.oh * g.ow;
    if (dp_device_conv_library(p->dev)) {
        if (p->rows == 0)
            return;
        be->conv_backward_data(p->dev, g, c, p->rows, y, x, params);
        if (dp_conv_has_bias(l))
            be->channel_bias(p->dev, y, params + (size_t)c * ckk, p->rows, oc, g.h * g.w);
        return;
    }
    int chunk = deconv_chunk(l, p->rows > 0 ? p->rows : 1);
    long col_stride = (long)ckk * pos;
    for (int n0 = 0; n0 < p->rows; n0 += chunk) {
        int n = p->rows - n0 < chunk ? p->rows - n0 : chunk;
        float *out = y + (size_t)n0 * l->out;
        /* each sample: col [CKK, P] = W^T [CKK, C] x [C, P] */
        be->gemm_batched(p->dev, 1, 0, ckk, pos, c, 1.0f, params, ckk, 0,
                         x + (size_t)n0 * l->in, pos, (long)c * pos, 0.0f, p->scratch, pos,
                         col_stride, n);
        be->col2im(p->dev, out, p->scratch, n, g); /* writes every output value */
        if (dp_conv_has_bias(l))
            be->channel_bias(p->dev, out, params + (size_t)c * ckk, n, oc, g.h * g.w);
    }
}

static void deconv_backward(const dp_layer *l, const dp_pass *p, const float *params,
                            float *grads, const float *x, const float *y, const float *dy,
                            float *dx)
{
    const dp_backend *be = p->dev->be;
    dp_conv_geom g = geom_of(l);
    int oc = l->args[0], c = l->in_shape.d[0], ckk = (int)deconv_ckk(l), pos = g.oh * g.ow;
    int chunk = deconv_chunk(l, p->rows > 0 ? p->rows : 1);
    float *col = p->scratch, *dw = grads, *db = grads + (size_t)c * ckk;
    long col_stride = (long)ckk * pos;
    if (dp_device_conv_library(p->dev)) { /* the convolution's input is dy, its output x */
        dp_conv_library_weights(l, p, g, c, grads, NULL, dy, x);
        if (dp_conv_has_bias(l))
            be->channel_bias_grad(p->dev, db, dy, p->rows, oc, g.h * g.w, p->accumulate);
        if (dx && p->rows > 0)
            be->conv_forward(p->dev, g, c, p->rows, dx, dy, params, NULL);
        return;
    }
    if (p->rows == 0 && !p->accumulate)
        be->zero(p->dev, grads, l->param_count * sizeof(float));
    for (int n0 = 0; n0 < p->rows; n0 += chunk) {
        int n = p->rows - n0 < chunk ? p->rows - n0 : chunk;
        bool add = p->accumulate || n0 > 0;
        const float *g_out = dy + (size_t)n0 * l->out, *in = x + (size_t)n0 * l->in;
        be->im2col(p->dev, col, g_out, n, g);
        /* dW [C, CKK] (+)= sum over samples of x [C, P] dcol^T [P, CKK], one at a time (a
         * batched product would write dW from all of them at once) */
        for (int i = 0; i < n; i++)
            be->gemm(p->dev, 0, 1, c, ckk, pos, 1.0f, in + (size_t)i * c * pos, pos,
                     col + i * col_stride, pos, add || i > 0 ? 1.0f : 0.0f, dw, ckk);
        if (dp_conv_has_bias(l))
            be->channel_bias_grad(p->dev, db, g_out, n, oc, g.h * g.w, add);
        if (dx) /* dx [C, P] = W [C, CKK] dcol [CKK, P] */
            be->gemm_batched(p->dev, 0, 0, c, pos, ckk, 1.0f, params, ckk, 0, col, pos,
                             col_stride, 0.0f, dx + (size_t)n0 * l->in, pos, (long)c * pos, n);
    }
}

static double deconv_flops(const dp_layer *l)
{
    return 2.0 * (double)l->in_shape.d[0] * (double)deconv_ckk(l) * l->in_shape.d[1] *
           l->in_shape.d[2];
}

const dp_layer_ops dp_layer_deconv = {
    .name = "deconv",
    .usage = "deconv:OUT:K[:STRIDE[:PAD[:BIAS]]]",
    .help = "transposed 2-D convolution (a generator's upsampling), OUT channels, K x K "
            "kernel, stride 1 and padding 0 unless given; each side grows from H to "
            "(H - 1) * STRIDE - 2 * PAD + K; BIAS 0: no bias; nn.ConvTranspose2d",
    .min_args = 2,
    .max_args = 5,
    .infer = deconv_infer,
    .tensors = deconv_tensors,
    .init = deconv_init,
    .forward = deconv_forward,
    .backward = deconv_backward,
    .flops = deconv_flops,
    .scratch = deconv_scratch,
};
