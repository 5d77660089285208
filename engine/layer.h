/* layer.h -- the layer interface: one element of the model's sequential list.
 *
 * A layer maps [rows, in] activations to [rows, out] and may own parameters: a contiguous run
 * of the model's flat parameter vector, split into named tensors whose names and shapes are
 * those of the PyTorch module at the same index of an nn.Sequential. A sample has a shape
 * (an image [C, H, W], a sequence [T, D], a vector [N]); in and out are its element counts.
 * Layers are written once against the backend table and never allocate: the stage hands them
 * their buffers, including what a layer keeps from forward to backward (saved) and working
 * memory it needs only during one call (scratch). A block (res(...), block:H) is one layer
 * with children, so that a pipeline never cuts through it. */
#ifndef DP_LAYER_H
#define DP_LAYER_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/backend.h"
#include "engine/comm.h"
#include "base/error.h"
#include "base/shape.h"

#define DP_MAX_LAYER_ARGS 5
#define DP_MAX_LAYER_TENSORS 16
#define DP_MAX_DIMS 4

typedef struct dp_layer_ops dp_layer_ops;

/* One layer of a model, placed in the model's flat parameter vector. */
typedef struct dp_layer {
    const dp_layer_ops *ops;
    int index;                   /* position in the list: PyTorch's nn.Sequential index */
    int args[DP_MAX_LAYER_ARGS]; /* the numbers after the name: linear:1024 -> {1024} */
    double reals[DP_MAX_LAYER_ARGS]; /* the same numbers as written, for a kind whose numbers
                                        may have a fraction (ops->real_args: leakyrelu:0.2;
                                        args then holds their whole parts) */
    int nargs;
    int in, out;                 /* features per sample */
    dp_shape in_shape, out_shape;
    size_t param_offset;         /* first parameter in the model's flat vector */
    size_t param_count;
    size_t saved;                /* floats per sample kept from forward to backward */
    size_t saved_pass;           /* ... and per pass, whatever its rows (batch statistics) */
    char name[24];               /* a child's module name in its block: "body.0", "proj" */
    struct dp_layer *children;   /* a block's layers (owned), their param_offset from this
                                    layer's; NULL otherwise */
    int n_children;
    int shortcut;                /* res: index of the 1x1 projection among the children, or -1
                                    for the identity */
} dp_layer;

/* A tensor of a layer's state_dict: name suffix, shape, and place inside the layer's run of
 * the flat vector. Most are parameters, trained by the optimizer. A buffer (batch
 * normalisation's running statistics) is state that training passes update in forward
 * instead: it has no gradient (backward leaves its gradient 0) and no optimizer state, and
 * the parameters come first in a layer's run, its buffers after them, as in PyTorch's
 * state_dict. */
typedef struct dp_tensor_info {
    char suffix[40];    /* "weight", "bias", "body.0.weight" */
    int ndim;           /* 0: a scalar */
    int64_t shape[DP_MAX_DIMS];
    size_t offset;      /* from the layer's param_offset */
    size_t count;
    bool buffer;        /* not trained: see above */
    bool int64;         /* whole numbers, held as floats, an I64 tensor in PyTorch and in files
                           (num_batches_tracked) */
    bool nonnegative;   /* a variance: a negative value in a loaded file is refused */
} dp_tensor_info;

/* A training pass's place: the run's seed, the step, and the global batch position of the
 * pass's first row. */
typedef struct dp_step_key {
    uint64_t seed;
    long step;
    long sample0;
} dp_step_key;

/* One forward or backward pass over `rows` samples on a device. */
typedef struct dp_pass {
    dp_device *dev;
    int rows;
    int accumulate; /* backward: add to the gradients instead of overwriting them */
    bool then_relu; /* forward of a linear layer: apply the ReLU that follows it, in place */
    const dp_step_key *key; /* training: what dropout masks depend on; NULL in evaluation */
    dp_comm *replicas; /* training passes of a stage with several replicas (here or in other
                          processes): the group over which a layer sums batch statistics
                          (batch normalisation), with dp_comm_allreduce_now; NULL when the
                          pass's samples are all there are */
    int replica;       /* this pass's member of replicas */
    bool keep_buffers; /* a training pass that leaves the buffers (running statistics) as
                          they are: a GAN's generator run again for its own update, after the
                          pass that moved them (engine/gan.h) */
    float *saved;   /* [rows, l->saved] of this micro-batch: written by forward, read by backward */
    float *scratch; /* the layer's scratch(l, max_rows) floats, free to use during the call */
} dp_pass;

struct dp_layer_ops {
    const char *name;  /* as written in [model] layers */
    const char *usage; /* its forms: "conv:OUT:K[:STRIDE[:PAD]]" */
    const char *help;  /* one line for --help-layers */
    int min_args, max_args;
    bool real_args;    /* its numbers may have a fraction (l->reals) */
    /* Sets l->out_shape, l->param_count (and l->saved) from l->in_shape and the arguments, or
     * explains the problem. The model sets in and out from the shapes. */
    int (*infer)(dp_layer *l, dp_err *err);
    /* Fills out[] with the layer's parameter tensors; returns how many. */
    int (*tensors)(const dp_layer *l, dp_tensor_info out[DP_MAX_LAYER_TENSORS]);
    /* Writes initial values into host memory params[param_count] from the run's seed. */
    void (*init)(const dp_layer *l, float *params, uint64_t seed);
    /* y[rows, out] = f(x[rows, in]). A layer with buffers updates them in a training pass
     * (the stage's parameter memory is writable; params is const for the layers without). */
    void (*forward)(const dp_layer *l, const dp_pass *p, const float *params, const float *x,
                    float *y);
    /* From x, y and dy[rows, out]: writes (or adds to) grads[param_count] and, unless dx is
     * NULL, writes dx[rows, in]. */
    void (*backward)(const dp_layer *l, const dp_pass *p, const float *params, float *grads,
                     const float *x, const float *y, const float *dy, float *dx);
    /* Forward multiply-adds x 2 per sample (backward is about twice that). */
    double (*flops)(const dp_layer *l);
    /* Floats of scratch a pass of up to max_rows samples on device d needs (NULL: none); d
     * NULL: the most any device needs. */
    size_t (*scratch)(const dp_layer *l, int max_rows, const dp_device *d);
};

/* Whether a conv or deconv layer has a bias: its fifth number, BIAS, is 1 (the default) or 0
 * (PyTorch's bias=False, as DCGAN's layers before batch normalisation, which would cancel a
 * bias: its gradient is rounding noise, which Adam would scale up into steps). */
static inline bool dp_conv_has_bias(const dp_layer *l)
{
    return l->nargs < 5 || l->args[4] != 0;
}

/* The layer kinds, each in a file of engine/layers/ named after it. */
extern const dp_layer_ops dp_layer_linear;                                     /* linear.c */
extern const dp_layer_ops dp_layer_conv, dp_layer_maxpool, dp_layer_avgpool;   /* conv.c */
extern const dp_layer_ops dp_layer_deconv;                                     /* deconv.c */
extern const dp_layer_ops dp_layer_flatten, dp_layer_unflatten;                /* flatten.c */
extern const dp_layer_ops dp_layer_relu, dp_layer_gelu, dp_layer_tanh;         /* activation.c */
extern const dp_layer_ops dp_layer_leakyrelu, dp_layer_sigmoid;                /* activation.c */
extern const dp_layer_ops dp_layer_gelu_erf;                                   /* activation.c */
extern const dp_layer_ops dp_layer_embed, dp_layer_pos;                        /* embedding.c */
extern const dp_layer_ops dp_layer_ln;                                         /* layernorm.c */
extern const dp_layer_ops dp_layer_bn;                                         /* bn.c */
extern const dp_layer_ops dp_layer_attn, dp_layer_mha;                         /* attention.c */
extern const dp_layer_ops dp_layer_dropout;                                    /* dropout.c */
extern const dp_layer_ops dp_layer_res, dp_layer_block, dp_layer_enc;          /* blocks.c */

/* The layer kinds [model] layers understands, NULL-terminated, in --help-layers' order: the
 * registry, engine/layers/registry.c (which says how to add a kind). */
extern const dp_layer_ops *const dp_layer_kinds[];

/* Parses a layer list (model.c) on inputs of shape `in` into a new array of *n layers whose
 * parameters take *n_params; depth counts the blocks around it. A block uses it for its
 * children. */
int dp_layer_list_parse(const char *spec, dp_shape in, int depth, dp_layer **out, int *n,
                        size_t *n_params, dp_err *err);

#endif
