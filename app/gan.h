/* gan.h -- a GAN run's files: the latent shape, the two models' weights in a directory
 * (--save DIR, --init DIR), and the samples written at evaluations. */
#ifndef DP_APP_GAN_H
#define DP_APP_GAN_H

#include <stdbool.h>
#include <stdio.h>

#include "app/run_loop.h"
#include "base/error.h"
#include "base/shape.h"
#include "engine/model.h"

/* The file names of a GAN's two models in a --save or --init directory. */
#define DP_GAN_GENERATOR_FILE "generator.safetensors"
#define DP_GAN_DISCRIMINATOR_FILE "discriminator.safetensors"

/* [model] latent: "Z" (a vector [Z]) or "Z:1:1" ([Z, 1, 1], as DCGAN feeds its generator). */
int dp_gan_latent_shape(const char *text, dp_shape *out, dp_err *err);

/* The PNG beside --generate's IDX file `output`: its name with .png for .idx, else .png
 * added. */
void dp_gan_png_path(const char *output, char *buf, size_t size);

/* Makes directory dir (option names it in messages) when it is not there; refuses a path whose
 * last part is a symbolic link or not a directory. */
int dp_gan_make_dir(const char *option, const char *dir, dp_err *err);

/* Before any work: --save DIR can take a GAN's two files (a directory, made when it is not
 * there, that can be written, where neither file is a link or not a regular file). */
int dp_gan_check_save(const char *dir, dp_err *err);

/* Writes host[gen n_params + disc n_params] (the GAN model's flat vector: the generator's
 * parameters first) as dir/generator.safetensors and dir/discriminator.safetensors, each
 * with its own nn.Sequential names; and reads them back (the generator's only, leaving the
 * rest of host alone, with generator_only: --generate needs no discriminator). */
int dp_gan_save(const char *dir, const dp_model *gen, const dp_model *disc, const float *host,
                dp_err *err);
int dp_gan_load(const char *dir, const dp_model *gen, const dp_model *disc, float *host,
                bool generator_only, dp_err *err);

/* Puts `key` for "[model] layers" in err's message (a file's tensors checked against a layer
 * list that another key gives: a GAN's models, a classifier). */
void dp_gan_name_key(dp_err *err, const char *key);

/* Makes the samples directory dir (when it is not there) and in it this run's own directory,
 * run-N with the first N no run has taken, into run_dir: a run never writes over another's
 * samples. */
int dp_gan_samples_prepare(const char *dir, char *run_dir, size_t size, dp_err *err);

/* Writes n samples x [n, image] (values in [lo, hi]) of evaluation `step` as dir/step-N.idx
 * (unsigned bytes, the data's own format) and dir/step-N.png (a grid, 8 a row); the paths
 * written go into idx_path and png_path. */
int dp_gan_samples_write(const char *dir, long step, const float *x, int n, dp_shape image,
                         float lo, float hi, char *png_path, size_t size, dp_err *err);

/* The observer that writes each evaluation's samples (run_loop.h), and says where: on `log`
 * (headless), else on the control's event line (the dashboard). A file that cannot be written
 * is said the same way; the run goes on. */
typedef struct dp_gan_samples_writer {
    const char *dir;
    float lo, hi;        /* the data's range */
    FILE *log;           /* NULL under the dashboard */
    dp_control *control;
} dp_gan_samples_writer;

dp_run_observer dp_gan_samples_observer(dp_gan_samples_writer *w);

#endif
