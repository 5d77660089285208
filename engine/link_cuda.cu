/* link_cuda.cu -- pipeline links between GPU devices: slots in the receiver's memory, filled by
 * cudaMemcpyPeerAsync on the sender's copy stream and emptied on the receiver's compute stream,
 * ordered by events; the host FIFO of link_host.c hands the slots over.
 *
 * Per slot: `sent` (sender's copy stream) is recorded before the slot's message is published,
 * and `consumed` (receiver's compute stream) before the slot is given back, so each side waits
 * on an event the other has already recorded. */
extern "C" {
#include "engine/backend_cuda.h"
}

#include <stdlib.h>

#include "engine/cuda_impl.h"

struct dp_cuda_xfer {
    dp_device *sender, *receiver;
    int slots;
    size_t slot_bytes;
    char *data;               /* [slots * slot_bytes] on the receiver */
    cudaEvent_t src_ready;    /* sender's compute stream: the message is written */
    cudaEvent_t *sent;        /* [slots] */
    cudaEvent_t *consumed;    /* [slots] */
};

extern "C" {

void *cuda_xfer_create(dp_device *sender, dp_device *receiver, int slots, size_t slot_bytes,
                       dp_err *err)
{
    dp_cuda_xfer *x = static_cast<dp_cuda_xfer *>(calloc(1, sizeof *x));
    if (!x || !(x->sent = static_cast<cudaEvent_t *>(calloc(slots, sizeof *x->sent))) ||
        !(x->consumed = static_cast<cudaEvent_t *>(calloc(slots, sizeof *x->consumed)))) {
        if (x)
            free(x->sent);
        free(x);
        dp_fail(err, "out of host memory for a link");
        return NULL;
    }
    x->sender = sender;
    x->receiver = receiver;
    x->slots = slots;
    x->slot_bytes = slot_bytes;
    x->data = static_cast<char *>(
        dp_device_alloc(receiver, (size_t)slots * slot_bytes, "pipeline link buffers", err));
    if (!x->data) {
        cuda_xfer_destroy(x);
        return NULL;
    }
    int current = 0;
    cudaGetDevice(&current);
    bool ok = cudaSetDevice(cuda_impl_of(sender)->ordinal) == cudaSuccess &&
              cudaEventCreateWithFlags(&x->src_ready, cudaEventDisableTiming) == cudaSuccess;
    for (int s = 0; ok && s < slots; s++)
        ok = cudaEventCreateWithFlags(&x->sent[s], cudaEventDisableTiming) == cudaSuccess;
    ok = ok && cudaSetDevice(cuda_impl_of(receiver)->ordinal) == cudaSuccess;
    for (int s = 0; ok && s < slots; s++)
        ok = cudaEventCreateWithFlags(&x->consumed[s], cudaEventDisableTiming) == cudaSuccess;
    cudaSetDevice(current);
    if (!ok) {
        dp_fail(err, "cannot make a link's events: %s", cudaGetErrorString(cudaGetLastError()));
        cuda_xfer_destroy(x);
        return NULL;
    }
    return x;
}

void cuda_xfer_destroy(void *xfer)
{
    dp_cuda_xfer *x = static_cast<dp_cuda_xfer *>(xfer);
    if (!x)
        return;
    if (x->data)
        dp_device_free(x->receiver, x->data, (size_t)x->slots * x->slot_bytes);
    if (x->src_ready)
        cudaEventDestroy(x->src_ready);
    for (int s = 0; s < x->slots; s++) {
        if (x->sent[s])
            cudaEventDestroy(x->sent[s]);
        if (x->consumed[s])
            cudaEventDestroy(x->consumed[s]);
    }
    free(x->sent);
    free(x->consumed);
    free(x);
}

void cuda_xfer_send(void *xfer, int slot, const void *src, size_t bytes)
{
    dp_cuda_xfer *x = static_cast<dp_cuda_xfer *>(xfer);
    cuda_locked guard(x->sender);
    cuda_impl *im = guard.im;
    CHECK_CUDA(im, cudaEventRecord(x->src_ready, im->stream));
    CHECK_CUDA(im, cudaStreamWaitEvent(im->copy, x->src_ready, 0));
    CHECK_CUDA(im, cudaStreamWaitEvent(im->copy, x->consumed[slot], 0));
    if (bytes)
        CHECK_CUDA(im, cudaMemcpyPeerAsync(x->data + (size_t)slot * x->slot_bytes,
                                           cuda_impl_of(x->receiver)->ordinal, src, im->ordinal,
                                           bytes, im->copy));
    CHECK_CUDA(im, cudaEventRecord(x->sent[slot], im->copy));
    /* the sender's later work may overwrite src: it waits for the copy */
    CHECK_CUDA(im, cudaStreamWaitEvent(im->stream, x->sent[slot], 0));
}

void cuda_xfer_recv(void *xfer, int slot, void *dst, size_t bytes)
{
    dp_cuda_xfer *x = static_cast<dp_cuda_xfer *>(xfer);
    cuda_locked guard(x->receiver);
    cuda_impl *im = guard.im;
    cuda_begin(im);
    CHECK_CUDA(im, cudaStreamWaitEvent(im->stream, x->sent[slot], 0));
    if (bytes)
        CHECK_CUDA(im, cudaMemcpyAsync(dst, x->data + (size_t)slot * x->slot_bytes, bytes,
                                       cudaMemcpyDeviceToDevice, im->stream));
    CHECK_CUDA(im, cudaEventRecord(x->consumed[slot], im->stream));
}

} // extern "C"
