/* fuzz_config.c -- libFuzzer target: the INI configuration loader (inih, then every key's
 * checks), the checks across keys, and --set, on arbitrary text. Any input must give 0 or an
 * error message, never a crash or a sanitizer report; and whatever is accepted must print as
 * a configuration that reads back and prints the same (--print-config's promise). */
#include "tests/fuzz/fuzz.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/configuration.h"

/* dp_config_print's text as a malloc'd string. */
static char *printed(const dp_config *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        abort();
    dp_config_print(c, f);
    if (fclose(f) != 0)
        abort();
    return buf;
}

/* Aborts (a finding) unless c's printed text loads and prints again identically. */
static void check_reads_back(const dp_config *c)
{
    static dp_config back; /* large */
    dp_err err;
    char *text = printed(c);
    dp_config_defaults(&back);
    if (dp_config_load(&back, NULL, text, "printed.ini", &err) < 0) {
        fprintf(stderr, "the printed configuration does not load: %s\n%s", err.msg, text);
        abort();
    }
    char *again = printed(&back);
    if (strcmp(text, again)) {
        fprintf(stderr, "the printed configuration reads back differently:\n%s---\n%s", text,
                again);
        abort();
    }
    free(text);
    free(again);
}

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
    if (dp_config_load(&c, NULL, text, "fuzz.ini", &err) == 0) {
        dp_config_check(&c, &err);
        check_reads_back(&c);
    }
    /* the same bytes as one --set SECTION.KEY=VALUE */
    dp_config_defaults(&c);
    if (dp_config_set(&c, text, "--set", &err) == 0)
        check_reads_back(&c);
    free(text);
    return 0;
}
