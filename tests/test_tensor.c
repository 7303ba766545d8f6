/* Tensors the caller owns: construction, accessors, hashing, the RNG and their errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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

/* ---- index tensors ---- */

Test(tensor, i64_tensors_hold_indices) {
    int64_t v[4] = {0, -1, 7, (int64_t)1 << 40};
    tg_tensor *t = tg_tensor_from(TG_I64, 2, TT_SHAPE(2, 2), v);
    cr_assert(t, "%s", tg_last_error());
    cr_expect_eq(tg_tensor_dtype(t), TG_I64);
    cr_expect_eq(((int64_t *)tg_tensor_data(t))[3], (int64_t)1 << 40);
    cr_expect_eq(tg_tensor_get(t, 1), -1.0);
    cr_expect_eq(tg_tensor_set(t, 2, 5.0), TG_OK);
    cr_expect_eq(((int64_t *)tg_tensor_data(t))[2], 5);
    tg_tensor *c = tg_tensor_clone(t);
    cr_assert(c);
    cr_expect_eq(tg_tensor_dtype(c), TG_I64);
    cr_expect_eq(tg_tensor_hash(c), tg_tensor_hash(t));
    /* the same bytes as f64 are another tensor */
    tg_tensor *f = tg_tensor_from(TG_F64, 2, TT_SHAPE(2, 2), tg_tensor_data(t));
    cr_expect_neq(tg_tensor_hash(f), tg_tensor_hash(t));
    tg_tensor *z = tg_tensor_new(TG_I64, 1, TT_SHAPE(3));
    cr_assert(z);
    cr_expect_eq(((int64_t *)tg_tensor_data(z))[2], 0);
    cr_expect_null(tg_tensor_grad(z));
    tg_tensor_free(t), tg_tensor_free(c), tg_tensor_free(f), tg_tensor_free(z);
}

Test(tensor, i64_errors) {
    tg_clear_error();
    cr_expect_null(tg_param_new(TG_I64, 1, TT_SHAPE(3)));
    tt_expect_error(TG_EDTYPE, "tg_param_new: dtype i64 holds indices, which have no gradient");
    tg_tensor *t = tg_tensor_new(TG_I64, 1, TT_SHAPE(3));
    cr_expect_eq(tg_tensor_set(t, 0, 1.5), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_tensor_set: 1.5 is not an int64 value for an i64 tensor");
    cr_expect_eq(tg_tensor_set(t, 0, NAN), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_tensor_set: nan is not an int64 value");
    cr_expect_eq(tg_tensor_set(t, 0, 0x1p63), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "is not an int64 value");
    uint64_t seed = 1;
    cr_expect_eq(tg_tensor_fill_uniform(t, 0, 1, &seed), TG_EDTYPE);
    tt_expect_error(TG_EDTYPE, "tg_tensor_fill_uniform: t is i64; random values fill f32 or f64 tensors");
    cr_expect_null(tg_tensor_new((tg_dtype)7, 1, TT_SHAPE(3)));
    tt_expect_error(TG_EINVAL, "tg_tensor_new: unknown dtype 7");
    tg_tensor_free(t);
}

/* ---- printing ---- */

static char *print_to_string(const tg_tensor *t) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(tg_tensor_print(t, f), TG_OK, "%s", tg_last_error());
    fclose(f);
    return buf;
}

Test(tensor, print_reads_like_numpy) {
    double v[6] = {1.5, -2, 3, 4, 5, 6};
    tg_tensor *m = tg_tensor_from(TG_F64, 2, TT_SHAPE(2, 3), v);
    char *s = print_to_string(m);
    cr_expect_str_eq(s, "tensor f64 (2,3)\n[[1.5, -2, 3],\n [4, 5, 6]]\n");
    free(s);
    tg_tensor *c = tg_tensor_from(TG_F32, 3, TT_SHAPE(2, 1, 2), (float[]){1, 2, 3, 4});
    s = print_to_string(c);
    cr_expect_str_eq(s, "tensor f32 (2,1,2)\n[[[1, 2]],\n\n [[3, 4]]]\n");
    free(s);
    tg_tensor *z = tg_tensor_from(TG_F64, 0, NULL, (double[]){0.25});
    s = print_to_string(z);
    cr_expect_str_eq(s, "tensor f64 ()\n0.25\n");
    free(s);
    tg_tensor *e = tg_tensor_new(TG_F32, 2, TT_SHAPE(3, 0));
    s = print_to_string(e);
    cr_expect_str_eq(s, "tensor f32 (3,0)\n[]\n");
    free(s);
    tg_tensor *i = tg_tensor_from(TG_I64, 1, TT_SHAPE(3), (int64_t[]){-1, 0, 9007199254740993});
    s = print_to_string(i);
    cr_expect_str_eq(s, "tensor i64 (3,)\n[-1, 0, 9007199254740993]\n");
    free(s);
    tg_tensor_free(m), tg_tensor_free(c), tg_tensor_free(z), tg_tensor_free(e), tg_tensor_free(i);
}

/* fuzz_ops found this: the strides of an empty tensor's huge dims overflowed (UBSan's report, in the
   sanitizer build; a plain build printed right by luck). */
Test(tensor, print_an_empty_tensor_with_huge_dims) {
    tg_tensor *e = tg_tensor_new(TG_F32, 3, TT_SHAPE(0, 7, INT64_MAX));
    cr_assert(e, "%s", tg_last_error());
    char *s = print_to_string(e);
    cr_expect_str_eq(s, "tensor f32 (0,7,9223372036854775807)\n[]\n");
    free(s);
    tg_tensor_free(e);
}

Test(tensor, print_summarises_past_1000_elements) {
    tg_tensor *v = tg_tensor_new(TG_F64, 1, TT_SHAPE(1001));
    for (int k = 0; k < 1001; k++) tg_tensor_set(v, k, k);
    char *s = print_to_string(v);
    cr_expect_str_eq(s, "tensor f64 (1001,)\n[0, 1, 2, ..., 998, 999, 1000]\n");
    free(s);
    tg_tensor *m = tg_tensor_new(TG_F64, 2, TT_SHAPE(40, 40));
    for (int k = 0; k < 1600; k++) tg_tensor_set(m, k, k);
    s = print_to_string(m);
    cr_expect(strstr(s, "[[0, 1, 2, ..., 37, 38, 39],\n [40, 41, 42, ..., 77, 78, 79],\n [80, 81, 82, ..., 117, "
                        "118, 119],\n ...,\n [1480,"), "%s", s);
    free(s);
    tg_tensor *small = tg_tensor_new(TG_F64, 1, TT_SHAPE(1000)); /* 1000 is printed whole */
    s = print_to_string(small);
    cr_expect_null(strstr(s, "..."));
    free(s);
    tg_tensor_free(v), tg_tensor_free(m), tg_tensor_free(small);
}

Test(tensor, print_errors) {
    tg_tensor *t = tg_tensor_new(TG_F64, 1, TT_SHAPE(2));
    tg_clear_error();
    cr_expect_eq(tg_tensor_print(NULL, stdout), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_tensor_print: t is NULL");
    cr_expect_eq(tg_tensor_print(t, NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_tensor_print: out is NULL");
    FILE *ro = fopen("/dev/null", "r"); /* writing to a read-only stream sets its error flag */
    cr_expect_eq(tg_tensor_print(t, ro), TG_EIO);
    tt_expect_error(TG_EIO, "tg_tensor_print: writing failed");
    fclose(ro);
    tg_tensor_free(t);
}

/* ---- random numbers ---- */

Test(rng, a_copy_forks_the_stream) {
    tg_rng a, b;
    tg_rng_seed(&a, 42);
    double first = tg_rng_uniform(&a);
    b = a;
    double x = tg_rng_uniform(&a), y = tg_rng_uniform(&b);
    cr_expect_eq(x, y);
    tg_rng_seed(&b, 42);
    cr_expect_eq(tg_rng_uniform(&b), first);
    cr_expect(isnan(tg_rng_uniform(NULL)) && isnan(tg_rng_normal(NULL)) && tg_rng_next(NULL) == 0);
}

/* tg_tensor_fill_uniform kept its stream when tg_rng arrived: the numbers of a seed are pinned. */
Test(rng, fill_uniform_draws_the_seed_stream) {
    tg_tensor *t = tg_tensor_new(TG_F64, 1, TT_SHAPE(3));
    uint64_t seed = 7;
    tg_tensor_fill_uniform(t, 0, 1, &seed);
    tg_rng r;
    tg_rng_seed(&r, 7);
    for (int i = 0; i < 3; i++) cr_expect_eq(tg_tensor_get(t, i), tg_rng_uniform(&r));
    tg_tensor_free(t);
}

/* A leaf's name: set, replaced, removed, refused for op outputs; out of memory keeps the old one. */
Test(tensor, names_of_leaves) {
    tg_tensor *W = tg_param_new(TG_F64, 2, (int64_t[]){3, 3});
    cr_expect_null(tg_tensor_name(W));
    cr_expect_eq(tg_tensor_set_name(W, "Wh"), TG_OK);
    cr_expect_str_eq(tg_tensor_name(W), "Wh");
    char buf[8] = "enc.Wh";
    cr_expect_eq(tg_tensor_set_name(W, buf), TG_OK);
    buf[0] = 'X'; /* a copy was kept */
    cr_expect_str_eq(tg_tensor_name(W), "enc.Wh");
    tg__alloc_fail_at(1);
    cr_expect_eq(tg_tensor_set_name(W, "dec.Wh"), TG_ENOMEM);
    tg__alloc_fail_at(0);
    tt_expect_error(TG_ENOMEM, "tg_tensor_set_name: out of memory for \"dec.Wh\"");
    cr_expect_str_eq(tg_tensor_name(W), "enc.Wh");
    tg_tensor *c = tg_tensor_clone(W);
    cr_expect_null(tg_tensor_name(c), "a clone is a new tensor, unnamed");
    cr_expect_eq(tg_tensor_set_name(W, NULL), TG_OK);
    cr_expect_null(tg_tensor_name(W));
    cr_expect_eq(tg_tensor_set_name(c, "kept until freed"), TG_OK); /* valgrind: freed with the tensor */

    cr_expect_eq(tg_tensor_set_name(NULL, "x"), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_tensor_set_name: t is NULL");
    cr_expect_null(tg_tensor_name(NULL));
    tg_tape *tape = tg_tape_new();
    tg_tensor *y = tg_tanh(tape, W);
    cr_expect_eq(tg_tensor_set_name(y, "y"), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_tensor_set_name: t (3,3) is an op output; only a caller's leaf has a name");
    cr_expect_null(tg_tensor_name(y));
    tg_tape_reset(tape);
    cr_expect_eq(tg_tensor_set_name(y, "y"), TG_ESTATE);
    tt_expect_error(TG_ESTATE, "tg_tensor_set_name: t is an output of a recording that tg_tape_reset ended");
    tg_tape_free(tape);
    tg_tensor_free(W), tg_tensor_free(c);
}
