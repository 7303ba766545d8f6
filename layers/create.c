/* Layers that own their weights: made in a parameter list, initialised as the book does (tg_layers.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "tg_layers.h"
#include "train_internal.h"

/* Up to three weights "<prefix>.<name[i]>" of shape (rows[i], cols[i]) (cols 0: a vector), each filled
   with N(0, 1) * std[i] (std 0: zeros), into w[]. 0 on failure, with the list as it was and rng unmoved. */
static int make(const char *fn, tg_params *ps, const char *prefix, tg_dtype dtype, int n, const char *const *name,
                const int64_t *rows, const int64_t *cols, const double *std, tg_rng *rng, tg_tensor **w) {
    if (!ps || !prefix || !rng) return tg__null(fn, !ps ? "params" : !prefix ? "prefix" : "rng"), 0;
    for (int i = 0; i < n; i++)
        if (rows[i] < 1 || cols[i] < 0)
            return tg__fail(TG_EINVAL, "%s: \"%s\": sizes must be >= 1, got %s (%lld,%lld)", fn, prefix, name[i],
                            (long long)rows[i], (long long)cols[i]), 0;
    if (strlen(prefix) > 200) return tg__fail(TG_EINVAL, "%s: the prefix is %zu bytes, want <= 200", fn, strlen(prefix)), 0;
    int before = tg_params_count(ps);
    tg_rng saved = *rng;
    for (int i = 0; i < n; i++) {
        char full[256];
        snprintf(full, sizeof full, "%s.%s", prefix, name[i]);
        int64_t shape[2] = {rows[i], cols[i]};
        w[i] = tg_params_create(ps, full, dtype, cols[i] ? 2 : 1, shape);
        if (!w[i] || (std[i] > 0 && tg_tensor_fill_normal(w[i], 0, std[i], rng))) {
            tg__context("%s: ", fn);
            tg__params_truncate(ps, before);
            *rng = saved;
            return 0;
        }
    }
    return 1;
}

/* The three weights of a gated recurrent layer with g gates (RNN 1, GRU 3, LSTM 4). */
static int recurrent(const char *fn, tg_params *ps, const char *prefix, tg_dtype dtype, int64_t D, int64_t H, int g,
                     tg_rng *rng, tg_tensor **w) {
    static const char *const names[] = {"Wx", "Wh", "b"};
    if (D < 1 || H < 1) return tg__fail(TG_EINVAL, "%s: D %lld and H %lld must be >= 1", fn, (long long)D, (long long)H), 0;
    int64_t rows[] = {D, H, g * H}, cols[] = {g * H, g * H, 0};
    double std[] = {1 / sqrt((double)D), 1 / sqrt((double)H), 0};
    return make(fn, ps, prefix, dtype, 3, names, rows, cols, std, rng, w);
}

/* The layer's constructor failing (it cannot, for weights of the right shapes, but for memory): the weights
   go too. */
#define CREATE(kind, g)                                                                                      \
    tg_time_##kind *tg_time_##kind##_create(tg_params *ps, const char *prefix, tg_dtype dtype, int64_t D,     \
                                            int64_t H, int stateful, tg_rng *rng) {                         \
        static const char fn[] = "tg_time_" #kind "_create";                                                \
        tg_tensor *w[3];                                                                                    \
        int before = tg_params_count(ps);                                                                   \
        if (!recurrent(fn, ps, prefix, dtype, D, H, g, rng, w)) return NULL;                               \
        tg_time_##kind *layer = tg_time_##kind##_new(w[0], w[1], w[2], stateful);                           \
        if (!layer) tg__context("%s: ", fn), tg__params_truncate(ps, before);                              \
        return layer;                                                                                       \
    }
CREATE(rnn, 1)
CREATE(lstm, 4)
CREATE(gru, 3)

tg_tensor *tg_linear_create(tg_params *ps, const char *prefix, tg_dtype dtype, int64_t in, int64_t out, tg_rng *rng,
                            tg_tensor **b) {
    static const char fn[] = "tg_linear_create";
    static const char *const names[] = {"W", "b"};
    tg_tensor *w[2] = {NULL, NULL};
    if (b) *b = NULL;
    if (in < 1 || out < 1)
        return tg__fail(TG_EINVAL, "%s: in %lld and out %lld must be >= 1", fn, (long long)in, (long long)out), NULL;
    int64_t rows[] = {in, out}, cols[] = {out, 0};
    double std[] = {1 / sqrt((double)in), 0};
    if (!make(fn, ps, prefix, dtype, b ? 2 : 1, names, rows, cols, std, rng, w)) return NULL;
    if (b) *b = w[1];
    return w[0];
}
