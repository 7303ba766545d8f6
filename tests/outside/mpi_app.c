/* An outside MPI program, built by tests/install_check.sh with the README's line for MPI,
   `cc mpi_app.c $(pkg-config --cflags --libs tapegrad-mpi)`, and run on one rank: rank 0's values
   broadcast, the gradients averaged over the one rank (so unchanged). */
#include <math.h>
#include <stdio.h>
#include <tapegrad.h>
#include <tg_mpi.h>

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    tg_tensor *w = tg_param_new(TG_F64, 1, (int64_t[]){3});
    tg_params *ps = tg_params_new();
    int ok = w && ps && tg_params_add(ps, "w", w) == TG_OK;
    for (int i = 0; ok && i < 3; i++) ((double *)tg_tensor_grad(w))[i] = i + 1;
    ok = ok && tg_mpi_broadcast_params(ps, 0, MPI_COMM_WORLD) == TG_OK &&
         tg_mpi_allreduce_grads(ps, MPI_COMM_WORLD) == TG_OK;
    double *g = ok ? tg_tensor_grad(w) : NULL;
    double norm = g ? sqrt(g[0] * g[0] + g[1] * g[1] + g[2] * g[2]) : 0; /* sqrt(14) */
    if (!ok) fprintf(stderr, "mpi_app: %s\n", tg_last_error());
    else printf("mpi_app: |grad| = %.6f after the allreduce over one rank\n", norm);
    tg_params_free(ps);
    tg_tensor_free(w);
    MPI_Finalize();
    return ok && fabs(norm - sqrt(14.0)) < 1e-12 ? 0 : 1;
}
