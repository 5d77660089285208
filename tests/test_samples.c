/* test_samples.c -- a GAN's sample files (IDX read back with dp_idx_read, PNG read back with
 * libpng), their atomic writes, and the pictures the dashboard shows of them (cells in each mode,
 * downscaling, and drawing on an ncurses screen of an xterm-256color). */
#define NCURSES_WIDECHAR 1 /* mvwin_wch and getcchar, to read back what was drawn */
#include "tests/unit.h"

#include <curses.h>
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <png.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/dataset.h"
#include "datasets/samples.h"
#include "tui/picture.h"

/* ---- helpers ---- */

static const char *join(char *buf, size_t size, const char *dir, const char *name)
{
    snprintf(buf, size, "%s/%s", dir, name);
    return buf;
}

/* The whole of a small file, NUL-terminated; its length in *len. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    static char buf[1 << 16];
    *len = fread(buf, 1, sizeof buf - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

/* The number of entries of dir other than "." and "..". */
static int dir_entries(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    ck_assert(p != NULL);
    int n = -1;
    ck_assert_int_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

/* A PNG read back with libpng in its own format: pixels malloc'd, row-major. */
typedef struct png_back {
    png_uint_32 width, height, format;
    uint8_t *px;
} png_back;

static png_back read_png(const char *path)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    ck_assert_msg(png_image_begin_read_from_file(&img, path), "%s: %s", path, img.message);
    png_back b = { img.width, img.height, img.format, malloc(PNG_IMAGE_SIZE(img)) };
    ck_assert(b.px != NULL);
    ck_assert_msg(png_image_finish_read(&img, NULL, b.px, 0, NULL), "%s: %s", path, img.message);
    return b;
}

/* ---- the byte a value becomes ---- */

START_TEST(test_samples_byte)
{
    /* tanh's range: (x + 1) / 2 * 255 + 0.5, truncated */
    ck_assert_int_eq(dp_samples_byte(-1.0f, -1.0f, 1.0f), 0);
    ck_assert_int_eq(dp_samples_byte(1.0f, -1.0f, 1.0f), 255);
    ck_assert_int_eq(dp_samples_byte(0.0f, -1.0f, 1.0f), 128);   /* 127.5 + 0.5 */
    ck_assert_int_eq(dp_samples_byte(-0.5f, -1.0f, 1.0f), 64);   /* 63.75 + 0.5 */
    ck_assert_int_eq(dp_samples_byte(0.5f, -1.0f, 1.0f), 191);   /* 191.25 + 0.5 */
    ck_assert_int_eq(dp_samples_byte(-3.0f, -1.0f, 1.0f), 0);    /* clamped */
    ck_assert_int_eq(dp_samples_byte(7.0f, -1.0f, 1.0f), 255);
    ck_assert_int_eq(dp_samples_byte(NAN, -1.0f, 1.0f), 0);
    ck_assert_int_eq(dp_samples_byte(INFINITY, -1.0f, 1.0f), 255);
    ck_assert_int_eq(dp_samples_byte(-INFINITY, -1.0f, 1.0f), 0);
    /* [0, 1]: save_image on the raw values */
    ck_assert_int_eq(dp_samples_byte(0.5f, 0.0f, 1.0f), 128);
    ck_assert_int_eq(dp_samples_byte(0.998f, 0.0f, 1.0f), 254); /* 254.49 + 0.5 */
    ck_assert_int_eq(dp_samples_byte(0.999f, 0.0f, 1.0f), 255); /* 254.745 + 0.5 */
    ck_assert_int_eq(dp_samples_byte(3.0f / 255.0f, 0.0f, 1.0f), 3);
    ck_assert_int_eq(dp_samples_byte(0.0019f, 0.0f, 1.0f), 0); /* 0.48 + 0.5 */
    ck_assert_int_eq(dp_samples_byte(0.0021f, 0.0f, 1.0f), 1); /* 0.54 + 0.5 */
}
END_TEST

/* ---- IDX ---- */

START_TEST(test_samples_idx_grey)
{
    const float x[2 * 2 * 3] = { -1.0f, 1.0f, 0.0f, -0.5f, 0.5f, -9.0f,
                                 9.0f,  NAN,  0.25f, -0.25f, 0.999f, -0.999f };
    const uint8_t want[12] = { 0, 255, 128, 64, 191, 0, 255, 0, 159, 96, 255, 0 };
    char path[4200];
    join(path, sizeof path, unit_tmpdir(), "samples.idx");
    dp_err err = { "" };
    ck_assert_msg(dp_samples_write_idx(path, x, 2, 1, 2, 3, -1.0f, 1.0f, &err) == 0, "%s",
                  err.msg);
    size_t len;
    const uint8_t *raw = (const uint8_t *)slurp(path, &len);
    ck_assert_uint_eq(len, 4 + 3 * 4 + 12);
    const uint8_t head[16] = { 0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3 };
    ck_assert_mem_eq(raw, head, sizeof head);
    dp_idx idx;
    ck_assert_msg(dp_idx_read(path, &idx, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(idx.ndim, 3);
    ck_assert_uint_eq(idx.dims[0], 2);
    ck_assert_uint_eq(idx.dims[1], 2);
    ck_assert_uint_eq(idx.dims[2], 3);
    ck_assert_mem_eq(idx.data, want, sizeof want);
    dp_idx_free(&idx);
}
END_TEST

START_TEST(test_samples_idx_rgb)
{
    enum { N = 2, C = 3, H = 2, W = 2, COUNT = N * C * H * W };
    float x[COUNT];
    uint8_t want[COUNT];
    for (int i = 0; i < COUNT; i++) { /* 0, 1/23, ..., 1: every byte a different one */
        x[i] = (float)i / (COUNT - 1);
        want[i] = (uint8_t)(x[i] * 255.0f + 0.5f);
    }
    char path[4200];
    join(path, sizeof path, unit_tmpdir(), "rgb.idx");
    dp_err err = { "" };
    ck_assert_msg(dp_samples_write_idx(path, x, N, C, H, W, 0.0f, 1.0f, &err) == 0, "%s", err.msg);
    size_t len;
    const uint8_t *raw = (const uint8_t *)slurp(path, &len);
    ck_assert_int_eq(raw[3], 4); /* magic 0x00000804 */
    dp_idx idx;
    ck_assert_msg(dp_idx_read(path, &idx, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(idx.ndim, 4);
    ck_assert_uint_eq(idx.dims[0], N);
    ck_assert_uint_eq(idx.dims[1], C);
    ck_assert_uint_eq(idx.dims[2], H);
    ck_assert_uint_eq(idx.dims[3], W);
    ck_assert_mem_eq(idx.data, want, sizeof want);
    ck_assert_int_eq(idx.data[0], 0);
    ck_assert_int_eq(idx.data[COUNT - 1], 255);
    dp_idx_free(&idx);
}
END_TEST

START_TEST(test_samples_bad_arguments)
{
    const char *dir = unit_tmpdir();
    char path[4200];
    join(path, sizeof path, dir, "bad.idx");
    float x[4] = { 0 };
    dp_err err = { "" };
    ck_assert_int_eq(dp_samples_write_idx(path, x, 0, 1, 2, 2, -1, 1, &err), -1);
    ck_assert_msg(strstr(err.msg, "at least 1"), "%s", err.msg);
    ck_assert_int_eq(dp_samples_write_idx(path, x, 1, 1, -2, 2, -1, 1, &err), -1);
    ck_assert_int_eq(dp_samples_write_idx(path, NULL, 1, 1, 2, 2, -1, 1, &err), -1);
    ck_assert_int_eq(dp_samples_write_idx(path, x, 1, 1, 100000, 2, -1, 1, &err), -1);
    ck_assert_msg(strstr(err.msg, "a side"), "%s", err.msg);
    ck_assert_int_eq(dp_samples_write_idx(path, x, 65536, 1, 65536, 2, -1, 1, &err), -1);
    ck_assert_msg(strstr(err.msg, "more than"), "%s", err.msg);
    ck_assert_int_eq(dp_samples_write_idx(path, x, 1, 1, 2, 2, 1, 1, &err), -1);
    ck_assert_msg(strstr(err.msg, "lo < hi"), "%s", err.msg);
    ck_assert_int_eq(dp_samples_write_idx(path, x, 1, 1, 2, 2, NAN, 1, &err), -1);
    ck_assert_int_eq(dp_samples_write_png(path, x, 1, 2, 1, 2, 0, 1, 8, &err), -1);
    ck_assert_msg(strstr(err.msg, "2 channels"), "%s", err.msg);
    ck_assert_int_eq(dp_samples_write_png(path, x, 1, 1, 2, 2, 0, 1, 0, &err), -1);
    ck_assert_msg(strstr(err.msg, "columns"), "%s", err.msg);
    ck_assert_int_eq(dp_samples_write_png("", x, 1, 1, 2, 2, 0, 1, 8, &err), -1);
    /* a directory there, and a directory that does not exist */
    ck_assert_int_eq(dp_samples_write_png(dir, x, 1, 1, 2, 2, 0, 1, 8, &err), -1);
    ck_assert_msg(strstr(err.msg, "not a regular file"), "%s", err.msg);
    join(path, sizeof path, dir, "missing/s.png");
    ck_assert_int_eq(dp_samples_write_png(path, x, 1, 1, 2, 2, 0, 1, 8, &err), -1);
    ck_assert_msg(strstr(err.msg, "missing/s.png"), "%s", err.msg);
    ck_assert_int_eq(dir_entries(dir), 0); /* nothing written, nothing left behind */
}
END_TEST

/* A link at the path is refused: neither it nor its target changes, and no temporary file stays. */
START_TEST(test_samples_symlink_refused)
{
    const char *dir = unit_tmpdir();
    char target[4200], link[4200];
    join(target, sizeof target, dir, "target");
    join(link, sizeof link, dir, "samples.png");
    FILE *f = fopen(target, "w");
    ck_assert(f != NULL);
    fputs("keep", f);
    fclose(f);
    ck_assert_int_eq(symlink("target", link), 0);
    float x[4] = { 0.1f, 0.2f, 0.3f, 0.4f };
    dp_err err = { "" };
    ck_assert_int_eq(dp_samples_write_png(link, x, 1, 1, 2, 2, 0, 1, 8, &err), -1);
    ck_assert_msg(strstr(err.msg, "symbolic link"), "%s", err.msg);
    ck_assert_int_eq(dp_samples_write_idx(link, x, 1, 1, 2, 2, 0, 1, &err), -1);
    ck_assert_msg(strstr(err.msg, "symbolic link"), "%s", err.msg);
    size_t len;
    ck_assert_str_eq(slurp(target, &len), "keep");
    struct stat st;
    ck_assert_int_eq(lstat(link, &st), 0);
    ck_assert(S_ISLNK(st.st_mode));
    ck_assert_int_eq(dir_entries(dir), 2);
}
END_TEST

/* A second write replaces the first whole, leaving no temporary file beside it. */
START_TEST(test_samples_replace)
{
    const char *dir = unit_tmpdir();
    char path[4200];
    join(path, sizeof path, dir, "samples.idx");
    float a[4] = { 0, 0, 0, 0 }, b[8] = { 1, 1, 1, 1, 1, 1, 1, 1 };
    dp_err err = { "" };
    ck_assert_msg(dp_samples_write_idx(path, a, 1, 1, 2, 2, 0, 1, &err) == 0, "%s", err.msg);
    ck_assert_msg(dp_samples_write_idx(path, b, 2, 1, 2, 2, 0, 1, &err) == 0, "%s", err.msg);
    dp_idx idx;
    ck_assert_msg(dp_idx_read(path, &idx, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(idx.dims[0], 2);
    for (size_t i = 0; i < idx.count; i++)
        ck_assert_int_eq(idx.data[i], 255);
    dp_idx_free(&idx);
    ck_assert_int_eq(dir_entries(dir), 1);
}
END_TEST

/* ---- PNG ---- */

/* 3 greyscale images of 2 x 3, 2 a row: a grid of 2 rows with one slot empty. Every value maps
 * to a byte of at least 1, so that padding (0) cannot pass for an image. */
START_TEST(test_samples_png_grey)
{
    enum { N = 3, H = 2, W = 3 };
    float x[N * H * W];
    for (int i = 0; i < N * H * W; i++)
        x[i] = -0.9f + 0.1f * (float)i; /* -0.9 .. 0.8 in tanh's range */
    x[2 * H * W + 1 * W + 2] = 1.0f;  /* image 2, row 1, column 2: 255 */
    char path[4200];
    join(path, sizeof path, unit_tmpdir(), "samples.png");
    dp_err err = { "" };
    ck_assert_msg(dp_samples_write_png(path, x, N, 1, H, W, -1.0f, 1.0f, 2, &err) == 0, "%s",
                  err.msg);
    png_back b = read_png(path);
    ck_assert_uint_eq(b.width, 2 * (W + 2) + 2);
    ck_assert_uint_eq(b.height, 2 * (H + 2) + 2);
    ck_assert_uint_eq(b.format, PNG_FORMAT_GRAY);
    int images = 0;
    for (png_uint_32 gy = 0; gy < b.height; gy++)
        for (png_uint_32 gx = 0; gx < b.width; gx++) {
            int v = b.px[gy * b.width + gx];
            /* inside image (r, c) at (yy, xx) when the offsets past the padding land there */
            int r = ((int)gy - 2) / (H + 2), yy = ((int)gy - 2) % (H + 2);
            int c = ((int)gx - 2) / (W + 2), xx = ((int)gx - 2) % (W + 2);
            int k = r * 2 + c;
            bool inside = gy >= 2 && gx >= 2 && yy < H && xx < W && k < N;
            if (!inside) {
                ck_assert_msg(v == 0, "padding (%u, %u) is %d", gx, gy, v);
                continue;
            }
            images++;
            ck_assert_int_eq(v, dp_samples_byte(x[k * H * W + yy * W + xx], -1.0f, 1.0f));
            ck_assert_int_ge(v, 1);
        }
    ck_assert_int_eq(images, N * H * W);
    /* image 2 is the second row's first: its (1, 2) at (2 + 2, 2 + (2 + 2) + 1) */
    ck_assert_int_eq(b.px[(2 + (H + 2) + 1) * b.width + 2 + 2], 255);
    ck_assert_int_eq(b.px[2 * b.width + 2], 13); /* image 0's first: -0.9 -> 12.75 + 0.5 */
    free(b.px);
}
END_TEST

START_TEST(test_samples_png_rgb)
{
    enum { N = 2, C = 3, H = 1, W = 2 };
    /* image 1's pixel (0, 1) is (R, G, B) = (1, 0.5, 0): 255, 128, 0 */
    float x[N * C * H * W] = { 0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f,
                               0.7f, 1.0f, 0.8f, 0.5f, 0.9f, 0.0f };
    char path[4200];
    join(path, sizeof path, unit_tmpdir(), "rgb.png");
    dp_err err = { "" };
    ck_assert_msg(dp_samples_write_png(path, x, N, C, H, W, 0.0f, 1.0f, 8, &err) == 0, "%s",
                  err.msg);
    png_back b = read_png(path);
    ck_assert_uint_eq(b.width, 2 * (W + 2) + 2); /* 2 images: a row of 2, not 8 */
    ck_assert_uint_eq(b.height, H + 4);
    ck_assert_uint_eq(b.format, PNG_FORMAT_RGB);
    const uint8_t *p = b.px + (2 * b.width + 2 + (W + 2) + 1) * 3;
    ck_assert_int_eq(p[0], 255);
    ck_assert_int_eq(p[1], 128);
    ck_assert_int_eq(p[2], 0);
    const uint8_t *q = b.px + (2 * b.width + 2) * 3; /* image 0's first: 0.1, 0.3, 0.5 */
    ck_assert_int_eq(q[0], 26);
    ck_assert_int_eq(q[1], 77);
    ck_assert_int_eq(q[2], 128);
    for (png_uint_32 gx = 0; gx < b.width * 3; gx++) { /* the padding rows */
        ck_assert_int_eq(b.px[gx], 0);
        ck_assert_int_eq(b.px[(b.height - 1) * b.width * 3 + gx], 0);
    }
    free(b.px);
}
END_TEST

/* A grid over libpng's million pixels a side is refused before any file is made. */
START_TEST(test_samples_png_too_wide)
{
    enum { N = 20000, W = 60 }; /* a row of 20000: 20000 * 62 + 2 pixels wide */
    float *x = calloc((size_t)N * W, sizeof *x);
    ck_assert(x != NULL);
    const char *dir = unit_tmpdir();
    char path[4200];
    join(path, sizeof path, dir, "wide.png");
    dp_err err = { "" };
    ck_assert_int_eq(dp_samples_write_png(path, x, N, 1, 1, W, 0.0f, 1.0f, N, &err), -1);
    ck_assert_msg(strstr(err.msg, "wide.png: a grid of 1240002 x 5 pixels is over libpng's"),
                  "%s", err.msg);
    ck_assert_int_eq(dir_entries(dir), 0);
    ck_assert_msg(dp_samples_write_png(path, x, N, 1, 1, W, 0.0f, 1.0f, 100, &err) == 0, "%s",
                  err.msg); /* 100 a row is fine */
    free(x);
}
END_TEST

/* A write that fails inside libpng (the file size limit: EFBIG) comes back through its setjmp
 * path as a message; the file there before is kept whole and no temporary file stays. */
START_TEST(test_samples_png_write_fails)
{
    enum { N = 16, H = 32, W = 32 };
    static float x[N * H * W];
    uint32_t r = 2463534242u;
    for (int i = 0; i < N * H * W; i++) { /* noise (xorshift32), which deflate cannot shrink */
        r ^= r << 13;
        r ^= r >> 17;
        r ^= r << 5;
        x[i] = (float)(r >> 24) / 255.0f;
    }
    const char *dir = unit_tmpdir();
    char path[4200];
    join(path, sizeof path, dir, "samples.png");
    FILE *f = fopen(path, "w");
    ck_assert(f != NULL);
    fputs("the previous grid", f);
    fclose(f);
    struct rlimit old;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    struct rlimit small = { 4096, old.rlim_max };
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    dp_err err = { "" };
    int rc = dp_samples_write_png(path, x, N, 1, H, W, 0.0f, 1.0f, 4, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);
    ck_assert_int_eq(rc, -1);
    ck_assert_msg(strstr(err.msg, "samples.png: cannot write"), "%s", err.msg);
    size_t len;
    ck_assert_str_eq(slurp(path, &len), "the previous grid");
    ck_assert_int_eq(dir_entries(dir), 1);
}
END_TEST

/* The dashboard's grey grid: 1 pixel gaps, RGB as luma. */
START_TEST(test_samples_grid_grey)
{
    float x[2 * 3] = { 1.0f, 0.0f, 0.0f, 0.0f, 1.0f, 0.0f }; /* red, then green, 1 x 1 each */
    int gh, gw;
    dp_err err = { "" };
    ck_assert_int_eq(dp_samples_grid_size(2, 1, 1, 8, 1, &gh, &gw, &err), 0);
    ck_assert_int_eq(gw, 5);
    ck_assert_int_eq(gh, 3);
    uint8_t g[15];
    memset(g, 7, sizeof g);
    ck_assert_msg(dp_samples_grid_grey(x, 2, 3, 1, 1, 0.0f, 1.0f, 8, 1, g, &err) == 0, "%s",
                  err.msg);
    const uint8_t want[15] = { 0, 0, 0, 0, 0, 0, 76, 0, 150, 0, 0, 0, 0, 0, 0 };
    ck_assert_mem_eq(g, want, sizeof want);
    ck_assert_int_eq(dp_samples_grid_size(1 << 20, 4096, 4096, 8, 2, &gh, &gw, &err), -1);
}
END_TEST

/* ---- pictures ---- */

/* 4 x 2: the top row 0, 100, 200, 255 over 0, 8, 128, 255. */
static const uint8_t four_by_two[8] = { 0, 100, 200, 255, 0, 8, 128, 255 };

START_TEST(test_picture_modes)
{
    dp_picture_cell cells[8];
    int rows, cols;
    ck_assert_int_eq(dp_picture_render(four_by_two, 2, 4, 10, 10, DP_PICTURE_GREY256, cells,
                                       &rows, &cols), 0);
    ck_assert_int_eq(rows, 1);
    ck_assert_int_eq(cols, 4);
    const int fg256[4] = { 16, 241, 251, 231 }, bg256[4] = { 16, 232, 244, 231 };
    for (int i = 0; i < 4; i++) {
        ck_assert_str_eq(cells[i].glyph, "\xe2\x96\x80");
        ck_assert_int_eq(cells[i].fg, fg256[i]);
        ck_assert_int_eq(cells[i].bg, bg256[i]);
    }
    ck_assert_int_eq(dp_picture_render(four_by_two, 2, 4, 10, 10, DP_PICTURE_TRUECOLOR, cells,
                                       &rows, &cols), 0);
    for (int i = 0; i < 4; i++) {
        ck_assert_str_eq(cells[i].glyph, DP_PICTURE_HALF);
        ck_assert_int_eq(cells[i].fg, four_by_two[i]);
        ck_assert_int_eq(cells[i].bg, four_by_two[4 + i]);
    }
    ck_assert_int_eq(dp_picture_render(four_by_two, 2, 4, 10, 10, DP_PICTURE_ASCII, cells, &rows,
                                       &cols), 0);
    const char *ascii[4] = { " ", ":", "*", "@" }; /* averages 0, 54, 164, 255 */
    for (int i = 0; i < 4; i++) {
        ck_assert_str_eq(cells[i].glyph, ascii[i]);
        ck_assert_int_eq(cells[i].fg, -1);
    }
}
END_TEST

START_TEST(test_picture_xterm_greys)
{
    ck_assert_int_eq(dp_picture_xterm_grey(0), 16);
    ck_assert_int_eq(dp_picture_xterm_grey(4), 16); /* a tie goes to the darker */
    ck_assert_int_eq(dp_picture_xterm_grey(5), 232);
    ck_assert_int_eq(dp_picture_xterm_grey(8), 232);
    ck_assert_int_eq(dp_picture_xterm_grey(13), 232);
    ck_assert_int_eq(dp_picture_xterm_grey(14), 233);
    ck_assert_int_eq(dp_picture_xterm_grey(238), 255);
    ck_assert_int_eq(dp_picture_xterm_grey(246), 255);
    ck_assert_int_eq(dp_picture_xterm_grey(247), 231);
    ck_assert_int_eq(dp_picture_xterm_grey(255), 231);
    int worst = 0;
    for (int level = 0; level < 256; level++) {
        int d = abs(dp_picture_xterm_level(dp_picture_xterm_grey(level)) - level);
        worst = d > worst ? d : worst;
    }
    ck_assert_int_eq(worst, 8); /* 246 -> 238 and 247 -> 255, across the widest gap */
    ck_assert_int_eq(dp_picture_xterm_level(17), -1);
}
END_TEST

START_TEST(test_picture_choose)
{
    ck_assert_int_eq(dp_picture_choose(false, 256, "truecolor"), DP_PICTURE_ASCII);
    ck_assert_int_eq(dp_picture_choose(true, 8, "truecolor"), DP_PICTURE_ASCII);
    ck_assert_int_eq(dp_picture_choose(true, 0, NULL), DP_PICTURE_ASCII);
    ck_assert_int_eq(dp_picture_choose(true, 256, NULL), DP_PICTURE_GREY256);
    ck_assert_int_eq(dp_picture_choose(true, 256, "yes"), DP_PICTURE_GREY256);
    ck_assert_int_eq(dp_picture_choose(true, 256, "truecolor"), DP_PICTURE_TRUECOLOR);
    ck_assert_int_eq(dp_picture_choose(true, 256, "24bit"), DP_PICTURE_TRUECOLOR);
    ck_assert_int_eq(dp_picture_choose(true, 1 << 24, NULL), DP_PICTURE_TRUECOLOR);
    ck_assert_str_eq(dp_picture_mode_name(DP_PICTURE_GREY256), "256 greys");
}
END_TEST

START_TEST(test_picture_downscale)
{
    /* fractional areas: [0, 90, 180] into 2 pixels of 1.5 each */
    const uint8_t row[3] = { 0, 90, 180 };
    uint8_t out[4];
    ck_assert_int_eq(dp_picture_downscale(row, 1, 3, out, 1, 2), 0);
    ck_assert_int_eq(out[0], 30);  /* (0 + 90 * 0.5) / 1.5 */
    ck_assert_int_eq(out[1], 150); /* (90 * 0.5 + 180) / 1.5 */
    ck_assert_int_eq(dp_picture_downscale(row, 1, 3, out, 2, 2), -1); /* never up */
    /* 4 x 2 into 2 cells: halved to 2 x 1, each pixel the mean of a 2 x 2 block */
    dp_picture_cell cells[2];
    int rows, cols;
    ck_assert_int_eq(dp_picture_render(four_by_two, 2, 4, 1, 2, DP_PICTURE_TRUECOLOR, cells,
                                       &rows, &cols), 0);
    ck_assert_int_eq(rows, 1);
    ck_assert_int_eq(cols, 2);
    ck_assert_int_eq(cells[0].fg, 27);  /* (0 + 100 + 0 + 8) / 4 */
    ck_assert_int_eq(cells[1].fg, 210); /* (200 + 255 + 128 + 255) / 4 = 209.5 */
    ck_assert_int_eq(cells[0].bg, 0);   /* one pixel high: the bottom is black */
    ck_assert_int_eq(cells[1].bg, 0);
    /* never upscaled: 2 x 2 in a large area stays one cell row of two */
    const uint8_t small[4] = { 10, 20, 30, 40 };
    ck_assert_int_eq(dp_picture_render(small, 2, 2, 50, 50, DP_PICTURE_TRUECOLOR, cells, &rows,
                                       &cols), 0);
    ck_assert_int_eq(rows, 1);
    ck_assert_int_eq(cols, 2);
    ck_assert_int_eq(cells[1].fg, 20);
    ck_assert_int_eq(cells[1].bg, 40);
    /* an odd height: 3 x 1 takes two rows, the last one's bottom black */
    const uint8_t column[3] = { 50, 60, 70 };
    ck_assert_int_eq(dp_picture_render(column, 3, 1, 5, 5, DP_PICTURE_TRUECOLOR, cells, &rows,
                                       &cols), 0);
    ck_assert_int_eq(rows, 2);
    ck_assert_int_eq(cells[1].fg, 70);
    ck_assert_int_eq(cells[1].bg, 0);
    int th, tw;
    dp_picture_fit(28 * 8 + 9, 28 * 8 + 9, 20, 80, &th, &tw); /* 233 x 233 into 40 pixels high */
    ck_assert_int_eq(th, 40);
    ck_assert_int_eq(tw, 40);
}
END_TEST

/* Drawing on an xterm-256color screen written to /dev/null: half blocks with pairs above the
 * dashboard's, whose colours are the cells' greys; 24-bit cells fall back to 256 greys. */
START_TEST(test_picture_draw)
{
    char *old_locale = strdup(setlocale(LC_ALL, NULL));
    if (!setlocale(LC_ALL, "C.UTF-8"))
        ck_abort_msg("no C.UTF-8 locale");
    FILE *out = fopen("/dev/null", "w"), *in = fopen("/dev/null", "r");
    ck_assert(out && in);
    SCREEN *scr = newterm("xterm-256color", out, in);
    ck_assert_msg(scr != NULL, "no terminfo entry for xterm-256color");
    start_color();
    ck_assert_int_ge(COLORS, 256);
    ck_assert_int_eq(dp_picture_drawable(DP_PICTURE_TRUECOLOR), DP_PICTURE_GREY256);
    ck_assert_int_eq(dp_picture_drawable(DP_PICTURE_ASCII), DP_PICTURE_ASCII);
    dp_picture_pairs *pp = dp_picture_pairs_new();
    dp_picture_cell cells[4];
    int rows, cols;
    ck_assert_int_eq(dp_picture_render(four_by_two, 2, 4, 5, 5, DP_PICTURE_TRUECOLOR, cells,
                                       &rows, &cols), 0);
    ck_assert_int_eq(dp_picture_draw(pp, 3, 5, cells, rows, cols, DP_PICTURE_TRUECOLOR),
                     DP_PICTURE_GREY256);
    const int fg256[4] = { 16, 241, 251, 231 }, bg256[4] = { 16, 232, 244, 231 };
    for (int i = 0; i < 4; i++) {
        cchar_t cc;
        ck_assert_int_eq(mvwin_wch(stdscr, 3, 5 + i, &cc), OK);
        wchar_t wch[CCHARW_MAX + 1];
        attr_t attrs;
        short short_pair;
        int pair = 0, fg, bg;
        ck_assert_int_eq(getcchar(&cc, wch, &attrs, &short_pair, &pair), OK);
        ck_assert_int_eq(wch[0], 0x2580);
        ck_assert_int_ge(pair, DP_PICTURE_FIRST_PAIR);
        ck_assert_int_eq(extended_pair_content(pair, &fg, &bg), OK);
        ck_assert_int_eq(fg, fg256[i]);
        ck_assert_int_eq(bg, bg256[i]);
    }
    /* ASCII cells: characters, no pair */
    ck_assert_int_eq(dp_picture_render(four_by_two, 2, 4, 5, 5, DP_PICTURE_ASCII, cells, &rows,
                                       &cols), 0);
    ck_assert_int_eq(dp_picture_draw(pp, 4, 5, cells, rows, cols, DP_PICTURE_ASCII),
                     DP_PICTURE_ASCII);
    ck_assert_int_eq((int)(mvinch(4, 7) & A_CHARTEXT), '*');
    ck_assert_int_eq(PAIR_NUMBER(mvinch(4, 7) & A_COLOR), 0);
    dp_picture_pairs_free(pp);
    endwin();
    delscreen(scr);
    fclose(out);
    fclose(in);
    setlocale(LC_ALL, old_locale);
    free(old_locale);
}
END_TEST

Suite *samples_suite(void)
{
    Suite *s = suite_create("samples");
    TCase *files = tcase_create("files");
    tcase_add_test(files, test_samples_byte);
    tcase_add_test(files, test_samples_idx_grey);
    tcase_add_test(files, test_samples_idx_rgb);
    tcase_add_test(files, test_samples_bad_arguments);
    tcase_add_test(files, test_samples_symlink_refused);
    tcase_add_test(files, test_samples_replace);
    tcase_add_test(files, test_samples_png_grey);
    tcase_add_test(files, test_samples_png_rgb);
    tcase_add_test(files, test_samples_png_too_wide);
    tcase_add_test(files, test_samples_png_write_fails);
    tcase_add_test(files, test_samples_grid_grey);
    suite_add_tcase(s, files);
    TCase *pictures = tcase_create("pictures");
    tcase_add_test(pictures, test_picture_modes);
    tcase_add_test(pictures, test_picture_xterm_greys);
    tcase_add_test(pictures, test_picture_choose);
    tcase_add_test(pictures, test_picture_downscale);
    tcase_add_test(pictures, test_picture_draw);
    suite_add_tcase(s, pictures);
    return s;
}
