/* idx.c -- the IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/):
 * two zero bytes, a type byte (0x08 = unsigned byte), a dimension count, then one big-endian
 * uint32 per dimension, then the data. Read through dp_data_read, so .gz and plain files both
 * work. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/dataset.h"

/* Refuse anything over 4 GiB of samples: no MNIST-family file comes near it, and it keeps a
 * hostile header from asking for absurd allocations. */
#define IDX_MAX_BYTES ((size_t)1 << 32)

/* Reads the first four bytes: the magic zeros, the type (unsigned bytes only) and the
 * dimension count, into out->ndim. */
static int read_magic(dp_data_file *f, const char *path, dp_idx *out, dp_err *err)
{
    uint8_t head[4];
    long n = dp_data_read(f, head, 4, err);
    if (n < 0)
        return -1;
    if (n == 0)
        return dp_fail(err, "%s: the file is empty; expected an MNIST-style images or labels "
                            "file",
                       path);
    if (n < 4 || head[0] != 0 || head[1] != 0)
        return dp_fail(err, "%s: not an IDX file (bad magic number); expected an MNIST-style "
                            "images or labels file, plain or .gz",
                       path);
    if (head[2] != 0x08)
        return dp_fail(err, "%s: IDX data type 0x%02x is not supported; only unsigned bytes "
                            "(0x08), as in MNIST and Fashion-MNIST",
                       path, head[2]);
    if (head[3] < 1 || head[3] > 4)
        return dp_fail(err, "%s: IDX header gives %d dimensions; expected 1 to 4", path,
                       head[3]);
    out->ndim = head[3];
    return 0;
}

/* Reads the dimensions (big-endian uint32s) into out->dims and their product into
 * out->count, refusing a 0 and a product over IDX_MAX_BYTES. */
static int read_dims(dp_data_file *f, const char *path, dp_idx *out, dp_err *err)
{
    uint8_t dims[16];
    long n = dp_data_read(f, dims, 4u * (unsigned)out->ndim, err);
    if (n < 0)
        return -1;
    if (n != 4 * out->ndim)
        return dp_fail(err, "%s: truncated IDX header", path);
    size_t count = 1;
    for (int i = 0; i < out->ndim; i++) {
        const uint8_t *b = dims + 4 * i;
        out->dims[i] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        if (out->dims[i] == 0)
            return dp_fail(err, "%s: IDX dimension %d is 0", path, i);
        if (out->dims[i] > IDX_MAX_BYTES / count)
            return dp_fail(err, "%s: IDX dimensions multiply to more than %zu bytes; the "
                                "header is corrupt",
                           path, IDX_MAX_BYTES);
        count *= out->dims[i];
    }
    out->count = count;
    return 0;
}

/* Reads the out->count data bytes into out->data, and checks that nothing follows them. The
 * buffer grows with the data that actually arrives (a gzip stream's length is not known
 * before it is read), so a header that lies costs no more memory than the file. */
static int read_data(dp_data_file *f, const char *path, dp_idx *out, dp_err *err)
{
    size_t count = out->count;
    size_t cap = count < ((size_t)1 << 20) ? count : ((size_t)1 << 20), got = 0;
    long n;
    for (;;) {
        uint8_t *grown = realloc(out->data, cap);
        if (!grown)
            return dp_fail(err, "%s: out of memory for %zu bytes of IDX data", path, cap);
        out->data = grown;
        n = dp_data_read(f, out->data + got, cap - got, err);
        if (n < 0)
            return -1;
        got += (size_t)n;
        if (got < cap || cap == count)
            break;
        cap = cap > count / 2 ? count : 2 * cap;
    }
    if (got < count)
        return dp_fail(err, "%s: truncated: the header announces %zu data bytes but the file "
                            "holds %zu; download the file again",
                       path, count, got);
    uint8_t extra;
    n = dp_data_read(f, &extra, 1, err); /* 0 also means a gzip stream ended intact */
    if (n < 0)
        return -1;
    if (n != 0)
        return dp_fail(err, "%s: the file is longer than its IDX header announces (%zu data "
                            "bytes)",
                       path, count);
    return 0;
}

int dp_idx_read(const char *path, dp_idx *out, dp_err *err)
{
    memset(out, 0, sizeof *out);
    dp_data_file *f = dp_data_open(path, err);
    if (!f)
        return -1;
    if (read_magic(f, path, out, err) < 0 || read_dims(f, path, out, err) < 0 ||
        read_data(f, path, out, err) < 0) {
        dp_data_close(f);
        dp_idx_free(out);
        return -1;
    }
    dp_data_close(f);
    return 0;
}

void dp_idx_free(dp_idx *idx)
{
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}

/* Checks that img holds images and lab as many labels, of sizes dpmptop can index. */
static int check_split(const dp_idx *img, const dp_idx *lab, const char *images_path,
                       const char *labels_path, dp_err *err)
{
    if (img->ndim != 3)
        return dp_fail(err, "%s: expected images (3 dimensions: count, rows, columns), found "
                            "%d dimensions",
                       images_path, img->ndim);
    if (lab->ndim != 1)
        return dp_fail(err, "%s: expected labels (1 dimension), found %d dimensions",
                       labels_path, lab->ndim);
    if (img->dims[0] != lab->dims[0])
        return dp_fail(err, "%s holds %u images but %s holds %u labels", images_path,
                       img->dims[0], labels_path, lab->dims[0]);
    if (img->dims[0] > INT32_MAX) /* sample indices are int32 */
        return dp_fail(err, "%s: %u images are more than dpmptop reads (%d)", images_path,
                       img->dims[0], INT32_MAX);
    if ((size_t)img->dims[1] * img->dims[2] > INT_MAX)
        return dp_fail(err, "%s: images of %ux%u are too large", images_path, img->dims[1],
                       img->dims[2]);
    return 0;
}

/* Fills d from checked images and labels: pixels scaled to [0, 1], classes from the largest
 * label. */
static int fill_split(dp_dataset *d, const dp_idx *img, const dp_idx *lab, const char *name,
                      const char *images_path, dp_err *err)
{
    snprintf(d->name, sizeof d->name, "%s", name);
    d->n = img->dims[0];
    d->channels = 1;
    d->height = (int)img->dims[1];
    d->width = (int)img->dims[2];
    d->features = d->height * d->width;
    d->x = malloc(img->count * sizeof *d->x);
    d->y = malloc((size_t)d->n * sizeof *d->y);
    if (!d->x || !d->y)
        return dp_fail(err, "out of memory loading %s", images_path);
    for (size_t i = 0; i < img->count; i++)
        d->x[i] = (float)img->data[i] / 255.0f; /* torchvision's ToTensor */
    int max_label = 0;
    for (long i = 0; i < d->n; i++) {
        d->y[i] = lab->data[i];
        if (d->y[i] > max_label)
            max_label = d->y[i];
    }
    d->classes = max_label + 1;
    d->targets = 1;
    return 0;
}

int dp_idx_load_split(const char *images_path, const char *labels_path, const char *name,
                      dp_dataset *d, dp_err *err)
{
    memset(d, 0, sizeof *d);
    dp_idx img, lab;
    if (dp_idx_read(images_path, &img, err) < 0)
        return -1;
    if (dp_idx_read(labels_path, &lab, err) < 0) {
        dp_idx_free(&img);
        return -1;
    }
    int rc = -1;
    if (check_split(&img, &lab, images_path, labels_path, err) == 0 &&
        fill_split(d, &img, &lab, name, images_path, err) == 0)
        rc = 0;
    dp_idx_free(&img);
    dp_idx_free(&lab);
    if (rc < 0)
        dp_dataset_free(d);
    return rc;
}
