/* backend.h -- the device interface: memory, copies, GEMM and kernels.
 *
 * A backend is a table of operations; layers, the model and the optimizer are written once
 * against it. Every pointer an operation takes is device memory of that device unless it is
 * named `host`. Operations are issued in order on the device's compute stream: the CPU backend
 * runs them at once; a GPU backend may run them later, so results are read back only through
 * download() or the operations that return a host value (they synchronise). Matrices are
 * row-major. */
#ifndef DP_BACKEND_H
#define DP_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "engine/kernels.h"

typedef struct dp_backend dp_backend;

#define DP_MARKS 260 /* timestamps a device keeps per sequence: 2 per timeline op, and the zero */

/* One device as the engine sees it: a CPU virtual device or a GPU. */
typedef struct dp_device {
    const dp_backend *be;
    char name[32];      /* "cpu:0", "cuda:1" */
    char model[64];     /* "CPU", "NVIDIA H200" */
    char bus_id[32];    /* a GPU's PCI bus id, for NVML; "" for CPU devices */
    int index;          /* position in the run's device list */
    size_t mem_held;    /* bytes the engine holds on this device now */
    size_t mem_peak;    /* most bytes ever held */
    size_t mem_plan_peak; /* most bytes held since the plan in use started (the trainer resets
                           * it to mem_held before starting a plan's team) */
    size_t mem_limit;   /* 0: none; else the engine holds at most this many bytes here
                         * ([parallel] device_memory, CPU devices: dp_device_limit_memory) */
    size_t mem_cached;  /* bytes the engine released that the device's allocator keeps for reuse */
    size_t mem_total;   /* what the device has in all (CPU: the machine's memory), for the
                         * engine's room checks; a CPU device's published metrics say 0 */
    double peak_flops;  /* FLOP/s at best for the precision in use; 0: unknown. CPU: the whole
                         * machine's SGEMM rate on all its cores (a device's share is
                         * threads / cores of it); GPU: the table's (engine/peak.h). Set by whoever
                         * makes the device set; raised by the device's worker when a step runs
                         * faster (the worker owns it while the device is in a plan) */
    bool own_kernels;   /* convolutions and pooling through the engine's own kernels (im2col
                         * and GEMMs) even where the backend has a library for them: the
                         * reference the tests compare the library against; set by a backend
                         * whose library is missing (a GPU machine without cuDNN) */
    void *impl;         /* backend-private state */
} dp_device;

struct dp_backend {
    const char *name;
    /* The host can read and write the device's memory directly (the CPU backend). Otherwise
     * data cross through upload and download. */
    bool host_memory;

    /* Makes d the calling thread's device (CUDA's current device); every thread that issues
     * operations on d calls it first. */
    void (*bind)(dp_device *d);

    /* Memory. alloc returns NULL when the device cannot give `bytes`; use dp_device_alloc,
     * which accounts and reports. */
    void *(*alloc)(dp_device *d, size_t bytes);
    void (*release)(dp_device *d, void *p);
    void (*upload)(dp_device *d, void *dst, const void *host_src, size_t bytes);
    void (*download)(dp_device *d, void *host_dst, const void *src, size_t bytes);
    /* An upload that may still be in flight when it returns: host_src (memory from host_alloc)
     * must stay unchanged until the device's next synchronize. Saves a wait per batch. */
    void (*upload_async)(dp_device *d, void *dst, const void *host_src, size_t bytes);
    void (*copy)(dp_device *d, void *dst, const void *src, size_t bytes);
    void (*zero)(dp_device *d, void *p, size_t bytes);
    /* Host memory that uploads and downloads move fastest (page-locked for GPUs). */
    void *(*host_alloc)(size_t bytes);
    void (*host_free)(void *p);
    /* Waits until every operation issued so far has finished. */
    void (*synchronize)(dp_device *d);
    /* Seconds the device has spent running operations since it was made. */
    double (*busy_seconds)(dp_device *d);
    /* FLOPs of the GEMMs the device has run since it was made: 2 m n k each (a batched GEMM
     * counts each of its matrices). Read by the thread that drives the device. */
    double (*gemm_flops)(dp_device *d);
    /* CPU devices only (NULL for a device that computes on its own, a GPU): the cores the
     * device's operations may use now, the calling thread and its OpenMP team (at most the
     * cores this process may run on) ... */
    int (*cpu_threads)(dp_device *d);
    /* ... and the CPU seconds, since the process began, of the helper threads that run parts
     * of the devices' operations: the OpenMP teams of the threads that drive them (oneDNN's; a
     * device with cpu_threads 1 has none). */
    double (*helper_cpu_seconds)(void);
    /* Timestamps of the device's progress, for the timeline of a step without waiting between
     * its operations: mark(d, first) records one where the work issued so far ends (first:
     * the zero of a new sequence) and returns its number, or -1 past DP_MARKS of a sequence;
     * mark_seconds gives a mark's seconds after the zero, once the device has been
     * synchronized since the mark. */
    int (*mark)(dp_device *d, bool first);
    double (*mark_seconds)(dp_device *d, int mark);
    /* The first failure of an asynchronous operation (file, line, the library's message), or
     * NULL; operations after a failure may do nothing. */
    const char *(*error)(dp_device *d);

    /* C[m,n] = alpha * op(A) op(B) + beta * C, op(X) = X or X^T (trans_* nonzero). */
    void (*gemm)(dp_device *d, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
    /* dst row r = src row idx[r] for r < rows, rows of row_bytes (a multiple of 4); idx is
     * device memory. Gathers a batch from a data set held on the device. */
    void (*gather_rows)(dp_device *d, void *dst, const void *src, const int32_t *idx, int rows,
                        size_t row_bytes);
    /* y [rows, out] = x [rows, in] W [out, in]^T + b [out] (torch.nn.Linear's forward), then
     * y = max(y, 0) when relu (a ReLU after the layer, fused). */
    void (*linear)(dp_device *d, int rows, int out, int in, const float *x, const float *w,
                   const float *b, float *y, bool relu);
    /* out[c] = sum_r x[r, c], or out[c] += ... when accumulate. */
    void (*sum_rows)(dp_device *d, float *out, const float *x, int rows, int cols, int accumulate);
    /* y = act(x), element-wise over n elements (y may equal x); slope: leaky ReLU's. */
    void (*act_forward)(dp_device *d, dp_act act, float slope, float *y, const float *x,
                        size_t n);
    /* dx = act'(x) * dy, from the input x and output y of the forward pass. */
    void (*act_backward)(dp_device *d, dp_act act, float slope, float *dx, const float *x,
                         const float *y, const float *dy, size_t n);
    /* Softmax cross-entropy over rows x classes logits with integer labels; a row whose label
     * is negative is left out (nn.CrossEntropyLoss's ignore_index: no loss, zero gradient):
     * stats[0] += sum over rows of -log softmax(logits)[label];
     * stats[1] += rows whose first arg-max equals the label;
     * stats[2] += rows with a label (not left out);
     * dlogits (skipped when NULL) = (softmax - onehot(label)) * grad_scale. */
    void (*softmax_xent)(dp_device *d, const float *logits, const int32_t *labels, int rows,
                         int classes, float grad_scale, float *dlogits, float *stats);
    /* Optimizer updates over n parameters (kernels.h has the formulas). */
    void (*sgd_step)(dp_device *d, float *p, const float *g, float *buf, size_t n, dp_sgd_args a);
    void (*adamw_step)(dp_device *d, float *p, const float *g, float *m, float *v, size_t n,
                       dp_adamw_args a);
    /* Returns sum x[i]^2 (accumulated in double); synchronises. */
    double (*sum_squares)(dp_device *d, const float *x, size_t n);
    /* acc[0] += sum x[i]^2 (acc: one float of device memory); does not wait, unlike
     * sum_squares. A gradient's finiteness check each step. */
    void (*accumulate_squares)(dp_device *d, const float *x, size_t n, float *acc);
    /* x *= s. */
    void (*scale)(dp_device *d, float *x, float s, size_t n);

    /* Convolution (kernels.h has the formulas): the patch matrices col[n, c * kh * kw, oh * ow]
     * of x[n, c, h, w], and back: dx[n, c, h, w] = the sums of col's entries. */
    void (*im2col)(dp_device *d, float *col, const float *x, int n, dp_conv_geom g);
    void (*col2im)(dp_device *d, float *dx, const float *col, int n, dp_conv_geom g);
    /* Convolutions through the backend's library (oneDNN, cuDNN), NCHW; NULL where the
     * backend has none, and not called on a device with own_kernels set (dp_device_conv_library):
     * the layers use im2col and GEMMs then. x [n, g.c, g.h, g.w], w [oc, g.c, g.kh, g.kw],
     * y [n, oc, g.oh, g.ow]: y = conv(x, w) + b (b NULL: none); dx = the adjoint applied to dy
     * (written); dw and db (NULL: none) = the gradients of w and b (written). A failure (the
     * library's) is the device's error(). */
    void (*conv_forward)(dp_device *d, dp_conv_geom g, int oc, int n, float *y, const float *x,
                         const float *w, const float *b);
    void (*conv_backward_data)(dp_device *d, dp_conv_geom g, int oc, int n, float *dx,
                               const float *dy, const float *w);
    void (*conv_backward_weights)(dp_device *d, dp_conv_geom g, int oc, int n, float *dw,
                                  float *db, const float *x, const float *dy);
    /* Max (arg records each maximum's place in its plane) or average pooling of planes
     * [planes, g.h, g.w] into y[planes, g.oh, g.ow], and the gradient of x. The CPU backend's
     * average pooling goes through oneDNN unless own_kernels. */
    void (*pool_forward)(dp_device *d, bool max, float *y, int32_t *arg, const float *x,
                         int planes, dp_conv_geom g);
    void (*pool_backward)(dp_device *d, bool max, float *dx, const int32_t *arg, const float *dy,
                          int planes, dp_conv_geom g);
    /* y[i, c, p] += b[c] over [n, channels, positions]; db[c] = (or +=) the sum over i and p
     * of dy[i, c, p]. A convolution's bias. */
    void (*channel_bias)(dp_device *d, float *y, const float *b, int n, int channels,
                         int positions);
    void (*channel_bias_grad)(dp_device *d, float *db, const float *dy, int n, int channels,
                              int positions, bool accumulate);
    /* y = a + b over n elements (y may be a or b). */
    void (*add)(dp_device *d, float *y, const float *a, const float *b, size_t n);

    /* Batch normalisation over x [n, channels, positions] (kernels.h has the formulas; the sums
     * are accumulated in double). bn_sums: sums [channels + 1] = each channel's sum of x
     * (centre NULL), or of (x - mean)^2 with the means of centre (a bn_sums result, summed over
     * the replicas); sums[channels] = n * positions, the count. */
    void (*bn_sums)(dp_device *d, float *sums, const float *x, const float *centre, int n,
                    int channels, int positions);
    /* stats [2 channels + 1] = mean, 1 / sqrt(var + eps) per channel, and the count: in training
     * from acc (the two bn_sums results, back to back), moving running [2 channels + 1] (mean,
     * unbiased variance, batches counted) towards them (unless running is NULL); in evaluation
     * (acc NULL) from running. */
    void (*bn_statistics)(dp_device *d, float *stats, float *running, const float *acc,
                          int channels);
    /* y = (x - mean) / std * w + b per channel, from stats. */
    void (*bn_forward)(dp_device *d, float *y, const float *x, const float *stats, const float *w,
                       const float *b, int n, int channels, int positions);
    /* sums [2 channels] = each channel's sum of dy xhat, then of dy: the gradients of the weight
     * and of the bias. */
    void (*bn_backward_sums)(dp_device *d, float *sums, const float *dy, const float *x,
                             const float *stats, int n, int channels, int positions);
    /* dx from dy and sums: bn_backward_sums' result summed over the replicas. */
    void (*bn_backward_dx)(dp_device *d, float *dx, const float *dy, const float *x,
                           const float *stats, const float *w, const float *sums, int n,
                           int channels, int positions);

    /* Sequences (kernels.h has the formulas). */
    /* C_i = alpha op(A_i) op(B_i) + beta C_i for i < batch, X_i = X + i * stride_x. */
    void (*gemm_batched)(dp_device *d, int trans_a, int trans_b, int m, int n, int k,
                         float alpha, const float *a, int lda, long stride_a, const float *b,
                         int ldb, long stride_b, float beta, float *c, int ldc, long stride_c,
                         int batch);
    /* y[r, i] = x[r, i] + b[i] over rows of n. */
    void (*add_broadcast)(dp_device *d, float *y, const float *x, const float *b, int rows,
                          int n);
    /* nn.LayerNorm over rows of n: stats [rows, 2] keeps each row's mean and 1 / std. The
     * backward writes dx (unless NULL) and writes, or adds to, dw and db. */
    void (*layernorm_forward)(dp_device *d, float *y, float *stats, const float *x,
                              const float *w, const float *b, int rows, int n);
    void (*layernorm_backward)(dp_device *d, float *dx, float *dw, float *db, const float *dy,
                               const float *x, const float *stats, const float *w, int rows,
                               int n, bool accumulate);
    /* Row-wise softmax(scale * x) over rows of n; with causal > 0, row r sees only values
     * [0, r % causal] (a query at position r % causal of a sequence). Backward: dx from y, dy. */
    void (*softmax_forward)(dp_device *d, float *y, const float *x, int rows, int n, float scale,
                            int causal);
    void (*softmax_backward)(dp_device *d, float *dx, const float *y, const float *dy, int rows,
                             int n, float scale);
    /* y[p] = table[ids[p]] (rows of dim; ids are floats, clamped into [0, vocab)); backward:
     * dtable (+)= the sums of dy over the positions of each id. */
    void (*embedding_forward)(dp_device *d, float *y, const float *ids, const float *table,
                              int positions, int dim, int vocab);
    void (*embedding_backward)(dp_device *d, float *dtable, const float *ids, const float *dy,
                               int positions, int dim, int vocab, bool accumulate);
    /* y[r, i] = x[r, i] * dp_dropout_scale(a, r, i) over rows of n: dropout's forward, and
     * (applied to dy) its backward. */
    void (*dropout)(dp_device *d, float *y, const float *x, int rows, int n, dp_dropout_args a);
    /* x[r, k] = dp_noise_value(a, r, k) over rows of n: a GAN's latent vectors. */
    void (*noise)(dp_device *d, float *x, int rows, int n, dp_noise_args a);
    /* A masked language model's masks over rows of n positions (kernels.h, dp_mlm_input):
     * x[r, j] (input ids as floats; skipped when NULL) becomes dp_mlm_input(a, r, j, x[r, j])
     * where chosen, and y[r, j] (labels; skipped when NULL) becomes -1 where not. */
    void (*mlm_mask)(dp_device *d, float *x, int32_t *y, int rows, int n, dp_noise_args a);
    /* Binary cross-entropy with logits over n logits z and targets in {0, 1}:
     * stats[0] += the summed loss (dp_bce_logits); stats[1] += the logits on the target's side
     * (z > 0 for 1, z <= 0 for 0); stats[2] += the summed sigmoid(z);
     * dz (skipped when NULL) = (sigmoid(z) - target) * grad_scale. */
    void (*bce_logits)(dp_device *d, const float *z, const int32_t *targets, int n,
                       float grad_scale, float *dz, float *stats);

    /* ---- What the backend owns beyond one device's operations: making its devices, and
     * the backend-specific halves of all-reduce groups (comm.h) and links (link.h). Called
     * through the table by devices.c, comm_host.c and link_host.c only. Slots left NULL take
     * the host's generic way. ---- */

    /* Whether this build has the backend: false for the CUDA backend of a build without CUDA
     * (cuda_none.c), whose devices cannot be made. */
    bool built;
    /* The libraries the backend runs on and their versions, as loaded ("oneDNN 2.6.3 (OpenMP,
     * AVX2)"), into text[size]; NULL for a backend not built. Needs no device. */
    void (*versions)(char *text, size_t size);
    /* The physical devices the backend sees (GPUs), or -1 with err saying why there are none
     * (no driver, no GPU); NULL for a backend of virtual devices (CPU). */
    int (*device_count)(dp_err *err);
    /* Makes device number `index` of the run on the backend's device `ordinal` (a GPU; several
     * devices may share one; unused by CPU devices); tf32 selects TF32 tensor-core GEMMs where
     * the backend has them. device_destroy is called once no thread uses d any more. */
    int (*device_init)(dp_device *d, int index, int ordinal, bool tf32, dp_err *err);
    void (*device_destroy)(dp_device *d);

    /* A device all-reduce group of `size` members of this backend, members[0]'s (comm.h has the
     * contract): the sum issued on the devices' own streams. NULL (the slot, or its answer
     * with err->msg empty) when the backend has none for these members: the host group, by
     * threads in shared memory (comm_host.c), does it then; NULL with err filled is a failure.
     * `group` is the backend's own state of the group. */
    void *(*group_create)(dp_device **members, int size, dp_err *err);
    void (*group_destroy)(void *group);
    const char *(*group_kind)(const void *group);    /* "NCCL", "one-GPU reduction" */
    /* Issues the sum of buf[n] over the members on member `rank`'s device and returns. */
    void (*group_allreduce)(void *group, int rank, float *buf, size_t n);
    /* Makes member `rank`'s later operations wait for the sums it has issued. */
    void (*group_join)(void *group, int rank);

    /* The transport of a link (link.h) between two devices of this backend: `slots` slots of
     * slot_bytes, copied on the devices' streams; NULL (the slot) where the backend has none:
     * the link's slots are then host memory, downloaded into and uploaded from. */
    void *(*xfer_create)(dp_device *sender, dp_device *receiver, int slots, size_t slot_bytes,
                         dp_err *err);
    void (*xfer_destroy)(void *xfer);
    void (*xfer_send)(void *xfer, int slot, const void *src, size_t bytes);
    void (*xfer_recv)(void *xfer, int slot, void *dst, size_t bytes);
};

/* Allocates `bytes` on d, accounts it, and on failure fills err naming the device, the bytes
 * asked for and `what` they were for. */
void *dp_device_alloc(dp_device *d, size_t bytes, const char *what, dp_err *err);
/* Frees memory from dp_device_alloc (NULL is fine). */
void dp_device_free(dp_device *d, void *p, size_t bytes);
/* Lets the engine hold at most `bytes` on d from now on (and makes that its mem_total, for the
 * room checks), so that a CPU device can stand for a GPU's memory. */
void dp_device_limit_memory(dp_device *d, size_t bytes);

/* Whether d's convolutions go through its backend's library (conv_forward and the rest). */
static inline bool dp_device_conv_library(const dp_device *d)
{
    return d && d->be->conv_forward && !d->own_kernels;
}

/* The CPU backend (oneDNN): virtual devices, host groups and host links. */
extern const dp_backend dp_backend_cpu;
/* The CUDA backend (cuBLAS, CUDA kernels, NCCL): backend_cuda.h has what only it offers. In a
 * build without CUDA, a table with `built` false whose devices cannot be made (cuda_none.c). */
extern const dp_backend dp_backend_cuda;
/* Makes CPU virtual device number `index`, its operations on an OpenMP team of `team_threads`
 * (dp_cpu_set_team_threads). */
int dp_cpu_device_init(dp_device *d, int index, int team_threads, dp_err *err);
void dp_cpu_device_destroy(dp_device *d);

#endif
