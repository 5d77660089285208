/* run_loop.c -- the training loop; what it shows or writes is its observers' business. */
#include "app/run_loop.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/advise.h"
#include "base/clock.h"
#include "engine/backend_cpu.h"
#include "engine/world.h"

void dp_run_observe(dp_run_loop_opts *o, dp_run_observer obs)
{
    if (o->n_observers < DP_RUN_MAX_OBSERVERS)
        o->observers[o->n_observers++] = obs;
}

typedef enum next_step { GO, QUIT, INTERRUPT } next_step;

/* The loop's running state. */
typedef struct loop {
    dp_trainer *t;
    const dp_run_loop_opts *o;
    dp_run_result *res;
    dp_run_progress progress;
    double samples, step_time;  /* over every step so far */
    dp_step_report r;           /* the last step's */
    bool evaluated_last;        /* the last step was followed by an evaluation */
    bool plan_shown;            /* the control has the plan in use */
    int next_switch;            /* in o->switches */
    long checkpointed;          /* the step of the last checkpoint (or of the resumed one) */
    char checkpoint_path[4200]; /* the last checkpoint written ("": none yet) */
    next_step eval_stopped_by;  /* GO, or why an evaluation was stopped */
    bool advise_wanted;         /* the plan advisor should search before the next step */
    bool hand_switched;         /* a switch was chosen by hand (the control, or --switch-at)
                                   since the plan advisor was last asked for: it stops a
                                   search, which keeps that plan */
} loop;

static void tell_event(const loop *l, const dp_run_event *e)
{
    for (int i = 0; i < l->o->n_observers; i++)
        if (l->o->observers[i].event)
            l->o->observers[i].event(l->o->observers[i].arg, e);
}

static void tell_step(const loop *l)
{
    for (int i = 0; i < l->o->n_observers; i++)
        if (l->o->observers[i].step_done)
            l->o->observers[i].step_done(l->o->observers[i].arg, l->t, &l->r, &l->progress);
}

static void tell_eval(const loop *l, const dp_eval_report *e)
{
    for (int i = 0; i < l->o->n_observers; i++)
        if (l->o->observers[i].eval_done)
            l->o->observers[i].eval_done(l->o->observers[i].arg, &l->r, e);
}

static void tell_finished(const loop *l, int rc, const dp_err *err)
{
    for (int i = 0; i < l->o->n_observers; i++)
        if (l->o->observers[i].finished)
            l->o->observers[i].finished(l->o->observers[i].arg, l->t, l->res, rc, err);
}

/* What decides the next step, the same in every process of the run: the control's (rank 0's
 * dashboard's) pause, quit and switch, and a signal to any process. Kept as doubles for
 * dp_world_sum: the other ranks add zeros, apart from their stop. */
enum {
    CTL_SIGNAL, CTL_QUIT, CTL_PAUSED, CTL_SWITCH, CTL_STRATEGY, CTL_STAGES, CTL_MICRO,
    CTL_SCHEDULE, CTL_ADVISE, CTL_N
};

/* This process's part of the control: its signal, and its control's requests (whose switch
 * it takes). */
static void local_control(const dp_run_loop_opts *o, double *v)
{
    memset(v, 0, CTL_N * sizeof *v);
    v[CTL_SIGNAL] = atomic_load(o->stop) != 0;
    v[CTL_QUIT] = dp_control_quit_requested(o->control);
    v[CTL_PAUSED] = dp_control_paused(o->control);
    v[CTL_ADVISE] = dp_control_take_advice(o->control);
    dp_plan_request req;
    if (dp_control_take_switch(o->control, &req)) {
        v[CTL_SWITCH] = 1;
        v[CTL_STRATEGY] = req.strategy;
        v[CTL_STAGES] = req.stages;
        v[CTL_MICRO] = req.micro;
        v[CTL_SCHEDULE] = req.schedule;
    }
}

/* Before each step: asks for a switch the control wants and waits while it pauses the run;
 * *next says whether to go on, or stop for a quit or a signal. Under mpirun every process does
 * the same at the same step; the other processes of a paused run sleep between their checks.
 * Fails when a switch cannot be asked for here (another process could). */
static int before_step(loop *l, next_step *next, dp_err *err)
{
    dp_trainer *t = l->t;
    const dp_run_loop_opts *o = l->o;
    bool paused = false; /* told to the control */
    for (;;) {
        double v[CTL_N];
        dp_world_heartbeat();
        local_control(o, v);
        bool paused_here = v[CTL_PAUSED] > 0; /* before the sum: this process's control */
        dp_world_sum(v, CTL_N);
        if (v[CTL_ADVISE] > 0) /* a switch asked for with it, after it, stops it */
            l->advise_wanted = true, l->hand_switched = false;
        if (v[CTL_SWITCH] > 0) {
            l->hand_switched = true;
            dp_plan_request req = {
                .strategy = (dp_strategy)v[CTL_STRATEGY], .stages = (int)v[CTL_STAGES],
                .micro = (int)v[CTL_MICRO], .schedule = (dp_schedule)v[CTL_SCHEDULE],
            };
            if (dp_trainer_request_switch(t, &req, err) < 0)
                return -1;
        }
        *next = v[CTL_SIGNAL] > 0 ? INTERRUPT : v[CTL_QUIT] > 0 ? QUIT : GO;
        if (*next != GO || v[CTL_PAUSED] == 0) {
            if (paused && *next == GO) /* else the end follows, from the pause */
                dp_control_set_state(o->control, l->res->steps > l->res->first_step
                                                     ? DP_STATE_TRAINING : DP_STATE_STARTING);
            return 0;
        }
        if (!paused)
            dp_control_set_state(o->control, DP_STATE_PAUSED);
        paused = true;
        if (paused_here) /* until resumed, at most 100 ms */
            dp_control_wait_while_paused(o->control, o->stop, 0.1);
        else /* another process's dashboard paused the run */
            nanosleep(&(struct timespec){ 0, 100000000L }, NULL);
    }
}

/* Tells the control the plan in use after every step: also after one whose switch was to the
 * plan in use (no switch), so that the request it took is no longer pending. */
static void publish_plan(loop *l)
{
    char plan[48], text[64];
    dp_trainer_describe(l->t, plan, sizeof plan);
    if (dp_world_size() > 1) /* the same plan in every process */
        snprintf(text, sizeof text, "%d processes x %s", dp_world_size(), plan);
    else
        snprintf(text, sizeof text, "%s", plan);
    dp_plan_request in_use = dp_trainer_request(l->t);
    dp_control_switch_applied(l->o->control, &in_use, text);
    l->plan_shown = true;
}

/* Tells the control the step, and takes its rate and ETA for the observers. */
static void publish_step(loop *l)
{
    const dp_step_report *r = &l->r;
    dp_control_step_done(l->o->control, &(dp_control_step){
        .step = r->step, .epoch = r->epoch, .loss = r->loss, .lr = r->lr, .rows = r->rows,
        .seconds = r->seconds, .skipped = r->skipped });
    dp_control_status st;
    dp_control_snapshot(l->o->control, &st);
    dp_run_progress *p = &l->progress;
    p->recent_rate = st.samples_per_s;
    p->eta_s = st.eta_s;
    p->mean_rate = l->step_time > 0 ? l->samples / l->step_time : 0.0;
}

/* Takes one step (a --switch-at switch first) and tells the observers. */
static int take_step(loop *l, dp_err *err)
{
    const dp_run_loop_opts *o = l->o;
    if (l->next_switch < o->n_switches && o->switches[l->next_switch].step == l->res->steps + 1) {
        /* a plan chosen by hand: the advisor's search stops rather than time this step as
         * its candidate's, and keeps the plan */
        l->hand_switched = true;
        if (dp_trainer_request_switch(l->t, &o->switches[l->next_switch++].plan, err) < 0)
            return -1;
    }
    if (dp_trainer_step(l->t, &l->r, err) < 0)
        return -1;
    dp_world_heartbeat();
    publish_plan(l);
    const dp_step_report *r = &l->r;
    if (r->skipped)
        tell_event(l, &(dp_run_event){ .kind = DP_RUN_SKIPPED, .step = r->step, .step_report = r });
    if (r->switched)
        tell_event(l, &(dp_run_event){ .kind = DP_RUN_SWITCHED, .step = r->step, .step_report = r });
    l->res->steps = r->step;
    l->res->final_loss = r->loss;
    l->res->gan = r->gan;
    l->res->masked = r->masked;
    l->res->final_loss_g = r->loss_g;
    l->samples += r->rows;
    l->step_time += r->seconds;
    publish_step(l);
    tell_step(l);
    return 0;
}

/* Why every process stops now: a signal to any, or rank 0's q (a collective call). */
static next_step common_stop(const dp_run_loop_opts *o)
{
    double v[2] = { atomic_load(o->stop) != 0, dp_control_quit_requested(o->control) };
    dp_world_sum(v, 2);
    return v[0] > 0 ? INTERRUPT : QUIT;
}

/* An evaluation's progress, told to the control; a quit or a signal stops it. */
static bool eval_progress(void *arg, long done, long total)
{
    const loop *l = arg;
    dp_control_eval_progress(l->o->control, done, total);
    dp_world_heartbeat();
    return atomic_load(l->o->stop) || dp_control_quit_requested(l->o->control);
}

/* Evaluates, and tells the observers; a stopped evaluation tells nothing, and says why in
 * l->eval_stopped_by (the run then ends before its next step). */
static void evaluate(loop *l)
{
    dp_eval_report e = { 0 }; /* the objective's report fills its own fields: a classifier's
                               * leaves the GAN's (gan, generated, images) as they are */
    dp_eval_watch watch = { .progress = eval_progress, .arg = l };
    dp_control_eval_begin(l->o->control, 0);
    if (!dp_trainer_evaluate(l->t, &watch, &e)) {
        dp_control_eval_end(l->o->control, NULL);
        l->eval_stopped_by = common_stop(l->o);
        return;
    }
    dp_control_eval_end(l->o->control, &(dp_eval_point){
        .step = l->r.step, .loss = e.loss, .accuracy = e.accuracy, .text = e.text,
        .masked = e.masked, .gan = e.gan, .d_real = e.d_real, .generated = e.generated, .frechet = e.frechet,
        .score = e.score });
    l->res->test_accuracy = e.accuracy;
    l->res->test_loss = e.loss;
    l->res->test_text = e.text;
    l->res->test_masked = e.masked;
    l->res->test_step = l->r.step;
    l->res->test_gan = e.gan;
    l->res->test_generated = e.generated;
    l->res->test_frechet = e.frechet;
    l->res->test_score = e.score;
    tell_eval(l, &e);
}

/* Writes a checkpoint and tells the observers where. */
static int checkpoint(loop *l, long step, dp_err *err)
{
    char path[4200];
    double t0 = dp_now_s();
    if (l->o->write_checkpoint(l->o->checkpoint_arg, l->t, path, sizeof path, err) < 0)
        return -1;
    double ms = 1e3 * (dp_now_s() - t0);
    l->checkpointed = step;
    snprintf(l->checkpoint_path, sizeof l->checkpoint_path, "%s", path);
    tell_event(l, &(dp_run_event){ .kind = DP_RUN_CHECKPOINT, .step = step, .path = path,
                                   .ms = ms });
    return 0;
}

/* After a step: an evaluation at an epoch's end or every eval_every steps, and a checkpoint
 * on the schedule or when the control asks. */
static int after_step(loop *l, dp_err *err)
{
    const dp_run_loop_opts *o = l->o;
    long step = l->r.step;
    l->evaluated_last = l->r.epoch_end || (o->eval_every && step % o->eval_every == 0);
    if (l->evaluated_last) {
        evaluate(l);
        dp_world_heartbeat();
    }
    bool scheduled = o->checkpoint_every && step % o->checkpoint_every == 0;
    if (o->write_checkpoint && (dp_control_take_checkpoint(o->control) || scheduled))
        return checkpoint(l, step, err);
    return 0;
}

/* One step with what goes before and after it: *next says whether it was taken (GO) or the
 * run stops first. */
static int loop_step(loop *l, next_step *next, dp_err *err)
{
    if (before_step(l, next, err) < 0)
        return -1;
    if (*next != GO)
        return 0;
    if (take_step(l, err) < 0 || after_step(l, err) < 0)
        return -1;
    return 0;
}

/* ---- the plan advisor's search (engine/advisor.h), on the training's own steps ---- */

#define ADVICE_FIRST_STEPS 3   /* measured steps a candidate in the first round (doubling):
                                  their median is its time, so one step slowed by something
                                  else on the machine does not drop it */
#define ADVICE_ROUNDS 3
#define ADVICE_MOST_STEPS (ADVICE_FIRST_STEPS << (ADVICE_ROUNDS - 1))
#define ADVICE_KEEP 1.3        /* a round drops what is slower than this times its best */
#define ADVICE_ESTIMATE_SPAN 2.5 /* candidates measured: estimates within this factor of the
                                    lowest (o->advise_plans of them at most), unless all are */

typedef struct search {
    loop *l;
    next_step next;
    int rc;                     /* -1: a step failed (err) */
    dp_err *err;
    const char *stopped;        /* why the search stopped before its end */
} search;

static int predict_in_run(void *arg, const dp_plan_request *req, dp_plan *p, size_t *bytes,
                          dp_err *err)
{
    return dp_trainer_plan_bytes(arg, req, p, bytes, err);
}

/* A candidate's figures over its measured steps, summed over its devices; each step's time. */
enum { M_COMPUTE, M_COMM, M_IDLE, M_FLOPS, M_PEAK_WORK, M_PEAK_KNOWN, M_STEP0 };
typedef struct measured {
    double compute, comm, idle, flops, peak_work; /* peak_work: wall x peak FLOP/s */
    bool peak_known;
    double step_s[ADVICE_MOST_STEPS];
    int steps;
} measured;

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void add_step_figures(loop *l, int devices, measured *m)
{
    dp_metrics *ms = dp_trainer_metrics(l->t);
    if (m->steps < ADVICE_MOST_STEPS)
        m->step_s[m->steps++] = l->r.seconds;
    double peak = 0; /* the devices' FLOP/s together: CPU devices share the machine's cores, so
                      * theirs is at most the machine's, however many devices */
    const dp_device *d0 = dp_trainer_device(l->t, 0);
    double machine = d0->be->host_memory ? d0->peak_flops * dp_cpu_cores() : INFINITY;
    for (int i = 0; i < devices; i++) {
        dp_device_metrics dm = dp_metrics_read(ms, i);
        m->compute += dm.compute_s;
        m->comm += dm.comm_s;
        m->idle += dm.idle_s;
        m->flops += dm.flops;
        peak += dm.peak_flops;
        m->peak_known &= dm.peak_flops > 0;
    }
    m->peak_work += l->r.seconds * (peak < machine ? peak : machine);
}

/* Switches to a candidate, takes a warm-up step, then measures `steps` steps of it: its time
 * is their median. Under mpirun the figures are every process's, summed step by step, and rank
 * 0's sums are the ones all decide by, so that every process makes the same choices. */
static double measure_plan(void *arg, dp_advice *a, int steps)
{
    search *s = arg;
    loop *l = s->l;
    dp_err why;
    if (l->hand_switched) { /* since the advice was asked for */
        s->stopped = "a plan was chosen by hand";
        return -1;
    }
    if (dp_trainer_request_switch(l->t, &a->req, &why) < 0) {
        snprintf(a->why, sizeof a->why, "%s", why.msg);
        return 0;
    }
    measured m = { .peak_known = true };
    /* k < 0: warm-up steps, the one the switch begins, and one more for the run's first
     * steps, which are slower (caches, page faults, thread pools) */
    int warmup = l->res->steps == l->res->first_step ? 2 : 1;
    for (int k = -warmup; k < steps; k++) {
        if (l->res->steps >= l->o->total_steps) {
            s->stopped = "the run reached its last step";
            return -1;
        }
        if (loop_step(l, &s->next, s->err) < 0) {
            if (l->r.switch_failed) { /* the old plan goes on */
                snprintf(a->why, sizeof a->why, "%s", s->err->msg);
                return 0;
            }
            s->rc = -1;
            s->stopped = "a step failed";
            return -1;
        }
        if (s->next != GO || l->eval_stopped_by != GO) {
            s->stopped = "the run was stopped";
            return -1;
        }
        if (l->hand_switched) {
            s->stopped = "a plan was chosen by hand";
            return -1;
        }
        if (k >= 0)
            add_step_figures(l, a->devices, &m);
    }
    for (int d = 0; d < dp_trainer_device_count(l->t) && d < DP_MAX_DEVICES; d++)
        a->peak[d] = dp_trainer_device(l->t, d)->mem_plan_peak;
    double v[M_STEP0 + ADVICE_MOST_STEPS] = { m.compute, m.comm, m.idle, m.flops, m.peak_work,
                                              m.peak_known };
    memcpy(v + M_STEP0, m.step_s, (size_t)m.steps * sizeof *v);
    int n = M_STEP0 + m.steps;
    dp_world_sum(v, n);
    dp_world_broadcast(v, (int)(n * sizeof *v));
    double busy = v[M_COMPUTE] + v[M_COMM] + v[M_IDLE];
    a->idle = busy > 0 ? v[M_IDLE] / busy : 0;
    a->comm = busy > 0 ? v[M_COMM] / busy : 0;
    a->mfu = v[M_PEAK_KNOWN] >= dp_world_size() && v[M_PEAK_WORK] > 0
                 ? v[M_FLOPS] / v[M_PEAK_WORK] : -1;
    qsort(v + M_STEP0, (size_t)m.steps, sizeof *v, by_value);
    double median = m.steps % 2 ? v[M_STEP0 + m.steps / 2]
                                : 0.5 * (v[M_STEP0 + m.steps / 2 - 1] + v[M_STEP0 + m.steps / 2]);
    return median / dp_world_size();
}

/* The cost estimate's inputs: the layers' measured times, or when they could not be measured
 * (the model does not fit device 0 alone) their FLOPs (forward and backward: 3 times the
 * forward's) at device 0's peak rate a core, or bare FLOPs without a peak (*seconds false);
 * and the threads of CPU devices. */
static int estimate_costs(loop *l, dp_advice_costs *k, double *flops, bool *seconds,
                          dp_err *err)
{
    dp_trainer *t = l->t;
    const dp_model *m = dp_trainer_model(t);
    if (dp_trainer_layer_costs(t, &k->layer, &k->rows, &k->threads, err) < 0)
        return -1;
    const dp_device *d0 = dp_trainer_device(t, 0);
    bool cpu = d0->be->host_memory;
    *seconds = k->layer || d0->peak_flops > 0;
    if (!k->layer) {
        for (int i = 0; i < m->n_layers; i++)
            flops[i] = 3 * m->layers[i].ops->flops(&m->layers[i]) /
                       (d0->peak_flops > 0 ? d0->peak_flops : 1);
        k->layer = flops;
        k->rows = 1;
        k->threads = cpu ? 1 : 0; /* a CPU device's peak_flops is a core's */
    }
    k->cores = cpu ? dp_cpu_cores() : 0;
    k->threads_alone = dp_trainer_team_threads(t, 1);
    k->threads_shared = dp_trainer_team_threads(t, 2);
    return 0;
}

/* The search measures the candidates in their order: the plan in use goes last, so that it is
 * not measured in the run's first steps, which are slower (caches, page faults, thread pools),
 * nor measured warm against the others cold. */
static void measure_in_use_last(dp_advice_table *tab, dp_plan_request in_use)
{
    for (int i = 0; i < tab->n - 1; i++) {
        const dp_plan_request *r = &tab->c[i].req;
        bool same = r->strategy == in_use.strategy &&
                    (r->strategy == DP_STRATEGY_SINGLE || r->strategy == DP_STRATEGY_DP ||
                     (r->stages == in_use.stages && r->micro == in_use.micro &&
                      r->schedule == in_use.schedule));
        if (!same)
            continue;
        dp_advice held = tab->c[i];
        memmove(&tab->c[i], &tab->c[i + 1], (size_t)(tab->n - 1 - i) * sizeof held);
        tab->c[tab->n - 1] = held;
        return;
    }
}

/* "chose DP x2: 912.3 samples/s, 1.52x single; measured 6 of 8 plans over 40 steps". The ratio
 * only when single was measured as long as the chosen plan (in its last round, beside it). */
static void describe_outcome(dp_advice_table *tab, int best)
{
    const dp_advice *c = tab->c;
    if (best < 0) {
        snprintf(tab->outcome, sizeof tab->outcome, "no plan could be measured; the plan in "
                                                    "use stays");
        return;
    }
    char than[64] = "";
    for (int i = 0; i < tab->n; i++)
        if (c[i].req.strategy == DP_STRATEGY_SINGLE && c[i].steps == c[best].steps &&
            i != best)
            snprintf(than, sizeof than, ", %.2fx single", c[i].step_s / c[best].step_s);
    snprintf(tab->outcome, sizeof tab->outcome,
             "chose %s: %.1f samples/s%s; measured %d of %d plans over steps %ld-%ld (%.1f s)",
             c[best].plan, tab->batch / c[best].step_s, than, tab->measured, tab->n,
             tab->first_step, tab->last_step, tab->seconds);
}

/* Finds the fastest plan on the training's own steps and switches to it (at the next step);
 * tells the control and the observers the table. Stops early, choosing nothing, when the run
 * ends or stops, or a plan is chosen by hand. */
static int advise(loop *l, next_step *next, dp_err *err)
{
    const dp_run_loop_opts *o = l->o;
    dp_trainer *t = l->t;
    dp_control_advice_begins(o->control);
    dp_control_event(o->control, "plan advisor: measuring plans");
    int n_devices = dp_trainer_device_count(t);
    dp_device devices[DP_MAX_DEVICES];
    for (int d = 0; d < n_devices; d++)
        devices[d] = *dp_trainer_device(t, d);
    dp_advice_table tab = { .c = calloc(DP_ADVICE_MAX, sizeof *tab.c) };
    const dp_model *model = dp_trainer_model(t);
    double *flops = calloc((size_t)model->n_layers, sizeof *flops);
    if (!tab.c || !flops) {
        free(tab.c);
        free(flops);
        return dp_fail(err, "out of host memory for the plan advisor");
    }
    dp_advice_costs costs;
    bool seconds;
    if (estimate_costs(l, &costs, flops, &seconds, err) < 0) {
        free(tab.c);
        free(flops);
        return -1;
    }
    dp_err why;
    search s = { .l = l, .next = GO, .err = err };
    int best = -1;
    double t0 = dp_now_s();
    long first_step = l->res->steps + 1;
    if (dp_advise_candidates(&tab, model, dp_trainer_batch(t), o->advise_bn_micro_ok,
                             devices, n_devices, predict_in_run, t, &costs, &why) < 0) {
        snprintf(tab.outcome, sizeof tab.outcome, "%s", why.msg);
    } else {
        tab.first_step = first_step;
        if (o->advise_plans > 0)
            dp_advice_shortlist(tab.c, tab.n, o->advise_plans, ADVICE_ESTIMATE_SPAN);
        for (int i = 0; i < tab.n && !seconds; i++) /* only their ratios mean something */
            tab.c[i].estimate_s = 0;
        measure_in_use_last(&tab, dp_trainer_request(t));
        best = dp_advice_search(tab.c, tab.n, ADVICE_FIRST_STEPS, ADVICE_ROUNDS, ADVICE_KEEP,
                                measure_plan, &s);
        tab.last_step = l->res->steps;
        tab.seconds = dp_now_s() - t0;
        for (int i = 0; i < tab.n; i++)
            tab.measured += tab.c[i].steps > 0;
        if (tab.last_step < tab.first_step) /* no step taken */
            tab.first_step = tab.last_step = 0;
        if (best >= 0) {
            describe_outcome(&tab, best);
            dp_plan_request chosen = tab.c[best].req;
            if (dp_trainer_request_switch(t, &chosen, &why) < 0) /* it was made before */
                snprintf(tab.outcome, sizeof tab.outcome, "%s", why.msg);
        } else if (best == -2) { /* the plan in use stays */
            char in_use[64];
            dp_trainer_describe(t, in_use, sizeof in_use);
            snprintf(tab.outcome, sizeof tab.outcome, "stopped after %d of %d plans: %s; %s "
                     "stays in use", tab.measured, tab.n, s.stopped, in_use);
            for (int i = 0; i < tab.n; i++)
                if (!tab.c[i].left_out && tab.c[i].steps == 0) {
                    tab.c[i].left_out = true;
                    snprintf(tab.c[i].why, sizeof tab.c[i].why,
                             "not measured: the search stopped first");
                }
        } else {
            describe_outcome(&tab, best);
        }
    }
    free(flops);
    if (tab.truncated) {
        size_t at = strlen(tab.outcome);
        snprintf(tab.outcome + at, sizeof tab.outcome - at, "; only the first %d plans were "
                 "considered", DP_ADVICE_MAX);
    }
    dp_advice_sort(tab.c, tab.n);
    for (int i = 0; i < tab.n; i++)
        if (tab.c[i].chosen)
            tab.chosen = i;
    dp_control_publish_advice(o->control, &tab);
    dp_control_event(o->control, "plan advisor: %s", tab.outcome);
    tell_event(l, &(dp_run_event){ .kind = DP_RUN_ADVICE, .step = l->res->steps,
                                   .advice = &tab });
    free(tab.c);
    *next = s.next;
    return s.rc;
}

/* The end, stopped or not: the last evaluation and checkpoint when due, the totals, and the
 * observers told. */
static int finish(loop *l, int rc, next_step next, dp_err *err)
{
    dp_run_result *res = l->res;
    const dp_run_loop_opts *o = l->o;
    if (rc == 0 && res->steps == o->total_steps && res->steps > res->first_step &&
        !l->evaluated_last)
        evaluate(l);
    if (l->eval_stopped_by != GO)
        next = l->eval_stopped_by;
    res->eval_stopped = l->eval_stopped_by != GO;
    bool early = (res->steps < o->total_steps || res->eval_stopped) && rc == 0;
    res->failed = rc < 0;
    res->interrupted = early && next == INTERRUPT;
    res->quit = early && next == QUIT;
    if (rc == 0 && o->write_checkpoint && l->checkpointed != res->steps &&
        checkpoint(l, res->steps, err) < 0)
        rc = -1;
    dp_world_watchdog_stop();
    if (rc == 0 && l->checkpointed == res->steps)
        snprintf(res->checkpoint, sizeof res->checkpoint, "%s", l->checkpoint_path);
    res->seconds = dp_now_s() - l->progress.started;
    res->samples_per_s = l->step_time > 0 ? l->samples / l->step_time : 0.0;
    dp_control_finish(o->control, early || rc < 0, res->checkpoint);
    dp_control_status st;
    dp_control_snapshot(o->control, &st);
    res->active_s = st.active_s;
    tell_finished(l, rc, err);
    return rc;
}

int dp_run_loop(dp_trainer *t, const dp_run_loop_opts *o, dp_run_result *res, dp_err *err)
{
    memset(res, 0, sizeof *res);
    res->test_accuracy = -1;
    dp_train_state resumed;
    dp_trainer_train_state(t, &resumed);
    res->steps = res->first_step = resumed.step; /* a resumed run continues from there */
    long per_epoch = dp_trainer_steps_per_epoch(t);
    loop l = {
        .t = t, .o = o, .res = res, .checkpointed = resumed.step,
        .progress = { .total_steps = o->total_steps, .first_step = resumed.step,
                      .epochs = (o->total_steps + per_epoch - 1) / per_epoch,
                      .started = dp_now_s() },
    };
    dp_control_set_can_checkpoint(o->control, o->write_checkpoint != NULL);
    dp_control_begin(o->control, &(dp_run_schedule){
        .first_step = resumed.step, .steps_per_epoch = per_epoch, .eval_every = o->eval_every,
        .test_samples = o->test_samples });
    next_step next = GO;
    int rc = 0;
    dp_world_watchdog_start(o->watchdog_s);
    l.advise_wanted = o->advise;
    while (res->steps < o->total_steps) {
        bool advising = l.advise_wanted;
        l.advise_wanted = false;
        if ((advising ? advise(&l, &next, err) : loop_step(&l, &next, err)) < 0) {
            rc = -1;
            break;
        }
        if (next != GO || l.eval_stopped_by != GO)
            break;
    }
    return finish(&l, rc, next, err);
}
