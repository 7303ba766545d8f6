/* The tape's arena: chunks that hold op outputs' data and gradients, the spare blocks backward and layers
   give back, and the redzones that instrumented runs leave after each block (see arena.h). */
#include "arena.h"

chunk *tg__new_chunk(size_t size, chunk *next) {
    chunk *c = tg__malloc(CHUNK_HEAD + size);
    if (!c) return NULL;
    *c = (chunk){.next = next, .size = size, .base = (char *)c + CHUNK_HEAD};
    poison(c->base, size);
    return c;
}

void tg__free_chunks(chunk *c) {
    while (c) {
        chunk *next = c->next;
        unpoison(c->base, c->size); /* the allocator may hand these bytes out again, to anyone */
        tg__free(c);
        c = next;
    }
}

/* Blocks too small for the list header are not reused: they cost nothing to leave. */
void tg__spare_put(tg_tape *tape, void *block, size_t bytes) {
    if (bytes < sizeof(spare)) return;
    if (tape->redzone) unpoison(block, sizeof(spare));
    spare *s = block;
    s->size = bytes;
    s->next = tape->spares[spare_class(bytes)];
    tape->spares[spare_class(bytes)] = s;
    if (tape->redzone) poison((char *)block + sizeof(spare), bytes - sizeof(spare));
}

int64_t tg_tape_memory(const tg_tape *tape) {
    int64_t bytes = 0;
    for (const chunk *c = tape ? tape->chunks : NULL; c; c = c->next) bytes += (int64_t)c->used;
    return bytes;
}

/* A new chunk for a block of step bytes, which the head chunk cannot hold. */
char *tg__arena_grow(tg_tape *tape, size_t step) {
    /* Doubling keeps the chunks few (log of the recording's size), but only as a preference: when
       memory is short, the doubled chunk may not fit where the block itself still does. */
    chunk *c = tape->chunks;
    size_t need = step > MIN_CHUNK ? step : MIN_CHUNK, want = c && 2 * c->size > need ? 2 * c->size : need;
    chunk *n = tg__new_chunk(want, c);
    if (!n && want > need) n = tg__new_chunk(need, c);
    if (!n) return NULL;
    tape->chunks = n;
    n->used = step;
    return n->base;
}


void *tg__arena_alloc(tg_tape *tape, size_t size, int zero) {
    void *p = arena_take(tape, size);
    if (p && zero) memset(p, 0, size);
    return p;
}

void tg__tape_release(tg_tape *tape, tg_tensor *t) {
    if (!t || !tape || t->tape != tape || t->gen != tape->gen || t->node < 0 || !t->data ||
        (t->flags & (TG__SAVED | TG__RETAIN)))
        return;
    tg__spare_put(tape, t->data, block_bytes(t));
    t->data = NULL;
}
