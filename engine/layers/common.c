/* common.c -- the helpers of common.h. */
#include "engine/layers/common.h"

int dp_layer_keep_shape(dp_layer *l, dp_err *err)
{
    l->out_shape = l->in_shape;
    l->param_count = 0;
    return 0;
}

int dp_layer_no_tensors(const dp_layer *l, dp_tensor_info out[DP_MAX_LAYER_TENSORS])
{
    return 0;
}

void dp_layer_no_init(const dp_layer *l, float *params, uint64_t seed)
{
}

double dp_layer_flops_per_value(const dp_layer *l)
{
    return (double)l->in;
}

int dp_layer_need_sequence(const dp_layer *l, dp_err *err)
{
    if (l->in_shape.ndim != 2)
        return dp_fail(err, "%s needs sequences [positions, width] as input (after embed), "
                            "but gets %s",
                       l->ops->name, l->in_shape.ndim == 3 ? "images" : "vectors");
    return 0;
}
