/* layers/ internals shared by rnn.c and rnn_ref.c; never installed. */
#ifndef TG_RNN_INTERNAL_H
#define TG_RNN_INTERNAL_H

#include "tg_ops.h"

/* The one check of an RNN's parameters, for the cell, TimeRNN and the reference: Wx (D,H), Wh (H,H)
   and b (H,), with D and H taken from Wx, all of one dtype. Returns 0 when they are fine; else 1 with
   the thread's error set and fn (the public function) first in the message: TG_EINVAL for a NULL
   (which keeps an earlier failure, tg__null), TG_ESHAPE naming the tensor, its shape and the one
   wanted ("tg_rnn_cell: Wh is (3,3) but Wx is (3,2): want Wh (H,H) with H = 2"), TG_EDTYPE. */
int tg__rnn_bad_params(const char *fn, const tg_tensor *Wx, const tg_tensor *Wh, const tg_tensor *b);

#endif
