/* dashboard.c -- the interactive loop: keys in, a redraw every refresh_ms.
 *
 * Every frame is drawn in full on ncurses's virtual screen and refresh() sends the terminal only
 * what changed, so a quiet run costs little. */
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

#include "engine/gpumon.h"
#include "tui/layout.h"
#include "tui/widgets.h"

/* Everything a frame shows, copied from the status, the metrics and the other processes. */
typedef struct frame {
    dp_control_status st; /* the run's, as the control had it */
    int n_devices;    /* this process's first, then the other processes' */
    int all_devices;  /* of the run (more than the frame holds are counted only) */
    dp_device_view dev[DP_LAYOUT_MAX_PANELS];
    dp_timeline timeline[DP_LAYOUT_MAX_PANELS];
    dp_series series;
} frame;

/* Takes the frame's copies; leaves the GPU readings of this process's devices (NVML is read
 * once a second). */
static void snapshot(dp_trainer *t, dp_control *ctl, const dp_dashboard_info *info, frame *f)
{
    dp_control_snapshot(ctl, &f->st);
    dp_metrics *ms = dp_trainer_metrics(t);
    int local = ms->n_devices < DP_LAYOUT_MAX_PANELS ? ms->n_devices : DP_LAYOUT_MAX_PANELS;
    for (int i = 0; i < local; i++) {
        dp_gpu_reading gpu = f->dev[i].gpu;
        dp_device_view_read(t, i, &f->dev[i]);
        f->dev[i].gpu = gpu;
    }
    int others = dp_monitor_fetch(info->monitor, f->dev + local, DP_LAYOUT_MAX_PANELS - local);
    f->all_devices = ms->n_devices + others;
    f->n_devices = f->all_devices < DP_LAYOUT_MAX_PANELS ? f->all_devices : DP_LAYOUT_MAX_PANELS;
    /* The timeline shows replica 0's pipeline: devices 0 .. stages - 1. */
    int stages = f->st.pipeline ? f->st.request.stages : 0;
    for (int s = 0; s < stages && s < DP_LAYOUT_MAX_PANELS; s++)
        dp_metrics_timeline(ms, s, &f->timeline[s]);
    dp_metrics_series(ms, &f->series);
}

static void draw_header(const dp_style *sty, dp_rect r, const frame *f,
                        const dp_dashboard_info *info)
{
    const dp_control_status *s = &f->st;
    int title = dp_attr(sty, DP_PAIR_TITLE, A_BOLD);
    dp_text(r.y, r.x, r.w, title, "dpmptop %s  run %s  %s (%ld samples)  %s (%zu params)",
            info->version, info->run_name, info->data_name, info->samples, info->model,
            info->params);
    double elapsed = dp_now_s() - s->started;
    double eta = s->step > 0 ? elapsed / (double)s->step * (double)(s->total_steps - s->step) : 0;
    char el[24], et[24], acc[32];
    dp_format_duration(el, sizeof el, elapsed);
    dp_format_duration(et, sizeof et, eta);
    if (s->test_accuracy >= 0)
        snprintf(acc, sizeof acc, "%.4f @%ld", s->test_accuracy, s->test_step);
    else
        snprintf(acc, sizeof acc, "-");
    dp_text(r.y + 1, r.x, r.w, A_BOLD, "%s%s", s->plan[0] ? s->plan : "starting",
            s->paused ? "  [PAUSED]" : "");
    int at = (int)strlen(s->plan[0] ? s->plan : "starting") + (s->paused ? 10 : 0) + 2;
    dp_text(r.y + 1, r.x + at, r.w - at, A_NORMAL,
            "step %ld/%ld  epoch %ld/%ld  %.0f samples/s  elapsed %s  ETA %s  lr %.4g  test acc %s",
            s->step, s->total_steps, s->epoch, s->epochs, s->samples_per_s, el, et, s->lr, acc);
    /* a progress bar across the third line */
    double frac = s->total_steps > 0 ? (double)s->step / (double)s->total_steps : 0;
    dp_bar(sty, r.y + 2, r.x, r.w - 8, frac);
    dp_text(r.y + 2, r.x + r.w - 7, 7, A_NORMAL, "%5.1f%%", 100 * frac);
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

/* A device on one line, when there are more than 8: name and role, loss, utilisation and
 * memory meters, in at least DP_LINE_MIN_COLS columns. */
static void draw_line(const dp_style *sty, dp_rect r, const dp_device_view *dev)
{
    const dp_device_metrics *m = &dev->m;
    int head = r.w - 1 - 46 < 36 ? r.w - 1 - 46 : 36; /* room beyond goes to the meters */
    int spare = r.w - 1 - 46 - head, ubar = 8 + spare / 2, mbar = 8 + spare - spare / 2;
    dp_text(r.y, r.x, head, dp_attr(sty, DP_PAIR_TITLE, A_BOLD), " %s  %s", dev->name,
            m->role[0] ? m->role : "starting");
    int x = r.x + head;
    if (isfinite(m->loss))
        dp_text(r.y, x, 13, A_NORMAL, " loss %7.4f", m->loss);
    else
        dp_text(r.y, x, 13, A_NORMAL, " loss     N/A");
    dp_text(r.y, x + 13, 6, A_NORMAL, " util");
    dp_bar(sty, r.y, x + 19, ubar, m->util);
    dp_text(r.y, x + 19 + ubar, 5, A_NORMAL, " %3.0f%%", 100 * m->util);
    dp_text(r.y, x + 24 + ubar, 5, A_NORMAL, " mem");
    dp_bar(sty, r.y, x + 29 + ubar, mbar,
           m->mem_total_bytes ? (double)m->mem_bytes / (double)m->mem_total_bytes : 0);
}

/* A device panel: as many of these lines as fit, in this order: title; loss and sparkline;
 * utilisation bar and history; memory bar; step time split; temperature and power. */
static void draw_panel(const dp_style *sty, dp_rect r, const dp_device_view *dev)
{
    if (r.h == 1) {
        draw_line(sty, r, dev);
        return;
    }
    const char *name = dev->name;
    const dp_gpu_reading *g = &dev->gpu;
    const dp_device_metrics *m = &dev->m;
    int title = dp_attr(sty, DP_PAIR_TITLE, A_BOLD | A_REVERSE);
    attron(title);
    mvhline(r.y, r.x, ' ', r.w - 1);
    attroff(title);
    if (strcmp(dev->model, "CPU") != 0)
        dp_text(r.y, r.x, r.w - 1, title, " %s %s  %s", name, dev->model,
                m->role[0] ? m->role : "starting");
    else
        dp_text(r.y, r.x, r.w - 1, title, " %s  %s", name, m->role[0] ? m->role : "starting");
    int w = r.w - 1, y = r.y + 1, end = r.y + r.h;
    if (y < end) {
        if (isfinite(m->loss))
            dp_text(y, r.x, 16, A_NORMAL, " loss %8.4f", m->loss);
        else
            dp_text(y, r.x, 16, A_NORMAL, " loss      N/A");
        if (w > 18)
            dp_sparkline(sty, y, r.x + 16, w - 17, dev->loss_hist, dev->hist_n, 0, 0);
        y++;
    }
    if (y < end) {
        dp_text(y, r.x, 7, A_NORMAL, " util");
        int bar = (w - 12) / 2;
        dp_bar(sty, y, r.x + 6, bar, m->util);
        dp_text(y, r.x + 6 + bar, 6, A_NORMAL, " %3.0f%%", 100 * m->util);
        int spark = w - 12 - bar;
        if (g->util_valid) { /* the whole GPU as NVML sees it, beside the engine's share */
            dp_text(y, r.x + w - 9, 9, A_NORMAL, " gpu %3u%%", g->util_pct);
            spark -= 9;
        }
        dp_sparkline(sty, y, r.x + 12 + bar, spark, dev->util_hist, dev->hist_n, 0.0f, 1.0f);
        y++;
    }
    if (y < end) {
        char used[16], total[16], engine[16];
        human_bytes(used, sizeof used, (double)m->mem_bytes);
        human_bytes(total, sizeof total, (double)m->mem_total_bytes);
        human_bytes(engine, sizeof engine, (double)m->mem_peak_bytes);
        dp_text(y, r.x, 6, A_NORMAL, " mem");
        int bar = w - 30 > 10 ? w - 30 : 10;
        double frac = m->mem_total_bytes ? (double)m->mem_bytes / (double)m->mem_total_bytes : 0;
        dp_bar(sty, y, r.x + 6, bar, frac);
        dp_text(y, r.x + 6 + bar, w - 6 - bar, A_NORMAL, " %s/%s peak %s", used, total, engine);
        y++;
    }
    if (y < end) {
        dp_text(y, r.x, w, A_NORMAL, " step: compute %.1f  comm %.1f  idle %.1f ms",
                1e3 * m->compute_s, 1e3 * m->comm_s, 1e3 * m->idle_s);
        y++;
    }
    if (y < end) { /* N/A where NVML has no reading (and always for CPU devices) */
        char temp[16] = "N/A", power[16] = "N/A";
        if (g->temp_valid)
            snprintf(temp, sizeof temp, "%u C", g->temp_c);
        if (g->power_valid)
            snprintf(power, sizeof power, "%.0f W", g->power_w);
        dp_text(y, r.x, w, A_NORMAL, " temp %s  power %s  act peak %.1f MiB", temp, power,
                (double)m->act_peak_bytes / 1048576.0);
    }
}

static const struct key_help {
    const char *key, *label, *help;
} keys[] = {
    { "F1", "Help", "F1 or ?   this help" },
    { "1", "Single", "1         train on one device" },
    { "2", "DP", "2         data parallel: a replica per device" },
    { "3", "PP", "3         pipeline: a stage per device" },
    { "4", "Hybrid", "4         data parallel over pipelines" },
    { "s", "Sched", "s         GPipe <-> 1F1B" },
    { "+-", "Micro", "+ / -     one micro-batch more / fewer" },
    { "Spc", "Pause", "space     pause / resume" },
    { "c", "Ckpt", "c         write a checkpoint" },
    { "q", "Quit", "q or F10  quit (after the current step)" },
};
#define N_KEYS ((int)(sizeof keys / sizeof *keys))

static void draw_keys(const dp_style *sty, dp_rect r)
{
    int key = dp_attr(sty, DP_PAIR_KEY, A_REVERSE);
    move(r.y, r.x);
    int x = 0;
    for (int k = 0; k < N_KEYS && x < r.w; k++) {
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
    dp_text(y + h - 1, x + 2, w - 4, A_NORMAL, "any key closes this");
}

static void draw(const dp_style *sty, const frame *f, const dp_dashboard_info *info,
                 dp_trainer *t, bool help)
{
    erase();
    dp_layout lay;
    int stages = f->st.pipeline ? f->st.request.stages : 0;
    dp_layout_make(COLS, LINES, f->all_devices, stages > 1, &lay);
    if (lay.too_small) {
        dp_text(LINES / 2, 0, COLS, A_BOLD, "dpmptop needs at least %dx%d (this is %dx%d)",
                DP_LAYOUT_MIN_COLS, DP_LAYOUT_MIN_ROWS, COLS, LINES);
        refresh();
        return;
    }
    draw_header(sty, lay.header, f, info);
    for (int i = 0; i < lay.n_panels; i++)
        draw_panel(sty, lay.panels[i], &f->dev[i]);
    if (lay.n_panels < f->all_devices) /* on the blank row above the plot */
        dp_text(lay.loss_plot.y - 1, 0, COLS, A_BOLD,
                " +%d more device%s (a larger terminal shows them)",
                f->all_devices - lay.n_panels, f->all_devices - lay.n_panels == 1 ? "" : "s");
    dp_loss_plot(sty, lay.loss_plot, &f->series);
    if (lay.timeline.h)
        dp_timeline_plot(sty, lay.timeline, f->timeline, stages);
    if (f->st.event[0]) {
        char ago[24];
        dp_format_duration(ago, sizeof ago, dp_now_s() - f->st.event_time);
        dp_text(lay.event.y, 0, COLS, A_NORMAL, " %s  (%s ago)", f->st.event, ago);
    }
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
static void ask_switch(dp_trainer *t, dp_control *ctl, const dp_plan_request *req)
{
    dp_err err;
    if (dp_trainer_check_switch(t, req, &err) < 0) {
        dp_control_event(ctl, "cannot switch: %s", err.msg);
        return;
    }
    dp_control_request_switch(ctl, req);
    dp_control_event(ctl, "switching to %s after the current step",
                     dp_strategy_name(req->strategy));
}

static bool is_pipeline(const dp_plan_request *r)
{
    return r->strategy == DP_STRATEGY_PP || r->strategy == DP_STRATEGY_HYBRID;
}

/* s: the other pipeline schedule. */
static void toggle_schedule(dp_trainer *t, dp_control *ctl, const dp_plan_request *now)
{
    dp_plan_request req = *now;
    req.schedule = now->schedule == DP_SCHEDULE_1F1B ? DP_SCHEDULE_GPIPE : DP_SCHEDULE_1F1B;
    if (!is_pipeline(now))
        dp_control_event(ctl, "the schedule is a pipeline's: press 3 or 4 first");
    else
        ask_switch(t, ctl, &req);
}

/* + and -: one micro-batch more or fewer. */
static void change_micro(dp_trainer *t, dp_control *ctl, const dp_plan_request *now, int by)
{
    dp_plan_request req = *now;
    req.micro = now->micro + by;
    if (!is_pipeline(now))
        dp_control_event(ctl, "micro-batches are a pipeline's: press 3 or 4 first");
    else if (req.micro < 1)
        dp_control_event(ctl, "already at 1 micro-batch");
    else
        ask_switch(t, ctl, &req);
}

/* Handles one key; returns true when it asks to quit. */
static bool on_key(int ch, dp_trainer *t, dp_control *ctl, bool *help)
{
    if (*help) { /* any key closes the help */
        *help = false;
        return false;
    }
    /* The newest plan asked for, else the one in use: keys pressed before the loop makes a
     * switch add up. */
    dp_plan_request now = dp_control_switch_base(ctl), req;
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
        req = next_request(&now, (dp_strategy)(ch - '1'));
        ask_switch(t, ctl, &req);
        break;
    case 's':
        toggle_schedule(t, ctl, &now);
        break;
    case '+':
    case '-':
        change_micro(t, ctl, &now, ch == '+' ? 1 : -1);
        break;
    case ' ':
        dp_control_event(ctl, dp_control_toggle_pause(ctl) ? "paused (space resumes)" : "resumed");
        break;
    case 'c':
        dp_control_event(ctl, dp_control_request_checkpoint(ctl)
                                  ? "writing a checkpoint after this step"
                                  : "no checkpoint directory: start with --checkpoint-dir DIR");
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

/* Frames and keys until the user quits or a signal stops the run, and the loop has finished
 * (or gives up waiting: see dp_dashboard_run). */
static void frames(dp_trainer *t, dp_control *ctl, const dp_dashboard_info *info,
                   atomic_int *stop, const dp_style *sty, dp_gpumon *mon)
{
    static frame f; /* large: keep it off the stack */
    bool help = false, quitting = false;
    double last_read = -1e9, stopped_at = 0, last_repaint = 0;
    for (;;) {
        snapshot(t, ctl, info, &f);
        read_gpus(mon, t, &f, &last_read);
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
        draw(sty, &f, info, t, help);
        int ch = getch();
        if (ch == ERR && info->tty >= 0)
            ch = launcher_key();
        if (ch != ERR && ch != KEY_RESIZE && on_key(ch, t, ctl, &help)) {
            if (f.st.finished)
                break;
            quitting = true;
        }
        if ((quitting || *stop) && !f.st.quit) {
            dp_control_request_quit(ctl);
            if (!f.st.finished)
                dp_control_event(ctl, "quitting after the current step");
        }
    }
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
    frames(t, ctl, info, stop, &sty, mon);
    endwin();
    delscreen(term.screen);
    release_terminal(info, &term);
    dp_gpumon_close(mon);
    return 0;
}
