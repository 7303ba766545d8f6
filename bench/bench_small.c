/* bench_small: the training steps of the book-sized models a learner trains, against the GEMMs they run.
 *
 * Two steps, built through the public API as the examples build them, f32, one OpenBLAS thread (or --threads):
 *   - rnnlm: the book's small language-model experiment (examples/rnnlm.c --model rnn --optimizer sgd):
 *     V 340, B 10, T 5, E 100, H 100; ids -> tg_embedding -> TimeRNN (stateful) -> tg_linear ->
 *     tg_cross_entropy; zero the gradients, forward, backward, SGD step, reset;
 *   - attention: the book's date model (examples/seq2seq.c --model attention): V 59, B 128, question 29,
 *     answer 10, wordvec 16, hidden 256; encoder TimeLSTM, decoder TimeLSTM from the encoder's h
 *     (forward_from), tg_attention, concat, tg_linear, tg_cross_entropy; backward, clipping at 5, Adam.
 * Beside each, its bound: the same GEMMs, logged from one step (tg__gemm_log: shapes, transposes,
 * leading dims, beta) and replayed alone through tg__gemm on buffers of their sizes. Step and bound run
 * in turn within each repetition; the ratio printed is the median of the repetitions' own ratios, the
 * times are medians. Also the time of the step's parts that are not GEMMs, measured apart: the optimizer
 * step alone and the per-op overhead (bench_rnn's).
 *
 * Usage: bench_small [--quick] [--reps n] [--threads n] [--only rnnlm|attention] [--vocab V]
 *   --quick   two repetitions of each (a meson test, so that this file cannot rot; timings meaningless)
 *   --threads OpenBLAS's thread count (default 1); tapegrad still runs the GEMMs below its threshold
 *             (ops/matmul.c) on one, so 2 shows what a 2-core machine's default costs
 *   --only    one of the two steps (for a profiler)
 *   --vocab   rnnlm's vocabulary (default 340; examples/rnnlm and bench/rnnlm_numpy.py on their default
 *             text have 427)
 * Output: a table, then JSON lines (starting with '{').
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cblas.h>
#include "tapegrad.h"
#define BENCH_NAME "bench_small"
#include "bench_util.h"
#include "ops_internal.h"

#define MAX_REPS 5000
#define MAX_CALLS 4096

static tg_tensor *ids(int64_t B, int64_t T, int64_t V, tg_rng *rng) {
    tg_tensor *t = tg_tensor_new(TG_I64, 2, (int64_t[]){B, T});
    if (!t) die("ids");
    for (int64_t i = 0; i < B * T; i++) ((int64_t *)tg_tensor_data(t))[i] = (int64_t)(tg_rng_uniform(rng) * (double)V);
    return t;
}

static tg_tensor *embedding(tg_params *ps, const char *name, tg_rng *rng, int64_t V, int64_t W) {
    tg_tensor *t = tg_params_create(ps, name, TG_F32, 2, (int64_t[]){V, W});
    if (!t || tg_tensor_fill_normal(t, 0, 0.01, rng) != TG_OK) die(name);
    return t;
}

/* One model and its step: everything a step touches. */
typedef struct {
    const char *name;
    int attention;
    int64_t B, S, T, V, E, H;
    tg_params *ps;
    tg_optim *optim;
    tg_tape *tape;
    tg_tensor *xs, *din, *ts, *embed, *dec_embed, *W, *b;
    tg_time_rnn *rnn;
    tg_time_lstm *enc, *dec;
} model;

static model model_new(const char *name, int attention, int64_t B, int64_t S, int64_t T, int64_t V, int64_t E,
                       int64_t H) {
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    model m = {.name = name, .attention = attention, .B = B, .S = S, .T = T, .V = V, .E = E, .H = H};
    if (!(m.ps = tg_params_new()) || !(m.tape = tg_tape_new())) die("model_new");
    m.embed = embedding(m.ps, "embed", &rng, V, E);
    if (attention) {
        m.dec_embed = embedding(m.ps, "dec.embed", &rng, V, E);
        if (!(m.enc = tg_time_lstm_create(m.ps, "enc", TG_F32, E, H, 0, &rng)) ||
            !(m.dec = tg_time_lstm_create(m.ps, "dec", TG_F32, E, H, 0, &rng)))
            die("tg_time_lstm_create");
        m.xs = ids(B, S, V, &rng), m.din = ids(B, T, V, &rng);
    } else {
        if (!(m.rnn = tg_time_rnn_create(m.ps, "rnn", TG_F32, E, H, 1, &rng))) die("tg_time_rnn_create");
        m.xs = ids(B, T, V, &rng);
    }
    if (!(m.W = tg_linear_create(m.ps, "out", TG_F32, attention ? 2 * H : H, V, &rng, &m.b))) die("linear");
    m.ts = ids(B, T, V, &rng);
    tg_optim_opts o = tg_optim_defaults(attention ? TG_OPTIM_ADAM : TG_OPTIM_SGD);
    o.lr = attention ? 1e-3 : 0.1;
    if (!(m.optim = tg_optim_new(m.ps, &o))) die("tg_optim_new");
    return m;
}

static void model_free(model *m) {
    tg_optim_free(m->optim), tg_tape_free(m->tape);
    tg_time_rnn_free(m->rnn), tg_time_lstm_free(m->enc), tg_time_lstm_free(m->dec);
    tg_tensor_free(m->xs), tg_tensor_free(m->din), tg_tensor_free(m->ts);
    tg_params_free(m->ps);
}

/* One training step (ms). */
static double step(model *m) {
    double t0 = now_ms();
    tg_tape *tape = m->tape;
    tg_params_zero_grad(m->ps);
    tg_tensor *in;
    if (m->attention) {
        tg_tensor *h = NULL, *c = NULL;
        tg_tensor *hs_enc = tg_time_lstm_forward_from(tape, m->enc, tg_embedding(tape, m->embed, m->xs), NULL,
                                                      NULL, &h, NULL);
        tg_tensor *hs = tg_time_lstm_forward_from(tape, m->dec, tg_embedding(tape, m->dec_embed, m->din), h, c,
                                                  NULL, NULL);
        in = tg_concat(tape, (tg_tensor *[]){tg_attention(tape, hs_enc, hs, NULL), hs}, 2, -1);
    } else
        in = tg_time_rnn_forward(tape, m->rnn, tg_embedding(tape, m->embed, m->xs));
    tg_tensor *loss = tg_cross_entropy(tape, tg_linear(tape, in, m->W, m->b), m->ts, -1);
    if (!loss || tg_backward(tape, loss, NULL) != TG_OK) die(m->name);
    if (m->attention) tg_params_clip_grad_norm(m->ps, 5.0);
    if (tg_optim_step(m->optim) != TG_OK) die("tg_optim_step");
    tg_tape_reset(tape);
    return now_ms() - t0;
}

/* The bound: one step's GEMMs, replayed through tg__gemm on buffers big enough for every call. */
typedef struct {
    tg__gemm_call calls[MAX_CALLS];
    int n;
    float *A, *B, *C;
} bound;

static void bound_log(bound *g, model *m) {
    int n = 0;
    tg__gemm_log(g->calls, MAX_CALLS, &n);
    step(m);
    tg__gemm_log(NULL, 0, NULL);
    if (n > MAX_CALLS) fprintf(stderr, "bench_small: %s runs %d GEMMs, more than the %d logged\n", m->name, n, MAX_CALLS), exit(1);
    g->n = n;
    size_t a = 1, b = 1, c = 1;
    for (int i = 0; i < n; i++) {
        const tg__gemm_call *k = &g->calls[i];
        size_t sa = (size_t)((k->ta ? k->k : k->m) * k->lda), sb = (size_t)((k->tb ? k->n : k->k) * k->ldb);
        size_t sc = (size_t)(k->m * k->ldc);
        a = sa > a ? sa : a, b = sb > b ? sb : b, c = sc > c ? sc : c;
    }
    if (!(g->A = calloc(a, sizeof(float))) || !(g->B = calloc(b, sizeof(float))) || !(g->C = calloc(c, sizeof(float))))
        die("bound buffers");
    for (size_t i = 0; i < a; i++) g->A[i] = (float)((i * 7919) % 2001) * 1e-3f - 1.0f;
    for (size_t i = 0; i < b; i++) g->B[i] = (float)((i * 104729) % 2001) * 1e-3f - 1.0f;
}

static double bound_run(bound *g) {
    double t0 = now_ms();
    for (int i = 0; i < g->n; i++) {
        const tg__gemm_call *k = &g->calls[i];
        tg__gemm(TG_F32, k->ta, k->tb, k->m, k->n, k->k, g->A, k->lda, g->B, k->ldb, k->beta, g->C, k->ldc);
    }
    return now_ms() - t0;
}

typedef struct {
    double ms, bound_ms, ratio, optim_ms;
    int gemms;
} result;

static result bench(model *m, int reps) {
    static bound g;
    static double v[2][MAX_REPS], q[MAX_REPS], o[MAX_REPS];
    for (int i = 0; i < 3; i++) step(m); /* warm: the tape's arena at its size */
    bound_log(&g, m);
    bound_run(&g);
    for (int r = 0; r < reps; r++) {
        if (r % 2) v[1][r] = bound_run(&g), v[0][r] = step(m);
        else v[0][r] = step(m), v[1][r] = bound_run(&g);
        q[r] = v[0][r] / v[1][r];
        double t0 = now_ms(); /* the optimizer alone, at the gradients the step left */
        if (tg_optim_step(m->optim) != TG_OK) die("tg_optim_step");
        o[r] = now_ms() - t0;
    }
    result res = {median(v[0], reps), median(v[1], reps), median(q, reps), median(o, reps), g.n};
    free(g.A), free(g.B), free(g.C);
    return res;
}

int main(int argc, char **argv) {
    int quick = 0, reps = 200;
    int64_t vocab = 340;
    int threads = 1;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc && atoi(argv[i + 1]) > 0) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--vocab") && i + 1 < argc && atoi(argv[i + 1]) > 1) vocab = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc && atoi(argv[i + 1]) > 0) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc &&
                 (!strcmp(argv[i + 1], "rnnlm") || !strcmp(argv[i + 1], "attention")))
            only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--quick] [--reps n] [--threads n] [--only rnnlm|attention] [--vocab V (> 1)]\n", argv[0]);
            return 2;
        }
    }
    if (quick) reps = 2;
    if (reps > MAX_REPS) reps = MAX_REPS;
    openblas_set_num_threads(threads);
    model ms[2] = {{.name = "rnnlm"}, {.name = "attention"}};
    for (int i = 0; i < 2; i++)
        if (!only || !strcmp(only, ms[i].name))
            ms[i] = i ? model_new("attention", 1, 128, 29, 10, 59, 16, 256) : model_new("rnnlm", 0, 10, 0, 5, vocab, 100, 100);
    double below = tg__gemm_one_thread_below_now();
    char policy[96] = "OpenBLAS's own split: a thread count is set in the environment";
    if (below > 0) snprintf(policy, sizeof policy, "tapegrad runs GEMMs below %.3g multiply-adds on one", below);
    printf("# bench_small: f32 training steps of the book-sized models, %d OpenBLAS thread%s (%s), medians of %d%s\n",
           threads, threads > 1 ? "s" : "", policy, reps, quick ? " (--quick: timings meaningless)" : "");
    printf("# bound: the step's own GEMMs (logged from one step) replayed alone through tg__gemm\n");
    printf("%-10s %5s %4s %4s %4s | %6s | %9s %9s %7s | %9s %10s\n", "model", "V", "B", "T", "H", "gemms", "step_ms",
           "bound_ms", "step/bd", "optim_ms", "tokens/s");
    result rs[2] = {{0}};
    for (int i = 0; i < 2; i++) {
        model *m = &ms[i];
        if (only && strcmp(only, m->name)) continue;
        rs[i] = bench(m, reps);
        printf("%-10s %5lld %4lld %4lld %4lld | %6d | %9.4f %9.4f %7.2f | %9.4f %10.0f\n", m->name, (long long)m->V,
               (long long)m->B, (long long)m->T, (long long)m->H, rs[i].gemms, rs[i].ms, rs[i].bound_ms, rs[i].ratio,
               rs[i].optim_ms, (double)(m->B * m->T) / (rs[i].ms * 1e-3));
        fflush(stdout);
    }
    printf("\n");
    for (int i = 0; i < 2; i++)
        if (!only || !strcmp(only, ms[i].name))
            printf("{\"bench\": \"tapegrad\", \"what\": \"small_step\", \"model\": \"%s\", \"ms\": %.5f, \"bound_ms\": %.5f, "
               "\"ratio\": %.4f, \"optim_ms\": %.5f, \"gemms\": %d}\n", ms[i].name, rs[i].ms, rs[i].bound_ms,
               rs[i].ratio, rs[i].optim_ms, rs[i].gemms);
    for (int i = 0; i < 2; i++)
        if (ms[i].ps) model_free(&ms[i]);
    return 0;
}
