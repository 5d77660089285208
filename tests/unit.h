/* unit.h -- the Check suites of tests/unit, one per engine or app module. */
#ifndef DP_TESTS_UNIT_H
#define DP_TESTS_UNIT_H

#include <check.h>

Suite *layers_suite(void);      /* test_layers.c: backward vs central finite differences */
Suite *blocks_suite(void);      /* test_blocks.c: image and sequence layers, blocks vs a reference */
Suite *conv_library_suite(void); /* test_conv_library.c: convolutions through oneDNN vs im2col */
Suite *loss_suite(void);        /* test_loss.c: softmax cross-entropy vs hand-computed values */
Suite *objective_suite(void);   /* test_objective.c: the objectives' table, classify by hand */
Suite *optim_suite(void);       /* test_optim.c: SGD, AdamW, schedule, clipping */
Suite *idx_suite(void);         /* test_idx.c: the IDX reader on good and bad files */
Suite *safetensors_suite(void); /* test_safetensors.c: round trip and bad files */
Suite *config_suite(void);      /* test_config.c: INI keys, FILE:LINE errors, --set */
Suite *plan_suite(void);        /* test_plan.c: plans, stage balance, schedules */
Suite *advisor_suite(void);     /* test_advisor.c: the plan advisor's enumeration and search */
Suite *comm_suite(void);        /* test_comm.c: all-reduce and links between threads */
Suite *layout_suite(void);      /* test_layout.c: the dashboard's layout */
Suite *timeline_suite(void);    /* test_timeline.c: the timeline's columns and bubble */
Suite *health_suite(void);      /* test_health.c: the health line's state and stall */
Suite *control_suite(void);     /* test_control.c: the run's requests, take and apply */
Suite *bn_suite(void);          /* test_bn.c: batch normalisation vs a reference, replicas */
Suite *peak_suite(void);        /* test_peak.c: peak FLOP/s cache, GPU table, MFU, util series */
Suite *samples_suite(void);     /* test_samples.c: GAN sample files (IDX, PNG), terminal pictures */
Suite *gan_suite(void);         /* test_gan.c: a GAN's model, plan cut, noise, step program */
Suite *quality_suite(void);     /* test_quality.c: Frechet distance, score, classifier features */
Suite *gan_dashboard_suite(void); /* test_gan_dashboard.c: a GAN's series, samples, layout */
Suite *bert_suite(void);        /* test_bert.c: gelu_erf, mha, enc vs references; mlm masks, loss */

/* A fresh empty directory for a test's files (under $TMPDIR_BASE or /tmp); never NULL. */
const char *unit_tmpdir(void);

#endif
