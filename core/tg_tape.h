/* tapegrad: the tape.
 *
 * Ops compute their output at once (eagerly) and, when any input needs a gradient, append a node
 * {op, inputs, output, saved tensors, small arguments} to the tape they are given. tg_backward then
 * walks the nodes once, last to first, and each node's vector-Jacobian product adds into the
 * gradients of its inputs. The walk is a loop, not a recursion, so a sequence unrolled over
 * thousands of steps cannot overflow the stack.
 *
 * Memory: the tape owns every op output and intermediate gradient, carved from an arena that
 * tg_tape_reset empties in O(1) and keeps, so once a training loop is warm a step does no malloc per
 * op. A training step reads:
 *
 *     tg_tape *tape = tg_tape_new();
 *     for (step...) {
 *         tg_tensor *loss = model(tape, params...);      // eager ops, recorded
 *         tg_backward(tape, loss, NULL);                 // params' grads += dloss/dparam
 *         ... update params from tg_tensor_grad, then tg_zero_grad each ...
 *         tg_tape_reset(tape);                           // frees every op output at once
 *     }
 *     tg_tape_free(tape);
 *
 * A tape is not shared between threads; several threads may each use their own, and read the same leaves
 * (tapegrad.h's memory model says when).
 */
#ifndef TG_TAPE_H
#define TG_TAPE_H

#include <stdio.h>
#include "tg_tensor.h"

typedef struct tg_tape tg_tape;

/* Check flags for tg_tape_set_checks. */
#define TG_CHECK_SAVED 1u     /* fingerprint saved tensors (XXH3-64); on by default */
#define TG_CHECK_NONFINITE 2u /* fail the first op whose output or input gradient is NaN or Inf */

/* A new, empty tape with TG_CHECK_SAVED on. NULL with TG_ENOMEM. Free with tg_tape_free. */
tg_tape *tg_tape_new(void);
/* Frees every op output and intermediate gradient of the recording and forgets its nodes; keeps
   the arena for the next recording. Leaves and their gradients are untouched. An op output kept past
   the reset must not be used again: handed to any function (an op, tg_backward, a layer, a saver, an
   accessor) in the next recording it is refused with TG_ESTATE; older ones are not reliably told
   apart from the current recording's (but are refused rather than read where their memory is freed,
   while the tape lives). */
void tg_tape_reset(tg_tape *tape);
/* tg_tape_reset, then frees the tape itself. NULL is ignored. */
void tg_tape_free(tg_tape *tape);
/* Replaces the check flags (an OR of TG_CHECK_*; 0 turns every check off, for speed).
   TG_CHECK_SAVED catches a write through tg_tensor_data into a tensor that an op saved for its
   backward, which would otherwise yield silently wrong gradients (PyTorch's version counter). */
void tg_tape_set_checks(tg_tape *tape, unsigned flags);
/* The flags in force; 0 for a NULL tape. */
unsigned tg_tape_checks(const tg_tape *tape);
/* Gradient recording on (1, the default) or off (0), like torch.no_grad: with it off, ops compute
   their outputs and record nothing, and every output needs no gradient (tg_backward refuses it).
   For evaluation, a validation loss, sampling; tg_gradcheck's finite differences run this way.
   Outputs still belong to the tape and die with tg_tape_reset. NULL is ignored. */
void tg_tape_set_grad_enabled(tg_tape *tape, int enabled);
/* 1 when recording is on; 0 for a NULL tape. */
int tg_tape_grad_enabled(const tg_tape *tape);
/* Number of nodes recorded since the last reset; 0 for a NULL tape. */
int64_t tg_tape_size(const tg_tape *tape);
/* Bytes of the arena the current recording uses: op outputs, intermediate gradients and node lists.
   What a step costs in memory, for benchmarks and budgets; 0 for a NULL tape. (Under AddressSanitizer
   or valgrind it includes the 64-byte redzone left after each block.) */
int64_t tg_tape_memory(const tg_tape *tape);

/* Backpropagates from out, which must be an output of this tape's current recording or a parameter.
   grad_out (out's dtype and shape) is dL/dout; NULL means out has one element and dL/dout = 1.
   Adds dL/dp into the gradient of every parameter p that out depends on, and fills the gradients of
   tensors passed to tg_retain_grad. A recording is backpropagated once: a second call, or a call
   after tg_tape_reset, returns TG_ESTATE (out being a parameter itself touches no node and does not
   count). Other failures: TG_EINVAL (NULL, out not from this tape or
   depending on no parameter), TG_ESHAPE/TG_EDTYPE (grad_out does not match out), TG_EMODIFIED (a
   saved tensor was written; the message names the op, its node index and the tensor's shape),
   TG_ENONFINITE (with TG_CHECK_NONFINITE), TG_ENOMEM. After a failure, gradients are partial: zero
   them before the next step. A saved tensor is verified right after the first backward to read it,
   where it is in cache (but right before the backward of an op that takes indices, and of a custom
   op), so after TG_EMODIFIED they include that node's contribution computed from the modified values. */
tg_status tg_backward(tg_tape *tape, tg_tensor *out, const tg_tensor *grad_out);

/* Keeps t's gradient (t an op output of this tape) readable through tg_tensor_grad after backward,
   until the tape is reset, like PyTorch's retain_grad. A tensor that got no gradient reads as zeros.
   TG_EINVAL when t is NULL, not from this tape or needs no gradient; TG_ESTATE when t is an output of
   an ended recording. */
tg_status tg_retain_grad(tg_tape *tape, tg_tensor *t);

/* Lists the recording, one node a line: index, op, inputs (node indices, or "leaf"/"param" and a
   shape), output shape, the op's arguments (axis, bounds, index, scale, p, ...) and what was saved
   for backward. TG_EINVAL for NULL arguments, TG_EIO when
   writing fails. */
tg_status tg_tape_print(const tg_tape *tape, FILE *out);
/* Writes the same graph as Graphviz DOT (render with `dot -Tpng`), arguments included. Errors as
   tg_tape_print. */
tg_status tg_tape_write_dot(const tg_tape *tape, FILE *out);

/* A user's op: one static table entry, called through tg_custom. Its inputs are values of one dtype
   (f32 or f64; TG_I64 is refused) and the output has that dtype; the inputs and the output are saved
   for backward (and fingerprinted). `user` must outlive the tape's backward. A callback returns
   TG_OK or a status, with its reason set by tg_set_error; the caller of tg_custom or tg_backward
   then reads "<name>: forward failed: <reason>" (or "... failed with TG_E..." without a reason).
   Write it with designated initializers (.name = ..., .shape = ...): members may be added at the end,
   and a positional initializer without them still compiles (they are NULL) but draws
   -Wmissing-field-initializers under -Wextra. */
typedef struct tg_op_def {
    const char *name; /* shown in errors, tg_tape_print and the DOT dump */
    /* Writes the output's rank (0..8) into *ndim and its dims into shape[0..*ndim). */
    tg_status (*shape)(tg_tensor *const *inputs, int n_inputs, void *user, int *ndim, int64_t *shape);
    /* Writes the output; out is zero-filled on entry. It may keep tensors for backward
       (tg_custom_keep) and take scratch (tg_custom_scratch). */
    tg_status (*forward)(tg_tensor *const *inputs, int n_inputs, tg_tensor *out, void *user);
    /* Adds the vector-Jacobian product of grad_out into grads[i] (inputs[i]'s dtype and layout: read it
       through tg_grad_f32/tg_grad_f64) for each i whose grads[i] is not NULL. It reads what forward kept
       with tg_custom_kept. */
    tg_status (*backward)(tg_tensor *const *inputs, int n_inputs, tg_tensor *out, tg_tensor *grad_out,
                          void *const *grads, void *user);
    /* Optional: the inputs' names, one per input the op is called with ({"x", "gamma", "beta"}), used
       by every message about an input ("layernorm: gamma is f32, x is f64"); NULL, or a NULL entry,
       reads "input i". */
    const char *const *input_names;
} tg_op_def;

/* Kept tensors: what a custom op's forward computed for its backward (a mean, 1/std), as PyTorch's
   ctx.save_for_backward. Called inside the forward of the custom op whose output is out, it returns a
   new zero-filled tensor of out's dtype and the given shape, owned by the recording (it dies with
   tg_tape_reset, nothing to free), for forward to fill. Up to 8 per op, numbered in the order kept.
   Kept tensors are fingerprinted with the inputs (TG_CHECK_SAVED): one written between forward and
   backward fails tg_backward with TG_EMODIFIED naming the op and "kept tensor i". tg_gradcheck_nodes
   reruns the forward, and the backward it checks reads the rerun's kept tensors. NULL with
   TG_EINVAL outside that op's forward (in its backward, in another op's callback, or with no custom
   op running on this thread), past 8, or for ndim outside 0..8 or a NULL shape with ndim > 0;
   TG_ESHAPE for a negative dim; TG_ENOMEM. */
tg_tensor *tg_custom_keep(tg_tensor *out, int ndim, const int64_t *shape);
/* Inside the backward of the custom op whose output is out: the i-th tensor (0-based) its forward kept,
   to read. NULL with TG_EINVAL outside that op's backward or for an i it did not keep. */
tg_tensor *tg_custom_kept(tg_tensor *out, int i);
/* Inside either callback of the custom op whose output is out: `bytes` of 64-byte aligned scratch
   memory, uninitialised, from the tape (no malloc once a loop is warm, nothing to free), valid until
   the callback returns; the next callback reuses it. Each call returns new memory. NULL with TG_EINVAL
   outside the op's callbacks, TG_ENOMEM. */
void *tg_custom_scratch(tg_tensor *out, size_t bytes);

#endif
