/* tg_gradcheck_nodes: every node of one recording checked on its own, its forward rerun on leaves of the
   check's own, its backward compared with central differences of that rerun. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "check_internal.h"

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
    /* A custom op's kept tensors: the rerun at the recorded inputs keeps kept_y, which the backward checked
       reads (through saved, the fake node's list: inputs, output, kept); the reruns around it keep tmp. */
    tg__kept kept_y, kept_tmp;
    tg_tensor *saved[64 + 1 + TG__MAX_KEPT];
    char msg[512];    /* why the node fails, when it does */
} node_run;

static void node_run_free(node_run *r) {
    for (int i = 0; i < r->fake.n_in; i++) {
        tg_tensor_free(r->x[i]);
        tg__free(r->grad[i]);
        tg__free(r->buf[i]);
    }
    tg_tensor_free(r->y), tg_tensor_free(r->yp), tg_tensor_free(r->ym), tg_tensor_free(r->v);
    tg__kept_free(&r->kept_y), tg__kept_free(&r->kept_tmp);
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
    tg__kept *kept = y == r->y ? &r->kept_y : &r->kept_tmp;
    if (tg__forward(r->tape, op, r->x, r->fake.n_in, &r->fake.args, y, kept) != TG_OK)
        return node_fail(r, "its forward failed when rerun: %s", tg_last_error());
    if (y == r->y && (op->flags & TG__KEEPS)) { /* the backward reads this rerun's kept tensors */
        int n = r->fake.n_in;
        memcpy(r->saved, r->x, (size_t)n * sizeof *r->saved);
        r->saved[n] = y;
        memcpy(r->saved + n + 1, kept->t, (size_t)kept->n * sizeof *r->saved);
        r->fake.saved = r->saved, r->fake.n_saved = n + 1 + kept->n, r->fake.fp = NULL;
    }
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
    tg__kept kept = {.leaves = 1};
    if (out.data && tg__forward(tape, node->op, ins, node->n_in, &node->args, &out, &kept) != TG_OK)
        tg__free(out.data), out.data = NULL;
    tg__kept_free(&kept);
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
    r->kept_y.leaves = r->kept_tmp.leaves = 1;
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
        if (!tg__overwrite_error()) return node_fail(r, "its backward failed: %s", tg_last_error());
        snprintf(r->msg, sizeof r->msg, "%s", tg_last_error());
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
                tg__acc_add(c, o, r->grad[i][j], diff_dot(r, r->v->data, -1, o->eps), i, j, -1);
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
            if (ok) tg__acc_add(c, o, a, diff_dot(r, r->v->data, -1, o->eps), i, -1, -1);
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
                tg__acc_add(c, o, r->grad[i][j], cols[col * r->y->numel + l], i, j, l);
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
    tg__acc_init(&c);
    int64_t last = -1, nodes = 0;
    if (!tape || !out) tg__gc_abort(&g, TG_EINVAL, "%s is NULL", tape ? "out" : "tape");
    else if (out->tape && out->tape != tape) tg__gc_abort(&g, TG_EINVAL, "out was recorded on another tape");
    else if (tg__stale(fn, "out", out)) tg__gc_abort(&g, TG_ESTATE, "out is an output of a recording that tg_tape_reset ended");
    else if (!out->tape || out->node < 0 || !tg__tape_node(tape, out->node))
        tg__gc_abort(&g, TG_EINVAL, "out is not the output of a recorded node (a leaf, or computed without a gradient): "
                 "there is nothing to check");
    else if (!(o.eps > 0 && isfinite(o.eps)) || !(o.atol >= 0 && isfinite(o.atol) && o.rtol >= 0 && isfinite(o.rtol)))
        tg__gc_abort(&g, TG_EINVAL, "opts->eps %g, atol %g and rtol %g must be finite, eps > 0", o.eps, o.atol, o.rtol);
    else
        last = out->node;
    for (int64_t k = 0; k <= last && !g.aborted; k++)
        if (tg__tape_node(tape, k)->out->dtype == TG_F32 && !o.allow_f32)
            tg__gc_abort(&g, TG_EDTYPE, "node %lld (%s) is f32; opt in with opts = tg_gradcheck_defaults_f32(), or "
                     "record in f64", (long long)k, tg__node_name(tg__tape_node(tape, k)));
    /* A pass still says where it came nearest to failing: which node, input and element. */
    acc near;
    tg__acc_init(&near);
    int64_t near_k = -1;
    tg__error err;
    tg__error_save(&err); /* a failing node is a result: the thread's error stays the caller's */
    for (int64_t k = 0; k <= last && !g.aborted; k++) {
        node_run r;
        const tg__node *node = tg__tape_node(tape, k);
        acc nc;
        tg__acc_init(&nc);
        int ok = node_setup(&r, tape, node, k, o.seed) && node_check(&r, &o, &nc);
        if (ok && nc.n_bad) {
            char loc[128], label[80];
            tg__where_str(loc, sizeof loc, nc.input, nc.index, nc.out_index);
            /* a custom op's input by its name: "input gamma element 3 ..." */
            const char *tail = node->args.def ? strchr(loc + 6, ' ') : NULL;
            if (tail) tg__input_label(node->args.def->input_names, nc.input, label, sizeof label);
            node_fail(&r, "%s%s: analytic %.10g vs numeric %.10g, |diff| %.3g > tol %.3g", tail ? label : loc,
                      tail ? tail : "", nc.a, nc.n, nc.err, nc.tol);
            ok = 0;
        }
        node_run_free(&r);
        nodes++;
        c.count += nc.count;
        if (!isnan(c.max_abs) && (isnan(nc.max_abs) || nc.max_abs > c.max_abs)) c.max_abs = nc.max_abs;
        if (!isnan(c.max_rel) && (isnan(nc.max_rel) || nc.max_rel > c.max_rel)) c.max_rel = nc.max_rel;
        if (ok && nc.count && nc.excess > near.excess) near = nc, near_k = k;
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
        tg__gc_abort(&g, TG_OK, "nothing to compare: every node's inputs or outputs are empty");
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
        if (passed) {
            char loc[128];
            tg__where_str(loc, sizeof loc, near.input, near.index, near.out_index);
            report->input = near.input, report->index = near.index, report->analytic = near.a, report->numeric = near.n;
            snprintf(report->message, sizeof report->message, "passed: %lld nodes checked, %lld values compared, max "
                     "abs err %.2g, max rel err %.2g; nearest to tolerance: %%%lld %s %s: analytic %.10g vs numeric "
                     "%.10g, |diff| %.3g <= tol %.3g", (long long)nodes, (long long)c.count, c.max_abs, c.max_rel,
                     (long long)near_k, tg__node_name(tg__tape_node(tape, near_k)), loc, near.a, near.n, near.err,
                     near.tol);
        } else
            snprintf(report->message, sizeof report->message, "%s", g.msg);
    }
    return passed;
}
