/* dashboard.h -- the interactive mode: a live ncurses view of the run, and keys that steer it.
 *
 * The training loop runs on its own thread and publishes its status through a dp_control; the
 * dashboard runs on the main thread, the only one that touches ncurses, reads snapshots of that
 * status and the engine's metrics at its own pace, and sends the keys' requests to the same
 * control (engine/control.h: every hand-off goes through its accessors). */
#ifndef DP_TUI_DASHBOARD_H
#define DP_TUI_DASHBOARD_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "engine/control.h"
#include "engine/monitor.h"
#include "engine/plan.h"
#include "engine/trainer.h"

/* What the header shows and how the dashboard draws. */
typedef struct dp_dashboard_info {
    const char *version;
    const char *run_name;
    const char *data_name;   /* "fashion-mnist train" */
    long samples;
    const char *model;       /* the layer list */
    size_t params;
    int refresh_ms;
    bool color;              /* dashboard.color, and no NO_COLOR in the environment */
    dp_monitor *monitor;     /* the other processes' devices under mpirun, or NULL */
    /* The terminal: -1 for stdin and stdout; under mpirun the launcher's, whose foreground
     * job the dashboard becomes while it runs (keys and Ctrl-C come to it). */
    int tty;
    int max_stages;          /* the model's layers with parameters (0: unknown), to say why a
                              * pipeline leaves devices unused */
    /* A GAN's samples lie in the data's range, [-1, 1] ([data] range = -1:1) or [0, 1]: what
     * their picture maps to black and white. range_lo >= range_hi (both 0, not set): not
     * told, and the picture takes [-1, 1] when a sample is below 0, else [0, 1]. */
    float range_lo, range_hi;
    bool masked;             /* a masked language model's run (objective = mlm): its loss is
                              * the mean over the chosen bytes, labelled "mloss" */
} dp_dashboard_info;

/* Runs the dashboard until the user quits (q or F10) or *stop is set by a signal, and the
 * training loop has finished (or 3 s after the signal when it is stuck; under mpirun at once,
 * as the signal may be the launcher ending the run). Restores the terminal before returning. Returns 0, or -1 when
 * the terminal cannot be used (with a message on stderr). */
int dp_dashboard_run(dp_trainer *t, dp_control *ctl, const dp_dashboard_info *info,
                     atomic_int *stop);

/* Whether ncurses knows the terminal TERM names (and it is not a hardcopy one); says why not
 * on stderr. Asked before the run starts, so that a dashboard that cannot be shown fails the
 * run before it trains. */
bool dp_dashboard_terminal_usable(void);
/* Says on stderr that the terminal cannot be used, and what to do. */
void dp_say_terminal_unusable(void);

/* Gives the terminal back as it was before the dashboard (settings, cursor, main screen)
 * without ncurses, from a signal handler about to _exit; does nothing when no dashboard runs.
 * Async-signal-safe. */
void dp_dashboard_restore_terminal(void);

#endif
