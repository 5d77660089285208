/* fuzz_config.c -- libFuzzer target: the INI configuration loader (inih, then every key's
 * checks) and the checks across keys, on arbitrary text. Any input must give 0 or an error
 * message, never a crash or a sanitizer report. */
#include "tests/fuzz/fuzz.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "app/configuration.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    static dp_config c; /* large */
    dp_err err;
    dp_config_defaults(&c);
    if (dp_config_load(&c, NULL, text, "fuzz.ini", &err) == 0)
        dp_config_check(&c, &err);
    free(text);
    return 0;
}
