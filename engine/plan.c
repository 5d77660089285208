/* plan.c -- placement of layers on devices, balanced by FLOPs. */
#include "engine/plan.h"
#include "engine/world.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const dp_strategy_names[] = { "single", "dp", "pp", "hybrid", NULL };
const char *const dp_schedule_names[] = { "gpipe", "1f1b", NULL };

const char *dp_strategy_name(int strategy)
{
    return dp_strategy_names[strategy];
}

const char *dp_schedule_name(int schedule)
{
    return dp_schedule_names[schedule];
}

int dp_strategy_parse(const char *name)
{
    for (int i = 0; dp_strategy_names[i]; i++)
        if (!strcmp(name, dp_strategy_names[i]))
            return i;
    return -1;
}

int dp_split_rows(int rows, int parts, int i)
{
    return rows / parts + (i < rows % parts);
}

int dp_split_start(int rows, int parts, int i)
{
    int extra = rows % parts;
    return i * (rows / parts) + (i < extra ? i : extra);
}

/* The layers that hold parameters: the most stages a model can be cut into. */
static int layers_with_params(const dp_model *m)
{
    int n = 0;
    for (int i = 0; i < m->n_layers; i++)
        n += m->layers[i].param_count > 0;
    return n;
}

int dp_plan_max_stages(const dp_model *m)
{
    return layers_with_params(m);
}

/* Whether a stage of layers [i, j) is allowed in a plan of S stages: with several, none holds
 * layers of both of a GAN's models (engine/gan.h), so that two devices put G on one and D on
 * the other. */
static bool stage_allowed(const dp_model *m, int S, int i, int j)
{
    return S < 2 || !m->gan_split || j <= m->gan_split || i >= m->gan_split;
}

/* Splits the layers into S contiguous stages, each with at least one layer that has
 * parameters, minimising the most cost (seconds or FLOPs) any stage has (dynamic programming
 * over prefixes). */
static int balance(dp_plan *p, const dp_model *m, int S, const double *cost, dp_err *err)
{
    int n = m->n_layers;
    int with_params = layers_with_params(m);
    if (S > with_params)
        return dp_fail(err, "%d stages but the model has only %d layers with parameters; use at "
                            "most %d stages",
                       S, with_params, with_params);
    double *prefix = calloc((size_t)n + 1, sizeof *prefix);
    int *params_before = calloc((size_t)n + 1, sizeof *params_before);
    double *best = malloc((size_t)(S + 1) * (n + 1) * sizeof *best);
    int *cut = malloc((size_t)(S + 1) * (n + 1) * sizeof *cut);
    if (!prefix || !params_before || !best || !cut) {
        free(prefix), free(params_before), free(best), free(cut);
        return dp_fail(err, "out of memory planning stages");
    }
    for (int i = 0; i < n; i++) {
        prefix[i + 1] = prefix[i] + (cost ? cost[i] : m->layers[i].ops->flops(&m->layers[i]));
        params_before[i + 1] = params_before[i] + (m->layers[i].param_count > 0);
    }
    /* best[k][j]: the least possible maximum stage cost putting layers [0, j) in k stages. */
#define BEST(k, j) best[(size_t)(k) * (n + 1) + (j)]
#define CUT(k, j) cut[(size_t)(k) * (n + 1) + (j)]
    for (int k = 0; k <= S; k++)
        for (int j = 0; j <= n; j++)
            BEST(k, j) = DBL_MAX;
    BEST(0, 0) = 0.0;
    for (int k = 1; k <= S; k++)
        for (int j = 1; j <= n; j++)
            for (int i = k - 1; i < j; i++) {
                if (BEST(k - 1, i) == DBL_MAX || params_before[j] == params_before[i] ||
                    !stage_allowed(m, S, i, j))
                    continue; /* stage [i, j) would have no parameters, or two models */
                double stage = prefix[j] - prefix[i];
                double worst = stage > BEST(k - 1, i) ? stage : BEST(k - 1, i);
                if (worst < BEST(k, j)) {
                    BEST(k, j) = worst;
                    CUT(k, j) = i;
                }
            }
    if (BEST(S, n) == DBL_MAX) { /* a GAN whose models cannot share out the stages */
        free(prefix), free(params_before), free(best), free(cut);
        return dp_fail(err, "%d stages cannot be cut between the generator and the "
                            "discriminator (each stage holds layers of one, and needs one with "
                            "parameters); use fewer stages",
                       S);
    }
    p->first_layer[S] = n;
    for (int k = S, j = n; k > 0; k--) {
        j = CUT(k, j);
        p->first_layer[k - 1] = j;
    }
#undef BEST
#undef CUT
    free(prefix), free(params_before), free(best), free(cut);
    return 0;
}

/* Checks that the buffers of passes over `rows` samples (a micro-batch), and of a whole batch
 * of data, stay within DP_MAX_FLOATS (layer.h): the per-sample sizes were checked when the
 * model was built, their products with the rows are checked here. */
static int check_rows(const dp_model *m, int batch, int rows, dp_err *err)
{
    int in = m->gan_split ? m->layers[m->gan_split].in : m->in_features; /* the data's */
    size_t data = dp_size_mul(batch, in > m->targets ? in : m->targets);
    if (data > DP_MAX_FLOATS)
        return dp_fail(err, "a batch of %d samples of %d values is %zu floats, more than one "
                            "buffer may hold (%d); use a smaller [data] batch",
                       batch, in, data, DP_MAX_FLOATS);
    for (int i = 0; i < m->n_layers; i++) {
        const dp_layer *l = &m->layers[i];
        size_t per_row = (size_t)(l->in > l->out ? l->in : l->out);
        per_row = l->saved > per_row ? l->saved : per_row;
        size_t need = dp_size_mul(per_row, rows);
        size_t scratch = l->ops->scratch ? l->ops->scratch(l, rows, NULL) : 0;
        need = scratch > need ? scratch : need;
        if (need > DP_MAX_FLOATS)
            return dp_fail(err, "layer %d (%s): micro-batches of %d samples need %zu floats "
                                "in one buffer, more than it may hold (%d); use a smaller "
                                "[data] batch or more micro-batches",
                           i, l->ops->name, rows, need, DP_MAX_FLOATS);
    }
    return 0;
}

int dp_plan_make(dp_plan *p, const dp_plan_request *req, int devices, const dp_model *m,
                 int batch, const double *cost, dp_err *err)
{
    memset(p, 0, sizeof *p);
    p->strategy = req->strategy;
    p->schedule = req->schedule;
    int S = 1, R = 1;
    switch (req->strategy) {
    case DP_STRATEGY_SINGLE:
        break;
    case DP_STRATEGY_DP:
        R = devices;
        break;
    case DP_STRATEGY_PP: {
        int with_params = layers_with_params(m); /* by default, the most stages there can be */
        S = req->stages ? req->stages : devices < with_params ? devices : with_params;
        if (S < 1 || S > devices)
            return dp_fail(err, "pp runs one stage per device: %d stages need %d devices, and "
                                "there are %d",
                           S, S, devices);
        break;
    }
    case DP_STRATEGY_HYBRID:
        S = req->stages ? req->stages : 2;
        if (S < 1 || devices % S != 0)
            return dp_fail(err, "hybrid needs the devices (%d) to be a multiple of the stages "
                                "(%d); set --stages to a divisor of %d",
                           devices, S, devices);
        R = devices / S;
        break;
    }
    if (R * S > DP_MAX_DEVICES)
        return dp_fail(err, "%d devices are more than dpmptop drives (%d)", R * S, DP_MAX_DEVICES);
    int M = req->micro ? req->micro : (S > 1 ? 2 * S : 1);
    if (batch < R * M)
        return dp_fail(err, "a batch of %d cannot feed %d replica%s x %d micro-batch%s; use a "
                            "batch of at least %d or fewer micro-batches",
                       batch, R, R == 1 ? "" : "s", M, M == 1 ? "" : "es", R * M);
    int shard = (batch + R - 1) / R; /* the rows of a micro-batch, as dp_team_start cuts them */
    if (check_rows(m, batch, (shard + M - 1) / M, err) < 0)
        return -1;
    p->replicas = R;
    p->stages = S;
    p->micro = M;
    p->workers = R * S;
    return balance(p, m, S, cost, err);
}

/* The fewest samples a micro-batch of a batch of `rows` gets under p (all replicas' j-th
 * together), leaving out empty ones (which normalise nothing). */
static int smallest_group(const dp_plan *p, int rows, int replicas)
{
    int least = 0;
    for (int j = 0; j < p->micro; j++) {
        int group = 0;
        for (int r = 0; r < replicas; r++)
            group += dp_split_rows(dp_split_rows(rows, replicas, r), p->micro, j);
        if (group > 0 && (least == 0 || group < least))
            least = group;
    }
    return least;
}

int dp_plan_check_batch_norm(const dp_plan *p, const dp_model *m, int batch, long samples,
                             dp_err *err)
{
    int layer = dp_model_bn_per_sample(m);
    if (layer < 0 || samples < 1)
        return 0;
    int replicas = p->replicas * dp_world_size();
    int full = samples < batch ? (int)samples : batch;
    int last = samples > batch ? (int)(samples % batch) : 0;
    const char *why = "its variance would be 0 (PyTorch refuses such a batch) and its running "
                      "variance would shrink towards 0";
    const char *fewer = p->micro > 1 ? "fewer micro-batches, or " : "";
    if (smallest_group(p, full, replicas) == 1)
        return dp_fail(err, "layer %d's batch normalisation has one value per channel in a "
                            "sample, and batches of %d in %d micro-batch%s give it a single "
                            "sample: %s; use %sa larger [data] batch",
                       layer, full, p->micro, p->micro == 1 ? "" : "es", why, fewer);
    if (last > 0 && smallest_group(p, last, replicas) == 1)
        return dp_fail(err, "layer %d's batch normalisation has one value per channel in a "
                            "sample, and the last batch of each epoch (%ld samples in batches of "
                            "%d leave %d) in %d micro-batch%s gives it a single sample: %s; use "
                            "%sa batch that leaves more samples (or none)",
                       layer, samples, batch, last, p->micro, p->micro == 1 ? "" : "es", why,
                       fewer);
    return 0;
}

bool dp_plan_cut_reason(const dp_plan_request *req, int devices, const dp_model *m, char *buf,
                        size_t size)
{
    int with_params = layers_with_params(m);
    if (req->strategy != DP_STRATEGY_PP || req->stages || with_params >= devices)
        return false;
    snprintf(buf, size, "pp: %d stage%s, not %d: the model has %d layer%s with parameters and "
                        "a stage needs one, so %d device%s stay%s unused",
             with_params, with_params == 1 ? "" : "s", devices, with_params,
             with_params == 1 ? "" : "s", devices - with_params,
             devices - with_params == 1 ? "" : "s", devices - with_params == 1 ? "s" : "");
    return true;
}

void dp_plan_describe(const dp_plan *p, char *buf, size_t size)
{
    const char *sched = p->schedule == DP_SCHEDULE_GPIPE ? "GPipe" : "1F1B";
    switch (p->strategy) {
    case DP_STRATEGY_SINGLE: /* micro-batches without a pipeline: gradient accumulation */
        if (p->micro > 1)
            snprintf(buf, size, "single, %d micro", p->micro);
        else
            snprintf(buf, size, "single");
        break;
    case DP_STRATEGY_DP:
        if (p->micro > 1)
            snprintf(buf, size, "DP x%d, %d micro", p->replicas, p->micro);
        else
            snprintf(buf, size, p->replicas == 1 ? "DP x1 (one device)" : "DP x%d", p->replicas);
        break;
    case DP_STRATEGY_PP:
        snprintf(buf, size, "PP %d stage%s, %d micro, %s", p->stages, p->stages == 1 ? "" : "s",
                 p->micro, sched);
        break;
    case DP_STRATEGY_HYBRID:
        snprintf(buf, size, "DP%d x PP%d, %d micro, %s", p->replicas, p->stages, p->micro, sched);
        break;
    }
}
