/* devices.h -- the devices of a run, made once from the configuration and shared by every
 * trainer built on them (a GAN's two models train on the same devices).
 *
 * Ownership: whoever makes a set (the app) destroys it, after every trainer built on it; a
 * trainer borrows the set and its devices, never makes or destroys them. Memory a trainer
 * allocates on the devices it frees when destroyed, so the devices' accounting (mem_held) goes
 * back to what it was.
 *
 * Threads: create and destroy from one thread, while no trainer uses the set. Any number of
 * trainers may be built on one set, one after another or alive together, as long as only one of
 * them runs a step or an evaluation at a time (their worker threads drive the devices). The
 * count and each device's name, model and bus id are fixed once made: any thread may read
 * them. */
#ifndef DP_DEVICES_H
#define DP_DEVICES_H

#include <stdbool.h>

#include "base/error.h"
#include "engine/backend.h"

/* One device of a run: a CPU virtual device, or a GPU by its CUDA ordinal (several devices may
 * name the same GPU). */
typedef struct dp_device_spec {
    bool cuda;
    int ordinal;
} dp_device_spec;

typedef struct dp_device_set dp_device_set;

/* Makes n devices, device i from specs[i] through its backend's table (specs NULL: n CPU
 * devices); tf32 selects TF32 tensor-core GEMMs on GPUs. NULL with err naming the device that
 * could not be made (a build without CUDA: "cuda:N: this build has no CUDA support"). */
dp_device_set *dp_device_set_create(int n, const dp_device_spec *specs, bool tf32, dp_err *err);
/* Destroys the devices (NULL is fine); no trainer may use them any more. */
void dp_device_set_destroy(dp_device_set *s);

/* How many devices, and the array of them ([count], in the run's order). */
int dp_device_set_count(const dp_device_set *s);
dp_device *dp_device_set_devices(dp_device_set *s);

#endif
