/* objective.h -- what a model is trained to do: the loss of the last stage's output against
 * the batch's targets, and what an evaluation reports.
 *
 * An objective is a table of operations, chosen by name ([model] objective) and carried by the
 * model (dp_model.objective). The stage calls `loss`, the worker `transform` and `grad_scale`,
 * the trainer `report`. The tables are constant: any thread may read them. They are classify
 * (softmax cross-entropy), gan (binary cross-entropy with logits) and mlm (cross-entropy over a
 * masked language model's chosen positions); another is a table in objective.c and a line in
 * dp_objectives[] and dp_objective_names[]. */
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
    bool text;          /* the targets are a text's bytes: loss / ln 2 is bits per byte */
    bool masked;        /* mlm: loss, accuracy and bits are over the test split's masked
                           positions (`positions` of them) */
    long positions;
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
    int count_stat;   /* the index of the sum that counts the loss's terms, or 0: every
                         target of every sample is one */

    /* Optional (NULL: the batch goes in as loaded): changes a micro-batch on the device before
     * its forward pass, as a masked language model masks inputs and leaves only the masked
     * positions as targets. x [rows, in_width] is NULL on a stage that does not take the
     * inputs, y [rows, targets] NULL on one that does not hold the targets: in a pipeline the
     * two are on different devices, so what it does must follow from key alone: a training
     * pass's (its step and its row 0's place in the global batch, as dropout's masks), or in
     * evaluation {0, 0, row 0's index in the split}. */
    void (*transform)(dp_device *d, const dp_step_key *key, float *x, int in_width, int32_t *y,
                      int targets, int rows);

    /* The factor that turns the summed gradient of a global batch of batch_rows samples (of
     * `targets` targets each) into the gradient of the mean loss, for the step of key (key's
     * sample0 is 0); 0 when the batch has no terms. It is known before any pass: a masked
     * objective counts its chosen positions over the global batch from the key. */
    float (*grad_scale)(const dp_step_key *key, int batch_rows, int targets);

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
/* A masked language model (BERT's) on text whose targets are the input bytes themselves
 * (dp_text_own_targets): each position chosen with probability 0.15 and of those 80 % masked
 * (DP_MLM_MASK_TOKEN), 10 % a random byte, 10 % kept, from a hash of the seed, the step, the
 * sample's place in the global batch and the position (kernels.h, dp_mlm_input); the test
 * split's masks are fixed (DP_NOISE_MLM_TEST). The loss is the softmax cross-entropy over the
 * chosen positions only, their mean over the global batch (0 for a batch with none chosen);
 * sums: the loss, the right predictions, the chosen positions. */
extern const dp_objective dp_objective_mlm;
/* The positions an mlm chooses among rows [0, rows) of targets positions of the pass of key (a
 * training step's, or with step 0 the test split's from its sample key->sample0 on). */
long dp_mlm_chosen(const dp_step_key *key, long rows, int targets);

/* Every objective, NULL-terminated; the first is the default. */
extern const dp_objective *const dp_objectives[];
/* Their names in the same order, NULL-terminated (the configuration key's accepted words). */
extern const char *const dp_objective_names[];

/* The objective called `name`, or NULL. */
const dp_objective *dp_objective_find(const char *name);
/* The default objective: classify. */
const dp_objective *dp_objective_default(void);

#endif
