/* The LSTM and GRU cells and their Time layers, composed from tape ops: their backward is the tape's,
 * and the book's hand-derived one (lstm_ref.c) is only there to check it against.
 *
 * Shapes, with the book's letters: x (N,D), h and c (N,H), xs (N,T,D), hs (N,T,H); LSTM Wx (D,4H),
 * Wh (H,4H), b (4H,); GRU Wx (D,3H), Wh (H,3H), b (3H,).
 *
 * Each step splits into an input side, x @ Wx + b, which needs no h, and a recurrent side. A cell does
 * both; a Time layer does the input side of all T steps as one tg_linear over xs (one GEMM of N*T rows,
 * not T GEMMs of N) and selects step t's rows of it, so the cell and the Time layer share the recurrent
 * side (lstm_step, gru_step). The carried state, dh and dc are TimeRNN's design, in recurrent.c.
 */
#include "recurrent_internal.h"
#include "tg_internal.h"
#include "tg_lstm.h"

/* What both Time layers hold. */
typedef struct {
    tg_tensor *Wx, *Wh, *b; /* borrowed: the caller's parameters */
    int64_t H;
    tg__rstate st;          /* h (and c): the state, the zero leaves, dh (and dc) */
} gated;

struct tg_time_lstm {
    gated g;
};
struct tg_time_gru {
    gated g;
};

static const char *const LSTM_STATES[2] = {"h", "c"};

/* ---- the recurrent side of one step ---------------------------------------------------------- */

/* LSTM, given xWb = x @ Wx + b (N,4H):  A = xWb + h_prev @ Wh (one tg_addmm: the GEMM adds onto a copy
   of xWb), sliced in the book's order f, g, i, o. One statement per op: C leaves the order of a call's
   arguments open, and the tape should read the same everywhere. */
static tg_tensor *lstm_step(tg_tape *tape, tg_tensor *xWb, tg_tensor *h_prev, tg_tensor *c_prev, tg_tensor *Wh,
                            int64_t H, tg_tensor **c_next) {
    tg_tensor *A = tg_addmm(tape, xWb, h_prev, Wh);
    tg_tensor *As[4], *gate[4]; /* f, g, i, o: A's four slices, then their activations */
    for (int k = 0; k < 4; k++) {
        As[k] = tg_slice(tape, A, -1, k * H, (k + 1) * H);
        gate[k] = k == 1 ? tg_tanh(tape, As[k]) : tg_sigmoid(tape, As[k]);
    }
    tg_tensor *fc = tg_mul(tape, gate[0], c_prev);
    tg_tensor *gi = tg_mul(tape, gate[1], gate[2]);
    tg_tensor *c = tg_add(tape, fc, gi); /* c_next = f * c_prev + g * i */
    *c_next = c;
    tg_tensor *h = tg_mul(tape, gate[3], tg_tanh(tape, c)); /* h_next = o * tanh(c_next) */
    /* Backward reads none of A, its slices, fc, gi (slice and add save nothing; sigmoid and tanh save
       their outputs): their memory serves the next outputs while still in cache, so that a step's
       recording keeps only the gates, c, tanh(c) and h. */
    tg__tape_release(tape, A);
    for (int k = 0; k < 4; k++) tg__tape_release(tape, As[k]);
    tg__tape_release(tape, fc), tg__tape_release(tape, gi);
    return h;
}

/* GRU, given xWb = x @ Wx + b (N,3H) and Wh's columns Wh_zr = [Whz Whr] (H,2H) and Whh (H,H). */
static tg_tensor *gru_step(tg_tape *tape, tg_tensor *xWb, tg_tensor *h_prev, tg_tensor *Wh_zr, tg_tensor *Whh,
                           int64_t H) {
    /* z and r share one addmm and one sigmoid: [z r] = sigmoid(x [Wxz Wxr] + h_prev [Whz Whr] + [bz br]) */
    tg_tensor *x_zr = tg_slice(tape, xWb, -1, 0, 2 * H);
    tg_tensor *a_zr = tg_addmm(tape, x_zr, h_prev, Wh_zr);
    tg_tensor *zr = tg_sigmoid(tape, a_zr);
    tg_tensor *z = tg_slice(tape, zr, -1, 0, H);
    tg_tensor *r = tg_slice(tape, zr, -1, H, 2 * H);
    /* h~ = tanh(x Wxh + bh + (r * h_prev) Whh): the reset gate scales h_prev before Whh, the book's form
       (PyTorch's scales h_prev Whh after it) */
    tg_tensor *x_h = tg_slice(tape, xWb, -1, 2 * H, 3 * H);
    tg_tensor *rh = tg_mul(tape, r, h_prev);
    tg_tensor *a_h = tg_addmm(tape, x_h, rh, Whh);
    tg_tensor *h_hat = tg_tanh(tape, a_h);
    /* h_next = (1 - z) * h_prev + z * h~, written h_prev + z * (h~ - h_prev): three ops, not five */
    tg_tensor *step = tg_sub(tape, h_hat, h_prev);
    tg_tensor *zs = tg_mul(tape, z, step);
    tg_tensor *h = tg_add(tape, h_prev, zs);
    /* as in lstm_step, what backward does not read goes back to the tape (addmm does not save its c,
       add saves nothing) */
    tg__tape_release(tape, x_zr), tg__tape_release(tape, a_zr);
    tg__tape_release(tape, x_h), tg__tape_release(tape, a_h), tg__tape_release(tape, zs);
    return h;
}

/* ---- the cells ------------------------------------------------------------------------------- */

tg_tensor *tg_lstm_cell(tg_tape *tape, tg_tensor *x, tg_tensor *h_prev, tg_tensor *c_prev, tg_tensor *Wx,
                        tg_tensor *Wh, tg_tensor *b, tg_tensor **c_next) {
    static const char fn[] = "tg_lstm_cell";
    if (c_next) *c_next = NULL;
    if (tg__null_arg(fn, "tape", tape) || tg__tensor_arg(fn, "x", x) || tg__tensor_arg(fn, "h_prev", h_prev) ||
        tg__tensor_arg(fn, "c_prev", c_prev) || tg__null_arg(fn, "c_next", c_next) ||
        tg__gated_bad_params(fn, 4, Wx, Wh, b) ||
        tg__cell_bad_inputs(fn, x, (tg_tensor *[]){h_prev, c_prev}, (const char *[]){"h_prev", "c_prev"}, 2, Wx,
                            Wh) ||
        tg__other_tape(fn, tape, (tg_tensor *[]){x, h_prev, c_prev, Wx, Wh, b},
                       (const char *[]){"x", "h_prev", "c_prev", "Wx", "Wh", "b"}, 6))
        return NULL;
    tg_tensor *xWb = tg_linear(tape, x, Wx, b);
    tg_tensor *h = lstm_step(tape, xWb, h_prev, c_prev, Wh, tg_tensor_shape(Wh)[0], c_next);
    tg__tape_release(tape, xWb);
    if (!h) {
        *c_next = NULL;
        tg__context("%s: ", fn); /* what is left to fail: memory, or a non-finite value */
    }
    return h;
}

/* Wh's z,r columns and its h~ columns, on the tape: backward adds each slice's gradient into its
   columns of Wh's. */
static int gru_split(tg_tape *tape, tg_tensor *Wh, int64_t H, tg_tensor **Wh_zr, tg_tensor **Whh) {
    *Wh_zr = tg_slice(tape, Wh, 1, 0, 2 * H);
    *Whh = tg_slice(tape, Wh, 1, 2 * H, 3 * H);
    return *Wh_zr && *Whh;
}

tg_tensor *tg_gru_cell(tg_tape *tape, tg_tensor *x, tg_tensor *h_prev, tg_tensor *Wx, tg_tensor *Wh,
                       tg_tensor *b) {
    static const char fn[] = "tg_gru_cell";
    if (tg__null_arg(fn, "tape", tape) || tg__tensor_arg(fn, "x", x) || tg__tensor_arg(fn, "h_prev", h_prev) ||
        tg__gated_bad_params(fn, 3, Wx, Wh, b) ||
        tg__cell_bad_inputs(fn, x, &h_prev, (const char *[]){"h_prev"}, 1, Wx, Wh) ||
        tg__other_tape(fn, tape, (tg_tensor *[]){x, h_prev, Wx, Wh, b},
                       (const char *[]){"x", "h_prev", "Wx", "Wh", "b"}, 5))
        return NULL;
    int64_t H = tg_tensor_shape(Wh)[0];
    tg_tensor *xWb = tg_linear(tape, x, Wx, b), *Wh_zr, *Whh;
    tg_tensor *h = gru_split(tape, Wh, H, &Wh_zr, &Whh) ? gru_step(tape, xWb, h_prev, Wh_zr, Whh, H) : NULL;
    tg__tape_release(tape, xWb);
    if (!h) tg__context("%s: ", fn); /* what is left to fail: memory, or a non-finite value */
    return h;
}

/* ---- the Time layers ------------------------------------------------------------------------- */

static void *gated_new(const char *fn, int G, tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b, int stateful) {
    if (tg__gated_bad_params(fn, G, Wx, Wh, b) || tg__name_weights(fn, Wx, Wh, b)) return NULL;
    gated *g = tg__calloc(sizeof *g);
    if (!g) {
        tg__fail(TG_ENOMEM, "%s: out of memory for the layer", fn);
        return NULL;
    }
    *g = (gated){Wx, Wh, b, tg_tensor_shape(Wh)[0], {0}};
    tg__rstate_init(&g->st, G == 4 ? 2 : 1, tg_tensor_dtype(Wx), g->H, stateful);
    return g;
}

static void gated_free(gated *g) {
    if (!g) return;
    tg__rstate_free(&g->st);
    tg__free(g);
}

/* Both Time layers' forwards, tape and g checked: the state's start (from, when not NULL, holds
   forward_from's h0 (and c0), else the kept state is used and kept), one linear for the input side of
   every step, the recurrent side per step, one stack; last[] receives the last step's h (and c).
   lstm says which step. */
static tg_tensor *time_forward(const char *fn, tg_tape *tape, gated *g, tg_tensor *xs, int lstm,
                               tg_tensor *const *from, tg_tensor **last) {
    if (tg__tensor_arg(fn, "xs", xs) || tg__xs_bad(fn, xs, g->Wx) ||
        tg__other_tape(fn, tape, (tg_tensor *[]){xs, g->Wx, g->Wh, g->b}, (const char *[]){"xs", "Wx", "Wh", "b"}, 4))
        return NULL;
    int64_t T = tg_tensor_shape(xs)[1], H = g->H;
    tg_tensor *s[TG__MAX_STATES] = {NULL}; /* h (and c): the initial state, then each step's */
    if (from ? tg__rstate_from(&g->st, fn, tape, xs, from, (const char *const[]){"h0", "c0"}, s)
             : tg__rstate_begin(&g->st, fn, tape, xs, s))
        return NULL;

    /* The T h's, for the stack, live in the tape's arena: a warm training loop does no malloc here. */
    tg_tensor **steps = tg__arena_alloc(tape, (size_t)T * sizeof *steps, 0);
    if (!steps) {
        tg__fail(TG_ENOMEM, "%s: out of memory for a list of T = %lld steps", fn, (long long)T);
        return NULL;
    }
    tg_tensor *xW = tg_linear(tape, xs, g->Wx, g->b); /* (N,T,GH): every step's x @ Wx + b */
    tg_tensor *Wh_zr = NULL, *Whh = NULL;
    if (!xW || (!lstm && !gru_split(tape, g->Wh, H, &Wh_zr, &Whh))) {
        tg__context("%s: the input projection: ", fn);
        return NULL;
    }
    /* An op failing inside (out of memory, a non-finite value) is told with the step it failed at. */
    for (int64_t t = 0; t < T; t++) {
        tg_tensor *xt = tg_select(tape, xW, 1, t);
        s[0] = lstm ? lstm_step(tape, xt, s[0], s[1], g->Wh, H, &s[1]) : gru_step(tape, xt, s[0], Wh_zr, Whh, H);
        tg__tape_release(tape, xt); /* addmm and slice, its consumers, do not save it */
        if (!s[0]) {
            tg__context("%s: step %lld: ", fn, (long long)t);
            return NULL;
        }
        steps[t] = s[0];
    }
    tg__tape_release(tape, xW); /* select saves nothing */
    tg_tensor *hs = tg_stack(tape, steps, (int)T, 1);
    if (!hs) tg__context("%s: stacking the %lld steps: ", fn, (long long)T);
    /* Only now, with every op done, the kept state changes: a failed forward leaves it as it was. */
    if (hs && !from) tg__rstate_end(&g->st, s);
    for (int k = 0; hs && k < g->st.n; k++) last[k] = s[k];
    return hs;
}

tg_time_lstm *tg_time_lstm_new(tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b, int stateful) {
    return gated_new("tg_time_lstm_new", 4, Wx, Wh, b, stateful);
}

void tg_time_lstm_free(tg_time_lstm *layer) { gated_free(layer ? &layer->g : NULL); }

tg_tensor *tg_time_lstm_forward(tg_tape *tape, tg_time_lstm *layer, tg_tensor *xs) {
    static const char fn[] = "tg_time_lstm_forward";
    if (tg__null_arg(fn, "tape", tape) || tg__null_arg(fn, "layer", layer)) return NULL;
    tg_tensor *last[TG__MAX_STATES];
    return time_forward(fn, tape, &layer->g, xs, 1, NULL, last);
}

tg_tensor *tg_time_lstm_forward_from(tg_tape *tape, tg_time_lstm *layer, tg_tensor *xs, tg_tensor *h0,
                                     tg_tensor *c0, tg_tensor **hT, tg_tensor **cT) {
    static const char fn[] = "tg_time_lstm_forward_from";
    tg_tensor *last[TG__MAX_STATES];
    if (hT) *hT = NULL;
    if (cT) *cT = NULL;
    if (tg__null_arg(fn, "tape", tape) || tg__null_arg(fn, "layer", layer)) return NULL;
    tg_tensor *hs = time_forward(fn, tape, &layer->g, xs, 1, (tg_tensor *const[]){h0, c0}, last);
    if (hs && hT) *hT = last[0];
    if (hs && cT) *cT = last[1];
    return hs;
}

tg_status tg_time_lstm_set_state(tg_time_lstm *layer, const tg_tensor *h, const tg_tensor *c) {
    static const char fn[] = "tg_time_lstm_set_state";
    if (tg__null_arg(fn, "layer", layer)) return tg_last_status();
    return tg__rstate_set(&layer->g.st, fn, (const tg_tensor *[]){h, c}, LSTM_STATES);
}

void tg_time_lstm_reset_state(tg_time_lstm *layer) {
    if (layer) layer->g.st.has_state = 0;
}

tg_tensor *tg_time_lstm_dh(tg_time_lstm *layer) {
    if (tg__null_arg("tg_time_lstm_dh", "layer", layer)) return NULL;
    return tg__rstate_grad(&layer->g.st, "tg_time_lstm_dh", 0);
}

tg_tensor *tg_time_lstm_dc(tg_time_lstm *layer) {
    if (tg__null_arg("tg_time_lstm_dc", "layer", layer)) return NULL;
    return tg__rstate_grad(&layer->g.st, "tg_time_lstm_dc", 1);
}

tg_time_gru *tg_time_gru_new(tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b, int stateful) {
    return gated_new("tg_time_gru_new", 3, Wx, Wh, b, stateful);
}

void tg_time_gru_free(tg_time_gru *layer) { gated_free(layer ? &layer->g : NULL); }

tg_tensor *tg_time_gru_forward(tg_tape *tape, tg_time_gru *layer, tg_tensor *xs) {
    static const char fn[] = "tg_time_gru_forward";
    if (tg__null_arg(fn, "tape", tape) || tg__null_arg(fn, "layer", layer)) return NULL;
    tg_tensor *last[TG__MAX_STATES];
    return time_forward(fn, tape, &layer->g, xs, 0, NULL, last);
}

tg_tensor *tg_time_gru_forward_from(tg_tape *tape, tg_time_gru *layer, tg_tensor *xs, tg_tensor *h0,
                                    tg_tensor **hT) {
    static const char fn[] = "tg_time_gru_forward_from";
    tg_tensor *last[TG__MAX_STATES];
    if (hT) *hT = NULL;
    if (tg__null_arg(fn, "tape", tape) || tg__null_arg(fn, "layer", layer)) return NULL;
    tg_tensor *hs = time_forward(fn, tape, &layer->g, xs, 0, (tg_tensor *const[]){h0}, last);
    if (hs && hT) *hT = last[0];
    return hs;
}

tg_status tg_time_gru_set_state(tg_time_gru *layer, const tg_tensor *h) {
    static const char fn[] = "tg_time_gru_set_state";
    if (tg__null_arg(fn, "layer", layer)) return tg_last_status();
    return tg__rstate_set(&layer->g.st, fn, &h, LSTM_STATES);
}

void tg_time_gru_reset_state(tg_time_gru *layer) {
    if (layer) layer->g.st.has_state = 0;
}

tg_tensor *tg_time_gru_dh(tg_time_gru *layer) {
    if (tg__null_arg("tg_time_gru_dh", "layer", layer)) return NULL;
    return tg__rstate_grad(&layer->g.st, "tg_time_gru_dh", 0);
}
