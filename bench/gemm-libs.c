/* gemm-libs.c -- OpenBLAS's cblas_sgemm against oneDNN's dnnl_sgemm (the GEMM its matmul
 * primitive runs) on given shapes, with a given number of threads: whether the CPU backend's
 * GEMMs would gain from oneDNN (issue 21). Both libraries are the ones dpmptop links.
 *
 * Usage: bench/gemm-libs THREADS SHAPE...   SHAPE: NAME:TA:TB:M:N:K (row-major, op(A) M x K,
 * op(B) K x N), e.g. mlp-fwd:0:1:64:256:784
 * Prints, per shape, the best of a few timed runs of each (after a warm-up), in GFLOP/s, and
 * the ratio of their times. Each library runs its runs in a row (alternating them would time
 * one pool of threads waking while the other's still spin: OpenBLAS's threads and oneDNN's
 * OpenMP ones), and which goes first alternates from shape to shape. */
#include <cblas.h>
#include <omp.h>
#include <stdbool.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RUNS 7

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double run_openblas(int ta, int tb, int m, int n, int k, const float *a, const float *b,
                           float *c)
{
    double t0 = now_s();
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
                n, k, 1.0f, a, ta ? m : k, b, tb ? k : n, 0.0f, c, n);
    return now_s() - t0;
}

static double run_onednn(int ta, int tb, int m, int n, int k, const float *a, const float *b,
                         float *c)
{
    double t0 = now_s();
    if (dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, 1.0f, a, ta ? m : k, b, tb ? k : n,
                   0.0f, c, n) != dnnl_success) {
        fprintf(stderr, "gemm-libs: dnnl_sgemm failed on %dx%dx%d\n", m, n, k);
        exit(1);
    }
    return now_s() - t0;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    if (argc < 3 || threads < 1) {
        fprintf(stderr, "usage: gemm-libs THREADS NAME:TA:TB:M:N:K...\n");
        return 2;
    }
    openblas_set_num_threads(threads);
    omp_set_num_threads(threads);
    printf("%-16s %6s %6s %6s %10s %10s %7s\n", "shape", "m", "n", "k", "openblas", "onednn",
           "ratio");
    for (int i = 2; i < argc; i++) {
        char name[64];
        int ta, tb, m, n, k;
        if (sscanf(argv[i], "%63[^:]:%d:%d:%d:%d:%d", name, &ta, &tb, &m, &n, &k) != 6 ||
            m < 1 || n < 1 || k < 1) {
            fprintf(stderr, "gemm-libs: %s is not NAME:TA:TB:M:N:K\n", argv[i]);
            return 2;
        }
        float *a = malloc(sizeof(float) * (size_t)m * k), *b = malloc(sizeof(float) * (size_t)k * n);
        float *c = malloc(sizeof(float) * (size_t)m * n);
        if (!a || !b || !c) {
            fprintf(stderr, "gemm-libs: out of memory\n");
            return 1;
        }
        for (size_t j = 0; j < (size_t)m * k; j++)
            a[j] = (float)(j % 13) * 0.01f;
        for (size_t j = 0; j < (size_t)k * n; j++)
            b[j] = (float)(j % 7) * 0.02f;
        double best_blas = 1e30, best_dnnl = 1e30;
        for (int lib = 0; lib < 2; lib++) {
            bool blas = (lib + i) % 2 == 0;
            double *best = blas ? &best_blas : &best_dnnl;
            for (int r = 0; r <= RUNS; r++) { /* run 0: the warm-up (pool awake, memory touched) */
                double s = blas ? run_openblas(ta, tb, m, n, k, a, b, c)
                                : run_onednn(ta, tb, m, n, k, a, b, c);
                *best = r > 0 && s < *best ? s : *best;
            }
        }
        double flops = 2.0 * m * n * k;
        printf("%-16s %6d %6d %6d %10.2f %10.2f %7.2f\n", name, m, n, k, flops / best_blas / 1e9,
               flops / best_dnnl / 1e9, best_blas / best_dnnl);
        free(a);
        free(b);
        free(c);
    }
    return 0;
}
