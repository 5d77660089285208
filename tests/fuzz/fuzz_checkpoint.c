/* fuzz_checkpoint.c -- libFuzzer target: a checkpoint's state.ini (every key, its range, and
 * the identity checks) read from a checkpoint directory whose state.ini is the input. */
#include "tests/fuzz/fuzz.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char dir[64] = "/tmp/fuzz-checkpoint-XXXXXX", file[96];
    static dp_model m;
    static dp_optim_config oc;
    static dp_run_identity id;
    static float *params, *state;
    dp_err err;
    if (!params) {
        if (!mkdtemp(dir) || dp_model_parse(&m, "linear:4, relu, linear:3", 5, 3, &err) < 0)
            abort();
        snprintf(file, sizeof file, "%s/state.ini", dir);
        oc = dp_optim_defaults();
        id = dp_run_identity_of("linear:4, relu, linear:3", &m, "fuzz", 100, 10, &oc, 1);
        params = malloc(m.n_params * sizeof *params);
        state = malloc(m.n_params * 2 * sizeof *state + 1);
    }
    FILE *f = fopen(file, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    dp_train_state ts;
    dp_checkpoint_read(dir, &m, &oc, &id, params, state, &ts, &err);
    return 0;
}
