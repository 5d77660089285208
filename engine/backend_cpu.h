/* backend_cpu.h -- what only the CPU backend offers: the time its operations took. */
#ifndef DP_BACKEND_CPU_H
#define DP_BACKEND_CPU_H

#include "engine/backend.h"

/* Time a CPU device spent inside its operations since it was made. */
typedef struct dp_cpu_profile {
    double gemm_s;     /* in cblas_sgemm */
    double gemm_flops; /* 2 m n k summed over those GEMMs */
    double kernel_s;   /* in every other operation */
} dp_cpu_profile;

dp_cpu_profile dp_cpu_device_profile(const dp_device *d);

/* The cores this process may run on (taskset and cgroup CPU sets respected). */
int dp_cpu_cores(void);

/* Sets how many threads each GEMM may use. OpenBLAS's count is process-wide and its thread pool
 * serves one caller at a time, so with several workers each gets 1 thread. */
void dp_cpu_set_blas_threads(int threads);

#endif
