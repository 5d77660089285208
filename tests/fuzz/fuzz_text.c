/* fuzz_text.c -- libFuzzer target: a text's bytes cut into windows; the first byte of the input
 * picks the context (0 to 255), the rest is the text. */
#include "tests/fuzz/fuzz.h"
#include <stdint.h>
#include <string.h>

#include "datasets/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dp_dataset train, test;
    dp_err err;
    if (size == 0)
        return 0;
    if (dp_text_parse(data + 1, size - 1, data[0], "fuzz.txt", &train, &test, &err) == 0) {
        dp_dataset_free(&train);
        dp_dataset_free(&test);
    }
    return 0;
}
