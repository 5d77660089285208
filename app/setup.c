/* setup.c -- building a run: each phase checks what it makes and says why it refuses. */
#include "app/setup.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/advise.h"
#include "app/gan.h"
#include "app/paths.h"
#include "base/rng.h"
#include "dpmptop-config.h"
#include "engine/backend_cpu.h"
#include "engine/devices.h"
#include "engine/gan.h"
#include "engine/peak.h"
#include "engine/safetensors.h"
#include "engine/world.h"

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
                          long samples, dp_switch_at *sw, int max)
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
        if (dp_plan_make(&plan, &req, devices, m, c->data.batch, NULL, &err) < 0 ||
            dp_plan_check_batch_norm(&plan, m, c->data.batch, samples, &err) < 0) {
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

/* Two CPU virtual devices: what auto means without a usable GPU. */
static int two_cpu_devices(dp_device_spec *specs)
{
    specs[0] = specs[1] = (dp_device_spec){ .cuda = false };
    return 2;
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
    if (!dp_backend_cuda.built) /* no GPU to look for; config.c refused cuda:N */
        return n > 0 ? n : two_cpu_devices(specs);
    int gpus = dp_backend_cuda.device_count(&err);
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
            fprintf(stderr, "dpmptop: no usable GPU (%s); using 2 CPU devices\n",
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
    return n > 0 ? n : two_cpu_devices(specs);
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

/* In a world of several processes: the same configuration, --switch-at and data in every
 * process (a process training with another learning rate, model, plan or data file would make
 * the run silently wrong, or wait forever for the others). Where files are (data.path,
 * checkpoint.dir) and which devices may differ. */
static int check_same_run(const dp_config *c, const char *switch_at, const dp_dataset *train,
                          const dp_dataset *test)
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
    h = dp_fnv1a(h, switch_at ? switch_at : "", switch_at ? strlen(switch_at) : 0);
    if (!dp_world_agree((long)h)) {
        fprintf(stderr, "dpmptop: rank %d of %d: the processes have different configurations "
                        "or data (beyond devices and file places; compare their "
                        "--print-config, --switch-at and data files); give every process the "
                        "same -c file, options and data\n",
                dp_world_rank(), dp_world_size());
        return -1;
    }
    return 0;
}

/* dp_run_loop_opts.write_checkpoint */
static int write_checkpoint(void *arg, dp_trainer *t, char *path, size_t size, dp_err *err)
{
    dp_checkpointer *c = arg;
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

/* Writes weights host[n_params] to --save (a GAN's to a directory); returns the exit status. */
static int save_weights_of(const dp_run *r, const float *host, const char *path)
{
    dp_err err;
    int rc = r->gan ? dp_gan_save(path, &r->gen, &r->disc, host, &err)
                    : dp_safetensors_save(path, &r->model, host, &err);
    if (rc < 0) {
        fprintf(stderr, "dpmptop: --save %s; the previous file, if any, is unchanged\n",
                err.msg);
        return EXIT_FAILED;
    }
    printf("saved %s\n", path);
    return EXIT_DONE;
}

/* Writes the trained weights to --save; returns the exit status. */
static int save_weights(const dp_run *r, dp_trainer *t, const char *path)
{
    float *host = malloc(r->model.n_params * sizeof *host);
    if (!host) {
        fprintf(stderr, "dpmptop: --save %s: out of memory\n", path);
        return EXIT_FAILED;
    }
    dp_trainer_get_params(t, host);
    int rc = save_weights_of(r, host, path);
    free(host);
    return rc;
}

int dp_run_configure(dp_run *r, const dp_options *opt)
{
    dp_config *cfg = &r->cfg;
    dp_err err;
    dp_config_defaults(cfg);
    r->demo = opt->config_path == NULL;
    if (dp_config_load(cfg, opt->config_path, dp_demo_ini, "demo.ini (built in)", &err) < 0)
        goto usage_error;
    for (int i = 0; i < opt->n_overrides; i++)
        if (dp_config_set(cfg, opt->overrides[i].assignment, opt->overrides[i].label, &err) < 0)
            goto usage_error;
    if (opt->print_config) {
        dp_config_print(cfg, stdout);
        if (fflush(stdout) != 0 || ferror(stdout)) {
            perror("dpmptop: --print-config: writing the configuration");
            return EXIT_FAILED;
        }
        return EXIT_DONE;
    }
    if (dp_config_check(cfg, &err) < 0)
        goto usage_error;
    return DP_RUN_READY;
usage_error:
    fprintf(stderr, "dpmptop: %s\n", err.msg);
    return EXIT_USAGE;
}

/* Outputs and the checkpoint directory, before any work. Metrics go to a temporary file that
 * replaces --metrics's file when the run ends. */
static int open_outputs(dp_run *r, const dp_options *opt)
{
    const dp_config *cfg = &r->cfg;
    dp_err err;
    if (dp_run_id_new(r->ckpt.run, &err) < 0) {
        fprintf(stderr, "dpmptop: %s\n", err.msg);
        return EXIT_FAILED;
    }
    bool gan = dp_objectives[cfg->objective] == &dp_objective_gan;
    if (gan && opt->save_path && dp_gan_check_save(opt->save_path, &err) < 0) {
        fprintf(stderr, "dpmptop: %s\n", err.msg);
        return EXIT_USAGE;
    }
    if (gan && cfg->gan_samples[0] && dp_world_rank() == 0 && !opt->generate &&
        dp_gan_make_dir("[gan] samples", cfg->gan_samples, &err) < 0) {
        fprintf(stderr, "dpmptop: %s\n", err.msg);
        return EXIT_USAGE;
    }
    if (dp_check_distinct_paths(opt, cfg) < 0 ||
        (opt->save_path && !gan &&
         dp_check_output_path("--save", opt->save_path, &r->save_held) < 0) ||
        (opt->metrics_path &&
         dp_check_output_path("--metrics", opt->metrics_path, &r->metrics) < 0))
        return EXIT_USAGE;
    if (opt->metrics_path && !r->metrics.f &&
        dp_atomic_open(&r->metrics, opt->metrics_path, &err) < 0) {
        fprintf(stderr, "dpmptop: --metrics %s\n", err.msg);
        return EXIT_USAGE;
    }
    if (cfg->checkpoint_dir[0] && dp_world_rank() == 0 && !opt->resume && /* else once resumed */
        dp_checkpoint_prepare(cfg->checkpoint_dir, NULL, -1, &err) < 0) {
        fprintf(stderr, "dpmptop: %s\n", err.msg);
        return EXIT_USAGE;
    }
    return DP_RUN_READY;
}

/* A GAN's models from [model] generator, discriminator and latent, on the data's images; and
 * the classifier of the quality figures, when [gan] names one. */
static int make_gan(dp_run *r)
{
    const dp_config *cfg = &r->cfg;
    dp_shape latent;
    dp_err err;
    r->gan = true;
    char where[128];
    if (dp_gan_latent_shape(cfg->latent, &latent, &err) < 0) {
        origin_prefix(where, sizeof where, cfg, "model", "latent");
        fprintf(stderr, "dpmptop: %s%s\n", where, err.msg);
        return EXIT_USAGE;
    }
    if (dp_model_parse_gan(&r->model, &r->gen, &r->disc, cfg->generator, cfg->discriminator,
                           latent, dp_dataset_shape(&r->train), &err) < 0) {
        origin_prefix(where, sizeof where, cfg, "model",
                      strstr(err.msg, "[model] discriminator") ? "discriminator" : "generator");
        fprintf(stderr, "dpmptop: %s%s\n", where, err.msg);
        return EXIT_USAGE;
    }
    if (!cfg->classifier[0])
        return DP_RUN_READY;
    if (dp_model_parse_shape(&r->classifier, cfg->classifier_layers,
                             dp_dataset_shape(&r->train), r->train.classes, &err) < 0 ||
        !(r->classifier_params = malloc(r->classifier.n_params * sizeof(float))) ||
        dp_safetensors_load(cfg->classifier, &r->classifier, r->classifier_params, &err) < 0) {
        dp_gan_name_key(&err, "[gan] classifier_layers");
        fprintf(stderr, "dpmptop: [gan] classifier %s: %s\n", cfg->classifier,
                r->classifier.layers && !r->classifier_params ? "out of memory" : err.msg);
        return EXIT_USAGE;
    }
    if (r->classifier.n_layers < 2) {
        fprintf(stderr, "dpmptop: [gan] classifier_layers: the features are the input of the "
                        "last layer, so the classifier needs at least two layers\n");
        return EXIT_USAGE;
    }
    return DP_RUN_READY;
}

/* [data] range = -1:1: images scaled from [0, 1] to [-1, 1], for a tanh generator. */
static void scale_images(dp_dataset *d)
{
    for (size_t i = 0; i < (size_t)d->n * d->features; i++)
        d->x[i] = 2.0f * d->x[i] - 1.0f;
}

/* The model from [model] layers, checked against the data's shape, labels and targets. */
static int make_model(dp_run *r)
{
    if (r->cfg.data_range == 1) {
        scale_images(&r->train);
        scale_images(&r->test);
    }
    if (dp_objectives[r->cfg.objective] == &dp_objective_gan)
        return make_gan(r);
    const dp_config *cfg = &r->cfg;
    const dp_dataset *train = &r->train;
    dp_model *model = &r->model;
    dp_err err;
    char where[128];
    origin_prefix(where, sizeof where, cfg, "model", "layers");
    bool mlm = dp_objectives[cfg->objective] == &dp_objective_mlm;
    int ids = cfg->data.kind == DP_DATA_TEXT ? train->classes : 0; /* bytes, as their labels */
    if (dp_model_parse_shape(model, cfg->layers, dp_dataset_shape(train), train->classes,
                             &err) < 0) {
        fprintf(stderr, "dpmptop: %s[model] layers: %s\n", where, err.msg);
        return EXIT_USAGE;
    }
    if (dp_model_check_ids(model, mlm ? ids + 1 : ids, &err) < 0) {
        fprintf(stderr, "dpmptop: %s[model] layers: %s%s\n", where, err.msg,
                mlm ? " (objective = mlm adds the mask token, id 256)" : "");
        return EXIT_USAGE;
    }
    if (!mlm && ids && dp_model_has(model, &dp_layer_mha)) {
        fprintf(stderr, "dpmptop: %s[model] layers: enc and mha attend both ways, so on text "
                        "with objective = classify (next-byte prediction) each position would "
                        "see the byte it predicts; set [model] objective = mlm, or use block "
                        "(causal)\n", where);
        return EXIT_USAGE;
    }
    if (mlm) { /* a masked language model predicts its own input bytes */
        dp_text_own_targets(&r->train);
        dp_text_own_targets(&r->test);
        if (!dp_mlm_chosen(&(dp_step_key){ 0, 0, 0 }, r->test.n, r->test.targets)) {
            fprintf(stderr, "dpmptop: %s: the test split's %ld samples of %d bytes hold no "
                            "masked byte to evaluate (each is masked with probability 0.15); "
                            "use a longer text or a longer [data] context\n",
                    cfg->data.path, r->test.n, r->test.targets);
            return EXIT_USAGE;
        }
    }
    model->objective = dp_objectives[cfg->objective]; /* [model] objective */
    if (model->targets != train->targets) {
        if (train->targets > 1)
            fprintf(stderr, "dpmptop: %s[model] layers: text needs a prediction for each of "
                            "its %d positions, but the model gives %d; start the list with "
                            "embed:256:WIDTH, as in examples/tiny-gpt.ini\n",
                    where, train->targets, model->targets);
        else
            fprintf(stderr, "dpmptop: %s[model] layers: the model gives %d predictions per "
                            "sample but %s has one label per sample; end the list with "
                            "flatten, linear:%d\n",
                    where, model->targets, train->name, train->classes);
        return EXIT_USAGE;
    }
    return DP_RUN_READY;
}

/* The run's identity, and the host copies of the parameters and optimizer state that
 * checkpoints (and a resume) go through. */
static int alloc_checkpoint_copies(dp_run *r)
{
    const dp_config *cfg = &r->cfg;
    const dp_model *model = &r->model;
    size_t state_floats = model->n_params * dp_optim_state_per_param(&cfg->optim);
    char layers[sizeof cfg->generator + sizeof cfg->discriminator + 8];
    snprintf(layers, sizeof layers, "%s", cfg->layers);
    if (r->gan)
        snprintf(layers, sizeof layers, "G: %s; D: %s", cfg->generator, cfg->discriminator);
    r->identity = dp_run_identity_of(layers, model, r->train.name, r->train.n,
                                     cfg->data.batch, &cfg->optim, cfg->seed);
    r->ckpt.params = malloc(model->n_params * sizeof(float));
    r->ckpt.state = malloc(state_floats * sizeof(float) + 1);
    if (!r->ckpt.params || !r->ckpt.state) {
        fprintf(stderr, "dpmptop: out of host memory for a copy of the model's %zu parameters "
                        "and optimizer state (%zu bytes); use a smaller model\n",
                model->n_params, (model->n_params + state_floats) * sizeof(float));
        return EXIT_FAILED;
    }
    return DP_RUN_READY;
}

/* --resume: reads the newest complete checkpoint in dir (or dir itself) into r->init, the
 * optimizer state and r->resumed; its path into path[4200]. */
static int read_checkpoint(dp_run *r, const dp_options *opt, const char *dir, char *path)
{
    dp_err err;
    if (!dir[0] || opt->init_path) {
        fprintf(stderr, "dpmptop: --resume %s\n",
                opt->init_path ? "and --init cannot go together: a checkpoint holds the "
                                 "parameters"
                               : "needs a directory: --resume DIR, or [checkpoint] dir "
                                 "(--checkpoint-dir DIR)");
        return EXIT_USAGE;
    }
    char notes[2048];
    r->init = malloc(r->model.n_params * sizeof *r->init);
    int found = r->init ? dp_checkpoint_find(dir, path, 4200, notes, sizeof notes, &err)
                        : dp_fail(&err, "out of memory");
    fputs(found == 0 ? notes : "", stderr); /* damaged checkpoints passed over */
    if (found < 0 || dp_checkpoint_read(path, &r->model, &r->cfg.optim, &r->identity, r->init,
                                        r->ckpt.state, &r->resumed, &err) < 0) {
        fprintf(stderr, "%sdpmptop: %s%s\n", found < 0 ? notes : "", err.msg,
                found == 0 && strcmp(path, dir) ? "; it is the newest checkpoint there: to "
                                                  "resume an earlier one, give its "
                                                  "directory (--resume DIR/step-N)"
                                                : "");
        return EXIT_USAGE;
    }
    return DP_RUN_READY;
}

/* --resume: the checkpoint, the run it continues, and whether any step is left to train (if
 * none, --save gets the checkpoint's weights). */
static int resume(dp_run *r, const dp_options *opt)
{
    const dp_config *cfg = &r->cfg;
    const char *dir = opt->resume_dir ? opt->resume_dir : cfg->checkpoint_dir;
    char path[4200];
    dp_err err;
    int status = read_checkpoint(r, opt, dir, path);
    if (status != DP_RUN_READY)
        return status;
    printf("resuming from %s (step %ld, %s)\n", path, r->resumed.step,
           strcmp(path, dir) ? "the newest complete checkpoint there" : "as given");
    if (r->resumed.run[0]) /* the same run: it owns its predecessor's checkpoints */
        snprintf(r->ckpt.run, sizeof r->ckpt.run, "%s", r->resumed.run);
    else
        printf("  (written before run ids: continued as run %s)\n", r->ckpt.run);
    if (!cfg->checkpoint_dir[0])
        printf("  (checkpoints are off: add --checkpoint-dir DIR to write more)\n");
    else if (dp_world_rank() == 0 &&
             dp_checkpoint_prepare(cfg->checkpoint_dir, r->ckpt.run, r->resumed.step, &err) < 0) {
        fprintf(stderr, "dpmptop: %s\n", err.msg);
        return EXIT_USAGE;
    }
    long per_epoch = (r->train.n + cfg->data.batch - 1) / cfg->data.batch;
    long end = cfg->steps > 0 ? cfg->steps : cfg->epochs * per_epoch;
    if (r->resumed.step >= end && !opt->generate && !opt->fill) {
        fprintf(stderr, "dpmptop: %s is at step %ld, and this run ends at step %ld "
                        "(run.steps or run.epochs): nothing to train; to train further, "
                        "resume with more --steps or --epochs\n",
                path, r->resumed.step, end);
        return opt->save_path ? save_weights_of(r, r->init, opt->save_path) : EXIT_DONE;
    }
    return DP_RUN_READY;
}

/* --init: the starting parameters from a safetensors file (a GAN's: a directory of two). */
static int load_init(dp_run *r, const char *init_path, bool generating)
{
    dp_err err;
    r->init = malloc(r->model.n_params * sizeof *r->init);
    if (r->init && r->gan) /* --generate reads the generator only: D as initialised */
        dp_model_init_params(&r->model, r->init, r->cfg.seed);
    int rc = !r->init ? dp_fail(&err, "out of memory")
             : r->gan ? dp_gan_load(init_path, &r->gen, &r->disc, r->init, generating, &err)
                      : dp_safetensors_load(init_path, &r->model, r->init, &err);
    if (rc < 0) {
        if (r->gan)
            fprintf(stderr, "dpmptop: --init %s: %s\n", init_path, err.msg);
        else
            fprintf(stderr, "dpmptop: --init %s\n", err.msg);
        return EXIT_USAGE;
    }
    return DP_RUN_READY;
}

/* [model] init = dcgan: the starting parameters drawn as DCGAN's weights_init draws them. */
static int init_dcgan(dp_run *r)
{
    if (!(r->init = malloc(r->model.n_params * sizeof *r->init))) {
        fprintf(stderr, "dpmptop: out of memory for the model's parameters\n");
        return EXIT_FAILED;
    }
    dp_model_init_params(&r->model, r->init, r->cfg.seed);
    dp_gan_init_dcgan(&r->model, r->init, r->cfg.seed);
    return DP_RUN_READY;
}

/* The devices, and under mpirun the same devices, configuration and data in every process. */
static int devices_and_agreement(dp_run *r, const dp_options *opt)
{
    dp_device_spec *specs = r->specs;
    int n_devices = resolve_devices(&r->cfg, specs);
    if (n_devices < 0)
        return -n_devices;
    r->n_devices = n_devices;
    if (check_world(specs, n_devices) < 0 || check_same_run(&r->cfg, opt->switch_at, &r->train, &r->test) < 0)
        return EXIT_USAGE;
    return DP_RUN_READY;
}

/* --switch-at's plans, and the run's length in steps. */
static int plan_steps(dp_run *r, const dp_options *opt)
{
    const dp_config *cfg = &r->cfg;
    if (opt->switch_at && dp_config_auto(cfg)) {
        fprintf(stderr, "dpmptop: --switch-at and strategy = auto both choose the plan: use "
                        "one of them\n");
        return EXIT_USAGE;
    }
    if (opt->switch_at &&
        (r->n_switches = parse_switches(opt->switch_at, cfg, &r->model, r->n_devices,
                                        r->train.n, r->switches, DP_MAX_SWITCHES)) < 0)
        return EXIT_USAGE;
    long per_epoch = (r->train.n + cfg->data.batch - 1) / cfg->data.batch;
    long total = cfg->steps > 0 ? cfg->steps : cfg->epochs * per_epoch;
    if (total > DP_MAX_STEPS) { /* what a checkpoint can record */
        fprintf(stderr, "dpmptop: run.epochs = %ld of %ld steps is %ld steps, more than the "
                        "%ld a run may have; lower run.epochs\n",
                cfg->epochs, per_epoch, total, DP_MAX_STEPS);
        return EXIT_USAGE;
    }
    r->per_epoch = per_epoch;
    r->total = total;
    return DP_RUN_READY;
}

/* Gives the CPU devices the machine's SGEMM rate (per core: a device's peak is that times its
 * threads), from the cache, or measured once and cached. */
static void set_cpu_peaks(dp_run *r)
{
    dp_device *d = dp_device_set_devices(r->devices);
    int n = dp_device_set_count(r->devices), cores = dp_cpu_cores();
    bool any = false;
    for (int i = 0; i < n; i++)
        any |= d[i].be == &dp_backend_cpu;
    if (!any)
        return;
    char dir[4096], key[256];
    bool measured;
    dp_peak_cpu_key(key, sizeof key, cores);
    r->cpu_peak = dp_peak_cpu_flops(dp_peak_cache_dir(dir, sizeof dir) == 0 ? dir : NULL, key,
                                    false, dp_cpu_measure_sgemm, &measured);
    for (int i = 0; i < n; i++)
        if (d[i].be == &dp_backend_cpu)
            d[i].peak_flops = r->cpu_peak / cores;
}

/* Caches the CPU peak again when a step ran faster than it (the workers raised their
 * devices'): the measurement was low, on a busy machine. After the trainers are gone. */
static void keep_raised_peak(dp_run *r)
{
    if (!r->devices || !(r->cpu_peak > 0))
        return;
    dp_device *d = dp_device_set_devices(r->devices);
    int n = dp_device_set_count(r->devices), cores = dp_cpu_cores();
    double best = r->cpu_peak;
    for (int i = 0; i < n; i++)
        if (d[i].be == &dp_backend_cpu && d[i].peak_flops * cores > best)
            best = d[i].peak_flops * cores;
    char dir[4096], key[256];
    dp_err ignored; /* the next run measures again, or keeps the lower figure: no harm */
    dp_peak_cpu_key(key, sizeof key, cores);
    if (best > r->cpu_peak * 1.001 && dp_peak_cache_dir(dir, sizeof dir) == 0)
        dp_peak_cache_store(dir, key, best, &ignored);
}

/* [parallel] device_memory: each CPU device may hold at most that much; refused with GPUs. */
static int limit_device_memory(dp_run *r)
{
    size_t limit;
    dp_err err;
    if (dp_config_device_memory(&r->cfg, &limit, &err) < 0) { /* checked with the config */
        fprintf(stderr, "dpmptop: %s\n", err.msg);
        return EXIT_USAGE;
    }
    dp_device *d = dp_device_set_devices(r->devices);
    for (int i = 0; limit && i < r->n_devices; i++) {
        if (d[i].be != &dp_backend_cpu) {
            fprintf(stderr, "dpmptop: [parallel] device_memory limits CPU devices only (%s is "
                            "a GPU, with memory of its own): remove it, or use devices = "
                            "cpu:N\n", d[i].name);
            return EXIT_USAGE;
        }
        dp_device_limit_memory(&d[i], limit);
    }
    return DP_RUN_READY;
}

/* strategy = auto: the plan to start with, before the advisor measures (single when it
 * fits the devices' memory, else the smallest); a model no plan fits is refused here, with
 * every plan's need. */
static int first_auto_plan(dp_run *r, dp_plan_request *req)
{
    dp_advice_table tab = { .c = calloc(DP_ADVICE_MAX, sizeof *tab.c) };
    if (!tab.c) {
        fprintf(stderr, "dpmptop: out of memory\n");
        return EXIT_FAILED;
    }
    dp_advise_static s = { &r->model, &r->cfg.optim, r->cfg.data.batch,
                           dp_device_set_devices(r->devices), r->n_devices };
    dp_err err;
    int status = DP_RUN_READY, first = -1;
    if (dp_advise_candidates(&tab, &r->model, r->cfg.data.batch, r->cfg.auto_bn_micro,
                             dp_device_set_devices(r->devices), r->n_devices,
                             dp_advise_predict_static, &s, NULL, &err) < 0 ||
        (first = dp_advise_first_plan(&tab, &err)) < 0) {
        fprintf(stderr, "dpmptop: [parallel] strategy = auto: %s\n", err.msg);
        if (first < 0 && tab.n > 0) {
            snprintf(tab.outcome, sizeof tab.outcome, "no plan fits");
            dp_advise_print(stderr, &tab);
        }
        status = EXIT_USAGE;
    } else {
        *req = tab.c[first].req;
    }
    free(tab.c);
    return status;
}

/* The trainer on the run's devices, starting from r->init (or the seeded initialisation). */
static int make_trainer(dp_run *r, const dp_options *opt)
{
    const dp_config *cfg = &r->cfg;
    dp_device_spec *specs = r->specs;
    int n_devices = r->n_devices;
    dp_err err;
    dp_trainer_config tc = {
        .model = &r->model,
        .optim = cfg->optim,
        .batch = cfg->data.batch,
        .shuffle = cfg->data.shuffle,
        .seed = cfg->seed,
        .total_steps = r->total,
        .on_nan = (dp_on_nan)cfg->on_nan,
        .data_on_device = cfg->data_on_device,
        .balance_by_time = cfg->balance == 0,
        .plan = dp_config_plan(cfg),
        .bucket_mb = cfg->bucket_mb,
        .resume = opt->resume ? &r->resumed : NULL,
        .resume_state = opt->resume ? r->ckpt.state : NULL,
        .classifier = r->classifier_params ? &r->classifier : NULL,
        .classifier_params = r->classifier_params,
        .quality_samples = cfg->quality_samples,
        .range_lo = cfg->data_range == 1 ? -1.0f : 0.0f,
        .range_hi = 1.0f,
    };
    r->plan = tc.plan;
    /* A plan the devices cannot run is bad usage: said before any device is started. */
    dp_plan plan;
    if (dp_plan_make(&plan, &tc.plan, n_devices, &r->model, cfg->data.batch, NULL, &err) < 0 ||
        dp_plan_check_batch_norm(&plan, &r->model, cfg->data.batch, r->train.n, &err) < 0) {
        fprintf(stderr, "dpmptop: [parallel]: %s\n", err.msg);
        return EXIT_USAGE;
    }
    r->devices = dp_device_set_create(n_devices, specs, cfg->precision == DP_PRECISION_TF32,
                                      &err);
    if (!r->devices) {
        fprintf(stderr, "dpmptop: %s\n", err.msg);
        return EXIT_FAILED;
    }
    set_cpu_peaks(r);
    for (int i = 0; i < n_devices; i++) /* else a device whose backend lacks the library */
        dp_device_set_devices(r->devices)[i].own_kernels |= cfg->convolutions == DP_CONV_IM2COL;
    int status = limit_device_memory(r);
    if (status == DP_RUN_READY && dp_config_auto(cfg))
        status = first_auto_plan(r, &tc.plan);
    if (status != DP_RUN_READY)
        return status;
    r->plan = tc.plan;
    tc.devices = r->devices;
    bool plan_refused;
    r->trainer = dp_trainer_create(&tc, &r->train, &r->test, r->init, &plan_refused, &err);
    if (!r->trainer) {
        fprintf(stderr, "dpmptop: %s%s\n", plan_refused ? "[parallel]: " : "", err.msg);
        return plan_refused ? EXIT_USAGE : EXIT_FAILED;
    }
    return DP_RUN_READY;
}

int dp_run_create(dp_run *r, const dp_options *opt)
{
    int status = open_outputs(r, opt);
    if (status == DP_RUN_READY && load_data(&r->cfg, r->demo, &r->train, &r->test) < 0)
        status = EXIT_USAGE;
    if (status == DP_RUN_READY)
        status = make_model(r);
    if (status == DP_RUN_READY)
        status = alloc_checkpoint_copies(r);
    if (status == DP_RUN_READY && opt->resume)
        status = resume(r, opt);
    if (status == DP_RUN_READY && opt->init_path)
        status = load_init(r, opt->init_path, opt->generate > 0);
    else if (status == DP_RUN_READY && !opt->resume && r->cfg.init == 1)
        status = init_dcgan(r);
    if (status == DP_RUN_READY)
        status = devices_and_agreement(r, opt);
    if (status == DP_RUN_READY)
        status = plan_steps(r, opt);
    if (status == DP_RUN_READY)
        status = make_trainer(r, opt);
    return status;
}

int dp_run_arm_checkpoints(dp_run *r, dp_run_loop_opts *o)
{
    const dp_config *cfg = &r->cfg;
    dp_checkpointer *ckpt = &r->ckpt;
    if (!cfg->checkpoint_dir[0] || dp_world_rank() != 0) /* every process holds the same */
        return DP_RUN_READY;
    size_t text_size = 0;
    FILE *text = open_memstream(&ckpt->config_text, &text_size);
    if (!text) {
        fprintf(stderr, "dpmptop: out of memory\n");
        return EXIT_FAILED;
    }
    dp_config_print(cfg, text);
    fclose(text);
    ckpt->dir = cfg->checkpoint_dir;
    ckpt->keep = cfg->checkpoint_keep;
    ckpt->model = &r->model;
    ckpt->optim = &cfg->optim;
    ckpt->id = r->identity;
    o->write_checkpoint = write_checkpoint;
    o->checkpoint_arg = ckpt;
    o->checkpoint_every = cfg->checkpoint_every;
    return DP_RUN_READY;
}

int dp_run_save(dp_run *r, const char *path)
{
    return save_weights(r, r->trainer, path);
}

void dp_run_destroy(dp_run *r)
{
    dp_atomic_abort(&r->metrics);
    dp_atomic_abort(&r->save_held);
    dp_trainer_destroy(r->trainer);
    keep_raised_peak(r);
    dp_device_set_destroy(r->devices); /* after every trainer built on it */
    free(r->init);
    free(r->ckpt.params);
    free(r->ckpt.state);
    free(r->ckpt.config_text);
    dp_model_free(&r->model);
    dp_model_free(&r->gen);
    dp_model_free(&r->disc);
    dp_model_free(&r->classifier);
    free(r->classifier_params);
    dp_dataset_free(&r->train);
    dp_dataset_free(&r->test);
    memset(r, 0, sizeof *r);
}
