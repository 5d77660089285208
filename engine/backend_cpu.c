/* backend_cpu.c -- the CPU backend: GEMMs, convolutions and average pooling through oneDNN
 * (onednn.c), everything else as plain C loops over the per-element functions of kernels.h.
 * Operations run at once on the calling thread (and its OpenMP team), so synchronize() has
 * nothing to wait for. */
#define _GNU_SOURCE /* sched_getaffinity */
#include "base/clock.h"
#include "engine/backend.h"
#include "engine/backend_cpu.h"
#include "engine/onednn.h"

#include <omp.h>
#include <sched.h>

#include <dirent.h>
#include <float.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Private state of a CPU virtual device. */
typedef struct cpu_impl {
    int cores;              /* dp_cpu_cores() when made */
    dp_onednn *dnn;         /* the device's oneDNN primitives */
    dp_cpu_profile prof;
    double marks[DP_MARKS]; /* operations run when issued: a mark is the host's clock */
    int n_marks;
} cpu_impl;

static cpu_impl *impl_of(dp_device *d)
{
    return (cpu_impl *)d->impl;
}

/* 64-byte alignment keeps AVX-512 loads whole and buffers off each other's cache lines. */
static void *cpu_alloc(dp_device *d, size_t bytes)
{
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0)
        return NULL;
    return p;
}

static void cpu_release(dp_device *d, void *p)
{
    free(p);
}

static void cpu_memcpy(dp_device *d, void *dst, const void *src, size_t bytes)
{
    if (bytes)
        memcpy(dst, src, bytes);
}

static void cpu_zero(dp_device *d, void *p, size_t bytes)
{
    if (bytes)
        memset(p, 0, bytes);
}

static void cpu_synchronize(dp_device *d)
{
}

static int cpu_mark(dp_device *d, bool first)
{
    cpu_impl *im = impl_of(d);
    if (first)
        im->n_marks = 0;
    if (im->n_marks == DP_MARKS)
        return -1;
    im->marks[im->n_marks] = dp_now_s();
    return im->n_marks++;
}

static double cpu_mark_seconds(dp_device *d, int mark)
{
    return impl_of(d)->marks[mark] - impl_of(d)->marks[0];
}

static double cpu_busy_seconds(dp_device *d)
{
    return impl_of(d)->prof.gemm_s + impl_of(d)->prof.library_s + impl_of(d)->prof.kernel_s;
}

static double cpu_gemm_flops(dp_device *d)
{
    return impl_of(d)->prof.gemm_flops + impl_of(d)->prof.library_flops;
}

/* Through oneDNN, below with the other library calls. */
static void cpu_gemm(dp_device *d, int trans_a, int trans_b, int m, int n, int k, float alpha,
                     const float *a, int lda, const float *b, int ldb, float beta, float *c,
                     int ldc);

/* Charges the time since t0 to the device's non-GEMM kernel time. */
static void charge_kernel(dp_device *d, double t0)
{
    impl_of(d)->prof.kernel_s += dp_now_s() - t0;
}

/* ---- kernels over the device's threads ----
 *
 * A kernel over enough values runs on the OpenMP team its device's oneDNN operations use, each
 * thread a contiguous chunk of rows or values; what a chunk computes does not depend on the
 * split (no sum crosses chunks), so the results are the same on any number of threads. */

#define DO_PRAGMA(x) _Pragma(#x)
#define PARALLEL_MIN 16384 /* fewer values stay on the calling thread: waking the team costs more */

static int kernel_threads(dp_device *d, size_t values);

/* Runs the body (the rest of the arguments: commas and all) for the chunk [lo_, hi_) of
 * [0, n) of each of t threads. */
#define FOR_CHUNKS(t, n, ...)                                                                 \
    DO_PRAGMA(omp parallel num_threads(t) if ((t) > 1))                                       \
    {                                                                                         \
        size_t k_ = (size_t)omp_get_thread_num(), t_ = (size_t)omp_get_num_threads();         \
        size_t lo_ = (size_t)(n) * k_ / t_, hi_ = (size_t)(n) * (k_ + 1) / t_;                \
        __VA_ARGS__                                                                           \
    }


static void cpu_gather_rows(dp_device *d, void *dst, const void *src, const int32_t *idx,
                            int rows, size_t row_bytes)
{
    double t0 = dp_now_s();
    for (int r = 0; r < rows; r++)
        memcpy((char *)dst + (size_t)r * row_bytes, (const char *)src + (size_t)idx[r] * row_bytes,
               row_bytes);
    charge_kernel(d, t0);
}

static void cpu_sum_rows(dp_device *d, float *restrict out, const float *restrict x, int rows,
                         int cols, int accumulate)
{
    double t0 = dp_now_s();
    if (!accumulate)
        memset(out, 0, (size_t)cols * sizeof *out);
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * cols;
        for (int c = 0; c < cols; c++)
            out[c] += xr[c];
    }
    charge_kernel(d, t0);
}

/* Loops compiled for AVX-512 and AVX2 too, picked at load time for the processor at hand. Not
 * under ThreadSanitizer, whose runtime is not up yet when the loader picks. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_THREAD__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* GELU over whole arrays: with dp_expf inside, these loops vectorise. */
VECTOR_CLONES
static void gelu_forward(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = dp_act_value(DP_ACT_GELU, 0.0f, x[i]);
}

VECTOR_CLONES
static void gelu_backward(float *dx, const float *x, const float *dy, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dx[i] = dp_act_grad(DP_ACT_GELU, 0.0f, x[i], 0.0f, dy[i]);
}

/* The exact GELU over whole arrays, vectorised as the approximation's (dp_erff). */
VECTOR_CLONES
static void gelu_erf_forward(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = dp_act_value(DP_ACT_GELU_ERF, 0.0f, x[i]);
}

VECTOR_CLONES
static void gelu_erf_backward(float *dx, const float *x, const float *dy, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dx[i] = dp_act_grad(DP_ACT_GELU_ERF, 0.0f, x[i], 0.0f, dy[i]);
}

/* The sigmoid over whole arrays, vectorised as GELU's. */
VECTOR_CLONES
static void sigmoid_forward(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = dp_act_value(DP_ACT_SIGMOID, 0.0f, x[i]);
}

static void act_forward_chunk(dp_act act, float slope, float *y, const float *x, size_t n)
{
    switch (act) { /* one loop per activation, so each one vectorises */
    case DP_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            y[i] = dp_act_value(DP_ACT_RELU, 0.0f, x[i]);
        break;
    case DP_ACT_GELU:
        gelu_forward(y, x, n);
        break;
    case DP_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            y[i] = dp_act_value(DP_ACT_TANH, 0.0f, x[i]);
        break;
    case DP_ACT_LEAKY_RELU:
        for (size_t i = 0; i < n; i++)
            y[i] = dp_act_value(DP_ACT_LEAKY_RELU, slope, x[i]);
        break;
    case DP_ACT_SIGMOID:
        sigmoid_forward(y, x, n);
        break;
    case DP_ACT_GELU_ERF:
        gelu_erf_forward(y, x, n);
        break;
    }
}

static void cpu_act_forward(dp_device *d, dp_act act, float slope, float *y, const float *x,
                            size_t n)
{
    double t0 = dp_now_s();
    int t = kernel_threads(d, n);
    FOR_CHUNKS(t, n, act_forward_chunk(act, slope, y + lo_, x + lo_, hi_ - lo_);)
    charge_kernel(d, t0);
}

/* The bias in every row (a kernel), then the GEMM adds x W^T to it. */
static void cpu_linear(dp_device *d, int rows, int out, int in, const float *x, const float *w,
                       const float *b, float *y, bool relu)
{
    double t0 = dp_now_s();
    for (int r = 0; r < rows; r++)
        memcpy(y + (size_t)r * out, b, (size_t)out * sizeof *b);
    charge_kernel(d, t0);
    if (in > 0)
        cpu_gemm(d, 0, 1, rows, out, in, 1.0f, x, in, w, in, 1.0f, y, out);
    if (relu)
        cpu_act_forward(d, DP_ACT_RELU, 0.0f, y, y, (size_t)rows * out);
}

static void act_backward_chunk(dp_act act, float slope, float *dx, const float *x,
                               const float *y, const float *dy, size_t n)
{
    switch (act) {
    case DP_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            dx[i] = dp_act_grad(DP_ACT_RELU, 0.0f, x[i], 0.0f, dy[i]);
        break;
    case DP_ACT_GELU:
        gelu_backward(dx, x, dy, n);
        break;
    case DP_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            dx[i] = dp_act_grad(DP_ACT_TANH, 0.0f, 0.0f, y[i], dy[i]);
        break;
    case DP_ACT_LEAKY_RELU:
        for (size_t i = 0; i < n; i++)
            dx[i] = dp_act_grad(DP_ACT_LEAKY_RELU, slope, x[i], 0.0f, dy[i]);
        break;
    case DP_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            dx[i] = dp_act_grad(DP_ACT_SIGMOID, 0.0f, 0.0f, y[i], dy[i]);
        break;
    case DP_ACT_GELU_ERF:
        gelu_erf_backward(dx, x, dy, n);
        break;
    }
}

static void cpu_act_backward(dp_device *d, dp_act act, float slope, float *dx, const float *x,
                             const float *y, const float *dy, size_t n)
{
    double t0 = dp_now_s();
    int t = kernel_threads(d, n);
    FOR_CHUNKS(t, n, act_backward_chunk(act, slope, dx + lo_, x + lo_, y + lo_, dy + lo_, hi_ - lo_);)
    charge_kernel(d, t0);
}


/* e^x over a whole block at once, so that the loop vectorises. */
VECTOR_CLONES
static void exp_block(float *restrict y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = dp_expf(y[i]);
}

/* The first index of the largest of z[0..n), as torch.argmax; branch-free, since which logit
 * is largest is unpredictable. */
static int arg_max(const float *z, int n)
{
    float top = z[0];
    int best = 0;
    for (int c = 1; c < n; c++) {
        bool larger = z[c] > top;
        top = larger ? z[c] : top;
        best = larger ? c : best;
    }
    return best;
}

/* Loss and correct count of one row, from its logits alone (no gradient wanted). */
static double xent_row(const float *z, int classes, int label, int *correct)
{
    if (label < 0)
        return 0.0;
    int best = arg_max(z, classes);
    float sum = 0.0f;
    for (int c = 0; c < classes; c++)
        sum += dp_expf(z[c] - z[best]);
    *correct += best == label;
    return (double)logf(sum) - (double)(z[label] - z[best]);
}

/* Training: dlogits first holds z - max(z) for a chunk of rows, then e^(z - max), then the
 * gradient; the exponentials of the chunk are taken in one vectorised pass. */
static void cpu_softmax_xent(dp_device *d, const float *logits, const int32_t *labels, int rows,
                             int classes, float grad_scale, float *dlogits, float *stats)
{
    double t0 = dp_now_s();
    double loss = 0.0;
    int correct = 0, counted = 0;
    enum { CHUNK = 256 };
    float label_shift[CHUNK]; /* z[label] - max(z) of each row of the chunk */
    for (int r0 = 0; r0 < rows; r0 += CHUNK) {
        int n = rows - r0 < CHUNK ? rows - r0 : CHUNK;
        for (int r = r0; r < r0 + n; r++) {
            const float *z = logits + (size_t)r * classes;
            counted += labels[r] >= 0;
            if (!dlogits) {
                loss += xent_row(z, classes, labels[r], &correct);
                continue;
            }
            int best = arg_max(z, classes);
            float *g = dlogits + (size_t)r * classes;
            for (int c = 0; c < classes; c++)
                g[c] = z[c] - z[best];
            label_shift[r - r0] = labels[r] >= 0 ? g[labels[r]] : 0.0f;
            correct += best == labels[r];
        }
        if (!dlogits)
            continue;
        exp_block(dlogits + (size_t)r0 * classes, (size_t)n * classes);
        for (int r = r0; r < r0 + n; r++) {
            float *g = dlogits + (size_t)r * classes;
            if (labels[r] < 0) { /* left out: no loss, no gradient */
                memset(g, 0, (size_t)classes * sizeof *g);
                continue;
            }
            float sum = 0.0f;
            for (int c = 0; c < classes; c++)
                sum += g[c];
            loss += (double)logf(sum) - (double)label_shift[r - r0];
            float scale = grad_scale / sum;
            for (int c = 0; c < classes; c++)
                g[c] *= scale;
            g[labels[r]] -= grad_scale;
        }
    }
    stats[0] += (float)loss;
    stats[1] += (float)correct;
    stats[2] += (float)counted;
    charge_kernel(d, t0);
}

static void cpu_sgd_step(dp_device *d, float *p, const float *g, float *buf, size_t n,
                         dp_sgd_args a)
{
    double t0 = dp_now_s();
    int t = kernel_threads(d, n);
    FOR_CHUNKS(t, n, {
        if (buf) {
            for (size_t i = lo_; i < hi_; i++)
                dp_sgd_element(&p[i], g[i], &buf[i], a);
        } else { /* no momentum, no state */
            float unused = 0.0f;
            for (size_t i = lo_; i < hi_; i++)
                dp_sgd_element(&p[i], g[i], &unused, a);
        }
    })
    charge_kernel(d, t0);
}

static void cpu_adamw_step(dp_device *d, float *p, const float *g, float *m, float *v, size_t n,
                           dp_adamw_args a)
{
    double t0 = dp_now_s();
    int t = kernel_threads(d, n);
    FOR_CHUNKS(t, n, {
        for (size_t i = lo_; i < hi_; i++)
            dp_adamw_element(&p[i], g[i], &m[i], &v[i], a);
    })
    charge_kernel(d, t0);
}

/* Eight running sums, so that the additions pipeline and vectorise (one chain of dependent
 * additions took 1.6 ms for 1.9 M floats, 8 % of the bench MLP's step); then added in a fixed
 * order, so the result is the same on every run. */
static double cpu_sum_squares(dp_device *d, const float *x, size_t n)
{
    double t0 = dp_now_s();
    double part[8] = { 0 }, s = 0.0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            part[k] += (double)x[i + k] * (double)x[i + k];
    for (; i < n; i++)
        s += (double)x[i] * (double)x[i];
    for (int k = 0; k < 8; k++)
        s += part[k];
    charge_kernel(d, t0);
    return s;
}

static void cpu_accumulate_squares(dp_device *d, const float *x, size_t n, float *acc)
{
    acc[0] += (float)cpu_sum_squares(d, x, n);
}

static void cpu_scale(dp_device *d, float *x, float s, size_t n)
{
    double t0 = dp_now_s();
    int t = kernel_threads(d, n);
    FOR_CHUNKS(t, n, {
        for (size_t i = lo_; i < hi_; i++)
            x[i] *= s;
    })
    charge_kernel(d, t0);
}

/* Runs BODY for each row of a sample's patch matrix (channel c_, kernel row ki_, kernel column
 * kj_) and output row oh_: `out` is where that row's ow values go, `in` the input row they come
 * from (NULL in the padding), w0 the input column of output column 0. On the CPU the patch
 * matrices are walked row by row, without the divisions of the per-element formulas (which the
 * unit tests compare with these loops). */
#define FOR_EACH_PATCH_ROW(g, n, col, x, BODY)                                                \
    do {                                                                                     \
        size_t pos_ = (size_t)(g).oh * (g).ow;                                               \
        for (int n_ = 0; n_ < (n); n_++)                                                     \
            for (int c_ = 0; c_ < (g).c; c_++)                                               \
                for (int ki_ = 0; ki_ < (g).kh; ki_++)                                       \
                    for (int kj_ = 0; kj_ < (g).kw; kj_++)                                   \
                        for (int oh_ = 0; oh_ < (g).oh; oh_++) {                             \
                            size_t k_ = ((size_t)c_ * (g).kh + ki_) * (g).kw + kj_;          \
                            out = (col) + ((size_t)n_ * (g).c * (g).kh * (g).kw + k_) * pos_ \
                                  + (size_t)oh_ * (g).ow;                                     \
                            int h_ = oh_ * (g).sh - (g).ph + ki_;                            \
                            in = h_ >= 0 && h_ < (g).h                                       \
                                     ? (x) + (((size_t)n_ * (g).c + c_) * (g).h + h_) * (g).w \
                                     : NULL;                                                  \
                            w0 = kj_ - (g).pw;                                               \
                            BODY                                                             \
                        }                                                                    \
    } while (0)

/* The output columns [*lo, *hi) of a patch row whose input column w0 + ow * sw is inside
 * [0, w): the rest are padding. */
static void inside_columns(int w0, int sw, int w, int ow, int *lo, int *hi)
{
    *lo = w0 >= 0 ? 0 : (-w0 + sw - 1) / sw;
    *hi = w0 >= w ? 0 : (w - 1 - w0) / sw + 1;
    *hi = *hi < ow ? *hi : ow;
    *lo = *lo < *hi ? *lo : *hi;
}

static void cpu_im2col(dp_device *d, float *col, const float *x, int n, dp_conv_geom g)
{
    double t0 = dp_now_s();
    float *out;
    const float *in;
    int w0;
    FOR_EACH_PATCH_ROW(g, n, col, x, { /* (no commas outside parentheses: a macro argument) */
        int lo = 0;
        int hi = 0;
        if (in)
            inside_columns(w0, g.sw, g.w, g.ow, &lo, &hi);
        for (int ow = 0; ow < lo; ow++)
            out[ow] = 0.0f;
        if (g.sw == 1 && hi > lo) /* (in is NULL on a row of padding: then hi == lo == 0) */
            memcpy(out + lo, in + w0 + lo, (size_t)(hi - lo) * sizeof *out);
        else
            for (int ow = lo; ow < hi; ow++)
                out[ow] = in[w0 + ow * g.sw];
        for (int ow = hi; ow < g.ow; ow++)
            out[ow] = 0.0f;
    });
    charge_kernel(d, t0);
}

static void cpu_col2im(dp_device *d, float *dx, const float *col, int n, dp_conv_geom g)
{
    double t0 = dp_now_s();
    memset(dx, 0, (size_t)n * g.c * g.h * g.w * sizeof *dx);
    const float *out; /* read here: the patch matrices' gradient */
    float *in;
    int w0;
    FOR_EACH_PATCH_ROW(g, n, col, dx, {
        int lo = 0;
        int hi = 0;
        if (in)
            inside_columns(w0, g.sw, g.w, g.ow, &lo, &hi);
        for (int ow = lo; ow < hi; ow++)
            in[w0 + ow * g.sw] += out[ow];
    });
    charge_kernel(d, t0);
}

static void cpu_channel_bias(dp_device *d, float *y, const float *b, int n, int channels,
                             int positions)
{
    double t0 = dp_now_s();
    for (int i = 0; i < n; i++)
        for (int c = 0; c < channels; c++) {
            float *row = y + ((size_t)i * channels + c) * positions;
            for (int p = 0; p < positions; p++)
                row[p] += b[c];
        }
    charge_kernel(d, t0);
}

static void cpu_channel_bias_grad(dp_device *d, float *db, const float *dy, int n, int channels,
                                  int positions, bool accumulate)
{
    double t0 = dp_now_s();
    for (int c = 0; c < channels; c++) {
        float sum = 0.0f;
        for (int i = 0; i < n; i++) {
            const float *row = dy + ((size_t)i * channels + c) * positions;
            for (int p = 0; p < positions; p++)
                sum += row[p];
        }
        db[c] = accumulate ? db[c] + sum : sum;
    }
    charge_kernel(d, t0);
}

/* One row of max pooling's outputs y[ow] and their maxima's places arg[ow] (NULL: not
 * wanted), as dp_pool_value (which the unit tests compare) takes them: the window's values in
 * order, the first maximum kept and a NaN kept once met. The outputs themselves hold the
 * running maxima, so that the loop over a row's outputs vectorises. */
VECTOR_CLONES
static void max_pool_row(float *restrict y, int32_t *restrict arg, const float *plane, int oh,
                         dp_conv_geom g)
{
    int top = oh * g.sh * g.w;
    for (int ow = 0; ow < g.ow; ow++)
        y[ow] = plane[top + ow * g.sw];
    if (arg)
        for (int ow = 0; ow < g.ow; ow++)
            arg[ow] = top + ow * g.sw;
    for (int ki = 0; ki < g.kh; ki++)
        for (int kj = ki ? 0 : 1; kj < g.kw; kj++) {
            int at = top + ki * g.w + kj;
            const float *v = plane + at;
            for (int ow = 0; ow < g.ow; ow++) {
                float b = y[ow], x = v[ow * g.sw];
                bool take = b == b && (x > b || x != x);
                y[ow] = take ? x : b;
                if (arg)
                    arg[ow] = take ? at + ow * g.sw : arg[ow];
            }
        }
}

/* Max pooling row by row (max_pool_row); average pooling output by output, as dp_pool_value,
 * with the window's place computed once per element instead of divided out. */
static void own_pool_forward(dp_device *d, bool max, float *y, int32_t *arg, const float *x,
                             int planes, dp_conv_geom g)
{
    double t0 = dp_now_s();
    int t = kernel_threads(d, (size_t)planes * g.h * g.w);
    FOR_CHUNKS(t, planes, for (size_t p = lo_; p < hi_; p++) {
        const float *plane = x + p * g.h * g.w;
        for (int oh = 0; oh < g.oh; oh++) {
            size_t e = (p * g.oh + oh) * g.ow;
            if (max) {
                max_pool_row(y + e, arg ? arg + e : NULL, plane, oh, g);
                continue;
            }
            for (int ow = 0; ow < g.ow; ow++) {
                float sum = 0.0f;
                for (int ki = 0; ki < g.kh; ki++) {
                    const float *row = plane + (size_t)(oh * g.sh + ki) * g.w + ow * g.sw;
                    for (int kj = 0; kj < g.kw; kj++)
                        sum += row[kj];
                }
                y[e + ow] = sum / (float)(g.kh * g.kw);
            }
        }
    })
    charge_kernel(d, t0);
}

/* Scattered from each output's gradient (to its maximum, or over its window) rather than
 * gathered per input as dp_pool_grad does on the GPU: the same sums, in another order. */
static void own_pool_backward(dp_device *d, bool max, float *dx, const int32_t *arg,
                              const float *dy, int planes, dp_conv_geom g)
{
    double t0 = dp_now_s();
    float inv = 1.0f / (float)(g.kh * g.kw);
    int t = kernel_threads(d, (size_t)planes * g.h * g.w);
    FOR_CHUNKS(t, planes, for (size_t p = lo_; p < hi_; p++) {
        float *plane = dx + p * g.h * g.w;
        memset(plane, 0, (size_t)g.h * g.w * sizeof *plane);
        for (int oh = 0; oh < g.oh; oh++)
            for (int ow = 0; ow < g.ow; ow++) {
                size_t e = (p * g.oh + oh) * g.ow + ow;
                if (max) {
                    plane[arg[e]] += dy[e];
                    continue;
                }
                for (int ki = 0; ki < g.kh; ki++)
                    for (int kj = 0; kj < g.kw; kj++)
                        plane[(size_t)(oh * g.sh + ki) * g.w + ow * g.sw + kj] += dy[e] * inv;
            }
    })
    charge_kernel(d, t0);
}

static void cpu_add(dp_device *d, float *y, const float *a, const float *b, size_t n)
{
    double t0 = dp_now_s();
    int t = kernel_threads(d, n);
    FOR_CHUNKS(t, n, {
        for (size_t i = lo_; i < hi_; i++)
            y[i] = a[i] + b[i];
    })
    charge_kernel(d, t0);
}

/* ---- batch normalisation: a channel at a time, its sums in double ---- */

static void cpu_bn_sums(dp_device *d, float *sums, const float *x, const float *centre, int n,
                        int channels, int positions)
{
    double t0 = dp_now_s();
    int t = kernel_threads(d, (size_t)n * channels * positions);
    FOR_CHUNKS(t, channels, for (int c = (int)lo_; c < (int)hi_; c++) {
        float mean = centre ? dp_bn_mean(centre, channels, c) : 0.0f;
        double sum = 0.0;
        for (int i = 0; i < n; i++) {
            const float *xc = x + dp_bn_at(channels, positions, (size_t)i, c, 0);
            if (centre)
                for (int p = 0; p < positions; p++) {
                    double v = (double)(xc[p] - mean);
                    sum += v * v;
                }
            else
                for (int p = 0; p < positions; p++)
                    sum += xc[p];
        }
        sums[c] = (float)sum;
    })
    sums[channels] = (float)n * (float)positions;
    charge_kernel(d, t0);
}

static void cpu_bn_statistics(dp_device *d, float *stats, float *running, const float *acc,
                              int channels)
{
    for (int c = 0; c < channels; c++)
        dp_bn_statistics_channel(stats, running, acc, channels, c);
}

/* A channel's run of positions at a time (contiguous: the loop vectorises), with its
 * per-channel factors taken once. */
static void cpu_bn_forward(dp_device *d, float *y, const float *x, const float *stats,
                           const float *w, const float *b, int n, int channels, int positions)
{
    double t0 = dp_now_s();
    int t = kernel_threads(d, (size_t)n * channels * positions);
    FOR_CHUNKS(t, n, for (size_t i = lo_; i < hi_; i++)
        for (int c = 0; c < channels; c++) {
            size_t at = dp_bn_at(channels, positions, i, c, 0);
            float mean = stats[c], scale = stats[channels + c] * w[c], shift = b[c];
            for (int p = 0; p < positions; p++)
                y[at + p] = (x[at + p] - mean) * scale + shift;
        })
    charge_kernel(d, t0);
}

static void cpu_bn_backward_sums(dp_device *d, float *sums, const float *dy, const float *x,
                                 const float *stats, int n, int channels, int positions)
{
    double t0 = dp_now_s();
    int t = kernel_threads(d, (size_t)n * channels * positions);
    FOR_CHUNKS(t, channels, for (int c = (int)lo_; c < (int)hi_; c++) {
        double dyx = 0.0, sdy = 0.0;
        for (int i = 0; i < n; i++) {
            size_t at = dp_bn_at(channels, positions, (size_t)i, c, 0);
            for (int p = 0; p < positions; p++) {
                float xhat = (x[at + p] - stats[c]) * stats[channels + c];
                dyx += (double)dy[at + p] * xhat;
                sdy += dy[at + p];
            }
        }
        sums[c] = (float)dyx;
        sums[channels + c] = (float)sdy;
    })
    charge_kernel(d, t0);
}

static void cpu_bn_backward_dx(dp_device *d, float *dx, const float *dy, const float *x,
                               const float *stats, const float *w, const float *sums, int n,
                               int channels, int positions)
{
    double t0 = dp_now_s();
    float count = stats[2 * channels];
    int t = kernel_threads(d, (size_t)n * channels * positions);
    FOR_CHUNKS(t, n, for (size_t i = lo_; i < hi_; i++)
        for (int c = 0; c < channels; c++) {
            size_t at = dp_bn_at(channels, positions, i, c, 0);
            float mean = stats[c], rstd = stats[channels + c], k = w[c] * rstd;
            float mean_dy = sums[channels + c] / count, mean_dyx = sums[c] / count;
            for (int p = 0; p < positions; p++) {
                float xhat = (x[at + p] - mean) * rstd;
                dx[at + p] = k * (dy[at + p] - mean_dy - xhat * mean_dyx);
            }
        })
    charge_kernel(d, t0);
}

static void cpu_gemm_batched(dp_device *d, int trans_a, int trans_b, int m, int n, int k,
                             float alpha, const float *a, int lda, long stride_a, const float *b,
                             int ldb, long stride_b, float beta, float *c, int ldc, long stride_c,
                             int batch)
{
    for (int i = 0; i < batch; i++)
        cpu_gemm(d, trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb,
                 beta, c + i * stride_c, ldc);
}

static void cpu_add_broadcast(dp_device *d, float *y, const float *x, const float *b, int rows,
                              int n)
{
    double t0 = dp_now_s();
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < n; i++)
            y[(size_t)r * n + i] = x[(size_t)r * n + i] + b[i];
    charge_kernel(d, t0);
}

static void cpu_layernorm_forward(dp_device *d, float *y, float *stats, const float *x,
                                  const float *w, const float *b, int rows, int n)
{
    double t0 = dp_now_s();
    int t = kernel_threads(d, (size_t)rows * n);
    FOR_CHUNKS(t, rows, for (size_t r = lo_; r < hi_; r++)
        dp_layernorm_row(y + r * n, stats + 2 * r, x + r * n, w, b, n);)
    charge_kernel(d, t0);
}

/* The parameter gradients row by row (in memory order), rather than column by column as
 * dp_layernorm_param_grad (which the GPU runs, a thread per column). */
static void cpu_layernorm_backward(dp_device *d, float *dx, float *dw, float *db, const float *dy,
                                   const float *x, const float *stats, const float *w, int rows,
                                   int n, bool accumulate)
{
    double t0 = dp_now_s();
    if (!accumulate) {
        memset(dw, 0, (size_t)n * sizeof *dw);
        memset(db, 0, (size_t)n * sizeof *db);
    }
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * n, *g = dy + (size_t)r * n, *st = stats + 2 * r;
        for (int j = 0; j < n; j++) {
            dw[j] += g[j] * (xr[j] - st[0]) * st[1];
            db[j] += g[j];
        }
        if (dx)
            dp_layernorm_dx_row(dx + (size_t)r * n, g, xr, st, w, n);
    }
    charge_kernel(d, t0);
}

/* Softmax rows [lo, hi), in clones for the vector widths as GELU's. */
VECTOR_CLONES
static void softmax_rows(float *y, const float *x, size_t lo, size_t hi, int n, float scale,
                         int causal)
{
    for (size_t r = lo; r < hi; r++)
        dp_softmax_row(y + r * n, x + r * n, n, scale, causal > 0 ? (int)(r % causal) : n - 1);
}

VECTOR_CLONES
static void softmax_grad_rows(float *dx, const float *y, const float *dy, size_t lo, size_t hi,
                              int n, float scale)
{
    for (size_t r = lo; r < hi; r++)
        dp_softmax_grad_row(dx + r * n, y + r * n, dy + r * n, n, scale);
}

static void cpu_softmax_forward(dp_device *d, float *y, const float *x, int rows, int n,
                                float scale, int causal)
{
    double t0 = dp_now_s();
    int t = kernel_threads(d, (size_t)rows * n);
    FOR_CHUNKS(t, rows, softmax_rows(y, x, lo_, hi_, n, scale, causal);)
    charge_kernel(d, t0);
}

static void cpu_softmax_backward(dp_device *d, float *dx, const float *y, const float *dy,
                                 int rows, int n, float scale)
{
    double t0 = dp_now_s();
    int t = kernel_threads(d, (size_t)rows * n);
    FOR_CHUNKS(t, rows, softmax_grad_rows(dx, y, dy, lo_, hi_, n, scale);)
    charge_kernel(d, t0);
}

static void cpu_embedding_forward(dp_device *d, float *y, const float *ids, const float *table,
                                  int positions, int dim, int vocab)
{
    double t0 = dp_now_s();
    for (int p = 0; p < positions; p++)
        memcpy(y + (size_t)p * dim, table + (size_t)dp_token(ids[p], vocab) * dim,
               (size_t)dim * sizeof *y);
    charge_kernel(d, t0);
}

/* Scattered, position by position, rather than gathered per table entry as the GPU does
 * (dp_embedding_grad_value): the same sums, in the same order. */
static void cpu_embedding_backward(dp_device *d, float *dtable, const float *ids, const float *dy,
                                   int positions, int dim, int vocab, bool accumulate)
{
    double t0 = dp_now_s();
    if (!accumulate)
        memset(dtable, 0, (size_t)vocab * dim * sizeof *dtable);
    for (int p = 0; p < positions; p++) {
        float *row = dtable + (size_t)dp_token(ids[p], vocab) * dim;
        for (int j = 0; j < dim; j++)
            row[j] += dy[(size_t)p * dim + j];
    }
    charge_kernel(d, t0);
}

static void cpu_dropout(dp_device *d, float *y, const float *x, int rows, int n,
                        dp_dropout_args a)
{
    double t0 = dp_now_s();
    int t = kernel_threads(d, (size_t)rows * n);
    FOR_CHUNKS(t, rows, for (size_t r = lo_; r < hi_; r++)
        for (int i = 0; i < n; i++)
            y[r * n + i] = x[r * n + i] * dp_dropout_scale(a, (uint64_t)r, (uint64_t)i);)
    charge_kernel(d, t0);
}

static void cpu_noise(dp_device *d, float *x, int rows, int n, dp_noise_args a)
{
    double t0 = dp_now_s();
    for (int r = 0; r < rows; r++)
        for (int k = 0; k < n; k++)
            x[(size_t)r * n + k] = dp_noise_value(a, (uint64_t)r, (uint64_t)k);
    charge_kernel(d, t0);
}

static void cpu_mlm_mask(dp_device *d, float *x, int32_t *y, int rows, int n, dp_noise_args a)
{
    double t0 = dp_now_s();
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < n; j++) {
            size_t i = (size_t)r * n + j;
            int id = dp_mlm_input(a, (uint64_t)r, (uint64_t)j, x ? (int)x[i] : 0);
            if (x && id >= 0)
                x[i] = (float)id;
            if (y && id < 0)
                y[i] = -1;
        }
    charge_kernel(d, t0);
}

/* Sums in double, as the other losses' (the GPU's are float atomics). */
static void cpu_bce_logits(dp_device *d, const float *z, const int32_t *targets, int n,
                           float grad_scale, float *dz, float *stats)
{
    double t0 = dp_now_s();
    double loss = 0.0, sig = 0.0;
    int right = 0;
    for (int i = 0; i < n; i++) {
        float t = targets[i] ? 1.0f : 0.0f, s = dp_sigmoid(z[i]);
        loss += dp_bce_logits(z[i], t);
        right += (z[i] > 0.0f) == (t > 0.0f);
        sig += s;
        if (dz)
            dz[i] = (s - t) * grad_scale;
    }
    stats[0] += (float)loss;
    stats[1] += (float)right;
    stats[2] += (float)sig;
    charge_kernel(d, t0);
}

/* ---- the helper threads: OpenMP's, and their CPU time ----
 *
 * oneDNN runs on OpenMP (libgomp): a thread that runs its operations with more than one thread
 * has a team of OpenMP threads of its own, which appears during its first operation with more
 * threads than before. The threads that appear meanwhile are listed as helpers (a thread that
 * has ended is dropped when another is listed). The list is written by the threads that drive
 * devices and read by their workers, under helpers_lock. */

#define HELPERS_MAX 1024
static pthread_mutex_t helpers_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t helper_tids[HELPERS_MAX];
static int helpers_n;
static _Atomic int team_threads_now = 1; /* the threads a device's operations use, as last set */
static __thread int omp_threads_seen = 1; /* the calling thread's largest team so far */

/* The process's thread ids into tids[max]; returns how many (0 when /proc is not there). */
static int list_threads(pid_t *tids, int max)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    for (struct dirent *e; d && n < max && (e = readdir(d));)
        if (e->d_name[0] >= '0' && e->d_name[0] <= '9')
            tids[n++] = (pid_t)atol(e->d_name);
    if (d)
        closedir(d);
    return n;
}

static bool listed(const pid_t *tids, int n, pid_t tid)
{
    for (int i = 0; i < n; i++)
        if (tids[i] == tid)
            return true;
    return false;
}

/* Linux's CPU clock of thread `tid` of this process (what pthread_getcpuclockid gives for a
 * pthread_t): readable for any thread of the process, precise to the nanosecond; -1 for a
 * thread that has ended. */
static double thread_cpu_seconds(pid_t tid)
{
    clockid_t clock = (clockid_t)((~(unsigned)tid << 3) | 6u); /* per-thread, scheduler time */
    struct timespec ts;
    return clock_gettime(clock, &ts) == 0 ? (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec : -1;
}

/* The threads there are before a library call that may start the calling thread's OpenMP team
 * (one with more threads than it has had); n -1: no such call. */
typedef struct thread_list {
    int n;
    pid_t tids[HELPERS_MAX];
} thread_list;

static void before_library(int threads, thread_list *before)
{
    before->n = threads > omp_threads_seen ? list_threads(before->tids, HELPERS_MAX) : -1;
}

/* ... and after it: the threads that appeared are listed as helpers. */
static void after_library(int threads, const thread_list *before)
{
    if (before->n < 0)
        return;
    static __thread pid_t now[HELPERS_MAX];
    int n = list_threads(now, HELPERS_MAX);
    pthread_mutex_lock(&helpers_lock);
    for (int i = 0; i < helpers_n;) /* the ended ones out */
        if (thread_cpu_seconds(helper_tids[i]) < 0)
            helper_tids[i] = helper_tids[--helpers_n];
        else
            i++;
    for (int i = 0; i < n && helpers_n < HELPERS_MAX; i++)
        if (!listed(before->tids, before->n, now[i]) && !listed(helper_tids, helpers_n, now[i]))
            helper_tids[helpers_n++] = now[i];
    pthread_mutex_unlock(&helpers_lock);
    omp_threads_seen = threads;
}

double dp_cpu_helper_seconds(void)
{
    double sum = 0;
    pthread_mutex_lock(&helpers_lock);
    for (int i = 0; i < helpers_n; i++) { /* an ended thread's time is gone */
        double s = thread_cpu_seconds(helper_tids[i]);
        sum += s > 0 ? s : 0;
    }
    pthread_mutex_unlock(&helpers_lock);
    return sum;
}

/* The table's cpu_threads: the threads an operation of the calling worker may use, at most the
 * process's cores. */
static int cpu_threads(dp_device *d)
{
    int threads = atomic_load(&team_threads_now), cores = impl_of(d)->cores;
    return threads < cores ? threads : cores;
}

static int kernel_threads(dp_device *d, size_t values)
{
    int t = values >= PARALLEL_MIN ? cpu_threads(d) : 1;
    if (t > omp_threads_seen) { /* the team starts here: its threads are helpers */
        thread_list before;
        before_library(t, &before);
        DO_PRAGMA(omp parallel num_threads(t))
        {
        }
        after_library(t, &before);
    }
    return t;
}

/* ---- GEMMs, convolutions and pooling through oneDNN ---- */

/* Runs CALL with `threads` OpenMP threads, its new helpers listed; charged to d's profile as
 * KIND (gemm or library: KIND_s and KIND_flops) with `flops`. */
#define LIBRARY_CALL(d, threads, KIND, flops, CALL)                                            \
    do {                                                                                      \
        thread_list before_;                                                                  \
        double t0_ = dp_now_s();                                                              \
        before_library((threads), &before_);                                                  \
        CALL;                                                                                 \
        after_library((threads), &before_);                                                   \
        impl_of(d)->prof.KIND##_s += dp_now_s() - t0_;                                        \
        impl_of(d)->prof.KIND##_flops += (flops);                                             \
    } while (0)

static void cpu_gemm(dp_device *d, int trans_a, int trans_b, int m, int n, int k, float alpha,
                     const float *a, int lda, const float *b, int ldb, float beta, float *c,
                     int ldc)
{
    int threads = cpu_threads(d);
    LIBRARY_CALL(d, threads, gemm, 2.0 * m * n * k,
                 dp_onednn_sgemm(impl_of(d)->dnn, threads, trans_a, trans_b, m, n, k, alpha, a,
                                 lda, b, ldb, beta, c, ldc));
}

/* 2 multiply-adds of a convolution's pass (each of the three passes has as many). */
static double conv_flops(dp_conv_geom g, int oc, int n)
{
    return 2.0 * n * oc * g.oh * g.ow * (double)g.c * g.kh * g.kw;
}

static void cpu_conv_forward(dp_device *d, dp_conv_geom g, int oc, int n, float *y,
                             const float *x, const float *w, const float *b)
{
    int threads = cpu_threads(d);
    LIBRARY_CALL(d, threads, library, conv_flops(g, oc, n),
                 dp_onednn_conv_forward(impl_of(d)->dnn, threads, g, oc, n, y, x, w, b));
}

static void cpu_conv_backward_data(dp_device *d, dp_conv_geom g, int oc, int n, float *dx,
                                   const float *dy, const float *w)
{
    int threads = cpu_threads(d);
    LIBRARY_CALL(d, threads, library, conv_flops(g, oc, n),
                 dp_onednn_conv_backward_data(impl_of(d)->dnn, threads, g, oc, n, dx, dy, w));
}

static void cpu_conv_backward_weights(dp_device *d, dp_conv_geom g, int oc, int n, float *dw,
                                      float *db, const float *x, const float *dy)
{
    int threads = cpu_threads(d);
    LIBRARY_CALL(d, threads, library, conv_flops(g, oc, n),
                 dp_onednn_conv_backward_weights(impl_of(d)->dnn, threads, g, oc, n, dw, db, x,
                                                 dy));
}

static void cpu_pool_forward(dp_device *d, bool max, float *y, int32_t *arg, const float *x,
                             int planes, dp_conv_geom g)
{
    if (d->own_kernels || max) { /* max: oneDNN's drops NaN (onednn.h) */
        own_pool_forward(d, max, y, arg, x, planes, g);
        return;
    }
    int threads = cpu_threads(d);
    LIBRARY_CALL(d, threads, library, 0,
                 dp_onednn_avgpool_forward(impl_of(d)->dnn, threads, y, x, planes, g));
}

static void cpu_pool_backward(dp_device *d, bool max, float *dx, const int32_t *arg,
                              const float *dy, int planes, dp_conv_geom g)
{
    if (d->own_kernels || max) {
        own_pool_backward(d, max, dx, arg, dy, planes, g);
        return;
    }
    int threads = cpu_threads(d);
    LIBRARY_CALL(d, threads, library, 0,
                 dp_onednn_avgpool_backward(impl_of(d)->dnn, threads, dx, dy, planes, g));
}

static void cpu_bind(dp_device *d)
{
}

/* "oneDNN 2.6.3 (OpenMP, AVX2)": the library of every GEMM, convolution and average pooling. */
static void cpu_versions(char *text, size_t size)
{
    snprintf(text, size, "%s", dp_onednn_version());
}

static void *cpu_host_alloc(size_t bytes)
{
    return malloc(bytes ? bytes : 1);
}

static const char *cpu_error(dp_device *d)
{
    /* only oneDNN's can fail (making a primitive) once the memory is there */
    return dp_onednn_error(impl_of(d)->dnn);
}

/* The table's device_init: a virtual device with 1 BLAS thread (the trainer sets the count per
 * plan); CPU devices have no ordinal and no TF32. */
static int cpu_device_open(dp_device *d, int index, int ordinal, bool tf32, dp_err *err)
{
    (void)ordinal;
    (void)tf32;
    return dp_cpu_device_init(d, index, 1, err);
}

const dp_backend dp_backend_cpu = {
    .name = "cpu",
    .host_memory = true,
    .bind = cpu_bind,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_memcpy,
    .download = cpu_memcpy,
    .upload_async = cpu_memcpy,
    .copy = cpu_memcpy,
    .zero = cpu_zero,
    .host_alloc = cpu_host_alloc,
    .host_free = free,
    .synchronize = cpu_synchronize,
    .busy_seconds = cpu_busy_seconds,
    .gemm_flops = cpu_gemm_flops,
    .cpu_threads = cpu_threads,
    .helper_cpu_seconds = dp_cpu_helper_seconds,
    .mark = cpu_mark,
    .mark_seconds = cpu_mark_seconds,
    .error = cpu_error,
    .gemm = cpu_gemm,
    .gather_rows = cpu_gather_rows,
    .linear = cpu_linear,
    .sum_rows = cpu_sum_rows,
    .act_forward = cpu_act_forward,
    .act_backward = cpu_act_backward,
    .softmax_xent = cpu_softmax_xent,
    .sgd_step = cpu_sgd_step,
    .adamw_step = cpu_adamw_step,
    .sum_squares = cpu_sum_squares,
    .accumulate_squares = cpu_accumulate_squares,
    .scale = cpu_scale,
    .im2col = cpu_im2col,
    .col2im = cpu_col2im,
    .conv_forward = cpu_conv_forward,
    .conv_backward_data = cpu_conv_backward_data,
    .conv_backward_weights = cpu_conv_backward_weights,
    .pool_forward = cpu_pool_forward,
    .pool_backward = cpu_pool_backward,
    .channel_bias = cpu_channel_bias,
    .channel_bias_grad = cpu_channel_bias_grad,
    .add = cpu_add,
    .bn_sums = cpu_bn_sums,
    .bn_statistics = cpu_bn_statistics,
    .bn_forward = cpu_bn_forward,
    .bn_backward_sums = cpu_bn_backward_sums,
    .bn_backward_dx = cpu_bn_backward_dx,
    .gemm_batched = cpu_gemm_batched,
    .add_broadcast = cpu_add_broadcast,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = cpu_layernorm_backward,
    .softmax_forward = cpu_softmax_forward,
    .softmax_backward = cpu_softmax_backward,
    .embedding_forward = cpu_embedding_forward,
    .embedding_backward = cpu_embedding_backward,
    .dropout = cpu_dropout,
    .noise = cpu_noise,
    .mlm_mask = cpu_mlm_mask,
    .bce_logits = cpu_bce_logits,
    /* device_count, group_* and xfer_* stay NULL: CPU devices are virtual; they all-reduce by
     * threads in a host group (comm_host.c) and link through host slots (link_host.c). */
    .built = true,
    .versions = cpu_versions,
    .device_init = cpu_device_open,
    .device_destroy = dp_cpu_device_destroy,
};

int dp_cpu_device_init(dp_device *d, int index, int team_threads, dp_err *err)
{
    memset(d, 0, sizeof *d);
    cpu_impl *im = calloc(1, sizeof *im);
    if (!im)
        return dp_fail(err, "out of host memory creating cpu:%d", index);
    im->cores = dp_cpu_cores();
    im->dnn = dp_onednn_create(err);
    if (!im->dnn) {
        free(im);
        return -1;
    }
    dp_cpu_set_team_threads(team_threads);
    d->be = &dp_backend_cpu;
    d->index = index;
    snprintf(d->name, sizeof d->name, "cpu:%d", index);
    snprintf(d->model, sizeof d->model, "CPU");
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    d->mem_total = pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
    d->impl = im;
    return 0;
}

void dp_cpu_device_destroy(dp_device *d)
{
    if (d->impl)
        dp_onednn_destroy(impl_of(d)->dnn);
    free(d->impl);
    d->impl = NULL;
}

int dp_cpu_cores(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void dp_cpu_set_team_threads(int threads)
{
#ifdef __SANITIZE_THREAD__
    /* OpenMP's threads (libgomp) are not instrumented, so ThreadSanitizer would report their
     * hand-offs inside an operation as races: under it, operations stay on the calling thread,
     * and the engine's threads are what is checked. */
    threads = 1;
#endif
    atomic_store(&team_threads_now, threads > 0 ? threads : 1);
}

/* Seconds of one C = A B of n x n floats on `threads` threads. */
static double time_sgemm(int threads, int n, const float *a, const float *b, float *c)
{
    thread_list before;
    double t0 = dp_now_s();
    before_library(threads, &before);
    dp_onednn_sgemm(NULL, threads, 0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    after_library(threads, &before);
    return dp_now_s() - t0;
}

double dp_cpu_measure_sgemm(void)
{
    int cores = dp_cpu_cores(), was = atomic_load(&team_threads_now);
    int n = cores <= 8 ? 1536 : 3072; /* big enough to keep every core busy */
    size_t bytes = (size_t)n * n * sizeof(float);
    float *a = malloc(bytes), *b = malloc(bytes), *c = malloc(bytes);
    double best = 0;
    if (a && b && c) {
        for (size_t i = 0; i < (size_t)n * n; i++)
            a[i] = b[i] = (float)(i % 7) * 0.125f;
        dp_cpu_set_team_threads(cores);
        int threads = atomic_load(&team_threads_now); /* (1 under ThreadSanitizer) */
        time_sgemm(threads, n, a, b, c); /* warm-up: the team awake, the buffers touched */
        double flops = 2.0 * n * n * n, spent = 0;
        for (int rep = 0; rep < 8 && (rep < 2 || spent < 0.3); rep++) { /* the best of a few */
            double s = time_sgemm(threads, n, a, b, c);
            spent += s;
            best = s > 0 && flops / s > best ? flops / s : best;
        }
        dp_cpu_set_team_threads(was);
    }
    free(a);
    free(b);
    free(c);
    return best;
}

dp_cpu_profile dp_cpu_device_profile(const dp_device *d)
{
    const cpu_impl *im = d->impl;
    dp_cpu_profile p = im->prof;
    p.references = dp_onednn_references(im->dnn);
    return p;
}
