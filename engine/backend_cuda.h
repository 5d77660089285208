/* backend_cuda.h -- what only the CUDA backend offers: finding GPUs and making devices on them.
 * Declared for builds with CUDA (HAVE_CUDA); the rest of the engine goes through the table. */
#ifndef DP_BACKEND_CUDA_H
#define DP_BACKEND_CUDA_H

#include <stdbool.h>

#include "engine/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const dp_backend dp_backend_cuda;

/* The number of GPUs the CUDA runtime sees, or -1 with err naming the CUDA error (no driver,
 * no device). */
int dp_cuda_device_count(dp_err *err);

/* Makes device number `index` of the run on GPU `ordinal` (several devices may share one GPU):
 * its own stream and cuBLAS handle; tf32 selects TF32 tensor-core GEMMs. */
int dp_cuda_device_init(dp_device *d, int index, int ordinal, bool tf32, dp_err *err);
void dp_cuda_device_destroy(dp_device *d);

#ifdef __cplusplus
}
#endif

#endif
