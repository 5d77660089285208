/* schedule.h -- pipeline schedules as per-stage lists of operations.
 *
 * F(j): forward micro-batch j through the stage (receiving its input from the stage before,
 * sending its output to the stage after). B(j): backward micro-batch j (receiving the output's
 * gradient, sending the input's). GPipe: every F, then every B. 1F1B: stage s runs
 * min(S - s - 1, M) forwards, then alternates F and B, then drains the remaining B, so that at
 * most S - s micro-batches are in flight on stage s. */
#ifndef DP_SCHEDULE_H
#define DP_SCHEDULE_H

#include "engine/plan.h"

typedef struct dp_sched_op {
    char kind; /* 'F' or 'B' */
    int micro;
} dp_sched_op;

/* Writes the 2M operations of stage s (of S) into ops[2 * M]. */
void dp_schedule_ops(dp_schedule kind, int S, int s, int M, dp_sched_op *ops);

/* The most micro-batches a stage holds at once under these ops (forwarded, not yet backward). */
int dp_schedule_in_flight(const dp_sched_op *ops, int n_ops);

#endif
