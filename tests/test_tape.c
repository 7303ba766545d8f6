/* The tape: what it records, the reverse walk, its checks and its errors. */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>
#include "tg_testutil.h"

/* L = sum(tanh(x @ W + b)) on tape, the seed's cell without the recurrence. */
static tg_tensor *layer_loss(tg_tape *tape, tg_tensor *x, tg_tensor *W, tg_tensor *b) {
    return tg_sum(tape, tg_tanh(tape, tg_add(tape, tg_matmul(tape, x, W), b)));
}

Test(tape, ops_on_constants_record_nothing) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = TT_RAND(TG_F64, 0, 1, 2, 3);
    tg_tensor *y = tg_tanh(tape, x);
    cr_assert(y);
    cr_expect_eq(tg_tape_size(tape), 0);
    cr_expect_eq(tg_tensor_requires_grad(y), 0);
    cr_expect_eq(tg_backward(tape, tg_sum(tape, y), NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_backward: out () depends on no parameter");
    tg_tape_free(tape);
    tg_tensor_free(x);
}

Test(tape, a_leaf_used_twice_sums_its_contributions_and_passes_accumulate) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *p = TT_RAND(TG_F64, 1, 2, 3);
    /* L = sum(p * p) + sum(p): dL/dp = 2p + 1 */
    tg_tensor *L = tg_add(tape, tg_sum(tape, tg_mul(tape, p, p)), tg_sum(tape, p));
    cr_assert_eq(tg_backward(tape, L, NULL), TG_OK, "%s", tg_last_error());
    double *g = tg_tensor_grad(p), *v = tg_tensor_data(p);
    for (int i = 0; i < 3; i++) cr_expect_float_eq(g[i], 2 * v[i] + 1, 1e-15);
    tg_tape_reset(tape);
    L = tg_sum(tape, p);
    cr_assert_eq(tg_backward(tape, L, NULL), TG_OK);
    for (int i = 0; i < 3; i++) cr_expect_float_eq(g[i], 2 * v[i] + 2, 1e-15, "a second pass adds");
    tg_zero_grad(p);
    for (int i = 0; i < 3; i++) cr_expect_eq(g[i], 0.0);
    tg_tape_free(tape);
    tg_tensor_free(p);
}

Test(tape, grad_out_seeds_the_walk) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *p = TT_RAND(TG_F64, 1, 4, 2, 2);
    tg_tensor *y = tg_scale(tape, p, 3.0);
    double go[4] = {1, 2, 3, 4};
    tg_tensor *g = tg_tensor_from(TG_F64, 2, TT_SHAPE(2, 2), go);
    cr_assert_eq(tg_backward(tape, y, g), TG_OK);
    for (int i = 0; i < 4; i++) cr_expect_eq(((double *)tg_tensor_grad(p))[i], 3 * go[i]);
    tg_tape_free(tape);
    tg_tensor_free(p), tg_tensor_free(g);
}

Test(tape, backward_from_a_parameter_adds_grad_out) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *p = tg_param_new(TG_F64, 0, NULL);
    cr_expect_eq(tg_backward(tape, p, NULL), TG_OK);
    cr_expect_eq(((double *)tg_tensor_grad(p))[0], 1.0);
    tg_tape_free(tape);
    tg_tensor_free(p);
}

Test(tape, detach_stops_the_gradient) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *p = TT_RAND(TG_F64, 1, 5, 3);
    /* L = sum(p * detach(p)): dL/dp = detach(p) = p, not 2p */
    tg_tensor *d = tg_detach(tape, p);
    cr_expect_eq(tg_tensor_requires_grad(d), 0);
    cr_assert_eq(tg_backward(tape, tg_sum(tape, tg_mul(tape, p, d)), NULL), TG_OK);
    for (int i = 0; i < 3; i++) cr_expect_eq(((double *)tg_tensor_grad(p))[i], tg_tensor_get(p, i));
    tg_tape_free(tape);
    tg_tensor_free(p);
}

Test(tape, backward_twice_or_after_reset_is_refused) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = TT_RAND(TG_F64, 0, 1, 4, 3), *W = TT_RAND(TG_F64, 1, 2, 3, 2), *b = TT_RAND(TG_F64, 1, 3, 2);
    tg_tensor *L = layer_loss(tape, x, W, b);
    cr_assert_eq(tg_backward(tape, L, NULL), TG_OK);
    cr_expect_eq(tg_backward(tape, L, NULL), TG_ESTATE);
    tt_expect_error(TG_ESTATE, "tg_backward: this recording was already backpropagated (4 nodes)");
    tg_tape_reset(tape);
    cr_expect_eq(tg_backward(tape, L, NULL), TG_ESTATE);
    tt_expect_error(TG_ESTATE, "tg_backward: the tape was reset since out was recorded");
    /* and an op output from before the reset cannot feed the new recording */
    tg_tape_reset(tape);
    tg_tensor *h = tg_tanh(tape, W);
    tg_tape_reset(tape);
    cr_expect_null(tg_tanh(tape, h));
    tt_expect_error(TG_ESTATE, "tg_tanh: x is an output of a recording that tg_tape_reset ended");
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(W), tg_tensor_free(b);
}

Test(tape, tensors_of_another_tape_are_refused) {
    tg_tape *t1 = tg_tape_new(), *t2 = tg_tape_new();
    tg_tensor *p = TT_RAND(TG_F64, 1, 1, 2);
    tg_tensor *y = tg_tanh(t1, p);
    cr_expect_null(tg_add(t2, p, y));
    tt_expect_error(TG_EINVAL, "tg_add: b was recorded on another tape");
    cr_expect_eq(tg_backward(t2, tg_sum(t1, y), NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_backward: out was recorded on another tape");
    tg_tape_free(t1), tg_tape_free(t2);
    tg_tensor_free(p);
}

/* A scalar is its own fingerprint (its bits, no hash): a changed leaf or output of either dtype is still
   caught, and so is a change of sign alone (-0.0 for 0.0, bits the arithmetic calls equal). */
Test(tape, a_modified_saved_scalar_fails_backward) {
    for (int f64 = 0; f64 < 2; f64++)
        for (int output = 0; output < 2; output++)
            for (int zero = 0; zero < 2; zero++) {
                tg_dtype dt = f64 ? TG_F64 : TG_F32;
                tg_tape *tape = tg_tape_new();
                tg_tensor *w = tg_param_new(dt, 1, (int64_t[]){1}), *x = tg_param_new(dt, 0, NULL);
                tg_tensor_set(w, 0, zero ? 0.0 : 0.75), tg_tensor_set(x, 0, 2.0);
                tg_tensor *s = output ? tg_scale(tape, w, 1.0) : w; /* an output of the tape, or the leaf */
                tg_tensor *L = tg_sum(tape, tg_mul(tape, x, s));
                cr_assert(L, "%s", tg_last_error());
                tg_tensor_set(s, 0, zero ? -0.0 : 0.5);
                cr_expect_eq(tg_backward(tape, L, NULL), TG_EMODIFIED, "f64 %d output %d zero %d", f64, output, zero);
                tt_expect_error(TG_EMODIFIED, "tensor of shape (1,) that mul (node");
                tg_tape_free(tape);
                tg_tensor_free(w), tg_tensor_free(x);
            }
}

/* The last leaf fingerprinted is found again without the table, but only within its recording: after a
   reset, a weight saved again is hashed again, and a write to it before that recording's backward fails. */
Test(tape, a_leaf_saved_again_after_a_reset_is_verified_in_the_new_recording) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = TT_RAND(TG_F64, 1, 1, 3), *w = TT_RAND(TG_F64, 1, 2, 3);
    tg_tensor *L = tg_sum(tape, tg_mul(tape, x, w)); /* w the last leaf saved */
    cr_expect_eq(tg_backward(tape, L, NULL), TG_OK, "%s", tg_last_error());
    tg_tape_reset(tape);
    ((double *)tg_tensor_data(w))[0] += 0.5;         /* an optimizer's step between recordings: fine */
    L = tg_sum(tape, tg_mul(tape, tg_tanh(tape, x), w)); /* tanh's output takes the first fingerprint */
    cr_assert(L, "%s", tg_last_error());
    ((double *)tg_tensor_data(w))[1] += 0.5;         /* a step before backward: caught */
    cr_expect_eq(tg_backward(tape, L, NULL), TG_EMODIFIED);
    tt_expect_error(TG_EMODIFIED, "tensor of shape (3,) that mul (node 1) saved for backward was modified");
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(w);
}

Test(tape, a_modified_saved_tensor_fails_backward) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = TT_RAND(TG_F64, 0, 1, 4, 3), *W = TT_RAND(TG_F64, 1, 2, 3, 2), *b = TT_RAND(TG_F64, 1, 3, 2);
    tg_tensor *L = layer_loss(tape, x, W, b);
    ((double *)tg_tensor_data(W))[1] += 0.5; /* an SGD step before backward: a classic mistake */
    cr_expect_eq(tg_backward(tape, L, NULL), TG_EMODIFIED);
    tt_expect_error(TG_EMODIFIED, "tensor of shape (3,2) that matmul (node 0) saved for backward was modified");
    /* tanh saves its output: writing through an op output is caught too */
    tg_tape_reset(tape);
    tg_tensor *h = tg_tanh(tape, W);
    L = tg_sum(tape, h);
    ((double *)tg_tensor_data(h))[0] = 0;
    cr_expect_eq(tg_backward(tape, L, NULL), TG_EMODIFIED);
    tt_expect_error(TG_EMODIFIED, "tanh (node 0)");
    /* with the checks off the write goes unnoticed, which is what the switch is for */
    tg_tape_reset(tape);
    tg_tape_set_checks(tape, 0);
    cr_expect_eq(tg_tape_checks(tape), 0u);
    L = layer_loss(tape, x, W, b);
    ((double *)tg_tensor_data(W))[1] += 0.5;
    cr_expect_eq(tg_backward(tape, L, NULL), TG_OK);
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(W), tg_tensor_free(b);
}

/* x -> tanh(h W) eight times: W is saved by eight matmuls, each h by its tanh and the next matmul. */
static tg_tensor *chain(tg_tape *tape, tg_tensor *x, tg_tensor *W, int write_W_at) {
    tg_tensor *h = x;
    for (int t = 0; t < 8; t++) {
        if (t == write_W_at) ((double *)tg_tensor_data(W))[4] += 1e-9;
        h = tg_tanh(tape, tg_matmul(tape, h, W));
    }
    return tg_sum(tape, h);
}

Test(tape, a_tensor_saved_by_many_nodes_is_hashed_once_each_way_and_still_checked) {
    tg_tape *tape = tg_tape_new(), *unchecked = tg_tape_new();
    tg_tape_set_checks(unchecked, 0);
    tg_tensor *x = TT_RAND(TG_F64, 0, 1, 4, 3), *W = TT_RAND(TG_F64, 1, 2, 3, 3);
    /* 24 saved slots, 10 tensors: x, W and the eight tanh outputs */
    tg_tensor *L = chain(tape, x, W, -1);
    cr_expect_eq(tg__tape_hashes(tape), 10);
    cr_assert_eq(tg_backward(tape, L, NULL), TG_OK, "%s", tg_last_error());
    cr_expect_eq(tg__tape_hashes(tape), 20);
    /* the gradients are those of a tape that checks nothing */
    double want[9];
    memcpy(want, tg_tensor_grad(W), sizeof want);
    tg_zero_grad(W);
    cr_assert_eq(tg_backward(unchecked, chain(unchecked, x, W, -1), NULL), TG_OK);
    cr_expect_eq(tg__tape_hashes(unchecked), 0);
    for (int i = 0; i < 9; i++) cr_expect_eq(((double *)tg_tensor_grad(W))[i], want[i], "dW[%d]", i);
    /* a write after all eight saves, or between two of them, is caught and blamed on the first saver */
    for (int at = 8; at >= 3; at -= 5) {
        tg_tape_reset(tape);
        L = chain(tape, x, W, at);
        if (at == 8) ((double *)tg_tensor_data(W))[4] += 1e-9;
        cr_expect_eq(tg_backward(tape, L, NULL), TG_EMODIFIED, "write before step %d", at);
        tt_expect_error(TG_EMODIFIED, "tensor of shape (3,3) that matmul (node 0) saved for backward was modified");
    }
    /* a new recording hashes afresh: the table forgets the last one's fingerprints */
    tg_tape_reset(tape);
    L = chain(tape, x, W, -1);
    cr_expect_eq(tg__tape_hashes(tape), 10);
    cr_expect_eq(tg_backward(tape, L, NULL), TG_OK, "%s", tg_last_error());
    tg_tape_free(tape), tg_tape_free(unchecked);
    tg_tensor_free(x), tg_tensor_free(W);
}

/* 40 steps of h = tanh(0.9 h) on (32,32): backward's gradients of the 80 intermediates are done with one
   node after another, so a few 8 KiB blocks serve them all; a retained one keeps its own. */
Test(tape, backward_reuses_the_blocks_of_gradients_it_is_done_with) {
    const int64_t block = 32 * 32 * (int64_t)sizeof(double);
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = TT_RAND(TG_F64, 1, 3, 32, 32), *h = x, *mid = NULL;
    for (int t = 0; t < 40; t++) {
        h = tg_tanh(tape, tg_scale(tape, h, 0.9));
        if (t == 19) mid = h;
    }
    tg_tensor *L = tg_sum(tape, h);
    cr_assert_eq(tg_retain_grad(tape, mid), TG_OK);
    int64_t forward = tg_tape_memory(tape);
    cr_assert_eq(tg_backward(tape, L, NULL), TG_OK, "%s", tg_last_error());
    int64_t used = tg_tape_memory(tape) - forward;
    cr_expect(used <= 5 * block, "backward took %lld bytes, %.1f blocks of 8 KiB", (long long)used,
              (double)used / (double)block);
    /* the retained gradient is dL/dmid: the gradient of the last 20 steps run from a copy of mid */
    tg_tensor *y = tg_param_new(TG_F64, 2, TT_SHAPE(32, 32));
    memcpy(tg_tensor_data(y), tg_tensor_data(mid), (size_t)block);
    double *want = tg_tensor_grad(y), *got = tg_tensor_grad(mid);
    tg_tape *other = tg_tape_new();
    h = y;
    for (int t = 20; t < 40; t++) h = tg_tanh(other, tg_scale(other, h, 0.9));
    cr_assert_eq(tg_backward(other, tg_sum(other, h), NULL), TG_OK);
    for (int i = 0; i < 32 * 32; i++) cr_expect_eq(got[i], want[i], "dL/dmid[%d]", i);
    tg_tape_free(tape), tg_tape_free(other);
    tg_tensor_free(x), tg_tensor_free(y);
}

/* A layer's private intermediates go back to the tape once consumed, unless backward needs them. */
Test(tape, release_frees_only_what_backward_does_not_need) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = TT_RAND(TG_F64, 1, 4, 8, 8), *leaf = TT_RAND(TG_F64, 0, 5, 8, 8);
    tg_tensor *saved_out = tg_tanh(tape, x);                /* tanh saves its output */
    tg_tensor *y = tg_add(tape, x, x), *z = tg_mul(tape, y, x); /* mul saves y */
    tg_tensor *constant = tg_add(tape, leaf, leaf);         /* never recorded */
    tg_tensor *free_me = tg_add(tape, x, x);                /* recorded, saved by no one */
    void *block = tg_tensor_data(free_me);
    tg__tape_release(tape, saved_out), tg__tape_release(tape, y), tg__tape_release(tape, constant);
    tg__tape_release(tape, free_me);
    cr_expect(tg_tensor_data(saved_out) && tg_tensor_data(y) && tg_tensor_data(constant));
    cr_expect_null(free_me->data);
    /* the block serves the next output of its size */
    tg_tensor *next = tg_add(tape, saved_out, z);
    cr_expect_eq(tg_tensor_data(next), block);
    cr_expect_eq(tg_backward(tape, tg_sum(tape, next), NULL), TG_OK, "%s", tg_last_error());
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(leaf);
}

Test(tape, bad_backward_arguments) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *p = TT_RAND(TG_F64, 1, 1, 2, 3);
    tg_tensor *y = tg_tanh(tape, p);
    tg_clear_error();
    cr_expect_eq(tg_backward(NULL, y, NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_backward: tape is NULL");
    cr_expect_eq(tg_backward(tape, NULL, NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_backward: out is NULL");
    cr_expect_eq(tg_backward(tape, y, NULL), TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "grad_out is NULL but out (2,3) has 6 elements, not 1");
    tg_tensor *g = tg_tensor_new(TG_F64, 2, TT_SHAPE(3, 2)), *g32 = tg_tensor_new(TG_F32, 2, TT_SHAPE(2, 3));
    cr_expect_eq(tg_backward(tape, y, g), TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "grad_out (3,2) does not match out (2,3)");
    cr_expect_eq(tg_backward(tape, y, g32), TG_EDTYPE);
    tt_expect_error(TG_EDTYPE, "grad_out is f32, out is f64");
    tg_tape_free(tape);
    tg_tensor_free(p), tg_tensor_free(g), tg_tensor_free(g32);
}

Test(tape, null_inputs_chain_and_keep_the_first_message) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = TT_RAND(TG_F64, 0, 1, 4, 3), *W = TT_RAND(TG_F64, 1, 2, 5, 2), *b = TT_RAND(TG_F64, 1, 3, 2);
    tg_clear_error();
    tg_tensor *L = layer_loss(tape, x, W, b);
    cr_expect_null(L);
    cr_expect_eq(tg_backward(tape, L, NULL), TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "tg_matmul: inner dimensions differ: (4,3) @ (5,2)");
    cr_expect_null(tg_tanh(tape, NULL));
    tt_expect_error(TG_EINVAL, "tg_tanh: x is NULL");
    cr_expect_null(tg_tanh(NULL, x));
    tt_expect_error(TG_EINVAL, "tg_tanh: tape is NULL");
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(W), tg_tensor_free(b);
}

Test(tape, retain_grad_keeps_an_intermediate_gradient) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *p = TT_RAND(TG_F64, 1, 1, 2, 3);
    tg_tensor *h = tg_tanh(tape, p), *u = tg_tanh(tape, p);
    tg_tensor *y = tg_scale(tape, h, 2.0);
    cr_assert_eq(tg_retain_grad(tape, h), TG_OK);
    cr_assert_eq(tg_retain_grad(tape, u), TG_OK);
    cr_assert_eq(tg_backward(tape, tg_sum(tape, y), NULL), TG_OK);
    cr_assert(tg_tensor_grad(h));
    for (int i = 0; i < 6; i++) cr_expect_eq(((double *)tg_tensor_grad(h))[i], 2.0);
    for (int i = 0; i < 6; i++) cr_expect_eq(((double *)tg_tensor_grad(u))[i], 0.0, "no gradient reads as zeros");
    cr_expect_null(tg_tensor_grad(y), "not retained: gone after backward");
    tg_tensor *c = tg_tensor_new(TG_F64, 1, TT_SHAPE(2));
    cr_expect_eq(tg_retain_grad(tape, c), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_retain_grad: t is not an output of this tape's current recording");
    cr_expect_eq(tg_retain_grad(tape, tg_detach(tape, h)), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "depends on no parameter");
    cr_expect_eq(tg_retain_grad(tape, NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_retain_grad: t is NULL");
    tg_tape_free(tape);
    tg_tensor_free(p), tg_tensor_free(c);
}

Test(tape, print_and_dot_show_the_recording) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = TT_RAND(TG_F64, 0, 1, 4, 3), *W = TT_RAND(TG_F64, 1, 2, 3, 2), *b = TT_RAND(TG_F64, 1, 3, 2);
    cr_assert(layer_loss(tape, x, W, b));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(tg_tape_print(tape, f), TG_OK);
    fclose(f);
    cr_expect(strstr(buf, "tape: 4 nodes"), "%s", buf);
    cr_expect(strstr(buf, "%0    matmul     (leaf(4,3), param(3,2)) -> (4,2)  saved: (4,3) (3,2)"), "%s", buf);
    cr_expect(strstr(buf, "%1    add        (%0, param(2,)) -> (4,2)"), "%s", buf);
    cr_expect(strstr(buf, "%3    sum        (%2) -> ()"), "%s", buf);
    free(buf);
    f = open_memstream(&buf, &len);
    cr_assert_eq(tg_tape_write_dot(tape, f), TG_OK);
    fclose(f);
    cr_expect(strstr(buf, "digraph tape {"), "%s", buf);
    cr_expect(strstr(buf, "n0 -> n1;"), "%s", buf);
    cr_expect(strstr(buf, "label=\"%2 tanh\\n(4,2)\""), "%s", buf);
    cr_expect(strstr(buf, "label=\"param(3,2)\""), "%s", buf);
    free(buf);
    cr_expect_eq(tg_tape_print(NULL, stdout), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_tape_print: tape is NULL");
    cr_expect_eq(tg_tape_write_dot(tape, NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_tape_write_dot: out is NULL");
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(W), tg_tensor_free(b);
}

Test(tape, nonfinite_check_names_the_op_in_forward) {
    tg_tape *tape = tg_tape_new();
    tg_tape_set_checks(tape, TG_CHECK_SAVED | TG_CHECK_NONFINITE);
    tg_tensor *p = TT_RAND(TG_F64, 1, 1, 2, 3), *q = TT_RAND(TG_F64, 1, 2, 3);
    ((double *)tg_tensor_data(q))[1] = INFINITY;
    tg_tensor *h = tg_tanh(tape, p); /* node 0 */
    cr_assert(h);
    cr_expect_null(tg_sub(tape, tg_add(tape, h, q), q)); /* add: inf, at node 1, from the leaf q */
    tt_expect_error(TG_ENONFINITE, "tg_add: non-finite output at node 1: input b of tg_add is a leaf holding Inf "
                    "at element 1");
    /* born inside the op: 0 / 0 of two op outputs */
    tg_tensor *z = tg_sub(tape, h, h);
    cr_assert(z);
    cr_expect_null(tg_div(tape, z, z));
    tt_expect_error(TG_ENONFINITE, "tg_div: non-finite output in forward at node 2 (inputs (2,3), (2,3))");
    tg_tape_free(tape);
    tg_tensor_free(p), tg_tensor_free(q);
}

Test(tape, nonfinite_check_names_the_op_in_backward) {
    tg_tape *tape = tg_tape_new();
    tg_tape_set_checks(tape, TG_CHECK_NONFINITE);
    tg_tensor *p = TT_RAND(TG_F64, 1, 1, 2, 3), *big = TT_RAND(TG_F64, 0, 2, 2, 3);
    ((double *)tg_tensor_data(big))[4] = 1e300;
    /* forward finite (about 1e300), but dL/dtanh = dL/dy * big = 1e300 * 1e300 overflows in mul's backward */
    tg_tensor *y = tg_mul(tape, tg_tanh(tape, p), big); /* tanh node 0, mul node 1 */
    tg_tensor *L = tg_sum(tape, y);
    cr_assert(L, "%s", tg_last_error());
    tg_tensor *g = tg_tensor_new(TG_F64, 0, NULL);
    tg_tensor_set(g, 0, 1e300);
    cr_expect_eq(tg_backward(tape, L, g), TG_ENONFINITE);
    tt_expect_error(TG_ENONFINITE, "mul: non-finite gradient in backward at node 1, for input a (inputs (2,3), (2,3))");
    tg_tape_free(tape);
    tg_tensor_free(p), tg_tensor_free(big), tg_tensor_free(g);
}

Test(tape, a_warm_tape_does_no_malloc_per_op) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = TT_RAND(TG_F32, 0, 1, 64, 32), *W = TT_RAND(TG_F32, 1, 2, 32, 32), *b = TT_RAND(TG_F32, 1, 3, 32);
    for (int step = 0; step < 3; step++) {
        tg__alloc_fail_at(0); /* resets the count */
        tg_tensor *h = x;
        for (int i = 0; i < 200; i++) h = tg_tanh(tape, tg_add(tape, tg_matmul(tape, h, W), b));
        cr_assert_eq(tg_backward(tape, tg_sum(tape, h), NULL), TG_OK, "%s", tg_last_error());
        tg_tape_reset(tape);
        if (step == 2) cr_expect_eq(tg__alloc_count(), 0, "step %d made %lld allocations", step,
                                    (long long)tg__alloc_count());
    }
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(W), tg_tensor_free(b);
}

/* Small tensors fail in forward only (one arena chunk holds everything); large ones make backward
   grow the arena too, so its out-of-memory paths are reached. A retained gradient adds one more. */
static void alloc_failure_loop(int64_t n) {
    tg_tensor *x = TT_RAND(TG_F64, 0, 1, n, n), *W = TT_RAND(TG_F64, 1, 2, n, n), *b = TT_RAND(TG_F64, 1, 3, n);
    int64_t k;
    for (k = 1;; k++) {
        tg_clear_error();
        tg__alloc_fail_at(k);
        tg_tape *tape = tg_tape_new();
        tg_tensor *h = tape ? tg_tanh(tape, tg_add(tape, tg_matmul(tape, x, W), b)) : NULL;
        tg_status st = h ? tg_retain_grad(tape, h) : TG_ENOMEM;
        tg_tensor *L = st ? NULL : tg_sum(tape, tg_tanh(tape, tg_mul(tape, h, h)));
        st = st ? st : tg_backward(tape, L, NULL);
        int64_t used = tg__alloc_count();
        tg__alloc_fail_at(0);
        tg_tape_free(tape);
        /* A pass before the end is a failed doubling that the arena retried at the size needed. */
        if (st == TG_OK && used < k) break;
        if (st == TG_OK) continue;
        cr_expect_eq(st, TG_ENOMEM, "n=%lld k=%lld: %s", (long long)n, (long long)k, tg_last_error());
        cr_expect_eq(tg_last_status(), TG_ENOMEM, "n=%lld k=%lld", (long long)n, (long long)k);
        cr_assert(k < 100);
    }
    cr_expect(k > 3, "n=%lld: only %lld allocation points", (long long)n, (long long)k);
    tg_tensor_free(x), tg_tensor_free(W), tg_tensor_free(b);
}

Test(tape, allocation_failures_report_enomem_and_leak_nothing) {
    alloc_failure_loop(3);
    alloc_failure_loop(300); /* 300 x 300 f64 is 720 KB: the arena needs new chunks in backward */
}

Test(tape, print_and_dot_report_write_failures) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *p = TT_RAND(TG_F64, 1, 1, 2);
    cr_assert(tg_tanh(tape, p));
    FILE *full = fopen("/dev/full", "w");
    cr_assert(full);
    setvbuf(full, NULL, _IONBF, 0); /* unbuffered: each write fails at once, as on a full disk */
    cr_expect_eq(tg_tape_print(tape, full), TG_EIO);
    tt_expect_error(TG_EIO, "tg_tape_print: writing failed");
    clearerr(full);
    cr_expect_eq(tg_tape_write_dot(tape, full), TG_EIO);
    tt_expect_error(TG_EIO, "tg_tape_write_dot: writing failed");
    fclose(full);
    tg_tape_free(tape);
    tg_tensor_free(p);
}

Test(tape, a_long_chain_backpropagates_without_recursion) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *p = TT_RAND(TG_F64, 1, 1, 1);
    tg_tensor *h = p;
    for (int i = 0; i < 200000; i++) h = tg_scale(tape, h, 1.0);
    cr_assert_eq(tg_backward(tape, tg_sum(tape, h), NULL), TG_OK);
    cr_expect_eq(((double *)tg_tensor_grad(p))[0], 1.0);
    tg_tape_free(tape);
    tg_tensor_free(p);
}

Test(tape, an_output_kept_past_a_reset_is_refused_even_when_its_slot_is_taken) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *p = TT_RAND(TG_F64, 1, 1, 3);
    tg_tensor *old = tg_tanh(tape, p); /* the last step's h, kept by mistake */
    tg_tape_reset(tape);
    tg_tensor *fresh = tg_scale(tape, p, 2.0); /* the new recording's first output */
    cr_assert(fresh && fresh != old, "a new recording's outputs never share a header with the last one's");
    cr_expect_null(tg_tanh(tape, old));
    tt_expect_error(TG_ESTATE, "tg_tanh: x is an output of a recording that tg_tape_reset ended");
    cr_expect_eq(tg_backward(tape, old, NULL), TG_ESTATE);
    tt_expect_error(TG_ESTATE, "tape was reset");
    tg_tape_free(tape);
    tg_tensor_free(p);
}

Test(tape, backward_from_a_parameter_leaves_the_recording_usable) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *p = TT_RAND(TG_F64, 1, 1, 3), *q = tg_param_new(TG_F64, 0, NULL);
    tg_tensor *L = tg_sum(tape, tg_tanh(tape, p));
    cr_expect_eq(tg_backward(tape, q, NULL), TG_OK);
    cr_expect_eq(tg_backward(tape, L, NULL), TG_OK, "%s", tg_last_error());
    tg_tape_free(tape);
    tg_tensor_free(p), tg_tensor_free(q);
}

Test(tape, null_arguments_keep_an_earlier_failure) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *a = TT_RAND(TG_F64, 1, 1, 4, 3);
    tg_clear_error();
    cr_expect_null(tg_matmul(tape, a, a));
    cr_expect_eq(tg_tensor_set(NULL, 0, 1.0), TG_ESHAPE);
    cr_expect_eq(tg_tensor_fill_uniform(NULL, 0, 1, NULL), TG_ESHAPE);
    cr_expect_eq(tg_retain_grad(tape, NULL), TG_ESHAPE);
    cr_expect_eq(tg_backward(NULL, NULL, NULL), TG_ESHAPE);
    cr_expect_null(tg_tensor_clone(NULL));
    cr_expect_null(tg_tanh(NULL, a)); /* a failed tg_tape_new hands out NULL too */
    cr_expect_eq(tg_tape_print(NULL, stdout), TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "tg_matmul: inner dimensions differ: (4,3) @ (4,3)");
    tg_tape_free(tape);
    tg_tensor_free(a);
}

/* Custom ops for the DOT and anomaly tests: a copy, whose backward plants a NaN. */
static tg_status copy_forward(tg_tensor *const *in, int n, tg_tensor *out, void *user) {
    (void)n, (void)user;
    memcpy(tg_tensor_data(out), tg_tensor_data(in[0]), (size_t)tg_tensor_numel(out) * sizeof(double));
    return TG_OK;
}
static tg_status nan_backward(tg_tensor *const *in, int n, tg_tensor *out, tg_tensor *gout, void *const *grads,
                              void *user) {
    (void)in, (void)n, (void)out, (void)gout, (void)user;
    if (grads[0]) ((double *)grads[0])[1] += NAN;
    return TG_OK;
}
/* A user's op name is theirs: the DOT file must stay valid whatever it holds. */
static const tg_op_def odd_name = {.name = "my \"op\"\\\n", .shape = tt_same_shape, .forward = copy_forward, .backward = nan_backward};
static const tg_op_def nan_op = {.name = "nanback", .shape = tt_same_shape, .forward = copy_forward, .backward = nan_backward};

Test(tape, dot_escapes_op_names) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *p = TT_RAND(TG_F64, 1, 1, 3);
    cr_assert(tg_custom(tape, &odd_name, &p, 1, NULL));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    tg_tape_write_dot(tape, f);
    fclose(f);
    cr_expect(strstr(buf, "label=\"%0 my \\\"op\\\"\\\\\\n\\n(3,)\""), "%s", buf);
    free(buf);
    tg_tape_free(tape);
    tg_tensor_free(p);
}

Test(tape, nonfinite_check_finds_a_nan_born_in_forward) {
    tg_tape *tape = tg_tape_new();
    tg_tape_set_checks(tape, TG_CHECK_NONFINITE);
    tg_tensor *p = TT_RAND(TG_F64, 1, 1, 2, 2), *q = TT_RAND(TG_F64, 1, 2, 2, 2);
    ((double *)tg_tensor_data(q))[3] = NAN;
    tg_tensor *h = tg_matmul(tape, p, p); /* node 0: finite */
    cr_assert(h);
    cr_expect_null(tg_tanh(tape, tg_mul(tape, h, q))); /* mul is node 1; the NaN comes from the leaf q */
    tt_expect_error(TG_ENONFINITE, "tg_mul: non-finite output at node 1: input b of tg_mul is a leaf holding NaN "
                    "at element 3");
    ((double *)tg_tensor_data(q))[3] = -INFINITY;
    cr_expect_null(tg_scale(tape, q, 2));
    tt_expect_error(TG_ENONFINITE, "tg_scale: non-finite output at node 1: input x of tg_scale is a leaf holding "
                    "-Inf at element 3");
    tg_tape_free(tape);
    tg_tensor_free(p), tg_tensor_free(q);
}

Test(tape, nonfinite_check_finds_a_nan_born_in_backward) {
    tg_tape *tape = tg_tape_new();
    tg_tape_set_checks(tape, TG_CHECK_SAVED | TG_CHECK_NONFINITE);
    tg_tensor *p = TT_RAND(TG_F64, 1, 1, 3);
    tg_tensor *h = tg_tanh(tape, p);                  /* node 0 */
    tg_tensor *y = tg_custom(tape, &nan_op, &h, 1, NULL); /* node 1: backward plants NaN */
    tg_tensor *L = tg_sum(tape, tg_scale(tape, y, 2.0));  /* nodes 2, 3 */
    cr_assert(L);
    cr_expect_eq(tg_backward(tape, L, NULL), TG_ENONFINITE);
    tt_expect_error(TG_ENONFINITE, "nanback: non-finite gradient in backward at node 1, for input 0 (inputs (3,))");
    /* with the check off the NaN reaches the parameter silently: what the check is for */
    tg_tape_reset(tape);
    tg_tape_set_checks(tape, 0);
    h = tg_tanh(tape, p);
    L = tg_sum(tape, tg_custom(tape, &nan_op, &h, 1, NULL));
    cr_expect_eq(tg_backward(tape, L, NULL), TG_OK);
    cr_expect(isnan(((double *)tg_tensor_grad(p))[1]));
    tg_tape_free(tape);
    tg_tensor_free(p);
}

/* T selects of a (N,T,D) tensor, as a TimeRNN makes: backward adds each step into its region of
   one gradient, so memory grows like T, not T^2. */
static int64_t select_memory(int64_t T) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *xs = TT_RAND(TG_F64, 1, 1, 4, T, 8);
    tg_tensor *L = NULL;
    for (int64_t t = 0; t < T; t++) {
        tg_tensor *s = tg_sum(tape, tg_select(tape, xs, 1, t));
        L = L ? tg_add(tape, L, s) : s;
    }
    cr_assert_eq(tg_backward(tape, L, NULL), TG_OK);
    for (int64_t i = 0; i < tg_tensor_numel(xs); i++) cr_assert_eq(((double *)tg_tensor_grad(xs))[i], 1.0);
    int64_t bytes = tg_tape_memory(tape);
    tg_tape_free(tape);
    tg_tensor_free(xs);
    return bytes;
}

Test(tape, select_backward_memory_grows_linearly_in_T) {
    int64_t m64 = select_memory(64), m256 = select_memory(256);
    cr_expect(m256 < 5 * m64, "T=64: %lld bytes, T=256: %lld bytes (4x the steps should cost about 4x)",
              (long long)m64, (long long)m256);
    cr_expect_eq(tg_tape_memory(NULL), 0);
}

/* ---- no-grad, stale outputs, arguments in the printout, a callback's reason ---- */

Test(tape, with_grad_disabled_ops_compute_and_record_nothing) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *p = TT_RAND(TG_F64, 1, 1, 2, 3);
    cr_expect_eq(tg_tape_grad_enabled(tape), 1);
    tg_tape_set_grad_enabled(tape, 0);
    cr_expect_eq(tg_tape_grad_enabled(tape), 0);
    tg_tensor *y = tg_sum(tape, tg_tanh(tape, p));
    cr_assert(y);
    cr_expect_eq(tg_tape_size(tape), 0);
    cr_expect_eq(tg_tensor_requires_grad(y), 0);
    double want = 0;
    for (int i = 0; i < 6; i++) want += tanh(tg_tensor_get(p, i));
    cr_expect_float_eq(tg_tensor_get(y, 0), want, 1e-15);
    tg_clear_error();
    cr_expect_eq(tg_backward(tape, y, NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_backward: out () depends on no parameter");
    tg_tape_set_grad_enabled(tape, 1); /* on again: the same ops record */
    cr_assert(tg_sum(tape, tg_tanh(tape, p)));
    cr_expect_eq(tg_tape_size(tape), 2);
    tg_tape_set_grad_enabled(NULL, 0);
    cr_expect_eq(tg_tape_grad_enabled(NULL), 0);
    tg_tape_free(tape);
    tg_tensor_free(p);
}

Test(tape, accessors_refuse_an_output_of_an_ended_recording) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *p = TT_RAND(TG_F64, 1, 1, 4);
    tg_tensor *y = tg_scale(tape, p, 2);
    cr_assert(y && tg_tensor_data(y));
    tg_tape_reset(tape);
    tg_clear_error();
    cr_expect_null(tg_tensor_data(y));
    tt_expect_error(TG_ESTATE, "tg_tensor_data: t is an output of a recording that tg_tape_reset ended");
    cr_expect_null(tg_tensor_grad(y));
    tt_expect_error(TG_ESTATE, "tg_tensor_grad: t is an output");
    cr_expect(isnan(tg_tensor_get(y, 0)));
    tt_expect_error(TG_ESTATE, "tg_tensor_get: t is an output");
    cr_expect_eq(tg_tensor_set(y, 0, 1), TG_ESTATE);
    tt_expect_error(TG_ESTATE, "tg_tensor_set: t is an output");
    cr_expect_null(tg_tensor_clone(y));
    tt_expect_error(TG_ESTATE, "tg_tensor_clone: t is an output");
    /* grad_out of backward is refused the same way */
    tg_tensor *out = tg_scale(tape, p, 3);
    cr_expect_eq(tg_backward(tape, out, y), TG_ESTATE);
    tt_expect_error(TG_ESTATE, "tg_backward: grad_out is an output of a recording that tg_tape_reset ended");
    tg_tape_free(tape);
    tg_tensor_free(p);
}

/* Two resets on, an output's header may serve the current recording; when it serves an intermediate that
   a layer gave its memory back (TimeRNN's input projection, the first header of the recording), the old
   output is refused rather than read through its NULL data (the fuzzer found the read). */
Test(tape, an_output_two_resets_old_over_a_released_intermediate_is_refused) {
    tg_tensor *Wx = TT_RAND(TG_F64, 1, 1, 3, 2), *Wh = TT_RAND(TG_F64, 1, 2, 2, 2), *b = TT_RAND(TG_F64, 1, 3, 2);
    tg_tensor *xs = TT_RAND(TG_F64, 0, 4, 2, 3, 3);
    tg_time_rnn *layer = tg_time_rnn_new(Wx, Wh, b, 0);
    tg_tape *tape = tg_tape_new();
    tg_tensor *old = tg_scale(tape, xs, 2); /* (2,3,3), as the projection P will be (2,3,2): any shape */
    cr_assert(old && layer);
    tg_tape_reset(tape);
    tg_tape_reset(tape);
    cr_assert(tg_time_rnn_forward(tape, layer, xs), "%s", tg_last_error());
    tg_clear_error();
    cr_expect_null(tg_sum(tape, old));
    tt_expect_error(TG_ESTATE, "tg_sum: x is an output of a recording that tg_tape_reset ended");
    cr_expect_null(tg_tensor_data(old));
    tt_expect_error(TG_ESTATE, "tg_tensor_data: t is an output of a recording that tg_tape_reset ended");
    tg_tape_free(tape);
    tg_time_rnn_free(layer);
    tg_tensor_free(Wx), tg_tensor_free(Wh), tg_tensor_free(b), tg_tensor_free(xs);
}

Test(tape, print_and_dot_show_each_nodes_arguments) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = TT_RAND(TG_F64, 1, 1, 2, 5, 3);
    tg_tensor *y = tg_scale(tape, tg_select(tape, tg_slice(tape, x, -2, 1, 4), 1, 2), 0.5);
    cr_assert(y, "%s", tg_last_error());
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    tg_tape_print(tape, f);
    tg_tape_write_dot(tape, f);
    fclose(f);
    cr_expect(strstr(buf, "%0    slice      (param(2,5,3)) -> (2,3,3)  axis=1 start=1 stop=4\n"), "%s", buf);
    cr_expect(strstr(buf, "%1    select     (%0) -> (2,3)  axis=1 index=2\n"), "%s", buf);
    cr_expect(strstr(buf, "%2    scale      (%1) -> (2,3)  alpha=0.5\n"), "%s", buf);
    cr_expect(strstr(buf, "label=\"%0 slice\\n(2,3,3)\\naxis=1 start=1 stop=4\""), "%s", buf);
    free(buf);
    tg_tape_free(tape);
    tg_tensor_free(x);
}

static tg_status reason_forward(tg_tensor *const *in, int n, tg_tensor *out, void *user) {
    (void)in, (void)n, (void)out, (void)user;
    return tg_set_error(TG_EINVAL, "weights must be positive, got %g", -2.0);
}
static tg_status silent_backward(tg_tensor *const *in, int n, tg_tensor *out, tg_tensor *gout, void *const *grads,
                                 void *user) {
    (void)in, (void)n, (void)out, (void)gout, (void)grads, (void)user;
    return TG_ENOMEM;
}
static tg_status reason_backward(tg_tensor *const *in, int n, tg_tensor *out, tg_tensor *gout, void *const *grads,
                                 void *user) {
    (void)in, (void)n, (void)out, (void)gout, (void)grads, (void)user;
    return tg_set_error(TG_ESHAPE, "grad of %d inputs", n);
}

Test(tape, a_callbacks_reason_reaches_the_caller) {
    static const tg_op_def reasoned = {.name = "checked", .shape = tt_same_shape, .forward = reason_forward, .backward = silent_backward};
    static const tg_op_def silent = {.name = "quiet", .shape = tt_same_shape, .forward = copy_forward, .backward = silent_backward};
    static const tg_op_def loud = {.name = "loud", .shape = tt_same_shape, .forward = copy_forward, .backward = reason_backward};
    tg_tape *tape = tg_tape_new();
    tg_tensor *p = TT_RAND(TG_F64, 1, 1, 3);
    /* a stale failure of the same status must not pass for the callback's reason */
    tg_set_error(TG_ENOMEM, "an old failure");
    cr_expect_eq(tg_last_status(), TG_ENOMEM);
    cr_expect_null(tg_custom(tape, &reasoned, &p, 1, NULL));
    tt_expect_error(TG_EINVAL, "checked: forward failed: weights must be positive, got -2");
    tg_tensor *y = tg_custom(tape, &silent, &p, 1, NULL);
    cr_assert(y);
    tg_set_error(TG_ENOMEM, "an old failure");
    cr_expect_eq(tg_backward(tape, tg_sum(tape, y), NULL), TG_ENOMEM);
    tt_expect_error(TG_ENOMEM, "quiet: backward failed with TG_ENOMEM");
    tg_tape_reset(tape);
    y = tg_custom(tape, &loud, &p, 1, NULL);
    cr_expect_eq(tg_backward(tape, tg_sum(tape, y), NULL), TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "loud: backward failed: grad of 1 inputs");
    cr_expect_eq(tg_set_error(TG_EIO, NULL), TG_EIO);
    tt_expect_error(TG_EIO, "");
    tg_tape_free(tape);
    tg_tensor_free(p);
}

Test(tape, value_ops_refuse_indices) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *i = tg_tensor_new(TG_I64, 1, TT_SHAPE(3)), *p = TT_RAND(TG_F64, 1, 1, 3);
    tg_clear_error();
    cr_expect_null(tg_tanh(tape, i));
    tt_expect_error(TG_EDTYPE, "tg_tanh: x is i64 (indices); this op takes f32 or f64 values");
    cr_expect_null(tg_add(tape, p, i));
    tt_expect_error(TG_EDTYPE, "tg_add: b is i64 (indices); this op takes f32 or f64 values");
    cr_expect_null(tg_stack(tape, (tg_tensor *[]){p, i}, 2, 0));
    tt_expect_error(TG_EDTYPE, "tg_stack: input 1 is i64");
    cr_expect_null(tg_custom(tape, &(tg_op_def){.name = "c", .shape = tt_same_shape, .forward = copy_forward, .backward = silent_backward}, &i, 1, NULL));
    tt_expect_error(TG_EDTYPE, "c: input 0 is i64");
    tg_tape_free(tape);
    tg_tensor_free(i), tg_tensor_free(p);
}

/* ---- reliability: stale tensors everywhere, the arena under memory pressure ---- */

static tg_tensor *f_sum(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    (void)ctx;
    return tg_sum(tape, in[0]);
}
static tg_status ref_ones(tg_tensor *const *in, const tg_tensor *gout, tg_tensor *const *grads, void *ctx) {
    (void)in, (void)gout, (void)ctx;
    for (int64_t i = 0; grads[0] && i < tg_tensor_numel(grads[0]); i++) tg_tensor_set(grads[0], i, 1.0);
    return TG_OK;
}
static const tg_op_def copy_op = {.name = "copy", .shape = tt_same_shape, .forward = copy_forward, .backward = silent_backward};

/* call must fail with TG_ESTATE, naming fn and the argument, before it reads a byte of the data. */
#define EXPECT_STALE(call, fn_what)                                                                \
    do {                                                                                           \
        tg_clear_error();                                                                          \
        (void)(call);                                                                              \
        tt_expect_error(TG_ESTATE, fn_what " is an output of a recording that tg_tape_reset ended"); \
    } while (0)

/* The reproducer: a (512,512) f64 output is 2 MiB, past the first chunk, so the reset that ends
   its recording merges the chunks and frees its data. Every public function taking a tensor must refuse
   it (ASan and valgrind see the read of freed memory otherwise; a plain build copied garbage with TG_OK). */
Test(tape, every_public_function_refuses_an_output_of_an_ended_recording) {
    tg_tensor *p = TT_RAND(TG_F64, 1, 1, 512, 512), *q = TT_RAND(TG_F64, 1, 2, 512, 512);
    tg_tensor *Wx = TT_RAND(TG_F64, 1, 3, 4, 512), *b = TT_RAND(TG_F64, 1, 4, 512);
    tg_tensor *idx = tg_tensor_new(TG_I64, 1, TT_SHAPE(512));
    tg_tape *tape = tg_tape_new();
    tg_tensor *stale = tg_scale(tape, p, 2);
    cr_assert(stale);
    tg_tape_reset(tape);
    tg_tensor *out = tg_scale(tape, p, 3);
    cr_assert(out);
    tg_time_rnn *L = tg_time_rnn_new(Wx, p, b, 1);
    tg_params *ps = tg_params_new();
    cr_assert(L && ps);
    uint64_t seed = 1;
    tg_rng rng;
    tg_rng_seed(&rng, 1);
    char path[] = "/tmp/tg_stale_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    FILE *devnull = fopen("/dev/null", "w");

    EXPECT_STALE(tg_backward(tape, out, stale), "tg_backward: grad_out");
    EXPECT_STALE(tg_time_rnn_set_state(L, stale), "tg_time_rnn_set_state: h");
    EXPECT_STALE(tg_time_rnn_forward(tape, L, stale), "tg_time_rnn_forward: xs");
    EXPECT_STALE(tg_time_rnn_new(Wx, stale, b, 0), "tg_time_rnn_new: Wh");
    EXPECT_STALE(tg_rnn_cell(tape, Wx, stale, Wx, p, b), "tg_rnn_cell: h_prev");
    EXPECT_STALE(tg_time_rnn_ref(stale, NULL, Wx, p, b, NULL, q, NULL, NULL, NULL, NULL, NULL), "tg_time_rnn_ref: xs");
    tg_tensor *xs = TT_RAND(TG_F64, 0, 5, 2, 1, 4), *hs = tg_tensor_new(TG_F64, 3, TT_SHAPE(2, 1, 512));
    EXPECT_STALE(tg_time_rnn_ref(xs, stale, Wx, p, b, NULL, hs, NULL, NULL, NULL, NULL, NULL), "tg_time_rnn_ref: h0");
    EXPECT_STALE(tg_tensor_clone(stale), "tg_tensor_clone: t");
    EXPECT_STALE(tg_tensor_hash(stale), "tg_tensor_hash: t");
    EXPECT_STALE(tg_tensor_data(stale), "tg_tensor_data: t");
    EXPECT_STALE(tg_tensor_get(stale, 0), "tg_tensor_get: t");
    EXPECT_STALE(tg_tensor_set(stale, 0, 1), "tg_tensor_set: t");
    EXPECT_STALE(tg_tensor_fill_uniform(stale, 0, 1, &seed), "tg_tensor_fill_uniform: t");
    EXPECT_STALE(tg_tensor_fill_normal(stale, 0, 1, &rng), "tg_tensor_fill_normal: t");
    EXPECT_STALE(tg_init_xavier(stale, &rng), "tg_init_xavier: t");
    EXPECT_STALE(tg_tensor_print(stale, devnull), "tg_tensor_print: t");
    EXPECT_STALE(tg_save_npy(path, stale), "tg_save_npy: t");
    EXPECT_STALE(tg_save_safetensors(path, (const char *[]){"p", "s"}, (tg_tensor *[]){p, stale}, 2),
                 "tg_save_safetensors: tensors[1]");
    EXPECT_STALE(tg_params_add(ps, "s", stale), "tg_params_add: param");
    EXPECT_STALE(tg_gradcheck(f_sum, NULL, &stale, 1, NULL, NULL), "tg_gradcheck: inputs[0]");
    EXPECT_STALE(tg_gradcheck_ref(f_sum, ref_ones, NULL, &stale, 1, NULL, NULL, NULL), "tg_gradcheck_ref: inputs[0]");
    EXPECT_STALE(tg_gradcheck_nodes(tape, stale, NULL, NULL), "tg_gradcheck_nodes: out");
    EXPECT_STALE(tg_retain_grad(tape, stale), "tg_retain_grad: t");
    EXPECT_STALE(tg_tanh(tape, stale), "tg_tanh: x");
    EXPECT_STALE(tg_matmul(tape, p, stale), "tg_matmul: b");
    EXPECT_STALE(tg_stack(tape, (tg_tensor *[]){p, stale}, 2, 0), "tg_stack: input 1");
    EXPECT_STALE(tg_embedding(tape, stale, idx), "tg_embedding: table");
    EXPECT_STALE(tg_cross_entropy(tape, stale, idx, -1), "tg_cross_entropy: logits");
    EXPECT_STALE(tg_custom(tape, &copy_op, &stale, 1, NULL), "copy: input 0");
    /* out itself is told apart by tg_backward's own words */
    tg_clear_error();
    cr_expect_eq(tg_backward(tape, stale, NULL), TG_ESTATE);
    tt_expect_error(TG_ESTATE, "tg_backward: the tape was reset since out was recorded");
    cr_expect_eq(tg_params_count(ps), 0, "a refused parameter is not added");

    fclose(devnull);
    unlink(path);
    tg_params_free(ps);
    tg_time_rnn_free(L);
    tg_tape_free(tape);
    tg_tensor_free(p), tg_tensor_free(q), tg_tensor_free(Wx), tg_tensor_free(b), tg_tensor_free(idx);
    tg_tensor_free(xs), tg_tensor_free(hs);
}

/* Doubling is the arena's preference, not its need: 720 KB outputs, two per 1 MiB chunk only barely not,
   so the second wants a 2 MiB chunk. When that fails, a chunk of the size needed still fits. */
Test(tape, a_failed_doubling_retries_at_the_size_needed) {
    tg_tensor *p = TT_RAND(TG_F64, 1, 1, 300, 300);
    tg_tape *tape = tg_tape_new();
    cr_assert(tg_scale(tape, p, 2), "%s", tg_last_error()); /* the first chunk, 1 MiB */
    tg_clear_error();
    tg__alloc_fail_at(1); /* the next allocation is the doubled chunk */
    tg_tensor *y = tg_scale(tape, p, 3);
    int64_t calls = tg__alloc_count();
    tg__alloc_fail_at(0);
    cr_assert(y, "the retry failed: %s", tg_last_error());
    cr_expect_eq(calls, 2, "%lld allocations: want the doubled chunk, then the retry", (long long)calls);
    for (int64_t i = 0; i < 300 * 300; i += 997) cr_expect_eq(tg_tensor_get(y, i), 3 * tg_tensor_get(p, i));
    cr_expect_eq(tg_backward(tape, tg_sum(tape, y), NULL), TG_OK, "%s", tg_last_error());
    cr_expect_eq(((double *)tg_tensor_grad(p))[7], 3.0);
    tg_tape_free(tape);
    tg_tensor_free(p);
}

/* (M,0) @ (0,N) is an (M,N) of zeros, allocated and filled in full: a size above the machine's memory is
   TG_ENOMEM from the allocator, where an overcommitting kernel would grant it and the OOM killer end the
   process during the fill. The machine is said to have 64 MiB so that the 128 MiB request is refused
   without being one that a real machine cannot grant. */
Test(tape, a_request_above_the_machines_memory_is_enomem) {
    tg_tensor *a = tg_param_new(TG_F64, 2, TT_SHAPE(4096, 0)), *b = tg_param_new(TG_F64, 2, TT_SHAPE(0, 4096));
    tg_tape *tape = tg_tape_new();
    tg__alloc_set_memory((uint64_t)64 << 20);
    tg_clear_error();
    tg_tensor *y = tg_matmul(tape, a, b);
    tg__alloc_set_memory(0);
    cr_expect_null(y);
    tt_expect_error(TG_ENOMEM, "tg_matmul: out of memory for an output of 16777216 elements");
    /* the same from a reduction over an empty axis, which fuzz_ops found asking for 4 GiB */
    tg_tensor *e = tg_tensor_new(TG_F64, 3, TT_SHAPE(4096, 4096, 0));
    tg__alloc_set_memory((uint64_t)64 << 20);
    y = tg_mean_axis(tape, e, 2, 0);
    tg__alloc_set_memory(0);
    cr_expect_null(y);
    tt_expect_error(TG_ENOMEM, "tg_mean_axis: out of memory for an output of 16777216 elements");
    tg_tensor_free(e);
    cr_expect_null(tg_tensor_new(TG_F32, 2, TT_SHAPE(1 << 20, 1 << 20)), "4 TiB, on the real machine");
    tt_expect_error(TG_ENOMEM, "tg_tensor_new: out of memory for 1099511627776 elements");
    /* what fits is still given */
    tg__alloc_set_memory((uint64_t)64 << 20);
    tg_tensor *c = tg_tensor_new(TG_F64, 2, TT_SHAPE(1024, 0));
    y = tg_matmul(tape, c, b);
    tg__alloc_set_memory(0);
    cr_expect(y, "%s", tg_last_error());
    cr_expect_eq(tg_tensor_numel(y), 1024 * 4096);
    tg_tape_free(tape);
    tg_tensor_free(a), tg_tensor_free(b), tg_tensor_free(c);
}

/* When a saved tensor is verified: indices and whatever a custom op saved before the backward that reads
   them (an index written out of range must never be followed, a user's backward may index with values),
   f32/f64 values a built-in op saved right after it, while they are in cache (tg_backward's header says
   so: that node's contribution is then in the gradients). */
static int ran_backward;
static tg_status noting_backward(tg_tensor *const *in, int n, tg_tensor *out, tg_tensor *gout, void *const *grads,
                                 void *user) {
    (void)in, (void)n, (void)out, (void)gout, (void)grads, (void)user;
    ran_backward = 1;
    return TG_OK;
}
Test(tape, indices_and_custom_ops_are_verified_before_their_backward_values_after) {
    static const tg_op_def noting = {.name = "noting", .shape = tt_same_shape, .forward = copy_forward, .backward = noting_backward};
    tg_tape *tape = tg_tape_new();
    tg_tensor *table = TT_RAND(TG_F64, 1, 1, 4, 2), *w = TT_RAND(TG_F64, 0, 2, 3);
    tg_tensor *idx = tg_tensor_from(TG_I64, 1, (int64_t[]){3}, (int64_t[]){1, 3, 1});
    cr_assert(tape && idx);
    /* an index moved out of range: refused before embedding's backward scatters by it */
    tg_tensor *y = tg_embedding(tape, table, idx);
    cr_assert(y, "%s", tg_last_error());
    ((int64_t *)tg_tensor_data(idx))[1] = 1 << 30;
    cr_expect_eq(tg_backward(tape, tg_sum(tape, y), NULL), TG_EMODIFIED);
    tt_expect_error(TG_EMODIFIED, "that embedding (node 0) saved");
    for (int i = 0; i < 8; i++) cr_expect_eq(((double *)tg_tensor_grad(table))[i], 0, "grad %d", i);
    /* a custom op: its backward never runs on a modified input */
    tg_tape_reset(tape);
    tg_tensor *x = TT_RAND(TG_F64, 1, 3, 3);
    y = tg_custom(tape, &noting, &x, 1, NULL);
    cr_assert(y, "%s", tg_last_error());
    ((double *)tg_tensor_data(x))[2] += 1;
    ran_backward = 0;
    cr_expect_eq(tg_backward(tape, tg_sum(tape, y), NULL), TG_EMODIFIED);
    tt_expect_error(TG_EMODIFIED, "that noting (node 0) saved");
    cr_expect_eq(ran_backward, 0, "the custom backward ran on a modified input");
    /* a built-in op's saved values: verified after its backward, which has added d(sum x*w)/dx = w */
    tg_tape_reset(tape);
    tg_zero_grad(x);
    y = tg_mul(tape, x, w);
    cr_assert(y, "%s", tg_last_error());
    ((double *)tg_tensor_data(w))[0] = 5;
    cr_expect_eq(tg_backward(tape, tg_sum(tape, y), NULL), TG_EMODIFIED);
    tt_expect_error(TG_EMODIFIED, "that mul (node 0) saved");
    cr_expect_eq(((double *)tg_tensor_grad(x))[0], 5);
    tg_tape_free(tape);
    tg_tensor_free(table), tg_tensor_free(w), tg_tensor_free(idx), tg_tensor_free(x);
}

/* Names: a leaf is drawn once, by its name where it has one, with an edge to every node that uses it. */
Test(tape, a_leaf_used_by_several_nodes_is_one_named_node_in_the_drawing) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = TT_RAND(TG_F64, 1, 1, 2, 3), *W = TT_RAND(TG_F64, 1, 2, 3, 3);
    cr_assert_eq(tg_tensor_set_name(W, "W \"shared\""), TG_OK);
    tg_tensor *h = x;
    for (int t = 0; t < 4; t++) h = tg_matmul(tape, h, W);
    cr_assert(tg_add(tape, h, tg_mul(tape, x, x)), "%s", tg_last_error()); /* a leaf used twice by one node */
    char *buf = tt_tape_text(tape, 1);
    cr_expect(strstr(buf, "  l0_1 [shape=ellipse, label=\"W \\\"shared\\\"\\n(3,3)\"];\n"), "%s", buf);
    cr_expect(strstr(buf, "  l0_0 [shape=ellipse, label=\"param(2,3)\"];\n"), "%s", buf);
    int ellipses = 0, w_edges = 0;
    for (const char *p = buf; (p = strstr(p, "shape=ellipse")); p++) ellipses++;
    for (const char *p = buf; (p = strstr(p, "l0_1 -> n")); p++) w_edges++;
    cr_expect_eq(ellipses, 2, "%s", buf);
    cr_expect_eq(w_edges, 4, "%s", buf);
    cr_expect(strstr(buf, "  l0_0 -> n4;\n  l0_0 -> n4;\n"), "%s", buf);
    free(buf);
    buf = tt_tape_text(tape, 0);
    cr_expect(strstr(buf, "%0    matmul     (param(2,3), W \"shared\"(3,3))"), "%s", buf);
    cr_expect(strstr(buf, "%3    matmul     (%2, W \"shared\"(3,3))"), "%s", buf);
    free(buf);
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(W);
}
