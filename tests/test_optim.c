/* test_optim.c -- SGD and AdamW updates against torch.optim, the learning-rate schedule,
 * gradient clipping and the optimizer-state size.
 *
 * Every update test runs three steps of dp_optim_update on a CPU device over four parameters
 * and compares the result with (a) numbers printed by PyTorch 1.13 in float64 and (b) a
 * double-precision re-implementation in this file, written as torch/optim/sgd.py and adamw.py
 * write it (it also checks the optimizer state). Tolerance: 1e-6, absolute plus relative
 * (|got - want| <= 1e-6 (1 + |want|)); float rounding of three steps on values of order 1
 * stays near 1e-7. */
#include "tests/unit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/optim.h"

#define N 4
#define STEPS 3
#define TOL 1e-6

/* The parameters before the first step and the gradient of each step; the last parameter has
 * no gradient, so it moves only by weight decay. */
static const double p_start[N] = { 0.5, -1.25, 2.0, 1.5 };
static const double grads[STEPS][N] = {
    { 0.10, -0.20, 0.30, 0.0 },
    { -0.05, 0.40, 0.10, 0.0 },
    { 0.20, 0.10, -0.30, 0.0 },
};

/* The values below were printed by this script (torch 1.13, float64):
 *
 *   import torch
 *   p0 = [0.5, -1.25, 2.0, 1.5]
 *   gs = [[0.10, -0.20, 0.30, 0.0], [-0.05, 0.40, 0.10, 0.0], [0.20, 0.10, -0.30, 0.0]]
 *   def run(make):
 *       p = torch.tensor(p0, dtype=torch.float64, requires_grad=True)
 *       opt = make([p])
 *       for g in gs:
 *           p.grad = torch.tensor(g, dtype=torch.float64)
 *           opt.step()
 *       return p.detach().tolist()
 *   cases = {
 *    'plain': lambda ps: torch.optim.SGD(ps, lr=0.1),
 *    'momentum': lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
 *    'nesterov': lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
 *    'wd': lambda ps: torch.optim.SGD(ps, lr=0.1, weight_decay=0.05),
 *    'wd_mom': lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.05),
 *    'adamw': lambda ps: torch.optim.AdamW(ps, lr=0.1, betas=(0.9, 0.999), eps=1e-8,
 *                                         weight_decay=0.1),
 *    'adamw_eps': lambda ps: torch.optim.AdamW(ps, lr=0.1, betas=(0.8, 0.99), eps=0.05,
 *                                             weight_decay=0.0),
 *   }
 *   for k, f in cases.items():
 *       print(k, ', '.join('%.9f' % v for v in run(f)))
 */
static const double torch_plain[N] = { 0.475000000, -1.280000000, 1.990000000, 1.500000000 };
static const double torch_momentum[N] = { 0.462400000, -1.281800000, 1.929700000, 1.500000000 };
static const double torch_nesterov[N] = { 0.441160000, -1.308620000, 1.926730000, 1.500000000 };
static const double torch_wd[N] = { 0.467612187, -1.261343094, 1.960499000, 1.477612313 };
static const double torch_wd_mom[N] = { 0.448599687, -1.247066844, 1.874459000, 1.458104813 };
static const double torch_adamw[N] = { 0.294960991, -1.192673121, 1.751513979, 1.455448500 };
static const double torch_adamw_eps[N] = { 0.370150243, -1.244425723, 1.848939434,
                                           1.500000000 };

static int close_to(double got, double want, double tol)
{
    return fabs(got - want) <= tol * (1.0 + fabs(want));
}

/* torch.optim.SGD's _single_tensor_sgd (dampening 0), in double: returns the parameters after
 * STEPS steps in p[] and the momentum buffer in buf[]. */
static void sgd_reference(const dp_optim_config *c, double p[N], double buf[N])
{
    memcpy(p, p_start, sizeof p_start);
    for (int t = 0; t < STEPS; t++) {
        for (int i = 0; i < N; i++) {
            double d = grads[t][i];
            if (c->weight_decay != 0.0)
                d += c->weight_decay * p[i];
            if (c->momentum != 0.0) {
                buf[i] = t == 0 ? d : c->momentum * buf[i] + d; /* buf = clone(d) on step 1 */
                d = c->nesterov ? d + c->momentum * buf[i] : buf[i];
            }
            p[i] -= c->lr * d;
        }
    }
}

/* torch.optim.AdamW's _single_tensor_adamw (amsgrad off), in double. */
static void adamw_reference(const dp_optim_config *c, double p[N], double m[N], double v[N])
{
    memcpy(p, p_start, sizeof p_start);
    for (int i = 0; i < N; i++)
        m[i] = v[i] = 0.0;
    for (int t = 1; t <= STEPS; t++) {
        double bc1 = 1.0 - pow(c->beta1, t), bc2 = 1.0 - pow(c->beta2, t);
        for (int i = 0; i < N; i++) {
            double g = grads[t - 1][i];
            p[i] *= 1.0 - c->lr * c->weight_decay;
            m[i] = c->beta1 * m[i] + (1.0 - c->beta1) * g;
            v[i] = c->beta2 * v[i] + (1.0 - c->beta2) * g * g;
            double denom = sqrt(v[i]) / sqrt(bc2) + c->eps;
            p[i] -= c->lr / bc1 * m[i] / denom;
        }
    }
}

/* Runs STEPS updates of c on a CPU device; p[] gets the parameters, state[] (N * per-param
 * floats, or nothing) the optimizer state. A configuration without state passes state NULL,
 * as a stage does. */
static void run_device(const dp_optim_config *c, float p[N], float *state)
{
    dp_device dev;
    dp_err err;
    ck_assert_msg(dp_cpu_device_init(&dev, 0, 1, &err) == 0, "device: %s", err.msg);
    size_t per = dp_optim_state_per_param(c);
    float *dp = malloc(N * sizeof *dp), *dg = malloc(N * sizeof *dg);
    float *ds = per ? calloc(N * per, sizeof *ds) : NULL;
    ck_assert(dp && dg && (ds || !per));
    for (int i = 0; i < N; i++)
        dp[i] = (float)p_start[i];
    for (int t = 0; t < STEPS; t++) {
        for (int i = 0; i < N; i++)
            dg[i] = (float)grads[t][i];
        dp_optim_update(c, &dev, dp, dg, ds, N, N, t + 1, c->lr);
        for (int i = 0; i < N; i++)
            ck_assert_msg(dg[i] == (float)grads[t][i], "step %d changed the gradient %d", t + 1,
                          i);
    }
    memcpy(p, dp, N * sizeof *p);
    if (per)
        memcpy(state, ds, N * per * sizeof *state);
    free(dp);
    free(dg);
    free(ds);
    dp_cpu_device_destroy(&dev);
}

/* Runs an SGD configuration and compares parameters with PyTorch and with the reference, and
 * the momentum buffer with the reference. */
static void check_sgd(const char *what, const dp_optim_config *c, const double torch_p[N])
{
    float p[N], state[N];
    double ref_p[N], ref_buf[N];
    run_device(c, p, state);
    sgd_reference(c, ref_p, ref_buf);
    for (int i = 0; i < N; i++) {
        ck_assert_msg(close_to(p[i], torch_p[i], TOL), "%s: p[%d] = %.9g, torch says %.9g",
                      what, i, p[i], torch_p[i]);
        ck_assert_msg(close_to(p[i], ref_p[i], TOL), "%s: p[%d] = %.9g, reference %.9g", what,
                      i, p[i], ref_p[i]);
        if (c->momentum != 0.0)
            ck_assert_msg(close_to(state[i], ref_buf[i], TOL),
                          "%s: momentum buffer[%d] = %.9g, reference %.9g", what, i, state[i],
                          ref_buf[i]);
    }
}

static dp_optim_config sgd_config(double momentum, bool nesterov, double weight_decay)
{
    dp_optim_config c = dp_optim_defaults();
    c.kind = DP_OPTIM_SGD;
    c.lr = 0.1;
    c.momentum = momentum;
    c.nesterov = nesterov;
    c.weight_decay = weight_decay;
    return c;
}

/* Plain SGD (no state): p -= lr * g each step. */
START_TEST(test_sgd_plain)
{
    dp_optim_config c = sgd_config(0.0, false, 0.0);
    check_sgd("sgd", &c, torch_plain);
}
END_TEST

/* Momentum 0.9: the buffer is the gradient on step 1, then 0.9 buf + g. */
START_TEST(test_sgd_momentum)
{
    dp_optim_config c = sgd_config(0.9, false, 0.0);
    check_sgd("sgd momentum", &c, torch_momentum);
}
END_TEST

/* Nesterov: the step is g + momentum * buf. */
START_TEST(test_sgd_nesterov)
{
    dp_optim_config c = sgd_config(0.9, true, 0.0);
    check_sgd("sgd nesterov", &c, torch_nesterov);
}
END_TEST

/* Weight decay is added to the gradient (wd * p), alone and with momentum; the parameter
 * without gradient shrinks. */
START_TEST(test_sgd_weight_decay)
{
    dp_optim_config c = sgd_config(0.0, false, 0.05);
    check_sgd("sgd weight decay", &c, torch_wd);
    c = sgd_config(0.9, false, 0.05);
    check_sgd("sgd weight decay + momentum", &c, torch_wd_mom);
}
END_TEST

/* Runs an AdamW configuration and compares parameters with PyTorch and the reference, and
 * the state (m in the first block of N, v in the second) with the reference. */
static void check_adamw(const char *what, const dp_optim_config *c, const double torch_p[N])
{
    float p[N], state[2 * N];
    double ref_p[N], ref_m[N], ref_v[N];
    ck_assert_uint_eq(dp_optim_state_per_param(c), 2);
    run_device(c, p, state);
    adamw_reference(c, ref_p, ref_m, ref_v);
    for (int i = 0; i < N; i++) {
        ck_assert_msg(close_to(p[i], torch_p[i], TOL), "%s: p[%d] = %.9g, torch says %.9g",
                      what, i, p[i], torch_p[i]);
        ck_assert_msg(close_to(p[i], ref_p[i], TOL), "%s: p[%d] = %.9g, reference %.9g", what,
                      i, p[i], ref_p[i]);
        ck_assert_msg(close_to(state[i], ref_m[i], TOL), "%s: m[%d] = %.9g, reference %.9g",
                      what, i, state[i], ref_m[i]);
        ck_assert_msg(close_to(state[N + i], ref_v[i], TOL), "%s: v[%d] = %.9g, reference %.9g",
                      what, i, state[N + i], ref_v[i]);
    }
}

/* AdamW over 3 steps with decoupled weight decay 0.1 (lr 0.1, betas 0.9/0.999, eps 1e-8). */
START_TEST(test_adamw)
{
    dp_optim_config c = dp_optim_defaults();
    c.kind = DP_OPTIM_ADAMW;
    c.lr = 0.1;
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.eps = 1e-8;
    c.weight_decay = 0.1;
    check_adamw("adamw", &c, torch_adamw);
}
END_TEST

/* AdamW with a large eps (0.05) and other betas: eps is added after dividing sqrt(v) by
 * sqrt(bc2), which a different placement would change visibly here. */
START_TEST(test_adamw_eps)
{
    dp_optim_config c = dp_optim_defaults();
    c.kind = DP_OPTIM_ADAMW;
    c.lr = 0.1;
    c.beta1 = 0.8;
    c.beta2 = 0.99;
    c.eps = 0.05;
    c.weight_decay = 0.0;
    check_adamw("adamw eps", &c, torch_adamw_eps);
}
END_TEST

/* AdamW's first step moves every parameter by lr * g / (|g| + eps) whatever the size of g,
 * since m / bc1 = g and sqrt(v / bc2) = |g| (no weight decay, parameters at 0). Tolerance 1e-6
 * relative; float rounding alone stays near 1e-7. */
START_TEST(test_adamw_first_step)
{
    dp_optim_config c = dp_optim_defaults();
    c.kind = DP_OPTIM_ADAMW;
    c.lr = 0.1;
    c.weight_decay = 0.0; /* betas 0.9 / 0.999, eps 1e-8: the defaults */
    dp_device dev;
    dp_err err;
    ck_assert_msg(dp_cpu_device_init(&dev, 0, 1, &err) == 0, "device: %s", err.msg);
    float p[N] = { 0, 0, 0, 0 }, state[2 * N] = { 0 };
    const float g[N] = { 0.05f, 0.5f, -2.0f, 10.0f };
    dp_optim_update(&c, &dev, p, g, state, N, N, 1, c.lr);
    for (int i = 0; i < N; i++) {
        double want = -c.lr * g[i] / (fabs(g[i]) + c.eps);
        ck_assert_msg(fabs(p[i] - want) <= TOL * fabs(want),
                      "g %g: p = %.10g, want %.10g (relative error %.3g)", g[i], p[i], want,
                      (p[i] - want) / want);
    }
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* Linear warm-up lr * (step + 1) / warmup, then the constant rate. */
START_TEST(test_lr_warmup_constant)
{
    dp_optim_config c = dp_optim_defaults();
    c.lr = 0.1;
    c.warmup = 4;
    c.schedule = DP_LR_CONSTANT;
    const double want[] = { 0.025, 0.05, 0.075, 0.1, 0.1, 0.1 };
    for (long s = 0; s < 6; s++) {
        double lr = dp_optim_lr(&c, s, 100);
        ck_assert_msg(fabs(lr - want[s]) < 1e-12, "step %ld: lr %.12g, want %.12g", s, lr,
                      want[s]);
    }
    c.warmup = 0;
    const long steps[] = { 0, 1, 50, 99, 1000 };
    for (int i = 0; i < 5; i++) {
        double lr = dp_optim_lr(&c, steps[i], 100);
        ck_assert_msg(fabs(lr - 0.1) < 1e-12, "constant, step %ld: lr %.12g", steps[i], lr);
    }
}
END_TEST

/* Cosine after 10 warm-up steps of 110: lr at step 10, lr/2 at the midpoint (60),
 * lr (1 + cos(pi/4)) / 2 a quarter of the way, ~0 at the end, decreasing all along. */
START_TEST(test_lr_cosine)
{
    dp_optim_config c = dp_optim_defaults();
    c.lr = 0.2;
    c.warmup = 10;
    c.schedule = DP_LR_COSINE;
    const long total = 110;
    double lr = dp_optim_lr(&c, 4, total);
    ck_assert_msg(fabs(lr - 0.2 * 5 / 10) < 1e-12, "warm-up step 4: lr %.12g", lr);
    lr = dp_optim_lr(&c, 10, total);
    ck_assert_msg(fabs(lr - 0.2) < 1e-12, "start of the decay: lr %.12g, want 0.2", lr);
    lr = dp_optim_lr(&c, 35, total);
    double quarter = 0.2 * 0.5 * (1.0 + cos(M_PI / 4.0));
    ck_assert_msg(fabs(lr - quarter) < 1e-12, "quarter: lr %.12g, want %.12g", lr, quarter);
    lr = dp_optim_lr(&c, 60, total);
    ck_assert_msg(fabs(lr - 0.1) < 1e-12, "midpoint: lr %.12g, want 0.1", lr);
    lr = dp_optim_lr(&c, total, total);
    ck_assert_msg(fabs(lr) < 1e-12, "end: lr %.12g, want 0", lr);
    lr = dp_optim_lr(&c, total - 1, total);
    ck_assert_msg(lr > 0.0 && lr < 0.2 * 1e-3, "last step: lr %.12g, want near 0", lr);
    for (long s = 10; s < total; s++)
        ck_assert_msg(dp_optim_lr(&c, s + 1, total) < dp_optim_lr(&c, s, total),
                      "cosine does not decrease from step %ld to %ld", s, s + 1);
}
END_TEST

/* clip_grad_norm_: max_norm / (norm + 1e-6) when below 1, else 1; clip 0 turns it off. */
START_TEST(test_clip_factor)
{
    dp_optim_config c = dp_optim_defaults();
    c.clip = 1.0;
    double f = dp_optim_clip_factor(&c, 4.0);
    ck_assert_msg(fabs(f - 1.0 / (4.0 + 1e-6)) < 1e-15, "norm 4: factor %.17g", f);
    f = dp_optim_clip_factor(&c, 1.0); /* torch still scales by 1 / (1 + 1e-6) */
    ck_assert_msg(fabs(f - 1.0 / (1.0 + 1e-6)) < 1e-15 && f < 1.0, "norm 1: factor %.17g", f);
    f = dp_optim_clip_factor(&c, 0.5);
    ck_assert_msg(f == 1.0, "norm 0.5: factor %.17g, want 1", f);
    f = dp_optim_clip_factor(&c, 0.0);
    ck_assert_msg(f == 1.0, "norm 0: factor %.17g, want 1", f);
    c.clip = 2.5;
    f = dp_optim_clip_factor(&c, 10.0);
    ck_assert_msg(fabs(f - 2.5 / (10.0 + 1e-6)) < 1e-15, "clip 2.5, norm 10: factor %.17g", f);
    c.clip = 0.0;
    f = dp_optim_clip_factor(&c, 1e6);
    ck_assert_msg(f == 1.0, "clip off, norm 1e6: factor %.17g, want 1", f);
}
END_TEST

/* State floats per parameter: SGD 0 without momentum, 1 with; AdamW 2 (momentum ignored). */
START_TEST(test_state_per_param)
{
    dp_optim_config c = dp_optim_defaults();
    c.kind = DP_OPTIM_SGD;
    c.momentum = 0.0;
    ck_assert_uint_eq(dp_optim_state_per_param(&c), 0);
    c.momentum = 0.9;
    ck_assert_uint_eq(dp_optim_state_per_param(&c), 1);
    c.nesterov = true;
    ck_assert_uint_eq(dp_optim_state_per_param(&c), 1);
    c.kind = DP_OPTIM_ADAMW;
    ck_assert_uint_eq(dp_optim_state_per_param(&c), 2);
    c.momentum = 0.0;
    ck_assert_uint_eq(dp_optim_state_per_param(&c), 2);
}
END_TEST

/* The defaults are PyTorch's: SGD, lr 0.01, no momentum or decay, AdamW betas and eps. */
START_TEST(test_defaults)
{
    dp_optim_config c = dp_optim_defaults();
    ck_assert_int_eq(c.kind, DP_OPTIM_SGD);
    ck_assert_msg(c.lr == 0.01 && c.momentum == 0.0 && !c.nesterov && c.weight_decay == 0.0,
                  "lr %g momentum %g nesterov %d weight_decay %g", c.lr, c.momentum, c.nesterov,
                  c.weight_decay);
    ck_assert_msg(c.beta1 == 0.9 && c.beta2 == 0.999 && c.eps == 1e-8,
                  "beta1 %g beta2 %g eps %g", c.beta1, c.beta2, c.eps);
    ck_assert_msg(c.warmup == 0 && c.schedule == DP_LR_CONSTANT && c.clip == 0.0,
                  "warmup %ld schedule %d clip %g", c.warmup, (int)c.schedule, c.clip);
}
END_TEST

Suite *optim_suite(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("optim");
    tcase_add_test(tc, test_sgd_plain);
    tcase_add_test(tc, test_sgd_momentum);
    tcase_add_test(tc, test_sgd_nesterov);
    tcase_add_test(tc, test_sgd_weight_decay);
    tcase_add_test(tc, test_adamw);
    tcase_add_test(tc, test_adamw_eps);
    tcase_add_test(tc, test_adamw_first_step);
    tcase_add_test(tc, test_lr_warmup_constant);
    tcase_add_test(tc, test_lr_cosine);
    tcase_add_test(tc, test_clip_factor);
    tcase_add_test(tc, test_state_per_param);
    tcase_add_test(tc, test_defaults);
    suite_add_tcase(s, tc);
    return s;
}
