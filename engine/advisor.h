/* advisor.h -- the plan advisor's search (issue 20): which plans a model allows on a device set,
 * and which of them is fastest, measured on the training itself by successive halving.
 *
 * This part is pure logic: the run (app/run_loop.c) supplies each candidate's memory need
 * (dp_trainer_plan_bytes), the layers' measured times and each candidate's measured step time
 * through a callback, so the search is tested with injected timings (tests/test_advisor.c). */
#ifndef DP_ADVISOR_H
#define DP_ADVISOR_H

#include <stdbool.h>

#include "engine/plan.h"

#define DP_ADVICE_MAX 1024 /* candidates enumerated at most (a table that reaches it says so) */

/* A plan the advisor considers, and what became of it. */
typedef struct dp_advice {
    dp_plan_request req;
    int devices;          /* the devices it uses (pp may leave some unused) */
    char plan[64];        /* its description (dp_plan_describe), once made */
    bool left_out;        /* not measured: why says why */
    bool no_room;         /* ... because it does not fit a device's memory */
    char why[160];
    double estimate_s;    /* the cost estimate of a step (dp_advice_estimate); 0: none */
    size_t need[DP_MAX_DEVICES]; /* predicted bytes on each of the run's devices */
    size_t peak[DP_MAX_DEVICES]; /* measured: the most bytes each device held under it */
    double step_s;        /* measured seconds a step, the mean of its last round; 0: none yet */
    int steps;            /* steps it was measured over, in all */
    bool dropped;         /* stopped early: clearly slower than the best */
    bool chosen;
    /* measured over its last round, over the devices it uses: the shares of their step time
     * spent neither computing nor communicating (idle: the pipeline's bubble, waits for a
     * neighbour, and the host's work between passes) and communicating, and the model FLOPs
     * utilisation (their GEMM FLOPs over the step time times their peak FLOP/s; < 0: a peak
     * unknown) */
    double idle, comm, mfu;
} dp_advice;

/* A search's result: the candidates as the table shows them, and what it decided. */
typedef struct dp_advice_table {
    int n;
    dp_advice *c;         /* [n], in the table's order (dp_advice_sort) */
    int chosen;           /* index in c, or -1 */
    int measured;         /* candidates measured (at least one round) */
    bool truncated;       /* there were more than DP_ADVICE_MAX plans: the later ones (deep
                             pipelines, hybrids) were not considered */
    int n_devices;
    char device[DP_MAX_DEVICES][32]; /* the run's devices' names */
    int batch;
    long first_step, last_step; /* the training steps the search took */
    double seconds;       /* its wall time, step time and switches */
    char outcome[200];    /* "chose DP x2, 1.62x single" or why it stopped */
} dp_advice_table;

/* What the enumeration may do. */
typedef struct dp_advice_limits {
    int devices;          /* the run's devices */
    int batch;            /* the global batch */
    bool bn_micro_ok;     /* the user allows batch normalisation over micro-batches */
} dp_advice_limits;

/* Fills out[] with the plans the devices allow for m: single; dp over every device; pp of
 * every stage count 2..min(devices, the layers with parameters), on that many devices (deeper
 * ones listed once each, left out: too few layers); hybrid
 * for every stage count that divides the devices (with at least two replicas); pipelines with
 * S, 2S and 4S micro-batches where the batch allows (at least one row per micro-batch of a
 * replica) and both schedules. Plans that cannot be used are listed too, left out with the
 * reason (a model with batch normalisation and a pipeline of several micro-batches, unless
 * lim->bn_micro_ok; such a model gets pipelines of one micro-batch too). Returns the count, or -1 (err) for a model no plan can train here (a
 * GAN: not yet). */
int dp_advice_enumerate(const dp_model *m, const dp_advice_limits *lim, dp_advice *out,
                        int max, dp_err *err);

/* Leaves out, saying why, every candidate whose predicted memory exceeds a device's room:
 * room[d] bytes on device d, named name[d], of n_devices. Returns how many remain. */
int dp_advice_fit(dp_advice *c, int n, const size_t *room, const char (*name)[32],
                  int n_devices);

/* The most bytes a candidate needs on one device, and which device (*device). */
size_t dp_advice_most_need(const dp_advice *a, int n_devices, int *device);

/* What the cost estimate knows of the machine: each layer's forward plus backward seconds
 * (or any cost in proportion, such as FLOPs) for passes of `rows` rows with `threads` GEMM
 * threads; the cores CPU devices share (0: GPUs, each device its own), and the GEMM threads
 * a worker gets when it is alone and when there are several. */
typedef struct dp_advice_costs {
    const double *layer;  /* [n_layers] */
    int rows, threads;
    int cores;
    int threads_alone, threads_shared;
} dp_advice_costs;

/* A step's cost estimate under plan p (seconds when the costs are): each stage's share of the
 * layers' cost scaled to its micro-batch and to its workers' threads, slowed when the threads
 * outnumber the cores, times the micro-batches plus the pipeline's fill and drain, M + S - 1.
 * Communication is left out. For ordering plans only. */
double dp_advice_estimate(const dp_plan *p, const dp_advice_costs *k, int batch);

/* Keeps for measuring the candidates whose estimate is within `factor` of the best one's, at
 * most `most` of them (the lowest estimates); the others are left out, saying so. Candidates
 * without an estimate are kept. Returns how many remain. */
int dp_advice_shortlist(dp_advice *c, int n, int most, double factor);

/* Measures `steps` steps of a candidate and returns their mean seconds a step; 0: it failed
 * (a->why says why, and it is left out); < 0: the search must stop (the run ends). */
typedef double (*dp_advice_measure_fn)(void *arg, dp_advice *a, int steps);

/* Successive halving over the candidates not left out, in their order: a round measures every
 * live candidate for `steps` steps, then drops those slower than `keep` times the round's best
 * and, of the rest, the slower half; the next round doubles the steps; it ends when one is
 * left, or after `rounds` rounds (then the fastest of the last round). Returns the index of
 * the chosen one (marked chosen), -1 when none could be measured, or -2 when measure asked to
 * stop. Candidates are measured in their order in c. */
int dp_advice_search(dp_advice *c, int n, int steps, int rounds, double keep,
                     dp_advice_measure_fn measure, void *arg);

/* Orders a table for showing: the chosen plan, the others measured (fastest first, those
 * measured longest before those dropped earlier), then those left out. */
void dp_advice_sort(dp_advice *c, int n);

/* "3.1 GiB", "512.0 MiB", "640 B": bytes in binary units, for messages and tables. */
void dp_advice_bytes(char *buf, size_t size, size_t bytes);

#endif
