/* main.c -- dpmptop's command line: options, configuration, data, model, then the run. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pthread.h>

#include "app/configuration.h"
#include "app/headless.h"
#include "tui/dashboard.h"
#include "dpmptop-config.h"
#include "base/fileio.h"
#include "engine/checkpoint.h"
#include "engine/monitor.h"
#include "base/rng.h"
#include "engine/safetensors.h"
#include "engine/world.h"
#ifdef HAVE_CUDA
#include "engine/backend_cuda.h"
#endif

enum exit_status { EXIT_DONE = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_INTERRUPTED = 130 };

static atomic_int stop_requested; /* lock-free: safe in a handler and across threads */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "a signal handler needs lock-free atomics");

/* The first SIGINT, SIGTERM or SIGHUP finishes the current step (and writes a checkpoint when
 * they are on); a second one exits at once, giving the terminal back first. */
static void on_signal(int sig)
{
    (void)sig;
    if (stop_requested) {
        dp_atomic_remove_all(); /* --save's, --metrics's and a checkpoint's temporaries */
        dp_dashboard_restore_terminal();
        _exit(EXIT_INTERRUPTED);
    }
    stop_requested = 1;
    if (dp_world_size() > 1) /* the launcher ending the run: SIGKILL may follow at once */
        dp_dashboard_restore_terminal();
}

/* SIGPIPE: an output's reader is gone (the --metrics pipe, `| head`). The run stops after
 * the current step, as on a first Ctrl-C, and the failed write ends it with exit 1. Unlike
 * on_signal it never exits at once, since every later write raises it again. */
static void on_broken_pipe(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* From the start, before any file is written: SIGINT, SIGTERM and SIGHUP stop the run (a
 * signal during the setup stops it before its first step), SIGPIPE as above. */
static void catch_signals(void)
{
    signal(SIGXFSZ, SIG_IGN); /* past a file size limit, writes fail with EFBIG and say so */
    struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESTART };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = on_broken_pipe;
    sigaction(SIGPIPE, &sa, NULL);
}

static void usage(FILE *out)
{
    fputs("Usage: dpmptop [OPTION]...\n"
          "Train a neural network on the devices of this machine and watch it.\n"
          "Without -c, runs the built-in demo (an MLP on Fashion-MNIST).\n"
          "\n"
          "  -c, --config FILE          read the run's configuration from an INI file\n"
          "  -s, --set SECTION.KEY=VALUE  override one key (repeatable)\n"
          "  -H, --headless             batch mode: progress lines, no dashboard (also when\n"
          "                             stdout or stdin is not a terminal)\n"
          "  -d, --devices LIST         auto | cpu:N | cuda:0,cuda:1,...\n"
          "  -S, --strategy NAME        single | dp | pp | hybrid\n"
          "      --stages N             pipeline stages\n"
          "      --microbatches N       micro-batches per step (pipeline)\n"
          "      --schedule NAME        gpipe | 1f1b\n"
          "      --steps N              train N steps\n"
          "      --epochs N             train N epochs\n"
          "      --switch-at STEP:STRATEGY[,...]  change strategy at those steps\n"
          "      --metrics FILE         write metrics as JSON Lines\n"
          "      --save FILE            save the final weights as safetensors\n"
          "      --init FILE            start from weights in a safetensors file\n"
          "      --checkpoint-dir DIR   write checkpoints into DIR\n"
          "      --resume [DIR]         continue from the newest checkpoint\n"
          "      --print-config         print the effective configuration and exit\n"
          "      --help-layers          describe every layer kind of [model] layers and exit\n"
          "      --no-color             a dashboard without colours (as NO_COLOR=1)\n"
          "  -h, --help                 show this help and exit\n"
          "  -V, --version              show the version and exit\n"
          "\n"
          "-c, --metrics, --save, --init, --checkpoint-dir and --resume may each be given\n"
          "once; the other options override keys, in order, so the last one wins.\n"
          "\n"
          "Exit status: 0 done, 1 the run failed, 2 bad usage or configuration,\n"
          "130 interrupted. See dpmptop(1) and README.md for the configuration keys.\n",
          out);
}

/* A --set style override collected from the command line, applied after the file. */
typedef struct override {
    char assignment[4200];
    const char *label;
} override;

typedef struct options {
    const char *config_path;
    const char *switch_at;
    const char *metrics_path, *save_path, *init_path;
    int resume;               /* --resume given */
    const char *resume_dir;   /* its directory, or NULL: [checkpoint] dir */
    int print_config;
    int headless;
    override *overrides;
    int n_overrides;
} options;

enum long_only {
    OPT_STAGES = 256, OPT_MICRO, OPT_SCHEDULE, OPT_STEPS, OPT_EPOCHS, OPT_SWITCH_AT, OPT_METRICS,
    OPT_SAVE, OPT_INIT, OPT_CKPT_DIR, OPT_RESUME, OPT_PRINT_CONFIG, OPT_NO_COLOR,
    OPT_HELP_LAYERS,
};

/* --help-layers: every layer kind's forms and what it does, from the layer table. */
static void help_layers(FILE *f)
{
    fputs("[model] layers is a comma-separated list; each sample's shape (images [C, H, W],\n"
          "sequences [T, D], vectors [N]) is inferred from the data and checked layer by\n"
          "layer. Tensor names follow PyTorch's nn.Sequential: \"0.weight\", and inside a\n"
          "block \"3.body.0.weight\" or \"2.attn.c_attn.weight\".\n\n",
          f);
    for (int i = 0; dp_layer_kinds[i]; i++) { /* the help wrapped at 80 columns */
        const char *h = dp_layer_kinds[i]->help;
        fprintf(f, "  %-26s", dp_layer_kinds[i]->usage);
        while (*h) {
            int len = (int)strlen(h);
            if (len > 51) {
                len = 51;
                while (len > 0 && h[len] != ' ')
                    len--;
            }
            fprintf(f, " %.*s\n", len, h);
            h += len;
            while (*h == ' ')
                h++;
            if (*h)
                fprintf(f, "%28s", "");
        }
    }
    fputs("\nExamples:\n"
          "  images: conv:32:3:1:1, relu, maxpool:2, conv:64:3:1:1, relu, maxpool:2,\n"
          "          flatten, linear:128, relu, linear:10\n"
          "  ResNet: conv:16:3:1:1, relu, res(conv:16:3:1:1, relu, conv:16:3:1:1), relu,\n"
          "          res(conv:32:3:2:1, relu, conv:32:3:1:1), relu, avgpool, flatten,\n"
          "          linear:10\n"
          "  GPT:    embed:256:128, pos, block:4, block:4, block:4, block:4, ln, linear:256\n",
          f);
}

static void add_override(options *o, const char *label, const char *fmt, const char *value)
{
    override *ov = &o->overrides[o->n_overrides++];
    ov->label = label;
    snprintf(ov->assignment, sizeof ov->assignment, fmt, value);
}

/* Parses argv into o; returns -1 (after printing why) on bad usage, 1 when done (help). */
static int parse_args(int argc, char **argv, options *o)
{
    static const struct option longs[] = {
        { "config", required_argument, NULL, 'c' },
        { "set", required_argument, NULL, 's' },
        { "headless", no_argument, NULL, 'H' },
        { "devices", required_argument, NULL, 'd' },
        { "strategy", required_argument, NULL, 'S' },
        { "stages", required_argument, NULL, OPT_STAGES },
        { "microbatches", required_argument, NULL, OPT_MICRO },
        { "schedule", required_argument, NULL, OPT_SCHEDULE },
        { "steps", required_argument, NULL, OPT_STEPS },
        { "epochs", required_argument, NULL, OPT_EPOCHS },
        { "switch-at", required_argument, NULL, OPT_SWITCH_AT },
        { "metrics", required_argument, NULL, OPT_METRICS },
        { "save", required_argument, NULL, OPT_SAVE },
        { "init", required_argument, NULL, OPT_INIT },
        { "checkpoint-dir", required_argument, NULL, OPT_CKPT_DIR },
        { "resume", optional_argument, NULL, OPT_RESUME },
        { "print-config", no_argument, NULL, OPT_PRINT_CONFIG },
        { "help-layers", no_argument, NULL, OPT_HELP_LAYERS },
        { "no-color", no_argument, NULL, OPT_NO_COLOR },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    /* at most two overrides per argument (--epochs sets two keys) */
    o->overrides = calloc(2 * (size_t)argc + 1, sizeof *o->overrides);
    if (!o->overrides) {
        fputs("dpmptop: out of memory\n", stderr);
        return -1;
    }
    /* A value this long is no option's or key's, and every override below fits its buffer. */
    enum { LONGEST_VALUE = 4096 };
    _Static_assert(sizeof o->overrides->assignment > LONGEST_VALUE + sizeof "parallel.microbatches=",
                   "an override's buffer holds the longest value after its key");
    const char *checkpoint_dir = NULL;
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":c:s:Hd:S:hV", longs, NULL)) != -1) {
        if (optarg && strlen(optarg) > LONGEST_VALUE) {
            const char *name = "";
            for (int i = 0; longs[i].name; i++)
                if (longs[i].val == ch)
                    name = longs[i].name;
            fprintf(stderr, "dpmptop: --%s: a value of %zu characters; no option or key takes "
                            "more than %d\n",
                    name, strlen(optarg), LONGEST_VALUE);
            return -1;
        }
        /* Options naming one file or directory: a second one is refused, not silently
         * preferred, as the first may be the one meant. */
        const char *once_name = NULL, **once = NULL;
        switch (ch) {
        case 'c': once_name = "-c", once = &o->config_path; break;
        case OPT_SAVE: once_name = "--save", once = &o->save_path; break;
        case OPT_METRICS: once_name = "--metrics", once = &o->metrics_path; break;
        case OPT_INIT: once_name = "--init", once = &o->init_path; break;
        case OPT_CKPT_DIR: once_name = "--checkpoint-dir", once = &checkpoint_dir; break;
        }
        if (once && *once) {
            fprintf(stderr, "dpmptop: %s given twice: %s and %s; give one\n", once_name, *once,
                    optarg);
            return -1;
        }
        if (ch == OPT_RESUME && o->resume) {
            fputs("dpmptop: --resume given twice; give it once\n", stderr);
            return -1;
        }
        switch (ch) {
        case 'c': o->config_path = optarg; break;
        case 's': add_override(o, "--set", "%s", optarg); break;
        case 'H': o->headless = 1; break;
        case 'd': add_override(o, "--devices", "parallel.devices=%s", optarg); break;
        case 'S': add_override(o, "--strategy", "parallel.strategy=%s", optarg); break;
        case OPT_STAGES: add_override(o, "--stages", "parallel.stages=%s", optarg); break;
        case OPT_MICRO: add_override(o, "--microbatches", "parallel.microbatches=%s", optarg); break;
        case OPT_SCHEDULE: add_override(o, "--schedule", "parallel.schedule=%s", optarg); break;
        case OPT_STEPS: add_override(o, "--steps", "run.steps=%s", optarg); break;
        case OPT_EPOCHS:
            add_override(o, "--epochs", "run.epochs=%s", optarg);
            add_override(o, "--epochs", "run.steps=%s", "0"); /* epochs, not a step count */
            break;
        case OPT_CKPT_DIR:
            checkpoint_dir = optarg;
            add_override(o, "--checkpoint-dir", "checkpoint.dir=%s", optarg);
            break;
        case OPT_NO_COLOR: add_override(o, "--no-color", "dashboard.color=%s", "false"); break;
        case OPT_METRICS: o->metrics_path = optarg; break;
        case OPT_SAVE: o->save_path = optarg; break;
        case OPT_INIT: o->init_path = optarg; break;
        case OPT_PRINT_CONFIG: o->print_config = 1; break;
        case OPT_SWITCH_AT: o->switch_at = optarg; break;
        case OPT_RESUME: /* --resume=DIR, --resume DIR, or --resume alone */
            o->resume = 1;
            o->resume_dir = optarg;
            if (!optarg && optind < argc && argv[optind][0] != '-')
                o->resume_dir = argv[optind++];
            break;
        case 'h': usage(stdout); return 1;
        case OPT_HELP_LAYERS: help_layers(stdout); return 1;
        case 'V':
#ifdef HAVE_CUDA
            printf("dpmptop %s (CPU and CUDA backends", PACKAGE_VERSION);
#else
            printf("dpmptop %s (CPU backend; built without CUDA", PACKAGE_VERSION);
#endif
#ifdef HAVE_MPI
            puts("; runs across processes with MPI)");
#else
            puts("; built without MPI)");
#endif
            return 1;
        case ':':
            if (optopt && optopt < 256)
                fprintf(stderr, "dpmptop: -%c needs a value; see dpmptop --help\n", optopt);
            else
                fprintf(stderr, "dpmptop: %s needs a value; see dpmptop --help\n",
                        argv[optind - 1]);
            return -1;
        default:
            if (optopt)
                fprintf(stderr, "dpmptop: unknown option -%c; see dpmptop --help\n", optopt);
            else
                fprintf(stderr, "dpmptop: unknown option %s; see dpmptop --help\n",
                        argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "dpmptop: unexpected argument \"%s\"; see dpmptop --help\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* "FILE:LINE: " for a key that came from a file, "--set: " for an override, "" for a default. */
static void origin_prefix(char *buf, size_t size, const dp_config *c, const char *section,
                          const char *key)
{
    const char *o = dp_config_origin(c, section, key);
    snprintf(buf, size, "%s%s", o, o[0] ? ": " : "");
}

/* Loads the data; the built-in demo falls back to the synthetic task when Fashion-MNIST is not
 * installed. */
static int load_data(dp_config *c, bool demo, dp_dataset *train, dp_dataset *test)
{
    dp_err err;
    if (dp_data_load(&c->data, c->seed, train, test, &err) == 0)
        return 0;
    struct stat st;
    const char *dir = dp_data_default_path(c->data.kind);
    if (demo && c->data.kind == DP_DATA_FASHION_MNIST && !c->data.path[0] && stat(dir, &st) != 0) {
        fprintf(stderr, "dpmptop: Fashion-MNIST is not installed (%s); the demo trains on the "
                        "synthetic task instead (apt-get install dataset-fashion-mnist for the "
                        "real one)\n",
                dir);
        c->data.kind = DP_DATA_SYNTHETIC;
        c->data.features = 784;
        c->data.classes = 10;
        if (dp_data_load(&c->data, c->seed, train, test, &err) == 0)
            return 0;
    }
    fprintf(stderr, "dpmptop: %s\n", err.msg);
    return -1;
}

/* Parses --switch-at STEP:STRATEGY[,STEP:STRATEGY...] (steps increasing) into sw[], checking
 * that each plan can be made; returns the count, or -1 after saying why. */
static int parse_switches(const char *text, const dp_config *c, const dp_model *m, int devices,
                          dp_switch_at *sw, int max)
{
    int n = 0;
    long last = 0;
    for (const char *p = text;; p++) { /* every item, empty ones too ("2:pp," has two) */
        char item[64], *colon;
        size_t len = strcspn(p, ",");
        snprintf(item, sizeof item, "%.*s", (int)len, p);
        errno = 0;
        long step = strtol(item, &colon, 10);
        int strategy = -1;
        if (!errno && colon != item && *colon == ':' && len < sizeof item && isdigit(item[0]))
            strategy = dp_strategy_parse(colon + 1);
        if (strategy < 0 || step < 1 || step <= last || step > DP_MAX_STEPS || n == max) {
            fprintf(stderr, "dpmptop: --switch-at %s: \"%s\" is not STEP:STRATEGY with steps "
                            "increasing from 1 and STRATEGY one of single, dp, pp, hybrid\n",
                    text, item);
            return -1;
        }
        dp_plan_request req = dp_config_plan(c);
        req.strategy = (dp_strategy)strategy;
        dp_plan plan;
        dp_err err;
        if (dp_plan_make(&plan, &req, devices, m, c->data.batch, NULL, &err) < 0) {
            fprintf(stderr, "dpmptop: --switch-at %s: %s\n", item, err.msg);
            return -1;
        }
        sw[n++] = (dp_switch_at){ step, req };
        last = step;
        p += len;
        if (!*p)
            return n;
    }
}

/* The run's devices into specs: parallel.devices, with auto resolved to every GPU (under
 * mpirun, this process's share of this machine's GPUs), or two CPU devices (said once) when
 * there is none. Returns the count, or minus the exit status. */
static int resolve_devices(const dp_config *c, dp_device_spec *specs)
{
    dp_err err;
    int n = dp_config_device_list(c, specs, &err);
    if (n < 0) {
        fprintf(stderr, "dpmptop: %s\n", err.msg);
        return -EXIT_USAGE;
    }
#ifdef HAVE_CUDA
    int gpus = dp_cuda_device_count(&err);
    int here = dp_world_local_size(), me = dp_world_local_rank();
    if (n == 0 && gpus > 0 && gpus < here) {
        fprintf(stderr, "dpmptop: parallel.devices = auto: %d processes of the run on this "
                        "machine but %d GPU%s; start at most %d here, or give each its "
                        "devices (--devices cuda:N)\n",
                here, gpus, gpus == 1 ? "" : "s", gpus);
        return -EXIT_USAGE;
    }
    if (n == 0 && gpus > 0) { /* an equal share of this machine's GPUs for each process */
        int share = gpus / here;
        if (gpus % here && me == 0)
            fprintf(stderr, "dpmptop: parallel.devices = auto: %d GPUs for %d processes on "
                            "%s: %d each, %d left idle\n",
                    gpus, here, dp_world_host(), share, gpus % here);
        for (int i = 0; i < share && i < DP_MAX_DEVICES; i++)
            specs[i] = (dp_device_spec){ .cuda = true, .ordinal = me * share + i };
        return share < DP_MAX_DEVICES ? share : DP_MAX_DEVICES;
    }
    if (n == 0) {
        if (dp_world_rank() == 0) /* said once, not by every process */
            fprintf(stderr, "dpmptop: no usable GPU (%s); training on 2 CPU devices\n",
                    err.msg);
    } else if (specs[0].cuda && gpus < 0) {
        fprintf(stderr, "dpmptop: parallel.devices = %s: %s\n", c->devices, err.msg);
        return -EXIT_FAILED;
    } else {
        for (int i = 0; i < n; i++)
            if (specs[i].cuda && specs[i].ordinal >= gpus) {
                fprintf(stderr, "dpmptop: parallel.devices = %s: cuda:%d does not exist (this "
                                "machine has %d GPU%s)\n",
                        c->devices, specs[i].ordinal, gpus, gpus == 1 ? "" : "s");
                return -EXIT_USAGE;
            }
    }
#endif
    if (n > 0)
        return n;
    specs[0] = specs[1] = (dp_device_spec){ .cuda = false };
    return 2;
}

/* In a world of several processes: every process with as many devices of one kind (each runs
 * the same plan on its part of the batch, and GPUs sum across processes with NCCL, CPUs with
 * MPI). */
static int check_world(const dp_device_spec *specs, int n)
{
    if (dp_world_size() == 1)
        return 0;
    bool gpus = specs[0].cuda;
    if (!dp_world_agree(2L * n + gpus)) {
        fprintf(stderr, "dpmptop: rank %d of %d: the processes have different devices (this one "
                        "%d %s; auto gives each its share of its machine's GPUs, or 2 CPU "
                        "devices without one); give every process as many of one kind, e.g. "
                        "--devices cuda:0,cuda:1\n",
                dp_world_rank(), dp_world_size(), n, gpus ? "GPUs" : "CPU devices");
        return -1;
    }
    return 0;
}

/* A data set's labels and every 61st value of its samples (enough to tell two different files
 * apart, at a small part of the cost of reading them all). */
static uint64_t data_fingerprint(uint64_t h, const dp_dataset *d)
{
    h = dp_fnv1a(h, d->y, (size_t)d->n * d->targets * sizeof *d->y);
    for (size_t i = 0; i < (size_t)d->n * d->features; i += 61)
        h = dp_fnv1a(h, &d->x[i], sizeof *d->x);
    return h;
}

/* In a world of several processes: the same configuration and data in every process (a
 * process training with another learning rate, model or data file would make the run silently
 * wrong). Where files are (data.path, checkpoint.dir) and which devices may differ. */
static int check_same_run(const dp_config *c, const dp_dataset *train, const dp_dataset *test)
{
    if (dp_world_size() == 1)
        return 0;
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (!f) {
        fprintf(stderr, "dpmptop: out of memory\n");
        return -1;
    }
    dp_config_print(c, f);
    fclose(f);
    uint64_t h = data_fingerprint(data_fingerprint(DP_FNV_START, train), test);
    for (const char *line = text; *line;) { /* the lines that must agree */
        size_t len = strcspn(line, "\n") + (line[strcspn(line, "\n")] == '\n');
        if (strncmp(line, "devices = ", 10) && strncmp(line, "path = ", 7) &&
            strncmp(line, "dir = ", 6))
            h = dp_fnv1a(h, line, len);
        line += len;
    }
    free(text);
    if (!dp_world_agree((long)h)) {
        fprintf(stderr, "dpmptop: rank %d of %d: the processes have different configurations "
                        "or data (beyond devices and file places; compare their "
                        "--print-config and data files); give every process the same -c file, "
                        "options and data\n",
                dp_world_rank(), dp_world_size());
        return -1;
    }
    return 0;
}

/* Refuses an output path that cannot take a file (empty, a directory, an unwritable place, a
 * named pipe without a reader) before any work is done. An output that is not a regular file
 * (a terminal, a pipe) is opened now and held open in *held until the run ends: closing a
 * probe of a named pipe would end its reader's input. */
static int check_output_path(const char *option, const char *path, dp_atomic_file *held)
{
    struct stat st;
    dp_err err;
    if (!path[0]) {
        fprintf(stderr, "dpmptop: %s needs a file name\n", option);
        return -1;
    }
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "dpmptop: %s %s: is a directory; give a file name\n", option, path);
        return -1;
    }
    if (dp_atomic_open(held, path, &err) < 0) {
        fprintf(stderr, "dpmptop: %s %s\n", option, err.msg);
        return -1;
    }
    if (held->tmp[0]) /* a regular file: written under a temporary name at the end */
        dp_atomic_abort(held);
    return 0;
}

/* The absolute path that `path` names, or would name once written (its directory's links
 * resolved), into out[PATH_MAX]; "" when its directory does not exist. */
static void resolve_path(const char *path, char *out)
{
    char dir[PATH_MAX], base[PATH_MAX], parent[PATH_MAX];
    if (realpath(path, out))
        return;
    snprintf(dir, sizeof dir, "%s", path);
    snprintf(base, sizeof base, "%s", path);
    if (!realpath(dirname(dir), parent)) {
        out[0] = '\0';
        return;
    }
    snprintf(out, PATH_MAX, "%s/%s", strcmp(parent, "/") ? parent : "", basename(base));
}

/* Whether resolved path `inner` is `dir` itself or lies under it. */
static bool under(const char *inner, const char *dir)
{
    size_t n = strlen(dir);
    return dir[0] && !strncmp(inner, dir, n) && (inner[n] == '/' || !inner[n] || n == 1);
}

/* Whether output `out` (resolved) is the file at `path`: the same name once links are
 * resolved, or the same file under another name (a hard link). */
static bool same_file(const char *out, const char *path)
{
    char other[PATH_MAX];
    struct stat a, b;
    resolve_path(path, other);
    return !strcmp(out, other) || (stat(out, &a) == 0 && stat(path, &b) == 0 &&
                                   a.st_dev == b.st_dev && a.st_ino == b.st_ino);
}

/* Refuses outputs (--save, --metrics) that name the same file as each other or as an input
 * (-c, --init, the data), that bear a name the data reader reads in the data directory (any
 * name in a text directory), or that lie inside the checkpoint directory or the one --resume
 * reads, before any work: the run would destroy or change what it reads or writes. */
static int check_distinct_paths(const options *o, const dp_config *c)
{
    const char *outputs[2][2] = { { "--save", o->save_path }, { "--metrics", o->metrics_path } };
    const char *data = c->data.path[0] ? c->data.path : dp_data_default_path(c->data.kind);
    char out[PATH_MAX], dir[PATH_MAX], parent[PATH_MAX];
    for (int i = 0; i < 2; i++) {
        if (!outputs[i][1])
            continue;
        resolve_path(outputs[i][1], out);
        if (!out[0])
            continue; /* its directory does not exist: check_output_path says so */
        const char *clash = NULL;
        if (i == 1 && o->save_path && same_file(out, o->save_path))
            clash = "--save's file";
        else if (o->config_path && same_file(out, o->config_path))
            clash = "the configuration (-c)";
        else if (o->init_path && same_file(out, o->init_path))
            clash = "--init's weights";
        else if (data[0] && same_file(out, data))
            clash = "the data (data.path)";
        else if (data[0] && (resolve_path(data, dir), under(out, dir)) &&
                 !strcmp(dirname(strcpy(parent, out)), dir) &&
                 dp_data_reads_name(c->data.kind, strrchr(out, '/') + 1))
            clash = "a name in the data directory that is read as data";
        else if (c->checkpoint_dir[0] && (resolve_path(c->checkpoint_dir, dir), under(out, dir)))
            clash = "inside the checkpoint directory";
        else if (o->resume_dir && (resolve_path(o->resume_dir, dir), under(out, dir)))
            clash = "inside the directory --resume reads";
        if (clash) {
            fprintf(stderr, "dpmptop: %s %s: that is %s; give the output a path of its own\n",
                    outputs[i][0], outputs[i][1], clash);
            return -1;
        }
    }
    return 0;
}

/* Under mpirun, rank 0's stdout is the launcher's pty and its stdin a pipe: the dashboard then
 * uses the launcher's own terminal, when the launcher (this process's parent) reads and writes
 * one (not redirected) as its foreground job. Returns the terminal's descriptor, or -1. */
static int launcher_terminal(void)
{
    pid_t launcher = getppid();
    for (int fd = 0; fd <= 1; fd++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)launcher, fd);
        int probe = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        bool tty = probe >= 0 && isatty(probe);
        if (probe >= 0)
            close(probe);
        if (!tty)
            return -1;
    }
    int tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (tty >= 0 && tcgetpgrp(tty) != getpgid(launcher)) {
        close(tty);
        return -1;
    }
    return tty;
}

/* The training loop's thread under the dashboard. */
typedef struct training {
    dp_trainer *t;
    const dp_headless_opts *o;
    dp_headless_result *res;
    dp_err *err;
    int rc;
} training;

static void *training_main(void *arg)
{
    training *tr = arg;
    tr->rc = dp_headless_run(tr->t, tr->o, tr->res, tr->err);
    return NULL;
}

/* Trains on a thread of its own while the dashboard runs on this one (the only thread that
 * touches ncurses); prints the summary once the terminal is back. Returns the run's status. */
static int run_with_dashboard(dp_trainer *t, const dp_headless_opts *headless,
                              const dp_dashboard_info *info, dp_headless_result *res, dp_err *err)
{
    dp_run_status st;
    long per_epoch = dp_trainer_steps_per_epoch(t);
    dp_run_status_init(&st, headless->total_steps,
                       (headless->total_steps + per_epoch - 1) / per_epoch);
    dp_headless_opts o = *headless;
    o.out = NULL;
    o.status = &st;
    training tr = { t, &o, res, err, 0 };
    pthread_t thread;
    if (pthread_create(&thread, NULL, training_main, &tr) != 0) {
        dp_run_status_destroy(&st);
        return dp_fail(err, "cannot start the training thread");
    }
    if (dp_dashboard_run(t, &st, info, headless->stop) < 0) {
        pthread_mutex_lock(&st.lock);
        st.quit = true;
        pthread_cond_broadcast(&st.changed);
        pthread_mutex_unlock(&st.lock);
    }
    pthread_join(thread, NULL);
    dp_run_status_destroy(&st);
    if (tr.rc == 0)
        dp_headless_print_summary(t, res, stdout);
    return tr.rc;
}

/* What writing a checkpoint of this run needs ([checkpoint] dir, keep). */
typedef struct checkpointer {
    const char *dir;
    long keep;
    const dp_model *model;
    const dp_optim_config *optim;
    dp_run_identity id;
    char *config_text;  /* the effective configuration, as --print-config prints it */
    char run[DP_RUN_ID_SIZE]; /* this run's id: new, or the resumed checkpoint's */
    float *params;      /* [n_params] */
    float *state;       /* [state_per_param][n_params] */
} checkpointer;

/* dp_headless_opts.write_checkpoint */
static int write_checkpoint(void *arg, dp_trainer *t, char *path, size_t size, dp_err *err)
{
    checkpointer *c = arg;
    dp_train_state ts;
    dp_trainer_train_state(t, &ts);
    snprintf(ts.run, sizeof ts.run, "%s", c->run);
    dp_trainer_get_state(t, c->params, c->state);
    for (size_t i = 0; i < c->model->n_params; i++)
        if (!isfinite(c->params[i]))
            return dp_fail(err, "step %ld: the update left non-finite parameters (parameter "
                                "%zu is %g); not writing a checkpoint of them, the earlier "
                                "ones are intact (lower optim.lr or set optim.clip)",
                           ts.step, i, c->params[i]);
    return dp_checkpoint_write(c->dir, c->keep, c->model, c->optim, c->params, c->state, &ts,
                               &c->id, c->config_text, path, size, err);
}

/* Writes weights host[n_params] to --save; returns the exit status. */
static int save_weights_of(const float *host, const dp_model *m, const char *path)
{
    dp_err err;
    if (dp_safetensors_save(path, m, host, &err) < 0) {
        fprintf(stderr, "dpmptop: --save %s; the previous file, if any, is unchanged\n",
                err.msg);
        return EXIT_FAILED;
    }
    printf("saved %s\n", path);
    return EXIT_DONE;
}

/* Writes the trained weights to --save; returns the exit status. */
static int save_weights(dp_trainer *t, const dp_model *m, const char *path)
{
    float *host = malloc(m->n_params * sizeof *host);
    if (!host) {
        fprintf(stderr, "dpmptop: --save %s: out of memory\n", path);
        return EXIT_FAILED;
    }
    dp_trainer_get_params(t, host);
    int rc = save_weights_of(host, m, path);
    free(host);
    return rc;
}

static int run(int argc, char **argv)
{
    options opt = { 0 };
    int rc = parse_args(argc, argv, &opt);
    if (rc != 0) {
        free(opt.overrides);
        return rc > 0 ? EXIT_DONE : EXIT_USAGE;
    }
    if (dp_world_rank() > 0) { /* only rank 0 reports and writes files */
        opt.headless = 1;
        opt.metrics_path = opt.save_path = NULL;
    }
    /* Rank 0's dashboard under mpirun draws on mpirun's terminal; what it prints goes there
     * too, straight, so that it comes before and after the dashboard, not over it later. */
    int tty = -1;
    if (!opt.headless && dp_world_size() > 1 && (tty = launcher_terminal()) >= 0) {
        fflush(stdout);
        dup2(tty, STDOUT_FILENO);
    }

    static dp_config cfg;
    dp_err err;
    dp_config_defaults(&cfg);
    bool demo = opt.config_path == NULL;
    if (dp_config_load(&cfg, opt.config_path, dp_demo_ini, "demo.ini (built in)", &err) < 0)
        goto usage_error;
    for (int i = 0; i < opt.n_overrides; i++)
        if (dp_config_set(&cfg, opt.overrides[i].assignment, opt.overrides[i].label, &err) < 0)
            goto usage_error;
    if (opt.print_config) {
        dp_config_print(&cfg, stdout);
        free(opt.overrides);
        if (fflush(stdout) != 0 || ferror(stdout)) {
            perror("dpmptop: --print-config: writing the configuration");
            return EXIT_FAILED;
        }
        return EXIT_DONE;
    }
    if (dp_config_check(&cfg, &err) < 0)
        goto usage_error;
    /* Outputs and the checkpoint directory, before any work. Metrics go to a temporary file
     * that replaces --metrics's file when the run ends. */
    int status = EXIT_USAGE;
    dp_dataset train = { 0 }, test = { 0 };
    dp_model model = { 0 };
    float *init = NULL;
    checkpointer ckpt = { 0 };
    dp_train_state resumed = { 0 };
    dp_atomic_file metrics = { 0 }, save_held = { 0 };
    dp_trainer *trainer = NULL;
    if (dp_run_id_new(ckpt.run, &err) < 0) {
        fprintf(stderr, "dpmptop: %s\n", err.msg);
        status = EXIT_FAILED;
        goto done;
    }
    if (check_distinct_paths(&opt, &cfg) < 0 ||
        (opt.save_path && check_output_path("--save", opt.save_path, &save_held) < 0) ||
        (opt.metrics_path && check_output_path("--metrics", opt.metrics_path, &metrics) < 0))
        goto done;
    if (opt.metrics_path && !metrics.f && dp_atomic_open(&metrics, opt.metrics_path, &err) < 0) {
        fprintf(stderr, "dpmptop: --metrics %s\n", err.msg);
        goto done;
    }
    if (cfg.checkpoint_dir[0] && dp_world_rank() == 0 && !opt.resume && /* else once resumed */
        dp_checkpoint_prepare(cfg.checkpoint_dir, NULL, -1, &err) < 0) {
        fprintf(stderr, "dpmptop: %s\n", err.msg);
        goto done;
    }

    if (load_data(&cfg, demo, &train, &test) < 0)
        goto done;
    int ids = cfg.data.kind == DP_DATA_TEXT ? train.classes : 0; /* bytes, as their labels */
    if (dp_model_parse_shape(&model, cfg.layers, dp_dataset_shape(&train), train.classes,
                             &err) < 0 ||
        dp_model_check_ids(&model, ids, &err) < 0) {
        char where[128];
        origin_prefix(where, sizeof where, &cfg, "model", "layers");
        fprintf(stderr, "dpmptop: %s[model] layers: %s\n", where, err.msg);
        goto done;
    }
    model.objective = dp_objectives[cfg.objective]; /* [model] objective */
    if (model.targets != train.targets) {
        char where[128];
        origin_prefix(where, sizeof where, &cfg, "model", "layers");
        if (train.targets > 1)
            fprintf(stderr, "dpmptop: %s[model] layers: text needs a prediction for each of "
                            "its %d positions, but the model gives %d; start the list with "
                            "embed:256:WIDTH, as in examples/tiny-gpt.ini\n",
                    where, train.targets, model.targets);
        else
            fprintf(stderr, "dpmptop: %s[model] layers: the model gives %d predictions per "
                            "sample but %s has one label per sample; end the list with "
                            "flatten, linear:%d\n",
                    where, model.targets, train.name, train.classes);
        goto done;
    }
    size_t state_floats = model.n_params * dp_optim_state_per_param(&cfg.optim);
    dp_run_identity identity = dp_run_identity_of(cfg.layers, &model, train.name, train.n,
                                                  cfg.data.batch, &cfg.optim, cfg.seed);
    ckpt.params = malloc(model.n_params * sizeof(float));
    ckpt.state = malloc(state_floats * sizeof(float) + 1);
    if (!ckpt.params || !ckpt.state) {
        fprintf(stderr, "dpmptop: out of host memory for a copy of the model's %zu parameters "
                        "and optimizer state (%zu bytes); use a smaller model\n",
                model.n_params, (model.n_params + state_floats) * sizeof(float));
        status = EXIT_FAILED;
        goto done;
    }
    if (opt.resume) {
        const char *dir = opt.resume_dir ? opt.resume_dir : cfg.checkpoint_dir;
        char path[4200];
        if (!dir[0] || opt.init_path) {
            fprintf(stderr, "dpmptop: --resume %s\n",
                    opt.init_path ? "and --init cannot go together: a checkpoint holds the "
                                    "parameters"
                                  : "needs a directory: --resume DIR, or [checkpoint] dir "
                                    "(--checkpoint-dir DIR)");
            goto done;
        }
        char notes[2048];
        init = malloc(model.n_params * sizeof *init);
        int found = init ? dp_checkpoint_find(dir, path, sizeof path, notes, sizeof notes, &err)
                         : dp_fail(&err, "out of memory");
        fputs(found == 0 ? notes : "", stderr); /* damaged checkpoints passed over */
        if (found < 0 || dp_checkpoint_read(path, &model, &cfg.optim, &identity, init,
                                            ckpt.state, &resumed, &err) < 0) {
            fprintf(stderr, "%sdpmptop: %s%s\n", found < 0 ? notes : "", err.msg,
                    found == 0 && strcmp(path, dir) ? "; it is the newest checkpoint there: to "
                                                      "resume an earlier one, give its "
                                                      "directory (--resume DIR/step-N)"
                                                    : "");
            goto done;
        }
        printf("resuming from %s (step %ld, %s)\n", path, resumed.step,
               strcmp(path, dir) ? "the newest complete checkpoint there" : "as given");
        if (resumed.run[0]) /* the same run: it owns its predecessor's checkpoints */
            snprintf(ckpt.run, sizeof ckpt.run, "%s", resumed.run);
        else
            printf("  (written before run ids: continued as run %s)\n", ckpt.run);
        if (!cfg.checkpoint_dir[0])
            printf("  (checkpoints are off: add --checkpoint-dir DIR to write more)\n");
        else if (dp_world_rank() == 0 &&
                 dp_checkpoint_prepare(cfg.checkpoint_dir, ckpt.run, resumed.step, &err) < 0) {
            fprintf(stderr, "dpmptop: %s\n", err.msg);
            goto done;
        }
        long per_epoch = (train.n + cfg.data.batch - 1) / cfg.data.batch;
        long end = cfg.steps > 0 ? cfg.steps : cfg.epochs * per_epoch;
        if (resumed.step >= end) {
            fprintf(stderr, "dpmptop: %s is at step %ld, and this run ends at step %ld "
                            "(run.steps or run.epochs): nothing to train; to train further, "
                            "resume with more --steps or --epochs\n",
                    path, resumed.step, end);
            status = opt.save_path ? save_weights_of(init, &model, opt.save_path) : EXIT_DONE;
            goto done;
        }
    }
    if (opt.init_path) {
        init = malloc(model.n_params * sizeof *init);
        if (!init || dp_safetensors_load(opt.init_path, &model, init, &err) < 0) {
            fprintf(stderr, "dpmptop: --init %s\n", init ? err.msg : "out of memory");
            goto done;
        }
    }

    dp_device_spec specs[DP_MAX_DEVICES];
    int n_devices = resolve_devices(&cfg, specs);
    if (n_devices < 0) {
        status = -n_devices;
        goto done;
    }
    if (check_world(specs, n_devices) < 0 || check_same_run(&cfg, &train, &test) < 0) {
        status = EXIT_USAGE;
        goto done;
    }
    dp_switch_at switches[64];
    int n_switches = 0;
    if (opt.switch_at &&
        (n_switches = parse_switches(opt.switch_at, &cfg, &model, n_devices, switches, 64)) < 0)
        goto done;
    long per_epoch = (train.n + cfg.data.batch - 1) / cfg.data.batch;
    long total = cfg.steps > 0 ? cfg.steps : cfg.epochs * per_epoch;
    if (total > DP_MAX_STEPS) { /* what a checkpoint can record */
        fprintf(stderr, "dpmptop: run.epochs = %ld of %ld steps is %ld steps, more than the "
                        "%ld a run may have; lower run.epochs\n",
                cfg.epochs, per_epoch, total, DP_MAX_STEPS);
        goto done;
    }
    dp_trainer_config tc = {
        .model = &model,
        .optim = cfg.optim,
        .batch = cfg.data.batch,
        .shuffle = cfg.data.shuffle,
        .seed = cfg.seed,
        .total_steps = total,
        .on_nan = (dp_on_nan)cfg.on_nan,
        .devices = n_devices,
        .device_specs = specs,
        .tf32 = cfg.precision == DP_PRECISION_TF32,
        .data_on_device = cfg.data_on_device,
        .balance_by_time = cfg.balance == 0,
        .plan = dp_config_plan(&cfg),
        .bucket_mb = cfg.bucket_mb,
        .resume = opt.resume ? &resumed : NULL,
        .resume_state = opt.resume ? ckpt.state : NULL,
    };
    bool plan_refused;
    trainer = dp_trainer_create(&tc, &train, &test, init, &plan_refused, &err);
    if (!trainer) {
        fprintf(stderr, "dpmptop: %s%s\n", plan_refused ? "[parallel]: " : "", err.msg);
        status = plan_refused ? EXIT_USAGE : EXIT_FAILED;
        goto done;
    }

    char desc[512], plan_text[64];
    dp_model_describe(&model, desc, sizeof desc);
    dp_trainer_describe(trainer, plan_text, sizeof plan_text);
    int n_dev = dp_trainer_device_count(trainer);
    if (dp_world_size() > 1) /* the same devices and plan in every process */
        printf("dpmptop %s: %d processes (MPI), data parallel across them; in each:\n",
               PACKAGE_VERSION, dp_world_size());
    printf("dpmptop %s: run \"%s\" on %d device%s (%s%s%s), %s\n  data:  %s, %ld samples of %d "
           "features, %d classes; test %ld samples\n  model: %s (%zu parameters)\n  steps: %ld "
           "(%ld per epoch of batch %d)\n",
           PACKAGE_VERSION, cfg.name, n_dev, n_dev == 1 ? "" : "s",
           dp_trainer_device(trainer, 0)->name, n_dev > 1 ? ".." : "",
           n_dev > 1 ? dp_trainer_device(trainer, n_dev - 1)->name : "", plan_text, train.name,
           train.n, train.features, train.classes, test.n, desc, model.n_params, total,
           per_epoch, cfg.data.batch);
    char cut[160];
    if (dp_plan_cut_reason(&tc.plan, n_devices, &model, cut, sizeof cut))
        printf("  plan:  %s\n", cut);
    fflush(stdout);

    dp_headless_opts ho = {
        .total_steps = total,
        .eval_every = cfg.eval_every,
        .switches = switches,
        .n_switches = n_switches,
        .out = stdout,
        .out_is_tty = isatty(STDOUT_FILENO) && dp_world_size() == 1, /* mpirun's pty: a log */
        .metrics = metrics.f,
        .stop = &stop_requested,
        .watchdog_s = cfg.watchdog_s,
    };
    if (cfg.checkpoint_dir[0] && dp_world_rank() == 0) { /* every process holds the same */
        size_t text_size = 0;
        FILE *text = open_memstream(&ckpt.config_text, &text_size);
        if (!text) {
            fprintf(stderr, "dpmptop: out of memory\n");
            status = EXIT_FAILED;
            goto done;
        }
        dp_config_print(&cfg, text);
        fclose(text);
        ckpt.dir = cfg.checkpoint_dir;
        ckpt.keep = cfg.checkpoint_keep;
        ckpt.model = &model;
        ckpt.optim = &cfg.optim;
        ckpt.id = identity;
        ho.write_checkpoint = write_checkpoint;
        ho.checkpoint_arg = &ckpt;
        ho.checkpoint_every = cfg.checkpoint_every;
    }
    /* The dashboard: on a terminal, or under mpirun on rank 0 with the launcher's; every
     * process learns whether rank 0 shows one (the others then report their devices to it). */
    bool dashboard = !opt.headless && (tty >= 0 || (dp_world_size() == 1 &&
                                                      isatty(STDOUT_FILENO) &&
                                                      isatty(STDIN_FILENO)));
    int shown = dashboard;
    dp_world_broadcast(&shown, sizeof shown);
    dp_monitor *monitor;
    if (dp_monitor_start(trainer, shown, &monitor, &err) < 0) {
        fprintf(stderr, "dpmptop: %s\n", err.msg);
        if (tty >= 0)
            close(tty);
        status = EXIT_FAILED;
        goto done;
    }
    dp_headless_result res;
    int run_rc;
    if (dashboard) {
        dp_dashboard_info info = {
            .version = PACKAGE_VERSION, .run_name = cfg.name, .data_name = train.name,
            .samples = train.n, .model = desc, .params = model.n_params,
            .refresh_ms = (int)cfg.refresh_ms,
            .color = cfg.color && !(getenv("NO_COLOR") && getenv("NO_COLOR")[0]),
            .monitor = monitor, .tty = tty,
        };
        run_rc = run_with_dashboard(trainer, &ho, &info, &res, &err);
        if (tty >= 0)
            close(tty);
    } else {
        run_rc = dp_headless_run(trainer, &ho, &res, &err);
    }
    if (run_rc == 0 || dp_world_rank() == 0) /* a failed process ends the run instead */
        dp_monitor_stop(monitor);
    if (run_rc < 0 && dp_world_size() > 1) { /* the others may wait for this one forever */
        fprintf(stderr, "dpmptop: rank %d: %s\n", dp_world_rank(), err.msg);
        fflush(NULL);
        dp_world_abort(EXIT_FAILED);
    }
    if (run_rc < 0) {
        fprintf(stderr, "dpmptop: %s\n", err.msg);
        status = EXIT_FAILED;
    } else {
        status = res.interrupted ? EXIT_INTERRUPTED : EXIT_DONE;
        if (opt.save_path) {
            int saved = save_weights(trainer, &model, opt.save_path);
            if (saved != EXIT_DONE)
                status = saved;
        }
    }
    /* The metrics of a run that ran, failed or not, are a complete record: keep them. */
    if (metrics.f && dp_atomic_commit(&metrics, &err) < 0) {
        fprintf(stderr, "dpmptop: --metrics %s; the previous file, if any, is unchanged\n",
                err.msg);
        status = EXIT_FAILED;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        perror("dpmptop: writing the progress output");
        status = EXIT_FAILED;
    }
done:
    dp_atomic_abort(&metrics);
    dp_atomic_abort(&save_held);
    dp_trainer_destroy(trainer);
    free(init);
    free(ckpt.params);
    free(ckpt.state);
    free(ckpt.config_text);
    dp_model_free(&model);
    dp_dataset_free(&train);
    dp_dataset_free(&test);
    free(opt.overrides);
    return status;
usage_error:
    fprintf(stderr, "dpmptop: %s\n", err.msg);
    free(opt.overrides);
    return EXIT_USAGE;
}

/* Joins the processes of the run when a launcher started it (mpirun, srun). The ranks other
 * than 0 print nothing but errors; a failure in one process ends them all. */
int main(int argc, char **argv)
{
    dp_err err;
    catch_signals(); /* before joining the processes, which takes a while */
    if (dp_world_init(&argc, &argv, &err) < 0) {
        fprintf(stderr, "dpmptop: %s\n", err.msg);
        return EXIT_FAILED;
    }
    if (dp_world_rank() > 0 && !freopen("/dev/null", "w", stdout))
        perror("dpmptop: /dev/null");
    dp_world_on_abort(dp_dashboard_restore_terminal);
    int status = run(argc, argv);
    if (status != EXIT_DONE && status != EXIT_INTERRUPTED && dp_world_size() > 1) {
        fflush(NULL);
        dp_world_abort(status);
    }
    dp_world_finalize();
    return status;
}
