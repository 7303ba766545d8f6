/* tapegrad: tensors.
 *
 * A tensor is an n-d array (0 to 8 dims) of f32 or f64 values, or of i64 indices (class targets,
 * token ids), in contiguous row-major storage aligned to 64 bytes. Index tensors are never
 * parameters and never get a gradient; ops that take values refuse them and ops that take indices
 * (tg_embedding, tg_cross_entropy) refuse anything else, with TG_EDTYPE. Who owns it decides who frees it:
 *   - leaves, made here by the caller (tg_tensor_new, tg_param_new, ...), are the caller's and are
 *     freed with tg_tensor_free;
 *   - the outputs of ops belong to the tape that recorded them and die with tg_tape_reset or
 *     tg_tape_free (tg_tensor_free on one does nothing).
 * A parameter (tg_param_new) has a gradient buffer of its own shape; backward adds into it and only
 * tg_zero_grad clears it, so gradients of several backward passes sum, as in PyTorch.
 */
#ifndef TG_TENSOR_H
#define TG_TENSOR_H

#include <stdint.h>
#include <stdio.h>
#include "tg_error.h"

#define TG_MAX_DIMS 8

typedef enum { TG_F32, TG_F64, TG_I64 } tg_dtype; /* TG_I64: index tensors */
typedef struct tg_tensor tg_tensor;

/* A zero-filled tensor without a gradient. shape has ndim entries, each >= 0 (0 makes an empty
   tensor); shape may be NULL when ndim is 0. NULL with TG_EINVAL (bad dtype or ndim), TG_ESHAPE
   (negative dim) or TG_ENOMEM (out of memory, the byte count overflows, or it exceeds the machine's
   physical memory: every allocation of tapegrad is, which an overcommitting kernel would grant only to
   kill the process while it is filled). */
tg_tensor *tg_tensor_new(tg_dtype dtype, int ndim, const int64_t *shape);
/* As tg_tensor_new, plus a zeroed gradient: a leaf that backward accumulates into. TG_EDTYPE for
   TG_I64: indices have no gradient. */
tg_tensor *tg_param_new(tg_dtype dtype, int ndim, const int64_t *shape);
/* As tg_tensor_new, then copies numel elements of the given dtype (float, double or int64_t) from
   data (may be NULL if numel is 0). */
tg_tensor *tg_tensor_from(tg_dtype dtype, int ndim, const int64_t *shape, const void *data);
/* A caller-owned copy of t's dtype, shape and data, with no gradient. NULL (t NULL) keeps the
   first error. */
tg_tensor *tg_tensor_clone(const tg_tensor *t);
/* Frees a caller-owned tensor and its gradient. NULL and tape-owned tensors are ignored. */
void tg_tensor_free(tg_tensor *t);

/* Names a caller's leaf with a copy of name (NULL removes it), for reading: tg_tape_print and
   tg_tape_write_dot show it instead of the leaf's kind ("Wh(3,3)", not "param(3,3)"). Names need not be
   unique. tg_params_add and the Time layers' _new name the leaves they are given when those have no
   name yet (the first name stays); this call replaces one. TG_EINVAL for a NULL t or an op output
   (the tape's, which the drawings show by node), TG_ESTATE for an output of an ended recording,
   TG_ENOMEM (the old name kept). It writes t, as tg_tensor_set does (tapegrad.h: threads). */
tg_status tg_tensor_set_name(tg_tensor *t, const char *name);
/* t's name, owned by t until it is renamed or freed; NULL for an unnamed leaf, an op output or NULL. */
const char *tg_tensor_name(const tg_tensor *t);

/* The accessors read any tensor, the caller's or the tape's. For NULL they return TG_F32, 0, NULL and
   0 (they are for reading results, where a NULL was already reported by the call that made it).
   tg_tensor_data, tg_tensor_grad and tg_tensor_get on an op output of a recording that tg_tape_reset
   ended return NULL (NaN) and set TG_ESTATE rather than hand out bytes the next recording owns. That
   is told for sure for the last ended recording only (see tg_tape_reset), and not at all once the
   tape is freed: the header itself is gone then. */
tg_dtype tg_tensor_dtype(const tg_tensor *t);
int tg_tensor_ndim(const tg_tensor *t);
/* ndim entries, owned by t. */
const int64_t *tg_tensor_shape(const tg_tensor *t);
int64_t tg_tensor_numel(const tg_tensor *t);
/* float * (TG_F32), double * (TG_F64) or int64_t * (TG_I64), numel elements, row-major; owned by t. */
void *tg_tensor_data(tg_tensor *t);
/* The data as float * (f32) or double * (f64), for code written for one dtype (a custom op's callback):
   NULL with TG_EDTYPE naming the dtype t has, so that a callback for double refuses float loudly
   instead of reading garbage; NULL as tg_tensor_data for a NULL or stale t. The idiom for one callback
   serving both: `if (tg_tensor_dtype(x) == TG_F32) return run_f32(...); else return run_f64(...);`. */
float *tg_tensor_f32(tg_tensor *t);
double *tg_tensor_f64(tg_tensor *t);
/* A custom op's gradient buffer grad (its backward's grads[i]) for input (its inputs[i]), which it has
   the dtype of, as float * or double *: NULL, without an error, for a NULL grad (that input needs no
   gradient); NULL with TG_EDTYPE when input is of the other dtype; TG_EINVAL for a NULL input. */
float *tg_grad_f32(const tg_tensor *input, void *grad);
double *tg_grad_f64(const tg_tensor *input, void *grad);
/* Same layout as the data. A parameter's gradient; after backward, also that of a tensor passed to
   tg_retain_grad. NULL for every other tensor. */
void *tg_tensor_grad(tg_tensor *t);
/* 1 when backward writes a gradient for t (a parameter or an op output that depends on one). */
int tg_tensor_requires_grad(const tg_tensor *t);
/* Sets a parameter's gradient to zero; does nothing to other tensors. */
void tg_zero_grad(tg_tensor *t);
/* XXH3-64 of dtype, shape and data: equal tensors hash equal, whatever their owner. 0 for NULL, and
   for an output of an ended recording (with TG_ESTATE). */
uint64_t tg_tensor_hash(const tg_tensor *t);
/* Element i (flat, row-major) as a double (an i64 beyond 2^53 rounds); NaN when t is NULL, stale or
   i out of range. For tests and printing, not for loops. */
double tg_tensor_get(const tg_tensor *t, int64_t i);
/* Writes element i; TG_EINVAL when t is NULL, i is out of range, or t is i64 and value is not an
   integer within int64's range; TG_ESTATE when t is stale. */
tg_status tg_tensor_set(tg_tensor *t, int64_t i, double value);
/* Fills t with uniform values in [lo, hi) from a xoshiro256** stream seeded by *seed, and advances
   *seed so successive calls draw different values. Deterministic across machines. TG_EDTYPE for an
   i64 t. (tg_rng.h has the generator itself, normal draws and initialisers.) */
tg_status tg_tensor_fill_uniform(tg_tensor *t, double lo, double hi, uint64_t *seed);
/* Writes t as NumPy prints an array, after a line with its dtype and shape:
       tensor f64 (2,3)
       [[ 1.5, -2, 3],
        [ 4, 5, 6]]
   Values with %g's 6 significant digits (integers for i64); past 1000 elements each axis shows its
   first and last 3 entries around "...", as NumPy's summarisation does. TG_EINVAL for NULL
   arguments, TG_ESTATE for a stale t, TG_EIO when writing fails. */
tg_status tg_tensor_print(const tg_tensor *t, FILE *out);

#endif
