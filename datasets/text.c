/* text.c -- a text corpus read as bytes (vocabulary 256) for next-byte prediction (or, with
 * dp_text_own_targets, for a masked language model, whose targets are the inputs).
 *
 * The file (plain or .gz) is cut into consecutive windows of `context` bytes: sample i holds
 * bytes [i T, i T + T) as its inputs and bytes [i T + 1, i T + T + 1) as its T targets. The last
 * tenth of the file is held out: its windows are the test split, on which evaluation reports
 * the loss per byte (and so bits per byte: loss / ln 2). A directory stands for its regular
 * files in name order, one after the other, leaving out symbolic links and binary files (those
 * with a NUL byte): /usr/share/games/fortunes, say, without its .dat indices and .u8 links. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "datasets/dataset.h"

#define TEXT_MAX_BYTES ((size_t)1 << 31) /* 2 GiB: the windows are held as floats */

/* Cuts bytes [0, len) into windows of context bytes (with one more byte for the targets). */
static int make_windows(const unsigned char *b, size_t len, int context, const char *name,
                        dp_dataset *d, dp_err *err)
{
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    d->n = len > (size_t)context ? (long)((len - 1) / (size_t)context) : 0;
    d->features = context;
    d->targets = context;
    d->classes = 256;
    d->x = malloc((size_t)d->n * context * sizeof *d->x + 1);
    d->y = malloc((size_t)d->n * context * sizeof *d->y + 1);
    if (!d->x || !d->y) {
        dp_dataset_free(d);
        return dp_fail(err, "out of memory for %zu bytes of text", len);
    }
    for (size_t i = 0; i < (size_t)d->n * context; i++) {
        d->x[i] = (float)b[i];
        d->y[i] = b[i + 1];
    }
    return 0;
}

/* Appends the text files of directory dir (see above) into one new buffer. */
static int read_dir(const char *dir, unsigned char **out, size_t *len, dp_err *err)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0)
        return dp_fail(err, "%s: cannot list: %s", dir, strerror(errno));
    unsigned char *all = NULL;
    size_t total = 0;
    int rc = 0, files = 0;
    for (int i = 0; i < n; i++) {
        char path[4200];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        unsigned char *b = NULL;
        size_t blen = 0;
        if (rc < 0 || lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(names[i]);
            continue;
        }
        free(names[i]);
        if (dp_data_read_all(path, TEXT_MAX_BYTES, &b, &blen, err) < 0) {
            rc = -1;
            continue;
        }
        if (!memchr(b, 0, blen)) {
            unsigned char *grown = total + blen <= TEXT_MAX_BYTES ? realloc(all, total + blen + 1)
                                                                  : NULL;
            if (!grown) {
                rc = dp_fail(err, "%s: out of memory, or more than %zu bytes of text", dir,
                             TEXT_MAX_BYTES);
            } else {
                all = grown;
                memcpy(all + total, b, blen);
                total += blen;
                files++;
            }
        }
        free(b);
    }
    free(names);
    if (rc == 0 && files == 0)
        rc = dp_fail(err, "%s: no text files in this directory", dir);
    if (rc < 0) {
        free(all);
        return -1;
    }
    *out = all;
    *len = total;
    return 0;
}

int dp_text_parse(const unsigned char *b, size_t len, int context, const char *what,
                  dp_dataset *train, dp_dataset *test, dp_err *err)
{
    size_t held_out = len / 10;
    if (context < 1 || len - held_out < (size_t)context + 1 || held_out < (size_t)context + 1)
        return dp_fail(err, "%s: %zu bytes of text are too few for data.context = %d: the "
                            "training part and the held-out last tenth must each hold more "
                            "than one context (at least %zu bytes); use a longer text or a "
                            "shorter context",
                       what, len, context, ((size_t)context + 1) * 10);
    if (make_windows(b, len - held_out, context, "text train", train, err) < 0)
        return -1;
    if (make_windows(b + len - held_out, held_out, context, "text test", test, err) < 0) {
        dp_dataset_free(train);
        return -1;
    }
    return 0;
}

int dp_text_load(const char *path, int context, dp_dataset *train, dp_dataset *test,
                 dp_err *err)
{
    unsigned char *b = NULL;
    size_t len = 0;
    struct stat st;
    bool dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
    if ((dir ? read_dir(path, &b, &len, err)
             : dp_data_read_all(path, TEXT_MAX_BYTES, &b, &len, err)) < 0)
        return -1;
    int rc = dp_text_parse(b, len, context, path, train, test, err);
    free(b);
    return rc;
}

void dp_text_own_targets(dp_dataset *d)
{
    for (size_t i = 0; i < (size_t)d->n * d->targets; i++)
        d->y[i] = (int32_t)d->x[i];
}
