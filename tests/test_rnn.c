/* The RNN cell and TimeRNN: the tape's gradients against the seed's formulas fixed (tg_time_rnn_ref)
 * and against finite differences; state carried between chunks; dh; each of the seed's five bugs,
 * planted back into a copy of the reference, caught by tg_gradcheck_ref; error paths; allocation
 * failures.
 *
 * Shapes use the seed's letters: xs (N,T,D), Wx (D,H), Wh (H,H), b (H,), h0 (N,H), hs (N,T,H).
 * The checks use D != H on purpose: a formula that confuses the two (the seed's dWx = dt @ Wx.T)
 * can run without complaint when they are equal.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "tg_testutil.h"

/* Relative error as tg_gradcheck counts it: |a - r| / max(|r|, 1e-12), the worst over the tensor. */
static double max_rel(const tg_tensor *a, const void *a_data, const tg_tensor *r, const void *r_data) {
    double worst = 0.0;
    int f32 = tg_tensor_dtype(a) == TG_F32;
    for (int64_t i = 0; i < tg_tensor_numel(a); i++) {
        double x = f32 ? ((const float *)a_data)[i] : ((const double *)a_data)[i];
        double y = tg_tensor_dtype(r) == TG_F32 ? ((const float *)r_data)[i] : ((const double *)r_data)[i];
        double e = fabs(x - y) / fmax(fabs(y), 1e-12);
        if (!(e <= worst)) worst = e; /* NaN wins */
    }
    return worst;
}

/* A parameter's gradient (rel_grad) or a tensor's data (rel_data) against a reference's data. */
static double rel_data(tg_tensor *a, tg_tensor *r) {
    return max_rel(a, tg_tensor_data(a), r, tg_tensor_data(r));
}
static double rel_grad(tg_tensor *p, tg_tensor *r) {
    return max_rel(p, tg_tensor_grad(p), r, tg_tensor_data(r));
}

static tg_tensor *zeros_like(const tg_tensor *t) {
    tg_tensor *z = tg_tensor_new(tg_tensor_dtype(t), tg_tensor_ndim(t), tg_tensor_shape(t));
    cr_assert(z, "%s", tg_last_error());
    return z;
}

/* ---- the TimeRNN under check, and its reference ---------------------------------------------- */

/* The seed's five bugs, and two "fixes" a hurried reader might make of the ones that do not run. */
typedef enum {
    BUG_NONE,
    BUG_TAHN,        /* np.tahn: not a NumPy function; the notebook stops with AttributeError */
    BUG_TAHN_AS_TAN, /* the AttributeError "fixed" to np.tan, a real function, one letter away */
    BUG_MATUL,       /* np.matul: AttributeError, as np.tahn */
    BUG_MATUL_ORDER, /* the product written with its operands swapped: dWx = dt.T @ x, i.e. dWx.T */
    BUG_DWX,         /* dWx = dt @ Wx.T, the seed's formula (that is dx's) */
    BUG_DX,          /* dx returned but never computed: NameError in Python, an unwritten buffer in C */
    BUG_XS,          /* TimeRNN.backward reads N, T, D from xs, which is not in its scope */
} bug;

static const char *const BUG_NAMES[] = {"none",        "tahn", "tahn->tan", "matul",
                                        "matul order", "dWx",  "dx",        "xs"};

typedef struct {
    tg_time_rnn *layer;           /* a stateless layer on inputs 1..3 */
    tg_tensor *h0;                /* the initial state (NULL: zeros), given to the layer with set_state */
    bug bug;                      /* which bug the planted reference carries */
    int64_t notebook_xs_shape[3]; /* BUG_XS: the xs an earlier notebook cell left in the global scope */
} rnn_ctx;

/* f for the gradient check: inputs {xs, Wx, Wh, b} -> hs, through the layer. */
static tg_tensor *f_time_rnn(tg_tape *tape, tg_tensor *const *in, void *vctx) {
    rnn_ctx *c = vctx;
    if (c->h0 && tg_time_rnn_set_state(c->layer, c->h0) != TG_OK) return NULL;
    return tg_time_rnn_forward(tape, c->layer, in[0]);
}

/* ref: the library's hand-derived reference. grads {dxs, dWx, dWh, db}. */
static tg_status ref_time_rnn(tg_tensor *const *in, const tg_tensor *dhs, tg_tensor *const *g, void *vctx) {
    rnn_ctx *c = vctx;
    tg_tensor *hs = tg_tensor_new(tg_tensor_dtype(dhs), 3, tg_tensor_shape(dhs));
    if (!hs) return tg_last_status();
    tg_status s = tg_time_rnn_ref(in[0], c->h0, in[1], in[2], in[3], (tg_tensor *)dhs, hs, g[0], g[1], g[2],
                                  g[3], NULL);
    tg_tensor_free(hs);
    return s;
}

/* ---- a copy of the reference with the seed's bugs planted back ----
 *
 * This is the reference again, f64 only and written with NumPy's habits, so each bug can go back in
 * where the seed had it. Three of the five stop the seed's notebook before it computes anything
 * (AttributeError, NameError); C has no such errors at run time (a typo'd function does not even
 * compile), so they are played here the way NumPy plays them: a function looked up by name that is
 * not there, a shape that NumPy refuses to assign. A reference that fails is as much a failed check as
 * one that is wrong, and tg_gradcheck_ref must say so rather than skip. */

static tg_status np_error(const char *fmt, const char *a, const char *b) {
    char msg[256];
    snprintf(msg, sizeof msg, fmt, a, b);
    return tg__fail(TG_EINVAL, "planted reference: %s", msg);
}

/* NumPy's attribute lookup, for the two names the seed calls: np.tahn and np.matul are not found. */
typedef double (*np_unary)(double);
static np_unary np_activation(const char *name) {
    return strcmp(name, "tanh") == 0 ? tanh : strcmp(name, "tan") == 0 ? tan : NULL;
}
static int np_has(const char *name) { return strcmp(name, "matmul") == 0; }

/* self.grads[0][...] = dWx, or dxs[:, t, :] = dx: NumPy refuses a value of another shape (none of
   these broadcast), with this message. */
static tg_status np_assign(int64_t dr, int64_t dc, int64_t sr, int64_t sc) {
    if (dr == sr && dc == sc) return TG_OK;
    char d[64], s[64];
    snprintf(s, sizeof s, "(%lld,%lld)", (long long)sr, (long long)sc);
    snprintf(d, sizeof d, "(%lld,%lld)", (long long)dr, (long long)dc);
    return np_error("ValueError: could not broadcast input array from shape %s into shape %s", s, d);
}

/* A (r,c) row-major f64 matrix, from malloc (this is the test, not the library). */
typedef struct {
    int64_t r, c;
    double *p;
} M;
static M m_new(int64_t r, int64_t c) {
    M m = {r, c, calloc((size_t)(r * c + 1), sizeof(double))};
    cr_assert(m.p);
    return m;
}
#define AT(m, i, j) ((m).p[(i) * (m).c + (j)])
/* a @ b with a, b optionally transposed (ta, tb), as np.matmul(a.T, b) and so on. */
static M m_mul(M a, int ta, M b, int tb) {
    int64_t ar = ta ? a.c : a.r, ac = ta ? a.r : a.c, bc = tb ? b.r : b.c;
    M y = m_new(ar, bc);
    for (int64_t i = 0; i < ar; i++)
        for (int64_t j = 0; j < bc; j++)
            for (int64_t k = 0; k < ac; k++)
                AT(y, i, j) += (ta ? AT(a, k, i) : AT(a, i, k)) * (tb ? AT(b, j, k) : AT(b, k, j));
    return y;
}
/* xs[:, t, :] of an (N,T,C) f64 tensor, as a copy. */
static M m_step(const tg_tensor *x3, int64_t t) {
    const int64_t *s = tg_tensor_shape(x3);
    M m = m_new(s[0], s[2]);
    for (int64_t n = 0; n < s[0]; n++)
        for (int64_t c = 0; c < s[2]; c++) AT(m, n, c) = tg_tensor_get(x3, (n * s[1] + t) * s[2] + c);
    return m;
}
static M m_of(const tg_tensor *t, int64_t r, int64_t c) {
    M m = m_new(r, c);
    for (int64_t i = 0; i < r * c; i++) m.p[i] = t ? tg_tensor_get(t, i) : 0.0;
    return m;
}

/* RNN.forward: h_next = tanh(h_prev @ Wh + x @ Wx + b). */
static tg_status planted_cell_forward(bug bug, M x, M h_prev, M Wx, M Wh, M b, M h_next) {
    /* BUG_TAHN: np.tahn(t) -> AttributeError. BUG_TAHN_AS_TAN: np.tan(t), which runs. */
    const char *name = bug == BUG_TAHN ? "tahn" : bug == BUG_TAHN_AS_TAN ? "tan" : "tanh";
    np_unary act = np_activation(name);
    if (!act) return np_error("AttributeError: module 'numpy' has no attribute '%s'%s", name, "");
    M a = m_mul(h_prev, 0, Wh, 0), c = m_mul(x, 0, Wx, 0);
    for (int64_t n = 0; n < h_next.r; n++)
        for (int64_t j = 0; j < h_next.c; j++) AT(h_next, n, j) = act(AT(a, n, j) + AT(c, n, j) + b.p[j]);
    free(a.p), free(c.p);
    return TG_OK;
}

/* RNN.backward: adds the step's dWx, dWh, db into the sums, writes dx (unless BUG_DX) and dh_prev. */
static tg_status planted_cell_backward(bug bug, M x, M h_prev, M h_next, M Wx, M Wh, M dh_next, M dx,
                                       M dh_prev, M dWx, M dWh, M db) {
    tg_status s = TG_OK;
    M dt = m_new(dh_next.r, dh_next.c);
    for (int64_t i = 0; i < dt.r * dt.c; i++) dt.p[i] = dh_next.p[i] * (1 - h_next.p[i] * h_next.p[i]);
    for (int64_t n = 0; n < dt.r; n++)
        for (int64_t j = 0; j < dt.c; j++) db.p[j] += AT(dt, n, j);
    M gWh = m_mul(h_prev, 1, dt, 0), gh = m_mul(dt, 0, Wh, 1), gWx;
    for (int64_t i = 0; i < dWh.r * dWh.c; i++) dWh.p[i] += gWh.p[i];
    memcpy(dh_prev.p, gh.p, (size_t)(dh_prev.r * dh_prev.c) * sizeof(double));
    if (bug == BUG_MATUL && !np_has("matul")) { /* dWx = np.matul(x.T, dt) */
        s = np_error("AttributeError: module 'numpy' has no attribute '%s'%s", "matul", "");
        gWx = m_new(0, 0);
    } else if (bug == BUG_MATUL_ORDER) {
        gWx = m_mul(dt, 1, x, 0); /* dt.T @ x: (H,D), dWx transposed */
    } else if (bug == BUG_DWX) {
        gWx = m_mul(dt, 0, Wx, 1); /* dt @ Wx.T: (N,D) */
    } else {
        gWx = m_mul(x, 1, dt, 0); /* x.T @ dt: (D,H) */
    }
    /* self.grads[0][...] = dWx: a (D,H) buffer takes only a (D,H) value. With N = D = H the seed's
       formula gets through, with wrong numbers. */
    if (!s) s = np_assign(dWx.r, dWx.c, gWx.r, gWx.c);
    if (!s)
        for (int64_t i = 0; i < dWx.r * dWx.c; i++) dWx.p[i] += gWx.p[i];
    if (!s && bug != BUG_DX) { /* BUG_DX: the seed never writes dx = dt @ Wx.T */
        M g = m_mul(dt, 0, Wx, 1);
        memcpy(dx.p, g.p, (size_t)(dx.r * dx.c) * sizeof(double));
        free(g.p);
    }
    free(dt.p), free(gWh.p), free(gh.p), free(gWx.p);
    return s;
}

/* TimeRNN forward then backward, as a tg_ref_fn on {xs, Wx, Wh, b}. */
static tg_status ref_planted(tg_tensor *const *in, const tg_tensor *dhs, tg_tensor *const *g, void *vctx) {
    rnn_ctx *c = vctx;
    const int64_t *xsh = tg_tensor_shape(in[0]);
    int64_t N = xsh[0], T = xsh[1], D = tg_tensor_shape(in[1])[0], H = tg_tensor_shape(in[1])[1];
    M Wx = m_of(in[1], D, H), Wh = m_of(in[2], H, H), b = m_of(in[3], 1, H), h = m_of(c->h0, N, H);
    M *hs = calloc((size_t)T + 1, sizeof *hs); /* hs[0] = h0, hs[t + 1] = h after step t */
    cr_assert(hs);
    hs[0] = h;
    tg_status s = TG_OK;
    for (int64_t t = 0; t < T && !s; t++) {
        M x = m_step(in[0], t);
        hs[t + 1] = m_new(N, H);
        s = planted_cell_forward(c->bug, x, hs[t], Wx, Wh, b, hs[t + 1]);
        free(x.p);
    }
    /* TimeRNN.backward. BUG_XS: N, T, D = xs.shape reads a global xs that an earlier cell of the
       notebook left behind, not this call's: here one made when the author tried D == H. NumPy then
       makes dxs (N,T,H) and refuses to put a (N,D) dx into it. */
    int64_t bN = N, bT = T, bD = D;
    if (c->bug == BUG_XS)
        bN = c->notebook_xs_shape[0], bT = c->notebook_xs_shape[1], bD = c->notebook_xs_shape[2];
    M dWx = m_new(D, H), dWh = m_new(H, H), db = m_new(1, H), dh = m_new(N, H), dx = m_new(N, D);
    /* dx starts as C's uninitialised memory would: indeterminate, here NaN, so that BUG_DX (a dx the
       cell never writes) hands on garbage as the seed's NameError would have stopped on it. */
    for (int64_t i = 0; i < N * D; i++) dx.p[i] = NAN;
    M dxs = m_new(bN * bT, bD); /* (N,T,D) as N*T rows */
    for (int64_t t = T - 1; t >= 0 && !s; t--) {
        M x = m_step(in[0], t), up = m_step(dhs, t);
        for (int64_t i = 0; i < N * H; i++) up.p[i] += dh.p[i];
        s = planted_cell_backward(c->bug, x, hs[t], hs[t + 1], Wx, Wh, up, dx, dh, dWx, dWh, db);
        if (!s) s = np_assign(bN, bD, N, D); /* dxs[:, t, :] = dx */
        for (int64_t n = 0; n < N && !s; n++)
            for (int64_t d = 0; d < D; d++) AT(dxs, n * T + t, d) = AT(dx, n, d);
        free(x.p), free(up.p);
    }
    if (!s) { /* the caller's buffers */
        M out[4] = {dxs, dWx, dWh, db};
        for (int i = 0; i < 4; i++)
            if (g[i])
                for (int64_t k = 0; k < tg_tensor_numel(g[i]); k++) tg_tensor_set(g[i], k, out[i].p[k]);
    }
    for (int64_t t = 0; t <= T; t++) free(hs[t].p);
    free(hs), free(Wx.p), free(Wh.p), free(b.p), free(dWx.p), free(dWh.p), free(db.p), free(dh.p), free(dx.p),
        free(dxs.p);
    return s;
}

/* ---- fixtures ---- */

typedef struct {
    tg_tensor *in[4]; /* xs, Wx, Wh, b: params, so the check covers every one */
    tg_tensor *h0;
    rnn_ctx ctx;
} rnn_case;

static void case_make(rnn_case *k, tg_dtype dt, int64_t N, int64_t T, int64_t D, int64_t H, int with_h0,
                      uint64_t seed) {
    memset(k, 0, sizeof *k);
    k->in[0] = TT_RAND(dt, 1, seed, N, T, D);
    k->in[1] = TT_RAND(dt, 1, seed + 1, D, H);
    k->in[2] = TT_RAND(dt, 1, seed + 2, H, H);
    k->in[3] = TT_RAND(dt, 1, seed + 3, H);
    k->h0 = with_h0 ? TT_RAND(dt, 0, seed + 4, N, H) : NULL;
    k->ctx.layer = tg_time_rnn_new(k->in[1], k->in[2], k->in[3], 0);
    cr_assert(k->ctx.layer, "%s", tg_last_error());
    k->ctx.h0 = k->h0;
}

static void case_free(rnn_case *k) {
    tg_time_rnn_free(k->ctx.layer);
    for (int i = 0; i < 4; i++) tg_tensor_free(k->in[i]);
    tg_tensor_free(k->h0);
}

/* ---- three-way agreement, f64 ---- */

static const char *const IN_NAMES[] = {"xs", "Wx", "Wh", "b"};

/* The three-way check (tape, reference, finite differences) is tt_check3 (tg_testutil.h). */

static void three_way(int64_t N, int64_t T, int64_t D, int64_t H, int with_h0) {
    rnn_case k;
    case_make(&k, TG_F64, N, T, D, H, with_h0, 100 + (uint64_t)(N * 1000 + T * 100 + D * 10 + H));
    char label[96];
    snprintf(label, sizeof label, "TimeRNN N=%lld T=%lld D=%lld H=%lld h0=%s", (long long)N, (long long)T,
             (long long)D, (long long)H, with_h0 ? "set_state" : "zeros");
    tt_check3(f_time_rnn, ref_time_rnn, &k.ctx, k.in, 4, label);
    case_free(&k);
}

Test(rnn_time, three_way_N1_T1) { three_way(1, 1, 3, 2, 0); }
Test(rnn_time, three_way_N1_T5) { three_way(1, 5, 3, 2, 1); }
Test(rnn_time, three_way_N3_T1) { three_way(3, 1, 2, 4, 1); }
Test(rnn_time, three_way_N3_T4_zero_state) { three_way(3, 4, 4, 3, 0); }
Test(rnn_time, three_way_N2_T6_state) { three_way(2, 6, 2, 5, 1); }

/* The cell: inputs {x, h_prev, Wx, Wh, b}; its reference is TimeRNN's with T = 1. */
static tg_tensor *f_cell(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_rnn_cell(tape, in[0], in[1], in[2], in[3], in[4]);
}

/* (N,C) as (N,1,C): the same bytes, one step. */
static tg_tensor *one_step(const tg_tensor *t) {
    const int64_t *s = tg_tensor_shape(t);
    tg_tensor *r =
        tg_tensor_from(tg_tensor_dtype(t), 3, (int64_t[]){s[0], 1, s[1]}, tg_tensor_data((tg_tensor *)t));
    cr_assert(r);
    return r;
}

static tg_status ref_cell(tg_tensor *const *in, const tg_tensor *dh, tg_tensor *const *g, void *ctx) {
    (void)ctx;
    tg_tensor *xs = one_step(in[0]), *dhs = one_step(dh), *hs = zeros_like(dhs), *dxs = zeros_like(xs);
    tg_status s =
        tg_time_rnn_ref(xs, in[1], in[2], in[3], in[4], dhs, hs, g[0] ? dxs : NULL, g[2], g[3], g[4], g[1]);
    if (!s && g[0])
        memcpy(tg_tensor_data(g[0]), tg_tensor_data(dxs), (size_t)tg_tensor_numel(dxs) * sizeof(double));
    tg_tensor_free(xs), tg_tensor_free(dhs), tg_tensor_free(hs), tg_tensor_free(dxs);
    return s;
}

static void cell_three_way(int64_t N, int64_t D, int64_t H) {
    tg_tensor *in[5] = {TT_RAND(TG_F64, 1, 1, N, D), TT_RAND(TG_F64, 1, 2, N, H), TT_RAND(TG_F64, 1, 3, D, H),
                        TT_RAND(TG_F64, 1, 4, H, H), TT_RAND(TG_F64, 1, 5, H)};
    char label[64];
    snprintf(label, sizeof label, "cell N=%lld D=%lld H=%lld", (long long)N, (long long)D, (long long)H);
    tt_check3(f_cell, ref_cell, NULL, in, 5, label);
    for (int i = 0; i < 5; i++) tg_tensor_free(in[i]);
}

Test(rnn_cell, three_way_N1) { cell_three_way(1, 3, 2); }
Test(rnn_cell, three_way_N4) { cell_three_way(4, 2, 5); }

/* dh0 through the tape: the cells chained by hand with h0 as an input, so that tg_gradcheck_ref can
   check the reference's dh0 against the tape and finite differences. {xs, h0, Wx, Wh, b}. */
static tg_tensor *f_chain(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    int64_t T = tg_tensor_shape(in[0])[1];
    tg_tensor *h = in[1], *steps[16];
    for (int64_t t = 0; t < T; t++)
        steps[t] = h = tg_rnn_cell(tape, tg_select(tape, in[0], 1, t), h, in[2], in[3], in[4]);
    return h ? tg_stack(tape, steps, (int)T, 1) : NULL;
}

static tg_status ref_chain(tg_tensor *const *in, const tg_tensor *dhs, tg_tensor *const *g, void *ctx) {
    (void)ctx;
    tg_tensor *hs = zeros_like(dhs);
    tg_status s = tg_time_rnn_ref(in[0], in[1], in[2], in[3], in[4], (tg_tensor *)dhs, hs, g[0], g[2], g[3],
                                  g[4], g[1]);
    tg_tensor_free(hs);
    return s;
}

Test(rnn_time, reference_dh0_three_way) {
    tg_tensor *in[5] = {TT_RAND(TG_F64, 1, 11, 2, 4, 3), TT_RAND(TG_F64, 1, 12, 2, 5),
                        TT_RAND(TG_F64, 1, 13, 3, 5), TT_RAND(TG_F64, 1, 14, 5, 5),
                        TT_RAND(TG_F64, 1, 15, 5)};
    tt_check3(f_chain, ref_chain, NULL, in, 5, "cells chained by hand, h0 an input");
    for (int i = 0; i < 5; i++) tg_tensor_free(in[i]);
}

/* ---- dh, f32, state ---- */

/* One forward and one backward of dhs through the layer; ref's gradients into the r* tensors. */
typedef struct {
    tg_tensor *hs, *dxs, *dWx, *dWh, *db, *dh0;
} ref_out;

static ref_out ref_run(rnn_case *k, tg_tensor *dhs) {
    ref_out r = {zeros_like(dhs),      zeros_like(k->in[0]), zeros_like(k->in[1]),
                 zeros_like(k->in[2]), zeros_like(k->in[3]), NULL};
    r.dh0 =
        tg_tensor_new(tg_tensor_dtype(dhs), 2, (int64_t[]){tg_tensor_shape(dhs)[0], tg_tensor_shape(dhs)[2]});
    cr_assert_eq(tg_time_rnn_ref(k->in[0], k->h0, k->in[1], k->in[2], k->in[3], dhs, r.hs, r.dxs, r.dWx,
                                 r.dWh, r.db, r.dh0),
                 TG_OK, "%s", tg_last_error());
    return r;
}

static void ref_free(ref_out *r) {
    tg_tensor *t[6] = {r->hs, r->dxs, r->dWx, r->dWh, r->db, r->dh0};
    for (int i = 0; i < 6; i++) tg_tensor_free(t[i]);
}

/* Forward and backward through k's layer; hs copied into *hs_out if given. */
static void tape_run(rnn_case *k, tg_tape *tape, tg_tensor *dhs, tg_tensor **hs_out) {
    for (int i = 0; i < 4; i++) tg_zero_grad(k->in[i]);
    if (k->h0) cr_assert_eq(tg_time_rnn_set_state(k->ctx.layer, k->h0), TG_OK);
    tg_tensor *hs = tg_time_rnn_forward(tape, k->ctx.layer, k->in[0]);
    cr_assert(hs, "%s", tg_last_error());
    if (hs_out) *hs_out = tg_tensor_clone(hs);
    cr_assert_eq(tg_backward(tape, hs, dhs), TG_OK, "%s", tg_last_error());
}

static void tape_vs_ref(tg_dtype dt, double tol) {
    rnn_case k;
    case_make(&k, dt, 3, 5, 4, 2, 1, 77);
    tg_tensor *dhs = TT_RAND(dt, 0, 78, 3, 5, 2), *hs;
    ref_out r = ref_run(&k, dhs);
    tg_tape *tape = tg_tape_new();
    tape_run(&k, tape, dhs, &hs);
    tg_tensor *dh = tg_time_rnn_dh(k.ctx.layer);
    cr_assert(dh, "%s", tg_last_error());
    cr_expect_leq(rel_data(hs, r.hs), tol, "hs: %.3g", rel_data(hs, r.hs));
    cr_expect_leq(rel_grad(k.in[0], r.dxs), tol, "dxs: %.3g", rel_grad(k.in[0], r.dxs));
    cr_expect_leq(rel_grad(k.in[1], r.dWx), tol, "dWx: %.3g", rel_grad(k.in[1], r.dWx));
    cr_expect_leq(rel_grad(k.in[2], r.dWh), tol, "dWh: %.3g", rel_grad(k.in[2], r.dWh));
    cr_expect_leq(rel_grad(k.in[3], r.db), tol, "db: %.3g", rel_grad(k.in[3], r.db));
    cr_expect_leq(rel_data(dh, r.dh0), tol, "dh: %.3g", rel_data(dh, r.dh0));
    cr_expect_eq(tg_tensor_ndim(dh), 2);
    cr_expect(tg_tensor_shape(dh)[0] == 3 && tg_tensor_shape(dh)[1] == 2);
    tg_tape_free(tape);
    tg_tensor_free(hs), tg_tensor_free(dhs);
    ref_free(&r);
    case_free(&k);
}

Test(rnn_time, dh_equals_reference_dh0_f64) { tape_vs_ref(TG_F64, 1e-10); }
Test(rnn_time, f32_tape_vs_reference) { tape_vs_ref(TG_F32, 1e-4); }

Test(rnn_time, dh_zero_state_and_nonzero) {
    /* With no state, h0 = 0 still has a gradient: dL/dh0 = dt_0 Wh^T. */
    rnn_case k;
    case_make(&k, TG_F64, 2, 3, 3, 4, 0, 5);
    tg_tensor *dhs = TT_RAND(TG_F64, 0, 6, 2, 3, 4);
    ref_out r = ref_run(&k, dhs);
    tg_tape *tape = tg_tape_new();
    tape_run(&k, tape, dhs, NULL);
    tg_tensor *dh = tg_time_rnn_dh(k.ctx.layer);
    cr_assert(dh);
    cr_expect_leq(rel_data(dh, r.dh0), 1e-10);
    double norm = 0;
    for (int64_t i = 0; i < 8; i++) norm += fabs(tg_tensor_get(dh, i));
    cr_expect_gt(norm, 1e-3, "dh is zero: the initial state got no gradient");
    /* A new forward starts a new dh: zeros until its backward. */
    tg_tape_reset(tape);
    cr_assert(tg_time_rnn_forward(tape, k.ctx.layer, k.in[0]));
    dh = tg_time_rnn_dh(k.ctx.layer);
    for (int64_t i = 0; i < 8; i++) cr_expect_eq(tg_tensor_get(dh, i), 0.0);
    tg_tape_free(tape);
    tg_tensor_free(dhs);
    ref_free(&r);
    case_free(&k);
}

/* A stateful layer over two chunks carries the state; the second chunk's gradients are those of a fresh
   layer handed that state with set_state (truncated BPTT: no gradient crosses the chunk boundary). */
Test(rnn_time, stateful_two_chunks_equal_fresh_with_set_state) {
    int64_t N = 2, T = 3, D = 3, H = 4;
    tg_tensor *Wx = TT_RAND(TG_F64, 1, 1, D, H), *Wh = TT_RAND(TG_F64, 1, 2, H, H),
              *b = TT_RAND(TG_F64, 1, 3, H);
    tg_tensor *x1 = TT_RAND(TG_F64, 0, 4, N, T, D), *x2 = TT_RAND(TG_F64, 0, 5, N, T, D);
    tg_tensor *dhs = TT_RAND(TG_F64, 0, 6, N, T, H);
    tg_tensor *P[3] = {Wx, Wh, b};
    tg_time_rnn *s = tg_time_rnn_new(Wx, Wh, b, 1), *fresh = tg_time_rnn_new(Wx, Wh, b, 0);
    tg_tape *tape = tg_tape_new();

    tg_tensor *hs1 = tg_time_rnn_forward(tape, s, x1);
    cr_assert(hs1);
    tg_tensor *last = tg_tensor_new(TG_F64, 2, (int64_t[]){N, H}); /* hs1[:, T-1, :] */
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < H; j++)
            tg_tensor_set(last, n * H + j, tg_tensor_get(hs1, (n * T + T - 1) * H + j));
    cr_assert_eq(tg_backward(tape, hs1, dhs), TG_OK);
    tg_tape_reset(tape);

    for (int i = 0; i < 3; i++) tg_zero_grad(P[i]);
    tg_tensor *hs2 = tg_time_rnn_forward(tape, s, x2);
    cr_assert(hs2);
    cr_assert_eq(tg_backward(tape, hs2, dhs), TG_OK);
    tg_tensor *g_state[3], *h_state = tg_tensor_clone(hs2), *dh_state = tg_tensor_clone(tg_time_rnn_dh(s));
    for (int i = 0; i < 3; i++)
        g_state[i] =
            tg_tensor_from(TG_F64, tg_tensor_ndim(P[i]), tg_tensor_shape(P[i]), tg_tensor_grad(P[i]));
    tg_tape_reset(tape);

    for (int i = 0; i < 3; i++) tg_zero_grad(P[i]);
    cr_assert_eq(tg_time_rnn_set_state(fresh, last), TG_OK);
    tg_tensor *hs3 = tg_time_rnn_forward(tape, fresh, x2);
    cr_assert(hs3);
    cr_assert_eq(tg_backward(tape, hs3, dhs), TG_OK);
    /* The same ops on the same values: equal to the last bit. */
    cr_expect_eq(tg_tensor_hash(hs3), tg_tensor_hash(h_state), "chunk 2's hs differ from a fresh layer's");
    for (int i = 0; i < 3; i++)
        cr_expect_eq(rel_grad(P[i], g_state[i]), 0.0, "param %d's gradient differs", i);
    cr_expect_eq(rel_data(tg_time_rnn_dh(fresh), dh_state), 0.0, "dh differs");
    /* And the state did matter: from zeros, chunk 2 gives other values. */
    tg_tape_reset(tape);
    tg_time_rnn_reset_state(s);
    tg_tensor *hs4 = tg_time_rnn_forward(tape, s, x2);
    cr_assert(hs4);
    cr_expect_neq(tg_tensor_hash(hs4), tg_tensor_hash(h_state), "reset_state did not forget the state");

    tg_tape_free(tape);
    tg_time_rnn_free(s), tg_time_rnn_free(fresh);
    for (int i = 0; i < 3; i++) tg_tensor_free(g_state[i]), tg_tensor_free(P[i]);
    tg_tensor_free(h_state), tg_tensor_free(dh_state), tg_tensor_free(last);
    tg_tensor_free(x1), tg_tensor_free(x2), tg_tensor_free(dhs);
}

/* A stateless layer never changes its state: two forwards of the same xs agree, and set_state's h
   is used by each until reset_state. */
Test(rnn_time, stateless_keeps_set_state_until_reset) {
    tg_tensor *Wx = TT_RAND(TG_F64, 1, 1, 3, 2), *Wh = TT_RAND(TG_F64, 1, 2, 2, 2),
              *b = TT_RAND(TG_F64, 1, 3, 2);
    tg_tensor *xs = TT_RAND(TG_F64, 0, 4, 2, 3, 3), *h0 = TT_RAND(TG_F64, 0, 5, 2, 2);
    tg_time_rnn *layer = tg_time_rnn_new(Wx, Wh, b, 0);
    tg_tape *tape = tg_tape_new();
    uint64_t zero_start = tg_tensor_hash(tg_time_rnn_forward(tape, layer, xs));
    cr_expect_eq(tg_tensor_hash(tg_time_rnn_forward(tape, layer, xs)), zero_start);
    cr_assert_eq(tg_time_rnn_set_state(layer, h0), TG_OK);
    uint64_t from_h0 = tg_tensor_hash(tg_time_rnn_forward(tape, layer, xs));
    cr_expect_neq(from_h0, zero_start);
    cr_expect_eq(tg_tensor_hash(tg_time_rnn_forward(tape, layer, xs)), from_h0);
    tg_time_rnn_reset_state(layer);
    cr_expect_eq(tg_tensor_hash(tg_time_rnn_forward(tape, layer, xs)), zero_start);
    tg_tape_free(tape);
    tg_time_rnn_free(layer);
    tg_tensor_free(Wx), tg_tensor_free(Wh), tg_tensor_free(b), tg_tensor_free(xs), tg_tensor_free(h0);
}

/* The state is copied: rewriting the caller's h, or the next forward's state, leaves a recording
   waiting for its backward intact (no TG_EMODIFIED, same gradients). */
Test(rnn_time, state_is_a_copy) {
    rnn_case k;
    case_make(&k, TG_F64, 2, 3, 3, 2, 1, 9);
    tg_tensor *dhs = TT_RAND(TG_F64, 0, 10, 2, 3, 2);
    ref_out r = ref_run(&k, dhs);
    tg_tape *tape = tg_tape_new();
    cr_assert_eq(tg_time_rnn_set_state(k.ctx.layer, k.h0), TG_OK);
    tg_tensor *hs = tg_time_rnn_forward(tape, k.ctx.layer, k.in[0]);
    cr_assert(hs);
    double *h0 = tg_tensor_data(k.h0);
    h0[0] += 1.0;                                                  /* the caller's copy */
    cr_assert_eq(tg_time_rnn_set_state(k.ctx.layer, k.h0), TG_OK); /* and the layer's */
    cr_assert_eq(tg_backward(tape, hs, dhs), TG_OK, "%s", tg_last_error());
    cr_expect_leq(rel_grad(k.in[2], r.dWh), 1e-10);
    cr_expect_leq(rel_data(tg_time_rnn_dh(k.ctx.layer), r.dh0), 1e-10);
    tg_tape_free(tape);
    tg_tensor_free(dhs);
    ref_free(&r);
    case_free(&k);
}

/* set_state with another batch size between a forward and its backward frees the layer's old state
   buffer; the recording must not point into it (forward copies the state into the tape). Under
   valgrind a dangling pointer here shows as an invalid read. */
Test(rnn_time, set_state_other_N_before_backward) {
    rnn_case k;
    case_make(&k, TG_F64, 2, 3, 3, 2, 1, 19);
    tg_tensor *dhs = TT_RAND(TG_F64, 0, 20, 2, 3, 2), *h3 = TT_RAND(TG_F64, 0, 21, 3, 2);
    ref_out r = ref_run(&k, dhs);
    tg_tape *tape = tg_tape_new();
    cr_assert_eq(tg_time_rnn_set_state(k.ctx.layer, k.h0), TG_OK);
    tg_tensor *hs = tg_time_rnn_forward(tape, k.ctx.layer, k.in[0]);
    cr_assert(hs);
    cr_assert_eq(tg_time_rnn_set_state(k.ctx.layer, h3), TG_OK);
    cr_assert_eq(tg_backward(tape, hs, dhs), TG_OK, "%s", tg_last_error());
    cr_expect_leq(rel_grad(k.in[1], r.dWx), 1e-10);
    cr_expect_leq(rel_data(tg_time_rnn_dh(k.ctx.layer), r.dh0), 1e-10);
    tg_tape_free(tape);
    tg_tensor_free(dhs), tg_tensor_free(h3);
    ref_free(&r);
    case_free(&k);
}

/* ---- several forwards in one recording ---- */

/* The reference on xs with dhs all ones (L = sum(hs)), from h0 (NULL: zeros): gradients into r. */
static ref_out ref_ones(tg_tensor *xs, tg_tensor *h0, tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b) {
    int64_t N = tg_tensor_shape(xs)[0], T = tg_tensor_shape(xs)[1], H = tg_tensor_shape(Wx)[1];
    tg_tensor *dhs = tg_tensor_new(TG_F64, 3, (int64_t[]){N, T, H});
    for (int64_t i = 0; i < tg_tensor_numel(dhs); i++) tg_tensor_set(dhs, i, 1.0);
    ref_out r = {zeros_like(dhs), zeros_like(xs), zeros_like(Wx), zeros_like(Wh), zeros_like(b),
                 tg_tensor_new(TG_F64, 2, (int64_t[]){N, H})};
    cr_assert_eq(tg_time_rnn_ref(xs, h0, Wx, Wh, b, dhs, r.hs, r.dxs, r.dWx, r.dWh, r.db, r.dh0), TG_OK, "%s",
                 tg_last_error());
    tg_tensor_free(dhs);
    return r;
}

/* a + b elementwise into a new tensor (the tests' own arithmetic, not the library's). */
static tg_tensor *plus(tg_tensor *a, tg_tensor *b) {
    tg_tensor *c = tg_tensor_clone(a);
    for (int64_t i = 0; i < tg_tensor_numel(c); i++)
        tg_tensor_set(c, i, tg_tensor_get(a, i) + tg_tensor_get(b, i));
    return c;
}

/* A smaller last batch: forwards with N = 1 and then N = 3 in one recording, one backward. The N = 3
   forward must not free the N = 1 initial-state leaf the recording saved (backward would hash freed
   memory: valgrind and ASan see it), and every gradient must be the sum of the two forwards'. */
Test(rnn_time, batch_size_changes_within_one_recording) {
    int64_t T = 3, D = 3, H = 2;
    tg_tensor *Wx = TT_RAND(TG_F64, 1, 1, D, H), *Wh = TT_RAND(TG_F64, 1, 2, H, H),
              *b = TT_RAND(TG_F64, 1, 3, H);
    tg_tensor *x1 = TT_RAND(TG_F64, 1, 4, 1, T, D), *x3 = TT_RAND(TG_F64, 1, 5, 3, T, D);
    tg_time_rnn *layer = tg_time_rnn_new(Wx, Wh, b, 0);
    ref_out r1 = ref_ones(x1, NULL, Wx, Wh, b), r3 = ref_ones(x3, NULL, Wx, Wh, b);
    tg_tape *tape = tg_tape_new();
    for (int round = 0; round < 2; round++) { /* the second reuses both leaves */
        tg_tensor *P[5] = {Wx, Wh, b, x1, x3};
        for (int i = 0; i < 5; i++) tg_zero_grad(P[i]);
        tg_tensor *hs1 = tg_time_rnn_forward(tape, layer, x1);
        tg_tensor *hs3 = tg_time_rnn_forward(tape, layer, x3);
        tg_tensor *L = tg_add(tape, tg_sum(tape, hs1), tg_sum(tape, hs3));
        cr_assert(L, "%s", tg_last_error());
        cr_assert_eq(tg_backward(tape, L, NULL), TG_OK, "round %d: %s", round, tg_last_error());
        cr_expect_leq(rel_data(hs1, r1.hs), 1e-12);
        cr_expect_leq(rel_data(hs3, r3.hs), 1e-12);
        tg_tensor *want[3] = {plus(r1.dWx, r3.dWx), plus(r1.dWh, r3.dWh), plus(r1.db, r3.db)};
        for (int i = 0; i < 3; i++) {
            cr_expect_leq(rel_grad(P[i], want[i]), 1e-10, "round %d, param %d", round, i);
            tg_tensor_free(want[i]);
        }
        cr_expect_leq(rel_grad(x1, r1.dxs), 1e-10);
        cr_expect_leq(rel_grad(x3, r3.dxs), 1e-10);
        tg_tensor *dh = tg_time_rnn_dh(layer); /* the last forward's: N = 3 */
        cr_assert(dh, "%s", tg_last_error());
        cr_expect(tg_tensor_shape(dh)[0] == 3 && tg_tensor_shape(dh)[1] == H);
        cr_expect_leq(rel_data(dh, r3.dh0), 1e-10, "dh: %.3g", rel_data(dh, r3.dh0));
        tg_tape_reset(tape);
    }
    /* N = 1 again, alone: its leaf is the one kept from before, and dh is that forward's */
    tg_zero_grad(x1);
    cr_assert_eq(tg_backward(tape, tg_sum(tape, tg_time_rnn_forward(tape, layer, x1)), NULL), TG_OK, "%s",
                 tg_last_error());
    cr_expect_leq(rel_data(tg_time_rnn_dh(layer), r1.dh0), 1e-10);
    tg_tape_free(tape);
    tg_time_rnn_free(layer);
    ref_free(&r1), ref_free(&r3);
    tg_tensor_free(Wx), tg_tensor_free(Wh), tg_tensor_free(b), tg_tensor_free(x1), tg_tensor_free(x3);
}

/* What tg_time_rnn_dh documents for two forwards of one N in one recording: the sum of their dL/dh0
   (they start from the same leaf), not the last one's; a forward of another N between them adds
   nothing to it. */
Test(rnn_time, dh_sums_forwards_of_one_N_in_one_recording) {
    int64_t T = 4, D = 3, H = 2;
    tg_tensor *Wx = TT_RAND(TG_F64, 1, 11, D, H), *Wh = TT_RAND(TG_F64, 1, 12, H, H),
              *b = TT_RAND(TG_F64, 1, 13, H);
    tg_tensor *xa = TT_RAND(TG_F64, 0, 14, 2, T, D), *xb = TT_RAND(TG_F64, 0, 15, 2, T, D),
              *xc = TT_RAND(TG_F64, 0, 16, 3, T, D), *h0 = TT_RAND(TG_F64, 0, 17, 2, H);
    tg_time_rnn *layer = tg_time_rnn_new(Wx, Wh, b, 0);
    ref_out ra = ref_ones(xa, NULL, Wx, Wh, b), rb = ref_ones(xb, h0, Wx, Wh, b);
    tg_tape *tape = tg_tape_new();
    tg_tensor *hs_a = tg_time_rnn_forward(tape, layer, xa);         /* from zeros */
    tg_tensor *hs_c = tg_time_rnn_forward(tape, layer, xc);         /* N = 3: a leaf of its own */
    cr_assert_eq(tg_time_rnn_set_state(layer, h0), TG_OK);
    tg_tensor *hs_b = tg_time_rnn_forward(tape, layer, xb);         /* from h0 */
    tg_tensor *L = tg_add(tape, tg_add(tape, tg_sum(tape, hs_a), tg_sum(tape, hs_b)), tg_sum(tape, hs_c));
    cr_assert(L, "%s", tg_last_error());
    /* Before the backward: zeros, as for any forward */
    tg_tensor *dh = tg_time_rnn_dh(layer);
    cr_assert(dh);
    for (int64_t i = 0; i < tg_tensor_numel(dh); i++) cr_expect_eq(tg_tensor_get(dh, i), 0.0);
    cr_assert_eq(tg_backward(tape, L, NULL), TG_OK, "%s", tg_last_error());
    dh = tg_time_rnn_dh(layer);
    tg_tensor *sum = plus(ra.dh0, rb.dh0);
    cr_expect_leq(rel_data(dh, sum), 1e-10, "dh is not dh0(a) + dh0(b): %.3g", rel_data(dh, sum));
    cr_expect_gt(rel_data(dh, rb.dh0), 1e-3, "dh is the last forward's alone");
    tg_tensor_free(sum);
    tg_tape_free(tape);
    tg_time_rnn_free(layer);
    ref_free(&ra), ref_free(&rb);
    tg_tensor_free(Wx), tg_tensor_free(Wh), tg_tensor_free(b), tg_tensor_free(xa), tg_tensor_free(xb),
        tg_tensor_free(xc), tg_tensor_free(h0);
}

/* ---- the seed's bugs, planted back, each caught ---- */

static void expect_caught(bug bug, int64_t N, int64_t T, int64_t D, int64_t H, int want_input,
                          const char *needle) {
    rnn_case k;
    case_make(&k, TG_F64, N, T, D, H, 1, 31);
    k.ctx.bug = bug;
    memcpy(k.ctx.notebook_xs_shape, (int64_t[]){N, T, H}, sizeof k.ctx.notebook_xs_shape);
    tg_gradcheck_report vr, vn;
    /* The correct copy passes: what fails below is the bug, not the copy. */
    rnn_ctx clean = k.ctx;
    clean.bug = BUG_NONE;
    cr_assert(tg_gradcheck_ref(f_time_rnn, ref_planted, &clean, k.in, 4, NULL, &vr, &vn), "clean copy: %s",
              vr.message);
    tg_clear_error();
    int ok = tg_gradcheck_ref(f_time_rnn, ref_planted, &k.ctx, k.in, 4, NULL, &vr, &vn);
    cr_expect(!ok, "bug '%s' with N=%lld D=%lld H=%lld was not caught: %s", BUG_NAMES[bug], (long long)N,
              (long long)D, (long long)H, vr.message);
    cr_expect(!vr.passed, "bug '%s': vs_ref passed: %s", BUG_NAMES[bug], vr.message);
    if (want_input >= 0)
        cr_expect_eq(vr.input, want_input, "bug '%s' blamed input %d (%s), want %s: %s", BUG_NAMES[bug],
                     vr.input, vr.input >= 0 && vr.input < 4 ? IN_NAMES[vr.input] : "?", IN_NAMES[want_input],
                     vr.message);
    if (needle)
        cr_expect(strstr(vr.message, needle), "bug '%s': message \"%s\" lacks \"%s\"", BUG_NAMES[bug],
                  vr.message, needle);
    tg_clear_error();
    case_free(&k);
}

/* N=2, T=3, D=3, H=2: D != H and N != D, the shapes where each bug shows. */
Test(rnn_bugs, tahn_does_not_run) { expect_caught(BUG_TAHN, 2, 3, 3, 2, -1, "no attribute 'tahn'"); }
Test(rnn_bugs, tahn_read_as_tan) { expect_caught(BUG_TAHN_AS_TAN, 2, 3, 3, 2, -1, "tape"); }
Test(rnn_bugs, matul_does_not_run) { expect_caught(BUG_MATUL, 2, 3, 3, 2, -1, "no attribute 'matul'"); }
Test(rnn_bugs, matmul_operands_swapped) {
    expect_caught(BUG_MATUL_ORDER, 2, 3, 3, 2, -1, "could not broadcast");
}
Test(rnn_bugs, matmul_operands_swapped_square) { expect_caught(BUG_MATUL_ORDER, 3, 3, 3, 3, 1, "tape"); }
Test(rnn_bugs, dWx_seed_formula) { expect_caught(BUG_DWX, 2, 3, 3, 2, -1, "shape (2,3) into shape (3,2)"); }
/* N = D = H: NumPy runs the seed's dWx line without complaint, and only the values are wrong. */
Test(rnn_bugs, dWx_seed_formula_square) { expect_caught(BUG_DWX, 3, 3, 3, 3, 1, "tape"); }
/* The unwritten dx reaches dxs as NaN (see ref_planted), which no comparison lets pass. */
Test(rnn_bugs, dx_never_computed) { expect_caught(BUG_DX, 2, 3, 3, 2, 0, "not finite"); }
Test(rnn_bugs, xs_not_in_scope) { expect_caught(BUG_XS, 2, 3, 3, 2, -1, "could not broadcast"); }

/* Honest about the limit: with D == H the stale global xs has the right shape and the bug is invisible
   to any check of values. That is why the tests above use D != H. */
Test(rnn_bugs, xs_not_in_scope_hides_when_D_equals_H) {
    rnn_case k;
    case_make(&k, TG_F64, 2, 3, 2, 2, 0, 41);
    k.ctx.bug = BUG_XS;
    memcpy(k.ctx.notebook_xs_shape, (int64_t[]){2, 3, 2}, sizeof k.ctx.notebook_xs_shape);
    tg_gradcheck_report vr;
    cr_expect(tg_gradcheck_ref(f_time_rnn, ref_planted, &k.ctx, k.in, 4, NULL, &vr, NULL), "%s", vr.message);
    case_free(&k);
}

/* ---- errors ---- */

typedef struct {
    tg_tensor *Wx, *Wh, *b, *xs, *h;
    tg_tape *tape;
} err_fix;

static err_fix err_make(void) {
    err_fix e = {TT_RAND(TG_F64, 1, 1, 3, 2),    TT_RAND(TG_F64, 1, 2, 2, 2), TT_RAND(TG_F64, 1, 3, 2),
                 TT_RAND(TG_F64, 0, 4, 4, 5, 3), TT_RAND(TG_F64, 0, 5, 4, 2), tg_tape_new()};
    tg_clear_error();
    return e;
}

static void err_free(err_fix *e) {
    tg_tensor_free(e->Wx), tg_tensor_free(e->Wh), tg_tensor_free(e->b), tg_tensor_free(e->xs),
        tg_tensor_free(e->h);
    tg_tape_free(e->tape);
}

Test(rnn_errors, cell) {
    err_fix e = err_make();
    tg_tensor *x = TT_RAND(TG_F64, 0, 6, 4, 3), *x_bad = TT_RAND(TG_F64, 0, 7, 4, 5);
    tg_tensor *h_bad = TT_RAND(TG_F64, 0, 8, 3, 2), *Wh_bad = TT_RAND(TG_F64, 0, 9, 3, 3);
    tg_tensor *b_bad = TT_RAND(TG_F64, 0, 10, 3), *x32 = TT_RAND(TG_F32, 0, 11, 4, 3);
    cr_expect_null(tg_rnn_cell(NULL, x, e.h, e.Wx, e.Wh, e.b));
    tt_expect_error(TG_EINVAL, "tg_rnn_cell: tape is NULL");
    cr_expect_null(tg_rnn_cell(e.tape, NULL, e.h, e.Wx, e.Wh, e.b));
    tt_expect_error(TG_EINVAL, "tg_rnn_cell: x is NULL");
    cr_expect_null(tg_rnn_cell(e.tape, x, e.h, e.Wx, NULL, e.b));
    tt_expect_error(TG_EINVAL, "tg_rnn_cell: Wh is NULL");
    cr_expect_null(tg_rnn_cell(e.tape, x_bad, e.h, e.Wx, e.Wh, e.b));
    tt_expect_error(TG_ESHAPE, "tg_rnn_cell: x is (4,5) but Wx is (3,2): want x (N,D) with D = 3");
    cr_expect_null(tg_rnn_cell(e.tape, x, h_bad, e.Wx, e.Wh, e.b));
    tt_expect_error(TG_ESHAPE, "tg_rnn_cell: h_prev is (3,2), want (N,H) = (4,2)");
    cr_expect_null(tg_rnn_cell(e.tape, x, e.h, e.Wx, Wh_bad, e.b));
    tt_expect_error(TG_ESHAPE, "tg_rnn_cell: Wh is (3,3) but Wx is (3,2): want Wh (H,H) with H = 2");
    cr_expect_null(tg_rnn_cell(e.tape, x, e.h, e.Wx, e.Wh, b_bad));
    tt_expect_error(TG_ESHAPE, "tg_rnn_cell: b is (3,) but Wx is (3,2): want b (H,) with H = 2");
    cr_expect_null(tg_rnn_cell(e.tape, x32, e.h, e.Wx, e.Wh, e.b));
    tt_expect_error(TG_EDTYPE, "tg_rnn_cell: x is f32 and h_prev f64 but the weights are f64");
    /* A NULL from a failed op keeps that op's message: errors chain. */
    tg_tensor *bad = tg_matmul(e.tape, x, x);
    cr_expect_null(tg_rnn_cell(e.tape, bad, e.h, e.Wx, e.Wh, e.b));
    tt_expect_error(TG_ESHAPE, "tg_matmul");
    tg_tensor_free(x), tg_tensor_free(x_bad), tg_tensor_free(h_bad), tg_tensor_free(Wh_bad),
        tg_tensor_free(b_bad), tg_tensor_free(x32);
    err_free(&e);
}

Test(rnn_errors, time_rnn_new) {
    err_fix e = err_make();
    tg_tensor *W1 = TT_RAND(TG_F64, 0, 6, 3), *Wh32 = TT_RAND(TG_F32, 0, 7, 2, 2),
              *Wh_bad = TT_RAND(TG_F64, 0, 8, 2, 3);
    cr_expect_null(tg_time_rnn_new(NULL, e.Wh, e.b, 0));
    tt_expect_error(TG_EINVAL, "tg_time_rnn_new: Wx is NULL");
    cr_expect_null(tg_time_rnn_new(e.Wx, e.Wh, NULL, 0));
    tt_expect_error(TG_EINVAL, "tg_time_rnn_new: b is NULL");
    cr_expect_null(tg_time_rnn_new(W1, e.Wh, e.b, 0));
    tt_expect_error(TG_ESHAPE, "tg_time_rnn_new: Wx is (3,), want 2 dims (D,H)");
    cr_expect_null(tg_time_rnn_new(e.Wx, Wh_bad, e.b, 0));
    tt_expect_error(TG_ESHAPE, "tg_time_rnn_new: Wh is (2,3) but Wx is (3,2): want Wh (H,H) with H = 2");
    cr_expect_null(tg_time_rnn_new(e.Wx, e.Wh, e.xs, 0));
    tt_expect_error(TG_ESHAPE, "tg_time_rnn_new: b is (4,5,3) but Wx is (3,2)");
    cr_expect_null(tg_time_rnn_new(e.Wx, Wh32, e.b, 1));
    tt_expect_error(TG_EDTYPE, "tg_time_rnn_new: Wx is f64, Wh f32 and b f64: want one dtype");
    tg_tensor_free(W1), tg_tensor_free(Wh32), tg_tensor_free(Wh_bad);
    err_free(&e);
}

Test(rnn_errors, forward) {
    err_fix e = err_make();
    tg_time_rnn *layer = tg_time_rnn_new(e.Wx, e.Wh, e.b, 1);
    tg_tensor *xs_D = TT_RAND(TG_F64, 0, 6, 4, 5, 2), *xs2 = TT_RAND(TG_F64, 0, 7, 4, 3);
    tg_tensor *xs32 = TT_RAND(TG_F32, 0, 8, 4, 5, 3), *xs_T0 = tg_tensor_new(TG_F64, 3, (int64_t[]){4, 0, 3});
    tg_tensor *xs_N = TT_RAND(TG_F64, 0, 9, 3, 5, 3);
    cr_expect_null(tg_time_rnn_forward(NULL, layer, e.xs));
    tt_expect_error(TG_EINVAL, "tg_time_rnn_forward: tape is NULL");
    cr_expect_null(tg_time_rnn_forward(e.tape, NULL, e.xs));
    tt_expect_error(TG_EINVAL, "tg_time_rnn_forward: layer is NULL");
    cr_expect_null(tg_time_rnn_forward(e.tape, layer, NULL));
    tt_expect_error(TG_EINVAL, "tg_time_rnn_forward: xs is NULL");
    cr_expect_null(tg_time_rnn_forward(e.tape, layer, xs_D));
    tt_expect_error(TG_ESHAPE,
                    "tg_time_rnn_forward: xs is (4,5,2) but Wx is (3,2): want xs (N,T,D) with D = 3");
    cr_expect_null(tg_time_rnn_forward(e.tape, layer, xs2));
    tt_expect_error(TG_ESHAPE, "tg_time_rnn_forward: xs must be 3-d (N,T,D) with D = 3, got a 2-d (4,3)");
    cr_expect_null(tg_time_rnn_forward(e.tape, layer, xs32));
    tt_expect_error(TG_EDTYPE, "tg_time_rnn_forward: xs is f32 but the layer's weights are f64");
    cr_expect_null(tg_time_rnn_forward(e.tape, layer, xs_T0));
    tt_expect_error(TG_ESHAPE, "tg_time_rnn_forward: xs is (4,0,3): T = 0 steps");
    /* A kept state fixes N: the last forward's batch was 4, this one is 3. */
    cr_assert(tg_time_rnn_forward(e.tape, layer, e.xs), "%s", tg_last_error());
    cr_expect_null(tg_time_rnn_forward(e.tape, layer, xs_N));
    tt_expect_error(TG_ESHAPE,
                    "the layer's state is (4,2) (from set_state or the last stateful forward) but xs "
                    "(3,5,3) has N = 3");
    tg_time_rnn_reset_state(layer);
    cr_expect(tg_time_rnn_forward(e.tape, layer, xs_N), "%s", tg_last_error());
    /* The layer is still usable after every refusal above. */
    tg_time_rnn_free(layer);
    tg_tensor_free(xs_D), tg_tensor_free(xs2), tg_tensor_free(xs32), tg_tensor_free(xs_T0),
        tg_tensor_free(xs_N);
    err_free(&e);
}

Test(rnn_errors, set_state_and_dh) {
    err_fix e = err_make();
    tg_time_rnn *layer = tg_time_rnn_new(e.Wx, e.Wh, e.b, 0);
    tg_tensor *h3 = TT_RAND(TG_F64, 0, 6, 4, 3), *h1 = TT_RAND(TG_F64, 0, 7, 2),
              *h32 = TT_RAND(TG_F32, 0, 8, 4, 2);
    cr_expect_eq(tg_time_rnn_set_state(NULL, e.h), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_time_rnn_set_state: layer is NULL");
    cr_expect_eq(tg_time_rnn_set_state(layer, NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_time_rnn_set_state: h is NULL");
    cr_expect_eq(tg_time_rnn_set_state(layer, h3), TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "tg_time_rnn_set_state: h is (4,3), want (N,H) with H = 2");
    cr_expect_eq(tg_time_rnn_set_state(layer, h1), TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "tg_time_rnn_set_state: h is (2,), want (N,H) with H = 2");
    cr_expect_eq(tg_time_rnn_set_state(layer, h32), TG_EDTYPE);
    tt_expect_error(TG_EDTYPE, "tg_time_rnn_set_state: h is f32 but the layer's weights are f64");
    cr_expect_null(tg_time_rnn_dh(NULL));
    tt_expect_error(TG_EINVAL, "tg_time_rnn_dh: layer is NULL");
    cr_expect_null(tg_time_rnn_dh(layer));
    tt_expect_error(TG_ESTATE, "tg_time_rnn_dh: no forward has run");
    /* A refused set_state left no state behind: the forward starts from zeros, as a fresh layer's. */
    tg_time_rnn *fresh = tg_time_rnn_new(e.Wx, e.Wh, e.b, 0);
    cr_expect_eq(tg_tensor_hash(tg_time_rnn_forward(e.tape, layer, e.xs)),
                 tg_tensor_hash(tg_time_rnn_forward(e.tape, fresh, e.xs)));
    tg_time_rnn_reset_state(NULL); /* ignored, as free(NULL) */
    tg_time_rnn_free(NULL);
    tg_time_rnn_free(layer), tg_time_rnn_free(fresh);
    tg_tensor_free(h3), tg_tensor_free(h1), tg_tensor_free(h32);
    err_free(&e);
}

Test(rnn_errors, reference) {
    err_fix e = err_make();
    tg_tensor *hs = tg_tensor_new(TG_F64, 3, (int64_t[]){4, 5, 2}),
              *hs_bad = tg_tensor_new(TG_F64, 3, (int64_t[]){4, 5, 3});
    tg_tensor *dWx_bad = tg_tensor_new(TG_F64, 2, (int64_t[]){2, 3}), *b32 = TT_RAND(TG_F32, 0, 6, 2);
    cr_expect_eq(tg_time_rnn_ref(NULL, NULL, e.Wx, e.Wh, e.b, NULL, hs, NULL, NULL, NULL, NULL, NULL),
                 TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_time_rnn_ref: xs is NULL");
    cr_expect_eq(tg_time_rnn_ref(e.xs, NULL, e.Wx, e.Wh, e.b, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
                 TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_time_rnn_ref: hs is NULL");
    cr_expect_eq(tg_time_rnn_ref(e.xs, NULL, e.Wx, e.Wh, e.b, NULL, hs_bad, NULL, NULL, NULL, NULL, NULL),
                 TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "tg_time_rnn_ref: hs is (4,5,3), want (N,T,H) = (4,5,2)");
    cr_expect_eq(tg_time_rnn_ref(e.xs, NULL, e.Wx, e.Wh, e.b, hs, hs, NULL, dWx_bad, NULL, NULL, NULL),
                 TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "tg_time_rnn_ref: dWx is (2,3), want (D,H) = (3,2)");
    cr_expect_eq(tg_time_rnn_ref(e.xs, e.Wh, e.Wx, e.Wh, e.b, NULL, hs, NULL, NULL, NULL, NULL, NULL),
                 TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "tg_time_rnn_ref: h0 is (2,2), want (N,H) = (4,2)");
    cr_expect_eq(tg_time_rnn_ref(e.xs, NULL, e.Wx, e.Wh, b32, NULL, hs, NULL, NULL, NULL, NULL, NULL),
                 TG_EDTYPE);
    tt_expect_error(TG_EDTYPE, "tg_time_rnn_ref: Wx is f64, Wh f64 and b f32: want one dtype");
    cr_expect_eq(tg_time_rnn_ref(e.xs, NULL, e.Wh, e.Wh, e.b, NULL, hs, NULL, NULL, NULL, NULL, NULL),
                 TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "tg_time_rnn_ref: Wx is (2,2), want (D,H) = (3,2)");
    tg_tensor_free(hs), tg_tensor_free(hs_bad), tg_tensor_free(dWx_bad), tg_tensor_free(b32);
    err_free(&e);
}

/* The reference checks Wx, Wh and b with the layer's own checker: one wording for both. */
Test(rnn_errors, reference_and_layer_check_params_alike) {
    err_fix e = err_make();
    tg_tensor *hs = tg_tensor_new(TG_F64, 3, (int64_t[]){4, 5, 2}), *Wh_bad = TT_RAND(TG_F64, 0, 6, 3, 3),
              *b_bad = TT_RAND(TG_F64, 0, 7, 3), *W1 = TT_RAND(TG_F64, 0, 8, 3),
              *xs32 = TT_RAND(TG_F32, 0, 9, 4, 5, 3);
    static const char *const want[3] = {"Wh is (3,3) but Wx is (3,2): want Wh (H,H) with H = 2",
                                        "b is (3,) but Wx is (3,2): want b (H,) with H = 2",
                                        "Wx is (3,), want 2 dims (D,H)"};
    tg_tensor *Wx[3] = {e.Wx, e.Wx, W1}, *Wh[3] = {Wh_bad, e.Wh, e.Wh}, *b[3] = {e.b, b_bad, e.b};
    for (int i = 0; i < 3; i++) {
        char msg[256];
        cr_expect_null(tg_time_rnn_new(Wx[i], Wh[i], b[i], 0));
        snprintf(msg, sizeof msg, "tg_time_rnn_new: %s", want[i]);
        tt_expect_error(TG_ESHAPE, msg);
        cr_expect_eq(tg_time_rnn_ref(e.xs, NULL, Wx[i], Wh[i], b[i], NULL, hs, NULL, NULL, NULL, NULL, NULL),
                     TG_ESHAPE);
        snprintf(msg, sizeof msg, "tg_time_rnn_ref: %s", want[i]);
        tt_expect_error(TG_ESHAPE, msg);
    }
    /* and what only the reference checks: the parameters against xs */
    cr_expect_eq(tg_time_rnn_ref(xs32, NULL, e.Wx, e.Wh, e.b, NULL, hs, NULL, NULL, NULL, NULL, NULL),
                 TG_EDTYPE);
    tt_expect_error(TG_EDTYPE, "tg_time_rnn_ref: Wx is f64 but xs is f32");
    tg_tensor_free(hs), tg_tensor_free(Wh_bad), tg_tensor_free(b_bad), tg_tensor_free(W1),
        tg_tensor_free(xs32);
    err_free(&e);
}

/* A NULL argument after a failed call keeps that call's status and message (tg__null), in every
   function of the layer and the reference: a forward pass can be checked once, at its end. */
Test(rnn_errors, null_keeps_an_earlier_failure) {
    err_fix e = err_make();
    tg_time_rnn *layer = tg_time_rnn_new(e.Wx, e.Wh, e.b, 0);
    tg_tensor *hs = tg_tensor_new(TG_F64, 3, (int64_t[]){4, 5, 2}), *x = TT_RAND(TG_F64, 0, 6, 4, 3);
    cr_assert(layer && hs);
    cr_assert_null(tg_matmul(e.tape, e.Wx, e.Wx)); /* (3,2) @ (3,2) */
    cr_assert_eq(tg_last_status(), TG_ESHAPE);
    char first[512];
    snprintf(first, sizeof first, "%s", tg_last_error());
    cr_assert(strstr(first, "tg_matmul"), "%s", first);
    int step = 0;
#define KEEPS(call)                                                                                \
    do {                                                                                           \
        step++;                                                                                    \
        (void)(call);                                                                              \
        cr_expect_eq(tg_last_status(), TG_ESHAPE, "%s: status %s", #call,                         \
                     tg_status_name(tg_last_status()));                                            \
        cr_expect_str_eq(tg_last_error(), first, "%s overwrote the first message", #call);         \
    } while (0)
    KEEPS(tg_time_rnn_ref(NULL, NULL, e.Wx, e.Wh, e.b, NULL, hs, NULL, NULL, NULL, NULL, NULL));
    KEEPS(tg_time_rnn_ref(e.xs, NULL, NULL, e.Wh, e.b, NULL, hs, NULL, NULL, NULL, NULL, NULL));
    KEEPS(tg_time_rnn_ref(e.xs, NULL, e.Wx, NULL, e.b, NULL, hs, NULL, NULL, NULL, NULL, NULL));
    KEEPS(tg_time_rnn_ref(e.xs, NULL, e.Wx, e.Wh, NULL, NULL, hs, NULL, NULL, NULL, NULL, NULL));
    KEEPS(tg_time_rnn_ref(e.xs, NULL, e.Wx, e.Wh, e.b, NULL, NULL, NULL, NULL, NULL, NULL, NULL));
    KEEPS(tg_time_rnn_new(NULL, e.Wh, e.b, 0));
    KEEPS(tg_time_rnn_new(e.Wx, NULL, e.b, 0));
    KEEPS(tg_time_rnn_new(e.Wx, e.Wh, NULL, 1));
    KEEPS(tg_time_rnn_forward(NULL, layer, e.xs));
    KEEPS(tg_time_rnn_forward(e.tape, NULL, e.xs));
    KEEPS(tg_time_rnn_forward(e.tape, layer, NULL));
    KEEPS(tg_time_rnn_set_state(NULL, e.h));
    KEEPS(tg_time_rnn_set_state(layer, NULL));
    KEEPS(tg_time_rnn_dh(NULL));
    KEEPS(tg_rnn_cell(NULL, x, e.h, e.Wx, e.Wh, e.b));
    KEEPS(tg_rnn_cell(e.tape, NULL, e.h, e.Wx, e.Wh, e.b));
    KEEPS(tg_rnn_cell(e.tape, x, NULL, e.Wx, e.Wh, e.b));
    KEEPS(tg_rnn_cell(e.tape, x, e.h, e.Wx, e.Wh, NULL));
#undef KEEPS
    cr_expect_eq(step, 18);
    tg_clear_error();
    tg_time_rnn_free(layer);
    tg_tensor_free(hs), tg_tensor_free(x);
    err_free(&e);
}

/* ---- allocation failures ----
 * The k-th allocation fails, for every k the calls make: each run returns NULL with TG_ENOMEM or
 * succeeds, and frees what it made (run this binary under valgrind to see no leak). A stateful layer
 * whose forward failed keeps its state, so the next forward carries on as if the failure had not been. */
Test(rnn_alloc, new_and_forward_fail_cleanly) {
    tg_tensor *Wx = TT_RAND(TG_F64, 1, 1, 3, 2), *Wh = TT_RAND(TG_F64, 1, 2, 2, 2),
              *b = TT_RAND(TG_F64, 1, 3, 2);
    tg_tensor *x1 = TT_RAND(TG_F64, 0, 4, 2, 4, 3), *x2 = TT_RAND(TG_F64, 0, 5, 2, 4, 3);
    /* What chunk 2 gives when nothing fails. */
    tg_time_rnn *ok_layer = tg_time_rnn_new(Wx, Wh, b, 1);
    tg_tape *tape = tg_tape_new();
    cr_assert(tg_time_rnn_forward(tape, ok_layer, x1));
    uint64_t want = tg_tensor_hash(tg_time_rnn_forward(tape, ok_layer, x2));
    tg_tape_free(tape);
    tg_time_rnn_free(ok_layer);

    int failures = 0, done = 0;
    for (int64_t k = 1; k < 10000 && !done; k++) {
        tg_clear_error();
        tg__alloc_fail_at(k);
        tg_time_rnn *layer = tg_time_rnn_new(Wx, Wh, b, 1);
        tape = tg_tape_new();
        tg_tensor *hs1 = layer && tape ? tg_time_rnn_forward(tape, layer, x1) : NULL;
        int64_t used = tg__alloc_count(); /* read before tg__alloc_fail_at(0) zeroes it */
        tg__alloc_fail_at(0);
        if (!hs1) {
            failures++;
            cr_expect_eq(tg_last_status(), TG_ENOMEM, "k=%lld: %s (%s)", (long long)k,
                         tg_status_name(tg_last_status()), tg_last_error());
        } else if (used < k) {
            done = 1; /* the k-th allocation never came: every point has been failed */
        }
        tg_tape_free(tape);
        tg_time_rnn_free(layer);
    }
    cr_expect(done && failures > 0, "done %d after %d failures", done, failures);

    /* Chunk 1 without failures, then chunk 2 failing at each point, then chunk 2 again. */
    done = 0;
    for (int64_t k = 1; k < 10000 && !done; k++) {
        tg_time_rnn *layer = tg_time_rnn_new(Wx, Wh, b, 1);
        tape = tg_tape_new();
        cr_assert(tg_time_rnn_forward(tape, layer, x1));
        tg_tape_free(tape);
        tape = tg_tape_new(); /* a fresh arena, so chunk 2 has allocations to fail */
        tg_clear_error();
        tg__alloc_fail_at(k);
        tg_tensor *hs2 = tg_time_rnn_forward(tape, layer, x2);
        int64_t used = tg__alloc_count();
        tg__alloc_fail_at(0);
        if (hs2) {
            done = used < k;
        } else {
            cr_expect_eq(tg_last_status(), TG_ENOMEM, "k=%lld: %s", (long long)k, tg_last_error());
            tg_tape_reset(tape);
            hs2 = tg_time_rnn_forward(tape, layer, x2);
            cr_assert(hs2, "%s", tg_last_error());
        }
        cr_expect_eq(tg_tensor_hash(hs2), want, "k=%lld: the failed forward changed the state", (long long)k);
        tg_tape_free(tape);
        tg_time_rnn_free(layer);
    }
    cr_expect(done);
    tg_tensor_free(Wx), tg_tensor_free(Wh), tg_tensor_free(b), tg_tensor_free(x1), tg_tensor_free(x2);
}

/* Out of memory inside the loop: the message names the layer and the step before the op that failed
   ("tg_time_rnn_forward: step 41: tg_tanh: out of memory ..."), and the step is the one where the tape
   stopped: one linear projects every step's input first, then each step records select, addmm, tanh,
   so the op's place on the tape tells its step. 60 steps of (8,64) outputs grow the arena, the
   node list and the header pool mid-way, so failures land inside the loop. */
Test(rnn_alloc, a_failure_inside_the_loop_names_the_layer_and_the_step) {
    tg_tensor *Wx = TT_RAND(TG_F64, 1, 1, 16, 64), *Wh = TT_RAND(TG_F64, 1, 2, 64, 64), *b = TT_RAND(TG_F64, 1, 3, 64);
    tg_tensor *xs = TT_RAND(TG_F64, 0, 4, 8, 200, 16);
    tg_time_rnn *layer = tg_time_rnn_new(Wx, Wh, b, 0);
    tg_tape *warm = tg_tape_new(); /* the layer's h0 leaf, made once, so that every k below is the loop's */
    cr_assert(tg_time_rnn_forward(warm, layer, xs), "%s", tg_last_error());
    tg_tape_free(warm);
    static const char *const ops[] = {"tg_select", "tg_addmm", "tg_tanh"}; /* a step's 3 nodes */
    int in_loop = 0, done = 0;
    for (int64_t k = 1; k < 10000 && !done; k++) {
        tg_tape *tape = tg_tape_new();
        cr_assert(tape);
        tg_clear_error();
        tg__alloc_fail_at(k);
        tg_tensor *hs = tg_time_rnn_forward(tape, layer, xs);
        int64_t used = tg__alloc_count();
        tg__alloc_fail_at(0);
        done = hs && used < k;
        int step = -1, at = -1;
        char op[32] = "";
        if (!hs && sscanf(tg_last_error(), "tg_time_rnn_forward: step %d: %31[a-z_]:", &step, op) == 2) {
            for (int i = 0; i < 3; i++)
                if (!strcmp(op, ops[i])) at = i;
            int64_t n = tg_tape_size(tape);
            cr_expect(at >= 0 && n >= 1 + 3 * step + at && n <= 2 + 3 * step + at,
                      "k=%lld: %lld nodes on the tape, but the message says %s at step %d: %s", (long long)k,
                      (long long)n, op, step, tg_last_error());
            cr_expect(strstr(tg_last_error(), "out of memory"), "%s", tg_last_error());
            if (step > 0 && in_loop++ == 0) cr_log_info("k=%lld: %s", (long long)k, tg_last_error());
        } else if (!hs) {
            cr_expect(!strncmp(tg_last_error(), "tg_time_rnn_forward: ", 21), "k=%lld: %s", (long long)k,
                      tg_last_error());
        }
        cr_expect(hs || tg_last_status() == TG_ENOMEM, "k=%lld: %s", (long long)k, tg_last_error());
        tg_tape_free(tape);
    }
    cr_expect(done);
    cr_expect_geq(in_loop, 1, "only %d failures after the first step", in_loop);
    tg_time_rnn_free(layer);
    tg_tensor_free(Wx), tg_tensor_free(Wh), tg_tensor_free(b), tg_tensor_free(xs);
}

/* The reference's one allocation. */
Test(rnn_alloc, reference_fails_cleanly) {
    err_fix e = err_make();
    tg_tensor *hs = tg_tensor_new(TG_F64, 3, (int64_t[]){4, 5, 2});
    tg__alloc_fail_at(1);
    tg_status s = tg_time_rnn_ref(e.xs, NULL, e.Wx, e.Wh, e.b, hs, hs, NULL, NULL, NULL, NULL, NULL);
    tg__alloc_fail_at(0);
    cr_expect_eq(s, TG_ENOMEM);
    tt_expect_error(TG_ENOMEM, "tg_time_rnn_ref: out of memory");
    tg_tensor_free(hs);
    err_free(&e);
}

/* Wh is saved by all T addmms and hashed once: a write to it after the forward is still caught, and so is
   one to xs (saved by the projection), each blamed on the first node that saved it. */
Test(rnn_time, a_weight_written_after_forward_is_caught_once_hashed) {
    for (int which = 0; which < 2; which++) {
        rnn_case k;
        case_make(&k, TG_F64, 3, 6, 2, 4, 0, 23);
        tg_tape *tape = tg_tape_new();
        tg_tensor *hs = f_time_rnn(tape, k.in, &k.ctx);
        cr_assert(hs, "%s", tg_last_error());
        ((double *)tg_tensor_data(k.in[which ? 0 : 2]))[1] += 1e-12;
        cr_expect_eq(tg_backward(tape, tg_sum(tape, hs), NULL), TG_EMODIFIED);
        tt_expect_error(TG_EMODIFIED, which ? "that linear (node 0) saved" : "that addmm (node 2) saved");
        tg_tape_free(tape);
        case_free(&k);
    }
}

/* What a TimeRNN step keeps: P and hs (N,T,H) and the T h's (backward needs nothing else of the forward),
   then in backward the seed's gradient (N,T,H), which P's gradient reuses, and the h's: about 4.4 blocks of
   (N,T,H) with the nodes' lists. Without releasing each step's three intermediates it is 3 blocks more;
   without reusing gradient blocks, more again. */
Test(rnn_time, a_step_keeps_only_what_backward_needs) {
    const int64_t N = 8, T = 32, D = 4, H = 16, nth = N * T * H * (int64_t)sizeof(double);
    rnn_case k;
    case_make(&k, TG_F64, N, T, D, H, 0, 17);
    tg_tape *tape = tg_tape_new();
    tg_tensor *hs = f_time_rnn(tape, k.in, &k.ctx);
    cr_assert(hs, "%s", tg_last_error());
    tg_tensor *dhs = tt_rand(TG_F64, 0, 3, 3, tg_tensor_shape(hs));
    cr_assert_eq(tg_backward(tape, hs, dhs), TG_OK, "%s", tg_last_error());
    int64_t peak = tg_tape_memory(tape);
    cr_expect(peak <= 5 * nth, "peak %lld bytes, %.2f (N,T,H) blocks", (long long)peak, (double)peak / (double)nth);
    tg_tensor_free(dhs);
    tg_tape_free(tape);
    case_free(&k);
}

/* The per-node check on a TimeRNN's recording (every select, matmul, add, tanh and the stack on its
   own): no false failures, in f64 and in f32, with and without an initial state. */
Test(rnn_time, every_node_passes_the_per_node_check) {
    for (int d = 0; d < 2; d++)
        for (int with_h0 = 0; with_h0 < 2; with_h0++) {
            rnn_case k;
            case_make(&k, d ? TG_F32 : TG_F64, 2, 4, 3, 5, with_h0, 40 + (uint64_t)with_h0);
            tg_tape *tape = tg_tape_new();
            tg_tensor *hs = f_time_rnn(tape, k.in, &k.ctx);
            cr_assert(hs, "%s", tg_last_error());
            tg_gradcheck_opts o = d ? tg_gradcheck_defaults_f32() : tg_gradcheck_defaults();
            tg_gradcheck_report r;
            cr_expect(tg_gradcheck_nodes(tape, hs, &o, &r), "%s h0 %d: %s", d ? "f32" : "f64", with_h0, r.message);
            cr_expect(strstr(r.message, "passed"), "%s", r.message);
            tg_tape_free(tape);
            case_free(&k);
        }
}

/* A tensor recorded on another tape is named in the RNN's words before any op runs (the fuzzer found
   "tg_add: b was recorded on another tape" from tg_rnn_cell); a failure inside the cell (out of memory)
   is told after the cell's name, at every allocation the cell makes. */
Test(rnn_errors, tensors_from_another_tape) {
    err_fix e = err_make();
    tg_tape *other = tg_tape_new();
    tg_tensor *x = TT_RAND(TG_F64, 0, 6, 4, 3);
    static const char *const names[5] = {"x", "h_prev", "Wx", "Wh", "b"};
    for (int i = 0; i < 5; i++) {
        tg_tensor *a[5] = {x, e.h, e.Wx, e.Wh, e.b};
        a[i] = tg_scale(other, a[i], 1);
        cr_assert(a[i], "%s", tg_last_error());
        cr_expect_null(tg_rnn_cell(e.tape, a[0], a[1], a[2], a[3], a[4]));
        char msg[64];
        snprintf(msg, sizeof msg, "tg_rnn_cell: %s was recorded on another tape", names[i]);
        tt_expect_error(TG_EINVAL, msg);
        cr_expect_eq(tg_tape_size(e.tape), 0);
    }
    tg_time_rnn *layer = tg_time_rnn_new(e.Wx, e.Wh, e.b, 0);
    cr_expect_null(tg_time_rnn_forward(e.tape, layer, tg_scale(other, e.xs, 1)));
    tt_expect_error(TG_EINVAL, "tg_time_rnn_forward: xs was recorded on another tape");
    tg_time_rnn_free(layer);
    layer = tg_time_rnn_new(e.Wx, e.Wh, tg_scale(other, e.b, 1), 0);
    cr_expect_null(tg_time_rnn_forward(e.tape, layer, e.xs));
    tt_expect_error(TG_EINVAL, "tg_time_rnn_forward: b was recorded on another tape");
    cr_expect(tg_time_rnn_forward(other, layer, e.xs), "%s", tg_last_error());
    tg_time_rnn_free(layer);
    tg_tape_free(other);
    tg_tensor_free(x);
    err_free(&e);
}

static tg_tensor *cell_call(tg_tape *tape, void *ctx) {
    err_fix *e = ctx;
    return tg_rnn_cell(tape, e->xs, e->h, e->Wx, e->Wh, e->b);
}
Test(rnn_alloc, a_failure_inside_the_cell_names_the_cell) {
    err_fix e = err_make();
    tg_tensor *xs = e.xs;
    e.xs = TT_RAND(TG_F64, 0, 6, 4, 3); /* the cell's x (N,D), in xs's place */
    tt_each_alloc_failure(cell_call, &e, "tg_rnn_cell: tg_");
    tg_tensor_free(e.xs);
    e.xs = xs;
    err_free(&e);
}

/* A kept state holding NaN, under TG_CHECK_NONFINITE, fails the forward in the layer's words (the fuzzer
   found the bare "tg_detach: non-finite output ..."); the same state runs without the check. */
Test(rnn_errors, a_non_finite_state_names_the_layer) {
    err_fix e = err_make();
    tg_time_rnn *layer = tg_time_rnn_new(e.Wx, e.Wh, e.b, 0);
    tg_tensor *h0 = tg_tensor_new(TG_F64, 2, (int64_t[]){4, 2});
    tg_tensor_set(h0, 3, NAN);
    cr_assert_eq(tg_time_rnn_set_state(layer, h0), TG_OK, "%s", tg_last_error());
    tg_tape_set_checks(e.tape, TG_CHECK_SAVED | TG_CHECK_NONFINITE);
    cr_expect_null(tg_time_rnn_forward(e.tape, layer, e.xs));
    tt_expect_error(TG_ENONFINITE, "tg_time_rnn_forward: the initial state: tg_detach: non-finite output");
    tg_tape_reset(e.tape);
    tg_tape_set_checks(e.tape, TG_CHECK_SAVED);
    cr_expect(tg_time_rnn_forward(e.tape, layer, e.xs), "%s", tg_last_error());
    tg_time_rnn_free(layer);
    tg_tensor_free(h0);
    err_free(&e);
}

/* ---- names in the tape's drawing ---- */

/* The tour's picture: a TimeRNN's T steps share one Wh, so the DOT graph has one Wh node, named by the
   layer, with an edge to each step's matmul; the layer's zero initial state is "h0". */
Test(rnn, the_dot_drawing_has_one_named_Wh_with_an_edge_per_step) {
    enum { T = 5 };
    tg_tensor *Wx = TT_RAND(TG_F64, 1, 1, 2, 3), *Wh = TT_RAND(TG_F64, 1, 2, 3, 3), *b = TT_RAND(TG_F64, 1, 3, 3);
    tg_tensor *xs = TT_RAND(TG_F64, 0, 4, 1, T, 2);
    tg_time_rnn *layer = tg_time_rnn_new(Wx, Wh, b, 0);
    tg_tape *tape = tg_tape_new();
    cr_assert(layer && tg_time_rnn_forward(tape, layer, xs), "%s", tg_last_error());
    char *buf = tt_tape_text(tape, 1);
    /* the one node labelled Wh, and its id */
    const char *decl = strstr(buf, "[shape=ellipse, label=\"Wh\\n(3,3)\"];");
    cr_assert(decl, "%s", buf);
    cr_expect_null(strstr(strstr(decl, "];"), "label=\"Wh\\n"), "a second Wh node: %s", buf);
    const char *line = decl;
    while (line > buf && line[-1] != '\n') line--;
    char id[32], edge[48];
    cr_assert_eq(sscanf(line, " %31s", id), 1);
    snprintf(edge, sizeof edge, "  %s -> n", id);
    int edges = 0, ellipses = 0;
    for (const char *p = buf; (p = strstr(p, edge)); p++) edges++;
    for (const char *p = buf; (p = strstr(p, "shape=ellipse")); p++) ellipses++;
    cr_expect_eq(edges, T, "%s", buf);
    cr_expect_eq(ellipses, 5, "xs, Wx, b, h0 and Wh, once each: %s", buf);
    cr_expect(strstr(buf, "label=\"Wx\\n(2,3)\"") && strstr(buf, "label=\"b\\n(3,)\"") &&
              strstr(buf, "label=\"h0\\n(1,3)\"") && strstr(buf, "label=\"leaf(1,5,2)\""), "%s", buf);
    free(buf);
    tg_tape_free(tape);
    tg_time_rnn_free(layer);
    tg_tensor_free(Wx), tg_tensor_free(Wh), tg_tensor_free(b), tg_tensor_free(xs);
}

/* The layer names weights that have no name, keeps a name given before, and fails cleanly naming them. */
Test(rnn, the_layer_names_unnamed_weights_by_their_roles) {
    err_fix e = err_make();
    cr_assert_eq(tg_tensor_set_name(e.Wh, "enc.Wh"), TG_OK);
    tg_time_rnn *layer = tg_time_rnn_new(e.Wx, e.Wh, e.b, 0);
    cr_assert(layer, "%s", tg_last_error());
    cr_expect_str_eq(tg_tensor_name(e.Wx), "Wx");
    cr_expect_str_eq(tg_tensor_name(e.Wh), "enc.Wh");
    cr_expect_str_eq(tg_tensor_name(e.b), "b");
    tg_time_rnn_free(layer);
    err_free(&e);
    e = err_make();
    int failures = 0;
    for (int64_t k = 1;; k++) {
        cr_assert_lt(k, 100);
        tg__alloc_fail_at(k);
        layer = tg_time_rnn_new(e.Wx, e.Wh, e.b, 1);
        tg__alloc_fail_at(0);
        if (layer) break;
        failures++;
        tt_expect_error(TG_ENOMEM, "tg_time_rnn_new: out of memory");
    }
    cr_expect_geq(failures, 3, "the three names, then the layer");
    cr_expect_str_eq(tg_tensor_name(e.Wh), "Wh");
    tg_time_rnn_free(layer);
    err_free(&e);
}
