/* gpumon.h -- GPU monitoring through NVML, loaded with dlopen("libnvidia-ml.so.1") and declared
 * here (no link-time dependency), so that a machine without the driver runs as before and every
 * reading says when it is not known. */
#ifndef DP_GPUMON_H
#define DP_GPUMON_H

#include <stdbool.h>

typedef struct dp_gpu_reading {
    bool util_valid, mem_valid, temp_valid, power_valid;
    unsigned util_pct;              /* the GPU's busy fraction over NVML's last sample period */
    unsigned long long mem_used, mem_total;
    unsigned temp_c;
    double power_w;
} dp_gpu_reading;

typedef struct dp_gpumon dp_gpumon;

/* Loads NVML and initialises it; NULL (with the reason in why[why_size]) where there is none. */
dp_gpumon *dp_gpumon_open(char *why, unsigned long why_size);
void dp_gpumon_close(dp_gpumon *m);

/* Reads the GPU at PCI bus id `bus_id` ("0000:3b:00.0"), or NVML's device `index` when bus_id is
 * NULL. Fields NVML cannot give are left invalid; returns -1 when the GPU is not found. */
int dp_gpumon_read(dp_gpumon *m, const char *bus_id, unsigned index, dp_gpu_reading *r,
                   char *name, unsigned long name_size);

#endif
