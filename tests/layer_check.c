/* layer_check.c -- one layer run by hand against a test file's double reference (see
 * layer_check.h). */
#include "tests/layer_check.h"

#include <string.h>

void one_layer_init(one_layer *c, const layer_harness *how, const char *spec, dp_shape in,
                     int rows, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->how = how;
    dp_err err;
    int n;
    size_t np;
    ck_assert_msg(dp_layer_list_parse(spec, in, 0, &c->layers, &n, &np, &err) == 0, "%s: %s",
                  spec, err.msg);
    ck_assert_int_eq(n, 1);
    c->l = &c->layers[0];
    ck_assert_uint_eq(np, c->l->param_count);
    c->rows = rows;
    c->nx = (size_t)rows * c->l->in;
    c->ny = (size_t)rows * c->l->out;
    c->np = np;
    c->x = zalloc(c->nx, sizeof *c->x);
    c->dx = zalloc(c->nx, sizeof *c->dx);
    c->xd = zalloc(c->nx, sizeof *c->xd);
    c->y = zalloc(c->ny, sizeof *c->y);
    c->r = zalloc(c->ny, sizeof *c->r);
    c->rd = zalloc(c->ny, sizeof *c->rd);
    c->params = zalloc(c->np, sizeof *c->params);
    c->grads = zalloc(c->np, sizeof *c->grads);
    c->pd = zalloc(c->np, sizeof *c->pd);
    c->scratch = zalloc(c->l->ops->scratch ? c->l->ops->scratch(c->l, rows, NULL) : 0, sizeof(float));
    c->saved = zalloc((size_t)rows * c->l->saved + c->l->saved_pass, sizeof(float));
    dp_rng rng = dp_rng_stream(seed, 100, how->stream);
    for (size_t i = 0; i < c->nx; i++) {
        if (how->x_gap > 0.0) {
            double v = uniform(&rng, how->x_gap, 2.0);
            c->xd[i] = c->x[i] = (float)(dp_rng_uniform(&rng) < 0.5 ? -v : v);
        } else {
            c->xd[i] = c->x[i] = (float)uniform(&rng, -2.0, 2.0);
        }
    }
    for (size_t i = 0; i < c->ny; i++)
        c->rd[i] = c->r[i] = (float)uniform(&rng, -1.0, 1.0);
    for (size_t i = 0; i < c->np; i++)
        c->pd[i] = c->params[i] = (float)uniform(&rng, -0.5, 0.5);
}

/* Frees a parsed layer list and its blocks' children. */
static void free_layers(dp_layer *layers, int n)
{
    for (int i = 0; i < n; i++)
        free_layers(layers[i].children, layers[i].n_children);
    free(layers);
}

void one_layer_free(one_layer *c)
{
    free(c->x), free(c->y), free(c->r), free(c->dx), free(c->params), free(c->grads);
    free(c->scratch), free(c->saved), free(c->xd), free(c->rd), free(c->pd);
    free_layers(c->layers, 1);
}

void one_layer_forward(one_layer *c, dp_device *dev)
{
    dp_pass p = { .dev = dev, .rows = c->rows, .saved = c->saved, .scratch = c->scratch };
    c->l->ops->forward(c->l, &p, c->params, c->x, c->y);
}

void one_layer_backward(one_layer *c, dp_device *dev, int accumulate, int with_dx)
{
    dp_pass p = { .dev = dev, .rows = c->rows, .accumulate = accumulate, .saved = c->saved,
                  .scratch = c->scratch };
    c->l->ops->backward(c->l, &p, c->params, c->grads, c->x, c->y, c->r,
                        with_dx ? c->dx : NULL);
}

void one_layer_run(one_layer *c, dp_device *dev, int accumulate, int with_dx)
{
    one_layer_forward(c, dev);
    one_layer_backward(c, dev, accumulate, with_dx);
}

/* sum(layer(x) * r) by the reference, in double. */
static double one_layer_objective(const one_layer *c)
{
    double *y = zalloc(c->ny, sizeof *y), sum = 0.0;
    c->how->ref(c->l, c->rows, c->pd, c->xd, y);
    for (size_t i = 0; i < c->ny; i++)
        sum += y[i] * c->rd[i];
    free(y);
    return sum;
}

/* The central difference of the objective with respect to *v (an input or a parameter). */
static double one_layer_diff(const one_layer *c, double *v)
{
    double keep = *v;
    *v = keep + FD_STEP;
    double up = one_layer_objective(c);
    *v = keep - FD_STEP;
    double down = one_layer_objective(c);
    *v = keep;
    return (up - down) / (2.0 * FD_STEP);
}

/* The name of the tensor that holds parameter i of layer l, for the messages. */
static const char *param_name(const dp_layer *l, size_t i, dp_tensor_info t[DP_MAX_LAYER_TENSORS])
{
    int nt = l->ops->tensors(l, t);
    for (int k = 0; k < nt; k++)
        if (i >= t[k].offset && i < t[k].offset + t[k].count)
            return t[k].suffix;
    return "?";
}

void check_one_layer(const layer_harness *how, const char *spec, dp_shape in, int rows,
                 uint64_t seed)
{
    dp_device dev;
    device_init(&dev);
    one_layer c;
    one_layer_init(&c, how, spec, in, rows, seed);
    for (size_t i = 0; i < c.np; i++)
        c.grads[i] = 1234.5f;
    for (size_t i = 0; i < c.nx; i++)
        c.dx[i] = 99.0f;
    one_layer_run(&c, &dev, 0, 1);
    double *yd = zalloc(c.ny, sizeof *yd);
    how->ref(c.l, rows, c.pd, c.xd, yd);
    for (size_t i = 0; i < c.ny; i++)
        ck_assert_msg(close_to(c.y[i], yd[i], FWD_TOL), "%s: y[%zu] = %.9g, reference %.9g",
                      spec, i, c.y[i], yd[i]);
    for (size_t i = 0; i < c.nx; i++) {
        double want = one_layer_diff(&c, &c.xd[i]);
        ck_assert_msg(close_to(c.dx[i], want, GRAD_TOL),
                      "%s: dx[%zu] = %.9g, finite difference %.9g (x = %.6g)", spec, i, c.dx[i],
                      want, c.xd[i]);
    }
    dp_tensor_info t[DP_MAX_LAYER_TENSORS];
    for (size_t i = 0; i < c.np; i++) {
        double want = one_layer_diff(&c, &c.pd[i]);
        ck_assert_msg(close_to(c.grads[i], want, GRAD_TOL),
                      "%s: dparam[%zu] (%s) = %.9g, finite difference %.9g", spec, i,
                      param_name(c.l, i, t), c.grads[i], want);
    }

    float *once = zalloc(c.np, sizeof *once), *dx_once = zalloc(c.nx, sizeof *dx_once);
    memcpy(once, c.grads, c.np * sizeof *once);
    memcpy(dx_once, c.dx, c.nx * sizeof *dx_once);
    one_layer_backward(&c, &dev, 1, 1);
    for (size_t i = 0; i < c.np; i++)
        ck_assert_msg(close_to(c.grads[i], 2.0 * once[i], ACC_TOL),
                      "%s: accumulated dparam[%zu] = %.9g, want twice %.9g", spec, i, c.grads[i],
                      once[i]);
    for (size_t i = 0; i < c.nx; i++)
        ck_assert_msg(c.dx[i] == dx_once[i],
                      "%s: dx[%zu] = %.9g with accumulate, %.9g without (dx is never added to)",
                      spec, i, c.dx[i], dx_once[i]);
    for (size_t i = 0; i < c.np; i++)
        c.grads[i] = -77.0f;
    one_layer_backward(&c, &dev, 0, 0);
    for (size_t i = 0; i < c.np; i++)
        ck_assert_msg(c.grads[i] == once[i],
                      "%s: dparam[%zu] without dx = %.9g, with dx %.9g", spec, i, c.grads[i],
                      once[i]);
    free(once);
    free(dx_once);
    free(yd);
    one_layer_free(&c);
    dp_cpu_device_destroy(&dev);
}
