/* Ops that move data without arithmetic: slice, select, stack, reshape, detach. */
#include <string.h>
#include "tg_internal.h"

static const char *const names_x[] = {"x"};

/* Unsigned, so that an empty tensor's huge other dims wrap harmlessly (no element is visited then)
   instead of overflowing a signed product, which is undefined. */
static int64_t prod(const int64_t *d, int from, int to) {
    uint64_t p = 1;
    for (int i = from; i < to; i++) p *= (uint64_t)d[i];
    return (int64_t)p;
}

/* x viewed as (outer, n, inner); the region [start, start+len) of the middle axis is copied to y
   (forward) or added into gx (backward), so the backward of T slices touches each element once. */
static void region(const tg_tensor *x, int axis, int64_t start, int64_t len, void *y, const void *g, void *gx) {
    if (x->numel == 0 || len == 0) return;
    int64_t outer = prod(x->shape, 0, axis), n = x->shape[axis], inner = prod(x->shape, axis + 1, x->ndim);
    int64_t block = len * inner;
    size_t es = tg__dsize(x->dtype);
    for (int64_t o = 0; o < outer; o++) {
        int64_t src = (o * n + start) * inner, dst = o * block;
        if (y) {
            memcpy((char *)y + (size_t)dst * es, (const char *)x->data + (size_t)src * es, (size_t)block * es);
        } else {
            TG__DISPATCH(x->dtype, {
                const T *pg = (const T *)g + dst;
                T *pgx = (T *)gx + src;
                for (int64_t j = 0; j < block; j++) pgx[j] += pg[j];
            });
        }
    }
}

static tg_status region_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    region(node->in[0], (int)node->arg[0], node->arg[1], node->arg[2], NULL, gout->data, grads[0]);
    return TG_OK;
}
const tg__op tg__op_slice = {"slice", region_backward};
const tg__op tg__op_select = {"select", region_backward};

static int check_axis(const char *fn, const tg_tensor *x, int axis) {
    char sb[TG__SHAPE_STR];
    if (axis >= 0 && axis < x->ndim) return 0;
    tg__fail(TG_EINVAL, "%s: axis %d is out of range for shape %s", fn, axis, tg__shape_str(x->ndim, x->shape, sb));
    return 1;
}

tg_tensor *tg_slice(tg_tape *tape, tg_tensor *x, int axis, int64_t start, int64_t stop) {
    tg_tensor *in[1] = {x};
    char sb[TG__SHAPE_STR];
    if (tg__check_inputs("tg_slice", tape, in, 1, names_x) || check_axis("tg_slice", x, axis)) return NULL;
    if (start < 0 || stop < start || stop > x->shape[axis]) {
        tg__fail(TG_EINVAL, "tg_slice: [%lld, %lld) is out of range for axis %d of shape %s", (long long)start,
                 (long long)stop, axis, tg__shape_str(x->ndim, x->shape, sb));
        return NULL;
    }
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[axis] = stop - start;
    tg_tensor *y = tg__new_out("tg_slice", tape, x->dtype, x->ndim, shape, 0);
    if (!y) return NULL;
    region(x, axis, start, stop - start, y->data, NULL, NULL);
    return tg__record(tape, &tg__op_slice, NULL, NULL, y, in, 1, TG__SAVE_NONE,
                      (int64_t[3]){axis, start, stop - start}, 0);
}

tg_tensor *tg_select(tg_tape *tape, tg_tensor *x, int axis, int64_t index) {
    tg_tensor *in[1] = {x};
    char sb[TG__SHAPE_STR];
    if (tg__check_inputs("tg_select", tape, in, 1, names_x) || check_axis("tg_select", x, axis)) return NULL;
    if (index < 0 || index >= x->shape[axis]) {
        tg__fail(TG_EINVAL, "tg_select: index %lld is out of range for axis %d of shape %s", (long long)index, axis,
                 tg__shape_str(x->ndim, x->shape, sb));
        return NULL;
    }
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, x->shape, (size_t)axis * sizeof *shape);
    memcpy(shape + axis, x->shape + axis + 1, (size_t)(x->ndim - axis - 1) * sizeof *shape);
    tg_tensor *y = tg__new_out("tg_select", tape, x->dtype, x->ndim - 1, shape, 0);
    if (!y) return NULL;
    region(x, axis, index, 1, y->data, NULL, NULL);
    return tg__record(tape, &tg__op_select, NULL, NULL, y, in, 1, TG__SAVE_NONE, (int64_t[3]){axis, index, 1}, 0);
}

/* stack: n tensors of shape S -> S[:axis] + (n,) + S[axis:]; out viewed as (outer, n, inner). */
tg_tensor *tg_stack(tg_tape *tape, tg_tensor *const *xs, int n, int axis) {
    char s0[TG__SHAPE_STR], si[TG__SHAPE_STR];
    if (!xs || n < 1) {
        tg__fail(TG_EINVAL, xs ? "tg_stack: needs at least one tensor, got %d" : "tg_stack: xs is NULL", n);
        return NULL;
    }
    if (tg__check_inputs("tg_stack", tape, xs, n, NULL)) return NULL;
    const tg_tensor *x0 = xs[0];
    for (int i = 1; i < n; i++)
        if (xs[i]->ndim != x0->ndim || memcmp(xs[i]->shape, x0->shape, (size_t)x0->ndim * sizeof(int64_t))) {
            tg__fail(TG_ESHAPE, "tg_stack: input %d has shape %s, input 0 has %s", i,
                     tg__shape_str(xs[i]->ndim, xs[i]->shape, si), tg__shape_str(x0->ndim, x0->shape, s0));
            return NULL;
        }
    if (x0->ndim == TG_MAX_DIMS) {
        tg__fail(TG_ESHAPE, "tg_stack: inputs of shape %s already have %d dims; the result would have %d",
                 tg__shape_str(x0->ndim, x0->shape, s0), TG_MAX_DIMS, TG_MAX_DIMS + 1);
        return NULL;
    }
    if (axis < 0 || axis > x0->ndim) {
        tg__fail(TG_EINVAL, "tg_stack: axis %d is out of range for %d inputs of shape %s", axis, n,
                 tg__shape_str(x0->ndim, x0->shape, s0));
        return NULL;
    }
    int64_t shape[TG_MAX_DIMS];
    memcpy(shape, x0->shape, (size_t)axis * sizeof *shape);
    shape[axis] = n;
    memcpy(shape + axis + 1, x0->shape + axis, (size_t)(x0->ndim - axis) * sizeof *shape);
    tg_tensor *y = tg__new_out("tg_stack", tape, x0->dtype, x0->ndim + 1, shape, 0);
    if (!y) return NULL;
    int64_t outer = prod(x0->shape, 0, axis), inner = prod(x0->shape, axis, x0->ndim);
    size_t es = tg__dsize(x0->dtype), row = (size_t)inner * es;
    for (int i = 0; i < n && y->numel; i++)
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)y->data + (size_t)(o * n + i) * row, (const char *)xs[i]->data + (size_t)o * row, row);
    return tg__record(tape, &tg__op_stack, NULL, NULL, y, xs, n, TG__SAVE_NONE, (int64_t[3]){axis, 0, 0}, 0);
}

static tg_status stack_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    const tg_tensor *x0 = node->in[0];
    int axis = (int)node->arg[0], n = node->n_in;
    if (gout->numel == 0) return TG_OK;
    int64_t outer = prod(x0->shape, 0, axis), inner = prod(x0->shape, axis, x0->ndim);
    /* Inputs that need no gradient are skipped, but still counted in the offsets (KANN's concat
       backward got this wrong). */
    for (int i = 0; i < n; i++) {
        if (!grads[i]) continue;
        TG__DISPATCH(x0->dtype, {
            const T *g = gout->data;
            T *gx = grads[i];
            for (int64_t o = 0; o < outer; o++)
                for (int64_t j = 0; j < inner; j++) gx[o * inner + j] += g[(o * n + i) * inner + j];
        });
    }
    return TG_OK;
}
const tg__op tg__op_stack = {"stack", stack_backward};

tg_tensor *tg_reshape(tg_tape *tape, tg_tensor *x, int ndim, const int64_t *shape) {
    tg_tensor *in[1] = {x};
    char sx[TG__SHAPE_STR], sy[TG__SHAPE_STR];
    int64_t numel;
    if (tg__check_inputs("tg_reshape", tape, in, 1, names_x) || tg__numel("tg_reshape", x->dtype, ndim, shape, &numel))
        return NULL;
    if (numel != x->numel) {
        tg__fail(TG_ESHAPE, "tg_reshape: cannot reshape %s (%lld elements) to %s", tg__shape_str(x->ndim, x->shape, sx),
                 (long long)x->numel, tg__shape_str(ndim, shape, sy));
        return NULL;
    }
    tg_tensor *y = tg__new_out("tg_reshape", tape, x->dtype, ndim, shape, 0);
    if (!y) return NULL;
    memcpy(y->data, x->data, (size_t)numel * tg__dsize(x->dtype));
    return tg__record(tape, &tg__op_reshape, NULL, NULL, y, in, 1, TG__SAVE_NONE, NULL, 0);
}

static tg_status reshape_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    (void)node;
    TG__DISPATCH(gout->dtype, {
        const T *g = gout->data;
        T *gx = grads[0];
        for (int64_t i = 0; i < gout->numel; i++) gx[i] += g[i];
    });
    return TG_OK;
}
const tg__op tg__op_reshape = {"reshape", reshape_backward};

tg_tensor *tg_detach(tg_tape *tape, tg_tensor *x) {
    tg_tensor *in[1] = {x};
    if (tg__check_inputs("tg_detach", tape, in, 1, names_x)) return NULL;
    tg_tensor *y = tg__new_out("tg_detach", tape, x->dtype, x->ndim, x->shape, 0);
    if (y) memcpy(y->data, x->data, (size_t)x->numel * tg__dsize(x->dtype));
    return y; /* never recorded: its TG__NEEDS stays clear, so backward stops here */
}
