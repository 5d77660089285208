/* config.c -- the key table, INI reading through inih, overrides, validation, printing. */
#include "app/configuration.h"
#include "dpmptop-config.h"
#include "base/fileio.h"
#include "engine/advisor.h"
#include "engine/backend.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <ini.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* T_LAYERS: a layer list, a string that may continue on indented lines and prints wrapped. */
typedef enum key_type { T_STR, T_LAYERS, T_INT, T_LONG, T_U64, T_DOUBLE, T_BOOL, T_ENUM } key_type;

typedef struct key {
    const char *section, *name;
    key_type type;
    size_t offset, size;      /* where in dp_config; size for strings */
    double min, max;          /* numbers: accepted range */
    bool min_open;            /* numbers: min itself is refused */
    bool max_open;            /* numbers: max itself is refused */
    const char *const *names; /* enums: the accepted words, NULL-terminated */
} key;

static const char *const precision_names[] = { "fp32", "tf32", NULL };
static const char *const convolutions_names[] = { "library", "im2col", NULL };
static const char *const on_nan_names[] = { "stop", "skip", NULL };
static const char *const data_kind_names[] = { "fashion-mnist", "mnist", "idx", "cifar10",
                                               "text", "synthetic", NULL };
static const char *const schedule_lr_names[] = { "constant", "cosine", NULL };
static const char *const balance_names[] = { "time", "flops", NULL };
static const char *const range_names[] = { "0:1", "-1:1", NULL };
static const char *const init_names[] = { "default", "dcgan", NULL };

#define OFF(field) offsetof(dp_config, field)
#define STR(sec, nm, field) { sec, nm, T_STR, OFF(field), sizeof(((dp_config *)0)->field), 0, 0, false, false, NULL }
#define LAYERS(sec, nm, field) { sec, nm, T_LAYERS, OFF(field), sizeof(((dp_config *)0)->field), 0, 0, false, false, NULL }
#define LONG(sec, nm, field, lo, hi) { sec, nm, T_LONG, OFF(field), 0, lo, hi, false, false, NULL }
#define INT(sec, nm, field, lo, hi) { sec, nm, T_INT, OFF(field), 0, lo, hi, false, false, NULL }
#define NUM(sec, nm, field, lo, hi, lo_open, hi_open) \
    { sec, nm, T_DOUBLE, OFF(field), 0, lo, hi, lo_open, hi_open, NULL }
#define BOOL(sec, nm, field) { sec, nm, T_BOOL, OFF(field), 0, 0, 0, false, false, NULL }
#define ENUM(sec, nm, field, names) { sec, nm, T_ENUM, OFF(field), 0, 0, 0, false, false, names }

/* dp_strategy_names, and auto: the plan advisor's choice (DP_CONFIG_STRATEGY_AUTO) */
static const char *const strategy_names[] = { "single", "dp", "pp", "hybrid", "auto", NULL };
_Static_assert(DP_STRATEGY_HYBRID == 3 && DP_CONFIG_STRATEGY_AUTO == 4,
               "strategy_names follows dp_strategy");

static const key keys[] = {
    STR("run", "name", name),
    { "run", "seed", T_U64, OFF(seed), 0, 0, 0, false, false, NULL },
    LONG("run", "steps", steps, 0, 1e12),
    LONG("run", "epochs", epochs, 0, 1e6),
    ENUM("run", "precision", precision, precision_names),
    ENUM("run", "convolutions", convolutions, convolutions_names),
    ENUM("run", "on_nan", on_nan, on_nan_names),
    LONG("run", "eval_every", eval_every, 0, 1e12),
    ENUM("data", "kind", data.kind, data_kind_names),
    STR("data", "path", data.path),
    INT("data", "batch", data.batch, 1, 1 << 20),
    BOOL("data", "shuffle", data.shuffle),
    BOOL("data", "on_device", data_on_device),
    LONG("data", "limit", data.limit, 0, 1e12),
    INT("data", "context", data.context, 1, 1 << 20),
    INT("data", "features", data.features, 1, 1 << 20),
    INT("data", "classes", data.classes, 2, 1 << 20),
    LONG("data", "samples", data.samples, 1, 1e9),
    LONG("data", "test_samples", data.test_samples, 1, 1e9),
    ENUM("data", "range", data_range, range_names),
    LAYERS("model", "layers", layers),
    ENUM("model", "objective", objective, dp_objective_names),
    LAYERS("model", "generator", generator),
    LAYERS("model", "discriminator", discriminator),
    STR("model", "latent", latent),
    ENUM("model", "init", init, init_names),
    ENUM("optim", "kind", optim.kind, dp_optim_names),
    NUM("optim", "lr", optim.lr, 0, INFINITY, true, false),
    NUM("optim", "momentum", optim.momentum, 0, 1, false, false),
    BOOL("optim", "nesterov", optim.nesterov),
    NUM("optim", "weight_decay", optim.weight_decay, 0, INFINITY, false, false),
    NUM("optim", "beta1", optim.beta1, 0, 1, false, true), /* PyTorch: 0 <= beta < 1 */
    NUM("optim", "beta2", optim.beta2, 0, 1, false, true),
    NUM("optim", "eps", optim.eps, 1e-30, INFINITY, false, false), /* nonzero as a float */
    LONG("optim", "warmup", optim.warmup, 0, 1e12),
    ENUM("optim", "lr_schedule", optim.schedule, schedule_lr_names),
    NUM("optim", "clip", optim.clip, 0, INFINITY, false, false),
    STR("parallel", "devices", devices),
    ENUM("parallel", "strategy", strategy, strategy_names),
    LONG("parallel", "stages", stages, 0, 1024),
    LONG("parallel", "microbatches", microbatches, 0, 1 << 16),
    ENUM("parallel", "schedule", schedule, dp_schedule_names),
    NUM("parallel", "bucket_mb", bucket_mb, 0, 1 << 16, true, false),
    ENUM("parallel", "balance", balance, balance_names),
    NUM("parallel", "watchdog", watchdog_s, 0, 1e9, false, false),
    STR("parallel", "device_memory", device_memory),
    BOOL("parallel", "auto_bn_micro", auto_bn_micro),
    LONG("parallel", "auto_plans", auto_plans, 0, DP_ADVICE_MAX),
    STR("checkpoint", "dir", checkpoint_dir),
    LONG("checkpoint", "every", checkpoint_every, 0, 1e12),
    LONG("checkpoint", "keep", checkpoint_keep, 1, 1e6),
    LONG("dashboard", "refresh_ms", refresh_ms, 10, 10000),
    BOOL("dashboard", "color", color),
    STR("gan", "samples", gan_samples),
    STR("gan", "classifier", classifier),
    LAYERS("gan", "classifier_layers", classifier_layers),
    LONG("gan", "quality_samples", quality_samples, 2, 1e6),
};
#define N_KEYS ((int)(sizeof keys / sizeof *keys))
/* The longest layer between commas: --print-config writes each on a line of its own at worst. */
#define LAYER_ITEM_MAX (INI_MAX_LINE - 20)
_Static_assert(sizeof keys / sizeof *keys <= sizeof((dp_config *)0)->origin /
                                                 sizeof(((dp_config *)0)->origin[0]),
               "dp_config.origin needs a row per key");

static const char *const sections[] = { "run", "data", "model", "optim", "parallel",
                                        "checkpoint", "dashboard", "gan", NULL };

void dp_config_defaults(dp_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "dpmptop");
    c->seed = 1;
    c->epochs = 1;
    c->precision = DP_PRECISION_TF32; /* GPUs before compute capability 8.0 run fp32 */
    c->data_on_device = true;
    c->on_nan = DP_NAN_STOP;
    c->data = dp_data_defaults();
    snprintf(c->layers, sizeof c->layers, "linear:256, relu, linear:10");
    c->objective = 0; /* dp_objectives[0]: classify */
    snprintf(c->latent, sizeof c->latent, "100");
    c->quality_samples = 10000;
    c->optim = dp_optim_defaults();
    snprintf(c->devices, sizeof c->devices, "auto");
    c->strategy = DP_STRATEGY_DP;
    c->schedule = DP_SCHEDULE_1F1B;
    c->bucket_mb = 25;
    c->watchdog_s = 600;
    c->auto_plans = 8;
    c->checkpoint_keep = 3;
    c->refresh_ms = 100;
    c->color = true;
}

static const key *find_key(const char *section, const char *name)
{
    for (int i = 0; i < N_KEYS; i++)
        if (!strcmp(keys[i].section, section) && !strcmp(keys[i].name, name))
            return &keys[i];
    return NULL;
}

/* section[0..len): compared whole, so that no name is cut to fit a buffer first. */
static bool known_section(const char *section, size_t len)
{
    for (int i = 0; sections[i]; i++)
        if (strlen(sections[i]) == len && !memcmp(sections[i], section, len))
            return true;
    return false;
}

/* "a, b, c" from a NULL-terminated list. */
static void join_names(char *buf, size_t size, const char *const *names)
{
    buf[0] = '\0';
    for (int i = 0; names[i]; i++) {
        size_t used = strlen(buf);
        snprintf(buf + used, size - used, "%s%s", i ? ", " : "", names[i]);
    }
}

static void keys_of(char *buf, size_t size, const char *section)
{
    buf[0] = '\0';
    for (int i = 0; i < N_KEYS; i++) {
        if (strcmp(keys[i].section, section))
            continue;
        size_t used = strlen(buf);
        snprintf(buf + used, size - used, "%s%s", used ? ", " : "", keys[i].name);
    }
}

/* What a numeric key accepts, for messages. */
static void describe_range(char *buf, size_t size, const key *k, const char *noun)
{
    const char *fmt = k->type == T_DOUBLE ? "%g" : "%.0f"; /* whole numbers in full */
    char lo[32], hi[32];
    snprintf(lo, sizeof lo, fmt, k->min);
    snprintf(hi, sizeof hi, fmt, k->max);
    if (isinf(k->max))
        snprintf(buf, size, "%s %s %s", noun, k->min_open ? ">" : ">=", lo);
    else
        snprintf(buf, size, "%s from %s%s to %s%s", noun, lo, k->min_open ? " (excluded)" : "",
                 hi, k->max_open ? " (excluded)" : "");
}

/* Whether a string value would read back from the INI line "key = value" as itself. inih
 * has no quoting: a comment prefix at the start of the value or after a blank ends the
 * value there, and a layer list, printed wrapped, may put any of its parts at the start of a
 * line, where ';' and '#' make the line a comment. */
static bool reads_back(const key *k, const char *text, char *why, size_t why_size)
{
    if (k->type == T_LAYERS) {
        size_t at = strcspn(text, ini_start_comment_prefixes);
        if (text[at]) {
            snprintf(why, why_size, "a layer list has no '%c' (a wrapped line starting with it "
                                    "is a comment); remove it", text[at]);
            return false;
        }
    }
    if (!ini_allow_inline_comments)
        return true;
    for (const char *p = text; *p; p++)
        if (strchr(ini_inline_comment_prefixes, *p) && (p == text || p[-1] == ' ')) {
            snprintf(why, why_size, "'%c' %s starts a comment in an INI file, so the value "
                                    "would not read back; %s", *p,
                     p == text ? "at the start of a value" : "after a space",
                     p == text ? "begin the value with another character"
                               : "remove the space before it");
            return false;
        }
    return true;
}

/* Stores a layer list in the one form that --print-config's wrapped lines read back as: one
 * space after every comma but a last one. (A wrapped line loses its leading blanks, and the
 * reader joins lines with ", ".) An item must fit on a line of its own. */
static int set_layers(char *field, size_t size, const char *text, char *why, size_t why_size)
{
    size_t n = 0, item = 0;
    for (const char *p = text; *p; p++) {
        char ch = *p;
        if (ch == ',') {
            while (p[1] == ' ')
                p++;
            item = 0;
        }
        if (++item > LAYER_ITEM_MAX) {
            snprintf(why, why_size, "expected layers of at most %d characters each, between "
                                    "commas", LAYER_ITEM_MAX);
            return -1;
        }
        if (n + 3 > size) {
            snprintf(why, why_size, "expected at most %zu characters, with a space after "
                                    "each comma", size - 1);
            return -1;
        }
        field[n++] = ch;
        if (ch == ',' && p[1])
            field[n++] = ' ';
    }
    field[n] = '\0';
    return 0;
}

/* Reads text as a number for a key the engine keeps as a float. Only decimal notation: no
 * hexadecimal, nan or inf. A value that a float cannot hold (overflow, or below the
 * smallest normal float, where precision is lost down to 0) is refused, not rounded. */
static int parse_float(const key *k, const char *text, double *out, char *why, size_t why_size)
{
    char range[96];
    describe_range(range, sizeof range, k, "a number");
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    bool decimal = text[strspn(text, "0123456789+-.eE")] == '\0';
    if (!decimal || end == text || *end) {
        snprintf(why, why_size, "expected %s", range);
        return -1;
    }
    bool range_error = errno == ERANGE;
    if ((range_error && fabs(v) >= 1) || fabs(v) > FLT_MAX) {
        snprintf(why, why_size, "too large for a float (at most %.9g); expected %s", FLT_MAX,
                 range);
        return -1;
    }
    if ((range_error && fabs(v) < 1) || (v != 0 && fabs(v) < FLT_MIN)) {
        snprintf(why, why_size, "underflows: the smallest float in full precision is %.9g; "
                                "expected %s", FLT_MIN, range);
        return -1;
    }
    v += 0.0; /* -0 is 0 */
    if ((k->min_open ? v <= k->min : v < k->min) || (k->max_open ? v >= k->max : v > k->max)) {
        snprintf(why, why_size, "expected %s", range);
        return -1;
    }
    *out = v;
    return 0;
}

/* A string key: its length, one INI line for what --print-config writes, and text that
 * reads back; a layer list is stored in its own form. */
static int set_string(char *field, const key *k, const char *text, char *why, size_t why_size)
{
    if (strlen(text) >= k->size) {
        snprintf(why, why_size, "expected at most %zu characters", k->size - 1);
        return -1;
    }
    /* What --print-config writes must read back: one line (the layer list wraps). */
    if (k->type != T_LAYERS && strlen(k->name) + strlen(text) + 4 > INI_MAX_LINE) {
        snprintf(why, why_size, "expected at most %zu characters (an INI line holds %d)",
                 (size_t)INI_MAX_LINE - 4 - strlen(k->name), INI_MAX_LINE - 1);
        return -1;
    }
    if (!reads_back(k, text, why, why_size))
        return -1;
    if (k->type == T_LAYERS)
        return set_layers(field, k->size, text, why, why_size);
    memcpy(field, text, strlen(text) + 1);
    return 0;
}

/* An int or long key: decimal, within the key's range. */
static int set_whole_number(char *field, const key *k, const char *text, char *why,
                            size_t why_size)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end || errno || v < k->min || v > k->max) {
        char range[96];
        describe_range(range, sizeof range, k, "a whole number");
        snprintf(why, why_size, "expected %s", range);
        return -1;
    }
    if (k->type == T_INT)
        *(int *)field = (int)v;
    else
        *(long *)field = (long)v;
    return 0;
}

/* A uint64_t key (the seed): any decimal from 0 to UINT64_MAX; strtoull's wrap of a minus
 * sign is refused. */
static int set_u64(char *field, const char *text, char *why, size_t why_size)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (text[0] == '-' || end == text || *end || errno) {
        snprintf(why, why_size, "expected a whole number from 0 to %llu",
                 (unsigned long long)UINT64_MAX);
        return -1;
    }
    *(uint64_t *)field = v;
    return 0;
}

static int set_bool(char *field, const char *text, char *why, size_t why_size)
{
    if (!strcmp(text, "true") || !strcmp(text, "yes") || !strcmp(text, "on") ||
        !strcmp(text, "1")) {
        *(bool *)field = true;
        return 0;
    }
    if (!strcmp(text, "false") || !strcmp(text, "no") || !strcmp(text, "off") ||
        !strcmp(text, "0")) {
        *(bool *)field = false;
        return 0;
    }
    snprintf(why, why_size, "expected true or false");
    return -1;
}

/* An enum key: one of its words, stored as the word's index. */
static int set_enum(char *field, const key *k, const char *text, char *why, size_t why_size)
{
    for (int i = 0; k->names[i]; i++)
        if (!strcmp(text, k->names[i])) {
            *(int *)field = i;
            return 0;
        }
    char list[256];
    join_names(list, sizeof list, k->names);
    snprintf(why, why_size, "expected one of %s", list);
    return -1;
}

/* Sets key k from text; on failure writes why and what the key accepts. */
static int set_value(dp_config *c, const key *k, const char *text, char *why, size_t why_size)
{
    char *field = (char *)c + k->offset;
    switch (k->type) {
    case T_STR:
    case T_LAYERS:
        return set_string(field, k, text, why, why_size);
    case T_INT:
    case T_LONG:
        return set_whole_number(field, k, text, why, why_size);
    case T_U64:
        return set_u64(field, text, why, why_size);
    case T_DOUBLE:
        return parse_float(k, text, (double *)field, why, why_size);
    case T_BOOL:
        return set_bool(field, text, why, why_size);
    case T_ENUM:
        return set_enum(field, k, text, why, why_size);
    }
    return -1;
}

/* The first control character in text (a byte below 0x20, or 0x7f), or NULL. */
static const char *control_char(const char *text)
{
    for (const char *p = text; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return p;
    return NULL;
}

/* Finds "[section] name" or fails saying what there is instead. */
static const key *lookup(const char *section, const char *name, dp_err *err)
{
    if (!section[0]) {
        dp_fail(err, "\"%s\" comes before any [section]; put it under its section, as "
                     "[run] steps = 100",
                name);
        return NULL;
    }
    if (!known_section(section, strlen(section))) {
        char list[160];
        join_names(list, sizeof list, sections);
        dp_fail(err, "unknown section [%s]; the sections are %s", section, list);
        return NULL;
    }
    const key *k = find_key(section, name);
    if (!k) {
        char list[512];
        keys_of(list, sizeof list, section);
        dp_fail(err, "[%s] has no key \"%s\"; its keys are %s", section, name, list);
    }
    return k;
}

/* Reads key k's value as its type and records where it came from. */
static int assign(dp_config *c, const key *k, const char *value, const char *origin,
                  dp_err *err)
{
    const char *ctl = control_char(value);
    if (ctl) /* the value is not echoed: it would break the message's line */
        return dp_fail(err, "[%s] %s: the value holds a control character (byte 0x%02x); "
                            "values are one line of printable text (use spaces, not tabs)",
                       k->section, k->name, (unsigned char)*ctl);
    char why[384];
    if (set_value(c, k, value, why, sizeof why) < 0)
        return dp_fail(err, "[%s] %s = %s: %s", k->section, k->name, value, why);
    snprintf(c->origin[k - keys], sizeof c->origin[0], "%s", origin);
    return 0;
}

/* ---- reading INI text through inih, one line at a time so messages can name lines ---- */

typedef struct reader {
    dp_config *c;
    char name[DP_CONFIG_NAME_SHOWN + 1]; /* the file's name for messages, shortened */
    FILE *file;        /* the source: a file ... */
    const char *text;  /* ... or a string */
    int line;          /* number of the line inih is handling */
    bool continuation; /* that line is indented: inih's continuation of the previous value */
    bool failed;       /* err holds the first problem found by this reader ... */
    int fail_line;     /* ... on this line */
    const key *last;   /* the key of the previous value, for continuations; NULL after [x] */
    int set_at[N_KEYS]; /* the line that set each key in this file; 0: not yet */
    dp_err *err;
} reader;

static void reader_fail(reader *r, const char *fmt, const char *detail)
{
    if (r->failed)
        return;
    r->failed = true;
    r->fail_line = r->line;
    dp_fail(r->err, fmt, r->name, r->line, detail);
}

/* Copies the next line of r's file, '\n' included, into str (num bytes). Returns false at
 * the end of the file. *refusal names why inih must not see the line, or stays NULL. */
static bool take_file_line(reader *r, char *str, size_t num, const char **refusal)
{
    size_t n = 0;
    int c = 0;
    bool nul = false; /* fgets would end the line there, and the rest would vanish */
    while (n + 1 < num && c != '\n' && (c = getc(r->file)) != EOF) {
        nul = nul || c == '\0';
        str[n++] = (char)c;
    }
    if (n == 0)
        return false;
    str[n] = '\0';
    if (nul) {
        *refusal = "a NUL byte: this is not a text file";
    } else if (n == num - 1 && str[n - 1] != '\n' && !feof(r->file)) {
        *refusal = "line too long; continue a long value on indented lines";
        int ch;
        while ((ch = fgetc(r->file)) != EOF && ch != '\n')
            ;
    }
    return true;
}

/* The same for a reader of a string: the line and a '\n' into str, and r->text past it. */
static bool take_text_line(reader *r, char *str, size_t num, const char **refusal)
{
    if (!*r->text)
        return false;
    size_t len = strcspn(r->text, "\n");
    if (len >= num - 1) {
        *refusal = "line too long; continue a long value on indented lines";
    } else {
        memcpy(str, r->text, len);
        str[len] = '\n';
        str[len + 1] = '\0';
    }
    r->text += len + (r->text[len] == '\n');
    return true;
}

/* A line starting with '[': inih reports no section without keys, so every header is
 * checked here. */
static void check_header(reader *r, const char *s)
{
    r->last = NULL;
    size_t len = strcspn(s + 1, "]");
    if (s[1 + len] == ']' && !known_section(s + 1, len)) {
        char list[160], msg[256];
        join_names(list, sizeof list, sections);
        snprintf(msg, sizeof msg, "unknown section [%.*s]; the sections are %s",
                 (int)(len < 64 ? len : 64), s + 1, list);
        reader_fail(r, "%s:%d: %s", msg);
    }
}

/* Notes whether the line inih is about to handle continues a value, and checks a header. */
static void note_line(reader *r, const char *line)
{
    const char *s = line;
    if (r->line == 1 && ini_allow_bom && !strncmp(s, "\xEF\xBB\xBF", 3))
        s += 3; /* inih skips a UTF-8 byte order mark too */
    r->continuation = *s == ' ' || *s == '\t';
    while (isspace((unsigned char)*s))
        s++;
    /* An indented line after a key is that key's continuation for inih, whatever it holds. */
    if (*s == '[' && !(r->continuation && r->last))
        check_header(r, s);
}

/* inih's ini_reader: hands over one line and checks what inih would pass over silently. A
 * refused line reaches inih empty. */
static char *read_line(char *str, int num, void *stream)
{
    reader *r = stream;
    const char *refusal = NULL;
    bool got = r->file ? take_file_line(r, str, (size_t)num, &refusal)
                       : take_text_line(r, str, (size_t)num, &refusal);
    if (!got)
        return NULL;
    r->line++;
    if (refusal) {
        reader_fail(r, "%s:%d: %s", refusal);
        str[0] = '\0';
        return str;
    }
    note_line(r, str);
    return str;
}

/* Records a problem on the current line and tells inih (through on_value) to go on. */
static int refuse_value(reader *r, const char *detail)
{
    reader_fail(r, "%s:%d: %s", detail);
    return 0;
}

/* An indented line continuing key k's value: only a layer list may, joined with a comma,
 * then checked and stored as a whole; the origin stays the first line. */
static int continue_value(reader *r, const key *k, const char *value)
{
    if (k->type != T_LAYERS)
        return refuse_value(r, "only layer lists ([model] layers, generator, discriminator, "
                               "[gan] classifier_layers) may continue on indented lines");
    const char *now = (const char *)r->c + k->offset;
    size_t len = strlen(now);
    char *joined = malloc(len + strlen(value) + 3);
    if (!joined)
        return refuse_value(r, "out of memory");
    sprintf(joined, "%s%s%s", now, len && now[len - 1] == ',' ? " " : ", ", value);
    char origin[sizeof r->c->origin[0]];
    memcpy(origin, r->c->origin[k - keys], sizeof origin);
    dp_err e;
    int rc = assign(r->c, k, joined, origin, &e);
    free(joined);
    if (rc < 0)
        return refuse_value(r, e.msg);
    return 1;
}

/* Key k's value on a line of its own: refused if the file set k before. */
static int first_value(reader *r, const key *k, const char *value)
{
    /* Recorded by the key's index, so the check never depends on how long a name is. */
    int *set_at = &r->set_at[k - keys];
    if (*set_at) {
        char msg[160];
        snprintf(msg, sizeof msg, "[%s] %s is set twice (first at line %d); a key may appear "
                                  "once", k->section, k->name, *set_at);
        return refuse_value(r, msg);
    }
    *set_at = r->line;
    char here[sizeof r->c->origin[0]];
    snprintf(here, sizeof here, "%s:%d", r->name, r->line);
    dp_err e;
    if (assign(r->c, k, value, here, &e) < 0)
        return refuse_value(r, e.msg);
    return 1;
}

/* inih's handler of "name = value" (and of each indented line that continues it). */
static int on_value(void *user, const char *section, const char *name, const char *value)
{
    reader *r = user;
    if (r->failed)
        return 1;
    dp_err e;
    const key *k = lookup(section, name, &e);
    if (!k)
        return refuse_value(r, e.msg);
    if (r->continuation && k == r->last)
        return continue_value(r, k, value);
    r->last = k;
    return first_value(r, k, value);
}

int dp_config_load(dp_config *c, const char *path, const char *ini, const char *name,
                   dp_err *err)
{
    reader r = { .c = c, .text = ini, .err = err };
    /* Messages and origins show a long name by its end, the part that tells files apart. */
    const char *shown = path ? path : name;
    size_t len = strlen(shown);
    if (len > DP_CONFIG_NAME_SHOWN)
        snprintf(r.name, sizeof r.name, "...%s", shown + len - (DP_CONFIG_NAME_SHOWN - 3));
    else
        memcpy(r.name, shown, len + 1);
    if (path && !(r.file = dp_fopen_input(path, err))) {
        dp_err_prefix(err, "-c: ");
        return -1;
    }
    int rc = ini_parse_stream(read_line, &r, on_value, &r);
    if (r.file) {
        bool unreadable = ferror(r.file);
        fclose(r.file);
        if (unreadable)
            return dp_fail(err, "%s: cannot read the configuration", r.name);
    }
    /* inih goes on after a malformed line and returns its number: whichever came first wins. */
    if (r.failed && !(rc > 0 && rc < r.fail_line))
        return -1;
    if (rc > 0)
        return dp_fail(err, "%s:%d: not a \"key = value\" line, a [section] or a comment", r.name,
                       rc);
    if (rc < 0)
        return dp_fail(err, "%s: cannot read the configuration", r.name);
    return 0;
}

int dp_config_set(dp_config *c, const char *assignment, const char *label, dp_err *err)
{
    const char *eq = strchr(assignment, '=');
    const char *dot = strchr(assignment, '.');
    if (!eq || !dot || dot > eq)
        return dp_fail(err, "%s %s: expected SECTION.KEY=VALUE, as in optim.lr=0.1", label,
                       assignment);
    if (dot == assignment || dot + 1 == eq)
        return dp_fail(err, "%s %s: the %s empty; expected SECTION.KEY=VALUE, as in "
                            "optim.lr=0.1",
                       label, assignment,
                       dot == assignment && dot + 1 == eq ? "section and key are"
                       : dot == assignment                ? "section is"
                                                          : "key is");
    const char *value = eq + 1;
    if (value[0] == ' ' || (value[0] && value[strlen(value) - 1] == ' '))
        return dp_fail(err, "%s %s: a value with spaces around it, which an INI file drops; "
                            "remove them",
                       label, assignment);
    /* section and key are copied whole: a name cut to fit a buffer could match another */
    char *copy = strdup(assignment);
    if (!copy)
        return dp_fail(err, "%s: out of memory", label);
    copy[dot - assignment] = '\0';
    copy[eq - assignment] = '\0';
    const key *k = lookup(copy, copy + (dot - assignment) + 1, err);
    free(copy);
    if (!k || assign(c, k, value, label, err) < 0) {
        dp_err_prefix(err, "%s: ", label);
        return -1;
    }
    return 0;
}

const char *dp_config_origin(const dp_config *c, const char *section, const char *key_name)
{
    const key *k = find_key(section, key_name);
    return k ? c->origin[k - keys] : "";
}

int dp_config_device_list(const dp_config *c, dp_device_spec *specs, dp_err *err)
{
    const char *p = c->devices;
    if (!strcmp(p, "auto"))
        return 0;
    char *end;
    if (!strncmp(p, "cpu:", 4)) {
        errno = 0;
        long n = strtol(p + 4, &end, 10);
        if (end == p + 4 || *end || errno || n < 1 || n > DP_MAX_DEVICES)
            return dp_fail(err, "parallel.devices = %s: expected auto, cpu:N with N from 1 to %d, "
                                "or cuda:0,cuda:1,...",
                           c->devices, DP_MAX_DEVICES);
        for (int i = 0; i < n; i++)
            specs[i] = (dp_device_spec){ .cuda = false };
        return (int)n;
    }
    int n = 0;
    while (*p) {
        errno = 0;
        long ordinal = strncmp(p, "cuda:", 5) ? -1 : strtol(p + 5, &end, 10);
        if (ordinal < 0 || end == p + 5 || (*end && *end != ',') || errno || ordinal > 1023 ||
            n == DP_MAX_DEVICES)
            return dp_fail(err, "parallel.devices = %s: expected auto, cpu:N with N from 1 to %d, "
                                "or cuda:0,cuda:1,... (at most %d)",
                           c->devices, DP_MAX_DEVICES, DP_MAX_DEVICES);
        if (!dp_backend_cuda.built)
            return dp_fail(err, "parallel.devices = %s: this build has no CUDA support "
                                "(configure found no CUDA toolkit); use cpu:N",
                           c->devices);
        specs[n++] = (dp_device_spec){ .cuda = true, .ordinal = (int)ordinal };
        p = *end ? end + 1 : end;
    }
    return n;
}

int dp_config_device_memory(const dp_config *c, size_t *bytes, dp_err *err)
{
    *bytes = 0;
    if (!c->device_memory[0])
        return 0;
    errno = 0;
    char *end;
    double v = strtod(c->device_memory, &end);
    double unit = 1;
    if (*end) {
        const char *units = "KMGT";
        const char *u = strchr(units, toupper((unsigned char)*end));
        if (u && *u)
            unit = ldexp(1.0, 10 * (int)(u - units + 1)), end++;
        if (unit > 1 && (*end == 'i' || *end == 'I')) /* 512Mi, 2GiB, 2gib */
            end++;
        if (unit > 1 && (*end == 'B' || *end == 'b')) /* 512MB, 2gb: still powers of 1024 */
            end++;
    }
    bool decimal = strspn(c->device_memory, "0123456789.") > 0 &&
                   !strpbrk(c->device_memory, "xXpP"); /* strtod also reads hex */
    if (!decimal || end == c->device_memory || *end || errno || !(v > 0) ||
        v * unit > 0x1p50 || v * unit < 1 << 20)
        return dp_fail(err, "[parallel] device_memory: expected a size from 1M to 1024T, such as "
                            "512M or 2G (bytes, or K, M, G, T for 1024 and its powers)");
    *bytes = (size_t)(v * unit);
    return 0;
}

bool dp_config_auto(const dp_config *c)
{
    return c->strategy == DP_CONFIG_STRATEGY_AUTO;
}

dp_plan_request dp_config_plan(const dp_config *c)
{
    if (dp_config_auto(c)) /* the advisor's first plan replaces it (setup.c) */
        return (dp_plan_request){ .strategy = DP_STRATEGY_SINGLE, .micro = 1 };
    return (dp_plan_request){
        .strategy = (dp_strategy)c->strategy,
        .stages = (int)c->stages,
        .micro = (int)c->microbatches,
        .schedule = (dp_schedule)c->schedule,
    };
}

/* A GAN's keys: both layer lists with objective = gan, and none of them without it. */
static int check_gan(const dp_config *c, dp_err *err)
{
    bool gan = dp_objectives[c->objective] == &dp_objective_gan;
    bool images = c->data.kind != DP_DATA_TEXT && c->data.kind != DP_DATA_SYNTHETIC;
    if (c->data_range == 1 && !images)
        return dp_fail(err, "[data] range = -1:1 scales images; %s data are not images: remove "
                            "it", dp_data_kind_name(c->data.kind));
    if (!gan && (c->generator[0] || c->discriminator[0]))
        return dp_fail(err, "[model] generator and discriminator are a GAN's: set [model] "
                            "objective = gan, or remove them");
    /* (the default latent is what --print-config writes for every run: not refused) */
    const char *gan_key = strcmp(c->latent, "100") ? "[model] latent"
                          : c->gan_samples[0]                      ? "[gan] samples"
                          : c->classifier[0]                       ? "[gan] classifier"
                          : c->classifier_layers[0] ? "[gan] classifier_layers" : NULL;
    if (!gan && gan_key)
        return dp_fail(err, "%s is a GAN's key, and this run's [model] objective is %s: "
                            "remove it, or set objective = gan",
                       gan_key, dp_objective_names[c->objective]);
    if (dp_objectives[c->objective] == &dp_objective_mlm && c->data.kind != DP_DATA_TEXT)
        return dp_fail(err, "[model] objective = mlm (a masked language model) trains on "
                            "text; these data are %s: set [data] kind = text",
                       dp_data_kind_name(c->data.kind));
    if (!gan)
        return 0;
    if (!c->generator[0] || !c->discriminator[0])
        return dp_fail(err, "[model] objective = gan needs both [model] generator and [model] "
                            "discriminator (layer lists; see examples/fashion-gan.ini)");
    if (!images)
        return dp_fail(err, "[model] objective = gan trains on images; %s data are not: use "
                            "fashion-mnist, mnist, idx or cifar10",
                       dp_data_kind_name(c->data.kind));
    if (c->on_nan == DP_NAN_SKIP)
        return dp_fail(err, "[run] on_nan = skip is not supported for a GAN (its two models' "
                            "updates would part); use on_nan = stop");
    if (c->classifier[0] && !c->classifier_layers[0])
        return dp_fail(err, "[gan] classifier = %s needs [gan] classifier_layers, the layer "
                            "list it was trained with (for example fashion-cnn's)",
                       c->classifier);
    return 0;
}

int dp_config_check(const dp_config *c, dp_err *err)
{
    if (c->steps == 0 && c->epochs == 0)
        return dp_fail(err, "nothing to do: run.steps and run.epochs are both 0; set one");
    dp_device_spec specs[DP_MAX_DEVICES];
    if (dp_config_device_list(c, specs, err) < 0)
        return -1;
    if (c->checkpoint_every && !c->checkpoint_dir[0])
        return dp_fail(err, "[checkpoint] every = %ld needs a directory: set [checkpoint] dir "
                            "or --checkpoint-dir DIR",
                       c->checkpoint_every);
    size_t limit; /* (whether the devices are CPUs is known once they are made: setup.c) */
    if (dp_config_device_memory(c, &limit, err) < 0)
        return -1;
    if (dp_config_auto(c) && dp_objectives[c->objective] == &dp_objective_gan)
        return dp_fail(err, "[parallel] strategy = auto cannot plan a GAN yet (its two models "
                            "train together); choose single, dp, pp or hybrid");
    return check_gan(c, err);
}

/* Writes a layer list (as set_layers stores it), wrapping after a comma onto indented lines
 * (which dp_config_load joins) so that no line comes near inih's 200-character limit. */
static void print_layers(FILE *out, const char *name, const char *layers)
{
    int column = (int)strlen(name) + 3;
    for (const char *p = layers; *p;) {
        size_t len = strcspn(p, ",");
        bool more = p[len] == ',';
        if (column + (int)len > 90 && p != layers) {
            fputs("\n   ", out); /* the item's leading space goes: the reader adds it back */
            column = 3;
            p++;
            len--;
        }
        fprintf(out, "%.*s%s", (int)len, p, more ? "," : "");
        column += (int)len + 1;
        p += len + more;
    }
    fputc('\n', out);
}

void dp_config_print(const dp_config *c, FILE *out)
{
    const char *section = "";
    for (int i = 0; i < N_KEYS; i++) {
        const key *k = &keys[i];
        if (strcmp(section, k->section)) {
            fprintf(out, "%s[%s]\n", i ? "\n" : "", k->section);
            section = k->section;
        }
        const char *field = (const char *)c + k->offset;
        fprintf(out, "%s = ", k->name);
        switch (k->type) {
        case T_STR:
    case T_LAYERS:
            if (k->type == T_LAYERS)
                print_layers(out, k->name, field);
            else
                fprintf(out, "%s\n", field);
            break;
        case T_INT:
            fprintf(out, "%d\n", *(const int *)field);
            break;
        case T_LONG:
            fprintf(out, "%ld\n", *(const long *)field);
            break;
        case T_U64:
            fprintf(out, "%llu\n", (unsigned long long)*(const uint64_t *)field);
            break;
        case T_DOUBLE: { /* the shortest text that reads back as the same double */
            double v = *(const double *)field;
            char text[32];
            snprintf(text, sizeof text, "%.15g", v);
            if (strtod(text, NULL) != v)
                snprintf(text, sizeof text, "%.17g", v);
            fprintf(out, "%s\n", text);
            break;
        }
        case T_BOOL:
            fprintf(out, "%s\n", *(const bool *)field ? "true" : "false");
            break;
        case T_ENUM:
            fprintf(out, "%s\n", k->names[*(const int *)field]);
            break;
        }
    }
}
