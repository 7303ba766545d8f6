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
        EXPECT_FAIL(TG_ESHAPE, "tg_time_%s_forward_from: xs is (4,2)", KIND[k]);
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
