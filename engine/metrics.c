/* metrics.c -- locked per-device slots with history rings, and the run's loss series. */
#include "engine/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

void dp_metrics_publish(dp_metrics *ms, int i, const dp_device_metrics *m)
{
    dp_metrics_slot *s = &ms->slots[i];
    pthread_mutex_lock(&s->lock);
    s->m = *m;
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

void dp_metrics_record_step(dp_metrics *ms, long step, double loss, bool switched)
{
    dp_series *s = &ms->series;
    pthread_mutex_lock(&ms->series_lock);
    if (s->n_points == 0 && s->pending == 0)
        s->first_step = step;
    if (switched) {
        if (s->n_marks == DP_SERIES_MARKS) { /* keep the latest marks */
            memmove(s->marks, s->marks + 1, (DP_SERIES_MARKS - 1) * sizeof *s->marks);
            s->n_marks--;
        }
        s->marks[s->n_marks++] = step;
    }
    if (isfinite(loss)) {
        s->pending_sum += loss;
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
    pthread_mutex_unlock(&ms->series_lock);
}

void dp_metrics_series(dp_metrics *ms, dp_series *out)
{
    pthread_mutex_lock(&ms->series_lock);
    *out = ms->series;
    pthread_mutex_unlock(&ms->series_lock);
}
