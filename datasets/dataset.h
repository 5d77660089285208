/* dataset.h -- training and test data held in host memory, and how a run chooses it. */
#ifndef DP_DATASET_H
#define DP_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/shape.h"

/* Labelled samples: features flattened per sample, images scaled to [0, 1]. */
typedef struct dp_dataset {
    char name[64];       /* "fashion-mnist train" */
    long n;              /* samples */
    int features;        /* floats per sample */
    int classes;
    int targets;         /* labels per sample: 1, or a text window's next bytes */
    int channels, height, width; /* image shape (0 when the data are not images) */
    float *x;            /* [n, features] */
    int32_t *y;          /* [n, targets], each in [0, classes) */
} dp_dataset;

typedef enum dp_data_kind {
    DP_DATA_FASHION_MNIST,
    DP_DATA_MNIST,
    DP_DATA_IDX,
    DP_DATA_CIFAR10,
    DP_DATA_TEXT,
    DP_DATA_SYNTHETIC,
} dp_data_kind;

/* The [data] section. */
typedef struct dp_data_config {
    dp_data_kind kind;
    char path[4096];     /* a directory of IDX files; "" = the kind's default */
    int batch;
    bool shuffle;
    long limit;          /* use the first `limit` training samples; 0 = all */
    int context;         /* text: bytes of context */
    int features;        /* synthetic: input width */
    int classes;         /* synthetic: classes */
    long samples;        /* synthetic: training samples */
    long test_samples;   /* synthetic: test samples */
} dp_data_config;

/* The most values (floats) one split of a data set, or one batch of it, may hold: 2^32, that is
 * 16 GiB, which keeps a configuration's sizes from asking for absurd allocations. */
#define DP_DATA_MAX_VALUES ((uint64_t)1 << 32)

dp_data_config dp_data_defaults(void);
/* One sample's shape: [channels, height, width] for images, else a vector of features. */
dp_shape dp_dataset_shape(const dp_dataset *d);
/* "fashion-mnist" etc., and back; dp_data_kind_parse returns -1 for an unknown name. */
const char *dp_data_kind_name(dp_data_kind k);
int dp_data_kind_parse(const char *name);
/* The directory a kind reads when data.path is empty ("" for kinds without one). */
const char *dp_data_default_path(dp_data_kind k);
/* Whether a file called `name` in kind k's data directory would be read as data (every file
 * of a text directory; IDX's four names, plain or .gz; CIFAR-10's six batches). */
bool dp_data_reads_name(dp_data_kind k, const char *name);

/* Loads the training and test splits the configuration names. Every failure says which file
 * and what to do. */
int dp_data_load(const dp_data_config *c, uint64_t seed, dp_dataset *train, dp_dataset *test,
                 dp_err *err);
void dp_dataset_free(dp_dataset *d);

/* ---- reading a data file, plain or gzip-compressed: data.c ---- */

/* An open data file; its bytes come out decompressed when it is gzip (one member or several
 * concatenated, as gzip itself reads them). */
typedef struct dp_data_file dp_data_file;

/* Opens path through dp_open_input (a FIFO, a device or a directory is refused before a byte is
 * read); NULL with err set on failure. */
dp_data_file *dp_data_open(const char *path, dp_err *err);
/* Reads up to len bytes into buf; returns the count, less than len only at the end of the data,
 * or -1 with err naming the file when the compressed stream is truncated, corrupt (a bad CRC or
 * length check) or followed by bytes that are not another gzip member. */
long dp_data_read(dp_data_file *f, void *buf, size_t len, dp_err *err);
void dp_data_close(dp_data_file *f);
/* Reads a whole data file into a new buffer, refusing more than max bytes once decompressed. */
int dp_data_read_all(const char *path, size_t max, unsigned char **out, size_t *len,
                     dp_err *err);

/* ---- IDX (the MNIST family): idx.c ---- */

/* An IDX file of unsigned bytes: up to 4 dimensions, big-endian sizes. */
typedef struct dp_idx {
    int ndim;
    uint32_t dims[4];
    size_t count; /* product of dims */
    uint8_t *data;
} dp_idx;

/* Reads an IDX file of unsigned bytes, plain or gzip-compressed, checking the magic number,
 * the sizes and that the file holds exactly the data its header announces. */
int dp_idx_read(const char *path, dp_idx *out, dp_err *err);
void dp_idx_free(dp_idx *idx);

/* Loads images (N x H x W) and labels (N) from two IDX files into d. */
int dp_idx_load_split(const char *images_path, const char *labels_path, const char *name,
                      dp_dataset *d, dp_err *err);

/* ---- CIFAR-10, binary version: cifar.c ---- */

/* Loads data_batch_1.bin .. data_batch_5.bin (train) and test_batch.bin (test) from dir: 3 x
 * 32 x 32 images scaled to [0, 1] (CHW, as torchvision's ToTensor) and labels 0 to 9. */
int dp_cifar_load(const char *dir, dp_dataset *train, dp_dataset *test, dp_err *err);
/* Appends the records of one batch file's bytes to d, every size and label checked first
 * (`what` names the file in messages; the fuzz target's entry). */
int dp_cifar_parse_batch(const unsigned char *buf, size_t len, const char *what,
                         dp_dataset *d, dp_err *err);

/* ---- text: text.c ---- */

/* Reads a text file (plain or .gz; or a directory's text files one after the other) as bytes
 * into windows of `context` inputs and as many next-byte targets; the last tenth is the test
 * split. */
int dp_text_load(const char *path, int context, dp_dataset *train, dp_dataset *test,
                 dp_err *err);
/* Makes each sample's targets its own input bytes (a masked language model's: it predicts
 * the bytes it was given, some of them hidden), in place of the next bytes. */
void dp_text_own_targets(dp_dataset *d);

/* The same from the text's bytes in memory (`what` names them in messages; the fuzz target's
 * entry). */
int dp_text_parse(const unsigned char *b, size_t len, int context, const char *what,
                  dp_dataset *train, dp_dataset *test, dp_err *err);

/* ---- synthetic: synthetic.c ---- */

/* Gaussian inputs labelled by a seeded random teacher network (features -> 32 tanh ->
 * classes, arg-max). The teacher depends only on the seed; train and test draw different
 * inputs. */
int dp_synthetic_make(const dp_data_config *c, uint64_t seed, dp_dataset *train,
                      dp_dataset *test, dp_err *err);

/* ---- batching: loader.c ---- */

/* Walks a dataset in batches, in a seeded random order that is drawn anew each epoch (or in
 * file order without shuffling). The last batch of an epoch may be short, as PyTorch's
 * DataLoader with drop_last=False. */
typedef struct dp_loader {
    const dp_dataset *ds;
    int batch;
    bool shuffle;
    uint64_t seed;
    long epoch;     /* 0-based epoch of the next batch */
    long pos;       /* samples of this epoch already handed out */
    int32_t *order; /* [n] sample order of this epoch */
} dp_loader;

int dp_loader_init(dp_loader *l, const dp_dataset *ds, int batch, bool shuffle, uint64_t seed,
                   dp_err *err);
void dp_loader_free(dp_loader *l);
/* Continues from sample `position` of epoch `epoch` (0-based), as a run that had handed out
 * that much would; fails when position is past the data set. */
int dp_loader_seek(dp_loader *l, long epoch, long position, dp_err *err);
/* Batches per epoch: ceil(n / batch). */
long dp_loader_steps_per_epoch(const dp_loader *l);
/* Hands out the next batch: its samples' indices into idx[rows], their features into
 * x[rows, features] and labels into y[rows, targets] (each skipped when NULL); returns rows. */
int dp_loader_next(dp_loader *l, float *x, int32_t *y, int32_t *idx);

#endif
