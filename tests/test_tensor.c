/* Tensors the caller owns: construction, accessors, hashing, the RNG and their errors. */
#include <math.h>
#include "tg_testutil.h"

Test(tensor, new_is_zeroed_aligned_and_described) {
    tg_tensor *t = tg_tensor_new(TG_F32, 3, TT_SHAPE(2, 3, 4));
    cr_assert(t);
    cr_expect_eq(tg_tensor_dtype(t), TG_F32);
    cr_expect_eq(tg_tensor_ndim(t), 3);
    cr_expect_eq(tg_tensor_shape(t)[2], 4);
    cr_expect_eq(tg_tensor_numel(t), 24);
    cr_expect_eq((uintptr_t)tg_tensor_data(t) % 64, 0);
    for (int i = 0; i < 24; i++) cr_expect_eq(((float *)tg_tensor_data(t))[i], 0.0f);
    cr_expect_null(tg_tensor_grad(t));
    cr_expect_eq(tg_tensor_requires_grad(t), 0);
    tg_tensor_free(t);
}

Test(tensor, param_has_zeroed_gradient_that_zero_grad_clears) {
    tg_tensor *p = tg_param_new(TG_F64, 1, TT_SHAPE(5));
    cr_assert(p && tg_tensor_grad(p));
    cr_expect(tg_tensor_requires_grad(p));
    double *g = tg_tensor_grad(p);
    for (int i = 0; i < 5; i++) cr_expect_eq(g[i], 0.0);
    g[3] = 2.5;
    tg_zero_grad(p);
    cr_expect_eq(g[3], 0.0);
    tg_tensor_free(p);
}

Test(tensor, zero_d_and_empty_tensors) {
    tg_tensor *s = tg_tensor_new(TG_F64, 0, NULL), *e = tg_tensor_new(TG_F32, 2, TT_SHAPE(3, 0));
    cr_assert(s && e);
    cr_expect_eq(tg_tensor_numel(s), 1);
    cr_expect_eq(tg_tensor_numel(e), 0);
    tg_tensor *huge_empty = tg_tensor_new(TG_F64, 3, TT_SHAPE(INT64_MAX, INT64_MAX, 0));
    cr_expect(huge_empty && tg_tensor_numel(huge_empty) == 0, "%s", tg_last_error());
    tg_tensor_free(huge_empty);
    cr_expect_eq(tg_tensor_set(s, 0, 4.0), TG_OK);
    cr_expect_eq(tg_tensor_get(s, 0), 4.0);
    tg_tensor_free(s);
    tg_tensor_free(e);
}

Test(tensor, from_and_clone_copy_data) {
    double v[6] = {1, 2, 3, 4, 5, 6};
    tg_tensor *t = tg_tensor_from(TG_F64, 2, TT_SHAPE(2, 3), v);
    tg_tensor *c = tg_tensor_clone(t);
    cr_assert(t && c);
    v[0] = 9;
    cr_expect_eq(tg_tensor_get(t, 0), 1.0);
    cr_expect_eq(tg_tensor_hash(t), tg_tensor_hash(c));
    cr_expect_eq(tg_tensor_get(c, 5), 6.0);
    tg_tensor_free(t);
    tg_tensor_free(c);
}

Test(tensor, hash_covers_dtype_shape_and_data) {
    tg_tensor *a = TT_RAND(TG_F64, 0, 3, 2, 3), *b = tg_tensor_clone(a);
    cr_expect_eq(tg_tensor_hash(a), tg_tensor_hash(b));
    tg_tensor_set(b, 4, tg_tensor_get(b, 4) + 1e-12);
    cr_expect_neq(tg_tensor_hash(a), tg_tensor_hash(b));
    double buf[6] = {0};
    tg_tensor *r = tg_tensor_from(TG_F64, 2, TT_SHAPE(2, 3), buf), *q = tg_tensor_from(TG_F64, 2, TT_SHAPE(3, 2), buf);
    tg_tensor *f = tg_tensor_new(TG_F32, 2, TT_SHAPE(3, 4)); /* 48 zero bytes, as 6 doubles are */
    tg_tensor *d = tg_tensor_from(TG_F64, 1, TT_SHAPE(6), buf);
    cr_expect_neq(tg_tensor_hash(r), tg_tensor_hash(q));
    cr_expect_neq(tg_tensor_hash(d), tg_tensor_hash(r));
    cr_expect_neq(tg_tensor_hash(f), tg_tensor_hash(r));
    cr_expect_eq(tg_tensor_hash(NULL), 0);
    tg_tensor_free(a), tg_tensor_free(b), tg_tensor_free(r), tg_tensor_free(q), tg_tensor_free(f), tg_tensor_free(d);
}

Test(tensor, fill_uniform_is_deterministic_and_in_range) {
    tg_tensor *a = tg_tensor_new(TG_F64, 1, TT_SHAPE(1000)), *b = tg_tensor_new(TG_F64, 1, TT_SHAPE(1000));
    uint64_t s1 = 42, s2 = 42;
    tg_tensor_fill_uniform(a, -2, 3, &s1);
    tg_tensor_fill_uniform(b, -2, 3, &s2);
    cr_expect_eq(tg_tensor_hash(a), tg_tensor_hash(b));
    cr_expect_eq(s1, s2);
    cr_expect_neq(s1, 42);
    double lo = 1e9, hi = -1e9;
    for (int i = 0; i < 1000; i++) lo = fmin(lo, tg_tensor_get(a, i)), hi = fmax(hi, tg_tensor_get(a, i));
    cr_expect(lo >= -2 && lo < -1.9 && hi < 3 && hi > 2.9, "range [%g, %g]", lo, hi);
    tg_tensor_fill_uniform(a, -2, 3, &s1);
    cr_expect_neq(tg_tensor_hash(a), tg_tensor_hash(b), "a second draw differs");
    tg_tensor_free(a), tg_tensor_free(b);
}

Test(tensor, bad_arguments_fail_with_named_values) {
    tg_clear_error();
    cr_expect_null(tg_tensor_new(TG_F64, 9, TT_SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 1)));
    tt_expect_error(TG_EINVAL, "tg_tensor_new: ndim 9 is outside 0..8");
    cr_expect_null(tg_tensor_new(TG_F64, -1, NULL));
    tt_expect_error(TG_EINVAL, "ndim -1");
    cr_expect_null(tg_tensor_new((tg_dtype)7, 1, TT_SHAPE(2)));
    tt_expect_error(TG_EINVAL, "unknown dtype 7");
    cr_expect_null(tg_param_new(TG_F32, 2, TT_SHAPE(3, -2)));
    tt_expect_error(TG_ESHAPE, "tg_param_new: negative dimension -2 in shape (3,-2)");
    cr_expect_null(tg_tensor_new(TG_F32, 2, NULL));
    tt_expect_error(TG_EINVAL, "shape is NULL");
    cr_expect_null(tg_tensor_new(TG_F64, 3, TT_SHAPE(INT64_MAX / 2, 4, 4)));
    tt_expect_error(TG_ENOMEM, "too many elements");
    cr_expect_null(tg_tensor_from(TG_F64, 1, TT_SHAPE(2), NULL));
    tt_expect_error(TG_EINVAL, "tg_tensor_from: data is NULL for 2 elements");
    cr_expect_null(tg_tensor_clone(NULL));
    tt_expect_error(TG_EINVAL, "tg_tensor_clone: t is NULL");
    cr_expect_eq(tg_tensor_set(NULL, 0, 1), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_tensor_set: t is NULL");
    tg_tensor *t = tg_tensor_new(TG_F32, 1, TT_SHAPE(3));
    cr_expect_eq(tg_tensor_set(t, 3, 1), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "index 3 outside 0..2");
    cr_expect(isnan(tg_tensor_get(t, -1)));
    cr_expect_eq(tg_tensor_fill_uniform(t, 0, 1, NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_tensor_fill_uniform: seed is NULL");
    cr_expect_eq(tg_tensor_fill_uniform(NULL, 0, 1, NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_tensor_fill_uniform: t is NULL");
    tg_tensor_free(t);
    tg_tensor_free(NULL); /* ignored */
}

Test(tensor, accessors_tolerate_null) {
    cr_expect_null(tg_tensor_data(NULL));
    cr_expect_null(tg_tensor_grad(NULL));
    cr_expect_null(tg_tensor_shape(NULL));
    cr_expect_eq(tg_tensor_numel(NULL), 0);
    cr_expect_eq(tg_tensor_ndim(NULL), 0);
    tg_zero_grad(NULL);
}

Test(tensor, allocation_failures_report_enomem_and_leak_nothing) {
    for (int64_t k = 1;; k++) {
        tg_clear_error();
        tg__alloc_fail_at(k);
        tg_tensor *p = tg_param_new(TG_F64, 2, TT_SHAPE(3, 3));
        tg__alloc_fail_at(0);
        if (p) {
            cr_expect_eq(k, 4, "a param takes three allocations; succeeded at %lld", (long long)k);
            tg_tensor_free(p);
            break;
        }
        tt_expect_error(TG_ENOMEM, "tg_param_new: out of memory");
    }
}

Test(error, names_and_clear) {
    cr_expect_str_eq(tg_status_name(TG_EMODIFIED), "TG_EMODIFIED");
    cr_expect_str_eq(tg_status_name((tg_status)99), "TG_(unknown)");
    tg_tensor_new(TG_F64, 9, NULL);
    cr_expect_eq(tg_last_status(), TG_EINVAL);
    tg_clear_error();
    cr_expect_eq(tg_last_status(), TG_OK);
    cr_expect_str_eq(tg_last_error(), "");
}
