/* Array math for the elementwise ops: glibc's scalar tanhf/tanh cost more than the GEMMs around them in
   an RNN, so the loops go through SLEEF's vector functions (as PyTorch's CPU kernels do), 1-ulp variants
   only. Which vector width is decided once from the processor, so one binary runs everywhere; the
   -mavx* flags stay inside vmath_avx2.c and vmath_avx512.c. */
#include <math.h>
#include <sleef.h>
#include <stdatomic.h>
#include "tg_internal.h"
#include "vmath.h"

static atomic_int isa_in_force = -1;

static int isa_best(void) {
#if !defined(__x86_64__)
    return TG__ISA_SCALAR;
#else
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return TG__ISA_AVX512;
    if (__builtin_cpu_supports("avx2")) return TG__ISA_AVX2;
    return TG__ISA_SCALAR;
#endif
}

int tg__vmath_use(int isa) {
    int best = isa_best();
    int use = isa < 0 || isa > best ? best : isa;
    atomic_store_explicit(&isa_in_force, use, memory_order_relaxed);
    return use;
}

int tg__vmath_isa(void) {
    int isa = atomic_load_explicit(&isa_in_force, memory_order_relaxed);
    return isa >= 0 ? isa : tg__vmath_use(-1);
}

/* Everything on a processor without AVX2 (the vector loops do their tails masked): SLEEF's scalar u10 code
   (glibc's tanh is off by up to 2.2 ulp). */
static void scalar(tg__vfn f, int f64, const void *x, void *y, int64_t from, int64_t n) {
    /* Calls, not function pointers: sleef.h's prototypes return a const-qualified type for some
       compilers (clang), which makes a plain pointer type incompatible. */
    if (f64) {
        const double *px = x;
        double *py = y;
        for (int64_t i = from; i < n; i++)
            py[i] = f == TG__VTANH ? Sleef_tanh_u10(px[i]) : f == TG__VEXP ? Sleef_exp_u10(px[i]) : Sleef_log_u10(px[i]);
    } else {
        const float *px = x;
        float *py = y;
        for (int64_t i = from; i < n; i++)
            py[i] = f == TG__VTANH ? Sleef_tanhf_u10(px[i]) : f == TG__VEXP ? Sleef_expf_u10(px[i]) : Sleef_logf_u10(px[i]);
    }
}

static void vmath(tg__vfn f, int f64, const void *x, void *y, int64_t n) {
    int64_t done = 0;
#if defined(__x86_64__)
    int isa = tg__vmath_isa();
    done = isa == TG__ISA_AVX512 ? tg__vmath_avx512(f, f64, x, y, n)
           : isa == TG__ISA_AVX2 ? tg__vmath_avx2(f, f64, x, y, n) : 0;
#endif
    scalar(f, f64, x, y, done, n);
    /* SLEEF's f64 exp returns Inf from 709.78271114955743 on, though e^x stays below DBL_MAX up to
       ln(DBL_MAX) = 709.78271289338397: glibc's exp takes that sliver. */
    if (f == TG__VEXP && f64)
        for (int64_t i = 0; i < n; i++)
            if (((const double *)x)[i] > 709.782711 && ((const double *)x)[i] < 709.783)
                ((double *)y)[i] = exp(((const double *)x)[i]);
}

/* sigmoid from e = exp(-|x|), which never overflows: 1 / (1 + e) for x >= 0, e / (1 + e) below, so a
   very negative x keeps its tiny value instead of cancelling to 0 as 1 - 1 / (1 + e^-x) would. The
   rounding error c of s = 1 + e is recovered exactly (Fast2Sum, as 1 >= e) and taken out, q / (s + c) =
   q / s (1 - c / s): without it the three roundings reach 2.3 ulp. -|x| is clamped where e^-|x| is 0
   already: SLEEF's exp raises a spurious overflow flag for arguments far below that. Blocks of B keep e
   in L1 between the two passes; y may be x (x[i] is read before y[i] is written). The clamp runs in T:
   through double (fabs) it was a scalar loop, twice the time of the division's. */
#define SIGMOID(T)                                                                                 \
    do {                                                                                           \
        enum { B = 512 };                                                                          \
        const T lo = sizeof(T) == 8 ? -1100 : -150;                                                \
        const T *px = x;                                                                           \
        T *py = y, e[B];                                                                           \
        for (int64_t s = 0; s < n; s += B) {                                                       \
            int64_t m = n - s < B ? n - s : B;                                                     \
            for (int64_t i = 0; i < m; i++) {                                                      \
                const T a = px[s + i] > 0 ? -px[s + i] : px[s + i]; /* -|x| */                     \
                e[i] = a < lo ? lo : a;                                                            \
            }                                                                                      \
            vmath(TG__VEXP, sizeof(T) == 8, e, e, m);                                              \
            for (int64_t i = 0; i < m; i++) {                                                      \
                T q = px[s + i] >= 0 ? 1 : e[i], d = 1 + e[i], c = (1 - d) + e[i], r = q / d;      \
                py[s + i] = r - r * (c / d);                                                       \
            }                                                                                      \
        }                                                                                          \
    } while (0)

TG__CLONES void tg__vmath(tg__vfn f, int f64, const void *x, void *y, int64_t n) {
    if (f != TG__VSIGMOID) vmath(f, f64, x, y, n);
    else if (f64) SIGMOID(double);
    else SIGMOID(float);
}
