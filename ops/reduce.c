/* Reductions: sum and mean of all elements, to a 0-d tensor. */
#include <math.h>
#include "tg_internal.h"

static const char *const names_x[] = {"x"};

/* args.f[0] is the scale: 1 for sum, 1 / numel for mean (set here, so forward and backward agree). */
static tg_status all_shape(const char *fn, tg_tensor *const *in, int n, tg__args *args, int *ndim, int64_t *shape) {
    (void)fn, (void)n, (void)shape;
    if (args->i[0]) args->f[0] = 1.0 / (double)in[0]->numel;
    *ndim = 0;
    return TG_OK;
}

/* mean divides by numel: NaN for an empty x, as NumPy. */
static tg_status all_forward(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *y) {
    (void)n;
    const tg_tensor *x = in[0];
    TG__DISPATCH(x->dtype, {
        const T *px = x->data;
        double s = 0; /* accumulated in double: a long f32 sum loses digits otherwise */
        for (int64_t i = 0; i < x->numel; i++) s += px[i];
        *(T *)y->data = (T)(args->i[0] && x->numel == 0 ? NAN : s * args->f[0]);
    });
    return TG_OK;
}

/* dx += dy * scale, the same for every element */
static tg_status all_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    const tg_tensor *x = node->in[0];
    TG__DISPATCH(x->dtype, {
        T g = (T)(*(const T *)gout->data * node->args.f[0]), *gx = grads[0];
        for (int64_t i = 0; i < x->numel; i++) gx[i] += g;
    });
    return TG_OK;
}
const tg__op tg__op_sum = {.name = "sum", .fn = "tg_sum", .names = names_x, .shape = all_shape,
                           .forward = all_forward, .backward = all_backward};
const tg__op tg__op_mean = {.name = "mean", .fn = "tg_mean", .names = names_x, .shape = all_shape,
                            .forward = all_forward, .backward = all_backward};

tg_tensor *tg_sum(tg_tape *tape, tg_tensor *x) { return tg__apply(tape, &tg__op_sum, &x, 1, &(tg__args){.f = {1}}); }
tg_tensor *tg_mean(tg_tape *tape, tg_tensor *x) {
    return tg__apply(tape, &tg__op_mean, &x, 1, &(tg__args){.i = {1}, .f = {1}});
}
