/* fuzz_text.c -- libFuzzer target: a text file read (plain or .gz, through dp_data_read_all)
 * and cut into windows; the first byte of the input picks the context (0 to 255), the rest is
 * the file, held in a memory file so that no disk is touched. */
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
    if (size == 0)
        return 0;
    if (fd < 0) {
        fd = memfd_create("fuzz-text", 0);
        if (fd < 0)
            return 0;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data + 1, size - 1, 0) != (ssize_t)(size - 1))
        return 0;
    dp_dataset train, test;
    dp_err err;
    if (dp_text_load(path, data[0], &train, &test, &err) == 0) {
        dp_dataset_free(&train);
        dp_dataset_free(&test);
    }
    return 0;
}
