/* Network ops: embedding, softmax and log_softmax, cross-entropy, dropout. */
#include <math.h>
#include <string.h>
#include "ops_internal.h"
#include "vmath.h"

static const char *const names_x[] = {"x"};

/* ---- embedding: out[k, :] = table[indices[k], :] ---- */

/* The indices are checked here, once, so that forward and backward may trust them. */
static tg_status embedding_shape(const char *fn, tg_tensor *const *in, int n, tg__args *args, int *ndim,
                                 int64_t *shape) {
    (void)n, (void)args;
    const tg_tensor *table = in[0], *idx = in[1];
    char st[TG__SHAPE_STR], si[TG__SHAPE_STR];
    if (table->ndim != 2)
        return tg__fail(TG_ESHAPE, "%s: table is %s; want a 2-d (V,E) table", fn,
                        tg__shape_str(table->ndim, table->shape, st));
    if (idx->ndim == TG_MAX_DIMS)
        return tg__fail(TG_ESHAPE, "%s: indices %s have %d dims; the result would have %d", fn,
                        tg__shape_str(idx->ndim, idx->shape, si), TG_MAX_DIMS, TG_MAX_DIMS + 1);
    const int64_t *p = idx->data, V = table->shape[0];
    for (int64_t k = 0; k < idx->numel; k++)
        if (p[k] < 0 || p[k] >= V)
            return tg__fail(TG_EINVAL, "%s: index %lld at flat position %lld is outside [0, %lld) for table %s", fn,
                            (long long)p[k], (long long)k, (long long)V, tg__shape_str(2, table->shape, st));
    *ndim = idx->ndim + 1;
    memcpy(shape, idx->shape, (size_t)idx->ndim * sizeof *shape);
    shape[idx->ndim] = table->shape[1];
    return TG_OK;
}

static tg_status embedding_forward(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *out) {
    (void)n, (void)args;
    const tg_tensor *table = in[0], *idx = in[1];
    const int64_t *p = idx->data;
    size_t row = (size_t)table->shape[1] * tg__dsize(table->dtype);
    for (int64_t k = 0; k < idx->numel && row; k++)
        memcpy((char *)out->data + (size_t)k * row, (const char *)table->data + (size_t)p[k] * row, row);
    return TG_OK;
}

/* A scatter-add: a row used twice gets both rows of dy. */
static tg_status embedding_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    const tg_tensor *table = node->in[0], *idx = node->in[1];
    if (!grads[0]) return TG_OK;
    const int64_t *p = idx->data, E = table->shape[1];
    TG__DISPATCH(table->dtype, {
        const T *g = gout->data;
        T *gt = grads[0];
        for (int64_t k = 0; k < idx->numel; k++)
            for (int64_t j = 0; j < E; j++) gt[p[k] * E + j] += g[k * E + j];
    });
    return TG_OK;
}

static const char *const names_embedding[] = {"table", "indices"};
const tg__op tg__op_embedding = {.name = "embedding", .fn = "tg_embedding", .names = names_embedding,
                                 .index_inputs = 1u << 1, .save = TG__SAVE_INPUTS, .unsaved = 1u << 0,
                                 .shape = embedding_shape, .forward = embedding_forward,
                                 .backward = embedding_backward};

tg_tensor *tg_embedding(tg_tape *tape, tg_tensor *table, tg_tensor *indices) {
    return tg__apply(tape, &tg__op_embedding, (tg_tensor *[]){table, indices}, 2, &tg__no_args);
}

/* ---- softmax and log_softmax along an axis: x viewed as (outer, n, inner), args.i[0] the axis ---- */

static tg_status axis_shape(const char *fn, tg_tensor *const *in, int n, tg__args *args, int *ndim, int64_t *shape) {
    (void)n;
    const tg_tensor *x = in[0];
    if (tg__axis(fn, x->ndim, x->shape, &args->i[0])) return TG_EINVAL;
    *ndim = x->ndim;
    memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
    return TG_OK;
}

/* Runs the statements for each slice along the axis, which starts at offset base and holds len elements
   inner apart. Nothing runs for an empty x, whose other dims may be huge. */
#define AXIS_SLICES(x, axis, ...)                                                                  \
    do {                                                                                           \
        const int64_t outer_ = tg__prod((x)->shape, 0, (axis)), len = (x)->shape[(axis)];          \
        const int64_t inner = tg__prod((x)->shape, (axis) + 1, (x)->ndim);                         \
        for (int64_t o_ = 0; o_ < outer_ && (x)->numel; o_++)                                      \
            for (int64_t i_ = 0; i_ < inner; i_++) {                                               \
                const int64_t base = o_ * len * inner + i_;                                        \
                __VA_ARGS__                                                                        \
            }                                                                                      \
    } while (0)

/* A contiguous row's max and its sum (in double), LANES running values at a time so that the vectorizer
   makes whole registers of them: one running max or sum is a chain of dependent instructions, which was
   most of cross-entropy's forward at the book's V = 340. The max is the left-to-right one's (a NaN in
   the row reaches the sum, and so the result, either way); the sum differs from a left-to-right one in
   its rounding only. ROW_MAX and ROW_SUM take a T row (TG__DISPATCH's T). */
#define LANES 16
#define ROW_REDUCERS(TT, sfx)                                                                      \
    TG__CLONES static double row_max_##sfx(const TT *x, int64_t n) {                               \
        TT m[LANES], r;                                                                            \
        int64_t j = 0;                                                                             \
        for (int l = 0; l < LANES; l++) m[l] = x[0];                                               \
        for (; j + LANES <= n; j += LANES)                                                         \
            for (int l = 0; l < LANES; l++) m[l] = x[j + l] > m[l] ? x[j + l] : m[l];              \
        r = m[0];                                                                                  \
        for (int l = 1; l < LANES; l++) r = m[l] > r ? m[l] : r;                                   \
        for (; j < n; j++) r = x[j] > r ? x[j] : r;                                                \
        return r;                                                                                  \
    }                                                                                              \
    TG__CLONES static double row_sum_##sfx(const TT *x, int64_t n) {                               \
        double s[LANES] = {0}, r = 0;                                                              \
        int64_t j = 0;                                                                             \
        for (; j + LANES <= n; j += LANES)                                                         \
            for (int l = 0; l < LANES; l++) s[l] += x[j + l];                                      \
        for (int l = 0; l < LANES; l++) r += s[l];                                                 \
        for (; j < n; j++) r += x[j];                                                              \
        return r;                                                                                  \
    }
ROW_REDUCERS(float, f32)
ROW_REDUCERS(double, f64)
#define ROW_MAX(px, n) (sizeof(T) == 4 ? row_max_f32((const float *)(px), n) : row_max_f64((const double *)(px), n))
#define ROW_SUM(px, n) (sizeof(T) == 4 ? row_sum_f32((const float *)(px), n) : row_sum_f64((const double *)(px), n))

/* e[j] = e^((x_j - m) - l), x_j = px[j * stride], for j < n, in x's dtype, through SLEEF's vector exp
   (vmath.h): with libm's scalar exp, softmax's and cross-entropy's sums were most of their time (rnnlm: a
   quarter of a step). x - m is taken first, in double, so that logits of +-1e4 lose nothing. Rows go CHUNK
   elements at a time through a buffer on the stack; a strided axis is gathered into it. */
#define CHUNK 256
#define VEXPS_AT(px, stride, n, m, l, e)                                                           \
    do {                                                                                           \
        for (int64_t j_ = 0; j_ < (n); j_++) (e)[j_] = (T)(((double)(px)[j_ * (stride)] - (m)) - (l)); \
        tg__vmath(TG__VEXP, sizeof(T) == sizeof(double), (e), (e), (n));                           \
    } while (0)

/* The max is subtracted before exp, so no exp overflows; the sum is in double even for f32. Any axis,
   strided (inner > 1) or not, goes through the vector exps; softmax's land in y, then divide by the sum. */
static tg_status softmax_forward_(int log_, tg_tensor *const *in, const tg__args *args, tg_tensor *out) {
    const tg_tensor *x = in[0];
    TG__DISPATCH(x->dtype, {
        T e[CHUNK];
        AXIS_SLICES(x, (int)args->i[0], {
            const T *px = (const T *)x->data + base;
            T *py = (T *)out->data + base;
            double m = px[0], s = 0;
            if (inner == 1) m = ROW_MAX(px, len);
            else
                for (int64_t j = 1; j < len; j++) m = px[j * inner] > m ? px[j * inner] : m;
            for (int64_t c = 0; c < len; c += CHUNK) {
                const int64_t n = len - c < CHUNK ? len - c : CHUNK;
                VEXPS_AT(px + c * inner, inner, n, m, 0.0, e);
                s += ROW_SUM(e, n);
                if (!log_)
                    for (int64_t j = 0; j < n; j++) py[(c + j) * inner] = e[j];
            }
            const double ls = log(s);
            for (int64_t j = 0; j < len; j++)
                py[j * inner] = (T)(log_ ? px[j * inner] - m - ls : py[j * inner] / s);
        });
    });
    return TG_OK;
}

/* softmax: dx += y (dy - sum(dy y)); log_softmax: dx += dy - e^y sum(dy), e^y by vector exps. */
static tg_status softmax_backward_(int log_, const tg__node *node, const tg_tensor *gout, void *const *grads) {
    const tg_tensor *y = node->out;
    TG__DISPATCH(y->dtype, {
        T e[CHUNK];
        AXIS_SLICES(y, (int)node->args.i[0], {
            const T *py = (const T *)y->data + base, *pg = (const T *)gout->data + base;
            T *pgx = (T *)grads[0] + base;
            double s = 0;
            for (int64_t j = 0; j < len; j++) s += log_ ? pg[j * inner] : pg[j * inner] * py[j * inner];
            if (log_)
                for (int64_t c = 0; c < len; c += CHUNK) {
                    const int64_t n = len - c < CHUNK ? len - c : CHUNK;
                    VEXPS_AT(py + c * inner, inner, n, 0.0, 0.0, e);
                    for (int64_t j = 0; j < n; j++) pgx[(c + j) * inner] += (T)(pg[(c + j) * inner] - e[j] * s);
                }
            else
                for (int64_t j = 0; j < len; j++) {
                    const double g = pg[j * inner], yj = py[j * inner];
                    pgx[j * inner] += (T)(yj * (g - s));
                }
        });
    });
    return TG_OK;
}

static tg_status softmax_forward(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *out) {
    (void)n;
    return softmax_forward_(0, in, args, out);
}
static tg_status softmax_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    return softmax_backward_(0, node, gout, grads);
}
static tg_status log_softmax_forward(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *out) {
    (void)n;
    return softmax_forward_(1, in, args, out);
}
static tg_status log_softmax_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    return softmax_backward_(1, node, gout, grads);
}

const tg__op tg__op_softmax = {.name = "softmax", .fn = "tg_softmax", .names = names_x, .save = TG__SAVE_OUTPUT,
                               .iarg = {"axis"}, .shape = axis_shape, .forward = softmax_forward,
                               .backward = softmax_backward};
const tg__op tg__op_log_softmax = {.name = "log_softmax", .fn = "tg_log_softmax", .names = names_x,
                                   .save = TG__SAVE_OUTPUT, .iarg = {"axis"}, .shape = axis_shape,
                                   .forward = log_softmax_forward, .backward = log_softmax_backward};

tg_tensor *tg_softmax(tg_tape *tape, tg_tensor *x, int axis) {
    return tg__apply(tape, &tg__op_softmax, &x, 1, &(tg__args){.i = {axis}});
}
tg_tensor *tg_log_softmax(tg_tape *tape, tg_tensor *x, int axis) {
    return tg__apply(tape, &tg__op_log_softmax, &x, 1, &(tg__args){.i = {axis}});
}

/* ---- cross-entropy: args.i[0] ignore_index, args.i[1] the count of positions not ignored ---- */

/* The targets are checked and counted here, so forward and backward divide by the same count. */
static tg_status ce_shape(const char *fn, tg_tensor *const *in, int n, tg__args *args, int *ndim, int64_t *shape) {
    (void)n, (void)shape;
    const tg_tensor *logits = in[0], *targets = in[1];
    char sl[TG__SHAPE_STR], st[TG__SHAPE_STR];
    if (logits->ndim < 1 || targets->ndim != logits->ndim - 1 ||
        memcmp(targets->shape, logits->shape, (size_t)targets->ndim * sizeof(int64_t)))
        return tg__fail(TG_ESHAPE, "%s: logits %s and targets %s do not fit; want (...,V) and (...)", fn,
                        tg__shape_str(logits->ndim, logits->shape, sl),
                        tg__shape_str(targets->ndim, targets->shape, st));
    const int64_t *t = targets->data, V = logits->shape[logits->ndim - 1], ignore = args->i[0];
    int64_t count = 0;
    for (int64_t k = 0; k < targets->numel; k++) {
        if (t[k] == ignore) continue;
        if (t[k] < 0 || t[k] >= V)
            return tg__fail(TG_EINVAL, "%s: target %lld at flat position %lld is outside [0, %lld) and is not "
                            "ignore_index %lld", fn, (long long)t[k], (long long)k, (long long)V, (long long)ignore);
        count++;
    }
    args->i[1] = count;
    *ndim = 0;
    return TG_OK;
}

/* -log_softmax[target] = (max - x_target) + log sum e^(x - max): exact for logits of +-1e4. Each row's max
   and log-sum are kept, (..., 2), for the backward: the one pass over the logits each way is an exp. */
TG__CLONES static tg_status ce_forward(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *out) {
    (void)n;
    const tg_tensor *logits = in[0], *targets = in[1];
    const int64_t *t = targets->data, V = logits->shape[logits->ndim - 1], count = args->i[1];
    int64_t kshape[TG_MAX_DIMS];
    memcpy(kshape, targets->shape, (size_t)targets->ndim * sizeof *kshape);
    kshape[targets->ndim] = 2;
    tg_tensor *kept = tg_custom_keep(out, targets->ndim + 1, kshape);
    if (!kept) return tg_last_status();
    TG__DISPATCH(logits->dtype, {
        double loss = 0;
        T e[CHUNK], *pk = kept->data;
        for (int64_t r = 0; r < targets->numel; r++) {
            if (t[r] == args->i[0]) continue;
            const T *px = (const T *)logits->data + r * V;
            const double m = ROW_MAX(px, V);
            double s = 0;
            for (int64_t c = 0; c < V; c += CHUNK) {
                const int64_t k = V - c < CHUNK ? V - c : CHUNK;
                VEXPS_AT(px + c, 1, k, m, 0.0, e);
                s += ROW_SUM(e, k);
            }
            pk[2 * r] = (T)m, pk[2 * r + 1] = (T)log(s);
            loss += (m - px[t[r]]) + log(s);
        }
        *(T *)out->data = (T)(count ? loss / (double)count : 0.0);
    });
    return TG_OK;
}

/* dlogits += dy (softmax - onehot) / count, softmax = e^((x - max) - log-sum) from the kept pair. A fresh
   buffer (TG__FILLS) is assigned, ignored rows zeroed: no memset of the whole (..., V) before. */
TG__CLONES static tg_status ce_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    const tg_tensor *logits = node->in[0], *targets = node->in[1], *kept = node->saved[node->n_in + 1];
    const int64_t *t = targets->data, V = logits->shape[logits->ndim - 1], count = node->args.i[1];
    const int fresh = tg__fresh(node, 0);
    if (!grads[0]) return TG_OK;
    TG__DISPATCH(logits->dtype, {
        const double c = count ? *(const T *)gout->data / (double)count : 0.0;
        const T *pk = kept->data;
        T *gx = grads[0], e[CHUNK];
        for (int64_t r = 0; r < targets->numel; r++) {
            T *g = gx + r * V;
            if (!count || t[r] == node->args.i[0]) {
                if (fresh) memset(g, 0, (size_t)V * sizeof(T));
                continue;
            }
            const T *px = (const T *)logits->data + r * V;
            for (int64_t j0 = 0; j0 < V; j0 += CHUNK) {
                const int64_t k = V - j0 < CHUNK ? V - j0 : CHUNK;
                VEXPS_AT(px + j0, 1, k, pk[2 * r], pk[2 * r + 1], e);
                if (fresh)
                    for (int64_t j = 0; j < k; j++) g[j0 + j] = (T)(c * e[j]);
                else
                    for (int64_t j = 0; j < k; j++) g[j0 + j] += (T)(c * e[j]);
            }
            g[t[r]] -= (T)c;
        }
    });
    return TG_OK;
}

static const char *const names_ce[] = {"logits", "targets"};
const tg__op tg__op_cross_entropy = {.name = "cross_entropy", .fn = "tg_cross_entropy", .names = names_ce,
                                     .index_inputs = 1u << 1, .save = TG__SAVE_ALL,
                                     .flags = TG__KEEPS | TG__FILLS, .iarg = {"ignore_index"},
                                     .shape = ce_shape, .forward = ce_forward, .backward = ce_backward};

tg_tensor *tg_cross_entropy(tg_tape *tape, tg_tensor *logits, tg_tensor *targets, int64_t ignore_index) {
    return tg__apply(tape, &tg__op_cross_entropy, (tg_tensor *[]){logits, targets}, 2,
                     &(tg__args){.i = {ignore_index}});
}

/* ---- dropout: args.f[0] p, args.i[0] the seed of the stream its mask is drawn from ---- */

/* Forward and backward draw the same mask from the stream seeded by args.i[0], so nothing is stored;
   p = 0 (evaluation too) draws nothing. */
#define DROPOUT_LOOP(args, numel, KEEP)                                                            \
    do {                                                                                           \
        tg_rng r_;                                                                                 \
        tg_rng_seed(&r_, (uint64_t)(args)->i[0]);                                                  \
        const double p_ = (args)->f[0];                                                            \
        const T scale = (T)(1.0 / (1.0 - p_));                                                     \
        for (int64_t i = 0; i < (numel); i++) {                                                    \
            const int keep = p_ == 0 || tg_rng_uniform(&r_) >= p_;                                 \
            KEEP;                                                                                  \
        }                                                                                          \
    } while (0)

static tg_status dropout_forward(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *out) {
    (void)n;
    TG__DISPATCH(out->dtype, {
        const T *px = in[0]->data;
        T *py = out->data;
        DROPOUT_LOOP(args, out->numel, py[i] = keep ? px[i] * scale : 0);
    });
    return TG_OK;
}

static tg_status dropout_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    TG__DISPATCH(gout->dtype, {
        const T *pg = gout->data;
        T *gx = grads[0];
        DROPOUT_LOOP(&node->args, gout->numel, if (keep) gx[i] += pg[i] * scale);
    });
    return TG_OK;
}

const tg__op tg__op_dropout = {.name = "dropout", .fn = "tg_dropout", .names = names_x, .farg = {"p"},
                               .shape = tg__shape_of_first, .forward = dropout_forward, .backward = dropout_backward};

/* One draw of the caller's rng seeds the node's stream: the caller's advances by one whatever x's size. */
tg_tensor *tg_dropout(tg_tape *tape, tg_tensor *x, double p, tg_rng *rng) {
    if (x && !(p >= 0 && p < 1)) {
        tg__fail(TG_EINVAL, "tg_dropout: p is %g; want 0 <= p < 1", p);
        return NULL;
    }
    uint64_t seed = rng ? tg_rng_next(rng) : 0;
    return tg__apply(tape, &tg__op_dropout, &x, 1, &(tg__args){.i = {(int64_t)seed}, .f = {rng ? p : 0}});
}
