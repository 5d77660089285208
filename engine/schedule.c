/* schedule.c -- GPipe and 1F1B op lists. */
#include "engine/schedule.h"

void dp_schedule_ops(dp_schedule kind, int S, int s, int M, dp_sched_op *ops)
{
    int n = 0;
    if (kind == DP_SCHEDULE_GPIPE) {
        for (int j = 0; j < M; j++)
            ops[n++] = (dp_sched_op){ 'F', j };
        for (int j = 0; j < M; j++)
            ops[n++] = (dp_sched_op){ 'B', j };
        return;
    }
    int warmup = S - s - 1 < M ? S - s - 1 : M;
    int f = 0, b = 0;
    while (f < warmup)
        ops[n++] = (dp_sched_op){ 'F', f++ };
    while (f < M) {
        ops[n++] = (dp_sched_op){ 'F', f++ };
        ops[n++] = (dp_sched_op){ 'B', b++ };
    }
    while (b < M)
        ops[n++] = (dp_sched_op){ 'B', b++ };
}

int dp_schedule_in_flight(const dp_sched_op *ops, int n_ops)
{
    int now = 0, most = 0;
    for (int i = 0; i < n_ops; i++) {
        now += ops[i].kind == 'F' ? 1 : -1;
        if (now > most)
            most = now;
    }
    return most;
}
