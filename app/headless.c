/* headless.c -- the progress line, evaluations, events and the summary, as text. */
#include "app/headless.h"

#include <math.h>
#include <string.h>

#include "app/advise.h"
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
        fprintf(p->out, "%sstep %ld: switched from %s to %s in %.1f ms%s%s\n", line_start(p),
                r->step, r->switch_from, r->switch_to, 1e3 * r->switch_seconds,
                r->batch_stats[0] ? "; " : "", r->batch_stats);
        break;
    case DP_RUN_CHECKPOINT:
        fprintf(p->out, "%scheckpoint: %s (%.0f ms)\n", line_start(p), e->path, e->ms);
        break;
    case DP_RUN_ADVICE:
        fputs(line_start(p), p->out);
        dp_advise_print(p->out, e->advice);
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
    char eta_text[32] = "?";
    if (pr->eta_s >= 0)
        dp_format_duration(eta_text, sizeof eta_text, pr->eta_s);
    char loss[96];
    if (r->gan) /* as PyTorch's DCGAN example prints them */
        snprintf(loss, sizeof loss, "loss D %.4f G %.4f  D(x) %.3f D(G(z)) %.3f / %.3f",
                 r->loss, r->loss_g, r->d_real, r->d_fake, r->d_fake_after);
    else
        snprintf(loss, sizeof loss, "loss %.4f", r->loss);
    fprintf(p->out, "%sstep %ld/%ld  epoch %ld/%ld  %s  lr %.4g  %.0f samples/s  ETA %s%s",
            line_start(p), r->step, pr->total_steps, r->epoch, pr->epochs, loss, r->lr,
            pr->recent_rate, eta_text, p->out_is_tty ? "" : "\n");
    fflush(p->out);
    p->last_print = now;
}

/* A GAN's evaluation: its discriminator on the real test split, and the quality figures. */
static void print_gan_eval(dp_headless_printer *p, const dp_step_report *r,
                           const dp_eval_report *e)
{
    char quality[160] = "; no [gan] classifier, so no quality figures";
    if (e->generated > 0)
        snprintf(quality, sizeof quality, "; %ld samples against the test split in the "
                                          "classifier's features: Frechet distance %.3f, "
                                          "score %.3f",
                 e->generated, e->frechet, e->score);
    fprintf(p->out, "%sstep %ld, epoch %ld: D on the test split: loss %.4f, judged real %.4f, "
                    "D(x) %.3f%s\n",
            line_start(p), r->step, r->epoch, e->loss, e->accuracy, e->d_real, quality);
}

static void on_eval(void *arg, const dp_step_report *r, const dp_eval_report *e)
{
    dp_headless_printer *p = arg;
    if (e->gan) {
        print_gan_eval(p, r, e);
        return;
    }
    char bits[48] = "";
    if (e->masked) {
        fprintf(p->out, "%sstep %ld, epoch %ld: masked test loss %.4f (%.4f bits per masked "
                        "byte), masked accuracy %.4f (%ld masked bytes of %ld samples)\n",
                line_start(p), r->step, r->epoch, e->loss, e->loss / M_LN2, e->accuracy,
                e->positions, e->samples);
        return;
    }
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

/* Bytes in at most 7 characters: "1023.9M". */
static void format_bytes(char *buf, size_t size, double bytes)
{
    const char *units = "BKMGTP";
    int u = 0;
    while (bytes >= 1024 && u < 5) {
        bytes /= 1024;
        u++;
    }
    snprintf(buf, size, u ? "%.1f%c" : "%.0f%c", bytes, units[u]);
}

/* Seconds in at most 8 characters: "999.99ms", "12.34s". */
static void format_seconds(char *buf, size_t size, double s)
{
    if (s < 1)
        snprintf(buf, size, "%.2fms", 1e3 * s);
    else if (s < 1000)
        snprintf(buf, size, "%.2fs", s);
    else
        snprintf(buf, size, "%.0fs", s);
}

/* Replaces every `from` in buf[size] by the shorter `to`. */
static void shorten(char *buf, const char *from, const char *to)
{
    size_t len = strlen(from), with = strlen(to);
    for (char *p = strstr(buf, from); p; p = strstr(p + with, from)) {
        memmove(p + with, p + len, strlen(p + len) + 1);
        memcpy(p, to, with);
    }
}

/* A device's role in at most `width` characters: as it is when it fits, else in short words
 * ("replica 1, stage 2 (layers 3-4)" is "r1 s2 L3-4"), else cut with a "~". */
static void fit_role(char *buf, size_t size, const char *role, int width)
{
    snprintf(buf, size, "%s", role);
    if ((int)strlen(buf) <= width)
        return;
    static const char *const shorter[][2] = {
        { "replica ", "r" }, { "stage ", "s" }, { ", ", " " }, { "(layers ", "L" }, { ")", "" },
    };
    for (size_t k = 0; k < sizeof shorter / sizeof *shorter; k++)
        shorten(buf, shorter[k][0], shorter[k][1]);
    if ((int)strlen(buf) > width && width >= 1 && (size_t)width < size)
        snprintf(buf + width - 1, size - (size_t)(width - 1), "~");
}

/* The per-device table, in 80 columns: the role, last, is shortened to fit. */
static void print_devices(dp_trainer *t, FILE *out)
{
    enum { ROLE_WIDTH = 17 };
    fprintf(out, "%-8s %7s %7s %4s %4s %8s %8s %8s %s\n", "device", "memory", "peak", "util",
            "MFU", "compute", "comm", "idle", "role");
    dp_metrics *ms = dp_trainer_metrics(t);
    for (int i = 0; i < ms->n_devices; i++) {
        dp_device_metrics m = dp_metrics_read(ms, i);
        char mem[16], peak[16], mfu[16] = "-", comp[16], comm[16], idle[16], role[64];
        format_bytes(mem, sizeof mem, (double)m.mem_bytes);
        format_bytes(peak, sizeof peak, (double)m.mem_peak_bytes);
        if (m.mfu >= 0)
            snprintf(mfu, sizeof mfu, "%.0f%%", 100 * m.mfu);
        format_seconds(comp, sizeof comp, m.compute_s);
        format_seconds(comm, sizeof comm, m.comm_s);
        format_seconds(idle, sizeof idle, m.idle_s);
        fit_role(role, sizeof role, m.role, ROLE_WIDTH);
        fprintf(out, "%-8.8s %7s %7s %3.0f%% %4s %8s %8s %8s %s\n", m.device, mem, peak,
                100 * m.util, mfu, comp, comm, idle, role);
    }
}

/* The last evaluation's result, and whether one was stopped. */
static void print_test(const dp_run_result *res, FILE *out)
{
    if (res->test_accuracy >= 0 && res->test_gan) {
        fprintf(out, "D on the test split: loss %.4f, judged real %.4f after step %ld\n",
                res->test_loss, res->test_accuracy, res->test_step);
        if (res->test_generated > 0)
            fprintf(out, "samples: Frechet distance %.3f, score %.3f (%ld samples, in the "
                         "classifier's features)\n",
                    res->test_frechet, res->test_score, res->test_generated);
    } else if (res->test_accuracy >= 0 && res->test_masked) {
        fprintf(out, "masked test accuracy %.4f, loss %.4f (%.4f bits per masked byte) after "
                     "step %ld\n",
                res->test_accuracy, res->test_loss, res->test_loss / M_LN2, res->test_step);
    } else if (res->test_accuracy >= 0) {
        char bits[48] = "";
        if (res->test_text)
            snprintf(bits, sizeof bits, " (%.4f bits per byte)", res->test_loss / M_LN2);
        fprintf(out, "test accuracy %.4f, loss %.4f%s after step %ld\n", res->test_accuracy,
                res->test_loss, bits, res->test_step);
    }
    if (res->eval_stopped)
        fprintf(out, "the evaluation after step %ld was stopped: it reports nothing\n",
                res->steps);
}

void dp_headless_print_summary(dp_trainer *t, const dp_run_result *res, FILE *out)
{
    const char *how = res->failed ? "failed" : res->interrupted ? "interrupted"
                                             : res->quit ? "stopped" : "done";
    if (res->steps == res->first_step) { /* no loss, no rate, no device figures to show */
        fprintf(out, "%s before its first step (at step %ld): nothing was trained\n", how,
                res->steps);
    } else {
        if (res->gan)
            fprintf(out, "%s: %ld steps in %.2f s, final loss D %.4f G %.4f\n", how,
                    res->steps - res->first_step, res->active_s, res->final_loss,
                    res->final_loss_g);
        else
            fprintf(out, "%s: %ld steps in %.2f s, final %s %.4f\n", how,
                    res->steps - res->first_step, res->active_s,
                    res->masked ? "masked loss" : "loss", res->final_loss);
        fprintf(out, "rate: %.0f samples/s over the training steps (evaluations excluded)\n",
                res->samples_per_s);
        if (res->first_step > 0)
            fprintf(out, "resumed at step %ld: steps %ld to %ld ran\n", res->first_step,
                    res->first_step + 1, res->steps);
        if (res->seconds - res->active_s >= 0.05)
            fprintf(out, "paused for %.2f s (not counted above)\n", res->seconds - res->active_s);
        print_test(res, out);
    }
    if (res->checkpoint[0])
        fprintf(out, "checkpoint at the end: %s\n", res->checkpoint);
    if (res->steps > res->first_step)
        print_devices(t, out);
}
