/* backend.c -- device memory accounting shared by every backend. */
#include "engine/backend.h"

void *dp_device_alloc(dp_device *d, size_t bytes, const char *what, dp_err *err)
{
    if (d->mem_limit && (bytes > d->mem_limit || d->mem_held > d->mem_limit - bytes)) {
        dp_fail(err,
                "%s: %zu bytes for %s do not fit the device memory limit of %zu bytes "
                "([parallel] device_memory; %zu held); raise the limit, or try a smaller "
                "batch or a smaller model",
                d->name, bytes, what, d->mem_limit, d->mem_held);
        return NULL;
    }
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
    if (d->mem_held > d->mem_plan_peak)
        d->mem_plan_peak = d->mem_held;
    return p;
}

void dp_device_limit_memory(dp_device *d, size_t bytes)
{
    d->mem_limit = bytes;
    if (bytes && (d->mem_total == 0 || bytes < d->mem_total))
        d->mem_total = bytes;
}

void dp_device_free(dp_device *d, void *p, size_t bytes)
{
    if (!p)
        return;
    d->be->release(d, p);
    d->mem_held -= bytes;
}
