/* test_control.c -- the run's control: requests add up, none is lost between take and apply;
 * the run's state, rate window, active time, ETA and evaluation history on a fake clock; an
 * evaluation in parts gives what one pass gives, and stops when asked. */
#include "tests/unit.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>

#include "datasets/dataset.h"
#include "engine/control.h"
#include "engine/devices.h"
#include "engine/trainer.h"

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


/* ---- the run's state, rates and times, on a fake clock ---- */

static double fake_now(void *arg)
{
    return *(const double *)arg;
}

/* A control on the clock *now, begun on a run of `total` steps, 10 an epoch, evaluated every
 * eval_every (1000 test samples). */
static dp_control *on_clock(double *now, long total, long eval_every)
{
    dp_control *c = dp_control_create(total, total / 10);
    ck_assert_ptr_nonnull(c);
    dp_control_set_clock(c, fake_now, now);
    dp_control_begin(c, &(dp_run_schedule){ .steps_per_epoch = 10, .eval_every = eval_every,
                                            .test_samples = 1000 });
    return c;
}

/* Steps of `rows` rows that take `seconds` each, back to back from *now. */
static void steps(dp_control *c, double *now, long *step, int n, int rows, double seconds)
{
    for (int i = 0; i < n; i++) {
        *now += seconds;
        ++*step;
        dp_control_step_done(c, &(dp_control_step){ .step = *step, .epoch = 1, .loss = 1.0,
                                                    .rows = rows, .seconds = seconds });
    }
}

static dp_control_status snap(dp_control *c)
{
    dp_control_status st;
    dp_control_snapshot(c, &st);
    return st;
}

START_TEST(states_from_start_to_finish)
{
    double now = 100;
    long step = 0;
    dp_control *c = on_clock(&now, 1000, 0);
    dp_control_status st = snap(c);
    ck_assert_int_eq(st.state, DP_STATE_STARTING);
    ck_assert(st.eta_s < 0);
    ck_assert(st.started == 100);
    steps(c, &now, &step, 1, 10, 0.5);
    ck_assert_int_eq(snap(c).state, DP_STATE_TRAINING);
    ck_assert(snap(c).eta_s >= 0);
    dp_control_set_state(c, DP_STATE_PAUSED);
    st = snap(c);
    ck_assert_int_eq(st.state, DP_STATE_PAUSED);
    ck_assert(st.samples_per_s == 0);
    dp_control_set_state(c, DP_STATE_TRAINING);
    ck_assert_double_eq_tol(snap(c).samples_per_s, 20, 1e-9);
    dp_control_eval_begin(c, 0);
    dp_control_eval_progress(c, 3, 40);
    st = snap(c);
    ck_assert_int_eq(st.state, DP_STATE_EVALUATING);
    ck_assert_int_eq(st.eval_done, 3);
    ck_assert_int_eq(st.eval_total, 40);
    dp_control_eval_end(c, NULL); /* stopped: nothing recorded */
    st = snap(c);
    ck_assert_int_eq(st.state, DP_STATE_TRAINING);
    ck_assert_int_eq(st.n_evals, 0);
    ck_assert(st.test_accuracy < 0 && st.last_eval.step < 0 && st.best_eval.step < 0);
    steps(c, &now, &step, 1, 10, 0.5);
    dp_control_step_done(c, &(dp_control_step){ .step = ++step, .rows = 10, .seconds = 0.5,
                                                .skipped = true });
    ck_assert_int_eq(snap(c).skipped, 1);
    dp_control_finish(c, true, "/ck/step-00000003");
    st = snap(c);
    ck_assert_int_eq(st.state, DP_STATE_FINISHED);
    ck_assert(st.finished && st.stopped_early);
    ck_assert_str_eq(st.exit_checkpoint, "/ck/step-00000003");
    ck_assert_int_eq(st.step, 3);
    dp_control_destroy(c);
}
END_TEST

/* samples/s: the steps of the last 10 s of training time, pauses and evaluations left out. */
START_TEST(rate_over_the_window_of_training_time)
{
    double now = 0;
    long step = 0;
    dp_control *c = on_clock(&now, 100000, 0);
    steps(c, &now, &step, 20, 100, 1.0);   /* 100 samples/s */
    ck_assert_double_eq_tol(snap(c).samples_per_s, 100, 1e-9);
    steps(c, &now, &step, 8, 100, 0.5);    /* 4 s at 200/s: the window holds 6 s of the old */
    ck_assert_double_eq_tol(snap(c).samples_per_s, 1400.0 / 10, 1e-9);
    dp_control_set_state(c, DP_STATE_PAUSED);
    now += 1000;
    ck_assert(snap(c).samples_per_s == 0);
    dp_control_set_state(c, DP_STATE_TRAINING);
    dp_control_eval_begin(c, 10);
    now += 500;
    dp_control_eval_end(c, &(dp_eval_point){ .step = step, .loss = 1, .accuracy = 0.5 });
    ck_assert_double_eq_tol(snap(c).samples_per_s, 140, 1e-9); /* the same window */
    steps(c, &now, &step, 12, 100, 0.5);   /* 6 s more: 10 s at 200/s */
    ck_assert_double_eq_tol(snap(c).samples_per_s, 200, 1e-9);
    dp_control_finish(c, false, NULL);
    now += 60;
    ck_assert_double_eq_tol(snap(c).samples_per_s, 200, 1e-9); /* frozen */
    ck_assert_str_eq(snap(c).exit_checkpoint, "");
    dp_control_destroy(c);
}
END_TEST

START_TEST(active_time_leaves_out_pauses_and_stops_at_the_end)
{
    double now = 50;
    long step = 0;
    dp_control *c = on_clock(&now, 100, 0);
    now += 2; /* setting up the first step */
    steps(c, &now, &step, 10, 10, 1.0);
    ck_assert_double_eq_tol(snap(c).active_s, 12, 1e-9);
    dp_control_set_state(c, DP_STATE_PAUSED);
    now += 30;
    ck_assert_double_eq_tol(snap(c).active_s, 12, 1e-9);
    dp_control_set_state(c, DP_STATE_TRAINING);
    now += 3; /* an evaluation counts */
    ck_assert_double_eq_tol(snap(c).active_s, 15, 1e-9);
    dp_control_set_state(c, DP_STATE_PAUSED);
    now += 7;
    dp_control_finish(c, true, NULL); /* quit while paused */
    now += 100;
    ck_assert_double_eq_tol(snap(c).active_s, 15, 1e-9);
    dp_control_destroy(c);
}
END_TEST

/* The ETA counts down while the run trains, stands still while it is paused, and goes on
 * from there after. */
START_TEST(eta_does_not_grow_while_paused)
{
    double now = 0;
    long step = 0;
    dp_control *c = on_clock(&now, 100, 0); /* evaluations after steps 10, 20, ..., 100 */
    steps(c, &now, &step, 10, 10, 1.0);
    dp_control_eval_begin(c, 4);
    now += 5;
    dp_control_eval_end(c, &(dp_eval_point){ .step = 10, .loss = 2, .accuracy = 0.1 });
    dp_control_status st = snap(c);
    ck_assert_double_eq_tol(st.eta_s, 90 * 1.0 + 9 * 5.0, 1e-9);
    now += 0.25; /* the next step under way */
    ck_assert_double_eq_tol(snap(c).eta_s, 134.75, 1e-9);
    dp_control_set_state(c, DP_STATE_PAUSED);
    now += 3600;
    ck_assert_double_eq_tol(snap(c).eta_s, 134.75, 1e-9);
    dp_control_set_state(c, DP_STATE_TRAINING);
    ck_assert_double_eq_tol(snap(c).eta_s, 134.75, 1e-9);
    now += 0.75;
    ck_assert_double_eq_tol(snap(c).eta_s, 134, 1e-9);
    /* step 11 ends 1 s of training time after step 10: a step a second, as before */
    dp_control_step_done(c, &(dp_control_step){ .step = 11, .rows = 10, .seconds = 1.0 });
    ck_assert_double_eq_tol(snap(c).eta_s, 89 + 9 * 5.0, 1e-9);
    dp_control_destroy(c);
}
END_TEST

/* Before the first evaluation its length is guessed from the test split and the rate; during
 * one, what is left of it counts. */
START_TEST(eta_of_evaluations)
{
    double now = 0;
    long step = 0;
    dp_control *c = on_clock(&now, 20, 0);
    steps(c, &now, &step, 5, 100, 1.0); /* 100 samples/s: 1000 test samples in 10/3 s */
    ck_assert_double_eq_tol(snap(c).eta_s, 15 + 2 * 1000.0 / 300, 1e-9);
    steps(c, &now, &step, 5, 100, 1.0);
    dp_control_eval_begin(c, 0);
    dp_control_eval_progress(c, 0, 10);
    now += 4;
    dp_control_eval_progress(c, 4, 10);
    ck_assert_double_eq_tol(snap(c).eta_s, 10 + (1 + 0.6) * 1000.0 / 300, 1e-9);
    dp_control_destroy(c);
}
END_TEST

START_TEST(typical_step_is_the_median)
{
    double now = 0;
    long step = 0;
    dp_control *c = on_clock(&now, 1000, 0);
    steps(c, &now, &step, 20, 10, 0.1);
    steps(c, &now, &step, 1, 10, 30.0); /* one slow step moves the median not */
    dp_control_status st = snap(c);
    ck_assert_double_eq_tol(st.typical_step_s, 0.1, 1e-12);
    ck_assert_double_eq_tol(st.last_step_end, now, 1e-12);
    dp_control_set_state(c, DP_STATE_PAUSED);
    now += 100;
    dp_control_set_state(c, DP_STATE_TRAINING);
    ck_assert_double_eq_tol(snap(c).last_step_end, now, 1e-12); /* no stall after a pause */
    dp_control_destroy(c);
}
END_TEST

/* The history spans the run: thinned when full, the first and the newest kept, in order. */
START_TEST(eval_history_is_thinned)
{
    double now = 0;
    dp_control *c = on_clock(&now, 100000, 1);
    for (long i = 1; i <= 1000; i++) {
        dp_control_eval_begin(c, 1);
        double loss = i == 400 ? 0.01 : 1.0 / (double)i + 0.5;
        dp_control_eval_end(c, &(dp_eval_point){ .step = i, .loss = loss, .accuracy = 0.5 });
        dp_control_status st = snap(c);
        ck_assert_int_le(st.n_evals, DP_EVAL_HISTORY);
        ck_assert_int_eq(st.evals[0].step, 1);
        ck_assert_int_eq(st.evals[st.n_evals - 1].step, i);
        ck_assert_int_eq(st.last_eval.step, i);
        ck_assert_int_eq(st.test_step, i);
        if (i <= DP_EVAL_HISTORY)
            ck_assert_int_eq(st.n_evals, i);
    }
    dp_control_status st = snap(c);
    ck_assert_int_gt(st.n_evals, DP_EVAL_HISTORY / 2);
    for (int k = 1; k < st.n_evals; k++)
        ck_assert_int_lt(st.evals[k - 1].step, st.evals[k].step);
    ck_assert_int_eq(st.best_eval.step, 400);
    dp_control_destroy(c);
}
END_TEST

START_TEST(evaluations_remaining)
{
    ck_assert_int_eq(dp_evals_remaining(0, 100, 10, 0), 10);    /* epochs */
    ck_assert_int_eq(dp_evals_remaining(0, 95, 10, 0), 10);     /* 9 epochs and the last */
    ck_assert_int_eq(dp_evals_remaining(10, 100, 10, 0), 9);
    ck_assert_int_eq(dp_evals_remaining(0, 100, 10, 4), 10 + 25 - 5); /* 20, 40, ... once */
    ck_assert_int_eq(dp_evals_remaining(0, 101, 10, 4), 10 + 25 - 5 + 1);
    ck_assert_int_eq(dp_evals_remaining(99, 100, 10, 4), 1);
    ck_assert_int_eq(dp_evals_remaining(100, 100, 10, 4), 0);
    ck_assert_int_eq(dp_evals_remaining(0, 7, 1000, 0), 1);     /* only the last */
    ck_assert_int_eq(dp_evals_remaining(0, 1000000, 999983, 999979), 3); /* lcm past the end */
    ck_assert_int_eq(dp_evals_remaining(0, 12, 6, 4), 4); /* 4, 6, 8, 12 */
}
END_TEST

/* ---- an evaluation in parts ---- */

typedef struct watched {
    long calls, last_done, total;
    long stop_at;            /* stop once this many batches are done; < 0: never */
    bool in_order;
} watched;

static bool watch_progress(void *arg, long done, long total)
{
    watched *w = arg;
    w->in_order = w->in_order && done >= w->last_done && done <= total &&
                  (w->calls > 0 || done == 0);
    w->calls++;
    w->last_done = done;
    w->total = total;
    return w->stop_at >= 0 && done >= w->stop_at;
}

/* A trained pipeline (its micro-batches split every batch) and a test split of 37 batches of
 * 16 and one of 5. */
static dp_trainer *evaluated_trainer(dp_device_set **set, dp_model *m, dp_dataset *train,
                                     dp_dataset *test)
{
    dp_err err;
    dp_data_config dc = dp_data_defaults();
    dc.kind = DP_DATA_SYNTHETIC;
    dc.features = 12;
    dc.classes = 5;
    dc.samples = 160;
    dc.test_samples = 37 * 16 + 5;
    ck_assert_msg(dp_data_load(&dc, 3, train, test, &err) == 0, "data: %s", err.msg);
    ck_assert_msg(dp_model_parse(m, "linear:32,relu,linear:16,tanh,linear:5", 12, 5, &err) == 0,
                  "%s", err.msg);
    *set = dp_device_set_create(2, NULL, false, &err);
    ck_assert_msg(*set != NULL, "dp_device_set_create: %s", err.msg);
    dp_trainer_config tc = {
        .model = m, .optim = dp_optim_defaults(), .batch = 16, .shuffle = true, .seed = 5,
        .total_steps = 6, .on_nan = DP_NAN_STOP, .devices = *set,
        .plan = { .strategy = DP_STRATEGY_PP, .stages = 2, .micro = 3 }, .bucket_mb = 25,
    };
    bool refused;
    dp_trainer *t = dp_trainer_create(&tc, train, test, NULL, &refused, &err);
    ck_assert_msg(t != NULL, "dp_trainer_create: %s", err.msg);
    for (int i = 0; i < 6; i++) {
        dp_step_report r;
        ck_assert_msg(dp_trainer_step(t, &r, &err) == 0, "step: %s", err.msg);
    }
    return t;
}

/* The sums are sums of whole batches: in 1, 7 or the default 20 parts, the same bits. */
START_TEST(evaluation_in_parts_is_exact)
{
    dp_device_set *set;
    dp_model m;
    dp_dataset train, test;
    dp_trainer *t = evaluated_trainer(&set, &m, &train, &test);
    dp_eval_report one, parts, seven;
    ck_assert(dp_trainer_evaluate(t, &(dp_eval_watch){ .parts = 1 }, &one));
    watched w = { .stop_at = -1, .in_order = true };
    ck_assert(dp_trainer_evaluate(t, &(dp_eval_watch){ .progress = watch_progress, .arg = &w },
                                  &parts));
    ck_assert(dp_trainer_evaluate(t, &(dp_eval_watch){ .parts = 7 }, &seven));
    ck_assert_int_eq(w.calls, DP_EVAL_PARTS + 1);
    ck_assert(w.in_order);
    ck_assert_int_eq(w.total, 38);
    ck_assert_int_eq(w.last_done, 38);
    ck_assert_int_eq(one.samples, 37 * 16 + 5);
    ck_assert_msg(one.loss == parts.loss && one.loss == seven.loss,
                  "loss %.17g in one part, %.17g in 20, %.17g in 7", one.loss, parts.loss,
                  seven.loss);
    ck_assert(one.accuracy == parts.accuracy && one.accuracy == seven.accuracy);
    ck_assert(one.accuracy > 0 && isfinite(one.loss));

    /* stopped after 10 of 38 batches: nothing reported */
    dp_eval_report stopped = { .samples = -7 };
    w = (watched){ .stop_at = 10, .in_order = true };
    ck_assert(!dp_trainer_evaluate(t, &(dp_eval_watch){ .progress = watch_progress, .arg = &w },
                                   &stopped));
    ck_assert_int_eq(stopped.samples, -7);
    ck_assert_int_lt(w.calls, 8);
    ck_assert_int_ge(w.last_done, 10);
    /* and stopped before the first part */
    w = (watched){ .stop_at = 0, .in_order = true };
    ck_assert(!dp_trainer_evaluate(t, &(dp_eval_watch){ .progress = watch_progress, .arg = &w },
                                   &stopped));
    ck_assert_int_eq(w.calls, 1);
    dp_trainer_destroy(t);
    dp_device_set_destroy(set);
    dp_model_free(&m);
    dp_dataset_free(&train);
    dp_dataset_free(&test);
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
    TCase *ts = tcase_create("state");
    tcase_add_test(ts, states_from_start_to_finish);
    tcase_add_test(ts, rate_over_the_window_of_training_time);
    tcase_add_test(ts, active_time_leaves_out_pauses_and_stops_at_the_end);
    tcase_add_test(ts, eta_does_not_grow_while_paused);
    tcase_add_test(ts, eta_of_evaluations);
    tcase_add_test(ts, typical_step_is_the_median);
    tcase_add_test(ts, eval_history_is_thinned);
    tcase_add_test(ts, evaluations_remaining);
    suite_add_tcase(s, ts);
    TCase *te = tcase_create("evaluation");
    tcase_set_timeout(te, 30);
    tcase_add_test(te, evaluation_in_parts_is_exact);
    suite_add_tcase(s, te);
    return s;
}
