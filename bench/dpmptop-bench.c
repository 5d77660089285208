/* dpmptop-bench.c -- how close a training step on one CPU device comes to plain SGEMM: (a)
 * dnnl_sgemm (the CPU backend's GEMM) alone on exactly the GEMMs of one step (shapes, transposes and betas of
 * engine/layers/linear.c); (b) the step's other kernels and the loader alone, by kind; (c) steps
 * through the engine, split by the device's profile into GEMM, the library's primitives
 * (oneDNN's convolutions and pooling), other kernels and overhead.
 * (a) and (b) are for MLPs (linear layers and activations); a model with other layers (a CNN:
 * --in C:H:W for images) runs (c) alone, on random images, its convolutions through oneDNN or,
 * with --convolutions im2col, the engine's own im2col and GEMMs ([run] convolutions).
 * One key=value line per measurement, then a human summary ('#'). The machine may be shared,
 * so every timing is the best of several windows. */
#include <getopt.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "datasets/dataset.h"
#include "engine/backend_cpu.h"
#include "engine/trainer.h"
#include "bench/step_gemms.h"

#define MIN_S 0.3 /* least seconds of each timed loop, so short ops average over many calls */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *randoms(size_t n)
{
    float *p = aligned_alloc(64, (n * sizeof *p + 63) & ~(size_t)63);
    for (size_t i = 0; p && i < n; i++)
        p[i] = (float)rand() / RAND_MAX - 0.5f;
    return p;
}

static void run_gemm(const gemm *g)
{
    /* Row-major: op(A) is m x k, op(B) is k x n, C is m x n. */
    dnnl_sgemm(g->ta ? 'T' : 'N', g->tb ? 'T' : 'N', g->m, g->n, g->k, 1.0f, g->a,
               g->ta ? g->m : g->k, g->b, g->tb ? g->k : g->n, g->beta, g->c, g->n);
}

/* The step's GEMMs with random host operands. */
static int host_step_gemms(const dp_model *m, int batch, gemm *out)
{
    int n = step_gemms(m, batch, out);
    for (int i = 0; i < n; i++) {
        out[i].a = randoms((size_t)out[i].m * out[i].k);
        out[i].b = randoms((size_t)out[i].k * out[i].n);
        out[i].c = randoms((size_t)out[i].m * out[i].n);
    }
    return n;
}

/* Seconds per pass over g[0..n): after a warm-up window, the best of 3 windows of MIN_S / 3,
 * as other work on a shared machine only ever makes a window slower. */
static double time_gemms(const gemm *g, int n)
{
    double best = 1e30;
    for (int w = -1; w < 3; w++) {
        long reps = 0;
        double t0 = now_s(), t;
        do {
            for (int i = 0; i < n; i++)
                run_gemm(&g[i]);
            reps++;
        } while ((t = now_s() - t0) < MIN_S / 3);
        if (w >= 0 && t / (double)reps < best)
            best = t / (double)reps;
    }
    return best;
}

enum { K_FILL, K_SUM, K_ACTF, K_ACTB, K_XENT, K_OPT, K_LOAD, K_N };
static const char *const k_name[K_N] = { "bias_rows", "sum_rows", "act_forward", "act_backward",
                                         "softmax_xent", "sgd_step", "loader_upload" };
#define TIMED(k, call) do { double t_ = now_s(); call; sec[k] += now_s() - t_; } while (0)

/* Seconds per step of each kind of non-GEMM work, every op run alone on the step's sizes:
 * where the profile's kernel time goes. */
static void time_kernels(const dp_model *m, int batch, double momentum, const dp_dataset *ds,
                         int threads, double sec[K_N])
{
    dp_device d;
    dp_err err;
    dp_loader ld;
    memset(sec, 0, K_N * sizeof *sec);
    if (dp_cpu_device_init(&d, 1, threads, &err) < 0)
        return;
    dp_loader_init(&ld, ds, batch, true, 1, &err);
    const dp_backend *be = d.be;
    size_t wide = (size_t)m->in_features, np = m->n_params;
    for (int i = 0; i < m->n_layers; i++)
        wide = (size_t)m->layers[i].out > wide ? (size_t)m->layers[i].out : wide;
    float *x = randoms(batch * wide), *y = randoms(batch * wide), *dy = randoms(batch * wide);
    float *bx = randoms(batch * wide), *p = randoms(np), *g = randoms(np), *buf = calloc(np, 4);
    int32_t *labels = calloc((size_t)batch, 4), *by = calloc((size_t)batch, 4);
    float stats[3] = { 0 };
    dp_sgd_args sa = { .lr = 0.01f, .momentum = (float)momentum };
    long reps = 0;
    double t0 = now_s();
    do {
        TIMED(K_LOAD, dp_loader_next(&ld, bx, by, NULL);
              be->upload(&d, x, bx, (size_t)batch * m->in_features * 4));
        for (int i = 0; i < m->n_layers; i++) {
            const dp_layer *l = &m->layers[i];
            size_t n = (size_t)batch * l->out;
            dp_act act = l->ops == &dp_layer_gelu ? DP_ACT_GELU
                         : l->ops == &dp_layer_tanh ? DP_ACT_TANH : DP_ACT_RELU;
            if (l->ops == &dp_layer_linear) {
                /* in = 0: the bias rows alone, without the GEMM */
                TIMED(K_FILL, be->linear(&d, batch, l->out, 0, x, p, p, y, false));
                TIMED(K_SUM, be->sum_rows(&d, g, dy, batch, l->out, 0));
            } else {
                TIMED(K_ACTF, be->act_forward(&d, act, 0.0f, y, x, n));
                TIMED(K_ACTB, be->act_backward(&d, act, 0.0f, y, x, y, dy, n));
            }
        }
        TIMED(K_XENT, be->softmax_xent(&d, x, labels, batch, m->classes, 1.0f / batch, y, stats));
        TIMED(K_OPT, be->sgd_step(&d, p, g, momentum != 0 ? buf : NULL, np, sa));
        reps++;
    } while (now_s() - t0 < MIN_S);
    for (int k = 0; k < K_N; k++)
        sec[k] /= (double)reps;
    dp_loader_free(&ld);
    free(x), free(y), free(dy), free(bx), free(p), free(g), free(buf), free(labels), free(by);
    dp_cpu_device_destroy(&d);
}

/* Whether every layer is linear or an activation: the models (a) and (b) know. */
static bool is_mlp(const dp_model *m)
{
    for (int i = 0; i < m->n_layers; i++) {
        const dp_layer_ops *o = m->layers[i].ops;
        if (o != &dp_layer_linear && o != &dp_layer_relu && o != &dp_layer_gelu &&
            o != &dp_layer_tanh)
            return false;
    }
    return true;
}

/* --in: N features, or C:H:W images. */
static bool parse_in(const char *text, dp_shape *s)
{
    char end;
    *s = (dp_shape){ 1, { 0 } };
    if (sscanf(text, "%d%c", &s->d[0], &end) == 1)
        return s->d[0] >= 1;
    *s = (dp_shape){ 3, { 0 } };
    return sscanf(text, "%d:%d:%d%c", &s->d[0], &s->d[1], &s->d[2], &end) == 3 &&
           s->d[0] >= 1 && s->d[1] >= 1 && s->d[2] >= 1;
}

int main(int argc, char **argv)
{
    const char *layers = "linear:1024, relu, linear:1024, relu, linear:10", *in_text = "784";
    const char *convolutions = "library";
    int batch = 256, steps = 100, repeat = 3;
    int threads = dp_cpu_cores();
    double momentum = 0.9, lr = 0.01;
    static const struct option longs[] = {
        { "layers", 1, NULL, 'l' }, { "in", 1, NULL, 'i' }, { "batch", 1, NULL, 'b' },
        { "steps", 1, NULL, 's' }, { "repeat", 1, NULL, 'R' }, { "threads", 1, NULL, 't' },
        { "momentum", 1, NULL, 'm' }, { "lr", 1, NULL, 'r' },
        { "convolutions", 1, NULL, 'c' }, { NULL, 0, NULL, 0 },
    };
    for (int ch; (ch = getopt_long(argc, argv, "", longs, NULL)) != -1;) {
        switch (ch) {
        case 'l': layers = optarg; break;
        case 'i': in_text = optarg; break;
        case 'b': batch = atoi(optarg); break;
        case 's': steps = atoi(optarg); break;
        case 'R': repeat = atoi(optarg); break;
        case 't': threads = atoi(optarg); break;
        case 'm': momentum = atof(optarg); break;
        case 'r': lr = atof(optarg); break;
        case 'c': convolutions = optarg; break;
        default:
            fputs("usage: dpmptop-bench [--layers LIST] [--in N|C:H:W] [--batch N] [--steps N] "
                  "[--repeat N] [--threads N] [--momentum M] [--lr LR] "
                  "[--convolutions library|im2col]\n", stderr);
            return 2;
        }
    }
    dp_shape in;
    if (!parse_in(in_text, &in)) {
        fprintf(stderr, "dpmptop-bench: --in %s: write N features or C:H:W images, each >= 1\n",
                in_text);
        return 2;
    }
    if (batch < 1 || steps < 1 || repeat < 1 || threads < 1) {
        fputs("dpmptop-bench: --batch, --steps, --repeat, --threads must be >= 1\n", stderr);
        return 2;
    }
    if (strcmp(convolutions, "library") != 0 && strcmp(convolutions, "im2col") != 0) {
        fprintf(stderr, "dpmptop-bench: --convolutions %s: write library or im2col\n",
                convolutions);
        return 2;
    }
    int warmup = steps / 10 > 5 ? steps / 10 : 5;
    /* The data's classes are the width of the last linear layer, as the model demands. */
    const char *last = NULL;
    for (const char *s = layers; (s = strstr(s, "linear:")); s++)
        last = s;
    int classes = last ? atoi(last + 7) : 0;
    dp_model m;
    dp_err err;
    if (dp_model_parse_shape(&m, layers, in, classes, &err) < 0) {
        fprintf(stderr, "dpmptop-bench: --layers: %s\n", err.msg);
        return 2;
    }
    bool mlp = is_mlp(&m);
    printf("config layers=\"%s\" in=%s classes=%d batch=%d steps=%d repeat=%d warmup=%d "
           "threads=%d momentum=%g lr=%g convolutions=%s params=%zu\n", layers, in_text, classes,
           batch, steps, repeat, warmup, threads, momentum, lr, convolutions, m.n_params);

    /* (a) the step's GEMMs through dnnl_sgemm alone, one by one and as one sequence. */
    omp_set_num_threads(threads);
    gemm g[3 * m.n_layers];
    int ng = mlp ? host_step_gemms(&m, batch, g) : 0;
    double step_flops = 0;
    for (int i = 0; i < ng; i++) {
        double s = time_gemms(&g[i], 1), f = 2.0 * g[i].m * g[i].n * g[i].k;
        step_flops += f;
        printf("gemm layer=%d op=%s m=%d n=%d k=%d ta=%d tb=%d us=%.2f gflops=%.2f\n", g[i].layer,
               g[i].op, g[i].m, g[i].n, g[i].k, g[i].ta, g[i].tb, 1e6 * s, f / s / 1e9);
    }
    double seq_s = mlp ? time_gemms(g, ng) : 0; /* timed again after (c): the better one kept */

    /* (b) the other kernels and the loader, alone. */
    dp_data_config dc = dp_data_defaults();
    dc.kind = DP_DATA_SYNTHETIC;
    dc.features = m.in_features;
    dc.classes = classes;
    dc.samples = 64L * batch; /* whole batches only: every step carries `batch` rows */
    dc.test_samples = batch;
    dp_dataset train, test;
    if (dp_data_load(&dc, 1, &train, &test, &err) < 0) {
        fprintf(stderr, "dpmptop-bench: %s\n", err.msg);
        return 1;
    }
    if (in.ndim == 3) { /* the synthetic task's inputs, read as images of that shape */
        dp_dataset *sets[] = { &train, &test };
        for (int i = 0; i < 2; i++)
            sets[i]->channels = in.d[0], sets[i]->height = in.d[1], sets[i]->width = in.d[2];
    }
    double ksec[K_N];
    if (mlp) {
        time_kernels(&m, batch, momentum, &train, threads, ksec);
        for (int k = 0; k < K_N; k++)
            printf("kernel op=%s us_per_step=%.2f\n", k_name[k], 1e6 * ksec[k]);
    }

    /* (c) training steps through the engine: `repeat` rounds of `steps`, the fastest kept. */
    dp_device_set *devices = dp_device_set_create(1, NULL, false, &err);
    if (!devices)
        goto failed;
    dp_device_set_devices(devices)[0].own_kernels = strcmp(convolutions, "im2col") == 0;
    dp_trainer_config tc = {
        .model = &m, .optim = dp_optim_defaults(), .batch = batch, .shuffle = true, .seed = 1,
        .total_steps = warmup + (long)repeat * steps, .on_nan = DP_NAN_STOP,
        .devices = devices, .plan = { .strategy = DP_STRATEGY_SINGLE }, .bucket_mb = 25,
        .team_threads = threads,
    };
    tc.optim.lr = lr;
    tc.optim.momentum = momentum;
    bool refused;
    dp_trainer *t = dp_trainer_create(&tc, &train, &test, NULL, &refused, &err);
    dp_step_report r;
    for (int i = 0; t && i < warmup; i++)
        if (dp_trainer_step(t, &r, &err) < 0)
            goto failed;
    if (!t)
        goto failed;
    dp_device *d = dp_trainer_device(t, 0);
    double wall = 1e30, gemm_s = 0, lib_s = 0, kern_s = 0, gflop = 0, lib_flop = 0;
    for (int round = 0; round < repeat; round++) {
        dp_cpu_profile p0 = dp_cpu_device_profile(d);
        double t0 = now_s();
        for (int i = 0; i < steps; i++)
            if (dp_trainer_step(t, &r, &err) < 0)
                goto failed;
        double w = (now_s() - t0) / steps;
        dp_cpu_profile p1 = dp_cpu_device_profile(d);
        printf("round n=%d samples_per_s=%.1f\n", round, batch / w);
        if (w < wall) {
            wall = w;
            gemm_s = (p1.gemm_s - p0.gemm_s) / steps;
            lib_s = (p1.library_s - p0.library_s) / steps;
            kern_s = (p1.kernel_s - p0.kernel_s) / steps;
            gflop = (p1.gemm_flops - p0.gemm_flops) / steps;
            lib_flop = (p1.library_flops - p0.library_flops) / steps;
        }
    }
    double over_s = wall - gemm_s - lib_s - kern_s;
    printf("train samples_per_s=%.1f step_us=%.2f gemm_us=%.2f library_us=%.2f kernel_us=%.2f "
           "overhead_us=%.2f library_frac=%.3f gemm_flops_per_step=%.0f "
           "library_flops_per_step=%.0f library_gflops=%.2f final_loss=%.4f",
           batch / wall, 1e6 * wall, 1e6 * gemm_s, 1e6 * lib_s, 1e6 * kern_s, 1e6 * over_s,
           lib_s / wall, gflop, lib_flop, lib_s > 0 ? lib_flop / lib_s / 1e9 : 0.0, r.loss);
    double plain = 0, eff = gflop / wall, inside = gflop / gemm_s;
    if (mlp) { /* the GEMMs' rate against plain SGEMM on the same shapes */
        double again = time_gemms(g, ng);
        seq_s = again < seq_s ? again : seq_s;
        plain = step_flops / seq_s;
        printf(" effective_gflops=%.2f effective_frac=%.3f gemm_only_gflops=%.2f "
               "gemm_only_frac=%.3f", eff / 1e9, eff / plain, inside / 1e9, inside / plain);
    }
    printf("\n");
    if (mlp)
        printf("sgemm gemms=%d flops_per_step=%.0f us_per_step=%.2f gflops=%.2f\n", ng,
               step_flops, 1e6 * seq_s, plain / 1e9);
    for (int i = 0; i < ng; i++)
        free(g[i].a), free(g[i].b), free(g[i].c);

    printf("# %s (in %s), batch %d, %d thread(s), convolutions %s\n", layers, in_text, batch,
           threads, convolutions);
    printf("# engine %.0f samples/s; step %.1f us = GEMM %.1f + library %.1f + kernels %.1f + "
           "overhead %.1f\n", batch / wall, 1e6 * wall, 1e6 * gemm_s, 1e6 * lib_s, 1e6 * kern_s,
           1e6 * over_s);
    if (lib_s > 0)
        printf("# the library's primitives %.0f%% of the step, %.1f GFLOP/s inside them\n",
               100 * lib_s / wall, lib_flop / lib_s / 1e9);
    if (mlp)
        printf("# plain SGEMM on the step's %d GEMMs %.1f GFLOP/s (%.1f us); GEMM rate over the "
               "step %.0f%% of it, inside the GEMMs %.0f%%\n", ng, plain / 1e9, 1e6 * seq_s,
               100 * eff / plain, 100 * inside / plain);
    dp_trainer_destroy(t);
    dp_device_set_destroy(devices);
    dp_model_free(&m);
    dp_dataset_free(&train);
    dp_dataset_free(&test);
    return 0;
failed:
    fprintf(stderr, "dpmptop-bench: %s\n", err.msg);
    return 1;
}
