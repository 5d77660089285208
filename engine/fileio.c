/* fileio.c -- temporary file, fsync, rename. */
#include "engine/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int dp_atomic_open(dp_atomic_file *af, const char *path, dp_err *err)
{
    memset(af, 0, sizeof *af);
    if (strlen(path) >= sizeof af->path)
        return dp_fail(err, "%s: path too long", path);
    snprintf(af->path, sizeof af->path, "%s", path);
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        af->f = fopen(path, "wb");
        if (!af->f)
            return dp_fail(err, "%s: cannot write there: %s", path, strerror(errno));
        return 0;
    }
    snprintf(af->tmp, sizeof af->tmp, "%s.tmpXXXXXX", path);
    int fd = mkstemp(af->tmp);
    if (fd < 0)
        return dp_fail(err, "%s: cannot create a file there: %s", path, strerror(errno));
    fchmod(fd, 0644);
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        int e = errno;
        close(fd);
        unlink(af->tmp);
        return dp_fail(err, "%s: %s", path, strerror(e));
    }
    return 0;
}

void dp_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* fsyncs the directory holding path, so the rename itself is durable. */
static void sync_parent(const char *path)
{
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    dp_sync_dir(dirname(copy));
}

int dp_atomic_commit(dp_atomic_file *af, dp_err *err)
{
    if (!af->tmp[0]) { /* written in place: a device or a pipe */
        int failed = ferror(af->f) || fflush(af->f) != 0;
        int e = errno;
        failed |= fclose(af->f) != 0;
        af->f = NULL;
        return failed ? dp_fail(err, "%s: cannot write: %s", af->path, strerror(e ? e : EIO)) : 0;
    }
    int failed = ferror(af->f) || fflush(af->f) != 0 || fsync(fileno(af->f)) != 0;
    int e = errno;
    if (fclose(af->f) != 0 && !failed) {
        failed = 1;
        e = errno;
    }
    af->f = NULL;
    if (!failed && rename(af->tmp, af->path) != 0) {
        failed = 1;
        e = errno;
    }
    if (failed) {
        unlink(af->tmp);
        return dp_fail(err, "%s: cannot write: %s; the previous file, if any, is unchanged",
                       af->path, strerror(e ? e : EIO));
    }
    sync_parent(af->path);
    return 0;
}

void dp_atomic_abort(dp_atomic_file *af)
{
    if (af->f) {
        fclose(af->f);
        af->f = NULL;
        if (af->tmp[0])
            unlink(af->tmp);
    }
}

int dp_read_file(const char *path, size_t max_bytes, unsigned char **buf, size_t *len,
                 dp_err *err)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return dp_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return dp_fail(err, "%s: not a regular file", path);
    }
    if ((unsigned long long)st.st_size > max_bytes) {
        fclose(f);
        return dp_fail(err, "%s: %lld bytes is larger than the %zu this reader accepts", path,
                       (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    unsigned char *b = malloc(n ? n : 1);
    if (!b) {
        fclose(f);
        return dp_fail(err, "%s: out of memory for %zu bytes", path, n);
    }
    if (fread(b, 1, n, f) != n) {
        int e = ferror(f) ? errno : 0;
        fclose(f);
        free(b);
        return dp_fail(err, "%s: cannot read: %s", path, e ? strerror(e) : "file shrank");
    }
    fclose(f);
    *buf = b;
    *len = n;
    return 0;
}
