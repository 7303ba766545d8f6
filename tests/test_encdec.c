/* Encoder–decoder: state handed between layers on one tape. The three Time layers' forward_from against
 * finite differences (h0 and c0 as parameters and as another layer's outputs, T = 1 and T > 1), its last
 * state against hs, its leaving the kept state alone; set_state's refusal of a tensor that needs a
 * gradient; attention (tg_attention) against the book's hand-derived backward (tg_attention_ref) and
 * finite differences; and a whole encoder -> decoder -> attention -> linear -> cross-entropy on one tape,
 * whose encoder gradients equal those of the two-tape hand-off of dh.
 */
#include <math.h>
#include <stdio.h>
#include "tg_testutil.h"

typedef enum { RNN, LSTM, GRU } kind;
static const char *const KIND[] = {"rnn", "lstm", "gru"};
static const int GATES[] = {1, 4, 3};

/* One Time layer of either kind behind one face, with the weights it borrows. */
typedef struct {
    kind k;
    tg_tensor *Wx, *Wh, *b;
    tg_time_rnn *rnn;
    tg_time_lstm *lstm;
    tg_time_gru *gru;
} layer;

static layer layer_make(kind k, int64_t D, int64_t H, int stateful, uint64_t seed) {
    layer l = {k, TT_RAND(TG_F64, 1, seed, D, GATES[k] * H), TT_RAND(TG_F64, 1, seed + 1, H, GATES[k] * H),
               TT_RAND(TG_F64, 1, seed + 2, GATES[k] * H), NULL, NULL, NULL};
    if (k == RNN) l.rnn = tg_time_rnn_new(l.Wx, l.Wh, l.b, stateful);
    if (k == LSTM) l.lstm = tg_time_lstm_new(l.Wx, l.Wh, l.b, stateful);
    if (k == GRU) l.gru = tg_time_gru_new(l.Wx, l.Wh, l.b, stateful);
    cr_assert(l.rnn || l.lstm || l.gru, "%s", tg_last_error());
    return l;
}

static void layer_free(layer *l) {
    tg_time_rnn_free(l->rnn), tg_time_lstm_free(l->lstm), tg_time_gru_free(l->gru);
    tg_tensor_free(l->Wx), tg_tensor_free(l->Wh), tg_tensor_free(l->b);
}

static tg_tensor *from(tg_tape *tape, layer *l, tg_tensor *xs, tg_tensor *h0, tg_tensor *c0, tg_tensor **hT,
                       tg_tensor **cT) {
    if (cT) *cT = NULL;
    if (l->k == RNN) return tg_time_rnn_forward_from(tape, l->rnn, xs, h0, hT);
    if (l->k == GRU) return tg_time_gru_forward_from(tape, l->gru, xs, h0, hT);
    return tg_time_lstm_forward_from(tape, l->lstm, xs, h0, c0, hT, cT);
}

static tg_tensor *forward(tg_tape *tape, layer *l, tg_tensor *xs) {
    if (l->k == RNN) return tg_time_rnn_forward(tape, l->rnn, xs);
    if (l->k == GRU) return tg_time_gru_forward(tape, l->gru, xs);
    return tg_time_lstm_forward(tape, l->lstm, xs);
}

static tg_status set_state(layer *l, const tg_tensor *h, const tg_tensor *c) {
    if (l->k == RNN) return tg_time_rnn_set_state(l->rnn, h);
    if (l->k == GRU) return tg_time_gru_set_state(l->gru, h);
    return tg_time_lstm_set_state(l->lstm, h, c);
}

static tg_tensor *dh_of(layer *l) {
    if (l->k == RNN) return tg_time_rnn_dh(l->rnn);
    if (l->k == GRU) return tg_time_gru_dh(l->gru);
    return tg_time_lstm_dh(l->lstm);
}

/* hs, h_T (and c_T) side by side as one (N, T*H + H [+ H]) output, so that the check covers all three. */
static tg_tensor *flat_out(tg_tape *tape, tg_tensor *hs, tg_tensor *hT, tg_tensor *cT) {
    if (!hs) return NULL;
    const int64_t *s = tg_tensor_shape(hs);
    tg_tensor *flat = tg_reshape(tape, hs, 2, (int64_t[]){s[0], s[1] * s[2]});
    return tg_concat(tape, (tg_tensor *[]){flat, hT, cT}, cT ? 3 : 2, 1);
}

/* ---- forward_from against finite differences ---- */

/* in: {xs, Wx, Wh, b, h0, c0}; h0, c0 may be absent (n_in 4 or 5): zeros. */
typedef struct {
    layer l;
    int n_in;
} from_case;

static tg_tensor *f_from(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    from_case *fc = ctx;
    tg_tensor *hT, *cT;
    tg_tensor *hs = from(tape, &fc->l, in[0], fc->n_in > 4 ? in[4] : NULL, fc->n_in > 5 ? in[5] : NULL, &hT, &cT);
    return flat_out(tape, hs, hT, cT);
}

static void check_from_params(kind k, int64_t N, int64_t T, int with_state) {
    int64_t D = 3, H = 2;
    from_case fc = {layer_make(k, D, H, 0, 40 + (uint64_t)k * 10 + (uint64_t)T), 4};
    tg_tensor *in[6] = {TT_RAND(TG_F64, 1, 7, N, T, D), fc.l.Wx, fc.l.Wh, fc.l.b, NULL, NULL};
    if (with_state) {
        in[fc.n_in++] = TT_RAND(TG_F64, 1, 8, N, H);
        if (k == LSTM) in[fc.n_in++] = TT_RAND(TG_F64, 1, 9, N, H);
    }
    tg_gradcheck_report r;
    int ok = tg_gradcheck(f_from, &fc, in, fc.n_in, NULL, &r);
    cr_expect(ok, "%s forward_from N=%lld T=%lld %s: %s", KIND[k], (long long)N, (long long)T,
              with_state ? "h0 (c0) params" : "zeros", r.message);
    tg_tensor_free(in[0]), tg_tensor_free(in[4]), tg_tensor_free(in[5]);
    layer_free(&fc.l);
}

Test(forward_from, gradcheck_h0_as_parameters) {
    for (kind k = RNN; k <= GRU; k++)
        for (int64_t T = 1; T <= 4; T += 3) {
            check_from_params(k, 2, T, 1);
            check_from_params(k, 1, T, 0);
        }
}

/* h0 (and c0) as op outputs of another layer: an encoder's last state starts the decoder, all on one tape;
   in: {xs_enc, xs_dec, enc Wx, Wh, b, dec Wx, Wh, b}. */
typedef struct {
    layer enc, dec;
} pair;

static tg_tensor *f_pair(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    pair *p = ctx;
    tg_tensor *hT, *cT, *dT, *dcT;
    if (!from(tape, &p->enc, in[0], NULL, NULL, &hT, &cT)) return NULL;
    tg_tensor *hs = from(tape, &p->dec, in[1], hT, cT, &dT, &dcT);
    return flat_out(tape, hs, dT, dcT);
}

Test(forward_from, gradcheck_h0_from_another_layer) {
    for (kind k = RNN; k <= GRU; k++)
        for (int64_t T = 1; T <= 3; T += 2) {
            pair p = {layer_make(k, 3, 2, 0, 60), layer_make(k, 2, 2, 0, 70)};
            tg_tensor *in[8] = {TT_RAND(TG_F64, 1, 1, 2, T + 1, 3), TT_RAND(TG_F64, 1, 2, 2, T, 2),
                                p.enc.Wx, p.enc.Wh, p.enc.b, p.dec.Wx, p.dec.Wh, p.dec.b};
            tg_gradcheck_report r;
            cr_expect(tg_gradcheck(f_pair, &p, in, 8, NULL, &r), "%s encoder -> decoder T=%lld: %s", KIND[k],
                      (long long)T, r.message);
            tg_tensor_free(in[0]), tg_tensor_free(in[1]);
            layer_free(&p.enc), layer_free(&p.dec);
        }
}

/* h_T is hs[:, T-1, :], bit for bit; the kept state and dh are not touched, even by a stateful layer. */
Test(forward_from, last_state_is_the_last_step_and_kept_state_stays) {
    for (kind k = RNN; k <= GRU; k++) {
        layer l = layer_make(k, 3, 2, 1, 80);
        tg_tensor *xs = TT_RAND(TG_F64, 0, 3, 2, 4, 3), *h0 = TT_RAND(TG_F64, 0, 4, 2, 2);
        tg_tape *tape = tg_tape_new();
        tg_tensor *hs1 = forward(tape, &l, xs); /* stateful: keeps h_T as the next forward's start */
        cr_assert(hs1, "%s", tg_last_error());
        cr_assert_eq(tg_backward(tape, tg_sum(tape, hs1), NULL), TG_OK, "%s", tg_last_error());
        tg_tensor *dh1 = tg_tensor_clone(dh_of(&l));
        tg_tape_reset(tape);
        tg_tensor *hT = NULL, *cT = NULL;
        tg_tensor *hs = from(tape, &l, xs, h0, NULL, &hT, &cT);
        cr_assert(hs && hT && (k != LSTM || cT), "%s", tg_last_error());
        tg_tensor *last = tg_select(tape, hs, 1, 3);
        cr_expect_eq(tg_tensor_hash(last), tg_tensor_hash(hT), "%s: h_T is not hs[:, T-1]", KIND[k]);
        cr_assert_eq(tg_backward(tape, tg_sum(tape, hs), NULL), TG_OK, "%s", tg_last_error());
        cr_expect_eq(tg_tensor_hash(dh_of(&l)), tg_tensor_hash(dh1), "%s: forward_from changed dh", KIND[k]);
        /* the state kept by the first forward still starts the next stateful forward: as a fresh layer's
           forward_from of that first forward's last state (same weights, same xs) */
        tg_tape_reset(tape);
        tg_tensor *hs2 = forward(tape, &l, xs);
        layer fresh = layer_make(k, 3, 2, 0, 80);
        tg_tape *t1 = tg_tape_new(), *t2 = tg_tape_new();
        tg_tensor *hT1, *cT1;
        cr_assert(from(t1, &fresh, xs, NULL, NULL, &hT1, &cT1), "%s", tg_last_error());
        tg_tensor *h_kept = tg_tensor_clone(hT1), *c_kept = cT1 ? tg_tensor_clone(cT1) : NULL;
        tg_tensor *hs_ref = from(t2, &fresh, xs, h_kept, c_kept, NULL, NULL);
        cr_assert(hs2 && hs_ref, "%s", tg_last_error());
        cr_expect_eq(tg_tensor_hash(hs2), tg_tensor_hash(hs_ref), "%s: forward_from changed the kept state", KIND[k]);
        tg_tape_free(t1), tg_tape_free(t2), tg_tape_free(tape);
        tg_tensor_free(h_kept), tg_tensor_free(c_kept);
        layer_free(&fresh), layer_free(&l);
        tg_tensor_free(xs), tg_tensor_free(h0), tg_tensor_free(dh1);
    }
}

/* ---- set_state refuses what would cut a gradient ---- */

Test(set_state, refuses_a_tensor_that_needs_a_gradient_and_takes_its_detach) {
    for (kind k = RNN; k <= GRU; k++) {
        layer l = layer_make(k, 3, 2, 0, 90);
        tg_tensor *h = TT_RAND(TG_F64, 1, 5, 2, 2), *plain = TT_RAND(TG_F64, 0, 6, 2, 2);
        char want[256];
        /* a parameter */
        cr_expect_eq(set_state(&l, h, NULL), TG_EINVAL, "%s", KIND[k]);
        snprintf(want, sizeof want, "tg_time_%s_set_state: h needs a gradient, and set_state copies it, so none "
                 "would reach it: use tg_time_%s_forward_from, or pass tg_detach(h) to cut it on purpose",
                 KIND[k], KIND[k]);
        tt_expect_error(TG_EINVAL, want);
        /* an op output that depends on one, from an encoder on the same tape */
        tg_tape *tape = tg_tape_new();
        tg_tensor *hT, *xs = TT_RAND(TG_F64, 0, 7, 2, 3, 3);
        cr_assert(from(tape, &l, xs, NULL, NULL, &hT, NULL), "%s", tg_last_error());
        cr_expect_eq(set_state(&l, hT, NULL), TG_EINVAL);
        tt_expect_error(TG_EINVAL, "h needs a gradient");
        /* the LSTM's c too */
        if (k == LSTM) {
            cr_expect_eq(set_state(&l, plain, h), TG_EINVAL);
            tt_expect_error(TG_EINVAL, "tg_time_lstm_set_state: c needs a gradient, and set_state copies it, so "
                            "none would reach it: use tg_time_lstm_forward_from, or pass tg_detach(c)");
        }
        /* its detach, and a plain tensor, are taken as before */
        cr_expect_eq(set_state(&l, tg_detach(tape, hT), NULL), TG_OK, "%s", tg_last_error());
        cr_expect_eq(set_state(&l, plain, k == LSTM ? plain : NULL), TG_OK, "%s", tg_last_error());
        tg_tape_free(tape);
        tg_tensor_free(h), tg_tensor_free(plain), tg_tensor_free(xs);
        layer_free(&l);
    }
}

/* ---- forward_from's errors: the forward's, and h0's (c0's) in its words; hT, cT NULL after ---- */

Test(forward_from, errors_name_the_function_and_h0) {
    for (kind k = RNN; k <= GRU; k++) {
        layer l = layer_make(k, 3, 2, 0, 95);
        tg_tensor *xs = TT_RAND(TG_F64, 0, 1, 4, 2, 3), *h_bad = TT_RAND(TG_F64, 0, 2, 3, 2),
                  *h32 = TT_RAND(TG_F32, 0, 3, 4, 2), *h_ok = TT_RAND(TG_F64, 0, 4, 4, 2);
        tg_tape *tape = tg_tape_new(), *other = tg_tape_new();
        char want[200];
        tg_tensor *hT = h_ok, *cT = h_ok; /* must come back NULL */
#define EXPECT_FAIL(status, ...)                                                                         \
    do {                                                                                                 \
        snprintf(want, sizeof want, __VA_ARGS__);                                                        \
        tt_expect_error(status, want);                                                                   \
        cr_expect(!hT && (k != LSTM || !cT), "%s: hT or cT not NULL after a failure", KIND[k]);        \
        hT = cT = h_ok;                                                                                  \
    } while (0)
        cr_expect_null(from(NULL, &l, xs, NULL, NULL, &hT, &cT));
        EXPECT_FAIL(TG_EINVAL, "tg_time_%s_forward_from: tape is NULL", KIND[k]);
        cr_expect_null(from(tape, &l, xs, h_bad, NULL, &hT, &cT));
        EXPECT_FAIL(TG_ESHAPE, "tg_time_%s_forward_from: h0 is (3,2), want (N,H) = (4,2) from xs (4,2,3)", KIND[k]);
        cr_expect_null(from(tape, &l, xs, h32, NULL, &hT, &cT));
        EXPECT_FAIL(TG_EDTYPE, "tg_time_%s_forward_from: h0 is f32 but the layer's weights are f64", KIND[k]);
        tg_tensor *h_other = tg_add(other, h_ok, h_ok);
        cr_expect_null(from(tape, &l, xs, h_other, NULL, &hT, &cT));
        EXPECT_FAIL(TG_EINVAL, "tg_time_%s_forward_from: h0 was recorded on another tape", KIND[k]);
        tg_tape_reset(other);
        cr_expect_null(from(other, &l, xs, h_other, NULL, &hT, &cT));
        EXPECT_FAIL(TG_ESTATE, "tg_time_%s_forward_from: h0 is an output of a recording that tg_tape_reset ended",
                    KIND[k]);
        cr_expect_null(from(tape, &l, h_ok, NULL, NULL, &hT, &cT));
        EXPECT_FAIL(TG_ESHAPE, "tg_time_%s_forward_from: xs must be 3-d (N,T,D) with D = 3, got a 2-d (4,2)", KIND[k]);
        if (k == LSTM) {
            cr_expect_null(from(tape, &l, xs, h_ok, h_bad, &hT, &cT));
            EXPECT_FAIL(TG_ESHAPE, "tg_time_lstm_forward_from: c0 is (3,2), want (N,H) = (4,2)");
        }
#undef EXPECT_FAIL
        /* NULL hT, cT: not wanted */
        cr_expect(from(tape, &l, xs, h_ok, NULL, NULL, NULL), "%s", tg_last_error());
        tg_tape_free(tape), tg_tape_free(other);
        tg_tensor_free(xs), tg_tensor_free(h_bad), tg_tensor_free(h32), tg_tensor_free(h_ok);
        layer_free(&l);
    }
}

/* ---- attention: tape against the book's hand-derived backward and finite differences ---- */

static tg_tensor *f_att(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_attention(tape, in[0], in[1], NULL);
}

static tg_status ref_att(tg_tensor *const *in, const tg_tensor *dout, tg_tensor *const *g, void *ctx) {
    (void)ctx;
    return tg_attention_ref(in[0], in[1], (tg_tensor *)dout, NULL, NULL, g[0], g[1]);
}

static void three_way_att(int64_t N, int64_t S, int64_t T, int64_t H) {
    tg_tensor *in[2] = {TT_RAND(TG_F64, 1, 11, N, S, H), TT_RAND(TG_F64, 1, 12, N, T, H)};
    char label[80];
    snprintf(label, sizeof label, "attention N=%lld S=%lld T=%lld H=%lld", (long long)N, (long long)S, (long long)T,
             (long long)H);
    tt_check3(f_att, ref_att, NULL, in, 2, label);
    tg_tensor_free(in[0]), tg_tensor_free(in[1]);
}

Test(attention, three_way_N1_S1_T1) { three_way_att(1, 1, 1, 1); }
Test(attention, three_way_N2_S3_T4) { three_way_att(2, 3, 4, 5); }
Test(attention, three_way_N3_S5_T1) { three_way_att(3, 5, 1, 2); }

/* The weights the layer hands out are the reference's, rows summing to 1; context too; f32 as well. */
Test(attention, weights_and_context_match_the_reference) {
    for (tg_dtype dt = TG_F32; dt <= TG_F64; dt++) {
        tg_tensor *enc = TT_RAND(dt, 0, 21, 2, 4, 3), *dec = TT_RAND(dt, 0, 22, 2, 5, 3);
        tg_tensor *w_ref = tg_tensor_new(dt, 3, TT_SHAPE(2, 5, 4)), *c_ref = tg_tensor_new(dt, 3, TT_SHAPE(2, 5, 3));
        tg_tape *tape = tg_tape_new();
        tg_tensor *w = NULL, *c = tg_attention(tape, enc, dec, &w);
        cr_assert(c && w, "%s", tg_last_error());
        cr_assert_eq(tg_attention_ref(enc, dec, NULL, c_ref, w_ref, NULL, NULL), TG_OK, "%s", tg_last_error());
        double tol = dt == TG_F32 ? 1e-6 : 1e-14;
        cr_expect_lt(tt_max_rel(w, 0, w_ref), tol, "weights differ from the reference");
        cr_expect_lt(tt_max_rel(c, 0, c_ref), tol, "context differs from the reference");
        for (int64_t row = 0; row < 10; row++) {
            double sum = 0;
            for (int64_t s = 0; s < 4; s++) sum += tg_tensor_get(w, row * 4 + s);
            cr_expect_lt(fabs(sum - 1), tol, "weights row %lld sums to %.17g", (long long)row, sum);
        }
        tg_tape_free(tape);
        tg_tensor_free(enc), tg_tensor_free(dec), tg_tensor_free(w_ref), tg_tensor_free(c_ref);
    }
}

Test(attention, errors) {
    tg_tensor *enc = TT_RAND(TG_F64, 0, 1, 2, 4, 3), *dec = TT_RAND(TG_F64, 0, 2, 2, 5, 3),
              *dec_H = TT_RAND(TG_F64, 0, 3, 2, 5, 2), *dec_N = TT_RAND(TG_F64, 0, 4, 3, 5, 3),
              *flat = TT_RAND(TG_F64, 0, 5, 2, 3), *dec32 = TT_RAND(TG_F32, 0, 6, 2, 5, 3),
              *empty = tg_tensor_new(TG_F64, 3, TT_SHAPE(2, 0, 3));
    tg_tape *tape = tg_tape_new(), *other = tg_tape_new();
    tg_tensor *w = enc;
    cr_expect_null(tg_attention(NULL, enc, dec, &w));
    tt_expect_error(TG_EINVAL, "tg_attention: tape is NULL");
    cr_expect_null(w, "weights not NULL after a failure");
    cr_expect_null(tg_attention(tape, NULL, dec, NULL));
    tt_expect_error(TG_EINVAL, "tg_attention: hs_enc is NULL");
    cr_expect_null(tg_attention(tape, enc, dec_H, NULL));
    tt_expect_error(TG_ESHAPE, "tg_attention: hs_enc is (2,4,3) and hs_dec (2,5,2): H differs");
    cr_expect_null(tg_attention(tape, enc, dec_N, NULL));
    tt_expect_error(TG_ESHAPE, "tg_attention: hs_enc is (2,4,3) and hs_dec (3,5,3): N differs");
    cr_expect_null(tg_attention(tape, enc, flat, NULL));
    tt_expect_error(TG_ESHAPE, "tg_attention: hs_enc is (2,4,3) and hs_dec (2,3): want 3-d (N,S,H) and (N,T,H)");
    cr_expect_null(tg_attention(tape, empty, dec, NULL));
    tt_expect_error(TG_ESHAPE, "tg_attention: hs_enc is (2,0,3) and hs_dec (2,5,3): want S and T >= 1");
    cr_expect_null(tg_attention(tape, enc, dec32, NULL));
    tt_expect_error(TG_EDTYPE, "tg_attention: hs_enc is f64 but hs_dec is f32");
    cr_expect_null(tg_attention(tape, enc, tg_add(other, dec, dec), NULL));
    tt_expect_error(TG_EINVAL, "tg_attention: hs_dec was recorded on another tape");
    /* the reference's outputs */
    tg_tensor *bad_w = TT_RAND(TG_F64, 0, 7, 2, 4, 5);
    cr_expect_eq(tg_attention_ref(enc, dec, NULL, NULL, bad_w, NULL, NULL), TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "tg_attention_ref: weights is (2,4,5), want (2,5,4)");
    cr_expect_eq(tg_attention_ref(enc, dec, dec32, NULL, NULL, NULL, NULL), TG_EDTYPE);
    tt_expect_error(TG_EDTYPE, "tg_attention_ref: dcontext is f32 but hs_enc is f64");
    cr_expect_eq(tg_attention_ref(enc, NULL, NULL, NULL, NULL, NULL, NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_attention_ref: hs_dec is NULL");
    tg_tape_free(tape), tg_tape_free(other);
    tg_tensor_free(enc), tg_tensor_free(dec), tg_tensor_free(dec_H), tg_tensor_free(dec_N), tg_tensor_free(flat);
    tg_tensor_free(dec32), tg_tensor_free(empty), tg_tensor_free(bad_w);
}

/* ---- the whole model on one tape ---- */

/* An LSTM encoder over xs_enc (N,S,D) hands h_S and c_S to an LSTM decoder over xs_dec (N,T,D); the
   decoder's states attend over the encoder's, and affine(concat(context, hs_dec)) -> cross-entropy
   against targets (N,T). in: {enc Wx, Wh, b, dec Wx, Wh, b, W, bW}. */
typedef struct {
    layer enc, dec;
    tg_tensor *W, *bW, *xs_enc, *xs_dec, *targets;
} model;

static model model_make(int64_t N, int64_t S, int64_t T, int64_t D, int64_t H, int64_t V) {
    model m = {layer_make(LSTM, D, H, 0, 300), layer_make(LSTM, D, H, 0, 310), TT_RAND(TG_F64, 1, 320, 2 * H, V),
               TT_RAND(TG_F64, 1, 321, V), TT_RAND(TG_F64, 0, 322, N, S, D), TT_RAND(TG_F64, 0, 323, N, T, D),
               tg_tensor_new(TG_I64, 2, TT_SHAPE(N, T))};
    for (int64_t i = 0; i < N * T; i++) tg_tensor_set(m.targets, i, (double)((i * 7 + 3) % V));
    return m;
}

static void model_free(model *m) {
    layer_free(&m->enc), layer_free(&m->dec);
    tg_tensor_free(m->W), tg_tensor_free(m->bW), tg_tensor_free(m->xs_enc), tg_tensor_free(m->xs_dec);
    tg_tensor_free(m->targets);
}

/* The decoder's half, from its initial state and the encoder's states, to the loss. */
static tg_tensor *decode_loss(tg_tape *tape, model *m, tg_tensor *hs_enc, tg_tensor *h0, tg_tensor *c0) {
    tg_tensor *hs_dec = h0 ? from(tape, &m->dec, m->xs_dec, h0, c0, NULL, NULL) : forward(tape, &m->dec, m->xs_dec);
    tg_tensor *context = tg_attention(tape, hs_enc, hs_dec, NULL);
    tg_tensor *both = tg_concat(tape, (tg_tensor *[]){context, hs_dec}, 2, -1);
    return tg_cross_entropy(tape, tg_linear(tape, both, m->W, m->bW), m->targets, -1);
}

static tg_tensor *f_model(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    (void)in; /* the model's own weights are the inputs */
    model *m = ctx;
    tg_tensor *hT, *cT;
    tg_tensor *hs_enc = from(tape, &m->enc, m->xs_enc, NULL, NULL, &hT, &cT);
    return hs_enc ? decode_loss(tape, m, hs_enc, hT, cT) : NULL;
}

Test(encdec, one_tape_passes_gradcheck_and_gradcheck_nodes) {
    model m = model_make(2, 3, 2, 2, 3, 4);
    tg_tensor *in[8] = {m.enc.Wx, m.enc.Wh, m.enc.b, m.dec.Wx, m.dec.Wh, m.dec.b, m.W, m.bW};
    tg_gradcheck_report r;
    cr_expect(tg_gradcheck(f_model, &m, in, 8, NULL, &r), "%s", r.message);
    tg_tape *tape = tg_tape_new();
    tg_tensor *L = f_model(tape, in, &m);
    cr_assert(L, "%s", tg_last_error());
    cr_expect(tg_gradcheck_nodes(tape, L, NULL, &r), "%s", r.message);
    tg_tape_free(tape);
    model_free(&m);
}

/* The encoder's gradients on one tape equal those of the two-tape hand-off: the decoder's tape started by
   set_state from a copy of h_S and c_S, with the encoder's states as a leaf of their own; then the
   encoder's tape backpropagated from sum(hs_enc * G) + sum(c_S * dc), G holding dL/dhs_enc with the
   decoder's dh added at step S-1. Cutting the gradient anywhere on the one-tape path breaks the equality
   (the encoder's dh share is large), as a detach of h_S there shows. */
Test(encdec, one_tape_encoder_gradients_equal_the_two_tape_hand_off) {
    int64_t N = 3, S = 4, T = 3, D = 2, H = 3, V = 5;
    model m = model_make(N, S, T, D, H, V);
    tg_tensor *w[3] = {m.enc.Wx, m.enc.Wh, m.enc.b}, *one[3];
    /* one tape */
    tg_tape *tape = tg_tape_new();
    tg_tensor *L = f_model(tape, NULL, &m);
    cr_assert(L && tg_backward(tape, L, NULL) == TG_OK, "%s", tg_last_error());
    double loss_one = tg_tensor_get(L, 0);
    for (int i = 0; i < 3; i++) one[i] = tg_tensor_new(TG_F64, tg_tensor_ndim(w[i]), tg_tensor_shape(w[i]));
    for (int i = 0; i < 3; i++)
        memcpy(tg_tensor_data(one[i]), tg_tensor_grad(w[i]), (size_t)tg_tensor_numel(w[i]) * sizeof(double));
    for (int i = 0; i < 3; i++) tg_zero_grad(w[i]);
    double norm = 0;
    for (int64_t j = 0; j < tg_tensor_numel(one[1]); j++) norm += pow(tg_tensor_get(one[1], j), 2);
    cr_expect_gt(norm, 1e-6, "the encoder's Wh got no gradient on one tape");
    /* two tapes: the decoder's first */
    tg_tape_reset(tape);
    tg_tape *enc_tape = tg_tape_new();
    tg_tensor *hT, *cT, *hs_enc = from(enc_tape, &m.enc, m.xs_enc, NULL, NULL, &hT, &cT);
    cr_assert(hs_enc, "%s", tg_last_error());
    tg_tensor *enc_leaf = tg_param_new(TG_F64, 3, tg_tensor_shape(hs_enc)), *h = tg_tensor_clone(hT),
              *c = tg_tensor_clone(cT);
    memcpy(tg_tensor_data(enc_leaf), tg_tensor_data(hs_enc), (size_t)(N * S * H) * sizeof(double));
    cr_assert_eq(set_state(&m.dec, h, c), TG_OK, "%s", tg_last_error());
    tg_tensor *L2 = decode_loss(tape, &m, enc_leaf, NULL, NULL);
    cr_assert(L2 && tg_backward(tape, L2, NULL) == TG_OK, "%s", tg_last_error());
    cr_expect_eq(tg_tensor_get(L2, 0), loss_one, "the two-tape loss differs: %.17g vs %.17g", tg_tensor_get(L2, 0),
                 loss_one);
    /* then the encoder's, from G and dc */
    tg_tensor *G = tg_tensor_clone(enc_leaf), *dc = tg_tensor_clone(tg_time_lstm_dc(m.dec.lstm));
    memcpy(tg_tensor_data(G), tg_tensor_grad(enc_leaf), (size_t)(N * S * H) * sizeof(double));
    tg_tensor *dh = tg_time_lstm_dh(m.dec.lstm);
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < H; k++) {
            int64_t at = (n * S + S - 1) * H + k;
            tg_tensor_set(G, at, tg_tensor_get(G, at) + tg_tensor_get(dh, n * H + k));
        }
    tg_tensor *L1 = tg_add(enc_tape, tg_sum(enc_tape, tg_mul(enc_tape, hs_enc, G)),
                           tg_sum(enc_tape, tg_mul(enc_tape, cT, dc)));
    cr_assert(L1 && tg_backward(enc_tape, L1, NULL) == TG_OK, "%s", tg_last_error());
    for (int i = 0; i < 3; i++)
        cr_expect_leq(tt_max_rel(w[i], 1, one[i]), 1e-12, "encoder gradient %d differs from the hand-off's: %.3g", i,
                      tt_max_rel(w[i], 1, one[i]));
    tg_tape_free(tape), tg_tape_free(enc_tape);
    for (int i = 0; i < 3; i++) tg_tensor_free(one[i]);
    tg_tensor_free(enc_leaf), tg_tensor_free(h), tg_tensor_free(c), tg_tensor_free(G), tg_tensor_free(dc);
    model_free(&m);
}
