/* textgen.h -- a trained language model put to use, without training: --generate N --prompt
 * TEXT on a causal model (N bytes sampled one after another, each from the model's next-byte
 * distribution at the last position it was given) and --fill TEXT on a masked model (each _
 * in TEXT replaced by the byte the model finds likeliest there, with its top candidates).
 *
 * Both run the model in evaluation (no dropout) on one row at a time, through
 * dp_trainer_forward; the caller builds the trainer on one device (a single-device plan: one
 * sequence at a time gains nothing from more). */
#ifndef DP_APP_TEXTGEN_H
#define DP_APP_TEXTGEN_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "app/configuration.h"
#include "base/error.h"
#include "base/rng.h"
#include "engine/model.h"
#include "engine/trainer.h"

/* What a configuration's model is, for the uses of a trained model: a GAN (its generator
 * makes images), a causal language model (objective = classify on text: next-byte
 * prediction, which setup.c allows only without attention both ways), a masked language
 * model (objective = mlm), or a classifier of images or features. */
typedef enum dp_model_use {
    DP_USE_GAN,
    DP_USE_CAUSAL_LM,
    DP_USE_MASKED_LM,
    DP_USE_CLASSIFIER,
} dp_model_use;

dp_model_use dp_model_use_of(const dp_config *c);

/* The byte --fill reads as the mask (the model's input id 256, DP_MLM_MASK_ID). */
#define DP_FILL_MASK '_'
#define DP_MLM_MASK_ID 256
/* The byte that fills the context after --fill's text (the encoder sees it: no padding mask). */
#define DP_FILL_PAD ' '
/* The candidates --fill prints per mask. */
#define DP_FILL_CANDIDATES 5

/* One draw from softmax(logits[vocab] / temperature), over the top_k largest logits only when
 * 0 < top_k < vocab (every logit equal to the k-th largest is kept, as nanoGPT's filter keeps
 * ties), with a uniform number from rng. Returns the index, or -1 when a logit is not finite. */
int dp_textgen_sample(const float *logits, int vocab, double temperature, int top_k,
                      dp_rng *rng);

/* The k likeliest entries of softmax(logits[vocab]): their indices into ids[k] and their
 * probabilities into probs[k], likeliest first (equal ones: the lower index first). Returns
 * -1 when a logit is not finite. */
int dp_textgen_top(const float *logits, int vocab, int k, int *ids, double *probs);

/* How a language model's --generate samples. */
typedef struct dp_textgen_opts {
    const char *prompt; /* the bytes to continue; NULL or "": a newline, which is not printed */
    long n;             /* bytes to generate */
    double temperature; /* > 0 */
    int top_k;          /* 0: every byte */
    uint64_t seed;      /* the run's seed: the draws' stream */
    atomic_int *stop;   /* set (by a signal handler): no more bytes after the current one;
                           NULL: none */
} dp_textgen_opts;

/* --generate on a causal language model m (t's) of `context` positions ([context] byte ids
 * in, [context, vocab] logits out): writes the prompt, then each new byte as it is drawn, to
 * out; returns 1 when o->stop ended it early, 0 when all o->n were written. Each byte is drawn from the logits at the last real position of a forward pass over
 * the last `context` bytes so far (cropped as nanoGPT crops them), placed at positions 0 to
 * n - 1; the positions after them hold zeros, which causal attention keeps from the earlier
 * positions' outputs. Fails (with err) on non-finite logits or a failed write. */
int dp_textgen_generate(dp_trainer *t, const dp_model *m, const dp_textgen_opts *o, FILE *out,
                        dp_err *err);

/* --fill on a masked language model m (t's) of `context` positions: text (at most context bytes, with
 * at least one DP_FILL_MASK) with each mask as id DP_MLM_MASK_ID and the rest of the context
 * DP_FILL_PAD; writes the text with each mask replaced by its likeliest byte, a newline, and
 * per mask a line "mask I at byte P: 'c' 0.9876, ..." of its DP_FILL_CANDIDATES likeliest
 * bytes (printable ASCII but ' and \ quoted, others as \xNN) and their probabilities. */
int dp_textgen_fill(dp_trainer *t, const dp_model *m, const char *text, FILE *out, dp_err *err);

#endif
