#include <math.h>
#include "tg_testutil.h"

tg_tensor *tt_rand(tg_dtype dtype, int param, uint64_t seed, int ndim, const int64_t *shape) {
    tg_tensor *t = param ? tg_param_new(dtype, ndim, shape) : tg_tensor_new(dtype, ndim, shape);
    cr_assert(t, "tt_rand: %s", tg_last_error());
    tg_tensor_fill_uniform(t, -1.0, 1.0, &seed);
    return t;
}

tg_status tt_same_shape(tg_tensor *const *in, int n, void *user, int *ndim, int64_t *shape) {
    (void)n, (void)user;
    *ndim = tg_tensor_ndim(in[0]);
    memcpy(shape, tg_tensor_shape(in[0]), (size_t)*ndim * sizeof *shape);
    return TG_OK;
}

double tt_max_rel(tg_tensor *a, int grad, tg_tensor *r) {
    double worst = 0.0;
    const void *p = grad ? tg_tensor_grad(a) : tg_tensor_data(a);
    cr_assert(p && tg_tensor_numel(a) == tg_tensor_numel(r), "tt_max_rel: no gradient, or sizes differ");
    for (int64_t i = 0; i < tg_tensor_numel(a); i++) {
        double x = tg_tensor_dtype(a) == TG_F32 ? ((const float *)p)[i] : ((const double *)p)[i];
        double y = tg_tensor_get(r, i);
        double e = fabs(x - y) / fmax(fabs(y), 1e-12);
        if (!(e <= worst)) worst = e;
    }
    return worst;
}

void tt_check3(tg_fn f, tg_ref_fn ref, void *ctx, tg_tensor *const *in, int n, const char *label) {
    tg_gradcheck_opts o = tg_gradcheck_defaults();
    o.atol = 1e-8, o.rtol = 1e-6;
    tg_gradcheck_report vr, vn;
    int ok = tg_gradcheck_ref(f, ref, ctx, in, n, &o, &vr, &vn);
    cr_expect(ok, "%s, full mode\n vs ref: %s\n vs numeric: %s", label, vr.message, vn.message);
    cr_expect_leq(vr.max_rel_err, 1e-10, "%s, full mode vs reference: %s", label, vr.message);
    o.fast = 1, o.atol = 0;
    for (uint64_t seed = 1; seed <= 4; seed++) {
        o.seed = seed;
        ok = tg_gradcheck_ref(f, ref, ctx, in, n, &o, &vr, &vn);
        cr_expect(ok, "%s, fast mode seed %llu\n vs ref: %s\n vs numeric: %s", label, (unsigned long long)seed,
                  vr.message, vn.message);
        cr_expect_leq(vn.max_rel_err, 1e-6, "%s, fast mode vs numeric: %s", label, vn.message);
        cr_expect_leq(vr.max_rel_err, 1e-10, "%s, fast mode vs reference: %s", label, vr.message);
    }
}
