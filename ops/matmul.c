/* matmul: (M,K) @ (K,N) -> (M,N) through OpenBLAS, and batches of them as numpy.matmul; and tg_linear,
   x (...,K) @ W (K,M) + b (M,). */
#include <cblas.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "ops_internal.h"

/* OpenBLAS splits a GEMM over its threads once m n k passes 2^18. Measured on this project's 2-core machines
   (bench_rnn, bench_small --threads 2, alternating the rules), a model's step loses from that split below
   about 2 10^6 even where the GEMM alone gains: the element-wise ops around it then read lines the other
   core wrote. The rnnlm step (V 340, 1.7 10^6 GEMMs) took 0.38-0.60 ms split and 0.27-0.38 ms with them on
   one thread, what one core gives; TimeRNN W0 went from 0.141 to 0.101 ms and W1 (5 10^5) from 3.4 to
   2.55 ms. At 2.1 10^6 (TimeLSTM W1's per-step GEMMs, also rnnlm's at V 427) the split wins for the LSTM
   (1.34-1.44x its bound against 1.43-1.83x) and loses for rnnlm (1.68-1.76x against 1.50-1.54x): no size
   rule tells them apart, and 2 10^6 leaves both as OpenBLAS has them. Under the AVX-512 kernels
   (SkylakeX, Cooperlake, SapphireRapids) the direct small-matrix path runs on one thread up to about 10^6
   anyway, from 10^6 to 2 10^6 a second thread makes even the GEMM alone 15-25 % slower, and from 4 10^6
   on 0.5-0.75x as long: there the bound stays 3 10^6, as measured on an Intel VM. Only when the user has
   not chosen: with OPENBLAS_NUM_THREADS (or GOTO_NUM_THREADS, OMP_NUM_THREADS) set, OpenBLAS decides
   alone. (While the other core is busy, any threaded GEMM can wait for its descheduled worker: 30x at
   2 10^7 once; choose 1 thread then.) The count is process-wide, lowered and put back around the call
   (about 4 ns a pair): a program calling BLAS from several threads at once should set it. */
double tg__gemm_one_thread_below(const char *core, int user_chose) {
    int direct = core && (!strcasecmp(core, "skylakex") || !strcasecmp(core, "cooperlake") ||
                          !strcasecmp(core, "sapphirerapids"));
    return user_chose ? 0 : direct ? 3e6 : 2e6;
}

double tg__gemm_one_thread_below_now(void) {
    static _Atomic double below = -1;
    double b = atomic_load_explicit(&below, memory_order_relaxed);
    if (b < 0) {
        int chose = getenv("OPENBLAS_NUM_THREADS") || getenv("GOTO_NUM_THREADS") || getenv("OMP_NUM_THREADS");
        b = tg__gemm_one_thread_below(openblas_get_corename(), chose);
        atomic_store_explicit(&below, b, memory_order_relaxed);
    }
    return b;
}

/* Below this many multiply-adds a GEMM is three loops here: a BLAS call costs more than the arithmetic
   (a gradient check's tiny matrices, run thousands of times). */
#define GEMM_TINY 512

static _Thread_local struct {
    tg__gemm_call *calls;
    int cap, *n;
} gemm_log;

void tg__gemm_log(tg__gemm_call *calls, int cap, int *n) {
    gemm_log.calls = calls, gemm_log.cap = cap, gemm_log.n = n;
    if (n) *n = 0;
}

/* C = op(A) op(B) + beta C, row-major, in either dtype. BLAS wants leading dims >= 1 even for empty
   matrices. */
void tg__gemm(tg_dtype dt, int ta, int tb, int64_t m, int64_t n, int64_t k, const void *A, int64_t lda,
              const void *B, int64_t ldb, double beta, void *C, int64_t ldc) {
    if (m == 0 || n == 0) return;
    if (gemm_log.n && (*gemm_log.n)++ < gemm_log.cap)
        gemm_log.calls[*gemm_log.n - 1] = (tg__gemm_call){dt, ta, tb, m, n, k, lda, ldb, ldc, beta};
    if (m * n * k <= GEMM_TINY) {
        /* A(i,l) = A[i sai + l sal], B(l,j) = B[l sbl + j sbj]: the strides fixed before the loops */
        int64_t sai = ta ? 1 : lda, sal = ta ? lda : 1, sbl = tb ? 1 : ldb, sbj = tb ? ldb : 1;
        TG__DISPATCH(dt, {
            const T *a = A, *b = B;
            T *c = C;
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) {
                    const T *ai = a + i * sai, *bj = b + j * sbj;
                    T sum = 0;
                    for (int64_t l = 0; l < k; l++) sum += ai[l * sal] * bj[l * sbl];
                    c[i * ldc + j] = beta == 0 ? sum : (T)beta * c[i * ldc + j] + sum; /* beta 0 reads nothing */
                }
        });
        return;
    }
    int threads =
        (double)m * (double)n * (double)k < tg__gemm_one_thread_below_now() ? openblas_get_num_threads() : 1;
    if (threads > 1) openblas_set_num_threads(1);
    lda = lda > 1 ? lda : 1, ldb = ldb > 1 ? ldb : 1, ldc = ldc > 1 ? ldc : 1;
    enum CBLAS_TRANSPOSE A_t = ta ? CblasTrans : CblasNoTrans, B_t = tb ? CblasTrans : CblasNoTrans;
    if (dt == TG_F32)
        cblas_sgemm(CblasRowMajor, A_t, B_t, (blasint)m, (blasint)n, (blasint)k, 1.0f, A, (blasint)lda, B,
                    (blasint)ldb, (float)beta, C, (blasint)ldc);
    else
        cblas_dgemm(CblasRowMajor, A_t, B_t, (blasint)m, (blasint)n, (blasint)k, 1.0, A, (blasint)lda, B,
                    (blasint)ldb, beta, C, (blasint)ldc);
    if (threads > 1) openblas_set_num_threads(threads);
}

/* The batch of a matmul: a (...,M,K) @ b (...,K,N), the leading dims broadcast as NumPy's. count
   matrices; for each of out's batch dims (dims[0..nd)) the step, in matrices, of a's and b's batch
   index (0 where that operand's dim is 1 or missing: broadcast). */
typedef struct {
    int nd;
    int64_t dims[TG_MAX_DIMS], sa[TG_MAX_DIMS], sb[TG_MAX_DIMS], count;
} batch;

/* 0 when a's and b's batch dims broadcast, into *bt. */
static int batch_of(const tg_tensor *a, const tg_tensor *b, batch *bt) {
    int na = a->ndim - 2, nb = b->ndim - 2, nd = na > nb ? na : nb;
    int64_t step_a = 1, step_b = 1;
    bt->nd = nd, bt->count = 1;
    for (int d = nd - 1; d >= 0; d--) { /* right-aligned: out's dim d is a's dim d - (nd - na) */
        int ia = d - (nd - na), ib = d - (nd - nb);
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) return 1;
        bt->dims[d] = da == 1 ? db : da;
        bt->sa[d] = da == 1 ? 0 : step_a, bt->sb[d] = db == 1 ? 0 : step_b;
        /* Unsigned: an empty operand may have dims whose product wraps (fuzz_ops found 2^63-1 squared),
           and then no stride or count is used (an empty output), as at the row count below. */
        step_a = (int64_t)((uint64_t)step_a * (uint64_t)da), step_b = (int64_t)((uint64_t)step_b * (uint64_t)db);
        bt->count = (int64_t)((uint64_t)bt->count * (uint64_t)bt->dims[d]);
    }
    return 0;
}

/* The a and b matrix indices of batch element i. */
static void batch_at(const batch *bt, int64_t i, int64_t *ia, int64_t *ib) {
    *ia = *ib = 0;
    for (int d = bt->nd - 1; d >= 0; d--) {
        int64_t k = i % bt->dims[d];
        i /= bt->dims[d];
        *ia += k * bt->sa[d], *ib += k * bt->sb[d];
    }
}

static tg_status matmul_shape(const char *fn, tg_tensor *const *in, int n, tg__args *args, int *ndim,
                              int64_t *shape) {
    (void)n, (void)args;
    const tg_tensor *a = in[0], *b = in[1];
    char sa[TG__SHAPE_STR], sb[TG__SHAPE_STR];
    if (a->ndim < 2 || b->ndim < 2)
        return tg__fail(TG_ESHAPE, "%s: needs 2-d operands (or batches of them, (...,M,K) @ (...,K,N)): %s @ %s", fn,
                        tg__shape_str(a->ndim, a->shape, sa), tg__shape_str(b->ndim, b->shape, sb));
    int64_t M = a->shape[a->ndim - 2], K = a->shape[a->ndim - 1], N = b->shape[b->ndim - 1];
    if (b->shape[b->ndim - 2] != K)
        return tg__fail(TG_ESHAPE, "%s: inner dimensions differ: %s @ %s", fn, tg__shape_str(a->ndim, a->shape, sa),
                        tg__shape_str(b->ndim, b->shape, sb));
    batch bt;
    if (batch_of(a, b, &bt))
        return tg__fail(TG_ESHAPE, "%s: batch dimensions do not broadcast: %s @ %s", fn,
                        tg__shape_str(a->ndim, a->shape, sa), tg__shape_str(b->ndim, b->shape, sb));
    /* BLAS counts in int: refuse what it cannot index rather than wrap around (a batch over a 2-d b is one
       GEMM of all a's rows). */
    int64_t rows = b->ndim == 2 ? (int64_t)((uint64_t)M * (uint64_t)bt.count) : M;
    if (M > INT32_MAX || K > INT32_MAX || N > INT32_MAX || rows > INT32_MAX || rows < 0)
        return tg__fail(TG_ESHAPE, "%s: dimensions beyond BLAS's int range: %s @ %s", fn,
                        tg__shape_str(a->ndim, a->shape, sa), tg__shape_str(b->ndim, b->shape, sb));
    *ndim = bt.nd + 2;
    memcpy(shape, bt.dims, (size_t)bt.nd * sizeof *shape);
    shape[bt.nd] = M, shape[bt.nd + 1] = N;
    return TG_OK;
}

/* The matrices of a matmul, 2-d or batched: a 2-d b takes all of a's rows in one GEMM (a batch of a
   (...,M,K) over one (K,N) is an (R,K) @ (K,N)), else one GEMM per batch element. */
typedef struct {
    int64_t M, K, N, count; /* count GEMMs of (M,K) @ (K,N) */
    batch bt;
} mm;

static mm mm_of(const tg_tensor *a, const tg_tensor *b) {
    mm m = {a->shape[a->ndim - 2], a->shape[a->ndim - 1], b->shape[b->ndim - 1], 1, {0}};
    batch_of(a, b, &m.bt);
    if (b->ndim == 2) m.M *= m.bt.count; /* one GEMM over every row of a */
    else m.count = m.bt.count;
    return m;
}

static tg_status matmul_forward(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *y) {
    (void)n, (void)args;
    const tg_tensor *a = in[0], *b = in[1];
    mm m = mm_of(a, b);
    size_t es = tg__dsize(a->dtype);
    /* K = 0 is an empty sum: zeros, whatever BLAS does with it */
    if (!m.K) memset(y->data, 0, (size_t)y->numel * es);
    for (int64_t i = 0; m.K && i < m.count; i++) {
        int64_t ia = 0, ib = 0;
        if (m.count > 1) batch_at(&m.bt, i, &ia, &ib);
        tg__gemm(a->dtype, 0, 0, m.M, m.N, m.K, (const char *)a->data + (size_t)(ia * m.M * m.K) * es, m.K,
                 (const char *)b->data + (size_t)(ib * m.K * m.N) * es, m.N, 0.0,
                 (char *)y->data + (size_t)(i * m.M * m.N) * es, m.N);
    }
    return TG_OK;
}

/* The part of a GEMM's output that a zero-length inner dimension leaves unwritten: a fresh buffer holds
   nothing yet, so it is zeroed (an empty sum), where beta = 1 would leave an accumulated one alone. */
static void empty_sum(const tg__node *node, int i, void *g, int64_t numel, tg_dtype dt) {
    if (g && tg__fresh(node, i) && numel) memset(g, 0, (size_t)numel * tg__dsize(dt));
}

/* dA += dY B^T, dB += A^T dY per batch element: beta = 1 accumulates in place, with no temporary; beta = 0
   when the buffer is fresh (nothing to add to, and no zero-fill before). An operand broadcast over the
   batch (its matrices reached more than once) sums its elements' contributions: a fresh buffer of it is
   zeroed first and every GEMM adds. */
static tg_status matmul_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    const tg_tensor *a = node->in[0], *b = node->in[1];
    mm m = mm_of(a, b);
    size_t es = tg__dsize(a->dtype);
    if (m.K == 0) return TG_OK; /* both gradients are empty */
    if (m.N == 0) {
        empty_sum(node, 0, grads[0], a->numel, a->dtype), empty_sum(node, 1, grads[1], b->numel, a->dtype);
        return TG_OK;
    }
    if (m.count == 0) { /* an empty batch: no GEMM writes anything */
        empty_sum(node, 0, grads[0], a->numel, a->dtype), empty_sum(node, 1, grads[1], b->numel, a->dtype);
        return TG_OK;
    }
    int fresh_a = tg__fresh(node, 0), fresh_b = tg__fresh(node, 1);
    if (m.count > 1 && tg__prod(a->shape, 0, a->ndim - 2) < m.count)
        empty_sum(node, 0, grads[0], a->numel, a->dtype), fresh_a = 0;
    if (m.count > 1 && tg__prod(b->shape, 0, b->ndim - 2) < m.count)
        empty_sum(node, 1, grads[1], b->numel, a->dtype), fresh_b = 0;
    for (int64_t i = 0; i < m.count; i++) {
        int64_t ia = 0, ib = 0;
        if (m.count > 1) batch_at(&m.bt, i, &ia, &ib);
        const char *A = (const char *)a->data + (size_t)(ia * m.M * m.K) * es,
                   *B = (const char *)b->data + (size_t)(ib * m.K * m.N) * es,
                   *G = (const char *)gout->data + (size_t)(i * m.M * m.N) * es;
        if (grads[0])
            tg__gemm(a->dtype, 0, 1, m.M, m.K, m.N, G, m.N, B, m.N, !fresh_a, (char *)grads[0] + (size_t)(ia * m.M * m.K) * es, m.K);
        if (grads[1])
            tg__gemm(a->dtype, 1, 0, m.K, m.N, m.M, A, m.K, G, m.N, !fresh_b, (char *)grads[1] + (size_t)(ib * m.K * m.N) * es, m.N);
    }
    return TG_OK;
}

static const char *const names_ab[] = {"a", "b"};
const tg__op tg__op_matmul = {.name = "matmul", .fn = "tg_matmul", .names = names_ab, .save = TG__SAVE_INPUTS,
                              .flags = TG__FILLS, .shape = matmul_shape, .forward = matmul_forward,
                              .backward = matmul_backward};

tg_tensor *tg_matmul(tg_tape *tape, tg_tensor *a, tg_tensor *b) {
    return tg__apply(tape, &tg__op_matmul, (tg_tensor *[]){a, b}, 2, &tg__no_args);
}

/* linear: x viewed as (R,K) with R = numel(x) / K, the leading dims flattened, so that a whole
   (N,T,H) sequence is one GEMM. b NULL makes it a 2-input node. */
static tg_status linear_shape(const char *fn, tg_tensor *const *in, int n, tg__args *args, int *ndim,
                              int64_t *shape) {
    (void)args;
    const tg_tensor *x = in[0], *W = in[1], *b = n > 2 ? in[2] : NULL;
    char sx[TG__SHAPE_STR], sw[TG__SHAPE_STR], sb[TG__SHAPE_STR];
    if (x->ndim < 1)
        return tg__fail(TG_ESHAPE, "%s: x is 0-d; want (...,K) with at least 1 dim", fn);
    if (W->ndim != 2)
        return tg__fail(TG_ESHAPE, "%s: W is %s; want a 2-d (K,M) weight (x is %s)", fn,
                        tg__shape_str(W->ndim, W->shape, sw), tg__shape_str(x->ndim, x->shape, sx));
    int64_t K = x->shape[x->ndim - 1], M = W->shape[1];
    if (W->shape[0] != K)
        return tg__fail(TG_ESHAPE, "%s: x's last dim differs from W's first: x %s @ W %s", fn,
                        tg__shape_str(x->ndim, x->shape, sx), tg__shape_str(2, W->shape, sw));
    if (b && (b->ndim != 1 || b->shape[0] != M))
        return tg__fail(TG_ESHAPE, "%s: b is %s; want (%lld,) for W %s", fn, tg__shape_str(b->ndim, b->shape, sb),
                        (long long)M, tg__shape_str(2, W->shape, sw));
    /* R as an unsigned product: an empty x's huge dims may wrap it, harmlessly, as nothing is computed. */
    if ((uint64_t)tg__prod(x->shape, 0, x->ndim - 1) > INT32_MAX || K > INT32_MAX || M > INT32_MAX)
        return tg__fail(TG_ESHAPE, "%s: dimensions beyond BLAS's int range: x %s @ W %s", fn,
                        tg__shape_str(x->ndim, x->shape, sx), tg__shape_str(2, W->shape, sw));
    *ndim = x->ndim;
    memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
    shape[x->ndim - 1] = M;
    return TG_OK;
}

/* y, which holds what x W is added to, += x W: one GEMM with beta = 1 over all the rows. */
static void xw_forward(const tg_tensor *x, const tg_tensor *W, tg_tensor *y) {
    int64_t K = W->shape[0], M = W->shape[1], R = M ? y->numel / M : 0;
    if (K) tg__gemm(y->dtype, 0, 0, R, M, K, x->data, K, W->data, M, 1.0, y->data, M);
}

/* dx += dy W^T, dW += x^T dy (beta = 1 in place, 0 into a fresh buffer), for x = node->in[i], W the next. */
static void xw_backward(const tg__node *node, int i, const tg_tensor *gout, void *const *grads) {
    const tg_tensor *x = node->in[i], *W = node->in[i + 1];
    int64_t K = W->shape[0], M = W->shape[1], R = M ? gout->numel / M : 0;
    if (M == 0) {
        empty_sum(node, i, grads[i], x->numel, x->dtype);
        return;
    }
    if (grads[i]) tg__gemm(x->dtype, 0, 1, R, K, M, gout->data, M, W->data, M, !tg__fresh(node, i), grads[i], K);
    if (grads[i + 1] && R)
        tg__gemm(x->dtype, 1, 0, K, M, R, x->data, K, gout->data, M, !tg__fresh(node, i + 1), grads[i + 1], M);
    else if (!R) empty_sum(node, i + 1, grads[i + 1], K * M, x->dtype);
}

/* Each row starts as b (or 0) and the GEMM adds x W onto it with beta = 1: no second pass for the bias. */
static tg_status linear_forward(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *y) {
    (void)args;
    int64_t M = in[1]->shape[1], R = M ? y->numel / M : 0;
    size_t es = tg__dsize(y->dtype), row = (size_t)M * es;
    if (n > 2)
        for (int64_t r = 0; r < R; r++) memcpy((char *)y->data + (size_t)r * row, in[2]->data, row);
    else if (y->numel)
        memset(y->data, 0, (size_t)y->numel * es);
    xw_forward(in[0], in[1], y);
    return TG_OK;
}

/* db += the column sums of dy. */
static tg_status linear_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    const tg_tensor *x = node->in[0];
    int64_t M = node->in[1]->shape[1], R = M ? gout->numel / M : 0;
    xw_backward(node, 0, gout, grads);
    if (M && node->n_in > 2 && grads[2]) {
        empty_sum(node, 2, grads[2], M, x->dtype);
        TG__DISPATCH(x->dtype, {
            const T *g = gout->data;
            T *gb = grads[2];
            for (int64_t r = 0; r < R; r++)
                for (int64_t j = 0; j < M; j++) gb[j] += g[r * M + j];
        });
    }
    return TG_OK;
}

static const char *const names_xwb[] = {"x", "W", "b"};
const tg__op tg__op_linear = {.name = "linear", .fn = "tg_linear", .names = names_xwb, .save = TG__SAVE_INPUTS,
                              .unsaved = 1u << 2, .flags = TG__FILLS, .shape = linear_shape, .forward = linear_forward,
                              .backward = linear_backward};

tg_tensor *tg_linear(tg_tape *tape, tg_tensor *x, tg_tensor *W, tg_tensor *b) {
    return tg__apply(tape, &tg__op_linear, (tg_tensor *[]){x, W, b}, b ? 3 : 2, &tg__no_args);
}

/* addmm: c + x W, c of the output's shape; x and W as tg_linear's (its checks, on in + 1). */
static tg_status addmm_shape(const char *fn, tg_tensor *const *in, int n, tg__args *args, int *ndim,
                             int64_t *shape) {
    (void)n;
    const tg_tensor *c = in[0];
    char sc[TG__SHAPE_STR], sx[TG__SHAPE_STR], sw[TG__SHAPE_STR], sy[TG__SHAPE_STR];
    if (linear_shape(fn, in + 1, 2, args, ndim, shape)) return TG_ESHAPE;
    if (c->ndim != *ndim || memcmp(c->shape, shape, (size_t)*ndim * sizeof *shape))
        return tg__fail(TG_ESHAPE, "%s: c is %s; want x @ W's shape %s (x %s, W %s)", fn,
                        tg__shape_str(c->ndim, c->shape, sc), tg__shape_str(*ndim, shape, sy),
                        tg__shape_str(in[1]->ndim, in[1]->shape, sx), tg__shape_str(2, in[2]->shape, sw));
    return TG_OK;
}

static tg_status addmm_forward(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *y) {
    (void)n, (void)args;
    if (y->numel) memcpy(y->data, in[0]->data, (size_t)y->numel * tg__dsize(y->dtype));
    xw_forward(in[1], in[2], y);
    return TG_OK;
}

/* dc += dy (a copy into a fresh buffer), then x's and W's as tg_linear's. */
static tg_status addmm_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    if (grads[0] && tg__fresh(node, 0) && gout->numel)
        memcpy(grads[0], gout->data, (size_t)gout->numel * tg__dsize(gout->dtype));
    else if (grads[0])
        TG__DISPATCH(gout->dtype, {
            const T *restrict g = gout->data;
            T *restrict gc = grads[0];
            for (int64_t k = 0; k < gout->numel; k++) gc[k] += g[k];
        });
    xw_backward(node, 1, gout, grads);
    return TG_OK;
}

static const char *const names_cxw[] = {"c", "x", "W"};
const tg__op tg__op_addmm = {.name = "addmm", .fn = "tg_addmm", .names = names_cxw, .save = TG__SAVE_INPUTS,
                             .unsaved = 1u << 0, .flags = TG__FILLS, .shape = addmm_shape, .forward = addmm_forward,
                             .backward = addmm_backward};

tg_tensor *tg_addmm(tg_tape *tape, tg_tensor *c, tg_tensor *x, tg_tensor *W) {
    return tg__apply(tape, &tg__op_addmm, (tg_tensor *[]){c, x, W}, 3, &tg__no_args);
}
