/* fuzz_safetensors.c -- libFuzzer target: the safetensors parser (header length, JSON header,
 * every tensor's dtype, shape and data offsets) against a small model. */
#include "tests/fuzz/fuzz.h"
#include <stdint.h>
#include <stdlib.h>

#include "engine/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static dp_model m;
    static float *host;
    static int made;
    dp_err err;
    if (!made) {
        if (dp_model_parse(&m, "linear:4, relu, linear:3", 5, 3, &err) < 0)
            abort();
        host = malloc(m.n_params * sizeof *host);
        made = 1;
    }
    dp_safetensors_parse(data, size, "fuzz.safetensors", &m, host, &err);
    return 0;
}
