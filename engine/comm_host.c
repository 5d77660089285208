/* comm_host.c -- all-reduce among threads of one process, through shared memory.
 *
 * Hand-off: a member publishes its buffer pointer, then the first barrier makes every pointer
 * visible; each member then owns slice [rank] of every buffer until the second barrier, after
 * which the buffers belong to their members again. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/comm.h"

struct dp_comm {
    int size;
    pthread_barrier_t barrier;
    float **bufs; /* [size]: each member's buffer for the all-reduce in progress */
};

dp_comm *dp_comm_create(int size, dp_err *err)
{
    dp_comm *c = calloc(1, sizeof *c);
    if (c)
        c->bufs = calloc((size_t)size, sizeof *c->bufs);
    if (!c || !c->bufs) {
        free(c);
        dp_fail(err, "out of memory for a communication group");
        return NULL;
    }
    c->size = size;
    pthread_barrier_init(&c->barrier, NULL, (unsigned)size);
    return c;
}

void dp_comm_destroy(dp_comm *c)
{
    if (!c)
        return;
    pthread_barrier_destroy(&c->barrier);
    free(c->bufs);
    free(c);
}

void dp_comm_allreduce(dp_comm *c, int rank, float *buf, size_t n)
{
    if (c->size == 1)
        return;
    c->bufs[rank] = buf;
    pthread_barrier_wait(&c->barrier);
    size_t lo = n * (size_t)rank / (size_t)c->size;
    size_t hi = n * (size_t)(rank + 1) / (size_t)c->size;
    float *sum = c->bufs[0];
    /* reduce-scatter: the slice's sum, in member order, lands in member 0's buffer ... */
    for (int r = 1; r < c->size; r++) {
        const float *b = c->bufs[r];
        for (size_t i = lo; i < hi; i++)
            sum[i] += b[i];
    }
    /* ... all-gather: and is copied into every other member's. */
    for (int r = 1; r < c->size; r++)
        memcpy(c->bufs[r] + lo, sum + lo, (hi - lo) * sizeof *sum);
    pthread_barrier_wait(&c->barrier);
}
