/* objective.h -- what a model is trained to do: the loss of the last stage's output against
 * the batch's targets, and what an evaluation reports.
 *
 * An objective is a table of operations, chosen by name ([model] objective) and carried by the
 * model (dp_model.objective). The stage calls `loss`, the worker `transform` and `grad_scale`,
 * the trainer `report`. The tables are constant: any thread may read them. Today's only one is
 * classify (softmax cross-entropy) and gan (binary cross-entropy with logits); another (cross-
 * entropy over masked positions for a masked language model) is a table in objective.c and a
 * line in dp_objectives[] and dp_objective_names[]. */
#ifndef DP_OBJECTIVE_H
#define DP_OBJECTIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/backend.h"
#include "engine/layer.h"

/* The most sums an objective accumulates over its passes on the device (stats[0] is always
 * the summed loss). */
#define DP_OBJECTIVE_STATS 4

/* What an evaluation over a labelled split found (filled by the objective's report). */
typedef struct dp_eval_report {
    long samples;
    double loss;        /* mean loss over the test split's targets (classify: cross-entropy) */
    double accuracy;    /* fraction of targets predicted correctly */
    bool text;          /* the targets are a text's next bytes: loss / ln 2 is bits per byte */
    /* gan: loss and accuracy are the discriminator's on the real test split (target 1:
     * accuracy is the share it judges real), d_real its mean sigmoid output there, D(x); the
     * quality of `generated` samples against the test split in a classifier's feature space
     * (NAN without a classifier: engine/quality.h) */
    bool gan;
    double d_real;
    long generated;
    double frechet, score;
    /* gan: the generator's samples from the fixed noise, [n_images, image values] in the
     * data's range (the trainer's memory, valid until its next evaluation), and their shape */
    const float *images;
    int n_images;
    dp_shape image_shape;
} dp_eval_report;

typedef struct dp_objective {
    const char *name; /* its value of [model] objective */
    int n_stats;      /* sums that `loss` adds to stats[] (at most DP_OBJECTIVE_STATS) */

    /* Optional (NULL: the batch goes in as loaded): changes a micro-batch on the device before
     * its forward pass, as a masked language model masks inputs and leaves only the masked
     * positions as targets. x [rows, in_width] is NULL on a stage that does not take the
     * inputs, y [rows, targets] NULL on one that does not hold the targets: in a pipeline the
     * two are on different devices, so what it does must follow from key alone (the training
     * pass's place, as dropout's masks do; NULL in evaluation). */
    void (*transform)(dp_device *d, const dp_step_key *key, float *x, int in_width, int32_t *y,
                      int targets, int rows);

    /* The factor that turns the summed gradient of a global batch of batch_rows samples (of
     * `targets` targets each) into the gradient of the mean loss. (It is known before any
     * pass: a masked objective that means over its chosen positions chooses a fixed number a
     * sample, or needs their global count passed in first.) */
    float (*grad_scale)(int batch_rows, int targets);

    /* The loss of `positions` outputs out [positions, classes] against targets [positions]:
     * adds its sum to stats[0] and the objective's other sums to stats[1, n_stats) (device
     * memory). With dout (else NULL), also writes d(summed loss)/d(out) x grad_scale there. */
    void (*loss)(dp_device *d, const float *out, const int32_t *targets, int positions,
                 int classes, float grad_scale, float *dout, float *stats);

    /* Fills r's loss, accuracy and text from the sums over an evaluation of `samples` samples
     * of `targets` targets each (sums[n_stats], added over devices and processes). */
    void (*report)(const double *sums, long samples, int targets, dp_eval_report *r);
} dp_objective;

/* Softmax cross-entropy over the classes, with accuracy (and bits per byte for text). */
extern const dp_objective dp_objective_classify;
/* A GAN (engine/gan.h): the discriminator's binary cross-entropy with logits against targets
 * of 1 (real) and 0 (fake), as nn.BCEWithLogitsLoss; sums: the loss, the outputs on the
 * target's side, the sigmoid outputs (D(x) or D(G(z)) once divided by the samples). */
extern const dp_objective dp_objective_gan;

/* Every objective, NULL-terminated; the first is the default. */
extern const dp_objective *const dp_objectives[];
/* Their names in the same order, NULL-terminated (the configuration key's accepted words). */
extern const char *const dp_objective_names[];

/* The objective called `name`, or NULL. */
const dp_objective *dp_objective_find(const char *name);
/* The default objective: classify. */
const dp_objective *dp_objective_default(void);

#endif
