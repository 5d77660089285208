/* peak.c -- peak FLOP/s: the GPU table, and the CPU rate's cache (peak.h). */
#include "engine/peak.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- GPUs: dense (no sparsity) float32 GEMM peaks from NVIDIA's datasheets, TFLOP/s ---- */

typedef struct gpu_peak {
    const char *name; /* a word of CUDA's name for the model */
    double fp32, tf32;
} gpu_peak;

/* More specific names first: "H100 PCIe" before "H100". Pre-Ampere GPUs have no TF32. */
static const gpu_peak gpu_peaks[] = {
    { "GH200", 67.0, 494.7 },
    { "H200 NVL", 60.0, 417.5 },
    { "H200", 67.0, 494.7 },     /* SXM */
    { "H100 NVL", 60.0, 417.5 },
    { "H100 PCIe", 51.2, 378.0 },
    { "H100", 67.0, 494.7 },     /* SXM5: "NVIDIA H100 80GB HBM3" */
    { "B200", 80.0, 1100.0 },
    { "A100", 19.5, 156.0 },     /* SXM4 and PCIe */
    { "A30", 10.3, 82.0 },
    { "A10", 31.2, 62.5 },
    { "L40S", 91.6, 183.0 },
    { "L40", 90.5, 90.5 },
    { "L4", 30.3, 60.0 },
    { "RTX 4090", 82.6, 82.6 },
    { "RTX 3090", 35.6, 35.6 },
    { "V100-PCIE", 14.0, 14.0 },
    { "V100", 15.7, 15.7 },      /* SXM2 */
    { "T4", 8.1, 8.1 },
};

/* Whether `word` is in `s` with no letter or digit just before or after it. */
static bool has_word(const char *s, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = strstr(s, word); p; p = strstr(p + 1, word)) {
        bool before = p == s || !isalnum((unsigned char)p[-1]);
        bool after = !isalnum((unsigned char)p[n]);
        if (before && after)
            return true;
    }
    return false;
}

double dp_peak_gpu_flops(const char *model, bool tf32)
{
    for (size_t i = 0; i < sizeof gpu_peaks / sizeof gpu_peaks[0]; i++)
        if (has_word(model, gpu_peaks[i].name))
            return 1e12 * (tf32 ? gpu_peaks[i].tf32 : gpu_peaks[i].fp32);
    return 0;
}

/* ---- the CPU rate's cache ---- */

#define CACHE_FILE "cpu-peak"
#define CACHE_MAX_BYTES 65536
#define CACHE_MAX_LINES 64

int dp_peak_cache_dir(char *buf, size_t size)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (xdg && xdg[0] == '/') /* the XDG spec: a relative path is to be ignored */
        n = snprintf(buf, size, "%s/dpmptop", xdg);
    else if (home && home[0] == '/')
        n = snprintf(buf, size, "%s/.cache/dpmptop", home);
    else
        n = -1;
    if (n < 0 || (size_t)n >= size) {
        if (size)
            buf[0] = '\0';
        return -1;
    }
    return 0;
}

void dp_peak_cpu_key(char *buf, size_t size, int cores)
{
    char model[128] = "CPU", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) != 0 || !colon)
            continue;
        colon += 1 + strspn(colon + 1, " \t");
        colon[strcspn(colon, "\n")] = '\0';
        if (*colon)
            snprintf(model, sizeof model, "%s", colon);
        break;
    }
    if (f)
        fclose(f);
    for (char *p = model; *p; p++) /* one line of printable text */
        if (!isprint((unsigned char)*p))
            *p = ' ';
    snprintf(buf, size, "%d %s", cores, model);
}

/* The cache file's text (NUL-terminated; NULL when it is missing, a link, not a regular file
 * or too large). Never follows a link, never blocks on a FIFO. */
static char *read_cache(const char *path)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *text = NULL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size < CACHE_MAX_BYTES &&
        (text = malloc((size_t)st.st_size + 1))) {
        ssize_t n = read(fd, text, (size_t)st.st_size);
        if (n < 0) {
            free(text);
            text = NULL;
        } else {
            text[n] = '\0';
        }
    }
    close(fd);
    return text;
}

/* The rate a cache line gives `key`, or 0 when the line is another machine's or garbage. */
static double line_rate(const char *line, const char *key)
{
    char *end;
    errno = 0;
    double v = strtod(line, &end);
    if (errno || end == line || *end != ' ' || strcmp(end + 1, key) != 0)
        return 0;
    return v >= DP_PEAK_MIN && v <= DP_PEAK_MAX ? v : 0;
}

double dp_peak_cache_load(const char *dir, const char *key)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/" CACHE_FILE, dir);
    char *text = read_cache(path), *save = NULL;
    double rate = 0;
    for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line && !rate;
         line = strtok_r(NULL, "\n", &save))
        rate = line_rate(line, key);
    free(text);
    return rate;
}

/* mkdir -p for dir, 0700. */
static int make_dirs(const char *dir, dp_err *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p)
            continue;
        char was = *p;
        *p = '\0';
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
            return dp_fail(err, "%s: cannot make the directory: %s", path, strerror(errno));
        if (!(*p = was))
            return 0;
    }
}

/* Writes the other machines' believable lines of the old text and ours into f. */
static void write_lines(FILE *f, char *old, const char *key, double flops)
{
    fputs("# dpmptop: SGEMM FLOP/s on all cores, per machine (dpmptop --measure-peak)\n", f);
    int kept = 0;
    char *save = NULL;
    for (char *line = old ? strtok_r(old, "\n", &save) : NULL; line && kept < CACHE_MAX_LINES;
         line = strtok_r(NULL, "\n", &save)) {
        char *space = strchr(line, ' ');
        if (line[0] == '#' || !space || line_rate(line, space + 1) == 0 ||
            strcmp(space + 1, key) == 0)
            continue;
        fprintf(f, "%s\n", line);
        kept++;
    }
    fprintf(f, "%.6g %s\n", flops, key);
}

int dp_peak_cache_store(const char *dir, const char *key, double flops, dp_err *err)
{
    char path[4200], tmp[4300];
    if (make_dirs(dir, err) < 0)
        return -1;
    snprintf(path, sizeof path, "%s/" CACHE_FILE, dir);
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    int fd = mkstemp(tmp); /* O_EXCL: never an existing file or link */
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        return dp_fail(err, "%s: cannot write: %s", path, strerror(e));
    }
    char *old = read_cache(path);
    write_lines(f, old, key, flops);
    free(old);
    bool bad = ferror(f) | (fflush(f) != 0) | (fsync(fileno(f)) != 0);
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) < 0) { /* rename replaces a link, never follows it */
        int e = errno;
        unlink(tmp);
        return dp_fail(err, "%s: cannot write: %s", path, strerror(e));
    }
    return 0;
}

double dp_peak_cpu_flops(const char *dir, const char *key, bool remeasure,
                         dp_peak_measure_fn measure, bool *measured)
{
    double rate = dir && !remeasure ? dp_peak_cache_load(dir, key) : 0;
    *measured = rate <= 0;
    if (rate > 0)
        return rate;
    rate = measure();
    if (!(rate >= DP_PEAK_MIN && rate <= DP_PEAK_MAX))
        return 0;
    dp_err ignored; /* without a cache the next run measures again: no harm */
    if (dir)
        dp_peak_cache_store(dir, key, rate, &ignored);
    return rate;
}

double dp_peak_mfu(double flops, double seconds, double *peak)
{
    if (!(*peak > 0) || !(seconds > 0) || !(flops >= 0))
        return -1;
    double rate = flops / seconds;
    if (rate > *peak) { /* the peak was measured low (a busy machine): this is the best seen */
        *peak = rate;
        return 1;
    }
    return rate / *peak;
}
