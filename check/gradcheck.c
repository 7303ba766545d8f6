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
#include "tg_gradcheck.h"
#include "tg_internal.h"

/* Relative errors divide by max(|numeric|, REL_FLOOR): an exactly zero derivative (an element no
   output depends on) must not turn roundoff of 1e-17 into an infinite relative error. */
#define REL_FLOOR 1e-12

/* Where a failed whole-function check points next. */
#define NEXT_STEP "tg_gradcheck_nodes on one recording of f names the op whose backward is wrong"

tg_gradcheck_opts tg_gradcheck_defaults(void) {
    tg_gradcheck_opts o = {.eps = 1e-6, .atol = 1e-5, .rtol = 1e-3, .fast = 0, .allow_f32 = 0, .seed = 0};
    return o;
}

tg_gradcheck_opts tg_gradcheck_defaults_f32(void) {
    tg_gradcheck_opts o = {.eps = 1e-3, .atol = 1e-3, .rtol = 1e-2, .fast = 0, .allow_f32 = 1, .seed = 0};
    return o;
}

/* ---- comparing values ---- */

/* Every compared pair passes through one accumulator: the worst entry is the one with the largest
   err / tol, the one that most exceeds its tolerance or, when all pass, comes nearest to it (a ratio
   rather than a difference, so that exact zeros never rank above a real small error). */
typedef struct {
    int64_t count, n_bad;
    int input;          /* worst entry: input index, element (-1: a projection), output element */
    int64_t index, out_index;
    double a, n, err, tol, excess;
    double max_abs, max_rel;
} acc;

static void acc_init(acc *c) {
    memset(c, 0, sizeof *c);
    c->input = -1;
    c->index = c->out_index = -1;
    c->a = c->n = NAN;
    c->excess = -INFINITY;
}

static void acc_add(acc *c, const tg_gradcheck_opts *o, double a, double n, int input, int64_t index,
                    int64_t out_index) {
    double err = fabs(a - n), tol = o->atol + o->rtol * fabs(n);
    double rel = err / fmax(fabs(n), REL_FLOOR);
    /* Written so that NaN or Inf on either side fails: comparisons with NaN are false, and an Inf
       numeric value would make the tolerance infinite. */
    int bad = !(isfinite(a) && isfinite(n) && err <= tol);
    double excess = bad && !(err > tol) ? INFINITY : err / tol;
    c->count++;
    c->n_bad += bad;
    if (!isnan(c->max_abs) && (isnan(err) || err > c->max_abs)) c->max_abs = err;
    if (!isnan(c->max_rel) && (isnan(rel) || rel > c->max_rel)) c->max_rel = rel;
    if (c->input < 0 || excess > c->excess) {
        c->input = input;
        c->index = index;
        c->out_index = out_index;
        c->a = a;
        c->n = n;
        c->err = err;
        c->tol = tol;
        c->excess = excess;
    }
}

/* "input 1 element 4 (output element 2)", or the fast-mode forms. */
static void where_str(char *buf, size_t size, int input, int64_t index, int64_t out_index) {
    if (index < 0) snprintf(buf, size, "input %d (projection v^T J u)", input);
    else if (out_index < 0)
        snprintf(buf, size, "input %d element %lld (random grad_out v)", input, (long long)index);
    else
        snprintf(buf, size, "input %d element %lld (output element %lld)", input, (long long)index,
                 (long long)out_index);
}

/* ---- the engine's state ---- */

typedef enum { AT_PROBE, AT_BACKWARD, AT_NUMERIC } at_phase;

/* Which call of f this is, described only when something fails. */
typedef struct {
    at_phase phase;
    int input;
    int64_t index; /* backward: output element (-1: v); numeric: input element (-1: along u) */
    int sign;
} at;

typedef struct {
    const char *fn; /* the public function, for messages */
    tg_fn f;
    tg_ref_fn ref;
    int with_ref; /* tg_gradcheck_ref: ref must be given, and vs_ref is reported */
    void *ctx;
    tg_tensor *const *in;
    int n_in;
    tg_gradcheck_opts o;

    int np;       /* inputs that need a gradient: "params" */
    int *pidx;    /* their indices in in[] */
    int64_t *off; /* np + 1 offsets of each param's elements in the flat vector of all of them */
    int64_t N;

    tg_dtype odtype; /* f's output as its first call returned it; m < 0 before that call */
    int ondim;
    int64_t oshape[TG_MAX_DIMS];
    int64_t m;

    tg_tape *tape;
    double *saved;        /* the params' gradients on entry, restored on exit (f32 round-trips exactly) */
    int saved_ok;
    double *jac;          /* full: m x N analytic Jacobian, row-major; fast: the N gradients for v */
    double *x0;           /* fast: the params' values on entry */
    tg_tensor *u;         /* fast: the random directions, (N,) */
    double *plus, *minus; /* m outputs at x + eps, x - eps */
    tg_tensor *gout;      /* grad_out: one-hot rows, or v */
    tg_tensor **rgrad;    /* n_in caller-style gradients for ref; NULL where no gradient */

    acc num, vref;
    int aborted;          /* an error or a failed reentrancy check stopped the check */
    int ab_loc;           /* the abort names an element: input/index/analytic/numeric below */
    int ab_input;
    int64_t ab_index;
    double ab_a, ab_n;
    char msg[512];
} gc;

/* Stops the check with a message. status TG_OK keeps the thread's error as it is (f or tg_backward
   set it already, and theirs is the first cause); another status sets it. Returns 0. */
static int gc_abort(gc *g, tg_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->msg, sizeof g->msg, fmt, ap);
    va_end(ap);
    g->aborted = 1;
    if (status != TG_OK) tg__fail(status, "%s: %s", g->fn, g->msg);
    return 0;
}

static double ld(const void *p, tg_dtype dt, int64_t k) {
    return dt == TG_F32 ? (double)((const float *)p)[k] : ((const double *)p)[k];
}

static void st(void *p, tg_dtype dt, int64_t k, double v) {
    if (dt == TG_F32) ((float *)p)[k] = (float)v;
    else ((double *)p)[k] = v;
}

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
            gc_abort(g, TG_EINVAL, "f returned NULL %s without setting an error", at_str(w, b, sizeof b));
        else gc_abort(g, TG_OK, "f failed %s: %s", at_str(w, b, sizeof b), tg_last_error());
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
        gc_abort(g, TG_ESHAPE, "f returned a %s output %s but a %s one on its first call; f must compute "
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
    tg_status s = tg_backward(g->tape, out, g->gout);
    if (s != TG_OK)
        return gc_abort(g, TG_OK, "tg_backward failed %s (%s): %s", at_str(w, b, sizeof b),
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
    if (!needs) return gc_abort(g, TG_OK, "f's output needed a gradient on one call and not on the next");
    for (int i = 0; i < g->np; i++) {
        tg_tensor *x = param(g, i);
        const void *gr = tg_tensor_grad(x);
        for (int64_t k = 0; k < tg_tensor_numel(x); k++) {
            double first = row[g->off[i] + k], second = ld(gr, tg_tensor_dtype(x), k);
            if (first == second || (isnan(first) && isnan(second))) continue;
            char loc[128];
            where_str(loc, sizeof loc, g->pidx[i], k, w.index);
            g->ab_loc = 1;
            g->ab_input = g->pidx[i];
            g->ab_index = k;
            g->ab_a = first;
            g->ab_n = second;
            return gc_abort(g, TG_OK, "backward is not reentrant: %s is %.17g after one backward and %.17g "
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
        return gc_abort(g, s, "the reference failed %s with %s: %s", at_str(w, b, sizeof b),
                        tg_status_name(s), tg_last_status() != TG_OK ? tg_last_error() : "(no message)");
    for (int i = 0; i < g->np; i++) {
        tg_tensor *r = g->rgrad[g->pidx[i]];
        const void *d = tg_tensor_data(r);
        for (int64_t k = 0; k < tg_tensor_numel(r); k++)
            acc_add(&g->vref, &g->o, row[g->off[i] + k], ld(d, tg_tensor_dtype(r), k), g->pidx[i], k,
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
                acc_add(&g->num, &g->o, g->jac[j * g->N + g->off[i] + k],
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
        return gc_abort(g, TG_OK, "drawing random vectors failed: %s", tg_last_error());
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
        acc_add(&g->num, &g->o, a, n / (2 * g->o.eps), g->pidx[i], -1, -1);
    }
    return 1;
}

/* ---- arguments, buffers, reports ---- */

static int validate(gc *g) {
    const tg_gradcheck_opts *o = &g->o;
    if (!g->f) return gc_abort(g, TG_EINVAL, "f is NULL");
    if (g->with_ref && !g->ref)
        return gc_abort(g, TG_EINVAL, "ref is NULL (tg_gradcheck checks without a reference)");
    if (!g->in) return gc_abort(g, TG_EINVAL, "inputs is NULL");
    if (g->n_in < 1) return gc_abort(g, TG_EINVAL, "n_inputs is %d; need at least 1", g->n_in);
    for (int i = 0; i < g->n_in; i++)
        if (!g->in[i]) {
            /* As everywhere in tapegrad, a NULL from an earlier failure keeps that failure's message. */
            if (tg_last_status() != TG_OK)
                return gc_abort(g, TG_OK, "inputs[%d] is NULL: %s", i, tg_last_error());
            return gc_abort(g, TG_EINVAL, "inputs[%d] is NULL", i);
        }
    for (int i = 0; i < g->n_in; i++) {
        char what[32];
        snprintf(what, sizeof what, "inputs[%d]", i);
        if (tg__stale(g->fn, what, g->in[i])) /* its message is the thread's; the report repeats it */
            return gc_abort(g, TG_OK, "%s is an output of a recording that tg_tape_reset ended", what);
    }
    if (!(o->eps > 0 && isfinite(o->eps)))
        return gc_abort(g, TG_EINVAL, "opts->eps is %g; need a finite step > 0", o->eps);
    if (!(o->atol >= 0 && isfinite(o->atol) && o->rtol >= 0 && isfinite(o->rtol)))
        return gc_abort(g, TG_EINVAL, "opts->atol %g and rtol %g must be finite and >= 0", o->atol, o->rtol);
    for (int i = 0; i < g->n_in; i++)
        if (tg_tensor_dtype(g->in[i]) == TG_F32 && !o->allow_f32)
            return gc_abort(g, TG_EDTYPE, "input %d is f32, whose finite differences are too coarse for the "
                            "f64 tolerances; opt in with opts = tg_gradcheck_defaults_f32() (eps 1e-3, atol "
                            "1e-3, rtol 1e-2), or check in f64", i);
    g->np = 0;
    for (int i = 0; i < g->n_in; i++) {
        if (!tg_tensor_requires_grad(g->in[i])) continue;
        if (!tg_tensor_grad(g->in[i]))
            return gc_abort(g, TG_EINVAL, "input %d needs a gradient but has none of its own (an op "
                            "output?); pass the leaves f is built from, made with tg_param_new", i);
        g->np++;
    }
    if (g->np == 0)
        return gc_abort(g, TG_EINVAL, "no input needs a gradient, so there is nothing to check; make the "
                        "inputs to check with tg_param_new");
    return 1;
}

/* An array of n elements of the given size, or an abort with TG_ENOMEM (n * size overflowing too). */
static void *gc_alloc(gc *g, int64_t n, size_t size, const char *what) {
    void *p = n >= 0 && (uint64_t)n <= (SIZE_MAX / 2) / size ? tg__malloc((size_t)n * size) : NULL;
    if (!p) gc_abort(g, TG_ENOMEM, "out of memory for %s (%lld values)%s", what, (long long)n,
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
        return gc_abort(g, TG_OK, "could not make grad_out: %s", tg_last_error());
    if (!(g->plus = gc_alloc(g, g->m, sizeof(double), "f's outputs")) ||
        !(g->minus = gc_alloc(g, g->m, sizeof(double), "f's outputs")))
        return 0;
    if (g->o.fast) {
        if (!(g->jac = gc_alloc(g, g->N, sizeof(double), "the gradients")) ||
            !(g->x0 = gc_alloc(g, g->N, sizeof(double), "the inputs' values")))
            return 0;
        int64_t n = g->N;
        if (!(g->u = tg_tensor_new(TG_F64, 1, &n)))
            return gc_abort(g, TG_OK, "could not make u: %s", tg_last_error());
    } else {
        if (g->m > 0 && g->N > INT64_MAX / g->m)
            return gc_abort(g, TG_ENOMEM, "the Jacobian is too large to index");
        if (!(g->jac = gc_alloc(g, g->m * g->N, sizeof(double), "the Jacobian"))) return 0;
    }
    if (g->ref) {
        if (!(g->rgrad = gc_alloc(g, g->n_in, sizeof *g->rgrad, "the reference's gradients"))) return 0;
        for (int i = 0; i < g->n_in; i++) g->rgrad[i] = NULL;
        for (int i = 0; i < g->np; i++) {
            tg_tensor *x = param(g, i);
            if (!(g->rgrad[g->pidx[i]] =
                      tg_tensor_new(tg_tensor_dtype(x), tg_tensor_ndim(x), tg_tensor_shape(x))))
                return gc_abort(g, TG_OK, "could not make the reference's gradients: %s", tg_last_error());
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
        where_str(loc, sizeof loc, c->input, c->index, c->out_index);
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
    acc_init(&g.num);
    acc_init(&g.vref);
    if (validate(&g) && setup_params(&g)) {
        if (!(g.tape = tg_tape_new())) gc_abort(&g, TG_ENOMEM, "out of memory for its tape");
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

void tg_gradcheck_print(const tg_gradcheck_report *r, FILE *out) {
    if (!r || !out) return;
    fprintf(out, "gradcheck: %s\n", r->passed ? "PASS" : "FAIL");
    if (r->node >= 0) fprintf(out, "  node: %%%lld %s\n", (long long)r->node, r->op);
    if (r->input < 0) fprintf(out, "  worst: none (no value compared)\n");
    else if (r->index < 0)
        fprintf(out, "  worst: input %d, projection v^T J u: analytic %.10g, numeric %.10g\n", r->input,
                r->analytic, r->numeric);
    else
        fprintf(out, "  worst: input %d, element %lld: analytic %.10g, numeric %.10g\n", r->input,
                (long long)r->index, r->analytic, r->numeric);
    fprintf(out, "  max abs err %.3g, max rel err %.3g\n", r->max_abs_err, r->max_rel_err);
    fprintf(out, "  %s\n", r->message);
}

/* ---- tg_gradcheck_nodes: every node of a recording on its own ---- */

static _Thread_local int64_t nodes_failed_index = -1;
static _Thread_local char nodes_failed_op[64];

int64_t tg_gradcheck_nodes_failed_index(void) { return nodes_failed_index; }
const char *tg_gradcheck_nodes_failed_op(void) { return nodes_failed_op; }

/* Up to this many input elements a node's v^T J is compared element by element (two reruns of its
   forward each); past it, along one random direction per input. A full Jacobian for small nodes. */
enum { ELEMENTWISE_MAX = 4096, FULL_MAX_OUT = 16, FULL_MAX_IN = 256 };

/* One node's rerun: its inputs and output as leaves of the check's own, and the node pointing at them. */
typedef struct {
    tg_tape *tape; /* the recording's: its scratch serves the proof that the backward adds */
    const tg__node *node;
    int64_t k;
    tg__node fake;
    tg_tensor *x[64], *y, *yp, *ym, *v;
    double *grad[64]; /* the backward's result for v, per checked input (f64 copies) */
    void *buf[64];    /* gradient buffers handed to backward, in the rerun's dtype */
    int checked[64];
    int64_t N;        /* elements of the checked inputs */
    char msg[512];    /* why the node fails, when it does */
} node_run;

static void node_run_free(node_run *r) {
    for (int i = 0; i < r->fake.n_in; i++) {
        tg_tensor_free(r->x[i]);
        tg__free(r->grad[i]);
        tg__free(r->buf[i]);
    }
    tg_tensor_free(r->y), tg_tensor_free(r->yp), tg_tensor_free(r->ym), tg_tensor_free(r->v);
}

static int node_fail(node_run *r, const char *fmt, ...) {
    va_list ap;
    int n = snprintf(r->msg, sizeof r->msg, "%%%lld %s: ", (long long)r->k, tg__node_name(r->node));
    va_start(ap, fmt);
    vsnprintf(r->msg + n, sizeof r->msg - (size_t)n, fmt, ap);
    va_end(ap);
    return 0;
}

/* The node's forward at the rerun's inputs, into y. */
static int rerun(node_run *r, tg_tensor *y) {
    const tg__op *op = r->node->op;
    if (op->flags & TG__ZERO_OUT) memset(y->data, 0, (size_t)y->numel * tg__dsize(y->dtype));
    if (op->forward(r->x, r->fake.n_in, &r->fake.args, y) != TG_OK)
        return node_fail(r, "its forward failed when rerun: %s", tg_last_error());
    return 1;
}

/* The data of op output t that the tape let go (tg__tape_release: a layer's intermediate that no node saved),
   recomputed from its node, whose released inputs are recomputed the same way; a tg__malloc'd buffer of
   t's dtype, NULL with TG_ENOMEM or when the node fails. */
static void *recompute(tg_tape *tape, const tg_tensor *t) {
    const tg__node *node = tg__tape_node(tape, t->node);
    if (!node || node->out != t || node->n_in > 64) {
        tg__fail(TG_ESTATE, "tg_gradcheck_nodes: an input's data was released and cannot be recomputed");
        return NULL;
    }
    tg_tensor in[64], *ins[64], out = *t;
    int ok = 1;
    for (int i = 0; i < node->n_in; i++) {
        in[i] = *node->in[i];
        ins[i] = &in[i];
        if (!in[i].data && !(in[i].data = recompute(tape, node->in[i]))) ok = 0;
    }
    size_t bytes = (size_t)t->numel * tg__dsize(t->dtype);
    out.data = ok ? tg__malloc(bytes + 1) : NULL;
    if (ok && !out.data) tg__fail(TG_ENOMEM, "tg_gradcheck_nodes: out of memory recomputing an input");
    if (out.data && (node->op->flags & TG__ZERO_OUT)) memset(out.data, 0, bytes);
    if (out.data && node->op->forward(ins, node->n_in, &node->args, &out) != TG_OK) tg__free(out.data), out.data = NULL;
    for (int i = 0; i < node->n_in; i++)
        if (!node->in[i]->data && in[i].data) tg__free(in[i].data);
    return out.data;
}

/* Leaves for the rerun: built-in ops in f64 (their kernels are one template for both dtypes, and f64
   differences are the sharper check), custom ops in their own dtype (a user's callback may know only
   one); index inputs as they are. */
static int node_setup(node_run *r, tg_tape *tape, const tg__node *node, int64_t k, uint64_t seed) {
    memset(r, 0, sizeof *r);
    r->tape = tape;
    r->node = node;
    r->k = k;
    r->fake = *node;
    r->fake.in = r->x;
    tg_dtype dt = node->args.def ? node->out->dtype : TG_F64;
    for (int i = 0; i < node->n_in; i++) {
        const tg_tensor *in = node->in[i];
        tg_dtype di = in->dtype == TG_I64 ? TG_I64 : dt;
        if (!(r->x[i] = tg_tensor_new(di, in->ndim, in->shape))) return node_fail(r, "%s", tg_last_error());
        void *again = in->data ? NULL : recompute(tape, in);
        const void *src = in->data ? in->data : again;
        if (!src) return node_fail(r, "%s", tg_last_error());
        for (int64_t j = 0; j < in->numel; j++)
            if (di == TG_I64) ((int64_t *)r->x[i]->data)[j] = ((const int64_t *)src)[j];
            else st(r->x[i]->data, di, j, ld(src, in->dtype, j));
        tg__free(again);
        r->checked[i] = (in->flags & TG__NEEDS) != 0;
        if (r->checked[i]) r->N += in->numel;
    }
    const tg_tensor *o = node->out;
    if (!(r->y = tg_tensor_new(dt, o->ndim, o->shape)) || !(r->yp = tg_tensor_new(dt, o->ndim, o->shape)) ||
        !(r->ym = tg_tensor_new(dt, o->ndim, o->shape)) || !(r->v = tg_tensor_new(dt, o->ndim, o->shape)))
        return node_fail(r, "%s", tg_last_error());
    r->fake.out = r->y;
    if (!rerun(r, r->y)) return 0;
    if (tg__nonfinite(r->y, r->y->data))
        return node_fail(r, "its output is not finite at the recorded inputs, so it has no derivative to check");
    uint64_t s = seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(k + 1));
    if (tg_tensor_fill_uniform(r->v, -1.0, 1.0, &s) != TG_OK) return node_fail(r, "%s", tg_last_error());
    for (int i = 0; i < node->n_in; i++) {
        if (!r->checked[i]) continue;
        size_t n = (size_t)r->x[i]->numel;
        r->grad[i] = tg__malloc(n * sizeof(double) + 1);
        r->buf[i] = tg__malloc(n * tg__dsize(dt) + 1);
        if (!r->grad[i] || !r->buf[i]) return node_fail(r, "out of memory for its gradients");
    }
    return 1;
}

/* The backward for grad_out gv into r->grad (zeroed buffers first; check proves it adds). */
static int node_backward(node_run *r, const tg_tensor *gv, int check) {
    for (int i = 0; i < r->fake.n_in; i++)
        if (r->checked[i]) memset(r->buf[i], 0, (size_t)r->x[i]->numel * tg__dsize(r->x[i]->dtype));
    if (tg__node_backward(r->tape, &r->fake, r->k, gv, r->buf, check) != TG_OK) {
        /* the overwrite message names the op and node already */
        const char *m = tg_last_error();
        if (strncmp(m, "backward of", 11)) return node_fail(r, "its backward failed: %s", m);
        snprintf(r->msg, sizeof r->msg, "%s", m);
        return 0;
    }
    for (int i = 0; i < r->fake.n_in; i++)
        if (r->checked[i])
            for (int64_t j = 0; j < r->x[i]->numel; j++) r->grad[i][j] = ld(r->buf[i], r->x[i]->dtype, j);
    return 1;
}

/* sum_l w_l (yp_l - ym_l) / (2 eps): the numeric side of w^T J e */
static double diff_dot(const node_run *r, const void *w, int64_t l_only, double eps) {
    double s = 0;
    for (int64_t l = 0; l < r->y->numel; l++) {
        if (l_only >= 0 && l != l_only) continue;
        double wl = w ? ld(w, r->v->dtype, l) : 1.0;
        s += wl * (ld(r->yp->data, r->y->dtype, l) - ld(r->ym->data, r->y->dtype, l));
    }
    return s / (2 * eps);
}

static int node_check(node_run *r, const tg_gradcheck_opts *o, acc *c) {
    if (!node_backward(r, r->v, 1)) return 0;
    int full = r->y->numel <= FULL_MAX_OUT && r->N <= FULL_MAX_IN;
    double *cols = NULL; /* full: (yp - ym) per input element, y->numel each */
    if (full && r->N && !(cols = tg__malloc((size_t)(r->N * r->y->numel) * sizeof *cols)))
        return node_fail(r, "out of memory for its Jacobian");
    int64_t col = 0;
    int ok = 1;
    for (int i = 0; ok && i < r->fake.n_in; i++) {
        if (!r->checked[i]) continue;
        tg_tensor *x = r->x[i];
        if (r->N <= ELEMENTWISE_MAX) {
            for (int64_t j = 0; ok && j < x->numel; j++, col++) {
                double orig = ld(x->data, x->dtype, j);
                st(x->data, x->dtype, j, orig + o->eps);
                ok = rerun(r, r->yp);
                st(x->data, x->dtype, j, orig - o->eps);
                ok = ok && rerun(r, r->ym);
                st(x->data, x->dtype, j, orig);
                if (!ok) break;
                acc_add(c, o, r->grad[i][j], diff_dot(r, r->v->data, -1, o->eps), i, j, -1);
                for (int64_t l = 0; cols && l < r->y->numel; l++)
                    cols[col * r->y->numel + l] = diff_dot(r, NULL, l, o->eps);
            }
        } else {
            /* one random direction u for the whole input: v^T J u both ways */
            double *x0 = tg__malloc((size_t)x->numel * sizeof *x0), *u = tg__malloc((size_t)x->numel * sizeof *u);
            if (!x0 || !u) ok = node_fail(r, "out of memory for its directions");
            tg_rng rng;
            tg_rng_seed(&rng, o->seed + 7919 * (uint64_t)(r->k + 1) + (uint64_t)i);
            double a = 0;
            for (int64_t j = 0; ok && j < x->numel; j++) {
                x0[j] = ld(x->data, x->dtype, j);
                u[j] = 2 * tg_rng_uniform(&rng) - 1;
                a += u[j] * r->grad[i][j];
            }
            for (int64_t j = 0; ok && j < x->numel; j++) st(x->data, x->dtype, j, x0[j] + o->eps * u[j]);
            ok = ok && rerun(r, r->yp);
            for (int64_t j = 0; ok && j < x->numel; j++) st(x->data, x->dtype, j, x0[j] - o->eps * u[j]);
            ok = ok && rerun(r, r->ym);
            for (int64_t j = 0; x0 && j < x->numel; j++) st(x->data, x->dtype, j, x0[j]);
            if (ok) acc_add(c, o, a, diff_dot(r, r->v->data, -1, o->eps), i, -1, -1);
            tg__free(x0), tg__free(u);
        }
    }
    /* the full Jacobian: row l from a one-hot grad_out, against the stored columns */
    for (int64_t l = 0; ok && cols && l < r->y->numel; l++) {
        tg_tensor *e = r->yp; /* free now: the differences are stored */
        memset(e->data, 0, (size_t)e->numel * tg__dsize(e->dtype));
        st(e->data, e->dtype, l, 1.0);
        if (!(ok = node_backward(r, e, 0))) break;
        col = 0;
        for (int i = 0; i < r->fake.n_in; i++)
            for (int64_t j = 0; r->checked[i] && j < r->x[i]->numel; j++, col++)
                acc_add(c, o, r->grad[i][j], cols[col * r->y->numel + l], i, j, l);
    }
    tg__free(cols);
    return ok;
}

int tg_gradcheck_nodes(tg_tape *tape, tg_tensor *out, const tg_gradcheck_opts *opts, tg_gradcheck_report *report) {
    static const char fn[] = "tg_gradcheck_nodes";
    tg_gradcheck_opts o = opts ? *opts : tg_gradcheck_defaults();
    nodes_failed_index = -1;
    nodes_failed_op[0] = '\0';
    gc g; /* for its messages and report only */
    memset(&g, 0, sizeof g);
    g.fn = fn;
    g.o = o;
    acc c;
    acc_init(&c);
    int64_t last = -1, nodes = 0;
    if (!tape || !out) gc_abort(&g, TG_EINVAL, "%s is NULL", tape ? "out" : "tape");
    else if (out->tape && out->tape != tape) gc_abort(&g, TG_EINVAL, "out was recorded on another tape");
    else if (tg__stale(fn, "out", out)) gc_abort(&g, TG_ESTATE, "out is an output of a recording that tg_tape_reset ended");
    else if (!out->tape || out->node < 0 || !tg__tape_node(tape, out->node))
        gc_abort(&g, TG_EINVAL, "out is not the output of a recorded node (a leaf, or computed without a gradient): "
                 "there is nothing to check");
    else if (!(o.eps > 0 && isfinite(o.eps)) || !(o.atol >= 0 && isfinite(o.atol) && o.rtol >= 0 && isfinite(o.rtol)))
        gc_abort(&g, TG_EINVAL, "opts->eps %g, atol %g and rtol %g must be finite, eps > 0", o.eps, o.atol, o.rtol);
    else
        last = out->node;
    for (int64_t k = 0; k <= last && !g.aborted; k++)
        if (tg__tape_node(tape, k)->out->dtype == TG_F32 && !o.allow_f32)
            gc_abort(&g, TG_EDTYPE, "node %lld (%s) is f32; opt in with opts = tg_gradcheck_defaults_f32(), or "
                     "record in f64", (long long)k, tg__node_name(tg__tape_node(tape, k)));
    tg__error err;
    tg__error_save(&err); /* a failing node is a result: the thread's error stays the caller's */
    for (int64_t k = 0; k <= last && !g.aborted; k++) {
        node_run r;
        const tg__node *node = tg__tape_node(tape, k);
        acc nc;
        acc_init(&nc);
        int ok = node_setup(&r, tape, node, k, o.seed) && node_check(&r, &o, &nc);
        if (ok && nc.n_bad) {
            char loc[128];
            where_str(loc, sizeof loc, nc.input, nc.index, nc.out_index);
            node_fail(&r, "%s: analytic %.10g vs numeric %.10g, |diff| %.3g > tol %.3g", loc, nc.a, nc.n, nc.err,
                      nc.tol);
            ok = 0;
        }
        node_run_free(&r);
        nodes++;
        c.count += nc.count;
        if (!isnan(c.max_abs) && (isnan(nc.max_abs) || nc.max_abs > c.max_abs)) c.max_abs = nc.max_abs;
        if (!isnan(c.max_rel) && (isnan(nc.max_rel) || nc.max_rel > c.max_rel)) c.max_rel = nc.max_rel;
        if (!ok) {
            g.aborted = 1;
            snprintf(g.msg, sizeof g.msg, "%s", r.msg);
            g.ab_loc = nc.input >= 0;
            g.ab_input = nc.input, g.ab_index = nc.index, g.ab_a = nc.a, g.ab_n = nc.n;
            nodes_failed_index = k;
            snprintf(nodes_failed_op, sizeof nodes_failed_op, "%s", tg__node_name(node));
        }
    }
    if (last >= 0) tg__error_restore(&err);
    if (!g.aborted && c.count == 0)
        gc_abort(&g, TG_OK, "nothing to compare: every node's inputs or outputs are empty");
    int passed = !g.aborted;
    if (report) {
        memset(report, 0, sizeof *report);
        report->passed = passed;
        report->input = g.ab_loc ? g.ab_input : -1;
        report->index = g.ab_loc ? g.ab_index : -1;
        report->analytic = g.ab_loc ? g.ab_a : NAN;
        report->numeric = g.ab_loc ? g.ab_n : NAN;
        report->max_abs_err = c.max_abs;
        report->max_rel_err = c.max_rel;
        report->node = nodes_failed_index;
        snprintf(report->op, sizeof report->op, "%s", nodes_failed_op);
        if (passed)
            snprintf(report->message, sizeof report->message, "passed: %lld nodes checked, %lld values compared, max "
                     "abs err %.2g, max rel err %.2g", (long long)nodes, (long long)c.count, c.max_abs, c.max_rel);
        else
            snprintf(report->message, sizeof report->message, "%s", g.msg);
    }
    return passed;
}
