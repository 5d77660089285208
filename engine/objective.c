/* objective.c -- the objectives' tables and their lookup by name. */
#include "engine/objective.h"

#include <string.h>

/* ---- classify: softmax cross-entropy, as nn.CrossEntropyLoss with mean reduction ---- */

/* The mean over every target of the global batch. */
static float classify_grad_scale(int batch_rows, int targets)
{
    return 1.0f / ((float)batch_rows * targets);
}

/* The backend's kernel: stats[0] += the summed loss, stats[1] += the targets whose first
 * arg-max is right. */
static void classify_loss(dp_device *d, const float *out, const int32_t *targets, int positions,
                          int classes, float grad_scale, float *dout, float *stats)
{
    d->be->softmax_xent(d, out, targets, positions, classes, grad_scale, dout, stats);
}

/* Mean loss and accuracy per target: per sample, or per byte of a text (where the loss over
 * ln 2 is bits per byte). */
static void classify_report(const double *sums, long samples, int targets, dp_eval_report *r)
{
    double positions = (double)samples * targets;
    r->loss = samples ? sums[0] / positions : 0.0;
    r->accuracy = samples ? sums[1] / positions : 0.0;
    r->text = targets > 1;
}

const dp_objective dp_objective_classify = {
    .name = "classify",
    .n_stats = 2,
    .transform = NULL,
    .grad_scale = classify_grad_scale,
    .loss = classify_loss,
    .report = classify_report,
};

/* ---- gan: the discriminator's binary cross-entropy with logits ---- */

/* The loss of one logit per sample against its target, the mean over the global batch. */
static void gan_loss(dp_device *d, const float *out, const int32_t *targets, int positions,
                     int classes, float grad_scale, float *dout, float *stats)
{
    d->be->bce_logits(d, out, targets, positions * classes, grad_scale, dout, stats);
}

/* Mean loss, the share judged right and the mean sigmoid output: of the real test split in an
 * evaluation (target 1). */
static void gan_report(const double *sums, long samples, int targets, dp_eval_report *r)
{
    double n = (double)samples * targets;
    r->loss = samples ? sums[0] / n : 0.0;
    r->accuracy = samples ? sums[1] / n : 0.0;
    r->d_real = samples ? sums[2] / n : 0.0;
    r->text = false;
    r->gan = true;
}

const dp_objective dp_objective_gan = {
    .name = "gan",
    .n_stats = 3,
    .transform = NULL,
    .grad_scale = classify_grad_scale, /* the same mean over the global batch */
    .loss = gan_loss,
    .report = gan_report,
};

/* ---- the table ---- */

const dp_objective *const dp_objectives[] = { &dp_objective_classify, &dp_objective_gan, NULL };
const char *const dp_objective_names[] = { "classify", "gan", NULL };

const dp_objective *dp_objective_find(const char *name)
{
    for (int i = 0; dp_objectives[i]; i++)
        if (!strcmp(dp_objectives[i]->name, name))
            return dp_objectives[i];
    return NULL;
}

const dp_objective *dp_objective_default(void)
{
    return dp_objectives[0];
}
