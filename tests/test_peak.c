/* test_peak.c -- the peak FLOP/s (the CPU rate's cache, the GPU table, MFU) and the
 * utilisation series that the devices' figures are drawn from. */
#include "tests/unit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/metrics.h"
#include "engine/peak.h"

static const char *const key = "2 Test CPU 9000";

/* A fresh directory of the test's own (unit_tmpdir's buffer is reused by its next call). */
static char *new_dir(char *buf, size_t size)
{
    snprintf(buf, size, "%s", unit_tmpdir());
    return buf;
}

static int measured_times;
static double fake_measure(void)
{
    measured_times++;
    return 123e9;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* The cache file of dir, as text. */
static void read_text(const char *dir, char *buf, size_t size)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/cpu-peak", dir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

START_TEST(cache_round_trip_keeps_other_machines)
{
    const char *dir = unit_tmpdir();
    dp_err err;
    ck_assert_int_eq(dp_peak_cache_store(dir, "8 Other CPU", 5e11, &err), 0);
    ck_assert_int_eq(dp_peak_cache_store(dir, key, 2e11, &err), 0);
    ck_assert_int_eq(dp_peak_cache_store(dir, key, 3e11, &err), 0); /* replaces, not adds */
    ck_assert_double_eq_tol(dp_peak_cache_load(dir, key), 3e11, 1e5);
    ck_assert_double_eq_tol(dp_peak_cache_load(dir, "8 Other CPU"), 5e11, 1e5);
    ck_assert_double_eq(dp_peak_cache_load(dir, "4 Test CPU 9000"), 0); /* other cores */
    char text[1024];
    read_text(dir, text, sizeof text);
    ck_assert_ptr_null(strstr(strstr(text, "2 Test CPU 9000") + 1, "2 Test CPU 9000"));
}
END_TEST

START_TEST(measured_once_then_cached)
{
    const char *dir = unit_tmpdir();
    bool measured;
    measured_times = 0;
    ck_assert_double_eq(dp_peak_cpu_flops(dir, key, false, fake_measure, &measured), 123e9);
    ck_assert(measured);
    ck_assert_double_eq_tol(dp_peak_cpu_flops(dir, key, false, fake_measure, &measured), 123e9,
                            1e4);
    ck_assert(!measured);
    ck_assert_int_eq(measured_times, 1);
    dp_peak_cpu_flops(dir, key, true, fake_measure, &measured); /* --measure-peak */
    ck_assert(measured);
    ck_assert_int_eq(measured_times, 2);
}
END_TEST

START_TEST(garbage_and_absurd_values_are_measured_again)
{
    static const char *const bad[] = {
        "garbage\n\x01\x02", "nan 2 Test CPU 9000\n", "1e30 2 Test CPU 9000\n",
        "-5e9 2 Test CPU 9000\n", "5e9x 2 Test CPU 9000\n", "5e9 2 Test CPU 9000 and more\n", "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *dir = unit_tmpdir();
        char path[4200], text[1024];
        snprintf(path, sizeof path, "%s/cpu-peak", dir);
        write_text(path, bad[i]);
        ck_assert_double_eq(dp_peak_cache_load(dir, key), 0);
        bool measured;
        measured_times = 0;
        ck_assert_double_eq(dp_peak_cpu_flops(dir, key, false, fake_measure, &measured), 123e9);
        ck_assert_int_eq(measured_times, 1);
        read_text(dir, text, sizeof text);
        ck_assert_ptr_nonnull(strstr(text, "1.23e+11 2 Test CPU 9000\n"));
        ck_assert_ptr_null(strstr(text, "garbage"));
    }
}
END_TEST

START_TEST(a_link_is_never_followed)
{
    char a[4200], b[4200], target[4200], link[4200], text[256];
    const char *dir = new_dir(a, sizeof a), *elsewhere = new_dir(b, sizeof b);
    snprintf(target, sizeof target, "%s/victim", elsewhere);
    snprintf(link, sizeof link, "%s/cpu-peak", dir);
    write_text(target, "9e9 2 Test CPU 9000\n");
    ck_assert_int_eq(symlink(target, link), 0);
    ck_assert_double_eq(dp_peak_cache_load(dir, key), 0); /* not read through the link */
    bool measured;
    dp_peak_cpu_flops(dir, key, false, fake_measure, &measured);
    ck_assert(measured);
    struct stat st;
    ck_assert_int_eq(lstat(link, &st), 0);
    ck_assert(S_ISREG(st.st_mode)); /* the link itself replaced */
    FILE *f = fopen(target, "r");
    ck_assert_ptr_nonnull(fgets(text, sizeof text, f));
    fclose(f);
    ck_assert_str_eq(text, "9e9 2 Test CPU 9000\n"); /* the target untouched */
}
END_TEST

START_TEST(a_fifo_or_directory_is_not_read)
{
    char a[4200], b[4200], path[4200];
    const char *dir = new_dir(a, sizeof a), *dir2 = new_dir(b, sizeof b);
    snprintf(path, sizeof path, "%s/cpu-peak", dir);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    ck_assert_double_eq(dp_peak_cache_load(dir, key), 0); /* returns: no writer, no block */
    snprintf(path, sizeof path, "%s/cpu-peak", dir2);
    ck_assert_int_eq(mkdir(path, 0700), 0);
    ck_assert_double_eq(dp_peak_cache_load(dir2, key), 0);
    bool measured;
    /* a directory in the way: measured, not cached, still given */
    ck_assert_double_eq(dp_peak_cpu_flops(dir2, key, false, fake_measure, &measured), 123e9);
}
END_TEST

START_TEST(a_missing_directory_is_made)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/xdg/dpmptop", unit_tmpdir());
    bool measured;
    ck_assert_double_eq(dp_peak_cpu_flops(dir, key, false, fake_measure, &measured), 123e9);
    ck_assert_double_eq_tol(dp_peak_cache_load(dir, key), 123e9, 1e4);
    struct stat st;
    ck_assert_int_eq(stat(dir, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0700);
    /* no cache at all: measured each time */
    measured_times = 0;
    dp_peak_cpu_flops(NULL, key, false, fake_measure, &measured);
    dp_peak_cpu_flops(NULL, key, false, fake_measure, &measured);
    ck_assert_int_eq(measured_times, 2);
}
END_TEST

/* Sets or (value NULL) unsets an environment variable. */
static void put_env(const char *name, const char *value)
{
    if (value)
        setenv(name, value, 1);
    else
        unsetenv(name);
}

START_TEST(cache_dir_follows_xdg)
{
    char buf[4096], xdg[4096] = "", home[4096] = "";
    bool had_xdg = getenv("XDG_CACHE_HOME"), had_home = getenv("HOME");
    if (had_xdg)
        snprintf(xdg, sizeof xdg, "%s", getenv("XDG_CACHE_HOME"));
    if (had_home)
        snprintf(home, sizeof home, "%s", getenv("HOME"));
    setenv("XDG_CACHE_HOME", "/some/cache", 1);
    ck_assert_int_eq(dp_peak_cache_dir(buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "/some/cache/dpmptop");
    setenv("XDG_CACHE_HOME", "relative/cache", 1); /* ignored, as the spec says */
    setenv("HOME", "/home/someone", 1);
    ck_assert_int_eq(dp_peak_cache_dir(buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "/home/someone/.cache/dpmptop");
    unsetenv("XDG_CACHE_HOME");
    unsetenv("HOME");
    ck_assert_int_eq(dp_peak_cache_dir(buf, sizeof buf), -1);
    put_env("XDG_CACHE_HOME", had_xdg ? xdg : NULL); /* for the tests after, without fork */
    put_env("HOME", had_home ? home : NULL);
}
END_TEST

START_TEST(mfu_never_passes_one_and_raises_the_peak)
{
    double peak = 100;
    ck_assert_double_eq_tol(dp_peak_mfu(50, 1, &peak), 0.5, 1e-12);
    ck_assert_double_eq(peak, 100);
    ck_assert_double_eq(dp_peak_mfu(400, 2, &peak), 1); /* 200 FLOP/s beat the peak */
    ck_assert_double_eq(peak, 200);
    ck_assert_double_eq_tol(dp_peak_mfu(100, 1, &peak), 0.5, 1e-12); /* against the new one */
    double unknown = 0;
    ck_assert(dp_peak_mfu(100, 1, &unknown) < 0);
    ck_assert(dp_peak_mfu(100, 0, &peak) < 0);
}
END_TEST

START_TEST(gpu_table_by_model_and_precision)
{
    ck_assert_double_eq_tol(dp_peak_gpu_flops("NVIDIA H100 80GB HBM3", true), 494.7e12, 1e9);
    ck_assert_double_eq_tol(dp_peak_gpu_flops("NVIDIA H100 80GB HBM3", false), 67e12, 1e9);
    ck_assert_double_eq_tol(dp_peak_gpu_flops("NVIDIA H100 PCIe", true), 378e12, 1e9);
    ck_assert_double_eq_tol(dp_peak_gpu_flops("NVIDIA H200", true), 494.7e12, 1e9);
    ck_assert_double_eq_tol(dp_peak_gpu_flops("NVIDIA GH200 480GB", false), 67e12, 1e9);
    ck_assert_double_eq_tol(dp_peak_gpu_flops("NVIDIA A100-SXM4-40GB", true), 156e12, 1e9);
    ck_assert_double_eq_tol(dp_peak_gpu_flops("NVIDIA A10", false), 31.2e12, 1e9);
    ck_assert_double_eq_tol(dp_peak_gpu_flops("NVIDIA L4", true), 60e12, 1e9);
    ck_assert_double_eq_tol(dp_peak_gpu_flops("NVIDIA L40S", true), 183e12, 1e9);
    ck_assert_double_eq_tol(dp_peak_gpu_flops("Tesla V100-SXM2-16GB", true), 15.7e12, 1e9);
    ck_assert_double_eq(dp_peak_gpu_flops("NVIDIA A10G", true), 0); /* not the A10 */
    ck_assert_double_eq(dp_peak_gpu_flops("Some Future GPU", true), 0);
}
END_TEST

/* ---- the utilisation series ---- */

START_TEST(series_splits_a_step_across_bins)
{
    dp_util_series u = { 0 };
    dp_util_series_add(&u, 100.5, 0.5, 1.0); /* the first step: [100, 100.5) */
    dp_util_series_add(&u, 101.0, 0.5, 0.0); /* bin 0 is half busy */
    dp_util_series_add(&u, 103.5, 2.5, 0.8); /* crosses bins 1 and 2, half of bin 3 */
    dp_util_series_add(&u, 106.5, 0.5, 0.4); /* bins 3 (rest) and 4, 5 without steps */
    ck_assert_double_eq(u.t0, 100.0);
    ck_assert_double_eq(u.bin_s, 1.0);
    ck_assert_int_eq(u.n_points, 6);
    ck_assert_float_eq_tol(u.points[0], 0.5f, 1e-6f);
    ck_assert_float_eq_tol(u.points[1], 0.8f, 1e-6f);
    ck_assert_float_eq_tol(u.points[2], 0.8f, 1e-6f);
    ck_assert_float_eq_tol(u.points[3], 0.8f, 1e-6f); /* no step in its second half */
    ck_assert(isnan(u.points[4]) && isnan(u.points[5]));
    ck_assert_double_eq_tol(u.pending_busy / u.pending_wall, 0.4, 1e-9);
}
END_TEST

START_TEST(series_halves_its_resolution_when_full)
{
    dp_util_series u = { 0 };
    /* 2000 s of 1 s steps: util 1 in the first 1024 s, then 0 */
    for (int s = 1; s <= 2000; s++)
        dp_util_series_add(&u, (double)s, 1.0, s <= 1024 ? 1.0 : 0.0);
    ck_assert(u.n_points <= DP_UTIL_POINTS);
    ck_assert_double_eq(u.bin_s, 4.0); /* 512 s, then 1024 s of points ran out */
    ck_assert_int_eq(u.n_points, 1999 / 4);
    for (int k = 0; k < u.n_points; k++) /* every bin is covered, and the whole run kept */
        ck_assert_float_eq_tol(u.points[k], k < 256 ? 1.0f : 0.0f, 1e-6f);
    dp_util_series_add(&u, 1999.0, 5.0, 1.0); /* overlaps closed bins: only the rest counts */
    ck_assert_int_eq(u.n_points, 1999 / 4);
    dp_util_series_add(&u, 2100.0, 0.0, 1.0); /* no wall time: nothing */
    ck_assert_int_eq(u.n_points, 1999 / 4);
}
END_TEST

START_TEST(unused_devices_show_no_history)
{
    dp_metrics ms;
    ck_assert_int_eq(dp_metrics_init(&ms, 2), 0);
    dp_device_metrics step = { .step = 1, .util = 0.5, .compute_s = 0.1, .idle_s = 0.1 };
    dp_metrics_publish(&ms, 0, &step);
    dp_metrics_publish(&ms, 0, &step);
    float util[DP_HISTORY];
    ck_assert_int_eq(dp_metrics_history(&ms, 0, NULL, util), 2);
    dp_util_series u;
    dp_metrics_util_series(&ms, 0, &u);
    ck_assert(u.bin_s > 0);
    dp_metrics_clear_history(&ms, 0);
    dp_device_metrics unused = { .step = 2, .loss = NAN }; /* no wall time: no step */
    snprintf(unused.role, sizeof unused.role, "unused");
    dp_metrics_publish(&ms, 0, &unused);
    ck_assert_int_eq(dp_metrics_history(&ms, 0, NULL, util), 0);
    dp_metrics_util_series(&ms, 0, &u);
    ck_assert_int_eq(u.n_points, 0);
    ck_assert(u.bin_s == 0);
    ck_assert_str_eq(dp_metrics_read(&ms, 0).role, "unused");
    dp_metrics_set_activity(&ms, 1, DP_ACTIVITY_LINK);
    ck_assert_int_eq(dp_metrics_activity(&ms, 1), DP_ACTIVITY_LINK);
    dp_metrics_free(&ms);
}
END_TEST

Suite *peak_suite(void)
{
    Suite *s = suite_create("peak");
    TCase *c = tcase_create("cache");
    tcase_add_test(c, cache_round_trip_keeps_other_machines);
    tcase_add_test(c, measured_once_then_cached);
    tcase_add_test(c, garbage_and_absurd_values_are_measured_again);
    tcase_add_test(c, a_link_is_never_followed);
    tcase_add_test(c, a_fifo_or_directory_is_not_read);
    tcase_add_test(c, a_missing_directory_is_made);
    tcase_add_test(c, cache_dir_follows_xdg);
    suite_add_tcase(s, c);
    TCase *f = tcase_create("figures");
    tcase_add_test(f, mfu_never_passes_one_and_raises_the_peak);
    tcase_add_test(f, gpu_table_by_model_and_precision);
    tcase_add_test(f, series_splits_a_step_across_bins);
    tcase_add_test(f, series_halves_its_resolution_when_full);
    tcase_add_test(f, unused_devices_show_no_history);
    suite_add_tcase(s, f);
    return s;
}
