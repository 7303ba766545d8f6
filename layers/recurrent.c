/* What the recurrent layers share: argument checks that speak a layer's letters, and the carried state
 * of a Time layer (TimeRNN's, TimeLSTM's and TimeGRU's). The state is TimeRNN's design (rnn.c's opening
 * comment says why it is made so): an (N,H) parameter leaf of zeros per state and batch size, never
 * freed before the layer, from which every forward starts (zero, or zero + detach(state)), so that
 * backward leaves dL/dstate0 in its gradient; the state itself enters as a constant (truncated BPTT).
 */
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include "recurrent_internal.h"
#include "tg_internal.h"

int tg__null_arg(const char *fn, const char *name, const void *p) {
    if (p) return 0;
    tg__null(fn, name);
    return 1;
}

int tg__tensor_arg(const char *fn, const char *name, const tg_tensor *t) { return tg__arg(fn, name, t) != TG_OK; }

int tg__other_tape(const char *fn, const tg_tape *tape, tg_tensor *const *t, const char *const *names, int n) {
    for (int k = 0; k < n; k++)
        if (t[k]->tape && t[k]->tape != tape) {
            tg__fail(TG_EINVAL, "%s: %s was recorded on another tape", fn, names[k]);
            return 1;
        }
    return 0;
}

int tg__weights_bad_dtype(const char *fn, const tg_tensor *Wx, const tg_tensor *Wh, const tg_tensor *b) {
    tg_dtype dt = tg_tensor_dtype(Wx);
    if (tg_tensor_dtype(Wh) == dt && tg_tensor_dtype(b) == dt) return 0;
    tg__fail(TG_EDTYPE, "%s: Wx is %s, Wh %s and b %s: want one dtype", fn, tg__dtype_name(dt),
             tg__dtype_name(tg_tensor_dtype(Wh)), tg__dtype_name(tg_tensor_dtype(b)));
    return 1;
}

int tg__same_shape(const tg_tensor *t, int ndim, const int64_t *shape) {
    if (tg_tensor_ndim(t) != ndim) return 0;
    for (int i = 0; i < ndim; i++)
        if (tg_tensor_shape(t)[i] != shape[i]) return 0;
    return 1;
}

static const char *shape_of(const tg_tensor *t, char *buf) {
    return tg__shape_str(tg_tensor_ndim(t), tg_tensor_shape(t), buf);
}

/* ---- argument checks ------------------------------------------------------------------------- */

int tg__gated_bad_params(const char *fn, int G, const tg_tensor *Wx, const tg_tensor *Wh, const tg_tensor *b) {
    char s1[TG__SHAPE_STR], s2[TG__SHAPE_STR];
    if (tg__tensor_arg(fn, "Wx", Wx) || tg__tensor_arg(fn, "Wh", Wh) || tg__tensor_arg(fn, "b", b)) return 1;
    /* H from Wh: its rows are H whatever else is wrong, so every message can say what H is. */
    int64_t H = tg_tensor_ndim(Wh) == 2 && tg_tensor_shape(Wh)[0] <= INT64_MAX / G ? tg_tensor_shape(Wh)[0] : -1;
    if (H < 0 || tg_tensor_shape(Wh)[1] != G * H) {
        tg__fail(TG_ESHAPE, "%s: Wh is %s, want (H,%dH)", fn, shape_of(Wh, s1), G);
        return 1;
    }
    if (tg_tensor_ndim(Wx) != 2 || tg_tensor_shape(Wx)[1] != G * H) {
        tg__fail(TG_ESHAPE, "%s: Wx is %s but Wh is %s: want Wx (D,%dH) with H = %lld", fn, shape_of(Wx, s1),
                 shape_of(Wh, s2), G, (long long)H);
        return 1;
    }
    if (!tg__same_shape(b, 1, (int64_t[]){G * H})) {
        tg__fail(TG_ESHAPE, "%s: b is %s but Wh is %s: want b (%dH,) with H = %lld", fn, shape_of(b, s1),
                 shape_of(Wh, s2), G, (long long)H);
        return 1;
    }
    return tg__weights_bad_dtype(fn, Wx, Wh, b);
}

int tg__cell_bad_inputs(const char *fn, tg_tensor *x, tg_tensor *const *st, const char *const *names, int n,
                        const tg_tensor *Wx, const tg_tensor *Wh) {
    char s1[TG__SHAPE_STR], s2[TG__SHAPE_STR], s3[TG__SHAPE_STR];
    int64_t D = tg_tensor_shape(Wx)[0], H = tg_tensor_shape(Wh)[0];
    if (tg_tensor_ndim(x) != 2 || tg_tensor_shape(x)[1] != D) {
        tg__fail(TG_ESHAPE, "%s: x is %s but Wx is %s: want x (N,D) with D = %lld", fn, shape_of(x, s1),
                 shape_of(Wx, s2), (long long)D);
        return 1;
    }
    int64_t N = tg_tensor_shape(x)[0];
    for (int k = 0; k < n; k++)
        if (!tg__same_shape(st[k], 2, (int64_t[]){N, H})) {
            tg__fail(TG_ESHAPE, "%s: %s is %s, want (N,H) = (%lld,%lld) from x %s and Wh %s", fn, names[k],
                     shape_of(st[k], s1), (long long)N, (long long)H, shape_of(x, s2), shape_of(Wh, s3));
            return 1;
        }
    tg_dtype dt = tg_tensor_dtype(Wx);
    const char *what = tg_tensor_dtype(x) != dt ? "x" : NULL;
    const tg_tensor *bad = x;
    for (int k = 0; !what && k < n; k++)
        if (tg_tensor_dtype(st[k]) != dt) what = names[k], bad = st[k];
    if (what) {
        tg__fail(TG_EDTYPE, "%s: %s is %s but the weights are %s", fn, what, tg__dtype_name(tg_tensor_dtype(bad)),
                 tg__dtype_name(dt));
        return 1;
    }
    return 0;
}

int tg__xs_bad(const char *fn, const tg_tensor *xs, const tg_tensor *Wx) {
    char s1[TG__SHAPE_STR], s2[TG__SHAPE_STR];
    int64_t D = tg_tensor_shape(Wx)[0];
    if (tg_tensor_ndim(xs) != 3) { /* a (N,D) batch of single steps, most likely: D is not what is wrong */
        tg__fail(TG_ESHAPE, "%s: xs must be 3-d (N,T,D) with D = %lld, got a %d-d %s", fn, (long long)D,
                 tg_tensor_ndim(xs), shape_of(xs, s1));
        return 1;
    }
    if (tg_tensor_shape(xs)[2] != D) {
        tg__fail(TG_ESHAPE, "%s: xs is %s but Wx is %s: want xs (N,T,D) with D = %lld", fn, shape_of(xs, s1),
                 shape_of(Wx, s2), (long long)D);
        return 1;
    }
    if (tg_tensor_dtype(xs) != tg_tensor_dtype(Wx)) {
        tg__fail(TG_EDTYPE, "%s: xs is %s but the layer's weights are %s", fn, tg__dtype_name(tg_tensor_dtype(xs)),
                 tg__dtype_name(tg_tensor_dtype(Wx)));
        return 1;
    }
    int64_t T = tg_tensor_shape(xs)[1];
    if (T < 1 || T > INT_MAX) {
        tg__fail(TG_ESHAPE, "%s: xs is %s: T = %lld steps, want 1..%d", fn, shape_of(xs, s1), (long long)T, INT_MAX);
        return 1;
    }
    return 0;
}

int tg__name_weights(const char *fn, tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b) {
    return tg__name_once(fn, Wx, "Wx") || tg__name_once(fn, Wh, "Wh") || tg__name_once(fn, b, "b");
}

/* ---- the carried state ----------------------------------------------------------------------- */

void tg__rstate_init(tg__rstate *s, int n, tg_dtype dtype, int64_t H, int stateful) {
    memset(s, 0, sizeof *s);
    s->n = n;
    s->dtype = dtype;
    s->H = H;
    s->stateful = stateful != 0;
    s->last = -1;
}

void tg__rstate_free(tg__rstate *s) {
    for (int k = 0; k < s->n; k++) tg_tensor_free(s->state[k]);
    for (int i = 0; i < s->n_leaves; i++)
        for (int k = 0; k < s->n; k++) {
            tg_tensor_free(s->leaves[i].zero[k]);
            tg_tensor_free(s->leaves[i].d[k]);
        }
    tg__free(s->leaves);
}

/* Finds, or makes, the leaves of batch size N into *leaf. A failure leaves s as it was (the leaf array
   may have grown, with the same leaves in it). */
static tg_status find_leaf(tg__rstate *s, const char *fn, int64_t N, int *leaf) {
    int64_t shape[2] = {N, s->H};
    int i = 0;
    while (i < s->n_leaves && tg_tensor_shape(s->leaves[i].zero[0])[0] != N) i++;
    if (i == s->n_leaves) {
        if (i == s->cap_leaves) {
            int cap = s->cap_leaves ? 2 * s->cap_leaves : 4;
            tg__zleaf *leaves = i < INT_MAX / 2 ? tg__malloc((size_t)cap * sizeof *leaves) : NULL;
            if (!leaves)
                return tg__fail(TG_ENOMEM, "%s: out of memory for the (%lld,%lld) initial state", fn, (long long)N,
                                (long long)s->H);
            if (i) memcpy(leaves, s->leaves, (size_t)i * sizeof *leaves);
            tg__free(s->leaves);
            s->leaves = leaves;
            s->cap_leaves = cap;
        }
        tg__zleaf l = {{NULL}, {NULL}};
        int ok = 1;
        for (int k = 0; ok && k < s->n; k++) {
            l.zero[k] = tg_param_new(s->dtype, 2, shape);
            l.d[k] = l.zero[k] ? tg_tensor_new(s->dtype, 2, shape) : NULL;
            ok = l.d[k] && !tg__name_once(fn, l.zero[k], k ? "c0" : "h0");
        }
        if (!ok) {
            for (int k = 0; k < s->n; k++) tg_tensor_free(l.zero[k]), tg_tensor_free(l.d[k]);
            return tg__fail(TG_ENOMEM, "%s: out of memory for the (%lld,%lld) initial state", fn, (long long)N,
                            (long long)s->H);
        }
        s->leaves[s->n_leaves++] = l;
    }
    *leaf = i;
    return TG_OK;
}

/* find_leaf, and the state buffers of a stateful layer sized for N. */
static tg_status size_buffers(tg__rstate *s, const char *fn, int64_t N, int *leaf) {
    int64_t shape[2] = {N, s->H};
    tg_status st = find_leaf(s, fn, N, leaf);
    if (st) return st;
    if (s->stateful && (!s->state[0] || tg_tensor_shape(s->state[0])[0] != N)) {
        /* Only reached without a state (a kept state of another N is refused before): safe to drop. */
        tg_tensor *state[TG__MAX_STATES] = {NULL};
        int ok = 1;
        for (int k = 0; ok && k < s->n; k++) ok = (state[k] = tg_tensor_new(s->dtype, 2, shape)) != NULL;
        if (!ok) {
            for (int k = 0; k < s->n; k++) tg_tensor_free(state[k]);
            return tg__fail(TG_ENOMEM, "%s: out of memory for the (%lld,%lld) state", fn, (long long)N,
                            (long long)s->H);
        }
        for (int k = 0; k < s->n; k++) tg_tensor_free(s->state[k]), s->state[k] = state[k];
    }
    return TG_OK;
}

tg_status tg__rstate_begin(tg__rstate *s, const char *fn, tg_tape *tape, const tg_tensor *xs, tg_tensor **init) {
    char s1[TG__SHAPE_STR], s2[TG__SHAPE_STR];
    int64_t N = tg_tensor_shape(xs)[0];
    if (s->has_state && tg_tensor_shape(s->state[0])[0] != N)
        return tg__fail(TG_ESHAPE, "%s: the layer's state is %s (from set_state or the last stateful forward) "
                        "but xs %s has N = %lld; reset_state or set_state first", fn, shape_of(s->state[0], s1),
                        shape_of(xs, s2), (long long)N);
    int leaf = -1;
    tg_status st = size_buffers(s, fn, N, &leaf);
    if (st) return st;
    s->last = leaf;
    for (int k = 0; k < s->n; k++) {
        tg_tensor *zero = s->leaves[leaf].zero[k];
        tg_zero_grad(zero); /* dL/dstate0 starts from this forward */
        /* The detach copies the state into the tape: the buffer may change before this backward. */
        init[k] = s->has_state ? tg_add(tape, zero, tg_detach(tape, s->state[k])) : zero;
        if (!init[k]) return tg__context("%s: the initial state: ", fn); /* memory, or a non-finite state */
    }
    return TG_OK;
}

tg_status tg__rstate_from(tg__rstate *s, const char *fn, tg_tape *tape, const tg_tensor *xs, tg_tensor *const *given,
                          const char *const *names, tg_tensor **init) {
    char s1[TG__SHAPE_STR], s2[TG__SHAPE_STR];
    int64_t N = tg_tensor_shape(xs)[0];
    for (int k = 0; k < s->n; k++) {
        if (!given[k]) continue;
        if (tg__tensor_arg(fn, names[k], given[k]) ||
            tg__other_tape(fn, tape, (tg_tensor *const[]){given[k]}, &names[k], 1))
            return tg_last_status();
        if (!tg__same_shape(given[k], 2, (int64_t[]){N, s->H}))
            return tg__fail(TG_ESHAPE, "%s: %s is %s, want (N,H) = (%lld,%lld) from xs %s and the layer's H", fn,
                            names[k], shape_of(given[k], s1), (long long)N, (long long)s->H, shape_of(xs, s2));
        if (tg_tensor_dtype(given[k]) != s->dtype)
            return tg__fail(TG_EDTYPE, "%s: %s is %s but the layer's weights are %s", fn, names[k],
                            tg__dtype_name(tg_tensor_dtype(given[k])), tg__dtype_name(s->dtype));
    }
    int leaf = -1;
    for (int k = 0; k < s->n; k++) {
        /* Zeros as a constant of the tape: a copy of N's zero leaf, whose gradient (tg_time_*_dh) this
           forward leaves alone. */
        if (!given[k] && leaf < 0 && find_leaf(s, fn, N, &leaf)) return tg_last_status();
        init[k] = given[k] ? given[k] : tg_detach(tape, s->leaves[leaf].zero[k]);
        if (!init[k]) return tg__context("%s: the initial state: ", fn);
    }
    return TG_OK;
}

void tg__rstate_end(tg__rstate *s, tg_tensor *const *last) {
    if (!s->stateful) return;
    for (int k = 0; k < s->n; k++)
        memcpy(tg_tensor_data(s->state[k]), tg_tensor_data(last[k]),
               (size_t)tg_tensor_numel(last[k]) * tg__dsize(s->dtype));
    s->has_state = 1;
}

tg_status tg__rstate_set(tg__rstate *s, const char *fn, const tg_tensor *const *st, const char *const *names) {
    char s1[TG__SHAPE_STR], s2[TG__SHAPE_STR];
    for (int k = 0; k < s->n; k++) /* st[1..) may be NULL (zeros), never stale */
        if ((k == 0 || st[k]) && tg__tensor_arg(fn, names[k], st[k])) return tg_last_status();
    /* The copy would cut the gradient without a word: an encoder handing its h to a decoder this way
       trains with an encoder gradient of exactly 0. */
    const char *cut = strstr(fn, "_set_state");
    for (int k = 0; k < s->n; k++)
        if (st[k] && tg_tensor_requires_grad(st[k]))
            return tg__fail(TG_EINVAL, "%s: %s needs a gradient, and set_state copies it, so none would reach it: "
                            "use %.*s_forward_from, or pass tg_detach(%s) to cut it on purpose", fn, names[k],
                            cut ? (int)(cut - fn) : (int)strlen(fn), fn, names[k]);
    const tg_tensor *h = st[0];
    if (tg_tensor_ndim(h) != 2 || tg_tensor_shape(h)[1] != s->H)
        return tg__fail(TG_ESHAPE, "%s: %s is %s, want (N,H) with H = %lld", fn, names[0], shape_of(h, s1),
                        (long long)s->H);
    for (int k = 0; k < s->n; k++) {
        if (!st[k]) continue;
        if (k > 0 && !tg__same_shape(st[k], 2, tg_tensor_shape(h)))
            return tg__fail(TG_ESHAPE, "%s: %s is %s but %s is %s: want %s (N,H) = %s", fn, names[k],
                            shape_of(st[k], s1), names[0], shape_of(h, s2), names[k], shape_of(h, s2));
        if (tg_tensor_dtype(st[k]) != s->dtype)
            return tg__fail(TG_EDTYPE, "%s: %s is %s but the layer's weights are %s", fn, names[k],
                            tg__dtype_name(tg_tensor_dtype(st[k])), tg__dtype_name(s->dtype));
    }
    if (!s->state[0] || tg_tensor_shape(s->state[0])[0] != tg_tensor_shape(h)[0]) {
        /* No recording holds the state buffers (forward copies them into the tape), so they may go. */
        tg_tensor *fresh[TG__MAX_STATES] = {NULL};
        int ok = 1;
        for (int k = 0; ok && k < s->n; k++) ok = (fresh[k] = tg_tensor_new(s->dtype, 2, tg_tensor_shape(h))) != NULL;
        if (!ok) {
            for (int k = 0; k < s->n; k++) tg_tensor_free(fresh[k]);
            return tg__fail(TG_ENOMEM, "%s: out of memory for a %s state", fn, shape_of(h, s1));
        }
        for (int k = 0; k < s->n; k++) tg_tensor_free(s->state[k]), s->state[k] = fresh[k];
    }
    size_t bytes = (size_t)tg_tensor_numel(h) * tg__dsize(s->dtype);
    for (int k = 0; k < s->n; k++) {
        if (st[k]) memcpy(tg_tensor_data(s->state[k]), st[k]->data, bytes);
        else memset(tg_tensor_data(s->state[k]), 0, bytes);
    }
    s->has_state = 1;
    return TG_OK;
}

tg_tensor *tg__rstate_grad(tg__rstate *s, const char *fn, int k) {
    if (s->last < 0) {
        tg__fail(TG_ESTATE, "%s: no forward has run: there is no initial state to differentiate", fn);
        return NULL;
    }
    tg__zleaf *l = &s->leaves[s->last];
    memcpy(tg_tensor_data(l->d[k]), tg_tensor_grad(l->zero[k]), (size_t)tg_tensor_numel(l->d[k]) * tg__dsize(s->dtype));
    return l->d[k];
}
