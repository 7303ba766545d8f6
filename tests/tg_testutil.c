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
