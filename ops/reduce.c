/* Reductions to a 0-d tensor: sum and mean. */
#include <math.h>
#include "tg_internal.h"

static const char *const names_x[] = {"x"};

/* The forward of both; mean divides by numel (NaN for an empty x, as NumPy). */
static tg_tensor *reduce(const char *fn, const tg__op *op, tg_tape *tape, tg_tensor *x, int mean) {
    tg_tensor *in[1] = {x};
    if (tg__check_inputs(fn, tape, in, 1, names_x)) return NULL;
    tg_tensor *y = tg__new_out(fn, tape, x->dtype, 0, NULL, 0);
    if (!y) return NULL;
    double scale = mean ? 1.0 / (double)x->numel : 1.0;
    TG__DISPATCH(x->dtype, {
        const T *px = x->data;
        double s = 0; /* accumulated in double: a long f32 sum loses digits otherwise */
        for (int64_t i = 0; i < x->numel; i++) s += px[i];
        *(T *)y->data = (T)(mean && x->numel == 0 ? NAN : s * scale);
    });
    return tg__record(tape, op, NULL, NULL, y, in, 1, TG__SAVE_NONE, NULL, scale);
}

/* dx += dy * scale, the same for every element */
static tg_status reduce_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    const tg_tensor *x = node->in[0];
    TG__DISPATCH(x->dtype, {
        T g = (T)(*(const T *)gout->data * node->farg), *gx = grads[0];
        for (int64_t i = 0; i < x->numel; i++) gx[i] += g;
    });
    return TG_OK;
}
const tg__op tg__op_sum = {"sum", reduce_backward};
const tg__op tg__op_mean = {"mean", reduce_backward};

tg_tensor *tg_sum(tg_tape *tape, tg_tensor *x) { return reduce("tg_sum", &tg__op_sum, tape, x, 0); }
tg_tensor *tg_mean(tg_tape *tape, tg_tensor *x) { return reduce("tg_mean", &tg__op_mean, tape, x, 1); }
