/* cifar.c -- CIFAR-10 in its binary version (https://www.cs.toronto.edu/~kriz/cifar.html):
 * each batch file is a run of records, a label byte (0 to 9) then 3072 pixel bytes: the red,
 * green and blue planes of a 32x32 image, each row-major. data_batch_1.bin to data_batch_5.bin
 * are the training set, test_batch.bin the test set. Pixels are scaled to [0, 1] as
 * torchvision's ToTensor, in the same channel-major (CHW) order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/dataset.h"
#include "base/fileio.h"

#define SIDE 32
#define PIXELS (3 * SIDE * SIDE)
#define RECORD (1 + PIXELS)
#define BATCH_MAX ((size_t)1 << 30) /* a batch file of the real set is 30 MB */

int dp_cifar_parse_batch(const unsigned char *buf, size_t len, const char *what,
                         dp_dataset *d, dp_err *err)
{
    if (len == 0 || len % RECORD)
        return dp_fail(err, "%s: %zu bytes is not a whole number of CIFAR-10 records (%d "
                            "bytes each); the file is truncated or not a CIFAR-10 binary batch",
                       what, len, RECORD);
    size_t records = len / RECORD;
    if (records > (size_t)INT32_MAX - (size_t)d->n)
        return dp_fail(err, "%s: more samples than dpmptop reads", what);
    for (size_t r = 0; r < records; r++)
        if (buf[r * RECORD] > 9)
            return dp_fail(err, "%s: record %zu has label %d; CIFAR-10's labels are 0 to 9", what,
                           r, buf[r * RECORD]);
    size_t n = (size_t)d->n + records;
    float *x = realloc(d->x, n * PIXELS * sizeof *x);
    if (x)
        d->x = x;
    int32_t *y = realloc(d->y, n * sizeof *y);
    if (y)
        d->y = y;
    if (!x || !y)
        return dp_fail(err, "%s: out of memory for %zu samples", what, n);
    for (size_t r = 0; r < records; r++) {
        const unsigned char *rec = buf + r * RECORD;
        float *px = d->x + ((size_t)d->n + r) * PIXELS;
        d->y[(size_t)d->n + r] = rec[0];
        for (int i = 0; i < PIXELS; i++)
            px[i] = (float)rec[1 + i] / 255.0f;
    }
    d->n = (long)n;
    d->channels = 3;
    d->height = d->width = SIDE;
    d->features = PIXELS;
    d->classes = 10;
    d->targets = 1;
    return 0;
}

/* Appends the batch file dir/name to d. */
static int read_batch(const char *dir, const char *name, dp_dataset *d, dp_err *err)
{
    char path[4200];
    unsigned char *buf;
    size_t len;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (dp_read_file(path, BATCH_MAX, &buf, &len, err) < 0)
        return -1;
    int rc = dp_cifar_parse_batch(buf, len, path, d, err);
    free(buf);
    return rc;
}

int dp_cifar_load(const char *dir, dp_dataset *train, dp_dataset *test, dp_err *err)
{
    memset(train, 0, sizeof *train);
    memset(test, 0, sizeof *test);
    char name[32];
    for (int b = 1; b <= 5; b++) {
        snprintf(name, sizeof name, "data_batch_%d.bin", b);
        if (read_batch(dir, name, train, err) < 0)
            goto fail;
    }
    if (read_batch(dir, "test_batch.bin", test, err) < 0)
        goto fail;
    snprintf(train->name, sizeof train->name, "cifar10 train");
    snprintf(test->name, sizeof test->name, "cifar10 test");
    return 0;
fail:
    dp_dataset_free(train);
    dp_dataset_free(test);
    return -1;
}
