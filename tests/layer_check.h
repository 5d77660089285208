/* layer_check.h -- one layer of a unit test run by hand against a double reference.
 *
 * A test file writes its layers' forward pass in double with plain loops (its reference) and
 * checks a layer parsed from a spec such as "deconv:3:4:2:1" or "enc:2" on a CPU device: the
 * float forward against the reference, then the backward of L = sum(y * r) for a random r: dx
 * and every parameter's gradient against central finite differences of the reference (step
 * FD_STEP, in double, whose truncation and rounding errors are below 1e-9, so the float
 * gradients are checked against numbers accurate well past float precision). Tolerances,
 * absolute plus relative (|got - want| <= tol (1 + |want|)): FWD_TOL, GRAD_TOL and, for the
 * same pass run again, ACC_TOL. The case's buffers are public, for the tests that set inputs of
 * their own or check more than check_one_layer does. */
#ifndef DP_TESTS_LAYER_CHECK_H
#define DP_TESTS_LAYER_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "tests/unit.h"
#include "engine/backend.h"
#include "engine/layer.h"
#include "base/rng.h"
#include "base/shape.h"

#define FD_STEP 1e-5  /* the central differences' step */
#define FWD_TOL 1e-5  /* the forward against the reference */
#define GRAD_TOL 1e-4 /* dx and the parameter gradients against the finite differences */
#define ACC_TOL 1e-6  /* accumulated gradients against 2x one pass, and the like */

static inline int close_to(double got, double want, double tol)
{
    return fabs(got - want) <= tol * (1.0 + fabs(want));
}

/* Uniform in [lo, hi) from a seeded stream. */
static inline double uniform(dp_rng *r, double lo, double hi)
{
    return lo + (hi - lo) * dp_rng_uniform(r);
}

/* n zeroed elements of size bytes (at least one, so that a layer without parameters still
 * gets a pointer); fails the test when out of memory. */
static inline void *zalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    ck_assert(p);
    return p;
}

/* A CPU device of one thread. */
static inline void device_init(dp_device *dev)
{
    dp_err err;
    ck_assert_msg(dp_cpu_device_init(dev, 0, 1, &err) == 0, "device: %s", err.msg);
}

/* A test file's reference: y[rows, l->out] = layer(x[rows, l->in]) in double, params the
 * layer's own run of the flat parameter vector. It fails the test for a kind it does not
 * know. */
typedef void (*dp_ref_layer_fn)(const dp_layer *l, int rows, const double *params,
                                const double *x, double *y);

/* How a test file checks its layers: its reference, and how its inputs are drawn. All draws
 * come from dp_rng_stream(seed, 100, stream), x first, then r (dy) uniform in [-1, 1], then
 * every parameter uniform in [-0.5, 0.5] (biases and LayerNorms' too, which their init leaves
 * at 0 and 1): the same draws for the same sizes and seed. */
typedef struct layer_harness {
    dp_ref_layer_fn ref;
    uint64_t stream;
    double x_gap; /* 0: x uniform in [-2, 2]; above 0: |x| uniform in [x_gap, 2] with a random
                     sign, so that no input lies within the step of a kink at 0 (leaky ReLU's) */
} layer_harness;

/* A one-layer model parsed from a spec, with its float buffers (the CPU device's host memory)
 * and double copies of its inputs for the reference. */
typedef struct one_layer {
    const layer_harness *how;
    dp_layer *layers; /* the parser's array of one (and its children, for a block) */
    const dp_layer *l;
    int rows;
    size_t nx, ny, np;
    float *x, *y, *r, *dx, *params, *grads, *scratch, *saved;
    double *xd, *rd, *pd;
} one_layer;

/* Parses spec (exactly one layer) on samples of shape `in`, allocates its buffers for `rows`
 * samples and draws x, r and the parameters as `how` says. */
void one_layer_init(one_layer *c, const layer_harness *how, const char *spec, dp_shape in,
                     int rows, uint64_t seed);
void one_layer_free(one_layer *c);

/* y = layer(x) over c->rows samples. */
void one_layer_forward(one_layer *c, dp_device *dev);
/* Backward with dy = r, after a forward: the gradients written (or added to, with accumulate),
 * and dx written unless with_dx is 0 (the layer then gets dx NULL). */
void one_layer_backward(one_layer *c, dp_device *dev, int accumulate, int with_dx);
/* Forward, then backward. */
void one_layer_run(one_layer *c, dp_device *dev, int accumulate, int with_dx);

/* spec on inputs `in` (rows samples, draws from seed): the forward against the reference; dx
 * and every parameter's gradient against central differences (dx and the gradients start as
 * garbage: backward overwrites them); a second backward with accumulate adds as much again to
 * the gradients (within ACC_TOL: the sums may round differently) and writes the same dx rather
 * than adding to it; a backward without dx gives the same parameter gradients, to the bit. */
void check_one_layer(const layer_harness *how, const char *spec, dp_shape in, int rows,
                 uint64_t seed);

#endif
