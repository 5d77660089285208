/* backend_cuda.h -- what only the CUDA backend offers: finding GPUs and making devices on them.
 * Declared for builds with CUDA (HAVE_CUDA); the rest of the engine goes through the table. */
#ifndef DP_BACKEND_CUDA_H
#define DP_BACKEND_CUDA_H

#include <stdbool.h>
#include <stdio.h>

#include "engine/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const dp_backend dp_backend_cuda;

/* The number of GPUs the CUDA runtime sees, or -1 with err naming the CUDA error (no driver,
 * no device). */
int dp_cuda_device_count(dp_err *err);

/* Makes device number `index` of the run on GPU `ordinal` (several devices may share one GPU):
 * its own stream and cuBLAS handle; tf32 selects TF32 tensor-core GEMMs. */
int dp_cuda_device_init(dp_device *d, int index, int ordinal, bool tf32, dp_err *err);
void dp_cuda_device_destroy(dp_device *d);

/* Time a CUDA device's GEMMs took while profiling was on (events around each, which cost a
 * little launch time: for benchmarks). */
typedef struct dp_cuda_profile {
    double gemm_s;
    double gemm_flops; /* 2 m n k summed over those GEMMs */
} dp_cuda_profile;
void dp_cuda_set_profiling(dp_device *d, bool on);
/* Waits for the device, then reads its profile. */
dp_cuda_profile dp_cuda_device_profile(dp_device *d);
/* One line per tuned shape: the two ways' times and the one chosen. */
void dp_cuda_print_tuning(dp_device *d, FILE *out);

/* An all-reduce group of GPU devices (see comm.h): NCCL when the members are distinct GPUs (or
 * NCCL takes several ranks on one GPU), else a reduction kernel when they all share one GPU.
 * NULL with err->msg empty when neither applies (CPU members, GPUs shared unevenly): the host
 * all-reduce does it then; NULL with err filled on a failure. */
typedef struct dp_cuda_comm dp_cuda_comm;
dp_cuda_comm *dp_cuda_comm_create(dp_device **members, int size, dp_err *err);
void dp_cuda_comm_destroy(dp_cuda_comm *c);
/* "NCCL" or "one-GPU reduction". */
const char *dp_cuda_comm_kind(const dp_cuda_comm *c);
/* Issues the sum of buf over the members on member `rank`'s comm stream, after the work issued
 * on its compute stream so far, and returns. */
void dp_cuda_comm_allreduce(dp_cuda_comm *c, int rank, float *buf, size_t n);
/* Makes member `rank`'s compute stream wait for the all-reduces it has issued. */
void dp_cuda_comm_join(dp_cuda_comm *c, int rank);

/* The transport of a pipeline link (link.h) between two GPU devices: `slots` slots of
 * slot_bytes in the receiver's memory. Sending copies a message into a slot on the sender's
 * copy stream (cudaMemcpyPeerAsync, peer to peer where the GPUs allow it) after the sender's
 * work so far; receiving copies it out on the receiver's compute stream once it has arrived.
 * Neither waits on the host: the link's FIFO hands the slots over. */
typedef struct dp_cuda_xfer dp_cuda_xfer;
dp_cuda_xfer *dp_cuda_xfer_create(dp_device *sender, dp_device *receiver, int slots,
                                  size_t slot_bytes, dp_err *err);
void dp_cuda_xfer_destroy(dp_cuda_xfer *x);
void dp_cuda_xfer_send(dp_cuda_xfer *x, int slot, const void *src, size_t bytes);
void dp_cuda_xfer_recv(dp_cuda_xfer *x, int slot, void *dst, size_t bytes);

#ifdef __cplusplus
}
#endif

#endif
