/* Ops whose outputs are TG_I64 indices, constants of the tape (no gradient flows through an index):
   argmax, and sample, a draw from each row's categorical distribution. */
#include <math.h>
#include "ops_internal.h"
#include "tg_rng.h"

/* argmax: x viewed as (outer, n, inner) around the axis (args i[0], normalised), keepdims in i[1]. */
static tg_status argmax_shape(const char *fn, tg_tensor *const *in, int n, tg__args *args, int *ndim, int64_t *shape) {
    (void)n;
    const tg_tensor *x = in[0];
    char sx[TG__SHAPE_STR];
    tg_status st = tg__axis(fn, x->ndim, x->shape, &args->i[0]);
    if (st) return st;
    int axis = (int)args->i[0], keep = args->i[1] != 0;
    if (x->shape[axis] == 0) /* numpy.argmax raises too: an empty sequence has no first maximum */
        return tg__fail(TG_ESHAPE, "%s: x %s is empty along axis %d: no maximum to find", fn,
                        tg__shape_str(x->ndim, x->shape, sx), axis);
    *ndim = 0;
    for (int d = 0; d < x->ndim; d++)
        if (d != axis || keep) shape[(*ndim)++] = d == axis ? 1 : x->shape[d];
    return TG_OK;
}

static tg_status argmax_forward(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *y) {
    (void)n;
    const tg_tensor *x = in[0];
    int axis = (int)args->i[0];
    int64_t outer = tg__prod(x->shape, 0, axis), len = x->shape[axis], inner = tg__prod(x->shape, axis + 1, x->ndim);
    int64_t *out = y->data;
    TG__DISPATCH(x->dtype, {
        const T *p = x->data;
        for (int64_t o = 0; o < outer; o++)
            for (int64_t i = 0; i < inner; i++) {
                const T *row = p + o * len * inner + i;
                int64_t best = 0;
                /* the first maximum; a NaN is the maximum (numpy.argmax), and the first NaN stays */
                for (int64_t k = 1; k < len && !isnan(row[best * inner]); k++)
                    if (row[k * inner] > row[best * inner] || isnan(row[k * inner])) best = k;
                out[o * inner + i] = best;
            }
    });
    return TG_OK;
}

static const char *const names_x[] = {"x"};
static const tg__op op_argmax = {.name = "argmax", .fn = "tg_argmax", .names = names_x,
                                 .flags = TG__CONSTANT | TG__INDEX_OUT, .iarg = {"axis", "keepdims"},
                                 .shape = argmax_shape, .forward = argmax_forward};

tg_tensor *tg_argmax(tg_tape *tape, tg_tensor *x, int axis, int keepdims) {
    return tg__apply(tape, &op_argmax, (tg_tensor *[]){x}, 1, &(tg__args){.i = {axis, keepdims != 0}});
}

/* sample: probs (..., V) -> (...), one draw per row from args' rng (user). */
static tg_status sample_shape(const char *fn, tg_tensor *const *in, int n, tg__args *args, int *ndim, int64_t *shape) {
    (void)n, (void)args;
    const tg_tensor *p = in[0];
    char sp[TG__SHAPE_STR];
    if (p->ndim < 1 || p->shape[p->ndim - 1] < 1)
        return tg__fail(TG_ESHAPE, "%s: probs is %s; want (..., V) with V >= 1", fn, tg__shape_str(p->ndim, p->shape, sp));
    *ndim = p->ndim - 1;
    for (int d = 0; d < p->ndim - 1; d++) shape[d] = p->shape[d];
    return TG_OK;
}

/* Every row is checked before the first draw, so that a refused call leaves the rng as it was. */
static tg_status sample_forward(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *y) {
    (void)n;
    const tg_tensor *p = in[0];
    int64_t V = p->shape[p->ndim - 1], rows = y->numel;
    int64_t *out = y->data;
    tg_status st = TG_OK;
    TG__DISPATCH(p->dtype, {
        const T *pr = p->data;
        for (int64_t r = 0; r < rows && !st; r++) {
            double sum = 0;
            for (int64_t v = 0; v < V && !st; v++) {
                double e = pr[r * V + v];
                if (!(e >= 0) || isinf(e))
                    st = tg__fail(TG_EINVAL, "tg_sample: row %lld of probs holds %g at index %lld: want finite "
                                  "values >= 0", (long long)r, e, (long long)v);
                sum += e;
            }
            if (!st && !(sum > 0))
                st = tg__fail(TG_EINVAL, "tg_sample: row %lld of probs sums to 0: no category to draw", (long long)r);
        }
        /* numpy's choice(V, p=row / sum): the first index whose cumulative sum passes u * sum */
        for (int64_t r = 0; r < rows && !st; r++) {
            const T *row = pr + r * V;
            double sum = 0, acc = 0;
            for (int64_t v = 0; v < V; v++) sum += row[v];
            double u = tg_rng_uniform(args->user) * sum;
            int64_t k = 0, last = 0;
            for (; k < V; k++) {
                if (row[k] > 0) last = k;
                if ((acc += row[k]) > u && row[k] > 0) break;
            }
            out[r] = k < V ? k : last; /* rounding may leave acc just below u: the last possible category */
        }
    });
    return st;
}

static const char *const names_probs[] = {"probs"};
static const tg__op op_sample = {.name = "sample", .fn = "tg_sample", .names = names_probs,
                                 .flags = TG__CONSTANT | TG__INDEX_OUT, .shape = sample_shape, .forward = sample_forward};

tg_tensor *tg_sample(tg_tape *tape, tg_tensor *probs, tg_rng *rng) {
    if (!rng) {
        tg__null("tg_sample", "rng");
        return NULL;
    }
    return tg__apply(tape, &op_sample, (tg_tensor *[]){probs}, 1, &(tg__args){.user = rng});
}
