/* setup.h -- a run built from the command line and the configuration: its outputs checked,
 * its data, model, starting parameters (--init, or a checkpoint to resume), devices, the
 * checks that every process of the run agrees, the --switch-at plan and the trainer.
 *
 * Ownership: a dp_run owns everything it holds; dp_run_destroy frees it, on any path. One
 * thread builds and destroys it; the training loop reads it while it runs. */
#ifndef DP_APP_SETUP_H
#define DP_APP_SETUP_H

#include <stdbool.h>

#include "app/cli.h"
#include "app/configuration.h"
#include "app/run_loop.h"
#include "base/fileio.h"
#include "datasets/dataset.h"
#include "engine/checkpoint.h"
#include "engine/trainer.h"

/* What writing a checkpoint of this run needs ([checkpoint] dir, keep). */
typedef struct dp_checkpointer {
    const char *dir;
    long keep;
    const dp_model *model;
    const dp_optim_config *optim;
    dp_run_identity id;
    char *config_text;  /* the effective configuration, as --print-config prints it */
    char run[DP_RUN_ID_SIZE]; /* this run's id: new, or the resumed checkpoint's */
    float *params;      /* [n_params] */
    float *state;       /* [state_per_param][n_params] */
} dp_checkpointer;

enum { DP_MAX_SWITCHES = 64 };

typedef struct dp_run {
    dp_config cfg;            /* the effective configuration */
    bool demo;                /* the built-in demo (no -c) */
    dp_atomic_file metrics;   /* --metrics: written under a temporary name, kept at the end */
    dp_atomic_file save_held; /* --save when it is not a regular file, held open */
    dp_dataset train, test;
    dp_model model;           /* what the engine trains (a GAN: both models, engine/gan.h) */
    bool gan;                 /* [model] objective = gan */
    dp_model gen, disc;       /* a GAN's two models alone (their files' names) */
    dp_model classifier;      /* [gan] classifier_layers, for the quality figures */
    float *classifier_params; /* [gan] classifier's weights, or NULL */
    char samples_dir[4200];   /* this run's directory of samples in [gan] samples, or "" */
    dp_run_identity identity;
    float *init;              /* the starting parameters (--init, --resume), or NULL */
    dp_checkpointer ckpt;
    dp_train_state resumed;   /* the resumed checkpoint's (step 0 without --resume) */
    dp_device_spec specs[DP_MAX_DEVICES];
    int n_devices;
    dp_switch_at switches[DP_MAX_SWITCHES];
    int n_switches;
    long per_epoch, total;    /* steps */
    dp_plan_request plan;     /* as configured */
    dp_device_set *devices;   /* made from specs; every trainer of the run borrows it */
    double cpu_peak;          /* the machine's SGEMM FLOP/s given to its CPU devices; 0: none */
    dp_trainer *trainer;
} dp_run;

/* What the setup functions return when the run may go on; otherwise they return the exit
 * status, having said why. */
enum { DP_RUN_READY = -1 };

/* Reads the configuration (-c or the demo, then the overrides) into r->cfg and checks it;
 * --print-config prints it and ends here. r must be zeroed. */
int dp_run_configure(dp_run *r, const dp_options *opt);
/* Builds the run from r->cfg: outputs, data, model, parameters, devices, checks, trainer. */
int dp_run_create(dp_run *r, const dp_options *opt);
/* Sets o's checkpoint writer when [checkpoint] dir is set (on rank 0). */
int dp_run_arm_checkpoints(dp_run *r, dp_run_loop_opts *o);
/* Writes the trained weights to path (--save); returns the exit status. */
int dp_run_save(dp_run *r, const char *path);
void dp_run_destroy(dp_run *r);

#endif
