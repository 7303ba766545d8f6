/* Threads: 2 and 4 threads, each with its own tape, parameters, layer, optimizer and checkpoint file, train
 * the same model at once; every thread must end bit for bit where a sequential run ends. The inputs are
 * one set of leaves that all threads read, and evaluation reads one set of parameters from every thread at
 * once, which the headers allow (layers/tapegrad.h's memory model). Then every thread fails at once, each in
 * its own way, and must read its own status and message. A plain main(), not Criterion, so that under
 * ThreadSanitizer (build-tsan in README's test command) only these threads and tapegrad run, without a
 * test runner's processes and threads around them. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "tapegrad.h"
#include "ops_internal.h"

enum { N = 32, D = 8, H = 16, C = 4, T = 5, STEPS = 25, MAX_THREADS = 4 };

static int failures;
static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&report_lock);
    fprintf(stderr, "test_threads: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    failures++;
    pthread_mutex_unlock(&report_lock);
    va_end(ap);
}

/* Read by every thread at once, written by none. */
static tg_tensor *x, *xs, *targets;

/* One model: an MLP (linear, relu, linear, cross-entropy) beside a TimeRNN whose mean output is added to
   the loss. Everything here belongs to one thread. */
typedef struct {
    tg_tensor *W1, *b1, *W2, *b2, *Wx, *Wh, *bh;
    tg_time_rnn *rnn;
    tg_params *ps;
    tg_optim *opt;
    tg_tape *tape;
    uint64_t hash; /* of every parameter, after training */
    double loss;
} model;

static tg_tensor *param(tg_rng *rng, int ndim, int64_t d0, int64_t d1) {
    tg_tensor *t = tg_param_new(TG_F64, ndim, (int64_t[]){d0, d1});
    if (t && ndim == 2) tg_init_xavier(t, rng);
    return t;
}

static int model_new(model *m) {
    tg_rng rng;
    tg_rng_seed(&rng, 2024); /* the same start on every thread */
    memset(m, 0, sizeof *m);
    m->W1 = param(&rng, 2, D, H), m->b1 = param(&rng, 1, H, 0), m->W2 = param(&rng, 2, H, C);
    m->b2 = param(&rng, 1, C, 0), m->Wx = param(&rng, 2, D, H), m->Wh = param(&rng, 2, H, H);
    m->bh = param(&rng, 1, H, 0);
    m->rnn = tg_time_rnn_new(m->Wx, m->Wh, m->bh, 1);
    m->ps = tg_params_new();
    const char *names[] = {"W1", "b1", "W2", "b2", "Wx", "Wh", "bh"};
    tg_tensor *ts[] = {m->W1, m->b1, m->W2, m->b2, m->Wx, m->Wh, m->bh};
    for (int i = 0; i < 7; i++)
        if (!m->ps || tg_params_add(m->ps, names[i], ts[i])) return 0;
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_ADAM);
    o.lr = 1e-2;
    m->opt = tg_optim_new(m->ps, &o);
    m->tape = tg_tape_new();
    return m->rnn && m->opt && m->tape;
}

static void model_free(model *m) {
    tg_tape_free(m->tape);
    tg_optim_free(m->opt);
    tg_params_free(m->ps);
    tg_time_rnn_free(m->rnn);
    tg_tensor *ts[] = {m->W1, m->b1, m->W2, m->b2, m->Wx, m->Wh, m->bh};
    for (int i = 0; i < 7; i++) tg_tensor_free(ts[i]);
}

static tg_tensor *loss(model *m) {
    tg_tape *t = m->tape;
    tg_tensor *logits = tg_linear(t, tg_relu(t, tg_linear(t, x, m->W1, m->b1)), m->W2, m->b2);
    tg_tensor *ce = tg_cross_entropy(t, logits, targets, -1);
    return tg_add(t, ce, tg_mean(t, tg_time_rnn_forward(t, m->rnn, xs)));
}

static uint64_t params_hash(const model *m) {
    uint64_t h = 0;
    for (int i = 0; i < tg_params_count(m->ps); i++) h = h * 31 + tg_tensor_hash(tg_params_at(m->ps, i, NULL));
    return h;
}

/* Trains STEPS Adam steps; saves, reloads into a fresh model and checks the two agree. */
static int train(model *m, const char *ckpt) {
    for (int s = 0; s < STEPS; s++) {
        tg_tensor *L = loss(m);
        if (!L || tg_backward(m->tape, L, NULL) || tg_optim_step(m->opt)) return 0;
        m->loss = tg_tensor_get(L, 0);
        tg_params_zero_grad(m->ps);
        tg_tape_reset(m->tape);
    }
    m->hash = params_hash(m);
    model back;
    int ok = model_new(&back) && !tg_checkpoint_save(ckpt, m->ps, m->opt) &&
             !tg_checkpoint_load(ckpt, back.ps, back.opt) && params_hash(&back) == m->hash &&
             tg_optim_steps(back.opt) == STEPS;
    model_free(&back);
    remove(ckpt);
    return ok;
}

static model shared; /* trained once, then evaluated by every thread at once */
static tg_tensor *unnamed[3]; /* Wx, Wh, b for the layers every thread makes at once */
static double shared_eval;

/* Forward only, without recording: reads the shared parameters and writes nothing of theirs. */
static double evaluate(const model *m, tg_tape *tape) {
    tg_tape_set_grad_enabled(tape, 0);
    tg_tensor *h = tg_relu(tape, tg_linear(tape, x, m->W1, m->b1));
    tg_tensor *L = tg_cross_entropy(tape, tg_linear(tape, h, m->W2, m->b2), targets, -1);
    double v = L ? tg_tensor_get(L, 0) : -1;
    tg_tape_reset(tape);
    tg_tape_set_grad_enabled(tape, 1);
    return v;
}

typedef struct {
    int id;
    pthread_barrier_t *barrier;
    uint64_t hash;
    int ok;
} job;

static void *worker(void *arg) {
    job *j = arg;
    char ckpt[64];
    snprintf(ckpt, sizeof ckpt, "/tmp/tg_threads_%ld_%d.safetensors", (long)getpid(), j->id);
    model m;
    j->ok = model_new(&m) && train(&m, ckpt);
    j->hash = m.hash;
    if (!j->ok) fail("thread %d: training failed: %s", j->id, tg_last_error());
    /* every thread evaluates the one shared model at the same time */
    pthread_barrier_wait(j->barrier);
    for (int r = 0; r < 3; r++)
        if (evaluate(&shared, m.tape) != shared_eval) fail("thread %d: the shared model evaluates differently", j->id);
    /* every thread makes a layer over one set of unnamed weights at once: naming them is one atomic write */
    pthread_barrier_wait(j->barrier);
    tg_time_rnn *rnn = tg_time_rnn_new(unnamed[0], unnamed[1], unnamed[2], 0);
    if (!rnn) fail("thread %d: a layer over shared weights: %s", j->id, tg_last_error());
    tg_time_rnn_free(rnn);
    /* and fails at the same time, each differently: its own status and message must stay its own */
    pthread_barrier_wait(j->barrier);
    tg_clear_error();
    char want[96];
    switch (j->id % 4) {
    case 0: {
        tg_tensor *a = tg_tensor_new(TG_F64, 2, (int64_t[]){j->id + 1, 3});
        tg_matmul(m.tape, a, x);
        tg_tensor_free(a);
        snprintf(want, sizeof want, "tg_matmul: inner dimensions differ: (%d,3) @ (32,8)", j->id + 1);
        break;
    }
    case 1:
        tg_tensor_new(TG_F32, 1, (int64_t[]){-j->id});
        snprintf(want, sizeof want, "tg_tensor_new: negative dimension %d", -j->id);
        break;
    case 2:
        tg__alloc_fail_at(1); /* thread-local: the other threads allocate on */
        tg_tensor_new(TG_F64, 1, (int64_t[]){1000 + j->id});
        tg__alloc_fail_at(0);
        snprintf(want, sizeof want, "tg_tensor_new: out of memory for %d elements", 1000 + j->id);
        break;
    default:
        tg_time_rnn_set_state(m.rnn, x);
        snprintf(want, sizeof want, "tg_time_rnn_set_state: h is (32,8), want (N,H) with H = 16");
        break;
    }
    tg_status want_st[] = {TG_ESHAPE, TG_ESHAPE, TG_ENOMEM, TG_ESHAPE};
    pthread_barrier_wait(j->barrier); /* all have failed before any reads its error */
    if (tg_last_status() != want_st[j->id % 4] || !strstr(tg_last_error(), want))
        fail("thread %d: its error is not its own: %s \"%s\", want %s \"%s\"", j->id,
             tg_status_name(tg_last_status()), tg_last_error(), tg_status_name(want_st[j->id % 4]), want);
    model_free(&m);
    return NULL;
}

static void run(int n, uint64_t want) {
    pthread_t th[MAX_THREADS];
    job jobs[MAX_THREADS];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)n);
    unnamed[0] = tg_param_new(TG_F64, 2, (int64_t[]){D, H}), unnamed[1] = tg_param_new(TG_F64, 2, (int64_t[]){H, H});
    unnamed[2] = tg_param_new(TG_F64, 1, (int64_t[]){H});
    for (int i = 0; i < n; i++) {
        jobs[i] = (job){.id = i, .barrier = &barrier};
        if (pthread_create(&th[i], NULL, worker, &jobs[i])) fail("cannot start thread %d", i);
    }
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);
    static const char *const roles[3] = {"Wx", "Wh", "b"};
    for (int i = 0; i < 3; i++) {
        const char *got = tg_tensor_name(unnamed[i]);
        if (!got || strcmp(got, roles[i])) fail("shared weight %d is named %s, want %s", i, got ? got : "nothing", roles[i]);
        tg_tensor_free(unnamed[i]);
    }
    for (int i = 0; i < n; i++)
        if (jobs[i].ok && jobs[i].hash != want) fail("thread %d: its parameters differ from the sequential run's", i);
    printf("test_threads: %d threads trained %d steps each: %s\n", n, STEPS,
           failures ? "FAILED" : "bit-identical to the sequential run, errors kept apart");
}

int main(void) {
    tg_rng rng;
    tg_rng_seed(&rng, 7);
    x = tg_tensor_new(TG_F64, 2, (int64_t[]){N, D});
    xs = tg_tensor_new(TG_F64, 3, (int64_t[]){N, T, D});
    targets = tg_tensor_new(TG_I64, 1, (int64_t[]){N});
    if (!x || !xs || !targets) return 1;
    tg_tensor_fill_normal(x, 0, 1, &rng);
    tg_tensor_fill_normal(xs, 0, 1, &rng);
    for (int i = 0; i < N; i++) tg_tensor_set(targets, i, i % 5 == 4 ? -1 : i % C); /* some ignored */

    /* the sequential run, which the threads must match */
    char ckpt[64];
    snprintf(ckpt, sizeof ckpt, "/tmp/tg_threads_%ld.safetensors", (long)getpid());
    if (!model_new(&shared) || !train(&shared, ckpt)) {
        fprintf(stderr, "test_threads: the sequential run failed: %s\n", tg_last_error());
        return 1;
    }
    shared_eval = evaluate(&shared, shared.tape);
    printf("test_threads: sequential run: loss %.6f after %d steps\n", shared.loss, STEPS);
    run(2, shared.hash);
    run(4, shared.hash);
    model_free(&shared);
    tg_tensor_free(x), tg_tensor_free(xs), tg_tensor_free(targets);
    return failures != 0;
}
