/* headless.c -- the progress line, evaluations, events and the summary, as text. */
#include "app/headless.h"

#include <math.h>

#include "base/clock.h"

/* Clears a progress line drawn in place, before a line of its own. */
static const char *line_start(const dp_headless_printer *p)
{
    return p->out_is_tty ? "\r\033[K" : "";
}

static void on_event(void *arg, const dp_run_event *e)
{
    dp_headless_printer *p = arg;
    const dp_step_report *r = e->step_report;
    switch (e->kind) {
    case DP_RUN_SKIPPED:
        fprintf(p->out, "%sstep %ld: the loss is %g: update skipped; %s\n", line_start(p),
                r->step, r->loss, r->nonfinite);
        break;
    case DP_RUN_SWITCHED:
        fprintf(p->out, "%sstep %ld: switched from %s to %s in %.1f ms\n", line_start(p),
                r->step, r->switch_from, r->switch_to, 1e3 * r->switch_seconds);
        break;
    case DP_RUN_CHECKPOINT:
        fprintf(p->out, "%scheckpoint: %s (%.0f ms)\n", line_start(p), e->path, e->ms);
        break;
    }
}

/* The progress line: at most every 0.1 s on a terminal (1 s in a log), and at the last step
 * and each epoch's end. */
static void on_step(void *arg, dp_trainer *t, const dp_step_report *r, const dp_run_progress *pr)
{
    (void)t;
    dp_headless_printer *p = arg;
    double now = dp_now_s();
    bool last = r->step == pr->total_steps;
    if (now - p->last_print < (p->out_is_tty ? 0.1 : 1.0) && !last && !r->epoch_end)
        return;
    double eta = (now - pr->started) / (double)(r->step - pr->first_step) *
                 (double)(pr->total_steps - r->step);
    char eta_text[32];
    dp_format_duration(eta_text, sizeof eta_text, eta);
    fprintf(p->out, "%sstep %ld/%ld  epoch %ld/%ld  loss %.4f  lr %.4g  %.0f samples/s  ETA %s%s",
            line_start(p), r->step, pr->total_steps, r->epoch, pr->epochs, r->loss, r->lr,
            pr->mean_rate, eta_text, p->out_is_tty ? "" : "\n");
    fflush(p->out);
    p->last_print = now;
}

static void on_eval(void *arg, const dp_step_report *r, const dp_eval_report *e)
{
    dp_headless_printer *p = arg;
    char bits[48] = "";
    if (e->text)
        snprintf(bits, sizeof bits, " (%.4f bits per byte)", e->loss / M_LN2);
    fprintf(p->out, "%sstep %ld, epoch %ld: test loss %.4f%s, accuracy %.4f (%ld samples)\n",
            line_start(p), r->step, r->epoch, e->loss, bits, e->accuracy, e->samples);
}

static void on_finished(void *arg, dp_trainer *t, const dp_run_result *res, int rc,
                        const dp_err *err)
{
    (void)rc, (void)err;
    dp_headless_printer *p = arg;
    if (p->out_is_tty)
        fputs("\r\033[K", p->out);
    dp_headless_print_summary(t, res, p->out);
}

dp_run_observer dp_headless_observer(dp_headless_printer *p, FILE *out, int out_is_tty)
{
    *p = (dp_headless_printer){ .out = out, .out_is_tty = out_is_tty, .last_print = -1e9 };
    return (dp_run_observer){ .arg = p, .event = on_event, .step_done = on_step,
                              .eval_done = on_eval, .finished = on_finished };
}

void dp_headless_print_summary(dp_trainer *t, const dp_run_result *res, FILE *out)
{
    if (res->steps == res->first_step) { /* no loss, no rate, no device figures to show */
        fprintf(out, "%s before its first step (at step %ld): nothing was trained\n",
                res->failed ? "failed" : res->interrupted ? "interrupted" : "stopped",
                res->steps);
        return;
    }
    fprintf(out, "%s: %ld steps in %.2f s, %.0f samples/s, final loss %.4f",
            res->failed ? "failed" : res->interrupted ? "interrupted" : res->quit ? "stopped"
                                                                                  : "done",
            res->steps,
            res->seconds,
            res->samples_per_s, res->final_loss);
    if (res->test_accuracy >= 0)
        fprintf(out, ", test accuracy %.4f", res->test_accuracy);
    fputc('\n', out);
    fprintf(out, "%-8s %-32s %12s %12s %6s %10s %10s %10s\n", "device", "role", "memory", "peak",
            "util", "compute", "comm", "idle");
    dp_metrics *ms = dp_trainer_metrics(t);
    for (int i = 0; i < ms->n_devices; i++) {
        dp_device_metrics m = dp_metrics_read(ms, i);
        fprintf(out, "%-8s %-32s %8.1f MiB %8.1f MiB %5.0f%% %7.2f ms %7.2f ms %7.2f ms\n",
                m.device, m.role, m.mem_bytes / 1048576.0, m.mem_peak_bytes / 1048576.0,
                100 * m.util, 1e3 * m.compute_s, 1e3 * m.comm_s, 1e3 * m.idle_s);
    }
}
