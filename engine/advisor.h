/* advisor.h -- the plan advisor's search (issue 20): which plans a model allows on a device set,
 * and which of them is fastest, measured on the training itself by successive halving.
 *
 * This part is pure logic: the run (trainer.c) supplies each candidate's measured step time
 * through a callback, so the search is tested with injected timings (tests/test_advisor.c).
 * Memory prediction and the cost estimate that orders the candidates come later. */
#ifndef DP_ADVISOR_H
#define DP_ADVISOR_H

#include <stdbool.h>

#include "engine/plan.h"

#define DP_ADVICE_MAX 256 /* candidates enumerated at most */

/* A plan the advisor considers, and what became of it. */
typedef struct dp_advice {
    dp_plan_request req;
    int devices;          /* the devices it uses (pp may leave some unused) */
    bool left_out;        /* not measured: why says why */
    char why[160];
    double step_s;        /* measured seconds a step, the mean of its last round; 0: none yet */
    int steps;            /* steps it was measured over, in all */
    bool dropped;         /* stopped early: clearly slower than the best */
} dp_advice;

/* What the enumeration may do. */
typedef struct dp_advice_limits {
    int devices;          /* the run's devices */
    int batch;            /* the global batch */
    bool bn_micro_ok;     /* the user allows batch normalisation over micro-batches */
} dp_advice_limits;

/* Fills out[] with the plans the devices allow for m: single; dp over every device; pp of
 * every stage count 2..min(devices, the layers with parameters), on that many devices; hybrid
 * for every stage count that divides the devices (with at least two replicas); pipelines with
 * S, 2S and 4S micro-batches where the batch allows (at least one row per micro-batch of a
 * replica) and both schedules. Plans that cannot be used are listed too, left out with the
 * reason (a model with batch normalisation and a pipeline of several micro-batches, unless
 * lim->bn_micro_ok). Returns the count, or -1 (err) for a model no plan can train here (a
 * GAN: not yet). */
int dp_advice_enumerate(const dp_model *m, const dp_advice_limits *lim, dp_advice *out,
                        int max, dp_err *err);

/* Measures `steps` steps of a candidate and returns their mean seconds a step (<= 0: it
 * failed, and the candidate is left out). */
typedef double (*dp_advice_measure_fn)(void *arg, const dp_advice *a, int steps);

/* Successive halving over the candidates not left out, in their order: a round measures every
 * live candidate for `steps` steps, then drops those slower than `keep` times the round's best
 * and, of the rest, the slower half; the next round doubles the steps; it ends when one is
 * left, or after `rounds` rounds (then the fastest of the last round). Returns the index of
 * the chosen one, or -1 when none could be measured. */
int dp_advice_search(dp_advice *c, int n, int steps, int rounds, double keep,
                     dp_advice_measure_fn measure, void *arg);

#endif
