/* Custom ops as first-class layers: tensors kept from forward for backward, scratch from the tape, input
   names in messages, typed data access. The LayerNorm here keeps its mean, 1/std and x-hat. */
#include <math.h>
#include "tg_testutil.h"

/* ---- LayerNorm over the last axis: x (N,D), gamma (D,), beta (D,) -> (N,D) --------------------- */

static const char *const ln_names[] = {"x", "gamma", "beta"};

static tg_status ln_shape(tg_tensor *const *in, int n, void *user, int *ndim, int64_t *shape) {
    (void)n, (void)user;
    int d = tg_tensor_ndim(in[0]);
    int64_t D = d ? tg_tensor_shape(in[0])[d - 1] : 0;
    for (int i = 1; i < 3; i++)
        if (tg_tensor_ndim(in[i]) != 1 || tg_tensor_shape(in[i])[0] != D)
            return tg_set_error(TG_ESHAPE, "layernorm: input %s is (%lld,), want (%lld,)", ln_names[i],
                                (long long)tg_tensor_shape(in[i])[0], (long long)D);
    *ndim = d;
    memcpy(shape, tg_tensor_shape(in[0]), (size_t)d * sizeof *shape);
    return TG_OK;
}

typedef struct {
    int bug;              /* 1: backward drops the mean(dxhat) term; 2: forward keeps nothing */
    tg_tensor *kept[3];   /* what forward kept, for the test that writes into one */
    void *scratch[2];     /* scratch addresses forward got, for the test of reuse */
} ln_ctx;

static tg_status ln_forward(tg_tensor *const *in, int n, tg_tensor *out, void *user) {
    (void)n;
    ln_ctx *c = user;
    const double *x = tg_tensor_f64(in[0]), *g = tg_tensor_f64(in[1]), *b = tg_tensor_f64(in[2]);
    double *y = tg_tensor_f64(out);
    if (!x || !g || !b || !y) return TG_EDTYPE;
    int64_t D = tg_tensor_shape(in[1])[0], N = D ? tg_tensor_numel(in[0]) / D : 0;
    if (c && c->bug == 2) return TG_OK;
    tg_tensor *mean = tg_custom_keep(out, 2, (int64_t[]){N, 1}), *rstd = tg_custom_keep(out, 2, (int64_t[]){N, 1});
    tg_tensor *xhat = tg_custom_keep(out, 2, (int64_t[]){N, D});
    double *tmp = tg_custom_scratch(out, (size_t)D * sizeof *tmp), *tmp2 = tg_custom_scratch(out, 8);
    if (!mean || !rstd || !xhat || !tmp || !tmp2) return tg_last_status();
    if (c) c->kept[0] = mean, c->kept[1] = rstd, c->kept[2] = xhat, c->scratch[0] = tmp, c->scratch[1] = tmp2;
    double *mu = tg_tensor_f64(mean), *rs = tg_tensor_f64(rstd), *xh = tg_tensor_f64(xhat);
    for (int64_t r = 0; r < N; r++) {
        const double *xr = x + r * D;
        double m = 0, v = 0;
        for (int64_t j = 0; j < D; j++) m += xr[j];
        m /= (double)D;
        for (int64_t j = 0; j < D; j++) tmp[j] = xr[j] - m, v += tmp[j] * tmp[j];
        mu[r] = m, rs[r] = 1 / sqrt(v / (double)D + 1e-5);
        for (int64_t j = 0; j < D; j++) xh[r * D + j] = tmp[j] * rs[r], y[r * D + j] = g[j] * xh[r * D + j] + b[j];
    }
    return TG_OK;
}

static tg_status ln_backward(tg_tensor *const *in, int n, tg_tensor *out, tg_tensor *grad_out, void *const *grads,
                             void *user) {
    (void)n;
    ln_ctx *c = user;
    tg_tensor *rstd = tg_custom_kept(out, 1), *xhat = tg_custom_kept(out, 2);
    if (!rstd || !xhat || !tg_custom_kept(out, 0)) return tg_last_status();
    const double *rs = tg_tensor_f64(rstd), *xh = tg_tensor_f64(xhat), *gy = tg_tensor_f64(grad_out);
    const double *g = tg_tensor_f64(in[1]);
    double *dx = tg_grad_f64(in[0], grads[0]), *dg = tg_grad_f64(in[1], grads[1]), *db = tg_grad_f64(in[2], grads[2]);
    int64_t D = tg_tensor_shape(in[1])[0], N = D ? tg_tensor_numel(in[0]) / D : 0;
    double *dxh = tg_custom_scratch(out, (size_t)D * sizeof *dxh);
    if (!dxh) return tg_last_status();
    for (int64_t r = 0; r < N; r++) {
        double s1 = 0, s2 = 0;
        for (int64_t j = 0; j < D; j++) {
            int64_t k = r * D + j;
            if (dg) dg[j] += gy[k] * xh[k];
            if (db) db[j] += gy[k];
            dxh[j] = gy[k] * g[j], s1 += dxh[j], s2 += dxh[j] * xh[k];
        }
        if (c && c->bug == 1) s1 = 0;
        for (int64_t j = 0; dx && j < D; j++)
            dx[r * D + j] += rs[r] * (dxh[j] - s1 / (double)D - xh[r * D + j] * s2 / (double)D);
    }
    return TG_OK;
}

static const tg_op_def layernorm = {.name = "layernorm", .shape = ln_shape, .forward = ln_forward,
                                    .backward = ln_backward, .input_names = ln_names};

static tg_tensor *ln_fn(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    return tg_custom(tape, &layernorm, in, 3, ctx);
}

/* Two layer norms and a tanh between: the first's output feeds the second, so each node's check sees a
   custom op fed by an op. */
static tg_tensor *ln_block(tg_tape *tape, tg_tensor *const *in, void *ctx) {
    tg_tensor *h = tg_tanh(tape, ln_fn(tape, in, ctx));
    return tg_sum(tape, tg_mul(tape, ln_fn(tape, (tg_tensor *[]){h, in[1], in[2]}, ctx), h));
}

static void ln_inputs(tg_tensor **in, int64_t N, int64_t D, uint64_t seed) {
    in[0] = TT_RAND(TG_F64, 1, seed, N, D);
    in[1] = TT_RAND(TG_F64, 1, seed + 1, D);
    in[2] = TT_RAND(TG_F64, 1, seed + 2, D);
}

static void free3(tg_tensor **in) {
    for (int i = 0; i < 3; i++) tg_tensor_free(in[i]);
}

Test(custom, layernorm_with_kept_tensors_passes_both_gradchecks) {
    /* N = 1 and D = 1 too: a single row, and a row whose xhat is 0 */
    int64_t shapes[][2] = {{4, 5}, {1, 3}, {3, 1}};
    for (int s = 0; s < 3; s++) {
        tg_tensor *in[3];
        ln_inputs(in, shapes[s][0], shapes[s][1], 10 + (uint64_t)s);
        tg_gradcheck_report r;
        cr_expect(tg_gradcheck(ln_block, NULL, in, 3, NULL, &r), "(%lld,%lld): %s", (long long)shapes[s][0],
                  (long long)shapes[s][1], r.message);
        tg_tape *tape = tg_tape_new();
        tg_tensor *L = ln_block(tape, in, NULL);
        cr_assert(L, "%s", tg_last_error());
        cr_expect(tg_gradcheck_nodes(tape, L, NULL, &r), "%s", r.message);
        tg_tape_free(tape);
        free3(in);
    }
}

Test(custom, a_wrong_backward_is_named_by_the_node_check) {
    tg_tensor *in[3];
    ln_inputs(in, 4, 5, 20);
    ln_ctx c = {.bug = 1};
    tg_tape *tape = tg_tape_new();
    tg_tensor *L = ln_block(tape, in, &c);
    tg_gradcheck_report r;
    cr_expect_not(tg_gradcheck_nodes(tape, L, NULL, &r));
    cr_expect_eq(r.node, 0, "node %lld", (long long)r.node);
    cr_expect_str_eq(r.op, "layernorm");
    cr_expect(strstr(r.message, "%0 layernorm: input x element"), "%s", r.message); /* named, not "input 0" */
    tg_tape_free(tape);
    free3(in);
}

Test(custom, a_forward_that_keeps_nothing_fails_its_backward_by_name) {
    tg_tensor *in[3];
    ln_inputs(in, 2, 3, 25);
    ln_ctx c = {.bug = 2};
    tg_tape *tape = tg_tape_new();
    tg_tensor *L = tg_sum(tape, ln_fn(tape, in, &c));
    cr_expect_eq(tg_backward(tape, L, NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "layernorm: backward failed: tg_custom_kept: layernorm kept 0 tensors in its "
                               "forward; there is no kept tensor 2");
    tg_tape_free(tape);
    free3(in);
}

Test(custom, a_kept_tensor_written_before_backward_is_caught) {
    tg_tensor *in[3];
    ln_inputs(in, 3, 4, 30);
    ln_ctx c = {0};
    tg_tape *tape = tg_tape_new();
    tg_tensor *L = tg_sum(tape, tg_tanh(tape, ln_fn(tape, in, &c)));
    cr_assert(L && c.kept[1], "%s", tg_last_error());
    double *rs = tg_tensor_data(c.kept[1]);
    rs[2] *= 2;
    /* the node check reruns forward and hands its backward the rerun's kept tensors, not these */
    tg_gradcheck_report r;
    cr_expect(tg_gradcheck_nodes(tape, L, NULL, &r), "%s", r.message);
    cr_expect_eq(tg_backward(tape, L, NULL), TG_EMODIFIED);
    tt_expect_error(TG_EMODIFIED, "tg_backward: kept tensor 1 (shape (3,1)) of layernorm (node 0) was modified "
                                  "between its forward and its backward");
    /* with the check off, the same write goes through (as for inputs): the check is what caught it */
    tg_tape_reset(tape);
    tg_tape_set_checks(tape, 0);
    L = tg_sum(tape, tg_tanh(tape, ln_fn(tape, in, &c)));
    ((double *)tg_tensor_data(c.kept[1]))[2] *= 2;
    cr_expect_eq(tg_backward(tape, L, NULL), TG_OK, "%s", tg_last_error());
    tg_tape_free(tape);
    free3(in);
}

Test(custom, print_lists_kept_tensors_as_saved) {
    tg_tensor *in[3];
    ln_inputs(in, 2, 3, 35);
    tg_tape *tape = tg_tape_new();
    cr_assert(ln_fn(tape, in, NULL));
    char buf[2048] = {0};
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    cr_assert_eq(tg_tape_print(tape, f), TG_OK);
    fclose(f);
    cr_expect(strstr(buf, "layernorm") && strstr(buf, "kept: (2,1) (2,1) (2,3)"), "%s", buf);
    tg_tape_free(tape);
    free3(in);
}

/* ---- no malloc once warm -------------------------------------------------------------------- */

Test(custom, ten_thousand_steps_keeping_three_tensors_malloc_nothing_after_the_first) {
    tg_tensor *in[3];
    ln_inputs(in, 8, 16, 40);
    tg_tape *tape = tg_tape_new();
    int64_t after_first = 0;
    ln_ctx c = {0};
    void *first_scratch = NULL;
    for (int step = 0; step < 10000; step++) {
        tg__alloc_fail_at(0); /* resets the count */
        tg_tensor *L = tg_sum(tape, tg_tanh(tape, ln_fn(tape, in, &c)));
        cr_assert(L && tg_backward(tape, L, NULL) == TG_OK, "step %d: %s", step, tg_last_error());
        tg_tape_reset(tape);
        if (step == 0) first_scratch = c.scratch[0];
        else after_first += tg__alloc_count();
    }
    cr_expect_eq(after_first, 0, "%lld allocations after the first step", (long long)after_first);
    cr_expect_eq(c.scratch[0], first_scratch, "the scratch moved: not reused");
    cr_expect_eq((uintptr_t)c.scratch[0] % 64, 0);
    cr_expect_eq((uintptr_t)c.scratch[1] % 64, 0);
    cr_expect_neq(c.scratch[0], c.scratch[1]);
    tg_tape_free(tape);
    free3(in);
}

/* ---- misuse: keep, kept and scratch outside their callbacks ------------------------------------ */

typedef struct {
    tg_tensor *other; /* a tensor that is not the running op's output */
    int phase;        /* which misuse the callbacks try: see probe_forward */
} probe_ctx;

static tg_status probe_forward(tg_tensor *const *in, int n, tg_tensor *out, void *user) {
    (void)in, (void)n;
    probe_ctx *p = user;
    switch (p->phase) {
    case 1: return tg_custom_kept(out, 0) ? TG_OK : tg_last_status();
    case 2: return tg_custom_keep(in[0], 1, (int64_t[]){2}) ? TG_OK : tg_last_status();
    case 3:
        for (int i = 0; i < 9; i++)
            if (!tg_custom_keep(out, 0, NULL)) return tg_last_status();
        return TG_OK;
    case 4: return tg_custom_keep(out, 9, (int64_t[9]){1}) ? TG_OK : tg_last_status();
    case 5: return tg_custom_keep(out, 2, NULL) ? TG_OK : tg_last_status();
    case 6: return tg_custom_keep(out, 2, (int64_t[]){3, -1}) ? TG_OK : tg_last_status();
    case 7: return tg_custom_keep(NULL, 1, (int64_t[]){2}) ? TG_OK : tg_last_status();
    case 8: return tg_custom_scratch(out, SIZE_MAX / 2) ? TG_OK : tg_last_status();
    case 9: { /* more than the first chunk holds: blocks of their own, none overlapping another */
        unsigned char *b[3];
        for (int k = 0; k < 3; k++) {
            if (!(b[k] = tg_custom_scratch(out, 3000))) return tg_last_status();
            if ((uintptr_t)b[k] % 64) return tg_set_error(TG_EINVAL, "scratch %d is not 64-byte aligned", k);
            memset(b[k], k + 1, 3000);
        }
        for (int k = 0; k < 3; k++)
            for (int j = 0; j < 3000; j++)
                if (b[k][j] != k + 1) return tg_set_error(TG_EINVAL, "scratch %d overlaps another", k);
        return tg_custom_keep(out, 1, (int64_t[]){2}) ? TG_OK : tg_last_status();
    }
    default: return tg_custom_keep(out, 1, (int64_t[]){2}) ? TG_OK : tg_last_status();
    }
}

static tg_status probe_backward(tg_tensor *const *in, int n, tg_tensor *out, tg_tensor *grad_out, void *const *grads,
                                void *user) {
    (void)in, (void)n, (void)grad_out, (void)grads;
    probe_ctx *p = user;
    if (p->phase == 10) return tg_custom_keep(out, 1, (int64_t[]){2}) ? TG_OK : tg_last_status();
    if (p->phase == 11) return tg_custom_kept(out, 1) ? TG_OK : tg_last_status();
    if (p->phase == 12) return tg_custom_kept(out, -1) ? TG_OK : tg_last_status();
    return tg_custom_kept(out, 0) && tg_custom_scratch(out, 0) ? TG_OK : tg_last_status();
}

static const tg_op_def probe = {.name = "probe", .shape = tt_same_shape, .forward = probe_forward,
                                .backward = probe_backward};

Test(custom, scratch_that_outgrows_its_chunk_is_one_chunk_from_the_next_callback_on) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = TT_RAND(TG_F64, 1, 45, 3);
    probe_ctx p = {.phase = 9};
    for (int step = 0; step < 3; step++) {
        tg__alloc_fail_at(0);
        cr_assert(tg_custom(tape, &probe, &x, 1, &p), "step %d: %s", step, tg_last_error());
        tg_tape_reset(tape);
        if (step) cr_expect_eq(tg__alloc_count(), 0, "step %d: %lld allocations", step, (long long)tg__alloc_count());
    }
    tg_tape_free(tape);
    tg_tensor_free(x);
}

Test(custom, keep_kept_and_scratch_refuse_misuse) {
    tg_tape *tape = tg_tape_new();
    tg_tensor *x = TT_RAND(TG_F64, 1, 50, 3);
    struct {
        int phase;
        tg_status st;
        const char *msg;
    } cases[] = {
        {1, TG_EINVAL, "probe: forward failed: tg_custom_kept: called in probe's forward; kept tensors are read "
                       "back in its backward"},
        {2, TG_EINVAL, "probe: forward failed: tg_custom_keep: out is not the output of probe, whose forward is "
                       "running: pass that op's out"},
        {3, TG_EINVAL, "probe: forward failed: tg_custom_keep: probe keeps a tensor more than the 8 allowed"},
        {4, TG_EINVAL, "probe: forward failed: tg_custom_keep: probe: ndim 9, want 0..8 dims"},
        {5, TG_EINVAL, "probe: forward failed: tg_custom_keep: probe: ndim 2 with a NULL shape, want 0..8 dims"},
        {6, TG_ESHAPE, "probe: forward failed: tg_custom_keep"},
        {7, TG_EINVAL, "probe: forward failed: tg_custom_keep: out is NULL"},
        {8, TG_ENOMEM, "probe: forward failed: tg_custom_scratch: probe asks for"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        probe_ctx p = {.phase = cases[k].phase};
        tg_clear_error();
        cr_expect_null(tg_custom(tape, &probe, &x, 1, &p), "phase %d", p.phase);
        tt_expect_error(cases[k].st, cases[k].msg);
        tg_tape_reset(tape);
    }
    /* in backward: keep refused; a kept index out of range refused */
    struct {
        int phase;
        const char *msg;
    } back[] = {
        {10, "probe: backward failed: tg_custom_keep: called in probe's backward; tensors are kept in its forward, "
             "and read back in its backward with tg_custom_kept"},
        {11, "probe: backward failed: tg_custom_kept: probe kept 1 tensor in its forward; there is no kept tensor 1"},
        {12, "probe: backward failed: tg_custom_kept: probe kept 1 tensor in its forward; there is no kept tensor -1"},
    };
    for (size_t k = 0; k < sizeof back / sizeof *back; k++) {
        probe_ctx p = {.phase = 0};
        tg_tensor *y = tg_custom(tape, &probe, &x, 1, &p);
        cr_assert(y, "%s", tg_last_error());
        p.phase = back[k].phase;
        cr_expect_eq(tg_backward(tape, tg_sum(tape, y), NULL), TG_EINVAL);
        tt_expect_error(TG_EINVAL, back[k].msg);
        tg_tape_reset(tape);
    }
    /* the right use passes: keep in forward, kept and scratch (0 bytes) in backward */
    probe_ctx ok = {0};
    tg_tensor *y = tg_custom(tape, &probe, &x, 1, &ok);
    cr_expect_eq(tg_backward(tape, tg_sum(tape, y), NULL), TG_OK, "%s", tg_last_error());
    /* outside every callback: after the op returned */
    tg_clear_error();
    cr_expect_null(tg_custom_keep(y, 1, (int64_t[]){2}));
    tt_expect_error(TG_EINVAL, "tg_custom_keep: no custom op's callback is running on this thread: call it inside "
                               "the forward of the op whose output is out");
    cr_expect_null(tg_custom_kept(y, 0));
    tt_expect_error(TG_EINVAL, "tg_custom_kept: no custom op's callback is running on this thread: call it inside "
                               "the backward");
    cr_expect_null(tg_custom_scratch(y, 16));
    tt_expect_error(TG_EINVAL, "tg_custom_scratch: no custom op's callback is running on this thread: call it "
                               "inside the forward or backward");
    tg_tape_free(tape);
    tg_tensor_free(x);
}

/* ---- input names in every message about an input ------------------------------------------------ */

/* Writes x into its gradient (overwrites) or puts a NaN there: the two backward messages. */
static int named_mode;
static tg_status named_backward(tg_tensor *const *in, int n, tg_tensor *out, tg_tensor *grad_out, void *const *grads,
                                void *user) {
    (void)n, (void)out, (void)user;
    double *g = tg_grad_f64(in[1], grads[1]);
    const double *go = tg_tensor_f64(grad_out);
    for (int64_t i = 0; g && i < tg_tensor_numel(in[1]); i++) {
        if (named_mode == 1) g[i] = go[i];
        else g[i] += named_mode == 2 ? NAN : named_mode == 3 ? 2 * go[i] : go[i];
    }
    return TG_OK;
}
static tg_status named_forward(tg_tensor *const *in, int n, tg_tensor *out, void *user) {
    (void)n, (void)user;
    for (int64_t i = 0; i < tg_tensor_numel(out); i++) tg_tensor_set(out, i, tg_tensor_get(in[1], i));
    return TG_OK;
}
static const char *const pair_names[] = {"scale", "gamma"};
static const tg_op_def named = {.name = "pairop", .shape = tt_same_shape, .forward = named_forward,
                                .backward = named_backward, .input_names = pair_names};

Test(custom, input_names_appear_in_every_kind_of_message) {
    tg_tape *tape = tg_tape_new(), *other = tg_tape_new();
    tg_tensor *a = TT_RAND(TG_F64, 1, 60, 3), *b = TT_RAND(TG_F64, 1, 61, 3), *f = TT_RAND(TG_F32, 1, 62, 3);
    tg_tensor *i = tg_tensor_new(TG_I64, 1, TT_SHAPE(3));
    tg_clear_error();
    cr_expect_null(tg_custom(tape, &named, (tg_tensor *[]){a, NULL}, 2, NULL));
    tt_expect_error(TG_EINVAL, "pairop: gamma is NULL");
    cr_expect_null(tg_custom(tape, &named, (tg_tensor *[]){a, f}, 2, NULL));
    tt_expect_error(TG_EDTYPE, "pairop: dtypes differ: scale is f64, gamma is f32");
    cr_expect_null(tg_custom(tape, &named, (tg_tensor *[]){a, i}, 2, NULL));
    tt_expect_error(TG_EDTYPE, "pairop: gamma is i64 (indices)");
    tg_tensor *on_other = tg_tanh(other, b);
    cr_expect_null(tg_custom(tape, &named, (tg_tensor *[]){a, on_other}, 2, NULL));
    tt_expect_error(TG_EINVAL, "pairop: gamma was recorded on another tape");
    tg_tensor *old = tg_tanh(tape, b);
    tg_tape_reset(tape);
    cr_expect_null(tg_custom(tape, &named, (tg_tensor *[]){old, b}, 2, NULL));
    tt_expect_error(TG_ESTATE, "pairop: scale is an output of a recording that tg_tape_reset ended");
    /* forward's non-finite output, from a leaf */
    tg_tape_set_checks(tape, TG_CHECK_SAVED | TG_CHECK_NONFINITE);
    tg_tensor_set(b, 1, INFINITY);
    cr_expect_null(tg_custom(tape, &named, (tg_tensor *[]){a, b}, 2, NULL));
    tt_expect_error(TG_ENONFINITE, "pairop: non-finite output at node 0: input gamma of pairop is a leaf holding Inf");
    tg_tensor_set(b, 1, 0.5);
    /* backward's non-finite gradient */
    named_mode = 2;
    tg_tape_reset(tape);
    tg_tensor *y = tg_custom(tape, &named, (tg_tensor *[]){a, b}, 2, NULL);
    cr_expect_eq(tg_backward(tape, tg_sum(tape, y), NULL), TG_ENONFINITE);
    tt_expect_error(TG_ENONFINITE, "pairop: non-finite gradient in backward at node 0, for input gamma");
    /* a backward that overwrites: the node check's proof names the input */
    named_mode = 1;
    tg_tape_reset(tape);
    tg_tape_set_checks(tape, TG_CHECK_SAVED);
    y = tg_custom(tape, &named, (tg_tensor *[]){a, b}, 2, NULL);
    tg_gradcheck_report r;
    cr_expect_not(tg_gradcheck_nodes(tape, tg_sum(tape, y), NULL, &r));
    cr_expect(strstr(r.message, "backward of pairop (node 0) overwrites its gradient of input gamma"), "%s", r.message);
    /* a wrong value: the node check names the input */
    named_mode = 3;
    cr_expect_not(tg_gradcheck_nodes(tape, tg_sum(tape, tg_scale(tape, y, 1.0)), NULL, &r));
    cr_expect(strstr(r.message, "pairop: input gamma element"), "%s", r.message);
    /* and an op without names still reads "input i" */
    cr_expect_null(tg_custom(tape, &(tg_op_def){.name = "anon", .shape = tt_same_shape, .forward = named_forward,
                                                .backward = named_backward},
                             (tg_tensor *[]){a, f}, 2, NULL));
    tt_expect_error(TG_EDTYPE, "anon: dtypes differ: input 0 is f64, input 1 is f32");
    /* the user's own shape message, with the names */
    tg_tensor *g5 = TT_RAND(TG_F64, 1, 63, 5), *x4 = TT_RAND(TG_F64, 1, 64, 2, 4);
    cr_expect_null(tg_custom(tape, &layernorm, (tg_tensor *[]){x4, g5, g5}, 3, NULL));
    tt_expect_error(TG_ESHAPE, "layernorm: input gamma is (5,), want (4,)");
    tg_tape_free(tape), tg_tape_free(other);
    tg_tensor_free(a), tg_tensor_free(b), tg_tensor_free(f), tg_tensor_free(i), tg_tensor_free(g5), tg_tensor_free(x4);
}

/* ---- typed access ------------------------------------------------------------------------------- */

Test(custom, typed_accessors_refuse_the_other_dtype) {
    tg_tensor *d = TT_RAND(TG_F64, 1, 70, 2, 3), *s = TT_RAND(TG_F32, 1, 71, 4), *i = tg_tensor_new(TG_I64, 1, TT_SHAPE(2));
    tg_clear_error();
    cr_expect_eq((void *)tg_tensor_f64(d), tg_tensor_data(d));
    cr_expect_eq((void *)tg_tensor_f32(s), tg_tensor_data(s));
    cr_expect_eq(tg_last_status(), TG_OK);
    cr_expect_null(tg_tensor_f32(d));
    tt_expect_error(TG_EDTYPE, "tg_tensor_f32: t (2,3) is f64, not f32");
    cr_expect_null(tg_tensor_f64(s));
    tt_expect_error(TG_EDTYPE, "tg_tensor_f64: t (4,) is f32, not f64");
    cr_expect_null(tg_tensor_f64(i));
    tt_expect_error(TG_EDTYPE, "tg_tensor_f64: t (2,) is i64, not f64");
    cr_expect_null(tg_tensor_f64(NULL));
    tt_expect_error(TG_EINVAL, "tg_tensor_f64: t is NULL");
    /* gradient buffers: the input's dtype decides */
    double buf[6];
    cr_expect_eq(tg_grad_f64(d, buf), buf);
    cr_expect_null(tg_grad_f64(d, NULL)); /* no gradient wanted: not an error */
    cr_expect_eq(tg_last_status(), TG_OK);
    cr_expect_null(tg_grad_f32(d, buf));
    tt_expect_error(TG_EDTYPE, "tg_grad_f32: the gradient of input (2,3) is f64, not f32");
    cr_expect_eq((void *)tg_grad_f32(s, buf), (void *)buf);
    cr_expect_null(tg_grad_f64(s, buf));
    tt_expect_error(TG_EDTYPE, "tg_grad_f64: the gradient of input (4,) is f32, not f64");
    cr_expect_null(tg_grad_f32(NULL, buf));
    tt_expect_error(TG_EINVAL, "tg_grad_f32: input is NULL");
    /* a stale output is refused as by tg_tensor_data */
    tg_tape *tape = tg_tape_new();
    tg_tensor *y = tg_tanh(tape, d);
    tg_tape_reset(tape);
    cr_expect_null(tg_tensor_f64(y));
    tt_expect_error(TG_ESTATE, "tg_tensor_f64: t is an output of a recording that tg_tape_reset ended");
    tg_tape_free(tape);
    /* the LayerNorm written for double refuses float inputs loudly */
    tg_tensor *in[3] = {TT_RAND(TG_F32, 1, 72, 2, 3), TT_RAND(TG_F32, 1, 73, 3), TT_RAND(TG_F32, 1, 74, 3)};
    tape = tg_tape_new();
    tg_clear_error();
    cr_expect_null(ln_fn(tape, in, NULL));
    tt_expect_error(TG_EDTYPE, "layernorm: forward failed: tg_tensor_f64: t (2,3) is f32, not f64");
    tg_tape_free(tape);
    free3(in);
    tg_tensor_free(d), tg_tensor_free(s), tg_tensor_free(i);
}
