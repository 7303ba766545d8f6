/* tapegrad: ops.
 *
 * Every op takes the tape first, computes its output now, and records a node when any input needs a
 * gradient (an op on constants records nothing and its output needs no gradient; so does every op
 * while tg_tape_set_grad_enabled(tape, 0)). Outputs belong to the tape and never alias an input.
 * Value inputs must share one dtype (f32 or f64; there is no promotion); index inputs are TG_I64.
 * All must be leaves or outputs of this tape's current recording.
 *
 * Every op is one entry of a table (ops/ops.c) holding its name, shape rule, forward, backward and
 * what it saves; the function below checks its scalar arguments and runs the shared path
 * (inputs -> shape -> output -> forward -> record), so the tape can rerun and print any node.
 *
 * Axes: wherever an op takes an axis, -ndim <= axis < ndim, and a negative one counts from the end
 * as in NumPy (-1 is the last); tg_stack's new axis counts in the result's dims (-1 appends).
 *
 * Errors: NULL, with TG_EINVAL (bad axis, index, count or a tensor from another tape), TG_ESHAPE,
 * TG_EDTYPE, TG_ESTATE (an output of an ended recording), TG_ENOMEM or TG_ENONFINITE
 * (TG_CHECK_NONFINITE on and the output not finite); the message names the op and the values.
 * A NULL input returns NULL and keeps the first message.
 *
 * Shapes are written with letters: (M,K) @ (K,N) -> (M,N); S is any shape.
 */
#ifndef TG_OPS_H
#define TG_OPS_H

#include "tg_rng.h"
#include "tg_tape.h"

/* (M,K) @ (K,N) -> (M,N), through OpenBLAS GEMM, and batches of them as numpy.matmul for operands of 2 or
   more dims: (..., M, K) @ (..., K, N) -> (..., M, N), the leading (batch) dims broadcast by NumPy's rules
   (aligned at the right, each pair equal or one of them 1; (2,1,3,4) @ (5,4,2) -> (2,5,3,2)). One GEMM per
   batch element; a batch over a 2-d b is one GEMM over all of a's rows. Backward: dA += dY B^T,
   dB += A^T dY per batch element (GEMM with beta = 1, no temporaries), summed over the batch dims an
   operand was broadcast along. Saves a and b. TG_ESHAPE naming both shapes for an operand of fewer than
   2 dims (1-d vectors are not promoted, unlike NumPy), K differing, batch dims that do not broadcast, or
   dims beyond BLAS's int range. */
tg_tensor *tg_matmul(tg_tape *tape, tg_tensor *a, tg_tensor *b);

/* x (...,K) @ W (K,M) + b (M,) -> (...,M): an affine map of the last axis, as one GEMM over all the
   leading rows (an (N,T,H) input is one (N*T,H) @ (H,M), not T small ones). b may be NULL (no bias).
   x has at least 1 dim. Backward: dx += dy W^T, dW += x^T dy, db += the column sums of dy. Saves x
   and W. */
tg_tensor *tg_linear(tg_tape *tape, tg_tensor *x, tg_tensor *W, tg_tensor *b);

/* c (...,M) + x (...,K) @ W (K,M) -> (...,M), c of the output's shape exactly (torch.addmm broadcasts c;
   a row of biases is tg_linear's b). The GEMM adds onto a copy of c (beta = 1), so that a recurrent step's
   (x Wx + b) + h Wh is one op, not a matmul and an add: a pass over (N,4H) less each way. x's leading dims
   are rows, as tg_linear's. Backward: dc += dy, dx += dy W^T, dW += x^T dy. Saves x and W. TG_ESHAPE
   naming the shapes for tg_linear's reasons (x 0-d, W not 2-d, K differing, dims beyond BLAS's int range)
   and for c not of x @ W's shape. */
tg_tensor *tg_addmm(tg_tape *tape, tg_tensor *c, tg_tensor *x, tg_tensor *W);

/* Elementwise a + b, a - b, a * b and a / b with NumPy broadcasting: shapes are aligned at the right,
   and each pair of dims must be equal or one of them 1, which is stretched; (N,H) + (H,) adds a bias
   to every row. Backward sums the gradient over the stretched dims. tg_mul saves a and b; tg_div
   saves a, b and its output (division by zero gives IEEE's Inf or NaN, as NumPy's). */
tg_tensor *tg_add(tg_tape *tape, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_sub(tg_tape *tape, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_mul(tg_tape *tape, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_div(tg_tape *tape, tg_tensor *a, tg_tensor *b);

/* Elementwise functions of one tensor, any shape S -> S.
   tg_tanh     tanh x;              dx += dy (1 - y^2), from the saved output.
   tg_scale    alpha x;             dx += alpha dy.
   tg_neg      -x.
   tg_add_scalar  x + c.
   tg_exp      e^x;                 dx += dy y (saves y). Overflows to Inf past ~88.7 (f32) or ~709.8
                                    (f64), as NumPy's.
   tg_log      ln x;                dx += dy / x (saves x). ln 0 = -Inf, ln of a negative = NaN.
   tg_sqrt     sqrt x;              dx += dy / (2 y) (saves y); Inf at x = 0.
   tg_sigmoid  1 / (1 + e^-x);      dx += dy y (1 - y) (saves y). Computed as 1 / (1 + e^-x) for
                                    x >= 0 and e^x / (1 + e^x) below, so no exp overflows: finite
                                    (0 or 1 at worst) for any finite x, |x| up to 1e4 and beyond.
   tg_relu     max(x, 0);           dx += dy where x > 0, so the gradient at 0 is 0, as PyTorch's
                                    (saves x). A NaN stays NaN, as in NumPy's maximum. */
tg_tensor *tg_tanh(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_scale(tg_tape *tape, tg_tensor *x, double alpha);
tg_tensor *tg_neg(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_add_scalar(tg_tape *tape, tg_tensor *x, double c);
tg_tensor *tg_exp(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_log(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_sqrt(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_sigmoid(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_relu(tg_tape *tape, tg_tensor *x);

/* x[..., start:stop, ...] along axis, keeping the axis: (A,n,B) -> (A,stop-start,B).
   0 <= start <= stop <= n, else TG_EINVAL (start and stop do not count from the end). Backward adds into the region of
   x's gradient, so T slices of a (N,T,D) tensor cost O(N T D) in backward. */
tg_tensor *tg_slice(tg_tape *tape, tg_tensor *x, int axis, int64_t start, int64_t stop);
/* x[..., index, ...] along axis, dropping the axis: (A,n,B) -> (A,B), as NumPy's xs[:, t, :].
   0 <= index < n, else TG_EINVAL. Backward as tg_slice. */
tg_tensor *tg_select(tg_tape *tape, tg_tensor *x, int axis, int64_t index);
/* n tensors of one shape S stacked along a new axis (-ndim(S)-1 <= axis <= ndim(S)): n of (A,B) with
   axis 1 -> (A,n,B). The inverse of tg_select; builds hs from T steps' h. */
tg_tensor *tg_stack(tg_tape *tape, tg_tensor *const *xs, int n, int axis);
/* Same data, new shape of equal element count (a copy: outputs never alias). */
tg_tensor *tg_reshape(tg_tape *tape, tg_tensor *x, int ndim, const int64_t *shape);
/* x with axes axis0 and axis1 swapped (NumPy's swapaxes), as a copy: (A,B,C) with (0,2) -> (C,B,A).
   Equal axes give a copy of x. */
tg_tensor *tg_transpose(tg_tape *tape, tg_tensor *x, int axis0, int axis1);
/* n >= 1 tensors joined along an existing axis: shapes equal but on that axis, (A,n_i,B) -> (A,sum n_i,B).
   Backward hands each input its own region of dy; inputs that need no gradient are skipped but
   still counted in the offsets (KANN's concat gets this wrong). One input gives a copy. */
tg_tensor *tg_concat(tg_tape *tape, tg_tensor *const *xs, int n, int axis);

/* Sum (mean) of all elements, as a 0-d tensor: a loss, or a scalar to test a gradient with.
   The mean of an empty tensor is NaN, as in NumPy. */
tg_tensor *tg_sum(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_mean(tg_tape *tape, tg_tensor *x);
/* Sum, mean and maximum along one axis, as NumPy's x.sum(axis, keepdims=...): (A,n,B) -> (A,B), or
   (A,1,B) with keepdims. The sum over an empty axis is 0, its mean NaN; the max of an empty axis is
   TG_ESHAPE (NumPy raises too). tg_max_axis's gradient goes to the first maximum of each slice only
   (NumPy's argmax; PyTorch's max(dim) does the same), and a NaN counts as the maximum, as NumPy's
   max propagates it. */
tg_tensor *tg_sum_axis(tg_tape *tape, tg_tensor *x, int axis, int keepdims);
tg_tensor *tg_mean_axis(tg_tape *tape, tg_tensor *x, int axis, int keepdims);
tg_tensor *tg_max_axis(tg_tape *tape, tg_tensor *x, int axis, int keepdims);

/* softmax(x) = e^(x - max) / sum e^(x - max) along axis, and log_softmax(x) = x - max - log sum
   e^(x - max): the max is subtracted first, so logits of +-1e4 stay finite (log_softmax's exact
   there, softmax's underflows to 0). S -> S. Backward: softmax dx += y (dy - sum(dy y));
   log_softmax dx += dy - e^y sum(dy); both from the saved output. */
tg_tensor *tg_softmax(tg_tape *tape, tg_tensor *x, int axis);
tg_tensor *tg_log_softmax(tg_tape *tape, tg_tensor *x, int axis);
/* The mean cross-entropy of logits (...,V) against class targets (...) of TG_I64 (the logits' shape
   without its last axis): -mean over the counted positions of log_softmax(logits)[..., target].
   A position whose target is ignore_index is not counted (the seed book's TimeSoftmaxWithLoss uses
   -1; PyTorch's default is -100). 0-d output. When every target is ignored the loss is 0 and its
   gradient 0 (PyTorch gives NaN there). Backward: dlogits += dy (softmax - onehot) / count,
   computed directly, 0 on ignored rows. TG_EINVAL for a target outside [0, V) that is not
   ignore_index (naming its value and flat position); TG_ESHAPE when the shapes do not fit. Saves
   logits and targets. */
tg_tensor *tg_cross_entropy(tg_tape *tape, tg_tensor *logits, tg_tensor *targets, int64_t ignore_index);

/* table (V,E), indices TG_I64 of any shape S (up to 7 dims) -> S + (E,): row indices[k] of the table
   for each k. Backward adds each row of dy into its table row (repeated indices sum). TG_EINVAL for
   an index outside [0, V), naming its value and flat position. Saves the indices. */
tg_tensor *tg_embedding(tg_tape *tape, tg_tensor *table, tg_tensor *indices);

/* Inverted dropout: each element of x is kept with probability 1 - p and scaled by 1 / (1 - p), else
   0, so the expected output is x. 0 <= p < 1, else TG_EINVAL. The mask comes from rng, which
   advances by one draw per call (the mask is drawn from a stream seeded by that draw, kept in the
   node so that backward and a rerun see the same mask): the same rng state gives the same mask on
   any machine. rng NULL means evaluation: the output equals x (a copy). Backward: dx += dy * mask /
   (1 - p). */
tg_tensor *tg_dropout(tg_tape *tape, tg_tensor *x, double p, tg_rng *rng);

/* The index of the largest element along axis (negative counts from the end), as numpy.argmax: TG_I64, x's
   shape without that axis (kept as 1 with keepdims). The first maximum wins ties; a NaN counts as the
   maximum (the first NaN). A constant of the tape: it never needs a gradient. TG_EINVAL for an axis out of
   range, TG_ESHAPE for an empty axis (no maximum), TG_EDTYPE for i64 x; errors otherwise as every op's. */
tg_tensor *tg_argmax(tg_tape *tape, tg_tensor *x, int axis, int keepdims);

/* One index per row of probs (..., V), drawn from that row's categorical distribution, as numpy's
   choice(V, p=row / row.sum()): one tg_rng_uniform draw u per row, in row order, and the first index whose
   running sum passes u * sum (categories of probability 0 are never drawn). TG_I64 of probs' shape without
   its last axis (a 0-d index for a 1-d probs). The same rng state gives the same draws on any machine. A
   constant of the tape. TG_EINVAL naming the row and the value for a negative, NaN or Inf entry, naming
   the row for a row summing to 0, or for a NULL rng; TG_ESHAPE for a 0-d probs or V = 0. Every row is
   checked before the first draw: on failure rng has not advanced. */
tg_tensor *tg_sample(tg_tape *tape, tg_tensor *probs, tg_rng *rng);

/* A copy of x that the tape treats as a constant: no gradient flows back through it. */
tg_tensor *tg_detach(tg_tape *tape, tg_tensor *x);

/* tg_op_def, a user's op's table entry, is in tg_tape.h: the tape records and reruns it. */
/* Runs op on n_inputs (1..64) tensors of one dtype and records it like a built-in op.
   Errors as every op, plus the status a callback returns (message: "<name>: forward failed: ..."). */
tg_tensor *tg_custom(tg_tape *tape, const tg_op_def *op, tg_tensor *const *inputs, int n_inputs,
                     void *user);

#endif
