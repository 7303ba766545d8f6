/* The table of built-in ops: adding an op means its entry in its family file in ops/ and one line here.
   The test suite walks this list, so an op without a gradient check fails the suite. */
#include "tg_internal.h"

extern const tg__op tg__op_matmul, tg__op_add, tg__op_sub, tg__op_mul, tg__op_div, tg__op_tanh, tg__op_scale,
    tg__op_slice, tg__op_select, tg__op_stack, tg__op_reshape, tg__op_sum, tg__op_mean;
extern const tg__op tg__op_linear, tg__op_embedding, tg__op_softmax, tg__op_log_softmax, tg__op_cross_entropy,
    tg__op_dropout;

const tg__op *const tg__op_list[] = {
    &tg__op_matmul, &tg__op_add,    &tg__op_sub,    &tg__op_mul,   &tg__op_div,
    &tg__op_tanh,   &tg__op_scale,  &tg__op_slice,  &tg__op_select, &tg__op_stack,
    &tg__op_reshape, &tg__op_sum,   &tg__op_mean,   &tg__op_custom,
    &tg__op_linear, &tg__op_embedding, &tg__op_softmax, &tg__op_log_softmax, &tg__op_cross_entropy, &tg__op_dropout,
    NULL,
};
