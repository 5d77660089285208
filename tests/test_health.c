/* test_health.c -- the health line's state and stall, without a terminal. */
#include "tests/unit.h"

#include "tui/health.h"

static dp_control_status training(void)
{
    return (dp_control_status){ .state = DP_STATE_TRAINING, .step = 10, .last_step_end = 100.0,
                                .typical_step_s = 0.1 };
}

/* The end and a pause asked for come first; a step made means training. */
START_TEST(test_health_state)
{
    dp_control_status s = training();
    ck_assert_int_eq(dp_health_state(&s), DP_STATE_TRAINING);
    s.paused = true;
    ck_assert_int_eq(dp_health_state(&s), DP_STATE_PAUSED);
    s.state = DP_STATE_EVALUATING; /* an evaluation under way finishes before the pause */
    ck_assert_int_eq(dp_health_state(&s), DP_STATE_EVALUATING);
    s.finished = true;
    ck_assert_int_eq(dp_health_state(&s), DP_STATE_FINISHED);
    dp_control_status t = { .state = DP_STATE_STARTING, .step = 3 };
    ck_assert_int_eq(dp_health_state(&t), DP_STATE_TRAINING);
    t.step = 0;
    ck_assert_int_eq(dp_health_state(&t), DP_STATE_STARTING);
}
END_TEST

/* Stalled past max(5 usual steps, 2 s) while training only. */
START_TEST(test_health_stalled)
{
    dp_control_status s = training();
    double for_s;
    ck_assert(!dp_health_stalled(&s, 101.9, &for_s)); /* 5 x 0.1 s < 2 s: the floor holds */
    ck_assert(dp_health_stalled(&s, 102.5, &for_s));
    ck_assert_double_eq_tol(for_s, 2.5, 1e-9);
    s.typical_step_s = 1.0; /* slow steps: 5 of them */
    ck_assert(!dp_health_stalled(&s, 104.5, &for_s));
    ck_assert(dp_health_stalled(&s, 105.5, &for_s));
    s.paused = true;
    ck_assert(!dp_health_stalled(&s, 200.0, &for_s));
    s.paused = false;
    s.state = DP_STATE_EVALUATING;
    ck_assert(!dp_health_stalled(&s, 200.0, &for_s));
    s.state = DP_STATE_TRAINING;
    s.last_step_end = 0; /* no step yet */
    ck_assert(!dp_health_stalled(&s, 200.0, &for_s));
}
END_TEST

Suite *health_suite(void)
{
    Suite *s = suite_create("health");
    TCase *tc = tcase_create("health");
    tcase_add_test(tc, test_health_state);
    tcase_add_test(tc, test_health_stalled);
    suite_add_tcase(s, tc);
    return s;
}
