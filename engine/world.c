/* world.c -- the processes of a run over MPI (world.h). */
#include "dpmptop-config.h"
#include "engine/world.h"

#include "base/clock.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_MPI
#include <mpi.h>
#endif

static int world_rank, world_size = 1;
static int local_rank, local_size = 1; /* among the processes of the run on this machine */
static char host[64] = "localhost";

#ifdef HAVE_MPI
/* Under ThreadSanitizer: one progress engine serves every thread's requests, so a thread's MPI
 * call may copy another thread's message into its buffer, and Open MPI's libraries, not
 * instrumented, hand it over unseen. The copies made inside MPI's waits are left untracked
 * (untracked_begin/end around them), instead of blamed on whichever thread made them. */
#ifdef __SANITIZE_THREAD__
void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);
static void untracked_begin(void)
{
    __tsan_ignore_thread_begin();
}
static void untracked_end(void)
{
    __tsan_ignore_thread_end();
}
#else
static void untracked_begin(void) {}
static void untracked_end(void) {}
#endif

/* MPI_Testall, untracked. */
static int test_all(int n, MPI_Request *requests, int *done)
{
    untracked_begin();
    int rc = MPI_Testall(n, requests, done, MPI_STATUSES_IGNORE);
    untracked_end();
    return rc;
}

/* Waits for requests[n]: looks without pause for a millisecond (processes in step meet that
 * soon), then less and less often (0.1 to 10 ms apart), since MPI's own waits spin on a core
 * for as long as another process is paused or slow. */
static void wait_sleeping(int n, MPI_Request *requests)
{
    int done = 0;
    double spin_until = dp_now_s() + 1e-3;
    long ns = 100000L;
    while (test_all(n, requests, &done) == MPI_SUCCESS && !done) {
        if (dp_now_s() < spin_until)
            continue;
        nanosleep(&(struct timespec){ 0, ns }, NULL);
        ns = ns < 5000000L ? 2 * ns : 10000000L;
    }
}
#endif

/* The environment a launcher leaves: Open MPI's mpirun, PMI (Slurm's srun, MPICH), PMIx. */
static bool launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

#ifdef HAVE_MPI
/* Several processes of the run on one machine: "node1#2" names rank 2 there, for device names
 * that say which process a device is in. */
static void name_by_rank_when_shared(void)
{
    char *all = calloc((size_t)world_size, sizeof host);
    if (!all)
        MPI_Abort(MPI_COMM_WORLD, 1); /* the others are in the all-gather */
    MPI_Allgather(host, sizeof host, MPI_CHAR, all, sizeof host, MPI_CHAR, MPI_COMM_WORLD);
    int here = 0;
    for (int r = 0; r < world_size; r++)
        here += strcmp(all + (size_t)r * sizeof host, host) == 0;
    free(all);
    if (here > 1) {
        char base[sizeof host];
        memcpy(base, host, sizeof base);
        snprintf(host, sizeof host, "%.50s#%d", base, world_rank);
    }
}
#endif

int dp_world_init(int *argc, char ***argv, dp_err *err)
{
    gethostname(host, sizeof host - 1);
    /* srun's tasks find each other through PMIx; without it each would train alone, all
     * writing the same files */
    const char *tasks = getenv("SLURM_STEP_NUM_TASKS");
    if (tasks && atol(tasks) > 1 && !launched())
        return dp_fail(err, "srun started %ld tasks without PMIx, so they cannot join one run "
                            "(each would train alone): start them with srun --mpi=pmix",
                       atol(tasks));
#ifdef HAVE_MPI
    if (!launched())
        return 0;
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
        return dp_fail(err, "MPI_Init_thread failed: this process cannot join the run");
    if (provided < MPI_THREAD_MULTIPLE) {
        MPI_Finalize();
        return dp_fail(err, "the MPI library gives threads level %d, not MPI_THREAD_MULTIPLE, "
                            "which dpmptop's device threads need",
                       provided);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    name_by_rank_when_shared();
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) ==
        MPI_SUCCESS) {
        MPI_Comm_rank(node, &local_rank);
        MPI_Comm_size(node, &local_size);
        MPI_Comm_free(&node);
    }
    return 0;
#else
    if (launched())
        return dp_fail(err, "started by an MPI launcher, but this dpmptop was built without "
                            "MPI: install libopenmpi-dev and build again (./configure "
                            "--with-mpi)");
    return 0;
#endif
}

void dp_world_finalize(void)
{
#ifdef HAVE_MPI
    int on = 0, off = 0;
    MPI_Initialized(&on);
    MPI_Finalized(&off);
    if (on && !off)
        MPI_Finalize();
#endif
}

static void (*before_abort)(void);

void dp_world_on_abort(void (*fn)(void))
{
    before_abort = fn;
}

void dp_world_abort(int status)
{
#ifdef HAVE_MPI
    if (world_size > 1) {
        if (before_abort)
            before_abort();
        MPI_Abort(MPI_COMM_WORLD, status);
    }
#endif
    (void)status;
}

int dp_world_rank(void)
{
    return world_rank;
}

int dp_world_size(void)
{
    return world_size;
}

int dp_world_local_rank(void)
{
    return local_rank;
}

int dp_world_local_size(void)
{
    return local_size;
}

const char *dp_world_host(void)
{
    return host;
}

void dp_world_sum(double *v, int n)
{
#ifdef HAVE_MPI
    if (world_size > 1) {
        MPI_Request r;
        MPI_Ireduce(world_rank == 0 ? MPI_IN_PLACE : v, v, n, MPI_DOUBLE, MPI_SUM, 0,
                    MPI_COMM_WORLD, &r);
        wait_sleeping(1, &r);
        MPI_Ibcast(v, n, MPI_DOUBLE, 0, MPI_COMM_WORLD, &r);
        wait_sleeping(1, &r);
    }
#endif
    (void)v, (void)n;
}

bool dp_world_any(bool flag)
{
#ifdef HAVE_MPI
    if (world_size > 1) {
        int v = flag;
        MPI_Request r;
        MPI_Iallreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD, &r);
        wait_sleeping(1, &r);
        return v != 0;
    }
#endif
    return flag;
}

void dp_world_broadcast(void *buf, int bytes)
{
#ifdef HAVE_MPI
    if (world_size > 1) {
        MPI_Request r;
        MPI_Ibcast(buf, bytes, MPI_BYTE, 0, MPI_COMM_WORLD, &r);
        wait_sleeping(1, &r);
    }
#endif
    (void)buf, (void)bytes;
}

void dp_world_allgather(const void *mine, void *all, int bytes)
{
#ifdef HAVE_MPI
    if (world_size > 1) {
        MPI_Request r;
        MPI_Iallgather(mine, bytes, MPI_BYTE, all, bytes, MPI_BYTE, MPI_COMM_WORLD, &r);
        wait_sleeping(1, &r);
        return;
    }
#endif
    memcpy(all, mine, (size_t)bytes);
}

bool dp_world_agree(long value)
{
#ifdef HAVE_MPI
    if (world_size > 1) {
        long lo = value, hi = value;
        untracked_begin();
        MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_LONG, MPI_MIN, MPI_COMM_WORLD);
        MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);
        untracked_end();
        return lo == hi;
    }
#endif
    (void)value;
    return true;
}

#ifdef HAVE_MPI
/* Ends the run from a process that cannot make its part of a channel or service: the others
 * are making theirs, and would wait for it in every later collective. */
static _Noreturn void end_run(void)
{
    dp_world_abort(1);
    abort(); /* not reached in a world of several */
}

/* A communicator of its own for a channel or service (every process makes them in the same
 * order). */
static void dup_world(MPI_Comm *comm)
{
    if (MPI_Comm_dup(MPI_COMM_WORLD, comm) != MPI_SUCCESS)
        end_run();
}
#endif

#ifdef HAVE_MPI
struct dp_world_channel {
    MPI_Comm comm;
    int *counts, *displs; /* [world_size]: each rank's part of a buffer being summed */
};
#endif

dp_world_channel *dp_world_channel_create(void)
{
#ifdef HAVE_MPI
    if (world_size > 1) {
        dp_world_channel *c = calloc(1, sizeof *c);
        if (!c || !(c->counts = calloc((size_t)world_size, sizeof *c->counts)) ||
            !(c->displs = calloc((size_t)world_size, sizeof *c->displs)))
            end_run();
        dup_world(&c->comm);
        return c;
    }
#endif
    return NULL;
}

void dp_world_channel_destroy(dp_world_channel *c)
{
#ifdef HAVE_MPI
    if (c) {
        MPI_Comm_free(&c->comm);
        free(c->counts);
        free(c->displs);
        free(c);
    }
#endif
    (void)c;
}

/* Each rank sums one part of the buffer (reduce-scatter), then every rank gets every part
 * (all-gather): each part's sum is made once, so every rank has the same bits, at the traffic
 * of an all-reduce. */
void dp_world_channel_sum(dp_world_channel *c, float *buf, size_t n)
{
#ifdef HAVE_MPI
    for (size_t at = 0; c && at < n; at += INT_MAX / 2) { /* MPI counts are ints */
        int count = n - at < INT_MAX / 2 ? (int)(n - at) : INT_MAX / 2;
        for (int r = 0; r < world_size; r++) {
            c->displs[r] = (int)((long)count * r / world_size);
            c->counts[r] = (int)((long)count * (r + 1) / world_size) - c->displs[r];
        }
        float *part = buf + at;
        /* in place, this rank's sum lands at the start of the buffer: moved to its place */
        untracked_begin();
        MPI_Reduce_scatter(MPI_IN_PLACE, part, c->counts, MPI_FLOAT, MPI_SUM, c->comm);
        untracked_end();
        memmove(part + c->displs[world_rank], part, (size_t)c->counts[world_rank] * sizeof *part);
        untracked_begin();
        MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, part, c->counts, c->displs, MPI_FLOAT,
                       c->comm);
        untracked_end();
    }
#endif
    (void)c, (void)buf, (void)n;
}

#ifdef HAVE_MPI
struct dp_world_service {
    MPI_Comm comm;
    MPI_Request *requests; /* [2 * world_size]: rank 0's questions, then their answers */
    bool asking;           /* rank 0: a question is out */
};

static int go_on = 1, stop = 0; /* the questions: only ever read (by MPI_Isend) */
#endif

dp_world_service *dp_world_service_create(void)
{
#ifdef HAVE_MPI
    if (world_size > 1) {
        dp_world_service *s = calloc(1, sizeof *s);
        if (!s || !(s->requests = calloc(2 * (size_t)world_size, sizeof *s->requests)))
            end_run();
        dup_world(&s->comm);
        return s;
    }
#endif
    return NULL;
}

void dp_world_service_destroy(dp_world_service *s)
{
#ifdef HAVE_MPI
    if (s) {
        MPI_Comm_free(&s->comm);
        free(s->requests);
        free(s);
    }
#endif
    (void)s;
}

bool dp_world_ask(dp_world_service *s, void *answers, int bytes)
{
#ifdef HAVE_MPI
    int n = world_size - 1;
    if (!s->asking) {
        for (int r = 1; r <= n; r++) {
            MPI_Isend(&go_on, 1, MPI_INT, r, 0, s->comm, &s->requests[r - 1]);
            MPI_Irecv((char *)answers + (size_t)(r - 1) * (size_t)bytes, bytes, MPI_BYTE, r, 1,
                      s->comm, &s->requests[n + r - 1]);
        }
        s->asking = true;
    }
    int done = 0;
    test_all(2 * n, s->requests, &done);
    s->asking = !done;
    return done;
#else
    (void)s, (void)answers, (void)bytes;
    return false;
#endif
}

void dp_world_service_end(dp_world_service *s)
{
#ifdef HAVE_MPI
    int n = world_size - 1;
    if (s->asking) /* the answers land before the buffer goes */
        wait_sleeping(2 * n, s->requests);
    s->asking = false;
    for (int r = 1; r <= n; r++)
        MPI_Isend(&stop, 1, MPI_INT, r, 0, s->comm, &s->requests[r - 1]);
    wait_sleeping(n, s->requests);
#endif
    (void)s;
}

bool dp_world_question(dp_world_service *s)
{
#ifdef HAVE_MPI
    int q = 0;
    MPI_Irecv(&q, 1, MPI_INT, 0, 0, s->comm, &s->requests[0]);
    wait_sleeping(1, s->requests);
    return q != 0;
#else
    (void)s;
    return false;
#endif
}

void dp_world_answer(dp_world_service *s, const void *answer, int bytes)
{
#ifdef HAVE_MPI
    /* rank 0 takes it when it next looks (once a frame): sleep meanwhile, not spin */
    MPI_Isend(answer, bytes, MPI_BYTE, 0, 1, s->comm, &s->requests[0]);
    wait_sleeping(1, s->requests);
#endif
    (void)s, (void)answer, (void)bytes;
}

/* The watchdog: the training loop beats (a plain atomic, so a beat costs nothing); the
 * watchdog's thread looks ten times a second and ends the run when the beats stop. */
static atomic_long last_beat_ms;
static double watchdog_s;
static atomic_bool watchdog_on;
static pthread_t watchdog_thread;

void dp_world_heartbeat(void)
{
    atomic_store_explicit(&last_beat_ms, (long)(1e3 * dp_now_s()), memory_order_relaxed);
}

static void *watchdog_main(void *arg)
{
    (void)arg;
    while (atomic_load(&watchdog_on)) {
        nanosleep(&(struct timespec){ 0, 100000000L }, NULL);
        double quiet = dp_now_s() - 1e-3 * (double)atomic_load(&last_beat_ms);
        if (atomic_load(&watchdog_on) && quiet > watchdog_s) {
            fprintf(stderr, "dpmptop: rank %d of %d: no progress in %.0f s (parallel.watchdog): "
                            "a process of the run is stuck (stopped, or waiting on a device); "
                            "ending every process\n",
                    world_rank, world_size, quiet);
            dp_world_abort(1);
        }
    }
    return NULL;
}

void dp_world_watchdog_start(double seconds)
{
    if (world_size == 1 || seconds <= 0)
        return;
    watchdog_s = seconds;
    dp_world_heartbeat();
    atomic_store(&watchdog_on, true);
    if (pthread_create(&watchdog_thread, NULL, watchdog_main, NULL) != 0)
        atomic_store(&watchdog_on, false); /* without one, as before */
}

void dp_world_watchdog_stop(void)
{
    if (atomic_exchange(&watchdog_on, false))
        pthread_join(watchdog_thread, NULL);
}
