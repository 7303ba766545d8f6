/* Custom ops: a user's tg_op_def recorded like a built-in op. */
#include <string.h>
#include "tg_internal.h"

/* A callback's failure, told in the op's name; a message the callback left (say, from a tapegrad call
   inside it) is kept after ours. */
static tg_status callback_failed(const char *name, const char *what, tg_status st) {
    char inner[256] = "";
    if (tg_last_status() == st && tg_last_error()[0]) snprintf(inner, sizeof inner, ": %s", tg_last_error());
    return tg__fail(st, "%s: %s failed with %s%s", name, what, tg_status_name(st), inner);
}

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
    if (tg__check_inputs(op->name, tape, inputs, n_inputs, NULL)) return NULL;
    int ndim = -1;
    int64_t shape[TG_MAX_DIMS] = {0};
    tg_status st = op->shape(inputs, n_inputs, user, &ndim, shape);
    if (st) return callback_failed(op->name, "shape", st), NULL;
    if (ndim < 0 || ndim > TG_MAX_DIMS) {
        tg__fail(TG_ESHAPE, "%s: shape gave rank %d, outside 0..%d", op->name, ndim, TG_MAX_DIMS);
        return NULL;
    }
    tg_tensor *out = tg__new_out(op->name, tape, inputs[0]->dtype, ndim, shape, 1);
    if (!out) return NULL;
    st = op->forward(inputs, n_inputs, out, user);
    if (st) return callback_failed(op->name, "forward", st), NULL;
    return tg__record(tape, &tg__op_custom, op, user, out, inputs, n_inputs, TG__SAVE_ALL, NULL, 0);
}

static tg_status custom_backward(const tg__node *node, const tg_tensor *gout, void *const *grads) {
    tg_status st = node->def->backward(node->in, node->n_in, node->out, (tg_tensor *)gout, grads, node->user);
    return st ? callback_failed(node->def->name, "backward", st) : TG_OK;
}
const tg__op tg__op_custom = {"custom", custom_backward};
