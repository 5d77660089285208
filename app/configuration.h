/* configuration.h -- the API of config.c: a run's configuration, INI files read with inih,
 * --set overrides, validation.
 *
 * Every key has a default; the built-in demo (app/demo.ini) is read the same way as a user's
 * file. A bad key or value is reported as "FILE:LINE: [section] key: what it accepts". */
#ifndef DP_APP_CONFIG_H
#define DP_APP_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "datasets/dataset.h"
#include "engine/optim.h"
#include "engine/plan.h"
#include "engine/objective.h"
#include "engine/trainer.h"

/* The most characters of a configuration file's name that messages show. */
#define DP_CONFIG_NAME_SHOWN 160

typedef enum dp_precision { DP_PRECISION_FP32, DP_PRECISION_TF32 } dp_precision;
/* [run] convolutions: through the backend's library (oneDNN, cuDNN), or the engine's own
 * im2col and GEMMs (the reference; dp_device.own_kernels) */
typedef enum dp_convolutions { DP_CONV_LIBRARY, DP_CONV_IM2COL } dp_convolutions;

typedef struct dp_config {
    /* [run] */
    char name[64];
    uint64_t seed;
    long steps;         /* 0: run `epochs` epochs */
    long epochs;
    int precision;      /* dp_precision */
    int convolutions;   /* dp_convolutions */
    int on_nan;         /* dp_on_nan */
    long eval_every;    /* steps between evaluations; 0: at the end of each epoch only */
    /* [data] */
    dp_data_config data;
    bool data_on_device; /* [data] on_device: the data sets may live on the GPUs */
    int data_range;      /* [data] range: images in 0: [0, 1], 1: [-1, 1] (a tanh generator's) */
    /* [model] */
    char layers[2048];
    int objective;      /* the index in dp_objectives[] (engine/objective.h) */
    char generator[2048];     /* objective = gan: the generator's layer list ... */
    char discriminator[2048]; /* ... and the discriminator's */
    char latent[32];          /* the latent vector's shape: "100" or "100:1:1" */
    int init;                 /* 0: each layer's PyTorch default, 1: DCGAN's weights_init */
    /* [optim] */
    dp_optim_config optim;
    /* [parallel] */
    char devices[256];
    int strategy;       /* dp_strategy, or DP_CONFIG_STRATEGY_AUTO */
    long stages;        /* 0: one per device */
    long microbatches;  /* 0: twice the stages */
    int schedule;       /* dp_schedule */
    double bucket_mb;
    int balance;            /* pipeline stages balanced by 0: measured time, 1: FLOPs */
    double watchdog_s;      /* under mpirun: seconds without progress that end the run */
    char device_memory[32]; /* "": no limit; "512M": what each CPU device may hold */
    long auto_plans;        /* auto measures at most this many plans (the lowest cost
                               estimates); 0: every plan that fits */
    bool auto_bn_micro;     /* auto may try pipelines whose micro-batches batch normalisation
                               normalises on their own (a different result) */
    /* [checkpoint] */
    char checkpoint_dir[4096];
    long checkpoint_every;
    long checkpoint_keep;
    /* [dashboard] */
    long refresh_ms;
    bool color;
    /* [gan] */
    char gan_samples[4096];       /* the directory of the samples written at evaluations */
    char classifier[4096];        /* a classifier's safetensors, for the quality figures */
    char classifier_layers[2048]; /* ... and its layer list */
    long quality_samples;         /* generated samples the figures compare */

    /* Where each key's value came from ("run.ini:12", "--set"), for later messages; empty
     * for a default. Indexed like the key table in config.c. A file's name longer than
     * DP_CONFIG_NAME_SHOWN is shown as "..." and its end, so an origin always fits. */
    char origin[64][DP_CONFIG_NAME_SHOWN + 16];
} dp_config;

/* Fills c with every key's default. */
void dp_config_defaults(dp_config *c);

/* Reads an INI file (or the text `ini`, named `name` in messages, when path is NULL) over c.
 * On a bad section, key or value: fills err with "NAME:LINE: ..." and returns -1. */
int dp_config_load(dp_config *c, const char *path, const char *ini, const char *name,
                   dp_err *err);

/* Applies one "section.key=value" override; `label` names its source in messages
 * ("--set", "--steps"). */
int dp_config_set(dp_config *c, const char *assignment, const char *label, dp_err *err);

/* Checks what single keys cannot: combinations, and what this version supports. */
int dp_config_check(const dp_config *c, dp_err *err);

/* Where a key's value came from ("run.ini:12", "--set"), or "" for a default; for prefixing
 * later messages about that key. */
const char *dp_config_origin(const dp_config *c, const char *section, const char *key);

/* Writes the effective configuration as an INI file that dp_config_load reads back. */
void dp_config_print(const dp_config *c, FILE *out);

/* The devices parallel.devices names into specs[DP_MAX_DEVICES]: cpu:N, or
 * cuda:A,cuda:B,... (a GPU may be named more than once). Returns the count, or 0 for "auto",
 * which the caller resolves (every GPU, else two CPU devices), or -1 with err. */
int dp_config_device_list(const dp_config *c, dp_device_spec *specs, dp_err *err);

/* The plan that [parallel] asks for. */
dp_plan_request dp_config_plan(const dp_config *c);
/* strategy = auto: the plan advisor chooses (app/advise.h); dp_config_plan then says single,
 * which the advisor's first plan replaces. */
#define DP_CONFIG_STRATEGY_AUTO 4
bool dp_config_auto(const dp_config *c);
/* [parallel] device_memory in bytes (0: no limit); fails (err) on a malformed size. */
int dp_config_device_memory(const dp_config *c, size_t *bytes, dp_err *err);

/* The built-in demo configuration (app/demo.ini, compiled in). */
extern const char dp_demo_ini[];

#endif
