/* The LSTM and GRU, cells and Time layers: the tape's gradients against the book's formulas
 * (tg_time_lstm_ref, tg_time_gru_ref) and against finite differences; the forward pinned by a literal
 * transcription of the book's equations (the gate order f, g, i, o; the GRU's reset gate before Whh),
 * which a gradient check cannot see when tape and reference share a mistake; state carried between
 * chunks; dh and dc; every node on its own; error paths; allocation failures.
 *
 * Shapes use the book's letters: xs (N,T,D), h and c (N,H); LSTM Wx (D,4H), Wh (H,4H), b (4H,); GRU
 * Wx (D,3H), Wh (H,3H), b (3H,). D != H throughout: a formula that confuses them then cannot run.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "tg_testutil.h"

/* The layer kind is its gate count, so G * H is the width of its weights. */
typedef enum { GRU = 3, LSTM = 4 } kind;
static const char *kind_name(kind k) { return k == LSTM ? "LSTM" : "GRU"; }

static tg_tensor *zeros_like(const tg_tensor *t) {
    tg_tensor *z = tg_tensor_new(tg_tensor_dtype(t), tg_tensor_ndim(t), tg_tensor_shape(t));
    cr_assert(z, "%s", tg_last_error());
    return z;
}

static tg_tensor *nh_new(tg_dtype dt, int64_t N, int64_t H) {
    tg_tensor *t = tg_tensor_new(dt, 2, (int64_t[]){N, H});
    cr_assert(t);
    return t;
}

/* ---- either layer behind one face ---- */

typedef struct {
    kind kind;
    tg_time_lstm *lstm;
    tg_time_gru *gru;
    tg_tensor *h0, *c0; /* handed to set_state before each forward of f_time; h0 NULL: no state */
} layer;

static layer layer_new(kind k, tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b, int stateful) {
    layer l = {k, NULL, NULL, NULL, NULL};
    if (k == LSTM) l.lstm = tg_time_lstm_new(Wx, Wh, b, stateful);
    else l.gru = tg_time_gru_new(Wx, Wh, b, stateful);
    cr_assert(l.lstm || l.gru, "%s", tg_last_error());
    return l;
}
static void layer_free(layer *l) { tg_time_lstm_free(l->lstm), tg_time_gru_free(l->gru); }
static tg_status layer_set_state(layer *l, tg_tensor *h, tg_tensor *c) {
    return l->kind == LSTM ? tg_time_lstm_set_state(l->lstm, h, c) : tg_time_gru_set_state(l->gru, h);
}
static void layer_reset(layer *l) { tg_time_lstm_reset_state(l->lstm), tg_time_gru_reset_state(l->gru); }
static tg_tensor *layer_forward(tg_tape *tape, layer *l, tg_tensor *xs) {
    return l->kind == LSTM ? tg_time_lstm_forward(tape, l->lstm, xs) : tg_time_gru_forward(tape, l->gru, xs);
}
static tg_tensor *layer_dh(layer *l) { return l->kind == LSTM ? tg_time_lstm_dh(l->lstm) : tg_time_gru_dh(l->gru); }

/* The reference of either kind; g = {dxs, dWx, dWh, db}, any NULL. c0, cs and dc0 are the LSTM's. */
static tg_status ref_of(kind k, tg_tensor *xs, tg_tensor *h0, tg_tensor *c0, tg_tensor *Wx, tg_tensor *Wh,
                        tg_tensor *b, const tg_tensor *dhs, tg_tensor *hs, tg_tensor *cs, tg_tensor *const *g,
                        tg_tensor *dh0, tg_tensor *dc0) {
    tg_tensor *none[4] = {NULL, NULL, NULL, NULL};
    if (!g) g = none;
    if (k == LSTM)
        return tg_time_lstm_ref(xs, h0, c0, Wx, Wh, b, (tg_tensor *)dhs, hs, cs, g[0], g[1], g[2], g[3], dh0, dc0);
    return tg_time_gru_ref(xs, h0, Wx, Wh, b, (tg_tensor *)dhs, hs, g[0], g[1], g[2], g[3], dh0);
}

/* f for the gradient check: inputs {xs, Wx, Wh, b} -> hs, through the layer in ctx. */
static tg_tensor *f_time(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    layer *l = ctx;
    if (l->h0 && layer_set_state(l, l->h0, l->c0) != TG_OK) return NULL;
    return layer_forward(tape, l, in[0]);
}

static tg_status ref_time(tg_tensor *const *in, const tg_tensor *dhs, tg_tensor *const *g, void *ctx) {
    layer *l = ctx;
    tg_tensor *hs = tg_tensor_new(tg_tensor_dtype(dhs), 3, tg_tensor_shape(dhs));
    if (!hs) return tg_last_status();
    tg_status s = ref_of(l->kind, in[0], l->h0, l->c0, in[1], in[2], in[3], dhs, hs, NULL, g, NULL, NULL);
    tg_tensor_free(hs);
    return s;
}

/* A Time layer's case: params {xs, Wx, Wh, b}, so the check covers every one. state: 0 none, 1 h0 (and
   c0 for the LSTM) by set_state, 2 h0 alone (the LSTM's c0 then zeros: set_state(h, NULL)). */
typedef struct {
    tg_tensor *in[4];
    layer l;
} tcase;

static void tcase_make(tcase *k, kind kd, tg_dtype dt, int64_t N, int64_t T, int64_t D, int64_t H, int state,
                       uint64_t seed) {
    k->in[0] = TT_RAND(dt, 1, seed, N, T, D);
    k->in[1] = TT_RAND(dt, 1, seed + 1, D, kd * H);
    k->in[2] = TT_RAND(dt, 1, seed + 2, H, kd * H);
    k->in[3] = TT_RAND(dt, 1, seed + 3, kd * H);
    k->l = layer_new(kd, k->in[1], k->in[2], k->in[3], 0);
    k->l.h0 = state ? TT_RAND(dt, 0, seed + 4, N, H) : NULL;
    k->l.c0 = state == 1 && kd == LSTM ? TT_RAND(dt, 0, seed + 5, N, H) : NULL;
}

static void tcase_free(tcase *k) {
    layer_free(&k->l);
    for (int i = 0; i < 4; i++) tg_tensor_free(k->in[i]);
    tg_tensor_free(k->l.h0), tg_tensor_free(k->l.c0);
}

/* ---- three-way agreement, f64: tape, reference, finite differences ---- */

static void three_way(kind kd, int64_t N, int64_t T, int64_t D, int64_t H, int state) {
    tcase k;
    tcase_make(&k, kd, TG_F64, N, T, D, H, state, 100 + (uint64_t)(N * 1000 + T * 100 + D * 10 + H));
    char label[96];
    snprintf(label, sizeof label, "Time%s N=%lld T=%lld D=%lld H=%lld state=%s", kind_name(kd), (long long)N,
             (long long)T, (long long)D, (long long)H, state == 0 ? "zeros" : state == 1 ? "set" : "h only");
    tt_check3(f_time, ref_time, &k.l, k.in, 4, label);
    tcase_free(&k);
}

Test(lstm_time, three_way_N1_T1) { three_way(LSTM, 1, 1, 3, 2, 0); }
Test(lstm_time, three_way_N1_T4_state) { three_way(LSTM, 1, 4, 3, 2, 1); }
Test(lstm_time, three_way_N3_T1_state) { three_way(LSTM, 3, 1, 2, 4, 1); }
Test(lstm_time, three_way_N3_T4_zero_state) { three_way(LSTM, 3, 4, 4, 3, 0); }
Test(lstm_time, three_way_N2_T5_h_only_state) { three_way(LSTM, 2, 5, 2, 3, 2); }
Test(gru_time, three_way_N1_T1) { three_way(GRU, 1, 1, 3, 2, 0); }
Test(gru_time, three_way_N1_T4_state) { three_way(GRU, 1, 4, 3, 2, 1); }
Test(gru_time, three_way_N3_T1_state) { three_way(GRU, 3, 1, 2, 4, 1); }
Test(gru_time, three_way_N3_T4_zero_state) { three_way(GRU, 3, 4, 4, 3, 0); }
Test(gru_time, three_way_N2_T5_state) { three_way(GRU, 2, 5, 2, 3, 1); }

/* ---- the cells ---- */

/* (N,C) as (N,1,C): the same elements, one step. */
static tg_tensor *one_step(const tg_tensor *t) {
    const int64_t *s = tg_tensor_shape(t);
    tg_tensor *r = tg_tensor_from(tg_tensor_dtype(t), 3, (int64_t[]){s[0], 1, s[1]}, tg_tensor_data((tg_tensor *)t));
    cr_assert(r);
    return r;
}

/* LSTM cell: inputs {x, h_prev, c_prev, Wx, Wh, b} -> h_next. */
static tg_tensor *f_lstm_cell(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    tg_tensor *c;
    return tg_lstm_cell(tape, in[0], in[1], in[2], in[3], in[4], in[5], &c);
}
/* ... -> [h_next c_next] (N,2H): c_next's gradient too (finite differences only: the reference's
   loss reads no c). */
static tg_tensor *f_lstm_cell_hc(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    tg_tensor *hc[2];
    hc[0] = tg_lstm_cell(tape, in[0], in[1], in[2], in[3], in[4], in[5], &hc[1]);
    return hc[0] ? tg_concat(tape, hc, 2, -1) : NULL;
}
/* GRU cell: inputs {x, h_prev, Wx, Wh, b} -> h_next. */
static tg_tensor *f_gru_cell(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_gru_cell(tape, in[0], in[1], in[2], in[3], in[4]);
}

/* The cells' reference: the Time reference with T = 1. ctx is the kind; g follows the inputs. */
static tg_status ref_cell(tg_tensor *const *in, const tg_tensor *dh, tg_tensor *const *g, void *ctx) {
    kind kd = *(const kind *)ctx;
    int s = kd == LSTM; /* the LSTM has c_prev at 2: the weights are one further on */
    tg_tensor *xs = one_step(in[0]), *dhs = one_step(dh), *hs = zeros_like(dhs), *dxs = zeros_like(xs);
    tg_tensor *gw[4] = {g[0] ? dxs : NULL, g[2 + s], g[3 + s], g[4 + s]};
    tg_status st = ref_of(kd, xs, in[1], s ? in[2] : NULL, in[2 + s], in[3 + s], in[4 + s], dhs, hs, NULL, gw, g[1],
                          s ? g[2] : NULL);
    if (!st && g[0]) memcpy(tg_tensor_data(g[0]), tg_tensor_data(dxs), (size_t)tg_tensor_numel(dxs) * sizeof(double));
    tg_tensor_free(xs), tg_tensor_free(dhs), tg_tensor_free(hs), tg_tensor_free(dxs);
    return st;
}

/* Inputs of a cell: {x, h_prev, (c_prev,) Wx, Wh, b}, all params; returns their count. */
static int cell_inputs(kind kd, tg_tensor **in, int64_t N, int64_t D, int64_t H, uint64_t seed) {
    int n = 0;
    in[n++] = TT_RAND(TG_F64, 1, seed, N, D);
    in[n++] = TT_RAND(TG_F64, 1, seed + 1, N, H);
    if (kd == LSTM) in[n++] = TT_RAND(TG_F64, 1, seed + 2, N, H);
    in[n++] = TT_RAND(TG_F64, 1, seed + 3, D, kd * H);
    in[n++] = TT_RAND(TG_F64, 1, seed + 4, H, kd * H);
    in[n++] = TT_RAND(TG_F64, 1, seed + 5, kd * H);
    return n;
}

static void cell_three_way(kind kd, int64_t N, int64_t D, int64_t H) {
    tg_tensor *in[6];
    int n = cell_inputs(kd, in, N, D, H, 1);
    char label[64];
    snprintf(label, sizeof label, "%s cell N=%lld D=%lld H=%lld", kind_name(kd), (long long)N, (long long)D,
             (long long)H);
    tt_check3(kd == LSTM ? f_lstm_cell : f_gru_cell, ref_cell, &kd, in, n, label);
    if (kd == LSTM) {
        tg_gradcheck_report r;
        cr_expect(tg_gradcheck(f_lstm_cell_hc, NULL, in, n, NULL, &r), "%s, [h c]: %s", label, r.message);
    }
    for (int i = 0; i < n; i++) tg_tensor_free(in[i]);
}

Test(lstm_cell, three_way_N1) { cell_three_way(LSTM, 1, 3, 2); }
Test(lstm_cell, three_way_N4) { cell_three_way(LSTM, 4, 2, 5); }
Test(gru_cell, three_way_N1) { cell_three_way(GRU, 1, 3, 2); }
Test(gru_cell, three_way_N4) { cell_three_way(GRU, 4, 2, 5); }

/* Cells chained by hand over T steps, h0 (and c0) inputs: checks the reference's dh0 (and dc0) against
   the tape and finite differences, and the cell's c_next through the next step. Inputs {xs, h0, (c0,)
   Wx, Wh, b}. */
static tg_tensor *f_chain(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    kind kd = *(const kind *)ctx;
    int s = kd == LSTM;
    int64_t T = tg_tensor_shape(in[0])[1];
    tg_tensor *h = in[1], *c = s ? in[2] : NULL, *steps[16];
    for (int64_t t = 0; t < T; t++) {
        tg_tensor *x = tg_select(tape, in[0], 1, t);
        h = s ? tg_lstm_cell(tape, x, h, c, in[3], in[4], in[5], &c) : tg_gru_cell(tape, x, h, in[2], in[3], in[4]);
        steps[t] = h;
    }
    return h ? tg_stack(tape, steps, (int)T, 1) : NULL;
}

static tg_status ref_chain(tg_tensor *const *in, const tg_tensor *dhs, tg_tensor *const *g, void *ctx) {
    kind kd = *(const kind *)ctx;
    int s = kd == LSTM;
    tg_tensor *hs = zeros_like(dhs);
    tg_tensor *gw[4] = {g[0], g[2 + s], g[3 + s], g[4 + s]};
    tg_status st = ref_of(kd, in[0], in[1], s ? in[2] : NULL, in[2 + s], in[3 + s], in[4 + s], dhs, hs, NULL, gw,
                          g[1], s ? g[2] : NULL);
    tg_tensor_free(hs);
    return st;
}

static void chain_three_way(kind kd) {
    int64_t N = 2, T = 4, D = 3, H = 5;
    tg_tensor *in[6];
    int n = 0;
    in[n++] = TT_RAND(TG_F64, 1, 11, N, T, D);
    in[n++] = TT_RAND(TG_F64, 1, 12, N, H);
    if (kd == LSTM) in[n++] = TT_RAND(TG_F64, 1, 13, N, H);
    in[n++] = TT_RAND(TG_F64, 1, 14, D, kd * H);
    in[n++] = TT_RAND(TG_F64, 1, 15, H, kd * H);
    in[n++] = TT_RAND(TG_F64, 1, 16, kd * H);
    tt_check3(f_chain, ref_chain, &kd, in, n, kd == LSTM ? "LSTM cells chained, h0 and c0 inputs"
                                                          : "GRU cells chained, h0 an input");
    for (int i = 0; i < n; i++) tg_tensor_free(in[i]);
}

Test(lstm_time, reference_dh0_dc0_three_way) { chain_three_way(LSTM); }
Test(gru_time, reference_dh0_three_way) { chain_three_way(GRU); }

/* ---- every node on its own ---- */

/* The per-node check on the recordings of a Time layer (with and without a state: the add of the
   state, the linear, each select, slice, matmul, sigmoid, tanh, mul, add, sub and the stack) and of a
   cell, in f64 and in f32: no false failures. */
static void nodes_pass(kind kd) {
    for (int d = 0; d < 2; d++) {
        tg_dtype dt = d ? TG_F32 : TG_F64;
        tg_gradcheck_opts o = d ? tg_gradcheck_defaults_f32() : tg_gradcheck_defaults();
        tg_gradcheck_report r;
        for (int state = 0; state < 2; state++) {
            tcase k;
            tcase_make(&k, kd, dt, 2, 4, 3, 5, state, 40 + (uint64_t)state);
            tg_tape *tape = tg_tape_new();
            tg_tensor *hs = f_time(tape, k.in, &k.l);
            cr_assert(hs, "%s", tg_last_error());
            cr_expect(tg_gradcheck_nodes(tape, hs, &o, &r), "%s %s state %d: %s", kind_name(kd), d ? "f32" : "f64",
                      state, r.message);
            cr_expect(strstr(r.message, "passed"), "%s", r.message);
            tg_tape_free(tape);
            tcase_free(&k);
        }
        tg_tensor *in[6];
        int n = cell_inputs(kd, in, 3, 2, 4, 50);
        tg_tensor *in_dt[6];
        for (int i = 0; i < n; i++) { /* the same values in dt */
            in_dt[i] = tg_param_new(dt, tg_tensor_ndim(in[i]), tg_tensor_shape(in[i]));
            for (int64_t j = 0; j < tg_tensor_numel(in[i]); j++) tg_tensor_set(in_dt[i], j, tg_tensor_get(in[i], j));
        }
        tg_tape *tape = tg_tape_new();
        tg_tensor *h = kd == LSTM ? f_lstm_cell_hc(tape, in_dt, NULL) : f_gru_cell(tape, in_dt, NULL);
        cr_assert(h, "%s", tg_last_error());
        cr_expect(tg_gradcheck_nodes(tape, h, &o, &r), "%s cell %s: %s", kind_name(kd), d ? "f32" : "f64", r.message);
        tg_tape_free(tape);
        for (int i = 0; i < n; i++) tg_tensor_free(in[i]), tg_tensor_free(in_dt[i]);
    }
}

Test(lstm_time, every_node_passes_the_per_node_check) { nodes_pass(LSTM); }
Test(gru_time, every_node_passes_the_per_node_check) { nodes_pass(GRU); }

/* What a step keeps, in (N,T,H) blocks: per step those that backward reads (the LSTM's gates f, g, i, o,
   c, tanh(c) and h: 7; the GRU's [z r] (2), z, r, r h_prev, h~, h~ - h_prev and h: 8), the input
   projection (G blocks) and hs, then the gradients backward adds up: about 15.5 here. Without giving
   back each step's unsaved intermediates (A and its four slices, the selected projection, the products
   before their sum; the GRU's pre-activations) an LSTM step peaked at 33.4 blocks and a GRU step at 28.5. */
static void keeps_only_what_backward_needs(kind kd, double most) {
    const int64_t N = 8, T = 32, D = 4, H = 16, nth = N * T * H * (int64_t)sizeof(double);
    tcase k;
    tcase_make(&k, kd, TG_F64, N, T, D, H, 0, 17);
    tg_tape *tape = tg_tape_new();
    tg_tensor *hs = f_time(tape, k.in, &k.l);
    cr_assert(hs, "%s", tg_last_error());
    tg_tensor *dhs = tt_rand(TG_F64, 0, 3, 3, tg_tensor_shape(hs));
    cr_assert_eq(tg_backward(tape, hs, dhs), TG_OK, "%s", tg_last_error());
    double blocks = (double)tg_tape_memory(tape) / (double)nth;
    cr_expect(blocks <= most, "%s: peak %.2f (N,T,H) blocks", kind_name(kd), blocks);
    tg_tensor_free(dhs);
    tg_tape_free(tape);
    tcase_free(&k);
}

Test(lstm_time, a_step_keeps_only_what_backward_needs) { keeps_only_what_backward_needs(LSTM, 17); }
Test(gru_time, a_step_keeps_only_what_backward_needs) { keeps_only_what_backward_needs(GRU, 17); }

/* ---- the forward, transcribed literally from the book ----
 * Tape and reference could share a wrong gate order, or both put the GRU's reset gate after Whh, and
 * still agree with each other and with finite differences. This transcription reads each weight
 * element by its index, as the book's equations name them, and pins the forward of both. Each test
 * also shows that the neighbouring mistake (PyTorch's order i, f, g, o; PyTorch's r * (h Whh)) gives
 * other values, so it would be caught. */

/* Column col of x_t @ Wx, row n: sum_d xs[n, t, d] Wx[d, col]. */
static double lit_xw(const tg_tensor *xs, int64_t n, int64_t t, const tg_tensor *Wx, int64_t col) {
    const int64_t *s = tg_tensor_shape(xs);
    double a = 0;
    for (int64_t d = 0; d < s[2]; d++)
        a += tg_tensor_get(xs, (n * s[1] + t) * s[2] + d) * tg_tensor_get(Wx, d * tg_tensor_shape(Wx)[1] + col);
    return a;
}
/* Column col of h @ Wh for one row h (H,). */
static double lit_hw(const double *h, const tg_tensor *Wh, int64_t col) {
    double a = 0;
    for (int64_t k = 0; k < tg_tensor_shape(Wh)[0]; k++)
        a += h[k] * tg_tensor_get(Wh, k * tg_tensor_shape(Wh)[1] + col);
    return a;
}
static double lit_sigmoid(double a) { return 1 / (1 + exp(-a)); }

/* blk[q]: which H-column block of A holds gate q of (f, g, i, o); the book's is {0, 1, 2, 3}. hs and cs
   (N*T*H; cs may be NULL) receive every step's h and c. */
static void lit_lstm(const int blk[4], const tg_tensor *xs, const tg_tensor *Wx, const tg_tensor *Wh,
                     const tg_tensor *b, const tg_tensor *h0, const tg_tensor *c0, double *hs, double *cs) {
    int64_t N = tg_tensor_shape(xs)[0], T = tg_tensor_shape(xs)[1], H = tg_tensor_shape(Wh)[0];
    /* copied whole below: the rows and columns past N and H stay defined */
    double h[8][8] = {{0}}, c[8][8] = {{0}}, hn[8][8] = {{0}}, cn[8][8] = {{0}};
    cr_assert(N <= 8 && H <= 8);
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < H; j++) {
            h[n][j] = h0 ? tg_tensor_get(h0, n * H + j) : 0;
            c[n][j] = c0 ? tg_tensor_get(c0, n * H + j) : 0;
        }
    for (int64_t t = 0; t < T; t++) {
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < H; j++) {
                double a[4];
                for (int q = 0; q < 4; q++) {
                    int64_t col = blk[q] * H + j;
                    a[q] = lit_xw(xs, n, t, Wx, col) + lit_hw(h[n], Wh, col) + tg_tensor_get(b, col);
                }
                double f = lit_sigmoid(a[0]), g = tanh(a[1]), i = lit_sigmoid(a[2]), o = lit_sigmoid(a[3]);
                cn[n][j] = f * c[n][j] + g * i;
                hn[n][j] = o * tanh(cn[n][j]);
            }
        memcpy(h, hn, sizeof h), memcpy(c, cn, sizeof c);
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < H; j++) {
                hs[(n * T + t) * H + j] = h[n][j];
                if (cs) cs[(n * T + t) * H + j] = c[n][j];
            }
    }
}

/* reset_after 0: the book's h~ = tanh(x Wxh + (r * h) Whh + bh); 1: PyTorch's placement, r * (h Whh). */
static void lit_gru(int reset_after, const tg_tensor *xs, const tg_tensor *Wx, const tg_tensor *Wh,
                    const tg_tensor *b, const tg_tensor *h0, double *hs) {
    int64_t N = tg_tensor_shape(xs)[0], T = tg_tensor_shape(xs)[1], H = tg_tensor_shape(Wh)[0];
    double h[8][8] = {{0}}, hn[8][8] = {{0}};
    cr_assert(N <= 8 && H <= 8);
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < H; j++) h[n][j] = h0 ? tg_tensor_get(h0, n * H + j) : 0;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t n = 0; n < N; n++) {
            double z[8], r[8], rh[8];
            for (int64_t j = 0; j < H; j++) {
                z[j] = lit_sigmoid(lit_xw(xs, n, t, Wx, j) + lit_hw(h[n], Wh, j) + tg_tensor_get(b, j));
                r[j] = lit_sigmoid(lit_xw(xs, n, t, Wx, H + j) + lit_hw(h[n], Wh, H + j) + tg_tensor_get(b, H + j));
                rh[j] = r[j] * h[n][j];
            }
            for (int64_t j = 0; j < H; j++) {
                int64_t col = 2 * H + j;
                double rec = reset_after ? r[j] * lit_hw(h[n], Wh, col) : lit_hw(rh, Wh, col);
                double h_hat = tanh(lit_xw(xs, n, t, Wx, col) + rec + tg_tensor_get(b, col));
                hn[n][j] = (1 - z[j]) * h[n][j] + z[j] * h_hat;
            }
        }
        memcpy(h, hn, sizeof h);
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < H; j++) hs[(n * T + t) * H + j] = h[n][j];
    }
}

static double max_diff(const tg_tensor *t, const double *v) {
    double m = 0;
    for (int64_t i = 0; i < tg_tensor_numel(t); i++) m = fmax(m, fabs(tg_tensor_get(t, i) - v[i]));
    return m;
}

/* The layer's hs and the reference's against the book's transcription (want), and against the
   neighbouring mistake (other), which must differ. */
static void pin_forward(tcase *k, const double *want, const double *other, const char *mistake) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *hs = f_time(tape, k->in, &k->l), *rhs;
    cr_assert(hs, "%s", tg_last_error());
    rhs = zeros_like(hs);
    cr_assert_eq(ref_of(k->l.kind, k->in[0], k->l.h0, k->l.c0, k->in[1], k->in[2], k->in[3], NULL, rhs, NULL, NULL,
                        NULL, NULL),
                 TG_OK, "%s", tg_last_error());
    cr_expect_leq(max_diff(hs, want), 1e-12, "%s: the layer's hs differ from the book's equations by %.3g",
                  kind_name(k->l.kind), max_diff(hs, want));
    cr_expect_leq(max_diff(rhs, want), 1e-12, "%s: the reference's hs differ from the book's equations by %.3g",
                  kind_name(k->l.kind), max_diff(rhs, want));
    cr_expect_gt(max_diff(hs, other), 1e-3, "%s would pass: this test cannot tell it from the book's form", mistake);
    tg_tape_free(tape);
    tg_tensor_free(rhs);
}

Test(lstm_time, forward_is_the_books_gate_order_f_g_i_o) {
    tcase k;
    tcase_make(&k, LSTM, TG_F64, 2, 3, 3, 2, 1, 60);
    double want[12], other[12];
    lit_lstm((const int[]){0, 1, 2, 3}, k.in[0], k.in[1], k.in[2], k.in[3], k.l.h0, k.l.c0, want, NULL);
    /* PyTorch's blocks i, f, g, o: f in block 1, g in 2, i in 0 */
    lit_lstm((const int[]){1, 2, 0, 3}, k.in[0], k.in[1], k.in[2], k.in[3], k.l.h0, k.l.c0, other, NULL);
    pin_forward(&k, want, other, "PyTorch's gate order i, f, g, o");
    tcase_free(&k);
}

Test(gru_time, forward_is_the_books_reset_before_Whh) {
    tcase k;
    tcase_make(&k, GRU, TG_F64, 2, 3, 3, 2, 1, 61);
    double want[12], other[12];
    lit_gru(0, k.in[0], k.in[1], k.in[2], k.in[3], k.l.h0, want);
    lit_gru(1, k.in[0], k.in[1], k.in[2], k.in[3], k.l.h0, other);
    pin_forward(&k, want, other, "the reset gate after Whh");
    tcase_free(&k);
}

/* The cells' forward is the book's equations for one step from h_prev (and c_prev), c_next too. */
static void cell_forward_is_the_books(kind kd) {
    tcase k;
    tcase_make(&k, kd, TG_F64, 2, 1, 3, 2, 1, 62);
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = tg_select(tape, k.in[0], 1, 0), *c = NULL;
    tg_tensor *h = kd == LSTM ? tg_lstm_cell(tape, x, k.l.h0, k.l.c0, k.in[1], k.in[2], k.in[3], &c)
                              : tg_gru_cell(tape, x, k.l.h0, k.in[1], k.in[2], k.in[3]);
    cr_assert(h && (c || kd == GRU), "%s", tg_last_error());
    double want_h[4], want_c[4];
    if (kd == LSTM)
        lit_lstm((const int[]){0, 1, 2, 3}, k.in[0], k.in[1], k.in[2], k.in[3], k.l.h0, k.l.c0, want_h, want_c);
    else lit_gru(0, k.in[0], k.in[1], k.in[2], k.in[3], k.l.h0, want_h);
    cr_expect_leq(max_diff(h, want_h), 1e-12, "%s cell h_next: %.3g", kind_name(kd), max_diff(h, want_h));
    if (kd == LSTM) cr_expect_leq(max_diff(c, want_c), 1e-12, "c_next: %.3g", max_diff(c, want_c));
    tg_tape_free(tape);
    tcase_free(&k);
}

Test(lstm_cell, forward_is_the_books_equations) { cell_forward_is_the_books(LSTM); }
Test(gru_cell, forward_is_the_books_equations) { cell_forward_is_the_books(GRU); }

/* ---- dh, dc, f32, state ---- */

/* One forward and backward of dhs through k's layer (state by set_state), against the reference:
   hs, every parameter's gradient, dh and dc, within tol. */
static void tape_vs_ref(kind kd, tg_dtype dt, double tol) {
    tcase k;
    tcase_make(&k, kd, dt, 3, 5, 4, 2, 1, 77);
    tg_tensor *dhs = TT_RAND(dt, 0, 78, 3, 5, 2), *rhs = zeros_like(dhs), *dh0 = nh_new(dt, 3, 2),
              *dc0 = nh_new(dt, 3, 2), *g[4];
    for (int i = 0; i < 4; i++) g[i] = zeros_like(k.in[i]);
    cr_assert_eq(ref_of(kd, k.in[0], k.l.h0, k.l.c0, k.in[1], k.in[2], k.in[3], dhs, rhs, NULL, g, dh0, dc0), TG_OK,
                 "%s", tg_last_error());
    tg_tape *tape = tg_tape_new();
    tg_tensor *hs = f_time(tape, k.in, &k.l);
    cr_assert(hs, "%s", tg_last_error());
    cr_assert_eq(tg_backward(tape, hs, dhs), TG_OK, "%s", tg_last_error());
    cr_expect_leq(tt_max_rel(hs, 0, rhs), tol, "hs: %.3g", tt_max_rel(hs, 0, rhs));
    static const char *const names[4] = {"dxs", "dWx", "dWh", "db"};
    for (int i = 0; i < 4; i++)
        cr_expect_leq(tt_max_rel(k.in[i], 1, g[i]), tol, "%s %s: %.3g", kind_name(kd), names[i],
                      tt_max_rel(k.in[i], 1, g[i]));
    tg_tensor *dh = layer_dh(&k.l);
    cr_assert(dh, "%s", tg_last_error());
    cr_expect(tg_tensor_ndim(dh) == 2 && tg_tensor_shape(dh)[0] == 3 && tg_tensor_shape(dh)[1] == 2);
    cr_expect_leq(tt_max_rel(dh, 0, dh0), tol, "%s dh: %.3g", kind_name(kd), tt_max_rel(dh, 0, dh0));
    if (kd == LSTM) {
        tg_tensor *dc = tg_time_lstm_dc(k.l.lstm);
        cr_assert(dc, "%s", tg_last_error());
        cr_expect_leq(tt_max_rel(dc, 0, dc0), tol, "dc: %.3g", tt_max_rel(dc, 0, dc0));
        cr_expect_gt(tt_max_rel(dc, 0, dh0), 1e-3, "dc is dh");
    }
    tg_tape_free(tape);
    for (int i = 0; i < 4; i++) tg_tensor_free(g[i]);
    tg_tensor_free(dhs), tg_tensor_free(rhs), tg_tensor_free(dh0), tg_tensor_free(dc0);
    tcase_free(&k);
}

Test(lstm_time, dh_dc_equal_reference_f64) { tape_vs_ref(LSTM, TG_F64, 1e-10); }
Test(lstm_time, f32_tape_vs_reference) { tape_vs_ref(LSTM, TG_F32, 1e-4); }
Test(gru_time, dh_equals_reference_f64) { tape_vs_ref(GRU, TG_F64, 1e-10); }
Test(gru_time, f32_tape_vs_reference) { tape_vs_ref(GRU, TG_F32, 1e-4); }

/* From zeros, h0 and c0 still have gradients; a new forward starts new ones: zeros until its backward. */
static void d_state_from_zeros(kind kd) {
    tcase k;
    tcase_make(&k, kd, TG_F64, 2, 3, 3, 4, 0, 5);
    tg_tape *tape = tg_tape_new();
    cr_assert_eq(tg_backward(tape, tg_sum(tape, f_time(tape, k.in, &k.l)), NULL), TG_OK, "%s", tg_last_error());
    for (int s = 0; s < (kd == LSTM ? 2 : 1); s++) {
        tg_tensor *d = s ? tg_time_lstm_dc(k.l.lstm) : layer_dh(&k.l);
        cr_assert(d);
        double norm = 0;
        for (int64_t i = 0; i < 8; i++) norm += fabs(tg_tensor_get(d, i));
        cr_expect_gt(norm, 1e-3, "%s: the initial %s got no gradient", kind_name(kd), s ? "c" : "h");
    }
    tg_tape_reset(tape);
    cr_assert(f_time(tape, k.in, &k.l));
    for (int s = 0; s < (kd == LSTM ? 2 : 1); s++) {
        tg_tensor *d = s ? tg_time_lstm_dc(k.l.lstm) : layer_dh(&k.l);
        for (int64_t i = 0; i < 8; i++) cr_expect_eq(tg_tensor_get(d, i), 0.0);
    }
    tg_tape_free(tape);
    tcase_free(&k);
}

Test(lstm_time, dh_dc_from_zero_state) { d_state_from_zeros(LSTM); }
Test(gru_time, dh_from_zero_state) { d_state_from_zeros(GRU); }

/* A stateful layer over two chunks carries h (and c); the second chunk's hs, gradients, dh and dc are
   those of a fresh layer handed that state with set_state (truncated BPTT: nothing crosses the chunk
   boundary), and the reference's from that state. The state comes from the reference's chunk 1, so the
   comparisons allow roundoff. */
static void stateful_two_chunks(kind kd) {
    int64_t N = 2, T = 3, D = 3, H = 4;
    tg_tensor *Wx = TT_RAND(TG_F64, 1, 1, D, kd * H), *Wh = TT_RAND(TG_F64, 1, 2, H, kd * H),
              *b = TT_RAND(TG_F64, 1, 3, kd * H), *P[3] = {Wx, Wh, b};
    tg_tensor *x1 = TT_RAND(TG_F64, 0, 4, N, T, D), *x2 = TT_RAND(TG_F64, 0, 5, N, T, D);
    tg_tensor *dhs = TT_RAND(TG_F64, 0, 6, N, T, H);
    /* chunk 1's last h and c, by the reference */
    tg_tensor *hs1 = zeros_like(dhs), *cs1 = zeros_like(dhs), *hT = nh_new(TG_F64, N, H), *cT = nh_new(TG_F64, N, H);
    cr_assert_eq(ref_of(kd, x1, NULL, NULL, Wx, Wh, b, NULL, hs1, kd == LSTM ? cs1 : NULL, NULL, NULL, NULL), TG_OK);
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < H; j++) {
            tg_tensor_set(hT, n * H + j, tg_tensor_get(hs1, (n * T + T - 1) * H + j));
            tg_tensor_set(cT, n * H + j, tg_tensor_get(cs1, (n * T + T - 1) * H + j));
        }
    /* chunk 2 from that state, by the reference */
    tg_tensor *rhs = zeros_like(dhs), *g[4] = {NULL, zeros_like(Wx), zeros_like(Wh), zeros_like(b)};
    tg_tensor *dh0 = nh_new(TG_F64, N, H), *dc0 = nh_new(TG_F64, N, H);
    cr_assert_eq(ref_of(kd, x2, hT, cT, Wx, Wh, b, dhs, rhs, NULL, g, dh0, dc0), TG_OK);

    layer s = layer_new(kd, Wx, Wh, b, 1), fresh = layer_new(kd, Wx, Wh, b, 0);
    cr_assert_eq(layer_set_state(&fresh, hT, kd == LSTM ? cT : NULL), TG_OK);
    layer *both[2] = {&s, &fresh};
    tg_tape *tape = tg_tape_new();
    cr_assert(layer_forward(tape, &s, x1)); /* chunk 1, no backward: it must not matter */
    tg_tape_reset(tape);
    for (int l = 0; l < 2; l++) {
        for (int i = 0; i < 3; i++) tg_zero_grad(P[i]);
        tg_tensor *hs = layer_forward(tape, both[l], x2);
        cr_assert(hs, "%s", tg_last_error());
        cr_assert_eq(tg_backward(tape, hs, dhs), TG_OK);
        const char *who = l ? "fresh layer with set_state" : "stateful layer's chunk 2";
        cr_expect_leq(tt_max_rel(hs, 0, rhs), 1e-10, "%s %s: hs %.3g", kind_name(kd), who, tt_max_rel(hs, 0, rhs));
        for (int i = 0; i < 3; i++)
            cr_expect_leq(tt_max_rel(P[i], 1, g[i + 1]), 1e-10, "%s %s: param %d", kind_name(kd), who, i);
        cr_expect_leq(tt_max_rel(layer_dh(both[l]), 0, dh0), 1e-10, "%s %s: dh", kind_name(kd), who);
        if (kd == LSTM) cr_expect_leq(tt_max_rel(tg_time_lstm_dc(both[l]->lstm), 0, dc0), 1e-10, "%s: dc", who);
        tg_tape_reset(tape);
    }
    /* and the state did matter: after reset_state, chunk 2 gives other values */
    layer_reset(&s);
    tg_tensor *hs = layer_forward(tape, &s, x2);
    cr_assert(hs);
    cr_expect_gt(tt_max_rel(hs, 0, rhs), 1e-3, "reset_state did not forget the state");

    tg_tape_free(tape);
    layer_free(&s), layer_free(&fresh);
    for (int i = 1; i < 4; i++) tg_tensor_free(g[i]);
    tg_tensor *t[13] = {Wx, Wh, b, x1, x2, dhs, hs1, cs1, hT, cT, rhs, dh0, dc0};
    for (int i = 0; i < 13; i++) tg_tensor_free(t[i]);
}

Test(lstm_time, stateful_two_chunks_equal_fresh_with_set_state) { stateful_two_chunks(LSTM); }
Test(gru_time, stateful_two_chunks_equal_fresh_with_set_state) { stateful_two_chunks(GRU); }

/* The LSTM carries c, not only h: a fresh layer given chunk 1's h but zeros for c (set_state(h, NULL))
   differs from the stateful layer's chunk 2; given both, it agrees to the bit. */
Test(lstm_time, stateful_carries_c) {
    int64_t N = 2, T = 3, D = 3, H = 2;
    tg_tensor *Wx = TT_RAND(TG_F64, 1, 1, D, 4 * H), *Wh = TT_RAND(TG_F64, 1, 2, H, 4 * H),
              *b = TT_RAND(TG_F64, 1, 3, 4 * H), *x1 = TT_RAND(TG_F64, 0, 4, N, T, D),
              *x2 = TT_RAND(TG_F64, 0, 5, N, T, D);
    tg_tensor *hs1 = tg_tensor_new(TG_F64, 3, (int64_t[]){N, T, H}), *cs1 = zeros_like(hs1);
    tg_tensor *hT = nh_new(TG_F64, N, H), *cT = nh_new(TG_F64, N, H), *zero = nh_new(TG_F64, N, H);
    cr_assert_eq(tg_time_lstm_ref(x1, NULL, NULL, Wx, Wh, b, NULL, hs1, cs1, NULL, NULL, NULL, NULL, NULL, NULL),
                 TG_OK);
    for (int64_t i = 0; i < N * H; i++) {
        int64_t n = i / H, j = i % H;
        tg_tensor_set(hT, i, tg_tensor_get(hs1, (n * T + T - 1) * H + j));
        tg_tensor_set(cT, i, tg_tensor_get(cs1, (n * T + T - 1) * H + j));
    }
    tg_time_lstm *s = tg_time_lstm_new(Wx, Wh, b, 1), *f = tg_time_lstm_new(Wx, Wh, b, 0);
    tg_tape *tape = tg_tape_new();
    cr_assert(tg_time_lstm_forward(tape, s, x1));
    tg_tensor *want = tg_time_lstm_forward(tape, s, x2);
    cr_assert_eq(tg_time_lstm_set_state(f, hT, NULL), TG_OK);
    tg_tensor *h_only = tg_time_lstm_forward(tape, f, x2);
    cr_assert_eq(tg_time_lstm_set_state(f, hT, zero), TG_OK);
    tg_tensor *h_zero = tg_time_lstm_forward(tape, f, x2);
    cr_assert_eq(tg_time_lstm_set_state(f, hT, cT), TG_OK);
    tg_tensor *h_c = tg_time_lstm_forward(tape, f, x2);
    cr_assert(want && h_only && h_zero && h_c, "%s", tg_last_error());
    cr_expect_eq(tg_tensor_hash(h_only), tg_tensor_hash(h_zero), "set_state(h, NULL) is not c = 0");
    cr_expect_gt(tt_max_rel(h_only, 0, want), 1e-3, "c was not carried: h alone gives chunk 2");
    cr_expect_leq(tt_max_rel(h_c, 0, want), 1e-12, "h and c do not give chunk 2: %.3g", tt_max_rel(h_c, 0, want));
    tg_tape_free(tape);
    tg_time_lstm_free(s), tg_time_lstm_free(f);
    tg_tensor *t[10] = {Wx, Wh, b, x1, x2, hs1, cs1, hT, cT, zero};
    for (int i = 0; i < 10; i++) tg_tensor_free(t[i]);
}

/* A stateless layer never changes its state: set_state's state starts each forward until reset_state.
   The state is a copy: rewriting the caller's h, or set_state of another N, between a forward and its
   backward leaves that recording's gradients intact (under valgrind a dangling pointer would show). */
static void stateless_and_copied(kind kd) {
    tcase k;
    tcase_make(&k, kd, TG_F64, 2, 3, 3, 2, 1, 9);
    tg_tensor *dhs = TT_RAND(TG_F64, 0, 10, 2, 3, 2), *h3 = TT_RAND(TG_F64, 0, 11, 3, 2), *g[4];
    tg_tensor *rhs = zeros_like(dhs), *dh0 = nh_new(TG_F64, 2, 2);
    for (int i = 0; i < 4; i++) g[i] = zeros_like(k.in[i]);
    cr_assert_eq(ref_of(kd, k.in[0], k.l.h0, k.l.c0, k.in[1], k.in[2], k.in[3], dhs, rhs, NULL, g, dh0, NULL), TG_OK);
    tg_tape *tape = tg_tape_new();
    uint64_t zero_start = tg_tensor_hash(layer_forward(tape, &k.l, k.in[0]));
    cr_assert_eq(layer_set_state(&k.l, k.l.h0, k.l.c0), TG_OK);
    uint64_t from_h0 = tg_tensor_hash(layer_forward(tape, &k.l, k.in[0]));
    cr_expect_neq(from_h0, zero_start);
    cr_expect_eq(tg_tensor_hash(layer_forward(tape, &k.l, k.in[0])), from_h0);
    layer_reset(&k.l);
    cr_expect_eq(tg_tensor_hash(layer_forward(tape, &k.l, k.in[0])), zero_start);
    tg_tape_reset(tape);

    for (int i = 0; i < 4; i++) tg_zero_grad(k.in[i]);
    tg_tensor *hs = f_time(tape, k.in, &k.l);
    cr_assert(hs);
    ((double *)tg_tensor_data(k.l.h0))[0] += 1.0;            /* the caller's copy */
    cr_assert_eq(layer_set_state(&k.l, h3, h3), TG_OK);      /* and the layer's, with another N */
    cr_assert_eq(tg_backward(tape, hs, dhs), TG_OK, "%s", tg_last_error());
    cr_expect_leq(tt_max_rel(k.in[2], 1, g[2]), 1e-10);
    cr_expect_leq(tt_max_rel(layer_dh(&k.l), 0, dh0), 1e-10);
    tg_tape_free(tape);
    for (int i = 0; i < 4; i++) tg_tensor_free(g[i]);
    tg_tensor_free(dhs), tg_tensor_free(h3), tg_tensor_free(rhs), tg_tensor_free(dh0);
    tcase_free(&k);
}

Test(lstm_time, stateless_keeps_set_state_and_state_is_a_copy) { stateless_and_copied(LSTM); }
Test(gru_time, stateless_keeps_set_state_and_state_is_a_copy) { stateless_and_copied(GRU); }

/* A smaller last batch: N = 1 then N = 3 in one recording, one backward; every gradient is the sum of
   the two forwards' and dh is the last one's. The N = 3 forward must not free the N = 1 leaves. */
static void batch_sizes_in_one_recording(kind kd) {
    int64_t T = 3, D = 3, H = 2;
    tg_tensor *Wx = TT_RAND(TG_F64, 1, 1, D, kd * H), *Wh = TT_RAND(TG_F64, 1, 2, H, kd * H),
              *b = TT_RAND(TG_F64, 1, 3, kd * H), *P[3] = {Wx, Wh, b};
    tg_tensor *x1 = TT_RAND(TG_F64, 0, 4, 1, T, D), *x3 = TT_RAND(TG_F64, 0, 5, 3, T, D);
    tg_tensor *o1 = tg_tensor_new(TG_F64, 3, (int64_t[]){1, T, H}),
              *o3 = tg_tensor_new(TG_F64, 3, (int64_t[]){3, T, H});
    for (int64_t i = 0; i < 3 * T * H; i++) tg_tensor_set(o3, i, 1.0), tg_tensor_set(o1, i % (T * H), 1.0);
    tg_tensor *g1[4] = {NULL, zeros_like(Wx), zeros_like(Wh), zeros_like(b)},
              *g3[4] = {NULL, zeros_like(Wx), zeros_like(Wh), zeros_like(b)};
    tg_tensor *r1 = zeros_like(o1), *r3 = zeros_like(o3), *dh1 = nh_new(TG_F64, 1, H), *dh3 = nh_new(TG_F64, 3, H);
    cr_assert_eq(ref_of(kd, x1, NULL, NULL, Wx, Wh, b, o1, r1, NULL, g1, dh1, NULL), TG_OK);
    cr_assert_eq(ref_of(kd, x3, NULL, NULL, Wx, Wh, b, o3, r3, NULL, g3, dh3, NULL), TG_OK);
    layer l = layer_new(kd, Wx, Wh, b, 0);
    tg_tape *tape = tg_tape_new();
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 3; i++) tg_zero_grad(P[i]);
        tg_tensor *hs1 = layer_forward(tape, &l, x1), *hs3 = layer_forward(tape, &l, x3);
        tg_tensor *L = tg_add(tape, tg_sum(tape, hs1), tg_sum(tape, hs3));
        cr_assert(L, "%s", tg_last_error());
        cr_assert_eq(tg_backward(tape, L, NULL), TG_OK, "%s", tg_last_error());
        for (int i = 0; i < 3; i++)
            for (int64_t e = 0; e < tg_tensor_numel(P[i]); e++) {
                double want = tg_tensor_get(g1[i + 1], e) + tg_tensor_get(g3[i + 1], e);
                cr_expect(fabs(((double *)tg_tensor_grad(P[i]))[e] - want) <= 1e-10 * fmax(fabs(want), 1),
                          "round %d param %d element %lld", round, i, (long long)e);
            }
        cr_expect_leq(tt_max_rel(layer_dh(&l), 0, dh3), 1e-10);
        tg_tape_reset(tape);
    }
    cr_assert_eq(tg_backward(tape, tg_sum(tape, layer_forward(tape, &l, x1)), NULL), TG_OK, "%s", tg_last_error());
    cr_expect_leq(tt_max_rel(layer_dh(&l), 0, dh1), 1e-10);
    tg_tape_free(tape);
    layer_free(&l);
    for (int i = 1; i < 4; i++) tg_tensor_free(g1[i]), tg_tensor_free(g3[i]);
    tg_tensor *t[11] = {Wx, Wh, b, x1, x3, o1, o3, r1, r3, dh1, dh3};
    for (int i = 0; i < 11; i++) tg_tensor_free(t[i]);
}

Test(lstm_time, batch_size_changes_within_one_recording) { batch_sizes_in_one_recording(LSTM); }
Test(gru_time, batch_size_changes_within_one_recording) { batch_sizes_in_one_recording(GRU); }

/* ---- errors ---- */

/* D = 3, H = 2, N = 4, T = 5 for both kinds: Wx (3,GH), Wh (2,GH), b (GH,), xs (4,5,3), h and c (4,2). */
typedef struct {
    tg_tensor *Wx, *Wh, *b, *xs, *h, *c, *x;
    tg_tape *tape;
} err_fix;

static err_fix err_make(kind kd) {
    err_fix e = {TT_RAND(TG_F64, 1, 1, 3, kd * 2), TT_RAND(TG_F64, 1, 2, 2, kd * 2), TT_RAND(TG_F64, 1, 3, kd * 2),
                 TT_RAND(TG_F64, 0, 4, 4, 5, 3),   TT_RAND(TG_F64, 0, 5, 4, 2),        TT_RAND(TG_F64, 0, 6, 4, 2),
                 TT_RAND(TG_F64, 0, 7, 4, 3),      tg_tape_new()};
    tg_clear_error();
    return e;
}

static void err_free(err_fix *e) {
    tg_tensor *t[7] = {e->Wx, e->Wh, e->b, e->xs, e->h, e->c, e->x};
    for (int i = 0; i < 7; i++) tg_tensor_free(t[i]);
    tg_tape_free(e->tape);
}

Test(lstm_errors, cell) {
    err_fix e = err_make(LSTM);
    tg_tensor *x_bad = TT_RAND(TG_F64, 0, 8, 4, 5), *h_bad = TT_RAND(TG_F64, 0, 9, 3, 2),
              *c_bad = TT_RAND(TG_F64, 0, 10, 4, 3), *Wh_bad = TT_RAND(TG_F64, 0, 11, 2, 6),
              *Wh1 = TT_RAND(TG_F64, 0, 12, 8), *Wx_bad = TT_RAND(TG_F64, 0, 13, 3, 6),
              *b_bad = TT_RAND(TG_F64, 0, 14, 6), *x32 = TT_RAND(TG_F32, 0, 15, 4, 3),
              *c32 = TT_RAND(TG_F32, 0, 16, 4, 2), *Wh32 = TT_RAND(TG_F32, 0, 17, 2, 8);
    tg_tensor *c = e.h; /* any non-NULL value: a failed call must set it to NULL */
#define CELL(x_, h_, c_, Wx_, Wh_, b_) (c = e.h, tg_lstm_cell(e.tape, x_, h_, c_, Wx_, Wh_, b_, &c))
    static const char *const nulls[7] = {"x", "h_prev", "c_prev", "Wx", "Wh", "b", "c_next"};
    for (int i = 0; i < 8; i++) {
        tg_tensor *a[6] = {e.x, e.h, e.c, e.Wx, e.Wh, e.b};
        if (i < 6) a[i] = NULL;
        c = e.h;
        tg_tensor *r = i == 7 ? tg_lstm_cell(NULL, e.x, e.h, e.c, e.Wx, e.Wh, e.b, &c)
                              : tg_lstm_cell(e.tape, a[0], a[1], a[2], a[3], a[4], a[5], i == 6 ? NULL : &c);
        cr_expect_null(r);
        if (i != 6) cr_expect_null(c, "c_next is not NULL after a failure");
        char msg[64];
        snprintf(msg, sizeof msg, "tg_lstm_cell: %s is NULL", i == 7 ? "tape" : nulls[i]);
        tt_expect_error(TG_EINVAL, msg);
    }
    cr_expect_null(CELL(x_bad, e.h, e.c, e.Wx, e.Wh, e.b));
    tt_expect_error(TG_ESHAPE, "tg_lstm_cell: x is (4,5) but Wx is (3,8): want x (N,D) with D = 3");
    cr_expect_null(c);
    cr_expect_null(CELL(e.x, h_bad, e.c, e.Wx, e.Wh, e.b));
    tt_expect_error(TG_ESHAPE, "tg_lstm_cell: h_prev is (3,2), want (N,H) = (4,2) from x (4,3) and Wh (2,8)");
    cr_expect_null(CELL(e.x, e.h, c_bad, e.Wx, e.Wh, e.b));
    tt_expect_error(TG_ESHAPE, "tg_lstm_cell: c_prev is (4,3), want (N,H) = (4,2)");
    cr_expect_null(CELL(e.x, e.h, e.c, e.Wx, Wh_bad, e.b));
    tt_expect_error(TG_ESHAPE, "tg_lstm_cell: Wh is (2,6), want (H,4H)");
    cr_expect_null(CELL(e.x, e.h, e.c, e.Wx, Wh1, e.b));
    tt_expect_error(TG_ESHAPE, "tg_lstm_cell: Wh is (8,), want (H,4H)");
    cr_expect_null(CELL(e.x, e.h, e.c, Wx_bad, e.Wh, e.b));
    tt_expect_error(TG_ESHAPE, "tg_lstm_cell: Wx is (3,6) but Wh is (2,8): want Wx (D,4H) with H = 2");
    cr_expect_null(CELL(e.x, e.h, e.c, e.Wx, e.Wh, b_bad));
    tt_expect_error(TG_ESHAPE, "tg_lstm_cell: b is (6,) but Wh is (2,8): want b (4H,) with H = 2");
    cr_expect_null(CELL(x32, e.h, e.c, e.Wx, e.Wh, e.b));
    tt_expect_error(TG_EDTYPE, "tg_lstm_cell: x is f32 but the weights are f64");
    cr_expect_null(CELL(e.x, e.h, c32, e.Wx, e.Wh, e.b));
    tt_expect_error(TG_EDTYPE, "tg_lstm_cell: c_prev is f32 but the weights are f64");
    cr_expect_null(CELL(e.x, e.h, e.c, e.Wx, Wh32, e.b));
    tt_expect_error(TG_EDTYPE, "tg_lstm_cell: Wx is f64, Wh f32 and b f64: want one dtype");
    /* A NULL from a failed op keeps that op's message: errors chain. */
    tg_tensor *bad = tg_matmul(e.tape, e.x, e.x);
    cr_expect_null(CELL(bad, e.h, e.c, e.Wx, e.Wh, e.b));
    tt_expect_error(TG_ESHAPE, "tg_matmul");
#undef CELL
    tg_tensor *t[10] = {x_bad, h_bad, c_bad, Wh_bad, Wh1, Wx_bad, b_bad, x32, c32, Wh32};
    for (int i = 0; i < 10; i++) tg_tensor_free(t[i]);
    err_free(&e);
}

Test(gru_errors, cell) {
    err_fix e = err_make(GRU);
    tg_tensor *x_bad = TT_RAND(TG_F64, 0, 8, 4, 5), *h_bad = TT_RAND(TG_F64, 0, 9, 3, 2),
              *Wh_bad = TT_RAND(TG_F64, 0, 11, 2, 8), *Wx_bad = TT_RAND(TG_F64, 0, 13, 3, 8),
              *b_bad = TT_RAND(TG_F64, 0, 14, 8), *h32 = TT_RAND(TG_F32, 0, 15, 4, 2);
    cr_expect_null(tg_gru_cell(NULL, e.x, e.h, e.Wx, e.Wh, e.b));
    tt_expect_error(TG_EINVAL, "tg_gru_cell: tape is NULL");
    cr_expect_null(tg_gru_cell(e.tape, NULL, e.h, e.Wx, e.Wh, e.b));
    tt_expect_error(TG_EINVAL, "tg_gru_cell: x is NULL");
    cr_expect_null(tg_gru_cell(e.tape, e.x, NULL, e.Wx, e.Wh, e.b));
    tt_expect_error(TG_EINVAL, "tg_gru_cell: h_prev is NULL");
    cr_expect_null(tg_gru_cell(e.tape, e.x, e.h, NULL, e.Wh, e.b));
    tt_expect_error(TG_EINVAL, "tg_gru_cell: Wx is NULL");
    cr_expect_null(tg_gru_cell(e.tape, e.x, e.h, e.Wx, NULL, e.b));
    tt_expect_error(TG_EINVAL, "tg_gru_cell: Wh is NULL");
    cr_expect_null(tg_gru_cell(e.tape, e.x, e.h, e.Wx, e.Wh, NULL));
    tt_expect_error(TG_EINVAL, "tg_gru_cell: b is NULL");
    cr_expect_null(tg_gru_cell(e.tape, x_bad, e.h, e.Wx, e.Wh, e.b));
    tt_expect_error(TG_ESHAPE, "tg_gru_cell: x is (4,5) but Wx is (3,6): want x (N,D) with D = 3");
    cr_expect_null(tg_gru_cell(e.tape, e.x, h_bad, e.Wx, e.Wh, e.b));
    tt_expect_error(TG_ESHAPE, "tg_gru_cell: h_prev is (3,2), want (N,H) = (4,2) from x (4,3) and Wh (2,6)");
    cr_expect_null(tg_gru_cell(e.tape, e.x, e.h, e.Wx, Wh_bad, e.b));
    tt_expect_error(TG_ESHAPE, "tg_gru_cell: Wh is (2,8), want (H,3H)");
    cr_expect_null(tg_gru_cell(e.tape, e.x, e.h, Wx_bad, e.Wh, e.b));
    tt_expect_error(TG_ESHAPE, "tg_gru_cell: Wx is (3,8) but Wh is (2,6): want Wx (D,3H) with H = 2");
    cr_expect_null(tg_gru_cell(e.tape, e.x, e.h, e.Wx, e.Wh, b_bad));
    tt_expect_error(TG_ESHAPE, "tg_gru_cell: b is (8,) but Wh is (2,6): want b (3H,) with H = 2");
    cr_expect_null(tg_gru_cell(e.tape, e.x, h32, e.Wx, e.Wh, e.b));
    tt_expect_error(TG_EDTYPE, "tg_gru_cell: h_prev is f32 but the weights are f64");
    tg_tensor *t[6] = {x_bad, h_bad, Wh_bad, Wx_bad, b_bad, h32};
    for (int i = 0; i < 6; i++) tg_tensor_free(t[i]);
    err_free(&e);
}

/* new, forward, set_state, dh and dc of either Time layer; messages name the function and speak its
   letters. */
static void time_errors(kind kd) {
    err_fix e = err_make(kd);
    int L = kd == LSTM;
    const char *pre = L ? "tg_time_lstm" : "tg_time_gru";
    char msg[256];
#define EXPECT(status, ...)                          \
    do {                                             \
        snprintf(msg, sizeof msg, __VA_ARGS__);      \
        tt_expect_error(status, msg);                \
    } while (0)
    tg_tensor *Wh_bad = TT_RAND(TG_F64, 0, 8, 2, 7), *Wx_bad = TT_RAND(TG_F64, 0, 9, 3, 5),
              *Wh32 = TT_RAND(TG_F32, 0, 10, 2, kd * 2);
    /* new */
    tg_tensor *args[3][3] = {{NULL, e.Wh, e.b}, {e.Wx, NULL, e.b}, {e.Wx, e.Wh, NULL}};
    static const char *const pn[3] = {"Wx", "Wh", "b"};
    for (int i = 0; i < 3; i++) {
        cr_expect_null(L ? (void *)tg_time_lstm_new(args[i][0], args[i][1], args[i][2], 0)
                         : (void *)tg_time_gru_new(args[i][0], args[i][1], args[i][2], 0));
        EXPECT(TG_EINVAL, "%s_new: %s is NULL", pre, pn[i]);
    }
    cr_expect_null(L ? (void *)tg_time_lstm_new(e.Wx, Wh_bad, e.b, 0) : (void *)tg_time_gru_new(e.Wx, Wh_bad, e.b, 0));
    EXPECT(TG_ESHAPE, "%s_new: Wh is (2,7), want (H,%dH)", pre, kd);
    cr_expect_null(L ? (void *)tg_time_lstm_new(Wx_bad, e.Wh, e.b, 1) : (void *)tg_time_gru_new(Wx_bad, e.Wh, e.b, 1));
    EXPECT(TG_ESHAPE, "%s_new: Wx is (3,5) but Wh is (2,%d): want Wx (D,%dH) with H = 2", pre, 2 * kd, kd);
    cr_expect_null(L ? (void *)tg_time_lstm_new(e.Wx, e.Wh, e.xs, 0) : (void *)tg_time_gru_new(e.Wx, e.Wh, e.xs, 0));
    EXPECT(TG_ESHAPE, "%s_new: b is (4,5,3) but Wh is (2,%d): want b (%dH,) with H = 2", pre, 2 * kd, kd);
    cr_expect_null(L ? (void *)tg_time_lstm_new(e.Wx, Wh32, e.b, 0) : (void *)tg_time_gru_new(e.Wx, Wh32, e.b, 0));
    EXPECT(TG_EDTYPE, "%s_new: Wx is f64, Wh f32 and b f64: want one dtype", pre);

    /* forward */
    layer l = layer_new(kd, e.Wx, e.Wh, e.b, 1);
    tg_tensor *xs_D = TT_RAND(TG_F64, 0, 11, 4, 5, 2), *xs32 = TT_RAND(TG_F32, 0, 12, 4, 5, 3),
              *xs_T0 = tg_tensor_new(TG_F64, 3, (int64_t[]){4, 0, 3}), *xs_N = TT_RAND(TG_F64, 0, 13, 3, 5, 3);
    cr_expect_null(L ? tg_time_lstm_forward(NULL, l.lstm, e.xs) : tg_time_gru_forward(NULL, l.gru, e.xs));
    EXPECT(TG_EINVAL, "%s_forward: tape is NULL", pre);
    cr_expect_null(L ? tg_time_lstm_forward(e.tape, NULL, e.xs) : tg_time_gru_forward(e.tape, NULL, e.xs));
    EXPECT(TG_EINVAL, "%s_forward: layer is NULL", pre);
    cr_expect_null(layer_forward(e.tape, &l, NULL));
    EXPECT(TG_EINVAL, "%s_forward: xs is NULL", pre);
    cr_expect_null(layer_forward(e.tape, &l, xs_D));
    EXPECT(TG_ESHAPE, "%s_forward: xs is (4,5,2) but Wx is (3,%d): want xs (N,T,D) with D = 3", pre, 2 * kd);
    cr_expect_null(layer_forward(e.tape, &l, e.h));
    EXPECT(TG_ESHAPE, "%s_forward: xs must be 3-d (N,T,D) with D = 3, got a 2-d (4,2)", pre);
    cr_expect_null(layer_forward(e.tape, &l, xs32));
    EXPECT(TG_EDTYPE, "%s_forward: xs is f32 but the layer's weights are f64", pre);
    cr_expect_null(layer_forward(e.tape, &l, xs_T0));
    EXPECT(TG_ESHAPE, "%s_forward: xs is (4,0,3): T = 0 steps", pre);
    /* dh (and dc) before any forward */
    cr_expect_null(layer_dh(&l));
    EXPECT(TG_ESTATE, "%s_dh: no forward has run", pre);
    if (L) {
        cr_expect_null(tg_time_lstm_dc(l.lstm));
        tt_expect_error(TG_ESTATE, "tg_time_lstm_dc: no forward has run");
        cr_expect_null(tg_time_lstm_dc(NULL));
        tt_expect_error(TG_EINVAL, "tg_time_lstm_dc: layer is NULL");
    }
    cr_expect_null(L ? tg_time_lstm_dh(NULL) : tg_time_gru_dh(NULL));
    EXPECT(TG_EINVAL, "%s_dh: layer is NULL", pre);
    /* a kept state fixes N: the last forward's batch was 4, this one is 3 */
    cr_assert(layer_forward(e.tape, &l, e.xs), "%s", tg_last_error());
    cr_expect_null(layer_forward(e.tape, &l, xs_N));
    EXPECT(TG_ESHAPE, "%s_forward: the layer's state is (4,2) (from set_state or the last stateful forward) but "
                      "xs (3,5,3) has N = 3; reset_state or set_state first", pre);
    layer_reset(&l);
    cr_expect(layer_forward(e.tape, &l, xs_N), "%s", tg_last_error());

    /* set_state */
    tg_tensor *h3 = TT_RAND(TG_F64, 0, 14, 4, 3), *h1 = TT_RAND(TG_F64, 0, 15, 2), *h32 = TT_RAND(TG_F32, 0, 16, 4, 2),
              *c_bad = TT_RAND(TG_F64, 0, 17, 3, 2);
    cr_expect_eq(L ? tg_time_lstm_set_state(NULL, e.h, e.c) : tg_time_gru_set_state(NULL, e.h), TG_EINVAL);
    EXPECT(TG_EINVAL, "%s_set_state: layer is NULL", pre);
    cr_expect_eq(layer_set_state(&l, NULL, e.c), TG_EINVAL);
    EXPECT(TG_EINVAL, "%s_set_state: h is NULL", pre);
    cr_expect_eq(layer_set_state(&l, h3, NULL), TG_ESHAPE);
    EXPECT(TG_ESHAPE, "%s_set_state: h is (4,3), want (N,H) with H = 2", pre);
    cr_expect_eq(layer_set_state(&l, h1, NULL), TG_ESHAPE);
    EXPECT(TG_ESHAPE, "%s_set_state: h is (2,), want (N,H) with H = 2", pre);
    cr_expect_eq(layer_set_state(&l, h32, NULL), TG_EDTYPE);
    EXPECT(TG_EDTYPE, "%s_set_state: h is f32 but the layer's weights are f64", pre);
    /* A refused set_state leaves the state as it was: here a good one, set first. */
    layer fresh = layer_new(kd, e.Wx, e.Wh, e.b, 0);
    cr_assert_eq(layer_set_state(&l, e.h, e.c), TG_OK);
    cr_assert_eq(layer_set_state(&fresh, e.h, e.c), TG_OK);
    if (L) {
        cr_expect_eq(tg_time_lstm_set_state(l.lstm, e.h, c_bad), TG_ESHAPE);
        tt_expect_error(TG_ESHAPE, "tg_time_lstm_set_state: c is (3,2) but h is (4,2): want c (N,H) = (4,2)");
        cr_expect_eq(tg_time_lstm_set_state(l.lstm, e.h, h32), TG_EDTYPE);
        tt_expect_error(TG_EDTYPE, "tg_time_lstm_set_state: c is f32 but the layer's weights are f64");
    }
    cr_expect_eq(layer_set_state(&l, h3, e.c), TG_ESHAPE);
    tg_clear_error();
    cr_expect_eq(tg_tensor_hash(layer_forward(e.tape, &l, e.xs)), tg_tensor_hash(layer_forward(e.tape, &fresh, e.xs)),
                 "a refused set_state changed the state");
    tg_time_lstm_reset_state(NULL), tg_time_gru_reset_state(NULL); /* ignored, as free(NULL) */
    tg_time_lstm_free(NULL), tg_time_gru_free(NULL);
#undef EXPECT
    layer_free(&l), layer_free(&fresh);
    tg_tensor *t[11] = {Wh_bad, Wx_bad, Wh32, xs_D, xs32, xs_T0, xs_N, h3, h1, h32, c_bad};
    for (int i = 0; i < 11; i++) tg_tensor_free(t[i]);
    err_free(&e);
}

Test(lstm_errors, time_layer) { time_errors(LSTM); }
Test(gru_errors, time_layer) { time_errors(GRU); }

Test(lstm_errors, reference) {
    err_fix e = err_make(LSTM);
    tg_tensor *hs = tg_tensor_new(TG_F64, 3, (int64_t[]){4, 5, 2}),
              *hs_bad = tg_tensor_new(TG_F64, 3, (int64_t[]){4, 5, 3});
    tg_tensor *dWx_bad = tg_tensor_new(TG_F64, 2, (int64_t[]){3, 6}), *b32 = TT_RAND(TG_F32, 0, 6, 8),
              *Wx_D = TT_RAND(TG_F64, 0, 7, 2, 8), *xs32 = TT_RAND(TG_F32, 0, 8, 4, 5, 3),
              *c0 = TT_RAND(TG_F64, 0, 9, 2, 2);
#define REF(xs, h0, c0, Wx, b, hs, cs, dWx, dc0) \
    tg_time_lstm_ref(xs, h0, c0, Wx, e.Wh, b, NULL, hs, cs, NULL, dWx, NULL, NULL, NULL, dc0)
    cr_expect_eq(REF(NULL, NULL, NULL, e.Wx, e.b, hs, NULL, NULL, NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_time_lstm_ref: xs is NULL");
    cr_expect_eq(REF(e.xs, NULL, NULL, e.Wx, e.b, NULL, NULL, NULL, NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_time_lstm_ref: hs is NULL");
    cr_expect_eq(REF(e.h, NULL, NULL, e.Wx, e.b, hs, NULL, NULL, NULL), TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "tg_time_lstm_ref: xs is (4,2), want 3 dims (N,T,D)");
    cr_expect_eq(REF(e.xs, NULL, NULL, e.Wx, e.b, hs_bad, NULL, NULL, NULL), TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "tg_time_lstm_ref: hs is (4,5,3), want (N,T,H) = (4,5,2)");
    cr_expect_eq(REF(e.xs, NULL, NULL, e.Wx, e.b, hs, hs_bad, NULL, NULL), TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "tg_time_lstm_ref: cs is (4,5,3), want (N,T,H) = (4,5,2)");
    cr_expect_eq(REF(e.xs, NULL, NULL, e.Wx, e.b, hs, NULL, dWx_bad, NULL), TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "tg_time_lstm_ref: dWx is (3,6), want (D,4H) = (3,8)");
    cr_expect_eq(REF(e.xs, NULL, c0, e.Wx, e.b, hs, NULL, NULL, NULL), TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "tg_time_lstm_ref: c0 is (2,2), want (N,H) = (4,2)");
    cr_expect_eq(REF(e.xs, NULL, NULL, e.Wx, e.b, hs, NULL, NULL, c0), TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "tg_time_lstm_ref: dc0 is (2,2), want (N,H) = (4,2)");
    cr_expect_eq(REF(e.xs, NULL, NULL, e.Wx, b32, hs, NULL, NULL, NULL), TG_EDTYPE);
    tt_expect_error(TG_EDTYPE, "tg_time_lstm_ref: Wx is f64, Wh f64 and b f32: want one dtype");
    cr_expect_eq(REF(e.xs, NULL, NULL, Wx_D, e.b, hs, NULL, NULL, NULL), TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "tg_time_lstm_ref: Wx is (2,8), want (D,4H) = (3,8)");
    cr_expect_eq(REF(xs32, NULL, NULL, e.Wx, e.b, hs, NULL, NULL, NULL), TG_EDTYPE);
    tt_expect_error(TG_EDTYPE, "tg_time_lstm_ref: Wx is f64 but xs is f32");
    cr_expect_eq(REF(e.xs, NULL, NULL, e.Wh, e.b, hs, NULL, NULL, NULL), TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "tg_time_lstm_ref: Wx is (2,8), want (D,4H) = (3,8)");
#undef REF
    tg_tensor *t[7] = {hs, hs_bad, dWx_bad, b32, Wx_D, xs32, c0};
    for (int i = 0; i < 7; i++) tg_tensor_free(t[i]);
    err_free(&e);
}

Test(gru_errors, reference) {
    err_fix e = err_make(GRU);
    tg_tensor *hs = tg_tensor_new(TG_F64, 3, (int64_t[]){4, 5, 2}),
              *dWh_bad = tg_tensor_new(TG_F64, 2, (int64_t[]){2, 8});
    tg_tensor *Wh_bad = TT_RAND(TG_F64, 0, 6, 2, 8), *h0 = TT_RAND(TG_F64, 0, 7, 4, 3);
    cr_expect_eq(tg_time_gru_ref(NULL, NULL, e.Wx, e.Wh, e.b, NULL, hs, NULL, NULL, NULL, NULL, NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_time_gru_ref: xs is NULL");
    cr_expect_eq(tg_time_gru_ref(e.xs, NULL, e.Wx, Wh_bad, e.b, NULL, hs, NULL, NULL, NULL, NULL, NULL), TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "tg_time_gru_ref: Wh is (2,8), want (H,3H)");
    cr_expect_eq(tg_time_gru_ref(e.xs, NULL, e.Wx, e.Wh, e.b, NULL, hs, NULL, NULL, dWh_bad, NULL, NULL), TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "tg_time_gru_ref: dWh is (2,8), want (H,3H) = (2,6)");
    cr_expect_eq(tg_time_gru_ref(e.xs, h0, e.Wx, e.Wh, e.b, NULL, hs, NULL, NULL, NULL, NULL, NULL), TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "tg_time_gru_ref: h0 is (4,3), want (N,H) = (4,2)");
    cr_expect_eq(tg_time_gru_ref(e.xs, NULL, e.Wx, e.Wh, e.b, NULL, NULL, NULL, NULL, NULL, NULL, NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_time_gru_ref: hs is NULL");
    tg_tensor_free(hs), tg_tensor_free(dWh_bad), tg_tensor_free(Wh_bad), tg_tensor_free(h0);
    err_free(&e);
}

/* A NULL argument after a failed call keeps that call's status and message (tg__null), in every
   function of the layers and references: a forward pass can be checked once, at its end. */
Test(lstm_errors, null_keeps_an_earlier_failure) {
    err_fix e = err_make(LSTM), g = err_make(GRU);
    tg_time_lstm *L = tg_time_lstm_new(e.Wx, e.Wh, e.b, 0);
    tg_time_gru *R = tg_time_gru_new(g.Wx, g.Wh, g.b, 0);
    tg_tensor *hs = tg_tensor_new(TG_F64, 3, (int64_t[]){4, 5, 2}), *c;
    cr_assert(L && R && hs);
    cr_assert_null(tg_matmul(e.tape, e.Wx, e.Wx)); /* (3,8) @ (3,8) */
    char first[512];
    snprintf(first, sizeof first, "%s", tg_last_error());
    cr_assert(strstr(first, "tg_matmul"), "%s", first);
    int step = 0;
#define KEEPS(call)                                                                                \
    do {                                                                                           \
        step++;                                                                                    \
        (void)(call);                                                                              \
        cr_expect_eq(tg_last_status(), TG_ESHAPE, "%s: status %s", #call, tg_status_name(tg_last_status())); \
        cr_expect_str_eq(tg_last_error(), first, "%s overwrote the first message", #call);         \
    } while (0)
    KEEPS(tg_lstm_cell(NULL, e.x, e.h, e.c, e.Wx, e.Wh, e.b, &c));
    KEEPS(tg_lstm_cell(e.tape, NULL, e.h, e.c, e.Wx, e.Wh, e.b, &c));
    KEEPS(tg_lstm_cell(e.tape, e.x, NULL, e.c, e.Wx, e.Wh, e.b, &c));
    KEEPS(tg_lstm_cell(e.tape, e.x, e.h, NULL, e.Wx, e.Wh, e.b, &c));
    KEEPS(tg_lstm_cell(e.tape, e.x, e.h, e.c, NULL, e.Wh, e.b, &c));
    KEEPS(tg_lstm_cell(e.tape, e.x, e.h, e.c, e.Wx, e.Wh, e.b, NULL));
    KEEPS(tg_time_lstm_new(NULL, e.Wh, e.b, 0));
    KEEPS(tg_time_lstm_new(e.Wx, NULL, e.b, 0));
    KEEPS(tg_time_lstm_new(e.Wx, e.Wh, NULL, 1));
    KEEPS(tg_time_lstm_forward(NULL, L, e.xs));
    KEEPS(tg_time_lstm_forward(e.tape, NULL, e.xs));
    KEEPS(tg_time_lstm_forward(e.tape, L, NULL));
    KEEPS(tg_time_lstm_set_state(NULL, e.h, e.c));
    KEEPS(tg_time_lstm_set_state(L, NULL, e.c));
    KEEPS(tg_time_lstm_dh(NULL));
    KEEPS(tg_time_lstm_dc(NULL));
    KEEPS(tg_time_lstm_ref(NULL, NULL, NULL, e.Wx, e.Wh, e.b, NULL, hs, NULL, NULL, NULL, NULL, NULL, NULL, NULL));
    KEEPS(tg_time_lstm_ref(e.xs, NULL, NULL, e.Wx, NULL, e.b, NULL, hs, NULL, NULL, NULL, NULL, NULL, NULL, NULL));
    KEEPS(tg_time_lstm_ref(e.xs, NULL, NULL, e.Wx, e.Wh, e.b, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL));
    KEEPS(tg_gru_cell(NULL, g.x, g.h, g.Wx, g.Wh, g.b));
    KEEPS(tg_gru_cell(g.tape, NULL, g.h, g.Wx, g.Wh, g.b));
    KEEPS(tg_gru_cell(g.tape, g.x, NULL, g.Wx, g.Wh, g.b));
    KEEPS(tg_gru_cell(g.tape, g.x, g.h, g.Wx, g.Wh, NULL));
    KEEPS(tg_time_gru_new(NULL, g.Wh, g.b, 0));
    KEEPS(tg_time_gru_forward(NULL, R, g.xs));
    KEEPS(tg_time_gru_forward(g.tape, NULL, g.xs));
    KEEPS(tg_time_gru_forward(g.tape, R, NULL));
    KEEPS(tg_time_gru_set_state(NULL, g.h));
    KEEPS(tg_time_gru_set_state(R, NULL));
    KEEPS(tg_time_gru_dh(NULL));
    KEEPS(tg_time_gru_ref(NULL, NULL, g.Wx, g.Wh, g.b, NULL, hs, NULL, NULL, NULL, NULL, NULL));
    KEEPS(tg_time_gru_ref(g.xs, NULL, g.Wx, g.Wh, g.b, NULL, NULL, NULL, NULL, NULL, NULL, NULL));
#undef KEEPS
    cr_expect_eq(step, 32);
    tg_clear_error();
    tg_time_lstm_free(L), tg_time_gru_free(R);
    tg_tensor_free(hs);
    err_free(&e), err_free(&g);
}

/* ---- allocation failures ----
 * The k-th allocation fails, for every k a small new + forward + backward + dh (+ dc) makes: each run
 * fails with TG_ENOMEM or succeeds, and frees what it made (the valgrind variant of this test sees no
 * leak). Then a stateful layer's chunk 2 fails at each point and is retried: the failure changed no
 * state, so the retry gives what an unbroken run gives. */
static void alloc_fails_cleanly(kind kd) {
    tg_tensor *Wx = TT_RAND(TG_F64, 1, 1, 3, kd * 2), *Wh = TT_RAND(TG_F64, 1, 2, 2, kd * 2),
              *b = TT_RAND(TG_F64, 1, 3, kd * 2);
    tg_tensor *x1 = TT_RAND(TG_F64, 0, 4, 2, 4, 3), *x2 = TT_RAND(TG_F64, 0, 5, 2, 4, 3);
    layer ok = layer_new(kd, Wx, Wh, b, 1);
    tg_tape *tape = tg_tape_new();
    cr_assert(layer_forward(tape, &ok, x1));
    uint64_t want = tg_tensor_hash(layer_forward(tape, &ok, x2));
    tg_tape_free(tape);
    layer_free(&ok);

    int failures = 0, done = 0;
    for (int64_t k = 1; k < 100000 && !done; k++) {
        tg_clear_error();
        tg__alloc_fail_at(k);
        layer l = {kd, NULL, NULL, NULL, NULL};
        if (kd == LSTM) l.lstm = tg_time_lstm_new(Wx, Wh, b, 1);
        else l.gru = tg_time_gru_new(Wx, Wh, b, 1);
        tape = tg_tape_new();
        int good = (l.lstm || l.gru) && tape;
        tg_tensor *hs = good ? layer_forward(tape, &l, x1) : NULL;
        good = hs && tg_backward(tape, tg_sum(tape, hs), NULL) == TG_OK && layer_dh(&l) &&
               (kd == GRU || tg_time_lstm_dc(l.lstm));
        int64_t used = tg__alloc_count(); /* read before tg__alloc_fail_at(0) zeroes it */
        tg__alloc_fail_at(0);
        if (!good) {
            failures++;
            cr_expect_eq(tg_last_status(), TG_ENOMEM, "k=%lld: %s (%s)", (long long)k, tg_status_name(tg_last_status()),
                         tg_last_error());
        } else if (used < k) {
            done = 1; /* the k-th allocation never came: every point has been failed */
        }
        tg_tape_free(tape);
        layer_free(&l);
    }
    cr_expect(done && failures > 0, "done %d after %d failures", done, failures);

    done = 0;
    for (int64_t k = 1; k < 100000 && !done; k++) {
        layer l = layer_new(kd, Wx, Wh, b, 1);
        tape = tg_tape_new();
        cr_assert(layer_forward(tape, &l, x1));
        tg_tape_free(tape);
        tape = tg_tape_new(); /* a fresh arena, so chunk 2 has allocations to fail */
        tg_clear_error();
        tg__alloc_fail_at(k);
        tg_tensor *hs2 = layer_forward(tape, &l, x2);
        int64_t used = tg__alloc_count();
        tg__alloc_fail_at(0);
        if (hs2) {
            done = used < k;
        } else {
            cr_expect_eq(tg_last_status(), TG_ENOMEM, "k=%lld: %s", (long long)k, tg_last_error());
            tg_tape_reset(tape);
            hs2 = layer_forward(tape, &l, x2);
            cr_assert(hs2, "%s", tg_last_error());
        }
        cr_expect_eq(tg_tensor_hash(hs2), want, "k=%lld: the failed forward changed the state", (long long)k);
        tg_tape_free(tape);
        layer_free(&l);
    }
    cr_expect(done);
    tg_tensor_free(Wx), tg_tensor_free(Wh), tg_tensor_free(b), tg_tensor_free(x1), tg_tensor_free(x2);
}

Test(lstm_alloc, new_forward_backward_fail_cleanly) { alloc_fails_cleanly(LSTM); }
Test(gru_alloc, new_forward_backward_fail_cleanly) { alloc_fails_cleanly(GRU); }

/* set_state's allocations, and the references' scratch arrays: every one failed in turn. */
static void set_state_and_ref_fail_cleanly(kind kd) {
    err_fix e = err_make(kd);
    tg_tensor *hs = tg_tensor_new(TG_F64, 3, (int64_t[]){4, 5, 2}), *dh0 = nh_new(TG_F64, 4, 2);
    layer l = layer_new(kd, e.Wx, e.Wh, e.b, 0), fresh = layer_new(kd, e.Wx, e.Wh, e.b, 0);
    cr_assert_eq(layer_set_state(&fresh, e.h, e.c), TG_OK);
    int done = 0, failures = 0;
    for (int64_t k = 1; k < 1000 && !done; k++) {
        tg__alloc_fail_at(k);
        tg_status s = layer_set_state(&l, e.h, e.c);
        int64_t used = tg__alloc_count();
        tg__alloc_fail_at(0);
        if (s) {
            failures++;
            tt_expect_error(TG_ENOMEM, "_set_state: out of memory for a (4,2) state");
        }
        done = !s && used < k;
    }
    cr_expect(done && failures > 0);
    cr_expect_eq(tg_tensor_hash(layer_forward(e.tape, &l, e.xs)), tg_tensor_hash(layer_forward(e.tape, &fresh, e.xs)));
    done = failures = 0;
    for (int64_t k = 1; k < 1000 && !done; k++) {
        tg__alloc_fail_at(k);
        tg_status s = ref_of(kd, e.xs, e.h, e.c, e.Wx, e.Wh, e.b, hs, hs, NULL, NULL, dh0, NULL);
        int64_t used = tg__alloc_count();
        tg__alloc_fail_at(0);
        if (s) {
            failures++;
            tt_expect_error(TG_ENOMEM, "_ref: out of memory");
        }
        done = !s && used < k;
    }
    cr_expect(done && failures > 0);
    layer_free(&l), layer_free(&fresh);
    tg_tensor_free(hs), tg_tensor_free(dh0);
    err_free(&e);
}

Test(lstm_alloc, set_state_and_reference_fail_cleanly) { set_state_and_ref_fail_cleanly(LSTM); }
Test(gru_alloc, set_state_and_reference_fail_cleanly) { set_state_and_ref_fail_cleanly(GRU); }

/* ---- reliability: stale state refused, a failure inside the loop names the layer and its step ---- */

Test(gated, set_state_refuses_outputs_of_an_ended_recording) {
    tg_tensor *Wx = TT_RAND(TG_F64, 1, 1, 3, 8), *Wh = TT_RAND(TG_F64, 1, 2, 2, 8), *b = TT_RAND(TG_F64, 1, 3, 8);
    tg_tensor *Gx = TT_RAND(TG_F64, 1, 4, 3, 6), *Gh = TT_RAND(TG_F64, 1, 5, 2, 6), *gb = TT_RAND(TG_F64, 1, 6, 6);
    tg_tensor *p = TT_RAND(TG_F64, 1, 7, 4, 2);
    tg_time_lstm *lstm = tg_time_lstm_new(Wx, Wh, b, 1);
    tg_time_gru *gru = tg_time_gru_new(Gx, Gh, gb, 1);
    tg_tape *tape = tg_tape_new();
    tg_tensor *stale = tg_scale(tape, p, 2);
    cr_assert(lstm && gru && stale);
    tg_tape_reset(tape);
    tg_clear_error();
    cr_expect_eq(tg_time_lstm_set_state(lstm, stale, NULL), TG_ESTATE);
    tt_expect_error(TG_ESTATE, "tg_time_lstm_set_state: h is an output of a recording that tg_tape_reset ended");
    cr_expect_eq(tg_time_lstm_set_state(lstm, p, stale), TG_ESTATE);
    tt_expect_error(TG_ESTATE, "tg_time_lstm_set_state: c is an output of a recording that tg_tape_reset ended");
    cr_expect_eq(tg_time_gru_set_state(gru, stale), TG_ESTATE);
    tt_expect_error(TG_ESTATE, "tg_time_gru_set_state: h is an output of a recording that tg_tape_reset ended");
    tg_tape_free(tape);
    tg_time_lstm_free(lstm), tg_time_gru_free(gru);
    tg_tensor_free(Wx), tg_tensor_free(Wh), tg_tensor_free(b), tg_tensor_free(Gx), tg_tensor_free(Gh);
    tg_tensor_free(gb), tg_tensor_free(p);
}

Test(gated, a_failure_inside_the_loop_names_the_layer_and_the_step) {
    for (int lstm = 0; lstm < 2; lstm++) {
        int G = lstm ? 4 : 3;
        tg_tensor *Wx = TT_RAND(TG_F64, 1, 1, 16, G * 64), *Wh = TT_RAND(TG_F64, 1, 2, 64, G * 64);
        tg_tensor *b = TT_RAND(TG_F64, 1, 3, G * 64), *xs = TT_RAND(TG_F64, 0, 4, 32, 40, 16);
        tg_time_lstm *L = lstm ? tg_time_lstm_new(Wx, Wh, b, 0) : NULL;
        tg_time_gru *R = lstm ? NULL : tg_time_gru_new(Wx, Wh, b, 0);
        tg_tape *warm = tg_tape_new(); /* the layer's leaves, made once, so that the failures below are the loop's */
        cr_assert(lstm ? tg_time_lstm_forward(warm, L, xs) : tg_time_gru_forward(warm, R, xs), "%s", tg_last_error());
        tg_tape_free(warm);
        const char *fn = lstm ? "tg_time_lstm_forward: step " : "tg_time_gru_forward: step ";
        int in_loop = 0, done = 0;
        for (int64_t k = 1; k < 20000 && !done; k++) {
            tg_tape *tape = tg_tape_new();
            tg_clear_error();
            tg__alloc_fail_at(k);
            tg_tensor *hs = lstm ? tg_time_lstm_forward(tape, L, xs) : tg_time_gru_forward(tape, R, xs);
            int64_t used = tg__alloc_count();
            tg__alloc_fail_at(0);
            done = hs && used < k;
            if (!hs) cr_expect_eq(tg_last_status(), TG_ENOMEM, "k=%lld: %s", (long long)k, tg_last_error());
            if (!hs && !strncmp(tg_last_error(), fn, strlen(fn))) in_loop++;
            tg_tape_free(tape);
        }
        cr_expect(done);
        cr_expect_geq(in_loop, 2, "%s: only %d failures named a step", fn, in_loop);
        tg_time_lstm_free(L), tg_time_gru_free(R);
        tg_tensor_free(Wx), tg_tensor_free(Wh), tg_tensor_free(b), tg_tensor_free(xs);
    }
}

/* A tensor recorded on another tape is named in the layer's words before any op runs (the ops would
   name it in theirs: "tg_add: b ..."); each of the cell's and the forward's tensors in turn. */
static void other_tape(kind kd) {
    err_fix e = err_make(kd);
    tg_tape *other = tg_tape_new();
    layer l = layer_new(kd, e.Wx, e.Wh, e.b, 0);
    const char *cell = kd == LSTM ? "tg_lstm_cell" : "tg_gru_cell";
    const char *fwd = kd == LSTM ? "tg_time_lstm_forward" : "tg_time_gru_forward";
    static const char *const names[6] = {"x", "h_prev", "c_prev", "Wx", "Wh", "b"};
    for (int i = 0; i < 6; i++) {
        if (kd == GRU && i == 2) continue;
        tg_tensor *a[6] = {e.x, e.h, e.c, e.Wx, e.Wh, e.b};
        a[i] = tg_scale(other, a[i], 1);
        cr_assert(a[i], "%s", tg_last_error());
        tg_tensor *c = NULL;
        cr_expect_null(kd == LSTM ? tg_lstm_cell(e.tape, a[0], a[1], a[2], a[3], a[4], a[5], &c)
                                  : tg_gru_cell(e.tape, a[0], a[1], a[3], a[4], a[5]));
        char msg[96];
        snprintf(msg, sizeof msg, "%s: %s was recorded on another tape", cell, names[i]);
        tt_expect_error(TG_EINVAL, msg);
        cr_expect_eq(tg_tape_size(e.tape), 0, "%s recorded before refusing", cell);
    }
    tg_tensor *xs = tg_scale(other, e.xs, 1);
    cr_expect_null(layer_forward(e.tape, &l, xs));
    char msg[96];
    snprintf(msg, sizeof msg, "%s: xs was recorded on another tape", fwd);
    tt_expect_error(TG_EINVAL, msg);
    layer_free(&l);
    /* A layer whose weight is an op output (a tied or transformed weight) is refused on other tapes. */
    tg_tensor *Wh2 = tg_scale(other, e.Wh, 1);
    l = layer_new(kd, e.Wx, Wh2, e.b, 0);
    cr_expect_null(layer_forward(e.tape, &l, e.xs));
    snprintf(msg, sizeof msg, "%s: Wh was recorded on another tape", fwd);
    tt_expect_error(TG_EINVAL, msg);
    cr_expect(layer_forward(other, &l, e.xs), "%s", tg_last_error());
    layer_free(&l);
    tg_tape_free(other);
    err_free(&e);
}
Test(lstm_errors, tensors_from_another_tape) { other_tape(LSTM); }
Test(gru_errors, tensors_from_another_tape) { other_tape(GRU); }

/* Out of memory inside a cell is told after the cell's name, at every allocation the cell makes. */
typedef struct {
    kind kd;
    err_fix e;
} cell_ctx;
static tg_tensor *cell_call(tg_tape *tape, void *ctx) {
    cell_ctx *cc = ctx;
    err_fix *e = &cc->e;
    if (cc->kd == GRU) return tg_gru_cell(tape, e->x, e->h, e->Wx, e->Wh, e->b);
    tg_tensor *c = e->h; /* any non-NULL value: a failed call must set it to NULL */
    tg_tensor *h = tg_lstm_cell(tape, e->x, e->h, e->c, e->Wx, e->Wh, e->b, &c);
    if (!h) cr_expect_null(c);
    return h;
}
static void cell_alloc(kind kd) {
    cell_ctx cc = {kd, err_make(kd)};
    tt_each_alloc_failure(cell_call, &cc, kd == LSTM ? "tg_lstm_cell: " : "tg_gru_cell: ");
    err_free(&cc.e);
}
Test(lstm_alloc, a_failure_inside_the_cell_names_the_cell) { cell_alloc(LSTM); }
Test(gru_alloc, a_failure_inside_the_cell_names_the_cell) { cell_alloc(GRU); }

/* The layers name their weights by role unless named, and their initial-state leaves h0 (and c0). */
static void names_weights_and_leaves(kind kd) {
    err_fix e = err_make(kd);
    cr_assert_eq(tg_tensor_set_name(e.b, "dec.b"), TG_OK);
    layer l = layer_new(kd, e.Wx, e.Wh, e.b, 0);
    cr_expect_str_eq(tg_tensor_name(e.Wx), "Wx");
    cr_expect_str_eq(tg_tensor_name(e.Wh), "Wh");
    cr_expect_str_eq(tg_tensor_name(e.b), "dec.b");
    cr_assert(layer_forward(e.tape, &l, e.xs), "%s", tg_last_error());
    char *buf = tt_tape_text(e.tape, 0);
    cr_expect(strstr(buf, "h0(4,2)") && strstr(buf, "Wh(2,"), "%s", buf);
    cr_expect(kd == LSTM ? strstr(buf, "c0(4,2)") != NULL : strstr(buf, "c0(") == NULL, "%s", buf);
    free(buf);
    layer_free(&l);
    err_free(&e);
    e = err_make(kd);
    int failures = 0;
    for (int64_t k = 1;; k++) {
        cr_assert_lt(k, 100);
        tg__alloc_fail_at(k);
        void *p = kd == LSTM ? (void *)tg_time_lstm_new(e.Wx, e.Wh, e.b, 1) : (void *)tg_time_gru_new(e.Wx, e.Wh, e.b, 1);
        tg__alloc_fail_at(0);
        if (p) {
            if (kd == LSTM) tg_time_lstm_free(p);
            else tg_time_gru_free(p);
            break;
        }
        failures++;
        tt_expect_error(TG_ENOMEM, kd == LSTM ? "tg_time_lstm_new: out of memory" : "tg_time_gru_new: out of memory");
    }
    cr_expect_geq(failures, 3, "the three names, then the layer");
    err_free(&e);
}
Test(lstm, the_layer_names_its_weights_and_leaves) { names_weights_and_leaves(LSTM); }
Test(gru, the_layer_names_its_weights_and_leaves) { names_weights_and_leaves(GRU); }
