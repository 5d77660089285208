/* trainer.c -- training steps and evaluation on one device holding the whole model. */
#include "engine/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/backend.h"

struct dp_trainer {
    dp_trainer_config cfg;
    const dp_dataset *train, *test;
    dp_loader loader;
    dp_device dev;
    dp_stage stage;
    dp_metrics metrics;
    long steps_done;
    long updates_done; /* steps whose update was applied (AdamW's t) */
    float *batch_x;    /* host [batch, features] */
    int32_t *batch_y;  /* host [batch] */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

dp_trainer *dp_trainer_create(const dp_trainer_config *c, const dp_dataset *train,
                              const dp_dataset *test, const float *init, dp_err *err)
{
    dp_trainer *t = calloc(1, sizeof *t);
    if (!t) {
        dp_fail(err, "out of host memory");
        return NULL;
    }
    t->cfg = *c;
    t->train = train;
    t->test = test;
    const dp_model *m = c->model;
    int threads = c->blas_threads > 0 ? c->blas_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (dp_cpu_device_init(&t->dev, 0, threads, err) < 0)
        goto fail_dev;
    if (dp_loader_init(&t->loader, train, c->batch, c->shuffle, c->seed, err) < 0)
        goto fail_loader;
    t->batch_x = malloc((size_t)c->batch * m->in_features * sizeof *t->batch_x);
    t->batch_y = malloc((size_t)c->batch * sizeof *t->batch_y);
    if (!t->batch_x || !t->batch_y) {
        dp_fail(err, "out of host memory for a batch of %d samples", c->batch);
        goto fail_batch;
    }
    if (dp_stage_create(&t->stage, m, &t->dev, 0, m->n_layers, c->batch, &c->optim, err) < 0)
        goto fail_batch;
    if (dp_metrics_init(&t->metrics, 1) < 0) {
        dp_fail(err, "out of host memory");
        goto fail_metrics;
    }
    float *host = init ? NULL : malloc(m->n_params * sizeof *host);
    if (!init && !host) {
        dp_fail(err, "out of host memory for %zu parameters", m->n_params);
        goto fail_params;
    }
    if (!init)
        dp_model_init_params(m, host, c->seed);
    dp_stage_upload_params(&t->stage, init ? init : host);
    free(host);
    return t;
fail_params:
    dp_metrics_free(&t->metrics);
fail_metrics:
    dp_stage_destroy(&t->stage);
fail_batch:
    free(t->batch_x);
    free(t->batch_y);
    dp_loader_free(&t->loader);
fail_loader:
    dp_cpu_device_destroy(&t->dev);
fail_dev:
    free(t);
    return NULL;
}

void dp_trainer_destroy(dp_trainer *t)
{
    if (!t)
        return;
    dp_metrics_free(&t->metrics);
    dp_stage_destroy(&t->stage);
    dp_loader_free(&t->loader);
    dp_cpu_device_destroy(&t->dev);
    free(t->batch_x);
    free(t->batch_y);
    free(t);
}

long dp_trainer_steps_per_epoch(const dp_trainer *t)
{
    return dp_loader_steps_per_epoch(&t->loader);
}

/* Publishes the device's numbers for the step just taken. */
static void publish(dp_trainer *t, const dp_step_report *r, double busy_s)
{
    dp_device_metrics m = { .step = r->step, .loss = r->loss };
    snprintf(m.device, sizeof m.device, "%s", t->dev.name);
    snprintf(m.role, sizeof m.role, "single");
    m.mem_bytes = t->dev.mem_held;
    m.mem_peak_bytes = t->dev.mem_peak;
    m.mem_total_bytes = t->dev.mem_total;
    m.compute_s = busy_s;
    m.idle_s = r->seconds > busy_s ? r->seconds - busy_s : 0.0;
    m.util = r->seconds > 0 ? busy_s / r->seconds : 0.0;
    dp_metrics_publish(&t->metrics, 0, &m);
}

int dp_trainer_step(dp_trainer *t, dp_step_report *r, dp_err *err)
{
    double t0 = now_s(), busy0 = t->dev.be->busy_seconds(&t->dev);
    dp_stage *s = &t->stage;
    const dp_backend *be = t->dev.be;
    memset(r, 0, sizeof *r);
    r->epoch = t->loader.epoch + 1;
    int rows = dp_loader_next(&t->loader, t->batch_x, t->batch_y);
    r->epoch_end = t->loader.pos == 0;
    r->rows = rows;
    r->step = ++t->steps_done;

    be->upload(&t->dev, s->acts[0], t->batch_x, (size_t)rows * t->cfg.model->in_features * 4);
    be->upload(&t->dev, s->labels, t->batch_y, (size_t)rows * sizeof(int32_t));
    be->zero(&t->dev, s->stats, 2 * sizeof(float));
    dp_stage_forward(s, rows);
    /* The gradient of the batch mean: every sample's loss is scaled by 1 / rows. */
    float *dlogits = dp_stage_loss(s, rows, 1.0f / (float)rows, true);
    dp_stage_backward(s, rows, dlogits, false, false);
    float stats[2];
    be->download(&t->dev, stats, s->stats, sizeof stats);
    r->loss = stats[0] / rows;

    const dp_optim_config *oc = &t->cfg.optim;
    double clip = 1.0;
    if (oc->clip > 0.0) {
        r->grad_norm = sqrt(be->sum_squares(&t->dev, s->grads, s->n_params));
        clip = dp_optim_clip_factor(oc, r->grad_norm);
    }
    if (!isfinite(r->loss) || !isfinite(r->grad_norm)) {
        if (t->cfg.on_nan == DP_NAN_STOP)
            return dp_fail(err, "step %ld: the loss is %g; stopping (lower optim.lr, set "
                                "optim.clip, or set run.on_nan = skip)",
                           r->step, r->loss);
        r->skipped = true;
    } else {
        if (clip < 1.0)
            be->scale(&t->dev, s->grads, (float)clip, s->n_params);
        r->lr = dp_optim_lr(oc, r->step - 1, t->cfg.total_steps);
        dp_optim_update(oc, &t->dev, s->params, s->grads, s->opt_state, s->n_params,
                        ++t->updates_done, r->lr);
    }
    be->synchronize(&t->dev);
    r->seconds = now_s() - t0;
    publish(t, r, be->busy_seconds(&t->dev) - busy0);
    return 0;
}

void dp_trainer_evaluate(dp_trainer *t, dp_eval_report *r)
{
    dp_stage *s = &t->stage;
    const dp_backend *be = t->dev.be;
    const dp_dataset *d = t->test;
    size_t f = (size_t)d->features;
    double loss = 0.0, correct = 0.0;
    for (long at = 0; at < d->n; at += s->max_rows) {
        int rows = d->n - at < s->max_rows ? (int)(d->n - at) : s->max_rows;
        be->upload(&t->dev, s->acts[0], d->x + (size_t)at * f, (size_t)rows * f * sizeof(float));
        be->upload(&t->dev, s->labels, d->y + at, (size_t)rows * sizeof(int32_t));
        be->zero(&t->dev, s->stats, 2 * sizeof(float));
        dp_stage_forward(s, rows);
        dp_stage_loss(s, rows, 0.0f, false);
        float stats[2];
        be->download(&t->dev, stats, s->stats, sizeof stats);
        loss += stats[0];
        correct += stats[1];
    }
    r->samples = d->n;
    r->loss = d->n ? loss / (double)d->n : 0.0;
    r->accuracy = d->n ? correct / (double)d->n : 0.0;
}

void dp_trainer_get_params(dp_trainer *t, float *host)
{
    dp_stage_download_params(&t->stage, host);
    t->dev.be->synchronize(&t->dev);
}

int dp_trainer_device_count(const dp_trainer *t)
{
    return 1;
}

dp_device *dp_trainer_device(dp_trainer *t, int i)
{
    return &t->dev;
}

dp_metrics *dp_trainer_metrics(dp_trainer *t)
{
    return &t->metrics;
}
