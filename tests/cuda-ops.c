/* cuda-ops.c -- every operation of the backend table run on a CPU device and on a GPU with the
 * same fresh random inputs, outputs compared: fp32 within 1e-5 relative (max |a - b| / max |a|),
 * TF32 GEMMs within 2e-3. Each GPU output buffer is filled with NaN bytes first, so an element
 * the GPU fails to write fails the comparison. Exit status 77 (skip) without a usable GPU. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpmptop-config.h"
#include "engine/backend.h"
#include "engine/comm.h"
#include "engine/gpumon.h"
#include "base/rng.h"
#ifdef HAVE_CUDA
#include "engine/backend_cuda.h"
#endif

#ifndef HAVE_CUDA
int main(void)
{
    puts("SKIP: this build has no CUDA backend");
    return 77;
}
#else

static dp_device cpu, gpu, gpu_tf32;
static int failures;
static dp_rng rng;

static float *random_floats(size_t n, double scale)
{
    float *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(scale * (2.0 * dp_rng_uniform(&rng) - 1.0));
    return v;
}

/* A device copy of host[n] on d; with poison, NaN bytes instead (an output buffer). */
static float *on(dp_device *d, const float *host, size_t n, int poison)
{
    dp_err err;
    float *p = dp_device_alloc(d, (n ? n : 1) * sizeof *p, "test", &err);
    if (poison) {
        float *nan = malloc((n ? n : 1) * sizeof *nan);
        memset(nan, 0xff, (n ? n : 1) * sizeof *nan);
        d->be->upload(d, p, nan, n * sizeof *nan);
        free(nan);
    } else {
        d->be->upload(d, p, host, n * sizeof *host);
    }
    return p;
}

static float *back(dp_device *d, const float *p, size_t n)
{
    float *h = malloc((n ? n : 1) * sizeof *h);
    d->be->download(d, h, p, n * sizeof *h);
    return h;
}

/* Compares the CPU's and the GPU's results of an operation. */
static void compare(const char *what, const float *want, const float *got, size_t n, double tol)
{
    double scale = 0, diff = 0;
    for (size_t i = 0; i < n; i++) {
        scale = fmax(scale, fabs(want[i]));
        diff = isfinite(got[i]) ? fmax(diff, fabs((double)want[i] - got[i])) : INFINITY;
    }
    double rel = scale > 0 ? diff / scale : diff;
    int ok = rel <= tol;
    printf("%-44s %s  max rel %.3g (tolerance %.0e)\n", what, ok ? "ok  " : "FAIL", rel, tol);
    failures += !ok;
}


/* The caching allocator: a released block comes back for a request of about its size, is
 * counted as cached meanwhile, and is not handed out twice. */
static void test_allocator(void)
{
    dp_err err;
    size_t cached = gpu.mem_cached, bytes = 3u << 20;
    void *a = dp_device_alloc(&gpu, bytes, "test", &err);
    dp_device_free(&gpu, a, bytes);
    int ok = gpu.mem_cached == cached + (4u << 20); /* 3 MiB rounds up to 2 MiB units */
    void *b = dp_device_alloc(&gpu, bytes + 4096, "test", &err);
    ok = ok && b == a && gpu.mem_cached == cached;
    void *c = dp_device_alloc(&gpu, bytes, "test", &err);
    ok = ok && c && c != b;
    dp_device_free(&gpu, b, bytes + 4096);
    dp_device_free(&gpu, c, bytes);
    printf("%-44s %s  (%zu bytes cached)\n", "allocator reuses released blocks",
           ok ? "ok  " : "FAIL", gpu.mem_cached);
    failures += !ok;
}

/* One member of a device all-reduce group, on its own thread like a worker's comm thread. */
typedef struct member {
    dp_comm *comm;
    dp_device *dev;
    int rank;
    float *buf;
    size_t n;
} member;

static void *member_main(void *arg)
{
    member *m = arg;
    m->dev->be->bind(m->dev);
    for (int round = 0; round < 3; round++) /* the same buffer, summed three times */
        dp_comm_allreduce(m->comm, m->rank, m->buf, m->n);
    dp_comm_join(m->comm, m->rank);
    return NULL;
}

/* Logical devices of one GPU all-reduce in a device group, and every member ends with the
 * host all-reduce's member-order sums bit for bit. */
static void test_device_allreduce(int size)
{
    enum { MAX = 4 };
    size_t n = 1000003;
    dp_device devs[MAX], *members[MAX];
    member m[MAX];
    pthread_t th[MAX];
    float *want[MAX];
    dp_err err;
    for (int r = 0; r < size; r++) {
        if (r > 0 && dp_cuda_device_init(&devs[r], r, 0, false, &err) < 0) {
            printf("FAIL: %s\n", err.msg);
            failures++;
            return;
        }
        members[r] = r == 0 ? &gpu : &devs[r];
        want[r] = random_floats(n, 1.0);
    }
    dp_comm *c = dp_comm_create(members, size, &err);
    if (!c) {
        printf("FAIL: dp_comm_create: %s\n", err.msg);
        failures++;
        return;
    }
    for (int r = 0; r < size; r++)
        m[r] = (member){ c, members[r], r, on(members[r], want[r], n, 0), n };
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < n; i++) {
            float s = want[0][i];
            for (int r = 1; r < size; r++)
                s += want[r][i];
            for (int r = 0; r < size; r++)
                want[r][i] = s;
        }
    for (int r = 0; r < size; r++)
        pthread_create(&th[r], NULL, member_main, &m[r]);
    for (int r = 0; r < size; r++)
        pthread_join(th[r], NULL);
    char what[80];
    for (int r = 0; r < size; r++) {
        snprintf(what, sizeof what, "all-reduce, %d devices on one GPU (%s), rank %d", size,
                 dp_comm_kind(c), r);
        compare(what, want[r], back(members[r], m[r].buf, n), n, 0);
    }
    int on_device = dp_comm_on_device(c);
    printf("%-44s %s\n", "all-reduce group on the device", on_device ? "ok  " : "FAIL");
    failures += !on_device;
    dp_comm_destroy(c);
    for (int r = 1; r < size; r++)
        dp_cuda_device_destroy(&devs[r]);
}

static void test_gemm(dp_device *g, double tol, const char *label)
{
    int m = 37, n = 29, k = 53;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int acc = 0; acc < 2; acc++) {
                int lda = ta ? m : k, ldb = tb ? k : n;
                float *a = random_floats((size_t)m * k, 1), *b = random_floats((size_t)k * n, 1);
                float *c = random_floats((size_t)m * n, 1);
                float *ca = on(&cpu, a, (size_t)m * k, 0), *cb = on(&cpu, b, (size_t)k * n, 0);
                float *cc = on(&cpu, c, (size_t)m * n, 0);
                float *ga = on(g, a, (size_t)m * k, 0), *gb = on(g, b, (size_t)k * n, 0);
                float *gc = on(g, c, (size_t)m * n, !acc);
                float beta = acc ? 1.0f : 0.0f;
                cpu.be->gemm(&cpu, ta, tb, m, n, k, 0.5f, ca, lda, cb, ldb, beta, cc, n);
                g->be->gemm(g, ta, tb, m, n, k, 0.5f, ga, lda, gb, ldb, beta, gc, n);
                float *got = back(g, gc, (size_t)m * n);
                char what[64];
                snprintf(what, sizeof what, "gemm %s %c%c beta %d", label, ta ? 'T' : 'N',
                         tb ? 'T' : 'N', acc);
                compare(what, cc, got, (size_t)m * n, tol);
                free(a), free(b), free(c), free(got);
            }
}

/* Calls of a tuned shape: the warm-up, one per way (cublasSgemm, transposed copies, up to 4
 * cuBLASLt algorithms), and one of the fastest. */
enum { TUNED_CALLS = 8 };

/* linear on a tuned shape (widths multiples of 4, aligned buffers), called through every way;
 * each call matches the CPU, its output poisoned first. */
static void test_linear_tuned(dp_device *g, double tol, const char *label, bool relu)
{
    int rows = 200, out = 96, in = 52;
    float *x = random_floats((size_t)rows * in, 1), *w = random_floats((size_t)out * in, 1);
    float *b = random_floats((size_t)out, 1);
    float *cx = on(&cpu, x, (size_t)rows * in, 0), *cw = on(&cpu, w, (size_t)out * in, 0);
    float *cb = on(&cpu, b, (size_t)out, 0), *cy = on(&cpu, NULL, (size_t)rows * out, 1);
    float *gx = on(g, x, (size_t)rows * in, 0), *gw = on(g, w, (size_t)out * in, 0);
    float *gb = on(g, b, (size_t)out, 0), *gy = on(g, NULL, (size_t)rows * out, 1);
    float *poison = back(g, gy, (size_t)rows * out);
    cpu.be->linear(&cpu, rows, out, in, cx, cw, cb, cy, relu);
    for (int call = 0; call < TUNED_CALLS; call++) {
        g->be->upload(g, gy, poison, (size_t)rows * out * sizeof *gy);
        g->be->linear(g, rows, out, in, gx, gw, gb, gy, relu);
        char what[80];
        snprintf(what, sizeof what, "linear%s %s %dx%dx%d, call %d", relu ? "+relu" : "",
                 label, rows, out, in, call + 1);
        compare(what, back(&cpu, cy, (size_t)rows * out), back(g, gy, (size_t)rows * out),
                (size_t)rows * out, tol);
    }
}

/* A GEMM large enough to be tuned, each transpose combination, called through every way; each
 * call matches the CPU. Odd sizes and padded leading dimensions test the edges. */
static void test_gemm_tuned(dp_device *g, double tol, const char *label)
{
    int m = 300, n = 260, k = 1001;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n;
            size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb;
            float *a = random_floats(na, 1), *b = random_floats(nb, 1);
            float *c = random_floats((size_t)m * ldc, 1);
            float *ca = on(&cpu, a, na, 0), *cb = on(&cpu, b, nb, 0);
            float *ga = on(g, a, na, 0), *gb = on(g, b, nb, 0);
            float *cc = on(&cpu, c, (size_t)m * ldc, 0), *gc = on(g, c, (size_t)m * ldc, 0);
            cpu.be->gemm(&cpu, ta, tb, m, n, k, 0.5f, ca, lda, cb, ldb, 1.0f, cc, ldc);
            for (int call = 0; call < TUNED_CALLS; call++) {
                g->be->upload(g, gc, c, (size_t)m * ldc * sizeof *c);
                g->be->gemm(g, ta, tb, m, n, k, 0.5f, ga, lda, gb, ldb, 1.0f, gc, ldc);
                char what[64];
                snprintf(what, sizeof what, "gemm %s %c%c %dx%dx%d, call %d", label,
                         ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, call + 1);
                compare(what, back(&cpu, cc, (size_t)m * ldc), back(g, gc, (size_t)m * ldc),
                        (size_t)m * ldc, tol);
            }
        }
}

/* One operation on both devices from the same inputs: in[k] are host arrays of counts[k]
 * floats, copied to each device; the output (n_out floats) is poisoned on the GPU. */
typedef struct both {
    float *c[6], *g[6];
} both;

static both inputs(float *const *host, const size_t *counts, int k)
{
    both b;
    for (int i = 0; i < k; i++) {
        b.c[i] = on(&cpu, host[i], counts[i], 0);
        b.g[i] = on(&gpu, host[i], counts[i], 0);
    }
    return b;
}

/* The layers' operations (conv, pooling, blocks, sequences, dropout) on odd sizes. */
static void test_layer_ops(void)
{
    dp_conv_geom geoms[] = { { 3, 9, 7, 3, 3, 2, 2, 1, 1, 5, 4 }, { 4, 6, 6, 1, 1, 1, 1, 0, 0, 6, 6 } };
    for (int gi = 0; gi < 2; gi++) {
        dp_conv_geom g = geoms[gi];
        int n = 5;
        size_t nx = (size_t)n * g.c * g.h * g.w, ncol = (size_t)n * g.oh * g.ow * g.c * g.kh * g.kw;
        float *hx = random_floats(nx, 1), *hcol = random_floats(ncol, 1);
        both b = inputs((float *[]){ hx, hcol }, (size_t[]){ nx, ncol }, 2);
        float *ccol = on(&cpu, NULL, ncol, 1), *gcol = on(&gpu, NULL, ncol, 1);
        cpu.be->im2col(&cpu, ccol, b.c[0], n, g);
        gpu.be->im2col(&gpu, gcol, b.g[0], n, g);
        compare(gi ? "im2col 1x1" : "im2col 3x3 stride 2 pad 1", back(&cpu, ccol, ncol),
                back(&gpu, gcol, ncol), ncol, 0);
        float *cdx = on(&cpu, NULL, nx, 1), *gdx = on(&gpu, NULL, nx, 1);
        cpu.be->col2im(&cpu, cdx, b.c[1], n, g);
        gpu.be->col2im(&gpu, gdx, b.g[1], n, g);
        compare(gi ? "col2im 1x1" : "col2im 3x3 stride 2 pad 1", back(&cpu, cdx, nx),
                back(&gpu, gdx, nx), nx, 1e-6);
    }
    { /* pooling: max (overlapping windows) and average, forward and backward */
        dp_conv_geom g = { 0, 7, 9, 3, 3, 2, 2, 0, 0, 3, 4 };
        int planes = 6;
        size_t nx = (size_t)planes * g.h * g.w, ny = (size_t)planes * g.oh * g.ow;
        float *hx = random_floats(nx, 1), *hdy = random_floats(ny, 1);
        both b = inputs((float *[]){ hx, hdy }, (size_t[]){ nx, ny }, 2);
        for (int max = 0; max < 2; max++) {
            float *cy = on(&cpu, NULL, ny, 1), *gy = on(&gpu, NULL, ny, 1);
            int32_t *carg = (int32_t *)on(&cpu, NULL, ny, 1), *garg = (int32_t *)on(&gpu, NULL, ny, 1);
            cpu.be->pool_forward(&cpu, max, cy, max ? carg : NULL, b.c[0], planes, g);
            gpu.be->pool_forward(&gpu, max, gy, max ? garg : NULL, b.g[0], planes, g);
            compare(max ? "maxpool forward" : "avgpool forward", back(&cpu, cy, ny),
                    back(&gpu, gy, ny), ny, 1e-6);
            float *cdx = on(&cpu, NULL, nx, 1), *gdx = on(&gpu, NULL, nx, 1);
            cpu.be->pool_backward(&cpu, max, cdx, carg, b.c[1], planes, g);
            gpu.be->pool_backward(&gpu, max, gdx, garg, b.g[1], planes, g);
            compare(max ? "maxpool backward" : "avgpool backward", back(&cpu, cdx, nx),
                    back(&gpu, gdx, nx), nx, 1e-6);
        }
    }
    { /* a convolution's bias per channel, add, add_broadcast, dropout */
        int batch = 3, r = 37, c = 70;
        size_t n = (size_t)batch * r * c;
        float *ha = random_floats(n, 1), *hb = random_floats(n, 1), *hrow = random_floats((size_t)r * c, 1);
        both b = inputs((float *[]){ ha, hb, hrow }, (size_t[]){ n, n, (size_t)r * c }, 3);
        float *cy = on(&cpu, NULL, n, 1), *gy = on(&gpu, NULL, n, 1);
        float *cz = on(&cpu, ha, n, 0), *gz = on(&gpu, ha, n, 0);
        cpu.be->channel_bias(&cpu, cz, b.c[2], batch, r, c);
        gpu.be->channel_bias(&gpu, gz, b.g[2], batch, r, c);
        compare("channel_bias 3 x 37 x 70", back(&cpu, cz, n), back(&gpu, gz, n), n, 0);
        float *cdb = on(&cpu, hrow, (size_t)r, 0), *gdb = on(&gpu, hrow, (size_t)r, 0);
        for (int acc = 0; acc < 2; acc++) {
            cpu.be->channel_bias_grad(&cpu, cdb, b.c[0], batch, r, c, acc);
            gpu.be->channel_bias_grad(&gpu, gdb, b.g[0], batch, r, c, acc);
            compare(acc ? "channel_bias_grad (+=)" : "channel_bias_grad", back(&cpu, cdb, r),
                    back(&gpu, gdb, r), (size_t)r, 1e-6);
        }
        cpu.be->add(&cpu, cy, b.c[0], b.c[1], n);
        gpu.be->add(&gpu, gy, b.g[0], b.g[1], n);
        compare("add", back(&cpu, cy, n), back(&gpu, gy, n), n, 0);
        cpu.be->add_broadcast(&cpu, cy, b.c[0], b.c[2], batch, r * c);
        gpu.be->add_broadcast(&gpu, gy, b.g[0], b.g[2], batch, r * c);
        compare("add_broadcast", back(&cpu, cy, n), back(&gpu, gy, n), n, 0);
        dp_dropout_args a = { 7, 3, 11, 2, 0.3f };
        cpu.be->dropout(&cpu, cy, b.c[0], batch * r, c, a);
        gpu.be->dropout(&gpu, gy, b.g[0], batch * r, c, a);
        compare("dropout (the same mask)", back(&cpu, cy, n), back(&gpu, gy, n), n, 0);
    }
    { /* batch normalisation over [5, 6, 33] (a channel of 165 values: several GPU threads
       * each), with a mean far from 0 in every channel; training and evaluation */
        int n = 5, c = 6, pos = 33;
        size_t total = (size_t)n * c * pos;
        float *hx = random_floats(total, 2), *hdy = random_floats(total, 1);
        for (size_t e = 0; e < total; e++)
            hx[e] += 20.0f;
        float *hw = random_floats(2 * (size_t)c, 1), *hrun = random_floats(2 * (size_t)c + 1, 1);
        for (int i = c; i < 2 * c; i++)
            hrun[i] += 1.5f; /* running variances in [0.5, 2.5] */
        hrun[2 * c] = 0.0f; /* no batches yet */
        both b = inputs((float *[]){ hx, hdy, hw, hrun },
                        (size_t[]){ total, total, 2 * (size_t)c, 2 * (size_t)c + 1 }, 4);
        size_t nacc = 2 * (size_t)c + 2, nst = 2 * (size_t)c + 1;
        float *cacc = on(&cpu, NULL, nacc, 1), *gacc = on(&gpu, NULL, nacc, 1);
        cpu.be->bn_sums(&cpu, cacc, b.c[0], NULL, n, c, pos);
        gpu.be->bn_sums(&gpu, gacc, b.g[0], NULL, n, c, pos);
        cpu.be->bn_sums(&cpu, cacc + c + 1, b.c[0], cacc, n, c, pos);
        gpu.be->bn_sums(&gpu, gacc + c + 1, b.g[0], gacc, n, c, pos);
        compare("bn_sums (and centred squares)", back(&cpu, cacc, nacc), back(&gpu, gacc, nacc),
                nacc, 1e-6);
        for (int train = 1; train >= 0; train--) {
            float *cst = on(&cpu, NULL, nst, 1), *gst = on(&gpu, NULL, nst, 1);
            cpu.be->bn_statistics(&cpu, cst, b.c[3], train ? cacc : NULL, c);
            gpu.be->bn_statistics(&gpu, gst, b.g[3], train ? gacc : NULL, c);
            compare(train ? "bn_statistics, training" : "bn_statistics, evaluation",
                    back(&cpu, cst, 2 * (size_t)c), back(&gpu, gst, 2 * (size_t)c),
                    2 * (size_t)c, 1e-6);
            compare(train ? "bn running statistics" : "bn running statistics (unchanged)",
                    back(&cpu, b.c[3], nst), back(&gpu, b.g[3], nst), nst, 1e-6);
            float *cy = on(&cpu, NULL, total, 1), *gy = on(&gpu, NULL, total, 1);
            cpu.be->bn_forward(&cpu, cy, b.c[0], cst, b.c[2], b.c[2] + c, n, c, pos);
            gpu.be->bn_forward(&gpu, gy, b.g[0], gst, b.g[2], b.g[2] + c, n, c, pos);
            compare(train ? "bn_forward, training" : "bn_forward, evaluation",
                    back(&cpu, cy, total), back(&gpu, gy, total), total, 1e-5);
            if (!train)
                continue;
            float *csum = on(&cpu, NULL, 2 * (size_t)c, 1), *gsum = on(&gpu, NULL, 2 * (size_t)c, 1);
            cpu.be->bn_backward_sums(&cpu, csum, b.c[1], b.c[0], cst, n, c, pos);
            gpu.be->bn_backward_sums(&gpu, gsum, b.g[1], b.g[0], gst, n, c, pos);
            compare("bn_backward_sums", back(&cpu, csum, 2 * (size_t)c),
                    back(&gpu, gsum, 2 * (size_t)c), 2 * (size_t)c, 1e-5);
            float *cdx = on(&cpu, NULL, total, 1), *gdx = on(&gpu, NULL, total, 1);
            cpu.be->bn_backward_dx(&cpu, cdx, b.c[1], b.c[0], cst, b.c[2], csum, n, c, pos);
            gpu.be->bn_backward_dx(&gpu, gdx, b.g[1], b.g[0], gst, b.g[2], gsum, n, c, pos);
            compare("bn_backward_dx", back(&cpu, cdx, total), back(&gpu, gdx, total), total,
                    1e-5);
        }
    }
    { /* layernorm, causal softmax, embedding, batched GEMM over heads */
        int rows = 53, w = 40, vocab = 11;
        size_t n = (size_t)rows * w;
        float *hx = random_floats(n, 2), *hdy = random_floats(n, 1), *hw = random_floats(2 * w, 1);
        float *ids = malloc((size_t)rows * sizeof *ids);
        for (int i = 0; i < rows; i++)
            ids[i] = (float)(i * 7 % vocab);
        float *htable = random_floats((size_t)vocab * w, 1);
        both b = inputs((float *[]){ hx, hdy, hw, ids, htable },
                        (size_t[]){ n, n, (size_t)2 * w, (size_t)rows, (size_t)vocab * w }, 5);
        float *cy = on(&cpu, NULL, n, 1), *gy = on(&gpu, NULL, n, 1);
        float *cst = on(&cpu, NULL, 2 * (size_t)rows, 1), *gst = on(&gpu, NULL, 2 * (size_t)rows, 1);
        cpu.be->layernorm_forward(&cpu, cy, cst, b.c[0], b.c[2], b.c[2] + w, rows, w);
        gpu.be->layernorm_forward(&gpu, gy, gst, b.g[0], b.g[2], b.g[2] + w, rows, w);
        compare("layernorm forward", back(&cpu, cy, n), back(&gpu, gy, n), n, 1e-5);
        float *cdw = on(&cpu, hw, 2 * (size_t)w, 0), *gdw = on(&gpu, hw, 2 * (size_t)w, 0);
        for (int acc = 0; acc < 2; acc++) {
            cpu.be->layernorm_backward(&cpu, cy, cdw, cdw + w, b.c[1], b.c[0], cst, b.c[2], rows,
                                       w, acc);
            gpu.be->layernorm_backward(&gpu, gy, gdw, gdw + w, b.g[1], b.g[0], gst, b.g[2], rows,
                                       w, acc);
            compare(acc ? "layernorm backward dw db (+=)" : "layernorm backward dw db",
                    back(&cpu, cdw, 2 * (size_t)w), back(&gpu, gdw, 2 * (size_t)w), 2 * (size_t)w,
                    1e-5);
        }
        compare("layernorm backward dx", back(&cpu, cy, n), back(&gpu, gy, n), n, 1e-5);
        for (int causal = 0; causal < 2; causal++) {
            int cols = 8, srows = (int)(n / cols);
            cpu.be->softmax_forward(&cpu, cy, b.c[0], srows, cols, 0.7f, causal ? cols : 0);
            gpu.be->softmax_forward(&gpu, gy, b.g[0], srows, cols, 0.7f, causal ? cols : 0);
            compare(causal ? "softmax causal" : "softmax", back(&cpu, cy, n), back(&gpu, gy, n),
                    n, 1e-6);
            float *cdx = on(&cpu, NULL, n, 1), *gdx = on(&gpu, NULL, n, 1);
            cpu.be->softmax_backward(&cpu, cdx, cy, b.c[1], srows, cols, 0.7f);
            gpu.be->softmax_backward(&gpu, gdx, gy, b.g[1], srows, cols, 0.7f);
            compare("softmax backward", back(&cpu, cdx, n), back(&gpu, gdx, n), n, 1e-5);
        }
        cpu.be->embedding_forward(&cpu, cy, b.c[3], b.c[4], rows, w, vocab);
        gpu.be->embedding_forward(&gpu, gy, b.g[3], b.g[4], rows, w, vocab);
        compare("embedding forward", back(&cpu, cy, n), back(&gpu, gy, n), n, 0);
        size_t nt = (size_t)vocab * w;
        float *ct = on(&cpu, htable, nt, 0), *gt = on(&gpu, htable, nt, 0);
        for (int acc = 0; acc < 2; acc++) {
            cpu.be->embedding_backward(&cpu, ct, b.c[3], b.c[1], rows, w, vocab, acc);
            gpu.be->embedding_backward(&gpu, gt, b.g[3], b.g[1], rows, w, vocab, acc);
            compare(acc ? "embedding backward (+=)" : "embedding backward", back(&cpu, ct, nt),
                    back(&gpu, gt, nt), nt, 1e-6);
        }
        /* 3 heads of width 5 in rows of 3 x 15 (q k v), scores q k^T per head */
        int t = 9, hd = 5, h = 3, ld = 3 * h * hd;
        size_t nq = (size_t)t * ld, ns = (size_t)h * t * t;
        float *hq = random_floats(nq, 1);
        both q = inputs((float *[]){ hq }, (size_t[]){ nq }, 1);
        float *cs = on(&cpu, NULL, ns, 1), *gs = on(&gpu, NULL, ns, 1);
        cpu.be->gemm_batched(&cpu, 0, 1, t, t, hd, 0.5f, q.c[0], ld, hd, q.c[0] + h * hd, ld, hd,
                             0.0f, cs, t, (long)t * t, h);
        gpu.be->gemm_batched(&gpu, 0, 1, t, t, hd, 0.5f, q.g[0], ld, hd, q.g[0] + h * hd, ld, hd,
                             0.0f, gs, t, (long)t * t, h);
        compare("gemm_batched q k^T over 3 heads", back(&cpu, cs, ns), back(&gpu, gs, ns), ns,
                1e-5);
        float *co = on(&cpu, hq, nq, 0), *go = on(&gpu, hq, nq, 0);
        cpu.be->gemm_batched(&cpu, 1, 0, t, hd, t, 1.0f, cs, t, (long)t * t, q.c[0], ld, hd, 1.0f,
                             co, ld, hd, h);
        gpu.be->gemm_batched(&gpu, 1, 0, t, hd, t, 1.0f, gs, t, (long)t * t, q.g[0], ld, hd, 1.0f,
                             go, ld, hd, h);
        compare("gemm_batched S^T q (+=) into strided heads", back(&cpu, co, nq),
                back(&gpu, go, nq), nq, 1e-5);
    }
}

/* A convolution's geometry with the output size of the layers' (engine/layers/conv.c). */
static dp_conv_geom conv_geom(int c, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw)
{
    dp_conv_geom g = { c, h, w, kh, kw, sh, sw, ph, pw, 0, 0 };
    g.oh = (h + 2 * ph - kh) / sh + 1;
    g.ow = (w + 2 * pw - kw) / sw + 1;
    return g;
}

/* The three passes of a convolution on the CPU device through the engine's own kernels, as
 * engine/layers/conv.c runs them without a library: y = W col (+ b), dx = col2im(W^T dy),
 * dw = sum over samples of dy col^T, db = the sums of dy per channel (b, db NULL: none). */
static void reference_conv(dp_conv_geom g, int oc, int n, const float *x, const float *w,
                           const float *b, const float *dy, float *y, float *dx, float *dw,
                           float *db)
{
    int ckk = g.c * g.kh * g.kw, pos = g.oh * g.ow;
    size_t per = (size_t)ckk * pos;
    float *col = malloc((size_t)n * per * sizeof *col), *dcol = malloc((size_t)n * per * sizeof *dcol);
    cpu.be->im2col(&cpu, col, x, n, g);
    for (int i = 0; i < n; i++) {
        cpu.be->gemm(&cpu, 0, 0, oc, pos, ckk, 1.0f, w, ckk, col + i * per, pos, 0.0f,
                     y + (size_t)i * oc * pos, pos);
        cpu.be->gemm(&cpu, 1, 0, ckk, pos, oc, 1.0f, w, ckk, dy + (size_t)i * oc * pos, pos,
                     0.0f, dcol + i * per, pos);
        cpu.be->gemm(&cpu, 0, 1, oc, ckk, pos, 1.0f, dy + (size_t)i * oc * pos, pos,
                     col + i * per, pos, i ? 1.0f : 0.0f, dw, ckk);
    }
    if (b)
        cpu.be->channel_bias(&cpu, y, b, n, oc, pos);
    cpu.be->col2im(&cpu, dx, dcol, n, g);
    if (db)
        cpu.be->channel_bias_grad(&cpu, db, dy, n, oc, pos, false);
    free(col), free(dcol);
}

/* The GPU's library convolutions (cuDNN) against the CPU's own kernels, with and without a
 * bias, on the geometries of im2col's checks and the edges: 1x1 with stride 2, padding the
 * windows do not reach, whole rows and columns of padding, a kernel and stride that differ per
 * side. Each output is poisoned first, and each pass runs twice (the second from the plan
 * cuDNN's timing chose). fp32 within 1e-4: cuDNN's FFT and Winograd algorithms round otherwise
 * than a direct sum (TF32 would be off by about 1e-3); TF32 within 1e-2, a check that the
 * tensor-core path computes the same convolution. Skipped where cuDNN is missing. */
static void test_library_convs(dp_device *g, double tol, const char *label)
{
    char versions[256];
    g->be->versions(versions, sizeof versions);
    if (!dp_device_conv_library(g)) {
        printf("SKIP library convolutions %s: no cuDNN on this machine (%s)\n", label, versions);
        return;
    }
    const dp_conv_geom geoms[] = {
        conv_geom(3, 9, 7, 3, 3, 2, 2, 1, 1), /* im2col's 3x3 stride 2 padding 1 */
        conv_geom(4, 6, 6, 1, 1, 1, 1, 0, 0), /* im2col's 1x1 */
        conv_geom(5, 7, 8, 1, 1, 2, 2, 0, 0), /* 1x1 stride 2 */
        conv_geom(2, 6, 5, 3, 3, 2, 2, 2, 2), /* padding 2: the far side's is never reached */
        conv_geom(2, 5, 6, 2, 2, 1, 1, 2, 2), /* padding past the kernel: whole rows of it */
        conv_geom(3, 7, 6, 3, 1, 1, 2, 1, 0), /* 3x1 kernel, strides 1 and 2 */
    };
    const char *const names[] = { "3x3 s2 p1", "1x1", "1x1 s2", "3x3 s2 p2", "2x2 p2",
                                  "3x1 s1x2 p1x0" };
    int n = 5, oc = 7;
    for (int gi = 0; gi < (int)(sizeof geoms / sizeof geoms[0]); gi++) {
        dp_conv_geom cg = geoms[gi];
        int ckk = cg.c * cg.kh * cg.kw, pos = cg.oh * cg.ow;
        size_t nx = (size_t)n * cg.c * cg.h * cg.w, ny = (size_t)n * oc * pos;
        size_t nw = (size_t)oc * ckk;
        float *hx = random_floats(nx, 1), *hw = random_floats(nw, 1);
        float *hb = random_floats((size_t)oc, 1), *hdy = random_floats(ny, 1);
        /* the reference, with the bias and without */
        float *ry = malloc(ny * sizeof *ry), *ry0 = malloc(ny * sizeof *ry0);
        float *rdx = malloc(nx * sizeof *rdx), *rdw = malloc(nw * sizeof *rdw);
        float *rdb = malloc((size_t)oc * sizeof *rdb);
        reference_conv(cg, oc, n, hx, hw, hb, hdy, ry, rdx, rdw, rdb);
        reference_conv(cg, oc, n, hx, hw, NULL, hdy, ry0, rdx, rdw, NULL);
        float *gx = on(g, hx, nx, 0), *gw = on(g, hw, nw, 0), *gb = on(g, hb, (size_t)oc, 0);
        float *gdy = on(g, hdy, ny, 0);
        float *gy = on(g, NULL, ny, 1), *gdx = on(g, NULL, nx, 1);
        float *gdw = on(g, NULL, nw + (size_t)oc, 1); /* dw, then db */
        size_t most = ny > nx ? ny : nx;
        most = most > nw + oc ? most : nw + oc;
        float *poison = malloc(most * sizeof *poison); /* NaN bytes for every output */
        memset(poison, 0xff, most * sizeof *poison);
        char what[96];
        for (int call = 1; call <= 2; call++)
            for (int bias = 0; bias < 2; bias++) {
                g->be->upload(g, gy, poison, ny * sizeof *gy);
                double flops = g->be->gemm_flops(g);
                g->be->conv_forward(g, cg, oc, n, gy, gx, gw, bias ? gb : NULL);
                double counted = g->be->gemm_flops(g) - flops;
                snprintf(what, sizeof what, "cudnn %s forward %s%s, call %d", label, names[gi],
                         bias ? " +bias" : "", call);
                compare(what, bias ? ry : ry0, back(g, gy, ny), ny, tol);
                if (counted != 2.0 * n * oc * pos * ckk) {
                    printf("FAIL: %s counted %.0f FLOPs, not %.0f\n", what, counted,
                           2.0 * n * oc * pos * ckk);
                    failures++;
                }
                g->be->upload(g, gdw, poison, (nw + oc) * sizeof *gdw);
                g->be->conv_backward_weights(g, cg, oc, n, gdw, bias ? gdw + nw : NULL, gx, gdy);
                float *got = back(g, gdw, nw + oc);
                snprintf(what, sizeof what, "cudnn %s backward weights %s%s, call %d", label,
                         names[gi], bias ? " +bias" : "", call);
                compare(what, rdw, got, nw, tol);
                if (bias) {
                    snprintf(what, sizeof what, "cudnn %s backward bias %s, call %d", label,
                             names[gi], call);
                    compare(what, rdb, got + nw, (size_t)oc, tol);
                }
                free(got);
            }
        for (int call = 1; call <= 2; call++) {
            g->be->upload(g, gdx, poison, nx * sizeof *gdx);
            g->be->conv_backward_data(g, cg, oc, n, gdx, gdy, gw);
            snprintf(what, sizeof what, "cudnn %s backward data %s, call %d", label, names[gi],
                     call);
            compare(what, rdx, back(g, gdx, nx), nx, tol);
        }
        free(hx), free(hw), free(hb), free(hdy), free(ry), free(ry0), free(rdx), free(rdw),
            free(rdb), free(poison);
    }
}

/* A device copy of labels[n] on d. */
static int32_t *labels_on(dp_device *d, const int32_t *labels, size_t n)
{
    dp_err err;
    int32_t *p = dp_device_alloc(d, (n ? n : 1) * sizeof *p, "test", &err);
    d->be->upload(d, p, labels, n * sizeof *labels);
    return p;
}

/* Labels downloaded from d, as floats for compare (exact for |label| < 2^24). */
static float *labels_back(dp_device *d, const int32_t *p, size_t n)
{
    int32_t *h = malloc((n ? n : 1) * sizeof *h);
    float *f = malloc((n ? n : 1) * sizeof *f);
    d->be->download(d, h, p, n * sizeof *h);
    for (size_t i = 0; i < n; i++)
        f[i] = (float)h[i];
    free(h);
    return f;
}

/* A masked language model's operations: the exact GELU over [-6, 6] forward and backward, the
 * masks of mlm_mask (a training key and a test key; inputs and labels together, inputs alone,
 * labels alone: each bit for bit), and softmax cross-entropy with ignored labels (-1): dlogits,
 * and the three sums (loss, correct, counted), also for a batch of only ignored labels. */
static void test_bert_ops(void)
{
    { /* gelu_erf on a grid of [-6, 6], dy random */
        size_t n = 12001;
        float *hx = malloc(n * sizeof *hx), *hdy = random_floats(n, 1);
        for (size_t i = 0; i < n; i++)
            hx[i] = (float)(-6.0 + 12.0 * (double)i / (double)(n - 1));
        both b = inputs((float *[]){ hx, hdy }, (size_t[]){ n, n }, 2);
        float *cy = on(&cpu, NULL, n, 1), *gy = on(&gpu, NULL, n, 1);
        cpu.be->act_forward(&cpu, DP_ACT_GELU_ERF, 0.0f, cy, b.c[0], n);
        gpu.be->act_forward(&gpu, DP_ACT_GELU_ERF, 0.0f, gy, b.g[0], n);
        compare("act_forward gelu_erf on [-6, 6]", back(&cpu, cy, n), back(&gpu, gy, n), n, 1e-6);
        float *cdx = on(&cpu, NULL, n, 1), *gdx = on(&gpu, NULL, n, 1);
        cpu.be->act_backward(&cpu, DP_ACT_GELU_ERF, 0.0f, cdx, b.c[0], cy, b.c[1], n);
        gpu.be->act_backward(&gpu, DP_ACT_GELU_ERF, 0.0f, gdx, b.g[0], gy, b.g[1], n);
        compare("act_backward gelu_erf on [-6, 6]", back(&cpu, cdx, n), back(&gpu, gdx, n), n,
                1e-6);
        free(hx), free(hdy);
    }
    { /* mlm_mask over 37 rows of 129 positions of random bytes */
        int rows = 37, t = 129;
        size_t n = (size_t)rows * t;
        float *hx = malloc(n * sizeof *hx);
        int32_t *hy = malloc(n * sizeof *hy);
        for (size_t i = 0; i < n; i++) {
            hy[i] = (int32_t)dp_rng_below(&rng, 256);
            hx[i] = (float)hy[i];
        }
        const dp_noise_args keys[2] = { { 5, DP_NOISE_MLM, 9, 130 },
                                        { 0, DP_NOISE_MLM_TEST, 0, 4096 } };
        static const char *const alone[3] = { "", ", inputs alone", ", labels alone" };
        for (int k = 0; k < 2; k++)
            for (int which = 0; which < 3; which++) { /* both, inputs alone, labels alone */
                float *cx = on(&cpu, hx, n, 0), *gx = on(&gpu, hx, n, 0);
                int32_t *cl = labels_on(&cpu, hy, n), *gl = labels_on(&gpu, hy, n);
                cpu.be->mlm_mask(&cpu, which == 2 ? NULL : cx, which == 1 ? NULL : cl, rows, t,
                                 keys[k]);
                gpu.be->mlm_mask(&gpu, which == 2 ? NULL : gx, which == 1 ? NULL : gl, rows, t,
                                 keys[k]);
                char what[80];
                snprintf(what, sizeof what, "mlm_mask %s: inputs%s", k ? "test" : "training",
                         alone[which]);
                compare(what, back(&cpu, cx, n), back(&gpu, gx, n), n, 0);
                snprintf(what, sizeof what, "mlm_mask %s: labels%s", k ? "test" : "training",
                         alone[which]);
                compare(what, labels_back(&cpu, cl, n), labels_back(&gpu, gl, n), n, 0);
            }
        free(hx), free(hy);
    }
    { /* softmax_xent, 67 rows of 45 classes, every third label -1; then all of them -1 */
        int rows = 67, cols = 45;
        size_t n = (size_t)rows * cols;
        float *hz = random_floats(n, 3);
        int32_t *hl = malloc((size_t)rows * sizeof *hl);
        for (int r = 0; r < rows; r++)
            hl[r] = r % 3 == 1 ? -1 : (int32_t)dp_rng_below(&rng, (uint64_t)cols);
        both b = inputs((float *[]){ hz }, (size_t[]){ n }, 1);
        int32_t *cl = labels_on(&cpu, hl, (size_t)rows), *gl = labels_on(&gpu, hl, (size_t)rows);
        float zero3[3] = { 0, 0, 0 };
        float *cst = on(&cpu, zero3, 3, 0), *gst = on(&gpu, zero3, 3, 0);
        float *cg = on(&cpu, NULL, n, 1), *gg = on(&gpu, NULL, n, 1);
        cpu.be->softmax_xent(&cpu, b.c[0], cl, rows, cols, 0.25f, cg, cst);
        gpu.be->softmax_xent(&gpu, b.g[0], gl, rows, cols, 0.25f, gg, gst);
        compare("softmax_xent, labels -1: dlogits", back(&cpu, cg, n), back(&gpu, gg, n), n,
                1e-5);
        float *c3 = back(&cpu, cst, 3), *g3 = back(&gpu, gst, 3);
        compare("softmax_xent, labels -1: loss, correct, counted", c3, g3, 3, 1e-5);
        int counted_ok = c3[2] == (float)(rows - (rows + 1) / 3) && g3[2] == c3[2];
        printf("%-44s %s  (%g of %d rows)\n", "softmax_xent, labels -1: rows counted",
               counted_ok ? "ok  " : "FAIL", g3[2], rows);
        failures += !counted_ok;
        for (int r = 0; r < rows; r++)
            hl[r] = -1;
        cpu.be->upload(&cpu, cl, hl, (size_t)rows * sizeof *hl);
        gpu.be->upload(&gpu, gl, hl, (size_t)rows * sizeof *hl);
        float *cn = on(&cpu, zero3, 3, 0), *gn = on(&gpu, zero3, 3, 0);
        gg = on(&gpu, NULL, n, 1);
        cpu.be->softmax_xent(&cpu, b.c[0], cl, rows, cols, 1.0f, cg, cn);
        gpu.be->softmax_xent(&gpu, b.g[0], gl, rows, cols, 1.0f, gg, gn);
        compare("softmax_xent, every label -1: dlogits (0)", back(&cpu, cg, n),
                back(&gpu, gg, n), n, 0);
        compare("softmax_xent, every label -1: sums (0)", back(&cpu, cn, 3), back(&gpu, gn, 3),
                3, 0);
        free(hz), free(hl);
    }
}

int main(void)
{
    dp_err err;
    if (dp_cuda_device_count(&err) < 1) {
        printf("SKIP: %s\n", err.msg);
        return 77;
    }
    rng = dp_rng_stream(42, 7, 0);
    if (dp_cpu_device_init(&cpu, 0, 1, &err) < 0 || dp_cuda_device_init(&gpu, 1, 0, false, &err) < 0 ||
        dp_cuda_device_init(&gpu_tf32, 2, 0, true, &err) < 0) {
        fprintf(stderr, "cuda-ops: %s\n", err.msg);
        return 1;
    }
    gpu.be->bind(&gpu);
    test_gemm(&gpu, 1e-5, "fp32");
    test_gemm(&gpu_tf32, 2e-3, "tf32");

    int rows = 67, cols = 45;
    size_t n = (size_t)rows * cols;
    float *x = random_floats(n, 3), *dy = random_floats(n, 1), *row = random_floats(cols, 1);
    float *cx = on(&cpu, x, n, 0), *gx = on(&gpu, x, n, 0);
    float *cdy = on(&cpu, dy, n, 0), *gdy = on(&gpu, dy, n, 0);
    float *crow = on(&cpu, row, cols, 0), *grow = on(&gpu, row, cols, 0);
    float *cy = on(&cpu, x, n, 0), *gy = on(&gpu, x, n, 1), *got;

    /* linear with widths that are not multiples of 4: bias rows, then cuBLAS */
    float *cw = on(&cpu, dy, (size_t)cols * cols, 0), *gw = on(&gpu, dy, (size_t)cols * cols, 0);
    cpu.be->linear(&cpu, rows, cols, cols, cx, cw, crow, cy, false);
    gpu.be->linear(&gpu, rows, cols, cols, gx, gw, grow, gy, false);
    compare("linear 67x45x45", back(&cpu, cy, n), got = back(&gpu, gy, n), n, 1e-5);
    cpu.be->linear(&cpu, rows, cols, cols, cx, cw, crow, cy, true);
    gpu.be->linear(&gpu, rows, cols, cols, gx, gw, grow, gy, true);
    compare("linear+relu 67x45x45", back(&cpu, cy, n), back(&gpu, gy, n), n, 1e-5);
    for (int relu = 0; relu < 2; relu++) {
        test_linear_tuned(&gpu, 1e-5, "fp32", relu);
        test_linear_tuned(&gpu_tf32, 2e-3, "tf32", relu);
    }
    for (int acc = 0; acc < 2; acc++) {
        float *cs = on(&cpu, row, cols, 0), *gs = on(&gpu, row, cols, !acc);
        cpu.be->sum_rows(&cpu, cs, cx, rows, cols, acc);
        gpu.be->sum_rows(&gpu, gs, gx, rows, cols, acc);
        compare(acc ? "sum_rows, accumulate" : "sum_rows", back(&cpu, cs, cols),
                back(&gpu, gs, cols), cols, 1e-5);
    }
    { /* past 2^18 elements the GPU sums by GEMV instead of its own kernel */
        int big_rows = 700, big_cols = 400;
        size_t big = (size_t)big_rows * big_cols;
        float *bx = random_floats(big, 1), *init = random_floats((size_t)big_cols, 1);
        float *cbx = on(&cpu, bx, big, 0), *gbx = on(&gpu, bx, big, 0);
        for (int acc = 0; acc < 2; acc++) {
            float *cs = on(&cpu, init, big_cols, 0), *gs = on(&gpu, init, big_cols, !acc);
            cpu.be->sum_rows(&cpu, cs, cbx, big_rows, big_cols, acc);
            gpu.be->sum_rows(&gpu, gs, gbx, big_rows, big_cols, acc);
            compare(acc ? "sum_rows 700x400 (GEMV), accumulate" : "sum_rows 700x400 (GEMV)",
                    back(&cpu, cs, big_cols), back(&gpu, gs, big_cols), big_cols, 1e-5);
        }
    }
    const char *acts[] = { "relu", "gelu", "tanh", "leakyrelu:0.2", "sigmoid", "gelu_erf" };
    for (int a = 0; a < 6; a++) {
        float *cout = on(&cpu, x, n, 0), *gout = on(&gpu, x, n, 1);
        cpu.be->act_forward(&cpu, (dp_act)a, 0.2f, cout, cx, n);
        gpu.be->act_forward(&gpu, (dp_act)a, 0.2f, gout, gx, n);
        char what[64];
        snprintf(what, sizeof what, "act_forward %s", acts[a]);
        compare(what, back(&cpu, cout, n), back(&gpu, gout, n), n, 1e-5);
        float *cdx = on(&cpu, x, n, 0), *gdx = on(&gpu, x, n, 1);
        cpu.be->act_backward(&cpu, (dp_act)a, 0.2f, cdx, cx, cout, cdy, n);
        gpu.be->act_backward(&gpu, (dp_act)a, 0.2f, gdx, gx, gout, gdy, n);
        snprintf(what, sizeof what, "act_backward %s", acts[a]);
        compare(what, back(&cpu, cdx, n), back(&gpu, gdx, n), n, 1e-5);
    }
    /* softmax cross-entropy: 67 rows of 45 classes */
    int32_t labels[67];
    for (int r = 0; r < rows; r++)
        labels[r] = (int32_t)dp_rng_below(&rng, (uint64_t)cols);
    int32_t *cl = dp_device_alloc(&cpu, sizeof labels, "test", &err);
    int32_t *gl = dp_device_alloc(&gpu, sizeof labels, "test", &err);
    cpu.be->upload(&cpu, cl, labels, sizeof labels);
    gpu.be->upload(&gpu, gl, labels, sizeof labels);
    float zero3[3] = { 0, 0, 0 };
    float *cst = on(&cpu, zero3, 3, 0), *gst = on(&gpu, zero3, 3, 0);
    float *cg = on(&cpu, x, n, 0), *gg = on(&gpu, x, n, 1);
    cpu.be->softmax_xent(&cpu, cx, cl, rows, cols, 0.25f, cg, cst);
    gpu.be->softmax_xent(&gpu, gx, gl, rows, cols, 0.25f, gg, gst);
    compare("softmax_xent dlogits", back(&cpu, cg, n), back(&gpu, gg, n), n, 1e-5);
    compare("softmax_xent loss sum, correct, counted", back(&cpu, cst, 3), back(&gpu, gst, 3), 3,
            1e-5);
    cpu.be->softmax_xent(&cpu, cx, cl, rows, cols, 0.25f, NULL, cst);
    gpu.be->softmax_xent(&gpu, gx, gl, rows, cols, 0.25f, NULL, gst);
    compare("softmax_xent again, stats only", back(&cpu, cst, 3), back(&gpu, gst, 3), 3, 1e-5);
    /* a GAN's binary cross-entropy with logits, against labels 0 and 1, and its noise (1e-6:
     * Box-Muller's log and cos in double on each side, rounded to float) */
    for (int r = 0; r < rows; r++)
        labels[r] = (int32_t)(r % 3 == 0);
    cpu.be->upload(&cpu, cl, labels, sizeof labels);
    gpu.be->upload(&gpu, gl, labels, sizeof labels);
    float *cb3 = on(&cpu, zero3, 3, 0), *gb3 = on(&gpu, zero3, 3, 0);
    cpu.be->bce_logits(&cpu, cx, cl, rows, 0.5f, cg, cb3);
    gpu.be->bce_logits(&gpu, gx, gl, rows, 0.5f, gg, gb3);
    compare("bce_logits dz", back(&cpu, cg, rows), back(&gpu, gg, rows), rows, 1e-5);
    compare("bce_logits loss, right, sigmoid sums", back(&cpu, cb3, 3), back(&gpu, gb3, 3), 3,
            1e-5);
    dp_noise_args na = { 5, DP_NOISE_TRAIN, 9, 130 };
    cpu.be->noise(&cpu, cg, rows, cols, na);
    gpu.be->noise(&gpu, gg, rows, cols, na);
    compare("noise (the same latent vectors)", back(&cpu, cg, n), back(&gpu, gg, n), n, 1e-6);

    /* optimizers */
    dp_sgd_args sgd = { .lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.01f, .nesterov = true };
    float *buf = random_floats(n, 0.1);
    float *cp = on(&cpu, x, n, 0), *gp = on(&gpu, x, n, 0);
    float *cb = on(&cpu, buf, n, 0), *gb = on(&gpu, buf, n, 0);
    cpu.be->sgd_step(&cpu, cp, cdy, cb, n, sgd);
    gpu.be->sgd_step(&gpu, gp, gdy, gb, n, sgd);
    compare("sgd_step parameters", back(&cpu, cp, n), back(&gpu, gp, n), n, 1e-5);
    compare("sgd_step momentum", back(&cpu, cb, n), back(&gpu, gb, n), n, 1e-5);
    dp_adamw_args adam = { .lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                           .weight_decay = 0.01f, .one_minus_beta1 = 0.1f,
                           .one_minus_beta2 = 0.001f, .bias_correction1 = 0.19f,
                           .bias_correction2 = 0.002f };
    float *v = random_floats(n, 0.01);
    for (size_t i = 0; i < n; i++)
        v[i] = fabsf(v[i]);
    float *cm = on(&cpu, buf, n, 0), *gm = on(&gpu, buf, n, 0);
    float *cv = on(&cpu, v, n, 0), *gv = on(&gpu, v, n, 0);
    cpu.be->adamw_step(&cpu, cp, cdy, cm, cv, n, adam);
    gpu.be->adamw_step(&gpu, gp, gdy, gm, gv, n, adam);
    compare("adamw_step parameters", back(&cpu, cp, n), back(&gpu, gp, n), n, 1e-5);
    compare("adamw_step m", back(&cpu, cm, n), back(&gpu, gm, n), n, 1e-5);
    compare("adamw_step v", back(&cpu, cv, n), back(&gpu, gv, n), n, 1e-5);

    float ss[2] = { (float)cpu.be->sum_squares(&cpu, cx, n),
                    (float)gpu.be->sum_squares(&gpu, gx, n) };
    compare("sum_squares", &ss[0], &ss[1], 1, 1e-6);
    { /* accumulate_squares: added to what the float already holds, twice */
        float start = 2.5f, *cacc = on(&cpu, &start, 1, 0), *gacc = on(&gpu, &start, 1, 0);
        for (int k = 0; k < 2; k++) {
            cpu.be->accumulate_squares(&cpu, cx, n, cacc);
            gpu.be->accumulate_squares(&gpu, gx, n, gacc);
        }
        compare("accumulate_squares", back(&cpu, cacc, 1), back(&gpu, gacc, 1), 1, 1e-6);
    }
    cpu.be->scale(&cpu, cx, 0.37f, n);
    gpu.be->scale(&gpu, gx, 0.37f, n);
    compare("scale", back(&cpu, cx, n), back(&gpu, gx, n), n, 1e-6);
    gpu.be->copy(&gpu, gy, gx, n * sizeof *gx);
    compare("copy", back(&cpu, cx, n), back(&gpu, gy, n), n, 0);
    gpu.be->zero(&gpu, gy, n * sizeof *gy);
    float *zeros = calloc(n, sizeof *zeros);
    compare("zero", zeros, back(&gpu, gy, n), n, 0);
    /* gather_rows: a batch of rows picked (with repeats) from a table, bit for bit */
    {
        int table = 100, picks = 64, width = 37;
        float *src = random_floats((size_t)table * width, 1);
        int32_t idx[64];
        for (int r = 0; r < picks; r++)
            idx[r] = (int32_t)dp_rng_below(&rng, (uint64_t)table);
        float *csrc = on(&cpu, src, (size_t)table * width, 0);
        float *gsrc = on(&gpu, src, (size_t)table * width, 0);
        float *cdst = on(&cpu, NULL, (size_t)picks * width, 1);
        float *gdst = on(&gpu, NULL, (size_t)picks * width, 1);
        int32_t *gidx = (int32_t *)on(&gpu, (const float *)idx, (size_t)picks, 0);
        cpu.be->gather_rows(&cpu, cdst, csrc, idx, picks, (size_t)width * sizeof(float));
        gpu.be->gather_rows(&gpu, gdst, gsrc, gidx, picks, (size_t)width * sizeof(float));
        compare("gather_rows", back(&cpu, cdst, (size_t)picks * width),
                back(&gpu, gdst, (size_t)picks * width), (size_t)picks * width, 0);
    }
    {   /* upload_async from host_alloc memory, then a download (which waits) */
        size_t count = 100003;
        float *src = random_floats(count, 1), *pinned = gpu.be->host_alloc(count * sizeof *src);
        memcpy(pinned, src, count * sizeof *src);
        float *dst = on(&gpu, NULL, count, 1);
        gpu.be->upload_async(&gpu, dst, pinned, count * sizeof *src);
        compare("upload_async", src, back(&gpu, dst, count), count, 0);
        gpu.be->host_free(pinned);
    }
    test_layer_ops();
    test_library_convs(&gpu, 1e-4, "fp32");
    test_library_convs(&gpu_tf32, 1e-2, "tf32");
    test_bert_ops();
    test_gemm_tuned(&gpu, 1e-5, "fp32");
    test_gemm_tuned(&gpu_tf32, 2e-3, "tf32");
    dp_cuda_print_tuning(&gpu, stdout);
    dp_cuda_print_tuning(&gpu_tf32, stdout);
    test_allocator();
    test_device_allreduce(2);
    test_device_allreduce(3);
    /* NVML: the GPU the device runs on, found by its PCI bus id, with every reading valid. */
    char why[160], name[96] = "";
    dp_gpumon *mon = dp_gpumon_open(why, sizeof why);
    if (!mon) {
        printf("NVML: %s\n", why);
    } else {
        dp_gpu_reading r;
        int found = dp_gpumon_read(mon, gpu.bus_id, 0, &r, name, sizeof name);
        printf("NVML %s (%s): util %u%%, memory %.1f / %.1f GiB, %u C, %.0f W\n", name,
               gpu.bus_id, r.util_pct, r.mem_used / 1073741824.0, r.mem_total / 1073741824.0,
               r.temp_c, r.power_w);
        if (found < 0 || !r.util_valid || !r.mem_valid || r.mem_total == 0) {
            printf("FAIL: NVML did not read %s (found %d)\n", gpu.bus_id, found);
            failures++;
        }
        dp_gpumon_close(mon);
    }
    const char *e = gpu.be->error(&gpu);
    if (e) {
        printf("CUDA error: %s\n", e);
        failures++;
    }
    printf("%s: %d failure%s\n", failures ? "FAIL" : "ok", failures, failures == 1 ? "" : "s");
    (void)got;
    return failures ? 1 : 0;
}
#endif
