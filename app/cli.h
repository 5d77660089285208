/* cli.h -- dpmptop's command line: the options, --help, --help-layers and --version, and the
 * exit statuses it promises. */
#ifndef DP_APP_CLI_H
#define DP_APP_CLI_H

enum exit_status { EXIT_DONE = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_INTERRUPTED = 130 };

/* The most samples (a GAN's images, a language model's bytes) --generate makes at once. */
#define DP_MAX_GENERATE 65536

/* A --set style override collected from the command line, applied after the file. */
typedef struct dp_override {
    char assignment[4200];
    const char *label;
} dp_override;

typedef struct dp_options {
    const char *config_path;
    const char *switch_at;
    const char *metrics_path, *save_path, *init_path;
    int resume;               /* --resume given */
    const char *resume_dir;   /* its directory, or NULL: [checkpoint] dir */
    long generate;            /* --generate N: samples of the trained model, no training */
    const char *output_path;  /* --output: where they go (a GAN's images) */
    const char *prompt;       /* --prompt TEXT: a language model's start, or NULL */
    double temperature;       /* --temperature T: 0 when not given (then 1) */
    int top_k;                /* --top-k K: -1 when not given (then 0: every byte) */
    const char *fill;         /* --fill TEXT: a masked language model's text with _ to fill */
    int print_config;
    int headless;
    dp_override *overrides;
    int n_overrides;
} dp_options;

/* Parses argv into o; returns -1 (after printing why) on bad usage, 1 when done (--help,
 * --help-layers, --version printed). o->overrides is allocated: dp_options_free. */
int dp_parse_args(int argc, char **argv, dp_options *o);
void dp_options_free(dp_options *o);

#endif
