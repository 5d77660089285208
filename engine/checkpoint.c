/* checkpoint.c -- writing, finding and reading training checkpoints (checkpoint.h). */
#include "engine/checkpoint.h"
#include "base/rng.h"
#include "engine/world.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fileio.h"
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
    snprintf(id.objective, sizeof id.objective, "%s",
             m->objective ? m->objective->name : dp_objective_default()->name);
    return id;
}

/* ---- what is in a checkpoint directory ---- */

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

/* Whether name is one of the files a checkpoint holds, or a writer's temporary of one
 * (NAME.tmpXXXXXX). */
static bool checkpoint_file(const char *name)
{
    static const char *const files[] = { "model.safetensors", "optimizer.safetensors",
                                         "config.ini", "state.ini" };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        size_t n = strlen(files[i]);
        if (!strncmp(name, files[i], n) &&
            (!name[n] || (!strncmp(name + n, ".tmp", 4) && strlen(name + n) == 10)))
            return true;
    }
    return false;
}

/* Removes directory `name` of dirfd when it is a directory (not a link to one) holding only
 * regular files a checkpoint holds; anything else is left as it is. Never follows a link. */
static void remove_checkpoint_dir(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    bool only_ours = true;
    struct dirent *e;
    struct stat st;
    while (only_ours && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            only_ours = checkpoint_file(e->d_name) &&
                        fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                        S_ISREG(st.st_mode);
    if (only_ours) {
        rewinddir(d);
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                unlinkat(fd, e->d_name, 0); /* never follows a link */
    }
    closedir(d);
    if (only_ours)
        unlinkat(dirfd, name, AT_REMOVEDIR);
}

typedef struct parsed {
    dp_train_state ts;
    dp_run_identity id;
    int format;
    unsigned seen; /* a bit per key found */
} parsed;

static int parse_state_text(const char *text, const char *what, parsed *p, dp_err *err);

/* What a step-* entry of a checkpoint directory is. */
typedef enum { ENTRY_COMPLETE, ENTRY_DAMAGED, ENTRY_FOREIGN } entry_kind;

/* Looks at entry `name` of dirfd without following links: a complete checkpoint (its run id,
 * "" for one written before run ids, into run; its step into *step), a damaged one, or
 * something no dpmptop wrote (a link, a file); why says what is wrong with the last two. */
static entry_kind inspect(int dirfd, const char *name, char *run, long *step, char *why,
                          size_t why_size)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        struct stat st;
        bool link = fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
        snprintf(why, why_size, "%s", link ? "a symbolic link, not a checkpoint"
                                           : "not a checkpoint's directory");
        return ENTRY_FOREIGN;
    }
    entry_kind kind = ENTRY_DAMAGED;
    struct stat st;
    const char *missing = NULL;
    if (fstatat(fd, "model.safetensors", &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode))
        missing = "model.safetensors";
    else if (fstatat(fd, "optimizer.safetensors", &st, AT_SYMLINK_NOFOLLOW) ||
             !S_ISREG(st.st_mode))
        missing = "optimizer.safetensors";
    int sfd = missing ? -1 : openat(fd, "state.ini", O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
                                                         O_CLOEXEC);
    char text[1 << 16];
    ssize_t n = -1;
    if (sfd >= 0 && fstat(sfd, &st) == 0 && S_ISREG(st.st_mode))
        n = read(sfd, text, sizeof text - 1);
    if (sfd >= 0)
        close(sfd);
    parsed p = { .id.processes = 1, .id.objective = "classify" };
    dp_err err;
    if (missing) {
        snprintf(why, why_size, "damaged: no %s", missing);
    } else if (n < 0 || (size_t)n == sizeof text - 1) {
        snprintf(why, why_size, "damaged: no readable state.ini");
    } else {
        text[n] = '\0';
        if (strlen(text) != (size_t)n || parse_state_text(text, "state.ini", &p, &err) < 0) {
            snprintf(why, why_size, "damaged: its state.ini is not a checkpoint's state");
        } else {
            kind = ENTRY_COMPLETE;
            snprintf(run, DP_RUN_ID_SIZE, "%s", p.ts.run);
            *step = p.ts.step;
        }
    }
    close(fd);
    return kind;
}

/* ---- writing ---- */

int dp_run_id_new(char *run, dp_err *err)
{
    unsigned char bytes[8];
    if (getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes)
        return dp_fail(err, "cannot draw a run id from the system's random source: %s",
                       strerror(errno));
    for (int i = 0; i < 8; i++)
        snprintf(run + 2 * i, 3, "%02x", bytes[i]);
    return 0;
}

/* Makes dir when it is not there and checks that it is a directory a checkpoint can be written
 * into. Returns an open descriptor of it, or -1 (reported). */
static int open_writable_dir(const char *dir, dp_err *err)
{
    if (!dir[0] || strlen(dir) > 4000)
        return dp_fail(err, "checkpoint.dir \"%s\": %s", dir,
                       dir[0] ? "path too long" : "empty; give a directory");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return dp_fail(err, "checkpoint.dir %s: cannot make the directory: %s (its parent "
                            "must exist and be writable)",
                       dir, strerror(errno));
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return dp_fail(err, "checkpoint.dir %s: %s; give a directory", dir,
                       errno == ENOTDIR ? "not a directory" : strerror(errno));
    /* writable: a directory made and removed there, as a checkpoint's will be (permissions
     * alone do not tell: /proc lets root write but makes no directory) */
    char probe[64];
    snprintf(probe, sizeof probe, ".dpmptop-probe-%d", (int)getpid());
    if (mkdirat(dirfd, probe, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        close(dirfd);
        return dp_fail(err, "checkpoint.dir %s: cannot write there: %s", dir, strerror(e));
    }
    unlinkat(dirfd, probe, AT_REMOVEDIR);
    return dirfd;
}

/* The entries of dirfd that stand in the way of a run: for a new run (run NULL) every step-*,
 * for a resumed one those after its step that are not its own (it may write those steps).
 * Names the first three, with why, in blocking; says whether all are complete checkpoints.
 * Returns how many there are. */
static int find_blocking(int dirfd, const char *run, long resumed_step, char *blocking,
                         size_t size, bool *all_checkpoints)
{
    int n_blocking = 0;
    *all_checkpoints = true;
    DIR *d = fdopendir(dup(dirfd));
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char why[128], id[DP_RUN_ID_SIZE] = "";
        long step, named = step_of(e->d_name);
        if (named < 0 || (run && named <= resumed_step))
            continue;
        entry_kind kind = inspect(dirfd, e->d_name, id, &step, why, sizeof why);
        if (run && kind == ENTRY_COMPLETE && !strcmp(id, run))
            continue;
        *all_checkpoints &= kind == ENTRY_COMPLETE;
        if (kind == ENTRY_COMPLETE)
            snprintf(why, sizeof why, "%s%s", id[0] ? "run " : "written before run ids", id);
        size_t used = strlen(blocking);
        if (n_blocking++ < 3)
            snprintf(blocking + used, size - used, "%s%s (%s)", used ? ", " : "", e->d_name,
                     why);
    }
    if (d)
        closedir(d);
    return n_blocking;
}

int dp_checkpoint_prepare(const char *dir, const char *run, long resumed_step, dp_err *err)
{
    int dirfd = open_writable_dir(dir, err);
    if (dirfd < 0)
        return -1;
    char blocking[300] = "";
    bool all_checkpoints;
    int n_blocking = find_blocking(dirfd, run, resumed_step, blocking, sizeof blocking,
                                   &all_checkpoints);
    close(dirfd);
    if (!n_blocking)
        return 0;
    const char *what = all_checkpoints ? "another run's checkpoints" : "entries it did not write";
    if (!run)
        return dp_fail(err, "checkpoint.dir %s holds %s: %s%s; a new run never writes beside "
                            "them: %s give another directory",
                       dir, what, blocking, n_blocking > 3 ? ", ..." : "",
                       all_checkpoints ? "to continue that run, add --resume; else"
                                       : "move them away (dpmptop removes only what it wrote), "
                                         "or");
    return dp_fail(err, "checkpoint.dir %s holds %s after step %ld, which this run could write "
                        "over: %s%s; move them away (dpmptop removes only what it wrote), or "
                        "give another directory",
                   dir, what, resumed_step, blocking, n_blocking > 3 ? ", ..." : "");
}

static int compare_longs(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* Whether name is a temporary directory of run's checkpoint writers (".tmp-step-N-RUN-..."). */
static bool own_temporary(const char *name, const char *run)
{
    const char *head = ".tmp-" PREFIX;
    if (strncmp(name, head, strlen(head)))
        return false;
    const char *dash = strchr(name + strlen(head), '-');
    return dash && !strncmp(dash + 1, run, strlen(run)) && dash[1 + strlen(run)] == '-';
}

/* Keeps the `keep` newest checkpoints of run in dir, and removes the temporary directories its
 * writers left when killed; what other runs wrote stays. */
static void prune(const char *dir, const char *run, long keep)
{
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dirfd >= 0 ? fdopendir(dup(dirfd)) : NULL;
    if (!d) {
        if (dirfd >= 0)
            close(dirfd);
        return;
    }
    long *steps = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char id[DP_RUN_ID_SIZE] = "", why[128];
        long step;
        if (own_temporary(e->d_name, run)) {
            remove_checkpoint_dir(dirfd, e->d_name);
        } else if (step_of(e->d_name) >= 0 &&
                   inspect(dirfd, e->d_name, id, &step, why, sizeof why) == ENTRY_COMPLETE &&
                   !strcmp(id, run) && step == step_of(e->d_name)) {
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
    char name[64];
    for (size_t i = 0; keep > 0 && n > (size_t)keep && i < n - (size_t)keep; i++) {
        snprintf(name, sizeof name, PREFIX "%08ld", steps[i]);
        remove_checkpoint_dir(dirfd, name);
    }
    free(steps);
    fsync(dirfd);
    close(dirfd);
}

static int write_state(const char *path, const dp_train_state *ts, const dp_run_identity *id,
                       dp_err *err)
{
    dp_atomic_file af;
    if (dp_atomic_open(&af, path, err) < 0)
        return -1;
    fprintf(af.f,
            "# dpmptop checkpoint: continue with --resume and this directory\n"
            "[state]\nformat = %d\nrun = %s\nstep = %ld\nupdates = %ld\nepoch = %ld\n"
            "position = %ld\nplan = %s\n\n"
            "[identity]\nlayers_hash = %016" PRIx64 "\ninputs = %d\nclasses = %d\n"
            "parameters = %zu\ndata = %s\nsamples = %ld\nbatch = %d\noptimizer = %d\n"
            "state_slots = %zu\nseed = %" PRIu64 "\nprocesses = %d\nobjective = %s\n",
            FORMAT, ts->run, ts->step, ts->updates, ts->epoch, ts->position, ts->plan,
            id->layers_hash, id->inputs, id->classes, id->params, id->data, id->samples,
            id->batch, id->optimizer, id->state_slots, id->seed, id->processes, id->objective);
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

/* Writes the checkpoint's files into the new directory tmp. */
static int write_files(const char *tmp, const dp_model *m, const dp_optim_config *oc,
                       const float *params, const float *state, const dp_train_state *ts,
                       const dp_run_identity *id, const char *config_text, dp_err *err)
{
    char file[4096 + 64];
    snprintf(file, sizeof file, "%s/model.safetensors", tmp);
    if (dp_safetensors_save(file, m, params, err) < 0)
        return -1;
    snprintf(file, sizeof file, "%s/optimizer.safetensors", tmp);
    if (dp_safetensors_save_state(file, m, (int)dp_optim_state_per_param(oc),
                                  dp_optim_state_names(oc), state, err) < 0)
        return -1;
    snprintf(file, sizeof file, "%s/config.ini", tmp);
    if (write_text(file, config_text, err) < 0)
        return -1;
    snprintf(file, sizeof file, "%s/state.ini", tmp); /* last: its presence means complete */
    return write_state(file, ts, id, err);
}

/* Puts the finished directory tmp in place as dirfd's `name`. One of this run at the same step
 * (written before a --resume from an earlier one) is replaced; anything else there is not. */
static int put_in_place(const char *dir, int dirfd, const char *tmp, const char *name,
                        const char *run, dp_err *err)
{
    char id[DP_RUN_ID_SIZE] = "", why[128], old[128];
    long step;
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (inspect(dirfd, name, id, &step, why, sizeof why) != ENTRY_COMPLETE ||
            strcmp(id, run))
            return dp_fail(err, "%s/%s is already there and is not this run's (%s); it is "
                                "left as it is",
                           dir, name, id[0] ? "another run's" : why);
        snprintf(old, sizeof old, ".tmp-%s-%s-replaced", name, run);
        remove_checkpoint_dir(dirfd, old);
        if (renameat(dirfd, name, dirfd, old) != 0)
            return dp_fail(err, "%s/%s: cannot replace it: %s", dir, name, strerror(errno));
    }
    if (renameat(AT_FDCWD, tmp, dirfd, name) != 0)
        return dp_fail(err, "cannot put it in place: %s", strerror(errno));
    remove_checkpoint_dir(dirfd, old[0] ? old : "");
    return 0;
}

int dp_checkpoint_write(const char *dir, long keep, const dp_model *m,
                        const dp_optim_config *oc, const float *params, const float *state,
                        const dp_train_state *ts, const dp_run_identity *id,
                        const char *config_text, char *written, size_t size, dp_err *err)
{
    char tmp[4096 + 64], name[64];
    if (strlen(dir) > 4000)
        return dp_fail(err, "%s: path too long", dir);
    snprintf(name, sizeof name, PREFIX "%08ld", ts->step);
    snprintf(written, size, "%s/%s", dir, name);
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return dp_fail(err, "checkpoint %s not written: the directory: %s", written,
                       strerror(errno));
    snprintf(tmp, sizeof tmp, "%s/.tmp-%s-%s-XXXXXX", dir, name, ts->run);
    int rc = mkdtemp(tmp) ? 0 : dp_fail(err, "%s", strerror(errno));
    if (rc == 0)
        dp_atomic_track_dir(tmp);
    rc = rc ? rc : write_files(tmp, m, oc, params, state, ts, id, config_text, err);
    if (rc == 0)
        dp_sync_dir(tmp);
    rc = rc ? rc : put_in_place(dir, dirfd, tmp, name, ts->run, err);
    if (rc < 0) {
        /* the reason without the temporary directory's name */
        char why[sizeof err->msg];
        const char *reason = err->msg;
        if (!strncmp(reason, tmp, strlen(tmp)) && reason[strlen(tmp)] == '/')
            reason += strlen(tmp) + 1;
        snprintf(why, sizeof why, "%s", reason);
        remove_checkpoint_dir(AT_FDCWD, tmp);
        dp_atomic_forget_dir(tmp);
        close(dirfd);
        return dp_fail(err, "checkpoint %s not written (%s); the earlier checkpoints are intact",
                       written, why);
    }
    dp_atomic_forget_dir(tmp);
    fsync(dirfd);
    close(dirfd);
    prune(dir, ts->run, keep);
    return 0;
}

/* ---- finding ---- */

/* The newest complete checkpoint of the listing d of dirfd (its step, or -1 when none), and the
 * steps of the step-* entries passed over as not complete (a malloc'd array of *n_passed). */
static long newest_complete(DIR *d, int dirfd, long **passed, size_t *n_passed)
{
    long best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        long named = step_of(e->d_name), step;
        char id[DP_RUN_ID_SIZE], why[128];
        if (named < 0)
            continue;
        if (inspect(dirfd, e->d_name, id, &step, why, sizeof why) == ENTRY_COMPLETE &&
            step == named) {
            best = named > best ? named : best;
            continue;
        }
        long *grown = realloc(*passed, (*n_passed + 1) * sizeof **passed);
        if (grown) {
            *passed = grown;
            (*passed)[(*n_passed)++] = named;
        }
    }
    return best;
}

/* Says in notes, a line each, which entries newer than the checkpoint found were passed over,
 * and why. */
static void note_passed_over(const char *dir, int dirfd, const long *passed, size_t n_passed,
                             long best, char *notes, size_t notes_size)
{
    for (size_t i = 0; i < n_passed; i++) {
        char name[64], why[128], id[DP_RUN_ID_SIZE];
        long step;
        if (passed[i] < best)
            continue;
        snprintf(name, sizeof name, PREFIX "%08ld", passed[i]);
        if (inspect(dirfd, name, id, &step, why, sizeof why) == ENTRY_COMPLETE)
            snprintf(why, sizeof why, "damaged: its state.ini says step %ld", step);
        size_t used = strlen(notes);
        snprintf(notes + used, notes_size - used, "%s/%s: %s; passed over\n", dir, name, why);
    }
}

int dp_checkpoint_find(const char *dir, char *path, size_t size, char *notes,
                       size_t notes_size, dp_err *err)
{
    notes[0] = '\0';
    if (strlen(dir) > 4000)
        return dp_fail(err, "%s: path too long", dir);
    char file[4096 + 64];
    struct stat st;
    snprintf(file, sizeof file, "%s/state.ini", dir);
    if (stat(file, &st) == 0) { /* the checkpoint itself */
        snprintf(path, size, "%s", dir);
        return 0;
    }
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dirfd >= 0 ? fdopendir(dup(dirfd)) : NULL;
    if (!d) {
        int e = errno;
        if (dirfd >= 0)
            close(dirfd);
        return dp_fail(err, "--resume %s: %s", dir, strerror(e));
    }
    long *passed = NULL;
    size_t n_passed = 0;
    long best = newest_complete(d, dirfd, &passed, &n_passed);
    closedir(d);
    note_passed_over(dir, dirfd, passed, n_passed, best, notes, notes_size);
    free(passed);
    close(dirfd);
    if (best < 0)
        return dp_fail(err, "--resume %s: no complete checkpoint there (a directory "
                            "step-NNNNNNNN with its state.ini and tensors)%s; start without "
                            "--resume",
                       dir, notes[0] ? ", see above" : "");
    snprintf(path, size, "%s/" PREFIX "%08ld", dir, best);
    return 0;
}

/* ---- reading ---- */

enum { K_FORMAT, K_STEP, K_UPDATES, K_EPOCH, K_POSITION, K_HASH, K_INPUTS, K_CLASSES, K_PARAMS,
       K_DATA, K_SAMPLES, K_BATCH, K_OPTIM, K_SLOTS, K_SEED, K_PLAN, K_COUNT,
       K_PROCESSES, /* optional: 1 when absent */
       K_RUN, /* optional: "" (written before run ids) when absent */
       K_OBJECTIVE /* optional: classify (written before it) when absent */ };

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

/* The key of state.ini's [section] name, or -1 for a key this build does not read. */
static int key_of(const char *section, const char *name)
{
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
        { "identity", "processes", K_PROCESSES }, { "state", "run", K_RUN },
        { "identity", "objective", K_OBJECTIVE },
    };
    int key = -1;
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (!strcmp(section, keys[i].section) && !strcmp(name, keys[i].name))
            key = keys[i].key;
    return key;
}

/* Stores a decimal count (the value of any key but the plan, data, run, hash and seed), checked
 * against the largest it can be; whether it is one. */
static bool store_count(parsed *p, int key, const char *value)
{
    unsigned long long x = 0;
    const unsigned long long big = 1ull << 62, small = 1u << 30;
    bool ok = parse_number(value, 10, key == K_FORMAT || key == K_INPUTS || key == K_CLASSES ||
                                              key == K_BATCH || key == K_OPTIM ||
                                              key == K_SLOTS || key == K_PROCESSES
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
    case K_PROCESSES:
        p->id.processes = (int)x;
        ok = ok && x >= 1;
        break;
    }
    return ok;
}

/* Stores the value of key into p; whether it is a valid one. */
static bool store_value(parsed *p, int key, const char *value)
{
    unsigned long long x = 0;
    bool ok = true;
    switch (key) {
    case K_PLAN: snprintf(p->ts.plan, sizeof p->ts.plan, "%s", value); break;
    case K_DATA: snprintf(p->id.data, sizeof p->id.data, "%s", value); break;
    case K_OBJECTIVE:
        ok = dp_objective_find(value) != NULL;
        snprintf(p->id.objective, sizeof p->id.objective, "%s", value);
        break;
    case K_RUN:
        ok = strlen(value) == DP_RUN_ID_SIZE - 1 &&
             strspn(value, "0123456789abcdef") == DP_RUN_ID_SIZE - 1;
        snprintf(p->ts.run, sizeof p->ts.run, "%s", ok ? value : "");
        break;
    case K_HASH:
        ok = parse_number(value, 16, UINT64_MAX, &x);
        p->id.layers_hash = x;
        break;
    case K_SEED:
        ok = parse_number(value, 10, UINT64_MAX, &x);
        p->id.seed = x;
        break;
    default:
        ok = store_count(p, key, value);
    }
    return ok;
}

/* inih handler: every key of [state] and [identity], each checked; others are ignored. */
static int on_state(void *arg, const char *section, const char *name, const char *value)
{
    parsed *p = arg;
    int key = key_of(section, name);
    if (key < 0)
        return 1;
    if (!store_value(p, key, value))
        return 0; /* an error: ini_parse reports the line */
    p->seen |= 1u << key;
    return 1;
}

/* The first way the checkpoint's identity differs from the run's, or NULL. */
static const char *mismatch(const dp_run_identity *c, const dp_run_identity *r, char *buf,
                            size_t size)
{
    if (c->layers_hash != r->layers_hash || c->inputs != r->inputs ||
        c->classes != r->classes || c->params != r->params)
        snprintf(buf, size, "it was written for another model ([model] layers, %d inputs, %d "
                            "classes, %zu parameters; this run's has %d, %d, %zu)",
                 c->inputs, c->classes, c->params, r->inputs, r->classes, r->params);
    else if (strcmp(c->objective, r->objective))
        snprintf(buf, size, "it was trained with [model] objective = %s; this run's is %s",
                 c->objective, r->objective);
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
                 dp_optim_names[c->optimizer & 1], c->state_slots, dp_optim_names[r->optimizer & 1],
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

/* Whether the counts of a state agree with each other and with its own identity: a step is
 * the batches of the epochs before plus those of this epoch, each of `batch` samples. */
static bool counts_possible(const parsed *p)
{
    const dp_train_state *ts = &p->ts;
    long samples = p->id.samples, batch = p->id.batch;
    if (samples < 1 || batch < 1 || ts->step > DP_MAX_STEPS || ts->epoch > DP_MAX_EPOCHS ||
        ts->updates > ts->step || ts->position >= samples || ts->position % batch)
        return false;
    long per_epoch = (samples + batch - 1) / batch;
    return ts->epoch <= ts->step / per_epoch &&
           ts->step == ts->epoch * per_epoch + ts->position / batch;
}

/* Parses state.ini's text into p: every key there, of the format this build writes, with
 * counts that can be. */
static int parse_state_text(const char *text, const char *what, parsed *p, dp_err *err)
{
    int line = ini_parse_string(text, on_state, p);
    if (line != 0)
        return dp_fail(err, "%s:%d: not a dpmptop checkpoint's state (a bad line)", what, line);
    if ((p->seen & ((1u << K_COUNT) - 1)) != (1u << K_COUNT) - 1 || p->format != FORMAT)
        return dp_fail(err, "%s: not a dpmptop checkpoint of format %d (keys missing)", what,
                       FORMAT);
    if (!counts_possible(p))
        return dp_fail(err, "%s: damaged: its step (%ld), epoch (%ld), position (%ld) and "
                            "updates (%ld) cannot come from a run of %ld samples in batches of "
                            "%d",
                       what, p->ts.step, p->ts.epoch, p->ts.position, p->ts.updates,
                       p->id.samples, p->id.batch);
    return 0;
}

int dp_checkpoint_parse_state(const char *text, const char *what, const dp_run_identity *id,
                              dp_train_state *ts, dp_err *err)
{
    char why[256];
    parsed p = { .id.processes = 1, .id.objective = "classify" };
    if (parse_state_text(text, what, &p, err) < 0)
        return -1;
    if (mismatch(&p.id, id, why, sizeof why))
        return dp_fail(err, "%s: cannot resume from this checkpoint: %s; resume with the "
                            "run's original configuration (see its config.ini), or start "
                            "without --resume",
                       what, why);
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
