/* metrics.c -- locked per-device slots with history rings, and the run's loss series. */
#include "engine/metrics.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"

const char *const dp_activity_names[DP_ACTIVITY_N] = {
    [DP_ACTIVITY_IDLE] = "the next command", [DP_ACTIVITY_COMPUTE] = "its own compute",
    [DP_ACTIVITY_LINK] = "a link", [DP_ACTIVITY_ALLREDUCE] = "an all-reduce",
    [DP_ACTIVITY_EVAL] = "evaluation",
};

int dp_metrics_init(dp_metrics *ms, int n_devices)
{
    memset(ms, 0, sizeof *ms);
    ms->slots = calloc((size_t)n_devices, sizeof *ms->slots);
    if (!ms->slots)
        return -1;
    ms->n_devices = n_devices;
    for (int i = 0; i < n_devices; i++)
        pthread_mutex_init(&ms->slots[i].lock, NULL);
    pthread_mutex_init(&ms->series_lock, NULL);
    ms->series.stride = 1;
    ms->gan.loss_g.stride = ms->gan.d_real.stride = ms->gan.d_fake.stride = 1;
    return 0;
}

void dp_metrics_free(dp_metrics *ms)
{
    if (!ms->slots)
        return;
    for (int i = 0; i < ms->n_devices; i++)
        pthread_mutex_destroy(&ms->slots[i].lock);
    pthread_mutex_destroy(&ms->series_lock);
    free(ms->slots);
    ms->slots = NULL;
    ms->n_devices = 0;
}

/* Closes the bin being filled into the next point, merging pairs of points first (bin_s
 * doubles) when they have run out. */
static void util_series_close_bin(dp_util_series *u)
{
    if (u->n_points == DP_UTIL_POINTS) { /* halve the resolution: merge pairs */
        for (int k = 0; k < DP_UTIL_POINTS / 2; k++) {
            float a = u->points[2 * k], b = u->points[2 * k + 1];
            u->points[k] = isnan(a) ? b : isnan(b) ? a : 0.5f * (a + b);
        }
        u->n_points = DP_UTIL_POINTS / 2;
        u->bin_s *= 2;
        /* the open bin's time so far is the first half of the new, wider one */
        u->pending_end = u->t0 + u->bin_s * (u->n_points + 1);
        return;
    }
    u->points[u->n_points++] =
        u->pending_wall > 0 ? (float)(u->pending_busy / u->pending_wall) : NAN;
    u->pending_busy = u->pending_wall = 0;
    u->pending_end = u->t0 + u->bin_s * (u->n_points + 1);
}

void dp_util_series_add(dp_util_series *u, double end, double wall, double util)
{
    if (!(wall > 0) || !isfinite(end) || !isfinite(util))
        return;
    double start = end - wall;
    if (u->bin_s <= 0) {
        u->t0 = start;
        u->bin_s = 1.0;
        u->pending_end = u->t0 + u->bin_s;
    }
    if (start < u->t0 + u->bin_s * u->n_points) /* overlaps closed bins: only the rest counts */
        start = u->t0 + u->bin_s * u->n_points;
    while (start < end) { /* each bin the step crosses gets the part of it inside */
        while (start >= u->pending_end)
            util_series_close_bin(u);
        double part = (end < u->pending_end ? end : u->pending_end) - start;
        u->pending_busy += util * part;
        u->pending_wall += part;
        start += part;
    }
}

void dp_metrics_publish(dp_metrics *ms, int i, const dp_device_metrics *m)
{
    dp_metrics_slot *s = &ms->slots[i];
    double wall = m->compute_s + m->comm_s + m->idle_s;
    pthread_mutex_lock(&s->lock);
    s->m = *m;
    if (!(wall > 0)) { /* no step: a device the plan leaves unused adds no history */
        pthread_mutex_unlock(&s->lock);
        return;
    }
    dp_util_series_add(&s->util_series, dp_now_s(), wall, m->util);
    s->loss_hist[s->hist_next] = (float)m->loss;
    s->util_hist[s->hist_next] = (float)m->util;
    s->hist_next = (s->hist_next + 1) % DP_HISTORY;
    if (s->hist_count < DP_HISTORY)
        s->hist_count++;
    pthread_mutex_unlock(&s->lock);
}

void dp_metrics_publish_timeline(dp_metrics *ms, int i, const dp_timeline *t)
{
    dp_metrics_slot *s = &ms->slots[i];
    pthread_mutex_lock(&s->lock);
    s->timeline = *t;
    pthread_mutex_unlock(&s->lock);
}

dp_device_metrics dp_metrics_read(dp_metrics *ms, int i)
{
    pthread_mutex_lock(&ms->slots[i].lock);
    dp_device_metrics m = ms->slots[i].m;
    pthread_mutex_unlock(&ms->slots[i].lock);
    return m;
}

int dp_metrics_history(dp_metrics *ms, int i, float *loss, float *util)
{
    dp_metrics_slot *s = &ms->slots[i];
    pthread_mutex_lock(&s->lock);
    int n = s->hist_count;
    int first = (s->hist_next - n + DP_HISTORY) % DP_HISTORY;
    for (int k = 0; k < n; k++) {
        int at = (first + k) % DP_HISTORY;
        if (loss)
            loss[k] = s->loss_hist[at];
        if (util)
            util[k] = s->util_hist[at];
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

void dp_metrics_timeline(dp_metrics *ms, int i, dp_timeline *t)
{
    pthread_mutex_lock(&ms->slots[i].lock);
    *t = ms->slots[i].timeline;
    pthread_mutex_unlock(&ms->slots[i].lock);
}

void dp_metrics_util_series(dp_metrics *ms, int i, dp_util_series *out)
{
    pthread_mutex_lock(&ms->slots[i].lock);
    *out = ms->slots[i].util_series;
    pthread_mutex_unlock(&ms->slots[i].lock);
}

void dp_metrics_clear_history(dp_metrics *ms, int i)
{
    dp_metrics_slot *s = &ms->slots[i];
    pthread_mutex_lock(&s->lock);
    s->hist_next = s->hist_count = 0;
    memset(&s->util_series, 0, sizeof s->util_series);
    memset(&s->timeline, 0, sizeof s->timeline);
    pthread_mutex_unlock(&s->lock);
}

void dp_metrics_set_activity(dp_metrics *ms, int i, dp_activity a)
{
    atomic_store_explicit(&ms->slots[i].activity, (int)a, memory_order_relaxed);
}

dp_activity dp_metrics_activity(dp_metrics *ms, int i)
{
    return (dp_activity)atomic_load_explicit(&ms->slots[i].activity, memory_order_relaxed);
}

/* Appends one step's value to s (under the series lock). */
static void series_add(dp_series *s, long step, double v, bool switched)
{
    if (s->n_points == 0 && s->pending == 0)
        s->first_step = step;
    s->last_step = step;
    s->steps++;
    s->last = isfinite(v) ? v : NAN;
    if (switched) {
        if (s->n_marks == DP_SERIES_MARKS) { /* keep the latest marks */
            memmove(s->marks, s->marks + 1, (DP_SERIES_MARKS - 1) * sizeof *s->marks);
            s->n_marks--;
        }
        s->marks[s->n_marks++] = step;
    }
    if (isfinite(v)) {
        s->pending_sum += v;
        s->pending++;
    }
    if (s->pending == s->stride) {
        if (s->n_points == DP_SERIES_POINTS) { /* halve the resolution: merge pairs */
            for (int k = 0; k < DP_SERIES_POINTS / 2; k++)
                s->points[k] = 0.5f * (s->points[2 * k] + s->points[2 * k + 1]);
            s->n_points = DP_SERIES_POINTS / 2;
            s->stride *= 2;
        }
        if (s->pending == s->stride) {
            s->points[s->n_points++] = (float)(s->pending_sum / s->pending);
            s->pending_sum = 0.0;
            s->pending = 0;
        }
    }
}

void dp_metrics_record_step(dp_metrics *ms, long step, double loss, bool switched)
{
    pthread_mutex_lock(&ms->series_lock);
    series_add(&ms->series, step, loss, switched);
    pthread_mutex_unlock(&ms->series_lock);
}

void dp_metrics_record_gan(dp_metrics *ms, long step, double loss_g, double d_real,
                           double d_fake, double d_fake_after)
{
    dp_gan_series *g = &ms->gan;
    pthread_mutex_lock(&ms->series_lock);
    const dp_series *d = &ms->series;
    /* the strategy mark of this step, as dp_metrics_record_step put it on D's series */
    bool switched = d->n_marks > 0 && d->marks[d->n_marks - 1] == step;
    series_add(&g->loss_g, step, loss_g, switched);
    series_add(&g->d_real, step, d_real, switched);
    series_add(&g->d_fake, step, d_fake, switched);
    g->steps++;
    g->last_step = step;
    g->last_loss_d = d->last_step == step ? d->last : NAN;
    g->last_loss_g = loss_g;
    g->last_d_real = d_real;
    g->last_d_fake = d_fake;
    g->last_d_fake_after = d_fake_after;
    pthread_mutex_unlock(&ms->series_lock);
}

void dp_metrics_series_gan(dp_metrics *ms, dp_series *series, dp_gan_series *gan)
{
    pthread_mutex_lock(&ms->series_lock);
    *series = ms->series;
    if (gan)
        *gan = ms->gan;
    pthread_mutex_unlock(&ms->series_lock);
}

int dp_series_resample(const dp_series *s, int w, float *out)
{
    int n = s->n_points;
    if (w <= 0 || n <= 0)
        return 0;
    if (n <= w) {
        memcpy(out, s->points, (size_t)n * sizeof *out);
        return n;
    }
    for (int k = 0; k < w; k++) {
        int from = (int)((long)k * n / w), to = (int)((long)(k + 1) * n / w);
        double sum = 0;
        for (int i = from; i < to; i++)
            sum += s->points[i];
        out[k] = (float)(sum / (to - from));
    }
    return w;
}

void dp_metrics_series(dp_metrics *ms, dp_series *out)
{
    pthread_mutex_lock(&ms->series_lock);
    *out = ms->series;
    pthread_mutex_unlock(&ms->series_lock);
}
