/* peak.h -- the devices' peak FLOP/s, for MFU (model FLOPs utilisation): a GPU's from a table
 * by model and precision; the CPU's measured once per machine (the SGEMM rate on all the cores
 * this process may use) and cached in $XDG_CACHE_HOME/dpmptop/cpu-peak (default
 * ~/.cache/dpmptop/), one line per machine:
 *
 *     FLOPS CORES MODEL NAME
 *
 * A cache that is a link, not a regular file, too large, or whose line for this machine is
 * garbage or out of range is not believed: the rate is measured again and the file replaced
 * (written beside it and renamed over it, so a link is replaced, never followed).
 * Any thread may call these; the cache's readers and writers are whole files. */
#ifndef DP_PEAK_H
#define DP_PEAK_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"

/* A believable CPU rate lies in [DP_PEAK_MIN, DP_PEAK_MAX] FLOP/s. */
#define DP_PEAK_MIN 1e6
#define DP_PEAK_MAX 1e16

/* A GPU's dense peak FLOP/s for float32 GEMMs: its TF32 tensor cores when tf32, else its FP32
 * cores; 0 (unknown) for a model the table lacks. `model` is CUDA's name ("NVIDIA H100 80GB
 * HBM3", "NVIDIA A100-SXM4-40GB"). */
double dp_peak_gpu_flops(const char *model, bool tf32);

/* The cache's directory: $XDG_CACHE_HOME/dpmptop when XDG_CACHE_HOME is an absolute path, else
 * $HOME/.cache/dpmptop; -1 when neither is known (no cache then). */
int dp_peak_cache_dir(char *buf, size_t size);

/* This machine's key: the CPU's model name (/proc/cpuinfo's first "model name", or "CPU") and
 * `cores`, as the cache's line has them ("2 AMD EPYC"). */
void dp_peak_cpu_key(char *buf, size_t size, int cores);

/* The rate cached for `key` in dir/cpu-peak; 0 when none is believable. */
double dp_peak_cache_load(const char *dir, const char *key);

/* Records `flops` for `key` in dir/cpu-peak, keeping the other machines' lines; makes dir (and
 * its parents, 0700) when missing. Returns -1 with err saying why when it cannot. */
int dp_peak_cache_store(const char *dir, const char *key, double flops, dp_err *err);

/* Measures the machine's rate in FLOP/s (0 when it cannot). */
typedef double (*dp_peak_measure_fn)(void);

/* The machine's CPU rate: the cache's for `key`, or, when it has none believable or `remeasure`,
 * measure()'s, stored (dir NULL: no cache, always measured). *measured says which. */
double dp_peak_cpu_flops(const char *dir, const char *key, bool remeasure,
                         dp_peak_measure_fn measure, bool *measured);

/* The MFU of `flops` done in `seconds` on a device of peak *peak FLOP/s: 0..1. A rate above
 * *peak raises *peak to it (and the MFU is 1); < 0 when the peak is unknown (*peak <= 0) or
 * seconds <= 0. */
double dp_peak_mfu(double flops, double seconds, double *peak);

#endif
