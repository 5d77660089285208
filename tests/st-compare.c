/* st-compare.c -- compares two safetensors files that dpmptop wrote for the same model:
 *
 *     st-compare A B TOLERANCE     max |a - b| / max |a| over the F32 values <= TOLERANCE
 *     st-compare A B RTOL ATOL     every F32 value: |a - b| <= ATOL + RTOL |a| (torch.allclose,
 *                                  PyTorch DDP's parity criterion)
 *
 * The headers must be identical (same tensors, dtypes, shapes and offsets), and I64 tensors
 * (num_batches_tracked) equal. Prints the figure (the relative difference, or the largest
 * |a - b| / (ATOL + RTOL |a|)); the exit status is 0 when it is within the tolerance, 1 when
 * not, 2 when the files cannot be compared. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"

/* The next tensor of a header dpmptop wrote ("dtype":"F32",...,"data_offsets":[from,to]) from
 * *at on; false when there is none. */
static bool next_tensor(const char **at, bool *i64, size_t *from, size_t *to)
{
    const char *d = strstr(*at, "\"dtype\":\"");
    if (!d)
        return false;
    *i64 = strncmp(d + 9, "I64", 3) == 0;
    const char *o = strstr(d, "\"data_offsets\":[");
    if (!o || sscanf(o + 16, "%zu,%zu", from, to) != 2)
        return false;
    *at = o + 16;
    return true;
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: st-compare A B TOLERANCE | st-compare A B RTOL ATOL\n");
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
    if (na < 8 || na != nb || ha != hb || ha > na - 8 || memcmp(a, b, 8 + ha)) {
        fprintf(stderr, "st-compare: %s and %s do not hold the same tensors\n", argv[1],
                argv[2]);
        return 2;
    }
    char *header = strndup((const char *)a + 8, ha);
    const unsigned char *da = a + 8 + ha, *db = b + 8 + ha;
    size_t data = na - 8 - ha;
    bool allclose = argc == 5;
    double rtol = atof(argv[3]), atol = allclose ? atof(argv[4]) : 0.0;
    double max_abs = 0.0, max_diff = 0.0, worst = 0.0;
    const char *at = header;
    bool i64;
    size_t from, to;
    while (header && next_tensor(&at, &i64, &from, &to)) {
        if (from > to || to > data) {
            fprintf(stderr, "st-compare: a tensor's data lie outside the file\n");
            return 2;
        }
        if (i64) {
            if (memcmp(da + from, db + from, to - from)) {
                fprintf(stderr, "st-compare: an I64 tensor differs (bytes %zu-%zu)\n", from, to);
                return 1;
            }
            continue;
        }
        for (size_t i = from; i + 4 <= to; i += 4) {
            float x, y;
            memcpy(&x, da + i, 4);
            memcpy(&y, db + i, 4);
            if (!isfinite(x) || !isfinite(y)) {
                fprintf(stderr, "st-compare: a non-finite value at byte %zu\n", i);
                return 1;
            }
            double diff = fabs((double)x - (double)y);
            max_abs = fmax(max_abs, fabs(x));
            max_diff = fmax(max_diff, diff);
            worst = fmax(worst, diff / (atol + rtol * fabs(x)));
        }
    }
    double figure = allclose ? worst : (max_abs > 0 ? max_diff / max_abs : max_diff);
    printf("%.3g\n", figure);
    free(header);
    free(a);
    free(b);
    return figure <= (allclose ? 1.0 : rtol) ? 0 : 1;
}
