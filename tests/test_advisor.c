/* test_advisor.c -- the plan advisor's enumeration and successive halving, with injected
 * timings (no clock). */
#include <check.h>
#include <string.h>

#include "engine/advisor.h"
#include "tests/unit.h"

static int enumerate(const char *layers, int in, int devices, int batch, bool bn_ok,
                     dp_advice *out)
{
    dp_model m;
    dp_err err;
    ck_assert_msg(dp_model_parse(&m, layers, in, 10, &err) == 0, "%s", err.msg);
    dp_advice_limits lim = { devices, batch, bn_ok };
    int n = dp_advice_enumerate(&m, &lim, out, DP_ADVICE_MAX, &err);
    dp_model_free(&m);
    return n;
}

static int count(const dp_advice *a, int n, dp_strategy s, int stages, int devices)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += a[i].req.strategy == s && (stages < 0 || a[i].req.stages == stages) &&
             (devices < 0 || a[i].devices == devices);
    return k;
}

/* An MLP of 3 layers with parameters on 4 devices: single, dp, pp of 2 and 3 stages on 2 and
 * 3 devices, hybrid 2 x 2; pipelines with S, 2S and 4S micro-batches under two schedules. */
START_TEST(test_advice_enumerate)
{
    dp_advice a[DP_ADVICE_MAX];
    int n = enumerate("linear:8, relu, linear:8, relu, linear:10", 4, 4, 64, false, a);
    ck_assert_int_eq(count(a, n, DP_STRATEGY_SINGLE, -1, 1), 1);
    ck_assert_int_eq(count(a, n, DP_STRATEGY_DP, -1, 4), 1);
    ck_assert_int_eq(count(a, n, DP_STRATEGY_PP, 2, 2), 6);
    ck_assert_int_eq(count(a, n, DP_STRATEGY_PP, 3, 3), 6);
    ck_assert_int_eq(count(a, n, DP_STRATEGY_PP, 4, -1), 0); /* 3 layers with parameters */
    ck_assert_int_eq(count(a, n, DP_STRATEGY_HYBRID, 2, 4), 6);
    ck_assert_int_eq(n, 1 + 1 + 6 + 6 + 6);
    for (int i = 0; i < n; i++) {
        ck_assert(!a[i].left_out);
        if (a[i].req.strategy == DP_STRATEGY_PP || a[i].req.strategy == DP_STRATEGY_HYBRID) {
            int s = a[i].req.stages, m = a[i].req.micro;
            ck_assert(m == s || m == 2 * s || m == 4 * s);
        }
    }
    /* a batch of 8 on hybrid 2 x 2: 2 replicas x micro 2 and 4 fit, 8 does not */
    n = enumerate("linear:8, relu, linear:8, relu, linear:10", 4, 4, 8, false, a);
    ck_assert_int_eq(count(a, n, DP_STRATEGY_HYBRID, 2, 4), 4);
    /* one device: single alone */
    n = enumerate("linear:8, relu, linear:10", 4, 1, 64, false, a);
    ck_assert_int_eq(n, 1);
}
END_TEST

/* Batch normalisation: pipelines with several micro-batches are listed but left out, unless
 * allowed. */
START_TEST(test_advice_bn)
{
    dp_advice a[DP_ADVICE_MAX];
    const char *layers = "linear:8, bn, relu, linear:8, relu, linear:10";
    int n = enumerate(layers, 4, 2, 64, false, a);
    int out = 0;
    for (int i = 0; i < n; i++)
        if (a[i].left_out) {
            out++;
            ck_assert_int_ge(a[i].req.micro, 2);
            ck_assert_msg(strstr(a[i].why, "batch normalisation"), "%s", a[i].why);
        }
    ck_assert_int_eq(out, count(a, n, DP_STRATEGY_PP, -1, -1));
    n = enumerate(layers, 4, 2, 64, true, a);
    for (int i = 0; i < n; i++)
        ck_assert(!a[i].left_out);
}
END_TEST

/* Injected step times: candidate i takes times[i] seconds a step; -1 fails. */
typedef struct timing {
    const dp_advice *base;
    const double *times;
    int calls, steps;
} timing;

static double fake_measure(void *arg, const dp_advice *a, int steps)
{
    timing *t = arg;
    t->calls++;
    t->steps += steps;
    return t->times[a - t->base];
}

/* Successive halving keeps the faster half, drops what is clearly slower at once, doubles the
 * steps a round, and picks the fastest; a failing candidate is left out. */
START_TEST(test_advice_search)
{
    dp_advice c[8];
    memset(c, 0, sizeof c);
    const double times[8] = { 0.30, 0.10, 0.50, 0.12, 0.11, -1.0, 0.35, 0.13 };
    timing t = { c, times, 0, 0 };
    int best = dp_advice_search(c, 8, 2, 5, 1.5, fake_measure, &t);
    ck_assert_int_eq(best, 1);
    ck_assert(c[5].left_out); /* it failed */
    /* round 1 (2 steps) measures 8; 7 remain: the faster half is 4 (0.10, 0.11, 0.12, 0.13),
     * all within 1.5x; round 2 (4 steps) keeps 2; round 3 (8 steps) keeps 1 */
    ck_assert_int_eq(t.calls, 8 + 4 + 2);
    ck_assert_int_eq(t.steps, 8 * 2 + 4 * 4 + 2 * 8);
    ck_assert(c[0].dropped && c[2].dropped && c[6].dropped);
    ck_assert(c[3].dropped && c[7].dropped && c[4].dropped && !c[1].dropped);
    ck_assert_int_eq(c[1].steps, 2 + 4 + 8);
    /* what is clearly slower goes in the first round, even inside the faster half */
    memset(c, 0, sizeof c);
    const double spread[4] = { 0.10, 0.40, 0.90, 1.00 };
    t = (timing){ c, spread, 0, 0 };
    best = dp_advice_search(c, 4, 2, 5, 1.5, fake_measure, &t);
    ck_assert_int_eq(best, 0);
    ck_assert_int_eq(t.calls, 4); /* 0.40 > 1.5 x 0.10: one left after the first round */
    /* left-out candidates are not measured; a single one is measured once for the table */
    memset(c, 0, sizeof c);
    c[0].left_out = c[2].left_out = c[3].left_out = true;
    t = (timing){ c, spread, 0, 0 };
    ck_assert_int_eq(dp_advice_search(c, 4, 2, 5, 1.5, fake_measure, &t), 1);
    ck_assert_int_eq(t.calls, 1);
    ck_assert(c[1].step_s == 0.40);
    /* none measurable */
    memset(c, 0, sizeof c);
    const double fail[2] = { -1.0, -1.0 };
    t = (timing){ c, fail, 0, 0 };
    ck_assert_int_eq(dp_advice_search(c, 2, 2, 5, 1.5, fake_measure, &t), -1);
}
END_TEST

Suite *advisor_suite(void)
{
    Suite *s = suite_create("advisor");
    TCase *tc = tcase_create("advisor");
    tcase_add_test(tc, test_advice_enumerate);
    tcase_add_test(tc, test_advice_bn);
    tcase_add_test(tc, test_advice_search);
    suite_add_tcase(s, tc);
    return s;
}
