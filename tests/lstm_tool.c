/* The C half of lstm_torch_check.py, which checks TimeLSTM and TimeGRU against PyTorch.
 *
 *   lstm_tool DIR lstm|gru
 *
 * loads DIR/xs.npy, Wx.npy, Wh.npy, b.npy (parameters), gout.npy, and h0.npy and c0.npy when they exist
 * (handed to set_state; c0 only for lstm), runs the Time layer's forward, backpropagates gout from hs,
 * and writes DIR/hs.npy, dxs.npy, dWx.npy, dWh.npy, db.npy and dh0.npy (and dc0.npy). Exits 1, saying
 * why, on any failure.
 */
#include <stdio.h>
#include <string.h>
#include "tapegrad.h"

static int fail(const char *what) {
    fprintf(stderr, "lstm_tool: %s: %s (%s)\n", what, tg_last_error(), tg_status_name(tg_last_status()));
    return 1;
}

/* DIR/name.npy, or NULL when it does not exist (optional) or fails to load (the error is set). */
static tg_tensor *load(const char *dir, const char *name, int optional) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    if (optional) {
        FILE *f = fopen(path, "rb");
        if (!f) return NULL;
        fclose(f);
    }
    return tg_load_npy(path);
}

/* t's data, or its gradient, as DIR/name.npy. */
static int save(const char *dir, const char *name, tg_tensor *t, int grad) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    tg_tensor *g =
        grad ? tg_tensor_from(tg_tensor_dtype(t), tg_tensor_ndim(t), tg_tensor_shape(t), tg_tensor_grad(t)) : t;
    tg_status s = g ? tg_save_npy(path, g) : tg_last_status();
    if (grad) tg_tensor_free(g);
    return s != TG_OK;
}

/* A parameter holding t's values; t is freed. */
static tg_tensor *as_param(tg_tensor *t) {
    if (!t) return NULL;
    tg_tensor *p = tg_param_new(tg_tensor_dtype(t), tg_tensor_ndim(t), tg_tensor_shape(t));
    if (p)
        memcpy(tg_tensor_data(p), tg_tensor_data(t),
               (size_t)tg_tensor_numel(t) * (tg_tensor_dtype(t) == TG_F32 ? 4 : 8));
    tg_tensor_free(t);
    return p;
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[2], "lstm") && strcmp(argv[2], "gru"))) {
        fprintf(stderr, "usage: %s DIR lstm|gru\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    int lstm = !strcmp(argv[2], "lstm");
    tg_tensor *P[4] = {as_param(load(dir, "xs", 0)), as_param(load(dir, "Wx", 0)), as_param(load(dir, "Wh", 0)),
                       as_param(load(dir, "b", 0))};
    tg_tensor *gout = load(dir, "gout", 0), *h0 = load(dir, "h0", 1), *c0 = lstm ? load(dir, "c0", 1) : NULL;
    if (!P[0] || !P[1] || !P[2] || !P[3] || !gout) return fail("loading the inputs");
    tg_time_lstm *L = lstm ? tg_time_lstm_new(P[1], P[2], P[3], 0) : NULL;
    tg_time_gru *R = lstm ? NULL : tg_time_gru_new(P[1], P[2], P[3], 0);
    if (!L && !R) return fail("new");
    if (h0 && (lstm ? tg_time_lstm_set_state(L, h0, c0) : tg_time_gru_set_state(R, h0))) return fail("set_state");
    tg_tape *tape = tg_tape_new();
    tg_tensor *hs = lstm ? tg_time_lstm_forward(tape, L, P[0]) : tg_time_gru_forward(tape, R, P[0]);
    if (!hs || tg_backward(tape, hs, gout)) return fail("forward or backward");
    static const char *const names[4] = {"dxs", "dWx", "dWh", "db"};
    if (save(dir, "hs", hs, 0)) return fail("hs.npy");
    for (int i = 0; i < 4; i++)
        if (save(dir, names[i], P[i], 1)) return fail(names[i]);
    tg_tensor *dh = lstm ? tg_time_lstm_dh(L) : tg_time_gru_dh(R), *dc = lstm ? tg_time_lstm_dc(L) : NULL;
    if (!dh || save(dir, "dh0", dh, 0) || (lstm && (!dc || save(dir, "dc0", dc, 0)))) return fail("dh0 or dc0");
    tg_tape_free(tape);
    tg_time_lstm_free(L), tg_time_gru_free(R);
    for (int i = 0; i < 4; i++) tg_tensor_free(P[i]);
    tg_tensor_free(gout), tg_tensor_free(h0), tg_tensor_free(c0);
    return 0;
}
