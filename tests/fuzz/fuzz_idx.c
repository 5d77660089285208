/* fuzz_idx.c -- libFuzzer target: the IDX reader (through zlib, so gzip streams too) on an
 * arbitrary file, held in a memory file so that no disk is touched. */
#define _GNU_SOURCE
#include "tests/fuzz/fuzz.h"
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "datasets/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("fuzz-idx", 0);
        if (fd < 0)
            return 0;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        return 0;
    dp_idx idx;
    dp_err err;
    if (dp_idx_read(path, &idx, &err) == 0)
        dp_idx_free(&idx);
    return 0;
}
