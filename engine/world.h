/* world.h -- the processes of a run: one per machine (or several on one), started by mpirun or
 * srun, joined by MPI. Data parallelism spans them: a stage's gradients are summed inside each
 * process, then across processes (one channel per member of the stage's replica group, so
 * that every member sums its own slice at once), then shared back.
 *
 * Without MPI in the build, or when no launcher started this process, the world is this
 * process alone: rank 0 of 1, and every call below is cheap and local. */
#ifndef DP_WORLD_H
#define DP_WORLD_H

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"

#ifdef __cplusplus /* comm_cuda.cu bootstraps NCCL with it */
extern "C" {
#endif

/* Joins the world when a launcher (mpirun, srun) started this process (MPI with threads that
 * all may call it); may change argc/argv. Fails when MPI cannot give that. */
int dp_world_init(int *argc, char ***argv, dp_err *err);
/* Leaves it: after the last collective call, on the way out of a good run. */
void dp_world_finalize(void);
/* Ends every process of the run with `status` (a failure in one: the others would wait for it
 * forever in their next collective), calling the dp_world_on_abort function first. Returns
 * only in a world of one. */
void dp_world_abort(int status);
/* What to do just before this process ends the run (give the terminal back). */
void dp_world_on_abort(void (*fn)(void));

int dp_world_rank(void);
int dp_world_size(void);
/* This process among those of the run on this machine (which share its GPUs). */
int dp_world_local_rank(void);
int dp_world_local_size(void);
/* This machine's name, for device names ("node1/cpu:0") in a world of several; with the rank
 * ("node1#1") where the machine runs several processes of the run. */
const char *dp_world_host(void);

/* v[n] summed over the processes: every process gets the same bits. Every process calls it at
 * the same point; from one thread at a time. */
void dp_world_sum(double *v, int n);
/* Whether every process passes the same value (every process calls it). */
bool dp_world_agree(long value);
/* Whether any process passes true (every process calls it): a stop that one process was asked
 * for, taken by all at the same step. */
bool dp_world_any(bool flag);
/* Rank 0's buf[bytes] into every process's (every process calls it). */
void dp_world_broadcast(void *buf, int bytes);
/* Every process's mine[bytes], rank by rank, into all[size * bytes] (every process calls it). */
void dp_world_allgather(const void *mine, void *all, int bytes);

/* A channel of its own for one member of one all-reduce group, so that the members' comm
 * threads sum their slices across processes at the same time (MPI_THREAD_MULTIPLE). Made and
 * freed by every process in the same order (collective); NULL in a world of one. */
typedef struct dp_world_channel dp_world_channel;
dp_world_channel *dp_world_channel_create(void);
void dp_world_channel_destroy(dp_world_channel *c);
/* buf[n] summed over the processes (each part's sum made once, by one rank: the same bits
 * everywhere). */
void dp_world_channel_sum(dp_world_channel *c, float *buf, size_t n);

/* The watchdog on a world of several processes: when the training loop has not beaten for
 * `seconds` (a process stopped, or stuck on a device, leaves the others waiting in a
 * collective), it says so and ends every process. Does nothing in a world of one or with
 * seconds = 0. The loop beats before and after every step, after evaluations and while
 * paused; the others wait for rank 0's checkpoints, so `seconds` must outlast writing one. */
void dp_world_watchdog_start(double seconds);
void dp_world_heartbeat(void);
void dp_world_watchdog_stop(void);

/* A service across processes: rank 0 asks, and every other process answers from a thread of
 * its own (what the dashboard shows of their devices). Waiting sleeps between looks, so that an
 * idle service costs no core. Made and freed by every process (collective); NULL in a world of
 * one. */
typedef struct dp_world_service dp_world_service;
dp_world_service *dp_world_service_create(void);
void dp_world_service_destroy(dp_world_service *s);
/* Rank 0, without waiting: asks every other process when no question is out, and says
 * whether all have answered, rank r at answers[(r - 1) * bytes] (every answer is `bytes` long;
 * the buffer is in use until they have). A stopped or stuck process only delays its answer. */
bool dp_world_ask(dp_world_service *s, void *answers, int bytes);
/* Rank 0: waits for the answers to a question still out, then tells the others to stop. */
void dp_world_service_end(dp_world_service *s);
/* Ranks > 0: waits for rank 0's next question; false when it was the last. */
bool dp_world_question(dp_world_service *s);
void dp_world_answer(dp_world_service *s, const void *answer, int bytes);

#ifdef __cplusplus
}
#endif

#endif
