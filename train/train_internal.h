/* train/ internals. Never installed. */
#ifndef TG_TRAIN_INTERNAL_H
#define TG_TRAIN_INTERNAL_H

#include <stddef.h>
#include "tg_internal.h"
#include "tg_train.h"

/* A buffer of at least bytes kept with the list until tg_params_free (train/train.c): the packed
   gradients of tg_mpi_allreduce_grads. NULL on TG_ENOMEM (no message). */
void *tg__params_scratch(tg_params *params, size_t bytes);

#endif
