/* backend_cuda.cu -- the CUDA backend: cuBLAS for GEMMs, cuDNN for convolutions where it is
 * installed (cudnn_cuda.cu), CUDA kernels over the per-element functions of kernels.h for the
 * rest. Every operation is issued on the device's own stream; download() and the operations
 * that return a host value wait for it.
 *
 * Errors: every CUDA and cuBLAS call goes through CHECK, which keeps the first failure (file,
 * line, the library's message) in the device; dp_backend.error reports it and the trainer
 * stops the run. */
extern "C" {
#include "engine/backend.h"
#include "engine/backend_cuda.h"
#include "engine/peak.h"
}

#include <nccl.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda_impl.h"

void cuda_begin(cuda_impl *im)
{
    if (!im->span_open) {
        CHECK_CUDA(im, cudaEventRecord(im->span_start, im->stream));
        im->span_open = true;
    }
}

namespace {

/* Adds the GEMM times of the recorded event pairs to the profile (they are done: the stream
 * was waited for). */
void harvest_gemms(cuda_impl *im)
{
    for (int i = 0; i < im->gemm_pending; i++) {
        float ms = 0;
        cudaEvent_t *pair = &im->gemm_events[2 * i];
        CHECK_CUDA(im, cudaEventElapsedTime(&ms, pair[0], pair[1]));
        im->gemm_s += 1e-3 * ms;
    }
    im->gemm_pending = 0;
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
    harvest_gemms(im);
}

unsigned blocks_for(size_t n, unsigned threads)
{
    size_t b = (n + threads - 1) / threads;
    return b > 65535u * 16u ? 65535u * 16u : (unsigned)(b ? b : 1); /* grid-stride loops */
}

/* ---- kernels ---- */

__global__ void act_forward_kernel(dp_act act, float slope, float *y, const float *x, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = dp_act_value(act, slope, x[i]);
}

__global__ void act_backward_kernel(dp_act act, float slope, float *dx, const float *x,
                                    const float *y, const float *dy, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dx[i] = dp_act_grad(act, slope, x ? x[i] : 0.0f, y ? y[i] : 0.0f, dy[i]);
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
    if (label < 0) { /* left out: no loss, no gradient */
        for (int c = 0; dlogits && c < classes; c++)
            dlogits[(size_t)r * classes + c] = 0.0f;
        return;
    }
    atomicAdd(&stats[0], logf(sum) - (z[label] - zmax));
    atomicAdd(&stats[2], 1.0f);
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

/* This block's share of sum x[i]^2 in double (blocks of 256 threads, a grid-stride loop);
 * thread 0 gets the block's total, the others a part of it. */
__device__ double block_sum_squares(const float *x, size_t n)
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
    return part[0];
}

/* Sum of squares in double: each block reduces its part, then one atomic add. */
__global__ void sum_squares_kernel(const float *x, size_t n, double *out)
{
    double block = block_sum_squares(x, n);
    if (threadIdx.x == 0)
        atomicAdd(out, block);
}

/* The same, each block's part added to a float. */
__global__ void accumulate_squares_kernel(const float *x, size_t n, float *acc)
{
    double block = block_sum_squares(x, n);
    if (threadIdx.x == 0)
        atomicAdd(acc, (float)block);
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
    cuda_locked guard(d);
    CHECK_CUDA(guard.im, cudaSetDevice(guard.im->ordinal));
}

/* Sizes are rounded up to 512 bytes, or to 2 MiB from 1 MiB on, so that blocks fit again. */
size_t block_size(size_t bytes)
{
    size_t unit = bytes < (1u << 20) ? 512 : (2u << 20);
    return (bytes + unit - 1) / unit * unit;
}

/* Frees every cached block (the lock held; the device idle). */
void free_cached(cuda_impl *im)
{
    while (cuda_block *b = im->cached) {
        im->cached = b->next;
        CHECK_CUDA(im, cudaFree(b->p));
        im->cached_bytes -= b->size;
        free(b);
    }
}

/* Waits for every stream of the device. */
void wait_all(cuda_impl *im)
{
    wait(im);
    CHECK_CUDA(im, cudaStreamSynchronize(im->comm));
    CHECK_CUDA(im, cudaStreamSynchronize(im->copy));
}

/* The smallest cached block of at least `size` bytes, and at most twice that (so that a small
 * request does not take a large block); unlinked from the cache. */
cuda_block *take_cached(cuda_impl *im, size_t size)
{
    cuda_block **best = NULL;
    for (cuda_block **at = &im->cached; *at; at = &(*at)->next)
        if ((*at)->size >= size && (*at)->size <= 2 * size &&
            (!best || (*at)->size < (*best)->size))
            best = at;
    if (!best)
        return NULL;
    cuda_block *b = *best;
    *best = b->next;
    im->cached_bytes -= b->size;
    return b;
}

/* Makes the calling thread's current GPU im's for the scope (allocations may come from any
 * thread, e.g. links made by the coordinator). */
struct on_gpu {
    int previous = -1;
    explicit on_gpu(cuda_impl *im)
    {
        if (cudaGetDevice(&previous) == cudaSuccess && previous != im->ordinal)
            cudaSetDevice(im->ordinal);
        else
            previous = -1;
    }
    ~on_gpu()
    {
        if (previous >= 0)
            cudaSetDevice(previous);
    }
};

void *cuda_alloc(dp_device *d, size_t bytes)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    on_gpu current(im);
    size_t size = block_size(bytes ? bytes : 1);
    cuda_block *b = take_cached(im, size);
    if (!b) {
        b = static_cast<cuda_block *>(calloc(1, sizeof *b));
        if (!b)
            return NULL;
        b->size = size;
        if (cudaMalloc(&b->p, size) != cudaSuccess) {
            cudaGetLastError(); /* out of memory: give the cache back to CUDA and try again */
            wait_all(im);
            free_cached(im);
            if (cudaMalloc(&b->p, size) != cudaSuccess) {
                cudaGetLastError(); /* reported by the caller, not kept as a failure */
                free(b);
                return NULL;
            }
        }
    }
    b->next = im->used;
    im->used = b;
    d->mem_cached = im->cached_bytes;
    return b->p;
}

/* Keeps the block for reuse. Memory is released when a team stops, so waiting for every stream
 * first costs little, and a block is never handed out while a stream may still use it. */
void cuda_release(dp_device *d, void *p)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    wait_all(im);
    for (cuda_block **at = &im->used; *at; at = &(*at)->next)
        if ((*at)->p == p) {
            cuda_block *b = *at;
            *at = b->next;
            b->next = im->cached;
            im->cached = b;
            im->cached_bytes += b->size;
            break;
        }
    d->mem_cached = im->cached_bytes;
}

/* A copy between host and device that has finished when it returns, so the host buffer may be
 * reused (upload) or read (download) at once. */
void host_transfer(dp_device *d, void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    cuda_begin(im);
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

void cuda_upload_async(dp_device *d, void *dst, const void *src, size_t bytes)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    cuda_begin(im);
    CHECK_CUDA(im, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, im->stream));
}

void cuda_copy(dp_device *d, void *dst, const void *src, size_t bytes)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    cuda_begin(im);
    CHECK_CUDA(im, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, im->stream));
}

void cuda_zero(dp_device *d, void *p, size_t bytes)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    cuda_begin(im);
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
    cuda_locked guard(d);
    wait(guard.im);
}

int cuda_mark(dp_device *d, bool first)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    if (!im->marks[0])
        for (int i = 0; i < DP_MARKS; i++)
            CHECK_CUDA(im, cudaEventCreate(&im->marks[i]));
    if (first)
        im->n_marks = 0;
    if (im->n_marks == DP_MARKS)
        return -1;
    CHECK_CUDA(im, cudaEventRecord(im->marks[im->n_marks], im->stream));
    return im->n_marks++;
}

double cuda_mark_seconds(dp_device *d, int mark)
{
    cuda_locked guard(d);
    float ms = 0.0f;
    CHECK_CUDA(guard.im, cudaEventElapsedTime(&ms, guard.im->marks[0], guard.im->marks[mark]));
    return 1e-3 * ms;
}

double cuda_busy_seconds(dp_device *d)
{
    cuda_locked guard(d);
    return guard.im->busy_s;
}

double cuda_gemm_flops(dp_device *d)
{
    cuda_locked guard(d);
    return guard.im->flops_done;
}

const char *cuda_error(dp_device *d)
{
    cuda_locked guard(d);
    return guard.im->error[0] ? guard.im->error : NULL;
}

/* out [cols, rows] = in^T for in [rows, cols] with leading dimension ld: 32 x 32 tiles through
 * shared memory, so that both the reads and the writes are coalesced; blocks of 32 x 8. */
__global__ void transpose_kernel(float *out, const float *in, int rows, int cols, int ld)
{
    __shared__ float tile[32][33]; /* 33: no bank conflicts on the transposed read */
    int r0 = blockIdx.y * 32, c0 = blockIdx.x * 32;
    for (int j = threadIdx.y; j < 32; j += blockDim.y)
        if (r0 + j < rows && c0 + (int)threadIdx.x < cols)
            tile[j][threadIdx.x] = in[(size_t)(r0 + j) * ld + c0 + threadIdx.x];
    __syncthreads();
    for (int j = threadIdx.y; j < 32; j += blockDim.y)
        if (c0 + j < cols && r0 + (int)threadIdx.x < rows)
            out[(size_t)(c0 + j) * rows + r0 + threadIdx.x] = tile[threadIdx.x][j];
}

void transpose(cuda_impl *im, float *out, const float *in, int rows, int cols, int ld)
{
    dim3 grid((cols + 31) / 32, (rows + 31) / 32), block(32, 8);
    transpose_kernel<<<grid, block, 0, im->stream>>>(out, in, rows, cols, ld);
    CHECK_CUDA(im, cudaGetLastError());
}

/* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands. */
void sgemm(cuda_impl *im, int trans_a, int trans_b, int m, int n, int k, float alpha,
           const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    CHECK_CUBLAS(im, cublasSgemm(im->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                 trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, ldb, a,
                                 lda, &beta, c, ldc));
}

/* Makes the scratch buffer hold at least `need` floats; false when it cannot. */
bool reserve_scratch(dp_device *d, cuda_impl *im, size_t need)
{
    if (im->scratch_n >= need)
        return true;
    wait(im);
    CHECK_CUDA(im, cudaFree(im->scratch));
    d->mem_held -= im->scratch_n * sizeof(float);
    im->scratch_n = 0;
    if (cudaMalloc(&im->scratch, need * sizeof(float)) != cudaSuccess) {
        cudaGetLastError();
        im->scratch = NULL;
        return false;
    }
    im->scratch_n = need;
    d->mem_held += need * sizeof(float);
    d->mem_peak = d->mem_held > d->mem_peak ? d->mem_held : d->mem_peak;
    cuda_begin(im);
    return true;
}

/* C = A^T B through transposed copies: At [m, k] and Bt [n, k] in the scratch buffer, then
 * C = At Bt^T, the form of a forward pass. False when the scratch cannot grow. */
bool sgemm_tn_transposed(dp_device *d, cuda_impl *im, int m, int n, int k, float alpha,
                         const float *a, int lda, const float *b, int ldb, float beta, float *c,
                         int ldc)
{
    if (!reserve_scratch(d, im, ((size_t)m + n) * k))
        return false;
    float *at = im->scratch, *bt = im->scratch + (size_t)m * k;
    transpose(im, at, a, k, m, lda);
    transpose(im, bt, b, k, n, ldb);
    sgemm(im, 0, 1, m, n, k, alpha, at, k, bt, k, beta, c, ldc);
    return true;
}

/* ---- tuning: several ways to run one GEMM shape, timed, the fastest kept ----
 *
 * cuBLAS picks one kernel per shape by heuristic; the best one for a shape is often another
 * (on an H200 in TF32, cublasSgemm's choice for the weight gradient A^T B of 4096^3 runs at 60 %
 * of the rate of its forward GEMM of the same size: 527 against 356 us, bench/cuda-bench). So
 * for each large shape the backend lists its ways (cublasSgemm; for A^T B, transposed copies
 * of both operands then the fast form; the first LT_ALGOS algorithms cuBLASLt's heuristic
 * offers), warms up on the first call (CUDA loads kernels on first use), times one way per
 * call on the next calls with events, and then runs the fastest. Every way computes the same
 * GEMM; they differ in their kernels' order of summation only. */

/* The tuning of a shape, made on its first use; NULL when the table is full. */
tune *tune_for(cuda_impl *im, const tune_key &key)
{
    for (int i = 0; i < im->n_tunes; i++) {
        const tune_key &k = im->tunes[i].key; /* field by field: a struct's padding is noise */
        if (k.linear == key.linear && k.ta == key.ta && k.tb == key.tb && k.m == key.m &&
            k.n == key.n && k.k == key.k && k.lda == key.lda && k.ldb == key.ldb &&
            k.ldc == key.ldc)
            return &im->tunes[i];
    }
    if (im->n_tunes == (int)(sizeof im->tunes / sizeof im->tunes[0]))
        return NULL;
    tune *t = &im->tunes[im->n_tunes];
    *t = tune{};
    t->key = key;
    if (cudaEventCreate(&t->start) != cudaSuccess || cudaEventCreate(&t->end) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    im->n_tunes++;
    return t;
}

/* Milliseconds of the way last timed on t. */
float timed_ms(cuda_impl *im, tune *t)
{
    float ms = 0.0f;
    CHECK_CUDA(im, cudaEventSynchronize(t->end));
    CHECK_CUDA(im, cudaEventElapsedTime(&ms, t->start, t->end));
    return ms;
}

/* Which of t's ways this call runs; tune_done follows the call. */
int tune_way(cuda_impl *im, tune *t)
{
    if (!t->warm || t->timed == t->n_ways)
        return t->warm ? t->best : 0;
    if (t->timed > 0)
        t->ms[t->timed - 1] = timed_ms(im, t);
    CHECK_CUDA(im, cudaEventRecord(t->start, im->stream));
    return t->timed;
}

void tune_done(cuda_impl *im, tune *t)
{
    if (!t->warm || t->timed == t->n_ways) {
        t->warm = true;
        return;
    }
    CHECK_CUDA(im, cudaEventRecord(t->end, im->stream));
    if (++t->timed == t->n_ways) {
        t->ms[t->n_ways - 1] = timed_ms(im, t);
        for (int w = 1; w < t->n_ways; w++)
            t->best = t->ms[w] < t->ms[t->best] ? w : t->best;
    }
}

/* Makes the device's cuBLASLt handle and workspace on first use; false when it cannot. */
bool lt_ready(dp_device *d, cuda_impl *im)
{
    if (!im->lt && cublasLtCreate(&im->lt) != CUBLAS_STATUS_SUCCESS) {
        im->lt = NULL;
        return false;
    }
    if (!im->lt_workspace) {
        const size_t workspace = 32u << 20; /* what NVIDIA advises for Hopper */
        if (cudaMalloc(&im->lt_workspace, workspace) != cudaSuccess) {
            cudaGetLastError();
            im->lt_workspace = NULL;
            return false;
        }
        im->lt_workspace_bytes = workspace;
        d->mem_held += workspace; /* held until the device goes */
        d->mem_peak = d->mem_held > d->mem_peak ? d->mem_held : d->mem_peak;
    }
    return true;
}

/* Adds to t's ways the cuBLASLt algorithms its heuristic offers for the row-major GEMM of t's
 * key (as cublasSgemm sees it: column-major C^T = op(B)^T op(A)^T), with the bias epilogue
 * for a linear layer, whose bias pointer is set per call. */
void add_lt_ways(dp_device *d, cuda_impl *im, tune *t, const float *bias)
{
    const tune_key &k = t->key;
    if (!lt_ready(d, im))
        return;
    cublasOperation_t op_a = k.tb ? CUBLAS_OP_T : CUBLAS_OP_N; /* cuBLASLt's A is our B */
    cublasOperation_t op_b = k.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    /* the bias only: cuBLASLt's ReLU epilogue is max(x, 0), with no promise to keep NaN as
     * torch.relu does; cuda_linear runs the ReLU of kernels.h after it */
    cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t found[LT_ALGOS];
    int n_found = 0;
    const cublasStatus_t ok = CUBLAS_STATUS_SUCCESS;
    bool made =
        cublasLtMatmulDescCreate(&t->lt_op, im->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                     : CUBLAS_COMPUTE_32F,
                                 CUDA_R_32F) == ok &&
        cublasLtMatmulDescSetAttribute(t->lt_op, CUBLASLT_MATMUL_DESC_TRANSA, &op_a,
                                       sizeof op_a) == ok &&
        cublasLtMatmulDescSetAttribute(t->lt_op, CUBLASLT_MATMUL_DESC_TRANSB, &op_b,
                                       sizeof op_b) == ok &&
        (!k.linear ||
         (cublasLtMatmulDescSetAttribute(t->lt_op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                         sizeof epilogue) == ok &&
          cublasLtMatmulDescSetAttribute(t->lt_op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                         sizeof bias) == ok)) &&
        cublasLtMatrixLayoutCreate(&t->lt_a, CUDA_R_32F, k.tb ? k.k : k.n, k.tb ? k.n : k.k,
                                   k.ldb) == ok &&
        cublasLtMatrixLayoutCreate(&t->lt_b, CUDA_R_32F, k.ta ? k.m : k.k, k.ta ? k.k : k.m,
                                   k.lda) == ok &&
        cublasLtMatrixLayoutCreate(&t->lt_c, CUDA_R_32F, k.n, k.m, k.ldc) == ok &&
        cublasLtMatmulPreferenceCreate(&pref) == ok &&
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                             &im->lt_workspace_bytes,
                                             sizeof im->lt_workspace_bytes) == ok &&
        cublasLtMatmulAlgoGetHeuristic(im->lt, t->lt_op, t->lt_a, t->lt_b, t->lt_c, t->lt_c,
                                       pref, LT_ALGOS, found, &n_found) == ok;
    if (pref)
        cublasLtMatmulPreferenceDestroy(pref);
    for (int i = 0; made && i < n_found && t->n_ways < MAX_WAYS; i++) {
        t->lt_algo[t->n_ways] = found[i].algo;
        t->way[t->n_ways++] = WAY_LT;
    }
}

/* Runs way w of t (cuBLASLt): C = alpha op(A) op(B) + beta C, plus the bias for a linear. */
bool run_lt(cuda_impl *im, tune *t, int w, float alpha, const float *a, const float *b,
            float beta, float *c, const float *bias)
{
    const cublasStatus_t ok = CUBLAS_STATUS_SUCCESS;
    return (!t->key.linear ||
            cublasLtMatmulDescSetAttribute(t->lt_op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                           sizeof bias) == ok) &&
           cublasLtMatmul(im->lt, t->lt_op, &alpha, b, t->lt_a, a, t->lt_b, &beta, c, t->lt_c,
                          c, t->lt_c, &t->lt_algo[w], im->lt_workspace,
                          im->lt_workspace_bytes, im->stream) == ok;
}

/* Profiling: an event pair around a GEMM's launches. */
void profile_begin(cuda_impl *im, double flops)
{
    im->flops_done += flops;
    if (!im->profiling)
        return;
    if (im->gemm_pending == 64) { /* every pair in use: sum them first */
        CHECK_CUDA(im, cudaEventSynchronize(im->gemm_events[2 * 63 + 1]));
        harvest_gemms(im);
    }
    CHECK_CUDA(im, cudaEventRecord(im->gemm_events[2 * im->gemm_pending], im->stream));
    im->gemm_flops += flops;
}

void profile_end(cuda_impl *im)
{
    if (im->profiling)
        CHECK_CUDA(im, cudaEventRecord(im->gemm_events[2 * im->gemm_pending++ + 1], im->stream));
}

void cuda_gemm(dp_device *d, int trans_a, int trans_b, int m, int n, int k, float alpha,
               const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    if (m == 0 || n == 0)
        return;
    cuda_begin(im);
    bool aligned = ((uintptr_t)a | (uintptr_t)b | (uintptr_t)c) % 16 == 0;
    tune *t = NULL;
    if (aligned && m >= 256 && n >= 256 && k >= 256) {
        t = tune_for(im, tune_key{ false, trans_a, trans_b, m, n, k, lda, ldb, ldc });
        if (t && t->n_ways == 0) { /* first use: list the ways (the scratch made now) */
            t->way[t->n_ways++] = WAY_CUBLAS;
            if (trans_a && !trans_b && reserve_scratch(d, im, ((size_t)m + n) * k))
                t->way[t->n_ways++] = WAY_TRANSPOSED;
            add_lt_ways(d, im, t, NULL);
        }
    }
    int w = t ? tune_way(im, t) : 0;
    way_kind kind = t ? t->way[w] : WAY_CUBLAS;
    profile_begin(im, 2.0 * m * n * k);
    if (kind == WAY_TRANSPOSED)
        sgemm_tn_transposed(d, im, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else if (kind == WAY_LT && !run_lt(im, t, w, alpha, a, b, beta, c, NULL))
        cuda_record_error(im, __FILE__, __LINE__, "cublasLtMatmul", "failed");
    else if (kind == WAY_CUBLAS)
        sgemm(im, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    profile_end(im);
    if (t)
        tune_done(im, t);
}

__global__ void fill_rows_kernel(float *y, const float *row, int rows, int cols)
{
    for (int r = blockIdx.y; r < rows; r += gridDim.y)
        for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += gridDim.x * blockDim.x)
            y[(size_t)r * cols + c] = row[c];
}

/* y [rows, cols] = row in every row: a 2-D grid, so no division per element. */
void fill_rows(cuda_impl *im, float *y, const float *row, int rows, int cols)
{
    dim3 grid((cols + T - 1) / T, rows < 65535 ? rows : 65535);
    fill_rows_kernel<<<grid, T, 0, im->stream>>>(y, row, rows, cols);
    CHECK_CUDA(im, cudaGetLastError());
}

/* y [rows, out] = x [rows, in] W [out, in]^T + b, then the ReLU kernel (which keeps NaN).
 * Ways: bias rows and a cuBLAS GEMM that adds to them; or cuBLASLt adding the bias in its
 * epilogue (a pass over y fewer), with each algorithm its heuristic offers; tuned. */
void cuda_linear(dp_device *d, int rows, int out, int in, const float *x, const float *w,
                 const float *b, float *y, bool relu)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    if (rows == 0 || out == 0)
        return;
    cuda_begin(im);
    bool aligned = ((uintptr_t)x | (uintptr_t)w | (uintptr_t)b | (uintptr_t)y) % 16 == 0 &&
                   in % 4 == 0 && out % 4 == 0;
    tune *t = NULL;
    if (aligned && in > 0) {
        t = tune_for(im, tune_key{ true, 0, 1, rows, out, in, in, in, out });
        if (t && t->n_ways == 0) {
            t->way[t->n_ways++] = WAY_CUBLAS;
            add_lt_ways(d, im, t, b);
        }
    }
    int way = t ? tune_way(im, t) : 0;
    bool fused = t && t->way[way] == WAY_LT;
    if (!fused)
        fill_rows(im, y, b, rows, out);
    profile_begin(im, 2.0 * rows * out * in);
    if (!fused)
        sgemm(im, 0, 1, rows, out, in, 1.0f, x, in, w, in, 1.0f, y, out);
    else if (!run_lt(im, t, way, 1.0f, x, w, 0.0f, y, b))
        cuda_record_error(im, __FILE__, __LINE__, "cublasLtMatmul", "failed");
    profile_end(im);
    if (relu) {
        size_t n = (size_t)rows * out;
        act_forward_kernel<<<blocks_for(n, T), T, 0, im->stream>>>(DP_ACT_RELU, 0.0f, y, y, n);
        CHECK_CUDA(im, cudaGetLastError());
    }
    if (t)
        tune_done(im, t);
}

__global__ void fill_kernel(float *y, float v, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = v;
}

/* A warp a row, copying 4-byte words. */
__global__ void gather_rows_kernel(uint32_t *dst, const uint32_t *src, const int32_t *idx,
                                   int rows, size_t words)
{
    unsigned lane = threadIdx.x % 32, warps = blockDim.x / 32;
    for (size_t r = blockIdx.x * (size_t)warps + threadIdx.x / 32; r < (size_t)rows;
         r += (size_t)gridDim.x * warps) {
        const uint32_t *from = src + (size_t)idx[r] * words;
        uint32_t *to = dst + r * words;
        for (size_t i = lane; i < words; i += 32)
            to[i] = from[i];
    }
}

void cuda_gather_rows(dp_device *d, void *dst, const void *src, const int32_t *idx, int rows,
                      size_t row_bytes)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    if (!rows)
        return;
    cuda_begin(im);
    gather_rows_kernel<<<blocks_for((size_t)rows * 32, T), T, 0, im->stream>>>(
        static_cast<uint32_t *>(dst), static_cast<const uint32_t *>(src), idx, rows,
        row_bytes / 4);
    CHECK_CUDA(im, cudaGetLastError());
}

/* Column sums of a small matrix in one launch: a block covers 32 columns, its 8 warps take
 * every 8th row each, and shared memory adds the 8 partial sums. */
__global__ void column_sums_kernel(float *out, const float *x, int rows, int cols, int accumulate)
{
    __shared__ float part[8][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    float s = 0.0f;
    for (int r = threadIdx.y; c < cols && r < rows; r += 8)
        s += x[(size_t)r * cols + c];
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        for (int g = 1; g < 8; g++)
            s += part[g][threadIdx.x];
        out[c] = accumulate ? out[c] + s : s;
    }
}

/* Column sums as a GEMV with a vector of ones: x^T [cols, rows] (column-major: x itself) times
 * ones [rows]; cuBLAS spreads the rows over the whole GPU, where a thread per column would
 * leave most of it idle. */
void cuda_sum_rows(dp_device *d, float *out, const float *x, int rows, int cols, int accumulate)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    if (rows == 0) {
        if (!accumulate)
            CHECK_CUDA(im, cudaMemsetAsync(out, 0, (size_t)cols * sizeof *out, im->stream));
        return;
    }
    cuda_begin(im);
    if ((size_t)rows * cols <= (1u << 18)) { /* small: one launch, where a GEMV takes two */
        column_sums_kernel<<<(cols + 31) / 32, dim3(32, 8), 0, im->stream>>>(out, x, rows, cols,
                                                                            accumulate);
        CHECK_CUDA(im, cudaGetLastError());
        return;
    }
    if (im->ones_n < (size_t)rows) {
        wait(im);
        CHECK_CUDA(im, cudaFree(im->ones));
        im->ones = NULL;
        im->ones_n = 0;
        if (cudaMalloc(&im->ones, (size_t)rows * sizeof *im->ones) != cudaSuccess) {
            cuda_record_error(im, __FILE__, __LINE__, "cudaMalloc", "out of memory (ones)");
            return;
        }
        im->ones_n = (size_t)rows;
        cuda_begin(im);
        fill_kernel<<<blocks_for(im->ones_n, T), T, 0, im->stream>>>(im->ones, 1.0f, im->ones_n);
    }
    float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    CHECK_CUBLAS(im, cublasSgemv(im->blas, CUBLAS_OP_N, cols, rows, &one, x, cols, im->ones, 1,
                                 &beta, out, 1));
}

void cuda_act_forward(dp_device *d, dp_act act, float slope, float *y, const float *x, size_t n)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    if (!n)
        return;
    cuda_begin(im);
    act_forward_kernel<<<blocks_for(n, T), T, 0, im->stream>>>(act, slope, y, x, n);
    CHECK_CUDA(im, cudaGetLastError());
}

void cuda_act_backward(dp_device *d, dp_act act, float slope, float *dx, const float *x,
                       const float *y, const float *dy, size_t n)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    if (!n)
        return;
    cuda_begin(im);
    act_backward_kernel<<<blocks_for(n, T), T, 0, im->stream>>>(act, slope, dx, x, y, dy, n);
    CHECK_CUDA(im, cudaGetLastError());
}

void cuda_softmax_xent(dp_device *d, const float *logits, const int32_t *labels, int rows,
                       int classes, float grad_scale, float *dlogits, float *stats)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    if (!rows)
        return;
    cuda_begin(im);
    softmax_xent_kernel<<<blocks_for(rows, T), T, 0, im->stream>>>(logits, labels, rows, classes,
                                                                   grad_scale, dlogits, stats);
    CHECK_CUDA(im, cudaGetLastError());
}

void cuda_sgd_step(dp_device *d, float *p, const float *g, float *buf, size_t n, dp_sgd_args a)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    cuda_begin(im);
    sgd_kernel<<<blocks_for(n, T), T, 0, im->stream>>>(p, g, buf, n, a);
    CHECK_CUDA(im, cudaGetLastError());
}

void cuda_adamw_step(dp_device *d, float *p, const float *g, float *m, float *v, size_t n,
                     dp_adamw_args a)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    cuda_begin(im);
    adamw_kernel<<<blocks_for(n, T), T, 0, im->stream>>>(p, g, m, v, n, a);
    CHECK_CUDA(im, cudaGetLastError());
}

double cuda_sum_squares(dp_device *d, const float *x, size_t n)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    double *sum = im->sumsq, host = 0.0;
    cuda_begin(im);
    CHECK_CUDA(im, cudaMemsetAsync(sum, 0, sizeof *sum, im->stream));
    unsigned blocks = blocks_for(n, T);
    sum_squares_kernel<<<blocks > 1024 ? 1024 : blocks, T, 0, im->stream>>>(x, n, sum);
    CHECK_CUDA(im, cudaGetLastError());
    CHECK_CUDA(im, cudaMemcpyAsync(&host, sum, sizeof host, cudaMemcpyDeviceToHost, im->stream));
    wait(im);
    return host;
}

void cuda_accumulate_squares(dp_device *d, const float *x, size_t n, float *acc)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    if (!n)
        return;
    cuda_begin(im);
    unsigned blocks = blocks_for(n, T);
    accumulate_squares_kernel<<<blocks > 1024 ? 1024 : blocks, T, 0, im->stream>>>(x, n, acc);
    CHECK_CUDA(im, cudaGetLastError());
}

void cuda_scale(dp_device *d, float *x, float s, size_t n)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    cuda_begin(im);
    scale_kernel<<<blocks_for(n, T), T, 0, im->stream>>>(x, s, n);
    CHECK_CUDA(im, cudaGetLastError());
}

/* Launches kernel(args...) over `count` threads (grid-stride: the kernel loops) on d's compute
 * stream; nothing when count is 0. */
template <typename... Params, typename... Args>
void launch(dp_device *d, size_t count, void (*kernel)(Params...), Args... args)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    if (!count)
        return;
    cuda_begin(im);
    kernel<<<blocks_for(count, T), T, 0, im->stream>>>(args...);
    CHECK_CUDA(im, cudaGetLastError());
}

__global__ void im2col_kernel(float *col, const float *x, dp_conv_geom g, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        col[i] = dp_im2col_value(x, g, i);
}

__global__ void col2im_kernel(float *dx, const float *col, dp_conv_geom g, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dx[i] = dp_col2im_value(col, g, i);
}

__global__ void pool_forward_kernel(bool max, float *y, int32_t *arg, const float *x,
                                    dp_conv_geom g, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = dp_pool_value(x, g, max, i, arg ? arg + i : NULL);
}

__global__ void pool_backward_kernel(bool max, float *dx, const int32_t *arg, const float *dy,
                                     dp_conv_geom g, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dx[i] = dp_pool_grad(dy, arg, g, max, i);
}

__global__ void channel_bias_kernel(float *y, const float *b, size_t total, int channels,
                                    int positions)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] += b[i / positions % channels];
}

/* A thread per channel, summing its values in sample order (as the CPU does). */
__global__ void channel_bias_grad_kernel(float *db, const float *dy, int n, int channels,
                                         int positions, bool accumulate)
{
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < channels; c += gridDim.x * blockDim.x) {
        float sum = 0.0f;
        for (int i = 0; i < n; i++)
            for (int p = 0; p < positions; p++)
                sum += dy[((size_t)i * channels + c) * positions + p];
        db[c] = accumulate ? db[c] + sum : sum;
    }
}

__global__ void add_kernel(float *y, const float *a, const float *b, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = a[i] + b[i];
}

void cuda_im2col(dp_device *d, float *col, const float *x, int n, dp_conv_geom g)
{
    size_t count = (size_t)n * g.oh * g.ow * g.c * g.kh * g.kw;
    launch(d, count, im2col_kernel, col, x, g, count);
}

void cuda_col2im(dp_device *d, float *dx, const float *col, int n, dp_conv_geom g)
{
    size_t count = (size_t)n * g.c * g.h * g.w;
    launch(d, count, col2im_kernel, dx, col, g, count);
}

void cuda_pool_forward(dp_device *d, bool max, float *y, int32_t *arg, const float *x,
                       int planes, dp_conv_geom g)
{
    size_t count = (size_t)planes * g.oh * g.ow;
    launch(d, count, pool_forward_kernel, max, y, arg, x, g, count);
}

void cuda_pool_backward(dp_device *d, bool max, float *dx, const int32_t *arg, const float *dy,
                        int planes, dp_conv_geom g)
{
    size_t count = (size_t)planes * g.h * g.w;
    launch(d, count, pool_backward_kernel, max, dx, arg, dy, g, count);
}

void cuda_channel_bias(dp_device *d, float *y, const float *b, int n, int channels,
                       int positions)
{
    size_t total = (size_t)n * channels * positions;
    launch(d, total, channel_bias_kernel, y, b, total, channels, positions);
}

void cuda_channel_bias_grad(dp_device *d, float *db, const float *dy, int n, int channels,
                            int positions, bool accumulate)
{
    launch(d, (size_t)channels, channel_bias_grad_kernel, db, dy, n, channels, positions,
           accumulate);
}

void cuda_add(dp_device *d, float *y, const float *a, const float *b, size_t n)
{
    launch(d, n, add_kernel, y, a, b, n);
}

/* ---- batch normalisation: a block per channel for the sums (in double), a thread per value
 * for the rest ---- */

#define BN_THREADS 256

/* The block's sum of v (every thread's), returned to thread 0. */
__device__ double block_sum(double v, double *shared)
{
    shared[threadIdx.x] = v;
    __syncthreads();
    for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half)
            shared[threadIdx.x] += shared[threadIdx.x + half];
        __syncthreads();
    }
    double sum = shared[0];
    __syncthreads();
    return sum;
}

__global__ void bn_sums_kernel(float *sums, const float *x, const float *centre, int n,
                               int channels, int positions)
{
    __shared__ double shared[BN_THREADS];
    int c = blockIdx.x;
    size_t count = (size_t)n * positions;
    float mean = centre ? dp_bn_mean(centre, channels, c) : 0.0f;
    double sum = 0.0;
    for (size_t k = threadIdx.x; k < count; k += blockDim.x) {
        double v = x[dp_bn_at(channels, positions, k / positions, c, k % positions)];
        v = centre ? (v - mean) * (v - mean) : v;
        sum += v;
    }
    sum = block_sum(sum, shared);
    if (threadIdx.x == 0) {
        sums[c] = (float)sum;
        if (c == 0)
            sums[channels] = (float)count;
    }
}

__global__ void bn_backward_sums_kernel(float *sums, const float *dy, const float *x,
                                        const float *stats, int n, int channels, int positions)
{
    __shared__ double shared[BN_THREADS];
    int c = blockIdx.x;
    size_t count = (size_t)n * positions;
    double dyx = 0.0, sdy = 0.0;
    for (size_t k = threadIdx.x; k < count; k += blockDim.x) {
        size_t e = dp_bn_at(channels, positions, k / positions, c, k % positions);
        float xhat = (x[e] - stats[c]) * stats[channels + c];
        dyx += (double)dy[e] * xhat;
        sdy += dy[e];
    }
    dyx = block_sum(dyx, shared);
    sdy = block_sum(sdy, shared);
    if (threadIdx.x == 0) {
        sums[c] = (float)dyx;
        sums[channels + c] = (float)sdy;
    }
}

__global__ void bn_statistics_kernel(float *stats, float *running, const float *acc,
                                     int channels)
{
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < channels; c += gridDim.x * blockDim.x)
        dp_bn_statistics_channel(stats, running, acc, channels, c);
}

__global__ void bn_forward_kernel(float *y, const float *x, const float *stats, const float *w,
                                  const float *b, int channels, int positions, size_t total)
{
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x)
        y[e] = dp_bn_value(x, stats, w, b, channels, positions, e);
}

__global__ void bn_backward_dx_kernel(float *dx, const float *dy, const float *x,
                                      const float *stats, const float *w, const float *sums,
                                      int channels, int positions, size_t total)
{
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x)
        dx[e] = dp_bn_dx_value(dy, x, stats, w, sums, channels, positions, e);
}

void cuda_bn_sums(dp_device *d, float *sums, const float *x, const float *centre, int n,
                  int channels, int positions)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    cuda_begin(im);
    bn_sums_kernel<<<channels, BN_THREADS, 0, im->stream>>>(sums, x, centre, n, channels,
                                                            positions);
    CHECK_CUDA(im, cudaGetLastError());
}

void cuda_bn_statistics(dp_device *d, float *stats, float *running, const float *acc,
                        int channels)
{
    launch(d, (size_t)channels, bn_statistics_kernel, stats, running, acc, channels);
}

void cuda_bn_forward(dp_device *d, float *y, const float *x, const float *stats, const float *w,
                     const float *b, int n, int channels, int positions)
{
    size_t total = (size_t)n * channels * positions;
    launch(d, total, bn_forward_kernel, y, x, stats, w, b, channels, positions, total);
}

void cuda_bn_backward_sums(dp_device *d, float *sums, const float *dy, const float *x,
                           const float *stats, int n, int channels, int positions)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    cuda_begin(im);
    bn_backward_sums_kernel<<<channels, BN_THREADS, 0, im->stream>>>(sums, dy, x, stats, n,
                                                                     channels, positions);
    CHECK_CUDA(im, cudaGetLastError());
}

void cuda_bn_backward_dx(dp_device *d, float *dx, const float *dy, const float *x,
                         const float *stats, const float *w, const float *sums, int n,
                         int channels, int positions)
{
    size_t total = (size_t)n * channels * positions;
    launch(d, total, bn_backward_dx_kernel, dx, dy, x, stats, w, sums, channels, positions,
           total);
}

__global__ void add_broadcast_kernel(float *y, const float *x, const float *b, size_t total,
                                     int n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = x[i] + b[i % n];
}

/* Row operations: a thread per row (simple, and slow for wide rows; correct first). */
__global__ void layernorm_forward_kernel(float *y, float *stats, const float *x, const float *w,
                                         const float *b, int rows, int n)
{
    for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += gridDim.x * blockDim.x)
        dp_layernorm_row(y + (size_t)r * n, stats + 2 * r, x + (size_t)r * n, w, b, n);
}

__global__ void layernorm_dx_kernel(float *dx, const float *dy, const float *x,
                                    const float *stats, const float *w, int rows, int n)
{
    for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += gridDim.x * blockDim.x)
        dp_layernorm_dx_row(dx + (size_t)r * n, dy + (size_t)r * n, x + (size_t)r * n,
                            stats + 2 * r, w, n);
}

__global__ void layernorm_param_kernel(float *dw, float *db, const float *dy, const float *x,
                                       const float *stats, int rows, int n, bool accumulate)
{
    for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < n; j += gridDim.x * blockDim.x)
        dp_layernorm_param_grad(dw, db, dy, x, stats, rows, n, j, accumulate);
}

__global__ void softmax_forward_kernel(float *y, const float *x, int rows, int n, float scale,
                                       int causal)
{
    for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += gridDim.x * blockDim.x)
        dp_softmax_row(y + (size_t)r * n, x + (size_t)r * n, n, scale,
                       causal > 0 ? r % causal : n - 1);
}

__global__ void softmax_backward_kernel(float *dx, const float *y, const float *dy, int rows,
                                        int n, float scale)
{
    for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += gridDim.x * blockDim.x)
        dp_softmax_grad_row(dx + (size_t)r * n, y + (size_t)r * n, dy + (size_t)r * n, n, scale);
}

__global__ void embedding_forward_kernel(float *y, const float *ids, const float *table,
                                         size_t total, int dim, int vocab)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = table[(size_t)dp_token(ids[i / dim], vocab) * dim + i % dim];
}

__global__ void embedding_backward_kernel(float *dtable, const float *ids, const float *dy,
                                          int positions, int dim, int vocab, bool accumulate)
{
    size_t total = (size_t)vocab * dim;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        float g = dp_embedding_grad_value(ids, dy, positions, dim, vocab, (int)(i / dim),
                                          (int)(i % dim));
        dtable[i] = accumulate ? dtable[i] + g : g;
    }
}

__global__ void dropout_kernel(float *y, const float *x, size_t total, int n, dp_dropout_args a)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = x[i] * dp_dropout_scale(a, i / n, i % n);
}

void cuda_dropout(dp_device *d, float *y, const float *x, int rows, int n, dp_dropout_args a)
{
    size_t total = (size_t)rows * n;
    launch(d, total, dropout_kernel, y, x, total, n, a);
}

__global__ void noise_kernel(float *x, size_t total, int n, dp_noise_args a)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < total)
        x[i] = dp_noise_value(a, i / n, i % n);
}

void cuda_noise(dp_device *d, float *x, int rows, int n, dp_noise_args a)
{
    size_t total = (size_t)rows * n;
    launch(d, total, noise_kernel, x, total, n, a);
}

__global__ void mlm_mask_kernel(float *x, int32_t *y, size_t total, int n, dp_noise_args a)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= total)
        return;
    int id = dp_mlm_input(a, i / n, i % n, x ? (int)x[i] : 0);
    if (x && id >= 0)
        x[i] = (float)id;
    if (y && id < 0)
        y[i] = -1;
}

void cuda_mlm_mask(dp_device *d, float *x, int32_t *y, int rows, int n, dp_noise_args a)
{
    size_t total = (size_t)rows * n;
    launch(d, total, mlm_mask_kernel, x, y, total, n, a);
}

__global__ void bce_logits_kernel(const float *z, const int32_t *targets, int n,
                                  float grad_scale, float *dz, float *stats)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    float t = targets[i] ? 1.0f : 0.0f, s = dp_sigmoid(z[i]);
    atomicAdd(&stats[0], dp_bce_logits(z[i], t));
    if ((z[i] > 0.0f) == (t > 0.0f))
        atomicAdd(&stats[1], 1.0f);
    atomicAdd(&stats[2], s);
    if (dz)
        dz[i] = (s - t) * grad_scale;
}

void cuda_bce_logits(dp_device *d, const float *z, const int32_t *targets, int n,
                     float grad_scale, float *dz, float *stats)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    if (!n)
        return;
    cuda_begin(im);
    bce_logits_kernel<<<blocks_for(n, T), T, 0, im->stream>>>(z, targets, n, grad_scale, dz,
                                                              stats);
    CHECK_CUDA(im, cudaGetLastError());
}

void cuda_gemm_batched(dp_device *d, int trans_a, int trans_b, int m, int n, int k, float alpha,
                       const float *a, int lda, long stride_a, const float *b, int ldb,
                       long stride_b, float beta, float *c, int ldc, long stride_c, int batch)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    if (m == 0 || n == 0 || batch == 0)
        return;
    cuda_begin(im);
    im->flops_done += 2.0 * m * n * k * batch;
    /* row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, as in sgemm */
    CHECK_CUBLAS(im, cublasSgemmStridedBatched(
                         im->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                         trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, ldb, stride_b,
                         a, lda, stride_a, &beta, c, ldc, stride_c, batch));
}

void cuda_add_broadcast(dp_device *d, float *y, const float *x, const float *b, int rows, int n)
{
    size_t total = (size_t)rows * n;
    launch(d, total, add_broadcast_kernel, y, x, b, total, n);
}

void cuda_layernorm_forward(dp_device *d, float *y, float *stats, const float *x, const float *w,
                            const float *b, int rows, int n)
{
    launch(d, (size_t)rows, layernorm_forward_kernel, y, stats, x, w, b, rows, n);
}

void cuda_layernorm_backward(dp_device *d, float *dx, float *dw, float *db, const float *dy,
                             const float *x, const float *stats, const float *w, int rows, int n,
                             bool accumulate)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    cuda_begin(im);
    layernorm_param_kernel<<<blocks_for(n, T), T, 0, im->stream>>>(dw, db, dy, x, stats, rows, n,
                                                                   accumulate);
    CHECK_CUDA(im, cudaGetLastError());
    if (dx && rows) {
        layernorm_dx_kernel<<<blocks_for(rows, T), T, 0, im->stream>>>(dx, dy, x, stats, w, rows,
                                                                       n);
        CHECK_CUDA(im, cudaGetLastError());
    }
}

void cuda_softmax_forward(dp_device *d, float *y, const float *x, int rows, int n, float scale,
                          int causal)
{
    launch(d, (size_t)rows, softmax_forward_kernel, y, x, rows, n, scale, causal);
}

void cuda_softmax_backward(dp_device *d, float *dx, const float *y, const float *dy, int rows,
                           int n, float scale)
{
    launch(d, (size_t)rows, softmax_backward_kernel, dx, y, dy, rows, n, scale);
}

void cuda_embedding_forward(dp_device *d, float *y, const float *ids, const float *table,
                            int positions, int dim, int vocab)
{
    size_t total = (size_t)positions * dim;
    launch(d, total, embedding_forward_kernel, y, ids, table, total, dim, vocab);
}

void cuda_embedding_backward(dp_device *d, float *dtable, const float *ids, const float *dy,
                             int positions, int dim, int vocab, bool accumulate)
{
    launch(d, (size_t)vocab * dim, embedding_backward_kernel, dtable, ids, dy, positions, dim,
           vocab, accumulate);
}

/* "CUDA runtime 13.0, cuBLAS 13.0.0, NCCL 2.28.3, cuDNN 9.19.0": the libraries as loaded (no
 * GPU needed). */
void cuda_versions(char *text, size_t size)
{
    char dnn[160];
    cudnn_describe(dnn, sizeof dnn);
    int runtime = 0, major = 0, minor = 0, patch = 0, nccl = 0;
    cudaRuntimeGetVersion(&runtime);
    cublasGetProperty(MAJOR_VERSION, &major);
    cublasGetProperty(MINOR_VERSION, &minor);
    cublasGetProperty(PATCH_LEVEL, &patch);
    ncclGetVersion(&nccl); /* major * 10000 + minor * 100 + patch since NCCL 2.9 */
    snprintf(text, size, "CUDA runtime %d.%d, cuBLAS %d.%d.%d, NCCL %d.%d.%d, %s",
             runtime / 1000, runtime % 1000 / 10, major, minor, patch, nccl / 10000,
             nccl % 10000 / 100, nccl % 100, dnn);
}

} // namespace

extern "C" {

/* In the order of struct dp_backend's members. */
const dp_backend dp_backend_cuda = {
    "cuda",
    false,
    cuda_bind,
    cuda_alloc,
    cuda_release,
    cuda_upload,
    cuda_download,
    cuda_upload_async,
    cuda_copy,
    cuda_zero,
    cuda_host_alloc,
    cuda_host_free,
    cuda_synchronize,
    cuda_busy_seconds,
    cuda_gemm_flops,
    NULL, /* cpu_threads: a GPU computes on its own */
    NULL, /* helper_cpu_seconds */
    cuda_mark,
    cuda_mark_seconds,
    cuda_error,
    cuda_gemm,
    cuda_gather_rows,
    cuda_linear,
    cuda_sum_rows,
    cuda_act_forward,
    cuda_act_backward,
    cuda_softmax_xent,
    cuda_sgd_step,
    cuda_adamw_step,
    cuda_sum_squares,
    cuda_accumulate_squares,
    cuda_scale,
    cuda_im2col,
    cuda_col2im,
    cuda_conv_forward, /* cuDNN (cudnn_cuda.cu); a device without it has own_kernels */
    cuda_conv_backward_data,
    cuda_conv_backward_weights,
    cuda_pool_forward,
    cuda_pool_backward,
    cuda_channel_bias,
    cuda_channel_bias_grad,
    cuda_add,
    cuda_bn_sums,
    cuda_bn_statistics,
    cuda_bn_forward,
    cuda_bn_backward_sums,
    cuda_bn_backward_dx,
    cuda_gemm_batched,
    cuda_add_broadcast,
    cuda_layernorm_forward,
    cuda_layernorm_backward,
    cuda_softmax_forward,
    cuda_softmax_backward,
    cuda_embedding_forward,
    cuda_embedding_backward,
    cuda_dropout,
    cuda_noise,
    cuda_mlm_mask,
    cuda_bce_logits,
    true,
    cuda_versions,
    dp_cuda_device_count,
    dp_cuda_device_init,
    dp_cuda_device_destroy,
    cuda_group_create,
    cuda_group_destroy,
    cuda_group_kind,
    cuda_group_allreduce,
    cuda_group_join,
    cuda_xfer_create,
    cuda_xfer_destroy,
    cuda_xfer_send,
    cuda_xfer_recv,
};

void dp_cuda_set_profiling(dp_device *d, bool on)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    if (on && !im->gemm_events[0])
        for (int i = 0; i < 2 * 64; i++)
            CHECK_CUDA(im, cudaEventCreate(&im->gemm_events[i]));
    wait(im);
    im->profiling = on;
}

void dp_cuda_print_tuning(dp_device *d, FILE *out)
{
    static const char *const names[] = { "cublas", "transposed", "cublaslt" };
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    for (int i = 0; i < im->n_tunes; i++) {
        const tune *t = &im->tunes[i];
        const tune_key &k = t->key;
        fprintf(out, "tuned op=%s ta=%d tb=%d m=%d n=%d k=%d", k.linear ? "linear" : "gemm", k.ta, k.tb, k.m, k.n, k.k);
        for (int w = 0; w < t->n_ways; w++)
            fprintf(out, " %s%d_us=%.1f", names[t->way[w]], w,
                    w < t->timed ? 1e3 * t->ms[w] : -1.0);
        fprintf(out, " chosen=%s\n", t->timed < t->n_ways ? "undecided" : names[t->way[t->best]]);
    }
    cudnn_print_choices(im, out);
}

dp_cuda_profile dp_cuda_device_profile(dp_device *d)
{
    cuda_locked guard(d);
    wait(guard.im);
    return dp_cuda_profile{ guard.im->gemm_s, guard.im->gemm_flops };
}

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

/* Lets GPU `ordinal` address the memory of every other GPU it can reach directly (NVLink or
 * PCIe peer-to-peer), for pipeline links and reductions; the current device is `ordinal`. */
static void enable_peer_access(int ordinal)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess)
        return;
    for (int peer = 0; peer < n; peer++) {
        int can = 0;
        if (peer != ordinal && cudaDeviceCanAccessPeer(&can, ordinal, peer) == cudaSuccess && can)
            cudaDeviceEnablePeerAccess(peer, 0); /* fails harmlessly when already enabled */
    }
    cudaGetLastError();
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
    CHECK_CUDA(im, cudaStreamCreateWithFlags(&im->comm, cudaStreamNonBlocking));
    CHECK_CUDA(im, cudaStreamCreateWithFlags(&im->copy, cudaStreamNonBlocking));
    CHECK_CUDA(im, cudaEventCreateWithFlags(&im->comm_ready, cudaEventDisableTiming));
    CHECK_CUDA(im, cudaEventCreateWithFlags(&im->comm_done, cudaEventDisableTiming));
    CHECK_CUDA(im, cudaEventCreate(&im->span_start));
    CHECK_CUDA(im, cudaEventCreate(&im->span_end));
    CHECK_CUDA(im, cudaMalloc(&im->sumsq, sizeof *im->sumsq));
    CHECK_CUDA(im, cudaMemGetInfo(&free_b, &total_b));
    CHECK_CUBLAS(im, cublasCreate(&im->blas));
    CHECK_CUBLAS(im, cublasSetStream(im->blas, im->stream));
    /* TF32 exists from compute capability 8.0 (Ampere) on; older GPUs compute in fp32. */
    bool use_tf32 = tf32 && prop.major >= 8;
    im->tf32 = use_tf32;
    CHECK_CUBLAS(im, cublasSetMathMode(im->blas, use_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                          : CUBLAS_DEFAULT_MATH));
    d->own_kernels = !cudnn_device_init(im); /* without cuDNN, convolutions by im2col */
    enable_peer_access(ordinal);
    if (im->error[0]) {
        int rc = dp_fail(err, "cuda:%d: %s", ordinal, im->error);
        dp_cuda_device_destroy(d);
        return rc;
    }
    snprintf(d->model, sizeof d->model, "%.63s", prop.name);
    if (cudaDeviceGetPCIBusId(d->bus_id, (int)sizeof d->bus_id, ordinal) != cudaSuccess)
        d->bus_id[0] = '\0';
    d->mem_total = total_b;
    d->peak_flops = dp_peak_gpu_flops(prop.name, use_tf32);
    return 0;
}

/* Called once no thread uses the device any more, so without its lock. */
void dp_cuda_device_destroy(dp_device *d)
{
    cuda_impl *im = cuda_impl_of(d);
    if (!im)
        return;
    cudaSetDevice(im->ordinal);
    if (im->stream) /* what the streams still do may use the memory freed below */
        cudaDeviceSynchronize();
    if (im->blas)
        cublasDestroy(im->blas);
    cudnn_device_destroy(im);
    for (cudaEvent_t e : { im->span_start, im->span_end, im->comm_ready, im->comm_done })
        if (e)
            cudaEventDestroy(e);
    for (cuda_block *b = im->used, *next; b; b = next) { /* freed by the engine first, normally */
        next = b->next;
        cudaFree(b->p);
        free(b);
    }
    free_cached(im);
    cudaFree(im->ones);
    cudaFree(im->sumsq);
    cudaFree(im->scratch);
    for (int i = 0; i < im->n_tunes; i++) {
        tune *t = &im->tunes[i];
        cudaEventDestroy(t->start);
        cudaEventDestroy(t->end);
        if (t->lt_op)
            cublasLtMatmulDescDestroy(t->lt_op);
        for (cublasLtMatrixLayout_t l : { t->lt_a, t->lt_b, t->lt_c })
            if (l)
                cublasLtMatrixLayoutDestroy(l);
    }
    if (im->lt)
        cublasLtDestroy(im->lt);
    cudaFree(im->lt_workspace);
    for (int i = 0; im->gemm_events[0] && i < 2 * 64; i++)
        cudaEventDestroy(im->gemm_events[i]);
    for (int i = 0; im->marks[0] && i < DP_MARKS; i++)
        cudaEventDestroy(im->marks[i]);
    for (cudaStream_t s : { im->stream, im->comm, im->copy })
        if (s)
            cudaStreamDestroy(s);
    pthread_mutex_destroy(&im->lock);
    free(im);
    d->impl = NULL;
}

} // extern "C"
