/* widgets.c -- meters, sparklines, plots and the timeline, drawn with ncurses. */
#include "tui/widgets.h"

#include <curses.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "tui/timeline.h"

void dp_widgets_colors(const dp_style *st)
{
    if (!st->color)
        return;
    start_color();
    use_default_colors();
    init_pair(DP_PAIR_TITLE, COLOR_CYAN, -1);
    init_pair(DP_PAIR_GOOD, COLOR_GREEN, -1);
    init_pair(DP_PAIR_WARN, COLOR_YELLOW, -1);
    init_pair(DP_PAIR_BAD, COLOR_RED, -1);
    init_pair(DP_PAIR_FWD, COLOR_BLACK, COLOR_CYAN);
    init_pair(DP_PAIR_BWD, COLOR_BLACK, COLOR_MAGENTA);
    init_pair(DP_PAIR_KEY, COLOR_BLACK, COLOR_CYAN);
    init_pair(DP_PAIR_MARK, COLOR_YELLOW, -1);
}

int dp_attr(const dp_style *st, int pair, int mono)
{
    return st->color ? (int)COLOR_PAIR(pair) : mono;
}

void dp_text(int y, int x, int w, int attr, const char *fmt, ...)
{
    if (w <= 0)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    attron(attr);
    mvaddnstr(y, x, buf, w);
    attroff(attr);
}

void dp_bar(const dp_style *st, int y, int x, int w, double frac)
{
    if (w < 3)
        return;
    frac = frac < 0 || !isfinite(frac) ? 0 : frac > 1 ? 1 : frac;
    int inner = w - 2, fill = (int)(frac * inner + 0.5);
    int pair = frac < 0.5 ? DP_PAIR_GOOD : frac < 0.85 ? DP_PAIR_WARN : DP_PAIR_BAD;
    mvaddch(y, x, '[');
    attron(dp_attr(st, pair, A_BOLD));
    for (int i = 0; i < fill; i++)
        addch('|');
    attroff(dp_attr(st, pair, A_BOLD));
    for (int i = fill; i < inner; i++)
        addch(' ');
    addch(']');
}

void dp_sparkline(const dp_style *st, int y, int x, int w, const float *v, int n, float lo,
                  float hi)
{
    static const char *const blocks[] = { "\u2581", "\u2582", "\u2583", "\u2584",
                                           "\u2585", "\u2586", "\u2587", "\u2588" };
    static const char ascii[] = "_.-:=+*#";
    if (n > w) {
        v += n - w;
        n = w;
    }
    if (!(lo < hi)) {
        lo = INFINITY;
        hi = -INFINITY;
        for (int i = 0; i < n; i++)
            if (isfinite(v[i])) {
                lo = v[i] < lo ? v[i] : lo;
                hi = v[i] > hi ? v[i] : hi;
            }
    }
    move(y, x);
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i])) {
            addch(' ');
            continue;
        }
        int level = hi > lo ? (int)((v[i] - lo) / (hi - lo) * 7.0f + 0.5f) : 3;
        level = level < 0 ? 0 : level > 7 ? 7 : level;
        if (st->utf8)
            addstr(blocks[level]);
        else
            addch((chtype)ascii[level]);
    }
}

/* ---- the loss plot: braille dots (2 x 4 a cell) or one '*' a cell ---- */

#define PLOT_MAX_COLS 512
#define PLOT_MAX_ROWS 64

/* Braille dot bits, by column (0, 1) and row (0..3) inside a cell. */
static const int braille_bit[2][4] = { { 0x01, 0x02, 0x04, 0x40 }, { 0x08, 0x10, 0x20, 0x80 } };

/* Writes U+2800 + bits as UTF-8. */
static void put_braille(int bits)
{
    int cp = 0x2800 + bits;
    char s[4] = { (char)(0xE0 | (cp >> 12)), (char)(0x80 | ((cp >> 6) & 0x3F)),
                  (char)(0x80 | (cp & 0x3F)), 0 };
    addstr(s);
}

void dp_loss_plot(const dp_style *st, dp_rect r, const dp_series *s)
{
    dp_series_plot(st, r, s, "loss");
}

void dp_series_plot(const dp_style *st, dp_rect r, const dp_series *s, const char *what)
{
    if (r.h < 3 || r.w < 20)
        return;
    const int label_w = 8;
    int cols = r.w - label_w - 1, rows = r.h - 2; /* a title row and an axis row */
    cols = cols > PLOT_MAX_COLS ? PLOT_MAX_COLS : cols;
    rows = rows > PLOT_MAX_ROWS ? PLOT_MAX_ROWS : rows;
    int title = dp_attr(st, DP_PAIR_TITLE, A_BOLD);
    dp_text(r.y, r.x, r.w, title, "%s over %ld steps", what, s->steps);
    if (s->n_points < 2) {
        dp_text(r.y + 1, r.x + label_w, cols, A_NORMAL, "%s",
                !s->steps                          ? "(waiting for steps)"
                : s->n_points == 0 && !s->pending ? "(no finite loss to plot)"
                                                  : "(a plot needs 2 steps)");
        return;
    }
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < s->n_points; i++) {
        lo = s->points[i] < lo ? s->points[i] : lo;
        hi = s->points[i] > hi ? s->points[i] : hi;
    }
    if (!(hi > lo))
        hi = lo + 1e-3f;
    int dx = st->utf8 ? 2 : 1, dy = st->utf8 ? 4 : 1; /* dots a cell */
    int xdots = cols * dx, ydots = rows * dy;
    static unsigned char cell[PLOT_MAX_ROWS][PLOT_MAX_COLS];
    memset(cell, 0, sizeof cell);
    int prev = -1;
    for (int x = 0; x < xdots; x++) {
        /* the point under this dot column (the series is stretched or squeezed to fit) */
        int i = (int)((long)x * (s->n_points - 1) / (xdots > 1 ? xdots - 1 : 1));
        int y = (int)((hi - s->points[i]) / (hi - lo) * (float)(ydots - 1) + 0.5f);
        int from = prev < 0 ? y : prev, to = y; /* join to the previous column */
        if (from > to) {
            int t = from;
            from = to;
            to = t;
        }
        for (int yy = from; yy <= to; yy++)
            cell[yy / dy][x / dx] |= st->utf8 ? braille_bit[x % 2][yy % 4] : 1;
        prev = y;
    }
    int curve = dp_attr(st, DP_PAIR_GOOD, A_NORMAL);
    for (int row = 0; row < rows; row++) {
        if (row == 0)
            dp_text(r.y + 1, r.x, label_w, A_NORMAL, "%7.4f", hi);
        else if (row == rows - 1)
            dp_text(r.y + 1 + row, r.x, label_w, A_NORMAL, "%7.4f", lo);
        move(r.y + 1 + row, r.x + label_w);
        attron(curve);
        for (int c = 0; c < cols; c++) {
            if (st->utf8)
                put_braille(cell[row][c]);
            else
                addch(cell[row][c] ? '*' : ' ');
        }
        attroff(curve);
    }
    /* axis: first and last step, and a mark under each change of strategy */
    int axis_y = r.y + r.h - 1;
    long first = s->first_step, last = s->last_step; /* the pending point is a column at most */
    dp_text(axis_y, r.x + label_w, cols, A_NORMAL, "%ld", first);
    char last_text[24];
    int n = snprintf(last_text, sizeof last_text, "%ld", last);
    dp_text(axis_y, r.x + label_w + cols - n, n, A_NORMAL, "%s", last_text);
    char first_text[24];
    int n_first = snprintf(first_text, sizeof first_text, "%ld", first);
    int mark = dp_attr(st, DP_PAIR_MARK, A_BOLD);
    for (int k = 0; k < s->n_marks; k++) {
        if (s->marks[k] < first || s->marks[k] > last)
            continue;
        int c = (int)((double)(s->marks[k] - first) / (double)(last - first + 1) * cols);
        if (c <= n_first || c >= cols - n - 1) /* the labels and a space beside them stay */
            continue;
        dp_text(axis_y, r.x + label_w + c, 1, mark, "^");
    }
}

/* ---- the pipeline timeline ---- */

/* The time axis under the timeline: 0 and the end of the step in ms, and the legend between
 * them (as much of it as fits). */
static void timeline_axis(int y, int x, int cols, float span)
{
    static const char *const legend[] = { "F/f fwd  B/b bwd  * both  : brief  . idle",
                                          "F/f fwd B/b bwd *both :brief .idle",
                                          "F fwd B bwd" };
    char end[24];
    int n = snprintf(end, sizeof end, "%.1f ms", 1e3 * span);
    dp_text(y, x, cols, A_NORMAL, "0");
    if (cols > n + 2)
        dp_text(y, x + cols - n, n, A_NORMAL, "%s", end);
    for (int k = 0; k < 3; k++) {
        int len = (int)strlen(legend[k]);
        if (len + n + 4 <= cols) {
            dp_text(y, x + 2 + (cols - 2 - len - n - 1) / 2, len, A_NORMAL, "%s", legend[k]);
            break;
        }
    }
}

/* Stage s's row: its label, its merged operations and its bubble. */
static void timeline_row(const dp_style *st, int y, int x, int cols, const dp_timeline *tl,
                         int s, float span, bool label)
{
    int fwd = dp_attr(st, DP_PAIR_FWD, A_NORMAL), bwd = dp_attr(st, DP_PAIR_BWD, A_REVERSE);
    char cells[PLOT_MAX_COLS];
    cols = cols > PLOT_MAX_COLS ? PLOT_MAX_COLS : cols;
    dp_timeline_merge(tl, span, cols, cells);
    if (label)
        dp_text(y, x, 4, A_NORMAL, "s%d", s);
    move(y, x + 4);
    for (int c = 0; c < cols; c++) {
        int a = cells[c] == 'F' || cells[c] == 'f' ? fwd
                : cells[c] == 'B' || cells[c] == 'b' ? bwd : (int)A_NORMAL;
        attron(a);
        addch((chtype)cells[c]);
        attroff(a);
    }
    if (label)
        dp_text(y, x + 4 + cols, 6, A_NORMAL, " %3.0f%%", 100 * dp_timeline_bubble(tl, span));
}

void dp_timeline_plot(const dp_style *st, dp_rect r, const dp_timeline *tl, int stages,
                      int micro)
{
    if (r.h < 3 || r.w < 20)
        return;
    int title = dp_attr(st, DP_PAIR_TITLE, A_BOLD);
    float span = 0;
    for (int s = 0; s < stages; s++)
        span = tl[s].step_s > span ? tl[s].step_s : span;
    dp_text(r.y, r.x, r.w, title, "step %.1f ms  idle%% (ideal %.0f%%)",
            1e3 * span, 100 * dp_timeline_ideal_bubble(stages, micro));
    const int label_w = 4, bubble_w = 5;
    int cols = r.w - label_w - bubble_w - 1;
    int rows = r.h - 2; /* the title and the axis */
    int each = stages > 0 && rows / stages > 1 ? (rows / stages > 3 ? 3 : rows / stages) : 1;
    for (int k = 0; k < rows / each && k < stages; k++) {
        /* more stages than rows: the first ones and the last */
        int s = k == rows - 1 && stages > rows ? stages - 1 : k;
        for (int y = 0; y < each; y++) /* a taller row where there is room */
            timeline_row(st, r.y + 1 + k * each + y, r.x, cols, &tl[s], s, span, y == 0);
    }
    if (span > 0)
        timeline_axis(r.y + r.h - 1, r.x + label_w, cols, span);
}

/* ---- the evaluation history ---- */

/* "acc 87.12%", "bpb 1.234" or "macc 42.17%" for an evaluation. */
void dp_eval_result(char *buf, size_t size, const dp_eval_point *e)
{
    if (e->step < 0)
        snprintf(buf, size, "-");
    else if (e->masked) /* text too: its figure is the accuracy at the masked bytes */
        snprintf(buf, size, "macc %.2f%%", 100 * e->accuracy);
    else if (e->gan && e->generated > 0)
        snprintf(buf, size, "FD %.4g", e->frechet);
    else if (e->gan)
        snprintf(buf, size, "D(x) %.3f", e->d_real);
    else if (e->text)
        snprintf(buf, size, "bpb %.3f", e->loss / log(2.0));
    else
        snprintf(buf, size, "acc %.2f%%", 100 * e->accuracy);
}

/* A GAN's table: step and D's test loss, then the Frechet distance and score when the newest
 * evaluation has them (else D(x)); the best (lowest distance) marked. */
static void gan_eval_table(const dp_style *st, dp_rect r, const dp_eval_point *evals, int n,
                           long total, long best_step)
{
    int title = dp_attr(st, DP_PAIR_TITLE, A_BOLD);
    bool quality = evals[n - 1].generated > 0;
    dp_text(r.y, r.x + 1, r.w - 2, title, quality ? "evaluations (%ld, * best FD)"
                                                  : "evaluations (%ld)", total);
    if (quality)
        dp_text(r.y + 1, r.x + 1, r.w - 1, A_BOLD, "%5s %6s %6s %6s", "step", "D loss", "FD",
                "score");
    else
        dp_text(r.y + 1, r.x + 1, r.w - 1, A_BOLD, "%5s %6s %6s", "step", "D loss", "D(x)");
    int rows = r.h - 2, first = n > rows ? n - rows : 0; /* the newest that fit */
    for (int i = first; i < n; i++) {
        const dp_eval_point *e = &evals[i];
        bool best = e->step == best_step;
        int attr = best ? dp_attr(st, DP_PAIR_GOOD, A_BOLD) : (int)A_NORMAL;
        if (quality && e->generated > 0)
            dp_text(r.y + 2 + i - first, r.x, r.w, attr, "%c%5ld %6.4g %6.4g %6.4g",
                    best ? '*' : ' ', e->step, e->loss, e->frechet, e->score);
        else if (quality) /* an evaluation without them, as a run resumed with a classifier */
            dp_text(r.y + 2 + i - first, r.x, r.w, attr, "%c%5ld %6.4g %6s %6s", ' ', e->step,
                    e->loss, "-", "-");
        else
            dp_text(r.y + 2 + i - first, r.x, r.w, attr, "%c%5ld %6.4g %6.3f", ' ', e->step,
                    e->loss, e->d_real);
    }
}

void dp_eval_table(const dp_style *st, dp_rect r, const dp_eval_point *evals, int n, long total,
                   long best_step)
{
    if (r.h < 2 || r.w < 16)
        return;
    if (n > 0 && evals[n - 1].gan) {
        gan_eval_table(st, r, evals, n, total, best_step);
        return;
    }
    int title = dp_attr(st, DP_PAIR_TITLE, A_BOLD);
    bool text = n > 0 && evals[n - 1].text;
    bool masked = n > 0 && evals[n - 1].masked; /* loss and accuracy over the masked bytes */
    dp_text(r.y, r.x + 1, r.w - 2, title, r.w >= 28 ? "evaluations (%ld, * best)"
                                                   : "evals (%ld, * best)", total);
    if (n == 0) {
        dp_text(r.y + 1, r.x + 1, r.w - 1, A_NORMAL, "(none yet)");
        return;
    }
    dp_text(r.y + 1, r.x + 1, r.w - 1, A_BOLD, "%6s %6s %7s", "step", masked ? "mloss" : "loss",
            masked ? "macc" : text ? "bpb" : "acc");
    int rows = r.h - 2, first = n > rows ? n - rows : 0; /* the newest that fit */
    for (int i = first; i < n; i++) {
        const dp_eval_point *e = &evals[i];
        char res[24];
        if (e->text && !e->masked)
            snprintf(res, sizeof res, "%.3f", e->loss / log(2.0));
        else
            snprintf(res, sizeof res, "%.2f%%", 100 * e->accuracy);
        bool best = e->step == best_step; /* marked with '*' */
        int attr = best ? dp_attr(st, DP_PAIR_GOOD, A_BOLD) : (int)A_NORMAL;
        dp_text(r.y + 2 + i - first, r.x, r.w, attr, "%c%6ld %6.4g %7s", best ? '*' : ' ',
                e->step, e->loss, res);
    }
}

/* ---- a device's utilisation over the run ---- */

/* One cell of a column chart: the part of value v (0..1 of the chart's height) that falls in
 * the row `from_bottom` rows up of `rows`. */
static void chart_cell(const dp_style *st, float v, int from_bottom, int rows)
{
    static const char *const blocks[] = { " ", "\u2581", "\u2582", "\u2583", "\u2584",
                                           "\u2585", "\u2586", "\u2587", "\u2588" };
    if (!isfinite(v)) {
        addch(' ');
        return;
    }
    float level = v * (float)rows - (float)from_bottom; /* 0..1 fills this cell */
    level = level < 0 ? 0 : level > 1 ? 1 : level;
    if (st->utf8)
        addstr(blocks[(int)(level * 8 + 0.5f)]);
    else
        addch(level >= 0.5f ? '#' : ' ');
}

void dp_util_chart(const dp_style *st, dp_rect r, const dp_util_series *u, double t0, double t1)
{
    const int label_w = 5;
    int cols = r.w - label_w, rows = r.h - 1; /* the last row is the time axis */
    if (rows < 1 || cols < 8)
        return;
    cols = cols > PLOT_MAX_COLS ? PLOT_MAX_COLS : cols;
    if (u->n_points == 0 && !(u->pending_wall > 0)) {
        dp_text(r.y, r.x + label_w, cols, A_NORMAL, "utilisation over the run: no step yet");
        return;
    }
    float v[PLOT_MAX_COLS];
    dp_util_resample(u, t0, t1, cols, v); /* the run's wall time across the width */
    int curve = dp_attr(st, DP_PAIR_GOOD, A_NORMAL);
    for (int row = 0; row < rows; row++) {
        const char *label = row == 0 ? "100%" : row == rows - 1 ? "  0%" : "";
        if (rows == 1)
            label = "util";
        dp_text(r.y + row, r.x, label_w, A_NORMAL, "%4s", label);
        move(r.y + row, r.x + label_w);
        attron(curve);
        for (int c = 0; c < cols; c++)
            chart_cell(st, v[c], rows - 1 - row, rows);
        attroff(curve);
    }
    char span[24], end[32];
    dp_format_duration(span, sizeof span, t1 - t0);
    snprintf(end, sizeof end, "wall %s", span); /* pauses included, unlike the elapsed time */
    int axis = r.y + r.h - 1, n_end = (int)strlen(end);
    dp_text(axis, r.x + label_w, cols, A_NORMAL, "0:00");
    if (cols > n_end + 6)
        dp_text(axis, r.x + label_w + cols - n_end, n_end, A_NORMAL, "%s", end);
}

/* ---- the plan advisor's table ---- */

/* "2.6M", "127K", "512B": bytes in 4 or 5 characters, for the table's narrow memory cells. */
static void short_bytes(char *buf, size_t size, size_t bytes)
{
    static const char unit[] = "BKMGT";
    double b = (double)bytes;
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    snprintf(buf, size, u && b < 10 ? "%.1f%c" : "%.0f%c", b, unit[u]);
}

void dp_advice_memory(char *buf, size_t size, const dp_advice_table *t, const dp_advice *a)
{
    size_t at = 0;
    bool measured = a->steps > 0 && !a->left_out;
    buf[0] = '\0';
    for (int d = 0; d < t->n_devices && d < DP_MAX_DEVICES && at + 1 < size; d++) {
        if (!a->need[d] && !a->peak[d]) /* a device the plan leaves unused */
            continue;
        char need[16], peak[16];
        short_bytes(need, sizeof need, a->need[d]);
        short_bytes(peak, sizeof peak, a->peak[d]);
        int n = measured ? snprintf(buf + at, size - at, "%s%s/%s", at ? " " : "", peak, need)
                         : snprintf(buf + at, size - at, "%s~%s", at ? " " : "", need);
        if (n < 0)
            break;
        at += (size_t)n;
    }
}

void dp_advice_row(char *buf, size_t size, const dp_advice_table *t, int i, int plan_w,
                   int width)
{
    if (i < 0) {
        snprintf(buf, size, "  %-*s %5s %10s %7s %6s %6s %6s  %s", plan_w, "plan", "steps",
                 "samples/s", "step ms", "idle", "comm", "MFU",
                 "memory per device: peak/predicted, or why not measured");
        return;
    }
    const dp_advice *a = &t->c[i];
    char plan[64];
    snprintf(plan, sizeof plan, "%s", a->plan[0] ? a->plan : dp_strategy_name(a->req.strategy));
    char *unused = strstr(plan, " ("); /* "(from cpu:2 unused)": whole, or not at all */
    if (unused && (int)strlen(plan) > plan_w && unused - plan <= plan_w)
        *unused = '\0';
    char mem[256];
    if (a->steps > 0 && !a->left_out && a->step_s > 0) {
        char mfu[16] = "-";
        if (a->mfu >= 0)
            snprintf(mfu, sizeof mfu, "%.1f%%", 100 * (a->mfu > 1 ? 1 : a->mfu));
        dp_advice_memory(mem, sizeof mem, t, a);
        snprintf(buf, size, "%c %-*.*s %5d %10.1f %7.2f %5.1f%% %5.1f%% %6s  %s%s",
                 a->chosen ? '*' : ' ', plan_w, plan_w, plan, a->steps, t->batch / a->step_s,
                 1e3 * a->step_s, 100 * a->idle, 100 * a->comm, mfu, mem,
                 a->dropped ? "  dropped: slower" : "");
        return;
    }
    /* not measured: the reason it was left out, else (a search that stopped before it) the
     * prediction */
    if (a->left_out || a->why[0])
        snprintf(mem, sizeof mem, "%s", a->why);
    else
        dp_advice_memory(mem, sizeof mem, t, a);
    int n = snprintf(buf, size, "  %-*.*s %5s %10s %7s %6s %6s %6s  %s", plan_w, plan_w, plan,
                     "-", "-", "-", "-", "-", "-", mem);
    if (n > width) /* the reason where the figures would be, rather than cut */
        snprintf(buf, size, "  %-*.*s  %s", plan_w, plan_w, plan, mem);
}

int dp_advice_rows(const dp_style *st, dp_rect r, const dp_advice_table *t, int *first)
{
    if (r.h < 2 || r.w < 20)
        return 0;
    /* the plans' names in full where the figures and 16 columns of memory or reason still fit
     * beside them, else cut to 28 columns ("PP 2 stages, 16 micro, GPipe" without the devices
     * it leaves unused); what does not fit is cut at the right */
    int plan_w = 4;
    for (int i = 0; i < t->n; i++) {
        const dp_advice *a = &t->c[i];
        int len = (int)strlen(a->plan[0] ? a->plan : dp_strategy_name(a->req.strategy));
        plan_w = len > plan_w ? len : plan_w;
    }
    int room = r.w - 2 - 46 - 2 - 16; /* the mark; the figures; the memory or reason */
    if (plan_w > room)
        plan_w = room > 28 ? room : plan_w < 28 ? plan_w : 28;
    char text[512];
    dp_advice_row(text, sizeof text, t, -1, plan_w, r.w);
    dp_text(r.y, r.x, r.w, A_BOLD, "%s", text);
    int rows = r.h - 1;
    int most = t->n > rows ? t->n - rows : 0;
    *first = *first > most ? most : *first < 0 ? 0 : *first;
    for (int k = 0; k < rows && *first + k < t->n; k++) {
        const dp_advice *a = &t->c[*first + k];
        int attr = a->chosen                   ? dp_attr(st, DP_PAIR_GOOD, A_BOLD) | A_BOLD
                   : a->left_out || a->dropped ? (int)A_DIM
                                               : (int)A_NORMAL;
        dp_advice_row(text, sizeof text, t, *first + k, plan_w, r.w);
        dp_text(r.y + 1 + k, r.x, r.w, attr, "%s", text);
    }
    return rows;
}
