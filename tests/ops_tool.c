/* The C half of ops_numpy_check.py, which checks ops' forward and backward against NumPy.
 *
 *   ops_tool DIR OP [ARG...]
 *
 * loads DIR/in0.npy, DIR/in1.npy, ... (as many as exist; f32/f64 ones become parameters, i64 ones stay
 * indices), runs OP with the numeric ARGs, backpropagates DIR/gout.npy from its output, and writes
 * DIR/out.npy and DIR/grad<i>.npy for every parameter input. Exits 1, saying why, on any failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tapegrad.h"

#define MAXIN 8

static int fail(const char *what) {
    fprintf(stderr, "ops_tool: %s: %s (%s)\n", what, tg_last_error(), tg_status_name(tg_last_status()));
    return 1;
}

static tg_tensor *run(tg_tape *tape, const char *op, tg_tensor **in, int n, const double *a) {
    if (!strcmp(op, "matmul")) return tg_matmul(tape, in[0], in[1]);
    if (!strcmp(op, "argmax")) return tg_argmax(tape, in[0], (int)a[0], (int)a[1]);
    if (!strcmp(op, "div")) return tg_div(tape, in[0], in[1]);
    if (!strcmp(op, "neg")) return tg_neg(tape, in[0]);
    if (!strcmp(op, "add_scalar")) return tg_add_scalar(tape, in[0], a[0]);
    if (!strcmp(op, "exp")) return tg_exp(tape, in[0]);
    if (!strcmp(op, "log")) return tg_log(tape, in[0]);
    if (!strcmp(op, "sqrt")) return tg_sqrt(tape, in[0]);
    if (!strcmp(op, "sigmoid")) return tg_sigmoid(tape, in[0]);
    if (!strcmp(op, "relu")) return tg_relu(tape, in[0]);
    if (!strcmp(op, "sum_axis")) return tg_sum_axis(tape, in[0], (int)a[0], (int)a[1]);
    if (!strcmp(op, "mean_axis")) return tg_mean_axis(tape, in[0], (int)a[0], (int)a[1]);
    if (!strcmp(op, "max_axis")) return tg_max_axis(tape, in[0], (int)a[0], (int)a[1]);
    if (!strcmp(op, "transpose")) return tg_transpose(tape, in[0], (int)a[0], (int)a[1]);
    if (!strcmp(op, "concat")) return tg_concat(tape, in, n, (int)a[0]);
    if (!strcmp(op, "linear")) return tg_linear(tape, in[0], in[1], n > 2 ? in[2] : NULL);
    if (!strcmp(op, "addmm")) return tg_addmm(tape, in[0], in[1], in[2]);
    if (!strcmp(op, "embedding")) return tg_embedding(tape, in[0], in[1]);
    if (!strcmp(op, "softmax")) return tg_softmax(tape, in[0], (int)a[0]);
    if (!strcmp(op, "log_softmax")) return tg_log_softmax(tape, in[0], (int)a[0]);
    if (!strcmp(op, "cross_entropy")) return tg_cross_entropy(tape, in[0], in[1], (int64_t)a[0]);
    if (!strcmp(op, "dropout")) {
        tg_rng rng;
        tg_rng_seed(&rng, (uint64_t)a[1]);
        return tg_dropout(tape, in[0], a[0], &rng);
    }
    tg_set_error(TG_EINVAL, "unknown op %s", op);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s DIR OP [ARG...]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1], *op = argv[2];
    double args[8] = {0};
    for (int i = 3; i < argc && i < 11; i++) args[i - 3] = strtod(argv[i], NULL);
    char path[4096];
    tg_tensor *in[MAXIN] = {0};
    int n = 0;
    for (; n < MAXIN; n++) {
        snprintf(path, sizeof path, "%s/in%d.npy", dir, n);
        FILE *f = fopen(path, "rb");
        if (!f) break;
        fclose(f);
        tg_tensor *t = tg_load_npy(path);
        if (!t) return fail(path);
        if (tg_tensor_dtype(t) == TG_I64) {
            in[n] = t;
            continue;
        }
        in[n] = tg_param_new(tg_tensor_dtype(t), tg_tensor_ndim(t), tg_tensor_shape(t));
        if (!in[n]) return fail("tg_param_new");
        memcpy(tg_tensor_data(in[n]), tg_tensor_data(t), (size_t)tg_tensor_numel(t) * (tg_tensor_dtype(t) == TG_F32 ? 4 : 8));
        tg_tensor_free(t);
    }
    snprintf(path, sizeof path, "%s/gout.npy", dir);
    tg_tensor *gout = tg_load_npy(path);
    tg_tape *tape = tg_tape_new();
    tg_tensor *out = gout && tape ? run(tape, op, in, n, args) : NULL;
    if (!out) return fail(op);
    snprintf(path, sizeof path, "%s/out.npy", dir);
    /* an index output (argmax) has no gradient: its values are all there is to compare */
    if (tg_save_npy(path, out) || (tg_tensor_dtype(out) != TG_I64 && tg_backward(tape, out, gout)))
        return fail("save or backward");
    for (int i = 0; i < n; i++) {
        if (!tg_tensor_requires_grad(in[i])) continue;
        tg_tensor *g = tg_tensor_from(tg_tensor_dtype(in[i]), tg_tensor_ndim(in[i]), tg_tensor_shape(in[i]),
                                      tg_tensor_grad(in[i]));
        snprintf(path, sizeof path, "%s/grad%d.npy", dir, i);
        if (!g || tg_save_npy(path, g)) return fail(path);
        tg_tensor_free(g);
    }
    tg_tape_free(tape);
    tg_tensor_free(gout);
    for (int i = 0; i < n; i++) tg_tensor_free(in[i]);
    return 0;
}
