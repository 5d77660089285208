/* interactive.c -- the dashboard's status feed, and the training thread beside it. */
#include "app/interactive.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>

#include "app/headless.h"

static void on_event(void *arg, const dp_run_event *e)
{
    dp_control *c = arg;
    switch (e->kind) {
    case DP_RUN_SKIPPED:
        dp_control_event(c, "step %ld: non-finite loss, update skipped", e->step);
        break;
    case DP_RUN_SWITCHED:
        if (e->step_report->batch_stats_short[0]) /* first: the line may be cut */
            dp_control_event(c, "step %ld: %s: switched to %s in %.0f ms", e->step,
                             e->step_report->batch_stats_short, e->step_report->switch_to,
                             1e3 * e->step_report->switch_seconds);
        else
            dp_control_event(c, "step %ld: switched to %s in %.0f ms", e->step,
                             e->step_report->switch_to, 1e3 * e->step_report->switch_seconds);
        break;
    case DP_RUN_CHECKPOINT:
        dp_control_event(c, "step %ld: checkpoint %s (%.0f ms)", e->step, e->path, e->ms);
        break;
    case DP_RUN_ADVICE: /* the loop told the control the outcome */
        break;
    }
}

/* A GAN's evaluation: its samples from the fixed noise, copied for the dashboard's picture
 * (the report's images are valid only during this call). */
static void on_eval(void *arg, const dp_step_report *r, const dp_eval_report *e)
{
    dp_control *c = arg;
    if (!e->gan || !e->images || e->n_images <= 0)
        return;
    if (dp_control_publish_samples(c, r->step, e->images, e->n_images, e->image_shape) < 0)
        dp_control_event(c, "step %ld: no memory to show the samples", r->step);
}

/* "test accuracy 0.8123" (or "bits per byte 1.234" for text; a GAN's discriminator's test
 * loss and its samples' quality), or "" when none ran. */
static void test_result(const dp_run_result *res, char *buf, size_t size)
{
    if (res->test_accuracy < 0)
        snprintf(buf, size, "%s", "");
    else if (res->test_gan && res->test_generated > 0)
        snprintf(buf, size, ", D's test loss %.4f, Frechet distance %.3f, score %.3f",
                 res->test_loss, res->test_frechet, res->test_score);
    else if (res->test_gan)
        snprintf(buf, size, ", D's test loss %.4f", res->test_loss);
    else if (res->test_masked)
        snprintf(buf, size, ", masked accuracy %.4f, bits per masked byte %.4f",
                 res->test_accuracy, res->test_loss / M_LN2);
    else if (res->test_text)
        snprintf(buf, size, ", bits per byte %.4f", res->test_loss / M_LN2);
    else
        snprintf(buf, size, ", test accuracy %.4f", res->test_accuracy);
}

/* The end, on the event line: what the run reached, and the checkpoint written. (The loop has
 * already told the control the rest.) */
static void on_finished(void *arg, dp_trainer *t, const dp_run_result *res, int rc,
                        const dp_err *err)
{
    (void)t;
    dp_control *c = arg;
    if (rc < 0) {
        dp_control_event(c, "stopped: %s", err->msg);
        return;
    }
    char test[128], checkpoint[sizeof res->checkpoint + 16] = "";
    test_result(res, test, sizeof test);
    if (res->checkpoint[0])
        snprintf(checkpoint, sizeof checkpoint, "; checkpoint %s", res->checkpoint);
    const char *how = res->interrupted ? "stopped by a signal" : res->quit ? "stopped" : "finished";
    if (res->steps == res->first_step)
        dp_control_event(c, "%s before the first step%s", how, checkpoint);
    else
        dp_control_event(c, "%s after %ld steps: final %s %.4f%s%s%s", how, res->steps,
                         res->test_gan ? "D loss" : res->masked ? "masked loss" : "loss",
                         res->final_loss, test, checkpoint,
                         res->interrupted || res->quit ? "" : "; press q to leave");
}

dp_run_observer dp_control_observer(dp_control *c)
{
    return (dp_run_observer){ .arg = c, .event = on_event, .eval_done = on_eval,
                              .finished = on_finished };
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
    dp_control_set_samples_range(o.control, info->range_lo, info->range_hi);
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
