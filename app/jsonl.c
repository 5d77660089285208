/* jsonl.c -- metrics as JSON Lines. */
#include "app/jsonl.h"

#include <math.h>
#include <string.h>

/* JSON has no NaN or infinity: those become null. */
static void json_num(FILE *f, const char *key, double v)
{
    if (isfinite(v))
        fprintf(f, ",\"%s\":%.9g", key, v);
    else
        fprintf(f, ",\"%s\":null", key);
}

/* ,"key":"text" with the text escaped as JSON needs. */
static void json_str(FILE *f, const char *key, const char *s)
{
    fprintf(f, ",\"%s\":\"", key);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c < 0x20)
            fprintf(f, "\\u%04x", *c);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

/* The plan advisor's table: a record a candidate, then the outcome. */
static void write_advice(FILE *f, const dp_advice_table *t, long step)
{
    for (int i = 0; i < t->n; i++) {
        const dp_advice *a = &t->c[i];
        bool measured = a->steps > 0 && !a->left_out;
        fprintf(f, "{\"type\":\"advice\",\"step\":%ld", step);
        json_str(f, "plan", a->plan[0] ? a->plan : dp_strategy_name(a->req.strategy));
        json_str(f, "strategy", dp_strategy_name(a->req.strategy));
        bool pipeline = a->req.strategy == DP_STRATEGY_PP || a->req.strategy == DP_STRATEGY_HYBRID;
        fprintf(f, ",\"stages\":%d,\"micro\":%d", pipeline ? a->req.stages : 1, a->req.micro);
        if (pipeline)
            json_str(f, "schedule", dp_schedule_name(a->req.schedule));
        else /* one stage: no schedule */
            fputs(",\"schedule\":null", f);
        fprintf(f, ",\"devices\":%d,\"chosen\":%s,\"measured\":%s,\"dropped\":%s,"
                   "\"steps\":%d",
                a->devices, a->chosen ? "true" : "false", measured ? "true" : "false",
                a->dropped ? "true" : "false", a->steps);
        json_num(f, "samples_per_s", measured ? t->batch / a->step_s : NAN);
        json_num(f, "step_ms", measured ? 1e3 * a->step_s : NAN);
        json_num(f, "idle_share", measured ? a->idle : NAN);
        json_num(f, "comm_share", measured ? a->comm : NAN);
        json_num(f, "mfu", measured && a->mfu >= 0 ? a->mfu : NAN);
        json_num(f, "estimate_s", a->estimate_s > 0 ? a->estimate_s : NAN);
        fputs(",\"memory\":[", f);
        for (int d = 0, k = 0; d < t->n_devices; d++) {
            if (!a->need[d] && !a->peak[d])
                continue;
            fprintf(f, "%s{\"device\":\"%s\",\"predicted_bytes\":%zu", k++ ? "," : "",
                    t->device[d], a->need[d]);
            if (measured)
                fprintf(f, ",\"peak_bytes\":%zu}", a->peak[d]);
            else
                fputs(",\"peak_bytes\":null}", f);
        }
        fputc(']', f);
        if (a->left_out)
            json_str(f, "left_out", a->why);
        else
            fputs(",\"left_out\":null", f);
        fputs("}\n", f);
    }
    fprintf(f, "{\"type\":\"advice_outcome\",\"step\":%ld", step);
    if (t->chosen >= 0)
        json_str(f, "chosen", t->c[t->chosen].plan);
    else
        fputs(",\"chosen\":null", f);
    json_str(f, "outcome", t->outcome);
    fprintf(f, ",\"plans\":%d,\"measured\":%d,\"truncated\":%s", t->n, t->measured,
            t->truncated ? "true" : "false");
    if (t->first_step > 0)
        fprintf(f, ",\"first_step\":%ld,\"last_step\":%ld", t->first_step, t->last_step);
    else /* no step was taken */
        fputs(",\"first_step\":null,\"last_step\":null", f);
    json_num(f, "seconds", t->seconds);
    fputs("}\n", f);
}

static void on_event(void *arg, const dp_run_event *e)
{
    FILE *f = arg;
    if (e->kind == DP_RUN_ADVICE)
        write_advice(f, e->advice, e->step);
    if (e->kind != DP_RUN_SWITCHED)
        return;
    const dp_step_report *r = e->step_report;
    fprintf(f, "{\"type\":\"switch\",\"step\":%ld,\"from\":\"%s\",\"to\":\"%s\"", r->step,
            r->switch_from, r->switch_to);
    json_num(f, "seconds", r->switch_seconds);
    if (r->batch_stats[0])
        fprintf(f, ",\"batch_norm\":\"%s\"", r->batch_stats);
    fputs("}\n", f);
}

static void write_device_records(FILE *f, dp_trainer *t, const dp_step_report *r)
{
    dp_metrics *ms = dp_trainer_metrics(t);
    for (int i = 0; i < ms->n_devices; i++) {
        dp_device_metrics m = dp_metrics_read(ms, i);
        /* an unused device's figures are of no step: its record carries the step's number */
        long step = strcmp(m.role, "unused") == 0 ? r->step : m.step;
        fprintf(f, "{\"type\":\"device\",\"step\":%ld,\"device\":\"%s\",\"role\":\"%s\"", step,
                m.device, m.role);
        json_num(f, "loss", m.loss);
        fprintf(f, ",\"mem_bytes\":%zu,\"mem_peak_bytes\":%zu,\"mem_total_bytes\":%zu,"
                   "\"act_peak_bytes\":%zu",
                m.mem_bytes, m.mem_peak_bytes, m.mem_total_bytes, m.act_peak_bytes);
        json_num(f, "util", m.util);
        fprintf(f, ",\"threads\":%d", m.threads);
        json_num(f, "cpu_s", m.cpu_s);
        json_num(f, "compute_s", m.compute_s);
        json_num(f, "comm_s", m.comm_s);
        json_num(f, "idle_s", m.idle_s);
        json_num(f, "flops", m.flops);
        json_num(f, "peak_flops", m.peak_flops > 0 ? m.peak_flops : NAN); /* null: unknown */
        json_num(f, "mfu", m.mfu >= 0 ? m.mfu : NAN);
        fputs("}\n", f);
    }
}

static void on_step(void *arg, dp_trainer *t, const dp_step_report *r, const dp_run_progress *p)
{
    (void)p;
    FILE *f = arg;
    fprintf(f, "{\"type\":\"step\",\"step\":%ld,\"epoch\":%ld", r->step, r->epoch);
    json_num(f, "loss", r->loss);
    if (r->gan) {
        json_num(f, "loss_g", r->loss_g);
        json_num(f, "d_real", r->d_real);
        json_num(f, "d_fake", r->d_fake);
        json_num(f, "d_fake_after", r->d_fake_after);
        json_num(f, "grad_norm_g", r->grad_norm_g);
    }
    json_num(f, "lr", r->lr);
    json_num(f, "samples_per_s", r->seconds > 0 ? r->rows / r->seconds : 0.0);
    fprintf(f, ",\"strategy\":\"%s\"}\n", dp_trainer_strategy(t));
    write_device_records(f, t, r);
}

static void on_eval(void *arg, const dp_step_report *r, const dp_eval_report *e)
{
    FILE *f = arg;
    fprintf(f, "{\"type\":\"eval\",\"step\":%ld,\"epoch\":%ld", r->step, r->epoch);
    json_num(f, "loss", e->loss);
    if (e->masked) { /* loss, bits and accuracy are per masked byte */
        fprintf(f, ",\"masked\":true,\"masked_bytes\":%ld", e->positions);
        json_num(f, "bits_per_masked_byte", e->loss / M_LN2);
    } else if (e->text) {
        json_num(f, "bits_per_byte", e->loss / M_LN2);
    }
    json_num(f, "accuracy", e->accuracy);
    if (e->gan) {
        json_num(f, "d_real", e->d_real);
        if (e->generated > 0) {
            fprintf(f, ",\"generated\":%ld", e->generated);
            json_num(f, "frechet", e->frechet);
            json_num(f, "score", e->score);
        }
    }
    fputs("}\n", f);
}

static void on_finished(void *arg, dp_trainer *t, const dp_run_result *res, int rc,
                        const dp_err *err)
{
    (void)t, (void)rc, (void)err;
    FILE *f = arg;
    fprintf(f, "{\"type\":\"summary\",\"steps\":%ld", res->steps);
    json_num(f, "seconds", res->seconds);
    json_num(f, "samples_per_s", res->samples_per_s);
    if (res->steps > res->first_step)
        json_num(f, "final_loss", res->final_loss);
    else
        fputs(",\"final_loss\":null", f); /* no step ran: there is no loss */
    if (res->gan && res->steps > res->first_step)
        json_num(f, "final_loss_g", res->final_loss_g);
    if (res->test_gan && res->test_generated > 0) {
        json_num(f, "test_frechet", res->test_frechet);
        json_num(f, "test_score", res->test_score);
    }
    if (res->test_accuracy >= 0)
        json_num(f, "test_accuracy", res->test_accuracy);
    else
        fputs(",\"test_accuracy\":null", f);
    fputs("}\n", f);
    fflush(f);
}

dp_run_observer dp_jsonl_observer(FILE *f)
{
    return (dp_run_observer){ .arg = f, .event = on_event, .step_done = on_step,
                              .eval_done = on_eval, .finished = on_finished };
}
