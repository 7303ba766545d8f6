/* Data parallelism is the same training: run under `mpirun -np 2`, two ranks with B/2 streams each
 * end, after 20 steps, with the parameters that one process training all B streams ends with (to
 * 1e-5 relative in f32, 1e-12 in f64). The model is rnnlm's (embedding -> TimeRNN -> linear ->
 * cross-entropy) on a stream of random tokens, with Adam, so optimizer state must agree too; each rank
 * starts from different random weights, so the broadcast must work for the runs to agree. Then the
 * error paths: a NULL list, and a failing MPI call reported with MPI's own words. Rank 0 prints the
 * verdict; every rank exits with it.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <tapegrad.h>
#include <tg_mpi.h>

enum { V = 12, E = 6, H = 7, B = 4, T = 5, STEPS = 20, LEN = 401 };

static int fail(const char *what) {
    fprintf(stderr, "mpi_check: %s: %s (%s)\n", what, tg_last_error(), tg_status_name(tg_last_status()));
    return 1;
}

typedef struct {
    tg_tensor *p[6];
    tg_params *params;
    tg_time_rnn *rnn;
} model;

static int model_new(model *m, tg_dtype dt, uint64_t seed) {
    static const int64_t shapes[6][2] = {{V, E}, {E, H}, {H, H}, {H, 0}, {H, V}, {V, 0}};
    static const char *names[6] = {"embed", "Wx", "Wh", "b", "Wo", "bo"};
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    m->params = tg_params_new();
    for (int i = 0; i < 6; i++) {
        int nd = shapes[i][1] ? 2 : 1;
        m->p[i] = tg_param_new(dt, nd, shapes[i]);
        if (!m->p[i] || tg_tensor_fill_normal(m->p[i], 0, 0.3, &rng) || tg_params_add(m->params, names[i], m->p[i]))
            return fail("making the model");
    }
    m->rnn = tg_time_rnn_new(m->p[1], m->p[2], m->p[3], 1);
    return m->rnn ? 0 : fail("tg_time_rnn_new");
}

static void model_free(model *m) {
    tg_time_rnn_free(m->rnn);
    tg_params_free(m->params);
    for (int i = 0; i < 6; i++) tg_tensor_free(m->p[i]);
}

/* STEPS steps over streams [first, first + count) of the B streams of the book's layout. comm
   MPI_COMM_NULL: one process, no collectives. */
static int train(model *m, const int64_t *tokens, int first, int count, MPI_Comm comm) {
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_ADAM);
    o.lr = 0.05;
    tg_optim *adam = tg_optim_new(m->params, &o);
    tg_tape *tape = tg_tape_new();
    tg_tensor *xs = tg_tensor_new(TG_I64, 2, (int64_t[]){count, T}), *ts = tg_tensor_new(TG_I64, 2, (int64_t[]){count, T});
    if (!adam || !tape || !xs || !ts) return fail("setting up");
    if (comm != MPI_COMM_NULL && tg_mpi_broadcast_params(m->params, 0, comm)) return fail("tg_mpi_broadcast_params");
    int64_t jump = (LEN - 1) / B;
    for (int s = 0; s < STEPS; s++) {
        int64_t *x = tg_tensor_data(xs), *t = tg_tensor_data(ts);
        for (int i = 0; i < count; i++)
            for (int k = 0; k < T; k++) {
                int64_t at = ((first + i) * jump + s * T + k) % (LEN - 1);
                x[i * T + k] = tokens[at], t[i * T + k] = tokens[at + 1];
            }
        tg_tensor *z = tg_linear(tape, tg_time_rnn_forward(tape, m->rnn, tg_embedding(tape, m->p[0], xs)), m->p[4], m->p[5]);
        tg_tensor *loss = tg_cross_entropy(tape, z, ts, -1);
        tg_params_zero_grad(m->params);
        if (!loss || tg_backward(tape, loss, NULL)) return fail("a step");
        if (comm != MPI_COMM_NULL && tg_mpi_allreduce_grads(m->params, comm)) return fail("tg_mpi_allreduce_grads");
        if (tg_optim_step(adam)) return fail("tg_optim_step");
        tg_tape_reset(tape);
    }
    tg_tape_free(tape);
    tg_optim_free(adam);
    tg_tensor_free(xs), tg_tensor_free(ts);
    return 0;
}

/* The largest over the parameters of max |a - b| / max |b|: each tensor's error on its own scale. */
static double max_rel(model *a, model *b) {
    double worst = 0;
    for (int i = 0; i < 6; i++) {
        double err = 0, scale = 0;
        for (int64_t k = 0; k < tg_tensor_numel(a->p[i]); k++) {
            double x = tg_tensor_get(a->p[i], k), y = tg_tensor_get(b->p[i], k);
            err = fmax(err, fabs(x - y)), scale = fmax(scale, fabs(y));
        }
        worst = fmax(worst, err / fmax(scale, 1e-30));
    }
    return worst;
}

/* A parameter that some ranks' backward never reached is still stepped on every rank: the allreduce
   carries which gradients were written as well as their mean (rank r reaches only parameter r, and no
   rank the last), so that every rank's optimizer steps the same parameters and the models stay one. */
static int gradded_on_every_rank(int rank, int size, MPI_Comm comm) {
    static const char *names[3] = {"p0", "p1", "untouched"};
    tg_params *ps = tg_params_new();
    tg_tensor *p[3];
    for (int k = 0; k < 3; k++) {
        p[k] = tg_param_new(TG_F64, 1, (int64_t[]){2});
        if (!ps || !p[k] || tg_tensor_set(p[k], 0, 1) || tg_tensor_set(p[k], 1, 1) || tg_params_add(ps, names[k], p[k]))
            return fail("setting up");
    }
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_SGD);
    o.lr = 1;
    tg_optim *sgd = tg_optim_new(ps, &o);
    tg_tape *tape = tg_tape_new();
    if (!sgd || !tape) return fail("setting up");
    tg_params_zero_grad(ps);
    if (rank < 2 && tg_backward(tape, tg_sum(tape, p[rank]), NULL)) return fail("backward");
    if (tg_mpi_allreduce_grads(ps, comm) || tg_optim_step(sgd)) return fail("allreduce and step");
    int bad = 0;
    for (int k = 0; k < 3; k++) {
        double want = k < 2 && k < size ? 1 - 1.0 / size : 1; /* dL/dp = 1 on one rank, 0 on the others */
        for (int i = 0; i < 2; i++)
            if (fabs(tg_tensor_get(p[k], i) - want) > 1e-15) {
                fprintf(stderr, "mpi_check: rank %d: %s[%d] is %.17g after the step, want %.17g\n", rank, names[k], i,
                        tg_tensor_get(p[k], i), want);
                bad = 1;
            }
    }
    if (!bad && !rank) printf("mpi_check: a gradient only rank 1 wrote steps rank 0's parameter too\n");
    tg_tape_free(tape);
    tg_optim_free(sgd);
    tg_params_free(ps);
    for (int k = 0; k < 3; k++) tg_tensor_free(p[k]);
    return bad;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int rank, size, bad = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (B % size) {
        if (!rank) fprintf(stderr, "mpi_check: %d ranks do not divide B = %d streams\n", size, B);
        MPI_Finalize();
        return 1;
    }
    int64_t tokens[LEN];
    tg_rng rng;
    tg_rng_seed(&rng, 99);
    for (int i = 0; i < LEN; i++) tokens[i] = (int64_t)(tg_rng_next(&rng) % V);
    for (int d = 0; d < 2 && !bad; d++) {
        tg_dtype dt = d ? TG_F64 : TG_F32;
        double tol = d ? 1e-12 : 1e-5;
        model dist;
        /* a different start on every rank: only the broadcast makes them one model */
        bad |= model_new(&dist, dt, 1000 + (uint64_t)rank);
        bad |= bad || train(&dist, tokens, rank * (B / size), B / size, MPI_COMM_WORLD);
        if (!bad && rank == 0) {
            model one;
            bad |= model_new(&one, dt, 1000) || train(&one, tokens, 0, B, MPI_COMM_NULL);
            double err = bad ? NAN : max_rel(&dist, &one);
            printf("mpi_check: %s, %d ranks x %d streams vs 1 process x %d streams, %d Adam steps: max relative "
                   "difference %.3g (tolerance %.0e)\n", d ? "f64" : "f32", size, B / size, B, STEPS, err, tol);
            bad |= !(err <= tol);
            model_free(&one);
        }
        model_free(&dist);
        MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
    }
    if (!bad) bad |= gradded_on_every_rank(rank, size, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    /* error paths: statuses and messages, never an abort */
    tg_clear_error();
    tg_status s = tg_mpi_allreduce_grads(NULL, MPI_COMM_WORLD);
    if (s != TG_EINVAL || !strstr(tg_last_error(), "tg_mpi_allreduce_grads: params is NULL")) bad |= 1 + fail("NULL params");
    tg_params *empty = tg_params_new();
    s = tg_mpi_broadcast_params(empty, 0, MPI_COMM_NULL);
    if (s != TG_EIO || !strstr(tg_last_error(), "tg_mpi_broadcast_params: MPI_Comm_rank failed: ")) bad |= 1 + fail("MPI_COMM_NULL");
    else if (!rank) printf("mpi_check: a failing MPI call reads: %s\n", tg_last_error());
    s = tg_mpi_allreduce_grads(empty, MPI_COMM_NULL);
    if (s != TG_EIO || !strstr(tg_last_error(), "tg_mpi_allreduce_grads: MPI_Comm_size failed: ")) bad |= 1 + fail("MPI_COMM_NULL");
    tg_params_free(empty);
    int all = 0;
    MPI_Allreduce(&bad, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (!rank) printf("mpi_check: %s\n", all ? "FAILED" : "the ranks trained exactly as one process");
    MPI_Finalize();
    return all ? 1 : 0;
}
