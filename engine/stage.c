/* stage.c -- a stage: layers of a model placed on a device with their buffers, its passes
 * (forward, loss, backward), and the per-layer profile that balances pipeline stages. */
#include "engine/stage.h"

#include "base/clock.h"
#include "base/rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The stats sit in the 64 bytes left at the end of the activation allocation. */
_Static_assert(DP_STAGE_STATS * sizeof(float) <= 64, "the stage's stats need more room");

static size_t align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

/* Whether layer i of the stage is a ReLU that works in place on the output of the linear layer
 * before it, which applies it (backend linear with relu): a pass over the activations fewer
 * and a buffer fewer. Its backward needs no change: the gradient passes where x > 0, and
 * max(x, 0) > 0 exactly there. */
static bool relu_in_place(const dp_stage *s, int i)
{
    const dp_layer *l = s->model->layers;
    return i > s->first && i < s->last && l[i].ops == &dp_layer_relu &&
           l[i - 1].ops == &dp_layer_linear && i != s->model->gan_split; /* a pass enters there */
}

/* Width of boundary b of a stage: b = 0 is its input, b = last - first its output. */
static int boundary_width(const dp_stage *s, int b)
{
    return b == 0 ? s->model->layers[s->first].in : s->model->layers[s->first + b - 1].out;
}

/* Floats a layer keeps from forward to backward for a pass of `rows` samples. */
static size_t saved_floats(const dp_layer *l, size_t rows)
{
    return rows * l->saved + l->saved_pass;
}

/* The sizes of the parts of the activation allocation that are not per slot. */
typedef struct act_layout {
    size_t dgrad_bytes;   /* each of the two gradient buffers */
    size_t labels_bytes;  /* each slot's labels */
    size_t scratch_bytes; /* the layers' shared scratch */
} act_layout;

/* Sets the stage's fields that follow from its arguments alone. */
static void set_stage_fields(dp_stage *s, const dp_model *m, dp_device *d, int first, int last,
                             int max_rows, int slots, const dp_optim_config *oc)
{
    memset(s, 0, sizeof *s);
    s->model = m;
    s->dev = d;
    s->first = first;
    s->last = last;
    s->max_rows = max_rows;
    s->slots = slots;
    s->param_offset = m->layers[first].param_offset;
    s->n_params = (last < m->n_layers ? m->layers[last].param_offset : m->n_params) -
                  s->param_offset;
    s->state_per_param = dp_optim_state_per_param(oc);
}

/* Finds the runs of trained parameters among the stage's tensors (merging neighbours: a
 * stage without buffers has one run). */
static int find_trained(dp_stage *s, dp_err *err)
{
    int most = 0;
    for (int i = s->first; i < s->last; i++) {
        dp_tensor_info t[DP_MAX_LAYER_TENSORS];
        most += s->model->layers[i].ops->tensors(&s->model->layers[i], t);
    }
    s->trained = calloc((size_t)most + 1, sizeof *s->trained);
    if (!s->trained)
        return dp_fail(err, "out of host memory");
    for (int i = s->first; i < s->last; i++) {
        const dp_layer *l = &s->model->layers[i];
        dp_tensor_info t[DP_MAX_LAYER_TENSORS];
        int k = l->ops->tensors(l, t);
        for (int j = 0; j < k; j++) {
            if (t[j].buffer)
                continue;
            size_t at = l->param_offset - s->param_offset + t[j].offset;
            size_t *last = s->n_trained ? s->trained[s->n_trained - 1] : NULL;
            if (last && last[0] + last[1] == at)
                last[1] += t[j].count;
            else
                s->trained[s->n_trained][0] = at, s->trained[s->n_trained++][1] = t[j].count;
        }
    }
    return 0;
}

/* The host tables of pointers into the activation allocation, and each slot's step key. */
static int alloc_host_tables(dp_stage *s, dp_err *err)
{
    int n_bound = s->last - s->first + 1;
    s->acts = calloc((size_t)s->slots * n_bound, sizeof *s->acts);
    s->saved = calloc((size_t)s->slots * (s->last - s->first), sizeof *s->saved);
    s->keys = calloc((size_t)s->slots, sizeof *s->keys);
    s->training = calloc((size_t)s->slots, sizeof *s->training);
    if (!s->acts || !s->saved || !s->keys || !s->training)
        return dp_fail(err, "out of host memory");
    return find_trained(s, err);
}

/* Sizes the activation allocation: each slot's boundaries, two gradient buffers, each slot's
 * labels, the stats. Sets slot_bytes and act_bytes. */
static void plan_activations(dp_stage *s, act_layout *lay)
{
    const dp_model *m = s->model;
    size_t rows = (size_t)s->max_rows;
    size_t widest = 0;
    for (int b = 0; b < s->last - s->first + 1; b++) {
        size_t w = (size_t)boundary_width(s, b);
        widest = w > widest ? w : widest;
        if (b == 0 || !relu_in_place(s, s->first + b - 1))
            s->slot_bytes += align64(rows * w * sizeof(float));
    }
    size_t scratch = 0;
    for (int i = s->first; i < s->last; i++) {
        const dp_layer *l = &m->layers[i];
        s->slot_bytes += align64(saved_floats(l, rows) * sizeof(float));
        size_t need = l->ops->scratch ? l->ops->scratch(l, s->max_rows, s->dev) : 0;
        scratch = need > scratch ? need : scratch;
    }
    lay->dgrad_bytes = align64(rows * widest * sizeof(float));
    lay->labels_bytes = align64(rows * m->targets * sizeof(int32_t));
    lay->scratch_bytes = align64(scratch * sizeof(float));
    s->act_bytes = (size_t)s->slots * (s->slot_bytes + lay->labels_bytes) +
                   2 * lay->dgrad_bytes + lay->scratch_bytes + 64;
}

/* Parameters, gradients and (zeroed) optimizer state on the device, in that order. */
static int alloc_weights(dp_stage *s, dp_err *err)
{
    dp_device *d = s->dev;
    s->params = dp_device_alloc(d, s->n_params * sizeof(float), "parameters", err);
    if (!s->params)
        return -1;
    s->grads = dp_device_alloc(d, s->n_params * sizeof(float), "gradients", err);
    if (!s->grads)
        return -1;
    if (s->state_per_param) {
        size_t bytes = s->n_params * s->state_per_param * sizeof(float);
        s->opt_state = dp_device_alloc(d, bytes, "optimizer state", err);
        if (!s->opt_state)
            return -1;
        d->be->zero(d, s->opt_state, bytes);
    }
    return 0;
}

/* Appends to a failed weights allocation's message the way out: fewer layers a device. */
static void advise_split(dp_err *err)
{
    const char *split = "; split the layers across devices with pipeline parallelism "
                        "(--strategy pp), or use a smaller model";
    if (strlen(err->msg) + strlen(split) < sizeof err->msg)
        strcat(err->msg, split);
}

/* Replaces the message of a failed activations allocation with one that says what would fit:
 * rows of a micro-batch, from the bytes a row takes. */
static int fail_activations(const dp_stage *s, dp_err *err)
{
    const dp_device *d = s->dev;
    int max_rows = s->max_rows;
    size_t per_row = s->act_bytes / (size_t)(max_rows > 0 ? max_rows : 1);
    size_t left = d->mem_total > d->mem_held ? d->mem_total - d->mem_held : 0;
    size_t fit = per_row ? left / per_row * 9 / 10 : 0; /* a tenth left for the rest */
    char room[160];
    if (fit < (size_t)max_rows)
        snprintf(room, sizeof room, "about %zu rows would fit", fit);
    else /* the device has the room: something else limits this process */
        snprintf(room, sizeof room, "the device has room, so a limit on this process "
                                    "(ulimit -v, a cgroup) may be the cause");
    return dp_fail(err, "%s: out of memory for the activations of micro-batches of %d rows "
                        "(%zu bytes, %zu a row; %zu bytes held of %zu); %s: use a smaller "
                        "[data] batch, more [parallel] microbatches (fewer rows each), or "
                        "pipeline parallelism (--strategy pp) so that each device holds fewer "
                        "layers",
                   d->name, max_rows, s->act_bytes, per_row, d->mem_held, d->mem_total, room);
}

/* Points the host tables into the activation allocation, in the order plan_activations sized
 * it, and zeroes the stats. */
static void carve_activations(dp_stage *s, const act_layout *lay)
{
    int first = s->first, last = s->last, n_bound = last - first + 1;
    size_t rows = (size_t)s->max_rows;
    char *at = s->act_block;
    for (int k = 0; k < s->slots; k++)
        for (int b = 0; b < n_bound; b++) {
            if (b > 0 && relu_in_place(s, first + b - 1)) { /* the linear's output */
                s->acts[k * n_bound + b] = s->acts[k * n_bound + b - 1];
                continue;
            }
            s->acts[k * n_bound + b] = (float *)at;
            at += align64(rows * boundary_width(s, b) * sizeof(float));
        }
    for (int k = 0; k < s->slots; k++)
        for (int i = first; i < last; i++) {
            s->saved[k * (last - first) + i - first] = (float *)at;
            at += align64(saved_floats(&s->model->layers[i], rows) * sizeof(float));
        }
    s->scratch = (float *)at;
    at += lay->scratch_bytes;
    s->dgrad[0] = (float *)at;
    s->dgrad[1] = (float *)(at + lay->dgrad_bytes);
    at += 2 * lay->dgrad_bytes;
    s->labels = (int32_t *)at;
    at += (size_t)s->slots * lay->labels_bytes;
    s->stats = (float *)at;
    s->dev->be->zero(s->dev, s->stats, DP_STAGE_STATS * sizeof(float));
}

size_t dp_stage_bytes(const dp_model *m, const dp_device *d, int first, int last, int max_rows,
                      int slots, const dp_optim_config *oc)
{
    dp_stage s;
    act_layout lay;
    set_stage_fields(&s, m, (dp_device *)d, first, last, max_rows, slots, oc); /* read only */
    plan_activations(&s, &lay);
    return s.n_params * sizeof(float) * (2 + s.state_per_param) + s.act_bytes;
}

int dp_stage_create(dp_stage *s, const dp_model *m, dp_device *d, int first, int last,
                    int max_rows, int slots, const dp_optim_config *oc, dp_err *err)
{
    set_stage_fields(s, m, d, first, last, max_rows, slots, oc);
    if (alloc_host_tables(s, err) < 0)
        return -1;
    act_layout lay;
    plan_activations(s, &lay);
    if (alloc_weights(s, err) < 0) {
        advise_split(err);
        goto fail;
    }
    s->act_block = dp_device_alloc(d, s->act_bytes, "activations", err);
    if (!s->act_block) {
        fail_activations(s, err);
        goto fail;
    }
    carve_activations(s, &lay);
    return 0;
fail:
    dp_stage_destroy(s);
    return -1;
}

void dp_stage_destroy(dp_stage *s)
{
    if (s->dev) {
        dp_device_free(s->dev, s->params, s->n_params * sizeof(float));
        dp_device_free(s->dev, s->grads, s->n_params * sizeof(float));
        dp_device_free(s->dev, s->opt_state, s->n_params * s->state_per_param * sizeof(float));
        dp_device_free(s->dev, s->act_block, s->act_bytes);
    }
    free(s->acts);
    free(s->saved);
    free(s->keys);
    free(s->training);
    free(s->trained);
    memset(s, 0, sizeof *s);
}

float *dp_stage_input(const dp_stage *s, int slot)
{
    return s->acts[slot * (s->last - s->first + 1)];
}

float *dp_stage_output(const dp_stage *s, int slot)
{
    return s->acts[slot * (s->last - s->first + 1) + (s->last - s->first)];
}

float *dp_stage_layer_output(const dp_stage *s, int slot, int i)
{
    return s->acts[slot * (s->last - s->first + 1) + (i - s->first + 1)];
}

int32_t *dp_stage_labels(const dp_stage *s, int slot)
{
    return (int32_t *)((char *)s->labels +
                       slot * align64((size_t)s->max_rows * s->model->targets * sizeof(int32_t)));
}

int dp_stage_in_width(const dp_stage *s)
{
    return boundary_width(s, 0);
}

int dp_stage_out_width(const dp_stage *s)
{
    return boundary_width(s, s->last - s->first);
}

void dp_stage_upload_params(dp_stage *s, const float *host_all)
{
    s->dev->be->upload(s->dev, s->params, host_all + s->param_offset,
                       s->n_params * sizeof(float));
}

void dp_stage_download_params(dp_stage *s, float *host_all)
{
    s->dev->be->download(s->dev, host_all + s->param_offset, s->params,
                         s->n_params * sizeof(float));
}

/* The optimizer state is [state_per_param][n_params] both on the stage and in the full host
 * vector; each block moves separately. */
void dp_stage_upload_state(dp_stage *s, const float *host_all)
{
    for (size_t k = 0; k < s->state_per_param; k++)
        s->dev->be->upload(s->dev, s->opt_state + k * s->n_params,
                           host_all + k * s->model->n_params + s->param_offset,
                           s->n_params * sizeof(float));
}

void dp_stage_download_state(dp_stage *s, float *host_all)
{
    for (size_t k = 0; k < s->state_per_param; k++)
        s->dev->be->download(s->dev, host_all + k * s->model->n_params + s->param_offset,
                             s->opt_state + k * s->n_params, s->n_params * sizeof(float));
}

void dp_stage_param_range(const dp_stage *s, int from, int to, size_t *offset, size_t *count)
{
    from = from > s->first ? from : s->first;
    to = to < s->last ? to : s->last;
    if (from >= to) {
        *offset = *count = 0;
        return;
    }
    const dp_model *m = s->model;
    size_t end = to < m->n_layers ? m->layers[to].param_offset : m->n_params;
    *offset = m->layers[from].param_offset - s->param_offset;
    *count = end - m->layers[from].param_offset;
}

void dp_stage_update(dp_stage *s, const dp_optim_config *oc, long t, double lr, int from, int to)
{
    size_t lo, n;
    dp_stage_param_range(s, from, to, &lo, &n);
    for (int r = 0; r < s->n_trained; r++) { /* each run's part within [lo, lo + n) */
        size_t a = s->trained[r][0], b = a + s->trained[r][1];
        a = a > lo ? a : lo;
        b = b < lo + n ? b : lo + n;
        if (a < b)
            dp_optim_update(oc, s->dev, s->params + a, s->grads + a,
                            s->opt_state ? s->opt_state + a : NULL, b - a, s->n_params, t, lr);
    }
}

/* The host's clock once the device has done everything issued. */
static double profile_mark(dp_stage *s)
{
    s->dev->be->synchronize(s->dev);
    return dp_now_s();
}

int dp_stage_profile(const dp_model *m, dp_device *d, int rows, double *seconds, dp_err *err)
{
    dp_optim_config oc = dp_optim_defaults();
    dp_stage s;
    if (dp_stage_create(&s, m, d, 0, m->n_layers, rows, 1, &oc, err) < 0)
        return -1;
    size_t nx = (size_t)rows * m->in_features, ny = (size_t)rows * m->targets;
    float *host = malloc((m->n_params > nx ? m->n_params : nx) * sizeof *host);
    int32_t *labels = calloc(ny, sizeof *labels);
    double *pass = calloc((size_t)m->n_layers, sizeof *pass);
    if (!host || !labels || !pass) {
        free(host), free(labels), free(pass);
        dp_stage_destroy(&s);
        return dp_fail(err, "out of host memory");
    }
    dp_model_init_params(m, host, 1);
    dp_stage_upload_params(&s, host);
    dp_rng r = dp_rng_stream(1, DP_RNG_INIT, 0x70f11e);
    for (size_t i = 0; i < nx; i++) /* in [0, 1): pixels, or the first ids of a vocabulary */
        host[i] = m->layers[0].ops == &dp_layer_embed ? 0.0f : (float)dp_rng_uniform(&r);
    d->be->upload(d, dp_stage_input(&s, 0), host, nx * sizeof *host);
    d->be->upload(d, dp_stage_labels(&s, 0), labels, ny * sizeof *labels);
    dp_step_key key = { 1, 1, 0 };
    for (int rep = 0; rep < 4; rep++) {
        for (int i = 0; i < m->n_layers; i++)
            pass[i] = 0.0;
        s.profile = rep > 0 ? pass : NULL; /* the first pass warms up (caches, GEMM tuning) */
        dp_stage_forward(&s, 0, rows, &key);
        float *dy = dp_stage_loss(&s, 0, rows, 1.0f / (float)ny, true);
        dp_stage_backward(&s, 0, rows, dy, false, false, NULL, NULL);
        for (int i = 0; i < m->n_layers && rep > 0; i++)
            seconds[i] = rep == 1 || pass[i] < seconds[i] ? pass[i] : seconds[i];
    }
    d->be->synchronize(d);
    free(host), free(labels), free(pass);
    dp_stage_destroy(&s);
    return 0;
}

float *dp_stage_layer_input(const dp_stage *s, int slot, int i)
{
    return s->acts[slot * (s->last - s->first + 1) + (i - s->first)];
}

void dp_stage_forward(dp_stage *s, int slot, int rows, const dp_step_key *key)
{
    dp_stage_forward_range(s, slot, rows, key, s->first, s->last, false);
}

void dp_stage_forward_range(dp_stage *s, int slot, int rows, const dp_step_key *key, int from,
                            int to, bool keep_buffers)
{
    s->keys[slot] = key ? *key : (dp_step_key){ 0 };
    s->training[slot] = key != NULL;
    dp_pass p = { .dev = s->dev, .rows = rows, .scratch = s->scratch, .key = key,
                  .replicas = key ? s->replicas : NULL, .replica = s->replica,
                  .keep_buffers = keep_buffers };
    float **a = s->acts + slot * (s->last - s->first + 1);
    for (int i = from; i < to; i++) {
        const dp_layer *l = &s->model->layers[i];
        p.then_relu = relu_in_place(s, i + 1);
        p.saved = s->saved[slot * (s->last - s->first) + i - s->first];
        double t0 = s->profile ? profile_mark(s) : 0.0;
        l->ops->forward(l, &p, s->params + (l->param_offset - s->param_offset), a[i - s->first],
                        a[i - s->first + 1]);
        if (s->profile)
            s->profile[i - s->first] += profile_mark(s) - t0;
        if (p.then_relu)
            i++; /* the ReLU is done (never the last of a range: relu_in_place) */
    }
}

float *dp_stage_loss(dp_stage *s, int slot, int rows, float grad_scale, bool backward)
{
    float *dout = backward ? s->dgrad[0] : NULL;
    s->model->objective->loss(s->dev, dp_stage_output(s, slot), dp_stage_labels(s, slot),
                              rows * s->model->targets, s->model->classes, grad_scale, dout,
                              s->stats);
    return dout;
}

float *dp_stage_backward(dp_stage *s, int slot, int rows, const float *dy, bool accumulate,
                         bool need_dx, dp_layer_done_fn done, void *arg)
{
    return dp_stage_backward_range(s, slot, rows, dy, accumulate, s->first, need_dx, done, arg);
}

float *dp_stage_backward_range(dp_stage *s, int slot, int rows, const float *dy,
                               bool accumulate, int stop, bool need_dx, dp_layer_done_fn done,
                               void *arg)
{
    dp_pass p = { .dev = s->dev, .rows = rows, .accumulate = accumulate,
                  .scratch = s->scratch, .key = s->training[slot] ? &s->keys[slot] : NULL,
                  .replicas = s->training[slot] ? s->replicas : NULL, .replica = s->replica };
    float **a = s->acts + slot * (s->last - s->first + 1);
    int next = dy == s->dgrad[0] ? 1 : 0; /* the buffer that receives the next dx */
    for (int i = s->last - 1; i >= stop; i--) {
        const dp_layer *l = &s->model->layers[i];
        p.saved = s->saved[slot * (s->last - s->first) + i - s->first];
        bool want_dx = i > stop || need_dx;
        float *dx = want_dx ? s->dgrad[next] : NULL;
        double t0 = s->profile ? profile_mark(s) : 0.0;
        l->ops->backward(l, &p, s->params + (l->param_offset - s->param_offset),
                         s->grads + (l->param_offset - s->param_offset), a[i - s->first],
                         a[i - s->first + 1], dy, dx);
        if (s->profile)
            s->profile[i - s->first] += profile_mark(s) - t0;
        if (done)
            done(arg, i);
        dy = dx;
        next ^= 1;
    }
    return need_dx ? (float *)dy : NULL;
}
