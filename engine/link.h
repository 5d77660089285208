/* link.h -- stage-to-stage transfer: activations forward, their gradients back.
 *
 * A link is a one-way FIFO of micro-batches between two devices, with a fixed number of slots
 * that are reused: dp_link_send waits for a free slot, dp_link_recv for the next message. The
 * FIFO's hand-off is on the host (link_host.c); the copies go through host slot memory, or
 * between two devices of a backend with a transport of its own (its xfer_* slots, backend.h:
 * two GPUs) through slots in the receiver's memory, on the devices' streams. The time spent waiting and the time spent copying are reported separately
 * (waiting is pipeline bubble). */
#ifndef DP_LINK_H
#define DP_LINK_H

#include <stddef.h>

#include "engine/backend.h"
#include "base/error.h"

typedef struct dp_link dp_link;

/* A link from sender to receiver of `slots` slots of up to slot_floats floats each. Between two
 * devices of a backend with a transport (two GPUs) the slots are the receiver's memory. Otherwise they are host memory: held by
 * the receiving device (and counted in its memory) when the host can address it (CPU devices),
 * else plain host memory that the devices download into and upload from. Make links before
 * the devices' threads start. */
dp_link *dp_link_create(dp_device *sender, dp_device *receiver, int slots, size_t slot_floats,
                        dp_err *err);
void dp_link_destroy(dp_link *l);
/* Bytes the link holds for its slots. */
size_t dp_link_bytes(const dp_link *l);

/* Seconds spent in a transfer: waiting for the other side, and moving data. */
typedef struct dp_link_time {
    double wait_s, copy_s;
} dp_link_time;

/* Sends n floats (n <= slot_floats; 0 is a valid message). */
void dp_link_send(dp_link *l, const float *src, size_t n, dp_link_time *t);
/* Receives the next message into dst; returns its length in floats. */
size_t dp_link_recv(dp_link *l, float *dst, dp_link_time *t);

#endif
