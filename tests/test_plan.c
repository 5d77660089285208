/* test_plan.c -- plans, stage balance and pipeline schedules.
 *
 * Plans: what dp_plan_make chooses for each strategy (replicas, stages, micro-batches, the
 * layers each stage holds), that the stage split minimises the largest stage's FLOPs (against a
 * brute-force search over every valid split), and what it refuses, with what message. Also the
 * row split, the plan's one-line description and the strategy names.
 * Schedules: every GPipe and 1F1B op list for S 1..8, M 1..16 (each micro-batch forward once and
 * backward once, in order, with the promised number in flight), two lists checked by hand, and a
 * simulation of S stages joined by links of 2 slots showing that no schedule can deadlock (and
 * that the simulation does report the deadlock of mismatched op lists). */
#include "tests/unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model.h"
#include "engine/stage.h"
#include "engine/plan.h"
#include "engine/schedule.h"

#define SPEC "linear:64, relu, linear:32, tanh, linear:48, gelu, linear:10"
#define SPEC_IN 20
#define SPEC_CLASSES 10
#define BATCH 64

static void parse(dp_model *m, const char *spec, int in, int classes)
{
    dp_err err;
    ck_assert_msg(dp_model_parse(m, spec, in, classes, &err) == 0, "parse \"%s\": %s", spec,
                  err.msg);
}

static dp_plan_request request(dp_strategy strategy, int stages, int micro, dp_schedule sched)
{
    dp_plan_request r = { .strategy = strategy, .stages = stages, .micro = micro,
                          .schedule = sched };
    return r;
}

/* Makes a plan that must succeed. */
static void make(dp_plan *p, const dp_plan_request *req, int devices, const dp_model *m, int batch)
{
    dp_err err;
    err.msg[0] = '\0';
    int rc = dp_plan_make(p, req, devices, m, batch, NULL, &err);
    ck_assert_msg(rc == 0, "plan %s on %d devices, batch %d: rc %d: %s",
                  dp_strategy_name(req->strategy), devices, batch, rc, err.msg);
}

/* The stages of p split the model's layers into contiguous runs that cover all of them, each
 * with at least one layer that has parameters. */
static void check_stages(const dp_plan *p, const dp_model *m)
{
    ck_assert_msg(p->first_layer[0] == 0, "first_layer[0] = %d", p->first_layer[0]);
    ck_assert_msg(p->first_layer[p->stages] == m->n_layers, "first_layer[%d] = %d, want %d",
                  p->stages, p->first_layer[p->stages], m->n_layers);
    for (int s = 0; s < p->stages; s++) {
        int lo = p->first_layer[s], hi = p->first_layer[s + 1];
        ck_assert_msg(lo < hi, "stage %d is [%d, %d): empty", s, lo, hi);
        int with_params = 0;
        for (int i = lo; i < hi; i++)
            with_params += m->layers[i].param_count > 0;
        ck_assert_msg(with_params >= 1, "stage %d [%d, %d) has no layer with parameters", s, lo,
                      hi);
    }
}

/* ---- what each strategy makes ---- */

/* single: one worker, one stage holding every layer, one micro-batch. */
START_TEST(test_plan_single)
{
    dp_model m;
    parse(&m, SPEC, SPEC_IN, SPEC_CLASSES);
    dp_plan p;
    dp_plan_request req = request(DP_STRATEGY_SINGLE, 0, 0, DP_SCHEDULE_1F1B);
    make(&p, &req, 4, &m, BATCH);
    ck_assert_int_eq(p.strategy, DP_STRATEGY_SINGLE);
    ck_assert_msg(p.replicas == 1 && p.stages == 1 && p.workers == 1 && p.micro == 1,
                  "R %d S %d workers %d M %d, want 1 1 1 1", p.replicas, p.stages, p.workers,
                  p.micro);
    ck_assert_msg(p.first_layer[0] == 0 && p.first_layer[1] == m.n_layers,
                  "first_layer {%d, %d}, want {0, %d}", p.first_layer[0], p.first_layer[1],
                  m.n_layers);
    dp_model_free(&m);
}
END_TEST

/* dp on 4 devices: four replicas of the whole model, one micro-batch each. */
START_TEST(test_plan_dp)
{
    dp_model m;
    parse(&m, SPEC, SPEC_IN, SPEC_CLASSES);
    dp_plan p;
    dp_plan_request req = request(DP_STRATEGY_DP, 0, 0, DP_SCHEDULE_1F1B);
    make(&p, &req, 4, &m, BATCH);
    ck_assert_msg(p.replicas == 4 && p.stages == 1 && p.workers == 4 && p.micro == 1,
                  "R %d S %d workers %d M %d, want 4 1 4 1", p.replicas, p.stages, p.workers,
                  p.micro);
    ck_assert_msg(p.first_layer[0] == 0 && p.first_layer[1] == m.n_layers,
                  "first_layer {%d, %d}, want {0, %d}", p.first_layer[0], p.first_layer[1],
                  m.n_layers);
    /* the smallest batch that feeds every replica is accepted */
    make(&p, &req, 4, &m, 4);
    dp_model_free(&m);
}
END_TEST

/* pp on 4 devices: four stages (one linear each here), 8 micro-batches by default, or as asked;
 * --stages 2 makes one pipeline of 2 stages on the first 2 devices. */
START_TEST(test_plan_pp)
{
    dp_model m;
    parse(&m, SPEC, SPEC_IN, SPEC_CLASSES);
    dp_plan p;
    dp_plan_request req = request(DP_STRATEGY_PP, 0, 0, DP_SCHEDULE_1F1B);
    make(&p, &req, 4, &m, BATCH);
    ck_assert_msg(p.replicas == 1 && p.stages == 4 && p.workers == 4 && p.micro == 8,
                  "R %d S %d workers %d M %d, want 1 4 4 8", p.replicas, p.stages, p.workers,
                  p.micro);
    ck_assert_int_eq(p.schedule, DP_SCHEDULE_1F1B);
    check_stages(&p, &m);
    for (int s = 0; s < 4; s++) {
        int linears = 0;
        for (int i = p.first_layer[s]; i < p.first_layer[s + 1]; i++)
            linears += m.layers[i].ops == &dp_layer_linear;
        ck_assert_msg(linears == 1, "stage %d holds %d linear layers, want 1", s, linears);
    }
    /* --stages equal to the device count, and an explicit micro-batch count */
    req = request(DP_STRATEGY_PP, 4, 3, DP_SCHEDULE_GPIPE);
    make(&p, &req, 4, &m, 3);
    ck_assert_msg(p.stages == 4 && p.micro == 3 && p.schedule == DP_SCHEDULE_GPIPE,
                  "S %d M %d schedule %d, want 4 3 gpipe", p.stages, p.micro, p.schedule);
    check_stages(&p, &m);
    /* --stages 2 on 4 devices: one pipeline of 2 stages, the other devices unused */
    req = request(DP_STRATEGY_PP, 2, 0, DP_SCHEDULE_1F1B);
    make(&p, &req, 4, &m, BATCH);
    ck_assert_msg(p.replicas == 1 && p.stages == 2 && p.micro == 4 && p.workers == 2,
                  "R %d S %d M %d workers %d, want 1 2 4 2", p.replicas, p.stages, p.micro,
                  p.workers);
    check_stages(&p, &m);
    dp_model_free(&m);
}
END_TEST

/* hybrid on 4 devices: 2 pipelines of 2 stages, with --stages 2 or by default; on 6 devices with
 * --stages 3, 2 pipelines of 3. */
START_TEST(test_plan_hybrid)
{
    dp_model m;
    parse(&m, SPEC, SPEC_IN, SPEC_CLASSES);
    dp_plan p;
    for (int stages = 0; stages <= 2; stages += 2) {
        dp_plan_request req = request(DP_STRATEGY_HYBRID, stages, 0, DP_SCHEDULE_GPIPE);
        make(&p, &req, 4, &m, BATCH);
        ck_assert_msg(p.replicas == 2 && p.stages == 2 && p.workers == 4 && p.micro == 4,
                      "--stages %d: R %d S %d workers %d M %d, want 2 2 4 4", stages, p.replicas,
                      p.stages, p.workers, p.micro);
        check_stages(&p, &m);
    }
    dp_plan_request req = request(DP_STRATEGY_HYBRID, 3, 0, DP_SCHEDULE_1F1B);
    make(&p, &req, 6, &m, BATCH);
    ck_assert_msg(p.replicas == 2 && p.stages == 3 && p.workers == 6 && p.micro == 6,
                  "R %d S %d workers %d M %d, want 2 3 6 6", p.replicas, p.stages, p.workers,
                  p.micro);
    check_stages(&p, &m);
    dp_model_free(&m);
}
END_TEST

/* ---- FLOP balance against brute force ---- */

/* FLOPs of layers [lo, hi). */
static double run_flops(const dp_model *m, int lo, int hi)
{
    double f = 0.0;
    for (int i = lo; i < hi; i++)
        f += m->layers[i].ops->flops(&m->layers[i]);
    return f;
}

static int run_has_params(const dp_model *m, int lo, int hi)
{
    for (int i = lo; i < hi; i++)
        if (m->layers[i].param_count > 0)
            return 1;
    return 0;
}

/* The least maximum stage FLOPs over every split of layers [lo, n) into `left` contiguous
 * stages each with a layer that has parameters, `worst` being the maximum so far; -1 if none. */
static double brute_best(const dp_model *m, int lo, int left, double worst)
{
    int n = m->n_layers;
    if (left == 1) {
        if (!run_has_params(m, lo, n))
            return -1.0;
        double f = run_flops(m, lo, n);
        return f > worst ? f : worst;
    }
    double best = -1.0;
    for (int hi = lo + 1; hi < n; hi++) {
        if (!run_has_params(m, lo, hi))
            continue;
        double f = run_flops(m, lo, hi);
        double r = brute_best(m, hi, left - 1, f > worst ? f : worst);
        if (r >= 0.0 && (best < 0.0 || r < best))
            best = r;
    }
    return best;
}

/* For models whose layers' FLOPs differ by orders of magnitude, pp with S = 2, 3, 4 stages and
 * hybrid with the same stages choose a valid split whose largest stage has the fewest FLOPs any
 * valid split can have. */
START_TEST(test_plan_balance)
{
    static const char *const specs[] = {
        "linear:512, relu, linear:8, relu, linear:8, relu, linear:10",
        "linear:8, relu, linear:8, relu, linear:512, relu, linear:10",
        "linear:16, relu, linear:300, gelu, linear:300, tanh, linear:16, relu, linear:10",
        "linear:64, linear:64, linear:64, linear:64, linear:64, linear:10",
        "relu, linear:200, tanh, linear:4, gelu, linear:900, linear:10, relu",
    };
    for (size_t k = 0; k < sizeof specs / sizeof *specs; k++) {
        dp_model m;
        parse(&m, specs[k], 256, 10);
        for (int S = 2; S <= 4; S++) {
            double want = brute_best(&m, 0, S, 0.0);
            ck_assert_msg(want > 0.0, "\"%s\": no valid split into %d stages", specs[k], S);
            for (int hybrid = 0; hybrid <= 1; hybrid++) {
                dp_plan p;
                dp_plan_request req = request(hybrid ? DP_STRATEGY_HYBRID : DP_STRATEGY_PP, S, 0,
                                              DP_SCHEDULE_1F1B);
                make(&p, &req, hybrid ? 2 * S : S, &m, 1024);
                ck_assert_int_eq(p.stages, S);
                check_stages(&p, &m);
                double got = 0.0;
                char split[128] = "";
                for (int s = 0; s < S; s++) {
                    double f = run_flops(&m, p.first_layer[s], p.first_layer[s + 1]);
                    got = f > got ? f : got;
                    size_t used = strlen(split);
                    snprintf(split + used, sizeof split - used, " %d", p.first_layer[s]);
                }
                ck_assert_msg(got == want,
                              "\"%s\", %s, %d stages: split at%s has a stage of %.0f FLOPs, "
                              "the best split's largest is %.0f",
                              specs[k], hybrid ? "hybrid" : "pp", S, split, got, want);
            }
        }
        dp_model_free(&m);
    }
}
END_TEST

/* ---- refusals ---- */

/* dp_plan_make must fail with a message containing each of the NULL-terminated substrings. */
static void refused(const dp_plan_request *req, int devices, const dp_model *m, int batch,
                    const char *const *needles)
{
    dp_plan p;
    dp_err err;
    err.msg[0] = '\0';
    int rc = dp_plan_make(&p, req, devices, m, batch, NULL, &err);
    ck_assert_msg(rc == -1, "%s (stages %d, micro %d) on %d devices, batch %d: rc %d, want -1",
                  dp_strategy_name(req->strategy), req->stages, req->micro, devices, batch, rc);
    for (int i = 0; needles[i]; i++)
        ck_assert_msg(strstr(err.msg, needles[i]),
                      "%s on %d devices, batch %d: \"%s\" lacks \"%s\"",
                      dp_strategy_name(req->strategy), devices, batch, err.msg, needles[i]);
}

/* More stages than layers with parameters; pp with more stages than devices; hybrid
 * with devices not a multiple of the stages; batches smaller than replicas x micro-batches. */
START_TEST(test_plan_refusals)
{
    dp_model m;
    parse(&m, SPEC, SPEC_IN, SPEC_CLASSES); /* 4 layers with parameters */

    dp_plan_request req = request(DP_STRATEGY_PP, 5, 0, DP_SCHEDULE_1F1B);
    refused(&req, 5, &m, BATCH,
            (const char *const[]){ "5 stages", "only 4 layers with parameters", "at most 4",
                                   NULL });
    /* without --stages, pp takes as many stages as the model allows */
    req = request(DP_STRATEGY_PP, 0, 0, DP_SCHEDULE_1F1B);
    dp_plan p;
    dp_err err;
    ck_assert_msg(dp_plan_make(&p, &req, 5, &m, BATCH, NULL, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(p.stages, 4);
    ck_assert_int_eq(p.workers, 4);
    req = request(DP_STRATEGY_HYBRID, 5, 0, DP_SCHEDULE_GPIPE);
    refused(&req, 10, &m, BATCH,
            (const char *const[]){ "5 stages", "4 layers with parameters", NULL });

    req = request(DP_STRATEGY_PP, 3, 0, DP_SCHEDULE_1F1B);
    refused(&req, 2, &m, BATCH,
            (const char *const[]){ "one stage per device", "3 stages need 3 devices", NULL });

    req = request(DP_STRATEGY_HYBRID, 4, 0, DP_SCHEDULE_1F1B);
    refused(&req, 6, &m, BATCH,
            (const char *const[]){ "multiple of the stages", "(6)", "(4)", "--stages", NULL });
    req = request(DP_STRATEGY_HYBRID, 0, 0, DP_SCHEDULE_1F1B); /* default 2 stages, 3 devices */
    refused(&req, 3, &m, BATCH, (const char *const[]){ "multiple of the stages", NULL });

    req = request(DP_STRATEGY_DP, 0, 0, DP_SCHEDULE_1F1B);
    refused(&req, 4, &m, 3,
            (const char *const[]){ "batch of 3", "4 replicas", "at least 4", NULL });
    req = request(DP_STRATEGY_PP, 2, 8, DP_SCHEDULE_1F1B);
    refused(&req, 2, &m, 7,
            (const char *const[]){ "batch of 7", "8 micro-batches", "at least 8", NULL });
    req = request(DP_STRATEGY_HYBRID, 2, 0, DP_SCHEDULE_GPIPE); /* 2 x 4 micro */
    refused(&req, 4, &m, 7, (const char *const[]){ "batch of 7", "at least 8", NULL });
    dp_model_free(&m);
}
END_TEST

/* ---- the row split ---- */

/* For rows 0..50 and parts 1..9: the parts sum to rows, differ by at most one, the longer ones
 * first; starts are prefix sums ending at rows; fewer rows than parts leaves zeros at the end. */
START_TEST(test_split_rows)
{
    for (int rows = 0; rows <= 50; rows++)
        for (int parts = 1; parts <= 9; parts++) {
            int sum = 0, lo = rows, hi = 0;
            for (int i = 0; i < parts; i++) {
                int n = dp_split_rows(rows, parts, i);
                int start = dp_split_start(rows, parts, i);
                ck_assert_msg(start == sum, "rows %d parts %d: part %d starts at %d, want %d",
                              rows, parts, i, start, sum);
                ck_assert_msg(n >= 0, "rows %d parts %d: part %d has %d rows", rows, parts, i, n);
                if (i > 0)
                    ck_assert_msg(n <= dp_split_rows(rows, parts, i - 1),
                                  "rows %d parts %d: part %d (%d) longer than part %d (%d)", rows,
                                  parts, i, n, i - 1, dp_split_rows(rows, parts, i - 1));
                if (rows < parts)
                    ck_assert_msg(n == (i < rows), "rows %d parts %d: part %d has %d rows, want %d",
                                  rows, parts, i, n, i < rows);
                sum += n;
                lo = n < lo ? n : lo;
                hi = n > hi ? n : hi;
            }
            ck_assert_msg(sum == rows, "rows %d parts %d: parts sum to %d", rows, parts, sum);
            ck_assert_msg(hi - lo <= 1, "rows %d parts %d: parts from %d to %d rows", rows, parts,
                          lo, hi);
            ck_assert_msg(dp_split_start(rows, parts, parts) == rows,
                          "rows %d parts %d: the end is at %d", rows, parts,
                          dp_split_start(rows, parts, parts));
        }
}
END_TEST

/* ---- descriptions and names ---- */

/* dp_plan_describe on the plans of each strategy. */
START_TEST(test_plan_describe)
{
    dp_model m;
    parse(&m, SPEC, SPEC_IN, SPEC_CLASSES);
    static const struct {
        dp_strategy strategy;
        int stages;
        dp_schedule sched;
        const char *want;
    } cases[] = {
        { DP_STRATEGY_SINGLE, 0, DP_SCHEDULE_1F1B, "single" },
        { DP_STRATEGY_DP, 0, DP_SCHEDULE_1F1B, "DP x4" },
        { DP_STRATEGY_PP, 0, DP_SCHEDULE_1F1B, "PP 4 stages, 8 micro, 1F1B" },
        { DP_STRATEGY_PP, 0, DP_SCHEDULE_GPIPE, "PP 4 stages, 8 micro, GPipe" },
        { DP_STRATEGY_HYBRID, 2, DP_SCHEDULE_GPIPE, "DP2 x PP2, 4 micro, GPipe" },
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        dp_plan p;
        dp_plan_request req = request(cases[k].strategy, cases[k].stages, 0, cases[k].sched);
        make(&p, &req, 4, &m, BATCH);
        char buf[128];
        memset(buf, 'x', sizeof buf);
        dp_plan_describe(&p, buf, sizeof buf);
        ck_assert_msg(!strcmp(buf, cases[k].want), "describe: \"%s\", want \"%s\"", buf,
                      cases[k].want);
    }
    dp_model_free(&m);
}
END_TEST

/* dp_plan_cut_reason: the default pp on more devices than layers with parameters says why
 * it takes fewer stages, and agrees with the plan made; a plan that uses every device it asks
 * for, or stages the user set, have no reason to give. */
START_TEST(test_plan_cut_reason)
{
    dp_model m;
    parse(&m, "linear:16, relu, linear:10", SPEC_IN, SPEC_CLASSES);
    char buf[160];
    dp_plan_request pp = request(DP_STRATEGY_PP, 0, 0, DP_SCHEDULE_1F1B);
    ck_assert(dp_plan_cut_reason(&pp, 4, &m, buf, sizeof buf));
    ck_assert_str_eq(buf, "pp: 2 stages, not 4: the model has 2 layers with parameters and a "
                          "stage needs one, so 2 devices stay unused");
    dp_plan p;
    make(&p, &pp, 4, &m, BATCH);
    ck_assert_int_eq(p.stages, 2);
    ck_assert(dp_plan_cut_reason(&pp, 3, &m, buf, sizeof buf));
    ck_assert_msg(strstr(buf, "so 1 device stays unused"), "%s", buf);
    ck_assert(!dp_plan_cut_reason(&pp, 2, &m, buf, sizeof buf));
    dp_plan_request two = request(DP_STRATEGY_PP, 2, 0, DP_SCHEDULE_1F1B);
    ck_assert(!dp_plan_cut_reason(&two, 4, &m, buf, sizeof buf));
    dp_plan_request dp = request(DP_STRATEGY_DP, 0, 0, DP_SCHEDULE_1F1B);
    ck_assert(!dp_plan_cut_reason(&dp, 4, &m, buf, sizeof buf));
    dp_model_free(&m);
}
END_TEST

/* Every strategy's name parses back to it; other names are -1. */
START_TEST(test_strategy_names)
{
    static const char *const names[] = { "single", "dp", "pp", "hybrid" };
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(!strcmp(dp_strategy_name(i), names[i]), "name %d: \"%s\", want \"%s\"", i,
                      dp_strategy_name(i), names[i]);
        ck_assert_msg(dp_strategy_parse(dp_strategy_name(i)) == i, "parse(\"%s\") = %d, want %d",
                      dp_strategy_name(i), dp_strategy_parse(dp_strategy_name(i)), i);
    }
    ck_assert_int_eq(DP_STRATEGY_SINGLE, 0);
    ck_assert_int_eq(DP_STRATEGY_HYBRID, 3);
    static const char *const bad[] = { "", "unknown", "d", "hybrid2", "pp ", "single-device" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(dp_strategy_parse(bad[i]) == -1, "parse(\"%s\") = %d, want -1", bad[i],
                      dp_strategy_parse(bad[i]));
    ck_assert_str_eq(dp_schedule_name(DP_SCHEDULE_GPIPE), "gpipe");
    ck_assert_str_eq(dp_schedule_name(DP_SCHEDULE_1F1B), "1f1b");
}
END_TEST

/* ---- schedules ---- */

#define MAX_S 8
#define MAX_M 16

static const char *sched_label(dp_schedule kind)
{
    return kind == DP_SCHEDULE_GPIPE ? "GPipe" : "1F1B";
}

/* For S 1..8, s < S, M 1..16, both schedules: 2M ops, each micro-batch forward once and backward
 * once, F(j) before B(j), forwards and backwards each in increasing order; in flight min(S - s, M)
 * for 1F1B and M for GPipe. */
START_TEST(test_schedule_ops)
{
    dp_sched_op ops[2 * MAX_M + 1]; /* one more, to see a write past the end */
    for (int kind = DP_SCHEDULE_GPIPE; kind <= DP_SCHEDULE_1F1B; kind++)
        for (int S = 1; S <= MAX_S; S++)
            for (int s = 0; s < S; s++)
                for (int M = 1; M <= MAX_M; M++) {
                    for (int i = 0; i <= 2 * MAX_M; i++)
                        ops[i] = (dp_sched_op){ '?', -1 };
                    dp_schedule_ops((dp_schedule)kind, S, s, M, ops);
                    int f_at[MAX_M], b_at[MAX_M], next_f = 0, next_b = 0;
                    for (int i = 0; i < 2 * M; i++) {
                        char k = ops[i].kind;
                        int j = ops[i].micro;
                        ck_assert_msg((k == 'F' || k == 'B') && j >= 0 && j < M,
                                      "%s S %d s %d M %d: op %d is %c%d", sched_label(kind), S, s,
                                      M, i, k, j);
                        if (k == 'F') {
                            ck_assert_msg(j == next_f, "%s S %d s %d M %d: op %d is F%d, want F%d",
                                          sched_label(kind), S, s, M, i, j, next_f);
                            f_at[next_f++] = i;
                        } else {
                            ck_assert_msg(j == next_b, "%s S %d s %d M %d: op %d is B%d, want B%d",
                                          sched_label(kind), S, s, M, i, j, next_b);
                            b_at[next_b++] = i;
                        }
                    }
                    ck_assert_msg(next_f == M && next_b == M, "%s S %d s %d M %d: %d F, %d B",
                                  sched_label(kind), S, s, M, next_f, next_b);
                    for (int j = 0; j < M; j++)
                        ck_assert_msg(f_at[j] < b_at[j],
                                      "%s S %d s %d M %d: B%d at %d before F%d at %d",
                                      sched_label(kind), S, s, M, j, b_at[j], j, f_at[j]);
                    ck_assert_msg(ops[2 * M].kind == '?',
                                  "%s S %d s %d M %d: wrote past 2M ops", sched_label(kind), S, s,
                                  M);
                    int want = kind == DP_SCHEDULE_GPIPE ? M : (S - s < M ? S - s : M);
                    int got = dp_schedule_in_flight(ops, 2 * M);
                    ck_assert_msg(got == want, "%s S %d s %d M %d: %d in flight, want %d",
                                  sched_label(kind), S, s, M, got, want);
                }
}
END_TEST

static void ops_string(const dp_sched_op *ops, int n, char *buf, size_t size)
{
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t used = strlen(buf);
        snprintf(buf + used, size - used, "%s%c%d", i ? " " : "", ops[i].kind, ops[i].micro);
    }
}

/* Op lists written out by hand: 1F1B with S = 3, M = 4 on each stage, and GPipe. */
START_TEST(test_schedule_by_hand)
{
    static const struct {
        dp_schedule kind;
        int S, s, M;
        const char *want;
    } cases[] = {
        { DP_SCHEDULE_1F1B, 3, 0, 4, "F0 F1 F2 B0 F3 B1 B2 B3" },
        { DP_SCHEDULE_1F1B, 3, 1, 4, "F0 F1 B0 F2 B1 F3 B2 B3" },
        { DP_SCHEDULE_1F1B, 3, 2, 4, "F0 B0 F1 B1 F2 B2 F3 B3" },
        { DP_SCHEDULE_1F1B, 4, 0, 2, "F0 F1 B0 B1" },
        { DP_SCHEDULE_1F1B, 1, 0, 3, "F0 B0 F1 B1 F2 B2" },
        { DP_SCHEDULE_GPIPE, 3, 1, 3, "F0 F1 F2 B0 B1 B2" },
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        dp_sched_op ops[2 * MAX_M];
        dp_schedule_ops(cases[k].kind, cases[k].S, cases[k].s, cases[k].M, ops);
        char buf[256];
        ops_string(ops, 2 * cases[k].M, buf, sizeof buf);
        ck_assert_msg(!strcmp(buf, cases[k].want), "%s S %d s %d M %d: \"%s\", want \"%s\"",
                      sched_label(cases[k].kind), cases[k].S, cases[k].s, cases[k].M, buf,
                      cases[k].want);
    }
}
END_TEST

/* ---- deadlock simulation ---- */

#define LINK_SLOTS 2

/* A one-way FIFO of micro-batch numbers holding at most LINK_SLOTS unreceived messages. */
typedef struct sim_link {
    int msgs[LINK_SLOTS];
    int head, count;
} sim_link;

static int sim_full(const sim_link *l)
{
    return l->count == LINK_SLOTS;
}

static void sim_push(sim_link *l, int j)
{
    l->msgs[(l->head + l->count) % LINK_SLOTS] = j;
    l->count++;
}

static int sim_pop(sim_link *l)
{
    int j = l->msgs[l->head];
    l->head = (l->head + 1) % LINK_SLOTS;
    l->count--;
    return j;
}

/* One stage: its ops, the next one, and whether that op has received its input already (an op
 * receives, computes, then sends; the send may block after the receive). */
typedef struct sim_stage {
    dp_sched_op ops[2 * MAX_M];
    int next;
    int received;
} sim_stage;

/* Writes stage s's op list, as dp_schedule_ops does. */
typedef void (*ops_fn)(dp_schedule kind, int S, int s, int M, dp_sched_op *ops);

/* Runs S stages of the op lists make_ops gives for M micro-batches. fwd[s] carries activations
 * from stage s to s + 1, bwd[s] gradients from stage s + 1 to s. Returns 1 when every stage
 * finishes, 0 at a state where every unfinished stage is blocked (a deadlock); why says where
 * each stage stands then. */
static int simulate(ops_fn make_ops, dp_schedule kind, int S, int M, char *why, size_t why_size)
{
    sim_stage st[MAX_S];
    sim_link fwd[MAX_S], bwd[MAX_S];
    memset(fwd, 0, sizeof fwd);
    memset(bwd, 0, sizeof bwd);
    for (int s = 0; s < S; s++) {
        make_ops(kind, S, s, M, st[s].ops);
        st[s].next = 0;
        st[s].received = 0;
    }
    for (;;) {
        int done = 0, moved = 0;
        for (int s = 0; s < S; s++) {
            sim_stage *g = &st[s];
            if (g->next == 2 * M) {
                done++;
                continue;
            }
            dp_sched_op op = g->ops[g->next];
            int forward = op.kind == 'F';
            /* where this op receives from and sends to (NULL at the ends of the pipeline) */
            sim_link *in = forward ? (s > 0 ? &fwd[s - 1] : NULL) : (s < S - 1 ? &bwd[s] : NULL);
            sim_link *out = forward ? (s < S - 1 ? &fwd[s] : NULL) : (s > 0 ? &bwd[s - 1] : NULL);
            if (!g->received) {
                if (in) {
                    if (!in->count)
                        continue; /* waits for its input */
                    int j = sim_pop(in);
                    ck_assert_msg(j == op.micro,
                                  "%s S %d M %d: stage %d at %c%d received micro-batch %d",
                                  sched_label(kind), S, M, s, op.kind, op.micro, j);
                }
                g->received = 1;
                moved = 1;
            }
            if (out) {
                if (sim_full(out))
                    continue; /* waits for a free slot */
                sim_push(out, op.micro);
            }
            g->received = 0;
            g->next++;
            moved = 1;
        }
        if (done == S)
            break;
        if (!moved) {
            size_t used = 0;
            why[0] = '\0';
            for (int s = 0; s < S && used < why_size; s++) {
                const dp_sched_op *op = &st[s].ops[st[s].next];
                if (st[s].next == 2 * M)
                    snprintf(why + used, why_size - used, " [stage %d done]", s);
                else
                    snprintf(why + used, why_size - used, " [stage %d at %c%d, %s]", s, op->kind,
                             op->micro, st[s].received ? "sending" : "receiving");
                used = strlen(why);
            }
            return 0;
        }
    }
    for (int s = 0; s + 1 < S; s++)
        ck_assert_msg(!fwd[s].count && !bwd[s].count,
                      "%s S %d M %d: messages left between stages %d and %d", sched_label(kind), S,
                      M, s, s + 1);
    return 1;
}

/* S stages joined by links of 2 slots, walking their op lists, finish for S 1..8, M 1..16 and
 * both schedules: no state leaves every unfinished stage blocked. */
START_TEST(test_schedule_no_deadlock)
{
    for (int kind = DP_SCHEDULE_GPIPE; kind <= DP_SCHEDULE_1F1B; kind++)
        for (int S = 1; S <= MAX_S; S++)
            for (int M = 1; M <= MAX_M; M++) {
                char why[512];
                ck_assert_msg(simulate(dp_schedule_ops, (dp_schedule)kind, S, M, why, sizeof why),
                              "%s S %d M %d deadlocks:%s", sched_label(kind), S, M, why);
            }
}
END_TEST

/* Not a real schedule: the last stage runs every F before any B (GPipe) while the others
 * alternate F(j) B(j). Stage 0 then waits for B0 before sending F1, which the last stage needs
 * before it runs B0: a deadlock the simulation must report. */
static void mismatched_ops(dp_schedule kind, int S, int s, int M, dp_sched_op *ops)
{
    if (s == S - 1) {
        dp_schedule_ops(DP_SCHEDULE_GPIPE, S, s, M, ops);
        return;
    }
    for (int j = 0; j < M; j++) {
        ops[2 * j] = (dp_sched_op){ 'F', j };
        ops[2 * j + 1] = (dp_sched_op){ 'B', j };
    }
}

/* The simulation can fail: it reports the deadlock of mismatched op lists (S 2..8, M 2..16),
 * and finishes them when there is nothing to wait for (M = 1). */
START_TEST(test_simulation_detects_deadlock)
{
    for (int S = 2; S <= MAX_S; S++)
        for (int M = 1; M <= MAX_M; M++) {
            char why[512];
            int finished = simulate(mismatched_ops, DP_SCHEDULE_1F1B, S, M, why, sizeof why);
            ck_assert_msg(finished == (M == 1), "mismatched S %d M %d: %s, want %s", S, M,
                          finished ? "finished" : "deadlock", M == 1 ? "finished" : "deadlock");
        }
}
END_TEST

/* Stages balanced by measured costs, not FLOPs: four equal linear layers split 2 + 2 by FLOPs,
 * but when the last one costs as much as the other three together, 3 + 1. And the profile
 * measures every layer on a CPU device: a time for each, more than 0 for those with weights. */
START_TEST(test_balance_by_cost)
{
    dp_model m;
    parse(&m, "linear:32, linear:32, linear:32, linear:32", 32, 32);
    dp_plan_request req = request(DP_STRATEGY_PP, 2, 2, DP_SCHEDULE_1F1B);
    dp_plan p;
    dp_err err;
    ck_assert_msg(dp_plan_make(&p, &req, 2, &m, BATCH, NULL, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(p.first_layer[1], 2);
    const double cost[4] = { 1.0, 1.0, 1.0, 3.0 };
    ck_assert_msg(dp_plan_make(&p, &req, 2, &m, BATCH, cost, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(p.first_layer[1], 3);
    dp_model_free(&m);

    dp_device dev;
    ck_assert_msg(dp_cpu_device_init(&dev, 0, 1, &err) == 0, "%s", err.msg);
    parse(&m, "linear:64, relu, dropout:10, linear:10", 20, 10);
    double seconds[4] = { -1, -1, -1, -1 };
    ck_assert_msg(dp_stage_profile(&m, &dev, 16, seconds, &err) == 0, "%s", err.msg);
    for (int i = 0; i < 4; i++)
        ck_assert_msg(seconds[i] >= 0.0, "layer %d: %g s", i, seconds[i]);
    ck_assert_msg(seconds[0] > 0.0 && seconds[3] > 0.0, "%g, %g", seconds[0], seconds[3]);
    dp_model_free(&m);
    dp_cpu_device_destroy(&dev);
}
END_TEST

Suite *plan_suite(void)
{
    Suite *s = suite_create("plan");
    TCase *tc = tcase_create("plan");
    tcase_add_test(tc, test_plan_single);
    tcase_add_test(tc, test_plan_dp);
    tcase_add_test(tc, test_plan_pp);
    tcase_add_test(tc, test_plan_hybrid);
    tcase_add_test(tc, test_plan_balance);
    tcase_add_test(tc, test_plan_refusals);
    tcase_add_test(tc, test_split_rows);
    tcase_add_test(tc, test_plan_describe);
    tcase_add_test(tc, test_plan_cut_reason);
    tcase_add_test(tc, test_strategy_names);
    suite_add_tcase(s, tc);
    TCase *ts = tcase_create("schedule");
    tcase_add_test(ts, test_schedule_ops);
    tcase_add_test(ts, test_schedule_by_hand);
    tcase_add_test(ts, test_balance_by_cost);
    tcase_add_test(ts, test_schedule_no_deadlock);
    tcase_add_test(ts, test_simulation_detects_deadlock);
    suite_add_tcase(s, ts);
    return s;
}
