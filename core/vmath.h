/* Vectorized tanh, exp, log and sigmoid over arrays, through SLEEF's 1-ulp (u10) functions: AVX-512 or
   AVX2 where the processor has them (picked once, at run time), SLEEF's scalar code elsewhere (the
   vector loops take their tails as a masked vector). Never installed. */
#ifndef TG_VMATH_H
#define TG_VMATH_H

#include <stddef.h>
#include <stdint.h>

typedef enum { TG__VTANH, TG__VEXP, TG__VLOG, TG__VSIGMOID } tg__vfn;

/* y[i] = f(x[i]) for i < n, in f32 or f64 (f64 set). y may be x, except for f64 exp of an x in
   (709.78271, 709.783), which then reads Inf (see vmath.c). */
void tg__vmath(tg__vfn f, int f64, const void *x, void *y, int64_t n);

/* The instruction sets, best last. Each ISA file runs all n elements (the tail masked) and returns how many
   it did. */
enum { TG__ISA_SCALAR, TG__ISA_AVX2, TG__ISA_AVX512 };
/* Tests: use isa from now on (-1: the best the processor has); returns the one in force, which is lower
   than asked when the processor lacks it. */
int tg__vmath_use(int isa);
int64_t tg__vmath_avx2(tg__vfn f, int f64, const void *x, void *y, int64_t n);
/* The one in force (tg__vmath_use(-1) on first use). */
int tg__vmath_isa(void);
/* XXH3-64 of n bytes through libxxhash's AVX2/AVX-512 dispatch (3x its plain build here), for processors
   with AVX2: it clears the vector registers' upper halves after, which the library does not, so that the
   SSE code running next does not pay for their dirty state (that doubled a small RNN step). */
uint64_t tg__xxh3_avx(const void *p, size_t n);
int64_t tg__vmath_avx512(tg__vfn f, int f64, const void *x, void *y, int64_t n);

#endif
