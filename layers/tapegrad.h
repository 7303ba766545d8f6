/* tapegrad: tape-based reverse-mode automatic differentiation over n-d tensors, in C11.
 *
 * A worked example: the gradient of L = sum(tanh(x @ W + b)) with respect to W and b.
 *
 *     #include <tapegrad.h>
 *     int64_t xs[2] = {4, 3}, ws[2] = {3, 2}, bs[1] = {2};
 *     tg_tensor *x = tg_tensor_new(TG_F64, 2, xs);   // an input: no gradient
 *     tg_tensor *W = tg_param_new(TG_F64, 2, ws);    // parameters: gradients accumulate here
 *     tg_tensor *b = tg_param_new(TG_F64, 1, bs);
 *     ... fill tg_tensor_data(x), (W), (b) ...
 *     tg_tape *tape = tg_tape_new();
 *     tg_tensor *L = tg_sum(tape, tg_tanh(tape, tg_add(tape, tg_matmul(tape, x, W), b)));
 *     if (!L || tg_backward(tape, L, NULL) != TG_OK) fprintf(stderr, "%s\n", tg_last_error());
 *     double *dW = tg_tensor_grad(W);                // (3,2), row-major
 *     tg_tape_free(tape);                            // frees L and every intermediate
 *     tg_tensor_free(x); tg_tensor_free(W); tg_tensor_free(b);
 *
 * Memory model: leaves are the caller's; op outputs are the tape's, freed all at once by
 * tg_tape_reset or tg_tape_free. An output kept past the reset that ended its recording is refused by
 * every function (TG_ESTATE), never read: its data belongs to the next recording, or was freed.
 *
 * Threads. The library keeps no global state but each thread's error (thread-local: a thread reads its
 * own status and message, whatever the others do) and cJSON's allocator hooks (set once, thread-safely).
 * Nothing is locked, so what may be shared is said here:
 *   - a tape and what it records belong to one thread at a time; so do a tg_time_rnn, tg_time_lstm or
 *     tg_time_gru (forward updates its state and leaves), a tg_rng (each draw advances it, tg_dropout's included), and a tg_params list
 *     with the optimizers over it;
 *   - a leaf (tg_tensor_new, tg_param_new, a loaded tensor) may be an input of ops on several threads'
 *     tapes at once, as long as no thread writes it meanwhile. Writing means its data (tg_tensor_data,
 *     tg_tensor_set, the fills, tg_optim_step, tg_checkpoint_load), its name (tg_tensor_set_name; the
 *     first name, which tg_params_add and the Time layers' _new give, is set atomically, so they stay
 *     safe on shared leaves) and, for a parameter, its gradient,
 *     which tg_backward writes for every parameter it reaches (and tg_zero_grad, the clipping). So threads
 *     that train at once need parameters of their own, and one set of parameters may be evaluated by
 *     several threads at once (forward only: no tg_backward reaching it);
 *   - separate objects on separate threads never interfere: tests/test_threads.c trains one model per
 *     thread, bit for bit as a sequential run, under ThreadSanitizer.
 *
 * Headers: tg_error.h (status), tg_tensor.h, tg_rng.h, tg_tape.h,
 * tg_ops.h, tg_gradcheck.h, tg_io.h, tg_train.h (parameter lists, optimizers, checkpoints), tg_rnn.h,
 * tg_lstm.h, tg_attention.h; tg_mpi.h apart (MPI builds only).
 */
#ifndef TAPEGRAD_H
#define TAPEGRAD_H

#include "tg_error.h"
#include "tg_tensor.h"
#include "tg_rng.h"
#include "tg_tape.h"
#include "tg_ops.h"
#include "tg_gradcheck.h"
#include "tg_io.h"
#include "tg_train.h"
#include "tg_rnn.h"
#include "tg_lstm.h"
#include "tg_attention.h"
#include "tg_layers.h"

#endif
