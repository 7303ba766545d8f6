/* tapegrad: random numbers.
 *
 * tg_rng is xoshiro256** (Blackman and Vigna), seeded through splitmix64. Its whole state is the
 * plain value below: copy it to fork a stream (two copies draw the same numbers), store its four
 * words to resume. Draws are computed in integer arithmetic and one exact conversion, so a seed gives
 * the same numbers on every machine and compiler. Not for cryptography. A tg_rng is not shared
 * between threads: give each its own (seeded differently, or copied and then advanced apart).
 */
#ifndef TG_RNG_H
#define TG_RNG_H

#include <stdint.h>
#include "tg_tensor.h"

typedef struct { uint64_t s[4]; } tg_rng; /* the generator's whole state */

/* The stream of seed: any value, 0 included. rng NULL does nothing. */
void tg_rng_seed(tg_rng *rng, uint64_t seed);
/* The next 64 random bits. 0 for a NULL rng. */
uint64_t tg_rng_next(tg_rng *rng);
/* Uniform in [0, 1): the top 53 bits of a draw, times 2^-53 (every value a multiple of 2^-53).
   NaN for a NULL rng. */
double tg_rng_uniform(tg_rng *rng);
/* Standard normal N(0, 1) by the Box-Muller transform, two uniforms per draw (no cached second
   value, so the state stays the four words). NaN for a NULL rng. */
double tg_rng_normal(tg_rng *rng);

/* Fills t (f32 or f64) with mean + std * N(0, 1) draws, in element order. TG_EINVAL for a NULL t or
   rng, or a std < 0 or non-finite mean or std; TG_EDTYPE for an i64 t. t is unchanged on failure. */
tg_status tg_tensor_fill_normal(tg_tensor *t, double mean, double std, tg_rng *rng);
/* Xavier (Glorot) uniform initialisation of a (K, M) weight used as x @ W: uniform in
   [-a, a) with a = sqrt(6 / (K + M)), as torch.nn.init.xavier_uniform_ on the transposed (M, K)
   weight of nn.Linear. TG_ESHAPE unless W is 2-d with K + M > 0; errors otherwise as fill_normal. */
tg_status tg_init_xavier(tg_tensor *W, tg_rng *rng);

#endif
