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
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

    tg_tensor_free(x), tg_tensor_free(W), tg_tensor_free(b);
    return failures ? 1 : 0;
}
