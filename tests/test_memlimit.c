/* Memory limits: children under setrlimit(RLIMIT_AS), the address-space budget that ulimit -v or a batch
 * system gives a job. A workload larger than the limit must fail with TG_ENOMEM and a message, and the
 * process must go on (no crash, no abort); and a TimeRNN whose tape fits only because the arena retries a
 * failed doubling at the size it needs (core/arena.c) must succeed. Each scenario runs in a forked child,
 * its limit set above the address space it already uses (/proc/self/status VmSize, after OpenBLAS has
 * made its buffers). Not in a sanitizer build: ASan's shadow memory reserves terabytes of address space.
 * A plain main(), like test_threads.c: the limit is set in processes this program forks itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tapegrad.h"

#define MiB (1024.0 * 1024.0)

/* The TimeRNN of both scenarios: N = 64, D = H = 128, f64, a T-step forward and backward whose tape
   needs about 0.7 MB per step. */
typedef struct {
    tg_tensor *Wx, *Wh, *b, *xs;
    tg_time_rnn *rnn;
    tg_tape *tape;
} rnn_job;

static int rnn_job_new(rnn_job *j, int64_t T) {
    uint64_t seed = 1;
    j->Wx = tg_param_new(TG_F64, 2, (int64_t[]){128, 128});
    j->Wh = tg_param_new(TG_F64, 2, (int64_t[]){128, 128});
    j->b = tg_param_new(TG_F64, 1, (int64_t[]){128});
    j->xs = tg_tensor_new(TG_F64, 3, (int64_t[]){64, T, 128});
    if (!j->Wx || !j->Wh || !j->b || !j->xs) return 0;
    tg_tensor_fill_uniform(j->Wx, -0.1, 0.1, &seed), tg_tensor_fill_uniform(j->Wh, -0.1, 0.1, &seed);
    tg_tensor_fill_uniform(j->xs, -1, 1, &seed);
    j->rnn = tg_time_rnn_new(j->Wx, j->Wh, j->b, 0);
    j->tape = tg_tape_new();
    return j->rnn && j->tape;
}

static tg_status rnn_step(rnn_job *j) {
    tg_tensor *L = tg_mean(j->tape, tg_time_rnn_forward(j->tape, j->rnn, j->xs));
    return L ? tg_backward(j->tape, L, NULL) : tg_last_status();
}

static void rnn_job_free(rnn_job *j) {
    tg_tape_free(j->tape);
    tg_time_rnn_free(j->rnn);
    tg_tensor_free(j->Wx), tg_tensor_free(j->Wh), tg_tensor_free(j->b), tg_tensor_free(j->xs);
}

static double vm_size(void) {
    char line[256];
    double kb = 0;
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %lf kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb * 1024;
}

/* Limits this process to what it uses now plus budget bytes. */
static int limit(double budget) {
    double now = vm_size();
    struct rlimit r = {(rlim_t)(now + budget), (rlim_t)(now + budget)};
    if (now <= 0 || setrlimit(RLIMIT_AS, &r)) return perror("setrlimit"), 0;
    printf("  limit: %.0f MiB in use + %.0f MiB\n", now / MiB, budget / MiB);
    return 1;
}

/* OpenBLAS maps its buffers at the first GEMM: before the limit, so they count as in use. */
static void warm_blas(void) {
    tg_tape *t = tg_tape_new();
    tg_tensor *a = tg_tensor_new(TG_F64, 2, (int64_t[]){64, 64});
    tg_matmul(t, a, a);
    tg_tape_free(t);
    tg_tensor_free(a);
}

static int expect_enomem(const char *what, int failed, const char *needle) {
    int ok = failed && tg_last_status() == TG_ENOMEM && strstr(tg_last_error(), needle);
    printf("  %s: %s: %s\n", what, ok ? "TG_ENOMEM as it should" : "WRONG", failed ? tg_last_error() : "it succeeded");
    tg_clear_error();
    return ok;
}

/* More than the limit, three ways; then the same process still works. */
static int over_the_limit(void) {
    rnn_job big, small;
    warm_blas();
    if (!rnn_job_new(&big, 300) || !rnn_job_new(&small, 4)) return 0;
    if (!limit(64 * MiB)) return 0;
    int ok = expect_enomem("a 256 MiB tensor", !tg_tensor_new(TG_F64, 1, (int64_t[]){32 << 20}),
                           "tg_tensor_new: out of memory for 33554432 elements");
    tg_tensor *a = tg_tensor_new(TG_F64, 2, (int64_t[]){4096, 0}), *b = tg_tensor_new(TG_F64, 2, (int64_t[]){0, 8192});
    ok &= expect_enomem("(4096,0) @ (0,8192), 256 MiB of zeros", !tg_matmul(big.tape, a, b),
                        "tg_matmul: out of memory for an output of 33554432 elements");
    tg_tensor_free(a), tg_tensor_free(b);
    /* forward or backward runs out, as the tape's memory reuse has it: either says so */
    ok &= expect_enomem("a 300-step TimeRNN, more tape than the limit", rnn_step(&big) != TG_OK, "out of memory");
    tg_tape_reset(big.tape);
    tg_status st = rnn_step(&small);
    printf("  then a 4-step TimeRNN: %s\n", st ? tg_last_error() : "fine");
    rnn_job_free(&big);
    rnn_job_free(&small);
    return ok && !st;
}

/* The smallest total of chunks that pure doubling (1, 2, 4, ... MiB) reaches at least bytes with. */
static double doubling_total(double bytes) {
    double total = 0;
    for (double c = MiB; total < bytes; c *= 2) total += c;
    return total;
}

/* A tape of `need` bytes under a limit between need and what doubling would map: only the retry fits. */
static int fits_with_the_retry(int64_t T, double need) {
    double doubling = doubling_total(need), budget = (need + doubling) / 2;
    printf("  the tape needs %.1f MiB; doubling chunks would map %.0f MiB; the limit allows %.1f MiB more\n",
           need / MiB, doubling / MiB, budget / MiB);
    if (doubling - need < 12 * MiB) return printf("  the workload is too near a doubling boundary\n"), 0;
    rnn_job j;
    warm_blas();
    if (!rnn_job_new(&j, T) || !limit(budget)) return 0;
    tg_status st = rnn_step(&j);
    printf("  forward and backward: %s\n", st ? tg_last_error() : "fine");
    rnn_job_free(&j);
    return !st;
}

static int child(const char *name, int (*fn)(int64_t, double), int64_t T, double need) {
    printf("%s\n", name);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int ok = fn(T, need);
        fflush(stdout); /* _exit flushes nothing */
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return perror("fork"), 0;
    if (WIFSIGNALED(status)) printf("  the child died of signal %d\n", WTERMSIG(status));
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static int over(int64_t T, double need) {
    (void)T, (void)need;
    return over_the_limit();
}

int main(void) {
    /* A TimeRNN whose tape, measured here without a limit, lies well between two doubling totals, so
       that a limit halfway there fits the tape only when the arena retries at the size needed. */
    int64_t T = 24;
    double need = 0;
    for (; T <= 640; T += 8) {
        rnn_job j;
        if (!rnn_job_new(&j, T) || rnn_step(&j)) return fprintf(stderr, "%s\n", tg_last_error()), 1;
        need = (double)tg_tape_memory(j.tape);
        rnn_job_free(&j);
        if (need > 8 * MiB && doubling_total(need) - need >= 12 * MiB) break;
    }
    int ok = child("over the limit: TG_ENOMEM with a message, and the process goes on", over, 0, 0);
    ok &= child("a tape that fits only with the arena's retry", fits_with_the_retry, T, need);
    printf("test_memlimit: %s\n", ok ? "all as expected" : "FAILED");
    return !ok;
}
