/* headless.c -- progress output and JSON Lines metrics. */
#include "app/headless.h"

#include <math.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* JSON has no NaN or infinity: those become null. */
static void json_num(FILE *f, const char *key, double v)
{
    if (isfinite(v))
        fprintf(f, ",\"%s\":%.9g", key, v);
    else
        fprintf(f, ",\"%s\":null", key);
}

static void write_step_records(FILE *f, dp_trainer *t, const dp_step_report *r)
{
    if (r->switched) {
        fprintf(f, "{\"type\":\"switch\",\"step\":%ld,\"from\":\"%s\",\"to\":\"%s\"", r->step,
                r->switch_from, r->switch_to);
        json_num(f, "seconds", r->switch_seconds);
        fputs("}\n", f);
    }
    fprintf(f, "{\"type\":\"step\",\"step\":%ld,\"epoch\":%ld", r->step, r->epoch);
    json_num(f, "loss", r->loss);
    json_num(f, "lr", r->lr);
    json_num(f, "samples_per_s", r->seconds > 0 ? r->rows / r->seconds : 0.0);
    fprintf(f, ",\"strategy\":\"%s\"}\n", dp_trainer_strategy(t));
    dp_metrics *ms = dp_trainer_metrics(t);
    for (int i = 0; i < ms->n_devices; i++) {
        dp_device_metrics m = dp_metrics_read(ms, i);
        fprintf(f, "{\"type\":\"device\",\"step\":%ld,\"device\":\"%s\",\"role\":\"%s\"", m.step,
                m.device, m.role);
        json_num(f, "loss", m.loss);
        fprintf(f, ",\"mem_bytes\":%zu,\"mem_peak_bytes\":%zu,\"mem_total_bytes\":%zu,"
                   "\"act_peak_bytes\":%zu",
                m.mem_bytes, m.mem_peak_bytes, m.mem_total_bytes, m.act_peak_bytes);
        json_num(f, "util", m.util);
        json_num(f, "compute_s", m.compute_s);
        json_num(f, "comm_s", m.comm_s);
        json_num(f, "idle_s", m.idle_s);
        fputs("}\n", f);
    }
}

static void format_duration(char *buf, size_t size, double s)
{
    long t = s > 0 && s < 1e9 ? (long)(s + 0.5) : 0;
    if (t >= 3600)
        snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
}

static void print_progress(const dp_headless_opts *o, const dp_step_report *r, long epochs,
                           double rate, double eta)
{
    char eta_text[32];
    format_duration(eta_text, sizeof eta_text, eta);
    fprintf(o->out, "%sstep %ld/%ld  epoch %ld/%ld  loss %.4f  lr %.4g  %.0f samples/s  ETA %s%s",
            o->out_is_tty ? "\r\033[K" : "", r->step, o->total_steps, r->epoch, epochs, r->loss,
            r->lr, rate, eta_text, o->out_is_tty ? "" : "\n");
    fflush(o->out);
}

static void evaluate(dp_trainer *t, const dp_headless_opts *o, const dp_step_report *r,
                     dp_headless_result *res)
{
    dp_eval_report e;
    dp_trainer_evaluate(t, &e);
    res->test_accuracy = e.accuracy;
    fprintf(o->out, "%sstep %ld, epoch %ld: test loss %.4f, accuracy %.4f (%ld samples)\n",
            o->out_is_tty ? "\r\033[K" : "", r->step, r->epoch, e.loss, e.accuracy, e.samples);
    if (o->metrics) {
        fprintf(o->metrics, "{\"type\":\"eval\",\"step\":%ld,\"epoch\":%ld", r->step, r->epoch);
        json_num(o->metrics, "loss", e.loss);
        json_num(o->metrics, "accuracy", e.accuracy);
        fputs("}\n", o->metrics);
    }
}

/* rate: training samples per second of step time (evaluations excluded). */
static void print_summary(dp_trainer *t, const dp_headless_opts *o, const dp_headless_result *res,
                          double rate)
{
    fprintf(o->out, "%s%s: %ld steps in %.2f s, %.0f samples/s, final loss %.4f",
            o->out_is_tty ? "\r\033[K" : "", res->interrupted ? "interrupted" : "done",
            res->steps, res->seconds, rate, res->final_loss);
    if (res->test_accuracy >= 0)
        fprintf(o->out, ", test accuracy %.4f", res->test_accuracy);
    fputc('\n', o->out);
    fprintf(o->out, "%-8s %-32s %12s %12s %6s %10s %10s %10s\n", "device", "role", "memory",
            "peak", "util", "compute", "comm", "idle");
    dp_metrics *ms = dp_trainer_metrics(t);
    for (int i = 0; i < ms->n_devices; i++) {
        dp_device_metrics m = dp_metrics_read(ms, i);
        fprintf(o->out, "%-8s %-32s %8.1f MiB %8.1f MiB %5.0f%% %7.2f ms %7.2f ms %7.2f ms\n",
                m.device, m.role, m.mem_bytes / 1048576.0, m.mem_peak_bytes / 1048576.0,
                100 * m.util, 1e3 * m.compute_s, 1e3 * m.comm_s, 1e3 * m.idle_s);
    }
    if (o->metrics) {
        fprintf(o->metrics, "{\"type\":\"summary\",\"steps\":%ld", res->steps);
        json_num(o->metrics, "seconds", res->seconds);
        json_num(o->metrics, "samples_per_s", rate);
        json_num(o->metrics, "final_loss", res->final_loss);
        if (res->test_accuracy >= 0)
            json_num(o->metrics, "test_accuracy", res->test_accuracy);
        else
            fputs(",\"test_accuracy\":null", o->metrics);
        fputs("}\n", o->metrics);
    }
}

int dp_headless_run(dp_trainer *t, const dp_headless_opts *o, dp_headless_result *res,
                    dp_err *err)
{
    memset(res, 0, sizeof *res);
    res->test_accuracy = -1;
    long per_epoch = dp_trainer_steps_per_epoch(t);
    long epochs = (o->total_steps + per_epoch - 1) / per_epoch;
    double start = now_s(), last_print = -1e9, samples = 0, step_time = 0;
    dp_step_report r = { 0 };
    bool evaluated_last = false;
    int rc = 0;
    int next_switch = 0;
    while (res->steps < o->total_steps && !*o->stop) {
        if (next_switch < o->n_switches && o->switches[next_switch].step == res->steps + 1 &&
            dp_trainer_request_switch(t, &o->switches[next_switch++].plan, err) < 0) {
            rc = -1;
            break;
        }
        if (dp_trainer_step(t, &r, err) < 0) {
            rc = -1;
            break;
        }
        if (r.switched)
            fprintf(o->out, "%sstep %ld: switched from %s to %s in %.1f ms\n",
                    o->out_is_tty ? "\r\033[K" : "", r.step, r.switch_from, r.switch_to,
                    1e3 * r.switch_seconds);
        res->steps = r.step;
        res->final_loss = r.loss;
        samples += r.rows;
        step_time += r.seconds;
        if (o->metrics)
            write_step_records(o->metrics, t, &r);
        double now = now_s();
        bool last = r.step == o->total_steps;
        if (now - last_print >= (o->out_is_tty ? 0.1 : 1.0) || last || r.epoch_end) {
            double rate = step_time > 0 ? samples / step_time : 0.0;
            double eta = (now - start) / (double)r.step * (double)(o->total_steps - r.step);
            print_progress(o, &r, epochs, rate, eta);
            last_print = now;
        }
        evaluated_last = r.epoch_end || (o->eval_every && r.step % o->eval_every == 0);
        if (evaluated_last)
            evaluate(t, o, &r, res);
    }
    res->interrupted = res->steps < o->total_steps && rc == 0;
    if (rc == 0 && !res->interrupted && res->steps > 0 && !evaluated_last)
        evaluate(t, o, &r, res);
    res->seconds = now_s() - start;
    print_summary(t, o, res, step_time > 0 ? samples / step_time : 0.0);
    if (o->metrics)
        fflush(o->metrics);
    return rc;
}
