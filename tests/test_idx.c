/* test_idx.c -- the IDX reader on good and bad files written here, dp_data_load on a directory
 * of MNIST-named files, the batch loader and its prefetch, and the synthetic task. */
#include "tests/unit.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "datasets/dataset.h"
#include "datasets/prefetch.h"

/* ---- helpers: building IDX files ---- */

#define IMG_N 5
#define IMG_H 3
#define IMG_W 2

static const uint8_t good_labels[IMG_N] = { 3, 0, 7, 1, 7 };

/* Pixel k of image i: spans 0..255, 0 and 255 included. */
static uint8_t pixel(long i, long k)
{
    if (i == 0 && k == 0)
        return 0;
    if (i == 0 && k == 1)
        return 255;
    return (uint8_t)((i * 37 + k * 11 + 5) % 256);
}

/* An IDX image: 0, 0, type, ndim, big-endian dims, then `n` data bytes. Returns its length. */
static size_t idx_bytes(uint8_t *out, uint8_t type, int ndim, const uint32_t *dims,
                        const uint8_t *data, size_t n)
{
    size_t len = 0;
    out[len++] = 0;
    out[len++] = 0;
    out[len++] = type;
    out[len++] = (uint8_t)ndim;
    for (int i = 0; i < ndim; i++) {
        out[len++] = (uint8_t)(dims[i] >> 24);
        out[len++] = (uint8_t)(dims[i] >> 16);
        out[len++] = (uint8_t)(dims[i] >> 8);
        out[len++] = (uint8_t)dims[i];
    }
    if (n)
        memcpy(out + len, data, n);
    return len + n;
}

static void write_bytes(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_msg(fwrite(buf, 1, len, f) == len, "cannot write %s", path);
    ck_assert_msg(fclose(f) == 0, "cannot close %s", path);
}

static void write_gz(const char *path, const void *buf, size_t len)
{
    gzFile f = gzopen(path, "wb");
    ck_assert_msg(f != NULL, "gzopen %s failed", path);
    ck_assert_msg(gzwrite(f, buf, (unsigned)len) == (int)len, "gzwrite %s failed", path);
    ck_assert_msg(gzclose(f) == Z_OK, "gzclose %s failed", path);
}

static const char *join(char *buf, size_t size, const char *dir, const char *name)
{
    snprintf(buf, size, "%s/%s", dir, name);
    return buf;
}

/* Images file of n images of IMG_H x IMG_W (pixel()) into buf; returns its length. */
static size_t images_file(uint8_t *buf, uint32_t n)
{
    uint32_t dims[3] = { n, IMG_H, IMG_W };
    uint8_t *data = malloc((size_t)n * IMG_H * IMG_W);
    ck_assert(data != NULL);
    for (long i = 0; i < (long)n; i++)
        for (long k = 0; k < IMG_H * IMG_W; k++)
            data[i * IMG_H * IMG_W + k] = pixel(i, k);
    size_t len = idx_bytes(buf, 0x08, 3, dims, data, (size_t)n * IMG_H * IMG_W);
    free(data);
    return len;
}

/* Labels file of n labels (lab[i]) into buf; returns its length. */
static size_t labels_file(uint8_t *buf, uint32_t n, const uint8_t *lab)
{
    uint32_t dims[1] = { n };
    return idx_bytes(buf, 0x08, 1, dims, lab, n);
}

/* Writes the good images and labels files into dir; their paths into img and lab. */
static void write_good_pair(const char *dir, char *img, char *lab, size_t size)
{
    uint8_t buf[1024];
    write_bytes(join(img, size, dir, "images"), buf, images_file(buf, IMG_N));
    write_bytes(join(lab, size, dir, "labels"), buf, labels_file(buf, IMG_N, good_labels));
}

/* dp_idx_read on bytes written to a fresh file must fail with a message holding `want`. */
static void expect_idx_fail(const uint8_t *bytes, size_t len, const char *want)
{
    char path[4200];
    join(path, sizeof path, unit_tmpdir(), "bad-idx");
    write_bytes(path, bytes, len);
    dp_idx idx;
    dp_err err = { "" };
    int rc = dp_idx_read(path, &idx, &err);
    ck_assert_msg(rc == -1, "dp_idx_read returned %d on a bad file (want \"%s\")", rc, want);
    ck_assert_msg(strstr(err.msg, want) != NULL, "message \"%s\" lacks \"%s\"", err.msg, want);
    ck_assert_msg(strstr(err.msg, path) != NULL, "message \"%s\" does not name %s", err.msg,
                  path);
    ck_assert_msg(idx.data == NULL, "failed read left data allocated");
}

/* ---- dp_idx_read and dp_idx_load_split on good files ---- */

/* A plain images file reads back with its dims, count and bytes. */
START_TEST(test_idx_read_images)
{
    char img[4200], lab[4200];
    write_good_pair(unit_tmpdir(), img, lab, sizeof img);
    dp_idx idx;
    dp_err err = { "" };
    ck_assert_msg(dp_idx_read(img, &idx, &err) == 0, "dp_idx_read: %s", err.msg);
    ck_assert_int_eq(idx.ndim, 3);
    ck_assert_msg(idx.dims[0] == IMG_N && idx.dims[1] == IMG_H && idx.dims[2] == IMG_W,
                  "dims %u %u %u", idx.dims[0], idx.dims[1], idx.dims[2]);
    ck_assert_uint_eq(idx.count, IMG_N * IMG_H * IMG_W);
    for (long i = 0; i < IMG_N; i++)
        for (long k = 0; k < IMG_H * IMG_W; k++)
            ck_assert_msg(idx.data[i * IMG_H * IMG_W + k] == pixel(i, k), "byte %ld of image %ld "
                          "is %u, want %u", k, i, idx.data[i * IMG_H * IMG_W + k], pixel(i, k));
    dp_idx_free(&idx);
    ck_assert_msg(idx.data == NULL && idx.count == 0, "dp_idx_free did not reset");

    ck_assert_msg(dp_idx_read(lab, &idx, &err) == 0, "dp_idx_read labels: %s", err.msg);
    ck_assert_int_eq(idx.ndim, 1);
    ck_assert_uint_eq(idx.dims[0], IMG_N);
    ck_assert_msg(memcmp(idx.data, good_labels, IMG_N) == 0, "label bytes differ");
    dp_idx_free(&idx);
}
END_TEST

/* dp_idx_load_split: pixels / 255, labels, classes = max + 1, image shape. */
START_TEST(test_idx_load_split)
{
    char img[4200], lab[4200];
    write_good_pair(unit_tmpdir(), img, lab, sizeof img);
    dp_dataset d;
    dp_err err = { "" };
    ck_assert_msg(dp_idx_load_split(img, lab, "unit train", &d, &err) == 0, "load: %s",
                  err.msg);
    ck_assert_int_eq(d.n, IMG_N);
    ck_assert_int_eq(d.height, IMG_H);
    ck_assert_int_eq(d.width, IMG_W);
    ck_assert_int_eq(d.channels, 1);
    ck_assert_int_eq(d.features, IMG_H * IMG_W);
    ck_assert_int_eq(d.classes, 8);
    ck_assert_str_eq(d.name, "unit train");
    for (long i = 0; i < IMG_N; i++) {
        ck_assert_msg(d.y[i] == good_labels[i], "label %ld is %d, want %u", i, d.y[i],
                      good_labels[i]);
        for (long k = 0; k < IMG_H * IMG_W; k++) {
            float want = (float)pixel(i, k) / 255.0f;
            float got = d.x[i * IMG_H * IMG_W + k];
            ck_assert_msg(got == want, "x[%ld][%ld] = %.9g, want %.9g", i, k, got, want);
        }
    }
    ck_assert_msg(d.x[0] == 0.0f && d.x[1] == 1.0f, "0 and 255 give %g and %g", d.x[0], d.x[1]);
    dp_dataset_free(&d);
    ck_assert_msg(d.x == NULL && d.y == NULL && d.n == 0, "dp_dataset_free did not reset");
}
END_TEST

/* A gzip-compressed copy reads exactly as the plain file. */
START_TEST(test_idx_gzip)
{
    const char *dir = unit_tmpdir();
    char img[4200], lab[4200], gz_img[4200], gz_lab[4200];
    write_good_pair(dir, img, lab, sizeof img);
    uint8_t buf[1024];
    write_gz(join(gz_img, sizeof gz_img, dir, "images.gz"), buf, images_file(buf, IMG_N));
    write_gz(join(gz_lab, sizeof gz_lab, dir, "labels.gz"), buf,
             labels_file(buf, IMG_N, good_labels));

    /* the .gz file is really compressed: its first bytes are the gzip magic */
    FILE *f = fopen(gz_img, "rb");
    ck_assert(f != NULL);
    unsigned char magic[2] = { 0, 0 };
    ck_assert(fread(magic, 1, 2, f) == 2);
    fclose(f);
    ck_assert_msg(magic[0] == 0x1f && magic[1] == 0x8b, "not gzip: %02x %02x", magic[0],
                  magic[1]);

    dp_idx a, b;
    dp_err err = { "" };
    ck_assert_msg(dp_idx_read(img, &a, &err) == 0, "plain: %s", err.msg);
    ck_assert_msg(dp_idx_read(gz_img, &b, &err) == 0, "gz: %s", err.msg);
    ck_assert_int_eq(a.ndim, b.ndim);
    ck_assert_uint_eq(a.count, b.count);
    ck_assert_msg(memcmp(a.dims, b.dims, sizeof a.dims) == 0, "dims differ");
    ck_assert_msg(memcmp(a.data, b.data, a.count) == 0, "data differ");
    dp_idx_free(&a);
    dp_idx_free(&b);

    dp_dataset p, z;
    ck_assert_msg(dp_idx_load_split(img, lab, "plain", &p, &err) == 0, "plain: %s", err.msg);
    ck_assert_msg(dp_idx_load_split(gz_img, gz_lab, "gz", &z, &err) == 0, "gz: %s", err.msg);
    ck_assert_int_eq(p.n, z.n);
    ck_assert_int_eq(p.features, z.features);
    ck_assert_int_eq(p.classes, z.classes);
    ck_assert_msg(memcmp(p.x, z.x, (size_t)p.n * p.features * sizeof *p.x) == 0, "x differ");
    ck_assert_msg(memcmp(p.y, z.y, (size_t)p.n * sizeof *p.y) == 0, "y differ");
    dp_dataset_free(&p);
    dp_dataset_free(&z);
}
END_TEST

/* ---- bad files ---- */

/* Data shorter than the header announces, or a header cut short: "truncated". */
START_TEST(test_idx_truncated)
{
    uint8_t buf[1024];
    size_t len = images_file(buf, IMG_N);
    expect_idx_fail(buf, len - 1, "truncated");
    expect_idx_fail(buf, 4 + 4 * 3 + 7, "truncated"); /* one image and a bit */
    expect_idx_fail(buf, 4 + 4 * 3, "truncated");     /* header only */
    expect_idx_fail(buf, 4 + 4 * 2 + 1, "truncated"); /* inside the dims */
}
END_TEST

/* A truncated .gz file fails rather than reading short. */
START_TEST(test_idx_gzip_truncated)
{
    const char *dir = unit_tmpdir();
    uint8_t raw[4096];
    uint32_t dims[3] = { 20, 10, 10 };
    uint8_t data[2000];
    for (int i = 0; i < 2000; i++)
        data[i] = (uint8_t)(i * 7919 % 251);
    size_t len = idx_bytes(raw, 0x08, 3, dims, data, sizeof data);
    char gz[4200], cut[4200];
    write_gz(join(gz, sizeof gz, dir, "full.gz"), raw, len);
    FILE *f = fopen(gz, "rb");
    ck_assert(f != NULL);
    uint8_t comp[8192];
    size_t clen = fread(comp, 1, sizeof comp, f);
    fclose(f);
    ck_assert_msg(clen > 40, "compressed size %zu", clen);
    write_bytes(join(cut, sizeof cut, dir, "cut.gz"), comp, clen / 2);
    dp_idx idx;
    dp_err err = { "" };
    ck_assert_msg(dp_idx_read(cut, &idx, &err) == -1, "a truncated .gz file was accepted");
    ck_assert_msg(strstr(err.msg, cut) != NULL && strstr(err.msg, "truncated") != NULL,
                  "message \"%s\" does not name the file and say it is truncated", err.msg);
}
END_TEST

/* dp_data_read_all on a gzip file: every cut of the stream is "truncated", bytes after it or a
 * bad CRC are refused, two members read as one text, and a FIFO or a directory is refused
 * without blocking. */
START_TEST(test_data_gzip_damaged)
{
    const char *dir = unit_tmpdir();
    unsigned char text[3000];
    for (int i = 0; i < 3000; i++)
        text[i] = (unsigned char)("abcdefgh "[i * 7 % 9] + i % 3);
    char gz[4200], bad[4200];
    write_gz(join(gz, sizeof gz, dir, "text.gz"), text, sizeof text);
    FILE *f = fopen(gz, "rb");
    ck_assert(f != NULL);
    unsigned char comp[8192 + 16];
    size_t clen = fread(comp, 1, 8192, f);
    fclose(f);
    ck_assert_msg(clen > 20 && clen < 8192, "compressed size %zu", clen);
    join(bad, sizeof bad, dir, "bad.gz");
    unsigned char *out;
    size_t len;
    dp_err err = { "" };
    for (size_t cut = 2; cut < clen; cut++) {
        write_bytes(bad, comp, cut);
        ck_assert_msg(dp_data_read_all(bad, 1 << 20, &out, &len, &err) == -1,
                      "the first %zu of %zu bytes were accepted", cut, clen);
        ck_assert_msg(strstr(err.msg, bad) && strstr(err.msg, "truncated"), "cut %zu: %s", cut,
                      err.msg);
    }
    memcpy(comp + clen, "garbage", 7);
    write_bytes(bad, comp, clen + 7);
    ck_assert_int_eq(dp_data_read_all(bad, 1 << 20, &out, &len, &err), -1);
    ck_assert_msg(strstr(err.msg, "not gzip data"), "%s", err.msg);
    comp[clen - 6] ^= 1; /* the CRC-32, before the 4-byte length */
    write_bytes(bad, comp, clen);
    ck_assert_int_eq(dp_data_read_all(bad, 1 << 20, &out, &len, &err), -1);
    ck_assert_msg(strstr(err.msg, "corrupt compressed data (incorrect data check)"), "%s",
                  err.msg);
    comp[clen - 6] ^= 1;
    memcpy(comp + clen, comp, clen); /* two members, as `cat a.gz b.gz` */
    write_bytes(bad, comp, 2 * clen);
    ck_assert_msg(dp_data_read_all(bad, 1 << 20, &out, &len, &err) == 0, "%s", err.msg);
    ck_assert(len == 2 * sizeof text && !memcmp(out, text, sizeof text) &&
              !memcmp(out + sizeof text, text, sizeof text));
    free(out);
    ck_assert_int_eq(dp_data_read_all(bad, 5999, &out, &len, &err), -1);
    ck_assert_msg(strstr(err.msg, "more than 5999 bytes"), "%s", err.msg);
    char fifo[4200];
    ck_assert(mkfifo(join(fifo, sizeof fifo, dir, "fifo"), 0600) == 0);
    ck_assert_int_eq(dp_data_read_all(fifo, 1 << 20, &out, &len, &err), -1);
    ck_assert_msg(strstr(err.msg, "is a named pipe"), "%s", err.msg);
    ck_assert_int_eq(dp_data_read_all(dir, 1 << 20, &out, &len, &err), -1);
    ck_assert_msg(strstr(err.msg, "is a directory"), "%s", err.msg);
}
END_TEST

/* First two bytes not 0 0: not an IDX file. */
START_TEST(test_idx_bad_magic)
{
    uint8_t buf[1024];
    size_t len = images_file(buf, IMG_N);
    buf[0] = 0x01;
    expect_idx_fail(buf, len, "bad magic");
    buf[0] = 0;
    buf[1] = 0x08;
    expect_idx_fail(buf, len, "bad magic");
    const char text[] = "P5\n2 3\n255\nabcdef";
    expect_idx_fail((const uint8_t *)text, sizeof text - 1, "not an IDX file");
    expect_idx_fail((const uint8_t *)"\0\0", 2, "not an IDX file"); /* shorter than 4 bytes */
}
END_TEST

/* Type byte other than 0x08 (0x0D float, 0x0B short): unsupported. */
START_TEST(test_idx_bad_type)
{
    uint8_t buf[1024];
    size_t len = images_file(buf, IMG_N);
    buf[2] = 0x0D;
    expect_idx_fail(buf, len, "0x0d is not supported");
    buf[2] = 0x0B;
    expect_idx_fail(buf, len, "0x0b is not supported");
}
END_TEST

/* 0 or 5 dimensions are refused. */
START_TEST(test_idx_bad_ndim)
{
    uint8_t buf[256];
    uint32_t dims[5] = { 1, 1, 1, 1, 1 };
    uint8_t one = 42;
    expect_idx_fail(buf, idx_bytes(buf, 0x08, 0, dims, &one, 1), "0 dimensions");
    expect_idx_fail(buf, idx_bytes(buf, 0x08, 5, dims, &one, 1), "5 dimensions");
    expect_idx_fail(buf, idx_bytes(buf, 0x08, 5, dims, &one, 1), "expected 1 to 4");
    /* 4 dimensions is the most that reads */
    char path[4200];
    join(path, sizeof path, unit_tmpdir(), "four");
    write_bytes(path, buf, idx_bytes(buf, 0x08, 4, dims, &one, 1));
    dp_idx idx;
    dp_err err = { "" };
    ck_assert_msg(dp_idx_read(path, &idx, &err) == 0, "4 dims: %s", err.msg);
    ck_assert_int_eq(idx.ndim, 4);
    ck_assert_uint_eq(idx.data[0], 42);
    dp_idx_free(&idx);
}
END_TEST

/* Current virtual memory size of this process in bytes, or 0 when unknown. */
static size_t vm_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%lu", &pages) != 1)
        pages = 0;
    fclose(f);
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* Dims that multiply past the 4 GiB cap fail cleanly with no allocation: run in a child whose
 * address space cannot grow by more than 256 MiB, so an attempt to allocate shows up as
 * "out of memory" (or a crash) instead of the cap's message. */
START_TEST(test_idx_huge_dims)
{
    static const uint32_t cases[][3] = {
        { 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu }, /* overflows size_t if multiplied blindly */
        { 65536u, 65537u, 1u },                    /* 4 GiB + 64 KiB */
        { 1u, 0xFFFFFFFFu, 2u },
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        uint8_t buf[64];
        uint8_t some[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
        char path[4200];
        join(path, sizeof path, unit_tmpdir(), "huge");
        write_bytes(path, buf, idx_bytes(buf, 0x08, 3, cases[c], some, sizeof some));
        fflush(NULL);
        pid_t pid = fork();
        ck_assert_msg(pid >= 0, "fork failed");
        if (pid == 0) {
            size_t vm = vm_bytes();
            if (vm) {
                struct rlimit rl = { vm + ((size_t)256 << 20), vm + ((size_t)256 << 20) };
                setrlimit(RLIMIT_AS, &rl);
            }
            dp_idx idx;
            dp_err err = { "" };
            int rc = dp_idx_read(path, &idx, &err);
            if (rc == -1 && strstr(err.msg, "multiply to more than"))
                _exit(0);
            fprintf(stderr, "huge dims case %zu: rc %d, message \"%s\"\n", c, rc, err.msg);
            _exit(1);
        }
        int status = 0;
        ck_assert(waitpid(pid, &status, 0) == pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "case %zu (dims %u x %u x %u) did not fail with the cap's message "
                      "(child status 0x%x; see stderr)",
                      c, cases[c][0], cases[c][1], cases[c][2], (unsigned)status);
    }
}
END_TEST

/* A zero dimension is refused. */
START_TEST(test_idx_zero_dim)
{
    uint8_t buf[64];
    uint32_t dims[3] = { 5, 0, 2 };
    expect_idx_fail(buf, idx_bytes(buf, 0x08, 3, dims, NULL, 0), "dimension 1 is 0");
    uint32_t first[1] = { 0 };
    expect_idx_fail(buf, idx_bytes(buf, 0x08, 1, first, NULL, 0), "dimension 0 is 0");
}
END_TEST

/* Bytes beyond what the header announces are refused. */
START_TEST(test_idx_trailing_bytes)
{
    uint8_t buf[1024];
    size_t len = images_file(buf, IMG_N);
    buf[len] = 0;
    expect_idx_fail(buf, len + 1, "longer than its IDX header");
    len = labels_file(buf, IMG_N, good_labels);
    memcpy(buf + len, "junkjunk", 8);
    expect_idx_fail(buf, len + 8, "longer than its IDX header");
}
END_TEST

/* Images and labels of different counts do not make a split. */
START_TEST(test_idx_count_mismatch)
{
    const char *dir = unit_tmpdir();
    char img[4200], lab[4200];
    uint8_t buf[1024];
    write_bytes(join(img, sizeof img, dir, "images"), buf, images_file(buf, IMG_N));
    write_bytes(join(lab, sizeof lab, dir, "labels"), buf, labels_file(buf, 4, good_labels));
    dp_dataset d;
    dp_err err = { "" };
    ck_assert_int_eq(dp_idx_load_split(img, lab, "x", &d, &err), -1);
    ck_assert_msg(strstr(err.msg, "holds 5 images") && strstr(err.msg, "holds 4 labels"),
                  "message: %s", err.msg);
    ck_assert_msg(d.x == NULL && d.y == NULL, "failed split left buffers");
}
END_TEST

/* Labels where images are expected (and images where labels are) fail on the dimension count. */
START_TEST(test_idx_wrong_file_kind)
{
    char img[4200], lab[4200];
    write_good_pair(unit_tmpdir(), img, lab, sizeof img);
    dp_dataset d;
    dp_err err = { "" };
    ck_assert_int_eq(dp_idx_load_split(lab, lab, "x", &d, &err), -1);
    ck_assert_msg(strstr(err.msg, "expected images (3 dimensions") &&
                      strstr(err.msg, "found 1 dimensions") && strstr(err.msg, lab),
                  "message: %s", err.msg);
    ck_assert_int_eq(dp_idx_load_split(img, img, "x", &d, &err), -1);
    ck_assert_msg(strstr(err.msg, "expected labels (1 dimension)") &&
                      strstr(err.msg, "found 3 dimensions"),
                  "message: %s", err.msg);
}
END_TEST

/* A nonexistent path fails naming it, alone or as either half of a split. */
START_TEST(test_idx_missing_path)
{
    const char *dir = unit_tmpdir();
    char img[4200], lab[4200], none[4200];
    write_good_pair(dir, img, lab, sizeof img);
    join(none, sizeof none, dir, "no-such-file");
    dp_idx idx;
    dp_err err = { "" };
    ck_assert_int_eq(dp_idx_read(none, &idx, &err), -1);
    ck_assert_msg(strstr(err.msg, none) && strstr(err.msg, "cannot open"), "message: %s",
                  err.msg);
    dp_dataset d;
    ck_assert_int_eq(dp_idx_load_split(img, none, "x", &d, &err), -1);
    ck_assert_msg(strstr(err.msg, none) != NULL, "message: %s", err.msg);
    ck_assert_int_eq(dp_idx_load_split(none, lab, "x", &d, &err), -1);
    ck_assert_msg(strstr(err.msg, none) != NULL, "message: %s", err.msg);
}
END_TEST

/* An empty file is not an IDX file. */
START_TEST(test_idx_empty_file)
{
    expect_idx_fail((const uint8_t *)"", 0, "the file is empty");
}
END_TEST

/* ---- dp_data_load on a directory ---- */

#define TRAIN_N 12
#define TEST_N 4

/* Writes the four MNIST-named files into dir: train images plain, train labels .gz, test
 * images .gz, test labels plain. Train labels go up to 8, test labels up to 9. */
static void write_mnist_dir(const char *dir, const uint8_t *train_lab, const uint8_t *test_lab)
{
    char path[4200];
    uint8_t buf[4096];
    write_bytes(join(path, sizeof path, dir, "train-images-idx3-ubyte"), buf,
                images_file(buf, TRAIN_N));
    write_gz(join(path, sizeof path, dir, "train-labels-idx1-ubyte.gz"), buf,
             labels_file(buf, TRAIN_N, train_lab));
    write_gz(join(path, sizeof path, dir, "t10k-images-idx3-ubyte.gz"), buf,
             images_file(buf, TEST_N));
    write_bytes(join(path, sizeof path, dir, "t10k-labels-idx1-ubyte"), buf,
                labels_file(buf, TEST_N, test_lab));
}

/* kind = idx reads the four files, plain or .gz; data.limit cuts the training set only. */
/* ---- CIFAR-10 ---- */

#define CIFAR_RECORD 3073

/* Writes dir's five training batches of `per` records and a test batch of 2: record r of batch
 * b has label (b + r) % 10 and pixel i = (r + 7 * i + b) % 256. */
static void write_cifar_dir(const char *dir, int per)
{
    char path[4200];
    unsigned char *buf = malloc((size_t)per * CIFAR_RECORD);
    ck_assert(buf != NULL);
    for (int b = 1; b <= 6; b++) {
        int records = b == 6 ? 2 : per;
        for (int r = 0; r < records; r++) {
            buf[r * CIFAR_RECORD] = (unsigned char)((b + r) % 10);
            for (int i = 0; i < 3072; i++)
                buf[r * CIFAR_RECORD + 1 + i] = (unsigned char)((r + 7 * i + b) % 256);
        }
        if (b == 6)
            join(path, sizeof path, dir, "test_batch.bin");
        else
            snprintf(path, sizeof path, "%s/data_batch_%d.bin", dir, b);
        write_bytes(path, buf, (size_t)records * CIFAR_RECORD);
    }
    free(buf);
}

/* The five training batches in order, then the test batch: labels, CHW pixels / 255, shape. */
START_TEST(test_cifar_load)
{
    const char *dir = unit_tmpdir();
    write_cifar_dir(dir, 3);
    dp_data_config c = dp_data_defaults();
    c.kind = DP_DATA_CIFAR10;
    snprintf(c.path, sizeof c.path, "%s", dir);
    dp_dataset train, test;
    dp_err err = { "" };
    ck_assert_msg(dp_data_load(&c, 1, &train, &test, &err) == 0, "load: %s", err.msg);
    ck_assert_int_eq(train.n, 15);
    ck_assert_int_eq(test.n, 2);
    ck_assert_int_eq(train.features, 3072);
    ck_assert(train.channels == 3 && train.height == 32 && train.width == 32);
    ck_assert_int_eq(train.classes, 10);
    for (int b = 1; b <= 5; b++)
        for (int r = 0; r < 3; r++) {
            long s = (b - 1) * 3 + r;
            ck_assert_int_eq(train.y[s], (b + r) % 10);
            for (int i = 0; i < 3072; i += 1021) /* red, green and blue planes */
                ck_assert_msg(train.x[s * 3072 + i] == (float)((r + 7 * i + b) % 256) / 255.0f,
                              "sample %ld pixel %d is %g", s, i, train.x[s * 3072 + i]);
        }
    ck_assert_int_eq(test.y[1], (6 + 1) % 10);
    dp_dataset_free(&train);
    dp_dataset_free(&test);
}
END_TEST

/* A truncated batch, a label past 9 and a missing batch are refused, naming the file. */
START_TEST(test_cifar_malformed)
{
    const char *dir = unit_tmpdir();
    char path[4200];
    dp_data_config c = dp_data_defaults();
    c.kind = DP_DATA_CIFAR10;
    snprintf(c.path, sizeof c.path, "%s", dir);
    dp_dataset train, test;
    dp_err err = { "" };

    write_cifar_dir(dir, 2);
    snprintf(path, sizeof path, "%s/data_batch_3.bin", dir);
    unsigned char rec[CIFAR_RECORD + 5] = { 0 };
    write_bytes(path, rec, sizeof rec); /* one record and 5 bytes */
    ck_assert_int_eq(dp_data_load(&c, 1, &train, &test, &err), -1);
    ck_assert_msg(strstr(err.msg, "data_batch_3.bin: 3078 bytes is not a whole number"),
                  "%s", err.msg);

    write_cifar_dir(dir, 2);
    rec[0] = 10;
    write_bytes(path, rec, CIFAR_RECORD);
    ck_assert_int_eq(dp_data_load(&c, 1, &train, &test, &err), -1);
    ck_assert_msg(strstr(err.msg, "data_batch_3.bin: record 0 has label 10"), "%s", err.msg);

    write_cifar_dir(dir, 2);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(dp_data_load(&c, 1, &train, &test, &err), -1);
    ck_assert_msg(strstr(err.msg, "data_batch_3.bin: cannot open"), "%s", err.msg);

    snprintf(c.path, sizeof c.path, "%s/none", dir);
    ck_assert_int_eq(dp_data_load(&c, 1, &train, &test, &err), -1);
    ck_assert_msg(strstr(err.msg, "needs data.path"), "%s", err.msg);
}
END_TEST

/* A text of 1000 bytes with context 8: the training part is the first 900 bytes in windows of
 * 8 inputs and the 8 next bytes as targets; the test part the last 100; plain and gzip read
 * alike. */
START_TEST(test_text_load)
{
    const char *dir = unit_tmpdir();
    unsigned char text[1000];
    for (int i = 0; i < 1000; i++)
        text[i] = (unsigned char)(i * 7 % 251);
    char path[4200];
    for (int gz = 0; gz < 2; gz++) {
        snprintf(path, sizeof path, "%s/corpus.txt%s", dir, gz ? ".gz" : "");
        if (gz)
            write_gz(path, text, sizeof text);
        else
            write_bytes(path, text, sizeof text);
        dp_data_config c = dp_data_defaults();
        c.kind = DP_DATA_TEXT;
        c.context = 8;
        snprintf(c.path, sizeof c.path, "%s", path);
        dp_dataset train, test;
        dp_err err = { "" };
        ck_assert_msg(dp_data_load(&c, 1, &train, &test, &err) == 0, "%s: %s", path, err.msg);
        ck_assert_int_eq(train.n, (900 - 1) / 8);
        ck_assert_int_eq(test.n, (100 - 1) / 8);
        ck_assert(train.features == 8 && train.targets == 8 && train.classes == 256);
        ck_assert_int_eq(train.channels, 0);
        for (long s = 0; s < train.n; s++)
            for (int t = 0; t < 8; t++) {
                ck_assert(train.x[s * 8 + t] == (float)text[s * 8 + t]);
                ck_assert(train.y[s * 8 + t] == text[s * 8 + t + 1]);
            }
        ck_assert(test.x[0] == (float)text[900] && test.y[8 * test.n - 1] == text[900 + 8 * test.n]);
        dp_dataset_free(&train);
        dp_dataset_free(&test);
    }
}
END_TEST

/* Too short a text for its context, a missing file and no path are refused with a message. */
START_TEST(test_text_malformed)
{
    const char *dir = unit_tmpdir();
    char path[4200];
    unsigned char text[300] = { 'a' };
    snprintf(path, sizeof path, "%s/short.txt", dir);
    write_bytes(path, text, sizeof text);
    dp_data_config c = dp_data_defaults();
    c.kind = DP_DATA_TEXT;
    c.context = 32;
    snprintf(c.path, sizeof c.path, "%s", path);
    dp_dataset train, test;
    dp_err err = { "" };
    ck_assert_int_eq(dp_data_load(&c, 1, &train, &test, &err), -1);
    ck_assert_msg(strstr(err.msg, "300 bytes of text are too few for data.context = 32"), "%s",
                  err.msg);
    snprintf(c.path, sizeof c.path, "%s/none.txt", dir);
    ck_assert_int_eq(dp_data_load(&c, 1, &train, &test, &err), -1);
    ck_assert_msg(strstr(err.msg, "none.txt: cannot open"), "%s", err.msg);
    c.path[0] = '\0';
    ck_assert_int_eq(dp_data_load(&c, 1, &train, &test, &err), -1);
    ck_assert_msg(strstr(err.msg, "data.kind = text needs data.path"), "%s", err.msg);
}
END_TEST

START_TEST(test_data_load_idx_dir)
{
    const char *dir = unit_tmpdir();
    static const uint8_t train_lab[TRAIN_N] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2 };
    static const uint8_t test_lab[TEST_N] = { 9, 0, 1, 2 };
    write_mnist_dir(dir, train_lab, test_lab);

    dp_data_config c = dp_data_defaults();
    c.kind = DP_DATA_IDX;
    snprintf(c.path, sizeof c.path, "%s", dir);
    dp_dataset train, test;
    dp_err err = { "" };
    ck_assert_msg(dp_data_load(&c, 1, &train, &test, &err) == 0, "load: %s", err.msg);
    ck_assert_int_eq(train.n, TRAIN_N);
    ck_assert_int_eq(test.n, TEST_N);
    ck_assert_int_eq(train.features, IMG_H * IMG_W);
    ck_assert_int_eq(test.features, IMG_H * IMG_W);
    /* classes: the larger of the two splits' max label + 1, the same for both */
    ck_assert_int_eq(train.classes, 10);
    ck_assert_int_eq(test.classes, 10);
    for (long i = 0; i < TRAIN_N; i++) {
        ck_assert_int_eq(train.y[i], train_lab[i]);
        ck_assert_msg(train.x[i * IMG_H * IMG_W + 3] == (float)pixel(i, 3) / 255.0f,
                      "train x[%ld][3] = %g", i, train.x[i * IMG_H * IMG_W + 3]);
    }
    for (long i = 0; i < TEST_N; i++)
        ck_assert_int_eq(test.y[i], test_lab[i]);
    ck_assert_msg(strstr(train.name, "train") && strstr(test.name, "test"), "names %s, %s",
                  train.name, test.name);
    dp_dataset_free(&train);
    dp_dataset_free(&test);

    c.limit = 7;
    ck_assert_msg(dp_data_load(&c, 1, &train, &test, &err) == 0, "load: %s", err.msg);
    ck_assert_int_eq(train.n, 7);
    ck_assert_int_eq(test.n, TEST_N);
    for (long i = 0; i < 7; i++)
        ck_assert_int_eq(train.y[i], train_lab[i]); /* the first 7, in file order */
    dp_dataset_free(&train);
    dp_dataset_free(&test);

    c.limit = 1000; /* more than there is: all of it */
    ck_assert_msg(dp_data_load(&c, 1, &train, &test, &err) == 0, "load: %s", err.msg);
    ck_assert_int_eq(train.n, TRAIN_N);
    dp_dataset_free(&train);
    dp_dataset_free(&test);
}
END_TEST

/* kind = mnist always has 10 classes, and refuses labels past 9. */
START_TEST(test_data_load_mnist_classes)
{
    static const uint8_t train_lab[TRAIN_N] = { 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3 };
    static const uint8_t test_lab[TEST_N] = { 0, 1, 2, 3 };
    char dir[4096], dir2[4096];
    snprintf(dir, sizeof dir, "%s", unit_tmpdir());
    snprintf(dir2, sizeof dir2, "%s", unit_tmpdir());
    write_mnist_dir(dir, train_lab, test_lab);
    dp_data_config c = dp_data_defaults();
    c.kind = DP_DATA_MNIST;
    snprintf(c.path, sizeof c.path, "%s", dir);
    dp_dataset train, test;
    dp_err err = { "" };
    ck_assert_msg(dp_data_load(&c, 1, &train, &test, &err) == 0, "load: %s", err.msg);
    ck_assert_int_eq(train.classes, 10);
    ck_assert_int_eq(test.classes, 10);
    dp_dataset_free(&train);
    dp_dataset_free(&test);

    static const uint8_t wide_lab[TRAIN_N] = { 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 12 };
    write_mnist_dir(dir2, wide_lab, test_lab);
    snprintf(c.path, sizeof c.path, "%s", dir2);
    ck_assert_int_eq(dp_data_load(&c, 1, &train, &test, &err), -1);
    ck_assert_msg(strstr(err.msg, "data.kind = idx") != NULL, "message: %s", err.msg);
}
END_TEST

/* A missing directory (or a file given as data.path) fails naming the path. */
START_TEST(test_data_load_missing_dir)
{
    const char *dir = unit_tmpdir();
    dp_data_config c = dp_data_defaults();
    c.kind = DP_DATA_IDX;
    snprintf(c.path, sizeof c.path, "%s/no-such-dir", dir);
    dp_dataset train, test;
    dp_err err = { "" };
    ck_assert_int_eq(dp_data_load(&c, 1, &train, &test, &err), -1);
    ck_assert_msg(strstr(err.msg, c.path) != NULL, "message \"%s\" does not name %s", err.msg,
                  c.path);

    char file[4200];
    write_bytes(join(file, sizeof file, dir, "plain-file"), "x", 1);
    snprintf(c.path, sizeof c.path, "%s", file);
    ck_assert_int_eq(dp_data_load(&c, 1, &train, &test, &err), -1);
    ck_assert_msg(strstr(err.msg, file) && strstr(err.msg, "not a directory"), "message: %s",
                  err.msg);

    /* a directory without the files names the file it looked for */
    snprintf(c.path, sizeof c.path, "%s", dir);
    ck_assert_int_eq(dp_data_load(&c, 1, &train, &test, &err), -1);
    ck_assert_msg(strstr(err.msg, "train-images-idx3-ubyte") != NULL, "message: %s", err.msg);
}
END_TEST

/* ---- the loader ---- */

/* n samples of 2 features: x = (i, -i), y = i % 7. */
static void make_indexed(dp_dataset *d, long n)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    d->features = 2;
    d->classes = 7;
    d->targets = 1;
    d->x = malloc((size_t)n * 2 * sizeof *d->x);
    d->y = malloc((size_t)n * sizeof *d->y);
    ck_assert(d->x && d->y);
    for (long i = 0; i < n; i++) {
        d->x[2 * i] = (float)i;
        d->x[2 * i + 1] = (float)-i;
        d->y[i] = (int32_t)(i % 7);
    }
}

/* Reads one epoch's order through dp_loader_next into order[n], checking each row's x and y
 * belong to the same sample. */
static void read_epoch(dp_loader *l, int32_t *order)
{
    long n = l->ds->n;
    float *x = malloc((size_t)l->batch * 2 * sizeof *x);
    int32_t *y = malloc((size_t)l->batch * sizeof *y), *idx = malloc((size_t)l->batch * 4);
    ck_assert(x && y && idx);
    long got = 0;
    for (long s = 0; s < dp_loader_steps_per_epoch(l); s++) {
        int rows = dp_loader_next(l, x, y, idx);
        ck_assert_msg(rows > 0 && rows <= l->batch, "batch of %d rows", rows);
        for (int r = 0; r < rows; r++) {
            long i = (long)x[2 * r];
            ck_assert_msg(i >= 0 && i < n && x[2 * r + 1] == (float)-i && y[r] == i % 7 &&
                              idx[r] == i,
                          "row %d of step %ld is not one sample: x (%g, %g) y %d index %d", r,
                          s, x[2 * r], x[2 * r + 1], y[r], idx[r]);
            ck_assert_msg(got < n, "more than %ld samples in an epoch", n);
            order[got++] = (int32_t)i;
        }
    }
    ck_assert_int_eq(got, n);
    free(x);
    free(y);
    free(idx);
}

static void assert_permutation(const int32_t *order, long n)
{
    char *seen = calloc((size_t)n, 1);
    ck_assert(seen != NULL);
    for (long k = 0; k < n; k++) {
        ck_assert_msg(order[k] >= 0 && order[k] < n, "sample %d out of range", order[k]);
        ck_assert_msg(!seen[order[k]], "sample %d appears twice in one epoch", order[k]);
        seen[order[k]] = 1;
    }
    free(seen);
}

/* Without shuffling: file order, a short last batch (10 by 4: 4, 4, 2), then the next epoch. */
START_TEST(test_loader_file_order)
{
    dp_dataset d;
    make_indexed(&d, 10);
    dp_loader l;
    dp_err err = { "" };
    ck_assert_msg(dp_loader_init(&l, &d, 4, false, 7, &err) == 0, "init: %s", err.msg);
    ck_assert_int_eq(dp_loader_steps_per_epoch(&l), 3);
    float x[8];
    int32_t y[4];
    static const int want_rows[] = { 4, 4, 2, 4, 4, 2, 4 };
    long next = 0;
    for (int s = 0; s < 7; s++) {
        ck_assert_int_eq(l.epoch, s / 3);
        int rows = dp_loader_next(&l, x, y, NULL);
        ck_assert_msg(rows == want_rows[s], "step %d: %d rows, want %d", s, rows, want_rows[s]);
        for (int r = 0; r < rows; r++) {
            ck_assert_msg(x[2 * r] == (float)next && y[r] == next % 7,
                          "step %d row %d: sample %g, want %ld", s, r, x[2 * r], next);
            next = (next + 1) % 10;
        }
    }
    ck_assert_int_eq(l.epoch, 2);
    dp_loader_free(&l);

    /* an exact multiple has no short batch: 12 by 4 */
    dp_dataset_free(&d);
    make_indexed(&d, 12);
    ck_assert(dp_loader_init(&l, &d, 4, false, 7, &err) == 0);
    ck_assert_int_eq(dp_loader_steps_per_epoch(&l), 3);
    for (int s = 0; s < 3; s++)
        ck_assert_int_eq(dp_loader_next(&l, NULL, NULL, NULL), 4);
    ck_assert_int_eq(l.epoch, 1);
    dp_loader_free(&l);
    dp_dataset_free(&d);
}
END_TEST

/* With shuffling: every epoch is a permutation, not file order, and differs from the last. */
START_TEST(test_loader_shuffle_permutation)
{
    enum { N = 100 };
    dp_dataset d;
    make_indexed(&d, N);
    dp_loader l;
    dp_err err = { "" };
    ck_assert(dp_loader_init(&l, &d, 7, true, 42, &err) == 0);
    ck_assert_int_eq(dp_loader_steps_per_epoch(&l), 15);
    int32_t e1[N], e2[N], e3[N];
    read_epoch(&l, e1);
    ck_assert_int_eq(l.epoch, 1);
    read_epoch(&l, e2);
    read_epoch(&l, e3);
    assert_permutation(e1, N);
    assert_permutation(e2, N);
    assert_permutation(e3, N);
    int in_place = 0;
    for (int i = 0; i < N; i++)
        in_place += e1[i] == i;
    ck_assert_msg(in_place < N / 2, "%d of %d samples in file order: not shuffled", in_place, N);
    ck_assert_msg(memcmp(e1, e2, sizeof e1) != 0, "epoch 2 repeats epoch 1's order");
    ck_assert_msg(memcmp(e2, e3, sizeof e2) != 0, "epoch 3 repeats epoch 2's order");
    dp_loader_free(&l);
    dp_dataset_free(&d);
}
END_TEST

/* The order depends on the seed: same seed same order, other seed other order. */
START_TEST(test_loader_seeds)
{
    enum { N = 50 };
    dp_dataset d;
    make_indexed(&d, N);
    dp_loader a, b, c;
    dp_err err = { "" };
    ck_assert(dp_loader_init(&a, &d, 8, true, 1234, &err) == 0);
    ck_assert(dp_loader_init(&b, &d, 8, true, 1234, &err) == 0);
    ck_assert(dp_loader_init(&c, &d, 8, true, 1235, &err) == 0);
    int32_t oa[N], ob[N], oc[N];
    for (int epoch = 0; epoch < 2; epoch++) {
        read_epoch(&a, oa);
        read_epoch(&b, ob);
        read_epoch(&c, oc);
        ck_assert_msg(memcmp(oa, ob, sizeof oa) == 0, "epoch %d: same seed, different order",
                      epoch);
        ck_assert_msg(memcmp(oa, oc, sizeof oa) != 0, "epoch %d: other seed, same order",
                      epoch);
    }
    dp_loader_free(&a);
    dp_loader_free(&b);
    dp_loader_free(&c);
    dp_dataset_free(&d);
}
END_TEST

/* The prefetch, with its thread or without, gathering everything or the indices only and from
 * a resumed position, hands out the batches dp_loader_next gives, in the same order. */
static void check_prefetch(const dp_dataset *d, bool thread, bool indices_only, long position)
{
    enum { BATCH = 7, STEPS = 40 };
    dp_err err = { "" };
    dp_loader ref, l;
    ck_assert(dp_loader_init(&ref, d, BATCH, true, 99, &err) == 0);
    ck_assert(dp_loader_init(&l, d, BATCH, true, 99, &err) == 0);
    ck_assert(dp_loader_seek(&ref, 2, position, &err) == 0);
    ck_assert(dp_loader_seek(&l, 2, position, &err) == 0);
    dp_prefetch *p = dp_prefetch_create(&l, 2, 1, (dp_host_memory){ malloc, free }, &err);
    ck_assert_msg(p != NULL, "%s", err.msg);
    ck_assert(dp_prefetch_start(p, thread, indices_only, &err) == 0);
    float x[BATCH * 2];
    int32_t y[BATCH], idx[BATCH];
    for (int s = 0; s < STEPS; s++) {
        long epoch = ref.epoch + 1, start = ref.pos;
        int rows = dp_loader_next(&ref, x, y, idx);
        dp_batch *b = dp_prefetch_next(p);
        dp_prefetch_ahead(p);
        ck_assert_int_eq(b->rows, rows);
        ck_assert_int_eq(b->epoch, epoch);
        ck_assert_int_eq(b->start, start);
        ck_assert(b->epoch_end == (ref.pos == 0));
        ck_assert(memcmp(b->idx, idx, (size_t)rows * sizeof *idx) == 0);
        if (!indices_only) {
            ck_assert(memcmp(b->x, x, (size_t)rows * 2 * sizeof *x) == 0);
            ck_assert(memcmp(b->y, y, (size_t)rows * sizeof *y) == 0);
        }
        dp_prefetch_release(p, b);
    }
    dp_prefetch_destroy(p);
    dp_loader_free(&ref);
    dp_loader_free(&l);
}

START_TEST(test_prefetch_order)
{
    dp_dataset d;
    make_indexed(&d, 30);
    for (int thread = 0; thread < 2; thread++)
        for (int indices_only = 0; indices_only < 2; indices_only++) {
            check_prefetch(&d, thread, indices_only, 0);
            check_prefetch(&d, thread, indices_only, 12);
        }
    /* a thread stopped while it waits for a full batch to be handed back */
    dp_err err = { "" };
    dp_loader l;
    ck_assert(dp_loader_init(&l, &d, 4, false, 1, &err) == 0);
    dp_prefetch *p = dp_prefetch_create(&l, 2, 1, (dp_host_memory){ malloc, free }, &err);
    ck_assert(p && dp_prefetch_start(p, true, false, &err) == 0);
    dp_prefetch_destroy(p);
    dp_prefetch_destroy(NULL);
    dp_loader_free(&l);
    dp_dataset_free(&d);
}
END_TEST

/* ---- synthetic data ---- */

static dp_data_config synthetic_config(void)
{
    dp_data_config c = dp_data_defaults();
    c.kind = DP_DATA_SYNTHETIC;
    c.features = 8;
    c.classes = 4;
    c.samples = 2000;
    c.test_samples = 500;
    return c;
}

/* The same seed gives the same data; another seed other data. */
START_TEST(test_synthetic_deterministic)
{
    dp_data_config c = synthetic_config();
    dp_dataset tr1, te1, tr2, te2, tr3, te3;
    dp_err err = { "" };
    ck_assert_msg(dp_data_load(&c, 5, &tr1, &te1, &err) == 0, "load: %s", err.msg);
    ck_assert_msg(dp_data_load(&c, 5, &tr2, &te2, &err) == 0, "load: %s", err.msg);
    ck_assert_msg(dp_data_load(&c, 6, &tr3, &te3, &err) == 0, "load: %s", err.msg);
    ck_assert_int_eq(tr1.n, 2000);
    ck_assert_int_eq(te1.n, 500);
    ck_assert_int_eq(tr1.features, 8);
    ck_assert_int_eq(tr1.classes, 4);
    ck_assert_int_eq(te1.classes, 4);
    size_t xb = (size_t)2000 * 8 * sizeof(float), tb = (size_t)500 * 8 * sizeof(float);
    ck_assert_msg(memcmp(tr1.x, tr2.x, xb) == 0, "train x differ for one seed");
    ck_assert_msg(memcmp(tr1.y, tr2.y, 2000 * sizeof(int32_t)) == 0, "train y differ");
    ck_assert_msg(memcmp(te1.x, te2.x, tb) == 0, "test x differ for one seed");
    ck_assert_msg(memcmp(te1.y, te2.y, 500 * sizeof(int32_t)) == 0, "test y differ");
    ck_assert_msg(memcmp(tr1.x, tr3.x, xb) != 0, "seeds 5 and 6 give the same inputs");
    ck_assert_msg(memcmp(tr1.y, tr3.y, 2000 * sizeof(int32_t)) != 0,
                  "seeds 5 and 6 give the same labels");
    dp_dataset_free(&tr1);
    dp_dataset_free(&te1);
    dp_dataset_free(&tr2);
    dp_dataset_free(&te2);
    dp_dataset_free(&tr3);
    dp_dataset_free(&te3);
}
END_TEST

/* Labels lie in [0, classes) and every class appears; inputs are finite. */
/* Sizes from the configuration are checked in 64 bits before anything is allocated: samples
 * x features and batch x features beyond DP_DATA_MAX_VALUES are refused with the limit, and no
 * message holds a negative number. */
START_TEST(test_data_sizes)
{
    dp_data_config c = synthetic_config();
    dp_dataset tr, te;
    dp_err err = { "" };
    c.samples = 1000000000;
    c.features = 1 << 20;
    ck_assert_int_eq(dp_data_load(&c, 1, &tr, &te, &err), -1);
    ck_assert_msg(strstr(err.msg, "data.samples = 1000000000 samples of data.features = 1048576 "
                                  "values each is more than the 4294967296 values"),
                  "%s", err.msg);
    c = synthetic_config();
    c.test_samples = 4295;
    c.features = 1000000;
    ck_assert_int_eq(dp_data_load(&c, 1, &tr, &te, &err), -1);
    ck_assert_msg(strstr(err.msg, "lower data.test_samples"), "%s", err.msg);
    c = synthetic_config();
    c.samples = c.test_samples = 2;
    c.features = 8192;
    c.batch = 1 << 20;
    ck_assert_int_eq(dp_data_load(&c, 1, &tr, &te, &err), -1);
    ck_assert_msg(strstr(err.msg, "data.batch = 1048576 samples of 8192 values each is more "
                                  "than the 4294967296 values a batch may hold"),
                  "%s", err.msg);
    ck_assert_msg(!strchr(err.msg, '-'), "%s", err.msg);
    c.batch = 1 << 19;
    ck_assert_msg(dp_data_load(&c, 1, &tr, &te, &err) == 0, "%s", err.msg);
    dp_dataset_free(&tr);
    dp_dataset_free(&te);
}
END_TEST

START_TEST(test_synthetic_labels)
{
    dp_data_config c = synthetic_config();
    for (uint64_t seed = 1; seed <= 3; seed++) {
        dp_dataset tr, te;
        dp_err err = { "" };
        ck_assert_msg(dp_data_load(&c, seed, &tr, &te, &err) == 0, "load: %s", err.msg);
        long count[4] = { 0 };
        for (long i = 0; i < tr.n; i++) {
            ck_assert_msg(tr.y[i] >= 0 && tr.y[i] < 4, "seed %llu: label %d out of range",
                          (unsigned long long)seed, tr.y[i]);
            count[tr.y[i]]++;
        }
        for (long i = 0; i < te.n; i++)
            ck_assert_msg(te.y[i] >= 0 && te.y[i] < 4, "test label %d", te.y[i]);
        for (int k = 0; k < 4; k++)
            ck_assert_msg(count[k] > 0, "seed %llu: class %d never appears (%ld %ld %ld %ld)",
                          (unsigned long long)seed, k, count[0], count[1], count[2], count[3]);
        for (long i = 0; i < tr.n * tr.features; i++)
            ck_assert_msg(tr.x[i] == tr.x[i] && tr.x[i] > -100 && tr.x[i] < 100, "x[%ld] = %g",
                          i, tr.x[i]);
        dp_dataset_free(&tr);
        dp_dataset_free(&te);
    }
}
END_TEST

/* Train and test draw different inputs; data.limit applies to synthetic train too. */
START_TEST(test_synthetic_train_test_differ)
{
    dp_data_config c = synthetic_config();
    dp_dataset tr, te;
    dp_err err = { "" };
    ck_assert_msg(dp_synthetic_make(&c, 9, &tr, &te, &err) == 0, "make: %s", err.msg);
    ck_assert_msg(memcmp(tr.x, te.x, (size_t)te.n * te.features * sizeof(float)) != 0,
                  "the test inputs repeat the training inputs");
    long same = 0;
    for (long i = 0; i < te.n * te.features; i++)
        same += tr.x[i] == te.x[i];
    ck_assert_msg(same < 10, "%ld test inputs equal the training input at the same place",
                  same);
    dp_dataset_free(&tr);
    dp_dataset_free(&te);

    c.limit = 300;
    ck_assert_msg(dp_data_load(&c, 9, &tr, &te, &err) == 0, "load: %s", err.msg);
    ck_assert_int_eq(tr.n, 300);
    ck_assert_int_eq(te.n, 500);
    dp_dataset_free(&tr);
    dp_dataset_free(&te);
}
END_TEST

Suite *idx_suite(void)
{
    Suite *s = suite_create("idx");
    TCase *tc = tcase_create("idx");
    tcase_add_test(tc, test_idx_read_images);
    tcase_add_test(tc, test_idx_load_split);
    tcase_add_test(tc, test_idx_gzip);
    tcase_add_test(tc, test_idx_truncated);
    tcase_add_test(tc, test_idx_gzip_truncated);
    tcase_add_test(tc, test_data_gzip_damaged);
    tcase_add_test(tc, test_idx_bad_magic);
    tcase_add_test(tc, test_idx_bad_type);
    tcase_add_test(tc, test_idx_bad_ndim);
    tcase_add_test(tc, test_idx_huge_dims);
    tcase_add_test(tc, test_idx_zero_dim);
    tcase_add_test(tc, test_idx_trailing_bytes);
    tcase_add_test(tc, test_idx_count_mismatch);
    tcase_add_test(tc, test_idx_wrong_file_kind);
    tcase_add_test(tc, test_idx_missing_path);
    tcase_add_test(tc, test_idx_empty_file);
    suite_add_tcase(s, tc);

    TCase *data = tcase_create("data");
    tcase_add_test(data, test_data_load_idx_dir);
    tcase_add_test(data, test_cifar_load);
    tcase_add_test(data, test_cifar_malformed);
    tcase_add_test(data, test_text_load);
    tcase_add_test(data, test_text_malformed);
    tcase_add_test(data, test_data_load_mnist_classes);
    tcase_add_test(data, test_data_load_missing_dir);
    suite_add_tcase(s, data);

    TCase *loader = tcase_create("loader");
    tcase_add_test(loader, test_loader_file_order);
    tcase_add_test(loader, test_loader_shuffle_permutation);
    tcase_add_test(loader, test_loader_seeds);
    tcase_add_test(loader, test_prefetch_order);
    suite_add_tcase(s, loader);

    TCase *syn = tcase_create("synthetic");
    tcase_add_test(syn, test_synthetic_deterministic);
    tcase_add_test(syn, test_synthetic_labels);
    tcase_add_test(syn, test_data_sizes);
    tcase_add_test(syn, test_synthetic_train_test_differ);
    suite_add_tcase(s, syn);
    return s;
}
