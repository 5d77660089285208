/* cli.c -- the options, the help texts and the version. */
#include "app/cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpmptop-config.h"
#include "engine/backend.h"
#include "engine/backend_cpu.h"
#include "engine/layer.h"
#include "engine/peak.h"

enum long_only {
    OPT_STAGES = 256, OPT_MICRO, OPT_SCHEDULE, OPT_STEPS, OPT_EPOCHS, OPT_SWITCH_AT, OPT_METRICS,
    OPT_SAVE, OPT_INIT, OPT_CKPT_DIR, OPT_RESUME, OPT_PRINT_CONFIG, OPT_NO_COLOR,
    OPT_HELP_LAYERS, OPT_MEASURE_PEAK, OPT_GENERATE, OPT_OUTPUT, OPT_PROMPT, OPT_TEMPERATURE,
    OPT_TOP_K, OPT_FILL,
};

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
    { "generate", required_argument, NULL, OPT_GENERATE },
    { "output", required_argument, NULL, OPT_OUTPUT },
    { "prompt", required_argument, NULL, OPT_PROMPT },
    { "temperature", required_argument, NULL, OPT_TEMPERATURE },
    { "top-k", required_argument, NULL, OPT_TOP_K },
    { "fill", required_argument, NULL, OPT_FILL },
    { "help-layers", no_argument, NULL, OPT_HELP_LAYERS },
    { "measure-peak", no_argument, NULL, OPT_MEASURE_PEAK },
    { "no-color", no_argument, NULL, OPT_NO_COLOR },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
};

static void usage(FILE *out)
{
    fputs("Usage: dpmptop [OPTION]...\n"
          "Train a neural network on CPU or GPU devices and watch it.\n"
          "Without -c, runs the built-in demo (an MLP on Fashion-MNIST).\n"
          "\n"
          "  -c, --config FILE          read the run's configuration from an INI file\n"
          "  -s, --set SECTION.KEY=VALUE  override one key (repeatable)\n"
          "  -H, --headless             batch mode: progress lines, no dashboard (also when\n"
          "                             stdout or stdin is not a terminal)\n"
          "  -d, --devices LIST         auto | cpu:N | cuda:0,cuda:1,...\n"
          "  -S, --strategy NAME        single | dp | pp | hybrid | auto (find the fastest)\n"
          "      --stages N             pipeline stages\n"
          "      --microbatches N       micro-batches per replica in a step\n"
          "      --schedule NAME        gpipe | 1f1b\n"
          "      --steps N              train N steps\n"
          "      --epochs N             train N epochs\n"
          "      --switch-at STEP:STRATEGY[,...]  change strategy at those steps\n"
          "      --metrics FILE         write metrics as JSON Lines\n"
          "      --save FILE            save the final weights as safetensors (a GAN's: a\n"
          "                             directory of generator and discriminator files)\n"
          "      --init FILE            start from weights in a safetensors file (a GAN's:\n"
          "                             such a directory)\n"
          "      --checkpoint-dir DIR   write checkpoints into DIR\n"
          "      --resume [DIR]         continue from the newest checkpoint\n"
          "      --generate N           no training: N samples of the trained model (a GAN's\n"
          "                             images: an IDX file and a PNG grid) to --output; a\n"
          "                             language model's: N bytes after --prompt, to stdout\n"
          "      --output FILE          where --generate writes: FILE (IDX) and a PNG beside it\n"
          "                             (FILE with .png for .idx)\n"
          "      --prompt TEXT          the bytes a language model's --generate continues\n"
          "                             (default: a newline, not printed)\n"
          "      --temperature T        --generate divides the logits by T > 0 (default 1)\n"
          "      --top-k K              --generate draws from the K likeliest bytes only\n"
          "                             (default 0: from every byte)\n"
          "      --fill TEXT            no training: a masked language model's guess for each\n"
          "                             _ in TEXT, with its 5 likeliest bytes\n"
          "      --print-config         print the effective configuration and exit\n"
          "      --help-layers          describe every layer kind of [model] layers and exit\n"
          "      --measure-peak         measure this machine's SGEMM rate (the CPU devices'\n"
          "                             peak for MFU) again, cache it and exit\n"
          "      --no-color             a dashboard without colours (as NO_COLOR=1)\n"
          "  -h, --help                 show this help and exit\n"
          "  -V, --version              show the version and exit\n"
          "\n"
          "-c, --metrics, --save, --init, --checkpoint-dir, --resume, --output, --prompt\n"
          "and --fill may each be given once; of the others, the last one given wins (most\n"
          "override configuration keys, in order).\n"
          "\n"
          "Exit status: 0 done, 1 the run failed, 2 bad usage, configuration, input or\n"
          "output (checked before any work), 130 interrupted. See dpmptop(1) and README.md\n"
          "for the configuration keys.\n",
          out);
}

/* -V: the version, what this build can do, and the libraries each backend runs on. */
static void print_version(void)
{
    char libs[512];
    printf("dpmptop %s (%s", PACKAGE_VERSION,
           dp_backend_cuda.built ? "CPU and CUDA backends" : "CPU backend; built without CUDA");
#ifdef HAVE_MPI
    puts("; runs across processes with MPI)");
#else
    puts("; built without MPI)");
#endif
    dp_backend_cpu.versions(libs, sizeof libs);
    printf("CPU devices: %s\n", libs);
    if (dp_backend_cuda.built) {
        dp_backend_cuda.versions(libs, sizeof libs);
        printf("CUDA devices: %s\n", libs);
    }
}

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
        if (strlen(dp_layer_kinds[i]->usage) > 26) /* deconv's: the help on the next line */
            fprintf(f, "\n%28s", "");
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

static void add_override(dp_options *o, const char *label, const char *fmt, const char *value)
{
    dp_override *ov = &o->overrides[o->n_overrides++];
    ov->label = label;
    snprintf(ov->assignment, sizeof ov->assignment, fmt, value);
}

/* A value this long is no option's or key's, and every override below fits its buffer. */
enum { LONGEST_VALUE = 4096 };
_Static_assert(sizeof ((dp_override *)0)->assignment > LONGEST_VALUE + sizeof "parallel.microbatches=",
               "an override's buffer holds the longest value after its key");

/* Refuses an option's value longer than any option or key takes. */
static int check_length(int ch)
{
    if (!optarg || strlen(optarg) <= LONGEST_VALUE)
        return 0;
    const char *name = "";
    for (int i = 0; longs[i].name; i++)
        if (longs[i].val == ch)
            name = longs[i].name;
    fprintf(stderr, "dpmptop: --%s: a value of %zu characters; no option or key takes "
                    "more than %d\n",
            name, strlen(optarg), LONGEST_VALUE);
    return -1;
}

/* Options naming one file or directory: a second one is refused, not silently preferred, as
 * the first may be the one meant. */
static int check_once(int ch, const dp_options *o, const char *checkpoint_dir)
{
    const char *once_name = NULL, *const *once = NULL;
    switch (ch) {
    case 'c': once_name = "-c", once = &o->config_path; break;
    case OPT_SAVE: once_name = "--save", once = &o->save_path; break;
    case OPT_METRICS: once_name = "--metrics", once = &o->metrics_path; break;
    case OPT_INIT: once_name = "--init", once = &o->init_path; break;
    case OPT_OUTPUT: once_name = "--output", once = &o->output_path; break;
    case OPT_PROMPT: once_name = "--prompt", once = &o->prompt; break;
    case OPT_FILL: once_name = "--fill", once = &o->fill; break;
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
    return 0;
}

/* An option getopt did not accept: a missing value, or an unknown option. */
static int refuse_option(int ch, char **argv)
{
    if (ch == ':') {
        if (optopt && optopt < 256)
            fprintf(stderr, "dpmptop: -%c needs a value; see dpmptop --help\n", optopt);
        else
            fprintf(stderr, "dpmptop: %s needs a value; see dpmptop --help\n",
                    argv[optind - 1]);
        return -1;
    }
    if (optopt)
        fprintf(stderr, "dpmptop: unknown option -%c; see dpmptop --help\n", optopt);
    else
        fprintf(stderr, "dpmptop: unknown option %s; see dpmptop --help\n",
                argv[optind - 1]);
    return -1;
}

/* --measure-peak: the CPU's SGEMM rate on every core, measured and cached (engine/peak.h);
 * returns 1 (done), or -1 when it could not be measured. */
static int measure_peak(void)
{
    char dir[4096], key[256];
    int cores = dp_cpu_cores();
    bool measured, cached = dp_peak_cache_dir(dir, sizeof dir) == 0;
    dp_peak_cpu_key(key, sizeof key, cores);
    double rate = dp_peak_cpu_flops(cached ? dir : NULL, key, true, dp_cpu_measure_sgemm,
                                    &measured);
    if (rate <= 0) {
        fputs("dpmptop: --measure-peak: could not measure the SGEMM rate\n", stderr);
        return -1;
    }
    printf("SGEMM on %d core%s (%s): %.1f GFLOP/s; ", cores, cores == 1 ? "" : "s",
           strchr(key, ' ') + 1, rate / 1e9);
    double stored = cached ? dp_peak_cache_load(dir, key) : 0; /* written with 6 digits */
    if (stored > 0 && fabs(stored - rate) <= 1e-5 * rate)
        printf("cached in %s/cpu-peak\n", dir);
    else
        puts("not cached (no cache directory that can be written)");
    return 1;
}

/* Takes option ch (with optarg) into o; returns 0, 1 when done (help), -1 on bad usage. */
static int take_option(int ch, int argc, char **argv, dp_options *o, const char **checkpoint_dir)
{
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
        *checkpoint_dir = optarg;
        add_override(o, "--checkpoint-dir", "checkpoint.dir=%s", optarg);
        break;
    case OPT_NO_COLOR: add_override(o, "--no-color", "dashboard.color=%s", "false"); break;
    case OPT_METRICS: o->metrics_path = optarg; break;
    case OPT_SAVE: o->save_path = optarg; break;
    case OPT_INIT: o->init_path = optarg; break;
    case OPT_OUTPUT: o->output_path = optarg; break;
    case OPT_GENERATE: {
        char *end;
        errno = 0;
        long n = strtol(optarg, &end, 10);
        if (errno || end == optarg || *end || n < 1 || n > DP_MAX_GENERATE) {
            fprintf(stderr, "dpmptop: --generate %s: expected a count of samples (or bytes) "
                            "from 1 to %d\n",
                    optarg, DP_MAX_GENERATE);
            return -1;
        }
        o->generate = n;
        break;
    }
    case OPT_PROMPT: o->prompt = optarg; break;
    case OPT_FILL: o->fill = optarg; break;
    case OPT_TEMPERATURE: {
        char *end;
        errno = 0;
        double t = strtod(optarg, &end);
        if (errno || end == optarg || *end || !isfinite(t) || t <= 0) {
            fprintf(stderr, "dpmptop: --temperature %s: expected a number above 0 (1: the "
                            "model's own probabilities; for the likeliest byte each time, "
                            "--top-k 1)\n",
                    optarg);
            return -1;
        }
        o->temperature = t;
        break;
    }
    case OPT_TOP_K: {
        char *end;
        errno = 0;
        long k = strtol(optarg, &end, 10);
        if (errno || end == optarg || *end || k < 0 || k > 256) {
            fprintf(stderr, "dpmptop: --top-k %s: expected a count of bytes from 0 (every "
                            "byte) to 256\n",
                    optarg);
            return -1;
        }
        o->top_k = (int)k;
        break;
    }
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
    case OPT_MEASURE_PEAK:
        if (argc != 2) { /* it rewrites the cache: nothing else may ride along unchecked */
            fputs("dpmptop: --measure-peak takes no other options or arguments\n", stderr);
            return -1;
        }
        return measure_peak();
    case 'V': print_version(); return 1;
    default: return refuse_option(ch, argv);
    }
    return 0;
}

/* The options that go only with others, and those that exclude each other; -1 after saying
 * why. Which --generate needs --output (a GAN's) waits for the configuration (app/main.c). */
static int check_combinations(const dp_options *o)
{
    bool sampling = o->prompt || o->temperature > 0 || o->top_k >= 0;
    if (o->output_path && !o->generate) {
        fputs("dpmptop: --output names where --generate writes; give --generate N too\n",
              stderr);
        return -1;
    }
    if (sampling && !o->generate) {
        fputs("dpmptop: --prompt, --temperature and --top-k go with --generate N (a language "
              "model's bytes)\n",
              stderr);
        return -1;
    }
    if (o->fill && o->generate) {
        fputs("dpmptop: --fill and --generate are two uses of a trained model (a masked "
              "language model's, a generative one's): give one\n",
              stderr);
        return -1;
    }
    if ((o->generate || o->fill) && (o->save_path || o->switch_at || o->metrics_path)) {
        fprintf(stderr, "dpmptop: %s trains nothing: --save, --metrics and --switch-at do not "
                        "go with it\n",
                o->fill ? "--fill" : "--generate");
        return -1;
    }
    return 0;
}

int dp_parse_args(int argc, char **argv, dp_options *o)
{
    /* at most two overrides per argument (--epochs sets two keys) */
    o->overrides = calloc(2 * (size_t)argc + 1, sizeof *o->overrides);
    if (!o->overrides) {
        fputs("dpmptop: out of memory\n", stderr);
        return -1;
    }
    const char *checkpoint_dir = NULL;
    int ch;
    o->top_k = -1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":c:s:Hd:S:hV", longs, NULL)) != -1) {
        if (check_length(ch) < 0 || check_once(ch, o, checkpoint_dir) < 0)
            return -1;
        int rc = take_option(ch, argc, argv, o, &checkpoint_dir);
        if (rc != 0)
            return rc;
    }
    if (optind < argc) {
        fprintf(stderr, "dpmptop: unexpected argument \"%s\"; see dpmptop --help\n", argv[optind]);
        return -1;
    }
    return check_combinations(o);
}

void dp_options_free(dp_options *o)
{
    free(o->overrides);
    o->overrides = NULL;
}
