/* test_bn.c -- batch normalisation (bn) against a double-precision reference.
 *
 * Training passes normalise with the batch's mean and biased variance; the reference computes
 * them in double, and the gradients of L = sum(y * g) for a fixed g are checked against central
 * finite differences of it (step 1e-4 on values of order 1: the statistics depend on every
 * input, so this checks the full gradient through them). Running statistics move by the
 * momentum 0.1 towards the batch's mean and unbiased variance (hand-computed), and evaluation
 * normalises with them. Replicas in threads that sum their statistics over a host group
 * (SyncBatchNorm) compute, between them, what one pass over all their samples computes: the
 * outputs, the input gradients, the running statistics and (summed) the parameter gradients.
 * Tolerances: forward and running statistics 1e-5, gradients 2e-4, replicas against one pass
 * 1e-5, each absolute plus relative. */
#include "tests/unit.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "engine/backend.h"
#include "engine/comm.h"
#include "engine/model.h"

#define FWD_TOL 1e-5
#define GRAD_TOL 2e-4
#define FD_STEP 1e-4

static int close_to(double got, double want, double tol)
{
    return fabs(got - want) <= tol * (1.0 + fabs(want));
}

static void device_init(dp_device *dev, int index)
{
    dp_err err;
    ck_assert_msg(dp_cpu_device_init(dev, index, 1, &err) == 0, "device: %s", err.msg);
}

/* A model whose first layer is bn, on inputs of `shape`. */
static void bn_model(dp_model *m, dp_shape shape)
{
    dp_err err;
    const char *spec = shape.ndim == 3 ? "bn, flatten, linear:2" : "bn, linear:2";
    ck_assert_msg(dp_model_parse_shape(m, spec, shape, 2, &err) == 0, "parse: %s", err.msg);
}

/* The layer's geometry: channels and positions per channel of a sample. */
static void geometry(const dp_layer *l, int *c, int *p)
{
    *c = l->in_shape.d[0];
    *p = l->in_shape.ndim == 3 ? l->in_shape.d[1] * l->in_shape.d[2] : 1;
}

/* y = bn(x) in double, with the batch's statistics; mean and var (biased) per channel out. */
static void ref_train(int rows, int c, int p, const double *x, const double *w, const double *b,
                      double *y, double *mean, double *var)
{
    for (int ch = 0; ch < c; ch++) {
        double s = 0.0, q = 0.0, n = (double)rows * p;
        for (int i = 0; i < rows; i++)
            for (int k = 0; k < p; k++)
                s += x[((size_t)i * c + ch) * p + k];
        double mu = s / n;
        for (int i = 0; i < rows; i++)
            for (int k = 0; k < p; k++) {
                double d = x[((size_t)i * c + ch) * p + k] - mu;
                q += d * d;
            }
        double v = q / n;
        if (mean)
            mean[ch] = mu, var[ch] = v;
        for (int i = 0; i < rows; i++)
            for (int k = 0; k < p; k++) {
                size_t e = ((size_t)i * c + ch) * p + k;
                y[e] = (x[e] - mu) / sqrt(v + 1e-5) * w[ch] + b[ch];
            }
    }
}

/* L = sum(y * g) of the reference. */
static double ref_loss(int rows, int c, int p, const double *x, const double *w, const double *b,
                       const double *g)
{
    size_t n = (size_t)rows * c * p;
    double *y = malloc(n * sizeof *y), sum = 0.0;
    ref_train(rows, c, p, x, w, b, y, NULL, NULL);
    for (size_t e = 0; e < n; e++)
        sum += y[e] * g[e];
    free(y);
    return sum;
}

/* A pass's memory for the layer: saved (its statistics) and scratch. */
typedef struct pass_memory {
    float *saved, *scratch;
} pass_memory;

static pass_memory pass_memory_new(const dp_layer *l, int rows)
{
    size_t scratch = l->ops->scratch ? l->ops->scratch(l, rows, NULL) : 0;
    pass_memory m = { calloc(l->saved * (size_t)rows + l->saved_pass + 1, sizeof(float)),
                      calloc(scratch + 1, sizeof(float)) };
    return m;
}

static void pass_memory_free(pass_memory *m)
{
    free(m->saved);
    free(m->scratch);
}

/* Training forward, backward and the running statistics of one bn layer, against the
 * reference and finite differences. */
static void check_training(dp_shape shape, int rows)
{
    dp_model m;
    bn_model(&m, shape);
    const dp_layer *l = &m.layers[0];
    int c, p;
    geometry(l, &c, &p);
    ck_assert_int_eq((int)l->param_count, 4 * c + 1);
    dp_device dev;
    device_init(&dev, 0);
    size_t n = (size_t)rows * c * p;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *g = malloc(n * sizeof *g);
    float *dx = malloc(n * sizeof *dx), *params = malloc(l->param_count * sizeof *params);
    float *grads = malloc(l->param_count * sizeof *grads);
    double *xd = malloc(n * sizeof *xd), *gd = malloc(n * sizeof *gd), *yd = malloc(n * sizeof *yd);
    double wd[16], bd[16], mean[16], var[16];
    ck_assert_int_le(c, 16);
    dp_rng r = dp_rng_stream(5, 0, (uint64_t)n);
    for (size_t e = 0; e < n; e++) {
        /* a mean far from 0 in channel 1: the centred variance must not lose it */
        xd[e] = 2.0 * dp_rng_uniform(&r) - 1.0 + (e / p % c == 1 ? 30.0 : 0.0);
        x[e] = (float)xd[e];
        xd[e] = x[e];
        gd[e] = 2.0 * dp_rng_uniform(&r) - 1.0;
        g[e] = (float)gd[e];
        gd[e] = g[e];
    }
    l->ops->init(l, params, 1);
    for (int ch = 0; ch < c; ch++) {
        params[ch] = (float)(0.5 + dp_rng_uniform(&r));
        params[c + ch] = (float)(dp_rng_uniform(&r) - 0.5);
        wd[ch] = params[ch];
        bd[ch] = params[c + ch];
        ck_assert(params[2 * c + ch] == 0.0f && params[3 * c + ch] == 1.0f);
    }
    ck_assert(params[4 * c] == 0.0f);
    pass_memory pm = pass_memory_new(l, rows);
    dp_step_key key = { 1, 1, 0 };
    dp_pass pass = { .dev = &dev, .rows = rows, .key = &key, .saved = pm.saved,
                     .scratch = pm.scratch };
    l->ops->forward(l, &pass, params, x, y);
    ref_train(rows, c, p, xd, wd, bd, yd, mean, var);
    for (size_t e = 0; e < n; e++)
        ck_assert_msg(close_to(y[e], yd[e], FWD_TOL), "y[%zu] = %.7g, want %.7g", e, y[e], yd[e]);
    double count = (double)rows * p;
    for (int ch = 0; ch < c; ch++) {
        double rm = 0.1 * mean[ch], rv = 0.9 + 0.1 * var[ch] * count / (count - 1.0);
        ck_assert_msg(close_to(params[2 * c + ch], rm, FWD_TOL), "running_mean[%d] = %.7g, want "
                      "%.7g", ch, params[2 * c + ch], rm);
        ck_assert_msg(close_to(params[3 * c + ch], rv, FWD_TOL), "running_var[%d] = %.7g, want "
                      "%.7g", ch, params[3 * c + ch], rv);
    }
    ck_assert_msg(params[4 * c] == 1.0f, "num_batches_tracked %g", params[4 * c]);

    l->ops->backward(l, &pass, params, grads, x, y, g, dx);
    for (int ch = 0; ch < 3 * c + 1; ch++)
        if (ch >= 2 * c)
            ck_assert_msg(grads[ch] == 0.0f, "a buffer's gradient is %g", grads[ch]);
    for (size_t e = 0; e < n; e++) {
        double keep = xd[e];
        xd[e] = keep + FD_STEP;
        double up = ref_loss(rows, c, p, xd, wd, bd, gd);
        xd[e] = keep - FD_STEP;
        double down = ref_loss(rows, c, p, xd, wd, bd, gd);
        xd[e] = keep;
        double want = (up - down) / (2 * FD_STEP);
        ck_assert_msg(close_to(dx[e], want, GRAD_TOL), "dx[%zu] = %.7g, want %.7g", e, dx[e],
                      want);
    }
    for (int ch = 0; ch < 2 * c; ch++) {
        double *v = ch < c ? &wd[ch] : &bd[ch - c], keep = *v;
        *v = keep + FD_STEP;
        double up = ref_loss(rows, c, p, xd, wd, bd, gd);
        *v = keep - FD_STEP;
        double down = ref_loss(rows, c, p, xd, wd, bd, gd);
        *v = keep;
        double want = (up - down) / (2 * FD_STEP);
        ck_assert_msg(close_to(grads[ch], want, GRAD_TOL), "d%s[%d] = %.7g, want %.7g",
                      ch < c ? "weight" : "bias", ch % c, grads[ch], want);
    }
    /* accumulate adds the same again; dx NULL leaves the parameters' gradients the same */
    float *twice = malloc(l->param_count * sizeof *twice);
    memcpy(twice, grads, l->param_count * sizeof *twice);
    pass.accumulate = 1;
    l->ops->backward(l, &pass, params, twice, x, y, g, NULL);
    for (int ch = 0; ch < 2 * c; ch++)
        ck_assert_msg(close_to(twice[ch], 2.0 * grads[ch], 1e-6), "accumulated %g vs 2 x %g",
                      twice[ch], grads[ch]);
    free(twice);
    pass_memory_free(&pm);
    free(x), free(y), free(g), free(dx), free(params), free(grads), free(xd), free(gd), free(yd);
    dp_cpu_device_destroy(&dev);
    dp_model_free(&m);
}

START_TEST(test_bn_images)
{
    check_training((dp_shape){ 3, { 3, 2, 3 } }, 4); /* BatchNorm2d */
}
END_TEST

START_TEST(test_bn_vectors)
{
    check_training((dp_shape){ 1, { 5 } }, 6); /* BatchNorm1d */
}
END_TEST

/* Evaluation normalises with the running statistics and leaves them alone; a second training
 * pass moves them again, by hand: rm2 = 0.9 rm1 + 0.1 mean2. */
START_TEST(test_bn_running)
{
    dp_model m;
    bn_model(&m, (dp_shape){ 1, { 2 } });
    const dp_layer *l = &m.layers[0];
    dp_device dev;
    device_init(&dev, 0);
    float params[9], y[4], x1[4] = { 1, 10, 3, 20 }, x2[4] = { -1, 0, 5, 4 };
    l->ops->init(l, params, 1);
    pass_memory pm = pass_memory_new(l, 2);
    dp_step_key key = { 1, 1, 0 };
    dp_pass train = { .dev = &dev, .rows = 2, .key = &key, .saved = pm.saved,
                      .scratch = pm.scratch };
    l->ops->forward(l, &train, params, x1, y); /* means 2, 15; unbiased variances 2, 50 */
    l->ops->forward(l, &train, params, x2, y); /* means 2, 2; unbiased variances 18, 8 */
    double rm0 = 0.9 * 0.2 + 0.1 * 2, rm1 = 0.9 * 1.5 + 0.1 * 2;
    double rv0 = 0.9 * (0.9 + 0.2) + 0.1 * 18, rv1 = 0.9 * (0.9 + 5.0) + 0.1 * 8;
    ck_assert_msg(close_to(params[4], rm0, 1e-6) && close_to(params[5], rm1, 1e-6),
                  "running_mean %g %g, want %g %g", params[4], params[5], rm0, rm1);
    ck_assert_msg(close_to(params[6], rv0, 1e-6) && close_to(params[7], rv1, 1e-6),
                  "running_var %g %g, want %g %g", params[6], params[7], rv0, rv1);
    ck_assert(params[8] == 2.0f);
    float keep[9];
    memcpy(keep, params, sizeof keep);
    dp_pass eval = train;
    eval.key = NULL;
    l->ops->forward(l, &eval, params, x1, y);
    ck_assert_msg(memcmp(keep, params, sizeof keep) == 0, "evaluation changed the buffers");
    for (int i = 0; i < 4; i++) {
        int ch = i % 2;
        double want = (x1[i] - params[4 + ch]) / sqrt(params[6 + ch] + 1e-5);
        ck_assert_msg(close_to(y[i], want, 1e-6), "eval y[%d] = %g, want %g", i, y[i], want);
    }
    /* an empty training pass (a micro-batch of a short batch) changes nothing */
    dp_pass empty = train;
    empty.rows = 0;
    l->ops->forward(l, &empty, params, x1, y);
    ck_assert_msg(memcmp(keep, params, sizeof keep) == 0, "an empty pass changed the buffers");
    /* one value per channel has no unbiased variance: the estimate moves towards 0, no NaN */
    dp_pass one = train;
    one.rows = 1;
    l->ops->forward(l, &one, params, x1, y);
    ck_assert_msg(isfinite(params[6]) && isfinite(y[0]) && close_to(params[6], 0.9 * keep[6], 1e-6),
                  "one sample: running_var %g, y %g", params[6], y[0]);
    pass_memory_free(&pm);
    dp_cpu_device_destroy(&dev);
    dp_model_free(&m);
}
END_TEST

/* ---- replicas that sum their statistics over a host group ---- */

#define REPLICAS 3
#define R_ROWS 7 /* split 3, 2, 2 */

typedef struct replica_job {
    const dp_layer *l;
    dp_comm *group;
    int rank, rows, c, p;
    const float *x, *g;
    float *y, *dx, *params, *grads;
} replica_job;

static void *replica_main(void *arg)
{
    replica_job *j = arg;
    dp_device dev;
    dp_err err;
    if (dp_cpu_device_init(&dev, j->rank, 1, &err) != 0)
        return NULL;
    pass_memory pm = pass_memory_new(j->l, j->rows);
    dp_step_key key = { 1, 1, 0 };
    dp_pass pass = { .dev = &dev, .rows = j->rows, .key = &key, .saved = pm.saved,
                     .scratch = pm.scratch, .replicas = j->group, .replica = j->rank };
    j->l->ops->forward(j->l, &pass, j->params, j->x, j->y);
    j->l->ops->backward(j->l, &pass, j->params, j->grads, j->x, j->y, j->g, j->dx);
    pass_memory_free(&pm);
    dp_cpu_device_destroy(&dev);
    return NULL;
}

START_TEST(test_bn_replicas)
{
    dp_model m;
    bn_model(&m, (dp_shape){ 3, { 2, 3, 2 } });
    const dp_layer *l = &m.layers[0];
    int c = 2, p = 6;
    size_t per = (size_t)c * p, n = R_ROWS * per, np = l->param_count;
    float *x = malloc(n * sizeof *x), *g = malloc(n * sizeof *g), *y = malloc(n * sizeof *y);
    float *dx = malloc(n * sizeof *dx), *ry = malloc(n * sizeof *ry), *rdx = malloc(n * sizeof *rdx);
    float one_params[64], one_grads[64], rparams[REPLICAS][64], rgrads[REPLICAS][64];
    ck_assert_int_le((int)np, 64);
    dp_rng r = dp_rng_stream(9, 0, 1);
    for (size_t e = 0; e < n; e++) {
        x[e] = (float)(3.0 * dp_rng_uniform(&r) - 1.0);
        g[e] = (float)(dp_rng_uniform(&r) - 0.5);
    }
    l->ops->init(l, one_params, 1);
    one_params[0] = 1.5f, one_params[c + 1] = -0.25f;
    for (int k = 0; k < REPLICAS; k++)
        memcpy(rparams[k], one_params, np * sizeof(float));
    /* one pass over all the rows */
    dp_device dev;
    device_init(&dev, 0);
    pass_memory pm = pass_memory_new(l, R_ROWS);
    dp_step_key key = { 1, 1, 0 };
    dp_pass pass = { .dev = &dev, .rows = R_ROWS, .key = &key, .saved = pm.saved,
                     .scratch = pm.scratch };
    l->ops->forward(l, &pass, one_params, x, y);
    l->ops->backward(l, &pass, one_params, one_grads, x, y, g, dx);
    pass_memory_free(&pm);
    /* the replicas, each its share of the rows */
    dp_device devs[REPLICAS], *members[REPLICAS];
    for (int k = 0; k < REPLICAS; k++) {
        device_init(&devs[k], k);
        members[k] = &devs[k];
    }
    dp_err err;
    dp_comm *group = dp_comm_create(members, REPLICAS, &err);
    ck_assert_msg(group != NULL, "group: %s", err.msg);
    replica_job jobs[REPLICAS];
    pthread_t threads[REPLICAS];
    int first = 0;
    for (int k = 0; k < REPLICAS; k++) {
        int rows = k == 0 ? 3 : 2;
        jobs[k] = (replica_job){ l, group, k, rows, c, p, x + first * per, g + first * per,
                                 ry + first * per, rdx + first * per, rparams[k], rgrads[k] };
        first += rows;
        ck_assert(pthread_create(&threads[k], NULL, replica_main, &jobs[k]) == 0);
    }
    for (int k = 0; k < REPLICAS; k++)
        pthread_join(threads[k], NULL);
    dp_comm_destroy(group);
    for (size_t e = 0; e < n; e++) {
        ck_assert_msg(close_to(ry[e], y[e], FWD_TOL), "replicas' y[%zu] %g vs %g", e, ry[e], y[e]);
        ck_assert_msg(close_to(rdx[e], dx[e], FWD_TOL), "replicas' dx[%zu] %g vs %g", e, rdx[e],
                      dx[e]);
    }
    for (size_t i = 0; i < np; i++) {
        double sum = 0.0;
        for (int k = 0; k < REPLICAS; k++) {
            ck_assert_msg(close_to(rparams[k][i], one_params[i], FWD_TOL),
                          "replica %d's buffer %zu: %g vs %g", k, i, rparams[k][i], one_params[i]);
            sum += rgrads[k][i];
        }
        ck_assert_msg(close_to(sum, one_grads[i], FWD_TOL), "summed gradient %zu: %g vs %g", i,
                      sum, one_grads[i]);
    }
    for (int k = 0; k < REPLICAS; k++)
        dp_cpu_device_destroy(&devs[k]);
    free(x), free(g), free(y), free(dx), free(ry), free(rdx);
    dp_cpu_device_destroy(&dev);
    dp_model_free(&m);
}
END_TEST

/* PyTorch's state_dict: weight, bias (trained), running_mean, running_var, and the I64 scalar
 * num_batches_tracked (buffers); and bn refuses sequences. */
START_TEST(test_bn_tensors)
{
    dp_model m;
    dp_err err;
    ck_assert_msg(dp_model_parse_shape(&m, "conv:4:3, bn, relu, flatten, bn, linear:3",
                                       (dp_shape){ 3, { 1, 5, 5 } }, 3, &err) == 0,
                  "%s", err.msg);
    int n = dp_model_tensors(&m, NULL);
    dp_model_tensor *t = calloc((size_t)n, sizeof *t);
    dp_model_tensors(&m, t);
    const char *want[] = { "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                           "1.running_var", "1.num_batches_tracked", "4.weight", "4.bias",
                           "4.running_mean", "4.running_var", "4.num_batches_tracked",
                           "5.weight", "5.bias" };
    ck_assert_int_eq(n, 14);
    for (int i = 0; i < n; i++) {
        ck_assert_str_eq(t[i].name, want[i]);
        bool buffer = strstr(want[i], "running") || strstr(want[i], "num_batches");
        ck_assert_msg(t[i].info.buffer == buffer, "%s: buffer %d", want[i], t[i].info.buffer);
        ck_assert(t[i].info.int64 == (strstr(want[i], "num_batches") != NULL));
    }
    ck_assert_int_eq(t[6].info.ndim, 0);
    ck_assert_int_eq((int)t[6].info.count, 1);
    ck_assert_int_eq((int)t[9].info.shape[0], 4 * 3 * 3); /* BatchNorm1d(36) after flatten */
    ck_assert(dp_model_batch_statistics(&m));
    free(t);
    dp_model_free(&m);
    ck_assert(dp_model_parse_shape(&m, "embed:9:8, bn, linear:9", (dp_shape){ 1, { 4 } }, 9,
                                   &err) < 0);
    ck_assert_msg(strstr(err.msg, "use ln"), "%s", err.msg);
}
END_TEST

Suite *bn_suite(void)
{
    Suite *s = suite_create("bn");
    TCase *tc = tcase_create("bn");
    tcase_add_test(tc, test_bn_images);
    tcase_add_test(tc, test_bn_vectors);
    tcase_add_test(tc, test_bn_running);
    tcase_add_test(tc, test_bn_replicas);
    tcase_add_test(tc, test_bn_tensors);
    suite_add_tcase(s, tc);
    return s;
}
