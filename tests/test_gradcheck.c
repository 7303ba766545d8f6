/* The gradient check: it passes correct gradients, names the input and element of wrong ones, catches a
 * non-reentrant backward and a wrong reference, refuses what it cannot check, and leaves the caller's
 * values and gradients as they were, also when f fails or memory runs out. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "tg_testutil.h"

/* ---- functions under check ---- */

/* sum(tanh(x @ W + b)): x (4,3) a constant, W (3,2) and b (2,) params. */
static tg_tensor *f_layer_sum(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_sum(t, tg_tanh(t, tg_add(t, tg_matmul(t, in[0], in[1]), in[2])));
}

/* tanh(x @ W + b), (4,2): a Jacobian of 8 rows. */
static tg_tensor *f_layer(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_tanh(t, tg_add(t, tg_matmul(t, in[0], in[1]), in[2]));
}

/* A test-only square op, y = x^2, whose backward can be made wrong in chosen ways. */
typedef struct {
    double factor;     /* dy/dx = factor * x: 2 is right */
    int64_t bad_elem;  /* this element's gradient gets bad_extra * g added (-1: none) */
    double bad_extra;
    int noisy;         /* adds a tiny amount that grows with every backward call: not reentrant */
    int64_t nan_elem;  /* this element's gradient is NaN (-1: none) */
} sq_cfg;

static const sq_cfg SQ_RIGHT = {2.0, -1, 0.0, 0, -1};

static tg_status sq_forward(tg_tensor *const *in, int n, tg_tensor *out, void *user) {
    (void)n, (void)user;
    for (int64_t k = 0; k < tg_tensor_numel(out); k++) {
        double x = tg_tensor_get(in[0], k);
        tg_tensor_set(out, k, x * x);
    }
    return TG_OK;
}

static tg_status sq_backward(tg_tensor *const *in, int n, tg_tensor *out, tg_tensor *gout, void *const *grads,
                             void *user) {
    (void)n, (void)out;
    const sq_cfg *c = user;
    static int64_t calls; /* the state a reentrant backward must not have */
    calls++;
    if (!grads[0]) return TG_OK;
    for (int64_t k = 0; k < tg_tensor_numel(in[0]); k++) {
        double g = tg_tensor_get(gout, k), d = c->factor * tg_tensor_get(in[0], k) * g;
        if (k == c->bad_elem) d += c->bad_extra * g;
        if (c->noisy) d += (double)calls * 1e-13;
        if (k == c->nan_elem) d = NAN;
        if (tg_tensor_dtype(in[0]) == TG_F32) ((float *)grads[0])[k] += (float)d;
        else ((double *)grads[0])[k] += d;
    }
    return TG_OK;
}

static const tg_op_def SQ = {.name = "test_square", .shape = tt_same_shape, .forward = sq_forward, .backward = sq_backward};

/* c + square(x) + y * y, all (6,): c a constant, x and y params; only square's backward can be wrong. */
static tg_tensor *f_sq(tg_tape *t, tg_tensor *const *in, void *ctx) {
    tg_tensor *x[1] = {in[1]};
    return tg_add(t, tg_add(t, in[0], tg_custom(t, &SQ, x, 1, ctx)), tg_mul(t, in[2], in[2]));
}

/* ---- helpers ---- */

/* Copies of every input's values and gradient, to prove the check leaves them as they were. */
typedef struct {
    int n;
    void *data[8], *grad[8];
    size_t bytes[8];
} snap;

static void snap_take(snap *s, tg_tensor *const *in, int n) {
    s->n = n;
    for (int i = 0; i < n; i++) {
        s->bytes[i] = (size_t)tg_tensor_numel(in[i]) * (tg_tensor_dtype(in[i]) == TG_F32 ? 4 : 8);
        s->data[i] = malloc(s->bytes[i] + 1);
        memcpy(s->data[i], tg_tensor_data(in[i]), s->bytes[i]);
        s->grad[i] = NULL;
        if (tg_tensor_grad(in[i])) {
            s->grad[i] = malloc(s->bytes[i] + 1);
            memcpy(s->grad[i], tg_tensor_grad(in[i]), s->bytes[i]);
        }
    }
}

/* Asserts nothing changed, frees the copies. */
static void snap_check(snap *s, tg_tensor *const *in, const char *when) {
    for (int i = 0; i < s->n; i++) {
        cr_expect(memcmp(s->data[i], tg_tensor_data(in[i]), s->bytes[i]) == 0,
                  "%s: input %d's values changed", when, i);
        if (s->grad[i])
            cr_expect(memcmp(s->grad[i], tg_tensor_grad(in[i]), s->bytes[i]) == 0,
                      "%s: input %d's gradient changed", when, i);
        free(s->data[i]);
        free(s->grad[i]);
    }
}

/* Gives every param a non-zero gradient, so that restoring it (not just zeroing it) is tested. */
static void fill_grads(tg_tensor *const *in, int n) {
    for (int i = 0; i < n; i++) {
        if (!tg_tensor_grad(in[i])) continue;
        for (int64_t k = 0; k < tg_tensor_numel(in[i]); k++) {
            double v = 0.25 + 0.125 * (double)k;
            if (tg_tensor_dtype(in[i]) == TG_F32) ((float *)tg_tensor_grad(in[i]))[k] = (float)v;
            else ((double *)tg_tensor_grad(in[i]))[k] = v;
        }
    }
}

typedef struct {
    tg_tensor *in[3];
} layer_inputs;

static layer_inputs layer_new(tg_dtype dt) {
    layer_inputs l = {{TT_RAND(dt, 0, 1, 4, 3), TT_RAND(dt, 1, 2, 3, 2), TT_RAND(dt, 1, 3, 2)}};
    return l;
}

static void inputs_free(tg_tensor **in, int n) {
    for (int i = 0; i < n; i++) tg_tensor_free(in[i]);
}

static void sq_inputs(tg_tensor **in) {
    in[0] = TT_RAND(TG_F64, 0, 11, 6);
    in[1] = TT_RAND(TG_F64, 1, 12, 6);
    in[2] = TT_RAND(TG_F64, 1, 13, 6);
}

static void expect_sane_pass(const tg_gradcheck_report *r, int fast) {
    cr_expect_eq(r->passed, 1, "%s", r->message);
    cr_expect(r->input == 1 || r->input == 2, "input %d", r->input);
    if (fast) cr_expect_eq(r->index, -1);
    else cr_expect(r->index >= 0 && r->index < 6, "index %lld", (long long)r->index);
    cr_expect(isfinite(r->analytic) && isfinite(r->numeric));
    cr_expect(r->max_abs_err >= 0 && r->max_abs_err < 1e-7, "max abs err %g", r->max_abs_err);
    cr_expect(r->max_rel_err >= 0 && r->max_rel_err < 1e-5, "max rel err %g", r->max_rel_err);
    cr_expect(strncmp(r->message, "passed", 6) == 0, "%s", r->message);
}

/* ---- correct gradients pass ---- */

Test(gradcheck, a_correct_layer_passes_in_full_mode) {
    layer_inputs l = layer_new(TG_F64);
    tg_gradcheck_report r;
    cr_expect(tg_gradcheck(f_layer_sum, NULL, l.in, 3, NULL, &r), "%s", r.message);
    expect_sane_pass(&r, 0);
    cr_expect(strstr(r.message, "8 values") != NULL, "one output, 6 + 2 param elements: %s", r.message);
    tg_gradcheck_opts o = tg_gradcheck_defaults();
    cr_expect(tg_gradcheck(f_layer, NULL, l.in, 3, &o, &r), "%s", r.message);
    expect_sane_pass(&r, 0);
    cr_expect(strstr(r.message, "64 values") != NULL, "8 outputs x 8 param elements: %s", r.message);
    cr_expect_eq(tg_gradcheck(f_layer, NULL, l.in, 3, NULL, NULL), 1, "a NULL report is allowed");
    inputs_free(l.in, 3);
}

Test(gradcheck, a_correct_layer_passes_in_fast_mode) {
    layer_inputs l = layer_new(TG_F64);
    tg_gradcheck_opts o = tg_gradcheck_defaults();
    o.fast = 1;
    tg_gradcheck_report r;
    for (uint64_t seed = 0; seed < 4; seed++) {
        o.seed = seed;
        cr_expect(tg_gradcheck(f_layer, NULL, l.in, 3, &o, &r), "seed %llu: %s", (unsigned long long)seed,
                  r.message);
        expect_sane_pass(&r, 1);
        cr_expect(strstr(r.message, "2 values") != NULL, "one projection per param: %s", r.message);
    }
    inputs_free(l.in, 3);
}

Test(gradcheck, a_custom_op_with_a_right_backward_passes) {
    tg_tensor *in[3];
    sq_inputs(in);
    sq_cfg c = SQ_RIGHT;
    tg_gradcheck_report r;
    cr_expect(tg_gradcheck(f_sq, &c, in, 3, NULL, &r), "%s", r.message);
    inputs_free(in, 3);
}

static tg_tensor *f_identity(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)t, (void)ctx;
    return in[0];
}

Test(gradcheck, an_output_that_is_a_param_passes) {
    tg_tensor *W = TT_RAND(TG_F64, 1, 5, 2, 3);
    tg_gradcheck_report r;
    cr_expect(tg_gradcheck(f_identity, NULL, &W, 1, NULL, &r), "%s", r.message);
    cr_expect_lt(r.max_abs_err, 1e-9);
    tg_tensor_free(W);
}

static tg_tensor *f_sum_of_constant(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_sum(t, in[0]);
}

static tg_tensor *f_sum_of_detached(tg_tape *t, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_sum(t, tg_detach(t, in[0]));
}

Test(gradcheck, an_output_that_needs_no_gradient_has_a_zero_jacobian) {
    tg_tensor *in[2] = {TT_RAND(TG_F64, 0, 1, 3), TT_RAND(TG_F64, 1, 2, 2, 3)};
    tg_gradcheck_report r;
    /* Depends on no param: zero both ways, and tg_backward (which refuses such an output) is not called. */
    cr_expect(tg_gradcheck(f_sum_of_constant, NULL, in, 2, NULL, &r), "%s", r.message);
    cr_expect_eq(r.max_abs_err, 0.0);
    tg_gradcheck_opts o = tg_gradcheck_defaults();
    o.fast = 1;
    cr_expect(tg_gradcheck(f_sum_of_constant, NULL, in, 2, &o, &r), "%s", r.message);
    /* Depends on the param, but through a detach: the tape says zero, the differences say one. */
    tg_tensor *W[1] = {in[1]};
    cr_expect_not(tg_gradcheck(f_sum_of_detached, NULL, W, 1, NULL, &r));
    cr_expect_eq(r.input, 0);
    cr_expect_eq(r.index, 0);
    cr_expect_eq(r.analytic, 0.0);
    cr_expect(fabs(r.numeric - 1.0) < 1e-8, "numeric %g", r.numeric);
    cr_expect(strstr(r.message, "input 0 element 0 (output element 0): analytic 0 vs numeric") != NULL, "%s",
              r.message);
    cr_expect(strstr(r.message, "6 of 6 values") != NULL, "%s", r.message);
    cr_expect_eq(tg_last_status(), TG_OK, "a mismatch is a result, not an error: %s", tg_last_error());
    inputs_free(in, 2);
}

/* ---- wrong gradients fail, naming where ---- */

Test(gradcheck, a_wrong_backward_fails_in_both_modes) {
    tg_tensor *in[3];
    sq_inputs(in);
    sq_cfg c = SQ_RIGHT;
    c.factor = 3.0; /* y = x^2 with backward 3 x g */
    tg_gradcheck_report r;
    cr_expect_not(tg_gradcheck(f_sq, &c, in, 3, NULL, &r));
    cr_expect_eq(r.passed, 0);
    cr_expect_eq(r.input, 1, "input %d: %s", r.input, r.message);
    cr_expect(r.index >= 0 && r.index < 6);
    cr_expect(fabs(r.analytic - 1.5 * r.numeric) < 1e-6, "analytic %g numeric %g", r.analytic, r.numeric);
    /* the worst is the largest |x|: its error |x| exceeds the others' */
    int64_t worst = 0;
    for (int64_t k = 1; k < 6; k++)
        if (fabs(tg_tensor_get(in[1], k)) > fabs(tg_tensor_get(in[1], worst))) worst = k;
    cr_expect_eq(r.index, worst);
    tg_gradcheck_opts o = tg_gradcheck_defaults();
    o.fast = 1;
    cr_expect_not(tg_gradcheck(f_sq, &c, in, 3, &o, &r));
    cr_expect_eq(r.input, 1);
    cr_expect_eq(r.index, -1);
    cr_expect(strstr(r.message, "input 1 (projection v^T J u): analytic") != NULL, "%s", r.message);
    inputs_free(in, 3);
}

Test(gradcheck, one_wrong_element_is_named) {
    tg_tensor *in[3];
    sq_inputs(in);
    sq_cfg c = SQ_RIGHT;
    c.bad_elem = 4;
    c.bad_extra = 0.5;
    tg_gradcheck_report r;
    cr_expect_not(tg_gradcheck(f_sq, &c, in, 3, NULL, &r));
    cr_expect_eq(r.input, 1);
    cr_expect_eq(r.index, 4);
    cr_expect(fabs(r.analytic - r.numeric - 0.5) < 1e-8, "analytic %g numeric %g", r.analytic, r.numeric);
    cr_expect(fabs(r.max_abs_err - 0.5) < 1e-8, "%g", r.max_abs_err);
    cr_expect(strstr(r.message, "input 1 element 4 (output element 4): analytic ") != NULL, "%s", r.message);
    cr_expect(strstr(r.message, "> tol") != NULL, "%s", r.message);
    cr_expect(strstr(r.message, "1 of 72 values") != NULL, "6 outputs x 12 elements, one wrong: %s",
              r.message);
    tg_gradcheck_opts o = tg_gradcheck_defaults();
    o.fast = 1;
    cr_expect_not(tg_gradcheck(f_sq, &c, in, 3, &o, &r), "%s", r.message);
    cr_expect_eq(r.input, 1);
    inputs_free(in, 3);
}

Test(gradcheck, a_small_error_within_tolerance_passes_and_one_beyond_fails) {
    tg_tensor *in[3];
    sq_inputs(in);
    sq_cfg c = SQ_RIGHT;
    c.bad_elem = 2;
    tg_gradcheck_report r;
    double n = 2 * tg_tensor_get(in[1], 2), tol = 1e-5 + 1e-3 * fabs(n);
    c.bad_extra = 0.5 * tol;
    cr_expect(tg_gradcheck(f_sq, &c, in, 3, NULL, &r), "%s", r.message);
    cr_expect(fabs(r.max_abs_err - 0.5 * tol) < 1e-9, "max abs err %g, want %g", r.max_abs_err, 0.5 * tol);
    c.bad_extra = 2 * tol;
    cr_expect_not(tg_gradcheck(f_sq, &c, in, 3, NULL, &r), "%s", r.message);
    cr_expect_eq(r.index, 2);
    inputs_free(in, 3);
}

Test(gradcheck, a_nan_gradient_fails) {
    tg_tensor *in[3];
    sq_inputs(in);
    sq_cfg c = SQ_RIGHT;
    c.nan_elem = 2;
    tg_gradcheck_report r;
    cr_expect_not(tg_gradcheck(f_sq, &c, in, 3, NULL, &r));
    cr_expect_eq(r.input, 1);
    cr_expect_eq(r.index, 2);
    cr_expect(isnan(r.analytic));
    cr_expect(isnan(r.max_abs_err), "a NaN shows in the maximum: %g", r.max_abs_err);
    cr_expect(strstr(r.message, "not finite") != NULL, "%s", r.message);
    inputs_free(in, 3);
}

Test(gradcheck, a_backward_that_is_not_reentrant_fails) {
    tg_tensor *in[3];
    sq_inputs(in);
    sq_cfg c = SQ_RIGHT;
    c.noisy = 1; /* 1e-13 per call: far inside the tolerance, but two runs differ */
    tg_gradcheck_report r;
    for (int fast = 0; fast <= 1; fast++) {
        tg_gradcheck_opts o = tg_gradcheck_defaults();
        o.fast = fast;
        cr_expect_not(tg_gradcheck(f_sq, &c, in, 3, &o, &r), "fast %d", fast);
        cr_expect(strstr(r.message, "not reentrant") != NULL, "%s", r.message);
        cr_expect(strstr(r.message, "input 1 element 0") != NULL, "%s", r.message);
        cr_expect_eq(r.input, 1);
        cr_expect_eq(r.index, 0);
        cr_expect_neq(r.analytic, r.numeric);
    }
    inputs_free(in, 3);
}

/* ---- what it refuses ---- */

Test(gradcheck, no_input_that_needs_a_gradient_fails_with_a_message) {
    tg_tensor *x = TT_RAND(TG_F64, 0, 1, 3);
    tg_gradcheck_report r;
    cr_expect_not(tg_gradcheck(f_sum_of_constant, NULL, &x, 1, NULL, &r));
    cr_expect_eq(r.passed, 0);
    cr_expect(strstr(r.message, "no input needs a gradient") != NULL, "%s", r.message);
    tt_expect_error(TG_EINVAL, "tg_gradcheck: no input needs a gradient");
    tg_tensor_free(x);
}

Test(gradcheck, bad_arguments_fail_with_einval) {
    layer_inputs l = layer_new(TG_F64);
    tg_gradcheck_report r;
    cr_expect_not(tg_gradcheck(NULL, NULL, l.in, 3, NULL, &r));
    cr_expect(strstr(r.message, "f is NULL") != NULL, "%s", r.message);
    tt_expect_error(TG_EINVAL, "f is NULL");
    cr_expect_not(tg_gradcheck(f_layer, NULL, NULL, 3, NULL, &r));
    tt_expect_error(TG_EINVAL, "inputs is NULL");
    cr_expect_not(tg_gradcheck(f_layer, NULL, l.in, 0, NULL, &r));
    cr_expect(strstr(r.message, "n_inputs is 0") != NULL, "%s", r.message);
    tt_expect_error(TG_EINVAL, "n_inputs is 0");
    tg_tensor *with_null[3] = {l.in[0], NULL, l.in[2]};
    cr_expect_not(tg_gradcheck(f_layer, NULL, with_null, 3, NULL, &r));
    tt_expect_error(TG_EINVAL, "inputs[1] is NULL");
    tg_gradcheck_opts o = tg_gradcheck_defaults();
    o.eps = 0;
    cr_expect_not(tg_gradcheck(f_layer, NULL, l.in, 3, &o, &r));
    tt_expect_error(TG_EINVAL, "eps");
    o = tg_gradcheck_defaults();
    o.rtol = NAN;
    cr_expect_not(tg_gradcheck(f_layer, NULL, l.in, 3, &o, &r));
    tt_expect_error(TG_EINVAL, "rtol");
    tg_gradcheck_report vr;
    cr_expect_not(tg_gradcheck_ref(f_layer, NULL, NULL, l.in, 3, NULL, &vr, &r));
    cr_expect_eq(vr.passed, 0);
    cr_expect_eq(r.passed, 0);
    tt_expect_error(TG_EINVAL, "ref is NULL");
    inputs_free(l.in, 3);
}

Test(gradcheck, a_null_input_from_a_failed_constructor_keeps_its_error) {
    tg_tensor *in[1] = {tg_param_new(TG_F64, 1, TT_SHAPE(-1))};
    tg_gradcheck_report r;
    cr_expect_not(tg_gradcheck(f_identity, NULL, in, 1, NULL, &r));
    cr_expect(strstr(r.message, "negative dimension") != NULL, "%s", r.message);
    tt_expect_error(TG_ESHAPE, "tg_param_new");
}

Test(gradcheck, an_op_output_as_input_is_refused) {
    tg_tape *t = tg_tape_new();
    tg_tensor *W = TT_RAND(TG_F64, 1, 1, 3);
    tg_tensor *in[1] = {tg_tanh(t, W)};
    cr_assert(in[0] && tg_tensor_requires_grad(in[0]));
    tg_gradcheck_report r;
    cr_expect_not(tg_gradcheck(f_identity, NULL, in, 1, NULL, &r));
    tt_expect_error(TG_EINVAL, "input 0 needs a gradient but has none of its own");
    tg_tape_free(t);
    tg_tensor_free(W);
}

Test(gradcheck, f32_is_refused_unless_opted_in) {
    layer_inputs l = layer_new(TG_F32);
    tg_gradcheck_report r;
    cr_expect_not(tg_gradcheck(f_layer_sum, NULL, l.in, 3, NULL, &r));
    cr_expect(strstr(r.message, "tg_gradcheck_defaults_f32()") != NULL, "%s", r.message);
    tt_expect_error(TG_EDTYPE, "input 0 is f32");
    tg_gradcheck_opts o = tg_gradcheck_defaults_f32();
    cr_expect_eq(o.allow_f32, 1);
    fill_grads(l.in, 3);
    snap s;
    snap_take(&s, l.in, 3);
    cr_expect(tg_gradcheck(f_layer_sum, NULL, l.in, 3, &o, &r), "%s", r.message);
    cr_expect(tg_gradcheck(f_layer, NULL, l.in, 3, &o, &r), "%s", r.message);
    o.fast = 1;
    cr_expect(tg_gradcheck(f_layer, NULL, l.in, 3, &o, &r), "%s", r.message);
    snap_check(&s, l.in, "f32");
    inputs_free(l.in, 3);
}

/* ---- f failing ---- */

typedef struct {
    int calls, fail_at; /* fail_at: the call (from 1) that fails; 0 never */
    int silently;       /* return NULL without setting an error */
    int shrink_at;      /* from this call on, return one element fewer */
} fail_ctx;

static tg_tensor *f_failing(tg_tape *t, tg_tensor *const *in, void *ctx) {
    fail_ctx *c = ctx;
    c->calls++;
    if (c->calls == c->fail_at) {
        if (c->silently) return NULL;
        return tg_matmul(t, in[1], in[1]); /* (3,2) @ (3,2): fails with tg_matmul's message */
    }
    tg_tensor *y = f_layer(t, in, NULL);
    if (c->shrink_at && c->calls >= c->shrink_at) return tg_slice(t, y, 0, 0, 3);
    return y;
}

Test(gradcheck, f_failing_fails_with_its_message_and_restores_everything) {
    layer_inputs l = layer_new(TG_F64);
    fill_grads(l.in, 3);
    /* The first call, a backward, its repeat and numeric runs. Full mode: 1 probe, 2 x 8 rows, then
       2 calls per param element; fast mode: 1 probe, 2 backward, then 2 calls per param. */
    int at[2][5] = {{1, 2, 5, 20, 31}, {1, 2, 3, 4, 7}};
    for (int fast = 0; fast <= 1; fast++)
        for (size_t i = 0; i < 5; i++) {
            fail_ctx c = {0, at[fast][i], 0, 0};
            tg_gradcheck_opts o = tg_gradcheck_defaults();
            o.fast = fast;
            snap s;
            snap_take(&s, l.in, 3);
            tg_gradcheck_report r;
            tg_clear_error();
            cr_expect_not(tg_gradcheck(f_failing, &c, l.in, 3, &o, &r));
            cr_expect(strstr(r.message, "f failed") != NULL, "%s", r.message);
            cr_expect(strstr(r.message, "tg_matmul") != NULL, "%s", r.message);
            tt_expect_error(TG_ESHAPE, "tg_matmul");
            cr_expect_eq(c.calls, c.fail_at, "the check stops at f's first failure");
            snap_check(&s, l.in, "f failing");
        }
    fail_ctx c = {0, 21, 0, 0};
    tg_gradcheck_report r;
    tg_gradcheck(f_failing, &c, l.in, 3, NULL, &r);
    cr_expect(strstr(r.message, "f failed at input 1 element 1 - eps: tg_matmul") != NULL,
              "the run is named: %s", r.message);
    c = (fail_ctx){0, 2, 0, 0};
    tg_gradcheck(f_failing, &c, l.in, 3, NULL, &r);
    cr_expect(strstr(r.message, "f failed for the backward of output element 0") != NULL, "%s", r.message);
    tg_clear_error();
    inputs_free(l.in, 3);
}

Test(gradcheck, f_returning_null_silently_fails_with_einval) {
    layer_inputs l = layer_new(TG_F64);
    fail_ctx c = {0, 1, 1, 0};
    tg_gradcheck_report r;
    tg_clear_error();
    cr_expect_not(tg_gradcheck(f_failing, &c, l.in, 3, NULL, &r));
    cr_expect(strstr(r.message, "without setting an error") != NULL, "%s", r.message);
    tt_expect_error(TG_EINVAL, "f returned NULL on its first call");
    inputs_free(l.in, 3);
}

Test(gradcheck, f_changing_its_output_shape_fails) {
    layer_inputs l = layer_new(TG_F64);
    fail_ctx c = {0, 0, 0, 4};
    tg_gradcheck_report r;
    cr_expect_not(tg_gradcheck(f_failing, &c, l.in, 3, NULL, &r));
    cr_expect(strstr(r.message, "same function") != NULL, "%s", r.message);
    tt_expect_error(TG_ESHAPE, "f returned a f64 (3,2) output");
    inputs_free(l.in, 3);
}

/* ---- values and gradients come back ---- */

Test(gradcheck, values_and_gradients_are_restored) {
    tg_tensor *in[3];
    sq_inputs(in);
    fill_grads(in, 3);
    sq_cfg right = SQ_RIGHT, wrong = SQ_RIGHT;
    wrong.factor = 3.0;
    for (int fast = 0; fast <= 1; fast++) {
        tg_gradcheck_opts o = tg_gradcheck_defaults();
        o.fast = fast;
        snap s;
        snap_take(&s, in, 3);
        tg_gradcheck_report r;
        cr_expect(tg_gradcheck(f_sq, &right, in, 3, &o, &r), "%s", r.message);
        cr_expect_not(tg_gradcheck(f_sq, &wrong, in, 3, &o, &r));
        snap_check(&s, in, fast ? "fast" : "full");
    }
    inputs_free(in, 3);
}

/* ---- against a hand-derived reference ---- */

typedef struct {
    int64_t bad_b_elem;  /* db[this] is off by 0.5 (-1: none) */
    int64_t skip_W_elem; /* dW[this] is never written (-1: none) */
    tg_status fail;      /* returned at once when not TG_OK */
} ref_cfg;

/* The backward of tanh(x W + b) by hand: dt = g (1 - y^2), dW = x^T dt, db = column sums of dt. */
static tg_status layer_ref(tg_tensor *const *in, const tg_tensor *gout, tg_tensor *const *grads, void *ctx) {
    const ref_cfg *c = ctx;
    if (c->fail) return c->fail;
    cr_assert_null(grads[0], "x needs no gradient");
    cr_assert(grads[1] && grads[2]);
    cr_assert_eq(tg_tensor_numel(grads[1]), 6);
    double dW[6] = {0}, db[2] = {0};
    for (int n = 0; n < 4; n++)
        for (int h = 0; h < 2; h++) {
            double z = tg_tensor_get(in[2], h);
            for (int d = 0; d < 3; d++)
                z += tg_tensor_get(in[0], n * 3 + d) * tg_tensor_get(in[1], d * 2 + h);
            double y = tanh(z), dt = tg_tensor_get(gout, n * 2 + h) * (1 - y * y);
            db[h] += dt;
            for (int d = 0; d < 3; d++) dW[d * 2 + h] += tg_tensor_get(in[0], n * 3 + d) * dt;
        }
    if (c->bad_b_elem >= 0) db[c->bad_b_elem] += 0.5;
    for (int k = 0; k < 6; k++)
        if (k != c->skip_W_elem) tg_tensor_set(grads[1], k, dW[k]);
    for (int k = 0; k < 2; k++) tg_tensor_set(grads[2], k, db[k]);
    return TG_OK;
}

Test(gradcheck, a_correct_reference_passes) {
    layer_inputs l = layer_new(TG_F64);
    ref_cfg c = {-1, -1, TG_OK};
    for (int fast = 0; fast <= 1; fast++) {
        tg_gradcheck_opts o = tg_gradcheck_defaults();
        o.fast = fast;
        tg_gradcheck_report vr, vn;
        cr_expect(tg_gradcheck_ref(f_layer, layer_ref, &c, l.in, 3, &o, &vr, &vn), "%s | %s", vr.message,
                  vn.message);
        cr_expect_eq(vr.passed, 1);
        cr_expect_eq(vn.passed, 1);
        cr_expect_leq(vr.max_rel_err, 1e-10, "%g", vr.max_rel_err);
        cr_expect(strstr(vr.message, "passed against the reference") != NULL, "%s", vr.message);
        cr_expect(strstr(vr.message, fast ? "8 values" : "64 values") != NULL, "%s", vr.message);
        expect_sane_pass(&vn, fast);
        /* either report may be NULL */
        cr_expect(tg_gradcheck_ref(f_layer, layer_ref, &c, l.in, 3, &o, NULL, NULL));
    }
    inputs_free(l.in, 3);
}

Test(gradcheck, a_wrong_reference_fails_naming_input_and_element) {
    layer_inputs l = layer_new(TG_F64);
    ref_cfg c = {1, -1, TG_OK};
    for (int fast = 0; fast <= 1; fast++) {
        tg_gradcheck_opts o = tg_gradcheck_defaults();
        o.fast = fast;
        tg_gradcheck_report vr, vn;
        cr_expect_not(tg_gradcheck_ref(f_layer, layer_ref, &c, l.in, 3, &o, &vr, &vn));
        cr_expect_eq(vr.passed, 0);
        cr_expect_eq(vn.passed, 1, "the tape is right: %s", vn.message);
        cr_expect_eq(vr.input, 2);
        cr_expect_eq(vr.index, 1);
        cr_expect(fabs(vr.numeric - vr.analytic - 0.5) < 1e-12, "numeric holds the reference's value");
        cr_expect(strstr(vr.message, "input 2 element 1") != NULL, "%s", vr.message);
        cr_expect(strstr(vr.message, ": tape ") != NULL && strstr(vr.message, " vs reference ") != NULL, "%s",
                  vr.message);
        cr_expect_eq(tg_last_status(), TG_OK, "%s", tg_last_error());
    }
    inputs_free(l.in, 3);
}

Test(gradcheck, an_element_the_reference_forgets_fails) {
    layer_inputs l = layer_new(TG_F64);
    ref_cfg c = {-1, 3, TG_OK};
    tg_gradcheck_report vr, vn;
    cr_expect_not(tg_gradcheck_ref(f_layer, layer_ref, &c, l.in, 3, NULL, &vr, &vn));
    cr_expect_eq(vr.input, 1);
    cr_expect_eq(vr.index, 3);
    cr_expect(strstr(vr.message, "not finite") != NULL, "%s", vr.message);
    inputs_free(l.in, 3);
}

Test(gradcheck, a_failing_reference_fails_with_its_status) {
    layer_inputs l = layer_new(TG_F64);
    fill_grads(l.in, 3);
    snap s;
    snap_take(&s, l.in, 3);
    ref_cfg c = {-1, -1, TG_ESHAPE};
    tg_gradcheck_report vr, vn;
    tg_clear_error();
    cr_expect_not(tg_gradcheck_ref(f_layer, layer_ref, &c, l.in, 3, NULL, &vr, &vn));
    cr_expect_eq(vr.passed, 0);
    cr_expect_eq(vn.passed, 0);
    cr_expect(strstr(vr.message, "reference failed") != NULL && strstr(vr.message, "TG_ESHAPE") != NULL, "%s",
              vr.message);
    tt_expect_error(TG_ESHAPE, "tg_gradcheck_ref: the reference failed");
    snap_check(&s, l.in, "failing reference");
    inputs_free(l.in, 3);
}

/* ---- out of memory ---- */

/* Every allocation of the check (and of f and the tape under it) fails in turn: each failure must
   report TG_ENOMEM, restore the caller's tensors and (under valgrind) leak nothing. */
static void fail_every_allocation(int fast, int with_ref) {
    layer_inputs l = layer_new(TG_F64);
    fill_grads(l.in, 3);
    ref_cfg c = {-1, -1, TG_OK};
    tg_gradcheck_opts o = tg_gradcheck_defaults();
    o.fast = fast;
    int64_t k;
    for (k = 1; k < 100000; k++) {
        snap s;
        snap_take(&s, l.in, 3);
        tg_gradcheck_report vr, vn;
        tg_clear_error();
        tg__alloc_fail_at(k);
        int ok = with_ref ? tg_gradcheck_ref(f_layer, layer_ref, &c, l.in, 3, &o, &vr, &vn)
                          : tg_gradcheck(f_layer, NULL, l.in, 3, &o, &vn);
        int64_t used = tg__alloc_count();
        tg__alloc_fail_at(0);
        snap_check(&s, l.in, "out of memory");
        /* A pass before the end is a failed doubling that the arena retried at the size needed. */
        if (ok && used < k) break;
        if (ok) continue;
        cr_expect_eq(tg_last_status(), TG_ENOMEM, "k=%lld: %s: %s", (long long)k,
                     tg_status_name(tg_last_status()), tg_last_error());
        cr_expect_eq(vn.passed, 0);
        cr_expect(vn.message[0] != '\0');
        if (with_ref) cr_expect_eq(vr.passed, 0);
    }
    cr_expect_gt(k, 3, "the check allocates");
    cr_expect_lt(k, 100000, "never passed");
    inputs_free(l.in, 3);
}

Test(gradcheck, allocation_failures_full) { fail_every_allocation(0, 0); }
Test(gradcheck, allocation_failures_fast) { fail_every_allocation(1, 0); }
Test(gradcheck, allocation_failures_with_reference) {
    fail_every_allocation(0, 1);
    fail_every_allocation(1, 1);
}

/* ---- printing ---- */

static char *print_to_string(const tg_gradcheck_report *r) {
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    cr_assert(f);
    tg_gradcheck_print(r, f);
    fclose(f);
    return buf;
}

Test(gradcheck, print_shows_the_verdict_and_the_worst_element) {
    tg_tensor *in[3];
    sq_inputs(in);
    sq_cfg c = SQ_RIGHT;
    c.bad_elem = 4;
    c.bad_extra = 0.5;
    tg_gradcheck_report r;
    cr_expect_not(tg_gradcheck(f_sq, &c, in, 3, NULL, &r));
    char *s = print_to_string(&r);
    cr_expect(strstr(s, "FAIL") != NULL, "%s", s);
    cr_expect(strstr(s, "input 1, element 4") != NULL, "%s", s);
    cr_expect(strstr(s, "max abs err 0.5") != NULL, "%s", s);
    cr_expect(strstr(s, r.message) != NULL, "%s", s);
    free(s);
    c = SQ_RIGHT;
    cr_expect(tg_gradcheck(f_sq, &c, in, 3, NULL, &r));
    s = print_to_string(&r);
    cr_expect(strstr(s, "PASS") != NULL && strstr(s, "passed") != NULL, "%s", s);
    cr_expect(strstr(s, "FAIL") == NULL, "%s", s);
    free(s);
    tg_gradcheck_print(NULL, stdout); /* ignored */
    inputs_free(in, 3);
}

static tg_tensor *identity_fn(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_scale(tape, in[0], 1.0);
}

Test(gradcheck, nothing_to_compare_fails) {
    tg_tensor *e = tg_param_new(TG_F64, 2, TT_SHAPE(3, 0));
    tg_gradcheck_report r;
    cr_expect_eq(tg_gradcheck(identity_fn, NULL, &e, 1, NULL, &r), 0);
    cr_expect(strstr(r.message, "nothing to compare"), "%s", r.message);
    tg_tensor_free(e);
}

/* The finite differences run with gradients off: f's calls there record no node. */
typedef struct {
    int with, without, recorded_without;
} grad_modes;
static tg_tensor *f_counting(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    grad_modes *m = ctx;
    tg_tensor *y = tg_tanh(tape, in[0]);
    if (tg_tape_grad_enabled(tape)) m->with++;
    else m->without++, m->recorded_without += tg_tape_size(tape) > 0;
    return y;
}

Test(gradcheck, finite_differences_run_without_recording) {
    tg_tensor *p = TT_RAND(TG_F64, 1, 3, 4);
    for (int fast = 0; fast < 2; fast++) {
        grad_modes m = {0};
        tg_gradcheck_opts o = tg_gradcheck_defaults();
        o.fast = fast;
        cr_expect(tg_gradcheck(f_counting, &m, &p, 1, &o, NULL));
        /* full: 2 calls per input element; fast: 2 along u */
        cr_expect_eq(m.without, fast ? 2 : 8, "fast %d: %d calls without gradients", fast, m.without);
        cr_expect_eq(m.recorded_without, 0);
        cr_expect(m.with >= 2);
    }
    tg_tensor_free(p);
}

/* ---- a backward that overwrites, and the per-node check ---- */

/* softplus(x) = log(1 + e^x), whose backward either adds (right) or assigns (wrong but, used once, with
   the right values). */
static tg_status softplus_forward(tg_tensor *const *in, int n, tg_tensor *out, void *user) {
    (void)n, (void)user;
    for (int64_t k = 0; k < tg_tensor_numel(out); k++) tg_tensor_set(out, k, log1p(exp(tg_tensor_get(in[0], k))));
    return TG_OK;
}
static tg_status softplus_backward(tg_tensor *const *in, int n, tg_tensor *out, tg_tensor *gout, void *const *grads,
                                   void *user) {
    (void)n, (void)out;
    int assign = user != NULL;
    for (int64_t k = 0; grads[0] && k < tg_tensor_numel(in[0]); k++) {
        double d = tg_tensor_get(gout, k) / (1 + exp(-tg_tensor_get(in[0], k)));
        if (tg_tensor_dtype(in[0]) == TG_F32) {
            float *g = grads[0];
            g[k] = assign ? (float)d : g[k] + (float)d;
        } else {
            double *g = grads[0];
            g[k] = assign ? d : g[k] + d;
        }
    }
    return TG_OK;
}
static const tg_op_def SOFTPLUS = {.name = "softplus", .shape = tt_same_shape, .forward = softplus_forward, .backward = softplus_backward};

/* sum(tanh(softplus(x @ W)) * c): softplus used once, between built-in ops */
static tg_tensor *f_softplus(tg_tape *t, tg_tensor *const *in, void *ctx) {
    tg_tensor *h = tg_matmul(t, in[0], in[1]);
    tg_tensor *s = tg_custom(t, &SOFTPLUS, &h, 1, ctx);
    return tg_sum(t, tg_mul(t, tg_tanh(t, s), in[2]));
}
static tg_status ref_softplus(tg_tensor *const *in, const tg_tensor *gout, tg_tensor *const *grads, void *ctx) {
    (void)ctx;
    /* dL/dW = x^T (g c (1 - tanh^2(s)) sigmoid(h)), dL/dx likewise with W */
    int64_t N = tg_tensor_shape(in[0])[0], K = tg_tensor_shape(in[0])[1], M = tg_tensor_shape(in[1])[1];
    double g = tg_tensor_get(gout, 0);
    for (int64_t i = 0; i < tg_tensor_numel(in[1]); i++) tg_tensor_set(grads[1], i, 0);
    for (int64_t i = 0; grads[0] && i < tg_tensor_numel(in[0]); i++) tg_tensor_set(grads[0], i, 0);
    for (int64_t r = 0; r < N; r++)
        for (int64_t m = 0; m < M; m++) {
            double h = 0;
            for (int64_t k = 0; k < K; k++) h += tg_tensor_get(in[0], r * K + k) * tg_tensor_get(in[1], k * M + m);
            double s = log1p(exp(h)), th = tanh(s);
            double dh = g * tg_tensor_get(in[2], r * M + m) * (1 - th * th) / (1 + exp(-h));
            for (int64_t k = 0; k < K; k++) {
                tg_tensor_set(grads[1], k * M + m, tg_tensor_get(grads[1], k * M + m) + tg_tensor_get(in[0], r * K + k) * dh);
                if (grads[0])
                    tg_tensor_set(grads[0], r * K + k, tg_tensor_get(grads[0], r * K + k) + tg_tensor_get(in[1], k * M + m) * dh);
            }
        }
    return TG_OK;
}

Test(gradcheck, an_overwriting_backward_used_once_fails_all_three_checks) {
    tg_tensor *in[3] = {TT_RAND(TG_F64, 0, 1, 3, 2), TT_RAND(TG_F64, 1, 2, 2, 4), TT_RAND(TG_F64, 0, 3, 3, 4)};
    tg_gradcheck_report r, rn;
    int wrong = 1;
    /* the right one passes all three */
    cr_expect(tg_gradcheck(f_softplus, NULL, in, 3, NULL, &r), "%s", r.message);
    cr_expect(tg_gradcheck_ref(f_softplus, ref_softplus, NULL, in, 3, NULL, &r, &rn), "%s / %s", r.message, rn.message);
    tg_tape *tape = tg_tape_new();
    tg_tensor *L = f_softplus(tape, in, NULL);
    cr_expect(tg_gradcheck_nodes(tape, L, NULL, &r), "%s", r.message);
    cr_expect(strstr(r.message, "passed: 5 nodes checked"), "%s", r.message);
    cr_expect_eq(tg_gradcheck_nodes_failed_index(), -1);
    cr_expect_str_eq(tg_gradcheck_nodes_failed_op(), "");
    tg_tape_free(tape);
    /* the overwriting one fails each, named */
    tg_clear_error();
    cr_expect_not(tg_gradcheck(f_softplus, &wrong, in, 3, NULL, &r));
    cr_expect(strstr(r.message, "backward of softplus (node 1) overwrites its gradient of input 0 instead of adding"),
              "%s", r.message);
    cr_expect_eq(tg_last_status(), TG_OK, "a failed check is a result, not an error: %s", tg_last_error());
    /* a caller's pending error is left as it was */
    cr_expect_null(tg_tensor_new(TG_F64, -1, NULL));
    cr_expect_not(tg_gradcheck(f_softplus, &wrong, in, 3, NULL, &r));
    tt_expect_error(TG_EINVAL, "tg_tensor_new: ndim -1 is outside 0..8");
    cr_expect_not(tg_gradcheck_ref(f_softplus, ref_softplus, &wrong, in, 3, NULL, &r, &rn));
    cr_expect(strstr(rn.message, "backward of softplus (node 1) overwrites its gradient"), "%s", rn.message);
    cr_expect_eq(tg_last_status(), TG_OK, "a failed check is a result, not an error: %s", tg_last_error());
    tape = tg_tape_new();
    L = f_softplus(tape, in, &wrong);
    tg_clear_error();
    cr_expect_not(tg_gradcheck_nodes(tape, L, NULL, &r));
    cr_expect(strstr(r.message, "backward of softplus (node 1) overwrites its gradient of input 0"), "%s", r.message);
    cr_expect_eq(r.node, 1);
    cr_expect_str_eq(r.op, "softplus");
    cr_expect_eq(tg_gradcheck_nodes_failed_index(), 1);
    cr_expect_str_eq(tg_gradcheck_nodes_failed_op(), "softplus");
    cr_expect_eq(tg_last_status(), TG_OK, "a failed check is a result, not an error: %s", tg_last_error());
    tg_tape_free(tape);
    inputs_free(in, 3);
}

/* A passing per-node check prints what it compared and where it came nearest to failing, not "none". */
Test(gradcheck, a_passing_per_node_check_prints_its_counts_and_nearest_entry) {
    tg_tensor *in[3] = {TT_RAND(TG_F64, 0, 1, 3, 2), TT_RAND(TG_F64, 1, 2, 2, 4), TT_RAND(TG_F64, 0, 3, 3, 4)};
    tg_tape *tape = tg_tape_new();
    tg_tensor *L = f_softplus(tape, in, NULL);
    tg_gradcheck_report r;
    cr_assert(tg_gradcheck_nodes(tape, L, NULL, &r), "%s", r.message);
    cr_expect_eq(r.node, -1);
    cr_expect(r.input >= 0 && r.index >= 0, "input %d index %lld", r.input, (long long)r.index);
    cr_expect(fabs(r.analytic - r.numeric) <= 1e-5 + 1e-3 * fabs(r.numeric), "%g vs %g", r.analytic, r.numeric);
    char *s = print_to_string(&r);
    cr_expect(strstr(s, "PASS"), "%s", s);
    cr_expect_null(strstr(s, "none"), "%s", s);
    cr_expect(strstr(s, "passed: 5 nodes checked, ") && strstr(s, " values compared"), "%s", s);
    char want[96];
    snprintf(want, sizeof want, "  nearest to tolerance: input %d, element %lld: ", r.input, (long long)r.index);
    cr_expect(strstr(s, want), "%s lacks %s", s, want);
    cr_expect(strstr(s, "; nearest to tolerance: %"), "%s", s);
    cr_expect(strstr(s, " <= tol "), "%s", s);
    free(s);
    tg_tape_free(tape);
    inputs_free(in, 3);
}

/* The proof that backwards add runs in the check's first backward pass only: a full-mode check of an op
   with 3 outputs makes two passes per row of the Jacobian, 6 calls of its backward and one more for the
   proof; fast mode makes two passes, 3 calls. (Proving in every pass made them 12 and 4.) */
static int64_t counted_calls;
static tg_status counted_backward(tg_tensor *const *in, int n, tg_tensor *out, tg_tensor *gout, void *const *grads,
                                  void *user) {
    counted_calls++;
    return softplus_backward(in, n, out, gout, grads, user);
}
static const tg_op_def COUNTED = {.name = "softplus", .shape = tt_same_shape, .forward = softplus_forward, .backward = counted_backward};
static tg_tensor *f_counted(tg_tape *t, tg_tensor *const *in, void *ctx) {
    tg_tensor *x = in[0];
    return tg_custom(t, &COUNTED, &x, 1, ctx);
}

Test(gradcheck, the_proof_that_backwards_add_runs_in_the_first_pass_only) {
    tg_tensor *x = TT_RAND(TG_F64, 1, 5, 3);
    tg_gradcheck_report r;
    counted_calls = 0;
    cr_expect(tg_gradcheck(f_counted, NULL, &x, 1, NULL, &r), "%s", r.message);
    cr_expect_eq(counted_calls, 7);
    tg_gradcheck_opts o = tg_gradcheck_defaults();
    o.fast = 1;
    counted_calls = 0;
    cr_expect(tg_gradcheck(f_counted, NULL, &x, 1, &o, &r), "%s", r.message);
    cr_expect_eq(counted_calls, 3);
    int wrong = 1; /* and the proof still fails an overwriting backward used once */
    cr_expect_not(tg_gradcheck(f_counted, &wrong, &x, 1, NULL, &r));
    cr_expect(strstr(r.message, "backward of softplus (node 0) overwrites its gradient of input 0"), "%s", r.message);
    cr_expect_eq(tg_last_status(), TG_OK, "a failed check is a result, not an error: %s", tg_last_error());
    tg_tensor_free(x);
}

/* A wrong value in one op of a chain: the whole-function check says input and element, the per-node check
   names the node, and the recording's own backward is as it would have been. */
static tg_status softplus_backward_off(tg_tensor *const *in, int n, tg_tensor *out, tg_tensor *gout,
                                       void *const *grads, void *user) {
    tg_status s = softplus_backward(in, n, out, gout, grads, user);
    if (grads[0]) ((double *)grads[0])[3] += 0.5 * tg_tensor_get(gout, 3);
    return s;
}
static const tg_op_def SOFTPLUS_OFF = {.name = "softplus", .shape = tt_same_shape, .forward = softplus_forward,
    .backward = softplus_backward_off};
static tg_tensor *f_chain(tg_tape *t, tg_tensor *const *in, void *ctx) {
    tg_tensor *h = tg_add(t, tg_matmul(t, in[0], in[1]), in[2]);             /* %0 %1 */
    tg_tensor *a = tg_tanh(t, tg_scale(t, h, 0.5));                          /* %2 %3 */
    tg_tensor *s = tg_custom(t, ctx ? &SOFTPLUS_OFF : &SOFTPLUS, &a, 1, NULL); /* %4 */
    tg_tensor *z = tg_mul(t, tg_sub(t, s, a), h);                            /* %5 %6 */
    return tg_mean(t, tg_tanh(t, tg_add(t, z, tg_sum(t, a))));              /* %7 %8 %9 %10 */
}

Test(gradcheck, the_per_node_check_names_the_wrong_node) {
    tg_tensor *in[3] = {TT_RAND(TG_F64, 1, 1, 2, 3), TT_RAND(TG_F64, 1, 2, 3, 4), TT_RAND(TG_F64, 1, 3, 4)};
    tg_gradcheck_report r;
    int off = 1;
    cr_expect_not(tg_gradcheck(f_chain, &off, in, 3, NULL, &r));
    cr_expect(strstr(r.message, "tg_gradcheck_nodes on one recording of f names the op"), "%s", r.message);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    tg_gradcheck_print(&r, f);
    fclose(f);
    cr_expect(strstr(buf, "FAIL"), "%s", buf);
    free(buf);

    tg_tape *tape = tg_tape_new();
    tg_tensor *L = f_chain(tape, in, &off);
    cr_assert(L && tg_tape_size(tape) == 11, "%lld nodes", (long long)tg_tape_size(tape));
    cr_expect_not(tg_gradcheck_nodes(tape, L, NULL, &r));
    cr_expect_eq(r.node, 4);
    cr_expect(strstr(r.message, "%4 softplus: input 0 element 3"), "%s", r.message);
    cr_expect(strstr(r.message, "analytic") && strstr(r.message, "vs numeric"), "%s", r.message);
    cr_expect_eq(r.input, 0);
    cr_expect_eq(r.index, 3);
    cr_expect(fabs(r.analytic - r.numeric) > 0.01);
    buf = NULL;
    f = open_memstream(&buf, &len);
    tg_gradcheck_print(&r, f);
    fclose(f);
    cr_expect(strstr(buf, "node: %4 softplus"), "%s", buf);
    cr_expect_null(strstr(buf, "next:"), "%s", buf);
    free(buf);
    /* the recording is as it was: its backward gives what a fresh recording's does */
    cr_assert_eq(tg_backward(tape, L, NULL), TG_OK, "%s", tg_last_error());
    double after[6];
    memcpy(after, tg_tensor_grad(in[0]), sizeof after);
    tg_tape_reset(tape);
    for (int i = 0; i < 3; i++) tg_zero_grad(in[i]);
    L = f_chain(tape, in, &off);
    cr_assert_eq(tg_backward(tape, L, NULL), TG_OK);
    cr_expect(!memcmp(after, tg_tensor_grad(in[0]), sizeof after));
    /* with the right softplus every node passes */
    tg_tape_reset(tape);
    L = f_chain(tape, in, NULL);
    cr_expect(tg_gradcheck_nodes(tape, L, NULL, &r), "%s", r.message);
    cr_expect(strstr(r.message, "passed: 11 nodes checked"), "%s", r.message);
    /* up to and including out's node only: the wrong softplus comes after h */
    tg_tape_reset(tape);
    tg_tensor *h = tg_add(tape, tg_matmul(tape, in[0], in[1]), in[2]);
    cr_assert(tg_custom(tape, &SOFTPLUS_OFF, &h, 1, NULL));
    cr_expect(tg_gradcheck_nodes(tape, h, NULL, &r), "%s", r.message);
    cr_expect(strstr(r.message, "passed: 2 nodes checked"), "%s", r.message);
    tg_tape_free(tape);
    inputs_free(in, 3);
}

Test(gradcheck, the_per_node_check_in_f32_and_its_errors) {
    tg_tensor *in[3] = {TT_RAND(TG_F32, 1, 1, 2, 3), TT_RAND(TG_F32, 1, 2, 3, 4), TT_RAND(TG_F32, 1, 3, 4)};
    tg_tape *tape = tg_tape_new(), *other = tg_tape_new();
    tg_tensor *L = f_chain(tape, in, NULL);
    tg_gradcheck_report r;
    tg_clear_error();
    cr_expect_not(tg_gradcheck_nodes(tape, L, NULL, &r));
    tt_expect_error(TG_EDTYPE, "tg_gradcheck_nodes: node 0 (matmul) is f32; opt in with opts = "
                    "tg_gradcheck_defaults_f32()");
    tg_gradcheck_opts o = tg_gradcheck_defaults_f32();
    cr_expect(tg_gradcheck_nodes(tape, L, &o, &r), "%s", r.message);
    cr_expect_not(tg_gradcheck_nodes(NULL, L, NULL, &r));
    tt_expect_error(TG_EINVAL, "tg_gradcheck_nodes: tape is NULL");
    cr_expect_not(tg_gradcheck_nodes(tape, NULL, NULL, NULL));
    tt_expect_error(TG_EINVAL, "tg_gradcheck_nodes: out is NULL");
    cr_expect_not(tg_gradcheck_nodes(other, L, NULL, &r));
    tt_expect_error(TG_EINVAL, "tg_gradcheck_nodes: out was recorded on another tape");
    cr_expect_not(tg_gradcheck_nodes(tape, in[0], NULL, &r));
    tt_expect_error(TG_EINVAL, "tg_gradcheck_nodes: out is not the output of a recorded node");
    o.eps = 0;
    cr_expect_not(tg_gradcheck_nodes(tape, L, &o, &r));
    tt_expect_error(TG_EINVAL, "tg_gradcheck_nodes: opts->eps 0");
    cr_expect_str_eq(r.message, "opts->eps 0, atol 0.001 and rtol 0.01 must be finite, eps > 0");
    tg_tape_reset(tape);
    cr_expect_not(tg_gradcheck_nodes(tape, L, NULL, &r));
    tt_expect_error(TG_ESTATE, "tg_gradcheck_nodes: out is an output of a recording that tg_tape_reset ended");
    tg_tape_free(tape), tg_tape_free(other);
    inputs_free(in, 3);
}

/* The documented defaults, pinned: torch.autograd.gradcheck's for f64, and the f32 set the headers and
   the f32 refusal's message quote. */
Test(gradcheck, the_defaults_are_the_documented_values) {
    tg_gradcheck_opts d = tg_gradcheck_defaults(), f = tg_gradcheck_defaults_f32();
    cr_expect(d.eps == 1e-6 && d.atol == 1e-5 && d.rtol == 1e-3 && d.fast == 0 && d.allow_f32 == 0 && d.seed == 0,
              "f64: eps %g atol %g rtol %g fast %d allow_f32 %d seed %llu", d.eps, d.atol, d.rtol, d.fast,
              d.allow_f32, (unsigned long long)d.seed);
    cr_expect(f.eps == 1e-3 && f.atol == 1e-3 && f.rtol == 1e-2 && f.fast == 0 && f.allow_f32 == 1 && f.seed == 0,
              "f32: eps %g atol %g rtol %g fast %d allow_f32 %d seed %llu", f.eps, f.atol, f.rtol, f.fast,
              f.allow_f32, (unsigned long long)f.seed);
}
