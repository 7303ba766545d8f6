/* ops/ internals: what the op family files share (and the tests of every op read). Never installed. */
#ifndef TG_OPS_INTERNAL_H
#define TG_OPS_INTERNAL_H

#include "tg_internal.h"
#include "tg_ops.h"

/* Every built-in op, for printing and for the test that gradient-checks each one. NULL-terminated.
   Each entry is defined in its family file in ops/ and listed in ops/ops.c. */
extern const tg__op *const tg__op_list[];
extern const tg__op tg__op_custom;

/* The shape rule of an op whose output has its first input's shape (unary elementwise ops, dropout, detach). */
tg_status tg__shape_of_first(const char *fn, tg_tensor *const *in, int n, tg__args *args, int *ndim, int64_t *shape);
/* A negative axis counts from the end, as NumPy's: axis in [-ndim, ndim) becomes [0, ndim) in *axis.
   TG_EINVAL naming fn and the shape otherwise. */
tg_status tg__axis(const char *fn, int ndim, const int64_t *shape, int64_t *axis);
/* x viewed as (outer, n, inner) around axis: the loops of every axis op. Unsigned products, so that an
   empty tensor's huge other dims wrap harmlessly instead of overflowing (no element is visited). */
int64_t tg__prod(const int64_t *d, int from, int to);

/* C = op(A) op(B) + beta C, row-major (ops/matmul.c); ta, tb transpose A, B. */
void tg__gemm(tg_dtype dt, int ta, int tb, int64_t m, int64_t n, int64_t k, const void *A, int64_t lda,
              const void *B, int64_t ldb, double beta, void *C, int64_t ldc);
/* bench/: the GEMMs this thread runs are appended to calls (up to cap, counting all in *n) until
   tg__gemm_log(NULL, 0, NULL), so that the same calls can be timed alone, through tg__gemm: a step's bound. */
typedef struct {
    tg_dtype dt;
    int ta, tb;
    int64_t m, n, k, lda, ldb, ldc;
    double beta;
} tg__gemm_call;
void tg__gemm_log(tg__gemm_call *calls, int cap, int *n);
/* The multiply-adds below which tg__gemm runs a GEMM on one OpenBLAS thread, for the kernel OpenBLAS chose
   (openblas_get_corename) and whether the user set a thread count: 0 leaves OpenBLAS's own split. */
double tg__gemm_one_thread_below(const char *core, int user_chose);
/* The same for this process: OpenBLAS's kernel and the environment, read once. */
double tg__gemm_one_thread_below_now(void);

#endif
