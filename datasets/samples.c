/* samples.c -- a generator's samples as an IDX file and a PNG grid (libpng), written atomically. */
#include "datasets/samples.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/fileio.h"

/* The most values a call may write: the IDX reader's limit (4 GiB of bytes). */
#define SAMPLES_MAX_VALUES ((uint64_t)1 << 32)

uint8_t dp_samples_byte(float v, float lo, float hi)
{
    if (isnan(v))
        return 0;
    /* make_grid(normalize=True): clamp_(lo, hi), sub_(lo), div_(max(hi - lo, 1e-5)) */
    float t = v < lo ? lo : v > hi ? hi : v;
    float range = hi - lo;
    if (range < 1e-5f)
        range = 1e-5f;
    t = (t - lo) / range;
    /* save_image: mul(255), add_(0.5), clamp_(0, 255), to uint8 (truncation); one float32
     * rounding an operation, as PyTorch's (C11 does not contract them into an FMA here) */
    t = t * 255.0f;
    t = t + 0.5f;
    t = t < 0.0f ? 0.0f : t > 255.0f ? 255.0f : t;
    return (uint8_t)t;
}

/* Checks the samples' sizes and value range, with a message that names what is wrong. */
static int check_samples(const float *x, int n, int c, int h, int w, float lo, float hi,
                         dp_err *err)
{
    if (!x)
        return dp_fail(err, "samples: no values given");
    if (n < 1 || c < 1 || h < 1 || w < 1)
        return dp_fail(err, "samples: %d x %d x %d x %d (n, channels, height, width): every size "
                            "must be at least 1",
                       n, c, h, w);
    if (c > DP_SAMPLES_MAX_CHANNELS || h > DP_SAMPLES_MAX_SIDE || w > DP_SAMPLES_MAX_SIDE)
        return dp_fail(err, "samples: %d channels of %d x %d pixels: at most %d channels and %d "
                            "pixels a side",
                       c, h, w, DP_SAMPLES_MAX_CHANNELS, DP_SAMPLES_MAX_SIDE);
    if ((uint64_t)n * (uint64_t)c * (uint64_t)h * (uint64_t)w > SAMPLES_MAX_VALUES)
        return dp_fail(err, "samples: %d x %d x %d x %d values are more than %llu", n, c, h, w,
                       (unsigned long long)SAMPLES_MAX_VALUES);
    if (!isfinite(lo) || !isfinite(hi) || !(lo < hi))
        return dp_fail(err, "samples: the value range [%g, %g] must be finite with lo < hi", lo,
                       hi);
    return 0;
}

/* Opens path for an atomic write, refusing a symbolic link (dp_atomic_open would write through
 * it) and anything else that is not a regular file. A link or a pipe put there between this
 * check and dp_atomic_open's own is caught after it (the path it chose is not path, or it writes
 * in place), and one put there later is replaced by the rename, which never follows it. */
static int open_target(dp_atomic_file *af, const char *path, dp_err *err)
{
    if (!path || !*path)
        return dp_fail(err, "samples: no file name given");
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (S_ISLNK(st.st_mode))
            return dp_fail(err, "%s: a symbolic link; samples are written only to a file of "
                                "their own: remove the link or give another path",
                           path);
        if (!S_ISREG(st.st_mode))
            return dp_fail(err, "%s: exists and is not a regular file; give a file path", path);
    } else if (errno != ENOENT) {
        return dp_fail(err, "%s: %s", path, strerror(errno));
    }
    if (dp_atomic_open(af, path, err) < 0)
        return -1;
    if (!af->tmp[0] || strcmp(af->path, path) != 0) {
        dp_atomic_abort(af);
        return dp_fail(err, "%s: replaced by a link or a special file while being opened; give "
                            "a path of its own",
                       path);
    }
    return 0;
}

/* Commits af, or gives it up with err naming path when writing failed (`failed`, errno kept). */
static int finish(dp_atomic_file *af, int failed, dp_err *err)
{
    if (failed) {
        int e = errno ? errno : EIO;
        dp_atomic_abort(af);
        return dp_fail(err, "%s: cannot write: %s; the previous file, if any, is kept", af->path,
                       strerror(e));
    }
    return dp_atomic_commit(af, err);
}

/* ---- IDX ---- */

/* The IDX header into head; returns its length. */
static size_t idx_header(uint8_t *head, int n, int c, int h, int w)
{
    uint32_t dims[4];
    int ndim = 0;
    dims[ndim++] = (uint32_t)n;
    if (c != 1)
        dims[ndim++] = (uint32_t)c;
    dims[ndim++] = (uint32_t)h;
    dims[ndim++] = (uint32_t)w;
    size_t len = 0;
    head[len++] = 0;
    head[len++] = 0;
    head[len++] = 0x08; /* unsigned bytes */
    head[len++] = (uint8_t)ndim;
    for (int i = 0; i < ndim; i++)
        for (int shift = 24; shift >= 0; shift -= 8)
            head[len++] = (uint8_t)(dims[i] >> shift);
    return len;
}

/* Writes the bytes of x[count], a block at a time; -1 when a write fails. */
static int idx_body(FILE *f, const float *x, size_t count, float lo, float hi)
{
    uint8_t buf[16384];
    for (size_t at = 0; at < count;) {
        size_t m = count - at < sizeof buf ? count - at : sizeof buf;
        for (size_t i = 0; i < m; i++)
            buf[i] = dp_samples_byte(x[at + i], lo, hi);
        if (fwrite(buf, 1, m, f) != m)
            return -1;
        at += m;
    }
    return 0;
}

int dp_samples_write_idx(const char *path, const float *x, int n, int c, int h, int w, float lo,
                         float hi, dp_err *err)
{
    if (check_samples(x, n, c, h, w, lo, hi, err) < 0)
        return -1;
    dp_atomic_file af;
    if (open_target(&af, path, err) < 0)
        return -1;
    uint8_t head[4 + 4 * 4];
    size_t len = idx_header(head, n, c, h, w);
    errno = 0;
    int failed = fwrite(head, 1, len, af.f) != len ||
                 idx_body(af.f, x, (size_t)n * c * h * w, lo, hi) < 0;
    return finish(&af, failed, err);
}

/* ---- the grid ---- */

/* Where the images go: `per_row` a row, `rows` rows, `pad` pixels between and around. */
typedef struct grid {
    const float *x;
    int n, c, h, w;
    float lo, hi;
    int per_row, rows, pad;
    int gw, gh;
} grid;

int dp_samples_grid_size(int n, int h, int w, int cols, int pad, int *gh, int *gw, dp_err *err)
{
    if (n < 1 || h < 1 || w < 1 || cols < 1 || pad < 0)
        return dp_fail(err, "samples grid: %d images of %d x %d, %d a row, padding %d: sizes and "
                            "columns must be at least 1, padding at least 0",
                       n, h, w, cols, pad);
    long long per_row = cols < n ? cols : n;
    long long rows = (n + per_row - 1) / per_row;
    long long width = per_row * ((long long)w + pad) + pad;
    long long height = rows * ((long long)h + pad) + pad;
    if (width > INT_MAX || height > INT_MAX ||
        (uint64_t)width * (uint64_t)height > SAMPLES_MAX_VALUES)
        return dp_fail(err, "samples grid: %lld x %lld pixels is too large", width, height);
    *gw = (int)width;
    *gh = (int)height;
    return 0;
}

/* Lays out the grid of checked samples. */
static int grid_make(grid *g, const float *x, int n, int c, int h, int w, float lo, float hi,
                     int cols, int pad, dp_err *err)
{
    int gh, gw;
    if (check_samples(x, n, c, h, w, lo, hi, err) < 0 ||
        dp_samples_grid_size(n, h, w, cols, pad, &gh, &gw, err) < 0)
        return -1;
    *g = (grid){ .x = x, .n = n, .c = c, .h = h, .w = w, .lo = lo, .hi = hi, .pad = pad,
                 .gw = gw, .gh = gh };
    g->per_row = cols < n ? cols : n;
    g->rows = (n + g->per_row - 1) / g->per_row;
    return 0;
}

/* Row yy of image k into out: `per` bytes a pixel, either its c channels (per == c) or one grey
 * byte (per == 1 < c: the luma of RGB, else the first channel). */
static void image_row(const grid *g, long k, int yy, int per, uint8_t *out)
{
    size_t plane = (size_t)g->h * g->w;
    const float *src = g->x + (size_t)k * g->c * plane + (size_t)yy * g->w;
    for (int xx = 0; xx < g->w; xx++) {
        if (per == g->c) {
            for (int ch = 0; ch < g->c; ch++)
                out[(size_t)xx * per + ch] = dp_samples_byte(src[ch * plane + xx], g->lo, g->hi);
        } else if (g->c == 3) {
            unsigned r = dp_samples_byte(src[xx], g->lo, g->hi);
            unsigned gr = dp_samples_byte(src[plane + xx], g->lo, g->hi);
            unsigned b = dp_samples_byte(src[2 * plane + xx], g->lo, g->hi);
            out[xx] = (uint8_t)((299 * r + 587 * gr + 114 * b + 500) / 1000);
        } else {
            out[xx] = dp_samples_byte(src[xx], g->lo, g->hi);
        }
    }
}

/* Row gy of the grid into row[gw * per]: padding 0, then the pixels of the images it crosses. */
static void grid_row(const grid *g, int gy, int per, uint8_t *row)
{
    memset(row, 0, (size_t)g->gw * per);
    int cell_h = g->h + g->pad;
    if (gy < g->pad)
        return;
    int r = (gy - g->pad) / cell_h, yy = (gy - g->pad) % cell_h;
    if (r >= g->rows || yy >= g->h)
        return;
    for (int col = 0; col < g->per_row; col++) {
        long k = (long)r * g->per_row + col;
        if (k >= g->n)
            break;
        size_t at = (size_t)col * (g->w + g->pad) + g->pad;
        image_row(g, k, yy, per, row + at * per);
    }
}

int dp_samples_grid_grey(const float *x, int n, int c, int h, int w, float lo, float hi,
                         int cols, int pad, uint8_t *grey, dp_err *err)
{
    grid g;
    if (grid_make(&g, x, n, c, h, w, lo, hi, cols, pad, err) < 0)
        return -1;
    for (int gy = 0; gy < g.gh; gy++)
        grid_row(&g, gy, 1, grey + (size_t)gy * g.gw);
    return 0;
}

/* ---- PNG through libpng ---- */

/* What libpng's handlers need to say which file failed and why: libpng often warns of the
 * cause (say "Image width exceeds user limit in IHDR") before its error ("Invalid IHDR data"). */
typedef struct png_job {
    const char *path;
    dp_err *err;
    char warning[160];
} png_job;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_job *job = png_get_error_ptr(png);
    if (job->warning[0])
        dp_fail(job->err, "%s: cannot write the PNG: %s (%s)", job->path, msg, job->warning);
    else
        dp_fail(job->err, "%s: cannot write the PNG: %s", job->path, msg);
    png_longjmp(png, 1);
}

/* Keeps the first warning for an error that may follow; a warning alone leaves a good file. */
static void png_on_warning(png_structp png, png_const_charp msg)
{
    png_job *job = png_get_error_ptr(png);
    if (!job->warning[0])
        snprintf(job->warning, sizeof job->warning, "%s", msg);
}

/* The rows, outside png_encode's setjmp frame so that no local of that frame changes after it. */
static void png_rows(png_structp png, const grid *g, uint8_t *row)
{
    for (int gy = 0; gy < g->gh; gy++) {
        grid_row(g, gy, g->c, row);
        png_write_row(png, row);
    }
}

/* Encodes the grid into f; a libpng error comes back through png_on_error's longjmp, with err
 * already filled. */
static int png_encode(FILE *f, const grid *g, uint8_t *row, const char *path, dp_err *err)
{
    png_job job = { .path = path, .err = err };
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &job, png_on_error,
                                              png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return dp_fail(err, "%s: out of memory for libpng", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)g->gw, (png_uint_32)g->gh, 8,
                 g->c == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_rows(png, g, row);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

int dp_samples_write_png(const char *path, const float *x, int n, int c, int h, int w, float lo,
                         float hi, int cols, dp_err *err)
{
    grid g;
    if (grid_make(&g, x, n, c, h, w, lo, hi, cols, DP_SAMPLES_PAD, err) < 0)
        return -1;
    if (c != 1 && c != 3)
        return dp_fail(err, "%s: samples of %d channels cannot be a PNG; 1 (greyscale) or 3 "
                            "(RGB) channels",
                       path ? path : "samples", c);
    if (g.gw > PNG_USER_WIDTH_MAX || g.gh > PNG_USER_HEIGHT_MAX) /* before a row is allocated */
        return dp_fail(err, "%s: a grid of %d x %d pixels is over libpng's limit of %d a side; "
                            "give more or fewer columns, or fewer samples",
                       path ? path : "samples", g.gw, g.gh, PNG_USER_WIDTH_MAX);
    uint8_t *row = malloc((size_t)g.gw * c);
    if (!row)
        return dp_fail(err, "%s: out of memory for a row of %d pixels", path, g.gw);
    dp_atomic_file af;
    if (open_target(&af, path, err) < 0) {
        free(row);
        return -1;
    }
    int rc = png_encode(af.f, &g, row, path, err);
    free(row);
    if (rc < 0) {
        dp_atomic_abort(&af);
        return -1;
    }
    errno = 0;
    return finish(&af, ferror(af.f), err);
}
