/* The RNN cell and TimeRNN, composed from tape ops: their backward is the tape's, and the seed's
 * hand-derived one (rnn_ref.c) is only there to check it against.
 *
 * Shapes, with the seed's letters: x (N,D), h (N,H), Wx (D,H), Wh (H,H), b (H,), xs (N,T,D),
 * hs (N,T,H).
 *
 * How TimeRNN gets dh = dL/dh0. The tape only fills gradients of parameters (and of tensors passed
 * to tg_retain_grad, which die with the tape), so the initial state has to be a parameter-like leaf
 * the layer owns and outlives the tape: `zero`, an (N,H) tg_param_new whose data stays zero forever.
 * A forward starts from
 *     h0 = zero                           no state: the seed's np.zeros((N,H))
 *     h0 = zero + detach(state)           state from set_state or from the last stateful forward
 * so h0 has the right value, and since d h0 / d zero = I, backward leaves dL/dh0 in zero's gradient.
 * The forward clears that gradient first, and tg_time_rnn_dh copies it out. Keeping zero's data
 * constant matters: matmul saves h0 for backward, and a leaf rewritten between forward and backward
 * would be caught (TG_CHECK_SAVED) or, unchecked, give wrong gradients.
 *
 * One zero leaf (and its dh) per batch size N the layer has seen, each kept until tg_time_rnn_free:
 * a recording may hold forwards of several N (a smaller last batch), and freeing a leaf it saved
 * would have backward read freed memory. The layer cannot know when a recording is done with a leaf
 * (it may never be backpropagated, or outlive a tg_tape_reset of another tape), so it never frees one.
 * Every forward of one N shares that N's leaf, so when one recording holds two such forwards, backward
 * adds both their dL/dh0 into it and dh is their sum (see tg_time_rnn_dh). A leaf per forward would
 * make dh exactly the last forward's, but costs two mallocs per forward, in a loop that otherwise
 * does none once warm, and, never freed for the reason above, grows without bound; recycling leaves
 * safely would need the tape to say which recordings are done. The sum is documented instead.
 * The detach copies the state into the tape, so set_state or a stateful forward may rewrite the
 * layer's state buffer while an earlier recording still waits for its backward. The state enters as
 * a constant: no gradient flows into the previous chunk, which is what truncated BPTT means.
 */
#include <limits.h>
#include <string.h>
#include "rnn_internal.h"
#include "tg_internal.h"
#include "tg_rnn.h"

/* The initial-state leaf of one batch size: zero (N,H), a param whose data is always 0, whose gradient
   is dL/dh0; dh (N,H), what tg_time_rnn_dh hands out, a copy of zero's gradient. */
typedef struct {
    tg_tensor *zero, *dh;
} h0_leaf;

struct tg_time_rnn {
    tg_tensor *Wx, *Wh, *b; /* borrowed: the caller's parameters */
    tg_dtype dtype;
    int64_t D, H;
    int stateful;
    int has_state;     /* state holds the initial hidden state of the next forward */
    tg_tensor *state;  /* (N,H), no gradient; NULL until set_state or a stateful forward */
    h0_leaf *leaves;   /* one per batch size seen, in the order first seen; never freed before the layer */
    int n_leaves, cap_leaves;
    int last;          /* leaves[last] is the last forward's; -1 before the first forward */
};

/* A NULL argument that came from an earlier failed call keeps that call's message (tg__null): errors
   chain, so a caller may check once at the end. */
static int null_arg(const char *fn, const char *name, const void *p) {
    if (p) return 0;
    tg__null(fn, name);
    return 1;
}

static int same_shape(const tg_tensor *t, int ndim, const int64_t *shape) {
    if (tg_tensor_ndim(t) != ndim) return 0;
    for (int i = 0; i < ndim; i++)
        if (tg_tensor_shape(t)[i] != shape[i]) return 0;
    return 1;
}

/* Declared in rnn_internal.h: rnn_ref.c checks its parameters here too. */
int tg__rnn_bad_params(const char *fn, const tg_tensor *Wx, const tg_tensor *Wh, const tg_tensor *b) {
    char s1[TG__SHAPE_STR], s2[TG__SHAPE_STR];
    if (null_arg(fn, "Wx", Wx) || null_arg(fn, "Wh", Wh) || null_arg(fn, "b", b)) return 1;
    if (tg_tensor_ndim(Wx) != 2) {
        tg__fail(TG_ESHAPE, "%s: Wx is %s, want 2 dims (D,H)", fn,
                 tg__shape_str(tg_tensor_ndim(Wx), tg_tensor_shape(Wx), s1));
        return 1;
    }
    int64_t H = tg_tensor_shape(Wx)[1];
    if (!same_shape(Wh, 2, (int64_t[]){H, H})) {
        tg__fail(TG_ESHAPE, "%s: Wh is %s but Wx is %s: want Wh (H,H) with H = %lld", fn,
                 tg__shape_str(tg_tensor_ndim(Wh), tg_tensor_shape(Wh), s1),
                 tg__shape_str(2, tg_tensor_shape(Wx), s2), (long long)H);
        return 1;
    }
    if (!same_shape(b, 1, &H)) {
        tg__fail(TG_ESHAPE, "%s: b is %s but Wx is %s: want b (H,) with H = %lld", fn,
                 tg__shape_str(tg_tensor_ndim(b), tg_tensor_shape(b), s1),
                 tg__shape_str(2, tg_tensor_shape(Wx), s2), (long long)H);
        return 1;
    }
    tg_dtype dt = tg_tensor_dtype(Wx);
    if (tg_tensor_dtype(Wh) != dt || tg_tensor_dtype(b) != dt) {
        tg__fail(TG_EDTYPE, "%s: Wx is %s, Wh %s and b %s: want one dtype", fn, tg__dtype_name(dt),
                 tg__dtype_name(tg_tensor_dtype(Wh)), tg__dtype_name(tg_tensor_dtype(b)));
        return 1;
    }
    return 0;
}

/* ---- the cell -------------------------------------------------------------------------------- */

tg_tensor *tg_rnn_cell(tg_tape *tape, tg_tensor *x, tg_tensor *h_prev, tg_tensor *Wx, tg_tensor *Wh,
                       tg_tensor *b) {
    static const char fn[] = "tg_rnn_cell";
    char s1[TG__SHAPE_STR], s2[TG__SHAPE_STR], s3[TG__SHAPE_STR];
    if (null_arg(fn, "tape", tape) || null_arg(fn, "x", x) || null_arg(fn, "h_prev", h_prev) ||
        tg__rnn_bad_params(fn, Wx, Wh, b))
        return NULL;
    /* The ops would catch these too, but in terms of (4,3) @ (5,2); the RNN's letters say which
       argument is off. */
    int64_t D = tg_tensor_shape(Wx)[0], H = tg_tensor_shape(Wx)[1];
    if (tg_tensor_ndim(x) != 2 || tg_tensor_shape(x)[1] != D) {
        tg__fail(TG_ESHAPE, "%s: x is %s but Wx is %s: want x (N,D) with D = %lld", fn,
                 tg__shape_str(tg_tensor_ndim(x), tg_tensor_shape(x), s1),
                 tg__shape_str(2, tg_tensor_shape(Wx), s2), (long long)D);
        return NULL;
    }
    int64_t N = tg_tensor_shape(x)[0];
    if (!same_shape(h_prev, 2, (int64_t[]){N, H})) {
        tg__fail(TG_ESHAPE, "%s: h_prev is %s, want (N,H) = (%lld,%lld) from x %s and Wx %s", fn,
                 tg__shape_str(tg_tensor_ndim(h_prev), tg_tensor_shape(h_prev), s1), (long long)N,
                 (long long)H, tg__shape_str(2, tg_tensor_shape(x), s2),
                 tg__shape_str(2, tg_tensor_shape(Wx), s3));
        return NULL;
    }
    if (tg_tensor_dtype(x) != tg_tensor_dtype(Wx) || tg_tensor_dtype(h_prev) != tg_tensor_dtype(Wx)) {
        tg__fail(TG_EDTYPE, "%s: x is %s and h_prev %s but the weights are %s", fn,
                 tg__dtype_name(tg_tensor_dtype(x)), tg__dtype_name(tg_tensor_dtype(h_prev)),
                 tg__dtype_name(tg_tensor_dtype(Wx)));
        return NULL;
    }
    /* The seed's order, t = h_prev @ Wh + x @ Wx + b, one statement each: C leaves the order of a
       call's arguments open, and the tape (and its printout) should read the same everywhere. */
    tg_tensor *hWh = tg_matmul(tape, h_prev, Wh);
    tg_tensor *xWx = tg_matmul(tape, x, Wx);
    tg_tensor *t = tg_add(tape, tg_add(tape, hWh, xWx), b);
    return tg_tanh(tape, t);
}

/* ---- TimeRNN --------------------------------------------------------------------------------- */

tg_time_rnn *tg_time_rnn_new(tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b, int stateful) {
    if (tg__rnn_bad_params("tg_time_rnn_new", Wx, Wh, b)) return NULL;
    tg_time_rnn *layer = tg__calloc(sizeof *layer);
    if (!layer) {
        tg__fail(TG_ENOMEM, "tg_time_rnn_new: out of memory for the layer");
        return NULL;
    }
    layer->Wx = Wx;
    layer->Wh = Wh;
    layer->b = b;
    layer->dtype = tg_tensor_dtype(Wx);
    layer->D = tg_tensor_shape(Wx)[0];
    layer->H = tg_tensor_shape(Wx)[1];
    layer->stateful = stateful != 0;
    layer->last = -1;
    return layer;
}

void tg_time_rnn_free(tg_time_rnn *layer) {
    if (!layer) return;
    tg_tensor_free(layer->state);
    for (int i = 0; i < layer->n_leaves; i++) {
        tg_tensor_free(layer->leaves[i].zero);
        tg_tensor_free(layer->leaves[i].dh);
    }
    tg__free(layer->leaves);
    tg__free(layer);
}

/* Finds, or makes, the h0 leaf of batch size N into *leaf, and sizes state for a stateful layer, so
   that nothing can fail after the forward's ops have run. A failure leaves the layer as it was (the
   leaf array may have grown, with the same leaves in it). */
static tg_status size_buffers(tg_time_rnn *layer, int64_t N, int *leaf) {
    int64_t shape[2] = {N, layer->H};
    int i = 0;
    while (i < layer->n_leaves && tg_tensor_shape(layer->leaves[i].zero)[0] != N) i++;
    if (i == layer->n_leaves) {
        h0_leaf *leaves = layer->leaves;
        if (i == layer->cap_leaves) {
            int cap = layer->cap_leaves ? 2 * layer->cap_leaves : 4;
            leaves = i < INT_MAX / 2 ? tg__malloc((size_t)cap * sizeof *leaves) : NULL;
            if (leaves) {
                if (i) memcpy(leaves, layer->leaves, (size_t)i * sizeof *leaves);
                layer->cap_leaves = cap; /* the old array's contents are all in the new one */
                tg__free(layer->leaves);
                layer->leaves = leaves;
            }
        }
        tg_tensor *zero = leaves ? tg_param_new(layer->dtype, 2, shape) : NULL;
        tg_tensor *dh = zero ? tg_tensor_new(layer->dtype, 2, shape) : NULL;
        if (!dh) {
            tg_tensor_free(zero);
            return tg__fail(TG_ENOMEM, "tg_time_rnn_forward: out of memory for the (%lld,%lld) initial "
                            "state", (long long)N, (long long)layer->H);
        }
        layer->leaves[i] = (h0_leaf){zero, dh};
        layer->n_leaves++;
    }
    *leaf = i;
    if (layer->stateful && (!layer->state || tg_tensor_shape(layer->state)[0] != N)) {
        /* Only reached without a state (a kept state of another N is refused before): safe to drop. */
        tg_tensor *state = tg_tensor_new(layer->dtype, 2, shape);
        if (!state)
            return tg__fail(TG_ENOMEM, "tg_time_rnn_forward: out of memory for the (%lld,%lld) state",
                            (long long)N, (long long)layer->H);
        tg_tensor_free(layer->state);
        layer->state = state;
    }
    return TG_OK;
}

tg_tensor *tg_time_rnn_forward(tg_tape *tape, tg_time_rnn *layer, tg_tensor *xs) {
    static const char fn[] = "tg_time_rnn_forward";
    char s1[TG__SHAPE_STR], s2[TG__SHAPE_STR];
    if (null_arg(fn, "tape", tape) || null_arg(fn, "layer", layer) || null_arg(fn, "xs", xs)) return NULL;
    if (tg_tensor_ndim(xs) != 3 || tg_tensor_shape(xs)[2] != layer->D) {
        tg__fail(TG_ESHAPE, "%s: xs is %s but Wx is %s: want xs (N,T,D) with D = %lld", fn,
                 tg__shape_str(tg_tensor_ndim(xs), tg_tensor_shape(xs), s1),
                 tg__shape_str(2, tg_tensor_shape(layer->Wx), s2), (long long)layer->D);
        return NULL;
    }
    if (tg_tensor_dtype(xs) != layer->dtype) {
        tg__fail(TG_EDTYPE, "%s: xs is %s but the layer's weights are %s", fn,
                 tg__dtype_name(tg_tensor_dtype(xs)), tg__dtype_name(layer->dtype));
        return NULL;
    }
    int64_t N = tg_tensor_shape(xs)[0], T = tg_tensor_shape(xs)[1];
    if (T < 1 || T > INT_MAX) { /* tg_stack counts its inputs in int */
        tg__fail(TG_ESHAPE, "%s: xs is %s: T = %lld steps, want 1..%d", fn,
                 tg__shape_str(3, tg_tensor_shape(xs), s1), (long long)T, INT_MAX);
        return NULL;
    }
    if (layer->has_state && tg_tensor_shape(layer->state)[0] != N) {
        tg__fail(TG_ESHAPE, "%s: the layer's state is %s (from set_state or the last stateful forward) "
                 "but xs %s has N = %lld; reset_state or set_state first", fn,
                 tg__shape_str(2, tg_tensor_shape(layer->state), s1),
                 tg__shape_str(3, tg_tensor_shape(xs), s2), (long long)N);
        return NULL;
    }
    int leaf = -1;
    if (size_buffers(layer, N, &leaf)) return NULL;

    tg_tensor *zero = layer->leaves[leaf].zero;
    tg_zero_grad(zero); /* dh starts from this forward (tg_time_rnn_dh says what it sums) */
    layer->last = leaf;
    tg_tensor *h = zero;
    if (layer->has_state) h = tg_add(tape, zero, tg_detach(tape, layer->state));

    /* The seed's loop, t = h_prev @ Wh + x_t @ Wx + b, with the input projection of every step in one GEMM
       over all N T rows (P = xs @ Wx + b, one linear), so that backward makes dWx and dxs in one GEMM each
       too; per step only the recurrent part, tanh(h_prev @ Wh + P[:, t, :]). hs[:, t, :] = h becomes a
       stack of the T h's. The list lives in the tape's arena, so a warm training loop does no malloc here. */
    tg_tensor **steps = h ? tg__arena_alloc(tape, (size_t)T * sizeof *steps, 0) : NULL;
    if (h && !steps) {
        tg__fail(TG_ENOMEM, "%s: out of memory for a list of T = %lld steps", fn, (long long)T);
        return NULL;
    }
    tg_tensor *P = h ? tg_linear(tape, xs, layer->Wx, layer->b) : NULL;
    for (int64_t t = 0; P && h && t < T; t++) {
        tg_tensor *hWh = tg_matmul(tape, h, layer->Wh), *Pt = tg_select(tape, P, 1, t), *pre = tg_add(tape, hWh, Pt);
        h = tg_tanh(tape, pre);
        /* Backward needs none of these three (add saves nothing, tanh its output): their memory serves the
           next step, so that the tape keeps per step only h, as the seed's cache does. */
        tg__tape_release(tape, hWh), tg__tape_release(tape, Pt), tg__tape_release(tape, pre);
        if (h) steps[t] = h;
    }
    tg__tape_release(tape, P);
    if (!P || !h) return NULL;
    tg_tensor *hs = tg_stack(tape, steps, (int)T, 1);
    if (!hs) return NULL;

    /* Only now, with every op done, the kept state changes: a failed forward leaves it as it was. */
    if (layer->stateful) {
        memcpy(tg_tensor_data(layer->state), tg_tensor_data(h),
               (size_t)tg_tensor_numel(h) * tg__dsize(layer->dtype));
        layer->has_state = 1;
    }
    return hs;
}

tg_status tg_time_rnn_set_state(tg_time_rnn *layer, const tg_tensor *h) {
    static const char fn[] = "tg_time_rnn_set_state";
    char s1[TG__SHAPE_STR];
    if (null_arg(fn, "layer", layer) || null_arg(fn, "h", h)) return tg_last_status();
    if (tg_tensor_ndim(h) != 2 || tg_tensor_shape(h)[1] != layer->H)
        return tg__fail(TG_ESHAPE, "%s: h is %s, want (N,H) with H = %lld", fn,
                        tg__shape_str(tg_tensor_ndim(h), tg_tensor_shape(h), s1), (long long)layer->H);
    if (tg_tensor_dtype(h) != layer->dtype)
        return tg__fail(TG_EDTYPE, "%s: h is %s but the layer's weights are %s", fn,
                        tg__dtype_name(tg_tensor_dtype(h)), tg__dtype_name(layer->dtype));
    if (!layer->state || tg_tensor_shape(layer->state)[0] != tg_tensor_shape(h)[0]) {
        /* No recording holds the state buffer (forward copies it into the tape), so it may go. */
        tg_tensor *state = tg_tensor_new(layer->dtype, 2, tg_tensor_shape(h));
        if (!state)
            return tg__fail(TG_ENOMEM, "%s: out of memory for a %s state", fn,
                            tg__shape_str(2, tg_tensor_shape(h), s1));
        tg_tensor_free(layer->state);
        layer->state = state;
    }
    memcpy(layer->state->data, h->data, (size_t)h->numel * tg__dsize(layer->dtype));
    layer->has_state = 1;
    return TG_OK;
}

void tg_time_rnn_reset_state(tg_time_rnn *layer) {
    if (layer) layer->has_state = 0;
}

tg_tensor *tg_time_rnn_dh(tg_time_rnn *layer) {
    if (null_arg("tg_time_rnn_dh", "layer", layer)) return NULL;
    if (layer->last < 0) {
        tg__fail(TG_ESTATE, "tg_time_rnn_dh: no forward has run: there is no initial state to differentiate");
        return NULL;
    }
    h0_leaf *l = &layer->leaves[layer->last];
    memcpy(tg_tensor_data(l->dh), tg_tensor_grad(l->zero),
           (size_t)tg_tensor_numel(l->dh) * tg__dsize(layer->dtype));
    return l->dh;
}
