/* metrics.h -- what the engine tells the outside while it trains: per-device slots with a short
 * history and the last step's pipeline timeline, and the run's loss over all its steps.
 *
 * Each device slot is written by one writer (the thread that drives the device) and the run's
 * series by the coordinator; readers (headless reporting, the dashboard) take copies under the
 * lock and never hold it while doing anything else, so a worker never waits on a reader for
 * longer than a copy. */
#ifndef DP_METRICS_H
#define DP_METRICS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#define DP_HISTORY 256      /* steps of per-device history kept */
#define DP_TIMELINE_OPS 128 /* pipeline operations of the last step kept per device */
#define DP_SERIES_POINTS 2048
#define DP_SERIES_MARKS 64

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

/* One forward or backward of a micro-batch in the last step, in seconds from its start. */
typedef struct dp_timeline_op {
    char kind; /* 'F' or 'B' */
    int micro;
    float start, end;
} dp_timeline_op;

typedef struct dp_timeline {
    int n_ops;              /* recorded (at most DP_TIMELINE_OPS; later ones are dropped) */
    float step_s;           /* the step's length as this device saw it */
    dp_timeline_op ops[DP_TIMELINE_OPS];
} dp_timeline;

typedef struct dp_metrics_slot {
    pthread_mutex_t lock;
    dp_device_metrics m;
    dp_timeline timeline;
    float loss_hist[DP_HISTORY]; /* a ring: the last `hist_count` steps end at hist_next - 1 */
    float util_hist[DP_HISTORY];
    int hist_next, hist_count;
} dp_metrics_slot;

/* A whole run's loss, for a plot: at most DP_SERIES_POINTS points, each the mean of `stride`
 * consecutive steps (stride doubles whenever the points run out), and the steps where the
 * strategy changed. */
typedef struct dp_series {
    long first_step;        /* step of points[0] */
    int stride, n_points;
    float points[DP_SERIES_POINTS];
    long marks[DP_SERIES_MARKS];
    int n_marks;
    /* the point being filled */
    double pending_sum;
    int pending;
} dp_series;

typedef struct dp_metrics {
    int n_devices;
    dp_metrics_slot *slots;
    pthread_mutex_t series_lock;
    dp_series series;
} dp_metrics;

int dp_metrics_init(dp_metrics *ms, int n_devices);
void dp_metrics_free(dp_metrics *ms);

/* Replaces slot i's numbers with m and appends its loss and utilisation to the history
 * (the slot's writer only). */
void dp_metrics_publish(dp_metrics *ms, int i, const dp_device_metrics *m);
/* Replaces slot i's timeline. */
void dp_metrics_publish_timeline(dp_metrics *ms, int i, const dp_timeline *t);
/* Copies slot i. */
dp_device_metrics dp_metrics_read(dp_metrics *ms, int i);
/* Copies slot i's history, oldest first, into loss[] and util[] (DP_HISTORY each, either may
 * be NULL); returns how many steps it holds. */
int dp_metrics_history(dp_metrics *ms, int i, float *loss, float *util);
/* Copies slot i's last timeline. */
void dp_metrics_timeline(dp_metrics *ms, int i, dp_timeline *t);

/* Appends step `step`'s loss to the run's series (the coordinator only); `switched` marks a
 * change of strategy before it. */
void dp_metrics_record_step(dp_metrics *ms, long step, double loss, bool switched);
/* Copies the run's series. */
void dp_metrics_series(dp_metrics *ms, dp_series *out);

#endif
