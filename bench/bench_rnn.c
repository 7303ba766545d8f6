/* bench_rnn: the cost of one TimeRNN training step on the tape, forward + backward + reset.
 *
 * What is timed, per step (xs, Wx, Wh, b are parameters, so backward makes dxs too, as the seed's
 * TimeRNN.backward does):
 *     zero the four gradients;  hs = tg_time_rnn_forward(xs);  tg_backward(hs, dhs);  tg_tape_reset
 * at N = 64, D = H = 512 (the reference point is N = 64, T = 64, H = 512) for T = 8 ... 128,
 * f32 and f64, each with the default checks (TG_CHECK_SAVED: XXH3-64 of every saved tensor when it is
 * recorded and again in backward) and with tg_tape_set_checks(tape, 0). The two tapes of a size run
 * their steps alternately, so drift on a shared machine hits both alike. Each row is the median of
 * several steps after two warm-up steps (the first grows the tape's arena, the second runs warm).
 *
 * Columns: ms/step (the whole step), fwd and bwd (forward, backward alone), ms/tstep (ms/step / T:
 * flat when backward is linear in T), GFLOP/s (the GEMMs only: per time step 2 in forward, h Wh and
 * x Wx, and 4 in backward, dh_prev dWh dx dWx; 6 N H (H + D) flop a time step), step_MiB (the tape's
 * arena at its peak, tg_tape_memory after backward: op outputs, intermediate gradients and node lists,
 * the memory a step needs beyond the parameters and their gradients). A table at the end gives, beside
 * it, the heap the tape holds between steps (glibc's mallinfo2, before and after making the tape): the
 * arena's chunks, slack included, its node array and tensor headers.
 *
 * Usage: bench_rnn [--quick] [--dtype f32|f64] [--T n]
 *   --quick   tiny sizes, well under 2 s (a meson test in suite 'bench', so that this file cannot
 *             rot; it checks the gradients, never the timings)
 *   --dtype, --T   only those rows (to profile one size: perf record bench_rnn --dtype f32 --T 64)
 * bench/compare.sh runs this beside bench_rnn_numpy.py and prints the ratios.
 *
 * Before timing anything, the benched computation is checked once against the hand-derived
 * reference (tg_time_rnn_ref) at a small size in both dtypes; a mismatch exits 1.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <cblas.h>
#include "tapegrad.h"

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
#include <malloc.h>
#define HAVE_MALLINFO2 1
static double heap_bytes(void) {
    struct mallinfo2 mi = mallinfo2();
    return (double)mi.uordblks + (double)mi.hblkhd; /* in use in the heap + mmapped blocks */
}
#else
#define HAVE_MALLINFO2 0
static double heap_bytes(void) { return NAN; }
#endif

#define MAX_REPS 64

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void die(const char *what) {
    fprintf(stderr, "bench_rnn: %s: %s (%s)\n", what, tg_last_error(), tg_status_name(tg_last_status()));
    exit(1);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static tg_tensor *rand_tensor(tg_dtype dt, int param, double scale, uint64_t *seed, int ndim, const int64_t *shape) {
    tg_tensor *t = param ? tg_param_new(dt, ndim, shape) : tg_tensor_new(dt, ndim, shape);
    if (!t || tg_tensor_fill_uniform(t, -scale, scale, seed) != TG_OK) die("making inputs");
    return t;
}

/* One problem: the layer's parameters, the input and the upstream gradient dL/dhs. */
typedef struct {
    tg_dtype dt;
    int64_t N, T, D, H;
    tg_tensor *xs, *Wx, *Wh, *b, *dhs;
    tg_time_rnn *layer;
} problem;

static problem problem_new(tg_dtype dt, int64_t N, int64_t T, int64_t D, int64_t H) {
    uint64_t seed = 42;
    problem p = {dt, N, T, D, H, NULL, NULL, NULL, NULL, NULL, NULL};
    /* Weights of scale 1/sqrt(fan-in) keep tanh out of saturation, as a trained RNN's would be. */
    p.xs = rand_tensor(dt, 1, 1.0, &seed, 3, (int64_t[]){N, T, D});
    p.Wx = rand_tensor(dt, 1, 1.0 / sqrt((double)D), &seed, 2, (int64_t[]){D, H});
    p.Wh = rand_tensor(dt, 1, 1.0 / sqrt((double)H), &seed, 2, (int64_t[]){H, H});
    p.b = rand_tensor(dt, 1, 0.1, &seed, 1, (int64_t[]){H});
    p.dhs = rand_tensor(dt, 0, 1.0, &seed, 3, (int64_t[]){N, T, H});
    p.layer = tg_time_rnn_new(p.Wx, p.Wh, p.b, 0);
    if (!p.layer) die("tg_time_rnn_new");
    return p;
}

static void problem_free(problem *p) {
    tg_time_rnn_free(p->layer);
    tg_tensor_free(p->xs), tg_tensor_free(p->Wx), tg_tensor_free(p->Wh), tg_tensor_free(p->b);
    tg_tensor_free(p->dhs);
}

/* One training step; writes its times (ms) into t[0] whole step, t[1] forward, t[2] backward, and
   the arena's bytes at the end of backward (its peak: a recording only grows it) into t[3]. */
static void step(tg_tape *tape, problem *p, double *t) {
    double t0 = now_ms();
    tg_zero_grad(p->xs), tg_zero_grad(p->Wx), tg_zero_grad(p->Wh), tg_zero_grad(p->b);
    double t1 = now_ms();
    tg_tensor *hs = tg_time_rnn_forward(tape, p->layer, p->xs);
    double t2 = now_ms();
    if (!hs) die("tg_time_rnn_forward");
    if (tg_backward(tape, hs, p->dhs) != TG_OK) die("tg_backward");
    double t3 = now_ms();
    t[3] = (double)tg_tape_memory(tape);
    tg_tape_reset(tape);
    double t4 = now_ms();
    t[0] = t4 - t0, t[1] = t2 - t1, t[2] = t3 - t2;
}

/* ---- the check: the benched computation against the hand-derived reference ------------------- */

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

static int check_against_ref(tg_dtype dt) {
    const int64_t N = 3, T = 5, D = 6, H = 7;
    problem p = problem_new(dt, N, T, D, H);
    tg_tape *tape = tg_tape_new();
    if (!tape) die("tg_tape_new");
    tg_tensor *hs = tg_time_rnn_forward(tape, p.layer, p.xs);
    if (!hs || tg_backward(tape, hs, p.dhs) != TG_OK) die("check: forward/backward");
    tg_tensor *r_hs = tg_tensor_new(dt, 3, (int64_t[]){N, T, H});
    tg_tensor *r_dxs = tg_tensor_new(dt, 3, (int64_t[]){N, T, D});
    tg_tensor *r_dWx = tg_tensor_new(dt, 2, (int64_t[]){D, H});
    tg_tensor *r_dWh = tg_tensor_new(dt, 2, (int64_t[]){H, H});
    tg_tensor *r_db = tg_tensor_new(dt, 1, (int64_t[]){H});
    if (!r_hs || !r_dxs || !r_dWx || !r_dWh || !r_db) die("check: allocating");
    if (tg_time_rnn_ref(p.xs, NULL, p.Wx, p.Wh, p.b, p.dhs, r_hs, r_dxs, r_dWx, r_dWh, r_db, NULL) != TG_OK)
        die("tg_time_rnn_ref");
    double tol = dt == TG_F32 ? 1e-5 : 1e-12;
    struct { const char *name; tg_tensor *ref; const void *got; } cmp[] = {
        {"hs", r_hs, tg_tensor_data(hs)},       {"dxs", r_dxs, tg_tensor_grad(p.xs)},
        {"dWx", r_dWx, tg_tensor_grad(p.Wx)},   {"dWh", r_dWh, tg_tensor_grad(p.Wh)},
        {"db", r_db, tg_tensor_grad(p.b)},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cmp / sizeof cmp[0]; i++) {
        double e = max_rel_err(cmp[i].ref, cmp[i].got);
        if (!(e <= tol)) {
            fprintf(stderr, "bench_rnn: %s %s differs from tg_time_rnn_ref: max error %.3g of its largest "
                    "entry (tolerance %.0e)\n", dt == TG_F32 ? "f32" : "f64", cmp[i].name, e, tol);
            bad = 1;
        }
    }
    tg_tensor_free(r_hs), tg_tensor_free(r_dxs), tg_tensor_free(r_dWx), tg_tensor_free(r_dWh);
    tg_tensor_free(r_db);
    tg_tape_free(tape);
    problem_free(&p);
    return bad;
}

/* ---- the benchmark ----------------------------------------------------------------------------- */

typedef struct {
    double step, fwd, bwd, mib, held_mib;
} result;

/* Runs one size with two tapes, checks on (r[0]) and off (r[1]), their steps alternating. */
static void bench_size(tg_dtype dt, int64_t N, int64_t T, int64_t D, int64_t H, int min_reps,
                       double budget_ms, result r[2]) {
    problem p = problem_new(dt, N, T, D, H);
    tg_tape *tape[2];
    double t[4];
    for (int k = 0; k < 2; k++) {
        /* What the tape holds after its warm-up steps is its peak: a reset keeps the arena, merged
           into one chunk of the size the recording needed. */
        double before = heap_bytes();
        tape[k] = tg_tape_new();
        if (!tape[k]) die("tg_tape_new");
        tg_tape_set_checks(tape[k], k == 0 ? TG_CHECK_SAVED : 0);
        step(tape[k], &p, t);
        step(tape[k], &p, t);
        r[k].held_mib = (heap_bytes() - before) / (1024.0 * 1024.0);
        r[k].mib = t[3] / (1024.0 * 1024.0);
    }
    double v[2][3][MAX_REPS];
    int n = 0;
    double start = now_ms();
    while (n < MAX_REPS && (n < min_reps || now_ms() - start < budget_ms)) {
        for (int k = 0; k < 2; k++) {
            step(tape[k], &p, t);
            for (int j = 0; j < 3; j++) v[k][j][n] = t[j];
        }
        n++;
    }
    for (int k = 0; k < 2; k++) {
        r[k].step = median(v[k][0], n);
        r[k].fwd = median(v[k][1], n);
        r[k].bwd = median(v[k][2], n);
        tg_tape_free(tape[k]);
    }
    problem_free(&p);
}

static void print_row(const char *dtype, const char *checks, int64_t N, int64_t T, int64_t D, int64_t H,
                      const result *r) {
    double flop = 6.0 * (double)N * (double)H * (double)(H + D) * (double)T;
    printf("%-5s  %-6s  %4lld  %4lld  %4lld  %4lld  %9.3f  %9.3f  %9.3f  %8.4f  %7.1f  %8.2f\n", dtype, checks,
           (long long)N, (long long)T, (long long)D, (long long)H, r->step, r->fwd, r->bwd, r->step / (double)T,
           flop / (r->step * 1e6), r->mib);
    fflush(stdout);
}

int main(int argc, char **argv) {
    int quick = 0, only_dtype = -1;
    long long only_T = 0;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc && !strcmp(argv[i + 1], "f32")) only_dtype = 0, i++;
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc && !strcmp(argv[i + 1], "f64")) only_dtype = 1, i++;
        else if (!strcmp(argv[i], "--T") && i + 1 < argc && (only_T = strtoll(argv[i + 1], &end, 10)) > 0 && !*end) i++;
        else {
            fprintf(stderr, "usage: %s [--quick] [--dtype f32|f64] [--T n]\n", argv[0]);
            return 2;
        }
    }
    if (check_against_ref(TG_F32) | check_against_ref(TG_F64)) return 1;

    static const int64_t Ts_full[] = {8, 16, 32, 64, 128}, Ts_quick[] = {2, 4, 8};
    const int64_t *Ts = quick ? Ts_quick : Ts_full;
    int nT = quick ? 3 : 5;
    int64_t one_T[1] = {only_T};
    if (only_T) Ts = one_T, nT = 1;
    int64_t N = quick ? 4 : 64, D = quick ? 16 : 512, H = quick ? 16 : 512;
    int min_reps = quick ? 3 : 7;
    double budget_ms = quick ? 0 : 1500;

    printf("# bench_rnn: TimeRNN training step (zero grads, forward, backward, tape reset), tapegrad %s\n",
           quick ? "(--quick: tiny sizes, timings meaningless)" : "");
    printf("# OpenBLAS threads: %d; median of >= %d steps after 2 warm-up steps; GFLOP/s counts the 6 GEMMs "
           "a time step\n", openblas_get_num_threads(), min_reps);
    printf("# checks: saved = TG_CHECK_SAVED (the default, XXH3-64 of saved tensors), off = "
           "tg_tape_set_checks(tape, 0)\n");
    printf("%-5s  %-6s  %4s  %4s  %4s  %4s  %9s  %9s  %9s  %8s  %7s  %8s\n", "dtype", "checks", "N", "T", "D", "H",
           "ms/step", "fwd_ms", "bwd_ms", "ms/tstep", "GFLOP/s", "step_MiB");
    result res[2][5][2];
    for (int d = 0; d < 2; d++) {
        if (only_dtype >= 0 && d != only_dtype) continue;
        tg_dtype dt = d ? TG_F64 : TG_F32;
        const char *name = d ? "f64" : "f32";
        for (int i = 0; i < nT; i++) {
            bench_size(dt, N, Ts[i], D, H, min_reps, budget_ms, res[d][i]);
            print_row(name, "saved", N, Ts[i], D, H, &res[d][i][0]);
            print_row(name, "off", N, Ts[i], D, H, &res[d][i][1]);
        }
    }

    printf("\n# cost of TG_CHECK_SAVED per step (saved minus off)\n");
    printf("%-5s  %4s  %9s  %9s  %9s  %7s\n", "dtype", "T", "saved_ms", "off_ms", "delta_ms", "delta_%");
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < nT && (only_dtype < 0 || d == only_dtype); i++) {
            const result *r = res[d][i];
            printf("%-5s  %4lld  %9.3f  %9.3f  %9.3f  %6.1f%%\n", d ? "f64" : "f32", (long long)Ts[i], r[0].step,
                   r[1].step, r[0].step - r[1].step, 100.0 * (r[0].step - r[1].step) / r[1].step);
        }

    printf("\n# memory per step: the arena at its peak (tg_tape_memory) and the heap the tape holds between steps\n");
    printf("%-5s  %-6s  %4s  %9s  %9s\n", "dtype", "checks", "T", "arena_MiB", "held_MiB");
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < nT && (only_dtype < 0 || d == only_dtype); i++)
            for (int k = 0; k < 2; k++)
                printf("%-5s  %-6s  %4lld  %9.1f  %9.1f\n", d ? "f64" : "f32", k ? "off" : "saved", (long long)Ts[i],
                       res[d][i][k].mib, res[d][i][k].held_mib);

    struct rusage ru;
    if (!getrusage(RUSAGE_SELF, &ru)) printf("\n# process max RSS: %.1f MiB%s\n", (double)ru.ru_maxrss / 1024.0,
                                             HAVE_MALLINFO2 ? "" : " (step_MiB needs glibc's mallinfo2)");
    return 0;
}
