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
 *
 * The state and the leaves are kept by recurrent.c (tg__rstate), which the LSTM and GRU share.
 */
#include "recurrent_internal.h"
#include "rnn_internal.h"
#include "tg_internal.h"
#include "tg_rnn.h"

struct tg_time_rnn {
    tg_tensor *Wx, *Wh, *b; /* borrowed: the caller's parameters */
    tg__rstate st;          /* the state, the zero leaves and dh (recurrent.c) */
};

/* Declared in rnn_internal.h: rnn_ref.c checks its parameters here too. */
int tg__rnn_bad_params(const char *fn, const tg_tensor *Wx, const tg_tensor *Wh, const tg_tensor *b) {
    char s1[TG__SHAPE_STR], s2[TG__SHAPE_STR];
    if (tg__tensor_arg(fn, "Wx", Wx) || tg__tensor_arg(fn, "Wh", Wh) || tg__tensor_arg(fn, "b", b)) return 1;
    if (tg_tensor_ndim(Wx) != 2) {
        tg__fail(TG_ESHAPE, "%s: Wx is %s, want 2 dims (D,H)", fn,
                 tg__shape_str(tg_tensor_ndim(Wx), tg_tensor_shape(Wx), s1));
        return 1;
    }
    int64_t H = tg_tensor_shape(Wx)[1];
    if (!tg__same_shape(Wh, 2, (int64_t[]){H, H})) {
        tg__fail(TG_ESHAPE, "%s: Wh is %s but Wx is %s: want Wh (H,H) with H = %lld", fn,
                 tg__shape_str(tg_tensor_ndim(Wh), tg_tensor_shape(Wh), s1),
                 tg__shape_str(2, tg_tensor_shape(Wx), s2), (long long)H);
        return 1;
    }
    if (!tg__same_shape(b, 1, &H)) {
        tg__fail(TG_ESHAPE, "%s: b is %s but Wx is %s: want b (H,) with H = %lld", fn,
                 tg__shape_str(tg_tensor_ndim(b), tg_tensor_shape(b), s1),
                 tg__shape_str(2, tg_tensor_shape(Wx), s2), (long long)H);
        return 1;
    }
    return tg__weights_bad_dtype(fn, Wx, Wh, b);
}

/* ---- the cell -------------------------------------------------------------------------------- */

tg_tensor *tg_rnn_cell(tg_tape *tape, tg_tensor *x, tg_tensor *h_prev, tg_tensor *Wx, tg_tensor *Wh,
                       tg_tensor *b) {
    static const char fn[] = "tg_rnn_cell";
    char s1[TG__SHAPE_STR], s2[TG__SHAPE_STR], s3[TG__SHAPE_STR];
    if (tg__null_arg(fn, "tape", tape) || tg__tensor_arg(fn, "x", x) || tg__tensor_arg(fn, "h_prev", h_prev) ||
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
    if (!tg__same_shape(h_prev, 2, (int64_t[]){N, H})) {
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
    if (tg__other_tape(fn, tape, (tg_tensor *[]){x, h_prev, Wx, Wh, b},
                       (const char *[]){"x", "h_prev", "Wx", "Wh", "b"}, 5))
        return NULL;
    /* The seed's order, t = h_prev @ Wh + x @ Wx + b, one statement each: C leaves the order of a
       call's arguments open, and the tape (and its printout) should read the same everywhere. */
    tg_tensor *hWh = tg_matmul(tape, h_prev, Wh);
    tg_tensor *xWx = tg_matmul(tape, x, Wx);
    tg_tensor *t = tg_add(tape, tg_add(tape, hWh, xWx), b);
    tg_tensor *h = tg_tanh(tape, t);
    if (!h) tg__context("%s: ", fn); /* what is left to fail: memory, or a non-finite value */
    return h;
}

/* ---- TimeRNN --------------------------------------------------------------------------------- */

tg_time_rnn *tg_time_rnn_new(tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b, int stateful) {
    if (tg__rnn_bad_params("tg_time_rnn_new", Wx, Wh, b) || tg__name_weights("tg_time_rnn_new", Wx, Wh, b)) return NULL;
    tg_time_rnn *layer = tg__calloc(sizeof *layer);
    if (!layer) {
        tg__fail(TG_ENOMEM, "tg_time_rnn_new: out of memory for the layer");
        return NULL;
    }
    layer->Wx = Wx;
    layer->Wh = Wh;
    layer->b = b;
    tg__rstate_init(&layer->st, 1, tg_tensor_dtype(Wx), tg_tensor_shape(Wx)[1], stateful);
    return layer;
}

void tg_time_rnn_free(tg_time_rnn *layer) {
    if (!layer) return;
    tg__rstate_free(&layer->st);
    tg__free(layer);
}

/* The forwards' shared checks of tape, layer and xs, in fn's words. */
static int bad_forward(const char *fn, tg_tape *tape, tg_time_rnn *layer, tg_tensor *xs) {
    return tg__null_arg(fn, "tape", tape) || tg__null_arg(fn, "layer", layer) || tg__tensor_arg(fn, "xs", xs) ||
           tg__xs_bad(fn, xs, layer->Wx) ||
           tg__other_tape(fn, tape, (tg_tensor *[]){xs, layer->Wx, layer->Wh, layer->b},
                          (const char *[]){"xs", "Wx", "Wh", "b"}, 4);
}

/* Both forwards from the initial state h: hs, and the last step's h into *hT. */
static tg_tensor *run(const char *fn, tg_tape *tape, tg_time_rnn *layer, tg_tensor *xs, tg_tensor *h, tg_tensor **hT) {
    int64_t T = tg_tensor_shape(xs)[1];
    /* The seed's loop, t = h_prev @ Wh + x_t @ Wx + b, with the input projection of every step in one GEMM
       over all N T rows (P = xs @ Wx + b, one linear), so that backward makes dWx and dxs in one GEMM each
       too; per step only the recurrent part, tanh(h_prev @ Wh + P[:, t, :]). hs[:, t, :] = h becomes a
       stack of the T h's. The list lives in the tape's arena, so a warm training loop does no malloc here. */
    tg_tensor **steps = tg__arena_alloc(tape, (size_t)T * sizeof *steps, 0);
    if (!steps) {
        tg__fail(TG_ENOMEM, "%s: out of memory for a list of T = %lld steps", fn, (long long)T);
        return NULL;
    }
    tg_tensor *P = tg_linear(tape, xs, layer->Wx, layer->b);
    if (!P) {
        tg__context("%s: the input projection: ", fn);
        return NULL;
    }
    /* An op failing inside (out of memory, a non-finite value) is told with the step it failed at. */
    for (int64_t t = 0; t < T; t++) {
        /* P_t + h @ Wh: the GEMM adds onto a copy of P_t (one op, not a matmul and an add) */
        tg_tensor *Pt = tg_select(tape, P, 1, t), *pre = tg_addmm(tape, Pt, h, layer->Wh);
        h = tg_tanh(tape, pre);
        /* Backward needs neither (addmm does not save c, tanh saves its output): their memory serves the
           next step, so that the tape keeps per step only h, as the seed's cache does. */
        tg__tape_release(tape, Pt), tg__tape_release(tape, pre);
        if (!h) {
            tg__context("%s: step %lld: ", fn, (long long)t);
            return NULL;
        }
        steps[t] = h;
    }
    tg__tape_release(tape, P);
    tg_tensor *hs = tg_stack(tape, steps, (int)T, 1);
    if (!hs) tg__context("%s: stacking the %lld steps: ", fn, (long long)T);
    *hT = hs ? h : NULL;
    return hs;
}

tg_tensor *tg_time_rnn_forward(tg_tape *tape, tg_time_rnn *layer, tg_tensor *xs) {
    static const char fn[] = "tg_time_rnn_forward";
    tg_tensor *h; /* h0: zero, or zero + detach(state); then h_T */
    if (bad_forward(fn, tape, layer, xs) || tg__rstate_begin(&layer->st, fn, tape, xs, &h)) return NULL;
    tg_tensor *hs = run(fn, tape, layer, xs, h, &h);
    /* Only now, with every op done, the kept state changes: a failed forward leaves it as it was. */
    if (hs) tg__rstate_end(&layer->st, &h);
    return hs;
}

tg_tensor *tg_time_rnn_forward_from(tg_tape *tape, tg_time_rnn *layer, tg_tensor *xs, tg_tensor *h0,
                                    tg_tensor **hT) {
    static const char fn[] = "tg_time_rnn_forward_from";
    tg_tensor *h, *last;
    if (hT) *hT = NULL;
    if (bad_forward(fn, tape, layer, xs) ||
        tg__rstate_from(&layer->st, fn, tape, xs, &h0, (const char *const[]){"h0"}, &h))
        return NULL;
    tg_tensor *hs = run(fn, tape, layer, xs, h, &last);
    if (hs && hT) *hT = last;
    return hs;
}

tg_status tg_time_rnn_set_state(tg_time_rnn *layer, const tg_tensor *h) {
    static const char fn[] = "tg_time_rnn_set_state";
    if (tg__null_arg(fn, "layer", layer)) return tg_last_status();
    return tg__rstate_set(&layer->st, fn, &h, (const char *const[]){"h"});
}

void tg_time_rnn_reset_state(tg_time_rnn *layer) {
    if (layer) layer->st.has_state = 0;
}

tg_tensor *tg_time_rnn_dh(tg_time_rnn *layer) {
    if (tg__null_arg("tg_time_rnn_dh", "layer", layer)) return NULL;
    return tg__rstate_grad(&layer->st, "tg_time_rnn_dh", 0);
}
