/* test_layers.c -- layers and models against a double-precision reference.
 *
 * Each layer runs in float on a CPU device. The reference re-implements the forward pass in
 * double (y = x W^T + b; relu; gelu's tanh approximation; tanh) and differentiates it by
 * central finite differences (step 1e-5, whose truncation and rounding errors are below 1e-9),
 * so a float analytic gradient is checked against numbers that are accurate well past float
 * precision. Tolerances: forward 1e-5, gradients 1e-4, accumulated gradients 1e-6 (against
 * 2x a single pass), each absolute plus relative (|got - want| <= tol * (1 + |want|)).
 * Also: accumulation, dx == NULL, a whole model's gradient through a stage, the layer-list
 * parser's errors, initialisation and tensor names. The GAN layers (deconv, unflatten,
 * leakyrelu, sigmoid) have a section of their own at the end, checked on inputs of any shape
 * by the one-layer harness of tests/layer_check.h (which also checks accumulation and dx ==
 * NULL for each). */
#include "tests/unit.h"
#include "tests/layer_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/layer.h"
#include "engine/model.h"
#include "engine/stage.h"
#include "engine/optim.h"
#include "base/rng.h"

#define ROWS 3
#define IN 5
#define OUT 4
#define WIDE 8 /* room for the wider of IN and OUT */

/* ---- the double-precision reference ---- */

static double ref_act(const dp_layer_ops *ops, double x)
{
    if (ops == &dp_layer_relu)
        return x > 0.0 ? x : 0.0;
    if (ops == &dp_layer_gelu) {
        const double k = sqrt(2.0 / M_PI);
        return 0.5 * x * (1.0 + tanh(k * (x + 0.044715 * x * x * x)));
    }
    if (ops == &dp_layer_tanh)
        return tanh(x);
    ck_abort_msg("no reference for layer kind %s", ops->name);
    return 0.0;
}

/* y[rows, l->out] = layer(x[rows, l->in]) in double; params is the layer's own run. */
static void ref_forward(const dp_layer *l, int rows, const double *params, const double *x,
                        double *y)
{
    if (l->ops == &dp_layer_linear) {
        const double *w = params, *b = params + (size_t)l->out * l->in;
        for (int r = 0; r < rows; r++)
            for (int o = 0; o < l->out; o++) {
                double s = b[o];
                for (int i = 0; i < l->in; i++)
                    s += x[r * l->in + i] * w[o * l->in + i];
                y[r * l->out + o] = s;
            }
        return;
    }
    for (int i = 0; i < rows * l->in; i++)
        y[i] = ref_act(l->ops, x[i]);
}

/* L = sum(layer(x) * rr) in double. */
static double ref_objective(const dp_layer *l, int rows, const double *params, const double *x,
                            const double *rr)
{
    double y[ROWS * WIDE], sum = 0.0;
    ref_forward(l, rows, params, x, y);
    for (int i = 0; i < rows * l->out; i++)
        sum += y[i] * rr[i];
    return sum;
}

/* Central difference of ref_objective with respect to v[i] (v is x or params). */
static double ref_diff(const dp_layer *l, int rows, double *params, double *x, const double *rr,
                       double *v, int i)
{
    double keep = v[i];
    v[i] = keep + FD_STEP;
    double up = ref_objective(l, rows, params, x, rr);
    v[i] = keep - FD_STEP;
    double down = ref_objective(l, rows, params, x, rr);
    v[i] = keep;
    return (up - down) / (2.0 * FD_STEP);
}

/* The mean cross-entropy of a whole model over rows samples, in double. */
static double ref_model_loss(const dp_model *m, const double *params, const double *x,
                             const int32_t *labels, int rows, int *correct)
{
    double a[2][8 * 16];
    memcpy(a[0], x, (size_t)rows * m->in_features * sizeof *x);
    int cur = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const dp_layer *l = &m->layers[i];
        ref_forward(l, rows, params + l->param_offset, a[cur], a[cur ^ 1]);
        cur ^= 1;
    }
    double loss = 0.0;
    *correct = 0;
    for (int r = 0; r < rows; r++) {
        const double *z = a[cur] + (size_t)r * m->classes;
        int best = 0;
        for (int c = 1; c < m->classes; c++)
            if (z[c] > z[best])
                best = c;
        double sum = 0.0;
        for (int c = 0; c < m->classes; c++)
            sum += exp(z[c] - z[best]);
        loss += z[best] + log(sum) - z[labels[r]];
        *correct += best == labels[r];
    }
    return loss / rows;
}

/* ---- one layer against the reference ---- */

/* Everything one layer test needs, in float (device) and double (reference). */
typedef struct layer_case {
    dp_layer l;
    float x[ROWS * IN], y[ROWS * WIDE], r[ROWS * WIDE], dx[ROWS * IN];
    float params[OUT * IN + OUT], grads[OUT * IN + OUT];
    double xd[ROWS * IN], rd[ROWS * WIDE], pd[OUT * IN + OUT];
} layer_case;

/* Builds a layer of kind ops (linear gets width OUT) on input width IN, with random x, r and
 * parameters; inputs of activations keep |x| in [0.05, 3] so that ReLU's kink is far away. */
static void layer_case_init(layer_case *c, const dp_layer_ops *ops, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->l.ops = ops;
    c->l.index = 0;
    c->l.in = IN;
    c->l.in_shape = (dp_shape){ 1, { IN } };
    if (ops == &dp_layer_linear) {
        c->l.args[0] = OUT;
        c->l.nargs = 1;
    }
    dp_err err;
    ck_assert_msg(ops->infer(&c->l, &err) == 0, "%s: infer: %s", ops->name, err.msg);
    c->l.out = dp_shape_count(c->l.out_shape);
    dp_rng rng = dp_rng_stream(seed, 100, 0);
    for (int i = 0; i < ROWS * IN; i++) {
        double v = uniform(&rng, 0.05, 3.0);
        c->x[i] = (float)(i % 2 ? -v : v); /* both signs, for ReLU */
        c->xd[i] = c->x[i];
    }
    for (int i = 0; i < ROWS * c->l.out; i++) {
        c->r[i] = (float)uniform(&rng, -1.0, 1.0);
        c->rd[i] = c->r[i];
    }
    for (size_t i = 0; i < c->l.param_count; i++) {
        c->params[i] = (float)uniform(&rng, -0.5, 0.5);
        c->pd[i] = c->params[i];
    }
}

/* Runs forward and backward (dy = r) of a layer case on the device; grads and dx receive the
 * backward's output (dx not at all when with_dx is 0). */
static void layer_case_run(layer_case *c, dp_device *dev, int accumulate, int with_dx)
{
    dp_pass p = { .dev = dev, .rows = ROWS, .accumulate = accumulate };
    c->l.ops->forward(&c->l, &p, c->params, c->x, c->y);
    c->l.ops->backward(&c->l, &p, c->params, c->grads, c->x, c->y, c->r, with_dx ? c->dx : NULL);
}

/* Forward against the double reference, and dx, dW, db against its finite differences. */
static void check_layer(const dp_layer_ops *ops, uint64_t seed)
{
    dp_device dev;
    device_init(&dev);
    layer_case *c = calloc(1, sizeof *c);
    ck_assert(c);
    layer_case_init(c, ops, seed);
    layer_case_run(c, &dev, 0, 1);

    double yd[ROWS * WIDE];
    ref_forward(&c->l, ROWS, c->pd, c->xd, yd);
    for (int i = 0; i < ROWS * c->l.out; i++)
        ck_assert_msg(close_to(c->y[i], yd[i], FWD_TOL), "%s: y[%d] = %.9g, reference %.9g",
                      ops->name, i, c->y[i], yd[i]);

    for (int i = 0; i < ROWS * IN; i++) {
        double want = ref_diff(&c->l, ROWS, c->pd, c->xd, c->rd, c->xd, i);
        ck_assert_msg(close_to(c->dx[i], want, GRAD_TOL),
                      "%s: dx[%d] = %.9g, finite difference %.9g (x = %.6g)", ops->name, i,
                      c->dx[i], want, c->xd[i]);
    }
    for (size_t i = 0; i < c->l.param_count; i++) {
        double want = ref_diff(&c->l, ROWS, c->pd, c->xd, c->rd, c->pd, (int)i);
        ck_assert_msg(close_to(c->grads[i], want, GRAD_TOL),
                      "%s: dparam[%zu] = %.9g, finite difference %.9g", ops->name, i,
                      c->grads[i], want);
    }
    free(c);
    dp_cpu_device_destroy(&dev);
}

/* linear: forward y = x W^T + b, and dx, dW, db against finite differences. */
START_TEST(test_linear_grad)
{
    check_layer(&dp_layer_linear, 1);
}
END_TEST

/* relu: forward and dx against finite differences, inputs away from the kink. */
START_TEST(test_relu_grad)
{
    check_layer(&dp_layer_relu, 2);
}
END_TEST

/* gelu (tanh approximation): forward and dx against finite differences. */
START_TEST(test_gelu_grad)
{
    check_layer(&dp_layer_gelu, 3);
}
END_TEST

/* tanh: forward and dx against finite differences. */
START_TEST(test_tanh_grad)
{
    check_layer(&dp_layer_tanh, 4);
}
END_TEST

/* NaN in, NaN out, as in PyTorch, through every activation and op on the CPU device, so that
 * a NaN in the weights reaches the loss and the NaN guard: relu (alone, and fused after a
 * linear layer; its gradient passes where x is NaN, as threshold_backward's), gelu (both),
 * tanh, max and average pooling, layer norm, attention's softmax, dropout and the loss. The
 * activations run over 37 values with NaN at 1, 21 and 36, so that it meets both the
 * vectorised body of the loops (0-31 at 8 lanes, 0-35 at 4) and their scalar remainder. */
START_TEST(test_nan_propagates)
{
    const float nan = NAN;
    dp_device dev;
    device_init(&dev);
    const dp_backend *be = dev.be;
    enum { N = 37 };
    float x[N], y[N], dx[N], dy[N];
    for (int i = 0; i < N; i++) {
        x[i] = i == 1 || i == 21 || i == 36 ? nan : 0.25f * (float)(i % 7) - 0.8f;
        dy[i] = 0.25f + 0.125f * (float)(i % 5);
    }
    const dp_act acts[] = { DP_ACT_RELU, DP_ACT_GELU, DP_ACT_TANH, DP_ACT_LEAKY_RELU,
                            DP_ACT_SIGMOID, DP_ACT_GELU_ERF };
    for (int a = 0; a < 6; a++) {
        be->act_forward(&dev, acts[a], 0.2f, y, x, N);
        be->act_backward(&dev, acts[a], 0.2f, dx, x, y, dy, N);
        /* relu's gradient passes where x is NaN, leaky ReLU's is scaled (PyTorch's
         * threshold_backward and leaky_relu_backward) */
        bool passes = acts[a] == DP_ACT_RELU || acts[a] == DP_ACT_LEAKY_RELU;
        for (int i = 0; i < N; i++) {
            bool is_nan = i == 1 || i == 21 || i == 36;
            ck_assert_msg(is_nan ? isnan(y[i]) : isfinite(y[i]), "act %d: y[%d] = %g", a, i,
                          y[i]);
            ck_assert_msg(is_nan && !passes ? isnan(dx[i]) : isfinite(dx[i]),
                          "act %d: dx[%d] = %g", a, i, dx[i]);
        }
        if (acts[a] == DP_ACT_RELU) /* x[2] = -0.3 */
            ck_assert(dx[1] == dy[1] && dx[2] == 0.0f);
        if (acts[a] == DP_ACT_LEAKY_RELU)
            ck_assert(dx[1] == 0.2f * dy[1] && dx[2] == 0.2f * dy[2] && dx[4] == dy[4]);
    }
    memcpy(y, x, sizeof y); /* in place, as after a linear layer */
    be->act_forward(&dev, DP_ACT_RELU, 0.0f, y, y, 4);
    ck_assert_msg(isnan(y[1]) && y[2] == 0.0f, "relu in place: %g %g", y[1], y[2]);

    float w[2 * 2] = { 0.5f, nan, -1.0f, 1.0f }, b[2] = { -5.0f, -5.0f }, in[2] = { 1.0f, 1.0f };
    be->linear(&dev, 1, 2, 2, in, w, b, y, true); /* rows 1, out 2, in 2, with the ReLU */
    ck_assert_msg(isnan(y[0]) && y[1] == 0.0f, "linear+relu: %g %g", y[0], y[1]);

    dp_conv_geom g = { .c = 1, .h = 2, .w = 2, .kh = 2, .kw = 2, .sh = 2, .sw = 2, .oh = 1,
                       .ow = 1 };
    int32_t arg;
    float pooled;
    float plane[4] = { 3.0f, nan, 1.0f, 2.0f };
    be->pool_forward(&dev, true, &pooled, &arg, plane, 1, g);
    ck_assert_msg(isnan(pooled), "maxpool: %g", pooled);
    be->pool_forward(&dev, false, &pooled, NULL, plane, 1, g);
    ck_assert_msg(isnan(pooled), "avgpool: %g", pooled);

    float ones[4] = { 1.0f, 1.0f, 1.0f, 1.0f }, zeros[4] = { 0 }, stats[2];
    be->layernorm_forward(&dev, y, stats, x, ones, zeros, 1, 4);
    ck_assert_msg(isnan(y[0]) && isnan(y[3]), "layernorm: %g %g", y[0], y[3]);
    be->softmax_forward(&dev, y, x, 1, 4, 1.0f, 0); /* NaN in the remainder of the lanes */
    ck_assert_msg(isnan(y[0]) && isnan(y[3]), "softmax: %g %g", y[0], y[3]);
    be->softmax_forward(&dev, y, x + 16, 1, 16, 1.0f, 0); /* in the lanes' body (x[21]) */
    ck_assert_msg(isnan(y[0]) && isnan(y[15]), "softmax: %g %g", y[0], y[15]);

    dp_dropout_args drop = { .seed = 1, .step = 1, .p = 0.5f };
    float many[64], out[64];
    for (int i = 0; i < 64; i++)
        many[i] = nan;
    be->dropout(&dev, out, many, 1, 64, drop);
    for (int i = 0; i < 64; i++) /* dropped or kept: NaN x 0 is NaN, as in torch */
        ck_assert_msg(isnan(out[i]), "dropout: out[%d] = %g", i, out[i]);

    float logits[2 * 3] = { 0.1f, 0.2f, 0.3f, nan, 0.0f, 1.0f }, loss_stats[3] = { 0 };
    int32_t labels[2] = { 2, 1 };
    float dlogits[2 * 3];
    be->softmax_xent(&dev, logits, labels, 2, 3, 0.5f, dlogits, loss_stats);
    ck_assert_msg(isnan(loss_stats[0]), "loss: %g", loss_stats[0]);
    ck_assert_msg(isnan(dlogits[3]) && !isnan(dlogits[0]), "dlogits: %g %g", dlogits[3],
                  dlogits[0]);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* Attention's softmax rows on the CPU device against softmax(scale x) in double, with and
 * without the causal mask, for widths below, at and across the eight lanes the kernel sums in
 * (1 to 131), rows with a large spread (values up to 40 apart) and in place; the gradient
 * scale y (dy - sum(y dy)) against the same formula in double. Tolerance 1e-6 relative, plus
 * what float's roundings of the exponent's terms allow (see the check). */
START_TEST(test_softmax_rows)
{
    dp_device dev;
    device_init(&dev);
    const int widths[] = { 1, 5, 8, 9, 16, 23, 64, 131 };
    const float scale = 0.7f;
    for (size_t w = 0; w < sizeof widths / sizeof *widths; w++) {
        int n = widths[w], rows = 3 * n; /* causal rows: every limit 0..n-1, three times */
        size_t len = (size_t)rows * n;
        float *x = malloc(len * sizeof *x), *y = malloc(len * sizeof *y);
        float *dy = malloc(len * sizeof *dy), *dx = malloc(len * sizeof *dx);
        ck_assert(x && y && dy && dx);
        dp_rng r = dp_rng_stream(7, 0, (uint64_t)n);
        for (size_t i = 0; i < len; i++) {
            x[i] = (float)(80.0 * dp_rng_uniform(&r) - 40.0) * (i % 3 ? 0.05f : 1.0f);
            dy[i] = (float)(2.0 * dp_rng_uniform(&r) - 1.0);
        }
        for (int causal = 0; causal <= 1; causal++) {
            dev.be->softmax_forward(&dev, y, x, rows, n, scale, causal ? n : 0);
            dev.be->softmax_backward(&dev, dx, y, dy, rows, n, scale);
            for (int row = 0; row < rows; row++) {
                const float *xr = x + (size_t)row * n, *yr = y + (size_t)row * n;
                const float *dyr = dy + (size_t)row * n, *dxr = dx + (size_t)row * n;
                int limit = causal ? row % n : n - 1;
                double top = -INFINITY, sum = 0.0, dot = 0.0;
                for (int i = 0; i <= limit; i++)
                    top = fmax(top, (double)scale * xr[i]);
                for (int i = 0; i <= limit; i++)
                    sum += exp((double)scale * xr[i] - top);
                for (int i = 0; i < n; i++)
                    dot += (double)yr[i] * dyr[i];
                for (int i = 0; i < n; i++) {
                    double arg = (double)scale * xr[i] - top;
                    double want = i <= limit ? exp(arg) / sum : 0.0;
                    /* plus float's roundings of scale x, of the row's maximum and of their
                     * difference, each up to 6e-8 of its size, in the exponent */
                    double sx = (double)scale * xr[i];
                    double slack = 1.2e-7 * (fabs(sx) + fabs(top) + fabs(arg));
                    ck_assert_msg(fabs(yr[i] - want) <= (1e-6 + slack) * want,
                                  "n %d causal %d row %d: y[%d] = %.9g, want %.12g", n, causal,
                                  row, i, yr[i], want);
                    double dwant = (double)scale * yr[i] * (dyr[i] - dot);
                    ck_assert_msg(fabs(dxr[i] - dwant) <= 1e-6 * (fabs(dwant) + yr[i]),
                                  "n %d causal %d row %d: dx[%d] = %.9g, want %.12g", n,
                                  causal, row, i, dxr[i], dwant);
                }
            }
        }
        memcpy(dx, x, len * sizeof *dx); /* in place gives the same bits */
        dev.be->softmax_forward(&dev, dx, dx, rows, n, scale, 0);
        dev.be->softmax_forward(&dev, y, x, rows, n, scale, 0);
        ck_assert_msg(!memcmp(dx, y, len * sizeof *y), "n %d: in place differs", n);
        free(x);
        free(y);
        free(dy);
        free(dx);
    }
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* linear backward: without accumulate the gradients are overwritten (stale values in the
 * buffer do not leak in); with accumulate a second pass adds, giving 2x (tolerance 1e-6); dx is
 * written, never added to. */
START_TEST(test_linear_accumulate)
{
    dp_device dev;
    device_init(&dev);
    layer_case *c = calloc(1, sizeof *c);
    ck_assert(c);
    layer_case_init(c, &dp_layer_linear, 5);
    size_t n = c->l.param_count;
    for (size_t i = 0; i < n; i++)
        c->grads[i] = 1234.5f;
    for (int i = 0; i < ROWS * IN; i++)
        c->dx[i] = 99.0f;
    layer_case_run(c, &dev, 0, 1);
    float once[OUT * IN + OUT], dx_once[ROWS * IN];
    memcpy(once, c->grads, sizeof once);
    memcpy(dx_once, c->dx, sizeof dx_once);
    for (size_t i = 0; i < n; i++) {
        double want = ref_diff(&c->l, ROWS, c->pd, c->xd, c->rd, c->pd, (int)i);
        ck_assert_msg(close_to(once[i], want, GRAD_TOL),
                      "overwrite: dparam[%zu] = %.9g, finite difference %.9g", i, once[i], want);
    }
    layer_case_run(c, &dev, 1, 1);
    for (size_t i = 0; i < n; i++) /* 2x up to float rounding (the GEMM adds in its order) */
        ck_assert_msg(close_to(c->grads[i], 2.0 * once[i], ACC_TOL),
                      "accumulate: dparam[%zu] = %.9g, want %.9g", i, c->grads[i], 2.0 * once[i]);
    for (int i = 0; i < ROWS * IN; i++)
        ck_assert_msg(c->dx[i] == dx_once[i], "accumulate: dx[%d] = %.9g, want %.9g (written)",
                      i, c->dx[i], dx_once[i]);
    free(c);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* dx == NULL: every kind's backward skips dx (a write through NULL would crash the test) and
 * linear's parameter gradients are the same as with dx. */
START_TEST(test_backward_null_dx)
{
    dp_device dev;
    device_init(&dev);
    const dp_layer_ops *kinds[] = { &dp_layer_linear, &dp_layer_relu, &dp_layer_gelu,
                                    &dp_layer_tanh, &dp_layer_leakyrelu, &dp_layer_sigmoid };
    layer_case *c = calloc(1, sizeof *c);
    ck_assert(c);
    for (int k = 0; k < 6; k++) {
        layer_case_init(c, kinds[k], 6);
        layer_case_run(c, &dev, 0, 1);
        float with_dx[OUT * IN + OUT];
        memcpy(with_dx, c->grads, sizeof with_dx);
        memset(c->grads, 0, sizeof c->grads);
        layer_case_run(c, &dev, 0, 0);
        for (size_t i = 0; i < c->l.param_count; i++)
            ck_assert_msg(c->grads[i] == with_dx[i],
                          "%s: dparam[%zu] = %.9g without dx, %.9g with", kinds[k]->name, i,
                          c->grads[i], with_dx[i]);
    }
    free(c);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* ---- a whole model through a stage ---- */

#define MODEL_SPEC "linear:6, gelu, linear:5, tanh, linear:3"
#define MODEL_IN 4
#define MODEL_CLASSES 3
#define MODEL_ROWS 7

/* The stage's gradient of the mean cross-entropy (forward, loss with scale 1/rows, backward)
 * against finite differences of the double reference in every parameter; also the loss sum
 * and the correct count in stage->stats. */
START_TEST(test_model_grad)
{
    dp_device dev;
    device_init(&dev);
    dp_model m;
    dp_err err;
    ck_assert_msg(dp_model_parse(&m, MODEL_SPEC, MODEL_IN, MODEL_CLASSES, &err) == 0, "parse: %s",
                  err.msg);
    ck_assert_uint_eq(m.n_params, 4 * 6 + 6 + 6 * 5 + 5 + 5 * 3 + 3);
    dp_optim_config oc = dp_optim_defaults();
    dp_stage s;
    ck_assert_msg(dp_stage_create(&s, &m, &dev, 0, m.n_layers, MODEL_ROWS, 1, &oc, &err) == 0,
                  "stage: %s", err.msg);

    float *host = malloc(m.n_params * sizeof *host), *grads = malloc(m.n_params * sizeof *grads);
    double *pd = malloc(m.n_params * sizeof *pd);
    ck_assert(host && grads && pd);
    dp_model_init_params(&m, host, 7);
    for (size_t i = 0; i < m.n_params; i++)
        pd[i] = host[i];
    dp_stage_upload_params(&s, host);

    float x[MODEL_ROWS * MODEL_IN];
    double xd[MODEL_ROWS * MODEL_IN];
    int32_t labels[MODEL_ROWS];
    dp_rng rng = dp_rng_stream(8, 100, 1);
    for (int i = 0; i < MODEL_ROWS * MODEL_IN; i++) {
        x[i] = (float)uniform(&rng, -2.0, 2.0);
        xd[i] = x[i];
    }
    for (int r = 0; r < MODEL_ROWS; r++)
        labels[r] = r % MODEL_CLASSES;
    dev.be->upload(&dev, dp_stage_input(&s, 0), x, sizeof x);
    dev.be->upload(&dev, dp_stage_labels(&s, 0), labels, sizeof labels);

    dp_stage_forward(&s, 0, MODEL_ROWS, NULL);
    float *dlogits = dp_stage_loss(&s, 0, MODEL_ROWS, 1.0f / MODEL_ROWS, true);
    ck_assert_ptr_nonnull(dlogits);
    ck_assert_ptr_null(dp_stage_backward(&s, 0, MODEL_ROWS, dlogits, false, false, NULL, NULL));
    dev.be->download(&dev, grads, s.grads, m.n_params * sizeof *grads);
    float stats[2];
    dev.be->download(&dev, stats, s.stats, sizeof stats);

    int correct;
    double loss = ref_model_loss(&m, pd, xd, labels, MODEL_ROWS, &correct);
    ck_assert_msg(close_to(stats[0] / MODEL_ROWS, loss, FWD_TOL),
                  "mean loss %.9g, reference %.9g", stats[0] / MODEL_ROWS, loss);
    ck_assert_msg(stats[1] == (float)correct, "correct %g, reference %d", stats[1], correct);

    for (size_t i = 0; i < m.n_params; i++) {
        double keep = pd[i];
        pd[i] = keep + FD_STEP;
        double up = ref_model_loss(&m, pd, xd, labels, MODEL_ROWS, &correct);
        pd[i] = keep - FD_STEP;
        double down = ref_model_loss(&m, pd, xd, labels, MODEL_ROWS, &correct);
        pd[i] = keep;
        double want = (up - down) / (2.0 * FD_STEP);
        ck_assert_msg(close_to(grads[i], want, GRAD_TOL),
                      "dparam[%zu] = %.9g, finite difference %.9g", i, grads[i], want);
    }
    free(host);
    free(grads);
    free(pd);
    dp_stage_destroy(&s);
    dp_model_free(&m);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* ---- the layer-list parser, initialisation, tensor names ---- */

/* Parses spec, expecting failure with a message that contains `needle`. */
static void expect_parse_error(const char *spec, int in, int classes, const char *needle)
{
    dp_model m;
    dp_err err;
    err.msg[0] = '\0';
    int rc = dp_model_parse(&m, spec, in, classes, &err);
    ck_assert_msg(rc == -1, "\"%s\": returned %d, want -1", spec, rc);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "\"%s\": message \"%s\" lacks \"%s\"", spec,
                  err.msg, needle);
    ck_assert_msg(m.layers == NULL && m.n_layers == 0, "\"%s\": model not freed on failure",
                  spec);
}

/* Bad layer lists fail with -1 and a message that names the problem. */
START_TEST(test_parse_errors)
{
    expect_parse_error("linear:8, cnv:3, linear:3", 4, 3, "unknown layer kind \"cnv\"");
    expect_parse_error("linear, linear:3", 4, 3, "\"linear\": write linear:OUT");
    expect_parse_error("linear:8, relu:3, linear:3", 4, 3, "relu takes no numbers");
    expect_parse_error("linear:8, relu:3, linear:3", 4, 3, "layer 1");
    expect_parse_error("linear:8, relu, linear:4", 4, 3, "gives 4 outputs but the data has 3 classes");
    expect_parse_error("", 4, 3, "the layer list is empty");
    expect_parse_error("   ", 4, 3, "the layer list is empty");
    expect_parse_error("linear:8, relu, linear:3,", 4, 3, "trailing comma");
    expect_parse_error("linear:8,, linear:3", 4, 3, "layer 1 is empty");
    expect_parse_error("linear:0, linear:3", 4, 3, "the output width must be at least 1");
    expect_parse_error("linear:x, linear:3", 4, 3, "expected a whole number");
    expect_parse_error("relu", 3, 3, "no parameters");
    expect_parse_error("linear:16777216, linear:200", 4, 200,
                       "layer 1 (linear:200): has 3355443400 parameters (at most 2147483647)");

    dp_model m;
    dp_err err;
    ck_assert_msg(dp_model_parse(&m, " linear:8 ,relu,  linear:3 ", 4, 3, &err) == 0,
                  "a good list failed: %s", err.msg);
    ck_assert_int_eq(m.n_layers, 3);
    ck_assert_msg(m.layers[0].ops == &dp_layer_linear && m.layers[1].ops == &dp_layer_relu &&
                      m.layers[2].ops == &dp_layer_linear,
                  "wrong kinds");
    ck_assert_msg(m.layers[0].in == 4 && m.layers[0].out == 8 && m.layers[2].in == 8 &&
                      m.layers[2].out == 3,
                  "widths %d->%d, %d->%d", m.layers[0].in, m.layers[0].out, m.layers[2].in,
                  m.layers[2].out);
    dp_model_free(&m);
}
END_TEST

/* nn.Linear's init: every weight and bias of linear:in within +-1/sqrt(in), spread over that
 * range (not all equal); the same seed gives the same vector, another seed a different one. */
START_TEST(test_init_params)
{
    dp_model m;
    dp_err err;
    ck_assert_msg(dp_model_parse(&m, "linear:20, relu, linear:3", 10, 3, &err) == 0, "%s",
                  err.msg);
    float *a = malloc(m.n_params * sizeof *a), *b = malloc(m.n_params * sizeof *b);
    ck_assert(a && b);
    dp_model_init_params(&m, a, 42);
    for (int li = 0; li < m.n_layers; li++) {
        const dp_layer *l = &m.layers[li];
        if (!l->param_count)
            continue;
        double bound = 1.0 / sqrt((double)l->in);
        float lo = a[l->param_offset], hi = lo;
        for (size_t i = 0; i < l->param_count; i++) {
            float v = a[l->param_offset + i];
            ck_assert_msg(fabs(v) <= bound, "layer %d param %zu = %.9g outside +-%.9g", li, i, v,
                          bound);
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        /* 230 (or 63) uniform draws cover well over half the range */
        ck_assert_msg(hi - lo > bound, "layer %d: values span only [%.9g, %.9g] of +-%.9g", li,
                      lo, hi, bound);
        /* the bias too is drawn, not left at a constant */
        size_t nw = (size_t)l->out * l->in;
        ck_assert_msg(a[l->param_offset + nw] != a[l->param_offset + nw + 1],
                      "layer %d: bias[0] == bias[1] == %.9g", li, a[l->param_offset + nw]);
    }
    dp_model_init_params(&m, b, 42);
    ck_assert_msg(memcmp(a, b, m.n_params * sizeof *a) == 0, "seed 42 twice gives two vectors");
    dp_model_init_params(&m, b, 43);
    size_t same = 0;
    for (size_t i = 0; i < m.n_params; i++)
        same += a[i] == b[i];
    ck_assert_msg(same < m.n_params / 10, "seeds 42 and 43 agree on %zu of %zu parameters", same,
                  m.n_params);
    free(a);
    free(b);
    dp_model_free(&m);
}
END_TEST

/* dp_model_tensors: PyTorch's state_dict names and shapes ([out, in], [out]) in order, laid out
 * back to back over the flat vector. */
START_TEST(test_model_tensors)
{
    dp_model m;
    dp_err err;
    ck_assert_msg(dp_model_parse(&m, MODEL_SPEC, MODEL_IN, MODEL_CLASSES, &err) == 0, "%s",
                  err.msg);
    int n = dp_model_tensors(&m, NULL);
    ck_assert_int_eq(n, 6);
    dp_model_tensor t[6];
    ck_assert_int_eq(dp_model_tensors(&m, t), 6);
    const char *names[6] = { "0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias" };
    const int ndim[6] = { 2, 1, 2, 1, 2, 1 };
    const int64_t shape[6][2] = { { 6, 4 }, { 6, 0 }, { 5, 6 }, { 5, 0 }, { 3, 5 }, { 3, 0 } };
    size_t offset = 0;
    for (int i = 0; i < 6; i++) {
        ck_assert_str_eq(t[i].name, names[i]);
        ck_assert_msg(t[i].info.ndim == ndim[i], "%s: ndim %d, want %d", names[i], t[i].info.ndim,
                      ndim[i]);
        size_t count = 1;
        for (int d = 0; d < ndim[i]; d++) {
            ck_assert_msg(t[i].info.shape[d] == shape[i][d], "%s: shape[%d] = %lld, want %lld",
                          names[i], d, (long long)t[i].info.shape[d], (long long)shape[i][d]);
            count *= (size_t)shape[i][d];
        }
        ck_assert_msg(t[i].info.count == count && t[i].info.offset == offset,
                      "%s: count %zu offset %zu, want %zu and %zu", names[i], t[i].info.count,
                      t[i].info.offset, count, offset);
        offset += count;
    }
    ck_assert_uint_eq(offset, m.n_params);
    dp_model_free(&m);
}
END_TEST

/* ---- the GAN layers: deconv, unflatten, leakyrelu, sigmoid ----
 *
 * One layer parsed from its text on inputs of any shape, run forward and backward on the CPU
 * device with buffers sized from the layer (its scratch too), against a double reference
 * written here with plain loops: a transposed convolution as its textbook scatter,
 * y[o, i s - p + ki, j s - p + kj] += x[c, i, j] w[c, o, ki, kj], and its adjoint for the
 * gradients of large cases where finite differences would be slow. */

/* nn.LeakyReLU's default slope, which `leakyrelu` alone means. */
#define LEAKY_DEFAULT 0.01

static double ref_slope(const dp_layer *l)
{
    return l->nargs > 0 ? l->reals[0] : LEAKY_DEFAULT;
}

/* Stride and padding of a deconv layer as written. */
static int deconv_stride_of(const dp_layer *l)
{
    return l->nargs > 2 ? l->args[2] : 1;
}

static int deconv_pad_of(const dp_layer *l)
{
    return l->nargs > 3 ? l->args[3] : 0;
}

/* nn.ConvTranspose2d in double: y [rows, OUT, HO, WO] from x [rows, C, H, W], w [C, OUT, K, K]
 * and the bias [OUT] after it (when it has one). */
static void ref_deconv(const dp_layer *l, int rows, const double *w, const double *x, double *y)
{
    int c = l->in_shape.d[0], h = l->in_shape.d[1], wd = l->in_shape.d[2];
    int oc = l->out_shape.d[0], oh = l->out_shape.d[1], ow = l->out_shape.d[2];
    int k = l->args[1], s = deconv_stride_of(l), pad = deconv_pad_of(l);
    const double *b = w + (size_t)c * oc * k * k;
    for (int n = 0; n < rows; n++) {
        double *yn = y + (size_t)n * oc * oh * ow;
        for (int o = 0; o < oc; o++)
            for (int e = 0; e < oh * ow; e++)
                yn[o * oh * ow + e] = dp_conv_has_bias(l) ? b[o] : 0.0; /* BIAS 0: none */
        for (int ci = 0; ci < c; ci++)
            for (int i = 0; i < h; i++)
                for (int j = 0; j < wd; j++) {
                    double v = x[((size_t)(n * c + ci) * h + i) * wd + j];
                    for (int o = 0; o < oc; o++)
                        for (int ki = 0; ki < k; ki++)
                            for (int kj = 0; kj < k; kj++) {
                                int yi = i * s - pad + ki, yj = j * s - pad + kj;
                                if (yi >= 0 && yi < oh && yj >= 0 && yj < ow)
                                    yn[(o * oh + yi) * ow + yj] +=
                                        v * w[((ci * oc + o) * k + ki) * k + kj];
                            }
                }
    }
}

/* The adjoint of ref_deconv: dx, dw (weight then bias) from dy, each written. */
static void ref_deconv_backward(const dp_layer *l, int rows, const double *w, const double *x,
                                const double *dy, double *dx, double *dw)
{
    int c = l->in_shape.d[0], h = l->in_shape.d[1], wd = l->in_shape.d[2];
    int oc = l->out_shape.d[0], oh = l->out_shape.d[1], ow = l->out_shape.d[2];
    int k = l->args[1], s = deconv_stride_of(l), pad = deconv_pad_of(l);
    memset(dw, 0, l->param_count * sizeof *dw);
    double *db = dw + (size_t)c * oc * k * k;
    for (int n = 0; n < rows; n++) {
        const double *dyn = dy + (size_t)n * oc * oh * ow;
        for (int o = 0; o < oc; o++)
            for (int e = 0; e < oh * ow; e++)
                db[o] += dyn[o * oh * ow + e];
        for (int ci = 0; ci < c; ci++)
            for (int i = 0; i < h; i++)
                for (int j = 0; j < wd; j++) {
                    size_t at = ((size_t)(n * c + ci) * h + i) * wd + j;
                    double sum = 0.0;
                    for (int o = 0; o < oc; o++)
                        for (int ki = 0; ki < k; ki++)
                            for (int kj = 0; kj < k; kj++) {
                                int yi = i * s - pad + ki, yj = j * s - pad + kj;
                                if (yi < 0 || yi >= oh || yj < 0 || yj >= ow)
                                    continue;
                                size_t wi = ((size_t)(ci * oc + o) * k + ki) * k + kj;
                                double g = dyn[(o * oh + yi) * ow + yj];
                                sum += g * w[wi];
                                dw[wi] += g * x[at];
                            }
                    dx[at] = sum;
                }
    }
}

/* y = layer(x) in double for the kinds of this section (and linear, for whole models). */
static void ref_gan_layer(const dp_layer *l, int rows, const double *params, const double *x,
                          double *y)
{
    size_t n = (size_t)rows * l->in;
    if (l->ops == &dp_layer_deconv) {
        ref_deconv(l, rows, params, x, y);
    } else if (l->ops == &dp_layer_leakyrelu) {
        double slope = ref_slope(l);
        for (size_t i = 0; i < n; i++)
            y[i] = x[i] > 0.0 ? x[i] : slope * x[i];
    } else if (l->ops == &dp_layer_sigmoid) {
        for (size_t i = 0; i < n; i++)
            y[i] = 1.0 / (1.0 + exp(-x[i]));
    } else if (l->ops == &dp_layer_unflatten || l->ops == &dp_layer_flatten) {
        memcpy(y, x, n * sizeof *y);
    } else if (l->ops == &dp_layer_linear) {
        ref_forward(l, rows, params, x, y);
    } else {
        ck_abort_msg("no reference for layer kind %s", l->ops->name);
    }
}

/* The GAN layers' checks (tests/layer_check.h): |x| at least 0.05, away from leaky ReLU's kink. */
static const layer_harness gan_layers = { .ref = ref_gan_layer, .stream = 3, .x_gap = 0.05 };

static dp_shape image(int c, int h, int w)
{
    return (dp_shape){ 3, { c, h, w } };
}

/* deconv against nn.ConvTranspose2d's formula and its finite differences: stride 1 and 2 (and
 * 3, wider than the kernel, which leaves outputs that only the bias reaches), padding 0, 1 and
 * 2 (as wide as the kernel), kernels 1, 2, 3 and 4, non-square inputs, C != OUT, and DCGAN's
 * first layer (a 1x1 input to 4x4). */
START_TEST(test_deconv_grad)
{
    check_one_layer(&gan_layers, "deconv:2:3", image(3, 3, 4), 2, 11);     /* 3x4 -> 5x6 */
    check_one_layer(&gan_layers, "deconv:3:4:2:1", image(2, 3, 2), 2, 12); /* 3x2 -> 6x4 */
    check_one_layer(&gan_layers, "deconv:3:1", image(2, 2, 3), 2, 13);     /* K 1 */
    check_one_layer(&gan_layers, "deconv:2:3:2:0", image(3, 2, 3), 2, 14); /* 2x3 -> 5x7 */
    check_one_layer(&gan_layers, "deconv:2:3:1:1", image(3, 3, 2), 2, 15); /* the same size */
    check_one_layer(&gan_layers, "deconv:4:4:1:0", image(5, 1, 1), 3, 16); /* DCGAN's first layer */
    check_one_layer(&gan_layers, "deconv:2:2:3", image(2, 2, 2), 2, 17);   /* stride 3 > K 2 */
    check_one_layer(&gan_layers, "deconv:2:2:3:2", image(2, 3, 3), 2, 18); /* padding = K */
    check_one_layer(&gan_layers, "deconv:1:3:2:1", image(1, 1, 3), 1, 19); /* 1x3 -> 1x5 */
    /* without a bias (BIAS 0: PyTorch's bias=False), and conv the same */
    check_one_layer(&gan_layers, "deconv:3:4:2:1:0", image(2, 3, 2), 2, 23);
    dp_model m;
    dp_err err;
    ck_assert_int_eq(dp_model_parse_shape(&m, "conv:3:3:1:1:0, deconv:2:4:2:1:0, flatten, "
                                              "linear:2",
                                          image(2, 4, 4), 2, &err), 0);
    ck_assert_uint_eq(m.layers[0].param_count, 3 * 2 * 3 * 3);
    ck_assert_uint_eq(m.layers[1].param_count, 3 * 2 * 4 * 4);
    ck_assert_int_eq(dp_model_tensors(&m, NULL), 2 + 2); /* two weights, linear's two */
    dp_model_free(&m);
    ck_assert_int_lt(dp_model_parse_shape(&m, "conv:3:3:1:1:2, flatten, linear:2",
                                          image(2, 4, 4), 2, &err), 0);
    ck_assert_msg(strstr(err.msg, "BIAS is 1"), "%s", err.msg);

    /* the shapes the layer gives, (H - 1) * STRIDE - 2 * PAD + K */
    one_layer c;
    one_layer_init(&c, &gan_layers, "deconv:3:4:2:1", image(2, 3, 2), 1, 1);
    ck_assert_int_eq(c.l->out_shape.ndim, 3);
    ck_assert_int_eq(c.l->out_shape.d[0], 3);
    ck_assert_int_eq(c.l->out_shape.d[1], 6);
    ck_assert_int_eq(c.l->out_shape.d[2], 4);
    ck_assert_int_eq(c.l->out, 3 * 6 * 4);
    ck_assert_uint_eq(c.l->param_count, 2 * 3 * 4 * 4 + 3);
    ck_assert_msg(c.l->ops->flops(c.l) == 2.0 * 2 * 3 * 4 * 4 * 3 * 2, "flops %g",
                  c.l->ops->flops(c.l));
    one_layer_free(&c);
}
END_TEST

/* deconv backward: without accumulate stale gradients and dx are overwritten; with accumulate
 * a second pass gives 2x; dx is written, never added to; without dx the parameter gradients
 * are the same (check_one_layer checks all these); a pass of 0 rows zeroes them, or leaves
 * them as they were with accumulate. */
START_TEST(test_deconv_accumulate_null_dx)
{
    check_one_layer(&gan_layers, "deconv:3:3:2:1", image(2, 3, 4), 3, 21);

    dp_device dev;
    device_init(&dev);
    one_layer c;
    one_layer_init(&c, &gan_layers, "deconv:3:3:2:1", image(2, 3, 4), 3, 21);
    one_layer_run(&c, &dev, 0, 1);
    float *once = zalloc(c.np, sizeof *once);
    memcpy(once, c.grads, c.np * sizeof *once);
    c.rows = 0; /* an empty micro-batch: zero gradients, or untouched ones with accumulate */
    one_layer_run(&c, &dev, 1, 1);
    ck_assert_msg(c.grads[0] == once[0], "0 rows with accumulate changed the gradients");
    one_layer_run(&c, &dev, 0, 1);
    for (size_t i = 0; i < c.np; i++)
        ck_assert_msg(c.grads[i] == 0.0f, "0 rows: dparam[%zu] = %.9g", i, c.grads[i]);
    free(once);
    one_layer_free(&c);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* The index of the first got[i] not close to want[i], or n when all are. */
static size_t first_far(const float *got, const double *want, size_t n, double tol)
{
    size_t i = 0;
    while (i < n && close_to(got[i], want[i], tol))
        i++;
    return i;
}

/* deconv on samples whose patch matrices take more than half the chunk budget (32 MB), so that
 * 3 samples go through as a chunk of 2 and a chunk of 1: the output, dx and the gradients
 * (summed over the chunks) against the double reference and its adjoint. */
START_TEST(test_deconv_chunks)
{
    dp_device dev;
    device_init(&dev);
    one_layer c; /* 64 * 4 * 4 * 64 * 64 = 4194304 floats of patches per sample */
    one_layer_init(&c, &gan_layers, "deconv:64:4", image(2, 64, 64), 3, 22);
    ck_assert_uint_eq(c.l->ops->scratch(c.l, 3, NULL), 2 * 4194304u);
    one_layer_run(&c, &dev, 0, 1);
    double *yd = zalloc(c.ny, sizeof *yd), *dxd = zalloc(c.nx, sizeof *dxd);
    double *gd = zalloc(c.np, sizeof *gd);
    ref_deconv(c.l, c.rows, c.pd, c.xd, yd);
    ref_deconv_backward(c.l, c.rows, c.pd, c.xd, c.rd, dxd, gd);
    /* the first value out of tolerance of each, checked once (Check records every
     * assertion, which a million of them would make slow) */
    size_t bad_y = first_far(c.y, yd, c.ny, FWD_TOL);
    size_t bad_dx = first_far(c.dx, dxd, c.nx, GRAD_TOL);
    ck_assert_msg(bad_y == c.ny, "y[%zu] = %.9g, reference %.9g", bad_y, c.y[bad_y], yd[bad_y]);
    ck_assert_msg(bad_dx == c.nx, "dx[%zu] = %.9g, reference %.9g", bad_dx, c.dx[bad_dx],
                  dxd[bad_dx]);
    /* a weight's gradient sums 3 x 64 x 64 products: relative to their size */
    size_t bad_g = first_far(c.grads, gd, c.np, GRAD_TOL * 10);
    ck_assert_msg(bad_g == c.np, "dparam[%zu] = %.9g, reference %.9g", bad_g, c.grads[bad_g],
                  gd[bad_g]);
    free(yd);
    free(dxd);
    free(gd);
    one_layer_free(&c);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* leakyrelu with slopes 0.2 and -0.5 (PyTorch takes any) and alone (0.01, PyTorch's default):
 * the forward and dx against finite differences; the slope the layer holds. */
START_TEST(test_leakyrelu_grad)
{
    check_one_layer(&gan_layers, "leakyrelu:0.2", image(2, 3, 2), 3, 31);
    check_one_layer(&gan_layers, "leakyrelu:-0.5", (dp_shape){ 1, { 7 } }, 3, 32);
    check_one_layer(&gan_layers, "leakyrelu", (dp_shape){ 2, { 3, 4 } }, 2, 33);
    check_one_layer(&gan_layers, "leakyrelu:2", (dp_shape){ 1, { 7 } }, 2, 34);

    dp_device dev;
    device_init(&dev);
    const char *specs[] = { "leakyrelu:0.2", "leakyrelu:-0.5", "leakyrelu" };
    const float slopes[] = { 0.2f, -0.5f, 0.01f };
    for (int k = 0; k < 3; k++) {
        one_layer c;
        one_layer_init(&c, &gan_layers, specs[k], (dp_shape){ 1, { 4 } }, 1, 35);
        const float x[4] = { -3.0f, 2.5f, -0.0f, -1e-3f };
        memcpy(c.x, x, sizeof x);
        one_layer_run(&c, &dev, 0, 1);
        for (int i = 0; i < 4; i++) {
            float want = x[i] > 0.0f ? x[i] : slopes[k] * x[i];
            float dwant = x[i] > 0.0f ? c.r[i] : slopes[k] * c.r[i];
            ck_assert_msg(c.y[i] == want && c.dx[i] == dwant,
                          "%s: x %g: y %.9g dx %.9g, want %.9g %.9g", specs[k], x[i], c.y[i],
                          c.dx[i], want, dwant);
        }
        one_layer_free(&c);
    }
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* sigmoid: the forward and dx against finite differences; at large |x| it saturates to 0 and
 * 1 without NaN or infinities, still accurate relative to its tiny values down to
 * exp(-80), and its gradient goes to 0. */
START_TEST(test_sigmoid)
{
    check_one_layer(&gan_layers, "sigmoid", image(2, 2, 3), 2, 41);
    check_one_layer(&gan_layers, "sigmoid", (dp_shape){ 1, { 6 } }, 3, 42);

    dp_device dev;
    device_init(&dev);
    one_layer c;
    one_layer_init(&c, &gan_layers, "sigmoid", (dp_shape){ 1, { 12 } }, 1, 43);
    const float x[12] = { 20.0f, 50.0f, 100.0f, 1000.0f, 1e30f, -20.0f,
                          -50.0f, -80.0f, -100.0f, -1000.0f, -1e30f, 0.0f };
    memcpy(c.x, x, sizeof x);
    for (int i = 0; i < 12; i++)
        c.r[i] = 1.0f;
    one_layer_run(&c, &dev, 0, 1);
    for (int i = 0; i < 12; i++) {
        double want = 1.0 / (1.0 + exp(-(double)x[i]));
        ck_assert_msg(isfinite(c.y[i]) && c.y[i] >= 0.0f && c.y[i] <= 1.0f && isfinite(c.dx[i]),
                      "x %g: y %g dx %g", x[i], c.y[i], c.dx[i]);
        ck_assert_msg(close_to(c.y[i], want, FWD_TOL), "x %g: y %.9g, want %.9g", x[i], c.y[i],
                      want);
        ck_assert_msg(close_to(c.dx[i], want * (1.0 - want), FWD_TOL), "x %g: dx %.9g, want %.9g",
                      x[i], c.dx[i], want * (1.0 - want));
        if (x[i] >= 20.0f)
            ck_assert_msg(c.y[i] == 1.0f, "x %g: y %.9g, want 1", x[i], c.y[i]);
        if (x[i] <= -20.0f && x[i] >= -80.0f)
            ck_assert_msg(fabs(c.y[i] - want) <= 1e-5 * want, "x %g: y %.9g, want %.9g", x[i],
                          c.y[i], want);
        if (x[i] <= -100.0f)
            ck_assert_msg(c.y[i] < 1e-37f, "x %g: y %.9g, want about 0", x[i], c.y[i]);
    }
    ck_assert_msg(c.y[11] == 0.5f && c.dx[11] == 0.25f, "x 0: y %.9g dx %.9g", c.y[11],
                  c.dx[11]);
    one_layer_free(&c);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* unflatten:C:H:W takes vectors to images (NCHW order: the same values) and flatten takes them
 * back: the round trip gives x exactly, and the gradient dy exactly. */
START_TEST(test_unflatten_round_trip)
{
    check_one_layer(&gan_layers, "unflatten:2:3:4", (dp_shape){ 1, { 24 } }, 2, 51);

    dp_device dev;
    device_init(&dev);
    dp_layer *layers;
    int n;
    size_t np;
    dp_err err;
    ck_assert_msg(dp_layer_list_parse("unflatten:2:3:4, flatten", (dp_shape){ 1, { 24 } }, 0,
                                      &layers, &n, &np, &err) == 0,
                  "%s", err.msg);
    ck_assert_int_eq(n, 2);
    ck_assert_uint_eq(np, 0);
    ck_assert_msg(layers[0].out_shape.ndim == 3 && layers[0].out_shape.d[0] == 2 &&
                      layers[0].out_shape.d[1] == 3 && layers[0].out_shape.d[2] == 4,
                  "unflatten gives ndim %d", layers[0].out_shape.ndim);
    ck_assert_msg(layers[1].out_shape.ndim == 1 && layers[1].out == 24, "flatten gives %d",
                  layers[1].out);
    enum { R = 3, N = 24 };
    float x[R * N], mid[R * N], y[R * N], dy[R * N], dmid[R * N], dx[R * N];
    dp_rng rng = dp_rng_stream(52, 100, 4);
    for (int i = 0; i < R * N; i++) {
        x[i] = (float)uniform(&rng, -2.0, 2.0);
        dy[i] = (float)uniform(&rng, -2.0, 2.0);
    }
    dp_pass p = { .dev = &dev, .rows = R };
    layers[0].ops->forward(&layers[0], &p, NULL, x, mid);
    layers[1].ops->forward(&layers[1], &p, NULL, mid, y);
    layers[1].ops->backward(&layers[1], &p, NULL, NULL, mid, y, dy, dmid);
    layers[0].ops->backward(&layers[0], &p, NULL, NULL, x, mid, dmid, dx);
    ck_assert_msg(memcmp(x, mid, sizeof x) == 0 && memcmp(x, y, sizeof x) == 0,
                  "the round trip changed the values");
    ck_assert_msg(memcmp(dy, dx, sizeof dy) == 0, "the round trip changed the gradient");
    layers[0].ops->backward(&layers[0], &p, NULL, NULL, x, mid, dmid, NULL); /* no dx: no-op */
    free(layers);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* A generator-like model through a stage (which sizes the scratch and the buffers between
 * layers): the mean cross-entropy and the gradient of every parameter against finite
 * differences of the double reference. */
START_TEST(test_gan_model_grad)
{
    const char *spec = "linear:12, unflatten:3:2:2, deconv:2:4:2:1, leakyrelu:0.2, "
                       "deconv:3:3:1:1, sigmoid, flatten, linear:3";
    enum { ROWS_M = 3, IN_M = 4, CLASSES_M = 3 };
    dp_device dev;
    device_init(&dev);
    dp_model m;
    dp_err err;
    ck_assert_msg(dp_model_parse(&m, spec, IN_M, CLASSES_M, &err) == 0, "%s", err.msg);
    dp_optim_config oc = dp_optim_defaults();
    dp_stage s;
    ck_assert_msg(dp_stage_create(&s, &m, &dev, 0, m.n_layers, ROWS_M, 1, &oc, &err) == 0, "%s",
                  err.msg);
    size_t np = m.n_params;
    float *host = zalloc(np, sizeof *host), *grads = zalloc(np, sizeof *grads);
    double *pd = zalloc(np, sizeof *pd);
    dp_model_init_params(&m, host, 9);
    for (size_t i = 0; i < np; i++)
        pd[i] = host[i];
    dp_stage_upload_params(&s, host);
    float x[ROWS_M * IN_M];
    double xd[ROWS_M * IN_M];
    int32_t labels[ROWS_M] = { 0, 2, 1 };
    dp_rng rng = dp_rng_stream(10, 100, 5);
    for (int i = 0; i < ROWS_M * IN_M; i++)
        xd[i] = x[i] = (float)uniform(&rng, -2.0, 2.0);
    dev.be->upload(&dev, dp_stage_input(&s, 0), x, sizeof x);
    dev.be->upload(&dev, dp_stage_labels(&s, 0), labels, sizeof labels);
    dp_stage_forward(&s, 0, ROWS_M, NULL);
    float *dlogits = dp_stage_loss(&s, 0, ROWS_M, 1.0f / ROWS_M, true);
    ck_assert_ptr_nonnull(dlogits);
    dp_stage_backward(&s, 0, ROWS_M, dlogits, false, false, NULL, NULL);
    dev.be->download(&dev, grads, s.grads, np * sizeof *grads);
    float stats[2];
    dev.be->download(&dev, stats, s.stats, sizeof stats);

    /* the reference: the layers in a row, then the mean cross-entropy */
    double *a = zalloc((size_t)ROWS_M * 64, sizeof *a), *b = zalloc((size_t)ROWS_M * 64,
                                                                      sizeof *b);
    for (int l = 0; l < m.n_layers; l++)
        ck_assert_int_le(m.layers[l].out, 64);
    double want_loss = 0.0;
    for (int pass = -1; pass < (int)np; pass++) { /* -1: the loss itself */
        double fd_sum[2] = { 0.0, 0.0 };
        for (int side = 0; side < (pass < 0 ? 1 : 2); side++) {
            double keep = pass >= 0 ? pd[pass] : 0.0;
            if (pass >= 0)
                pd[pass] = keep + (side ? -FD_STEP : FD_STEP);
            memcpy(a, xd, sizeof xd);
            for (int l = 0; l < m.n_layers; l++) {
                const dp_layer *ly = &m.layers[l];
                ref_gan_layer(ly, ROWS_M, pd + ly->param_offset, a, b);
                memcpy(a, b, (size_t)ROWS_M * ly->out * sizeof *a);
            }
            double loss = 0.0;
            for (int r = 0; r < ROWS_M; r++) {
                const double *z = a + r * CLASSES_M;
                double top = fmax(z[0], fmax(z[1], z[2])), sum = 0.0;
                for (int k = 0; k < CLASSES_M; k++)
                    sum += exp(z[k] - top);
                loss += top + log(sum) - z[labels[r]];
            }
            fd_sum[side] = loss / ROWS_M;
            if (pass >= 0)
                pd[pass] = keep;
        }
        if (pass < 0) {
            want_loss = fd_sum[0];
            continue;
        }
        double want = (fd_sum[0] - fd_sum[1]) / (2.0 * FD_STEP);
        ck_assert_msg(close_to(grads[pass], want, GRAD_TOL),
                      "dparam[%d] = %.9g, finite difference %.9g", pass, grads[pass], want);
    }
    ck_assert_msg(close_to(stats[0] / ROWS_M, want_loss, FWD_TOL), "loss %.9g, reference %.9g",
                  stats[0] / ROWS_M, want_loss);
    free(a);
    free(b);
    free(host);
    free(grads);
    free(pd);
    dp_stage_destroy(&s);
    dp_model_free(&m);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* Parses spec on images [c, h, w], expecting failure with `needle` in the message. */
static void expect_image_error(const char *spec, dp_shape in, const char *needle)
{
    dp_model m;
    dp_err err;
    err.msg[0] = '\0';
    ck_assert_msg(dp_model_parse_shape(&m, spec, in, 3, &err) == -1, "\"%s\" was accepted",
                  spec);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "\"%s\": message \"%s\" lacks \"%s\"", spec,
                  err.msg, needle);
}

/* The parser on the new kinds: real numbers only where a kind takes them (conv still refuses
 * fractions with its message), finite slopes only, unflatten's count and input, deconv's
 * input and geometry. */
START_TEST(test_gan_parse_errors)
{
    dp_shape img = image(2, 4, 4), one = image(3, 1, 1);
    expect_image_error("conv:8:2.5, flatten, linear:3", img, "expected a whole number from 0");
    expect_image_error("conv:8.0:3, flatten, linear:3", img, "expected a whole number from 0");
    expect_parse_error("linear:8, leakyrelu:nan, linear:3", 4, 3,
                       "\"leakyrelu:nan\": nan is not a finite number");
    expect_parse_error("linear:8, leakyrelu:NaN, linear:3", 4, 3, "not a finite number");
    expect_parse_error("linear:8, leakyrelu:inf, linear:3", 4, 3, "inf is not a finite number");
    expect_parse_error("linear:8, leakyrelu:-infinity, linear:3", 4, 3, "not a finite number");
    expect_parse_error("linear:8, leakyrelu:1e999, linear:3", 4, 3, "not a finite number");
    expect_parse_error("linear:8, leakyrelu:0,2, linear:3", 4, 3,
                       "\"2\" is a number where a layer belongs; commas separate layers");
    /* the layers compute in float: a slope it cannot hold, or that underflows, is refused */
    expect_parse_error("linear:8, leakyrelu:1e39, linear:3", 4, 3,
                       "1e39 is out of a float's range");
    expect_parse_error("linear:8, leakyrelu:-1e-50, linear:3", 4, 3,
                       "-1e-50 is out of a float's range");
    expect_parse_error("linear:8, leakyrelu:0x1p3, linear:3", 4, 3,
                       "0x1p3 is not a plain decimal number");
    expect_parse_error("linear:8, leakyrelu:0.2x, linear:3", 4, 3,
                       "expected a number such as 0.2 after ':', not \"0.2x\"");
    expect_parse_error("linear:8, leakyrelu:, linear:3", 4, 3, "expected a number such as 0.2");
    expect_parse_error("linear:8, leakyrelu:0.1:0.2, linear:3", 4, 3,
                       "write leakyrelu[:SLOPE]");
    expect_parse_error("linear:8, sigmoid:1, linear:3", 4, 3, "sigmoid takes no numbers");
    expect_parse_error("linear:8, sigmoid:0.5, linear:3", 4, 3, "expected a whole number");
    expect_parse_error("linear:12, unflatten:2:2:2, flatten, linear:3", 4, 3,
                       "unflatten:2:2:2 gets vectors of 12 values, but C * H * W = 8");
    expect_parse_error("linear:12, unflatten:2:3, flatten, linear:3", 4, 3,
                       "write unflatten:C:H:W");
    expect_parse_error("linear:12, unflatten:0:3:4, flatten, linear:3", 4, 3, "at least 1");
    expect_image_error("unflatten:2:4:4, flatten, linear:3", img,
                       "needs vectors of C * H * W = 32 values as input, but gets images "
                       "[2, 4, 4]");
    expect_parse_error("deconv:2:3, flatten, linear:3", 4, 3, "deconv needs images");
    expect_image_error("deconv:2:3:1:2, flatten, linear:3", one,
                       "deconv:2:3:1:2 on a 1x1 input gives a -1x-1 output");
    expect_image_error("deconv:2:3:1:3, flatten, linear:3", img,
                       "deconv:2:3:1:3 on a 4x4 input gives a 0x0 output");
    expect_image_error("deconv:2:3:0, flatten, linear:3", img, "stride must be at least 1");
    expect_image_error("deconv:2:0, flatten, linear:3", img, "kernel size and the stride");
    expect_image_error("deconv:0:3, flatten, linear:3", img, "at least 1 output channel");
    expect_image_error("deconv:2, flatten, linear:3", img, "write deconv:OUT:K[:STRIDE[:PAD[:BIAS]]]");
    expect_image_error("deconv:1:1:16777216, flatten, linear:3", image(1, 4, 4),
                       "values per sample");
}
END_TEST

/* Real numbers as written: leakyrelu's slope in reals (its whole part in args), and the
 * model's description writes each back so that it parses to the same double, in the fewest
 * digits that do (0.2 as 0.2, 0.1 + 0.2 with its 17); whole numbers stay as they were. */
START_TEST(test_real_args_round_trip)
{
    const char *spec = "linear:12, unflatten:3:2:2, deconv:2:3:2:1, leakyrelu:0.2, flatten, "
                       "leakyrelu, leakyrelu:-0.5, leakyrelu:0.30000000000000004, "
                       "leakyrelu:-2.75, leakyrelu:1e-07, leakyrelu:3, sigmoid, linear:3";
    dp_model m;
    dp_err err;
    ck_assert_msg(dp_model_parse(&m, spec, 5, 3, &err) == 0, "%s", err.msg);
    const dp_layer *l = m.layers;
    ck_assert_msg(l[3].nargs == 1 && l[3].reals[0] == 0.2 && l[3].args[0] == 0, "0.2: %d %g %d",
                  l[3].nargs, l[3].reals[0], l[3].args[0]);
    ck_assert_int_eq(l[5].nargs, 0);
    ck_assert_msg(l[6].reals[0] == -0.5 && l[6].args[0] == 0, "-0.5");
    ck_assert_msg(l[7].reals[0] == 0.1 + 0.2, "0.1 + 0.2: %.17g", l[7].reals[0]);
    ck_assert_msg(l[8].reals[0] == -2.75 && l[8].args[0] == -2, "-2.75: %d", l[8].args[0]);
    ck_assert_msg(l[10].reals[0] == 3.0 && l[10].args[0] == 3, "3");
    char desc[512];
    dp_model_describe(&m, desc, sizeof desc);
    ck_assert_str_eq(desc, "linear:12, unflatten:3:2:2, deconv:2:3:2:1, leakyrelu:0.2, flatten, "
                           "leakyrelu, leakyrelu:-0.5, leakyrelu:0.30000000000000004, "
                           "leakyrelu:-2.75, leakyrelu:1e-07, leakyrelu:3, sigmoid, linear:3");
    dp_model again;
    ck_assert_msg(dp_model_parse(&again, desc, 5, 3, &err) == 0, "%s", err.msg);
    for (int i = 0; i < m.n_layers; i++)
        for (int a = 0; a < m.layers[i].nargs; a++)
            ck_assert_msg(again.layers[i].reals[a] == m.layers[i].reals[a] &&
                              again.layers[i].args[a] == m.layers[i].args[a],
                          "layer %d number %d: %.17g, was %.17g", i, a,
                          again.layers[i].reals[a], m.layers[i].reals[a]);
    dp_model_free(&again);
    dp_model_free(&m);

    /* a float-valued slope such as (float)0.1 keeps all its digits */
    char text[64];
    snprintf(text, sizeof text, "leakyrelu:%.17g, linear:3", (double)0.1f);
    ck_assert_msg(dp_model_parse(&m, text, 5, 3, &err) == 0, "%s", err.msg);
    dp_model_describe(&m, desc, sizeof desc);
    ck_assert_str_eq(desc, "leakyrelu:0.10000000149011612, linear:3");
    ck_assert_msg(m.layers[0].reals[0] == (double)0.1f, "(float)0.1");
    dp_model_free(&m);
}
END_TEST

/* deconv's state_dict names and shapes (weight [C_in, OUT, K, K], bias [OUT]) and
 * nn.ConvTranspose2d's initialisation: uniform within 1 / sqrt(fan_in) with PyTorch's fan_in
 * from the weight's dimension 1, OUT * K * K, for the weight and the bias; not C * K * K, the
 * bound of a convolution, which the draws exceed. */
START_TEST(test_deconv_init_and_tensors)
{
    dp_model m;
    dp_err err;
    ck_assert_msg(dp_model_parse(&m, "linear:24, unflatten:4:2:3, deconv:3:4:2:1, sigmoid, "
                                     "flatten, linear:5",
                                 6, 5, &err) == 0,
                  "%s", err.msg);
    dp_model_tensor t[8];
    ck_assert_int_eq(dp_model_tensors(&m, NULL), 6);
    ck_assert_int_eq(dp_model_tensors(&m, t), 6);
    const char *names[6] = { "0.weight", "0.bias", "2.weight", "2.bias", "5.weight", "5.bias" };
    const int ndim[6] = { 2, 1, 4, 1, 2, 1 };
    const int64_t shape[6][4] = { { 24, 6 }, { 24 }, { 4, 3, 4, 4 }, { 3 }, { 5, 3 * 4 * 6 },
                                  { 5 } };
    size_t offset = 0;
    for (int i = 0; i < 6; i++) {
        ck_assert_str_eq(t[i].name, names[i]);
        ck_assert_int_eq(t[i].info.ndim, ndim[i]);
        size_t count = 1;
        for (int d = 0; d < ndim[i]; d++) {
            ck_assert_msg(t[i].info.shape[d] == shape[i][d], "%s: shape[%d] = %lld, want %lld",
                          names[i], d, (long long)t[i].info.shape[d], (long long)shape[i][d]);
            count *= (size_t)shape[i][d];
        }
        ck_assert_msg(t[i].info.count == count && t[i].info.offset == offset &&
                          !t[i].info.buffer && !t[i].info.int64,
                      "%s: count %zu offset %zu", names[i], t[i].info.count, t[i].info.offset);
        offset += count;
    }
    ck_assert_uint_eq(offset, m.n_params);

    const dp_layer *l = &m.layers[2];
    float *a = zalloc(m.n_params, sizeof *a), *b = zalloc(m.n_params, sizeof *b);
    dp_model_init_params(&m, a, 42);
    double bound = 1.0 / sqrt(3.0 * 4 * 4), conv_bound = 1.0 / sqrt(4.0 * 4 * 4);
    size_t nw = 4 * 3 * 4 * 4;
    float top = 0.0f, lo = 0.0f, hi = 0.0f;
    for (size_t i = 0; i < l->param_count; i++) {
        float v = a[l->param_offset + i];
        ck_assert_msg(fabs(v) <= bound, "deconv param %zu = %.9g outside +-%.9g", i, v, bound);
        top = fmaxf(top, fabsf(v));
        lo = fminf(lo, v);
        hi = fmaxf(hi, v);
    }
    ck_assert_msg(top > conv_bound, "every |value| <= %.9g: the bound of C * K * K", conv_bound);
    ck_assert_msg(hi - lo > bound, "values span only [%.9g, %.9g]", lo, hi);
    const float *bias = a + l->param_offset + nw;
    ck_assert_msg(bias[0] != bias[1] && bias[1] != bias[2] && bias[0] != 0.0f,
                  "bias not drawn: %g %g %g", bias[0], bias[1], bias[2]);
    dp_model_init_params(&m, b, 42);
    ck_assert_msg(memcmp(a, b, m.n_params * sizeof *a) == 0, "seed 42 twice gives two vectors");
    dp_model_init_params(&m, b, 43);
    ck_assert_msg(memcmp(a + l->param_offset, b + l->param_offset,
                         l->param_count * sizeof *a) != 0,
                  "seeds 42 and 43 give the same deconv");
    free(a);
    free(b);
    dp_model_free(&m);
}
END_TEST

Suite *layers_suite(void)
{
    Suite *s = suite_create("layers");
    TCase *tc = tcase_create("layers");
    tcase_add_test(tc, test_linear_grad);
    tcase_add_test(tc, test_relu_grad);
    tcase_add_test(tc, test_gelu_grad);
    tcase_add_test(tc, test_tanh_grad);
    tcase_add_test(tc, test_nan_propagates);
    tcase_add_test(tc, test_softmax_rows);
    tcase_add_test(tc, test_linear_accumulate);
    tcase_add_test(tc, test_backward_null_dx);
    tcase_add_test(tc, test_model_grad);
    tcase_add_test(tc, test_parse_errors);
    tcase_add_test(tc, test_init_params);
    tcase_add_test(tc, test_model_tensors);
    tcase_add_test(tc, test_deconv_grad);
    tcase_add_test(tc, test_deconv_accumulate_null_dx);
    tcase_add_test(tc, test_deconv_chunks);
    tcase_add_test(tc, test_leakyrelu_grad);
    tcase_add_test(tc, test_sigmoid);
    tcase_add_test(tc, test_unflatten_round_trip);
    tcase_add_test(tc, test_gan_model_grad);
    tcase_add_test(tc, test_gan_parse_errors);
    tcase_add_test(tc, test_real_args_round_trip);
    tcase_add_test(tc, test_deconv_init_and_tensors);
    suite_add_tcase(s, tc);
    return s;
}
