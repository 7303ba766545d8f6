/* layers/ internals shared by TimeRNN (rnn.c), the gated layers (lstm.c) and their reference
 * (lstm_ref.c): argument checks in a layer's letters, and the carried state of a Time layer with its
 * zero leaves. Never installed. The state's design is explained at the top of rnn.c; here it holds one
 * state (h) or two (h, c).
 */
#ifndef TG_RECURRENT_INTERNAL_H
#define TG_RECURRENT_INTERNAL_H

#include "tg_ops.h"

/* 1 with TG_EINVAL "fn: name is NULL" when p is NULL (keeping an earlier failure, tg__null), else 0. */
int tg__null_arg(const char *fn, const char *name, const void *p);
/* A tensor argument: as tg__null_arg, and an output of a recording that tg_tape_reset ended refused
   with TG_ESTATE (tg__arg) before its data, which the next recording owns, is read. */
int tg__tensor_arg(const char *fn, const char *name, const tg_tensor *t);
/* 0 when none of the n tensors t[k] (named names[k], none NULL) was recorded on a tape other than
   tape; else 1 with TG_EINVAL naming fn and the first such tensor. A layer checks this before its
   first op, which would otherwise tell it in the op's words ("tg_add: b ..."). */
int tg__other_tape(const char *fn, const tg_tape *tape, tg_tensor *const *t, const char *const *names, int n);
/* 0 when Wx, Wh and b are of one dtype; else 1 with TG_EDTYPE naming the three. */
int tg__weights_bad_dtype(const char *fn, const tg_tensor *Wx, const tg_tensor *Wh, const tg_tensor *b);
/* Whether t has exactly this shape. */
int tg__same_shape(const tg_tensor *t, int ndim, const int64_t *shape);

/* The one check of a gated layer's parameters, for the cell, the Time layer and the reference:
   Wh (H,GH), Wx (D,GH) and b (GH,), H taken from Wh's rows, all of one dtype; G = 4 for the LSTM, 3 for
   the GRU. Returns 0 when they are fine; else 1 with the thread's error set and fn first in the message:
   TG_EINVAL for a NULL, TG_ESHAPE naming the tensor, its shape and the one wanted ("tg_lstm_cell: Wx is
   (3,6) but Wh is (2,8): want Wx (D,4H) with H = 2"), TG_EDTYPE. */
int tg__gated_bad_params(const char *fn, int G, const tg_tensor *Wx, const tg_tensor *Wh, const tg_tensor *b);
/* Names the borrowed weights of a Time layer by their roles, "Wx", "Wh" and "b", where they have no name
   yet (tg__name_once), for the tape's drawings. 1 (TG_ENOMEM) or 0; a failure may leave some named. */
int tg__name_weights(const char *fn, tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b);

/* A cell's inputs against its weights: x (N,D) with D = Wx's rows, then each of the n states st[k]
   (named names[k]) (N,H), all of Wx's dtype. Wx and Wh have passed tg__gated_bad_params. 0 or 1 as it. */
int tg__cell_bad_inputs(const char *fn, tg_tensor *x, tg_tensor *const *st, const char *const *names, int n,
                        const tg_tensor *Wx, const tg_tensor *Wh);

/* A Time layer's xs: (N,T,D) with D = Wx's rows, 1 <= T <= INT_MAX (tg_stack counts in int), Wx's dtype.
   0 or 1 as tg__gated_bad_params. */
int tg__xs_bad(const char *fn, const tg_tensor *xs, const tg_tensor *Wx);

/* ---- the carried state of a Time layer ----
 * n states of (N,H) each (h; or h and c), carried between forwards as TimeRNN carries h: the kept state
 * enters a forward as zero + detach(state), and zero, a parameter leaf of zeros the layer owns (one per
 * state and batch size N, kept until the layer is freed), collects dL/dstate0 in its gradient. */

#define TG__MAX_STATES 2

typedef struct {
    tg_tensor *zero[TG__MAX_STATES]; /* (N,H) params whose data stays 0: their gradients are dL/dh0, dL/dc0 */
    tg_tensor *d[TG__MAX_STATES];    /* (N,H) what the dh/dc accessors hand out: copies of those gradients */
} tg__zleaf;

typedef struct {
    int n;                            /* states carried: 1 or 2 */
    tg_dtype dtype;
    int64_t H;
    int stateful;
    int has_state;                    /* state holds the initial state of the next forward */
    tg_tensor *state[TG__MAX_STATES]; /* (N,H) each, no gradient; NULL until set_state or a stateful forward */
    tg__zleaf *leaves;                /* one per batch size seen, in the order first seen */
    int n_leaves, cap_leaves;
    int last;                         /* leaves[last] is the last forward's; -1 before the first forward */
} tg__rstate;

void tg__rstate_init(tg__rstate *s, int n, tg_dtype dtype, int64_t H, int stateful);
/* Frees what s holds (not s). */
void tg__rstate_free(tg__rstate *s);
/* Starts a forward of xs (N,T,D), whose shape has been checked: refuses an N other than a kept state's
   (TG_ESHAPE), finds or makes N's leaves (and a stateful layer's state buffers), so that nothing can fail
   after the forward's ops but those ops, clears the leaves' gradients and makes them the last, then
   writes the initial states into init[0..n): zero, or zero + detach(state) recorded on tape. fn names
   the forward in messages. A failure before the ops leaves s as it was. */
tg_status tg__rstate_begin(tg__rstate *s, const char *fn, tg_tape *tape, const tg_tensor *xs, tg_tensor **init);
/* Starts a forward_from of xs (N,T,D), whose shape has been checked: init[k] = given[k] (named names[k];
   each NULL or an (N,H) tensor of the layer's dtype and of this tape or none), or for NULL a constant of
   zeros on tape. The kept state, the leaves' gradients and which leaves are the last stay as they are.
   TG_ESHAPE, TG_EDTYPE, TG_EINVAL (another tape), TG_ESTATE, TG_ENOMEM, naming fn. */
tg_status tg__rstate_from(tg__rstate *s, const char *fn, tg_tape *tape, const tg_tensor *xs, tg_tensor *const *given,
                          const char *const *names, tg_tensor **init);
/* Ends a forward that succeeded: a stateful layer keeps copies of last[0..n) as its state. */
void tg__rstate_end(tg__rstate *s, tg_tensor *const *last);
/* Copies st[0] (N,H) and st[1..n) (each NULL for zeros, else st[0]'s shape) as the kept state, named
   names[k] in messages. TG_EINVAL (st[0] NULL, or a tensor that needs a gradient: the copy would cut it),
   TG_ESHAPE, TG_EDTYPE, TG_ENOMEM; on failure the state is
   as it was. */
tg_status tg__rstate_set(tg__rstate *s, const char *fn, const tg_tensor *const *st, const char *const *names);
/* dL/d(state k)0 of the last forward, copied into the layer's d[k]; TG_ESTATE before any forward. */
tg_tensor *tg__rstate_grad(tg__rstate *s, const char *fn, int k);

#endif
