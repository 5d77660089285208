/* test_objective.c -- the objectives' table: lookup by name, the default a parsed model gets,
 * and the classify objective's loss, gradient, gradient scale and report on a CPU device
 * against softmax cross-entropy computed by hand in double (1e-6 relative). */
#include "tests/unit.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "engine/model.h"
#include "engine/objective.h"

#define TOL 1e-6

static int close_to(double got, double want)
{
    return fabs(got - want) <= TOL * (1.0 + fabs(want));
}

/* classify is found by name and is the default; unknown names are not; the names list
 * (the configuration's accepted words) follows the table. */
START_TEST(test_objective_lookup)
{
    ck_assert_ptr_eq(dp_objective_find("classify"), &dp_objective_classify);
    ck_assert_ptr_eq(dp_objective_default(), &dp_objective_classify);
    ck_assert_ptr_null(dp_objective_find("Classify"));
    ck_assert_ptr_null(dp_objective_find(""));
    ck_assert_ptr_null(dp_objective_find("bce"));
    int n = 0;
    for (; dp_objectives[n]; n++) {
        ck_assert_ptr_nonnull(dp_objective_names[n]);
        ck_assert_str_eq(dp_objective_names[n], dp_objectives[n]->name);
        ck_assert_ptr_eq(dp_objective_find(dp_objective_names[n]), dp_objectives[n]);
        ck_assert_int_ge(dp_objectives[n]->n_stats, 1);
        ck_assert_int_le(dp_objectives[n]->n_stats, DP_OBJECTIVE_STATS);
        ck_assert_ptr_nonnull(dp_objectives[n]->loss);
        ck_assert_ptr_nonnull(dp_objectives[n]->grad_scale);
        ck_assert_ptr_nonnull(dp_objectives[n]->report);
    }
    ck_assert_ptr_null(dp_objective_names[n]);
    ck_assert_int_ge(n, 1);
}
END_TEST

/* A parsed model is trained for the default objective. */
START_TEST(test_objective_model_default)
{
    dp_model m;
    dp_err err;
    ck_assert_msg(dp_model_parse(&m, "linear:8, relu, linear:3", 4, 3, &err) == 0, "%s",
                  err.msg);
    ck_assert_ptr_eq(m.objective, dp_objective_default());
    dp_model_free(&m);
}
END_TEST

/* Three rows of 3 classes by hand: [2,0,-1] label 0, [0.5,0.5,3] label 1, [1,2,3] label 2.
 * Loss sum and (softmax - onehot) x 1/3, through the table's grad_scale for a batch of 3
 * samples of 1 target; 2 correct (rows 0 and 2). */
START_TEST(test_objective_classify_loss)
{
    dp_device dev;
    dp_err err;
    ck_assert_msg(dp_cpu_device_init(&dev, 0, 1, &err) == 0, "device: %s", err.msg);
    const dp_objective *o = dp_objective_find("classify");
    const float out[3 * 3] = { 2, 0, -1, 0.5f, 0.5f, 3, 1, 2, 3 };
    const double xd[3 * 3] = { 2, 0, -1, 0.5, 0.5, 3, 1, 2, 3 };
    const int32_t labels[3] = { 0, 1, 2 };
    float dout[3 * 3], stats[DP_OBJECTIVE_STATS] = { 0 };
    float scale = o->grad_scale(&(dp_step_key){ 1, 1, 0 }, 3, 1);
    ck_assert_msg(scale == 1.0f / 3.0f, "grad_scale %.9g, want 1/3", scale);
    o->loss(&dev, out, labels, 3, 3, scale, dout, stats);

    double want_loss = 0.0;
    for (int r = 0; r < 3; r++) {
        const double *x = xd + 3 * r;
        double z = exp(x[0]) + exp(x[1]) + exp(x[2]);
        want_loss += log(z) - x[labels[r]];
        for (int c = 0; c < 3; c++) {
            double want = (exp(x[c]) / z - (c == labels[r])) / 3.0;
            ck_assert_msg(close_to(dout[3 * r + c], want), "dout[%d][%d] = %.9g, want %.9g", r,
                          c, dout[3 * r + c], want);
        }
    }
    ck_assert_msg(close_to(stats[0], want_loss), "loss sum %.9g, want %.9g", stats[0],
                  want_loss);
    ck_assert_msg(stats[1] == 2.0f, "correct %g, want 2", stats[1]);
    ck_assert_msg(stats[2] == 3.0f && stats[3] == 0.0f, "classify counted %g rows, want 3 (and no fourth sum)", stats[2]);

    /* Without a gradient buffer the sums still add up: twice the loss, 4 correct. */
    o->loss(&dev, out, labels, 3, 3, scale, NULL, stats);
    ck_assert_msg(close_to(stats[0], 2 * want_loss), "loss sum %.9g, want %.9g", stats[0],
                  2 * want_loss);
    ck_assert_msg(stats[1] == 4.0f, "correct %g, want 4", stats[1]);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* The mean over every target of the global batch: 1 / (rows x targets), as the worker used. */
START_TEST(test_objective_classify_grad_scale)
{
    const dp_objective *o = &dp_objective_classify;
    dp_step_key key = { 1, 1, 0 };
    ck_assert(o->grad_scale(&key, 256, 1) == 1.0f / 256.0f);
    ck_assert(o->grad_scale(&key, 64, 128) == 1.0f / ((float)64 * 128));
    ck_assert(o->grad_scale(&key, 3, 7) == 1.0f / ((float)3 * 7));
}
END_TEST

/* The report: mean loss and accuracy per target; text (bits per byte) for several targets a
 * sample; an empty split reports zeros. */
START_TEST(test_objective_classify_report)
{
    const dp_objective *o = &dp_objective_classify;
    dp_eval_report r = { 0 };
    const double sums[2] = { 12.0, 30.0 };
    o->report(sums, 40, 1, &r);
    ck_assert(r.loss == 12.0 / 40.0);
    ck_assert(r.accuracy == 30.0 / 40.0);
    ck_assert(!r.text);
    o->report(sums, 5, 8, &r);
    ck_assert(r.loss == 12.0 / 40.0);
    ck_assert(r.accuracy == 30.0 / 40.0);
    ck_assert(r.text);
    const double none[2] = { 0.0, 0.0 };
    o->report(none, 0, 1, &r);
    ck_assert(r.loss == 0.0 && r.accuracy == 0.0);
}
END_TEST

Suite *objective_suite(void)
{
    Suite *s = suite_create("objective");
    TCase *table = tcase_create("table");
    tcase_add_test(table, test_objective_lookup);
    tcase_add_test(table, test_objective_model_default);
    suite_add_tcase(s, table);
    TCase *classify = tcase_create("classify");
    tcase_add_test(classify, test_objective_classify_loss);
    tcase_add_test(classify, test_objective_classify_grad_scale);
    tcase_add_test(classify, test_objective_classify_report);
    suite_add_tcase(s, classify);
    return s;
}
