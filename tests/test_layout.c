/* test_layout.c -- the dashboard's layout, a pure function, without a terminal. */
#include "tests/unit.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>

#include "tui/layout.h"
#include "tui/widgets.h"

/* The rectangles a layout shows (h > 0), for pairwise checks. */
static int shown(const dp_layout *l, dp_rect *out, const char **names)
{
    int n = 0;
    out[n] = l->header, names[n++] = "header";
    out[n] = l->health, names[n++] = "health";
    for (int i = 0; i < l->n_panels; i++)
        out[n] = l->panels[i], names[n++] = "panel";
    out[n] = l->loss_plot, names[n++] = "loss plot";
    out[n] = l->evals, names[n++] = "evaluations";
    out[n] = l->timeline, names[n++] = "timeline";
    out[n] = l->event, names[n++] = "event";
    out[n] = l->keys, names[n++] = "keys";
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (out[i].h > 0) {
            out[kept] = out[i];
            names[kept++] = names[i];
        }
    return kept;
}

static int overlap(dp_rect a, dp_rect b)
{
    return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

/* Everything the layout of n devices on cols x rows shows is on the screen, and nothing
 * overlaps. */
static void check_on_screen(const dp_layout *l, int cols, int rows, int n)
{
    dp_rect r[DP_LAYOUT_MAX_PANELS + 8];
    const char *name[DP_LAYOUT_MAX_PANELS + 8];
    int m = shown(l, r, name);
    for (int i = 0; i < m; i++) {
        ck_assert_msg(r[i].x >= 0 && r[i].y >= 0 && r[i].w > 0 && r[i].x + r[i].w <= cols &&
                          r[i].y + r[i].h <= rows,
                      "%dx%d, %d devices: %s {%d,%d,%d,%d} is off the screen", cols, rows, n,
                      name[i], r[i].x, r[i].y, r[i].w, r[i].h);
        for (int j = i + 1; j < m; j++)
            ck_assert_msg(!overlap(r[i], r[j]),
                          "%dx%d, %d devices: %s {%d,%d,%d,%d} overlaps %s {%d,%d,%d,%d}", cols,
                          rows, n, name[i], r[i].x, r[i].y, r[i].w, r[i].h, name[j], r[j].x,
                          r[j].y, r[j].w, r[j].h);
    }
}

/* Every size from 80x24 to 300x100, 1..8 devices, with and without a timeline: everything is
 * inside the screen, nothing overlaps, every device has a panel of at least the minimum size,
 * the plot has at least 3 rows, the key bar is the last row and the header the first. */
START_TEST(test_layout_fits)
{
    int sizes[][2] = { { 80, 24 }, { 81, 25 }, { 100, 30 }, { 120, 40 }, { 132, 43 },
                       { 160, 50 }, { 200, 60 }, { 239, 71 }, { 300, 100 }, { 80, 100 },
                       { 300, 24 } };
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
        for (int n = 1; n <= 8; n++)
            for (int pipe = 0; pipe < 2; pipe++) {
                int cols = sizes[k][0], rows = sizes[k][1];
                dp_layout l;
                dp_layout_make(cols, rows, n, pipe, &l);
                ck_assert_msg(!l.too_small, "%dx%d called too small", cols, rows);
                ck_assert_int_eq(l.n_panels, n);
                check_on_screen(&l, cols, rows, n);
                for (int i = 0; i < n; i++)
                    ck_assert_msg(l.panels[i].w >= DP_PANEL_MIN_COLS &&
                                      l.panels[i].h >= DP_PANEL_MIN_ROWS,
                                  "%dx%d, %d devices: panel %d is %dx%d", cols, rows, n, i,
                                  l.panels[i].w, l.panels[i].h);
                ck_assert_msg(l.loss_plot.h >= 3, "%dx%d: plot of %d rows", cols, rows,
                              l.loss_plot.h);
                ck_assert_msg(pipe ? l.timeline.h == l.loss_plot.h : l.timeline.h == 0,
                              "%dx%d: timeline %d rows with pipeline=%d", cols, rows,
                              l.timeline.h, pipe);
                ck_assert_int_eq(l.keys.y, rows - 1);
                ck_assert_int_eq(l.header.y, 0);
            }
}
END_TEST

/* Panels use the screen: at 120x40 four panels tile 2x2; eight at 300x100 use 2 or more
 * columns; one device gets the full width. */
START_TEST(test_layout_tiles)
{
    dp_layout l;
    dp_layout_make(120, 40, 4, false, &l);
    ck_assert_int_eq(l.panel_cols, 2);
    ck_assert_int_eq(l.panels[1].y, l.panels[0].y);
    ck_assert_int_eq(l.panels[2].x, l.panels[0].x);
    ck_assert_int_gt(l.panels[2].y, l.panels[0].y);
    dp_layout_make(300, 100, 8, true, &l);
    ck_assert_int_ge(l.panel_cols, 2);
    dp_layout_make(120, 40, 1, false, &l);
    ck_assert_int_eq(l.panels[0].w, 120);
}
END_TEST

/* More than 8 devices: a line each, in columns of at least DP_LINE_MIN_COLS, all of them when
 * they fit, else as many as fit with the plot keeping 4 rows; nothing off the screen or
 * overlapping. */
START_TEST(test_layout_lines)
{
    int sizes[][2] = { { 80, 24 }, { 120, 40 }, { 200, 60 }, { 300, 100 }, { 127, 30 } };
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
        for (int n = 9; n <= 200; n += n < 20 ? 1 : 37) {
            int cols = sizes[k][0], rows = sizes[k][1];
            dp_layout l;
            dp_layout_make(cols, rows, n, n % 2, &l);
            ck_assert_int_ge(l.n_panels, 1);
            ck_assert_int_le(l.n_panels, n < DP_LAYOUT_MAX_PANELS ? n : DP_LAYOUT_MAX_PANELS);
            check_on_screen(&l, cols, rows, n);
            for (int i = 0; i < l.n_panels; i++)
                ck_assert_msg(l.panels[i].h == 1 && l.panels[i].w >= DP_LINE_MIN_COLS,
                              "%dx%d, %d devices: line %d is %dx%d", cols, rows, n, i,
                              l.panels[i].w, l.panels[i].h);
            ck_assert_msg(l.loss_plot.h >= 4, "%dx%d, %d devices: plot of %d rows", cols, rows,
                          n, l.loss_plot.h);
        }
    dp_layout l;
    dp_layout_make(80, 24, 16, false, &l); /* 18 body rows: 12 lines, a blank, 5 of plot */
    ck_assert_int_eq(l.n_panels, 12);
    dp_layout_make(200, 60, 16, false, &l); /* all of them, in 3 columns of 6 */
    ck_assert_int_eq(l.n_panels, 16);
    ck_assert_int_eq(l.panel_cols, 3);
    ck_assert_int_eq(l.panels[6].x, l.panels[0].w);
    ck_assert_int_eq(l.panels[6].y, l.panels[0].y);
}
END_TEST

/* Below 80x24 a summary in the top rows (at most 3), nothing else laid out. */
START_TEST(test_layout_too_small)
{
    int sizes[][2] = { { 79, 24 }, { 80, 23 }, { 40, 10 }, { 60, 20 }, { 200, 23 }, { 79, 100 } };
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        dp_layout l;
        dp_layout_make(sizes[k][0], sizes[k][1], 4, true, &l);
        ck_assert_msg(l.too_small, "%dx%d not too small", sizes[k][0], sizes[k][1]);
        ck_assert_int_eq(l.n_panels, 0);
        ck_assert_int_eq(l.header.h, 0);
        ck_assert_int_eq(l.summary.y, 0);
        ck_assert_int_eq(l.summary.w, sizes[k][0]);
        ck_assert_int_eq(l.summary.h, 3);
    }
    dp_layout l;
    dp_layout_make(40, 2, 1, false, &l); /* two rows: two lines of summary */
    ck_assert_int_eq(l.summary.h, 2);
    dp_layout_make(0, 0, 1, false, &l);
    ck_assert_int_eq(l.summary.h, 0);
}
END_TEST

/* The rows of the screen that some rectangle covers. */
static int rows_covered(const dp_layout *l, int rows)
{
    dp_rect r[DP_LAYOUT_MAX_PANELS + 8];
    const char *name[DP_LAYOUT_MAX_PANELS + 8];
    int m = shown(l, r, name), covered = 0;
    for (int y = 0; y < rows; y++) {
        bool in = false;
        for (int i = 0; i < m && !in; i++)
            in = y >= r[i].y && y < r[i].y + r[i].h;
        covered += in;
    }
    return covered;
}

/* The three sizes of the issue: 80x24 with 8 devices keeps memory in every panel; 132x43 with
 * 2 devices and 200x60 leave no blank band (at most the row above the plot in line mode) and
 * give the panels' spare rows to a utilisation history of at least 3 rows; the evaluation
 * history sits beside the loss plot, at the plot's rows. */
START_TEST(test_layout_sizes)
{
    dp_layout l;
    dp_panel_rows pr;
    dp_layout_make(80, 24, 8, false, &l);
    ck_assert_int_eq(l.n_panels, 8);
    for (int i = 0; i < 8; i++) {
        dp_panel_rows_make(l.panels[i].h, &pr);
        ck_assert_msg(pr.mem >= 0 && pr.mem < l.panels[i].h, "80x24: panel %d has no memory", i);
        ck_assert_int_ge(pr.util, 0);
        ck_assert_int_ge(pr.loss, 0);
    }
    ck_assert_int_eq(rows_covered(&l, 24), 24);
    ck_assert_int_eq(l.evals.y, l.loss_plot.y);
    ck_assert_int_eq(l.evals.x, l.loss_plot.x + l.loss_plot.w);

    int sizes[][3] = { { 132, 43, 2 }, { 200, 60, 2 }, { 200, 60, 4 }, { 200, 60, 1 } };
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
        for (int pipe = 0; pipe < 2; pipe++) {
            int cols = sizes[k][0], rows = sizes[k][1], n = sizes[k][2];
            dp_layout_make(cols, rows, n, pipe, &l);
            ck_assert_int_eq(rows_covered(&l, rows), rows);
            for (int i = 0; i < n; i++) {
                dp_panel_rows_make(l.panels[i].h, &pr);
                ck_assert_msg(pr.hist >= 0 && pr.hist_h >= 3,
                              "%dx%d, %d devices: panel %d of %d rows has no history", cols,
                              rows, n, i, l.panels[i].h);
            }
            ck_assert_int_ge(l.evals.w, 24);
            ck_assert_int_eq(l.evals.h, l.loss_plot.h);
            if (pipe)
                ck_assert_int_ge(l.timeline.w, l.loss_plot.w);
        }
    dp_layout_make(200, 60, 16, true, &l); /* line mode: only the row above the plot blank */
    ck_assert_int_ge(rows_covered(&l, 60), 59);
}
END_TEST

/* A panel's lines: all inside it, none twice (but loss and utilisation at 3 rows), and every
 * row used from 4 rows up. */
START_TEST(test_panel_rows)
{
    for (int h = 2; h <= 40; h++) {
        dp_panel_rows p;
        dp_panel_rows_make(h, &p);
        int used[64] = { 0 };
        int lines[] = { p.title, p.loss, p.util == p.loss ? -1 : p.util, p.mem, p.split,
                        p.extra };
        for (size_t k = 0; k < sizeof lines / sizeof *lines; k++)
            if (lines[k] >= 0) {
                ck_assert_msg(lines[k] < h, "h %d: line %zu at %d", h, k, lines[k]);
                used[lines[k]]++;
            }
        for (int y = 0; y < p.hist_h; y++)
            used[p.hist + y]++;
        for (int y = 0; y < h; y++) {
            ck_assert_msg(used[y] <= 1, "h %d: row %d used %d times", h, y, used[y]);
            if (h >= 3)
                ck_assert_msg(used[y] == 1, "h %d: row %d blank", h, y);
        }
        if (h >= 3)
            ck_assert_int_ge(p.mem, 0);
    }
}
END_TEST

/* The test result an evaluation shows (header, health line): a classifier's accuracy, a
 * text's bits per byte, and a masked language model's accuracy over the masked bytes, which
 * is text too but has no "bpb" (its bits are per masked byte). */
START_TEST(test_eval_result)
{
    char buf[32];
    dp_eval_result(buf, sizeof buf, &(dp_eval_point){ .step = -1 });
    ck_assert_str_eq(buf, "-");
    dp_eval_result(buf, sizeof buf, &(dp_eval_point){ .step = 5, .loss = 0.4, .accuracy = 0.8712 });
    ck_assert_str_eq(buf, "acc 87.12%");
    dp_eval_result(buf, sizeof buf, &(dp_eval_point){ .step = 5, .loss = 1.234 * log(2.0),
                                                      .accuracy = 0.3, .text = true });
    ck_assert_str_eq(buf, "bpb 1.234");
    dp_eval_result(buf, sizeof buf, &(dp_eval_point){ .step = 5, .loss = 2.5, .accuracy = 0.42171,
                                                      .text = true, .masked = true });
    ck_assert_str_eq(buf, "macc 42.17%");
}
END_TEST

/* The plan advisor's rows as text: the chosen plan marked, figures from the measured step time
 * over the batch, memory as peak/predicted on the devices a plan uses (a prediction alone,
 * "~", for one not measured), and a plan left out with "-" figures and its reason, the reason
 * taking the figures' place when the row is too wide; long names lose the devices they leave
 * unused whole. */
START_TEST(test_advice_row)
{
    dp_advice c[3] = {
        { .req = { .strategy = DP_STRATEGY_DP }, .plan = "DP x2", .steps = 6, .step_s = 0.004,
          .idle = 0.25, .comm = 0.125, .mfu = 0.5, .chosen = true,
          .need = { 3 << 20, 3 << 20 }, .peak = { 2936012, 3 << 20 } },
        { .req = { .strategy = DP_STRATEGY_PP },
          .plan = "PP 2 stages, 4 micro, 1F1B (cpu:2 unused)",
          .steps = 2, .step_s = 0.008, .idle = 0.5, .comm = 0, .mfu = -1, .dropped = true,
          .need = { 2 << 20, 130000 }, .peak = { 2 << 20, 130000 } },
        { .req = { .strategy = DP_STRATEGY_SINGLE }, .plan = "single", .left_out = true,
          .no_room = true, .why = "needs 5.3 MiB on cpu:0, which has 4.0 MiB",
          .need = { 5557452 } },
    };
    dp_advice_table t = { .n = 3, .c = c, .chosen = 0, .n_devices = 3, .batch = 128 };
    char buf[512];
    dp_advice_memory(buf, sizeof buf, &t, &c[0]);
    ck_assert_str_eq(buf, "2.8M/3.0M 3.0M/3.0M");
    dp_advice_memory(buf, sizeof buf, &t, &c[2]);
    ck_assert_str_eq(buf, "~5.3M");
    dp_advice_row(buf, sizeof buf, &t, -1, 8, 200);
    ck_assert_str_eq(buf, "  plan     steps  samples/s step ms   idle   comm    MFU  memory per "
                          "device: peak/predicted, or why not measured");
    dp_advice_row(buf, sizeof buf, &t, 0, 8, 200);
    ck_assert_str_eq(buf, "* DP x2        6    32000.0    4.00  25.0%  12.5%  50.0%  2.8M/3.0M "
                          "3.0M/3.0M");
    dp_advice_row(buf, sizeof buf, &t, 1, 41, 200);
    ck_assert_str_eq(buf, "  PP 2 stages, 4 micro, 1F1B (cpu:2 unused)     2    16000.0    8.00  "
                          "50.0%   0.0%      -  2.0M/2.0M 127K/127K  dropped: slower");
    dp_advice_row(buf, sizeof buf, &t, 1, 28, 200); /* cut: without "(cpu:2 unused)" */
    ck_assert_str_eq(buf, "  PP 2 stages, 4 micro, 1F1B       2    16000.0    8.00  50.0%   0.0%  "
                          "    -  2.0M/2.0M 127K/127K  dropped: slower");
    dp_advice_row(buf, sizeof buf, &t, 2, 8, 200);
    ck_assert_str_eq(buf, "  single       -          -       -      -      -      -  needs 5.3 MiB "
                          "on cpu:0, which has 4.0 MiB");
    dp_advice_row(buf, sizeof buf, &t, 2, 8, 80); /* 92 columns: the reason moves left */
    ck_assert_str_eq(buf, "  single    needs 5.3 MiB on cpu:0, which has 4.0 MiB");
}
END_TEST

Suite *layout_suite(void)
{
    Suite *s = suite_create("layout");
    TCase *tc = tcase_create("layout");
    tcase_add_test(tc, test_layout_fits);
    tcase_add_test(tc, test_layout_tiles);
    tcase_add_test(tc, test_layout_lines);
    tcase_add_test(tc, test_layout_too_small);
    tcase_add_test(tc, test_layout_sizes);
    tcase_add_test(tc, test_panel_rows);
    tcase_add_test(tc, test_eval_result);
    tcase_add_test(tc, test_advice_row);
    suite_add_tcase(s, tc);
    return s;
}
