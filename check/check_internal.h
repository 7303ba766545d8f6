/* check/ internals: the accumulator every compared pair passes through, and the whole-function engine's
   state, which tg_gradcheck_nodes borrows for its messages and report (check/compare.c). Never installed. */
#ifndef TG_CHECK_INTERNAL_H
#define TG_CHECK_INTERNAL_H

#include "tg_gradcheck.h"
#include "tg_internal.h"
#include "tg_rng.h"

/* Relative errors divide by max(|numeric|, REL_FLOOR): an exactly zero derivative (an element no
   output depends on) must not turn roundoff of 1e-17 into an infinite relative error. */
#define REL_FLOOR 1e-12

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

void tg__acc_init(acc *c);
/* One compared pair: a (analytic or tape) against n (numeric or reference), at input's element index for
   output element out_index (-1: a projection or a random grad_out). */
void tg__acc_add(acc *c, const tg_gradcheck_opts *o, double a, double n, int input, int64_t index,
                 int64_t out_index);
/* 1 when the thread's error is the proof's (tg__node_backward: "backward of <op> (node k) overwrites its
   gradient ... instead of adding to it"): a failed check, which a check reports and does not leave set. */
int tg__overwrite_error(void);
/* "input 1 element 4 (output element 2)", or the fast-mode forms. */
void tg__where_str(char *buf, size_t size, int input, int64_t index, int64_t out_index);

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
int tg__gc_abort(gc *g, tg_status status, const char *fmt, ...);

static inline double ld(const void *p, tg_dtype dt, int64_t k) {
    return dt == TG_F32 ? (double)((const float *)p)[k] : ((const double *)p)[k];
}

static inline void st(void *p, tg_dtype dt, int64_t k, double v) {
    if (dt == TG_F32) ((float *)p)[k] = (float)v;
    else ((double *)p)[k] = v;
}

#endif
