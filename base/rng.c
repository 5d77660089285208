/* rng.c -- SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, passes BigCrush. */
#include "base/rng.h"

#include <math.h>

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

dp_rng dp_rng_stream(uint64_t seed, uint64_t purpose, uint64_t index)
{
    dp_rng r = { mix64(mix64(mix64(seed) ^ purpose) + index) };
    return r;
}

uint64_t dp_rng_next(dp_rng *r)
{
    r->state += 0x9e3779b97f4a7c15ULL;
    return mix64(r->state);
}

double dp_rng_uniform(dp_rng *r)
{
    return (double)(dp_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t dp_rng_below(dp_rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* reject the uneven tail */
    uint64_t x;
    do {
        x = dp_rng_next(r);
    } while (x >= limit);
    return x % n;
}

double dp_rng_normal(dp_rng *r)
{
    double u1 = 1.0 - dp_rng_uniform(r); /* (0, 1], safe for log */
    double u2 = dp_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t dp_fnv1a(uint64_t h, const void *bytes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)bytes)[i]) * 1099511628211u;
    return h;
}
