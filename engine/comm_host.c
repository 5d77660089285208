/* comm_host.c -- all-reduce among threads of one process, through shared memory (the host
 * group: CPU devices, and GPUs their backend has no group for); device groups are the
 * backend's (its group_* slots, e.g. NCCL).
 *
 * Hand-off: a member publishes its buffer pointer, then the first barrier makes every pointer
 * visible; each member then owns slice [rank] of every buffer until the second barrier, after
 * which the buffers belong to their members again. In a world of several processes, each
 * member sums its slice across them on its own channel between the reduce-scatter and the
 * all-gather. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "engine/comm.h"
#include "engine/world.h"

struct dp_comm {
    const dp_backend *be; /* members[0]'s backend: the device group's */
    void *device;         /* a device group of be, or NULL; the fields below are then unused */
    int size;
    pthread_barrier_t barrier;
    float **bufs; /* [size]: each member's buffer for the all-reduce in progress */
    dp_world_channel **across; /* [size]: each member's channel to the other processes, or
                                  NULL in a world of one */
    double *now_seconds; /* [size]: each member's time in dp_comm_allreduce_now (its own slot) */
};

dp_comm *dp_comm_create(dp_device **members, int size, dp_err *err)
{
    dp_comm *c = calloc(1, sizeof *c);
    if (c)
        c->bufs = calloc((size_t)size, sizeof *c->bufs);
    if (c)
        c->now_seconds = calloc((size_t)size, sizeof *c->now_seconds);
    if (!c || !c->bufs || !c->now_seconds) {
        if (c)
            free(c->bufs), free(c->now_seconds);
        free(c);
        dp_fail(err, "out of memory for a communication group");
        return NULL;
    }
    c->size = size;
    if (dp_world_size() > 1) {
        c->across = calloc((size_t)size, sizeof *c->across);
        if (!c->across) { /* the other processes are making theirs: end the run */
            dp_fail(err, "out of memory for a communication group");
            dp_world_abort(1);
        }
        for (int r = 0; r < size; r++)
            c->across[r] = dp_world_channel_create();
    }
    c->be = members[0]->be;
    if (c->be->group_create) {
        err->msg[0] = '\0';
        c->device = c->be->group_create(members, size, err);
        if (!c->device && err->msg[0]) {
            free(c->bufs);
            free(c->now_seconds);
            free(c);
            return NULL;
        }
    }
    pthread_barrier_init(&c->barrier, NULL, (unsigned)size);
    return c;
}

void dp_comm_destroy(dp_comm *c)
{
    if (!c)
        return;
    if (c->device)
        c->be->group_destroy(c->device);
    pthread_barrier_destroy(&c->barrier);
    for (int r = 0; c->across && r < c->size; r++)
        dp_world_channel_destroy(c->across[r]);
    free(c->across);
    free(c->bufs);
    free(c->now_seconds);
    free(c);
}

bool dp_comm_on_device(const dp_comm *c)
{
    return c->device != NULL;
}

const char *dp_comm_kind(const dp_comm *c)
{
    if (c->device)
        return c->be->group_kind(c->device);
    return "host";
}

void dp_comm_join(dp_comm *c, int rank)
{
    if (c->device)
        c->be->group_join(c->device, rank);
}

void dp_comm_allreduce(dp_comm *c, int rank, float *buf, size_t n)
{
    dp_world_channel *across = c->across ? c->across[rank] : NULL;
    if (c->size == 1) {
        dp_world_channel_sum(across, buf, n);
        return;
    }
    if (c->device) {
        c->be->group_allreduce(c->device, rank, buf, n);
        return;
    }
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
    dp_world_channel_sum(across, sum + lo, hi - lo); /* ... over the processes ... */
    /* ... all-gather: and is copied into every other member's. */
    for (int r = 1; r < c->size; r++)
        memcpy(c->bufs[r] + lo, sum + lo, (hi - lo) * sizeof *sum);
    pthread_barrier_wait(&c->barrier);
}

void dp_comm_allreduce_now(dp_comm *c, int rank, dp_device *d, float *buf, size_t n)
{
    double t0 = dp_now_s();
    if (c->device || d->be->host_memory) {
        dp_comm_allreduce(c, rank, buf, n);
        dp_comm_join(c, rank);
        c->now_seconds[rank] += dp_now_s() - t0;
        return;
    }
    float *host = malloc(n * sizeof *host);
    if (!host) { /* every member would wait for this one: end the run */
        fprintf(stderr, "dpmptop: out of host memory for batch statistics\n");
        dp_world_abort(1);
        exit(1);
    }
    d->be->download(d, host, buf, n * sizeof *host);
    dp_comm_allreduce(c, rank, host, n);
    d->be->upload(d, buf, host, n * sizeof *host);
    free(host);
    c->now_seconds[rank] += dp_now_s() - t0;
}

double dp_comm_now_seconds(const dp_comm *c, int rank)
{
    return c->now_seconds[rank];
}
