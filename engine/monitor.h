/* monitor.h -- every device of a run as the dashboard shows it: this process's, read from its
 * metrics, and under mpirun the other processes' too, which each sends rank 0 when asked (from
 * a thread of its own, off the workers' path).
 *
 * Views travel between processes as bytes: the processes of a run are the same program on
 * machines of one architecture. */
#ifndef DP_MONITOR_H
#define DP_MONITOR_H

#include "engine/gpumon.h"
#include "engine/metrics.h"
#include "engine/trainer.h"

typedef struct dp_device_view {
    char name[96];          /* "cpu:0"; "node1/cpu:0" in a world of several processes */
    char model[64];         /* "CPU", "NVIDIA H200" */
    char bus_id[32];        /* a GPU of this process, for NVML here; "" otherwise */
    dp_device_metrics m;
    float loss_hist[DP_HISTORY], util_hist[DP_HISTORY]; /* oldest first */
    int hist_n;
    dp_util_series util;    /* utilisation over the run; its times (t0, pending_end) are on
                             * this process's dp_now_s() clock, another process's included */
    double read_at;         /* dp_now_s() of the process that read the view, as it did */
    bool gpu_read;          /* `gpu` was read by the device's own process */
    dp_gpu_reading gpu;
} dp_device_view;

/* Device i of this process. */
void dp_device_view_read(dp_trainer *t, int i, dp_device_view *v);

typedef struct dp_monitor dp_monitor;

/* Every process of the run calls it, after making its trainer; `on` is rank 0's (a dashboard
 * is shown) in every process. The other ranks start the thread that answers rank 0. NULL in a
 * world of one or when off; fails when the thread cannot start. */
int dp_monitor_start(dp_trainer *t, bool on, dp_monitor **out, dp_err *err);
/* Rank 0: the other processes' devices, rank by rank, into v[max] (the first max), as their
 * last answers had them (a new question goes out when all have answered: never waits); returns
 * how many there are. */
int dp_monitor_fetch(dp_monitor *m, dp_device_view *v, int max);
/* Rank 0: tells the others the dashboard has closed. Ranks > 0: waits for that. Then frees
 * m. Called once the run has ended well (under mpirun a failed run ends every process at once,
 * before anything is freed). */
void dp_monitor_stop(dp_monitor *m);

#endif
