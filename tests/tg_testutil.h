/* Helpers shared by the test files. */
#ifndef TG_TESTUTIL_H
#define TG_TESTUTIL_H

#include <criterion/criterion.h>
#include <string.h>
#include "tapegrad.h"
#include "io_internal.h"
#include "ops_internal.h"
#include "train_internal.h"

/* A caller-owned tensor (param when param is set) of the given shape, uniform in [-1, 1) from seed. */
tg_tensor *tt_rand(tg_dtype dtype, int param, uint64_t seed, int ndim, const int64_t *shape);
#define TT_SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define TT_NDIM(...) ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
/* tt_rand with the shape written inline: TT_RAND(TG_F64, 1, 7, 2, 3) is a (2,3) param. */
#define TT_RAND(dtype, param, seed, ...) tt_rand(dtype, param, seed, TT_NDIM(__VA_ARGS__), TT_SHAPE(__VA_ARGS__))

/* A scratch directory per test (Criterion runs each in its own process): tt_dir_make in a suite's
   .init, tt_dir_remove (which empties it and undoes fault injection) in its .fini. tt_in_dir gives
   DIR/name in a buffer of its own per distinct name, valid through the test. */
void tt_dir_make(const char *prefix);
const char *tt_dir(void);
void tt_dir_remove(void);
const char *tt_in_dir(const char *name);
/* A whole file, malloc'ed (the caller frees it), its size in *n; writes n bytes to path. */
unsigned char *tt_read_file(const char *path, size_t *n);
void tt_write_file(const char *path, const void *p, size_t n);
/* The tape as tg_tape_print (dot 0) or tg_tape_write_dot (dot 1) writes it, malloc'ed (the caller frees
   it); the test fails when the writer does. */
char *tt_tape_text(const tg_tape *tape, int dot);
/* Entries of the scratch directory whose name says they are a save's temporary file. */
int tt_temp_files(void);

/* The element count of a shape. */
static inline int64_t tt_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

/* Calls call(tape, ctx) on a fresh tape with the k-th allocation failing (tg__alloc_fail_at), for
   k = 1, 2, ... until a call makes fewer than k: expects each failed call to return NULL with TG_ENOMEM
   and a message starting with prefix, and at least one such failure. */
void tt_each_alloc_failure(tg_tensor *(*call)(tg_tape *tape, void *ctx), void *ctx, const char *prefix);

/* A custom op's shape rule for elementwise ops: the output has inputs[0]'s shape. */
tg_status tt_same_shape(tg_tensor *const *in, int n, void *user, int *ndim, int64_t *shape);

/* Asserts the thread's error is `status` and its message contains `needle`, then clears it. */
#define tt_expect_error(status, needle)                                                            \
    do {                                                                                           \
        cr_expect_eq(tg_last_status(), (status), "status %s, want %s; message: %s",              \
                     tg_status_name(tg_last_status()), tg_status_name(status), tg_last_error());  \
        cr_expect(strstr(tg_last_error(), (needle)) != NULL, "message \"%s\" lacks \"%s\"",       \
                  tg_last_error(), (needle));                                                      \
        tg_clear_error();                                                                          \
    } while (0)

/* The worst relative error |a - r| / max(|r|, 1e-12) (as tg_gradcheck counts it) of a's data, or a's
   gradient when grad is set, against r's data; NaN wins. a and r have one element count. */
double tt_max_rel(tg_tensor *a, int grad, tg_tensor *r);

/* The three-way check of a layer: tape against reference and against central differences, twice.
   Full mode compares every Jacobian element within |a - n| <= 1e-8 + 1e-6 |n|: a relative error of 1e-6
   wherever the element is not tiny. A pure relative bound cannot hold for every element: central
   differences with eps = 1e-6 carry an absolute error near 1e-10, and a T-step Jacobian has elements of
   1e-5 and smaller (d h_T / d x_1 shrinks with each step), whose relative error is then 1e-5.
   Fast mode compares random projections v^T J u, one number per input that sums many elements, so its
   relative error measures the gradient rather than roundoff of a near-zero element: there the worst
   relative error must be <= 1e-6 against numeric, over four draws of u and v.
   Against the reference, both modes must agree to a relative 1e-10 everywhere (vs_ref's max_rel_err). */
void tt_check3(tg_fn f, tg_ref_fn ref, void *ctx, tg_tensor *const *in, int n, const char *label);

#endif
