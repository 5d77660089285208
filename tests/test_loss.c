/* test_loss.c -- the CPU backend's softmax cross-entropy (dp_backend_cpu.softmax_xent) against
 * values computed by hand in double: the loss sum, the gradient (softmax - onehot) * scale,
 * the correct count (first arg-max, as torch.argmax), stability with large logits, and the
 * accumulation of stats. Tolerance: 1e-6 relative on losses and gradients (float results). */
#include "tests/unit.h"

#include <math.h>
#include <stdint.h>

#include "engine/backend.h"

#define TOL 1e-6

static int close_to(double got, double want)
{
    return fabs(got - want) <= TOL * (1.0 + fabs(want));
}

static void device_init(dp_device *dev)
{
    dp_err err;
    ck_assert_msg(dp_cpu_device_init(dev, 0, 1, &err) == 0, "device: %s", err.msg);
}

/* Two rows by hand: [1,2,3] label 2 and [1,1,1] label 0; loss sum, dlogits with scale 0.25,
 * and 2 correct (row 1 is a tie, resolved to index 0). */
START_TEST(test_xent_hand)
{
    dp_device dev;
    device_init(&dev);
    const float logits[2 * 3] = { 1, 2, 3, 1, 1, 1 };
    const int32_t labels[2] = { 2, 0 };
    float dlogits[2 * 3], stats[3] = { 0, 0, 0 };
    dev.be->softmax_xent(&dev, logits, labels, 2, 3, 0.25f, dlogits, stats);

    double z = exp(1.0) + exp(2.0) + exp(3.0);
    double want_loss = (log(z) - 3.0) + log(3.0);
    ck_assert_msg(close_to(stats[0], want_loss), "loss sum %.9g, want %.9g", stats[0], want_loss);
    ck_assert_msg(stats[1] == 2.0f, "correct %g, want 2", stats[1]);
    const double want_d[2 * 3] = {
        0.25 * exp(1.0) / z, 0.25 * exp(2.0) / z, 0.25 * (exp(3.0) / z - 1.0),
        0.25 * (1.0 / 3.0 - 1.0), 0.25 / 3.0, 0.25 / 3.0,
    };
    for (int i = 0; i < 6; i++)
        ck_assert_msg(close_to(dlogits[i], want_d[i]), "dlogits[%d] = %.9g, want %.9g", i,
                      dlogits[i], want_d[i]);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* Ties go to the first index: [0,5,5] is correct for label 1, not for label 2; a wrong
 * arg-max ([3,1,2] with label 2) does not count. */
START_TEST(test_xent_argmax_ties)
{
    dp_device dev;
    device_init(&dev);
    const float logits[3 * 3] = { 0, 5, 5, 0, 5, 5, 3, 1, 2 };
    const int32_t labels[3] = { 1, 2, 2 };
    float stats[3] = { 0, 0, 0 };
    dev.be->softmax_xent(&dev, logits, labels, 1, 3, 1.0f, NULL, stats);
    ck_assert_msg(stats[1] == 1.0f, "[0,5,5] label 1: correct %g, want 1", stats[1]);
    stats[1] = 0;
    dev.be->softmax_xent(&dev, logits + 3, labels + 1, 1, 3, 1.0f, NULL, stats);
    ck_assert_msg(stats[1] == 0.0f, "[0,5,5] label 2: correct %g, want 0", stats[1]);
    stats[1] = 0;
    dev.be->softmax_xent(&dev, logits, labels, 3, 3, 1.0f, NULL, stats);
    ck_assert_msg(stats[1] == 1.0f, "three rows: correct %g, want 1", stats[1]);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* Logits 1000 and 1001 (and -1000, -1001) do not overflow: the loss is the stable
 * 1 + log(1 + e^-1) and the gradient is finite. */
START_TEST(test_xent_large_logits)
{
    dp_device dev;
    device_init(&dev);
    const float logits[2 * 2] = { 1000.0f, 1001.0f, -1000.0f, -1001.0f };
    const int32_t labels[2] = { 0, 1 };
    float dlogits[4], stats[3] = { 0, 0, 0 };
    double want = 1.0 + log(1.0 + exp(-1.0)); /* each row */
    dev.be->softmax_xent(&dev, logits, labels, 1, 2, 1.0f, dlogits, stats);
    ck_assert_msg(isfinite(stats[0]) && close_to(stats[0], want),
                  "[1000,1001]: loss %.9g, want %.9g", stats[0], want);
    double p1 = 1.0 / (1.0 + exp(-1.0)); /* softmax of the larger logit */
    ck_assert_msg(close_to(dlogits[0], (1.0 - p1) - 1.0) && close_to(dlogits[1], p1),
                  "[1000,1001]: dlogits %.9g %.9g, want %.9g %.9g", dlogits[0], dlogits[1],
                  (1.0 - p1) - 1.0, p1);
    stats[0] = stats[1] = 0;
    dev.be->softmax_xent(&dev, logits + 2, labels + 1, 1, 2, 1.0f, dlogits, stats);
    ck_assert_msg(isfinite(stats[0]) && close_to(stats[0], want),
                  "[-1000,-1001]: loss %.9g, want %.9g", stats[0], want);
    ck_assert_msg(close_to(dlogits[0], p1) && close_to(dlogits[1], (1.0 - p1) - 1.0),
                  "[-1000,-1001]: dlogits %.9g %.9g, want %.9g %.9g", dlogits[0], dlogits[1],
                  p1, (1.0 - p1) - 1.0);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* stats are added to (+=), not overwritten, over successive calls. */
START_TEST(test_xent_stats_accumulate)
{
    dp_device dev;
    device_init(&dev);
    const float logits[3] = { 1, 2, 3 };
    const int32_t label = 2;
    float stats[3] = { 1.5f, 4.0f, 0.0f };
    double one = log(exp(1.0) + exp(2.0) + exp(3.0)) - 3.0;
    dev.be->softmax_xent(&dev, logits, &label, 1, 3, 1.0f, NULL, stats);
    ck_assert_msg(close_to(stats[0], 1.5 + one) && stats[1] == 5.0f,
                  "after one call: stats %.9g %g, want %.9g 5", stats[0], stats[1], 1.5 + one);
    dev.be->softmax_xent(&dev, logits, &label, 1, 3, 1.0f, NULL, stats);
    ck_assert_msg(close_to(stats[0], 1.5 + 2 * one) && stats[1] == 6.0f,
                  "after two calls: stats %.9g %g, want %.9g 6", stats[0], stats[1],
                  1.5 + 2 * one);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* With dlogits NULL the stats are the same as with a gradient buffer. */
START_TEST(test_xent_null_dlogits)
{
    dp_device dev;
    device_init(&dev);
    const float logits[2 * 4] = { 0.5f, -1.0f, 2.0f, 0.0f, 3.0f, 0.1f, -0.2f, 1.0f };
    const int32_t labels[2] = { 2, 1 };
    float with[3] = { 0, 0, 0 }, without[3] = { 0, 0, 0 }, dlogits[8];
    dev.be->softmax_xent(&dev, logits, labels, 2, 4, 0.5f, dlogits, with);
    dev.be->softmax_xent(&dev, logits, labels, 2, 4, 0.5f, NULL, without);
    ck_assert_msg(with[0] == without[0] && with[1] == without[1],
                  "stats with dlogits %.9g %g, without %.9g %g", with[0], with[1], without[0],
                  without[1]);
    double l0 = log(exp(0.5) + exp(-1.0) + exp(2.0) + exp(0.0)) - 2.0;
    double l1 = log(exp(3.0) + exp(0.1) + exp(-0.2) + exp(1.0)) - 0.1;
    ck_assert_msg(close_to(without[0], l0 + l1) && without[1] == 1.0f,
                  "stats %.9g %g, want %.9g 1", without[0], without[1], l0 + l1);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* dp_expf, the exponential the softmax uses, against libm's exp in double: relative error
 * below 3e-7 over [-87, 88] (the range softmax feeds it: z - max(z) <= 0, down to underflow),
 * and clamped, finite values outside. */
START_TEST(test_expf_accuracy)
{
    double worst = 0.0, worst_x = 0.0;
    for (double x = -87.0; x <= 88.0; x += 1.0 / 1024) {
        float xf = (float)x;
        double want = exp((double)xf);
        double rel = fabs((double)dp_expf(xf) - want) / want;
        if (rel > worst) {
            worst = rel;
            worst_x = x;
        }
    }
    ck_assert_msg(worst < 3e-7, "dp_expf: relative error %.3g at x = %g", worst, worst_x);
    ck_assert_msg(dp_expf(0.0f) == 1.0f, "dp_expf(0) = %.9g", dp_expf(0.0f));
    ck_assert_msg(isfinite(dp_expf(1000.0f)) && dp_expf(1000.0f) > 1e38f,
                  "dp_expf(1000) = %g, expected the clamp at e^88", dp_expf(1000.0f));
    ck_assert_msg(dp_expf(-1000.0f) >= 0.0f && dp_expf(-1000.0f) < 1e-37f,
                  "dp_expf(-1000) = %g, expected about e^-87", dp_expf(-1000.0f));
}
END_TEST

Suite *loss_suite(void)
{
    Suite *s = suite_create("loss");
    TCase *tc = tcase_create("softmax_xent");
    tcase_add_test(tc, test_xent_hand);
    tcase_add_test(tc, test_xent_argmax_ties);
    tcase_add_test(tc, test_xent_large_logits);
    tcase_add_test(tc, test_xent_stats_accumulate);
    tcase_add_test(tc, test_xent_null_dlogits);
    tcase_add_test(tc, test_expf_accuracy);
    suite_add_tcase(s, tc);
    return s;
}
