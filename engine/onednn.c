/* onednn.c -- the CPU backend's convolutions and pooling through oneDNN's primitives.
 *
 * A primitive is made for one shape (the geometry, the rows, a bias or not) and one thread
 * count, then kept in the device's cache with its memory objects, whose data pointers are set
 * at each call. Tensors stay in the engine's NCHW and OIHW: oneDNN's blocked layouts would need
 * a reorder of every activation and gradient on the way in and out of each layer (measured in
 * the note of issue 21). The primitives' scratchpad is the device's (user mode): oneDNN's own
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

/* What a primitive is made for; zeroed before it is filled in, so that memcmp compares it. */
typedef struct prim_key {
    int op;
    dp_conv_geom g;
    int oc, n, threads;
    int bias; /* convolutions: with a bias (its gradient) */
} prim_key;

typedef struct prim {
    prim_key key;
    dnnl_primitive_t p;
    int n_args;
    int arg[MAX_ARGS];            /* DNNL_ARG_SRC, ... */
    dnnl_memory_t mem[MAX_ARGS];  /* their memory objects, pointed at each call's data */
    dnnl_memory_t scratch;        /* the scratchpad's, pointed at the device's */
    size_t scratch_bytes;
    unsigned long long used;      /* the call number when last used */
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

static void drop(prim *e)
{
    for (int i = 0; i < e->n_args; i++)
        dnnl_memory_destroy(e->mem[i]);
    dnnl_memory_destroy(e->scratch);
    dnnl_primitive_destroy(e->p);
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
    free(o);
}

const char *dp_onednn_error(const dp_onednn *o)
{
    return o && o->error[0] ? o->error : NULL;
}

const char *dp_onednn_version(void)
{
    static char text[64];
    const dnnl_version_t *v = dnnl_version();
    snprintf(text, sizeof text, "oneDNN %d.%d.%d (%s)", v->major, v->minor, v->patch,
             v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "threads");
    return text;
}

/* ---- making a primitive ---- */

static dnnl_memory_desc_t plain(int ndims, const int64_t *dims)
{
    dnnl_memory_desc_t md;
    dnnl_dims_t d = { 0 };
    memcpy(d, dims, (size_t)ndims * sizeof *dims);
    dnnl_memory_desc_init_by_tag(&md, ndims, d, dnnl_f32,
                                 ndims == 4 ? dnnl_abcd : ndims == 1 ? dnnl_a : dnnl_ab);
    return md;
}

/* The tensors of a convolution or pooling of key k: its input, output, weights and bias. */
typedef struct descs {
    dnnl_memory_desc_t src, dst, weights, bias;
    dnnl_dims_t strides, kernel, pad_l, pad_r;
} descs;

static descs descs_of(const prim_key *k)
{
    const dp_conv_geom *g = &k->g;
    bool pool = k->op == POOL_FORWARD || k->op == POOL_BACKWARD;
    int out_c = pool ? g->c : k->oc;
    descs d = {
        .src = plain(4, (int64_t[]){ k->n, g->c, g->h, g->w }),
        .dst = plain(4, (int64_t[]){ k->n, out_c, g->oh, g->ow }),
        .weights = plain(4, (int64_t[]){ k->oc, g->c, g->kh, g->kw }),
        .bias = plain(1, (int64_t[]){ k->oc }),
        .strides = { g->sh, g->sw },
        .kernel = { g->kh, g->kw },
        /* the padding is the same on both sides; where the windows do not reach the end,
         * oneDNN's size check rounds down as the engine's does */
        .pad_l = { g->ph, g->pw },
        .pad_r = { g->ph, g->pw },
    };
    return d;
}

static dnnl_status_t conv_forward_pd(dnnl_primitive_desc_t *pd, dp_onednn *o, const prim_key *k,
                                     dnnl_prop_kind_t prop)
{
    descs d = descs_of(k);
    dnnl_convolution_desc_t cd;
    dnnl_status_t s = dnnl_convolution_forward_desc_init(
        &cd, prop, dnnl_convolution_direct, &d.src, &d.weights, k->bias ? &d.bias : NULL,
        &d.dst, d.strides, d.pad_l, d.pad_r);
    return s != dnnl_success ? s : dnnl_primitive_desc_create(pd, &cd, o->attr, o->engine, NULL);
}

static dnnl_status_t pool_forward_pd(dnnl_primitive_desc_t *pd, dp_onednn *o, const prim_key *k,
                                     dnnl_prop_kind_t prop)
{
    descs d = descs_of(k);
    dnnl_pooling_desc_t pdesc;
    dnnl_status_t s = dnnl_pooling_forward_desc_init(
        &pdesc, prop, dnnl_pooling_avg_include_padding, &d.src, &d.dst, d.strides, d.kernel,
        d.pad_l, d.pad_r);
    return s != dnnl_success ? s : dnnl_primitive_desc_create(pd, &pdesc, o->attr, o->engine, NULL);
}

/* The primitive descriptor of key k (a backward one made with its forward's as the hint). */
static dnnl_status_t make_pd(dnnl_primitive_desc_t *pd, dp_onednn *o, const prim_key *k)
{
    descs d = descs_of(k);
    dnnl_primitive_desc_t hint = NULL;
    dnnl_status_t s;
    switch (k->op) {
    case CONV_FORWARD:
        return conv_forward_pd(pd, o, k, dnnl_forward_training);
    case POOL_FORWARD:
        return pool_forward_pd(pd, o, k, dnnl_forward_training);
    case CONV_BACKWARD_DATA: {
        dnnl_convolution_desc_t cd;
        s = conv_forward_pd(&hint, o, k, dnnl_forward_training);
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
        s = conv_forward_pd(&hint, o, k, dnnl_forward_training);
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
        s = pool_forward_pd(&hint, o, k, dnnl_forward_training);
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

/* The arguments each operation takes, in the order its callers pass the data. */
static int args_of(const prim_key *k, int arg[MAX_ARGS], dnnl_query_t query[MAX_ARGS])
{
    int n = 0;
#define ARG(a, q) (arg[n] = (a), query[n] = (q), n++)
    switch (k->op) {
    case CONV_FORWARD:
        ARG(DNNL_ARG_DST, dnnl_query_dst_md);
        ARG(DNNL_ARG_SRC, dnnl_query_src_md);
        ARG(DNNL_ARG_WEIGHTS, dnnl_query_weights_md);
        if (k->bias)
            ARG(DNNL_ARG_BIAS, dnnl_query_weights_md); /* index 1 below */
        break;
    case CONV_BACKWARD_DATA:
        ARG(DNNL_ARG_DIFF_SRC, dnnl_query_diff_src_md);
        ARG(DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md);
        ARG(DNNL_ARG_WEIGHTS, dnnl_query_weights_md);
        break;
    case CONV_BACKWARD_WEIGHTS:
        ARG(DNNL_ARG_DIFF_WEIGHTS, dnnl_query_diff_weights_md);
        if (k->bias)
            ARG(DNNL_ARG_DIFF_BIAS, dnnl_query_diff_weights_md); /* index 1 below */
        ARG(DNNL_ARG_SRC, dnnl_query_src_md);
        ARG(DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md);
        break;
    case POOL_FORWARD:
        ARG(DNNL_ARG_DST, dnnl_query_dst_md);
        ARG(DNNL_ARG_SRC, dnnl_query_src_md);
        break;
    default: /* POOL_BACKWARD */
        ARG(DNNL_ARG_DIFF_SRC, dnnl_query_diff_src_md);
        ARG(DNNL_ARG_DIFF_DST, dnnl_query_diff_dst_md);
        break;
    }
#undef ARG
    return n;
}

/* Makes the primitive of key k into e; -1 (recorded) on failure. */
static int make(dp_onednn *o, const prim_key *k, prim *e)
{
    dnnl_primitive_desc_t pd = NULL;
    dnnl_query_t query[MAX_ARGS];
    memset(e, 0, sizeof *e);
    e->key = *k;
    dnnl_status_t s = make_pd(&pd, o, k);
    if (s != dnnl_success)
        return fail(o, "no primitive for this convolution or pooling", s);
    e->n_args = args_of(k, e->arg, query);
    for (int i = 0; i < e->n_args && s == dnnl_success; i++) {
        /* a bias and its gradient are the weights' second tensor */
        bool bias = e->arg[i] == DNNL_ARG_BIAS || e->arg[i] == DNNL_ARG_DIFF_BIAS;
        const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, query[i], bias ? 1 : 0);
        s = md ? dnnl_memory_create(&e->mem[i], md, o->engine, DNNL_MEMORY_NONE)
               : dnnl_invalid_arguments;
    }
    const dnnl_memory_desc_t *scratch = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    e->scratch_bytes = scratch ? dnnl_memory_desc_get_size(scratch) : 0;
    if (s == dnnl_success && e->scratch_bytes)
        s = dnnl_memory_create(&e->scratch, scratch, o->engine, DNNL_MEMORY_NONE);
    if (s == dnnl_success)
        s = dnnl_primitive_create(&e->p, pd);
    dnnl_primitive_desc_destroy(pd);
    if (s != dnnl_success) {
        drop(e);
        return fail(o, "making a primitive", s);
    }
    return 0;
}

/* The cached primitive of key k, made when missing (the least recently used one makes room);
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
    if (make(o, k, e) < 0)
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
    if (!e)
        return;
    if (e->scratch_bytes > o->scratch_bytes) {
        free(o->scratch);
        o->scratch_bytes = 0;
        o->scratch = aligned_alloc(64, (e->scratch_bytes + 63) / 64 * 64);
        if (!o->scratch) {
            snprintf(o->error, sizeof o->error, "oneDNN: out of host memory for a %zu-byte "
                                                "scratchpad", e->scratch_bytes);
            return;
        }
        o->scratch_bytes = e->scratch_bytes;
    }
    dnnl_exec_arg_t args[MAX_ARGS + 1];
    dnnl_status_t s = dnnl_success;
    int n = e->n_args;
    for (int i = 0; i < n && s == dnnl_success; i++) {
        s = dnnl_memory_set_data_handle(e->mem[i], data[i]);
        args[i] = (dnnl_exec_arg_t){ e->arg[i], e->mem[i] };
    }
    if (s == dnnl_success && e->scratch) {
        s = dnnl_memory_set_data_handle(e->scratch, o->scratch);
        args[n++] = (dnnl_exec_arg_t){ DNNL_ARG_SCRATCHPAD, e->scratch };
    }
    if (s == dnnl_success)
        s = dnnl_primitive_execute(e->p, o->stream, n, args);
    if (s == dnnl_success)
        s = dnnl_stream_wait(o->stream);
    if (s != dnnl_success)
        fail(o, "running a primitive", s);
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
