/* dashboard.c -- the interactive loop: keys in, a redraw every refresh_ms.
 *
 * Every frame is drawn in full on ncurses's virtual screen and refresh() sends the terminal only
 * what changed, so a quiet run costs little. The figures are the engine's and the control's
 * (engine/metrics.h, engine/control.h say how each is measured); this file only draws them. */
#include "base/clock.h"
#include "tui/dashboard.h"

#include <curses.h>
#include <fcntl.h>
#include <langinfo.h>
#include <signal.h>
#include <locale.h>
#include <sched.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "base/sysinfo.h"
#include "datasets/samples.h"
#include "engine/backend_cpu.h"
#include "engine/gpumon.h"
#include "tui/health.h"
#include "tui/layout.h"
#include "tui/picture.h"
#include "tui/widgets.h"

/* Everything a frame shows, copied from the status, the metrics and the other processes. */
typedef struct frame {
    dp_control_status st; /* the run's, as the control had it */
    int n_devices;    /* this process's first, then the other processes' */
    int local;        /* this process's devices among them */
    int all_devices;  /* of the run (more than the frame holds are counted only) */
    dp_device_view dev[DP_LAYOUT_MAX_PANELS];
    dp_activity activity[DP_LAYOUT_MAX_PANELS];
    dp_timeline timeline[DP_LAYOUT_MAX_PANELS];
    dp_series series;
    dp_gan_series gan;    /* a GAN's G loss, D(x), D(G(z)) (gan.steps 0: not a GAN) */
    dp_control_samples samples; /* a GAN's latest samples (kept between frames: copied again
                                 * only when newer ones come) */
    size_t rss, host_memory; /* read once a second */
    int cores;
    double now;
    /* While paused (nothing runs: "0%") or evaluating ("eval") no training step runs: the
     * devices' utilisation is shown as this, and MFU as "-", not as the last step's figures.
     * NULL while they are live. */
    const char *held;
    /* The dashboard's own answer to a key, where the control's event line must stay (after
     * the end, the finish message); shown on the health line for a few seconds. */
    char note[120];
    double note_time;
    /* How the training loss is labelled: "loss", or a masked language model's "mloss" (its
     * loss is the mean over the chosen bytes only, as its evaluations' are). */
    const char *loss_name;
} frame;

#define NOTE_S 4.0 /* how long a note stays */

/* The plan advisor's view (keys a and A): the latest table the control published, kept between
 * frames and copied again only when a newer one comes. It takes the body of the screen (the
 * rows between the health line and the event line) while open. */
typedef struct advisor_view {
    bool open;
    dp_advice_table table;    /* table.c has room for DP_ADVICE_MAX (NULL: out of memory) */
    unsigned long generation; /* of the table held (0: none yet) */
    bool was_advising;        /* the last frame's st.advising: a search that begins opens it */
    int first;                /* the first row of the table shown */
    int page;                 /* the table's rows the last frame showed, for PgUp and PgDn */
} advisor_view;

/* Whether a search is asked for or under way (one asked for just as the run ended never
 * comes). */
static bool measuring(const dp_control_status *s)
{
    return s->advising && !s->finished;
}

/* The control's newest table into the view. The view opens by itself when a search begins
 * (strategy = auto's at the start, or another view's) and when its table comes: the answer to a
 * question someone asked. */
static void update_advisor(dp_control *ctl, const dp_control_status *st, advisor_view *v)
{
    if (v->table.c && dp_control_copy_advice(ctl, &v->table, &v->generation)) {
        v->open = true;
        v->first = 0;
    }
    if (measuring(st) && !v->was_advising)
        v->open = true;
    v->was_advising = measuring(st);
}

/* Takes the frame's copies; leaves the GPU readings of this process's devices (NVML is read
 * once a second) and the host's figures. */
static void snapshot(dp_trainer *t, dp_control *ctl, const dp_dashboard_info *info, frame *f)
{
    dp_control_snapshot(ctl, &f->st);
    f->now = dp_now_s();
    f->loss_name = info->masked || f->st.last_eval.masked ? "mloss" : "loss";
    dp_run_state state = dp_health_state(&f->st);
    f->held = state == DP_STATE_PAUSED ? "0%" : state == DP_STATE_EVALUATING ? "eval" : NULL;
    dp_metrics *ms = dp_trainer_metrics(t);
    int local = ms->n_devices < DP_LAYOUT_MAX_PANELS ? ms->n_devices : DP_LAYOUT_MAX_PANELS;
    for (int i = 0; i < local; i++) {
        dp_gpu_reading gpu = f->dev[i].gpu;
        dp_device_view_read(t, i, &f->dev[i]);
        f->dev[i].gpu = gpu;
        f->activity[i] = dp_metrics_activity(ms, i);
    }
    f->local = local;
    int others = dp_monitor_fetch(info->monitor, f->dev + local, DP_LAYOUT_MAX_PANELS - local);
    f->all_devices = ms->n_devices + others;
    f->n_devices = f->all_devices < DP_LAYOUT_MAX_PANELS ? f->all_devices : DP_LAYOUT_MAX_PANELS;
    /* The timeline shows replica 0's pipeline: devices 0 .. stages - 1. */
    int stages = f->st.pipeline ? f->st.request.stages : 0;
    for (int s = 0; s < stages && s < DP_LAYOUT_MAX_PANELS; s++)
        dp_metrics_timeline(ms, s, &f->timeline[s]);
    dp_metrics_series_gan(ms, &f->series, &f->gan);
    dp_control_copy_samples(ctl, &f->samples); /* out of memory: the older ones stay */
}

/* A GAN's run: it has taken a step as one, or published samples. */
static bool is_gan(const frame *f)
{
    return f->gan.steps > 0 || f->samples.generation > 0;
}

static void human_bytes(char *buf, size_t size, double b)
{
    const char *unit[] = { "B", "K", "M", "G", "T" };
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    snprintf(buf, size, u ? "%.1f%s" : "%.0f%s", b, unit[u]);
}

/* ---- the run's state ---- */

/* The training seconds so far: the control's (pauses left out), else since it started. */
static double elapsed_s(const frame *f)
{
    return f->st.active_s > 0 ? f->st.active_s : f->st.finished ? 0 : f->now - f->st.started;
}

static bool is_unused(const dp_device_view *d)
{
    return strcmp(d->m.role, "unused") == 0;
}

/* "cpu:2 waits for a link, cpu:3 for its own compute (+1)": this process's devices in a step. */
static void waiting_devices(const frame *f, char *buf, size_t size)
{
    int n = 0, len = 0;
    buf[0] = '\0';
    for (int i = 0; i < f->local; i++) {
        dp_activity a = f->activity[i];
        if (a == DP_ACTIVITY_IDLE || a >= DP_ACTIVITY_N || is_unused(&f->dev[i]))
            continue;
        if (n < 2 && len < (int)size)
            len += snprintf(buf + len, size - (size_t)len, "%s%s %s %s", n ? ", " : "",
                            f->dev[i].name, n ? "for" : "waits for", dp_activity_names[a]);
        n++;
    }
    if (n > 2 && len < (int)size)
        snprintf(buf + len, size - (size_t)len, " (+%d)", n - 2);
    if (n == 0)
        snprintf(buf, size, "no device is in a step");
}

/* The state's words: "training", "evaluating 3/20", "PAUSED (space resumes)", ... */
static void state_text(const frame *f, char *buf, size_t size)
{
    const dp_control_status *s = &f->st;
    double for_s = 0;
    char who[96];
    switch (dp_health_state(s)) {
    case DP_STATE_STARTING:
        snprintf(buf, size, "starting");
        break;
    case DP_STATE_TRAINING:
        if (dp_health_stalled(s, f->now, &for_s)) {
            waiting_devices(f, who, sizeof who);
            snprintf(buf, size, "stalled for %.0f s: %s", for_s, who);
        } else {
            snprintf(buf, size, "%s", s->advising ? "training, the plan advisor measuring plans"
                                                  : "training");
        }
        break;
    case DP_STATE_EVALUATING:
        snprintf(buf, size, "evaluating %ld/%ld", s->eval_done, s->eval_total);
        break;
    case DP_STATE_PAUSED:
        /* the event line says space resumes */
        snprintf(buf, size, "%s", s->advising ? "PAUSED, the plan advisor measuring plans"
                                              : "PAUSED");
        break;
    case DP_STATE_FINISHED:
        snprintf(buf, size, "%s", s->stopped_early ? "stopped" : "finished");
        break;
    }
}

/* "acc 87.12% loss 0.412 @100" (a GAN's "D(x) 0.512 D loss 1.39 @20", a masked language
 * model's "macc 42.17% mloss 2.31 @100") */
static void eval_text(char *buf, size_t size, const dp_eval_point *e)
{
    char res[32];
    dp_eval_result(res, sizeof res, e);
    snprintf(buf, size, "%s %s %.3g @%ld", res,
             e->gan ? "D loss" : e->masked ? "mloss" : "loss", e->loss, e->step);
}

/* The test result for the header: the last evaluation's, else the accuracy alone. */
static void test_text(const dp_control_status *s, char *buf, size_t size)
{
    char res[32];
    if (s->last_eval.step > 0 || (s->n_evals > 0 && s->last_eval.step >= 0)) {
        dp_eval_result(res, sizeof res, &s->last_eval);
        snprintf(buf, size, "test %s @%ld", res, s->last_eval.step);
    } else if (s->test_accuracy >= 0) {
        snprintf(buf, size, "test acc %.2f%% @%ld", 100 * s->test_accuracy, s->test_step);
    } else {
        snprintf(buf, size, "test -");
    }
}

/* ---- the header ---- */

/* The run's MFU: the devices' achieved FLOP/s over their summed peaks; < 0 when unknown. This
 * process's CPU devices share its cores: their peaks sum to at most the machine's (each is a
 * share of it, threads / cores, and devices that outnumber the cores have 1 thread each). */
static double run_mfu(const frame *f)
{
    double achieved = 0, peak = 0, cpu_peak = 0, machine = 0;
    for (int i = 0; i < f->n_devices; i++) {
        const dp_device_metrics *m = &f->dev[i].m;
        if (!(m->peak_flops > 0) || m->mfu < 0 || is_unused(&f->dev[i]))
            continue;
        achieved += m->mfu * m->peak_flops;
        if (i < f->local && m->threads > 0) {
            cpu_peak += m->peak_flops;
            double all = m->peak_flops / m->threads * f->cores;
            machine = all > machine ? all : machine;
        } else {
            peak += m->peak_flops;
        }
    }
    peak += cpu_peak < machine ? cpu_peak : machine;
    return peak > 0 ? achieved / peak : -1;
}

/* This process's CPU devices (a GPU's model is its name). */
static int cpu_devices(const frame *f)
{
    int n = 0;
    for (int i = 0; i < f->local; i++)
        n += strcmp(f->dev[i].model, "CPU") == 0;
    return n;
}

/* The last step's loss: "-" before the first step; a GAN's "D 1.3863 G 0.6931", both of the
 * last step the trainer recorded (the headless line's figures). */
static void loss_text(char *buf, size_t size, const frame *f)
{
    if (f->gan.steps > 0)
        snprintf(buf, size, "D %.4f G %.4f", f->gan.last_loss_d, f->gan.last_loss_g);
    else if (f->st.step > 0)
        snprintf(buf, size, "%.4f", f->st.loss);
    else
        snprintf(buf, size, "-");
}

/* Row 0: the progress, the ETA, the loss and the test result first; a bar in what is left. */
static void header_progress(const dp_style *sty, dp_rect r, const frame *f)
{
    const dp_control_status *s = &f->st;
    char eta[24] = "-", test[48];
    if (s->eta_s > 0 || (s->eta_s == 0 && dp_health_state(s) == DP_STATE_FINISHED))
        dp_format_duration(eta, sizeof eta, s->eta_s);
    test_text(s, test, sizeof test);
    double frac = s->total_steps > 0 ? (double)s->step / (double)s->total_steps : 0;
    char text[200], loss[48];
    loss_text(loss, sizeof loss, f);
    int n = snprintf(text, sizeof text, " step %ld/%ld (%.0f%%)  ETA %s  %s %s  %s  epoch %ld/%ld",
                     s->step, s->total_steps, 100 * frac, eta, f->loss_name, loss, test, s->epoch,
                     s->epochs);
    dp_text(r.y, r.x, r.w, A_BOLD, "%s", text);
    if (r.w - n - 2 >= 12)
        dp_bar(sty, r.y, r.x + n + 2, r.w - n - 3, frac);
}

/* Row 1: the plan, the rate over its window, the training time, the learning rate. */
static void header_rates(dp_rect r, const frame *f)
{
    const dp_control_status *s = &f->st;
    char el[24], rate[48];
    dp_format_duration(el, sizeof el, elapsed_s(f));
    dp_run_state state = dp_health_state(s);
    if (state == DP_STATE_PAUSED)
        snprintf(rate, sizeof rate, "0 samples/s (paused)");
    else
        snprintf(rate, sizeof rate, "%.0f samples/s (%.0f s)", s->samples_per_s,
                 DP_RATE_WINDOW_S);
    dp_text(r.y + 1, r.x, r.w, A_NORMAL, " %s  %s  elapsed %s  lr %.4g",
            s->plan[0] ? s->plan : "starting", rate, el, s->lr);
}

/* Row 2: MFU, the process's memory against the host's, a shared-cores note, then the names. */
static void header_host(dp_rect r, const frame *f, const dp_dashboard_info *info)
{
    char mfu[24] = "MFU -", rss[16], host[16], cores[64] = "";
    double u = f->held ? -1 : run_mfu(f);
    if (u >= 0)
        snprintf(mfu, sizeof mfu, "MFU %.1f%%", 100 * (u > 1 ? 1 : u));
    human_bytes(rss, sizeof rss, (double)f->rss);
    human_bytes(host, sizeof host, (double)f->host_memory);
    int cpus = cpu_devices(f);
    if (f->cores > 0 && cpus > f->cores)
        snprintf(cores, sizeof cores, "  %d devices share %d core%s", cpus, f->cores,
                 f->cores == 1 ? "" : "s");
    dp_text(r.y + 2, r.x, r.w, A_NORMAL,
            " %s  RSS %s of %s%s  dpmptop %s  run %s  %s (%ld samples)  %s (%zu params)", mfu,
            rss, host, cores, info->version, info->run_name, info->data_name, info->samples,
            info->model, info->params);
}

static void draw_header(const dp_style *sty, dp_rect r, const frame *f,
                        const dp_dashboard_info *info)
{
    header_progress(sty, r, f);
    header_rates(r, f);
    header_host(r, f, info);
}

/* The health line: state, skipped steps, the last evaluation and the best (a note of the
 * dashboard's own, when fresh, after the state). */
static void draw_health(const dp_style *sty, dp_rect r, const frame *f)
{
    const dp_control_status *s = &f->st;
    char state[160], last[64] = "-", best[64] = "-", note[140] = "";
    state_text(f, state, sizeof state);
    if (s->last_eval.step >= 0 && s->n_evals > 0)
        eval_text(last, sizeof last, &s->last_eval);
    if (s->best_eval.step >= 0 && s->n_evals > 0 && s->best_eval.gan) /* the lowest FD */
        snprintf(best, sizeof best, "FD %.4g @%ld", s->best_eval.frechet, s->best_eval.step);
    else if (s->best_eval.step >= 0 && s->n_evals > 0) /* the lowest test loss */
        snprintf(best, sizeof best, "%s %.3g @%ld", f->loss_name, s->best_eval.loss,
                 s->best_eval.step);
    if (f->note[0] && f->now - f->note_time < NOTE_S)
        snprintf(note, sizeof note, ": %s", f->note);
    dp_run_state st = dp_health_state(s);
    int attr = st == DP_STATE_PAUSED || (st == DP_STATE_TRAINING && strncmp(state, "stalled", 7) == 0)
                   ? dp_attr(sty, DP_PAIR_WARN, A_BOLD)
                   : dp_attr(sty, DP_PAIR_TITLE, A_BOLD);
    int n = (int)strlen(state) + (int)strlen(note) + 1;
    dp_text(r.y, r.x, r.w, attr, " %s%s", state, note);
    dp_text(r.y, r.x + n, r.w - n, A_NORMAL, "  skipped %ld  last %s  best %s", s->skipped, last,
            best);
}

/* Below 80x24: the step, loss, rate and ETA, the plan and state, and what size shows more. */
static void draw_summary(dp_rect r, const frame *f)
{
    const dp_control_status *s = &f->st;
    char eta[24] = "-", state[160], rate[32];
    if (s->eta_s >= 0 && s->step > 0)
        dp_format_duration(eta, sizeof eta, s->eta_s);
    state_text(f, state, sizeof state);
    if (dp_health_state(s) == DP_STATE_PAUSED)
        snprintf(rate, sizeof rate, "paused");
    else
        snprintf(rate, sizeof rate, "%.0f samples/s", s->samples_per_s);
    char loss[48];
    loss_text(loss, sizeof loss, f);
    dp_text(r.y, r.x, r.w, A_BOLD, "step %ld/%ld  %s %s  %s  ETA %s", s->step,
            s->total_steps, f->loss_name, loss, rate, eta);
    if (r.h > 1) /* before the first step the state says "starting" */
        dp_text(r.y + 1, r.x, r.w, A_NORMAL, "%s%s%s", s->plan, s->plan[0] ? "  " : "", state);
    if (r.h > 2)
        dp_text(r.y + 2, r.x, r.w, A_NORMAL, "%dx%d or more shows the dashboard (this is %dx%d)",
                DP_LAYOUT_MIN_COLS, DP_LAYOUT_MIN_ROWS, COLS, LINES);
}

/* ---- the devices ---- */

/* Why a device is unused, from the plan in use: short first (a panel of 3 rows shows the
 * start of it). */
static void unused_reason(const frame *f, const dp_dashboard_info *info, int width, char *buf,
                          size_t size)
{
    const dp_plan_request *q = &f->st.request;
    int used = 0;
    for (int i = 0; i < f->n_devices; i++)
        used += !is_unused(&f->dev[i]);
    if (q->strategy == DP_STRATEGY_SINGLE)
        snprintf(buf, size, "single trains on one device");
    else if (q->strategy == DP_STRATEGY_PP && q->stages == info->max_stages)
        snprintf(buf, size, width >= 60 ? "the model has %d layer%s with parameters: at most "
                                          "%d stages"
                                        : "%d layer%s with params: %d stages",
                 q->stages, q->stages == 1 ? "" : "s", q->stages);
    else
        snprintf(buf, size, "%s uses %d of %d devices", f->st.plan, used, f->all_devices);
}

/* "17.3M, peak 20.1M" (CPU: the engine's, no total: the host's is in the header) or
 * "1.2G/80.0G peak 1.5G" (GPU), with NVML's used/total when read. */
static void memory_text(const dp_device_view *dev, char *buf, size_t size)
{
    const dp_device_metrics *m = &dev->m;
    char used[16], total[16], peak[16];
    human_bytes(used, sizeof used, (double)m->mem_bytes);
    human_bytes(peak, sizeof peak, (double)m->mem_peak_bytes);
    human_bytes(total, sizeof total, (double)m->mem_total_bytes);
    int n = m->mem_total_bytes ? snprintf(buf, size, "%s/%s peak %s", used, total, peak)
                               : snprintf(buf, size, "%s peak %s", used, peak);
    if (dev->gpu.mem_valid && n > 0 && (size_t)n < size) {
        human_bytes(used, sizeof used, (double)dev->gpu.mem_used);
        human_bytes(total, sizeof total, (double)dev->gpu.mem_total);
        snprintf(buf + n, size - (size_t)n, "  nvml %s/%s", used, total);
    }
}

/* The role in at most `room` characters: as it is when it fits, else "r1 s2 (3-4)" for
 * "replica 1, stage 2 (layers 3-4)". */
static void compact_role(const char *role, int room, char *buf, size_t size)
{
    int replica, stage, first, last;
    if ((int)strlen(role) <= room)
        snprintf(buf, size, "%s", role);
    else if (sscanf(role, "replica %d, stage %d (layers %d-%d)", &replica, &stage, &first,
                    &last) == 4)
        snprintf(buf, size, "r%d s%d (%d-%d)", replica, stage, first, last);
    else if (sscanf(role, "stage %d (layers %d-%d)", &stage, &first, &last) == 3)
        snprintf(buf, size, "stage %d (%d-%d)", stage, first, last);
    else
        snprintf(buf, size, "%s", role);
}

/* A device's utilisation as a figure in 5 columns: " 47%", or the word that holds it. */
static void util_figure(char *buf, size_t size, const dp_device_metrics *m, const char *held)
{
    if (held)
        snprintf(buf, size, " %4s", held);
    else
        snprintf(buf, size, " %3.0f%%", 100 * m->util);
}

/* A device's last loss, " loss   2.3026" (a masked model's " mloss  2.3026") in `cols`
 * columns (a larger figure in up to `room`), or N/A before its first step. */
static void loss_cell(int y, int x, int cols, int room, const char *name,
                      const dp_device_metrics *m)
{
    int digits = cols - 2 - (int)strlen(name);
    if (isfinite(m->loss) && m->role[0]) /* no role: no step yet */
        dp_text(y, x, room, A_NORMAL, " %s %*.4f", name, digits, m->loss);
    else
        dp_text(y, x, room, A_NORMAL, " %s %*s", name, digits, "N/A");
}

/* A device on one line, when there are more than 8: name and role, loss, utilisation meter and
 * memory figure, in at least DP_LINE_MIN_COLS columns. */
static void draw_line(const dp_style *sty, dp_rect r, const dp_device_view *dev,
                      const char *held, const char *loss_name)
{
    const dp_device_metrics *m = &dev->m;
    const int tail = 13 + 6 + 5 + 16; /* loss, " util ", " 100%", " mem 1023.9M" */
    int w = r.w - 1, head = w - tail - 6 < 44 ? w - tail - 6 : 44;
    int ubar = w - tail - head;
    char role[48];
    compact_role(m->role[0] ? m->role : "starting", head - 3 - (int)strlen(dev->name), role,
                 sizeof role);
    dp_text(r.y, r.x, head, dp_attr(sty, DP_PAIR_TITLE, A_BOLD), " %s  %s", dev->name, role);
    int x = r.x + head;
    loss_cell(r.y, x, 13, 13, loss_name, m);
    char figure[16];
    util_figure(figure, sizeof figure, m, held);
    dp_text(r.y, x + 13, 6, A_NORMAL, " util ");
    dp_bar(sty, r.y, x + 19, ubar, held ? 0 : m->util);
    dp_text(r.y, x + 19 + ubar, 5, A_NORMAL, "%s", figure);
    char used[16];
    human_bytes(used, sizeof used, (double)m->mem_bytes);
    dp_text(r.y, x + 24 + ubar, 16, A_NORMAL, " mem %s", used);
}

/* The panel's title bar: name, model (GPUs), role, and the cores a CPU device may use. */
static void panel_title(const dp_style *sty, dp_rect r, const dp_device_view *dev)
{
    const dp_device_metrics *m = &dev->m;
    int title = dp_attr(sty, DP_PAIR_TITLE, A_BOLD | A_REVERSE);
    attron(title);
    mvhline(r.y, r.x, ' ', r.w - 1);
    attroff(title);
    char threads[24] = "";
    if (m->threads > 1)
        snprintf(threads, sizeof threads, "  %d threads", m->threads);
    bool gpu = strcmp(dev->model, "CPU") != 0;
    dp_text(r.y, r.x, r.w - 1, title, " %s%s%s  %s%s", dev->name, gpu ? " " : "",
            gpu ? dev->model : "", m->role[0] ? m->role : "starting", threads);
}

/* The utilisation line: meter, figure, MFU, NVML's figure (GPUs) and the recent steps. */
static void panel_util(const dp_style *sty, int y, int x, int w, const dp_device_view *dev,
                       const char *held)
{
    const dp_device_metrics *m = &dev->m;
    const dp_gpu_reading *g = &dev->gpu;
    dp_text(y, x, 6, A_NORMAL, " util");
    int bar = (w - 22) / 2;
    dp_bar(sty, y, x + 6, bar, held ? 0 : m->util);
    int at = x + 6 + bar;
    char figure[16];
    util_figure(figure, sizeof figure, m, held);
    dp_text(y, at, 6, A_NORMAL, "%s", figure);
    if (m->mfu >= 0 && m->peak_flops > 0 && !held)
        dp_text(y, at + 5, 10, A_NORMAL, " mfu %3.0f%%", 100 * (m->mfu > 1 ? 1 : m->mfu));
    else
        dp_text(y, at + 5, 10, A_NORMAL, " mfu   -");
    int spark = w - (at + 16 - x);
    if (g->util_valid) { /* the whole GPU as NVML sees it, beside the engine's share */
        dp_text(y, x + w - 9, 9, A_NORMAL, " gpu %3u%%", g->util_pct);
        spark -= 9;
    }
    if (spark > 2)
        dp_sparkline(sty, y, at + 16, spark - 1, dev->util_hist, dev->hist_n, 0.0f, 1.0f);
}

static void panel_loss(const dp_style *sty, int y, int x, int w, const dp_device_view *dev,
                       const char *loss_name)
{
    loss_cell(y, x, 14, 16, loss_name, &dev->m);
    if (w > 18)
        dp_sparkline(sty, y, x + 16, w - 17, dev->loss_hist, dev->hist_n, 0, 0);
}

/* Loss and utilisation on one line, for a panel of 3 rows. */
static void panel_loss_util(const dp_style *sty, int y, int x, int w, const dp_device_view *dev,
                            const char *held, const char *loss_name)
{
    const dp_device_metrics *m = &dev->m;
    loss_cell(y, x, 14, 16, loss_name, m);
    dp_text(y, x + 16, 6, A_NORMAL, " util");
    int bar = w - 16 - 6 - 5;
    dp_bar(sty, y, x + 22, bar, held ? 0 : m->util);
    char figure[16];
    util_figure(figure, sizeof figure, m, held);
    dp_text(y, x + 22 + bar, 5, A_NORMAL, "%s", figure);
}

/* Where the utilisation charts end: now, or when the run ended (its last step or resume). */
static double chart_end(const frame *f)
{
    if (dp_health_state(&f->st) == DP_STATE_FINISHED && f->st.last_step_end > f->st.started)
        return f->st.last_step_end;
    return f->now;
}

/* The last step's split, in the longest wording that fits: a figure is never cut. */
static void panel_split(int y, int x, int w, const dp_device_metrics *m)
{
    static const char *const form[] = { " step: compute %.1f  comm %.1f  idle %.1f ms",
                                         " compute %.1f  comm %.1f  idle %.1f ms",
                                         " cmp %.1f com %.1f idle %.1f ms" };
    char text[96];
    for (int k = 0; k < 3; k++) {
        snprintf(text, sizeof text, form[k], 1e3 * m->compute_s, 1e3 * m->comm_s,
                 1e3 * m->idle_s);
        if ((int)strlen(text) <= w)
            break;
    }
    dp_text(y, x, w, A_NORMAL, "%s", text);
}

static void panel_mem(const dp_style *sty, int y, int x, int w, const dp_device_view *dev)
{
    const dp_device_metrics *m = &dev->m;
    char text[96];
    memory_text(dev, text, sizeof text);
    if (!m->mem_total_bytes) { /* a CPU device: the engine's bytes, no bar against a total */
        dp_text(y, x, w, A_NORMAL, " mem  %s (engine)", text);
        return;
    }
    dp_text(y, x, 6, A_NORMAL, " mem");
    int bar = w - 6 - (int)strlen(text) - 2;
    bar = bar > 40 ? 40 : bar;
    dp_bar(sty, y, x + 6, bar, (double)m->mem_bytes / (double)m->mem_total_bytes);
    dp_text(y, x + 6 + (bar > 0 ? bar : 0), w - 6 - (bar > 0 ? bar : 0), A_NORMAL, " %s", text);
}

/* The panel's last line: GPU temperature and power (N/A where NVML has none), activations. */
static void panel_extra(int y, int x, int w, const dp_device_view *dev)
{
    const dp_gpu_reading *g = &dev->gpu;
    char temp[16] = "N/A", power[16] = "N/A";
    if (g->temp_valid)
        snprintf(temp, sizeof temp, "%u C", g->temp_c);
    if (g->power_valid)
        snprintf(power, sizeof power, "%.0f W", g->power_w);
    if (strcmp(dev->model, "CPU") == 0)
        dp_text(y, x, w, A_NORMAL, " act peak %.1f MiB  cpu %.1f ms/step",
                (double)dev->m.act_peak_bytes / 1048576.0, 1e3 * dev->m.cpu_s);
    else
        dp_text(y, x, w, A_NORMAL, " temp %s  power %s  act peak %.1f MiB", temp, power,
                (double)dev->m.act_peak_bytes / 1048576.0);
}

/* A device panel: the lines dp_panel_rows_make gives its height. An unused device shows why,
 * and no history. */
static void draw_panel(const dp_style *sty, dp_rect r, const frame *f,
                       const dp_dashboard_info *info, int i)
{
    const dp_device_view *dev = &f->dev[i];
    char why[120] = "";
    if (is_unused(dev))
        unused_reason(f, info, r.w, why, sizeof why);
    if (r.h == 1 && why[0]) {
        dp_text(r.y, r.x, r.w - 1, A_NORMAL, " %s  unused: %s", dev->name, why);
        return;
    }
    if (r.h == 1) {
        draw_line(sty, r, dev, f->held, f->loss_name);
        return;
    }
    dp_panel_rows rows;
    dp_panel_rows_make(r.h, &rows);
    panel_title(sty, r, dev);
    int w = r.w - 1, x = r.x;
    if (why[0]) {
        dp_text(r.y + rows.loss, x, w, A_NORMAL, " %s", why); /* the title says unused */
        if (rows.mem >= 0)
            panel_mem(sty, r.y + rows.mem, x, w, dev);
        return;
    }
    if (rows.loss >= 0 && rows.loss == rows.util)
        panel_loss_util(sty, r.y + rows.loss, x, w, dev, f->held, f->loss_name);
    else {
        if (rows.loss >= 0)
            panel_loss(sty, r.y + rows.loss, x, w, dev, f->loss_name);
        if (rows.util >= 0)
            panel_util(sty, r.y + rows.util, x, w, dev, f->held);
    }
    if (rows.mem >= 0)
        panel_mem(sty, r.y + rows.mem, x, w, dev);
    if (rows.hist >= 0)
        dp_util_chart(sty, (dp_rect){ x + 1, r.y + rows.hist, w - 1, rows.hist_h }, &dev->util,
                      f->st.started, chart_end(f));
    if (rows.split >= 0)
        panel_split(r.y + rows.split, x, w, &dev->m);
    if (rows.extra >= 0)
        panel_extra(r.y + rows.extra, x, w, dev);
}

/* ---- a GAN: D(x) and D(G(z)), and the samples as a picture ---- */

/* The latest samples as terminal cells, rendered again only when newer samples come or the
 * space for them changes (not every frame). */
typedef struct picture {
    dp_picture_mode mode;    /* what this terminal shows (dp_picture_drawable) */
    dp_picture_pairs *pairs; /* the colour pairs drawn so far (NULL: ASCII only) */
    unsigned long generation; /* of the samples in `cells` (0: none) */
    int space_rows, space_cols; /* what they were rendered for */
    dp_picture_cell *cells;
    int rows, cols;          /* of cells */
    int shown, per_row;      /* samples in the picture, a row */
    float lo, hi;            /* the range mapped to black and white */
    char failed[96];         /* why the samples could not be rendered, or "" */
} picture;

/* The range the samples lie in: the one told, else [-1, 1] when one is below 0 (a tanh
 * generator's), else [0, 1]. */
static void samples_range(const dp_control_samples *s, float *lo, float *hi)
{
    *lo = s->lo;
    *hi = s->hi;
    if (*lo < *hi)
        return;
    size_t n = (size_t)s->n * dp_shape_count(s->shape);
    *lo = 0.0f;
    *hi = 1.0f;
    for (size_t i = 0; i < n; i++)
        if (s->x[i] < 0.0f) {
            *lo = -1.0f;
            return;
        }
}

/* Renders the first samples that fit well (dp_samples_per_row) into rows x cols cells: their
 * grid with 1 pixel gaps in greys, scaled down to fit. Sets p->failed on failure. */
static void render_samples(picture *p, const dp_control_samples *s, int rows, int cols)
{
    p->generation = s->generation;
    p->space_rows = rows;
    p->space_cols = cols;
    p->rows = p->cols = p->shown = 0;
    p->failed[0] = '\0';
    const dp_shape *sh = &s->shape; /* CHW, or HW / W as the data's images are */
    int c = sh->ndim == 3 ? sh->d[0] : 1;
    int h = sh->ndim >= 2 ? sh->d[sh->ndim - 2] : 1, w = sh->d[sh->ndim - 1];
    int k = dp_samples_per_row(s->n, h, w, rows, cols);
    if (k < 1)
        return;
    int shown = s->n < k * k ? s->n : k * k, gh, gw;
    dp_err err;
    samples_range(s, &p->lo, &p->hi);
    if (dp_samples_grid_size(shown, h, w, k, 1, &gh, &gw, &err) < 0) {
        snprintf(p->failed, sizeof p->failed, "%s", err.msg);
        return;
    }
    uint8_t *grey = malloc((size_t)gh * (size_t)gw);
    dp_picture_cell *cells = realloc(p->cells, (size_t)rows * cols * sizeof *cells);
    if (cells)
        p->cells = cells;
    if (!grey || !cells) {
        snprintf(p->failed, sizeof p->failed, "out of memory");
    } else if (dp_samples_grid_grey(s->x, shown, c, h, w, p->lo, p->hi, k, 1, grey, &err) < 0) {
        snprintf(p->failed, sizeof p->failed, "%s", err.msg);
    } else if (dp_picture_render(grey, gh, gw, rows, cols, p->mode, p->cells, &p->rows,
                                 &p->cols) < 0) {
        snprintf(p->failed, sizeof p->failed, "cannot render them");
        p->rows = p->cols = 0;
    } else {
        p->shown = shown;
        p->per_row = k;
    }
    free(grey);
}

/* The samples panel: a title, then the picture below it, a column in from its left. */
static void draw_samples(const dp_style *sty, dp_rect r, const frame *f, picture *p)
{
    const dp_control_samples *s = &f->samples;
    int title = dp_attr(sty, DP_PAIR_TITLE, A_BOLD);
    int rows = r.h - 1, cols = r.w - 1;
    if (s->generation == 0) {
        dp_text(r.y, r.x + 1, r.w - 1, title, "samples: at the first evaluation");
        return;
    }
    if (p->generation != s->generation || p->space_rows != rows || p->space_cols != cols)
        render_samples(p, s, rows, cols);
    if (p->failed[0]) {
        dp_text(r.y, r.x + 1, r.w - 1, title, "samples @%ld: %s", s->step, p->failed);
        return;
    }
    dp_picture_mode used = dp_picture_draw(p->pairs, r.y + 1, r.x + 1, p->cells, p->rows,
                                           p->cols, p->mode);
    char how[48];
    if (used == p->mode)
        snprintf(how, sizeof how, "%s", dp_picture_mode_name(used));
    else /* the terminal ran out of colour pairs for some cells */
        snprintf(how, sizeof how, "%s, some cells %s", dp_picture_mode_name(p->mode),
                 dp_picture_mode_name(used));
    /* the longest wording that fits: the drawing's mode goes first */
    char text[3][128], of[32] = "";
    if (p->shown < s->n)
        snprintf(of, sizeof of, ": %d of %d", p->shown, s->n);
    snprintf(text[0], sizeof text[0], "samples @%ld%s (%s)", s->step, of, how);
    snprintf(text[1], sizeof text[1], "samples @%ld%s", s->step, of);
    snprintf(text[2], sizeof text[2], "@%ld%s", s->step, of);
    int k = 0;
    while (k < 2 && (int)strlen(text[k]) > r.w - 1)
        k++;
    dp_text(r.y, r.x + 1, r.w - 1, title, "%s", text[k]);
}

/* The D(x) and D(G(z)) line: the last step's figures (D(G(z)) before and after D's update, as
 * the headless line), each with a sparkline of the whole run on a 0..1 scale; and, when the
 * samples panel is left out, why. */
static void draw_gan_line(const dp_style *sty, dp_rect r, const frame *f, bool left_out)
{
    static const char note[] = "  samples: a wider terminal shows them";
    const dp_gan_series *g = &f->gan;
    int room = r.w - 1 - (left_out ? (int)sizeof note - 1 : 0);
    if (left_out)
        dp_text(r.y, r.x + r.w - (int)sizeof note, (int)sizeof note - 1, A_NORMAL, "%s", note);
    if (g->steps == 0) {
        dp_text(r.y, r.x, room, A_NORMAL, " D(x) -  D(G(z)) -");
        return;
    }
    char a[32], b[48];
    int la = snprintf(a, sizeof a, " D(x) %.3f ", g->last_d_real);
    int lb = snprintf(b, sizeof b, "  D(G(z)) %.3f / %.3f ", g->last_d_fake,
                      g->last_d_fake_after);
    int spark = (room - la - lb) / 2;
    spark = spark > 40 ? 40 : spark < 4 ? 0 : spark;
    float v[40];
    int x = r.x;
    dp_text(r.y, x, room, A_NORMAL, "%s", a);
    x += la;
    if (spark) {
        int n = dp_series_resample(&g->d_real, spark, v);
        dp_sparkline(sty, r.y, x, spark, v, n, 0.0f, 1.0f);
        x += spark;
    }
    dp_text(r.y, x, r.x + room - x, A_NORMAL, "%s", b);
    x += lb;
    if (spark) {
        int n = dp_series_resample(&g->d_fake, spark, v);
        dp_sparkline(sty, r.y, x, spark, v, n, 0.0f, 1.0f);
    }
}

/* ---- keys and help ---- */

static const struct key_help {
    const char *key, *label, *help;
} keys[] = {
    { "F1", "Help", "F1, ? or h  this help" },
    { "1", "Single", "1         train on one device" },
    { "2", "DP", "2         data parallel: a replica per device" },
    { "3", "PP", "3         pipeline: a stage per device" },
    { "4", "Hybrid", "4         data parallel over pipelines" },
    { "s", "Sched", "s         GPipe <-> 1F1B" },
    { "+-", "Micro", "+ / -     one micro-batch more / fewer" },
    { "Spc", "Pause", "space     pause / resume" },
    { "c", "Ckpt", "c         write a checkpoint" },
    { "a", "Advise", "a         find the fastest plan (the advisor)" },
    { "A", NULL, "A         show / hide the advisor's table" },
    { "Esc", NULL, "Esc       hide the advisor's table" },
    { "Up/Dn", NULL, "Up/Down   scroll the table (PgUp/PgDn too)" },
    { "q", "Quit", "q or F10  quit (after the current step)" },
};
#define N_KEYS ((int)(sizeof keys / sizeof *keys))

static void draw_keys(const dp_style *sty, dp_rect r)
{
    int key = dp_attr(sty, DP_PAIR_KEY, A_REVERSE);
    move(r.y, r.x);
    int x = 0;
    for (int k = 0; k < N_KEYS && x < r.w; k++) {
        if (!keys[k].label) /* in the help only */
            continue;
        int need = (int)(strlen(keys[k].key) + strlen(keys[k].label)) + 1;
        if (x + need > r.w)
            break;
        dp_text(r.y, r.x + x, r.w - x, A_BOLD, "%s", keys[k].key);
        x += (int)strlen(keys[k].key);
        dp_text(r.y, r.x + x, r.w - x, key, "%-*s", (int)strlen(keys[k].label) + 1,
                keys[k].label);
        x += (int)strlen(keys[k].label) + 1;
    }
}

static void draw_help(const dp_style *sty)
{
    int w = 52, h = N_KEYS + 4;
    int x = (COLS - w) / 2, y = (LINES - h) / 2;
    for (int row = 0; row < h; row++)
        mvhline(y + row, x, ' ', w);
    int title = dp_attr(sty, DP_PAIR_TITLE, A_BOLD);
    dp_text(y + 1, x + 2, w - 4, title, "dpmptop keys");
    for (int k = 0; k < N_KEYS; k++)
        dp_text(y + 2 + k, x + 2, w - 4, A_NORMAL, "%s", keys[k].help);
    dp_text(y + h - 1, x + 2, w - 4, A_NORMAL, "q, Esc or any other key closes this");
}

/* The outcome of the advisor's search from row r.y + 1, in bold: on a second row, broken at a
 * space, when it does not fit one and the body has room. Returns the row after it. */
static int draw_outcome(dp_rect r, const char *text)
{
    int len = (int)strlen(text), w = r.w - 2, cut = len;
    if (len > w && r.h >= 12) {
        cut = w;
        while (cut > w / 2 && text[cut] != ' ')
            cut--;
        if (text[cut] != ' ')
            cut = w;
    }
    dp_text(r.y + 1, r.x, r.w, A_BOLD, " %.*s", cut, text);
    if (cut == len)
        return r.y + 2;
    dp_text(r.y + 2, r.x, r.w, A_BOLD, "   %s", text + cut + (text[cut] == ' '));
    return r.y + 3;
}

/* The plan advisor's view in the body r: what the advisor is doing, the outcome of its last
 * search, the keys, then the table (dp_advice_rows). */
static void draw_advisor(const dp_style *sty, dp_rect r, const frame *f, advisor_view *v)
{
    const dp_advice_table *t = &v->table;
    int title = dp_attr(sty, DP_PAIR_TITLE, A_BOLD);
    bool have = v->generation > 0 && t->c;
    if (r.h < 4)
        return;
    if (measuring(&f->st))
        dp_text(r.y, r.x, r.w, dp_attr(sty, DP_PAIR_WARN, A_BOLD) | A_BOLD,
                " plan advisor: measuring plans on the training's own steps%s",
                have ? "; the last table below" : ": the table comes when the search ends");
    else if (have && t->n == 0) /* a model it cannot plan: the outcome says why */
        dp_text(r.y, r.x, r.w, title, " plan advisor: no plan to measure");
    else if (have && t->first_step > 0)
        dp_text(r.y, r.x, r.w, title, " plan advisor: %d plans, %d measured over steps %ld-%ld "
                                      "(%.1f s)", t->n, t->measured, t->first_step,
                t->last_step, t->seconds);
    else if (have) /* stopped before its first step */
        dp_text(r.y, r.x, r.w, title, " plan advisor: %d plans, none measured", t->n);
    else if (!t->c)
        dp_text(r.y, r.x, r.w, title, " plan advisor: out of memory for its table");
    else
        dp_text(r.y, r.x, r.w, title, " plan advisor: no table yet (a measures the plans)");
    int y = r.y + 1;
    if (have)
        y = draw_outcome(r, t->outcome);
    if (have && t->n > 0) /* the table below the keys' line */
        v->page = dp_advice_rows(sty, (dp_rect){ r.x, y + 1, r.w, r.y + r.h - y - 1 }, t,
                                 &v->first);
    /* the rows shown first, when they are not all: a narrow screen cuts the keys' names */
    if (have && t->n > v->page && v->page > 0)
        dp_text(y, r.x, r.w, A_NORMAL,
                " rows %d-%d of %d: Up/Down PgUp/PgDn scroll  a measures again  A or Esc hides "
                "this", v->first + 1, v->first + v->page < t->n ? v->first + v->page : t->n,
                t->n);
    else
        dp_text(y, r.x, r.w, A_NORMAL, " a measures again  A or Esc hides this");
}

/* The last event and how long ago it came. */
static void draw_event(dp_rect r, const frame *f)
{
    char ago[24];
    dp_format_duration(ago, sizeof ago, f->now - f->st.event_time);
    dp_text(r.y, 0, r.w, A_NORMAL, " %s  (%s ago)", f->st.event, ago);
}

/* The finish message (its test result and checkpoint path make it long) on the event line and,
 * when it does not fit, on the key bar's row too, broken at a space: after the end the only key
 * that does anything is q, which the message names. */
static void draw_finish(dp_rect event, dp_rect bar, const char *text)
{
    int len = (int)strlen(text), w = event.w - 1, cut = len;
    if (len > w) {
        cut = w;
        while (cut > w / 2 && text[cut] != ' ')
            cut--;
        if (text[cut] != ' ')
            cut = w;
    }
    dp_text(event.y, 0, event.w, A_BOLD, " %.*s", cut, text);
    if (cut < len)
        dp_text(bar.y, 0, bar.w, A_BOLD, " %s", text + cut + (text[cut] == ' '));
}

/* The body between the health line and the event line: the device panels, then the loss plot,
 * the evaluations and the timeline (a GAN's plots and samples). */
static void draw_body(const dp_style *sty, const dp_layout *lay, const frame *f,
                      const dp_dashboard_info *info, picture *pic, bool gan, int stages)
{
    for (int i = 0; i < lay->n_panels; i++)
        draw_panel(sty, lay->panels[i], f, info, i);
    if (lay->n_panels < f->all_devices) /* on the blank row above the plot */
        dp_text((gan ? lay->gan_line.y : lay->loss_plot.y) - 1, 0, COLS - lay->samples.w, A_BOLD,
                " +%d more device%s (a larger terminal shows them)",
                f->all_devices - lay->n_panels, f->all_devices - lay->n_panels == 1 ? "" : "s");
    if (gan) {
        dp_series_plot(sty, lay->loss_plot, &f->series, "D loss");
        if (lay->loss_plot_g.h)
            dp_series_plot(sty, lay->loss_plot_g, &f->gan.loss_g, "G loss");
        draw_gan_line(sty, lay->gan_line, f, lay->samples_left_out);
        if (lay->samples.h)
            draw_samples(sty, lay->samples, f, pic);
    } else {
        dp_series_plot(sty, lay->loss_plot, &f->series,
                       strcmp(f->loss_name, "mloss") == 0 ? "masked loss" : "loss");
    }
    dp_eval_table(sty, lay->evals, f->st.evals, f->st.n_evals, f->st.evals_done,
                  f->st.n_evals ? f->st.best_eval.step : -1);
    if (lay->timeline.h)
        dp_timeline_plot(sty, lay->timeline, f->timeline, stages, f->st.request.micro);
}

static void draw(const dp_style *sty, const frame *f, const dp_dashboard_info *info, bool help,
                 picture *pic, advisor_view *adv)
{
    erase();
    dp_layout lay;
    int stages = f->st.pipeline ? f->st.request.stages : 0;
    bool gan = is_gan(f);
    if (gan)
        dp_layout_make_gan(COLS, LINES, f->all_devices, stages > 1, &lay);
    else
        dp_layout_make(COLS, LINES, f->all_devices, stages > 1, &lay);
    if (lay.too_small) {
        draw_summary(lay.summary, f);
        refresh();
        return;
    }
    draw_header(sty, lay.header, f, info);
    draw_health(sty, lay.health, f);
    if (adv->open) /* the advisor's view takes the body */
        draw_advisor(sty, (dp_rect){ 0, lay.health.y + 1, COLS, lay.event.y - lay.health.y - 1 },
                     f, adv);
    else
        draw_body(sty, &lay, f, info, pic, gan, stages);
    if (f->st.event[0] && dp_health_state(&f->st) == DP_STATE_FINISHED)
        draw_finish(lay.event, lay.keys, f->st.event);
    else if (f->st.event[0])
        draw_event(lay.event, f);
    if (dp_health_state(&f->st) != DP_STATE_FINISHED || !f->st.event[0])
        draw_keys(sty, lay.keys);
    if (help)
        draw_help(sty);
    refresh();
}

/* The request for strategy `strategy` from the plan in use: pipeline settings carry over
 * between pp and hybrid; otherwise the new strategy's defaults apply. */
static dp_plan_request next_request(const dp_plan_request *now, dp_strategy strategy)
{
    bool was_pipe = now->strategy == DP_STRATEGY_PP || now->strategy == DP_STRATEGY_HYBRID;
    bool is_pipe = strategy == DP_STRATEGY_PP || strategy == DP_STRATEGY_HYBRID;
    dp_plan_request r = { .strategy = strategy, .schedule = now->schedule };
    if (was_pipe && is_pipe && now->strategy == strategy)
        r.stages = now->stages;
    if (was_pipe && is_pipe)
        r.micro = now->micro;
    return r;
}

/* Hands a switch the trainer can make to the training loop, which makes it (in every process
 * of the run) before its next step. */
static bool is_pipeline(const dp_plan_request *r)
{
    return r->strategy == DP_STRATEGY_PP || r->strategy == DP_STRATEGY_HYBRID;
}

/* Whether request a asks for plan b (stages 0: the strategy's default, as in b). */
static bool same_plan(const dp_plan_request *a, const dp_plan_request *b)
{
    if (a->strategy != b->strategy)
        return false;
    return !is_pipeline(a) || ((a->stages == b->stages || !a->stages) && a->micro == b->micro &&
                               a->schedule == b->schedule);
}

/* Hands a switch the trainer can make to the training loop, which makes it (in every process
 * of the run) before its next step. A request for the plan in use (keys that undo a pending
 * switch) replaces the pending one and switches nothing. */
static void ask_switch(dp_trainer *t, dp_control *ctl, const frame *f, const dp_plan_request *req)
{
    dp_err err;
    if (dp_trainer_check_switch(t, req, &err) < 0) {
        dp_control_event(ctl, "cannot switch: %s", err.msg);
        return;
    }
    dp_control_request_switch(ctl, req);
    if (f->st.plan[0] && same_plan(req, &f->st.request))
        dp_control_event(ctl, "staying with %s: the switch asked for is cancelled", f->st.plan);
    else
        dp_control_event(ctl, "switching to %s after the current step",
                         dp_strategy_name(req->strategy));
}

/* 1-4: the strategy; its own key says it is running (or already asked for). */
static void switch_strategy(dp_trainer *t, dp_control *ctl, const frame *f,
                            const dp_plan_request *now, dp_strategy strategy)
{
    dp_plan_request req = next_request(now, strategy);
    const dp_plan_request *in_use = &f->st.request;
    bool same_as_now = now->strategy == strategy && (!is_pipeline(now) || req.stages == now->stages);
    if (!same_as_now || !f->st.plan[0]) {
        ask_switch(t, ctl, f, &req);
        return;
    }
    if (memcmp(now, in_use, sizeof *now) == 0)
        dp_control_event(ctl, "already %s", f->st.plan);
    else
        dp_control_event(ctl, "already switching to %s", dp_strategy_name(strategy));
}

/* s: the other pipeline schedule. */
static void toggle_schedule(dp_trainer *t, dp_control *ctl, const frame *f,
                            const dp_plan_request *now)
{
    dp_plan_request req = *now;
    req.schedule = now->schedule == DP_SCHEDULE_1F1B ? DP_SCHEDULE_GPIPE : DP_SCHEDULE_1F1B;
    if (!is_pipeline(now))
        dp_control_event(ctl, "the schedule is a pipeline's: press 3 or 4 first");
    else
        ask_switch(t, ctl, f, &req);
}

/* + and -: one micro-batch more or fewer. */
static void change_micro(dp_trainer *t, dp_control *ctl, const frame *f,
                         const dp_plan_request *now, int by)
{
    dp_plan_request req = *now;
    req.micro = now->micro + by;
    if (!is_pipeline(now))
        dp_control_event(ctl, "micro-batches are a pipeline's: press 3 or 4 first");
    else if (req.micro < 1)
        dp_control_event(ctl, "already at 1 micro-batch");
    else
        ask_switch(t, ctl, f, &req);
}

/* a: the advisor measures the plans from the next step on (again, when it did before) and
 * picks the fastest; the view opens to show it doing so, and its table when it is done. */
static void ask_advice(dp_control *ctl, advisor_view *v)
{
    v->open = true;
    if (dp_control_request_advice(ctl))
        dp_control_event(ctl, "plan advisor: measuring plans from the next step (a key that "
                              "switches stops it)");
    else
        dp_control_event(ctl, "the plan advisor is already measuring plans");
}

/* The advisor's view's own keys, whether the run goes on or has ended: A shows or hides it, Esc
 * hides it, the arrows, PgUp, PgDn, Home and End scroll its table. Returns whether ch was one. */
static bool advisor_key(int ch, advisor_view *v)
{
    int page = v->page > 1 ? v->page - 1 : 1; /* a page keeps a row of the last in sight */
    switch (ch) {
    case 'A':
        v->open = !v->open;
        return true;
    case 27: /* Esc */
        v->open = false;
        return true;
    case KEY_UP:
    case KEY_DOWN:
    case KEY_PPAGE:
    case KEY_NPAGE:
    case KEY_HOME:
    case KEY_END:
        if (!v->open)
            return false;
        v->first += ch == KEY_UP ? -1 : ch == KEY_DOWN ? 1 : ch == KEY_PPAGE ? -page
                  : ch == KEY_NPAGE ? page : ch == KEY_HOME ? -v->table.n : v->table.n;
        /* the last rows fill the page (as the drawing keeps them): End then Up goes up one */
        int most = v->table.n > v->page ? v->table.n - v->page : 0;
        v->first = v->first > most ? most : v->first < 0 ? 0 : v->first;
        return true;
    default:
        return false;
    }
}

/* A key after the run has ended: only help, quit and the advisor's view do anything; the others
 * say so on the health line, so that the finish message stays on the event line. */
static bool on_key_finished(int ch, frame *f, bool *help, advisor_view *adv)
{
    if (advisor_key(ch, adv))
        return false;
    switch (ch) {
    case KEY_F(1):
    case '?':
    case 'h':
        *help = true;
        return false;
    case 'q':
    case KEY_F(10):
        return true;
    default:
        snprintf(f->note, sizeof f->note, "the run has finished; q leaves");
        f->note_time = dp_now_s();
        return false;
    }
}

/* Handles one key; returns true when it asks to quit. */
static bool on_key(int ch, dp_trainer *t, dp_control *ctl, frame *f, bool *help,
                   advisor_view *adv)
{
    if (*help) { /* q, Esc or any other key closes the help, and does nothing else */
        *help = false;
        return false;
    }
    if (f->st.finished)
        return on_key_finished(ch, f, help, adv);
    if (advisor_key(ch, adv))
        return false;
    /* The newest plan asked for, else the one in use: keys pressed before the loop makes a
     * switch add up. */
    dp_plan_request now = dp_control_switch_base(ctl);
    switch (ch) {
    case KEY_F(1):
    case '?':
    case 'h':
        *help = true;
        break;
    case '1':
    case '2':
    case '3':
    case '4':
        switch_strategy(t, ctl, f, &now, (dp_strategy)(ch - '1'));
        break;
    case 's':
        toggle_schedule(t, ctl, f, &now);
        break;
    case '+':
    case '-':
        change_micro(t, ctl, f, &now, ch == '+' ? 1 : -1);
        break;
    case ' ':
        dp_control_event(ctl, dp_control_toggle_pause(ctl) ? "paused (space resumes)" : "resumed");
        break;
    case 'c':
        dp_control_event(ctl, dp_control_request_checkpoint(ctl)
                                  ? "writing a checkpoint after this step"
                                  : "no checkpoint directory: start with --checkpoint-dir DIR");
        break;
    case 'a':
        ask_advice(ctl, adv);
        break;
    case 'q':
    case KEY_F(10):
        return true;
    default:
        break;
    }
    return false;
}

/* The terminal's settings from before the dashboard took it, for a signal handler that must
 * give it back without ncurses (the state shared with a handler, on any thread: written before
 * `terminal_saved` is set, read only while it is; `restoring` counts the handlers using it, so
 * that the dashboard closes its descriptors only once none is). */
static struct termios saved_termios;
static int term_in = STDIN_FILENO, term_out = STDOUT_FILENO;
static pid_t launcher = -1; /* the foreground job before the dashboard took the terminal */
static atomic_int terminal_saved, restoring;

static void give_foreground(int tty, pid_t to);

void dp_dashboard_restore_terminal(void)
{
    static const char reset[] = "\033[0m\033[?25h\033[?1049l\r\n"; /* plain, cursor, main screen */
    atomic_fetch_add(&restoring, 1);
    if (terminal_saved) {
        tcsetattr(term_in, TCSANOW, &saved_termios);
        ssize_t ignored = write(term_out, reset, sizeof reset - 1);
        (void)ignored;
        give_foreground(term_in, launcher);
    }
    atomic_fetch_sub(&restoring, 1);
}

/* Makes this process's group the terminal's foreground job (the launcher's group before goes
 * to *before), so that keys, Ctrl-C and resizes come here. From then on the terminal's job
 * control signals are ignored: Ctrl-Z would stop only this process, holding the terminal while
 * mpirun waits, and once the terminal is given back (a signal, the run's end) a write or read
 * from the background must fail rather than stop it. */
static int take_foreground(int tty, pid_t *before)
{
    signal(SIGTSTP, SIG_IGN);
    signal(SIGTTOU, SIG_IGN);
    signal(SIGTTIN, SIG_IGN);
    *before = tcgetpgrp(tty);
    return *before >= 0 ? tcsetpgrp(tty, getpgrp()) : -1;
}

/* Async-signal-safe. */
static void give_foreground(int tty, pid_t to)
{
    if (to >= 0)
        tcsetpgrp(tty, to);
}

/* Under mpirun, a key that mpirun read from its terminal before the dashboard took it, and
 * sent on to rank 0's stdin (a pipe); ERR when none. */
static int launcher_key(void)
{
    unsigned char c;
    return read(STDIN_FILENO, &c, 1) == 1 ? c : ERR;
}

/* The terminal the dashboard draws on: stdin and stdout, or the launcher's under mpirun. */
typedef struct terminal {
    FILE *in, *out;
    SCREEN *screen;
} terminal;

/* Under mpirun: streams on the launcher's terminal, whose foreground job this process becomes.
 * Returns -1 after saying why. */
static int open_launcher_tty(const dp_dashboard_info *info, terminal *term)
{
    int dup_in = dup(info->tty), dup_out = dup(info->tty);
    term->in = dup_in >= 0 ? fdopen(dup_in, "r") : NULL;
    term->out = dup_out >= 0 ? fdopen(dup_out, "w") : NULL;
    if (!term->in || !term->out) {
        if (term->in)
            fclose(term->in);
        if (term->out)
            fclose(term->out);
        fprintf(stderr, "dpmptop: cannot use the terminal; run with --headless\n");
        return -1;
    }
    fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
    if (take_foreground(info->tty, &launcher) < 0) {
        fclose(term->in);
        fclose(term->out);
        fprintf(stderr, "dpmptop: cannot take mpirun's terminal; run with --headless\n");
        return -1;
    }
    return 0;
}

/* Gives the terminal back once no signal handler uses its descriptors. */
static void release_terminal(const dp_dashboard_info *info, terminal *term)
{
    terminal_saved = 0;
    while (atomic_load(&restoring)) /* a handler on another thread is using the descriptors */
        sched_yield();
    if (info->tty >= 0) {
        give_foreground(info->tty, launcher);
        fclose(term->in);
        fclose(term->out);
    }
}

/* Takes the terminal and starts ncurses on it; -1 (after saying why) when it cannot. */
static int open_terminal(const dp_dashboard_info *info, terminal *term)
{
    setlocale(LC_ALL, "");
    term->in = stdin;
    term->out = stdout;
    launcher = -1;
    if (info->tty >= 0 && open_launcher_tty(info, term) < 0)
        return -1;
    term_in = fileno(term->in);
    term_out = fileno(term->out);
    if (tcgetattr(term_in, &saved_termios) == 0)
        terminal_saved = 1;
    term->screen = newterm(NULL, term->out, term->in);
    if (!term->screen) {
        terminal_saved = 0;
        dp_say_terminal_unusable();
        release_terminal(info, term);
        return -1;
    }
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    curs_set(0);
    set_escdelay(25); /* Esc closes the help at once: keys do not start with it here */
    timeout(info->refresh_ms);
    return 0;
}

/* NVML's readings of this process's GPUs into the frame, once a second (NVML's own sampling is
 * ~1/6 s or slower). */
static void read_gpus(dp_gpumon *mon, dp_trainer *t, frame *f, double *last_read)
{
    if (!mon || dp_now_s() - *last_read < 1.0)
        return;
    for (int i = 0; i < dp_trainer_device_count(t) && i < f->n_devices; i++) {
        const dp_device *d = dp_trainer_device(t, i);
        if (!d->bus_id[0] || dp_gpumon_read(mon, d->bus_id, 0, &f->dev[i].gpu, NULL, 0) < 0)
            memset(&f->dev[i].gpu, 0, sizeof f->dev[i].gpu);
    }
    *last_read = dp_now_s();
}

/* NVML, when one of this process's devices is a GPU; NULL otherwise. */
static dp_gpumon *open_gpumon(dp_trainer *t)
{
    char why[160];
    dp_gpumon *mon = NULL;
    for (int i = 0; i < dp_trainer_device_count(t) && !mon; i++)
        if (dp_trainer_device(t, i)->bus_id[0])
            mon = dp_gpumon_open(why, sizeof why);
    return mon;
}

/* The host's figures into the frame, once a second with the GPUs'. */
static void read_host(frame *f)
{
    f->rss = dp_process_rss();
    if (!f->host_memory)
        f->host_memory = dp_host_memory_total();
    f->cores = dp_cpu_cores(); /* those this process may run on, as the devices' threads */
}

/* Every key waiting, each handled (one frame may be slower than the keys come): the first
 * waits up to refresh_ms, the others not at all. Returns true when one asks to quit. */
static bool read_keys(dp_trainer *t, dp_control *ctl, const dp_dashboard_info *info, frame *f,
                      bool *help, advisor_view *adv)
{
    bool quit = false;
    timeout(info->refresh_ms);
    for (;;) {
        int ch = getch();
        if (ch == ERR && info->tty >= 0)
            ch = launcher_key();
        if (ch == ERR)
            break;
        if (ch != KEY_RESIZE && on_key(ch, t, ctl, f, help, adv))
            quit = true;
        timeout(0);
    }
    return quit;
}

/* Frames and keys until the user quits or a signal stops the run, and the loop has finished
 * (or gives up waiting: see dp_dashboard_run). */
static void frames(dp_trainer *t, dp_control *ctl, const dp_dashboard_info *info,
                   atomic_int *stop, const dp_style *sty, dp_gpumon *mon, picture *pic)
{
    static frame f; /* large: keep it off the stack */
    advisor_view adv = { .table.c = calloc(DP_ADVICE_MAX, sizeof(dp_advice)) };
    bool help = false, quitting = false;
    double last_read = -1e9, last_host = -1e9, stopped_at = 0, last_repaint = 0;
    for (;;) {
        snapshot(t, ctl, info, &f);
        update_advisor(ctl, &f.st, &adv);
        read_gpus(mon, t, &f, &last_read);
        if (f.now - last_host >= 1.0) {
            read_host(&f);
            last_host = f.now;
        }
        if ((quitting || *stop) && f.st.finished)
            break;
        if (*stop && !stopped_at)
            stopped_at = dp_now_s();
        /* Under mpirun a signal may be the launcher ending the run (SIGKILL follows): give
         * the terminal back at once. Otherwise after 3 s of a stuck loop. */
        if (stopped_at && (info->tty >= 0 || dp_now_s() - stopped_at > 3))
            break;
        if (info->tty >= 0 && dp_now_s() - last_repaint >= 1.0) {
            clearok(curscr, TRUE); /* the launcher may have printed over the screen */
            last_repaint = dp_now_s();
        }
        draw(sty, &f, info, help, pic, &adv);
        if (read_keys(t, ctl, info, &f, &help, &adv)) {
            if (f.st.finished)
                break;
            quitting = true;
        }
        if ((quitting || *stop) && !f.st.quit) {
            dp_control_request_quit(ctl);
            if (!f.st.finished)
                dp_control_event(ctl, f.st.state == DP_STATE_EVALUATING
                                          ? "quitting: the evaluation stops"
                                          : "quitting after the current step");
        }
    }
    dp_control_samples_free(&f.samples);
    f.samples.generation = 0;
    free(adv.table.c);
}

int dp_dashboard_run(dp_trainer *t, dp_control *ctl, const dp_dashboard_info *info,
                     atomic_int *stop)
{
    terminal term;
    if (open_terminal(info, &term) < 0)
        return -1;
    dp_style sty = { .utf8 = strcmp(nl_langinfo(CODESET), "UTF-8") == 0 };
    sty.color = info->color && has_colors();
    dp_widgets_colors(&sty);
    dp_gpumon *mon = open_gpumon(t);
    /* a GAN's samples: half blocks in greys where the terminal can show them, else ASCII */
    picture pic = { .pairs = dp_picture_pairs_new() };
    pic.mode = dp_picture_drawable(
        dp_picture_choose(sty.utf8, sty.color ? COLORS : 0, getenv("COLORTERM")));
    if (!pic.pairs)
        pic.mode = DP_PICTURE_ASCII;
    frames(t, ctl, info, stop, &sty, mon, &pic);
    free(pic.cells);
    dp_picture_pairs_free(pic.pairs);
    endwin();
    delscreen(term.screen);
    release_terminal(info, &term);
    dp_gpumon_close(mon);
    return 0;
}
