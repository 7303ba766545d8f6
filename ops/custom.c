/* Custom ops: a user's tg_op_def recorded like a built-in op, through one table entry whose callbacks
   call the user's. */
#include <string.h>
#include "ops_internal.h"

/* A callback's failure, told in the op's name. A reason the callback gave (tg_set_error, or a
   tapegrad call failing inside it) is kept after ours: "softplus: forward failed: <reason>". */
static tg_status callback_failed(const char *name, const char *what, tg_status st, uint64_t fails_before) {
    char inner[400];
    if (tg__fail_count() != fails_before && tg_last_error()[0]) {
        snprintf(inner, sizeof inner, "%s", tg_last_error());
        return tg__fail(st, "%s: %s failed: %s", name, what, inner);
    }
    return tg__fail(st, "%s: %s failed with %s", name, what, tg_status_name(st));
}

static tg_status custom_shape(const char *fn, tg_tensor *const *in, int n, tg__args *args, int *ndim, int64_t *shape) {
    uint64_t fails = tg__fail_count();
    *ndim = -1;
    tg_status st = args->def->shape(in, n, args->user, ndim, shape);
    if (st) return callback_failed(fn, "shape", st, fails);
    if (*ndim < 0 || *ndim > TG_MAX_DIMS)
        return tg__fail(TG_ESHAPE, "%s: shape gave rank %d, outside 0..%d", fn, *ndim, TG_MAX_DIMS);
    for (int d = *ndim; d < TG_MAX_DIMS; d++) shape[d] = 0; /* the callback may have used them as scratch */
    return TG_OK;
}

static tg_status custom_forward(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *out) {
    uint64_t fails = tg__fail_count();
    tg_status st = args->def->forward(in, n, out, args->user);
    return st ? callback_failed(args->def->name, "forward", st, fails) : TG_OK;
}

static tg_status custom_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    uint64_t fails = tg__fail_count();
    const tg_op_def *def = node->args.def;
    tg_status st = def->backward(node->in, node->n_in, node->out, (tg_tensor *)gout, grads, node->args.user);
    return st ? callback_failed(def->name, "backward", st, fails) : TG_OK;
}

const tg__op tg__op_custom = {.name = "custom", .fn = "tg_custom", .save = TG__SAVE_ALL,
                              .flags = TG__ZERO_OUT | TG__OPAQUE | TG__KEEPS, .shape = custom_shape, .forward = custom_forward,
                              .backward = custom_backward};

tg_tensor *tg_custom(tg_tape *tape, const tg_op_def *op, tg_tensor *const *inputs, int n_inputs, void *user) {
    if (!op || !op->name || !op->shape || !op->forward || !op->backward) {
        tg__fail(TG_EINVAL, "tg_custom: op %s is incomplete: needs name, shape, forward and backward",
                 op && op->name ? op->name : "(unnamed)");
        return NULL;
    }
    if (!inputs || n_inputs < 1 || n_inputs > 64) {
        tg__fail(TG_EINVAL, "tg_custom: %s: %d inputs, want 1..64%s", op->name, n_inputs,
                 inputs ? "" : " (inputs is NULL)");
        return NULL;
    }
    return tg__apply(tape, &tg__op_custom, inputs, n_inputs, &(tg__args){.def = op, .user = user});
}
