/* shape.h -- a sample's shape and the limits on sizes that come from user input, shared by the
 * data sets and the layers. */
#ifndef DP_SHAPE_H
#define DP_SHAPE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One sample's shape: d[0..ndim). */
typedef struct dp_shape {
    int ndim;
    int d[3];
} dp_shape;

/* Limits on the sizes that come from user input (layer arguments, the data's shape, the
 * batch). A sample has at most DP_MAX_SAMPLE values at any layer's input or output; any one
 * buffer (a layer's parameters, what it saves or needs as scratch, a micro-batch's
 * activations, a batch of data) holds at most DP_MAX_FLOATS floats, since BLAS and the CUDA
 * kernels count in int. Sizes are computed with dp_size_mul and dp_size_add, which saturate
 * instead of wrapping, and checked where the model is built (dp_layer_list_parse: every
 * layer, blocks' children too) and where the plan fixes the rows of a pass (dp_plan_make). */
#define DP_MAX_SAMPLE (1 << 24)
#define DP_MAX_FLOATS INT_MAX

static inline size_t dp_size_mul(size_t a, size_t b)
{
    size_t r;
    return __builtin_mul_overflow(a, b, &r) ? SIZE_MAX : r;
}

static inline size_t dp_size_add(size_t a, size_t b)
{
    size_t r;
    return __builtin_add_overflow(a, b, &r) ? SIZE_MAX : r;
}

/* Values in a sample of shape s (saturating). */
static inline size_t dp_shape_count(dp_shape s)
{
    size_t n = 1;
    for (int i = 0; i < s.ndim; i++)
        n = dp_size_mul(n, s.d[i] > 0 ? (size_t)s.d[i] : 0);
    return n;
}

/* Whether two samples' shapes are the same. */
static inline bool dp_shape_equal(dp_shape a, dp_shape b)
{
    if (a.ndim != b.ndim)
        return false;
    for (int i = 0; i < a.ndim; i++)
        if (a.d[i] != b.d[i])
            return false;
    return true;
}

#endif
