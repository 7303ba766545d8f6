/* tapegrad: status codes and the thread-local error.
 *
 * Nothing in tapegrad aborts on bad input. A function that returns a pointer returns NULL on
 * failure; one that returns tg_status returns the code. Either way it also sets this thread's
 * status and a message naming the function and the offending values, e.g.
 *     tg_matmul: inner dimensions differ: (4,3) @ (5,2)
 *
 * Errors chain (cairo's model): an op handed a NULL input returns NULL and leaves the first
 * message in place, so a caller may write a whole forward pass and check once at the end:
 *     tg_tensor *h = tg_tanh(tape, tg_add(tape, tg_matmul(tape, x, W), b));
 *     if (!h) fprintf(stderr, "%s\n", tg_last_error());
 * A success does not clear an earlier failure; tg_clear_error does.
 */
#ifndef TG_ERROR_H
#define TG_ERROR_H

typedef enum {
    TG_OK = 0,
    TG_EINVAL,     /* a bad argument: NULL, out-of-range axis or index, bad option */
    TG_ESHAPE,     /* shapes that do not fit the op */
    TG_EDTYPE,     /* f32 and f64 mixed in one op (there is no promotion), or indices where values
                      belong (or values where indices belong) */
    TG_ENOMEM,     /* an allocation failed, or a size overflowed */
    TG_ESTATE,     /* the object is in the wrong state: backward twice, tape reset, ... */
    TG_EMODIFIED,  /* a tensor saved for backward was written after it was recorded */
    TG_EIO,        /* the operating system refused a file operation */
    TG_EFORMAT,    /* a file is not in the format it claims */
    TG_ENONFINITE  /* a NaN or Inf appeared while the tape's anomaly check was on */
} tg_status;

/* The status of the most recent failure on this thread, TG_OK if none since tg_clear_error. */
tg_status tg_last_status(void);
/* Its message; "" when there is none. Valid until the next failure on this thread. */
const char *tg_last_error(void);
/* Forgets the failure, so the next NULL input gets a message of its own. */
void tg_clear_error(void);
/* A constant name for a status, such as "TG_ESHAPE". */
const char *tg_status_name(tg_status status);
/* Sets this thread's status and a printf-style message, and returns status: for a custom op's
   callback to give its reason, which the caller then reads as "<op>: forward failed: <reason>"
   (likewise shape and backward). fmt NULL gives an empty message. */
tg_status tg_set_error(tg_status status, const char *fmt, ...);

#endif
