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

/* One step: (N,D), (N,H), (D,H), (H,H), (H,) -> (N,H). Errors as any op; shapes are checked with a
   message in the RNN's own terms. */
tg_tensor *tg_rnn_cell(tg_tape *tape, tg_tensor *x, tg_tensor *h_prev,
                       tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b);

typedef struct tg_time_rnn tg_time_rnn;
/* An RNN unrolled over T steps. Borrows Wx (D,H), Wh (H,H) and b (H,): they must outlive the layer,
   and updates to them are seen by the next forward. stateful: the last hidden state of a forward is
   kept (as a constant: truncated BPTT) and starts the next forward; otherwise every forward starts
   from zeros (or from tg_time_rnn_set_state's h). NULL with TG_EINVAL/TG_ESHAPE/TG_ENOMEM. */
tg_time_rnn *tg_time_rnn_new(tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b, int stateful);
void tg_time_rnn_free(tg_time_rnn *layer);
/* (N,T,D) -> (N,T,H), recorded on tape. */
tg_tensor *tg_time_rnn_forward(tg_tape *tape, tg_time_rnn *layer, tg_tensor *xs);
/* Copies h (N,H) as the initial state of the next forward. */
tg_status tg_time_rnn_set_state(tg_time_rnn *layer, const tg_tensor *h);
/* Forgets the state: the next forward starts from zeros. */
void tg_time_rnn_reset_state(tg_time_rnn *layer);
/* (N,H): dL/dh0, the gradient with respect to the initial hidden state of the last forward, after
   backward (what an encoder hands its decoder). Owned by the layer; NULL before any backward. */
tg_tensor *tg_time_rnn_dh(tg_time_rnn *layer);

/* The seed's formulas, fixed, with no tape. Outputs are caller-allocated; h0 NULL means zeros.
   xs (N,T,D), h0 (N,H), dhs (N,T,H) -> hs (N,T,H), dxs (N,T,D), dWx (D,H), dWh (H,H), db (H,),
   dh0 (N,H). Gradients are overwritten, not added. */
tg_status tg_time_rnn_ref(tg_tensor *xs, tg_tensor *h0, tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b,
                          tg_tensor *dhs, tg_tensor *hs, tg_tensor *dxs, tg_tensor *dWx,
                          tg_tensor *dWh, tg_tensor *db, tg_tensor *dh0);

#endif
