/* libFuzzer target: the op front door. The bytes are a program of public calls on a few slots: tensors
 * of any dtype (i64 included), rank and dims; every op, with arbitrary axes, indices, counts, scalars and
 * dtypes; backward with and without grad_out; resets, after which the slots still hold the ended
 * recording's outputs and keep feeding them to calls; accessors; the RNN, LSTM and GRU cells, and a
 * TimeRNN's, TimeLSTM's and TimeGRU's state and forward; two tapes.
 * A failed call must leave a status and a message naming the function. Memory errors are ASan's to see,
 * and it sees reads of ended recordings' data: the arena poisons its chunks at each reset (core/arena.c).
 * A tensor holds at most 2^18 elements, 2 MiB in f64: past the arena's first 1 MiB chunk, so recordings
 * span chunks and the merge at a reset frees the data of outputs the slots keep (an earlier front-door
 * fuzzer, capped below a chunk, never reached that). An empty input may still give a large output, as
 * (M,0) @ (0,N) or the mean over an empty axis do: the machine is said to have 64 MiB (tg__malloc then
 * refuses larger blocks with TG_ENOMEM), so that the library's own limit is what stops those, within
 * libFuzzer's memory limit. */
#include <limits.h>
#include <math.h>
#include "fuzz.h"
#include "ops_internal.h"

#define SLOTS 8
#define MAX_LEAVES 48
#define MAX_NUMEL ((int64_t)1 << 18)
/* Elements of output per input, and multiply-adds per matmul, so that an input runs in milliseconds: the
   work of big tensors is not where the bugs are, their memory is. */
#define BUDGET ((int64_t)1 << 21)
#define MAX_FLOPS ((int64_t)1 << 22)

typedef struct {
    const unsigned char *p, *end;
} bytes;

static unsigned u8(bytes *b) { return b->p < b->end ? *b->p++ : 0; }

static const int64_t dims[16] = {0, 1, 2, 3, 4, 5, 7, 8, 16, 64, 512, 1024, -1, -3, (int64_t)1 << 40, INT64_MAX};
static const double scalars[16] = {0, 1, -1, 0.5, 2, -2.5, 0.999, 1e-300, 1e300, -1e300, 1e4, -0.0,
                                   NAN, INFINITY, -INFINITY, 0.25};

/* An axis or count: mostly near 0, sometimes far out. */
static int iarg(bytes *b) {
    static const int far[8] = {INT_MIN, INT_MAX, -9, 9, 8, -100, 100, INT_MIN + 1};
    unsigned v = u8(b);
    return v < 224 ? (int)(v % 16) - 6 : far[v % 8];
}
static int64_t larg(bytes *b) {
    static const int64_t far[8] = {INT64_MIN, INT64_MAX, -1, 511, 512, 1023, 1024, (int64_t)1 << 40};
    unsigned v = u8(b);
    return v < 224 ? (int64_t)(v % 16) - 4 : far[v % 8];
}

typedef struct {
    tg_tape *tapes[2];
    tg_tensor *slot[SLOTS];
    tg_tensor *leaves[MAX_LEAVES]; /* freed at the end, after the tapes: their recordings hold them */
    int n_leaves;
    tg_time_rnn *rnn;
    tg_time_lstm *lstm;
    tg_time_gru *gru;
    tg_tensor *lw[3], *gw[3]; /* the LSTM's and the GRU's Wx, Wh, b: D 3, H 4, as the RNN's */
    tg_tensor *x2, *h2, *c2;  /* a step's x (2,3), h and c (2,4) for them, which random shapes seldom are */
    tg_rng rng;
    int64_t budget;
    FILE *devnull;
} vm;

static tg_tensor *pick(vm *m, bytes *b) {
    unsigned v = u8(b) % (SLOTS + 1);
    return v == SLOTS ? NULL : m->slot[v];
}

static void put(vm *m, bytes *b, tg_tensor *t) {
    unsigned v = u8(b) % SLOTS;
    if (t) {
        m->slot[v] = t;
        m->budget -= tg_tensor_numel(t) + 1;
    }
}

static void keep_leaf(vm *m, bytes *b, tg_tensor *t) {
    m->leaves[m->n_leaves++] = t;
    put(m, b, t);
}

/* Shapes the library must refuse (a negative dim, too many dims) or that hold nothing are always made;
   others only up to MAX_NUMEL elements, which the library would give (the fuzzer's limit, not its). */
static int fits(int ndim, const int64_t *shape) {
    if (ndim > TG_MAX_DIMS) return 1;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] <= 0) return 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] > MAX_NUMEL || n * shape[i] > MAX_NUMEL) return 0;
        n *= shape[i];
    }
    return 1;
}

static void new_leaf(vm *m, bytes *b) {
    unsigned v = u8(b);
    tg_dtype dt = (tg_dtype)(v % 4); /* 3 is no dtype */
    int param = (v >> 2) & 1, ndim = (int)(u8(b) % 10);
    int64_t shape[9];
    for (int i = 0; i < ndim; i++) shape[i] = dims[u8(b) % 16];
    if (!fits(ndim, shape) || m->n_leaves == MAX_LEAVES) return;
    tg_clear_error();
    tg_tensor *t = param ? tg_param_new(dt, ndim, shape) : tg_tensor_new(dt, ndim, shape);
    if (!t) return fuzz_failed(param ? "tg_param_new" : "tg_tensor_new", param ? "tg_param_new: " : "tg_tensor_new: ");
    /* The first 4096 elements drawn, then copied over the rest in doubling blocks: an element loop over a
       big leaf would cost more than the ops (coverage instrumentation traces each of its compares). */
    uint64_t seed = u8(b);
    int64_t n = tg_tensor_numel(t), head = n < 4096 ? n : 4096;
    size_t es = dt == TG_F32 ? 4 : 8;
    unsigned char *p = tg_tensor_data(t);
    tg_rng r;
    tg_rng_seed(&r, seed);
    for (int64_t i = 0; i < head; i++) {
        double v = 4 * tg_rng_uniform(&r) - 2;
        if (dt == TG_I64) ((int64_t *)p)[i] = (int64_t)(v * 1.75 + 1.5); /* -2..5: some out of range */
        else if (dt == TG_F32) ((float *)p)[i] = (float)v;
        else ((double *)p)[i] = v;
    }
    for (int64_t done = head; done < n; done *= 2)
        memcpy(p + done * es, p, (size_t)(done < n - done ? done : n - done) * es);
    m->budget -= tg_tensor_numel(t);
    keep_leaf(m, b, t);
}

/* A call that made an op output: put it in a slot, or check the failure names fn. */
static void op_result(vm *m, bytes *b, tg_tensor *out, const char *fn) {
    if (out) {
        put(m, b, out);
        return;
    }
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s: ", fn);
    fuzz_failed(fn, prefix);
}

static tg_status copy_fwd(tg_tensor *const *in, int n, tg_tensor *out, void *user) {
    (void)n, (void)user;
    size_t es = tg_tensor_dtype(in[0]) == TG_F32 ? 4 : 8;
    memcpy(tg_tensor_data(out), tg_tensor_data(in[0]), (size_t)tg_tensor_numel(out) * es);
    return TG_OK;
}
static tg_status copy_bwd(tg_tensor *const *in, int n, tg_tensor *out, tg_tensor *gout, void *const *grads,
                         void *user) {
    (void)n, (void)out, (void)user;
    if (!grads[0]) return TG_OK;
    for (int64_t i = 0; i < tg_tensor_numel(in[0]); i++) {
        if (tg_tensor_dtype(in[0]) == TG_F32) ((float *)grads[0])[i] += ((float *)tg_tensor_data(gout))[i];
        else ((double *)grads[0])[i] += ((double *)tg_tensor_data(gout))[i];
    }
    return TG_OK;
}
static tg_status copy_shape(tg_tensor *const *in, int n, void *user, int *ndim, int64_t *shape) {
    (void)n, (void)user;
    *ndim = tg_tensor_ndim(in[0]);
    memcpy(shape, tg_tensor_shape(in[0]), (size_t)*ndim * sizeof *shape);
    return TG_OK;
}
static const tg_op_def copy_op = {.name = "copy", .shape = copy_shape, .forward = copy_fwd, .backward = copy_bwd};

static void unary(vm *m, bytes *b) {
    tg_tape *tape = m->tapes[u8(b) & 1];
    unsigned which = u8(b) % 24;
    tg_tensor *x = pick(m, b), *y = NULL;
    int a0 = iarg(b), a1 = iarg(b);
    int64_t l0 = larg(b), l1 = larg(b);
    double s = scalars[u8(b) % 16];
    const char *fn = "?";
    tg_clear_error();
    switch (which) {
    case 0: fn = "tg_tanh", y = tg_tanh(tape, x); break;
    case 1: fn = "tg_scale", y = tg_scale(tape, x, s); break;
    case 2: fn = "tg_neg", y = tg_neg(tape, x); break;
    case 3: fn = "tg_add_scalar", y = tg_add_scalar(tape, x, s); break;
    case 4: fn = "tg_exp", y = tg_exp(tape, x); break;
    case 5: fn = "tg_log", y = tg_log(tape, x); break;
    case 6: fn = "tg_sqrt", y = tg_sqrt(tape, x); break;
    case 7: fn = "tg_sigmoid", y = tg_sigmoid(tape, x); break;
    case 8: fn = "tg_relu", y = tg_relu(tape, x); break;
    case 9: fn = "tg_sum", y = tg_sum(tape, x); break;
    case 10: fn = "tg_mean", y = tg_mean(tape, x); break;
    case 11: fn = "tg_detach", y = tg_detach(tape, x); break;
    case 12: fn = "tg_softmax", y = tg_softmax(tape, x, a0); break;
    case 13: fn = "tg_log_softmax", y = tg_log_softmax(tape, x, a0); break;
    case 14: fn = "tg_sum_axis", y = tg_sum_axis(tape, x, a0, a1 & 1); break;
    case 15: fn = "tg_mean_axis", y = tg_mean_axis(tape, x, a0, a1 & 1); break;
    case 16: fn = "tg_max_axis", y = tg_max_axis(tape, x, a0, a1 & 1); break;
    case 17: fn = "tg_dropout", y = tg_dropout(tape, x, s, a1 & 1 ? &m->rng : NULL); break;
    case 18: fn = "tg_select", y = tg_select(tape, x, a0, l0); break;
    case 19: fn = "tg_slice", y = tg_slice(tape, x, a0, l0, l1); break;
    case 20: fn = "tg_transpose", y = tg_transpose(tape, x, a0, a1); break;
    case 21: {
        /* a random shape rarely holds x's count: also try (numel,) and (k, numel / k) */
        int64_t shape[9], n = x ? tg_tensor_numel(x) : 0;
        int nd = (int)(u8(b) % 10);
        for (int i = 0; i < nd; i++) shape[i] = dims[u8(b) % 16];
        if (a1 % 3 == 1) nd = 1, shape[0] = n;
        if (a1 % 3 == 2 && x && tg_tensor_ndim(x) > 0 && tg_tensor_shape(x)[0] > 0)
            nd = 2, shape[0] = tg_tensor_shape(x)[0], shape[1] = n / shape[0];
        fn = "tg_reshape", y = tg_reshape(tape, x, nd, shape);
        break;
    }
    case 22: fn = "copy", y = tg_custom(tape, &copy_op, &x, 1, NULL); break;
    default: {
        /* any count, 1..64 taken (the slots again and again), others refused by tg_custom itself */
        tg_tensor *in[64];
        for (int i = 0; i < 64; i++) in[i] = i ? m->slot[(i + (uint64_t)l0) % SLOTS] : x;
        int n = (int)((uint64_t)l1 % 70) - 2;
        fn = n >= 1 && n <= 64 ? "copy" : "tg_custom", y = tg_custom(tape, &copy_op, in, n, NULL);
        break;
    }
    }
    op_result(m, b, y, fn);
}

/* A cell, the kind from bits 1-2 of the tape's byte (0, an RNN cell, as inputs written before the LSTM and
   GRU were fuzzed meant there): x, h_prev and (LSTM) c_prev from the slots; the weights from the slots too,
   or on bit 3 the VM's own, of the shapes the cells want; on bits 4 and 5 its own x, and h and c. The
   outputs go to the slots, so that cells chain. */
static tg_tensor *cell(vm *m, bytes *b, tg_tape *tape, unsigned tb, tg_tensor *x, tg_tensor *h, tg_tensor *c,
                       const char **fn) {
    unsigned kind = (tb >> 1) & 3, own = (tb >> 3) & 1;
    tg_tensor *p4 = pick(m, b), *p5 = pick(m, b);
    if (kind == 0 || kind == 3) return *fn = "tg_rnn_cell", tg_rnn_cell(tape, x, h, c, p4, p5);
    if ((tb >> 4) & 1) x = m->x2;
    if ((tb >> 5) & 1) h = m->h2, c = m->c2;
    if (kind == 2) {
        *fn = "tg_gru_cell";
        return own ? tg_gru_cell(tape, x, h, m->gw[0], m->gw[1], m->gw[2]) : tg_gru_cell(tape, x, h, c, p4, p5);
    }
    tg_tensor *c_next = NULL, *p6 = pick(m, b);
    *fn = "tg_lstm_cell";
    tg_tensor *h_next = own ? tg_lstm_cell(tape, x, h, c, m->lw[0], m->lw[1], m->lw[2], &c_next)
                            : tg_lstm_cell(tape, x, h, c, p4, p5, p6, &c_next);
    fuzz_expect(!h_next == !c_next, "tg_lstm_cell's two outputs");
    if (c_next) put(m, b, c_next);
    return h_next;
}

static void binary(vm *m, bytes *b) {
    unsigned tb = u8(b);
    tg_tape *tape = m->tapes[tb & 1];
    unsigned which = u8(b) % 9;
    tg_tensor *x = pick(m, b), *w = pick(m, b), *c = pick(m, b), *y = NULL;
    int64_t ignore = larg(b);
    const char *fn = "?";
    if ((which == 4 || which == 5) && x && w && tg_tensor_ndim(w) >= 2 && tg_tensor_ndim(x) >= 1) {
        /* (..., N,K) @ (..., K,M) costs at most numel(x) * batch(w) * M (batches broadcast): skip the few
           that would take the input's whole time */
        int wd = tg_tensor_ndim(w);
        int64_t k = tg_tensor_shape(w)[wd - 2];
        double flops = (double)tg_tensor_numel(x) * ((double)tg_tensor_numel(w) / (double)(k > 0 ? k : 1));
        if (flops > (double)MAX_FLOPS) return;
    }
    tg_clear_error();
    switch (which) {
    case 0: fn = "tg_add", y = tg_add(tape, x, w); break;
    case 1: fn = "tg_sub", y = tg_sub(tape, x, w); break;
    case 2: fn = "tg_mul", y = tg_mul(tape, x, w); break;
    case 3: fn = "tg_div", y = tg_div(tape, x, w); break;
    case 4: fn = "tg_matmul", y = tg_matmul(tape, x, w); break;
    case 5: fn = "tg_linear", y = tg_linear(tape, x, w, c); break;
    case 6: fn = "tg_embedding", y = tg_embedding(tape, x, w); break;
    case 7: fn = "tg_cross_entropy", y = tg_cross_entropy(tape, x, w, ignore); break;
    default: y = cell(m, b, tape, tb, x, w, c, &fn); break;
    }
    op_result(m, b, y, fn);
}

static void nary(vm *m, bytes *b) {
    tg_tape *tape = m->tapes[u8(b) & 1];
    unsigned v = u8(b);
    int n = (int)(v % 6), axis = iarg(b);
    tg_tensor *xs[5];
    for (int i = 0; i < 5; i++) xs[i] = pick(m, b);
    tg_clear_error();
    tg_tensor *y = v & 8 ? tg_concat(tape, n ? xs : NULL, n, axis) : tg_stack(tape, n ? xs : NULL, n, axis);
    op_result(m, b, y, v & 8 ? "tg_concat" : "tg_stack");
}

/* Accessors and fills: each must refuse a stale tensor rather than read it. */
static void accessors(vm *m, bytes *b) {
    unsigned which = u8(b) % 12;
    tg_tensor *t = pick(m, b);
    int64_t i = larg(b);
    uint64_t seed = u8(b);
    tg_clear_error();
    switch (which) {
    case 0: {
        tg_tensor *c = m->n_leaves < MAX_LEAVES ? tg_tensor_clone(t) : NULL;
        if (c) keep_leaf(m, b, c);
        else if (m->n_leaves < MAX_LEAVES) fuzz_failed("tg_tensor_clone", "tg_tensor_clone: ");
        break;
    }
    case 1: (void)tg_tensor_hash(t); break;
    case 2: (void)tg_tensor_get(t, i); break;
    case 3:
        if (tg_tensor_set(t, i, scalars[seed % 16])) fuzz_failed("tg_tensor_set", "tg_tensor_set: ");
        break;
    case 4:
        if (tg_tensor_print(t, m->devnull)) fuzz_failed("tg_tensor_print", "tg_tensor_print: ");
        break;
    case 5:
        if (tg_tensor_fill_uniform(t, -1, 1, &seed)) fuzz_failed("tg_tensor_fill_uniform", "tg_tensor_fill_uniform: ");
        break;
    case 6:
        if (tg_tensor_fill_normal(t, 0, scalars[seed % 16], &m->rng))
            fuzz_failed("tg_tensor_fill_normal", "tg_tensor_fill_normal: ");
        break;
    case 7:
        if (tg_init_xavier(t, &m->rng)) fuzz_failed("tg_init_xavier", "tg_init_xavier: ");
        break;
    case 8: {
        /* the first and last element: ASan sees a read of freed or poisoned memory */
        const unsigned char *d = tg_tensor_data(t);
        int64_t n = tg_tensor_numel(t), es = tg_tensor_dtype(t) == TG_F32 ? 4 : 8;
        if (t && !d) fuzz_failed("tg_tensor_data", "tg_tensor_data: ");
        const unsigned char *g = tg_tensor_grad(t);
        volatile unsigned char sink = 0;
        if (d && n) sink ^= d[0] ^ d[n * es - 1];
        if (g && n) sink ^= g[0] ^ g[n * es - 1];
        (void)sink;
        break;
    }
    case 9: tg_zero_grad(t); break;
    case 10:
        if (tg_retain_grad(m->tapes[seed & 1], t)) fuzz_failed("tg_retain_grad", "tg_retain_grad: ");
        break;
    default:
        if (tg_tape_print(m->tapes[seed & 1], m->devnull)) fuzz_failed("tg_tape_print", "tg_tape_print: ");
        break;
    }
}

/* A Time layer, the kind from bits 1-2 of the tape's byte as for the cells. */
static void rnn(vm *m, bytes *b) {
    unsigned which = u8(b) % 5, tb = u8(b), kind = (tb >> 1) & 3;
    tg_tape *tape = m->tapes[tb & 1];
    tg_tensor *t = pick(m, b);
    tg_clear_error();
    switch (which) {
    case 0:
        if (kind == 1) {
            if (tg_time_lstm_set_state(m->lstm, t, pick(m, b)))
                fuzz_failed("tg_time_lstm_set_state", "tg_time_lstm_set_state: ");
        } else if (kind == 2) {
            if (tg_time_gru_set_state(m->gru, t)) fuzz_failed("tg_time_gru_set_state", "tg_time_gru_set_state: ");
        } else if (tg_time_rnn_set_state(m->rnn, t)) {
            fuzz_failed("tg_time_rnn_set_state", "tg_time_rnn_set_state: ");
        }
        break;
    case 1:
        if (kind == 1) op_result(m, b, tg_time_lstm_forward(tape, m->lstm, t), "tg_time_lstm_forward");
        else if (kind == 2) op_result(m, b, tg_time_gru_forward(tape, m->gru, t), "tg_time_gru_forward");
        else op_result(m, b, tg_time_rnn_forward(tape, m->rnn, t), "tg_time_rnn_forward");
        break;
    case 2:
        if (kind == 1) tg_time_lstm_reset_state(m->lstm);
        else if (kind == 2) tg_time_gru_reset_state(m->gru);
        else tg_time_rnn_reset_state(m->rnn);
        break;
    case 3:
        if (kind == 1) (void)tg_time_lstm_dh(m->lstm), (void)tg_time_lstm_dc(m->lstm);
        else if (kind == 2) (void)tg_time_gru_dh(m->gru);
        else (void)tg_time_rnn_dh(m->rnn);
        break;
    default: {
        /* an input the layers take, (N,T,3) in f64, which random shapes seldom are */
        int64_t shape[3] = {dims[u8(b) % 8], dims[1 + u8(b) % 7], 3};
        if (m->n_leaves == MAX_LEAVES) break;
        tg_tensor *xs = tg_tensor_new(TG_F64, 3, shape);
        uint64_t seed = 7;
        fuzz_expect(xs && tg_tensor_fill_uniform(xs, -1, 1, &seed) == TG_OK, "an RNN input");
        keep_leaf(m, b, xs);
        break;
    }
    }
}

/* (d0, d1) or (d0,) f64 parameters, uniform in [-1, 1], kept as leaves. */
static tg_tensor *weight(vm *m, int ndim, int64_t d0, int64_t d1, uint64_t *seed) {
    int64_t shape[2] = {d0, d1};
    tg_tensor *t = tg_param_new(TG_F64, ndim, shape);
    fuzz_expect(t && tg_tensor_fill_uniform(t, -1, 1, seed) == TG_OK, "setup");
    m->leaves[m->n_leaves++] = t;
    return t;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    bytes b = {data, data + size};
    vm m = {.budget = BUDGET};
    tg__alloc_set_memory((uint64_t)64 << 20);
    m.tapes[0] = tg_tape_new(), m.tapes[1] = tg_tape_new();
    m.devnull = fopen("/dev/null", "w");
    tg_rng_seed(&m.rng, 42);
    /* the layer's weights are leaves like any other: the program may feed them to ops too */
    int64_t sx[2] = {3, 4}, sh[2] = {4, 4}, sb[1] = {4};
    tg_tensor *Wx = tg_param_new(TG_F64, 2, sx), *Wh = tg_param_new(TG_F64, 2, sh), *bias = tg_param_new(TG_F64, 1, sb);
    uint64_t seed = 3;
    fuzz_expect(m.tapes[0] && m.tapes[1] && m.devnull && Wx && Wh && bias, "setup");
    tg_tensor_fill_uniform(Wx, -1, 1, &seed), tg_tensor_fill_uniform(Wh, -1, 1, &seed);
    m.rnn = tg_time_rnn_new(Wx, Wh, bias, u8(&b) & 1);
    fuzz_expect(m.rnn != NULL, "setup");
    m.leaves[m.n_leaves++] = Wx, m.leaves[m.n_leaves++] = Wh, m.leaves[m.n_leaves++] = bias;
    m.slot[0] = Wx, m.slot[1] = Wh, m.slot[2] = bias;
    m.lw[0] = weight(&m, 2, 3, 16, &seed), m.lw[1] = weight(&m, 2, 4, 16, &seed), m.lw[2] = weight(&m, 1, 16, 0, &seed);
    m.gw[0] = weight(&m, 2, 3, 12, &seed), m.gw[1] = weight(&m, 2, 4, 12, &seed), m.gw[2] = weight(&m, 1, 12, 0, &seed);
    m.lstm = tg_time_lstm_new(m.lw[0], m.lw[1], m.lw[2], 1); /* one stateful layer, one not */
    m.gru = tg_time_gru_new(m.gw[0], m.gw[1], m.gw[2], 0);
    fuzz_expect(m.lstm && m.gru, "setup");
    m.x2 = weight(&m, 2, 2, 3, &seed), m.h2 = weight(&m, 2, 2, 4, &seed), m.c2 = weight(&m, 2, 2, 4, &seed);

    for (int steps = 0; b.p < b.end && steps < 256 && m.budget > 0; steps++) {
        unsigned op = u8(&b) % 12;
        switch (op) {
        case 0: case 1: new_leaf(&m, &b); break;
        case 2: case 3: unary(&m, &b); break;
        case 4: case 5: binary(&m, &b); break;
        case 6: nary(&m, &b); break;
        case 7: {
            tg_tape *tape = m.tapes[u8(&b) & 1];
            tg_tensor *out = pick(&m, &b), *gout = u8(&b) & 1 ? pick(&m, &b) : NULL;
            tg_clear_error();
            if (tg_backward(tape, out, gout)) fuzz_failed("tg_backward", NULL);
            m.budget -= 2 * tg_tape_memory(tape) / 8;
            break;
        }
        case 8: tg_tape_reset(m.tapes[u8(&b) & 1]); break;
        case 9: accessors(&m, &b); break;
        case 10: rnn(&m, &b); break;
        default: {
            unsigned v = u8(&b);
            tg_tape_set_checks(m.tapes[v & 1], (v >> 1) & 3);
            tg_tape_set_grad_enabled(m.tapes[v & 1], (v >> 3) & 1);
            break;
        }
        }
    }
    tg_tape_free(m.tapes[0]);
    tg_tape_free(m.tapes[1]);
    tg_time_rnn_free(m.rnn);
    tg_time_lstm_free(m.lstm);
    tg_time_gru_free(m.gru);
    for (int i = 0; i < m.n_leaves; i++) tg_tensor_free(m.leaves[i]);
    fclose(m.devnull);
    tg_clear_error();
    return 0;
}
