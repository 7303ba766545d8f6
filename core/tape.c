/* The tape: an arena for op outputs, the list of recorded nodes, and the reverse walk. */
#include <float.h>
#include <math.h>
#include <string.h>
#include "arena.h"

tg_tape *tg_tape_new(void) {
    tg_tape *tape = tg__calloc(sizeof *tape);
    if (!tape) {
        tg__fail(TG_ENOMEM, "tg_tape_new: out of memory");
        return NULL;
    }
    tape->checks = TG_CHECK_SAVED;
    tape->grad_enabled = 1;
    tape->gen = 1;
#ifdef TG__ASAN
    tape->redzone = REDZONE;
#else
    tape->redzone = RUNNING_ON_VALGRIND ? REDZONE : 0;
#endif
    return tape;
}

void tg_tape_reset(tg_tape *tape) {
    if (!tape) return;
    /* A recording that outgrew one chunk is merged into one chunk of the total size, so the next
       recording of the same work fits without a malloc. */
    if (tape->chunks && tape->chunks->next) {
        size_t total = 0;
        for (chunk *c = tape->chunks; c; c = c->next) total += c->size;
        tg__free_chunks(tape->chunks);
        tape->chunks = tg__new_chunk(total, NULL); /* on failure the next recording starts growing again */
    }
    if (tape->chunks) {
        poison(tape->chunks->base, tape->chunks->used);
        tape->chunks->used = 0;
    }
    tape->n_nodes = 0;
    tape->n_fp = 0, tape->n_leaves = 0, tape->n_hashed = 0;
    memset(tape->spares, 0, sizeof tape->spares);
    tape->done = 0;
    tape->n_retained = 0;
    tape->gen++;
    header_pool *pool = &tape->headers[tape->gen & 1];
    pool->cur = NULL;
    pool->used = 0;
    /* The pool this recording uses gets as many blocks as the last one used, now: a loop's second step
       mallocs nothing either (on failure it grows when needed instead). */
    int want = 0, have = 0;
    for (header_block *b = tape->headers[!(tape->gen & 1)].first; b; b = b->next) want++;
    header_block **end = &pool->first;
    for (; *end; end = &(*end)->next) have++;
    for (; have < want && (*end = tg__malloc(sizeof **end)); have++) (*end)->next = NULL, end = &(*end)->next;
}

void tg_tape_free(tg_tape *tape) {
    if (!tape) return;
    tg__free_chunks(tape->chunks);
    for (int k = 0; k < 2; k++)
        for (header_block *b = tape->headers[k].first; b;) {
            header_block *next = b->next;
            tg__free(b);
            b = next;
        }
    tg__free(tape->nodes);
    tg__free(tape->fp_slots);
    tg__free(tape->fps);
    tg__free(tape->scratch);
    tg__free_chunks(tape->cb_chunks);
    tg__free(tape);
}

void tg_tape_set_checks(tg_tape *tape, unsigned flags) {
    if (tape) tape->checks = flags;
}
unsigned tg_tape_checks(const tg_tape *tape) { return tape ? tape->checks : 0; }
void tg_tape_set_grad_enabled(tg_tape *tape, int enabled) {
    if (tape) tape->grad_enabled = enabled != 0;
}
int tg_tape_grad_enabled(const tg_tape *tape) { return tape ? tape->grad_enabled : 0; }

void tg__tape_check_accumulate(tg_tape *tape, int on) {
    if (tape) tape->check_accumulate = on != 0;
}

const tg__node *tg__tape_node(const tg_tape *tape, int64_t k) {
    return tape && k >= 0 && k < tape->n_nodes ? &tape->nodes[k] : NULL;
}

int64_t tg_tape_size(const tg_tape *tape) { return tape ? tape->n_nodes : 0; }

int64_t tg__tape_hashes(const tg_tape *tape) { return tape->n_hashed; }

const char *tg__input_label(const char *const *names, int i, char *buf, size_t size) {
    if (names && names[i]) snprintf(buf, size, "input %s", names[i]);
    else snprintf(buf, size, "input %d", i);
    return buf;
}


/* Input i's name in messages: the op's own ("a", "x"), else "input i". Every op's every input asks, error or
   not, so it is written by hand: an snprintf per input was a tenth of a gradient check's time. */
const char *tg__input_name(const char *const *names, int i, char *buf, size_t size) {
    if (names && names[i]) return names[i];
    char digits[16];
    int n = 0;
    for (unsigned v = (unsigned)i; n == 0 || v; v /= 10) digits[n++] = (char)('0' + v % 10);
    size_t len = 6;
    memcpy(buf, "input ", len);
    while (n && len + 1 < size) buf[len++] = digits[--n];
    buf[len] = '\0';
    return buf;
}

/* None NULL (NULL keeps the first error), all from this tape's current recording; index inputs i64,
   value inputs f32 or f64 and all of one dtype. Returns 0 when fine, and in *needs whether any input
   needs a gradient. */
static TG__INLINE int check_inputs(const char *fn, tg_tape *tape, const tg__op *op, const char *const *names,
                                   tg_tensor *const *in, int n, int *needs) {
    char nb[32], nb0[32];
#define NAME(i) tg__input_name(names, i, (i) == first ? nb0 : nb, sizeof nb) /* messages only: every op passes here */
    int first = -1; /* the first value input: the dtype the others must share */
    for (int i = 0; i < n; i++)
        if (!in[i]) return tg__null(fn, NAME(i)), 1;
    if (!tape) return tg__null(fn, "tape"), 1;
    *needs = 0;
    for (int i = 0; i < n; i++) {
        const tg_tensor *t = in[i];
        int index = i < 32 && ((op->index_inputs >> i) & 1u);
        *needs |= (t->flags & TG__NEEDS) != 0;
        if (t->tape && t->tape != tape)
            return tg__fail(TG_EINVAL, "%s: %s was recorded on another tape", fn, NAME(i)), 1;
        if (t->tape && (t->gen != tape->gen || !t->data)) return tg__stale(fn, NAME(i), t);
        if (index && t->dtype != TG_I64)
            return tg__fail(TG_EDTYPE, "%s: %s is %s; want i64 indices", fn, NAME(i), tg__dtype_name(t->dtype)), 1;
        if (index) continue;
        if (t->dtype == TG_I64)
            return tg__fail(TG_EDTYPE, "%s: %s is i64 (indices); this op takes f32 or f64 values", fn, NAME(i)), 1;
        if (first < 0) first = i;
        else if (t->dtype != in[first]->dtype)
            return tg__fail(TG_EDTYPE, "%s: dtypes differ: %s is %s, %s is %s (no promotion)", fn, NAME(first),
                            tg__dtype_name(in[first]->dtype), NAME(i), tg__dtype_name(t->dtype)), 1;
    }
    return 0;
#undef NAME
}

static void describe_inputs(tg_tensor *const *in, int n, char *buf, size_t size) {
    char sb[TG__SHAPE_STR];
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? ", " : "",
                                tg__shape_str(in[i]->ndim, in[i]->shape, sb));
}

const char *tg__node_name(const tg__node *node) { return node->args.def ? node->args.def->name : node->op->name; }

/* A forward's output is not finite. When an input that is a leaf holds the NaN or Inf, it came in
   from outside and the message says so, instead of blaming the op that read it. */
static void fail_nonfinite(const char *fn, tg_tape *tape, const char *const *names, tg_tensor *const *in, int n) {
    char shapes[256], nb[80];
    for (int i = 0; i < n; i++) {
        if (in[i]->tape || !tg__is_float(in[i]->dtype)) continue;
        for (int64_t k = 0; k < in[i]->numel; k++) {
            double v = tg_tensor_get(in[i], k);
            if (isfinite(v)) continue;
            tg__fail(TG_ENONFINITE, "%s: non-finite output at node %lld: %s of %s is a leaf holding %s at "
                     "element %lld", fn, (long long)tape->n_nodes, tg__input_label(names, i, nb, sizeof nb), fn,
                     isnan(v) ? "NaN" : v > 0 ? "Inf" : "-Inf", (long long)k);
            return;
        }
    }
    describe_inputs(in, n, shapes, sizeof shapes);
    tg__fail(TG_ENONFINITE, "%s: non-finite output in forward at node %lld (inputs %s)", fn,
             (long long)tape->n_nodes, shapes);
}

/* Appends the node of out, computed from in by op. NULL (TG_ENOMEM) when the node cannot be kept. */
static TG__INLINE tg_tensor *record(const char *fn, tg_tape *tape, const tg__op *op, tg_tensor *out,
                                    tg_tensor *const *in, int n_in, const tg__args *args, const tg__kept *kept) {
    if (tape->n_nodes == tape->cap_nodes) {
        int64_t cap = tape->cap_nodes ? 2 * tape->cap_nodes : 256;
        tg__node *nodes = tg__malloc((size_t)cap * sizeof *nodes);
        if (!nodes) return tg__fail(TG_ENOMEM, "%s: out of memory recording node %lld", fn,
                                    (long long)tape->n_nodes), NULL;
        if (tape->n_nodes) memcpy(nodes, tape->nodes, (size_t)tape->n_nodes * sizeof *nodes);
        tg__free(tape->nodes);
        tape->nodes = nodes;
        tape->cap_nodes = cap;
    }
    /* One block: the inputs, then the output when saved, then a custom op's kept tensors, then (only when some
       input is not saved) the saved list, then the fingerprints. Saving every input makes the saved list the
       block itself. */
    tg__save save = op->save;
    int with_in = save == TG__SAVE_INPUTS || save == TG__SAVE_ALL;
    int with_out = save == TG__SAVE_OUTPUT || save == TG__SAVE_ALL;
    unsigned unsaved = with_in ? op->unsaved & (n_in < 32 ? (1u << n_in) - 1 : ~0u) : 0;
    int n_kept = kept ? kept->n : 0;
    int n_saved = with_out + (with_in ? n_in : 0) + n_kept;
    for (unsigned u = unsaved; u; u &= u - 1) n_saved--; /* no popcount instruction in a generic build */
    int check = (tape->checks & TG_CHECK_SAVED) && n_saved;
    size_t n_ptr = (size_t)n_in + (size_t)with_out + (size_t)n_kept + (unsaved ? (size_t)n_saved : 0);
    tg_tensor **ins = arena_take(tape, n_ptr * sizeof *ins + (check ? (size_t)n_saved * sizeof(uint32_t) : 0));
    if (!ins) return tg__fail(TG_ENOMEM, "%s: out of memory recording node %lld", fn, (long long)tape->n_nodes), NULL;
    for (int i = 0; i < n_in; i++) ins[i] = in[i];
    if (with_out) ins[n_in] = out;
    for (int j = 0; j < n_kept; j++) ins[n_in + with_out + j] = kept->t[j]; /* custom ops: no input unsaved */
    tg_tensor **saved = unsaved ? ins + n_in + with_out : with_in ? ins : ins + n_in;
    for (int i = 0, j = 0; unsaved && i <= n_in; i++)
        if (i == n_in ? with_out : !(i < 32 && ((unsaved >> i) & 1u))) saved[j++] = ins[i];
    uint32_t *fp = check ? (uint32_t *)(ins + n_ptr) : NULL;
    for (int i = 0; i < n_saved; i++) {
        if (saved[i]->tape) saved[i]->flags |= TG__SAVED; /* tg__tape_release leaves these alone */
        if (check && !(fp[i] = saved[i] == tape->last_leaf.t && tape->last_leaf.gen == tape->gen
                                   ? tape->last_leaf.fp : tg__fingerprint_of(tape, saved[i], tape->n_nodes)))
            return tg__fail(TG_ENOMEM, "%s: out of memory recording node %lld", fn, (long long)tape->n_nodes), NULL;
    }

    tg__node *node = &tape->nodes[tape->n_nodes];
    /* field by field: a compound literal zeroes the whole node first, a quarter of recording an op */
    node->op = op, node->args = *args, node->in = ins, node->n_in = n_in, node->out = out;
    node->saved = saved, node->fp = fp, node->n_saved = n_saved, node->fresh = NULL;
    out->flags |= TG__NEEDS;
    out->node = tape->n_nodes++;
    return out;
}

static TG__INLINE tg_tensor *apply(tg_tape *tape, const tg__op *op, tg_tensor *const *in, int n,
                                   const tg__args *args_in) {
    const char *fn = args_in->def ? args_in->def->name : op->fn;
    const char *const *names = tg__names(op, args_in);
    int needs;
    if (check_inputs(fn, tape, op, names, in, n, &needs)) return NULL;
    tg__args args = *args_in;
    int ndim = 0;
    int64_t shape[TG_MAX_DIMS] = {0};
    if (op->shape(fn, in, n, &args, &ndim, shape)) return NULL;
    int v = 0; /* the output has the first value input's dtype, or holds indices */
    while (v < n - 1 && v < 32 && ((op->index_inputs >> v) & 1u)) v++;
    tg_dtype dtype = (op->flags & TG__INDEX_OUT) ? TG_I64 : in[v]->dtype;
    tg_tensor *out = new_out(fn, tape, dtype, ndim, shape, (op->flags & TG__ZERO_OUT) != 0);
    /* a custom op's forward (or a built-in's that keeps) runs with tg_custom_keep and tg_custom_scratch answering */
    tg__kept kept;
    kept.leaves = 0;
    int keeps = (op->flags & TG__KEEPS) != 0;
    if (!out || (keeps ? tg__forward(tape, op, in, n, &args, out, &kept) : op->forward(in, n, &args, out)))
        return NULL;
    if ((tape->checks & TG_CHECK_NONFINITE) && tg__nonfinite(out, out->data))
        return fail_nonfinite(fn, tape, names, in, n), NULL;
    /* A function of constants is a constant, and with gradients off everything is: nothing to record. */
    if (!needs || !tape->grad_enabled || (op->flags & TG__CONSTANT)) return out;
    return record(fn, tape, op, out, in, n, &args, keeps ? &kept : NULL);
}

/* Most ops take one or two inputs: with the count a constant, the loops over inputs unroll. */
tg_tensor *tg__apply(tg_tape *tape, const tg__op *op, tg_tensor *const *in, int n, const tg__args *args_in) {
    if (n == 2) return apply(tape, op, in, 2, args_in);
    if (n == 1) return apply(tape, op, in, 1, args_in);
    return apply(tape, op, in, n, args_in);
}

/* The gradient buffer backward adds into: a parameter's own, or an intermediate's from the arena, zeroed
   unless zero is 0 and the buffer is new, which *fresh then tells (the first contribution assigns). A
   build with assertions fills a fresh buffer with NaN, so that an element a backward fails to write
   shows in every gradient after it. */
/* t's gradient is done with: its block becomes a spare (blocks are 64-byte multiples, room for the link). */
static void give_spare(tg_tape *tape, tg_tensor *t) {
    if (t->grad && !(t->flags & (TG__RETAIN | TG__PARAM))) tg__spare_put(tape, t->grad, block_bytes(t));
    t->grad = NULL;
}

static void *grad_buffer(tg_tape *tape, tg_tensor *t, int zero, unsigned char *fresh) {
    if (!(t->flags & TG__NEEDS)) return NULL;
    if (t->flags & TG__PARAM) t->flags |= TG__GRADDED;
    if (!t->grad) {
        size_t bytes = (size_t)t->numel * tg__dsize(t->dtype);
        if (!(t->grad = spare_take(tape, block_bytes(t), bytes))) t->grad = arena_take(tape, bytes);
        if (t->grad && zero) memset(t->grad, 0, bytes);
#ifndef NDEBUG
        if (t->grad && !zero) memset(t->grad, 0xff, bytes);
#endif
        if (fresh) *fresh = !zero;
    }
    return t->grad;
}

static tg_status check_out(tg_tape *tape, tg_tensor *out, const tg_tensor *grad_out) {
    char a[TG__SHAPE_STR], b[TG__SHAPE_STR];
    if (!tape) return tg__null("tg_backward", "tape");
    if (!out) return tg__null("tg_backward", "out"); /* usually a failed forward: its message stays */
    if (out->tape && out->tape != tape) return tg__fail(TG_EINVAL, "tg_backward: out was recorded on another tape");
    if (out->tape && out->gen != tape->gen)
        return tg__fail(TG_ESTATE, "tg_backward: the tape was reset since out was recorded; record again");
    if (tape->done)
        return tg__fail(TG_ESTATE, "tg_backward: this recording was already backpropagated (%lld nodes); "
                        "call tg_tape_reset and record again", (long long)tape->n_nodes);
    if (!(out->flags & TG__NEEDS))
        return tg__fail(TG_EINVAL, "tg_backward: out %s depends on no parameter (make leaves with tg_param_new)",
                        tg__shape_str(out->ndim, out->shape, a));
    if (grad_out && tg__stale("tg_backward", "grad_out", grad_out)) return TG_ESTATE;
    if (!grad_out) {
        if (out->numel != 1)
            return tg__fail(TG_ESHAPE, "tg_backward: grad_out is NULL but out %s has %lld elements, not 1",
                            tg__shape_str(out->ndim, out->shape, a), (long long)out->numel);
        return TG_OK;
    }
    if (grad_out->dtype != out->dtype)
        return tg__fail(TG_EDTYPE, "tg_backward: grad_out is %s, out is %s", tg__dtype_name(grad_out->dtype),
                        tg__dtype_name(out->dtype));
    if (grad_out->ndim != out->ndim || memcmp(grad_out->shape, out->shape, (size_t)out->ndim * sizeof(int64_t)))
        return tg__fail(TG_ESHAPE, "tg_backward: grad_out %s does not match out %s",
                        tg__shape_str(grad_out->ndim, grad_out->shape, a), tg__shape_str(out->ndim, out->shape, b));
    return TG_OK;
}

static tg_status seed_grad(tg_tape *tape, tg_tensor *out, const tg_tensor *grad_out) {
    unsigned char fresh = 0;
    void *g = grad_buffer(tape, out, 0, &fresh);
    if (!g) return tg__fail(TG_ENOMEM, "tg_backward: out of memory for the output's gradient");
    TG__DISPATCH(out->dtype, {
        T *pg = g;
        const T *go = grad_out ? grad_out->data : NULL;
        /* one loop per case, so that each vectorizes */
        if (fresh && go) memcpy(pg, go, (size_t)out->numel * sizeof(T));
        else if (fresh) for (int64_t i = 0; i < out->numel; i++) pg[i] = 1;
        else if (go) for (int64_t i = 0; i < out->numel; i++) pg[i] += go[i];
        else for (int64_t i = 0; i < out->numel; i++) pg[i] += 1;
    });
    return TG_OK;
}

/* A test build swaps one op's backward for another (thread-local, so parallel tests do not see it), to
   plant a wrong backward in a built-in op and see the checks name it. */
static _Thread_local const tg__op *override_op;
static _Thread_local tg_status (*override_fn)(const tg__node *, const tg_tensor *, void *const *);

void tg__override_backward(const tg__op *op, tg_status (*backward)(const tg__node *, const tg_tensor *, void *const *)) {
    override_op = backward ? op : NULL;
    override_fn = backward;
}

/* planted: override_op, which tg_backward reads once for all its nodes: through the shared library a
   thread-local read is a call (__tls_get_addr). */
static TG__INLINE tg_status call_backward(tg_tape *tape, const tg__node *node, const tg__op *planted,
                                          const tg_tensor *gout, void *const *grads) {
    tg__backward_fn backward = planted == node->op ? override_fn : node->op->backward;
    if (node->op->flags & TG__OPAQUE) return tg__custom_backward(tape, node, backward, gout, grads);
    return backward(node, gout, grads);
}

/* The pattern a checked backward finds in its buffers on its second run: values no gradient is likely
   to cancel, 0.75 + 0.125 (j mod 11) at element j. */
#define PATTERN(p) (0.75 + 0.125 * (double)(p))
#define NEXT(p) ((p) == 10 ? 0 : (p) + 1)

/* Element j fails the proof: from S it gained d1 = R - S the first time, and d2 = G - S - P on S + P (P as
   the dtype holds it, pt); a backward that adds gains the same. A NaN or Inf is the gradient checks' to
   report, not an overwrite. Branch-free, so that the loop over a buffer vectorizes. */
static inline int overwritten(double s0, double r, double g, double pt, double p, double rel) {
    double d1 = r - s0, d2 = g - s0 - pt;
    return (fabs(d1) <= DBL_MAX) & (fabs(d2) <= DBL_MAX) &
           !(fabs(d1 - d2) <= rel * (fabs(s0) + fabs(r) + p + fabs(d1)));
}

/* The proof's scratch: the tape keeps it, grown when a node needs more, so that a gradient check's many
   checked backwards malloc nothing once warm. */
static void *scratch(tg_tape *tape, size_t bytes) {
    if (tape->scratch_size < bytes) {
        void *p = tg__malloc(bytes);
        if (!p) return NULL;
        tg__free(tape->scratch);
        tape->scratch = p, tape->scratch_size = bytes;
    }
    return tape->scratch;
}

tg_status tg__node_backward(tg_tape *tape, const tg__node *node_in, int64_t k, const tg_tensor *gout,
                            void *const *all, int check) {
    if (!check) return call_backward(tape, node_in, override_op, gout, all);
    tg__node copy = *node_in, *node = &copy;
    copy.fresh = NULL; /* proving that it adds: every buffer holds something */
    /* Twice: once on the buffers as they are (S, giving R), once on S + P. A backward that adds gives R + P
       the second time; one that assigns loses P, which a check of a function using the op once (every
       buffer starting at zero) would never see. */
    int n = node->n_in;
    /* keep[i]: S, keep[n + i]: R, keep[2n + i]: the buffer to check, or NULL where none is, or where an
       input used twice (x * x) hands the same buffer again: it is kept, patterned and compared once. */
    size_t need = ((size_t)3 * (size_t)n * sizeof(void *) + 63) & ~(size_t)63;
    for (int i = 0; i < n; i++)
        if (all[i]) need += 2 * (((size_t)node->in[i]->numel * tg__dsize(node->in[i]->dtype) + 63) & ~(size_t)63);
    void **keep = scratch(tape, need);
    if (!keep) return tg__fail(TG_ENOMEM, "tg_backward: out of memory checking node %lld", (long long)k);
    void **grads = keep + 2 * n;
    char *next = (char *)keep + (((size_t)3 * (size_t)n * sizeof(void *) + 63) & ~(size_t)63);
    for (int i = 0; i < n; i++) {
        grads[i] = all[i];
        for (int j = 0; j < i; j++)
            if (all[j] == all[i]) grads[i] = NULL;
        size_t bytes = grads[i] ? (size_t)node->in[i]->numel * tg__dsize(node->in[i]->dtype) : 0;
        keep[i] = next;                                      /* S */
        keep[n + i] = next + ((bytes + 63) & ~(size_t)63);   /* R */
        next += 2 * ((bytes + 63) & ~(size_t)63);
        if (bytes) memcpy(keep[i], grads[i], bytes);
    }
    tg_status st = call_backward(tape, node, override_op, gout, all);
    for (int i = 0; i < n && !st; i++) {
        if (!grads[i]) continue;
        const tg_tensor *x = node->in[i];
        memcpy(keep[n + i], grads[i], (size_t)x->numel * tg__dsize(x->dtype));
        TG__DISPATCH(x->dtype, {
            T *g = grads[i];
            const T *s0 = keep[i];
            for (int64_t j = 0, p = 0; j < x->numel; j++, p = NEXT(p)) g[j] = s0[j] + (T)PATTERN(p);
        });
    }
    if (!st) st = call_backward(tape, node, override_op, gout, all);
    for (int i = 0; i < n && !st; i++) {
        if (!grads[i]) continue;
        const tg_tensor *x = node->in[i];
        TG__DISPATCH(x->dtype, {
            T *g = grads[i];
            const T *s0 = keep[i], *r = keep[n + i];
            const double rel = sizeof(T) == sizeof(float) ? 1e-4 : 1e-10;
            /* one pass without exits finds whether any element fails (a gradient check runs this for every
               node), a second which one */
            int any = 0;
            for (int64_t j = 0, p = 0; j < x->numel; j++, p = NEXT(p))
                any |= overwritten(s0[j], r[j], g[j], (double)(T)PATTERN(p), PATTERN(p), rel);
            for (int64_t j = 0, p = 0; any && j < x->numel && !st; j++, p = NEXT(p)) {
                double d1 = (double)r[j] - s0[j], d2 = (double)g[j] - s0[j] - (double)(T)PATTERN(p);
                char nb[80];
                if (overwritten(s0[j], r[j], g[j], (double)(T)PATTERN(p), PATTERN(p), rel))
                    st = tg__fail(TG_EINVAL, "backward of %s (node %lld) overwrites its gradient of %s instead "
                                  "of adding to it: element %lld gains %.10g, but %.10g when its buffer holds %.10g "
                                  "more", tg__node_name(node), (long long)k,
                                  tg__input_label(tg__names(node->op, &node->args), i, nb, sizeof nb), (long long)j,
                                  d1, d2, PATTERN(p));
            }
            memcpy(g, r, (size_t)x->numel * sizeof(T));
        });
    }
    return st;
}

/* TG_CHECK_SAVED: the tensors node saved hold what they held when it was recorded. Each is hashed once per
   backward, by the first (latest) node that reaches it. */
static TG__INLINE tg_status check_saved(tg_tape *tape, const tg__node *node) {
    char sb[TG__SHAPE_STR];
    for (int i = 0; i < node->n_saved; i++) {
        fingerprint *f = &tape->fps[node->fp[i] - 1];
        if (f->checked) continue;
        tape->n_hashed++;
        if (tg__fp_hash(f->t) != f->hash) {
            const tg__node *by = &tape->nodes[f->node];
            for (int j = 0; j < tg__n_kept(by); j++) /* a kept tensor's only saver is the op that kept it */
                if (by->saved[by->n_in + 1 + j] == f->t)
                    return tg__fail(TG_EMODIFIED, "tg_backward: kept tensor %d (shape %s) of %s (node %lld) was "
                                    "modified between its forward and its backward", j,
                                    tg__shape_str(f->t->ndim, f->t->shape, sb), tg__node_name(by), (long long)f->node);
            return tg__fail(TG_EMODIFIED, "tg_backward: a tensor of shape %s that %s (node %lld) saved for backward "
                            "was modified after it was recorded", tg__shape_str(f->t->ndim, f->t->shape, sb),
                            tg__node_name(by), (long long)f->node);
        }
        f->checked = 1;
    }
    return TG_OK;
}

/* planted: the op whose backward a test swapped (tg__override_backward), read once per tg_backward. */
static TG__INLINE tg_status run_node(tg_tape *tape, int64_t k, const tg__op *planted) {
    tg__node *node = &tape->nodes[k];
    /* A saved tensor's first reader in backward fetches it from far memory (a step's h, its xs): hashing it
       after that read finds it in cache, which at W2 takes a third off what the check costs. So a built-in
       op's saved tensors are verified after its backward, which reads them only as numbers; an op's that
       takes indices (which must be in range before anything follows them) or runs the user's code, before.
       The price: a backward failing with TG_EMODIFIED has added that node's contribution. */
    int early = (node->op->flags & TG__OPAQUE) || node->op->index_inputs;
    tg_status st = node->fp && early ? check_saved(tape, node) : TG_OK;
    if (st) return st;
    /* A TG__FILLS op gets new buffers unzeroed, but not while proving that backwards add, nor for a test's
       planted backward, nor twice in one node (x * x: the second use adds to the first). */
    int fills = (node->op->flags & TG__FILLS) && !tape->check_accumulate && planted != node->op;
    void *few[8]; /* most nodes have few inputs: no arena block for their lists */
    unsigned char few_fresh[8] = {0}, *fresh = few_fresh;
    void **grads = node->n_in <= 8 ? few : arena_take(tape, (size_t)node->n_in * (sizeof *grads + 1));
    if (!grads)
        return tg__fail(TG_ENOMEM, "tg_backward: out of memory at node %lld (%s)", (long long)k, tg__node_name(node));
    if (node->n_in > 8) fresh = memset(grads + node->n_in, 0, (size_t)node->n_in);
    for (int i = 0; i < node->n_in; i++) {
        tg_tensor *x = node->in[i];
        if (fills && x->grad && !(x->flags & TG__PARAM)) /* a parameter's buffer is never fresh */
            for (int j = 0; j < i; j++)
                if (fresh[j] && node->in[j] == x) {
                    memset(x->grad, 0, (size_t)x->numel * tg__dsize(x->dtype));
                    fresh[j] = 0;
                }
        grads[i] = grad_buffer(tape, x, !fills, &fresh[i]);
        if ((x->flags & TG__NEEDS) && !grads[i])
            return tg__fail(TG_ENOMEM, "tg_backward: out of memory at node %lld (%s)", (long long)k,
                            tg__node_name(node));
    }
    tg_tensor gout = *node->out;
    gout.data = node->out->grad;
    gout.grad = NULL;
    gout.flags = 0;
    node->fresh = fills ? fresh : NULL;
    st = tape->check_accumulate ? tg__node_backward(tape, node, k, &gout, grads, 1)
                                : call_backward(tape, node, planted, &gout, grads);
    node->fresh = NULL;
    if (!st && node->fp && !early) st = check_saved(tape, node);
    if (st) return st;
    if (tape->checks & TG_CHECK_NONFINITE)
        for (int i = 0; i < node->n_in; i++)
            if (grads[i] && tg__nonfinite(node->in[i], grads[i])) {
                char shapes[256], nb[80];
                describe_inputs(node->in, node->n_in, shapes, sizeof shapes);
                return tg__fail(TG_ENONFINITE, "%s: non-finite gradient in backward at node %lld, for %s "
                                "(inputs %s)", tg__node_name(node), (long long)k,
                                tg__input_label(tg__names(node->op, &node->args), i, nb, sizeof nb), shapes);
            }
    return TG_OK;
}

tg_status tg_backward(tg_tape *tape, tg_tensor *out, const tg_tensor *grad_out) {
    tg_status st = check_out(tape, out, grad_out);
    if (st) return st;
    /* Backward from a parameter itself touches no node: the recording stays usable. */
    if (out->tape) tape->done = 1;
    st = seed_grad(tape, out, grad_out);
    /* Node k's gradient is complete when k is reached (its consumers come later on the tape), and dies
       once its backward has run, unless retained. */
    const tg__op *planted = override_op;
    for (int64_t k = tape->n_nodes - 1; k >= 0 && !st; k--) {
        tg_tensor *t = tape->nodes[k].out;
        if (t->grad && !(st = run_node(tape, k, planted)) && !(t->flags & TG__RETAIN)) give_spare(tape, t);
    }
    /* A failure leaves the gradients of the nodes not reached; a retained output that got no gradient gets
       zeros. Both need a second walk, which the common case skips (it touches every header again). */
    for (int64_t k = 0; (st || tape->n_retained) && k < tape->n_nodes; k++) {
        tg_tensor *t = tape->nodes[k].out;
        if (!(t->flags & TG__RETAIN)) t->grad = NULL;
        else if (!t->grad && !grad_buffer(tape, t, 1, NULL) && !st)
            st = tg__fail(TG_ENOMEM, "tg_backward: out of memory for a retained gradient");
    }
    return st;
}

tg_status tg_retain_grad(tg_tape *tape, tg_tensor *t) {
    if (!tape) return tg__null("tg_retain_grad", "tape");
    tg_status st = tg__arg("tg_retain_grad", "t", t);
    if (st) return st;
    if (t->tape != tape || t->gen != tape->gen)
        return tg__fail(TG_EINVAL, "tg_retain_grad: t is not an output of this tape's current recording");
    if (!(t->flags & TG__NEEDS))
        return tg__fail(TG_EINVAL, "tg_retain_grad: t depends on no parameter, so it gets no gradient");
    tape->n_retained += !(t->flags & TG__RETAIN);
    t->flags |= TG__RETAIN;
    return TG_OK;
}
