/* advise.c -- the plan advisor's candidates and table in a run (advise.h). */
#include "app/advise.h"

#include <stdlib.h>
#include <string.h>

#include "engine/worker.h"

int dp_advise_predict_static(void *arg, const dp_plan_request *req, dp_plan *p, size_t *bytes,
                             dp_err *err)
{
    const dp_advise_static *s = arg;
    if (dp_plan_make(p, req, s->n_devices, s->model, s->batch, NULL, err) < 0)
        return -1;
    size_t team[DP_MAX_DEVICES] = { 0 };
    dp_team_config tc = { .model = s->model, .optim = s->optim, .batch = s->batch,
                          .devices = s->devices };
    dp_team_bytes(p, &tc, team);
    for (int i = 0; i < s->n_devices; i++)
        bytes[i] = i < p->workers ? team[i] : 0;
    return 0;
}

/* A plan that cannot be made, named as dp_plan_describe would name it. */
static void describe_request(dp_advice *a, int n_devices)
{
    const dp_plan_request *r = &a->req;
    int stages = r->strategy == DP_STRATEGY_SINGLE || r->strategy == DP_STRATEGY_DP
                     ? 1 : r->stages;
    dp_plan p = { .strategy = r->strategy, .schedule = r->schedule, .stages = stages,
                  .micro = r->micro, .replicas = r->strategy == DP_STRATEGY_DP ? n_devices
                                                 : r->strategy == DP_STRATEGY_HYBRID
                                                     ? n_devices / stages : 1 };
    p.workers = p.replicas * p.stages;
    dp_plan_describe(&p, a->plan, sizeof a->plan);
}

int dp_advise_candidates(dp_advice_table *tab, const dp_model *m, int batch, bool bn_micro_ok,
                         const dp_device *devices, int n_devices, dp_advise_predict_fn predict,
                         void *arg, const dp_advice_costs *costs, dp_err *err)
{
    dp_advice *c = tab->c;
    memset(tab, 0, sizeof *tab);
    tab->c = c;
    tab->chosen = -1;
    tab->batch = batch;
    tab->n_devices = n_devices;
    size_t room[DP_MAX_DEVICES];
    for (int d = 0; d < n_devices; d++) {
        snprintf(tab->device[d], sizeof tab->device[d], "%s", devices[d].name);
        room[d] = devices[d].mem_total ? devices[d].mem_total : (size_t)-1;
    }
    dp_advice_limits lim = { n_devices, batch, bn_micro_ok };
    int n = dp_advice_enumerate(m, &lim, c, DP_ADVICE_MAX, err);
    if (n < 0)
        return -1;
    tab->n = n;
    tab->truncated = n == DP_ADVICE_MAX;
    for (int i = 0; i < n; i++) {
        dp_plan p;
        dp_err why;
        if (c[i].plan[0]) /* named and left out by the enumeration: no plan to make */
            continue;
        if (predict(arg, &c[i].req, &p, c[i].need, &why) < 0) {
            if (!c[i].left_out) /* (else the enumeration's reason stays) */
                snprintf(c[i].why, sizeof c[i].why, "%s", why.msg);
            c[i].left_out = true;
            describe_request(&c[i], n_devices);
            continue;
        }
        dp_plan_describe(&p, c[i].plan, sizeof c[i].plan);
        if (costs)
            c[i].estimate_s = dp_advice_estimate(&p, costs, batch);
        if (p.workers < n_devices && c[i].req.strategy == DP_STRATEGY_PP) { /* unused ones */
            size_t at = strlen(c[i].plan);
            int unused = n_devices - p.workers;
            snprintf(c[i].plan + at, sizeof c[i].plan - at, " (%s%s%s unused)",
                     devices[p.workers].name, unused == 2 ? ", " : unused > 2 ? "-" : "",
                     unused > 1 ? devices[n_devices - 1].name : "");
        }
    }
    dp_advice_fit(c, n, room, (const char(*)[32])tab->device, n_devices);
    return 0;
}

int dp_advise_first_plan(const dp_advice_table *tab, dp_err *err)
{
    int least = -1, smallest = -1;
    size_t least_need = 0, smallest_need = 0;
    for (int i = 0; i < tab->n; i++) {
        const dp_advice *a = &tab->c[i];
        int d;
        size_t need = dp_advice_most_need(a, tab->n_devices, &d);
        if (a->no_room && (smallest < 0 || need < smallest_need))
            smallest = i, smallest_need = need;
        if (a->left_out)
            continue;
        if (a->req.strategy == DP_STRATEGY_SINGLE)
            return i;
        if (least < 0 || need < least_need)
            least = i, least_need = need;
    }
    if (least >= 0)
        return least;
    if (smallest < 0)
        return dp_fail(err, "no plan can be made for this model on these devices");
    return dp_fail(err, "no plan fits the devices' memory: the smallest, %s, %s; raise "
                        "[parallel] device_memory, or use a smaller batch or model",
                   tab->c[smallest].plan, tab->c[smallest].why);
}

/* "cpu:0 1.2 GiB, cpu:1 800.0 MiB" for the devices a candidate uses: the prediction, or when
 * measured "cpu:0 1.1 GiB of 1.2 GiB", the measured peak of the prediction. */
static void memory_text(const dp_advice_table *tab, const dp_advice *a, char *buf, size_t size)
{
    size_t at = 0;
    buf[0] = 0;
    for (int d = 0; d < tab->n_devices && at + 1 < size; d++) {
        if (!a->need[d] && !a->peak[d])
            continue;
        char need[32], peak[32] = "";
        dp_advice_bytes(need, sizeof need, a->need[d]);
        if (a->steps > 0)
            dp_advice_bytes(peak, sizeof peak, a->peak[d]);
        at += (size_t)snprintf(buf + at, size - at, "%s%s %s%s%s", at ? ", " : "",
                               tab->device[d], a->steps > 0 ? peak : need,
                               a->steps > 0 ? " of " : "", a->steps > 0 ? need : "");
    }
}

void dp_advise_print(FILE *f, const dp_advice_table *tab)
{
    int w = 40; /* the plan column: as wide as its longest name ("... (from cpu:2 unused)") */
    for (int i = 0; i < tab->n; i++)
        if ((int)strlen(tab->c[i].plan) > w)
            w = (int)strlen(tab->c[i].plan);
    fprintf(f, "plan advisor: %s\n", tab->outcome);
    fprintf(f, "  %-*s %5s %10s %8s %6s %6s %6s  %s\n", w, "plan", "steps", "samples/s",
            "step ms", "idle", "comm", "MFU",
            "memory (measured peak of predicted) / why not measured");
    for (int i = 0; i < tab->n; i++) {
        const dp_advice *a = &tab->c[i];
        char mem[4096]; /* 64 devices' "cpu:63 123.4 MiB of 123.4 MiB" */
        memory_text(tab, a, mem, sizeof mem);
        const char *mark = a->chosen ? "*" : " ";
        if (a->steps > 0 && !a->left_out) {
            char mfu[16] = "-";
            if (a->mfu >= 0)
                snprintf(mfu, sizeof mfu, "%.1f%%", 100 * a->mfu);
            fprintf(f, "%s %-*s %5d %10.1f %8.2f %5.1f%% %5.1f%% %6s  %s%s\n", mark, w,
                    a->plan, a->steps, tab->batch / a->step_s, 1e3 * a->step_s,
                    100 * a->idle, 100 * a->comm, mfu, mem,
                    a->dropped ? "; dropped: slower" : "");
        } else {
            fprintf(f, "  %-*s %5s %10s %8s %6s %6s %6s  %s\n", w,
                    a->plan[0] ? a->plan : dp_strategy_name(a->req.strategy), "-", "-", "-",
                    "-", "-", "-", a->why);
        }
    }
}
