/* The C half of train_torch_check.py, which runs tapegrad's optimizers against torch.optim's.
 *
 *   train_tool KIND LR MOMENTUM NESTEROV WEIGHT_DECAY BETA1 BETA2 EPS MAX_NORM STEPS
 *
 * KIND is sgd, adam or adamw; MAX_NORM 0 means no clipping. The problem is test_train.c's, in f64:
 * L = sum_i sum(a_i * (p_i - c_i)^2) over the parameters W (2,3), b (3,) and u (2,); b joins the loss at
 * step 3 (no gradient before: torch's grad is None), u is in it for steps 2..4 only (afterwards a zeroed
 * gradient). Prints, with %.17g values,
 *     a NAME v...     c NAME v...     p 0 NAME v...   (the start)
 *     norm S v        p S+1 NAME v... (after step S: the norm clip returned, then the parameters)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tapegrad.h"

#define NP 3
static const char *const names[NP] = {"W", "b", "u"};
static const int join[NP] = {0, 3, 2}, leave[NP] = {1000, 1000, 5};
static const int ndim[NP] = {2, 1, 1};
static const int64_t shapes[NP][2] = {{2, 3}, {3}, {2}};

static void print(const char *tag, int step, const char *name, tg_tensor *t) {
    printf("%s", tag);
    if (step >= 0) printf(" %d", step);
    printf(" %s", name);
    for (int64_t k = 0; k < tg_tensor_numel(t); k++) printf(" %.17g", tg_tensor_get(t, k));
    printf("\n");
}

static int fail(const char *what) {
    fprintf(stderr, "train_tool: %s: %s\n", what, tg_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 11) {
        fprintf(stderr, "usage: %s KIND LR MOMENTUM NESTEROV WD BETA1 BETA2 EPS MAX_NORM STEPS\n", argv[0]);
        return 2;
    }
    tg_optim_kind kind = !strcmp(argv[1], "sgd") ? TG_OPTIM_SGD : !strcmp(argv[1], "adam") ? TG_OPTIM_ADAM
                                                                                            : TG_OPTIM_ADAMW;
    tg_optim_opts o = {.kind = kind, .lr = atof(argv[2]), .momentum = atof(argv[3]), .nesterov = atoi(argv[4]),
                       .weight_decay = atof(argv[5]), .beta1 = atof(argv[6]), .beta2 = atof(argv[7]),
                       .eps = atof(argv[8])};
    double max_norm = atof(argv[9]);
    int steps = atoi(argv[10]);
    tg_tensor *p[NP], *a[NP], *c[NP];
    tg_params *ps = tg_params_new();
    uint64_t seed = 42;
    for (int i = 0; i < NP; i++) {
        p[i] = tg_param_new(TG_F64, ndim[i], shapes[i]);
        a[i] = tg_tensor_new(TG_F64, ndim[i], shapes[i]);
        c[i] = tg_tensor_new(TG_F64, ndim[i], shapes[i]);
        tg_tensor_fill_uniform(p[i], -1, 1, &seed);
        tg_tensor_fill_uniform(a[i], 0.5, 1.5, &seed);
        tg_tensor_fill_uniform(c[i], -2, 2, &seed);
        if (tg_params_add(ps, names[i], p[i])) return fail("tg_params_add");
        print("a", -1, names[i], a[i]);
        print("c", -1, names[i], c[i]);
        print("p", 0, names[i], p[i]);
    }
    tg_optim *opt = tg_optim_new(ps, &o);
    tg_tape *tape = tg_tape_new();
    if (!opt || !tape) return fail("tg_optim_new");
    for (int s = 0; s < steps; s++) {
        tg_params_zero_grad(ps);
        tg_tensor *L = NULL;
        for (int i = 0; i < NP; i++)
            if (join[i] <= s && s < leave[i]) {
                tg_tensor *d = tg_sub(tape, p[i], c[i]);
                tg_tensor *term = tg_sum(tape, tg_mul(tape, tg_mul(tape, a[i], d), d));
                L = L ? tg_add(tape, L, term) : term;
            }
        if (!L || tg_backward(tape, L, NULL)) return fail("backward");
        if (max_norm > 0) printf("norm %d %.17g\n", s, tg_params_clip_grad_norm(ps, max_norm));
        if (tg_optim_step(opt)) return fail("tg_optim_step");
        tg_tape_reset(tape);
        for (int i = 0; i < NP; i++) print("p", s + 1, names[i], p[i]);
    }
    tg_tape_free(tape);
    tg_optim_free(opt);
    tg_params_free(ps);
    for (int i = 0; i < NP; i++) tg_tensor_free(p[i]), tg_tensor_free(a[i]), tg_tensor_free(c[i]);
    return 0;
}
