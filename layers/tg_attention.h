/* tapegrad: attention over an encoder's hidden states, the book's ("Deep Learning from Scratch 2",
 * ch. 8: AttentionWeight + WeightSum, TimeAttention) for all decoder steps at once, composed from ops.
 *
 * For each batch row n and decoder step t, with the encoder's S states hs_enc[n] (S,H) and the decoder's
 * state h = hs_dec[n, t] (H,):
 *     score[s]  = hs_enc[n, s] . h                      the dot product (no weights: the book's form)
 *     weight    = softmax(score)                        over the S encoder steps
 *     context   = sum_s weight[s] hs_enc[n, s]          (H,)
 * As ops over the whole batch: weights = softmax(hs_dec @ transpose(hs_enc), axis -1) (N,T,S), context =
 * weights @ hs_enc (N,T,H): two batched matmuls, so the backward is the tape's. tg_attention_ref is the
 * book's hand-derived backward, for checking.
 *
 * A decoder usually concatenates the context with its own state before the output affine (the book's
 * AttentionSeq2seq: affine(concat(context, hs_dec))).
 */
#ifndef TG_ATTENTION_H
#define TG_ATTENTION_H

#include "tg_ops.h"

/* hs_enc (N,S,H), hs_dec (N,T,H) -> context (N,T,H), recorded on tape as a transpose, a matmul, a softmax
   and a matmul; *weights (when weights is not NULL) receives the attention weights (N,T,S), a tape tensor
   (rows sum to 1; draw them as the book's figure 8-26). S and T >= 1; f32 or f64, one dtype. NULL (and
   *weights NULL) with TG_EINVAL (a NULL argument, keeping an earlier failure; a tensor of another tape),
   TG_ESHAPE (not 3-d, N or H differing, S or T = 0: the message names both shapes), TG_EDTYPE,
   TG_ESTATE (an output of an ended recording), TG_ENOMEM, or an op's error after "tg_attention: ". */
tg_tensor *tg_attention(tg_tape *tape, tg_tensor *hs_enc, tg_tensor *hs_dec, tg_tensor **weights);

/* The book's TimeAttention with no tape (layers/attention.c, to read beside the book): forward, and given
   dcontext = dL/dcontext (N,T,H), the hand-derived backward: WeightSum's (dweights = dcontext . hs_enc,
   dhs_enc = weights^T dcontext), then AttentionWeight's (dscore = weights * (dweights - sum(weights *
   dweights)), dhs_enc += dscore^T hs_dec, dhs_dec = dscore hs_enc). hs_enc (N,S,H), hs_dec (N,T,H) ->
   context (N,T,H), weights (N,T,S), dhs_enc (N,S,H), dhs_dec (N,T,H). Outputs are caller-allocated, must
   not overlap the inputs, and are overwritten; each may be NULL when not wanted; dcontext NULL runs the
   forward only. f32 or f64, one dtype throughout, computed in double. TG_EINVAL (hs_enc or hs_dec NULL;
   keeps an earlier failure), TG_ESHAPE (naming the tensor, its shape and the one wanted), TG_EDTYPE,
   TG_ESTATE, TG_ENOMEM (scratch of 2 S doubles). */
tg_status tg_attention_ref(tg_tensor *hs_enc, tg_tensor *hs_dec, tg_tensor *dcontext, tg_tensor *context,
                           tg_tensor *weights, tg_tensor *dhs_enc, tg_tensor *dhs_dec);

#endif
