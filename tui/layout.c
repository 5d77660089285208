/* layout.c -- the dashboard's rectangles.
 *
 *   header           3 rows: progress; rates and host; names
 *   health line      1 row
 *   device panels    a grid of up to 8, as close to 3:1 (columns:rows) as fits; more devices
 *                    get a line each, in columns of at least 64
 *   loss plot | evaluations | timeline   the band left below the panels (at least 5 rows)
 *   event line       1 row
 *   key bar          1 row
 */
#include "tui/layout.h"

#include <string.h>

#define TOP_ROWS (DP_HEADER_ROWS + 1) /* the header and the health line */
#define PLOT_MIN_ROWS 5
#define PLOT_MAX_ROWS 16
#define LOSS_MIN_COLS 20

/* How well a panel of w x h cells reads: the smaller of its height and a third of its width. */
static int panel_score(int w, int h)
{
    return h < w / 3 ? h : w / 3;
}

/* The evaluation history's width on a screen `cols` wide. */
static int evals_width(int cols)
{
    return cols >= 160 ? 34 : cols >= 120 ? 30 : 24;
}

#define GAN_EVALS_MORE 4  /* a GAN's table has a column more: D's loss, FD and score */
#define GAN_PLOT_MIN_ROWS 7 /* the D(x) line and two plots of 3 rows */

/* A GAN's loss plots in the loss plot's place: D's and G's, stacked when each gets 3 rows,
 * else side by side when each gets LOSS_MIN_COLS, else D's alone. */
static void lay_gan_plots(dp_layout *out)
{
    dp_rect r = out->loss_plot;
    if (r.h >= 6) {
        out->loss_plot = (dp_rect){ r.x, r.y, r.w, r.h / 2 };
        out->loss_plot_g = (dp_rect){ r.x, r.y + r.h / 2, r.w, r.h - r.h / 2 };
    } else if (r.w >= 2 * LOSS_MIN_COLS) {
        out->loss_plot = (dp_rect){ r.x, r.y, r.w / 2, r.h };
        out->loss_plot_g = (dp_rect){ r.x + r.w / 2, r.y, r.w - r.w / 2, r.h };
    }
}

/* The loss plot, the evaluation history (and the timeline) from row y to row end; a GAN's
 * band (gan) with its D(x) line on top, a wider history and two loss plots. */
static void lay_plots(int cols, int y, int end, bool pipeline, bool gan, dp_layout *out)
{
    if (gan) { /* the D(x) line across the band's top */
        out->gan_line = (dp_rect){ 0, y, cols, 1 };
        y++;
    }
    int ew = evals_width(cols) + (gan ? GAN_EVALS_MORE : 0), rest = cols - ew, h = end - y;
    if (pipeline) { /* the timeline needs the room more: the plot takes 2/5 */
        int lw = rest * 2 / 5 < LOSS_MIN_COLS ? LOSS_MIN_COLS : rest * 2 / 5;
        out->loss_plot = (dp_rect){ 0, y, lw, h };
        out->evals = (dp_rect){ lw, y, ew, h };
        out->timeline = (dp_rect){ lw + ew, y, cols - lw - ew, h };
    } else {
        out->loss_plot = (dp_rect){ 0, y, rest, h };
        out->evals = (dp_rect){ rest, y, ew, h };
    }
    if (gan)
        lay_gan_plots(out);
}

/* A line per device, filling columns of at least DP_LINE_MIN_COLS top to bottom, in at most
 * `rows` rows; the devices that do not fit are left out. */
static void lay_lines(int cols, int y, int rows, int devices, bool pipeline, bool gan,
                      dp_layout *out)
{
    int c = cols / DP_LINE_MIN_COLS;
    int r = (devices + c - 1) / c;
    if (r > rows)
        r = rows;
    if (r > DP_LAYOUT_MAX_PANELS / c)
        r = DP_LAYOUT_MAX_PANELS / c;
    c = (devices + r - 1) / r < c ? (devices + r - 1) / r : c; /* no empty columns */
    int w = cols / c;
    out->panel_cols = c;
    out->n_panels = devices < r * c ? devices : r * c;
    for (int i = 0; i < out->n_panels; i++) {
        int col = i / r, row = i % r;
        out->panels[i] = (dp_rect){ col * w, y + row, col == c - 1 ? cols - col * w : w, 1 };
    }
    lay_plots(cols, y + r + 1, out->event.y, pipeline, gan, out); /* a blank row between */
}

/* The grid of columns that reads best for `devices` panels in cols x panels_h. */
static int best_grid(int cols, int panels_h, int devices)
{
    int best_c = 0, best_score = -1;
    for (int c = 1; c <= devices; c++) {
        int r = (devices + c - 1) / c;
        int pw = cols / c, ph = panels_h / r;
        if (pw < DP_PANEL_MIN_COLS || ph < DP_PANEL_MIN_ROWS)
            continue;
        int score = panel_score(pw, ph);
        if (score > best_score) {
            best_score = score;
            best_c = c;
        }
    }
    if (best_c == 0) /* cannot happen at 80x24 or more with <= 8 panels; keep a safe answer */
        best_c = cols / DP_PANEL_MIN_COLS < devices ? cols / DP_PANEL_MIN_COLS : devices;
    return best_c;
}

/* Below 80x24: a summary in the top rows (up to 3). */
static void lay_small(int cols, int rows, dp_layout *out)
{
    out->too_small = true;
    if (cols > 0 && rows > 0)
        out->summary = (dp_rect){ 0, 0, cols, rows < 3 ? rows : 3 };
}

/* The screen, its body `body_cols` wide from the left (a GAN's samples panel takes the rest);
 * gan: a GAN's plot band. */
static void lay_out(int cols, int rows, int body_cols, int devices, bool pipeline, bool gan,
                    dp_layout *out)
{
    if (devices < 1)
        devices = 1;
    out->header = (dp_rect){ 0, 0, cols, DP_HEADER_ROWS };
    out->health = (dp_rect){ 0, DP_HEADER_ROWS, cols, 1 };
    out->event = (dp_rect){ 0, rows - 2, cols, 1 };
    out->keys = (dp_rect){ 0, rows - 1, cols, 1 };
    int body_y = TOP_ROWS, body_h = rows - TOP_ROWS - 2;
    cols = body_cols;

    /* The plot takes a third of the body (5 to 16 rows; a GAN's at least 7 where the panels
     * keep 3 rows each); the panels the rest, in the grid that reads best. At 80x24 every
     * grid up to 8 panels fits, as 80 / 2 >= 38 and (18 - 6) / 4 >= 3. */
    int plot_min = PLOT_MIN_ROWS;
    if (gan && devices <= DP_LAYOUT_GRID_MAX) {
        int c = best_grid(cols, body_h - GAN_PLOT_MIN_ROWS, devices);
        int r = (devices + c - 1) / c;
        if (cols / c >= DP_PANEL_MIN_COLS && (body_h - GAN_PLOT_MIN_ROWS) / r >= DP_PANEL_MIN_ROWS)
            plot_min = GAN_PLOT_MIN_ROWS;
    }
    int plot_h = body_h / 3;
    plot_h = plot_h < plot_min ? plot_min : plot_h > PLOT_MAX_ROWS ? PLOT_MAX_ROWS : plot_h;
    int panels_h = body_h - plot_h;
    if (devices > DP_LAYOUT_GRID_MAX) {
        lay_lines(cols, body_y, body_h - PLOT_MIN_ROWS - 1, devices, pipeline, gan, out);
        return;
    }
    int c = best_grid(cols, panels_h, devices), r = (devices + c - 1) / c;
    int pw = cols / c, ph = panels_h / r;
    out->panel_cols = c;
    out->n_panels = devices;
    for (int i = 0; i < devices; i++) {
        int row = i / c, col = i % c;
        int w = col == c - 1 ? cols - col * pw : pw; /* the last column takes the remainder */
        out->panels[i] = (dp_rect){ col * pw, body_y + row * ph, w, ph };
    }
    lay_plots(cols, body_y + r * ph, body_y + body_h, pipeline, gan, out);
}

void dp_layout_make(int cols, int rows, int devices, bool pipeline, dp_layout *out)
{
    memset(out, 0, sizeof *out);
    if (cols < DP_LAYOUT_MIN_COLS || rows < DP_LAYOUT_MIN_ROWS) {
        lay_small(cols, rows, out);
        return;
    }
    lay_out(cols, rows, cols, devices, pipeline, false, out);
}

/* Whether every device panel laid out has its minimum size (a line each: always). */
static bool panels_fit(const dp_layout *l)
{
    for (int i = 0; i < l->n_panels; i++)
        if (l->panels[i].h > 1 &&
            (l->panels[i].w < DP_PANEL_MIN_COLS || l->panels[i].h < DP_PANEL_MIN_ROWS))
            return false;
    return true;
}

void dp_layout_make_gan(int cols, int rows, int devices, bool pipeline, dp_layout *out)
{
    memset(out, 0, sizeof *out);
    if (cols < DP_LAYOUT_MIN_COLS || rows < DP_LAYOUT_MIN_ROWS) {
        lay_small(cols, rows, out);
        return;
    }
    /* a square picture of the body's height less its title: 2 pixel rows a cell, and a
     * column of space at its left */
    int body_h = rows - TOP_ROWS - 2, rest_min = DP_GAN_REST_MIN_COLS;
    if (devices > DP_LAYOUT_GRID_MAX && rest_min < DP_LINE_MIN_COLS)
        rest_min = DP_LINE_MIN_COLS;
    int w = 2 * (body_h - 1) + 1;
    w = w > cols / 2 ? cols / 2 : w;
    w = w > cols - rest_min ? cols - rest_min : w;
    /* narrower until the device panels beside it keep their minimum size */
    for (; w >= DP_SAMPLES_MIN_COLS; w--) {
        lay_out(cols, rows, cols - w, devices, pipeline, true, out);
        if (panels_fit(out))
            break;
        memset(out, 0, sizeof *out);
    }
    if (w < DP_SAMPLES_MIN_COLS) {
        out->samples_left_out = true;
        lay_out(cols, rows, cols, devices, pipeline, true, out);
        return;
    }
    out->samples = (dp_rect){ cols - w, TOP_ROWS, w, body_h };
}

int dp_samples_per_row(int n, int h, int w, int rows, int cols)
{
    if (n < 1 || h < 1 || w < 1 || rows < 1 || cols < 1)
        return 0;
    int side = h < w ? h : w, want = side < DP_SAMPLES_MIN_PX ? side : DP_SAMPLES_MIN_PX;
    for (int k = 8; k > 1; k--) {
        int shown = n < k * k ? n : k * k;
        if (shown <= (k - 1) * (k - 1)) /* a smaller grid shows them all */
            continue;
        int across = shown < k ? shown : k, down = (shown + k - 1) / k;
        double gw = (double)across * (w + 1) + 1, gh = (double)down * (h + 1) + 1;
        double f = 1.0;
        f = cols / gw < f ? cols / gw : f;
        f = 2.0 * rows / gh < f ? 2.0 * rows / gh : f;
        if (side * f + 1e-9 >= want)
            return k;
    }
    return 1;
}

void dp_panel_rows_make(int h, dp_panel_rows *out)
{
    *out = (dp_panel_rows){ .title = 0, .loss = -1, .util = -1, .mem = -1, .hist = -1,
                            .split = -1, .extra = -1 };
    if (h <= 1)
        return;
    if (h == 2) {
        out->util = out->loss = 1;
        return;
    }
    if (h == 3) { /* loss and utilisation share a line, so that memory stays */
        out->loss = out->util = 1;
        out->mem = 2;
        return;
    }
    out->loss = 1;
    out->util = 2;
    out->mem = 3;
    int rest = h - 4;
    if (rest >= 3) { /* a history of at least one chart row and its axis */
        out->hist = 4;
        out->hist_h = rest >= 4 ? rest - 2 : rest - 1;
    }
    int after = 4 + out->hist_h;
    if (after < h)
        out->split = after++;
    if (after < h)
        out->extra = after;
}
