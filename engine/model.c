/* model.c -- layer lists, parameter layout, and the model they describe. */
#include "engine/model.h"

#include <ctype.h>
#include <float.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
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

/* A real number of a kind with ops->real_args at p (up to the next ':' or the end) into
 * l->reals[a], and its whole part, clamped to int's range, into l->args[a]. Any finite value
 * goes (PyTorch takes any negative_slope); NaN and infinities do not. */
static int parse_real(dp_layer *l, const char *text, const char *p, char **end, int a,
                      dp_err *err)
{
    size_t len = strcspn(p, ":");
    const char *digits = p + (*p == '-' || *p == '+');
    if (digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) /* strtod's hex floats */
        return dp_fail(err, "\"%s\": %.*s is not a plain decimal number; write one such as 0.2",
                       text, (int)len, p);
    double v = strtod(p, end);
    if (*end == p || (**end && **end != ':'))
        return dp_fail(err, "\"%s\": expected a number such as 0.2 after ':', not \"%.*s\"",
                       text, (int)len, p);
    if (!isfinite(v)) /* nan, inf, or out of double's range */
        return dp_fail(err, "\"%s\": %.*s is not a finite number; write %s with a finite "
                            "value such as 0.2",
                       text, (int)len, p, l->ops->usage);
    /* the layers compute in float: a value it cannot hold would be an infinity or 0 */
    if (fabs(v) > FLT_MAX || (v != 0.0 && fabs(v) < FLT_MIN))
        return dp_fail(err, "\"%s\": %.*s is out of a float's range (%g to %g, or 0); write a "
                            "value such as 0.2",
                       text, (int)len, p, (double)FLT_MIN, (double)FLT_MAX);
    double whole = trunc(v);
    l->reals[a] = v;
    l->args[a] = whole >= INT_MAX ? INT_MAX : whole <= INT_MIN ? INT_MIN : (int)whole;
    return 0;
}

/* Parses the numbers after a layer's name (":3:1") into l->args (and l->reals for a kind whose
 * numbers may have a fraction). */
static int parse_args(dp_layer *l, const char *text, const char *p, dp_err *err)
{
    l->nargs = 0;
    while (*p == ':') {
        p++;
        if (l->nargs == DP_MAX_LAYER_ARGS)
            return dp_fail(err, "too many numbers after %s; write %s", l->ops->name,
                           l->ops->usage);
        char *end;
        if (l->ops->real_args) {
            if (parse_real(l, text, p, &end, l->nargs, err) < 0)
                return -1;
            l->nargs++;
            p = end;
            continue;
        }
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && *end != ':') || errno || v < 0 || v > DP_MAX_SAMPLE)
            return dp_fail(err, "\"%s\": expected a whole number from 0 to %d after ':'", text,
                           DP_MAX_SAMPLE);
        l->args[l->nargs] = (int)v;
        l->reals[l->nargs++] = (double)v;
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
    size_t scratch = l->ops->scratch ? l->ops->scratch(l, 1, NULL) : 0;
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
        if (isdigit((unsigned char)text[0])) /* "leakyrelu:0,2": the comma ended the layer */
            return dp_fail(err, "\"%s\" is a number where a layer belongs; commas separate "
                                "layers, so write decimals with a point (leakyrelu:0.2)",
                           text);
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
    } else if ((l->ops == &dp_layer_block || l->ops == &dp_layer_enc) && depth > 0) {
        return dp_fail(err, "%s goes in the model's own list, not inside res(...)", l->ops->name);
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
    m->objective = dp_objective_default();
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

/* The first layer of kind `ops` among layers[0, n) and their children, or NULL. */
static const dp_layer *find_layer(const dp_layer *layers, int n, const dp_layer_ops *ops)
{
    for (int i = 0; i < n; i++) {
        const dp_layer *e = layers[i].ops == ops
                                ? &layers[i]
                                : find_layer(layers[i].children, layers[i].n_children, ops);
        if (e)
            return e;
    }
    return NULL;
}

bool dp_model_has(const dp_model *m, const dp_layer_ops *ops)
{
    return find_layer(m->layers, m->n_layers, ops) != NULL;
}

int dp_model_check_ids(const dp_model *m, int vocab, dp_err *err)
{
    for (int i = 0; i < m->n_layers; i++) {
        const dp_layer *e = find_layer(&m->layers[i], 1, &dp_layer_embed);
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

static bool has_bn(const dp_layer *layers, int n)
{
    for (int i = 0; i < n; i++)
        if (layers[i].ops == &dp_layer_bn || has_bn(layers[i].children, layers[i].n_children))
            return true;
    return false;
}

bool dp_model_batch_statistics(const dp_model *m)
{
    return has_bn(m->layers, m->n_layers);
}

/* Whether a bn among layers[0, n) and their children sees one value per channel in a sample. */
static bool has_bn_per_sample(const dp_layer *layers, int n)
{
    for (int i = 0; i < n; i++) {
        const dp_layer *l = &layers[i];
        bool one = l->ops == &dp_layer_bn &&
                   (l->in_shape.ndim == 1 || l->in_shape.d[1] * l->in_shape.d[2] == 1);
        if (one || has_bn_per_sample(l->children, l->n_children))
            return true;
    }
    return false;
}

int dp_model_bn_per_sample(const dp_model *m)
{
    for (int i = 0; i < m->n_layers; i++)
        if (has_bn_per_sample(&m->layers[i], 1))
            return i;
    return -1;
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

size_t dp_model_trainable(const dp_model *m)
{
    size_t n = 0;
    for (int i = 0; i < m->n_layers; i++) {
        dp_tensor_info t[DP_MAX_LAYER_TENSORS];
        int k = m->layers[i].ops->tensors(&m->layers[i], t);
        for (int j = 0; j < k; j++)
            if (!t[j].buffer)
                n += t[j].count;
    }
    return n;
}

/* The fewest significant digits of v that strtod reads back as v exactly: 0.2 as "0.2", not
 * %.17g's 0.20000000000000001, yet 0.1f's double value with all the digits it needs. */
static void shortest_real(double v, char *buf, size_t size)
{
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, size, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static size_t describe_list(const dp_layer *layers, int n, char *buf, size_t size)
{
    size_t used = 0;
    for (int i = 0; i < n && used < size; i++) {
        const dp_layer *l = &layers[i];
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", l->ops->name);
        for (int a = 0; a < l->nargs && used < size; a++) {
            if (l->ops->real_args) {
                char num[32];
                shortest_real(l->reals[a], num, sizeof num);
                used += (size_t)snprintf(buf + used, size - used, ":%s", num);
            } else {
                used += (size_t)snprintf(buf + used, size - used, ":%d", l->args[a]);
            }
        }
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
