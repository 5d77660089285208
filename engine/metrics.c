/* metrics.c -- locked per-device slots. */
#include "engine/metrics.h"

#include <stdlib.h>

int dp_metrics_init(dp_metrics *ms, int n_devices)
{
    ms->slots = calloc((size_t)n_devices, sizeof *ms->slots);
    if (!ms->slots) {
        ms->n_devices = 0;
        return -1;
    }
    ms->n_devices = n_devices;
    for (int i = 0; i < n_devices; i++)
        pthread_mutex_init(&ms->slots[i].lock, NULL);
    return 0;
}

void dp_metrics_free(dp_metrics *ms)
{
    for (int i = 0; i < ms->n_devices; i++)
        pthread_mutex_destroy(&ms->slots[i].lock);
    free(ms->slots);
    ms->slots = NULL;
    ms->n_devices = 0;
}

void dp_metrics_publish(dp_metrics *ms, int i, const dp_device_metrics *m)
{
    pthread_mutex_lock(&ms->slots[i].lock);
    ms->slots[i].m = *m;
    pthread_mutex_unlock(&ms->slots[i].lock);
}

dp_device_metrics dp_metrics_read(dp_metrics *ms, int i)
{
    pthread_mutex_lock(&ms->slots[i].lock);
    dp_device_metrics m = ms->slots[i].m;
    pthread_mutex_unlock(&ms->slots[i].lock);
    return m;
}
