/* tapegrad: data-parallel training over MPI (installed only when tapegrad is built with MPI).
 *
 * Each rank holds the whole model and trains on its own shard of the data; after every backward the
 * ranks average their gradients, so each takes the same optimizer step and the parameters stay equal
 * everywhere, as one process training on all the shards at once would have them (the mean of the
 * ranks' mean losses is the mean loss when the shards are of one size). A training step reads:
 *
 *     MPI_Init(&argc, &argv);                         // the caller owns MPI_Init and MPI_Finalize
 *     MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);   // errors as statuses, see below
 *     tg_mpi_broadcast_params(params, 0, MPI_COMM_WORLD);           // rank 0's initial values
 *     for (step...) {
 *         loss = model(tape, this rank's shard...);
 *         tg_params_zero_grad(params);
 *         tg_backward(tape, loss, NULL);
 *         tg_mpi_allreduce_grads(params, MPI_COMM_WORLD);           // one collective call
 *         tg_optim_step(optim);
 *         tg_tape_reset(tape);
 *     }
 *
 * Each call makes one collective call whatever the number of parameters: their values (gradients) are
 * packed into one contiguous buffer, as MPI_FLOAT when every parameter is f32, else as MPI_DOUBLE (an
 * f32 value widens to double and back exactly). The buffer is kept with the list, so a warm step
 * allocates nothing. Every rank must call with the same list (names, shapes and dtypes in the same
 * order); MPI cannot check that, and a mismatch is undefined.
 *
 * It is a library of its own, libtapegrad_mpi, so that libtapegrad needs no MPI: an outside program
 * including this header builds with `cc app.c $(pkg-config --cflags --libs tapegrad-mpi)` (which brings
 * tapegrad's and OpenMPI's flags), and runs under mpirun.
 *
 * Errors: TG_EINVAL for a NULL params; TG_EIO when an MPI call fails, with MPI's error string. MPI's
 * default error handler (MPI_ERRORS_ARE_FATAL) aborts the job before a call returns: set
 * MPI_ERRORS_RETURN on the communicator to get the status instead. TG_ENOMEM for the buffer.
 */
#ifndef TG_MPI_H
#define TG_MPI_H

#include <mpi.h>
#include "tg_train.h"

/* Every rank's parameters take root's values (one MPI_Bcast). */
tg_status tg_mpi_broadcast_params(tg_params *params, int root, MPI_Comm comm);
/* Every parameter's gradient becomes the mean over the ranks of comm (one MPI_Allreduce: the sum,
   then 1 / size). A parameter whose gradient some rank's backward wrote counts as written on every
   rank, so that tg_optim_step, which skips a parameter no backward has reached, steps the same
   parameters everywhere. */
tg_status tg_mpi_allreduce_grads(tg_params *params, MPI_Comm comm);   /* mean over ranks */

#endif
