/* comm_cuda.cu -- all-reduce groups of GPUs: NCCL, or a reduction kernel when the members are
 * logical devices of one GPU (NCCL before 2.30 refuses two ranks on one GPU).
 *
 * Both kinds issue the sum on the member's comm stream, after an event of its compute stream
 * (the bucket's gradients are written), and return; cuda_group_join makes the compute stream
 * wait for the sums before the update reads them. So the all-reduce of a bucket overlaps the
 * rest of backward. */
extern "C" {
#include "engine/backend_cuda.h"
}

#include <nccl.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <unistd.h>

#include "engine/cuda_impl.h"
#include "engine/world.h"

enum comm_kind { KIND_NCCL, KIND_DIRECT };

struct dp_cuda_comm {
    int size;
    comm_kind kind;
    dp_device **members;  /* [size] */
    ncclComm_t *nccl;     /* [size], KIND_NCCL */
    /* KIND_DIRECT: the member threads meet at the barrier twice per all-reduce. Hand-off:
     * member r writes bufs[r] and records ready[r] before the first barrier, and records done[r]
     * before the second; between them each member reads the others' entries only. */
    pthread_barrier_t barrier;
    float **bufs;         /* [size] */
    cudaEvent_t *ready;   /* [size]: member r's gradients are written */
    cudaEvent_t *done;    /* [size]: member r's slice of every buffer holds the sum */
};

namespace {

const int MAX_MEMBERS = 64;

struct member_bufs {
    float *p[MAX_MEMBERS];
};

/* Sums elements [lo, hi) of every member's buffer in member order (as the host all-reduce
 * does, so results are bit-identical to it) and writes the sum into each. */
__global__ void reduce_slice_kernel(member_bufs b, int size, size_t lo, size_t hi)
{
    for (size_t i = lo + blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < hi;
         i += (size_t)gridDim.x * blockDim.x) {
        float s = b.p[0][i];
        for (int r = 1; r < size; r++)
            s += b.p[r][i];
        for (int r = 0; r < size; r++)
            b.p[r][i] = s;
    }
}

int nccl_fail(dp_err *err, const char *what, ncclResult_t r)
{
    return dp_fail(err, "NCCL: %s: %s", what, ncclGetErrorString(r));
}

/* NCCL takes two ranks on one GPU from 2.30 on, when NCCL_MULTI_RANK_GPU_ENABLE=1. */
bool nccl_takes_shared_gpus()
{
    int version = 0;
    const char *env = getenv("NCCL_MULTI_RANK_GPU_ENABLE");
    return ncclGetVersion(&version) == ncclSuccess && version >= 23000 && env &&
           strcmp(env, "1") == 0;
}

} // namespace

namespace {

/* In a world of several processes, one communicator spans the group's members in every
 * process: member r here is rank world_rank * size + r. Rank 0 makes the id, MPI shares it,
 * and this thread initialises every member's rank inside one NCCL group. */
ncclResult_t init_across_processes(ncclComm_t *comms, const int *ordinals, int size)
{
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    ncclResult_t res = ncclSuccess;
    if (dp_world_rank() == 0)
        res = ncclGetUniqueId(&id);
    dp_world_broadcast(&id, (int)sizeof id); /* every rank takes part, even after a failure */
    if (res != ncclSuccess)
        return res;
    int nranks = size * dp_world_size();
    ncclGroupStart();
    for (int r = 0; r < size; r++) {
        cudaSetDevice(ordinals[r]);
        ncclCommInitRank(&comms[r], nranks, id, dp_world_rank() * size + r);
    }
    return ncclGroupEnd();
}

/* Whether a GPU of this group is also one of another process's members on the same machine
 * (NCCL refuses two ranks on one GPU): every process of the run calls it for the group, and
 * all reach the same answer from the same gathered list of (machine, bus id). */
bool gpu_shared_across_processes(dp_device **members, int size)
{
    struct place {
        char host[64];
        char bus[32];
    };
    struct place *all = static_cast<struct place *>(calloc((size_t)dp_world_size() * size,
                                                           sizeof *all));
    struct place mine[MAX_MEMBERS];
    memset(mine, 0, sizeof mine);
    for (int r = 0; r < size; r++) {
        gethostname(mine[r].host, sizeof mine[r].host - 1);
        snprintf(mine[r].bus, sizeof mine[r].bus, "%s", members[r]->bus_id);
    }
    if (!all) /* the others are in the gather below: they must not wait forever */
        dp_world_abort(1);
    dp_world_allgather(mine, all, (int)(size * sizeof *mine));
    bool shared = false;
    size_t n = (size_t)dp_world_size() * size;
    for (size_t i = 0; i < n && !shared; i++)
        for (size_t j = i + 1; j < n && !shared; j++)
            shared = (int)(i / size) != (int)(j / size) &&
                     strcmp(all[i].host, all[j].host) == 0 &&
                     strcmp(all[i].bus, all[j].bus) == 0;
    free(all);
    return shared;
}

} // namespace

extern "C" {

void *cuda_group_create(dp_device **members, int size, dp_err *err)
{
    err->msg[0] = '\0';
    bool same_gpu = true, distinct = true;
    for (int r = 0; r < size; r++) {
        if (members[r]->be != &dp_backend_cuda)
            return NULL;
        int o = cuda_impl_of(members[r])->ordinal;
        same_gpu = same_gpu && o == cuda_impl_of(members[0])->ordinal;
        for (int q = 0; q < r; q++)
            distinct = distinct && o != cuda_impl_of(members[q])->ordinal;
    }
    if (size > MAX_MEMBERS)
        return NULL;
    if (dp_world_size() > 1 && gpu_shared_across_processes(members, size))
        distinct = false; /* processes of the run sharing a GPU */
    bool nccl = distinct || nccl_takes_shared_gpus();
    if ((!nccl && !same_gpu) || (!nccl && dp_world_size() > 1))
        return NULL; /* GPUs shared unevenly, or shared in a world of several processes: the
                        host all-reduce (and MPI) does it */
    dp_cuda_comm *c = static_cast<dp_cuda_comm *>(calloc(1, sizeof *c));
    if (!c || !(c->members = static_cast<dp_device **>(calloc(size, sizeof *c->members)))) {
        free(c);
        dp_fail(err, "out of host memory for a GPU communication group");
        return NULL;
    }
    c->size = size;
    memcpy(c->members, members, size * sizeof *members);
    int current = 0;
    cudaGetDevice(&current);
    if (nccl) {
        c->kind = KIND_NCCL;
        int ordinals[MAX_MEMBERS];
        for (int r = 0; r < size; r++)
            ordinals[r] = cuda_impl_of(members[r])->ordinal;
        c->nccl = static_cast<ncclComm_t *>(calloc(size, sizeof *c->nccl));
        ncclResult_t res = !c->nccl                 ? ncclSystemError
                           : dp_world_size() > 1     ? init_across_processes(c->nccl, ordinals, size)
                                                     : ncclCommInitAll(c->nccl, size, ordinals);
        if (res != ncclSuccess) {
            nccl_fail(err, dp_world_size() > 1 ? "ncclCommInitRank" : "ncclCommInitAll", res);
            free(c->nccl);
            c->nccl = NULL;
            cuda_group_destroy(c);
            c = NULL;
        }
    } else {
        c->kind = KIND_DIRECT;
        c->bufs = static_cast<float **>(calloc(size, sizeof *c->bufs));
        c->ready = static_cast<cudaEvent_t *>(calloc(size, sizeof *c->ready));
        c->done = static_cast<cudaEvent_t *>(calloc(size, sizeof *c->done));
        pthread_barrier_init(&c->barrier, NULL, (unsigned)size);
        bool ok = c->bufs && c->ready && c->done &&
                  cudaSetDevice(cuda_impl_of(members[0])->ordinal) == cudaSuccess;
        for (int r = 0; ok && r < size; r++)
            ok = cudaEventCreateWithFlags(&c->ready[r], cudaEventDisableTiming) == cudaSuccess &&
                 cudaEventCreateWithFlags(&c->done[r], cudaEventDisableTiming) == cudaSuccess;
        if (!ok) {
            dp_fail(err, "cannot make a GPU communication group: %s",
                    cudaGetErrorString(cudaGetLastError()));
            cuda_group_destroy(c);
            c = NULL;
        }
    }
    cudaSetDevice(current);
    return c;
}

void cuda_group_destroy(void *group)
{
    dp_cuda_comm *c = static_cast<dp_cuda_comm *>(group);
    if (!c)
        return;
    if (c->kind == KIND_NCCL) {
        for (int r = 0; c->nccl && r < c->size; r++)
            if (c->nccl[r])
                ncclCommDestroy(c->nccl[r]);
        free(c->nccl);
    } else {
        for (int r = 0; r < c->size; r++) {
            if (c->ready && c->ready[r])
                cudaEventDestroy(c->ready[r]);
            if (c->done && c->done[r])
                cudaEventDestroy(c->done[r]);
        }
        pthread_barrier_destroy(&c->barrier);
        free(c->bufs);
        free(c->ready);
        free(c->done);
    }
    free(c->members);
    free(c);
}

const char *cuda_group_kind(const void *group)
{
    const dp_cuda_comm *c = static_cast<const dp_cuda_comm *>(group);
    return c->kind == KIND_NCCL ? "NCCL" : "one-GPU reduction";
}

void cuda_group_allreduce(void *group, int rank, float *buf, size_t n)
{
    dp_cuda_comm *c = static_cast<dp_cuda_comm *>(group);
    dp_device *d = c->members[rank];
    if (c->kind == KIND_NCCL) {
        cuda_locked guard(d);
        cuda_impl *im = guard.im;
        CHECK_CUDA(im, cudaEventRecord(im->comm_ready, im->stream));
        CHECK_CUDA(im, cudaStreamWaitEvent(im->comm, im->comm_ready, 0));
        ncclResult_t res = ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, c->nccl[rank], im->comm);
        if (res != ncclSuccess)
            cuda_record_error(im, __FILE__, __LINE__, "ncclAllReduce", ncclGetErrorString(res));
        CHECK_CUDA(im, cudaEventRecord(im->comm_done, im->comm));
        im->comm_pending = true;
        return;
    }
    {
        cuda_locked guard(d);
        c->bufs[rank] = buf;
        CHECK_CUDA(guard.im, cudaEventRecord(c->ready[rank], guard.im->stream));
    }
    pthread_barrier_wait(&c->barrier);
    {
        cuda_locked guard(d);
        cuda_impl *im = guard.im;
        member_bufs b;
        for (int r = 0; r < c->size; r++) {
            b.p[r] = c->bufs[r];
            CHECK_CUDA(im, cudaStreamWaitEvent(im->comm, c->ready[r], 0));
        }
        size_t lo = n * rank / c->size, hi = n * (rank + 1) / c->size;
        size_t blocks = (hi - lo + 255) / 256;
        if (hi > lo)
            reduce_slice_kernel<<<blocks > 1024 ? 1024 : (unsigned)blocks, 256, 0, im->comm>>>(
                b, c->size, lo, hi);
        CHECK_CUDA(im, cudaGetLastError());
        CHECK_CUDA(im, cudaEventRecord(c->done[rank], im->comm));
    }
    pthread_barrier_wait(&c->barrier);
    cuda_locked guard(d);
    cuda_impl *im = guard.im;
    for (int r = 0; r < c->size; r++)
        if (r != rank)
            CHECK_CUDA(im, cudaStreamWaitEvent(im->comm, c->done[r], 0));
    CHECK_CUDA(im, cudaEventRecord(im->comm_done, im->comm));
    im->comm_pending = true;
}

void cuda_group_join(void *group, int rank)
{
    dp_cuda_comm *c = static_cast<dp_cuda_comm *>(group);
    cuda_locked guard(c->members[rank]);
    cuda_impl *im = guard.im;
    if (im->comm_pending) {
        CHECK_CUDA(im, cudaStreamWaitEvent(im->stream, im->comm_done, 0));
        im->comm_pending = false;
    }
}

} // extern "C"
