/* unit.c -- runs every Check suite; `make check` runs this program. */
#define _XOPEN_SOURCE 700 /* nftw */
#include "tests/unit.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* This run's directory: every unit_tmpdir() lies inside it, and main removes it at the end. */
static char run_dir[4096];

const char *unit_tmpdir(void)
{
    static char path[4200];
    snprintf(path, sizeof path, "%s/t.XXXXXX", run_dir);
    if (!mkdtemp(path)) {
        perror(path);
        abort();
    }
    return path;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

int main(void)
{
    const char *base = getenv("TMPDIR_BASE");
    if (!base || !*base)
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(run_dir, sizeof run_dir, "%s/unit.XXXXXX", base);
    if (!mkdtemp(run_dir)) {
        perror(run_dir);
        return EXIT_FAILURE;
    }

    SRunner *sr = srunner_create(layers_suite());
    srunner_add_suite(sr, blocks_suite());
    srunner_add_suite(sr, conv_library_suite());
    srunner_add_suite(sr, loss_suite());
    srunner_add_suite(sr, objective_suite());
    srunner_add_suite(sr, optim_suite());
    srunner_add_suite(sr, idx_suite());
    srunner_add_suite(sr, safetensors_suite());
    srunner_add_suite(sr, config_suite());
    srunner_add_suite(sr, plan_suite());
    srunner_add_suite(sr, advisor_suite());
    srunner_add_suite(sr, comm_suite());
    srunner_add_suite(sr, layout_suite());
    srunner_add_suite(sr, timeline_suite());
    srunner_add_suite(sr, health_suite());
    srunner_add_suite(sr, control_suite());
    srunner_add_suite(sr, peak_suite());
    srunner_add_suite(sr, bn_suite());
    srunner_add_suite(sr, samples_suite());
    srunner_add_suite(sr, quality_suite());
    srunner_add_suite(sr, gan_suite());
    srunner_add_suite(sr, gan_dashboard_suite());
    srunner_add_suite(sr, bert_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (!failed) /* on failure the files stay, for a look */
        nftw(run_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
