/* gan.h -- a GAN: a generator G and a discriminator D trained against each other.
 *
 * The engine runs a GAN as one model, G's layers followed by D's (dp_model.gan_split is D's
 * first layer), whose training step is a short program of passes, each an ordinary pipeline
 * pass over a part of the layers (worker.c), as PyTorch's DCGAN example does it:
 *
 *   1. D_REAL: D on a real batch, target 1; D's gradients written.
 *   2. D_FAKE: G on noise, then D, target 0; backward through D only (no gradient into G),
 *      adding to D's gradients, which are then summed among the replicas. D is updated.
 *   3. G: G on the same noise again, then the updated D, target 1 (the non-saturating loss);
 *      backward through both, G's gradients summed among the replicas and G updated. D's
 *      gradients of this pass are discarded, and its parameters and optimizer state untouched.
 *
 * G runs forward twice a step (2 and 3), where PyTorch keeps the fakes of one forward: the
 * second run leaves G's running statistics alone (dp_pass.keep_buffers), so G's buffers move
 * once a step, as PyTorch's, and D's in each of its three passes, as PyTorch's. Losses are
 * binary cross-entropy with logits (objective.h: dp_objective_gan), means over the global
 * batch. Noise comes from kernels.h's dp_noise_value, keyed by the seed, the step and the
 * sample's place in the global batch, so every strategy draws the same. A pipeline always cuts
 * between G and D (plan.c), so each of its stages holds layers of one of them; a single stage
 * (single, dp) holds both. */
#ifndef DP_GAN_H
#define DP_GAN_H

#include "engine/model.h"

/* The samples an evaluation shows and writes, from the fixed noise. */
#define DP_GAN_SAMPLES 64

/* What a training pass runs (the passes above; TRAIN: an ordinary model's). */
typedef enum dp_pass_kind { DP_PASS_TRAIN, DP_PASS_D_REAL, DP_PASS_D_FAKE, DP_PASS_G } dp_pass_kind;

/* Which of a GAN's models an update, or a pass's gradients, concern (ALL: every layer). */
typedef enum dp_model_part { DP_PART_ALL, DP_PART_G, DP_PART_D } dp_model_part;

/* The layers [*first, *last) of a part of m (ALL, or every layer of a model that is not a GAN,
 * for the other parts of it: a plain model is all D). */
void dp_gan_part_layers(const dp_model *m, dp_model_part part, int *first, int *last);

/* Builds the GAN of generator layers g_spec on latent vectors of shape `latent` ([Z], or
 * [Z, 1, 1] as DCGAN feeds them) and discriminator layers d_spec on images of shape `image`
 * (ending in one logit): into gen and disc each alone (their own layer indices and parameter
 * offsets from 0, for their files), and into gan, both as one model for the engine (objective
 * gan). G must give exactly `image`'s shape. err says which list is wrong and why. */
int dp_model_parse_gan(dp_model *gan, dp_model *gen, dp_model *disc, const char *g_spec,
                       const char *d_spec, dp_shape latent, dp_shape image, dp_err *err);

/* DCGAN's weights_init over a model's layers in host[n_params]: the weights of conv and deconv
 * layers from N(0, 0.02), batch normalisation's weights from N(1, 0.02) and its biases 0; the
 * rest keep what dp_model_init_params gave them. */
void dp_gan_init_dcgan(const dp_model *m, float *host, uint64_t seed);

#endif
