/* fuzz_cifar.c -- libFuzzer target: one CIFAR-10 binary batch file's bytes (record sizes and
 * labels checked before anything is kept). */
#include "tests/fuzz/fuzz.h"
#include <stdint.h>
#include <string.h>

#include "datasets/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dp_dataset d;
    dp_err err;
    memset(&d, 0, sizeof d);
    dp_cifar_parse_batch(data, size, "fuzz.bin", &d, &err);
    dp_dataset_free(&d);
    return 0;
}
