/* The AVX2 loops of vmath.c. Only this file is compiled with -mavx2: SLEEF's 8-float and 4-double
   entry points take __m256 by value. They dispatch inside libsleef (avx2, fma4 or avx). */
#include <immintrin.h>
#include <sleef.h>
#include <xxhash.h>
#include <xxh_x86dispatch.h>
#include "vmath.h"

/* The tail as in vmath_avx512.c: a masked vector (lanes whose mask's sign bit is set), the others 1. */
#define LOOP(W, VT, SFX, FN)                                                                       \
    do {                                                                                           \
        for (; i + W <= n; i += W) _mm256_storeu_##SFX(py + i, FN(_mm256_loadu_##SFX(px + i)));    \
        if (i < n) {                                                                               \
            const __m256i k = MASK_##SFX(n - i);                                                   \
            const VT in = _mm256_maskload_##SFX(px + i, k);                                        \
            const VT r = FN(_mm256_blendv_##SFX(_mm256_set1_##SFX(1), in, CAST_##SFX(k)));         \
            _mm256_maskstore_##SFX(py + i, k, r);                                                  \
            i = n;                                                                                 \
        }                                                                                          \
    } while (0)
#define MASK_ps(r) _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(r)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define MASK_pd(r) _mm256_cmpgt_epi64(_mm256_set1_epi64x(r), _mm256_setr_epi64x(0, 1, 2, 3))
#define CAST_ps _mm256_castsi256_ps
#define CAST_pd _mm256_castsi256_pd

int64_t tg__vmath_avx2(tg__vfn f, int f64, const void *x, void *y, int64_t n) {
    int64_t i = 0;
    if (f64) {
        const double *px = x;
        double *py = y;
        if (f == TG__VTANH) LOOP(4, __m256d, pd, Sleef_tanhd4_u10);
        else if (f == TG__VEXP) LOOP(4, __m256d, pd, Sleef_expd4_u10);
        else if (f == TG__VLOG) LOOP(4, __m256d, pd, Sleef_logd4_u10);
    } else {
        const float *px = x;
        float *py = y;
        if (f == TG__VTANH) LOOP(8, __m256, ps, Sleef_tanhf8_u10);
        else if (f == TG__VEXP) LOOP(8, __m256, ps, Sleef_expf8_u10);
        else if (f == TG__VLOG) LOOP(8, __m256, ps, Sleef_logf8_u10);
    }
    return i;
}

uint64_t tg__xxh3_avx(const void *p, size_t n) {
    uint64_t h = XXH3_64bits_dispatch(p, n);
    _mm256_zeroupper();
    return h;
}
