/* Every built-in op: f64 gradient checks over awkward shapes, f32 against f64, and each op's errors.
   The case table is checked against the library's op table, so a new op without a case fails here. */
#include <fenv.h>
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
static const tg_op_def softplus = {.name = "softplus", .shape = tt_same_shape, .forward = sp_forward, .backward = sp_backward};

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
    if (!strcmp(op, "neg")) return tg_neg(tape, in[0]);
    if (!strcmp(op, "add_scalar")) return tg_add_scalar(tape, in[0], 0.75);
    if (!strcmp(op, "exp")) return tg_exp(tape, in[0]);
    if (!strcmp(op, "log")) return tg_log(tape, in[0]);
    if (!strcmp(op, "sqrt")) return tg_sqrt(tape, in[0]);
    if (!strcmp(op, "sigmoid")) return tg_sigmoid(tape, in[0]);
    if (!strcmp(op, "relu")) return tg_relu(tape, in[0]);
    /* arg[0] the axis, arg[1] keepdims (transpose: the second axis) */
    if (!strcmp(op, "sum_axis")) return tg_sum_axis(tape, in[0], (int)c->arg[0], (int)c->arg[1]);
    if (!strcmp(op, "mean_axis")) return tg_mean_axis(tape, in[0], (int)c->arg[0], (int)c->arg[1]);
    if (!strcmp(op, "max_axis")) return tg_max_axis(tape, in[0], (int)c->arg[0], (int)c->arg[1]);
    if (!strcmp(op, "transpose")) return tg_transpose(tape, in[0], (int)c->arg[0], (int)c->arg[1]);
    if (!strcmp(op, "concat")) return tg_concat(tape, in, c->n, (int)c->arg[0]);
    if (!strcmp(op, "linear")) return tg_linear(tape, in[0], in[1], c->n > 2 ? in[2] : NULL);
    if (!strcmp(op, "addmm")) return tg_addmm(tape, in[0], in[1], in[2]);
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
    {"matmul", 2, {3, 3}, {S(2, 3, 4), S(2, 4, 2)}, {0}},       /* a batch of 2 */
    {"matmul", 2, {3, 2}, {S(2, 3, 4), S(4, 2)}, {0}},          /* one weight for the batch: one GEMM */
    {"matmul", 2, {2, 3}, {S(3, 4), S(2, 4, 2)}, {0}},          /* a broadcast over b's batch */
    {"matmul", 2, {4, 3}, {S(2, 1, 3, 4), S(5, 4, 2)}, {0}},    /* both broadcast: (2,5,3,2) */
    {"matmul", 2, {3, 3}, {S(1, 1, 1), S(1, 1, 1)}, {0}},       /* size-1 everywhere */
    {"matmul", 2, {3, 3}, {S(3, 2, 1), S(1, 1, 4)}, {0}},       /* K = 1, b broadcast over the batch */
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
    {"neg", 1, {2}, {S(2, 3)}, {0}},
    {"neg", 1, {0}, {S(0)}, {0}},
    {"add_scalar", 1, {3}, {S(3, 1, 2)}, {0}},
    {"add_scalar", 1, {0}, {S(0)}, {0}},
    {"exp", 1, {2}, {S(3, 4)}, {0}},
    {"exp", 1, {0}, {S(0)}, {0}},
    {"log", 1, {2}, {S(2, 3)}, {0}, 0.5, 2},
    {"log", 1, {1}, {S(1)}, {0}, 0.5, 2},
    {"sqrt", 1, {2}, {S(2, 3)}, {0}, 0.5, 2},
    {"sqrt", 1, {0}, {S(0)}, {0}, 0.5, 2},
    {"sigmoid", 1, {2}, {S(3, 4)}, {0}, -4, 4}, /* both branches */
    {"sigmoid", 1, {3}, {S(1, 5, 1)}, {0}},
    {"relu", 1, {2}, {S(3, 4)}, {0}},
    {"relu", 1, {0}, {S(0)}, {0}},
    {"sum_axis", 1, {3}, {S(2, 3, 4)}, {1, 0}},
    {"sum_axis", 1, {3}, {S(2, 3, 4)}, {-1, 1}},
    {"sum_axis", 1, {3}, {S(2, 3, 4)}, {-3, 0}},
    {"sum_axis", 1, {3}, {S(2, 1, 3)}, {1, 1}},  /* over a size-1 dim */
    {"sum_axis", 1, {1}, {S(5)}, {0, 0}},        /* to 0-d */
    {"mean_axis", 1, {3}, {S(2, 3, 4)}, {-2, 0}},
    {"mean_axis", 1, {3}, {S(2, 3, 4)}, {2, 1}},
    {"mean_axis", 1, {2}, {S(1, 4)}, {0, 0}},
    {"mean_axis", 1, {1}, {S(5)}, {-1, 1}},      /* to (1,) */
    {"max_axis", 1, {2}, {S(3, 4)}, {1, 0}},
    {"max_axis", 1, {3}, {S(2, 3, 4)}, {-2, 1}},
    {"max_axis", 1, {3}, {S(2, 3, 4)}, {0, 0}},
    {"max_axis", 1, {3}, {S(2, 1, 3)}, {1, 0}},  /* over a size-1 dim */
    {"max_axis", 1, {1}, {S(5)}, {0, 1}},
    {"transpose", 1, {3}, {S(2, 3, 4)}, {0, 2}},
    {"transpose", 1, {3}, {S(2, 3, 4)}, {-1, -2}},
    {"transpose", 1, {3}, {S(2, 3, 4)}, {-3, 1}},
    {"transpose", 1, {2}, {S(1, 4)}, {0, -1}},
    {"transpose", 1, {2}, {S(2, 3)}, {1, -1}},   /* equal axes: a copy */
    {"concat", 3, {3, 3, 3}, {S(2, 1, 3), S(2, 3, 3), S(2, 2, 3)}, {1}},
    {"concat", 3, {2, 2, 2}, {S(2, 3), S(2, 1), S(2, 4)}, {-1}},
    {"concat", 3, {2, 2, 2}, {S(1, 3), S(2, 3), S(1, 3)}, {-2}},
    {"concat", 2, {1, 1}, {S(2), S(3)}, {0}},
    {"concat", 1, {2}, {S(2, 3)}, {0}},          /* one input: a copy */
    {"linear", 3, {2, 2, 1}, {S(4, 3), S(3, 2), S(2)}, {0}},
    {"linear", 3, {1, 2, 1}, {S(3), S(3, 2), S(2)}, {0}},             /* x 1-d */
    {"linear", 3, {3, 2, 1}, {S(2, 3, 4), S(4, 5), S(5)}, {0}},       /* (N,T,H): one GEMM */
    {"linear", 2, {2, 2}, {S(2, 3), S(3, 4)}, {0}},                   /* b NULL */
    {"linear", 3, {2, 2, 1}, {S(1, 1), S(1, 1), S(1)}, {0}},
    {"linear", 3, {3, 2, 1}, {S(2, 1, 3), S(3, 1), S(1)}, {0}},
    {"addmm", 3, {2, 2, 2}, {S(4, 2), S(4, 3), S(3, 2)}, {0}},
    {"addmm", 3, {1, 1, 2}, {S(2), S(3), S(3, 2)}, {0}},              /* x 1-d */
    {"addmm", 3, {3, 3, 2}, {S(2, 3, 5), S(2, 3, 4), S(4, 5)}, {0}},  /* (N,T,H): one GEMM */
    {"addmm", 3, {2, 2, 2}, {S(1, 1), S(1, 1), S(1, 1)}, {0}},
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

/* A TG__FILLS backward writes a new gradient buffer instead of zeroing and adding to it. Each case's value
   inputs pass through scale first, so that the op's backward makes their buffers; its gradients must equal
   those of the gradient checks' path, which zeroes every buffer and adds (and a buffer an op leaves partly
   unwritten holds NaN in this build). */
static tg_tensor *run_op_fresh(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    const op_case *c = ctx;
    tg_tensor *mid[MAXIN];
    for (int i = 0; i < c->n; i++) mid[i] = (c->index_mask >> i) & 1 ? in[i] : tg_scale(tape, in[i], 1.0);
    tg_tensor *y = run_op(tape, mid, ctx);
    return tg_sum(tape, tg_mul(tape, y, y));
}

Test(ops, fresh_gradient_buffers_match_zeroed_ones) {
    for (int c = 0; c < N_CASES; c++) {
        tg_tensor *in[MAXIN];
        make_inputs(&cases[c], TG_F64, ~0, in);
        double *want[MAXIN] = {0};
        for (int pass = 0; pass < 2; pass++) {
            tg_tape *tape = tg_tape_new();
            tg__tape_check_accumulate(tape, pass == 0); /* pass 0: zeroed buffers, pass 1: fresh */
            for (int i = 0; i < cases[c].n; i++) tg_zero_grad(in[i]);
            cr_assert_eq(tg_backward(tape, run_op_fresh(tape, in, (void *)&cases[c]), NULL), TG_OK, "case %d: %s", c,
                         tg_last_error());
            for (int i = 0; i < cases[c].n; i++) {
                if (!tg_tensor_requires_grad(in[i])) continue;
                const double *g = tg_tensor_grad(in[i]);
                int64_t n = tg_tensor_numel(in[i]);
                if (pass == 0) {
                    want[i] = malloc((size_t)n * sizeof(double) + 1);
                    memcpy(want[i], g, (size_t)n * sizeof(double));
                }
                for (int64_t j = 0; pass == 1 && j < n; j++)
                    cr_expect(fabs(g[j] - want[i][j]) <= 1e-12 * (1 + fabs(want[i][j])),
                              "case %d (%s) input %d grad %lld: %g fresh, %g zeroed", c, cases[c].op, i, (long long)j,
                              g[j], want[i][j]);
            }
            tg_tape_free(tape);
        }
        for (int i = 0; i < cases[c].n; i++) free(want[i]);
        free_inputs(&cases[c], in);
    }
}

/* f32 copies of a case's f64 inputs (index inputs stay i64). */
static void to_f32(const op_case *c, tg_tensor *const *in64, tg_tensor **in32) {
    for (int i = 0; i < c->n; i++) {
        in32[i] = tg_tensor_requires_grad(in64[i]) ? tg_param_new(TG_F32, c->ndim[i], c->shape[i])
                                                    : tg_tensor_new(tg_tensor_dtype(in64[i]) == TG_I64 ? TG_I64 : TG_F32,
                                                                    c->ndim[i], c->shape[i]);
        for (int64_t j = 0; j < tg_tensor_numel(in64[i]); j++) tg_tensor_set(in32[i], j, tg_tensor_get(in64[i], j));
    }
}

/* f32 kernels: the same values as f64 within f32 rounding, forward and backward. */
Test(ops, f32_matches_f64) {
    for (int c = 0; c < N_CASES; c++) {
        tg_tensor *in64[MAXIN], *in32[MAXIN];
        make_inputs(&cases[c], TG_F64, ~0, in64);
        to_f32(&cases[c], in64, in32);
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

/* ---- the per-node check (tg_gradcheck_nodes) over every case ---- */

/* No false failures: every case's recording passes, in f64 and (rerun in f64 from f32 values) in f32. */
Test(ops, every_case_passes_the_per_node_check_in_both_dtypes) {
    for (int c = 0; c < N_CASES; c++) {
        tg_tensor *in64[MAXIN], *in32[MAXIN];
        make_inputs(&cases[c], TG_F64, ~0, in64);
        to_f32(&cases[c], in64, in32);
        tg_tape *tape = tg_tape_new();
        tg_gradcheck_report r;
        tg_gradcheck_opts o32 = tg_gradcheck_defaults_f32();
        for (int d = 0; d < 2; d++) {
            tg_tensor *y = run_op(tape, d ? in32 : in64, (void *)&cases[c]);
            cr_assert(y, "case %d: %s", c, tg_last_error());
            /* an op over empty tensors has nothing to compare; the check says so rather than pass */
            int some = 0;
            for (int i = 0; i < cases[c].n; i++) some |= tg_tensor_requires_grad(in64[i]) && tg_tensor_numel(in64[i]);
            int empty = !some || !tg_tensor_numel(y);
            int ok = tg_gradcheck_nodes(tape, y, d ? &o32 : NULL, &r);
            if (empty) cr_expect(!ok && strstr(r.message, "nothing to compare"), "case %d (%s): %s", c, cases[c].op, r.message);
            else cr_expect(ok, "case %d (%s) %s: %s", c, cases[c].op, d ? "f32" : "f64", r.message);
            tg_tape_reset(tape);
        }
        tg_tape_free(tape);
        free_inputs(&cases[c], in64);
        free_inputs(&cases[c], in32);
    }
}

/* A wrong backward planted in one built-in op at a time (its real backward, plus 0.25 on element 0 of
   each gradient it writes), inside a function of ten more nodes: the per-node check names that op. */
static _Thread_local const tg__op *planted;
static tg_status planted_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    tg_status s = planted->backward(node, gout, grads);
    for (int i = 0; i < node->n_in; i++)
        if (grads[i] && tg_tensor_numel(node->in[i])) TG__DISPATCH(node->in[i]->dtype, { ((T *)grads[i])[0] += (T)0.25; });
    return s;
}

static tg_tensor *run_op_in_a_chain(tg_tape *t, tg_tensor *const *in, void *ctx) {
    tg_tensor *y = run_op(t, in, ctx), *a = tg_tanh(t, y), *b = tg_scale(t, a, 0.5);
    tg_tensor *d = tg_add(t, tg_mul(t, b, y), a), *f = tg_tanh(t, tg_sub(t, d, b));
    return tg_tanh(t, tg_scale(t, tg_sum(t, tg_mul(t, f, f)), 2));
}

Test(ops, a_wrong_backward_in_any_op_is_named_by_the_per_node_check) {
    for (int k = 0; tg__op_list[k]; k++) {
        const tg__op *op = tg__op_list[k];
        int c = 0; /* the op's first case whose inputs are not all empty */
        while (c < N_CASES && (strcmp(cases[c].op, op->name) || !tt_numel(cases[c].ndim[0], cases[c].shape[0]))) c++;
        cr_assert(c < N_CASES, "no non-empty case for %s", op->name);
        tg_tensor *in[MAXIN];
        make_inputs(&cases[c], TG_F64, ~0, in);
        tg_tape *tape = tg_tape_new();
        tg_tensor *L = run_op_in_a_chain(tape, in, (void *)&cases[c]);
        cr_assert(L && tg_tape_size(tape) >= 11, "%s: %lld nodes", op->name, (long long)tg_tape_size(tape));
        tg_gradcheck_report r;
        cr_expect(tg_gradcheck_nodes(tape, L, NULL, &r), "%s, unplanted: %s", op->name, r.message);
        planted = op;
        tg__override_backward(op, planted_backward);
        int ok = tg_gradcheck_nodes(tape, L, NULL, &r);
        tg__override_backward(op, NULL);
        const char *want = strcmp(op->name, "custom") ? op->name : "softplus"; /* a custom node has its def's name */
        cr_expect(!ok && !strcmp(r.op, want) && !strcmp(tg_gradcheck_nodes_failed_op(), want),
                  "%s planted: named %s: %s", op->name, r.op, r.message);
        tg_tape_free(tape);
        free_inputs(&cases[c], in);
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
    tg_tensor *r[] = {tg_sum_axis(tape, c, 1, 1), tg_max_axis(tape, c, 1, 0), tg_transpose(tape, c, 1, 0),
                      tg_concat(tape, (tg_tensor *[]){c, c}, 2, 1)};
    for (int i = 0; i < 4; i++) {
        cr_assert(r[i], "%d: %s", i, tg_last_error());
        L = tg_add(tape, L, tg_sum(tape, r[i]));
    }
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
    tt_expect_error(TG_ESHAPE, "tg_matmul: needs 2-d operands (or batches of them, (...,M,K) @ (...,K,N)): (4,3) @ (3,)");
    cr_expect_null(tg_matmul(tape, a, f));
    tt_expect_error(TG_EDTYPE, "tg_matmul: dtypes differ: a is f64, b is f32 (no promotion)");
    /* BLAS counts in int: an empty (2^31, 0) operand allocates nothing, but its M does not fit */
    tg_tensor *tall = tg_param_new(TG_F64, 2, TT_SHAPE((int64_t)1 << 31, 0)), *e = tg_param_new(TG_F64, 2, TT_SHAPE(0, 2));
    cr_expect_null(tg_matmul(tape, tall, e));
    tt_expect_error(TG_ESHAPE, "tg_matmul: dimensions beyond BLAS's int range: (2147483648,0) @ (0,2)");
    tg_tensor_free(tall), tg_tensor_free(e);
    /* batches: K differing, batch dims that do not broadcast; both shapes named */
    tg_tensor *b3 = TT_RAND(TG_F64, 1, 5, 3, 3, 2), *b2 = TT_RAND(TG_F64, 1, 6, 2, 4, 2);
    cr_expect_null(tg_matmul(tape, x, b2));
    tt_expect_error(TG_ESHAPE, "tg_matmul: inner dimensions differ: (2,5,3) @ (2,4,2)");
    cr_expect_null(tg_matmul(tape, x, b3));
    tt_expect_error(TG_ESHAPE, "tg_matmul: batch dimensions do not broadcast: (2,5,3) @ (3,3,2)");
    tg_tensor_free(b3), tg_tensor_free(b2);
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

/* ---- elementwise functions, reductions along an axis, transpose and concat ---- */

static tg_tensor *param_of(tg_dtype dt, int ndim, const int64_t *shape, const double *v) {
    tg_tensor *t = tg_param_new(dt, ndim, shape);
    cr_assert(t, "%s", tg_last_error());
    for (int64_t i = 0; i < tg_tensor_numel(t); i++) tg_tensor_set(t, i, v[i]);
    return t;
}
static double grad_at(tg_tensor *p, int64_t i) {
    return tg_tensor_dtype(p) == TG_F32 ? ((float *)tg_tensor_grad(p))[i] : ((double *)tg_tensor_grad(p))[i];
}

/* Each branch exponentiates -|x|: 1 / (1 + e^-x) alone overflows e^1e4 (to a right 0), e^x / (1 + e^x)
   alone gives Inf / Inf = NaN. The overflow flag tells the first apart from the stable form. */
Test(ops, sigmoid_is_finite_at_large_inputs) {
    for (int d = 0; d < 2; d++) {
        tg_dtype dt = d ? TG_F64 : TG_F32;
        tg_tape *tape = tg_tape_new();
        tg_tensor *x = param_of(dt, 1, TT_SHAPE(4), (double[]){-1e4, 1e4, 0, -30});
        feclearexcept(FE_ALL_EXCEPT);
        tg_tensor *y = tg_sigmoid(tape, x);
        cr_expect_not(fetestexcept(FE_OVERFLOW), "%s: sigmoid overflowed", d ? "f64" : "f32");
        cr_assert(y, "%s", tg_last_error());
        cr_expect_eq(tg_tensor_get(y, 0), 0.0);
        cr_expect_eq(tg_tensor_get(y, 1), 1.0);
        cr_expect_eq(tg_tensor_get(y, 2), 0.5);
        cr_expect(fabs(tg_tensor_get(y, 3) - 1 / (1 + exp(30.0))) < 1e-6 * 1 / (1 + exp(30.0)));
        cr_assert_eq(tg_backward(tape, tg_sum(tape, y), NULL), TG_OK, "%s", tg_last_error());
        cr_expect_eq(grad_at(x, 0), 0.0);
        cr_expect_eq(grad_at(x, 1), 0.0);
        cr_expect_eq(grad_at(x, 2), 0.25);
        tg_tape_free(tape);
        tg_tensor_free(x);
    }
}

Test(ops, exp_log_sqrt_match_libm) {
    const double px[] = {-2, -0.5, 0, 0.3, 1.7}, pl[] = {1e-3, 0.25, 1, 3, 1e5}, ps[] = {0, 0.25, 2, 9, 1e-8};
    for (int d = 0; d < 2; d++) {
        tg_dtype dt = d ? TG_F64 : TG_F32;
        tg_tape *tape = tg_tape_new();
        tg_tensor *a = param_of(dt, 1, TT_SHAPE(5), px), *b = param_of(dt, 1, TT_SHAPE(5), pl);
        tg_tensor *c = param_of(dt, 1, TT_SHAPE(5), ps);
        tg_tensor *e = tg_exp(tape, a), *l = tg_log(tape, b), *r = tg_sqrt(tape, c);
        cr_assert(e && l && r, "%s", tg_last_error());
        for (int i = 0; i < 5; i++) {
            double we = d ? exp(px[i]) : expf((float)px[i]), wl = d ? log(pl[i]) : logf((float)pl[i]);
            double ws = d ? sqrt(ps[i]) : sqrtf((float)ps[i]);
            /* exp and log are SLEEF's (1 ulp; tests/test_vmath.c sweeps them), sqrt is libm's */
            double ulp_e = d ? 0x1p-52 : 0x1p-23;
            cr_expect(fabs(tg_tensor_get(e, i) - we) <= 2 * ulp_e * fabs(we), "exp(%g) %s", px[i], d ? "f64" : "f32");
            cr_expect(fabs(tg_tensor_get(l, i) - wl) <= 2 * ulp_e * fabs(wl), "log(%g) %s", pl[i], d ? "f64" : "f32");
            cr_expect_eq(tg_tensor_get(r, i), ws, "sqrt(%g) %s", ps[i], d ? "f64" : "f32");
        }
        cr_assert_eq(tg_backward(tape, tg_add(tape, tg_sum(tape, e), tg_add(tape, tg_sum(tape, l), tg_sum(tape, r))),
                                 NULL), TG_OK, "%s", tg_last_error());
        cr_expect(isinf(grad_at(c, 0)) && grad_at(c, 0) > 0, "sqrt's gradient at 0 is Inf");
        cr_expect(fabs(grad_at(b, 1) - 4) < 1e-6 && fabs(grad_at(c, 2) - 0.5 / sqrt(2)) < 1e-6);
        tg_tape_free(tape);
        tg_tensor_free(a), tg_tensor_free(b), tg_tensor_free(c);
    }
    /* IEEE's edges, as NumPy's */
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_tensor_from(TG_F64, 1, TT_SHAPE(3), (double[]){0, -1, 710});
    tg_tensor *f = tg_tensor_from(TG_F32, 1, TT_SHAPE(1), (float[]){89});
    tg_tensor *l = tg_log(tape, x), *e = tg_exp(tape, x), *ef = tg_exp(tape, f);
    cr_assert(l && e && ef, "%s", tg_last_error());
    cr_expect(isinf(tg_tensor_get(l, 0)) && tg_tensor_get(l, 0) < 0 && isnan(tg_tensor_get(l, 1)));
    cr_expect(isinf(tg_tensor_get(e, 2)) && isinf(tg_tensor_get(ef, 0)));
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(f);
}

Test(ops, relu_neg_add_scalar_values) {
    for (int d = 0; d < 2; d++) {
        tg_tape *tape = tg_tape_new();
        tg_tensor *x = param_of(d ? TG_F64 : TG_F32, 1, TT_SHAPE(4), (double[]){-1.5, 0, 2, NAN});
        tg_tensor *y = tg_relu(tape, x), *n = tg_neg(tape, x), *a = tg_add_scalar(tape, x, 0.5);
        cr_assert(y && n && a, "%s", tg_last_error());
        const double wy[] = {0, 0, 2}, wn[] = {1.5, 0, -2}, wa[] = {-1, 0.5, 2.5};
        for (int i = 0; i < 3; i++) {
            cr_expect_eq(tg_tensor_get(y, i), wy[i]);
            cr_expect_eq(tg_tensor_get(n, i), wn[i]);
            cr_expect_eq(tg_tensor_get(a, i), wa[i]);
        }
        cr_expect(isnan(tg_tensor_get(y, 3)), "relu passes a NaN through");
        cr_assert_eq(tg_backward(tape, tg_sum(tape, tg_slice(tape, y, 0, 0, 3)), NULL), TG_OK, "%s", tg_last_error());
        cr_expect_eq(grad_at(x, 0), 0.0);
        cr_expect_eq(grad_at(x, 1), 0.0, "relu's gradient at exactly 0 is 0, as PyTorch's");
        cr_expect_eq(grad_at(x, 2), 1.0);
        tg_tape_free(tape);
        tg_tensor_free(x);
    }
}

/* The gradient of a max goes to the first maximum of each slice only, and a NaN is the maximum. */
Test(ops, max_axis_ties_go_to_the_first_and_nan_wins) {
    for (int d = 0; d < 2; d++) {
        tg_dtype dt = d ? TG_F64 : TG_F32;
        tg_tape *tape = tg_tape_new();
        /* along the last axis: a tie, NaN after a larger value, NaN first, all -Inf */
        const double ninf = -INFINITY;
        tg_tensor *x = param_of(dt, 2, TT_SHAPE(4, 4), (double[]){1, 3, 3, 2, 8, NAN, 9, NAN, NAN, 9, 1, 2, ninf, ninf,
                                                                 ninf, ninf});
        /* along the first axis (a strided slice): ties in both columns */
        tg_tensor *z = param_of(dt, 2, TT_SHAPE(3, 2), (double[]){2, 1, 2, 5, 1, 5});
        tg_tensor *m = tg_max_axis(tape, x, -1, 0), *mz = tg_max_axis(tape, z, 0, 1);
        cr_assert(m && mz, "%s", tg_last_error());
        cr_expect_eq(tg_tensor_get(m, 0), 3.0);
        cr_expect(isnan(tg_tensor_get(m, 1)) && isnan(tg_tensor_get(m, 2)));
        cr_expect(isinf(tg_tensor_get(m, 3)) && tg_tensor_get(m, 3) < 0);
        cr_expect_eq(tg_tensor_ndim(mz), 2);
        cr_expect(tg_tensor_get(mz, 0) == 2 && tg_tensor_get(mz, 1) == 5);
        tg_tensor *ones4 = tg_tensor_new(dt, 1, TT_SHAPE(4)), *ones2 = tg_tensor_new(dt, 2, TT_SHAPE(1, 2));
        for (int i = 0; i < 4; i++) tg_tensor_set(ones4, i, i + 1);
        for (int i = 0; i < 2; i++) tg_tensor_set(ones2, i, 10 * (i + 1));
        cr_assert_eq(tg_backward(tape, m, ones4), TG_OK, "%s", tg_last_error());
        tg_tape_reset(tape);
        mz = tg_max_axis(tape, z, 0, 1);
        cr_assert_eq(tg_backward(tape, mz, ones2), TG_OK, "%s", tg_last_error());
        const double gx[] = {0, 1, 0, 0, 0, 2, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0}, gz[] = {10, 0, 0, 20, 0, 0};
        for (int i = 0; i < 16; i++) cr_expect_eq(grad_at(x, i), gx[i], "%s x grad %d", d ? "f64" : "f32", i);
        for (int i = 0; i < 6; i++) cr_expect_eq(grad_at(z, i), gz[i], "%s z grad %d", d ? "f64" : "f32", i);
        tg_tape_free(tape);
        tg_tensor_free(x), tg_tensor_free(z), tg_tensor_free(ones4), tg_tensor_free(ones2);
    }
}

Test(ops, axis_reductions_transpose_concat_values) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *a = tg_tensor_from(TG_F64, 2, TT_SHAPE(2, 3), (double[]){1, 2, 3, 4, 5, 6});
    tg_tensor *s = tg_sum_axis(tape, a, 0, 1), *m = tg_mean_axis(tape, a, -1, 0), *x = tg_max_axis(tape, a, 0, 0);
    cr_assert(s && m && x, "%s", tg_last_error());
    cr_expect(tg_tensor_ndim(s) == 2 && tg_tensor_shape(s)[0] == 1 && tg_tensor_shape(s)[1] == 3);
    cr_expect(tg_tensor_get(s, 0) == 5 && tg_tensor_get(s, 2) == 9);
    cr_expect(tg_tensor_ndim(m) == 1 && tg_tensor_get(m, 0) == 2 && tg_tensor_get(m, 1) == 5);
    cr_expect(tg_tensor_get(x, 0) == 4 && tg_tensor_get(x, 2) == 6);
    /* f32 sums accumulate in double: in float, 2^24 + 1 rounds back to 2^24 four times over */
    tg_tensor *big = tg_tensor_from(TG_F32, 2, TT_SHAPE(1, 5), (float[]){16777216, 1, 1, 1, 1});
    cr_expect_eq(tg_tensor_get(tg_sum_axis(tape, big, 1, 0), 0), 16777220.0);
    cr_expect_eq(tg_tensor_get(tg_mean_axis(tape, big, 1, 0), 0), (double)(float)(16777220.0 / 5));
    tg_tensor_free(big);
    /* over an empty axis: the sum 0, the mean NaN, as NumPy's */
    tg_tensor *e = tg_slice(tape, a, 1, 1, 1); /* (2,0) */
    tg_tensor *se = tg_sum_axis(tape, e, 1, 0), *me = tg_mean_axis(tape, e, 1, 1);
    cr_assert(se && me, "%s", tg_last_error());
    cr_expect(tg_tensor_numel(se) == 2 && tg_tensor_get(se, 0) == 0 && tg_tensor_get(se, 1) == 0);
    cr_expect(tg_tensor_numel(me) == 2 && isnan(tg_tensor_get(me, 0)) && isnan(tg_tensor_get(me, 1)));
    cr_expect_eq(tg_tensor_numel(tg_max_axis(tape, e, 0, 0)), 0, "an empty result of a non-empty axis is fine");
    /* (2,3,2) with its axes 0 and 2 swapped: y[i,j,k] = b[k,j,i] */
    tg_tensor *b = tg_tensor_from(TG_F64, 3, TT_SHAPE(2, 3, 2), (double[]){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
    tg_tensor *t = tg_transpose(tape, b, -1, 0);
    cr_assert(t, "%s", tg_last_error());
    const double wt[] = {0, 6, 2, 8, 4, 10, 1, 7, 3, 9, 5, 11};
    for (int i = 0; i < 12; i++) cr_expect_eq(tg_tensor_get(t, i), wt[i], "transpose element %d", i);
    tg_tensor *c = tg_concat(tape, (tg_tensor *[]){a, tg_slice(tape, a, 1, 0, 1), a}, 3, 1); /* (2,7) */
    cr_assert(c, "%s", tg_last_error());
    const double wc[] = {1, 2, 3, 1, 1, 2, 3, 4, 5, 6, 4, 4, 5, 6};
    cr_expect(tg_tensor_shape(c)[0] == 2 && tg_tensor_shape(c)[1] == 7);
    for (int i = 0; i < 14; i++) cr_expect_eq(tg_tensor_get(c, i), wc[i], "concat element %d", i);
    tg_tape_free(tape);
    tg_tensor_free(a), tg_tensor_free(b);
}

/* The normalised axes and keepdims, as the recording prints them. */
Test(ops, new_ops_print_their_args) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *p = TT_RAND(TG_F64, 1, 1, 2, 3, 4);
    cr_assert(tg_max_axis(tape, tg_transpose(tape, tg_add_scalar(tape, p, 0.5), -1, 0), -2, 7));
    cr_assert(tg_concat(tape, (tg_tensor *[]){p, p}, 2, -1));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    tg_tape_print(tape, f);
    fclose(f);
    cr_expect(strstr(buf, "add_scalar (param(2,3,4)) -> (2,3,4)  c=0.5\n"), "%s", buf);
    cr_expect(strstr(buf, "transpose  (%0) -> (4,3,2)  axis0=0 axis1=2\n"), "%s", buf);
    cr_expect(strstr(buf, "max_axis   (%1) -> (4,1,2)  axis=1 keepdims=1  saved: (4,3,2)\n"), "%s", buf);
    cr_expect(strstr(buf, "concat     (param(2,3,4), param(2,3,4)) -> (2,3,8)  axis=2\n"), "%s", buf);
    free(buf);
    tg_tape_free(tape);
    tg_tensor_free(p);
}

/* Every mask of a 3-input concat, the middle input with no gradient among them: a skipped input still
   moves the offsets of those after it. */
Test(ops, concat_with_some_inputs_needing_no_gradient) {
    op_case c = {"concat", 3, {3, 3, 3}, {S(2, 2, 3), S(2, 1, 3), S(2, 3, 3)}, {-2}};
    for (int mask = 1; mask < 8; mask++) {
        tg_tensor *in[MAXIN];
        make_inputs(&c, TG_F64, mask, in);
        tg_gradcheck_report r;
        cr_expect(tg_gradcheck(run_op_twice, &c, in, 3, NULL, &r), "mask %d: %s", mask, r.message);
        free_inputs(&c, in);
    }
}

Test(ops, new_ops_errors_name_the_values) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = TT_RAND(TG_F64, 1, 1, 2, 5, 3), *a = TT_RAND(TG_F64, 1, 2, 4, 3);
    tg_tensor *s = tt_rand(TG_F64, 1, 3, 0, NULL);
    tg_tensor *f = TT_RAND(TG_F32, 1, 4, 4, 3), *e = tg_param_new(TG_F64, 3, TT_SHAPE(2, 0, 3));
    tg_tensor *i64 = tg_tensor_new(TG_I64, 2, TT_SHAPE(4, 3));
    tg_clear_error();
    cr_expect_null(tg_exp(tape, i64));
    tt_expect_error(TG_EDTYPE, "tg_exp: x is i64 (indices); this op takes f32 or f64 values");
    cr_expect_null(tg_relu(tape, NULL));
    tt_expect_error(TG_EINVAL, "tg_relu: x is NULL");
    cr_expect_null(tg_sum_axis(tape, x, 3, 0));
    tt_expect_error(TG_EINVAL, "tg_sum_axis: axis 3 is out of range for shape (2,5,3) (want -3..2)");
    cr_expect_null(tg_mean_axis(tape, x, -4, 1));
    tt_expect_error(TG_EINVAL, "tg_mean_axis: axis -4 is out of range for shape (2,5,3) (want -3..2)");
    cr_expect_null(tg_sum_axis(tape, s, 0, 0));
    tt_expect_error(TG_EINVAL, "tg_sum_axis: axis 0 is out of range for shape ()");
    cr_expect_null(tg_max_axis(tape, x, -7, 0));
    tt_expect_error(TG_EINVAL, "tg_max_axis: axis -7 is out of range for shape (2,5,3) (want -3..2)");
    cr_expect_null(tg_max_axis(tape, e, -2, 0));
    tt_expect_error(TG_ESHAPE, "tg_max_axis: axis 1 of shape (2,0,3) is empty: a max needs at least one element");
    cr_expect_null(tg_max_axis(tape, i64, 0, 0));
    tt_expect_error(TG_EDTYPE, "tg_max_axis: x is i64 (indices)");
    cr_expect_null(tg_transpose(tape, x, 3, 0));
    tt_expect_error(TG_EINVAL, "tg_transpose: axis 3 is out of range for shape (2,5,3) (want -3..2)");
    cr_expect_null(tg_transpose(tape, x, 0, -4));
    tt_expect_error(TG_EINVAL, "tg_transpose: axis -4 is out of range for shape (2,5,3) (want -3..2)");
    cr_expect_null(tg_concat(tape, (tg_tensor *[]){a, a, x}, 3, 0));
    tt_expect_error(TG_ESHAPE, "tg_concat: input 2 has shape (2,5,3), input 0 has (4,3); they must match except on "
                    "axis 0");
    cr_expect_null(tg_concat(tape, (tg_tensor *[]){a, tg_transpose(tape, a, 0, 1)}, 2, 1));
    tt_expect_error(TG_ESHAPE, "tg_concat: input 1 has shape (3,4), input 0 has (4,3); they must match except on "
                    "axis 1");
    cr_expect_null(tg_concat(tape, (tg_tensor *[]){a, a}, 2, -3));
    tt_expect_error(TG_EINVAL, "tg_concat: axis -3 is out of range for shape (4,3) (want -2..1)");
    cr_expect_null(tg_concat(tape, (tg_tensor *[]){a, a}, 2, 2));
    tt_expect_error(TG_EINVAL, "tg_concat: axis 2 is out of range for shape (4,3) (want -2..1)");
    cr_expect_null(tg_concat(tape, (tg_tensor *[]){s}, 1, 0));
    tt_expect_error(TG_EINVAL, "tg_concat: axis 0 is out of range for shape ()");
    cr_expect_null(tg_concat(tape, (tg_tensor *[]){a, f}, 2, 0));
    tt_expect_error(TG_EDTYPE, "tg_concat: dtypes differ: input 0 is f64, input 1 is f32 (no promotion)");
    cr_expect_null(tg_concat(tape, (tg_tensor *[]){a, i64}, 2, 0));
    tt_expect_error(TG_EDTYPE, "tg_concat: input 1 is i64 (indices); this op takes f32 or f64 values");
    cr_expect_null(tg_concat(tape, (tg_tensor *[]){a, NULL}, 2, 0));
    tt_expect_error(TG_EINVAL, "tg_concat: input 1 is NULL");
    cr_expect_null(tg_concat(tape, (tg_tensor *[]){a}, 0, 0));
    tt_expect_error(TG_EINVAL, "tg_concat: needs at least one tensor, got 0");
    cr_expect_null(tg_concat(tape, (tg_tensor *[]){a}, -1, 0));
    tt_expect_error(TG_EINVAL, "tg_concat: needs at least one tensor, got -1");
    cr_expect_null(tg_concat(tape, NULL, 2, 0));
    tt_expect_error(TG_EINVAL, "tg_concat: xs is NULL");
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(a), tg_tensor_free(s), tg_tensor_free(f), tg_tensor_free(e), tg_tensor_free(i64);
}

/* The new ops composed, forward and backward, with each allocation failing in turn: TG_ENOMEM or a
   pass, never a crash, and (under valgrind) no leak. Inputs of 256 KiB make the arena grow mid-way
   through the recording and the backward, so failures land inside the new ops too. */
Test(ops, new_ops_allocation_failures) {
    tg_tensor *x = TT_RAND(TG_F64, 1, 1, 64, 512), *w = TT_RAND(TG_F64, 1, 2, 64, 512);
    int64_t k;
    for (k = 1; k < 1000; k++) {
        tg_clear_error();
        tg__alloc_fail_at(k);
        tg_tape *tape = tg_tape_new();
        tg_tensor *pos = tg_sqrt(tape, tg_add_scalar(tape, tg_exp(tape, x), 1));
        tg_tensor *parts[] = {tg_sigmoid(tape, x), tg_relu(tape, w), tg_log(tape, pos), tg_neg(tape, w)};
        tg_tensor *t = tg_transpose(tape, tg_concat(tape, parts, 4, 0), 0, -1); /* (512,256) */
        tg_tensor *L = tg_add(tape, tg_sum(tape, tg_sum_axis(tape, t, -1, 1)), tg_sum(tape, tg_mean_axis(tape, t, 0, 0)));
        L = tg_add(tape, L, tg_sum(tape, tg_max_axis(tape, t, 1, 0)));
        tg_status st = tg_backward(tape, L, NULL);
        int64_t used = tg__alloc_count();
        tg__alloc_fail_at(0);
        tg_tape_free(tape);
        /* A pass before the end is a failed doubling that the arena retried at the size needed. */
        if (st == TG_OK && used < k) break;
        if (st == TG_OK) continue;
        cr_expect_eq(st, TG_ENOMEM, "k=%lld: %s: %s", (long long)k, tg_status_name(st), tg_last_error());
        tt_expect_error(TG_ENOMEM, "out of memory");
    }
    cr_expect_gt(k, 3, "the run allocates");
    cr_expect_lt(k, 1000, "never passed");
    tg_tensor_free(x), tg_tensor_free(w);
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
static const tg_op_def bad_shape = {.name = "badshape", .shape = fail_shape, .forward = sp_forward, .backward = sp_backward};
static const tg_op_def bad_forward = {.name = "badfwd", .shape = tt_same_shape, .forward = fail_forward, .backward = sp_backward};
static const tg_op_def bad_backward = {.name = "badbwd", .shape = tt_same_shape, .forward = sp_forward, .backward = fail_backward};
static const tg_op_def incomplete = {.name = "half", .shape = tt_same_shape, .forward = NULL, .backward = sp_backward};

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

/* Small GEMMs stay on one thread: split, they leave the element-wise ops around them reading lines the other
   core wrote (ops/matmul.c has the measurements); up to 3e6 under OpenBLAS's AVX-512 kernels, whose direct
   small-matrix path loses from a second thread even alone; a thread count the user set is left to OpenBLAS. */
Test(ops, small_gemms_keep_one_thread_unless_the_user_chose) {
    cr_expect_eq(tg__gemm_one_thread_below("SkylakeX", 0), 3e6);
    cr_expect_eq(tg__gemm_one_thread_below("Cooperlake", 0), 3e6);
    cr_expect_eq(tg__gemm_one_thread_below("SAPPHIRERAPIDS", 0), 3e6);
    cr_expect_eq(tg__gemm_one_thread_below("Haswell", 0), 2e6);
    cr_expect_eq(tg__gemm_one_thread_below("Zen", 0), 2e6);
    cr_expect_eq(tg__gemm_one_thread_below(NULL, 0), 2e6);
    cr_expect_eq(tg__gemm_one_thread_below("SkylakeX", 1), 0, "a thread count the user set is OpenBLAS's to use");
    cr_expect_eq(tg__gemm_one_thread_below("Haswell", 1), 0);
}

/* ---- argmax and sample: index outputs, constants of the tape ---- */

Test(ops, argmax_first_maximum_nan_axes_keepdims) {
    tg_tape *tape = tg_tape_new();
    /* (2,3,4): ties, a NaN, negative axes */
    double v[24] = {1, 5, 5, 0, 2, 2, 2, 2, -1, -3, -2, -1, 0, NAN, 9, NAN, 3, 1, 4, 1, 7, 7, 6, 8};
    tg_tensor *x = tg_tensor_from(TG_F64, 3, TT_SHAPE(2, 3, 4), v), *p = TT_RAND(TG_F64, 1, 9, 3, 4);
    tg_tensor *a = tg_argmax(tape, x, -1, 0), *k = tg_argmax(tape, x, 1, 1), *z = tg_argmax(tape, x, 0, 0);
    cr_assert(a && k && z, "%s", tg_last_error());
    int64_t want_a[6] = {1, 0, 0, 1, 2, 3}, want_k[8] = {1, 0, 0, 1, 2, 0, 0, 0};
    cr_expect_eq(tg_tensor_dtype(a), TG_I64);
    cr_expect(tg_tensor_ndim(a) == 2 && tg_tensor_shape(a)[0] == 2 && tg_tensor_shape(a)[1] == 3);
    cr_expect(tg_tensor_ndim(k) == 3 && tg_tensor_shape(k)[1] == 1 && tg_tensor_shape(k)[2] == 4);
    for (int i = 0; i < 6; i++) cr_expect_eq(((int64_t *)tg_tensor_data(a))[i], want_a[i], "argmax axis -1 [%d]", i);
    for (int i = 0; i < 8; i++) cr_expect_eq(((int64_t *)tg_tensor_data(k))[i], want_k[i], "argmax axis 1 [%d]", i);
    /* never a gradient, even of a parameter: a constant, recorded nowhere */
    tg_tensor *ap = tg_argmax(tape, p, 0, 0);
    cr_assert(ap, "%s", tg_last_error());
    cr_expect(!tg_tensor_requires_grad(ap) && tg_tape_size(tape) == 0, "argmax was recorded");
    /* errors */
    cr_expect_null(tg_argmax(tape, x, 3, 0));
    tt_expect_error(TG_EINVAL, "tg_argmax");
    tg_tensor *e = tg_tensor_new(TG_F64, 2, TT_SHAPE(2, 0)), *i64 = tg_tensor_new(TG_I64, 1, TT_SHAPE(3));
    cr_expect_null(tg_argmax(tape, e, 1, 0));
    tt_expect_error(TG_ESHAPE, "tg_argmax: x (2,0) is empty along axis 1: no maximum to find");
    cr_expect_null(tg_argmax(tape, i64, 0, 0));
    tt_expect_error(TG_EDTYPE, "tg_argmax: x is i64");
    cr_expect_null(tg_argmax(NULL, x, 0, 0));
    tt_expect_error(TG_EINVAL, "tg_argmax: tape is NULL");
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(p), tg_tensor_free(e), tg_tensor_free(i64);
}

/* 20 000 draws from one row against its probabilities: Pearson's chi-square with 4 degrees of freedom
   stays below 23.5 (a false alarm once in 10 000 runs); an off-by-one in the search fails it by far. */
Test(ops, sample_chi_square_and_repeatable) {
    tg_tape *tape = tg_tape_new();
    enum { DRAWS = 20000, V = 5 };
    double p[V] = {0.1, 0.0, 0.4, 0.2, 0.3}, scale = 3.0; /* unnormalised rows are fine: a row sums to 3 */
    double rows[DRAWS * V];
    for (int r = 0; r < DRAWS; r++)
        for (int v = 0; v < V; v++) rows[r * V + v] = p[v] * scale;
    tg_tensor *probs = tg_tensor_from(TG_F64, 2, TT_SHAPE(DRAWS, V), rows);
    tg_rng rng, again;
    tg_rng_seed(&rng, 7);
    again = rng;
    tg_tensor *s = tg_sample(tape, probs, &rng);
    cr_assert(s, "%s", tg_last_error());
    cr_expect(tg_tensor_ndim(s) == 1 && tg_tensor_shape(s)[0] == DRAWS && tg_tensor_dtype(s) == TG_I64);
    int64_t count[V] = {0};
    for (int r = 0; r < DRAWS; r++) count[((int64_t *)tg_tensor_data(s))[r]]++;
    cr_expect_eq(count[1], 0, "a category of probability 0 was drawn");
    double chi2 = 0;
    for (int v = 0; v < V; v++)
        if (p[v] > 0) chi2 += pow((double)count[v] - DRAWS * p[v], 2) / (DRAWS * p[v]);
    cr_expect_lt(chi2, 23.5, "chi-square %.2f over %d draws: counts %lld %lld %lld %lld %lld", chi2, DRAWS,
                 (long long)count[0], (long long)count[1], (long long)count[2], (long long)count[3], (long long)count[4]);
    /* the same state gives the same draws; one uniform per row */
    tg_tensor *s2 = tg_sample(tape, probs, &again);
    cr_assert(s2);
    cr_expect_eq(tg_tensor_hash(s), tg_tensor_hash(s2), "the same rng state drew differently");
    cr_expect(!memcmp(&rng, &again, sizeof rng), "the two rngs advanced differently");
    tg_rng count_draws;
    tg_rng_seed(&count_draws, 7);
    for (int r = 0; r < DRAWS; r++) tg_rng_uniform(&count_draws);
    cr_expect(!memcmp(&rng, &count_draws, sizeof rng), "tg_sample did not take exactly one draw per row");
    /* f32, a 1-d row to a 0-d index */
    float one[3] = {0, 0, 2};
    tg_tensor *p1 = tg_tensor_from(TG_F32, 1, TT_SHAPE(3), one), *s1 = tg_sample(tape, p1, &rng);
    cr_assert(s1, "%s", tg_last_error());
    cr_expect(tg_tensor_ndim(s1) == 0 && ((int64_t *)tg_tensor_data(s1))[0] == 2);
    tg_tape_free(tape);
    tg_tensor_free(probs), tg_tensor_free(p1);
}

Test(ops, sample_errors_name_the_row) {
    tg_tape *tape = tg_tape_new();
    double bad[4][6] = {{0.5, 0.5, 0, 0.2, -0.1, 0.3}, {0.5, 0.5, NAN, 1, 1, 1}, {1, 1, 1, INFINITY, 1, 1},
                        {1, 1, 1, 0, 0, 0}};
    const char *want[4] = {"tg_sample: row 1 of probs holds -0.1 at index 1: want finite values >= 0",
                           "tg_sample: row 0 of probs holds nan at index 2", "tg_sample: row 1 of probs holds inf at index 0",
                           "tg_sample: row 1 of probs sums to 0: no category to draw"};
    tg_rng rng, before;
    tg_rng_seed(&rng, 3);
    before = rng;
    for (int k = 0; k < 4; k++) {
        tg_tensor *p = tg_tensor_from(TG_F64, 2, TT_SHAPE(2, 3), bad[k]);
        cr_expect_null(tg_sample(tape, p, &rng), "case %d", k);
        tt_expect_error(TG_EINVAL, want[k]);
        cr_expect(!memcmp(&rng, &before, sizeof rng), "a refused call advanced the rng");
        tg_tensor_free(p);
    }
    tg_tensor *ok = TT_RAND(TG_F64, 0, 1, 2, 3), *empty = tg_tensor_new(TG_F64, 2, TT_SHAPE(2, 0)),
              *scalar = tg_tensor_new(TG_F64, 0, NULL);
    cr_expect_null(tg_sample(tape, ok, NULL));
    tt_expect_error(TG_EINVAL, "tg_sample: rng is NULL");
    cr_expect_null(tg_sample(tape, empty, &rng));
    tt_expect_error(TG_ESHAPE, "tg_sample: probs is (2,0); want (..., V) with V >= 1");
    cr_expect_null(tg_sample(tape, scalar, &rng));
    tt_expect_error(TG_ESHAPE, "tg_sample: probs is ()");
    tg_tape_free(tape);
    tg_tensor_free(ok), tg_tensor_free(empty), tg_tensor_free(scalar);
}
