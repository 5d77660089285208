/* test_advisor.c -- the plan advisor's enumeration and successive halving, with injected
 * timings (no clock). */
#include <check.h>
#include <string.h>

#include "engine/advisor.h"
#include "engine/backend.h"
#include "engine/devices.h"
#include "engine/trainer.h"
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
    ck_assert_int_eq(count(a, n, DP_STRATEGY_PP, 4, -1), 1); /* 3 layers with parameters: */
    ck_assert_int_eq(count(a, n, DP_STRATEGY_HYBRID, 2, 4), 6);
    ck_assert_int_eq(n, 1 + 1 + 6 + 6 + 1 + 6);
    for (int i = 0; i < n; i++) {
        if (a[i].req.stages == 4) { /* listed once, left out, saying why */
            ck_assert(a[i].left_out);
            ck_assert_str_eq(a[i].why, "the model has 3 layers with parameters: at most 3 "
                                       "stages");
            ck_assert_str_eq(a[i].plan, "PP 4 stages");
            continue;
        }
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
    int out = 0, one = 0;
    for (int i = 0; i < n; i++) {
        bool pipeline = a[i].req.strategy == DP_STRATEGY_PP;
        ck_assert(a[i].left_out == (pipeline && a[i].req.micro > 1));
        if (a[i].left_out) {
            out++;
            ck_assert_msg(strstr(a[i].why, "batch normalisation"), "%s", a[i].why);
        }
        one += pipeline && a[i].req.micro == 1;
    }
    ck_assert_int_eq(out, 6);
    ck_assert_int_eq(one, 1); /* the pipeline of one micro-batch keeps the whole batch */
    n = enumerate(layers, 4, 2, 64, true, a);
    for (int i = 0; i < n; i++)
        ck_assert(!a[i].left_out);
    ck_assert_int_eq(count(a, n, DP_STRATEGY_PP, -1, -1), 6); /* S, 2S, 4S: no 1 then */
}
END_TEST

/* Injected step times: candidate i takes times[i] seconds a step; 0 fails; -1 stops the search. */
typedef struct timing {
    const dp_advice *base;
    const double *times;
    int calls, steps;
} timing;

static double fake_measure(void *arg, dp_advice *a, int steps)
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
    const double times[8] = { 0.30, 0.10, 0.50, 0.12, 0.11, 0.0, 0.35, 0.13 };
    timing t = { c, times, 0, 0 };
    int best = dp_advice_search(c, 8, 2, 5, 1.5, fake_measure, &t);
    ck_assert_int_eq(best, 1);
    ck_assert(c[5].left_out); /* it failed */
    ck_assert_str_eq(c[5].why, "it failed when measured");
    ck_assert(c[1].chosen && !c[4].chosen);
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
    const double fail[2] = { 0.0, 0.0 };
    t = (timing){ c, fail, 0, 0 };
    ck_assert_int_eq(dp_advice_search(c, 2, 2, 5, 1.5, fake_measure, &t), -1);
    /* the run ends during the search: it stops at once, choosing nothing */
    memset(c, 0, sizeof c);
    const double ends[3] = { 0.2, -1.0, 0.1 };
    t = (timing){ c, ends, 0, 0 };
    ck_assert_int_eq(dp_advice_search(c, 3, 2, 5, 1.5, fake_measure, &t), -2);
    ck_assert_int_eq(t.calls, 2);
    ck_assert(!c[0].chosen && !c[2].chosen);
}
END_TEST

/* Plans that do not fit a device's room are left out naming the device, the need and the
 * room; the most a plan needs is found. */
START_TEST(test_advice_fit)
{
    dp_advice c[3];
    memset(c, 0, sizeof c);
    const char names[2][32] = { "cpu:0", "cpu:1" };
    size_t room[2] = { 512u << 20, 512u << 20 };
    c[0].need[0] = 600u << 20;                        /* single: too big */
    c[1].need[0] = 300u << 20, c[1].need[1] = 300u << 20; /* dp: fits */
    c[2].need[0] = 200u << 20, c[2].need[1] = (513u << 20); /* pp: device 1 too small */
    ck_assert_int_eq(dp_advice_fit(c, 3, room, names, 2), 1);
    ck_assert(c[0].left_out && !c[1].left_out && c[2].left_out);
    ck_assert_str_eq(c[0].why, "needs 600.0 MiB on cpu:0, which has 512.0 MiB");
    ck_assert_str_eq(c[2].why, "needs 513.0 MiB on cpu:1, which has 512.0 MiB");
    int dev;
    ck_assert_uint_eq(dp_advice_most_need(&c[2], 2, &dev), 513u << 20);
    ck_assert_int_eq(dev, 1);
    char b[32];
    dp_advice_bytes(b, sizeof b, 640);
    ck_assert_str_eq(b, "640 B");
    dp_advice_bytes(b, sizeof b, (size_t)3 << 30 | (size_t)100 << 20);
    ck_assert_str_eq(b, "3.1 GiB");
}
END_TEST

/* The estimate by hand: a stage's cost scaled to its micro-batch, times M + S - 1, slowed by
 * fewer threads and by more threads than cores. */
START_TEST(test_advice_estimate)
{
    dp_model m;
    dp_err err;
    ck_assert(dp_model_parse(&m, "linear:8, relu, linear:8, relu, linear:10", 4, 10, &err) == 0);
    const double cost[5] = { 1.0, 0.0, 3.0, 0.0, 2.0 }; /* seconds for 64 rows, 2 threads */
    dp_advice_costs k = { cost, 64, 2, 2, 2, 1 };
    dp_plan p;
    dp_plan_request single = { DP_STRATEGY_SINGLE, 0, 1, DP_SCHEDULE_1F1B };
    ck_assert(dp_plan_make(&p, &single, 2, &m, 64, cost, &err) == 0);
    ck_assert_double_eq_tol(dp_advice_estimate(&p, &k, 64), 6.0, 1e-12);
    dp_plan_request dp = { DP_STRATEGY_DP, 1, 1, DP_SCHEDULE_1F1B };
    ck_assert(dp_plan_make(&p, &dp, 2, &m, 64, cost, &err) == 0);
    /* half the rows each, at half the threads */
    ck_assert_double_eq_tol(dp_advice_estimate(&p, &k, 64), 6.0, 1e-12);
    dp_plan_request pp = { DP_STRATEGY_PP, 2, 4, DP_SCHEDULE_1F1B };
    ck_assert(dp_plan_make(&p, &pp, 2, &m, 64, cost, &err) == 0);
    /* the cut after layer 2 or 1: the slowest stage holds 4 or 5 s of the 64 rows; 16 rows a
     * micro-batch; (4 + 2 - 1) micro-batch times at half the threads */
    ck_assert(p.first_layer[1] == 3 || p.first_layer[1] == 2);
    double slowest = p.first_layer[1] == 3 ? 4.0 : 5.0;
    ck_assert_double_eq_tol(dp_advice_estimate(&p, &k, 64),
                            slowest * 16 / 64 * 2 * 5, 1e-12);
    /* 4 workers of 1 thread on 2 cores: twice as slow again */
    dp_plan_request dp4 = { DP_STRATEGY_DP, 1, 1, DP_SCHEDULE_1F1B };
    ck_assert(dp_plan_make(&p, &dp4, 4, &m, 64, cost, &err) == 0);
    ck_assert_double_eq_tol(dp_advice_estimate(&p, &k, 64), 6.0 * 16 / 64 * 2 * 2,
                            1e-12);
    /* GPUs (no shared cores): no slowdown for threads */
    k.cores = 0;
    ck_assert_double_eq_tol(dp_advice_estimate(&p, &k, 64), 6.0 * 16 / 64, 1e-12);
    dp_model_free(&m);
}
END_TEST

/* The shortlist keeps the lowest estimates within the factor, at most `most`; the table puts
 * the chosen plan first, the measured by speed, then those left out, ties in order. */
START_TEST(test_advice_shortlist_sort)
{
    dp_advice c[6];
    memset(c, 0, sizeof c);
    const double est[6] = { 1.0, 5.0, 1.5, 1.9, 1.2, 0 };
    for (int i = 0; i < 6; i++)
        c[i].estimate_s = est[i], c[i].req.micro = i;
    ck_assert_int_eq(dp_advice_shortlist(c, 6, 3, 2.0), 3);
    ck_assert(!c[0].left_out && !c[4].left_out && !c[2].left_out);
    ck_assert_str_eq(c[3].why, "not measured: the 3 plans with lower estimates were "
                               "([parallel] auto_plans)");
    ck_assert_str_eq(c[1].why, "not measured: its step estimated 5.0x the lowest estimate "
                               "(more than 2.0x)");
    ck_assert(c[5].left_out); /* no estimate, and the shortlist is full */
    c[2].steps = 6, c[2].step_s = 0.3, c[2].chosen = true;
    c[0].steps = 2, c[0].step_s = 0.2, c[0].dropped = true;
    c[4].steps = 6, c[4].step_s = 0.4, c[4].dropped = true;
    dp_advice_sort(c, 6);
    const int order[6] = { 2, 4, 0, 1, 3, 5 };
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(c[i].req.micro, order[i]);
}
END_TEST

/* For every plan of an MLP and a CNN (batch normalisation allowed over micro-batches) on 4 CPU
 * devices, the prediction of dp_trainer_plan_bytes is, byte for byte, the most each device
 * held while the plan trained a step; with AdamW (two state vectors a parameter). */
static void check_predictions(const char *layers, dp_shape in, int batch)
{
    dp_err err;
    dp_data_config dc = dp_data_defaults();
    dc.kind = DP_DATA_SYNTHETIC;
    dc.features = (int)dp_shape_count(in);
    dc.classes = 5;
    dc.samples = 4 * batch;
    dc.test_samples = 8;
    dp_dataset train, test;
    ck_assert_msg(dp_data_load(&dc, 3, &train, &test, &err) == 0, "data: %s", err.msg);
    dp_model m;
    ck_assert_msg(dp_model_parse_shape(&m, layers, in, 5, &err) == 0, "%s", err.msg);
    dp_device_set *set = dp_device_set_create(4, NULL, false, &err);
    ck_assert_msg(set != NULL, "%s", err.msg);
    dp_optim_config oc = dp_optim_defaults();
    oc.kind = DP_OPTIM_ADAMW;
    dp_trainer_config tc = {
        .model = &m, .optim = oc, .batch = batch, .seed = 5, .total_steps = 100,
        .on_nan = DP_NAN_STOP, .devices = set, .bucket_mb = 25, .balance_by_time = true,
        .plan = { .strategy = DP_STRATEGY_SINGLE, .micro = 1 },
    };
    bool refused;
    dp_trainer *t = dp_trainer_create(&tc, &train, &test, NULL, &refused, &err);
    ck_assert_msg(t != NULL, "dp_trainer_create: %s", err.msg);
    dp_advice c[DP_ADVICE_MAX];
    dp_advice_limits lim = { 4, batch, true };
    int n = dp_advice_enumerate(&m, &lim, c, DP_ADVICE_MAX, &err);
    ck_assert_int_gt(n, 10);
    for (int i = 0; i < n; i++) {
        dp_plan p;
        size_t need[4];
        if (c[i].left_out) /* deeper than the model */
            continue;
        ck_assert_msg(dp_trainer_plan_bytes(t, &c[i].req, &p, need, &err) == 0, "%s", err.msg);
        ck_assert_msg(dp_trainer_request_switch(t, &c[i].req, &err) == 0, "%s", err.msg);
        dp_step_report r;
        ck_assert_msg(dp_trainer_step(t, &r, &err) == 0, "step: %s", err.msg);
        char plan[64];
        dp_trainer_describe(t, plan, sizeof plan);
        for (int d = 0; d < 4; d++) {
            size_t peak = dp_trainer_device(t, d)->mem_plan_peak;
            ck_assert_msg(peak == need[d], "%s: %s under %s: %zu bytes held at most, %zu "
                          "predicted", layers, dp_trainer_device(t, d)->name, plan, peak,
                          need[d]);
            ck_assert(d < p.workers ? need[d] > 0 : need[d] == 0);
        }
    }
    dp_trainer_destroy(t);
    dp_device_set_destroy(set);
    dp_model_free(&m);
    dp_dataset_free(&train);
    dp_dataset_free(&test);
}

START_TEST(test_advice_memory_prediction)
{
    check_predictions("linear:32, relu, linear:16, tanh, linear:5", (dp_shape){ 1, { 12 } }, 24);
    check_predictions("conv:4:3:1:1, bn, relu, maxpool:2, flatten, linear:16, relu, linear:5",
                      (dp_shape){ 3, { 1, 6, 6 } }, 32);
}
END_TEST

/* A device memory limit: an allocation past it fails, naming the limit; what fits goes on. */
START_TEST(test_device_memory_limit)
{
    dp_err err;
    dp_device_set *set = dp_device_set_create(1, NULL, false, &err);
    ck_assert_msg(set != NULL, "%s", err.msg);
    dp_device *d = dp_device_set_devices(set);
    dp_device_limit_memory(d, 1 << 20);
    ck_assert_uint_eq(d->mem_total, 1 << 20);
    void *a = dp_device_alloc(d, 600 << 10, "a", &err);
    ck_assert(a != NULL);
    ck_assert(dp_device_alloc(d, 600 << 10, "the second", &err) == NULL);
    ck_assert_msg(strstr(err.msg, "device memory limit") && strstr(err.msg, "the second") &&
                  strstr(err.msg, "device_memory"), "%s", err.msg);
    ck_assert(dp_device_alloc(d, (size_t)-1, "huge", &err) == NULL); /* no overflow */
    void *b = dp_device_alloc(d, 400 << 10, "b", &err);
    ck_assert(b != NULL);
    ck_assert_uint_eq(d->mem_plan_peak, 1000 << 10);
    dp_device_free(d, a, 600 << 10);
    dp_device_free(d, b, 400 << 10);
    ck_assert_uint_eq(d->mem_held, 0);
    dp_device_set_destroy(set);
}
END_TEST

Suite *advisor_suite(void)
{
    Suite *s = suite_create("advisor");
    TCase *tc = tcase_create("advisor");
    tcase_add_test(tc, test_advice_enumerate);
    tcase_add_test(tc, test_advice_bn);
    tcase_add_test(tc, test_advice_search);
    tcase_add_test(tc, test_advice_fit);
    tcase_add_test(tc, test_advice_estimate);
    tcase_add_test(tc, test_advice_shortlist_sort);
    tcase_add_test(tc, test_advice_memory_prediction);
    tcase_add_test(tc, test_device_memory_limit);
    suite_add_tcase(s, tc);
    return s;
}
