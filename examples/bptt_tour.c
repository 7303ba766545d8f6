/* A tour of backpropagation through time (BPTT), in seven parts.
 *
 *     bptt_tour [DIR] [--epochs N] [--save FILE] [--resume FILE]
 *
 * DIR (default ".") receives the files the tour writes: bptt_tape.dot (and .png when Graphviz's `dot`
 * is installed), grad_flow.csv (and grad_flow.png when gnuplot is). --save writes a checkpoint of
 * part (e) (tg_checkpoint_save: the parameters and SGD's state, step count included); --resume continues
 * part (e) from such a file, up to --epochs (default 40) in all, exactly as if it had never stopped.
 *
 * The model is the RNN of the seed notebook (../shared/seed/), with its conventions:
 *     h_t = tanh(h_{t-1} @ Wh + x_t @ Wx + b)     x_t (N,D), h_t (N,H), Wx (D,H), Wh (H,H), b (H,)
 * and TimeRNN runs it over T steps: xs (N,T,D) -> hs (N,T,H).
 *
 *   (a) Three ways to the same gradient: the tape's, the seed's hand-derived formulas (fixed), and
 *       finite differences, for one cell and for a TimeRNN.
 *   (b) The seed's original dWx formula plugged in as the reference: the check catches it and says
 *       which gradient is wrong.
 *   (c) What the tape recorded for a T = 3 TimeRNN, as text and as a Graphviz drawing.
 *   (d) Gradient flow: how |dL/dh_t| changes as the gradient travels back over 60 steps, when Wh
 *       has spectral radius 0.5, 1.0 or 1.5 (vanishing and exploding gradients), then clipping.
 *   (e) Training a stateful TimeRNN with truncated BPTT to continue a sine wave, through a parameter
 *       list, an SGD optimizer and clipping by global norm, with checkpoints.
 *   (f) Why gates: the same gradient flow for an RNN, an LSTM and a GRU at initialisation: the LSTM's
 *       cell path carries the gradient back where the RNN's vanishes (table, CSV, picture).
 *   (g) State handed between layers: an encoder-decoder trained with the state copied by set_state of a
 *       detached h (the encoder's gradient is 0) and with forward_from (it reaches the encoder).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tapegrad.h>

/* Any failure ends the tour with the library's message: it names the function and the values. */
#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "bptt_tour: %s failed at line %d: %s (%s)\n", #cond, __LINE__, tg_last_error(),  \
                    tg_status_name(tg_last_status()));                                                       \
            exit(1);                                                                                         \
        }                                                                                                    \
    } while (0)

static const char *out_dir = ".";

/* DIR/name into buf. */
static const char *out_path(char *buf, size_t size, const char *name) {
    snprintf(buf, size, "%s/%s", out_dir, name);
    return buf;
}

static int have_program(const char *name) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
    return system(cmd) == 0;
}

/* Runs `program args...` on paths; skipped (with a note) when a path holds a quote, which the shell
   command could not carry safely. */
static int run_on_paths(const char *fmt, const char *a, const char *b) {
    if (strchr(a, '\'') || strchr(b, '\'')) {
        printf("    (not run: the output path contains a quote)\n");
        return 0;
    }
    char cmd[4096];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    return system(cmd) == 0;
}

/* Small helpers on f64 tensors. */
static tg_tensor *rand_tensor(int param, uint64_t *seed, double scale, int ndim, const int64_t *shape) {
    tg_tensor *t = param ? tg_param_new(TG_F64, ndim, shape) : tg_tensor_new(TG_F64, ndim, shape);
    CHECK(t && tg_tensor_fill_uniform(t, -scale, scale, seed) == TG_OK);
    return t;
}
#define SHAPE(...)                                                                                           \
    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]) { __VA_ARGS__ }

static double dot(const double *a, const double *b, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double max_abs_diff(const double *a, const double *b, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]));
    return m;
}

static double max_abs(const double *a, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

static const char *shape_of(const tg_tensor *t, char *buf) {
    int n = sprintf(buf, "(");
    for (int i = 0; i < tg_tensor_ndim(t); i++)
        n += sprintf(buf + n, i ? ",%lld" : "%lld", (long long)tg_tensor_shape(t)[i]);
    sprintf(buf + n, tg_tensor_ndim(t) == 1 ? ",)" : ")");
    return buf;
}

/* ---- finite differences ----
 * The numeric gradient needs nothing but the forward pass: nudge one number by +-eps, see how the
 * loss moves, dL/dp ~ (L(p + eps) - L(p - eps)) / (2 eps). One element at a time, so it is slow, and
 * its error is near 1e-10 in f64; but it cannot share a mistake with a backward pass. */
typedef double (*loss_fn)(void *ctx);

static void numeric_grad(tg_tensor *p, loss_fn loss, void *ctx, double *out) {
    const double eps = 1e-6;
    double *v = tg_tensor_data(p);
    for (int64_t i = 0; i < tg_tensor_numel(p); i++) {
        double keep = v[i];
        v[i] = keep + eps;
        double up = loss(ctx);
        v[i] = keep - eps;
        double down = loss(ctx);
        v[i] = keep;
        out[i] = (up - down) / (2 * eps);
    }
}

/* One line of part (a)'s table. */
static void table_row(const char *name, tg_tensor *like, const double *tape, const double *ref,
                      const double *num) {
    char s[64];
    int64_t n = tg_tensor_numel(like);
    printf("    %-7s %-9s %10.4f   %12.2e   %14.2e\n", name, shape_of(like, s), max_abs(tape, n),
           max_abs_diff(tape, ref, n), max_abs_diff(tape, num, n));
}

static void table_head(void) {
    printf("    grad    shape       max|tape|   |tape - ref|   |tape - numeric|   (max over elements)\n");
}

/* ================================================================================================
 * (a) Three ways to the same gradient.
 * The loss is L = sum(dhs * hs) for a fixed random dhs, so dL/dhs = dhs: the "upstream gradient"
 * that a real loss would hand the RNN. */

typedef struct {
    tg_tape *tape;
    tg_tensor *x, *h, *Wx, *Wh, *b, *dh; /* the cell's inputs and its upstream gradient */
} cell_case;

static double cell_loss(void *vc) {
    cell_case *c = vc;
    tg_tape_reset(c->tape);
    tg_tensor *h_next = tg_rnn_cell(c->tape, c->x, c->h, c->Wx, c->Wh, c->b);
    CHECK(h_next);
    return dot(tg_tensor_data(h_next), tg_tensor_data(c->dh), tg_tensor_numel(h_next));
}

typedef struct {
    tg_tape *tape;
    tg_time_rnn *layer;
    tg_tensor *xs, *h0, *dhs;
} time_case;

static double time_loss(void *vc) {
    time_case *c = vc;
    tg_tape_reset(c->tape);
    CHECK(tg_time_rnn_set_state(c->layer, c->h0) == TG_OK);
    tg_tensor *hs = tg_time_rnn_forward(c->tape, c->layer, c->xs);
    CHECK(hs);
    return dot(tg_tensor_data(hs), tg_tensor_data(c->dhs), tg_tensor_numel(hs));
}

/* The hand-derived reference as a tg_ref_fn for tg_gradcheck_ref: inputs {xs, Wx, Wh, b}. */
static tg_status time_ref(tg_tensor *const *in, const tg_tensor *dhs, tg_tensor *const *g, void *vc) {
    time_case *c = vc;
    tg_tensor *hs = tg_tensor_new(TG_F64, 3, tg_tensor_shape(dhs));
    if (!hs) return tg_last_status();
    tg_status s = tg_time_rnn_ref(in[0], c->h0, in[1], in[2], in[3], (tg_tensor *)dhs, hs, g[0], g[1], g[2],
                                  g[3], NULL);
    tg_tensor_free(hs);
    return s;
}

static tg_tensor *time_f(tg_tape *tape, tg_tensor *const *in, void *vc) {
    time_case *c = vc;
    /* in = {xs, Wx, Wh, b}: the layer borrowed Wx, Wh and b, so it sees the check's nudges to them. */
    if (tg_time_rnn_set_state(c->layer, c->h0) != TG_OK) return NULL;
    return tg_time_rnn_forward(tape, c->layer, in[0]);
}

static void part_a(void) {
    printf("\n(a) Three ways to the same gradient\n");
    printf(
        "    tape: the ops recorded the forward and backward replays them; ref: the seed's formulas, fixed\n"
        "    (layers/rnn_ref.c); numeric: central differences. L = sum(dhs * hs), dhs random.\n");
    uint64_t seed = 2024;
    const int64_t N = 2, D = 3, H = 5, T = 4;

    /* One cell. Inputs x and h are made parameters too, so the tape gives dx and dh_prev. */
    cell_case c = {tg_tape_new(),
                   rand_tensor(1, &seed, 1, SHAPE(N, D)),
                   rand_tensor(1, &seed, 1, SHAPE(N, H)),
                   rand_tensor(1, &seed, 0.5, SHAPE(D, H)),
                   rand_tensor(1, &seed, 0.5, SHAPE(H, H)),
                   rand_tensor(1, &seed, 0.5, SHAPE(H)),
                   rand_tensor(0, &seed, 1, SHAPE(N, H))};
    CHECK(c.tape);
    tg_tensor *cp[5] = {c.x, c.h, c.Wx, c.Wh, c.b};
    tg_tape_reset(c.tape);
    tg_tensor *h_next = tg_rnn_cell(c.tape, c.x, c.h, c.Wx, c.Wh, c.b);
    CHECK(h_next && tg_backward(c.tape, h_next, c.dh) == TG_OK);
    /* The reference runs the cell as a TimeRNN of one step: (N,D) is (N,1,D) in memory. */
    tg_tensor *xs1 = tg_tensor_from(TG_F64, SHAPE(N, 1, D), tg_tensor_data(c.x));
    tg_tensor *dhs1 = tg_tensor_from(TG_F64, SHAPE(N, 1, H), tg_tensor_data(c.dh));
    tg_tensor *r[5] = {tg_tensor_new(TG_F64, SHAPE(N, 1, D)), tg_tensor_new(TG_F64, SHAPE(N, H)),
                       tg_tensor_new(TG_F64, SHAPE(D, H)), tg_tensor_new(TG_F64, SHAPE(H, H)),
                       tg_tensor_new(TG_F64, SHAPE(H))};
    tg_tensor *hs1 = tg_tensor_new(TG_F64, SHAPE(N, 1, H));
    CHECK(xs1 && dhs1 && hs1 && r[0] && r[1] && r[2] && r[3] && r[4]);
    CHECK(tg_time_rnn_ref(xs1, c.h, c.Wx, c.Wh, c.b, dhs1, hs1, r[0], r[2], r[3], r[4], r[1]) == TG_OK);
    printf("\n    one cell, N=%lld D=%lld H=%lld\n", (long long)N, (long long)D, (long long)H);
    table_head();
    const char *cell_names[5] = {"dx", "dh_prev", "dWx", "dWh", "db"};
    int order[5] = {2, 3, 4, 0, 1}; /* the issue's order: dWx, dWh, db, then dx and dh_prev */
    for (int k = 0; k < 5; k++) {
        int i = order[k];
        double *num = malloc((size_t)tg_tensor_numel(cp[i]) * sizeof *num);
        CHECK(num);
        numeric_grad(cp[i], cell_loss, &c, num);
        table_row(cell_names[i], cp[i], tg_tensor_grad(cp[i]), tg_tensor_data(r[i]), num);
        free(num);
    }
    for (int i = 0; i < 5; i++) tg_tensor_free(r[i]), tg_tensor_free(cp[i]);
    tg_tensor_free(xs1), tg_tensor_free(dhs1), tg_tensor_free(hs1), tg_tensor_free(c.dh);
    tg_tape_free(c.tape);

    /* A TimeRNN over T steps, starting from a given h0 (set_state). dh is dL/dh0, which the layer
       hands out after backward: what an encoder would pass back to whoever made h0. */
    time_case t = {tg_tape_new(), NULL, rand_tensor(1, &seed, 1, SHAPE(N, T, D)),
                   rand_tensor(0, &seed, 1, SHAPE(N, H)), rand_tensor(0, &seed, 1, SHAPE(N, T, H))};
    tg_tensor *Wx = rand_tensor(1, &seed, 0.5, SHAPE(D, H)), *Wh = rand_tensor(1, &seed, 0.5, SHAPE(H, H));
    tg_tensor *b = rand_tensor(1, &seed, 0.5, SHAPE(H));
    t.layer = tg_time_rnn_new(Wx, Wh, b, 0);
    CHECK(t.tape && t.layer);
    tg_tensor *tp[4] = {t.xs, Wx, Wh, b};
    CHECK(tg_time_rnn_set_state(t.layer, t.h0) == TG_OK);
    tg_tensor *hs = tg_time_rnn_forward(t.tape, t.layer, t.xs);
    CHECK(hs && tg_backward(t.tape, hs, t.dhs) == TG_OK);
    tg_tensor *dh = tg_tensor_clone(tg_time_rnn_dh(t.layer));
    tg_tensor *rr[5] = {tg_tensor_new(TG_F64, SHAPE(N, T, D)), tg_tensor_new(TG_F64, SHAPE(D, H)),
                        tg_tensor_new(TG_F64, SHAPE(H, H)), tg_tensor_new(TG_F64, SHAPE(H)),
                        tg_tensor_new(TG_F64, SHAPE(N, H))};
    tg_tensor *rhs = tg_tensor_new(TG_F64, SHAPE(N, T, H));
    CHECK(dh && rhs && rr[0] && rr[1] && rr[2] && rr[3] && rr[4]);
    CHECK(tg_time_rnn_ref(t.xs, t.h0, Wx, Wh, b, t.dhs, rhs, rr[0], rr[1], rr[2], rr[3], rr[4]) == TG_OK);
    printf("\n    TimeRNN, N=%lld T=%lld D=%lld H=%lld, starting from a random h0\n", (long long)N,
           (long long)T, (long long)D, (long long)H);
    table_head();
    const char *time_names[4] = {"dxs", "dWx", "dWh", "db"};
    int torder[4] = {1, 2, 3, 0};
    for (int k = 0; k < 4; k++) {
        int i = torder[k];
        double *num = malloc((size_t)tg_tensor_numel(tp[i]) * sizeof *num);
        CHECK(num);
        numeric_grad(tp[i], time_loss, &t, num);
        table_row(time_names[i], tp[i], tg_tensor_grad(tp[i]), tg_tensor_data(rr[i]), num);
        free(num);
    }
    double num_dh[64];
    numeric_grad(t.h0, time_loss, &t, num_dh);
    table_row("dh", dh, tg_tensor_data(dh), tg_tensor_data(rr[4]), num_dh);

    /* The library's own check does all of this for every Jacobian element, and says where it fails. */
    tg_gradcheck_report vs_ref, vs_num;
    int ok = tg_gradcheck_ref(time_f, time_ref, &t, tp, 4, NULL, &vs_ref, &vs_num);
    printf("\n    tg_gradcheck_ref on the TimeRNN: %s\n      vs ref:     %s\n      vs numeric: %s\n",
           ok ? "PASS" : "FAIL", vs_ref.message, vs_num.message);
    for (int i = 0; i < 5; i++) tg_tensor_free(rr[i]);
    for (int i = 0; i < 4; i++) tg_tensor_free(tp[i]);
    tg_tensor_free(rhs), tg_tensor_free(dh), tg_tensor_free(t.h0), tg_tensor_free(t.dhs);
    tg_time_rnn_free(t.layer);
    tg_tape_free(t.tape);
    CHECK(ok);
}

/* ================================================================================================
 * (b) The seed's dWx, caught.
 * The seed writes dWx = dt @ Wx.T. With D != H NumPy refuses to store that (N,D) array in the (D,H)
 * gradient, so the notebook would stop; with N = D = H it runs and is silently wrong. That is the
 * case to fear, so this part uses N = D = H = 3. The reference below is the fixed one with only
 * that line put back. */

static tg_tensor *cell_f(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_rnn_cell(tape, in[0], in[1], in[2], in[3], in[4]);
}

/* inputs {x, h_prev, Wx, Wh, b}; grads {dx, dh_prev, dWx, dWh, db}. */
static tg_status seed_dWx_ref(tg_tensor *const *in, const tg_tensor *dh, tg_tensor *const *g, void *ctx) {
    (void)ctx;
    const int64_t *xsh = tg_tensor_shape(in[0]);
    int64_t N = xsh[0], D = xsh[1], H = tg_tensor_shape(in[2])[1];
    tg_tensor *xs = tg_tensor_from(TG_F64, SHAPE(N, 1, D), tg_tensor_data(in[0]));
    tg_tensor *dhs = tg_tensor_from(TG_F64, SHAPE(N, 1, H), tg_tensor_data((tg_tensor *)dh));
    tg_tensor *hs = tg_tensor_new(TG_F64, SHAPE(N, 1, H)), *dxs = tg_tensor_new(TG_F64, SHAPE(N, 1, D));
    tg_status s = xs && dhs && hs && dxs
        ? tg_time_rnn_ref(xs, in[1], in[2], in[3], in[4], dhs, hs, dxs, g[2], g[3], g[4], g[1])
        : tg_last_status();
    if (s == TG_OK) {
        memcpy(tg_tensor_data(g[0]), tg_tensor_data(dxs), (size_t)(N * D) * sizeof(double));
        /* The seed's line: dWx = dt @ Wx.T, with dt = dh * (1 - h^2). (N,H) @ (H,D) = (N,D), stored
           into the (D,H) gradient because N = D = H. */
        const double *h = tg_tensor_data(hs), *up = tg_tensor_data(dhs), *Wx = tg_tensor_data(in[2]);
        double *dWx = tg_tensor_data(g[2]);
        for (int64_t n = 0; n < N; n++)
            for (int64_t d = 0; d < D; d++) {
                double sum = 0.0;
                for (int64_t j = 0; j < H; j++)
                    sum += up[n * H + j] * (1 - h[n * H + j] * h[n * H + j]) * Wx[d * H + j];
                dWx[n * D + d] = sum;
            }
    }
    tg_tensor_free(xs), tg_tensor_free(dhs), tg_tensor_free(hs), tg_tensor_free(dxs);
    return s;
}

/* The same formulas as one custom op, "seed_rnn_cell", for the per-node check: forward h = tanh(h_prev @ Wh +
   x @ Wx + b), backward the seed's (wrong dWx included), added into the tape's gradients. */
static tg_status seed_cell_shape(tg_tensor *const *in, int n, void *user, int *ndim, int64_t *shape) {
    (void)n, (void)user;
    *ndim = 2;
    shape[0] = tg_tensor_shape(in[0])[0], shape[1] = tg_tensor_shape(in[2])[1];
    return TG_OK;
}
static tg_status seed_cell_forward(tg_tensor *const *in, int n, tg_tensor *out, void *user) {
    (void)n, (void)user;
    int64_t N = tg_tensor_shape(in[0])[0], D = tg_tensor_shape(in[0])[1], H = tg_tensor_shape(in[2])[1];
    const double *x = tg_tensor_data(in[0]), *h = tg_tensor_data(in[1]), *Wx = tg_tensor_data(in[2]),
                 *Wh = tg_tensor_data(in[3]), *b = tg_tensor_data(in[4]);
    double *y = tg_tensor_data(out);
    for (int64_t r = 0; r < N; r++)
        for (int64_t j = 0; j < H; j++) {
            double t = b[j];
            for (int64_t k = 0; k < H; k++) t += h[r * H + k] * Wh[k * H + j];
            for (int64_t d = 0; d < D; d++) t += x[r * D + d] * Wx[d * H + j];
            y[r * H + j] = tanh(t);
        }
    return TG_OK;
}
static tg_status seed_cell_backward(tg_tensor *const *in, int n, tg_tensor *out, tg_tensor *gout, void *const *grads,
                                    void *user) {
    (void)out, (void)user;
    tg_tensor *g[5] = {NULL};
    tg_status s = TG_OK;
    for (int i = 0; i < n && !s; i++)
        if (!(g[i] = tg_tensor_new(TG_F64, tg_tensor_ndim(in[i]), tg_tensor_shape(in[i])))) s = tg_last_status();
    if (!s) s = seed_dWx_ref(in, gout, g, NULL);
    for (int i = 0; i < n && !s; i++)
        for (int64_t k = 0; grads[i] && k < tg_tensor_numel(in[i]); k++)
            ((double *)grads[i])[k] += ((const double *)tg_tensor_data(g[i]))[k];
    for (int i = 0; i < n; i++) tg_tensor_free(g[i]);
    return s;
}
static const tg_op_def seed_cell_op = {.name = "seed_rnn_cell", .shape = seed_cell_shape, .forward = seed_cell_forward,
    .backward = seed_cell_backward};

static void part_b(void) {
    printf("\n(b) The seed's dWx = dt @ Wx.T as the reference, N = D = H = 3 (where NumPy runs it)\n");
    uint64_t seed = 7;
    tg_tensor *in[5] = {rand_tensor(1, &seed, 1, SHAPE(3, 3)), rand_tensor(1, &seed, 1, SHAPE(3, 3)),
                        rand_tensor(1, &seed, 0.5, SHAPE(3, 3)), rand_tensor(1, &seed, 0.5, SHAPE(3, 3)),
                        rand_tensor(1, &seed, 0.5, SHAPE(3))};
    const char *names[5] = {"x", "h_prev", "Wx", "Wh", "b"};
    tg_gradcheck_report vs_ref, vs_num;
    int ok = tg_gradcheck_ref(cell_f, seed_dWx_ref, NULL, in, 5, NULL, &vs_ref, &vs_num);
    printf("    tape vs the seed's formulas:  %s\n      %s\n", vs_ref.passed ? "PASS" : "FAIL",
           vs_ref.message);
    printf("    tape vs finite differences:   %s\n      %s\n", vs_num.passed ? "PASS" : "FAIL",
           vs_num.message);
    int caught = !ok && !vs_ref.passed && vs_num.passed && vs_ref.input == 2;
    if (caught)
        printf("    => caught: the tape agrees with finite differences and the reference does not,\n"
               "       at input %d, %s: the hand-derived d%s is wrong. The fix is dWx = x.T @ dt (FIX 3 in\n"
               "       layers/rnn_ref.c).\n",
               vs_ref.input, names[vs_ref.input], names[vs_ref.input]);
    else
        printf("    => NOT caught as it should be (ok=%d, blamed input %d)\n", ok, vs_ref.input);
    /* Inside a model, the per-node check finds which node's backward is the wrong one. */
    tg_tape *tape = tg_tape_new();
    CHECK(tape);
    tg_tensor *h1 = tg_custom(tape, &seed_cell_op, in, 5, NULL);
    tg_tensor *step2[5] = {in[0], h1, in[2], in[3], in[4]};
    tg_tensor *L = tg_sum(tape, tg_tanh(tape, tg_custom(tape, &seed_cell_op, step2, 5, NULL)));
    CHECK(L);
    int node_ok = tg_gradcheck_nodes(tape, L, NULL, &vs_ref);
    printf("    two steps of the seed's cell as a custom op, each node checked alone: %s\n      %s\n",
           node_ok ? "PASS" : "FAIL", vs_ref.message);
    caught = caught && !node_ok && !strcmp(tg_gradcheck_nodes_failed_op(), "seed_rnn_cell") && vs_ref.input == 2;
    tg_tape_free(tape);
    for (int i = 0; i < 5; i++) tg_tensor_free(in[i]);
    if (!caught) exit(1);
}

/* ================================================================================================
 * (c) The tape of a T = 3 TimeRNN. One linear projects every step's input at once (xs @ Wx + b); each
 * step is then a select of its projection, an addmm (that + h_prev @ Wh, one GEMM) and a tanh; stack
 * gathers hs.
 * Backward walks these lines from the bottom up. */

static void part_c(void) {
    printf("\n(c) The tape of a TimeRNN with N=1 T=3 D=2 H=3\n");
    uint64_t seed = 3;
    tg_tensor *Wx = rand_tensor(1, &seed, 0.5, SHAPE(2, 3)), *Wh = rand_tensor(1, &seed, 0.5, SHAPE(3, 3));
    tg_tensor *b = rand_tensor(1, &seed, 0.5, SHAPE(3)), *xs = rand_tensor(0, &seed, 1, SHAPE(1, 3, 2));
    /* The layer names its weights by their roles (Wx, Wh, b) for the listing and the picture; xs is ours. */
    tg_time_rnn *layer = tg_time_rnn_new(Wx, Wh, b, 0);
    tg_tape *tape = tg_tape_new();
    CHECK(layer && tape && tg_tensor_set_name(xs, "xs") == TG_OK && tg_time_rnn_forward(tape, layer, xs));
    CHECK(tg_tape_print(tape, stdout) == TG_OK);
    printf("    (h0(1,3) is the zero initial state: a leaf of the layer, so that dL/dh0 has somewhere to go;\n"
           "    the picture draws the one Wh with an edge to each step's addmm: BPTT sums their gradients)\n");

    char dot_path[1024], png_path[1024];
    out_path(dot_path, sizeof dot_path, "bptt_tape.dot");
    out_path(png_path, sizeof png_path, "bptt_tape.png");
    FILE *f = fopen(dot_path, "w");
    if (!f) {
        fprintf(stderr, "bptt_tour: cannot write %s\n", dot_path);
        exit(1);
    }
    CHECK(tg_tape_write_dot(tape, f) == TG_OK);
    fclose(f);
    printf("    wrote %s\n", dot_path);
    if (have_program("dot")) {
        if (run_on_paths("dot -Tpng '%s' -o '%s'", dot_path, png_path)) printf("    wrote %s\n", png_path);
    } else {
        printf("    (Graphviz's dot is not installed: render later with dot -Tpng %s -o %s)\n", dot_path,
               png_path);
    }
    tg_tape_free(tape);
    tg_time_rnn_free(layer);
    tg_tensor_free(Wx), tg_tensor_free(Wh), tg_tensor_free(b), tg_tensor_free(xs);
}

/* ================================================================================================
 * (d) Gradient flow over a long sequence.
 * Backward takes dL/dh_t to dL/dh_{t-1} = (dL/dh_t * (1 - h_t^2)) @ Wh.T: once per step, a tanh'
 * factor (at most 1) and Wh.T. Over many steps the product of Wh.T's dominates: its size goes as
 * rho^steps, rho the spectral radius of Wh. To see that alone we take Wh = rho * Q with Q orthogonal
 * (every eigenvalue of Wh then has modulus exactly rho) and start at h0 = 0 with zero input, where
 * the state stays 0 and tanh' = 1: the textbook picture. A fourth run feeds real inputs with
 * rho = 1.5, and shows what tanh does about it. The loss is L = v . h_T, v a unit vector, so
 * |dL/dh_T| = 1. Each h_t is made by hand with tg_rnn_cell, so tg_retain_grad can keep its gradient. */

enum { FLOW_T = 60, FLOW_H = 16, FLOW_D = 4, FLOW_RUNS = 4 };

/* An orthogonal (H,H) matrix: Gram-Schmidt on a random one. */
static void orthogonal(double *Q, int64_t H, uint64_t *seed) {
    tg_tensor *A = rand_tensor(0, seed, 1, SHAPE(H, H));
    memcpy(Q, tg_tensor_data(A), (size_t)(H * H) * sizeof *Q);
    tg_tensor_free(A);
    for (int64_t i = 0; i < H; i++) { /* rows */
        for (int64_t k = 0; k < i; k++) {
            double p = dot(Q + i * H, Q + k * H, H);
            for (int64_t j = 0; j < H; j++) Q[i * H + j] -= p * Q[k * H + j];
        }
        double n = sqrt(dot(Q + i * H, Q + i * H, H));
        for (int64_t j = 0; j < H; j++) Q[i * H + j] /= n;
    }
}

/* One run: norms[t] = |dL/dh_{t+1}| for t = 0..T-1. Leaves the parameters' gradients in params. */
static void flow_run(double rho, double input_scale, const double *Q, double *norms,
                     tg_tensor *const *params) {
    const int64_t T = FLOW_T, H = FLOW_H, D = FLOW_D;
    tg_tensor *Wx = params[0], *Wh = params[1], *b = params[2];
    double *wh = tg_tensor_data(Wh);
    for (int64_t i = 0; i < H * H; i++) wh[i] = rho * Q[i];
    uint64_t seed = 99;
    tg_tensor *xs = rand_tensor(0, &seed, input_scale > 0 ? input_scale : 1, SHAPE(1, T, D));
    if (input_scale == 0) memset(tg_tensor_data(xs), 0, (size_t)(T * D) * sizeof(double));
    tg_tensor *h0 = tg_tensor_new(TG_F64, SHAPE(1, H)), *v = tg_tensor_new(TG_F64, SHAPE(1, H));
    CHECK(h0 && v);
    for (int64_t j = 0; j < H; j++) ((double *)tg_tensor_data(v))[j] = 1.0 / sqrt((double)H);

    tg_tape *tape = tg_tape_new();
    CHECK(tape);
    tg_tensor *h = h0, *hs[FLOW_T];
    for (int64_t t = 0; t < T; t++) {
        hs[t] = h = tg_rnn_cell(tape, tg_select(tape, xs, 1, t), h, Wx, Wh, b);
        CHECK(h && tg_retain_grad(tape, h) == TG_OK);
    }
    for (int i = 0; i < 3; i++) tg_zero_grad(params[i]);
    CHECK(tg_backward(tape, h, v) == TG_OK); /* dL/dh_T = v */
    for (int64_t t = 0; t < T; t++) {
        const double *g = tg_tensor_grad(hs[t]);
        norms[t] = sqrt(dot(g, g, H));
    }
    tg_tape_free(tape);
    tg_tensor_free(xs), tg_tensor_free(h0), tg_tensor_free(v);
}

/* A log-scale chart in the terminal of the first n_runs runs: one column per step (t = T at the left,
   as backward goes), one row per decade or two. */
static void ascii_chart(double norms[FLOW_RUNS][FLOW_T], int n_runs, const char *marks) {
    double lo = INFINITY, hi = -INFINITY;
    for (int r = 0; r < n_runs; r++)
        for (int t = 0; t < FLOW_T; t++)
            if (norms[r][t] > 0) lo = fmin(lo, log10(norms[r][t])), hi = fmax(hi, log10(norms[r][t]));
    int step = hi - lo > 24 ? 2 : 1; /* decades per row; rows fall on multiples of step, so 1e+00 is one */
    int top = step * (int)ceil(hi / step), bottom = step * (int)floor(lo / step);
    int rows = (top - bottom) / step + 1;
    for (int i = 0; i < rows; i++) {
        char line[FLOW_T + 1];
        memset(line, ' ', FLOW_T);
        line[FLOW_T] = '\0';
        for (int r = 0; r < n_runs; r++)
            for (int c = 0; c < FLOW_T; c++) {
                double n = norms[r][FLOW_T - 1 - c];
                if (n > 0 && lround((top - log10(n)) / step) == i) line[c] = marks[r];
            }
        printf("    1e%+03d |%s\n", top - i * step, line);
    }
    printf("           +%.*s\n", FLOW_T,
           "------------------------------------------------------------------");
    printf("            t=%d%*st=1   (the gradient travels left to right)\n", FLOW_T, FLOW_T - 8, "");
}

static void part_d(void) {
    printf("\n(d) Gradient flow: |dL/dh_t| for t = T..1, T=%d, H=%d, L = v . h_T\n", FLOW_T, FLOW_H);
    uint64_t seed = 11;
    double Q[FLOW_H * FLOW_H];
    orthogonal(Q, FLOW_H, &seed);
    tg_tensor *params[3] = {rand_tensor(1, &seed, 0.5, SHAPE(FLOW_D, FLOW_H)),
                            tg_param_new(TG_F64, SHAPE(FLOW_H, FLOW_H)), tg_param_new(TG_F64, SHAPE(FLOW_H))};
    CHECK(params[1] && params[2]);
    const double rho[FLOW_RUNS] = {0.5, 1.0, 1.5, 1.5}, input[FLOW_RUNS] = {0, 0, 0, 1.0};
    const char *label[FLOW_RUNS] = {"rho=0.5", "rho=1.0", "rho=1.5", "1.5+input"};
    const char marks[FLOW_RUNS + 1] = ".o*+";
    double norms[FLOW_RUNS][FLOW_T], clip_before = 0, clip_after = 0;
    for (int r = 0; r < FLOW_RUNS; r++) {
        flow_run(rho[r], input[r], Q, norms[r], params);
        if (r == FLOW_RUNS - 1) { /* clip the realistic run's gradients, as torch's clip_grad_norm_ */
            tg_params *list = tg_params_new();
            CHECK(list && tg_params_add(list, "Wx", params[0]) == TG_OK && tg_params_add(list, "Wh", params[1]) == TG_OK &&
                  tg_params_add(list, "b", params[2]) == TG_OK);
            clip_before = tg_params_clip_grad_norm(list, 1.0);
            clip_after = tg_params_grad_norm(list);
            tg_params_free(list);
        }
    }

    printf("    steps back      t");
    for (int r = 0; r < FLOW_RUNS; r++) printf("  %10s", label[r]);
    printf("\n");
    for (int t = FLOW_T; t >= 1; t = t > 5 ? t - 5 : t - 4) { /* every 5th step, and t = 1 */
        printf("    %10d %6d", FLOW_T - t, t);
        for (int r = 0; r < FLOW_RUNS; r++) printf("  %10.3g", norms[r][t - 1]);
        printf("\n");
    }
    /* The run with inputs stays within a decade of 1, on top of rho = 1.0's line: the table has it. */
    printf("\n    log10 |dL/dh_t|, zero input:   . rho=0.5 (vanishes)   o rho=1.0 (kept)   * rho=1.5 "
           "(explodes)\n");
    ascii_chart(norms, 3, marks);
    printf(
        "    With zero input tanh' = 1 and the norm is rho^(T-t) exactly. With inputs, rho = 1.5 drives the\n"
        "    state into tanh's flat tails (|h| near 1), tanh' shrinks, and the growth stalls: a tanh RNN's\n"
        "    gradients explode while its units are unsaturated, and vanish once they saturate.\n");

    char csv_path[1024], gp_path[1024], png_path[1024];
    FILE *f = fopen(out_path(csv_path, sizeof csv_path, "grad_flow.csv"), "w");
    if (!f) {
        fprintf(stderr, "bptt_tour: cannot write %s\n", csv_path);
        exit(1);
    }
    fprintf(f, "t,steps_back,rho_0.5,rho_1.0,rho_1.5,rho_1.5_with_input\n");
    for (int t = FLOW_T; t >= 1; t--)
        fprintf(f, "%d,%d,%.17g,%.17g,%.17g,%.17g\n", t, FLOW_T - t, norms[0][t - 1], norms[1][t - 1],
                norms[2][t - 1], norms[3][t - 1]);
    fclose(f);
    printf("    wrote %s\n", csv_path);
    if (have_program("gnuplot")) {
        out_path(png_path, sizeof png_path, "grad_flow.png");
        f = fopen(out_path(gp_path, sizeof gp_path, "grad_flow.gp"), "w");
        CHECK(f);
        fprintf(f,
                "set terminal png size 900,540\nset output '%s'\nset datafile separator ','\n"
                "set logscale y\nset format y '1e%%T'\nset key outside right\nset grid\n"
                "set title 'BPTT gradient flow: |dL/dh_t| as the gradient travels back (T = %d)'\n"
                "set xlabel 'steps back from the loss (T - t)'\nset ylabel '|dL/dh_t|'\n"
                "plot '%s' skip 1 using 2:3 with linespoints title 'rho = 0.5', \\\n"
                "     '' skip 1 using 2:4 with linespoints title 'rho = 1.0', \\\n"
                "     '' skip 1 using 2:5 with linespoints title 'rho = 1.5', \\\n"
                "     '' skip 1 using 2:6 with linespoints title 'rho = 1.5, with inputs'\n",
                png_path, FLOW_T, csv_path);
        fclose(f);
        if (run_on_paths("gnuplot '%s'%s", gp_path, "")) printf("    wrote %s\n", png_path);
    } else {
        printf("    (gnuplot is not installed: no PNG; the CSV has the numbers)\n");
    }

    printf("\n    Clipping by global norm (the run with inputs): |(dWx, dWh, db)| = %.4g before, %.4g after\n"
           "    clipping to 1.0. Every gradient is scaled by the same factor, so the step keeps its "
           "direction.\n",
           clip_before, clip_after);
    for (int i = 0; i < 3; i++) tg_tensor_free(params[i]);
}

/* ================================================================================================
 * (e) Truncated BPTT: learning to continue a sine wave.
 * N = 4 streams read the same long wave from 4 offsets; each step sees T = 25 samples per stream
 * and predicts the next sample from each: y_t = h_t @ Wo + bo, loss = mean((y - target)^2). The
 * layer is stateful: each chunk starts where the last ended (the state is kept as a constant, so no
 * gradient crosses a chunk boundary: "truncated" BPTT). Plain SGD, gradients clipped to norm 1. */

enum { SEQ_LEN = 1000, SEQ_N = 4, SEQ_T = 25, SEQ_H = 16 };

/* Two sines of periods 50 and 17 samples. */
static double wave(int64_t k) {
    const double two_pi = 6.283185307179586;
    return 0.8 * sin(two_pi * (double)k / 50.0) + 0.1 * sin(two_pi * (double)k / 17.0);
}

static void part_e(int epochs, const char *save_path, const char *resume_path) {
    printf("\n(e) Truncated BPTT: a stateful TimeRNN learns to continue a wave (N=%d streams, T=%d, H=%d, "
           "SGD)\n",
           SEQ_N, SEQ_T, SEQ_H);
    uint64_t seed = 5;
    tg_tensor *Wx = rand_tensor(1, &seed, 0.5, SHAPE(1, SEQ_H)),
              *Wh = rand_tensor(1, &seed, 0.25, SHAPE(SEQ_H, SEQ_H));
    tg_tensor *b = tg_param_new(TG_F64, SHAPE(SEQ_H)), *Wo = rand_tensor(1, &seed, 0.25, SHAPE(SEQ_H, 1));
    tg_tensor *bo = tg_param_new(TG_F64, SHAPE(1));
    CHECK(b && bo);
    /* The parameters by name, for the optimizer, the clipping and the checkpoint. */
    tg_params *params = tg_params_new();
    CHECK(params && tg_params_add(params, "Wx", Wx) == TG_OK && tg_params_add(params, "Wh", Wh) == TG_OK &&
          tg_params_add(params, "b", b) == TG_OK && tg_params_add(params, "Wo", Wo) == TG_OK &&
          tg_params_add(params, "bo", bo) == TG_OK);
    tg_optim_opts opts = tg_optim_defaults(TG_OPTIM_SGD);
    opts.lr = 0.1;
    tg_optim *sgd = tg_optim_new(params, &opts);
    CHECK(sgd);
    const int chunks = SEQ_LEN / (SEQ_N * SEQ_T);
    /* A checkpoint is the parameters and the optimizer's state, step count included; each epoch starts
       the streams (and the RNN's state) afresh, so the steps taken say which epoch comes next. */
    if (resume_path) {
        if (tg_checkpoint_load(resume_path, params, sgd) != TG_OK) {
            fprintf(stderr, "bptt_tour: cannot resume from %s: %s\n", resume_path, tg_last_error());
            exit(1);
        }
        printf("    resumed from %s after epoch %lld\n", resume_path, (long long)(tg_optim_steps(sgd) / chunks));
    }
    tg_time_rnn *rnn = tg_time_rnn_new(Wx, Wh, b, 1);
    tg_tensor *xs = tg_tensor_new(TG_F64, SHAPE(SEQ_N, SEQ_T, 1)),
              *ys = tg_tensor_new(TG_F64, SHAPE(SEQ_N * SEQ_T, 1));
    tg_tape *tape = tg_tape_new();
    CHECK(rnn && xs && ys && tape);
    double first = 0, last = 0;
    int start = (int)(tg_optim_steps(sgd) / chunks) + 1;
    for (int epoch = start; epoch <= epochs; epoch++) {
        tg_time_rnn_reset_state(rnn); /* each epoch reads the streams from their start again */
        double sum = 0;
        for (int c = 0; c < chunks; c++) {
            /* stream n reads the wave from n * SEQ_LEN / N on: chunk c is its samples c*T .. c*T+T-1 */
            double *x = tg_tensor_data(xs), *y = tg_tensor_data(ys);
            for (int n = 0; n < SEQ_N; n++)
                for (int t = 0; t < SEQ_T; t++) {
                    int64_t k = (int64_t)n * (SEQ_LEN / SEQ_N) + (int64_t)c * SEQ_T + t;
                    x[n * SEQ_T + t] = wave(k);
                    y[n * SEQ_T + t] = wave(k + 1);
                }
            tg_tape_reset(tape);
            tg_tensor *hs = tg_time_rnn_forward(tape, rnn, xs);  /* (N,T,H) */
            tg_tensor *pred = tg_linear(tape, hs, Wo, bo);      /* (N,T,1): one GEMM over all N*T rows */
            tg_tensor *err = tg_sub(tape, tg_reshape(tape, pred, SHAPE(SEQ_N * SEQ_T, 1)), ys);
            tg_tensor *loss = tg_mean(tape, tg_mul(tape, err, err));
            tg_params_zero_grad(params);
            CHECK(loss && tg_backward(tape, loss, NULL) == TG_OK);
            tg_params_clip_grad_norm(params, 1.0); /* exploding gradients stay bounded */
            CHECK(tg_optim_step(sgd) == TG_OK);     /* p -= lr * dL/dp */
            sum += tg_tensor_get(loss, 0);
        }
        double mean = sum / chunks;
        if (epoch == start) first = mean;
        last = mean;
        if (epoch == start || epoch % 5 == 0) { /* the bar is log-scale: 10 marks per decade above 1e-4 */
            int bar = (int)lround(fmax(0.0, fmin(50.0, 10.0 * (log10(mean) + 4))));
            printf("    epoch %3d  loss %.5f  %.*s\n", epoch, mean, bar,
                   "##################################################");
        }
    }
    if (epochs - start >= 4) { /* too few epochs say nothing about learning */
        printf("    mean loss of an epoch went from %.3g to %.3g (%.1fx lower): %s\n", first, last, first / last,
               last < first ? "the RNN learned the wave" : "NOT falling: something is wrong");
        if (!(last < first)) exit(1);
    }
    /* One number for the trained parameters, so two runs can be compared at a glance. */
    uint64_t h = 0;
    for (int i = 0; i < tg_params_count(params); i++) h = h * 31 + tg_tensor_hash(tg_params_at(params, i, NULL));
    printf("    parameters after epoch %lld: fingerprint %016llx\n", (long long)(tg_optim_steps(sgd) / chunks),
           (unsigned long long)h);
    if (save_path) {
        CHECK(tg_checkpoint_save(save_path, params, sgd) == TG_OK);
        printf("    saved a checkpoint to %s (resume with --resume %s)\n", save_path, save_path);
    }
    tg_tape_free(tape);
    tg_time_rnn_free(rnn);
    tg_optim_free(sgd);
    tg_params_free(params);
    tg_tensor_free(Wx), tg_tensor_free(Wh), tg_tensor_free(b), tg_tensor_free(Wo), tg_tensor_free(bo);
    tg_tensor_free(xs), tg_tensor_free(ys);
}

/* ================================================================================================
 * (f) Why gates: the same gradient flow for an RNN, an LSTM and a GRU of one size, at initialisation.
 * The book's initialisation for all three (Wx ~ N(0, 1/D), Wh ~ N(0, 1/H), biases 0), except the
 * LSTM's forget gate, whose bias starts at 1 (sigmoid(1) = 0.73) as is usual since Gers et al.: a
 * gate half shut at the start would halve the cell's gradient at every step. The inputs are random,
 * as in training, which keeps the RNN's tanh away from its flat tails. */

enum { GATED_T = 60, GATED_H = 16, GATED_D = 4 };

static tg_tensor *normal_param(tg_rng *rng, double std, int ndim, const int64_t *shape) {
    tg_tensor *t = tg_param_new(TG_F64, ndim, shape);
    CHECK(t && tg_tensor_fill_normal(t, 0, std, rng) == TG_OK);
    return t;
}

/* norms[t] = |dL/dh_{t+1}| for t = 0..T-1, L = v . h_T, for model 0 RNN, 1 LSTM, 2 GRU. */
static void gated_run(int model, double *norms) {
    const int64_t T = GATED_T, H = GATED_H, D = GATED_D, gates = model == 1 ? 4 : model == 2 ? 3 : 1;
    tg_rng rng;
    tg_rng_seed(&rng, 2024); /* one stream for all three: the same inputs */
    tg_tensor *xs = tg_tensor_new(TG_F64, SHAPE(1, T, D));
    CHECK(xs && tg_tensor_fill_normal(xs, 0, 1, &rng) == TG_OK);
    tg_tensor *Wx = normal_param(&rng, 1 / sqrt((double)D), SHAPE(D, gates * H));
    tg_tensor *Wh = normal_param(&rng, 1 / sqrt((double)H), SHAPE(H, gates * H));
    tg_tensor *b = tg_param_new(TG_F64, SHAPE(gates * H));
    CHECK(b);
    if (model == 1) for (int64_t j = 0; j < H; j++) tg_tensor_set(b, j, 1.0); /* f's slice comes first */
    tg_tensor *h0 = tg_tensor_new(TG_F64, SHAPE(1, H)), *v = tg_tensor_new(TG_F64, SHAPE(1, H));
    CHECK(h0 && v);
    for (int64_t j = 0; j < H; j++) tg_tensor_set(v, j, 1.0 / sqrt((double)H));
    tg_tape *tape = tg_tape_new();
    CHECK(tape);
    tg_tensor *h = h0, *c = h0, *hs[GATED_T];
    for (int64_t t = 0; t < T; t++) {
        tg_tensor *x = tg_select(tape, xs, 1, t);
        if (model == 0) h = tg_rnn_cell(tape, x, h, Wx, Wh, b);
        else if (model == 1) h = tg_lstm_cell(tape, x, h, c, Wx, Wh, b, &c);
        else h = tg_gru_cell(tape, x, h, Wx, Wh, b);
        CHECK(h && tg_retain_grad(tape, h) == TG_OK);
        hs[t] = h;
    }
    CHECK(tg_backward(tape, h, v) == TG_OK);
    for (int64_t t = 0; t < T; t++) {
        const double *g = tg_tensor_grad(hs[t]);
        norms[t] = sqrt(dot(g, g, H));
    }
    tg_tape_free(tape);
    tg_tensor_free(xs), tg_tensor_free(Wx), tg_tensor_free(Wh), tg_tensor_free(b), tg_tensor_free(h0);
    tg_tensor_free(v);
}

static void part_f(void) {
    printf("\n(f) Why gates: |dL/dh_t| for t = T..1 at initialisation, T=%d, H=%d, L = v . h_T\n", GATED_T, GATED_H);
    double norms[3][GATED_T];
    for (int m = 0; m < 3; m++) gated_run(m, norms[m]);
    printf("    steps back      t         RNN        LSTM         GRU\n");
    for (int t = GATED_T; t >= 1; t = t > 10 ? t - 10 : t - 9)
        printf("    %10d %6d  %10.3g  %10.3g  %10.3g\n", GATED_T - t, t, norms[0][t - 1], norms[1][t - 1],
               norms[2][t - 1]);
    char csv_path[4096], gp_path[4096], png_path[4096];
    FILE *f = fopen(out_path(csv_path, sizeof csv_path, "grad_flow_gated.csv"), "w");
    CHECK(f);
    fprintf(f, "t,steps_back,rnn,lstm,gru\n");
    for (int t = GATED_T; t >= 1; t--)
        fprintf(f, "%d,%d,%.17g,%.17g,%.17g\n", t, GATED_T - t, norms[0][t - 1], norms[1][t - 1], norms[2][t - 1]);
    CHECK(fclose(f) == 0);
    printf("    wrote %s\n", csv_path);
    if (have_program("gnuplot")) {
        out_path(png_path, sizeof png_path, "grad_flow_gated.png");
        f = fopen(out_path(gp_path, sizeof gp_path, "grad_flow_gated.gp"), "w");
        CHECK(f);
        fprintf(f,
                "set terminal png size 900,540\nset output '%s'\nset datafile separator ','\n"
                "set logscale y\nset format y '1e%%T'\nset key outside right\nset grid\n"
                "set title 'Gradient flow at initialisation: |dL/dh_t| back through T = %d steps'\n"
                "set xlabel 'steps back from the loss (T - t)'\nset ylabel '|dL/dh_t|'\n"
                "plot '%s' skip 1 using 2:3 with linespoints title 'RNN', \\\n"
                "     '' skip 1 using 2:4 with linespoints title 'LSTM (forget bias 1)', \\\n"
                "     '' skip 1 using 2:5 with linespoints title 'GRU'\n",
                png_path, GATED_T, csv_path);
        CHECK(fclose(f) == 0);
        if (run_on_paths("gnuplot '%s'%s", gp_path, "")) printf("    wrote %s\n", png_path);
    } else {
        printf("    (gnuplot is not installed: no PNG; the CSV has the numbers)\n");
    }
    double shrink[3];
    for (int m = 0; m < 3; m++) shrink[m] = norms[m][GATED_T - 1] / norms[m][0];
    printf("\n    Over %d steps back the gradient shrinks %.2g-fold in the RNN, %.2g-fold in the GRU and only\n"
           "    %.2g-fold in the LSTM. The RNN's path multiplies it by tanh'(a_t) Wh^T at every step; the\n"
           "    LSTM's cell path by the forget gate alone (about 0.7 at this start), with no squashing in between;\n"
           "    the GRU's by 1 - z, near 0.5 at this start.\n",
           GATED_T - 1, shrink[0], shrink[2], shrink[1]);
    CHECK(norms[1][0] > 1e3 * norms[0][0]); /* the lesson must hold, or the tour says something false */
}

/* ================================================================================================
 * (g) State handed between layers: an encoder TimeRNN reads S steps of a signal and hands its last h
 * to a decoder TimeRNN, which must play the signal back reversed from that state alone (its inputs are
 * zeros). Trained twice from the same start, on one tape per step: once with the state handed through
 * set_state of a detached h, which copies it, so no gradient reaches the encoder; once with
 * tg_time_rnn_forward_from, which takes h as the tape's own tensor, so backward goes on into the
 * encoder. */

enum { ED_N = 64, ED_S = 5, ED_D = 1, ED_H = 12, ED_STEPS = 400 };

/* The loss of one step, and the encoder's gradient norm after its backward. */
static double ed_step(tg_tape *tape, tg_time_rnn *enc, tg_time_rnn *dec, tg_tensor *xs, tg_tensor *zeros,
                      tg_tensor *ys, tg_tensor *Wo, tg_tensor *bo, int on_tape, tg_params *ps, tg_optim *adam,
                      tg_tensor *const *enc_w, double *enc_norm) {
    tg_tensor *hT, *hs;
    CHECK(tg_time_rnn_forward_from(tape, enc, xs, NULL, &hT));
    if (on_tape) {
        hs = tg_time_rnn_forward_from(tape, dec, zeros, hT, NULL);
    } else {
        CHECK(tg_time_rnn_set_state(dec, tg_detach(tape, hT)) == TG_OK); /* the cut, made on purpose */
        hs = tg_time_rnn_forward(tape, dec, zeros);
    }
    tg_tensor *err = tg_sub(tape, tg_linear(tape, hs, Wo, bo), ys);
    tg_tensor *loss = tg_mean(tape, tg_mul(tape, err, err));
    CHECK(loss);
    double l = tg_tensor_get(loss, 0);
    tg_params_zero_grad(ps);
    CHECK(tg_backward(tape, loss, NULL) == TG_OK);
    double sq = 0;
    for (int i = 0; i < 3; i++) {
        const double *g = tg_tensor_grad(enc_w[i]);
        sq += dot(g, g, tg_tensor_numel(enc_w[i]));
    }
    *enc_norm = sqrt(sq);
    CHECK(tg_optim_step(adam) == TG_OK);
    tg_tape_reset(tape);
    return l;
}

static void part_g(void) {
    printf("\n(g) State handed between layers: an encoder TimeRNN reads %d steps, a decoder TimeRNN plays them\n"
           "    back reversed from the encoder's last h alone (N=%d, H=%d, Adam 0.01, one tape per step)\n",
           ED_S, ED_N, ED_H);
    tg_rng rng;
    tg_rng_seed(&rng, 77);
    tg_tensor *xs = tg_tensor_new(TG_F64, SHAPE(ED_N, ED_S, ED_D)), *ys = tg_tensor_new(TG_F64, SHAPE(ED_N, ED_S, 1)),
              *zeros = tg_tensor_new(TG_F64, SHAPE(ED_N, ED_S, 1));
    CHECK(xs && ys && zeros && tg_tensor_fill_normal(xs, 0, 1, &rng) == TG_OK);
    for (int64_t n = 0; n < ED_N; n++)
        for (int64_t t = 0; t < ED_S; t++) tg_tensor_set(ys, n * ED_S + t, tg_tensor_get(xs, n * ED_S + ED_S - 1 - t));
    double loss[2][ED_STEPS], norm[2][ED_STEPS];
    for (int on_tape = 0; on_tape < 2; on_tape++) {
        tg_rng init;
        tg_rng_seed(&init, 78); /* both runs from the same weights */
        tg_tensor *w[8] = {normal_param(&init, 1, SHAPE(ED_D, ED_H)), normal_param(&init, 1 / sqrt((double)ED_H), SHAPE(ED_H, ED_H)),
                           normal_param(&init, 0, SHAPE(ED_H)), normal_param(&init, 1, SHAPE(1, ED_H)),
                           normal_param(&init, 1 / sqrt((double)ED_H), SHAPE(ED_H, ED_H)), normal_param(&init, 0, SHAPE(ED_H)),
                           normal_param(&init, 1 / sqrt((double)ED_H), SHAPE(ED_H, 1)), normal_param(&init, 0, SHAPE(1))};
        const char *names[8] = {"enc.Wx", "enc.Wh", "enc.b", "dec.Wx", "dec.Wh", "dec.b", "out.W", "out.b"};
        tg_params *ps = tg_params_new();
        CHECK(ps);
        for (int i = 0; i < 8; i++) CHECK(tg_params_add(ps, names[i], w[i]) == TG_OK);
        tg_optim_opts o = tg_optim_defaults(TG_OPTIM_ADAM);
        o.lr = 0.01;
        tg_optim *adam = tg_optim_new(ps, &o);
        tg_time_rnn *enc = tg_time_rnn_new(w[0], w[1], w[2], 0), *dec = tg_time_rnn_new(w[3], w[4], w[5], 0);
        tg_tape *tape = tg_tape_new();
        CHECK(adam && enc && dec && tape);
        for (int s = 0; s < ED_STEPS; s++)
            loss[on_tape][s] = ed_step(tape, enc, dec, xs, zeros, ys, w[6], w[7], on_tape, ps, adam, w, &norm[on_tape][s]);
        tg_tape_free(tape);
        tg_time_rnn_free(enc), tg_time_rnn_free(dec);
        tg_optim_free(adam);
        tg_params_free(ps);
        for (int i = 0; i < 8; i++) tg_tensor_free(w[i]);
    }
    printf("                 set_state(tg_detach(h))         forward_from(h)\n");
    printf("      step        loss  |dL/d encoder|        loss  |dL/d encoder|\n");
    for (int s = 0; s < ED_STEPS; s = s ? s + 100 : 99)
        printf("    %6d  %10.4f  %14.3g  %10.4f  %14.3g\n", s + 1, loss[0][s], norm[0][s], loss[1][s], norm[1][s]);
    printf("\n    With the cut, the encoder's gradient is exactly 0: it stays as initialised, and only the decoder\n"
           "    learns, to read what a random encoding happens to keep (loss %.3f after %d steps). On the tape,\n"
           "    the gradient goes on from the decoder's h0 into the encoder, which learns what to keep: %.3f,\n"
           "    %.1f times lower.\n",
           loss[0][ED_STEPS - 1], ED_STEPS, loss[1][ED_STEPS - 1], loss[0][ED_STEPS - 1] / loss[1][ED_STEPS - 1]);
    CHECK(norm[0][ED_STEPS - 1] == 0 && norm[1][ED_STEPS - 1] > 0); /* the lesson must hold */
    CHECK(loss[1][ED_STEPS - 1] < 0.5 * loss[0][ED_STEPS - 1]);
    tg_tensor_free(xs), tg_tensor_free(ys), tg_tensor_free(zeros);
}

int main(int argc, char **argv) {
    const char *save_path = NULL, *resume_path = NULL;
    int epochs = 40;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--epochs") == 0 && i + 1 < argc && atoi(argv[i + 1]) > 0)
            epochs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--save") == 0 && i + 1 < argc)
            save_path = argv[++i];
        else if (strcmp(argv[i], "--resume") == 0 && i + 1 < argc)
            resume_path = argv[++i];
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: %s [DIR] [--epochs N] [--save FILE] [--resume FILE]\n", argv[0]);
            return 2;
        } else
            out_dir = argv[i];
    }
    if (resume_path) { /* fail now rather than after four parts */
        FILE *f = fopen(resume_path, "rb");
        if (!f) {
            perror(resume_path);
            return 1;
        }
        fclose(f);
    }
    /* The directory may not exist yet; an existing one is fine, and anything else fails at fopen. */
    mkdir(out_dir, 0777);
    printf("tapegrad: a tour of backpropagation through time (files go to %s)\n", out_dir);
    part_a();
    part_b();
    part_c();
    part_d();
    part_e(epochs, save_path, resume_path);
    part_f();
    part_g();
    printf("\ndone.\n");
    return 0;
}
