/* bn.c -- bn, batch normalisation per channel: nn.BatchNorm2d after images [C, H, W] (over the
 * samples and positions of each channel), nn.BatchNorm1d after vectors [N] (over the samples
 * of each feature). Momentum 0.1, eps 1e-5, affine, with running statistics.
 *
 * A training pass normalises with its batch's mean and biased variance, and moves the running
 * estimates (buffers at the end of the layer's run: running_mean, running_var and
 * num_batches_tracked) towards the batch's mean and unbiased variance; evaluation normalises
 * with the running estimates. The batch is every sample the step processes together: when the
 * pass has a replica group (data parallelism), the per-channel sums are summed over the
 * replicas in forward, and the two gradient sums in backward, as SyncBatchNorm does, so that
 * replicas compute what one device computes. The variance comes from a second pass over the
 * values, centred on the batch's mean (two sums, each all-reduced), which keeps its rounding
 * independent of how far the mean is from zero. */
#include "engine/layers/common.h"

/* The channels and the values of a channel in one sample. */
static void bn_geometry(const dp_layer *l, int *channels, int *positions)
{
    bool image = l->in_shape.ndim == 3;
    *channels = l->in_shape.d[0];
    *positions = image ? l->in_shape.d[1] * l->in_shape.d[2] : 1;
}

static int bn_infer(dp_layer *l, dp_err *err)
{
    if (l->in_shape.ndim == 2)
        return dp_fail(err, "bn normalises images [channels, height, width] or vectors, but "
                            "gets sequences [%d, %d]; use ln (layer normalisation) there",
                       l->in_shape.d[0], l->in_shape.d[1]);
    int c, positions;
    bn_geometry(l, &c, &positions);
    l->out_shape = l->in_shape;
    l->param_count = dp_size_add(dp_size_mul(4, (size_t)c), 1);
    l->saved_pass = dp_size_add(dp_size_mul(2, (size_t)c), 1); /* the pass's statistics */
    return 0;
}

static int bn_tensors(const dp_layer *l, dp_tensor_info out[DP_MAX_LAYER_TENSORS])
{
    int c, positions;
    bn_geometry(l, &c, &positions);
    size_t n = (size_t)c;
    out[0] = (dp_tensor_info){ "weight", 1, { c }, 0, n, false, false, false };
    out[1] = (dp_tensor_info){ "bias", 1, { c }, n, n, false, false, false };
    out[2] = (dp_tensor_info){ "running_mean", 1, { c }, 2 * n, n, true, false, false };
    out[3] = (dp_tensor_info){ "running_var", 1, { c }, 3 * n, n, true, false, true };
    out[4] = (dp_tensor_info){ "num_batches_tracked", 0, { 0 }, 4 * n, 1, true, true, false };
    return 5;
}

/* nn.BatchNorm's reset_parameters: weight 1, bias 0; running mean 0, variance 1, no batches. */
static void bn_init(const dp_layer *l, float *params, uint64_t seed)
{
    int c, positions;
    bn_geometry(l, &c, &positions);
    for (int i = 0; i < c; i++) {
        params[i] = 1.0f;
        params[c + i] = 0.0f;
        params[2 * c + i] = 0.0f;
        params[3 * c + i] = 1.0f;
    }
    params[4 * c] = 0.0f;
}

/* Sums buf[n] over the pass's replicas, when it has any. */
static void sum_replicas(const dp_pass *p, float *buf, size_t n)
{
    if (p->replicas)
        dp_comm_allreduce_now(p->replicas, p->replica, p->dev, buf, n);
}

static void bn_forward(const dp_layer *l, const dp_pass *p, const float *params, const float *x,
                       float *y)
{
    const dp_backend *be = p->dev->be;
    int c, positions;
    bn_geometry(l, &c, &positions);
    float *running = (float *)params + 2 * (size_t)c; /* the buffers: layer.h */
    float *stats = p->saved;
    if (p->key) {
        float *sums = p->scratch, *squares = p->scratch + c + 1;
        be->bn_sums(p->dev, sums, x, NULL, p->rows, c, positions);
        sum_replicas(p, sums, (size_t)c + 1);
        be->bn_sums(p->dev, squares, x, sums, p->rows, c, positions);
        sum_replicas(p, squares, (size_t)c + 1);
        be->bn_statistics(p->dev, stats, p->keep_buffers ? NULL : running, sums, c);
    } else {
        be->bn_statistics(p->dev, stats, running, NULL, c);
    }
    be->bn_forward(p->dev, y, x, stats, params, params + c, p->rows, c, positions);
}

static void bn_backward(const dp_layer *l, const dp_pass *p, const float *params, float *grads,
                        const float *x, const float *y, const float *dy, float *dx)
{
    const dp_backend *be = p->dev->be;
    int c, positions;
    bn_geometry(l, &c, &positions);
    size_t n = (size_t)c;
    float *sums = p->scratch; /* sum dy xhat, then sum dy: the weight's and the bias's gradient */
    be->bn_backward_sums(p->dev, sums, dy, x, p->saved, p->rows, c, positions);
    /* this pass's share of the gradients (the gradient all-reduce adds the other replicas');
     * the buffers' stay 0 */
    if (p->accumulate) {
        be->add(p->dev, grads, grads, sums, 2 * n);
    } else {
        be->copy(p->dev, grads, sums, 2 * n * sizeof *grads);
        be->zero(p->dev, grads + 2 * n, (2 * n + 1) * sizeof *grads);
    }
    if (!dx)
        return;
    sum_replicas(p, sums, 2 * n);
    be->bn_backward_dx(p->dev, dx, dy, x, p->saved, params, sums, p->rows, c, positions);
}

static double bn_flops(const dp_layer *l)
{
    return 10.0 * l->in; /* two passes of sums, the normalisation; backward about twice */
}

/* The forward's two sums, or the backward's. */
static size_t bn_scratch(const dp_layer *l, int max_rows, const dp_device *d)
{
    int c, positions;
    bn_geometry(l, &c, &positions);
    return 2 * (size_t)c + 2;
}

const dp_layer_ops dp_layer_bn = {
    .name = "bn",
    .usage = "bn",
    .help = "batch normalisation of each channel (images) or feature (vectors) over the step's "
            "samples, synchronised across data-parallel replicas, per micro-batch in a "
            "pipeline; running statistics for evaluation; nn.BatchNorm2d or nn.BatchNorm1d",
    .min_args = 0,
    .max_args = 0,
    .infer = bn_infer,
    .tensors = bn_tensors,
    .init = bn_init,
    .forward = bn_forward,
    .backward = bn_backward,
    .flops = bn_flops,
    .scratch = bn_scratch,
};
