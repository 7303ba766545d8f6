/* tapegrad: the LSTM and GRU cells and their Time layers, composed from tape ops.
 *
 * Conventions are the seed book's ("Deep Learning from Scratch 2"), not PyTorch's: weights are not
 * transposed, one bias, and all gates come from one affine map, sliced in the book's order.
 *     LSTM   A = x @ Wx + h_prev @ Wh + b           x (N,D), h and c (N,H), Wx (D,4H), Wh (H,4H), b (4H,)
 *            f = sigmoid(A[:, :H])      g = tanh(A[:, H:2H])
 *            i = sigmoid(A[:, 2H:3H])   o = sigmoid(A[:, 3H:])
 *            c_next = f * c_prev + g * i            h_next = o * tanh(c_next)
 *     GRU    Wx (D,3H), Wh (H,3H), b (3H,) hold the z, r and h~ parts in that order (Wxz = Wx[:, :H], ...)
 *            z  = sigmoid(x @ Wxz + h_prev @ Whz + bz)
 *            r  = sigmoid(x @ Wxr + h_prev @ Whr + br)
 *            h~ = tanh(x @ Wxh + (r * h_prev) @ Whh + bh)      the reset gate acts before Whh
 *            h_next = (1 - z) * h_prev + z * h~
 * PyTorch's LSTM orders its gates i, f, g, o and transposes its weights, with two biases; its GRU applies
 * r after Whh (r * (h Whh + bhh)) and swaps the roles of z and 1 - z: its weights do not map onto these
 * GRU's. Their backward comes from the tape; tg_time_lstm_ref and tg_time_gru_ref are the hand-derived
 * ones, for checking.
 *
 * The Time layers run the input side of all steps as one tg_linear over xs (N,T,D) -> (N,T,4H) (or 3H):
 * one GEMM over N*T rows, then a tg_select of step t's rows; only h_prev @ Wh is per step. The other
 * "Time" layers of an RNN language model are ordinary ops over leading dims, with no types of their own:
 * tg_embedding of (N,T) indices, tg_linear of (N,T,H), tg_cross_entropy of (N,T,V) logits, tg_dropout
 * of any shape (tg_ops.h).
 *
 * State, dh and ownership are as TimeRNN's (tg_rnn.h), with the LSTM's c carried beside h:
 * stateful layers keep their last h_T (and c_T) as the next forward's constant initial state (truncated
 * BPTT); set_state hands one in; reset_state forgets it (zeros). The layer owns, per batch size N seen,
 * an (N,H) parameter leaf of zeros for h0 (and one for c0) that each forward starts from, so backward
 * leaves dL/dh0 (dL/dc0) in its gradient; tg_time_lstm_dh and _dc copy it out. Those leaves are not
 * model parameters, and stay until the layer is freed.
 *
 * Errors, as every op's: NULL (or a status) and the thread's error. A NULL argument is TG_EINVAL and
 * keeps an earlier failure's message (errors chain). Shapes are checked before any op runs, so the
 * message speaks the layer's letters ("tg_lstm_cell: h_prev is (3,2), want (N,H) = (4,2) from x (4,3)
 * and Wh (2,8)"); TG_EINVAL for a tensor recorded on another tape ("tg_gru_cell: x was recorded on
 * another tape"); TG_EDTYPE when the tensors are not of one dtype; TG_ENOMEM; or any op's error, told
 * after the function's name ("tg_lstm_cell: tg_mul: out of memory ...").
 */
#ifndef TG_LSTM_H
#define TG_LSTM_H

#include "tg_ops.h"

/* ---- LSTM ---- */

/* One step: x (N,D), h_prev (N,H), c_prev (N,H), Wx (D,4H), Wh (H,4H), b (4H,) -> h_next (N,H), and
   c_next (N,H) into *c_next (required; NULL there on failure). Both outputs are the tape's. Recorded as
   linear (x @ Wx + b), addmm (A = that + h_prev @ Wh), four slices of A with a sigmoid or tanh each, then
   mul, mul, add for c_next and tanh, mul for h_next. H is Wh's rows. TG_ESHAPE for Wx not (D,4H), Wh
   not (H,4H), b not (4H,), x not (N,D), h_prev or c_prev not (N,H); TG_EDTYPE. */
tg_tensor *tg_lstm_cell(tg_tape *tape, tg_tensor *x, tg_tensor *h_prev, tg_tensor *c_prev,
                        tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b, tg_tensor **c_next);

typedef struct tg_time_lstm tg_time_lstm;
/* An LSTM unrolled over T steps. Borrows Wx (D,4H), Wh (H,4H) and b (4H,): they must outlive the layer,
   and updates to them are seen by the next forward. stateful as TimeRNN's (tg_rnn.h): each forward keeps
   copies of its last h_T and c_T as the next one's initial state, entering it as constants; a stateless
   layer starts every forward from set_state's state, or zeros. H is Wh's rows. Names the weights and
   the initial-state leaves ("h0", "c0") as tg_time_rnn_new does. NULL with TG_EINVAL (a NULL argument),
   TG_ESHAPE (Wh not (H,4H), Wx not (D,4H), b not (4H,)), TG_EDTYPE or TG_ENOMEM. */
tg_time_lstm *tg_time_lstm_new(tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b, int stateful);
/* Frees the layer, its state and its initial-state leaves (never the borrowed weights). NULL is ignored. */
void tg_time_lstm_free(tg_time_lstm *layer);
/* xs (N,T,D) -> hs (N,T,H), T >= 1, recorded on tape: one add each for h0 and c0 when a state is set,
   one linear for the input side of every step, then per step a select and the cell's recurrent ops (as
   tg_lstm_cell's but its linear), and one stack. A kept state fixes N: xs of another N is refused
   (TG_ESHAPE) until reset_state or set_state. A failed forward leaves the kept state as it was. Forwards
   of several N may share one recording; each new N costs two (N,H) leaves, kept until
   tg_time_lstm_free. NULL with TG_EINVAL, TG_ESHAPE (xs not (N,T,D) with the layer's D, T = 0, N against
   the state), TG_EDTYPE, TG_ENOMEM, or any op's error. */
tg_tensor *tg_time_lstm_forward(tg_tape *tape, tg_time_lstm *layer, tg_tensor *xs);
/* The same forward from h0 and c0 (N,H), tensors of this recording (leaves or op outputs; NULL means
   zeros), for state handed between layers: backward reaches whatever computed them. *hT and *cT (each
   when not NULL) receive the last step's h and c (N,H) as tape tensors (h_T equals hs[:, T-1, :]; c_T
   as computed), for the next layer. It neither reads nor writes the layer's kept state, whatever
   stateful says (dh and dc stay the last forward's). Errors as tg_time_lstm_forward's, and for h0 or
   c0: TG_ESHAPE (not (N,H) with xs's N and the layer's H), TG_EDTYPE, TG_EINVAL (another tape),
   TG_ESTATE. On failure *hT and *cT are NULL. */
tg_tensor *tg_time_lstm_forward_from(tg_tape *tape, tg_time_lstm *layer, tg_tensor *xs, tg_tensor *h0,
                                     tg_tensor *c0, tg_tensor **hT, tg_tensor **cT);
/* Copies h (N,H) and c (N,H) as the initial state of the following forwards; c NULL means zeros (the
   book's set_state(h, c=None)). h and c may be changed or freed afterwards, and set_state may come
   between a forward and its backward. Because it copies, no gradient can reach h or c: one that needs
   a gradient (tg_tensor_requires_grad) is refused with TG_EINVAL, whose message points to
   tg_time_lstm_forward_from (the gradient flows) and tg_detach (the cut made on purpose).
   TG_EINVAL (layer or h NULL), TG_ESHAPE (h not (N,H) with the
   layer's H, c not h's shape), TG_EDTYPE, TG_ENOMEM; on failure the state is as it was. */
tg_status tg_time_lstm_set_state(tg_time_lstm *layer, const tg_tensor *h, const tg_tensor *c);
/* Forgets the state (h and c): the next forward starts from zeros. NULL is ignored. */
void tg_time_lstm_reset_state(tg_time_lstm *layer);
/* (N,H): dL/dh0 and dL/dc0, the gradients of the loss with respect to the last forward's initial h and
   c, once its recording has been backpropagated (the book's TimeLSTM keeps only dh; dc is what an
   encoder handing over both h and c needs back). N is the last forward's; zeros between a forward and
   its backward. Owned by the layer and overwritten by the next call of the same function: copy to keep.
   Precisely, each is the gradient of the layer's leaf for that N, as tg_time_rnn_dh's: two forwards of
   one N in one recording give the sum of their gradients. NULL with TG_EINVAL (layer NULL) or
   TG_ESTATE (no forward has run yet). */
tg_tensor *tg_time_lstm_dh(tg_time_lstm *layer);
tg_tensor *tg_time_lstm_dc(tg_time_lstm *layer);

/* The book's LSTM and TimeLSTM, forward and hand-derived backward, with no tape (layers/lstm_ref.c, to
   read beside the book). xs (N,T,D), h0 (N,H), c0 (N,H), Wx (D,4H), Wh (H,4H), b (4H,), dhs (N,T,H) ->
   hs (N,T,H), cs (N,T,H), dxs (N,T,D), dWx (D,4H), dWh (H,4H), db (4H,), dh0 (N,H), dc0 (N,H), where
   dhs is dL/dhs (no loss term reads cs: the last step's dc starts at 0, as the book's) and the outputs
   are the gradients of that L. Outputs are caller-allocated, must not overlap the inputs, and are
   overwritten. h0 or c0 NULL mean zeros; dhs NULL runs the forward only; cs and every gradient output
   may be NULL when not wanted. f32 or f64, one dtype throughout, computed in double. TG_EINVAL (NULL xs,
   Wx, Wh, b or hs; keeps an earlier failure), TG_ESHAPE (naming the tensor, its shape and the one
   wanted, in these letters), TG_EDTYPE, TG_ENOMEM (one scratch buffer). */
tg_status tg_time_lstm_ref(tg_tensor *xs, tg_tensor *h0, tg_tensor *c0, tg_tensor *Wx, tg_tensor *Wh,
                           tg_tensor *b, tg_tensor *dhs, tg_tensor *hs, tg_tensor *cs, tg_tensor *dxs,
                           tg_tensor *dWx, tg_tensor *dWh, tg_tensor *db, tg_tensor *dh0, tg_tensor *dc0);

/* ---- GRU ---- */

/* One step: x (N,D), h_prev (N,H), Wx (D,3H), Wh (H,3H), b (3H,) -> h_next (N,H). Recorded as linear
   (x @ Wx + b), two slices of Wh (its z,r columns and its h~ columns), then per the formulas above:
   slice, matmul, add, one sigmoid for z and r together, two slices, slice, mul, matmul, add, tanh, and
   h_next as h_prev + z * (h~ - h_prev) (sub, mul, add: the same value as (1 - z) * h_prev + z * h~ in
   three ops instead of five). TG_ESHAPE for Wx not (D,3H), Wh not (H,3H), b not (3H,), x not (N,D),
   h_prev not (N,H); TG_EDTYPE. */
tg_tensor *tg_gru_cell(tg_tape *tape, tg_tensor *x, tg_tensor *h_prev,
                       tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b);

typedef struct tg_time_gru tg_time_gru;
/* A GRU unrolled over T steps: as tg_time_lstm_new, with Wx (D,3H), Wh (H,3H), b (3H,) and h alone
   for the state. */
tg_time_gru *tg_time_gru_new(tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b, int stateful);
/* Frees the layer, its state and its leaves (never the borrowed weights). NULL is ignored. */
void tg_time_gru_free(tg_time_gru *layer);
/* xs (N,T,D) -> hs (N,T,H), as tg_time_lstm_forward: an add for h0 when a state is set, one linear,
   Wh's two slices once per forward, per step a select and the cell's recurrent ops, one stack. */
tg_tensor *tg_time_gru_forward(tg_tape *tape, tg_time_gru *layer, tg_tensor *xs);
/* As tg_time_lstm_forward_from, with h alone. */
tg_tensor *tg_time_gru_forward_from(tg_tape *tape, tg_time_gru *layer, tg_tensor *xs, tg_tensor *h0,
                                    tg_tensor **hT);
/* Copies h (N,H) as the initial state, as tg_time_lstm_set_state without c (an h that needs a gradient
   is refused the same way). */
tg_status tg_time_gru_set_state(tg_time_gru *layer, const tg_tensor *h);
/* Forgets the state: the next forward starts from zeros. NULL is ignored. */
void tg_time_gru_reset_state(tg_time_gru *layer);
/* (N,H): dL/dh0 of the last forward, as tg_time_lstm_dh. */
tg_tensor *tg_time_gru_dh(tg_time_gru *layer);

/* The book's GRU and TimeGRU with no tape (layers/lstm_ref.c), as tg_time_lstm_ref without c:
   xs (N,T,D), h0 (N,H), Wx (D,3H), Wh (H,3H), b (3H,), dhs (N,T,H) -> hs (N,T,H), dxs (N,T,D),
   dWx (D,3H), dWh (H,3H), db (3H,), dh0 (N,H). */
tg_status tg_time_gru_ref(tg_tensor *xs, tg_tensor *h0, tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b,
                          tg_tensor *dhs, tg_tensor *hs, tg_tensor *dxs, tg_tensor *dWx,
                          tg_tensor *dWh, tg_tensor *db, tg_tensor *dh0);

#endif
