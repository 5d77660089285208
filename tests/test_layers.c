/* test_layers.c -- layers and models against a double-precision reference.
 *
 * Each layer runs in float on a CPU device. The reference re-implements the forward pass in
 * double (y = x W^T + b; relu; gelu's tanh approximation; tanh) and differentiates it by
 * central finite differences (step 1e-5, whose truncation and rounding errors are below 1e-9),
 * so a float analytic gradient is checked against numbers that are accurate well past float
 * precision. Tolerances: forward 1e-5, gradients 1e-4, accumulated gradients 1e-6 (against
 * 2x a single pass), each absolute plus relative (|got - want| <= tol * (1 + |want|)).
 * Also: accumulation, dx == NULL, a whole model's gradient through a stage, the layer-list
 * parser's errors, initialisation and tensor names. */
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

#define FWD_TOL 1e-5
#define GRAD_TOL 1e-4
#define FD_STEP 1e-5
#define ACC_TOL 1e-6

#define ROWS 3
#define IN 5
#define OUT 4
#define WIDE 8 /* room for the wider of IN and OUT */

static int close_to(double got, double want, double tol)
{
    return fabs(got - want) <= tol * (1.0 + fabs(want));
}

/* Uniform in [lo, hi) from a seeded stream. */
static double uniform(dp_rng *r, double lo, double hi)
{
    return lo + (hi - lo) * dp_rng_uniform(r);
}

static void device_init(dp_device *dev)
{
    dp_err err;
    ck_assert_msg(dp_cpu_device_init(dev, 0, 1, &err) == 0, "device: %s", err.msg);
}

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
 * linear layer; its gradient passes where x is NaN, as threshold_backward's), gelu, tanh, max
 * and average pooling, layer norm, attention's softmax, dropout and the loss. */
START_TEST(test_nan_propagates)
{
    const float nan = NAN;
    dp_device dev;
    device_init(&dev);
    const dp_backend *be = dev.be;
    float x[4] = { 1.0f, nan, -2.0f, 0.5f }, y[4], dx[4], dy[4] = { 0.25f, 0.5f, 1.0f, 2.0f };
    const dp_act acts[] = { DP_ACT_RELU, DP_ACT_GELU, DP_ACT_TANH, DP_ACT_LEAKY_RELU,
                            DP_ACT_SIGMOID };
    for (int a = 0; a < 5; a++) {
        be->act_forward(&dev, acts[a], 0.2f, y, x, 4);
        be->act_backward(&dev, acts[a], 0.2f, dx, x, y, dy, 4);
        ck_assert_msg(isnan(y[1]) && !isnan(y[0]) && !isnan(y[2]), "act %d: y = %g %g %g", a,
                      y[0], y[1], y[2]);
        /* relu's gradient passes where x is NaN, leaky ReLU's is scaled (PyTorch's
         * threshold_backward and leaky_relu_backward) */
        bool passes = acts[a] == DP_ACT_RELU || acts[a] == DP_ACT_LEAKY_RELU;
        ck_assert_msg(passes ? !isnan(dx[1]) : isnan(dx[1]), "act %d: dx[1] = %g", a, dx[1]);
        if (acts[a] == DP_ACT_RELU)
            ck_assert(dx[1] == dy[1] && dx[2] == 0.0f);
        if (acts[a] == DP_ACT_LEAKY_RELU)
            ck_assert(dx[1] == 0.2f * dy[1] && dx[2] == 0.2f * dy[2] && dx[0] == dy[0]);
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
    be->softmax_forward(&dev, y, x, 1, 4, 1.0f, 0);
    ck_assert_msg(isnan(y[0]) && isnan(y[3]), "softmax: %g %g", y[0], y[3]);

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
                                    &dp_layer_tanh };
    layer_case *c = calloc(1, sizeof *c);
    ck_assert(c);
    for (int k = 0; k < 4; k++) {
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

Suite *layers_suite(void)
{
    Suite *s = suite_create("layers");
    TCase *tc = tcase_create("layers");
    tcase_add_test(tc, test_linear_grad);
    tcase_add_test(tc, test_relu_grad);
    tcase_add_test(tc, test_gelu_grad);
    tcase_add_test(tc, test_tanh_grad);
    tcase_add_test(tc, test_nan_propagates);
    tcase_add_test(tc, test_linear_accumulate);
    tcase_add_test(tc, test_backward_null_dx);
    tcase_add_test(tc, test_model_grad);
    tcase_add_test(tc, test_parse_errors);
    tcase_add_test(tc, test_init_params);
    tcase_add_test(tc, test_model_tensors);
    suite_add_tcase(s, tc);
    return s;
}
