/* The MPI issue's contract, redeclared exactly as written there; linked into mpi_app by the install check
   when tapegrad was built with MPI. */
#include <tg_mpi.h>

tg_status tg_mpi_broadcast_params(tg_params *params, int root, MPI_Comm comm);
tg_status tg_mpi_allreduce_grads(tg_params *params, MPI_Comm comm);   /* mean over ranks */
