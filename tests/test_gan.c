/* test_gan.c -- a GAN's pieces (engine/gan.h): the two layer lists as one model, the plan's cut
 * between them, the noise, and the step's program on a team of workers: D's update leaves G's
 * parameters bit for bit, G's update leaves D's parameters and optimizer state, under single,
 * dp and pp. */
#include "tests/unit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/backend.h"
#include "engine/gan.h"
#include "engine/plan.h"
#include "engine/worker.h"

#define LATENT 4
#define ROWS 6

static const dp_shape latent = { 1, { LATENT } };
static const dp_shape image = { 3, { 1, 2, 2 } };

/* G: 4 -> 2x2 image (with batch normalisation, whose buffers only G's first pass moves);
 * D: image -> one logit. */
static void tiny_gan(dp_model *gan, dp_model *gen, dp_model *disc)
{
    dp_err err;
    ck_assert_msg(dp_model_parse_gan(gan, gen, disc, "linear:6, bn, relu, linear:4, tanh, "
                                                     "unflatten:1:2:2",
                                     "flatten, linear:5, leakyrelu:0.2, linear:1", latent, image,
                                     &err) == 0,
                  "%s", err.msg);
}

START_TEST(test_parse)
{
    dp_model gan, gen, disc;
    tiny_gan(&gan, &gen, &disc);
    ck_assert_int_eq(gan.gan_split, gen.n_layers);
    ck_assert_int_eq(gan.n_layers, gen.n_layers + disc.n_layers);
    ck_assert_uint_eq(gan.n_params, gen.n_params + disc.n_params);
    ck_assert_int_eq(gan.layers[gan.gan_split].in, 4);
    ck_assert_ptr_eq(gan.objective, &dp_objective_gan);
    /* D's layers sit after G's in the flat vector, in the same order as D alone */
    ck_assert_uint_eq(gan.layers[gan.gan_split].param_offset, gen.n_params);
    dp_model_free(&gan), dp_model_free(&gen), dp_model_free(&disc);

    dp_err err;
    ck_assert_int_lt(dp_model_parse_gan(&gan, &gen, &disc, "linear:4, tanh", "flatten, linear:1",
                                        latent, image, &err), 0);
    ck_assert_msg(strstr(err.msg, "unflatten:1:2:2"), "%s", err.msg);
    ck_assert_int_lt(dp_model_parse_gan(&gan, &gen, &disc, "linear:4, unflatten:1:2:2",
                                        "flatten, linear:2", latent, image, &err), 0);
    ck_assert_msg(strstr(err.msg, "discriminator"), "%s", err.msg);
}
END_TEST

/* A pipeline never puts G's and D's layers on one stage; too many stages for that are refused. */
START_TEST(test_plan_cuts_between)
{
    dp_model gan, gen, disc;
    tiny_gan(&gan, &gen, &disc);
    dp_err err;
    for (int stages = 2; stages <= 4; stages++) {
        dp_plan p;
        dp_plan_request req = { DP_STRATEGY_PP, stages, 1, DP_SCHEDULE_1F1B };
        ck_assert_msg(dp_plan_make(&p, &req, stages, &gan, ROWS, NULL, &err) == 0, "%s",
                      err.msg);
        bool cut = false;
        for (int s = 1; s < stages; s++)
            cut |= p.first_layer[s] == gan.gan_split;
        ck_assert_msg(cut, "%d stages: no cut at D's first layer", stages);
    }
    /* G has 3 layers with parameters (linear, bn, linear), D 2: 5 stages at most */
    dp_plan p;
    dp_plan_request five = { DP_STRATEGY_PP, 5, 1, DP_SCHEDULE_1F1B };
    ck_assert_int_eq(dp_plan_make(&p, &five, 5, &gan, ROWS, NULL, &err), 0);
    dp_model_free(&gan), dp_model_free(&gen), dp_model_free(&disc);

    /* a G of one layer with parameters and a D of one: 3 stages cannot be cut */
    dp_err e2;
    ck_assert_int_eq(dp_model_parse_gan(&gan, &gen, &disc, "linear:4, unflatten:1:2:2",
                                        "flatten, linear:1", latent, image, &e2), 0);
    dp_plan_request three = { DP_STRATEGY_PP, 3, 1, DP_SCHEDULE_1F1B };
    ck_assert_int_lt(dp_plan_make(&p, &three, 3, &gan, ROWS, NULL, &err), 0);
    ck_assert_msg(strstr(err.msg, "stages"), "%s", err.msg);
    dp_model_free(&gan), dp_model_free(&gen), dp_model_free(&disc);
}
END_TEST

/* The noise: Box-Muller of the documented hash, computed here on its own, and the same for a
 * row whether it is drawn alone or in a block (as strategies cut the batch). */
START_TEST(test_noise)
{
    dp_noise_args a = { 7, DP_NOISE_TRAIN, 3, 10 };
    for (uint64_t r = 0; r < 4; r++)
        for (uint64_t k = 0; k < 5; k++) {
            uint64_t h = dp_mix64(7 ^ dp_mix64(3 * 0x9e3779b97f4a7c15ull + DP_NOISE_TRAIN));
            uint64_t b1 = dp_mix64(h ^ dp_mix64((10 + r) * 0xc2b2ae3d27d4eb4full + 2 * k));
            uint64_t b2 = dp_mix64(h ^ dp_mix64((10 + r) * 0xc2b2ae3d27d4eb4full + 2 * k + 1));
            double u1 = ((double)(b1 >> 11) + 1.0) / 9007199254740992.0;
            double u2 = (double)(b2 >> 11) / 9007199254740992.0;
            float want = (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
            ck_assert_float_eq(dp_noise_value(a, r, k), want);
        }
    dp_device dev;
    dp_err err;
    ck_assert_msg(dp_cpu_device_init(&dev, 0, 1, &err) == 0, "%s", err.msg);
    float whole[8 * 3], part[5 * 3];
    dev.be->noise(&dev, whole, 8, 3, (dp_noise_args){ 1, DP_NOISE_FIXED, 0, 0 });
    dev.be->noise(&dev, part, 5, 3, (dp_noise_args){ 1, DP_NOISE_FIXED, 0, 3 });
    ck_assert_mem_eq(part, whole + 3 * 3, sizeof part);
    /* and another purpose, step or seed draws other values */
    float other[8 * 3];
    dev.be->noise(&dev, other, 8, 3, (dp_noise_args){ 1, DP_NOISE_EVAL, 0, 0 });
    ck_assert_int_ne(memcmp(other, whole, sizeof other), 0);
    double sum = 0, squares = 0;
    float many[1000 * 10];
    dev.be->noise(&dev, many, 1000, 10, (dp_noise_args){ 5, DP_NOISE_TRAIN, 1, 0 });
    for (int i = 0; i < 10000; i++)
        sum += many[i], squares += (double)many[i] * many[i];
    ck_assert_msg(fabs(sum / 10000) < 0.04 && fabs(squares / 10000 - 1) < 0.06,
                  "mean %g, variance %g", sum / 10000, squares / 10000);
    dp_cpu_device_destroy(&dev);
}
END_TEST

/* Whether a and b hold the same trained parameters of model m (its buffers may differ),
 * bit for bit. */
static bool same_parameters(const dp_model *m, const float *a, const float *b)
{
    int n = dp_model_tensors(m, NULL);
    dp_model_tensor *t = calloc((size_t)n, sizeof *t);
    dp_model_tensors(m, t);
    bool same = true;
    for (int i = 0; i < n; i++)
        if (!t[i].info.buffer)
            same &= memcmp(a + t[i].info.offset, b + t[i].info.offset, t[i].info.count * 4) == 0;
    free(t);
    return same;
}

/* Runs a GAN step's program on a team of `plan`, checking after D's update that G's
 * parameters are bit for bit what they were, and after G's that D's parameters and optimizer
 * state are bit for bit what D's update left. */
static void check_program(dp_strategy strategy, int devices)
{
    dp_model gan, gen, disc;
    tiny_gan(&gan, &gen, &disc);
    dp_err err;
    dp_plan plan;
    dp_plan_request req = { strategy, strategy == DP_STRATEGY_PP ? 2 : 0, 1, DP_SCHEDULE_1F1B };
    ck_assert_msg(dp_plan_make(&plan, &req, devices, &gan, ROWS, NULL, &err) == 0, "%s",
                  err.msg);
    dp_device dev[2];
    for (int i = 0; i < devices; i++)
        ck_assert_msg(dp_cpu_device_init(&dev[i], i, 1, &err) == 0, "%s", err.msg);
    dp_optim_config oc = dp_optim_defaults();
    oc.kind = DP_OPTIM_ADAMW;
    oc.lr = 0.01;
    oc.weight_decay = 0;
    dp_team_config tc = { .model = &gan, .optim = &oc, .devices = dev, .batch = ROWS,
                          .bucket_mb = 25, .seed = 3 };
    dp_team *team = dp_team_start(&plan, &tc, &err);
    ck_assert_msg(team, "%s", err.msg);

    size_t n = gan.n_params, g = gen.n_params, slots = dp_optim_state_per_param(&oc);
    float *p0 = malloc(n * 4), *p1 = malloc(n * 4), *p2 = malloc(n * 4);
    float *s0 = calloc(n * slots, 4), *s1 = malloc(n * slots * 4), *s2 = malloc(n * slots * 4);
    float x[ROWS * 4];
    int32_t y[ROWS] = { 0 };
    for (int i = 0; i < ROWS * 4; i++)
        x[i] = (float)(i % 7) / 3.5f - 1.0f;
    dp_model_init_params(&gan, p0, 3);
    dp_team_run(team, &(dp_cmd){ .kind = DP_CMD_SCATTER, .params = p0, .state = s0 });
    /* two steps: at the second, G has gradients and optimizer state from the first that an
     * update of D's part must not apply to it, and D the same in G's update */
    double loss[2] = { 0 };
    for (long t = 1; t <= 2; t++) {
        dp_cmd step = { .kind = DP_CMD_STEP, .x = x, .y = y, .rows = ROWS, .batch_rows = ROWS,
                        .step = t, .pass = DP_PASS_D_REAL };
        dp_team_run(team, &step);
        step.pass = DP_PASS_D_FAKE;
        step.continues = true;
        dp_team_run(team, &step);
        dp_team_run(team, &(dp_cmd){ .kind = DP_CMD_UPDATE, .step = t, .clip_factor = 1,
                                     .t = t, .lr = oc.lr, .part = DP_PART_D, .mid_step = true,
                                     .replica_loss = loss });
        dp_team_run(team, &(dp_cmd){ .kind = DP_CMD_GATHER, .params = p1, .state = s1 });
        ck_assert(same_parameters(&gen, p1, p0)); /* G's parameters untouched (its running
                                                     statistics moved: the fakes' forward) */
        ck_assert_int_ne(memcmp(p1 + g, p0 + g, (n - g) * 4), 0); /* D moved */
        for (size_t k = 0; k < slots; k++)                       /* and G's state did not */
            ck_assert_mem_eq(s1 + k * n, s0 + k * n, g * 4);
        step.pass = DP_PASS_G;
        dp_team_run(team, &step);
        dp_team_run(team, &(dp_cmd){ .kind = DP_CMD_UPDATE, .step = t, .clip_factor = 1,
                                     .t = t, .lr = oc.lr, .part = DP_PART_G,
                                     .replica_loss = loss });
        dp_team_run(team, &(dp_cmd){ .kind = DP_CMD_GATHER, .params = p2, .state = s2 });
        /* D's parameters and state as its update left them (D has no buffers here) */
        ck_assert_mem_eq(p2 + g, p1 + g, (n - g) * 4);
        for (size_t k = 0; k < slots; k++)
            ck_assert_mem_eq(s2 + k * n + g, s1 + k * n + g, (n - g) * 4);
        ck_assert_int_ne(memcmp(p2, p1, g * 4), 0); /* G moved */
        memcpy(p0, p2, n * 4);
        memcpy(s0, s2, n * slots * 4);
    }
    /* G's batch normalisation counted a batch a step: the D_FAKE pass's, not the G pass's */
    dp_tensor_info t[DP_MAX_LAYER_TENSORS];
    const dp_layer *bn = &gan.layers[1];
    int k = bn->ops->tensors(bn, t);
    ck_assert_float_eq(p2[bn->param_offset + t[k - 1].offset], 2.0f);
    dp_team_stop(team);
    for (int i = 0; i < devices; i++)
        dp_cpu_device_destroy(&dev[i]);
    free(p0), free(p1), free(p2), free(s0), free(s1), free(s2);
    dp_model_free(&gan), dp_model_free(&gen), dp_model_free(&disc);
}

START_TEST(test_program_single)
{
    check_program(DP_STRATEGY_SINGLE, 1);
}
END_TEST

START_TEST(test_program_dp)
{
    check_program(DP_STRATEGY_DP, 2);
}
END_TEST

START_TEST(test_program_pp)
{
    check_program(DP_STRATEGY_PP, 2);
}
END_TEST

Suite *gan_suite(void)
{
    Suite *s = suite_create("gan");
    TCase *tc = tcase_create("gan");
    tcase_add_test(tc, test_parse);
    tcase_add_test(tc, test_plan_cuts_between);
    tcase_add_test(tc, test_noise);
    tcase_add_test(tc, test_program_single);
    tcase_add_test(tc, test_program_dp);
    tcase_add_test(tc, test_program_pp);
    suite_add_tcase(s, tc);
    return s;
}
