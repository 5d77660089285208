/* interactive.h -- the run under the dashboard: the loop on a thread of its own, publishing to
 * the control the dashboard reads, while the dashboard runs on the calling thread. */
#ifndef DP_APP_INTERACTIVE_H
#define DP_APP_INTERACTIVE_H

#include "app/run_loop.h"
#include "tui/dashboard.h"

/* An observer that puts the run's events and end on c's event line, for the dashboard to show
 * (the loop itself publishes its steps, evaluations and state to its control). */
dp_run_observer dp_control_observer(dp_control *c);

/* Trains on a thread of its own with o (o->control is the dashboard's; the status observer is
 * added here) while the dashboard runs on this one (the only thread that touches ncurses);
 * prints the summary once the terminal is back. Returns the run's status. */
int dp_run_with_dashboard(dp_trainer *t, const dp_run_loop_opts *o,
                          const dp_dashboard_info *info, dp_run_result *res, dp_err *err);

#endif
