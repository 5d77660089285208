/* step_gemms.h -- the GEMMs of one training step of a model, with the shapes, transposes and
 * betas of engine/layers/linear.c, for the benchmarks that compare a step with plain GEMMs. */
#ifndef DP_BENCH_STEP_GEMMS_H
#define DP_BENCH_STEP_GEMMS_H

#include "engine/layer.h"
#include "engine/model.h"

typedef struct gemm {
    const char *op; /* fwd, wgrad, dgrad */
    int layer, ta, tb, m, n, k;
    float beta;
    float *a, *b, *c; /* filled in by the benchmark: host or device memory */
} gemm;

/* Row-major: op(A) is m x k, op(B) is k x n, C is m x n. Forward over the layers, then backward
 * from the last, in the engine's order; the model's first layer computes no input gradient.
 * out needs room for 3 per layer; returns how many. */
static inline int step_gemms(const dp_model *m, int batch, gemm *out)
{
    int n = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const dp_layer *l = &m->layers[i];
        if (l->ops == &dp_layer_linear) /* y = b (bias rows), then y += x W^T */
            out[n++] = (gemm){ "fwd", i, 0, 1, batch, l->out, l->in, 1.0f, NULL, NULL, NULL };
    }
    for (int i = m->n_layers - 1; i >= 0; i--) {
        const dp_layer *l = &m->layers[i];
        if (l->ops != &dp_layer_linear)
            continue;
        out[n++] = (gemm){ "wgrad", i, 1, 0, l->out, l->in, batch, 0.0f, NULL, NULL, NULL };
        if (i > 0)
            out[n++] = (gemm){ "dgrad", i, 0, 0, batch, l->in, l->out, 0.0f, NULL, NULL, NULL };
    }
    return n;
}

#endif
