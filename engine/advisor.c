/* advisor.c -- the plan advisor's enumeration and search (advisor.h). */
#include "engine/advisor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
 * batches S, 2S and 4S, each under both schedules. A model with batch normalisation, whose
 * several micro-batches are left out, also gets the pipeline of one micro-batch, which
 * normalises over the whole batch as configured (both schedules are the same then). */
static void add_pipelines(const dp_model *m, const dp_advice_limits *lim, dp_strategy strategy,
                          int stages, int devices, dp_advice *out, int *n, int max)
{
    int replicas = devices / stages;
    if (dp_model_batch_statistics(m) && !lim->bn_micro_ok &&
        !add(out, n, max, (dp_plan_request){ strategy, stages, 1, DP_SCHEDULE_1F1B }, devices))
        return;
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
                                        "on its own, a different result ([parallel] "
                                        "auto_bn_micro allows it)");
        }
    }
}

/* A pipeline deeper than the model allows, listed once (its micro-batches and schedules are
 * all the same to it), left out saying why. */
static void add_too_deep(dp_strategy strategy, int stages, int devices, int layers,
                         dp_advice *out, int *n, int max)
{
    if (!add(out, n, max, (dp_plan_request){ strategy, stages, stages, DP_SCHEDULE_1F1B },
             devices))
        return;
    dp_advice *a = &out[*n - 1];
    a->left_out = true;
    if (strategy == DP_STRATEGY_PP) /* as dp_plan_describe names them */
        snprintf(a->plan, sizeof a->plan, "PP %d stages", stages);
    else
        snprintf(a->plan, sizeof a->plan, "DP%d x PP%d", devices / stages, stages);
    snprintf(a->why, sizeof a->why, "the model has %d layer%s with parameters: at most %d "
                                    "stage%s",
             layers, layers == 1 ? "" : "s", layers, layers == 1 ? "" : "s");
}

int dp_advice_enumerate(const dp_model *m, const dp_advice_limits *lim, dp_advice *out,
                        int max, dp_err *err)
{
    if (m->gan_split)
        return dp_fail(err, "the plan advisor cannot plan a GAN yet; choose a strategy");
    int n = 0;
    add(out, &n, max, (dp_plan_request){ DP_STRATEGY_SINGLE, 1, 1, DP_SCHEDULE_1F1B }, 1);
    if (lim->devices > 1)
        add(out, &n, max, (dp_plan_request){ DP_STRATEGY_DP, 1, 1, DP_SCHEDULE_1F1B },
            lim->devices);
    int layers = dp_plan_max_stages(m);
    for (int s = 2; s <= lim->devices; s++)
        if (s <= layers)
            add_pipelines(m, lim, DP_STRATEGY_PP, s, s, out, &n, max);
        else
            add_too_deep(DP_STRATEGY_PP, s, s, layers, out, &n, max);
    for (int s = 2; s * 2 <= lim->devices; s++)
        if (lim->devices % s == 0 && s <= layers)
            add_pipelines(m, lim, DP_STRATEGY_HYBRID, s, lim->devices, out, &n, max);
        else if (lim->devices % s == 0)
            add_too_deep(DP_STRATEGY_HYBRID, s, lim->devices, layers, out, &n, max);
    return n;
}

/* A candidate that failed when measured is left out, with measure's reason if it gave one. */
static void failed(dp_advice *a)
{
    a->left_out = true;
    if (!a->why[0])
        snprintf(a->why, sizeof a->why, "it failed when measured");
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
            if (s < 0) {
                free(live);
                return -2;
            }
            if (s > 0) {
                live[i]->step_s = s;
                live[i]->steps += steps;
                live[measured++] = live[i];
            } else {
                failed(live[i]);
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
        if (s < 0) {
            free(live);
            return -2;
        }
        if (s > 0)
            live[0]->step_s = s, live[0]->steps = steps;
        else
            failed(live[0]), alive = 0;
    }
    int best = -1;
    for (int i = 0; i < alive; i++)
        if (best < 0 || live[i]->step_s < c[best].step_s)
            best = (int)(live[i] - c);
    free(live);
    if (best >= 0)
        c[best].chosen = true;
    return best;
}

void dp_advice_bytes(char *buf, size_t size, size_t bytes)
{
    static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    double b = (double)bytes;
    int u = 0;
    while (b >= 1024 && u < 4)
        b /= 1024, u++;
    snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
}

size_t dp_advice_most_need(const dp_advice *a, int n_devices, int *device)
{
    size_t most = 0;
    *device = 0;
    for (int d = 0; d < n_devices; d++)
        if (a->need[d] > most)
            most = a->need[d], *device = d;
    return most;
}

int dp_advice_fit(dp_advice *c, int n, const size_t *room, const char (*name)[32], int n_devices)
{
    int fit = 0;
    for (int i = 0; i < n; i++) {
        if (c[i].left_out)
            continue;
        int over = -1;
        for (int d = 0; d < n_devices && over < 0; d++)
            if (c[i].need[d] > room[d])
                over = d;
        if (over < 0) {
            fit++;
            continue;
        }
        char need[32], free_[32];
        dp_advice_bytes(need, sizeof need, c[i].need[over]);
        dp_advice_bytes(free_, sizeof free_, room[over]);
        c[i].left_out = c[i].no_room = true;
        snprintf(c[i].why, sizeof c[i].why, "needs %s on %s, which has %s", need, name[over],
                 free_);
    }
    return fit;
}

double dp_advice_estimate(const dp_plan *p, const dp_advice_costs *k, int batch)
{
    int threads = p->workers > 1 ? k->threads_shared : k->threads_alone;
    int shard = (batch + p->replicas - 1) / p->replicas;
    double micro_rows = (double)((shard + p->micro - 1) / p->micro);
    double slow = 1.0; /* per worker, against the threads the costs were measured with */
    if (k->cores > 0) {
        threads = threads > 0 ? threads : 1;
        slow = (double)(k->threads > 0 ? k->threads : 1) / threads;
        double wanted = (double)p->workers * threads;
        if (wanted > k->cores)
            slow *= wanted / k->cores;
    }
    double slowest = 0;
    for (int s = 0; s < p->stages; s++) {
        double stage = 0;
        for (int i = p->first_layer[s]; i < p->first_layer[s + 1]; i++)
            stage += k->layer[i];
        slowest = fmax(slowest, stage);
    }
    double per_micro = slowest * micro_rows / (k->rows > 0 ? k->rows : 1) * slow;
    return per_micro * (p->micro + p->stages - 1);
}

/* Live candidates by estimate, lowest first (those without one last). */
static int by_estimate(const void *a, const void *b)
{
    const dp_advice *x = *(dp_advice *const *)a, *y = *(dp_advice *const *)b;
    double ex = x->estimate_s > 0 ? x->estimate_s : INFINITY;
    double ey = y->estimate_s > 0 ? y->estimate_s : INFINITY;
    return (ex > ey) - (ex < ey);
}

int dp_advice_shortlist(dp_advice *c, int n, int most, double factor)
{
    dp_advice **live = malloc((size_t)(n > 0 ? n : 1) * sizeof *live);
    if (!live)
        return -1;
    int alive = 0;
    for (int i = 0; i < n; i++)
        if (!c[i].left_out)
            live[alive++] = &c[i];
    qsort(live, (size_t)alive, sizeof *live, by_estimate);
    double best = alive ? live[0]->estimate_s : 0;
    int kept = 0;
    for (int i = 0; i < alive; i++) {
        dp_advice *a = live[i];
        bool no_estimate = !(a->estimate_s > 0) || !(best > 0);
        if (kept < most && (no_estimate || a->estimate_s <= factor * best)) {
            kept++;
            continue;
        }
        a->left_out = true;
        if (kept >= most && (no_estimate || a->estimate_s <= factor * best))
            snprintf(a->why, sizeof a->why, "not measured: the %d plan%s with lower estimates "
                                            "%s ([parallel] auto_plans)",
                     most, most == 1 ? "" : "s", most == 1 ? "was" : "were");
        else
            snprintf(a->why, sizeof a->why, "not measured: its step estimated %.1fx the lowest "
                                            "estimate (more than %.1fx)",
                     a->estimate_s / best, factor);
    }
    free(live);
    return kept;
}

/* The table's order: chosen, then measured by rounds survived and speed, then left out. */
static int table_rank(const dp_advice *a)
{
    return a->chosen ? 0 : a->left_out ? 3 : a->steps > 0 ? 1 : 2;
}

static int table_order(const void *a, const void *b)
{
    const dp_advice *x = a, *y = b;
    int rx = table_rank(x), ry = table_rank(y);
    if (rx != ry)
        return rx - ry;
    if (rx == 1 && x->steps != y->steps)
        return y->steps - x->steps;
    if (rx == 1)
        return (x->step_s > y->step_s) - (x->step_s < y->step_s);
    return 0;
}

void dp_advice_sort(dp_advice *c, int n)
{
    dp_advice held; /* an insertion sort: stable (ties keep their order), and n is small */
    for (int i = 1; i < n; i++) {
        int j = i;
        if (table_order(&c[j - 1], &c[j]) <= 0)
            continue;
        held = c[i];
        while (j > 0 && table_order(&c[j - 1], &held) > 0) {
            c[j] = c[j - 1];
            j--;
        }
        c[j] = held;
    }
}
