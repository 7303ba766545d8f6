/* Every built-in op: f64 gradient checks over awkward shapes, f32 against f64, and each op's errors.
   The case table is checked against the library's op table, so a new op without a case fails here. */
#include <math.h>
#include "tg_testutil.h"

/* Case rows leave trailing fields out: they default to 0. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define MAXIN 4
typedef struct {
    const char *op; /* the op table's name */
    int n;          /* inputs */
    int ndim[MAXIN];
    int64_t shape[MAXIN][TG_MAX_DIMS];
    int64_t arg[3]; /* axis, start/index, stop */
    double lo, hi;  /* the inputs' range; both 0: [-1, 1) */
    unsigned index_mask;           /* bit i: input i holds TG_I64 indices in [0, index_max), never a param */
    int64_t index_max, index_skip; /* index_skip k > 0: every k-th index is -1 (an ignored target) */
} op_case;

/* softplus(x) = log(1 + e^x), elementwise: the custom-op door's test case. */
static tg_status sp_forward(tg_tensor *const *in, int n, tg_tensor *out, void *user) {
    (void)n, (void)user;
    for (int64_t i = 0; i < tg_tensor_numel(out); i++) tg_tensor_set(out, i, log1p(exp(tg_tensor_get(in[0], i))));
    return TG_OK;
}
static tg_status sp_backward(tg_tensor *const *in, int n, tg_tensor *out, tg_tensor *gout, void *const *grads,
                             void *user) {
    (void)n, (void)out, (void)user;
    if (!grads[0]) return TG_OK;
    for (int64_t i = 0; i < tg_tensor_numel(in[0]); i++) {
        double d = tg_tensor_get(gout, i) / (1 + exp(-tg_tensor_get(in[0], i)));
        if (tg_tensor_dtype(in[0]) == TG_F32) ((float *)grads[0])[i] += (float)d;
        else ((double *)grads[0])[i] += d;
    }
    return TG_OK;
}
static const tg_op_def softplus = {"softplus", tt_same_shape, sp_forward, sp_backward};

static tg_tensor *run_op(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    const op_case *c = ctx;
    const char *op = c->op;
    if (!strcmp(op, "matmul")) return tg_matmul(tape, in[0], in[1]);
    if (!strcmp(op, "add")) return tg_add(tape, in[0], in[1]);
    if (!strcmp(op, "sub")) return tg_sub(tape, in[0], in[1]);
    if (!strcmp(op, "mul")) return tg_mul(tape, in[0], in[1]);
    if (!strcmp(op, "div")) return tg_div(tape, in[0], in[1]);
    if (!strcmp(op, "tanh")) return tg_tanh(tape, in[0]);
    if (!strcmp(op, "scale")) return tg_scale(tape, in[0], -1.75);
    if (!strcmp(op, "slice")) return tg_slice(tape, in[0], (int)c->arg[0], c->arg[1], c->arg[2]);
    if (!strcmp(op, "select")) return tg_select(tape, in[0], (int)c->arg[0], c->arg[1]);
    if (!strcmp(op, "stack")) return tg_stack(tape, in, c->n, (int)c->arg[0]);
    if (!strcmp(op, "reshape")) return tg_reshape(tape, in[0], (int)c->arg[0], c->shape[MAXIN - 1]);
    if (!strcmp(op, "sum")) return tg_sum(tape, in[0]);
    if (!strcmp(op, "mean")) return tg_mean(tape, in[0]);
    if (!strcmp(op, "custom")) return tg_custom(tape, &softplus, in, 1, NULL);
    if (!strcmp(op, "linear")) return tg_linear(tape, in[0], in[1], c->n > 2 ? in[2] : NULL);
    if (!strcmp(op, "embedding")) return tg_embedding(tape, in[0], in[1]);
    if (!strcmp(op, "softmax")) return tg_softmax(tape, in[0], (int)c->arg[0]);
    if (!strcmp(op, "log_softmax")) return tg_log_softmax(tape, in[0], (int)c->arg[0]);
    if (!strcmp(op, "cross_entropy")) return tg_cross_entropy(tape, in[0], in[1], -1);
    if (!strcmp(op, "dropout")) { /* a fresh copy of one stream per call: every call the same mask */
        tg_rng rng;
        tg_rng_seed(&rng, 42);
        return tg_dropout(tape, in[0], 0.4, &rng);
    }
    return NULL;
}

#define S(...) {__VA_ARGS__}
static const op_case cases[] = {
    {"matmul", 2, {2, 2}, {S(3, 4), S(4, 2)}, {0}},
    {"matmul", 2, {2, 2}, {S(1, 1), S(1, 1)}, {0}},
    {"matmul", 2, {2, 2}, {S(1, 5), S(5, 3)}, {0}},
    {"matmul", 2, {2, 2}, {S(4, 1), S(1, 2)}, {0}},
    {"add", 2, {2, 2}, {S(3, 4), S(3, 4)}, {0}},
    {"add", 2, {2, 1}, {S(3, 4), S(4)}, {0}},      /* (N,H) + (H,): the bias */
    {"add", 2, {2, 2}, {S(3, 1), S(1, 4)}, {0}},   /* both stretched */
    {"add", 2, {1, 3}, {S(1), S(2, 3, 2)}, {0}},   /* a size-1 vector onto 3-d */
    {"add", 2, {0, 2}, {S(0), S(2, 3)}, {0}},      /* a 0-d scalar */
    {"add", 2, {3, 2}, {S(2, 1, 3), S(4, 1)}, {0}},
    {"sub", 2, {2, 1}, {S(3, 4), S(4)}, {0}},
    {"sub", 2, {2, 2}, {S(3, 1), S(1, 4)}, {0}},
    {"sub", 2, {0, 2}, {S(0), S(2, 2)}, {0}},
    {"mul", 2, {2, 2}, {S(3, 4), S(3, 4)}, {0}},
    {"mul", 2, {2, 1}, {S(3, 4), S(4)}, {0}},
    {"mul", 2, {3, 2}, {S(2, 1, 3), S(4, 1)}, {0}},
    {"mul", 2, {1, 0}, {S(5), S(0)}, {0}},
    {"div", 2, {2, 2}, {S(3, 4), S(3, 4)}, {0}, 0.5, 2},
    {"div", 2, {2, 1}, {S(3, 4), S(4)}, {0}, 0.5, 2},
    {"div", 2, {0, 2}, {S(0), S(2, 3)}, {0}, 0.5, 2},    /* a scalar over a matrix */
    {"div", 2, {3, 2}, {S(2, 1, 3), S(4, 1)}, {0}, 0.5, 2},
    {"tanh", 1, {2}, {S(3, 4)}, {0}},
    {"tanh", 1, {0}, {S(0)}, {0}},
    {"tanh", 1, {3}, {S(1, 1, 5)}, {0}},
    {"scale", 1, {2}, {S(2, 3)}, {0}},
    {"slice", 1, {3}, {S(2, 5, 3)}, {1, 1, 4}},
    {"slice", 1, {3}, {S(2, 5, 3)}, {0, 0, 1}},
    {"slice", 1, {3}, {S(2, 5, 3)}, {2, 2, 3}},
    {"slice", 1, {2}, {S(1, 4)}, {1, 0, 4}},
    {"select", 1, {3}, {S(2, 5, 3)}, {1, 3, 0}}, /* xs[:, t, :] */
    {"select", 1, {3}, {S(2, 1, 3)}, {1, 0, 0}}, /* T = 1 */
    {"select", 1, {3}, {S(2, 5, 3)}, {0, 1, 0}},
    {"select", 1, {3}, {S(2, 5, 3)}, {2, 2, 0}},
    {"select", 1, {1}, {S(4)}, {0, 2, 0}},        /* to 0-d */
    {"stack", 3, {2, 2, 2}, {S(2, 3), S(2, 3), S(2, 3)}, {1, 0, 0}}, /* hs from T steps */
    {"stack", 3, {2, 2, 2}, {S(2, 3), S(2, 3), S(2, 3)}, {0, 0, 0}},
    {"stack", 2, {2, 2}, {S(2, 3), S(2, 3)}, {2, 0, 0}},
    {"stack", 1, {1}, {S(2)}, {0, 0, 0}},         /* T = 1 */
    {"stack", 2, {0, 0}, {S(0), S(0)}, {0, 0, 0}},
    {"reshape", 1, {3, 0, 0, 2}, {S(2, 3, 2), S(0), S(0), S(6, 2)}, {2, 0, 0}},
    {"reshape", 1, {0, 0, 0, 1}, {S(0), S(0), S(0), S(1)}, {1, 0, 0}},
    {"sum", 1, {2}, {S(3, 4)}, {0}},
    {"sum", 1, {0}, {S(0)}, {0}},
    {"sum", 1, {1}, {S(1)}, {0}},
    {"mean", 1, {2}, {S(3, 4)}, {0}},
    {"mean", 1, {3}, {S(1, 2, 1)}, {0}},
    {"custom", 1, {2}, {S(3, 4)}, {0}},
    {"custom", 1, {0}, {S(0)}, {0}},
    {"linear", 3, {2, 2, 1}, {S(4, 3), S(3, 2), S(2)}, {0}},
    {"linear", 3, {1, 2, 1}, {S(3), S(3, 2), S(2)}, {0}},             /* x 1-d */
    {"linear", 3, {3, 2, 1}, {S(2, 3, 4), S(4, 5), S(5)}, {0}},       /* (N,T,H): one GEMM */
    {"linear", 2, {2, 2}, {S(2, 3), S(3, 4)}, {0}},                   /* b NULL */
    {"linear", 3, {2, 2, 1}, {S(1, 1), S(1, 1), S(1)}, {0}},
    {"linear", 3, {3, 2, 1}, {S(2, 1, 3), S(3, 1), S(1)}, {0}},
    {"embedding", 2, {2, 1}, {S(5, 3), S(6)}, {0}, .index_mask = 2, .index_max = 3}, /* repeats, unused rows */
    {"embedding", 2, {2, 0}, {S(4, 2), S(0)}, {0}, .index_mask = 2, .index_max = 4}, /* 0-d indices */
    {"embedding", 2, {2, 2}, {S(4, 3), S(2, 3)}, {0}, .index_mask = 2, .index_max = 4}, /* (N,T) */
    {"softmax", 1, {2}, {S(3, 4)}, {-1}},
    {"softmax", 1, {3}, {S(2, 3, 4)}, {1}},
    {"softmax", 1, {3}, {S(2, 3, 4)}, {-3}},
    {"softmax", 1, {2}, {S(3, 1)}, {1}},                              /* an axis of size 1 */
    {"log_softmax", 1, {2}, {S(3, 4)}, {-1}},
    {"log_softmax", 1, {3}, {S(2, 3, 4)}, {-2}},
    {"log_softmax", 1, {2}, {S(3, 1)}, {-1}},
    {"log_softmax", 1, {1}, {S(5)}, {0}},
    {"cross_entropy", 2, {2, 1}, {S(4, 5), S(4)}, {0}, .index_mask = 2, .index_max = 5},
    {"cross_entropy", 2, {2, 1}, {S(6, 5), S(6)}, {0}, .index_mask = 2, .index_max = 5, .index_skip = 3},
    {"cross_entropy", 2, {3, 2}, {S(2, 3, 4), S(2, 3)}, {0}, .index_mask = 2, .index_max = 4, .index_skip = 2},
    {"cross_entropy", 2, {1, 0}, {S(5), S(0)}, {0}, .index_mask = 2, .index_max = 5},
    {"dropout", 1, {2}, {S(3, 4)}, {0}},
    {"dropout", 1, {3}, {S(2, 3, 5)}, {0}},
    {"dropout", 1, {0}, {S(0)}, {0}},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static void make_inputs(const op_case *c, tg_dtype dt, int needs_mask, tg_tensor **in) {
    for (int i = 0; i < c->n; i++) {
        if ((c->index_mask >> i) & 1) {
            cr_assert(in[i] = tg_tensor_new(TG_I64, c->ndim[i], c->shape[i]));
            for (int64_t k = 0; k < tg_tensor_numel(in[i]); k++) {
                int skip = c->index_skip && k % c->index_skip == c->index_skip - 1;
                tg_tensor_set(in[i], k, skip ? -1 : (double)((k * 7 + 3 + i) % c->index_max));
            }
            continue;
        }
        in[i] = tt_rand(dt, (needs_mask >> i) & 1, 100 + (uint64_t)i, c->ndim[i], c->shape[i]);
        if (c->lo == 0 && c->hi == 0) continue;
        uint64_t seed = 100 + (uint64_t)i;
        tg_tensor_fill_uniform(in[i], c->lo, c->hi, &seed);
    }
}
static void free_inputs(const op_case *c, tg_tensor **in) {
    for (int i = 0; i < c->n; i++) tg_tensor_free(in[i]);
}

Test(ops, every_op_has_a_gradient_check_case) {
    for (int k = 0; tg__op_list[k]; k++) {
        int found = 0;
        for (int c = 0; c < N_CASES; c++) found |= !strcmp(cases[c].op, tg__op_list[k]->name);
        cr_expect(found, "op %s has no case in test_ops.c", tg__op_list[k]->name);
    }
}

Test(ops, every_case_passes_gradcheck_in_f64) {
    for (int c = 0; c < N_CASES; c++) {
        /* all inputs needing gradients, then each input alone (the others constant) */
        int full = (1 << cases[c].n) - 1;
        for (int mask = full; mask > 0; mask = mask == full && cases[c].n > 1 ? 1 : mask << 1) {
            if (mask > full) break;
            if (!(mask & ~(int)cases[c].index_mask)) continue; /* indices alone: nothing to check */
            tg_tensor *in[MAXIN];
            make_inputs(&cases[c], TG_F64, mask, in);
            tg_gradcheck_report r;
            int ok = tg_gradcheck(run_op, (void *)&cases[c], in, cases[c].n, NULL, &r);
            cr_expect(ok, "case %d (%s), grad mask %d: %s", c, cases[c].op, mask, r.message);
            free_inputs(&cases[c], in);
            if (mask == full && cases[c].n == 1) break;
        }
    }
}

/* Backward must add into gradients, never overwrite: with the op used twice, a kernel that writes
   instead of adding loses the first use's contribution. */
static tg_tensor *run_op_twice(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    return tg_add(tape, run_op(tape, in, ctx), run_op(tape, in, ctx));
}

Test(ops, every_case_accumulates_when_used_twice) {
    for (int c = 0; c < N_CASES; c++) {
        tg_tensor *in[MAXIN];
        make_inputs(&cases[c], TG_F64, ~0, in);
        tg_gradcheck_report r;
        cr_expect(tg_gradcheck(run_op_twice, (void *)&cases[c], in, cases[c].n, NULL, &r), "case %d (%s): %s", c,
                  cases[c].op, r.message);
        free_inputs(&cases[c], in);
    }
}

/* f32 kernels: the same values as f64 within f32 rounding, forward and backward. */
Test(ops, f32_matches_f64) {
    for (int c = 0; c < N_CASES; c++) {
        tg_tensor *in64[MAXIN], *in32[MAXIN];
        make_inputs(&cases[c], TG_F64, ~0, in64);
        for (int i = 0; i < cases[c].n; i++) {
            in32[i] = tg_tensor_requires_grad(in64[i]) ? tg_param_new(TG_F32, cases[c].ndim[i], cases[c].shape[i])
                                                        : tg_tensor_new(tg_tensor_dtype(in64[i]) == TG_I64 ? TG_I64 : TG_F32,
                                                                        cases[c].ndim[i], cases[c].shape[i]);
            for (int64_t j = 0; j < tg_tensor_numel(in64[i]); j++) tg_tensor_set(in32[i], j, tg_tensor_get(in64[i], j));
        }
        tg_tape *tape = tg_tape_new();
        tg_tensor *y64 = run_op(tape, in64, (void *)&cases[c]), *y32 = run_op(tape, in32, (void *)&cases[c]);
        cr_assert(y64 && y32, "case %d: %s", c, tg_last_error());
        for (int64_t j = 0; j < tg_tensor_numel(y64); j++)
            cr_expect(fabs(tg_tensor_get(y64, j) - tg_tensor_get(y32, j)) < 1e-5, "case %d (%s) output %lld", c,
                      cases[c].op, (long long)j);
        cr_assert_eq(tg_backward(tape, tg_sum(tape, tg_mul(tape, y64, y64)), NULL), TG_OK);
        cr_assert_eq(tg_tape_size(tape) > 0, 1);
        tg_tape_reset(tape);
        y32 = run_op(tape, in32, (void *)&cases[c]);
        cr_assert_eq(tg_backward(tape, tg_sum(tape, tg_mul(tape, y32, y32)), NULL), TG_OK, "%s", tg_last_error());
        for (int i = 0; i < cases[c].n; i++)
            for (int64_t j = 0; j < tg_tensor_numel(in64[i]) && tg_tensor_requires_grad(in64[i]); j++) {
                double g64 = ((double *)tg_tensor_grad(in64[i]))[j], g32 = ((float *)tg_tensor_grad(in32[i]))[j];
                cr_expect(fabs(g64 - g32) < 1e-4 * (1 + fabs(g64)), "case %d (%s) input %d grad %lld: %g vs %g", c,
                          cases[c].op, i, (long long)j, g64, g32);
            }
        tg_tape_free(tape);
        free_inputs(&cases[c], in64);
        free_inputs(&cases[c], in32);
    }
}

Test(ops, forward_values) {
    tg_tape *tape = tg_tape_new();
    double a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 0, 1, 1, 1};
    tg_tensor *A = tg_tensor_from(TG_F64, 2, TT_SHAPE(2, 3), a), *B = tg_tensor_from(TG_F64, 2, TT_SHAPE(3, 2), b);
    tg_tensor *C = tg_matmul(tape, A, B); /* [[1+3, 2+3], [4+6, 5+6]] */
    double want[4] = {4, 5, 10, 11};
    for (int i = 0; i < 4; i++) cr_expect_eq(tg_tensor_get(C, i), want[i]);
    tg_tensor *r = tg_tensor_from(TG_F64, 1, TT_SHAPE(3), (double[]){10, 20, 30});
    tg_tensor *s = tg_add(tape, A, r);
    cr_expect_eq(tg_tensor_get(s, 4), 25.0);
    tg_tensor *e = tg_matmul(tape, tg_slice(tape, A, 1, 0, 0), tg_slice(tape, B, 0, 0, 0)); /* K = 0 */
    cr_assert(e);
    for (int i = 0; i < 4; i++) cr_expect_eq(tg_tensor_get(e, i), 0.0, "an empty sum is zero");
    tg_tensor *st = tg_stack(tape, (tg_tensor *[]){A, A}, 2, 1);
    cr_expect_eq(tg_tensor_ndim(st), 3);
    cr_expect_eq(tg_tensor_shape(st)[1], 2);
    cr_expect_eq(tg_tensor_get(st, 3), 1.0);
    cr_expect_eq(tg_tensor_get(tg_select(tape, st, 1, 1), 4), 5.0);
    cr_expect_eq(tg_tensor_get(tg_mean(tape, A), 0), 3.5);
    cr_expect(isnan(tg_tensor_get(tg_mean(tape, tg_slice(tape, A, 0, 1, 1)), 0)));
    tg_tape_free(tape);
    tg_tensor_free(A), tg_tensor_free(B), tg_tensor_free(r);
}

/* Empty tensors whose other dims are huge: nothing to compute, and no product may overflow (the
   sanitizer build checks the arithmetic). */
Test(ops, empty_tensors_with_huge_dims) {
    tg_tape *tape = tg_tape_new();
    const int64_t big = (int64_t)1 << 40;
    tg_tensor *a = tg_param_new(TG_F64, 3, TT_SHAPE(0, 1, big)), *b = tg_param_new(TG_F64, 3, TT_SHAPE(0, big, 1));
    tg_tensor *c = tg_param_new(TG_F64, 3, TT_SHAPE(big, (int64_t)1 << 24, 0));
    tg_tensor *y = tg_add(tape, a, b);
    cr_assert(y, "%s", tg_last_error());
    cr_expect_eq(tg_tensor_numel(y), 0);
    cr_expect_eq(tg_tensor_shape(y)[1], big);
    tg_tensor *s = tg_slice(tape, c, 1, 2, 5), *st = tg_stack(tape, (tg_tensor *[]){c, c}, 2, 1);
    cr_assert(s && st, "%s", tg_last_error());
    tg_tensor *L = tg_add(tape, tg_add(tape, tg_sum(tape, y), tg_sum(tape, s)), tg_sum(tape, st));
    cr_expect_eq(tg_backward(tape, L, NULL), TG_OK);
    cr_expect_eq(tg_tensor_get(L, 0), 0.0);
    tg_tape_free(tape);
    tg_tensor_free(a), tg_tensor_free(b), tg_tensor_free(c);
}

Test(ops, shape_errors_name_the_values) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *a = TT_RAND(TG_F64, 1, 1, 4, 3), *v = TT_RAND(TG_F64, 1, 2, 3), *x = TT_RAND(TG_F64, 1, 3, 2, 5, 3);
    tg_tensor *f = TT_RAND(TG_F32, 1, 4, 3, 2);
    tg_clear_error();
    cr_expect_null(tg_matmul(tape, a, a));
    tt_expect_error(TG_ESHAPE, "tg_matmul: inner dimensions differ: (4,3) @ (4,3)");
    cr_expect_null(tg_matmul(tape, a, v));
    tt_expect_error(TG_ESHAPE, "tg_matmul: needs 2-d operands: (4,3) @ (3,)");
    cr_expect_null(tg_matmul(tape, a, f));
    tt_expect_error(TG_EDTYPE, "tg_matmul: dtypes differ: a is f64, b is f32 (no promotion)");
    /* BLAS counts in int: an empty (2^31, 0) operand allocates nothing, but its M does not fit */
    tg_tensor *tall = tg_param_new(TG_F64, 2, TT_SHAPE((int64_t)1 << 31, 0)), *e = tg_param_new(TG_F64, 2, TT_SHAPE(0, 2));
    cr_expect_null(tg_matmul(tape, tall, e));
    tt_expect_error(TG_ESHAPE, "tg_matmul: dimensions beyond BLAS's int range: (2147483648,0) @ (0,2)");
    tg_tensor_free(tall), tg_tensor_free(e);
    cr_expect_null(tg_add(tape, a, x));
    tt_expect_error(TG_ESHAPE, "tg_add: shapes (4,3) and (2,5,3) do not broadcast");
    cr_expect_null(tg_sub(tape, f, a));
    tt_expect_error(TG_EDTYPE, "tg_sub: dtypes differ");
    cr_expect_null(tg_mul(tape, NULL, a));
    tt_expect_error(TG_EINVAL, "tg_mul: a is NULL");
    cr_expect_null(tg_slice(tape, x, 1, 2, 6));
    tt_expect_error(TG_EINVAL, "tg_slice: [2, 6) is out of range for axis 1 of shape (2,5,3)");
    cr_expect_null(tg_slice(tape, x, 1, 3, 2));
    tt_expect_error(TG_EINVAL, "tg_slice: [3, 2) is out of range");
    cr_expect_null(tg_slice(tape, x, 3, 0, 1));
    tt_expect_error(TG_EINVAL, "tg_slice: axis 3 is out of range for shape (2,5,3)");
    cr_expect_null(tg_select(tape, x, 1, 5));
    tt_expect_error(TG_EINVAL, "tg_select: index 5 is out of range for axis 1 of shape (2,5,3)");
    cr_expect_null(tg_select(tape, x, -4, 0));
    tt_expect_error(TG_EINVAL, "tg_select: axis -4 is out of range for shape (2,5,3) (want -3..2)");
    cr_expect_null(tg_stack(tape, (tg_tensor *[]){a, a}, 2, -4));
    tt_expect_error(TG_EINVAL, "tg_stack: axis -4 is out of range for 2 inputs of shape (4,3) (want -3..2)");
    cr_expect_null(tg_stack(tape, (tg_tensor *[]){a, x}, 2, 0));
    tt_expect_error(TG_ESHAPE, "tg_stack: input 1 has shape (2,5,3), input 0 has (4,3)");
    cr_expect_null(tg_stack(tape, (tg_tensor *[]){a, a}, 2, 3));
    tt_expect_error(TG_EINVAL, "tg_stack: axis 3 is out of range for 2 inputs of shape (4,3)");
    tg_tensor *d8 = tg_tensor_new(TG_F64, 8, TT_SHAPE(1, 1, 1, 1, 1, 1, 1, 2));
    cr_expect_null(tg_stack(tape, &d8, 1, 0));
    tt_expect_error(TG_ESHAPE, "tg_stack: inputs of shape (1,1,1,1,1,1,1,2) already have 8 dims; the result would have 9");
    tg_tensor_free(d8);
    cr_expect_null(tg_stack(tape, (tg_tensor *[]){a}, 0, 0));
    tt_expect_error(TG_EINVAL, "tg_stack: needs at least one tensor, got 0");
    cr_expect_null(tg_stack(tape, NULL, 2, 0));
    tt_expect_error(TG_EINVAL, "tg_stack: xs is NULL");
    cr_expect_null(tg_stack(tape, (tg_tensor *[]){a, NULL}, 2, 0));
    tt_expect_error(TG_EINVAL, "tg_stack: input 1 is NULL");
    cr_expect_null(tg_reshape(tape, x, 2, TT_SHAPE(4, 4)));
    tt_expect_error(TG_ESHAPE, "tg_reshape: cannot reshape (2,5,3) (30 elements) to (4,4)");
    cr_expect_null(tg_reshape(tape, x, 2, TT_SHAPE(-30, -1)));
    tt_expect_error(TG_ESHAPE, "tg_reshape: negative dimension");
    tg_tape_free(tape);
    tg_tensor_free(a), tg_tensor_free(v), tg_tensor_free(x), tg_tensor_free(f);
}

/* ---- custom ops: the door's own errors ---- */
static tg_status fail_shape(tg_tensor *const *in, int n, void *user, int *ndim, int64_t *shape) {
    (void)in, (void)n, (void)shape;
    *ndim = user ? 9 : 0;
    return user ? TG_OK : TG_ESHAPE;
}
static tg_status fail_forward(tg_tensor *const *in, int n, tg_tensor *out, void *user) {
    (void)in, (void)n, (void)out, (void)user;
    return TG_EINVAL;
}
static tg_status fail_backward(tg_tensor *const *in, int n, tg_tensor *out, tg_tensor *gout, void *const *grads,
                               void *user) {
    (void)in, (void)n, (void)out, (void)gout, (void)grads, (void)user;
    return TG_EDTYPE;
}
static const tg_op_def bad_shape = {"badshape", fail_shape, sp_forward, sp_backward};
static const tg_op_def bad_forward = {"badfwd", tt_same_shape, fail_forward, sp_backward};
static const tg_op_def bad_backward = {"badbwd", tt_same_shape, sp_forward, fail_backward};
static const tg_op_def incomplete = {"half", tt_same_shape, NULL, sp_backward};

Test(custom, callback_failures_reach_the_caller_with_the_op_name) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *p = TT_RAND(TG_F64, 1, 1, 3);
    tg_clear_error();
    cr_expect_null(tg_custom(tape, &bad_shape, &p, 1, NULL));
    tt_expect_error(TG_ESHAPE, "badshape: shape failed with TG_ESHAPE");
    cr_expect_null(tg_custom(tape, &bad_shape, &p, 1, (void *)1));
    tt_expect_error(TG_ESHAPE, "badshape: shape gave rank 9, outside 0..8");
    cr_expect_null(tg_custom(tape, &bad_forward, &p, 1, NULL));
    tt_expect_error(TG_EINVAL, "badfwd: forward failed with TG_EINVAL");
    tg_tensor *y = tg_custom(tape, &bad_backward, &p, 1, NULL);
    cr_assert(y);
    cr_expect_eq(tg_backward(tape, tg_sum(tape, y), NULL), TG_EDTYPE);
    tt_expect_error(TG_EDTYPE, "badbwd: backward failed with TG_EDTYPE");
    cr_expect_null(tg_custom(tape, &incomplete, &p, 1, NULL));
    tt_expect_error(TG_EINVAL, "tg_custom: op half is incomplete");
    cr_expect_null(tg_custom(tape, NULL, &p, 1, NULL));
    tt_expect_error(TG_EINVAL, "tg_custom: op (unnamed) is incomplete");
    cr_expect_null(tg_custom(tape, &softplus, &p, 0, NULL));
    tt_expect_error(TG_EINVAL, "tg_custom: softplus: 0 inputs, want 1..64");
    cr_expect_null(tg_custom(tape, &softplus, (tg_tensor *[]){NULL}, 1, NULL));
    tt_expect_error(TG_EINVAL, "softplus: input 0 is NULL");
    tg_tape_free(tape);
    tg_tensor_free(p);
}

Test(custom, is_a_node_like_any_other) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *p = TT_RAND(TG_F64, 1, 1, 2, 2);
    tg_tensor *y = tg_custom(tape, &softplus, &p, 1, NULL);
    cr_assert(y);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    tg_tape_print(tape, f);
    tg_tape_write_dot(tape, f);
    fclose(f);
    cr_expect(strstr(buf, "%0    softplus   (param(2,2)) -> (2,2)  saved: (2,2) (2,2)"), "%s", buf);
    cr_expect(strstr(buf, "%0 softplus"), "%s", buf);
    free(buf);
    /* its saved input is fingerprinted */
    ((double *)tg_tensor_data(p))[0] += 1;
    cr_expect_eq(tg_backward(tape, tg_sum(tape, y), NULL), TG_EMODIFIED);
    tt_expect_error(TG_EMODIFIED, "softplus (node 0)");
    tg_tape_free(tape);
    tg_tensor_free(p);
}
