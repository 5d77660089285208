/* layout.h -- where everything goes on the dashboard's screen: a pure function of the terminal's
 * size, the number of devices and whether a pipeline timeline is shown, so that it is tested
 * without a terminal; and which lines a device panel of a given height shows. */
#ifndef DP_TUI_LAYOUT_H
#define DP_TUI_LAYOUT_H

#include <stdbool.h>

#define DP_LAYOUT_MIN_COLS 80
#define DP_LAYOUT_MIN_ROWS 24
#define DP_LAYOUT_MAX_PANELS 64 /* more devices than fit are counted, not shown */
#define DP_LAYOUT_GRID_MAX 8    /* up to 8 devices get panels; more get a line each */
#define DP_PANEL_MIN_COLS 38    /* a bar, its figures and a sparkline */
#define DP_PANEL_MIN_ROWS 3     /* a title, loss and utilisation, memory */
#define DP_LINE_MIN_COLS 64     /* a device's line: name, role, loss, utilisation, memory */
#define DP_HEADER_ROWS 3        /* progress; rates and host; the run's names */

typedef struct dp_rect {
    int x, y, w, h; /* column, row, width, height; h == 0: not shown */
} dp_rect;

typedef struct dp_layout {
    bool too_small;          /* below 80x24: only `summary` is shown */
    dp_rect summary;         /* too_small: step, loss, rate and ETA in one to three lines */
    dp_rect header;          /* progress first; rates, host; the run's and model's names */
    dp_rect health;          /* one line: the run's state, skipped steps, last and best eval */
    dp_rect panels[DP_LAYOUT_MAX_PANELS]; /* h == 1: a device's line */
    int n_panels;            /* the devices shown (the first ones) */
    int panel_cols;          /* the grid the panels tile */
    dp_rect loss_plot;
    dp_rect evals;           /* the evaluation history, beside the loss plot */
    dp_rect timeline;        /* h == 0 without a pipeline */
    dp_rect event;           /* the last event, one line */
    dp_rect keys;            /* the key bar, one line */
    /* A GAN's (dp_layout_make_gan; all h == 0 otherwise): loss_plot holds D's loss and
     * loss_plot_g G's (below it, or beside it in a short band; h == 0 when the band is too
     * narrow for two); gan_line the D(x) and D(G(z)) line above them; samples the latest
     * samples' picture, at the right of the body, its first row a title (h == 0 when the
     * terminal is too narrow: samples_left_out then says so) */
    dp_rect loss_plot_g;
    dp_rect gan_line;
    dp_rect samples;
    bool samples_left_out;
} dp_layout;

/* Lays out a cols x rows screen for `devices` devices: a grid of panels for up to 8, a line
 * each for more, as many as fit (the plot keeps 5 rows); the loss plot shares its band with the
 * evaluation history and, with `pipeline`, the timeline of the last step. */
void dp_layout_make(int cols, int rows, int devices, bool pipeline, dp_layout *out);

#define DP_SAMPLES_MIN_COLS 24  /* the narrowest samples panel shown */
#define DP_GAN_REST_MIN_COLS 60 /* what a samples panel leaves to the panels and plots */
#define DP_SAMPLES_MIN_PX 8     /* a sample's smaller side drawn at least this many pixels */

/* A GAN's screen: as dp_layout_make, with a samples panel at the right of the body (the rows
 * between the health line and the event line) as wide as a square picture of its height
 * wants (2 pixel columns a row), at most half the screen, leaving at least
 * DP_GAN_REST_MIN_COLS to the rest and the device panels their minimum size (narrower until
 * they do; left out below DP_SAMPLES_MIN_COLS), and in the plot band a D(x) and D(G(z))
 * line above D's and G's loss plots (stacked when each gets 3 rows, else side by side when
 * each gets 20 columns, else D's alone) and an evaluation table 4 columns wider. */
void dp_layout_make_gan(int cols, int rows, int devices, bool pipeline, dp_layout *out);

/* How many of n samples of h x w pixels a picture of rows x cols cells (2 pixels a cell, one
 * above the other) shows: k a row in a k x k grid with 1 pixel gaps (the first k * k of them,
 * k <= 8), the largest k at which a sample, scaled down to fit (never up), keeps at least
 * DP_SAMPLES_MIN_PX pixels on its smaller side (or its whole side when smaller than that);
 * 1 when none does. Returns k (0 when n < 1 or the space is empty). */
int dp_samples_per_row(int n, int h, int w, int rows, int cols);

/* The lines of a device panel h rows high, as row offsets from its top (-1: not shown), in
 * order of need: the title, memory, utilisation and loss always (at 3 rows loss and
 * utilisation share a line); then the step's split, a last line (GPU temperature and power,
 * activations), and every row beyond those a utilisation history over the run. */
typedef struct dp_panel_rows {
    int title, loss, util, mem;
    int hist, hist_h;        /* hist_h rows from `hist`: the chart, then its time axis */
    int split, extra;
} dp_panel_rows;

void dp_panel_rows_make(int h, dp_panel_rows *out);

#endif
