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
#include "engine/model.h"
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
    return s;
}
