/* Random numbers: xoshiro256** seeded through splitmix64; uniform, normal, and fills. */
#include <math.h>
#include "tg_internal.h"
#include "tg_rng.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void tg_rng_seed(tg_rng *rng, uint64_t seed) {
    if (!rng) return;
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

uint64_t tg_rng_next(tg_rng *rng) {
    if (!rng) return 0;
    uint64_t *s = rng->s, r = rotl(s[1] * 5, 7) * 9, u = s[1] << 17;
    s[2] ^= s[0], s[3] ^= s[1], s[1] ^= s[2], s[0] ^= s[3], s[2] ^= u, s[3] = rotl(s[3], 45);
    return r;
}

double tg_rng_uniform(tg_rng *rng) { return rng ? (double)(tg_rng_next(rng) >> 11) * 0x1.0p-53 : NAN; }

double tg_rng_normal(tg_rng *rng) {
    if (!rng) return NAN;
    /* 1 - u is in (0, 1], so the log is finite; cos keeps the draw's sign symmetric. */
    double u1 = 1.0 - tg_rng_uniform(rng), u2 = tg_rng_uniform(rng);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static tg_status check_fill(const char *fn, const tg_tensor *t, const tg_rng *rng) {
    if (!t || !rng) return tg__null(fn, t ? "rng" : "t");
    if (tg__stale(fn, "t", t)) return TG_ESTATE;
    if (!tg__is_float(t->dtype))
        return tg__fail(TG_EDTYPE, "%s: t is %s; random values fill f32 or f64 tensors", fn, tg__dtype_name(t->dtype));
    return TG_OK;
}

static void store(tg_tensor *t, int64_t i, double v) {
    if (t->dtype == TG_F32) ((float *)t->data)[i] = (float)v;
    else ((double *)t->data)[i] = v;
}

tg_status tg_tensor_fill_normal(tg_tensor *t, double mean, double std, tg_rng *rng) {
    tg_status st = check_fill("tg_tensor_fill_normal", t, rng);
    if (st) return st;
    if (!isfinite(mean) || !(std >= 0) || !isfinite(std))
        return tg__fail(TG_EINVAL, "tg_tensor_fill_normal: mean %g and std %g must be finite, std >= 0", mean, std);
    for (int64_t i = 0; i < t->numel; i++) store(t, i, mean + std * tg_rng_normal(rng));
    return TG_OK;
}

tg_status tg_init_xavier(tg_tensor *W, tg_rng *rng) {
    char sb[TG__SHAPE_STR];
    tg_status st = check_fill("tg_init_xavier", W, rng);
    if (st) return st;
    if (W->ndim != 2 || W->shape[0] + W->shape[1] == 0)
        return tg__fail(TG_ESHAPE, "tg_init_xavier: W is %s, want a (K,M) weight with K + M > 0",
                        tg__shape_str(W->ndim, W->shape, sb));
    double a = sqrt(6.0 / (double)(W->shape[0] + W->shape[1]));
    for (int64_t i = 0; i < W->numel; i++) store(W, i, a * (2.0 * tg_rng_uniform(rng) - 1.0));
    return TG_OK;
}

tg_status tg_tensor_fill_uniform(tg_tensor *t, double lo, double hi, uint64_t *seed) {
    if (!t || !seed) return tg__null("tg_tensor_fill_uniform", t ? "seed" : "t");
    tg_rng rng;
    tg_status st = check_fill("tg_tensor_fill_uniform", t, &rng);
    if (st) return st;
    /* The stream of *seed, then a new seed from it: successive calls draw different values, and the
       values are those this function drew before tg_rng existed. */
    tg_rng_seed(&rng, *seed);
    uint64_t x = *seed + 4 * 0x9e3779b97f4a7c15ull; /* where tg_rng_seed's splitmix64 stopped */
    for (int64_t i = 0; i < t->numel; i++) store(t, i, lo + (hi - lo) * tg_rng_uniform(&rng));
    *seed = splitmix64(&x);
    return TG_OK;
}
