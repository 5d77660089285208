/* test_conv_library.c -- the convolution family through the backend's library (oneDNN on a CPU
 * device as dp_cpu_device_init makes it) against the engine's own im2col and GEMMs (a second
 * device with own_kernels set, the reference), layer by layer: conv and deconv forward (with
 * and without a bias), dx, the weights' and the bias's gradients, a second backward that adds
 * (twice one pass), a backward without dx, and a pass of 0 rows; average pooling forward and
 * backward; max pooling, which stays the engine's own on a library device, keeps a NaN. Every
 * case runs with 1 thread and with 2 (oneDNN's OpenMP path). The geometries are the unit tests'
 * (test_cpu_loops_match_formulas in test_blocks.c, test_deconv_grad in test_layers.c) and a
 * few with more channels, where oneDNN picks other kernels.
 *
 * The finite-difference tests of these layers (test_conv_grad, test_pool_grad, test_deconv_grad)
 * run on devices from dp_cpu_device_init, which use the library: they check the library against
 * the truth, and this file the engine's own kernels against the library. */
#include "tests/layer_check.h"

#include <stdio.h>
#include <string.h>

#include "engine/backend_cpu.h"

/* The two ways sum the same products in different orders (oneDNN blocks its loops over
 * channels and the kernel, im2col's GEMM over its k), each rounding to float: forward values
 * agree to a few ulps of their terms, 1e-5 relative and absolute; the gradients, whose sums
 * are longer (the weights' over every sample and position, hundreds of terms), 1e-4. */
#define LIB_FWD_TOL 1e-5
#define LIB_GRAD_TOL 1e-4

/* Draws x in [-2, 2], dy in [-1, 1] and the parameters in [-0.5, 0.5] (no reference: the
 * im2col device is the reference here). */
static const layer_harness draws = { .ref = NULL, .stream = 21 };

static dp_shape image(int c, int h, int w)
{
    return (dp_shape){ 3, { c, h, w } };
}

/* The largest |library - im2col| / (1 + |im2col|) seen per operation, reported at the end of
 * each test (the figures close_to holds to the tolerances). */
typedef struct measured {
    char op[32];
    double worst;
} measured;

static measured seen[16];
static int n_seen;

static void note(const char *op, double d)
{
    int i = 0;
    while (i < n_seen && strcmp(seen[i].op, op))
        i++;
    if (i == n_seen) {
        ck_assert(n_seen < (int)(sizeof seen / sizeof *seen));
        snprintf(seen[n_seen++].op, sizeof seen[0].op, "%s", op);
    }
    seen[i].worst = d > seen[i].worst ? d : seen[i].worst;
}

static void report(const char *test)
{
    for (int i = 0; i < n_seen; i++)
        printf("%s: %s: largest |library - im2col| / (1 + |im2col|) = %.3g\n", test, seen[i].op,
               seen[i].worst);
    n_seen = 0;
}

/* got[n] (the library's) against want[n] (im2col's), within tol; `what` names the tensor. */
static void expect_close(const char *spec, int threads, const char *what, const float *got,
                         const float *want, size_t n, double tol)
{
    char op[32];
    snprintf(op, sizeof op, "%.*s %s", (int)strcspn(spec, ":("), spec, what);
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]) / (1.0 + fabs(want[i]));
        note(op, d);
        ck_assert_msg(close_to(got[i], want[i], tol),
                      "%s, %d thread(s): %s[%zu] = %.9g through the library, %.9g through im2col",
                      spec, threads, what, i, got[i], want[i]);
    }
}

/* The parameters' gradients, tensor by tensor (dW, then db when the layer has a bias). */
static void expect_close_grads(const char *spec, int threads, const one_layer *lib,
                               const one_layer *own)
{
    dp_tensor_info t[DP_MAX_LAYER_TENSORS];
    int nt = lib->l->ops->tensors(lib->l, t);
    for (int k = 0; k < nt; k++) { /* "weight", "bias", "body.0.weight", ... */
        size_t len = strlen(t[k].suffix);
        bool weight = len >= 6 && !strcmp(t[k].suffix + len - 6, "weight");
        expect_close(spec, threads, weight ? "dW" : "db", lib->grads + t[k].offset,
                     own->grads + t[k].offset, t[k].count, LIB_GRAD_TOL);
    }
}

static void fill(float *v, size_t n, float value)
{
    for (size_t i = 0; i < n; i++)
        v[i] = value;
}

/* The layer's own contract on dev, after a pass of c->rows rows wrote c's gradients and dx: a
 * second backward with accumulate adds as much again (through the scratch on a library
 * device), and writes dx rather than adding to it; a backward without dx gives the same
 * gradients, to the bit; a pass of 0 rows (an empty micro-batch) writes nothing but the
 * gradients, zeros, or leaves them as they are when it adds. */
static void check_contract(one_layer *c, dp_device *dev, const char *spec, int threads)
{
    const char *way = dp_device_conv_library(dev) ? "the library" : "im2col";
    float *once = zalloc(c->np, sizeof *once), *dx_once = zalloc(c->nx, sizeof *dx_once);
    memcpy(once, c->grads, c->np * sizeof *once);
    memcpy(dx_once, c->dx, c->nx * sizeof *dx_once);
    one_layer_backward(c, dev, 1, 1);
    for (size_t i = 0; i < c->np; i++)
        ck_assert_msg(close_to(c->grads[i], 2.0 * once[i], ACC_TOL),
                      "%s through %s, %d thread(s): accumulated dparam[%zu] = %.9g, want twice "
                      "%.9g",
                      spec, way, threads, i, c->grads[i], once[i]);
    for (size_t i = 0; i < c->nx; i++)
        ck_assert_msg(c->dx[i] == dx_once[i],
                      "%s through %s, %d thread(s): dx[%zu] = %.9g with accumulate, %.9g without",
                      spec, way, threads, i, c->dx[i], dx_once[i]);
    fill(c->grads, c->np, -77.0f);
    one_layer_backward(c, dev, 0, 0);
    for (size_t i = 0; i < c->np; i++)
        ck_assert_msg(c->grads[i] == once[i],
                      "%s through %s, %d thread(s): dparam[%zu] without dx = %.9g, with dx %.9g",
                      spec, way, threads, i, c->grads[i], once[i]);

    int rows = c->rows;
    c->rows = 0;
    fill(c->y, c->ny, 77.0f), fill(c->dx, c->nx, 99.0f), fill(c->grads, c->np, 5.0f);
    one_layer_run(c, dev, 0, 1);
    for (size_t i = 0; i < c->ny; i++)
        ck_assert_msg(c->y[i] == 77.0f, "%s through %s: 0 rows wrote y[%zu]", spec, way, i);
    for (size_t i = 0; i < c->nx; i++)
        ck_assert_msg(c->dx[i] == 99.0f, "%s through %s: 0 rows wrote dx[%zu]", spec, way, i);
    for (size_t i = 0; i < c->np; i++)
        ck_assert_msg(c->grads[i] == 0.0f, "%s through %s: 0 rows left dparam[%zu] = %g", spec,
                      way, i, c->grads[i]);
    fill(c->grads, c->np, 5.0f);
    one_layer_backward(c, dev, 1, 1);
    for (size_t i = 0; i < c->np; i++)
        ck_assert_msg(c->grads[i] == 5.0f,
                      "%s through %s: 0 rows with accumulate changed dparam[%zu]", spec, way, i);
    ck_assert_msg(!dev->be->error(dev), "%s through %s: %s", spec, way, dev->be->error(dev));
    c->rows = rows;
    free(once);
    free(dx_once);
}

/* spec on `in`, `rows` samples drawn from seed, with `threads` threads: the library device's
 * passes against the im2col device's, and each device's contract (check_contract: the
 * finite-difference tests check it on library devices only, now). */
static void check_library(const char *spec, dp_shape in, int rows, uint64_t seed, int threads)
{
    dp_device lib, own;
    device_init(&lib);
    device_init(&own);
    own.own_kernels = true;
    ck_assert_msg(dp_device_conv_library(&lib) && !dp_device_conv_library(&own),
                  "a CPU device uses oneDNN unless own_kernels is set");
    dp_cpu_set_team_threads(threads);
    one_layer a, b; /* the same draws: a on the library, b on im2col */
    one_layer_init(&a, &draws, spec, in, rows, seed);
    one_layer_init(&b, &draws, spec, in, rows, seed);
    bool conv = a.l->ops != &dp_layer_avgpool; /* a convolution's FLOPs are counted */
    /* stale values, which every pass must overwrite */
    fill(a.grads, a.np, 1234.5f), fill(b.grads, b.np, -1234.5f);
    fill(a.dx, a.nx, 99.0f), fill(b.dx, b.nx, -99.0f);
    fill(a.y, a.ny, 77.0f), fill(b.y, b.ny, -77.0f);

    one_layer_run(&a, &lib, 0, 1);
    one_layer_run(&b, &own, 0, 1);
    ck_assert_msg(!lib.be->error(&lib), "%s: %s", spec, lib.be->error(&lib));
    expect_close(spec, threads, "forward", a.y, b.y, a.ny, LIB_FWD_TOL);
    expect_close(spec, threads, "dx", a.dx, b.dx, a.nx, LIB_GRAD_TOL);
    expect_close_grads(spec, threads, &a, &b);
    /* the passes went where they should: oneDNN's time (and FLOPs) on the library device only */
    dp_cpu_profile pl = dp_cpu_device_profile(&lib), po = dp_cpu_device_profile(&own);
    ck_assert_msg(pl.library_s > 0 && (!conv || pl.library_flops > 0),
                  "%s: the library device did not run oneDNN", spec);
    ck_assert_msg(po.library_s == 0 && po.library_flops == 0,
                  "%s: the im2col device ran oneDNN", spec);
    ck_assert_msg(pl.references == 0, "%s: %d of oneDNN's primitives are its reference "
                  "implementation", spec, pl.references);

    check_contract(&a, &lib, spec, threads);
    check_contract(&b, &own, spec, threads);
    one_layer_free(&a);
    one_layer_free(&b);
    dp_cpu_set_team_threads(1);
    dp_cpu_device_destroy(&lib);
    dp_cpu_device_destroy(&own);
}

typedef struct lib_case {
    const char *spec;
    dp_shape in;
    int rows;
} lib_case;

static void check_cases(const char *test, const lib_case *cases, size_t n)
{
    for (int threads = 1; threads <= 2; threads++)
        for (size_t i = 0; i < n; i++)
            check_library(cases[i].spec, cases[i].in, cases[i].rows, 40 + i, threads);
    report(test);
}

#define N_CASES(a) (sizeof(a) / sizeof *(a))

START_TEST(test_conv_library)
{
    static const lib_case cases[] = {
        /* test_cpu_loops_match_formulas's geometries */
        { "conv:4:3:1:1", { 3, { 3, 7, 6 } }, 2 },
        { "conv:3:3:2:1", { 3, { 2, 9, 8 } }, 2 },
        { "conv:2:2:2", { 3, { 1, 5, 5 } }, 2 },   /* kernel 2, stride 2: the last row unread */
        { "conv:2:5:1:2", { 3, { 1, 4, 4 } }, 2 }, /* padding wider than some rows reach */
        { "conv:3:3:3:1", { 3, { 2, 7, 7 } }, 2 }, /* stride 3 */
        { "conv:2:4:2:2", { 3, { 1, 3, 3 } }, 2 }, /* whole rows and columns of padding */
        /* 1x1, without padding, without a bias */
        { "conv:5:1", { 3, { 4, 5, 6 } }, 2 },
        { "conv:3:1:2", { 3, { 2, 5, 5 } }, 2 },
        { "conv:3:3", { 3, { 2, 6, 5 } }, 3 },
        { "conv:4:3:2:1:0", { 3, { 3, 7, 6 } }, 2 },
        /* stride 3 > K 1 (inputs no window reads), the window the whole input, a wide kernel */
        { "conv:2:1:3", { 3, { 2, 7, 8 } }, 2 },
        { "conv:3:5", { 3, { 2, 5, 5 } }, 3 },
        { "conv:4:7:1:3", { 3, { 3, 7, 9 } }, 2 },
        /* several input and output channels */
        { "conv:16:3:1:1", { 3, { 8, 9, 7 } }, 3 },
        { "conv:32:3:2:1", { 3, { 16, 10, 12 } }, 2 },
        { "conv:24:1", { 3, { 16, 6, 6 } }, 2 },
        { "conv:8:5:2:2:0", { 3, { 6, 11, 9 } }, 2 },
        /* an image's first layer (its input stays NCHW, its output blocked) and the reverse */
        { "conv:16:3:1:1", { 3, { 3, 9, 8 } }, 2 },
        { "conv:8:3:2:1", { 3, { 1, 10, 9 } }, 3 },
        { "conv:3:3:1:1", { 3, { 16, 6, 7 } }, 2 },
        /* a window the size of the input (an inner product), DCGAN's discriminator's last */
        { "conv:1:7:1:0", { 3, { 64, 7, 7 } }, 3 },
        { "conv:16:3:1:0:0", { 3, { 8, 3, 3 } }, 2 },
    };
    check_cases("conv", cases, N_CASES(cases));
}
END_TEST

START_TEST(test_deconv_library)
{
    static const lib_case cases[] = {
        /* test_deconv_grad's geometries */
        { "deconv:2:3", { 3, { 3, 3, 4 } }, 2 },
        { "deconv:3:4:2:1", { 3, { 2, 3, 2 } }, 2 },
        { "deconv:3:1", { 3, { 2, 2, 3 } }, 2 },
        { "deconv:2:3:2:0", { 3, { 3, 2, 3 } }, 2 },
        { "deconv:2:3:1:1", { 3, { 3, 3, 2 } }, 2 },
        { "deconv:4:4:1:0", { 3, { 5, 1, 1 } }, 3 }, /* DCGAN's first layer */
        { "deconv:2:2:3", { 3, { 2, 2, 2 } }, 2 },   /* stride 3 > K: bias-only outputs */
        { "deconv:2:2:3:2", { 3, { 2, 3, 3 } }, 2 }, /* padding = K */
        { "deconv:1:3:2:1", { 3, { 1, 1, 3 } }, 1 },
        { "deconv:3:4:2:1:0", { 3, { 2, 3, 2 } }, 2 }, /* no bias */
        /* its convolution has whole rows of padding (3x3, K 3, stride 2, padding 2), and
         * windows of padding alone (padding 3 > K 2) */
        { "deconv:1:3:2:2", { 3, { 1, 3, 3 } }, 2 },
        { "deconv:2:2:1:3", { 3, { 1, 8, 8 } }, 2 },
        /* several input and output channels */
        { "deconv:16:4:2:1", { 3, { 32, 4, 4 } }, 2 },
        { "deconv:8:3:1:1:0", { 3, { 16, 5, 7 } }, 2 },
        { "deconv:1:4:2:1:0", { 3, { 16, 4, 4 } }, 2 }, /* DCGAN's last layer */
        { "deconv:3:4:2:1", { 3, { 16, 8, 8 } }, 2 },
    };
    check_cases("deconv", cases, N_CASES(cases));
}
END_TEST

/* Convolutions inside residual blocks, whose scratch holds their children's (the library's
 * accumulated gradients among them); tanh, not relu, so that no input sits at a kink that the
 * two summation orders could put on different sides. */
START_TEST(test_res_library)
{
    static const lib_case cases[] = {
        { "res(conv:4:3:1:1, tanh, conv:4:3:1:1)", { 3, { 4, 6, 5 } }, 2 },
        { "res(conv:8:3:2:1:0, tanh, conv:8:3:1:1)", { 3, { 4, 7, 6 } }, 2 }, /* projection */
    };
    check_cases("res", cases, N_CASES(cases));
}
END_TEST

START_TEST(test_avgpool_library)
{
    static const lib_case cases[] = {
        { "avgpool:2", { 3, { 3, 7, 6 } }, 2 },
        { "avgpool:2:1", { 3, { 2, 6, 5 } }, 2 }, /* overlapping windows */
        { "avgpool:3:2", { 3, { 2, 9, 8 } }, 2 }, /* test_cpu_loops_match_formulas's */
        { "avgpool:3:2", { 3, { 1, 4, 4 } }, 2 },
        { "avgpool:2", { 3, { 1, 5, 5 } }, 2 },   /* the last row and column unread */
        { "avgpool:3", { 3, { 2, 7, 7 } }, 2 },   /* stride 3 */
        { "avgpool", { 3, { 4, 5, 6 } }, 3 },     /* global */
        { "avgpool:1", { 3, { 2, 3, 3 } }, 2 },
        { "avgpool:1:2", { 3, { 2, 5, 6 } }, 2 }, /* stride 2 > K 1 */
        { "avgpool:3:1", { 3, { 2, 5, 6 } }, 2 },
        { "avgpool:2", { 3, { 16, 8, 8 } }, 3 },
    };
    check_cases("avgpool", cases, N_CASES(cases));
}
END_TEST

/* Forward over the first `rows` rows of a on lib with `threads` threads: im2col's values (b's,
 * over all of its rows) for those rows, and nothing written past them. */
static void check_rows(one_layer *a, const one_layer *b, dp_device *lib, int rows, int threads)
{
    dp_cpu_set_team_threads(threads);
    a->rows = rows;
    fill(a->y, a->ny, 77.0f);
    one_layer_forward(a, lib);
    ck_assert_msg(!lib->be->error(lib), "%d rows: %s", rows, lib->be->error(lib));
    size_t n = (size_t)rows * a->l->out;
    expect_close("conv:3:3:2:1", threads, "forward", a->y, b->y, n, LIB_FWD_TOL);
    for (size_t i = n; i < a->ny; i++)
        ck_assert_msg(a->y[i] == 77.0f, "%d rows wrote y[%zu]", rows, i);
}

/* A device keeps 256 primitives (onednn.c), dropping the least recently used to make room: a
 * convolution over 1, 2, ..., 260 rows (a primitive each) drops those of 1 to 4 rows, which
 * are then made again, and again for 2 threads; each gives im2col's values for its rows. */
START_TEST(test_library_cache)
{
    enum { MOST = 260 };
    dp_device lib, own;
    device_init(&lib);
    device_init(&own);
    own.own_kernels = true;
    one_layer a, b;
    one_layer_init(&a, &draws, "conv:3:3:2:1", image(2, 5, 4), MOST, 5);
    one_layer_init(&b, &draws, "conv:3:3:2:1", image(2, 5, 4), MOST, 5);
    one_layer_forward(&b, &own); /* each sample's output is its own */
    for (int rows = 1; rows <= MOST; rows++)
        check_rows(&a, &b, &lib, rows, 1);
    for (int threads = 1; threads <= 2; threads++)
        for (int rows = 1; rows <= 4; rows++)
            check_rows(&a, &b, &lib, rows, threads);
    report("cache");
    one_layer_free(&a);
    one_layer_free(&b);
    dp_cpu_set_team_threads(1);
    dp_cpu_device_destroy(&lib);
    dp_cpu_device_destroy(&own);
}
END_TEST

/* Max pooling on a library device stays the engine's own (oneDNN's drops a NaN): a window
 * that holds a NaN, wherever in it, gives NaN, and the im2col device's values to the bit
 * otherwise, backward too; the NaN's place gets the window's gradient (PyTorch's). Average
 * pooling keeps a NaN as any sum does. */
START_TEST(test_pool_keeps_nan)
{
    dp_device lib, own;
    device_init(&lib);
    device_init(&own);
    own.own_kernels = true;
    for (int threads = 1; threads <= 2; threads++) {
        dp_cpu_set_team_threads(threads);
        static const char *const specs[] = { "maxpool:2", "maxpool:3:1", "avgpool:2" };
        for (size_t s = 0; s < sizeof specs / sizeof *specs; s++) {
            one_layer a, b;
            one_layer_init(&a, &draws, specs[s], image(2, 4, 6), 2, 7);
            one_layer_init(&b, &draws, specs[s], image(2, 4, 6), 2, 7);
            /* NaNs at a window's first, last and inner places, on several planes */
            static const size_t nan_at[] = { 0, 9, 14, 25, 33, 47, 52, 90 };
            for (size_t i = 0; i < sizeof nan_at / sizeof *nan_at; i++)
                a.x[nan_at[i]] = b.x[nan_at[i]] = NAN;
            one_layer_run(&a, &lib, 0, 1);
            one_layer_run(&b, &own, 0, 1);
            ck_assert_msg(!lib.be->error(&lib), "%s: %s", specs[s], lib.be->error(&lib));
            dp_conv_geom g = { 0 };
            int k = a.l->args[0], stride = a.l->nargs > 1 ? a.l->args[1] : k;
            g.kh = g.kw = k, g.sh = g.sw = stride, g.h = 4, g.w = 6;
            g.oh = a.l->out_shape.d[1], g.ow = a.l->out_shape.d[2];
            bool max = a.l->ops == &dp_layer_maxpool;
            for (size_t e = 0; e < a.ny; e++) {
                /* whether window e holds a NaN */
                int ow = (int)(e % g.ow), oh = (int)(e / g.ow % g.oh);
                const float *plane = a.x + e / g.ow / g.oh * g.h * g.w;
                bool has_nan = false;
                for (int ki = 0; ki < k; ki++)
                    for (int kj = 0; kj < k; kj++)
                        has_nan |= isnan(plane[(oh * stride + ki) * g.w + ow * stride + kj]);
                ck_assert_msg(!has_nan || isnan(a.y[e]), "%s, %d thread(s): window %zu holds "
                                                         "a NaN but gives %g",
                              specs[s], threads, e, a.y[e]);
                if (max)
                    ck_assert_msg(memcmp(&a.y[e], &b.y[e], sizeof a.y[e]) == 0,
                                  "%s: y[%zu] = %g on the library device, %g on im2col's",
                                  specs[s], e, a.y[e], b.y[e]);
                else if (!has_nan)
                    ck_assert_msg(close_to(a.y[e], b.y[e], LIB_FWD_TOL), "%s: y[%zu] %g vs %g",
                                  specs[s], e, a.y[e], b.y[e]);
            }
            if (max) {
                ck_assert_msg(memcmp(a.dx, b.dx, a.nx * sizeof *a.dx) == 0,
                              "%s: dx differs between the devices", specs[s]);
                /* maxpool:2's windows do not overlap: each NaN's place gets its window's dy */
                if (k == 2 && stride == 2)
                    for (size_t i = 0; i < sizeof nan_at / sizeof *nan_at; i++) {
                        size_t at = nan_at[i], plane = at / (g.h * g.w);
                        int h = (int)(at % (g.h * g.w)) / g.w, w = (int)(at % g.w);
                        size_t e = (plane * g.oh + h / 2) * g.ow + w / 2;
                        ck_assert_msg(a.dx[at] == a.r[e], "maxpool:2: dx at the NaN %zu = %g, "
                                                          "its window's dy %g",
                                      at, a.dx[at], a.r[e]);
                    }
            }
            one_layer_free(&a);
            one_layer_free(&b);
        }
    }
    dp_cpu_set_team_threads(1);
    dp_cpu_device_destroy(&lib);
    dp_cpu_device_destroy(&own);
}
END_TEST

Suite *conv_library_suite(void)
{
    Suite *s = suite_create("conv_library");
    TCase *tc = tcase_create("conv_library");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_conv_library);
    tcase_add_test(tc, test_deconv_library);
    tcase_add_test(tc, test_res_library);
    tcase_add_test(tc, test_avgpool_library);
    tcase_add_test(tc, test_library_cache);
    tcase_add_test(tc, test_pool_keeps_nan);
    suite_add_tcase(s, tc);
    return s;
}
