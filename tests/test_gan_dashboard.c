/* test_gan_dashboard.c -- what a GAN's dashboard shows, without a terminal: the per-step series
 * of G's loss, D(x) and D(G(z)) beside D's loss, a whole run resampled for a sparkline, the
 * latest samples handed from the loop's thread to the view's, a GAN's best evaluation, and the
 * layout with a samples panel. */
#include "tests/unit.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/control.h"
#include "engine/metrics.h"
#include "tui/layout.h"

/* ---- the series ---- */

/* Each step's figures land in their own series, with the last step's values exact and D's
 * loss of the same step beside them; a step marked as a switch on D's series is marked on the
 * GAN's too. */
START_TEST(gan_steps_fill_their_series)
{
    dp_metrics ms;
    ck_assert_int_eq(dp_metrics_init(&ms, 1), 0);
    for (long step = 1; step <= 10; step++) {
        dp_metrics_record_step(&ms, step, 1.0 + 0.01 * (double)step, step == 6);
        dp_metrics_record_gan(&ms, step, 2.0 + 0.1 * (double)step, 0.5 + 0.01 * (double)step,
                              0.4 - 0.01 * (double)step, 0.3 - 0.01 * (double)step);
    }
    dp_series d;
    dp_gan_series g;
    dp_metrics_series_gan(&ms, &d, &g);
    ck_assert_int_eq(g.steps, 10);
    ck_assert_int_eq(g.last_step, 10);
    ck_assert_double_eq_tol(g.last_loss_d, 1.10, 1e-12);
    ck_assert_double_eq_tol(g.last_loss_g, 3.0, 1e-12);
    ck_assert_double_eq_tol(g.last_d_real, 0.60, 1e-12);
    ck_assert_double_eq_tol(g.last_d_fake, 0.30, 1e-12);
    ck_assert_double_eq_tol(g.last_d_fake_after, 0.20, 1e-12);
    ck_assert_int_eq(d.steps, 10);
    const dp_series *each[] = { &g.loss_g, &g.d_real, &g.d_fake };
    for (int k = 0; k < 3; k++) {
        ck_assert_int_eq(each[k]->n_points, 10);
        ck_assert_int_eq(each[k]->first_step, 1);
        ck_assert_int_eq(each[k]->last_step, 10);
        ck_assert_int_eq(each[k]->n_marks, 1);
        ck_assert_int_eq(each[k]->marks[0], 6);
    }
    ck_assert_float_eq_tol(g.loss_g.points[0], 2.1f, 1e-6f);
    ck_assert_float_eq_tol(g.d_real.points[4], 0.55f, 1e-6f);
    ck_assert_float_eq_tol(g.d_fake.points[9], 0.30f, 1e-6f);
    /* the plain copy gives the same D series */
    dp_series d2;
    dp_metrics_series(&ms, &d2);
    ck_assert_int_eq(d2.n_points, d.n_points);
    ck_assert_float_eq(d2.points[3], d.points[3]);
    dp_metrics_free(&ms);
}
END_TEST

/* A run that is not a GAN records none; a non-finite G loss counts as a step but adds no
 * point, and is shown as it was. */
START_TEST(gan_series_empty_and_nonfinite)
{
    dp_metrics ms;
    ck_assert_int_eq(dp_metrics_init(&ms, 1), 0);
    dp_metrics_record_step(&ms, 1, 0.5, false);
    dp_series d;
    dp_gan_series g;
    dp_metrics_series_gan(&ms, &d, &g);
    ck_assert_int_eq(g.steps, 0);
    ck_assert_int_eq(g.loss_g.n_points, 0);
    dp_metrics_record_gan(&ms, 1, INFINITY, 0.9, 0.1, 0.1);
    dp_metrics_record_step(&ms, 2, 0.6, false);
    dp_metrics_record_gan(&ms, 2, 1.5, 0.8, 0.2, 0.1);
    dp_metrics_series_gan(&ms, &d, NULL);
    dp_metrics_series_gan(&ms, &d, &g);
    ck_assert_int_eq(g.loss_g.steps, 2);
    ck_assert_int_eq(g.loss_g.n_points, 1); /* only the finite one */
    ck_assert_float_eq(g.loss_g.points[0], 1.5f);
    ck_assert_int_eq(g.d_real.n_points, 2);
    ck_assert_double_eq_tol(g.last_loss_d, 0.6, 1e-12);
    dp_metrics_record_step(&ms, 3, NAN, false);
    dp_metrics_record_gan(&ms, 3, 1.0, 0.5, 0.5, 0.5);
    dp_metrics_series_gan(&ms, &d, &g);
    ck_assert(isnan(g.last_loss_d));
    dp_metrics_free(&ms);
}
END_TEST

/* Past DP_SERIES_POINTS steps the GAN's series halve their resolution as D's does: each point
 * the mean of `stride` steps. */
START_TEST(gan_series_thin_like_the_loss)
{
    dp_metrics ms;
    ck_assert_int_eq(dp_metrics_init(&ms, 1), 0);
    long steps = 3 * DP_SERIES_POINTS;
    for (long step = 1; step <= steps; step++) {
        dp_metrics_record_step(&ms, step, (double)step, false);
        dp_metrics_record_gan(&ms, step, (double)step, 0.5, 0.25, 0.25);
    }
    dp_series d;
    dp_gan_series g;
    dp_metrics_series_gan(&ms, &d, &g);
    ck_assert_int_eq(g.loss_g.stride, d.stride);
    ck_assert_int_gt(g.loss_g.stride, 1);
    ck_assert_int_eq(g.loss_g.n_points, d.n_points);
    for (int i = 0; i < d.n_points; i++)
        ck_assert_float_eq(g.loss_g.points[i], d.points[i]);
    /* the first point: the mean of steps 1 .. stride */
    ck_assert_float_eq_tol(g.loss_g.points[0], (float)(1 + g.loss_g.stride) / 2.0f, 1e-3f);
    ck_assert_float_eq(g.d_real.points[d.n_points - 1], 0.5f);
    dp_metrics_free(&ms);
}
END_TEST

/* The whole run in at most w values: copied when it fits, else the means of w runs of
 * consecutive points. */
START_TEST(series_resampled_for_a_sparkline)
{
    dp_series s = { .stride = 1 };
    for (int i = 0; i < 10; i++)
        s.points[s.n_points++] = (float)i;
    float out[16];
    ck_assert_int_eq(dp_series_resample(&s, 16, out), 10);
    for (int i = 0; i < 10; i++)
        ck_assert_float_eq(out[i], (float)i);
    ck_assert_int_eq(dp_series_resample(&s, 5, out), 5); /* pairs */
    for (int k = 0; k < 5; k++)
        ck_assert_float_eq(out[k], (float)(2 * k) + 0.5f);
    ck_assert_int_eq(dp_series_resample(&s, 3, out), 3); /* runs [0,3) [3,6) [6,10) */
    ck_assert_float_eq(out[0], 1.0f);
    ck_assert_float_eq(out[1], 4.0f);
    ck_assert_float_eq(out[2], 7.5f);
    ck_assert_int_eq(dp_series_resample(&s, 1, out), 1);
    ck_assert_float_eq(out[0], 4.5f);
    ck_assert_int_eq(dp_series_resample(&s, 0, out), 0);
    dp_series empty = { .stride = 1 };
    ck_assert_int_eq(dp_series_resample(&empty, 8, out), 0);
}
END_TEST

/* ---- the samples, from the loop's thread to the view's ---- */

START_TEST(samples_published_and_copied_once)
{
    dp_control *c = dp_control_create(100, 1);
    ck_assert_ptr_nonnull(c);
    dp_control_samples got = { 0 };
    ck_assert_int_eq(dp_control_copy_samples(c, &got), 0); /* none yet */
    ck_assert_int_eq(got.generation, 0);
    dp_control_set_samples_range(c, -1.0f, 1.0f);
    dp_shape shape = { 3, { 1, 2, 3 } };
    float *x = malloc(4 * 6 * sizeof *x);
    for (int i = 0; i < 24; i++)
        x[i] = (float)i / 24.0f - 0.5f;
    ck_assert_int_eq(dp_control_publish_samples(c, 20, x, 4, shape), 0);
    for (int i = 0; i < 24; i++) /* the evaluation's memory may change or go at once */
        x[i] = 99.0f;
    ck_assert_int_eq(dp_control_copy_samples(c, &got), 1);
    ck_assert_int_eq(got.generation, 1);
    ck_assert_int_eq(got.step, 20);
    ck_assert_int_eq(got.n, 4);
    ck_assert_int_eq(got.shape.ndim, 3);
    ck_assert_int_eq(got.shape.d[2], 3);
    ck_assert_float_eq(got.lo, -1.0f);
    ck_assert_float_eq(got.hi, 1.0f);
    for (int i = 0; i < 24; i++)
        ck_assert_float_eq(got.x[i], (float)i / 24.0f - 0.5f);
    ck_assert_int_eq(dp_control_copy_samples(c, &got), 0); /* nothing newer */
    /* a larger set replaces it: the copy grows */
    float *y = malloc(64 * 6 * sizeof *y);
    for (int i = 0; i < 64 * 6; i++)
        y[i] = (float)i;
    ck_assert_int_eq(dp_control_publish_samples(c, 40, y, 64, shape), 0);
    ck_assert_int_eq(dp_control_copy_samples(c, &got), 1);
    ck_assert_int_eq(got.generation, 2);
    ck_assert_int_eq(got.step, 40);
    ck_assert_int_eq(got.n, 64);
    ck_assert_uint_ge(got.cap, 64 * 6);
    ck_assert_float_eq(got.x[64 * 6 - 1], (float)(64 * 6 - 1));
    /* a view that starts late gets the latest at once */
    dp_control_samples late = { 0 };
    ck_assert_int_eq(dp_control_copy_samples(c, &late), 1);
    ck_assert_int_eq(late.step, 40);
    ck_assert_int_eq(memcmp(late.x, got.x, 64 * 6 * sizeof *got.x), 0);
    dp_control_samples_free(&late);
    dp_control_samples_free(&got);
    free(x);
    free(y);
    dp_control_destroy(c);
}
END_TEST

/* The loop's thread publishes while the view's copies: every copy is one whole publication
 * (each fills its samples with its generation's number), never a mix. */
typedef struct publisher {
    dp_control *c;
    int rounds;
} publisher;

static void *publish_rounds(void *arg)
{
    publisher *p = arg;
    float x[2 * 64];
    for (int r = 1; r <= p->rounds; r++) {
        for (int i = 0; i < 2 * 64; i++)
            x[i] = (float)r;
        dp_control_publish_samples(p->c, r, x, 2, (dp_shape){ 3, { 1, 8, 8 } });
    }
    return NULL;
}

START_TEST(samples_copies_are_whole_across_threads)
{
    dp_control *c = dp_control_create(100, 1);
    publisher p = { c, 2000 };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, publish_rounds, &p), 0);
    dp_control_samples got = { 0 };
    unsigned long last = 0;
    for (;;) {
        if (dp_control_copy_samples(c, &got) == 1) {
            ck_assert_uint_gt(got.generation, last);
            last = got.generation;
            ck_assert_int_eq(got.step, (long)got.generation);
            for (int i = 0; i < 2 * 64; i++)
                ck_assert_float_eq(got.x[i], (float)got.step);
        }
        if (last == (unsigned long)p.rounds)
            break;
    }
    pthread_join(th, NULL);
    dp_control_samples_free(&got);
    dp_control_destroy(c);
}
END_TEST

/* ---- a GAN's evaluations ---- */

/* D's test loss says nothing of the generator: without quality figures no GAN evaluation is
 * the best; with them the lowest Frechet distance is, whatever D's loss. */
START_TEST(gan_best_evaluation_is_the_lowest_frechet)
{
    dp_control *c = dp_control_create(100, 1);
    dp_control_status st;
    dp_control_eval_begin(c, 1);
    dp_control_eval_end(c, &(dp_eval_point){ .step = 10, .loss = 0.3, .accuracy = 0.9,
                                             .gan = true, .d_real = 0.8, .frechet = NAN,
                                             .score = NAN });
    dp_control_snapshot(c, &st);
    ck_assert_int_eq(st.last_eval.step, 10);
    ck_assert(st.last_eval.gan);
    ck_assert_double_eq(st.last_eval.d_real, 0.8);
    ck_assert_int_lt(st.best_eval.step, 0);
    const double fd[] = { 40.0, 25.0, 31.0 }, loss[] = { 0.9, 1.2, 0.1 };
    for (int k = 0; k < 3; k++) {
        dp_control_eval_begin(c, 1);
        dp_control_eval_end(c, &(dp_eval_point){ .step = 20 + 10 * k, .loss = loss[k],
                                                 .gan = true, .generated = 1000,
                                                 .frechet = fd[k], .score = 2.0 + k });
    }
    dp_control_snapshot(c, &st);
    ck_assert_int_eq(st.best_eval.step, 30);
    ck_assert_double_eq(st.best_eval.frechet, 25.0);
    ck_assert_int_eq(st.n_evals, 4);
    ck_assert_double_eq(st.evals[3].score, 4.0);
    ck_assert_int_eq(st.evals[3].generated, 1000);
    dp_control_destroy(c);
}
END_TEST

/* ---- the layout ---- */

/* The rectangles a layout shows (h > 0). */
static int shown_rects(const dp_layout *l, dp_rect *out, const char **names)
{
    int n = 0;
    out[n] = l->header, names[n++] = "header";
    out[n] = l->health, names[n++] = "health";
    for (int i = 0; i < l->n_panels; i++)
        out[n] = l->panels[i], names[n++] = "panel";
    out[n] = l->gan_line, names[n++] = "D(x) line";
    out[n] = l->loss_plot, names[n++] = "D loss plot";
    out[n] = l->loss_plot_g, names[n++] = "G loss plot";
    out[n] = l->evals, names[n++] = "evaluations";
    out[n] = l->timeline, names[n++] = "timeline";
    out[n] = l->samples, names[n++] = "samples";
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

static bool overlaps(dp_rect a, dp_rect b)
{
    return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

/* Every size from 80x24 to 300x100, 1..8 devices and more, with and without a timeline:
 * everything on the screen and apart; a samples panel at the right of the body when it gets
 * DP_SAMPLES_MIN_COLS, leaving DP_GAN_REST_MIN_COLS, else left out and said; the D(x) line
 * above the plots; G's plot beside or below D's. */
START_TEST(gan_layout_fits)
{
    int sizes[][2] = { { 80, 24 }, { 81, 25 }, { 100, 30 }, { 100, 40 }, { 120, 40 },
                       { 132, 43 }, { 160, 50 }, { 200, 60 }, { 239, 71 }, { 300, 100 },
                       { 80, 100 }, { 300, 24 } };
    int devices[] = { 1, 2, 3, 4, 5, 8, 9, 16, 64 };
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
        for (size_t d = 0; d < sizeof devices / sizeof *devices; d++)
            for (int pipe = 0; pipe < 2; pipe++) {
                int cols = sizes[k][0], rows = sizes[k][1], n = devices[d];
                dp_layout l;
                dp_layout_make_gan(cols, rows, n, pipe, &l);
                ck_assert(!l.too_small);
                dp_rect r[DP_LAYOUT_MAX_PANELS + 12];
                const char *name[DP_LAYOUT_MAX_PANELS + 12];
                int m = shown_rects(&l, r, name);
                for (int i = 0; i < m; i++) {
                    ck_assert_msg(r[i].x >= 0 && r[i].y >= 0 && r[i].w > 0 &&
                                      r[i].x + r[i].w <= cols && r[i].y + r[i].h <= rows,
                                  "%dx%d, %d devices: %s {%d,%d,%d,%d} off the screen", cols,
                                  rows, n, name[i], r[i].x, r[i].y, r[i].w, r[i].h);
                    for (int j = i + 1; j < m; j++)
                        ck_assert_msg(!overlaps(r[i], r[j]),
                                      "%dx%d, %d devices: %s {%d,%d,%d,%d} overlaps %s "
                                      "{%d,%d,%d,%d}",
                                      cols, rows, n, name[i], r[i].x, r[i].y, r[i].w, r[i].h,
                                      name[j], r[j].x, r[j].y, r[j].w, r[j].h);
                }
                ck_assert_msg(l.samples_left_out == (l.samples.h == 0),
                              "%dx%d: samples neither shown nor said left out", cols, rows);
                if (l.samples.h) {
                    ck_assert_int_ge(l.samples.w, DP_SAMPLES_MIN_COLS);
                    ck_assert_int_le(l.samples.w, cols / 2);
                    ck_assert_int_eq(l.samples.x + l.samples.w, cols);
                    ck_assert_int_eq(l.samples.y, l.health.y + 1);
                    ck_assert_int_eq(l.samples.y + l.samples.h, l.event.y);
                    ck_assert_int_ge(cols - l.samples.w, DP_GAN_REST_MIN_COLS);
                }
                ck_assert_int_eq(l.gan_line.h, 1);
                ck_assert_int_eq(l.gan_line.y + 1, l.loss_plot.y);
                ck_assert_int_eq(l.gan_line.w, cols - l.samples.w);
                ck_assert_msg(l.loss_plot.h >= 3, "%dx%d, %d devices: D plot of %d rows", cols,
                              rows, n, l.loss_plot.h);
                if (l.loss_plot_g.h)
                    ck_assert_int_ge(l.loss_plot_g.h, 3);
                if (n <= DP_LAYOUT_GRID_MAX) {
                    ck_assert_int_eq(l.n_panels, n);
                    for (int i = 0; i < n; i++)
                        ck_assert_int_ge(l.panels[i].h, DP_PANEL_MIN_ROWS);
                }
                ck_assert_int_eq(l.keys.y, rows - 1);
                ck_assert_int_eq(l.header.w, cols);
            }
}
END_TEST

/* The screens the test and the README show: 100x40 with 2 devices gets a 40-column panel
 * and G's plot under D's; 80x24 leaves the panel out; a short band puts the plots side by
 * side; 200x60 a square of 2 x 53 + 1 columns capped at half the width. Other runs' layouts
 * have none of it. */
START_TEST(gan_layout_at_known_sizes)
{
    dp_layout l;
    dp_layout_make_gan(100, 40, 2, false, &l);
    ck_assert_int_eq(l.samples.w, 40);
    ck_assert_int_eq(l.samples.x, 60);
    ck_assert_int_eq(l.samples.h, 34);
    ck_assert_int_eq(l.loss_plot_g.x, l.loss_plot.x);
    ck_assert_int_eq(l.loss_plot_g.y, l.loss_plot.y + l.loss_plot.h);
    ck_assert_int_eq(l.evals.x + l.evals.w, 60);
    ck_assert_int_eq(l.evals.w, 28);
    dp_layout_make_gan(80, 24, 2, false, &l); /* a band of 7: the line and 3 + 3 rows */
    ck_assert(l.samples_left_out);
    ck_assert_int_eq(l.samples.h, 0);
    ck_assert_int_eq(l.gan_line.w, 80);
    ck_assert_int_eq(l.loss_plot.h, 3);
    ck_assert_int_eq(l.loss_plot_g.h, 3);
    ck_assert_int_eq(l.loss_plot_g.y, l.loss_plot.y + 3);
    dp_layout_make_gan(80, 24, 16, false, &l); /* a line a device: a band of 5 */
    ck_assert_int_eq(l.loss_plot_g.h, 4); /* side by side */
    ck_assert_int_eq(l.loss_plot_g.y, l.loss_plot.y);
    ck_assert_int_eq(l.loss_plot_g.x, l.loss_plot.x + l.loss_plot.w);
    dp_layout_make_gan(100, 40, 8, false, &l); /* narrower, so that 2 columns of panels fit */
    ck_assert_int_eq(l.samples.w, 24);
    ck_assert_int_eq(l.panel_cols, 2);
    dp_layout_make_gan(200, 60, 4, true, &l);
    ck_assert_int_eq(l.samples.w, 100);
    ck_assert_int_gt(l.timeline.h, 0);
    dp_layout_make(100, 40, 2, false, &l);
    ck_assert_int_eq(l.samples.h + l.gan_line.h + l.loss_plot_g.h, 0);
    ck_assert(!l.samples_left_out);
    dp_layout_make_gan(79, 24, 2, false, &l);
    ck_assert(l.too_small);
}
END_TEST

/* How many samples a picture shows: all 64 where each keeps DP_SAMPLES_MIN_PX pixels, else
 * the first k x k that do. */
START_TEST(samples_shown_per_row)
{
    /* 64 of 28x28 in a grid of 8 with 1 pixel gaps: 233 pixels a side */
    ck_assert_int_eq(dp_samples_per_row(64, 28, 28, 117, 233), 8); /* full size */
    ck_assert_int_eq(dp_samples_per_row(64, 28, 28, 40, 80), 8);    /* 80/233 of 28: 9.6 */
    ck_assert_int_eq(dp_samples_per_row(64, 28, 28, 33, 39), 4);    /* 8 a row: 4.7 px */
    ck_assert_int_eq(dp_samples_per_row(64, 16, 16, 33, 39), 4);    /* 4 of 16: 9 px */
    ck_assert_int_eq(dp_samples_per_row(64, 16, 16, 10, 30), 2);
    ck_assert_int_eq(dp_samples_per_row(64, 28, 28, 3, 6), 1);      /* none fits well */
    ck_assert_int_eq(dp_samples_per_row(4, 28, 28, 117, 233), 2);   /* 4 samples: 2 a row */
    ck_assert_int_eq(dp_samples_per_row(5, 28, 28, 117, 233), 3);
    ck_assert_int_eq(dp_samples_per_row(1, 28, 28, 117, 233), 1);
    /* samples smaller than DP_SAMPLES_MIN_PX must keep their whole side */
    ck_assert_int_eq(dp_samples_per_row(64, 4, 4, 21, 41), 8);
    ck_assert_int_eq(dp_samples_per_row(64, 4, 4, 20, 40), 7); /* 8 a row: 3.9 px */
    ck_assert_int_eq(dp_samples_per_row(0, 28, 28, 40, 80), 0);
    ck_assert_int_eq(dp_samples_per_row(64, 28, 28, 0, 80), 0);
}
END_TEST

Suite *gan_dashboard_suite(void)
{
    Suite *s = suite_create("gan_dashboard");
    TCase *tc = tcase_create("series");
    tcase_add_test(tc, gan_steps_fill_their_series);
    tcase_add_test(tc, gan_series_empty_and_nonfinite);
    tcase_add_test(tc, gan_series_thin_like_the_loss);
    tcase_add_test(tc, series_resampled_for_a_sparkline);
    suite_add_tcase(s, tc);
    TCase *ts = tcase_create("samples");
    tcase_add_test(ts, samples_published_and_copied_once);
    tcase_add_test(ts, samples_copies_are_whole_across_threads);
    tcase_add_test(ts, gan_best_evaluation_is_the_lowest_frechet);
    suite_add_tcase(s, ts);
    TCase *tl = tcase_create("layout");
    tcase_add_test(tl, gan_layout_fits);
    tcase_add_test(tl, gan_layout_at_known_sizes);
    tcase_add_test(tl, samples_shown_per_row);
    suite_add_tcase(s, tl);
    return s;
}
