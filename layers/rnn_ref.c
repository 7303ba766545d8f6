/* The seed notebook's RNN and TimeRNN, forward and hand-derived backward, with its five bugs fixed
 * and no tape. It exists to check the tape against (tg_gradcheck_ref) and to be read beside the seed
 * (../shared/seed/rnn_timernn_notebook.txt): the functions keep the seed's names and order, and each
 * fix is marked "FIX n":
 *
 *     FIX 1  RNN.forward      np.tahn(t)             -> tanh(t)
 *     FIX 2  RNN.backward     np.matul(...)          -> a matrix product (matmul)
 *     FIX 3  RNN.backward     dWx = dt @ Wx.T        -> dWx = x.T @ dt
 *     FIX 4  RNN.backward     returns dx, never made -> dx = dt @ Wx.T
 *     FIX 5  TimeRNN.backward N, T, D = xs.shape     -> N, T, H from dhs and D, H from Wx (xs is not
 *                                                       in scope there)
 *
 * Shapes, with the seed's letters: x (N,D), h (N,H), Wx (D,H), Wh (H,H), b (H,), xs (N,T,D),
 * hs and dhs (N,T,H). The arithmetic is in double for both dtypes: for f32 tensors this reference is
 * a little more exact than the tape, which is what a reference should be.
 */
#include <math.h>
#include <string.h>
#include "rnn_internal.h"
#include "tg_internal.h"
#include "tg_rnn.h"

/* A 2-d window onto a tensor's data, element (i,j) at data[off + i*ld + j]. It reads xs[:, t, :]
   in place, as NumPy's slicing does: rows are n, and one row of xs[:, t, :] lies T*D apart.
   data NULL reads as zeros (h0 NULL means a zero initial state, as the seed's np.zeros). */
typedef struct {
    void *data;
    tg_dtype dtype;
    int64_t off, ld;
} mat;

static mat whole(tg_tensor *t, int64_t cols) {
    mat m = {t ? tg_tensor_data(t) : NULL, t ? tg_tensor_dtype(t) : TG_F64, 0, cols};
    return m;
}
/* xs[:, t, :] of an (N,T,C) tensor. */
static mat step(tg_tensor *t3, int64_t t) {
    const int64_t *s = tg_tensor_shape(t3);
    mat m = {tg_tensor_data(t3), tg_tensor_dtype(t3), t * s[2], s[1] * s[2]};
    return m;
}
static double at(mat m, int64_t i, int64_t j) {
    if (!m.data) return 0.0;
    int64_t k = m.off + i * m.ld + j;
    return m.dtype == TG_F32 ? (double)((const float *)m.data)[k] : ((const double *)m.data)[k];
}
static void put(mat m, int64_t i, int64_t j, double v) {
    int64_t k = m.off + i * m.ld + j;
    if (m.dtype == TG_F32) ((float *)m.data)[k] = (float)v;
    else ((double *)m.data)[k] = v;
}
static void add_to(mat m, int64_t i, int64_t j, double v) { put(m, i, j, at(m, i, j) + v); }
static void zero(tg_tensor *t) {
    if (t) memset(tg_tensor_data(t), 0, (size_t)tg_tensor_numel(t) * tg__dsize(tg_tensor_dtype(t)));
}

/* ---- class RNN ------------------------------------------------------------------------------- */

/* RNN.forward:  t = h_prev @ Wh + x @ Wx + b;  h_next = tanh(t). */
static void rnn_forward(int64_t N, int64_t D, int64_t H, mat x, mat h_prev, mat Wx, mat Wh, mat b,
                        mat h_next) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < H; j++) {
            double t = 0.0;
            for (int64_t k = 0; k < H; k++) t += at(h_prev, n, k) * at(Wh, k, j);
            for (int64_t d = 0; d < D; d++) t += at(x, n, d) * at(Wx, d, j);
            t += at(b, 0, j);
            /* FIX 1: the seed calls np.tahn, which NumPy does not have (AttributeError). */
            put(h_next, n, j, tanh(t));
        }
}

/* RNN.backward, given dh_next (N,H): dt = dh_next * (1 - h_next^2), then
       db += sum_rows(dt),  dWh += h_prev^T dt,  dWx += x^T dt,  dh_prev = dt Wh^T,  dx = dt Wx^T.
   The seed's cell overwrites its own grads and TimeRNN sums them over steps; adding straight into
   the sums (+=) is the same arithmetic without a per-step copy. dt is scratch (N*H doubles); dx may
   have no data (the caller wants no dxs). dh_prev may be the same buffer as dh_next: dh_next is
   read only while making dt. */
static void rnn_backward(int64_t N, int64_t D, int64_t H, mat x, mat h_prev, mat h_next, mat Wx, mat Wh,
                         mat dh_next, double *dt, mat dx, mat dh_prev, mat dWx, mat dWh, mat db) {
    /* tanh' written with the output: d tanh(t)/dt = 1 - tanh(t)^2 = 1 - h_next^2. */
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < H; j++) {
            double h = at(h_next, n, j);
            dt[n * H + j] = at(dh_next, n, j) * (1.0 - h * h);
        }
    /* The products below are the seed's np.matmul calls written as loops. FIX 2: the seed's
       np.matul is a typo NumPy rejects (AttributeError); each product here is a real one. */
    for (int64_t j = 0; j < H; j++) {
        double s = 0.0;
        for (int64_t n = 0; n < N; n++) s += dt[n * H + j];
        if (db.data) add_to(db, 0, j, s); /* db = np.sum(dt, axis=0) */
    }
    if (dWh.data) /* dWh = h_prev.T @ dt: (H,N) @ (N,H) */
        for (int64_t k = 0; k < H; k++)
            for (int64_t j = 0; j < H; j++) {
                double s = 0.0;
                for (int64_t n = 0; n < N; n++) s += at(h_prev, n, k) * dt[n * H + j];
                add_to(dWh, k, j, s);
            }
    /* FIX 3: the seed writes dWx = dt @ Wx.T, which is (N,H) @ (H,D) = (N,D), dx's shape and
       formula, not dWx's. t = ... + x @ Wx, so dL/dWx = x.T @ dt: (D,N) @ (N,H) = (D,H). */
    if (dWx.data)
        for (int64_t d = 0; d < D; d++)
            for (int64_t j = 0; j < H; j++) {
                double s = 0.0;
                for (int64_t n = 0; n < N; n++) s += at(x, n, d) * dt[n * H + j];
                add_to(dWx, d, j, s);
            }
    /* FIX 4: the seed returns dx but never computes it (NameError). dx = dt @ Wx.T: (N,H) @ (H,D). */
    if (dx.data)
        for (int64_t n = 0; n < N; n++)
            for (int64_t d = 0; d < D; d++) {
                double s = 0.0;
                for (int64_t j = 0; j < H; j++) s += dt[n * H + j] * at(Wx, d, j);
                put(dx, n, d, s);
            }
    /* dh_prev = dt @ Wh.T: (N,H) @ (H,H). Written last, so dh_prev may share dh_next's buffer. */
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < H; k++) {
            double s = 0.0;
            for (int64_t j = 0; j < H; j++) s += dt[n * H + j] * at(Wh, k, j);
            put(dh_prev, n, k, s);
        }
}

/* ---- class TimeRNN ----------------------------------------------------------------------------- */

/* TimeRNN.forward: h = h0 (zeros when NULL); for t in 0..T-1: h = RNN.forward(xs[:, t, :], h),
   hs[:, t, :] = h. */
static void time_rnn_forward(tg_tensor *xs, tg_tensor *h0, tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b,
                             tg_tensor *hs) {
    const int64_t *s = tg_tensor_shape(xs), *w = tg_tensor_shape(Wx);
    int64_t N = s[0], T = s[1], D = w[0], H = w[1];
    mat h = whole(h0, H);
    for (int64_t t = 0; t < T; t++) {
        rnn_forward(N, D, H, step(xs, t), h, whole(Wx, H), whole(Wh, H), whole(b, H), step(hs, t));
        h = step(hs, t);
    }
}

/* TimeRNN.backward: dh = 0; for t = T-1 down to 0: the step's upstream gradient is dhs[:, t, :] plus
   the dh that step t+1 sent back, and the step's dWx, dWh, db add into the sums. The dh left at the
   end is dL/dh0, the seed's self.dh. scratch holds 2*N*H doubles. */
static void time_rnn_backward(tg_tensor *xs, tg_tensor *h0, tg_tensor *Wx, tg_tensor *Wh, tg_tensor *hs,
                              tg_tensor *dhs, tg_tensor *dxs, tg_tensor *dWx, tg_tensor *dWh,
                              tg_tensor *db, tg_tensor *dh0, double *scratch) {
    /* FIX 5: the seed reads N, T, D = xs.shape, but xs is forward's argument and not in scope here
       (NameError). Everything backward needs is at hand: N, T, H from dhs, and D, H from Wx. */
    const int64_t *g = tg_tensor_shape(dhs), *w = tg_tensor_shape(Wx);
    int64_t N = g[0], T = g[1], D = w[0], H = w[1];
    double *dt = scratch, *dh = scratch + N * H;
    mat dh_m = {dh, TG_F64, 0, H};

    /* grads = [0, 0, 0]: this function overwrites its outputs. */
    zero(dWx);
    zero(dWh);
    zero(db);
    memset(dh, 0, (size_t)(N * H) * sizeof *dh); /* dh = 0 */

    for (int64_t t = T - 1; t >= 0; t--) {
        /* dh = dhs[:, t, :] + dh: the gradient reaching h_t from the loss directly and from step t+1. */
        mat up = step(dhs, t);
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < H; j++) dh[n * H + j] += at(up, n, j);
        mat h_prev = t > 0 ? step(hs, t - 1) : whole(h0, H);
        mat dx = dxs ? step(dxs, t) : (mat){NULL, TG_F64, 0, 0};
        rnn_backward(N, D, H, step(xs, t), h_prev, step(hs, t), whole(Wx, H), whole(Wh, H), dh_m, dt, dx,
                     dh_m, whole(dWx, H), whole(dWh, H), whole(db, H));
    }
    if (dh0) /* self.dh = dh */
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < H; j++) put(whole(dh0, H), n, j, dh[n * H + j]);
}

/* ---- the public entry: argument checks, then forward and backward ------------------------------ */

/* Checks that t (named name) has dtype dt and the shape want[0..nd); fills a message otherwise.
   required 0 lets t be NULL; a required NULL keeps an earlier failure (tg__null). */
static int bad_arg(const char *name, const tg_tensor *t, int required, tg_dtype dt, int nd,
                   const int64_t *want, const char *letters) {
    char got[TG__SHAPE_STR], exp[TG__SHAPE_STR];
    if (!t) {
        if (required) tg__null("tg_time_rnn_ref", name);
        return required;
    }
    if (tg__stale("tg_time_rnn_ref", name, t)) return 1;
    if (tg_tensor_dtype(t) != dt) {
        tg__fail(TG_EDTYPE, "tg_time_rnn_ref: %s is %s but xs is %s", name,
                 tg__dtype_name(tg_tensor_dtype(t)), tg__dtype_name(dt));
        return 1;
    }
    int same = tg_tensor_ndim(t) == nd;
    for (int i = 0; same && i < nd; i++) same = tg_tensor_shape(t)[i] == want[i];
    if (!same) {
        tg__fail(TG_ESHAPE, "tg_time_rnn_ref: %s is %s, want %s = %s", name,
                 tg__shape_str(tg_tensor_ndim(t), tg_tensor_shape(t), got), letters,
                 tg__shape_str(nd, want, exp));
        return 1;
    }
    return 0;
}

tg_status tg_time_rnn_ref(tg_tensor *xs, tg_tensor *h0, tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b,
                          tg_tensor *dhs, tg_tensor *hs, tg_tensor *dxs, tg_tensor *dWx,
                          tg_tensor *dWh, tg_tensor *db, tg_tensor *dh0) {
    static const char fn[] = "tg_time_rnn_ref";
    char buf[TG__SHAPE_STR];
    tg_status st = tg__arg(fn, "xs", xs);
    if (st) return st;
    /* The parameters among themselves, by the layer's own check: Wx (D,H), Wh (H,H), b (H,), one
       dtype. What only the reference checks follows: Wx's D and dtype, and the rest, against xs. */
    if (tg__rnn_bad_params(fn, Wx, Wh, b)) return tg_last_status();
    if (tg_tensor_ndim(xs) != 3)
        return tg__fail(TG_ESHAPE, "%s: xs is %s, want 3 dims (N,T,D)", fn,
                        tg__shape_str(tg_tensor_ndim(xs), tg_tensor_shape(xs), buf));
    const int64_t *s = tg_tensor_shape(xs);
    int64_t N = s[0], T = s[1], D = s[2], H = tg_tensor_shape(Wx)[1];
    tg_dtype dt = tg_tensor_dtype(xs);
    if (bad_arg("Wx", Wx, 1, dt, 2, (int64_t[]){D, H}, "(D,H)") || /* Wx's D and dtype against xs */
        bad_arg("h0", h0, 0, dt, 2, (int64_t[]){N, H}, "(N,H)") ||
        bad_arg("hs", hs, 1, dt, 3, (int64_t[]){N, T, H}, "(N,T,H)") ||
        bad_arg("dhs", dhs, 0, dt, 3, (int64_t[]){N, T, H}, "(N,T,H)") ||
        bad_arg("dxs", dxs, 0, dt, 3, (int64_t[]){N, T, D}, "(N,T,D)") ||
        bad_arg("dWx", dWx, 0, dt, 2, (int64_t[]){D, H}, "(D,H)") ||
        bad_arg("dWh", dWh, 0, dt, 2, (int64_t[]){H, H}, "(H,H)") ||
        bad_arg("db", db, 0, dt, 1, (int64_t[]){H}, "(H,)") ||
        bad_arg("dh0", dh0, 0, dt, 2, (int64_t[]){N, H}, "(N,H)"))
        return tg_last_status();

    time_rnn_forward(xs, h0, Wx, Wh, b, hs);
    if (!dhs) return TG_OK;

    /* With T >= 1, N*H <= numel(hs), so it cannot overflow; with T = 0 there is no step, and with
       N*H = 0 nothing to carry: every gradient (dh0 included) is zero. */
    int64_t NH = T > 0 ? N * H : 0;
    double *scratch = NH ? tg__malloc((size_t)(2 * NH) * sizeof *scratch) : NULL;
    if (NH && !scratch)
        return tg__fail(TG_ENOMEM, "tg_time_rnn_ref: out of memory for %lld scratch doubles",
                        (long long)(2 * NH));
    if (NH) {
        time_rnn_backward(xs, h0, Wx, Wh, hs, dhs, dxs, dWx, dWh, db, dh0, scratch);
    } else {
        tg_tensor *outs[5] = {dxs, dWx, dWh, db, dh0};
        for (int i = 0; i < 5; i++) zero(outs[i]);
    }
    tg__free(scratch);
    return TG_OK;
}
