/* What every gradient check shares: the default tolerances, the accumulator of compared pairs, the engine's
   abort and the report's printing. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "check_internal.h"

tg_gradcheck_opts tg_gradcheck_defaults(void) {
    tg_gradcheck_opts o = {.eps = 1e-6, .atol = 1e-5, .rtol = 1e-3, .fast = 0, .allow_f32 = 0, .seed = 0};
    return o;
}

tg_gradcheck_opts tg_gradcheck_defaults_f32(void) {
    tg_gradcheck_opts o = {.eps = 1e-3, .atol = 1e-3, .rtol = 1e-2, .fast = 0, .allow_f32 = 1, .seed = 0};
    return o;
}


void tg__acc_init(acc *c) {
    memset(c, 0, sizeof *c);
    c->input = -1;
    c->index = c->out_index = -1;
    c->a = c->n = NAN;
    c->excess = -INFINITY;
}

void tg__acc_add(acc *c, const tg_gradcheck_opts *o, double a, double n, int input, int64_t index,
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

int tg__overwrite_error(void) {
    const char *m = tg_last_error();
    return tg_last_status() == TG_EINVAL && !strncmp(m, "backward of ", 12) && strstr(m, " instead of adding to it");
}

/* "input 1 element 4 (output element 2)", or the fast-mode forms. */
void tg__where_str(char *buf, size_t size, int input, int64_t index, int64_t out_index) {
    if (index < 0) snprintf(buf, size, "input %d (projection v^T J u)", input);
    else if (out_index < 0)
        snprintf(buf, size, "input %d element %lld (random grad_out v)", input, (long long)index);
    else
        snprintf(buf, size, "input %d element %lld (output element %lld)", input, (long long)index,
                 (long long)out_index);
}


/* Stops the check with a message. status TG_OK keeps the thread's error as it is (f or tg_backward
   set it already, and theirs is the first cause); another status sets it. Returns 0. */
int tg__gc_abort(gc *g, tg_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->msg, sizeof g->msg, fmt, ap);
    va_end(ap);
    g->aborted = 1;
    if (status != TG_OK) tg__fail(status, "%s: %s", g->fn, g->msg);
    return 0;
}

void tg_gradcheck_print(const tg_gradcheck_report *r, FILE *out) {
    if (!r || !out) return;
    fprintf(out, "gradcheck: %s\n", r->passed ? "PASS" : "FAIL");
    if (r->node >= 0) fprintf(out, "  node: %%%lld %s\n", (long long)r->node, r->op);
    /* on a pass the worst entry is the one nearest to its tolerance, not a mismatch */
    const char *worst = r->passed ? "nearest to tolerance" : "worst";
    if (r->input < 0) fprintf(out, "  %s: none (no value compared)\n", worst);
    else if (r->index < 0)
        fprintf(out, "  %s: input %d, projection v^T J u: analytic %.10g, numeric %.10g\n", worst, r->input,
                r->analytic, r->numeric);
    else
        fprintf(out, "  %s: input %d, element %lld: analytic %.10g, numeric %.10g\n", worst, r->input,
                (long long)r->index, r->analytic, r->numeric);
    fprintf(out, "  max abs err %.3g, max rel err %.3g\n", r->max_abs_err, r->max_rel_err);
    fprintf(out, "  %s\n", r->message);
}

