/* error.h -- how the engine reports a failure without writing to the terminal.
 *
 * Engine functions that can fail take a `dp_err *` and return -1 (or NULL) after filling it
 * with one line that says what happened and what to do; the caller decides how to show it. */
#ifndef DP_ERROR_H
#define DP_ERROR_H

#include <stdarg.h>

typedef struct dp_err {
    char msg[512];
} dp_err;

/* Fills err (when not NULL) with a printf-style message; always returns -1. */
int dp_fail(dp_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Adds a prefix ("while reading X: ") in front of the message already in err. */
void dp_err_prefix(dp_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
