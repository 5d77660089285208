/* test_control.c -- the run's control: requests add up, none is lost between take and apply. */
#include "tests/unit.h"

#include <pthread.h>
#include <sched.h>

#include "engine/control.h"

/* What the dashboard does on `+`: one micro-batch more than the newest plan. */
static void press_plus(dp_control *c)
{
    dp_plan_request req = dp_control_switch_base(c);
    req.micro++;
    dp_control_request_switch(c, &req);
}

/* A control whose loop trains a pipeline of 4 micro-batches. */
static dp_control *pipeline_of_4(void)
{
    dp_control *c = dp_control_create(100, 1);
    ck_assert_ptr_nonnull(c);
    dp_plan_request in_use = { .strategy = DP_STRATEGY_PP, .stages = 2, .micro = 4 };
    dp_control_switch_applied(c, &in_use, "PP 2 stages, 4 micro, GPipe");
    return c;
}

START_TEST(two_presses_before_the_loop_takes)
{
    dp_control *c = pipeline_of_4();
    press_plus(c);
    press_plus(c);
    dp_plan_request req;
    ck_assert(dp_control_take_switch(c, &req));
    ck_assert_int_eq(req.micro, 6);
    ck_assert(!dp_control_take_switch(c, &req)); /* taken once */
    dp_control_switch_applied(c, &req, "PP 2 stages, 6 micro, GPipe");
    ck_assert_int_eq(dp_control_switch_base(c).micro, 6);
    dp_control_status st;
    dp_control_snapshot(c, &st);
    ck_assert_int_eq(st.request.micro, 6);
    ck_assert_str_eq(st.plan, "PP 2 stages, 6 micro, GPipe");
    ck_assert(st.pipeline);
    dp_control_destroy(c);
}
END_TEST

/* The race the dashboard had: a key pressed after the loop took a request but before the
 * plan in use reflects it was computed from the old plan, and lost the first change. */
START_TEST(a_press_between_take_and_apply_is_kept)
{
    dp_control *c = pipeline_of_4();
    press_plus(c);
    dp_plan_request taken;
    ck_assert(dp_control_take_switch(c, &taken));
    ck_assert_int_eq(taken.micro, 5);
    press_plus(c); /* while the loop switches to 5 */
    dp_control_switch_applied(c, &taken, "PP 2 stages, 5 micro, GPipe");
    ck_assert_int_eq(dp_control_switch_base(c).micro, 6); /* the newer request stays */
    dp_plan_request next;
    ck_assert(dp_control_take_switch(c, &next));
    ck_assert_int_eq(next.micro, 6);
    dp_control_switch_applied(c, &next, "PP 2 stages, 6 micro, GPipe");
    ck_assert(!dp_control_take_switch(c, &next));
    ck_assert_int_eq(dp_control_switch_base(c).micro, 6);
    dp_control_destroy(c);
}
END_TEST

/* A plan applied without a request (--switch-at) leaves a request not yet taken pending. */
START_TEST(an_untaken_request_survives_another_switch)
{
    dp_control *c = pipeline_of_4();
    press_plus(c);
    dp_plan_request other = { .strategy = DP_STRATEGY_HYBRID, .stages = 2, .micro = 2 };
    dp_control_switch_applied(c, &other, "DP2 x PP2, 2 micro, GPipe");
    dp_plan_request req;
    ck_assert(dp_control_take_switch(c, &req));
    ck_assert_int_eq(req.micro, 5);
    dp_control_destroy(c);
}
END_TEST

enum { PRESSES = 200 };

static void *presser(void *arg)
{
    for (int i = 0; i < PRESSES; i++) {
        press_plus(arg);
        if (i % 3 == 0)
            sched_yield();
    }
    return NULL;
}

/* The dashboard's thread presses `+` while the loop's takes and applies: every press counts. */
START_TEST(presses_from_another_thread_add_up)
{
    dp_control *c = pipeline_of_4();
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, presser, c), 0);
    dp_plan_request in_use = dp_control_switch_base(c), req;
    for (int rounds = 0; rounds < 100000 && in_use.micro < 4 + PRESSES; rounds++) {
        if (dp_control_take_switch(c, &req)) {
            sched_yield(); /* the step that makes the switch */
            in_use = req;
        }
        dp_control_switch_applied(c, &in_use, "PP");
    }
    pthread_join(thread, NULL);
    while (dp_control_take_switch(c, &req)) {
        in_use = req;
        dp_control_switch_applied(c, &in_use, "PP");
    }
    ck_assert_int_eq(in_use.micro, 4 + PRESSES);
    dp_control_destroy(c);
}
END_TEST

START_TEST(pause_quit_and_checkpoint)
{
    dp_control *c = dp_control_create(10, 2);
    atomic_int stop = 0;
    ck_assert(dp_control_toggle_pause(c));
    ck_assert(dp_control_paused(c));
    dp_control_wait_while_paused(c, &stop, 0.01); /* returns after the time */
    ck_assert(!dp_control_toggle_pause(c));
    ck_assert(!dp_control_request_checkpoint(c)); /* no checkpoint directory */
    ck_assert(!dp_control_take_checkpoint(c));
    dp_control_set_can_checkpoint(c, true);
    ck_assert(dp_control_request_checkpoint(c));
    ck_assert(dp_control_take_checkpoint(c));
    ck_assert(!dp_control_take_checkpoint(c));
    ck_assert(!dp_control_quit_requested(c));
    dp_control_request_quit(c);
    ck_assert(dp_control_quit_requested(c));
    dp_control_event(c, "step %d: %s", 3, "done");
    dp_control_status st;
    dp_control_snapshot(c, &st);
    ck_assert_str_eq(st.event, "step 3: done");
    ck_assert(st.quit && !st.paused && !st.finished);
    ck_assert_int_eq(st.total_steps, 10);
    ck_assert_int_eq(st.epochs, 2);
    ck_assert(st.test_accuracy < 0);
    dp_control_destroy(c);
}
END_TEST

Suite *control_suite(void)
{
    Suite *s = suite_create("control");
    TCase *tc = tcase_create("requests");
    tcase_add_test(tc, two_presses_before_the_loop_takes);
    tcase_add_test(tc, a_press_between_take_and_apply_is_kept);
    tcase_add_test(tc, an_untaken_request_survives_another_switch);
    tcase_add_test(tc, presses_from_another_thread_add_up);
    tcase_add_test(tc, pause_quit_and_checkpoint);
    suite_add_tcase(s, tc);
    return s;
}
