/* TG_CHECK_SAVED's fingerprints: what a saved tensor hashed to when it was recorded, found again in
   backward (core/tape.c checks them). */
#include <xxhash.h>
#include "arena.h"
#include "vmath.h"

/* A tensor's header cannot change, only its data: the fingerprint is of the bytes, one XXH3 call, vectorized
   where the processor allows (the same value whichever instruction set computes it). A scalar (a loss, a
   step's scale) is its own fingerprint: its bits, exact, and cheaper than XXH3's short-input path. */
uint64_t tg__fp_hash(const tg_tensor *t) {
    size_t bytes = (size_t)t->numel * tg__dsize(t->dtype);
    /* fixed-size loads: a memcpy of `bytes` into a zeroed word stalls on the store that zeroed it */
    if (bytes == 0) return 0;
    if (bytes == sizeof(float)) {
        uint32_t bits;
        memcpy(&bits, t->data, sizeof bits);
        return bits;
    }
    if (bytes == sizeof(double)) {
        uint64_t bits;
        memcpy(&bits, t->data, sizeof bits);
        return bits;
    }
#if defined(__x86_64__)
    if (tg__vmath_isa() >= TG__ISA_AVX2) return tg__xxh3_avx(t->data, bytes);
#endif
    return XXH3_64bits(t->data, bytes);
}

static size_t slot_of(const tg_tape *tape, const tg_tensor *t) {
    uint64_t h = (uint64_t)(uintptr_t)t * UINT64_C(0x9E3779B97F4A7C15);
    size_t mask = tape->n_slots - 1, i = (size_t)(h >> 32) & mask;
    while (tape->fp_slots[i].gen == tape->gen && tape->fp_slots[i].t != t) i = (i + 1) & mask;
    return i;
}

/* 1 + the index of t's fingerprint in this recording, made (and t hashed) when node is the first to save
   it; 0 on TG_ENOMEM. The array and the table double when needed; a warm loop finds them large enough
   and mallocs nothing. */
uint32_t tg__fingerprint_of(tg_tape *tape, tg_tensor *t, int64_t node) {
    fp_slot *slot = NULL;
    if (t->tape == tape) { /* an output of this recording (tg__apply checked its gen) */
        if (t->fp) return t->fp;
    } else {
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
        slot = &tape->fp_slots[slot_of(tape, t)];
        if (slot->gen == tape->gen) return tape->last_leaf = *slot, slot->fp;
    }
    if (tape->n_fp == tape->cap_fp) {
        uint32_t cap = tape->cap_fp ? 2 * tape->cap_fp : 256;
        fingerprint *fps = cap > tape->cap_fp ? tg__malloc((size_t)cap * sizeof *fps) : NULL;
        if (!fps) return 0;
        if (tape->n_fp) memcpy(fps, tape->fps, (size_t)tape->n_fp * sizeof *fps);
        tg__free(tape->fps);
        tape->fps = fps, tape->cap_fp = cap;
    }
    tape->fps[tape->n_fp++] = (fingerprint){.t = t, .hash = tg__fp_hash(t), .node = node};
    tape->n_hashed++;
    if (slot) *slot = (fp_slot){t, tape->n_fp, tape->gen}, tape->n_leaves++, tape->last_leaf = *slot;
    else t->fp = tape->n_fp;
    return tape->n_fp;
}
