/* Elementwise ops: add, sub, mul, div with NumPy broadcasting; tanh, scale, neg, add_scalar, exp, log, sqrt,
   sigmoid and relu. */
#include <string.h>
#include <tgmath.h>
#include "ops_internal.h"
#include "vmath.h"

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

/* Operands of one shape (h Wh + x Wx, the common case) skip the multi-index: a flat loop with oa = ob = i.
   Once the shapes broadcast, operands as large as the output differ from it in leading 1s only, which lay
   the elements out alike: forward and backward tell the flat case by counts alone. */
static inline int same_dims(const tg_tensor *a, const tg_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}
#define EW_LOOP(flat, bc, STMT)                                                                    \
    do {                                                                                           \
        if (flat)                                                                                  \
            for (int64_t i = 0; i < (bc).n; i++) {                                                 \
                const int64_t oa = i, ob = i;                                                      \
                (void)oa, (void)ob;                                                                \
                STMT;                                                                              \
            }                                                                                      \
        else                                                                                       \
            BCAST_LOOP(bc, STMT);                                                                  \
    } while (0)

/* Shapes that differ, apart: their frame (the message's buffers, the strides) was nearly half of the
   common case's cost while it shared it. */
static __attribute__((noinline)) tg_status bcast_shapes(const char *fn, tg_tensor *const *in, int *ndim,
                                                        int64_t *shape) {
    char sa[TG__SHAPE_STR], sb[TG__SHAPE_STR];
    bcast bc;
    if (!bcast_init(&bc, in[0], in[1]))
        return tg__fail(TG_ESHAPE, "%s: shapes %s and %s do not broadcast", fn,
                        tg__shape_str(in[0]->ndim, in[0]->shape, sa), tg__shape_str(in[1]->ndim, in[1]->shape, sb));
    *ndim = bc.nd;
    memcpy(shape, bc.shape, (size_t)bc.nd * sizeof *shape);
    return TG_OK;
}

static tg_status bcast_shape(const char *fn, tg_tensor *const *in, int n, tg__args *args, int *ndim,
                             int64_t *shape) {
    (void)n, (void)args;
    if (!same_dims(in[0], in[1])) return bcast_shapes(fn, in, ndim, shape);
    *ndim = in[0]->ndim;
    memcpy(shape, in[0]->shape, sizeof in[0]->shape);
    return TG_OK;
}

/* One forward and one backward for the binary ops; kind picks the arithmetic. The switch sits
   outside the loops, so each op's inner loop is its own. */
enum { ADD, SUB, MUL, DIV };

static TG__INLINE tg_status binary_forward(int kind, int flat, tg_tensor *const *in, tg_tensor *y) {
    const tg_tensor *a = in[0], *b = in[1];
    bcast bc;
    if (!flat) bcast_init(&bc, a, b);
    bc.n = y->numel;
    TG__DISPATCH(a->dtype, {
        const T *pa = a->data, *pb = b->data;
        T *py = y->data;
        if (kind == ADD) EW_LOOP(flat, bc, py[i] = pa[oa] + pb[ob]);
        else if (kind == SUB) EW_LOOP(flat, bc, py[i] = pa[oa] - pb[ob]);
        else if (kind == MUL) EW_LOOP(flat, bc, py[i] = pa[oa] * pb[ob]);
        else EW_LOOP(flat, bc, py[i] = pa[oa] / pb[ob]);
    });
    return TG_OK;
}

/* d(a/b) = da / b - a db / b^2 = (da - y db) / b, with y = a / b the saved output. A fresh gradient of an
   operand as large as the output is assigned (each of its elements meets one output element); a
   broadcast one sums several, so it is zeroed first. */
static TG__INLINE tg_status binary_backward(int kind, int flat, const tg__node *node, const tg_tensor *gout,
                                        void *const *grads) {
    const tg_tensor *a = node->in[0], *b = node->in[1];
    bcast bc;
    if (!flat) bcast_init(&bc, a, b);
    bc.n = gout->numel;
    int fresh_a = tg__fresh(node, 0), fresh_b = tg__fresh(node, 1);
    int set_a = fresh_a && (flat || a->numel == gout->numel), set_b = fresh_b && (flat || b->numel == gout->numel);
    if (grads[0] && fresh_a && !set_a) memset(grads[0], 0, (size_t)a->numel * tg__dsize(a->dtype));
    if (grads[1] && fresh_b && !set_b) memset(grads[1], 0, (size_t)b->numel * tg__dsize(b->dtype));
    TG__DISPATCH(a->dtype, {
        const T *g = gout->data, *pa = a->data, *pb = b->data, *py = node->out->data;
        T *ga = grads[0], *gb = grads[1];
        if (ga && set_a) {
            if (kind == MUL) EW_LOOP(flat, bc, ga[oa] = g[i] * pb[ob]);
            else if (kind == DIV) EW_LOOP(flat, bc, ga[oa] = g[i] / pb[ob]);
            else EW_LOOP(flat, bc, ga[oa] = g[i]);
        } else if (ga) {
            if (kind == MUL) EW_LOOP(flat, bc, ga[oa] += g[i] * pb[ob]);
            else if (kind == DIV) EW_LOOP(flat, bc, ga[oa] += g[i] / pb[ob]);
            else EW_LOOP(flat, bc, ga[oa] += g[i]);
        }
        if (gb && set_b) {
            if (kind == MUL) EW_LOOP(flat, bc, gb[ob] = g[i] * pa[oa]);
            else if (kind == DIV) EW_LOOP(flat, bc, gb[ob] = -(g[i] * py[i] / pb[ob]));
            else if (kind == SUB) EW_LOOP(flat, bc, gb[ob] = -g[i]);
            else EW_LOOP(flat, bc, gb[ob] = g[i]);
        } else if (gb) {
            if (kind == MUL) EW_LOOP(flat, bc, gb[ob] += g[i] * pa[oa]);
            else if (kind == DIV) EW_LOOP(flat, bc, gb[ob] -= g[i] * py[i] / pb[ob]);
            else if (kind == SUB) EW_LOOP(flat, bc, gb[ob] -= g[i]);
            else EW_LOOP(flat, bc, gb[ob] += g[i]);
        }
    });
    return TG_OK;
}

/* Each built twice, for operands laid out alike (flat) and for broadcasting: the flat copy keeps no strides
   and knows every fresh buffer is assigned, which took a tenth off a one-element op's tape overhead. */
TG__CLONES static tg_status forward_flat(int kind, tg_tensor *const *in, tg_tensor *y) {
    return binary_forward(kind, 1, in, y);
}
TG__CLONES static tg_status forward_bcast(int kind, tg_tensor *const *in, tg_tensor *y) {
    return binary_forward(kind, 0, in, y);
}
TG__CLONES static tg_status backward_flat(int kind, const tg__node *node, const tg_tensor *g, void *const *grads) {
    return binary_backward(kind, 1, node, g, grads);
}
TG__CLONES static tg_status backward_bcast(int kind, const tg__node *node, const tg_tensor *g, void *const *grads) {
    return binary_backward(kind, 0, node, g, grads);
}
static inline int alike(const tg_tensor *a, const tg_tensor *b, int64_t n) { return a->numel == n && b->numel == n; }

#define BINARY(op, KIND, SAVE)                                                                     \
    static tg_status op##_forward(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *y) { \
        (void)n, (void)args;                                                                       \
        return alike(in[0], in[1], y->numel) ? forward_flat(KIND, in, y)                          \
                                              : forward_bcast(KIND, in, y);                         \
    }                                                                                              \
    static tg_status op##_backward(const tg__node *node, const tg_tensor *g, void *const *grads) { \
        return alike(node->in[0], node->in[1], g->numel) ? backward_flat(KIND, node, g, grads)      \
                                                         : backward_bcast(KIND, node, g, grads);    \
    }                                                                                              \
    const tg__op tg__op_##op = {.name = #op, .fn = "tg_" #op, .names = names_ab, .save = SAVE,     \
                                .flags = TG__FILLS, .shape = bcast_shape, .forward = op##_forward,  \
                                .backward = op##_backward};                                        \
    tg_tensor *tg_##op(tg_tape *tape, tg_tensor *a, tg_tensor *b) {                                \
        return tg__apply(tape, &tg__op_##op, (tg_tensor *[]){a, b}, 2, &tg__no_args);              \
    }

BINARY(add, ADD, TG__SAVE_NONE)
BINARY(sub, SUB, TG__SAVE_NONE)
BINARY(mul, MUL, TG__SAVE_INPUTS)
BINARY(div, DIV, TG__SAVE_ALL)

/* ---- unary ops: y = f(x), any shape; each op's forward and backward side by side ---- */

tg_status tg__shape_of_first(const char *fn, tg_tensor *const *in, int n, tg__args *args, int *ndim, int64_t *shape) {
    (void)fn, (void)n, (void)args;
    *ndim = in[0]->ndim;
    memcpy(shape, in[0]->shape, sizeof in[0]->shape); /* whole: a fixed size copies inline, without a call */
    return TG_OK;
}

/* The loop of every unary forward (y[i] = EXPR of x = px[i], and a = args->f[0]) and backward
   (gx[i] += EXPR of g = pg[i], X = px[i], Y = py[i] and a; = into a fresh buffer). */
#define UNARY_FORWARD(op, EXPR)                                                                    \
    static tg_status op##_forward(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *out) { \
        (void)n, (void)args;                                                                       \
        TG__DISPATCH(out->dtype, {                                                                 \
            const T *px = in[0]->data, a = (T)args->f[0];                                          \
            T *py = out->data;                                                                     \
            (void)a;                                                                               \
            for (int64_t i = 0; i < out->numel; i++) {                                             \
                const T x = px[i];                                                                 \
                py[i] = (EXPR);                                                                    \
            }                                                                                      \
        });                                                                                        \
        return TG_OK;                                                                              \
    }
#define UNARY_BACKWARD(op, EXPR)                                                                   \
    static tg_status op##_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) { \
        TG__DISPATCH(gout->dtype, {                                                                \
            const T *pg = gout->data, *px = node->in[0]->data, *py = node->out->data;              \
            const T a = (T)node->args.f[0];                                                        \
            T *gx = grads[0];                                                                      \
            (void)px, (void)py, (void)a;                                                           \
            if (tg__fresh(node, 0))                                                                \
                for (int64_t i = 0; i < gout->numel; i++) {                                        \
                    const T g = pg[i];                                                             \
                    gx[i] = (EXPR);                                                                \
                }                                                                                  \
            else                                                                                   \
                for (int64_t i = 0; i < gout->numel; i++) {                                        \
                    const T g = pg[i];                                                             \
                    gx[i] += (EXPR);                                                               \
                }                                                                                  \
        });                                                                                        \
        return TG_OK;                                                                              \
    }
/* In a backward's EXPR, X and Y read the input and output only where it uses them: an op reads only what
   it saved, and a tensor no node saved may have given its data back (tg__tape_release). */
#define X (px[i])
#define Y (py[i])

/* A forward through vmath.c's vector loops (SLEEF, 1 ulp) instead of libm's scalar calls. */
#define VMATH_FORWARD(op, FN)                                                                      \
    static tg_status op##_forward(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *out) { \
        (void)n, (void)args;                                                                       \
        tg__vmath(FN, out->dtype == TG_F64, in[0]->data, out->data, out->numel);                   \
        return TG_OK;                                                                              \
    }
#define UNARY_OP(op, SAVE, FARG)                                                                   \
    const tg__op tg__op_##op = {.name = #op, .fn = "tg_" #op, .names = names_x, .save = SAVE,      \
                                .flags = TG__FILLS, .farg = {FARG}, .shape = tg__shape_of_first,   \
                                .forward = op##_forward,                                           \
                                .backward = op##_backward};

/* tanh: dx += dy (1 - y^2), from the saved output rather than recomputing tanh. */
VMATH_FORWARD(tanh, TG__VTANH)
UNARY_BACKWARD(tanh, g * (1 - Y * Y))
UNARY_OP(tanh, TG__SAVE_OUTPUT, NULL)
tg_tensor *tg_tanh(tg_tape *tape, tg_tensor *x) { return tg__apply(tape, &tg__op_tanh, &x, 1, &tg__no_args); }

/* scale: y = alpha x; dx += alpha dy. */
UNARY_FORWARD(scale, a * x)
UNARY_BACKWARD(scale, a * g)
UNARY_OP(scale, TG__SAVE_NONE, "alpha")
tg_tensor *tg_scale(tg_tape *tape, tg_tensor *x, double alpha) {
    return tg__apply(tape, &tg__op_scale, &x, 1, &(tg__args){.f = {alpha}});
}

UNARY_FORWARD(neg, -x)
UNARY_BACKWARD(neg, -g)
UNARY_OP(neg, TG__SAVE_NONE, NULL)
tg_tensor *tg_neg(tg_tape *tape, tg_tensor *x) { return tg__apply(tape, &tg__op_neg, &x, 1, &tg__no_args); }

UNARY_FORWARD(add_scalar, x + a)
UNARY_BACKWARD(add_scalar, g)
UNARY_OP(add_scalar, TG__SAVE_NONE, "c")
tg_tensor *tg_add_scalar(tg_tape *tape, tg_tensor *x, double c) {
    return tg__apply(tape, &tg__op_add_scalar, &x, 1, &(tg__args){.f = {c}});
}

VMATH_FORWARD(exp, TG__VEXP)
UNARY_BACKWARD(exp, g * Y)
UNARY_OP(exp, TG__SAVE_OUTPUT, NULL)
tg_tensor *tg_exp(tg_tape *tape, tg_tensor *x) { return tg__apply(tape, &tg__op_exp, &x, 1, &tg__no_args); }

VMATH_FORWARD(log, TG__VLOG)
UNARY_BACKWARD(log, g / X)
UNARY_OP(log, TG__SAVE_INPUTS, NULL)
tg_tensor *tg_log(tg_tape *tape, tg_tensor *x) { return tg__apply(tape, &tg__op_log, &x, 1, &tg__no_args); }

UNARY_FORWARD(sqrt, sqrt(x))
UNARY_BACKWARD(sqrt, g / (2 * Y))
UNARY_OP(sqrt, TG__SAVE_OUTPUT, NULL)
tg_tensor *tg_sqrt(tg_tape *tape, tg_tensor *x) { return tg__apply(tape, &tg__op_sqrt, &x, 1, &tg__no_args); }

/* sigmoid: stable for any x (vmath.c says how); for large |x| the result rounds to exactly 0 or 1 and
   y (1 - y) to 0. */
VMATH_FORWARD(sigmoid, TG__VSIGMOID)
UNARY_BACKWARD(sigmoid, g * Y * (1 - Y))
UNARY_OP(sigmoid, TG__SAVE_OUTPUT, NULL)
tg_tensor *tg_sigmoid(tg_tape *tape, tg_tensor *x) {
    return tg__apply(tape, &tg__op_sigmoid, &x, 1, &tg__no_args);
}

/* relu: a NaN passes through (as NumPy's maximum and PyTorch's relu) rather than hiding as 0. */
UNARY_FORWARD(relu, x > 0 || isnan(x) ? x : 0)
UNARY_BACKWARD(relu, X > 0 ? g : 0)
UNARY_OP(relu, TG__SAVE_INPUTS, NULL)
tg_tensor *tg_relu(tg_tape *tape, tg_tensor *x) { return tg__apply(tape, &tg__op_relu, &x, 1, &tg__no_args); }
