/* test_comm.c -- the host all-reduce and pipeline links, between real threads.
 *
 * All-reduce: G threads (G = 1, 2, 3, 4, 7) reduce buffers of n floats (n = 0, 1, 5, 1000,
 * 100003) for 50 rounds (10 for the longest) in one group, with no other synchronisation
 * between rounds; after each round every buffer must equal, bit for bit, the float sum in rank
 * order ((b0 + b1) + b2) + ...
 * Links: a producer and a consumer thread move thousands of messages of varying lengths (0
 * included) through 1 and 2 slots; the link's memory is counted on the receiving device; the
 * wait and copy times add up, and a late consumer (or producer) shows as the other side's wait.
 *
 * Device sets: a set makes its devices through the backends' tables; trainers borrow it, one
 * after another or alive together, and leave the devices as they found them.
 *
 * Threads never call ck_assert: they record the first mismatch, and the test thread checks it
 * after joining them. A hang fails the test by Check's timeout. */
#include "tests/unit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datasets/dataset.h"
#include "engine/backend.h"
#include "engine/backend_cpu.h"
#include "engine/comm.h"
#include "engine/devices.h"
#include "engine/link.h"
#include "engine/trainer.h"

#define ROUNDS 50     /* rounds in one group ... */
#define BIG_ROUNDS 10 /* ... or for the longest buffer */
#define BIG_N 10000
#define MAX_GROUP 7

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* ---- all-reduce ---- */

/* Element i of rank r's buffer in round k: magnitudes from about 1e-3 to 1e3 and both signs, so
 * that the order of the additions changes the rounded sum. */
static float ar_value(int round, int rank, size_t i)
{
    uint32_t h = (uint32_t)i * 2654435761u ^ (uint32_t)(rank + 1) * 40503u ^ (uint32_t)round * 97u;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    float mant = (float)(h & 0xffff) / 65536.0f + 0.5f; /* [0.5, 1.5) */
    static const float scale[7] = { 1e-3f, 3.7e-2f, 1.0f, 13.0f, 411.0f, 1e3f, 0.25f };
    float v = mant * scale[(h >> 16) % 7];
    return (h >> 24) & 1 ? -v : v;
}

/* The sum every member must get: ((v0 + v1) + v2) + ... in float. */
static float ar_expected(int round, int size, size_t i)
{
    volatile float s = ar_value(round, 0, i); /* volatile: each partial sum rounded to float */
    for (int r = 1; r < size; r++)
        s = s + ar_value(round, r, i);
    return s;
}

typedef struct ar_member {
    dp_comm *comm;
    int rank, size;
    size_t n;
    int rounds;
    float *buf;        /* [n + 1]: the last float is a guard the all-reduce must not touch */
    int bad_round;     /* first round with a wrong element, or -1 */
    size_t bad_index;
    float got, want;
} ar_member;

#define GUARD 12345.5f

static void *ar_thread(void *arg)
{
    ar_member *a = arg;
    a->bad_round = -1;
    for (int round = 0; round < a->rounds; round++) {
        for (size_t i = 0; i < a->n; i++)
            a->buf[i] = ar_value(round, a->rank, i);
        a->buf[a->n] = GUARD;
        dp_comm_allreduce(a->comm, a->rank, a->buf, a->n);
        for (size_t i = 0; i <= a->n && a->bad_round < 0; i++) {
            float want = i < a->n ? ar_expected(round, a->size, i) : GUARD;
            if (float_bits(a->buf[i]) != float_bits(want)) {
                a->bad_round = round;
                a->bad_index = i;
                a->got = a->buf[i];
                a->want = want;
            }
        }
    }
    return NULL;
}

/* G members, n floats each, ROUNDS (BIG_ROUNDS past BIG_N floats) rounds in one group: every
 * buffer is the rank-order float sum bit for bit after every round (so all are bit-identical),
 * and nothing past n is written. */
static void check_allreduce(int G, size_t n)
{
    dp_err err;
    dp_device devs[MAX_GROUP], *members[MAX_GROUP];
    for (int r = 0; r < G; r++) {
        ck_assert_int_eq(dp_cpu_device_init(&devs[r], r, 1, &err), 0);
        members[r] = &devs[r];
    }
    dp_comm *c = dp_comm_create(members, G, &err);
    ck_assert_msg(c != NULL, "dp_comm_create(%d): %s", G, err.msg);
    ar_member m[MAX_GROUP];
    pthread_t th[MAX_GROUP];
    for (int r = 0; r < G; r++) {
        m[r] = (ar_member){ .comm = c, .rank = r, .size = G, .n = n,
                          .rounds = n > BIG_N ? BIG_ROUNDS : ROUNDS, .bad_round = -1 };
        m[r].buf = malloc((n + 1) * sizeof *m[r].buf);
        ck_assert(m[r].buf != NULL);
    }
    for (int r = 0; r < G; r++)
        ck_assert_int_eq(pthread_create(&th[r], NULL, ar_thread, &m[r]), 0);
    for (int r = 0; r < G; r++)
        ck_assert_int_eq(pthread_join(th[r], NULL), 0);
    for (int r = 0; r < G; r++)
        ck_assert_msg(m[r].bad_round < 0,
                      "G %d n %zu: rank %d, round %d, element %zu is %.9g (0x%08x), want %.9g "
                      "(0x%08x)",
                      G, n, r, m[r].bad_round, m[r].bad_index, m[r].got, float_bits(m[r].got),
                      m[r].want, float_bits(m[r].want));
    /* the last round's buffers, compared with each other directly */
    for (int r = 1; r < G; r++)
        ck_assert_msg(!memcmp(m[r].buf, m[0].buf, n * sizeof *m[0].buf),
                      "G %d n %zu: rank %d's buffer differs from rank 0's", G, n, r);
    for (int r = 0; r < G; r++)
        free(m[r].buf);
    ck_assert(!dp_comm_on_device(c)); /* CPU members: the host all-reduce */
    ck_assert_str_eq(dp_comm_kind(c), "host");
    dp_comm_destroy(c);
    for (int r = 0; r < G; r++)
        dp_cpu_device_destroy(&devs[r]);
}

static const int group_sizes[] = { 1, 2, 3, 4, 7 };
static const size_t lengths[] = { 0, 1, 5, 1000, 100003 };

/* One loop iteration per group size: the rank-order sum, bit-exact, for every length. */
START_TEST(test_allreduce)
{
    int G = group_sizes[_i];
    for (size_t k = 0; k < sizeof lengths / sizeof *lengths; k++)
        check_allreduce(G, lengths[k]);
}
END_TEST

/* The expected sums really depend on the order of the additions for these values (so the
 * bit-exact check above can tell a different order apart). */
START_TEST(test_allreduce_order_matters)
{
    size_t differ = 0;
    for (size_t i = 0; i < 1000; i++) {
        volatile float rev = ar_value(0, 6, i);
        for (int r = 5; r >= 0; r--)
            rev = rev + ar_value(0, r, i);
        differ += float_bits(rev) != float_bits(ar_expected(0, 7, i));
    }
    ck_assert_msg(differ >= 10, "only %zu of 1000 sums change with the order", differ);
}
END_TEST

/* ---- links ---- */

#define SLOT_FLOATS 37
#define MESSAGES 3000

static dp_device device(void)
{
    dp_device dev;
    dp_err err;
    ck_assert_msg(dp_cpu_device_init(&dev, 0, 1, &err) == 0, "device: %s", err.msg);
    return dev;
}

/* Length of message k: every length from 0 to SLOT_FLOATS, in a scrambled order. */
static size_t msg_len(int k)
{
    return (size_t)((k * 7 + k / 5) % (SLOT_FLOATS + 1));
}

static float msg_value(int k, size_t i)
{
    return (float)k + (float)i / 64.0f;
}

/* Set by the side of a pair that starts at once, just before its first transfer: the late
 * side counts its delay from then, so that a thread scheduled late on a loaded machine cannot
 * make the other side's wait vanish. */
static atomic_int pair_started;

/* Starts a side's transfers: the late one LATE_MS after the other side began. */
static void start_side(int delay_ms)
{
    if (!delay_ms) {
        atomic_store(&pair_started, 1);
        return;
    }
    while (!atomic_load(&pair_started))
        sleep_ms(1);
    sleep_ms(delay_ms);
}

typedef struct link_side {
    dp_link *link;
    int messages;
    int delay_ms;      /* sleep before the first transfer */
    dp_link_time t;
    int bad_message;   /* consumer: first wrong message, or -1 */
    size_t bad_len, bad_index;
    float got, want;
} link_side;

/* Sends `messages` messages from one buffer that is overwritten after every send. */
static void *producer(void *arg)
{
    link_side *p = arg;
    float src[SLOT_FLOATS];
    start_side(p->delay_ms);
    for (int k = 0; k < p->messages; k++) {
        size_t n = msg_len(k);
        for (size_t i = 0; i < n; i++)
            src[i] = msg_value(k, i);
        dp_link_send(p->link, src, n, &p->t);
        for (size_t i = 0; i < SLOT_FLOATS; i++)
            src[i] = -1.0f; /* the link must have copied the message */
    }
    return NULL;
}

/* Receives `messages` messages and checks each one's length and contents. */
static void *consumer(void *arg)
{
    link_side *c = arg;
    float dst[SLOT_FLOATS + 1];
    c->bad_message = -1;
    start_side(c->delay_ms);
    for (int k = 0; k < c->messages; k++) {
        for (size_t i = 0; i <= SLOT_FLOATS; i++)
            dst[i] = -2.0f;
        size_t n = dp_link_recv(c->link, dst, &c->t);
        if (c->bad_message >= 0)
            continue;
        if (n != msg_len(k)) {
            c->bad_message = k;
            c->bad_len = n;
            continue;
        }
        for (size_t i = 0; i <= SLOT_FLOATS; i++) {
            float want = i < n ? msg_value(k, i) : -2.0f; /* nothing past the message */
            if (float_bits(dst[i]) != float_bits(want)) {
                c->bad_message = k;
                c->bad_len = n;
                c->bad_index = i;
                c->got = dst[i];
                c->want = want;
                break;
            }
        }
    }
    return NULL;
}

/* Runs a producer and a consumer thread over l; returns their sides. */
static void run_pair(dp_link *l, int messages, int producer_delay_ms, int consumer_delay_ms,
                     link_side *p, link_side *c)
{
    *p = (link_side){ .link = l, .messages = messages, .delay_ms = producer_delay_ms };
    *c = (link_side){ .link = l, .messages = messages, .delay_ms = consumer_delay_ms };
    atomic_store(&pair_started, producer_delay_ms && consumer_delay_ms); /* both late: no wait */
    pthread_t tp, tc;
    ck_assert_int_eq(pthread_create(&tc, NULL, consumer, c), 0);
    ck_assert_int_eq(pthread_create(&tp, NULL, producer, p), 0);
    ck_assert_int_eq(pthread_join(tp, NULL), 0);
    ck_assert_int_eq(pthread_join(tc, NULL), 0);
}

static void check_times(const char *who, int slots, const dp_link_time *t)
{
    ck_assert_msg(t->wait_s >= 0.0 && t->copy_s >= 0.0, "%s, %d slots: wait %g s, copy %g s", who,
                  slots, t->wait_s, t->copy_s);
    ck_assert_msg(t->wait_s < 30.0 && t->copy_s < 30.0, "%s, %d slots: wait %g s, copy %g s", who,
                  slots, t->wait_s, t->copy_s);
}

/* MESSAGES messages of lengths 0..SLOT_FLOATS through 1 and 2 slots (each slot reused
 * thousands of times) arrive in order with their lengths and contents; the slots' bytes are
 * held by the receiving device from create to destroy; times are non-negative. */
START_TEST(test_link_transfer)
{
    dp_device dev = device();
    for (int slots = 1; slots <= 2; slots++) {
        size_t held = dev.mem_held;
        dp_err err;
        dp_link *l = dp_link_create(&dev, &dev, slots, SLOT_FLOATS, &err);
        ck_assert_msg(l != NULL, "dp_link_create(%d slots): %s", slots, err.msg);
        size_t bytes = dp_link_bytes(l);
        ck_assert_msg(bytes == (size_t)slots * SLOT_FLOATS * sizeof(float),
                      "%d slots of %d floats: %zu bytes", slots, SLOT_FLOATS, bytes);
        ck_assert_msg(dev.mem_held == held + bytes, "%d slots: device holds %zu bytes, want %zu",
                      slots, dev.mem_held, held + bytes);
        link_side p, c;
        run_pair(l, MESSAGES, 0, 0, &p, &c);
        ck_assert_msg(c.bad_message < 0,
                      "%d slots: message %d: length %zu (want %zu), float %zu is %.9g, want %.9g",
                      slots, c.bad_message, c.bad_len, msg_len(c.bad_message), c.bad_index, c.got,
                      c.want);
        check_times("producer", slots, &p.t);
        check_times("consumer", slots, &c.t);
        dp_link_destroy(l);
        ck_assert_msg(dev.mem_held == held,
                      "%d slots: device holds %zu bytes after destroy, want %zu", slots,
                      dev.mem_held, held);
    }
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* A link of k slots takes k messages with no receiver (one thread sends them all, then
 * receives them in order). */
START_TEST(test_link_capacity)
{
    dp_device dev = device();
    for (int slots = 1; slots <= 3; slots++) {
        dp_err err;
        dp_link *l = dp_link_create(&dev, &dev, slots, SLOT_FLOATS, &err);
        ck_assert_msg(l != NULL, "dp_link_create(%d slots): %s", slots, err.msg);
        dp_link_time t = { 0.0, 0.0 };
        float src[SLOT_FLOATS], dst[SLOT_FLOATS];
        for (int round = 0; round < 3; round++) {
            for (int k = 0; k < slots; k++) {
                size_t n = (size_t)(k + round) % 3 == 2 ? 0 : (size_t)(k + 1);
                for (size_t i = 0; i < n; i++)
                    src[i] = (float)(100 * round + 10 * k) + (float)i;
                dp_link_send(l, src, n, &t);
            }
            for (int k = 0; k < slots; k++) {
                size_t want_n = (size_t)(k + round) % 3 == 2 ? 0 : (size_t)(k + 1);
                size_t n = dp_link_recv(l, dst, &t);
                ck_assert_msg(n == want_n,
                              "%d slots, round %d: message %d has %zu floats, want %zu", slots,
                              round, k, n, want_n);
                for (size_t i = 0; i < n; i++)
                    ck_assert_msg(dst[i] == (float)(100 * round + 10 * k) + (float)i,
                                  "%d slots, round %d: message %d float %zu is %g", slots, round,
                                  k, i, dst[i]);
            }
        }
        check_times("one thread", slots, &t);
        dp_link_destroy(l);
    }
    ck_assert_msg(dev.mem_held == 0, "device holds %zu bytes after every link is gone",
                  dev.mem_held);
    dp_cpu_device_destroy(&dev);
}
END_TEST

#define LATE_MS 20

/* With 1 slot, a consumer that starts LATE_MS late makes the producer's second send wait for
 * it; a producer that starts late makes the consumer wait. */
START_TEST(test_link_wait)
{
    dp_device dev = device();
    dp_err err;
    dp_link *l = dp_link_create(&dev, &dev, 1, SLOT_FLOATS, &err);
    ck_assert_msg(l != NULL, "dp_link_create: %s", err.msg);
    link_side p, c;

    run_pair(l, 2, 0, LATE_MS, &p, &c);
    ck_assert_msg(c.bad_message < 0, "late consumer: message %d is wrong", c.bad_message);
    check_times("producer", 1, &p.t);
    check_times("consumer", 1, &c.t);
    ck_assert_msg(p.t.wait_s > 0.002,
                  "late consumer: the producer waited %g s for a slot (consumer %d ms late)",
                  p.t.wait_s, LATE_MS);

    run_pair(l, 2, LATE_MS, 0, &p, &c);
    ck_assert_msg(c.bad_message < 0, "late producer: message %d is wrong", c.bad_message);
    check_times("producer", 1, &p.t);
    check_times("consumer", 1, &c.t);
    ck_assert_msg(c.t.wait_s > 0.002,
                  "late producer: the consumer waited %g s for a message (producer %d ms late)",
                  c.t.wait_s, LATE_MS);

    /* times add to what the caller's dp_link_time held already */
    dp_link_time t = { 1000.0, 2000.0 };
    float x[1] = { 3.0f }, y[1] = { 0.0f };
    dp_link_send(l, x, 1, &t);
    ck_assert_msg(t.wait_s >= 1000.0 && t.copy_s >= 2000.0, "send replaced the times: %g %g",
                  t.wait_s, t.copy_s);
    ck_assert_msg(dp_link_recv(l, y, &t) == 1 && y[0] == 3.0f, "got %g", y[0]);
    ck_assert_msg(t.wait_s >= 1000.0 && t.copy_s >= 2000.0, "recv replaced the times: %g %g",
                  t.wait_s, t.copy_s);
    dp_link_destroy(l);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* ---- device sets ---- */

START_TEST(test_device_set_cpu)
{
    dp_err err;
    dp_device_set *set = dp_device_set_create(3, NULL, false, &err);
    ck_assert_msg(set != NULL, "dp_device_set_create: %s", err.msg);
    ck_assert_int_eq(dp_device_set_count(set), 3);
    dp_device *devs = dp_device_set_devices(set);
    dp_device *members[3];
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "cpu:%d", i);
        ck_assert_str_eq(devs[i].name, name);
        ck_assert_int_eq(devs[i].index, i);
        ck_assert_ptr_eq(devs[i].be, &dp_backend_cpu);
        members[i] = &devs[i];
    }
    /* CPU devices all-reduce in a host group */
    dp_comm *c = dp_comm_create(members, 3, &err);
    ck_assert_msg(c != NULL, "dp_comm_create: %s", err.msg);
    ck_assert_str_eq(dp_comm_kind(c), "host");
    ck_assert(!dp_comm_on_device(c));
    dp_comm_destroy(c);
    dp_device_set_destroy(set);
    dp_device_set_destroy(NULL);
}
END_TEST

/* A build without CUDA makes no CUDA device, and says so as it did before the table did. */
START_TEST(test_device_set_without_cuda)
{
    if (dp_backend_cuda.built)
        return; /* with CUDA, the answer depends on the machine's GPUs: tests/cuda.sh */
    dp_err err;
    dp_device_spec specs[2] = { { .cuda = false }, { .cuda = true, .ordinal = 3 } };
    ck_assert_ptr_null(dp_device_set_create(2, specs, false, &err));
    ck_assert_str_eq(err.msg, "cuda:3: this build has no CUDA support");
}
END_TEST

/* A data-parallel trainer of a small MLP on set, seeded alike every time. */
static dp_trainer *small_trainer(dp_device_set *set, const dp_model *m, const dp_dataset *train,
                                 const dp_dataset *test)
{
    dp_trainer_config tc = {
        .model = m, .optim = dp_optim_defaults(), .batch = 16, .shuffle = true, .seed = 5,
        .total_steps = 8, .on_nan = DP_NAN_STOP, .devices = set,
        .plan = { .strategy = DP_STRATEGY_DP }, .bucket_mb = 25,
    };
    dp_err err;
    bool refused;
    dp_trainer *t = dp_trainer_create(&tc, train, test, NULL, &refused, &err);
    ck_assert_msg(t != NULL, "dp_trainer_create: %s", err.msg);
    return t;
}

static double step_loss(dp_trainer *t)
{
    dp_step_report r;
    dp_err err;
    ck_assert_msg(dp_trainer_step(t, &r, &err) == 0, "step: %s", err.msg);
    return r.loss;
}

/* Trainers borrow the set: the second, built after the first is gone, and a third alive beside
 * it, train exactly as the first did, and every one leaves the devices' memory as it was. */
START_TEST(test_device_set_shared_by_trainers)
{
    dp_err err;
    dp_data_config dc = dp_data_defaults();
    dc.kind = DP_DATA_SYNTHETIC;
    dc.features = 12;
    dc.classes = 3;
    dc.samples = 64;
    dc.test_samples = 16;
    dp_dataset train, test;
    ck_assert_msg(dp_data_load(&dc, 1, &train, &test, &err) == 0, "data: %s", err.msg);
    dp_model m;
    ck_assert_msg(dp_model_parse(&m, "linear:8,relu,linear:3", 12, 3, &err) == 0, "%s", err.msg);
    dp_device_set *set = dp_device_set_create(2, NULL, false, &err);
    ck_assert_msg(set != NULL, "dp_device_set_create: %s", err.msg);
    dp_device *devs = dp_device_set_devices(set);

    enum { STEPS = 4 };
    double first[STEPS];
    dp_trainer *a = small_trainer(set, &m, &train, &test);
    ck_assert_ptr_eq(dp_trainer_device(a, 1), &devs[1]);
    for (int i = 0; i < STEPS; i++)
        first[i] = step_loss(a);
    dp_trainer_destroy(a);
    ck_assert_uint_eq(devs[0].mem_held, 0);
    ck_assert_uint_eq(devs[1].mem_held, 0);

    dp_trainer *b = small_trainer(set, &m, &train, &test);
    dp_trainer *c = small_trainer(set, &m, &train, &test);
    for (int i = 0; i < STEPS; i++) { /* stepped in turn by this one thread */
        double lb = step_loss(b), lc = step_loss(c);
        ck_assert_msg(lb == first[i] && lc == first[i], "step %d: loss %.9g and %.9g, not %.9g",
                      i + 1, lb, lc, first[i]);
    }
    dp_trainer_destroy(b);
    dp_trainer_destroy(c);
    ck_assert_uint_eq(devs[0].mem_held, 0);
    ck_assert_uint_eq(devs[1].mem_held, 0);
    dp_device_set_destroy(set);
    dp_model_free(&m);
    dp_dataset_free(&train);
    dp_dataset_free(&test);
}
END_TEST

Suite *comm_suite(void)
{
    Suite *s = suite_create("comm");
    TCase *ta = tcase_create("allreduce");
    tcase_set_timeout(ta, 10);
    tcase_add_loop_test(ta, test_allreduce, 0, (int)(sizeof group_sizes / sizeof *group_sizes));
    tcase_add_test(ta, test_allreduce_order_matters);
    suite_add_tcase(s, ta);
    TCase *tl = tcase_create("link");
    tcase_set_timeout(tl, 5);
    tcase_add_test(tl, test_link_transfer);
    tcase_add_test(tl, test_link_capacity);
    tcase_add_test(tl, test_link_wait);
    suite_add_tcase(s, tl);
    TCase *td = tcase_create("devices");
    tcase_set_timeout(td, 20);
    tcase_add_test(td, test_device_set_cpu);
    tcase_add_test(td, test_device_set_without_cuda);
    tcase_add_test(td, test_device_set_shared_by_trainers);
    suite_add_tcase(s, td);
    return s;
}
