/* TG_CHECK_SAVED's fingerprints: what a saved tensor hashed to when it was recorded, found again in
   backward (core/tape.c checks them). */
#include <xxhash.h>
#include "arena.h"
#include "vmath.h"

/* A tensor's header cannot change, only its data: the fingerprint is of the bytes, one XXH3 call, vectorized
   where the processor allows (the same value whichever instruction set computes it). */
uint64_t tg__fp_hash_bytes(const void *p, size_t bytes) {
#if defined(__x86_64__)
    if (tg__vmath_isa() >= TG__ISA_AVX2) return tg__xxh3_avx(p, bytes);
#endif
    return XXH3_64bits(p, bytes);
}

static size_t slot_of(const tg_tape *tape, const tg_tensor *t) {
    uint64_t h = (uint64_t)(uintptr_t)t * UINT64_C(0x9E3779B97F4A7C15);
    size_t mask = tape->n_slots - 1, i = (size_t)(h >> 32) & mask;
    while (tape->fp_slots[i].gen == tape->gen && tape->fp_slots[i].t != t) i = (i + 1) & mask;
    return i;
}

/* Room for one more fingerprint: 0, or 1 on TG_ENOMEM. The array doubles when full; a warm loop finds it
   large enough and mallocs nothing. */
static int fps_room(tg_tape *tape) {
    if (tape->n_fp < tape->cap_fp) return 0;
    uint32_t cap = tape->cap_fp ? 2 * tape->cap_fp : 256;
    fingerprint *fps = cap > tape->cap_fp ? tg__malloc((size_t)cap * sizeof *fps) : NULL;
    if (!fps) return 1;
    if (tape->n_fp) memcpy(fps, tape->fps, (size_t)tape->n_fp * sizeof *fps);
    tg__free(tape->fps);
    tape->fps = fps, tape->cap_fp = cap;
    return 0;
}

/* Appends t's fingerprint (room made): 1 + its index. */
static uint32_t fp_push(tg_tape *tape, const tg_tensor *t, int64_t node) {
    tape->fps[tape->n_fp++] = (fingerprint){.t = t, .hash = tg__fp_hash(t), .node = node};
    tape->n_hashed++;
    return tape->n_fp;
}

/* A leaf's, found in the tape's table (which doubles when half full); apart from an output's, the common
   case, so that its registers stay out of that one's frame. */
static __attribute__((noinline)) uint32_t leaf_fingerprint(tg_tape *tape, tg_tensor *t, int64_t node) {
    if (2 * (tape->n_leaves + 1) > tape->n_slots) {
        size_t n = tape->n_slots ? 2 * tape->n_slots : 64;
        fp_slot *slots = tg__calloc(n * sizeof *slots), *old = tape->fp_slots;
        if (!slots) return 0;
        size_t n_old = tape->n_slots;
        tape->fp_slots = slots, tape->n_slots = n;
        for (size_t i = 0; i < n_old; i++)
            if (old[i].gen == tape->gen) slots[slot_of(tape, old[i].t)] = old[i];
        tg__free(old);
    }
    fp_slot *slot = &tape->fp_slots[slot_of(tape, t)];
    if (slot->gen != tape->gen) {
        if (fps_room(tape)) return 0;
        *slot = (fp_slot){t, fp_push(tape, t, node), tape->gen}, tape->n_leaves++;
    }
    tape->last_leaf = *slot;
    return slot->fp;
}

/* 1 + the index of t's fingerprint in this recording, made (and t hashed) when node is the first to save
   it; 0 on TG_ENOMEM. An output keeps its own in its header (tg__apply checked its gen). */
uint32_t tg__fingerprint_of(tg_tape *tape, tg_tensor *t, int64_t node) {
    if (t->tape != tape) return leaf_fingerprint(tape, t, node);
    if (!t->fp && !fps_room(tape)) t->fp = fp_push(tape, t, node);
    return t->fp;
}
