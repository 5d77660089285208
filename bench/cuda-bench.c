/* cuda-bench.c -- how close a training step on a GPU comes to plain cuBLAS: (a) cublasSgemm
 * alone (TF32 unless --fp32) on exactly the GEMMs of one step (bench/step_gemms.h), timed with
 * events; (b) training steps through the engine on cuda:0, with the device's GEMMs timed by
 * events (dp_cuda_set_profiling). Prints key=value lines, then a summary ('#'): the engine's
 * GEMM time against plain cuBLAS's, and the GEMM rate over the whole step. Every timing is the
 * best of several rounds. Exit 77 where no GPU is usable. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dpmptop-config.h"

#ifndef HAVE_CUDA
int main(void)
{
    puts("SKIP: this build has no CUDA backend");
    return 77;
}
#else

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "bench/step_gemms.h"
#include "datasets/dataset.h"
#include "engine/backend_cuda.h"
#include "engine/trainer.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A device buffer of n random floats in [-0.5, 0.5). */
static float *device_randoms(size_t n)
{
    float *h = malloc(n * sizeof *h), *d = NULL;
    for (size_t i = 0; h && i < n; i++)
        h[i] = (float)rand() / RAND_MAX - 0.5f;
    if (!h || cudaMalloc((void **)&d, n * sizeof *d) != cudaSuccess ||
        cudaMemcpy(d, h, n * sizeof *d, cudaMemcpyHostToDevice) != cudaSuccess)
        d = NULL;
    free(h);
    return d;
}

/* Seconds per pass over the step's GEMMs through plain cublasSgemm: the best of 5 rounds of
 * `reps` passes after one warm-up pass. */
static double time_plain(cublasHandle_t h, const gemm *g, int n, int reps)
{
    cudaEvent_t start, end;
    cudaEventCreate(&start);
    cudaEventCreate(&end);
    double best = 1e30;
    for (int round = -1; round < 5; round++) {
        cudaEventRecord(start, 0);
        for (int r = 0; r < (round < 0 ? 1 : reps); r++)
            for (int i = 0; i < n; i++) { /* row-major, so the operands swap */
                float one = 1.0f;
                cublasSgemm(h, g[i].tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                            g[i].ta ? CUBLAS_OP_T : CUBLAS_OP_N, g[i].n, g[i].m, g[i].k, &one,
                            g[i].b, g[i].tb ? g[i].k : g[i].n, g[i].a, g[i].ta ? g[i].m : g[i].k,
                            &g[i].beta, g[i].c, g[i].n);
            }
        cudaEventRecord(end, 0);
        cudaEventSynchronize(end);
        float ms = 0;
        cudaEventElapsedTime(&ms, start, end);
        if (round >= 0 && 1e-3 * ms / reps < best)
            best = 1e-3 * ms / reps;
    }
    cudaEventDestroy(start);
    cudaEventDestroy(end);
    return best;
}

int main(int argc, char **argv)
{
    const char *layers = "linear:4096, relu, linear:4096, relu, linear:4096, relu, linear:10";
    int in = 784, batch = 4096, steps = 20, repeat = 3;
    bool tf32 = true;
    static const struct option longs[] = {
        { "layers", 1, NULL, 'l' }, { "in", 1, NULL, 'i' }, { "batch", 1, NULL, 'b' },
        { "steps", 1, NULL, 's' }, { "repeat", 1, NULL, 'R' }, { "fp32", 0, NULL, 'f' },
        { NULL, 0, NULL, 0 },
    };
    for (int ch; (ch = getopt_long(argc, argv, "", longs, NULL)) != -1;) {
        switch (ch) {
        case 'l': layers = optarg; break;
        case 'i': in = atoi(optarg); break;
        case 'b': batch = atoi(optarg); break;
        case 's': steps = atoi(optarg); break;
        case 'R': repeat = atoi(optarg); break;
        case 'f': tf32 = false; break;
        default:
            fputs("usage: cuda-bench [--layers LIST] [--in N] [--batch N] [--steps N] "
                  "[--repeat N] [--fp32]\n", stderr);
            return 2;
        }
    }
    if (in < 1 || batch < 1 || steps < 1 || repeat < 1) {
        fputs("cuda-bench: --in, --batch, --steps, --repeat must be >= 1\n", stderr);
        return 2;
    }
    dp_err err;
    if (dp_cuda_device_count(&err) < 0) {
        printf("SKIP: %s\n", err.msg);
        return 77;
    }
    const char *last = NULL; /* the data's classes: the width of the last linear layer */
    for (const char *s = layers; (s = strstr(s, "linear:")); s++)
        last = s;
    int classes = last ? atoi(last + 7) : 0;
    dp_model m;
    if (dp_model_parse(&m, layers, in, classes, &err) < 0) {
        fprintf(stderr, "cuda-bench: --layers: %s\n", err.msg);
        return 2;
    }
    printf("config layers=\"%s\" in=%d batch=%d steps=%d repeat=%d precision=%s params=%zu\n",
           layers, in, batch, steps, repeat, tf32 ? "tf32" : "fp32", m.n_params);

    /* (a) plain cuBLAS on the step's GEMMs */
    cudaSetDevice(0);
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
        fputs("cuda-bench: cublasCreate failed\n", stderr);
        return 1;
    }
    cublasSetMathMode(h, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
    gemm g[3 * m.n_layers];
    int ng = step_gemms(&m, batch, g);
    double flops = 0;
    for (int i = 0; i < ng; i++) {
        g[i].a = device_randoms((size_t)g[i].m * g[i].k);
        g[i].b = device_randoms((size_t)g[i].k * g[i].n);
        g[i].c = device_randoms((size_t)g[i].m * g[i].n);
        if (!g[i].a || !g[i].b || !g[i].c) {
            fputs("cuda-bench: out of GPU memory for the GEMM operands\n", stderr);
            return 1;
        }
        double s = time_plain(h, &g[i], 1, 10), f = 2.0 * g[i].m * g[i].n * g[i].k;
        flops += f;
        printf("gemm layer=%d op=%s m=%d n=%d k=%d ta=%d tb=%d us=%.2f tflops=%.2f\n", g[i].layer,
               g[i].op, g[i].m, g[i].n, g[i].k, g[i].ta, g[i].tb, 1e6 * s, f / s / 1e12);
    }
    double plain_s = time_plain(h, g, ng, 10);
    for (int i = 0; i < ng; i++)
        cudaFree(g[i].a), cudaFree(g[i].b), cudaFree(g[i].c);
    cublasDestroy(h);
    printf("cublas gemms=%d flops_per_step=%.0f us_per_step=%.2f tflops=%.2f\n", ng, flops,
           1e6 * plain_s, flops / plain_s / 1e12);

    /* (b) steps through the engine */
    dp_data_config dc = dp_data_defaults();
    dc.kind = DP_DATA_SYNTHETIC;
    dc.features = in;
    dc.classes = classes;
    dc.samples = 16L * batch; /* whole batches only */
    dc.test_samples = batch;
    dp_dataset train, test;
    if (dp_data_load(&dc, 1, &train, &test, &err) < 0) {
        fprintf(stderr, "cuda-bench: %s\n", err.msg);
        return 1;
    }
    int warmup = 10;
    dp_device_spec spec = { .cuda = true, .ordinal = 0 };
    dp_device_set *devices = dp_device_set_create(1, &spec, tf32, &err);
    if (!devices)
        goto failed;
    dp_trainer_config tc = {
        .model = &m, .optim = dp_optim_defaults(), .batch = batch, .shuffle = true, .seed = 1,
        .total_steps = warmup + (long)repeat * steps, .on_nan = DP_NAN_STOP,
        .devices = devices, .plan = { .strategy = DP_STRATEGY_SINGLE }, .bucket_mb = 25,
    };
    tc.optim.momentum = 0.9;
    bool refused;
    dp_step_report r;
    dp_trainer *t = dp_trainer_create(&tc, &train, &test, NULL, &refused, &err);
    for (int i = 0; t && i < warmup; i++)
        if (dp_trainer_step(t, &r, &err) < 0)
            goto failed;
    if (!t)
        goto failed;
    dp_device *d = dp_trainer_device(t, 0);
    dp_cuda_set_profiling(d, true);
    double wall = 1e30, gemm_s = 0, gemm_flops = 0;
    for (int round = 0; round < repeat; round++) {
        dp_cuda_profile p0 = dp_cuda_device_profile(d);
        double t0 = now_s();
        for (int i = 0; i < steps; i++)
            if (dp_trainer_step(t, &r, &err) < 0)
                goto failed;
        double w = (now_s() - t0) / steps;
        dp_cuda_profile p1 = dp_cuda_device_profile(d);
        printf("round n=%d samples_per_s=%.1f\n", round, batch / w);
        if (w < wall) {
            wall = w;
            gemm_s = (p1.gemm_s - p0.gemm_s) / steps;
            gemm_flops = (p1.gemm_flops - p0.gemm_flops) / steps;
        }
    }
    double plain_rate = flops / plain_s;
    dp_cuda_print_tuning(d, stdout);
    printf("train samples_per_s=%.1f step_us=%.2f gemm_us=%.2f gemm_flops_per_step=%.0f "
           "gemm_tflops=%.2f gemm_frac=%.3f step_frac=%.3f final_loss=%.4f\n",
           batch / wall, 1e6 * wall, 1e6 * gemm_s, gemm_flops, gemm_flops / gemm_s / 1e12,
           plain_s / gemm_s, gemm_flops / wall / plain_rate, r.loss);
    printf("# %s (in %d), batch %d, %s: plain cuBLAS on the step's %d GEMMs %.1f TFLOP/s "
           "(%.1f us)\n", layers, in, batch, tf32 ? "TF32" : "fp32", ng, plain_rate / 1e12,
           1e6 * plain_s);
    printf("# engine %.0f samples/s; step %.1f us, of which GEMMs %.1f us\n", batch / wall,
           1e6 * wall, 1e6 * gemm_s);
    printf("# the engine's GEMMs run at %.0f%% of plain cuBLAS's rate; over the whole step, "
           "%.0f%%\n", 100 * plain_s / gemm_s, 100 * gemm_flops / wall / plain_rate);
    dp_trainer_destroy(t);
    dp_device_set_destroy(devices);
    dp_model_free(&m);
    dp_dataset_free(&train);
    dp_dataset_free(&test);
    return 0;
failed:
    fprintf(stderr, "cuda-bench: %s\n", err.msg);
    return 1;
}
#endif
