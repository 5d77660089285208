/* textgen.c -- sampling a causal language model's bytes, filling a masked one's blanks. */
#include "app/textgen.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "engine/objective.h"

/* The stream of --generate's draws: its own purpose, so that they share no numbers with the
 * initialisation's, the shuffles' or the data's streams of the same seed (base/rng.h). */
#define TEXTGEN_RNG_PURPOSE 0x7465787467656eull /* "textgen" */

dp_model_use dp_model_use_of(const dp_config *c)
{
    const dp_objective *o = dp_objectives[c->objective];
    if (o == &dp_objective_gan)
        return DP_USE_GAN;
    if (o == &dp_objective_mlm)
        return DP_USE_MASKED_LM;
    return c->data.kind == DP_DATA_TEXT ? DP_USE_CAUSAL_LM : DP_USE_CLASSIFIER;
}

static bool all_finite(const float *x, int n)
{
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return false;
    return true;
}

/* Descending order of values, for top-k's threshold (the k-th largest value). */
static int by_value_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

int dp_textgen_sample(const float *logits, int vocab, double temperature, int top_k,
                      dp_rng *rng)
{
    if (vocab < 1 || !all_finite(logits, vocab))
        return -1;
    float *sorted = malloc((size_t)vocab * sizeof *sorted);
    double *weights = malloc((size_t)vocab * sizeof *weights);
    if (!sorted || !weights) {
        free(sorted);
        free(weights);
        return -1;
    }
    memcpy(sorted, logits, (size_t)vocab * sizeof *sorted);
    qsort(sorted, (size_t)vocab, sizeof *sorted, by_value_desc);
    float max = sorted[0];
    /* nanoGPT: v, _ = torch.topk(logits, k); logits[logits < v[:, [-1]]] = -inf */
    float keep_from = top_k > 0 && top_k < vocab ? sorted[top_k - 1] : -INFINITY;
    /* softmax(logits / T) up to its normaliser, which the draw below scales by instead: each
     * exponent is <= 0, so nothing overflows, however small T */
    double total = 0;
    for (int i = 0; i < vocab; i++) {
        weights[i] = logits[i] >= keep_from ? exp((double)(logits[i] - max) / temperature) : 0;
        total += weights[i];
    }
    double u = dp_rng_uniform(rng) * total, sum = 0; /* total >= 1: the largest logit's is 1 */
    int drawn = -1;
    for (int i = 0; i < vocab && drawn < 0; i++) {
        if (weights[i] <= 0)
            continue;
        sum += weights[i];
        if (u < sum)
            drawn = i;
    }
    for (int i = vocab - 1; drawn < 0; i--) /* u within rounding of total: the last kept */
        drawn = weights[i] > 0 ? i : -1;
    free(sorted);
    free(weights);
    return drawn;
}

/* An index and its probability, for sorting --fill's candidates. */
typedef struct candidate {
    int id;
    double p;
} candidate;

static int by_probability_desc(const void *a, const void *b)
{
    const candidate *x = a, *y = b;
    if (x->p != y->p)
        return x->p < y->p ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

int dp_textgen_top(const float *logits, int vocab, int k, int *ids, double *probs)
{
    if (vocab < 1 || k > vocab || !all_finite(logits, vocab))
        return -1;
    candidate *c = malloc((size_t)vocab * sizeof *c);
    if (!c)
        return -1;
    float max = logits[0];
    for (int i = 1; i < vocab; i++)
        max = logits[i] > max ? logits[i] : max;
    double total = 0;
    for (int i = 0; i < vocab; i++) {
        c[i] = (candidate){ i, exp((double)(logits[i] - max)) };
        total += c[i].p;
    }
    qsort(c, (size_t)vocab, sizeof *c, by_probability_desc);
    for (int i = 0; i < k; i++) {
        ids[i] = c[i].id;
        probs[i] = c[i].p / total;
    }
    free(c);
    return 0;
}

/* A language model's positions (its input: a byte id per position) and its logits per
 * position (256 for dpmptop's text: setup.c checked the predictions against the targets). */
static void model_sizes(const dp_model *m, int *context, int *vocab)
{
    *context = m->layers[0].in;
    *vocab = m->layers[m->n_layers - 1].out / *context;
}

/* Writes bytes to out, reporting a failed write (a full disk, a closed pipe). */
static int put_bytes(FILE *out, const void *b, size_t n, dp_err *err)
{
    if (n && fwrite(b, 1, n, out) != n)
        return dp_fail(err, "writing the text: %s", strerror(errno));
    return 0;
}

int dp_textgen_generate(dp_trainer *t, const dp_model *m, const dp_textgen_opts *o, FILE *out,
                        dp_err *err)
{
    const char *prompt = o->prompt && o->prompt[0] ? o->prompt : NULL;
    size_t start = prompt ? strlen(prompt) : 1;
    int context, vocab;
    model_sizes(m, &context, &vocab);
    unsigned char *seq = malloc(start + (size_t)o->n);
    float *x = calloc((size_t)context, sizeof *x);
    float *logits = malloc((size_t)context * vocab * sizeof *logits);
    dp_rng rng = dp_rng_stream(o->seed, TEXTGEN_RNG_PURPOSE, 0);
    size_t len = start;
    int rc = 0;
    if (!seq || !x || !logits) {
        rc = dp_fail(err, "out of memory");
        goto done;
    }
    memcpy(seq, prompt ? prompt : "\n", start); /* nanoGPT's sample.py starts from "\n" */
    if (prompt && (rc = put_bytes(out, prompt, start, err)) < 0)
        goto done;
    for (long i = 0; i < o->n; i++) {
        if (o->stop && atomic_load(o->stop)) {
            rc = 1;
            break;
        }
        size_t n = len < (size_t)context ? len : (size_t)context, first = len - n;
        for (size_t p = 0; p < n; p++)
            x[p] = (float)seq[first + p];
        dp_trainer_forward(t, x, 1, logits);
        int b = dp_textgen_sample(logits + (n - 1) * (size_t)vocab, vocab, o->temperature,
                                  o->top_k, &rng);
        if (b < 0) {
            rc = dp_fail(err, "the model's logits after %ld bytes are not finite (its weights "
                              "hold NaN or infinity?)",
                         i);
            goto done;
        }
        seq[len++] = (unsigned char)b;
        /* each byte as it comes: a large model takes a while for each */
        if ((rc = put_bytes(out, &seq[len - 1], 1, err)) < 0)
            goto done;
        if (fflush(out) != 0) {
            rc = dp_fail(err, "writing the text: %s", strerror(errno));
            goto done;
        }
    }
done:
    free(seq);
    free(x);
    free(logits);
    return rc;
}

/* A byte as --fill shows it: 'c' for printable ASCII but the quote and the backslash, else
 * \xNN. */
static void show_byte(int b, char *buf, size_t size)
{
    if (b >= 0x20 && b < 0x7f && b != '\'' && b != '\\')
        snprintf(buf, size, "'%c'", b);
    else
        snprintf(buf, size, "\\x%02x", b);
}

int dp_textgen_fill(dp_trainer *t, const dp_model *m, const char *text, FILE *out, dp_err *err)
{
    size_t len = strlen(text);
    int context, vocab;
    model_sizes(m, &context, &vocab);
    if (len > (size_t)context)
        return dp_fail(err, "--fill: %zu bytes of text, more than the model's context of %d",
                       len, context);
    float *x = malloc((size_t)context * sizeof *x);
    float *logits = malloc((size_t)context * vocab * sizeof *logits);
    char *filled = malloc(len + 1);
    int ids[DP_FILL_CANDIDATES], mask = 0, rc = 0;
    double probs[DP_FILL_CANDIDATES];
    if (!x || !logits || !filled) {
        rc = dp_fail(err, "out of memory");
        goto done;
    }
    for (size_t p = 0; p < (size_t)context; p++)
        x[p] = p >= len ? DP_FILL_PAD
               : text[p] == DP_FILL_MASK ? DP_MLM_MASK_ID : (float)(unsigned char)text[p];
    dp_trainer_forward(t, x, 1, logits);
    memcpy(filled, text, len + 1);
    for (size_t p = 0; p < len; p++) {
        if (text[p] != DP_FILL_MASK)
            continue;
        if (dp_textgen_top(logits + p * vocab, vocab, DP_FILL_CANDIDATES, ids, probs) < 0) {
            rc = dp_fail(err, "the model's logits at byte %zu are not finite (its weights hold "
                              "NaN or infinity?)",
                         p + 1);
            goto done;
        }
        filled[p] = (char)ids[0];
    }
    if ((rc = put_bytes(out, filled, len, err)) < 0 || (rc = put_bytes(out, "\n", 1, err)) < 0)
        goto done;
    for (size_t p = 0; p < len; p++) {
        if (text[p] != DP_FILL_MASK)
            continue;
        dp_textgen_top(logits + p * vocab, vocab, DP_FILL_CANDIDATES, ids, probs);
        fprintf(out, "mask %d at byte %zu:", ++mask, p + 1);
        for (int i = 0; i < DP_FILL_CANDIDATES; i++) {
            char shown[8];
            show_byte(ids[i], shown, sizeof shown);
            fprintf(out, "%s %s %.4f", i ? "," : "", shown, probs[i]);
        }
        fputc('\n', out);
    }
    if (fflush(out) != 0 || ferror(out))
        rc = dp_fail(err, "writing the text: %s", strerror(errno));
done:
    free(x);
    free(logits);
    free(filled);
    return rc;
}
