/* onednn.h -- the CPU backend's GEMMs, convolutions and pooling through oneDNN (private to
 * backend_cpu.c): a device's primitives, made once per shape and thread count and kept.
 *
 * A dp_onednn belongs to one CPU device and is used by the thread that drives the device at
 * the time (a worker; the hand-off between plans is the team's start and stop). Tensors are
 * NCHW, weights OIHW, as the engine keeps them. */
#ifndef DP_ONEDNN_H
#define DP_ONEDNN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "engine/kernels.h"

typedef struct dp_onednn dp_onednn;

dp_onednn *dp_onednn_create(dp_err *err);
void dp_onednn_destroy(dp_onednn *o);
/* The first failure of a primitive (its creation or its run), or NULL. */
const char *dp_onednn_error(const dp_onednn *o);
/* How many of o's primitives made so far are oneDNN's slow reference implementation (a
 * convolution falls back to the engine's layouts rather than take it). */
int dp_onednn_references(const dp_onednn *o);
/* "oneDNN 2.6.3 (OpenMP, AVX2)": the library loaded and the instructions its kernels use. */
const char *dp_onednn_version(void);

/* The backend's conv_forward, conv_backward_data and conv_backward_weights (backend.h), with
 * `threads` OpenMP threads on the calling thread. */
void dp_onednn_conv_forward(dp_onednn *o, int threads, dp_conv_geom g, int oc, int n, float *y,
                            const float *x, const float *w, const float *b);
void dp_onednn_conv_backward_data(dp_onednn *o, int threads, dp_conv_geom g, int oc, int n,
                                  float *dx, const float *dy, const float *w);
void dp_onednn_conv_backward_weights(dp_onednn *o, int threads, dp_conv_geom g, int oc, int n,
                                     float *dw, float *db, const float *x, const float *dy);
/* C[m, n] = alpha op(A) op(B) + beta C, row-major (cblas_sgemm's arguments), through
 * dnnl_sgemm with `threads` OpenMP threads on the calling thread; a failure is o's error (o
 * NULL: not recorded). */
void dp_onednn_sgemm(dp_onednn *o, int threads, int trans_a, int trans_b, int m, int n, int k,
                     float alpha, const float *a, int lda, const float *b, int ldb, float beta,
                     float *c, int ldc);

/* Average pooling of planes [planes, g.h, g.w] (no padding), and its gradient. (Max pooling
 * stays the backend's own: oneDNN's drops a NaN that PyTorch's, and the engine's, keep.) */
void dp_onednn_avgpool_forward(dp_onednn *o, int threads, float *y, const float *x, int planes,
                               dp_conv_geom g);
void dp_onednn_avgpool_backward(dp_onednn *o, int threads, float *dx, const float *dy,
                                int planes, dp_conv_geom g);

#endif
