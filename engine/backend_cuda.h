/* backend_cuda.h -- what only the CUDA backend offers: finding GPUs, making devices on them
 * directly (tests, benchmarks), and profiling. Defined in builds with CUDA (HAVE_CUDA) only; the
 * engine and the app go through the table (backend.h), which the CUDA backend's all-reduce
 * groups and links are slots of too (cuda_impl.h). */
#ifndef DP_BACKEND_CUDA_H
#define DP_BACKEND_CUDA_H

#include <stdbool.h>
#include <stdio.h>

#include "engine/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The number of GPUs the CUDA runtime sees, or -1 with err naming the CUDA error (no driver,
 * no device). */
int dp_cuda_device_count(dp_err *err);

/* Makes device number `index` of the run on GPU `ordinal` (several devices may share one GPU):
 * its own stream and cuBLAS handle; tf32 selects TF32 tensor-core GEMMs. */
int dp_cuda_device_init(dp_device *d, int index, int ordinal, bool tf32, dp_err *err);
void dp_cuda_device_destroy(dp_device *d);

/* Time a CUDA device's GEMMs took while profiling was on (events around each, which cost a
 * little launch time: for benchmarks). */
typedef struct dp_cuda_profile {
    double gemm_s;
    double gemm_flops; /* 2 m n k summed over those GEMMs */
} dp_cuda_profile;
void dp_cuda_set_profiling(dp_device *d, bool on);
/* Waits for the device, then reads its profile. */
dp_cuda_profile dp_cuda_device_profile(dp_device *d);
/* One line per tuned shape: the two ways' times and the one chosen. */
void dp_cuda_print_tuning(dp_device *d, FILE *out);

#ifdef __cplusplus
}
#endif

#endif
