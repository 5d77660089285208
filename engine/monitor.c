/* monitor.c -- the devices of every process, for rank 0's dashboard (monitor.h). */
#include "engine/monitor.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "engine/world.h"

void dp_device_view_read(dp_trainer *t, int i, dp_device_view *v)
{
    const dp_device *d = dp_trainer_device(t, i);
    memset(v, 0, sizeof *v);
    if (dp_world_size() > 1)
        snprintf(v->name, sizeof v->name, "%s/%s", dp_world_host(), d->name);
    else
        snprintf(v->name, sizeof v->name, "%s", d->name);
    snprintf(v->model, sizeof v->model, "%s", d->model);
    snprintf(v->bus_id, sizeof v->bus_id, "%s", d->bus_id);
    dp_metrics *ms = dp_trainer_metrics(t);
    v->m = dp_metrics_read(ms, i);
    v->hist_n = dp_metrics_history(ms, i, v->loss_hist, v->util_hist);
    dp_metrics_util_series(ms, i, &v->util);
    v->read_at = dp_now_s();
}

/* Moves a view read by another process (on its machine's clock) onto this one's: as if read
 * now (the question's round trip, well under a bin of the series, is not counted). */
static void to_local_clock(dp_device_view *v)
{
    double shift = dp_now_s() - v->read_at;
    v->util.t0 += shift;
    v->util.pending_end += shift;
    v->read_at += shift;
}

struct dp_monitor {
    dp_trainer *t;
    dp_world_service *service;
    int n_devices;          /* in each process (every process has as many) */
    dp_device_view *views;  /* ranks > 0: an answer [n_devices]; rank 0: the answers being
                               received [(size - 1) * n_devices] ... */
    dp_device_view *shown;  /* ... and the last ones received (rank 0) */
    pthread_t thread;       /* ranks > 0 */
};

/* Ranks > 0: answers rank 0 with this process's devices until it says the dashboard closed.
 * The GPUs are read with NVML here (rank 0 cannot see another machine's), once a second. */
static void *answer_main(void *arg)
{
    dp_monitor *m = arg;
    dp_gpumon *mon = NULL;
    for (int i = 0; i < m->n_devices && !mon; i++)
        if (dp_trainer_device(m->t, i)->bus_id[0])
            mon = dp_gpumon_open(NULL, 0);
    dp_gpu_reading gpu[DP_MAX_DEVICES] = { 0 };
    double last_read = -1e9;
    while (dp_world_question(m->service)) {
        bool read_now = mon && dp_now_s() - last_read >= 1.0;
        for (int i = 0; i < m->n_devices; i++) {
            dp_device_view *v = &m->views[i];
            dp_device_view_read(m->t, i, v);
            if (read_now && dp_gpumon_read(mon, v->bus_id, 0, &gpu[i], NULL, 0) < 0)
                memset(&gpu[i], 0, sizeof gpu[i]);
            v->gpu = gpu[i];
            v->gpu_read = true;
            v->bus_id[0] = '\0'; /* another machine's bus */
        }
        if (read_now)
            last_read = dp_now_s();
        dp_world_answer(m->service, m->views, m->n_devices * (int)sizeof *m->views);
    }
    dp_gpumon_close(mon);
    return NULL;
}

int dp_monitor_start(dp_trainer *t, bool on, dp_monitor **out, dp_err *err)
{
    *out = NULL;
    if (!on || dp_world_size() == 1)
        return 0;
    dp_monitor *m = calloc(1, sizeof *m);
    int n = dp_trainer_device_count(t);
    bool root = dp_world_rank() == 0;
    size_t views = root ? (size_t)(dp_world_size() - 1) * (size_t)n : (size_t)n;
    if (!m || !(m->views = calloc(views, sizeof *m->views)) ||
        (root && !(m->shown = calloc(views, sizeof *m->shown)))) {
        if (m)
            free(m->views);
        free(m);
        return dp_fail(err, "out of memory for the dashboard's view of the other processes");
    }
    for (size_t i = 0; root && i < views; i++) /* until the first answers come */
        snprintf(m->shown[i].name, sizeof m->shown[i].name, "rank %zu",
                 1 + i / (size_t)n);
    m->t = t;
    m->n_devices = n;
    m->service = dp_world_service_create();
    if (!root && pthread_create(&m->thread, NULL, answer_main, m) != 0) {
        dp_world_service_destroy(m->service);
        free(m->views);
        free(m);
        return dp_fail(err, "cannot start the thread that reports to rank 0's dashboard");
    }
    *out = m;
    return 0;
}

int dp_monitor_fetch(dp_monitor *m, dp_device_view *v, int max)
{
    if (!m)
        return 0;
    int n = (dp_world_size() - 1) * m->n_devices;
    if (dp_world_ask(m->service, m->views, m->n_devices * (int)sizeof *m->views)) {
        memcpy(m->shown, m->views, (size_t)n * sizeof *m->shown);
        for (int i = 0; i < n; i++)
            to_local_clock(&m->shown[i]);
    }
    memcpy(v, m->shown, (size_t)(n < max ? n : max) * sizeof *v);
    return n;
}

void dp_monitor_stop(dp_monitor *m)
{
    if (!m)
        return;
    if (dp_world_rank() == 0)
        dp_world_service_end(m->service);
    else
        pthread_join(m->thread, NULL);
    dp_world_service_destroy(m->service);
    free(m->views);
    free(m->shown);
    free(m);
}
