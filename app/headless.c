/* headless.c -- progress output and JSON Lines metrics. */
#include "base/clock.h"
#include "app/headless.h"
#include "engine/world.h"

#include <math.h>
#include <string.h>
#include <time.h>

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

static void print_progress(const dp_headless_opts *o, const dp_step_report *r, long epochs,
                           double rate, double eta)
{
    char eta_text[32];
    dp_format_duration(eta_text, sizeof eta_text, eta);
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
    char bits[48] = "";
    if (e.text)
        snprintf(bits, sizeof bits, " (%.4f bits per byte)", e.loss / M_LN2);
    if (o->out)
        fprintf(o->out, "%sstep %ld, epoch %ld: test loss %.4f%s, accuracy %.4f (%ld samples)\n",
                o->out_is_tty ? "\r\033[K" : "", r->step, r->epoch, e.loss, bits, e.accuracy,
                e.samples);
    if (o->metrics) {
        fprintf(o->metrics, "{\"type\":\"eval\",\"step\":%ld,\"epoch\":%ld", r->step, r->epoch);
        json_num(o->metrics, "loss", e.loss);
        if (e.text)
            json_num(o->metrics, "bits_per_byte", e.loss / M_LN2);
        json_num(o->metrics, "accuracy", e.accuracy);
        fputs("}\n", o->metrics);
    }
    if (o->status) {
        pthread_mutex_lock(&o->status->lock);
        o->status->test_accuracy = e.accuracy;
        o->status->test_step = r->step; /* the header shows it; the event line is kept for
                                          switches, keys and the end */
        pthread_mutex_unlock(&o->status->lock);
    }
}

void dp_headless_print_summary(dp_trainer *t, const dp_headless_result *res, FILE *out)
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

static void write_summary_record(FILE *f, const dp_headless_result *res)
{
    fprintf(f, "{\"type\":\"summary\",\"steps\":%ld", res->steps);
    json_num(f, "seconds", res->seconds);
    json_num(f, "samples_per_s", res->samples_per_s);
    if (res->steps > res->first_step)
        json_num(f, "final_loss", res->final_loss);
    else
        fputs(",\"final_loss\":null", f); /* no step ran: there is no loss */
    if (res->test_accuracy >= 0)
        json_num(f, "test_accuracy", res->test_accuracy);
    else
        fputs(",\"test_accuracy\":null", f);
    fputs("}\n", f);
}

/* What decides the next step, the same in every process of the run: the dashboard's (rank
 * 0's) pause, quit and switch, and a signal to any process. Kept as doubles for dp_world_sum:
 * the other ranks add zeros, apart from their stop. */
enum {
    CTL_SIGNAL, CTL_QUIT, CTL_PAUSED, CTL_SWITCH, CTL_STRATEGY, CTL_STAGES, CTL_MICRO,
    CTL_SCHEDULE, CTL_N
};

/* This process's part of the control: its signal, and rank 0's dashboard (whose switch it
 * takes). */
static void local_control(const dp_headless_opts *o, double *v)
{
    memset(v, 0, CTL_N * sizeof *v);
    v[CTL_SIGNAL] = *o->stop != 0;
    dp_run_status *s = o->status;
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    v[CTL_QUIT] = s->quit;
    v[CTL_PAUSED] = s->paused;
    if (s->switch_asked) {
        v[CTL_SWITCH] = 1;
        v[CTL_STRATEGY] = s->switch_to.strategy;
        v[CTL_STAGES] = s->switch_to.stages;
        v[CTL_MICRO] = s->switch_to.micro;
        v[CTL_SCHEDULE] = s->switch_to.schedule;
        s->switch_asked = false;
    }
    pthread_mutex_unlock(&s->lock);
}

/* Waits up to 100 ms for the dashboard to resume (or a signal, which sets *stop without the
 * lock); the other processes of a paused run sleep as long before they ask again. */
static void wait_paused(const dp_headless_opts *o)
{
    dp_run_status *s = o->status;
    if (!s) {
        nanosleep(&(struct timespec){ 0, 100000000L }, NULL);
        return;
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 100000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->lock);
    if (s->paused && !s->quit && !*o->stop)
        pthread_cond_timedwait(&s->changed, &s->lock, &until);
    pthread_mutex_unlock(&s->lock);
}

typedef enum next_step { GO, QUIT, INTERRUPT } next_step;

/* Before each step: asks for a switch the dashboard wants and waits while it pauses the run;
 * *next says whether to go on, or stop for the dashboard's quit or a signal. Under mpirun every
 * process does the same at the same step. Fails when a switch cannot be asked for here
 * (another process could). */
static int before_step(dp_trainer *t, const dp_headless_opts *o, next_step *next, dp_err *err)
{
    for (;;) {
        double v[CTL_N];
        dp_world_heartbeat();
        local_control(o, v);
        dp_world_sum(v, CTL_N);
        if (v[CTL_SWITCH] > 0) {
            dp_plan_request req = {
                .strategy = (dp_strategy)v[CTL_STRATEGY], .stages = (int)v[CTL_STAGES],
                .micro = (int)v[CTL_MICRO], .schedule = (dp_schedule)v[CTL_SCHEDULE],
            };
            if (dp_trainer_request_switch(t, &req, err) < 0)
                return -1;
        }
        *next = v[CTL_SIGNAL] > 0 ? INTERRUPT : v[CTL_QUIT] > 0 ? QUIT : GO;
        if (*next != GO || v[CTL_PAUSED] == 0)
            return 0;
        wait_paused(o);
    }
}

/* Tells the dashboard about the step just taken; rate: samples/s over the recent steps. */
static void report_step(dp_trainer *t, const dp_headless_opts *o, const dp_step_report *r,
                        double rate)
{
    dp_run_status *s = o->status;
    pthread_mutex_lock(&s->lock);
    s->step = r->step;
    s->epoch = r->epoch;
    s->loss = r->loss;
    s->lr = r->lr;
    s->samples_per_s = rate;
    if (r->switched || s->plan[0] == '\0') {
        char plan[48];
        dp_trainer_describe(t, plan, sizeof plan);
        if (dp_world_size() > 1) /* the same plan in every process */
            snprintf(s->plan, sizeof s->plan, "%d processes x %s", dp_world_size(), plan);
        else
            snprintf(s->plan, sizeof s->plan, "%s", plan);
        s->request = dp_trainer_request(t);
        s->pipeline = s->request.strategy == DP_STRATEGY_PP ||
                      s->request.strategy == DP_STRATEGY_HYBRID;
    }
    pthread_mutex_unlock(&s->lock);
    if (r->switched)
        dp_run_status_event(s, "step %ld: switched to %s in %.0f ms", r->step, r->switch_to,
                            1e3 * r->switch_seconds);
}

/* Writes a checkpoint and says where; remembers its step in *written. */
static int checkpoint(dp_trainer *t, const dp_headless_opts *o, long step, long *written,
                      dp_err *err)
{
    char path[4200];
    double t0 = dp_now_s();
    if (o->write_checkpoint(o->checkpoint_arg, t, path, sizeof path, err) < 0)
        return -1;
    double ms = 1e3 * (dp_now_s() - t0);
    *written = step;
    if (o->out)
        fprintf(o->out, "%scheckpoint: %s (%.0f ms)\n", o->out_is_tty ? "\r\033[K" : "", path,
                ms);
    if (o->status)
        dp_run_status_event(o->status, "step %ld: checkpoint %s (%.0f ms)", step, path, ms);
    return 0;
}

/* Whether the dashboard asked for a checkpoint (and clears the request). */
static bool checkpoint_asked(const dp_headless_opts *o)
{
    if (!o->status)
        return false;
    pthread_mutex_lock(&o->status->lock);
    bool asked = o->status->checkpoint;
    o->status->checkpoint = false;
    pthread_mutex_unlock(&o->status->lock);
    return asked;
}

int dp_headless_run(dp_trainer *t, const dp_headless_opts *o, dp_headless_result *res,
                    dp_err *err)
{
    memset(res, 0, sizeof *res);
    res->test_accuracy = -1;
    long per_epoch = dp_trainer_steps_per_epoch(t);
    long epochs = (o->total_steps + per_epoch - 1) / per_epoch;
    double start = dp_now_s(), last_print = -1e9, samples = 0, step_time = 0;
    double recent_rate = 0; /* samples/s, smoothed over about ten steps */
    dp_step_report r = { 0 };
    bool evaluated_last = false;
    int rc = 0;
    int next_switch = 0;
    dp_train_state resumed;
    dp_trainer_train_state(t, &resumed);
    res->steps = res->first_step = resumed.step; /* a resumed run continues from there */
    long checkpointed = resumed.step;
    if (o->status) {
        pthread_mutex_lock(&o->status->lock);
        o->status->can_checkpoint = o->write_checkpoint != NULL;
        pthread_mutex_unlock(&o->status->lock);
    }
    next_step next = GO;
    dp_world_watchdog_start(o->watchdog_s);
    while (res->steps < o->total_steps) {
        if (before_step(t, o, &next, err) < 0) {
            rc = -1;
            break;
        }
        if (next != GO)
            break;
        if (next_switch < o->n_switches && o->switches[next_switch].step == res->steps + 1 &&
            dp_trainer_request_switch(t, &o->switches[next_switch++].plan, err) < 0) {
            rc = -1;
            break;
        }
        if (dp_trainer_step(t, &r, err) < 0) {
            rc = -1;
            break;
        }
        dp_world_heartbeat();
        if (r.skipped) {
            if (o->out)
                fprintf(o->out, "%sstep %ld: the loss is %g: update skipped; %s\n",
                        o->out_is_tty ? "\r\033[K" : "", r.step, r.loss, r.nonfinite);
            if (o->status)
                dp_run_status_event(o->status, "step %ld: non-finite loss, update skipped",
                                    r.step);
        }
        if (r.switched && o->out)
            fprintf(o->out, "%sstep %ld: switched from %s to %s in %.1f ms\n",
                    o->out_is_tty ? "\r\033[K" : "", r.step, r.switch_from, r.switch_to,
                    1e3 * r.switch_seconds);
        res->steps = r.step;
        res->final_loss = r.loss;
        samples += r.rows;
        step_time += r.seconds;
        double rate = r.seconds > 0 ? r.rows / r.seconds : 0.0;
        recent_rate = recent_rate > 0 ? 0.9 * recent_rate + 0.1 * rate : rate;
        if (o->metrics)
            write_step_records(o->metrics, t, &r);
        if (o->status)
            report_step(t, o, &r, recent_rate);
        double now = dp_now_s();
        bool last = r.step == o->total_steps;
        if (o->out && (now - last_print >= (o->out_is_tty ? 0.1 : 1.0) || last || r.epoch_end)) {
            double eta = (now - start) / (double)(r.step - resumed.step) *
                         (double)(o->total_steps - r.step);
            print_progress(o, &r, epochs, step_time > 0 ? samples / step_time : 0.0, eta);
            last_print = now;
        }
        evaluated_last = r.epoch_end || (o->eval_every && r.step % o->eval_every == 0);
        if (evaluated_last) {
            evaluate(t, o, &r, res);
            dp_world_heartbeat();
        }
        bool scheduled = o->checkpoint_every && r.step % o->checkpoint_every == 0;
        if (o->write_checkpoint && (checkpoint_asked(o) || scheduled) &&
            checkpoint(t, o, r.step, &checkpointed, err) < 0) {
            rc = -1;
            break;
        }
    }
    bool early = res->steps < o->total_steps && rc == 0;
    res->failed = rc < 0;
    res->interrupted = early && next == INTERRUPT;
    res->quit = early && next == QUIT;
    if (rc == 0 && !early && res->steps > resumed.step && !evaluated_last)
        evaluate(t, o, &r, res);
    if (rc == 0 && o->write_checkpoint && checkpointed != res->steps &&
        checkpoint(t, o, res->steps, &checkpointed, err) < 0)
        rc = -1;
    dp_world_watchdog_stop();
    res->seconds = dp_now_s() - start;
    res->samples_per_s = step_time > 0 ? samples / step_time : 0.0;
    if (o->out) {
        if (o->out_is_tty)
            fputs("\r\033[K", o->out);
        dp_headless_print_summary(t, res, o->out);
    }
    if (o->metrics) {
        write_summary_record(o->metrics, res);
        fflush(o->metrics);
    }
    if (o->status) {
        pthread_mutex_lock(&o->status->lock);
        o->status->finished = true;
        pthread_mutex_unlock(&o->status->lock);
        if (rc < 0)
            dp_run_status_event(o->status, "stopped: %s", err->msg);
        else
            dp_run_status_event(o->status, "%s after %ld steps: final loss %.4f%s",
                                early ? "stopped" : "finished", res->steps, res->final_loss,
                                early ? "" : "; press q to leave");
    }
    return rc;
}
