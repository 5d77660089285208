/* cuda_impl.h -- the CUDA backend's state of one device, shared by the files nvcc compiles
 * (backend_cuda.cu, cudnn_cuda.cu, comm_cuda.cu, link_cuda.cu); the rest of the engine sees
 * dp_device only. */
#ifndef DP_CUDA_IMPL_H
#define DP_CUDA_IMPL_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <pthread.h>
#include <stdio.h>

extern "C" {
#include "engine/backend.h"
}

/* A block of device memory from cudaMalloc, in use or kept for reuse. */
struct cuda_block {
    void *p;
    size_t size;
    cuda_block *next;
};

/* A GEMM shape that the backend tunes (backend_cuda.cu, "tuning"). */
struct tune_key {
    bool linear;              /* a linear layer's forward: the bias added */
    int ta, tb, m, n, k, lda, ldb, ldc;
};

enum way_kind { WAY_CUBLAS, WAY_TRANSPOSED, WAY_LT };

/* A device's cuDNN handle, convolution plans and workspace (cudnn_cuda.cu). */
struct cudnn_state;

const int LT_ALGOS = 4; /* cuBLASLt algorithms tried per shape */
const int MAX_WAYS = 2 + LT_ALGOS;

/* The ways to run one shape, their times, and the fastest. */
struct tune {
    tune_key key;
    way_kind way[MAX_WAYS];
    int n_ways;               /* 0 until the first call lists them */
    bool warm;                /* the first call is done */
    int timed;                /* ways timed so far, one per call after the first */
    float ms[MAX_WAYS];
    int best;                 /* once every way is timed */
    cudaEvent_t start, end;
    cublasLtMatmulDesc_t lt_op;   /* the WAY_LT ways: one description, an algorithm each */
    cublasLtMatrixLayout_t lt_a, lt_b, lt_c;
    cublasLtMatmulAlgo_t lt_algo[MAX_WAYS];
};

/* A device is driven by its worker thread, its comm thread and the threads of the links it
 * sends on; `lock` serialises their calls (and the busy-time span), each call holding it from
 * issue to return. Work goes on three streams: compute (every operation of the table), comm
 * (all-reduces, after an event of the compute stream) and copy (link transfers); the compute
 * stream waits for the others through events before it uses what they wrote. */
struct cuda_impl {
    pthread_mutex_t lock;
    int ordinal;
    cudaStream_t stream;              /* compute */
    cudaStream_t comm, copy;
    cudaEvent_t comm_ready;           /* recorded on compute before an all-reduce starts */
    cudaEvent_t comm_done;            /* recorded after the last all-reduce issued */
    bool comm_pending;                /* an all-reduce the compute stream has not waited for */
    cublasHandle_t blas;
    bool tf32;                        /* TF32 tensor-core GEMMs */
    cublasLtHandle_t lt;              /* made on first use, with its workspace */
    void *lt_workspace;
    size_t lt_workspace_bytes;
    cudaEvent_t span_start, span_end; /* busy time: from the first op after a wait to the next */
    bool span_open;
    double busy_s;
    cudaEvent_t marks[DP_MARKS];      /* made on the first mark */
    int n_marks;
    char error[256];                  /* the first failure, or "" */
    double *sumsq;                    /* sum_squares' result */
    float *ones;                      /* [ones_n] of 1.0f, for column sums by GEMV */
    size_t ones_n;
    float *scratch;                   /* [scratch_n]: transposed GEMM operands */
    size_t scratch_n;
    tune tunes[32];
    int n_tunes;
    cudnn_state *dnn;                 /* NULL: no cuDNN, convolutions by im2col (own_kernels) */
    /* Profiling (dp_cuda_set_profiling): an event pair around each GEMM, summed once done. */
    bool profiling;
    cudaEvent_t gemm_events[2 * 64];
    int gemm_pending;                 /* pairs recorded and not yet summed */
    double gemm_s, gemm_flops;
    double flops_done;                /* every GEMM's FLOPs since made, profiling or not */
    /* The caching allocator: blocks released by the engine are kept for the next alloc of a
     * similar size, so that a strategy switch costs no cudaMalloc or cudaFree (both of which
     * synchronise the whole GPU). */
    cuda_block *used, *cached;
    size_t cached_bytes;
};

inline cuda_impl *cuda_impl_of(dp_device *d)
{
    return static_cast<cuda_impl *>(d->impl);
}

/* Holds a device's lock for the scope of a call. */
struct cuda_locked {
    cuda_impl *im;
    explicit cuda_locked(dp_device *d) : im(cuda_impl_of(d)) { pthread_mutex_lock(&im->lock); }
    ~cuda_locked() { pthread_mutex_unlock(&im->lock); }
};

/* Keeps the device's first failure: file, line, the call and the library's message. */
inline void cuda_record_error(cuda_impl *im, const char *file, int line, const char *what,
                              const char *msg)
{
    if (!im->error[0])
        snprintf(im->error, sizeof im->error, "%s:%d: %s: %s", file, line, what, msg);
}

#define CHECK_CUDA(im, call)                                                                 \
    do {                                                                                     \
        cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess)                                                               \
            cuda_record_error((im), __FILE__, __LINE__, #call, cudaGetErrorString(e_));      \
    } while (0)

#define CHECK_CUBLAS(im, call)                                                               \
    do {                                                                                     \
        cublasStatus_t s_ = (call);                                                          \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                     \
            cuda_record_error((im), __FILE__, __LINE__, #call, cublasGetStatusString(s_));   \
    } while (0)

/* Marks the start of compute-stream work, for busy_seconds (the lock held). */
void cuda_begin(cuda_impl *im);

/* cuDNN (cudnn_cuda.cu), loaded at run time. cudnn_device_init makes im's handle on its
 * compute stream (the current GPU im's); false when cuDNN is missing or refuses: the device's
 * convolutions are then its own (own_kernels). cudnn_device_destroy frees it all (the device
 * idle). cudnn_describe: "cuDNN 9.19.0", or why there is none, for --version (no GPU needed).
 * cudnn_print_choices: a line per convolution plan, its algorithm and time. The cuda_conv_*
 * functions are the table's conv slots (backend.h). */
bool cudnn_device_init(cuda_impl *im);
void cudnn_device_destroy(cuda_impl *im);
void cudnn_describe(char *text, size_t size);
void cudnn_print_choices(cuda_impl *im, FILE *out);
void cuda_conv_forward(dp_device *d, dp_conv_geom g, int oc, int n, float *y, const float *x,
                       const float *w, const float *b);
void cuda_conv_backward_data(dp_device *d, dp_conv_geom g, int oc, int n, float *dx,
                             const float *dy, const float *w);
void cuda_conv_backward_weights(dp_device *d, dp_conv_geom g, int oc, int n, float *dw,
                                float *db, const float *x, const float *dy);

/* The table's all-reduce group slots (comm_cuda.cu): NCCL when the members are distinct GPUs
 * (or NCCL takes several ranks on one GPU), else a reduction kernel when they all share one
 * GPU; NULL with err->msg empty when neither applies (CPU members, GPUs shared unevenly): the
 * host all-reduce does it then. allreduce issues the sum on member `rank`'s comm stream, after
 * the work issued on its compute stream so far; join makes the compute stream wait for it. */
extern "C" {
void *cuda_group_create(dp_device **members, int size, dp_err *err);
void cuda_group_destroy(void *group);
const char *cuda_group_kind(const void *group); /* "NCCL" or "one-GPU reduction" */
void cuda_group_allreduce(void *group, int rank, float *buf, size_t n);
void cuda_group_join(void *group, int rank);

/* The table's link slots (link_cuda.cu): slots in the receiver's GPU memory. Sending copies a
 * message into a slot on the sender's copy stream (cudaMemcpyPeerAsync, peer to peer where the
 * GPUs allow it) after the sender's work so far; receiving copies it out on the receiver's
 * compute stream once it has arrived. Neither waits on the host: the link's FIFO hands the
 * slots over. */
void *cuda_xfer_create(dp_device *sender, dp_device *receiver, int slots, size_t slot_bytes,
                       dp_err *err);
void cuda_xfer_destroy(void *xfer);
void cuda_xfer_send(void *xfer, int slot, const void *src, size_t bytes);
void cuda_xfer_recv(void *xfer, int slot, void *dst, size_t bytes);
}

#endif
