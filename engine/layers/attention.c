/* attention.c -- attn:HEADS, causal multi-head self-attention over sequences [T, D], as
 * nanoGPT's CausalSelfAttention: c_attn makes q, k and v, c_proj mixes the heads; and mha:HEADS,
 * the same without the causal mask (every position sees every other), named and initialised as
 * nn.MultiheadAttention(D, HEADS, batch_first=True): in_proj_weight and in_proj_bias (q, k and v
 * in that order, as c_attn's), out_proj.
 *
 * Attention keeps, per micro-batch, q k v [rows, T, 3D], the probabilities [rows, H, T, T] and
 * the heads' output [rows, T, D] (three blocks of its saved memory); each sample's heads go
 * through one strided batched GEMM per product. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/layers/common.h"
#include "base/rng.h"

/* The sizes of an attention layer: positions, width, heads, head width. */
typedef struct attn_dims {
    int t, d, h, hd;
} attn_dims;

static attn_dims dims_of(const dp_layer *l)
{
    attn_dims a = { l->in_shape.d[0], l->in_shape.d[1], l->args[0], 0 };
    a.hd = a.d / a.h;
    return a;
}

static int attn_infer(dp_layer *l, dp_err *err)
{
    if (dp_layer_need_sequence(l, err) < 0)
        return -1;
    attn_dims a = dims_of(l);
    if (a.h < 1 || a.d % a.h)
        return dp_fail(err, "%d heads do not divide the width %d", a.h, a.d);
    l->out_shape = l->in_shape;
    size_t t = (size_t)a.t, d = (size_t)a.d;
    l->param_count = dp_size_add(dp_size_mul(4 * d, d), 4 * d);
    l->saved = dp_size_add(dp_size_mul(4 * t, d), dp_size_mul(dp_size_mul(a.h, t), t));
    return 0;
}

/* Whether the layer masks the future: attn does, mha does not. */
static bool is_causal(const dp_layer *l)
{
    return l->ops == &dp_layer_attn;
}

static int attn_tensors(const dp_layer *l, dp_tensor_info out[DP_MAX_LAYER_TENSORS])
{
    static const char *const names[2][4] = {
        { "c_attn.weight", "c_attn.bias", "c_proj.weight", "c_proj.bias" },
        { "in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias" },
    };
    const char *const *name = names[!is_causal(l)];
    int d = dims_of(l).d;
    size_t at = 0;
    out[0] = (dp_tensor_info){ "", 2, { 3 * d, d }, at, (size_t)3 * d * d, false, false, false };
    at += (size_t)3 * d * d;
    out[1] = (dp_tensor_info){ "", 1, { 3 * d }, at, (size_t)3 * d, false, false, false };
    at += (size_t)3 * d;
    out[2] = (dp_tensor_info){ "", 2, { d, d }, at, (size_t)d * d, false, false, false };
    at += (size_t)d * d;
    out[3] = (dp_tensor_info){ "", 1, { d }, at, (size_t)d, false, false, false };
    for (int k = 0; k < 4; k++)
        snprintf(out[k].suffix, sizeof out[k].suffix, "%s", name[k]);
    return 4;
}

/* attn: nn.Linear's init for both projections, uniform within 1 / sqrt(D). mha:
 * nn.MultiheadAttention's, in_proj_weight Xavier-uniform (within sqrt(6 / (D + 3D))),
 * out_proj.weight nn.Linear's, both biases zero. */
static void attn_init(const dp_layer *l, float *params, uint64_t seed)
{
    dp_rng r = dp_rng_stream(seed, DP_RNG_INIT, (uint64_t)l->index);
    size_t d = (size_t)dims_of(l).d;
    double bound = 1.0 / sqrt((double)d);
    if (is_causal(l)) {
        for (size_t i = 0; i < l->param_count; i++)
            params[i] = (float)((2.0 * dp_rng_uniform(&r) - 1.0) * bound);
        return;
    }
    double xavier = sqrt(6.0 / (double)(4 * d));
    float *w_in = params, *b_in = w_in + 3 * d * d, *w_out = b_in + 3 * d, *b_out = w_out + d * d;
    for (size_t i = 0; i < 3 * d * d; i++)
        w_in[i] = (float)((2.0 * dp_rng_uniform(&r) - 1.0) * xavier);
    for (size_t i = 0; i < d * d; i++)
        w_out[i] = (float)((2.0 * dp_rng_uniform(&r) - 1.0) * bound);
    memset(b_in, 0, 3 * d * sizeof *b_in);
    memset(b_out, 0, d * sizeof *b_out);
}

/* The parameters and the saved blocks of a pass. */
typedef struct attn_parts {
    const float *w_attn, *b_attn, *w_proj, *b_proj;
    float *qkv, *prob, *heads; /* [rows, T, 3D], [rows, H, T, T], [rows, T, D] */
} attn_parts;

static attn_parts parts_of(const dp_layer *l, const dp_pass *p, const float *params)
{
    attn_dims a = dims_of(l);
    attn_parts s;
    s.w_attn = params;
    s.b_attn = s.w_attn + (size_t)3 * a.d * a.d;
    s.w_proj = s.b_attn + (size_t)3 * a.d;
    s.b_proj = s.w_proj + (size_t)a.d * a.d;
    s.qkv = p->saved;
    s.prob = s.qkv + (size_t)p->rows * a.t * 3 * a.d;
    s.heads = s.prob + (size_t)p->rows * a.h * a.t * a.t;
    return s;
}

static void attn_forward(const dp_layer *l, const dp_pass *p, const float *params,
                         const float *x, float *y)
{
    const dp_backend *be = p->dev->be;
    attn_dims a = dims_of(l);
    attn_parts s = parts_of(l, p, params);
    int positions = p->rows * a.t, d3 = 3 * a.d;
    long tt = (long)a.t * a.t;
    if (!positions)
        return;
    be->linear(p->dev, positions, d3, a.d, x, s.w_attn, s.b_attn, s.qkv, false);
    for (int n = 0; n < p->rows; n++) { /* scores q k^T of the sample's heads */
        const float *q = s.qkv + (size_t)n * a.t * d3;
        be->gemm_batched(p->dev, 0, 1, a.t, a.t, a.hd, 1.0f, q, d3, a.hd, q + a.d, d3, a.hd,
                         0.0f, s.prob + n * a.h * tt, a.t, tt, a.h);
    }
    be->softmax_forward(p->dev, s.prob, s.prob, p->rows * a.h * a.t, a.t,
                        1.0f / sqrtf((float)a.hd), is_causal(l) ? a.t : 0);
    for (int n = 0; n < p->rows; n++) { /* each head's probabilities times its values */
        const float *v = s.qkv + (size_t)n * a.t * d3 + 2 * a.d;
        be->gemm_batched(p->dev, 0, 0, a.t, a.hd, a.t, 1.0f, s.prob + n * a.h * tt, a.t, tt, v,
                         d3, a.hd, 0.0f, s.heads + (size_t)n * a.t * a.d, a.d, a.hd, a.h);
    }
    be->linear(p->dev, positions, a.d, a.d, s.heads, s.w_proj, s.b_proj, y, false);
}

/* Scratch: the gradients of q k v, of the heads' output and of the probabilities. */
static size_t attn_scratch(const dp_layer *l, int max_rows, const dp_device *d)
{
    attn_dims a = dims_of(l);
    size_t t = (size_t)a.t;
    return dp_size_mul(max_rows, dp_size_add(dp_size_mul(4 * t, a.d),
                                             dp_size_mul(dp_size_mul(a.h, t), t)));
}

static void attn_backward(const dp_layer *l, const dp_pass *p, const float *params,
                          float *grads, const float *x, const float *y, const float *dy,
                          float *dx)
{
    const dp_backend *be = p->dev->be;
    attn_dims a = dims_of(l);
    attn_parts s = parts_of(l, p, params);
    int positions = p->rows * a.t, d3 = 3 * a.d;
    long tt = (long)a.t * a.t;
    float *gw_attn = grads, *gb_attn = gw_attn + (size_t)3 * a.d * a.d;
    float *gw_proj = gb_attn + (size_t)3 * a.d, *gb_proj = gw_proj + (size_t)a.d * a.d;
    float *dqkv = p->scratch, *dheads = dqkv + (size_t)positions * d3;
    float *dprob = dheads + (size_t)positions * a.d;
    float beta = p->accumulate ? 1.0f : 0.0f;
    if (!positions) {
        if (!p->accumulate)
            be->zero(p->dev, grads, l->param_count * sizeof(float));
        return;
    }
    /* the output projection */
    be->gemm(p->dev, 1, 0, a.d, a.d, positions, 1.0f, dy, a.d, s.heads, a.d, beta, gw_proj, a.d);
    be->sum_rows(p->dev, gb_proj, dy, positions, a.d, p->accumulate);
    be->gemm(p->dev, 0, 0, positions, a.d, a.d, 1.0f, dy, a.d, s.w_proj, a.d, 0.0f, dheads, a.d);
    /* per sample: dP = dO v^T, dv = P^T dO */
    for (int n = 0; n < p->rows; n++) {
        const float *qkv = s.qkv + (size_t)n * a.t * d3, *dout = dheads + (size_t)n * a.t * a.d;
        float *dq = dqkv + (size_t)n * a.t * d3;
        be->gemm_batched(p->dev, 0, 1, a.t, a.t, a.hd, 1.0f, dout, a.d, a.hd, qkv + 2 * a.d, d3,
                         a.hd, 0.0f, dprob + n * a.h * tt, a.t, tt, a.h);
        be->gemm_batched(p->dev, 1, 0, a.t, a.hd, a.t, 1.0f, s.prob + n * a.h * tt, a.t, tt, dout,
                         a.d, a.hd, 0.0f, dq + 2 * a.d, d3, a.hd, a.h);
    }
    /* dS = softmax'(dP), scaled as the scores were */
    be->softmax_backward(p->dev, dprob, s.prob, dprob, p->rows * a.h * a.t, a.t,
                         1.0f / sqrtf((float)a.hd));
    /* per sample: dq = dS k, dk = dS^T q */
    for (int n = 0; n < p->rows; n++) {
        const float *qkv = s.qkv + (size_t)n * a.t * d3, *ds = dprob + n * a.h * tt;
        float *dq = dqkv + (size_t)n * a.t * d3;
        be->gemm_batched(p->dev, 0, 0, a.t, a.hd, a.t, 1.0f, ds, a.t, tt, qkv + a.d, d3, a.hd,
                         0.0f, dq, d3, a.hd, a.h);
        be->gemm_batched(p->dev, 1, 0, a.t, a.hd, a.t, 1.0f, ds, a.t, tt, qkv, d3, a.hd, 0.0f,
                         dq + a.d, d3, a.hd, a.h);
    }
    /* the input projection */
    be->gemm(p->dev, 1, 0, d3, a.d, positions, 1.0f, dqkv, d3, x, a.d, beta, gw_attn, a.d);
    be->sum_rows(p->dev, gb_attn, dqkv, positions, d3, p->accumulate);
    if (dx)
        be->gemm(p->dev, 0, 0, positions, a.d, d3, 1.0f, dqkv, d3, s.w_attn, a.d, 0.0f, dx, a.d);
}

static double attn_flops(const dp_layer *l)
{
    attn_dims a = dims_of(l);
    return 2.0 * a.t * (4.0 * a.d * a.d) + 2.0 * 2.0 * a.t * a.t * a.d;
}

const dp_layer_ops dp_layer_attn = {
    .name = "attn",
    .usage = "attn:HEADS",
    .help = "causal multi-head self-attention with HEADS heads (q, k, v from one linear "
            "layer, c_attn; the heads mixed by another, c_proj)",
    .min_args = 1,
    .max_args = 1,
    .infer = attn_infer,
    .tensors = attn_tensors,
    .init = attn_init,
    .forward = attn_forward,
    .backward = attn_backward,
    .flops = attn_flops,
    .scratch = attn_scratch,
};

const dp_layer_ops dp_layer_mha = {
    .name = "mha",
    .usage = "mha:HEADS",
    .help = "multi-head self-attention with HEADS heads, every position seeing every other "
            "(no causal mask); nn.MultiheadAttention(D, HEADS, batch_first=True)",
    .min_args = 1,
    .max_args = 1,
    .infer = attn_infer,
    .tensors = attn_tensors,
    .init = attn_init,
    .forward = attn_forward,
    .backward = attn_backward,
    .flops = attn_flops,
    .scratch = attn_scratch,
};
