/* headless.h -- the batch mode's output: a progress line, evaluations, events and a summary,
 * printed by an observer of the run loop, for scripts and terminals alike. */
#ifndef DP_APP_HEADLESS_H
#define DP_APP_HEADLESS_H

#include <stdio.h>

#include "app/run_loop.h"

/* The progress printer's state; owned by the caller, used on the loop's thread. */
typedef struct dp_headless_printer {
    FILE *out;                /* progress, evaluations, events, summary */
    int out_is_tty;           /* redraw the progress line in place */
    double last_print;        /* dp_now_s() of the last progress line */
} dp_headless_printer;

/* An observer printing to out; p must outlive the run. */
dp_run_observer dp_headless_observer(dp_headless_printer *p, FILE *out, int out_is_tty);

/* Prints the summary line and the per-device table to out. */
void dp_headless_print_summary(dp_trainer *t, const dp_run_result *res, FILE *out);

#endif
