/* objective.c -- the objectives' tables and their lookup by name. */
#include "engine/objective.h"

#include <math.h>
#include <string.h>

#include "engine/kernels.h"

/* ---- classify: softmax cross-entropy, as nn.CrossEntropyLoss with mean reduction ---- */

/* The mean over every target of the global batch. */
static float classify_grad_scale(const dp_step_key *key, int batch_rows, int targets)
{
    (void)key;
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
    r->positions = (long)positions;
}

const dp_objective dp_objective_classify = {
    .name = "classify",
    .n_stats = 3, /* loss, right, counted (every target: count_stat 0) */
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

/* ---- mlm: cross-entropy over a masked language model's chosen positions ---- */

/* The masks of a pass: a training step's, or the test split's fixed ones. */
static dp_noise_args mlm_args(const dp_step_key *key)
{
    if (key->step == 0)
        return (dp_noise_args){ 0, DP_NOISE_MLM_TEST, 0, (uint64_t)key->sample0 };
    return (dp_noise_args){ key->seed, DP_NOISE_MLM, (uint64_t)key->step,
                            (uint64_t)key->sample0 };
}

long dp_mlm_chosen(const dp_step_key *key, long rows, int targets)
{
    dp_noise_args a = mlm_args(key);
    long n = 0;
    for (long r = 0; r < rows; r++)
        for (int j = 0; j < targets; j++)
            n += dp_mlm_input(a, (uint64_t)r, (uint64_t)j, 0) >= 0;
    return n;
}

static void mlm_transform(dp_device *d, const dp_step_key *key, float *x, int in_width,
                          int32_t *y, int targets, int rows)
{
    (void)in_width; /* one input per target: the text's bytes */
    if (rows > 0 && (x || y))
        d->be->mlm_mask(d, x, y, rows, targets, mlm_args(key));
}

/* The mean over the global batch's chosen positions. */
static float mlm_grad_scale(const dp_step_key *key, int batch_rows, int targets)
{
    long n = dp_mlm_chosen(key, batch_rows, targets);
    return n ? 1.0f / (float)n : 0.0f;
}

/* Mean loss and accuracy over the test split's masked positions. */
static void mlm_report(const double *sums, long samples, int targets, dp_eval_report *r)
{
    (void)samples, (void)targets;
    r->loss = sums[2] > 0 ? sums[0] / sums[2] : 0.0;
    r->accuracy = sums[2] > 0 ? sums[1] / sums[2] : 0.0;
    r->text = true;
    r->masked = true;
    r->positions = (long)sums[2];
}

const dp_objective dp_objective_mlm = {
    .name = "mlm",
    .n_stats = 3,
    .count_stat = 2,
    .transform = mlm_transform,
    .grad_scale = mlm_grad_scale,
    .loss = classify_loss, /* softmax_xent leaves out the positions not chosen (label -1) */
    .report = mlm_report,
};

/* ---- the table ---- */

const dp_objective *const dp_objectives[] = { &dp_objective_classify, &dp_objective_gan,
                                              &dp_objective_mlm, NULL };
const char *const dp_objective_names[] = { "classify", "gan", "mlm", NULL };

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
