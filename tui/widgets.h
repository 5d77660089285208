/* widgets.h -- the dashboard's drawing pieces, on ncurses's standard screen: text clipped to a
 * width, meters, sparklines, a braille (or ASCII) line plot, the pipeline timeline. */
#ifndef DP_TUI_WIDGETS_H
#define DP_TUI_WIDGETS_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/advisor.h"
#include "engine/control.h"
#include "engine/metrics.h"
#include "tui/layout.h"

/* How to draw: UTF-8 glyphs (braille, blocks) or ASCII; colours or attributes only. */
typedef struct dp_style {
    bool utf8;
    bool color;
} dp_style;

/* Colour pairs (used only when style.color). */
enum { DP_PAIR_TITLE = 1, DP_PAIR_GOOD, DP_PAIR_WARN, DP_PAIR_BAD, DP_PAIR_FWD, DP_PAIR_BWD,
       DP_PAIR_KEY, DP_PAIR_MARK };

/* Sets up the colour pairs when style.color. */
void dp_widgets_colors(const dp_style *st);

/* An attribute: the pair when colours are on, else the monochrome fallback (bold, reverse). */
int dp_attr(const dp_style *st, int pair, int mono);

/* printf-style text at (y, x), cut at w columns. */
void dp_text(int y, int x, int w, int attr, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* A meter [||||    ] of width w filled to frac (0..1). */
void dp_bar(const dp_style *st, int y, int x, int w, double frac);

/* The last w of values v[n] as a sparkline scaled to their range (lo..hi when lo < hi). */
void dp_sparkline(const dp_style *st, int y, int x, int w, const float *v, int n, float lo,
                  float hi);

/* The run's loss over its steps in r, with marks where the strategy changed. */
void dp_loss_plot(const dp_style *st, dp_rect r, const dp_series *s);
/* The same for any series, titled "<what> over N steps" (a GAN's "D loss", "G loss"). */
void dp_series_plot(const dp_style *st, dp_rect r, const dp_series *s, const char *what);

/* The last step's operations, one row per stage (timelines[S]), with time running right: each
 * column merged (tui/timeline.h), each stage's bubble beside the ideal of S stages and `micro`
 * micro-batches, and a time axis in ms. */
void dp_timeline_plot(const dp_style *st, dp_rect r, const dp_timeline *timelines, int stages,
                      int micro);

/* "acc 87.12%", or "bpb 1.234" for text, a masked language model's "macc 42.17%" (accuracy
 * over the masked bytes), a GAN's "FD 12.34" (its Frechet distance) or, without quality
 * figures, "D(x) 0.512"; "-" for none (step < 0). */
void dp_eval_result(char *buf, size_t size, const dp_eval_point *e);
/* The evaluations evals[n] kept of `total`, newest last, as a table of step, loss and accuracy
 * or bits per byte (a masked language model's: step, mloss and macc, both over the masked
 * bytes; a GAN's: step, D's test loss, and the Frechet distance and score when the
 * newest has them, else D(x)); the one at best_step marked. */
void dp_eval_table(const dp_style *st, dp_rect r, const dp_eval_point *evals, int n, long total,
                   long best_step);

/* A candidate's memory on the devices it uses, compactly, in the run's device order: each
 * device's measured peak over its predicted bytes, "2.6M/2.7M 127K/130K"; a candidate not
 * measured, its prediction, "~2.7M ~130K". */
void dp_advice_memory(char *buf, size_t size, const dp_advice_table *t, const dp_advice *a);

/* Row i of the plan advisor's table as text, its plan name in plan_w columns: the mark ('*'
 * chosen, else ' '), plan, samples/s, step ms, idle and communication shares, MFU, then the
 * memory (dp_advice_memory) and "dropped: slower" for a plan stopped early, or for a plan not
 * measured "-" figures and the reason it was left out; when that row is wider than `width`,
 * the reason right after the plan instead of the "-" figures. i < 0: the header row. */
void dp_advice_row(char *buf, size_t size, const dp_advice_table *t, int i, int plan_w,
                   int width);

/* The plan advisor's table in r: the header row, then a row a candidate (dp_advice_row) from
 * row *first, which is clamped so that the rows fill r (and written back); the chosen plan in
 * bold (green with colours), dropped and left-out plans dim. Returns the rows that fit. */
int dp_advice_rows(const dp_style *st, dp_rect r, const dp_advice_table *t, int *first);

/* A device's utilisation over the wall-clock span [t0, t1) (the run's, the same for every
 * device) as a column chart with a 0-100 % scale on the left and a time axis on the last row. */
void dp_util_chart(const dp_style *st, dp_rect r, const dp_util_series *u, double t0,
                   double t1);

#endif
