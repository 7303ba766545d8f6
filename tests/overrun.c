/* A one-past-the-end write into an arena block, planted on purpose: AddressSanitizer and valgrind must
 * report it (overrun_check.sh runs this and looks for the report). Without the arena's redzones neither
 * would: the block is a slice of one big malloc, and the next block starts where this one ends.
 *   overrun op        a custom op's forward writes out[numel]
 *   overrun adjacent  the caller writes one past an output that another output follows
 * Each output is 8 doubles, 64 bytes, so no alignment padding hides the write. */
#include <stdio.h>
#include <string.h>
#include "tapegrad.h"

static tg_status same_shape(tg_tensor *const *in, int n, void *user, int *ndim, int64_t *shape) {
    (void)n, (void)user;
    *ndim = tg_tensor_ndim(in[0]);
    memcpy(shape, tg_tensor_shape(in[0]), (size_t)*ndim * sizeof *shape);
    return TG_OK;
}

static tg_status overrun_forward(tg_tensor *const *in, int n, tg_tensor *out, void *user) {
    (void)in, (void)n, (void)user;
    double *y = tg_tensor_data(out);
    printf("overrun: the op writes out[%lld]\n", (long long)tg_tensor_numel(out));
    fflush(stdout);
    y[tg_tensor_numel(out)] = 1.0; /* the planted bug */
    return TG_OK;
}

static tg_status no_backward(tg_tensor *const *in, int n, tg_tensor *out, tg_tensor *gout, void *const *grads,
                             void *user) {
    (void)in, (void)n, (void)out, (void)gout, (void)grads, (void)user;
    return TG_OK;
}

int main(int argc, char **argv) {
    static const tg_op_def overrun_op = {.name = "overrun", .shape = same_shape, .forward = overrun_forward, .backward = no_backward};
    int op = argc > 1 && !strcmp(argv[1], "op"), adjacent = argc > 1 && !strcmp(argv[1], "adjacent");
    if (!op && !adjacent) {
        fprintf(stderr, "usage: overrun op|adjacent\n");
        return 2;
    }
    tg_tensor *p = tg_param_new(TG_F64, 1, (int64_t[]){8});
    tg_tape *tape = tg_tape_new();
    if (!p || !tape) return 2;
    if (op) {
        if (!tg_custom(tape, &overrun_op, &p, 1, NULL)) return 2;
    } else {
        tg_tensor *a = tg_scale(tape, p, 2), *b = tg_scale(tape, p, 3);
        if (!a || !b) return 2;
        printf("overrun: the caller writes a[8], before b\n");
        fflush(stdout);
        ((double *)tg_tensor_data(a))[8] = 1.0; /* the planted bug */
    }
    printf("overrun: the program went on after the write\n");
    tg_tape_free(tape);
    tg_tensor_free(p);
    return 0;
}
