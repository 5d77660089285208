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
    size_t mem_total_bytes; /* a GPU's memory; 0 for a CPU device (it shares the host's) */
    size_t act_peak_bytes;  /* activations of the micro-batches held at once this step */
    double util;            /* 0..1. CPU: the CPU time of the device's threads (its own and its
                             * share of the BLAS threads') over `threads` x the step's wall time;
                             * GPU: time its stream was busy over the step's wall time */
    int threads;            /* CPU: the cores the device's work may use; GPU: 0 */
    double cpu_s;           /* CPU: CPU seconds the device's threads ran this step; GPU: 0 */
    double compute_s;       /* wall seconds of this step inside kernels (on a CPU device this
                             * includes time its thread waited for a core) */
    double comm_s;          /* ... communicating */
    double idle_s;          /* ... neither */
    double flops;           /* floating-point operations of the GEMMs it ran this step */
    double peak_flops;      /* the device's peak FLOP/s for the precision in use; 0: unknown */
    double mfu;             /* flops / (step wall time x peak_flops), 0..1; < 0: unknown */
} dp_device_metrics;

/* What a device's thread is doing right now, for a view that finds the run stalled. */
typedef enum dp_activity {
    DP_ACTIVITY_IDLE,       /* between steps: waiting for the next command */
    DP_ACTIVITY_COMPUTE,    /* running its layers or the optimizer */
    DP_ACTIVITY_LINK,       /* waiting for a neighbouring stage's activations or gradients */
    DP_ACTIVITY_ALLREDUCE,  /* waiting for the gradients' all-reduce among replicas */
    DP_ACTIVITY_EVAL,       /* evaluating */
    DP_ACTIVITY_N
} dp_activity;
extern const char *const dp_activity_names[DP_ACTIVITY_N]; /* "idle", "compute", "a link", ... */

/* A device's utilisation over the whole run, by wall time: each point the mean utilisation
 * over `bin_s` seconds (bin_s doubles whenever the points run out); NAN for a bin in which the
 * device ran no step (paused, evaluating, unused). */
#define DP_UTIL_POINTS 512
typedef struct dp_util_series {
    double t0;              /* dp_now_s() where points[0] begins */
    double bin_s;
    int n_points;
    float points[DP_UTIL_POINTS];
    double pending_busy, pending_wall, pending_end; /* the bin being filled */
} dp_util_series;

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
    dp_util_series util_series;
    _Atomic int activity;   /* a dp_activity, set by the slot's writer without the lock */
} dp_metrics_slot;

/* A whole run's loss, for a plot: at most DP_SERIES_POINTS points, each the mean of `stride`
 * consecutive steps (stride doubles whenever the points run out), and the steps where the
 * strategy changed. */
typedef struct dp_series {
    long first_step;        /* step of points[0] */
    long last_step;         /* the last step recorded (its point may still be filling) */
    long steps;             /* steps recorded (finite loss or not) */
    double last;            /* the last step's value as recorded (NAN when not finite) */
    int stride, n_points;
    float points[DP_SERIES_POINTS];
    long marks[DP_SERIES_MARKS];
    int n_marks;
    /* the point being filled */
    double pending_sum;
    int pending;
} dp_series;

/* A GAN's figures over its steps, beside D's loss (the run's series, dp_metrics.series): G's
 * loss, D(x) (D's mean sigmoid output on the real batch) and D(G(z)) (on the fakes, before D's
 * update), each a series as above (with the same marks); and the last step's values exactly,
 * D's loss and D(G(z)) after D's update included, as the headless progress line prints them. */
typedef struct dp_gan_series {
    long steps;             /* GAN steps recorded (0: not a GAN, or before its first step) */
    dp_series loss_g, d_real, d_fake;
    long last_step;
    double last_loss_d, last_loss_g, last_d_real, last_d_fake, last_d_fake_after;
} dp_gan_series;

typedef struct dp_metrics {
    int n_devices;
    dp_metrics_slot *slots;
    pthread_mutex_t series_lock; /* guards series and gan */
    dp_series series;
    dp_gan_series gan;
} dp_metrics;

int dp_metrics_init(dp_metrics *ms, int n_devices);
void dp_metrics_free(dp_metrics *ms);

/* Replaces slot i's numbers with m and appends its loss and utilisation to the history and
 * the utilisation series, unless m is of no step (compute_s + comm_s + idle_s = 0: a device the
 * plan leaves unused). The slot's writer only. */
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
/* Adds a step of `wall` seconds ending at `end` (dp_now_s) with utilisation `util` to u: each
 * bin the step crosses gets the part of it inside; a bin no step touched stays NAN. A step that
 * begins before the last closed bin's end counts from there. */
void dp_util_series_add(dp_util_series *u, double end, double wall, double util);
/* Copies slot i's utilisation over the run. */
void dp_metrics_util_series(dp_metrics *ms, int i, dp_util_series *out);
/* Forgets slot i's history and utilisation series (a device the plan leaves unused). */
void dp_metrics_clear_history(dp_metrics *ms, int i);
/* What device i's thread does now (set by the slot's writer, read by anyone, no lock). */
void dp_metrics_set_activity(dp_metrics *ms, int i, dp_activity a);
dp_activity dp_metrics_activity(dp_metrics *ms, int i);

/* Appends step `step`'s loss to the run's series (the coordinator only); `switched` marks a
 * change of strategy before it. */
void dp_metrics_record_step(dp_metrics *ms, long step, double loss, bool switched);
/* Copies the run's series. */
void dp_metrics_series(dp_metrics *ms, dp_series *out);

/* Appends a GAN step's figures (the coordinator only, right after dp_metrics_record_step of
 * the same step, whose D loss and strategy mark they are paired with). */
void dp_metrics_record_gan(dp_metrics *ms, long step, double loss_g, double d_real,
                           double d_fake, double d_fake_after);
/* Copies the run's series and the GAN's figures in one hold of the lock, so that both are of
 * the same step (gan may be NULL; a run that is not a GAN leaves gan->steps 0). */
void dp_metrics_series_gan(dp_metrics *ms, dp_series *series, dp_gan_series *gan);
/* The whole of s's points in w values or fewer (pure, for a sparkline of a whole run):
 * n_points <= w copies them; more are cut into w runs of consecutive points, each the mean of
 * its run (run k covers points [k * n / w, (k + 1) * n / w)). Returns the values written. */
int dp_series_resample(const dp_series *s, int w, float *out);

#endif
