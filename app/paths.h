/* paths.h -- the checks on the run's output paths, made before any work. */
#ifndef DP_APP_PATHS_H
#define DP_APP_PATHS_H

#include "app/cli.h"
#include "app/configuration.h"
#include "base/fileio.h"

/* Refuses an output path that cannot take a file (empty, a directory, an unwritable place, a
 * named pipe without a reader) before any work is done. An output that is not a regular file
 * (a terminal, a pipe) is opened now and held open in *held until the run ends: closing a
 * probe of a named pipe would end its reader's input. */
int dp_check_output_path(const char *option, const char *path, dp_atomic_file *held);

/* Refuses outputs (--save, --metrics) that name the same file as each other or as an input
 * (-c, --init, the data), that bear a name the data reader reads in the data directory (any
 * name in a text directory), or that lie inside the checkpoint directory or the one --resume
 * reads, before any work: the run would destroy or change what it reads or writes. */
int dp_check_distinct_paths(const dp_options *o, const dp_config *c);

#endif
