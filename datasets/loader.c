/* loader.c -- seeded shuffling and batching. The order of epoch e depends only on (seed, e),
 * so a run can be resumed or re-planned at any step and see the same data. */
#include <stdlib.h>
#include <string.h>

#include "datasets/dataset.h"
#include "base/rng.h"

/* The sample order of an epoch: a Fisher-Yates shuffle from the stream (seed, epoch). */
static void draw_order(dp_loader *l)
{
    long n = l->ds->n;
    for (long i = 0; i < n; i++)
        l->order[i] = (int32_t)i;
    if (!l->shuffle)
        return;
    dp_rng r = dp_rng_stream(l->seed, DP_RNG_SHUFFLE, (uint64_t)l->epoch);
    for (long i = n - 1; i > 0; i--) {
        long j = (long)dp_rng_below(&r, (uint64_t)i + 1);
        int32_t t = l->order[i];
        l->order[i] = l->order[j];
        l->order[j] = t;
    }
}

int dp_loader_init(dp_loader *l, const dp_dataset *ds, int batch, bool shuffle, uint64_t seed,
                   dp_err *err)
{
    memset(l, 0, sizeof *l);
    l->ds = ds;
    l->batch = batch;
    l->shuffle = shuffle;
    l->seed = seed;
    l->order = malloc((size_t)ds->n * sizeof *l->order);
    if (!l->order)
        return dp_fail(err, "out of memory for the order of %ld samples", ds->n);
    draw_order(l);
    return 0;
}

int dp_loader_seek(dp_loader *l, long epoch, long position, dp_err *err)
{
    if (epoch < 0 || position < 0 || position >= l->ds->n)
        return dp_fail(err, "data position %ld of epoch %ld is outside %s's %ld samples",
                       position, epoch, l->ds->name, l->ds->n);
    l->epoch = epoch;
    l->pos = position;
    draw_order(l);
    return 0;
}

void dp_loader_free(dp_loader *l)
{
    free(l->order);
    l->order = NULL;
}

long dp_loader_steps_per_epoch(const dp_loader *l)
{
    return (l->ds->n + l->batch - 1) / l->batch;
}

int dp_loader_next(dp_loader *l, float *x, int32_t *y, int32_t *idx)
{
    const dp_dataset *ds = l->ds;
    long left = ds->n - l->pos;
    int rows = left < l->batch ? (int)left : l->batch;
    size_t f = (size_t)ds->features;
    const int32_t *order = l->order + l->pos;
    if (idx)
        memcpy(idx, order, (size_t)rows * sizeof *idx);
    for (int r = 0; x && r < rows; r++)
        memcpy(x + (size_t)r * f, ds->x + (size_t)order[r] * f, f * sizeof *x);
    size_t t = (size_t)ds->targets;
    for (int r = 0; y && r < rows; r++)
        memcpy(y + (size_t)r * t, ds->y + (size_t)order[r] * t, t * sizeof *y);
    l->pos += rows;
    if (l->pos == ds->n) {
        l->pos = 0;
        l->epoch++;
        draw_order(l);
    }
    return rows;
}
