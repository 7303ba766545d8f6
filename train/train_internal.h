/* train/ internals. Never installed. */
#ifndef TG_TRAIN_INTERNAL_H
#define TG_TRAIN_INTERNAL_H

#include <stddef.h>
#include "tg_internal.h"
#include "tg_train.h"

/* A parameter list (train/params.c); the optimizers and checkpoints (train.c) read it. */
struct tg_params {
    int n, cap;
    char **names;
    tg_tensor **ts;
    int users; /* optimizers alive on the list: their state is sized to it, so it may not grow */
    void *scratch; /* tg__params_scratch's buffer, kept so that a warm training step allocates nothing */
    size_t scratch_bytes;
    unsigned char *owned; /* per parameter: 1 when the list made it (tg_params_create) and frees it */
};

/* Checkpoint names of the optimizers' state tensors, "<parameter><suffix>", by the slot they fill; a
   parameter's name may not end in one. */
typedef struct {
    const char *suffix;
    int adam, slot; /* SGD's (0) or the Adams' (1), and which of their slots */
} tg__state_name;
extern const tg__state_name tg__states[3];
/* The index of the parameter named by the len bytes at name, or -1. */
int tg__params_index(const tg_params *params, const char *name, size_t len);
int tg__ends_with(const char *s, const char *suffix);
/* Drops the parameters past the first n (freeing those the list made): a composed constructor failing
   halfway leaves the list as it found it. */
void tg__params_truncate(tg_params *params, int n);

/* A buffer of at least bytes kept with the list until tg_params_free (train/train.c): the packed
   gradients of tg_mpi_allreduce_grads. NULL on TG_ENOMEM (no message). */
void *tg__params_scratch(tg_params *params, size_t bytes);

#endif
