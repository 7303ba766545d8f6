/* The AVX-512 loops of vmath.c. Only this file is compiled with -mavx512f: SLEEF's 16-float and 8-double
   entry points take __m512 by value. They dispatch inside libsleef (avx512f or avx512fnofma). */
#include <immintrin.h>
#include <sleef.h>
#include "vmath.h"

#define LOOP(W, LOAD, STORE, FN)                                                                   \
    for (; i + W <= n; i += W) STORE(py + i, FN(LOAD(px + i)));

int64_t tg__vmath_avx512(tg__vfn f, int f64, const void *x, void *y, int64_t n) {
    int64_t i = 0;
    if (f64) {
        const double *px = x;
        double *py = y;
        if (f == TG__VTANH) LOOP(8, _mm512_loadu_pd, _mm512_storeu_pd, Sleef_tanhd8_u10)
        else if (f == TG__VEXP) LOOP(8, _mm512_loadu_pd, _mm512_storeu_pd, Sleef_expd8_u10)
        else if (f == TG__VLOG) LOOP(8, _mm512_loadu_pd, _mm512_storeu_pd, Sleef_logd8_u10)
    } else {
        const float *px = x;
        float *py = y;
        if (f == TG__VTANH) LOOP(16, _mm512_loadu_ps, _mm512_storeu_ps, Sleef_tanhf16_u10)
        else if (f == TG__VEXP) LOOP(16, _mm512_loadu_ps, _mm512_storeu_ps, Sleef_expf16_u10)
        else if (f == TG__VLOG) LOOP(16, _mm512_loadu_ps, _mm512_storeu_ps, Sleef_logf16_u10)
    }
    return i;
}
