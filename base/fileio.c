/* fileio.c -- temporary file, fsync, rename. */
#include "base/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <dirent.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- the temporary files being written, for a signal handler that must remove them ----
 *
 * The one piece of process-wide state in the engine: a file being written may belong to any
 * thread, and the handler of a second Ctrl-C cannot ask them. Slots are written only under
 * `slots_lock`; the handler reads them without it (it may not lock), so each slot is a seqlock
 * of atomic characters: `seq` is odd while its path changes, and the handler unlinks only a
 * path it copied between two equal even readings. */
#define TEMP_SLOTS 32
#define TEMP_PATH (4096 + 64)
static struct temp_slot {
    atomic_uint seq;
    atomic_char path[TEMP_PATH]; /* "" when free; a directory's ends in '/' */
} slots[TEMP_SLOTS];
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;

/* Writes path into slot s (under slots_lock). Its characters are atomics, so the handler's
 * reads never race with it; seq tells the handler whether what it read is whole. */
static void slot_write(struct temp_slot *s, const char *path)
{
    /* acq_rel: the characters' stores cannot move before the odd count */
    unsigned seq = atomic_fetch_add_explicit(&s->seq, 1, memory_order_acq_rel);
    size_t i = 0;
    for (; path[i] && i + 1 < TEMP_PATH; i++)
        atomic_store_explicit(&s->path[i], path[i], memory_order_relaxed);
    atomic_store_explicit(&s->path[i], '\0', memory_order_relaxed);
    atomic_store_explicit(&s->seq, seq + 2, memory_order_release);
}

/* Copies slot s's path into out[TEMP_PATH]: atomic loads, safe in a signal handler; acquire,
 * so that a later reading of seq cannot move before them. */
static void slot_read(struct temp_slot *s, char *out)
{
    size_t i = 0;
    while ((out[i] = atomic_load_explicit(&s->path[i], memory_order_acquire)) && i + 1 < TEMP_PATH)
        i++;
    out[TEMP_PATH - 1] = '\0';
}

/* Records tmp (a directory when `dir`) as a temporary to remove on a second signal (best
 * effort: with every slot taken it is not recorded). */
static void temp_register(const char *tmp, bool dir)
{
    char entry[TEMP_PATH];
    snprintf(entry, sizeof entry, "%s%s", tmp, dir ? "/" : "");
    pthread_mutex_lock(&slots_lock);
    for (int i = 0; i < TEMP_SLOTS; i++)
        if (!atomic_load_explicit(&slots[i].path[0], memory_order_relaxed)) {
            slot_write(&slots[i], entry);
            break;
        }
    pthread_mutex_unlock(&slots_lock);
}

static void temp_forget(const char *tmp, bool dir)
{
    char entry[TEMP_PATH], held[TEMP_PATH];
    snprintf(entry, sizeof entry, "%s%s", tmp, dir ? "/" : "");
    pthread_mutex_lock(&slots_lock);
    for (int i = 0; i < TEMP_SLOTS; i++) {
        slot_read(&slots[i], held);
        if (held[0] && !strcmp(held, entry)) {
            slot_write(&slots[i], "");
            break;
        }
    }
    pthread_mutex_unlock(&slots_lock);
}

void dp_atomic_track_dir(const char *dir) { temp_register(dir, true); }
void dp_atomic_forget_dir(const char *dir) { temp_forget(dir, true); }

/* Removes directory `path` and the files in it with system calls only (a signal handler's
 * work: no opendir, which allocates). Never follows a link. */
static void remove_dir_raw(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[4096] __attribute__((aligned(8)));
    long n;
    while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0)
        for (long at = 0; at < n;) {
            struct linux_dirent64 {
                unsigned long long ino;
                long long off;
                unsigned short reclen;
                unsigned char type;
                char name[];
            } *e = (struct linux_dirent64 *)(buf + at);
            if (e->type == DT_REG || e->type == DT_UNKNOWN)
                unlinkat(fd, e->name, 0); /* fails harmlessly on "." and ".." */
            at += e->reclen;
        }
    close(fd);
    rmdir(path);
}
void dp_atomic_remove_all(void)
{
    char copy[TEMP_PATH];
    for (int i = 0; i < TEMP_SLOTS; i++) {
        unsigned before = atomic_load_explicit(&slots[i].seq, memory_order_acquire);
        if (before & 1)
            continue;
        slot_read(&slots[i], copy);
        if (!copy[0] || atomic_load_explicit(&slots[i].seq, memory_order_relaxed) != before)
            continue;
        size_t len = strlen(copy); /* async-signal-safe */
        if (copy[len - 1] == '/') {
            copy[len - 1] = '\0';
            remove_dir_raw(copy);
        } else {
            unlink(copy);
        }
    }
}

/* Opens an existing output that is not a regular file to write to it directly: a terminal,
 * /dev/null or a pipe (any other device is refused: /dev/zero or a disk is no place for an
 * output). A FIFO is opened without blocking: with no reader that fails (ENXIO) and is
 * refused instead of waiting for one forever. */
static int open_special(dp_atomic_file *af, const char *path, const struct stat *st, dp_err *err)
{
    if (S_ISSOCK(st->st_mode))
        return dp_fail(err, "%s: a socket; give a file", path);
    int fd = open(path, O_WRONLY | O_NOCTTY | O_CLOEXEC | (S_ISFIFO(st->st_mode) ? O_NONBLOCK : 0));
    if (fd < 0 && errno == ENXIO)
        return dp_fail(err, "%s: a named pipe that no process is reading; start its reader "
                            "first, or give a file",
                       path);
    if (fd < 0)
        return dp_fail(err, "%s: cannot write there: %s", path, strerror(errno));
    struct stat null;
    if (!S_ISFIFO(st->st_mode) && !isatty(fd) &&
        !(S_ISCHR(st->st_mode) && stat("/dev/null", &null) == 0 && st->st_rdev == null.st_rdev)) {
        close(fd);
        return dp_fail(err, "%s: a device that is not a terminal or /dev/null; give a file",
                       path);
    }
    if (S_ISFIFO(st->st_mode))
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        close(fd);
        return dp_fail(err, "%s: %s", path, strerror(errno));
    }
    return 0;
}

/* The descriptor that a name of an open stream stands for (/dev/stdout, /dev/stderr,
 * /dev/fd/N, /proc/self/fd/N), or -1. */
static int stream_fd(const char *path)
{
    static const char *const dirs[] = { "/dev/fd/", "/proc/self/fd/" };
    if (!strcmp(path, "/dev/stdout"))
        return 1;
    if (!strcmp(path, "/dev/stderr"))
        return 2;
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        const char *digits = path + strlen(dirs[i]);
        if (!strncmp(path, dirs[i], strlen(dirs[i])) && *digits && strlen(digits) < 8 &&
            strspn(digits, "0123456789") == strlen(digits))
            return atoi(digits);
    }
    return -1;
}

int dp_atomic_open(dp_atomic_file *af, const char *path, dp_err *err)
{
    memset(af, 0, sizeof *af);
    if (strlen(path) >= sizeof af->path)
        return dp_fail(err, "%s: path too long", path);
    snprintf(af->path, sizeof af->path, "%s", path);
    int stream = stream_fd(path);
    if (stream >= 0) { /* the stream itself, at its own offset: never a rename over its name */
        int fd = fcntl(stream, F_DUPFD_CLOEXEC, 3);
        af->f = fd >= 0 ? fdopen(fd, "wb") : NULL;
        if (!af->f) {
            if (fd >= 0)
                close(fd);
            return dp_fail(err, "%s: descriptor %d is not open", path, stream);
        }
        return 0;
    }
    /* A link is written through: its target is replaced, not the link (which may stand in
     * a directory this run does not own). */
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        if (!realpath(path, target))
            return dp_fail(err, "%s: a symbolic link to nothing that exists: %s; give a file",
                           path, strerror(errno));
        if (strlen(target) >= sizeof af->path)
            return dp_fail(err, "%s: path too long", target);
        snprintf(af->path, sizeof af->path, "%s", target);
        path = af->path;
    }
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
        return open_special(af, path, &st, err);
    snprintf(af->tmp, sizeof af->tmp, "%s.tmpXXXXXX", path);
    int fd = mkstemp(af->tmp);
    if (fd < 0)
        return dp_fail(err, "%s: cannot create a file there: %s", path, strerror(errno));
    temp_register(af->tmp, false);
    fchmod(fd, 0644);
    af->f = fdopen(fd, "wb");
    if (!af->f) {
        int e = errno;
        close(fd);
        unlink(af->tmp);
        temp_forget(af->tmp, false);
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
    if (failed)
        unlink(af->tmp);
    temp_forget(af->tmp, false);
    if (failed)
        return dp_fail(err, "%s: cannot write: %s", af->path, strerror(e ? e : EIO));
    sync_parent(af->path);
    return 0;
}

void dp_atomic_abort(dp_atomic_file *af)
{
    if (af->f) {
        fclose(af->f);
        af->f = NULL;
        if (af->tmp[0]) {
            unlink(af->tmp);
            temp_forget(af->tmp, false);
        }
    }
}

int dp_open_input(const char *path, dp_err *err)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    struct stat st = { 0 };
    if (fd < 0 && errno == ENXIO && stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        return dp_fail(err, "%s: is a socket, not a regular file; give a file", path);
    if (fd < 0)
        return dp_fail(err, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        const char *what = S_ISDIR(st.st_mode)    ? "a directory"
                           : S_ISFIFO(st.st_mode) ? "a named pipe"
                           : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                           : S_ISSOCK(st.st_mode) ? "a socket"
                                                  : "something else";
        return dp_fail(err, "%s: is %s, not a regular file; give a file%s", path, what,
                       S_ISDIR(st.st_mode) ? "" : " (a pipe or device cannot be read as an input)");
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}

FILE *dp_fopen_input(const char *path, dp_err *err)
{
    int fd = dp_open_input(path, err);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        dp_fail(err, "%s: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

int dp_read_file(const char *path, size_t max_bytes, unsigned char **buf, size_t *len,
                 dp_err *err)
{
    *buf = NULL;
    *len = 0;
    FILE *f = dp_fopen_input(path, err);
    if (!f)
        return -1;
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return dp_fail(err, "%s: cannot read: %s", path, strerror(errno));
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
