/* advisor.c -- the plan advisor's enumeration and search (advisor.h). */
#include "engine/advisor.h"

#include <stdio.h>
#include <stdlib.h>

/* Appends a candidate; false when out is full. */
static bool add(dp_advice *out, int *n, int max, dp_plan_request req, int devices)
{
    if (*n >= max)
        return false;
    out[(*n)++] = (dp_advice){ .req = req, .devices = devices };
    return true;
}

/* Leaves the newest candidate out, saying why. */
static void leave_out(dp_advice *a, const char *why)
{
    a->left_out = true;
    snprintf(a->why, sizeof a->why, "%s", why);
}

/* A pipeline's candidates with S stages on `devices` devices (replicas = devices / S): micro-
 * batches S, 2S and 4S, each under both schedules. */
static void add_pipelines(const dp_model *m, const dp_advice_limits *lim, dp_strategy strategy,
                          int stages, int devices, dp_advice *out, int *n, int max)
{
    int replicas = devices / stages;
    for (int k = 1; k <= 4; k *= 2) {
        int micro = k * stages;
        if (lim->batch < replicas * micro) /* a row for every micro-batch of every replica */
            continue;
        for (int s = DP_SCHEDULE_GPIPE; s <= DP_SCHEDULE_1F1B; s++) {
            dp_plan_request req = { strategy, stages, micro, (dp_schedule)s };
            if (!add(out, n, max, req, devices))
                return;
            if (dp_model_batch_statistics(m) && !lim->bn_micro_ok)
                leave_out(&out[*n - 1], "batch normalisation would normalise each micro-batch "
                                        "on its own: a different result");
        }
    }
}

int dp_advice_enumerate(const dp_model *m, const dp_advice_limits *lim, dp_advice *out,
                        int max, dp_err *err)
{
    if (m->gan_split)
        return dp_fail(err, "the plan advisor cannot plan a GAN yet; choose a strategy");
    int n = 0;
    add(out, &n, max, (dp_plan_request){ DP_STRATEGY_SINGLE, 0, 1, DP_SCHEDULE_1F1B }, 1);
    if (lim->devices > 1)
        add(out, &n, max, (dp_plan_request){ DP_STRATEGY_DP, 1, 1, DP_SCHEDULE_1F1B },
            lim->devices);
    int most = dp_plan_max_stages(m) < lim->devices ? dp_plan_max_stages(m) : lim->devices;
    for (int s = 2; s <= most; s++)
        add_pipelines(m, lim, DP_STRATEGY_PP, s, s, out, &n, max);
    for (int s = 2; s * 2 <= lim->devices && s <= dp_plan_max_stages(m); s++)
        if (lim->devices % s == 0)
            add_pipelines(m, lim, DP_STRATEGY_HYBRID, s, lim->devices, out, &n, max);
    return n;
}

/* The indices of the live candidates, fastest first by their last round. */
static int by_time(const void *a, const void *b)
{
    const dp_advice *x = *(dp_advice *const *)a, *y = *(dp_advice *const *)b;
    return (x->step_s > y->step_s) - (x->step_s < y->step_s);
}

int dp_advice_search(dp_advice *c, int n, int steps, int rounds, double keep,
                     dp_advice_measure_fn measure, void *arg)
{
    dp_advice **live = malloc((size_t)(n > 0 ? n : 1) * sizeof *live);
    if (!live)
        return -1;
    int alive = 0;
    for (int i = 0; i < n; i++)
        if (!c[i].left_out && !c[i].dropped)
            live[alive++] = &c[i];
    for (int round = 0; round < rounds && alive > 1; round++, steps *= 2) {
        int measured = 0;
        for (int i = 0; i < alive; i++) {
            double s = measure(arg, live[i], steps);
            if (s > 0) {
                live[i]->step_s = s;
                live[i]->steps += steps;
                live[measured++] = live[i];
            } else {
                leave_out(live[i], "it failed when measured");
            }
        }
        alive = measured;
        if (alive < 2)
            break;
        qsort(live, (size_t)alive, sizeof *live, by_time);
        int kept = (alive + 1) / 2; /* the faster half, and none clearly slower than the best */
        while (kept > 1 && live[kept - 1]->step_s > keep * live[0]->step_s)
            kept--;
        for (int i = kept; i < alive; i++)
            live[i]->dropped = true;
        alive = kept;
    }
    if (alive == 1 && live[0]->steps == 0) { /* the only candidate: measured once, for the table */
        double s = measure(arg, live[0], steps);
        if (s > 0)
            live[0]->step_s = s, live[0]->steps = steps;
        else
            leave_out(live[0], "it failed when measured"), alive = 0;
    }
    int best = -1;
    for (int i = 0; i < alive; i++)
        if (best < 0 || live[i]->step_s < c[best].step_s)
            best = (int)(live[i] - c);
    free(live);
    return best;
}
