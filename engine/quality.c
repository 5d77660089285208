/* quality.c -- sample quality in a classifier's feature space: the sums of a set's features
 * and probabilities (from evaluation passes of the classifier on a device), the Frechet
 * distance between two sets and the Inception-style score of one. */
#include "engine/quality.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "engine/optim.h"
#include "engine/stage.h"

struct dp_quality {
    const dp_model *model;
    dp_device *dev;
    dp_stage stage;
    int max_rows;
    int dim;           /* features: the last layer's input width */
    int classes;
    float *features;   /* host [max_rows, dim], from the device's host_alloc */
    float *logits;     /* host [max_rows, classes] */
};

/* ---- the stats ---- */

size_t dp_feature_stats_doubles(int dim, int classes)
{
    return 2 + (size_t)dim + (size_t)dim * (size_t)dim + (size_t)classes;
}

/* Points the named parts into `all`, in the order quality.h documents. */
static void point_into(dp_feature_stats *s)
{
    size_t dim = (size_t)s->dim;
    s->n = s->all;
    s->sum = s->n + 1;
    s->outer = s->sum + dim;
    s->prob_sum = s->outer + dim * dim;
    s->plogp = s->prob_sum + s->classes;
}

int dp_feature_stats_init(dp_feature_stats *s, int dim, int classes, dp_err *err)
{
    memset(s, 0, sizeof *s);
    if (dim < 1 || classes < 1)
        return dp_fail(err, "feature stats of %d features and %d classes: both must be at "
                            "least 1",
                       dim, classes);
    s->dim = dim;
    s->classes = classes;
    s->count = dp_feature_stats_doubles(dim, classes);
    s->all = calloc(s->count, sizeof *s->all);
    if (!s->all)
        return dp_fail(err, "out of host memory for the feature stats (%zu doubles)", s->count);
    point_into(s);
    return 0;
}

void dp_feature_stats_free(dp_feature_stats *s)
{
    free(s->all);
    memset(s, 0, sizeof *s);
}

void dp_feature_stats_clear(dp_feature_stats *s)
{
    memset(s->all, 0, s->count * sizeof *s->all);
}

int dp_feature_stats_merge(dp_feature_stats *dst, const dp_feature_stats *src, dp_err *err)
{
    if (dst->dim != src->dim || dst->classes != src->classes)
        return dp_fail(err, "merging feature stats of %d features and %d classes into stats "
                            "of %d and %d",
                       src->dim, src->classes, dst->dim, dst->classes);
    for (size_t i = 0; i < dst->count; i++)
        dst->all[i] += src->all[i];
    return 0;
}

/* Adds one sample's softmax probabilities and its sum p log p, in double. A non-finite logit
 * makes the sample's p log p NaN, and so the set's score. */
static void add_probabilities(dp_feature_stats *s, const float *logits)
{
    int c = s->classes;
    double most = -INFINITY;
    for (int y = 0; y < c; y++) {
        if (!isfinite(logits[y])) {
            *s->plogp += NAN;
            return;
        }
        most = logits[y] > most ? logits[y] : most;
    }
    double z = 0.0;
    for (int y = 0; y < c; y++)
        z += exp((double)logits[y] - most);
    double log_z = log(z);
    for (int y = 0; y < c; y++) {
        double log_p = (double)logits[y] - most - log_z; /* finite: p may underflow to 0 */
        double p = exp(log_p);
        s->prob_sum[y] += p;
        *s->plogp += p * log_p;
    }
}

void dp_feature_stats_accumulate(dp_feature_stats *s, const float *features, const float *logits,
                                 long rows)
{
    size_t dim = (size_t)s->dim;
    for (long r = 0; r < rows; r++) {
        const float *x = features + (size_t)r * dim;
        /* the upper triangle here, mirrored below: half the multiply-adds */
        for (size_t i = 0; i < dim; i++) {
            double xi = x[i], *row = s->outer + i * dim;
            s->sum[i] += xi;
            for (size_t j = i; j < dim; j++)
                row[j] += xi * (double)x[j];
        }
        add_probabilities(s, logits + (size_t)r * s->classes);
    }
    *s->n += (double)rows;
    for (size_t i = 1; i < dim; i++)
        for (size_t j = 0; j < i; j++)
            s->outer[i * dim + j] = s->outer[j * dim + i];
}

/* ---- the classifier on a device ---- */

dp_quality *dp_quality_create(const dp_model *classifier, const float *params, dp_device *d,
                              int max_rows, dp_err *err)
{
    const dp_model *m = classifier;
    if (m->n_layers < 1 || m->targets != 1)
        return dp_fail(err, "the classifier for sample quality must give one label per sample "
                            "(this model gives %d)",
                       m->targets),
               NULL;
    const dp_layer *last = &m->layers[m->n_layers - 1];
    if (last->out != m->classes)
        return dp_fail(err, "the classifier's last layer gives %d values, not its %d classes",
                       last->out, m->classes),
               NULL;
    if (max_rows < 1)
        return dp_fail(err, "sample quality: passes of %d images; at least 1", max_rows), NULL;
    if (dp_model_check_ids(m, 0, err) < 0)
        return NULL;
    dp_quality *q = calloc(1, sizeof *q);
    if (!q)
        return dp_fail(err, "out of host memory"), NULL;
    q->model = m;
    q->dev = d;
    q->max_rows = max_rows;
    q->dim = last->in;
    q->classes = m->classes;
    d->be->bind(d);
    dp_optim_config oc = dp_optim_defaults();
    if (dp_stage_create(&q->stage, m, d, 0, m->n_layers, max_rows, 1, &oc, err) < 0) {
        free(q);
        return NULL;
    }
    q->features = d->be->host_alloc((size_t)max_rows * q->dim * sizeof(float));
    q->logits = d->be->host_alloc((size_t)max_rows * q->classes * sizeof(float));
    if (!q->features || !q->logits) {
        dp_quality_destroy(q);
        return dp_fail(err, "out of host memory for the classifier's outputs"), NULL;
    }
    dp_stage_upload_params(&q->stage, params);
    const char *e = d->be->error(d);
    if (e) {
        dp_fail(err, "%s: %s", d->name, e);
        dp_quality_destroy(q);
        return NULL;
    }
    return q;
}

void dp_quality_destroy(dp_quality *q)
{
    if (!q)
        return;
    q->dev->be->bind(q->dev);
    if (q->features)
        q->dev->be->host_free(q->features);
    if (q->logits)
        q->dev->be->host_free(q->logits);
    dp_stage_destroy(&q->stage);
    free(q);
}

int dp_quality_features(const dp_quality *q)
{
    return q->dim;
}

int dp_quality_classes(const dp_quality *q)
{
    return q->classes;
}

int dp_quality_add(dp_quality *q, const float *images, long n, dp_feature_stats *s,
                   dp_err *err)
{
    if (s->dim != q->dim || s->classes != q->classes)
        return dp_fail(err, "feature stats of %d features and %d classes for a classifier of "
                            "%d and %d",
                       s->dim, s->classes, q->dim, q->classes);
    if (n < 0)
        return dp_fail(err, "sample quality: %ld images", n);
    dp_device *d = q->dev;
    d->be->bind(d);
    dp_stage *st = &q->stage;
    size_t in = (size_t)q->model->in_features;
    /* the input of the last layer: the output of the one before it (after a ReLU that the
     * stage applies in place, this is that ReLU's output); the stage's input for one layer */
    const float *features = dp_stage_layer_output(st, 0, q->model->n_layers - 2);
    for (long at = 0; at < n; at += q->max_rows) {
        int rows = n - at < q->max_rows ? (int)(n - at) : q->max_rows;
        d->be->upload(d, dp_stage_input(st, 0), images + (size_t)at * in,
                      (size_t)rows * in * sizeof(float));
        dp_stage_forward(st, 0, rows, NULL);
        d->be->download(d, q->features, features, (size_t)rows * q->dim * sizeof(float));
        d->be->download(d, q->logits, dp_stage_output(st, 0),
                        (size_t)rows * q->classes * sizeof(float));
        const char *e = d->be->error(d);
        if (e)
            return dp_fail(err, "%s: %s", d->name, e);
        dp_feature_stats_accumulate(s, q->features, q->logits, rows);
    }
    return 0;
}

/* ---- the figures ---- */

/* Whether every value of v[n] is finite. */
static bool all_finite(const double *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return false;
    return true;
}

/* Householder reduction of the symmetric a[n, n] (row-major, overwritten) to the tridiagonal
 * T = Q^T a Q: its diagonal d[n] and off-diagonal e[n - 1] (e[i] = T[i][i + 1]), and Q^T into
 * vt[n, n] when vt is not NULL. Step k reflects the part of column k below the diagonal (row
 * k right of it: the same numbers) onto its first element with H = I - beta v v^T and applies
 * H B H to the trailing block B as the rank-2 update B - v w^T - w v^T; vt collects
 * H_{n-3} ... H_0. About 4/3 n^3 multiply-adds with vt, 1/3 n^3 without. work: [3 n]. */
static void tridiagonalize(double *a, int n, double *d, double *e, double *vt, double *work)
{
    if (vt)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                vt[(size_t)i * n + j] = i == j ? 1.0 : 0.0;
    /* A column below the matrix's rounding level is taken as reduced already: reflecting it
     * would scale by 1 / norm^2, which overflows for the vanishing columns of a rank-deficient
     * covariance (dead features), and its values are rounding noise anyway. */
    double scale = 0.0;
    for (size_t i = 0; i < (size_t)n * n; i++)
        scale = fabs(a[i]) > scale ? fabs(a[i]) : scale;
    double negligible = DBL_EPSILON * scale;
    for (int k = 0; k + 2 < n; k++) {
        int m = n - k - 1; /* the trailing block's size */
        const double *x = a + (size_t)k * n + k + 1;
        double *v = work, *p = work + m, *r = work + 2 * m;
        double norm = 0.0;
        for (int i = 0; i < m; i++)
            norm += x[i] * x[i];
        norm = sqrt(norm);
        d[k] = a[(size_t)k * n + k];
        if (norm <= negligible) { /* already reduced: H = I */
            e[k] = x[0];
            continue;
        }
        double alpha = x[0] > 0.0 ? -norm : norm; /* the sign that keeps v[0] from cancelling */
        for (int i = 0; i < m; i++)
            v[i] = x[i];
        v[0] -= alpha;
        double beta = 1.0 / (norm * (norm + fabs(x[0]))); /* 2 / v^T v */
        e[k] = alpha;
        double *b = a + (size_t)(k + 1) * n + k + 1; /* B[i][j] = b[i * n + j] */
        double vp = 0.0;
        for (int i = 0; i < m; i++) { /* p = beta B v */
            const double *row = b + (size_t)i * n;
            double t = 0.0;
            for (int j = 0; j < m; j++)
                t += row[j] * v[j];
            p[i] = beta * t;
            vp += v[i] * p[i];
        }
        double half = 0.5 * beta * vp;
        for (int i = 0; i < m; i++) /* w = p - (beta / 2) (v^T p) v, in p */
            p[i] -= half * v[i];
        for (int i = 0; i < m; i++) {
            double *row = b + (size_t)i * n, vi = v[i], wi = p[i];
            for (int j = 0; j < m; j++)
                row[j] -= vi * p[j] + wi * v[j];
        }
        if (vt) { /* rows k + 1 on of vt = H vt */
            double *rows = vt + (size_t)(k + 1) * n;
            for (int j = 0; j < n; j++)
                r[j] = 0.0;
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                    r[j] += v[i] * rows[(size_t)i * n + j];
            for (int i = 0; i < m; i++) {
                double f = beta * v[i];
                for (int j = 0; j < n; j++)
                    rows[(size_t)i * n + j] -= f * r[j];
            }
        }
    }
    if (n >= 2) {
        d[n - 2] = a[(size_t)(n - 2) * n + n - 2];
        e[n - 2] = a[(size_t)(n - 2) * n + n - 1];
    }
    d[n - 1] = a[(size_t)(n - 1) * n + n - 1];
}

/* One implicit symmetric QR step with Wilkinson's shift on the unreduced block [l, h] of the
 * tridiagonal (d, e): T = G^T T G for a chain of Givens rotations G_k in the planes
 * (k, k + 1), the first set by the shifted first column, each later one chasing the bulge
 * T[k - 1][k + 1] the one before left; the rows of vt rotate with them (V = V G). */
static void qr_step(double *d, double *e, int l, int h, double *vt, int n)
{
    double half = 0.5 * (d[h - 1] - d[h]), f = e[h - 1];
    /* the eigenvalue of the trailing 2x2 block nearer d[h] */
    double shift = d[h] - f * f / (half + copysign(hypot(half, f), half));
    double x = d[l] - shift, z = e[l], bulge = 0.0;
    for (int k = l; k < h; k++) {
        if (k > l)
            x = e[k - 1], z = bulge;
        double r = hypot(x, z), c = 1.0, s = 0.0;
        if (r > 0.0)
            c = x / r, s = -z / r;
        if (k > l)
            e[k - 1] = r;
        double a = d[k], b = d[k + 1], g = e[k];
        d[k] = a * c * c - 2.0 * c * s * g + b * s * s;
        d[k + 1] = a * s * s + 2.0 * c * s * g + b * c * c;
        e[k] = (a - b) * c * s + g * (c * c - s * s);
        if (k + 1 < h) {
            bulge = -s * e[k + 1];
            e[k + 1] *= c;
        }
        if (vt) {
            double *vk = vt + (size_t)k * n, *vk1 = vk + n;
            for (int j = 0; j < n; j++) {
                double p = vk[j], q = vk1[j];
                vk[j] = c * p - s * q;
                vk1[j] = s * p + c * q;
            }
        }
    }
}

/* The eigenvalues of the symmetric a[n, n] (row-major, overwritten) into w[n] and, when vt is
 * not NULL, their eigenvectors as vt's rows: Householder tridiagonalisation, then implicit QR
 * steps with Wilkinson's shift on the bottom unreduced block until every off-diagonal element
 * is negligible (below DBL_EPSILON times its two diagonal neighbours, or DBL_EPSILON^2 of the
 * matrix's size). -1, with w all NaN, when the matrix is not finite, memory runs out, or the
 * steps do not converge (30 a eigenvalue; 2 or 3 is usual). */
static int symmetric_eigen(double *a, int n, double *w, double *vt)
{
    double *e = malloc(sizeof *e * (size_t)n), *work = malloc(sizeof *work * 3 * (size_t)n);
    double size = 0.0;
    bool finite = true;
    for (size_t i = 0; i < (size_t)n * n; i++) {
        finite = finite && isfinite(a[i]);
        size = fmax(size, fabs(a[i]));
    }
    if (!e || !work || !finite) {
        free(e), free(work);
        for (int i = 0; i < n; i++)
            w[i] = NAN;
        return -1;
    }
    tridiagonalize(a, n, w, e, vt, work);
    double floor = DBL_EPSILON * DBL_EPSILON * size;
    int steps = 0;
    for (int h = n - 1; h > 0;) {
        for (int i = 0; i < h; i++)
            if (fabs(e[i]) <= DBL_EPSILON * (fabs(w[i]) + fabs(w[i + 1])) || fabs(e[i]) <= floor)
                e[i] = 0.0;
        if (e[h - 1] == 0.0) {
            h--;
            continue;
        }
        int l = h - 1;
        while (l > 0 && e[l - 1] != 0.0)
            l--;
        if (++steps > 30 * n) {
            free(e), free(work);
            for (int i = 0; i < n; i++)
                w[i] = NAN;
            return -1;
        }
        qr_step(w, e, l, h, vt, n);
    }
    free(e), free(work);
    return 0;
}

/* The unbiased covariance [dim, dim] of stats (n >= 2) into cov, and the mean into mu. */
static void covariance(const dp_feature_stats *s, double *mu, double *cov)
{
    size_t dim = (size_t)s->dim;
    double n = *s->n;
    for (size_t i = 0; i < dim; i++)
        mu[i] = s->sum[i] / n;
    for (size_t i = 0; i < dim; i++)
        for (size_t j = i; j < dim; j++) {
            /* sum (x_i - mu_i)(x_j - mu_j) = sum x_i x_j - sum_i sum_j / n */
            double c = (s->outer[i * dim + j] - s->sum[i] * s->sum[j] / n) / (n - 1.0);
            cov[i * dim + j] = cov[j * dim + i] = c;
        }
}

/* Whether stats can give a figure: n >= 2 and the sums it uses finite, the features' for the
 * distance (from n to the outer products) or the probabilities' for the score (from the
 * probabilities to the end). */
static bool usable(const dp_feature_stats *s, bool features)
{
    if (!s || !s->all || !isfinite(*s->n) || *s->n < 2.0)
        return false;
    if (features)
        return all_finite(s->sum, (size_t)s->dim * (1 + (size_t)s->dim));
    return all_finite(s->prob_sum, (size_t)s->classes + 1);
}

double dp_frechet_distance(const dp_feature_stats *a, const dp_feature_stats *b)
{
    if (!usable(a, true) || !usable(b, true) || a->dim != b->dim)
        return NAN;
    size_t dim = (size_t)a->dim, dd = dim * dim;
    double *mu_a = malloc(2 * dim * sizeof *mu_a), *mu_b = mu_a ? mu_a + dim : NULL;
    double *w = malloc(dim * sizeof *w);
    double *m = malloc(4 * dd * sizeof *m);
    if (!mu_a || !w || !m) {
        free(mu_a), free(w), free(m);
        return NAN;
    }
    double *cov_a = m, *cov_b = m + dd, *vt = m + 2 * dd, *tmp = m + 3 * dd;
    covariance(a, mu_a, cov_a);
    covariance(b, mu_b, cov_b);
    double mean_term = 0.0, trace = 0.0;
    for (size_t i = 0; i < dim; i++) {
        double diff = mu_a[i] - mu_b[i];
        mean_term += diff * diff;
        trace += cov_a[i * dim + i] + cov_b[i * dim + i];
    }
    /* S_a = V D V^T; then S_a^(1/2) S_b S_a^(1/2) = V (D^(1/2) V^T S_b V D^(1/2)) V^T has the
     * eigenvalues of the bracket, which is symmetric and needs no square-root matrix */
    bool finite = symmetric_eigen(cov_a, (int)dim, w, vt) == 0; /* NaNs the clamps would hide */
    for (size_t i = 0; i < dim; i++) {
        finite = finite && isfinite(w[i]);
        w[i] = w[i] > 0.0 ? sqrt(w[i]) : 0.0;
    }
    for (size_t i = 0; i < dim; i++) { /* tmp = V^T S_b, a row at a time */
        double *out = tmp + i * dim;
        memset(out, 0, dim * sizeof *out);
        for (size_t k = 0; k < dim; k++) {
            double f = vt[i * dim + k];
            const double *row = cov_b + k * dim;
            for (size_t j = 0; j < dim; j++)
                out[j] += f * row[j];
        }
    }
    double *inner = cov_a; /* free now: D^(1/2) tmp V D^(1/2), symmetric */
    for (size_t i = 0; i < dim; i++)
        for (size_t j = i; j < dim; j++) {
            double t = 0.0;
            for (size_t k = 0; k < dim; k++)
                t += tmp[i * dim + k] * vt[j * dim + k];
            inner[i * dim + j] = inner[j * dim + i] = t * w[i] * w[j];
        }
    finite = symmetric_eigen(inner, (int)dim, w, NULL) == 0 && finite;
    double root_trace = 0.0;
    for (size_t i = 0; i < dim; i++) {
        finite = finite && isfinite(w[i]);
        root_trace += w[i] > 0.0 ? sqrt(w[i]) : 0.0;
    }
    free(mu_a), free(w), free(m);
    double distance = mean_term + trace - 2.0 * root_trace;
    if (!finite || !isfinite(distance))
        return NAN;
    return distance > 0.0 ? distance : 0.0; /* below 0 only by rounding (identical sets) */
}

double dp_inception_style_score(const dp_feature_stats *s)
{
    if (!usable(s, false))
        return NAN;
    double n = *s->n, entropy_of_mean = 0.0;
    for (int y = 0; y < s->classes; y++) {
        double p = s->prob_sum[y] / n;
        if (p > 0.0)
            entropy_of_mean -= p * log(p);
    }
    double mean_entropy = -*s->plogp / n;
    return exp(entropy_of_mean - mean_entropy);
}
