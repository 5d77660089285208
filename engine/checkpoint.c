/* checkpoint.c -- writing, finding and reading training checkpoints (checkpoint.h). */
#include "engine/checkpoint.h"
#include "engine/rng.h"
#include "engine/world.h"

#include <dirent.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/fileio.h"
#include "engine/safetensors.h"

#define FORMAT 1
#define PREFIX "step-"

dp_run_identity dp_run_identity_of(const char *layers, const dp_model *m, const char *data,
                                   long samples, int batch, const dp_optim_config *oc,
                                   uint64_t seed)
{
    dp_run_identity id = { .inputs = m->in_features, .classes = m->classes,
                           .params = m->n_params, .samples = samples, .batch = batch,
                           .optimizer = (int)oc->kind,
                           .state_slots = dp_optim_state_per_param(oc), .seed = seed,
                           .processes = dp_world_size() };
    uint64_t h = DP_FNV_START;
    for (const char *c = layers; *c; c++)
        if (*c != ' ' && *c != '\t' && *c != '\n')
            h = dp_fnv1a(h, c, 1);
    id.layers_hash = h;
    snprintf(id.data, sizeof id.data, "%s", data);
    return id;
}

/* ---- writing ---- */

/* Removes a directory and the plain files in it (what a checkpoint holds). */
static void remove_dir(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        char file[4096 + 256];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(file, sizeof file, "%s/%s", path, e->d_name);
                unlink(file);
            }
        closedir(d);
    }
    rmdir(path);
}

/* The step of a checkpoint directory's name ("step-00000120"), or -1 for any other name. */
static long step_of(const char *name)
{
    if (strncmp(name, PREFIX, strlen(PREFIX)))
        return -1;
    const char *digits = name + strlen(PREFIX);
    char *end;
    errno = 0;
    long step = strtol(digits, &end, 10);
    return *digits && !*end && !errno && step >= 0 ? step : -1;
}

static int compare_longs(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* Keeps the `keep` newest checkpoints of dir; removes temporary directories of writers that
 * died (they are never a checkpoint). */
static void prune(const char *dir, long keep)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    long *steps = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    char path[4096 + 256];
    while ((e = readdir(d))) {
        long step = step_of(e->d_name);
        if (!strncmp(e->d_name, ".tmp-" PREFIX, strlen(".tmp-" PREFIX))) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            remove_dir(path);
        } else if (step >= 0) {
            if (n == cap) {
                long *grown = realloc(steps, (cap = cap ? 2 * cap : 16) * sizeof *steps);
                if (!grown)
                    break;
                steps = grown;
            }
            steps[n++] = step;
        }
    }
    closedir(d);
    qsort(steps, n, sizeof *steps, compare_longs);
    for (size_t i = 0; keep > 0 && n > (size_t)keep && i < n - (size_t)keep; i++) {
        snprintf(path, sizeof path, "%s/" PREFIX "%08ld", dir, steps[i]);
        remove_dir(path);
    }
    free(steps);
    dp_sync_dir(dir);
}

static int write_state(const char *path, const dp_train_state *ts, const dp_run_identity *id,
                       dp_err *err)
{
    dp_atomic_file af;
    if (dp_atomic_open(&af, path, err) < 0)
        return -1;
    fprintf(af.f,
            "# dpmptop checkpoint: continue with --resume and this directory\n"
            "[state]\nformat = %d\nstep = %ld\nupdates = %ld\nepoch = %ld\nposition = %ld\n"
            "plan = %s\n\n"
            "[identity]\nlayers_hash = %016" PRIx64 "\ninputs = %d\nclasses = %d\n"
            "parameters = %zu\ndata = %s\nsamples = %ld\nbatch = %d\noptimizer = %d\n"
            "state_slots = %zu\nseed = %" PRIu64 "\nprocesses = %d\n",
            FORMAT, ts->step, ts->updates, ts->epoch, ts->position, ts->plan, id->layers_hash,
            id->inputs, id->classes, id->params, id->data, id->samples, id->batch,
            id->optimizer, id->state_slots, id->seed, id->processes);
    return dp_atomic_commit(&af, err);
}

static int write_text(const char *path, const char *text, dp_err *err)
{
    dp_atomic_file af;
    if (dp_atomic_open(&af, path, err) < 0)
        return -1;
    fputs(text, af.f);
    return dp_atomic_commit(&af, err);
}

int dp_checkpoint_write(const char *dir, long keep, const dp_model *m,
                        const dp_optim_config *oc, const float *params, const float *state,
                        const dp_train_state *ts, const dp_run_identity *id,
                        const char *config_text, char *written, size_t size, dp_err *err)
{
    char final[4096], tmp[4096], file[4096 + 64];
    if (strlen(dir) > 4000)
        return dp_fail(err, "%s: path too long", dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return dp_fail(err, "%s: cannot make the checkpoint directory: %s", dir,
                       strerror(errno));
    snprintf(final, sizeof final, "%s/" PREFIX "%08ld", dir, ts->step);
    snprintf(written, size, "%s", final);
    struct stat st;
    if (stat(final, &st) == 0) /* this step's checkpoint is already there, and complete */
        return 0;
    snprintf(tmp, sizeof tmp, "%s/.tmp-" PREFIX "%08ld-XXXXXX", dir, ts->step);
    if (!mkdtemp(tmp))
        return dp_fail(err, "%s: cannot write a checkpoint there: %s", dir, strerror(errno));
    int slots = (int)dp_optim_state_per_param(oc);
    int rc = 0;
    snprintf(file, sizeof file, "%s/model.safetensors", tmp);
    rc = rc ? rc : dp_safetensors_save(file, m, params, err);
    snprintf(file, sizeof file, "%s/optimizer.safetensors", tmp);
    rc = rc ? rc : dp_safetensors_save_state(file, m, slots, dp_optim_state_names(oc), state,
                                             err);
    snprintf(file, sizeof file, "%s/config.ini", tmp);
    rc = rc ? rc : write_text(file, config_text, err);
    snprintf(file, sizeof file, "%s/state.ini", tmp); /* last: its presence means complete */
    rc = rc ? rc : write_state(file, ts, id, err);
    if (rc == 0) {
        dp_sync_dir(tmp);
        if (rename(tmp, final) != 0)
            rc = dp_fail(err, "%s: cannot put the checkpoint in place: %s", final,
                         strerror(errno));
    }
    if (rc < 0) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        remove_dir(tmp);
        return dp_fail(err, "checkpoint of step %ld not written (earlier ones are intact): %s",
                       ts->step, why);
    }
    dp_sync_dir(dir);
    prune(dir, keep);
    return 0;
}

/* ---- finding ---- */

static bool has_state(const char *dir)
{
    char file[4096 + 64];
    struct stat st;
    snprintf(file, sizeof file, "%s/state.ini", dir);
    return stat(file, &st) == 0 && S_ISREG(st.st_mode);
}

int dp_checkpoint_find(const char *dir, char *path, size_t size, dp_err *err)
{
    if (strlen(dir) > 4000)
        return dp_fail(err, "%s: path too long", dir);
    if (has_state(dir)) {
        snprintf(path, size, "%s", dir);
        return 0;
    }
    DIR *d = opendir(dir);
    if (!d)
        return dp_fail(err, "--resume %s: %s", dir, strerror(errno));
    long best = -1;
    struct dirent *e;
    char candidate[4096 + 256];
    while ((e = readdir(d))) {
        long step = step_of(e->d_name);
        snprintf(candidate, sizeof candidate, "%s/%s", dir, e->d_name);
        if (step > best && has_state(candidate))
            best = step;
    }
    closedir(d);
    if (best < 0)
        return dp_fail(err, "--resume %s: no checkpoint there (a directory step-NNNNNNNN "
                            "with a state.ini); start without --resume",
                       dir);
    snprintf(path, size, "%s/" PREFIX "%08ld", dir, best);
    return 0;
}

/* ---- reading ---- */

typedef struct parsed {
    dp_train_state ts;
    dp_run_identity id;
    int format;
    unsigned seen; /* a bit per key found */
} parsed;

enum { K_FORMAT, K_STEP, K_UPDATES, K_EPOCH, K_POSITION, K_HASH, K_INPUTS, K_CLASSES, K_PARAMS,
       K_DATA, K_SAMPLES, K_BATCH, K_OPTIM, K_SLOTS, K_SEED, K_PLAN, K_COUNT,
       K_PROCESSES /* optional: 1 when absent */ };

static bool parse_number(const char *v, int base, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    if (*v == '-' || !*v)
        return false;
    unsigned long long x = strtoull(v, &end, base);
    if (errno || *end || x > max)
        return false;
    *out = x;
    return true;
}

/* inih handler: every key of [state] and [identity], each checked; others are ignored. */
static int on_state(void *arg, const char *section, const char *name, const char *value)
{
    parsed *p = arg;
    static const struct {
        const char *section, *name;
        int key;
    } keys[] = {
        { "state", "format", K_FORMAT }, { "state", "step", K_STEP },
        { "state", "updates", K_UPDATES }, { "state", "epoch", K_EPOCH },
        { "state", "position", K_POSITION }, { "state", "plan", K_PLAN },
        { "identity", "layers_hash", K_HASH }, { "identity", "inputs", K_INPUTS },
        { "identity", "classes", K_CLASSES }, { "identity", "parameters", K_PARAMS },
        { "identity", "data", K_DATA }, { "identity", "samples", K_SAMPLES },
        { "identity", "batch", K_BATCH }, { "identity", "optimizer", K_OPTIM },
        { "identity", "state_slots", K_SLOTS }, { "identity", "seed", K_SEED },
        { "identity", "processes", K_PROCESSES },
    };
    int key = -1;
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (!strcmp(section, keys[i].section) && !strcmp(name, keys[i].name))
            key = keys[i].key;
    if (key < 0)
        return 1;
    unsigned long long x = 0;
    const unsigned long long big = 1ull << 62, small = 1u << 30;
    bool ok = true;
    switch (key) {
    case K_PLAN: snprintf(p->ts.plan, sizeof p->ts.plan, "%s", value); break;
    case K_DATA: snprintf(p->id.data, sizeof p->id.data, "%s", value); break;
    case K_HASH:
        ok = parse_number(value, 16, UINT64_MAX, &x);
        p->id.layers_hash = x;
        break;
    case K_SEED:
        ok = parse_number(value, 10, UINT64_MAX, &x);
        p->id.seed = x;
        break;
    default:
        ok = parse_number(value, 10, key == K_FORMAT || key == K_INPUTS || key == K_CLASSES ||
                                         key == K_BATCH || key == K_OPTIM || key == K_SLOTS ||
                                         key == K_PROCESSES
                                     ? small
                                     : big,
                          &x);
        switch (key) {
        case K_FORMAT: p->format = (int)x; break;
        case K_STEP: p->ts.step = (long)x; break;
        case K_UPDATES: p->ts.updates = (long)x; break;
        case K_EPOCH: p->ts.epoch = (long)x; break;
        case K_POSITION: p->ts.position = (long)x; break;
        case K_INPUTS: p->id.inputs = (int)x; break;
        case K_CLASSES: p->id.classes = (int)x; break;
        case K_PARAMS: p->id.params = (size_t)x; break;
        case K_SAMPLES: p->id.samples = (long)x; break;
        case K_BATCH: p->id.batch = (int)x; break;
        case K_OPTIM: p->id.optimizer = (int)x; break;
        case K_SLOTS: p->id.state_slots = (size_t)x; break;
        case K_PROCESSES: p->id.processes = (int)x; break;
        }
    }
    if (!ok)
        return 0; /* an error: ini_parse reports the line */
    p->seen |= 1u << key;
    return 1;
}

/* The first way the checkpoint's identity differs from the run's, or NULL. */
static const char *mismatch(const dp_run_identity *c, const dp_run_identity *r, char *buf,
                            size_t size)
{
    static const char *const optims[] = { "sgd", "adamw" };
    if (c->layers_hash != r->layers_hash || c->inputs != r->inputs ||
        c->classes != r->classes || c->params != r->params)
        snprintf(buf, size, "it was written for another model ([model] layers, %zu parameters; "
                            "this run's has %zu)",
                 c->params, r->params);
    else if (strcmp(c->data, r->data) || c->samples != r->samples)
        snprintf(buf, size, "it was written for other data (%s, %ld samples; this run has %s, "
                            "%ld)",
                 c->data, c->samples, r->data, r->samples);
    else if (c->batch != r->batch)
        snprintf(buf, size, "it was written with batch %d; this run's is %d ([data] batch)",
                 c->batch, r->batch);
    else if (c->optimizer != r->optimizer || c->state_slots != r->state_slots)
        snprintf(buf, size, "it was written with optimizer %s (%zu state values a parameter); "
                            "this run's [optim] has %s (%zu)",
                 optims[c->optimizer & 1], c->state_slots, optims[r->optimizer & 1],
                 r->state_slots);
    else if (c->processes != r->processes)
        snprintf(buf, size, "it was written by a run of %d process%s; this one has %d (start "
                            "it with mpirun -np %d)",
                 c->processes, c->processes == 1 ? "" : "es", r->processes, c->processes);
    else if (c->seed != r->seed)
        snprintf(buf, size, "it was written with seed %" PRIu64 "; this run's [run] seed is "
                            "%" PRIu64,
                 c->seed, r->seed);
    else
        return NULL;
    return buf;
}

int dp_checkpoint_parse_state(const char *text, const char *what, const dp_run_identity *id,
                              dp_train_state *ts, dp_err *err)
{
    char why[256];
    parsed p = { .id.processes = 1 };
    int line = ini_parse_string(text, on_state, &p);
    if (line != 0)
        return dp_fail(err, "%s:%d: not a dpmptop checkpoint's state (a bad line)", what, line);
    if ((p.seen & ((1u << K_COUNT) - 1)) != (1u << K_COUNT) - 1 || p.format != FORMAT)
        return dp_fail(err, "%s: not a dpmptop checkpoint of format %d (keys missing)", what,
                       FORMAT);
    if (mismatch(&p.id, id, why, sizeof why))
        return dp_fail(err, "%s: cannot resume from this checkpoint: %s; resume with the "
                            "run's original configuration (see its config.ini), or start "
                            "without --resume",
                       what, why);
    if (p.ts.position >= id->samples || p.ts.updates > p.ts.step)
        return dp_fail(err, "%s: the state's position or counts are impossible", what);
    *ts = p.ts;
    return 0;
}

int dp_checkpoint_read(const char *path, const dp_model *m, const dp_optim_config *oc,
                       const dp_run_identity *id, float *params, float *state,
                       dp_train_state *ts, dp_err *err)
{
    char file[4096 + 64];
    unsigned char *text;
    size_t len;
    dp_train_state read;
    snprintf(file, sizeof file, "%s/state.ini", path);
    if (dp_read_file(file, 1 << 16, &text, &len, err) < 0)
        return -1;
    char *z = realloc(text, len + 1); /* a C string for inih */
    if (!z) {
        free(text);
        return dp_fail(err, "%s: out of memory", file);
    }
    z[len] = '\0';
    int rc = strlen(z) == len ? dp_checkpoint_parse_state(z, file, id, &read, err)
                              : dp_fail(err, "%s: a NUL byte: not a checkpoint's state", file);
    free(z);
    if (rc < 0)
        return -1;
    snprintf(file, sizeof file, "%s/model.safetensors", path);
    if (dp_safetensors_load(file, m, params, err) < 0)
        return -1;
    snprintf(file, sizeof file, "%s/optimizer.safetensors", path);
    if (dp_safetensors_load_state(file, m, (int)dp_optim_state_per_param(oc),
                                  dp_optim_state_names(oc), state, err) < 0)
        return -1;
    *ts = read;
    return 0;
}
