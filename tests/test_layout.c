/* test_layout.c -- the dashboard's layout, a pure function, without a terminal. */
#include "tests/unit.h"

#include <stdio.h>

#include "tui/layout.h"

/* The rectangles a layout shows (h > 0), for pairwise checks. */
static int shown(const dp_layout *l, dp_rect *out, const char **names)
{
    int n = 0;
    out[n] = l->header, names[n++] = "header";
    for (int i = 0; i < l->n_panels; i++)
        out[n] = l->panels[i], names[n++] = "panel";
    out[n] = l->loss_plot, names[n++] = "loss plot";
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
    dp_layout_make(80, 24, 16, false, &l); /* 19 body rows: 13 lines, a blank, 5 of plot */
    ck_assert_int_eq(l.n_panels, 13);
    dp_layout_make(200, 60, 16, false, &l); /* all of them, in 3 columns of 6 */
    ck_assert_int_eq(l.n_panels, 16);
    ck_assert_int_eq(l.panel_cols, 3);
    ck_assert_int_eq(l.panels[6].x, l.panels[0].w);
    ck_assert_int_eq(l.panels[6].y, l.panels[0].y);
}
END_TEST

/* Below 80x24 only the message: too_small, and nothing else laid out. */
START_TEST(test_layout_too_small)
{
    int sizes[][2] = { { 79, 24 }, { 80, 23 }, { 40, 10 }, { 0, 0 }, { 200, 23 }, { 79, 100 } };
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        dp_layout l;
        dp_layout_make(sizes[k][0], sizes[k][1], 4, true, &l);
        ck_assert_msg(l.too_small, "%dx%d not too small", sizes[k][0], sizes[k][1]);
        ck_assert_int_eq(l.n_panels, 0);
        ck_assert_int_eq(l.header.h, 0);
    }
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
    suite_add_tcase(s, tc);
    return s;
}
