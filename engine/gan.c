/* gan.c -- a GAN's two layer lists as models, and DCGAN's initialisation. */
#include "engine/gan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"

void dp_gan_part_layers(const dp_model *m, dp_model_part part, int *first, int *last)
{
    *first = 0;
    *last = m->n_layers;
    if (part == DP_PART_G)
        *last = m->gan_split;
    else if (part == DP_PART_D)
        *first = m->gan_split;
}

static void shape_text(dp_shape s, char *buf, size_t size)
{
    if (s.ndim == 1)
        snprintf(buf, size, "[%d]", s.d[0]);
    else if (s.ndim == 2)
        snprintf(buf, size, "[%d, %d]", s.d[0], s.d[1]);
    else
        snprintf(buf, size, "[%d, %d, %d]", s.d[0], s.d[1], s.d[2]);
}

/* The generator alone: layers on the latent shape, ending in the image's shape. */
static int parse_generator(dp_model *gen, const char *spec, dp_shape latent, dp_shape image,
                           dp_err *err)
{
    memset(gen, 0, sizeof *gen);
    gen->objective = &dp_objective_gan;
    gen->in_shape = latent;
    gen->in_features = (int)dp_shape_count(latent);
    gen->targets = 1;
    if (dp_layer_list_parse(spec, latent, 0, &gen->layers, &gen->n_layers, &gen->n_params,
                            err) < 0) {
        if (latent.ndim == 1 && strstr(err->msg, "layer 0 ") && strstr(err->msg, "needs images"))
            snprintf(err->msg + strlen(err->msg), sizeof err->msg - strlen(err->msg),
                     "; or give the generator its latent vectors as images: [model] latent = "
                     "%d:1:1",
                     latent.d[0]);
        dp_err_prefix(err, "[model] generator: ");
        return -1;
    }
    char got[48], want[48];
    if (gen->n_layers > 0 && gen->layers[0].ops == &dp_layer_embed) {
        dp_model_free(gen);
        return dp_fail(err, "[model] generator: embed looks up ids, but a generator takes "
                            "latent vectors of real numbers; start with linear or deconv");
    }
    if (gen->n_layers == 0 || gen->n_params == 0) {
        dp_model_free(gen);
        return dp_fail(err, "[model] generator: the list has no layer with parameters; write "
                            "for example: linear:256, relu, linear:784, tanh, unflatten:1:28:28");
    }
    dp_shape out = gen->layers[gen->n_layers - 1].out_shape;
    shape_text(out, got, sizeof got);
    shape_text(image, want, sizeof want);
    if (!dp_shape_equal(out, image)) {
        dp_model_free(gen);
        if (image.ndim == 3 && dp_shape_count(out) == dp_shape_count(image))
            return dp_fail(err, "[model] generator: it gives %s but the data's images are %s; "
                                "end it with unflatten:%d:%d:%d",
                           got, want, image.d[0], image.d[1], image.d[2]);
        return dp_fail(err, "[model] generator: it gives %s but the data's samples are %s; its "
                            "last layers must make the data's shape",
                       got, want);
    }
    return 0;
}

/* Refuses a discriminator that does not end in one logit a sample, or ends in a sigmoid
 * (PyTorch's DCGAN example has one before nn.BCELoss; dpmptop's loss takes the logit). */
static int check_discriminator(const char *spec, dp_shape image, dp_err *err)
{
    dp_layer *layers;
    int n;
    size_t params;
    if (dp_layer_list_parse(spec, image, 0, &layers, &n, &params, err) < 0)
        return -1;
    int rc = 0;
    dp_shape out = n ? layers[n - 1].out_shape : image;
    char got[48];
    shape_text(out, got, sizeof got);
    if (n && layers[n - 1].ops == &dp_layer_sigmoid)
        rc = dp_fail(err, "it ends with sigmoid, but the loss takes D's logit (as "
                          "nn.BCEWithLogitsLoss, which is nn.BCELoss after a sigmoid): remove "
                          "the sigmoid");
    else if (out.ndim == 3 && out.d[0] == 1 && out.d[1] == 1 && out.d[2] == 1)
        rc = dp_fail(err, "it ends with %s: end it with flatten", got);
    else if (out.ndim != 1 || out.d[0] != 1)
        rc = dp_fail(err, "it ends with %s, but a discriminator gives one logit a sample: end "
                          "it with linear:1 (after flatten, for images)",
                     got);
    dp_model tmp = { .layers = layers, .n_layers = n };
    dp_model_free(&tmp);
    return rc;
}

int dp_model_parse_gan(dp_model *gan, dp_model *gen, dp_model *disc, const char *g_spec,
                       const char *d_spec, dp_shape latent, dp_shape image, dp_err *err)
{
    memset(gan, 0, sizeof *gan);
    memset(disc, 0, sizeof *disc);
    if (parse_generator(gen, g_spec, latent, image, err) < 0)
        return -1;
    if (check_discriminator(d_spec, image, err) < 0 ||
        dp_model_parse_shape(disc, d_spec, image, 1, err) < 0) {
        dp_model_free(gen);
        dp_err_prefix(err, "[model] discriminator: ");
        return -1;
    }
    disc->objective = &dp_objective_gan;
    size_t len = strlen(g_spec) + strlen(d_spec) + 3;
    char *both = malloc(len);
    if (!both) {
        dp_model_free(gen), dp_model_free(disc);
        return dp_fail(err, "out of memory");
    }
    snprintf(both, len, "%s, %s", g_spec, d_spec);
    /* cannot fail where both lists parsed alone: each layer sees the same shape */
    int rc = dp_model_parse_shape(gan, both, latent, 1, err);
    free(both);
    if (rc < 0 || gan->n_params != gen->n_params + disc->n_params) {
        dp_model_free(gen), dp_model_free(disc);
        return rc < 0 ? -1 : dp_fail(err, "the generator and discriminator lists do not "
                                          "join into one model");
    }
    gan->objective = &dp_objective_gan;
    gan->gan_split = gen->n_layers;
    return 0;
}

/* Draws tensor t of layer l (host: the layer's run) from N(mean, std). */
static void draw_normal(const dp_layer *l, const dp_tensor_info *t, float *host, double mean,
                        double std, uint64_t seed)
{
    dp_rng r = dp_rng_stream(seed, DP_RNG_INIT, 0x646367616e000000ull + (uint64_t)l->index);
    for (size_t i = 0; i < t->count; i++)
        host[t->offset + i] = (float)(mean + std * dp_rng_normal(&r));
}

void dp_gan_init_dcgan(const dp_model *m, float *host, uint64_t seed)
{
    for (int i = 0; i < m->n_layers; i++) {
        const dp_layer *l = &m->layers[i];
        dp_tensor_info t[DP_MAX_LAYER_TENSORS];
        int k = l->ops->tensors(l, t);
        float *run = host + l->param_offset;
        bool conv = l->ops == &dp_layer_conv || l->ops == &dp_layer_deconv;
        for (int j = 0; j < k; j++) {
            if (conv && !strcmp(t[j].suffix, "weight"))
                draw_normal(l, &t[j], run, 0.0, 0.02, seed);
            else if (l->ops == &dp_layer_bn && !strcmp(t[j].suffix, "weight"))
                draw_normal(l, &t[j], run, 1.0, 0.02, seed);
            else if (l->ops == &dp_layer_bn && !strcmp(t[j].suffix, "bias"))
                memset(run + t[j].offset, 0, t[j].count * sizeof *run);
        }
    }
}
