/* control.c -- the run's requests and published status, under one lock. */
#include "engine/control.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"

struct dp_control {
    pthread_mutex_t lock;
    pthread_cond_t changed;  /* broadcast when paused or quit change */
    dp_control_status st;    /* everything a view sees */
    bool checkpoint;         /* asked for, not yet taken */
    /* The switch request: pending from dp_control_request_switch until the plan in use
     * reflects it. Each request gets a new number; the loop remembers the one it took. */
    bool switch_pending;
    dp_plan_request switch_to;
    unsigned long switch_seq, taken_seq;
};

dp_control *dp_control_create(long total_steps, long epochs)
{
    dp_control *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->changed, NULL);
    c->st.total_steps = total_steps;
    c->st.epochs = epochs;
    c->st.test_accuracy = -1;
    c->st.started = dp_now_s();
    return c;
}

void dp_control_destroy(dp_control *c)
{
    if (!c)
        return;
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->changed);
    free(c);
}

void dp_control_snapshot(dp_control *c, dp_control_status *out)
{
    pthread_mutex_lock(&c->lock);
    *out = c->st;
    pthread_mutex_unlock(&c->lock);
}

dp_plan_request dp_control_switch_base(dp_control *c)
{
    pthread_mutex_lock(&c->lock);
    dp_plan_request base = c->switch_pending ? c->switch_to : c->st.request;
    pthread_mutex_unlock(&c->lock);
    return base;
}

void dp_control_request_switch(dp_control *c, const dp_plan_request *req)
{
    pthread_mutex_lock(&c->lock);
    c->switch_to = *req;
    c->switch_pending = true;
    c->switch_seq++;
    pthread_mutex_unlock(&c->lock);
}

bool dp_control_toggle_pause(dp_control *c)
{
    pthread_mutex_lock(&c->lock);
    bool paused = c->st.paused = !c->st.paused;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
    return paused;
}

void dp_control_request_quit(dp_control *c)
{
    pthread_mutex_lock(&c->lock);
    c->st.quit = true;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
}

bool dp_control_request_checkpoint(dp_control *c)
{
    pthread_mutex_lock(&c->lock);
    bool can = c->checkpoint = c->st.can_checkpoint;
    pthread_mutex_unlock(&c->lock);
    return can;
}

void dp_control_set_can_checkpoint(dp_control *c, bool can)
{
    pthread_mutex_lock(&c->lock);
    c->st.can_checkpoint = can;
    pthread_mutex_unlock(&c->lock);
}

bool dp_control_quit_requested(dp_control *c)
{
    pthread_mutex_lock(&c->lock);
    bool quit = c->st.quit;
    pthread_mutex_unlock(&c->lock);
    return quit;
}

bool dp_control_paused(dp_control *c)
{
    pthread_mutex_lock(&c->lock);
    bool paused = c->st.paused;
    pthread_mutex_unlock(&c->lock);
    return paused;
}

/* A signal sets *stop without the lock, so the wait is bounded rather than woken by it. */
void dp_control_wait_while_paused(dp_control *c, const atomic_int *stop, double max_s)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    long ns = until.tv_nsec + (long)(max_s * 1e9);
    until.tv_sec += ns / 1000000000L;
    until.tv_nsec = ns % 1000000000L;
    pthread_mutex_lock(&c->lock);
    if (c->st.paused && !c->st.quit && !atomic_load(stop))
        pthread_cond_timedwait(&c->changed, &c->lock, &until);
    pthread_mutex_unlock(&c->lock);
}

bool dp_control_take_switch(dp_control *c, dp_plan_request *req)
{
    pthread_mutex_lock(&c->lock);
    bool fresh = c->switch_pending && c->switch_seq != c->taken_seq;
    if (fresh) {
        *req = c->switch_to;
        c->taken_seq = c->switch_seq;
    }
    pthread_mutex_unlock(&c->lock);
    return fresh;
}

void dp_control_switch_applied(dp_control *c, const dp_plan_request *in_use, const char *text)
{
    pthread_mutex_lock(&c->lock);
    c->st.request = *in_use;
    c->st.pipeline = in_use->strategy == DP_STRATEGY_PP || in_use->strategy == DP_STRATEGY_HYBRID;
    snprintf(c->st.plan, sizeof c->st.plan, "%s", text);
    if (c->switch_pending && c->switch_seq == c->taken_seq) /* else a newer one waits */
        c->switch_pending = false;
    pthread_mutex_unlock(&c->lock);
}

bool dp_control_take_checkpoint(dp_control *c)
{
    pthread_mutex_lock(&c->lock);
    bool asked = c->checkpoint;
    c->checkpoint = false;
    pthread_mutex_unlock(&c->lock);
    return asked;
}

void dp_control_publish_step(dp_control *c, long step, long epoch, double loss, double lr,
                             double samples_per_s)
{
    pthread_mutex_lock(&c->lock);
    c->st.step = step;
    c->st.epoch = epoch;
    c->st.loss = loss;
    c->st.lr = lr;
    c->st.samples_per_s = samples_per_s;
    pthread_mutex_unlock(&c->lock);
}

void dp_control_publish_eval(dp_control *c, long step, double accuracy)
{
    pthread_mutex_lock(&c->lock);
    c->st.test_accuracy = accuracy;
    c->st.test_step = step;
    pthread_mutex_unlock(&c->lock);
}

void dp_control_finish(dp_control *c)
{
    pthread_mutex_lock(&c->lock);
    c->st.finished = true;
    pthread_mutex_unlock(&c->lock);
}

void dp_control_event(dp_control *c, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&c->lock);
    va_start(ap, fmt);
    vsnprintf(c->st.event, sizeof c->st.event, fmt, ap);
    va_end(ap);
    c->st.event_time = dp_now_s();
    pthread_mutex_unlock(&c->lock);
}
