/* model.h -- a sequential list of layers (the model): the layer-list parser, and the
 * parameters' layout.
 *
 * The model is a pure description: layer kinds, shapes, where each layer's parameters sit in
 * one flat vector (PyTorch's state_dict order), and the objective it is trained for. Placing
 * its layers on devices is stage.h's job. A model is built once and then only read: any
 * thread may read it. */
#ifndef DP_MODEL_H
#define DP_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/layer.h"
#include "engine/objective.h"

typedef struct dp_model {
    dp_layer *layers;
    int n_layers;
    dp_shape in_shape; /* of one input sample */
    int in_features;   /* its values */
    int classes;       /* the last dimension of the output: one logit per class */
    int targets;       /* labels per sample: 1, or a sequence's positions */
    size_t n_params;
    const dp_objective *objective; /* the loss and what evaluation reports: the default
                                      (classify) once parsed; the caller may set another */
    int gan_split;     /* a GAN's discriminator's first layer (engine/gan.h); 0 otherwise */
} dp_model;

/* Builds a model from a layer list such as "linear:1024, relu, linear:10" for inputs of shape
 * `in` and `classes` outputs (per position, for a sequence). On failure err names the layer
 * (its 0-based position and text) and what is wrong. */
int dp_model_parse_shape(dp_model *m, const char *spec, dp_shape in, int classes, dp_err *err);
/* The same for vectors of in_features. */
int dp_model_parse(dp_model *m, const char *spec, int in_features, int classes, dp_err *err);
void dp_model_free(dp_model *m);

/* Checks the model against what its inputs are: integer ids in [0, vocab) (text's bytes:
 * vocab 256), or values that are not ids (vocab 0: images, synthetic floats). An embed layer
 * looks up ids, so it must come first, on ids, with a vocabulary that holds them all. */
int dp_model_check_ids(const dp_model *m, int vocab, dp_err *err);

/* Whether a layer of kind ops is among m's layers or their children. */
bool dp_model_has(const dp_model *m, const dp_layer_ops *ops);

/* Whether a layer normalises over the batch (bn), so that what a pass computes depends on
 * the samples it shares a pass with: the plan's replicas and micro-batches. */
bool dp_model_batch_statistics(const dp_model *m);
/* The first layer (an index of the list; a block holding it) whose batch normalisation has one
 * value per channel in a sample (bn after vectors, or after 1x1 images), which needs at least
 * two samples in a pass; -1 when none. */
int dp_model_bn_per_sample(const dp_model *m);

/* Writes every layer's initial parameters into host[n_params] (nn.Linear's default init). */
void dp_model_init_params(const dp_model *m, float *host, uint64_t seed);

/* A named parameter tensor of the model: "0.weight" and its place in the flat vector. */
typedef struct dp_model_tensor {
    char name[48];
    dp_tensor_info info; /* info.offset is from the start of the flat vector */
} dp_model_tensor;

/* Fills out[] (NULL to count only) with every parameter tensor in state_dict order; returns
 * the count. */
int dp_model_tensors(const dp_model *m, dp_model_tensor *out);

/* The trained parameters: PyTorch's sum(p.numel() for p in model.parameters()), what a user
 * is told the model has. Buffers (running statistics) are in n_params, the flat vector's
 * length, but not here. */
size_t dp_model_trainable(const dp_model *m);

/* Writes the layer list back in the syntax dp_model_parse reads. */
void dp_model_describe(const dp_model *m, char *buf, size_t size);

#endif
