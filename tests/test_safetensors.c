/* test_safetensors.c -- safetensors round trip and layout, hand-built bad files, and the atomic
 * replacement of the file being saved. */
#include "tests/unit.h"

#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fileio.h"
#include "engine/checkpoint.h"
#include "engine/model.h"
#include "engine/optim.h"
#include "engine/safetensors.h"

/* The model every test uses: 4 -> linear:5 -> relu -> linear:3; 43 parameters. */
#define SPEC "linear:5, relu, linear:3"
#define N_PARAMS (5 * 4 + 5 + 3 * 5 + 3)

/* Its four tensors as a hand-written header entry each, data laid out in state_dict order. */
#define E_W0 "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[5,4],\"data_offsets\":[0,80]}"
#define E_B0 "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[80,100]}"
#define E_W2 "\"2.weight\":{\"dtype\":\"F32\",\"shape\":[3,5],\"data_offsets\":[100,160]}"
#define E_B2 "\"2.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[160,172]}"

/* ---- helpers ---- */

static void make_model(dp_model *m, const char *spec)
{
    dp_err err = { "" };
    ck_assert_msg(dp_model_parse(m, spec, 4, 3, &err) == 0, "dp_model_parse(%s): %s", spec,
                  err.msg);
}

/* Distinct values, among them -0, subnormals and the largest floats, so that only a bit-exact
 * copy compares equal (NaN and infinities are refused on loading: test_st_non_finite). */
static void fill(float *host, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        host[i] = scale * (float)(i + 1) * (i % 2 ? -0.37f : 0.61f);
    host[3] = -0.0f;
    host[7] = 1e-40f;
    host[11] = FLT_MAX;
    host[13] = -FLT_MAX;
    host[17] = -1e-45f;
}

static const char *join(char *buf, size_t size, const char *dir, const char *name)
{
    snprintf(buf, size, "%s/%s", dir, name);
    return buf;
}

static void write_bytes(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_msg(fwrite(buf, 1, len, f) == len, "cannot write %s", path);
    ck_assert_msg(fclose(f) == 0, "cannot close %s", path);
}

/* The whole file, malloc'd; its length in *len. */
static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    ck_assert(buf != NULL);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert(buf != NULL);
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Entries of dir whose name holds "tmp" (the atomic writer's temporary files). */
static int count_tmp_files(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot list %s", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strstr(e->d_name, "tmp") != NULL;
    closedir(d);
    return n;
}

/* A safetensors image: 8-byte little-endian length, the header padded with spaces to a multiple
 * of 8, then data_len bytes of data. hlen_override (when not 0) replaces the length field.
 * Returns the image's length. */
static size_t st_image(unsigned char *out, const char *header, const void *data,
                       size_t data_len, uint64_t hlen_override)
{
    size_t h = strlen(header);
    size_t padded = (h + 7) / 8 * 8;
    uint64_t field = hlen_override ? hlen_override : padded;
    for (int b = 0; b < 8; b++)
        out[b] = (unsigned char)(field >> (8 * b));
    memcpy(out + 8, header, h);
    memset(out + 8 + h, ' ', padded - h);
    if (data_len)
        memcpy(out + 8 + padded, data, data_len);
    return 8 + padded + data_len;
}

/* Data bytes for model m and host in state_dict order (172 bytes for the usual model). */
static size_t state_dict_data(const dp_model *m, const float *host, float *out)
{
    dp_model_tensor t[8];
    int n = dp_model_tensors(m, NULL);
    ck_assert_int_le(n, 8);
    dp_model_tensors(m, t);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        memcpy(out + at, host + t[i].info.offset, t[i].info.count * sizeof(float));
        at += t[i].info.count;
    }
    return at * sizeof(float);
}

/* The image with `header` and the usual model's data must be refused, by dp_safetensors_parse
 * on the buffer and by dp_safetensors_load on a file, with messages holding want and want2
 * (when not NULL) and the source's name. */
static void expect_fail_image(const unsigned char *buf, size_t len, const char *want,
                              const char *want2)
{
    dp_model m;
    make_model(&m, SPEC);
    float host[N_PARAMS];
    fill(host, N_PARAMS, 1.0f);
    dp_err err = { "" };
    int rc = dp_safetensors_parse(buf, len, "in-memory", &m, host, &err);
    ck_assert_msg(rc == -1, "parse accepted a bad image (want \"%s\")", want);
    ck_assert_msg(strstr(err.msg, want) != NULL, "parse message \"%s\" lacks \"%s\"", err.msg,
                  want);
    ck_assert_msg(!want2 || strstr(err.msg, want2), "parse message \"%s\" lacks \"%s\"",
                  err.msg, want2);
    ck_assert_msg(strstr(err.msg, "in-memory") != NULL, "message \"%s\" does not name the source",
                  err.msg);

    char path[4200];
    join(path, sizeof path, unit_tmpdir(), "bad.safetensors");
    write_bytes(path, buf, len);
    err.msg[0] = '\0';
    rc = dp_safetensors_load(path, &m, host, &err);
    ck_assert_msg(rc == -1, "load accepted a bad file (want \"%s\")", want);
    ck_assert_msg(strstr(err.msg, want) != NULL, "load message \"%s\" lacks \"%s\"", err.msg,
                  want);
    ck_assert_msg(!want2 || strstr(err.msg, want2), "load message \"%s\" lacks \"%s\"", err.msg,
                  want2);
    ck_assert_msg(strstr(err.msg, path) != NULL, "message \"%s\" does not name %s", err.msg,
                  path);
    dp_model_free(&m);
}

/* Same, for a header and the usual model's data (data_len bytes of it). */
static void expect_fail_header(const char *header, size_t data_len, const char *want,
                               const char *want2)
{
    dp_model m;
    make_model(&m, SPEC);
    float host[N_PARAMS], data[N_PARAMS];
    fill(host, N_PARAMS, 1.0f);
    size_t full = state_dict_data(&m, host, data);
    ck_assert(data_len <= full);
    unsigned char buf[4096];
    ck_assert(strlen(header) + data_len + 16 < sizeof buf);
    size_t len = st_image(buf, header, data, data_len, 0);
    dp_model_free(&m);
    expect_fail_image(buf, len, want, want2);
}

/* ---- round trip and layout ---- */

/* save then load gives back the same bits. */
START_TEST(test_st_round_trip)
{
    dp_model m;
    make_model(&m, SPEC);
    ck_assert_uint_eq(m.n_params, N_PARAMS);
    float host[N_PARAMS], back[N_PARAMS];
    fill(host, N_PARAMS, 1.0f);
    memset(back, 0xA5, sizeof back);
    char path[4200];
    join(path, sizeof path, unit_tmpdir(), "model.safetensors");
    dp_err err = { "" };
    ck_assert_msg(dp_safetensors_save(path, &m, host, &err) == 0, "save: %s", err.msg);
    ck_assert_msg(dp_safetensors_load(path, &m, back, &err) == 0, "load: %s", err.msg);
    for (int i = 0; i < N_PARAMS; i++)
        ck_assert_msg(memcmp(&host[i], &back[i], sizeof(float)) == 0,
                      "parameter %d: saved %a, loaded %a", i, host[i], back[i]);

    /* initial parameters from the model round-trip too */
    dp_model_init_params(&m, host, 99);
    ck_assert_msg(dp_safetensors_save(path, &m, host, &err) == 0, "save: %s", err.msg);
    memset(back, 0, sizeof back);
    ck_assert_msg(dp_safetensors_load(path, &m, back, &err) == 0, "load: %s", err.msg);
    ck_assert_msg(memcmp(host, back, sizeof host) == 0, "initial parameters differ");
    dp_model_free(&m);
}
END_TEST

/* The file follows the spec: LE length N, JSON header from '{', N % 8 == 0 padded with spaces,
 * the tensors' names, dtypes, shapes and contiguous offsets, then the data. */
START_TEST(test_st_layout)
{
    dp_model m;
    make_model(&m, SPEC);
    float host[N_PARAMS], data[N_PARAMS];
    fill(host, N_PARAMS, 2.0f);
    char path[4200];
    join(path, sizeof path, unit_tmpdir(), "layout.safetensors");
    dp_err err = { "" };
    ck_assert_msg(dp_safetensors_save(path, &m, host, &err) == 0, "save: %s", err.msg);
    size_t len;
    unsigned char *buf = read_all(path, &len);
    ck_assert_msg(len >= 8, "file of %zu bytes", len);
    uint64_t n = 0;
    for (int b = 7; b >= 0; b--)
        n = n << 8 | buf[b];
    ck_assert_msg(n % 8 == 0, "header length %llu is not a multiple of 8", (unsigned long long)n);
    ck_assert_msg(8 + n + N_PARAMS * sizeof(float) == len,
                  "8 + header %llu + data %zu != file %zu", (unsigned long long)n,
                  N_PARAMS * sizeof(float), len);
    char *header = malloc(n + 1);
    ck_assert(header != NULL);
    memcpy(header, buf + 8, n);
    header[n] = '\0';
    ck_assert_msg(strlen(header) == n, "NUL byte inside the header");
    ck_assert_msg(header[0] == '{', "header starts with '%c'", header[0]);
    size_t end = n;
    while (end > 0 && header[end - 1] == ' ')
        end--;
    ck_assert_msg(end > 0 && header[end - 1] == '}', "header does not end with '}' before its "
                  "padding: ...%s", header + (end > 20 ? end - 20 : 0));
    ck_assert_msg(n - end < 8, "%zu bytes of padding", (size_t)(n - end));
    static const char *const want[] = {
        "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[5,4]",
        "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[5]",
        "\"2.weight\":{\"dtype\":\"F32\",\"shape\":[3,5]",
        "\"2.bias\":{\"dtype\":\"F32\",\"shape\":[3]",
        "\"data_offsets\":[0,80]",
        "\"data_offsets\":[80,100]",
        "\"data_offsets\":[100,160]",
        "\"data_offsets\":[160,172]",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        ck_assert_msg(strstr(header, want[i]) != NULL, "header lacks %s: %s", want[i], header);
    ck_assert_msg(!strstr(header, "\"1.") && !strstr(header, "\"3."),
                  "the relu has tensors: %s", header);
    /* the data: each tensor's floats in state_dict order, little-endian (the host's order) */
    size_t bytes = state_dict_data(&m, host, data);
    ck_assert_uint_eq(bytes, 172);
    ck_assert_msg(memcmp(buf + 8 + n, data, bytes) == 0, "data section differs from the "
                  "parameters in state_dict order");
    uint32_t first;
    memcpy(&first, data, 4);
    ck_assert_msg(buf[8 + n] == (first & 0xff) && buf[8 + n + 3] == first >> 24,
                  "data are not little-endian");
    free(header);
    free(buf);
    dp_model_free(&m);
}
END_TEST

/* A hand-built file with __metadata__, other key order, whitespace and tensors stored out of
 * order loads, each tensor by its name (this also checks the builder the bad-file tests use). */
START_TEST(test_st_hand_built)
{
    dp_model m;
    make_model(&m, SPEC);
    float host[N_PARAMS], back[N_PARAMS];
    fill(host, N_PARAMS, 3.0f);
    dp_model_tensor t[4];
    ck_assert_int_eq(dp_model_tensors(&m, NULL), 4);
    dp_model_tensors(&m, t);
    /* stored: 2.bias, 2.weight, 0.bias, 0.weight */
    float data[N_PARAMS];
    size_t at = 0;
    for (int i = 3; i >= 0; i--) {
        memcpy(data + at, host + t[i].info.offset, t[i].info.count * sizeof(float));
        at += t[i].info.count;
    }
    const char *header =
        "{ \"__metadata__\" : {\"format\":\"pt\", \"note\":\"a \\\"quoted\\\" \\u00e9 text\"},\n"
        "  \"2.bias\": {\"shape\": [3], \"dtype\": \"F32\", \"data_offsets\": [0, 12]},\n"
        "  \"2.weight\": {\"data_offsets\": [12, 72], \"dtype\": \"F32\", \"shape\": [3, 5]},\n"
        "  \"0.bias\": {\"dtype\": \"F32\", \"shape\": [5], \"data_offsets\": [72, 92]},\n"
        "  \"0.weight\": {\"dtype\": \"F32\", \"shape\": [5, 4], \"data_offsets\": [92, 172]}\n"
        "}";
    unsigned char buf[4096];
    size_t len = st_image(buf, header, data, at * sizeof(float), 0);
    memset(back, 0, sizeof back);
    dp_err err = { "" };
    ck_assert_msg(dp_safetensors_parse(buf, len, "hand", &m, back, &err) == 0, "parse: %s",
                  err.msg);
    ck_assert_msg(memcmp(host, back, sizeof host) == 0, "parameters differ after parse");

    char path[4200];
    join(path, sizeof path, unit_tmpdir(), "hand.safetensors");
    write_bytes(path, buf, len);
    memset(back, 0, sizeof back);
    ck_assert_msg(dp_safetensors_load(path, &m, back, &err) == 0, "load: %s", err.msg);
    ck_assert_msg(memcmp(host, back, sizeof host) == 0, "parameters differ after load");

    /* the plain header of the macros loads too */
    float plain[N_PARAMS];
    size_t bytes = state_dict_data(&m, host, plain);
    len = st_image(buf, "{" E_W0 "," E_B0 "," E_W2 "," E_B2 "}", plain, bytes, 0);
    memset(back, 0, sizeof back);
    ck_assert_msg(dp_safetensors_parse(buf, len, "plain", &m, back, &err) == 0, "parse: %s",
                  err.msg);
    ck_assert_msg(memcmp(host, back, sizeof host) == 0, "parameters differ (plain header)");
    dp_model_free(&m);
}
END_TEST

/* dp_safetensors_parse on the saved file's bytes matches load; a flipped data byte shows. */
START_TEST(test_st_parse_memory)
{
    dp_model m;
    make_model(&m, SPEC);
    float host[N_PARAMS], back[N_PARAMS];
    fill(host, N_PARAMS, -1.5f);
    char path[4200];
    join(path, sizeof path, unit_tmpdir(), "mem.safetensors");
    dp_err err = { "" };
    ck_assert_msg(dp_safetensors_save(path, &m, host, &err) == 0, "save: %s", err.msg);
    size_t len;
    unsigned char *buf = read_all(path, &len);
    memset(back, 0, sizeof back);
    ck_assert_msg(dp_safetensors_parse(buf, len, "mem", &m, back, &err) == 0, "parse: %s",
                  err.msg);
    ck_assert_msg(memcmp(host, back, sizeof host) == 0, "parse differs from what was saved");
    buf[len - 1] ^= 0x40; /* the last float: 2.bias[2] */
    ck_assert_msg(dp_safetensors_parse(buf, len, "mem", &m, back, &err) == 0, "parse: %s",
                  err.msg);
    ck_assert_msg(memcmp(&host[N_PARAMS - 1], &back[N_PARAMS - 1], 4) != 0,
                  "a changed data byte did not reach the parameters");
    /* every prefix of the file is refused, without reading past it */
    for (size_t cut = 0; cut < len; cut++) {
        unsigned char *part = malloc(cut ? cut : 1);
        ck_assert(part != NULL);
        memcpy(part, buf, cut);
        err.msg[0] = '\0';
        ck_assert_msg(dp_safetensors_parse(part, cut, "prefix", &m, back, &err) == -1,
                      "a prefix of %zu of %zu bytes was accepted", cut, len);
        ck_assert_msg(err.msg[0] != '\0', "no message for a prefix of %zu bytes", cut);
        free(part);
    }
    free(buf);
    dp_model_free(&m);
}
END_TEST

/* ---- refusals ---- */

/* A file for a different model fails naming the tensor and both shapes. */
START_TEST(test_st_shape_mismatch)
{
    dp_model a, b;
    make_model(&a, SPEC);
    make_model(&b, "linear:6, relu, linear:3");
    float host[N_PARAMS];
    fill(host, N_PARAMS, 1.0f);
    char path[4200];
    join(path, sizeof path, unit_tmpdir(), "a.safetensors");
    dp_err err = { "" };
    ck_assert_msg(dp_safetensors_save(path, &a, host, &err) == 0, "save: %s", err.msg);
    float *other = calloc(b.n_params, sizeof *other);
    ck_assert(other != NULL);
    ck_assert_int_eq(dp_safetensors_load(path, &b, other, &err), -1);
    ck_assert_msg(strstr(err.msg, "\"0.weight\"") && strstr(err.msg, "[5, 4]") &&
                      strstr(err.msg, "[6, 4]"),
                  "message: %s", err.msg);
    free(other);

    /* and the other way round, a larger file into the smaller model */
    float *big = calloc(b.n_params, sizeof *big);
    ck_assert(big != NULL);
    ck_assert_msg(dp_safetensors_save(path, &b, big, &err) == 0, "save: %s", err.msg);
    ck_assert_int_eq(dp_safetensors_load(path, &a, host, &err), -1);
    ck_assert_msg(strstr(err.msg, "\"0.weight\"") && strstr(err.msg, "[6, 4]") &&
                      strstr(err.msg, "[5, 4]"),
                  "message: %s", err.msg);
    free(big);
    /* a shape with another rank */
    expect_fail_header("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[20],\"data_offsets\":[0,80]},"
                       E_B0 "," E_W2 "," E_B2 "}",
                       172, "\"0.weight\" has shape [20]", "[5, 4]");
    dp_model_free(&a);
    dp_model_free(&b);
}
END_TEST

/* A tensor of the model missing from the file is named. */
START_TEST(test_st_missing_tensor)
{
    expect_fail_header("{" E_W0 "," E_B0 "," E_W2 "}", 160, "\"2.bias\" is missing", NULL);
    expect_fail_header("{" E_B0 "," E_W2 "," E_B2 "}", 172, "\"0.weight\" is missing", NULL);
    expect_fail_header("{}", 0, "is missing", "0 of the model's 4");
    expect_fail_header("{\"__metadata__\":{\"format\":\"pt\"}}", 0, "\"0.weight\" is missing",
                       NULL);
}
END_TEST

/* A tensor the model does not have is refused. */
START_TEST(test_st_extra_tensor)
{
    expect_fail_header("{" E_W0 "," E_B0 "," E_W2 "," E_B2 ","
                       "\"4.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                       172, "\"4.weight\" is not part of this model", NULL);
    expect_fail_header("{\"1.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                       E_W0 "," E_B0 "," E_W2 "," E_B2 "}",
                       172, "\"1.weight\" is not part of this model", NULL);
}
END_TEST

/* The same tensor twice is refused. */
START_TEST(test_st_duplicate_tensor)
{
    expect_fail_header("{" E_W0 "," E_B0 "," E_W2 "," E_B2 "," E_B0 "}", 172,
                       "\"0.bias\" appears twice", NULL);
}
END_TEST

/* dtype F16 (or anything but F32) is refused with what to do. */
START_TEST(test_st_dtype)
{
    expect_fail_header("{" E_W0 ",\"0.bias\":{\"dtype\":\"F16\",\"shape\":[5],"
                       "\"data_offsets\":[80,90]}," E_W2 "," E_B2 "}",
                       172, "\"0.bias\" is F16", "F32");
    expect_fail_header("{" E_W0 ",\"0.bias\":{\"dtype\":\"F64\",\"shape\":[5],"
                       "\"data_offsets\":[80,120]}," E_W2 "," E_B2 "}",
                       172, "\"0.bias\" is F64", NULL);
}
END_TEST

/* data_offsets past the end of the data are refused. */
START_TEST(test_st_offsets_past_end)
{
    /* 2.bias needs 12 bytes at 160 but the data hold 168 */
    expect_fail_header("{" E_W0 "," E_B0 "," E_W2 "," E_B2 "}", 168, "\"2.bias\"",
                       "data_offsets");
    expect_fail_header("{" E_W0 "," E_B0 "," E_W2 ","
                       "\"2.bias\":{\"dtype\":\"F32\",\"shape\":[3],"
                       "\"data_offsets\":[18446744073709551604,18446744073709551615]}}",
                       172, "\"2.bias\"", "data_offsets");
    /* an offset beyond 64 bits is malformed */
    expect_fail_header("{" E_W0 "," E_B0 "," E_W2 ","
                       "\"2.bias\":{\"dtype\":\"F32\",\"shape\":[3],"
                       "\"data_offsets\":[160,99999999999999999999]}}",
                       172, "\"2.bias\"", NULL);
}
END_TEST

/* data_offsets whose length does not match the shape, or that run backwards, are refused. */
START_TEST(test_st_offsets_wrong_length)
{
    expect_fail_header("{" E_W0 ",\"0.bias\":{\"dtype\":\"F32\",\"shape\":[5],"
                       "\"data_offsets\":[80,96]}," E_W2 "," E_B2 "}",
                       172, "\"0.bias\"", "do not hold 5 floats");
    expect_fail_header("{" E_W0 ",\"0.bias\":{\"dtype\":\"F32\",\"shape\":[5],"
                       "\"data_offsets\":[80,104]}," E_W2 "," E_B2 "}",
                       172, "\"0.bias\"", "do not hold 5 floats");
    expect_fail_header("{" E_W0 ",\"0.bias\":{\"dtype\":\"F32\",\"shape\":[5],"
                       "\"data_offsets\":[100,80]}," E_W2 "," E_B2 "}",
                       172, "\"0.bias\"", "data_offsets");
}
END_TEST

/* The tensors' data must tile the data section: overlapping tensors (all at offset 0), a gap,
 * a first tensor not at 0 and bytes after the last are refused, naming the tensor. */
START_TEST(test_st_offsets_not_contiguous)
{
    expect_fail_header("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[5,4],\"data_offsets\":[0,80]},"
                       "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[0,20]},"
                       "\"2.weight\":{\"dtype\":\"F32\",\"shape\":[3,5],\"data_offsets\":[0,60]},"
                       "\"2.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}",
                       80, "tensor \"0.bias\" (data_offsets [0, 20]) overlaps tensor \"2.bias\"",
                       NULL);
    float data[N_PARAMS + 1] = { 0 };
    unsigned char buf[4096];
    size_t len = st_image(buf, "{" E_W0 ",\"0.bias\":{\"dtype\":\"F32\",\"shape\":[5],"
                          "\"data_offsets\":[84,104]},\"2.weight\":{\"dtype\":\"F32\","
                          "\"shape\":[3,5],\"data_offsets\":[104,164]},\"2.bias\":{\"dtype\":"
                          "\"F32\",\"shape\":[3],\"data_offsets\":[164,176]}}",
                          data, 176, 0);
    expect_fail_image(buf, len, "tensor \"0.bias\" begins at byte 84, leaving a gap of 4 bytes "
                      "after tensor \"0.weight\"", NULL);
    len = st_image(buf, "{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[5,4],\"data_offsets\":"
                   "[4,84]},\"0.bias\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":"
                   "[84,104]},\"2.weight\":{\"dtype\":\"F32\",\"shape\":[3,5],\"data_offsets\":"
                   "[104,164]},\"2.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":"
                   "[164,176]}}",
                   data, 176, 0);
    expect_fail_image(buf, len, "tensor \"0.weight\" comes first in the data but begins at byte 4",
                      NULL);
    len = st_image(buf, "{" E_W0 "," E_B0 "," E_W2 "," E_B2 "}", data, 176, 0);
    expect_fail_image(buf, len, "4 bytes after the last tensor (\"2.bias\") belong to no tensor",
                      NULL);
}
END_TEST

/* A NaN or an infinity in a loaded tensor is refused with the tensor, the first index and its
 * place in the shape; in per-parameter state too, named with its slot. */
START_TEST(test_st_non_finite)
{
    dp_model m;
    make_model(&m, SPEC);
    float host[2 * N_PARAMS], back[2 * N_PARAMS];
    fill(host, 2 * N_PARAMS, 1.0f);
    char path[4200];
    join(path, sizeof path, unit_tmpdir(), "nan.safetensors");
    dp_err err = { "" };
    host[7] = NAN;
    host[9] = INFINITY;
    ck_assert_msg(dp_safetensors_save(path, &m, host, &err) == 0, "save: %s", err.msg);
    ck_assert_int_eq(dp_safetensors_load(path, &m, back, &err), -1);
    ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, "tensor 0.weight holds NaN at index 7 "
                                                          "([1, 3]); dpmptop loads only finite"),
                  "%s", err.msg);
    host[7] = 0.5f;
    ck_assert_int_eq(dp_safetensors_save(path, &m, host, &err), 0);
    ck_assert_int_eq(dp_safetensors_load(path, &m, back, &err), -1);
    ck_assert_msg(strstr(err.msg, "tensor 0.weight holds +Inf at index 9 ([2, 1])"), "%s",
                  err.msg);
    host[9] = 0.25f;
    host[N_PARAMS - 1] = -INFINITY; /* 2.bias[2] */
    ck_assert_int_eq(dp_safetensors_save(path, &m, host, &err), 0);
    ck_assert_int_eq(dp_safetensors_load(path, &m, back, &err), -1);
    ck_assert_msg(strstr(err.msg, "tensor 2.bias holds -Inf at index 2 ([2])"), "%s", err.msg);
    host[N_PARAMS - 1] = 1.0f;
    ck_assert_int_eq(dp_safetensors_save(path, &m, host, &err), 0);
    ck_assert_msg(dp_safetensors_load(path, &m, back, &err) == 0, "%s", err.msg);

    const char *slots[2] = { "exp_avg", "exp_avg_sq" };
    host[N_PARAMS + 20] = NAN; /* slot 1's 0.bias[0] */
    ck_assert_int_eq(dp_safetensors_save_state(path, &m, 2, slots, host, &err), 0);
    ck_assert_int_eq(dp_safetensors_load_state(path, &m, 2, slots, back, &err), -1);
    ck_assert_msg(strstr(err.msg, "tensor 0.bias.exp_avg_sq holds NaN at index 0 ([0])"), "%s",
                  err.msg);
    dp_model_free(&m);
}
END_TEST

/* A header length beyond the file is refused, 2^64 - 1 included. */
START_TEST(test_st_header_too_long)
{
    unsigned char buf[1024];
    size_t len = st_image(buf, "{" E_W0 "}", NULL, 0, 4096);
    expect_fail_image(buf, len, "header length 4096", NULL);
    len = st_image(buf, "{" E_W0 "}", NULL, 0, UINT64_MAX);
    expect_fail_image(buf, len, "a header of 18446744073709551615 bytes, more than the "
                                "format's limit of 104857600", NULL);
    len = st_image(buf, "{}", NULL, 0, (uint64_t)1 << 63);
    expect_fail_image(buf, len, "more than the format's limit", NULL);
}
END_TEST

/* Files shorter than the 8-byte length field are refused. */
START_TEST(test_st_short_file)
{
    unsigned char buf[8] = { 8, 0, 0, 0, 0, 0, 0 };
    expect_fail_image(buf, 7, "not a safetensors file", "7 bytes");
    expect_fail_image(buf, 0, "not a safetensors file", "0 bytes");
    /* exactly 8 bytes announcing an empty header */
    memset(buf, 0, sizeof buf);
    expect_fail_image(buf, 8, "not a JSON object", NULL);
}
END_TEST

/* A header that is not JSON is refused. */
START_TEST(test_st_not_json)
{
    expect_fail_header("hello, world", 172, "not a JSON object", NULL);
    expect_fail_header("[1, 2, 3]", 172, "not a JSON object", NULL);
    expect_fail_header("{\"0.weight\" 5}", 172, "malformed", NULL);
    expect_fail_header("{\"0.weight\":[5,4]}", 172, "\"0.weight\": malformed entry", NULL);
    expect_fail_header("{" E_W0 " " E_B0 "}", 172, "malformed", NULL);
    /* an entry without data_offsets */
    expect_fail_header("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[5,4]}}", 172,
                       "malformed entry", "data_offsets");
    /* NUL bytes in the header */
    unsigned char buf[64];
    size_t len = st_image(buf, "{\"0.w", NULL, 0, 0);
    buf[10] = 0;
    expect_fail_image(buf, len, "malformed", NULL);
}
END_TEST

/* A header cut off inside a string (a name, a key, a dtype) is refused. */
START_TEST(test_st_truncated_string)
{
    expect_fail_header("{\"0.wei", 0, "malformed", NULL);
    expect_fail_header("{\"0.weight\":{\"dty", 0, "malformed", NULL);
    expect_fail_header("{\"0.weight\":{\"dtype\":\"F3", 0, "malformed", NULL);
    expect_fail_header("{\"__metadata__\":{\"format\":\"p", 0, "malformed", NULL);
    expect_fail_header("{" E_W0 "," E_B0, 172, "malformed", NULL); /* no closing brace */
    /* a string running into the padding and the data: the length field ends it */
    unsigned char buf[512];
    float zeros[43] = { 0 };
    size_t len = st_image(buf, "{\"0.weight", zeros, sizeof zeros, 0);
    expect_fail_image(buf, len, "malformed", NULL);
}
END_TEST

/* A file that is not there fails naming it. */
START_TEST(test_st_load_missing_file)
{
    dp_model m;
    make_model(&m, SPEC);
    float host[N_PARAMS];
    char path[4200];
    join(path, sizeof path, unit_tmpdir(), "absent.safetensors");
    dp_err err = { "" };
    ck_assert_int_eq(dp_safetensors_load(path, &m, host, &err), -1);
    ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, "cannot open"), "message: %s",
                  err.msg);
    dp_model_free(&m);
}
END_TEST

/* ---- saving ---- */

/* Saving into a directory that does not exist fails and creates nothing. */
START_TEST(test_st_save_missing_dir)
{
    dp_model m;
    make_model(&m, SPEC);
    float host[N_PARAMS];
    fill(host, N_PARAMS, 1.0f);
    char dir[4096], path[4200], sub[4200];
    snprintf(dir, sizeof dir, "%s", unit_tmpdir());
    join(sub, sizeof sub, dir, "missing");
    join(path, sizeof path, sub, "model.safetensors");
    dp_err err = { "" };
    ck_assert_int_eq(dp_safetensors_save(path, &m, host, &err), -1);
    ck_assert_msg(strstr(err.msg, path) != NULL, "message \"%s\" does not name %s", err.msg,
                  path);
    ck_assert_msg(!file_exists(path) && !file_exists(sub), "save created %s", path);
    ck_assert_int_eq(count_tmp_files(dir), 0);
    dp_model_free(&m);
}
END_TEST

/* Saving over a longer existing file replaces it completely and leaves no temporary file. */
START_TEST(test_st_save_replaces)
{
    dp_model m;
    make_model(&m, SPEC);
    float host[N_PARAMS], back[N_PARAMS];
    fill(host, N_PARAMS, 1.0f);
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s", unit_tmpdir());
    join(path, sizeof path, dir, "model.safetensors");
    static char old[20000];
    memset(old, 'X', sizeof old);
    write_bytes(path, old, sizeof old);
    dp_err err = { "" };
    ck_assert_msg(dp_safetensors_save(path, &m, host, &err) == 0, "save: %s", err.msg);
    size_t len;
    unsigned char *buf = read_all(path, &len);
    ck_assert_msg(len < 1000, "file is %zu bytes: the old content is still there", len);
    free(buf);
    ck_assert_msg(dp_safetensors_load(path, &m, back, &err) == 0, "load: %s", err.msg);
    ck_assert_msg(memcmp(host, back, sizeof host) == 0, "parameters differ");
    ck_assert_int_eq(count_tmp_files(dir), 0);

    /* a second save with other values replaces the first */
    fill(host, N_PARAMS, 5.0f);
    ck_assert_msg(dp_safetensors_save(path, &m, host, &err) == 0, "save: %s", err.msg);
    ck_assert_msg(dp_safetensors_load(path, &m, back, &err) == 0, "load: %s", err.msg);
    ck_assert_msg(memcmp(host, back, sizeof host) == 0, "second save not seen");
    ck_assert_int_eq(count_tmp_files(dir), 0);
    dp_model_free(&m);
}
END_TEST

/* dp_atomic_open writes beside the file; dp_atomic_abort leaves the original untouched and
 * removes the temporary file. */
START_TEST(test_st_atomic_abort)
{
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s", unit_tmpdir());
    join(path, sizeof path, dir, "keep.safetensors");
    const char original[] = "the good file";
    write_bytes(path, original, sizeof original - 1);
    dp_atomic_file af;
    dp_err err = { "" };
    ck_assert_msg(dp_atomic_open(&af, path, &err) == 0, "open: %s", err.msg);
    ck_assert_msg(af.f != NULL && file_exists(af.tmp), "no temporary file %s", af.tmp);
    ck_assert_msg(strncmp(af.tmp, dir, strlen(dir)) == 0, "temporary %s is not beside %s",
                  af.tmp, path);
    ck_assert_int_eq(count_tmp_files(dir), 1);
    fputs("partial new content that must never be seen", af.f);
    fflush(af.f);
    char tmp[sizeof af.tmp];
    snprintf(tmp, sizeof tmp, "%s", af.tmp);
    dp_atomic_abort(&af);
    ck_assert_msg(!file_exists(tmp), "abort left %s", tmp);
    ck_assert_int_eq(count_tmp_files(dir), 0);
    size_t len;
    unsigned char *buf = read_all(path, &len);
    ck_assert_msg(len == sizeof original - 1 && !memcmp(buf, original, len),
                  "the original changed: %.*s", (int)len, buf);
    free(buf);
    dp_atomic_abort(&af); /* a second abort is harmless */

    /* and a commit does replace it */
    ck_assert_msg(dp_atomic_open(&af, path, &err) == 0, "open: %s", err.msg);
    fputs("new", af.f);
    ck_assert_msg(dp_atomic_commit(&af, &err) == 0, "commit: %s", err.msg);
    buf = read_all(path, &len);
    ck_assert_msg(len == 3 && !memcmp(buf, "new", 3), "after commit: %.*s", (int)len, buf);
    free(buf);
    ck_assert_int_eq(count_tmp_files(dir), 0);
}
END_TEST

/* A save whose final rename fails (the path is a non-empty directory) returns -1, leaves what
 * was there, and removes its temporary file. */
START_TEST(test_st_save_commit_fails)
{
    dp_model m;
    make_model(&m, SPEC);
    float host[N_PARAMS];
    fill(host, N_PARAMS, 1.0f);
    char dir[4096], path[4200], inner[4400];
    snprintf(dir, sizeof dir, "%s", unit_tmpdir());
    join(path, sizeof path, dir, "model.safetensors");
    ck_assert(mkdir(path, 0755) == 0);
    join(inner, sizeof inner, path, "inside");
    write_bytes(inner, "keep", 4);
    dp_err err = { "" };
    ck_assert_int_eq(dp_safetensors_save(path, &m, host, &err), -1);
    ck_assert_msg(strstr(err.msg, path) != NULL, "message \"%s\" does not name %s", err.msg,
                  path);
    struct stat st;
    ck_assert_msg(stat(path, &st) == 0 && S_ISDIR(st.st_mode), "%s was replaced", path);
    ck_assert_msg(file_exists(inner), "%s is gone", inner);
    ck_assert_int_eq(count_tmp_files(dir), 0);
    dp_model_free(&m);
}
END_TEST

/* ---- buffers and I64 tensors (batch normalisation) ---- */

/* A model with bn on images [3, 5, 5] and on vectors: conv 0.weight [4, 3, 3, 3] (108) and
 * 0.bias [4]; bn 1.* on 4 channels; bn 4.* on 36 features; linear 5.weight [3, 36], 5.bias.
 * Each bn: weight, bias (trained), running_mean, running_var and num_batches_tracked (a scalar,
 * I64): buffers. */
#define BN_SPEC "conv:4:3, bn, relu, flatten, bn, linear:3"
#define BN_PARAMS (108 + 4 + (4 * 4 + 1) + (4 * 36 + 1) + 3 * 36 + 3)
#define BN_TRAINED (BN_PARAMS - (2 * 4 + 1) - (2 * 36 + 1))

static void make_bn_model(dp_model *m)
{
    dp_err err = { "" };
    dp_shape in = { 3, { 3, 5, 5 } };
    ck_assert_msg(dp_model_parse_shape(m, BN_SPEC, in, 3, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(m->n_params, BN_PARAMS);
}

/* The model's tensor called name (it must have one). */
static dp_model_tensor find_tensor(const dp_model *m, const char *name)
{
    dp_model_tensor t[32];
    int n = dp_model_tensors(m, NULL);
    ck_assert_int_le(n, 32);
    dp_model_tensors(m, t);
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, name))
            return t[i];
    ck_abort_msg("the model has no tensor %s", name);
    return t[0];
}

/* Distinct values for the bn model (variances positive), with whole counts: 1.num_batches_tracked = 7 and
 * 4.num_batches_tracked = 2^24 (the largest a float holds with every count below it). */
static void fill_bn(const dp_model *m, float *host)
{
    fill(host, m->n_params, 1.0f);
    dp_model_tensor t[32];
    int n = dp_model_tensors(m, t);
    for (int i = 0; i < n; i++) /* variances are never negative */
        for (size_t k = 0; t[i].info.nonnegative && k < t[i].info.count; k++)
            host[t[i].info.offset + k] = fabsf(host[t[i].info.offset + k]);
    host[find_tensor(m, "1.num_batches_tracked").info.offset] = 7.0f;
    host[find_tensor(m, "4.num_batches_tracked").info.offset] = 16777216.0f;
    host[find_tensor(m, "1.running_var").info.offset] = 0.75f;
}

/* The header of a safetensors image (without its padding), malloc'd; *data_at: where the data
 * begin. */
static char *image_header(const unsigned char *buf, size_t len, size_t *data_at)
{
    ck_assert(len >= 8);
    uint64_t n = 0;
    for (int b = 7; b >= 0; b--)
        n = n << 8 | buf[b];
    ck_assert(n <= len - 8);
    char *h = malloc(n + 1);
    ck_assert(h != NULL);
    memcpy(h, buf + 8, n);
    h[n] = '\0';
    size_t end = n;
    while (end > 0 && h[end - 1] == ' ')
        end--;
    h[end] = '\0';
    *data_at = 8 + n;
    return h;
}

/* The header with the first `from` replaced by `to`, malloc'd. */
static char *replace(const char *header, const char *from, const char *to)
{
    const char *at = strstr(header, from);
    ck_assert_msg(at != NULL, "no %s in %s", from, header);
    size_t size = strlen(header) - strlen(from) + strlen(to) + 1;
    char *out = malloc(size);
    ck_assert(out != NULL);
    snprintf(out, size, "%.*s%s%s", (int)(at - header), header, to, at + strlen(from));
    return out;
}

/* The bn model's saved file, malloc'd, with its length. */
static unsigned char *saved_bn_file(size_t *len)
{
    dp_model m;
    make_bn_model(&m);
    float host[BN_PARAMS];
    fill_bn(&m, host);
    char path[4200];
    join(path, sizeof path, unit_tmpdir(), "bn.safetensors");
    dp_err err = { "" };
    ck_assert_msg(dp_safetensors_save(path, &m, host, &err) == 0, "save: %s", err.msg);
    dp_model_free(&m);
    return read_all(path, len);
}

/* Parsing buf[len] into the bn model must fail with a message holding want and want2 (when not
 * NULL), and the tensor's name. */
static void expect_bn_fail(const unsigned char *buf, size_t len, const char *want,
                           const char *want2)
{
    dp_model m;
    make_bn_model(&m);
    float host[BN_PARAMS];
    dp_err err = { "" };
    ck_assert_msg(dp_safetensors_parse(buf, len, "bn-image", &m, host, &err) == -1,
                  "accepted (want \"%s\")", want);
    ck_assert_msg(strstr(err.msg, want) && (!want2 || strstr(err.msg, want2)) &&
                      strstr(err.msg, "bn-image"),
                  "message \"%s\" lacks \"%s\" or \"%s\"", err.msg, want, want2 ? want2 : "");
    dp_model_free(&m);
}

/* The bn model's file: num_batches_tracked as I64 with shape [] (8 bytes of a little-endian
 * integer), the other tensors F32 with their shapes, in state_dict order; it loads back
 * exactly, and the initial values (a count of 0) round-trip too. */
START_TEST(test_st_bn_round_trip)
{
    dp_model m;
    make_bn_model(&m);
    ck_assert_int_eq(dp_model_tensors(&m, NULL), 14);
    float host[BN_PARAMS], back[BN_PARAMS];
    fill_bn(&m, host);
    char path[4200];
    join(path, sizeof path, unit_tmpdir(), "bn.safetensors");
    dp_err err = { "" };
    ck_assert_msg(dp_safetensors_save(path, &m, host, &err) == 0, "save: %s", err.msg);
    size_t len, data_at;
    unsigned char *buf = read_all(path, &len);
    char *header = image_header(buf, len, &data_at);
    /* two scalars of 8 bytes instead of 4 */
    ck_assert_uint_eq(len - data_at, (BN_PARAMS - 2) * sizeof(float) + 2 * sizeof(int64_t));
    static const char *const want[] = {
        "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[4,3,3,3],\"data_offsets\":[0,432]}",
        "\"1.weight\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[448,464]}",
        "\"1.running_mean\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[480,496]}",
        "\"1.running_var\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[496,512]}",
        "\"1.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[512,520]}",
        "\"4.weight\":{\"dtype\":\"F32\",\"shape\":[36],\"data_offsets\":[520,664]}",
        "\"4.running_var\":{\"dtype\":\"F32\",\"shape\":[36],\"data_offsets\":[952,1096]}",
        "\"4.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[1096,1104]}",
        "\"5.weight\":{\"dtype\":\"F32\",\"shape\":[3,36],\"data_offsets\":[1104,1536]}",
        "\"5.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[1536,1548]}",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        ck_assert_msg(strstr(header, want[i]) != NULL, "header lacks %s: %s", want[i], header);
    /* the counts' bytes: 7 and 2^24, little-endian 64-bit */
    static const unsigned char seven[8] = { 7, 0, 0, 0, 0, 0, 0, 0 };
    static const unsigned char big[8] = { 0, 0, 0, 1, 0, 0, 0, 0 };
    ck_assert_msg(memcmp(buf + data_at + 512, seven, 8) == 0, "1.num_batches_tracked's bytes");
    ck_assert_msg(memcmp(buf + data_at + 1096, big, 8) == 0, "4.num_batches_tracked's bytes");
    /* running_var's first float follows running_mean's */
    float var0;
    memcpy(&var0, buf + data_at + 496, 4);
    ck_assert_msg(var0 == 0.75f, "1.running_var[0] is %g in the file", (double)var0);

    memset(back, 0xA5, sizeof back);
    ck_assert_msg(dp_safetensors_load(path, &m, back, &err) == 0, "load: %s", err.msg);
    ck_assert_msg(memcmp(host, back, sizeof host) == 0, "the state_dict differs after loading");
    memset(back, 0xA5, sizeof back);
    ck_assert_msg(dp_safetensors_parse(buf, len, "bn", &m, back, &err) == 0, "parse: %s",
                  err.msg);
    ck_assert_msg(memcmp(host, back, sizeof host) == 0, "the state_dict differs after parsing");
    /* a negative variance would be NaN's square root: refused, naming the tensor */
    const float negative = -0.5f;
    memcpy(buf + data_at + 500, &negative, 4);
    ck_assert(dp_safetensors_parse(buf, len, "bn", &m, back, &err) < 0);
    ck_assert_msg(strstr(err.msg, "tensor 1.running_var holds -0.5 at index 1 ([1]), a "
                                  "variance, which is never negative"),
                  "%s", err.msg);

    dp_model_init_params(&m, host, 5);
    ck_assert_msg(dp_safetensors_save(path, &m, host, &err) == 0, "save: %s", err.msg);
    memset(back, 0xA5, sizeof back);
    ck_assert_msg(dp_safetensors_load(path, &m, back, &err) == 0, "load: %s", err.msg);
    ck_assert_msg(memcmp(host, back, sizeof host) == 0, "initial state_dict differs");
    free(header);
    free(buf);
    dp_model_free(&m);
}
END_TEST

/* An I64 tensor's dtype, shape, size and values are checked as strictly as F32's: another
 * dtype (F32 included), a float tensor stored as I64, a shape [1], 4 bytes, a negative count,
 * 2^24 + 1 and a huge count are refused naming the tensor; 2^24 itself loads. */
START_TEST(test_st_i64_refused)
{
    size_t len, data_at;
    unsigned char *buf = saved_bn_file(&len);
    char *header = image_header(buf, len, &data_at);
    const unsigned char *data = buf + data_at;
    size_t data_len = len - data_at;
    unsigned char *img = malloc(len + 64);
    ck_assert(img != NULL);
    const char *nbt = "\"1.num_batches_tracked\":{\"dtype\":\"I64\"";

    char *h = replace(header, nbt, "\"1.num_batches_tracked\":{\"dtype\":\"F32\"");
    expect_bn_fail(img, st_image(img, h, data, data_len, 0),
                   "tensor \"1.num_batches_tracked\" is F32 but dpmptop reads it as I64", NULL);
    free(h);
    h = replace(header, nbt, "\"1.num_batches_tracked\":{\"dtype\":\"I32\"");
    expect_bn_fail(img, st_image(img, h, data, data_len, 0),
                   "tensor \"1.num_batches_tracked\" is I32", "I64");
    free(h);
    h = replace(header, "\"1.bias\":{\"dtype\":\"F32\"", "\"1.bias\":{\"dtype\":\"I64\"");
    expect_bn_fail(img, st_image(img, h, data, data_len, 0), "tensor \"1.bias\" is I64",
                   "dpmptop reads F32");
    free(h);
    h = replace(header, "\"dtype\":\"I64\",\"shape\":[]", "\"dtype\":\"I64\",\"shape\":[1]");
    expect_bn_fail(img, st_image(img, h, data, data_len, 0),
                   "\"1.num_batches_tracked\" has shape [1] but the model needs []", NULL);
    free(h);
    h = replace(header, "\"data_offsets\":[512,520]", "\"data_offsets\":[512,516]");
    expect_bn_fail(img, st_image(img, h, data, data_len, 0), "\"1.num_batches_tracked\"",
                   "do not hold 1 8-byte integers (I64)");
    free(h);

    /* F32 with 4 bytes of data (as a writer that knew no I64 would write it) */
    unsigned char *short_data = malloc(data_len);
    ck_assert(short_data != NULL);
    memcpy(short_data, data, 516);
    memcpy(short_data + 516, data + 520, data_len - 520);
    h = replace(header, "\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[512,520]",
                "\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[512,516]");
    /* every later offset 4 bytes less: rebuild them by hand for the tensors after it */
    static const char *const shifts[][2] = {
        { "[520,664]", "[516,660]" }, { "[664,808]", "[660,804]" },
        { "[808,952]", "[804,948]" }, { "[952,1096]", "[948,1092]" },
        { "[1096,1104]", "[1092,1100]" }, { "[1104,1536]", "[1100,1532]" },
        { "[1536,1548]", "[1532,1544]" },
    };
    for (size_t i = 0; i < sizeof shifts / sizeof *shifts; i++) {
        char *next = replace(h, shifts[i][0], shifts[i][1]);
        free(h);
        h = next;
    }
    expect_bn_fail(img, st_image(img, h, short_data, data_len - 4, 0),
                   "tensor \"1.num_batches_tracked\" is F32", "I64");
    free(h);
    free(short_data);

    /* values: the count's 8 bytes at data offset 512 */
    unsigned char *values = malloc(data_len);
    ck_assert(values != NULL);
    static const struct {
        int64_t v;
        const char *want, *want2;
    } bad[] = {
        { -1, "tensor \"1.num_batches_tracked\" (I64) holds -1 at index 0", "from 0 to 2^24" },
        { INT64_MIN, "holds -9223372036854775808", NULL },
        { ((int64_t)1 << 24) + 1, "tensor \"1.num_batches_tracked\" (I64) holds 16777217",
          "above 2^24 = 16777216: dpmptop holds it in a float, which holds whole numbers "
          "exactly only up to there" },
        { INT64_MAX, "holds 9223372036854775807", "above 2^24" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        memcpy(values, data, data_len);
        for (int b = 0; b < 8; b++)
            values[512 + b] = (unsigned char)((uint64_t)bad[i].v >> (8 * b));
        expect_bn_fail(img, st_image(img, header, values, data_len, 0), bad[i].want,
                       bad[i].want2);
    }
    /* 2^24 and 0 load as themselves */
    dp_model m;
    make_bn_model(&m);
    float host[BN_PARAMS];
    dp_err err = { "" };
    static const int64_t good[] = { (int64_t)1 << 24, 0, 1, 12345 };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        memcpy(values, data, data_len);
        for (int b = 0; b < 8; b++)
            values[512 + b] = (unsigned char)((uint64_t)good[i] >> (8 * b));
        size_t n = st_image(img, header, values, data_len, 0);
        ck_assert_msg(dp_safetensors_parse(img, n, "good", &m, host, &err) == 0, "%s", err.msg);
        ck_assert_msg(host[find_tensor(&m, "1.num_batches_tracked").info.offset] ==
                          (float)good[i],
                      "count %lld loaded as %g", (long long)good[i],
                      (double)host[find_tensor(&m, "1.num_batches_tracked").info.offset]);
    }
    dp_model_free(&m);
    free(values);
    free(img);
    free(header);
    free(buf);
}
END_TEST

/* The writer refuses an I64 tensor holding what no count is (a fraction, a negative number,
 * more than 2^24, NaN), and leaves no file. */
START_TEST(test_st_i64_save_refused)
{
    dp_model m;
    make_bn_model(&m);
    float host[BN_PARAMS];
    char path[4200];
    join(path, sizeof path, unit_tmpdir(), "never.safetensors");
    size_t at = find_tensor(&m, "4.num_batches_tracked").info.offset;
    static const float bad[] = { 2.5f, -1.0f, 33554432.0f, NAN, INFINITY };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        fill_bn(&m, host);
        host[at] = bad[i];
        dp_err err = { "" };
        ck_assert_int_eq(dp_safetensors_save(path, &m, host, &err), -1);
        ck_assert_msg(strstr(err.msg, "tensor \"4.num_batches_tracked\" (I64) holds") &&
                          strstr(err.msg, "not a whole number from 0 to 2^24"),
                      "message: %s", err.msg);
        ck_assert_msg(!file_exists(path), "a file was left for %g", (double)bad[i]);
    }
    dp_model_free(&m);
}
END_TEST

/* Optimizer state files hold the trained tensors only (PyTorch's optimizer has no state for a
 * buffer); loading sets the buffers' slots to 0 and the others as saved. */
START_TEST(test_st_state_no_buffers)
{
    dp_model m;
    make_bn_model(&m);
    static float host[2 * BN_PARAMS], back[2 * BN_PARAMS];
    fill(host, 2 * BN_PARAMS, -0.5f);
    const char *slots[2] = { "exp_avg", "exp_avg_sq" };
    char path[4200];
    join(path, sizeof path, unit_tmpdir(), "optimizer.safetensors");
    dp_err err = { "" };
    ck_assert_msg(dp_safetensors_save_state(path, &m, 2, slots, host, &err) == 0, "save: %s",
                  err.msg);
    size_t len, data_at;
    unsigned char *buf = read_all(path, &len);
    char *header = image_header(buf, len, &data_at);
    ck_assert_uint_eq(len - data_at, 2 * BN_TRAINED * sizeof(float));
    ck_assert_msg(!strstr(header, "running_mean") && !strstr(header, "running_var") &&
                      !strstr(header, "num_batches_tracked") && !strstr(header, "I64"),
                  "buffers in the optimizer state: %s", header);
    static const char *const want[] = {
        "\"0.weight.exp_avg\":", "\"1.weight.exp_avg\":", "\"1.bias.exp_avg_sq\":",
        "\"4.weight.exp_avg_sq\":", "\"5.bias.exp_avg_sq\":",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        ck_assert_msg(strstr(header, want[i]) != NULL, "header lacks %s: %s", want[i], header);

    memset(back, 0xA5, sizeof back);
    ck_assert_msg(dp_safetensors_load_state(path, &m, 2, slots, back, &err) == 0, "load: %s",
                  err.msg);
    dp_model_tensor t[32];
    int n = dp_model_tensors(&m, t);
    size_t buffers = 0;
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < n; i++)
            for (size_t k = 0; k < t[i].info.count; k++) {
                size_t at = (size_t)s * BN_PARAMS + t[i].info.offset + k;
                if (t[i].info.buffer) {
                    ck_assert_msg(back[at] == 0.0f && !signbit(back[at]),
                                  "%s.%s[%zu] is %a, not 0", t[i].name, slots[s], k, back[at]);
                    buffers++;
                } else {
                    ck_assert_msg(memcmp(&host[at], &back[at], sizeof(float)) == 0,
                                  "%s.%s[%zu]: saved %a, loaded %a", t[i].name, slots[s], k,
                                  host[at], back[at]);
                }
            }
    ck_assert_uint_eq(buffers, 2 * (BN_PARAMS - BN_TRAINED));

    /* a state file that names a buffer is one of another program: refused */
    char *h = replace(header, "\"1.weight.exp_avg\":",
                      "\"1.running_mean.exp_avg\":{\"dtype\":\"F32\",\"shape\":[4],"
                      "\"data_offsets\":[0,0]},\"1.weight.exp_avg\":");
    unsigned char *img = malloc(len + 256);
    ck_assert(img != NULL);
    size_t img_len = st_image(img, h, buf + data_at, len - data_at, 0);
    write_bytes(path, img, img_len);
    ck_assert_int_eq(dp_safetensors_load_state(path, &m, 2, slots, back, &err), -1);
    ck_assert_msg(strstr(err.msg, "\"1.running_mean.exp_avg\" is not part of this model"),
                  "message: %s", err.msg);
    free(img);
    free(h);
    free(header);
    free(buf);
    dp_model_free(&m);
}
END_TEST

/* The parameters a user is told of: PyTorch's model.parameters(), the buffers left out. */
START_TEST(test_st_trainable_count)
{
    dp_model m;
    make_bn_model(&m);
    ck_assert_uint_eq(dp_model_trainable(&m), BN_TRAINED);
    ck_assert_uint_eq(dp_model_trainable(&m), 112 + 8 + 72 + 111);
    dp_model_free(&m);
    make_model(&m, SPEC);
    ck_assert_uint_eq(dp_model_trainable(&m), N_PARAMS);
    dp_model_free(&m);
    /* a bn inside a residual block: its buffers are the block's, and still not trained */
    dp_err err = { "" };
    dp_shape in = { 3, { 2, 4, 4 } };
    ck_assert_msg(dp_model_parse_shape(&m, "res(conv:2:3:1:1, bn), flatten, linear:3", in, 3,
                                       &err) == 0,
                  "%s", err.msg);
    size_t conv = 2 * 2 * 9 + 2, bn = 4 * 2 + 1, linear = 3 * 32 + 3;
    ck_assert_uint_eq(m.n_params, conv + bn + linear);
    ck_assert_uint_eq(dp_model_trainable(&m), conv + 2 * 2 + linear);
    dp_model_free(&m);
}
END_TEST

/* A checkpoint of the bn model (AdamW) reads back exactly: the parameters, running statistics
 * and counts in model.safetensors, the trained tensors' state in optimizer.safetensors (which
 * names no buffer), the buffers' state 0, and the step. */
START_TEST(test_st_checkpoint_bn)
{
    dp_model m;
    make_bn_model(&m);
    dp_optim_config oc = dp_optim_defaults();
    oc.kind = DP_OPTIM_ADAMW;
    ck_assert_uint_eq(dp_optim_state_per_param(&oc), 2);
    static float params[BN_PARAMS], state[2 * BN_PARAMS];
    static float params_back[BN_PARAMS], state_back[2 * BN_PARAMS];
    fill_bn(&m, params);
    fill(state, 2 * BN_PARAMS, 0.125f);
    /* the optimizer leaves the buffers' state 0 */
    dp_model_tensor t[32];
    int n = dp_model_tensors(&m, t);
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < n; i++)
            if (t[i].info.buffer)
                memset(state + (size_t)s * BN_PARAMS + t[i].info.offset, 0,
                       t[i].info.count * sizeof(float));
    dp_run_identity id = dp_run_identity_of(BN_SPEC, &m, "images", 100, 10, &oc, 3);
    ck_assert_uint_eq(id.params, BN_PARAMS); /* the flat vector's length, buffers included */
    dp_train_state ts = { .step = 12, .updates = 12, .epoch = 1, .position = 20 };
    snprintf(ts.plan, sizeof ts.plan, "dp 2");
    snprintf(ts.run, sizeof ts.run, "0123456789abcdef");
    char dir[4200], written[4300];
    join(dir, sizeof dir, unit_tmpdir(), "ck");
    dp_err err = { "" };
    ck_assert_msg(dp_checkpoint_prepare(dir, NULL, 0, &err) == 0, "prepare: %s", err.msg);
    ck_assert_msg(dp_checkpoint_write(dir, 2, &m, &oc, params, state, &ts, &id, "[run]\n",
                                      written, sizeof written, &err) == 0,
                  "write: %s", err.msg);
    dp_train_state back = { 0 };
    memset(params_back, 0xA5, sizeof params_back);
    memset(state_back, 0xA5, sizeof state_back);
    ck_assert_msg(dp_checkpoint_read(written, &m, &oc, &id, params_back, state_back, &back,
                                     &err) == 0,
                  "read: %s", err.msg);
    ck_assert_msg(memcmp(params, params_back, sizeof params) == 0, "parameters differ");
    ck_assert_msg(memcmp(state, state_back, sizeof state) == 0, "optimizer state differs");
    ck_assert_int_eq(back.step, 12);
    ck_assert_int_eq(back.updates, 12);
    ck_assert_str_eq(back.run, "0123456789abcdef");

    char file[4400];
    size_t len, data_at;
    snprintf(file, sizeof file, "%s/model.safetensors", written);
    unsigned char *buf = read_all(file, &len);
    char *header = image_header(buf, len, &data_at);
    ck_assert_msg(strstr(header, "\"4.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[]"),
                  "model.safetensors: %s", header);
    free(header);
    free(buf);
    snprintf(file, sizeof file, "%s/optimizer.safetensors", written);
    buf = read_all(file, &len);
    header = image_header(buf, len, &data_at);
    ck_assert_msg(!strstr(header, "running_") && !strstr(header, "num_batches_tracked"),
                  "optimizer.safetensors names a buffer: %s", header);
    ck_assert_msg(strstr(header, "\"4.bias.exp_avg_sq\":"), "optimizer.safetensors: %s",
                  header);
    ck_assert_uint_eq(len - data_at, 2 * BN_TRAINED * sizeof(float));
    free(header);
    free(buf);
    dp_model_free(&m);
}
END_TEST

Suite *safetensors_suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *good = tcase_create("good");
    tcase_add_test(good, test_st_round_trip);
    tcase_add_test(good, test_st_layout);
    tcase_add_test(good, test_st_hand_built);
    tcase_add_test(good, test_st_parse_memory);
    suite_add_tcase(s, good);

    TCase *bad = tcase_create("bad");
    tcase_add_test(bad, test_st_shape_mismatch);
    tcase_add_test(bad, test_st_missing_tensor);
    tcase_add_test(bad, test_st_extra_tensor);
    tcase_add_test(bad, test_st_duplicate_tensor);
    tcase_add_test(bad, test_st_dtype);
    tcase_add_test(bad, test_st_offsets_past_end);
    tcase_add_test(bad, test_st_offsets_wrong_length);
    tcase_add_test(bad, test_st_offsets_not_contiguous);
    tcase_add_test(bad, test_st_non_finite);
    tcase_add_test(bad, test_st_header_too_long);
    tcase_add_test(bad, test_st_short_file);
    tcase_add_test(bad, test_st_not_json);
    tcase_add_test(bad, test_st_truncated_string);
    tcase_add_test(bad, test_st_load_missing_file);
    suite_add_tcase(s, bad);

    TCase *save = tcase_create("save");
    tcase_add_test(save, test_st_save_missing_dir);
    tcase_add_test(save, test_st_save_replaces);
    tcase_add_test(save, test_st_atomic_abort);
    tcase_add_test(save, test_st_save_commit_fails);
    suite_add_tcase(s, save);

    TCase *bn = tcase_create("buffers");
    tcase_add_test(bn, test_st_bn_round_trip);
    tcase_add_test(bn, test_st_i64_refused);
    tcase_add_test(bn, test_st_i64_save_refused);
    tcase_add_test(bn, test_st_state_no_buffers);
    tcase_add_test(bn, test_st_trainable_count);
    tcase_add_test(bn, test_st_checkpoint_bn);
    suite_add_tcase(s, bn);
    return s;
}
