/* cudnn_cuda.cu -- the CUDA backend's convolutions through cuDNN 9, loaded at run time.
 *
 * libcudnn.so.9 is opened with dlopen at the first CUDA device (or --version), its functions
 * found with dlsym, so that the program builds and runs where cuDNN is not installed: a device
 * made without it sets own_kernels and its convolutions stay im2col and GEMMs. The legacy API
 * is enough: NCHW tensors, OIHW filters, one descriptor set per shape.
 *
 * Each device has a cuDNN handle on its compute stream. A convolution pass of one shape
 * (geometry, output channels, samples, and whether the buffers are 16-byte aligned: an
 * algorithm found for aligned buffers may need them) gets its descriptors and its algorithm
 * on first use: cudnnFind*AlgorithmEx times every algorithm on the call's own buffers (the
 * output is written by the call anyway) and the fastest is kept, as backend_cuda.cu tunes
 * GEMMs. The workspace is the device's, grown to what the algorithms of a shape ask for (at
 * most WORKSPACE_MAX) and held until the device goes, counted in mem_held as cuBLASLt's is.
 * Without TF32 the descriptors say CUDNN_FMA_MATH, so that fp32 stays fp32 (cuDNN's default
 * lets Ampere and later compute fp32 convolutions in TF32). */
extern "C" {
#include "engine/backend.h"
}

#include <cudnn.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda_impl.h"

namespace {

/* The cuDNN functions used, as cudnn.h declares them: field X is cudnnX. */
#define CUDNN_FUNCTIONS(F)                                                                   \
    F(GetVersion) F(GetErrorString) F(Create) F(Destroy) F(SetStream)                       \
    F(CreateTensorDescriptor) F(SetTensor4dDescriptor) F(DestroyTensorDescriptor)           \
    F(CreateFilterDescriptor) F(SetFilter4dDescriptor) F(DestroyFilterDescriptor)           \
    F(CreateConvolutionDescriptor) F(SetConvolution2dDescriptor)                            \
    F(SetConvolutionMathType) F(DestroyConvolutionDescriptor)                               \
    F(GetConvolutionForwardWorkspaceSize) F(GetConvolutionBackwardDataWorkspaceSize)        \
    F(GetConvolutionBackwardFilterWorkspaceSize) F(FindConvolutionForwardAlgorithmEx)       \
    F(FindConvolutionBackwardDataAlgorithmEx) F(FindConvolutionBackwardFilterAlgorithmEx)   \
    F(ConvolutionForward) F(ConvolutionBackwardData) F(ConvolutionBackwardFilter)           \
    F(ConvolutionBackwardBias) F(AddTensor)

struct cudnn_api {
#define FIELD(name) decltype(&cudnn##name) name;
    CUDNN_FUNCTIONS(FIELD)
#undef FIELD
};

cudnn_api api;
bool api_ready;        /* every function found */
char api_missing[160]; /* else why not, for --version */
pthread_once_t api_once = PTHREAD_ONCE_INIT;

void load_api()
{
    void *lib = dlopen("libcudnn.so.9", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(api_missing, sizeof api_missing, "cuDNN: not found (convolutions by im2col)");
        return;
    }
    const char *missing = NULL;
#define FIND(name)                                                                           \
    api.name = reinterpret_cast<decltype(api.name)>(dlsym(lib, "cudnn" #name));             \
    if (!api.name && !missing)                                                               \
        missing = "cudnn" #name;
    CUDNN_FUNCTIONS(FIND)
#undef FIND
    if (missing) {
        snprintf(api_missing, sizeof api_missing,
                 "cuDNN: libcudnn.so.9 has no %s (convolutions by im2col)", missing);
        dlclose(lib);
        return;
    }
    api_ready = true; /* the library stays loaded for the process's life */
}

/* The API once loaded, or NULL. */
const cudnn_api *loaded()
{
    pthread_once(&api_once, load_api);
    return api_ready ? &api : NULL;
}

#define CHECK_CUDNN(im, call)                                                                \
    do {                                                                                     \
        cudnnStatus_t s_ = (call);                                                           \
        if (s_ != CUDNN_STATUS_SUCCESS)                                                      \
            cuda_record_error((im), __FILE__, __LINE__, #call, api.GetErrorString(s_));      \
    } while (0)

const size_t WORKSPACE_MAX = 256u << 20; /* room an algorithm may use; larger ones are left out */
const int MAX_PLANS = 128;               /* the least recently used goes first */

enum conv_pass { PASS_FORWARD, PASS_BACKWARD_DATA, PASS_BACKWARD_FILTER };
const char *const pass_names[] = { "forward", "backward_data", "backward_filter" };

/* What a plan is made for; zeroed before it is filled in (ints only: memcmp compares it). */
struct plan_key {
    int pass;
    dp_conv_geom g;
    int oc, n;
    int aligned; /* every buffer of the call at a multiple of 16 bytes */
};

/* One pass of one shape: x [n, c, h, w], y [n, oc, oh, ow], w [oc, c, kh, kw], bias
 * [1, oc, 1, 1], the algorithm found and its math type. */
struct conv_plan {
    plan_key key;
    cudnnTensorDescriptor_t x, y, bias;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    int algo;             /* a cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t of the pass */
    cudnnMathType_t math; /* the math type the algorithm was timed with */
    float ms;             /* its time */
    unsigned long long used;
};

} // namespace

struct cudnn_state {
    cudnnHandle_t handle;
    conv_plan plans[MAX_PLANS];
    int n_plans;
    unsigned long long calls;
    void *workspace;
    size_t workspace_bytes;
};

namespace {

void drop(conv_plan *p)
{
    if (p->x)
        api.DestroyTensorDescriptor(p->x);
    if (p->y)
        api.DestroyTensorDescriptor(p->y);
    if (p->bias)
        api.DestroyTensorDescriptor(p->bias);
    if (p->w)
        api.DestroyFilterDescriptor(p->w);
    if (p->conv)
        api.DestroyConvolutionDescriptor(p->conv);
    memset(p, 0, sizeof *p);
}

/* Makes p's descriptors for key k; false (recorded) on failure. */
bool describe(cuda_impl *im, const plan_key &k, conv_plan *p)
{
    const dp_conv_geom &g = k.g;
    memset(p, 0, sizeof *p);
    p->key = k;
    /* cuDNN's legacy API indexes a tensor with 32-bit ints */
    double most = (double)k.n * (g.c * (double)g.h * g.w > (double)k.oc * g.oh * g.ow
                                     ? g.c * (double)g.h * g.w
                                     : (double)k.oc * g.oh * g.ow);
    if (most >= 2147483648.0) {
        char msg[160];
        snprintf(msg, sizeof msg, "a tensor of %.0f values is past cuDNN's 2^31 (use a "
                                  "smaller batch)", most);
        cuda_record_error(im, __FILE__, __LINE__, "cuDNN convolution", msg);
        return false;
    }
    cudnnMathType_t math = im->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
    CHECK_CUDNN(im, api.CreateTensorDescriptor(&p->x));
    CHECK_CUDNN(im, api.CreateTensorDescriptor(&p->y));
    CHECK_CUDNN(im, api.CreateTensorDescriptor(&p->bias));
    CHECK_CUDNN(im, api.CreateFilterDescriptor(&p->w));
    CHECK_CUDNN(im, api.CreateConvolutionDescriptor(&p->conv));
    if (im->error[0]) { /* none before: the callers return early after a failure */
        drop(p);
        return false;
    }
    CHECK_CUDNN(im, api.SetTensor4dDescriptor(p->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, k.n,
                                              g.c, g.h, g.w));
    CHECK_CUDNN(im, api.SetTensor4dDescriptor(p->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, k.n,
                                              k.oc, g.oh, g.ow));
    CHECK_CUDNN(im, api.SetTensor4dDescriptor(p->bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1,
                                              k.oc, 1, 1));
    CHECK_CUDNN(im, api.SetFilter4dDescriptor(p->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, k.oc,
                                              g.c, g.kh, g.kw));
    /* cross-correlation, as PyTorch's and the engine's im2col compute */
    CHECK_CUDNN(im, api.SetConvolution2dDescriptor(p->conv, g.ph, g.pw, g.sh, g.sw, 1, 1,
                                                   CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CHECK_CUDNN(im, api.SetConvolutionMathType(p->conv, math));
    if (im->error[0]) {
        drop(p);
        return false;
    }
    p->math = math;
    return true;
}

/* The most workspace any algorithm of p's pass asks for (those cuDNN refuses left out). */
size_t workspace_wanted(cudnn_state *s, const conv_plan *p)
{
    size_t most = 0, bytes;
    for (int a = 0; a < CUDNN_CONVOLUTION_FWD_ALGO_COUNT; a++) {
        cudnnStatus_t st = CUDNN_STATUS_NOT_SUPPORTED;
        bytes = 0;
        if (p->key.pass == PASS_FORWARD)
            st = api.GetConvolutionForwardWorkspaceSize(s->handle, p->x, p->w, p->conv, p->y,
                                                        (cudnnConvolutionFwdAlgo_t)a, &bytes);
        else if (p->key.pass == PASS_BACKWARD_DATA && a < CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT)
            st = api.GetConvolutionBackwardDataWorkspaceSize(
                s->handle, p->w, p->y, p->conv, p->x, (cudnnConvolutionBwdDataAlgo_t)a, &bytes);
        else if (p->key.pass == PASS_BACKWARD_FILTER &&
                 a < CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT)
            st = api.GetConvolutionBackwardFilterWorkspaceSize(
                s->handle, p->x, p->y, p->conv, p->w, (cudnnConvolutionBwdFilterAlgo_t)a,
                &bytes);
        if (st == CUDNN_STATUS_SUCCESS && bytes <= WORKSPACE_MAX && bytes > most)
            most = bytes;
    }
    return most;
}

/* Grows the device's workspace to `bytes` where it can; a failure leaves the old one (the
 * algorithms that need more are then not tried). */
void grow_workspace(dp_device *d, cuda_impl *im, size_t bytes)
{
    cudnn_state *s = im->dnn;
    if (s->workspace_bytes >= bytes)
        return;
    void *p = NULL;
    CHECK_CUDA(im, cudaStreamSynchronize(im->stream)); /* the old one may be in use */
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        cudaGetLastError(); /* out of memory: not a failure, a smaller choice */
        return;
    }
    CHECK_CUDA(im, cudaFree(s->workspace));
    d->mem_held = d->mem_held - s->workspace_bytes + bytes;
    d->mem_peak = d->mem_held > d->mem_peak ? d->mem_held : d->mem_peak;
    s->workspace = p;
    s->workspace_bytes = bytes;
}

/* The performance records of the three passes, in one shape for find_algorithm. */
struct found {
    int algo;
    cudnnStatus_t status;
    float time;
    size_t memory;
    cudnnMathType_t math;
};

/* Times every algorithm of p's pass on the call's buffers (a, b in, out written: x, w -> y;
 * w, dy -> dx; x, dy -> dw) and keeps the fastest that fits the workspace; false (recorded)
 * when none runs. */
bool find_algorithm(dp_device *d, cuda_impl *im, conv_plan *p, const void *a, const void *b,
                    void *out)
{
    cudnn_state *s = im->dnn;
    grow_workspace(d, im, workspace_wanted(s, p));
    /* the inputs ready, whichever streams cuDNN times on (it blocks the host until done) */
    CHECK_CUDA(im, cudaStreamSynchronize(im->stream));
    enum { MOST = 8 }; /* CUDNN_CONVOLUTION_FWD_ALGO_COUNT, the largest of the three */
    found f[MOST];
    int n = 0;
    cudnnStatus_t st;
    if (p->key.pass == PASS_FORWARD) {
        cudnnConvolutionFwdAlgoPerf_t r[MOST];
        st = api.FindConvolutionForwardAlgorithmEx(s->handle, p->x, a, p->w, b, p->conv, p->y,
                                                   out, MOST, &n, r, s->workspace,
                                                   s->workspace_bytes);
        for (int i = 0; i < n; i++)
            f[i] = found{ (int)r[i].algo, r[i].status, r[i].time, r[i].memory, r[i].mathType };
    } else if (p->key.pass == PASS_BACKWARD_DATA) {
        cudnnConvolutionBwdDataAlgoPerf_t r[MOST];
        st = api.FindConvolutionBackwardDataAlgorithmEx(s->handle, p->w, a, p->y, b, p->conv,
                                                        p->x, out, MOST, &n, r, s->workspace,
                                                        s->workspace_bytes);
        for (int i = 0; i < n; i++)
            f[i] = found{ (int)r[i].algo, r[i].status, r[i].time, r[i].memory, r[i].mathType };
    } else {
        cudnnConvolutionBwdFilterAlgoPerf_t r[MOST];
        st = api.FindConvolutionBackwardFilterAlgorithmEx(s->handle, p->x, a, p->y, b, p->conv,
                                                          p->w, out, MOST, &n, r, s->workspace,
                                                          s->workspace_bytes);
        for (int i = 0; i < n; i++)
            f[i] = found{ (int)r[i].algo, r[i].status, r[i].time, r[i].memory, r[i].mathType };
    }
    if (st != CUDNN_STATUS_SUCCESS) {
        cuda_record_error(im, __FILE__, __LINE__, "cudnnFindConvolution*AlgorithmEx",
                          api.GetErrorString(st));
        return false;
    }
    /* The records come fastest first, those that failed last. Each says the math type it was
     * timed with, which the descriptor is set to before the algorithm runs: under DEFAULT
     * (TF32) cuDNN may time an algorithm with TENSOR_OP too; under FMA it keeps to FMA, which
     * is checked all the same, as is that nothing converts fp32 to fp16. */
    for (int i = 0; i < n && i < MOST; i++) {
        bool math_ok = im->tf32 ? f[i].math != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION
                                : f[i].math == CUDNN_FMA_MATH;
        if (f[i].status == CUDNN_STATUS_SUCCESS && f[i].memory <= s->workspace_bytes &&
            math_ok) {
            p->algo = f[i].algo;
            p->ms = f[i].time;
            p->math = f[i].math;
            return true;
        }
    }
    char msg[160];
    const dp_conv_geom &g = p->key.g;
    snprintf(msg, sizeof msg, "no algorithm for the %s pass of %d x %dx%dx%d -> %d, kernel "
                              "%dx%d, stride %dx%d, padding %dx%d",
             pass_names[p->key.pass], p->key.n, g.c, g.h, g.w, p->key.oc, g.kh, g.kw, g.sh,
             g.sw, g.ph, g.pw);
    cuda_record_error(im, __FILE__, __LINE__, "cuDNN", msg);
    return false;
}

/* The plan of key k, made (and its algorithm found on the call's buffers) when missing; NULL
 * after a failure. */
conv_plan *plan_for(dp_device *d, cuda_impl *im, const plan_key &k, const void *a,
                    const void *b, void *out)
{
    cudnn_state *s = im->dnn;
    s->calls++;
    int oldest = 0;
    for (int i = 0; i < s->n_plans; i++) {
        if (memcmp(&s->plans[i].key, &k, sizeof k) == 0) {
            s->plans[i].used = s->calls;
            return &s->plans[i];
        }
        if (s->plans[i].used < s->plans[oldest].used)
            oldest = i;
    }
    conv_plan *p = s->n_plans < MAX_PLANS ? &s->plans[s->n_plans] : &s->plans[oldest];
    if (s->n_plans == MAX_PLANS)
        drop(p);
    if (!describe(im, k, p))
        return NULL;
    if (!find_algorithm(d, im, p, a, b, out)) {
        drop(p);
        return NULL;
    }
    if (p == &s->plans[s->n_plans])
        s->n_plans++;
    p->used = s->calls;
    return p;
}

/* The key of a pass over buffers a, b and c (the algorithm's: the bias is cuDNN's AddTensor
 * or BackwardBias). */
plan_key key_of(conv_pass pass, dp_conv_geom g, int oc, int n, const void *a, const void *b,
                const void *c)
{
    plan_key k;
    memset(&k, 0, sizeof k);
    k.pass = pass;
    k.g = g;
    k.oc = oc;
    k.n = n;
    k.aligned = ((uintptr_t)a | (uintptr_t)b | (uintptr_t)c) % 16 == 0;
    return k;
}

/* A pass's multiply-adds, twice: what the GEMMs of im2col would count. */
double conv_flops(dp_conv_geom g, int oc, int n)
{
    return 2.0 * n * oc * g.oh * g.ow * (double)g.c * g.kh * g.kw;
}

const float ONE = 1.0f, ZERO = 0.0f;

/* Says once per process that cuDNN, though installed, does not start on a GPU (--version
 * cannot know: it makes no device). */
void refused(cuda_impl *im, const char *what, cudnnStatus_t st)
{
    static int said;
    if (!__atomic_exchange_n(&said, 1, __ATOMIC_RELAXED))
        fprintf(stderr, "dpmptop: cuDNN does not start on cuda:%d (%s: %s); convolutions by "
                        "im2col\n", im->ordinal, what, api.GetErrorString(st));
}

} // namespace

bool cudnn_device_init(cuda_impl *im)
{
    if (!loaded())
        return false;
    cudnn_state *s = static_cast<cudnn_state *>(calloc(1, sizeof *s));
    if (!s)
        return false;
    /* A handle belongs to the current GPU, which device_init has set. cuDNN opens its parts
     * (libcudnn_ops, libcudnn_cnn, ...) on first use: a descriptor of each kind is made here so
     * that an incomplete installation means im2col, not a failed run. */
    cudnnConvolutionDescriptor_t conv = NULL;
    cudnnFilterDescriptor_t filter = NULL;
    cudnnStatus_t st = api.Create(&s->handle);
    const char *what = "cudnnCreate";
    if (st == CUDNN_STATUS_SUCCESS) {
        st = api.SetStream(s->handle, im->stream);
        what = "cudnnSetStream";
    }
    if (st == CUDNN_STATUS_SUCCESS) {
        st = api.CreateFilterDescriptor(&filter);
        what = "cudnnCreateFilterDescriptor";
    }
    if (st == CUDNN_STATUS_SUCCESS) {
        st = api.CreateConvolutionDescriptor(&conv);
        what = "cudnnCreateConvolutionDescriptor";
    }
    if (conv)
        api.DestroyConvolutionDescriptor(conv);
    if (filter)
        api.DestroyFilterDescriptor(filter);
    if (st != CUDNN_STATUS_SUCCESS) {
        refused(im, what, st);
        if (s->handle)
            api.Destroy(s->handle);
        free(s);
        return false;
    }
    im->dnn = s;
    return true;
}

void cudnn_device_destroy(cuda_impl *im)
{
    cudnn_state *s = im->dnn;
    if (!s)
        return;
    for (int i = 0; i < s->n_plans; i++)
        drop(&s->plans[i]);
    api.Destroy(s->handle);
    cudaFree(s->workspace);
    free(s);
    im->dnn = NULL;
}

void cudnn_describe(char *text, size_t size)
{
    if (!loaded()) {
        snprintf(text, size, "%s", api_missing);
        return;
    }
    size_t v = api.GetVersion(); /* major * 10000 + minor * 100 + patch since cuDNN 9 */
    snprintf(text, size, "cuDNN %zu.%zu.%zu", v / 10000, v % 10000 / 100, v % 100);
}

void cudnn_print_choices(cuda_impl *im, FILE *out)
{
    cudnn_state *s = im->dnn;
    for (int i = 0; s && i < s->n_plans; i++) {
        const conv_plan *p = &s->plans[i];
        const dp_conv_geom &g = p->key.g;
        fprintf(out, "cudnn pass=%s n=%d c=%d h=%d w=%d oc=%d k=%dx%d s=%dx%d p=%dx%d "
                     "aligned=%d algo=%d math=%d us=%.1f\n",
                pass_names[p->key.pass], p->key.n, g.c, g.h, g.w, p->key.oc, g.kh, g.kw, g.sh,
                g.sw, g.ph, g.pw, p->key.aligned, p->algo, (int)p->math, 1e3 * p->ms);
    }
}

void cuda_conv_forward(dp_device *d, dp_conv_geom g, int oc, int n, float *y, const float *x,
                       const float *w, const float *b)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    if (n == 0 || im->error[0]) /* after a failure nothing runs: the trainer stops */
        return;
    cuda_begin(im);
    plan_key k = key_of(PASS_FORWARD, g, oc, n, y, x, w);
    conv_plan *p = plan_for(d, im, k, x, w, y);
    if (!p)
        return;
    cudnn_state *s = im->dnn;
    CHECK_CUDNN(im, api.SetConvolutionMathType(p->conv, p->math));
    CHECK_CUDNN(im, api.ConvolutionForward(s->handle, &ONE, p->x, x, p->w, w, p->conv,
                                           (cudnnConvolutionFwdAlgo_t)p->algo, s->workspace,
                                           s->workspace_bytes, &ZERO, p->y, y));
    if (b)
        CHECK_CUDNN(im, api.AddTensor(s->handle, &ONE, p->bias, b, &ONE, p->y, y));
    im->flops_done += conv_flops(g, oc, n);
}

void cuda_conv_backward_data(dp_device *d, dp_conv_geom g, int oc, int n, float *dx,
                             const float *dy, const float *w)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    if (n == 0 || im->error[0])
        return;
    cuda_begin(im);
    plan_key k = key_of(PASS_BACKWARD_DATA, g, oc, n, dx, dy, w);
    conv_plan *p = plan_for(d, im, k, w, dy, dx);
    if (!p)
        return;
    cudnn_state *s = im->dnn;
    CHECK_CUDNN(im, api.SetConvolutionMathType(p->conv, p->math));
    CHECK_CUDNN(im, api.ConvolutionBackwardData(s->handle, &ONE, p->w, w, p->y, dy, p->conv,
                                                (cudnnConvolutionBwdDataAlgo_t)p->algo,
                                                s->workspace, s->workspace_bytes, &ZERO, p->x,
                                                dx));
    im->flops_done += conv_flops(g, oc, n);
}

void cuda_conv_backward_weights(dp_device *d, dp_conv_geom g, int oc, int n, float *dw,
                                float *db, const float *x, const float *dy)
{
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    if (im->error[0])
        return;
    cuda_begin(im);
    if (n == 0) { /* no samples: zero gradients, as the sums of nothing */
        size_t nw = (size_t)oc * g.c * g.kh * g.kw;
        CHECK_CUDA(im, cudaMemsetAsync(dw, 0, nw * sizeof *dw, im->stream));
        if (db)
            CHECK_CUDA(im, cudaMemsetAsync(db, 0, (size_t)oc * sizeof *db, im->stream));
        return;
    }
    plan_key k = key_of(PASS_BACKWARD_FILTER, g, oc, n, dw, x, dy);
    conv_plan *p = plan_for(d, im, k, x, dy, dw);
    if (!p)
        return;
    cudnn_state *s = im->dnn;
    CHECK_CUDNN(im, api.SetConvolutionMathType(p->conv, p->math));
    CHECK_CUDNN(im, api.ConvolutionBackwardFilter(s->handle, &ONE, p->x, x, p->y, dy, p->conv,
                                                  (cudnnConvolutionBwdFilterAlgo_t)p->algo,
                                                  s->workspace, s->workspace_bytes, &ZERO,
                                                  p->w, dw));
    if (db)
        CHECK_CUDNN(im, api.ConvolutionBackwardBias(s->handle, &ONE, p->y, dy, &ZERO, p->bias,
                                                    db));
    im->flops_done += conv_flops(g, oc, n);
}
