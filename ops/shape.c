/* Ops that move data without arithmetic: slice, select, stack, reshape, transpose, concat, detach. */
#include <string.h>
#include "ops_internal.h"

static const char *const names_x[] = {"x"};

int64_t tg__prod(const int64_t *d, int from, int to) {
    uint64_t p = 1;
    for (int i = from; i < to; i++) p *= (uint64_t)d[i];
    return (int64_t)p;
}

tg_status tg__axis(const char *fn, int ndim, const int64_t *shape, int64_t *axis) {
    char sb[TG__SHAPE_STR];
    if (*axis >= -ndim && *axis < ndim) {
        if (*axis < 0) *axis += ndim;
        return TG_OK;
    }
    return tg__fail(TG_EINVAL, "%s: axis %lld is out of range for shape %s (want %d..%d)", fn, (long long)*axis,
                    tg__shape_str(ndim, shape, sb), -ndim, ndim - 1);
}

/* x viewed as (outer, n, inner); the region [start, start+len) of the middle axis is copied to y
   (forward) or added into gx (backward), so the backward of T slices touches each element once. Into a
   fresh gx (the first of those slices to run backward: TG__FILLS) it is copied instead, and only the
   rest of gx zeroed: an LSTM's four gate slices of A (N,4H) and a Time layer's T selects of its input
   projection no longer zero the whole buffer and then read it back to add. */
TG__CLONES static void region(const tg_tensor *x, int axis, int64_t start, int64_t len, void *y, const void *g,
                              void *gx, int fresh) {
    size_t es = tg__dsize(x->dtype);
    if (x->numel == 0 || len == 0) {
        if (fresh) memset(gx, 0, (size_t)x->numel * es); /* an empty slice's input gets zeros */
        return;
    }
    int64_t outer = tg__prod(x->shape, 0, axis), n = x->shape[axis], inner = tg__prod(x->shape, axis + 1, x->ndim);
    int64_t block = len * inner, before = start * inner, after = (n - start - len) * inner;
    for (int64_t o = 0; o < outer; o++) {
        int64_t src = (o * n + start) * inner, dst = o * block;
        if (y) {
            memcpy((char *)y + (size_t)dst * es, (const char *)x->data + (size_t)src * es, (size_t)block * es);
        } else if (fresh) {
            char *row = (char *)gx + (size_t)(src - before) * es;
            memset(row, 0, (size_t)before * es);
            memcpy(row + (size_t)before * es, (const char *)g + (size_t)dst * es, (size_t)block * es);
            memset(row + (size_t)(before + block) * es, 0, (size_t)after * es);
        } else {
            TG__DISPATCH(x->dtype, {
                const T *pg = (const T *)g + dst;
                T *pgx = (T *)gx + src;
                for (int64_t j = 0; j < block; j++) pgx[j] += pg[j];
            });
        }
    }
}

/* slice and select share args: i[0] axis, i[1] start (select: the index), i[2] stop (select: index + 1). */
static tg_status region_forward(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *out) {
    (void)n;
    region(in[0], (int)args->i[0], args->i[1], args->i[2] - args->i[1], out->data, NULL, NULL, 0);
    return TG_OK;
}
static tg_status region_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    const tg__args *a = &node->args;
    region(node->in[0], (int)a->i[0], a->i[1], a->i[2] - a->i[1], NULL, gout->data, grads[0], tg__fresh(node, 0));
    return TG_OK;
}

static tg_status slice_shape(const char *fn, tg_tensor *const *in, int n, tg__args *args, int *ndim, int64_t *shape) {
    (void)n;
    const tg_tensor *x = in[0];
    char sb[TG__SHAPE_STR];
    if (tg__axis(fn, x->ndim, x->shape, &args->i[0])) return TG_EINVAL;
    int64_t axis = args->i[0], start = args->i[1], stop = args->i[2];
    if (start < 0 || stop < start || stop > x->shape[axis])
        return tg__fail(TG_EINVAL, "%s: [%lld, %lld) is out of range for axis %lld of shape %s", fn, (long long)start,
                        (long long)stop, (long long)axis, tg__shape_str(x->ndim, x->shape, sb));
    *ndim = x->ndim;
    memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
    shape[axis] = stop - start;
    return TG_OK;
}
const tg__op tg__op_slice = {.name = "slice", .fn = "tg_slice", .names = names_x, .iarg = {"axis", "start", "stop"},
                             .flags = TG__FILLS, .shape = slice_shape, .forward = region_forward,
                             .backward = region_backward};

tg_tensor *tg_slice(tg_tape *tape, tg_tensor *x, int axis, int64_t start, int64_t stop) {
    return tg__apply(tape, &tg__op_slice, &x, 1, &(tg__args){.i = {axis, start, stop}});
}

static tg_status select_shape(const char *fn, tg_tensor *const *in, int n, tg__args *args, int *ndim, int64_t *shape) {
    (void)n;
    const tg_tensor *x = in[0];
    char sb[TG__SHAPE_STR];
    if (tg__axis(fn, x->ndim, x->shape, &args->i[0])) return TG_EINVAL;
    int64_t axis = args->i[0], index = args->i[1];
    if (index < 0 || index >= x->shape[axis])
        return tg__fail(TG_EINVAL, "%s: index %lld is out of range for axis %lld of shape %s", fn, (long long)index,
                        (long long)axis, tg__shape_str(x->ndim, x->shape, sb));
    args->i[2] = index + 1;
    *ndim = x->ndim - 1;
    memcpy(shape, x->shape, (size_t)axis * sizeof *shape);
    memcpy(shape + axis, x->shape + axis + 1, (size_t)(x->ndim - axis - 1) * sizeof *shape);
    return TG_OK;
}
const tg__op tg__op_select = {.name = "select", .fn = "tg_select", .names = names_x, .iarg = {"axis", "index"},
                              .flags = TG__FILLS, .shape = select_shape, .forward = region_forward,
                              .backward = region_backward};

tg_tensor *tg_select(tg_tape *tape, tg_tensor *x, int axis, int64_t index) {
    return tg__apply(tape, &tg__op_select, &x, 1, &(tg__args){.i = {axis, index}});
}

/* stack: n tensors of shape S -> S[:axis] + (n,) + S[axis:]; out viewed as (outer, n, inner). */
static tg_status stack_shape(const char *fn, tg_tensor *const *xs, int n, tg__args *args, int *ndim, int64_t *shape) {
    char s0[TG__SHAPE_STR], si[TG__SHAPE_STR];
    const tg_tensor *x0 = xs[0];
    for (int i = 1; i < n; i++)
        if (xs[i]->ndim != x0->ndim || memcmp(xs[i]->shape, x0->shape, (size_t)x0->ndim * sizeof(int64_t)))
            return tg__fail(TG_ESHAPE, "%s: input %d has shape %s, input 0 has %s", fn, i,
                            tg__shape_str(xs[i]->ndim, xs[i]->shape, si), tg__shape_str(x0->ndim, x0->shape, s0));
    if (x0->ndim == TG_MAX_DIMS)
        return tg__fail(TG_ESHAPE, "%s: inputs of shape %s already have %d dims; the result would have %d", fn,
                        tg__shape_str(x0->ndim, x0->shape, s0), TG_MAX_DIMS, TG_MAX_DIMS + 1);
    /* The new axis counts in the result's dims, as NumPy's: -1 appends. */
    int64_t axis = args->i[0];
    if (axis < 0) axis += x0->ndim + 1;
    if (axis < 0 || axis > x0->ndim)
        return tg__fail(TG_EINVAL, "%s: axis %lld is out of range for %d inputs of shape %s (want %d..%d)", fn,
                        (long long)args->i[0], n, tg__shape_str(x0->ndim, x0->shape, s0), -x0->ndim - 1, x0->ndim);
    args->i[0] = axis;
    *ndim = x0->ndim + 1;
    memcpy(shape, x0->shape, (size_t)axis * sizeof *shape);
    shape[axis] = n;
    memcpy(shape + axis + 1, x0->shape + axis, (size_t)(x0->ndim - axis) * sizeof *shape);
    return TG_OK;
}

static tg_status stack_forward(tg_tensor *const *xs, int n, const tg__args *args, tg_tensor *y) {
    const tg_tensor *x0 = xs[0];
    int axis = (int)args->i[0];
    int64_t outer = tg__prod(x0->shape, 0, axis), inner = tg__prod(x0->shape, axis, x0->ndim);
    size_t es = tg__dsize(x0->dtype), row = (size_t)inner * es;
    for (int i = 0; i < n && y->numel; i++)
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)y->data + (size_t)(o * n + i) * row, (const char *)xs[i]->data + (size_t)o * row, row);
    return TG_OK;
}

static tg_status stack_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    const tg_tensor *x0 = node->in[0];
    int axis = (int)node->args.i[0], n = node->n_in;
    if (gout->numel == 0) return TG_OK;
    int64_t outer = tg__prod(x0->shape, 0, axis), inner = tg__prod(x0->shape, axis, x0->ndim);
    /* Inputs that need no gradient are skipped, but still counted in the offsets (KANN's concat
       backward got this wrong). */
    for (int i = 0; i < n; i++) {
        if (!grads[i]) continue;
        int set = tg__fresh(node, i);
        TG__DISPATCH(x0->dtype, {
            const T *g = gout->data;
            T *gx = grads[i];
            for (int64_t o = 0; o < outer; o++)
                if (set) memcpy(gx + o * inner, g + (o * n + i) * inner, (size_t)inner * sizeof(T));
                else
                    for (int64_t j = 0; j < inner; j++) gx[o * inner + j] += g[(o * n + i) * inner + j];
        });
    }
    return TG_OK;
}
const tg__op tg__op_stack = {.name = "stack", .fn = "tg_stack", .iarg = {"axis"}, .flags = TG__FILLS,
                             .shape = stack_shape,
                             .forward = stack_forward, .backward = stack_backward};

tg_tensor *tg_stack(tg_tape *tape, tg_tensor *const *xs, int n, int axis) {
    if (!xs || n < 1) {
        tg__fail(TG_EINVAL, xs ? "tg_stack: needs at least one tensor, got %d" : "tg_stack: xs is NULL", n);
        return NULL;
    }
    return tg__apply(tape, &tg__op_stack, xs, n, &(tg__args){.i = {axis}});
}

/* transpose: args.i[0] < args.i[1] once normalised (swapping is symmetric). x viewed as (A, n0, B, n1, C)
   around the two axes, y as (A, n1, B, n0, C); equal axes make the view (A, n0, 1, 1, C), a copy. */
static tg_status transpose_shape(const char *fn, tg_tensor *const *in, int n, tg__args *args, int *ndim,
                                 int64_t *shape) {
    (void)n;
    const tg_tensor *x = in[0];
    if (tg__axis(fn, x->ndim, x->shape, &args->i[0]) || tg__axis(fn, x->ndim, x->shape, &args->i[1]))
        return TG_EINVAL;
    if (args->i[0] > args->i[1]) {
        int64_t t = args->i[0];
        args->i[0] = args->i[1], args->i[1] = t;
    }
    *ndim = x->ndim;
    memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
    shape[args->i[0]] = x->shape[args->i[1]];
    shape[args->i[1]] = x->shape[args->i[0]];
    return TG_OK;
}

/* y[a,j,b,i,c] = x[a,i,b,j,c] (forward), or gx[a,i,b,j,c] += g[a,j,b,i,c] (backward, y NULL). */
static void swap_axes(const tg_tensor *x, const tg__args *args, void *y, const void *g, void *gx) {
    if (x->numel == 0) return; /* other dims may be huge */
    int a0 = (int)args->i[0], a1 = (int)args->i[1];
    int64_t A = tg__prod(x->shape, 0, a0), n0 = x->shape[a0], C = tg__prod(x->shape, a1 + 1, x->ndim);
    int64_t B = a0 < a1 ? tg__prod(x->shape, a0 + 1, a1) : 1, n1 = a0 < a1 ? x->shape[a1] : 1;
    /* j innermost: x is read (or gx written) in order, y strided; with C = 1 (the last two axes, as
       attention's scores transpose them) an element at a time, as a call per element was most of the op. */
    const int64_t step = B * n0 * C; /* y's stride along j */
    TG__DISPATCH(x->dtype, {
        const T *px = x->data, *pg = g;
        T *py = y, *pgx = gx;
        for (int64_t a = 0; a < A; a++)
            for (int64_t i = 0; i < n0; i++)
                for (int64_t b = 0; b < B; b++) {
                    int64_t src = ((a * n0 + i) * B + b) * n1 * C, dst = ((a * n1 * B + b) * n0 + i) * C;
                    if (C == 1 && py)
                        for (int64_t j = 0; j < n1; j++) py[dst + j * step] = px[src + j];
                    else if (C == 1)
                        for (int64_t j = 0; j < n1; j++) pgx[src + j] += pg[dst + j * step];
                    else
                        for (int64_t j = 0; j < n1; j++, src += C, dst += step) {
                            if (py) memcpy(py + dst, px + src, (size_t)C * sizeof(T));
                            else
                                for (int64_t c = 0; c < C; c++) pgx[src + c] += pg[dst + c];
                        }
                }
    });
}
static tg_status transpose_forward(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *out) {
    (void)n;
    swap_axes(in[0], args, out->data, NULL, NULL);
    return TG_OK;
}
static tg_status transpose_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    swap_axes(node->in[0], &node->args, NULL, gout->data, grads[0]);
    return TG_OK;
}
const tg__op tg__op_transpose = {.name = "transpose", .fn = "tg_transpose", .names = names_x,
                                 .iarg = {"axis0", "axis1"}, .shape = transpose_shape, .forward = transpose_forward,
                                 .backward = transpose_backward};

tg_tensor *tg_transpose(tg_tape *tape, tg_tensor *x, int axis0, int axis1) {
    return tg__apply(tape, &tg__op_transpose, &x, 1, &(tg__args){.i = {axis0, axis1}});
}

/* concat: args.i[0] the axis; input i is the block [off_i, off_i + n_i) of y's axis, y viewed as
   (outer, total, inner). */
static tg_status concat_shape(const char *fn, tg_tensor *const *xs, int n, tg__args *args, int *ndim, int64_t *shape) {
    char s0[TG__SHAPE_STR], si[TG__SHAPE_STR];
    const tg_tensor *x0 = xs[0];
    if (tg__axis(fn, x0->ndim, x0->shape, &args->i[0])) return TG_EINVAL;
    int axis = (int)args->i[0];
    memcpy(shape, x0->shape, (size_t)x0->ndim * sizeof *shape);
    for (int i = 1; i < n; i++) {
        int same = xs[i]->ndim == x0->ndim;
        for (int d = 0; d < x0->ndim && same; d++) same = d == axis || xs[i]->shape[d] == x0->shape[d];
        if (!same)
            return tg__fail(TG_ESHAPE, "%s: input %d has shape %s, input 0 has %s; they must match except on axis %d",
                            fn, i, tg__shape_str(xs[i]->ndim, xs[i]->shape, si), tg__shape_str(x0->ndim, x0->shape, s0),
                            axis);
        if (xs[i]->shape[axis] > INT64_MAX - shape[axis])
            return tg__fail(TG_ESHAPE, "%s: the joined axis %d overflows at input %d", fn, axis, i);
        shape[axis] += xs[i]->shape[axis];
    }
    *ndim = x0->ndim;
    return TG_OK;
}

/* Forward (grads NULL) copies each input into its block of y; backward adds each block of y (then the
   output's gradient) into grads[i]. A skipped input's block still moves the offset. */
static void join(const tg_tensor *y, tg_tensor *const *xs, int n, int axis, void *const *grads) {
    if (y->numel == 0) return; /* outer may be huge with inner 0 */
    int64_t outer = tg__prod(y->shape, 0, axis), total = y->shape[axis], inner = tg__prod(y->shape, axis + 1, y->ndim);
    size_t es = tg__dsize(y->dtype);
    for (int64_t i = 0, off = 0; i < n; off += xs[i]->shape[axis], i++) {
        int64_t block = xs[i]->shape[axis] * inner;
        if (block == 0 || (grads && !grads[i])) continue;
        for (int64_t o = 0; o < outer; o++) {
            int64_t dst = (o * total + off) * inner, src = o * block;
            if (!grads) {
                memcpy((char *)y->data + (size_t)dst * es, (const char *)xs[i]->data + (size_t)src * es,
                       (size_t)block * es);
                continue;
            }
            TG__DISPATCH(y->dtype, {
                const T *g = (const T *)y->data + dst;
                T *gx = (T *)grads[i] + src;
                for (int64_t j = 0; j < block; j++) gx[j] += g[j];
            });
        }
    }
}
static tg_status concat_forward(tg_tensor *const *xs, int n, const tg__args *args, tg_tensor *y) {
    join(y, xs, n, (int)args->i[0], NULL);
    return TG_OK;
}
static tg_status concat_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    join(gout, node->in, node->n_in, (int)node->args.i[0], grads);
    return TG_OK;
}
const tg__op tg__op_concat = {.name = "concat", .fn = "tg_concat", .iarg = {"axis"}, .shape = concat_shape,
                              .forward = concat_forward, .backward = concat_backward};

tg_tensor *tg_concat(tg_tape *tape, tg_tensor *const *xs, int n, int axis) {
    if (!xs || n < 1) {
        tg__fail(TG_EINVAL, xs ? "tg_concat: needs at least one tensor, got %d" : "tg_concat: xs is NULL", n);
        return NULL;
    }
    return tg__apply(tape, &tg__op_concat, xs, n, &(tg__args){.i = {axis}});
}

/* reshape: args.i[0] is the new rank, the dims ride in the output's shape; the shape rule reads them
   from args->user, the caller's array (valid for the call only: a rerun reads the recorded output's). */
static tg_status reshape_shape(const char *fn, tg_tensor *const *in, int n, tg__args *args, int *ndim, int64_t *shape) {
    (void)n;
    const tg_tensor *x = in[0];
    const int64_t *want = args->user;
    char sx[TG__SHAPE_STR], sy[TG__SHAPE_STR];
    int64_t numel;
    int nd = (int)args->i[0];
    if (tg__numel(fn, x->dtype, nd, want, &numel)) return tg_last_status();
    if (numel != x->numel)
        return tg__fail(TG_ESHAPE, "%s: cannot reshape %s (%lld elements) to %s", fn, tg__shape_str(x->ndim, x->shape, sx),
                        (long long)x->numel, tg__shape_str(nd, want, sy));
    *ndim = nd;
    if (nd) memcpy(shape, want, (size_t)nd * sizeof *shape);
    args->user = NULL;
    return TG_OK;
}

/* The copy of reshape and detach: outputs never alias their inputs. */
static tg_status copy_forward(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *out) {
    (void)n, (void)args;
    if (out->numel) memcpy(out->data, in[0]->data, (size_t)out->numel * tg__dsize(out->dtype));
    return TG_OK;
}

static tg_status reshape_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    int set = tg__fresh(node, 0);
    TG__DISPATCH(gout->dtype, {
        const T *g = gout->data;
        T *gx = grads[0];
        if (set) memcpy(gx, g, (size_t)gout->numel * sizeof(T));
        else
            for (int64_t i = 0; i < gout->numel; i++) gx[i] += g[i];
    });
    return TG_OK;
}
const tg__op tg__op_reshape = {.name = "reshape", .fn = "tg_reshape", .names = names_x, .flags = TG__FILLS,
                               .shape = reshape_shape,
                               .forward = copy_forward, .backward = reshape_backward};

tg_tensor *tg_reshape(tg_tape *tape, tg_tensor *x, int ndim, const int64_t *shape) {
    return tg__apply(tape, &tg__op_reshape, &x, 1, &(tg__args){.i = {ndim}, .user = (void *)shape});
}

/* Never recorded (TG__CONSTANT): its output's TG__NEEDS stays clear, so backward stops there. Not in
   the op table, as it has no backward to check. */
static const tg__op op_detach = {.name = "detach", .fn = "tg_detach", .names = names_x, .flags = TG__CONSTANT,
                                 .shape = tg__shape_of_first, .forward = copy_forward};

tg_tensor *tg_detach(tg_tape *tape, tg_tensor *x) { return tg__apply(tape, &op_detach, &x, 1, &tg__no_args); }
