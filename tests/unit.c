/* unit.c -- runs every Check suite; `make check` runs this program. */
#include "tests/unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *unit_tmpdir(void)
{
    static char path[4096];
    const char *base = getenv("TMPDIR_BASE");
    if (!base || !*base)
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(path, sizeof path, "%s/unit.XXXXXX", base);
    if (!mkdtemp(path)) {
        perror(path);
        abort();
    }
    return path;
}

int main(void)
{
    SRunner *sr = srunner_create(layers_suite());
    srunner_add_suite(sr, loss_suite());
    srunner_add_suite(sr, optim_suite());
    srunner_add_suite(sr, idx_suite());
    srunner_add_suite(sr, safetensors_suite());
    srunner_add_suite(sr, config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
