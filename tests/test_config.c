/* test_config.c -- INI keys into dp_config, FILE:LINE errors, --set overrides, origins,
 * printing and reading back, and dp_config_check. */
#include "tests/unit.h"

#include "dpmptop-config.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/configuration.h"
#include "engine/model.h"

/* ---- helpers ---- */

/* Loads text over fresh defaults as "t.ini"; must succeed. */
static void load_ok(dp_config *c, const char *text)
{
    dp_config_defaults(c);
    dp_err err = { "" };
    int rc = dp_config_load(c, NULL, text, "t.ini", &err);
    ck_assert_msg(rc == 0, "dp_config_load failed (%d): %s\n--- text ---\n%s", rc, err.msg, text);
}

/* Loading text as "t.ini" must fail with a message that starts "t.ini:LINE: " and holds each
 * of the NULL-terminated substrings. */
static void load_fail_at(const char *text, int line, ...)
{
    dp_config c;
    dp_config_defaults(&c);
    dp_err err = { "" };
    int rc = dp_config_load(&c, NULL, text, "t.ini", &err);
    ck_assert_msg(rc == -1, "dp_config_load returned %d on bad text:\n%s", rc, text);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "t.ini:%d: ", line);
    ck_assert_msg(strncmp(err.msg, prefix, strlen(prefix)) == 0,
                  "message \"%s\" does not start with \"%s\"", err.msg, prefix);
    va_list ap;
    va_start(ap, line);
    const char *want;
    while ((want = va_arg(ap, const char *)))
        ck_assert_msg(strstr(err.msg, want) != NULL, "message \"%s\" lacks \"%s\"", err.msg,
                      want);
    va_end(ap);
}

/* dp_config_print's output as a malloc'd string. */
static char *print_text(const dp_config *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert(f != NULL);
    dp_config_print(c, f);
    ck_assert(fclose(f) == 0);
    return buf;
}

/* ---- keys ---- */

static const char sample_ini[] =
    "# a comment\n"                   /* 1 */
    "[run]\n"                         /* 2 */
    "steps = 250\n"                   /* 3 */
    "seed = 77\n"                     /* 4 */
    "\n"                              /* 5 */
    "[data]\n"                        /* 6 */
    "kind = synthetic\n"              /* 7 */
    "batch = 32\n"                    /* 8 */
    "shuffle = false\n"               /* 9 */
    "; another comment\n"             /* 10 */
    "[model]\n"                       /* 11 */
    "layers = linear:16, tanh, linear:10\n" /* 12 */
    "[optim]\n"                       /* 13 */
    "kind = adamw\n"                  /* 14 */
    "lr = 0.003\n"                    /* 15 */
    "weight_decay = 0.01\n";          /* 16 */

/* Keys in INI text land in the struct; keys not given keep their defaults. */
START_TEST(test_config_string_keys)
{
    dp_config d, c;
    dp_config_defaults(&d);
    ck_assert_msg(d.data.shuffle && d.optim.kind == DP_OPTIM_SGD && d.steps == 0,
                  "unexpected defaults");
    load_ok(&c, sample_ini);
    ck_assert_int_eq(c.steps, 250);
    ck_assert_uint_eq(c.seed, 77);
    ck_assert_int_eq(c.data.kind, DP_DATA_SYNTHETIC);
    ck_assert_int_eq(c.data.batch, 32);
    ck_assert_msg(c.data.shuffle == false, "data.shuffle = false was not applied");
    ck_assert_str_eq(c.layers, "linear:16, tanh, linear:10");
    ck_assert_int_eq(c.optim.kind, DP_OPTIM_ADAMW);
    ck_assert_msg(c.optim.lr == 0.003, "optim.lr = %.17g", c.optim.lr);
    ck_assert_msg(c.optim.weight_decay == 0.01, "weight_decay = %.17g", c.optim.weight_decay);
    /* untouched keys keep their defaults */
    ck_assert_int_eq(c.epochs, d.epochs);
    ck_assert_str_eq(c.name, d.name);
    ck_assert_msg(c.optim.beta2 == d.optim.beta2, "beta2 changed");
    ck_assert_str_eq(c.devices, d.devices);
    /* every boolean spelling */
    static const char *const yes[] = { "true", "yes", "on", "1" };
    static const char *const no[] = { "false", "no", "off", "0" };
    for (int i = 0; i < 4; i++) {
        char text[64];
        snprintf(text, sizeof text, "[data]\nshuffle = %s\n", no[i]);
        load_ok(&c, text);
        ck_assert_msg(!c.data.shuffle, "shuffle = %s gave true", no[i]);
        snprintf(text, sizeof text, "[data]\nshuffle = %s\n", yes[i]);
        load_ok(&c, text);
        ck_assert_msg(c.data.shuffle, "shuffle = %s gave false", yes[i]);
    }
}
END_TEST

/* The same keys from a real file; origins name the file and line; a missing file fails. */
START_TEST(test_config_file_keys)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/run.ini", unit_tmpdir());
    FILE *f = fopen(path, "w");
    ck_assert(f != NULL);
    fputs(sample_ini, f);
    ck_assert(fclose(f) == 0);
    dp_config c;
    dp_config_defaults(&c);
    dp_err err = { "" };
    ck_assert_msg(dp_config_load(&c, path, NULL, NULL, &err) == 0, "load %s: %s", path,
                  err.msg);
    ck_assert_int_eq(c.steps, 250);
    ck_assert_int_eq(c.data.batch, 32);
    ck_assert_msg(c.optim.lr == 0.003, "optim.lr = %.17g", c.optim.lr);
    ck_assert_int_eq(c.optim.kind, DP_OPTIM_ADAMW);
    ck_assert_msg(!c.data.shuffle, "shuffle");
    ck_assert_str_eq(c.layers, "linear:16, tanh, linear:10");
    char want[4300];
    snprintf(want, sizeof want, "%s:15", path);
    ck_assert_str_eq(dp_config_origin(&c, "optim", "lr"), want);
    snprintf(want, sizeof want, "%s:9", path);
    ck_assert_str_eq(dp_config_origin(&c, "data", "shuffle"), want);

    /* an error in a file names the file and line */
    f = fopen(path, "w");
    ck_assert(f != NULL);
    fputs("[run]\nsteps = 3\n\n[optim]\nlr = fast\n", f);
    ck_assert(fclose(f) == 0);
    dp_config_defaults(&c);
    ck_assert_int_eq(dp_config_load(&c, path, NULL, NULL, &err), -1);
    snprintf(want, sizeof want, "%s:5: ", path);
    ck_assert_msg(strncmp(err.msg, want, strlen(want)) == 0, "message \"%s\" does not start "
                  "with \"%s\"", err.msg, want);

    char missing[4300];
    snprintf(missing, sizeof missing, "%s.absent", path);
    ck_assert_int_eq(dp_config_load(&c, missing, NULL, NULL, &err), -1);
    ck_assert_msg(strstr(err.msg, missing) && strstr(err.msg, "cannot open"), "message: %s",
                  err.msg);
}
END_TEST

/* ---- errors ---- */

/* An unknown section fails at its header, even when it has no keys. */
START_TEST(test_config_unknown_section)
{
    load_fail_at("[run]\nsteps = 1\n[bogus]\n", 3, "unknown section [bogus]", "run", "optim",
                 "dashboard", (char *)NULL);
    load_fail_at("[run]\nsteps = 1\n\n[bogus]\n[data]\nbatch = 8\n", 4, "[bogus]", (char *)NULL);
    load_fail_at("[bogus]\nx = 1\n", 1, "unknown section [bogus]", (char *)NULL);
    load_fail_at("# no section\nsteps = 1\n", 2, "\"steps\" comes before any [section]",
                 (char *)NULL);
}
END_TEST

/* optim.beta1 and beta2 are in [0, 1) as in PyTorch; eps must stay nonzero as a float;
 * string values must print back as one INI line. */
START_TEST(test_config_bad_ranges)
{
    load_fail_at("[optim]\nbeta1 = 1\n", 2, "beta1 = 1", "from 0 to 1 (excluded)", (char *)NULL);
    load_fail_at("[optim]\nbeta2 = 1.5\n", 2, "beta2 = 1.5", (char *)NULL);
    load_fail_at("[optim]\neps = 1e-300\n", 2, "eps = 1e-300", ">= 1e-30", (char *)NULL);
    dp_config c;
    dp_err err;
    dp_config_defaults(&c);
    ck_assert_msg(dp_config_set(&c, "run.name=a ;b", "--set", &err) == -1 &&
                      strstr(err.msg, "comment"),
                  "a value with \" ;\" was accepted: %s", err.msg);
    char long_path[300] = "data.path=/";
    memset(long_path + 11, 'p', 250);
    long_path[261] = '\0';
    ck_assert_msg(dp_config_set(&c, long_path, "--set", &err) == -1 &&
                      strstr(err.msg, "INI line"),
                  "a path too long for one INI line was accepted: %s", err.msg);
}
END_TEST

/* An unknown key in a known section fails listing that section's keys. */
START_TEST(test_config_unknown_key)
{
    load_fail_at("[data]\nbatch = 8\nbatchsize = 8\n", 3, "[data]", "\"batchsize\"", "kind",
                 "batch", "shuffle", "limit", (char *)NULL);
    load_fail_at("[optim]\nlearning_rate = 0.1\n", 2, "\"learning_rate\"", "lr", "momentum",
                 "weight_decay", (char *)NULL);
    /* a key of another section is unknown here */
    load_fail_at("[run]\nlr = 0.1\n", 2, "[run]", "\"lr\"", "steps", (char *)NULL);
}
END_TEST

/* data.batch: 0, letters, a fraction and too many are refused, saying what is accepted. */
START_TEST(test_config_bad_batch)
{
    load_fail_at("[data]\nbatch = 0\n", 2, "batch", "= 0", "whole number", (char *)NULL);
    load_fail_at("[data]\nbatch = abc\n", 2, "batch", "abc", "whole number", (char *)NULL);
    load_fail_at("[data]\nbatch = 2.5\n", 2, "batch", "whole number", (char *)NULL);
    load_fail_at("[data]\nbatch = -4\n", 2, "batch", (char *)NULL);
    load_fail_at("[data]\nbatch = 99999999999999999999\n", 2, "batch", (char *)NULL);
    load_fail_at("[data]\nbatch = 8x\n", 2, "batch", (char *)NULL);
    load_fail_at("[data]\nbatch =\n", 2, "batch", (char *)NULL);
}
END_TEST

/* optim.lr must be a number above 0. */
START_TEST(test_config_bad_lr)
{
    load_fail_at("[optim]\nlr = -1\n", 2, "lr", "-1", "> 0", (char *)NULL);
    load_fail_at("[optim]\nlr = 0\n", 2, "lr", "> 0", (char *)NULL);
    load_fail_at("[optim]\nlr = nan\n", 2, "lr", (char *)NULL);
    load_fail_at("[optim]\nlr = inf\n", 2, "lr", (char *)NULL);
    load_fail_at("[optim]\nlr = 0.1.2\n", 2, "lr", (char *)NULL);
    dp_config c;
    load_ok(&c, "[optim]\nlr = 1e-4\n");
    ck_assert_msg(c.optim.lr == 1e-4, "lr = %.17g", c.optim.lr);
}
END_TEST

/* An unknown optimizer lists the ones there are. */
START_TEST(test_config_bad_kind)
{
    load_fail_at("[optim]\nkind = adam\n", 2, "adam", "sgd", "adamw", (char *)NULL);
    load_fail_at("[data]\nkind = imagenet\n", 2, "imagenet", "fashion-mnist", "synthetic",
                 (char *)NULL);
    load_fail_at("[parallel]\nstrategy = zero\n", 2, "single", "dp", "pp", "hybrid",
                 (char *)NULL);
}
END_TEST

/* [model] objective: classify by default, named in a file or by --set, printed by
 * --print-config; an unknown one is refused with the list of known ones. */
START_TEST(test_config_objective)
{
    dp_config c;
    dp_config_defaults(&c);
    ck_assert_ptr_eq(dp_objectives[c.objective], dp_objective_default());
    ck_assert_str_eq(dp_objectives[c.objective]->name, "classify");
    load_ok(&c, "[model]\nobjective = classify\n");
    ck_assert_ptr_eq(dp_objectives[c.objective], &dp_objective_classify);
    ck_assert_str_eq(dp_config_origin(&c, "model", "objective"), "t.ini:2");
    dp_err err = { "" };
    ck_assert_msg(dp_config_set(&c, "model.objective=classify", "--set", &err) == 0, "%s",
                  err.msg);
    char *text = print_text(&c);
    ck_assert_msg(strstr(text, "\nobjective = classify\n") != NULL,
                  "--print-config lacks the objective:\n%s", text);
    free(text);
    load_ok(&c, "[model]\nobjective = gan\n");
    ck_assert_ptr_eq(dp_objectives[c.objective], &dp_objective_gan);
    load_fail_at("[model]\nobjective = bert\n", 2, "[model] objective = bert",
                 "expected one of classify, gan, mlm", (char *)NULL);
    ck_assert_int_eq(dp_config_set(&c, "model.objective=bert", "--set", &err), -1);
    ck_assert_msg(strstr(err.msg, "expected one of classify, gan, mlm") != NULL, "%s", err.msg);
    /* a masked language model trains on text */
    dp_config_defaults(&c);
    load_ok(&c, "[model]\nobjective = mlm\n");
    ck_assert_ptr_eq(dp_objectives[c.objective], &dp_objective_mlm);
    ck_assert_int_eq(dp_config_check(&c, &err), -1);
    ck_assert_msg(strstr(err.msg, "set [data] kind = text"), "%s", err.msg);
    load_ok(&c, "[data]\nkind = text\npath = x\n");
    ck_assert_msg(dp_config_check(&c, &err) == 0, "%s", err.msg);
    dp_config_defaults(&c);
    /* a GAN needs both of its lists, and they need it */
    load_ok(&c, "[model]\nobjective = gan\n");
    ck_assert_int_eq(dp_config_check(&c, &err), -1);
    ck_assert_msg(strstr(err.msg, "needs both [model] generator"), "%s", err.msg);
    dp_config_defaults(&c);
    load_ok(&c, "[model]\ngenerator = linear:4\n");
    ck_assert_int_eq(dp_config_check(&c, &err), -1);
    ck_assert_msg(strstr(err.msg, "set [model] objective = gan"), "%s", err.msg);
}
END_TEST

/* [run] convolutions: the backend's library by default, or im2col (the engine's own kernels),
 * from a file or --set, printed by --print-config; another word (in another case too) is
 * refused with the two there are, and a refused --set leaves the value as it was. */
START_TEST(test_config_convolutions)
{
    dp_config c;
    dp_config_defaults(&c);
    ck_assert_int_eq(c.convolutions, DP_CONV_LIBRARY);
    load_ok(&c, "[run]\nconvolutions = im2col\n");
    ck_assert_int_eq(c.convolutions, DP_CONV_IM2COL);
    ck_assert_str_eq(dp_config_origin(&c, "run", "convolutions"), "t.ini:2");
    char *text = print_text(&c);
    ck_assert_msg(strstr(text, "\nconvolutions = im2col\n") != NULL,
                  "--print-config lacks the convolutions:\n%s", text);
    free(text);
    load_ok(&c, "[run]\nconvolutions = library\n");
    ck_assert_int_eq(c.convolutions, DP_CONV_LIBRARY);
    dp_err err = { "" };
    ck_assert_msg(dp_config_set(&c, "run.convolutions=im2col", "--set", &err) == 0, "%s",
                  err.msg);
    ck_assert_int_eq(c.convolutions, DP_CONV_IM2COL);
    ck_assert_str_eq(dp_config_origin(&c, "run", "convolutions"), "--set");
    static const char *const bad[] = { "onednn", "Library", "IM2COL", "" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char ini[64], set[64];
        snprintf(ini, sizeof ini, "[run]\nconvolutions = %s\n", bad[i]);
        load_fail_at(ini, 2, "[run] convolutions", "expected one of library, im2col",
                     (char *)NULL);
        snprintf(set, sizeof set, "run.convolutions=%s", bad[i]);
        ck_assert_msg(dp_config_set(&c, set, "--set", &err) == -1, "%s was accepted", set);
        ck_assert_msg(strncmp(err.msg, "--set", 5) == 0 &&
                          strstr(err.msg, "expected one of library, im2col"),
                      "%s: %s", set, err.msg);
        ck_assert_int_eq(c.convolutions, DP_CONV_IM2COL);
    }
}
END_TEST

/* A boolean that is not one is refused. */
START_TEST(test_config_bad_bool)
{
    load_fail_at("[data]\nshuffle = maybe\n", 2, "shuffle", "maybe", "true or false",
                 (char *)NULL);
    load_fail_at("[dashboard]\ncolor = TRUE!\n", 2, "color", (char *)NULL);
}
END_TEST

/* A line that is not "key = value" is refused at its line. */
START_TEST(test_config_not_key_value)
{
    load_fail_at("[run]\nsteps = 1\nthis line is not a pair\n", 3, "key = value", (char *)NULL);
    load_fail_at("[run]\n[data\n", 2, (char *)NULL);
}
END_TEST

/* With two bad lines, the first one is reported, whatever kinds of error they are. */
START_TEST(test_config_first_error_wins)
{
    load_fail_at("[data]\nbatch = 0\nshuffle = maybe\n", 2, "batch", (char *)NULL);
    load_fail_at("[data]\nbatch = 8\nnope = 1\n[optim]\nkind = adam\n", 3, "\"nope\"",
                 (char *)NULL);
    load_fail_at("[bogus]\n[data]\nbatch = 0\n", 1, "[bogus]", (char *)NULL);
    load_fail_at("[data]\nbatch = 0\n[bogus]\n", 2, "batch", (char *)NULL);
    load_fail_at("[data]\nbatch = 0\nnot a pair\n", 2, "batch", (char *)NULL);
    load_fail_at("[data]\nnot a pair\nbatch = 0\n", 2, "key = value", (char *)NULL);
}
END_TEST

/* A layer list continued on indented lines is joined into one list, with or without a
 * trailing comma; other keys may not continue. */
START_TEST(test_config_layers_continuation)
{
    static const char *const texts[] = {
        "[model]\nlayers = linear:8, relu,\n    linear:10\n",
        "[model]\nlayers = linear:8, relu\n    linear:10\n",
        "[model]\nlayers = linear:8,\n\trelu,\n    linear:10\n[optim]\nlr = 0.5\n",
    };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        dp_config c;
        load_ok(&c, texts[i]);
        dp_model m;
        dp_err err = { "" };
        ck_assert_msg(dp_model_parse(&m, c.layers, 4, 10, &err) == 0,
                      "text %zu: layers \"%s\": %s", i, c.layers, err.msg);
        ck_assert_msg(m.n_layers == 3, "text %zu: layers \"%s\" gave %d layers", i, c.layers,
                      m.n_layers);
        ck_assert_uint_eq(m.n_params, 8 * 4 + 8 + 10 * 8 + 10);
        dp_model_free(&m);
        ck_assert_str_eq(dp_config_origin(&c, "model", "layers"), "t.ini:2");
    }
    dp_config c;
    load_ok(&c, texts[2]);
    ck_assert_msg(c.optim.lr == 0.5, "the key after the list was lost: lr %g", c.optim.lr);
    load_fail_at("[run]\nsteps = 5\n    6\n", 3, "only layer lists ([model] layers", (char *)NULL);
}
END_TEST

/* --set applies one key and records "--set" as its origin. */
START_TEST(test_config_set)
{
    dp_config c;
    dp_config_defaults(&c);
    dp_err err = { "" };
    ck_assert_str_eq(dp_config_origin(&c, "optim", "lr"), "");
    ck_assert_msg(dp_config_set(&c, "optim.lr=0.5", "--set", &err) == 0, "set: %s", err.msg);
    ck_assert_msg(c.optim.lr == 0.5, "lr = %g", c.optim.lr);
    ck_assert_str_eq(dp_config_origin(&c, "optim", "lr"), "--set");
    ck_assert_msg(dp_config_set(&c, "model.layers=linear:3, relu, linear:10", "--set", &err) == 0,
                  "set: %s", err.msg);
    ck_assert_str_eq(c.layers, "linear:3, relu, linear:10");
    ck_assert_msg(dp_config_set(&c, "run.steps=12", "--steps", &err) == 0, "set: %s", err.msg);
    ck_assert_int_eq(c.steps, 12);
    ck_assert_str_eq(dp_config_origin(&c, "run", "steps"), "--steps");
    ck_assert_msg(dp_config_set(&c, "data.path=/a=b.c", "--set", &err) == 0, "set: %s", err.msg);
    ck_assert_str_eq(c.data.path, "/a=b.c");
    /* --set after a file overrides it and takes over the origin */
    load_ok(&c, "[optim]\nlr = 0.25\n");
    ck_assert_str_eq(dp_config_origin(&c, "optim", "lr"), "t.ini:2");
    ck_assert_msg(dp_config_set(&c, "optim.lr=0.125", "--set", &err) == 0, "set: %s", err.msg);
    ck_assert_msg(c.optim.lr == 0.125, "lr = %g", c.optim.lr);
    ck_assert_str_eq(dp_config_origin(&c, "optim", "lr"), "--set");
}
END_TEST

/* Bad --set forms fail naming the label, and leave the config as it was. */
START_TEST(test_config_set_bad)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        { "optimlr=1", "SECTION.KEY=VALUE" },
        { "optim.lr", "SECTION.KEY=VALUE" },
        { "lr=0.1.5", "SECTION.KEY=VALUE" },
        { "nosuch.key=1", "unknown section [nosuch]" },
        { "optim.nosuch=1", "\"nosuch\"" },
        { "optim.lr=abc", "> 0" },
        { "optim.lr=0", "> 0" },
        { "data.batch=0", "whole number" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        dp_config c, d;
        dp_config_defaults(&c);
        dp_config_defaults(&d);
        dp_err err = { "" };
        ck_assert_msg(dp_config_set(&c, cases[i].text, "--set", &err) == -1, "%s was accepted",
                      cases[i].text);
        ck_assert_msg(strncmp(err.msg, "--set", 5) == 0 && strstr(err.msg, cases[i].want),
                      "%s: message \"%s\" (want \"--set...\" holding \"%s\")", cases[i].text,
                      err.msg, cases[i].want);
        ck_assert_msg(c.optim.lr == d.optim.lr && c.data.batch == d.data.batch,
                      "%s changed the config", cases[i].text);
    }
}
END_TEST

/* Origins: FILE:LINE for keys read, "" for defaults and unknown keys. */
START_TEST(test_config_origin)
{
    dp_config c;
    load_ok(&c, sample_ini);
    ck_assert_str_eq(dp_config_origin(&c, "run", "steps"), "t.ini:3");
    ck_assert_str_eq(dp_config_origin(&c, "run", "seed"), "t.ini:4");
    ck_assert_str_eq(dp_config_origin(&c, "data", "batch"), "t.ini:8");
    ck_assert_str_eq(dp_config_origin(&c, "model", "layers"), "t.ini:12");
    ck_assert_str_eq(dp_config_origin(&c, "optim", "lr"), "t.ini:15");
    ck_assert_str_eq(dp_config_origin(&c, "run", "epochs"), "");
    ck_assert_str_eq(dp_config_origin(&c, "nosuch", "key"), "");
    /* a key given twice is refused, naming both lines; --set may still override a key */
    load_fail_at("[data]\nbatch = 8\n\nbatch = 16\n", 4, "[data] batch is set twice",
                 "first at line 2", NULL);
    load_ok(&c, "[data]\nbatch = 8\n");
    dp_err err = { "" };
    ck_assert_int_eq(dp_config_set(&c, "data.batch=16", "--set", &err), 0);
    ck_assert_int_eq(c.data.batch, 16);
}
END_TEST

/* Every key of a against b. */
static void assert_same_config(const dp_config *a, const dp_config *b)
{
    ck_assert_str_eq(a->name, b->name);
    ck_assert_uint_eq(a->seed, b->seed);
    ck_assert_int_eq(a->steps, b->steps);
    ck_assert_int_eq(a->epochs, b->epochs);
    ck_assert_int_eq(a->precision, b->precision);
    ck_assert_int_eq(a->convolutions, b->convolutions);
    ck_assert_int_eq(a->on_nan, b->on_nan);
    ck_assert_int_eq(a->eval_every, b->eval_every);
    ck_assert_int_eq(a->data.kind, b->data.kind);
    ck_assert_str_eq(a->data.path, b->data.path);
    ck_assert_int_eq(a->data.batch, b->data.batch);
    ck_assert_int_eq(a->data.shuffle, b->data.shuffle);
    ck_assert_int_eq(a->data_on_device, b->data_on_device);
    ck_assert_int_eq(a->data.limit, b->data.limit);
    ck_assert_int_eq(a->data.context, b->data.context);
    ck_assert_int_eq(a->data.features, b->data.features);
    ck_assert_int_eq(a->data.classes, b->data.classes);
    ck_assert_int_eq(a->data.samples, b->data.samples);
    ck_assert_int_eq(a->data.test_samples, b->data.test_samples);
    ck_assert_str_eq(a->layers, b->layers);
    ck_assert_int_eq(a->optim.kind, b->optim.kind);
    ck_assert_msg(a->optim.lr == b->optim.lr, "lr %.17g vs %.17g", a->optim.lr, b->optim.lr);
    ck_assert_msg(a->optim.momentum == b->optim.momentum, "momentum %.17g vs %.17g",
                  a->optim.momentum, b->optim.momentum);
    ck_assert_int_eq(a->optim.nesterov, b->optim.nesterov);
    ck_assert_msg(a->optim.weight_decay == b->optim.weight_decay, "weight_decay %.17g vs %.17g",
                  a->optim.weight_decay, b->optim.weight_decay);
    ck_assert_msg(a->optim.beta1 == b->optim.beta1, "beta1 %.17g vs %.17g", a->optim.beta1,
                  b->optim.beta1);
    ck_assert_msg(a->optim.beta2 == b->optim.beta2, "beta2 %.17g vs %.17g", a->optim.beta2,
                  b->optim.beta2);
    ck_assert_msg(a->optim.eps == b->optim.eps, "eps %.17g vs %.17g", a->optim.eps,
                  b->optim.eps);
    ck_assert_int_eq(a->optim.warmup, b->optim.warmup);
    ck_assert_int_eq(a->optim.schedule, b->optim.schedule);
    ck_assert_msg(a->optim.clip == b->optim.clip, "clip %.17g vs %.17g", a->optim.clip,
                  b->optim.clip);
    ck_assert_str_eq(a->devices, b->devices);
    ck_assert_int_eq(a->strategy, b->strategy);
    ck_assert_int_eq(a->stages, b->stages);
    ck_assert_int_eq(a->microbatches, b->microbatches);
    ck_assert_int_eq(a->schedule, b->schedule);
    ck_assert_msg(a->bucket_mb == b->bucket_mb, "bucket_mb %.17g vs %.17g", a->bucket_mb,
                  b->bucket_mb);
    ck_assert_str_eq(a->checkpoint_dir, b->checkpoint_dir);
    ck_assert_int_eq(a->checkpoint_every, b->checkpoint_every);
    ck_assert_int_eq(a->checkpoint_keep, b->checkpoint_keep);
    ck_assert_int_eq(a->refresh_ms, b->refresh_ms);
    ck_assert_int_eq(a->color, b->color);
}

/* Prints c, reads the text over fresh defaults, and checks every key and the reprinted text. */
static void assert_print_round_trip(const dp_config *c)
{
    char *text = print_text(c);
    dp_config back;
    dp_config_defaults(&back);
    dp_err err = { "" };
    int rc = dp_config_load(&back, NULL, text, "printed.ini", &err);
    ck_assert_msg(rc == 0, "printed text does not load: %s\n--- text ---\n%s", err.msg, text);
    assert_same_config(c, &back);
    char *again = print_text(&back);
    ck_assert_msg(strcmp(text, again) == 0, "reprinted text differs:\n%s\n--- vs ---\n%s", text,
                  again);
    free(text);
    free(again);
}

/* dp_config_print of the defaults and of a config with every key changed reads back the same. */
START_TEST(test_config_print_round_trip)
{
    dp_config c;
    dp_config_defaults(&c);
    assert_print_round_trip(&c);

    static const char *const sets[] = {
        "run.name=trial-7", "run.seed=18446744073709551615", "run.steps=777",
        "run.epochs=4", "run.precision=fp32", "run.convolutions=im2col",
        "run.on_nan=skip", "run.eval_every=50",
        "data.kind=synthetic", "data.path=/srv/data/x y", "data.batch=33", "data.shuffle=false",
        "data.on_device=false",
        "data.limit=1000", "data.context=64", "data.features=17", "data.classes=5",
        "data.samples=1234", "data.test_samples=321",
        "model.layers=linear:64, gelu, linear:32, tanh, linear:5",
        "optim.kind=adamw", "optim.lr=0.1", "optim.momentum=0.95", "optim.nesterov=true",
        "optim.weight_decay=0.01", "optim.beta1=0.85", "optim.beta2=0.995", "optim.eps=1e-7",
        "optim.warmup=10", "optim.lr_schedule=cosine", "optim.clip=1.5",
        "parallel.devices=cpu:3", "parallel.strategy=hybrid", "parallel.stages=2",
        "parallel.microbatches=8", "parallel.schedule=gpipe", "parallel.bucket_mb=12.5",
        "checkpoint.dir=/tmp/ck", "checkpoint.every=100", "checkpoint.keep=5",
        "dashboard.refresh_ms=250", "dashboard.color=false",
    };
    dp_err err = { "" };
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++)
        ck_assert_msg(dp_config_set(&c, sets[i], "--set", &err) == 0, "%s: %s", sets[i],
                      err.msg);
    c.optim.momentum = 1.0 / 3.0; /* needs all 17 digits */
    c.optim.lr = 0.1 + 0.2;
    assert_print_round_trip(&c);

    /* the printed text has every section */
    char *text = print_text(&c);
    static const char *const sections[] = { "[run]", "[data]", "[model]", "[optim]",
                                            "[parallel]", "[checkpoint]", "[dashboard]" };
    for (size_t i = 0; i < sizeof sections / sizeof *sections; i++)
        ck_assert_msg(strstr(text, sections[i]) != NULL, "no %s in:\n%s", sections[i], text);
    free(text);
}
END_TEST

/* A long layer list (as a deep MLP has) prints to a file that reads back. */
START_TEST(test_config_print_long_layers)
{
    dp_config c;
    dp_config_defaults(&c);
    char layers[1024] = "";
    for (int i = 0; i < 12; i++)
        strcat(layers, "linear:1024, relu, ");
    strcat(layers, "linear:10");
    snprintf(c.layers, sizeof c.layers, "%s", layers);
    dp_model m;
    dp_err err = { "" };
    ck_assert_msg(dp_model_parse(&m, c.layers, 784, 10, &err) == 0, "%s", err.msg);
    dp_model_free(&m);
    assert_print_round_trip(&c);
}
END_TEST

/* ---- dp_config_check and the demo ---- */

/* Sets key=value on defaults and checks that dp_config_check refuses it with want. */
static void check_refuses(const char *assignment, const char *want)
{
    dp_config c;
    dp_config_defaults(&c);
    dp_err err = { "" };
    if (assignment)
        ck_assert_msg(dp_config_set(&c, assignment, "--set", &err) == 0, "%s: %s", assignment,
                      err.msg);
    ck_assert_msg(dp_config_check(&c, &err) == -1, "dp_config_check accepted %s", assignment);
    ck_assert_msg(strstr(err.msg, want) != NULL, "%s: message \"%s\" lacks \"%s\"", assignment,
                  err.msg, want);
}

/* dp_config_check accepts the defaults and refuses what this version cannot run. */
START_TEST(test_config_check)
{
    dp_config c;
    dp_config_defaults(&c);
    dp_err err = { "" };
    ck_assert_msg(dp_config_check(&c, &err) == 0, "defaults refused: %s", err.msg);
    ck_assert_msg(dp_config_set(&c, "parallel.devices=cpu:1", "--set", &err) == 0, "%s",
                  err.msg);
    ck_assert_msg(dp_config_check(&c, &err) == 0, "cpu:1 refused: %s", err.msg);
    dp_config_defaults(&c);
    ck_assert(dp_config_set(&c, "run.steps=10", "--set", &err) == 0);
    ck_assert(dp_config_set(&c, "run.epochs=0", "--set", &err) == 0);
    ck_assert_msg(dp_config_check(&c, &err) == 0, "steps=10 epochs=0 refused: %s", err.msg);

    dp_config_defaults(&c);
    c.steps = 0;
    c.epochs = 0;
    ck_assert_int_eq(dp_config_check(&c, &err), -1);
    ck_assert_msg(strstr(err.msg, "steps") && strstr(err.msg, "epochs"), "message: %s",
                  err.msg);

#ifndef HAVE_CUDA
    check_refuses("parallel.devices=cuda:0", "CUDA");
    check_refuses("parallel.devices=cuda:0,cuda:1", "CUDA");
#endif
    check_refuses("parallel.devices=cuda:x", "cuda:0,cuda:1");
#ifdef HAVE_CUDA /* a mixed list; without CUDA its first device is refused already */
    check_refuses("parallel.devices=cuda:0,cpu:1", "cuda:0,cuda:1");
#else
    check_refuses("parallel.devices=cuda:0,cpu:1", "no CUDA support");
#endif
    check_refuses("parallel.devices=cpu:0", "cpu:N");
    check_refuses("parallel.devices=cpu:65", "cpu:N");
    check_refuses("parallel.devices=tpu", "cpu:N");
    /* what the multi-device engine runs */
    const char *accepted[] = { "parallel.devices=cpu:8", "parallel.strategy=pp",
                               "parallel.strategy=hybrid", "parallel.strategy=single" };
    for (int i = 0; i < 4; i++) {
        dp_config_defaults(&c);
        ck_assert(dp_config_set(&c, accepted[i], "--set", &err) == 0);
        ck_assert_msg(dp_config_check(&c, &err) == 0, "%s refused: %s", accepted[i], err.msg);
    }
    dp_config_defaults(&c);
    dp_device_spec specs[DP_MAX_DEVICES];
    ck_assert_int_eq(dp_config_device_list(&c, specs, &err), 0); /* auto: the caller decides */
    ck_assert(dp_config_set(&c, "parallel.devices=cpu:5", "--set", &err) == 0);
    ck_assert_int_eq(dp_config_device_list(&c, specs, &err), 5);
    ck_assert(!specs[4].cuda);
#ifdef HAVE_CUDA
    ck_assert(dp_config_set(&c, "parallel.devices=cuda:0,cuda:0,cuda:1", "--set", &err) == 0);
    ck_assert_int_eq(dp_config_device_list(&c, specs, &err), 3);
    ck_assert(specs[0].cuda && specs[1].cuda && specs[0].ordinal == 0 && specs[2].ordinal == 1);
#endif
}
END_TEST

/* strategy = auto and the advisor's keys: device_memory's sizes in binary units, refused when
 * malformed, out of range, or with a GAN. */
START_TEST(test_config_auto)
{
    dp_config c;
    dp_err err = { "" };
    dp_config_defaults(&c);
    ck_assert(!dp_config_auto(&c));
    ck_assert_int_eq(c.auto_plans, 8);
    ck_assert(!c.auto_bn_micro);
    ck_assert(dp_config_set(&c, "parallel.strategy=auto", "--set", &err) == 0);
    ck_assert(dp_config_auto(&c));
    ck_assert_int_eq(dp_config_plan(&c).strategy, DP_STRATEGY_SINGLE); /* until the advisor */
    ck_assert_msg(dp_config_check(&c, &err) == 0, "%s", err.msg);
    const struct { const char *text; size_t bytes; } sizes[] = {
        { "512M", 512u << 20 }, { "2G", (size_t)2 << 30 }, { "1.5GiB", (size_t)3 << 29 },
        { "1048576", 1u << 20 }, { "4096K", 4u << 20 }, { "1T", (size_t)1 << 40 },
        { "256m", 256u << 20 }, { "1g", (size_t)1 << 30 }, { "2gib", (size_t)2 << 30 },
        { "2gb", (size_t)2 << 30 }, { "1e3M", 1000u << 20 },
        { "", 0 },
    };
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        snprintf(c.device_memory, sizeof c.device_memory, "%s", sizes[i].text);
        size_t bytes = 1;
        ck_assert_msg(dp_config_device_memory(&c, &bytes, &err) == 0, "%s: %s", sizes[i].text,
                      err.msg);
        ck_assert_msg(bytes == sizes[i].bytes, "%s: %zu", sizes[i].text, bytes);
    }
    const char *bad[] = { "0", "-1", "12Q", "512MX", "1e30", "M", "100", "nan", "512 M",
                          "2000T", "0x100000", "0x1p30", "+512M", "inf" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(c.device_memory, sizeof c.device_memory, "%s", bad[i]);
        ck_assert_msg(dp_config_check(&c, &err) == -1, "%s accepted", bad[i]);
        ck_assert_msg(strstr(err.msg, "device_memory") && strstr(err.msg, "512M"), "%s: %s",
                      bad[i], err.msg);
    }
    dp_config_defaults(&c);
    ck_assert(dp_config_set(&c, "parallel.auto_plans=0", "--set", &err) == 0);
    ck_assert(dp_config_set(&c, "parallel.auto_bn_micro=true", "--set", &err) == 0);
    ck_assert(c.auto_plans == 0 && c.auto_bn_micro);
    ck_assert(dp_config_set(&c, "parallel.auto_plans=-1", "--set", &err) == -1);
    ck_assert(dp_config_set(&c, "parallel.strategy=automatic", "--set", &err) == -1);
    ck_assert_msg(strstr(err.msg, "auto"), "%s", err.msg);
    /* a GAN: not yet */
    dp_config_defaults(&c);
    load_ok(&c, "[data]\nkind = fashion-mnist\n[model]\nobjective = gan\n"
                "generator = linear:784, tanh\ndiscriminator = linear:1\n"
                "[parallel]\nstrategy = auto\n");
    ck_assert_int_eq(dp_config_check(&c, &err), -1);
    ck_assert_msg(strstr(err.msg, "cannot plan a GAN"), "%s", err.msg);
}
END_TEST

/* The built-in demo loads, passes the check and builds its model. */
START_TEST(test_config_demo)
{
    dp_config c;
    dp_config_defaults(&c);
    dp_err err = { "" };
    ck_assert_msg(dp_config_load(&c, NULL, dp_demo_ini, "demo.ini", &err) == 0, "demo: %s",
                  err.msg);
    ck_assert_msg(dp_config_check(&c, &err) == 0, "demo refused: %s", err.msg);
    ck_assert_str_eq(c.name, "demo");
    ck_assert_int_eq(c.data.kind, DP_DATA_FASHION_MNIST);
    dp_model m;
    ck_assert_msg(dp_model_parse(&m, c.layers, 784, 10, &err) == 0, "demo layers \"%s\": %s",
                  c.layers, err.msg);
    dp_model_free(&m);
    ck_assert_msg(strncmp(dp_config_origin(&c, "run", "name"), "demo.ini:", 9) == 0,
                  "origin %s", dp_config_origin(&c, "run", "name"));
}
END_TEST

/* ---- hostile input (issue 14) ---- */

/* Writes text to dir/c.ini, creating dir and its parents; the path goes into path. */
static void write_deep(char *path, size_t size, const char *dir, const char *text)
{
    char at[PATH_MAX];
    snprintf(at, sizeof at, "%s", dir);
    for (char *p = at + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(at, 0700);
            *p = '/';
        }
    mkdir(at, 0700);
    snprintf(path, size, "%s/c.ini", dir);
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fputs(text, f);
    ck_assert(fclose(f) == 0);
}

/* A key given twice is refused however long the file's path is (a 200-character one, and
 * one near PATH_MAX), and origins still end in the line. */
START_TEST(test_config_duplicate_long_path)
{
    static const char text[] = "[run]\nsteps = 1\n[optim]\nlr = 0.1\nlr = 0.2\n";
    char part[201];
    memset(part, 'p', 200);
    part[200] = '\0';
    for (int parts = 1; parts <= 19; parts += 18) { /* ~200, then ~3850 characters */
        char dir[PATH_MAX] = "", path[PATH_MAX];
        int used = snprintf(dir, sizeof dir, "%s/deep", unit_tmpdir());
        for (int i = 0; i < parts; i++)
            used += snprintf(dir + used, sizeof dir - (size_t)used, "/%d%s", i, part);
        write_deep(path, sizeof path, dir, text);
        ck_assert_msg(strlen(path) > 200, "path %zu characters", strlen(path));
        dp_config c;
        dp_config_defaults(&c);
        dp_err err = { "" };
        ck_assert_msg(dp_config_load(&c, path, NULL, NULL, &err) == -1,
                      "a duplicate lr in a %zu-character path was accepted", strlen(path));
        ck_assert_msg(strstr(err.msg, ":5: [optim] lr is set twice (first at line 4)"),
                      "message: %s", err.msg);
        ck_assert_msg(strstr(err.msg, "p/c.ini:5") != NULL, "the file's end is not shown: %s",
                      err.msg);
        write_deep(path, sizeof path, dir, "[run]\nsteps = 1\n[optim]\nlr = 0.1\n");
        dp_config_defaults(&c);
        ck_assert_msg(dp_config_load(&c, path, NULL, NULL, &err) == 0, "%s", err.msg);
        const char *origin = dp_config_origin(&c, "optim", "lr");
        ck_assert_msg(!strncmp(origin, "...", 3) && strstr(origin, "p/c.ini:4"), "origin %s",
                      origin);
    }
    /* a key continued over lines, then set again: still a duplicate */
    load_fail_at("[model]\nlayers = linear:8,\n  relu\nlayers = linear:4\n", 4, "set twice",
                 (char *)NULL);
    /* the same key in a second [optim] header is a duplicate too */
    load_fail_at("[optim]\nlr = 0.1\n[optim]\nlr = 0.2\n", 4, "set twice", (char *)NULL);
}
END_TEST

/* -c must be a regular file: a FIFO (which would block open), a device and a directory are
 * refused before reading. */
START_TEST(test_config_not_regular_file)
{
    char fifo[PATH_MAX];
    snprintf(fifo, sizeof fifo, "%s/config.fifo", unit_tmpdir());
    unlink(fifo);
    ck_assert(mkfifo(fifo, 0600) == 0);
    static const struct {
        const char *path, *want;
    } cases[] = { { NULL, "named pipe" }, { "/dev/zero", "device" }, { "/", "directory" } };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *path = cases[i].path ? cases[i].path : fifo;
        dp_config c;
        dp_config_defaults(&c);
        dp_err err = { "" };
        ck_assert_int_eq(dp_config_load(&c, path, NULL, NULL, &err), -1);
        ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, cases[i].want) &&
                          strstr(err.msg, "regular file"),
                      "%s: %s", path, err.msg);
    }
    unlink(fifo);
}
END_TEST

/* Values that would not read back from --print-config are refused from --set and files:
 * control characters, and ';' where inih reads a comment. */
START_TEST(test_config_values_read_back)
{
    static const struct {
        const char *set, *want;
    } refused[] = {
        { "run.name=;x", "start of a value" },
        { "run.name=a ;b", "after a space" },
        { "data.path=/srv/x ;y", "after a space" },
        { "run.name=a\nb", "control character (byte 0x0a)" },
        { "run.name=a\rb", "control character (byte 0x0d)" },
        { "run.name=a\tb", "control character (byte 0x09)" },
        { "run.name=a\x7f", "control character (byte 0x7f)" },
        { "optim.lr=\n0.1", "control character" },
        { "model.layers=linear:8,;x", "no ';'" },
        { "model.layers=linear:8,#x", "no '#'" },
        { "run.name= x", "spaces around it" },
        { "run.name=x ", "spaces around it" },
        { "optim.lr= 0.1", "spaces around it" },
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        dp_config c;
        dp_config_defaults(&c);
        dp_err err = { "" };
        ck_assert_msg(dp_config_set(&c, refused[i].set, "--set", &err) == -1,
                      "case %zu was accepted", i);
        ck_assert_msg(strstr(err.msg, refused[i].want) && !strchr(err.msg, '\n'),
                      "case %zu: message \"%s\" lacks \"%s\"", i, err.msg, refused[i].want);
        ck_assert_str_eq(c.name, "dpmptop");
    }
    load_fail_at("[run]\nname = a\tb\n", 2, "control character (byte 0x09)", (char *)NULL);
    load_fail_at("[run]\nname = a\x01" "b\n", 2, "control character (byte 0x01)", (char *)NULL);
    load_fail_at("[run]\nname = a\x7f\n", 2, "control character (byte 0x7f)", (char *)NULL);

    /* what may be written reads back the same */
    static const char *const accepted[] = {
        "run.name=a name with spaces", "run.name=k=v=w", "run.name=naïve – 学习 ✓",
        "run.name=a;b", "run.name=semi; colon", "run.name=x#y", "data.path=/srv/a;b/data.bin",
        "checkpoint.dir=/tmp/a=b/c d", "optim.weight_decay=-0",
    };
    dp_config c;
    dp_config_defaults(&c);
    for (size_t i = 0; i < sizeof accepted / sizeof *accepted; i++) {
        dp_err err = { "" };
        ck_assert_msg(dp_config_set(&c, accepted[i], "--set", &err) == 0, "%s: %s", accepted[i],
                      err.msg);
        assert_print_round_trip(&c);
    }
    ck_assert_msg(!signbit(c.optim.weight_decay), "-0 kept its sign");

    /* a layer list is kept with one space after each comma, the form its wrapped lines read
     * back as, however it was spaced; a long one without spaces reads back too */
    load_ok(&c, "[model]\nlayers = linear:8,relu ,  linear:4,\n  tanh,\n  linear:2\n");
    ck_assert_str_eq(c.layers, "linear:8, relu , linear:4, tanh, linear:2");
    char layers[1200] = "model.layers=linear:8";
    while (strlen(layers) < sizeof layers - 20)
        strcat(layers, ",relu,linear:8");
    dp_err err = { "" };
    ck_assert_msg(dp_config_set(&c, layers, "--set", &err) == 0, "%s", err.msg);
    assert_print_round_trip(&c);
    /* a control character or a comment on a continued line is refused as on the first
     * (found by fuzzing: a continued line skipped the checks) */
    load_fail_at("[model]\nlayers = linear:8,\n  re\x19lu\n", 3, "control character (byte 0x19)",
                 (char *)NULL);
    /* an indented line after a key continues it for inih even when it starts with '['
     * (found by fuzzing: it was taken for a section header, then as a second key) */
    load_ok(&c, "[model]\nlayers = linear:8,\n  [x] = 1\n");
    ck_assert_str_eq(c.layers, "linear:8, [x] = 1");
    assert_print_round_trip(&c);
    load_fail_at("[run]\nsteps = 1\n  [optim]\n", 3, "only layer lists ([model] layers",
                 (char *)NULL);
    /* an item too long for a line of its own is refused */
    char item[300] = "model.layers=linear:8, ";
    memset(item + strlen(item), 'x', 200);
    ck_assert_msg(dp_config_set(&c, item, "--set", &err) == -1 &&
                      strstr(err.msg, "characters each, between commas"),
                  "a 200-character layer was accepted: %s", err.msg);
}
END_TEST

/* Every numeric key refuses what is not a plain decimal number in range: overflow, nan, inf,
 * hexadecimal, trailing garbage; float keys refuse what a float cannot hold. */
START_TEST(test_config_numbers_hostile)
{
    static const char *const numeric[] = {
        "run.seed", "run.steps", "run.epochs", "run.eval_every", "data.batch", "data.limit",
        "data.context", "data.features", "data.classes", "data.samples", "data.test_samples",
        "optim.lr", "optim.momentum", "optim.weight_decay", "optim.beta1", "optim.beta2",
        "optim.eps", "optim.warmup", "optim.clip", "parallel.stages", "parallel.microbatches",
        "parallel.bucket_mb", "parallel.watchdog", "checkpoint.every", "checkpoint.keep",
        "dashboard.refresh_ms",
    };
    static const char *const bad[] = { "1e400", "-1e400", "nan", "inf", "-inf", "infinity",
                                       "0x10", "5x", "1 2", "", "--1", "1e", "1e39" };
    for (size_t i = 0; i < sizeof numeric / sizeof *numeric; i++)
        for (size_t j = 0; j < sizeof bad / sizeof *bad; j++) {
            char set[128];
            snprintf(set, sizeof set, "%s=%s", numeric[i], bad[j]);
            dp_config c, d;
            dp_config_defaults(&c);
            dp_config_defaults(&d);
            dp_err err = { "" };
            ck_assert_msg(dp_config_set(&c, set, "--set", &err) == -1, "%s was accepted", set);
            ck_assert_msg(strstr(err.msg, "expected"), "%s: message \"%s\"", set, err.msg);
            ck_assert_msg(!memcmp(&c, &d, offsetof(dp_config, origin)), "%s changed the config",
                          set);
        }
    static const struct {
        const char *set, *want;
    } floats[] = {
        { "optim.lr=1e-320", "underflows" },  /* a double's subnormal */
        { "optim.lr=1e-400", "underflows" },  /* not even a double */
        { "optim.lr=1e-40", "underflows" },   /* a float's subnormal */
        { "optim.clip=1e-45", "underflows" },
        { "optim.lr=1e39", "too large for a float" },
        { "optim.weight_decay=1e308", "too large for a float" },
        { "optim.lr=1e400", "too large for a float" },
        { "optim.lr=-0", "> 0" },
    };
    for (size_t i = 0; i < sizeof floats / sizeof *floats; i++) {
        dp_config c;
        dp_config_defaults(&c);
        dp_err err = { "" };
        ck_assert_msg(dp_config_set(&c, floats[i].set, "--set", &err) == -1, "%s was accepted",
                      floats[i].set);
        ck_assert_msg(strstr(err.msg, floats[i].want) && strstr(err.msg, "expected a number"),
                      "%s: message \"%s\" lacks \"%s\"", floats[i].set, err.msg, floats[i].want);
    }
    load_fail_at("[optim]\nlr = 1e-320\n", 2, "lr = 1e-320: underflows", "expected a number > 0",
                 (char *)NULL);
    dp_config c;
    load_ok(&c, "[optim]\nlr = 1.5e-38\nclip = 0\nweight_decay = 3e38\n");
    ck_assert_msg(c.optim.lr == 1.5e-38 && c.optim.clip == 0 && c.optim.weight_decay == 3e38,
                  "lr %g clip %g weight_decay %g", c.optim.lr, c.optim.clip,
                  c.optim.weight_decay);
}
END_TEST

/* --set with an empty section or key says which is empty; long names are compared whole. */
START_TEST(test_config_set_names)
{
    static const struct {
        const char *set, *want;
    } cases[] = {
        { ".=1", "--set .=1: the section and key are empty; expected SECTION.KEY=VALUE" },
        { ".lr=1", "the section is empty" },
        { "optim.=1", "the key is empty" },
        { "optimoptimoptimoptimoptimoptimoptimoptimoptimoptimoptimoptim.lr=1",
          "unknown section" },
        { "optim.lrlrlrlrlrlrlrlrlrlrlrlrlrlrlrlrlrlrlrlrlrlrlrlrlrlrlrlrlrlrlrlrlrlr=1",
          "has no key" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        dp_config c;
        dp_config_defaults(&c);
        dp_err err = { "" };
        ck_assert_msg(dp_config_set(&c, cases[i].set, "--set", &err) == -1, "%s accepted",
                      cases[i].set);
        ck_assert_msg(strstr(err.msg, cases[i].want), "%s: message \"%s\" lacks \"%s\"",
                      cases[i].set, err.msg, cases[i].want);
    }
    /* a section header too long for any buffer is still checked, even without keys */
    char text[300] = "[run]\nsteps = 1\n[";
    memset(text + strlen(text), 'r', 120);
    strcat(text, "]\n");
    load_fail_at(text, 3, "unknown section", (char *)NULL);
    load_fail_at("[dätä]\nbatch = 1\n", 1, "unknown section [dätä]", (char *)NULL);
    /* after a UTF-8 byte order mark too (it hid the header from the check) */
    load_fail_at("\xEF\xBB\xBF[bogus]\n[run]\nsteps = 1\n", 1, "unknown section [bogus]",
                 (char *)NULL);
    dp_config c;
    load_ok(&c, "\xEF\xBB\xBF[run]\nsteps = 7\n");
    ck_assert_int_eq(c.steps, 7);
    load_fail_at("lr = 0.1\n[optim]\n", 1, "comes before any [section]", (char *)NULL);
}
END_TEST

Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *keys = tcase_create("keys");
    tcase_add_test(keys, test_config_string_keys);
    tcase_add_test(keys, test_config_file_keys);
    tcase_add_test(keys, test_config_layers_continuation);
    tcase_add_test(keys, test_config_origin);
    suite_add_tcase(s, keys);

    TCase *errors = tcase_create("errors");
    tcase_add_test(errors, test_config_unknown_section);
    tcase_add_test(errors, test_config_unknown_key);
    tcase_add_test(errors, test_config_bad_ranges);
    tcase_add_test(errors, test_config_bad_batch);
    tcase_add_test(errors, test_config_bad_lr);
    tcase_add_test(errors, test_config_bad_kind);
    tcase_add_test(errors, test_config_objective);
    tcase_add_test(errors, test_config_convolutions);
    tcase_add_test(errors, test_config_bad_bool);
    tcase_add_test(errors, test_config_not_key_value);
    tcase_add_test(errors, test_config_first_error_wins);
    suite_add_tcase(s, errors);

    TCase *set = tcase_create("set");
    tcase_add_test(set, test_config_set);
    tcase_add_test(set, test_config_set_bad);
    suite_add_tcase(s, set);

    TCase *print = tcase_create("print");
    tcase_add_test(print, test_config_print_round_trip);
    tcase_add_test(print, test_config_print_long_layers);
    suite_add_tcase(s, print);

    TCase *hostile = tcase_create("hostile");
    tcase_add_test(hostile, test_config_duplicate_long_path);
    tcase_add_test(hostile, test_config_not_regular_file);
    tcase_add_test(hostile, test_config_values_read_back);
    tcase_add_test(hostile, test_config_numbers_hostile);
    tcase_add_test(hostile, test_config_set_names);
    suite_add_tcase(s, hostile);

    TCase *check = tcase_create("check");
    tcase_add_test(check, test_config_check);
    tcase_add_test(check, test_config_demo);
    tcase_add_test(check, test_config_auto);
    suite_add_tcase(s, check);
    return s;
}
