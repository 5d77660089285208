/* backend_cuda.cu -- the CUDA backend: cuBLAS for GEMMs, CUDA kernels over the per-element
 * functions of kernels.h for the rest. Every operation is issued on the device's own stream;
 * download() and the operations that return a host value wait for it.
 *
 * Errors: every CUDA and cuBLAS call goes through CHECK, which keeps the first failure (file,
 * line, the library's message) in the device; dp_backend.error reports it and the trainer
 * stops the run. */
extern "C" {
#include "engine/backend.h"
#include "engine/backend_cuda.h"
}

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

namespace {

/* A device is driven by its worker thread, and by its comm thread when gradients are staged
 * through the host; `lock` serialises their operations on the one stream (and the busy-time
 * span), each operation holding it from issue to return. */
struct cuda_impl {
    pthread_mutex_t lock;
    int ordinal;
    cudaStream_t stream;
    cublasHandle_t blas;
    cudaEvent_t span_start, span_end; /* busy time: from the first op after a wait to the next */
    bool span_open;
    double busy_s;
    char error[256];                  /* the first failure, or "" */
    float *ones;                      /* [ones_n] of 1.0f, for column sums by GEMV */
    size_t ones_n;
};

cuda_impl *impl_of(dp_device *d)
{
    return static_cast<cuda_impl *>(d->impl);
}

/* Holds a device's lock for the scope of an operation. */
struct locked {
    cuda_impl *im;
    explicit locked(dp_device *d) : im(impl_of(d)) { pthread_mutex_lock(&im->lock); }
    ~locked() { pthread_mutex_unlock(&im->lock); }
};

void record_error(cuda_impl *im, const char *file, int line, const char *what, const char *msg)
{
    if (!im->error[0])
        snprintf(im->error, sizeof im->error, "%s:%d: %s: %s", file, line, what, msg);
}

#define CHECK_CUDA(im, call)                                                                 \
    do {                                                                                     \
        cudaError_t e_ = (call);                                                             \
        if (e_ != cudaSuccess)                                                               \
            record_error((im), __FILE__, __LINE__, #call, cudaGetErrorString(e_));           \
    } while (0)

#define CHECK_CUBLAS(im, call)                                                               \
    do {                                                                                     \
        cublasStatus_t s_ = (call);                                                          \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                     \
            record_error((im), __FILE__, __LINE__, #call, cublasGetStatusString(s_));        \
    } while (0)

/* Marks the start of device work, for busy_seconds. */
void begin(cuda_impl *im)
{
    if (!im->span_open) {
        CHECK_CUDA(im, cudaEventRecord(im->span_start, im->stream));
        im->span_open = true;
    }
}

/* Waits for the stream and adds the span's time to busy. */
void wait(cuda_impl *im)
{
    if (im->span_open) {
        CHECK_CUDA(im, cudaEventRecord(im->span_end, im->stream));
        CHECK_CUDA(im, cudaEventSynchronize(im->span_end));
        float ms = 0;
        CHECK_CUDA(im, cudaEventElapsedTime(&ms, im->span_start, im->span_end));
        im->busy_s += 1e-3 * ms;
        im->span_open = false;
    } else {
        CHECK_CUDA(im, cudaStreamSynchronize(im->stream));
    }
}

unsigned blocks_for(size_t n, unsigned threads)
{
    size_t b = (n + threads - 1) / threads;
    return b > 65535u * 16u ? 65535u * 16u : (unsigned)(b ? b : 1); /* grid-stride loops */
}

/* ---- kernels ---- */

__global__ void fill_rows_kernel(float *y, const float *row, int rows, int cols)
{
    size_t n = (size_t)rows * cols;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = row[i % cols];
}

__global__ void act_forward_kernel(dp_act act, float *y, const float *x, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = dp_act_value(act, x[i]);
}

__global__ void act_backward_kernel(dp_act act, float *dx, const float *x, const float *y,
                                    const float *dy, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dx[i] = dp_act_grad(act, x ? x[i] : 0.0f, y ? y[i] : 0.0f, dy[i]);
}

/* A thread per row: arg-max, exponentials (dp_expf, as on the CPU), loss, gradient. */
__global__ void softmax_xent_kernel(const float *logits, const int32_t *labels, int rows,
                                    int classes, float grad_scale, float *dlogits, float *stats)
{
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows)
        return;
    const float *z = logits + (size_t)r * classes;
    int best = 0;
    for (int c = 1; c < classes; c++)
        best = z[c] > z[best] ? c : best;
    float zmax = z[best], sum = 0.0f;
    for (int c = 0; c < classes; c++)
        sum += dp_expf(z[c] - zmax);
    int label = labels[r];
    atomicAdd(&stats[0], logf(sum) - (z[label] - zmax));
    if (best == label)
        atomicAdd(&stats[1], 1.0f);
    if (dlogits) {
        float *g = dlogits + (size_t)r * classes, scale = grad_scale / sum;
        for (int c = 0; c < classes; c++)
            g[c] = dp_expf(z[c] - zmax) * scale - (c == label ? grad_scale : 0.0f);
    }
}

__global__ void sgd_kernel(float *p, const float *g, float *buf, size_t n, dp_sgd_args a)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float unused = 0.0f;
        dp_sgd_element(&p[i], g[i], buf ? &buf[i] : &unused, a);
    }
}

__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n,
                             dp_adamw_args a)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dp_adamw_element(&p[i], g[i], &m[i], &v[i], a);
}

/* Sum of squares in double: each block reduces its part, then one atomic add. */
__global__ void sum_squares_kernel(const float *x, size_t n, double *out)
{
    __shared__ double part[256];
    double s = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        s += (double)x[i] * (double)x[i];
    part[threadIdx.x] = s;
    __syncthreads();
    for (unsigned w = blockDim.x / 2; w > 0; w /= 2) {
        if (threadIdx.x < w)
            part[threadIdx.x] += part[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        atomicAdd(out, part[0]);
}

__global__ void scale_kernel(float *x, float s, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] *= s;
}

const unsigned T = 256; /* threads a block */

/* ---- the operations ---- */

void cuda_bind(dp_device *d)
{
    locked guard(d);
    CHECK_CUDA(guard.im, cudaSetDevice(guard.im->ordinal));
}

void *cuda_alloc(dp_device *d, size_t bytes)
{
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        cudaGetLastError(); /* out of memory is reported by the caller, not kept as a failure */
        return NULL;
    }
    return p;
}

void cuda_release(dp_device *d, void *p)
{
    locked guard(d);
    cuda_impl *im = guard.im;
    wait(im);
    CHECK_CUDA(im, cudaFree(p));
}

/* A copy between host and device that has finished when it returns, so the host buffer may be
 * reused (upload) or read (download) at once. */
void host_transfer(dp_device *d, void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    locked guard(d);
    cuda_impl *im = guard.im;
    begin(im);
    CHECK_CUDA(im, cudaMemcpyAsync(dst, src, bytes, kind, im->stream));
    wait(im);
}

void cuda_upload(dp_device *d, void *dst, const void *src, size_t bytes)
{
    host_transfer(d, dst, src, bytes, cudaMemcpyHostToDevice);
}

void cuda_download(dp_device *d, void *dst, const void *src, size_t bytes)
{
    host_transfer(d, dst, src, bytes, cudaMemcpyDeviceToHost);
}

void cuda_copy(dp_device *d, void *dst, const void *src, size_t bytes)
{
    locked guard(d);
    cuda_impl *im = guard.im;
    begin(im);
    CHECK_CUDA(im, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, im->stream));
}

void cuda_zero(dp_device *d, void *p, size_t bytes)
{
    locked guard(d);
    cuda_impl *im = guard.im;
    begin(im);
    CHECK_CUDA(im, cudaMemsetAsync(p, 0, bytes, im->stream));
}

void *cuda_host_alloc(size_t bytes)
{
    void *p = NULL;
    if (cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocPortable) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

void cuda_host_free(void *p)
{
    cudaFreeHost(p);
}

void cuda_synchronize(dp_device *d)
{
    locked guard(d);
    wait(guard.im);
}

double cuda_busy_seconds(dp_device *d)
{
    locked guard(d);
    return guard.im->busy_s;
}

const char *cuda_error(dp_device *d)
{
    locked guard(d);
    return guard.im->error[0] ? guard.im->error : NULL;
}

/* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands. */
void cuda_gemm(dp_device *d, int trans_a, int trans_b, int m, int n, int k, float alpha,
               const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    locked guard(d);
    cuda_impl *im = guard.im;
    if (m == 0 || n == 0)
        return;
    begin(im);
    CHECK_CUBLAS(im, cublasSgemm(im->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                 trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, ldb, a,
                                 lda, &beta, c, ldc));
}

void cuda_fill_rows(dp_device *d, float *y, const float *row, int rows, int cols)
{
    locked guard(d);
    cuda_impl *im = guard.im;
    begin(im);
    fill_rows_kernel<<<blocks_for((size_t)rows * cols, T), T, 0, im->stream>>>(y, row, rows, cols);
    CHECK_CUDA(im, cudaGetLastError());
}

__global__ void fill_kernel(float *y, float v, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = v;
}

/* Column sums as a GEMV with a vector of ones: x^T [cols, rows] (column-major: x itself) times
 * ones [rows]; cuBLAS spreads the rows over the whole GPU, where a thread per column would
 * leave most of it idle. */
void cuda_sum_rows(dp_device *d, float *out, const float *x, int rows, int cols, int accumulate)
{
    locked guard(d);
    cuda_impl *im = guard.im;
    if (rows == 0) {
        if (!accumulate)
            CHECK_CUDA(im, cudaMemsetAsync(out, 0, (size_t)cols * sizeof *out, im->stream));
        return;
    }
    begin(im);
    if (im->ones_n < (size_t)rows) {
        wait(im);
        CHECK_CUDA(im, cudaFree(im->ones));
        im->ones = NULL;
        im->ones_n = 0;
        if (cudaMalloc(&im->ones, (size_t)rows * sizeof *im->ones) != cudaSuccess) {
            record_error(im, __FILE__, __LINE__, "cudaMalloc", "out of memory for a ones vector");
            return;
        }
        im->ones_n = (size_t)rows;
        begin(im);
        fill_kernel<<<blocks_for(im->ones_n, T), T, 0, im->stream>>>(im->ones, 1.0f, im->ones_n);
    }
    float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    CHECK_CUBLAS(im, cublasSgemv(im->blas, CUBLAS_OP_N, cols, rows, &one, x, cols, im->ones, 1,
                                 &beta, out, 1));
}

void cuda_act_forward(dp_device *d, dp_act act, float *y, const float *x, size_t n)
{
    locked guard(d);
    cuda_impl *im = guard.im;
    if (!n)
        return;
    begin(im);
    act_forward_kernel<<<blocks_for(n, T), T, 0, im->stream>>>(act, y, x, n);
    CHECK_CUDA(im, cudaGetLastError());
}

void cuda_act_backward(dp_device *d, dp_act act, float *dx, const float *x, const float *y,
                       const float *dy, size_t n)
{
    locked guard(d);
    cuda_impl *im = guard.im;
    if (!n)
        return;
    begin(im);
    act_backward_kernel<<<blocks_for(n, T), T, 0, im->stream>>>(act, dx, x, y, dy, n);
    CHECK_CUDA(im, cudaGetLastError());
}

void cuda_softmax_xent(dp_device *d, const float *logits, const int32_t *labels, int rows,
                       int classes, float grad_scale, float *dlogits, float *stats)
{
    locked guard(d);
    cuda_impl *im = guard.im;
    if (!rows)
        return;
    begin(im);
    softmax_xent_kernel<<<blocks_for(rows, T), T, 0, im->stream>>>(logits, labels, rows, classes,
                                                                   grad_scale, dlogits, stats);
    CHECK_CUDA(im, cudaGetLastError());
}

void cuda_sgd_step(dp_device *d, float *p, const float *g, float *buf, size_t n, dp_sgd_args a)
{
    locked guard(d);
    cuda_impl *im = guard.im;
    begin(im);
    sgd_kernel<<<blocks_for(n, T), T, 0, im->stream>>>(p, g, buf, n, a);
    CHECK_CUDA(im, cudaGetLastError());
}

void cuda_adamw_step(dp_device *d, float *p, const float *g, float *m, float *v, size_t n,
                     dp_adamw_args a)
{
    locked guard(d);
    cuda_impl *im = guard.im;
    begin(im);
    adamw_kernel<<<blocks_for(n, T), T, 0, im->stream>>>(p, g, m, v, n, a);
    CHECK_CUDA(im, cudaGetLastError());
}

double cuda_sum_squares(dp_device *d, const float *x, size_t n)
{
    locked guard(d);
    cuda_impl *im = guard.im;
    double *sum = NULL, host = 0.0;
    CHECK_CUDA(im, cudaMallocAsync(&sum, sizeof *sum, im->stream));
    if (!sum)
        return NAN;
    begin(im);
    CHECK_CUDA(im, cudaMemsetAsync(sum, 0, sizeof *sum, im->stream));
    unsigned blocks = blocks_for(n, T);
    sum_squares_kernel<<<blocks > 1024 ? 1024 : blocks, T, 0, im->stream>>>(x, n, sum);
    CHECK_CUDA(im, cudaGetLastError());
    CHECK_CUDA(im, cudaMemcpyAsync(&host, sum, sizeof host, cudaMemcpyDeviceToHost, im->stream));
    CHECK_CUDA(im, cudaFreeAsync(sum, im->stream));
    wait(im);
    return host;
}

void cuda_scale(dp_device *d, float *x, float s, size_t n)
{
    locked guard(d);
    cuda_impl *im = guard.im;
    begin(im);
    scale_kernel<<<blocks_for(n, T), T, 0, im->stream>>>(x, s, n);
    CHECK_CUDA(im, cudaGetLastError());
}

} // namespace

extern "C" {

/* In the order of struct dp_backend's members. */
const dp_backend dp_backend_cuda = {
    "cuda",           false,
    cuda_bind,        cuda_alloc,
    cuda_release,     cuda_upload,
    cuda_download,    cuda_copy,
    cuda_zero,        cuda_host_alloc,
    cuda_host_free,   cuda_synchronize,
    cuda_busy_seconds, cuda_error,
    cuda_gemm,        cuda_fill_rows,
    cuda_sum_rows,    cuda_act_forward,
    cuda_act_backward, cuda_softmax_xent,
    cuda_sgd_step,    cuda_adamw_step,
    cuda_sum_squares, cuda_scale,
};

int dp_cuda_device_count(dp_err *err)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess)
        return dp_fail(err, "CUDA: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    if (n == 0)
        return dp_fail(err, "CUDA: no GPU found");
    return n;
}

int dp_cuda_device_init(dp_device *d, int index, int ordinal, bool tf32, dp_err *err)
{
    memset(d, 0, sizeof *d);
    cuda_impl *im = static_cast<cuda_impl *>(calloc(1, sizeof *im));
    if (!im)
        return dp_fail(err, "out of host memory creating cuda:%d", ordinal);
    im->ordinal = ordinal;
    pthread_mutex_init(&im->lock, NULL);
    d->impl = im;
    d->be = &dp_backend_cuda;
    d->index = index;
    snprintf(d->name, sizeof d->name, "cuda:%d", ordinal);
    cudaDeviceProp prop;
    size_t free_b = 0, total_b = 0;
    CHECK_CUDA(im, cudaSetDevice(ordinal));
    CHECK_CUDA(im, cudaGetDeviceProperties(&prop, ordinal));
    CHECK_CUDA(im, cudaStreamCreateWithFlags(&im->stream, cudaStreamNonBlocking));
    CHECK_CUDA(im, cudaEventCreate(&im->span_start));
    CHECK_CUDA(im, cudaEventCreate(&im->span_end));
    CHECK_CUDA(im, cudaMemGetInfo(&free_b, &total_b));
    CHECK_CUBLAS(im, cublasCreate(&im->blas));
    CHECK_CUBLAS(im, cublasSetStream(im->blas, im->stream));
    CHECK_CUBLAS(im, cublasSetMathMode(im->blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                      : CUBLAS_DEFAULT_MATH));
    if (im->error[0]) {
        int rc = dp_fail(err, "cuda:%d: %s", ordinal, im->error);
        dp_cuda_device_destroy(d);
        return rc;
    }
    snprintf(d->model, sizeof d->model, "%.63s", prop.name);
    if (cudaDeviceGetPCIBusId(d->bus_id, (int)sizeof d->bus_id, ordinal) != cudaSuccess)
        d->bus_id[0] = '\0';
    d->mem_total = total_b;
    return 0;
}

/* Called once no thread uses the device any more, so without its lock. */
void dp_cuda_device_destroy(dp_device *d)
{
    cuda_impl *im = impl_of(d);
    if (!im)
        return;
    cudaSetDevice(im->ordinal);
    if (im->blas)
        cublasDestroy(im->blas);
    if (im->span_start)
        cudaEventDestroy(im->span_start);
    if (im->span_end)
        cudaEventDestroy(im->span_end);
    if (im->ones)
        cudaFree(im->ones);
    if (im->stream)
        cudaStreamDestroy(im->stream);
    pthread_mutex_destroy(&im->lock);
    free(im);
    d->impl = NULL;
}

} // extern "C"
