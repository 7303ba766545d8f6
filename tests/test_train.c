/* Training: parameter lists, clipping, SGD/Adam/AdamW against the written rules, checkpoints. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include "tg_testutil.h"

static void setup(void) { tt_dir_make("tg_train"); }

TestSuite(train, .init = setup, .fini = tt_dir_remove);

static int same_file(const char *a, const char *b) {
    size_t na, nb;
    unsigned char *pa = tt_read_file(a, &na), *pb = tt_read_file(b, &nb);
    int same = na == nb && !memcmp(pa, pb, na);
    free(pa), free(pb);
    return same;
}

static size_t nbytes(tg_tensor *t) { return (size_t)tg_tensor_numel(t) * (tg_tensor_dtype(t) == TG_F32 ? 4 : 8); }

/* ---- the fixed problem: L = sum_i sum(a_i * (p_i - c_i)^2), so dL/dp_i = 2 a_i (p_i - c_i) ---- */

#define NP 3
#define NE 6
/* W is in every step's loss; b joins at step 3, so the optimizer skips it until then; u is in the loss for
   steps 2..4 only, so from step 5 on it steps with a zero gradient (momentum and decay still move it). */
static const char *const pnames[NP] = {"W", "b", "u"};
static const int pjoin[NP] = {0, 3, 2}, pleave[NP] = {1000, 1000, 5};
static const int pndim[NP] = {2, 1, 1};
static const int64_t pshape[NP][2] = {{2, 3}, {3}, {2}};

typedef struct {
    tg_params *ps;
    tg_tensor *p[NP], *a[NP], *c[NP];
    tg_tape *tape;
} problem;

static void problem_init(problem *pr, tg_dtype dt, uint64_t seed) {
    pr->ps = tg_params_new();
    pr->tape = tg_tape_new();
    cr_assert(pr->ps && pr->tape);
    for (int i = 0; i < NP; i++) {
        uint64_t s = 1000 + (uint64_t)i; /* the problem is fixed; only the starting point follows seed */
        pr->p[i] = tt_rand(dt, 1, seed * 10 + (uint64_t)i, pndim[i], pshape[i]);
        pr->a[i] = tg_tensor_new(dt, pndim[i], pshape[i]);
        pr->c[i] = tg_tensor_new(dt, pndim[i], pshape[i]);
        tg_tensor_fill_uniform(pr->a[i], 0.5, 1.5, &s);
        tg_tensor_fill_uniform(pr->c[i], -2.0, 2.0, &s);
        cr_assert_eq(tg_params_add(pr->ps, pnames[i], pr->p[i]), TG_OK, "%s", tg_last_error());
    }
}

static void problem_free(problem *pr) {
    tg_params_free(pr->ps);
    tg_tape_free(pr->tape);
    for (int i = 0; i < NP; i++) tg_tensor_free(pr->p[i]), tg_tensor_free(pr->a[i]), tg_tensor_free(pr->c[i]);
}

static int in_loss(int i, int step) { return pjoin[i] <= step && step < pleave[i]; }

static void problem_backward(problem *pr, int step) {
    tg_tape *tp = pr->tape;
    tg_tensor *L = NULL;
    for (int i = 0; i < NP; i++)
        if (in_loss(i, step)) {
            tg_tensor *d = tg_sub(tp, pr->p[i], pr->c[i]);
            tg_tensor *term = tg_sum(tp, tg_mul(tp, tg_mul(tp, pr->a[i], d), d));
            L = L ? tg_add(tp, L, term) : term;
        }
    cr_assert(L, "%s", tg_last_error());
    cr_assert_eq(tg_backward(tp, L, NULL), TG_OK, "%s", tg_last_error());
}

/* A schedule, to show that set_lr takes and that a checkpoint carries the current lr. */
static double sched(double lr0, int step) { return lr0 / (1.0 + 0.1 * step); }

/* Steps from..to-1: zero the gradients, backward, step (after set_lr when schedule is set). */
static void train(problem *pr, tg_optim *o, double lr0, int schedule, int from, int to) {
    for (int s = from; s < to; s++) {
        tg_params_zero_grad(pr->ps);
        problem_backward(pr, s);
        if (schedule) tg_optim_set_lr(o, sched(lr0, s));
        cr_assert_eq(tg_optim_step(o), TG_OK, "%s", tg_last_error());
        tg_tape_reset(pr->tape);
    }
}

/* The rules of tg_train.h, written out again here, element by element in double. */
typedef struct {
    double p[NP][NE], s0[NP][NE], s1[NP][NE];
    int64_t t[NP];
} ref;

static void ref_init(ref *r, problem *pr) {
    memset(r, 0, sizeof *r);
    for (int i = 0; i < NP; i++)
        for (int64_t k = 0; k < tg_tensor_numel(pr->p[i]); k++) r->p[i][k] = tg_tensor_get(pr->p[i], k);
}

static void ref_step(const tg_optim_opts *o, ref *r, problem *pr, int step) {
    for (int i = 0; i < NP; i++) {
        if (step < pjoin[i]) continue; /* no gradient yet: skipped, its t stays */
        int64_t t = ++r->t[i];
        for (int64_t k = 0; k < tg_tensor_numel(pr->p[i]); k++) {
            double *p = &r->p[i][k], *s0 = &r->s0[i][k], *s1 = &r->s1[i][k];
            double a = tg_tensor_get(pr->a[i], k), c = tg_tensor_get(pr->c[i], k);
            double g = in_loss(i, step) ? 2 * a * (*p - c) : 0;
            if (o->kind == TG_OPTIM_SGD) {
                g = g + o->weight_decay * *p;
                if (o->momentum != 0) {
                    *s0 = t == 1 ? g : o->momentum * *s0 + g;
                    g = o->nesterov ? g + o->momentum * *s0 : *s0;
                }
                *p = *p - o->lr * g;
            } else {
                if (o->kind == TG_OPTIM_ADAMW) *p = *p * (1 - o->lr * o->weight_decay);
                else g = g + o->weight_decay * *p;
                *s0 = o->beta1 * *s0 + (1 - o->beta1) * g;
                *s1 = o->beta2 * *s1 + (1 - o->beta2) * g * g;
                *p = *p - o->lr * (*s0 / (1 - pow(o->beta1, (double)t))) /
                              (sqrt(*s1 / (1 - pow(o->beta2, (double)t))) + o->eps);
            }
        }
    }
}

static tg_optim_opts opts_of(tg_optim_kind kind, double lr, double momentum, int nesterov, double wd) {
    tg_optim_opts o = tg_optim_defaults(kind);
    o.lr = lr, o.momentum = momentum, o.nesterov = nesterov, o.weight_decay = wd;
    return o;
}

/* 10 steps of o on the problem, each compared with the reference to rel (relative to 1 + |value|). */
static void check_rule(const char *what, tg_optim_opts o, tg_dtype dt, double rel) {
    problem pr;
    problem_init(&pr, dt, 7);
    ref r;
    ref_init(&r, &pr);
    tg_optim *opt = tg_optim_new(pr.ps, &o);
    cr_assert(opt, "%s: %s", what, tg_last_error());
    double worst = 0;
    for (int s = 0; s < 10; s++) {
        train(&pr, opt, 0, 0, s, s + 1);
        ref_step(&o, &r, &pr, s);
        for (int i = 0; i < NP; i++)
            for (int64_t k = 0; k < tg_tensor_numel(pr.p[i]); k++) {
                double got = tg_tensor_get(pr.p[i], k), want = r.p[i][k], err = fabs(got - want) / (1 + fabs(want));
                if (err > worst) worst = err;
                cr_expect(err <= rel, "%s: step %d, %s[%lld] is %.17g, the rule gives %.17g", what, s, pnames[i],
                          (long long)k, got, want);
            }
    }
    /* the skipped parameter really was skipped until it joined: b moved only from step 3 on */
    cr_expect_eq(r.t[1], 7, "%s", what);
    cr_log_info("%s: worst relative error %.3g", what, worst);
    tg_optim_free(opt);
    problem_free(&pr);
}

Test(train, sgd_follows_torch_rules_in_f64) {
    check_rule("sgd", opts_of(TG_OPTIM_SGD, 0.1, 0, 0, 0), TG_F64, 1e-12);
    check_rule("sgd momentum", opts_of(TG_OPTIM_SGD, 0.1, 0.9, 0, 0), TG_F64, 1e-12);
    check_rule("sgd nesterov", opts_of(TG_OPTIM_SGD, 0.1, 0.9, 1, 0), TG_F64, 1e-12);
    check_rule("sgd weight decay", opts_of(TG_OPTIM_SGD, 0.1, 0, 0, 0.3), TG_F64, 1e-12);
    check_rule("sgd momentum, decay", opts_of(TG_OPTIM_SGD, 0.05, 0.5, 0, 0.3), TG_F64, 1e-12);
    check_rule("sgd nesterov, decay", opts_of(TG_OPTIM_SGD, 0.05, 0.7, 1, 0.2), TG_F64, 1e-12);
}

Test(train, adam_and_adamw_follow_torch_rules_in_f64) {
    check_rule("adam", opts_of(TG_OPTIM_ADAM, 0.1, 0, 0, 0), TG_F64, 1e-12);
    check_rule("adam decay", opts_of(TG_OPTIM_ADAM, 0.1, 0, 0, 0.3), TG_F64, 1e-12);
    tg_optim_opts o = opts_of(TG_OPTIM_ADAM, 0.05, 0, 0, 0);
    o.beta1 = 0.5, o.beta2 = 0.6, o.eps = 1e-3;
    check_rule("adam betas, eps", o, TG_F64, 1e-12);
    check_rule("adamw", opts_of(TG_OPTIM_ADAMW, 0.1, 0, 0, 0.3), TG_F64, 1e-12);
    check_rule("adamw default decay", opts_of(TG_OPTIM_ADAMW, 0.1, 0, 0, 1e-2), TG_F64, 1e-12);
    o.kind = TG_OPTIM_ADAMW, o.weight_decay = 0.5;
    check_rule("adamw betas, eps", o, TG_F64, 1e-12);
}

/* The step's loops are vectorized, and a copy of them runs on AVX2 or AVX-512 (train.c, TG__CLONES): each
   must give the bits of the element-wise rule as tg_train.h writes it, in double, stored in the dtype.
   Here the rule runs one element at a time in this file's plain x86-64 code, beside the library's copy in
   force on this processor, over 1037 elements (no multiple of any vector width, so the tails run too);
   the gradient is a, exactly (L = sum(a * p)). A fused multiply-add in a copy changes the last bits. */
#define RULE_STEP(T, o, t, n, p, a, s0, s1)                                                        \
    do {                                                                                           \
        const double lr = (o).lr, mu = (o).momentum, wd = (o).weight_decay, b1 = (o).beta1, b2 = (o).beta2; \
        const double bc1 = 1 - pow(b1, (double)(t)), bc2 = 1 - pow(b2, (double)(t)), decay = 1 - lr * wd; \
        for (int64_t k = 0; k < (n); k++) {                                                        \
            double g = (a)[k], x = (p)[k];                                                         \
            if ((o).kind == TG_OPTIM_SGD) {                                                        \
                if (wd != 0) g += wd * x;                                                          \
                if (mu != 0) {                                                                     \
                    (s0)[k] = (T)((t) == 1 ? g : mu * (double)(s0)[k] + g);                        \
                    g = (o).nesterov ? g + mu * (double)(s0)[k] : (double)(s0)[k];                 \
                }                                                                                  \
                (p)[k] = (T)(x - lr * g);                                                          \
            } else {                                                                               \
                if ((o).kind == TG_OPTIM_ADAMW) x *= decay;                                        \
                else if (wd != 0) g += wd * x;                                                     \
                (s0)[k] = (T)(b1 * (double)(s0)[k] + (1 - b1) * g);                                \
                (s1)[k] = (T)(b2 * (double)(s1)[k] + (1 - b2) * g * g);                            \
                (p)[k] = (T)(x - lr * ((double)(s0)[k] / bc1) / (sqrt((double)(s1)[k] / bc2) + eps_)); \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static void check_bits(const char *what, tg_optim_opts o, tg_dtype dt) {
    enum { N = 1037 };
    const int64_t shape[1] = {N};
    tg_params *ps = tg_params_new();
    tg_tape *tp = tg_tape_new();
    tg_tensor *p = tt_rand(dt, 1, 5, 1, shape), *a = tt_rand(dt, 0, 6, 1, shape);
    cr_assert(ps && tp && p && a && tg_params_add(ps, "p", p) == TG_OK, "%s", tg_last_error());
    tg_optim *opt = tg_optim_new(ps, &o);
    cr_assert(opt, "%s: %s", what, tg_last_error());
    double rp[N], ra[N], s0[N] = {0}, s1[N] = {0};
    float fp[N], fa[N], f0[N] = {0}, f1[N] = {0};
    for (int k = 0; k < N; k++) rp[k] = tg_tensor_get(p, k), ra[k] = tg_tensor_get(a, k);
    for (int k = 0; k < N; k++) fp[k] = (float)rp[k], fa[k] = (float)ra[k];
    const double eps_ = o.eps;
    for (int t = 1; t <= 4; t++) {
        tg_params_zero_grad(ps);
        cr_assert_eq(tg_backward(tp, tg_sum(tp, tg_mul(tp, a, p)), NULL), TG_OK, "%s", tg_last_error());
        cr_assert_eq(tg_optim_step(opt), TG_OK, "%s", tg_last_error());
        tg_tape_reset(tp);
        if (dt == TG_F32) RULE_STEP(float, o, t, N, fp, fa, f0, f1);
        else RULE_STEP(double, o, t, N, rp, ra, s0, s1);
        int bad = 0;
        for (int k = 0; k < N && !bad; k++) {
            double got = tg_tensor_get(p, k), want = dt == TG_F32 ? (double)fp[k] : rp[k];
            bad = memcmp(&got, &want, sizeof got) != 0;
            cr_expect(!bad, "%s, %s: step %d, p[%d] is %a, the element-wise rule gives %a", what,
                      dt == TG_F32 ? "f32" : "f64", t, k, got, want);
        }
    }
    tg_optim_free(opt), tg_params_free(ps), tg_tape_free(tp), tg_tensor_free(p), tg_tensor_free(a);
}

Test(train, optimizer_steps_give_the_element_wise_rules_bits) {
    tg_optim_opts adam = opts_of(TG_OPTIM_ADAM, 0.05, 0, 0, 0), adamw = opts_of(TG_OPTIM_ADAMW, 0.05, 0, 0, 0.3);
    adam.beta1 = 0.7, adam.beta2 = 0.8, adam.eps = 1e-3, adamw.eps = 1e-3;
    const struct {
        const char *what;
        tg_optim_opts o;
    } cases[] = {
        {"sgd", opts_of(TG_OPTIM_SGD, 0.1, 0, 0, 0)},
        {"sgd decay", opts_of(TG_OPTIM_SGD, 0.1, 0, 0, 0.3)},
        {"sgd momentum, decay", opts_of(TG_OPTIM_SGD, 0.05, 0.9, 0, 0.3)},
        {"sgd nesterov", opts_of(TG_OPTIM_SGD, 0.05, 0.7, 1, 0)},
        {"adam", adam},
        {"adam decay", opts_of(TG_OPTIM_ADAM, 0.1, 0, 0, 0.3)},
        {"adamw", adamw},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int f64 = 0; f64 < 2; f64++) check_bits(cases[i].what, cases[i].o, f64 ? TG_F64 : TG_F32);
}

/* f32 parameters step with f32 state; the tape's gradients and the stored values are rounded. */
Test(train, f32_parameters_step) {
    check_rule("f32 sgd nesterov", opts_of(TG_OPTIM_SGD, 0.05, 0.7, 1, 0.2), TG_F32, 1e-5);
    check_rule("f32 adam", opts_of(TG_OPTIM_ADAM, 0.1, 0, 0, 0.3), TG_F32, 1e-5);
    check_rule("f32 adamw", opts_of(TG_OPTIM_ADAMW, 0.1, 0, 0, 0.3), TG_F32, 1e-5);
}

Test(train, defaults_are_torchs) {
    tg_optim_opts s = tg_optim_defaults(TG_OPTIM_SGD), a = tg_optim_defaults(TG_OPTIM_ADAM),
                  w = tg_optim_defaults(TG_OPTIM_ADAMW);
    cr_expect(s.kind == TG_OPTIM_SGD && s.lr == 0.01 && s.momentum == 0 && !s.nesterov && s.weight_decay == 0);
    cr_expect(a.kind == TG_OPTIM_ADAM && a.lr == 1e-3 && a.beta1 == 0.9 && a.beta2 == 0.999 && a.eps == 1e-8 &&
              a.weight_decay == 0 && a.momentum == 0 && !a.nesterov);
    cr_expect(w.kind == TG_OPTIM_ADAMW && w.lr == 1e-3 && w.beta1 == 0.9 && w.beta2 == 0.999 && w.eps == 1e-8 &&
              w.weight_decay == 1e-2);
}

/* The zero-initialised options a caller might write by hand are valid. */
Test(train, hand_written_options) {
    problem pr;
    problem_init(&pr, TG_F64, 1);
    tg_optim *o = tg_optim_new(pr.ps, &(tg_optim_opts){.kind = TG_OPTIM_SGD, .lr = 0.1});
    cr_expect(o, "%s", tg_last_error());
    tg_optim_free(o);
    problem_free(&pr);
}

/* tg_zero_grad leaves a parameter "with a gradient": zeroed, it still steps (here weight decay moves it). */
Test(train, zeroed_gradient_still_steps_and_unwritten_one_does_not) {
    problem pr;
    problem_init(&pr, TG_F64, 1);
    tg_optim_opts oo = opts_of(TG_OPTIM_SGD, 0.1, 0, 0, 0.5);
    tg_optim *o = tg_optim_new(pr.ps, &oo);
    double w0 = tg_tensor_get(pr.p[0], 0), b0 = tg_tensor_get(pr.p[1], 0);
    cr_assert_eq(tg_optim_step(o), TG_OK);
    cr_expect_eq(tg_tensor_get(pr.p[0], 0), w0, "a parameter no backward reached was stepped");
    problem_backward(&pr, 0); /* W only */
    tg_tape_reset(pr.tape);
    tg_params_zero_grad(pr.ps);
    cr_assert_eq(((double *)tg_tensor_grad(pr.p[0]))[0], 0.0);
    cr_assert_eq(tg_optim_step(o), TG_OK);
    cr_expect_eq(tg_tensor_get(pr.p[0], 0), w0 - 0.1 * (0.5 * w0), "W: zeroed gradient, decay only");
    cr_expect_eq(tg_tensor_get(pr.p[1], 0), b0, "b never had a gradient");
    tg_optim_free(o);
    problem_free(&pr);
}

Test(train, set_lr_changes_the_next_steps) {
    problem pr;
    problem_init(&pr, TG_F64, 1);
    tg_optim_opts oo = opts_of(TG_OPTIM_SGD, 0.1, 0, 0, 0);
    tg_optim *o = tg_optim_new(pr.ps, &oo);
    problem_backward(&pr, 0);
    double w = tg_tensor_get(pr.p[0], 0), g = ((double *)tg_tensor_grad(pr.p[0]))[0];
    tg_optim_set_lr(o, 0.25);
    cr_assert_eq(tg_optim_step(o), TG_OK);
    cr_expect_eq(tg_tensor_get(pr.p[0], 0), w - 0.25 * g);
    tg_clear_error();
    w = tg_tensor_get(pr.p[0], 0);
    tg_optim_set_lr(o, -1);
    tt_expect_error(TG_EINVAL, "tg_optim_set_lr: lr is -1, want a finite value >= 0");
    tg_optim_set_lr(o, NAN);
    tt_expect_error(TG_EINVAL, "lr is nan");
    tg_optim_set_lr(o, INFINITY);
    tt_expect_error(TG_EINVAL, "lr is inf");
    tg_optim_set_lr(NULL, 0.1);
    tt_expect_error(TG_EINVAL, "tg_optim_set_lr: optim is NULL");
    cr_assert_eq(tg_optim_step(o), TG_OK);
    cr_expect_eq(tg_tensor_get(pr.p[0], 0), w - 0.25 * g, "a refused lr changed the step");
    tg_optim_free(o);
    problem_free(&pr);
}

Test(train, bad_options_are_einval) {
    problem pr;
    problem_init(&pr, TG_F64, 1);
    static const struct {
        int field; /* 0 lr, 1 momentum, 2 beta1, 3 beta2, 4 eps, 5 weight_decay, 6 nesterov, 7 kind */
        double value;
        tg_optim_kind kind;
        const char *needle;
    } cases[] = {
        {0, -1, TG_OPTIM_SGD, "tg_optim_new: lr is -1, want a finite value >= 0"},
        {0, NAN, TG_OPTIM_ADAM, "lr is nan"},
        {0, INFINITY, TG_OPTIM_ADAM, "lr is inf"},
        {1, -0.5, TG_OPTIM_SGD, "momentum is -0.5"},
        {2, 1.0, TG_OPTIM_ADAM, "beta1 is 1, want 0 <= value < 1"},
        {2, -0.1, TG_OPTIM_ADAMW, "beta1 is -0.1, want 0 <= value < 1"},
        {3, 1.5, TG_OPTIM_ADAM, "beta2 is 1.5, want 0 <= value < 1"},
        {4, -1e-8, TG_OPTIM_ADAM, "eps is -1e-08"},
        {5, -0.01, TG_OPTIM_ADAMW, "weight_decay is -0.01"},
        {5, NAN, TG_OPTIM_SGD, "weight_decay is nan"},
        {6, 1, TG_OPTIM_SGD, "nesterov is on with momentum 0: Nesterov momentum requires a momentum"},
        {7, 3, TG_OPTIM_SGD, "kind 3 is unknown"},
        {7, -1, TG_OPTIM_SGD, "kind -1 is unknown"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tg_optim_opts o = tg_optim_defaults(cases[c].kind);
        double *f[6] = {&o.lr, &o.momentum, &o.beta1, &o.beta2, &o.eps, &o.weight_decay};
        if (cases[c].field < 6) *f[cases[c].field] = cases[c].value;
        else if (cases[c].field == 6) o.nesterov = 1;
        else o.kind = (tg_optim_kind)(int)cases[c].value;
        tg_clear_error();
        cr_expect_null(tg_optim_new(pr.ps, &o), "case %zu", c);
        tt_expect_error(TG_EINVAL, cases[c].needle);
    }
    /* nesterov with a momentum is fine */
    tg_optim_opts o = opts_of(TG_OPTIM_SGD, 0.1, 0.9, 1, 0);
    tg_optim *ok = tg_optim_new(pr.ps, &o);
    cr_expect(ok, "%s", tg_last_error());
    tg_optim_free(ok);
    cr_expect_null(tg_optim_new(NULL, &o));
    tt_expect_error(TG_EINVAL, "tg_optim_new: params is NULL");
    cr_expect_null(tg_optim_new(pr.ps, NULL));
    tt_expect_error(TG_EINVAL, "tg_optim_new: opts is NULL");
    cr_expect_eq(tg_optim_step(NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_optim_step: optim is NULL");
    tg_optim_free(NULL);
    problem_free(&pr);
}

/* ---- parameter lists ---- */

Test(train, params_keep_order_names_and_lookups) {
    tg_tensor *a = TT_RAND(TG_F64, 1, 1, 2, 2), *b = TT_RAND(TG_F32, 1, 2, 3);
    tg_params *ps = tg_params_new();
    char name[8] = "zeta";
    cr_assert_eq(tg_params_add(ps, name, a), TG_OK);
    cr_assert_eq(tg_params_add(ps, "alpha", b), TG_OK);
    strcpy(name, "XXXX"); /* the list keeps its own copy */
    cr_expect_eq(tg_params_count(ps), 2);
    const char *n = NULL;
    cr_expect_eq(tg_params_at(ps, 0, &n), a);
    cr_expect_str_eq(n, "zeta");
    cr_expect_eq(tg_params_at(ps, 1, &n), b);
    cr_expect_str_eq(n, "alpha");
    cr_expect_eq(tg_params_at(ps, 1, NULL), b);
    cr_expect_eq(tg_params_find(ps, "alpha"), b);
    cr_expect_eq(tg_params_find(ps, "zeta"), a);
    tg_clear_error();
    cr_expect_null(tg_params_at(ps, 2, &n));
    cr_expect_null(n);
    tt_expect_error(TG_EINVAL, "tg_params_at: index 2 outside 0..1");
    cr_expect_null(tg_params_at(ps, -1, NULL));
    tt_expect_error(TG_EINVAL, "index -1");
    cr_expect_null(tg_params_find(ps, "zet"));
    tt_expect_error(TG_EINVAL, "tg_params_find: no parameter named \"zet\"");
    cr_expect_null(tg_params_find(ps, NULL));
    tt_expect_error(TG_EINVAL, "tg_params_find: name is NULL");
    cr_expect_null(tg_params_find(NULL, "a"));
    tt_expect_error(TG_EINVAL, "tg_params_find: params is NULL");
    cr_expect_null(tg_params_at(NULL, 0, &n));
    tt_expect_error(TG_EINVAL, "tg_params_at: params is NULL");
    cr_expect_eq(tg_params_count(NULL), 0);
    tg_params_zero_grad(NULL);
    tg_params_free(NULL);
    /* growing past the first capacity keeps everything */
    tg_tensor *more[20];
    for (int i = 0; i < 20; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "p%d", i);
        more[i] = TT_RAND(TG_F64, 1, 10 + (uint64_t)i, 1);
        cr_assert_eq(tg_params_add(ps, nm, more[i]), TG_OK, "%s", tg_last_error());
    }
    cr_expect_eq(tg_params_count(ps), 22);
    cr_expect_eq(tg_params_find(ps, "p19"), more[19]);
    cr_expect_eq(tg_params_at(ps, 0, &n), a);
    cr_expect_str_eq(n, "zeta");
    tg_params_free(ps);
    for (int i = 0; i < 20; i++) tg_tensor_free(more[i]);
    /* the tensors outlive the list */
    cr_expect_eq(tg_tensor_numel(a), 4);
    tg_tensor_free(a), tg_tensor_free(b);
}

Test(train, params_add_refuses_bad_entries) {
    tg_tensor *a = TT_RAND(TG_F64, 1, 1, 2), *b = TT_RAND(TG_F64, 1, 2, 2), *x = TT_RAND(TG_F64, 0, 3, 2);
    tg_tape *tape = tg_tape_new();
    tg_tensor *y = tg_add(tape, a, x);
    tg_params *ps = tg_params_new();
    cr_assert_eq(tg_params_add(ps, "a", a), TG_OK);
    tg_clear_error();
    static const struct {
        const char *name;
        int tensor; /* 0 NULL, 1 a, 2 b, 3 x, 4 y */
        const char *needle;
    } cases[] = {
        {"a", 2, "the list already holds a parameter named \"a\""},
        {"", 2, "tg_params_add: the name is empty"},
        {"A", 1, "\"A\" is the tensor the list already holds as \"a\""},
        {"x", 3, "\"x\" is not a parameter (make it with tg_param_new)"},
        {"y", 4, "\"y\" is not a parameter"},
        {"w", 0, "tg_params_add: param \"w\" is NULL"},
        {"__metadata__", 2, "\"__metadata__\" is reserved"},
        {"b.sgd_momentum", 2, "\"b.sgd_momentum\" ends in \".sgd_momentum\""},
        {"b.adam_m", 2, "ends in \".adam_m\", which checkpoints keep optimizer state under"},
        {"b.adam_v", 2, "ends in \".adam_v\""},
    };
    tg_tensor *ts[5] = {NULL, a, b, x, y};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        cr_expect_eq(tg_params_add(ps, cases[c].name, ts[cases[c].tensor]), TG_EINVAL, "case %zu", c);
        tt_expect_error(TG_EINVAL, cases[c].needle);
    }
    cr_expect_eq(tg_params_add(ps, NULL, b), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_params_add: name is NULL");
    cr_expect_eq(tg_params_add(NULL, "b", b), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_params_add: params is NULL");
    /* a NULL param after a failed call keeps that call's error */
    cr_expect_null(tg_param_new(TG_I64, 1, TT_SHAPE(2)));
    cr_expect_eq(tg_params_add(ps, "w", NULL), TG_EDTYPE);
    tt_expect_error(TG_EDTYPE, "tg_param_new: dtype i64");
    cr_expect_eq(tg_params_count(ps), 1, "a refused entry was added");
    /* names that merely contain a reserved suffix are fine */
    cr_expect_eq(tg_params_add(ps, "b.adam_m.x", b), TG_OK, "%s", tg_last_error());
    /* an optimizer fixes the list while it lives */
    tg_optim_opts oo = tg_optim_defaults(TG_OPTIM_ADAM);
    tg_optim *o = tg_optim_new(ps, &oo);
    tg_tensor *c = TT_RAND(TG_F64, 1, 4, 2);
    cr_expect_eq(tg_params_add(ps, "c", c), TG_ESTATE);
    tt_expect_error(TG_ESTATE, "\"c\": 1 optimizer(s) use this list; free them before adding");
    tg_optim_free(o);
    cr_expect_eq(tg_params_add(ps, "c", c), TG_OK, "%s", tg_last_error());
    tg_params_free(ps);
    tg_tape_free(tape);
    tg_tensor_free(a), tg_tensor_free(b), tg_tensor_free(c), tg_tensor_free(x);
}

/* ---- norms and clipping ---- */

typedef struct {
    tg_tensor *a, *b;
    tg_params *ps;
} two;

/* a (2,) f32 and b (1,) f64, their gradients set by hand */
static two two_new(double a0, double a1, double b0) {
    two t = {TT_RAND(TG_F32, 1, 1, 2), TT_RAND(TG_F64, 1, 2, 1), tg_params_new()};
    float *ga = tg_tensor_grad(t.a);
    double *gb = tg_tensor_grad(t.b);
    ga[0] = (float)a0, ga[1] = (float)a1, gb[0] = b0;
    tg_params_add(t.ps, "a", t.a);
    tg_params_add(t.ps, "b", t.b);
    return t;
}

static void two_free(two *t) {
    tg_params_free(t->ps);
    tg_tensor_free(t->a), tg_tensor_free(t->b);
}

static void expect_grads(two *t, double a0, double a1, double b0, const char *what) {
    const float *ga = tg_tensor_grad(t->a);
    const double *gb = tg_tensor_grad(t->b);
    cr_expect(ga[0] == (float)a0 && ga[1] == (float)a1 && gb[0] == b0,
              "%s: gradients %.9g %.9g %.17g, want %.9g %.9g %.17g",
              what, ga[0], ga[1], gb[0], (float)a0, (float)a1, b0);
}

Test(train, grad_norm_is_global) {
    two t = two_new(3, 4, 12);
    cr_expect_eq(tg_params_grad_norm(t.ps), 13.0);
    tg_params *empty = tg_params_new();
    cr_expect_eq(tg_params_grad_norm(empty), 0.0);
    cr_expect_eq(tg_params_clip_grad_norm(empty, 1.0), 0.0);
    tg_params_free(empty);
    tg_clear_error();
    cr_expect(isnan(tg_params_grad_norm(NULL)));
    tt_expect_error(TG_EINVAL, "tg_params_grad_norm: params is NULL");
    cr_expect(isnan(tg_params_clip_grad_norm(NULL, 1)));
    tt_expect_error(TG_EINVAL, "tg_params_clip_grad_norm: params is NULL");
    tg_params_zero_grad(t.ps);
    expect_grads(&t, 0, 0, 0, "zeroed");
    two_free(&t);
}

Test(train, clip_grad_norm_follows_torch) {
    /* below max_norm: untouched */
    two t = two_new(3, 4, 12);
    cr_expect_eq(tg_params_clip_grad_norm(t.ps, 20), 13.0);
    expect_grads(&t, 3, 4, 12, "below");
    /* above: scaled by max_norm / (norm + 1e-6) */
    double c = 1.0 / (13.0 + 1e-6);
    cr_expect_eq(tg_params_clip_grad_norm(t.ps, 1), 13.0);
    expect_grads(&t, (double)(float)(3 * c), (double)(float)(4 * c), 12 * c, "above");
    two_free(&t);
    /* exactly at max_norm: the 1e-6 makes the factor 13 / (13 + 1e-6), just below 1, so torch scales */
    t = two_new(3, 4, 12);
    c = 13.0 / (13.0 + 1e-6);
    cr_expect_eq(tg_params_clip_grad_norm(t.ps, 13), 13.0);
    expect_grads(&t, (double)(float)(3 * c), (double)(float)(4 * c), 12 * c, "at max_norm");
    two_free(&t);
    /* +Inf clips nothing, 0 zeroes everything */
    t = two_new(3, 4, 12);
    cr_expect_eq(tg_params_clip_grad_norm(t.ps, INFINITY), 13.0);
    expect_grads(&t, 3, 4, 12, "inf max_norm");
    cr_expect_eq(tg_params_clip_grad_norm(t.ps, 0), 13.0);
    expect_grads(&t, 0, 0, 0, "zero max_norm");
    two_free(&t);
    /* a zero gradient stays zero, norm 0 */
    t = two_new(0, 0, 0);
    cr_expect_eq(tg_params_clip_grad_norm(t.ps, 1), 0.0);
    expect_grads(&t, 0, 0, 0, "zero gradient");
    cr_expect_eq(tg_last_status(), TG_OK);
    two_free(&t);
}

Test(train, clip_grad_norm_refuses_nonfinite_and_bad_max_norm) {
    tg_clear_error();
    two t = two_new(3, NAN, 12);
    cr_expect(isnan(tg_params_clip_grad_norm(t.ps, 1)));
    tt_expect_error(TG_ENONFINITE,
                    "norm is nan: the gradient of \"a\" is not finite; the gradients are left unclipped");
    const float *ga = tg_tensor_grad(t.a);
    cr_expect(ga[0] == 3 && isnan(ga[1]) && ((double *)tg_tensor_grad(t.b))[0] == 12, "NaN gradients were touched");
    two_free(&t);
    t = two_new(3, 4, -INFINITY);
    cr_expect_eq(tg_params_clip_grad_norm(t.ps, 1), INFINITY);
    tt_expect_error(TG_ENONFINITE, "norm is inf: the gradient of \"b\" is not finite");
    expect_grads(&t, 3, 4, -INFINITY, "inf gradient");
    two_free(&t);
    t = two_new(3, 4, 1e300);
    cr_expect_eq(tg_params_clip_grad_norm(t.ps, 1), INFINITY);
    tt_expect_error(TG_ENONFINITE, "their sum of squares overflows a double");
    expect_grads(&t, 3, 4, 1e300, "overflowing gradient");
    two_free(&t);
    t = two_new(3, 4, 12);
    cr_expect(isnan(tg_params_clip_grad_norm(t.ps, -1)));
    tt_expect_error(TG_EINVAL, "tg_params_clip_grad_norm: max_norm is -1, want >= 0");
    cr_expect(isnan(tg_params_clip_grad_norm(t.ps, NAN)));
    tt_expect_error(TG_EINVAL, "max_norm is nan");
    expect_grads(&t, 3, 4, 12, "bad max_norm");
    two_free(&t);
}

/* ---- checkpoints ---- */

/* One optimizer setting per kind, with an option of each sort off its default so that the file's
   options must be the ones a fresh optimizer (made with the defaults) ends up with. */
static tg_optim_opts ck_opts(int which) {
    switch (which) {
    case 0: return opts_of(TG_OPTIM_SGD, 0.05, 0.7, 1, 0.2);
    case 1: {
        tg_optim_opts o = opts_of(TG_OPTIM_ADAM, 0.05, 0, 0, 0.1);
        o.beta1 = 0.8, o.beta2 = 0.99, o.eps = 1e-6;
        return o;
    }
    default: return opts_of(TG_OPTIM_ADAMW, 0.05, 0, 0, 0.3);
    }
}

/* An unbroken run of n steps against one stopped after k, saved, and resumed into new tensors (other
   starting values) and a new optimizer of the defaults: the parameters, and the final checkpoints (state,
   step counts, options), end bit for bit the same. */
static void check_resume(tg_dtype dt, int which, int k, int n) {
    tg_optim_opts oo = ck_opts(which);
    problem a, b;
    problem_init(&a, dt, 3);
    problem_init(&b, dt, 4);
    tg_optim *oa = tg_optim_new(a.ps, &oo), *ob = NULL;
    tg_optim_opts od = tg_optim_defaults(oo.kind);
    ob = tg_optim_new(b.ps, &od);
    cr_assert(oa && ob, "%s", tg_last_error());
    train(&a, oa, oo.lr, 1, 0, k);
    const char *ck = tt_in_dir("ck.safetensors");
    cr_assert_eq(tg_checkpoint_save(ck, a.ps, oa), TG_OK, "%s", tg_last_error());
    train(&a, oa, oo.lr, 1, k, n);
    cr_assert_eq(tg_checkpoint_load(ck, b.ps, ob), TG_OK, "%s", tg_last_error());
    train(&b, ob, oo.lr, 1, k, n);
    for (int i = 0; i < NP; i++)
        cr_expect(!memcmp(tg_tensor_data(a.p[i]), tg_tensor_data(b.p[i]), nbytes(a.p[i])),
                  "kind %d, resumed after %d of %d steps: %s differs", which, k, n, pnames[i]);
    cr_assert_eq(tg_checkpoint_save(tt_in_dir("a.safetensors"), a.ps, oa), TG_OK);
    cr_assert_eq(tg_checkpoint_save(tt_in_dir("b.safetensors"), b.ps, ob), TG_OK);
    cr_expect(same_file(tt_in_dir("a.safetensors"), tt_in_dir("b.safetensors")),
              "kind %d, k %d: the final checkpoints differ", which, k);
    tg_optim_free(oa), tg_optim_free(ob);
    problem_free(&a), problem_free(&b);
}

Test(train, resumed_run_ends_bit_for_bit_where_an_unbroken_one_does) {
    /* k 1: b not yet joined; 3: b just joined; 6: u already out of the loss, stepping on zero gradients */
    for (int which = 0; which < 3; which++)
        for (int k = 1; k <= 6; k += k == 1 ? 2 : 3) check_resume(TG_F64, which, k, 10);
    for (int which = 0; which < 3; which++) check_resume(TG_F32, which, 4, 8);
}

/* What the checkpoint holds, read back with the internal reader. */
Test(train, checkpoint_layout) {
    problem pr;
    problem_init(&pr, TG_F64, 1);
    tg_optim_opts oo = ck_opts(1);
    tg_optim *o = tg_optim_new(pr.ps, &oo);
    train(&pr, o, 0, 0, 0, 4);
    const char *p = tt_in_dir("ck.safetensors");
    cr_assert_eq(tg_checkpoint_save(p, pr.ps, o), TG_OK, "%s", tg_last_error());
    char **names, **kv;
    tg_tensor **ts;
    int n, nkv;
    cr_assert_eq(tg__load_safetensors_meta("t", p, &names, &ts, &n, &kv, &nkv), TG_OK, "%s", tg_last_error());
    static const char *const want[] = {"W", "b", "u", "W.adam_m", "b.adam_m", "u.adam_m", "W.adam_v", "b.adam_v",
                                       "u.adam_v"};
    cr_assert_eq(n, 9);
    for (int i = 0; i < n; i++) cr_expect_str_eq(names[i], want[i]);
    for (int i = 0; i < NP; i++)
        cr_expect(!memcmp(tg_tensor_data(ts[i]), tg_tensor_data(pr.p[i]), nbytes(pr.p[i])), "%s", pnames[i]);
    /* b joined at step 3: one step, its m is nonzero; nothing of b's state is left over from before */
    static const char *const meta[][2] = {
        {"optim.kind", "adam"}, {"optim.lr", "0.05"},   {"optim.momentum", "0"},     {"optim.beta1", "0.8"},
        {"optim.beta2", "0.99"}, {"optim.eps", "1e-06"}, {"optim.weight_decay", "0.1"}, {"optim.nesterov", "0"},
        {"optim.steps", "4"},   {"optim.step.W", "4"}, {"optim.step.b", "1"},       {"optim.step.u", "2"}};
    cr_assert_eq(nkv, 12);
    for (int i = 0; i < nkv; i++) {
        cr_expect_str_eq(kv[2 * i], meta[i][0]);
        cr_expect_str_eq(kv[2 * i + 1], meta[i][1], "%s", kv[2 * i]);
    }
    tg_safetensors_free(names, ts, n);
    tg_safetensors_free(kv, NULL, 2 * nkv);
    /* without an optimizer: the parameters only, no metadata but the checksums */
    cr_assert_eq(tg_checkpoint_save(p, pr.ps, NULL), TG_OK);
    cr_assert_eq(tg__load_safetensors_meta("t", p, &names, &ts, &n, &kv, &nkv), TG_OK);
    cr_expect(n == 3 && nkv == 0);
    tg_safetensors_free(names, ts, n);
    /* and SGD without momentum keeps no buffer */
    tg_optim_opts so = tg_optim_defaults(TG_OPTIM_SGD);
    tg_optim *s = tg_optim_new(pr.ps, &so);
    cr_assert_eq(tg_checkpoint_save(p, pr.ps, s), TG_OK);
    cr_assert_eq(tg__load_safetensors_meta("t", p, &names, &ts, &n, &kv, &nkv), TG_OK);
    cr_expect(n == 3 && nkv == 12, "%d tensors, %d pairs", n, nkv);
    tg_safetensors_free(names, ts, n);
    tg_safetensors_free(kv, NULL, 2 * nkv);
    tg_optim_free(s);
    tg_optim_free(o);
    problem_free(&pr);
}

/* ---- damaged and mismatched checkpoints ---- */

/* Rewrites a checkpoint: drops the tensor named drop (NULL: none), puts add (NULL: none) under add_name,
   replaces the tensor named swap_name by swap, and sets metadata key to value (value NULL: removes it). */
typedef struct {
    const char *drop;
    const char *add_name;
    int add; /* 1: a (2,) f64 tensor */
    const char *swap_name;
    int swap; /* 1: transposed shape (3,2) f64, 2: same shape f32 */
    const char *key, *value;
} edit;

static void rewrite(const char *from, const char *to, const edit *e) {
    char **names, **kv;
    tg_tensor **ts;
    int n, nkv;
    cr_assert_eq(tg__load_safetensors_meta("t", from, &names, &ts, &n, &kv, &nkv), TG_OK, "%s", tg_last_error());
    const char *nn[16], *mm[64];
    tg_tensor *tt[16], *extra = NULL;
    int m = 0, q = 0, found = 0;
    for (int i = 0; i < n; i++) {
        if (e->drop && !strcmp(names[i], e->drop)) continue;
        nn[m] = names[i], tt[m] = ts[i];
        if (e->swap_name && !strcmp(names[i], e->swap_name)) {
            tg_tensor *s = e->swap == 1 ? tg_tensor_new(TG_F64, 2, TT_SHAPE(3, 2))
                                        : tg_tensor_new(TG_F32, tg_tensor_ndim(ts[i]), tg_tensor_shape(ts[i]));
            tg_tensor_free(extra);
            tt[m] = extra = s;
        }
        m++;
    }
    tg_tensor *added = e->add ? TT_RAND(TG_F64, 0, 9, 2) : NULL;
    if (added) nn[m] = e->add_name, tt[m++] = added;
    for (int i = 0; i < nkv; i++) {
        if (e->key && !strcmp(kv[2 * i], e->key)) {
            found = 1;
            if (!e->value) continue;
            mm[2 * q] = kv[2 * i], mm[2 * q + 1] = e->value, q++;
            continue;
        }
        mm[2 * q] = kv[2 * i], mm[2 * q + 1] = kv[2 * i + 1], q++;
    }
    if (e->key && !found && e->value) mm[2 * q] = e->key, mm[2 * q + 1] = e->value, q++;
    cr_assert_eq(tg__save_safetensors_meta("t", to, nn, tt, m, mm, q), TG_OK, "%s", tg_last_error());
    tg_tensor_free(extra), tg_tensor_free(added);
    tg_safetensors_free(names, ts, n);
    tg_safetensors_free(kv, NULL, 2 * nkv);
}

/* Adam, trained 3 steps and saved to good.safetensors, then 2 more: the list and optimizer now differ from
   the file in every parameter, state tensor, step count and the lr (a schedule), so a load that wrote
   anything before it failed shows in before/after snapshots. */
typedef struct {
    problem pr;
    tg_optim *o;
} trained;

static void trained_init(trained *t, int which) {
    problem_init(&t->pr, TG_F64, 5);
    tg_optim_opts oo = ck_opts(which);
    t->o = tg_optim_new(t->pr.ps, &oo);
    cr_assert(t->o);
    train(&t->pr, t->o, oo.lr, 1, 0, 4);
    cr_assert_eq(tg_checkpoint_save(tt_in_dir("good.safetensors"), t->pr.ps, t->o), TG_OK, "%s", tg_last_error());
    train(&t->pr, t->o, oo.lr, 1, 4, 6);
    cr_assert_eq(tg_checkpoint_save(tt_in_dir("before.safetensors"), t->pr.ps, t->o), TG_OK);
}

static void trained_free(trained *t) {
    tg_optim_free(t->o);
    problem_free(&t->pr);
}

/* Nothing of the list or the optimizer changed: the same checkpoint as before the failure. */
static void expect_unchanged(trained *t, const char *what) {
    tg_status st = tg_last_status();
    char msg[512];
    snprintf(msg, sizeof msg, "%s", tg_last_error());
    cr_assert_eq(tg_checkpoint_save(tt_in_dir("after.safetensors"), t->pr.ps, t->o), TG_OK, "%s", tg_last_error());
    cr_expect(same_file(tt_in_dir("before.safetensors"), tt_in_dir("after.safetensors")), "%s: a failed load changed things",
              what);
    tg__fail(st, "%s", msg); /* the load's error, for the caller's tt_expect_error */
}

Test(train, damaged_or_mismatched_checkpoints_are_refused_and_change_nothing) {
    trained t;
    trained_init(&t, 1);
    static const struct {
        const char *what;
        edit e;
        const char *needle;
    } cases[] = {
        {"missing parameter", {.drop = "u"}, "parameter \"u\" is missing"},
        {"missing state", {.drop = "b.adam_v"}, "state tensor \"b.adam_v\" is missing"},
        {"extra tensor", {.add_name = "extra", .add = 1},
         "tensor \"extra\" is neither a parameter of the list nor state of adam"},
        {"state of another kind", {.add_name = "W.sgd_momentum", .add = 1}, "tensor \"W.sgd_momentum\" is neither"},
        {"state of an unknown parameter", {.add_name = "q.adam_m", .add = 1}, "tensor \"q.adam_m\" is neither"},
        {"shape mismatch", {.swap_name = "W", .swap = 1},
         "tensor \"W\" is f64 (3,2) in the file, the list's is f64 (2,3)"},
        {"dtype mismatch", {.swap_name = "b", .swap = 2},
         "tensor \"b\" is f32 (3,) in the file, the list's is f64 (3,)"},
        {"state shape mismatch", {.swap_name = "W.adam_v", .swap = 1}, "tensor \"W.adam_v\" is f64 (3,2)"},
        {"state dtype mismatch", {.swap_name = "u.adam_m", .swap = 2}, "tensor \"u.adam_m\" is f32 (2,)"},
        {"other kind", {.key = "optim.kind", .value = "sgd"}, "optim.kind is \"sgd\", this optimizer is adam"},
        {"unknown kind", {.key = "optim.kind", .value = "rmsprop"}, "optim.kind is \"rmsprop\""},
        {"no optimizer state", {.key = "optim.kind"}, "the file holds no optimizer state (no optim.kind"},
        {"non-numeric step", {.key = "optim.step.b", .value = "abc"}, "optim.step.b is \"abc\", not a count"},
        {"negative step", {.key = "optim.step.W", .value = "-1"}, "optim.step.W is \"-1\", not a count"},
        {"fractional step", {.key = "optim.step.W", .value = "2.5"}, "optim.step.W is \"2.5\""},
        {"huge step", {.key = "optim.step.W", .value = "9223372036854775808"},
         "optim.step.W is \"9223372036854775808\""},
        {"empty step", {.key = "optim.step.u", .value = ""}, "optim.step.u is \"\", not a count"},
        {"missing step", {.key = "optim.step.u"}, "optim.step.u is missing from __metadata__"},
        {"non-numeric total", {.key = "optim.steps", .value = "1e3"}, "optim.steps is \"1e3\", not a count"},
        {"non-numeric lr", {.key = "optim.lr", .value = "fast"}, "optim.lr is \"fast\", not a number"},
        {"lr with a space", {.key = "optim.lr", .value = " 0.1"}, "optim.lr is \" 0.1\", not a number"},
        {"lr with a tail", {.key = "optim.lr", .value = "0.1x"}, "optim.lr is \"0.1x\""},
        {"negative lr", {.key = "optim.lr", .value = "-0.1"}, "optim.lr is -0.1, want a finite value >= 0"},
        {"NaN eps", {.key = "optim.eps", .value = "nan"}, "optim.eps is nan"},
        {"beta1 of 1", {.key = "optim.beta1", .value = "1"}, "optim.beta1 is 1, want 0 <= value < 1"},
        {"missing beta2", {.key = "optim.beta2"}, "optim.beta2 is missing from __metadata__"},
        {"bad nesterov", {.key = "optim.nesterov", .value = "yes"}, "optim.nesterov is \"yes\", want \"0\" or \"1\""},
        {"nesterov without momentum", {.key = "optim.nesterov", .value = "1"}, "optim.nesterov is on with momentum 0"},
    };
    const char *bad = tt_in_dir("bad.safetensors");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        rewrite(tt_in_dir("good.safetensors"), bad, &cases[c].e);
        tg_clear_error();
        cr_expect_eq(tg_checkpoint_load(bad, t.pr.ps, t.o), TG_EFORMAT, "%s", cases[c].what);
        expect_unchanged(&t, cases[c].what);
        cr_expect(strstr(tg_last_error(), bad), "%s: the message names the file: %s", cases[c].what, tg_last_error());
        tt_expect_error(TG_EFORMAT, cases[c].needle);
    }
    /* the file is good: the rewrite itself changes nothing */
    rewrite(tt_in_dir("good.safetensors"), bad, &(edit){0});
    cr_expect_eq(tg_checkpoint_load(bad, t.pr.ps, t.o), TG_OK, "%s", tg_last_error());
    trained_free(&t);
}

/* Damage at the byte level: a cut file, a flipped data byte, garbage. */
Test(train, truncated_and_corrupted_checkpoints_are_refused) {
    trained t;
    trained_init(&t, 2);
    size_t n;
    unsigned char *b = tt_read_file(tt_in_dir("good.safetensors"), &n);
    const char *bad = tt_in_dir("bad.safetensors");
    static const struct {
        size_t keep; /* bytes kept from the end: n - cut */
        int flip;
        const char *needle;
    } cases[] = {
        {1, 0, "tensor 'u.adam_v' has data_offsets"}, /* cut 1 byte: the last tensor runs past the data */
        {100, 0, "-byte data"},                         /* cut further: more tensors do */
        {0, 1, "tensor 'u.adam_v' fails its xxh3 checksum"}, /* the last data byte flipped */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        if (cases[c].flip) {
            b[n - 1] ^= 0x40;
            tt_write_file(bad, b, n);
            b[n - 1] ^= 0x40;
        } else {
            tt_write_file(bad, b, n - cases[c].keep);
        }
        tg_clear_error();
        cr_expect_eq(tg_checkpoint_load(bad, t.pr.ps, t.o), TG_EFORMAT, "case %zu", c);
        expect_unchanged(&t, "byte damage");
        cr_expect(strstr(tg_last_error(), "tg_checkpoint_load: "), "%s", tg_last_error());
        tt_expect_error(TG_EFORMAT, cases[c].needle);
    }
    /* the header cut short; then not a safetensors file at all */
    tt_write_file(bad, b, 40);
    cr_expect_eq(tg_checkpoint_load(bad, t.pr.ps, t.o), TG_EFORMAT);
    expect_unchanged(&t, "cut header");
    tt_expect_error(TG_EFORMAT, "runs past the end of the file");
    tt_write_file(bad, "PK\3\4garbage garbage garbage", 27);
    cr_expect_eq(tg_checkpoint_load(bad, t.pr.ps, t.o), TG_EFORMAT);
    expect_unchanged(&t, "garbage");
    tt_expect_error(TG_EFORMAT, "tg_checkpoint_load: ");
    cr_expect_eq(tg_checkpoint_load(tt_in_dir("nothing.safetensors"), t.pr.ps, t.o), TG_EIO);
    tt_expect_error(TG_EIO, "cannot open");
    free(b);
    trained_free(&t);
}

/* A checkpoint of another optimizer kind, saved for real (not edited). */
Test(train, checkpoint_of_another_kind_is_refused) {
    trained t;
    trained_init(&t, 1); /* adam */
    problem s;
    problem_init(&s, TG_F64, 9);
    tg_optim_opts so = ck_opts(2); /* adamw */
    tg_optim *o = tg_optim_new(s.ps, &so);
    const char *p = tt_in_dir("adamw.safetensors");
    cr_assert_eq(tg_checkpoint_save(p, s.ps, o), TG_OK);
    cr_expect_eq(tg_checkpoint_load(p, t.pr.ps, t.o), TG_EFORMAT);
    expect_unchanged(&t, "adamw into adam");
    tt_expect_error(TG_EFORMAT, "optim.kind is \"adamw\", this optimizer is adam");
    /* a parameters-only file, into an optimizer */
    cr_assert_eq(tg_checkpoint_save(p, s.ps, NULL), TG_OK);
    cr_expect_eq(tg_checkpoint_load(p, t.pr.ps, t.o), TG_EFORMAT);
    expect_unchanged(&t, "parameters only into adam");
    tt_expect_error(TG_EFORMAT, "the file holds no optimizer state");
    tg_optim_free(o);
    problem_free(&s);
    trained_free(&t);
}

/* With optim NULL, a load reads the parameters and ignores the optimizer's part, even a damaged one. */
Test(train, parameters_only_load) {
    trained t;
    trained_init(&t, 0);
    problem q;
    problem_init(&q, TG_F64, 11);
    const char *bad = tt_in_dir("bad.safetensors");
    rewrite(tt_in_dir("good.safetensors"), bad, &(edit){.key = "optim.step.W", .value = "garbage"});
    cr_assert_eq(tg_checkpoint_load(bad, q.ps, NULL), TG_OK, "%s", tg_last_error());
    char **names;
    tg_tensor **ts;
    int n;
    cr_assert_eq(tg_load_safetensors(bad, &names, &ts, &n), TG_OK);
    for (int i = 0; i < NP; i++) {
        cr_assert_str_eq(names[i], pnames[i]);
        cr_expect(!memcmp(tg_tensor_data(q.p[i]), tg_tensor_data(ts[i]), nbytes(q.p[i])), "%s", pnames[i]);
    }
    tg_safetensors_free(names, ts, n);
    /* state of a parameter the list lacks is still an extra name */
    rewrite(tt_in_dir("good.safetensors"), bad, &(edit){.add_name = "z.sgd_momentum", .add = 1});
    cr_expect_eq(tg_checkpoint_load(bad, q.ps, NULL), TG_EFORMAT);
    tt_expect_error(TG_EFORMAT,
                    "tensor \"z.sgd_momentum\" is neither a parameter of the list nor state of an optimizer");
    rewrite(tt_in_dir("good.safetensors"), bad, &(edit){.drop = "W"});
    cr_expect_eq(tg_checkpoint_load(bad, q.ps, NULL), TG_EFORMAT);
    tt_expect_error(TG_EFORMAT, "parameter \"W\" is missing");
    problem_free(&q);
    trained_free(&t);
}

Test(train, checkpoint_bad_arguments) {
    problem a, b;
    problem_init(&a, TG_F64, 1);
    problem_init(&b, TG_F64, 2);
    tg_optim_opts oo = tg_optim_defaults(TG_OPTIM_ADAM);
    tg_optim *ob = tg_optim_new(b.ps, &oo);
    const char *p = tt_in_dir("ck.safetensors");
    tg_clear_error();
    cr_expect_eq(tg_checkpoint_save(NULL, a.ps, NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_checkpoint_save: path is NULL");
    cr_expect_eq(tg_checkpoint_save(p, NULL, NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_checkpoint_save: params is NULL");
    cr_expect_eq(tg_checkpoint_save(p, a.ps, ob), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_checkpoint_save: optim was made for another parameter list");
    cr_expect_eq(access(p, F_OK), -1, "a refused save made a file");
    cr_assert_eq(tg_checkpoint_save(p, b.ps, ob), TG_OK);
    cr_expect_eq(tg_checkpoint_load(NULL, a.ps, NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_checkpoint_load: path is NULL");
    cr_expect_eq(tg_checkpoint_load(p, NULL, NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_checkpoint_load: params is NULL");
    cr_expect_eq(tg_checkpoint_load(p, a.ps, ob), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_checkpoint_load: optim was made for another parameter list");
    tg_optim_free(ob);
    problem_free(&a), problem_free(&b);
}

/* Every low-level write step of a checkpoint save fails in turn: the old file stays, no temporary is left. */
Test(train, failed_checkpoint_write_keeps_the_old_file) {
    trained t;
    trained_init(&t, 0);
    const char *p = tt_in_dir("good.safetensors");
    size_t n0;
    unsigned char *old = tt_read_file(p, &n0);
    int k = 1;
    for (;; k++) {
        cr_assert_lt(k, 100);
        tg__io_fail_write_at(k);
        tg_clear_error();
        tg_status st = tg_checkpoint_save(p, t.pr.ps, t.o);
        tg__io_fail_write_at(0);
        if (st == TG_OK) break;
        cr_expect(strstr(tg_last_error(), p), "k=%d: %s", k, tg_last_error());
        tt_expect_error(TG_EIO, "tg_checkpoint_save: cannot write");
        cr_expect_eq(tt_temp_files(), 0, "k=%d: a temporary file is left", k);
        size_t n;
        unsigned char *now = tt_read_file(p, &n);
        cr_expect(n == n0 && !memcmp(now, old, n), "k=%d: the old file changed", k);
        free(now);
    }
    cr_expect_eq(k, 12, "%d write steps", k - 1); /* header, 6 tensors, flush, fsync, close, rename */
    cr_expect(same_file(p, tt_in_dir("before.safetensors")));
    free(old);
    trained_free(&t);
}

/* ---- allocation failures: each k-th allocation fails in turn, until the call succeeds ---- */

#define ALLOC_LOOP(what, k, body_fails, after_fail)                                                   \
    for (int k = 1;; k++) {                                                                        \
        cr_assert_lt(k, 5000, what);                                                               \
        tg_clear_error();                                                                          \
        tg__alloc_fail_at(k);                                                                      \
        int failed_ = (body_fails);                                                                \
        tg__alloc_fail_at(0);                                                                      \
        if (!failed_) {                                                                            \
            cr_log_info("%s: %d allocations", what, k - 1);                                       \
            break;                                                                                 \
        }                                                                                          \
        cr_expect_eq(tg_last_status(), TG_ENOMEM, "%s, k=%d: %s", what, k, tg_last_error());     \
        tt_expect_error(TG_ENOMEM, "out of memory");                                               \
        after_fail;                                                                                \
    }

/* A list of 20 parameters (past the first capacity), built from nothing. */
static int build_params(tg_tensor **ts, tg_params **out) {
    *out = tg_params_new();
    if (!*out) return 1;
    for (int i = 0; i < 20; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "p%d", i);
        if (tg_params_add(*out, nm, ts[i])) {
            tg_params_free(*out);
            *out = NULL;
            return 1;
        }
    }
    return 0;
}

Test(train, params_out_of_memory) {
    tg_tensor *ts[20];
    for (int i = 0; i < 20; i++) ts[i] = TT_RAND(TG_F64, 1, (uint64_t)i, 2);
    tg_params *ps = NULL;
    ALLOC_LOOP("params", k, build_params(ts, &ps), cr_expect_null(ps));
    cr_expect_eq(tg_params_count(ps), 20);
    tg_params_free(ps);
    for (int i = 0; i < 20; i++) tg_tensor_free(ts[i]);
}

Test(train, optim_new_and_step_out_of_memory) {
    for (int which = 0; which < 3; which++) {
        problem pr;
        problem_init(&pr, TG_F64, 1);
        tg_optim_opts oo = ck_opts(which);
        tg_optim *o = NULL;
        ALLOC_LOOP("optim_new", k, !(o = tg_optim_new(pr.ps, &oo)), (void)0);
        problem_backward(&pr, 5);
        tg_tape_reset(pr.tape);
        ALLOC_LOOP("optim_step", k, tg_optim_step(o) != TG_OK, (void)0);
        tg_optim_free(o);
        problem_free(&pr);
    }
}

Test(train, checkpoint_save_out_of_memory) {
    trained t;
    trained_init(&t, 1);
    const char *p = tt_in_dir("good.safetensors");
    size_t n0;
    unsigned char *old = tt_read_file(p, &n0);
    ALLOC_LOOP("checkpoint_save", k, tg_checkpoint_save(p, t.pr.ps, t.o) != TG_OK, {
        cr_expect_eq(tt_temp_files(), 0);
        size_t n;
        unsigned char *now = tt_read_file(p, &n);
        cr_expect(n == n0 && !memcmp(now, old, n), "k=%d: the old file changed", k);
        free(now);
    });
    free(old);
    cr_expect(same_file(p, tt_in_dir("before.safetensors")));
    ALLOC_LOOP("checkpoint_save without optim", k, tg_checkpoint_save(p, t.pr.ps, NULL) != TG_OK, (void)0);
    trained_free(&t);
}

Test(train, checkpoint_load_out_of_memory) {
    trained t;
    trained_init(&t, 1);
    const char *p = tt_in_dir("good.safetensors");
    ALLOC_LOOP("checkpoint_load", k, tg_checkpoint_load(p, t.pr.ps, t.o) != TG_OK, expect_unchanged(&t, "ENOMEM"));
    cr_assert_eq(tg_checkpoint_save(tt_in_dir("after.safetensors"), t.pr.ps, t.o), TG_OK);
    cr_expect(same_file(p, tt_in_dir("after.safetensors")), "the load did not take");
    trained_free(&t);
    /* SGD with momentum into an optimizer made without: the buffers are made during the load */
    trained_init(&t, 0);
    tg_optim_free(t.o);
    tg_optim_opts so = tg_optim_defaults(TG_OPTIM_SGD);
    t.o = tg_optim_new(t.pr.ps, &so);
    cr_assert_eq(tg_checkpoint_save(tt_in_dir("before.safetensors"), t.pr.ps, t.o), TG_OK);
    ALLOC_LOOP("checkpoint_load, new buffers", k, tg_checkpoint_load(p, t.pr.ps, t.o) != TG_OK,
               expect_unchanged(&t, "ENOMEM, new buffers"));
    cr_assert_eq(tg_checkpoint_save(tt_in_dir("after.safetensors"), t.pr.ps, t.o), TG_OK);
    cr_expect(same_file(p, tt_in_dir("after.safetensors")), "the momentum load did not take");
    ALLOC_LOOP("checkpoint_load without optim", k, tg_checkpoint_load(p, t.pr.ps, NULL) != TG_OK, (void)0);
    trained_free(&t);
}

/* A name too long for the loader's key buffer takes another allocation; it round-trips, and runs out of
   memory cleanly. */
Test(train, long_names_round_trip) {
    char name[301];
    memset(name, 'n', 300);
    name[300] = '\0';
    tg_tensor *w = TT_RAND(TG_F64, 1, 1, 4), *v = TT_RAND(TG_F64, 1, 2, 4);
    tg_params *ps = tg_params_new(), *qs = tg_params_new();
    cr_assert_eq(tg_params_add(ps, name, w), TG_OK);
    cr_assert_eq(tg_params_add(qs, name, v), TG_OK);
    tg_optim_opts oo = tg_optim_defaults(TG_OPTIM_ADAMW);
    tg_optim *o = tg_optim_new(ps, &oo), *q = tg_optim_new(qs, &oo);
    tg_tape *tape = tg_tape_new();
    cr_assert_eq(tg_backward(tape, tg_sum(tape, tg_mul(tape, w, w)), NULL), TG_OK);
    cr_assert_eq(tg_optim_step(o), TG_OK);
    const char *p = tt_in_dir("long.safetensors");
    cr_assert_eq(tg_checkpoint_save(p, ps, o), TG_OK, "%s", tg_last_error());
    ALLOC_LOOP("long names", k, tg_checkpoint_load(p, qs, q) != TG_OK, (void)0);
    cr_expect(!memcmp(tg_tensor_data(w), tg_tensor_data(v), 4 * sizeof(double)));
    cr_assert_eq(tg_checkpoint_save(tt_in_dir("long2.safetensors"), qs, q), TG_OK);
    cr_expect(same_file(p, tt_in_dir("long2.safetensors")));
    tg_tape_free(tape);
    tg_optim_free(o), tg_optim_free(q);
    tg_params_free(ps), tg_params_free(qs);
    tg_tensor_free(w), tg_tensor_free(v);
}

/* The internal metadata-capable writer refuses what would break the format's checksums or its strings. */
Test(train, metadata_writer_refuses_bad_pairs) {
    tg_tensor *t = TT_RAND(TG_F64, 0, 1, 2);
    const char *name = "t", *p = tt_in_dir("m.safetensors");
    tg_clear_error();
    cr_expect_eq(tg__save_safetensors_meta("fn", p, &name, &t, 1, (const char *const[]){"xxh3:t", "0"}, 1),
                 TG_EINVAL);
    tt_expect_error(TG_EINVAL, "fn: metadata key \"xxh3:t\" starts with \"xxh3:\", which checksums use");
    cr_expect_eq(tg__save_safetensors_meta("fn", p, &name, &t, 1, (const char *const[]){"k", NULL}, 1), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "fn: meta[1] is NULL");
    cr_expect_eq(tg__save_safetensors_meta("fn", p, &name, &t, 1, (const char *const[]){NULL, "v"}, 1), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "fn: meta[0] is NULL");
    cr_expect_eq(access(p, F_OK), -1, "a refused save made a file");
    /* pairs without tensors still make a __metadata__, which the loader hands back */
    cr_assert_eq(tg__save_safetensors_meta("fn", p, NULL, NULL, 0, (const char *const[]){"k", "v"}, 1), TG_OK);
    char **names, **kv;
    tg_tensor **ts;
    int n, nkv;
    cr_assert_eq(tg__load_safetensors_meta("fn", p, &names, &ts, &n, &kv, &nkv), TG_OK, "%s", tg_last_error());
    cr_expect(n == 0 && nkv == 1 && !strcmp(kv[0], "k") && !strcmp(kv[1], "v"));
    tg_safetensors_free(kv, NULL, 2 * nkv);
    tg_tensor_free(t);
}

/* ---- lists that own their parameters, layers that make their weights ---------------------------- */

Test(train, params_create_makes_owned_zeroed_parameters_and_refuses_bad_ones) {
    tg_params *ps = tg_params_new();
    tg_tensor *w = tg_params_create(ps, "w", TG_F64, 2, TT_SHAPE(3, 2)), *s = tg_params_create(ps, "s", TG_F32, 0, NULL);
    cr_assert(w && s, "%s", tg_last_error());
    cr_expect_eq(tg_params_count(ps), 2);
    cr_expect_eq(tg_params_find(ps, "w"), w);
    cr_expect(tg_tensor_requires_grad(w) && tg_tensor_grad(w));
    for (int i = 0; i < 6; i++) cr_expect_eq(tg_tensor_get(w, i), 0.0);
    /* a borrowed one beside them is not freed by the list (valgrind would see a double free) */
    tg_tensor *mine = TT_RAND(TG_F64, 1, 1, 2);
    cr_assert_eq(tg_params_add(ps, "mine", mine), TG_OK);
    tg_clear_error();
    cr_expect_null(tg_params_create(ps, "w", TG_F64, 1, TT_SHAPE(2)));
    tt_expect_error(TG_EINVAL, "tg_params_create: tg_params_add: the list already holds a parameter named \"w\"");
    cr_expect_null(tg_params_create(ps, "i", TG_I64, 1, TT_SHAPE(2)));
    tt_expect_error(TG_EDTYPE, "tg_params_create: \"i\": tg_param_new");
    cr_expect_null(tg_params_create(ps, "n", TG_F64, 1, TT_SHAPE(-2)));
    tt_expect_error(TG_ESHAPE, "tg_params_create: \"n\": ");
    cr_expect_null(tg_params_create(ps, NULL, TG_F64, 1, TT_SHAPE(2)));
    tt_expect_error(TG_EINVAL, "tg_params_create: name is NULL");
    cr_expect_null(tg_params_create(NULL, "x", TG_F64, 1, TT_SHAPE(2)));
    tt_expect_error(TG_EINVAL, "tg_params_create: params is NULL");
    tg_optim_opts oo = tg_optim_defaults(TG_OPTIM_SGD);
    tg_optim *o = tg_optim_new(ps, &oo);
    cr_assert(o, "%s", tg_last_error());
    cr_expect_null(tg_params_create(ps, "late", TG_F64, 1, TT_SHAPE(2)));
    tt_expect_error(TG_ESTATE, "optimizer(s) use this list");
    cr_expect_eq(tg_params_count(ps), 3); /* nothing added by the failures */
    tg_optim_free(o);
    tg_params_free(ps);
    tg_tensor_free(mine);
}

Test(train, created_layers_name_shape_and_initialise_their_weights_as_the_book) {
    tg_params *ps = tg_params_new();
    tg_rng rng, ref;
    tg_rng_seed(&rng, 7), tg_rng_seed(&ref, 7);
    tg_time_lstm *enc = tg_time_lstm_create(ps, "enc", TG_F64, 5, 3, 0, &rng);
    tg_time_gru *gru = tg_time_gru_create(ps, "gru", TG_F32, 2, 4, 1, &rng);
    tg_time_rnn *rnn = tg_time_rnn_create(ps, "rnn", TG_F64, 6, 2, 0, &rng);
    tg_tensor *b, *W = tg_linear_create(ps, "out", TG_F64, 3, 7, &rng, &b), *W2 = tg_linear_create(ps, "nob", TG_F64, 3, 2, &rng, NULL);
    cr_assert(enc && gru && rnn && W && b && W2, "%s", tg_last_error());
    const char *names[] = {"enc.Wx", "enc.Wh", "enc.b", "gru.Wx", "gru.Wh", "gru.b", "rnn.Wx", "rnn.Wh", "rnn.b", "out.W",
                           "out.b", "nob.W"};
    int64_t shapes[][2] = {{5, 12}, {3, 12}, {12, 0}, {2, 12}, {4, 12}, {12, 0}, {6, 2}, {2, 2}, {2, 0}, {3, 7}, {7, 0}, {3, 2}};
    double stds[] = {1 / sqrt(5.0), 1 / sqrt(3.0), 0, 1 / sqrt(2.0), 1 / sqrt(4.0), 0, 1 / sqrt(6.0), 1 / sqrt(2.0), 0,
                     1 / sqrt(3.0), 0, 1 / sqrt(3.0)};
    cr_assert_eq(tg_params_count(ps), 12);
    for (int i = 0; i < 12; i++) {
        const char *name;
        tg_tensor *t = tg_params_at(ps, i, &name);
        cr_expect_str_eq(name, names[i]);
        cr_expect_eq(tg_tensor_ndim(t), shapes[i][1] ? 2 : 1, "%s", name);
        cr_expect_eq(tg_tensor_shape(t)[0], shapes[i][0], "%s", name);
        if (shapes[i][1]) cr_expect_eq(tg_tensor_shape(t)[1], shapes[i][1], "%s", name);
        /* the same draws, in the same order, as filling each by hand */
        tg_tensor *want = tg_tensor_new(tg_tensor_dtype(t), tg_tensor_ndim(t), tg_tensor_shape(t));
        if (stds[i] > 0) tg_tensor_fill_normal(want, 0, stds[i], &ref);
        cr_expect_eq(tg_tensor_hash(t), tg_tensor_hash(want), "%s is not N(0, 1) * %g from the seed", name, stds[i]);
        tg_tensor_free(want);
    }
    /* failures leave the list and the rng as they were */
    tg_rng before = rng;
    tg_clear_error();
    cr_expect_null(tg_time_lstm_create(ps, "out", TG_F64, 3, 7, 0, &rng)); /* out.Wx is new, out.b is not */
    tt_expect_error(TG_EINVAL, "tg_time_lstm_create: tg_params_create: tg_params_add: the list already holds a "
                               "parameter named \"out.b\"");
    cr_expect_eq(tg_params_count(ps), 12);
    cr_expect_eq(memcmp(&rng, &before, sizeof rng), 0, "the rng advanced on failure");
    cr_expect_null(tg_time_rnn_create(ps, "x", TG_F64, 0, 3, 0, &rng));
    tt_expect_error(TG_EINVAL, "tg_time_rnn_create: D 0 and H 3 must be >= 1");
    cr_expect_null(tg_time_gru_create(ps, "x", TG_I64, 2, 3, 0, &rng));
    tt_expect_error(TG_EDTYPE, "tg_time_gru_create: tg_params_create: \"x.Wx\": tg_param_new");
    cr_expect_null(tg_time_lstm_create(ps, "x", TG_F64, 2, 3, 0, NULL));
    tt_expect_error(TG_EINVAL, "tg_time_lstm_create: rng is NULL");
    cr_expect_null(tg_time_lstm_create(ps, NULL, TG_F64, 2, 3, 0, &rng));
    tt_expect_error(TG_EINVAL, "tg_time_lstm_create: prefix is NULL");
    cr_expect_null(tg_linear_create(ps, "y", TG_F64, 3, 0, &rng, &b));
    cr_expect_null(b);
    tt_expect_error(TG_EINVAL, "tg_linear_create: in 3 and out 0 must be >= 1");
    char long_prefix[300];
    memset(long_prefix, 'p', sizeof long_prefix - 1), long_prefix[sizeof long_prefix - 1] = '\0';
    cr_expect_null(tg_linear_create(ps, long_prefix, TG_F64, 3, 2, &rng, NULL));
    tt_expect_error(TG_EINVAL, "tg_linear_create: the prefix is 299 bytes, want <= 200");
    cr_expect_eq(tg_params_count(ps), 12);
    /* a created layer runs and its gradient reaches the list's weights */
    tg_tape *tape = tg_tape_new();
    tg_tensor *xs = TT_RAND(TG_F64, 0, 3, 2, 4, 5);
    tg_tensor *L = tg_sum(tape, tg_time_lstm_forward(tape, enc, xs));
    cr_assert(L && tg_backward(tape, L, NULL) == TG_OK, "%s", tg_last_error());
    cr_expect_gt(tg_params_grad_norm(ps), 0);
    tg_tape_free(tape), tg_tensor_free(xs);
    tg_time_lstm_free(enc), tg_time_gru_free(gru), tg_time_rnn_free(rnn);
    tg_params_free(ps); /* frees all twelve: valgrind sees no leak */
}

Test(train, checkpoints_of_created_parameters_round_trip) {
    tg_params *a = tg_params_new(), *b = tg_params_new();
    tg_rng r1, r2;
    tg_rng_seed(&r1, 1), tg_rng_seed(&r2, 2);
    tg_time_lstm *la = tg_time_lstm_create(a, "enc", TG_F32, 3, 4, 0, &r1), *lb = tg_time_lstm_create(b, "enc", TG_F32, 3, 4, 0, &r2);
    tg_tensor *bias_a, *bias_b;
    cr_assert(tg_linear_create(a, "out", TG_F32, 4, 5, &r1, &bias_a) && tg_linear_create(b, "out", TG_F32, 4, 5, &r2, &bias_b));
    tg_tensor_set(bias_a, 3, 0.25);
    const char *path = tt_in_dir("created.safetensors");
    cr_assert_eq(tg_checkpoint_save(path, a, NULL), TG_OK, "%s", tg_last_error());
    cr_expect_neq(tg_tensor_hash(tg_params_find(a, "enc.Wx")), tg_tensor_hash(tg_params_find(b, "enc.Wx")));
    cr_assert_eq(tg_checkpoint_load(path, b, NULL), TG_OK, "%s", tg_last_error());
    for (int i = 0; i < tg_params_count(a); i++) {
        const char *name;
        tg_tensor *t = tg_params_at(a, i, &name);
        cr_expect_eq(tg_tensor_hash(t), tg_tensor_hash(tg_params_find(b, name)), "%s", name);
    }
    tg_time_lstm_free(la), tg_time_lstm_free(lb);
    tg_params_free(a), tg_params_free(b);
}

/* tg_params_add names an unnamed parameter (the drawings show it) and keeps a name given before. */
Test(train, params_add_names_unnamed_parameters) {
    tg_tensor *W = TT_RAND(TG_F64, 1, 1, 2, 2), *b = TT_RAND(TG_F64, 1, 2, 2);
    cr_assert_eq(tg_tensor_set_name(b, "bias"), TG_OK);
    tg_params *ps = tg_params_new();
    cr_assert_eq(tg_params_add(ps, "enc.W", W), TG_OK);
    cr_assert_eq(tg_params_add(ps, "enc.b", b), TG_OK);
    cr_expect_str_eq(tg_tensor_name(W), "enc.W");
    cr_expect_str_eq(tg_tensor_name(b), "bias");
    tg_params_free(ps);
    cr_expect_str_eq(tg_tensor_name(W), "enc.W", "the tensor's own copy outlives the list");
    /* out of memory naming it: the list is unchanged and the tensor unnamed */
    tg_tensor *V = TT_RAND(TG_F64, 1, 3, 2);
    ps = tg_params_new();
    cr_assert_eq(tg_params_add(ps, "first", W), TG_OK); /* the list's arrays are made: the copy, then the name */
    tg__alloc_fail_at(2);
    cr_expect_eq(tg_params_add(ps, "V", V), TG_ENOMEM);
    tg__alloc_fail_at(0);
    tt_expect_error(TG_ENOMEM, "tg_params_add: out of memory naming V");
    cr_expect_eq(tg_params_count(ps), 1);
    cr_expect_null(tg_tensor_name(V));
    tg_params_free(ps);
    tg_tensor_free(W), tg_tensor_free(b), tg_tensor_free(V);
}
