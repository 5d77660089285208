/* paths.c -- output paths checked against each other, the inputs and the directories. */
#include "app/paths.h"
#include "app/gan.h"

#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "datasets/dataset.h"

int dp_check_output_path(const char *option, const char *path, dp_atomic_file *held)
{
    struct stat st;
    dp_err err;
    if (!path[0]) {
        fprintf(stderr, "dpmptop: %s needs a file name\n", option);
        return -1;
    }
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "dpmptop: %s %s: is a directory; give a file name\n", option, path);
        return -1;
    }
    if (dp_atomic_open(held, path, &err) < 0) {
        fprintf(stderr, "dpmptop: %s %s\n", option, err.msg);
        return -1;
    }
    if (held->tmp[0]) /* a regular file: written under a temporary name at the end */
        dp_atomic_abort(held);
    return 0;
}

/* The absolute path that `path` names, or would name once written (its directory's links
 * resolved), into out[PATH_MAX]; "" when its directory does not exist. */
static void resolve_path(const char *path, char *out)
{
    char dir[PATH_MAX], base[PATH_MAX], parent[PATH_MAX];
    if (realpath(path, out))
        return;
    snprintf(dir, sizeof dir, "%s", path);
    snprintf(base, sizeof base, "%s", path);
    if (!realpath(dirname(dir), parent)) {
        out[0] = '\0';
        return;
    }
    snprintf(out, PATH_MAX, "%s/%s", strcmp(parent, "/") ? parent : "", basename(base));
}

/* Whether resolved path `inner` is `dir` itself or lies under it. */
static bool under(const char *inner, const char *dir)
{
    size_t n = strlen(dir);
    return dir[0] && !strncmp(inner, dir, n) && (inner[n] == '/' || !inner[n] || n == 1);
}

/* Whether output `out` (resolved) is the file at `path`: the same name once links are
 * resolved, or the same file under another name (a hard link). */
static bool same_file(const char *out, const char *path)
{
    char other[PATH_MAX];
    struct stat a, b;
    resolve_path(path, other);
    return !strcmp(out, other) || (stat(out, &a) == 0 && stat(path, &b) == 0 &&
                                   a.st_dev == b.st_dev && a.st_ino == b.st_ino);
}

int dp_check_distinct_paths(const dp_options *o, const dp_config *c)
{
    char png[PATH_MAX];
    if (o->output_path)
        dp_gan_png_path(o->output_path, png, sizeof png);
    const char *outputs[4][2] = { { "--save", o->save_path }, { "--metrics", o->metrics_path },
                                  { "--output", o->output_path },
                                  { "--output's PNG", o->output_path ? png : NULL } };
    const char *data = c->data.path[0] ? c->data.path : dp_data_default_path(c->data.kind);
    char out[PATH_MAX], dir[PATH_MAX], parent[PATH_MAX];
    struct stat st;
    bool init_dir = o->init_path && stat(o->init_path, &st) == 0 && S_ISDIR(st.st_mode);
    for (int i = 0; i < 4; i++) {
        if (!outputs[i][1])
            continue;
        resolve_path(outputs[i][1], out);
        if (!out[0])
            continue; /* its directory does not exist: check_output_path says so */
        const char *clash = NULL;
        if (i == 1 && o->save_path && same_file(out, o->save_path))
            clash = "--save's file";
        else if (o->config_path && same_file(out, o->config_path))
            clash = "the configuration (-c)";
        else if (o->init_path && same_file(out, o->init_path))
            clash = "--init's weights";
        else if (init_dir && (resolve_path(o->init_path, dir), under(out, dir)))
            clash = "inside --init's directory";
        else if (data[0] && same_file(out, data))
            clash = "the data (data.path)";
        else if (data[0] && (resolve_path(data, dir), under(out, dir)) &&
                 !strcmp(dirname(strcpy(parent, out)), dir) &&
                 dp_data_reads_name(c->data.kind, strrchr(out, '/') + 1))
            clash = "a name in the data directory that is read as data";
        else if (c->checkpoint_dir[0] && (resolve_path(c->checkpoint_dir, dir), under(out, dir)))
            clash = "inside the checkpoint directory";
        else if (o->resume_dir && (resolve_path(o->resume_dir, dir), under(out, dir)))
            clash = "inside the directory --resume reads";
        if (clash) {
            fprintf(stderr, "dpmptop: %s %s: that is %s; give the output a path of its own\n",
                    outputs[i][0], outputs[i][1], clash);
            return -1;
        }
    }
    return 0;
}
