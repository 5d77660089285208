/* prefetch.c -- two host batches handed between the prefetch thread (or the training loop) and
 * the training loop; prefetch.h says who owns which when. */
#include <pthread.h>
#include <stdlib.h>

#include "datasets/prefetch.h"

struct dp_prefetch {
    dp_loader *loader;  /* the thread's alone while it runs */
    bool indices_only;  /* gather the indices only (the data sit on the devices) */
    dp_host_memory mem;
    dp_batch batches[2];
    int next;           /* which of them holds the next step's batch */
    bool started;       /* the thread runs */
    bool quit;          /* under lock: the thread is to end */
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
};

dp_prefetch *dp_prefetch_create(dp_loader *loader, int features, int targets,
                                dp_host_memory mem, dp_err *err)
{
    dp_prefetch *p = calloc(1, sizeof *p);
    if (!p) {
        dp_fail(err, "out of host memory");
        return NULL;
    }
    p->loader = loader;
    p->mem = mem;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    bool ok = true;
    size_t batch = (size_t)loader->batch;
    for (int b = 0; b < 2; b++) {
        p->batches[b].x = mem.alloc(batch * features * sizeof(float));
        p->batches[b].y = mem.alloc(batch * targets * sizeof(int32_t));
        p->batches[b].idx = mem.alloc(batch * sizeof(int32_t));
        ok = ok && p->batches[b].x && p->batches[b].y && p->batches[b].idx;
    }
    if (!ok) {
        dp_prefetch_destroy(p);
        dp_fail(err, "out of host memory for two batches of %zu samples", batch);
        return NULL;
    }
    return p;
}

/* Gathers the loader's next batch into b (by whichever thread owns the loader). */
static void gather(dp_prefetch *p, dp_batch *b)
{
    b->epoch = p->loader->epoch + 1;
    b->start = p->loader->pos;
    b->rows = dp_loader_next(p->loader, p->indices_only ? NULL : b->x,
                             p->indices_only ? NULL : b->y, b->idx);
    b->epoch_end = p->loader->pos == 0;
}

/* The prefetch thread: gathers batch after batch into whichever batch is free, in turn, so
 * that a step's batch is ready when the step before it ends. */
static void *prefetch_main(void *arg)
{
    dp_prefetch *p = arg;
    for (int i = 0;; i ^= 1) {
        dp_batch *b = &p->batches[i];
        pthread_mutex_lock(&p->lock);
        while (b->full && !p->quit)
            pthread_cond_wait(&p->cond, &p->lock);
        bool quit = p->quit;
        pthread_mutex_unlock(&p->lock);
        if (quit)
            return NULL;
        gather(p, b);
        pthread_mutex_lock(&p->lock);
        b->full = true;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
    }
}

int dp_prefetch_start(dp_prefetch *p, bool thread, bool indices_only, dp_err *err)
{
    p->indices_only = indices_only;
    if (!thread)
        return 0;
    if (pthread_create(&p->thread, NULL, prefetch_main, p) != 0)
        return dp_fail(err, "cannot start the data loader thread");
    p->started = true;
    return 0;
}

/* Makes b hold its batch: waits for the thread, or gathers it here. */
static void fill(dp_prefetch *p, dp_batch *b)
{
    if (!p->started) {
        if (!b->full)
            gather(p, b);
        b->full = true;
        return;
    }
    pthread_mutex_lock(&p->lock);
    while (!b->full)
        pthread_cond_wait(&p->cond, &p->lock);
    pthread_mutex_unlock(&p->lock);
}

dp_batch *dp_prefetch_next(dp_prefetch *p)
{
    dp_batch *b = &p->batches[p->next];
    fill(p, b);
    return b;
}

void dp_prefetch_ahead(dp_prefetch *p)
{
    if (!p->started)
        fill(p, &p->batches[p->next ^ 1]);
}

void dp_prefetch_release(dp_prefetch *p, dp_batch *b)
{
    if (!p->started) {
        b->full = false;
    } else {
        pthread_mutex_lock(&p->lock);
        b->full = false;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
    }
    p->next ^= 1;
}

void dp_prefetch_stop(dp_prefetch *p)
{
    if (!p || !p->started)
        return;
    pthread_mutex_lock(&p->lock);
    p->quit = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    p->started = false;
}

void dp_prefetch_destroy(dp_prefetch *p)
{
    if (!p)
        return;
    dp_prefetch_stop(p);
    for (int b = 0; b < 2; b++) {
        if (p->batches[b].x)
            p->mem.free(p->batches[b].x);
        if (p->batches[b].y)
            p->mem.free(p->batches[b].y);
        if (p->batches[b].idx)
            p->mem.free(p->batches[b].idx);
    }
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p);
}
