/* plan.h -- a strategy made concrete: which device holds which layers of which replica, and how a
 * step's batch is cut into shards and micro-batches.
 *
 * Devices are numbered 0..n-1. Replica r, stage s runs on device r * stages + s, so a pipeline
 * holds consecutive devices. single uses device 0 only; dp is stages = 1 on every device; pp is
 * one pipeline of `stages` stages (every device by default); hybrid is devices / stages
 * pipelines. Devices a plan leaves out stay unused. */
#ifndef DP_PLAN_H
#define DP_PLAN_H

#include "base/error.h"
#include "engine/model.h"

#define DP_MAX_DEVICES 64

typedef enum dp_strategy { DP_STRATEGY_SINGLE, DP_STRATEGY_DP, DP_STRATEGY_PP, DP_STRATEGY_HYBRID } dp_strategy;
typedef enum dp_schedule { DP_SCHEDULE_GPIPE, DP_SCHEDULE_1F1B } dp_schedule;

/* What a user asks for; 0 in stages or micro means "the default". */
typedef struct dp_plan_request {
    dp_strategy strategy;
    int stages;         /* pp: defaults to the device count (or the layers with parameters,
                           when fewer); hybrid: defaults to 2; ignored by single and dp */
    int micro;          /* defaults to 2 x stages for pipelines, 1 otherwise */
    dp_schedule schedule;
} dp_plan_request;

typedef struct dp_plan {
    dp_strategy strategy;
    dp_schedule schedule;
    int replicas;       /* R: copies of the model */
    int stages;         /* S: pipeline stages per replica */
    int micro;          /* M: micro-batches per replica per step */
    int workers;        /* R x S devices in use, 0..workers-1 */
    int first_layer[DP_MAX_DEVICES + 1]; /* stage s holds layers [first_layer[s], first_layer[s+1]) */
} dp_plan;

/* Makes the plan for `devices` devices, a model and a global batch; refuses (with one line in
 * err) what cannot be made: more stages than layers with parameters, devices not a multiple of
 * the stages, a batch smaller than replicas x micro-batches. Pipeline stages are balanced by
 * each layer's cost: cost[n_layers] (measured seconds, dp_stage_profile) or, when NULL, its
 * FLOPs. */
int dp_plan_make(dp_plan *p, const dp_plan_request *req, int devices, const dp_model *m,
                 int batch, const double *cost, dp_err *err);

/* Refuses, with err saying why and what to do, a plan under which batch normalisation would
 * normalise a single value per channel (dp_model_bn_per_sample) in some micro-batch of the
 * steps: of a full batch of `batch` rows, or of the short last batch an epoch of `samples`
 * leaves. Its variance is 0 there (PyTorch refuses such a batch), and its running variance
 * would shrink towards 0. The micro-batches of a plan's replicas, in this process and the
 * others, are normalised together. */
int dp_plan_check_batch_norm(const dp_plan *p, const dp_model *m, int batch, long samples,
                             dp_err *err);

/* The most pipeline stages the model can have: its layers with parameters (a stage needs one). */
int dp_plan_max_stages(const dp_model *m);

/* Why the plan that req makes on `devices` devices leaves some of them unused when the model,
 * not the request, decides it ("pp: 2 stages, not 4: the model has 2 layers with
 * parameters..."): writes the reason into buf and returns true; false when the plan uses
 * every device the request asks for. The one place that says it, for the banner, the
 * dashboard and a plan advisor. */
bool dp_plan_cut_reason(const dp_plan_request *req, int devices, const dp_model *m, char *buf,
                        size_t size);

/* "single", "DP x4", "PP 4 stages, 8 micro, 1F1B", "DP2 x PP2, 4 micro, GPipe". */
void dp_plan_describe(const dp_plan *p, char *buf, size_t size);

/* Rows of part i when `rows` are cut into `parts` nearly equal parts (the first rows % parts
 * parts get one more), and where part i starts. */
int dp_split_rows(int rows, int parts, int i);
int dp_split_start(int rows, int parts, int i);

/* Names, and the parsed forms of "single|dp|pp|hybrid" and "gpipe|1f1b" (-1 if unknown). The
 * lists are indexed by dp_strategy and dp_schedule, and NULL-terminated. */
extern const char *const dp_strategy_names[];
extern const char *const dp_schedule_names[];
const char *dp_strategy_name(int strategy);
const char *dp_schedule_name(int schedule);
int dp_strategy_parse(const char *name);

#endif
