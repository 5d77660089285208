/* comm.h -- all-reduce (sum) inside a group of devices.
 *
 * Every member calls dp_comm_allreduce with its own buffer of the same length, in the same order
 * of calls; each returns when every member's buffer holds the sum. The host implementation
 * (comm_host.c) reduce-scatters and all-gathers in shared memory: each member sums its own
 * slice of every buffer, in member order, so all members get bit-identical results. */
#ifndef DP_COMM_H
#define DP_COMM_H

#include <stddef.h>

#include "engine/error.h"

typedef struct dp_comm dp_comm;

/* A group of `size` members (ranks 0..size-1). */
dp_comm *dp_comm_create(int size, dp_err *err);
void dp_comm_destroy(dp_comm *c);

/* buf[n] of member `rank` is replaced by the sum over all members. */
void dp_comm_allreduce(dp_comm *c, int rank, float *buf, size_t n);

#endif
