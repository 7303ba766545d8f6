/* Attention (tg_attention.h): the composed layer, then the book's TimeAttention with its hand-derived
 * backward, which checks it.
 */
#include <math.h>
#include <string.h>
#include "recurrent_internal.h"
#include "tg_attention.h"
#include "tg_internal.h"

/* hs_enc (N,S,H) and hs_dec (N,T,H), both there and fresh: 0, else 1 with the thread's error set. */
static int bad_states(const char *fn, const tg_tensor *enc, const tg_tensor *dec) {
    char s1[TG__SHAPE_STR], s2[TG__SHAPE_STR];
    if (tg__tensor_arg(fn, "hs_enc", enc) || tg__tensor_arg(fn, "hs_dec", dec)) return 1;
    const int64_t *e = tg_tensor_shape(enc), *d = tg_tensor_shape(dec);
    const char *why = tg_tensor_ndim(enc) != 3 || tg_tensor_ndim(dec) != 3 ? "want 3-d (N,S,H) and (N,T,H)"
                      : e[0] != d[0]                                        ? "N differs"
                      : e[2] != d[2]                                        ? "H differs"
                      : e[1] < 1 || d[1] < 1                                ? "want S and T >= 1"
                                                                            : NULL;
    if (why) {
        tg__fail(TG_ESHAPE, "%s: hs_enc is %s and hs_dec %s: %s", fn, tg__shape_str(tg_tensor_ndim(enc), e, s1),
                 tg__shape_str(tg_tensor_ndim(dec), d, s2), why);
        return 1;
    }
    if (tg_tensor_dtype(enc) != tg_tensor_dtype(dec)) {
        tg__fail(TG_EDTYPE, "%s: hs_enc is %s but hs_dec is %s", fn, tg__dtype_name(tg_tensor_dtype(enc)),
                 tg__dtype_name(tg_tensor_dtype(dec)));
        return 1;
    }
    return 0;
}

tg_tensor *tg_attention(tg_tape *tape, tg_tensor *hs_enc, tg_tensor *hs_dec, tg_tensor **weights) {
    static const char fn[] = "tg_attention";
    if (weights) *weights = NULL;
    if (tg__null_arg(fn, "tape", tape) || bad_states(fn, hs_enc, hs_dec) ||
        tg__other_tape(fn, tape, (tg_tensor *[]){hs_enc, hs_dec}, (const char *[]){"hs_enc", "hs_dec"}, 2))
        return NULL;
    tg_tensor *encT = tg_transpose(tape, hs_enc, 1, 2);      /* (N,H,S) */
    tg_tensor *score = tg_matmul(tape, hs_dec, encT);        /* (N,T,S): each decoder state against each encoder one */
    tg_tensor *a = tg_softmax(tape, score, -1);              /* over the S encoder steps */
    tg_tensor *context = tg_matmul(tape, a, hs_enc);         /* (N,T,H): the weighted sum */
    tg__tape_release(tape, score);                           /* softmax's backward reads its output only */
    if (!context) {
        tg__context("%s: ", fn); /* memory, or a non-finite value */
        return NULL;
    }
    if (weights) *weights = a;
    return context;
}

/* ---- the reference: the book's TimeAttention, one decoder step at a time ---- */

static double ld(const tg_tensor *t, int64_t i) {
    return tg_tensor_dtype(t) == TG_F32 ? ((const float *)tg_tensor_data((tg_tensor *)t))[i]
                                        : ((const double *)tg_tensor_data((tg_tensor *)t))[i];
}

static void st(tg_tensor *t, int64_t i, double v) {
    if (tg_tensor_dtype(t) == TG_F32) ((float *)tg_tensor_data(t))[i] = (float)v;
    else ((double *)tg_tensor_data(t))[i] = v;
}

/* An output of shape (ndim 3: a, b, c) and dt, or NULL: 0, else 1 with the error set naming it. */
static int bad_out(const char *fn, const char *name, const tg_tensor *t, tg_dtype dt, int64_t a, int64_t b, int64_t c) {
    char s1[TG__SHAPE_STR], s2[TG__SHAPE_STR];
    if (!t) return 0;
    if (tg__tensor_arg(fn, name, t)) return 1;
    int64_t want[3] = {a, b, c};
    if (!tg__same_shape(t, 3, want)) {
        tg__fail(TG_ESHAPE, "%s: %s is %s, want %s", fn, name, tg__shape_str(tg_tensor_ndim(t), tg_tensor_shape(t), s1),
                 tg__shape_str(3, want, s2));
        return 1;
    }
    if (tg_tensor_dtype(t) != dt) {
        tg__fail(TG_EDTYPE, "%s: %s is %s but hs_enc is %s", fn, name, tg__dtype_name(tg_tensor_dtype(t)),
                 tg__dtype_name(dt));
        return 1;
    }
    return 0;
}

tg_status tg_attention_ref(tg_tensor *hs_enc, tg_tensor *hs_dec, tg_tensor *dcontext, tg_tensor *context,
                           tg_tensor *weights, tg_tensor *dhs_enc, tg_tensor *dhs_dec) {
    static const char fn[] = "tg_attention_ref";
    if (bad_states(fn, hs_enc, hs_dec)) return tg_last_status();
    const int64_t N = tg_tensor_shape(hs_enc)[0], S = tg_tensor_shape(hs_enc)[1], H = tg_tensor_shape(hs_enc)[2],
                  T = tg_tensor_shape(hs_dec)[1];
    tg_dtype dt = tg_tensor_dtype(hs_enc);
    if (bad_out(fn, "dcontext", dcontext, dt, N, T, H) || bad_out(fn, "context", context, dt, N, T, H) ||
        bad_out(fn, "weights", weights, dt, N, T, S) || bad_out(fn, "dhs_enc", dhs_enc, dt, N, S, H) ||
        bad_out(fn, "dhs_dec", dhs_dec, dt, N, T, H))
        return tg_last_status();
    /* per row n: a, da (S each), and dhs_enc[n] summed over the T steps in double */
    double *a = tg__malloc((size_t)(2 * S + S * H) * sizeof *a);
    if (!a) return tg__fail(TG_ENOMEM, "%s: out of memory for %lld doubles of scratch", fn, (long long)(2 * S + S * H));
    double *da = a + S, *denc = da + S;
#define ENC(n, s, h) ld(hs_enc, ((n) * S + (s)) * H + (h))
#define DEC(n, t, h) ld(hs_dec, ((n) * T + (t)) * H + (h))
    for (int64_t n = 0; n < N; n++) {
        memset(denc, 0, (size_t)(S * H) * sizeof *denc);
        for (int64_t t = 0; t < T; t++) {
            /* AttentionWeight: a = softmax(hs . h), shifted by the max as the book's softmax */
            double max = -INFINITY, sum = 0;
            for (int64_t s = 0; s < S; s++) {
                a[s] = 0;
                for (int64_t h = 0; h < H; h++) a[s] += ENC(n, s, h) * DEC(n, t, h);
                max = fmax(max, a[s]);
            }
            for (int64_t s = 0; s < S; s++) sum += a[s] = exp(a[s] - max);
            for (int64_t s = 0; s < S; s++) a[s] /= sum;
            if (weights)
                for (int64_t s = 0; s < S; s++) st(weights, (n * T + t) * S + s, a[s]);
            /* WeightSum: c = sum_s a[s] hs[s] */
            for (int64_t h = 0; context && h < H; h++) {
                double c = 0;
                for (int64_t s = 0; s < S; s++) c += a[s] * ENC(n, s, h);
                st(context, (n * T + t) * H + h, c);
            }
            if (!dcontext) continue;
            /* WeightSum's backward: dt = dc repeated over s; dhs = dt * ar; da = sum_h dt * hs */
            double dot = 0;
            for (int64_t s = 0; s < S; s++) {
                da[s] = 0;
                for (int64_t h = 0; h < H; h++) {
                    double dc = ld(dcontext, (n * T + t) * H + h);
                    da[s] += dc * ENC(n, s, h);
                    denc[s * H + h] += a[s] * dc;
                }
                dot += a[s] * da[s];
            }
            /* Softmax's backward, then AttentionWeight's: ds = a (da - sum a da); dhs += ds h; dh = sum_s ds hs */
            for (int64_t s = 0; s < S; s++) da[s] = a[s] * (da[s] - dot);
            for (int64_t h = 0; h < H; h++) {
                double dh = 0;
                for (int64_t s = 0; s < S; s++) {
                    dh += da[s] * ENC(n, s, h);
                    denc[s * H + h] += da[s] * DEC(n, t, h);
                }
                if (dhs_dec) st(dhs_dec, (n * T + t) * H + h, dh);
            }
        }
        for (int64_t i = 0; dcontext && dhs_enc && i < S * H; i++) st(dhs_enc, n * S * H + i, denc[i]);
    }
#undef ENC
#undef DEC
    tg__free(a);
    return TG_OK;
}
