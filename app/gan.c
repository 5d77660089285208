/* gan.c -- a GAN run's files. */
#include "app/gan.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/samples.h"
#include "engine/safetensors.h"

int dp_gan_latent_shape(const char *text, dp_shape *out, dp_err *err)
{
    char *end;
    errno = 0;
    long z = isdigit((unsigned char)text[0]) ? strtol(text, &end, 10) : 0;
    bool size_ok = !errno && z >= 1 && z <= 65536;
    if (size_ok && !*end) {
        *out = (dp_shape){ 1, { (int)z } };
        return 0;
    }
    if (size_ok && !strcmp(end, ":1:1")) {
        *out = (dp_shape){ 3, { (int)z, 1, 1 } };
        return 0;
    }
    return dp_fail(err, "[model] latent = %s: expected Z (a vector of Z values) or Z:1:1 (as "
                        "DCGAN's generator takes it), Z from 1 to 65536",
                   text);
}

void dp_gan_png_path(const char *output, char *buf, size_t size)
{
    const char *dot = strrchr(output, '.');
    size_t stem = dot && !strcmp(dot, ".idx") ? (size_t)(dot - output) : strlen(output);
    snprintf(buf, size, "%.*s.png", (int)stem, output);
}

int dp_gan_make_dir(const char *option, const char *dir, dp_err *err)
{
    struct stat st;
    if (!dir[0] || strlen(dir) > 4000)
        return dp_fail(err, "%s \"%s\": %s", option, dir, dir[0] ? "path too long" : "empty");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return dp_fail(err, "%s %s: cannot make the directory: %s (its parent must exist and "
                            "be writable)",
                       option, dir, strerror(errno));
    if (lstat(dir, &st) != 0)
        return dp_fail(err, "%s %s: %s", option, dir, strerror(errno));
    if (S_ISLNK(st.st_mode))
        return dp_fail(err, "%s %s: a symbolic link; give the directory itself", option, dir);
    if (!S_ISDIR(st.st_mode))
        return dp_fail(err, "%s %s: not a directory; give a directory%s", option, dir,
                       strcmp(option, "--save") ? ""
                                                : " (a GAN's weights are two files in one)");
    return 0;
}


/* dir/name into buf, or a failure when it does not fit. */
static int join(char *buf, size_t size, const char *dir, const char *name, dp_err *err)
{
    if ((size_t)snprintf(buf, size, "%s/%s", dir, name) >= size)
        return dp_fail(err, "%s: path too long", dir);
    return 0;
}

int dp_gan_check_save(const char *dir, dp_err *err)
{
    const char *names[2] = { DP_GAN_GENERATOR_FILE, DP_GAN_DISCRIMINATOR_FILE };
    if (dp_gan_make_dir("--save", dir, err) < 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        char path[4200];
        struct stat st;
        if (join(path, sizeof path, dir, names[i], err) < 0)
            return -1;
        if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
            return dp_fail(err, "--save %s: %s is %s; the weights are written only to files of "
                                "their own: remove it or give another directory",
                           dir, names[i], S_ISLNK(st.st_mode) ? "a symbolic link" : "not a "
                                                                                 "regular file");
    }
    if (access(dir, W_OK | X_OK) != 0)
        return dp_fail(err, "--save %s: cannot write there: %s", dir, strerror(errno));
    return 0;
}

int dp_gan_save(const char *dir, const dp_model *gen, const dp_model *disc, const float *host,
                dp_err *err)
{
    char path[4200];
    if (dp_gan_make_dir("--save", dir, err) < 0 ||
        join(path, sizeof path, dir, DP_GAN_GENERATOR_FILE, err) < 0 ||
        dp_safetensors_save(path, gen, host, err) < 0 ||
        join(path, sizeof path, dir, DP_GAN_DISCRIMINATOR_FILE, err) < 0 ||
        dp_safetensors_save(path, disc, host + gen->n_params, err) < 0)
        return -1;
    return 0;
}

/* Whether path loads as `other`'s weights: the file of one model in the other's place. */
static bool holds_other(const char *path, const dp_model *other)
{
    float *scratch = malloc(other->n_params * sizeof *scratch);
    dp_err ignored;
    bool holds = scratch && dp_safetensors_load(path, other, scratch, &ignored) == 0;
    free(scratch);
    return holds;
}

void dp_gan_name_key(dp_err *err, const char *key)
{
    char *at = strstr(err->msg, "[model] layers");
    if (!at)
        return;
    char rest[sizeof err->msg];
    snprintf(rest, sizeof rest, "%s", at + strlen("[model] layers"));
    snprintf(at, sizeof err->msg - (size_t)(at - err->msg), "%s%s", key, rest);
}

/* Loads one of the two files; a file of the other model is named as such. */
static int load_part(const char *path, const char *what, const dp_model *m,
                     const dp_model *other, const char *other_what, float *host, dp_err *err)
{
    if (dp_safetensors_load(path, m, host, err) == 0)
        return 0;
    if (holds_other(path, other))
        return dp_fail(err, "%s holds a %s's weights (its tensors are those of [model] %s), "
                            "not the %s's; put each model's file under its own name",
                       path, other_what, other_what, what);
    char key[32];
    snprintf(key, sizeof key, "[model] %s", what);
    dp_gan_name_key(err, key);
    dp_err_prefix(err, "the %s: ", what);
    return -1;
}

int dp_gan_load(const char *dir, const dp_model *gen, const dp_model *disc, float *host,
                bool generator_only, dp_err *err)
{
    char path[4200];
    struct stat st;
    if (stat(dir, &st) == 0 && !S_ISDIR(st.st_mode))
        return dp_fail(err, "%s: not a directory; a GAN's weights are a directory holding %s "
                            "and %s (as --save DIR writes them)",
                       dir, DP_GAN_GENERATOR_FILE, DP_GAN_DISCRIMINATOR_FILE);
    if (join(path, sizeof path, dir, DP_GAN_GENERATOR_FILE, err) < 0 ||
        load_part(path, "generator", gen, disc, "discriminator", host, err) < 0)
        return -1;
    if (generator_only)
        return 0;
    if (join(path, sizeof path, dir, DP_GAN_DISCRIMINATOR_FILE, err) < 0 ||
        load_part(path, "discriminator", disc, gen, "generator", host + gen->n_params, err) < 0)
        return -1;
    return 0;
}

int dp_gan_samples_prepare(const char *dir, char *run_dir, size_t size, dp_err *err)
{
    if (dp_gan_make_dir("[gan] samples", dir, err) < 0)
        return -1;
    for (int n = 1; n <= 100000; n++) { /* the first number no run has taken */
        if ((size_t)snprintf(run_dir, size, "%s/run-%d", dir, n) >= size)
            return dp_fail(err, "[gan] samples %s: path too long", dir);
        if (mkdir(run_dir, 0755) == 0)
            return 0;
        if (errno != EEXIST)
            return dp_fail(err, "[gan] samples %s: cannot make %s: %s", dir, run_dir,
                           strerror(errno));
    }
    return dp_fail(err, "[gan] samples %s: run-1 to run-100000 are all taken; give another "
                        "directory",
                   dir);
}

int dp_gan_samples_write(const char *dir, long step, const float *x, int n, dp_shape image,
                         float lo, float hi, char *png_path, size_t size, dp_err *err)
{
    char path[4200], name[64];
    int c = image.ndim == 3 ? image.d[0] : 1;
    int h = image.ndim == 3 ? image.d[1] : 1, w = image.ndim == 3 ? image.d[2] : image.d[0];
    snprintf(name, sizeof name, "step-%ld.idx", step);
    if (join(path, sizeof path, dir, name, err) < 0 ||
        dp_samples_write_idx(path, x, n, c, h, w, lo, hi, err) < 0)
        return -1;
    snprintf(name, sizeof name, "step-%ld.png", step);
    if (join(path, sizeof path, dir, name, err) < 0 ||
        dp_samples_write_png(path, x, n, c, h, w, lo, hi, 8, err) < 0)
        return -1;
    snprintf(png_path, size, "%s", path);
    return 0;
}

static void on_eval(void *arg, const dp_step_report *r, const dp_eval_report *e)
{
    dp_gan_samples_writer *w = arg;
    char png[4200];
    dp_err err;
    if (!e->images)
        return;
    if (dp_gan_samples_write(w->dir, r->step, e->images, e->n_images, e->image_shape, w->lo,
                             w->hi, png, sizeof png, &err) < 0) {
        if (w->log)
            fprintf(w->log, "samples not written: %s\n", err.msg);
        dp_control_event(w->control, "samples not written: %s", err.msg);
        return;
    }
    if (w->log)
        fprintf(w->log, "samples: %s (and .idx)\n", png);
    dp_control_event(w->control, "samples: %s", png);
}

dp_run_observer dp_gan_samples_observer(dp_gan_samples_writer *w)
{
    return (dp_run_observer){ .arg = w, .eval_done = on_eval };
}
