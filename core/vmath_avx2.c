/* The AVX2 loops of vmath.c. Only this file is compiled with -mavx2: SLEEF's 8-float and 4-double
   entry points take __m256 by value. They dispatch inside libsleef (avx2, fma4 or avx). */
#include <immintrin.h>
#include <sleef.h>
#include <xxhash.h>
#include <xxh_x86dispatch.h>
#include "vmath.h"

#define LOOP(W, LOAD, STORE, FN)                                                                   \
    for (; i + W <= n; i += W) STORE(py + i, FN(LOAD(px + i)));

int64_t tg__vmath_avx2(tg__vfn f, int f64, const void *x, void *y, int64_t n) {
    int64_t i = 0;
    if (f64) {
        const double *px = x;
        double *py = y;
        if (f == TG__VTANH) LOOP(4, _mm256_loadu_pd, _mm256_storeu_pd, Sleef_tanhd4_u10)
        else if (f == TG__VEXP) LOOP(4, _mm256_loadu_pd, _mm256_storeu_pd, Sleef_expd4_u10)
        else if (f == TG__VLOG) LOOP(4, _mm256_loadu_pd, _mm256_storeu_pd, Sleef_logd4_u10)
    } else {
        const float *px = x;
        float *py = y;
        if (f == TG__VTANH) LOOP(8, _mm256_loadu_ps, _mm256_storeu_ps, Sleef_tanhf8_u10)
        else if (f == TG__VEXP) LOOP(8, _mm256_loadu_ps, _mm256_storeu_ps, Sleef_expf8_u10)
        else if (f == TG__VLOG) LOOP(8, _mm256_loadu_ps, _mm256_storeu_ps, Sleef_logf8_u10)
    }
    return i;
}

uint64_t tg__xxh3_avx(const void *p, size_t n) {
    uint64_t h = XXH3_64bits_dispatch(p, n);
    _mm256_zeroupper();
    return h;
}
