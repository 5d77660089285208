/* embedding.c -- the embeddings that begin a sequence model: embed (nn.Embedding of byte or
 * token ids, to sequences [T, D]) and pos (a learned position embedding, nn.Embedding(T, D) of
 * the positions, added). */
#include "engine/layers/common.h"
#include "base/rng.h"

/* nn.Embedding's init: N(0, 1). */
static void normal_init(const dp_layer *l, float *params, uint64_t seed)
{
    dp_rng r = dp_rng_stream(seed, DP_RNG_INIT, (uint64_t)l->index);
    for (size_t i = 0; i < l->param_count; i++)
        params[i] = (float)dp_rng_normal(&r);
}

/* ---- embed:VOCAB:D ---- */

static int embed_infer(dp_layer *l, dp_err *err)
{
    if (l->in_shape.ndim != 1)
        return dp_fail(err, "embed needs ids (text, or token sequences) as input; it goes "
                            "first in the list");
    if (l->args[0] < 1 || l->args[1] < 1)
        return dp_fail(err, "the vocabulary and the width must be at least 1");
    l->out_shape = (dp_shape){ 2, { l->in_shape.d[0], l->args[1] } };
    l->param_count = dp_size_mul(l->args[0], l->args[1]);
    return 0;
}

static int embed_tensors(const dp_layer *l, dp_tensor_info out[DP_MAX_LAYER_TENSORS])
{
    out[0] = (dp_tensor_info){ "weight", 2, { l->args[0], l->args[1] }, 0, l->param_count,
                               false, false, false };
    return 1;
}

static void embed_forward(const dp_layer *l, const dp_pass *p, const float *params,
                          const float *x, float *y)
{
    p->dev->be->embedding_forward(p->dev, y, x, params, p->rows * l->in, l->args[1], l->args[0]);
}

static void embed_backward(const dp_layer *l, const dp_pass *p, const float *params,
                           float *grads, const float *x, const float *y, const float *dy,
                           float *dx)
{
    p->dev->be->embedding_backward(p->dev, grads, x, dy, p->rows * l->in, l->args[1],
                                   l->args[0], p->accumulate);
    if (dx) /* ids have no gradient */
        p->dev->be->zero(p->dev, dx, (size_t)p->rows * l->in * sizeof *dx);
}

static double embed_flops(const dp_layer *l)
{
    return 0.0;
}

const dp_layer_ops dp_layer_embed = {
    .name = "embed",
    .usage = "embed:VOCAB:D",
    .help = "the rows of a VOCAB x D table for each id (a text's bytes: VOCAB 256); "
            "nn.Embedding",
    .min_args = 2,
    .max_args = 2,
    .infer = embed_infer,
    .tensors = embed_tensors,
    .init = normal_init,
    .forward = embed_forward,
    .backward = embed_backward,
    .flops = embed_flops,
};

/* ---- pos ---- */

static int pos_infer(dp_layer *l, dp_err *err)
{
    if (dp_layer_need_sequence(l, err) < 0)
        return -1;
    l->out_shape = l->in_shape;
    l->param_count = (size_t)l->in;
    return 0;
}

static int pos_tensors(const dp_layer *l, dp_tensor_info out[DP_MAX_LAYER_TENSORS])
{
    out[0] = (dp_tensor_info){ "weight", 2, { l->in_shape.d[0], l->in_shape.d[1] }, 0,
                               l->param_count, false, false, false };
    return 1;
}

static void pos_forward(const dp_layer *l, const dp_pass *p, const float *params,
                        const float *x, float *y)
{
    p->dev->be->add_broadcast(p->dev, y, x, params, p->rows, l->in);
}

static void pos_backward(const dp_layer *l, const dp_pass *p, const float *params,
                         float *grads, const float *x, const float *y, const float *dy,
                         float *dx)
{
    p->dev->be->sum_rows(p->dev, grads, dy, p->rows, l->in, p->accumulate);
    if (dx)
        p->dev->be->copy(p->dev, dx, dy, (size_t)p->rows * l->in * sizeof *dx);
}

static double pos_flops(const dp_layer *l)
{
    return (double)l->in;
}

const dp_layer_ops dp_layer_pos = {
    .name = "pos",
    .usage = "pos",
    .help = "adds a learned vector per position (nn.Embedding(T, D) of 0..T-1)",
    .min_args = 0,
    .max_args = 0,
    .infer = pos_infer,
    .tensors = pos_tensors,
    .init = normal_init,
    .forward = pos_forward,
    .backward = pos_backward,
    .flops = pos_flops,
};
