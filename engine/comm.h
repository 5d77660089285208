/* comm.h -- all-reduce (sum) inside a group of devices: the replicas of one stage.
 *
 * Every member calls dp_comm_allreduce with its own buffer of the same length, in the same order
 * of calls, each from its own thread. A host group (CPU devices; GPUs shared unevenly, staged
 * through host memory) reduce-scatters and all-gathers in shared memory: each member sums its
 * own slice of every buffer in member order, so all members get bit-identical results, and the
 * call returns when every buffer holds the sum. A device group (the backend's group_* slots,
 * backend.h; CUDA: NCCL, or a reduction kernel on one GPU, in member order too) issues the sum
 * on the member's comm stream and returns; dp_comm_join then orders it before the member's
 * later operations. In a world of several processes the host group sums across them between
 * its reduce-scatter and all-gather (world.h); a device group spans the processes itself. */
#ifndef DP_COMM_H
#define DP_COMM_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/backend.h"
#include "base/error.h"

typedef struct dp_comm dp_comm;

/* A group of `size` members (ranks 0..size-1), members[r] the device of rank r. */
dp_comm *dp_comm_create(dp_device **members, int size, dp_err *err);
void dp_comm_destroy(dp_comm *c);
/* Whether buffers are device memory (a device group); else host memory. */
bool dp_comm_on_device(const dp_comm *c);
/* "host", "NCCL" or "one-GPU reduction". */
const char *dp_comm_kind(const dp_comm *c);
/* buf[n] of member `rank` is replaced by the sum over all members. */
void dp_comm_allreduce(dp_comm *c, int rank, float *buf, size_t n);
/* Member `rank`'s operations issued from now on see the sums (waits for a device group's). */
void dp_comm_join(dp_comm *c, int rank);
/* A small all-reduce in the middle of a pass (batch statistics): buf[n], device memory of d,
 * holds the sum for every operation issued on d after the call, whatever the group's kind
 * (through host memory for a host group of devices the host cannot address). */
void dp_comm_allreduce_now(dp_comm *c, int rank, dp_device *d, float *buf, size_t n);
/* Seconds member `rank`'s calls of dp_comm_allreduce_now have taken so far (waiting for the
 * other members included); read by that member's thread, which alone adds to it. */
double dp_comm_now_seconds(const dp_comm *c, int rank);

#endif
