/* control.c -- the run's requests and published status, under one lock. */
#include "engine/control.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"

/* The recent steps, for the rate and the ETA: at most this many (the window is then shorter
 * than DP_RATE_WINDOW_S, over so many steps that the rate is steady anyway). */
enum { RING = 1024, MEDIAN_OF = 31 };

/* A step in the ring: when it ended on the training clock, its rows and wall time. */
typedef struct step_mark {
    double t_end, seconds;
    int rows;
} step_mark;

struct dp_control {
    pthread_mutex_t lock;
    pthread_cond_t changed;  /* broadcast when paused or quit change */
    dp_control_status st;    /* everything a view sees (active_s, samples_per_s and eta_s
                              * brought up to date by the snapshot) */
    bool checkpoint;         /* asked for, not yet taken */
    /* The switch request: pending from dp_control_request_switch until the plan in use
     * reflects it. Each request gets a new number; the loop remembers the one it took. */
    bool switch_pending;
    dp_plan_request switch_to;
    unsigned long switch_seq, taken_seq;
    /* ---- the run's clocks, written by the loop ---- */
    double (*now)(void *arg);
    void *now_arg;
    dp_run_schedule sched;
    double state_since;      /* when st.state was entered */
    double paused_s;         /* pauses that ended */
    double train_base;       /* the training clock: time in STARTING or TRAINING states that
                              * ended, plus the current one's since train_since */
    double train_since;
    step_mark ring[RING];
    int ring_next, ring_count;
    double step_period;      /* training-clock seconds a step over the window (with what runs
                              * between steps); 0: no step yet */
    double eval_began, eval_s; /* the evaluation in progress; the complete ones' total time */
    long evals_timed;
    double eta_at;           /* when st.eta_s was computed */
    dp_control_samples samples; /* a GAN's latest, published by the loop */
    bool advice_asked;       /* by a view, not yet taken */
    dp_advice_table advice;  /* the latest search's (advice.c: [DP_ADVICE_MAX], or NULL) */
};

static double system_clock(void *arg)
{
    (void)arg;
    return dp_now_s();
}

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
    c->st.eta_s = -1;
    c->st.last_eval.step = c->st.best_eval.step = -1;
    c->now = system_clock;
    c->st.started = c->state_since = c->train_since = c->eta_at = dp_now_s();
    return c;
}

void dp_control_destroy(dp_control *c)
{
    if (!c)
        return;
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->changed);
    dp_control_samples_free(&c->samples);
    free(c->advice.c);
    free(c);
}

bool dp_control_request_advice(dp_control *c)
{
    pthread_mutex_lock(&c->lock);
    bool asked = !c->st.advising && !c->st.finished;
    if (asked)
        c->advice_asked = c->st.advising = true;
    pthread_mutex_unlock(&c->lock);
    return asked;
}

bool dp_control_take_advice(dp_control *c)
{
    pthread_mutex_lock(&c->lock);
    bool asked = c->advice_asked;
    c->advice_asked = false;
    pthread_mutex_unlock(&c->lock);
    return asked;
}

void dp_control_advice_begins(dp_control *c)
{
    pthread_mutex_lock(&c->lock);
    c->st.advising = true;
    pthread_mutex_unlock(&c->lock);
}

int dp_control_publish_advice(dp_control *c, const dp_advice_table *t)
{
    int rc = 0;
    pthread_mutex_lock(&c->lock);
    if (!c->advice.c)
        c->advice.c = malloc(DP_ADVICE_MAX * sizeof *c->advice.c);
    if (c->advice.c && t->n <= DP_ADVICE_MAX) {
        dp_advice *keep = c->advice.c;
        c->advice = *t;
        c->advice.c = keep;
        memcpy(keep, t->c, (size_t)t->n * sizeof *keep);
        c->st.advice_generation++;
    } else {
        rc = -1;
    }
    c->st.advising = false;
    pthread_mutex_unlock(&c->lock);
    return rc;
}

bool dp_control_copy_advice(dp_control *c, dp_advice_table *out, unsigned long *generation)
{
    pthread_mutex_lock(&c->lock);
    bool newer = c->st.advice_generation > *generation && c->advice.c;
    if (newer) {
        dp_advice *keep = out->c;
        *out = c->advice;
        out->c = keep;
        memcpy(keep, c->advice.c, (size_t)c->advice.n * sizeof *keep);
        *generation = c->st.advice_generation;
    }
    pthread_mutex_unlock(&c->lock);
    return newer;
}

static bool training(dp_run_state s)
{
    return s == DP_STATE_STARTING || s == DP_STATE_TRAINING;
}

/* Seconds since `started` less the pauses, at `now`. */
static double active_at(const dp_control *c, double now)
{
    double paused = c->paused_s + (c->st.state == DP_STATE_PAUSED ? now - c->state_since : 0);
    return now - c->st.started - paused;
}

void dp_control_snapshot(dp_control *c, dp_control_status *out)
{
    pthread_mutex_lock(&c->lock);
    *out = c->st;
    double now = c->now(c->now_arg);
    if (out->state != DP_STATE_FINISHED) { /* else frozen by dp_control_finish */
        out->active_s = active_at(c, now);
        if (out->state == DP_STATE_PAUSED)
            out->samples_per_s = 0;
        /* the ETA counts down while the run works, and stands still while it is paused */
        bool working = out->state == DP_STATE_TRAINING || out->state == DP_STATE_EVALUATING;
        if (out->eta_s >= 0 && working)
            out->eta_s = fmax(0.0, out->eta_s - (now - c->eta_at));
    }
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

void dp_control_set_clock(dp_control *c, double (*now)(void *arg), void *arg)
{
    pthread_mutex_lock(&c->lock);
    c->now = now;
    c->now_arg = arg;
    c->st.started = c->state_since = c->train_since = c->eta_at = now(arg);
    pthread_mutex_unlock(&c->lock);
}

/* ---- the loop's side: time accounting (all under the lock) ---- */

/* Changes the state at `now`, moving the time spent in the old one to its account. */
static void enter(dp_control *c, dp_run_state s, double now)
{
    dp_run_state old = c->st.state;
    if (old == s)
        return;
    if (training(old))
        c->train_base += now - c->train_since;
    if (old == DP_STATE_PAUSED)
        c->paused_s += now - c->state_since;
    if (training(s))
        c->train_since = now;
    if (s == DP_STATE_TRAINING && (old == DP_STATE_PAUSED || old == DP_STATE_EVALUATING))
        c->st.last_step_end = now; /* a stall is counted from here */
    c->st.state = s;
    c->state_since = now;
}

static double training_clock(const dp_control *c, double now)
{
    return c->train_base + (training(c->st.state) ? now - c->train_since : 0);
}

/* The rate over the steps that ended in the last DP_RATE_WINDOW_S s of training time (their
 * rows over their wall time), and the training time a step takes over them. */
static void measure_window(dp_control *c)
{
    const step_mark *newest = &c->ring[(c->ring_next + RING - 1) % RING];
    double rows = 0, seconds = 0, begin = newest->t_end;
    int n = 0;
    for (; n < c->ring_count; n++) {
        const step_mark *m = &c->ring[(c->ring_next + RING - 1 - n) % RING];
        if (n > 0 && m->t_end <= newest->t_end - DP_RATE_WINDOW_S)
            break;
        rows += m->rows;
        seconds += m->seconds;
        begin = m->t_end - m->seconds;
    }
    c->st.samples_per_s = seconds > 0 ? rows / seconds : 0;
    c->step_period = n > 0 ? (newest->t_end - begin) / n : 0;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median wall time of the last MEDIAN_OF steps. */
static double typical_step(const dp_control *c)
{
    double s[MEDIAN_OF];
    int n = c->ring_count < MEDIAN_OF ? c->ring_count : MEDIAN_OF;
    for (int i = 0; i < n; i++)
        s[i] = c->ring[(c->ring_next + RING - 1 - i) % RING].seconds;
    qsort(s, (size_t)n, sizeof *s, compare_doubles);
    return n ? (n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2])) : 0;
}

/* An evaluation's length: the mean of those measured, else a guess: the test split's forward
 * passes at a third of a training step's cost a sample. */
static double eval_length(const dp_control *c)
{
    if (c->evals_timed > 0)
        return c->eval_s / (double)c->evals_timed;
    double rate = c->st.samples_per_s;
    return rate > 0 ? (double)c->sched.test_samples / (3 * rate) : 0;
}

/* The ETA at `now`: the steps left at the recent step period, and the evaluations left (the
 * rest of the current one included) at their length. */
static void estimate(dp_control *c, double now)
{
    c->eta_at = now;
    if (c->ring_count == 0) {
        c->st.eta_s = -1;
        return;
    }
    const dp_control_status *st = &c->st;
    double evals = (double)dp_evals_remaining(st->step, st->total_steps,
                                              c->sched.steps_per_epoch, c->sched.eval_every);
    if (st->state == DP_STATE_EVALUATING)
        evals += st->eval_total > 0 ? 1.0 - (double)st->eval_done / st->eval_total : 1.0;
    long steps = st->total_steps > st->step ? st->total_steps - st->step : 0;
    c->st.eta_s = (double)steps * c->step_period + evals * eval_length(c);
}

/* ---- the loop's side: publishing ---- */

void dp_control_begin(dp_control *c, const dp_run_schedule *s)
{
    pthread_mutex_lock(&c->lock);
    double now = c->now(c->now_arg);
    c->sched = *s;
    c->st.step = s->first_step;
    c->st.state = DP_STATE_STARTING;
    c->st.started = c->state_since = c->train_since = c->eta_at = c->st.last_step_end = now;
    c->paused_s = c->train_base = 0;
    c->st.eta_s = -1;
    pthread_mutex_unlock(&c->lock);
}

void dp_control_step_done(dp_control *c, const dp_control_step *s)
{
    pthread_mutex_lock(&c->lock);
    double now = c->now(c->now_arg);
    enter(c, DP_STATE_TRAINING, now);
    c->st.step = s->step;
    c->st.epoch = s->epoch;
    c->st.loss = s->loss;
    c->st.lr = s->lr;
    c->st.skipped += s->skipped;
    c->st.last_step_end = now;
    c->ring[c->ring_next] = (step_mark){ training_clock(c, now), s->seconds, s->rows };
    c->ring_next = (c->ring_next + 1) % RING;
    c->ring_count += c->ring_count < RING;
    measure_window(c);
    c->st.typical_step_s = typical_step(c);
    estimate(c, now);
    pthread_mutex_unlock(&c->lock);
}

void dp_control_set_state(dp_control *c, dp_run_state state)
{
    pthread_mutex_lock(&c->lock);
    double now = c->now(c->now_arg);
    dp_run_state old = c->st.state;
    bool working = old == DP_STATE_TRAINING || old == DP_STATE_EVALUATING;
    if (old != state && working && c->st.eta_s >= 0) /* the ETA as shown now, then held */
        c->st.eta_s = fmax(0.0, c->st.eta_s - (now - c->eta_at));
    enter(c, state, now);
    c->eta_at = now;
    pthread_mutex_unlock(&c->lock);
}

void dp_control_eval_begin(dp_control *c, long total)
{
    pthread_mutex_lock(&c->lock);
    double now = c->now(c->now_arg);
    enter(c, DP_STATE_EVALUATING, now);
    c->eval_began = now;
    c->st.eval_done = 0;
    c->st.eval_total = total;
    estimate(c, now);
    pthread_mutex_unlock(&c->lock);
}

void dp_control_eval_progress(dp_control *c, long done, long total)
{
    pthread_mutex_lock(&c->lock);
    c->st.eval_done = done;
    c->st.eval_total = total;
    estimate(c, c->now(c->now_arg));
    pthread_mutex_unlock(&c->lock);
}

/* Keeps p in the history; when it is full, every other one goes (the first and the newest
 * stay), so the history spans the whole run. */
static void remember_eval(dp_control_status *st, const dp_eval_point *p)
{
    if (st->n_evals == DP_EVAL_HISTORY) {
        int n = 0;
        for (int i = 0; i < DP_EVAL_HISTORY - 1; i += 2)
            st->evals[n++] = st->evals[i];
        st->evals[n++] = st->evals[DP_EVAL_HISTORY - 1];
        st->n_evals = n;
    }
    st->evals[st->n_evals++] = *p;
}

/* Whether evaluation e is better than best (step < 0: none yet): a lower finite test loss; a
 * GAN's, whose discriminator's loss says nothing of the generator, a lower finite Frechet
 * distance, and without quality figures no GAN evaluation is best. */
static bool better_eval(const dp_eval_point *e, const dp_eval_point *best)
{
    if (e->gan)
        return e->generated > 0 && isfinite(e->frechet) &&
               (best->step < 0 || e->frechet < best->frechet);
    return isfinite(e->loss) && /* a non-finite loss is never the best */
           (best->step < 0 || e->loss < best->loss);
}

void dp_control_eval_end(dp_control *c, const dp_eval_point *result)
{
    pthread_mutex_lock(&c->lock);
    double now = c->now(c->now_arg);
    if (result) {
        c->eval_s += now - c->eval_began;
        c->evals_timed++;
        dp_control_status *st = &c->st;
        st->test_accuracy = result->accuracy;
        st->test_step = result->step;
        st->last_eval = *result;
        if (better_eval(result, &st->best_eval))
            st->best_eval = *result;
        st->evals_done++;
        remember_eval(st, result);
    }
    c->st.eval_done = c->st.eval_total = 0;
    enter(c, c->ring_count ? DP_STATE_TRAINING : DP_STATE_STARTING, now);
    estimate(c, now);
    pthread_mutex_unlock(&c->lock);
}

void dp_control_finish(dp_control *c, bool stopped_early, const char *checkpoint)
{
    pthread_mutex_lock(&c->lock);
    double now = c->now(c->now_arg);
    c->st.active_s = active_at(c, now);
    enter(c, DP_STATE_FINISHED, now);
    c->st.eta_s = 0;
    c->st.eval_done = c->st.eval_total = 0;
    c->st.finished = true;
    c->st.stopped_early = stopped_early;
    snprintf(c->st.exit_checkpoint, sizeof c->st.exit_checkpoint, "%s",
             checkpoint ? checkpoint : "");
    pthread_mutex_unlock(&c->lock);
}

/* ---- a GAN's samples ---- */

/* Makes room for `floats` values in s->x; -1 when out of memory (s unchanged). */
static int samples_room(dp_control_samples *s, size_t floats)
{
    if (floats <= s->cap)
        return 0;
    float *x = realloc(s->x, floats * sizeof *x);
    if (!x)
        return -1;
    s->x = x;
    s->cap = floats;
    return 0;
}

void dp_control_set_samples_range(dp_control *c, float lo, float hi)
{
    pthread_mutex_lock(&c->lock);
    c->samples.lo = lo;
    c->samples.hi = hi;
    pthread_mutex_unlock(&c->lock);
}

int dp_control_publish_samples(dp_control *c, long step, const float *x, int n, dp_shape shape)
{
    size_t floats = dp_size_mul((size_t)(n > 0 ? n : 0), dp_shape_count(shape));
    if (floats == SIZE_MAX)
        return -1;
    pthread_mutex_lock(&c->lock);
    dp_control_samples *s = &c->samples;
    if (samples_room(s, floats) < 0) {
        pthread_mutex_unlock(&c->lock);
        return -1;
    }
    if (floats)
        memcpy(s->x, x, floats * sizeof *x);
    s->step = step;
    s->n = n > 0 ? n : 0;
    s->shape = shape;
    s->generation++;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

int dp_control_copy_samples(dp_control *c, dp_control_samples *out)
{
    pthread_mutex_lock(&c->lock);
    const dp_control_samples *s = &c->samples;
    if (s->generation == out->generation) {
        pthread_mutex_unlock(&c->lock);
        return 0;
    }
    size_t floats = (size_t)s->n * dp_shape_count(s->shape);
    if (samples_room(out, floats) < 0) {
        pthread_mutex_unlock(&c->lock);
        return -1;
    }
    if (floats)
        memcpy(out->x, s->x, floats * sizeof *out->x);
    out->generation = s->generation;
    out->step = s->step;
    out->n = s->n;
    out->shape = s->shape;
    out->lo = s->lo;
    out->hi = s->hi;
    pthread_mutex_unlock(&c->lock);
    return 1;
}

void dp_control_samples_free(dp_control_samples *s)
{
    free(s->x);
    s->x = NULL;
    s->cap = 0;
}

/* Steps in (step, total] that are multiples of every (each > 0). */
static long multiples(long step, long total, long every)
{
    return every > 0 ? total / every - step / every : 0;
}

static long gcd(long a, long b)
{
    while (b) {
        long r = a % b;
        a = b;
        b = r;
    }
    return a;
}

long dp_evals_remaining(long step, long total, long steps_per_epoch, long eval_every)
{
    if (step >= total)
        return 0;
    long pe = steps_per_epoch > 0 ? steps_per_epoch : 0, ee = eval_every > 0 ? eval_every : 0;
    long n = multiples(step, total, pe) + multiples(step, total, ee);
    if (pe && ee) { /* steps that are both count once; their period past total: none */
        long g = gcd(pe, ee);
        if (pe / g <= total / ee)
            n -= multiples(step, total, pe / g * ee);
    }
    bool last_due = (pe && total % pe == 0) || (ee && total % ee == 0);
    return n + !last_due;
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
