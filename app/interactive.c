/* interactive.c -- the dashboard's status feed, and the training thread beside it. */
#include "app/interactive.h"

#include <pthread.h>

#include "app/headless.h"

static void on_event(void *arg, const dp_run_event *e)
{
    dp_control *c = arg;
    switch (e->kind) {
    case DP_RUN_SKIPPED:
        dp_control_event(c, "step %ld: non-finite loss, update skipped", e->step);
        break;
    case DP_RUN_SWITCHED:
        dp_control_event(c, "step %ld: switched to %s in %.0f ms", e->step,
                         e->step_report->switch_to, 1e3 * e->step_report->switch_seconds);
        break;
    case DP_RUN_CHECKPOINT:
        dp_control_event(c, "step %ld: checkpoint %s (%.0f ms)", e->step, e->path, e->ms);
        break;
    }
}

static void on_step(void *arg, dp_trainer *t, const dp_step_report *r, const dp_run_progress *p)
{
    (void)t;
    dp_control_publish_step(arg, r->step, r->epoch, r->loss, r->lr, p->recent_rate);
}

/* The header shows the accuracy; the event line is kept for switches, keys and the end. */
static void on_eval(void *arg, const dp_step_report *r, const dp_eval_report *e)
{
    dp_control_publish_eval(arg, r->step, e->accuracy);
}

static void on_finished(void *arg, dp_trainer *t, const dp_run_result *res, int rc,
                        const dp_err *err)
{
    (void)t;
    dp_control *c = arg;
    bool early = res->interrupted || res->quit;
    dp_control_finish(c);
    if (rc < 0)
        dp_control_event(c, "stopped: %s", err->msg);
    else
        dp_control_event(c, "%s after %ld steps: final loss %.4f%s",
                         early ? "stopped" : "finished", res->steps, res->final_loss,
                         early ? "" : "; press q to leave");
}

dp_run_observer dp_control_observer(dp_control *c)
{
    return (dp_run_observer){ .arg = c, .event = on_event, .step_done = on_step,
                              .eval_done = on_eval, .finished = on_finished };
}

/* The training loop's thread. */
typedef struct training {
    dp_trainer *t;
    const dp_run_loop_opts *o;
    dp_run_result *res;
    dp_err *err;
    int rc;
} training;

static void *training_main(void *arg)
{
    training *tr = arg;
    tr->rc = dp_run_loop(tr->t, tr->o, tr->res, tr->err);
    return NULL;
}

int dp_run_with_dashboard(dp_trainer *t, const dp_run_loop_opts *opts,
                          const dp_dashboard_info *info, dp_run_result *res, dp_err *err)
{
    dp_run_loop_opts o = *opts;
    dp_run_observe(&o, dp_control_observer(o.control));
    training tr = { t, &o, res, err, 0 };
    pthread_t thread;
    if (pthread_create(&thread, NULL, training_main, &tr) != 0)
        return dp_fail(err, "cannot start the training thread");
    if (dp_dashboard_run(t, o.control, info, o.stop) < 0)
        dp_control_request_quit(o.control);
    pthread_join(thread, NULL);
    if (tr.rc == 0)
        dp_headless_print_summary(t, res, stdout);
    return tr.rc;
}
