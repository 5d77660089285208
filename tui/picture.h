/* picture.h -- a greyscale picture (a grid of a GAN's samples) as terminal cells: each cell shows
 * two pixels, one above the other, as an upper half block U+2580 whose foreground is the top
 * pixel and background the bottom one, or, without UTF-8 or colour, one ASCII character whose
 * darkness follows the two pixels' average. dp_picture_render is pure (tested without a
 * terminal); dp_picture_draw puts its cells on ncurses's standard screen.
 *
 * Which mode (dp_picture_choose): ASCII without UTF-8 or with fewer than 256 colours (8 or 16
 * colours have no useful greys); 24-bit when the terminfo entry itself has direct colour
 * (COLORS >= 2^24, as TERM=xterm-direct), or when COLORTERM is "truecolor" or "24bit" and the
 * terminal has 256 colours; else the 256-colour greys.
 *
 * 24-bit colour, honestly: ncurses sends only what the terminfo entry describes, and with
 * TERM=xterm-256color (what almost every terminal that sets COLORTERM=truecolor uses) it can
 * send palette indices only. dp_picture_draw therefore sends exact levels only when COLORS >=
 * 2^24; otherwise it draws 24-bit cells with the nearest 256-colour greys (at most 8.5 levels
 * off, of 255) and says so by returning DP_PICTURE_GREY256. It never redefines palette entries
 * (init_extended_color where can_change_color): that would recolour every other program and
 * tmux pane showing those entries, would outlive the dashboard on terminals that cannot restore
 * their palette, and 256 levels do not fit in the 240 entries beside the 16 the dashboard's
 * own colours use. dp_picture_drawable says beforehand which mode a draw will use. */
#ifndef DP_TUI_PICTURE_H
#define DP_TUI_PICTURE_H

#include <stdbool.h>
#include <stdint.h>

typedef enum dp_picture_mode {
    DP_PICTURE_ASCII,     /* one character of DP_PICTURE_RAMP a cell; no colour, no UTF-8 */
    DP_PICTURE_GREY256,   /* half blocks in xterm's 256-colour greys */
    DP_PICTURE_TRUECOLOR, /* half blocks in 24-bit greys: the exact levels */
} dp_picture_mode;

/* From blank to full: a cell's average level L (0..255) gets character L * 10 / 256 (ten equal
 * bins; dark pixels are blank, for the usual dark background). */
#define DP_PICTURE_RAMP " .:-=+*#%@"
/* The upper half block, U+2580, in UTF-8. */
#define DP_PICTURE_HALF "\xe2\x96\x80"
/* COLORS of a direct-colour terminfo entry: colour numbers are 0xRRGGBB. */
#define DP_PICTURE_DIRECT_COLORS (1 << 24)
/* The colour pairs the pictures use start here, above tui/widgets.h's fixed ones. */
#define DP_PICTURE_FIRST_PAIR 16

typedef struct dp_picture_cell {
    char glyph[4]; /* NUL-terminated: DP_PICTURE_HALF, or one character of DP_PICTURE_RAMP */
    /* The top pixel (foreground) and the bottom one (background): xterm palette indices (16,
     * 232..255, 231) for GREY256, grey levels 0..255 for TRUECOLOR, -1 for ASCII. */
    int fg, bg;
} dp_picture_cell;

/* The mode for a terminal: utf8 (the locale's codeset is UTF-8), colors (ncurses's COLORS, 0
 * when colours are off or has_colors() is false), COLORTERM's value (NULL when unset). */
dp_picture_mode dp_picture_choose(bool utf8, int colors, const char *colorterm);
/* "ascii", "256 greys", "24-bit" */
const char *dp_picture_mode_name(dp_picture_mode mode);

/* The nearest grey of xterm's 256-colour palette to level (0..255): 16 (0), 232..255 (8, 18, ...,
 * 238) or 231 (255); a tie goes to the darker. */
int dp_picture_xterm_grey(int level);
/* The level of one of those palette indices (-1 for any other index). */
int dp_picture_xterm_level(int index);

/* The picture's size in pixels once fitted into rows x cols cells (2 pixels a cell, one above the
 * other): h x w unchanged when it fits, else scaled down by one factor for both sides (keeping
 * the shape) to *th x *tw, each at least 1. Never scaled up. */
void dp_picture_fit(int h, int w, int rows, int cols, int *th, int *tw);

/* Area-average downscaling of g[h * w] to out[th * tw] (th <= h, tw <= w): each output pixel is
 * the mean of the input area it covers, partly covered pixels weighted by the part, rounded to
 * nearest. Returns -1 on bad sizes or no memory. */
int dp_picture_downscale(const uint8_t *g, int h, int w, uint8_t *out, int th, int tw);

/* Renders grey pixels g[h * w] (row-major, 0..255) into at most max_rows x max_cols cells:
 * fitted and downscaled as above, then cells[*rows * *cols] row-major (cells must hold
 * max_rows * max_cols). An odd pixel height leaves the last row's bottom pixels black (0), the
 * colour of the grid's padding. Returns 0, or -1 on bad arguments or no memory. */
int dp_picture_render(const uint8_t *g, int h, int w, int max_rows, int max_cols,
                      dp_picture_mode mode, dp_picture_cell *cells, int *rows, int *cols);

/* ---- on ncurses (after initscr and, for colours, start_color) ---- */

/* The colour pairs the pictures have set up, by (fg, bg): owned by the caller (one for the
 * dashboard), so that each distinct pair of cells costs one init_extended_pair once. */
typedef struct dp_picture_pairs dp_picture_pairs;
dp_picture_pairs *dp_picture_pairs_new(void);
void dp_picture_pairs_free(dp_picture_pairs *pp);

/* The mode dp_picture_draw will use for cells of `wanted` on this terminal: ASCII without colours
 * (has_colors, COLORS >= 256 and a pair above DP_PICTURE_FIRST_PAIR); TRUECOLOR only when COLORS
 * >= 2^24 (else GREY256, see above). */
dp_picture_mode dp_picture_drawable(dp_picture_mode wanted);

/* Draws cells[rows * cols] (rendered in `mode`) with its top-left corner at (y, x) on stdscr and
 * returns the mode used: dp_picture_drawable(mode), or ASCII when some cell found no free colour
 * pair (that cell is then drawn as an ASCII character). Pairs are reused from the first one again
 * once a picture would not fit in the ones left, so a picture is drawn whole each time. On a
 * direct-colour terminal a level L is sent as 0xLLLLLL (a GREY256 cell's palette index as its
 * grey's level), except 0 which is sent as 0x010101 (colours 0 to 7 there are the ANSI ones). */
dp_picture_mode dp_picture_draw(dp_picture_pairs *pp, int y, int x, const dp_picture_cell *cells,
                                int rows, int cols, dp_picture_mode mode);

#endif
