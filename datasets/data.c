/* data.c -- choosing and loading a run's data from the [data] section. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "datasets/dataset.h"
#include "base/fileio.h"

static const char *const kind_names[] = {
    [DP_DATA_FASHION_MNIST] = "fashion-mnist", [DP_DATA_MNIST] = "mnist",
    [DP_DATA_IDX] = "idx",                     [DP_DATA_CIFAR10] = "cifar10",
    [DP_DATA_TEXT] = "text",                   [DP_DATA_SYNTHETIC] = "synthetic",
};

dp_shape dp_dataset_shape(const dp_dataset *d)
{
    if (d->channels > 0)
        return (dp_shape){ 3, { d->channels, d->height, d->width } };
    return (dp_shape){ 1, { d->features } };
}

dp_data_config dp_data_defaults(void)
{
    return (dp_data_config){
        .kind = DP_DATA_FASHION_MNIST,
        .batch = 64,
        .shuffle = true,
        .context = 128,
        .features = 10,
        .classes = 10,
        .samples = 60000,
        .test_samples = 10000,
    };
}

const char *dp_data_kind_name(dp_data_kind k)
{
    return kind_names[k];
}

int dp_data_kind_parse(const char *name)
{
    for (int k = 0; k < (int)(sizeof kind_names / sizeof *kind_names); k++)
        if (!strcmp(name, kind_names[k]))
            return k;
    return -1;
}

const char *dp_data_default_path(dp_data_kind k)
{
    switch (k) {
    case DP_DATA_FASHION_MNIST:
        return "/usr/share/datasets/fashion-mnist"; /* Debian's dataset-fashion-mnist */
    case DP_DATA_MNIST:
        return "/usr/share/datasets/mnist";
    default:
        return "";
    }
}

bool dp_data_reads_name(dp_data_kind k, const char *name)
{
    static const char *const idx[] = { "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte" };
    static const char *const cifar[] = { "data_batch_1.bin", "data_batch_2.bin",
                                         "data_batch_3.bin", "data_batch_4.bin",
                                         "data_batch_5.bin", "test_batch.bin" };
    switch (k) {
    case DP_DATA_TEXT: return true;
    case DP_DATA_CIFAR10:
        for (size_t i = 0; i < sizeof cifar / sizeof *cifar; i++)
            if (!strcmp(name, cifar[i]))
                return true;
        return false;
    case DP_DATA_SYNTHETIC: return false;
    default:
        for (size_t i = 0; i < sizeof idx / sizeof *idx; i++) {
            size_t n = strlen(idx[i]);
            if (!strncmp(name, idx[i], n) && (!name[n] || !strcmp(name + n, ".gz")))
                return true;
        }
        return false;
    }
}

/* dir/base, or dir/base.gz when only the compressed file is there. */
static void idx_path(char *out, size_t size, const char *dir, const char *base)
{
    struct stat st;
    snprintf(out, size, "%s/%s", dir, base);
    if (stat(out, &st) == 0)
        return;
    snprintf(out, size, "%s/%s.gz", dir, base);
}

static int load_idx_dir(const dp_data_config *c, dp_dataset *train, dp_dataset *test,
                        dp_err *err)
{
    const char *dir = c->path[0] ? c->path : dp_data_default_path(c->kind);
    const char *kind = dp_data_kind_name(c->kind);
    struct stat st;
    int missing = stat(dir, &st) != 0 ? errno : 0;
    if (missing || !S_ISDIR(st.st_mode)) {
        if (c->kind == DP_DATA_FASHION_MNIST && !c->path[0])
            return dp_fail(err, "%s: no Fashion-MNIST here; install Debian's "
                                "dataset-fashion-mnist or set data.path to a directory of IDX "
                                "files",
                           dir);
        return dp_fail(err, "%s: %s; data.path must name a directory holding "
                            "train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                            "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (plain or .gz)",
                       dir[0] ? dir : "(empty data.path)",
                       missing ? strerror(missing) : "not a directory");
    }
    char img[4200], lab[4200], name[64];
    idx_path(img, sizeof img, dir, "train-images-idx3-ubyte");
    idx_path(lab, sizeof lab, dir, "train-labels-idx1-ubyte");
    snprintf(name, sizeof name, "%s train", kind);
    if (dp_idx_load_split(img, lab, name, train, err) < 0)
        return -1;
    idx_path(img, sizeof img, dir, "t10k-images-idx3-ubyte");
    idx_path(lab, sizeof lab, dir, "t10k-labels-idx1-ubyte");
    snprintf(name, sizeof name, "%s test", kind);
    if (dp_idx_load_split(img, lab, name, test, err) < 0) {
        dp_dataset_free(train);
        return -1;
    }
    if (train->features != test->features) {
        dp_fail(err, "%s: training images are %dx%d but test images are %dx%d", dir,
                train->height, train->width, test->height, test->width);
        goto fail;
    }
    int classes = train->classes > test->classes ? train->classes : test->classes;
    if (c->kind != DP_DATA_IDX && classes > 10) {
        dp_fail(err, "%s: labels go up to %d but %s has 10 classes; use data.kind = idx for "
                     "other IDX data",
                dir, classes - 1, kind);
        goto fail;
    }
    if (c->kind != DP_DATA_IDX)
        classes = 10;
    train->classes = test->classes = classes;
    return 0;
fail:
    dp_dataset_free(train);
    dp_dataset_free(test);
    return -1;
}

int dp_data_load(const dp_data_config *c, uint64_t seed, dp_dataset *train, dp_dataset *test,
                 dp_err *err)
{
    int rc;
    switch (c->kind) {
    case DP_DATA_FASHION_MNIST:
    case DP_DATA_MNIST:
    case DP_DATA_IDX:
        rc = load_idx_dir(c, train, test, err);
        break;
    case DP_DATA_CIFAR10: {
        struct stat st;
        if (stat(c->path, &st) != 0 || !S_ISDIR(st.st_mode))
            return dp_fail(err, "%s: not a directory; data.kind = cifar10 needs data.path: "
                                "the directory of data_batch_1.bin .. data_batch_5.bin and "
                                "test_batch.bin (the CIFAR-10 binary version)",
                           c->path[0] ? c->path : "(empty data.path)");
        rc = dp_cifar_load(c->path, train, test, err);
        break;
    }
    case DP_DATA_TEXT:
        if (!c->path[0])
            return dp_fail(err, "data.kind = text needs data.path: a text file (plain or .gz), "
                                "for example one of /usr/share/games/fortunes from Debian's "
                                "fortunes package");
        rc = dp_text_load(c->path, c->context, train, test, err);
        break;
    case DP_DATA_SYNTHETIC:
    default:
        rc = dp_synthetic_make(c, seed, train, test, err);
        break;
    }
    if (rc < 0)
        return -1;
    if (c->limit > 0 && c->limit < train->n)
        train->n = c->limit; /* the first `limit` samples, in file order */
    /* A batch is held whole on the host and on every device: inputs and targets. */
    int widest = train->features > train->targets ? train->features : train->targets;
    if (c->batch < 1 || (uint64_t)c->batch > DP_DATA_MAX_VALUES / (uint64_t)widest) {
        if (c->batch < 1)
            dp_fail(err, "data.batch = %d: a batch needs at least 1 sample", c->batch);
        else
            dp_fail(err, "data.batch = %d samples of %d values each is more than the %" PRIu64
                         " values a batch may hold; lower data.batch",
                    c->batch, widest, DP_DATA_MAX_VALUES);
        dp_dataset_free(train);
        dp_dataset_free(test);
        return -1;
    }
    return 0;
}

/* ---- reading a data file ----
 * zlib's gzread is not used: it takes a stream that ends early for a short file (gzerror says
 * so only if asked) and skips whatever follows the last gzip member, so a truncated or damaged
 * download would train on what decoded. inflate reports both. */

struct dp_data_file {
    const char *path;
    int fd;
    bool gz;      /* gzip members, else the bytes as they are */
    bool eof;     /* read() has returned 0 */
    bool between; /* a gzip member ended: the file ends here or another member begins */
    z_stream z;   /* next_in and avail_in are the unread part of in[], in both modes */
    unsigned char in[1 << 16];
};

/* Moves the unread input to the front of in[] and reads more after it. */
static int refill(dp_data_file *f, dp_err *err)
{
    memmove(f->in, f->z.next_in, f->z.avail_in);
    f->z.next_in = f->in;
    ssize_t n;
    do
        n = read(f->fd, f->in + f->z.avail_in, sizeof f->in - f->z.avail_in);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return dp_fail(err, "%s: cannot read: %s", f->path, strerror(errno));
    f->eof = n == 0;
    f->z.avail_in += (uInt)n;
    return 0;
}

dp_data_file *dp_data_open(const char *path, dp_err *err)
{
    dp_data_file *f = calloc(1, sizeof *f);
    if (!f) {
        dp_fail(err, "%s: out of memory", path);
        return NULL;
    }
    f->path = path;
    f->z.next_in = f->in;
    f->fd = dp_open_input(path, err);
    if (f->fd < 0 || refill(f, err) < 0)
        goto fail;
    f->gz = f->z.avail_in >= 2 && f->in[0] == 0x1f && f->in[1] == 0x8b;
    if (f->gz && inflateInit2(&f->z, 15 + 16) != Z_OK) { /* 16: gzip wrapping only */
        dp_fail(err, "%s: out of memory for zlib", path);
        goto fail;
    }
    return f;
fail:
    if (f->fd >= 0)
        close(f->fd);
    free(f);
    return NULL;
}

long dp_data_read(dp_data_file *f, void *buf, size_t len, dp_err *err)
{
    unsigned char *out = buf;
    size_t got = 0;
    while (got < len) {
        if (f->z.avail_in < 2 && !f->eof && refill(f, err) < 0)
            return -1;
        if (!f->gz) {
            size_t k = len - got < f->z.avail_in ? len - got : f->z.avail_in;
            if (k == 0)
                break;
            memcpy(out + got, f->z.next_in, k);
            f->z.next_in += k;
            f->z.avail_in -= (uInt)k;
            got += k;
            continue;
        }
        if (f->between) {
            if (f->z.avail_in == 0)
                break;
            if (f->z.avail_in < 2 || f->z.next_in[0] != 0x1f || f->z.next_in[1] != 0x8b)
                return dp_fail(err, "%s: damaged: bytes that are not gzip data follow the end "
                                    "of the compressed stream; download or compress the file "
                                    "again",
                               f->path);
            inflateReset(&f->z);
            f->between = false;
        }
        f->z.next_out = out + got;
        f->z.avail_out = len - got > (1u << 30) ? 1u << 30 : (uInt)(len - got);
        int rc = inflate(&f->z, Z_NO_FLUSH);
        got = (size_t)(f->z.next_out - out);
        if (rc == Z_STREAM_END)
            f->between = true;
        else if (rc == Z_BUF_ERROR && f->eof && f->z.avail_in == 0)
            return dp_fail(err, "%s: truncated: the compressed stream ends early (unexpected "
                                "end of file); download or compress the file again",
                           f->path);
        else if (rc == Z_MEM_ERROR)
            return dp_fail(err, "%s: out of memory for zlib", f->path);
        else if (rc != Z_OK && rc != Z_BUF_ERROR)
            return dp_fail(err, "%s: corrupt compressed data (%s); download or compress the "
                                "file again",
                           f->path, f->z.msg ? f->z.msg : "bad gzip stream");
    }
    return (long)got;
}

void dp_data_close(dp_data_file *f)
{
    if (!f)
        return;
    if (f->gz)
        inflateEnd(&f->z);
    close(f->fd);
    free(f);
}

int dp_data_read_all(const char *path, size_t max, unsigned char **out, size_t *len,
                     dp_err *err)
{
    dp_data_file *f = dp_data_open(path, err);
    if (!f)
        return -1;
    size_t cap = 0, got = 0;
    unsigned char *buf = NULL;
    for (;;) {
        if (got == cap) {
            if (cap > max) {
                dp_fail(err, "%s: more than %zu bytes (uncompressed), more than dpmptop reads "
                             "from one data file; use a smaller file",
                        path, max);
                goto fail;
            }
            size_t bigger = cap ? 2 * cap : (size_t)1 << 16;
            bigger = bigger > max + 1 ? max + 1 : bigger; /* one byte more tells "too long" */
            unsigned char *grown = realloc(buf, bigger);
            if (!grown) {
                dp_fail(err, "%s: out of memory for %zu bytes", path, bigger);
                goto fail;
            }
            buf = grown;
            cap = bigger;
        }
        long n = dp_data_read(f, buf + got, cap - got, err);
        if (n < 0)
            goto fail;
        got += (size_t)n;
        if (got < cap)
            break;
    }
    dp_data_close(f);
    *out = buf;
    *len = got;
    return 0;
fail:
    dp_data_close(f);
    free(buf);
    return -1;
}

void dp_dataset_free(dp_dataset *d)
{
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}
