/* stage.h -- a contiguous run of a model's layers placed on one device with its buffers (a
 * stage), its passes, and the per-layer profile that balances pipeline stages.
 *
 * A stage holds layers [first, last) on a device, with one allocation per buffer class:
 * parameters, gradients, optimizer state, activations. A single device runs one stage with
 * every layer; pipelines run one stage per device. A stage belongs to the thread that drives
 * its device (its worker); the model it points at is only read. */
#ifndef DP_STAGE_H
#define DP_STAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/comm.h"
#include "engine/layer.h"
#include "engine/model.h"
#include "engine/objective.h"
#include "engine/optim.h"

/* Measures each layer's forward plus backward time on d for passes of `rows` samples (the best
 * of 3 after a warm-up) into seconds[n_layers], for balancing pipeline stages by time rather
 * than FLOPs. Fails when d cannot hold the whole model. */
int dp_stage_profile(const dp_model *m, dp_device *d, int rows, double *seconds, dp_err *err);

/* Called by dp_stage_backward after layer `layer`'s gradients are complete. */
typedef void (*dp_layer_done_fn)(void *arg, int layer);

/* Layers [first, last) of a model on one device, with their buffers. A pipeline stage keeps the
 * activations of several micro-batches at once, one slot each. */
#define DP_STAGE_STATS (DP_OBJECTIVE_STATS + 1)
#define DP_STAGE_GRAD_SUMSQ DP_OBJECTIVE_STATS /* stats[]: the gradients' sum of squares */

typedef struct dp_stage {
    const dp_model *model;
    dp_device *dev;
    int first, last;
    int max_rows;         /* most samples one pass may carry */
    int slots;            /* micro-batches whose activations are kept at once */
    size_t param_offset;  /* of layer `first` in the flat vector */
    size_t n_params;
    size_t state_per_param;
    float *params;        /* [n_params] */
    float *grads;         /* [n_params] */
    float *opt_state;     /* [state_per_param][n_params] */
    void *act_block;      /* the activation allocation, carved below */
    size_t act_bytes;
    size_t slot_bytes;    /* activation bytes of one slot */
    float **acts;         /* acts[slot * (last - first + 1) + b]: [max_rows, width into layer
                             first + b]; b = last - first is the stage's output */
    float **saved;        /* saved[slot * (last - first) + i - first]: [max_rows, saved] of
                             layer i */
    float *scratch;       /* the most scratch any of the layers needs */
    dp_step_key *keys;    /* [slots]: the key of each slot's last forward pass */
    double *profile;      /* NULL, or [last - first]: each pass adds every layer's seconds
                             here (waiting for the device after each layer) */
    bool *training;       /* [slots]: whether that pass was a training pass */
    float *dgrad[2];      /* [max_rows, widest boundary]: gradients, ping-ponged in backward */
    int32_t *labels;      /* [slots, max_rows, targets], used by the last stage */
    dp_comm *replicas;    /* the group over which training passes sum batch statistics (the
                             stage's replicas; set by its worker), or NULL */
    int replica;          /* this stage's member of it */
    size_t (*trained)[2]; /* [n_trained]: the runs of parameters the optimizer updates (offset
                             in params, count): all but the buffers (layer.h) */
    int n_trained;
    float *stats;         /* [DP_STAGE_STATS]: the objective's sums over the passes since
                             zeroed (loss sum first; classify: and the correct count), and at
                             DP_STAGE_GRAD_SUMSQ the sum of squared gradients of the last step */
} dp_stage;

/* The bytes dp_stage_create allocates on device d for the same arguments (parameters,
 * gradients, optimizer state, activations), for predicting a plan's memory. */
size_t dp_stage_bytes(const dp_model *m, const dp_device *d, int first, int last, int max_rows,
                      int slots, const dp_optim_config *oc);

/* Places layers [first, last) of m on d for passes of up to max_rows samples, keeping `slots`
 * micro-batches' activations. */
int dp_stage_create(dp_stage *s, const dp_model *m, dp_device *d, int first, int last,
                    int max_rows, int slots, const dp_optim_config *oc, dp_err *err);
void dp_stage_destroy(dp_stage *s);

/* The input [max_rows, in], output [max_rows, out] and labels [max_rows] of a slot. */
float *dp_stage_input(const dp_stage *s, int slot);
float *dp_stage_output(const dp_stage *s, int slot);
/* The output of the stage's layer i (a model index) for slot's micro-batch. */
float *dp_stage_layer_output(const dp_stage *s, int slot, int i);
int32_t *dp_stage_labels(const dp_stage *s, int slot);
/* Floats per row entering and leaving the stage. */
int dp_stage_in_width(const dp_stage *s);
int dp_stage_out_width(const dp_stage *s);

/* Copies the stage's part of full host vectors in, or out: parameters [n_params of the model],
 * and optimizer state [state_per_param][n_params of the model]. */
void dp_stage_upload_params(dp_stage *s, const float *host_all);
void dp_stage_download_params(dp_stage *s, float *host_all);
void dp_stage_upload_state(dp_stage *s, const float *host_all);
void dp_stage_download_state(dp_stage *s, float *host_all);

/* The optimizer's update of the stage's parameters (not its buffers) of layers [from, to)
 * (model indices; the stage's part of them) from their gradients. */
void dp_stage_update(dp_stage *s, const dp_optim_config *oc, long t, double lr, int from, int to);
/* Where the stage's part of layers [from, to) sits in its parameter (and gradient) vector:
 * *offset and *count floats (0 when the stage holds none of them). */
void dp_stage_param_range(const dp_stage *s, int from, int to, size_t *offset, size_t *count);

/* Forward over `rows` samples already in the slot's input: a training pass at `key` (which
 * the slot's backward reuses: dropout draws the same mask), or an evaluation pass (NULL). */
void dp_stage_forward(dp_stage *s, int slot, int rows, const dp_step_key *key);
/* The same over layers [from, to) of the stage only, from the input of layer `from` in the
 * slot (dp_stage_layer_input); keep_buffers: a training pass that leaves running statistics
 * alone (engine/gan.h). */
void dp_stage_forward_range(dp_stage *s, int slot, int rows, const dp_step_key *key, int from,
                            int to, bool keep_buffers);
/* The input of the stage's layer i (a model index) for slot's micro-batch. */
float *dp_stage_layer_input(const dp_stage *s, int slot, int i);

/* The model objective's loss of the slot's output against its labels (classify: softmax
 * cross-entropy), its sums added to s->stats. With `backward`, also writes d(loss)/d(output)
 * scaled by grad_scale into dgrad and returns it. */
float *dp_stage_loss(dp_stage *s, int slot, int rows, float grad_scale, bool backward);

/* Backward of the slot from dy [rows, out]; gradients are written, or added when accumulate;
 * done(arg, layer), when not NULL, follows each layer. Returns the gradient of the stage's
 * input (in dgrad), or NULL when need_dx is false. */
float *dp_stage_backward(dp_stage *s, int slot, int rows, const float *dy, bool accumulate,
                         bool need_dx, dp_layer_done_fn done, void *arg);
/* The same down to layer `stop` (a model index) only: the gradient returned is of its input. */
float *dp_stage_backward_range(dp_stage *s, int slot, int rows, const float *dy,
                               bool accumulate, int stop, bool need_dx, dp_layer_done_fn done,
                               void *arg);

#endif
