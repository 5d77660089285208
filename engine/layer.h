/* layer.h -- the layer interface: one element of the model's sequential list.
 *
 * A layer maps [rows, in] activations to [rows, out] and may own parameters: a contiguous run
 * of the model's flat parameter vector, split into named tensors whose names and shapes are
 * those of the PyTorch module at the same index of an nn.Sequential. Layers are written once
 * against the backend table and never allocate: the model hands them their buffers. */
#ifndef DP_LAYER_H
#define DP_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/backend.h"
#include "engine/error.h"

#define DP_MAX_LAYER_ARGS 4
#define DP_MAX_LAYER_TENSORS 2
#define DP_MAX_DIMS 4

typedef struct dp_layer_ops dp_layer_ops;

/* One layer of a model, placed in the model's flat parameter vector. */
typedef struct dp_layer {
    const dp_layer_ops *ops;
    int index;                   /* position in the list: PyTorch's nn.Sequential index */
    int args[DP_MAX_LAYER_ARGS]; /* the numbers after the name: linear:1024 -> {1024} */
    int nargs;
    int in, out;                 /* features per sample */
    size_t param_offset;         /* first parameter in the model's flat vector */
    size_t param_count;
} dp_layer;

/* A parameter tensor of a layer: name suffix, shape, and place inside the layer's run. */
typedef struct dp_tensor_info {
    const char *suffix; /* "weight", "bias" */
    int ndim;
    int64_t shape[DP_MAX_DIMS];
    size_t offset;      /* from the layer's param_offset */
    size_t count;
} dp_tensor_info;

/* One forward or backward pass over `rows` samples on a device. */
typedef struct dp_pass {
    dp_device *dev;
    int rows;
    int accumulate; /* backward: add to the gradients instead of overwriting them */
    bool then_relu; /* forward of a linear layer: apply the ReLU that follows it, in place */
} dp_pass;

struct dp_layer_ops {
    const char *name; /* as written in [model] layers */
    int min_args, max_args;
    /* Sets l->out and l->param_count from l->in and the arguments, or explains the problem. */
    int (*infer)(dp_layer *l, dp_err *err);
    /* Fills out[] with the layer's parameter tensors; returns how many. */
    int (*tensors)(const dp_layer *l, dp_tensor_info out[DP_MAX_LAYER_TENSORS]);
    /* Writes initial values into host memory params[param_count] from the run's seed. */
    void (*init)(const dp_layer *l, float *params, uint64_t seed);
    /* y[rows, out] = f(x[rows, in]). */
    void (*forward)(const dp_layer *l, const dp_pass *p, const float *params, const float *x,
                    float *y);
    /* From x, y and dy[rows, out]: writes (or adds to) grads[param_count] and, unless dx is
     * NULL, writes dx[rows, in]. */
    void (*backward)(const dp_layer *l, const dp_pass *p, const float *params, float *grads,
                     const float *x, const float *y, const float *dy, float *dx);
    /* Forward multiply-adds x 2 per sample (backward is about twice that). */
    double (*flops)(const dp_layer *l);
};

extern const dp_layer_ops dp_layer_linear, dp_layer_relu, dp_layer_gelu, dp_layer_tanh;

/* The layer kinds [model] layers understands, NULL-terminated. */
extern const dp_layer_ops *const dp_layer_kinds[];

#endif
