/* fileio.h -- writing files so that a crash or a full disk never leaves a half-written file
 * where a good one was. */
#ifndef DP_FILEIO_H
#define DP_FILEIO_H

#include <stdio.h>

#include "base/error.h"

/* A file being written under a temporary name beside its final path. */
typedef struct dp_atomic_file {
    FILE *f;
    char path[4096];
    char tmp[4096 + 16]; /* "" when writing straight to path (see dp_atomic_open) */
} dp_atomic_file;

/* Creates path's temporary sibling for writing. When path exists and is not a regular file
 * (a terminal, /dev/null, a pipe with a reader), it is written directly instead: renaming
 * over it would replace the device or pipe with a file. Other devices, and a named pipe that
 * no process reads, are refused. */
int dp_atomic_open(dp_atomic_file *af, const char *path, dp_err *err);
/* Flushes, fsyncs and renames the temporary file over path, then fsyncs the directory. On
 * any failure the temporary file is removed and path is left as it was (err says "PATH:
 * cannot write: REASON"; the caller says what was kept). */
int dp_atomic_commit(dp_atomic_file *af, dp_err *err);
/* Gives up: closes and removes the temporary file. */
void dp_atomic_abort(dp_atomic_file *af);

/* fsyncs a directory, so that renames and removals in it are durable. */
void dp_sync_dir(const char *dir);

/* Opens an input (data, weights, a configuration, a checkpoint's file) for reading, refusing
 * anything but a regular file before a byte is read: a FIFO, a device such as /dev/zero or a
 * directory would block or never end. Opened with O_NONBLOCK (so a FIFO cannot block open),
 * then checked with fstat; returns the descriptor (blocking again), or -1 with err saying
 * "PATH: why" and what to give instead. */
int dp_open_input(const char *path, dp_err *err);

/* dp_open_input as a stdio stream ("rb"). */
FILE *dp_fopen_input(const char *path, dp_err *err);

/* Removes the temporary files of every dp_atomic_file still open: called by a signal handler
 * that is about to _exit, so async-signal-safe (unlink only). */
void dp_atomic_remove_all(void);

/* Records a temporary directory of plain files (a checkpoint being written) for
 * dp_atomic_remove_all, and forgets it once it is renamed into place or removed. */
void dp_atomic_track_dir(const char *dir);
void dp_atomic_forget_dir(const char *dir);

/* Reads a whole file into a malloc'd buffer (at most max_bytes). */
int dp_read_file(const char *path, size_t max_bytes, unsigned char **buf, size_t *len,
                 dp_err *err);

#endif
