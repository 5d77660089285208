/* checkpoint.h -- training checkpoints: a directory per checkpoint under a checkpoint
 * directory, step-00000120/ holding model.safetensors (the parameters, as --save writes them),
 * optimizer.safetensors (the optimizer's state, named as PyTorch's state keys), state.ini (the
 * step, the data position, the plan, and what the run must match to resume) and config.ini
 * (the run's effective configuration, for reading and rerunning).
 *
 * A checkpoint is written into a temporary directory beside the others, every file fsynced,
 * then renamed into place and the parent directory fsynced: a crash at any moment leaves the
 * newest complete checkpoint (and all older ones) intact, and a step-* directory is always
 * complete. */
#ifndef DP_CHECKPOINT_H
#define DP_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "engine/model.h"
#include "engine/optim.h"

/* A run's id: 16 hex digits, drawn when a run starts, carried over by --resume (a resumed
 * run is the same run, and owns its predecessor's checkpoints). */
#define DP_RUN_ID_SIZE 17

/* The most steps and epochs a run can have ([run] steps and epochs): a checkpoint past them is
 * damaged. */
#define DP_MAX_STEPS 1000000000000L
#define DP_MAX_EPOCHS 1000000L

/* Where a run stands, besides its parameters and optimizer state. */
typedef struct dp_train_state {
    long step;         /* steps done */
    long updates;      /* updates applied (AdamW's t) */
    long epoch;        /* 0-based epoch of the next batch */
    long position;     /* samples of that epoch already trained on */
    char plan[64];     /* the strategy when written, as the dashboard shows it */
    char run[DP_RUN_ID_SIZE]; /* the id of the run that wrote it ("" before run ids) */
} dp_train_state;

/* What a run must share with a checkpoint to continue from it. */
typedef struct dp_run_identity {
    uint64_t layers_hash; /* of the [model] layers text, spaces ignored */
    int inputs, classes;
    size_t params;
    char data[64];        /* the training set's name */
    long samples;
    int batch;
    int optimizer;        /* dp_optim_kind */
    size_t state_slots;   /* floats of optimizer state per parameter */
    uint64_t seed;
    int processes;        /* of the run (MPI); checkpoints from before it read as 1 */
    char objective[16];   /* [model] objective; checkpoints from before it read as classify */
} dp_run_identity;

/* The identity of a run of model m on `data` of `samples`. */
dp_run_identity dp_run_identity_of(const char *layers, const dp_model *m, const char *data,
                                   long samples, int batch, const dp_optim_config *oc,
                                   uint64_t seed);

/* A new run id into run[DP_RUN_ID_SIZE], from the system's random source. */
int dp_run_id_new(char *run, dp_err *err);

/* Before any work, for a run that will write checkpoints into dir: makes dir when it is
 * missing (its parent must exist) and checks that it is a directory this process can write
 * in. A new run (run NULL) refuses a directory that holds anything named step-* (another
 * run's checkpoints, a damaged one, a link); a run resumed at resumed_step as run `run`
 * refuses one holding anything named step-* after that step but its own checkpoints, since
 * it could come to write those steps. Either names what is there. */
int dp_checkpoint_prepare(const char *dir, const char *run, long resumed_step, dp_err *err);

/* Writes checkpoint step-<ts->step> of run ts->run into dir, then removes all but the `keep`
 * newest checkpoints of that run and the temporary directories its killed writers left;
 * another run's checkpoints, and anything that is not a directory of the files a checkpoint
 * holds (a link, say), are never touched. params[n_params], state[state_slots][n_params]. A
 * checkpoint of this run at the same step is replaced; one of another run is refused. The
 * checkpoint's path goes into written. */
int dp_checkpoint_write(const char *dir, long keep, const dp_model *m,
                        const dp_optim_config *oc, const float *params, const float *state,
                        const dp_train_state *ts, const dp_run_identity *id,
                        const char *config_text, char *written, size_t size, dp_err *err);

/* The checkpoint to resume from: dir itself when it is one, else the newest complete
 * checkpoint in it. Damaged checkpoints and links newer than it are named in notes (one line
 * each, "" when none), since they were passed over. */
int dp_checkpoint_find(const char *dir, char *path, size_t size, char *notes,
                       size_t notes_size, dp_err *err);

/* Parses state.ini's text (`what` names it in messages) and checks it against id: the first
 * half of dp_checkpoint_read, and the fuzz target's entry. */
int dp_checkpoint_parse_state(const char *text, const char *what, const dp_run_identity *id,
                              dp_train_state *ts, dp_err *err);

/* Reads checkpoint `path` of a run with identity id: refuses one of another model, data set,
 * batch size, optimizer or seed, naming what differs; else fills params, state and ts. */
int dp_checkpoint_read(const char *path, const dp_model *m, const dp_optim_config *oc,
                       const dp_run_identity *id, float *params, float *state,
                       dp_train_state *ts, dp_err *err);

#endif
