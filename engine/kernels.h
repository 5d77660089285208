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

/* Activations an element-wise layer can apply. */
typedef enum dp_act { DP_ACT_RELU, DP_ACT_GELU, DP_ACT_TANH } dp_act;

/* sqrt(2 / pi) and the cubic coefficient of GELU's tanh approximation. */
#define DP_GELU_K 0.7978845608028654f
#define DP_GELU_C 0.044715f

DP_HD float dp_act_value(dp_act act, float x)
{
    switch (act) {
    case DP_ACT_RELU:
        return x > 0.0f ? x : 0.0f;
    case DP_ACT_GELU: /* torch.nn.GELU(approximate='tanh') */
        return 0.5f * x * (1.0f + tanhf(DP_GELU_K * (x + DP_GELU_C * x * x * x)));
    case DP_ACT_TANH:
        return tanhf(x);
    }
    return x;
}

/* dL/dx from the input x, the output y = act(x) and dL/dy. */
DP_HD float dp_act_grad(dp_act act, float x, float y, float dy)
{
    switch (act) {
    case DP_ACT_RELU: /* PyTorch's threshold_backward: zero gradient at x == 0 */
        return x > 0.0f ? dy : 0.0f;
    case DP_ACT_GELU: {
        float t = tanhf(DP_GELU_K * (x + DP_GELU_C * x * x * x));
        float left = 0.5f * (1.0f + t);
        float right = 0.5f * x * (1.0f - t * t) * DP_GELU_K * (1.0f + 3.0f * DP_GELU_C * x * x);
        return dy * (left + right);
    }
    case DP_ACT_TANH:
        return dy * (1.0f - y * y);
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

#endif
