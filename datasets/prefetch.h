/* prefetch.h -- a training run's batches, gathered from a dp_loader ahead of the steps that
 * train on them.
 *
 * Two host batches take turns: the workers read one during a step while the next is gathered
 * into the other. The batches come in the loader's order whoever gathers them, so a run sees
 * the same data with or without the thread.
 *
 * Who gathers (dp_prefetch_start chooses):
 *  - the prefetch thread, running up to two batches ahead. For GPU devices: a step's work is
 *    queued on the GPU and the training loop only waits, so a thread of its own costs nothing
 *    and gathers during the whole step (the gather of a large batch costs as much as a GPU
 *    step).
 *  - or the training loop itself: in dp_prefetch_next when the batch is not there yet, and in
 *    dp_prefetch_ahead, which it calls between posting a step and waiting for it. For CPU
 *    devices: there, waking a thread for each batch cost more than the gather (the seed
 *    network's step went from 14 to 31 us).
 *
 * Hand-off, who owns which buffer when (under the prefetch's lock while the thread runs):
 *  - a batch whose `full` is false belongs to the gatherer, which fills it and sets `full`;
 *  - a full batch belongs to the training loop from dp_prefetch_next, which returns it, until
 *    the loop hands it back with dp_prefetch_release (once its step is done with it), which
 *    clears `full` (and wakes the thread);
 *  - the loader belongs to the prefetch thread from dp_prefetch_start to dp_prefetch_stop: the
 *    caller may read only what never changes meanwhile (its data set, its batch size).
 *
 * Threads: every call comes from one thread, the training loop's; the prefetch thread is this
 * module's own. */
#ifndef DP_PREFETCH_H
#define DP_PREFETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "datasets/dataset.h"

/* One batch in host memory. */
typedef struct dp_batch {
    float *x;       /* [batch, features] (not filled when only indices are gathered) */
    int32_t *y;     /* [batch, targets] (likewise) */
    int32_t *idx;   /* [batch]: the samples' indices */
    int rows;
    long epoch;     /* 1-based */
    long start;     /* the position in its epoch of its first sample */
    bool epoch_end; /* it took the last samples of its epoch */
    bool full;      /* the hand-off (above); the caller reads it never */
} dp_batch;

/* Where the batches live: host memory that the devices upload from fastest (pinned for a
 * GPU), from the devices' backend. */
typedef struct dp_host_memory {
    void *(*alloc)(size_t bytes);
    void (*free)(void *p);
} dp_host_memory;

typedef struct dp_prefetch dp_prefetch;

/* Allocates two batches of loader->batch samples of `features` floats and `targets` labels
 * from mem, gathering from `loader` (the caller's, which must outlive the prefetch). Nothing
 * is gathered until the first dp_prefetch_next. */
dp_prefetch *dp_prefetch_create(dp_loader *loader, int features, int targets,
                                dp_host_memory mem, dp_err *err);
/* Chooses who gathers: with `thread`, starts the prefetch thread (which fails only when the
 * system refuses a thread); without, the training loop gathers. With `indices_only` only the
 * samples' indices are gathered (the data sets sit on the devices). Called once, before the
 * first dp_prefetch_next. */
int dp_prefetch_start(dp_prefetch *p, bool thread, bool indices_only, dp_err *err);

/* The next step's batch, waiting for the thread to fill it, or gathering it here. */
dp_batch *dp_prefetch_next(dp_prefetch *p);
/* Without the thread, gathers the batch after the one dp_prefetch_next returned into the
 * other buffer now (the loop calls it while the workers compute); with the thread, nothing. */
void dp_prefetch_ahead(dp_prefetch *p);
/* Hands b, the batch dp_prefetch_next returned, back once its step is done with it; the next
 * dp_prefetch_next returns the other buffer. */
void dp_prefetch_release(dp_prefetch *p, dp_batch *b);

/* Ends the prefetch thread, if it runs, and waits for it; the loader is the caller's again. */
void dp_prefetch_stop(dp_prefetch *p);
/* Stops the thread and frees the batches (NULL: nothing). */
void dp_prefetch_destroy(dp_prefetch *p);

#endif
