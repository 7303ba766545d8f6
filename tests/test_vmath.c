/* vmath.c (SLEEF's u10 functions behind tg_tanh, tg_exp, tg_log, tg_sigmoid) against libm, on every
   instruction set this processor has: a sweep of the whole f32 and f64 range by bit pattern, plus the
   values where implementations go wrong (+-0, subnormals, +-Inf, NaN, tanh's saturation, exp's overflow
   and underflow edges, log near 1). Fails above 2 ulp, or on a NaN, Inf or sign of zero that differs. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include "tg_testutil.h"
#include "vmath.h"

#define MAX_ULP 2.0

static const char *const fn_name[] = {"tanh", "exp", "log", "sigmoid"};

/* The reference: f32 from double libm, f64 from long double libm (both far below the result's ulp). */
static long double ref(tg__vfn f, long double x, int f64) {
    if (!f64) {
        double d = (double)x;
        switch (f) {
        case TG__VTANH: return tanh(d);
        case TG__VEXP: return exp(d);
        case TG__VLOG: return log(d);
        default: return d >= 0 ? 1 / (1 + exp(-d)) : exp(d) / (1 + exp(d));
        }
    }
    switch (f) {
    case TG__VTANH: return tanhl(x);
    case TG__VEXP: return expl(x);
    case TG__VLOG: return logl(x);
    default: return x >= 0 ? 1 / (1 + expl(-x)) : expl(x) / (1 + expl(x));
    }
}

/* |got - want| in units of the last place of want in the result's format (subnormals' ulp below). */
static double ulps(long double got, long double want, int f64) {
    int mant = f64 ? 52 : 23, emin = f64 ? -1022 : -126;
    long double max = f64 ? DBL_MAX : FLT_MAX;
    if (isnan(want) || isnan(got)) return isnan(want) && isnan(got) ? 0 : INFINITY;
    /* beyond the largest finite value, the rounded result is Inf */
    if (fabsl(want) > max) want = want > 0 ? INFINITY : -INFINITY;
    if (isinf(want) || isinf(got)) return want == got ? 0 : INFINITY;
    if (want == 0 && got == 0) return signbit(want) == signbit(got) ? 0 : INFINITY;
    int e;
    frexpl(want, &e);
    e = e - 1 < emin ? emin : e - 1;
    return (double)(fabsl(got - want) / ldexpl(1, e - mant));
}

typedef struct {
    double worst;
    long double at, got, want;
    int64_t n;
} result;

enum { BATCH = 4099 }; /* not a multiple of any vector width: every batch has a tail */

static void check_batch(tg__vfn f, int f64, const void *x, int64_t n, result *r) {
    static double yd[BATCH];
    static float yf[BATCH];
    tg__vmath(f, f64, x, f64 ? (void *)yd : (void *)yf, n);
    for (int64_t i = 0; i < n; i++) {
        long double xi = f64 ? ((const double *)x)[i] : ((const float *)x)[i];
        long double got = f64 ? yd[i] : yf[i], want = ref(f, xi, f64);
        double u = ulps(got, want, f64);
        if (!(u <= r->worst)) *r = (result){u, xi, got, want, r->n};
        r->n++;
    }
}

/* Fills x with the next n values of a sweep, to run in batches. */
typedef int64_t (*sweep_fn)(void *x, int64_t from, int64_t n);

/* every 509th f32 bit pattern (8.4 M values, every exponent and sign), then the specials */
static const float f32_special[] = {0.0f, -0.0f, FLT_MIN, -FLT_MIN, FLT_TRUE_MIN, -FLT_TRUE_MIN, 0x1p-140f,
                                    FLT_MAX, -FLT_MAX, INFINITY, -INFINITY, NAN, -NAN, 1.0f, -1.0f,
                                    88.72283f, 88.72284f, 89.0f, -87.33654f, -103.97208f, -104.0f, -150.0f,
                                    8.5f, 9.0f, 9.1f, 10.0f, -9.0f, 0x1p-12f, -0x1p-12f, 0.625f, 0.55f,
                                    0x1.fffffep-1f, 0x1.000002p+0f};
static int64_t sweep_f32(void *x, int64_t from, int64_t n) {
    const int64_t stride = 509, count = (INT64_C(1) << 32) / stride + 1, ns = sizeof f32_special / sizeof(float);
    float *p = x;
    int64_t k = 0;
    for (; k < n && from + k < count + ns; k++) {
        int64_t j = from + k;
        if (j < count) {
            uint32_t bits = (uint32_t)(j * stride);
            memcpy(&p[k], &bits, sizeof bits);
        } else {
            p[k] = f32_special[j - count];
        }
    }
    return k;
}

/* f64: 2 M bit patterns spread over the whole range, a dense run in [-40, 40] (tanh's and sigmoid's
   interesting part, exp and log near 1), and the specials */
static const double f64_special[] = {0.0, -0.0, DBL_MIN, -DBL_MIN, DBL_TRUE_MIN, -DBL_TRUE_MIN, 0x1p-1060,
                                     DBL_MAX, -DBL_MAX, INFINITY, -INFINITY, NAN, -NAN, 1.0, -1.0,
                                     709.782712893384, 709.7827128933841, 710.0, -708.3964185322641,
                                     -745.1332191019411, -745.2, -800.0, 19.0, 19.1, 22.0, -22.0, 0x1p-28,
                                     -0x1p-28, 0.625, 0.55, 0x1.fffffffffffffp-1, 0x1.0000000000001p+0};
static int64_t sweep_f64(void *x, int64_t from, int64_t n) {
    const int64_t wide = 1 << 21, dense = 1 << 20, ns = sizeof f64_special / sizeof(double);
    double *p = x;
    int64_t k = 0;
    for (; k < n && from + k < wide + dense + ns; k++) {
        int64_t j = from + k;
        if (j < wide) {
            /* a Weyl sequence over all 2^64 patterns: every exponent, sign and NaN payload range */
            uint64_t bits = (uint64_t)j * UINT64_C(0x9E3779B97F4A7C15);
            memcpy(&p[k], &bits, sizeof bits);
        } else if (j < wide + dense) {
            p[k] = -40.0 + 80.0 * (double)(j - wide) / (double)dense;
        } else {
            p[k] = f64_special[j - wide - dense];
        }
    }
    return k;
}

static void sweep(int isa, int f64) {
    cr_assert_eq(tg__vmath_use(isa), isa);
    static double buf[BATCH];
    for (int f = TG__VTANH; f <= TG__VSIGMOID; f++) {
        result r = {0, 0, 0, 0, 0};
        int64_t n;
        for (int64_t from = 0; (n = (f64 ? sweep_f64 : sweep_f32)(buf, from, BATCH)) > 0; from += n)
            check_batch((tg__vfn)f, f64, buf, n, &r);
        cr_expect(r.worst <= MAX_ULP, "isa %d %s %s(%La) = %La, libm %La: %.3g ulp (%lld values)", isa,
                  f64 ? "f64" : "f32", fn_name[f], r.at, r.got, r.want, r.worst, (long long)r.n);
    }
    tg__vmath_use(-1);
}

/* Every instruction set the processor has is checked; the ones it lacks report so and pass. */
#define ISA_TEST(name, isa)                                                                        \
    Test(vmath, name##_f32, .timeout = 120) {                                                      \
        if (tg__vmath_use(isa) != isa) cr_skip_test("this processor lacks " #name);                \
        sweep(isa, 0);                                                                             \
    }                                                                                              \
    Test(vmath, name##_f64, .timeout = 120) {                                                      \
        if (tg__vmath_use(isa) != isa) cr_skip_test("this processor lacks " #name);                \
        sweep(isa, 1);                                                                             \
    }
ISA_TEST(scalar, TG__ISA_SCALAR)
ISA_TEST(avx2, TG__ISA_AVX2)
ISA_TEST(avx512, TG__ISA_AVX512)

/* In place (y == x), as the ops never do but the header allows, and lengths around the vector widths. */
Test(vmath, in_place_and_every_tail) {
    for (int64_t n = 0; n <= 40; n++) {
        float x[40] = {0}, y[40] = {0};
        for (int64_t i = 0; i < n; i++) x[i] = y[i] = (float)i * 0.37f - 7.0f;
        tg__vmath(TG__VTANH, 0, y, y, n);
        for (int64_t i = 0; i < n; i++) cr_expect(ulps(y[i], tanh((double)x[i]), 0) <= MAX_ULP, "n %lld i %lld",
                                                  (long long)n, (long long)i);
    }
}
