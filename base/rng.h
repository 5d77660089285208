/* rng.h -- the engine's seeded random numbers (SplitMix64 streams).
 *
 * Every random draw in dpmptop (initial weights, shuffles, synthetic data) comes from a stream
 * named by (seed, purpose, index), so a result never depends on the order in which threads or
 * layers happen to draw. */
#ifndef DP_RNG_H
#define DP_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct dp_rng {
    uint64_t state;
} dp_rng;

/* Purposes: keep each kind of draw on its own stream. */
enum { DP_RNG_INIT = 1, DP_RNG_SHUFFLE = 2, DP_RNG_DATA = 3, DP_RNG_TEACHER = 4 };

/* A stream for (seed, purpose, index). */
dp_rng dp_rng_stream(uint64_t seed, uint64_t purpose, uint64_t index);
/* The next 64 random bits. */
uint64_t dp_rng_next(dp_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double dp_rng_uniform(dp_rng *r);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t dp_rng_below(dp_rng *r, uint64_t n);
/* Standard normal (Box-Muller). */
double dp_rng_normal(dp_rng *r);

/* FNV-1a of bytes[n], continuing from h (DP_FNV_START for a fresh one): the fingerprints of
 * texts and data that checkpoints and processes compare. */
#define DP_FNV_START 14695981039346656037u
uint64_t dp_fnv1a(uint64_t h, const void *bytes, size_t n);

#endif
