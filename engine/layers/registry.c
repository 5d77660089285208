/* registry.c -- the layer kinds [model] layers understands, looked up by name (model.c) and
 * listed by --help-layers in this order.
 *
 * A new kind: its dp_layer_ops in a file of its own, engine/layers/KIND.c; its declaration in
 * engine/layer.h; one line here; its file in Makefile.am (libengine_a_SOURCES); and its tests
 * (tests/test_layers.c, or tests/test_blocks.c for a layer with children). */
#include "engine/layer.h"

const dp_layer_ops *const dp_layer_kinds[] = {
    &dp_layer_linear,  /* linear.c */
    &dp_layer_conv,    /* conv.c */
    &dp_layer_maxpool, /* conv.c */
    &dp_layer_avgpool, /* conv.c */
    &dp_layer_deconv,  /* deconv.c */
    &dp_layer_flatten, /* flatten.c */
    &dp_layer_unflatten, /* flatten.c */
    &dp_layer_relu,    /* activation.c */
    &dp_layer_gelu,    /* activation.c */
    &dp_layer_gelu_erf, /* activation.c */
    &dp_layer_tanh,    /* activation.c */
    &dp_layer_leakyrelu, /* activation.c */
    &dp_layer_sigmoid, /* activation.c */
    &dp_layer_embed,   /* embedding.c */
    &dp_layer_pos,     /* embedding.c */
    &dp_layer_ln,      /* layernorm.c */
    &dp_layer_bn,      /* bn.c */
    &dp_layer_attn,    /* attention.c */
    &dp_layer_mha,     /* attention.c */
    &dp_layer_dropout, /* dropout.c */
    &dp_layer_res,     /* blocks.c */
    &dp_layer_block,   /* blocks.c */
    &dp_layer_enc,     /* blocks.c */
    NULL,
};
