/* layout.h -- where everything goes on the dashboard's screen: a pure function of the terminal's
 * size, the number of devices and whether a pipeline timeline is shown, so that it is tested
 * without a terminal. */
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

typedef struct dp_rect {
    int x, y, w, h; /* column, row, width, height; h == 0: not shown */
} dp_rect;

typedef struct dp_layout {
    bool too_small;          /* below 80x24: only a message is shown */
    dp_rect header;          /* run, data, model; plan, progress, rates */
    dp_rect panels[DP_LAYOUT_MAX_PANELS]; /* h == 1: a device's line */
    int n_panels;            /* the devices shown (the first ones) */
    int panel_cols;          /* the grid the panels tile */
    dp_rect loss_plot;
    dp_rect timeline;        /* h == 0 without a pipeline */
    dp_rect event;           /* the last event, one line */
    dp_rect keys;            /* the key bar, one line */
} dp_layout;

/* Lays out a cols x rows screen for `devices` devices: a grid of panels for up to 8, a line
 * each for more, as many as fit (the plot keeps 5 rows); with `pipeline`, the loss plot shares
 * its band with the timeline of the last step. */
void dp_layout_make(int cols, int rows, int devices, bool pipeline, dp_layout *out);

#endif
