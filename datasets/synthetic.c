/* synthetic.c -- a classification task that needs no files: Gaussian inputs labelled by the
 * arg-max of a seeded random teacher network features -> 32 (tanh) -> classes. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/dataset.h"
#include "base/rng.h"

#define TEACHER_HIDDEN 32

typedef struct teacher {
    int features, classes;
    double *w1; /* [TEACHER_HIDDEN, features] */
    double *w2; /* [classes, TEACHER_HIDDEN] */
} teacher;

static int teacher_make(teacher *t, int features, int classes, uint64_t seed)
{
    t->features = features;
    t->classes = classes;
    t->w1 = malloc((size_t)TEACHER_HIDDEN * features * sizeof *t->w1);
    t->w2 = malloc((size_t)classes * TEACHER_HIDDEN * sizeof *t->w2);
    if (!t->w1 || !t->w2)
        return -1;
    dp_rng r = dp_rng_stream(seed, DP_RNG_TEACHER, 0);
    /* Scaled so that hidden pre-activations have unit variance and tanh stays informative. */
    for (size_t i = 0; i < (size_t)TEACHER_HIDDEN * features; i++)
        t->w1[i] = dp_rng_normal(&r) / sqrt((double)features);
    for (size_t i = 0; i < (size_t)classes * TEACHER_HIDDEN; i++)
        t->w2[i] = dp_rng_normal(&r);
    return 0;
}

static void teacher_free(teacher *t)
{
    free(t->w1);
    free(t->w2);
}

static int teacher_label(const teacher *t, const float *x)
{
    double h[TEACHER_HIDDEN];
    for (int j = 0; j < TEACHER_HIDDEN; j++) {
        double s = 0.0;
        for (int i = 0; i < t->features; i++)
            s += t->w1[(size_t)j * t->features + i] * x[i];
        h[j] = tanh(s);
    }
    int best = 0;
    double best_v = -INFINITY;
    for (int c = 0; c < t->classes; c++) {
        double s = 0.0;
        for (int j = 0; j < TEACHER_HIDDEN; j++)
            s += t->w2[(size_t)c * TEACHER_HIDDEN + j] * h[j];
        if (s > best_v) {
            best_v = s;
            best = c;
        }
    }
    return best;
}

/* Draws n inputs from stream `split` and labels them. */
static int make_split(dp_dataset *d, const teacher *t, long n, uint64_t seed, int split,
                      const char *name, dp_err *err)
{
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    d->n = n;
    d->features = t->features;
    d->classes = t->classes;
    d->targets = 1;
    d->x = malloc((size_t)n * t->features * sizeof *d->x);
    d->y = malloc((size_t)n * sizeof *d->y);
    if (!d->x || !d->y) {
        dp_dataset_free(d);
        return dp_fail(err, "out of memory for %ld synthetic samples of %d features; lower "
                            "data.samples",
                       n, t->features);
    }
    dp_rng r = dp_rng_stream(seed, DP_RNG_DATA, (uint64_t)split);
    for (long s = 0; s < n; s++) {
        float *x = d->x + (size_t)s * t->features;
        for (int i = 0; i < t->features; i++)
            x[i] = (float)dp_rng_normal(&r);
        d->y[s] = teacher_label(t, x);
    }
    return 0;
}

int dp_synthetic_make(const dp_data_config *c, uint64_t seed, dp_dataset *train,
                      dp_dataset *test, dp_err *err)
{
    long most = c->samples > c->test_samples ? c->samples : c->test_samples;
    if (c->features < 1 || c->classes < 2 || c->samples < 1 || c->test_samples < 1)
        return dp_fail(err, "the synthetic task needs data.features >= 1, data.classes >= 2, "
                            "data.samples >= 1 and data.test_samples >= 1");
    if ((uint64_t)most > DP_DATA_MAX_VALUES / (uint64_t)c->features)
        return dp_fail(err, "%s = %ld samples of data.features = %d values each is more than "
                            "the %" PRIu64 " values (16 GiB) a data set may hold; lower %s or "
                            "data.features",
                       most == c->samples ? "data.samples" : "data.test_samples", most,
                       c->features, DP_DATA_MAX_VALUES,
                       most == c->samples ? "data.samples" : "data.test_samples");
    teacher t;
    if (teacher_make(&t, c->features, c->classes, seed) < 0) {
        teacher_free(&t);
        return dp_fail(err, "out of memory for the synthetic teacher network");
    }
    int rc = make_split(train, &t, c->samples, seed, 0, "synthetic train", err);
    if (rc == 0) {
        rc = make_split(test, &t, c->test_samples, seed, 1, "synthetic test", err);
        if (rc < 0)
            dp_dataset_free(train);
    }
    teacher_free(&t);
    return rc;
}
