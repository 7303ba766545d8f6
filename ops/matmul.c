/* matmul: (M,K) @ (K,N) -> (M,N) through OpenBLAS; and tg_linear, x (...,K) @ W (K,M) + b (M,). */
#include <cblas.h>
#include <string.h>
#include "tg_internal.h"

/* C = op(A) op(B) + beta C, row-major, in either dtype. BLAS wants leading dims >= 1 even for empty
   matrices. */
void tg__gemm(tg_dtype dt, int ta, int tb, int64_t m, int64_t n, int64_t k, const void *A, int64_t lda,
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

static tg_status matmul_shape(const char *fn, tg_tensor *const *in, int n, tg__args *args, int *ndim,
                              int64_t *shape) {
    (void)n, (void)args;
    const tg_tensor *a = in[0], *b = in[1];
    char sa[TG__SHAPE_STR], sb[TG__SHAPE_STR];
    if (a->ndim != 2 || b->ndim != 2)
        return tg__fail(TG_ESHAPE, "%s: needs 2-d operands: %s @ %s", fn, tg__shape_str(a->ndim, a->shape, sa),
                        tg__shape_str(b->ndim, b->shape, sb));
    int64_t M = a->shape[0], K = a->shape[1], N = b->shape[1];
    if (b->shape[0] != K)
        return tg__fail(TG_ESHAPE, "%s: inner dimensions differ: %s @ %s", fn, tg__shape_str(2, a->shape, sa),
                        tg__shape_str(2, b->shape, sb));
    /* BLAS counts in int: refuse what it cannot index rather than wrap around. */
    if (M > INT32_MAX || K > INT32_MAX || N > INT32_MAX)
        return tg__fail(TG_ESHAPE, "%s: dimensions beyond BLAS's int range: %s @ %s", fn,
                        tg__shape_str(2, a->shape, sa), tg__shape_str(2, b->shape, sb));
    *ndim = 2;
    shape[0] = M, shape[1] = N;
    return TG_OK;
}

static tg_status matmul_forward(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *y) {
    (void)n, (void)args;
    const tg_tensor *a = in[0], *b = in[1];
    int64_t M = a->shape[0], K = a->shape[1], N = b->shape[1];
    /* K = 0 is an empty sum: zeros, whatever BLAS does with it */
    if (K) tg__gemm(a->dtype, 0, 0, M, N, K, a->data, K, b->data, N, 0.0, y->data, N);
    else memset(y->data, 0, (size_t)y->numel * tg__dsize(y->dtype));
    return TG_OK;
}

/* dA += dY B^T, dB += A^T dY: beta = 1 accumulates in place, with no temporary. */
static tg_status matmul_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    const tg_tensor *a = node->in[0], *b = node->in[1];
    int64_t M = a->shape[0], K = a->shape[1], N = b->shape[1];
    if (K == 0) return TG_OK;
    if (grads[0]) tg__gemm(a->dtype, 0, 1, M, K, N, gout->data, N, b->data, N, 1.0, grads[0], K);
    if (grads[1]) tg__gemm(a->dtype, 1, 0, K, N, M, a->data, K, gout->data, N, 1.0, grads[1], N);
    return TG_OK;
}

static const char *const names_ab[] = {"a", "b"};
const tg__op tg__op_matmul = {.name = "matmul", .fn = "tg_matmul", .names = names_ab, .save = TG__SAVE_INPUTS,
                              .shape = matmul_shape, .forward = matmul_forward,
                              .backward = matmul_backward};

tg_tensor *tg_matmul(tg_tape *tape, tg_tensor *a, tg_tensor *b) {
    return tg__apply(tape, &tg__op_matmul, (tg_tensor *[]){a, b}, 2, &(tg__args){0});
}
