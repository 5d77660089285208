/* trainer.c -- the coordinator: steps, evaluation, switching strategy, metrics. */
#include "base/clock.h"
#include "engine/trainer.h"
#include "engine/world.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "datasets/prefetch.h"
#include "engine/backend.h"
#include "engine/backend_cpu.h"
#include "engine/quality.h"
#include "engine/worker.h"

struct dp_trainer {
    dp_trainer_config cfg;
    const dp_dataset *train, *test;
    dp_loader loader;
    int n_devices;
    dp_device *devices;   /* [n_devices]: cfg.devices's, borrowed */
    dp_metrics metrics;   /* a slot per device */
    dp_plan plan;
    dp_team *team;
    float *host_params;   /* [n_params]: the single-device layout, for switches */
    double *layer_cost;   /* [n_layers]: each layer's measured seconds (at the first pipeline
                             plan, or the plan advisor's first question), or NULL */
    bool layer_cost_tried; /* ... once: a failure is not tried again */
    int layer_cost_rows;  /* ... for passes of this many rows, */
    int layer_cost_threads; /* ... with this many threads a GEMM (CPU devices) */
    size_t *base_held;    /* [n_devices]: bytes each device held before the plan in use
                             started (the data kept there) */
    float *host_state;    /* [state_per_param][n_params] */
    long steps_done;
    long updates_done;    /* steps whose update was applied (AdamW's t) */
    /* The batches, gathered ahead from `loader` (by the prefetch thread with GPU devices,
     * which then alone uses the loader; by this thread with CPU devices): see
     * datasets/prefetch.h for the hand-off. */
    dp_prefetch *prefetch;
    long next_epoch, next_position; /* the data position after the batches trained on */
    dp_resident *resident; /* [n_devices]: the data sets on each device, or NULL */
    /* a switch asked for, applied before the next step; any thread may ask */
    pthread_mutex_t switch_lock;
    bool switch_pending;
    dp_plan switch_plan;
    float *samples;       /* a GAN's: [DP_GAN_SAMPLES, image] from the fixed noise, the last
                             evaluation's */
    /* a GAN's quality figures (cfg.classifier): the classifier on device 0, made at the first
     * evaluation; the test split's statistics (once) and the generated samples' */
    dp_quality *quality;
    dp_feature_stats test_stats, gen_stats;
    bool test_stats_done;
    float *quality_batch;  /* [batch, image] */
};

/* The first failure a device of the plan reports (a CUDA error), into err. */
static int device_failure(dp_trainer *t, dp_err *err)
{
    for (int i = 0; i < t->plan.workers; i++) {
        const char *e = t->devices[i].be->error(&t->devices[i]);
        if (e)
            return dp_fail(err, "%s: %s", t->devices[i].name, e);
    }
    return 0;
}

/* The OpenMP team each worker's operations get when `workers` workers run: the
 * configuration's, else all the cores for one worker and 1 each for several (they share the
 * cores). */
static int team_threads(const dp_trainer *t, int workers)
{
    int threads = t->cfg.team_threads;
    return threads > 0 ? threads : workers > 1 ? 1 : dp_cpu_cores();
}

static void set_team_threads(const dp_trainer *t, int workers)
{
    dp_cpu_set_team_threads(team_threads(t, workers));
}

/* Copies the data sets to every device when every device is a GPU and they take at most an
 * eighth of each one's memory: a step then gathers its batch on the device from the samples'
 * indices, with no gather on the host and no upload of features (PCIe moves 12.8 MB a step for
 * a batch of 4096 MNIST images, 7 % of the step of the MLP of bench/). Kept across plans. */
static int make_resident(dp_trainer *t, dp_err *err)
{
    const dp_dataset *tr = t->train, *te = t->test;
    size_t ty = (size_t)tr->targets * sizeof(int32_t);
    size_t train_bytes = (size_t)tr->n * ((size_t)tr->features * sizeof(float) + ty);
    size_t test_bytes = (size_t)te->n * ((size_t)te->features * sizeof(float) + ty);
    if (!t->cfg.data_on_device || t->n_devices < 1)
        return 0;
    for (int i = 0; i < t->n_devices; i++)
        if (t->devices[i].be->host_memory ||
            8 * (train_bytes + test_bytes) > t->devices[i].mem_total)
            return 0;
    if (!(t->resident = calloc((size_t)t->n_devices, sizeof *t->resident)))
        return dp_fail(err, "out of host memory");
    for (int i = 0; i < t->n_devices; i++) {
        dp_device *d = &t->devices[i];
        dp_resident *r = &t->resident[i];
        size_t fx = (size_t)tr->features * sizeof(float);
        d->be->bind(d);
        if (!(r->train_x = dp_device_alloc(d, (size_t)tr->n * fx, "the training set", err)) ||
            !(r->train_y = dp_device_alloc(d, (size_t)tr->n * ty, "the training labels", err)) ||
            !(r->test_x = dp_device_alloc(d, (size_t)te->n * fx, "the test set", err)) ||
            !(r->test_y = dp_device_alloc(d, (size_t)te->n * ty, "the test labels", err)) ||
            !(r->idx = dp_device_alloc(d, (size_t)t->cfg.batch * 4, "batch indices", err)))
            return -1;
        d->be->upload(d, r->train_x, tr->x, (size_t)tr->n * fx);
        d->be->upload(d, r->train_y, tr->y, (size_t)tr->n * ty);
        d->be->upload(d, r->test_x, te->x, (size_t)te->n * fx);
        d->be->upload(d, r->test_y, te->y, (size_t)te->n * ty);
    }
    return 0;
}

static void free_resident(dp_trainer *t)
{
    for (int i = 0; t->resident && i < t->n_devices; i++) {
        dp_device *d = &t->devices[i];
        dp_resident *r = &t->resident[i];
        size_t fx = (size_t)t->train->features * sizeof(float);
        size_t ty = (size_t)t->train->targets * sizeof(int32_t);
        dp_device_free(d, r->train_x, (size_t)t->train->n * fx);
        dp_device_free(d, r->train_y, (size_t)t->train->n * ty);
        dp_device_free(d, r->test_x, (size_t)t->test->n * (size_t)t->test->features * 4);
        dp_device_free(d, r->test_y, (size_t)t->test->n * ty);
        dp_device_free(d, r->idx, (size_t)t->cfg.batch * 4);
    }
    free(t->resident);
    t->resident = NULL;
}

/* Devices that the plan leaves without a worker say so in the metrics, with no history. */
static void publish_unused(dp_trainer *t)
{
    for (int i = t->plan.workers; i < t->n_devices; i++) {
        const dp_device *d = &t->devices[i];
        dp_device_metrics m = { .step = t->steps_done, .loss = NAN, .mfu = -1 };
        snprintf(m.device, sizeof m.device, "%s", d->name);
        snprintf(m.role, sizeof m.role, "unused");
        m.mem_bytes = d->mem_held;
        m.mem_peak_bytes = d->mem_peak;
        m.mem_total_bytes = d->be->host_memory ? 0 : d->mem_total; /* CPU: the host's */
        dp_metrics_clear_history(&t->metrics, i); /* what it did in an earlier plan is stale */
        dp_metrics_publish(&t->metrics, i, &m);
        dp_metrics_set_activity(&t->metrics, i, DP_ACTIVITY_IDLE);
    }
}

/* Measures the layers' times on device 0 for passes of `rows` rows into t->layer_cost, once,
 * whether it succeeds or not (NULL when the model does not fit there: every plan is then cut
 * by FLOPs, so that the cuts, and the memory predicted from them, never change). Device 0's
 * plan peak is left as it was: the profile is not the plan's. Collective under mpirun. */
static void profile_layers(dp_trainer *t, int rows)
{
    if (t->layer_cost_tried)
        return;
    t->layer_cost_tried = true;
    const dp_model *m = t->cfg.model;
    dp_device *d0 = &t->devices[0];
    size_t plan_peak = d0->mem_plan_peak;
    dp_err ignored;
    rows = rows > 0 ? rows : 1;
    t->layer_cost = calloc((size_t)m->n_layers, sizeof *t->layer_cost);
    bool failed = !t->layer_cost || dp_stage_profile(m, d0, rows, t->layer_cost, &ignored) < 0;
    d0->mem_plan_peak = plan_peak;
    if (dp_world_any(failed)) {
        free(t->layer_cost);
        t->layer_cost = NULL;
    } else {
        dp_world_broadcast(t->layer_cost, (int)(m->n_layers * sizeof *t->layer_cost));
        t->layer_cost_rows = rows;
        t->layer_cost_threads = team_threads(t, t->plan.workers > 0 ? t->plan.workers : 1);
    }
}

/* A pipeline plan with its stages balanced by the layers' measured times (measured on device 0
 * at the first such plan, at its micro-batch size), when the configuration asks for it; plans
 * without pipelines, and any plan when the model does not fit on device 0 to be measured,
 * stay as they are (balanced by FLOPs). Under mpirun every process takes rank 0's times, so
 * that all cut the same stages (their groups sum the same layers across processes). */
static dp_plan balanced(dp_trainer *t, const dp_plan *p)
{
    if (p->stages < 2 || !t->cfg.balance_by_time)
        return *p;
    const dp_model *m = t->cfg.model;
    profile_layers(t, t->cfg.batch / (p->replicas * p->micro));
    dp_plan_request req = { p->strategy, p->stages, p->micro, p->schedule };
    dp_plan by_time;
    dp_err ignored;
    if (!t->layer_cost ||
        dp_plan_make(&by_time, &req, t->n_devices, m, t->cfg.batch, t->layer_cost, &ignored) < 0)
        return *p;
    return by_time;
}

/* What a team of the trainer's needs besides its plan. */
static dp_team_config team_config(dp_trainer *t)
{
    return (dp_team_config){
        .model = t->cfg.model,
        .optim = &t->cfg.optim,
        .devices = t->devices,
        .batch = t->cfg.batch,
        .bucket_mb = t->cfg.bucket_mb,
        .metrics = &t->metrics,
        .resident = t->resident,
        .seed = t->cfg.seed,
    };
}

/* Starts the workers of plan p (its stages balanced by time, when asked) and gives them the
 * host copy of the parameters and state. */
static int start_plan(dp_trainer *t, const dp_plan *requested, dp_err *err)
{
    dp_plan plan = balanced(t, requested);
    const dp_plan *p = &plan;
    long shape = p->replicas * 1000003L + p->stages * 1009L + p->micro; /* and the cuts */
    for (int s = 0; s <= p->stages; s++)
        shape = shape * 31 + p->first_layer[s];
    if (!dp_world_agree(shape)) /* every process must sum the same layers in each group */
        return dp_fail(err, "the processes made different plans (%d stages, %d micro-batches "
                            "here); give every process the same configuration and devices",
                       p->stages, p->micro);
    set_team_threads(t, p->workers);
    for (int i = 0; i < t->n_devices; i++) { /* the new plan's peak starts from here */
        t->base_held[i] = t->devices[i].mem_held;
        t->devices[i].mem_plan_peak = t->devices[i].mem_held;
    }
    dp_team_config tc = team_config(t);
    dp_team *team = dp_team_start(p, &tc, err);
    if (!team)
        return -1;
    t->team = team;
    t->plan = *p;
    dp_cmd scatter = { .kind = DP_CMD_SCATTER, .params = t->host_params, .state = t->host_state };
    dp_team_run(team, &scatter);
    publish_unused(t);
    return 0;
}

/* The trainer's loader, at the configuration's resume position when there is one. */
static int init_loader(dp_trainer *t, dp_err *err)
{
    const dp_trainer_config *c = &t->cfg;
    if (dp_loader_init(&t->loader, t->train, c->batch, c->shuffle, c->seed, err) < 0)
        return -1;
    if (c->resume) {
        if (dp_loader_seek(&t->loader, c->resume->epoch, c->resume->position, err) < 0)
            return -1;
        t->steps_done = c->resume->step;
        t->updates_done = c->resume->updates;
    }
    t->next_epoch = t->loader.epoch;
    t->next_position = t->loader.pos;
    return 0;
}

/* The prefetcher's batches and the host copies of the parameters and optimizer state. The
 * batches live in the host memory the first device uploads from fastest (pinned for a GPU);
 * every device of a run is of one backend. */
static int alloc_host_buffers(dp_trainer *t, dp_err *err)
{
    const dp_trainer_config *c = &t->cfg;
    const dp_model *m = c->model;
    size_t per_param = dp_optim_state_per_param(&c->optim);
    const dp_backend *host = t->devices[0].be;
    dp_err batches_err; /* said below, with the parameters */
    t->prefetch = dp_prefetch_create(&t->loader, t->train->features, t->train->targets,
                                     (dp_host_memory){ host->host_alloc, host->host_free },
                                     &batches_err);
    bool batches_ok = t->prefetch != NULL;
    t->host_params = malloc(m->n_params * sizeof *t->host_params);
    t->host_state = calloc(m->n_params * per_param + 1, sizeof *t->host_state);
    t->base_held = calloc((size_t)t->n_devices, sizeof *t->base_held);
    if (!batches_ok || !t->host_params || !t->host_state || !t->base_held)
        return dp_fail(err, "out of host memory for a batch of %d samples and %zu parameters",
                       c->batch, m->n_params);
    return 0;
}

/* Fills the host copies: the state resumed from (else zero), the parameters given (else the
 * model's initialization from the seed). */
static void init_host_copies(dp_trainer *t, const float *init)
{
    const dp_trainer_config *c = &t->cfg;
    const dp_model *m = c->model;
    size_t per_param = dp_optim_state_per_param(&c->optim);
    if (c->resume_state)
        memcpy(t->host_state, c->resume_state, m->n_params * per_param * sizeof *t->host_state);
    if (init)
        memcpy(t->host_params, init, m->n_params * sizeof *init);
    else
        dp_model_init_params(m, t->host_params, c->seed);
}

/* The plan of req on the trainer's devices, model and batch, refused where batch
 * normalisation would see a single sample in some step. */
static int make_plan(const dp_trainer *t, dp_plan *p, const dp_plan_request *req, dp_err *err)
{
    if (dp_plan_make(p, req, t->n_devices, t->cfg.model, t->cfg.batch, NULL, err) < 0)
        return -1;
    return dp_plan_check_batch_norm(p, t->cfg.model, t->cfg.batch, t->train->n, err);
}

dp_trainer *dp_trainer_create(const dp_trainer_config *c, const dp_dataset *train,
                              const dp_dataset *test, const float *init, bool *plan_refused,
                              dp_err *err)
{
    *plan_refused = false;
    dp_trainer *t = calloc(1, sizeof *t);
    if (!t) {
        dp_fail(err, "out of host memory");
        return NULL;
    }
    t->cfg = *c;
    t->train = train;
    t->test = test;
    pthread_mutex_init(&t->switch_lock, NULL);
    dp_plan plan;
    t->n_devices = dp_device_set_count(c->devices);
    if (make_plan(t, &plan, &c->plan, err) < 0) {
        *plan_refused = true;
        goto fail;
    }
    if (dp_metrics_init(&t->metrics, t->n_devices) < 0) {
        dp_fail(err, "out of host memory");
        goto fail;
    }
    t->devices = dp_device_set_devices(c->devices);
    if (init_loader(t, err) < 0 || alloc_host_buffers(t, err) < 0)
        goto fail;
    init_host_copies(t, init);
    if (make_resident(t, err) < 0 || start_plan(t, &plan, err) < 0)
        goto fail;
    /* GPUs gather on the prefetch thread, CPUs on this one (see datasets/prefetch.h) */
    bool gather_ahead = !t->devices[0].be->host_memory;
    if (dp_prefetch_start(t->prefetch, gather_ahead, t->resident != NULL, err) < 0)
        goto fail;
    return t;
fail:
    dp_trainer_destroy(t);
    return NULL;
}

void dp_trainer_destroy(dp_trainer *t)
{
    if (!t)
        return;
    dp_prefetch_stop(t->prefetch);
    dp_team_stop(t->team);
    dp_prefetch_destroy(t->prefetch); /* made only once every device was made */
    free_resident(t);
    dp_metrics_free(&t->metrics); /* the devices are the set's: its maker destroys them */
    dp_loader_free(&t->loader);
    free(t->host_params);
    free(t->layer_cost);
    free(t->base_held);
    free(t->host_state);
    free(t->samples);
    dp_quality_destroy(t->quality);
    dp_feature_stats_free(&t->test_stats);
    dp_feature_stats_free(&t->gen_stats);
    free(t->quality_batch);
    pthread_mutex_destroy(&t->switch_lock);
    free(t);
}

/* Moves the state into the host copies and stops the team: the devices hold only the data
 * kept there, until start_plan. */
static void take_down(dp_trainer *t)
{
    dp_cmd gather = { .kind = DP_CMD_GATHER, .params = t->host_params, .state = t->host_state };
    dp_team_run(t->team, &gather);
    dp_team_stop(t->team);
    t->team = NULL;
}

/* Times the layers (profile_layers, for a whole batch) if they were not yet, on devices the
 * plan in use leaves empty for the moment: it is taken down and started again, as a switch to
 * itself would. */
static int ensure_layer_costs(dp_trainer *t, dp_err *err)
{
    if (t->layer_cost_tried)
        return 0;
    take_down(t);
    dp_plan now = t->plan;
    profile_layers(t, t->cfg.batch);
    return start_plan(t, &now, err);
}

int dp_trainer_plan_bytes(dp_trainer *t, const dp_plan_request *req, dp_plan *p, size_t *bytes,
                          dp_err *err)
{
    dp_plan made;
    if (make_plan(t, &made, req, err) < 0)
        return -1;
    if (made.stages > 1 && t->cfg.balance_by_time && ensure_layer_costs(t, err) < 0)
        return -1; /* (the cuts balanced() makes depend on them) */
    *p = balanced(t, &made);
    size_t *team = calloc((size_t)p->workers, sizeof *team);
    if (!team)
        return dp_fail(err, "out of host memory");
    dp_team_config tc = team_config(t);
    dp_team_bytes(p, &tc, team);
    for (int i = 0; i < t->n_devices; i++)
        bytes[i] = t->base_held[i] + (i < p->workers ? team[i] : 0);
    free(team);
    return 0;
}

int dp_trainer_layer_costs(dp_trainer *t, const double **cost, int *rows, int *threads,
                           dp_err *err)
{
    if (ensure_layer_costs(t, err) < 0)
        return -1;
    *cost = t->layer_cost;
    *rows = t->layer_cost_rows;
    *threads = t->layer_cost_threads;
    return 0;
}

int dp_trainer_team_threads(const dp_trainer *t, int workers)
{
    return team_threads(t, workers);
}

const dp_model *dp_trainer_model(const dp_trainer *t)
{
    return t->cfg.model;
}

int dp_trainer_batch(const dp_trainer *t)
{
    return t->cfg.batch;
}

long dp_trainer_steps_per_epoch(const dp_trainer *t)
{
    return dp_loader_steps_per_epoch(&t->loader);
}

int dp_trainer_check_switch(const dp_trainer *t, const dp_plan_request *req, dp_err *err)
{
    dp_plan p;
    return make_plan(t, &p, req, err);
}

int dp_trainer_request_switch(dp_trainer *t, const dp_plan_request *req, dp_err *err)
{
    dp_plan p;
    if (make_plan(t, &p, req, err) < 0)
        return -1;
    pthread_mutex_lock(&t->switch_lock);
    t->switch_plan = p;
    t->switch_pending = true;
    pthread_mutex_unlock(&t->switch_lock);
    return 0;
}

/* The samples batch normalisation normalises over under plan p: the whole global batch (every
 * replica's share, summed), or each micro-batch of it (the replicas' j-th ones together). */
static void batch_stats_text(const dp_plan *p, int batch, char *buf, size_t size)
{
    int replicas = p->replicas * dp_world_size();
    if (p->micro <= 1)
        snprintf(buf, size, "the whole batch of %d", batch);
    else if (replicas == 1)
        snprintf(buf, size, "%d micro-batches of %s%d", p->micro, batch % p->micro ? "about " : "",
                 (batch + p->micro / 2) / p->micro);
    else /* which samples share a micro-batch depends on the replicas' shares too */
        snprintf(buf, size, "%d micro-batches of %s%d, from %d replicas' shares", p->micro,
                 batch % p->micro ? "about " : "", (batch + p->micro / 2) / p->micro, replicas);
}

void dp_trainer_batch_stats(const dp_trainer *t, char *buf, size_t size)
{
    buf[0] = '\0';
    if (dp_model_batch_statistics(t->cfg.model))
        batch_stats_text(&t->plan, t->cfg.batch, buf, size);
}

/* Says in r->batch_stats (and, shorter, in r->batch_stats_short) when a switch from `from` to
 * `to` changes what batch normalisation sees. */
static void describe_batch_stats(const dp_trainer *t, const dp_plan *from, const dp_plan *to,
                                 dp_step_report *r)
{
    char was[64], now[64];
    r->batch_stats[0] = r->batch_stats_short[0] = '\0';
    if (!dp_model_batch_statistics(t->cfg.model))
        return;
    batch_stats_text(from, t->cfg.batch, was, sizeof was);
    batch_stats_text(to, t->cfg.batch, now, sizeof now);
    if (strcmp(was, now) == 0)
        return;
    snprintf(r->batch_stats, sizeof r->batch_stats, "batch normalisation now over %s, not %s",
             now, was);
    snprintf(r->batch_stats_short, sizeof r->batch_stats_short, "batch norm now %s",
             to->micro <= 1 ? "over the whole batch"
             : from->micro == to->micro ? "over regrouped micro-batches" : "per micro-batch");
}

/* Moves the state to one host copy, stops the team, and starts the new plan's team. When the
 * new plan cannot be set up (a device too small), the old plan is started again. */
static int switch_plan(dp_trainer *t, const dp_plan *next, dp_step_report *r, dp_err *err)
{
    double t0 = dp_now_s();
    dp_plan_describe(&t->plan, r->switch_from, sizeof r->switch_from);
    dp_plan_describe(next, r->switch_to, sizeof r->switch_to);
    take_down(t);
    dp_plan old = t->plan;
    if (start_plan(t, next, err) < 0) {
        dp_err again;
        dp_err_prefix(err, "switch to %s failed, staying with %s: ", r->switch_to, r->switch_from);
        if (start_plan(t, &old, &again) < 0)
            *err = again;
        return -1;
    }
    r->switched = true;
    r->switch_seconds = dp_now_s() - t0;
    describe_batch_stats(t, &old, next, r);
    return 0;
}

/* "layer 3 (linear)", or in a GAN "the discriminator's layer 1 (linear)": the index its own
 * list gives it. */
static const char *layer_name(const dp_model *m, int i, char *buf, size_t size)
{
    const char *kind = m->layers[i].ops->name;
    if (!m->gan_split)
        snprintf(buf, size, "layer %d (%s)", i, kind);
    else if (i < m->gan_split)
        snprintf(buf, size, "the generator's layer %d (%s)", i, kind);
    else
        snprintf(buf, size, "the discriminator's layer %d (%s)", i - m->gan_split, kind);
    return buf;
}

/* Where the values of a step went non-finite, in words, for the message. */
static void locate_nonfinite(dp_trainer *t, char *buf, size_t size)
{
    dp_cmd diagnose = { .kind = DP_CMD_DIAGNOSE };
    dp_team_run(t->team, &diagnose);
    int forward = -1, backward = -1;
    bool weights = false;
    for (int i = 0; i < t->plan.workers; i++) {
        const dp_worker_result *res = dp_team_result(t->team, i);
        if (res->bad_forward >= 0 && (forward < 0 || res->bad_forward < forward)) {
            forward = res->bad_forward;
            weights = res->bad_weights;
        }
        if (res->bad_backward > backward)
            backward = res->bad_backward;
    }
    const dp_model *m = t->cfg.model;
    char name[96];
    if (forward >= 0)
        snprintf(buf, size, "the first non-finite values are %s's %s",
                 layer_name(m, forward, name, sizeof name), weights ? "weights" : "output");
    else if (backward >= 0)
        snprintf(buf, size, "the forward pass is finite; backward, the gradient goes "
                            "non-finite first at %s",
                 layer_name(m, backward, name, sizeof name));
    else
        snprintf(buf, size, "every layer's output and gradient is finite (the loss itself "
                            "overflowed)");
}

/* Applies the switch of plan asked for since the last step, if any. */
static int apply_pending_switch(dp_trainer *t, dp_step_report *r, dp_err *err)
{
    pthread_mutex_lock(&t->switch_lock);
    bool pending = t->switch_pending;
    dp_plan next = t->switch_plan;
    t->switch_pending = false;
    pthread_mutex_unlock(&t->switch_lock);
    const dp_plan *now = &t->plan; /* keys that undo each other ask for the plan in use */
    if (pending && next.strategy == now->strategy && next.schedule == now->schedule &&
        next.replicas == now->replicas && next.stages == now->stages && next.micro == now->micro)
        return 0;
    if (pending && switch_plan(t, &next, r, err) < 0) {
        r->switch_failed = true;
        return -1;
    }
    return 0;
}

/* The next batch, as the first pass of a step over it (in a world of several processes,
 * each takes its part of the global batch); r gets the step's place. */
static dp_batch *next_batch(dp_trainer *t, dp_step_report *r, dp_cmd *step)
{
    dp_batch *b = dp_prefetch_next(t->prefetch);
    int rows = b->rows;
    r->epoch = b->epoch;
    r->epoch_end = b->epoch_end;
    r->rows = rows;
    r->step = ++t->steps_done;
    int first = dp_split_start(rows, dp_world_size(), dp_world_rank());
    const dp_dataset *tr = t->train;
    *step = (dp_cmd){ .kind = DP_CMD_STEP,
                      .rows = dp_split_rows(rows, dp_world_size(), dp_world_rank()),
                      .batch_rows = rows, .first_row = first, .step = r->step,
                      .x = b->x ? b->x + (size_t)first * tr->features : NULL,
                      .y = b->y ? b->y + (size_t)first * tr->targets : NULL,
                      .idx = b->idx ? b->idx + first : NULL };
    return b;
}

/* Posts the step's first pass, gathers the batch after it meanwhile (on CPUs), and waits. */
static void run_first_pass(dp_trainer *t, const dp_cmd *step)
{
    dp_team_post(t->team, step);
    dp_prefetch_ahead(t->prefetch); /* on CPUs, gathers the next batch while the workers compute */
    dp_team_wait(t->team);
}

/* Hands the step's batch back and moves the data position past it. */
static void release_batch(dp_trainer *t, dp_batch *b)
{
    t->next_epoch = b->epoch - 1;
    t->next_position = b->start + b->rows;
    if (t->next_position == t->train->n) {
        t->next_epoch++;
        t->next_position = 0;
    }
    dp_prefetch_release(t->prefetch, b);
}

/* Runs the forward and backward passes of the next batch on the team, and moves the data
 * position past it. Returns its rows. */
static int run_passes(dp_trainer *t, dp_step_report *r)
{
    dp_cmd step;
    dp_batch *b = next_batch(t, r, &step);
    run_first_pass(t, &step);
    int rows = b->rows;
    release_batch(t, b);
    return rows;
}

/* Sets r->loss (over every process's rows) and each replica's loss from the workers' results;
 * each replica's loss comes from its last stage. Returns the sum of squares of the gradients
 * (every worker's part of replica 0's). */
static double collect_loss(dp_trainer *t, int rows, dp_step_report *r, double *replica_loss)
{
    const dp_plan *p = &t->plan;
    double targets = t->cfg.model->targets;
    int counted = t->cfg.model->objective->count_stat; /* 0: every target is a term */
    double sums[2] = { 0.0, 0.0 }, sumsq = 0.0; /* the loss and its terms */
    for (int i = 0; i < p->workers; i++) {
        const dp_worker_result *res = dp_team_result(t->team, i);
        int replica, stage;
        dp_team_role(t->team, i, &replica, &stage);
        sumsq += res->grad_sumsq;
        if (stage == p->stages - 1) {
            int shard = dp_split_rows(rows, p->replicas, replica);
            double terms = counted ? res->stats[counted] : (double)shard * targets;
            replica_loss[replica] = terms > 0 ? res->stats[0] / terms : (shard ? 0.0 : NAN);
            sums[0] += res->stats[0]; /* every objective's first sum is its loss */
            sums[1] += terms;
        }
    }
    dp_world_sum(sums, 2); /* the other processes' rows */
    if (!counted)
        sums[1] = (double)rows * targets; /* rows: the global batch's */
    /* per term: per byte for text, per masked byte for mlm; a batch with no terms has loss 0 */
    r->loss = sums[1] > 0 ? sums[0] / sums[1] : 0.0;
    if (isnan(r->loss)) /* whatever its sign bit: printed "nan", never "-nan" */
        r->loss = NAN;
    return sumsq;
}

/* The error for a non-finite loss or gradient under run.on_nan = stop, with r->nonfinite. */
static int fail_nonfinite(const dp_trainer *t, const dp_step_report *r, dp_err *err)
{
    const dp_optim_config *oc = &t->cfg.optim;
    /* Weight decay alone multiplies the weights by (1 - lr x weight_decay) each step,
     * which diverges past 2 (with SGD momentum mu, past 2(1 + mu), or 2(1 + mu) /
     * (1 + 2mu) with Nesterov): then the decay is the cause, whatever the gradients. */
    double mu = oc->kind == DP_OPTIM_SGD ? oc->momentum : 0.0;
    double bound = 2.0 * (1.0 + mu) / (mu > 0.0 && oc->nesterov ? 1.0 + 2.0 * mu : 1.0);
    if (oc->lr * oc->weight_decay > bound)
        return dp_fail(err, "step %ld: the loss is %g and the gradient norm %g: %s; "
                            "stopping: optim.weight_decay = %g with optim.lr = %g makes "
                            "the weights grow every step (lr x weight_decay above %g "
                            "diverges); lower optim.weight_decay",
                       r->step, r->loss, r->grad_norm, r->nonfinite, oc->weight_decay,
                       oc->lr, bound);
    return dp_fail(err, "step %ld: the loss is %g and the gradient norm %g: %s; stopping "
                        "(lower optim.lr, set optim.clip, or set run.on_nan = skip)",
                   r->step, r->loss, r->grad_norm, r->nonfinite);
}

/* ---- a GAN's step: three passes and two updates (engine/gan.h) ---- */

/* The objective's sums of the last pass over every process (sums[n_stats]: loss first) and
 * each replica's loss sum added to replica_sum[]; returns the gradients' sum of squares. */
static double pass_sums(dp_trainer *t, double *sums, double *replica_sum)
{
    const dp_plan *p = &t->plan;
    int n = t->cfg.model->objective->n_stats;
    double sumsq = 0.0;
    for (int k = 0; k < n; k++)
        sums[k] = 0.0;
    for (int i = 0; i < p->workers; i++) {
        const dp_worker_result *res = dp_team_result(t->team, i);
        int replica, stage;
        dp_team_role(t->team, i, &replica, &stage);
        sumsq += res->grad_sumsq;
        if (stage != p->stages - 1)
            continue;
        for (int k = 0; k < n; k++)
            sums[k] += res->stats[k];
        replica_sum[replica] += res->stats[0];
    }
    dp_world_sum(sums, n);
    return sumsq;
}

/* After a GAN pass with gradients: on a non-finite loss or gradient norm, where (on_nan = skip
 * is refused for GANs by the configuration: the two models' update counts would part). */
static int check_finite(dp_trainer *t, const dp_step_report *r, double loss, double norm,
                        const char *which, dp_err *err)
{
    if (isfinite(loss) && isfinite(norm))
        return 0;
    char where[160];
    locate_nonfinite(t, where, sizeof where);
    return dp_fail(err, "step %ld: %s's loss is %g and its gradient norm %g: %s; stopping "
                        "(lower optim.lr, or set optim.clip)",
                   r->step, which, isnan(loss) ? NAN : loss, isnan(norm) ? NAN : norm, where);
}

/* The update of one of the GAN's models (mid_step: D's, before G's pass). */
static void update_part(dp_trainer *t, dp_model_part part, const dp_step_report *r, double norm,
                        bool mid_step, const double *replica_loss)
{
    const dp_optim_config *oc = &t->cfg.optim;
    double clip = oc->clip > 0.0 ? dp_optim_clip_factor(oc, norm) : 1.0;
    dp_cmd update = { .kind = DP_CMD_UPDATE, .step = r->step, .clip_factor = (float)clip,
                      .replica_loss = replica_loss, .part = part, .mid_step = mid_step,
                      .lr = r->lr, .t = t->updates_done };
    dp_team_run(t->team, &update);
}

static int gan_step(dp_trainer *t, dp_step_report *r, dp_err *err)
{
    double sums[DP_OBJECTIVE_STATS], replica_d[DP_MAX_DEVICES] = { 0 };
    double replica_g[DP_MAX_DEVICES] = { 0 };
    dp_cmd step;
    dp_batch *b = next_batch(t, r, &step);
    double rows = b->rows;
    r->gan = true;
    step.pass = DP_PASS_D_REAL;
    run_first_pass(t, &step);
    pass_sums(t, sums, replica_d);
    r->loss = sums[0] / rows;
    r->d_real = sums[2] / rows;
    step.pass = DP_PASS_D_FAKE;
    step.continues = true;
    dp_team_run(t->team, &step);
    r->grad_norm = sqrt(pass_sums(t, sums, replica_d));
    r->loss += sums[0] / rows;
    r->d_fake = sums[2] / rows;
    r->lr = dp_optim_lr(&t->cfg.optim, r->step - 1, t->cfg.total_steps);
    int shard_rows[DP_MAX_DEVICES];
    for (int k = 0; k < t->plan.replicas; k++) {
        shard_rows[k] = dp_split_rows(step.rows, t->plan.replicas, k);
        replica_d[k] = shard_rows[k] ? replica_d[k] / shard_rows[k] : NAN;
    }
    if (check_finite(t, r, r->loss, r->grad_norm, "the discriminator", err) < 0) {
        release_batch(t, b);
        return -1;
    }
    t->updates_done++;
    update_part(t, DP_PART_D, r, r->grad_norm, true, replica_d);
    step.pass = DP_PASS_G;
    dp_team_run(t->team, &step);
    r->grad_norm_g = sqrt(pass_sums(t, sums, replica_g));
    r->loss_g = sums[0] / rows;
    r->d_fake_after = sums[2] / rows;
    release_batch(t, b);
    if (check_finite(t, r, r->loss_g, r->grad_norm_g, "the generator", err) < 0)
        return -1;
    update_part(t, DP_PART_G, r, r->grad_norm_g, false, replica_d);
    return 0;
}

int dp_trainer_step(dp_trainer *t, dp_step_report *r, dp_err *err)
{
    memset(r, 0, sizeof *r);
    if (apply_pending_switch(t, r, err) < 0)
        return -1;
    double t0 = dp_now_s();
    if (t->cfg.model->gan_split) {
        if (gan_step(t, r, err) < 0)
            return -1;
        if (device_failure(t, err) < 0)
            return -1;
        r->seconds = dp_now_s() - t0;
        dp_metrics_record_step(&t->metrics, r->step, r->loss, r->switched);
        dp_metrics_record_gan(&t->metrics, r->step, r->loss_g, r->d_real, r->d_fake,
                              r->d_fake_after);
        return 0;
    }
    int rows = run_passes(t, r);
    double replica_loss[DP_MAX_DEVICES];
    double sumsq = collect_loss(t, rows, r, replica_loss);
    r->masked = t->cfg.model->objective == &dp_objective_mlm;
    const dp_optim_config *oc = &t->cfg.optim;
    double clip = 1.0;
    r->grad_norm = sqrt(sumsq);
    if (isnan(r->grad_norm)) /* printed "nan", as the loss */
        r->grad_norm = NAN;
    if (oc->clip > 0.0)
        clip = dp_optim_clip_factor(oc, r->grad_norm);
    dp_cmd update = { .kind = DP_CMD_UPDATE, .step = r->step, .clip_factor = (float)clip,
                      .replica_loss = replica_loss };
    if (!isfinite(r->loss) || !isfinite(r->grad_norm)) {
        locate_nonfinite(t, r->nonfinite, sizeof r->nonfinite);
        if (t->cfg.on_nan == DP_NAN_STOP)
            return fail_nonfinite(t, r, err);
        r->skipped = update.skip = true;
    } else {
        r->lr = update.lr = dp_optim_lr(oc, r->step - 1, t->cfg.total_steps);
        update.t = ++t->updates_done;
    }
    dp_team_run(t->team, &update);
    if (device_failure(t, err) < 0)
        return -1;
    r->seconds = dp_now_s() - t0;
    dp_metrics_record_step(&t->metrics, r->step, r->loss, r->switched);
    return 0;
}

/* Batches of this process's part of the test split in a part of an evaluation: the same
 * number of parts in every process (its batches may be one fewer than another's). */
static int eval_parts(const dp_trainer *t, int parts)
{
    long n = t->test->n, batch = t->cfg.batch;
    long most = (n + dp_world_size() - 1) / dp_world_size(); /* rows of the largest part */
    long batches = (most + batch - 1) / batch;
    if (parts <= 0)
        parts = DP_EVAL_PARTS;
    return batches < parts ? (batches > 0 ? (int)batches : 1) : parts;
}

/* Whether to stop the evaluation, in every process alike: any process's wish stops all. */
static bool eval_stop(const dp_eval_watch *w, long done, long total)
{
    double stop = w && w->progress && w->progress(w->arg, done, total) ? 1.0 : 0.0;
    dp_world_sum(&stop, 1);
    return stop > 0;
}

/* Runs the test rows [first, first + rows) through the team, adding the objective's sums (a
 * GAN's discriminator's, on the real samples). */
static void eval_rows(dp_trainer *t, long first, long rows, double *sums)
{
    dp_cmd eval = { .kind = DP_CMD_EVAL, .data = t->test, .data_first = first,
                    .data_rows = rows,
                    .pass = t->cfg.model->gan_split ? DP_PASS_D_REAL : DP_PASS_TRAIN };
    dp_team_run(t->team, &eval);
    const dp_objective *o = t->cfg.model->objective;
    for (int i = 0; i < t->plan.workers; i++)
        for (int k = 0; k < o->n_stats; k++)
            sums[k] += dp_team_result(t->team, i)->stats[k];
}

void dp_trainer_generate(dp_trainer *t, uint64_t purpose, long sample0, long n, float *out)
{
    const dp_model *m = t->cfg.model;
    size_t image = (size_t)m->layers[m->gan_split].in;
    for (long at = 0; at < n; at += t->cfg.batch) {
        int rows = n - at < t->cfg.batch ? (int)(n - at) : t->cfg.batch;
        dp_cmd c = { .kind = DP_CMD_GENERATE, .rows = rows, .noise_purpose = purpose,
                     .sample0 = sample0 + at, .out = out + (size_t)at * image };
        dp_team_run(t->team, &c);
    }
}

void dp_trainer_forward(dp_trainer *t, const float *x, long n, float *out)
{
    const dp_model *m = t->cfg.model;
    size_t in = (size_t)m->layers[0].in, outputs = (size_t)m->layers[m->n_layers - 1].out;
    for (long at = 0; at < n; at += t->cfg.batch) {
        int rows = n - at < t->cfg.batch ? (int)(n - at) : t->cfg.batch;
        dp_cmd c = { .kind = DP_CMD_GENERATE, .rows = rows, .x = x + (size_t)at * in,
                     .out = out + (size_t)at * outputs };
        dp_team_run(t->team, &c);
    }
}

/* The chunks (of a batch) the quality figures of an evaluation take: the generated samples'
 * and, at the first, the test split's; 0 without a classifier. */
static long quality_chunks(const dp_trainer *t)
{
    if (!t->cfg.model->gan_split || !t->cfg.classifier)
        return 0;
    long b = t->cfg.batch, n = t->cfg.quality_samples;
    return (n + b - 1) / b + (t->test_stats_done ? 0 : (t->test->n + b - 1) / b);
}

/* The classifier and the statistics, at the first evaluation; false (said in err) when the
 * device cannot hold the classifier. */
static bool quality_ready(dp_trainer *t, dp_err *err)
{
    if (t->quality)
        return true;
    const dp_model *m = t->cfg.model;
    size_t image = (size_t)m->layers[m->gan_split].in;
    t->quality = dp_quality_create(t->cfg.classifier, t->cfg.classifier_params, &t->devices[0],
                                   t->cfg.batch, err);
    if (!t->quality)
        return false;
    int dim = dp_quality_features(t->quality), classes = dp_quality_classes(t->quality);
    t->quality_batch = malloc((size_t)t->cfg.batch * image * sizeof *t->quality_batch);
    if (!t->quality_batch || dp_feature_stats_init(&t->test_stats, dim, classes, err) < 0 ||
        dp_feature_stats_init(&t->gen_stats, dim, classes, err) < 0) {
        dp_quality_destroy(t->quality);
        t->quality = NULL;
        dp_fail(err, "out of host memory for the quality figures");
        return false;
    }
    return true;
}

/* Adds rows [first, first + n) of a set to s in chunks of a batch, mapped from the data's
 * range to [0, 1]: the test split's images, or (test NULL) the generator's samples of the
 * evaluation noise. Each process takes its part; the sums are added across processes.
 * Reports progress as chunks done after `done` of `total`; false when stopped. */
static bool add_quality(dp_trainer *t, const dp_dataset *test, dp_feature_stats *s,
                        const dp_eval_watch *w, long *done, long total)
{
    const dp_model *m = t->cfg.model;
    size_t image = (size_t)m->layers[m->gan_split].in;
    long n = test ? test->n : t->cfg.quality_samples;
    long first = n * dp_world_rank() / dp_world_size();
    long last = n * (dp_world_rank() + 1) / dp_world_size();
    long per = (n + dp_world_size() - 1) / dp_world_size(); /* the largest part */
    float lo = t->cfg.range_lo, scale = 1.0f / (t->cfg.range_hi - t->cfg.range_lo);
    dp_feature_stats_clear(s);
    for (long at = 0; at < per; at += t->cfg.batch) { /* the same chunks in every process */
        long a = first + at, rows = last - a < t->cfg.batch ? last - a : t->cfg.batch;
        if (rows > 0) {
            if (test)
                memcpy(t->quality_batch, test->x + (size_t)a * image,
                       (size_t)rows * image * sizeof(float));
            else
                dp_trainer_generate(t, DP_NOISE_EVAL, a, rows, t->quality_batch);
            for (size_t i = 0; i < (size_t)rows * image; i++)
                t->quality_batch[i] = (t->quality_batch[i] - lo) * scale;
            dp_err ignored; /* a device failure: the step after says so */
            dp_quality_add(t->quality, t->quality_batch, rows, s, &ignored);
        }
        if (eval_stop(w, ++*done, total))
            return false;
    }
    dp_world_sum(s->all, (int)s->count);
    return true;
}

/* A GAN's evaluation beyond its discriminator's figures: the samples of the fixed noise, and
 * the quality of generated samples when a classifier is given. False when stopped. */
static bool gan_evaluation(dp_trainer *t, dp_eval_report *r, const dp_eval_watch *w, long done,
                           long total)
{
    const dp_model *m = t->cfg.model;
    size_t image = (size_t)m->layers[m->gan_split].in;
    r->frechet = r->score = NAN;
    r->generated = 0;
    if (t->samples || (t->samples = malloc(DP_GAN_SAMPLES * image * sizeof *t->samples))) {
        dp_trainer_generate(t, DP_NOISE_FIXED, 0, DP_GAN_SAMPLES, t->samples);
        r->images = t->samples;
        r->n_images = DP_GAN_SAMPLES;
        r->image_shape = m->layers[m->gan_split].in_shape;
    }
    dp_err err;
    if (!t->cfg.classifier)
        return true;
    bool ready = quality_ready(t, &err);
    if (dp_world_any(!ready)) {
        if (!ready && dp_world_rank() == 0)
            fprintf(stderr, "dpmptop: no quality figures: %s\n", err.msg);
        return true;
    }
    if (!t->test_stats_done) {
        if (!add_quality(t, t->test, &t->test_stats, w, &done, total))
            return false;
        t->test_stats_done = true;
    }
    if (!add_quality(t, NULL, &t->gen_stats, w, &done, total))
        return false;
    r->generated = t->cfg.quality_samples;
    r->frechet = dp_frechet_distance(&t->test_stats, &t->gen_stats);
    r->score = dp_inception_style_score(&t->gen_stats);
    return true;
}

/* In parts of whole batches, so that each batch, and so each sum, is what one pass over the
 * whole part would give. */
bool dp_trainer_evaluate(dp_trainer *t, const dp_eval_watch *w, dp_eval_report *r)
{
    long n = t->test->n, batch = t->cfg.batch; /* each process evaluates its part */
    long first = n * dp_world_rank() / dp_world_size();
    long rows = n * (dp_world_rank() + 1) / dp_world_size() - first;
    long batches = (rows + batch - 1) / batch;
    int parts = eval_parts(t, w ? w->parts : 0);
    double sums[DP_OBJECTIVE_STATS] = { 0.0 }; /* the objective's: loss first */
    long total = batches + quality_chunks(t); /* a GAN's quality figures go on after */
    if (eval_stop(w, 0, total))
        return false;
    for (int p = 0; p < parts; p++) {
        long b0 = batches * p / parts, b1 = batches * (p + 1) / parts;
        long r0 = b0 * batch, r1 = b1 * batch < rows ? b1 * batch : rows;
        if (r1 > r0)
            eval_rows(t, first + r0, r1 - r0, sums);
        if (eval_stop(w, b1, total))
            return false;
    }
    const dp_objective *o = t->cfg.model->objective;
    dp_world_sum(sums, o->n_stats);
    *r = (dp_eval_report){ .frechet = NAN, .score = NAN }; /* a classifier's: no GAN figures */
    r->samples = n;
    o->report(sums, n, t->test->targets, r);
    if (isnan(r->loss))
        r->loss = NAN;
    if (t->cfg.model->gan_split && !gan_evaluation(t, r, w, batches, total))
        return false;
    return true;
}

void dp_trainer_get_params(dp_trainer *t, float *host)
{
    dp_cmd gather = { .kind = DP_CMD_GATHER, .params = t->host_params, .state = t->host_state };
    dp_team_run(t->team, &gather);
    memcpy(host, t->host_params, t->cfg.model->n_params * sizeof *host);
}

void dp_trainer_train_state(const dp_trainer *t, dp_train_state *ts)
{
    memset(ts, 0, sizeof *ts);
    ts->step = t->steps_done;
    ts->updates = t->updates_done;
    ts->epoch = t->next_epoch;
    ts->position = t->next_position;
    dp_plan_describe(&t->plan, ts->plan, sizeof ts->plan);
}

void dp_trainer_get_state(dp_trainer *t, float *params, float *state)
{
    dp_cmd gather = { .kind = DP_CMD_GATHER, .params = t->host_params, .state = t->host_state };
    dp_team_run(t->team, &gather);
    size_t n = t->cfg.model->n_params;
    memcpy(params, t->host_params, n * sizeof *params);
    size_t slots = dp_optim_state_per_param(&t->cfg.optim);
    if (slots)
        memcpy(state, t->host_state, n * slots * sizeof *state);
}

void dp_trainer_describe(const dp_trainer *t, char *buf, size_t size)
{
    dp_plan_describe(&t->plan, buf, size);
}

dp_plan_request dp_trainer_request(const dp_trainer *t)
{
    return (dp_plan_request){ .strategy = t->plan.strategy, .stages = t->plan.stages,
                              .micro = t->plan.micro, .schedule = t->plan.schedule };
}

const char *dp_trainer_strategy(const dp_trainer *t)
{
    return dp_strategy_name(t->plan.strategy);
}

int dp_trainer_device_count(const dp_trainer *t)
{
    return t->n_devices;
}

dp_device *dp_trainer_device(dp_trainer *t, int i)
{
    return &t->devices[i];
}

dp_metrics *dp_trainer_metrics(dp_trainer *t)
{
    return &t->metrics;
}
