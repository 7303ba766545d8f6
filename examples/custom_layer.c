/* Two ways to add a layer to tapegrad, each checked against finite differences.
 *
 *   1. Compose it from ops that exist. Its backward comes free: the tape records each op and walks
 *      them back. Here: a residual dense layer, y = x + tanh(x @ W + b).
 *   2. Write a custom op: a shape rule, a forward and a hand-written backward in one tg_op_def, run
 *      through tg_custom. Worth it when the composed version would be slow or would save much more
 *      than it needs. Here: softplus(x) = log(1 + e^x), elementwise.
 *
 * A hand-written backward is where bugs hide, so the last part plants two in softplus, inside a
 * layer of seven ops: a wrong slope, which the gradient check of the whole layer catches at an input
 * and element and the per-node check (tg_gradcheck_nodes) pins on the softplus node; and a backward
 * that assigns its gradient instead of adding to it, right while softplus's input has one consumer
 * and wrong as soon as it has two, which every check catches by name.
 *
 * Part 6 is the second custom layer a user writes, and the lesson's point: LayerNorm three ways.
 * Composed from eight ops; as a custom op whose forward keeps its mean and 1/std for the backward
 * (tg_custom_keep, PyTorch's ctx.save_for_backward) and takes its row buffer from the tape
 * (tg_custom_scratch), one kernel for f32 and f64; and the hand-derived formula, with no tape, as a
 * tg_gradcheck_ref reference. The three agree to 1e-12 in f64, a bug planted in the custom backward is
 * named by tg_gradcheck_nodes, and the two tape versions are timed side by side.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <tapegrad.h>

static void die(const char *what) {
    fprintf(stderr, "custom_layer: %s: %s\n", what, tg_last_error());
    exit(1);
}

/* ---- 1. A layer composed from ops ------------------------------------------------------------ */

/* x (N,D), W (D,D), b (D,) -> (N,D). Nothing to write for backward. */
static tg_tensor *residual_dense(tg_tape *tape, tg_tensor *x, tg_tensor *W, tg_tensor *b) {
    return tg_add(tape, x, tg_tanh(tape, tg_add(tape, tg_matmul(tape, x, W), b)));
}

/* The gradient check calls a function of its inputs: inputs[0..2] are x, W, b. */
static tg_tensor *residual_fn(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return residual_dense(tape, in[0], in[1], in[2]);
}

/* ---- 2. A custom op: softplus ---------------------------------------------------------------- */

/* The output has the input's shape. */
static tg_status softplus_shape(tg_tensor *const *in, int n, void *user, int *ndim, int64_t *shape) {
    (void)n, (void)user;
    *ndim = tg_tensor_ndim(in[0]);
    memcpy(shape, tg_tensor_shape(in[0]), (size_t)*ndim * sizeof *shape);
    return TG_OK;
}

/* This example runs in f64 only, so it says so rather than computing garbage in f32. */
static tg_status softplus_forward(tg_tensor *const *in, int n, tg_tensor *out, void *user) {
    (void)n, (void)user;
    if (tg_tensor_dtype(in[0]) != TG_F64) return TG_EDTYPE;
    const double *x = tg_tensor_data(in[0]);
    double *y = tg_tensor_data(out);
    for (int64_t i = 0; i < tg_tensor_numel(out); i++)
        y[i] = x[i] > 0 ? x[i] + log1p(exp(-x[i])) : log1p(exp(x[i])); /* no overflow for large x */
    return TG_OK;
}

/* d softplus / dx = sigmoid(x). Backward ADDS into grads[0]: another use of x may have put its share
   there already. */
static tg_status softplus_backward(tg_tensor *const *in, int n, tg_tensor *out, tg_tensor *grad_out,
                                   void *const *grads, void *user) {
    (void)n, (void)out, (void)user;
    if (!grads[0]) return TG_OK; /* x needs no gradient */
    const double *x = tg_tensor_data(in[0]), *g = tg_tensor_data(grad_out);
    double *gx = grads[0];
    for (int64_t i = 0; i < tg_tensor_numel(in[0]); i++) gx[i] += g[i] / (1 + exp(-x[i]));
    return TG_OK;
}

static const tg_op_def softplus_op = {.name = "softplus", .shape = softplus_shape, .forward = softplus_forward, .backward = softplus_backward};

/* A layer using it: softplus(x @ W + b). */
static tg_tensor *softplus_dense_fn(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    const tg_op_def *op = ctx; /* which softplus: the right one, or the planted bug below */
    tg_tensor *z = tg_add(tape, tg_matmul(tape, in[0], in[1]), in[2]);
    return tg_custom(tape, op, &z, 1, NULL);
}

/* The op alone, on one input: a failure here points at the op's own element. */
static tg_tensor *softplus_fn(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    return tg_custom(tape, ctx, in, 1, NULL);
}

/* ---- 3. A planted bug ------------------------------------------------------------------------ */

/* Off by one index: element 5 gets its neighbour's slope. A bug like this survives a glance and
   most loss curves. */
static tg_status softplus_backward_buggy(tg_tensor *const *in, int n, tg_tensor *out, tg_tensor *grad_out,
                                         void *const *grads, void *user) {
    (void)n, (void)out, (void)user;
    if (!grads[0]) return TG_OK;
    const double *x = tg_tensor_data(in[0]), *g = tg_tensor_data(grad_out);
    double *gx = grads[0];
    for (int64_t i = 0; i < tg_tensor_numel(in[0]); i++) gx[i] += g[i] / (1 + exp(-x[i == 5 ? 4 : i]));
    return TG_OK;
}

static const tg_op_def softplus_buggy_op = {.name = "softplus_buggy", .shape = softplus_shape, .forward = softplus_forward,
    .backward = softplus_backward_buggy};

/* Assigns instead of adding: the values are right, so a check of the op used once would pass it. */
static tg_status softplus_backward_assigns(tg_tensor *const *in, int n, tg_tensor *out, tg_tensor *grad_out,
                                           void *const *grads, void *user) {
    (void)n, (void)out, (void)user;
    if (!grads[0]) return TG_OK;
    const double *x = tg_tensor_data(in[0]), *g = tg_tensor_data(grad_out);
    double *gx = grads[0];
    for (int64_t i = 0; i < tg_tensor_numel(in[0]); i++) gx[i] = g[i] / (1 + exp(-x[i]));
    return TG_OK;
}

static const tg_op_def softplus_assigns_op = {.name = "softplus_assigns", .shape = softplus_shape, .forward = softplus_forward,
    .backward = softplus_backward_assigns};

/* A deeper layer: h = softplus(x @ W + b), y = h + tanh(h @ W + b): seven nodes, softplus the third. */
static tg_tensor *block_fn(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    tg_tensor *h = softplus_dense_fn(tape, in, ctx);
    return residual_dense(tape, h, in[1], in[2]);
}

/* ---- 6. LayerNorm three ways ------------------------------------------------------------------ */

/* y = gamma * (x - mean) / sqrt(var + eps) + beta over the last axis: x (N,D), gamma and beta (D,). */
#define LN_EPS 1e-5

/* 6a. Composed from ops: eight nodes, each saving what its own backward needs. */
static tg_tensor *layernorm_composed(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    tg_tensor *xc = tg_sub(tape, in[0], tg_mean_axis(tape, in[0], -1, 1));
    tg_tensor *sd = tg_sqrt(tape, tg_add_scalar(tape, tg_mean_axis(tape, tg_mul(tape, xc, xc), -1, 1), LN_EPS));
    return tg_add(tape, tg_mul(tape, tg_div(tape, xc, sd), in[1]), in[2]);
}

/* ---- 6b. LayerNorm as a custom op (the whole op: shape, kernels, callbacks) ---- */
static const char *const ln_names[] = {"x", "gamma", "beta"};
static tg_status ln_shape(tg_tensor *const *in, int n, void *user, int *ndim, int64_t *shape) {
    (void)n, (void)user;
    int d = tg_tensor_ndim(in[0]);
    int64_t D = d ? tg_tensor_shape(in[0])[d - 1] : -1;
    for (int i = 1; i < 3; i++)
        if (tg_tensor_ndim(in[i]) != 1 || tg_tensor_shape(in[i])[0] != D)
            return tg_set_error(TG_ESHAPE, "input %s must be (%lld,), like x's last axis", ln_names[i], (long long)D);
    *ndim = d;
    memcpy(shape, tg_tensor_shape(in[0]), (size_t)d * sizeof *shape);
    return TG_OK;
}

/* One kernel body for float and double: the idiom for a callback that serves both dtypes. */
#define LN_KERNELS(T, sfx)                                                                                    \
    static void ln_forward_##sfx(const T *x, const T *g, const T *b, T *y, T *mu, T *rs, T *xc, int64_t N,       \
                                 int64_t D) {                                                               \
        for (int64_t r = 0; r < N; r++, x += D, y += D) {                                                   \
            double m = 0, v = 0;                                                                            \
            for (int64_t j = 0; j < D; j++) m += x[j] / (double)D;                                          \
            for (int64_t j = 0; j < D; j++) xc[j] = (T)(x[j] - m), v += (double)xc[j] * xc[j];              \
            mu[r] = (T)m, rs[r] = (T)(1 / sqrt(v / (double)D + LN_EPS));                                     \
            for (int64_t j = 0; j < D; j++) y[j] = g[j] * xc[j] * rs[r] + b[j];                              \
        }                                                                                                   \
    }                                                                                                       \
    /* dxhat = gy gamma; dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)): sums first, then loops   \
       without branches, which the compiler vectorizes */                                                    \
    static void ln_backward_##sfx(const T *x, const T *g, const T *gy, const T *mu, const T *rs, T *dx, T *dg, \
                                  T *db, int64_t N, int64_t D) {                                            \
        for (int64_t r = 0; r < N; r++, x += D, gy += D) {                                                  \
            const T m = mu[r], s = rs[r];                                                                   \
            double s1 = 0, s2 = 0;                                                                          \
            for (int64_t j = 0; j < D; j++) s1 += gy[j] * g[j], s2 += gy[j] * g[j] * (x[j] - m) * s;        \
            const T a = (T)(s1 / (double)D), c = (T)(s2 / (double)D);                                       \
            for (int64_t j = 0; dg && j < D; j++) dg[j] += gy[j] * (x[j] - m) * s;                          \
            for (int64_t j = 0; db && j < D; j++) db[j] += gy[j];                                           \
            for (int64_t j = 0; dx && j < D; j++) dx[r * D + j] += s * (gy[j] * g[j] - a - (x[j] - m) * s * c); \
        }                                                                                                   \
    }
LN_KERNELS(float, f32)
LN_KERNELS(double, f64)

/* Forward keeps mean and 1/std, one per row, for backward; the centred row is scratch. */
static tg_status ln_forward(tg_tensor *const *in, int n, tg_tensor *out, void *user) {
    (void)n, (void)user;
    int64_t D = tg_tensor_shape(in[1])[0], N = tg_tensor_numel(in[0]) / (D ? D : 1);
    tg_tensor *mu = tg_custom_keep(out, 1, &N), *rs = tg_custom_keep(out, 1, &N);
    void *xc = tg_custom_scratch(out, (size_t)D * sizeof(double));
    if (!mu || !rs || !xc) return tg_last_status();
    if (tg_tensor_dtype(out) == TG_F32)
        ln_forward_f32(tg_tensor_f32(in[0]), tg_tensor_f32(in[1]), tg_tensor_f32(in[2]), tg_tensor_f32(out),
                       tg_tensor_f32(mu), tg_tensor_f32(rs), xc, N, D);
    else
        ln_forward_f64(tg_tensor_f64(in[0]), tg_tensor_f64(in[1]), tg_tensor_f64(in[2]), tg_tensor_f64(out),
                       tg_tensor_f64(mu), tg_tensor_f64(rs), xc, N, D);
    return TG_OK;
}

static tg_status ln_backward(tg_tensor *const *in, int n, tg_tensor *out, tg_tensor *gy, void *const *grads,
                             void *user) {
    (void)n;
    int64_t D = tg_tensor_shape(in[1])[0], N = tg_tensor_numel(in[0]) / (D ? D : 1);
    tg_tensor *mu = tg_custom_kept(out, 0), *rs = tg_custom_kept(out, 1);
    if (!mu || !rs) return tg_last_status();
    N -= user != NULL; /* the planted bug of part 6: the last row gets no gradient */
    if (tg_tensor_dtype(out) == TG_F32)
        ln_backward_f32(tg_tensor_f32(in[0]), tg_tensor_f32(in[1]), tg_tensor_f32(gy), tg_tensor_f32(mu),
                        tg_tensor_f32(rs), tg_grad_f32(in[0], grads[0]), tg_grad_f32(in[1], grads[1]),
                        tg_grad_f32(in[2], grads[2]), N, D);
    else
        ln_backward_f64(tg_tensor_f64(in[0]), tg_tensor_f64(in[1]), tg_tensor_f64(gy), tg_tensor_f64(mu),
                        tg_tensor_f64(rs), tg_grad_f64(in[0], grads[0]), tg_grad_f64(in[1], grads[1]),
                        tg_grad_f64(in[2], grads[2]), N, D);
    return TG_OK;
}
static const tg_op_def layernorm_op = {.name = "layernorm", .shape = ln_shape, .forward = ln_forward,
                                       .backward = ln_backward, .input_names = ln_names};
/* ---- end of the custom op ---- */

static tg_tensor *layernorm_custom(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    return tg_custom(tape, &layernorm_op, in, 3, ctx);
}

/* 6c. The hand-derived backward, no tape: the reference the two tape versions are checked against. */
static tg_status layernorm_ref(tg_tensor *const *in, const tg_tensor *grad_out, tg_tensor *const *grads, void *ctx) {
    (void)ctx;
    int64_t D = tg_tensor_shape(in[1])[0], N = tg_tensor_numel(in[0]) / D;
    const double *x = tg_tensor_data(in[0]), *g = tg_tensor_data(in[1]), *gy = tg_tensor_data((tg_tensor *)grad_out);
    double *dx = grads[0] ? tg_tensor_data(grads[0]) : NULL, *dg = grads[1] ? tg_tensor_data(grads[1]) : NULL;
    double *db = grads[2] ? tg_tensor_data(grads[2]) : NULL;
    for (int64_t j = 0; j < D; j++) {
        if (dg) dg[j] = 0;
        if (db) db[j] = 0;
    }
    for (int64_t r = 0; r < N; r++) {
        const double *xr = x + r * D, *gr = gy + r * D;
        double m = 0, v = 0, s1 = 0, s2 = 0;
        for (int64_t j = 0; j < D; j++) m += xr[j] / (double)D;
        for (int64_t j = 0; j < D; j++) v += (xr[j] - m) * (xr[j] - m) / (double)D;
        double rs = 1 / sqrt(v + LN_EPS);
        for (int64_t j = 0; j < D; j++) {
            double xh = (xr[j] - m) * rs;
            s1 += gr[j] * g[j], s2 += gr[j] * g[j] * xh;
            if (dg) dg[j] += gr[j] * xh;
            if (db) db[j] += gr[j];
        }
        for (int64_t j = 0; dx && j < D; j++) dx[r * D + j] = rs * (gr[j] * g[j] - (s1 + (xr[j] - m) * rs * s2) / (double)D);
    }
    return TG_OK;
}

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Milliseconds per forward + backward of f on (N,D) f32 inputs, the best of 5 runs of reps steps. */
static double time_step(tg_fn f, int64_t N, int64_t D, int reps) {
    uint64_t seed = 7;
    tg_tensor *in[3] = {tg_tensor_new(TG_F32, 2, (int64_t[]){N, D}), tg_param_new(TG_F32, 1, &D),
                        tg_param_new(TG_F32, 1, &D)};
    tg_tape *tape = tg_tape_new();
    if (!in[0] || !in[1] || !in[2] || !tape) die("allocating the timing run");
    for (int i = 0; i < 3; i++) tg_tensor_fill_uniform(in[i], -1, 1, &seed);
    double best = 1e30;
    for (int run = 0; run < 5; run++) {
        double t0 = seconds();
        for (int k = 0; k < reps; k++) {
            tg_tensor *y = f(tape, in, NULL);
            if (!y || tg_backward(tape, tg_sum(tape, y), NULL) != TG_OK) die("timing");
            tg_tape_reset(tape);
        }
        double t = (seconds() - t0) / reps * 1e3;
        best = t < best ? t : best;
    }
    tg_tape_free(tape);
    for (int i = 0; i < 3; i++) tg_tensor_free(in[i]);
    return best;
}

/* Part 6: the three checked against each other, the planted bug, the timing. Returns the failures. */
static int layernorm_lesson(void) {
    enum { N = 4, D = 6 };
    uint64_t seed = 99;
    tg_tensor *in[3] = {tg_param_new(TG_F64, 2, (int64_t[]){N, D}), tg_param_new(TG_F64, 1, (int64_t[]){D}),
                        tg_param_new(TG_F64, 1, (int64_t[]){D})};
    if (!in[0] || !in[1] || !in[2]) die("allocating");
    for (int i = 0; i < 3; i++) tg_tensor_fill_uniform(in[i], -2, 2, &seed);
    int failures = 0;
    tg_gradcheck_report vs_ref, vs_num;

    printf("\n6. LayerNorm three ways: composed from ops, a custom op keeping mean and 1/std, the formula\n");
    tg_tape *tape = tg_tape_new();
    tg_tensor *ya = tape ? layernorm_composed(tape, in, NULL) : NULL, *yb = tape ? layernorm_custom(tape, in, NULL) : NULL;
    if (!ya || !yb) die("recording the layer norms");
    double worst = 0;
    for (int64_t i = 0; i < N * D; i++) worst = fmax(worst, fabs(tg_tensor_get(ya, i) - tg_tensor_get(yb, i)));
    printf("   outputs: composed vs custom differ by at most %.2g\n", worst);
    failures += !(worst <= 1e-12);
    tg_tape_free(tape);
    struct { const char *label; tg_fn f; } ways[] = {{"composed", layernorm_composed}, {"custom", layernorm_custom}};
    for (int w = 0; w < 2; w++) {
        int ok = tg_gradcheck_ref(ways[w].f, layernorm_ref, NULL, in, 3, NULL, &vs_ref, &vs_num);
        printf("   %-8s vs formula: max rel err %.2g; vs finite differences: %s\n", ways[w].label,
               vs_ref.max_rel_err, vs_num.passed ? "passed" : vs_num.message);
        failures += !ok || !(vs_ref.max_rel_err <= 1e-12);
    }

    printf("   a bug planted in the custom backward (its last row gets no gradient), node by node:\n");
    tape = tg_tape_new();
    tg_tensor *y = tape ? layernorm_custom(tape, (tg_tensor *[]){tg_tanh(tape, in[0]), in[1], in[2]}, "bug") : NULL;
    if (!y) die("recording");
    int ok = tg_gradcheck_nodes(tape, tg_sum(tape, y), NULL, &vs_num);
    printf("   %s\n", vs_num.message);
    if (ok || strcmp(vs_num.op, "layernorm")) {
        printf("   the planted bug was NOT named\n");
        failures++;
    } else {
        printf("   caught: node %%%lld, %s (the tanh before it passed)\n", (long long)vs_num.node, vs_num.op);
    }
    tg_tape_free(tape);

    /* The custom op records one node and keeps two (N,)-vectors; the composed one records eight and saves
       what each needs, (N,D) tensors among them. */
    double tc = time_step(layernorm_composed, 256, 512, 20), tu = time_step(layernorm_custom, 256, 512, 20);
    printf("   f32 (256,512), forward + backward: composed %.3f ms, custom %.3f ms (%.1fx)\n", tc, tu, tc / tu);
    for (int i = 0; i < 3; i++) tg_tensor_free(in[i]);
    return failures;
}

int main(void) {
    enum { N = 3, D = 4 };
    uint64_t seed = 2024;
    tg_tensor *x = tg_param_new(TG_F64, 2, (int64_t[]){N, D}); /* params, so the check covers dx too */
    tg_tensor *W = tg_param_new(TG_F64, 2, (int64_t[]){D, D});
    tg_tensor *b = tg_param_new(TG_F64, 1, (int64_t[]){D});
    if (!x || !W || !b) die("allocating");
    tg_tensor_fill_uniform(x, -2, 2, &seed);
    tg_tensor_fill_uniform(W, -1, 1, &seed);
    tg_tensor_fill_uniform(b, -1, 1, &seed);
    tg_tensor *inputs[3] = {x, W, b};
    tg_gradcheck_report report;
    int failures = 0;

    printf("1. A residual dense layer composed from ops: y = x + tanh(x @ W + b)\n");
    int ok = tg_gradcheck(residual_fn, NULL, inputs, 3, NULL, &report);
    tg_gradcheck_print(&report, stdout);
    failures += !ok;

    printf("\n2. A custom op with a hand-written backward: softplus(x @ W + b)\n");
    ok = tg_gradcheck(softplus_dense_fn, (void *)&softplus_op, inputs, 3, NULL, &report);
    tg_gradcheck_print(&report, stdout);
    failures += !ok;
    /* On the tape, a custom op is a node like any other, under its own name. */
    tg_tape *tape = tg_tape_new();
    if (!tape || !softplus_dense_fn(tape, inputs, (void *)&softplus_op)) die("recording");
    tg_tape_print(tape, stdout);
    tg_tape_free(tape);

    printf("\n3. A seven-op block, h = softplus(x @ W + b), y = h + tanh(h @ W + b), with a bug planted in\n"
           "   softplus's backward (element 5 uses x[4]):\n");
    ok = tg_gradcheck(block_fn, (void *)&softplus_buggy_op, inputs, 3, NULL, &report);
    tg_gradcheck_print(&report, stdout);
    /* The check must fail here; a check that passed a planted bug would be worthless. */
    if (ok) {
        printf("   the planted bug was NOT caught\n");
        failures++;
    } else {
        printf("   caught: the report names input %d (%s), element %lld, but not which op is wrong\n", report.input,
               report.input == 0 ? "x" : report.input == 1 ? "W" : "b", (long long)report.index);
    }
    /* Which of the seven? Record the block once and check each node on its own. */
    printf("\n   tg_gradcheck_nodes on one recording of the block:\n");
    tape = tg_tape_new();
    tg_tensor *y = tape ? block_fn(tape, inputs, (void *)&softplus_buggy_op) : NULL;
    if (!y) die("recording");
    ok = tg_gradcheck_nodes(tape, tg_sum(tape, y), NULL, &report);
    tg_gradcheck_print(&report, stdout);
    if (ok || strcmp(tg_gradcheck_nodes_failed_op(), "softplus_buggy") || report.index != 5) {
        printf("   the planted bug was NOT pinned on its node\n");
        failures++;
    } else {
        printf("   caught: node %%%lld, %s, input 0 element %lld\n", (long long)tg_gradcheck_nodes_failed_index(),
               tg_gradcheck_nodes_failed_op(), (long long)report.index);
    }
    tg_tape_free(tape);

    printf("\n4. softplus whose backward assigns (gx[i] = ...) instead of adding (gx[i] += ...):\n");
    ok = tg_gradcheck(block_fn, (void *)&softplus_assigns_op, inputs, 3, NULL, &report);
    tg_gradcheck_print(&report, stdout);
    if (ok || !strstr(report.message, "overwrites its gradient")) {
        printf("   the overwriting backward was NOT caught\n");
        failures++;
    } else {
        printf("   caught, though its values are right: x @ W + b has one consumer here, but a second would\n"
               "   lose the first's share\n");
    }
    tg_clear_error();

    printf("\n5. Back to the wrong slope: softplus_buggy alone, on a (3,4) input:\n");
    /* Inside a layer the wrong slope spreads into x, W and b. Checked alone, the op points at itself. */
    ok = tg_gradcheck(softplus_fn, (void *)&softplus_buggy_op, &x, 1, NULL, &report);
    tg_gradcheck_print(&report, stdout);
    if (ok || report.index != 5) {
        printf("   the planted bug was NOT located\n");
        failures++;
    } else {
        printf("   caught at element %lld, where the bug is\n", (long long)report.index);
    }

    failures += layernorm_lesson();

    tg_tensor_free(x), tg_tensor_free(W), tg_tensor_free(b);
    return failures ? 1 : 0;
}
