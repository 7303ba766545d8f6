/* A custom op's callbacks' view of the engine while they run: the tensors a forward keeps for its backward
   (tg_custom_keep, tg_custom_kept) and scratch memory (tg_custom_scratch). The engine brackets each call
   of a custom op's forward or backward with a record of it on this thread; the three functions answer from
   that record, so that a call from anywhere else is refused instead of corrupting another op's node. */
#include "arena.h"

typedef struct callback {
    const tg_tensor *out;     /* the running op's output: a call about another op is refused */
    const char *name;         /* the op's, for messages */
    int backward;             /* 0: its forward runs, 1: its backward */
    tg_tape *tape;            /* whose scratch (and, forward, whose recording kept tensors join) */
    tg__kept *keep;           /* forward: where kept tensors go */
    tg_tensor *const *kept;   /* backward: what the forward kept */
    int n_kept;
    chunk *mark;              /* the scratch's head chunk and its use when the callback began */
    size_t mark_used;
    struct callback *prev;    /* a callback that itself runs a custom op */
} callback;

static _Thread_local callback *running;

static void enter(callback *c) {
    c->mark = c->tape ? c->tape->cb_chunks : NULL;
    c->mark_used = c->mark ? c->mark->used : 0;
    c->prev = running;
    running = c;
}

/* The callback's scratch is given back. Chunks it had to add are freed; once no callback runs on this
   thread, the scratch becomes one chunk of their total size, so that the next callback needing as much
   mallocs nothing. */
static void leave(callback *c) {
    running = c->prev;
    tg_tape *tape = c->tape;
    if (!tape) return;
    chunk *h = tape->cb_chunks;
    if (!c->mark && h && !h->next) { /* the first scratch of this tape: one chunk, kept as it is */
        poison(h->base, h->used);
        h->used = 0;
        return;
    }
    size_t grown = 0;
    while (tape->cb_chunks != c->mark) {
        chunk *x = tape->cb_chunks;
        tape->cb_chunks = x->next;
        grown += x->size;
        x->next = NULL;
        tg__free_chunks(x);
    }
    if (c->mark) {
        poison(c->mark->base + c->mark_used, c->mark->used - c->mark_used);
        c->mark->used = c->mark_used;
    }
    if (grown && !running) {
        for (chunk *x = tape->cb_chunks; x; x = x->next) grown += x->size;
        tg__free_chunks(tape->cb_chunks);
        tape->cb_chunks = tg__new_chunk(grown, NULL); /* on failure the next callback grows it again */
    }
}

tg_status tg__forward(tg_tape *tape, const tg__op *op, tg_tensor *const *in, int n, const tg__args *args,
                      tg_tensor *out, tg__kept *kept) {
    if (!(op->flags & TG__KEEPS)) return op->forward(in, n, args, out);
    kept->n = 0;
    callback c = {.out = out, .name = args->def ? args->def->name : op->name, .tape = tape, .keep = kept};
    enter(&c);
    tg_status st = op->forward(in, n, args, out);
    leave(&c);
    return st;
}

tg_status tg__custom_backward(tg_tape *tape, const tg__node *node, tg__backward_fn backward, const tg_tensor *gout,
                              void *const *grads) {
    callback c = {.out = node->out, .name = node->args.def->name, .backward = 1, .tape = tape,
                  .kept = node->saved + node->n_in + 1, .n_kept = tg__n_kept(node)};
    enter(&c);
    tg_status st = backward(node, gout, grads);
    leave(&c);
    return st;
}

void tg__kept_free(tg__kept *kept) {
    for (int i = 0; kept->leaves && i < TG__MAX_KEPT; i++) tg_tensor_free(kept->t[i]), kept->t[i] = NULL;
    kept->n = 0;
}

/* The callback that out's op runs, when it is the one running and in the phase wanted (0 forward, 1
   backward, -1 either); else NULL with TG_EINVAL saying what was wrong. */
static callback *find(const char *fn, const tg_tensor *out, int phase) {
    static const char *const where[] = {"forward", "backward"};
    callback *c = running;
    if (!out) return tg__null(fn, "out"), NULL;
    if (!c) {
        tg__fail(TG_EINVAL, "%s: no custom op's callback is running on this thread: call it inside the %s of the "
                 "op whose output is out", fn, phase < 0 ? "forward or backward" : where[phase]);
        return NULL;
    }
    if (c->out != out) {
        tg__fail(TG_EINVAL, "%s: out is not the output of %s, whose %s is running: pass that op's out",
                 fn, c->name, where[c->backward]);
        return NULL;
    }
    if (phase >= 0 && c->backward != phase) {
        tg__fail(TG_EINVAL, "%s: called in %s's %s; %s", fn, c->name, where[c->backward],
                 phase ? "kept tensors are read back in its backward" : "tensors are kept in its forward, and read "
                 "back in its backward with tg_custom_kept");
        return NULL;
    }
    return c;
}

tg_tensor *tg_custom_keep(tg_tensor *out, int ndim, const int64_t *shape) {
    static const char fn[] = "tg_custom_keep";
    callback *c = find(fn, out, 0);
    if (!c) return NULL;
    tg__kept *k = c->keep;
    if (k->n == TG__MAX_KEPT) {
        tg__fail(TG_EINVAL, "%s: %s keeps a tensor more than the %d allowed", fn, c->name, TG__MAX_KEPT);
        return NULL;
    }
    if (ndim < 0 || ndim > TG_MAX_DIMS || (ndim && !shape)) {
        tg__fail(TG_EINVAL, "%s: %s: ndim %d%s, want 0..%d dims", fn, c->name, ndim,
                 ndim > 0 && ndim <= TG_MAX_DIMS ? " with a NULL shape" : "", TG_MAX_DIMS);
        return NULL;
    }
    int64_t dims[TG_MAX_DIMS] = {0}, numel;
    if (ndim) memcpy(dims, shape, (size_t)ndim * sizeof *dims);
    if (tg__numel(fn, out->dtype, ndim, dims, &numel)) return NULL;
    tg_tensor *t = k->leaves ? k->t[k->n] : NULL;
    if (!k->leaves) t = new_out(fn, c->tape, out->dtype, ndim, dims, 1);
    else if (t && t->dtype == out->dtype && t->ndim == ndim && !memcmp(t->shape, dims, sizeof dims))
        memset(t->data, 0, (size_t)numel * tg__dsize(t->dtype)); /* a rerun's: the last one's, zeroed */
    else {
        tg_tensor_free(t);
        t = k->t[k->n] = tg_tensor_new(out->dtype, ndim, dims);
    }
    if (t) k->t[k->n++] = t;
    return t;
}

tg_tensor *tg_custom_kept(tg_tensor *out, int i) {
    callback *c = find("tg_custom_kept", out, 1);
    if (!c) return NULL;
    if (i < 0 || i >= c->n_kept) {
        tg__fail(TG_EINVAL, "tg_custom_kept: %s kept %d tensor%s in its forward; there is no kept tensor %d",
                 c->name, c->n_kept, c->n_kept == 1 ? "" : "s", i);
        return NULL;
    }
    return c->kept[i];
}

void *tg_custom_scratch(tg_tensor *out, size_t bytes) {
    callback *c = find("tg_custom_scratch", out, -1);
    if (!c) return NULL;
    tg_tape *tape = c->tape;
    if (bytes > SIZE_MAX / 4) {
        tg__fail(TG_ENOMEM, "tg_custom_scratch: %s asks for %zu bytes", c->name, bytes);
        return NULL;
    }
    size_t step = ((bytes + 63) & ~(size_t)63) + tape->redzone;
    if (!step) step = 64; /* each call its own address */
    chunk *h = tape->cb_chunks;
    if (!h || h->size - h->used < step) {
        size_t want = h && 2 * h->size > step ? 2 * h->size : step > 4096 ? step : 4096;
        if (!(h = tg__new_chunk(want, h))) {
            tg__fail(TG_ENOMEM, "tg_custom_scratch: out of memory for %zu bytes of %s's scratch", bytes, c->name);
            return NULL;
        }
        tape->cb_chunks = h;
    }
    char *p = h->base + h->used;
    h->used += step;
    unpoison(p, bytes);
    return p;
}
