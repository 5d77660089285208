/* safetensors.c -- reading and writing safetensors files for a model: F32 tensors, and I64 for
 * the tensors that hold whole numbers (dp_tensor_info.int64: num_batches_tracked). */
#include "engine/safetensors.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/fileio.h"

/* The format's own limit on the JSON header. */
#define HEADER_MAX ((uint64_t)100 << 20)
/* A weights file for any model this version can build fits well within this. */
#define FILE_MAX ((size_t)1 << 36)
/* The largest whole number a float holds exactly with every whole number below it: an I64
 * value above it could not be loaded into the flat float vector without changing. */
#define I64_MAX_EXACT ((int64_t)1 << 24)

/* The tensors of a file: the model's, once for its parameters (every tensor of the
 * state_dict, buffers included), or once per slot of per-parameter state ("0.weight.exp_avg",
 * ..., slot s at s * n_params in the flat vector), which only trained tensors have: PyTorch's
 * optimizer state holds nothing for a buffer. Returns a calloc'd array of *n (NULL when out of
 * memory). */
static dp_model_tensor *list_tensors(const dp_model *m, int n_slots, const char *const *slots,
                                     int *n)
{
    int per = dp_model_tensors(m, NULL);
    dp_model_tensor *all = calloc((size_t)per + 1, sizeof *all);
    dp_model_tensor *t = calloc((size_t)per * (size_t)n_slots + 1, sizeof *t);
    if (!all || !t) {
        free(all);
        free(t);
        return NULL;
    }
    dp_model_tensors(m, all);
    int used = 0;
    for (int s = 0; s < n_slots; s++) {
        for (int i = 0; i < per; i++) {
            if (slots && all[i].info.buffer)
                continue;
            dp_model_tensor *ti = &t[used++];
            *ti = all[i];
            if (!slots)
                continue;
            snprintf(ti->name, sizeof ti->name, "%s.%s", all[i].name, slots[s]);
            ti->info.offset += (size_t)s * m->n_params;
            ti->info.int64 = false; /* optimizer state is real-valued */
        }
    }
    free(all);
    *n = used;
    return t;
}

/* Bytes of one element of a tensor in a file: I64 or F32. */
static size_t element_size(const dp_tensor_info *info)
{
    return info->int64 ? sizeof(int64_t) : sizeof(float);
}

static const char *dtype_of(const dp_tensor_info *info)
{
    return info->int64 ? "I64" : "F32";
}

/* ---- writing ---- */

/* Refuses to write an I64 tensor whose floats are not whole numbers from 0 to 2^24: the
 * reader would refuse the file (such a value is a bug, never a count). */
static int check_whole(const dp_model_tensor *t, const float *v, const char *path, dp_err *err)
{
    for (size_t i = 0; i < t->info.count; i++)
        if (!(v[i] >= 0.0f && v[i] <= (float)I64_MAX_EXACT && v[i] == floorf(v[i])))
            return dp_fail(err, "%s: tensor \"%s\" (I64) holds %g at index %zu, not a whole "
                                "number from 0 to 2^24; not saved",
                           path, t->name, (double)v[i], i);
    return 0;
}

/* Writes a tensor's data: F32 little-endian, the host's own layout on every platform dpmptop
 * supports; I64 as 8-byte little-endian integers converted from the floats. */
static void write_data(FILE *f, const dp_model_tensor *t, const float *v)
{
    if (!t->info.int64) {
        fwrite(v, sizeof(float), t->info.count, f);
        return;
    }
    for (size_t i = 0; i < t->info.count; i++) {
        uint64_t x = (uint64_t)(int64_t)v[i];
        unsigned char le[8];
        for (int b = 0; b < 8; b++)
            le[b] = (unsigned char)(x >> (8 * b));
        fwrite(le, 1, sizeof le, f);
    }
}

static int save_tensors(const char *path, const dp_model *m, int n_slots,
                        const char *const *slots, const float *host, dp_err *err)
{
    int n = 0;
    dp_model_tensor *t = list_tensors(m, n_slots, slots, &n);
    size_t cap = 64 + (size_t)n * 160;
    char *json = malloc(cap);
    if (!t || !json) {
        free(t);
        free(json);
        return dp_fail(err, "%s: out of memory", path);
    }
    for (int i = 0; i < n; i++)
        if (t[i].info.int64 && check_whole(&t[i], host + t[i].info.offset, path, err) < 0) {
            free(t);
            free(json);
            return -1;
        }
    size_t used = (size_t)snprintf(json, cap, "{\"__metadata__\":{\"format\":\"pt\"}");
    size_t data_at = 0;
    for (int i = 0; i < n; i++) {
        used += (size_t)snprintf(json + used, cap - used, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                                 t[i].name, dtype_of(&t[i].info));
        for (int d = 0; d < t[i].info.ndim; d++)
            used += (size_t)snprintf(json + used, cap - used, "%s%" PRId64, d ? "," : "",
                                     t[i].info.shape[d]);
        size_t bytes = t[i].info.count * element_size(&t[i].info);
        used += (size_t)snprintf(json + used, cap - used, "],\"data_offsets\":[%zu,%zu]}",
                                 data_at, data_at + bytes);
        data_at += bytes;
    }
    used += (size_t)snprintf(json + used, cap - used, "}");
    while (used % 8) /* the data starts 8-byte aligned; the format pads with spaces */
        json[used++] = ' ';

    dp_atomic_file af;
    int rc = dp_atomic_open(&af, path, err);
    if (rc == 0) {
        unsigned char len_le[8];
        for (int b = 0; b < 8; b++)
            len_le[b] = (unsigned char)((uint64_t)used >> (8 * b));
        fwrite(len_le, 1, 8, af.f);
        fwrite(json, 1, used, af.f);
        for (int i = 0; i < n; i++)
            write_data(af.f, &t[i], host + t[i].info.offset);
        rc = dp_atomic_commit(&af, err);
    }
    free(t);
    free(json);
    return rc;
}

int dp_safetensors_save(const char *path, const dp_model *m, const float *host, dp_err *err)
{
    return save_tensors(path, m, 1, NULL, host, err);
}

int dp_safetensors_save_state(const char *path, const dp_model *m, int n_slots,
                              const char *const *slots, const float *host, dp_err *err)
{
    return save_tensors(path, m, n_slots, slots, host, err);
}

/* ---- a JSON reader just large enough for the header ---- */

typedef struct json {
    const char *p, *end;
} json;

static void skip_ws(json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool eat(json *j, char c)
{
    skip_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return true;
    }
    return false;
}

/* Reads a string into out (truncating past size - 1); false on malformed input. */
static bool read_string(json *j, char *out, size_t size)
{
    if (!eat(j, '"'))
        return false;
    size_t n = 0;
    while (j->p < j->end && *j->p != '"') {
        char c = *j->p++;
        if ((unsigned char)c < 0x20)
            return false;
        if (c == '\\') {
            if (j->p >= j->end)
                return false;
            c = *j->p++;
            switch (c) {
            case '"': case '\\': case '/': break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u': /* keep names ASCII: \uXXXX becomes '?' */
                for (int k = 0; k < 4; k++, j->p++)
                    if (j->p >= j->end || !isxdigit((unsigned char)*j->p))
                        return false;
                c = '?';
                break;
            default:
                return false;
            }
        }
        if (n + 1 < size)
            out[n++] = c;
    }
    if (size)
        out[n] = '\0';
    return eat(j, '"');
}

static bool read_uint(json *j, uint64_t *v)
{
    skip_ws(j);
    if (j->p >= j->end || !isdigit((unsigned char)*j->p))
        return false;
    uint64_t x = 0;
    while (j->p < j->end && isdigit((unsigned char)*j->p)) {
        unsigned d = (unsigned)(*j->p++ - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *v = x;
    return true;
}

/* Skips any JSON value, nesting at most `depth` deep. */
static bool skip_value(json *j, int depth)
{
    skip_ws(j);
    if (j->p >= j->end || depth <= 0)
        return false;
    char c = *j->p;
    if (c == '"') {
        char sink[1];
        return read_string(j, sink, sizeof sink);
    }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->p++;
        if (eat(j, close))
            return true;
        do {
            if (c == '{') {
                char sink[1];
                if (!read_string(j, sink, sizeof sink) || !eat(j, ':'))
                    return false;
            }
            if (!skip_value(j, depth - 1))
                return false;
        } while (eat(j, ','));
        return eat(j, close);
    }
    /* number, true, false, null */
    const char *start = j->p;
    while (j->p < j->end && (isalnum((unsigned char)*j->p) || strchr("+-.", *j->p)))
        j->p++;
    return j->p > start;
}

/* One tensor entry of the header. */
typedef struct entry {
    char dtype[16];
    int ndim;
    uint64_t shape[DP_MAX_DIMS];
    uint64_t begin, end;
} entry;

/* Parses {"dtype": ..., "shape": [...], "data_offsets": [b, e]} in any order. */
static bool read_entry(json *j, entry *e)
{
    bool have_dtype = false, have_shape = false, have_offsets = false;
    if (!eat(j, '{'))
        return false;
    do {
        char key[32];
        if (!read_string(j, key, sizeof key) || !eat(j, ':'))
            return false;
        if (!strcmp(key, "dtype")) {
            if (!read_string(j, e->dtype, sizeof e->dtype))
                return false;
            have_dtype = true;
        } else if (!strcmp(key, "shape")) {
            if (!eat(j, '['))
                return false;
            e->ndim = 0;
            if (!eat(j, ']')) {
                do {
                    if (e->ndim == DP_MAX_DIMS || !read_uint(j, &e->shape[e->ndim++]))
                        return false;
                } while (eat(j, ','));
                if (!eat(j, ']'))
                    return false;
            }
            have_shape = true;
        } else if (!strcmp(key, "data_offsets")) {
            if (!eat(j, '[') || !read_uint(j, &e->begin) || !eat(j, ',') ||
                !read_uint(j, &e->end) || !eat(j, ']'))
                return false;
            have_offsets = true;
        } else if (!skip_value(j, 8)) {
            return false;
        }
    } while (eat(j, ','));
    return eat(j, '}') && have_dtype && have_shape && have_offsets;
}

static void shape_text(char *buf, size_t size, int ndim, const uint64_t *shape)
{
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < ndim && used < size; d++)
        used += (size_t)snprintf(buf + used, size - used, "%s%" PRIu64, d ? ", " : "", shape[d]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

/* Where a tensor's bytes lie in the data section, and which of the model's tensors it is. */
typedef struct span {
    uint64_t begin, end;
    int k;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* The format requires the tensors' data to tile the data section: sorted by offset, the first
 * begins at 0, each begins where the one before ended, and the last ends with the file. */
static int check_spans(span *sp, int n, size_t data_len, const dp_model_tensor *t,
                       const char *what, dp_err *err)
{
    qsort(sp, (size_t)n, sizeof *sp, span_cmp);
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        if (sp[i].begin == at) {
            at = sp[i].end;
            continue;
        }
        if (i == 0)
            return dp_fail(err, "%s: tensor \"%s\" comes first in the data but begins at byte %"
                                PRIu64 "; the data offsets must start at 0 and follow one "
                                "another, as the safetensors format requires",
                           what, t[sp[i].k].name, sp[i].begin);
        if (sp[i].begin < at)
            return dp_fail(err, "%s: tensor \"%s\" (data_offsets [%" PRIu64 ", %" PRIu64
                                "]) overlaps tensor \"%s\" (which ends at byte %" PRIu64
                                "); each tensor's data must follow the previous one's, as the "
                                "safetensors format requires",
                           what, t[sp[i].k].name, sp[i].begin, sp[i].end, t[sp[i - 1].k].name,
                           at);
        return dp_fail(err, "%s: tensor \"%s\" begins at byte %" PRIu64 ", leaving a gap of %"
                            PRIu64 " bytes after tensor \"%s\"; each tensor's data must follow "
                            "the previous one's, as the safetensors format requires",
                       what, t[sp[i].k].name, sp[i].begin, sp[i].begin - at,
                       t[sp[i - 1].k].name);
    }
    if (at != data_len)
        return dp_fail(err, "%s: %" PRIu64 " bytes after the last tensor (\"%s\") belong to "
                            "no tensor; the data section must end with the last tensor, as the "
                            "safetensors format requires",
                       what, (uint64_t)data_len - at, n ? t[sp[n - 1].k].name : "none");
    return 0;
}

/* Refuses a NaN or an infinity in a loaded tensor: training would carry it silently (a ReLU
 * makes 0 of NaN), so the file is reported instead, with the first such value's index; and a
 * negative value in a variance (batch normalisation's running_var: its square root would be
 * NaN). */
static int check_finite(const float *v, const dp_model_tensor *t, const char *what, dp_err *err)
{
    size_t i = 0;
    while (i < t->info.count && isfinite(v[i]) && !(t->info.nonnegative && v[i] < 0.0f))
        i++;
    if (i == t->info.count)
        return 0;
    char at[96];
    uint64_t idx[DP_MAX_DIMS];
    size_t rest = i;
    for (int d = t->info.ndim - 1; d >= 0; d--) {
        idx[d] = rest % (uint64_t)t->info.shape[d];
        rest /= (uint64_t)t->info.shape[d];
    }
    shape_text(at, sizeof at, t->info.ndim, idx);
    if (isfinite(v[i])) /* a negative variance */
        return dp_fail(err, "%s: tensor %s holds %g at index %zu (%s), a variance, which is "
                            "never negative",
                       what, t->name, (double)v[i], i, at);
    return dp_fail(err, "%s: tensor %s holds %s at index %zu (%s); dpmptop loads only finite "
                        "values",
                   what, t->name, isnan(v[i]) ? "NaN" : v[i] > 0 ? "+Inf" : "-Inf", i, at);
}

/* Reads the header's length from the first 8 bytes (little-endian) and checks that the header
 * fits the format's limit and the file. */
static int read_header_len(const unsigned char *buf, size_t len, const char *what,
                           uint64_t *hlen_out, dp_err *err)
{
    if (len < 8)
        return dp_fail(err, "%s: not a safetensors file (only %zu bytes)", what, len);
    uint64_t hlen = 0;
    for (int b = 7; b >= 0; b--)
        hlen = hlen << 8 | buf[b];
    if (hlen > HEADER_MAX)
        return dp_fail(err, "%s: not a safetensors file (a header of %" PRIu64 " bytes, more "
                            "than the format's limit of %" PRIu64 ")",
                       what, hlen, HEADER_MAX);
    if (hlen > len - 8)
        return dp_fail(err, "%s: not a safetensors file (header length %" PRIu64
                            " does not fit in %zu bytes)",
                       what, hlen, len);
    *hlen_out = hlen;
    return 0;
}

/* What reading a header learns, checked against the model's tensors t[0..n). */
typedef struct header_scan {
    const char *what;
    const unsigned char *buf; /* the file, for the byte offsets in messages */
    size_t data_len;          /* bytes after the header */
    const dp_model_tensor *t;
    int n;
    bool *seen; /* seen[k]: the header named t[k] */
    span *sp;   /* sp[0..found): the entries read so far, in the header's order */
    int found;
} header_scan;

/* The index of the model's tensor called name, or -1 (reported) when the file's entry for it
 * is unknown or repeated; marks it seen. */
static int claim_tensor(header_scan *hs, const char *name, dp_err *err)
{
    int k = 0;
    while (k < hs->n && strcmp(hs->t[k].name, name))
        k++;
    if (k == hs->n)
        return dp_fail(err, "%s: tensor \"%s\" is not part of this model (its layers give "
                            "%d tensors, %s first)",
                       hs->what, name, hs->n, hs->n ? hs->t[0].name : "none");
    if (hs->seen[k])
        return dp_fail(err, "%s: tensor \"%s\" appears twice", hs->what, name);
    hs->seen[k] = true;
    hs->found++;
    return k;
}

/* Checks an entry's dtype, shape and data offsets against the model's tensor info. */
static int check_entry(const header_scan *hs, const char *name, const entry *e,
                       const dp_tensor_info *info, dp_err *err)
{
    if (info->int64 && strcmp(e->dtype, "I64"))
        return dp_fail(err, "%s: tensor \"%s\" is %s but dpmptop reads it as I64 (int64, as "
                            "PyTorch saves a count such as num_batches_tracked)",
                       hs->what, name, e->dtype);
    if (!info->int64 && strcmp(e->dtype, "F32"))
        return dp_fail(err, "%s: tensor \"%s\" is %s; dpmptop reads F32 (save with "
                            "model.float())",
                       hs->what, name, e->dtype);
    bool same = e->ndim == info->ndim;
    for (int d = 0; same && d < e->ndim; d++)
        same = e->shape[d] == (uint64_t)info->shape[d];
    if (!same) {
        char got[96], want[96];
        uint64_t ws[DP_MAX_DIMS];
        for (int d = 0; d < info->ndim; d++)
            ws[d] = (uint64_t)info->shape[d];
        shape_text(got, sizeof got, e->ndim, e->shape);
        shape_text(want, sizeof want, info->ndim, ws);
        return dp_fail(err, "%s: tensor \"%s\" has shape %s but the model needs %s; check "
                            "[model] layers",
                       hs->what, name, got, want);
    }
    if (e->begin > e->end || e->end > hs->data_len ||
        e->end - e->begin != info->count * element_size(info))
        return dp_fail(err, "%s: tensor \"%s\": data_offsets [%" PRIu64 ", %" PRIu64
                            "] do not hold %zu %s inside the %zu data bytes",
                       hs->what, name, e->begin, e->end, info->count,
                       info->int64 ? "8-byte integers (I64)" : "floats", hs->data_len);
    return 0;
}

/* Reads one "name": value member of the header; the metadata is skipped, a tensor's entry is
 * checked and recorded. */
static int read_member(header_scan *hs, json *j, dp_err *err)
{
    char name[128];
    if (!read_string(j, name, sizeof name) || !eat(j, ':'))
        return dp_fail(err, "%s: malformed safetensors header near byte %td", hs->what,
                       j->p - (const char *)hs->buf);
    if (!strcmp(name, "__metadata__")) {
        if (!skip_value(j, 8))
            return dp_fail(err, "%s: malformed __metadata__ in the header", hs->what);
        return 0;
    }
    entry e = { 0 };
    if (!read_entry(j, &e))
        return dp_fail(err, "%s: tensor \"%s\": malformed entry (needs dtype, shape and "
                            "data_offsets)",
                       hs->what, name);
    int k = claim_tensor(hs, name, err);
    if (k < 0 || check_entry(hs, name, &e, &hs->t[k].info, err) < 0)
        return -1;
    hs->sp[hs->found - 1] = (span){ e.begin, e.end, k };
    return 0;
}

/* Reads the header's JSON object (and its padding), member by member. */
static int read_header(header_scan *hs, json *j, dp_err *err)
{
    if (!eat(j, '{'))
        return dp_fail(err, "%s: the safetensors header is not a JSON object", hs->what);
    if (!eat(j, '}')) {
        do {
            if (read_member(hs, j, err) < 0)
                return -1;
        } while (eat(j, ','));
        if (!eat(j, '}'))
            return dp_fail(err, "%s: malformed safetensors header near byte %td", hs->what,
                           j->p - (const char *)hs->buf);
    }
    skip_ws(j); /* the format pads the header with spaces, and allows nothing else */
    if (j->p != j->end)
        return dp_fail(err, "%s: unexpected bytes after the safetensors header's JSON object",
                       hs->what);
    return 0;
}

/* Refuses a header that leaves out one of the model's tensors, naming the first missing. */
static int check_all_found(const header_scan *hs, dp_err *err)
{
    if (hs->found == hs->n)
        return 0;
    int k = 0;
    while (hs->seen[k])
        k++;
    return dp_fail(err, "%s: tensor \"%s\" is missing (the file has %d of the model's %d "
                        "tensors); check [model] layers",
                   hs->what, hs->t[k].name, hs->found, hs->n);
}

/* Converts an I64 tensor's little-endian integers into floats, refusing a value a float
 * would not hold exactly (or that no count can be). */
static int copy_i64(const dp_model_tensor *t, const unsigned char *src, float *dst,
                    const char *what, dp_err *err)
{
    for (size_t i = 0; i < t->info.count; i++) {
        uint64_t x = 0;
        for (int b = 7; b >= 0; b--)
            x = x << 8 | src[8 * i + (size_t)b];
        int64_t v = (int64_t)x; /* two's complement on every platform dpmptop supports */
        if (v < 0)
            return dp_fail(err, "%s: tensor \"%s\" (I64) holds %" PRId64 " at index %zu; "
                                "dpmptop loads only counts from 0 to 2^24 there",
                           what, t->name, v, i);
        if (v > I64_MAX_EXACT)
            return dp_fail(err, "%s: tensor \"%s\" (I64) holds %" PRId64 " at index %zu, above "
                                "2^24 = %" PRId64 ": dpmptop holds it in a float, which holds "
                                "whole numbers exactly only up to there",
                           what, t->name, v, i, I64_MAX_EXACT);
        dst[i] = (float)v;
    }
    return 0;
}

/* Copies each tensor's data (spans sorted by offset) into host, checking it is finite (F32)
 * or a count a float holds exactly (I64). */
static int copy_tensors(const header_scan *hs, const unsigned char *data, float *host,
                        dp_err *err)
{
    for (int i = 0; i < hs->n; i++) {
        const dp_model_tensor *tk = &hs->t[hs->sp[i].k];
        if (tk->info.int64) {
            if (copy_i64(tk, data + hs->sp[i].begin, host + tk->info.offset, hs->what, err) < 0)
                return -1;
            continue;
        }
        memcpy(host + tk->info.offset, data + hs->sp[i].begin, tk->info.count * sizeof(float));
        if (check_finite(host + tk->info.offset, tk, hs->what, err) < 0)
            return -1;
    }
    return 0;
}

static int parse_tensors(const unsigned char *buf, size_t len, const char *what,
                         const dp_model *m, int n_slots, const char *const *slots, float *host,
                         dp_err *err)
{
    uint64_t hlen = 0;
    if (read_header_len(buf, len, what, &hlen, err) < 0)
        return -1;
    const unsigned char *data = buf + 8 + hlen;

    int n = 0;
    dp_model_tensor *t = list_tensors(m, n_slots, slots, &n);
    bool *seen = calloc((size_t)n + 1, sizeof *seen);
    span *sp = calloc((size_t)n + 1, sizeof *sp);
    int rc = -1;
    if (!t || !seen || !sp) {
        dp_fail(err, "%s: out of memory", what);
        goto done;
    }
    header_scan hs = { what, buf, len - 8 - (size_t)hlen, t, n, seen, sp, 0 };
    json j = { (const char *)buf + 8, (const char *)buf + 8 + hlen };
    if (read_header(&hs, &j, err) < 0 || check_all_found(&hs, err) < 0 ||
        check_spans(sp, n, hs.data_len, t, what, err) < 0 ||
        copy_tensors(&hs, data, host, err) < 0)
        goto done;
    rc = 0;
done:
    free(t);
    free(seen);
    free(sp);
    return rc;
}

int dp_safetensors_parse(const unsigned char *buf, size_t len, const char *what,
                         const dp_model *m, float *host, dp_err *err)
{
    return parse_tensors(buf, len, what, m, 1, NULL, host, err);
}

/* The bytes of the tensors' data in a file. */
static size_t data_bytes(const dp_model_tensor *t, int n)
{
    size_t bytes = 0;
    for (int i = 0; i < n; i++)
        bytes = dp_size_add(bytes, dp_size_mul(t[i].info.count, element_size(&t[i].info)));
    return bytes;
}

static int load_tensors(const char *path, const dp_model *m, int n_slots,
                        const char *const *slots, float *host, dp_err *err)
{
    int n = 0;
    dp_model_tensor *t = list_tensors(m, n_slots, slots, &n);
    if (!t)
        return dp_fail(err, "%s: out of memory", path);
    /* the model's tensors and the largest header: a larger file cannot be the model's, and is
     * refused before it is read into memory */
    size_t most = dp_size_add(data_bytes(t, n), 8 + HEADER_MAX);
    free(t);
    unsigned char *buf;
    size_t len;
    if (dp_read_file(path, most < FILE_MAX ? most : FILE_MAX, &buf, &len, err) < 0)
        return -1;
    int rc = parse_tensors(buf, len, path, m, n_slots, slots, host, err);
    free(buf);
    return rc;
}

int dp_safetensors_load(const char *path, const dp_model *m, float *host, dp_err *err)
{
    return load_tensors(path, m, 1, NULL, host, err);
}

int dp_safetensors_load_state(const char *path, const dp_model *m, int n_slots,
                              const char *const *slots, float *host, dp_err *err)
{
    if (load_tensors(path, m, n_slots, slots, host, err) < 0)
        return -1;
    /* the file has no state for the buffers: theirs is 0, as the optimizer leaves it */
    int per = dp_model_tensors(m, NULL);
    dp_model_tensor *t = calloc((size_t)per + 1, sizeof *t);
    if (!t)
        return dp_fail(err, "%s: out of memory", path);
    dp_model_tensors(m, t);
    for (int s = 0; s < n_slots; s++)
        for (int i = 0; i < per; i++)
            if (t[i].info.buffer)
                memset(host + (size_t)s * m->n_params + t[i].info.offset, 0,
                       t[i].info.count * sizeof *host);
    free(t);
    return 0;
}
