/* blocks.c -- the layers with children, res(...), block:HEADS and enc:HEADS: each is one
 * element of the model, so that a pipeline stage never cuts through one. block:HEADS and
 * enc:HEADS are built of res blocks (and layers) and run with res's operations, so the kinds
 * share this file.
 *
 * res(...) is a residual block, y = body(x) + shortcut(x). The body is a layer list; the
 * shortcut is the identity when the body keeps the shape, or else a projection: a 1x1
 * convolution with the stride that matches the body's output size (images), or a linear layer
 * (vectors). In PyTorch terms it is a module with `body` (an nn.Sequential) and `proj`, so its
 * tensors are "body.0.weight", ..., "proj.weight".
 *
 * block:HEADS is a pre-LayerNorm GPT block, two residual blocks in a row:
 * res(ln, attn:HEADS), res(ln, linear:4D, gelu, linear:D), named as nanoGPT's Block: ln_1,
 * attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj. enc:HEADS is a Transformer encoder
 * block (below), nn.TransformerEncoderLayer's names: self_attn, norm1, linear1, linear2, norm2.
 *
 * A block keeps each child's output (but a block:H's last, which is its own output) and saved
 * values in its own saved memory (per micro-batch, so pipelines hold several); its scratch
 * holds two gradient buffers for the children's backward, the projection's output and the
 * children's own scratch. */
#include <stdio.h>
#include <string.h>

#include "engine/layer.h"

/* The children that make up the body (the projection, if any, comes after them). */
static int body_count(const dp_layer *l)
{
    return l->shortcut >= 0 ? l->shortcut : l->n_children;
}

/* Builds the projection from the block's input shape to the body's output shape. */
static int add_projection(dp_layer *l, dp_shape body, dp_err *err)
{
    dp_shape in = l->in_shape;
    dp_layer *p = &l->children[l->n_children];
    memset(p, 0, sizeof *p);
    p->in_shape = in;
    p->shortcut = -1;
    if (in.ndim == 3 && body.ndim == 3) {
        int stride = 0;
        for (int s = 1; s <= in.d[1] && !stride; s++)
            if ((in.d[1] - 1) / s + 1 == body.d[1] && (in.d[2] - 1) / s + 1 == body.d[2])
                stride = s;
        if (!stride)
            return dp_fail(err, "no strided 1x1 convolution takes the input's %dx%d to the "
                                "body's %dx%d; make the body keep the size or divide it",
                           in.d[1], in.d[2], body.d[1], body.d[2]);
        *p = (dp_layer){ .ops = &dp_layer_conv, .args = { body.d[0], 1, stride }, .nargs = 3,
                         .in_shape = in, .shortcut = -1 };
    } else if (in.ndim == body.ndim && in.ndim < 3 && (in.ndim == 1 || in.d[0] == body.d[0])) {
        *p = (dp_layer){ .ops = &dp_layer_linear, .args = { body.d[body.ndim - 1] }, .nargs = 1,
                         .in_shape = in, .shortcut = -1 };
    } else {
        return dp_fail(err, "the body turns %d-dimensional samples into %d-dimensional ones, "
                            "which no projection can match; end the body in the input's shape",
                       in.ndim, body.ndim);
    }
    if (p->ops->infer(p, err) < 0)
        return -1;
    p->in = (int)dp_shape_count(p->in_shape); /* the block's input, checked */
    p->out = (int)dp_shape_count(p->out_shape); /* the body's output, checked */
    snprintf(p->name, sizeof p->name, "proj");
    p->param_offset = l->param_count;
    l->param_count = dp_size_add(l->param_count, p->param_count);
    l->shortcut = l->n_children++;
    return 0;
}

static int res_tensors(const dp_layer *l, dp_tensor_info out[DP_MAX_LAYER_TENSORS]);
static bool is_composite(const dp_layer *l);

static int res_infer(dp_layer *l, dp_err *err)
{
    if (l->n_children == 0)
        return dp_fail(err, "res needs at least one layer in its parentheses");
    if (l->n_children >= DP_MAX_LAYER_TENSORS * 2)
        return dp_fail(err, "res holds at most %d layers", DP_MAX_LAYER_TENSORS * 2 - 1);
    dp_shape body = l->children[l->n_children - 1].out_shape;
    l->param_count = 0;
    l->saved = l->saved_pass = 0;
    for (int k = 0; k < l->n_children; k++) {
        const dp_layer *c = &l->children[k];
        l->param_count = dp_size_add(l->param_count, c->param_count);
        l->saved = dp_size_add(l->saved, dp_size_add(c->out, c->saved));
        l->saved_pass = dp_size_add(l->saved_pass, c->saved_pass);
        snprintf(l->children[k].name, sizeof l->children[k].name, "body.%d", k);
    }
    l->shortcut = -1;
    if (!dp_shape_equal(body, l->in_shape) && add_projection(l, body, err) < 0)
        return -1;
    l->out_shape = body;
    int tensors = 0;
    for (int k = 0; k < l->n_children; k++) {
        dp_tensor_info t[DP_MAX_LAYER_TENSORS];
        tensors += l->children[k].ops->tensors(&l->children[k], t);
    }
    if (tensors > DP_MAX_LAYER_TENSORS)
        return dp_fail(err, "a block holds at most %d parameter tensors (this one %d); split it",
                       DP_MAX_LAYER_TENSORS, tensors);
    return 0;
}

static int res_tensors(const dp_layer *l, dp_tensor_info out[DP_MAX_LAYER_TENSORS])
{
    int n = 0;
    for (int k = 0; k < l->n_children; k++) {
        const dp_layer *c = &l->children[k];
        dp_tensor_info t[DP_MAX_LAYER_TENSORS];
        int got = c->ops->tensors(c, t);
        for (int j = 0; j < got && n < DP_MAX_LAYER_TENSORS; j++, n++) {
            out[n] = t[j];
            if (c->name[0])
                snprintf(out[n].suffix, sizeof out[n].suffix, "%s.%s", c->name, t[j].suffix);
            out[n].offset += c->param_offset;
        }
    }
    return n;
}

static void res_init(const dp_layer *l, float *params, uint64_t seed)
{
    for (int k = 0; k < l->n_children; k++)
        l->children[k].ops->init(&l->children[k], params + l->children[k].param_offset, seed);
}

/* The widest value count among the input and the body's outputs. */
static size_t widest(const dp_layer *l)
{
    size_t w = (size_t)l->in;
    for (int k = 0; k < l->n_children; k++)
        w = (size_t)l->children[k].out > w ? (size_t)l->children[k].out : w;
    return w;
}

static size_t res_scratch(const dp_layer *l, int max_rows, const dp_device *d)
{
    size_t own = dp_size_mul(3 * widest(l), max_rows), child = 0;
    for (int k = 0; k < l->n_children; k++) {
        const dp_layer *c = &l->children[k];
        size_t need = c->ops->scratch ? c->ops->scratch(c, max_rows, d) : 0;
        child = need > child ? need : child;
    }
    return dp_size_add(own, child);
}

/* Where a pass's memory goes: child k's output and saved values, inside the block's saved
 * memory (laid out for `rows` samples), and the scratch buffers. */
typedef struct res_memory {
    float *out[DP_MAX_LAYER_TENSORS * 2], *saved[DP_MAX_LAYER_TENSORS * 2];
    float *grad[2], *proj;
    dp_pass child; /* the pass the children run with */
} res_memory;

static int res_memory_of(const dp_layer *l, const dp_pass *p, float *y, res_memory *m)
{
    float *at = p->saved;
    int body = body_count(l);
    for (int k = 0; k < body; k++) {
        bool own_output = is_composite(l) && k == body - 1;
        m->out[k] = own_output ? y : at;
        at += own_output ? 0 : (size_t)p->rows * l->children[k].out;
        m->saved[k] = at;
        at += (size_t)p->rows * l->children[k].saved + l->children[k].saved_pass;
    }
    size_t buf = widest(l) * (size_t)p->rows;
    m->grad[0] = p->scratch;
    m->grad[1] = p->scratch + buf;
    m->proj = p->scratch + 2 * buf;
    m->child = *p;
    m->child.then_relu = false;
    m->child.accumulate = p->accumulate;
    m->child.scratch = p->scratch + 3 * widest(l) * (size_t)p->rows;
    return body;
}

static void res_forward(const dp_layer *l, const dp_pass *p, const float *params,
                        const float *x, float *y)
{
    const dp_backend *be = p->dev->be;
    res_memory m;
    int body = res_memory_of(l, p, y, &m);
    const float *cur = x;
    for (int k = 0; k < body; k++) {
        const dp_layer *c = &l->children[k];
        m.child.saved = m.saved[k];
        c->ops->forward(c, &m.child, params + c->param_offset, cur, m.out[k]);
        cur = m.out[k];
    }
    if (is_composite(l))
        return;
    const float *shortcut = x;
    if (l->shortcut >= 0) {
        const dp_layer *c = &l->children[l->shortcut];
        m.child.saved = NULL;
        c->ops->forward(c, &m.child, params + c->param_offset, x, m.proj);
        shortcut = m.proj;
    }
    be->add(p->dev, y, cur, shortcut, (size_t)p->rows * l->out);
}

static void res_backward(const dp_layer *l, const dp_pass *p, const float *params,
                         float *grads, const float *x, const float *y, const float *dy,
                         float *dx)
{
    const dp_backend *be = p->dev->be;
    res_memory m;
    int body = res_memory_of(l, p, (float *)y, &m);
    const float *g = dy;
    for (int k = body - 1; k >= 0; k--) {
        const dp_layer *c = &l->children[k];
        float *gx = k > 0 ? m.grad[k & 1] : dx;
        m.child.saved = m.saved[k];
        c->ops->backward(c, &m.child, params + c->param_offset, grads + c->param_offset,
                         k > 0 ? m.out[k - 1] : x, m.out[k], g, gx);
        g = gx;
    }
    if (is_composite(l))
        return;
    size_t n = (size_t)p->rows * l->in;
    if (l->shortcut >= 0) {
        const dp_layer *c = &l->children[l->shortcut];
        m.child.saved = NULL;
        c->ops->backward(c, &m.child, params + c->param_offset, grads + c->param_offset, x,
                         NULL, dy, dx ? m.proj : NULL);
        if (dx)
            be->add(p->dev, dx, dx, m.proj, n);
    } else if (dx) {
        be->add(p->dev, dx, dx, dy, n);
    }
}

static double res_flops(const dp_layer *l)
{
    double f = (double)l->out;
    for (int k = 0; k < l->n_children; k++)
        f += l->children[k].ops->flops(&l->children[k]);
    return f;
}

const dp_layer_ops dp_layer_res = {
    .name = "res",
    .usage = "res(LAYER, LAYER, ...)",
    .help = "residual block: the layers in parentheses plus the block's input (through a "
            "1x1 convolution, or a linear layer, when the layers change the shape)",
    .min_args = 0,
    .max_args = 0,
    .infer = res_infer,
    .tensors = res_tensors,
    .init = res_init,
    .forward = res_forward,
    .backward = res_backward,
    .flops = res_flops,
    .scratch = res_scratch,
};

/* ---- block:HEADS and enc:HEADS[:NORM_FIRST] ---- */

/* Builds a composite block (block or enc) from a layer list `spec` of res blocks and layers on
 * the block's input, naming the children: names[k] holds child k's name ("" for a res block)
 * and then its own children's. The block's output is its last child's. */
static int compose(dp_layer *l, const char *spec, const char *const names[][5], dp_err *err)
{
    size_t n_params;
    if (dp_layer_list_parse(spec, l->in_shape, 1, &l->children, &l->n_children, &n_params,
                            err) < 0)
        return -1;
    l->param_count = n_params;
    l->saved = l->saved_pass = 0;
    l->shortcut = -1;
    for (int k = 0; k < l->n_children; k++) {
        dp_layer *c = &l->children[k];
        snprintf(c->name, sizeof c->name, "%s", names[k][0]);
        for (int j = 0; j < c->n_children; j++)
            snprintf(c->children[j].name, sizeof c->children[j].name, "%s", names[k][1 + j]);
        l->saved += c->saved + (k < l->n_children - 1 ? (size_t)c->out : 0);
        l->saved_pass += c->saved_pass;
    }
    l->out_shape = l->in_shape;
    return 0;
}

/* Whether l is a composite block, whose last child writes the block's output (and which adds
 * no shortcut of its own). */
static bool is_composite(const dp_layer *l)
{
    return l->ops == &dp_layer_block || l->ops == &dp_layer_enc;
}

static int block_infer(dp_layer *l, dp_err *err)
{
    if (l->in_shape.ndim != 2)
        return dp_fail(err, "block needs sequences [positions, width] as input (after embed)");
    int d = l->in_shape.d[1];
    if (l->args[0] < 1)
        return dp_fail(err, "block needs at least one head");
    if (d % l->args[0])
        return dp_fail(err, "%d heads do not divide the width %d", l->args[0], d);
    char spec[128];
    snprintf(spec, sizeof spec, "res(ln, attn:%d), res(ln, linear:%d, gelu, linear:%d)",
             l->args[0], 4 * d, d);
    static const char *const names[][5] = { { "", "ln_1", "attn" },
                                            { "", "ln_2", "mlp.c_fc", "mlp.gelu",
                                              "mlp.c_proj" } };
    return compose(l, spec, names, err);
}

const dp_layer_ops dp_layer_block = {
    .name = "block",
    .usage = "block:HEADS",
    .help = "a GPT block (pre-LayerNorm): x + attn:HEADS(ln(x)), then x + MLP(ln(x)) with a "
            "4x wider GELU layer",
    .min_args = 1,
    .max_args = 1,
    .infer = block_infer,
    .tensors = res_tensors,
    .init = res_init,
    .forward = res_forward,
    .backward = res_backward,
    .flops = res_flops,
    .scratch = res_scratch,
};

/* enc:HEADS[:NORM_FIRST], nn.TransformerEncoderLayer(D, HEADS, dim_feedforward=4D,
 * dropout=0, activation="gelu", batch_first=True, norm_first=NORM_FIRST): post-LayerNorm as
 * BERT, x = norm1(x + self_attn(x)), x = norm2(x + linear2(gelu(linear1(x)))), or with
 * NORM_FIRST 1 pre-LayerNorm, x = x + self_attn(norm1(x)), x = x + linear2(gelu(linear1(
 * norm2(x)))). The GELU is the exact one. */
static int enc_infer(dp_layer *l, dp_err *err)
{
    if (l->in_shape.ndim != 2)
        return dp_fail(err, "enc needs sequences [positions, width] as input (after embed)");
    bool norm_first = l->nargs > 1 && l->args[1];
    if (l->nargs > 1 && l->args[1] != 0 && l->args[1] != 1)
        return dp_fail(err, "enc:HEADS:NORM_FIRST takes NORM_FIRST 0 (post-LayerNorm, as BERT) "
                            "or 1 (pre-LayerNorm), not %d", l->args[1]);
    int d = l->in_shape.d[1], h = l->args[0];
    if (h < 1)
        return dp_fail(err, "enc needs at least one head");
    if (d % h)
        return dp_fail(err, "%d heads do not divide the width %d", h, d);
    char spec[160];
    if (norm_first) {
        snprintf(spec, sizeof spec,
                 "res(ln, mha:%d), res(ln, linear:%d, gelu_erf, linear:%d)", h, 4 * d, d);
        static const char *const names[][5] = {
            { "", "norm1", "self_attn" }, { "", "norm2", "linear1", "activation", "linear2" } };
        return compose(l, spec, names, err);
    }
    snprintf(spec, sizeof spec, "res(mha:%d), ln, res(linear:%d, gelu_erf, linear:%d), ln", h,
             4 * d, d);
    static const char *const names[][5] = { { "", "self_attn" },
                                            { "norm1" },
                                            { "", "linear1", "activation", "linear2" },
                                            { "norm2" } };
    return compose(l, spec, names, err);
}

const dp_layer_ops dp_layer_enc = {
    .name = "enc",
    .usage = "enc:HEADS[:NORM_FIRST]",
    .help = "a Transformer encoder block (BERT's): bidirectional mha:HEADS and a 4x wider "
            "exact-GELU MLP, each added to its input, post-LayerNorm (NORM_FIRST 1: "
            "pre-LayerNorm); nn.TransformerEncoderLayer(D, HEADS, 4D, dropout=0, "
            "activation='gelu', batch_first=True, norm_first=NORM_FIRST)",
    .min_args = 1,
    .max_args = 2,
    .infer = enc_infer,
    .tensors = res_tensors,
    .init = res_init,
    .forward = res_forward,
    .backward = res_backward,
    .flops = res_flops,
    .scratch = res_scratch,
};
