/* common.h -- what the layer files share among themselves: the operations of layers without
 * parameters, and a check of the input's shape. For engine/layers/ only; the rest of the
 * engine sees layers through engine/layer.h. */
#ifndef DP_LAYERS_COMMON_H
#define DP_LAYERS_COMMON_H

#include "engine/layer.h"

/* A layer that keeps its input's shape and has no parameters (activations, dropout). */
int dp_layer_keep_shape(dp_layer *l, dp_err *err);
/* No parameter tensors, nothing to initialise. */
int dp_layer_no_tensors(const dp_layer *l, dp_tensor_info out[DP_MAX_LAYER_TENSORS]);
void dp_layer_no_init(const dp_layer *l, float *params, uint64_t seed);
/* One operation per input value. */
double dp_layer_flops_per_value(const dp_layer *l);

/* Through the backend's library (conv.c): the gradients of a convolution's weights w
 * [oc, g.c, g.kh, g.kw] (in grads) and bias (db, NULL: none; right after the weights) for the
 * pass p with input x and output gradient dy, written or, when p accumulates, added through
 * p's scratch (which holds them). */
void dp_conv_library_weights(const dp_layer *l, const dp_pass *p, dp_conv_geom g, int oc,
                             float *grads, float *db, const float *x, const float *dy);

/* Fails, saying what the layer got instead, unless its input is sequences [T, D]. */
int dp_layer_need_sequence(const dp_layer *l, dp_err *err);

#endif
