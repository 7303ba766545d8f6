/* tapegrad: ops.
 *
 * Every op takes the tape first, computes its output now, and records a node when any input needs a
 * gradient (an op on constants records nothing and its output needs no gradient). Outputs belong to
 * the tape. Inputs must share one dtype (f32 or f64; there is no promotion) and must be leaves or
 * outputs of this tape's current recording.
 *
 * Errors: NULL, with TG_EINVAL (bad axis, index, count or a tensor from another tape), TG_ESHAPE,
 * TG_EDTYPE, TG_ENOMEM or TG_ENONFINITE (TG_CHECK_NONFINITE on and the output not finite); the
 * message names the op and the values. A NULL input returns NULL and keeps the first message.
 *
 * Shapes are written with letters: (M,K) @ (K,N) -> (M,N).
 */
#ifndef TG_OPS_H
#define TG_OPS_H

#include "tg_tape.h"

/* (M,K) @ (K,N) -> (M,N), through OpenBLAS GEMM. Backward: dA += dY B^T, dB += A^T dY (GEMM with
   beta = 1, no temporaries). Saves a and b. */
tg_tensor *tg_matmul(tg_tape *tape, tg_tensor *a, tg_tensor *b);

/* Elementwise a + b, a - b and a * b with NumPy broadcasting: shapes are aligned at the right, and
   each pair of dims must be equal or one of them 1, which is stretched; (N,H) + (H,) adds a bias to
   every row. Backward sums the gradient over the stretched dims. tg_mul saves a and b. */
tg_tensor *tg_add(tg_tape *tape, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_sub(tg_tape *tape, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_mul(tg_tape *tape, tg_tensor *a, tg_tensor *b);

/* y = tanh(x), any shape. Backward: dx += dy (1 - y^2), from the saved output. */
tg_tensor *tg_tanh(tg_tape *tape, tg_tensor *x);
/* y = alpha x, any shape. */
tg_tensor *tg_scale(tg_tape *tape, tg_tensor *x, double alpha);

/* x[..., start:stop, ...] along axis, keeping the axis: (A,n,B) -> (A,stop-start,B).
   0 <= axis < ndim and 0 <= start <= stop <= n, else TG_EINVAL. Backward adds into the region of
   x's gradient, so T slices of a (N,T,D) tensor cost O(N T D) in backward. */
tg_tensor *tg_slice(tg_tape *tape, tg_tensor *x, int axis, int64_t start, int64_t stop);
/* x[..., index, ...] along axis, dropping the axis: (A,n,B) -> (A,B), as NumPy's xs[:, t, :].
   0 <= index < n, else TG_EINVAL. Backward as tg_slice. */
tg_tensor *tg_select(tg_tape *tape, tg_tensor *x, int axis, int64_t index);
/* n tensors of one shape S stacked along a new axis (0 <= axis <= ndim(S)): n of (A,B) with
   axis 1 -> (A,n,B). The inverse of tg_select; builds hs from T steps' h. */
tg_tensor *tg_stack(tg_tape *tape, tg_tensor *const *xs, int n, int axis);
/* Same data, new shape of equal element count (a copy: outputs never alias). */
tg_tensor *tg_reshape(tg_tape *tape, tg_tensor *x, int ndim, const int64_t *shape);

/* Sum (mean) of all elements, as a 0-d tensor: a loss, or a scalar to test a gradient with.
   The mean of an empty tensor is NaN, as in NumPy. */
tg_tensor *tg_sum(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_mean(tg_tape *tape, tg_tensor *x);

/* A copy of x that the tape treats as a constant: no gradient flows back through it. */
tg_tensor *tg_detach(tg_tape *tape, tg_tensor *x);

/* A user's op: one static table entry, called through tg_custom. The output has inputs[0]'s dtype;
   the inputs and the output are saved for backward (and fingerprinted). `user` must outlive the
   tape's backward. A callback returns TG_OK or a status; a failure reaches the caller of tg_custom
   or tg_backward with the op's name. */
typedef struct tg_op_def {
    const char *name; /* shown in errors, tg_tape_print and the DOT dump */
    /* Writes the output's rank (0..8) into *ndim and its dims into shape[0..*ndim). */
    tg_status (*shape)(tg_tensor *const *inputs, int n_inputs, void *user, int *ndim, int64_t *shape);
    /* Writes the output; out is zero-filled on entry. */
    tg_status (*forward)(tg_tensor *const *inputs, int n_inputs, tg_tensor *out, void *user);
    /* Adds the vector-Jacobian product of grad_out into grads[i] (input i's layout, float or double)
       for each i whose grads[i] is not NULL. */
    tg_status (*backward)(tg_tensor *const *inputs, int n_inputs, tg_tensor *out, tg_tensor *grad_out,
                          void *const *grads, void *user);
} tg_op_def;

/* Runs op on n_inputs (1..64) tensors of one dtype and records it like a built-in op.
   Errors as every op, plus the status a callback returns (message: "<name>: forward failed: ..."). */
tg_tensor *tg_custom(tg_tape *tape, const tg_op_def *op, tg_tensor *const *inputs, int n_inputs,
                     void *user);

#endif
