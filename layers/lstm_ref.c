/* The book's LSTM, TimeLSTM, GRU and TimeGRU ("Deep Learning from Scratch 2", common/time_layers.py),
 * forward and hand-derived backward, with no tape. It exists to check the tape against
 * (tg_gradcheck_ref) and to be read beside the book: the functions keep the book's names and order,
 * and each line of the backward carries the book's formula beside it.
 *
 * Shapes, with the book's letters: x (N,D), h and c (N,H), xs (N,T,D), hs, cs and dhs (N,T,H); LSTM
 * Wx (D,4H), Wh (H,4H), b (4H,), gates f, g, i, o in that order; GRU Wx (D,3H), Wh (H,3H), b (3H,),
 * parts z, r, h~. Everything is copied into double first, for both dtypes: for f32 tensors this
 * reference is a little more exact than the tape, which is what a reference should be.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "recurrent_internal.h"
#include "tg_internal.h"
#include "tg_lstm.h"

/* ---- NumPy's few tools, in double ------------------------------------------------------------ */

/* An r x c matrix, element (i,j) at p[i*ld + j]: a whole array, or a view of one such as the book's
   Wx[:, :H] (cols) or xs[:, t, :] (step). */
typedef struct {
    double *p;
    int64_t r, c, ld;
} mat;
#define E(m, i, j) ((m).p[(i) * (m).ld + (j)])

static mat whole(double *p, int64_t r, int64_t c) { return (mat){p, r, c, c}; }
/* m[:, from:to] */
static mat cols(mat m, int64_t from, int64_t to) { return (mat){m.p + from, m.r, to - from, m.ld}; }
/* a[:, t, :] of an (N,T,C) array */
static mat step(double *a, int64_t N, int64_t T, int64_t C, int64_t t) { return (mat){a + t * C, N, C, T * C}; }

/* y = a' @ b', or y += a' @ b' when add is set; a' is a.T when ta is set, else a; b' likewise. */
static void mm(mat y, int add, mat a, int ta, mat b, int tb) {
    int64_t K = ta ? a.r : a.c;
    for (int64_t i = 0; i < y.r; i++)
        for (int64_t j = 0; j < y.c; j++) {
            double s = 0.0;
            for (int64_t k = 0; k < K; k++) s += (ta ? E(a, k, i) : E(a, i, k)) * (tb ? E(b, j, k) : E(b, k, j));
            E(y, i, j) = add ? E(y, i, j) + s : s;
        }
}

/* y (1,c) += np.sum(a, axis=0) */
static void sum_rows_add(mat y, mat a) {
    for (int64_t i = 0; i < a.r; i++)
        for (int64_t j = 0; j < a.c; j++) E(y, 0, j) += E(a, i, j);
}

/* y += b (1,c) broadcast over the rows */
static void add_row(mat y, mat b) {
    for (int64_t i = 0; i < y.r; i++)
        for (int64_t j = 0; j < y.c; j++) E(y, i, j) += E(b, 0, j);
}

static double sigmoid(double a) { return 1.0 / (1.0 + exp(-a)); }

/* The scratch arrays of one call, each from tg__malloc (so that tests can fail any of them), freed
   together. */
typedef struct {
    double *p[24];
    int n, failed;
} pool;

static double *take(pool *pl, int64_t count) {
    double *p = pl->failed ? NULL : tg__calloc((size_t)(count > 0 ? count : 1) * sizeof *p);
    if (p) pl->p[pl->n++] = p;
    else pl->failed = 1;
    return p;
}

static void pool_free(pool *pl) {
    for (int i = 0; i < pl->n; i++) tg__free(pl->p[i]);
}

/* t's elements as doubles in a new array; NULL t gives zeros (the book's np.zeros for h0 and c0). */
static double *load(pool *pl, const tg_tensor *t, int64_t count) {
    double *p = take(pl, count);
    if (p && t)
        for (int64_t i = 0; i < count; i++) p[i] = tg_tensor_get(t, i);
    return p;
}

static void store(tg_tensor *t, const double *p) {
    if (t)
        for (int64_t i = 0; i < tg_tensor_numel(t); i++) tg_tensor_set(t, i, p[i]);
}

/* ---- argument checks ------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    const tg_tensor *t;
    int required; /* 0: NULL is allowed */
    int nd;
    int64_t shape[3];
    const char *letters;
} want;

/* The tensors against xs's dtype and their wanted shapes; 1 with a message in the layer's letters. */
static int bad_args(const char *fn, tg_dtype dt, const want *w, int n) {
    char got[TG__SHAPE_STR], exp[TG__SHAPE_STR];
    for (int k = 0; k < n; k++) {
        if (!w[k].t) {
            if (w[k].required) {
                tg__null(fn, w[k].name);
                return 1;
            }
            continue;
        }
        if (tg_tensor_dtype(w[k].t) != dt) {
            tg__fail(TG_EDTYPE, "%s: %s is %s but xs is %s", fn, w[k].name, tg__dtype_name(tg_tensor_dtype(w[k].t)),
                     tg__dtype_name(dt));
            return 1;
        }
        if (!tg__same_shape(w[k].t, w[k].nd, w[k].shape)) {
            tg__fail(TG_ESHAPE, "%s: %s is %s, want %s = %s", fn, w[k].name,
                     tg__shape_str(tg_tensor_ndim(w[k].t), tg_tensor_shape(w[k].t), got), w[k].letters,
                     tg__shape_str(w[k].nd, w[k].shape, exp));
            return 1;
        }
    }
    return 0;
}

/* What both references check first: xs, then the parameters among themselves (the layers' own check),
   then xs 3-d; N, T, D and H into d. */
static int bad_start(const char *fn, int G, const tg_tensor *xs, const tg_tensor *Wx, const tg_tensor *Wh,
                     const tg_tensor *b, int64_t d[4]) {
    char buf[TG__SHAPE_STR];
    if (tg__tensor_arg(fn, "xs", xs) || tg__gated_bad_params(fn, G, Wx, Wh, b)) return 1;
    if (tg_tensor_ndim(xs) != 3) {
        tg__fail(TG_ESHAPE, "%s: xs is %s, want 3 dims (N,T,D)", fn,
                 tg__shape_str(tg_tensor_ndim(xs), tg_tensor_shape(xs), buf));
        return 1;
    }
    memcpy(d, tg_tensor_shape(xs), 3 * sizeof *d);
    d[3] = tg_tensor_shape(Wh)[0];
    return 0;
}

/* ---- class LSTM ------------------------------------------------------------------------------ */

/* LSTM.forward:
       A = np.dot(x, Wx) + np.dot(h_prev, Wh) + b
       f = sigmoid(A[:, :H]);  g = np.tanh(A[:, H:2*H]);  i = sigmoid(A[:, 2*H:3*H]);  o = sigmoid(A[:, 3*H:])
       c_next = f * c_prev + g * i
       h_next = o * np.tanh(c_next)
   A (N,4H) becomes [f g i o] in place: the book's cache. */
static void lstm_forward(mat x, mat h_prev, mat c_prev, mat Wx, mat Wh, mat b, mat A, mat h_next, mat c_next) {
    int64_t H = h_prev.c;
    mm(A, 0, x, 0, Wx, 0);
    mm(A, 1, h_prev, 0, Wh, 0);
    add_row(A, b);
    for (int64_t n = 0; n < A.r; n++)
        for (int64_t j = 0; j < H; j++) {
            double f = sigmoid(E(A, n, j)), g = tanh(E(A, n, H + j));
            double i = sigmoid(E(A, n, 2 * H + j)), o = sigmoid(E(A, n, 3 * H + j));
            E(A, n, j) = f, E(A, n, H + j) = g, E(A, n, 2 * H + j) = i, E(A, n, 3 * H + j) = o;
            double c = f * E(c_prev, n, j) + g * i;
            E(c_next, n, j) = c;
            E(h_next, n, j) = o * tanh(c);
        }
}

/* LSTM.backward(dh_next, dc_next): gates = [f g i o] from forward; dA (N,4H) scratch. Writes dx and
   dc_prev (which may be dc_next's buffer: each element is read before it is written) and dh_prev (which
   may be dh_next's: written last); adds into the sums dWx, dWh, db, as TimeLSTM adds each step's grads. */
static void lstm_backward(mat x, mat h_prev, mat c_prev, mat c_next, mat gates, mat Wx, mat Wh, mat dh_next,
                          mat dc_next, mat dA, mat dx, mat dh_prev, mat dc_prev, mat dWx, mat dWh, mat db) {
    int64_t H = h_prev.c;
    for (int64_t n = 0; n < dA.r; n++)
        for (int64_t j = 0; j < H; j++) {
            double f = E(gates, n, j), g = E(gates, n, H + j), i = E(gates, n, 2 * H + j), o = E(gates, n, 3 * H + j);
            double tanh_c_next = tanh(E(c_next, n, j)), dh = E(dh_next, n, j);
            double ds = E(dc_next, n, j) + (dh * o) * (1 - tanh_c_next * tanh_c_next);
            E(dc_prev, n, j) = ds * f;                   /* dc_prev = ds * f */
            double di = ds * g;                           /* di = ds * g */
            double df = ds * E(c_prev, n, j);             /* df = ds * c_prev */
            double d_o = dh * tanh_c_next;                /* do = dh_next * tanh_c_next */
            double dg = ds * i;                           /* dg = ds * i */
            di *= i * (1 - i);                            /* di *= i * (1 - i) */
            df *= f * (1 - f);                            /* df *= f * (1 - f) */
            d_o *= o * (1 - o);                           /* do *= o * (1 - o) */
            dg *= 1 - g * g;                              /* dg *= (1 - g ** 2) */
            E(dA, n, j) = df, E(dA, n, H + j) = dg;       /* dA = np.hstack((df, dg, di, do)) */
            E(dA, n, 2 * H + j) = di, E(dA, n, 3 * H + j) = d_o;
        }
    mm(dWh, 1, h_prev, 1, dA, 0); /* dWh = np.dot(h_prev.T, dA) */
    mm(dWx, 1, x, 1, dA, 0);      /* dWx = np.dot(x.T, dA) */
    sum_rows_add(db, dA);         /* db = dA.sum(axis=0) */
    mm(dx, 0, dA, 0, Wx, 1); /* dx = np.dot(dA, Wx.T) */
    mm(dh_prev, 0, dA, 0, Wh, 1); /* dh_prev = np.dot(dA, Wh.T) */
}

/* ---- class TimeLSTM -------------------------------------------------------------------------- */

tg_status tg_time_lstm_ref(tg_tensor *xs, tg_tensor *h0, tg_tensor *c0, tg_tensor *Wx, tg_tensor *Wh,
                           tg_tensor *b, tg_tensor *dhs, tg_tensor *hs, tg_tensor *cs, tg_tensor *dxs,
                           tg_tensor *dWx, tg_tensor *dWh, tg_tensor *db, tg_tensor *dh0, tg_tensor *dc0) {
    static const char fn[] = "tg_time_lstm_ref";
    int64_t d[4];
    if (bad_start(fn, 4, xs, Wx, Wh, b, d)) return tg_last_status();
    int64_t N = d[0], T = d[1], D = d[2], H = d[3], G = 4 * H;
    const want w[] = {
        {"Wx", Wx, 1, 2, {D, G}, "(D,4H)"},      {"h0", h0, 0, 2, {N, H}, "(N,H)"},
        {"c0", c0, 0, 2, {N, H}, "(N,H)"},       {"hs", hs, 1, 3, {N, T, H}, "(N,T,H)"},
        {"cs", cs, 0, 3, {N, T, H}, "(N,T,H)"},  {"dhs", dhs, 0, 3, {N, T, H}, "(N,T,H)"},
        {"dxs", dxs, 0, 3, {N, T, D}, "(N,T,D)"}, {"dWx", dWx, 0, 2, {D, G}, "(D,4H)"},
        {"dWh", dWh, 0, 2, {H, G}, "(H,4H)"},    {"db", db, 0, 1, {G}, "(4H,)"},
        {"dh0", dh0, 0, 2, {N, H}, "(N,H)"},     {"dc0", dc0, 0, 2, {N, H}, "(N,H)"},
    };
    if (bad_args(fn, tg_tensor_dtype(xs), w, (int)(sizeof w / sizeof *w))) return tg_last_status();

    pool pl = {{NULL}, 0, 0};
    double *xs_ = load(&pl, xs, N * T * D), *h0_ = load(&pl, h0, N * H), *c0_ = load(&pl, c0, N * H);
    double *Wx_ = load(&pl, Wx, D * G), *Wh_ = load(&pl, Wh, H * G), *b_ = load(&pl, b, G);
    double *hs_ = take(&pl, N * T * H), *cs_ = take(&pl, N * T * H), *gates = take(&pl, N * T * G);
    if (pl.failed) {
        pool_free(&pl);
        return tg__fail(TG_ENOMEM, "%s: out of memory for its scratch arrays", fn);
    }
    mat mWx = whole(Wx_, D, G), mWh = whole(Wh_, H, G), mb = whole(b_, 1, G);

    /* TimeLSTM.forward: h, c = self.h, self.c (zeros when None);
       for t: h, c = LSTM.forward(xs[:, t, :], h, c); hs[:, t, :] = h */
    for (int64_t t = 0; t < T; t++) {
        mat h = t ? step(hs_, N, T, H, t - 1) : whole(h0_, N, H), c = t ? step(cs_, N, T, H, t - 1) : whole(c0_, N, H);
        lstm_forward(step(xs_, N, T, D, t), h, c, mWx, mWh, mb, step(gates, N, T, G, t), step(hs_, N, T, H, t),
                     step(cs_, N, T, H, t));
    }
    store(hs, hs_);
    store(cs, cs_);
    if (!dhs) {
        pool_free(&pl);
        return TG_OK;
    }

    double *dhs_ = load(&pl, dhs, N * T * H), *dxs_ = take(&pl, N * T * D), *dWx_ = take(&pl, D * G);
    double *dWh_ = take(&pl, H * G), *db_ = take(&pl, G), *dA = take(&pl, N * G);
    double *dh = take(&pl, N * H), *dc = take(&pl, N * H); /* dh, dc = 0, 0 (take zero-fills) */
    if (pl.failed) {
        pool_free(&pl);
        return tg__fail(TG_ENOMEM, "%s: out of memory for its scratch arrays", fn);
    }
    mat mdh = whole(dh, N, H), mdc = whole(dc, N, H);
    /* TimeLSTM.backward: for t reversed: dx, dh, dc = LSTM.backward(dhs[:, t, :] + dh, dc);
       dxs[:, t, :] = dx; the grads summed over steps; self.dh = dh at the end */
    for (int64_t t = T - 1; t >= 0; t--) {
        mat up = step(dhs_, N, T, H, t);
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < H; j++) E(mdh, n, j) += E(up, n, j);
        mat h = t ? step(hs_, N, T, H, t - 1) : whole(h0_, N, H), c = t ? step(cs_, N, T, H, t - 1) : whole(c0_, N, H);
        lstm_backward(step(xs_, N, T, D, t), h, c, step(cs_, N, T, H, t), step(gates, N, T, G, t), mWx, mWh, mdh,
                      mdc, whole(dA, N, G), step(dxs_, N, T, D, t), mdh, mdc, whole(dWx_, D, G), whole(dWh_, H, G),
                      whole(db_, 1, G));
    }
    store(dxs, dxs_);
    store(dWx, dWx_);
    store(dWh, dWh_);
    store(db, db_);
    store(dh0, dh);
    store(dc0, dc);
    pool_free(&pl);
    return TG_OK;
}

/* ---- class GRU ------------------------------------------------------------------------------- */

/* GRU.forward, with Wxz, Wxr, Wxh = Wx[:, :H], Wx[:, H:2*H], Wx[:, 2*H:] (Wh and b likewise):
       z = sigmoid(np.dot(x, Wxz) + np.dot(h_prev, Whz) + bz)
       r = sigmoid(np.dot(x, Wxr) + np.dot(h_prev, Whr) + br)
       h_hat = np.tanh(np.dot(x, Wxh) + np.dot(r*h_prev, Whh) + bh)
       h_next = (1-z) * h_prev + z * h_hat
   cache (N,3H) receives [z r h_hat], and rh (N,H) r * h_prev: the book's cache. */
static void gru_forward(mat x, mat h_prev, mat Wx, mat Wh, mat b, mat cache, mat rh, mat h_next) {
    int64_t H = h_prev.c;
    mat z = cols(cache, 0, H), r = cols(cache, H, 2 * H), h_hat = cols(cache, 2 * H, 3 * H);
    mat parts[2] = {z, r};
    for (int p = 0; p < 2; p++) { /* z, then r */
        mm(parts[p], 0, x, 0, cols(Wx, p * H, (p + 1) * H), 0);
        mm(parts[p], 1, h_prev, 0, cols(Wh, p * H, (p + 1) * H), 0);
        add_row(parts[p], cols(b, p * H, (p + 1) * H));
        for (int64_t n = 0; n < x.r; n++)
            for (int64_t j = 0; j < H; j++) E(parts[p], n, j) = sigmoid(E(parts[p], n, j));
    }
    for (int64_t n = 0; n < x.r; n++)
        for (int64_t j = 0; j < H; j++) E(rh, n, j) = E(r, n, j) * E(h_prev, n, j);
    mm(h_hat, 0, x, 0, cols(Wx, 2 * H, 3 * H), 0);
    mm(h_hat, 1, rh, 0, cols(Wh, 2 * H, 3 * H), 0);
    add_row(h_hat, cols(b, 2 * H, 3 * H));
    for (int64_t n = 0; n < x.r; n++)
        for (int64_t j = 0; j < H; j++) {
            E(h_hat, n, j) = tanh(E(h_hat, n, j));
            E(h_next, n, j) = (1 - E(z, n, j)) * E(h_prev, n, j) + E(z, n, j) * E(h_hat, n, j);
        }
}

/* GRU.backward(dh_next): writes dx and dh_prev (not dh_next's buffer: dh_next is read to the end);
   adds each part's dW and db straight into its columns of the sums, where the book's np.hstack puts
   them. dt and dhr are (N,H) scratch. */
static void gru_backward(mat x, mat h_prev, mat cache, mat rh, mat Wx, mat Wh, mat dh_next, mat dt, mat dhr,
                         mat dx, mat dh_prev, mat dWx, mat dWh, mat db) {
    int64_t N = x.r, H = h_prev.c;
    mat z = cols(cache, 0, H), r = cols(cache, H, 2 * H), h_hat = cols(cache, 2 * H, 3 * H);
    mat Z = cols(dWx, 0, H), R = cols(dWx, H, 2 * H), Hh = cols(dWx, 2 * H, 3 * H); /* dWxz, dWxr, dWxh */
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < H; j++) {
            double dh_hat = E(dh_next, n, j) * E(z, n, j);       /* dh_hat = dh_next * z */
            E(dh_prev, n, j) = E(dh_next, n, j) * (1 - E(z, n, j)); /* dh_prev = dh_next * (1-z) */
            /* tanh */
            E(dt, n, j) = dh_hat * (1 - E(h_hat, n, j) * E(h_hat, n, j)); /* dt = dh_hat * (1 - h_hat ** 2) */
        }
    sum_rows_add(cols(db, 2 * H, 3 * H), dt);             /* dbh = np.sum(dt, axis=0) */
    mm(cols(dWh, 2 * H, 3 * H), 1, rh, 1, dt, 0);         /* dWhh = np.dot((r * h_prev).T, dt) */
    mm(dhr, 0, dt, 0, cols(Wh, 2 * H, 3 * H), 1);         /* dhr = np.dot(dt, Whh.T) */
    mm(Hh, 1, x, 1, dt, 0);                               /* dWxh = np.dot(x.T, dt) */
    mm(dx, 0, dt, 0, cols(Wx, 2 * H, 3 * H), 1); /* dx = np.dot(dt, Wxh.T) */
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < H; j++) E(dh_prev, n, j) += E(r, n, j) * E(dhr, n, j); /* dh_prev += r * dhr */

    /* update gate(z) */
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < H; j++) {
            double dz = E(dh_next, n, j) * E(h_hat, n, j) - E(dh_next, n, j) * E(h_prev, n, j);
            E(dt, n, j) = dz * E(z, n, j) * (1 - E(z, n, j)); /* dt = dz * z * (1-z) */
        }
    sum_rows_add(cols(db, 0, H), dt);                     /* dbz = np.sum(dt, axis=0) */
    mm(cols(dWh, 0, H), 1, h_prev, 1, dt, 0);             /* dWhz = np.dot(h_prev.T, dt) */
    mm(dh_prev, 1, dt, 0, cols(Wh, 0, H), 1);             /* dh_prev += np.dot(dt, Whz.T) */
    mm(Z, 1, x, 1, dt, 0);                                /* dWxz = np.dot(x.T, dt) */
    mm(dx, 1, dt, 0, cols(Wx, 0, H), 1);        /* dx += np.dot(dt, Wxz.T) */

    /* reset gate(r) */
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < H; j++) {
            double dr = E(dhr, n, j) * E(h_prev, n, j);      /* dr = dhr * h_prev */
            E(dt, n, j) = dr * E(r, n, j) * (1 - E(r, n, j)); /* dt = dr * r * (1-r) */
        }
    sum_rows_add(cols(db, H, 2 * H), dt);                 /* dbr = np.sum(dt, axis=0) */
    mm(cols(dWh, H, 2 * H), 1, h_prev, 1, dt, 0);         /* dWhr = np.dot(h_prev.T, dt) */
    mm(dh_prev, 1, dt, 0, cols(Wh, H, 2 * H), 1);         /* dh_prev += np.dot(dt, Whr.T) */
    mm(R, 1, x, 1, dt, 0);                                /* dWxr = np.dot(x.T, dt) */
    mm(dx, 1, dt, 0, cols(Wx, H, 2 * H), 1);    /* dx += np.dot(dt, Wxr.T) */
}

/* ---- class TimeGRU --------------------------------------------------------------------------- */

tg_status tg_time_gru_ref(tg_tensor *xs, tg_tensor *h0, tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b,
                          tg_tensor *dhs, tg_tensor *hs, tg_tensor *dxs, tg_tensor *dWx,
                          tg_tensor *dWh, tg_tensor *db, tg_tensor *dh0) {
    static const char fn[] = "tg_time_gru_ref";
    int64_t d[4];
    if (bad_start(fn, 3, xs, Wx, Wh, b, d)) return tg_last_status();
    int64_t N = d[0], T = d[1], D = d[2], H = d[3], G = 3 * H;
    const want w[] = {
        {"Wx", Wx, 1, 2, {D, G}, "(D,3H)"},       {"h0", h0, 0, 2, {N, H}, "(N,H)"},
        {"hs", hs, 1, 3, {N, T, H}, "(N,T,H)"},   {"dhs", dhs, 0, 3, {N, T, H}, "(N,T,H)"},
        {"dxs", dxs, 0, 3, {N, T, D}, "(N,T,D)"}, {"dWx", dWx, 0, 2, {D, G}, "(D,3H)"},
        {"dWh", dWh, 0, 2, {H, G}, "(H,3H)"},     {"db", db, 0, 1, {G}, "(3H,)"},
        {"dh0", dh0, 0, 2, {N, H}, "(N,H)"},
    };
    if (bad_args(fn, tg_tensor_dtype(xs), w, (int)(sizeof w / sizeof *w))) return tg_last_status();

    pool pl = {{NULL}, 0, 0};
    double *xs_ = load(&pl, xs, N * T * D), *h0_ = load(&pl, h0, N * H);
    double *Wx_ = load(&pl, Wx, D * G), *Wh_ = load(&pl, Wh, H * G), *b_ = load(&pl, b, G);
    double *hs_ = take(&pl, N * T * H), *cache = take(&pl, N * T * G), *rh = take(&pl, N * T * H);
    if (pl.failed) {
        pool_free(&pl);
        return tg__fail(TG_ENOMEM, "%s: out of memory for its scratch arrays", fn);
    }
    mat mWx = whole(Wx_, D, G), mWh = whole(Wh_, H, G), mb = whole(b_, 1, G);

    /* TimeGRU.forward: h = self.h (zeros when None); for t: h = GRU.forward(xs[:, t, :], h); hs[:, t, :] = h */
    for (int64_t t = 0; t < T; t++)
        gru_forward(step(xs_, N, T, D, t), t ? step(hs_, N, T, H, t - 1) : whole(h0_, N, H), mWx, mWh, mb,
                    step(cache, N, T, G, t), step(rh, N, T, H, t), step(hs_, N, T, H, t));
    store(hs, hs_);
    if (!dhs) {
        pool_free(&pl);
        return TG_OK;
    }

    double *dhs_ = load(&pl, dhs, N * T * H), *dxs_ = take(&pl, N * T * D), *dWx_ = take(&pl, D * G);
    double *dWh_ = take(&pl, H * G), *db_ = take(&pl, G), *dh = take(&pl, N * H), *dh_prev = take(&pl, N * H);
    double *dt = take(&pl, N * H), *dhr = take(&pl, N * H);
    if (pl.failed) {
        pool_free(&pl);
        return tg__fail(TG_ENOMEM, "%s: out of memory for its scratch arrays", fn);
    }
    /* TimeGRU.backward: dh = 0; for t reversed: dx, dh = GRU.backward(dhs[:, t, :] + dh); dxs[:, t, :] = dx;
       the grads summed over steps; self.dh = dh at the end */
    for (int64_t t = T - 1; t >= 0; t--) {
        mat up = step(dhs_, N, T, H, t), mdh = whole(dh, N, H);
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < H; j++) E(mdh, n, j) += E(up, n, j);
        gru_backward(step(xs_, N, T, D, t), t ? step(hs_, N, T, H, t - 1) : whole(h0_, N, H), step(cache, N, T, G, t),
                     step(rh, N, T, H, t), mWx, mWh, mdh, whole(dt, N, H), whole(dhr, N, H), step(dxs_, N, T, D, t),
                     whole(dh_prev, N, H), whole(dWx_, D, G), whole(dWh_, H, G), whole(db_, 1, G));
        double *swap = dh; /* dh_prev is the next step's dh */
        dh = dh_prev, dh_prev = swap;
    }
    store(dxs, dxs_);
    store(dWx, dWx_);
    store(dWh, dWh_);
    store(db, db_);
    store(dh0, dh);
    pool_free(&pl);
    return TG_OK;
}
