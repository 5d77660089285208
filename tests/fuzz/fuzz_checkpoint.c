/* fuzz_checkpoint.c -- libFuzzer target: a checkpoint's state.ini (every key, its range, and
 * the identity checks), parsed from the input's text. */
#include "tests/fuzz/fuzz.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static dp_model m;
    static dp_run_identity id;
    static int made;
    dp_err err;
    if (!made) {
        dp_optim_config oc = dp_optim_defaults();
        if (dp_model_parse(&m, "linear:4, relu, linear:3", 5, 3, &err) < 0)
            abort();
        id = dp_run_identity_of("linear:4, relu, linear:3", &m, "fuzz", 100, 10, &oc, 1);
        made = 1;
    }
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    dp_train_state ts;
    dp_checkpoint_parse_state(text, "fuzz/state.ini", &id, &ts, &err);
    free(text);
    return 0;
}
