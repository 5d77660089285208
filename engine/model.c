/* model.c -- layer lists, parameter layout, and stages (layers placed on a device). */
#include "engine/model.h"

#include "base/clock.h"
#include "base/rng.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const dp_layer_ops *find_kind(const char *name, size_t len)
{
    for (int i = 0; dp_layer_kinds[i]; i++)
        if (strlen(dp_layer_kinds[i]->name) == len && !strncmp(dp_layer_kinds[i]->name, name, len))
            return dp_layer_kinds[i];
    return NULL;
}

static void list_kinds(char *buf, size_t size)
{
    buf[0] = '\0';
    for (int i = 0; dp_layer_kinds[i]; i++) {
        size_t used = strlen(buf);
        snprintf(buf + used, size - used, "%s%s", i ? ", " : "", dp_layer_kinds[i]->name);
    }
}

/* The text of layer `text` up to its end at the next comma outside parentheses. */
static size_t layer_text_len(const char *text)
{
    int depth = 0;
    size_t i = 0;
    for (; text[i]; i++) {
        depth += text[i] == '(';
        depth -= text[i] == ')';
        if (text[i] == ',' && depth <= 0)
            break;
    }
    return i;
}

/* Parses the numbers after a layer's name (":3:1") into l->args. */
static int parse_args(dp_layer *l, const char *text, const char *p, dp_err *err)
{
    l->nargs = 0;
    while (*p == ':') {
        p++;
        if (l->nargs == DP_MAX_LAYER_ARGS)
            return dp_fail(err, "too many numbers after %s; write %s", l->ops->name,
                           l->ops->usage);
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ':') || errno || v < 0 || v > DP_MAX_SAMPLE)
            return dp_fail(err, "\"%s\": expected a whole number from 0 to %d after ':'", text,
                           DP_MAX_SAMPLE);
        l->args[l->nargs++] = (int)v;
        p = end;
    }
    if (*p)
        return dp_fail(err, "\"%s\": unexpected \"%s\"; write %s", text, p, l->ops->usage);
    if (l->nargs < l->ops->min_args || l->nargs > l->ops->max_args) {
        if (l->ops->max_args == 0)
            return dp_fail(err, "\"%s\": %s takes no numbers", text, l->ops->name);
        return dp_fail(err, "\"%s\": write %s", text, l->ops->usage);
    }
    return 0;
}


/* Gives a block's children indices of their own (for their initialisation streams): child k of
 * layer i is 256 (i + 1) + k, and so on down. */
static void number_children(dp_layer *l)
{
    for (int k = 0; k < l->n_children; k++) {
        l->children[k].index = 256 * (l->index + 1) + k;
        number_children(&l->children[k]);
    }
}


/* Refuses a size over its limit: "gives 4295167600 values per sample (at most 16777216)". */
static int too_many(dp_err *err, const char *verb, size_t n, const char *what, int limit)
{
    char count[32];
    if (n == SIZE_MAX) /* saturated (layer.h) */
        snprintf(count, sizeof count, "more than 2^64");
    else
        snprintf(count, sizeof count, "%zu", n);
    return dp_fail(err, "%s %s %s (at most %d); use fewer channels, a smaller kernel, a "
                        "narrower layer or a shorter sequence",
                   verb, count, what, limit);
}

/* Checks the sizes a layer's infer computed (saturating, layer.h) against the limits, so that
 * no count of values, parameters, saved or scratch floats wraps further on: the output first,
 * since the others grow with it and the parameters. */
static int check_sizes(const dp_layer *l, dp_err *err)
{
    size_t out = dp_shape_count(l->out_shape);
    if (out < 1 || out > DP_MAX_SAMPLE)
        return too_many(err, "gives", out, "values per sample", DP_MAX_SAMPLE);
    if (l->param_count > DP_MAX_FLOATS)
        return too_many(err, "has", l->param_count, "parameters", DP_MAX_FLOATS);
    size_t scratch = l->ops->scratch ? l->ops->scratch(l, 1) : 0;
    size_t work = l->saved > scratch ? l->saved : scratch;
    if (work > DP_MAX_FLOATS)
        return too_many(err, "needs", work, "floats of working memory per sample",
                        DP_MAX_FLOATS);
    return 0;
}

/* Parses one layer's text ("linear:1024", "res(conv:8:3:1:1, relu)", already trimmed) into l,
 * whose index and in_shape are set, and infers its shapes. */
static int parse_layer(dp_layer *l, const char *text, int depth, dp_err *err)
{
    size_t name_len = strcspn(text, ":(");
    l->ops = find_kind(text, name_len);
    if (!l->ops) {
        char kinds[256];
        list_kinds(kinds, sizeof kinds);
        return dp_fail(err, "unknown layer kind \"%.*s\" (known: %s; dpmptop --help-layers "
                            "describes them)",
                       (int)name_len, text, kinds);
    }
    const char *p = text + name_len;
    bool is_block = l->ops == &dp_layer_res;
    if (is_block != (*p == '('))
        return dp_fail(err, is_block ? "\"%s\": write %s" : "\"%s\": only res takes a layer "
                                                            "list in parentheses; write %s",
                       text, l->ops->usage);
    if (is_block) {
        size_t len = strlen(p);
        if (depth >= 2)
            return dp_fail(err, "blocks nest at most 2 deep");
        if (p[len - 1] != ')')
            return dp_fail(err, "\"%s\": the list in parentheses is not closed", text);
        char *inner = strndup(p + 1, len - 2);
        if (!inner)
            return dp_fail(err, "out of memory parsing the layer list");
        size_t n_params = 0;
        int rc = dp_layer_list_parse(inner, l->in_shape, depth + 1, &l->children, &l->n_children,
                            &n_params, err);
        free(inner);
        if (rc < 0)
            return -1;
        l->nargs = 0;
    } else if (parse_args(l, text, p, err) < 0) {
        return -1;
    } else if (l->ops == &dp_layer_block && depth > 0) {
        return dp_fail(err, "block goes in the model's own list, not inside res(...)");
    }
    l->in = (int)dp_shape_count(l->in_shape); /* the previous layer's out, or the data's */
    if (l->ops->infer(l, err) < 0 || check_sizes(l, err) < 0)
        return -1;
    number_children(l);
    l->out = (int)dp_shape_count(l->out_shape);
    return 0;
}

static void free_layers(dp_layer *layers, int n)
{
    for (int i = 0; i < n; i++)
        free_layers(layers[i].children, layers[i].n_children);
    free(layers);
}

/* Parses a comma-separated list of layers on inputs of shape `in` into a new array. */
int dp_layer_list_parse(const char *spec, dp_shape in, int depth, dp_layer **out, int *n,
                      size_t *n_params, dp_err *err)
{
    int capacity = 1;
    for (const char *c = spec; *c; c++)
        capacity += *c == ',';
    dp_layer *layers = calloc((size_t)capacity + 1, sizeof *layers); /* +1: room for a res's
                                                                         projection */
    if (!layers)
        return dp_fail(err, "out of memory parsing the layer list");
    int count = 0;
    *n_params = 0;
    const char *p = spec;
    for (;;) {
        size_t len = layer_text_len(p);
        const char *b = p, *e = p + len;
        while (b < e && isspace((unsigned char)*b))
            b++;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        if (e == b) {
            if (count == 0 && !p[len])
                break; /* an empty list is reported by the caller */
            dp_fail(err, "layer %d is empty (two commas in a row, or a trailing comma)", count);
            goto fail;
        }
        char *text = strndup(b, (size_t)(e - b));
        if (!text) {
            dp_fail(err, "out of memory parsing the layer list");
            goto fail;
        }
        dp_layer *l = &layers[count];
        l->index = count;
        l->shortcut = -1;
        l->in_shape = in;
        if (parse_layer(l, text, depth, err) < 0) {
            dp_err_prefix(err, "layer %d (%.60s%s): ", count, text, strlen(text) > 60 ? "..." : "");
            free(text);
            count++;
            goto fail;
        }
        free(text);
        l->param_offset = *n_params;
        *n_params += l->param_count;
        in = l->out_shape;
        count++;
        if (!p[len])
            break;
        p += len + 1;
    }
    *out = layers;
    *n = count;
    return 0;
fail:
    free_layers(layers, count);
    return -1;
}

static void shape_name(dp_shape s, char *buf, size_t size)
{
    if (s.ndim == 1)
        snprintf(buf, size, "%d outputs", s.d[0]);
    else if (s.ndim == 2)
        snprintf(buf, size, "sequences [%d, %d]", s.d[0], s.d[1]);
    else
        snprintf(buf, size, "images [%d, %d, %d]", s.d[0], s.d[1], s.d[2]);
}

int dp_model_parse_shape(dp_model *m, const char *spec, dp_shape in, int classes, dp_err *err)
{
    memset(m, 0, sizeof *m);
    m->in_shape = in;
    m->classes = classes;
    size_t in_count = dp_shape_count(in);
    if (in_count < 1 || in_count > DP_MAX_SAMPLE)
        return too_many(err, "the data's samples have", in_count, "values", DP_MAX_SAMPLE);
    m->in_features = (int)in_count;
    if (dp_layer_list_parse(spec, in, 0, &m->layers, &m->n_layers, &m->n_params, err) < 0)
        return -1;
    if (m->n_layers == 0) {
        dp_fail(err, "the layer list is empty; write for example: linear:256, relu, linear:%d",
                classes);
        goto fail;
    }
    if (m->n_params == 0) {
        dp_fail(err, "the model has no parameters to train; add a linear layer");
        goto fail;
    }
    dp_shape last = m->layers[m->n_layers - 1].out_shape;
    char got[64];
    shape_name(last, got, sizeof got);
    if (last.ndim == 3) {
        dp_fail(err, "the model ends with %s; end it with flatten, linear:%d", got, classes);
        goto fail;
    }
    if (last.d[last.ndim - 1] != classes) {
        dp_fail(err, "the last layer gives %s but the data has %d classes; end the list "
                     "with linear:%d",
                got, classes, classes);
        goto fail;
    }
    m->targets = last.ndim == 2 ? last.d[0] : 1;
    return 0;
fail:
    dp_model_free(m);
    return -1;
}

int dp_model_parse(dp_model *m, const char *spec, int in_features, int classes, dp_err *err)
{
    return dp_model_parse_shape(m, spec, (dp_shape){ 1, { in_features } }, classes, err);
}

/* The first embed layer among layers[0, n) and their children, or NULL. */
static const dp_layer *find_embed(const dp_layer *layers, int n)
{
    for (int i = 0; i < n; i++) {
        const dp_layer *e = layers[i].ops == &dp_layer_embed
                                ? &layers[i]
                                : find_embed(layers[i].children, layers[i].n_children);
        if (e)
            return e;
    }
    return NULL;
}

int dp_model_check_ids(const dp_model *m, int vocab, dp_err *err)
{
    for (int i = 0; i < m->n_layers; i++) {
        const dp_layer *e = find_embed(&m->layers[i], 1);
        if (!e)
            continue;
        int v = e->args[0], d = e->args[1];
        if (e != &m->layers[0])
            return dp_fail(err, "layer %d: embed:%d:%d looks up the data's ids, so it goes first "
                                "in the list, outside blocks",
                           i, v, d);
        if (vocab == 0)
            return dp_fail(err, "layer 0 (embed:%d:%d): embed looks up integer ids (text's "
                                "bytes), but these data are not ids (images or floats); start "
                                "with a linear or conv layer, or use data.kind = text",
                           v, d);
        if (v < vocab)
            return dp_fail(err, "layer 0 (embed:%d:%d): a vocabulary of %d, but the data's ids "
                                "go up to %d; use embed:%d:%d",
                           v, d, v, vocab - 1, vocab, d);
    }
    return 0;
}

void dp_model_free(dp_model *m)
{
    free_layers(m->layers, m->n_layers);
    m->layers = NULL;
    m->n_layers = 0;
}

void dp_model_init_params(const dp_model *m, float *host, uint64_t seed)
{
    for (int i = 0; i < m->n_layers; i++)
        m->layers[i].ops->init(&m->layers[i], host + m->layers[i].param_offset, seed);
}

int dp_model_tensors(const dp_model *m, dp_model_tensor *out)
{
    int n = 0;
    for (int i = 0; i < m->n_layers; i++) {
        dp_tensor_info t[DP_MAX_LAYER_TENSORS];
        int k = m->layers[i].ops->tensors(&m->layers[i], t);
        for (int j = 0; j < k; j++, n++) {
            if (!out)
                continue;
            snprintf(out[n].name, sizeof out[n].name, "%d.%s", i, t[j].suffix);
            out[n].info = t[j];
            out[n].info.offset += m->layers[i].param_offset;
        }
    }
    return n;
}

static size_t describe_list(const dp_layer *layers, int n, char *buf, size_t size)
{
    size_t used = 0;
    for (int i = 0; i < n && used < size; i++) {
        const dp_layer *l = &layers[i];
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", l->ops->name);
        for (int a = 0; a < l->nargs && used < size; a++)
            used += (size_t)snprintf(buf + used, size - used, ":%d", l->args[a]);
        if (l->children && l->ops == &dp_layer_res && used < size) {
            int body = l->shortcut >= 0 ? l->shortcut : l->n_children;
            used += (size_t)snprintf(buf + used, size - used, "(");
            if (used < size)
                used += describe_list(l->children, body, buf + used, size - used);
            if (used < size)
                used += (size_t)snprintf(buf + used, size - used, ")");
        }
    }
    return used;
}

void dp_model_describe(const dp_model *m, char *buf, size_t size)
{
    buf[0] = '\0';
    describe_list(m->layers, m->n_layers, buf, size);
}

/* ---- stages ---- */

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
           l[i - 1].ops == &dp_layer_linear;
}

/* Width of boundary b of a stage: b = 0 is its input, b = last - first its output. */
static int boundary_width(const dp_stage *s, int b)
{
    return b == 0 ? s->model->layers[s->first].in : s->model->layers[s->first + b - 1].out;
}

int dp_stage_create(dp_stage *s, const dp_model *m, dp_device *d, int first, int last,
                    int max_rows, int slots, const dp_optim_config *oc, dp_err *err)
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

    int n_bound = last - first + 1;
    s->acts = calloc((size_t)slots * n_bound, sizeof *s->acts);
    s->saved = calloc((size_t)slots * (last - first), sizeof *s->saved);
    s->keys = calloc((size_t)slots, sizeof *s->keys);
    s->training = calloc((size_t)slots, sizeof *s->training);
    if (!s->acts || !s->saved || !s->keys || !s->training)
        return dp_fail(err, "out of host memory");

    /* Carve the activation allocation: each slot's boundaries, two gradient buffers, each
     * slot's labels, the stats. */
    size_t widest = 0;
    for (int b = 0; b < n_bound; b++) {
        size_t w = (size_t)boundary_width(s, b);
        widest = w > widest ? w : widest;
        if (b == 0 || !relu_in_place(s, first + b - 1))
            s->slot_bytes += align64((size_t)max_rows * w * sizeof(float));
    }
    size_t scratch = 0;
    for (int i = first; i < last; i++) {
        const dp_layer *l = &m->layers[i];
        s->slot_bytes += align64((size_t)max_rows * l->saved * sizeof(float));
        size_t need = l->ops->scratch ? l->ops->scratch(l, max_rows) : 0;
        scratch = need > scratch ? need : scratch;
    }
    size_t dgrad_bytes = align64((size_t)max_rows * widest * sizeof(float));
    size_t labels_bytes = align64((size_t)max_rows * m->targets * sizeof(int32_t));
    size_t scratch_bytes = align64(scratch * sizeof(float));
    s->act_bytes = (size_t)slots * (s->slot_bytes + labels_bytes) + 2 * dgrad_bytes +
                   scratch_bytes + 64;

    const char *split = "; split the layers across devices with pipeline parallelism "
                        "(--strategy pp), or use a smaller model";
    s->params = dp_device_alloc(d, s->n_params * sizeof(float), "parameters", err);
    if (!s->params)
        goto fail_with_advice;
    s->grads = dp_device_alloc(d, s->n_params * sizeof(float), "gradients", err);
    if (!s->grads)
        goto fail_with_advice;
    if (s->state_per_param) {
        size_t bytes = s->n_params * s->state_per_param * sizeof(float);
        s->opt_state = dp_device_alloc(d, bytes, "optimizer state", err);
        if (!s->opt_state)
            goto fail_with_advice;
        d->be->zero(d, s->opt_state, bytes);
    }
    s->act_block = dp_device_alloc(d, s->act_bytes, "activations", err);
    if (!s->act_block) { /* what would fit: rows of a micro-batch, from the bytes a row takes */
        size_t per_row = s->act_bytes / (size_t)(max_rows > 0 ? max_rows : 1);
        size_t left = d->mem_total > d->mem_held ? d->mem_total - d->mem_held : 0;
        size_t fit = per_row ? left / per_row * 9 / 10 : 0; /* a tenth left for the rest */
        char room[160];
        if (fit < (size_t)max_rows)
            snprintf(room, sizeof room, "about %zu rows would fit", fit);
        else /* the device has the room: something else limits this process */
            snprintf(room, sizeof room, "the device has room, so a limit on this process "
                                        "(ulimit -v, a cgroup) may be the cause");
        dp_fail(err, "%s: out of memory for the activations of micro-batches of %d rows "
                     "(%zu bytes, %zu a row; %zu bytes held of %zu); %s: use a smaller "
                     "[data] batch, more [parallel] microbatches (fewer rows each), or "
                     "pipeline parallelism (--strategy pp) so that each device holds fewer "
                     "layers",
                d->name, max_rows, s->act_bytes, per_row, d->mem_held, d->mem_total, room);
        goto fail;
    }
    char *at = s->act_block;
    for (int k = 0; k < slots; k++)
        for (int b = 0; b < n_bound; b++) {
            if (b > 0 && relu_in_place(s, first + b - 1)) { /* the linear's output */
                s->acts[k * n_bound + b] = s->acts[k * n_bound + b - 1];
                continue;
            }
            s->acts[k * n_bound + b] = (float *)at;
            at += align64((size_t)max_rows * boundary_width(s, b) * sizeof(float));
        }
    for (int k = 0; k < slots; k++)
        for (int i = first; i < last; i++) {
            s->saved[k * (last - first) + i - first] = (float *)at;
            at += align64((size_t)max_rows * m->layers[i].saved * sizeof(float));
        }
    s->scratch = (float *)at;
    at += scratch_bytes;
    s->dgrad[0] = (float *)at;
    s->dgrad[1] = (float *)(at + dgrad_bytes);
    at += 2 * dgrad_bytes;
    s->labels = (int32_t *)at;
    at += (size_t)slots * labels_bytes;
    s->stats = (float *)at;
    d->be->zero(d, s->stats, DP_STAGE_STATS * sizeof(float));
    return 0;
fail_with_advice:
    if (strlen(err->msg) + strlen(split) < sizeof err->msg)
        strcat(err->msg, split);
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

void dp_stage_forward(dp_stage *s, int slot, int rows, const dp_step_key *key)
{
    s->keys[slot] = key ? *key : (dp_step_key){ 0 };
    s->training[slot] = key != NULL;
    dp_pass p = { .dev = s->dev, .rows = rows, .scratch = s->scratch, .key = key };
    float **a = s->acts + slot * (s->last - s->first + 1);
    for (int i = s->first; i < s->last; i++) {
        const dp_layer *l = &s->model->layers[i];
        p.then_relu = relu_in_place(s, i + 1);
        p.saved = s->saved[slot * (s->last - s->first) + i - s->first];
        double t0 = s->profile ? profile_mark(s) : 0.0;
        l->ops->forward(l, &p, s->params + (l->param_offset - s->param_offset), a[i - s->first],
                        a[i - s->first + 1]);
        if (s->profile)
            s->profile[i - s->first] += profile_mark(s) - t0;
        if (p.then_relu)
            i++; /* the ReLU is done */
    }
}

float *dp_stage_loss(dp_stage *s, int slot, int rows, float grad_scale, bool backward)
{
    float *dlogits = backward ? s->dgrad[0] : NULL;
    s->dev->be->softmax_xent(s->dev, dp_stage_output(s, slot), dp_stage_labels(s, slot),
                             rows * s->model->targets, s->model->classes, grad_scale, dlogits,
                             s->stats);
    return dlogits;
}

float *dp_stage_backward(dp_stage *s, int slot, int rows, const float *dy, bool accumulate,
                         bool need_dx, dp_layer_done_fn done, void *arg)
{
    dp_pass p = { .dev = s->dev, .rows = rows, .accumulate = accumulate,
                  .scratch = s->scratch, .key = s->training[slot] ? &s->keys[slot] : NULL };
    float **a = s->acts + slot * (s->last - s->first + 1);
    int next = dy == s->dgrad[0] ? 1 : 0; /* the buffer that receives the next dx */
    for (int i = s->last - 1; i >= s->first; i--) {
        const dp_layer *l = &s->model->layers[i];
        p.saved = s->saved[slot * (s->last - s->first) + i - s->first];
        bool want_dx = i > s->first || need_dx;
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
