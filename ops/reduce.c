/* Reductions: sum and mean of all elements, to a 0-d tensor; sum, mean and max along one axis. */
#include <math.h>
#include <string.h>
#include "ops_internal.h"

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
    int set = tg__fresh(node, 0);
    TG__DISPATCH(x->dtype, {
        T g = (T)(*(const T *)gout->data * node->args.f[0]), *gx = grads[0];
        if (set)
            for (int64_t i = 0; i < x->numel; i++) gx[i] = g;
        else
            for (int64_t i = 0; i < x->numel; i++) gx[i] += g;
    });
    return TG_OK;
}
const tg__op tg__op_sum = {.name = "sum", .fn = "tg_sum", .names = names_x, .flags = TG__FILLS, .shape = all_shape,
                           .forward = all_forward, .backward = all_backward};
const tg__op tg__op_mean = {.name = "mean", .fn = "tg_mean", .names = names_x, .flags = TG__FILLS, .shape = all_shape,
                            .forward = all_forward, .backward = all_backward};

tg_tensor *tg_sum(tg_tape *tape, tg_tensor *x) { return tg__apply(tape, &tg__op_sum, &x, 1, &(tg__args){.f = {1}}); }
tg_tensor *tg_mean(tg_tape *tape, tg_tensor *x) {
    return tg__apply(tape, &tg__op_mean, &x, 1, &(tg__args){.i = {1}, .f = {1}});
}

/* ---- along one axis: args.i[0] the axis, i[1] keepdims; x viewed as (outer, n, inner) and the output
   as (outer, inner), whether or not it keeps the axis ---- */

static tg_status axis_shape(const char *fn, tg_tensor *const *in, int n, tg__args *args, int *ndim, int64_t *shape) {
    (void)n;
    const tg_tensor *x = in[0];
    if (tg__axis(fn, x->ndim, x->shape, &args->i[0])) return TG_EINVAL;
    int axis = (int)args->i[0];
    args->i[1] = args->i[1] != 0;
    *ndim = x->ndim - !args->i[1];
    memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
    if (args->i[1]) shape[axis] = 1;
    else memmove(shape + axis, shape + axis + 1, (size_t)(x->ndim - axis - 1) * sizeof *shape), shape[*ndim] = 0;
    return TG_OK;
}

typedef struct {
    int64_t outer, n, inner;
} axis_view;
static axis_view view_of(const tg_tensor *x, int axis) {
    return (axis_view){tg__prod(x->shape, 0, axis), x->shape[axis], tg__prod(x->shape, axis + 1, x->ndim)};
}

/* args.i[2] set: mean. An empty axis gives 0 / 0 = NaN for the mean, 0 for the sum. */
static tg_status sum_axis_forward(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *y) {
    (void)n;
    const tg_tensor *x = in[0];
    if (y->numel == 0) return TG_OK; /* outer may be huge with inner 0 */
    axis_view v = view_of(x, (int)args->i[0]);
    TG__DISPATCH(x->dtype, {
        const T *px = x->data;
        T *py = y->data;
        for (int64_t o = 0; o < v.outer; o++)
            for (int64_t k = 0; k < v.inner; k++) {
                double s = 0; /* in double, as all_forward */
                for (int64_t j = 0; j < v.n; j++) s += px[(o * v.n + j) * v.inner + k];
                py[o * v.inner + k] = (T)(args->i[2] ? s / (double)v.n : s);
            }
    });
    return TG_OK;
}

static tg_status sum_axis_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    const tg_tensor *x = node->in[0];
    if (x->numel == 0) return TG_OK;
    axis_view v = view_of(x, (int)node->args.i[0]);
    TG__DISPATCH(x->dtype, {
        const T *g = gout->data, scale = (T)(node->args.i[2] ? 1.0 / (double)v.n : 1.0);
        T *gx = grads[0];
        for (int64_t o = 0; o < v.outer; o++)
            for (int64_t j = 0; j < v.n; j++)
                for (int64_t k = 0; k < v.inner; k++) gx[(o * v.n + j) * v.inner + k] += scale * g[o * v.inner + k];
    });
    return TG_OK;
}
const tg__op tg__op_sum_axis = {.name = "sum_axis", .fn = "tg_sum_axis", .names = names_x,
                                .iarg = {"axis", "keepdims"}, .shape = axis_shape, .forward = sum_axis_forward,
                                .backward = sum_axis_backward};
const tg__op tg__op_mean_axis = {.name = "mean_axis", .fn = "tg_mean_axis", .names = names_x,
                                 .iarg = {"axis", "keepdims"}, .shape = axis_shape, .forward = sum_axis_forward,
                                 .backward = sum_axis_backward};

tg_tensor *tg_sum_axis(tg_tape *tape, tg_tensor *x, int axis, int keepdims) {
    return tg__apply(tape, &tg__op_sum_axis, &x, 1, &(tg__args){.i = {axis, keepdims}});
}
tg_tensor *tg_mean_axis(tg_tape *tape, tg_tensor *x, int axis, int keepdims) {
    return tg__apply(tape, &tg__op_mean_axis, &x, 1, &(tg__args){.i = {axis, keepdims, 1}});
}

static tg_status max_axis_shape(const char *fn, tg_tensor *const *in, int n, tg__args *args, int *ndim,
                                int64_t *shape) {
    const tg_tensor *x = in[0];
    char sb[TG__SHAPE_STR];
    tg_status st = axis_shape(fn, in, n, args, ndim, shape);
    if (!st && x->shape[args->i[0]] == 0)
        return tg__fail(TG_ESHAPE, "%s: axis %lld of shape %s is empty: a max needs at least one element", fn,
                        (long long)args->i[0], tg__shape_str(x->ndim, x->shape, sb));
    return st;
}

/* *best = the index of the first maximum of the slice s[0], s[stride], ..., s[(n-1) stride], a NaN
   counting as the largest (NumPy's argmax): !(s_j <= s_best) is s_j > s_best or s_j NaN, and the walk
   stops at the first NaN. Backward finds it again from the saved x instead of keeping indices. */
#define ARGMAX(s, n, stride, best)                                                                 \
    do {                                                                                           \
        *(best) = 0;                                                                               \
        for (int64_t j_ = 1; j_ < (n) && !isnan((s)[*(best) * (stride)]); j_++)                    \
            if (!((s)[j_ * (stride)] <= (s)[*(best) * (stride)])) *(best) = j_;                    \
    } while (0)

static tg_status max_axis_forward(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *y) {
    (void)n;
    const tg_tensor *x = in[0];
    if (y->numel == 0) return TG_OK;
    axis_view v = view_of(x, (int)args->i[0]);
    TG__DISPATCH(x->dtype, {
        const T *px = x->data;
        T *py = y->data;
        for (int64_t o = 0; o < v.outer; o++)
            for (int64_t k = 0; k < v.inner; k++) {
                int64_t j;
                ARGMAX(px + o * v.n * v.inner + k, v.n, v.inner, &j);
                py[o * v.inner + k] = px[(o * v.n + j) * v.inner + k];
            }
    });
    return TG_OK;
}

static tg_status max_axis_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    const tg_tensor *x = node->in[0];
    if (gout->numel == 0) return TG_OK;
    axis_view v = view_of(x, (int)node->args.i[0]);
    TG__DISPATCH(x->dtype, {
        const T *px = x->data, *g = gout->data;
        T *gx = grads[0];
        for (int64_t o = 0; o < v.outer; o++)
            for (int64_t k = 0; k < v.inner; k++) {
                int64_t j;
                ARGMAX(px + o * v.n * v.inner + k, v.n, v.inner, &j);
                gx[(o * v.n + j) * v.inner + k] += g[o * v.inner + k];
            }
    });
    return TG_OK;
}
const tg__op tg__op_max_axis = {.name = "max_axis", .fn = "tg_max_axis", .names = names_x, .save = TG__SAVE_INPUTS,
                                .iarg = {"axis", "keepdims"}, .shape = max_axis_shape, .forward = max_axis_forward,
                                .backward = max_axis_backward};

tg_tensor *tg_max_axis(tg_tape *tape, tg_tensor *x, int axis, int keepdims) {
    return tg__apply(tape, &tg__op_max_axis, &x, 1, &(tg__args){.i = {axis, keepdims}});
}
