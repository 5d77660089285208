/* test_quality.c -- sample quality: the Frechet distance and the Inception-style score from
 * feature stats, and the classifier on a CPU device that fills them.
 *
 * The distance is checked where it has a closed form (identical sets: 0; diagonal
 * covariances: sum (sqrt a_i - sqrt b_i)^2 plus the mean term) and on pseudo-random sets with
 * full covariances against numpy: tests/quality_reference.py makes the same sets (splitmix64,
 * the features rounded to float32) and computes the distance with numpy.cov and
 * numpy.linalg.eigh, and the score per sample (a second pass); REFERENCE holds its output.
 * The score is 1 for uniform probabilities and k for confident predictions spread evenly over k
 * classes. The classifier's features and probabilities are checked against a double-precision
 * forward pass of a hand-set "linear:3, relu, linear:2" (and the sums of the relu case against
 * numbers worked by hand), and a convolutional one's with bn and dropout against stages of its
 * list without its last layer (the features) and of the whole (the logits). Tolerances, relative: full-rank covariances 1e-9 (the closed form
 * seen within 2e-16, numpy within 8e-14), rank-deficient ones 1e-7 (seen: 4e-9 against the
 * closed form, 2e-9 against numpy: an eigenvalue that is 0 comes out as rounding of about
 * 1e-16 of the largest, and the distance takes its square root, in numpy as here), the
 * classifier's float passes 1e-6 (a convolutional one, against its own stages, 1e-5). */
#include "tests/unit.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/model.h"
#include "engine/optim.h"
#include "engine/quality.h"
#include "engine/stage.h"

static int close_to(double got, double want, double tol)
{
    return fabs(got - want) <= tol * (1.0 + fabs(want));
}

static void stats_init(dp_feature_stats *s, int dim, int classes)
{
    dp_err err;
    ck_assert_msg(dp_feature_stats_init(s, dim, classes, &err) == 0, "%s", err.msg);
}

/* splitmix64, as tests/quality_reference.py has it. */
static uint64_t next_u64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static double uniform(uint64_t *state)
{
    return (double)(next_u64(state) >> 11) * (1.0 / 9007199254740992.0);
}

/* The script's make_set: mu_i = offset + u, A_ij = u - 0.5, rows x = mu + A z with
 * z_j = 2u - 1, then logits 3 (2u - 1); drawn in that order. Fills feats [n, dim] and logits
 * [n, classes]. */
static void make_set(uint64_t seed, int dim, int n, int classes, double offset, float *feats,
                     float *logits)
{
    uint64_t g = seed;
    double *mu = malloc(sizeof *mu * dim), *a = malloc(sizeof *a * dim * dim);
    double *z = malloc(sizeof *z * dim);
    ck_assert(mu && a && z);
    for (int i = 0; i < dim; i++)
        mu[i] = offset + uniform(&g);
    for (int i = 0; i < dim * dim; i++)
        a[i] = uniform(&g) - 0.5;
    for (int r = 0; r < n; r++) {
        for (int j = 0; j < dim; j++)
            z[j] = 2.0 * uniform(&g) - 1.0;
        for (int i = 0; i < dim; i++) {
            double x = mu[i];
            for (int j = 0; j < dim; j++)
                x += a[i * dim + j] * z[j];
            feats[(size_t)r * dim + i] = (float)x;
        }
        for (int y = 0; y < classes; y++)
            logits[(size_t)r * classes + y] = (float)(3.0 * (2.0 * uniform(&g) - 1.0));
    }
    free(mu), free(a), free(z);
}

/* Stats of the script's set, added in chunks of 7 rows (the sums do not depend on how the rows
 * arrive). */
static void set_stats(dp_feature_stats *s, uint64_t seed, int dim, int n, int classes,
                      double offset)
{
    float *feats = malloc(sizeof *feats * n * dim), *logits = malloc(sizeof *logits * n * classes);
    ck_assert(feats && logits);
    make_set(seed, dim, n, classes, offset, feats, logits);
    stats_init(s, dim, classes);
    for (int r = 0; r < n; r += 7) {
        int rows = n - r < 7 ? n - r : 7;
        dp_feature_stats_accumulate(s, feats + (size_t)r * dim, logits + (size_t)r * classes,
                                    rows);
    }
    free(feats), free(logits);
}

/* Stats with the given mean and covariance written straight into the sums: n, n mu, and
 * (n - 1) S + n mu mu^T. */
static void stats_from_moments(dp_feature_stats *s, int dim, double n, const double *mu,
                               const double *cov)
{
    stats_init(s, dim, 2);
    *s->n = n;
    for (int i = 0; i < dim; i++) {
        s->sum[i] = n * mu[i];
        for (int j = 0; j < dim; j++)
            s->outer[i * dim + j] = (n - 1.0) * cov[i * dim + j] + n * mu[i] * mu[j];
    }
    s->prob_sum[0] = s->prob_sum[1] = 0.5 * n; /* uniform */
    *s->plogp = n * log(0.5);
}

/* What tests/quality_reference.py printed: seeds of a and b, dim, their n, classes, b's
 * offset, the Frechet distance and a's score. */
static const struct {
    uint64_t seed_a, seed_b;
    int dim, n_a, n_b, classes;
    double offset, frechet, score;
} REFERENCE[] = {
    { 1, 2, 5, 40, 60, 7, 0.5, 1.5266221469252275, 1.9319046889146028 },
    { 3, 4, 64, 300, 500, 10, 0.25, 73.690184787349892, 2.0754880723588389 },
    { 5, 6, 32, 20, 25, 3, 1, 65.919810683418589, 1.5745378400626202 },
    { 7, 8, 128, 400, 600, 10, 0.10000000000000001, 279.35059546491686, 2.0777430287819345 },
};

START_TEST(test_quality_reference)
{
    for (size_t c = 0; c < sizeof REFERENCE / sizeof REFERENCE[0]; c++) {
        dp_feature_stats a, b;
        set_stats(&a, REFERENCE[c].seed_a, REFERENCE[c].dim, REFERENCE[c].n_a,
                  REFERENCE[c].classes, 0.0);
        set_stats(&b, REFERENCE[c].seed_b, REFERENCE[c].dim, REFERENCE[c].n_b,
                  REFERENCE[c].classes, REFERENCE[c].offset);
        int dim = REFERENCE[c].dim;
        double tol = REFERENCE[c].n_a > dim && REFERENCE[c].n_b > dim ? 1e-9 : 1e-7;
        double fd = dp_frechet_distance(&a, &b), back = dp_frechet_distance(&b, &a);
        ck_assert_msg(close_to(fd, REFERENCE[c].frechet, tol),
                      "case %zu: distance %.17g, numpy %.17g", c, fd, REFERENCE[c].frechet);
        ck_assert_msg(close_to(back, REFERENCE[c].frechet, tol),
                      "case %zu: b to a %.17g, numpy %.17g", c, back, REFERENCE[c].frechet);
        double is = dp_inception_style_score(&a);
        ck_assert_msg(close_to(is, REFERENCE[c].score, 1e-9), "case %zu: score %.17g, numpy %.17g",
                      c, is, REFERENCE[c].score);
        dp_feature_stats_free(&a);
        dp_feature_stats_free(&b);
    }
}
END_TEST

/* A set against itself: 0, to within rounding of the covariances' trace. */
START_TEST(test_quality_identical)
{
    dp_feature_stats a;
    set_stats(&a, 11, 48, 400, 4, 0.0);
    double trace = 0.0;
    for (int i = 0; i < 48; i++)
        trace += (a.outer[i * 48 + i] - a.sum[i] * a.sum[i] / *a.n) / (*a.n - 1.0);
    ck_assert(trace > 1.0);
    double fd = dp_frechet_distance(&a, &a);
    ck_assert_msg(fabs(fd) <= 1e-6 * trace, "identical sets: %.17g (trace %g)", fd, trace);
    /* the same set arriving as two halves, merged as processes' sums would be */
    dp_feature_stats h1, h2;
    float *feats = malloc(sizeof *feats * 400 * 48), *logits = malloc(sizeof *logits * 400 * 4);
    ck_assert(feats && logits);
    make_set(11, 48, 400, 4, 0.0, feats, logits);
    stats_init(&h1, 48, 4);
    stats_init(&h2, 48, 4);
    dp_feature_stats_accumulate(&h1, feats, logits, 150);
    dp_feature_stats_accumulate(&h2, feats + 150 * 48, logits + 150 * 4, 250);
    dp_err err;
    ck_assert(dp_feature_stats_merge(&h1, &h2, &err) == 0);
    ck_assert(*h1.n == 400.0);
    for (size_t i = 0; i < a.count; i++)
        ck_assert_msg(close_to(h1.all[i], a.all[i], 1e-12), "merged [%zu]: %g vs %g", i,
                      h1.all[i], a.all[i]);
    ck_assert(fabs(dp_frechet_distance(&h1, &a)) <= 1e-6 * trace);
    ck_assert(close_to(dp_inception_style_score(&h1), dp_inception_style_score(&a), 1e-12));
    dp_feature_stats_clear(&h1);
    ck_assert(*h1.n == 0.0 && h1.outer[5] == 0.0 && *h1.plogp == 0.0);
    free(feats), free(logits);
    dp_feature_stats_free(&a);
    dp_feature_stats_free(&h1);
    dp_feature_stats_free(&h2);
}
END_TEST

/* Diagonal covariances: the closed form sum (sqrt a_i - sqrt b_i)^2 + ||mu_a - mu_b||^2, a zero
 * variance among them. */
START_TEST(test_quality_diagonal)
{
    enum { DIM = 6 };
    double mu_a[DIM] = { 0.0, 1.0, -2.0, 0.5, 3.0, 0.25 };
    double mu_b[DIM] = { 0.5, 1.0, -1.0, 0.5, 2.0, 0.0 };
    double var_a[DIM] = { 1.0, 4.0, 0.25, 9.0, 2.0, 0.0 };
    double var_b[DIM] = { 4.0, 1.0, 0.25, 0.5, 3.0, 1.5 };
    double cov_a[DIM * DIM] = { 0 }, cov_b[DIM * DIM] = { 0 }, want = 0.0;
    for (int i = 0; i < DIM; i++) {
        cov_a[i * DIM + i] = var_a[i];
        cov_b[i * DIM + i] = var_b[i];
        double root = sqrt(var_a[i]) - sqrt(var_b[i]), mean = mu_a[i] - mu_b[i];
        want += root * root + mean * mean;
    }
    dp_feature_stats a, b;
    stats_from_moments(&a, DIM, 11.0, mu_a, cov_a);
    stats_from_moments(&b, DIM, 30.0, mu_b, cov_b);
    double fd = dp_frechet_distance(&a, &b);
    ck_assert_msg(close_to(fd, want, 1e-9), "diagonal: %.17g, closed form %.17g", fd, want);
    ck_assert(close_to(dp_frechet_distance(&b, &a), want, 1e-9));
    /* the same covariances and means in another basis, x -> H x with the reflection
     * H = I - 2 v v^T / v^T v (orthogonal): the distance is the same, now through full
     * matrices; one eigenvalue is 0, and its rounding (1e-16 of the largest) has a square
     * root: 1e-7 (seen: 4e-9) */
    double v[DIM] = { 1.0, -2.0, 0.5, 3.0, -1.0, 2.0 }, vv = 0.0, h[DIM * DIM];
    for (int i = 0; i < DIM; i++)
        vv += v[i] * v[i];
    for (int i = 0; i < DIM; i++)
        for (int j = 0; j < DIM; j++)
            h[i * DIM + j] = (i == j) - 2.0 * v[i] * v[j] / vv;
    double hc_a[DIM * DIM], hc_b[DIM * DIM], hm_a[DIM] = { 0 }, hm_b[DIM] = { 0 };
    for (int i = 0; i < DIM; i++) {
        for (int k = 0; k < DIM; k++)
            hm_a[i] += h[i * DIM + k] * mu_a[k], hm_b[i] += h[i * DIM + k] * mu_b[k];
        for (int j = 0; j < DIM; j++) { /* H diag(var) H^T */
            hc_a[i * DIM + j] = hc_b[i * DIM + j] = 0.0;
            for (int k = 0; k < DIM; k++) {
                hc_a[i * DIM + j] += h[i * DIM + k] * var_a[k] * h[j * DIM + k];
                hc_b[i * DIM + j] += h[i * DIM + k] * var_b[k] * h[j * DIM + k];
            }
        }
    }
    ck_assert(fabs(hc_a[1]) > 0.1); /* not diagonal */
    dp_feature_stats pa, pb;
    stats_from_moments(&pa, DIM, 11.0, hm_a, hc_a);
    stats_from_moments(&pb, DIM, 30.0, hm_b, hc_b);
    fd = dp_frechet_distance(&pa, &pb);
    ck_assert_msg(close_to(fd, want, 1e-7), "reflected: %.17g, closed form %.17g", fd, want);
    fd = dp_frechet_distance(&pb, &pa);
    ck_assert_msg(close_to(fd, want, 1e-7), "reflected, b to a: %.17g, closed form %.17g", fd,
                  want);
    ck_assert(close_to(dp_inception_style_score(&a), 1.0, 1e-12)); /* uniform: see moments */
    /* one feature: (mu_a - mu_b)^2 + (sd_a - sd_b)^2 */
    dp_feature_stats one_a, one_b;
    double m1 = 2.0, m2 = -1.0, v1 = 9.0, v2 = 4.0;
    stats_from_moments(&one_a, 1, 5.0, &m1, &v1);
    stats_from_moments(&one_b, 1, 7.0, &m2, &v2);
    ck_assert(close_to(dp_frechet_distance(&one_a, &one_b), 9.0 + 1.0, 1e-12));
    dp_feature_stats_free(&one_a);
    dp_feature_stats_free(&one_b);
    /* covariances beyond what the eigen-solver's sums of squares hold: NaN, not a wrong
     * number */
    for (int i = 0; i < DIM * DIM; i++)
        hc_a[i] *= 1e200;
    dp_feature_stats huge;
    stats_from_moments(&huge, DIM, 11.0, hm_a, hc_a);
    ck_assert(isfinite(huge.outer[1]));
    ck_assert(isnan(dp_frechet_distance(&huge, &pb)));
    dp_feature_stats_free(&huge);
    dp_feature_stats_free(&a);
    dp_feature_stats_free(&b);
    dp_feature_stats_free(&pa);
    dp_feature_stats_free(&pb);
}
END_TEST

/* The score: uniform probabilities 1; confident predictions spread evenly over k classes k;
 * all on one class 1. */
/* Rank-deficient covariances with vanishing columns (a set of 3 samples; features that are 0
 * in every sample, as a classifier's dead ReLUs): the distance is finite and the dead features
 * add nothing to it, so it equals the distance over the live ones alone. (The reduction once
 * scaled such a column by 1 / norm^2 and overflowed to NaN.) */
START_TEST(test_quality_dead_features)
{
    enum { DIM = 128, LIVE = 64, NA = 3, NB = 100 };
    dp_feature_stats a, b, a_live, b_live;
    dp_err err;
    ck_assert_int_eq(dp_feature_stats_init(&a, DIM, 2, &err), 0);
    ck_assert_int_eq(dp_feature_stats_init(&b, DIM, 2, &err), 0);
    ck_assert_int_eq(dp_feature_stats_init(&a_live, LIVE, 2, &err), 0);
    ck_assert_int_eq(dp_feature_stats_init(&b_live, LIVE, 2, &err), 0);
    static float f[NB * DIM], live[NB * LIVE], logits[NB * 2];
    uint64_t state = 12345;
    for (int set = 0; set < 2; set++) {
        int n = set ? NB : NA;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < DIM; j++) {
                state = state * 6364136223846793005ull + 1442695040888963407ull;
                float v = (float)(state >> 40) / 16777216.0f * (set ? 2.0f : 3.0f) + set * 0.5f;
                f[i * DIM + j] = j % 2 ? v : 0.0f; /* every other feature dead */
                if (j % 2)
                    live[i * LIVE + j / 2] = v;
            }
        dp_feature_stats_accumulate(set ? &b : &a, f, logits, n);
        dp_feature_stats_accumulate(set ? &b_live : &a_live, live, logits, n);
    }
    double all = dp_frechet_distance(&a, &b), only_live = dp_frechet_distance(&a_live, &b_live);
    ck_assert_msg(isfinite(all) && all > 0, "distance %g", all);
    ck_assert_msg(fabs(all - only_live) <= 1e-9 * only_live, "%.12g with dead features, %.12g "
                                                             "without",
                  all, only_live);
    ck_assert_msg(dp_frechet_distance(&a, &a) >= 0.0, "a set's distance to itself below 0");
    dp_feature_stats_free(&a), dp_feature_stats_free(&b);
    dp_feature_stats_free(&a_live), dp_feature_stats_free(&b_live);
}
END_TEST

START_TEST(test_quality_score)
{
    enum { CLASSES = 10, N = 120 };
    float feats[N * 2], logits[N * CLASSES];
    for (int r = 0; r < N; r++)
        feats[r * 2] = (float)r, feats[r * 2 + 1] = (float)(r % 3);
    dp_feature_stats s;
    stats_init(&s, 2, CLASSES);
    for (int i = 0; i < N * CLASSES; i++)
        logits[i] = 1.5f;
    dp_feature_stats_accumulate(&s, feats, logits, N);
    double is = dp_inception_style_score(&s);
    ck_assert_msg(close_to(is, 1.0, 1e-12), "uniform: %.17g", is);
    const int ks[] = { 1, 2, 3, 4, 5, 10 };
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        int k = ks[t];
        dp_feature_stats_clear(&s);
        for (int r = 0; r < N; r++) /* N is a multiple of each k */
            for (int y = 0; y < CLASSES; y++)
                logits[r * CLASSES + y] = y == (r * 7) % k ? 100.0f : 0.0f;
        dp_feature_stats_accumulate(&s, feats, logits, N);
        is = dp_inception_style_score(&s);
        ck_assert_msg(close_to(is, k, 1e-9), "one-hot over %d classes: %.17g", k, is);
    }
    /* two classes, p = (0.9, 0.1) for every sample: KL 0, score 1 */
    dp_feature_stats_clear(&s);
    for (int r = 0; r < N; r++)
        for (int y = 0; y < CLASSES; y++)
            logits[r * CLASSES + y] = y == 0 ? (float)log(9.0) : y == 1 ? 0.0f : -200.0f;
    dp_feature_stats_accumulate(&s, feats, logits, N);
    ck_assert(close_to(dp_inception_style_score(&s), 1.0, 1e-9));
    dp_feature_stats_free(&s);
}
END_TEST

/* n < 2, non-finite features or logits, mismatched sets: NaN, and no crash. */
START_TEST(test_quality_guards)
{
    dp_feature_stats a, b, c;
    stats_init(&a, 3, 2);
    stats_init(&b, 3, 2);
    stats_init(&c, 4, 2);
    float feats[4 * 3] = { 1, 2, 3, 0, 1, 0, 2, 2, 1, 5, 0, 1 }, logits[4 * 2] = { 0 };
    ck_assert(isnan(dp_frechet_distance(&a, &b))); /* n = 0 */
    ck_assert(isnan(dp_inception_style_score(&a)));
    dp_feature_stats_accumulate(&a, feats, logits, 1);
    dp_feature_stats_accumulate(&b, feats, logits, 4);
    ck_assert(isnan(dp_frechet_distance(&a, &b))); /* n = 1 */
    ck_assert(isnan(dp_frechet_distance(&b, &a)));
    ck_assert(isnan(dp_inception_style_score(&a)));
    ck_assert(isfinite(dp_frechet_distance(&b, &b)));
    ck_assert(close_to(dp_inception_style_score(&b), 1.0, 1e-12));
    dp_feature_stats_accumulate(&a, feats + 3, logits, 3); /* n = 4: now the same set as b */
    ck_assert(fabs(dp_frechet_distance(&a, &b)) < 1e-9);
    ck_assert(isnan(dp_frechet_distance(&a, &c))); /* 3 features against 4 */
    dp_err err;
    ck_assert(dp_feature_stats_merge(&a, &c, &err) < 0);
    ck_assert(strstr(err.msg, "4 features") != NULL);
    /* a NaN feature, an infinite one: the distance is NaN, the score is not affected */
    feats[4] = NAN;
    dp_feature_stats_accumulate(&a, feats, logits, 2);
    ck_assert(isnan(dp_frechet_distance(&a, &b)));
    ck_assert(isnan(dp_frechet_distance(&b, &a)));
    ck_assert(close_to(dp_inception_style_score(&a), 1.0, 1e-12));
    feats[4] = INFINITY;
    dp_feature_stats_clear(&a);
    dp_feature_stats_accumulate(&a, feats, logits, 4);
    ck_assert(isnan(dp_frechet_distance(&a, &b)));
    /* a NaN logit: the score is NaN */
    feats[4] = 1.0f;
    logits[3] = NAN;
    dp_feature_stats_clear(&a);
    dp_feature_stats_accumulate(&a, feats, logits, 4);
    ck_assert(isnan(dp_inception_style_score(&a)));
    ck_assert(fabs(dp_frechet_distance(&a, &b)) < 1e-9); /* the features are b's */
    dp_feature_stats_free(&a);
    dp_feature_stats_free(&b);
    dp_feature_stats_free(&c);
    ck_assert(dp_feature_stats_init(&a, 0, 2, &err) < 0);
}
END_TEST

/* The hand-set classifier: 2 inputs -> linear:3 -> (relu) -> linear:2. PyTorch's state_dict
 * order: 0.weight [3, 2], 0.bias [3], then the last linear's weight [2, 3] and bias [2]. */
static const float W1[6] = { 1.0f, -1.0f, 0.5f, 2.0f, -1.0f, -0.5f }, B1[3] = { 0.0f, -1.0f, 0.5f };
static const float W2[6] = { 1.0f, 0.0f, -1.0f, 0.5f, 1.0f, 2.0f }, B2[2] = { 0.25f, -0.25f };
static const float IMAGES[5 * 2] = { 1, 0, 0, 1, 0.5f, 0.5f, 0, 0, 2, 0.5f };

/* The classifier's features and logits of IMAGES, in double. */
static void reference_forward(bool relu, double feats[5][3], double logits[5][2])
{
    for (int r = 0; r < 5; r++) {
        for (int o = 0; o < 3; o++) {
            double h = B1[o] + W1[o * 2] * IMAGES[r * 2] + W1[o * 2 + 1] * IMAGES[r * 2 + 1];
            feats[r][o] = relu && h < 0.0 ? 0.0 : h;
        }
        for (int o = 0; o < 2; o++)
            logits[r][o] = B2[o] + W2[o * 3] * feats[r][0] + W2[o * 3 + 1] * feats[r][1] +
                           W2[o * 3 + 2] * feats[r][2];
    }
}

static void check_classifier(const char *spec, bool relu)
{
    dp_err err;
    dp_device dev;
    ck_assert_msg(dp_cpu_device_init(&dev, 0, 1, &err) == 0, "device: %s", err.msg);
    dp_model m;
    ck_assert_msg(dp_model_parse(&m, spec, 2, 2, &err) == 0, "parse: %s", err.msg);
    ck_assert(m.n_params == 17);
    float params[17];
    memcpy(params, W1, sizeof W1);
    memcpy(params + 6, B1, sizeof B1);
    memcpy(params + 9, W2, sizeof W2);
    memcpy(params + 15, B2, sizeof B2);
    size_t held = dev.mem_held;
    dp_quality *q = dp_quality_create(&m, params, &dev, 2, &err); /* batches of 2, 2, 1 */
    ck_assert_msg(q, "create: %s", err.msg);
    ck_assert_int_eq(dp_quality_features(q), 3);
    ck_assert_int_eq(dp_quality_classes(q), 2);
    dp_feature_stats s, wrong;
    stats_init(&s, 3, 2);
    stats_init(&wrong, 2, 2);
    ck_assert(dp_quality_add(q, IMAGES, 5, &wrong, &err) < 0);
    ck_assert(*wrong.n == 0.0);
    ck_assert_msg(dp_quality_add(q, IMAGES, 5, &s, &err) == 0, "add: %s", err.msg);

    double feats[5][3], logits[5][2], sum[3] = { 0 }, outer[9] = { 0 }, prob[2] = { 0 }, plogp = 0;
    reference_forward(relu, feats, logits);
    for (int r = 0; r < 5; r++) {
        for (int i = 0; i < 3; i++) {
            sum[i] += feats[r][i];
            for (int j = 0; j < 3; j++)
                outer[i * 3 + j] += feats[r][i] * feats[r][j];
        }
        double most = fmax(logits[r][0], logits[r][1]);
        double z = exp(logits[r][0] - most) + exp(logits[r][1] - most);
        for (int y = 0; y < 2; y++) {
            double p = exp(logits[r][y] - most) / z;
            prob[y] += p;
            plogp += p * log(p);
        }
    }
    ck_assert(*s.n == 5.0);
    for (int i = 0; i < 3; i++)
        ck_assert_msg(close_to(s.sum[i], sum[i], 1e-6), "%s: sum[%d] %g, want %g", spec, i,
                      s.sum[i], sum[i]);
    for (int i = 0; i < 9; i++)
        ck_assert_msg(close_to(s.outer[i], outer[i], 1e-6), "%s: outer[%d] %g, want %g", spec, i,
                      s.outer[i], outer[i]);
    for (int y = 0; y < 2; y++)
        ck_assert_msg(close_to(s.prob_sum[y], prob[y], 1e-6), "%s: prob_sum[%d] %g, want %g",
                      spec, y, s.prob_sum[y], prob[y]);
    ck_assert_msg(close_to(*s.plogp, plogp, 1e-6), "%s: plogp %g, want %g", spec, *s.plogp, plogp);
    if (relu) {
        /* by hand: features (1,0,0) (0,1,0) (0,0.25,0) (0,0,0.5) (1.5,1,0); logits
         * (1.25,0.25) (0.25,0.75) (0.25,0) (-0.25,0.75) (1.75,1.5) */
        ck_assert(close_to(s.sum[0], 2.5, 1e-7) && close_to(s.sum[1], 2.25, 1e-7) &&
                  close_to(s.sum[2], 0.5, 1e-7));
        ck_assert(close_to(s.outer[0], 3.25, 1e-7) && close_to(s.outer[4], 2.0625, 1e-7) &&
                  close_to(s.outer[8], 0.25, 1e-7));
        ck_assert(close_to(s.outer[1], 1.5, 1e-7) && close_to(s.outer[3], 1.5, 1e-7) &&
                  s.outer[2] == 0.0 && s.outer[5] == 0.0 && s.outer[7] == 0.0);
        /* p(class 1) = 1 / (1 + exp(l0 - l1)) */
        double d[5] = { 1.0, -0.5, 0.25, -1.0, 0.25 }, p1 = 0.0;
        for (int r = 0; r < 5; r++)
            p1 += 1.0 / (1.0 + exp(d[r]));
        ck_assert(close_to(s.prob_sum[1], p1, 1e-7) && close_to(s.prob_sum[0], 5.0 - p1, 1e-7));
    }
    /* a second add accumulates: twice the sums */
    ck_assert(dp_quality_add(q, IMAGES, 5, &s, &err) == 0);
    ck_assert(*s.n == 10.0 && close_to(s.sum[1], 2.0 * sum[1], 1e-6));
    ck_assert(dp_quality_add(q, IMAGES, 0, &s, &err) == 0 && *s.n == 10.0);
    dp_feature_stats_free(&s);
    dp_feature_stats_free(&wrong);
    dp_quality_destroy(q);
    ck_assert(dev.mem_held == held);
    dp_model_free(&m);
    dp_cpu_device_destroy(&dev);
}

START_TEST(test_quality_classifier)
{
    check_classifier("linear:3, relu, linear:2", true); /* the ReLU applied in place */
    check_classifier("linear:3, linear:2", false);
    dp_err err;
    dp_device dev;
    ck_assert(dp_cpu_device_init(&dev, 0, 1, &err) == 0);
    dp_model m;
    ck_assert(dp_model_parse(&m, "linear:3, relu, linear:2", 2, 2, &err) == 0);
    float params[17] = { 0 };
    ck_assert(dp_quality_create(&m, params, &dev, 0, &err) == NULL);
    ck_assert(strstr(err.msg, "at least 1") != NULL);
    dp_model_free(&m);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* A convolutional classifier with bn and dropout (evaluation mode: running statistics, no
 * dropout): its features are what the same list without its last layer outputs, and its
 * logits what the whole list outputs, each run as a stage of its own. */
START_TEST(test_quality_conv)
{
    const char *full = "conv:4:3:1:1, bn, relu, maxpool:2, flatten, linear:8, relu, dropout:50, "
                       "linear:3";
    const char *prefix = "conv:4:3:1:1, bn, relu, maxpool:2, flatten, linear:8, relu, dropout:50";
    dp_shape shape = { 3, { 1, 6, 6 } };
    enum { N = 7, ROWS = 3, IN = 36 };
    dp_err err;
    dp_device dev;
    ck_assert(dp_cpu_device_init(&dev, 0, 1, &err) == 0);
    dp_model m, head;
    ck_assert_msg(dp_model_parse_shape(&m, full, shape, 3, &err) == 0, "%s", err.msg);
    ck_assert_msg(dp_model_parse_shape(&head, prefix, shape, 8, &err) == 0, "%s", err.msg);
    float *params = malloc(sizeof *params * m.n_params), images[N * IN];
    ck_assert(params);
    dp_model_init_params(&m, params, 3);
    uint64_t g = 99;
    for (size_t i = 0; i < m.n_params; i++) /* bn's running statistics too: not 0 and 1 */
        params[i] += (float)(0.25 * uniform(&g));
    for (int i = 0; i < N * IN; i++)
        images[i] = (float)uniform(&g);
    dp_quality *q = dp_quality_create(&m, params, &dev, ROWS, &err);
    ck_assert_msg(q, "%s", err.msg);
    ck_assert_int_eq(dp_quality_features(q), 8);
    dp_feature_stats s, want;
    stats_init(&s, 8, 3);
    stats_init(&want, 8, 3);
    ck_assert(dp_quality_add(q, images, N, &s, &err) == 0);

    dp_optim_config oc = dp_optim_defaults();
    dp_stage head_stage, full_stage;
    ck_assert(dp_stage_create(&head_stage, &head, &dev, 0, head.n_layers, N, 1, &oc, &err) == 0);
    ck_assert(dp_stage_create(&full_stage, &m, &dev, 0, m.n_layers, N, 1, &oc, &err) == 0);
    dp_stage_upload_params(&head_stage, params); /* the same layers: the vector's first part */
    dp_stage_upload_params(&full_stage, params);
    float feats[N * 8], logits[N * 3];
    dev.be->upload(&dev, dp_stage_input(&head_stage, 0), images, sizeof images);
    dev.be->upload(&dev, dp_stage_input(&full_stage, 0), images, sizeof images);
    dp_stage_forward(&head_stage, 0, N, NULL);
    dp_stage_forward(&full_stage, 0, N, NULL);
    dev.be->download(&dev, feats, dp_stage_output(&head_stage, 0), sizeof feats);
    dev.be->download(&dev, logits, dp_stage_output(&full_stage, 0), sizeof logits);
    dp_feature_stats_accumulate(&want, feats, logits, N);
    double spread = 0.0;
    for (int i = 0; i < 8; i++)
        spread += want.outer[i * 8 + i];
    ck_assert(spread > 0.1); /* the features are not all 0 */
    for (size_t i = 0; i < s.count; i++)
        ck_assert_msg(close_to(s.all[i], want.all[i], 1e-5), "stats[%zu]: %.9g, want %.9g", i,
                      s.all[i], want.all[i]);
    dp_stage_destroy(&head_stage);
    dp_stage_destroy(&full_stage);
    dp_feature_stats_free(&s);
    dp_feature_stats_free(&want);
    dp_quality_destroy(q);
    free(params);
    dp_model_free(&m);
    dp_model_free(&head);
    dp_cpu_device_destroy(&dev);
}
END_TEST

Suite *quality_suite(void)
{
    Suite *s = suite_create("quality");
    TCase *tc = tcase_create("quality");
    tcase_add_test(tc, test_quality_reference);
    tcase_add_test(tc, test_quality_identical);
    tcase_add_test(tc, test_quality_diagonal);
    tcase_add_test(tc, test_quality_dead_features);
    tcase_add_test(tc, test_quality_score);
    tcase_add_test(tc, test_quality_guards);
    tcase_add_test(tc, test_quality_classifier);
    tcase_add_test(tc, test_quality_conv);
    suite_add_tcase(s, tc);
    return s;
}
