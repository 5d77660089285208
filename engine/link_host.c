/* link_host.c -- a bounded FIFO of micro-batches between two threads.
 *
 * Ownership: a slot between head and tail (a message) belongs to the receiver, the others to
 * the sender; both move only under the lock. The copy into or out of a slot happens outside the
 * lock, on a slot the copying side owns. */
#include "base/clock.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/link.h"

struct dp_link {
    dp_device *sender;
    dp_device *receiver; /* holds the slot memory when it is host memory */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int slots;
    size_t slot_floats;
    float *data;  /* [slots, slot_floats]; NULL with a device transport */
    void *xfer;   /* the backend's transport between two of its devices (GPUs: slots in the
                     receiver's memory), or NULL */
    size_t *len;  /* [slots]: floats in each message */
    long head;    /* next message to receive */
    long tail;    /* next slot to fill */
};

dp_link *dp_link_create(dp_device *sender, dp_device *receiver, int slots, size_t slot_floats,
                        dp_err *err)
{
    dp_link *l = calloc(1, sizeof *l);
    if (!l || !(l->len = calloc((size_t)slots, sizeof *l->len))) {
        free(l);
        dp_fail(err, "out of host memory for a link");
        return NULL;
    }
    l->sender = sender;
    l->receiver = receiver;
    l->slots = slots;
    l->slot_floats = slot_floats;
    bool made;
    if (sender->be == receiver->be && sender->be->xfer_create)
        made = (l->xfer = sender->be->xfer_create(sender, receiver, slots,
                                                  slot_floats * sizeof(float), err)) != NULL;
    else if (receiver->be->host_memory)
        made = (l->data = dp_device_alloc(receiver, dp_link_bytes(l), "pipeline link buffers",
                                          err)) != NULL;
    else if (!(made = (l->data = malloc(dp_link_bytes(l) ? dp_link_bytes(l) : 1)) != NULL))
        dp_fail(err, "out of host memory for pipeline link buffers");
    if (!made) {
        free(l->len);
        free(l);
        return NULL;
    }
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->changed, NULL);
    return l;
}

void dp_link_destroy(dp_link *l)
{
    if (!l)
        return;
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->changed);
    if (l->xfer)
        l->sender->be->xfer_destroy(l->xfer);
    if (l->data && l->receiver->be->host_memory)
        dp_device_free(l->receiver, l->data, dp_link_bytes(l));
    else
        free(l->data);
    free(l->len);
    free(l);
}

size_t dp_link_bytes(const dp_link *l)
{
    return (size_t)l->slots * l->slot_floats * sizeof(float);
}

void dp_link_send(dp_link *l, const float *src, size_t n, dp_link_time *t)
{
    double t0 = dp_now_s();
    pthread_mutex_lock(&l->lock);
    while (l->tail - l->head == l->slots)
        pthread_cond_wait(&l->changed, &l->lock);
    long slot = l->tail % l->slots;
    pthread_mutex_unlock(&l->lock);
    double t1 = dp_now_s();
    if (l->xfer)
        l->sender->be->xfer_send(l->xfer, (int)slot, src, n * sizeof *src);
    else
        l->sender->be->download(l->sender, l->data + (size_t)slot * l->slot_floats, src,
                                n * sizeof *src);
    l->len[slot] = n;
    double t2 = dp_now_s();
    pthread_mutex_lock(&l->lock);
    l->tail++;
    pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->lock);
    t->wait_s += t1 - t0;
    t->copy_s += t2 - t1;
}

size_t dp_link_recv(dp_link *l, float *dst, dp_link_time *t)
{
    double t0 = dp_now_s();
    pthread_mutex_lock(&l->lock);
    while (l->tail == l->head)
        pthread_cond_wait(&l->changed, &l->lock);
    long slot = l->head % l->slots;
    pthread_mutex_unlock(&l->lock);
    double t1 = dp_now_s();
    size_t n = l->len[slot];
    if (l->xfer) {
        l->sender->be->xfer_recv(l->xfer, (int)slot, dst, n * sizeof *dst);
    } else {
        l->receiver->be->upload(l->receiver, dst, l->data + (size_t)slot * l->slot_floats,
                                n * sizeof *dst);
        l->receiver->be->synchronize(l->receiver); /* the slot is reused once released */
    }
    double t2 = dp_now_s();
    pthread_mutex_lock(&l->lock);
    l->head++;
    pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->lock);
    t->wait_s += t1 - t0;
    t->copy_s += t2 - t1;
    return n;
}
