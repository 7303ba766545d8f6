/* The engine's internals (core/): the tensor and node structs, the op table entry and the shared path of
   every op, errors, allocation. Every room above includes it; never installed. */
#ifndef TG_INTERNAL_H
#define TG_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "tg_tape.h"

/* tensor flags */
#define TG__OWNED 1u  /* the caller's leaf: tg_tensor_free frees it */
#define TG__PARAM 2u  /* has a gradient of its own, accumulated across backward passes */
#define TG__NEEDS 4u  /* backward writes a gradient for it (params, and outputs depending on one) */
#define TG__RETAIN 8u /* tg_retain_grad: keep the gradient after backward */
/* A parameter whose gradient some backward has written (set once, never cleared, tg_zero_grad
   included): an optimizer skips the others, as torch.optim skips a parameter whose grad is None. */
#define TG__GRADDED 16u
#define TG__SAVED 32u /* an op output some node saved for backward (tg__tape_release keeps its data) */

struct tg_tensor {
    tg_dtype dtype;
    int ndim;
    int64_t shape[TG_MAX_DIMS];
    int64_t numel;
    void *data;
    void *grad;
    unsigned flags;
    uint32_t fp;    /* an output saved for backward: 1 + the index of its fingerprint in the tape's
                       recording, found without the tape's table of saved leaves; 0: none yet */
    tg_tape *tape;  /* the tape that made it; NULL for leaves */
    union {         /* one word for both keeps the header at 128 bytes, two cache lines */
        uint64_t gen; /* an op output's: the tape's recording it belongs to (tape->gen at creation) */
        char *name;   /* a caller's leaf's (TG__OWNED): its name, owned, or NULL; read and written atomically,
                         as threads sharing a leaf may name it at once (tg__name_once) */
    };
    int64_t node;   /* index of the node that made it, -1 when none */
};

typedef struct tg__node tg__node;

/* A node's small arguments: everything its forward needs besides its inputs, so that the tape can
   rerun any recorded node on other inputs, and print it. The shape rule may normalise them (a
   negative axis becomes its positive twin) before forward and backward see them. 64 bytes: every op
   copies them twice, and a copy any larger becomes a slow `rep movs`. */
typedef struct {
    int64_t i[4];          /* axes, bounds, indices, counts, flags; dropout: its mask's stream's seed */
    double f[2];           /* scale factors, constants, probabilities */
    const tg_op_def *def;  /* custom ops: the user's table entry and context */
    void *user;
} tg__args;

/* What an op keeps for backward, fingerprinted when TG_CHECK_SAVED is on. */
typedef enum { TG__SAVE_NONE, TG__SAVE_INPUTS, TG__SAVE_OUTPUT, TG__SAVE_ALL } tg__save;

#define TG__ZERO_OUT 1u /* the output is zero-filled before forward (others write every element) */
#define TG__CONSTANT 2u /* the output is never recorded: no gradient flows through it (detach) */
/* Backward writes every element of a gradient buffer that tg__fresh says is fresh, instead of adding: the
   engine then hands it over unzeroed. */
#define TG__FILLS 4u
/* Backward is the user's code (tg_custom), which may take values for indices: the tensors it saved are
   verified (TG_CHECK_SAVED) before it runs, as an op's with index inputs are. Other built-in backwards
   read saved tensors only as numbers: theirs are verified after, while still in cache (run_node). */
#define TG__OPAQUE 8u
/* The output holds TG_I64 indices (argmax, sample), not the inputs' dtype; such an op is TG__CONSTANT too. */
#define TG__INDEX_OUT 16u
/* Forward keeps tensors for its backward through tg_custom_keep (a custom op's, or a built-in's that keeps
   what backward would otherwise recompute: cross-entropy's row max and log-sum). Such an op saves all
   (TG__SAVE_ALL): kept tensor j is node->saved[n_in + 1 + j]. */
#define TG__KEEPS 32u

/* A built-in op's table entry: all the engine knows of an op. A public op function checks what only
   it can (its scalar arguments), then hands its inputs and arguments to tg__apply, which runs
     check inputs -> shape -> new output -> forward -> record.
   shape validates the inputs' shapes (and index values) and writes the output's rank and dims into an
   array of TG_MAX_DIMS zeros, leaving those past the rank zero; its failures name fn. forward writes
   every element of out (zeroed first with TG__ZERO_OUT). backward adds the vector-Jacobian product of
   gout into grads[i] for each i whose grads[i] is not NULL, and
   allocates no gradient temporaries; with TG__FILLS it assigns instead where tg__fresh(node, i), as the
   buffer's first contribution (a GEMM with beta = 0), and that must write every element of it. */
typedef struct tg__op {
    const char *name;          /* "matmul": in the table, tg_tape_print and the DOT dump */
    const char *fn;            /* "tg_matmul": first in every message */
    const char *const *names;  /* input names in messages ("a", "b"); NULL: "input i" */
    unsigned index_inputs;     /* bit i set: input i holds TG_I64 indices; the others hold values */
    tg__save save;
    unsigned unsaved;          /* bit i set: TG__SAVE_INPUTS/ALL leave input i out (backward reads its shape only) */
    unsigned flags;            /* TG__ZERO_OUT, TG__CONSTANT */
    const char *iarg[4];       /* names of args.i[k] to print; NULL: not printed */
    const char *farg[2];       /* names of args.f[k] to print */
    tg_status (*shape)(const char *fn, tg_tensor *const *in, int n, tg__args *args, int *ndim, int64_t *shape);
    tg_status (*forward)(tg_tensor *const *in, int n, const tg__args *args, tg_tensor *out);
    tg_status (*backward)(const tg__node *node, const tg_tensor *gout, void *const *grads);
} tg__op;

struct tg__node {
    const tg__op *op;
    tg__args args;
    tg_tensor **in;
    int n_in;
    tg_tensor *out;
    tg_tensor **saved;
    const uint32_t *fp;          /* per saved tensor, 1 + its fingerprint's index in the tape (shared by every
                                    node saving it); NULL: not checked */
    int n_saved;
    const unsigned char *fresh;  /* during backward, TG__FILLS ops only: fresh[i] set when grads[i] holds
                                    nothing yet (not even zeros); NULL otherwise */
};

/* Whether a TG__FILLS backward assigns grads[i] (see tg__op). */
static inline int tg__fresh(const tg__node *node, int i) { return node->fresh && node->fresh[i]; }

/* The shared path of every op: see tg__op. in[0..n) may hold NULLs (the first error is kept).
   NULL on failure. */
tg_tensor *tg__apply(tg_tape *tape, const tg__op *op, tg_tensor *const *in, int n, const tg__args *args);
/* The arguments of an op that takes none: one constant, where a compound literal is zeroed at every call. */
static const tg__args tg__no_args;
/* A node's name: the custom op's, else the built-in's. */
const char *tg__node_name(const tg__node *node);

/* errors (core/error.c): the one place every failure passes through */
tg_status tg__fail(tg_status status, const char *fmt, ...);
/* Puts a context before this thread's message, keeping its status, and returns the status: a composed
   function (a layer) names itself and where it was, as "tg_time_rnn_forward: step 17: " before
   "tg_tanh: out of memory ...", which alone would not say which layer or step ran out. Every layer
   does this for failures of the ops it runs (TimeRNN: per step; an LSTM or GRU should too). */
tg_status tg__context(const char *fmt, ...);
/* For a NULL argument: TG_EINVAL "fn: name is NULL", unless an earlier failure is pending, whose
   status is returned and whose message kept: a NULL is most often what that failure returned. */
tg_status tg__null(const char *fn, const char *name);
/* This thread's status and message, kept aside and put back: a check that turns a failure it provoked
   into a result leaves the caller's error as it was. */
typedef struct {
    tg_status status;
    char message[512];
} tg__error;
void tg__error_save(tg__error *e);
void tg__error_restore(const tg__error *e);
/* How many failures this thread has had: a callback that set its own reason shows as a change. */
uint64_t tg__fail_count(void);
/* "(4,3)" into buf, which must hold TG__SHAPE_STR bytes. */
#define TG__SHAPE_STR 192
const char *tg__shape_str(int ndim, const int64_t *shape, char *buf);
const char *tg__dtype_name(tg_dtype dtype);

/* Names a caller's leaf t (a copy of name) unless it has a name already: an op output, or a leaf named
   before, is left as it is. One atomic exchange, so threads sharing t may call it at once (one name wins).
   For tg_params_add and the layers, which name the leaves they are given. TG_ENOMEM naming fn. */
tg_status tg__name_once(const char *fn, tg_tensor *t, const char *name);

/* allocation (core/tensor.c): every malloc of the library, 64-byte aligned. A test build makes the
   k-th call fail with tg__alloc_fail_at(k) (0: never), to prove each caller reports TG_ENOMEM and
   leaks nothing. */
void *tg__malloc(size_t size);
void *tg__calloc(size_t size);
void tg__free(void *p);
void tg__alloc_fail_at(int64_t k);
int64_t tg__alloc_count(void);
/* tg__malloc refuses a block larger than the machine's physical memory. Tests set the figure it goes by
   (thread-local; 0: the machine's own), to see a refusal without a request that large. */
void tg__alloc_set_memory(uint64_t bytes);
/* Whether a tg__malloc on this thread has returned NULL since the last call with reset set, which then
   clears it: tells a library's NULL that means out of memory (cJSON's) from one that means bad input. */
int tg__alloc_failed(int reset);

/* Bytes per element: 4 for f32, 8 for f64 and i64. */
static inline size_t tg__dsize(tg_dtype dtype) { return dtype == TG_F32 ? sizeof(float) : sizeof(double); }
static inline int tg__is_float(tg_dtype dtype) { return dtype == TG_F32 || dtype == TG_F64; }
/* numel of a shape into *numel; TG_ESHAPE for a negative dim, TG_ENOMEM when bytes overflow.
   fn names the caller in the message. */
tg_status tg__numel(const char *fn, tg_dtype dtype, int ndim, const int64_t *shape, int64_t *numel);
int tg__nonfinite(const tg_tensor *t, const void *data);

/* Runs the statements with T typedef'd to float or double, as dtype says: one body for both. */
#define TG__DISPATCH(dtype, ...)                                                                   \
    do {                                                                                           \
        if ((dtype) == TG_F32) {                                                                   \
            typedef float T;                                                                       \
            __VA_ARGS__                                                                            \
        } else {                                                                                   \
            typedef double T;                                                                      \
            __VA_ARGS__                                                                            \
        }                                                                                          \
    } while (0)

/* Forced inlining where the compiler declines: tg__apply's parts, specialised for the input count;
   check_saved, called from two places in run_node (a call there cost 5 % of an op's tape overhead), and
   run_node in tg_backward's loop (2 %); the binary ops' one body inside each of its TG__CLONES copies (a
   call would leave it unvectorized). */
#if defined(__GNUC__)
#define TG__INLINE inline __attribute__((always_inline))
#else
#define TG__INLINE inline
#endif

/* An element-wise loop worth wider vectors: a copy for AVX-512 and one for AVX2 beside the baseline
   x86-64 one, picked when the library loads (target_clones, through glibc's ifunc). The baseline build
   stays what runs on any x86-64. -ffp-contract=off (meson.build; c11's default, gnu11's is to fuse) keeps
   the AVX-512 copy from fusing a multiply and an add, so that every copy gives the baseline's bits.
   GCC only: clang 14 emits no symbol for an extern function's copies (the fuzz build failed to link).
   Not under ThreadSanitizer: glibc runs the copies' resolvers before TSan is set up, which crashes. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TG__TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define TG__TSAN 1
#endif
#if defined(__x86_64__) && defined(__ELF__) && !defined(TG__TSAN) && defined(__GNUC__) && !defined(__clang__)
#define TG__CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TG__CLONES
#endif

/* Custom ops' callbacks (core/callback.c): what tg_custom_keep, tg_custom_kept and tg_custom_scratch
   answer while one runs. A custom op's node saves its inputs, its output, then the tensors its forward
   kept: node->saved[n_in + 1 + j] is kept tensor j. */
enum { TG__MAX_KEPT = 8 };
typedef struct {
    tg_tensor *t[TG__MAX_KEPT];
    int n;
    int leaves; /* 1: malloc'd leaves this set owns (tg__kept_free), reused by the next forward while their
                   shapes fit (tg_gradcheck_nodes' reruns); 0: outputs of the tape's recording */
} tg__kept;
/* Runs op's forward into out; a TG__KEEPS op's with tg_custom_keep filling *kept (emptied first) and
   tg_custom_scratch taking from tape. */
tg_status tg__forward(tg_tape *tape, const tg__op *op, tg_tensor *const *in, int n, const tg__args *args,
                      tg_tensor *out, tg__kept *kept);
typedef tg_status (*tg__backward_fn)(const tg__node *, const tg_tensor *, void *const *);
/* Runs backward (node's op's, or a test's planted one) for a custom op's node, with tg_custom_kept
   reading node's kept tensors and tg_custom_scratch taking from tape. */
tg_status tg__custom_backward(tg_tape *tape, const tg__node *node, tg__backward_fn backward, const tg_tensor *gout,
                              void *const *grads);
void tg__kept_free(tg__kept *kept);
/* How many tensors a node's forward kept (TG__KEEPS ops only). */
static inline int tg__n_kept(const tg__node *node) {
    return (node->op->flags & TG__KEEPS) ? node->n_saved - node->n_in - 1 : 0;
}
/* Input i's name in messages: names[i] (a built-in op's, or a custom op's input_names), else "input i"
   written into buf. */
const char *tg__input_name(const char *const *names, int i, char *buf, size_t size);
/* The same as a phrase: "input gamma", "input 2". */
const char *tg__input_label(const char *const *names, int i, char *buf, size_t size);
static inline const char *const *tg__names(const tg__op *op, const tg__args *args) {
    return args->def ? args->def->input_names : op->names;
}

/* tape (core/tape.c, core/arena.c) */
void *tg__arena_alloc(tg_tape *tape, size_t size, int zero);
/* Runs node k's backward (adding into grads, as the tape does). With check set it runs it twice (with
   scratch that tape keeps), the
   second time on buffers holding a known pattern more, and fails (TG_EINVAL, "backward of <op> (node k)
   overwrites its gradient ...") unless the second run added the same amounts: the gradient checks'
   proof that a backward adds rather than assigns. */
tg_status tg__node_backward(tg_tape *tape, const tg__node *node, int64_t k, const tg_tensor *gout,
                            void *const *grads, int check);
/* A layer's private intermediate t (an op output of this recording that no one else holds, whose consumers
   are all recorded) is done with: unless a node saved it (or it is retained, or was never recorded), its
   data goes back to the tape for the next output or gradient of its size, and t->data becomes NULL.
   Backward reads no unsaved data; tg_gradcheck_nodes recomputes such an input from its node. */
void tg__tape_release(tg_tape *tape, tg_tensor *t);
/* Gradient checks turn that proof on for every node of a tape's backward. */
void tg__tape_check_accumulate(tg_tape *tape, int on);
/* How many tensors TG_CHECK_SAVED hashed for the current recording, when saved and in backward. */
int64_t tg__tape_hashes(const tg_tape *tape);
/* Node k of the current recording; NULL when there is none. */
const tg__node *tg__tape_node(const tg_tape *tape, int64_t k);
/* Tests: op's backward becomes `backward` on this thread (NULL restores it); one op at a time. */
void tg__override_backward(const tg__op *op, tg_status (*backward)(const tg__node *, const tg_tensor *, void *const *));
/* 1 (and TG_ESTATE naming fn and what) when t is an op output of a recording that tg_tape_reset
   ended. Only the last ended recording is told for sure: headers alternate between two pools, so an
   output two resets old may stand in a header the current recording reuses; when that header is an
   intermediate whose data a layer released (NULL), it is refused too, as nothing may read it. */
int tg__stale(const char *fn, const char *what, const tg_tensor *t);
/* The one check of a tensor argument that every public function runs before touching the tensor's
   data: TG_OK, or tg__null's status for NULL (an earlier failure is kept), or TG_ESTATE for an output
   of an ended recording, whose data the next recording owns or the reset freed. Either way the message
   names fn and what ("tg_time_rnn_set_state: h is an output of a recording that tg_tape_reset ended").
   A layer's state setter (TimeRNN's, and any LSTM's or GRU's) checks its tensors with it too.
   (Such an output is memory-safe to refuse: headers live until tg_tape_free; only data moves.) */
tg_status tg__arg(const char *fn, const char *what, const tg_tensor *t);

#endif
