/* picture.c -- greyscale pictures as half-block or ASCII cells, and drawing them on ncurses. */
#include "tui/picture.h"

#include <curses.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tui/widgets.h"

_Static_assert(DP_PICTURE_FIRST_PAIR > DP_PAIR_MARK,
               "the pictures' colour pairs must start above the dashboard's fixed ones");

/* ---- choosing a mode ---- */

dp_picture_mode dp_picture_choose(bool utf8, int colors, const char *colorterm)
{
    if (!utf8 || colors < 256)
        return DP_PICTURE_ASCII;
    bool says_24bit = colorterm && (!strcmp(colorterm, "truecolor") || !strcmp(colorterm, "24bit"));
    if (colors >= DP_PICTURE_DIRECT_COLORS || says_24bit)
        return DP_PICTURE_TRUECOLOR;
    return DP_PICTURE_GREY256;
}

const char *dp_picture_mode_name(dp_picture_mode mode)
{
    switch (mode) {
    case DP_PICTURE_GREY256:
        return "256 greys";
    case DP_PICTURE_TRUECOLOR:
        return "24-bit";
    default:
        return "ascii";
    }
}

/* ---- xterm's greys: 16 is black, 232..255 the ramp 8, 18, ..., 238, 231 is white ---- */

int dp_picture_xterm_level(int index)
{
    if (index == 16)
        return 0;
    if (index == 231)
        return 255;
    if (index >= 232 && index <= 255)
        return 8 + 10 * (index - 232);
    return -1;
}

int dp_picture_xterm_grey(int level)
{
    int best = 16, best_d = abs(level); /* candidates in rising level: ties keep the darker */
    for (int i = 232; i <= 255; i++) {
        int d = abs(level - dp_picture_xterm_level(i));
        if (d < best_d) {
            best = i;
            best_d = d;
        }
    }
    if (abs(level - 255) < best_d)
        best = 231;
    return best;
}

/* ---- fitting and downscaling ---- */

void dp_picture_fit(int h, int w, int rows, int cols, int *th, int *tw)
{
    double f = 1.0, fx = (double)cols / w, fy = 2.0 * rows / h;
    f = fx < f ? fx : f;
    f = fy < f ? fy : f;
    /* a hair above the product, so that an exact ratio is not lost to rounding */
    int sw = (int)floor(w * f + 1e-9), sh = (int)floor(h * f + 1e-9);
    *tw = sw < 1 ? 1 : sw > cols ? cols : sw;
    *th = sh < 1 ? 1 : sh > 2 * rows ? 2 * rows : sh;
}

/* Averages src (n values, `step` apart) over m equal intervals into dst (`dstep` apart): each
 * output is the mean over its interval, a pixel partly inside counted for that part. */
static void area_1d(const double *src, int n, size_t step, double *dst, int m, size_t dstep)
{
    for (int t = 0; t < m; t++) {
        double a = (double)t * n / m, b = (double)(t + 1) * n / m, sum = 0.0;
        for (int i = (int)a; i < n && i < b; i++) {
            double from = i > a ? i : a, to = i + 1 < b ? i + 1 : b;
            sum += src[(size_t)i * step] * (to - from);
        }
        dst[(size_t)t * dstep] = sum / (b - a);
    }
}

int dp_picture_downscale(const uint8_t *g, int h, int w, uint8_t *out, int th, int tw)
{
    if (!g || !out || h < 1 || w < 1 || th < 1 || tw < 1 || th > h || tw > w)
        return -1;
    double *in = malloc((size_t)h * w * sizeof *in);
    double *across = malloc((size_t)h * tw * sizeof *across); /* rows averaged first */
    double *done = malloc((size_t)th * tw * sizeof *done);
    int rc = in && across && done ? 0 : -1;
    if (rc == 0) {
        for (size_t i = 0; i < (size_t)h * w; i++)
            in[i] = g[i];
        for (int y = 0; y < h; y++)
            area_1d(in + (size_t)y * w, w, 1, across + (size_t)y * tw, tw, 1);
        for (int x = 0; x < tw; x++)
            area_1d(across + x, h, (size_t)tw, done + x, th, (size_t)tw);
        for (size_t i = 0; i < (size_t)th * tw; i++)
            out[i] = (uint8_t)(done[i] + 0.5);
    }
    free(in);
    free(across);
    free(done);
    return rc;
}

/* ---- cells ---- */

/* The ramp's character for a level. */
static char ramp_char(int level)
{
    return DP_PICTURE_RAMP[level * 10 / 256];
}

/* One cell of the two pixels top and bottom. */
static dp_picture_cell make_cell(int top, int bottom, dp_picture_mode mode)
{
    dp_picture_cell c = { .fg = -1, .bg = -1 };
    if (mode == DP_PICTURE_ASCII) {
        c.glyph[0] = ramp_char((top + bottom + 1) / 2);
        return c;
    }
    memcpy(c.glyph, DP_PICTURE_HALF, sizeof DP_PICTURE_HALF);
    c.fg = mode == DP_PICTURE_GREY256 ? dp_picture_xterm_grey(top) : top;
    c.bg = mode == DP_PICTURE_GREY256 ? dp_picture_xterm_grey(bottom) : bottom;
    return c;
}

int dp_picture_render(const uint8_t *g, int h, int w, int max_rows, int max_cols,
                      dp_picture_mode mode, dp_picture_cell *cells, int *rows, int *cols)
{
    if (!g || !cells || h < 1 || w < 1 || max_rows < 1 || max_cols < 1)
        return -1;
    int th, tw;
    dp_picture_fit(h, w, max_rows, max_cols, &th, &tw);
    const uint8_t *p = g;
    uint8_t *scaled = NULL;
    if (th != h || tw != w) {
        scaled = malloc((size_t)th * tw);
        if (!scaled || dp_picture_downscale(g, h, w, scaled, th, tw) < 0) {
            free(scaled);
            return -1;
        }
        p = scaled;
    }
    *rows = (th + 1) / 2;
    *cols = tw;
    for (int r = 0; r < *rows; r++)
        for (int x = 0; x < tw; x++) {
            int top = p[(size_t)(2 * r) * tw + x];
            int bottom = 2 * r + 1 < th ? p[(size_t)(2 * r + 1) * tw + x] : 0;
            cells[(size_t)r * tw + x] = make_cell(top, bottom, mode);
        }
    free(scaled);
    return 0;
}

/* ---- drawing on ncurses ---- */

#define PAIR_KEYS (256 * 256)

struct dp_picture_pairs {
    dp_picture_mode mode; /* what the keys' (fg, bg) mean */
    int next;             /* the next pair number to set up */
    int pair_of[PAIR_KEYS]; /* by fg * 256 + bg; 0 = none yet */
};

dp_picture_pairs *dp_picture_pairs_new(void)
{
    dp_picture_pairs *pp = calloc(1, sizeof *pp);
    if (pp)
        pp->next = DP_PICTURE_FIRST_PAIR;
    return pp;
}

void dp_picture_pairs_free(dp_picture_pairs *pp) { free(pp); }

/* Forgets every pair, to hand them out again from the first. */
static void pairs_reset(dp_picture_pairs *pp, dp_picture_mode mode)
{
    memset(pp->pair_of, 0, sizeof pp->pair_of);
    pp->mode = mode;
    pp->next = DP_PICTURE_FIRST_PAIR;
}

/* The pairs ncurses offers, capped at what pair_of can number. */
static int pairs_limit(void)
{
    return COLOR_PAIRS < PAIR_KEYS ? COLOR_PAIRS : PAIR_KEYS;
}

dp_picture_mode dp_picture_drawable(dp_picture_mode wanted)
{
    if (wanted == DP_PICTURE_ASCII || !has_colors() || COLORS < 256 ||
        pairs_limit() <= DP_PICTURE_FIRST_PAIR)
        return DP_PICTURE_ASCII;
    if (wanted == DP_PICTURE_TRUECOLOR && COLORS < DP_PICTURE_DIRECT_COLORS)
        return DP_PICTURE_GREY256;
    return wanted;
}

/* The terminal colour number for a cell value v of `mode` (GREY256 or TRUECOLOR): a palette
 * index on a 256-colour terminal, 0xLLLLLL on a direct-colour one (where 0..7 are the ANSI
 * colours, so black is sent as 0x010101). */
static int term_color(int v, dp_picture_mode mode)
{
    if (COLORS < DP_PICTURE_DIRECT_COLORS)
        return mode == DP_PICTURE_GREY256 ? v : dp_picture_xterm_grey(v);
    int level = mode == DP_PICTURE_GREY256 ? dp_picture_xterm_level(v) : v;
    return (level < 1 ? 1 : level) * 0x010101;
}

/* The pair for a cell (set up on first use), or -1 when none is left. */
static int pair_for(dp_picture_pairs *pp, const dp_picture_cell *c)
{
    int *slot = &pp->pair_of[(c->fg & 255) * 256 + (c->bg & 255)];
    if (*slot)
        return *slot;
    if (pp->next >= pairs_limit())
        return -1;
    int fg = term_color(c->fg, pp->mode), bg = term_color(c->bg, pp->mode);
#ifdef NCURSES_EXT_COLORS
    if (init_extended_pair(pp->next, fg, bg) == ERR)
        return -1;
#else
    if (pp->next > 32767 || fg > 255 || bg > 255 ||
        init_pair((short)pp->next, (short)fg, (short)bg) == ERR)
        return -1;
#endif
    *slot = pp->next++;
    return *slot;
}

/* A cell as an ASCII character, for a terminal (or a cell) without colours. */
static char cell_ascii(const dp_picture_cell *c, dp_picture_mode mode)
{
    if (mode == DP_PICTURE_ASCII)
        return c->glyph[0];
    int top = mode == DP_PICTURE_GREY256 ? dp_picture_xterm_level(c->fg) : c->fg;
    int bottom = mode == DP_PICTURE_GREY256 ? dp_picture_xterm_level(c->bg) : c->bg;
    return ramp_char(((top < 0 ? 0 : top) + (bottom < 0 ? 0 : bottom) + 1) / 2);
}

/* Draws one cell at the cursor; returns false when it fell back to ASCII for want of a pair. */
static bool draw_cell(dp_picture_pairs *pp, const dp_picture_cell *c, dp_picture_mode mode,
                      dp_picture_mode used)
{
    if (used == DP_PICTURE_ASCII) {
        addch((chtype)(unsigned char)cell_ascii(c, mode));
        return true;
    }
    int pair = pair_for(pp, c);
    if (pair < 0) {
        attr_set(A_NORMAL, 0, NULL);
        addch((chtype)(unsigned char)cell_ascii(c, mode));
        return false;
    }
    attr_set(A_NORMAL, 0, &pair); /* ncurses: an int pair through opts, beyond a short's range */
    addstr(DP_PICTURE_HALF);
    return true;
}

dp_picture_mode dp_picture_draw(dp_picture_pairs *pp, int y, int x, const dp_picture_cell *cells,
                                int rows, int cols, dp_picture_mode mode)
{
    dp_picture_mode used = pp ? dp_picture_drawable(mode) : DP_PICTURE_ASCII;
    if (used != DP_PICTURE_ASCII &&
        (pp->mode != mode || pp->next + (long)rows * cols > pairs_limit()))
        pairs_reset(pp, mode); /* pairs of the last picture may be redefined now, not mid-draw */
    bool whole = true;
    for (int r = 0; r < rows; r++) {
        if (move(y + r, x) == ERR)
            continue;
        for (int c = 0; c < cols; c++)
            whole &= draw_cell(pp, &cells[(size_t)r * cols + c], mode, used);
    }
    attr_set(A_NORMAL, 0, NULL);
    return whole ? used : DP_PICTURE_ASCII;
}
