/* tapegrad: layers that own their weights.
 *
 * A model's weights made, initialised and registered in one call per layer, in a parameter list that
 * owns them (tg_params_create): an encoder-decoder is a few calls and one tg_params_free.
 *
 *     tg_params *ps = tg_params_new();
 *     tg_time_lstm *enc = tg_time_lstm_create(ps, "enc", TG_F32, D, H, 0, &rng);   // enc.Wx, enc.Wh, enc.b
 *     tg_time_lstm *dec = tg_time_lstm_create(ps, "dec", TG_F32, D, H, 0, &rng);
 *     tg_tensor *b, *W = tg_linear_create(ps, "out", TG_F32, H, V, &rng, &b);       // out.W, out.b
 *     ...
 *     tg_time_lstm_free(enc), tg_time_lstm_free(dec);   // the layers first: they borrow the weights
 *     tg_params_free(ps);                                // frees every weight made here
 *
 * The initialisation is the book's (Deep Learning from Scratch 2, which calls 1/sqrt(fan-in) scaling
 * "Xavier"): Wx ~ N(0, 1) / sqrt(D), Wh ~ N(0, 1) / sqrt(H), biases 0; a linear layer's W ~ N(0, 1) /
 * sqrt(in). Draws come from rng in the order Wx, Wh (then W), element by element, so a seed fixes them
 * on every machine. (torch.nn.init.xavier_uniform_ is tg_init_xavier, in tg_rng.h.)
 *
 * Errors, for each: NULL with TG_EINVAL for a NULL params, prefix or rng, D, H, in or out < 1, a name
 * ("<prefix>.Wx") the list already holds or that is longer than 200 bytes; TG_EDTYPE for TG_I64;
 * TG_ESTATE while an optimizer uses the list; TG_ENOMEM. The list is unchanged on failure and rng not
 * advanced.
 */
#ifndef TG_LAYERS_H
#define TG_LAYERS_H

#include "tg_lstm.h"
#include "tg_rnn.h"
#include "tg_train.h"

/* A TimeRNN (tg_time_rnn_new's stateful) over new weights "<prefix>.Wx" (D,H), "<prefix>.Wh" (H,H),
   "<prefix>.b" (H,). Free it with tg_time_rnn_free; its weights belong to params. */
tg_time_rnn *tg_time_rnn_create(tg_params *params, const char *prefix, tg_dtype dtype, int64_t D,
                                int64_t H, int stateful, tg_rng *rng);
/* A TimeLSTM over new weights Wx (D,4H), Wh (H,4H), b (4H,), named as above. */
tg_time_lstm *tg_time_lstm_create(tg_params *params, const char *prefix, tg_dtype dtype, int64_t D,
                                  int64_t H, int stateful, tg_rng *rng);
/* A TimeGRU over new weights Wx (D,3H), Wh (H,3H), b (3H,), named as above. */
tg_time_gru *tg_time_gru_create(tg_params *params, const char *prefix, tg_dtype dtype, int64_t D,
                                int64_t H, int stateful, tg_rng *rng);
/* A linear layer's weights for tg_linear: returns W "<prefix>.W" (in,out), and *b "<prefix>.b" (out,)
   when b is not NULL (no bias otherwise). On failure *b is NULL too. */
tg_tensor *tg_linear_create(tg_params *params, const char *prefix, tg_dtype dtype, int64_t in, int64_t out,
                            tg_rng *rng, tg_tensor **b);

#endif
