/* metrics.h -- per-device metric slots, written by the engine after each step and read by the
 * headless reporter (and later the dashboard) at its own pace.
 *
 * Each slot is owned by one writer (the thread that drives its device); readers take a copy
 * under the slot's lock and never hold it while doing anything else. */
#ifndef DP_METRICS_H
#define DP_METRICS_H

#include <pthread.h>
#include <stddef.h>

typedef struct dp_device_metrics {
    long step;              /* the step these numbers describe */
    char device[32];        /* "cpu:0" */
    char role[48];          /* "single", "replica 1", "stage 2 (layers 3-4)", "unused" */
    double loss;            /* mean loss of the samples this device computed it for */
    size_t mem_bytes;       /* held by the engine now */
    size_t mem_peak_bytes;
    size_t mem_total_bytes;
    size_t act_peak_bytes;  /* activations of the micro-batches held at once this step */
    double util;            /* busy time over step time, 0..1 */
    double compute_s;       /* seconds of this step spent computing */
    double comm_s;          /* ... communicating */
    double idle_s;          /* ... neither */
} dp_device_metrics;

typedef struct dp_metrics_slot {
    pthread_mutex_t lock;
    dp_device_metrics m;
} dp_metrics_slot;

typedef struct dp_metrics {
    int n_devices;
    dp_metrics_slot *slots;
} dp_metrics;

int dp_metrics_init(dp_metrics *ms, int n_devices);
void dp_metrics_free(dp_metrics *ms);
/* Replaces slot i with m (the slot's writer only). */
void dp_metrics_publish(dp_metrics *ms, int i, const dp_device_metrics *m);
/* Copies slot i. */
dp_device_metrics dp_metrics_read(dp_metrics *ms, int i);

#endif
