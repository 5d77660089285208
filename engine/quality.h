/* quality.h -- a generator's sample quality measured in the feature space of a classifier:
 * the Frechet distance between two sets' features and an Inception-style score of one set.
 *
 * The classifier is any dpmptop model of one label per sample (a layer list and its
 * parameters, e.g. the fashion-cnn example's after training). Its features are the input of
 * its LAST layer (the output of the layer before it: for "..., linear:128, relu, linear:10" the
 * 128 values after that ReLU) and its class probabilities the softmax of its output. These are
 * not Inception-v3's features, so the figures are not FID and IS: they compare sets only under
 * the same classifier and parameters.
 *
 * Images go through the classifier in evaluation mode (dropout off, bn with its running
 * statistics); each set's statistics are sums (of features, of their outer products, of the
 * probabilities and of p log p), so that sets split over batches or processes add up: the
 * figures are computed from the sums at the end, with no second pass over the samples.
 *
 * Threads: a dp_quality drives its device from the thread that calls dp_quality_add (which
 * binds the device first); one thread at a time. The figures are pure functions of the
 * stats. */
#ifndef DP_QUALITY_H
#define DP_QUALITY_H

#include <stddef.h>

#include "base/error.h"
#include "engine/backend.h"
#include "engine/model.h"

/* A set's sums, all in one allocation of doubles, `all`, laid out as
 *   all[0]                         n: the samples added
 *   all[1 .. dim]                  sum of the features
 *   all[1 + dim .. + dim * dim]    sum of the features' outer products x x^T, [dim, dim]
 *                                  row-major, kept symmetric (both triangles)
 *   then [classes]                 sum of the softmax probabilities p(y|x)
 *   then [1]                       sum over samples of sum_y p(y|x) log p(y|x) (0 log 0 = 0)
 * so that the sums of several processes' sets are the element-wise sum of their `all` arrays
 * (MPI_Allreduce of `count` doubles with MPI_SUM, or dp_feature_stats_merge). The pointers
 * below point into `all`. */
typedef struct dp_feature_stats {
    int dim;          /* features per sample */
    int classes;      /* probabilities per sample */
    size_t count;     /* doubles in all: dp_feature_stats_doubles(dim, classes) */
    double *all;
    double *n, *sum, *outer, *prob_sum, *plogp;
} dp_feature_stats;

/* Doubles in the `all` array of stats of dim features and `classes` probabilities:
 * 2 + dim + dim * dim + classes. */
size_t dp_feature_stats_doubles(int dim, int classes);
/* Zeroed stats (n = 0) for dim features and `classes` probabilities. */
int dp_feature_stats_init(dp_feature_stats *s, int dim, int classes, dp_err *err);
void dp_feature_stats_free(dp_feature_stats *s);
/* Back to n = 0. */
void dp_feature_stats_clear(dp_feature_stats *s);
/* dst += src, element-wise (same dim and classes: -1 otherwise). */
int dp_feature_stats_merge(dp_feature_stats *dst, const dp_feature_stats *src, dp_err *err);

/* Adds `rows` samples computed elsewhere: features [rows, dim] and logits [rows, classes] (the
 * probabilities are their softmax, in double). A sample with a non-finite logit makes plogp NaN
 * (its score is NaN); non-finite features make the sums non-finite (the distance is NaN). */
void dp_feature_stats_accumulate(dp_feature_stats *s, const float *features, const float *logits,
                                 long rows);

/* A classifier placed on one device for evaluation passes of up to max_rows images. */
typedef struct dp_quality dp_quality;

/* Places the whole of `classifier` (which must outlive the result) on d with its parameters
 * params[n_params] (host memory, copied). NULL with err when the model is not one label per
 * sample, or d cannot hold it (err then says what would fit). It holds a whole stage on d:
 * parameters, gradients and activations for max_rows (fashion-cnn at 256: 180 MiB). */
dp_quality *dp_quality_create(const dp_model *classifier, const float *params, dp_device *d,
                              int max_rows, dp_err *err);
void dp_quality_destroy(dp_quality *q); /* NULL is fine */

/* The classifier's features per sample (its last layer's input width) and classes. */
int dp_quality_features(const dp_quality *q);
int dp_quality_classes(const dp_quality *q);

/* Runs n images (host [n, in_features of the model], already in the range the classifier was
 * trained on: [0, 1] for dpmptop's image data sets) through the classifier, max_rows at a
 * time, and adds their features and probabilities to s (made with dp_quality_features and
 * dp_quality_classes). -1 with err when s does not match, or when the device fails (s then
 * holds the passes before the failure: clear it). Call it while no trainer runs a step or an
 * evaluation on the device. */
int dp_quality_add(dp_quality *q, const float *images, long n, dp_feature_stats *s,
                   dp_err *err);

/* The Frechet distance between Gaussians fitted to two sets' features:
 *   ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))
 * with mu the mean and S the unbiased covariance (divided by n - 1, as numpy.cov). The trace
 * of the square root is the sum of the square roots of the eigenvalues of the symmetric
 * positive semi-definite D^(1/2) V^T S_b V D^(1/2), where S_a = V D V^T (the same eigenvalues
 * as S_a^(1/2) S_b S_a^(1/2)). Both eigen-decompositions are Householder tridiagonalisation and
 * implicit QR with Wilkinson shifts, in double (about 7 ms for 128 features, 2 s for 1024);
 * eigenvalues below 0 (rounding: a rank-deficient covariance has eigenvalues of 0) count as 0.
 * Not negative but for rounding (identical sets give about 1e-15 of the trace). NaN when
 * either set has n < 2, the dims differ, or a sum of features or outer products is not
 * finite. */
double dp_frechet_distance(const dp_feature_stats *a, const dp_feature_stats *b);

/* exp(E_x KL(p(y|x) || p(y))) = exp(H(p(y)) - E_x H(p(y|x))), p(y) the mean probability, over
 * the whole set as one split (the Inception score's reference code averages 10 splits). 1 when
 * every sample gets the same probabilities, k for confident predictions spread evenly over k
 * classes; at most `classes`. NaN when n < 2 or a sum of probabilities or p log p is not
 * finite. */
double dp_inception_style_score(const dp_feature_stats *s);

#endif
