/* health.h -- what the health line says of the run's state, as pure functions of the control's
 * status, tested without a terminal. */
#ifndef DP_TUI_HEALTH_H
#define DP_TUI_HEALTH_H

#include <stdbool.h>

#include "engine/control.h"

#define DP_STALL_MIN_S 2.0   /* a stall is never called under this ... */
#define DP_STALL_STEPS 5.0   /* ... nor under this many usual steps */

/* The state to show: the control's, with what the view knows first (the end, a pause asked
 * for), and TRAINING once a step was made if the control still says STARTING. */
dp_run_state dp_health_state(const dp_control_status *s);

/* Whether, at time `now` (dp_now_s), no step has ended for max(DP_STALL_STEPS x the usual
 * step time, DP_STALL_MIN_S) while training; *for_s: how long. */
bool dp_health_stalled(const dp_control_status *s, double now, double *for_s);

#endif
