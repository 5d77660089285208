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
} dp_layout;

/* Lays out a cols x rows screen for `devices` devices: a grid of panels for up to 8, a line
 * each for more, as many as fit (the plot keeps 5 rows); the loss plot shares its band with the
 * evaluation history and, with `pipeline`, the timeline of the last step. */
void dp_layout_make(int cols, int rows, int devices, bool pipeline, dp_layout *out);

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
