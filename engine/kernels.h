/* kernels.h -- per-element math shared by the CPU backend (gcc) and the CUDA backend (nvcc).
 *
 * Each function computes one element, so the CPU unit tests exercise exactly the formulas that
 * the GPU kernels run. Formulas follow PyTorch's definitions, cited beside each. */
#ifndef DP_KERNELS_H
#define DP_KERNELS_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define DP_HD static __host__ __device__ __forceinline__
#else
#define DP_HD static inline
#endif

/* e^x with relative error below 3e-7 for x in [-87, 88] (clamped outside), written so that
 * compilers vectorise it: e^x = 2^k e^r with k = round(x / ln 2), ln 2 split in two so that r is exact, and e^r from
 * its Taylor series to degree 6 (|r| <= ln(2) / 2 leaves a remainder below 2e-7). */
DP_HD float dp_expf(float x)
{
    const float round_magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    if (x != x)
        return x; /* NaN stays NaN (and never reaches the integer conversion below) */
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float k = (x * 1.44269504f + round_magic) - round_magic;
    float r = x - k * 0.693359375f + k * 2.12194440e-4f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)k + 127) << 23; /* 2^k as a float's bits */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* Activations an element-wise layer can apply; `slope` is leaky ReLU's negative slope (the
 * others ignore it). */
typedef enum dp_act {
    DP_ACT_RELU,
    DP_ACT_GELU,
    DP_ACT_TANH,
    DP_ACT_LEAKY_RELU,
    DP_ACT_SIGMOID,
    DP_ACT_GELU_ERF,
} dp_act;

/* 1 / sqrt(2) and 1 / sqrt(2 pi), for the exact GELU. */
#define DP_SQRT1_2 0.70710678118654752f
#define DP_INV_SQRT_2PI 0.39894228040143268f

/* erf(x) within 1.5e-7 absolute (Abramowitz and Stegun 7.1.26: erf|x| = 1 - t (a1 + t (a2 +
 * ...)) e^(-x^2) with t = 1 / (1 + p |x|)), branch-free through dp_expf so that loops over it
 * vectorise (libm's erff does not: 3.5x slower here). The exact GELU through it is within
 * 4.6e-7 absolute of the value in double over [-10, 10]; PyTorch's float GELU on the CPU is
 * within 3.7e-7 (torch 1.13, measured). */
DP_HD float dp_erff(float x)
{
    float a = fabsf(x), t = 1.0f / (1.0f + 0.3275911f * a);
    float poly = t * (0.254829592f +
                      t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f +
                                                                  t * 1.061405429f))));
    float y = 1.0f - poly * dp_expf(-a * a);
    return copysignf(y, x);
}

/* sqrt(2 / pi) and the cubic coefficient of GELU's tanh approximation. */
#define DP_GELU_K 0.7978845608028654f
#define DP_GELU_C 0.044715f

/* sigmoid(2u) for GELU's u = k (x + c x^3), through dp_expf rather than tanhf: the same value
 * (0.5 (1 + tanh u)), with no cancellation in 1 - tanh^2, and a loop over it vectorises. */
DP_HD float dp_gelu_sigmoid(float x)
{
    float u = DP_GELU_K * (x + DP_GELU_C * x * x * x);
    return 1.0f / (1.0f + dp_expf(-2.0f * u));
}

DP_HD float dp_act_value(dp_act act, float slope, float x)
{
    switch (act) {
    case DP_ACT_RELU: /* torch.relu keeps NaN (x > 0 ? x : 0 would turn it into 0 and hide it
                         from the NaN guard); one comparison still, so the loop vectorises */
        return !(x <= 0.0f) ? x : 0.0f;
    case DP_ACT_GELU: /* torch.nn.GELU(approximate='tanh'): 0.5 x (1 + tanh(u)) = x sigmoid(2u) */
        return x * dp_gelu_sigmoid(x);
    case DP_ACT_TANH:
        return tanhf(x);
    case DP_ACT_LEAKY_RELU: /* torch.nn.LeakyReLU: x > 0 ? x : slope x (NaN stays NaN) */
        return x > 0.0f ? x : slope * x;
    case DP_ACT_SIGMOID: /* torch.nn.Sigmoid */
        return 1.0f / (1.0f + dp_expf(-x));
    case DP_ACT_GELU_ERF: /* torch.nn.GELU() (approximate='none'): x Phi(x), with the normal
                             distribution's Phi(x) = 0.5 (1 + erf(x / sqrt 2)) */
        return 0.5f * x * (1.0f + dp_erff(x * DP_SQRT1_2));
    }
    return x;
}

/* dL/dx from the input x, the output y = act(x) and dL/dy. */
DP_HD float dp_act_grad(dp_act act, float slope, float x, float y, float dy)
{
    switch (act) {
    case DP_ACT_RELU: /* PyTorch's threshold_backward, x <= 0 ? 0 : dy: zero gradient at
                         x == 0, and NaN's gradient passes */
        return !(x <= 0.0f) ? dy : 0.0f;
    case DP_ACT_GELU: { /* with s = sigmoid(2u): 0.5 (1 + tanh u) = s, 1 - tanh^2 u = 4 s (1 - s) */
        float s = dp_gelu_sigmoid(x);
        float right = 2.0f * x * s * (1.0f - s) * DP_GELU_K * (1.0f + 3.0f * DP_GELU_C * x * x);
        return dy * (s + right);
    }
    case DP_ACT_TANH:
        return dy * (1.0f - y * y);
    case DP_ACT_LEAKY_RELU: /* PyTorch's leaky_relu_backward: x > 0 ? dy : dy slope */
        return x > 0.0f ? dy : dy * slope;
    case DP_ACT_SIGMOID:
        return dy * y * (1.0f - y);
    case DP_ACT_GELU_ERF: /* PyTorch's gelu_backward: Phi(x) + x phi(x), phi the normal density */
        return dy * (0.5f * (1.0f + dp_erff(x * DP_SQRT1_2)) +
                     x * DP_INV_SQRT_2PI * dp_expf(-0.5f * x * x));
    }
    return dy;
}

/* torch.optim.SGD, dampening 0: weight decay is added to the gradient; the momentum buffer
 * starts at zero, which equals PyTorch's "buf = grad" on the first step. */
typedef struct dp_sgd_args {
    float lr, momentum, weight_decay;
    bool nesterov;
} dp_sgd_args;

DP_HD void dp_sgd_element(float *p, float g, float *buf, dp_sgd_args a)
{
    g += a.weight_decay * *p;
    if (a.momentum != 0.0f) {
        float b = a.momentum * *buf + g;
        *buf = b;
        g = a.nesterov ? g + a.momentum * b : b;
    }
    *p -= a.lr * g;
}

/* torch.optim.AdamW: decoupled decay p *= 1 - lr * wd, then Adam with bias corrections
 * bc1 = 1 - beta1^t and bc2 = 1 - beta2^t. 1 - beta is computed in double by the caller, as
 * PyTorch does: (float)0.999 is off by 1.3e-8, which would be 1.3e-5 of 1 - beta2. */
typedef struct dp_adamw_args {
    float lr, beta1, beta2, eps, weight_decay;
    float one_minus_beta1, one_minus_beta2;
    float bias_correction1, bias_correction2;
} dp_adamw_args;

DP_HD void dp_adamw_element(float *p, float g, float *m, float *v, dp_adamw_args a)
{
    float w = *p * (1.0f - a.lr * a.weight_decay);
    float mt = a.beta1 * *m + a.one_minus_beta1 * g;
    float vt = a.beta2 * *v + a.one_minus_beta2 * g * g;
    *m = mt;
    *v = vt;
    float denom = sqrtf(vt) / sqrtf(a.bias_correction2) + a.eps;
    *p = w - (a.lr / a.bias_correction1) * mt / denom;
}

/* ---- convolution and pooling, per output element ---- */

/* The geometry of a 2-D convolution or pooling window over [c, h, w] planes: kernel kh x kw,
 * stride sh, sw, zero padding ph, pw, and the output size oh x ow. */
typedef struct dp_conv_geom {
    int c, h, w, kh, kw, sh, sw, ph, pw, oh, ow;
} dp_conv_geom;

/* Element e of the patch matrices col[n, c * kh * kw, oh * ow] of x[n, c, h, w]: for each
 * sample, a row per (channel, kernel row, kernel column) and a column per output position, 0
 * in the padding; a sample's output [out, oh * ow] is then W [out, c * kh * kw] times its
 * matrix. */
DP_HD float dp_im2col_value(const float *x, dp_conv_geom g, size_t e)
{
    size_t pos = (size_t)g.oh * g.ow, ckk = (size_t)g.c * g.kh * g.kw;
    int ow = (int)(e % g.ow), oh = (int)(e / g.ow % g.oh);
    size_t k = e / pos % ckk, n = e / pos / ckk;
    int kj = (int)(k % g.kw), ki = (int)(k / g.kw % g.kh), c = (int)(k / g.kw / g.kh);
    int h = oh * g.sh - g.ph + ki, w = ow * g.sw - g.pw + kj;
    if (h < 0 || h >= g.h || w < 0 || w >= g.w)
        return 0.0f;
    return x[((n * g.c + c) * g.h + h) * g.w + w];
}

/* Element e of dx[n, c, h, w] from the patch matrices' gradient: the sum of every col entry
 * that element e was copied to. */
DP_HD float dp_col2im_value(const float *col, dp_conv_geom g, size_t e)
{
    int w = (int)(e % g.w), h = (int)(e / g.w % g.h), c = (int)(e / g.w / g.h % g.c);
    size_t n = e / g.w / g.h / g.c, ckk = (size_t)g.c * g.kh * g.kw, pos = (size_t)g.oh * g.ow;
    float sum = 0.0f;
    for (int ki = 0; ki < g.kh; ki++) {
        int hh = h + g.ph - ki;
        if (hh < 0 || hh % g.sh || hh / g.sh >= g.oh)
            continue;
        for (int kj = 0; kj < g.kw; kj++) {
            int ww = w + g.pw - kj;
            if (ww < 0 || ww % g.sw || ww / g.sw >= g.ow)
                continue;
            size_t k = ((size_t)c * g.kh + ki) * g.kw + kj;
            sum += col[(n * ckk + k) * pos + (size_t)(hh / g.sh) * g.ow + ww / g.sw];
        }
    }
    return sum;
}

/* Output element e of pooling planes [planes, h, w] into [planes, oh, ow] (no padding): the
 * maximum, with its position in the plane in *arg (the first one on ties, as PyTorch; NaN
 * wins), or the mean. */
DP_HD float dp_pool_value(const float *x, dp_conv_geom g, bool max, size_t e, int32_t *arg)
{
    int ow = (int)(e % g.ow), oh = (int)(e / g.ow % g.oh);
    const float *plane = x + e / g.ow / g.oh * g.h * g.w;
    float best = 0.0f, sum = 0.0f;
    int at = -1;
    for (int ki = 0; ki < g.kh; ki++)
        for (int kj = 0; kj < g.kw; kj++) {
            int i = (oh * g.sh + ki) * g.w + ow * g.sw + kj;
            float v = plane[i];
            sum += v;
            if (at < 0 || (best == best && (v > best || v != v))) /* a NaN stays */
                best = v, at = i;
        }
    if (arg)
        *arg = at;
    return max ? best : sum / (float)(g.kh * g.kw);
}

/* Element e of dx [planes, h, w] from dy [planes, oh, ow]: the gradients of the windows that
 * hold it (max: the windows whose maximum it was). */
DP_HD float dp_pool_grad(const float *dy, const int32_t *arg, dp_conv_geom g, bool max, size_t e)
{
    int w = (int)(e % g.w), h = (int)(e / g.w % g.h), in_plane = h * g.w + w;
    size_t plane = e / g.w / g.h;
    float sum = 0.0f;
    for (int ki = 0; ki < g.kh; ki++) {
        int hh = h - ki;
        if (hh < 0 || hh % g.sh || hh / g.sh >= g.oh)
            continue;
        for (int kj = 0; kj < g.kw; kj++) {
            int ww = w - kj;
            if (ww < 0 || ww % g.sw || ww / g.sw >= g.ow)
                continue;
            size_t o = (plane * g.oh + hh / g.sh) * g.ow + ww / g.sw;
            if (!max)
                sum += dy[o];
            else if (arg[o] == in_plane)
                sum += dy[o];
        }
    }
    return max ? sum : sum / (float)(g.kh * g.kw);
}

/* ---- dropout ---- */

/* What a dropout mask depends on, so that every strategy draws the same one: the run's seed,
 * the step, the layer, and each value's sample (its place in the global batch) and position. */
typedef struct dp_dropout_args {
    uint64_t seed, step, sample0; /* sample0: the global batch position of row 0 */
    uint32_t layer;
    float p;                      /* the probability of a zero */
} dp_dropout_args;

/* splitmix64's finaliser: a good 64-bit mix. */
DP_HD uint64_t dp_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* 0 or 1 / (1 - p) for value i of row r: the mask times torch.nn.Dropout's scale. */
DP_HD float dp_dropout_scale(dp_dropout_args a, uint64_t r, uint64_t i)
{
    uint64_t h = dp_mix64(a.seed ^ dp_mix64(a.step * 0x9e3779b97f4a7c15ull + a.layer));
    h = dp_mix64(h ^ dp_mix64((a.sample0 + r) * 0xc2b2ae3d27d4eb4full + i));
    float u = (float)(h >> 40) * (1.0f / 16777216.0f); /* 24 bits: uniform in [0, 1) */
    return u < a.p ? 0.0f : 1.0f / (1.0f - a.p);
}

/* ---- a GAN's noise and loss ---- */

/* What a latent vector depends on, so that every strategy (and a PyTorch script) draws the same
 * one: the run's seed, a purpose (training, the fixed samples, the evaluation's samples), the
 * step (0 outside training) and the sample's place in the global batch (or in the samples). */
typedef struct dp_noise_args {
    uint64_t seed, purpose, step, sample0; /* sample0: the place of row 0 */
} dp_noise_args;

#define DP_NOISE_TRAIN 0x67616e0000000001ull /* a training step's fakes */
#define DP_NOISE_FIXED 0x67616e0000000002ull /* the samples shown and written at evaluations */
#define DP_NOISE_EVAL 0x67616e0000000003ull  /* the samples an evaluation measures */
#define DP_NOISE_GENERATE 0x67616e0000000004ull /* --generate's */

/* 64 random bits for draw j of row r. */
DP_HD uint64_t dp_noise_bits(dp_noise_args a, uint64_t r, uint64_t j)
{
    uint64_t h = dp_mix64(a.seed ^ dp_mix64(a.step * 0x9e3779b97f4a7c15ull + a.purpose));
    return dp_mix64(h ^ dp_mix64((a.sample0 + r) * 0xc2b2ae3d27d4eb4full + j));
}

/* Value k of row r: a standard normal by Box-Muller from draws 2k and 2k + 1, in double, with
 * u1 = ((bits >> 11) + 1) / 2^53 in (0, 1] and u2 = (bits >> 11) / 2^53 in [0, 1):
 * sqrt(-2 ln u1) cos(2 pi u2), rounded to float. */
DP_HD float dp_noise_value(dp_noise_args a, uint64_t r, uint64_t k)
{
    double u1 = ((double)(dp_noise_bits(a, r, 2 * k) >> 11) + 1.0) * 0x1p-53;
    double u2 = (double)(dp_noise_bits(a, r, 2 * k + 1) >> 11) * 0x1p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* ---- a masked language model's masks (BERT's) ---- */

#define DP_MLM_MASK_TOKEN 256 /* the input id of a masked byte: the vocabulary is 257 */
#define DP_NOISE_MLM 0x6d6c6d0000000001ull      /* the masks of a training step */
#define DP_NOISE_MLM_TEST 0x6d6c6d0000000002ull /* the test split's fixed masks (seed 0, step 0) */
/* The chosen share, 0.15, and of those the masked share, 0.8, and the masked or random share,
 * 0.9, as thresholds on 24 random bits (floor(share * 2^24)). */
#define DP_MLM_CHOSEN 2516582u
#define DP_MLM_MASKED 13421772u
#define DP_MLM_MASKED_OR_RANDOM 15099494u

/* What happens to position j of row r (a, with a.purpose DP_NOISE_MLM or DP_NOISE_MLM_TEST,
 * as dp_noise_bits): with h = dp_noise_bits(a, r, j), the position is chosen when h >> 40 <
 * DP_MLM_CHOSEN; a chosen one's input becomes the mask token when (h >> 16) & 0xffffff <
 * DP_MLM_MASKED, else the random byte h & 0xff when that is below DP_MLM_MASKED_OR_RANDOM, else
 * stays. Returns -1 for a position not chosen, else the input id it takes (`byte` where kept). */
DP_HD int dp_mlm_input(dp_noise_args a, uint64_t r, uint64_t j, int byte)
{
    uint64_t h = dp_noise_bits(a, r, j);
    if ((uint32_t)(h >> 40) >= DP_MLM_CHOSEN)
        return -1;
    uint32_t action = (uint32_t)(h >> 16) & 0xffffffu;
    if (action < DP_MLM_MASKED)
        return DP_MLM_MASK_TOKEN;
    return action < DP_MLM_MASKED_OR_RANDOM ? (int)(h & 0xffu) : byte;
}

/* Binary cross-entropy with a logit z and a target t in {0, 1}, as nn.BCEWithLogitsLoss:
 * max(z, 0) - z t + log(1 + e^-|z|); its gradient is sigmoid(z) - t. */
DP_HD float dp_bce_logits(float z, float t)
{
    return (z > 0.0f ? z : 0.0f) - z * t + log1pf(dp_expf(-fabsf(z)));
}

DP_HD float dp_sigmoid(float z)
{
    return z >= 0.0f ? 1.0f / (1.0f + dp_expf(-z)) : dp_expf(z) / (1.0f + dp_expf(z));
}

/* ---- batch normalisation, over x [n, channels, positions] ---- */

#define DP_BN_EPS 1e-5f      /* nn.BatchNorm2d's default eps */
#define DP_BN_MOMENTUM 0.1f  /* ... and momentum */

/* Value (i, c, p) of x [n, channels, positions]: sample i, channel c, position p. */
DP_HD size_t dp_bn_at(int channels, int positions, size_t i, int c, size_t p)
{
    return (i * (size_t)channels + (size_t)c) * (size_t)positions + p;
}

/* The mean of channel c from a bn_sums result sums [channels + 1] (its count last). */
DP_HD float dp_bn_mean(const float *sums, int channels, int c)
{
    return sums[c] / sums[channels];
}

/* Channel c's statistics for a pass: stats = {mean [channels], 1 / sqrt(var + eps)
 * [channels], count}. In training (acc = the all-reduced sums of x and then of (x - mean)^2,
 * each [channels + 1] with its count last), from the batch, with the biased variance, and the
 * running estimates running = {mean [channels], var [channels], batches} move towards the
 * batch's by the momentum, with the unbiased variance (n / (n - 1); a count of 1 has none, and
 * keeps the biased one, 0, where PyTorch refuses the batch); channel 0 counts the batch. In
 * evaluation (acc NULL), from the running estimates. nn.BatchNorm2d's formulas. */
DP_HD void dp_bn_statistics_channel(float *stats, float *running, const float *acc, int channels,
                                    int c)
{
    float mean, var;
    if (acc && acc[channels] > 0.0f) {
        const float *squares = acc + channels + 1;
        float count = acc[channels];
        mean = acc[c] / count;
        var = squares[c] / count;
        float unbiased = count > 1.0f ? var * (count / (count - 1.0f)) : var;
        if (running) { /* NULL: a pass that leaves the estimates alone (engine/gan.h) */
            running[c] = DP_BN_MOMENTUM * mean + (1.0f - DP_BN_MOMENTUM) * running[c];
            running[channels + c] =
                DP_BN_MOMENTUM * unbiased + (1.0f - DP_BN_MOMENTUM) * running[channels + c];
            if (c == 0)
                running[2 * channels] += 1.0f;
        }
        if (c == 0)
            stats[2 * channels] = count;
    } else { /* evaluation, or a training pass of no samples (an empty micro-batch of a short
              * batch), which normalises nothing and leaves the estimates alone */
        mean = running[c];
        var = running[channels + c];
        if (c == 0)
            stats[2 * channels] = 0.0f; /* no batch */
    }
    stats[c] = mean;
    stats[channels + c] = 1.0f / sqrtf(var + DP_BN_EPS);
}

/* Output value e of x [n, channels, positions]: (x - mean) / std * w + b. */
DP_HD float dp_bn_value(const float *x, const float *stats, const float *w, const float *b,
                        int channels, int positions, size_t e)
{
    int c = (int)(e / (size_t)positions % (size_t)channels);
    return (x[e] - stats[c]) * stats[channels + c] * w[c] + b[c];
}

/* dx value e: with xhat = (x - mean) / std and the sums over every replica's samples
 * sums = {sum dy xhat [channels], sum dy [channels]} of count values,
 * dx = w / std (dy - sum dy / count - xhat sum dy xhat / count). */
DP_HD float dp_bn_dx_value(const float *dy, const float *x, const float *stats, const float *w,
                           const float *sums, int channels, int positions, size_t e)
{
    int c = (int)(e / (size_t)positions % (size_t)channels);
    float count = stats[2 * channels], rstd = stats[channels + c];
    float xhat = (x[e] - stats[c]) * rstd;
    return w[c] * rstd * (dy[e] - sums[channels + c] / count - xhat * sums[c] / count);
}

/* ---- sequences: layer norm, attention's softmax, embeddings ---- */

#define DP_LN_EPS 1e-5f /* nn.LayerNorm's default eps */

/* One row of torch.nn.LayerNorm over n values: y = (x - mean) / sqrt(var + eps) * w + b with
 * the biased variance; stats = {mean, 1 / sqrt(var + eps)} for the backward. */
DP_HD void dp_layernorm_row(float *y, float *stats, const float *x, const float *w,
                            const float *b, int n)
{
    float mean = 0.0f, var = 0.0f;
    for (int i = 0; i < n; i++)
        mean += x[i];
    mean /= (float)n;
    for (int i = 0; i < n; i++)
        var += (x[i] - mean) * (x[i] - mean);
    float rstd = 1.0f / sqrtf(var / (float)n + DP_LN_EPS);
    for (int i = 0; i < n; i++)
        y[i] = (x[i] - mean) * rstd * w[i] + b[i];
    stats[0] = mean;
    stats[1] = rstd;
}

/* dx of one row: with g = dy w and xhat = (x - mean) rstd,
 * dx = rstd (g - mean(g) - xhat mean(g xhat)). */
DP_HD void dp_layernorm_dx_row(float *dx, const float *dy, const float *x, const float *stats,
                               const float *w, int n)
{
    float mean_g = 0.0f, mean_gx = 0.0f;
    for (int i = 0; i < n; i++) {
        float g = dy[i] * w[i], xhat = (x[i] - stats[0]) * stats[1];
        mean_g += g;
        mean_gx += g * xhat;
    }
    mean_g /= (float)n;
    mean_gx /= (float)n;
    for (int i = 0; i < n; i++) {
        float xhat = (x[i] - stats[0]) * stats[1];
        dx[i] = stats[1] * (dy[i] * w[i] - mean_g - xhat * mean_gx);
    }
}

/* Column j of the weight and bias gradients over rows of width n: dw = sum dy xhat,
 * db = sum dy (added to, when accumulate). */
DP_HD void dp_layernorm_param_grad(float *dw, float *db, const float *dy, const float *x,
                                   const float *stats, int rows, int n, int j, bool accumulate)
{
    float sw = 0.0f, sb = 0.0f;
    for (int r = 0; r < rows; r++) {
        float g = dy[(size_t)r * n + j];
        sw += g * (x[(size_t)r * n + j] - stats[2 * r]) * stats[2 * r + 1];
        sb += g;
    }
    dw[j] = accumulate ? dw[j] + sw : sw;
    db[j] = accumulate ? db[j] + sb : sb;
}

/* Sums and maxima over a row in DP_LANES running lanes, combined at the end: a fixed order on
 * every machine and in both backends (nvcc may fuse dp_lanes_dot's multiply-adds, so a GPU's
 * last bits can differ), and a loop over lanes that compilers vectorise (a single running float
 * sum cannot be reordered, so it stays scalar). */
#define DP_LANES 8

DP_HD float dp_lanes_sum(const float *v, int n)
{
    float lane[DP_LANES] = { 0.0f };
    int i = 0;
    for (; i + DP_LANES <= n; i += DP_LANES)
        for (int j = 0; j < DP_LANES; j++)
            lane[j] += v[i + j];
    for (int j = 0; i < n; i++, j++)
        lane[j] += v[i];
    float sum = 0.0f;
    for (int j = 0; j < DP_LANES; j++)
        sum += lane[j];
    return sum;
}

/* The dot product of a and b in lanes, as dp_lanes_sum. */
DP_HD float dp_lanes_dot(const float *a, const float *b, int n)
{
    float lane[DP_LANES] = { 0.0f };
    int i = 0;
    for (; i + DP_LANES <= n; i += DP_LANES)
        for (int j = 0; j < DP_LANES; j++)
            lane[j] += a[i + j] * b[i + j];
    for (int j = 0; i < n; i++, j++)
        lane[j] += a[i] * b[i];
    float sum = 0.0f;
    for (int j = 0; j < DP_LANES; j++)
        sum += lane[j];
    return sum;
}

/* One row of softmax(scale * x) over n values; with `causal`, values past position `limit`
 * (the row's query position) are masked out (their probability is 0). y may be x. */
DP_HD void dp_softmax_row(float *y, const float *x, int n, float scale, int limit)
{
    float lane[DP_LANES];
    for (int j = 0; j < DP_LANES; j++)
        lane[j] = -3.0e38f;
    int i = 0;
    for (; i + DP_LANES <= limit + 1; i += DP_LANES)
        for (int j = 0; j < DP_LANES; j++)
            lane[j] = scale * x[i + j] > lane[j] ? scale * x[i + j] : lane[j];
    for (int j = 0; i <= limit; i++, j++)
        lane[j] = scale * x[i] > lane[j] ? scale * x[i] : lane[j];
    float top = lane[0];
    for (int j = 1; j < DP_LANES; j++)
        top = lane[j] > top ? lane[j] : top;
    for (i = 0; i < n; i++)
        y[i] = i <= limit ? dp_expf(scale * x[i] - top) : 0.0f;
    float sum = dp_lanes_sum(y, limit + 1);
    for (i = 0; i <= limit; i++)
        y[i] /= sum;
}

/* dx of one softmax row from its output y: dx = scale y (dy - sum(y dy)). */
DP_HD void dp_softmax_grad_row(float *dx, const float *y, const float *dy, int n, float scale)
{
    float dot = dp_lanes_dot(y, dy, n);
    for (int i = 0; i < n; i++)
        dx[i] = scale * y[i] * (dy[i] - dot);
}

/* A token id held as a float, as a row of a table of vocab rows (clamped, so that no input
 * reads outside the table; the model checks that the data's ids fit). */
DP_HD int dp_token(float id, int vocab)
{
    int v = id >= 0.0f ? (int)id : 0; /* NaN too */
    return v < vocab ? v : vocab - 1;
}

/* Element (v, j) of an embedding table's gradient over `positions` looked-up ids (stored as
 * floats): the sum of dy over the positions whose id is v. */
DP_HD float dp_embedding_grad_value(const float *ids, const float *dy, int positions, int dim,
                                    int vocab, int v, int j)
{
    float sum = 0.0f;
    for (int p = 0; p < positions; p++)
        if (dp_token(ids[p], vocab) == v)
            sum += dy[(size_t)p * dim + j];
    return sum;
}

#endif
