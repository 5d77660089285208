/* model.h -- a sequential list of layers (the model), and a contiguous run of its layers placed
 * on one device with its buffers (a stage).
 *
 * The model is a pure description: layer kinds, shapes, and where each layer's parameters sit in
 * one flat vector (PyTorch's state_dict order). A stage holds layers [first, last) on a device,
 * with one allocation per buffer class: parameters, gradients, optimizer state, activations.
 * A single device runs one stage with every layer; pipelines run one stage per device. */
#ifndef DP_MODEL_H
#define DP_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/layer.h"
#include "engine/optim.h"

typedef struct dp_model {
    dp_layer *layers;
    int n_layers;
    int in_features; /* width of one input sample */
    int classes;     /* width of the last layer: one logit per class */
    size_t n_params;
} dp_model;

/* Builds a model from a layer list such as "linear:1024, relu, linear:10" for inputs of
 * in_features and `classes` outputs. On failure err names the layer (its 0-based position and
 * text) and what is wrong. */
int dp_model_parse(dp_model *m, const char *spec, int in_features, int classes, dp_err *err);
void dp_model_free(dp_model *m);

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

/* Writes the layer list back in the syntax dp_model_parse reads. */
void dp_model_describe(const dp_model *m, char *buf, size_t size);

/* Layers [first, last) of a model on one device, with their buffers. */
typedef struct dp_stage {
    const dp_model *model;
    dp_device *dev;
    int first, last;
    int max_rows;         /* most samples one pass may carry */
    size_t param_offset;  /* of layer `first` in the flat vector */
    size_t n_params;
    size_t state_per_param;
    float *params;        /* [n_params] */
    float *grads;         /* [n_params] */
    float *opt_state;     /* [n_params * state_per_param] */
    void *act_block;      /* the activation allocation, carved below */
    size_t act_bytes;
    float **acts;         /* acts[i - first]: [max_rows, width in to layer i]; acts[last - first]
                             is the stage's output */
    float *dgrad[2];      /* [max_rows, widest boundary]: gradients, ping-ponged in backward */
    int32_t *labels;      /* [max_rows], used by the last stage */
    float *stats;         /* [2]: loss sum and correct count of the passes since zeroed */
} dp_stage;

/* Places layers [first, last) of m on d for passes of up to max_rows samples. */
int dp_stage_create(dp_stage *s, const dp_model *m, dp_device *d, int first, int last,
                    int max_rows, const dp_optim_config *oc, dp_err *err);
void dp_stage_destroy(dp_stage *s);

/* Copies the stage's part of a full host parameter vector in, or out. */
void dp_stage_upload_params(dp_stage *s, const float *host_all);
void dp_stage_download_params(dp_stage *s, float *host_all);

/* Forward over `rows` samples already in acts[0]. */
void dp_stage_forward(dp_stage *s, int rows);

/* Softmax cross-entropy of the output against s->labels, added to s->stats. With `backward`,
 * also writes d(loss)/d(logits) scaled by grad_scale into dgrad and returns that buffer. */
float *dp_stage_loss(dp_stage *s, int rows, float grad_scale, bool backward);

/* Backward from dy [rows, out of last layer]; gradients are written, or added when accumulate.
 * Returns the gradient of the stage's input, or NULL when need_dx is false. */
float *dp_stage_backward(dp_stage *s, int rows, const float *dy, bool accumulate, bool need_dx);

#endif
