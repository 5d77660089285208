/* test_timeline.c -- the timeline's columns, its bubble and series resampling, without a
 * terminal. */
#include "tests/unit.h"

#include <math.h>
#include <string.h>

#include "tui/timeline.h"

static void add_op(dp_timeline *t, char kind, int micro, float start, float end)
{
    t->ops[t->n_ops++] = (dp_timeline_op){ .kind = kind, .micro = micro, .start = start,
                                           .end = end };
}

static void merged(const dp_timeline *t, float span, int cols, char *out)
{
    dp_timeline_merge(t, span, cols, out);
    out[cols] = '\0';
}

/* Operations as wide as columns: each shows, micro-batches alternate case, gaps are idle. */
START_TEST(test_merge_wide_ops)
{
    dp_timeline t = { 0 };
    add_op(&t, 'F', 0, 0.0f, 2.0f);
    add_op(&t, 'F', 1, 2.0f, 4.0f);
    add_op(&t, 'B', 1, 6.0f, 8.0f);
    add_op(&t, 'B', 0, 8.0f, 10.0f);
    char out[16];
    merged(&t, 10.0f, 10, out);
    ck_assert_str_eq(out, "FFff..bbBB");
}
END_TEST

/* Many short operations in one column: the majority kind wins, a column shared evenly between
 * forward and backward is '*', and micro-batch 0 is not lost to the one drawn after it. */
START_TEST(test_merge_short_ops)
{
    dp_timeline t = { 0 };
    for (int m = 0; m < 64; m++) /* 64 forwards in the first half, 64 backwards in the second */
        add_op(&t, 'F', m, (float)m / 64, (float)(m + 1) / 64);
    for (int m = 0; m < 64; m++)
        add_op(&t, 'B', m, 1 + (float)m / 64, 1 + (float)(m + 1) / 64);
    char out[16];
    merged(&t, 2.0f, 4, out);
    ck_assert(out[0] == 'F' || out[0] == 'f');
    ck_assert(out[1] == 'F' || out[1] == 'f');
    ck_assert(out[2] == 'B' || out[2] == 'b');
    ck_assert(out[3] == 'B' || out[3] == 'b');
    merged(&t, 2.0f, 1, out); /* one column: half forward, half backward */
    ck_assert_int_eq(out[0], DP_TIMELINE_SEVERAL);

    dp_timeline u = { 0 }; /* micro-batch 0's forward fills 60 % of the column, 1's 40 % */
    add_op(&u, 'F', 0, 0.0f, 0.6f);
    add_op(&u, 'F', 1, 0.6f, 1.0f);
    merged(&u, 1.0f, 1, out);
    ck_assert_int_eq(out[0], 'F');
}
END_TEST

/* A column busy less than half its time is brief (':'), one with nothing is idle ('.'); more
 * than half, busy. */
START_TEST(test_merge_idle)
{
    dp_timeline t = { 0 };
    add_op(&t, 'F', 0, 0.0f, 0.4f);
    add_op(&t, 'B', 0, 1.0f, 1.7f);
    char out[8];
    merged(&t, 2.0f, 2, out);
    ck_assert_str_eq(out, ":B");
    merged(&t, 3.0f, 3, out); /* the third second ran nothing */
    ck_assert_str_eq(out, ":B.");
    merged(&t, 0.0f, 3, out); /* no step yet */
    ck_assert_str_eq(out, "...");
}
END_TEST

START_TEST(test_bubble)
{
    dp_timeline t = { 0 };
    add_op(&t, 'F', 0, 0.0f, 1.0f);
    add_op(&t, 'B', 0, 3.0f, 4.0f);
    ck_assert_double_eq_tol(dp_timeline_bubble(&t, 4.0f), 0.5, 1e-6);
    ck_assert_double_eq_tol(dp_timeline_ideal_bubble(4, 8), 3.0 / 11.0, 1e-12);
    ck_assert_double_eq_tol(dp_timeline_ideal_bubble(1, 8), 0.0, 1e-12);
    ck_assert_double_eq_tol(dp_timeline_ideal_bubble(12, 1), 11.0 / 12.0, 1e-12);
}
END_TEST

/* Resampling: means per column, NAN where a column has no finite value, and a short series
 * spread over the columns. */
START_TEST(test_resample)
{
    float v[8] = { 0, 1, 2, 3, NAN, NAN, 6, 8 };
    float out[4];
    dp_resample(v, 8, 4, out);
    ck_assert_float_eq_tol(out[0], 0.5f, 1e-6f);
    ck_assert_float_eq_tol(out[1], 2.5f, 1e-6f);
    ck_assert(isnan(out[2]));
    ck_assert_float_eq_tol(out[3], 7.0f, 1e-6f);
    float w[2] = { 1, 3 }, wide[4];
    dp_resample(w, 2, 4, wide);
    ck_assert_float_eq_tol(wide[0], 1.0f, 1e-6f);
    ck_assert_float_eq_tol(wide[1], 1.0f, 1e-6f);
    ck_assert_float_eq_tol(wide[3], 3.0f, 1e-6f);
}
END_TEST

/* A utilisation series over a wall-clock span: columns before the device's first step are
 * empty, a bin wider than a column fills every column it covers, a bin with no step stays
 * empty, and the bin being filled counts. */
START_TEST(test_util_resample)
{
    dp_util_series u = { .t0 = 100.0, .bin_s = 1.0, .n_points = 3,
                         .points = { 1.0f, 0.0f, NAN }, .pending_busy = 0.25,
                         .pending_wall = 0.5 };
    float v[8];
    dp_util_resample(&u, 100.0, 104.0, 4, v);
    ck_assert(fabsf(v[0] - 1.0f) < 1e-6f && fabsf(v[1]) < 1e-6f && isnan(v[2]));
    ck_assert(fabsf(v[3] - 0.5f) < 1e-6f); /* the pending bin: 0.25 busy of 0.5 s */
    dp_util_resample(&u, 98.0, 102.0, 8, v); /* two seconds before the first step */
    for (int c = 0; c < 4; c++)
        ck_assert(isnan(v[c]));
    ck_assert(fabsf(v[4] - 1.0f) < 1e-6f && fabsf(v[5] - 1.0f) < 1e-6f);
    ck_assert(fabsf(v[6]) < 1e-6f && fabsf(v[7]) < 1e-6f);
    dp_util_resample(&u, 100.0, 102.0, 1, v); /* one column over two bins: their mean */
    ck_assert(fabsf(v[0] - 0.5f) < 1e-6f);
}
END_TEST

Suite *timeline_suite(void)
{
    Suite *s = suite_create("timeline");
    TCase *tc = tcase_create("timeline");
    tcase_add_test(tc, test_merge_wide_ops);
    tcase_add_test(tc, test_merge_short_ops);
    tcase_add_test(tc, test_merge_idle);
    tcase_add_test(tc, test_bubble);
    tcase_add_test(tc, test_resample);
    tcase_add_test(tc, test_util_resample);
    suite_add_tcase(s, tc);
    return s;
}
