/* test_blocks.c -- image layers (conv, maxpool, avgpool, flatten), sequence layers (embed, pos,
 * ln, attn) and blocks (res, block) against a double-precision reference written here with
 * plain loops (attention as the textbook's sum over earlier positions), on a CPU device.
 *
 * Each case is a small model ending in a linear layer and the softmax cross-entropy: the
 * engine's mean loss must match the reference's, and its gradients of every parameter and of
 * every input value must match central finite differences of the reference (step 1e-5, in
 * double). Inputs and parameters are drawn so that no ReLU input or max-pool tie sits within
 * the step of a kink. Also: causal masking (a later token never changes an earlier output), the
 * CPU backend's loops against the per-element formulas of kernels.h that the CUDA kernels run,
 * tensor names, and shape errors. */
#include "tests/unit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/layer.h"
#include "engine/model.h"
#include "engine/stage.h"
#include "engine/optim.h"
#include "base/rng.h"

#define FD_STEP 1e-5
#define FWD_TOL 1e-5
#define GRAD_TOL 2e-4

static int close_to(double got, double want, double tol)
{
    return fabs(got - want) <= tol * (1.0 + fabs(want));
}

/* ---- the double reference ---- */

static void ref_list(const dp_layer *layers, int n, int rows, const double *params,
                     const double *x, double *y);

static void ref_conv(const dp_layer *l, int rows, const double *w, const double *x, double *y)
{
    int c = l->in_shape.d[0], h = l->in_shape.d[1], wd = l->in_shape.d[2];
    int oc = l->out_shape.d[0], oh = l->out_shape.d[1], ow = l->out_shape.d[2];
    int k = l->args[1], s = l->nargs > 2 ? l->args[2] : 1, pad = l->nargs > 3 ? l->args[3] : 0;
    const double *b = w + (size_t)oc * c * k * k;
    for (int n = 0; n < rows; n++)
        for (int o = 0; o < oc; o++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    double sum = dp_conv_has_bias(l) ? b[o] : 0.0;
                    for (int ci = 0; ci < c; ci++)
                        for (int a = 0; a < k; a++)
                            for (int e = 0; e < k; e++) {
                                int hi = i * s - pad + a, wj = j * s - pad + e;
                                if (hi >= 0 && hi < h && wj >= 0 && wj < wd)
                                    sum += w[((o * c + ci) * k + a) * k + e] *
                                           x[((n * c + ci) * h + hi) * wd + wj];
                            }
                    y[((n * oc + o) * oh + i) * ow + j] = sum;
                }
}

static void ref_pool(const dp_layer *l, int rows, const double *x, double *y)
{
    int c = l->in_shape.d[0], h = l->in_shape.d[1], wd = l->in_shape.d[2];
    int oh = l->out_shape.d[1], ow = l->out_shape.d[2];
    int kh = l->nargs ? l->args[0] : h, kw = l->nargs ? l->args[0] : wd;
    int sh = l->nargs > 1 ? l->args[1] : kh, sw = l->nargs > 1 ? l->args[1] : kw;
    bool max = l->ops == &dp_layer_maxpool;
    for (int p = 0; p < rows * c; p++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                double best = -INFINITY, sum = 0.0;
                for (int a = 0; a < kh; a++)
                    for (int e = 0; e < kw; e++) {
                        double v = x[((size_t)p * h + i * sh + a) * wd + j * sw + e];
                        best = v > best ? v : best;
                        sum += v;
                    }
                y[((size_t)p * oh + i) * ow + j] = max ? best : sum / (kh * kw);
            }
}

static void ref_linear(const dp_layer *l, int rows, const double *w, const double *x, double *y)
{
    int in = l->in_shape.d[l->in_shape.ndim - 1], out = l->args[0];
    int n = rows * (l->in / in);
    const double *b = w + (size_t)out * in;
    for (int r = 0; r < n; r++)
        for (int o = 0; o < out; o++) {
            double s = b[o];
            for (int i = 0; i < in; i++)
                s += x[(size_t)r * in + i] * w[(size_t)o * in + i];
            y[(size_t)r * out + o] = s;
        }
}

static void ref_res(const dp_layer *l, int rows, const double *params, const double *x,
                    double *y)
{
    int body = l->shortcut >= 0 ? l->shortcut : l->n_children;
    double *shortcut = malloc((size_t)rows * l->out * sizeof *shortcut);
    ck_assert(shortcut);
    ref_list(l->children, body, rows, params, x, y);
    if (l->shortcut >= 0)
        ref_list(&l->children[l->shortcut], 1, rows, params, x, shortcut);
    else
        memcpy(shortcut, x, (size_t)rows * l->in * sizeof *x);
    for (size_t i = 0; i < (size_t)rows * l->out; i++)
        y[i] += shortcut[i];
    free(shortcut);
}

static void ref_ln(int rows, int d, const double *w, const double *x, double *y)
{
    for (int r = 0; r < rows; r++) {
        const double *xr = x + (size_t)r * d;
        double mean = 0.0, var = 0.0;
        for (int i = 0; i < d; i++)
            mean += xr[i] / d;
        for (int i = 0; i < d; i++)
            var += (xr[i] - mean) * (xr[i] - mean) / d;
        for (int i = 0; i < d; i++)
            y[(size_t)r * d + i] = (xr[i] - mean) / sqrt(var + 1e-5) * w[i] + w[d + i];
    }
}

/* Each position t attends to positions 0..t: softmax(q_t . k_j / sqrt(hd)) over j, summing v_j. */
static void ref_attn(const dp_layer *l, int rows, const double *w, const double *x, double *y)
{
    int t = l->in_shape.d[0], d = l->in_shape.d[1], h = l->args[0], hd = d / h;
    const double *wa = w, *ba = wa + 3 * d * d, *wp = ba + 3 * d, *bp = wp + d * d;
    double *qkv = malloc((size_t)t * 3 * d * sizeof *qkv), *o = malloc((size_t)t * d * sizeof *o);
    ck_assert(qkv && o);
    for (int n = 0; n < rows; n++) {
        const double *xn = x + (size_t)n * t * d;
        for (int i = 0; i < t; i++)
            for (int c = 0; c < 3 * d; c++) {
                double s = ba[c];
                for (int e = 0; e < d; e++)
                    s += xn[i * d + e] * wa[c * d + e];
                qkv[i * 3 * d + c] = s;
            }
        for (int hh = 0; hh < h; hh++)
            for (int i = 0; i < t; i++) {
                double score[64], top = -INFINITY, sum = 0.0;
                for (int j = 0; j <= i; j++) {
                    score[j] = 0.0;
                    for (int e = 0; e < hd; e++)
                        score[j] += qkv[i * 3 * d + hh * hd + e] * qkv[j * 3 * d + d + hh * hd + e];
                    score[j] /= sqrt((double)hd);
                    top = score[j] > top ? score[j] : top;
                }
                for (int j = 0; j <= i; j++)
                    sum += exp(score[j] - top);
                for (int e = 0; e < hd; e++) {
                    double s = 0.0;
                    for (int j = 0; j <= i; j++)
                        s += exp(score[j] - top) / sum * qkv[j * 3 * d + 2 * d + hh * hd + e];
                    o[i * d + hh * hd + e] = s;
                }
            }
        for (int i = 0; i < t; i++)
            for (int c = 0; c < d; c++) {
                double s = bp[c];
                for (int e = 0; e < d; e++)
                    s += o[i * d + e] * wp[c * d + e];
                y[((size_t)n * t + i) * d + c] = s;
            }
    }
    free(qkv);
    free(o);
}

/* y = layer(x); params is the start of the parameters the layer's param_offset counts from. */
static void ref_layer(const dp_layer *l, int rows, const double *params, const double *x,
                      double *y)
{
    const double *w = params + l->param_offset;
    size_t n = (size_t)rows * l->in;
    if (l->ops == &dp_layer_conv)
        ref_conv(l, rows, w, x, y);
    else if (l->ops == &dp_layer_maxpool || l->ops == &dp_layer_avgpool)
        ref_pool(l, rows, x, y);
    else if (l->ops == &dp_layer_linear)
        ref_linear(l, rows, w, x, y);
    else if (l->ops == &dp_layer_res)
        ref_res(l, rows, w, x, y);
    else if (l->ops == &dp_layer_block)
        ref_list(l->children, l->n_children, rows, w, x, y);
    else if (l->ops == &dp_layer_attn)
        ref_attn(l, rows, w, x, y);
    else if (l->ops == &dp_layer_ln)
        ref_ln((int)(n / l->in_shape.d[l->in_shape.ndim - 1]), l->in_shape.d[l->in_shape.ndim - 1],
               w, x, y);
    else if (l->ops == &dp_layer_embed)
        for (size_t i = 0; i < n; i++)
            memcpy(y + i * l->args[1], w + (size_t)x[i] * l->args[1], l->args[1] * sizeof *y);
    else if (l->ops == &dp_layer_pos)
        for (size_t i = 0; i < n; i++)
            y[i] = x[i] + w[i % l->in];
    else if (l->ops == &dp_layer_gelu)
        for (size_t i = 0; i < n; i++)
            y[i] = 0.5 * x[i] * (1.0 + tanh(sqrt(2.0 / M_PI) * (x[i] + 0.044715 * pow(x[i], 3))));
    else if (l->ops == &dp_layer_flatten)
        memcpy(y, x, n * sizeof *x);
    else if (l->ops == &dp_layer_relu)
        for (size_t i = 0; i < n; i++)
            y[i] = x[i] > 0 ? x[i] : 0.0;
    else if (l->ops == &dp_layer_tanh)
        for (size_t i = 0; i < n; i++)
            y[i] = tanh(x[i]);
    else
        ck_abort_msg("no reference for %s", l->ops->name);
}

/* Runs layers[0..n) in a row. */
static void ref_list(const dp_layer *layers, int n, int rows, const double *params,
                     const double *x, double *y)
{
    const double *cur = x;
    double *tmp = NULL;
    for (int i = 0; i < n; i++) {
        double *out = i == n - 1 ? y : malloc((size_t)rows * layers[i].out * sizeof *out);
        ck_assert(out);
        ref_layer(&layers[i], rows, params, cur, out);
        free(tmp);
        tmp = out == y ? NULL : out;
        cur = out;
    }
}

/* The mean softmax cross-entropy of the model over rows samples. */
static double ref_loss(const dp_model *m, int rows, const double *params, const double *x,
                       const int32_t *labels)
{
    int positions = rows * m->targets;
    double *z = malloc((size_t)positions * m->classes * sizeof *z), loss = 0.0;
    ck_assert(z);
    ref_list(m->layers, m->n_layers, rows, params, x, z);
    for (int r = 0; r < positions; r++) {
        const double *zr = z + (size_t)r * m->classes;
        double top = zr[0], sum = 0.0;
        for (int c = 1; c < m->classes; c++)
            top = zr[c] > top ? zr[c] : top;
        for (int c = 0; c < m->classes; c++)
            sum += exp(zr[c] - top);
        loss += top + log(sum) - zr[labels[r]];
    }
    free(z);
    return loss / positions;
}

static double fd(const dp_model *m, int rows, double *params, double *x, const int32_t *labels,
                 double *v)
{
    double keep = *v;
    *v = keep + FD_STEP;
    double up = ref_loss(m, rows, params, x, labels);
    *v = keep - FD_STEP;
    double down = ref_loss(m, rows, params, x, labels);
    *v = keep;
    return (up - down) / (2.0 * FD_STEP);
}

/* ---- the engine against the reference ---- */

/* Builds spec on inputs of shape `in`, runs one forward and backward of `rows` samples through
 * a stage holding every layer, and checks the loss, every parameter's gradient and every input
 * value's gradient. With vocab > 0 the inputs are ids below vocab, whose gradient is 0. */
static void check_model_of(const char *spec, dp_shape in, int classes, int rows, int vocab)
{
    dp_device dev;
    dp_err err;
    ck_assert_msg(dp_cpu_device_init(&dev, 0, 1, &err) == 0, "%s", err.msg);
    dp_model m;
    ck_assert_msg(dp_model_parse_shape(&m, spec, in, classes, &err) == 0, "%s: %s", spec,
                  err.msg);
    dp_optim_config oc = dp_optim_defaults();
    dp_stage s;
    ck_assert_msg(dp_stage_create(&s, &m, &dev, 0, m.n_layers, rows, 1, &oc, &err) == 0, "%s",
                  err.msg);
    size_t nx = (size_t)rows * m.in_features, np = m.n_params;
    int positions = rows * m.targets;
    float *x = malloc(nx * sizeof *x), *p = malloc(np * sizeof *p);
    float *g = malloc(np * sizeof *g), *dx = malloc(nx * sizeof *dx);
    double *xd = malloc(nx * sizeof *xd), *pd = malloc(np * sizeof *pd);
    int32_t *labels = malloc((size_t)positions * sizeof *labels);
    ck_assert(x && p && g && dx && xd && pd && labels);
    dp_rng r = dp_rng_stream(5, 100, 2);
    dp_model_init_params(&m, p, 3);
    for (size_t i = 0; i < np; i++)
        pd[i] = p[i];
    dp_stage_upload_params(&s, p);
    for (size_t i = 0; i < nx; i++) /* distinct values, so that max-pooling has no ties */
        xd[i] = x[i] = vocab ? (float)(int)(dp_rng_uniform(&r) * vocab)
                             : (float)(2.0 * dp_rng_uniform(&r) - 1.0);
    for (int i = 0; i < positions; i++)
        labels[i] = (int32_t)(dp_rng_uniform(&r) * classes);

    dev.be->upload(&dev, dp_stage_input(&s, 0), x, nx * sizeof *x);
    dev.be->upload(&dev, dp_stage_labels(&s, 0), labels, (size_t)positions * sizeof *labels);
    dp_stage_forward(&s, 0, rows, NULL);
    float *dlogits = dp_stage_loss(&s, 0, rows, 1.0f / (float)positions, true);
    float *dinput = dp_stage_backward(&s, 0, rows, dlogits, false, true, NULL, NULL);
    ck_assert_ptr_nonnull(dinput);
    dev.be->download(&dev, g, s.grads, np * sizeof *g);
    dev.be->download(&dev, dx, dinput, nx * sizeof *dx);
    float stats[2];
    dev.be->download(&dev, stats, s.stats, sizeof stats);

    double want = ref_loss(&m, rows, pd, xd, labels);
    ck_assert_msg(close_to(stats[0] / positions, want, FWD_TOL), "%s: loss %.9g, reference %.9g",
                  spec, stats[0] / positions, want);
    for (size_t i = 0; i < np; i++) {
        double d = fd(&m, rows, pd, xd, labels, &pd[i]);
        ck_assert_msg(close_to(g[i], d, GRAD_TOL), "%s: dparam[%zu] = %.9g, reference %.9g",
                      spec, i, g[i], d);
    }
    for (size_t i = 0; i < nx; i++) {
        double d = vocab ? 0.0 : fd(&m, rows, pd, xd, labels, &xd[i]);
        ck_assert_msg(close_to(dx[i], d, GRAD_TOL), "%s: dx[%zu] = %.9g, reference %.9g", spec,
                      i, dx[i], d);
    }
    free(x), free(p), free(g), free(dx), free(xd), free(pd), free(labels);
    dp_stage_destroy(&s);
    dp_model_free(&m);
    dp_cpu_device_destroy(&dev);
}

static void check_model(const char *spec, dp_shape in, int classes, int rows)
{
    check_model_of(spec, in, classes, rows, 0);
}

static const dp_shape image_2x6x5 = { 3, { 2, 6, 5 } };
static const dp_shape tokens_5 = { 1, { 5 } };

START_TEST(test_conv_grad)
{
    check_model("conv:3:3, flatten, linear:4", image_2x6x5, 4, 2);
    check_model("conv:3:3:2:1, tanh, flatten, linear:4", image_2x6x5, 4, 3);
    check_model("conv:3:3:2:1:0, tanh, flatten, linear:4", image_2x6x5, 4, 3); /* no bias */
    check_model("conv:2:1, conv:2:2:2, flatten, linear:3", image_2x6x5, 3, 2);
}
END_TEST

START_TEST(test_pool_grad)
{
    check_model("maxpool:2, flatten, linear:3", image_2x6x5, 3, 2);
    check_model("maxpool:3:1, flatten, linear:3", image_2x6x5, 3, 2); /* overlapping windows */
    check_model("avgpool:2, flatten, linear:3", image_2x6x5, 3, 2);
    check_model("avgpool:2:1, flatten, linear:3", image_2x6x5, 3, 2);
    check_model("conv:3:3:1:1, avgpool, flatten, linear:3", image_2x6x5, 3, 2); /* global */
}
END_TEST

START_TEST(test_res_grad)
{
    /* identity shortcut; a strided projection; vectors with a linear projection */
    check_model("res(conv:2:3:1:1, tanh, conv:2:3:1:1), flatten, linear:3", image_2x6x5, 3, 2);
    check_model("res(conv:4:3:2:1, tanh, conv:4:3:1:1), tanh, flatten, linear:3", image_2x6x5, 3,
                2);
    check_model("res(linear:7, tanh), res(linear:5), linear:3", (dp_shape){ 1, { 5 } }, 3, 3);
}
END_TEST

START_TEST(test_sequence_grad)
{
    check_model_of("embed:7:6, linear:4", tokens_5, 4, 2, 7);
    check_model_of("embed:7:6, pos, ln, linear:4", tokens_5, 4, 2, 7);
    check_model_of("embed:7:6, attn:2, linear:4", tokens_5, 4, 2, 7);
    check_model_of("embed:7:6, attn:3, gelu, attn:1, linear:4", tokens_5, 4, 3, 7);
    /* sequences as inputs (inputs' gradients checked too): ln and attention on [5, 3] */
    check_model("linear:6, ln, attn:2, linear:4", (dp_shape){ 2, { 5, 3 } }, 4, 2);
}
END_TEST

START_TEST(test_block_grad)
{
    check_model_of("embed:7:6, pos, block:2, block:3, ln, linear:5", tokens_5, 5, 2, 7);
}
END_TEST

/* Changing the token at position 3 leaves the outputs at positions 0..2 exactly as they were,
 * and changes those at 3 and after: attention looks only backwards. */
START_TEST(test_causal)
{
    dp_device dev;
    dp_err err;
    ck_assert_msg(dp_cpu_device_init(&dev, 0, 1, &err) == 0, "%s", err.msg);
    dp_model m;
    enum { T = 6, C = 5 };
    ck_assert_msg(dp_model_parse_shape(&m, "embed:9:8, pos, block:2, block:4, ln, linear:5",
                                       (dp_shape){ 1, { T } }, C, &err) == 0,
                  "%s", err.msg);
    dp_optim_config oc = dp_optim_defaults();
    dp_stage s;
    ck_assert_msg(dp_stage_create(&s, &m, &dev, 0, m.n_layers, 1, 1, &oc, &err) == 0, "%s",
                  err.msg);
    float *p = malloc(m.n_params * sizeof *p);
    ck_assert(p);
    dp_model_init_params(&m, p, 11);
    dp_stage_upload_params(&s, p);
    float ids[T] = { 1, 4, 2, 8, 0, 3 }, before[T * C], after[T * C];
    memcpy(dp_stage_input(&s, 0), ids, sizeof ids);
    dp_stage_forward(&s, 0, 1, NULL);
    memcpy(before, dp_stage_output(&s, 0), sizeof before);
    ids[3] = 5;
    memcpy(dp_stage_input(&s, 0), ids, sizeof ids);
    dp_stage_forward(&s, 0, 1, NULL);
    memcpy(after, dp_stage_output(&s, 0), sizeof after);
    ck_assert_msg(!memcmp(before, after, 3 * C * sizeof *before),
                  "an earlier position's output changed with a later token");
    for (int t = 3; t < T; t++)
        ck_assert_msg(memcmp(before + t * C, after + t * C, C * sizeof *before),
                      "position %d did not change with the token at 3", t);
    free(p);
    dp_stage_destroy(&s);
    dp_model_free(&m);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* dropout:25 in training: a quarter of the values zeroed (within 2 % over 20,000), the rest
 * scaled by 4/3; the same mask for the same key, another for another step or sample offset;
 * backward applies the forward's mask; evaluation passes values through. */
START_TEST(test_dropout)
{
    dp_device dev;
    dp_err err;
    ck_assert_msg(dp_cpu_device_init(&dev, 0, 1, &err) == 0, "%s", err.msg);
    dp_model m;
    enum { ROWS = 40, N = 500 };
    ck_assert_msg(dp_model_parse(&m, "dropout:25, linear:3", N, 3, &err) == 0, "%s", err.msg);
    dp_optim_config oc = dp_optim_defaults();
    dp_stage s;
    ck_assert_msg(dp_stage_create(&s, &m, &dev, 0, 1, ROWS, 1, &oc, &err) == 0, "%s", err.msg);
    float *in = dp_stage_input(&s, 0), *out = dp_stage_output(&s, 0);
    float *first = malloc(ROWS * N * sizeof *first), *dy = malloc(ROWS * N * sizeof *dy);
    ck_assert(first && dy);
    for (int i = 0; i < ROWS * N; i++)
        in[i] = 1.0f + (float)(i % 7), dy[i] = 2.0f;
    dp_step_key key = { 5, 3, 100 };
    dp_stage_forward(&s, 0, ROWS, &key);
    int zeros = 0;
    for (int i = 0; i < ROWS * N; i++) {
        zeros += out[i] == 0.0f;
        ck_assert(out[i] == 0.0f || out[i] == in[i] * (1.0f / 0.75f));
    }
    ck_assert_msg(abs(zeros - ROWS * N / 4) < ROWS * N / 50, "%d of %d zeroed", zeros, ROWS * N);
    memcpy(first, out, ROWS * N * sizeof *first);
    dp_stage_forward(&s, 0, ROWS, &key);
    ck_assert(!memcmp(first, out, ROWS * N * sizeof *first));
    float *dx = dp_stage_backward(&s, 0, ROWS, dy, false, true, NULL, NULL);
    for (int i = 0; i < ROWS * N; i++)
        ck_assert(dx[i] == (first[i] == 0.0f ? 0.0f : 2.0f / 0.75f));
    dp_step_key other_step = { 5, 4, 100 }, other_rows = { 5, 3, 101 };
    dp_stage_forward(&s, 0, ROWS, &other_step);
    ck_assert(memcmp(first, out, ROWS * N * sizeof *first));
    dp_stage_forward(&s, 0, ROWS, &other_rows); /* row r here is row r + 1 of the first pass */
    for (int i = 0; i < (ROWS - 1) * N; i++)
        ck_assert((first[N + i] == 0.0f) == (out[i] == 0.0f));
    dp_stage_forward(&s, 0, ROWS, NULL);
    ck_assert(!memcmp(in, out, ROWS * N * sizeof *in));
    free(first);
    free(dy);
    dp_stage_destroy(&s);
    dp_model_free(&m);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* Max pooling on the CPU (its own kernel on every device: oneDNN's drops NaN) against
 * dp_pool_value, the value and the maximum's place, on planes wide enough for the vectorised
 * body of its row loop and its remainder: 2x2 stride 2 (the example models'), 3x3 stride 1
 * (overlapping windows) and 3x2 stride 3x1, with values drawn from eight levels (ties, where
 * the first maximum wins) and NaNs at some places, some side by side (the first NaN wins its
 * windows). */
START_TEST(test_max_pool_rows)
{
    dp_device dev;
    dp_err err;
    ck_assert_msg(dp_cpu_device_init(&dev, 0, 1, &err) == 0, "%s", err.msg);
    dp_conv_geom geoms[] = {
        { 0, 12, 38, 2, 2, 2, 2, 0, 0, 6, 19 },
        { 0, 9, 41, 3, 3, 1, 1, 0, 0, 7, 39 },
        { 0, 10, 29, 3, 2, 3, 1, 0, 0, 3, 28 },
    };
    dp_rng r = dp_rng_stream(5, 100, 4);
    for (size_t gi = 0; gi < sizeof geoms / sizeof *geoms; gi++) {
        dp_conv_geom g = geoms[gi];
        int planes = 3;
        size_t nx = (size_t)planes * g.h * g.w, ny = (size_t)planes * g.oh * g.ow;
        float *x = malloc(nx * sizeof *x), *y = malloc(ny * sizeof *y);
        int32_t *arg = malloc(ny * sizeof *arg);
        ck_assert(x && y && arg);
        for (size_t i = 0; i < nx; i++)
            x[i] = i % 53 == 7 || i % 53 == 8 ? NAN : (float)(int)(8.0 * dp_rng_uniform(&r)) - 4.0f;
        dev.be->pool_forward(&dev, true, y, arg, x, planes, g);
        int nans = 0;
        for (size_t e = 0; e < ny; e++) {
            int32_t at;
            float want = dp_pool_value(x, g, true, e, &at);
            ck_assert_msg(at == arg[e] && (isnan(want) ? isnan(y[e]) : y[e] == want),
                          "geometry %zu: y[%zu] = %g at %d, want %g at %d", gi, e, y[e], arg[e],
                          want, at);
            nans += isnan(y[e]);
        }
        ck_assert_msg(nans > 0, "geometry %zu: no window met a NaN", gi);
        dev.be->pool_forward(&dev, true, y, NULL, x, planes, g); /* no places wanted */
        for (size_t e = 0; e < ny; e++) {
            float want = dp_pool_value(x, g, true, e, NULL);
            ck_assert(isnan(want) ? isnan(y[e]) : y[e] == want);
        }
        free(x), free(y), free(arg);
    }
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* The CPU backend's loops against the per-element formulas that the CUDA kernels evaluate. */
START_TEST(test_cpu_loops_match_formulas)
{
    dp_device dev;
    dp_err err;
    ck_assert_msg(dp_cpu_device_init(&dev, 0, 1, &err) == 0, "%s", err.msg);
    dev.own_kernels = true; /* the loops, not oneDNN (test_conv_library.c) */
    dp_conv_geom geoms[] = {
        { 3, 7, 6, 3, 3, 1, 1, 1, 1, 7, 6 },
        { 2, 9, 8, 3, 3, 2, 2, 1, 1, 5, 4 },
        { 1, 5, 5, 2, 2, 2, 2, 0, 0, 2, 2 },
        { 1, 4, 4, 5, 5, 1, 1, 2, 2, 4, 4 }, /* padding wider than some rows reach */
        { 2, 7, 7, 3, 3, 3, 3, 1, 1, 3, 3 }, /* stride 3 */
        { 1, 3, 3, 3, 3, 2, 2, 2, 2, 3, 3 }, /* whole rows and columns of padding */
    };
    dp_rng r = dp_rng_stream(9, 100, 3);
    for (size_t gi = 0; gi < sizeof geoms / sizeof *geoms; gi++) {
        dp_conv_geom g = geoms[gi];
        int n = 2;
        size_t nx = (size_t)n * g.c * g.h * g.w, ncol = (size_t)n * g.oh * g.ow * g.c * g.kh * g.kw;
        float *x = malloc(nx * sizeof *x), *col = malloc(ncol * sizeof *col);
        float *back = malloc(nx * sizeof *back);
        ck_assert(x && col && back);
        for (size_t i = 0; i < nx; i++)
            x[i] = (float)dp_rng_uniform(&r);
        dev.be->im2col(&dev, col, x, n, g);
        for (size_t e = 0; e < ncol; e++)
            ck_assert_msg(col[e] == dp_im2col_value(x, g, e), "geometry %zu: col[%zu]", gi, e);
        dev.be->col2im(&dev, back, col, n, g);
        for (size_t e = 0; e < nx; e++)
            ck_assert_msg(fabsf(back[e] - dp_col2im_value(col, g, e)) <= 1e-6f,
                          "geometry %zu: dx[%zu] %g vs %g", gi, e, back[e],
                          dp_col2im_value(col, g, e));
        /* pooling over the same planes: max (with where) and average, and their gradients */
        dp_conv_geom pg = { 0, g.h, g.w, 3, 3, 2, 2, 0, 0, (g.h - 3) / 2 + 1, (g.w - 3) / 2 + 1 };
        int planes = n * g.c;
        size_t ny = (size_t)planes * pg.oh * pg.ow;
        float *y = malloc(ny * sizeof *y), *dy = malloc(ny * sizeof *dy);
        int32_t *arg = malloc(ny * sizeof *arg);
        ck_assert(y && dy && arg);
        for (size_t i = 0; i < ny; i++)
            dy[i] = (float)dp_rng_uniform(&r);
        for (int max = 0; max < 2; max++) {
            dev.be->pool_forward(&dev, max, y, arg, x, planes, pg);
            for (size_t e = 0; e < ny; e++) {
                int32_t at;
                ck_assert_msg(y[e] == dp_pool_value(x, pg, max, e, &at) && (!max || at == arg[e]),
                              "geometry %zu: pool %d y[%zu]", gi, max, e);
            }
            dev.be->pool_backward(&dev, max, back, arg, dy, planes, pg);
            for (size_t e = 0; e < nx; e++)
                ck_assert_msg(fabsf(back[e] - dp_pool_grad(dy, arg, pg, max, e)) <= 1e-6f,
                              "geometry %zu: pool %d dx[%zu]", gi, max, e);
        }
        free(y), free(dy), free(arg);
        free(x), free(col), free(back);
    }
    /* layer norm's parameter gradients (the GPU: a column per thread) and an embedding's
     * gradient (the GPU: gathered per table entry) */
    enum { ROWS = 7, N = 5, VOCAB = 4 };
    float x[ROWS * N], dy[ROWS * N], y[ROWS * N], stats[2 * ROWS], w[N], b[N];
    float dw[N], db[N], dx[ROWS * N], ids[ROWS], table[VOCAB * N];
    for (int i = 0; i < ROWS * N; i++)
        x[i] = (float)dp_rng_uniform(&r), dy[i] = (float)dp_rng_uniform(&r) - 0.5f;
    for (int i = 0; i < N; i++)
        w[i] = 1.0f + (float)i / N, b[i] = (float)i;
    for (int i = 0; i < ROWS; i++)
        ids[i] = (float)(i * 3 % VOCAB);
    dev.be->layernorm_forward(&dev, y, stats, x, w, b, ROWS, N);
    dev.be->layernorm_backward(&dev, dx, dw, db, dy, x, stats, w, ROWS, N, false);
    for (int j = 0; j < N; j++) {
        float fw[N], fb[N];
        dp_layernorm_param_grad(fw, fb, dy, x, stats, ROWS, N, j, false);
        ck_assert_msg(fabsf(fw[j] - dw[j]) <= 1e-6f && fabsf(fb[j] - db[j]) <= 1e-6f,
                      "layernorm column %d: %g %g vs %g %g", j, dw[j], db[j], fw[j], fb[j]);
    }
    dev.be->embedding_backward(&dev, table, ids, dy, ROWS, N, VOCAB, false);
    for (int v = 0; v < VOCAB; v++)
        for (int j = 0; j < N; j++)
            ck_assert_msg(table[v * N + j] == dp_embedding_grad_value(ids, dy, ROWS, N, VOCAB, v, j),
                          "embedding gradient [%d, %d]", v, j);
    dp_cpu_device_destroy(&dev);
}
END_TEST

START_TEST(test_names_and_shape_errors)
{
    dp_model m;
    dp_err err;
    ck_assert_msg(dp_model_parse_shape(&m, "conv:8:3:1:1, relu, res(conv:8:3:1:1, relu, "
                                           "conv:16:3:2:1), maxpool:2, flatten, linear:10",
                                       (dp_shape){ 3, { 1, 28, 28 } }, 10, &err) == 0,
                  "%s", err.msg);
    dp_model_tensor t[16];
    int n = dp_model_tensors(&m, t);
    const char *want[] = { "0.weight",      "0.bias",      "2.body.0.weight", "2.body.0.bias",
                           "2.body.2.weight", "2.body.2.bias", "2.proj.weight", "2.proj.bias",
                           "5.weight",      "5.bias" };
    ck_assert_int_eq(n, 10);
    for (int i = 0; i < n; i++)
        ck_assert_str_eq(t[i].name, want[i]);
    ck_assert_int_eq(t[6].info.ndim, 4);
    ck_assert_int_eq(t[6].info.shape[0], 16); /* proj: 1x1, 8 -> 16 channels */
    ck_assert_int_eq(t[6].info.shape[1], 8);
    ck_assert_int_eq(t[6].info.shape[2], 1);
    ck_assert_int_eq(m.layers[2].out_shape.d[1], 14);
    ck_assert_int_eq(m.layers[4].in, 16 * 7 * 7);
    char desc[256];
    dp_model_describe(&m, desc, sizeof desc);
    ck_assert_str_eq(desc, "conv:8:3:1:1, relu, res(conv:8:3:1:1, relu, conv:16:3:2:1), "
                           "maxpool:2, flatten, linear:10");
    dp_model_free(&m);
    /* a linear layer takes images flattened */
    ck_assert_msg(dp_model_parse_shape(&m, "conv:8:3, linear:10", (dp_shape){ 3, { 1, 28, 28 } },
                                       10, &err) == 0,
                  "%s", err.msg);
    ck_assert_int_eq((int)m.n_params, 8 * 9 + 8 + 10 * 8 * 26 * 26 + 10);
    dp_model_free(&m);

    struct {
        const char *spec, *needle;
    } bad[] = {
        { "flatten, conv:8:3, linear:10", "conv needs images" },
        { "conv:8:29, flatten, linear:10", "does not fit the 28x28 input" },
        { "conv:8:3:1:3, flatten, linear:10", "padding 3 is more than half" },
        { "conv:8:3, flatten", "the last layer gives 5408 outputs but the data has 10" },
        { "conv:8:3", "ends with images" },
        { "res(), flatten, linear:10", "res needs at least one layer" },
        { "res(conv:8:3, flatten), linear:10", "no projection can match" },
        { "res(conv:8:3:1:1, flatten, linear:10", "not closed" },
        { "conv(relu), flatten, linear:10", "only res takes a layer list" },
        { "res(res(res(relu))), flatten, linear:10", "nest at most 2 deep" },
        { "maxpool:0, flatten, linear:10", "must be at least 1" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err.msg[0] = '\0';
        ck_assert_msg(dp_model_parse_shape(&m, bad[i].spec, (dp_shape){ 3, { 1, 28, 28 } }, 10,
                                           &err) < 0,
                      "\"%s\" was accepted", bad[i].spec);
        ck_assert_msg(strstr(err.msg, bad[i].needle), "\"%s\": \"%s\" lacks \"%s\"", bad[i].spec,
                      err.msg, bad[i].needle);
    }
}
END_TEST

Suite *blocks_suite(void)
{
    Suite *s = suite_create("blocks");
    TCase *tc = tcase_create("blocks");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_conv_grad);
    tcase_add_test(tc, test_pool_grad);
    tcase_add_test(tc, test_res_grad);
    tcase_add_test(tc, test_sequence_grad);
    tcase_add_test(tc, test_block_grad);
    tcase_add_test(tc, test_causal);
    tcase_add_test(tc, test_dropout);
    tcase_add_test(tc, test_cpu_loops_match_formulas);
    tcase_add_test(tc, test_max_pool_rows);
    tcase_add_test(tc, test_names_and_shape_errors);
    suite_add_tcase(s, tc);
    return s;
}
