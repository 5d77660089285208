/* backend.c -- device memory accounting shared by every backend. */
#include "engine/backend.h"

void *dp_device_alloc(dp_device *d, size_t bytes, const char *what, dp_err *err)
{
    void *p = d->be->alloc(d, bytes);
    if (!p) {
        dp_fail(err,
                "%s: out of memory allocating %zu bytes for %s (%zu held); "
                "try a smaller batch or a smaller model",
                d->name, bytes, what, d->mem_held);
        return NULL;
    }
    d->mem_held += bytes;
    if (d->mem_held > d->mem_peak)
        d->mem_peak = d->mem_held;
    return p;
}

void dp_device_free(dp_device *d, void *p, size_t bytes)
{
    if (!p)
        return;
    d->be->release(d, p);
    d->mem_held -= bytes;
}
