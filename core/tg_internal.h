/* tapegrad internals: shared by core/, ops/ and layers/, never installed. */
#ifndef TG_INTERNAL_H
#define TG_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "tg_ops.h"

/* tensor flags */
#define TG__OWNED 1u  /* the caller's leaf: tg_tensor_free frees it */
#define TG__PARAM 2u  /* has a gradient of its own, accumulated across backward passes */
#define TG__NEEDS 4u  /* backward writes a gradient for it (params, and outputs depending on one) */
#define TG__RETAIN 8u /* tg_retain_grad: keep the gradient after backward */

struct tg_tensor {
    tg_dtype dtype;
    int ndim;
    int64_t shape[TG_MAX_DIMS];
    int64_t numel;
    void *data;
    void *grad;
    unsigned flags;
    tg_tape *tape;  /* the tape that made it; NULL for leaves */
    uint64_t gen;   /* the tape's recording it belongs to (tape->gen at creation) */
    int64_t node;   /* index of the node that made it, -1 when none */
};

typedef struct tg__node tg__node;

/* A built-in op's table entry. The backward adds the vector-Jacobian product of gout into grads[i]
   for each i whose grads[i] is not NULL, and allocates no gradient temporaries. */
typedef struct tg__op {
    const char *name;
    tg_status (*backward)(const tg__node *node, const tg_tensor *gout, void *const *grads);
} tg__op;

/* What an op keeps for backward, fingerprinted when TG_CHECK_SAVED is on. */
typedef enum { TG__SAVE_NONE, TG__SAVE_INPUTS, TG__SAVE_OUTPUT, TG__SAVE_ALL } tg__save;

struct tg__node {
    const tg__op *op;
    const tg_op_def *def; /* custom ops: the user's table entry and context */
    void *user;
    tg_tensor **in;
    int n_in;
    tg_tensor *out;
    tg_tensor **saved;
    uint64_t *hash;
    int n_saved;
    int64_t arg[3]; /* axis, start, stop, ... */
    double farg;    /* scale factor */
};

extern const tg__op tg__op_matmul, tg__op_add, tg__op_sub, tg__op_mul, tg__op_tanh, tg__op_scale,
    tg__op_slice, tg__op_select, tg__op_stack, tg__op_reshape, tg__op_sum, tg__op_mean, tg__op_custom;
/* Every built-in op, for printing and for the test that gradient-checks each one. NULL-terminated. */
extern const tg__op *const tg__op_list[];

/* errors (core/error.c): the one place every failure passes through */
tg_status tg__fail(tg_status status, const char *fmt, ...);
/* For a NULL argument: TG_EINVAL "fn: name is NULL", unless an earlier failure is pending, whose
   status is returned and whose message kept: a NULL is most often what that failure returned. */
tg_status tg__null(const char *fn, const char *name);
/* "(4,3)" into buf, which must hold TG__SHAPE_STR bytes. */
#define TG__SHAPE_STR 192
const char *tg__shape_str(int ndim, const int64_t *shape, char *buf);
const char *tg__dtype_name(tg_dtype dtype);

/* allocation (core/tensor.c): every malloc of the library, 64-byte aligned. A test build makes the
   k-th call fail with tg__alloc_fail_at(k) (0: never), to prove each caller reports TG_ENOMEM and
   leaks nothing. */
void *tg__malloc(size_t size);
void *tg__calloc(size_t size);
void tg__free(void *p);
void tg__alloc_fail_at(int64_t k);
int64_t tg__alloc_count(void);
/* Whether a tg__malloc on this thread has returned NULL since the last call with reset set, which then
   clears it: tells a library's NULL that means out of memory (cJSON's) from one that means bad input. */
int tg__alloc_failed(int reset);
/* file IO (core/io.c): a test build makes the k-th low-level write step of a save (write, flush, fsync,
   close, rename) fail with EIO (0: never), to prove a failed save leaves the old file and no temp file. */
void tg__io_fail_write_at(int64_t k);

static inline size_t tg__dsize(tg_dtype dtype) { return dtype == TG_F32 ? sizeof(float) : sizeof(double); }
/* numel of a shape into *numel; TG_ESHAPE for a negative dim, TG_ENOMEM when bytes overflow.
   fn names the caller in the message. */
tg_status tg__numel(const char *fn, tg_dtype dtype, int ndim, const int64_t *shape, int64_t *numel);
/* Fills a header: no gradient, no flags, no tape, no node. */
void tg__tensor_init(tg_tensor *t, tg_dtype dtype, int ndim, const int64_t *shape, int64_t numel, void *data);
int tg__nonfinite(const tg_tensor *t, const void *data);

/* Runs the statements with T typedef'd to float or double, as dtype says: one body for both. */
#define TG__DISPATCH(dtype, ...)                                                                   \
    do {                                                                                           \
        if ((dtype) == TG_F32) {                                                                   \
            typedef float T;                                                                       \
            __VA_ARGS__                                                                            \
        } else {                                                                                   \
            typedef double T;                                                                      \
            __VA_ARGS__                                                                            \
        }                                                                                          \
    } while (0)

/* tape (core/tape.c) */
void *tg__arena_alloc(tg_tape *tape, size_t size, int zero);
/* Validates an op's inputs: none NULL (NULL keeps the first error), from this tape's recording, one
   dtype. Returns 0 when fine. names: "a", "b", ...; NULL uses "input i". */
int tg__check_inputs(const char *fn, tg_tape *tape, tg_tensor *const *in, int n, const char *const *names);
/* A new output of the tape: data from the arena (zeroed when zero is set). NULL on TG_ENOMEM. */
tg_tensor *tg__new_out(const char *fn, tg_tape *tape, tg_dtype dtype, int ndim, const int64_t *shape,
                       int zero);
/* Finishes an op whose output is computed: checks it is finite (when asked) and records a node if an
   input needs a gradient. Returns out, or NULL on failure.
   def and user are a custom op's (NULL for built-in ones). */
tg_tensor *tg__record(tg_tape *tape, const tg__op *op, const tg_op_def *def, void *user, tg_tensor *out,
                      tg_tensor *const *in, int n_in, tg__save save, const int64_t *arg, double farg);
/* A node's name: the custom op's, else the built-in's. */
const char *tg__node_name(const tg__node *node);

#endif
