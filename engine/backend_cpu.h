/* backend_cpu.h -- what only the CPU backend offers: the time its operations took. */
#ifndef DP_BACKEND_CPU_H
#define DP_BACKEND_CPU_H

#include "engine/backend.h"

/* Time a CPU device spent inside its operations since it was made. */
typedef struct dp_cpu_profile {
    double gemm_s;        /* in cblas_sgemm */
    double gemm_flops;    /* 2 m n k summed over those GEMMs */
    double library_s;     /* in oneDNN's primitives (convolutions, pooling) */
    double library_flops; /* 2 multiply-adds of those convolutions */
    double kernel_s;      /* in every other operation */
} dp_cpu_profile;

dp_cpu_profile dp_cpu_device_profile(const dp_device *d);

/* The cores this process may run on (taskset and cgroup CPU sets respected). */
int dp_cpu_cores(void);

/* Sets how many threads each GEMM may use. OpenBLAS's count is process-wide and its thread pool
 * serves one caller at a time, so with several workers each gets 1 thread. Call it while no
 * step runs. */
void dp_cpu_set_blas_threads(int threads);

/* CPU seconds OpenBLAS's pool threads have run since the process began (the backend table's
 * helper_cpu_seconds). */
double dp_cpu_blas_pool_seconds(void);

/* The machine's SGEMM rate in FLOP/s on all the process's cores: the best of a few large
 * SGEMMs (a fraction of a second). Call it while no step runs; 0 when out of memory. */
double dp_cpu_measure_sgemm(void);

#endif
