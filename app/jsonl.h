/* jsonl.h -- the run's metrics as JSON Lines (--metrics): an observer of the run loop that
 * writes a record per switch, step, device, evaluation, and a summary at the end. */
#ifndef DP_APP_JSONL_H
#define DP_APP_JSONL_H

#include <stdio.h>

#include "app/run_loop.h"

/* An observer writing to f (which stays the caller's: it is flushed at the end, not closed). */
dp_run_observer dp_jsonl_observer(FILE *f);

#endif
