/* tapegrad: the RNN cell and TimeRNN, composed from tape ops.
 *
 * Conventions are the seed notebook's (and "Deep Learning from Scratch 2"'s), not PyTorch's:
 * weights are not transposed and there is one bias.
 *     h_next = tanh(h_prev @ Wh + x @ Wx + b)     x (N,D), h (N,H), Wx (D,H), Wh (H,H), b (H,)
 * Their backward comes from the tape; tg_time_rnn_ref is the hand-derived one, for checking.
 */
#ifndef TG_RNN_H
#define TG_RNN_H

#include "tg_ops.h"

/* One step: x (N,D), h_prev (N,H), Wx (D,H), Wh (H,H), b (H,) -> h_next (N,H), recorded on tape as
   matmul, matmul, add, add (b broadcast over rows), tanh. Errors as any op (NULL and the thread's
   error; a NULL input keeps an earlier failure's message), with shapes checked first so that the
   message speaks the RNN's letters: "tg_rnn_cell: x is (4,5) but Wx is (3,2): want x (N,D) with
   D = 3". TG_EDTYPE when the five are not of one dtype; TG_ESTATE for an output of an ended recording;
   TG_EINVAL for one recorded on another tape ("tg_rnn_cell: b was recorded on another tape").
   An op failing inside (out of memory) is told after the cell's name: "tg_rnn_cell: tg_tanh: ...". */
tg_tensor *tg_rnn_cell(tg_tape *tape, tg_tensor *x, tg_tensor *h_prev,
                       tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b);

typedef struct tg_time_rnn tg_time_rnn;
/* An RNN unrolled over T steps. Borrows Wx (D,H), Wh (H,H) and b (H,): they must outlive the layer,
   and updates to them are seen by the next forward (parameters or constants both work).
   The initial state h0 of a forward is, in order: the state kept by set_state or by the last
   stateful forward, else zeros (the seed's np.zeros).
     stateful:     each forward keeps a copy of its last h_T as the state of the next one. It enters
                   that forward as a constant: no gradient crosses back into the previous call, which
                   is truncated BPTT. reset_state forgets it (at the start of each epoch, say).
     not stateful: forward never changes the state; set_state's h starts every forward until
                   reset_state (the seed ignores set_state here; a decoder handed its encoder's state
                   is the use).
   The layer owns, beside the state, an (N,H) parameter leaf whose data is always zero, one for each
   batch size N it has run a forward with, each kept until tg_time_rnn_free: h0 is the leaf of xs's N
   (plus the state when there is one), so backward leaves dL/dh0 in its gradient, which
   tg_time_rnn_dh reads. It is not one of the model's parameters (an optimizer never sees it).
   Wx, Wh and b that have no name yet are named by their roles, "Wx", "Wh" and "b" (tg_tensor_set_name;
   naming a leaf the first time is safe while other threads read it), and the leaves "h0", so that the
   tape's drawings show them by name.
   NULL with TG_EINVAL (a NULL argument), TG_ESHAPE (Wx not 2-d, Wh not (H,H), b not (H,)),
   TG_EDTYPE (not one dtype) or TG_ENOMEM (which may leave some of the weights named).
   A layer belongs to one thread at a time: forward writes its state and leaves. Two threads' layers may
   borrow the same weights only to evaluate (no backward reaching them; see tapegrad.h's memory model). */
tg_time_rnn *tg_time_rnn_new(tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b, int stateful);
void tg_time_rnn_free(tg_time_rnn *layer);
/* xs (N,T,D) -> hs (N,T,H), recorded on tape: one linear, xs @ Wx + b for every step at once, then per
   step the recurrent part (select of the step's projection, addmm adding h_prev @ Wh to it, tanh), then one
   stack, and one add first when a state is set. The cell's arithmetic, in the seed's order. T >= 1.
   N is free, but a kept state fixes it: xs of another N is refused (TG_ESHAPE) until reset_state or
   set_state. A failed forward leaves the kept state as it was. Forwards of several N may share one
   recording (a smaller last batch): the first forward of each new N allocates its (N,H) leaf, which
   stays until tg_time_rnn_free, so memory grows with the number of distinct N seen. Errors: NULL
   with TG_EINVAL (a NULL argument keeps an earlier failure's message; xs or a weight recorded on
   another tape), TG_ESHAPE (xs not (N,T,D) with the layer's D, T = 0, N against the state),
   TG_EDTYPE, TG_ESTATE (xs or a weight an output of an ended recording), TG_ENOMEM, or any op's
   error, told with the step it happened at:
   "tg_time_rnn_forward: step 17: tg_tanh: out of memory ..."; a set state that is not finite, under
   TG_CHECK_NONFINITE, as "tg_time_rnn_forward: the initial state: tg_detach: non-finite ...". */
tg_tensor *tg_time_rnn_forward(tg_tape *tape, tg_time_rnn *layer, tg_tensor *xs);
/* The same forward from an initial state that is a tensor of this recording, for state handed between
   layers (a decoder started from its encoder's last h): h0 (N,H) may be a leaf or any op output, and
   backward reaches whatever computed it; NULL means zeros. *hT (when hT is not NULL) receives the last
   step's h (N,H), a tape tensor equal to hs[:, T-1, :], for the next layer. It neither reads nor writes
   the layer's kept state, whatever stateful says (tg_time_rnn_dh is left as the last forward's), and
   records no add for h0. Errors as tg_time_rnn_forward's, and for h0: TG_ESHAPE (not (N,H) with xs's N
   and the layer's H), TG_EDTYPE, TG_EINVAL (recorded on another tape), TG_ESTATE. On failure *hT is
   NULL. */
tg_tensor *tg_time_rnn_forward_from(tg_tape *tape, tg_time_rnn *layer, tg_tensor *xs, tg_tensor *h0,
                                    tg_tensor **hT);
/* Copies h (N,H) as the initial state of the following forwards (see tg_time_rnn_new): h may be
   changed or freed afterwards, and set_state may come between a forward and its backward (the
   recording holds its own copy). Because it copies, no gradient can reach h: an h that needs one
   (tg_tensor_requires_grad) is refused with TG_EINVAL, whose message points to tg_time_rnn_forward_from
   (the gradient flows) and tg_detach(h) (the cut made on purpose). TG_EINVAL (NULL), TG_ESTATE (h an output of an ended recording, whose
   data the next recording owns), TG_ESHAPE (not 2-d, or H differs from Wx's), TG_EDTYPE, TG_ENOMEM; on
   failure the state is as it was. */
tg_status tg_time_rnn_set_state(tg_time_rnn *layer, const tg_tensor *h);
/* Forgets the state: the next forward starts from zeros. NULL is ignored. */
void tg_time_rnn_reset_state(tg_time_rnn *layer);
/* (N,H): dL/dh0, the gradient of the loss with respect to the initial hidden state of the last
   forward, once that forward's recording has been backpropagated (the seed's self.dh; what a decoder
   hands back to its encoder). N is the last forward's. Between a forward and its backward it reads
   zeros. Owned by the layer and overwritten by the next call: copy it to keep it. NULL with
   TG_EINVAL (layer NULL) or TG_ESTATE (no forward has run yet).
   Precisely, it is the gradient of the layer's leaf for that N (see tg_time_rnn_new), which each
   forward of that N starts from and clears: the sum of dL/dh0 over every forward of that N in the
   recordings backpropagated after the last forward of that N. In the usual loop (one forward per
   recording, backpropagated before the next forward, whatever the batch sizes) that is exactly the
   last forward's dL/dh0. When one recording holds two forwards of the layer with the same N (two
   sequences through one layer, two chunks in one recording), it is the sum of their dL/dh0; forwards
   of another N have leaves of their own and add nothing. */
tg_tensor *tg_time_rnn_dh(tg_time_rnn *layer);

/* The seed's formulas, fixed, with no tape (layers/rnn_ref.c, to read beside the seed notebook).
   xs (N,T,D), h0 (N,H), Wx, Wh, b, dhs (N,T,H) -> hs (N,T,H), dxs (N,T,D), dWx (D,H), dWh (H,H),
   db (H,), dh0 (N,H), where dhs is dL/dhs and the outputs are the gradients of that L. Outputs are
   caller-allocated, must not overlap the inputs, and are overwritten, not added to. h0 NULL means
   zeros; dhs NULL runs the forward only; any gradient output may be NULL when not wanted. f32 or f64
   (one dtype throughout); the arithmetic is done in double either way. TG_EINVAL (NULL xs, Wx, Wh,
   b or hs; a NULL keeps an earlier failure's message), TG_ESHAPE (the message names the tensor, its
   shape and the one wanted), TG_EDTYPE, TG_ESTATE (an output of an ended recording), TG_ENOMEM (one
   scratch buffer of 2 N H doubles). */
tg_status tg_time_rnn_ref(tg_tensor *xs, tg_tensor *h0, tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b,
                          tg_tensor *dhs, tg_tensor *hs, tg_tensor *dxs, tg_tensor *dWx,
                          tg_tensor *dWh, tg_tensor *db, tg_tensor *dh0);

#endif
