/* timeline.h -- the pure parts of the dashboard's plots, tested without a terminal: a pipeline
 * stage's operations merged into screen columns, its bubble, and a series squeezed into
 * columns. */
#ifndef DP_TUI_TIMELINE_H
#define DP_TUI_TIMELINE_H

#include "engine/metrics.h"

#define DP_TIMELINE_SEVERAL '*' /* a column where forward and backward share the time evenly */
#define DP_TIMELINE_IDLE '.'
#define DP_TIMELINE_BRIEF ':'   /* busy, but less than half the column */

/* Writes cols characters into out (not terminated): what stage timeline `tl` did in each
 * column of a step `span` seconds long. A column shows the kind that ran most of its busy time
 * ('F' forward, 'B' backward; lower case when the operation that ran longest in it was an odd
 * micro-batch, so that neighbouring micro-batches stay apart), DP_TIMELINE_SEVERAL when neither
 * kind had more than half of it, DP_TIMELINE_BRIEF when the stage was busy less than half the
 * column, and DP_TIMELINE_IDLE when it ran nothing there. An operation of any length is
 * counted in every column it overlaps, so that short work never disappears. */
void dp_timeline_merge(const dp_timeline *tl, float span, int cols, char *out);

/* The fraction of a step `span` seconds long in which the stage ran no operation (0..1). */
double dp_timeline_bubble(const dp_timeline *tl, float span);
/* The ideal bubble of a pipeline of S stages and M micro-batches: (S-1)/(M+S-1). */
double dp_timeline_ideal_bubble(int stages, int micro);

/* The mean of the finite values of v[n] that fall in each of cols columns, into out[cols]
 * (NAN for a column with none); when n < cols each value gets cols/n columns. */
void dp_resample(const float *v, int n, int cols, float *out);

/* A utilisation series over the wall-clock span [t0, t1) (dp_now_s() seconds) in cols columns:
 * each column the mean of the bins it overlaps (the bin being filled included), weighted by
 * the overlap; NAN where none has a value (before the device's first step, paused, unused).
 * Every device's chart spans the same time so. */
void dp_util_resample(const dp_util_series *u, double t0, double t1, int cols, float *out);

#endif
