/* backend_cpu.h -- what only the CPU backend offers: the time its operations took. */
#ifndef DP_BACKEND_CPU_H
#define DP_BACKEND_CPU_H

#include "engine/backend.h"

/* Time a CPU device spent inside its operations since it was made. */
typedef struct dp_cpu_profile {
    double gemm_s;        /* in GEMMs (dnnl_sgemm) */
    double gemm_flops;    /* 2 m n k summed over those GEMMs */
    double library_s;     /* in oneDNN's primitives (convolutions, pooling) */
    double library_flops; /* 2 multiply-adds of those convolutions */
    double kernel_s;      /* in every other operation */
    int references;       /* oneDNN primitives made that are its slow reference implementation */
} dp_cpu_profile;

dp_cpu_profile dp_cpu_device_profile(const dp_device *d);

/* The cores this process may run on (taskset and cgroup CPU sets respected). */
int dp_cpu_cores(void);

/* Sets how many threads each device's operations (GEMMs, convolutions: oneDNN on an OpenMP team
 * per device thread) may use; the trainer gives each of several workers 1, since they share the
 * cores. Call it while no step runs. */
void dp_cpu_set_team_threads(int threads);

/* CPU seconds the OpenMP threads that run parts of the devices' operations (helpers) have run
 * since the process began (the backend table's helper_cpu_seconds). */
double dp_cpu_helper_seconds(void);

/* The machine's SGEMM rate in FLOP/s on all the process's cores: the best of a few large
 * SGEMMs (a fraction of a second, oneDNN's, as the devices' GEMMs). Call it while no step runs; 0 when out of memory. */
double dp_cpu_measure_sgemm(void);

#endif
