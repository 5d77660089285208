/* test_bert.c -- the parts of a BERT-style masked language model, on a CPU device.
 *
 * Layers: the exact GELU (gelu_erf), bidirectional attention (mha:H) and the Transformer
 * encoder block (enc:H, post-LayerNorm, and enc:H:1, pre-LayerNorm) against references in
 * double written here with plain loops from PyTorch's formulas (nn.GELU(), nn.MultiheadAttention,
 * nn.TransformerEncoderLayer), and their gradients against central finite differences of those
 * references (step 1e-5, in double). Each layer is a one-layer model run by hand by the harness
 * of tests/layer_check.h: forward, then backward of L = sum(y * r) for a random r. Tolerances,
 * absolute plus relative (|got - want| <= tol (1 + |want|)): forward 1e-5, gradients 1e-4,
 * accumulation 1e-6.
 *
 * The masked language model: the masks of kernels.h (dp_mlm_input) and of the backend's
 * mlm_mask, by their statistics over a million positions and against the rule written out
 * here from BERT's shares; that they follow from (seed, step, global place, position) alone, so
 * that every way of splitting a batch masks alike; the mlm objective's gradient scale, the
 * softmax cross-entropy's ignored labels, and its report. */
#include "tests/unit.h"
#include "tests/layer_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/kernels.h"
#include "engine/layer.h"
#include "engine/model.h"
#include "engine/objective.h"
#include "engine/optim.h"
#include "engine/stage.h"
#include "base/rng.h"

#define LN_EPS 1e-5 /* nn.LayerNorm's default, which nn.TransformerEncoderLayer keeps */

/* ---- the double references ---- */

/* nn.GELU(): x Phi(x), Phi the standard normal distribution; its derivative Phi(x) + x phi(x). */
static double ref_gelu(double x)
{
    return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
}

static double ref_gelu_grad(double x)
{
    return 0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
}

/* The tensor of layer l called `name`, inside params (the layer's own run): its shape must be
 * [d0, d1] (d1 0: [d0]). The reference reads every parameter by its PyTorch name, so a tensor
 * whose name says one thing while the engine uses it as another fails the comparison. */
static const double *tensor(const dp_layer *l, const double *params, const char *name, int d0,
                            int d1)
{
    dp_tensor_info t[DP_MAX_LAYER_TENSORS];
    int n = l->ops->tensors(l, t);
    for (int i = 0; i < n; i++) {
        if (strcmp(t[i].suffix, name))
            continue;
        ck_assert_msg(t[i].ndim == (d1 ? 2 : 1) && t[i].shape[0] == d0 &&
                          (!d1 || t[i].shape[1] == d1),
                      "%s: %s has the wrong shape", l->ops->name, name);
        return params + t[i].offset;
    }
    ck_abort_msg("%s has no tensor %s", l->ops->name, name);
    return NULL;
}

/* y[n, out] = x[n, in] w^T + b, w [out, in]. */
static void ref_linear(int n, int in, int out, const double *w, const double *b, const double *x,
                       double *y)
{
    for (int r = 0; r < n; r++)
        for (int o = 0; o < out; o++) {
            double s = b[o];
            for (int i = 0; i < in; i++)
                s += x[(size_t)r * in + i] * w[(size_t)o * in + i];
            y[(size_t)r * out + o] = s;
        }
}

/* nn.LayerNorm(d) over n rows: biased variance, eps 1e-5 inside the square root. */
static void ref_ln(int n, int d, const double *w, const double *b, const double *x, double *y)
{
    for (int r = 0; r < n; r++) {
        const double *xr = x + (size_t)r * d;
        double mean = 0.0, var = 0.0;
        for (int i = 0; i < d; i++)
            mean += xr[i];
        mean /= d;
        for (int i = 0; i < d; i++)
            var += (xr[i] - mean) * (xr[i] - mean);
        var /= d;
        for (int i = 0; i < d; i++)
            y[(size_t)r * d + i] = (xr[i] - mean) / sqrt(var + LN_EPS) * w[i] + b[i];
    }
}

/* Multi-head self-attention over rows sequences of t positions of width d, h heads: q, k, v =
 * x w_in^T + b_in (in that order along w_in's rows), per head softmax(q k^T / sqrt(d / h)) over
 * every position j (causal: only j <= i), times v, the heads side by side through out_proj. */
static void ref_attention(int rows, int t, int d, int h, bool causal, const double *w_in,
                          const double *b_in, const double *w_out, const double *b_out,
                          const double *x, double *y)
{
    int hd = d / h;
    double *qkv = zalloc((size_t)t * 3 * d, sizeof *qkv);
    double *heads = zalloc((size_t)t * d, sizeof *heads), *p = zalloc((size_t)t, sizeof *p);
    for (int n = 0; n < rows; n++) {
        ref_linear(t, d, 3 * d, w_in, b_in, x + (size_t)n * t * d, qkv);
        for (int hh = 0; hh < h; hh++)
            for (int i = 0; i < t; i++) {
                int seen = causal ? i + 1 : t;
                double top = -INFINITY, sum = 0.0;
                for (int j = 0; j < seen; j++) {
                    double s = 0.0;
                    for (int e = 0; e < hd; e++)
                        s += qkv[i * 3 * d + hh * hd + e] * qkv[j * 3 * d + d + hh * hd + e];
                    p[j] = s / sqrt((double)hd);
                    top = p[j] > top ? p[j] : top;
                }
                for (int j = 0; j < seen; j++)
                    sum += (p[j] = exp(p[j] - top));
                for (int e = 0; e < hd; e++) {
                    double s = 0.0;
                    for (int j = 0; j < seen; j++)
                        s += p[j] / sum * qkv[j * 3 * d + 2 * d + hh * hd + e];
                    heads[i * d + hh * hd + e] = s;
                }
            }
        ref_linear(t, d, d, w_out, b_out, heads, y + (size_t)n * t * d);
    }
    free(qkv), free(heads), free(p);
}

/* nn.TransformerEncoderLayer(d, h, 4d, dropout=0, activation="gelu", batch_first=True,
 * norm_first) as its forward is written: post-LN x = norm1(x + sa(x)), x = norm2(x + ff(x));
 * pre-LN x = x + sa(norm1(x)), x = x + ff(norm2(x)); ff(x) = linear2(gelu(linear1(x))). */
static void ref_enc(const dp_layer *l, int rows, const double *p, const double *x, double *y)
{
    int t = l->in_shape.d[0], d = l->in_shape.d[1], h = l->args[0];
    bool norm_first = l->nargs > 1 && l->args[1];
    int n = rows * t;
    const double *w_in = tensor(l, p, "self_attn.in_proj_weight", 3 * d, d);
    const double *b_in = tensor(l, p, "self_attn.in_proj_bias", 3 * d, 0);
    const double *w_out = tensor(l, p, "self_attn.out_proj.weight", d, d);
    const double *b_out = tensor(l, p, "self_attn.out_proj.bias", d, 0);
    const double *w1 = tensor(l, p, "linear1.weight", 4 * d, d);
    const double *b1 = tensor(l, p, "linear1.bias", 4 * d, 0);
    const double *w2 = tensor(l, p, "linear2.weight", d, 4 * d);
    const double *b2 = tensor(l, p, "linear2.bias", d, 0);
    const double *n1w = tensor(l, p, "norm1.weight", d, 0), *n1b = tensor(l, p, "norm1.bias", d, 0);
    const double *n2w = tensor(l, p, "norm2.weight", d, 0), *n2b = tensor(l, p, "norm2.bias", d, 0);
    size_t nd = (size_t)n * d;
    double *a = zalloc(nd, sizeof *a), *b = zalloc(nd, sizeof *b), *h1 = zalloc(nd, sizeof *h1);
    double *wide = zalloc(nd * 4, sizeof *wide);
    /* the self-attention half: h1 */
    if (norm_first) {
        ref_ln(n, d, n1w, n1b, x, a);
        ref_attention(rows, t, d, h, false, w_in, b_in, w_out, b_out, a, b);
        for (size_t i = 0; i < nd; i++)
            h1[i] = x[i] + b[i];
    } else {
        ref_attention(rows, t, d, h, false, w_in, b_in, w_out, b_out, x, a);
        for (size_t i = 0; i < nd; i++)
            a[i] += x[i];
        ref_ln(n, d, n1w, n1b, a, h1);
    }
    /* the feed-forward half */
    const double *ff_in = h1;
    if (norm_first) {
        ref_ln(n, d, n2w, n2b, h1, a);
        ff_in = a;
    }
    ref_linear(n, d, 4 * d, w1, b1, ff_in, wide);
    for (size_t i = 0; i < nd * 4; i++)
        wide[i] = ref_gelu(wide[i]);
    ref_linear(n, 4 * d, d, w2, b2, wide, b);
    if (norm_first) {
        for (size_t i = 0; i < nd; i++)
            y[i] = h1[i] + b[i];
    } else {
        for (size_t i = 0; i < nd; i++)
            b[i] += h1[i];
        ref_ln(n, d, n2w, n2b, b, y);
    }
    free(a), free(b), free(h1), free(wide);
}

/* y = layer(x) in double over rows samples; p is the layer's own run of parameters. */
static void ref_layer(const dp_layer *l, int rows, const double *p, const double *x, double *y)
{
    if (l->ops == &dp_layer_gelu_erf) {
        for (size_t i = 0; i < (size_t)rows * l->in; i++)
            y[i] = ref_gelu(x[i]);
        return;
    }
    if (l->ops == &dp_layer_enc) {
        ref_enc(l, rows, p, x, y);
        return;
    }
    int t = l->in_shape.d[0], d = l->in_shape.d[1];
    if (l->ops == &dp_layer_mha) {
        ref_attention(rows, t, d, l->args[0], false, tensor(l, p, "in_proj_weight", 3 * d, d),
                      tensor(l, p, "in_proj_bias", 3 * d, 0),
                      tensor(l, p, "out_proj.weight", d, d), tensor(l, p, "out_proj.bias", d, 0),
                      x, y);
        return;
    }
    if (l->ops == &dp_layer_attn) {
        ref_attention(rows, t, d, l->args[0], true, tensor(l, p, "c_attn.weight", 3 * d, d),
                      tensor(l, p, "c_attn.bias", 3 * d, 0), tensor(l, p, "c_proj.weight", d, d),
                      tensor(l, p, "c_proj.bias", d, 0), x, y);
        return;
    }
    ck_abort_msg("no reference for %s", l->ops->name);
}

/* ---- one layer, run by hand (tests/layer_check.h) ---- */

/* x in [-2, 2]: none of these layers has a kink. */
static const layer_harness bert_layers = { .ref = ref_layer, .stream = 19, .x_gap = 0.0 };

/* Sequences of 5 positions of width 6 (3 heads of 2, 2 of 3, or 1 of 6). */
static const dp_shape seq_5x6 = { 2, { 5, 6 } };

/* ---- gelu_erf ---- */

enum { GELU_N = 12001 }; /* x from -6 to 6 in steps of 0.001 */

static float *gelu_grid(void)
{
    float *x = zalloc(GELU_N, sizeof *x);
    for (int i = 0; i < GELU_N; i++)
        x[i] = (float)(-6.0 + 12.0 * i / (GELU_N - 1));
    return x;
}

/* The backend's gelu_erf against x Phi(x) in double, at 12,001 points of [-6, 6]: within 1e-6
 * relative down to x = -0.5; below, within 5e-7 absolute. dp_erff is within 1.5e-7 of erf
 * (kernels.h), x / 2 times that at most; for negative x, 1 + erf(x / sqrt 2) also cancels in
 * float, as in PyTorch's own kernel (torch.nn.functional.gelu gives 0 at x = -6, where x Phi(x)
 * is -5.9e-9), so relative to values that small the error grows to 1. The values are dp_act_value's, the formula the CUDA kernel runs, and
 * they are not GELU's tanh approximation (which differs by 1.5e-4 at x = 1). */
START_TEST(test_gelu_erf_forward)
{
    dp_device dev;
    device_init(&dev);
    float *x = gelu_grid(), *y = zalloc(GELU_N, sizeof *y);
    dev.be->act_forward(&dev, DP_ACT_GELU_ERF, 0.0f, y, x, GELU_N);
    double worst_rel = 0.0;
    for (int i = 0; i < GELU_N; i++) {
        double want = ref_gelu(x[i]), err = fabs(y[i] - want);
        ck_assert_msg(y[i] == dp_act_value(DP_ACT_GELU_ERF, 0.0f, x[i]),
                      "x = %.9g: the CPU loop gives %.9g, the kernel formula %.9g", x[i], y[i],
                      dp_act_value(DP_ACT_GELU_ERF, 0.0f, x[i]));
        if (x[i] >= -0.5f) {
            ck_assert_msg(err <= 1e-6 * fabs(want), "gelu_erf(%.9g) = %.9g, want %.12g", x[i],
                          y[i], want);
            worst_rel = want != 0.0 ? fmax(worst_rel, err / fabs(want)) : worst_rel;
        } else {
            ck_assert_msg(err <= 5e-7, "gelu_erf(%.9g) = %.9g, want %.12g", x[i], y[i], want);
        }
    }
    ck_assert(worst_rel > 0.0); /* float, not double: some rounding shows */
    ck_assert(dp_act_value(DP_ACT_GELU_ERF, 0.0f, 0.0f) == 0.0f);
    ck_assert_msg(fabs(dp_act_value(DP_ACT_GELU_ERF, 0.0f, 1.0f) - 0.841344746) < 1e-6,
                  "gelu_erf(1) = %.9g", dp_act_value(DP_ACT_GELU_ERF, 0.0f, 1.0f));
    ck_assert(fabsf(dp_act_value(DP_ACT_GELU_ERF, 0.0f, 1.0f) -
                    dp_act_value(DP_ACT_GELU, 0.0f, 1.0f)) > 1e-4f);
    free(x), free(y);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* The backend's gelu_erf gradient (dy times Phi(x) + x phi(x)) against the derivative in
 * double within 1e-6, and against central differences of the engine's own float forward
 * (step 1/64: truncation and float rounding each below 3e-5, so within 1e-4); the reference
 * derivative itself against central differences of the reference (within 1e-8). */
START_TEST(test_gelu_erf_backward)
{
    dp_device dev;
    device_init(&dev);
    float *x = gelu_grid(), *y = zalloc(GELU_N, sizeof *y), *dy = zalloc(GELU_N, sizeof *dy);
    float *dx = zalloc(GELU_N, sizeof *dx), *ones = zalloc(GELU_N, sizeof *ones);
    float *slope = zalloc(GELU_N, sizeof *slope);
    dp_rng rng = dp_rng_stream(3, 100, 20);
    for (int i = 0; i < GELU_N; i++)
        dy[i] = (float)uniform(&rng, -1.0, 1.0), ones[i] = 1.0f;
    dev.be->act_forward(&dev, DP_ACT_GELU_ERF, 0.0f, y, x, GELU_N);
    dev.be->act_backward(&dev, DP_ACT_GELU_ERF, 0.0f, dx, x, y, dy, GELU_N);
    dev.be->act_backward(&dev, DP_ACT_GELU_ERF, 0.0f, slope, x, y, ones, GELU_N);
    const float h = 1.0f / 64.0f;
    for (int i = 0; i < GELU_N; i++) {
        double want = ref_gelu_grad(x[i]);
        ck_assert_msg(close_to(slope[i], want, 1e-6), "gelu_erf'(%.9g) = %.9g, want %.12g",
                      x[i], slope[i], want);
        ck_assert_msg(close_to(dx[i], want * dy[i], 1e-6), "dx at %.9g = %.9g, want %.12g",
                      x[i], dx[i], want * dy[i]);
        ck_assert(dx[i] == dp_act_grad(DP_ACT_GELU_ERF, 0.0f, x[i], y[i], dy[i]));
        float up = x[i] + h, down = x[i] - h;
        double fd = ((double)dp_act_value(DP_ACT_GELU_ERF, 0.0f, up) -
                     dp_act_value(DP_ACT_GELU_ERF, 0.0f, down)) / ((double)up - down);
        ck_assert_msg(fabs(slope[i] - fd) <= 1e-4,
                      "gelu_erf'(%.9g) = %.9g, the forward's difference %.9g", x[i], slope[i],
                      fd);
        double ref_fd = (ref_gelu(x[i] + FD_STEP) - ref_gelu(x[i] - FD_STEP)) / (2.0 * FD_STEP);
        ck_assert_msg(fabs(ref_fd - want) <= 1e-8, "reference: %.12g vs %.12g at %.9g", ref_fd,
                      want, (double)x[i]);
    }
    free(x), free(y), free(dy), free(dx), free(ones), free(slope);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* The gelu_erf layer on vectors and on sequences, with finite differences of the reference. */
START_TEST(test_gelu_erf_layer)
{
    check_one_layer(&bert_layers, "gelu_erf", (dp_shape){ 1, { 7 } }, 3, 1);
    check_one_layer(&bert_layers, "gelu_erf", seq_5x6, 2, 2);
}
END_TEST

/* ---- mha ---- */

/* mha:H against the bidirectional reference and finite differences, for 1, 2 and 3 heads. */
START_TEST(test_mha_grad)
{
    check_one_layer(&bert_layers, "mha:2", seq_5x6, 2, 3);
    check_one_layer(&bert_layers, "mha:3", seq_5x6, 2, 4);
    check_one_layer(&bert_layers, "mha:1", seq_5x6, 1, 5);
}
END_TEST

/* attn:H and mha:H on the same weights and inputs: attn matches the causal reference, and
 * differs from mha at every position but the last, where the causal mask hides nothing and the
 * two agree bit for bit. Also the names and shapes of their tensors, and mha's init
 * (nn.MultiheadAttention: in_proj_weight Xavier-uniform, out_proj.weight nn.Linear's, biases
 * zero). */
START_TEST(test_mha_vs_attn)
{
    dp_device dev;
    device_init(&dev);
    enum { ROWS = 3, T = 5, D = 6 };
    one_layer mha, attn;
    one_layer_init(&mha, &bert_layers, "mha:2", seq_5x6, ROWS, 7);
    one_layer_init(&attn, &bert_layers, "attn:2", seq_5x6, ROWS, 7);
    ck_assert_uint_eq(mha.np, attn.np);
    ck_assert(!memcmp(mha.params, attn.params, mha.np * sizeof *mha.params));
    ck_assert(!memcmp(mha.x, attn.x, mha.nx * sizeof *mha.x));
    one_layer_forward(&mha, &dev);
    one_layer_forward(&attn, &dev);
    double *yd = zalloc(attn.ny, sizeof *yd);
    ref_layer(attn.l, ROWS, attn.pd, attn.xd, yd);
    for (size_t i = 0; i < attn.ny; i++)
        ck_assert_msg(close_to(attn.y[i], yd[i], FWD_TOL), "attn: y[%zu] = %.9g, reference %.9g",
                      i, attn.y[i], yd[i]);
    for (int n = 0; n < ROWS; n++)
        for (int t = 0; t < T; t++) {
            const float *a = mha.y + ((size_t)n * T + t) * D, *b = attn.y + ((size_t)n * T + t) * D;
            double diff = 0.0;
            for (int e = 0; e < D; e++)
                diff = fmax(diff, fabs((double)a[e] - b[e]));
            if (t == T - 1)
                ck_assert_msg(!memcmp(a, b, D * sizeof *a),
                              "sample %d, last position: mha and attn differ by %g", n, diff);
            else
                ck_assert_msg(diff > 1e-3, "sample %d, position %d: mha equals attn (%g): no mask?",
                              n, t, diff);
        }
    /* names and shapes: nn.MultiheadAttention's and nanoGPT's */
    static const struct {
        const char *mha, *attn;
        int ndim, d0, d1;
    } want[4] = { { "in_proj_weight", "c_attn.weight", 2, 3 * D, D },
                  { "in_proj_bias", "c_attn.bias", 1, 3 * D, 0 },
                  { "out_proj.weight", "c_proj.weight", 2, D, D },
                  { "out_proj.bias", "c_proj.bias", 1, D, 0 } };
    dp_tensor_info tm[DP_MAX_LAYER_TENSORS], ta[DP_MAX_LAYER_TENSORS];
    ck_assert_int_eq(mha.l->ops->tensors(mha.l, tm), 4);
    ck_assert_int_eq(attn.l->ops->tensors(attn.l, ta), 4);
    for (int k = 0; k < 4; k++) {
        ck_assert_str_eq(tm[k].suffix, want[k].mha);
        ck_assert_str_eq(ta[k].suffix, want[k].attn);
        ck_assert_int_eq(tm[k].ndim, want[k].ndim);
        ck_assert_int_eq(tm[k].shape[0], want[k].d0);
        if (want[k].ndim == 2)
            ck_assert_int_eq(tm[k].shape[1], want[k].d1);
    }
    /* init */
    float *p = zalloc(mha.np, sizeof *p);
    mha.l->ops->init(mha.l, p, 17);
    double xavier = sqrt(6.0 / (D + 3 * D)), linear = 1.0 / sqrt((double)D), top[4] = { 0 };
    for (int k = 0; k < 4; k++)
        for (size_t i = 0; i < tm[k].count; i++)
            top[k] = fmax(top[k], fabs(p[tm[k].offset + i]));
    ck_assert_msg(top[0] <= xavier && top[0] > 0.8 * xavier, "in_proj_weight: max %g, bound %g",
                  top[0], xavier);
    ck_assert_msg(top[2] <= linear && top[2] > 0.7 * linear, "out_proj.weight: max %g, bound %g",
                  top[2], linear);
    ck_assert_msg(top[1] == 0.0 && top[3] == 0.0, "biases %g %g, want 0", top[1], top[3]);
    free(p);
    free(yd);
    one_layer_free(&mha);
    one_layer_free(&attn);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* ---- enc ---- */

/* enc:H post-LayerNorm (the default and NORM_FIRST 0) and enc:H:1 pre-LayerNorm against
 * nn.TransformerEncoderLayer's formulas and finite differences of them. */
START_TEST(test_enc_grad)
{
    check_one_layer(&bert_layers, "enc:2", seq_5x6, 2, 8);
    check_one_layer(&bert_layers, "enc:3:0", seq_5x6, 2, 9);
    check_one_layer(&bert_layers, "enc:2:1", seq_5x6, 2, 10);
    check_one_layer(&bert_layers, "enc:1:1", seq_5x6, 1, 11);
}
END_TEST

/* An empty pass (a short last batch's empty micro-batch or shard): enc's and mha's backward
 * without accumulate leave every gradient 0 (not the garbage that was there), with accumulate
 * leave them as they were; a sequence of one position (attention over itself alone) matches
 * the reference and its differences. */
START_TEST(test_enc_edges)
{
    const char *specs[] = { "enc:2", "enc:2:1", "mha:3" };
    for (size_t k = 0; k < sizeof specs / sizeof *specs; k++) {
        dp_device dev;
        device_init(&dev);
        one_layer c;
        one_layer_init(&c, &bert_layers, specs[k], seq_5x6, 2, 12);
        c.rows = 0;
        for (size_t i = 0; i < c.np; i++)
            c.grads[i] = 1234.5f;
        one_layer_forward(&c, &dev);
        one_layer_backward(&c, &dev, 1, 1);
        for (size_t i = 0; i < c.np; i++)
            ck_assert_msg(c.grads[i] == 1234.5f, "%s, 0 rows, accumulate: dparam[%zu] = %g",
                          specs[k], i, c.grads[i]);
        one_layer_backward(&c, &dev, 0, 1);
        for (size_t i = 0; i < c.np; i++)
            ck_assert_msg(c.grads[i] == 0.0f, "%s, 0 rows: dparam[%zu] = %g, want 0", specs[k],
                          i, c.grads[i]);
        one_layer_free(&c);
        dp_cpu_device_destroy(&dev);
    }
    check_one_layer(&bert_layers, "enc:2", (dp_shape){ 2, { 1, 6 } }, 3, 13);
    check_one_layer(&bert_layers, "enc:3:1", (dp_shape){ 2, { 1, 6 } }, 2, 14);
    check_one_layer(&bert_layers, "mha:2", (dp_shape){ 2, { 1, 4 } }, 2, 15);
}
END_TEST

/* The state_dict of nn.TransformerEncoderLayer(8, 2, 32, ...), as torch 1.13 lists it. */
static const struct {
    const char *name;
    int ndim, d0, d1;
} enc_names[12] = {
    { "self_attn.in_proj_weight", 2, 24, 8 },  { "self_attn.in_proj_bias", 1, 24, 0 },
    { "self_attn.out_proj.weight", 2, 8, 8 },  { "self_attn.out_proj.bias", 1, 8, 0 },
    { "linear1.weight", 2, 32, 8 },            { "linear1.bias", 1, 32, 0 },
    { "linear2.weight", 2, 8, 32 },            { "linear2.bias", 1, 8, 0 },
    { "norm1.weight", 1, 8, 0 },               { "norm1.bias", 1, 8, 0 },
    { "norm2.weight", 1, 8, 0 },               { "norm2.bias", 1, 8, 0 },
};

/* The position of name among enc_names, or -1. */
static int enc_name_index(const char *name)
{
    for (int k = 0; k < 12; k++)
        if (!strcmp(enc_names[k].name, name))
            return k;
    return -1;
}

/* enc's tensors (post- and pre-LN) are exactly PyTorch's: the same 12 names, each once, with
 * PyTorch's shapes, tiling the layer's run of parameters; in a model they are prefixed by the
 * layer's index. The init is nn.TransformerEncoderLayer's (LayerNorms 1 and 0, attention as
 * mha's, linears nn.Linear's), and two encoder layers start from different weights. */
START_TEST(test_enc_tensors)
{
    enum { T = 4, D = 8 };
    for (int norm_first = 0; norm_first < 2; norm_first++) {
        const char *spec = norm_first ? "embed:11:8, enc:2:1, enc:2:1, linear:11"
                                      : "embed:11:8, enc:2, enc:2, linear:11";
        dp_model m;
        dp_err err;
        ck_assert_msg(dp_model_parse_shape(&m, spec, (dp_shape){ 1, { T } }, 11, &err) == 0,
                      "%s: %s", spec, err.msg);
        const dp_layer *l = &m.layers[1];
        ck_assert_ptr_eq(l->ops, &dp_layer_enc);
        /* the list reads back as written (the blocks' insides unsaid), and the kinds inside
         * are found (setup refuses mha on next-byte prediction by this) */
        char desc[128];
        dp_model_describe(&m, desc, sizeof desc);
        ck_assert_str_eq(desc, spec);
        ck_assert(dp_model_has(&m, &dp_layer_mha) && dp_model_has(&m, &dp_layer_gelu_erf));
        ck_assert(!dp_model_has(&m, &dp_layer_attn) && !dp_model_has(&m, &dp_layer_gelu));
        ck_assert_uint_eq(l->param_count, 12 * D * D + 13 * D);
        dp_tensor_info t[DP_MAX_LAYER_TENSORS];
        int n = l->ops->tensors(l, t);
        ck_assert_int_eq(n, 12);
        int seen[12] = { 0 };
        size_t covered = 0;
        for (int i = 0; i < n; i++) {
            int k = enc_name_index(t[i].suffix);
            ck_assert_msg(k >= 0, "%s: tensor \"%s\" is not PyTorch's", spec, t[i].suffix);
            seen[k]++;
            ck_assert_msg(t[i].ndim == enc_names[k].ndim && t[i].shape[0] == enc_names[k].d0 &&
                              (t[i].ndim == 1 || t[i].shape[1] == enc_names[k].d1),
                          "%s: %s has the wrong shape", spec, t[i].suffix);
            ck_assert_uint_eq(t[i].count,
                              (size_t)enc_names[k].d0 * (enc_names[k].d1 ? enc_names[k].d1 : 1));
            ck_assert(!t[i].buffer);
            /* the runs do not overlap: each starts where another ends, or at 0 */
            bool starts = t[i].offset == 0;
            for (int j = 0; j < n; j++)
                starts = starts || t[j].offset + t[j].count == t[i].offset;
            ck_assert_msg(starts, "%s: %s starts inside another tensor", spec, t[i].suffix);
            covered += t[i].count;
        }
        for (int k = 0; k < 12; k++)
            ck_assert_msg(seen[k] == 1, "%s: %s seen %d times", spec, enc_names[k].name, seen[k]);
        ck_assert_uint_eq(covered, l->param_count);

        dp_model_tensor mt[64];
        int total = dp_model_tensors(&m, mt);
        ck_assert_int_eq(total, 1 + 12 + 12 + 2);
        for (int i = 1; i <= 12; i++) {
            ck_assert_msg(!strncmp(mt[i].name, "1.", 2) && enc_name_index(mt[i].name + 2) >= 0,
                          "%s: model tensor %d is \"%s\"", spec, i, mt[i].name);
            ck_assert_msg(!strncmp(mt[12 + i].name, "2.", 2) &&
                              enc_name_index(mt[12 + i].name + 2) >= 0,
                          "%s: model tensor %d is \"%s\"", spec, 12 + i, mt[12 + i].name);
        }

        float *p = zalloc(m.n_params, sizeof *p);
        dp_model_init_params(&m, p, 23);
        for (int i = 0; i < n; i++) {
            const float *v = p + l->param_offset + t[i].offset;
            const char *name = t[i].suffix;
            double fixed = -1.0, bound = 1.0 / sqrt((double)D), top = 0.0;
            if (!strcmp(name, "norm1.weight") || !strcmp(name, "norm2.weight"))
                fixed = 1.0;
            else if (!strncmp(name, "norm", 4) || !strcmp(name, "self_attn.in_proj_bias") ||
                     !strcmp(name, "self_attn.out_proj.bias"))
                fixed = 0.0;
            else if (!strcmp(name, "self_attn.in_proj_weight"))
                bound = sqrt(6.0 / (D + 3 * D)); /* Xavier-uniform over [3D, D] */
            else if (!strncmp(name, "linear2.", 8))
                bound = 1.0 / sqrt(4.0 * D); /* nn.Linear: 1 / sqrt(fan_in) */
            for (size_t e = 0; e < t[i].count; e++) {
                if (fixed >= 0.0)
                    ck_assert_msg(v[e] == fixed, "%s: %s[%zu] = %g, want %g", spec, name, e, v[e],
                                  fixed);
                top = fmax(top, fabs(v[e]));
            }
            if (fixed < 0.0)
                ck_assert_msg(top <= bound && top > 0.5 * bound, "%s: %s max %g, bound %g", spec,
                              name, top, bound);
        }
        const dp_layer *l2 = &m.layers[2];
        ck_assert_msg(memcmp(p + l->param_offset, p + l2->param_offset,
                             l->param_count * sizeof *p),
                      "%s: both encoder layers start from the same weights", spec);
        free(p);
        dp_model_free(&m);
    }
}
END_TEST

/* What enc and mha refuse, and why. */
START_TEST(test_enc_refusals)
{
    static const struct {
        const char *spec;
        dp_shape in;
        const char *needle;
    } bad[] = {
        { "enc:4:2", { 2, { 4, 8 } }, "NORM_FIRST 0 (post-LayerNorm, as BERT) or 1" },
        { "enc:2:-1", { 2, { 4, 8 } }, "expected a whole number" },
        { "res(enc:2)", { 2, { 4, 8 } }, "enc goes in the model's own list, not inside res" },
        { "res(ln, enc:2)", { 2, { 4, 8 } }, "not inside res" },
        { "enc:3", { 2, { 4, 8 } }, "3 heads do not divide the width 8" },
        { "enc:0", { 2, { 4, 8 } }, "enc needs at least one head" },
        { "mha:5", { 2, { 4, 8 } }, "5 heads do not divide the width 8" },
        { "enc:2", { 1, { 8 } }, "enc needs sequences" },
        { "mha:2", { 1, { 8 } }, "needs sequences" },
        { "enc", { 2, { 4, 8 } }, "enc:HEADS[:NORM_FIRST]" },
        { "enc:2:1:1", { 2, { 4, 8 } }, "enc:HEADS[:NORM_FIRST]" },
        { "gelu_erf:1", { 2, { 4, 8 } }, "takes no numbers" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        dp_model m;
        dp_err err;
        err.msg[0] = '\0';
        ck_assert_msg(dp_model_parse_shape(&m, bad[i].spec, bad[i].in, 8, &err) < 0,
                      "\"%s\" was accepted", bad[i].spec);
        ck_assert_msg(err.msg[0] && strstr(err.msg, bad[i].needle), "\"%s\": \"%s\" lacks \"%s\"",
                      bad[i].spec, err.msg, bad[i].needle);
    }
    /* and what they take: both NORM_FIRST values, and enc after embed and pos */
    const char *good[] = { "enc:2:0", "enc:2:1", "enc:8", "mha:4, enc:1" };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        dp_model m;
        dp_err err;
        ck_assert_msg(dp_model_parse_shape(&m, good[i], (dp_shape){ 2, { 4, 8 } }, 8, &err) == 0,
                      "\"%s\": %s", good[i], err.msg);
        dp_model_free(&m);
    }
}
END_TEST

/* ---- the masks ---- */

/* BERT's shares as thresholds on 24 random bits, from the shares themselves (not the engine's
 * constants): chosen 0.15; of those masked 0.8, a random byte 0.1, kept 0.1. */
#define SHARE_BITS(p) ((uint32_t)((p) * 16777216.0))

/* What the rule says position j of row r becomes: -1 (not chosen), the mask token 256, a
 * random byte, or `byte` (kept); *kind gets 0, 1, 2 or 3 for those four. */
static int ref_mlm(dp_noise_args a, uint64_t r, uint64_t j, int byte, int *kind)
{
    uint64_t h = dp_noise_bits(a, r, j);
    if ((uint32_t)(h >> 40) >= SHARE_BITS(0.15))
        return *kind = 0, -1;
    uint32_t action = (uint32_t)(h >> 16) & 0xffffffu;
    if (action < SHARE_BITS(0.8))
        return *kind = 1, 256;
    if (action < SHARE_BITS(0.9))
        return *kind = 2, (int)(h & 0xff);
    return *kind = 3, byte;
}

/* Whether a share of `got` out of n is within 4 standard errors of p. */
static void check_share(const char *what, long got, long n, double p)
{
    double share = (double)got / n, se = sqrt(p * (1.0 - p) / n);
    ck_assert_msg(fabs(share - p) <= 4.0 * se, "%s: %ld of %ld = %.6f, want %.4f +- %.6f", what,
                  got, n, share, p, 4.0 * se);
}

/* The CPU backend's mlm_mask over 1,000 rows of 1,000 positions of random bytes: every
 * position as the rule says (and as dp_mlm_input says); chosen 15 %, and of those 80 % masked,
 * 10 % random, 10 % kept, each within 4 standard errors; the random bytes spread evenly
 * (chi-square over 256 bins below 400, where 255 is its mean and 23 its deviation); a chosen
 * position keeps its label, an unchosen one gets label -1 and keeps its input. */
START_TEST(test_mlm_mask_statistics)
{
    dp_device dev;
    device_init(&dev);
    enum { ROWS = 1000, N = 1000 };
    size_t total = (size_t)ROWS * N;
    float *x = zalloc(total, sizeof *x);
    int32_t *y = zalloc(total, sizeof *y);
    unsigned char *bytes = zalloc(total, 1);
    dp_rng rng = dp_rng_stream(4, 100, 21);
    for (size_t i = 0; i < total; i++) {
        bytes[i] = (unsigned char)dp_rng_below(&rng, 256);
        x[i] = (float)bytes[i];
        y[i] = bytes[i];
    }
    dp_noise_args a = { 7, DP_NOISE_MLM, 3, 640 };
    dev.be->mlm_mask(&dev, x, y, ROWS, N, a);
    long count[4] = { 0 }, unchanged = 0, hist[256] = { 0 };
    for (int r = 0; r < ROWS; r++)
        for (int j = 0; j < N; j++) {
            size_t i = (size_t)r * N + j;
            int kind, want = ref_mlm(a, (uint64_t)r, (uint64_t)j, bytes[i], &kind);
            count[kind]++;
            ck_assert_int_eq(dp_mlm_input(a, (uint64_t)r, (uint64_t)j, bytes[i]), want);
            if (kind == 0) {
                ck_assert_msg(y[i] == -1 && x[i] == (float)bytes[i],
                              "[%d, %d] not chosen: input %g label %d (byte %d)", r, j, x[i],
                              y[i], bytes[i]);
                continue;
            }
            ck_assert_msg(y[i] == bytes[i] && x[i] == (float)want,
                          "[%d, %d] chosen (%d): input %g label %d, want %d and %d", r, j, kind,
                          x[i], y[i], want, bytes[i]);
            unchanged += x[i] == (float)bytes[i];
            if (kind == 2) {
                ck_assert(want >= 0 && want < 256);
                hist[want]++;
            }
        }
    long chosen = count[1] + count[2] + count[3];
    check_share("chosen", chosen, (long)total, 0.15);
    check_share("masked among chosen", count[1], chosen, 0.8);
    check_share("random among chosen", count[2], chosen, 0.1);
    check_share("kept among chosen", count[3], chosen, 0.1);
    /* from the outputs alone: a random byte equal to the original looks kept */
    check_share("unchanged among chosen", unchanged, chosen, 0.1 + 0.1 / 256);
    double expect = count[2] / 256.0, chi2 = 0.0;
    for (int b = 0; b < 256; b++)
        chi2 += (hist[b] - expect) * (hist[b] - expect) / expect;
    ck_assert_msg(chi2 < 400.0, "random bytes: chi-square %.1f over 256 bins", chi2);
    free(x), free(y), free(bytes);
    dp_cpu_device_destroy(&dev);
}
END_TEST

enum { KROWS = 8, KT = 64 }; /* a batch of the key tests */

/* The mlm objective's transform of a fresh copy of the batch (x and labels from bytes) for
 * rows [r0, r1) with key {seed, step, sample0} into x and y at those rows; x or y NULL skips. */
static void mlm_transform_rows(dp_device *dev, const unsigned char *bytes, float *x, int32_t *y,
                               int r0, int r1, dp_step_key key)
{
    for (int i = r0 * KT; i < r1 * KT; i++) {
        if (x)
            x[i] = (float)bytes[i];
        if (y)
            y[i] = bytes[i];
    }
    dp_objective_mlm.transform(dev, &key, x ? x + (size_t)r0 * KT : NULL, KT,
                               y ? y + (size_t)r0 * KT : NULL, KT, r1 - r0);
}

/* The masks follow from (seed, step, global place, position) alone: rows [0, 8) at once equal
 * rows [0, 3) and [3, 8) done apart (sample0 0 and 3), in training and in evaluation; the
 * inputs' masks without the labels and the labels' without the inputs are the same as both
 * together (a pipeline's first and last stage); every position is as the rule says for its
 * global place; another seed, step or place masks otherwise; the test split's masks (step 0)
 * are the same whatever the seed, and not a training step's. */
START_TEST(test_mlm_mask_keys)
{
    dp_device dev;
    device_init(&dev);
    size_t n = (size_t)KROWS * KT;
    unsigned char bytes[KROWS * KT];
    dp_rng rng = dp_rng_stream(5, 100, 22);
    for (size_t i = 0; i < n; i++)
        bytes[i] = (unsigned char)dp_rng_below(&rng, 256);
    float xa[KROWS * KT], xb[KROWS * KT], xc[KROWS * KT];
    int32_t ya[KROWS * KT], yb[KROWS * KT], yc[KROWS * KT];
    const dp_step_key keys[] = { { 11, 5, 0 }, { 11, 5, 200 }, { 0, 0, 0 }, { 3, 0, 40 } };
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        dp_step_key key = keys[k], second = key;
        second.sample0 += 3;
        mlm_transform_rows(&dev, bytes, xa, ya, 0, KROWS, key);
        mlm_transform_rows(&dev, bytes, xb, yb, 0, 3, key);
        mlm_transform_rows(&dev, bytes, xb, yb, 3, KROWS, second);
        ck_assert_msg(!memcmp(xa, xb, sizeof xa) && !memcmp(ya, yb, sizeof ya),
                      "key %zu: masking rows 0-2 and 3-7 apart differs from all at once", k);
        mlm_transform_rows(&dev, bytes, xc, NULL, 0, KROWS, key);
        mlm_transform_rows(&dev, bytes, NULL, yc, 0, KROWS, key);
        ck_assert_msg(!memcmp(xa, xc, sizeof xa) && !memcmp(ya, yc, sizeof ya),
                      "key %zu: the inputs or the labels alone are masked otherwise", k);
        dp_noise_args a = { 0, DP_NOISE_MLM_TEST, 0, 0 }; /* evaluation's, at step 0 */
        if (key.step)
            a = (dp_noise_args){ key.seed, DP_NOISE_MLM, (uint64_t)key.step, 0 };
        long chosen = 0;
        for (int r = 0; r < KROWS; r++)
            for (int j = 0; j < KT; j++) {
                size_t i = (size_t)r * KT + j;
                int kind, want = ref_mlm(a, (uint64_t)(key.sample0 + r), (uint64_t)j, bytes[i],
                                         &kind);
                ck_assert_msg(want < 0 ? ya[i] == -1 && xa[i] == bytes[i]
                                       : ya[i] == bytes[i] && xa[i] == (float)want,
                              "key %zu: [%d, %d] is %g / %d, the rule says %d", k, r, j, xa[i],
                              ya[i], want);
                chosen += want >= 0;
            }
        ck_assert(chosen > 0 && chosen < (long)n);
    }
    /* the same positions under other keys */
    mlm_transform_rows(&dev, bytes, xa, ya, 0, KROWS, (dp_step_key){ 11, 5, 0 });
    const dp_step_key others[] = { { 12, 5, 0 }, { 11, 6, 0 }, { 11, 5, 1 }, { 11, 0, 0 } };
    for (size_t k = 0; k < sizeof others / sizeof *others; k++) {
        mlm_transform_rows(&dev, bytes, xb, yb, 0, KROWS, others[k]);
        ck_assert_msg(memcmp(ya, yb, sizeof ya), "other key %zu chose the same positions", k);
    }
    /* the test split's: seed and step do not matter (step 0 is evaluation) */
    mlm_transform_rows(&dev, bytes, xa, ya, 0, KROWS, (dp_step_key){ 0, 0, 16 });
    mlm_transform_rows(&dev, bytes, xb, yb, 0, KROWS, (dp_step_key){ 987654321, 0, 16 });
    ck_assert(!memcmp(xa, xb, sizeof xa) && !memcmp(ya, yb, sizeof ya));
    for (size_t i = 0; i < n; i++)
        xc[i] = bytes[i], yc[i] = bytes[i];
    dev.be->mlm_mask(&dev, xc, yc, KROWS, KT, (dp_noise_args){ 0, DP_NOISE_MLM_TEST, 0, 16 });
    ck_assert(!memcmp(xa, xc, sizeof xa) && !memcmp(ya, yc, sizeof ya));
    for (size_t i = 0; i < n; i++)
        xc[i] = bytes[i], yc[i] = bytes[i];
    dev.be->mlm_mask(&dev, xc, yc, KROWS, KT, (dp_noise_args){ 0, DP_NOISE_MLM, 0, 16 });
    ck_assert_msg(memcmp(ya, yc, sizeof ya), "the test purpose masks as training does");
    /* none of a pass's rows: nothing written */
    dp_objective_mlm.transform(&dev, &(dp_step_key){ 1, 1, 0 }, NULL, KT, NULL, KT, 0);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* ---- the objective ---- */

/* The chosen positions of a global batch by the rule. */
static long ref_chosen(dp_noise_args a, int rows, int targets)
{
    long n = 0;
    int kind;
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < targets; j++)
            n += ref_mlm(a, (uint64_t)r, (uint64_t)j, 0, &kind) >= 0;
    return n;
}

/* mlm's grad_scale is 1 / the chosen positions of the global batch (the mean over them), and
 * 0 for a batch with none (found by search: one row of one target). The table: three sums, the
 * third counting the loss's terms, a transform, softmax cross-entropy as the loss. */
START_TEST(test_mlm_grad_scale)
{
    const dp_objective *o = dp_objective_find("mlm");
    ck_assert_ptr_eq(o, &dp_objective_mlm);
    ck_assert_int_eq(o->n_stats, 3);
    ck_assert_int_eq(o->count_stat, 2);
    ck_assert_ptr_nonnull(o->transform);
    ck_assert_int_eq(dp_objective_classify.count_stat, 0);
    const struct {
        dp_step_key key;
        int rows, targets;
    } cases[] = { { { 3, 7, 0 }, 32, 128 }, { { 3, 8, 0 }, 32, 128 }, { { 9, 1, 0 }, 5, 17 },
                  { { 9, 2, 0 }, 1, 64 } };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        dp_step_key key = cases[k].key;
        long n = ref_chosen((dp_noise_args){ key.seed, DP_NOISE_MLM, (uint64_t)key.step, 0 },
                            cases[k].rows, cases[k].targets);
        float got = o->grad_scale(&key, cases[k].rows, cases[k].targets);
        ck_assert_msg(n > 0 && got == 1.0f / (float)n, "case %zu: grad_scale %.9g, want 1/%ld",
                      k, got, n);
    }
    /* one row of one target: chosen with probability 0.15; find a step of each kind */
    long none = 0, one = 0;
    for (long step = 1; step < 1000 && (!none || !one); step++) {
        long n = ref_chosen((dp_noise_args){ 4, DP_NOISE_MLM, (uint64_t)step, 0 }, 1, 1);
        if (!n && !none)
            none = step;
        if (n && !one)
            one = step;
    }
    ck_assert(none && one);
    float zero = o->grad_scale(&(dp_step_key){ 4, none, 0 }, 1, 1);
    float full = o->grad_scale(&(dp_step_key){ 4, one, 0 }, 1, 1);
    ck_assert_msg(zero == 0.0f, "step %ld: nothing chosen, grad_scale %g (want 0)", none, zero);
    ck_assert_msg(full == 1.0f, "step %ld: one chosen, grad_scale %g (want 1)", one, full);
}
END_TEST

/* softmax_xent with labels -1 (through the mlm objective's loss, and the backend's kernel):
 * those rows get an exact zero gradient, add no loss and are not counted; the others give what
 * a call over them alone gives; without dlogits the sums are the same; a batch of only -1 adds
 * nothing. */
START_TEST(test_xent_ignored_labels)
{
    dp_device dev;
    device_init(&dev);
    enum { ROWS = 7, C = 5 };
    const int32_t labels[ROWS] = { 2, -1, 0, -1, 4, 1, -1 };
    float logits[ROWS * C], kept[ROWS * C], dl[ROWS * C], dk[ROWS * C];
    int32_t kept_labels[ROWS];
    dp_rng rng = dp_rng_stream(6, 100, 23);
    for (int i = 0; i < ROWS * C; i++)
        logits[i] = (float)uniform(&rng, -3.0, 3.0);
    int m = 0;
    for (int r = 0; r < ROWS; r++)
        if (labels[r] >= 0) {
            memcpy(kept + m * C, logits + r * C, C * sizeof *kept);
            kept_labels[m++] = labels[r];
        }
    for (int i = 0; i < ROWS * C; i++)
        dl[i] = 7.0f; /* garbage the kernel must overwrite */
    float stats[DP_OBJECTIVE_STATS] = { 0 }, want[DP_OBJECTIVE_STATS] = { 0 };
    dp_objective_mlm.loss(&dev, logits, labels, ROWS, C, 0.25f, dl, stats);
    dev.be->softmax_xent(&dev, kept, kept_labels, m, C, 0.25f, dk, want);
    ck_assert_int_eq(m, 4);
    ck_assert_msg(stats[2] == 4.0f && want[2] == 4.0f, "counted %g and %g, want 4", stats[2],
                  want[2]);
    ck_assert_msg(close_to(stats[0], want[0], 1e-6) && stats[1] == want[1],
                  "loss %.9g correct %g; the kept rows alone: %.9g %g", stats[0], stats[1],
                  want[0], want[1]);
    ck_assert(stats[3] == 0.0f);
    double loss = 0.0; /* the kept rows' loss by hand */
    for (int r = 0; r < m; r++) {
        double sum = 0.0;
        for (int c = 0; c < C; c++)
            sum += exp(kept[r * C + c]);
        loss += log(sum) - kept[r * C + kept_labels[r]];
    }
    ck_assert_msg(close_to(stats[0], loss, 1e-5), "loss %.9g, by hand %.9g", stats[0], loss);
    for (int r = 0, k = 0; r < ROWS; r++)
        for (int c = 0; c < C; c++) {
            float g = dl[r * C + c];
            if (labels[r] < 0)
                ck_assert_msg(g == 0.0f, "ignored row %d: dlogits[%d] = %g", r, c, g);
            else
                ck_assert_msg(close_to(g, dk[k * C + c], 1e-6), "row %d: dlogits[%d] %g vs %g",
                              r, c, g, dk[k * C + c]);
            k += labels[r] >= 0 && c == C - 1;
        }
    float no_grad[DP_OBJECTIVE_STATS] = { 0 };
    dev.be->softmax_xent(&dev, logits, labels, ROWS, C, 0.25f, NULL, no_grad);
    ck_assert_msg(close_to(no_grad[0], stats[0], 1e-6) && no_grad[1] == stats[1] &&
                      no_grad[2] == stats[2],
                  "without dlogits: %g %g %g, with: %g %g %g", no_grad[0], no_grad[1],
                  no_grad[2], stats[0], stats[1], stats[2]);
    const int32_t none[3] = { -1, -1, -1 };
    float nothing[DP_OBJECTIVE_STATS] = { 0 };
    for (int i = 0; i < 3 * C; i++)
        dl[i] = 7.0f;
    dev.be->softmax_xent(&dev, logits, none, 3, C, 1.0f, dl, nothing);
    ck_assert(nothing[0] == 0.0f && nothing[1] == 0.0f && nothing[2] == 0.0f);
    for (int i = 0; i < 3 * C; i++)
        ck_assert(dl[i] == 0.0f);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* A whole model, embed, pos, enc and linear, in double: logits [rows * t, classes]. */
static void ref_model(const dp_model *m, int rows, const double *params, const double *x,
                      double *logits)
{
    double *cur = zalloc((size_t)rows * m->in_features, sizeof *cur);
    memcpy(cur, x, (size_t)rows * m->in_features * sizeof *cur);
    for (int i = 0; i < m->n_layers; i++) {
        const dp_layer *l = &m->layers[i];
        const double *w = params + l->param_offset;
        bool last = i == m->n_layers - 1;
        double *out = last ? logits : zalloc((size_t)rows * l->out, sizeof *out);
        size_t n = (size_t)rows * l->in;
        if (l->ops == &dp_layer_embed) {
            int d = l->args[1];
            for (size_t k = 0; k < n; k++)
                for (int e = 0; e < d; e++)
                    out[k * d + e] = w[(size_t)cur[k] * d + e];
        } else if (l->ops == &dp_layer_pos) {
            for (size_t k = 0; k < n; k++)
                out[k] = cur[k] + w[k % l->in];
        } else if (l->ops == &dp_layer_linear) {
            int in = l->in_shape.d[l->in_shape.ndim - 1], o = l->args[0];
            ref_linear((int)(n / in), in, o, w, w + (size_t)o * in, cur, out);
        } else {
            ref_layer(l, rows, w, cur, out);
        }
        free(cur);
        cur = last ? NULL : out;
    }
}

/* The mean cross-entropy over the positions whose label is not -1 (0 for none). */
static double ref_masked_loss(const dp_model *m, int rows, const double *params, const double *x,
                              const int32_t *labels)
{
    int positions = rows * m->targets;
    double *z = zalloc((size_t)positions * m->classes, sizeof *z), loss = 0.0;
    int counted = 0;
    ref_model(m, rows, params, x, z);
    for (int r = 0; r < positions; r++) {
        if (labels[r] < 0)
            continue;
        const double *zr = z + (size_t)r * m->classes;
        double top = zr[0], sum = 0.0;
        for (int c = 1; c < m->classes; c++)
            top = zr[c] > top ? zr[c] : top;
        for (int c = 0; c < m->classes; c++)
            sum += exp(zr[c] - top);
        loss += top + log(sum) - zr[labels[r]];
        counted++;
    }
    free(z);
    return counted ? loss / counted : 0.0;
}

/* A tiny BERT (embed:257:6, pos, enc:2, linear:256 on 5 bytes) with the mlm objective, through
 * a stage as a worker runs it: the objective's transform masks the inputs and labels, forward,
 * the loss with the objective's grad_scale, backward. The summed loss over the stage's count of
 * chosen positions is the reference's mean cross-entropy over them; every parameter's gradient
 * is the finite difference of that mean (the mask token's embedding row included, the rows of
 * bytes that never occur exactly 0). */
START_TEST(test_mlm_stage)
{
    enum { ROWS = 3, T = 5, CLASSES = 256 };
    dp_device dev;
    device_init(&dev);
    dp_model m;
    dp_err err;
    ck_assert_msg(dp_model_parse_shape(&m, "embed:257:6, pos, enc:2, linear:256",
                                       (dp_shape){ 1, { T } }, CLASSES, &err) == 0,
                  "%s", err.msg);
    m.objective = &dp_objective_mlm;
    ck_assert_int_eq(m.targets, T);
    dp_optim_config oc = dp_optim_defaults();
    dp_stage s;
    ck_assert_msg(dp_stage_create(&s, &m, &dev, 0, m.n_layers, ROWS, 1, &oc, &err) == 0, "%s",
                  err.msg);
    /* a step that chooses at least 3 positions, one of them masked */
    dp_step_key key = { 2, 0, 0 };
    long chosen = 0;
    int masked = 0;
    while (chosen < 3 || !masked) {
        key.step++;
        dp_noise_args a = { key.seed, DP_NOISE_MLM, (uint64_t)key.step, 0 };
        chosen = ref_chosen(a, ROWS, T);
        masked = 0;
        for (int r = 0; r < ROWS; r++)
            for (int j = 0; j < T; j++)
                masked += dp_mlm_input(a, (uint64_t)r, (uint64_t)j, 0) == DP_MLM_MASK_TOKEN;
    }
    size_t np = m.n_params, nx = (size_t)ROWS * T;
    float *p = zalloc(np, sizeof *p), *g = zalloc(np, sizeof *g);
    double *pd = zalloc(np, sizeof *pd), xd[ROWS * T];
    dp_rng rng = dp_rng_stream(8, 100, 24);
    for (size_t i = 0; i < np; i++)
        pd[i] = p[i] = (float)uniform(&rng, -0.5, 0.5);
    dp_stage_upload_params(&s, p);
    float *x = dp_stage_input(&s, 0);
    int32_t *y = dp_stage_labels(&s, 0), labels[ROWS * T];
    for (size_t i = 0; i < nx; i++) {
        int byte = (int)dp_rng_below(&rng, 8) * 3; /* bytes 0, 3, ..., 21: most rows unused */
        x[i] = (float)byte;
        y[i] = byte;
    }
    const dp_objective *o = m.objective;
    o->transform(&dev, &key, x, dp_stage_in_width(&s), y, m.targets, ROWS);
    for (size_t i = 0; i < nx; i++)
        xd[i] = x[i], labels[i] = y[i];
    float scale = o->grad_scale(&key, ROWS, m.targets);
    ck_assert(scale == 1.0f / (float)chosen);
    dp_stage_forward(&s, 0, ROWS, &key);
    float *dlogits = dp_stage_loss(&s, 0, ROWS, scale, true);
    dp_stage_backward(&s, 0, ROWS, dlogits, false, false, NULL, NULL);
    dev.be->download(&dev, g, s.grads, np * sizeof *g);
    float stats[3];
    dev.be->download(&dev, stats, s.stats, sizeof stats);
    ck_assert_msg(stats[2] == (float)chosen, "counted %g, chosen %ld", stats[2], chosen);
    double want = ref_masked_loss(&m, ROWS, pd, xd, labels);
    ck_assert_msg(close_to(stats[0] / stats[2], want, FWD_TOL), "loss %.9g, reference %.9g",
                  stats[0] / stats[2], want);
    bool seen[257] = { false };
    for (size_t i = 0; i < nx; i++)
        seen[(int)xd[i]] = true;
    ck_assert(seen[DP_MLM_MASK_TOKEN]);
    int embed_d = m.layers[0].args[1];
    for (size_t i = 0; i < np; i++) {
        double keep = pd[i];
        pd[i] = keep + FD_STEP;
        double up = ref_masked_loss(&m, ROWS, pd, xd, labels);
        pd[i] = keep - FD_STEP;
        double down = ref_masked_loss(&m, ROWS, pd, xd, labels);
        pd[i] = keep;
        double d = (up - down) / (2.0 * FD_STEP);
        if (i < m.layers[0].param_count && !seen[i / embed_d])
            ck_assert_msg(g[i] == 0.0f, "embedding row %zu (unused) has gradient %g",
                          i / embed_d, g[i]);
        ck_assert_msg(close_to(g[i], d, GRAD_TOL), "dparam[%zu] = %.9g, finite difference %.9g",
                      i, g[i], d);
    }
    free(p), free(g), free(pd);
    dp_stage_destroy(&s);
    dp_model_free(&m);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* mlm's report: the loss and the accuracy per masked position (sums[0] / sums[2], sums[1] /
 * sums[2]), text and masked set, the positions counted; a split with no masked position reports
 * 0, not NaN. The samples and targets do not enter. */
START_TEST(test_mlm_report)
{
    dp_eval_report r;
    memset(&r, 0, sizeof r);
    const double sums[3] = { 6.0, 3.0, 4.0 };
    dp_objective_mlm.report(sums, 10, 128, &r);
    ck_assert_msg(r.loss == 1.5 && r.accuracy == 0.75, "loss %g accuracy %g", r.loss,
                  r.accuracy);
    ck_assert(r.text && r.masked && !r.gan);
    ck_assert_int_eq(r.positions, 4);
    memset(&r, 0, sizeof r);
    const double empty[3] = { 0.0, 0.0, 0.0 };
    dp_objective_mlm.report(empty, 3, 2, &r);
    ck_assert_msg(r.loss == 0.0 && r.accuracy == 0.0 && !isnan(r.loss),
                  "no masked positions: loss %g accuracy %g", r.loss, r.accuracy);
    ck_assert_int_eq(r.positions, 0);
    /* classify's report stays per target, and not masked */
    memset(&r, 0, sizeof r);
    dp_objective_classify.report(sums, 2, 4, &r);
    ck_assert(r.loss == 6.0 / 8 && r.text && !r.masked);
}
END_TEST

Suite *bert_suite(void)
{
    Suite *s = suite_create("bert");
    TCase *tc = tcase_create("bert");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_gelu_erf_forward);
    tcase_add_test(tc, test_gelu_erf_backward);
    tcase_add_test(tc, test_gelu_erf_layer);
    tcase_add_test(tc, test_mha_grad);
    tcase_add_test(tc, test_mha_vs_attn);
    tcase_add_test(tc, test_enc_grad);
    tcase_add_test(tc, test_enc_edges);
    tcase_add_test(tc, test_enc_tensors);
    tcase_add_test(tc, test_enc_refusals);
    tcase_add_test(tc, test_mlm_mask_statistics);
    tcase_add_test(tc, test_mlm_mask_keys);
    tcase_add_test(tc, test_mlm_grad_scale);
    tcase_add_test(tc, test_xent_ignored_labels);
    tcase_add_test(tc, test_mlm_stage);
    tcase_add_test(tc, test_mlm_report);
    suite_add_tcase(s, tc);
    return s;
}
