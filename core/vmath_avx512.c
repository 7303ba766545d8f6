/* The AVX-512 loops of vmath.c. Only this file is compiled with -mavx512f: SLEEF's 16-float and 8-double
   entry points take __m512 by value. They dispatch inside libsleef (avx512f or avx512fnofma). The tail is
   one more vector under a mask, its missing lanes 1 (harmless to every function), not SLEEF's scalar code:
   a scalar call costs several vectors, and short rows (cross-entropy's 340 logits, attention's 29 scores)
   left it a large share. A masked load does not fault on the lanes it leaves out. */
#include <immintrin.h>
#include <sleef.h>
#include "vmath.h"

#define LOOP(W, VT, SFX, FN)                                                                       \
    do {                                                                                           \
        for (; i + W <= n; i += W) _mm512_storeu_##SFX(py + i, FN(_mm512_loadu_##SFX(px + i)));    \
        if (i < n) {                                                                               \
            const unsigned k = (1u << (n - i)) - 1;                                                \
            const VT lanes = _mm512_mask_loadu_##SFX(_mm512_set1_##SFX(1), k, px + i);             \
            _mm512_mask_storeu_##SFX(py + i, k, FN(lanes));                                        \
            i = n;                                                                                 \
        }                                                                                          \
    } while (0)

int64_t tg__vmath_avx512(tg__vfn f, int f64, const void *x, void *y, int64_t n) {
    int64_t i = 0;
    if (f64) {
        const double *px = x;
        double *py = y;
        if (f == TG__VTANH) LOOP(8, __m512d, pd, Sleef_tanhd8_u10);
        else if (f == TG__VEXP) LOOP(8, __m512d, pd, Sleef_expd8_u10);
        else if (f == TG__VLOG) LOOP(8, __m512d, pd, Sleef_logd8_u10);
    } else {
        const float *px = x;
        float *py = y;
        if (f == TG__VTANH) LOOP(16, __m512, ps, Sleef_tanhf16_u10);
        else if (f == TG__VEXP) LOOP(16, __m512, ps, Sleef_expf16_u10);
        else if (f == TG__VLOG) LOOP(16, __m512, ps, Sleef_logf16_u10);
    }
    return i;
}
