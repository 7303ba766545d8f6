/* bench_rnn: what a TimeRNN (and a TimeLSTM) training step costs on the tape, against the GEMMs it cannot
 * avoid.
 *
 * One invocation measures, through the public API (and tg__alloc_count, hence the static library):
 *   - workloads W0 (N 10, T 5, H 100), W1 (N 32, T 35, H 128), W2 (N 64, T 64, H 512) and W2 at T 256,
 *     f32, D = H, xs, Wx, Wh, b all needing gradients: a step is zero the grads, tg_time_rnn_forward,
 *     tg_backward(hs, dhs), tg_tape_reset; with the default checks (TG_CHECK_SAVED) and with none, at 1
 *     and 2 OpenBLAS threads (openblas_set_num_threads);
 *   - the same step of a TimeLSTM at W1's and W2's sizes (LSTM-W1, LSTM-W2: Wx (D,4H), Wh (H,4H));
 *   - beside each, the bound, timed in the same loop: the cblas_sgemm calls a step needs at their
 *     shapes and nothing else (TimeRNN: per step h @ Wh and x @ Wx forward; dt @ Wh^T, dt @ Wx^T, h^T @ dt
 *     and x^T @ dt backward, 6 T calls; TimeLSTM: bound_lstm's 3 T + 3, its input side in one GEMM each way,
 *     as the layer runs it);
 *   - per row the ratio to the bound, GFLOP/s (6 G N H (H + D) T flop a step, G = 1 gate for the RNN and
 *     4 for the LSTM), the tape's peak memory
 *     (tg_tape_memory after backward: the arena only grows within a recording) and the tg__malloc calls
 *     of one warm step;
 *   - the tape's own cost per op, forward + backward, on 1-element tensors (a chain of tg_mul);
 *   - a full-mode tg_gradcheck of TimeRNN at N 2, T 5, D 3, H 4 in f64.
 * The three timings of a row (bound, checks on, checks off) run in turn within each repetition, so drift
 * on a shared machine hits all alike; each time is a median, and each ratio (to the bound, checks on to
 * off) the median of the repetitions' own ratios: a repetition's three runs are adjacent in time, so its
 * ratio cancels the drift that moves all three (the bound alone spreads 20 % over a W2 row here), which a
 * ratio of two medians keeps. Output: a table, then the same as JSON
 * lines (lines starting with '{'), which bench/compare.sh reads.
 *
 * Usage: bench_rnn [--quick] [--only W2] [--reps n]
 *   --quick   tiny sizes, well under a second: a meson test (suite 'bench') so that this file cannot rot;
 *             it checks the benched gradients against the hand-derived reference, never the timings
 *   --only    one part: a workload's name, overhead or gradcheck (to profile: perf record bench_rnn --only W2)
 *   --gemm-threads   instead, each of the workloads' GEMM shapes alone at 1 and 2 threads
 * Before timing, the benched computation is checked against tg_time_rnn_ref in both dtypes; a mismatch
 * exits 1.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cblas.h>
#include "tapegrad.h"
#define BENCH_NAME "bench_rnn"
#include "bench_util.h"
#include "ops_internal.h"

#define MAX_REPS 200

static tg_tensor *rand_tensor(tg_dtype dt, int param, double scale, uint64_t *seed, int ndim, const int64_t *shape) {
    tg_tensor *t = param ? tg_param_new(dt, ndim, shape) : tg_tensor_new(dt, ndim, shape);
    if (!t || tg_tensor_fill_uniform(t, -scale, scale, seed) != TG_OK) die("making inputs");
    return t;
}

/* One problem: the layer's parameters, the input and the upstream gradient dL/dhs. G is the number of
   gates: 1 for a TimeRNN, 4 for a TimeLSTM (Wx (D,GH), Wh (H,GH), b (GH,)). */
typedef struct {
    int G;
    int64_t N, T, D, H;
    tg_tensor *xs, *Wx, *Wh, *b, *dhs;
    tg_time_rnn *rnn;
    tg_time_lstm *lstm;
} problem;

static problem problem_new(tg_dtype dt, int G, int64_t N, int64_t T, int64_t D, int64_t H) {
    uint64_t seed = 42;
    problem p = {G, N, T, D, H, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    /* Weights of scale 1/sqrt(fan-in) keep tanh out of saturation, as a trained RNN's would be. */
    p.xs = rand_tensor(dt, 1, 1.0, &seed, 3, (int64_t[]){N, T, D});
    p.Wx = rand_tensor(dt, 1, 1.0 / sqrt((double)D), &seed, 2, (int64_t[]){D, G * H});
    p.Wh = rand_tensor(dt, 1, 1.0 / sqrt((double)H), &seed, 2, (int64_t[]){H, G * H});
    p.b = rand_tensor(dt, 1, 0.1, &seed, 1, (int64_t[]){G * H});
    p.dhs = rand_tensor(dt, 0, 1.0, &seed, 3, (int64_t[]){N, T, H});
    if (G == 1 ? !(p.rnn = tg_time_rnn_new(p.Wx, p.Wh, p.b, 0)) : !(p.lstm = tg_time_lstm_new(p.Wx, p.Wh, p.b, 0)))
        die(G == 1 ? "tg_time_rnn_new" : "tg_time_lstm_new");
    return p;
}

static tg_tensor *problem_forward(tg_tape *tape, problem *p) {
    return p->G == 1 ? tg_time_rnn_forward(tape, p->rnn, p->xs) : tg_time_lstm_forward(tape, p->lstm, p->xs);
}

static void problem_free(problem *p) {
    tg_time_rnn_free(p->rnn), tg_time_lstm_free(p->lstm);
    tg_tensor_free(p->xs), tg_tensor_free(p->Wx), tg_tensor_free(p->Wh), tg_tensor_free(p->b);
    tg_tensor_free(p->dhs);
}

/* One training step; returns its time (ms) and leaves the arena's peak bytes in *peak. */
static double step(tg_tape *tape, problem *p, double *peak) {
    double t0 = now_ms();
    tg_zero_grad(p->xs), tg_zero_grad(p->Wx), tg_zero_grad(p->Wh), tg_zero_grad(p->b);
    tg_tensor *hs = problem_forward(tape, p);
    if (!hs) die("the layer's forward");
    if (tg_backward(tape, hs, p->dhs) != TG_OK) die("tg_backward");
    *peak = (double)tg_tape_memory(tape);
    tg_tape_reset(tape);
    return now_ms() - t0;
}

/* ---- the bound: the step's GEMMs alone ------------------------------------------------------------ */

typedef struct {
    int G;
    int64_t N, T, D, H;
    float *X, *Hs, *Wx, *Wh, *C, *dT, *dH, *dX, *dWx, *dWh; /* X (T,N,D), Hs (T+1,N,H), C and dT (T,N,GH) */
} gemms;

static float *buf(int64_t n) {
    float *p = calloc((size_t)n + 16, sizeof *p);
    if (!p) die("allocating the bound's buffers");
    for (int64_t i = 0; i < n; i++) p[i] = (float)((i * 7919) % 2001 - 1000) * 1e-3f;
    return p;
}

static gemms gemms_new(int G, int64_t N, int64_t T, int64_t D, int64_t H) {
    gemms g = {G, N, T, D, H, buf(T * N * D), buf((T + 1) * N * H), buf(D * G * H), buf(H * G * H),
               buf(T * N * G * H), buf(T * N * G * H), buf(N * H), buf(T * N * D), buf(D * G * H), buf(H * G * H)};
    return g;
}

static void gemms_free(gemms *g) {
    free(g->X), free(g->Hs), free(g->Wx), free(g->Wh), free(g->C), free(g->dT), free(g->dH), free(g->dX);
    free(g->dWx), free(g->dWh);
}

#define SG(ta, tb, m, n, k, A, lda, B, ldb, beta, C, ldc)                                          \
    cblas_sgemm(CblasRowMajor, ta, tb, (blasint)(m), (blasint)(n), (blasint)(k), 1.0f, A, (blasint)(lda), B, \
                (blasint)(ldb), beta, C, (blasint)(ldc))

/* TimeRNN's: per step h @ Wh and x @ Wx forward; dt @ Wh^T, dt @ Wx^T, h^T @ dt and x^T @ dt backward. */
static double bound_rnn(gemms *g) {
    const int64_t N = g->N, D = g->D, H = g->H;
    const CBLAS_TRANSPOSE n_ = CblasNoTrans, t_ = CblasTrans;
    double t0 = now_ms();
    for (int64_t t = 0; t < g->T; t++) {
        SG(n_, n_, N, H, H, g->Hs + t * N * H, H, g->Wh, H, 0.0f, g->Hs + (t + 1) * N * H, H);
        SG(n_, n_, N, H, D, g->X + t * N * D, D, g->Wx, H, 0.0f, g->C, H);
    }
    for (int64_t t = g->T - 1; t >= 0; t--) {
        SG(n_, t_, N, H, H, g->dT, H, g->Wh, H, 0.0f, g->dH, H);
        SG(n_, t_, N, D, H, g->dT, H, g->Wx, H, 0.0f, g->dX + t * N * D, D);
        SG(t_, n_, H, H, N, g->Hs + t * N * H, H, g->dT, H, 1.0f, g->dWh, H);
        SG(t_, n_, D, H, N, g->X + t * N * D, D, g->dT, H, 1.0f, g->dWx, H);
    }
    return now_ms() - t0;
}

/* TimeLSTM's, at the layer's own shapes (tg_lstm.h): the input side of all T steps as one GEMM each way
   (xs @ Wx over N T rows; dA @ Wx^T and xs^T @ dA), the recurrent side per step (h @ Wh; dA_t @ Wh^T and
   h^T @ dA_t; forward, h @ Wh adds onto the step's projection, beta = 1, as tg_addmm does), with GH = 4H
   gate columns. */
static double bound_lstm(gemms *g) {
    const int64_t N = g->N, T = g->T, D = g->D, H = g->H, GH = g->G * g->H;
    const CBLAS_TRANSPOSE n_ = CblasNoTrans, t_ = CblasTrans;
    double t0 = now_ms();
    SG(n_, n_, N * T, GH, D, g->X, D, g->Wx, GH, 0.0f, g->C, GH);
    for (int64_t t = 0; t < T; t++)
        SG(n_, n_, N, GH, H, g->Hs + t * N * H, H, g->Wh, GH, 1.0f, g->C + t * N * GH, GH);
    for (int64_t t = T - 1; t >= 0; t--) {
        SG(n_, t_, N, H, GH, g->dT + t * N * GH, GH, g->Wh, GH, 0.0f, g->dH, H);
        SG(t_, n_, H, GH, N, g->Hs + t * N * H, H, g->dT + t * N * GH, GH, 1.0f, g->dWh, GH);
    }
    SG(n_, t_, N * T, D, GH, g->dT, GH, g->Wx, GH, 0.0f, g->dX, D);
    SG(t_, n_, D, GH, N * T, g->X, D, g->dT, GH, 0.0f, g->dWx, GH);
    return now_ms() - t0;
}

static double bound_run(gemms *g) { return g->G == 1 ? bound_rnn(g) : bound_lstm(g); }

/* ---- the check: the benched computation against the hand-derived reference ----------------------- */

static double max_rel_err(tg_tensor *ref, const void *got) {
    int64_t n = tg_tensor_numel(ref);
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(tg_tensor_get(ref, i)));
    for (int64_t i = 0; i < n; i++) {
        double g = tg_tensor_dtype(ref) == TG_F32 ? (double)((const float *)got)[i] : ((const double *)got)[i];
        worst = fmax(worst, fabs(g - tg_tensor_get(ref, i)));
    }
    return worst / (scale > 0 ? scale : 1);
}

static int check_against_ref(tg_dtype dt, int G) {
    const int64_t N = 3, T = 5, D = 6, H = 7;
    problem p = problem_new(dt, G, N, T, D, H);
    tg_tape *tape = tg_tape_new();
    if (!tape) die("tg_tape_new");
    tg_tensor *hs = problem_forward(tape, &p);
    if (!hs || tg_backward(tape, hs, p.dhs) != TG_OK) die("check: forward/backward");
    tg_tensor *r[5] = {tg_tensor_new(dt, 3, (int64_t[]){N, T, H}), tg_tensor_new(dt, 3, (int64_t[]){N, T, D}),
                       tg_tensor_new(dt, 2, (int64_t[]){D, G * H}), tg_tensor_new(dt, 2, (int64_t[]){H, G * H}),
                       tg_tensor_new(dt, 1, (int64_t[]){G * H})};
    for (int i = 0; i < 5; i++)
        if (!r[i]) die("check: allocating");
    if ((G == 1 ? tg_time_rnn_ref(p.xs, NULL, p.Wx, p.Wh, p.b, p.dhs, r[0], r[1], r[2], r[3], r[4], NULL)
                : tg_time_lstm_ref(p.xs, NULL, NULL, p.Wx, p.Wh, p.b, p.dhs, r[0], NULL, r[1], r[2], r[3], r[4], NULL,
                                   NULL)) != TG_OK)
        die(G == 1 ? "tg_time_rnn_ref" : "tg_time_lstm_ref");
    const char *names[5] = {"hs", "dxs", "dWx", "dWh", "db"};
    const void *got[5] = {tg_tensor_data(hs), tg_tensor_grad(p.xs), tg_tensor_grad(p.Wx), tg_tensor_grad(p.Wh),
                          tg_tensor_grad(p.b)};
    double tol = dt == TG_F32 ? 1e-5 : 1e-12;
    int bad = 0;
    for (int i = 0; i < 5; i++) {
        double e = max_rel_err(r[i], got[i]);
        if (!(e <= tol)) {
            fprintf(stderr, "bench_rnn: %s %s differs from %s: max error %.3g of its largest entry "
                    "(tolerance %.0e)\n", dt == TG_F32 ? "f32" : "f64", names[i],
                    G == 1 ? "tg_time_rnn_ref" : "tg_time_lstm_ref", e, tol);
            bad = 1;
        }
        tg_tensor_free(r[i]);
    }
    tg_tape_free(tape);
    problem_free(&p);
    return bad;
}

/* ---- rows -------------------------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int64_t N, T, H;
    int G; /* gates: 1 TimeRNN, 4 TimeLSTM */
} workload;

typedef struct {
    const char *workload;
    int G;
    int64_t N, T, D, H;
    int threads;
    double bound, ms[2], peak[2], mallocs[2]; /* [0] checks on (TG_CHECK_SAVED), [1] off */
    double ratio[2], on_off;                  /* medians of each repetition's ms[k] / bound and ms[0] / ms[1] */
    double t_ratio;                           /* with a base workload: the median of ms[0] / its ms[0] */
} row;

/* Environment that changes what is measured, printed beside every figure. */
static const char *env_or(const char *name, const char *dflt) {
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

/* A row: each repetition runs the bound, a step with checks and one without, in turns; with base, also a
   step of base with checks, for t_ratio (the T-linearity: both Ts in the same repetition, so that the
   machine's drift, 20 % on the bound within minutes here, cancels). */
static row bench_workload(const workload *w, const workload *base, int threads, int min_reps, double budget_ms) {
    openblas_set_num_threads(threads);
    row r = {w->name, w->G, w->N, w->T, w->H, w->H, openblas_get_num_threads(), 0, {0, 0}, {0, 0}, {0, 0}, {0, 0}, 0,
             NAN};
    problem p = problem_new(TG_F32, w->G, w->N, w->T, w->H, w->H);
    gemms g = gemms_new(w->G, w->N, w->T, w->H, w->H);
    tg_tape *tape[2];
    for (int k = 0; k < 2; k++) {
        if (!(tape[k] = tg_tape_new())) die("tg_tape_new");
        tg_tape_set_checks(tape[k], k ? 0 : TG_CHECK_SAVED);
        step(tape[k], &p, &r.peak[k]); /* the first step grows the arena, the second runs warm */
        step(tape[k], &p, &r.peak[k]);
        int64_t before = tg__alloc_count();
        step(tape[k], &p, &r.peak[k]);
        r.mallocs[k] = (double)(tg__alloc_count() - before);
    }
    problem pb = {0};
    tg_tape *tb = NULL;
    double peak;
    if (base) {
        pb = problem_new(TG_F32, base->G, base->N, base->T, base->H, base->H);
        if (!(tb = tg_tape_new())) die("tg_tape_new");
        tg_tape_set_checks(tb, TG_CHECK_SAVED);
        step(tb, &pb, &peak), step(tb, &pb, &peak);
    }
    bound_run(&g);
    static double v[4][MAX_REPS], q[4][MAX_REPS];
    int n = 0;
    double start = now_ms();
    while (n < MAX_REPS && (n < min_reps || now_ms() - start < budget_ms)) {
        for (int j = 0; j < 3; j++) { /* the order turns each repetition */
            int which = (j + n) % 3;
            v[which][n] = which == 2 ? bound_run(&g) : step(tape[which], &p, &peak);
        }
        if (base) v[3][n] = step(tb, &pb, &peak);
        n++;
    }
    for (int i = 0; i < n; i++) q[0][i] = v[0][i] / v[2][i], q[1][i] = v[1][i] / v[2][i], q[2][i] = v[0][i] / v[1][i];
    r.ratio[0] = median(q[0], n), r.ratio[1] = median(q[1], n), r.on_off = median(q[2], n);
    if (base) {
        for (int i = 0; i < n; i++) q[3][i] = v[0][i] / v[3][i];
        r.t_ratio = median(q[3], n);
        tg_tape_free(tb);
        problem_free(&pb);
    }
    r.ms[0] = median(v[0], n), r.ms[1] = median(v[1], n), r.bound = median(v[2], n);
    tg_tape_free(tape[0]), tg_tape_free(tape[1]);
    gemms_free(&g);
    problem_free(&p);
    return r;
}

/* The tape's cost per op: K tg_mul on 1-element tensors (w saved by all K, as a weight is), backward, reset;
   ns[0], mallocs[0] with TG_CHECK_SAVED, ns[1], mallocs[1] without. A repetition runs both back to back, so
   that the two see the same machine state (on these VMs it moves this figure by up to 1.8x for seconds at
   a time). */
static void overhead(int quick, double ns[2], double mallocs[2]) {
    const int K = 1000;
    tg_tensor *x = tg_param_new(TG_F32, 1, (int64_t[]){1}), *w = tg_param_new(TG_F32, 1, (int64_t[]){1});
    tg_tape *tapes[2] = {tg_tape_new(), tg_tape_new()};
    if (!x || !w || !tapes[0] || !tapes[1]) die("overhead: allocating");
    tg_tape_set_checks(tapes[0], TG_CHECK_SAVED), tg_tape_set_checks(tapes[1], 0);
    tg_tensor_set(x, 0, 1.0), tg_tensor_set(w, 0, 0.999);
    int reps = quick ? 3 : 200;
    double v[2][MAX_REPS];
    for (int r = 0; r < reps + 2; r++)
        for (int c = 0; c < 2; c++) {
            int64_t before = tg__alloc_count();
            double t0 = now_ms();
            tg_tensor *h = x;
            for (int k = 0; k < K; k++) h = tg_mul(tapes[c], h, w);
            if (!h || tg_backward(tapes[c], h, NULL) != TG_OK) die("overhead: backward");
            tg_tape_reset(tapes[c]);
            if (r >= 2) v[c][r - 2] = (now_ms() - t0) * 1e6 / K, mallocs[c] = (double)(tg__alloc_count() - before);
        }
    for (int c = 0; c < 2; c++) ns[c] = median(v[c], reps), tg_tape_free(tapes[c]);
    tg_tensor_free(x), tg_tensor_free(w);
}

/* One GEMM shape at 1 and 2 OpenBLAS threads, straight cblas_sgemm (C = A B): where a second thread helps.
   The shapes are the workloads' (per step (N,H)x(H,H), the batched projection (N T,H)x(H,H) and its
   weight gradient (H,N T)x(N T,H)). */
static void gemm_one(const char *name, int64_t m, int64_t n, int64_t k) {
    float *A = buf(m * k), *B = buf(k * n), *C = buf(m * n);
    double v[2][MAX_REPS];
    for (int r = 0; r < MAX_REPS; r++)
        for (int th = 0; th < 2; th++) {
            openblas_set_num_threads(th + 1);
            double t0 = now_ms();
            SG(CblasNoTrans, CblasNoTrans, m, n, k, A, k, B, n, 0.0f, C, n);
            v[th][r] = (now_ms() - t0) * 1e3;
        }
    double t1 = median(v[0], MAX_REPS), t2 = median(v[1], MAX_REPS);
    printf("%-8s %6lld %6lld %6lld %11.3g | %9.1f %9.1f %7.2f\n", name, (long long)m, (long long)n, (long long)k,
           (double)m * (double)n * (double)k, t1, t2, t2 / t1);
    free(A), free(B), free(C);
}

static void gemm_threads(const workload *ws, int nw, const char *only) {
    printf("\n# one sgemm C(m,n) = A(m,k) B(k,n) at 1 and 2 OpenBLAS threads (median us of 200 calls each way, "
           "in turn)\n");
    printf("%-8s %6s %6s %6s %11s | %9s %9s %7s\n", "workload", "m", "n", "k", "m n k", "1 thr us", "2 thr us",
           "2/1");
    for (int64_t h = 128; h <= 512 && !only; h *= 2) /* between the workloads' sizes */
        for (int64_t m = 32; m <= 128; m *= 2) gemm_one("sweep", m, h, h);
    for (int i = 0; i < nw; i++) {
        if (only && strcmp(only, ws[i].name)) continue;
        int64_t N = ws[i].N, T = ws[i].T, H = ws[i].H;
        int64_t shapes[3][3] = {{N, H, H}, {N * T, H, H}, {H, H, N * T}};
        for (int k = 0; k < 3; k++) gemm_one(ws[i].name, shapes[k][0], shapes[k][1], shapes[k][2]);
    }
}

static tg_tensor *rnn_fn(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    (void)in;
    return tg_time_rnn_forward(tape, ctx, in[0]);
}

/* A full-mode tg_gradcheck of TimeRNN, N 2, T 5, D 3, H 4, f64: hs against xs, Wx, Wh and b. */
static double gradcheck_ms(int quick) {
    uint64_t seed = 7;
    tg_tensor *in[4] = {rand_tensor(TG_F64, 1, 1.0, &seed, 3, (int64_t[]){2, 5, 3}),
                        rand_tensor(TG_F64, 1, 0.5, &seed, 2, (int64_t[]){3, 4}),
                        rand_tensor(TG_F64, 1, 0.5, &seed, 2, (int64_t[]){4, 4}),
                        rand_tensor(TG_F64, 1, 0.1, &seed, 1, (int64_t[]){4})};
    tg_time_rnn *layer = tg_time_rnn_new(in[1], in[2], in[3], 0);
    if (!layer) die("gradcheck: layer");
    int reps = quick ? 1 : 15;
    double v[MAX_REPS];
    for (int r = 0; r < reps; r++) {
        tg_gradcheck_report rep;
        double t0 = now_ms();
        if (!tg_gradcheck(rnn_fn, layer, in, 4, NULL, &rep)) {
            fprintf(stderr, "bench_rnn: the TimeRNN gradcheck failed: %s\n", rep.message);
            exit(1);
        }
        v[r] = now_ms() - t0;
    }
    tg_time_rnn_free(layer);
    for (int i = 0; i < 4; i++) tg_tensor_free(in[i]);
    return median(v, reps);
}

int main(int argc, char **argv) {
    int quick = 0, min_reps = 15, gemm_only = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--gemm-threads")) gemm_only = 1;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc && atoi(argv[i + 1]) > 0) min_reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--quick] [--only W0|W1|W2|W2-T256|LSTM-W1|LSTM-W2|overhead|gradcheck] "
                    "[--reps n] [--gemm-threads]\n", argv[0]);
            return 2;
        }
    }
    if (check_against_ref(TG_F32, 1) | check_against_ref(TG_F64, 1) | check_against_ref(TG_F32, 4) |
        check_against_ref(TG_F64, 4))
        return 1;

    static const workload full[] = {{"W0", 10, 5, 100, 1},         {"W1", 32, 35, 128, 1},
                                    {"W2", 64, 64, 512, 1},        {"W2-T256", 64, 256, 512, 1},
                                    {"LSTM-W1", 32, 35, 128, 4},   {"LSTM-W2", 64, 64, 512, 4}};
    static const workload tiny[] = {{"Q0", 2, 3, 4, 1}, {"Q1", 4, 6, 16, 1}, {"LSTM-Q", 3, 4, 8, 4}};
    const workload *ws = quick ? tiny : full;
    int nw = quick ? 3 : 6;
    if (min_reps > MAX_REPS) min_reps = MAX_REPS;
    if (quick) min_reps = 3;
    const char *alloc = env_or("GLIBC_TUNABLES", "default");
    if (gemm_only) return gemm_threads(ws, quick ? 2 : 3, only), 0;

    printf("# bench_rnn: TimeRNN (LSTM-*: TimeLSTM) f32 training step (zero grads, forward, backward, reset), "
           "D = H, xs needs a gradient%s\n", quick ? " (--quick: tiny sizes, timings meaningless)" : "");
    printf("# bound: the step's cblas_sgemm calls alone (6 T for the RNN, 3 T + 3 for the LSTM), timed in the same "
           "loop; medians of >= %d repetitions\n", min_reps);
    printf("# memory: the tape's arena (tg__malloc, 64-byte aligned, kept across resets); glibc malloc tunables: %s;"
           " OPENBLAS_CORETYPE=%s OPENBLAS_NUM_THREADS=%s\n", alloc, env_or("OPENBLAS_CORETYPE", "unset"),
           env_or("OPENBLAS_NUM_THREADS", "unset"));
    double below = tg__gemm_one_thread_below_now();
    if (below > 0)
        printf("# threads: OpenBLAS kernel %s; tapegrad runs GEMMs below %.3g multiply-adds on one thread\n",
               openblas_get_corename(), below);
    else
        printf("# threads: OpenBLAS kernel %s; a thread count is set, so tapegrad leaves OpenBLAS's own split "
               "(threads from 2^18 multiply-adds)\n", openblas_get_corename());
    printf("%-8s %4s %4s %4s %3s | %9s %9s %9s | %6s %6s %6s | %7s %7s | %8s %8s | %5s %5s\n", "workload", "N", "T",
           "H", "thr", "bound_ms", "tg_ms", "off_ms", "tg/bd", "off/bd", "tg/off", "GF/s", "GF/s_bd", "peak_MiB",
           "off_MiB", "mall", "m_off");
    row rows[16];
    int nr = 0;
    for (int i = 0; i < nw; i++) {
        if (only && strcmp(only, ws[i].name)) continue;
        int long_run = !strcmp(ws[i].name, "W2-T256");
        for (int th = 1; th <= 2; th++) {
            if (long_run && th == 1) continue; /* the T-linearity row: 2 threads, as W2's target row */
            /* the long row's base is the workload before it: W2 */
            row r = bench_workload(&ws[i], long_run ? &ws[i - 1] : NULL, th, long_run ? 5 : min_reps,
                                   quick ? 0 : long_run ? 3000 : 5000);
            double flop = 6.0 * r.G * (double)r.N * (double)r.H * (double)(r.H + r.D) * (double)r.T;
            printf("%-8s %4lld %4lld %4lld %3d | %9.3f %9.3f %9.3f | %6.2f %6.2f %6.3f | %7.1f %7.1f | %8.2f %8.2f | "
                   "%5.0f %5.0f\n", r.workload, (long long)r.N, (long long)r.T, (long long)r.H, r.threads, r.bound,
                   r.ms[0], r.ms[1], r.ratio[0], r.ratio[1], r.on_off, flop / (r.ms[0] * 1e6),
                   flop / (r.bound * 1e6), r.peak[0] / 1048576.0, r.peak[1] / 1048576.0, r.mallocs[0], r.mallocs[1]);
            fflush(stdout);
            rows[nr++] = r;
        }
    }
    double ns[2] = {NAN, NAN}, om[2] = {NAN, NAN}, gc = NAN;
    /* no BLAS in these two: one thread, so that no OpenBLAS worker spins on the other core meanwhile */
    openblas_set_num_threads(1);
    if (!only || !strcmp(only, "overhead")) overhead(quick, ns, om);
    if (!only || !strcmp(only, "gradcheck")) gc = gradcheck_ms(quick);
    printf("\n# tape overhead per op (forward + backward, 1-element tg_mul chain of 1000, 1 OpenBLAS thread): %.1f ns "
           "with checks, "
           "%.1f ns without; mallocs per warm chain: %.0f, %.0f\n", ns[0], ns[1], om[0], om[1]);
    printf("# full-mode tg_gradcheck of TimeRNN N 2 T 5 D 3 H 4, f64, 1 OpenBLAS thread: %.3f ms\n", gc);
    for (int i = 0; i < nr; i++)
        if (!isnan(rows[i].t_ratio))
            printf("# linear in T: a %s step takes %.2fx a W2 step (checks on, %d threads, both in each repetition)\n",
                   rows[i].workload, rows[i].t_ratio, rows[i].threads);
    printf("\n");

    for (int i = 0; i < nr; i++) {
        const row *r = &rows[i];
        double flop = 6.0 * r->G * (double)r->N * (double)r->H * (double)(r->H + r->D) * (double)r->T;
        for (int k = 0; k < 2; k++)
            printf("{\"bench\": \"tapegrad\", \"workload\": \"%s\", \"N\": %lld, \"T\": %lld, \"D\": %lld, "
                   "\"H\": %lld, \"threads\": %d, \"checks\": \"%s\", \"ms\": %.4f, \"bound_ms\": %.4f, "
                   "\"ratio\": %.4f, \"checks_ratio\": %.4f, \"gflops\": %.2f, \"peak_mib\": %.3f, "
                   "\"mallocs_per_step\": %.0f, \"allocator\": \"tape arena, glibc %s\"}\n", r->workload,
                   (long long)r->N, (long long)r->T, (long long)r->D, (long long)r->H, r->threads, k ? "off" : "saved",
                   r->ms[k], r->bound, r->ratio[k], r->on_off, flop / (r->ms[k] * 1e6),
                   r->peak[k] / 1048576.0, r->mallocs[k], alloc);
    }
    for (int k = 0; k < 2; k++)
        printf("{\"bench\": \"tapegrad\", \"what\": \"overhead\", \"checks\": \"%s\", \"ns_per_op\": %.2f, "
               "\"mallocs_per_step\": %.0f}\n", k ? "off" : "saved", ns[k], om[k]);
    printf("{\"bench\": \"tapegrad\", \"what\": \"gradcheck\", \"threads\": 1, \"ms\": %.4f}\n", gc);
    for (int i = 0; i < nr; i++)
        if (!isnan(rows[i].t_ratio))
            printf("{\"bench\": \"tapegrad\", \"what\": \"t_linearity\", \"workload\": \"%s\", \"base\": \"W2\", "
                   "\"threads\": %d, \"ratio\": %.4f}\n", rows[i].workload, rows[i].threads, rows[i].t_ratio);
    return 0;
}
