/* The table of built-in ops: adding an op means its entry in its family file in ops/ and one line here.
   The test suite walks this list, so an op without a gradient check fails the suite. */
#include "ops_internal.h"

extern const tg__op tg__op_matmul, tg__op_add, tg__op_sub, tg__op_mul, tg__op_div, tg__op_tanh, tg__op_scale,
    tg__op_slice, tg__op_select, tg__op_stack, tg__op_reshape, tg__op_sum, tg__op_mean;
extern const tg__op tg__op_neg, tg__op_add_scalar, tg__op_exp, tg__op_log, tg__op_sqrt, tg__op_sigmoid, tg__op_relu,
    tg__op_sum_axis, tg__op_mean_axis, tg__op_max_axis, tg__op_transpose, tg__op_concat;
extern const tg__op tg__op_linear, tg__op_addmm, tg__op_embedding, tg__op_softmax, tg__op_log_softmax, tg__op_cross_entropy,
    tg__op_dropout;

const tg__op *const tg__op_list[] = {
    &tg__op_matmul, &tg__op_add,    &tg__op_sub,    &tg__op_mul,   &tg__op_div,
    &tg__op_tanh,   &tg__op_scale,  &tg__op_slice,  &tg__op_select, &tg__op_stack,
    &tg__op_reshape, &tg__op_sum,   &tg__op_mean,   &tg__op_custom,
    &tg__op_neg, &tg__op_add_scalar, &tg__op_exp, &tg__op_log, &tg__op_sqrt, &tg__op_sigmoid, &tg__op_relu,
    &tg__op_sum_axis, &tg__op_mean_axis, &tg__op_max_axis, &tg__op_transpose, &tg__op_concat,
    &tg__op_linear, &tg__op_addmm, &tg__op_embedding, &tg__op_softmax, &tg__op_log_softmax, &tg__op_cross_entropy, &tg__op_dropout,
    NULL,
};
