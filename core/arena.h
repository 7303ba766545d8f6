/* The tape's struct and the inline half of its arena (core/arena.c has the rest): shared by the files of
   core/ that make up the tape (tape.c, arena.c, fingerprint.c, draw.c, callback.c) and by tensor.c, which tells an
   output of an ended recording by its tape's gen. Never installed. */
#ifndef TG_ARENA_H
#define TG_ARENA_H

#include <string.h>
#include "tg_internal.h"

/* Redzones. Every arena block is one slice of a big malloc, so a write one past a block's end lands in
   the next block, where neither AddressSanitizer nor valgrind can see it. Instrumented runs leave a
   poisoned gap after each block and poison what is not handed out (the rest of a chunk, and every
   chunk after a reset, so a kept output's data reads as poisoned too). The valgrind requests are compiled
   in whenever the header exists; the blocks every op takes mark themselves only when the tape has
   redzones (under either tool), as a request costs some twenty instructions even outside valgrind. */
#if defined(__SANITIZE_ADDRESS__)
#define TG__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TG__ASAN 1
#endif
#endif
#ifdef TG__ASAN
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#endif
#ifdef TG_HAVE_VALGRIND
#include <valgrind/memcheck.h>
#else
#define VALGRIND_MAKE_MEM_NOACCESS(p, n) 0
#define VALGRIND_MAKE_MEM_UNDEFINED(p, n) 0
#define RUNNING_ON_VALGRIND 0
#endif

static inline void poison(void *p, size_t n) {
    ASAN_POISON_MEMORY_REGION(p, n);
    (void)VALGRIND_MAKE_MEM_NOACCESS(p, n);
}

static inline void unpoison(void *p, size_t n) {
    ASAN_UNPOISON_MEMORY_REGION(p, n);
    (void)VALGRIND_MAKE_MEM_UNDEFINED(p, n);
}

/* Arena chunks hold op outputs' data and gradients. Tensor headers live apart, in blocks that are
   never freed before the tape, in two pools that successive recordings alternate between: an output
   kept past a reset (the last step's h, say) still reads its own header, whose gen no longer matches,
   and is refused instead of silently standing for whatever the new recording put in its place. */
typedef struct chunk {
    struct chunk *next;
    size_t size, used;
    char *base; /* CHUNK_HEAD bytes past the chunk's start, so 64-byte aligned as the malloc is */
} chunk;

#define HEADER_BLOCK 256
typedef struct header_block {
    struct header_block *next;
    tg_tensor t[HEADER_BLOCK];
} header_block;

typedef struct {
    header_block *first, *cur; /* cur: the block being handed out; NULL before the first */
    int used;                  /* headers taken from cur */
} header_pool;

/* An intermediate's gradient is dead once its node's backward has run (every node that adds to it comes
   later on the tape): backward hands its block to the next gradient of the same size instead of taking new
   memory, so that a T-step RNN's per-step gradients take a few blocks, not T. The data of a layer's
   intermediates that no node saved goes the same way (tg__tape_release), to the next output or gradient of
   its size. Lists per power of two, exact sizes within. */
typedef struct spare {
    struct spare *next;
    size_t size;
} spare;
enum { SPARE_CLASSES = 48 };

/* A saved tensor's fingerprint, one per tensor per recording however many nodes save it: a weight saved by
   the T matmuls of an RNN is hashed when first saved and checked once in backward, not T times each way.
   An output finds its fingerprint through its header (t->fp); a leaf, which several threads' tapes may
   save at once, through the tape's table, which then holds only the few leaves a recording saves. */
typedef struct {
    const tg_tensor *t;
    uint64_t hash;
    int64_t node; /* the first node that saved it, which messages name */
    int checked;  /* by this recording's backward */
} fingerprint;

typedef struct {
    const tg_tensor *t;
    uint32_t fp;  /* 1 + the fingerprint's index */
    uint64_t gen; /* the slot is empty unless this is the tape's gen: a reset empties the table in O(1) */
} fp_slot;

struct tg_tape {
    chunk *chunks;          /* newest first; allocation takes from the head */
    fp_slot *fp_slots;      /* saved leaves: open addressing, a power of two long, kept across resets */
    size_t n_slots, n_leaves; /* n_leaves: this recording's leaves in the table */
    fp_slot last_leaf;      /* the leaf saved last, found without a call: a weight every step saves */
    fingerprint *fps;       /* this recording's fingerprints, kept across resets */
    uint32_t n_fp, cap_fp;
    struct spare *spares[SPARE_CLASSES]; /* gradient blocks backward is done with, by size class */
    void *scratch;          /* tg__node_backward's proof that a backward adds */
    chunk *cb_chunks;       /* custom ops' callbacks' scratch (core/callback.c), newest first */
    size_t scratch_size;
    int64_t n_hashed;       /* tensors hashed for this recording, recorded and checked: tg__tape_hashes */
    header_pool headers[2]; /* even and odd recordings */
    tg__node *nodes;
    int64_t n_nodes, cap_nodes;
    unsigned checks;
    int check_accumulate; /* gradient checks: prove every backward adds (tg__node_backward) */
    int grad_enabled; /* 0: ops compute and record nothing (tg_tape_set_grad_enabled) */
    uint64_t gen;  /* bumped by every reset */
    int done;      /* backward has run on this recording */
    int64_t n_retained; /* outputs of this recording tg_retain_grad marked */
    size_t redzone; /* poisoned bytes after each block: REDZONE under ASan or valgrind, else 0 */
};

static inline int spare_class(size_t bytes) {
    int log2 = bytes ? 63 - __builtin_clzll((unsigned long long)bytes) : 0;
    return log2 < SPARE_CLASSES ? log2 : SPARE_CLASSES - 1;
}

static inline size_t block_bytes(const tg_tensor *t) { return ((size_t)t->numel * tg__dsize(t->dtype) + 63) & ~(size_t)63; }

enum { MIN_CHUNK = 1 << 20, CHUNK_HEAD = 64, REDZONE = 64 };


/* A new chunk of size bytes in front of next (poisoned); NULL on TG_ENOMEM (no message). */
chunk *tg__new_chunk(size_t size, chunk *next);
void tg__free_chunks(chunk *c);
/* A new chunk for a block of step bytes, which the head chunk cannot hold; NULL on TG_ENOMEM. */
char *tg__arena_grow(tg_tape *tape, size_t step);
/* block (bytes, a multiple of 64) becomes a spare for the next output or gradient of its size. */
void tg__spare_put(tg_tape *tape, void *block, size_t bytes);

/* A spare block of exactly bytes (a multiple of 64), or NULL. */
/* A spare block of exactly `bytes` (a multiple of 64) for `size` bytes of data, or NULL. Under the
   sanitizers a spare is poisoned but for its list header, and handed out unpoisoned for `size` bytes
   only: a kernel writing past its output in a reused block is caught as in a fresh one. */
static inline void *spare_take(tg_tape *tape, size_t bytes, size_t size) {
    for (spare **p = &tape->spares[spare_class(bytes)]; bytes && *p; p = &(*p)->next)
        if ((*p)->size == bytes) {
            spare *s = *p;
            *p = s->next;
            if (tape->redzone) poison(s, bytes), unpoison(s, size);
            return s;
        }
    return NULL;
}

/* Every op takes one or two blocks: the common case stays inline. */
static inline void *arena_take(tg_tape *tape, size_t size) {
    /* Rounding keeps every block 64-byte aligned (chunk bases are); the redzone follows the rounding. */
    size_t step = ((size + 63) & ~(size_t)63) + tape->redzone;
    chunk *c = tape->chunks;
    char *p;
    if (c && c->size - c->used >= step) p = c->base + c->used, c->used += step;
    else if (!(p = tg__arena_grow(tape, step))) return NULL;
    if (tape->redzone) unpoison(p, size);
    return p;
}

static inline tg_tensor *new_header(tg_tape *tape) {
    header_pool *pool = &tape->headers[tape->gen & 1];
    if (!pool->cur || pool->used == HEADER_BLOCK) {
        header_block *next = pool->cur ? pool->cur->next : pool->first;
        if (!next) { /* the pool grows once; later recordings reuse its blocks */
            next = tg__malloc(sizeof *next);
            if (!next) return NULL;
            next->next = NULL;
            if (pool->cur) pool->cur->next = next;
            else pool->first = next;
        }
        pool->cur = next;
        pool->used = 0;
    }
    return &pool->cur->t[pool->used++];
}

/* A new output of the tape: data from a spare block or the arena (zeroed when zero is set). NULL on
   TG_ENOMEM. */
static TG__INLINE tg_tensor *new_out(const char *fn, tg_tape *tape, tg_dtype dtype, int ndim,
                                     const int64_t shape[TG_MAX_DIMS], int zero) {
    /* Positive dims below 2^20 while the count is below 2^40 keep it below 2^60, where nothing overflows:
       those skip tg__numel's checks, the rest take them. */
    int64_t numel = 1;
    int plain = ndim >= 0 && ndim <= TG_MAX_DIMS;
    for (int i = 0; i < ndim && plain; i++)
        if ((plain = shape[i] > 0 && shape[i] < (1 << 20) && numel < ((int64_t)1 << 40))) numel *= shape[i];
    if (!plain && tg__numel(fn, dtype, ndim, shape, &numel)) return NULL;
    tg_tensor *t = new_header(tape);
    size_t bytes = (size_t)numel * tg__dsize(dtype);
    void *data = t ? spare_take(tape, (bytes + 63) & ~(size_t)63, bytes) : NULL;
    if (t && !data) data = arena_take(tape, bytes);
    if (data && zero) memset(data, 0, bytes);
    if (!data) {
        tg__fail(TG_ENOMEM, "%s: out of memory for an output of %lld elements", fn, (long long)numel);
        return NULL;
    }
    /* field by field (a compound literal is a `rep stos`, slow at this size), the dims copied whole: shape
       holds TG_MAX_DIMS, zero past ndim (see tg__op), and a fixed-size copy is four moves */
    t->dtype = dtype, t->ndim = ndim, t->numel = numel, t->data = data, t->grad = NULL, t->flags = 0, t->fp = 0;
    t->tape = tape, t->gen = tape->gen, t->node = -1;
    memcpy(t->shape, shape, sizeof t->shape);
    return t;
}

/* TG_CHECK_SAVED's fingerprints (core/fingerprint.c). The hash of t's data: a scalar (a loss, a step's
   scale, the tape-overhead chain's elements) is its own fingerprint, its bits, exact, and cheaper than
   XXH3's short-input path; larger data is one XXH3 call (tg__fp_hash_bytes). Inline: with checks on, an
   op hashes the output it saves twice, and the calls were 4 % of its tape overhead. */
uint64_t tg__fp_hash_bytes(const void *p, size_t bytes);
static inline uint64_t tg__fp_hash(const tg_tensor *t) {
    size_t bytes = (size_t)t->numel * tg__dsize(t->dtype);
    /* fixed-size loads: a memcpy of `bytes` into a zeroed word stalls on the store that zeroed it */
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
    return bytes ? tg__fp_hash_bytes(t->data, bytes) : 0;
}

/* 1 + the index of t's fingerprint in this recording, made (and t hashed) when node is the first to save
   it; 0 on TG_ENOMEM. */
uint32_t tg__fingerprint_of(tg_tape *tape, tg_tensor *t, int64_t node);

#endif
