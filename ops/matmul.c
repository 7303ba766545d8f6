/* matmul: (M,K) @ (K,N) -> (M,N) through OpenBLAS. */
#include <cblas.h>
#include "tg_internal.h"

static const char *const names[] = {"a", "b"};

/* C = alpha op(A) op(B) + beta C, row-major, in either dtype. BLAS wants leading dims >= 1 even
   for empty matrices. */
static void gemm(tg_dtype dt, int ta, int tb, int64_t m, int64_t n, int64_t k, const void *A, int64_t lda,
                 const void *B, int64_t ldb, double beta, void *C, int64_t ldc) {
    if (m == 0 || n == 0) return;
    lda = lda > 1 ? lda : 1, ldb = ldb > 1 ? ldb : 1, ldc = ldc > 1 ? ldc : 1;
    enum CBLAS_TRANSPOSE A_t = ta ? CblasTrans : CblasNoTrans, B_t = tb ? CblasTrans : CblasNoTrans;
    if (dt == TG_F32)
        cblas_sgemm(CblasRowMajor, A_t, B_t, (blasint)m, (blasint)n, (blasint)k, 1.0f, A, (blasint)lda, B,
                    (blasint)ldb, (float)beta, C, (blasint)ldc);
    else
        cblas_dgemm(CblasRowMajor, A_t, B_t, (blasint)m, (blasint)n, (blasint)k, 1.0, A, (blasint)lda, B,
                    (blasint)ldb, beta, C, (blasint)ldc);
}

tg_tensor *tg_matmul(tg_tape *tape, tg_tensor *a, tg_tensor *b) {
    tg_tensor *in[2] = {a, b};
    char sa[TG__SHAPE_STR], sb[TG__SHAPE_STR];
    if (tg__check_inputs("tg_matmul", tape, in, 2, names)) return NULL;
    if (a->ndim != 2 || b->ndim != 2) {
        tg__fail(TG_ESHAPE, "tg_matmul: needs 2-d operands: %s @ %s", tg__shape_str(a->ndim, a->shape, sa),
                 tg__shape_str(b->ndim, b->shape, sb));
        return NULL;
    }
    int64_t M = a->shape[0], K = a->shape[1], N = b->shape[1];
    if (b->shape[0] != K) {
        tg__fail(TG_ESHAPE, "tg_matmul: inner dimensions differ: %s @ %s", tg__shape_str(2, a->shape, sa),
                 tg__shape_str(2, b->shape, sb));
        return NULL;
    }
    /* BLAS counts in int: refuse what it cannot index rather than wrap around. */
    if (M > INT32_MAX || K > INT32_MAX || N > INT32_MAX) {
        tg__fail(TG_ESHAPE, "tg_matmul: dimensions beyond BLAS's int range: %s @ %s", tg__shape_str(2, a->shape, sa),
                 tg__shape_str(2, b->shape, sb));
        return NULL;
    }
    /* zeroed, so that K = 0 gives zeros whatever BLAS does with an empty sum */
    tg_tensor *y = tg__new_out("tg_matmul", tape, a->dtype, 2, (int64_t[]){M, N}, K == 0);
    if (!y) return NULL;
    gemm(a->dtype, 0, 0, M, N, K, a->data, K, b->data, N, 0.0, y->data, N);
    return tg__record(tape, &tg__op_matmul, NULL, NULL, y, in, 2, TG__SAVE_INPUTS, NULL, 0);
}

/* dA += dY B^T, dB += A^T dY: beta = 1 accumulates in place, with no temporary. */
static tg_status matmul_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    const tg_tensor *a = node->in[0], *b = node->in[1];
    int64_t M = a->shape[0], K = a->shape[1], N = b->shape[1];
    if (K == 0) return TG_OK;
    if (grads[0]) gemm(a->dtype, 0, 1, M, K, N, gout->data, N, b->data, N, 1.0, grads[0], K);
    if (grads[1]) gemm(a->dtype, 1, 0, K, N, M, a->data, K, gout->data, N, 1.0, grads[1], N);
    return TG_OK;
}

const tg__op tg__op_matmul = {"matmul", matmul_backward};
