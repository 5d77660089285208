/* advise.h -- the plan advisor in a run: the candidates for the run's model and devices with
 * the memory each would take, the plan an `auto` run starts with, and the table in words.
 * The search itself runs in the run loop (run_loop.c), which takes the steps it measures;
 * its logic is engine/advisor.h's. */
#ifndef DP_APP_ADVISE_H
#define DP_APP_ADVISE_H

#include <stdbool.h>
#include <stdio.h>

#include "engine/advisor.h"
#include "engine/backend.h"
#include "engine/optim.h"

/* Predicts a plan's memory: the plan req makes, and its bytes on each of the run's devices
 * (bytes[n_devices]). */
typedef int (*dp_advise_predict_fn)(void *arg, const dp_plan_request *req, dp_plan *p,
                                    size_t *bytes, dp_err *err);

/* The prediction before a trainer exists: pipeline stages cut by FLOPs, no data on the
 * devices. arg: a dp_advise_static. */
typedef struct dp_advise_static {
    const dp_model *model;
    const dp_optim_config *optim;
    int batch;
    dp_device *devices; /* the run's (a layer's scratch depends on its device's library) */
    int n_devices;
} dp_advise_static;
int dp_advise_predict_static(void *arg, const dp_plan_request *req, dp_plan *p, size_t *bytes,
                             dp_err *err);

/* Fills tab (tab->c with room for DP_ADVICE_MAX) with the plans m allows on the devices
 * (dp_advice_enumerate), each one described and its memory predicted; those that do not fit a
 * device (its mem_total: the [parallel] device_memory limit, a GPU's memory, the host's) are
 * left out, saying so; with costs, each gets its cost estimate (dp_advice_estimate). Fails
 * (err) for a model the advisor cannot plan (a GAN). */
int dp_advise_candidates(dp_advice_table *tab, const dp_model *m, int batch, bool bn_micro_ok,
                         const dp_device *devices, int n_devices, dp_advise_predict_fn predict,
                         void *arg, const dp_advice_costs *costs, dp_err *err);

/* The plan an `auto` run starts with: single when it fits, else the one that needs the least
 * on its fullest device. -1 when none fits: err then names the smallest plan's need. */
int dp_advise_first_plan(const dp_advice_table *tab, dp_err *err);

/* Writes the table as text, a line a candidate, for headless output and stderr. */
void dp_advise_print(FILE *f, const dp_advice_table *tab);

#endif
