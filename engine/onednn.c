/* onednn.c -- the CPU backend's convolutions and pooling through oneDNN's primitives.
 *
 * A primitive is made for one shape (the geometry, the rows, a bias or not) and one thread
 * count, then kept in the device's cache with its memory objects, whose data pointers are set
 * at each call. The engine keeps its tensors in NCHW and OIHW; a convolution runs in those
 * layouts or in the blocked ones oneDNN prefers, with reorders on the way in and out
 * (make_chosen). The primitives' scratchpad is the device's (user mode): oneDNN's own
 * is kept per thread, and a device's primitives outlive the worker thread that made them. It
 * is host memory outside the device's accounting, as cuBLAS's workspace is on a GPU. Debian's libdnnl runs on OpenMP: the calling thread's
 * OpenMP thread count is set before each primitive is made or run; with 1 the primitive runs on
 * the calling thread alone. Max pooling is not here: oneDNN's drops a NaN that PyTorch's keeps. */
#include "engine/onednn.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum op { CONV_FORWARD, CONV_BACKWARD_DATA, CONV_BACKWARD_WEIGHTS, POOL_FORWARD, POOL_BACKWARD };

#define MAX_ARGS 5
#define CACHE_SIZE 256 /* primitives kept per device; the least recently used goes first */
#define BLOCKED_MIN 8  /* channels from which a convolution runs in blocked layouts */

/* What a primitive is made for; zeroed before it is filled in, so that memcmp compares it. */
typedef struct prim_key {
    int op;
    dp_conv_geom g;
    int oc, n, threads;
    int bias; /* convolutions: with a bias (its gradient) */
} prim_key;

/* One oneDNN primitive and its scratchpad's memory object (pointed at the device's). */
typedef struct unit {
    dnnl_primitive_t p;
    dnnl_memory_t scratch;
} unit;

/* A cached operation: its primitive, and where the primitive wants a tensor in a layout of its
 * own, the reorder into it (an input) or out of it (an output) through the device's layout
 * buffer. */
typedef struct prim {
    prim_key key;
    unit op;
    int n_args, n_out;              /* arguments [0, n_out) are outputs */
    int arg[MAX_ARGS];              /* DNNL_ARG_SRC, ... */
    dnnl_memory_t mem[MAX_ARGS];    /* the engine's tensors, pointed at each call's data */
    dnnl_memory_t inner[MAX_ARGS];  /* the primitive's layout of tensor i, or NULL: the same */
    unit reorder[MAX_ARGS];
    size_t inner_at[MAX_ARGS];      /* where inner[i] lives in the layout buffer */
    size_t layout_bytes;            /* the layout buffer it needs */
    size_t scratch_bytes;           /* the largest scratchpad of its primitives */
    unsigned long long used;        /* the call number when last used */
} prim;

struct dp_onednn {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_primitive_attr_t attr; /* every primitive's: the scratchpad is ours */
    prim cache[CACHE_SIZE];
    int n;
    unsigned long long calls;
    void *scratch; /* the scratchpad every primitive uses, scratch_bytes */
    size_t scratch_bytes;
    void *layout;  /* the tensors in the primitives' own layouts, layout_bytes */
    size_t layout_bytes;
    int references; /* primitives made that are oneDNN's reference (plain C) implementation */
    char error[256];
};

/* Sets the calling thread's OpenMP thread count, which oneDNN's primitives use. */
static void use_threads(int threads)
{
    static __thread int now;
    threads = threads > 0 ? threads : 1;
    if (now != threads) {
        omp_set_num_threads(threads);
        now = threads;
    }
}

/* Records the first failure; returns -1. */
static int fail(dp_onednn *o, const char *what, dnnl_status_t s)
{
    if (!o->error[0])
        snprintf(o->error, sizeof o->error, "oneDNN: %s: %s", what, dnnl_status2str(s));
    return -1;
}

dp_onednn *dp_onednn_create(dp_err *err)
{
    dp_onednn *o = calloc(1, sizeof *o);
    if (!o) {
        dp_fail(err, "out of host memory");
        return NULL;
    }
    dnnl_status_t s = dnnl_engine_create(&o->engine, dnnl_cpu, 0);
    if (s == dnnl_success)
        s = dnnl_stream_create(&o->stream, o->engine, dnnl_stream_default_flags);
    if (s == dnnl_success)
        s = dnnl_primitive_attr_create(&o->attr);
    if (s == dnnl_success)
        s = dnnl_primitive_attr_set_scratchpad_mode(o->attr, dnnl_scratchpad_mode_user);
    if (s != dnnl_success) {
        dp_fail(err, "oneDNN cannot make a CPU engine: %s", dnnl_status2str(s));
        dp_onednn_destroy(o);
        return NULL;
    }
    return o;
}

static void drop_unit(unit *u)
{
    if (u->scratch)
        dnnl_memory_destroy(u->scratch);
    if (u->p)
        dnnl_primitive_destroy(u->p);
}

static void drop(prim *e)
{
    for (int i = 0; i < e->n_args; i++) {
        if (e->mem[i])
            dnnl_memory_destroy(e->mem[i]);
        if (e->inner[i])
            dnnl_memory_destroy(e->inner[i]);
        drop_unit(&e->reorder[i]);
    }
    drop_unit(&e->op);
    memset(e, 0, sizeof *e);
}

void dp_onednn_destroy(dp_onednn *o)
{
    if (!o)
        return;
    for (int i = 0; i < o->n; i++)
        drop(&o->cache[i]);
    if (o->stream)
        dnnl_stream_destroy(o->stream);
    if (o->attr)
        dnnl_primitive_attr_destroy(o->attr);
    if (o->engine)
        dnnl_engine_destroy(o->engine);
    free(o->scratch);
    free(o->layout);
    free(o);
}

const char *dp_onednn_error(const dp_onednn *o)
{
    return o && o->error[0] ? o->error : NULL;
}

/* The instruction set oneDNN's kernels use on this processor. */
static const char *isa_name(dnnl_cpu_isa_t isa)
{
    switch (isa) {
    case dnnl_cpu_isa_avx512_core_amx: return "AVX-512 with AMX";
    case dnnl_cpu_isa_avx512_core_bf16:
    case dnnl_cpu_isa_avx512_core_vnni:
    case dnnl_cpu_isa_avx512_core: return "AVX-512";
    case dnnl_cpu_isa_avx2_vnni:
    case dnnl_cpu_isa_avx2: return "AVX2";
    case dnnl_cpu_isa_avx: return "AVX";
    case dnnl_cpu_isa_sse41: return "SSE4.1";
    default: return "other";
    }
}

const char *dp_onednn_version(void)
{
    static char text[96];
    const dnnl_version_t *v = dnnl_version();
    snprintf(text, sizeof text, "oneDNN %d.%d.%d (%s, %s)", v->major, v->minor, v->patch,
             v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "threads",
             isa_name(dnnl_get_effective_cpu_isa()));
    return text;
}

/* ---- making a primitive ---- */

static dnnl_memory_desc_t md_of(int ndims, const int64_t *dims, dnnl_format_tag_t tag)
{
    dnnl_memory_desc_t md;
    dnnl_dims_t d = { 0 };
    memcpy(d, dims, (size_t)ndims * sizeof *dims);
    dnnl_memory_desc_init_by_tag(&md, ndims, d, dnnl_f32, tag);
    return md;
}

/* The tensors of a convolution or pooling of key k: its input, output, weights and bias, in
 * the engine's layouts (NCHW, OIHW) or, `any`, in the ones the primitive prefers, except an
 * input or output of fewer than BLOCKED_MIN channels, which stays NCHW (make_chosen). */
typedef struct descs {
    dnnl_memory_desc_t src, dst, weights, bias;
    dnnl_memory_desc_t ip_dst; /* the inner product's output [n, oc] (full_window) */
    dnnl_dims_t strides, kernel, pad_l, pad_r;
} descs;

/* Whether key k is a convolution whose window covers its whole unpadded input (one output
 * position: a DCGAN discriminator's last layer, its generator's first): it runs as oneDNN's
 * inner product, the same sums over c, h and w, where its convolutions have only the reference
 * implementation for a narrow output (64 -> 1 channels: about 25 ms a call, against a GEMM). */
static bool full_window(const prim_key *k)
{
    const dp_conv_geom *g = &k->g;
    return k->op != POOL_FORWARD && k->op != POOL_BACKWARD && g->kh == g->h && g->kw == g->w &&
           g->ph == 0 && g->pw == 0 && g->oh == 1 && g->ow == 1;
}

static descs descs_of(const prim_key *k, bool any)
{
    const dp_conv_geom *g = &k->g;
    bool pool = k->op == POOL_FORWARD || k->op == POOL_BACKWARD;
    int out_c = pool ? g->c : k->oc;
    dnnl_format_tag_t t4 = any ? dnnl_format_tag_any : dnnl_abcd;
    descs d = {
        .src = md_of(4, (int64_t[]){ k->n, g->c, g->h, g->w },
                     g->c >= BLOCKED_MIN ? t4 : dnnl_abcd),
        .dst = md_of(4, (int64_t[]){ k->n, out_c, g->oh, g->ow },
                     out_c >= BLOCKED_MIN ? t4 : dnnl_abcd),
        .weights = md_of(4, (int64_t[]){ k->oc, g->c, g->kh, g->kw }, t4),
        .bias = md_of(1, (int64_t[]){ k->oc }, dnnl_a),
        .strides = { g->sh, g->sw },
        .ip_dst = md_of(2, (int64_t[]){ k->n, k->oc }, dnnl_ab),
        .kernel = { g->kh, g->kw },
        /* the padding is the same on both sides; where the windows do not reach the end,
         * oneDNN's size check rounds down as the engine's does */
        .pad_l = { g->ph, g->pw },
        .pad_r = { g->ph, g->pw },
    };
    return d;
}

static dnnl_status_t conv_forward_pd(dnnl_primitive_desc_t *pd, dp_onednn *o, const prim_key *k,
                                     bool any)
{
    descs d = descs_of(k, any);
    dnnl_convolution_desc_t cd;
    dnnl_status_t s = dnnl_convolution_forward_desc_init(
        &cd, dnnl_forward_training, dnnl_convolution_direct, &d.src, &d.weights,
        k->bias ? &d.bias : NULL, &d.dst, d.strides, d.pad_l, d.pad_r);
    return s != dnnl_success ? s : dnnl_primitive_desc_create(pd, &cd, o->attr, o->engine, NULL);
}

/* A full_window convolution's pass as an inner product, in the engine's layouts. */
static dnnl_status_t inner_product_pd(dnnl_primitive_desc_t *pd, dp_onednn *o, const prim_key *k)
{
    descs d = descs_of(k, false);
    dnnl_inner_product_desc_t fwd, ipd;
    dnnl_primitive_desc_t hint = NULL;
    const dnnl_memory_desc_t *bias = k->bias ? &d.bias : NULL;
    dnnl_status_t s = dnnl_inner_product_forward_desc_init(&fwd, dnnl_forward_training, &d.src,
                                                           &d.weights, bias, &d.ip_dst);
    if (s == dnnl_success) /* a backward pass is made with its forward's as the hint */
        s = dnnl_primitive_desc_create(k->op == CONV_FORWARD ? pd : &hint, &fwd, o->attr,
                                       o->engine, NULL);
    if (s != dnnl_success || k->op == CONV_FORWARD)
        return s;
    s = k->op == CONV_BACKWARD_DATA
            ? dnnl_inner_product_backward_data_desc_init(&ipd, &d.src, &d.weights, &d.ip_dst)
            : dnnl_inner_product_backward_weights_desc_init(&ipd, &d.src, &d.weights, bias,
                                                            &d.ip_dst);
    if (s == dnnl_success)
        s = dnnl_primitive_desc_create(pd, &ipd, o->attr, o->engine, hint);
    if (hint)
        dnnl_primitive_desc_destroy(hint);
    return s;
}

static dnnl_status_t pool_forward_pd(dnnl_primitive_desc_t *pd, dp_onednn *o, const prim_key *k)
{
    descs d = descs_of(k, false);
    dnnl_pooling_desc_t pdesc;
    dnnl_status_t s = dnnl_pooling_forward_desc_init(
        &pdesc, dnnl_forward_training, dnnl_pooling_avg_include_padding, &d.src, &d.dst,
        d.strides, d.kernel, d.pad_l, d.pad_r);
    return s != dnnl_success ? s : dnnl_primitive_desc_create(pd, &pdesc, o->attr, o->engine, NULL);
}

/* The primitive descriptor of key k, its tensors in the engine's layouts or (any) the ones it
 * prefers; a backward one is made with its forward's as the hint. */
static dnnl_status_t make_pd(dnnl_primitive_desc_t *pd, dp_onednn *o, const prim_key *k, bool any)
{
    descs d = descs_of(k, any);
    dnnl_primitive_desc_t hint = NULL;
    dnnl_status_t s;
    if (full_window(k))
        return inner_product_pd(pd, o, k);
    switch (k->op) {
    case CONV_FORWARD:
        return conv_forward_pd(pd, o, k, any);
    case POOL_FORWARD:
        return pool_forward_pd(pd, o, k);
    case CONV_BACKWARD_DATA: {
        dnnl_convolution_desc_t cd;
        s = conv_forward_pd(&hint, o, k, any);
        if (s == dnnl_success)
            s = dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &d.src,
                                                         &d.weights, &d.dst, d.strides, d.pad_l,
                                                         d.pad_r);
        if (s == dnnl_success)
            s = dnnl_primitive_desc_create(pd, &cd, o->attr, o->engine, hint);
        break;
    }
    case CONV_BACKWARD_WEIGHTS: {
        dnnl_convolution_desc_t cd;
        s = conv_forward_pd(&hint, o, k, any);
        if (s == dnnl_success)
            s = dnnl_convolution_backward_weights_desc_init(
                &cd, dnnl_convolution_direct, &d.src, &d.weights, k->bias ? &d.bias : NULL,
                &d.dst, d.strides, d.pad_l, d.pad_r);
        if (s == dnnl_success)
            s = dnnl_primitive_desc_create(pd, &cd, o->attr, o->engine, hint);
        break;
    }
    default: { /* POOL_BACKWARD */
        dnnl_pooling_desc_t pdesc;
        s = pool_forward_pd(&hint, o, k);
        if (s == dnnl_success)
            s = dnnl_pooling_backward_desc_init(&pdesc, dnnl_pooling_avg_include_padding,
                                                &d.src, &d.dst, d.strides, d.kernel, d.pad_l,
                                                d.pad_r);
        if (s == dnnl_success)
            s = dnnl_primitive_desc_create(pd, &pdesc, o->attr, o->engine, hint);
        break;
    }
    }
    if (hint)
        dnnl_primitive_desc_destroy(hint);
    return s;
}

/* An argument: its DNNL_ARG_, where the primitive's descriptor says its layout, and the
 * engine's layout of it. */
typedef struct arg_info {
    int arg;
    dnnl_query_t query;
    int index; /* a bias and its gradient are the weights' second tensor */
    dnnl_memory_desc_t plain;
} arg_info;

/* The arguments each operation takes, outputs first, in the order its callers pass the data;
 * *n_out: how many are outputs. */
static int args_of(const prim_key *k, arg_info a[MAX_ARGS], int *n_out)
{
    descs d = descs_of(k, false);
    if (full_window(k))
        d.dst = d.ip_dst; /* [n, oc, 1, 1] is [n, oc] in memory */
    int n = 0;
#define ARG(arg_, q_, i_, md_) (a[n++] = (arg_info){ arg_, q_, i_, md_ })
    *n_out = 1;
    switch (k->op) {
    case CONV_FORWARD:
        ARG(DNNL_ARG_DST, dnnl_query_dst_md, 0, d.dst);
        ARG(DNNL_ARG_SRC, dnnl_query_src_md, 0, d.src);
        ARG(DNNL_ARG_WEIGHTS, dnnl_query_weights_md, 0, d.weights);
        if (k->bias)
            ARG(DNNL_ARG_BIAS, dnnl_query_weights_md, 1, d.bias);
        break;
    case CONV_BACKWARD_DATA:
        ARG(DNNL_ARG_DIFF_SRC, dnnl_query_diff_src_md, 0, d.src);
        ARG(DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0, d.dst);
        ARG(DNNL_ARG_WEIGHTS, dnnl_query_weights_md, 0, d.weights);
        break;
    case CONV_BACKWARD_WEIGHTS:
        ARG(DNNL_ARG_DIFF_WEIGHTS, dnnl_query_diff_weights_md, 0, d.weights);
        if (k->bias) {
            ARG(DNNL_ARG_DIFF_BIAS, dnnl_query_diff_weights_md, 1, d.bias);
            *n_out = 2;
        }
        ARG(DNNL_ARG_SRC, dnnl_query_src_md, 0, d.src);
        ARG(DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0, d.dst);
        break;
    case POOL_FORWARD:
        ARG(DNNL_ARG_DST, dnnl_query_dst_md, 0, d.dst);
        ARG(DNNL_ARG_SRC, dnnl_query_src_md, 0, d.src);
        break;
    default: /* POOL_BACKWARD */
        ARG(DNNL_ARG_DIFF_SRC, dnnl_query_diff_src_md, 0, d.src);
        ARG(DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md, 0, d.dst);
        break;
    }
#undef ARG
    return n;
}

/* Makes u's primitive from pd, with a memory object for its scratchpad; *scratch_bytes grows
 * to the scratchpad's size. */
static dnnl_status_t make_unit(dp_onednn *o, const_dnnl_primitive_desc_t pd, unit *u,
                               size_t *scratch_bytes)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t bytes = md ? dnnl_memory_desc_get_size(md) : 0;
    dnnl_status_t s = dnnl_success;
    if (bytes)
        s = dnnl_memory_create(&u->scratch, md, o->engine, DNNL_MEMORY_NONE);
    if (s == dnnl_success)
        s = dnnl_primitive_create(&u->p, pd);
    *scratch_bytes = bytes > *scratch_bytes ? bytes : *scratch_bytes;
    return s;
}

/* Makes the reorder of argument i between the engine's layout and the primitive's, md. */
static dnnl_status_t make_reorder(dp_onednn *o, prim *e, int i, const dnnl_memory_desc_t *plain,
                                  const dnnl_memory_desc_t *md)
{
    bool out = i < e->n_out;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_status_t s = dnnl_memory_create(&e->inner[i], md, o->engine, DNNL_MEMORY_NONE);
    if (s == dnnl_success)
        s = dnnl_reorder_primitive_desc_create(&rpd, out ? md : plain, o->engine,
                                               out ? plain : md, o->engine, o->attr);
    if (s == dnnl_success)
        s = make_unit(o, rpd, &e->reorder[i], &e->scratch_bytes);
    if (rpd)
        dnnl_primitive_desc_destroy(rpd);
    e->inner_at[i] = e->layout_bytes;
    e->layout_bytes += (dnnl_memory_desc_get_size(md) + 63) / 64 * 64;
    return s;
}

/* Whether pd is oneDNN's reference implementation ("ref:any"): plain loops, there for the
 * shapes and layouts no optimised kernel takes (64 -> 1 channels over 7x7 took about 25 ms a
 * call, in either layout). */
static bool is_reference(const_dnnl_primitive_desc_t pd)
{
    const char *impl = NULL;
    return dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success &&
           impl && strncmp(impl, "ref", 3) == 0;
}

/* Makes the primitive of key k into e, in the engine's layouts or (any) the ones it prefers
 * with reorders around it; -1 (recorded) on failure; 1 (not recorded) when `any` gives only
 * the reference implementation. */
static int make(dp_onednn *o, const prim_key *k, prim *e, bool any)
{
    dnnl_primitive_desc_t pd = NULL;
    arg_info a[MAX_ARGS];
    memset(e, 0, sizeof *e);
    e->key = *k;
    dnnl_status_t s = make_pd(&pd, o, k, any);
    if (s != dnnl_success)
        return fail(o, "no primitive for this convolution or pooling", s);
    if (is_reference(pd)) {
        if (any) {
            dnnl_primitive_desc_destroy(pd);
            return 1;
        }
        o->references++;
    }
    e->n_args = args_of(k, a, &e->n_out);
    for (int i = 0; i < e->n_args && s == dnnl_success; i++) {
        e->arg[i] = a[i].arg;
        const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, a[i].query, a[i].index);
        s = md ? dnnl_memory_create(&e->mem[i], &a[i].plain, o->engine, DNNL_MEMORY_NONE)
               : dnnl_invalid_arguments;
        if (s == dnnl_success && !dnnl_memory_desc_equal(md, &a[i].plain))
            s = make_reorder(o, e, i, &a[i].plain, md);
    }
    if (s == dnnl_success)
        s = make_unit(o, pd, &e->op, &e->scratch_bytes);
    dnnl_primitive_desc_destroy(pd);
    if (s != dnnl_success) {
        drop(e);
        return fail(o, "making a primitive", s);
    }
    return 0;
}

/* Grows *buf to at least `bytes` (64-byte aligned); false (recorded) when out of memory. */
static bool room(dp_onednn *o, void **buf, size_t *have, size_t bytes, const char *what)
{
    if (bytes <= *have)
        return true;
    free(*buf);
    *have = 0;
    *buf = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!*buf) {
        snprintf(o->error, sizeof o->error,
                 "oneDNN: out of host memory for a %zu-byte %s; use a smaller [data] batch "
                 "(or more micro-batches), or free memory (ulimit -v and a cgroup's limit count)",
                 bytes, what);
        return false;
    }
    *have = bytes;
    return true;
}

static dnnl_status_t exec_unit(dp_onednn *o, const unit *u, dnnl_exec_arg_t *args, int n)
{
    dnnl_status_t s = dnnl_success;
    if (u->scratch) {
        s = dnnl_memory_set_data_handle(u->scratch, o->scratch);
        args[n++] = (dnnl_exec_arg_t){ DNNL_ARG_SCRATCHPAD, u->scratch };
    }
    return s == dnnl_success ? dnnl_primitive_execute(u->p, o->stream, n, args) : s;
}

/* Runs e on data[] (in args_of's order): the inputs reordered into the primitive's layouts,
 * the primitive, the outputs reordered back; then waits. */
static void execute(dp_onednn *o, prim *e, void *const data[])
{
    if (!room(o, &o->scratch, &o->scratch_bytes, e->scratch_bytes, "scratchpad") ||
        !room(o, &o->layout, &o->layout_bytes, e->layout_bytes, "layout buffer"))
        return;
    dnnl_exec_arg_t args[MAX_ARGS + 1];
    dnnl_status_t s = dnnl_success;
    for (int i = 0; i < e->n_args && s == dnnl_success; i++) {
        s = dnnl_memory_set_data_handle(e->mem[i], data[i]);
        if (s == dnnl_success && e->inner[i])
            s = dnnl_memory_set_data_handle(e->inner[i], (char *)o->layout + e->inner_at[i]);
    }
    for (int i = e->n_out; i < e->n_args && s == dnnl_success; i++)
        if (e->inner[i]) {
            dnnl_exec_arg_t r[3] = { { DNNL_ARG_FROM, e->mem[i] }, { DNNL_ARG_TO, e->inner[i] } };
            s = exec_unit(o, &e->reorder[i], r, 2);
        }
    for (int i = 0; i < e->n_args; i++)
        args[i] = (dnnl_exec_arg_t){ e->arg[i], e->inner[i] ? e->inner[i] : e->mem[i] };
    if (s == dnnl_success)
        s = exec_unit(o, &e->op, args, e->n_args);
    for (int i = 0; i < e->n_out && s == dnnl_success; i++)
        if (e->inner[i]) {
            dnnl_exec_arg_t r[3] = { { DNNL_ARG_FROM, e->inner[i] }, { DNNL_ARG_TO, e->mem[i] } };
            s = exec_unit(o, &e->reorder[i], r, 2);
        }
    if (s == dnnl_success)
        s = dnnl_stream_wait(o->stream);
    if (s != dnnl_success)
        fail(o, "running a primitive", s);
}

/* Makes key k's primitive into e. A convolution with at least BLOCKED_MIN channels in or out
 * runs in oneDNN's preferred (blocked) layouts with reorders around it: there its direct
 * kernels beat the engine's layouts by more than the reorders cost (1.5x on fashion-cnn's
 * 32 -> 64 convolution). The narrow side of an image's first layer (1 or 3 channels) stays
 * NCHW, which the direct kernels read as it is, as PyTorch's do: blocking it would pad 3
 * channels to 8. Where those layouts leave only the reference implementation, the engine's
 * are tried instead (a full-window convolution, which had only it, is an inner product here).
 * A fixed rule, not a timing, so that a run's results do not depend on the machine's load
 * (only on its instruction set, as oneDNN's kernels do). */
static int make_chosen(dp_onednn *o, const prim_key *k, prim *e)
{
    bool conv = k->op == CONV_FORWARD || k->op == CONV_BACKWARD_DATA ||
                k->op == CONV_BACKWARD_WEIGHTS;
    if (!conv || full_window(k) || (k->g.c < BLOCKED_MIN && k->oc < BLOCKED_MIN))
        return make(o, k, e, false);
    if (make(o, k, e, true) == 0)
        return 0;
    o->error[0] = '\0'; /* (there was none before) the engine's layouts serve */
    return make(o, k, e, false);
}

int dp_onednn_references(const dp_onednn *o)
{
    return o->references;
}

/* The cached primitive of key k, made when missing; the least recently used one makes room.
 * NULL after a failure. */
static prim *lookup(dp_onednn *o, const prim_key *k)
{
    o->calls++;
    int oldest = 0;
    for (int i = 0; i < o->n; i++) {
        if (memcmp(&o->cache[i].key, k, sizeof *k) == 0) {
            o->cache[i].used = o->calls;
            return &o->cache[i];
        }
        if (o->cache[i].used < o->cache[oldest].used)
            oldest = i;
    }
    prim *e = o->n < CACHE_SIZE ? &o->cache[o->n] : &o->cache[oldest];
    if (o->n == CACHE_SIZE)
        drop(e);
    if (make_chosen(o, k, e) < 0)
        return NULL;
    if (e == &o->cache[o->n])
        o->n++;
    e->used = o->calls;
    return e;
}

/* Runs key k's primitive on data[] (in args_of's order) and waits for it. */
static void run(dp_onednn *o, const prim_key *k, void *const data[])
{
    if (o->error[0])
        return; /* after a failure nothing runs: the trainer stops on the device's error */
    use_threads(k->threads);
    prim *e = lookup(o, k);
    if (e)
        execute(o, e, data);
}

static prim_key key_of(int op, int threads, dp_conv_geom g, int oc, int n)
{
    prim_key k;
    memset(&k, 0, sizeof k);
    k.op = op;
    k.threads = threads;
    k.g = g;
    k.oc = oc;
    k.n = n;
    return k;
}

/* ---- the operations ---- */

void dp_onednn_conv_forward(dp_onednn *o, int threads, dp_conv_geom g, int oc, int n, float *y,
                            const float *x, const float *w, const float *b)
{
    prim_key k = key_of(CONV_FORWARD, threads, g, oc, n);
    k.bias = b != NULL;
    run(o, &k, (void *const[]){ y, (void *)x, (void *)w, (void *)b });
}

void dp_onednn_conv_backward_data(dp_onednn *o, int threads, dp_conv_geom g, int oc, int n,
                                  float *dx, const float *dy, const float *w)
{
    prim_key k = key_of(CONV_BACKWARD_DATA, threads, g, oc, n);
    run(o, &k, (void *const[]){ dx, (void *)dy, (void *)w });
}

void dp_onednn_conv_backward_weights(dp_onednn *o, int threads, dp_conv_geom g, int oc, int n,
                                     float *dw, float *db, const float *x, const float *dy)
{
    prim_key k = key_of(CONV_BACKWARD_WEIGHTS, threads, g, oc, n);
    k.bias = db != NULL;
    if (db)
        run(o, &k, (void *const[]){ dw, db, (void *)x, (void *)dy });
    else
        run(o, &k, (void *const[]){ dw, (void *)x, (void *)dy });
}

void dp_onednn_sgemm(dp_onednn *o, int threads, int trans_a, int trans_b, int m, int n, int k,
                     float alpha, const float *a, int lda, const float *b, int ldb, float beta,
                     float *c, int ldc)
{
    use_threads(threads);
    dnnl_status_t s = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda,
                                 b, ldb, beta, c, ldc);
    if (s != dnnl_success && o)
        fail(o, "dnnl_sgemm", s);
}

/* Pooling sees the planes as one image of `planes` channels. */
void dp_onednn_avgpool_forward(dp_onednn *o, int threads, float *y, const float *x, int planes,
                               dp_conv_geom g)
{
    g.c = planes;
    prim_key k = key_of(POOL_FORWARD, threads, g, 0, 1);
    run(o, &k, (void *const[]){ y, (void *)x });
}

void dp_onednn_avgpool_backward(dp_onednn *o, int threads, float *dx, const float *dy,
                                int planes, dp_conv_geom g)
{
    g.c = planes;
    prim_key k = key_of(POOL_BACKWARD, threads, g, 0, 1);
    run(o, &k, (void *const[]){ dx, (void *)dy });
}
