/* devices.c -- a run's devices, made and destroyed through their backends' tables. */
#include "engine/devices.h"

#include <stdlib.h>

struct dp_device_set {
    int n;
    dp_device *devices; /* [n]; a device whose impl is NULL was not made */
};

dp_device_set *dp_device_set_create(int n, const dp_device_spec *specs, bool tf32, dp_err *err)
{
    dp_device_set *s = calloc(1, sizeof *s);
    if (!s || !(s->devices = calloc((size_t)n, sizeof *s->devices))) {
        free(s);
        dp_fail(err, "out of host memory");
        return NULL;
    }
    s->n = n;
    for (int i = 0; i < n; i++) {
        const dp_device_spec *spec = specs ? &specs[i] : NULL;
        const dp_backend *be = spec && spec->cuda ? &dp_backend_cuda : &dp_backend_cpu;
        if (be->device_init(&s->devices[i], i, spec ? spec->ordinal : 0, tf32, err) < 0) {
            dp_device_set_destroy(s);
            return NULL;
        }
    }
    return s;
}

void dp_device_set_destroy(dp_device_set *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++)
        if (s->devices[i].impl)
            s->devices[i].be->device_destroy(&s->devices[i]);
    free(s->devices);
    free(s);
}

int dp_device_set_count(const dp_device_set *s)
{
    return s->n;
}

dp_device *dp_device_set_devices(dp_device_set *s)
{
    return s->devices;
}
