/* health.c -- the run's state as the health line shows it. */
#include "tui/health.h"

dp_run_state dp_health_state(const dp_control_status *s)
{
    if (s->finished)
        return DP_STATE_FINISHED;
    if (s->paused && s->state != DP_STATE_EVALUATING)
        return DP_STATE_PAUSED; /* asked for: the loop pauses after its step */
    if (s->state == DP_STATE_STARTING && s->step > 0)
        return DP_STATE_TRAINING;
    return s->state;
}

bool dp_health_stalled(const dp_control_status *s, double now, double *for_s)
{
    *for_s = 0;
    if (dp_health_state(s) != DP_STATE_TRAINING || s->last_step_end <= 0)
        return false;
    double limit = DP_STALL_STEPS * s->typical_step_s;
    limit = limit > DP_STALL_MIN_S ? limit : DP_STALL_MIN_S;
    *for_s = now - s->last_step_end;
    return *for_s > limit;
}
