/* st-compare.c -- compares two safetensors files that dpmptop wrote for the same model:
 *
 *     st-compare A B TOLERANCE
 *
 * The headers must be identical (same tensors, shapes and offsets); then every tensor's
 * max |a - b| / max |a| is computed, the largest is printed, and the exit status is 0 when it
 * is at most TOLERANCE, 1 when not, 2 when the files cannot be compared. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: st-compare A B TOLERANCE\n");
        return 2;
    }
    unsigned char *a, *b;
    size_t na, nb;
    dp_err err;
    if (dp_read_file(argv[1], (size_t)1 << 32, &a, &na, &err) < 0 ||
        dp_read_file(argv[2], (size_t)1 << 32, &b, &nb, &err) < 0) {
        fprintf(stderr, "st-compare: %s\n", err.msg);
        return 2;
    }
    uint64_t ha = 0, hb = 0;
    for (int i = 7; na >= 8 && nb >= 8 && i >= 0; i--) {
        ha = ha << 8 | a[i];
        hb = hb << 8 | b[i];
    }
    if (na < 8 || na != nb || ha != hb || ha > na - 8 || memcmp(a, b, 8 + ha) ||
        (na - 8 - ha) % 4) {
        fprintf(stderr, "st-compare: %s and %s do not hold the same tensors\n", argv[1],
                argv[2]);
        return 2;
    }
    /* The data are F32 tensors back to back: max |a - b| / max |a| over all of them. */
    size_t n = (na - 8 - ha) / 4;
    const unsigned char *da = a + 8 + ha, *db = b + 8 + ha;
    double max_abs = 0.0, max_diff = 0.0;
    for (size_t i = 0; i < n; i++) {
        float x, y;
        memcpy(&x, da + 4 * i, 4);
        memcpy(&y, db + 4 * i, 4);
        if (!isfinite(x) || !isfinite(y)) {
            fprintf(stderr, "st-compare: a non-finite value at float %zu\n", i);
            return 1;
        }
        max_abs = fmax(max_abs, fabs(x));
        max_diff = fmax(max_diff, fabs((double)x - (double)y));
    }
    double rel = max_abs > 0 ? max_diff / max_abs : max_diff;
    printf("%.3g\n", rel);
    free(a);
    free(b);
    return rel <= atof(argv[3]) ? 0 : 1;
}
