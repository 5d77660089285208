/* cuda_none.c -- the CUDA backend of a build without CUDA (Makefile.am compiles it in place of
 * backend_cuda.cu, comm_cuda.cu and link_cuda.cu when configure found no CUDA toolkit): a
 * table that says so and makes no device, so that the engine and the app ask the table rather
 * than the build. */
#include "engine/backend.h"

static int none_device_count(dp_err *err)
{
    return dp_fail(err, "this build has no CUDA support");
}

static int none_device_init(dp_device *d, int index, int ordinal, bool tf32, dp_err *err)
{
    (void)d;
    (void)index;
    (void)tf32;
    return dp_fail(err, "cuda:%d: this build has no CUDA support", ordinal);
}

/* Every operation slot is NULL: no device of this table is ever made. */
const dp_backend dp_backend_cuda = {
    .name = "cuda",
    .built = false,
    .device_count = none_device_count,
    .device_init = none_device_init,
};
