/* data.c -- choosing and loading a run's data from the [data] section. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "datasets/dataset.h"

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
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        if (c->kind == DP_DATA_FASHION_MNIST && !c->path[0])
            return dp_fail(err, "%s: no Fashion-MNIST here; install Debian's "
                                "dataset-fashion-mnist or set data.path to a directory of IDX "
                                "files",
                           dir);
        return dp_fail(err, "%s: not a directory; data.path must name a directory holding "
                            "train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                            "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (plain or .gz)",
                       dir[0] ? dir : "(empty data.path)");
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
    if (rc == 0 && c->limit > 0 && c->limit < train->n)
        train->n = c->limit; /* the first `limit` samples, in file order */
    return rc;
}

void dp_dataset_free(dp_dataset *d)
{
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}
