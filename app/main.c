/* main.c -- dpmptop: the command line, the configuration and the run built from them, then
 * training under the dashboard or headless, and what is kept at the end. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/cli.h"
#include "datasets/samples.h"
#include "app/gan.h"
#include "app/headless.h"
#include "app/paths.h"
#include "app/interactive.h"
#include "app/jsonl.h"
#include "app/run_loop.h"
#include "app/setup.h"
#include "app/textgen.h"
#include "base/fileio.h"
#include "dpmptop-config.h"
#include "engine/control.h"
#include "engine/monitor.h"
#include "engine/world.h"
#include "tui/dashboard.h"

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

/* What the run is about to do, on stdout before the first step. */
static void print_banner(const dp_run *r)
{
    const dp_config *c = &r->cfg;
    const dp_dataset *train = &r->train, *test = &r->test;
    dp_trainer *trainer = r->trainer;
    char desc[1100], plan_text[64];
    dp_model_describe(&r->model, desc, sizeof desc);
    if (r->gan) {
        char g[512], d[512];
        dp_model_describe(&r->gen, g, sizeof g);
        dp_model_describe(&r->disc, d, sizeof d);
        snprintf(desc, sizeof desc, "G: %s; D: %s", g, d);
    }
    dp_trainer_describe(trainer, plan_text, sizeof plan_text);
    int n_dev = dp_trainer_device_count(trainer);
    if (dp_world_size() > 1) /* the same devices and plan in every process */
        printf("dpmptop %s: %d processes (MPI), data parallel across them; in each:\n",
               PACKAGE_VERSION, dp_world_size());
    printf("dpmptop %s: run \"%s\" on %d device%s (%s%s%s), %s\n  data:  %s, %ld samples of %d "
           "features, %d classes; test %ld samples\n  model: %s (%zu parameters)\n  steps: %ld "
           "(%ld per epoch of batch %d)\n",
           PACKAGE_VERSION, c->name, n_dev, n_dev == 1 ? "" : "s",
           dp_trainer_device(trainer, 0)->name, n_dev > 1 ? ".." : "",
           n_dev > 1 ? dp_trainer_device(trainer, n_dev - 1)->name : "", plan_text, train->name,
           train->n, train->features, train->classes, test->n, desc,
           dp_model_trainable(&r->model), r->total, r->per_epoch, c->data.batch);
    char cut[160];
    if (dp_config_auto(c))
        printf("  plan:  auto: the plan advisor measures the plans from step %ld on and keeps "
               "the fastest\n", r->resumed.step + 1);
    else if (dp_plan_cut_reason(&r->plan, r->n_devices, &r->model, cut, sizeof cut))
        printf("  plan:  %s\n", cut);
    if (r->gan)
        printf("  gan:   G %zu parameters, D %zu; latent [%d%s]; images in [%s]; samples %s%s\n",
               dp_model_trainable(&r->gen), dp_model_trainable(&r->disc), r->gen.in_shape.d[0],
               r->gen.in_shape.ndim == 3 ? ", 1, 1" : "", c->data_range ? "-1, 1" : "0, 1",
               r->samples_dir[0] ? "to " : "not written (no [gan] samples)", r->samples_dir);
    char bn[64];
    dp_trainer_batch_stats(trainer, bn, sizeof bn);
    if (bn[0])
        printf("  bn:    batch normalisation over %s%s\n", bn,
               strncmp(bn, "the whole", 9) ? ", each on its own" : "");
    fflush(stdout);
}

/* Runs the loop under the dashboard (rank 0's terminal, tty under mpirun) or headless, with
 * the observers of that mode and --metrics's writer. */
static int run_loop_in_mode(dp_run *r, dp_run_loop_opts *o, bool dashboard, dp_monitor *monitor,
                            int tty, dp_run_result *res, dp_err *err)
{
    o->control = dp_control_create(r->total, (r->total + r->per_epoch - 1) / r->per_epoch);
    if (!o->control)
        return dp_fail(err, "out of memory");
    dp_headless_printer printer;
    if (!dashboard) {
        bool is_tty = isatty(STDOUT_FILENO) && dp_world_size() == 1; /* mpirun's pty: a log */
        dp_run_observe(o, dp_headless_observer(&printer, stdout, is_tty));
    }
    if (r->metrics.f)
        dp_run_observe(o, dp_jsonl_observer(r->metrics.f));
    dp_gan_samples_writer samples = { r->samples_dir, r->cfg.data_range ? -1.0f : 0.0f, 1.0f,
                                      dashboard ? NULL : stdout, o->control };
    if (r->gan && r->samples_dir[0])
        dp_run_observe(o, dp_gan_samples_observer(&samples));
    int rc;
    if (dashboard) {
        char desc[512];
        dp_model_describe(&r->model, desc, sizeof desc);
        const char *no_color = getenv("NO_COLOR");
        dp_dashboard_info info = {
            .version = PACKAGE_VERSION, .run_name = r->cfg.name, .data_name = r->train.name,
            .samples = r->train.n, .model = desc, .params = dp_model_trainable(&r->model),
            .refresh_ms = (int)r->cfg.refresh_ms,
            .color = r->cfg.color && !(no_color && no_color[0]),
            .monitor = monitor, .tty = tty, .max_stages = dp_plan_max_stages(&r->model),
            .range_lo = r->cfg.data_range ? -1.0f : 0.0f, .range_hi = 1.0f,
            .masked = r->model.objective == &dp_objective_mlm,
        };
        rc = dp_run_with_dashboard(r->trainer, o, &info, res, err);
        if (tty >= 0)
            close(tty);
    } else {
        rc = dp_run_loop(r->trainer, o, res, err);
    }
    dp_control_destroy(o->control);
    return rc;
}

/* The exit status of a run that trained (run_rc: the loop's), after --save and --metrics
 * are written. */
static int keep_outputs(dp_run *r, const dp_options *opt, int run_rc, const dp_run_result *res,
                        const dp_err *run_err)
{
    int status;
    dp_err err;
    if (run_rc < 0) {
        fprintf(stderr, "dpmptop: %s\n", run_err->msg);
        status = EXIT_FAILED;
    } else {
        status = res->interrupted ? EXIT_INTERRUPTED : EXIT_DONE;
        if (opt->save_path) {
            int saved = dp_run_save(r, opt->save_path);
            if (saved != EXIT_DONE)
                status = saved;
        }
    }
    /* The metrics of a run that ran, failed or not, are a complete record: keep them. */
    if (r->metrics.f && dp_atomic_commit(&r->metrics, &err) < 0) {
        fprintf(stderr, "dpmptop: --metrics %s; the previous file, if any, is unchanged\n",
                err.msg);
        status = EXIT_FAILED;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        perror("dpmptop: writing the progress output");
        status = EXIT_FAILED;
    }
    return status;
}

/* Trains the run built in r: the dashboard or headless, the monitor of the other processes'
 * devices, and what is kept at the end. Returns the exit status. */
static int train(dp_run *r, const dp_options *opt, int tty)
{
    dp_run_loop_opts o = {
        .total_steps = r->total,
        .eval_every = r->cfg.eval_every,
        .test_samples = r->test.n,
        .switches = r->switches,
        .n_switches = r->n_switches,
        .stop = &stop_requested,
        .watchdog_s = r->cfg.watchdog_s,
        .advise = dp_config_auto(&r->cfg),
        .advise_bn_micro_ok = r->cfg.auto_bn_micro,
        .advise_plans = (int)r->cfg.auto_plans,
    };
    int status = dp_run_arm_checkpoints(r, &o);
    if (status != DP_RUN_READY)
        return status;
    /* The dashboard: on a terminal, or under mpirun on rank 0 with the launcher's; every
     * process learns whether rank 0 shows one (the others then report their devices to it). */
    bool dashboard = !opt->headless && (tty >= 0 || (dp_world_size() == 1 &&
                                                       isatty(STDOUT_FILENO) &&
                                                       isatty(STDIN_FILENO)));
    /* Metrics written to the terminal the dashboard draws on would scribble over it. */
    bool metrics_on_screen = dashboard && r->metrics.f && isatty(fileno(r->metrics.f));
    bool refused = (dashboard && !dp_dashboard_terminal_usable()) || metrics_on_screen;
    int shown = refused ? -1 : dashboard;
    dp_world_broadcast(&shown, sizeof shown);
    if (shown < 0) {
        if (metrics_on_screen)
            fprintf(stderr, "dpmptop: --metrics %s: the terminal the dashboard draws on; write "
                            "the metrics to a file, or add --headless\n", r->metrics.path);
        if (tty >= 0)
            close(tty);
        return EXIT_USAGE;
    }
    dp_monitor *monitor;
    dp_err err;
    if (dp_monitor_start(r->trainer, shown, &monitor, &err) < 0) {
        fprintf(stderr, "dpmptop: %s\n", err.msg);
        if (tty >= 0)
            close(tty);
        return EXIT_FAILED;
    }
    dp_run_result res;
    int run_rc = run_loop_in_mode(r, &o, dashboard, monitor, tty, &res, &err);
    if (run_rc == 0 || dp_world_rank() == 0) /* a failed process ends the run instead */
        dp_monitor_stop(monitor);
    if (run_rc < 0 && dp_world_size() > 1) { /* the others may wait for this one forever */
        fprintf(stderr, "dpmptop: rank %d: %s\n", dp_world_rank(), err.msg);
        fflush(NULL);
        dp_world_abort(EXIT_FAILED);
    }
    return keep_outputs(r, opt, run_rc, &res, &err);
}

/* Rank 0's dashboard under mpirun draws on mpirun's terminal; what it prints goes there too,
 * straight, so that it comes before and after the dashboard, not over it later. Returns the
 * terminal's descriptor, or -1. */
static int take_launcher_terminal(const dp_options *opt)
{
    int tty = -1;
    if (!opt->headless && dp_world_size() > 1 && (tty = launcher_terminal()) >= 0) {
        fflush(stdout);
        dup2(tty, STDOUT_FILENO);
    }
    return tty;
}

/* The uses of a trained model (--generate, --fill) need its weights: --init or --resume. */
static int check_weights(const dp_options *opt, const char *use, const char *init)
{
    if (opt->init_path || opt->resume)
        return DP_RUN_READY;
    fprintf(stderr, "dpmptop: %s needs trained weights: --init %s (what --save %s wrote) or "
                    "--resume [DIR] (a checkpoint)\n",
            use, init, init);
    return EXIT_USAGE;
}

/* --generate's refusals that need no work: a model that generates nothing, options of another
 * kind of model's, no weights. */
static int check_generate(const dp_run *r, const dp_options *opt)
{
    bool sampling = opt->prompt || opt->temperature > 0 || opt->top_k >= 0;
    switch (dp_model_use_of(&r->cfg)) {
    case DP_USE_CAUSAL_LM:
        if (opt->output_path) {
            fputs("dpmptop: --output is where a GAN's --generate writes its images; a language "
                  "model's text goes to standard output: leave --output out (and redirect "
                  "the output)\n",
                  stderr);
            return EXIT_USAGE;
        }
        return check_weights(opt, "--generate", "FILE");
    case DP_USE_MASKED_LM:
        fputs("dpmptop: --generate continues a causal language model's text; this "
              "configuration's model is a masked one ([model] objective = mlm), which guesses "
              "hidden bytes: use --fill TEXT, with _ for each byte to guess\n",
              stderr);
        return EXIT_USAGE;
    case DP_USE_CLASSIFIER:
        fputs("dpmptop: --generate makes the images of a GAN's generator ([model] objective = "
              "gan) or a language model's text ([data] kind = text, objective = classify); "
              "this configuration trains a classifier\n",
              stderr);
        return EXIT_USAGE;
    case DP_USE_GAN:
        break;
    }
    if (sampling) {
        fputs("dpmptop: --prompt, --temperature and --top-k are a language model's; this "
              "configuration is a GAN, whose --generate N --output FILE writes images\n",
              stderr);
        return EXIT_USAGE;
    }
    if (!opt->output_path) {
        fputs("dpmptop: --generate needs --output FILE: where the samples go\n", stderr);
        return EXIT_USAGE;
    }
    struct stat st;
    if (lstat(opt->output_path, &st) == 0 && !S_ISREG(st.st_mode)) {
        fprintf(stderr, "dpmptop: --output %s: %s; samples are written only to a file of "
                        "their own: give another path\n",
                opt->output_path, S_ISLNK(st.st_mode) ? "a symbolic link" : "not a regular file");
        return EXIT_USAGE;
    }
    char png[4200];
    dp_gan_png_path(opt->output_path, png, sizeof png);
    if (lstat(png, &st) == 0 && !S_ISREG(st.st_mode)) {
        fprintf(stderr, "dpmptop: --output %s: the PNG beside it, %s, is %s; give another "
                        "path\n",
                opt->output_path, png, S_ISLNK(st.st_mode) ? "a symbolic link" : "not a "
                                                                               "regular file");
        return EXIT_USAGE;
    }
    dp_atomic_file probe = { 0 }; /* a regular file's place: writable? (nothing is left) */
    if (dp_check_output_path("--output", opt->output_path, &probe) < 0)
        return EXIT_USAGE;
    return check_weights(opt, "--generate", "DIR");
}

/* --fill's refusals that need no work: a model other than a masked language model, a text
 * with nothing to fill or longer than the context, no weights. */
static int check_fill(const dp_run *r, const dp_options *opt)
{
    const char *kind = NULL;
    switch (dp_model_use_of(&r->cfg)) {
    case DP_USE_MASKED_LM: break;
    case DP_USE_CAUSAL_LM:
        kind = "a causal language model (objective = classify on text): for its text, use "
               "--generate N --prompt TEXT";
        break;
    case DP_USE_GAN: kind = "a GAN"; break;
    case DP_USE_CLASSIFIER: kind = "a classifier"; break;
    }
    if (kind) {
        fprintf(stderr, "dpmptop: --fill needs a masked language model ([model] objective = "
                        "mlm: an encoder, as in examples/tiny-bert.ini); this configuration "
                        "trains %s\n",
                kind);
        return EXIT_USAGE;
    }
    size_t len = strlen(opt->fill);
    if (!strchr(opt->fill, DP_FILL_MASK)) {
        fprintf(stderr, "dpmptop: --fill: no %c in the text; put %c where the model is to "
                        "guess a byte\n",
                DP_FILL_MASK, DP_FILL_MASK);
        return EXIT_USAGE;
    }
    if (len > (size_t)r->cfg.data.context) {
        fprintf(stderr, "dpmptop: --fill: the text has %zu bytes, more than the model's "
                        "context ([data] context = %d); shorten it\n",
                len, r->cfg.data.context);
        return EXIT_USAGE;
    }
    return check_weights(opt, "--fill", "FILE");
}

/* --generate N: the generator's samples of its own noise (kernels.h: DP_NOISE_GENERATE, the
 * run's seed), as FILE (IDX) and a PNG grid beside it (FILE with .png for .idx). */
static int generate(dp_run *r, const dp_options *opt)
{
    const dp_model *m = &r->model;
    size_t image = (size_t)m->layers[m->gan_split].in;
    dp_shape shape = m->layers[m->gan_split].in_shape;
    float *x = malloc((size_t)opt->generate * image * sizeof *x);
    if (!x) {
        fprintf(stderr, "dpmptop: --generate %ld: out of memory for %zu bytes of samples; ask "
                        "for fewer\n",
                opt->generate, (size_t)opt->generate * image * sizeof *x);
        return EXIT_FAILED;
    }
    printf("generating %ld samples with seed %llu\n", opt->generate,
           (unsigned long long)r->cfg.seed);
    dp_trainer_generate(r->trainer, DP_NOISE_GENERATE, 0, opt->generate, x);
    char png[4200];
    dp_gan_png_path(opt->output_path, png, sizeof png);
    int c = shape.ndim == 3 ? shape.d[0] : 1;
    int h = shape.ndim == 3 ? shape.d[1] : 1, w = shape.ndim == 3 ? shape.d[2] : shape.d[0];
    float lo = r->cfg.data_range ? -1.0f : 0.0f;
    int shown = opt->generate < 1024 ? (int)opt->generate : 1024;
    dp_err err;
    int status = EXIT_DONE;
    if (dp_world_rank() == 0 &&
        (dp_samples_write_idx(opt->output_path, x, (int)opt->generate, c, h, w, lo, 1.0f,
                              &err) < 0 ||
         dp_samples_write_png(png, x, shown, c, h, w, lo, 1.0f, 32, &err) < 0)) {
        fprintf(stderr, "dpmptop: --output %s\n", err.msg);
        status = EXIT_FAILED;
    } else {
        printf("wrote %s (%ld samples, IDX) and %s (%s%d)\n", opt->output_path, opt->generate,
               png, shown < opt->generate ? "the first " : "", shown);
    }
    free(x);
    return status;
}

/* Whether the run is a language model's --generate or --fill: text on standard output. */
static bool uses_language_model(const dp_run *r, const dp_options *opt)
{
    dp_model_use use = dp_model_use_of(&r->cfg);
    return (opt->generate && use == DP_USE_CAUSAL_LM) || (opt->fill && use == DP_USE_MASKED_LM);
}

/* Builds a language model's run for --generate or --fill: on one device (device 0 of the
 * run's), whatever [parallel] asks, since one sequence at a time gains nothing from more and
 * the text then depends on no plan; the setup's notes ("resuming from ...") go to stderr, so
 * that stdout holds the text alone. */
static int create_language_model(dp_run *r, const dp_options *opt)
{
    r->cfg.strategy = DP_STRATEGY_SINGLE;
    r->cfg.stages = 0;
    r->cfg.microbatches = 0;
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    if (saved >= 0)
        dup2(STDERR_FILENO, STDOUT_FILENO);
    int status = dp_run_create(r, opt);
    fflush(stdout);
    if (saved >= 0) {
        dup2(saved, STDOUT_FILENO);
        close(saved);
    }
    return status;
}

/* --generate N on a causal language model (its bytes after --prompt), or --fill TEXT on a
 * masked one, printed on stdout (app/textgen.h). */
static int use_language_model(dp_run *r, const dp_options *opt)
{
    dp_err err;
    int rc;
    if (opt->fill) {
        rc = dp_textgen_fill(r->trainer, &r->model, opt->fill, stdout, &err);
    } else {
        dp_textgen_opts o = {
            .prompt = opt->prompt, .n = opt->generate,
            .temperature = opt->temperature > 0 ? opt->temperature : 1.0,
            .top_k = opt->top_k > 0 ? opt->top_k : 0, .seed = r->cfg.seed,
            .stop = &stop_requested,
        };
        rc = dp_textgen_generate(r->trainer, &r->model, &o, stdout, &err);
        if (rc >= 0 && isatty(STDOUT_FILENO)) /* the shell's prompt on a line of its own */
            putchar('\n');
    }
    if (rc < 0) {
        fprintf(stderr, "dpmptop: %s\n", err.msg);
        return EXIT_FAILED;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        perror("dpmptop: writing the text");
        return EXIT_FAILED;
    }
    return rc > 0 ? EXIT_INTERRUPTED : EXIT_DONE;
}

/* A GAN's directory of samples for this run in [gan] samples (rank 0's), made once the run
 * is set up, so that a run refused before it leaves none. */
static int samples_dir(dp_run *r)
{
    dp_err err;
    if (!r->gan || !r->cfg.gan_samples[0] || dp_world_rank() != 0)
        return DP_RUN_READY;
    if (dp_gan_samples_prepare(r->cfg.gan_samples, r->samples_dir, sizeof r->samples_dir,
                               &err) < 0) {
        fprintf(stderr, "dpmptop: %s\n", err.msg);
        return EXIT_USAGE;
    }
    return DP_RUN_READY;
}

static int run(int argc, char **argv)
{
    dp_options opt = { 0 };
    int rc = dp_parse_args(argc, argv, &opt);
    if (rc != 0) {
        dp_options_free(&opt);
        return rc > 0 ? EXIT_DONE : EXIT_USAGE;
    }
    if (dp_world_rank() > 0) { /* only rank 0 reports and writes files */
        opt.headless = 1;
        opt.metrics_path = opt.save_path = NULL;
    }
    int tty = take_launcher_terminal(&opt);
    static dp_run r; /* large: keep it off the stack */
    int status = dp_run_configure(&r, &opt);
    if (status == DP_RUN_READY && opt.generate)
        status = check_generate(&r, &opt);
    if (status == DP_RUN_READY && opt.fill)
        status = check_fill(&r, &opt);
    bool text = status == DP_RUN_READY && uses_language_model(&r, &opt);
    if (status == DP_RUN_READY)
        status = text ? create_language_model(&r, &opt) : dp_run_create(&r, &opt);
    if (status == DP_RUN_READY && text) {
        status = use_language_model(&r, &opt);
    } else if (status == DP_RUN_READY && opt.generate) {
        status = generate(&r, &opt);
    } else if (status == DP_RUN_READY && (status = samples_dir(&r)) == DP_RUN_READY) {
        print_banner(&r);
        status = train(&r, &opt, tty);
    }
    dp_run_destroy(&r);
    dp_options_free(&opt);
    return status;
}

/* Joins the processes of the run when a launcher started it (mpirun, srun). The ranks other
 * than 0 print nothing but errors; a failure in one process ends them all. */
/* A closed standard descriptor would go to the first file opened (--metrics would get the
 * progress lines): each closed one is held open on /dev/null instead. */
static void hold_standard_descriptors(void)
{
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF)
            open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY); /* takes the lowest free: fd */
}

int main(int argc, char **argv)
{
    dp_err err;
    hold_standard_descriptors();
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
