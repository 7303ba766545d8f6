/* Gradient checks: the tape's gradients against central differences and, optionally, against a
 * hand-derived backward. Only the public API of the tape is used, so the check exercises exactly what
 * a user's training loop does.
 *
 * One engine serves tg_gradcheck and tg_gradcheck_ref (the former is the latter with no reference).
 * The analytic phase runs first (it is cheap and catches a non-reentrant backward or a wrong
 * reference before the costly finite differences); the numeric phase then perturbs the inputs in
 * place, because f may reach the caller's leaves through ctx rather than through its inputs array.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "check_internal.h"


/* Where a failed whole-function check points next. */
#define NEXT_STEP "tg_gradcheck_nodes on one recording of f names the op whose backward is wrong"


static tg_tensor *param(const gc *g, int i) { return g->in[g->pidx[i]]; }

static const char *at_str(at w, char *buf, size_t size) {
    if (w.phase == AT_PROBE) snprintf(buf, size, "on its first call");
    else if (w.phase == AT_BACKWARD && w.index >= 0)
        snprintf(buf, size, "for the backward of output element %lld", (long long)w.index);
    else if (w.phase == AT_BACKWARD) snprintf(buf, size, "for the backward of the random grad_out v");
    else if (w.index >= 0)
        snprintf(buf, size, "at input %d element %lld %c eps", w.input, (long long)w.index,
                 w.sign > 0 ? '+' : '-');
    else snprintf(buf, size, "at input %d %c eps*u", w.input, w.sign > 0 ? '+' : '-');
    return buf;
}

static void shape_desc(char *buf, size_t size, tg_dtype dt, int ndim, const int64_t *shape) {
    char s[TG__SHAPE_STR];
    snprintf(buf, size, "%s %s", tg__dtype_name(dt), tg__shape_str(ndim, shape, s));
}

/* One call of f on a fresh recording. Its output must keep the dtype and shape of the first call:
   the buffers are sized by it. NULL after aborting. */
static tg_tensor *call_f(gc *g, at w) {
    char b[96];
    tg_tape_reset(g->tape);
    tg_tensor *out = g->f(g->tape, g->in, g->ctx);
    if (!out) {
        if (tg_last_status() == TG_OK)
            tg__gc_abort(g, TG_EINVAL, "f returned NULL %s without setting an error", at_str(w, b, sizeof b));
        else tg__gc_abort(g, TG_OK, "f failed %s: %s", at_str(w, b, sizeof b), tg_last_error());
        return NULL;
    }
    tg_dtype dt = tg_tensor_dtype(out);
    int ndim = tg_tensor_ndim(out);
    const int64_t *shape = tg_tensor_shape(out);
    if (g->m < 0) {
        g->odtype = dt;
        g->ondim = ndim;
        if (ndim) memcpy(g->oshape, shape, (size_t)ndim * sizeof *shape);
        g->m = tg_tensor_numel(out);
    } else if (dt != g->odtype || ndim != g->ondim ||
               (ndim && memcmp(shape, g->oshape, (size_t)ndim * sizeof *shape) != 0)) {
        char now[TG__SHAPE_STR + 8], first[TG__SHAPE_STR + 8];
        shape_desc(now, sizeof now, dt, ndim, shape);
        shape_desc(first, sizeof first, g->odtype, g->ondim, g->oshape);
        tg__gc_abort(g, TG_ESHAPE, "f returned a %s output %s but a %s one on its first call; f must compute "
                 "the same function on every call", now, at_str(w, b, sizeof b), first);
        return NULL;
    }
    return out;
}

/* f's output values into buf (m doubles). */
static int eval_into(gc *g, at w, double *buf) {
    tg_tensor *out = call_f(g, w);
    if (!out) return 0;
    const void *d = tg_tensor_data(out);
    for (int64_t j = 0; j < g->m; j++) buf[j] = ld(d, g->odtype, j);
    return 1;
}

/* One recording and one backward of g->gout. *needs is 0 when f's output depends on no param: its
   Jacobian is zero and tg_backward, which refuses such an output, is not called. */
static int backward_once(gc *g, at w, int *needs) {
    char b[96];
    tg_tensor *out = call_f(g, w);
    if (!out) return 0;
    *needs = tg_tensor_requires_grad(out) && g->m > 0;
    if (!*needs) return 1;
    for (int i = 0; i < g->np; i++) tg_zero_grad(param(g, i));
    tg__error err;
    tg__error_save(&err);
    tg_status s = tg_backward(g->tape, out, g->gout);
    if (s != TG_OK && tg__overwrite_error()) { /* the check's own proof failed: a result, the error stays the caller's */
        char m[sizeof g->msg];
        snprintf(m, sizeof m, "%s", tg_last_error());
        tg__error_restore(&err);
        return tg__gc_abort(g, TG_OK, "%s", m);
    }
    if (s != TG_OK)
        return tg__gc_abort(g, TG_OK, "tg_backward failed %s (%s): %s", at_str(w, b, sizeof b),
                        tg_status_name(s), tg_last_error());
    return 1;
}

/* The params' gradients for grad_out g->gout into row (N doubles), from two recordings and two
   backward passes that must agree exactly: a backward reading state other than its node's (a static,
   uninitialised memory, a stale buffer) shows up as a difference. */
static int analytic(gc *g, at w, double *row) {
    int needs;
    if (!backward_once(g, w, &needs)) return 0;
    if (!needs) {
        for (int64_t c = 0; c < g->N; c++) row[c] = 0.0;
        return 1;
    }
    for (int i = 0; i < g->np; i++) {
        tg_tensor *x = param(g, i);
        const void *gr = tg_tensor_grad(x);
        for (int64_t k = 0; k < tg_tensor_numel(x); k++) row[g->off[i] + k] = ld(gr, tg_tensor_dtype(x), k);
    }
    /* The check's first backward has proven that every node's backward adds (each recording has the same
       nodes, every one of them run in every pass); the others hand over fresh buffers as training does,
       so that both ways of writing a gradient meet the finite differences. */
    tg__tape_check_accumulate(g->tape, 0);
    if (!backward_once(g, w, &needs)) return 0;
    if (!needs) return tg__gc_abort(g, TG_OK, "f's output needed a gradient on one call and not on the next");
    for (int i = 0; i < g->np; i++) {
        tg_tensor *x = param(g, i);
        const void *gr = tg_tensor_grad(x);
        for (int64_t k = 0; k < tg_tensor_numel(x); k++) {
            double first = row[g->off[i] + k], second = ld(gr, tg_tensor_dtype(x), k);
            if (first == second || (isnan(first) && isnan(second))) continue;
            char loc[128];
            tg__where_str(loc, sizeof loc, g->pidx[i], k, w.index);
            g->ab_loc = 1;
            g->ab_input = g->pidx[i];
            g->ab_index = k;
            g->ab_a = first;
            g->ab_n = second;
            return tg__gc_abort(g, TG_OK, "backward is not reentrant: %s is %.17g after one backward and %.17g "
                            "after another with the same grad_out; it reads state other than its node's "
                            "(a static, uninitialised or stale memory?)", loc, first, second);
        }
    }
    return 1;
}

/* ref's gradients for g->gout against the tape's (row). ref's buffers are filled with NaN first, so an
   element it forgets to write fails the comparison instead of passing as a leftover value. */
static int check_ref(gc *g, at w, const double *row) {
    char b[96];
    for (int i = 0; i < g->np; i++) {
        tg_tensor *r = g->rgrad[g->pidx[i]];
        for (int64_t k = 0; k < tg_tensor_numel(r); k++) st(tg_tensor_data(r), tg_tensor_dtype(r), k, NAN);
    }
    tg_status s = g->ref(g->in, g->gout, g->rgrad, g->ctx);
    if (s != TG_OK)
        return tg__gc_abort(g, s, "the reference failed %s with %s: %s", at_str(w, b, sizeof b),
                        tg_status_name(s), tg_last_status() != TG_OK ? tg_last_error() : "(no message)");
    for (int i = 0; i < g->np; i++) {
        tg_tensor *r = g->rgrad[g->pidx[i]];
        const void *d = tg_tensor_data(r);
        for (int64_t k = 0; k < tg_tensor_numel(r); k++)
            tg__acc_add(&g->vref, &g->o, row[g->off[i] + k], ld(d, tg_tensor_dtype(r), k), g->pidx[i], k,
                    w.index);
    }
    return 1;
}

/* ---- the two modes ---- */

/* Full mode: row j of the Jacobian from a one-hot grad_out; then column k of it from f at x[k] +- eps. */
static int run_full(gc *g) {
    double eps = g->o.eps;
    void *gd = tg_tensor_data(g->gout);
    for (int64_t j = 0; j < g->m; j++) {
        at w = {AT_BACKWARD, -1, j, 0};
        st(gd, g->odtype, j, 1.0);
        int ok = analytic(g, w, g->jac + j * g->N) && (!g->ref || check_ref(g, w, g->jac + j * g->N));
        st(gd, g->odtype, j, 0.0);
        if (!ok) return 0;
    }
    if (g->m == 0) return 1;
    /* The differences need no recording: f runs with gradients off, so its ops record no nodes. */
    tg_tape_set_checks(g->tape, 0);
    tg_tape_set_grad_enabled(g->tape, 0);
    for (int i = 0; i < g->np; i++) {
        tg_tensor *x = param(g, i);
        tg_dtype dt = tg_tensor_dtype(x);
        void *xd = tg_tensor_data(x);
        for (int64_t k = 0; k < tg_tensor_numel(x); k++) {
            at wp = {AT_NUMERIC, g->pidx[i], k, 1}, wm = {AT_NUMERIC, g->pidx[i], k, -1};
            /* orig came from the element, so writing it back restores the exact bits (f32 included). */
            double orig = ld(xd, dt, k);
            st(xd, dt, k, orig + eps);
            int ok = eval_into(g, wp, g->plus);
            st(xd, dt, k, orig);
            if (!ok) return 0;
            st(xd, dt, k, orig - eps);
            ok = eval_into(g, wm, g->minus);
            st(xd, dt, k, orig);
            if (!ok) return 0;
            for (int64_t j = 0; j < g->m; j++)
                tg__acc_add(&g->num, &g->o, g->jac[j * g->N + g->off[i] + k],
                        (g->plus[j] - g->minus[j]) / (2 * eps), g->pidx[i], k, j);
        }
    }
    return 1;
}

/* x_i = x0_i + sign eps u_i, f's output into buf, x_i = x0_i again (also when f fails). */
static int eval_along_u(gc *g, int i, int sign, double *buf) {
    tg_tensor *x = param(g, i);
    tg_dtype dt = tg_tensor_dtype(x);
    void *xd = tg_tensor_data(x);
    const double *x0 = g->x0 + g->off[i], *u = (const double *)tg_tensor_data(g->u) + g->off[i];
    int64_t n = tg_tensor_numel(x);
    for (int64_t k = 0; k < n; k++) st(xd, dt, k, x0[k] + sign * g->o.eps * u[k]);
    at w = {AT_NUMERIC, g->pidx[i], -1, sign};
    int ok = eval_into(g, w, buf);
    for (int64_t k = 0; k < n; k++) st(xd, dt, k, x0[k]);
    return ok;
}

/* Fast mode: one backward for a random v gives every param's v^T J; for each param i, its projection
   on a random u_i is compared with v^T (f(x + eps u_i) - f(x - eps u_i)) / (2 eps). */
static int run_fast(gc *g) {
    uint64_t seed = g->o.seed;
    if (tg_tensor_fill_uniform(g->gout, -1.0, 1.0, &seed) != TG_OK ||
        tg_tensor_fill_uniform(g->u, -1.0, 1.0, &seed) != TG_OK)
        return tg__gc_abort(g, TG_OK, "drawing random vectors failed: %s", tg_last_error());
    at w = {AT_BACKWARD, -1, -1, 0};
    if (!analytic(g, w, g->jac) || (g->ref && !check_ref(g, w, g->jac))) return 0;
    for (int i = 0; i < g->np; i++) {
        tg_tensor *x = param(g, i);
        const void *xd = tg_tensor_data(x);
        for (int64_t k = 0; k < tg_tensor_numel(x); k++) g->x0[g->off[i] + k] = ld(xd, tg_tensor_dtype(x), k);
    }
    tg_tape_set_checks(g->tape, 0);
    tg_tape_set_grad_enabled(g->tape, 0);
    const void *v = tg_tensor_data(g->gout);
    const double *u = tg_tensor_data(g->u);
    for (int i = 0; i < g->np; i++) {
        if (!eval_along_u(g, i, 1, g->plus) || !eval_along_u(g, i, -1, g->minus)) return 0;
        double a = 0.0, n = 0.0;
        for (int64_t c = g->off[i]; c < g->off[i + 1]; c++) a += u[c] * g->jac[c];
        for (int64_t j = 0; j < g->m; j++) n += ld(v, g->odtype, j) * (g->plus[j] - g->minus[j]);
        tg__acc_add(&g->num, &g->o, a, n / (2 * g->o.eps), g->pidx[i], -1, -1);
    }
    return 1;
}

/* ---- arguments, buffers, reports ---- */

static int validate(gc *g) {
    const tg_gradcheck_opts *o = &g->o;
    if (!g->f) return tg__gc_abort(g, TG_EINVAL, "f is NULL");
    if (g->with_ref && !g->ref)
        return tg__gc_abort(g, TG_EINVAL, "ref is NULL (tg_gradcheck checks without a reference)");
    if (!g->in) return tg__gc_abort(g, TG_EINVAL, "inputs is NULL");
    if (g->n_in < 1) return tg__gc_abort(g, TG_EINVAL, "n_inputs is %d; need at least 1", g->n_in);
    for (int i = 0; i < g->n_in; i++)
        if (!g->in[i]) {
            /* As everywhere in tapegrad, a NULL from an earlier failure keeps that failure's message. */
            if (tg_last_status() != TG_OK)
                return tg__gc_abort(g, TG_OK, "inputs[%d] is NULL: %s", i, tg_last_error());
            return tg__gc_abort(g, TG_EINVAL, "inputs[%d] is NULL", i);
        }
    for (int i = 0; i < g->n_in; i++) {
        char what[32];
        snprintf(what, sizeof what, "inputs[%d]", i);
        if (tg__stale(g->fn, what, g->in[i])) /* its message is the thread's; the report repeats it */
            return tg__gc_abort(g, TG_OK, "%s is an output of a recording that tg_tape_reset ended", what);
    }
    if (!(o->eps > 0 && isfinite(o->eps)))
        return tg__gc_abort(g, TG_EINVAL, "opts->eps is %g; need a finite step > 0", o->eps);
    if (!(o->atol >= 0 && isfinite(o->atol) && o->rtol >= 0 && isfinite(o->rtol)))
        return tg__gc_abort(g, TG_EINVAL, "opts->atol %g and rtol %g must be finite and >= 0", o->atol, o->rtol);
    for (int i = 0; i < g->n_in; i++)
        if (tg_tensor_dtype(g->in[i]) == TG_F32 && !o->allow_f32)
            return tg__gc_abort(g, TG_EDTYPE, "input %d is f32, whose finite differences are too coarse for the "
                            "f64 tolerances; opt in with opts = tg_gradcheck_defaults_f32() (eps 1e-3, atol "
                            "1e-3, rtol 1e-2), or check in f64", i);
    g->np = 0;
    for (int i = 0; i < g->n_in; i++) {
        if (!tg_tensor_requires_grad(g->in[i])) continue;
        if (!tg_tensor_grad(g->in[i]))
            return tg__gc_abort(g, TG_EINVAL, "input %d needs a gradient but has none of its own (an op "
                            "output?); pass the leaves f is built from, made with tg_param_new", i);
        g->np++;
    }
    if (g->np == 0)
        return tg__gc_abort(g, TG_EINVAL, "no input needs a gradient, so there is nothing to check; make the "
                        "inputs to check with tg_param_new");
    return 1;
}

/* An array of n elements of the given size, or an abort with TG_ENOMEM (n * size overflowing too). */
static void *gc_alloc(gc *g, int64_t n, size_t size, const char *what) {
    void *p = n >= 0 && (uint64_t)n <= (SIZE_MAX / 2) / size ? tg__malloc((size_t)n * size) : NULL;
    if (!p) tg__gc_abort(g, TG_ENOMEM, "out of memory for %s (%lld values)%s", what, (long long)n,
                     g->o.fast ? "" : "; fast mode (opts.fast = 1) needs no Jacobian");
    return p;
}

static int setup_params(gc *g) {
    if (!(g->pidx = gc_alloc(g, g->np, sizeof *g->pidx, "the list of inputs")) ||
        !(g->off = gc_alloc(g, g->np + 1, sizeof *g->off, "the list of inputs")))
        return 0;
    g->N = 0;
    for (int i = 0, p = 0; i < g->n_in; i++) {
        if (!tg_tensor_requires_grad(g->in[i])) continue;
        g->pidx[p] = i;
        g->off[p++] = g->N;
        g->N += tg_tensor_numel(g->in[i]);
    }
    g->off[g->np] = g->N;
    if (!(g->saved = gc_alloc(g, g->N, sizeof *g->saved, "the saved gradients"))) return 0;
    for (int i = 0; i < g->np; i++) {
        tg_tensor *x = param(g, i);
        const void *gr = tg_tensor_grad(x);
        for (int64_t k = 0; k < tg_tensor_numel(x); k++)
            g->saved[g->off[i] + k] = ld(gr, tg_tensor_dtype(x), k);
    }
    g->saved_ok = 1;
    return 1;
}

static int setup_buffers(gc *g) {
    if (!(g->gout = tg_tensor_new(g->odtype, g->ondim, g->oshape)))
        return tg__gc_abort(g, TG_OK, "could not make grad_out: %s", tg_last_error());
    if (!(g->plus = gc_alloc(g, g->m, sizeof(double), "f's outputs")) ||
        !(g->minus = gc_alloc(g, g->m, sizeof(double), "f's outputs")))
        return 0;
    if (g->o.fast) {
        if (!(g->jac = gc_alloc(g, g->N, sizeof(double), "the gradients")) ||
            !(g->x0 = gc_alloc(g, g->N, sizeof(double), "the inputs' values")))
            return 0;
        int64_t n = g->N;
        if (!(g->u = tg_tensor_new(TG_F64, 1, &n)))
            return tg__gc_abort(g, TG_OK, "could not make u: %s", tg_last_error());
    } else {
        if (g->m > 0 && g->N > INT64_MAX / g->m)
            return tg__gc_abort(g, TG_ENOMEM, "the Jacobian is too large to index");
        if (!(g->jac = gc_alloc(g, g->m * g->N, sizeof(double), "the Jacobian"))) return 0;
    }
    if (g->ref) {
        if (!(g->rgrad = gc_alloc(g, g->n_in, sizeof *g->rgrad, "the reference's gradients"))) return 0;
        for (int i = 0; i < g->n_in; i++) g->rgrad[i] = NULL;
        for (int i = 0; i < g->np; i++) {
            tg_tensor *x = param(g, i);
            if (!(g->rgrad[g->pidx[i]] =
                      tg_tensor_new(tg_tensor_dtype(x), tg_tensor_ndim(x), tg_tensor_shape(x))))
                return tg__gc_abort(g, TG_OK, "could not make the reference's gradients: %s", tg_last_error());
        }
    }
    return 1;
}

static void teardown(gc *g) {
    if (g->saved_ok)
        for (int i = 0; i < g->np; i++) {
            tg_tensor *x = param(g, i);
            void *gr = tg_tensor_grad(x);
            for (int64_t k = 0; k < tg_tensor_numel(x); k++)
                st(gr, tg_tensor_dtype(x), k, g->saved[g->off[i] + k]);
        }
    tg_tape_free(g->tape);
    if (g->rgrad)
        for (int i = 0; i < g->n_in; i++) tg_tensor_free(g->rgrad[i]);
    tg__free(g->rgrad);
    tg_tensor_free(g->gout);
    tg_tensor_free(g->u);
    tg__free(g->x0);
    tg__free(g->jac);
    tg__free(g->minus);
    tg__free(g->plus);
    tg__free(g->saved);
    tg__free(g->off);
    tg__free(g->pidx);
}

static int fill_report(const gc *g, const acc *c, int vs_ref, tg_gradcheck_report *r) {
    /* Nothing compared (every input or the output empty) is not a pass: the check never skips silently. */
    int passed = !g->aborted && c->n_bad == 0 && c->count > 0;
    if (!r) return passed;
    r->passed = passed;
    r->node = -1;
    r->op[0] = '\0';
    r->input = c->input;
    r->index = c->index;
    r->analytic = c->a;
    r->numeric = c->n;
    r->max_abs_err = c->max_abs;
    r->max_rel_err = c->max_rel;
    if (g->aborted) {
        if (g->ab_loc) {
            r->input = g->ab_input;
            r->index = g->ab_index;
            r->analytic = g->ab_a;
            r->numeric = g->ab_n;
        }
        snprintf(r->message, sizeof r->message, "%s", g->msg);
    } else if (c->count == 0) {
        snprintf(r->message, sizeof r->message, "nothing to compare: the output or every input that needs a "
                 "gradient is empty");
    } else if (!passed) {
        char loc[128];
        tg__where_str(loc, sizeof loc, c->input, c->index, c->out_index);
        const char *an = vs_ref ? "tape" : "analytic", *nn = vs_ref ? "reference" : "numeric";
        if (isfinite(c->a) && isfinite(c->n))
            snprintf(r->message, sizeof r->message, "%s: %s %.10g vs %s %.10g, |diff| %.3g > tol %.3g "
                     "(%lld of %lld values out of tolerance)", loc, an, c->a, nn, c->n, c->err, c->tol,
                     (long long)c->n_bad, (long long)c->count);
        else
            snprintf(r->message, sizeof r->message, "%s: %s %.10g vs %s %.10g, not finite (%lld of %lld "
                     "values out of tolerance)", loc, an, c->a, nn, c->n, (long long)c->n_bad,
                     (long long)c->count);
        size_t len = strlen(r->message);
        if (!vs_ref) snprintf(r->message + len, sizeof r->message - len, "; %s", NEXT_STEP);
    } else {
        snprintf(r->message, sizeof r->message, "passed%s: %d of %d inputs checked, %lld values compared (%s "
                 "mode), max abs err %.2g, max rel err %.2g", vs_ref ? " against the reference" : "", g->np,
                 g->n_in, (long long)c->count, g->o.fast ? "fast" : "full", c->max_abs, c->max_rel);
    }
    return passed;
}

/* tg_gradcheck is this without a reference (fn "tg_gradcheck"); tg_gradcheck_ref is this with one. */
static int gradcheck(const char *fn, int with_ref, tg_fn f, tg_ref_fn ref, void *ctx,
                     tg_tensor *const *inputs, int n_inputs, const tg_gradcheck_opts *opts,
                     tg_gradcheck_report *vs_ref, tg_gradcheck_report *vs_numeric) {
    gc g;
    memset(&g, 0, sizeof g);
    g.fn = fn;
    g.f = f;
    g.ref = ref;
    g.with_ref = with_ref;
    g.ctx = ctx;
    g.in = inputs;
    g.n_in = n_inputs;
    g.o = opts ? *opts : tg_gradcheck_defaults();
    g.m = -1;
    tg__acc_init(&g.num);
    tg__acc_init(&g.vref);
    if (validate(&g) && setup_params(&g)) {
        if (!(g.tape = tg_tape_new())) tg__gc_abort(&g, TG_ENOMEM, "out of memory for its tape");
        else {
            tg__tape_check_accumulate(g.tape, 1); /* a backward that assigns fails even when used once */
            if (call_f(&g, (at){AT_PROBE, -1, -1, 0}) && setup_buffers(&g)) {
                if (g.o.fast) run_fast(&g);
                else run_full(&g);
            }
        }
    }
    teardown(&g);
    int ok = fill_report(&g, &g.num, 0, vs_numeric);
    if (g.with_ref) ok = fill_report(&g, &g.vref, 1, vs_ref) && ok;
    return ok;
}

int tg_gradcheck(tg_fn f, void *ctx, tg_tensor *const *inputs, int n_inputs, const tg_gradcheck_opts *opts,
                 tg_gradcheck_report *report) {
    return gradcheck("tg_gradcheck", 0, f, NULL, ctx, inputs, n_inputs, opts, NULL, report);
}

int tg_gradcheck_ref(tg_fn f, tg_ref_fn ref, void *ctx, tg_tensor *const *inputs, int n_inputs,
                     const tg_gradcheck_opts *opts, tg_gradcheck_report *vs_ref,
                     tg_gradcheck_report *vs_numeric) {
    return gradcheck("tg_gradcheck_ref", 1, f, ref, ctx, inputs, n_inputs, opts, vs_ref, vs_numeric);
}

