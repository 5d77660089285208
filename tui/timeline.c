/* timeline.c -- pipeline timelines and series fitted to screen columns. */
#include "tui/timeline.h"

#include <ctype.h>
#include <math.h>

/* Seconds of [a0, a1) that overlap [b0, b1). */
static double overlap(double a0, double a1, double b0, double b1)
{
    double lo = a0 > b0 ? a0 : b0, hi = a1 < b1 ? a1 : b1;
    return hi > lo ? hi - lo : 0;
}

/* One column [c0, c1): the character that stands for it. */
static char merge_column(const dp_timeline *tl, double c0, double c1)
{
    double fwd = 0, bwd = 0, longest = 0;
    const dp_timeline_op *top = 0;
    for (int k = 0; k < tl->n_ops; k++) {
        const dp_timeline_op *op = &tl->ops[k];
        double t = overlap(c0, c1, op->start, op->end);
        if (t <= 0)
            continue;
        if (op->kind == 'F')
            fwd += t;
        else
            bwd += t;
        if (t > longest) {
            longest = t;
            top = op;
        }
    }
    double busy = fwd + bwd;
    if (!top)
        return DP_TIMELINE_IDLE;
    if (busy < 0.5 * (c1 - c0))
        return DP_TIMELINE_BRIEF;
    char kind;
    if (fwd > 0.5 * busy)
        kind = 'F';
    else if (bwd > 0.5 * busy)
        kind = 'B';
    else
        return DP_TIMELINE_SEVERAL;
    if (top->kind != kind) /* the longest is of the other kind: the case follows the majority */
        return kind;
    return top->micro % 2 ? (char)tolower(kind) : kind;
}

void dp_timeline_merge(const dp_timeline *tl, float span, int cols, char *out)
{
    for (int c = 0; c < cols; c++)
        out[c] = span > 0 ? merge_column(tl, (double)span * c / cols,
                                         (double)span * (c + 1) / cols)
                          : DP_TIMELINE_IDLE;
}

double dp_timeline_bubble(const dp_timeline *tl, float span)
{
    if (span <= 0)
        return 0;
    double busy = 0;
    for (int k = 0; k < tl->n_ops; k++) /* a stage runs one operation at a time */
        busy += overlap(0, span, tl->ops[k].start, tl->ops[k].end);
    double idle = 1.0 - busy / span;
    return idle < 0 ? 0 : idle;
}

double dp_timeline_ideal_bubble(int stages, int micro)
{
    if (stages < 1 || micro < 1)
        return 0;
    return (double)(stages - 1) / (double)(micro + stages - 1);
}

void dp_resample(const float *v, int n, int cols, float *out)
{
    for (int c = 0; c < cols; c++) {
        int i0 = (int)((long)c * n / cols), i1 = (int)((long)(c + 1) * n / cols);
        if (i1 <= i0)
            i1 = i0 + 1; /* fewer values than columns: each value spans several */
        double sum = 0;
        int k = 0;
        for (int i = i0; i < i1 && i < n; i++)
            if (isfinite(v[i])) {
                sum += v[i];
                k++;
            }
        out[c] = k ? (float)(sum / k) : NAN;
    }
}

/* Point k of u, the bin being filled counting as point n_points. */
static float util_point(const dp_util_series *u, int k)
{
    if (k < u->n_points)
        return u->points[k];
    return u->pending_wall > 0 ? (float)(u->pending_busy / u->pending_wall) : NAN;
}

void dp_util_resample(const dp_util_series *u, double t0, double t1, int cols, float *out)
{
    for (int c = 0; c < cols; c++) {
        out[c] = NAN;
        if (!(t1 > t0) || !(u->bin_s > 0))
            continue;
        double a = t0 + (t1 - t0) * c / cols, b = t0 + (t1 - t0) * (c + 1) / cols;
        long k0 = (long)floor((a - u->t0) / u->bin_s), k1 = (long)floor((b - u->t0) / u->bin_s);
        double sum = 0, weight = 0;
        for (long k = k0 < 0 ? 0 : k0; k <= k1 && k <= u->n_points; k++) {
            float v = util_point(u, (int)k);
            double w = overlap(a, b, u->t0 + u->bin_s * k, u->t0 + u->bin_s * (k + 1));
            if (isfinite(v) && w > 0) {
                sum += w * v;
                weight += w;
            }
        }
        if (weight > 0)
            out[c] = (float)(sum / weight);
    }
}
