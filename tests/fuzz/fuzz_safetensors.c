/* fuzz_safetensors.c -- libFuzzer target: the safetensors parser (header length, JSON header,
 * every tensor's dtype, shape and data offsets) against two small models: one of F32 tensors
 * only, and one with batch normalisation, whose buffers include an I64 scalar
 * (1.num_batches_tracked). Every input goes through both. */
#include "tests/fuzz/fuzz.h"
#include <stdint.h>
#include <stdlib.h>

#include "engine/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const specs[2] = { "linear:4, relu, linear:3",
                                          "linear:4, bn, relu, linear:3" };
    static dp_model m[2];
    static float *host[2];
    static int made;
    dp_err err;
    if (!made) {
        for (int i = 0; i < 2; i++) {
            if (dp_model_parse(&m[i], specs[i], 5, 3, &err) < 0)
                abort();
            host[i] = malloc(m[i].n_params * sizeof *host[i]);
            if (!host[i])
                abort();
        }
        made = 1;
    }
    for (int i = 0; i < 2; i++)
        dp_safetensors_parse(data, size, "fuzz.safetensors", &m[i], host[i], &err);
    return 0;
}
