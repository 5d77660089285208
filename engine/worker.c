/* worker.c -- worker threads, the team's gate, gradient buckets and the comm thread. */
#include "base/clock.h"
#include "engine/peak.h"
#include "engine/worker.h"
#include "engine/world.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Gradients of whole layers, all-reduced together. */
typedef struct bucket {
    size_t offset;   /* in the stage's gradient vector */
    size_t count;
    int first_layer; /* ready once this layer's backward is done */
    dp_model_part part; /* a GAN's model the layers belong to (D for another model's) */
} bucket;

typedef struct dp_worker {
    dp_team *team;
    int index, replica, stage;
    dp_device *dev;
    const dp_resident *res;    /* the data sets on dev, or NULL: batches come from the host */
    dp_link *fwd_in, *fwd_out; /* activations from the stage before, to the stage after */
    dp_link *bwd_in, *bwd_out; /* their gradients from the stage after, to the stage before */
    dp_comm *group;            /* the replicas of this stage (in every process); NULL when
                                  there is one */
    dp_comm *stats_group;      /* the same members, for the batch statistics the worker's own
                                  passes sum (a group of its own: the comm thread sums
                                  gradients on `group` meanwhile); NULL when the model has none */
    float grad_scale;          /* the step's: 1 / the loss's terms in the whole global batch */
    dp_stage st;
    dp_sched_op *ops;
    int n_ops;
    bucket *buckets;
    int n_buckets;
    int next_bucket;           /* during the last backward: the next bucket to look at */
    dp_model_part reduce;      /* the pass's buckets to all-reduce: those of this part */
    int reduce_count;          /* ... how many the stage has */
    int *queue;                /* [n_buckets]: the buckets handed to the comm thread, in order */
    /* Hand-off to the comm thread: queue[finished, requested) are its to all-reduce. */
    pthread_mutex_t q_lock;
    pthread_cond_t q_changed;
    int requested, finished, quit;
    pthread_t comm_thread;
    float *staging;            /* host copy of a bucket, for a host group of devices whose
                                  memory the host cannot address */
    pthread_t thread;
    long seen;                 /* the last command generation carried out */
    dp_worker_result result;
    clockid_t comm_clock;      /* the comm thread's CPU clock, when has_comm_clock */
    bool has_comm_clock;
    dp_activity doing;         /* COMPUTE or EVAL: what a wait on a link interrupts */
    /* timing of the step in progress */
    double step_start, busy_start, allreduce_wait_s;
    double stats_sync_start;   /* dp_comm_now_seconds of stats_group at the step's start */
    double cpu_start, helper_start, flops_start; /* CPU seconds and GEMM FLOPs at its start */
    double step_end, cpu_end, helper_end, flops_end; /* ... and at its update's end */
    dp_device_metrics done;    /* the step's figures from the update, published by the
                                  coordinator once every worker has done its update */
    dp_link_time link_time;
    int in_flight, in_flight_max;
    int last_slot, last_rows;  /* the last forward's micro-batch: its slot and rows */
    int32_t *targets[2];       /* host [max rows]: every row 0, every row 1 (a GAN's labels) */
    dp_timeline timeline;      /* the step's forward and backward operations */
    int op_begin, op_end;      /* the device's marks around the last operation's work: from
                                  its input's arrival to before its output leaves */
} dp_worker;

struct dp_team {
    dp_plan plan;
    dp_team_config cfg;
    dp_worker *w;          /* [plan.workers] */
    dp_link **links;       /* [n_links] */
    int n_links;
    dp_comm **groups;      /* [stages] */
    dp_comm **stats_groups; /* [stages], when the model has batch statistics */
    int micro_rows;        /* most rows one micro-batch carries */
    bool inline_worker;    /* a single worker, run on the coordinator's thread */
    /* the gate: the coordinator posts `cmd` as a new generation; `pending` counts the
     * workers that have not finished it */
    pthread_mutex_t lock;
    pthread_cond_t posted, done;
    long generation;
    int pending;
    dp_cmd cmd;
    /* the coordinator's: when it posted a step's first pass, and whether the last command
     * ended a step (an UPDATE that is not mid-step: its metrics are then published) */
    double step_posted;
    bool last_ends_step;
};

/* ---- what a worker does now, and the CPU time its device's threads ran ---- */

/* Tells the metrics what the worker's thread does now (a view finds stalls by it). */
static void set_activity(dp_worker *w, dp_activity a)
{
    if (w->team->cfg.metrics)
        dp_metrics_set_activity(w->team->cfg.metrics, w->index, a);
}

/* Receives from / sends on a link, shown as a wait on it. */
static void link_recv(dp_worker *w, dp_link *l, float *dst)
{
    set_activity(w, DP_ACTIVITY_LINK);
    dp_link_recv(l, dst, &w->link_time);
    set_activity(w, w->doing);
}

static void link_send(dp_worker *w, dp_link *l, const float *src, size_t n)
{
    set_activity(w, DP_ACTIVITY_LINK);
    dp_link_send(l, src, n, &w->link_time);
    set_activity(w, w->doing);
}

static double clock_seconds(clockid_t clock)
{
    struct timespec ts;
    return clock_gettime(clock, &ts) == 0 ? (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec : 0;
}

/* A CPU device's CPU seconds so far: the calling thread's (the worker's, or the coordinator's
 * for an inline worker), its comm thread's, and its share of the BLAS helper threads' when its
 * GEMMs use them (the workers of the plan share them evenly). 0 for other devices. */
static double device_cpu_seconds(dp_worker *w, double *helpers)
{
    const dp_backend *be = w->dev->be;
    *helpers = 0;
    if (!be->cpu_threads)
        return 0;
    double own = clock_seconds(CLOCK_THREAD_CPUTIME_ID);
    if (w->has_comm_clock)
        own += clock_seconds(w->comm_clock);
    if (be->helper_cpu_seconds && be->cpu_threads(w->dev) > 1)
        *helpers = be->helper_cpu_seconds() / w->team->plan.workers;
    return own;
}

/* Takes the step's starting CPU time and FLOPs (the worker's thread). */
static void start_counters(dp_worker *w)
{
    w->cpu_start = device_cpu_seconds(w, &w->helper_start);
    w->flops_start = w->dev->be->gemm_flops ? w->dev->be->gemm_flops(w->dev) : 0;
}

/* ... and at the end of its update. */
static void end_counters(dp_worker *w)
{
    w->step_end = dp_now_s();
    w->cpu_end = device_cpu_seconds(w, &w->helper_end);
    w->flops_end = w->dev->be->gemm_flops ? w->dev->be->gemm_flops(w->dev) : 0;
}

/* A CPU device's utilisation: its threads' CPU seconds over `threads` cores for the step's
 * wall time (at most 1: a comm thread running beside the worker the whole step would pass it).
 * A GPU's: the time its stream was busy over the wall time. */
static void fill_utilisation(const dp_worker *w, dp_device_metrics *m, double wall)
{
    const dp_backend *be = w->dev->be;
    if (!be->cpu_threads) {
        m->util = wall > 0 ? m->compute_s / wall : 0;
        return;
    }
    m->threads = be->cpu_threads(w->dev);
    /* the helpers' share read before the step may exceed the one after it when the pool's
     * list grew between: never a negative time */
    double helper_s = w->helper_end - w->helper_start;
    m->cpu_s = w->cpu_end - w->cpu_start + (helper_s > 0 ? helper_s : 0);
    double util = wall > 0 ? m->cpu_s / (m->threads * wall) : 0;
    m->util = util < 1 ? util : 1;
}

/* The step's GEMM FLOPs, the device's peak and its MFU; a step faster than the peak raises
 * the device's peak (a CPU device's per core). */
static void fill_flops(const dp_worker *w, dp_device_metrics *m, double wall)
{
    dp_device *d = w->dev;
    int per = d->be->cpu_threads ? m->threads : 1; /* a CPU device's peak_flops is per core */
    m->flops = w->flops_end - w->flops_start;
    /* More GEMM work per CPU second than a core's peak: the peak was measured low. Raised by
     * this rather than by the wall-time rate, a CPU device's MFU never exceeds its
     * utilisation. (A millisecond at least, so that clock granularity cannot raise it.) */
    if (d->be->cpu_threads && d->peak_flops > 0 && m->cpu_s > 1e-3 &&
        m->flops / m->cpu_s > d->peak_flops)
        d->peak_flops = m->flops / m->cpu_s;
    double peak = d->peak_flops * per;
    m->mfu = dp_peak_mfu(m->flops, wall, &peak);
    if (peak > d->peak_flops * per)
        d->peak_flops = peak / per;
    m->peak_flops = peak;
}

/* The coordinator, once every worker has done its update: each device's figures over one wall
 * time for all, from the STEP's posting to the last update's end. With one wall time, the CPU
 * devices' utilisation x threads sums to at most the cores that ran them, even when a worker
 * waited for a core to start (its own span would be shorter than the step). */
static void publish_step(dp_team *t)
{
    double end = t->step_posted;
    for (int i = 0; i < t->plan.workers; i++)
        end = t->w[i].step_end > end ? t->w[i].step_end : end;
    double wall = end - t->step_posted;
    for (int i = 0; i < t->plan.workers; i++) {
        dp_worker *w = &t->w[i];
        dp_device_metrics m = w->done;
        m.idle_s = wall - m.compute_s - m.comm_s;
        m.idle_s = m.idle_s > 0 ? m.idle_s : 0;
        fill_utilisation(w, &m, wall);
        fill_flops(w, &m, wall);
        dp_metrics_publish(t->cfg.metrics, w->index, &m);
        w->timeline.step_s = (float)(w->step_end - w->step_start);
        dp_metrics_publish_timeline(t->cfg.metrics, w->index, &w->timeline);
    }
}

/* ---- the comm thread: all-reduces buckets while backward goes on ---- */

static void *comm_main(void *arg)
{
    dp_worker *w = arg;
    w->dev->be->bind(w->dev);
    for (;;) {
        pthread_mutex_lock(&w->q_lock);
        while (w->finished == w->requested && !w->quit)
            pthread_cond_wait(&w->q_changed, &w->q_lock);
        if (w->finished == w->requested) { /* quit, nothing left */
            pthread_mutex_unlock(&w->q_lock);
            return NULL;
        }
        bucket b = w->buckets[w->queue[w->finished]];
        pthread_mutex_unlock(&w->q_lock);
        float *g = w->st.grads + b.offset;
        if (w->staging) { /* the host all-reduce works on host memory: stage through it */
            w->dev->be->download(w->dev, w->staging, g, b.count * sizeof *g);
            dp_comm_allreduce(w->group, w->replica, w->staging, b.count);
            w->dev->be->upload(w->dev, g, w->staging, b.count * sizeof *g);
            w->dev->be->synchronize(w->dev);
        } else {
            dp_comm_allreduce(w->group, w->replica, g, b.count);
        }
        pthread_mutex_lock(&w->q_lock);
        w->finished++;
        pthread_cond_broadcast(&w->q_changed);
        pthread_mutex_unlock(&w->q_lock);
    }
}

static bool in_part(dp_model_part want, dp_model_part part)
{
    return want == DP_PART_ALL || want == part;
}

/* dp_layer_done_fn for the last backward of a pass: hands the ready buckets of the pass's
 * part to the comm thread. */
static void on_layer_done(void *arg, int layer)
{
    dp_worker *w = arg;
    while (w->next_bucket < w->n_buckets && w->buckets[w->next_bucket].first_layer == layer) {
        int b = w->next_bucket++;
        if (!in_part(w->reduce, w->buckets[b].part))
            continue;
        pthread_mutex_lock(&w->q_lock);
        w->queue[w->requested++] = b;
        pthread_cond_broadcast(&w->q_changed);
        pthread_mutex_unlock(&w->q_lock);
    }
}

static void wait_buckets(dp_worker *w)
{
    set_activity(w, DP_ACTIVITY_ALLREDUCE);
    double t0 = dp_now_s();
    pthread_mutex_lock(&w->q_lock);
    while (w->finished < w->reduce_count)
        pthread_cond_wait(&w->q_changed, &w->q_lock);
    w->requested = w->finished = 0;
    pthread_mutex_unlock(&w->q_lock);
    dp_comm_join(w->group, w->replica);
    w->next_bucket = 0;
    w->allreduce_wait_s += dp_now_s() - t0;
    set_activity(w, w->doing);
}

/* Groups the stage's layers, last first (the order backward produces them), into buckets of
 * about bucket_mb; a layer is never split, and a bucket never holds layers of both of a GAN's
 * models (each is summed after its own pass). As in PyTorch DDP, the first bucket holds about
 * 1 MiB only, so that communication starts early in backward. */
static int make_buckets(dp_worker *w, double bucket_mb)
{
    const dp_model *m = w->st.model;
    size_t cap = (size_t)(bucket_mb * 1048576.0 / sizeof(float));
    size_t first_cap = cap < (1u << 20) / sizeof(float) ? cap : (1u << 20) / sizeof(float);
    w->buckets = calloc((size_t)(w->st.last - w->st.first), sizeof *w->buckets);
    w->queue = calloc((size_t)(w->st.last - w->st.first), sizeof *w->queue);
    if (!w->buckets || !w->queue)
        return -1;
    bucket *open = NULL;
    for (int i = w->st.last - 1; i >= w->st.first; i--) {
        const dp_layer *l = &m->layers[i];
        if (!l->param_count)
            continue;
        dp_model_part part = i >= m->gan_split ? DP_PART_D : DP_PART_G;
        if (!open || open->count >= (w->n_buckets == 1 ? first_cap : cap) || open->part != part) {
            open = &w->buckets[w->n_buckets++];
            open->offset = l->param_offset - w->st.param_offset + l->param_count;
            open->part = part;
        }
        open->offset -= l->param_count;
        open->count += l->param_count;
        open->first_layer = i;
    }
    return 0;
}

/* ---- commands ---- */

static int is_last_stage(const dp_worker *w)
{
    return w->stage == w->team->plan.stages - 1;
}

/* Rows and first row of micro-batch j of this worker's shard of a batch of `rows`. */
static void micro_rows(const dp_worker *w, int rows, int j, int *n, int *start)
{
    const dp_plan *p = &w->team->plan;
    int shard = dp_split_rows(rows, p->replicas, w->replica);
    *n = dp_split_rows(shard, p->micro, j);
    *start = dp_split_start(rows, p->replicas, w->replica) + dp_split_start(shard, p->micro, j);
}

/* Where the rows of a batch come from: host memory (x, y), or the data sets held on the
 * devices (resident): training rows by their samples' indices, test rows in order. */
typedef struct batch_rows {
    const float *x;        /* [rows, in] on the host, or NULL: resident */
    const int32_t *y;
    const int32_t *idx;    /* resident training rows: their sample indices (host) */
    long first;            /* resident test rows: the batch's first sample */
    bool in_host_batch;    /* x and y are a trainer's host batch (host_alloc memory, unchanged
                              until the step is done), not the data set */
    long step;             /* a training step's number; 0: evaluation */
    long first_row;        /* the place of row 0 in the global batch (other processes take
                              the rows before it) */
    int batch_rows;        /* the global batch's rows (a training step's) */
} batch_rows;

/* Uploads from a step's host batch need not be waited for: it stays put until the step ends,
 * after the device's last synchronize. */
static void upload(dp_worker *w, void *dst, const void *src, size_t bytes, bool from_batch)
{
    if (from_batch)
        w->dev->be->upload_async(w->dev, dst, src, bytes);
    else
        w->dev->be->upload(w->dev, dst, src, bytes);
}

/* Puts rows [start, start + n) of the batch into the input of the stage's layer `layer` (where
 * the data enter: its first stage's first layer, a GAN's discriminator's) in `slot`, or into
 * its labels (labels: the last stage). */
static void load_rows(dp_worker *w, const batch_rows *b, int start, int n, int slot, bool labels,
                      int layer)
{
    const dp_backend *be = w->dev->be;
    const dp_resident *res = w->res;
    size_t in = (size_t)w->st.model->layers[layer].in;
    size_t bytes = labels ? (size_t)w->st.model->targets * sizeof(int32_t) : in * 4;
    void *dst = labels ? (void *)dp_stage_labels(&w->st, slot)
                       : (void *)dp_stage_layer_input(&w->st, slot, layer);
    if (!res) {
        const void *src = labels ? (const void *)((const char *)b->y + start * bytes)
                                 : (const void *)(b->x + (size_t)start * in);
        upload(w, dst, src, (size_t)n * bytes, b->in_host_batch);
    } else if (b->idx) {
        if (!labels || layer > 0) /* the inputs of the same stage brought the indices */
            upload(w, res->idx, b->idx + start, (size_t)n * sizeof *b->idx, true);
        const void *table = labels ? (const void *)res->train_y : (const void *)res->train_x;
        be->gather_rows(w->dev, dst, table, res->idx, n, bytes);
    } else {
        const char *src = labels ? (const char *)res->test_y : (const char *)res->test_x;
        be->copy(w->dev, dst, src + (size_t)(b->first + start) * bytes, (size_t)n * bytes);
    }
}

/* The objective's change to a loaded micro-batch before its forward pass (a masked language
 * model's masks): to the inputs on the first stage, to the targets on the last. */
static void transform_rows(dp_worker *w, int slot, int n, const dp_step_key *key)
{
    const dp_objective *o = w->st.model->objective;
    if (!o->transform)
        return;
    float *x = w->stage == 0 ? dp_stage_input(&w->st, slot) : NULL;
    int32_t *y = is_last_stage(w) ? dp_stage_labels(&w->st, slot) : NULL;
    o->transform(w->dev, key, x, dp_stage_in_width(&w->st), y, w->st.model->targets, n);
}

/* What a pass asks of this worker's stage (engine/gan.h has a GAN's passes). */
typedef struct pass_plan {
    dp_pass_kind kind;
    bool forward, backward;  /* whether the stage takes part in them */
    int from;                /* the first layer it runs forward (a model index) */
    int stop;                /* the layer backward runs down to */
    bool input_data;         /* layer from's input comes from the batch ... */
    bool input_noise;        /* ... or is noise; else from the stage before */
    bool send_grad;          /* the gradient of layer stop's input goes to the stage before */
    int target;              /* a GAN pass's label for every row; -1: the batch's labels */
    bool accumulate;         /* backward adds to an earlier pass's gradients */
    bool reduces;            /* the gradients of part `reduce` are summed among the replicas */
    dp_model_part reduce;
} pass_plan;

/* The stage's part in a pass of this kind. A pipeline cuts between a GAN's two models, so a
 * stage of several holds layers of one; a single stage holds both. */
static pass_plan plan_pass(const dp_worker *w, dp_pass_kind kind)
{
    int split = w->st.model->gan_split, first = w->st.first, last = w->st.last;
    int d_from = first > split ? first : split; /* the stage's first layer of D */
    pass_plan p = { .kind = kind, .forward = true, .backward = true, .from = first,
                    .stop = first, .input_data = w->stage == 0, .send_grad = w->stage > 0,
                    .target = -1, .reduces = true, .reduce = DP_PART_ALL };
    switch (kind) {
    case DP_PASS_TRAIN:
        break;
    case DP_PASS_D_REAL: /* D alone, on the batch */
        p.forward = p.backward = last > split;
        p.from = p.stop = d_from;
        p.input_data = first <= split;
        p.send_grad = first > split;
        p.target = 1;
        p.reduces = false;
        break;
    case DP_PASS_D_FAKE: /* G then D; backward through D only */
        p.input_data = false;
        p.input_noise = w->stage == 0;
        p.backward = last > split;
        p.stop = d_from;
        p.send_grad = first > split;
        p.target = 0;
        p.accumulate = true;
        p.reduce = DP_PART_D;
        break;
    case DP_PASS_G: /* G then D; backward through both, G's gradients summed */
        p.input_data = false;
        p.input_noise = w->stage == 0;
        p.target = 1;
        p.reduce = DP_PART_G;
        break;
    }
    return p;
}

/* The training key of a pass's micro-batch: a GAN's fakes are the places after the batch's
 * real samples (so their dropout masks differ from the reals'). */
static dp_step_key pass_key(const dp_worker *w, const pass_plan *pp, const batch_rows *b,
                            int start)
{
    long fakes = pp->kind == DP_PASS_D_FAKE || pp->kind == DP_PASS_G ? b->batch_rows : 0;
    return (dp_step_key){ w->team->cfg.seed, b->step, b->first_row + start + fakes };
}

/* Noise for rows [start, start + n) of the batch into x (the generator's input). */
static void make_noise(dp_worker *w, uint64_t purpose, long step, long sample0, int n, float *x)
{
    dp_noise_args a = { w->team->cfg.seed, purpose, (uint64_t)step, (uint64_t)sample0 };
    w->dev->be->noise(w->dev, x, n, w->st.model->layers[0].in, a);
}

/* The last stage's labels of a micro-batch: the batch's, or a GAN pass's target for every row. */
static void load_targets(dp_worker *w, const pass_plan *pp, const batch_rows *b, int start,
                         int n, int slot)
{
    if (pp->target < 0) {
        load_rows(w, b, start, n, slot, true, w->st.first);
        return;
    }
    upload(w, dp_stage_labels(&w->st, slot), w->targets[pp->target], /* held until teardown */
           (size_t)n * sizeof(int32_t), true);
}

/* F(j): takes the micro-batch's input (from the data, noise or the stage before), runs forward
 * (a GAN's generator, run again for its update, leaving its running statistics alone), and
 * passes the output on (or keeps it for the loss). */
static void forward_op(dp_worker *w, const pass_plan *pp, const batch_rows *b, int rows, int j)
{
    const dp_backend *be = w->dev->be;
    dp_stage *st = &w->st;
    int n, start, slot = j % st->slots;
    micro_rows(w, rows, j, &n, &start);
    float *in = dp_stage_layer_input(st, slot, pp->from);
    if (pp->input_data)
        load_rows(w, b, start, n, slot, false, pp->from);
    else if (pp->input_noise)
        make_noise(w, DP_NOISE_TRAIN, b->step, b->first_row + start, n, in);
    else
        link_recv(w, w->fwd_in, in);
    w->op_begin = be->mark(w->dev, false);
    if (is_last_stage(w))
        load_targets(w, pp, b, start, n, slot);
    dp_step_key key = pass_key(w, pp, b, start);
    const dp_step_key *k = b->step ? &key : NULL;
    dp_step_key eval_key = { 0, 0, b->first + start }; /* the row's index in the split */
    transform_rows(w, slot, n, k ? k : &eval_key);
    int split = st->model->gan_split;
    int g_end = split > pp->from ? (split < st->last ? split : st->last) : pp->from;
    if (g_end > pp->from)
        dp_stage_forward_range(st, slot, n, k, pp->from, g_end, pp->kind == DP_PASS_G);
    if (st->last > g_end)
        dp_stage_forward_range(st, slot, n, k, g_end, st->last, false);
    w->op_end = be->mark(w->dev, false);
    w->last_slot = slot;
    w->last_rows = n;
    if (!is_last_stage(w))
        link_send(w, w->fwd_out, dp_stage_output(st, slot),
                  (size_t)n * dp_stage_out_width(st));
    if (pp->backward && ++w->in_flight > w->in_flight_max)
        w->in_flight_max = w->in_flight;
}

/* B(j): the gradient of the micro-batch's output (from the loss, or the stage after), backward,
 * and the input's gradient passed back. The last B of a pass starts the all-reduce buckets. */
static void backward_op(dp_worker *w, const pass_plan *pp, int rows, int j, bool first_b,
                        bool last_b)
{
    const dp_backend *be = w->dev->be;
    int n, start, slot = j % w->st.slots;
    micro_rows(w, rows, j, &n, &start);
    const float *dy;
    if (is_last_stage(w)) {
        w->op_begin = be->mark(w->dev, false);
        dy = dp_stage_loss(&w->st, slot, n, w->grad_scale, true);
    } else {
        link_recv(w, w->bwd_in, w->st.dgrad[0]);
        w->op_begin = be->mark(w->dev, false);
        dy = w->st.dgrad[0];
    }
    bool hook = last_b && w->group && pp->reduces;
    float *dx = dp_stage_backward_range(&w->st, slot, n, dy, pp->accumulate || !first_b,
                                        pp->stop, pp->send_grad, hook ? on_layer_done : NULL, w);
    w->op_end = be->mark(w->dev, false);
    if (pp->send_grad)
        link_send(w, w->bwd_out, dx, (size_t)n * w->st.model->layers[pp->stop].in);
    w->in_flight--;
}

/* Zeroes the last stage's objective sums before a batch's forward passes (and not after the
 * download, which would leave an operation in flight while the host works). */
static void reset_stats(dp_worker *w)
{
    w->dev->be->zero(w->dev, w->st.stats, DP_STAGE_STATS * sizeof *w->st.stats);
}

/* Adds the last stage's objective sums (loss first) to the result; replica 0's stages also
 * report their gradients' sum of squares. */
static void collect_stats(dp_worker *w)
{
    if (!is_last_stage(w) && w->replica != 0)
        return;
    float stats[DP_STAGE_STATS];
    w->dev->be->download(w->dev, stats, w->st.stats, sizeof stats);
    for (int i = 0; i < w->st.model->objective->n_stats; i++)
        w->result.stats[i] += stats[i];
    w->result.grad_sumsq = stats[DP_STAGE_GRAD_SUMSQ];
}

/* The timing of a step, taken at its first pass. */
static void begin_step(dp_worker *w)
{
    w->step_start = dp_now_s();
    start_counters(w);
    w->busy_start = w->dev->be->busy_seconds(w->dev);
    w->allreduce_wait_s = 0;
    w->stats_sync_start = w->stats_group ? dp_comm_now_seconds(w->stats_group, w->replica) : 0;
    w->link_time = (dp_link_time){ 0 };
    w->in_flight_max = 0;
    w->timeline.n_ops = 0;
    w->dev->be->mark(w->dev, true);
}

/* The squared gradients of the pass's part (replica 0: every replica holds the same sums). */
static void gradient_squares(dp_worker *w, const pass_plan *pp)
{
    int from, to;
    size_t off, count;
    dp_gan_part_layers(w->st.model, pp->reduce, &from, &to);
    dp_stage_param_range(&w->st, from, to, &off, &count);
    if (w->replica == 0 && count)
        w->dev->be->accumulate_squares(w->dev, w->st.grads + off, count,
                                       w->st.stats + DP_STAGE_GRAD_SUMSQ);
    collect_stats(w);
    if (w->team->cfg.optim->clip > 0 && w->replica == 0) /* the exact sum, in double, for
                                                           clipping's factor */
        w->result.grad_sumsq = count ? w->dev->be->sum_squares(w->dev, w->st.grads + off,
                                                               count) : 0.0;
}

/* One pass of a step (the only one of an ordinary model's; one of a GAN's three): this
 * stage's forward and backward operations in the schedule's order, then the all-reduce. */
static void run_step(dp_worker *w, const dp_cmd *c)
{
    if (!c->continues)
        begin_step(w);
    pass_plan pp = plan_pass(w, c->pass);
    w->in_flight = 0;
    w->reduce = pp.reduce;
    w->reduce_count = 0;
    for (int b = 0; b < w->n_buckets; b++)
        w->reduce_count += in_part(pp.reduce, w->buckets[b].part);
    int first_b = -1, last_b = -1;
    for (int i = 0; i < w->n_ops && pp.backward; i++)
        if (w->ops[i].kind == 'B') {
            first_b = first_b < 0 ? i : first_b;
            last_b = i;
        }
    const dp_backend *be = w->dev->be;
    int marks[DP_TIMELINE_OPS][2], n0 = w->timeline.n_ops;
    reset_stats(w);
    batch_rows b = { c->x, c->y, c->idx, 0, true, c->step, c->first_row, c->batch_rows };
    dp_step_key key = { w->team->cfg.seed, c->step, 0 };
    w->grad_scale = w->st.model->objective->grad_scale(&key, c->batch_rows,
                                                       w->st.model->targets);
    for (int i = 0; i < w->n_ops; i++) {
        bool f = w->ops[i].kind == 'F';
        if (f ? !pp.forward : !pp.backward)
            continue;
        if (f)
            forward_op(w, &pp, &b, c->rows, w->ops[i].micro);
        else
            backward_op(w, &pp, c->rows, w->ops[i].micro, i == first_b, i == last_b);
        if (w->timeline.n_ops < DP_TIMELINE_OPS) {
            marks[w->timeline.n_ops - n0][0] = w->op_begin;
            marks[w->timeline.n_ops - n0][1] = w->op_end;
            w->timeline.ops[w->timeline.n_ops++] =
                (dp_timeline_op){ w->ops[i].kind, w->ops[i].micro, 0.0f, 0.0f };
        }
    }
    if (w->group && pp.reduces && pp.backward)
        wait_buckets(w);
    if (pp.reduces)
        gradient_squares(w, &pp);
    else
        collect_stats(w);
    be->synchronize(w->dev); /* the marks are read once the device has passed them */
    for (int i = n0; i < w->timeline.n_ops; i++)
        if (marks[i - n0][0] >= 0 && marks[i - n0][1] >= 0) {
            w->timeline.ops[i].start = (float)be->mark_seconds(w->dev, marks[i - n0][0]);
            w->timeline.ops[i].end = (float)be->mark_seconds(w->dev, marks[i - n0][1]);
        }
}

/* "replica 1, stage 2 (layers 3-4)", or the parts that apply. */
static void role_text(const dp_worker *w, char *buf, size_t size)
{
    const dp_plan *p = &w->team->plan;
    if (p->strategy == DP_STRATEGY_SINGLE)
        snprintf(buf, size, "single");
    else if (p->stages == 1)
        snprintf(buf, size, "replica %d", w->replica);
    else if (p->replicas == 1)
        snprintf(buf, size, "stage %d (layers %d-%d)", w->stage, w->st.first, w->st.last - 1);
    else
        snprintf(buf, size, "replica %d, stage %d (layers %d-%d)", w->replica, w->stage,
                 w->st.first, w->st.last - 1);
}

static void run_update(dp_worker *w, const dp_cmd *c)
{
    const dp_optim_config *oc = w->team->cfg.optim;
    int from, to;
    dp_gan_part_layers(w->st.model, c->part, &from, &to);
    if (!c->skip) {
        size_t off, count;
        dp_stage_param_range(&w->st, from, to, &off, &count);
        if (c->clip_factor < 1.0f && count)
            w->dev->be->scale(w->dev, w->st.grads + off, c->clip_factor, count);
        dp_stage_update(&w->st, oc, c->t, c->lr, from, to);
    }
    w->dev->be->synchronize(w->dev);
    if (c->mid_step)
        return;
    end_counters(w);
    dp_device_metrics *m = &w->done; /* the rest when every worker is done: publish_step */
    *m = (dp_device_metrics){ .step = c->step, .loss = c->replica_loss[w->replica] };
    snprintf(m->device, sizeof m->device, "%s", w->dev->name);
    role_text(w, m->role, sizeof m->role);
    m->mem_bytes = w->dev->mem_held;
    m->mem_peak_bytes = w->dev->mem_peak;
    /* a CPU device shares the host's memory, which views show once */
    m->mem_total_bytes = w->dev->be->host_memory ? 0 : w->dev->mem_total;
    m->act_peak_bytes = (size_t)w->in_flight_max * w->st.slot_bytes;
    m->compute_s = w->dev->be->busy_seconds(w->dev) - w->busy_start;
    m->comm_s = w->allreduce_wait_s + w->link_time.copy_s;
    if (w->stats_group) /* batch statistics summed with the other replicas during passes */
        m->comm_s += dp_comm_now_seconds(w->stats_group, w->replica) - w->stats_sync_start;
}

/* Forward over samples [first, first + count) of d, in batches (a GAN's discriminator alone,
 * on the real samples: `pass` D_REAL). */
static void run_eval(dp_worker *w, dp_pass_kind pass, const dp_dataset *d, long first,
                     long count)
{
    int batch = w->team->cfg.batch;
    const dp_plan *p = &w->team->plan;
    pass_plan pp = plan_pass(w, pass);
    pp.backward = false;
    for (long at = first; at < first + count && pp.forward; at += batch) {
        int rows = first + count - at < batch ? (int)(first + count - at) : batch;
        batch_rows b = { d->x + (size_t)at * d->features, d->y + (size_t)at * d->targets, NULL,
                         at, false, 0, 0, rows };
        if (w->res)
            b.x = NULL, b.y = NULL;
        reset_stats(w);
        for (int j = 0; j < p->micro; j++) {
            forward_op(w, &pp, &b, rows, j);
            if (is_last_stage(w)) {
                int n, start;
                micro_rows(w, rows, j, &n, &start);
                dp_stage_loss(&w->st, j % w->st.slots, n, 0.0f, false);
            }
        }
        collect_stats(w);
    }
}

/* A GAN's generator in evaluation on c->rows rows of noise, in micro-batches as a training
 * pass cuts them: the stage that holds its last layer downloads the images into c->out. With
 * c->x, a model that is not a GAN the same way on those rows, through its last layer. */
static void run_generate(dp_worker *w, const dp_cmd *c)
{
    dp_stage *st = &w->st;
    const dp_model *m = st->model;
    int end = m->gan_split ? m->gan_split : m->n_layers; /* the layers run: [0, end) */
    int to = st->last < end ? st->last : end;
    if (st->first >= end)
        return; /* a stage of the discriminator */
    size_t width = (size_t)(end < m->n_layers ? m->layers[end].in : m->layers[end - 1].out);
    size_t in_width = (size_t)m->layers[0].in;
    for (int j = 0; j < w->team->plan.micro; j++) {
        int n, start, slot = j % st->slots;
        micro_rows(w, c->rows, j, &n, &start);
        if (!n)
            continue; /* every stage of the replica skips the same ones */
        float *in = dp_stage_input(st, slot);
        if (w->stage > 0)
            link_recv(w, w->fwd_in, in);
        else if (c->x) /* the caller's rows, not a step's batch: waited for */
            w->dev->be->upload(w->dev, in, c->x + (size_t)start * in_width,
                               (size_t)n * in_width * sizeof *in);
        else
            make_noise(w, c->noise_purpose, 0, c->sample0 + start, n, in);
        dp_stage_forward_range(st, slot, n, NULL, st->first, to, false);
        float *out = dp_stage_layer_input(st, slot, to);
        if (to < end)
            link_send(w, w->fwd_out, out, (size_t)n * dp_stage_out_width(st));
        else
            w->dev->be->download(w->dev, c->out + (size_t)start * width, out,
                                 (size_t)n * width * sizeof *out);
    }
}

static bool all_finite(dp_worker *w, const float *x, size_t n)
{
    return isfinite(w->dev->be->sum_squares(w->dev, x, n));
}

/* Finds where non-finite values are in the stage: forward, the first layer whose weights or
 * last output are not finite; backward, the last layer whose gradient is not. */
static void run_diagnose(dp_worker *w)
{
    const dp_stage *s = &w->st;
    w->result.bad_forward = w->result.bad_backward = -1;
    for (int i = s->first; i < s->last && w->result.bad_forward < 0; i++) {
        const dp_layer *l = &s->model->layers[i];
        const float *params = s->params + (l->param_offset - s->param_offset);
        const float *out = dp_stage_layer_output(s, w->last_slot, i);
        if (l->param_count && !all_finite(w, params, l->param_count)) {
            w->result.bad_forward = i;
            w->result.bad_weights = true;
        } else if (!all_finite(w, out, (size_t)w->last_rows * l->out)) {
            w->result.bad_forward = i;
        }
    }
    for (int i = s->last - 1; i >= s->first && w->result.bad_backward < 0; i--) {
        const dp_layer *l = &s->model->layers[i];
        if (l->param_count &&
            !all_finite(w, s->grads + (l->param_offset - s->param_offset), l->param_count))
            w->result.bad_backward = i;
    }
}

static void carry_out(dp_worker *w, const dp_cmd *c)
{
    if (c->kind != DP_CMD_UPDATE)
        w->result = (dp_worker_result){ 0 };
    w->doing = c->kind == DP_CMD_EVAL ? DP_ACTIVITY_EVAL : DP_ACTIVITY_COMPUTE;
    set_activity(w, w->doing);
    switch (c->kind) {
    case DP_CMD_STEP:
        run_step(w, c);
        break;
    case DP_CMD_UPDATE:
        run_update(w, c);
        break;
    case DP_CMD_EVAL:
        run_eval(w, c->pass, c->data, c->data_first, c->data_rows);
        break;
    case DP_CMD_GENERATE:
        run_generate(w, c);
        break;
    case DP_CMD_GATHER:
        if (w->replica == 0) { /* every replica holds the same values */
            dp_stage_download_params(&w->st, c->params);
            dp_stage_download_state(&w->st, c->state);
            w->dev->be->synchronize(w->dev);
        }
        break;
    case DP_CMD_SCATTER:
        dp_stage_upload_params(&w->st, c->params);
        dp_stage_upload_state(&w->st, c->state);
        w->dev->be->synchronize(w->dev);
        break;
    case DP_CMD_DIAGNOSE:
        run_diagnose(w);
        break;
    case DP_CMD_QUIT:
        break;
    }
    set_activity(w, DP_ACTIVITY_IDLE);
}

/* Marks the current command (or the setup) done for this worker. */
static void finish(dp_team *t)
{
    pthread_mutex_lock(&t->lock);
    if (--t->pending == 0)
        pthread_cond_signal(&t->done);
    pthread_mutex_unlock(&t->lock);
}

/* Allocates the worker's stage and buckets and starts its comm thread. */
static int set_up(dp_worker *w)
{
    dp_team *t = w->team;
    w->dev->be->bind(w->dev);
    const dp_plan *p = &t->plan;
    w->n_ops = 2 * p->micro;
    w->ops = malloc((size_t)w->n_ops * sizeof *w->ops);
    if (!w->ops)
        return dp_fail(&w->result.err, "out of host memory");
    dp_schedule_ops(p->schedule, p->stages, w->stage, p->micro, w->ops);
    int slots = dp_schedule_in_flight(w->ops, w->n_ops);
    for (int k = 0; k < 2; k++) {
        if (!(w->targets[k] = malloc((size_t)t->micro_rows * sizeof(int32_t))))
            return dp_fail(&w->result.err, "out of host memory");
        for (int r = 0; r < t->micro_rows; r++)
            w->targets[k][r] = k;
    }
    if (dp_stage_create(&w->st, t->cfg.model, w->dev, p->first_layer[w->stage],
                        p->first_layer[w->stage + 1], t->micro_rows, slots, t->cfg.optim,
                        &w->result.err) < 0)
        return -1;
    w->st.replicas = w->stats_group;
    w->st.replica = w->replica;
    if (make_buckets(w, t->cfg.bucket_mb) < 0)
        return dp_fail(&w->result.err, "out of host memory");
    if (w->group && !w->dev->be->host_memory && !dp_comm_on_device(w->group)) {
        size_t most = 0;
        for (int b = 0; b < w->n_buckets; b++)
            most = w->buckets[b].count > most ? w->buckets[b].count : most;
        if (!(w->staging = malloc(most * sizeof *w->staging + 1)))
            return dp_fail(&w->result.err, "out of host memory for all-reduce staging");
    }
    if (w->group && pthread_create(&w->comm_thread, NULL, comm_main, w) != 0) {
        w->group = NULL;
        return dp_fail(&w->result.err, "%s: cannot start a communication thread",
                       w->dev->name);
    }
    w->has_comm_clock = w->group && pthread_getcpuclockid(w->comm_thread, &w->comm_clock) == 0;
    return 0;
}

/* Stops the comm thread and frees what set_up made. */
static void tear_down(dp_worker *w)
{
    if (w->group) {
        pthread_mutex_lock(&w->q_lock);
        w->quit = 1;
        pthread_cond_broadcast(&w->q_changed);
        pthread_mutex_unlock(&w->q_lock);
        pthread_join(w->comm_thread, NULL);
    }
    dp_stage_destroy(&w->st);
    free(w->ops);
    free(w->buckets);
    free(w->queue);
    free(w->targets[0]);
    free(w->targets[1]);
    free(w->staging);
}

static void *worker_main(void *arg)
{
    dp_worker *w = arg;
    dp_team *t = w->team;
    w->result.failed = set_up(w) < 0;
    finish(t);
    for (;;) {
        pthread_mutex_lock(&t->lock);
        while (t->generation == w->seen)
            pthread_cond_wait(&t->posted, &t->lock);
        w->seen = t->generation;
        dp_cmd c = t->cmd;
        pthread_mutex_unlock(&t->lock);
        if (c.kind == DP_CMD_QUIT)
            break;
        carry_out(w, &c);
        finish(t);
    }
    tear_down(w);
    finish(t);
    return NULL;
}

/* ---- the team ---- */

/* The most rows a micro-batch of a plan carries. */
static int team_micro_rows(const dp_plan *p, int batch)
{
    int shard = (batch + p->replicas - 1) / p->replicas;
    return (shard + p->micro - 1) / p->micro;
}

/* Floats a message over the cut before stage s (s >= 1) carries: activations forward,
 * gradients back. */
static size_t cut_floats(const dp_plan *p, const dp_model *m, int micro_rows, int s)
{
    return (size_t)micro_rows * m->layers[p->first_layer[s]].in;
}

#define LINK_SLOTS 2 /* two slots let a stage run one micro-batch ahead of its neighbour */

/* Makes the pipeline links: for each replica and each cut between stages, one link forward
 * (held by the later stage's device) and one back (held by the earlier one's). */
static int make_links(dp_team *t, dp_err *err)
{
    const dp_plan *p = &t->plan;
    t->links = calloc((size_t)(2 * p->replicas * p->stages), sizeof *t->links);
    if (!t->links)
        return dp_fail(err, "out of host memory");
    for (int r = 0; r < p->replicas; r++)
        for (int s = 0; s + 1 < p->stages; s++) {
            dp_worker *a = &t->w[r * p->stages + s], *b = &t->w[r * p->stages + s + 1];
            size_t floats = cut_floats(p, t->cfg.model, t->micro_rows, s + 1);
            if (!(a->fwd_out = b->fwd_in = dp_link_create(a->dev, b->dev, LINK_SLOTS, floats,
                                                          err)))
                return -1;
            t->links[t->n_links++] = a->fwd_out;
            if (!(b->bwd_out = a->bwd_in = dp_link_create(b->dev, a->dev, LINK_SLOTS, floats,
                                                          err)))
                return -1;
            t->links[t->n_links++] = b->bwd_out;
        }
    return 0;
}

static void free_team(dp_team *t)
{
    for (int i = 0; i < t->n_links; i++)
        dp_link_destroy(t->links[i]);
    free(t->links);
    for (int s = 0; s < t->plan.stages; s++) {
        dp_comm_destroy(t->groups ? t->groups[s] : NULL);
        dp_comm_destroy(t->stats_groups ? t->stats_groups[s] : NULL);
    }
    free(t->groups);
    free(t->stats_groups);
    if (t->w)
        for (int i = 0; i < t->plan.workers; i++) {
            pthread_mutex_destroy(&t->w[i].q_lock);
            pthread_cond_destroy(&t->w[i].q_changed);
        }
    free(t->w);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->posted);
    pthread_cond_destroy(&t->done);
    free(t);
}

/* Waits until every worker has finished what was posted last (or its setup, or quitting). */
static void wait_done(dp_team *t)
{
    pthread_mutex_lock(&t->lock);
    while (t->pending > 0)
        pthread_cond_wait(&t->done, &t->lock);
    pthread_mutex_unlock(&t->lock);
}

static void post(dp_team *t, const dp_cmd *cmd)
{
    pthread_mutex_lock(&t->lock);
    t->cmd = *cmd;
    t->pending = t->plan.workers;
    t->generation++;
    pthread_cond_broadcast(&t->posted);
    pthread_mutex_unlock(&t->lock);
}

/* Fills in worker i's place in the plan, its device and its hand-off to the comm thread. */
static void init_worker(dp_team *t, int i)
{
    const dp_plan *plan = &t->plan;
    const dp_team_config *c = &t->cfg;
    dp_worker *w = &t->w[i];
    w->team = t;
    w->index = i;
    w->replica = i / plan->stages;
    w->stage = i % plan->stages;
    w->dev = &c->devices[i];
    w->res = c->resident ? &c->resident[i] : NULL;
    pthread_mutex_init(&w->q_lock, NULL);
    pthread_cond_init(&w->q_changed, NULL);
}

/* A team for the plan with its workers described, none of them set up yet; NULL (reported) when
 * out of host memory. */
static dp_team *new_team(const dp_plan *plan, const dp_team_config *c, dp_err *err)
{
    dp_team *t = calloc(1, sizeof *t);
    if (!t) {
        dp_fail(err, "out of host memory");
        return NULL;
    }
    t->plan = *plan;
    t->cfg = *c;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->posted, NULL);
    pthread_cond_init(&t->done, NULL);
    t->micro_rows = team_micro_rows(plan, c->batch);
    t->w = calloc((size_t)plan->workers, sizeof *t->w);
    t->groups = calloc((size_t)plan->stages, sizeof *t->groups);
    t->stats_groups = calloc((size_t)plan->stages, sizeof *t->stats_groups);
    if (!t->w || !t->groups || !t->stats_groups) {
        dp_fail(err, "out of host memory");
        free_team(t);
        return NULL;
    }
    for (int i = 0; i < plan->workers; i++)
        init_worker(t, i);
    return t;
}

/* Makes a comm group per stage, of that stage's replicas, when there are several replicas or
 * several processes (a group even of one replica, to reach the others); and a second one for
 * batch statistics when the model has them (every process makes the same groups, in the same
 * order). */
static int make_groups(dp_team *t, dp_err *err)
{
    const dp_plan *plan = &t->plan;
    if (plan->replicas <= 1 && dp_world_size() <= 1)
        return 0;
    bool stats = dp_model_batch_statistics(t->cfg.model);
    for (int s = 0; s < plan->stages; s++) {
        dp_device *members[DP_MAX_DEVICES];
        for (int r = 0; r < plan->replicas; r++)
            members[r] = t->w[r * plan->stages + s].dev;
        if (!(t->groups[s] = dp_comm_create(members, plan->replicas, err)))
            return -1;
        if (stats && !(t->stats_groups[s] = dp_comm_create(members, plan->replicas, err)))
            return -1;
        for (int r = 0; r < plan->replicas; r++) {
            t->w[r * plan->stages + s].group = t->groups[s];
            t->w[r * plan->stages + s].stats_group = t->stats_groups[s];
        }
    }
    return 0;
}

/* Sets up the single worker on the coordinator's thread, which then does its work: two thread
 * hand-offs a step fewer (a quarter of a small network's step time). */
static int start_inline(dp_team *t, dp_err *err)
{
    t->inline_worker = true;
    if (set_up(&t->w[0]) < 0) {
        *err = t->w[0].result.err;
        tear_down(&t->w[0]);
        return -1;
    }
    return 0;
}

/* Starts a thread per worker and waits for their setups. On a failure (a thread that does not
 * start, or a setup), the threads that did start are told to quit and joined. */
static int start_threads(dp_team *t, dp_err *err)
{
    int n = t->plan.workers;
    t->pending = n;
    int started = 0;
    for (; started < n; started++)
        if (pthread_create(&t->w[started].thread, NULL, worker_main, &t->w[started]) != 0)
            break;
    if (started < n) {
        /* the threads that did start finish their setup, then quit with the rest */
        pthread_mutex_lock(&t->lock);
        t->pending -= n - started;
        pthread_mutex_unlock(&t->lock);
        dp_fail(err, "cannot start worker thread %d", started);
    }
    wait_done(t);
    const dp_worker_result *failed = NULL;
    for (int i = 0; i < started && !failed; i++)
        if (t->w[i].result.failed)
            failed = &t->w[i].result;
    if (!failed && started == n)
        return 0;
    if (failed)
        *err = failed->err;
    dp_cmd quit = { .kind = DP_CMD_QUIT };
    post(t, &quit);
    for (int i = 0; i < started; i++)
        pthread_join(t->w[i].thread, NULL);
    return -1;
}

dp_team *dp_team_start(const dp_plan *plan, const dp_team_config *c, dp_err *err)
{
    dp_team *t = new_team(plan, c, err);
    if (!t)
        return NULL;
    if (make_groups(t, err) < 0 || make_links(t, err) < 0 ||
        (plan->workers == 1 ? start_inline(t, err) : start_threads(t, err)) < 0) {
        free_team(t);
        return NULL;
    }
    return t;
}

void dp_team_bytes(const dp_plan *p, const dp_team_config *c, size_t *bytes)
{
    int rows = team_micro_rows(p, c->batch);
    dp_sched_op *ops = malloc((size_t)2 * p->micro * sizeof *ops);
    for (int s = 0; s < p->stages; s++) {
        int slots = p->micro; /* the most any schedule holds, without room for the ops */
        if (ops) {
            dp_schedule_ops(p->schedule, p->stages, s, p->micro, ops);
            slots = dp_schedule_in_flight(ops, 2 * p->micro);
        }
        size_t links = 0;
        if (s > 0) /* the activations coming in */
            links += LINK_SLOTS * cut_floats(p, c->model, rows, s) * sizeof(float);
        if (s + 1 < p->stages) /* the gradients coming back */
            links += LINK_SLOTS * cut_floats(p, c->model, rows, s + 1) * sizeof(float);
        for (int r = 0; r < p->replicas; r++) {
            int w = r * p->stages + s;
            bytes[w] = links + dp_stage_bytes(c->model, &c->devices[w], p->first_layer[s],
                                              p->first_layer[s + 1], rows, slots, c->optim);
        }
    }
    free(ops);
}

void dp_team_stop(dp_team *t)
{
    if (!t)
        return;
    if (t->inline_worker) {
        tear_down(&t->w[0]);
        free_team(t);
        return;
    }
    dp_cmd quit = { .kind = DP_CMD_QUIT };
    post(t, &quit);
    for (int i = 0; i < t->plan.workers; i++)
        pthread_join(t->w[i].thread, NULL);
    free_team(t);
}

void dp_team_post(dp_team *t, const dp_cmd *cmd)
{
    if (cmd->kind == DP_CMD_STEP && !cmd->continues)
        t->step_posted = dp_now_s();
    t->last_ends_step = cmd->kind == DP_CMD_UPDATE && !cmd->mid_step;
    if (t->inline_worker)
        carry_out(&t->w[0], cmd);
    else
        post(t, cmd);
}

void dp_team_wait(dp_team *t)
{
    if (!t->inline_worker)
        wait_done(t);
    if (t->last_ends_step && t->cfg.metrics) {
        publish_step(t);
        t->last_ends_step = false; /* published once */
    }
}

void dp_team_run(dp_team *t, const dp_cmd *cmd)
{
    dp_team_post(t, cmd);
    dp_team_wait(t);
}

const dp_worker_result *dp_team_result(const dp_team *t, int i)
{
    return &t->w[i].result;
}

void dp_team_role(const dp_team *t, int i, int *replica, int *stage)
{
    *replica = t->w[i].replica;
    *stage = t->w[i].stage;
}
