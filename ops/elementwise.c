/* Elementwise ops: add, sub, mul with NumPy broadcasting; tanh and scale. */
#include <string.h>
#include <tgmath.h>
#include "tg_internal.h"

static const char *const names_ab[] = {"a", "b"}, *const names_x[] = {"x"};

/* Broadcasting walks the output once, carrying each operand's offset; a stretched dim has stride 0,
   so the same loop reads a bias row again and again in forward and sums into it in backward. */
typedef struct {
    int nd;
    int64_t shape[TG_MAX_DIMS], sa[TG_MAX_DIMS], sb[TG_MAX_DIMS], n;
} bcast;

/* n (the output's element count) is left to the caller, which has it from the checked output. The
   strides multiply in unsigned arithmetic: for an empty operand with huge dims they may wrap, which
   is harmless as no element is then visited, where signed overflow would be undefined. */
static int bcast_init(bcast *bc, const tg_tensor *a, const tg_tensor *b) {
    bc->nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    uint64_t stride_a = 1, stride_b = 1;
    for (int d = bc->nd - 1; d >= 0; d--) {
        int da = d - (bc->nd - a->ndim), db = d - (bc->nd - b->ndim);
        int64_t na = da >= 0 ? a->shape[da] : 1, nb = db >= 0 ? b->shape[db] : 1;
        if (na != nb && na != 1 && nb != 1) return 0;
        bc->shape[d] = na == 1 ? nb : na;
        bc->sa[d] = na == 1 ? 0 : (int64_t)stride_a;
        bc->sb[d] = nb == 1 ? 0 : (int64_t)stride_b;
        stride_a *= (uint64_t)na, stride_b *= (uint64_t)nb;
    }
    return 1;
}

/* Runs STMT for every output element i with a's offset oa and b's offset ob. The last dim is a tight
   inner loop (a contiguous row, or a stretched one with stride 0, as a bias); only the row start
   carries the multi-index, so the common (N,H) + (H,) runs at memory speed. */
#define BCAST_LOOP(bc, STMT)                                                                       \
    do {                                                                                           \
        const int last_ = (bc).nd - 1;                                                             \
        const int64_t len_ = last_ >= 0 ? (bc).shape[last_] : 1;                                   \
        const int64_t sal_ = last_ >= 0 ? (bc).sa[last_] : 0, sbl_ = last_ >= 0 ? (bc).sb[last_] : 0; \
        const int64_t rows_ = len_ ? (bc).n / len_ : 0;                                            \
        int64_t idx_[TG_MAX_DIMS] = {0}, ra_ = 0, rb_ = 0;                                          \
        for (int64_t r_ = 0; r_ < rows_; r_++) {                                                   \
            for (int64_t j_ = 0; j_ < len_; j_++) {                                                \
                const int64_t i = r_ * len_ + j_, oa = ra_ + j_ * sal_, ob = rb_ + j_ * sbl_;      \
                (void)oa, (void)ob;                                                                \
                STMT;                                                                              \
            }                                                                                      \
            for (int d_ = last_ - 1; d_ >= 0; d_--) {                                              \
                ra_ += (bc).sa[d_], rb_ += (bc).sb[d_];                                            \
                if (++idx_[d_] < (bc).shape[d_]) break;                                            \
                ra_ -= (bc).sa[d_] * (bc).shape[d_], rb_ -= (bc).sb[d_] * (bc).shape[d_];          \
                idx_[d_] = 0;                                                                      \
            }                                                                                      \
        }                                                                                          \
    } while (0)

enum { ADD, SUB, MUL };

static tg_tensor *binary(const char *fn, const tg__op *op, int kind, tg_tape *tape, tg_tensor *a, tg_tensor *b) {
    tg_tensor *in[2] = {a, b};
    char sa[TG__SHAPE_STR], sb[TG__SHAPE_STR];
    bcast bc;
    if (tg__check_inputs(fn, tape, in, 2, names_ab)) return NULL;
    if (!bcast_init(&bc, a, b)) {
        tg__fail(TG_ESHAPE, "%s: shapes %s and %s do not broadcast", fn, tg__shape_str(a->ndim, a->shape, sa),
                 tg__shape_str(b->ndim, b->shape, sb));
        return NULL;
    }
    tg_tensor *y = tg__new_out(fn, tape, a->dtype, bc.nd, bc.shape, 0);
    if (!y) return NULL;
    bc.n = y->numel;
    TG__DISPATCH(a->dtype, {
        const T *pa = a->data, *pb = b->data;
        T *py = y->data;
        if (kind == ADD) BCAST_LOOP(bc, py[i] = pa[oa] + pb[ob]);
        else if (kind == SUB) BCAST_LOOP(bc, py[i] = pa[oa] - pb[ob]);
        else BCAST_LOOP(bc, py[i] = pa[oa] * pb[ob]);
    });
    return tg__record(tape, op, NULL, NULL, y, in, 2, kind == MUL ? TG__SAVE_INPUTS : TG__SAVE_NONE, NULL, 0);
}

static tg_status binary_backward(int kind, const tg__node *node, const tg_tensor *gout, void *const *grads) {
    const tg_tensor *a = node->in[0], *b = node->in[1];
    bcast bc;
    bcast_init(&bc, a, b);
    bc.n = gout->numel;
    TG__DISPATCH(a->dtype, {
        const T *g = gout->data, *pa = a->data, *pb = b->data;
        T *ga = grads[0], *gb = grads[1];
        if (ga) {
            if (kind == MUL) BCAST_LOOP(bc, ga[oa] += g[i] * pb[ob]);
            else BCAST_LOOP(bc, ga[oa] += g[i]);
        }
        if (gb) {
            if (kind == MUL) BCAST_LOOP(bc, gb[ob] += g[i] * pa[oa]);
            else if (kind == SUB) BCAST_LOOP(bc, gb[ob] -= g[i]);
            else BCAST_LOOP(bc, gb[ob] += g[i]);
        }
    });
    return TG_OK;
}

static tg_status add_backward(const tg__node *n, const tg_tensor *g, void *const *gr) { return binary_backward(ADD, n, g, gr); }
static tg_status sub_backward(const tg__node *n, const tg_tensor *g, void *const *gr) { return binary_backward(SUB, n, g, gr); }
static tg_status mul_backward(const tg__node *n, const tg_tensor *g, void *const *gr) { return binary_backward(MUL, n, g, gr); }
const tg__op tg__op_add = {"add", add_backward};
const tg__op tg__op_sub = {"sub", sub_backward};
const tg__op tg__op_mul = {"mul", mul_backward};

tg_tensor *tg_add(tg_tape *tape, tg_tensor *a, tg_tensor *b) { return binary("tg_add", &tg__op_add, ADD, tape, a, b); }
tg_tensor *tg_sub(tg_tape *tape, tg_tensor *a, tg_tensor *b) { return binary("tg_sub", &tg__op_sub, SUB, tape, a, b); }
tg_tensor *tg_mul(tg_tape *tape, tg_tensor *a, tg_tensor *b) { return binary("tg_mul", &tg__op_mul, MUL, tape, a, b); }

/* tanh: y = tanh(x); dx += dy (1 - y^2), from the saved output rather than recomputing tanh. */
tg_tensor *tg_tanh(tg_tape *tape, tg_tensor *x) {
    tg_tensor *in[1] = {x};
    if (tg__check_inputs("tg_tanh", tape, in, 1, names_x)) return NULL;
    tg_tensor *y = tg__new_out("tg_tanh", tape, x->dtype, x->ndim, x->shape, 0);
    if (!y) return NULL;
    TG__DISPATCH(x->dtype, {
        const T *px = x->data;
        T *py = y->data;
        for (int64_t i = 0; i < x->numel; i++) py[i] = tanh(px[i]);
    });
    return tg__record(tape, &tg__op_tanh, NULL, NULL, y, in, 1, TG__SAVE_OUTPUT, NULL, 0);
}

static tg_status tanh_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    TG__DISPATCH(gout->dtype, {
        const T *g = gout->data, *y = node->out->data;
        T *gx = grads[0];
        for (int64_t i = 0; i < gout->numel; i++) gx[i] += g[i] * (1 - y[i] * y[i]);
    });
    return TG_OK;
}
const tg__op tg__op_tanh = {"tanh", tanh_backward};

/* scale: y = alpha x; dx += alpha dy. */
tg_tensor *tg_scale(tg_tape *tape, tg_tensor *x, double alpha) {
    tg_tensor *in[1] = {x};
    if (tg__check_inputs("tg_scale", tape, in, 1, names_x)) return NULL;
    tg_tensor *y = tg__new_out("tg_scale", tape, x->dtype, x->ndim, x->shape, 0);
    if (!y) return NULL;
    TG__DISPATCH(x->dtype, {
        const T *px = x->data;
        T *py = y->data;
        for (int64_t i = 0; i < x->numel; i++) py[i] = (T)alpha * px[i];
    });
    return tg__record(tape, &tg__op_scale, NULL, NULL, y, in, 1, TG__SAVE_NONE, NULL, alpha);
}

static tg_status scale_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    TG__DISPATCH(gout->dtype, {
        const T *g = gout->data;
        T *gx = grads[0], alpha = (T)node->farg;
        for (int64_t i = 0; i < gout->numel; i++) gx[i] += alpha * g[i];
    });
    return TG_OK;
}
const tg__op tg__op_scale = {"scale", scale_backward};
