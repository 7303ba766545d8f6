/* Tensors the caller owns, the library's one allocator, hashing and the RNG. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>
#include "arena.h" /* the tape's gen, which tells an output of an ended recording */

/* Fault injection for tests: thread-local so parallel tests do not disturb each other. */
static _Thread_local int64_t alloc_calls, alloc_fail_at;
/* Set by every tg__malloc that returns NULL, injected or real; see tg__alloc_failed. */
static _Thread_local int alloc_failed;

int tg__alloc_failed(int reset) {
    int failed = alloc_failed;
    if (reset) alloc_failed = 0;
    return failed;
}

void tg__alloc_fail_at(int64_t k) {
    alloc_calls = 0;
    alloc_fail_at = k;
}
int64_t tg__alloc_count(void) { return alloc_calls; }

static _Thread_local uint64_t memory_override;
void tg__alloc_set_memory(uint64_t bytes) { memory_override = bytes; }

/* The machine's physical memory in bytes (0 when the system does not say). */
static uint64_t machine_memory(void) {
    if (memory_override) return memory_override;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
}

void *tg__malloc(size_t size) {
    void *p = NULL;
    if (alloc_fail_at > 0 && ++alloc_calls == alloc_fail_at) {
        alloc_failed = 1;
        return NULL;
    }
    if (alloc_fail_at <= 0) alloc_calls++;
    /* Everything tapegrad allocates is written in full (zero-filled, or computed), so a block larger than
       the machine's memory can never be used. Overcommitting kernels grant it anyway and the OOM killer
       ends the process while it is being filled: refusing it here is a TG_ENOMEM instead. (A block under
       64 MiB, which fits any machine this runs on, is not checked: sysconf costs a system call.) */
    uint64_t mem = size >= (size_t)1 << 26 ? machine_memory() : 0;
    if (mem && (uint64_t)size > mem) {
        alloc_failed = 1;
        return NULL;
    }
    /* aligned_alloc wants a multiple of the alignment; 64 bytes is a cache line and an AVX-512 row. */
    if (size <= SIZE_MAX - 63) {
        size_t rounded = (size + 63) & ~(size_t)63;
        p = aligned_alloc(64, rounded ? rounded : 64);
    }
    if (!p) alloc_failed = 1;
    return p;
}

void *tg__calloc(size_t size) {
    void *p = tg__malloc(size);
    if (p) memset(p, 0, size);
    return p;
}

void tg__free(void *p) { free(p); }

tg_status tg__numel(const char *fn, tg_dtype dtype, int ndim, const int64_t *shape, int64_t *numel) {
    char buf[TG__SHAPE_STR];
    if (dtype != TG_F32 && dtype != TG_F64 && dtype != TG_I64)
        return tg__fail(TG_EINVAL, "%s: unknown dtype %d", fn, (int)dtype);
    if (ndim < 0 || ndim > TG_MAX_DIMS)
        return tg__fail(TG_EINVAL, "%s: ndim %d is outside 0..%d", fn, ndim, TG_MAX_DIMS);
    if (ndim > 0 && !shape) return tg__fail(TG_EINVAL, "%s: shape is NULL for ndim %d", fn, ndim);
    int64_t n = 1, limit = (int64_t)((SIZE_MAX / 2 < (uint64_t)INT64_MAX ? SIZE_MAX / 2 : INT64_MAX) /
                                     tg__dsize(dtype));
    int empty = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return tg__fail(TG_ESHAPE, "%s: negative dimension %lld in shape %s", fn, (long long)shape[i],
                            tg__shape_str(ndim, shape, buf));
        empty |= shape[i] == 0;
    }
    /* An empty tensor is valid whatever its other dims: (2^40, 2^40, 0) holds nothing. */
    if (empty) {
        *numel = 0;
        return TG_OK;
    }
    /* an overflow check per dim without a division (every op output passes here) */
    for (int i = 0; i < ndim; i++)
        if (__builtin_mul_overflow(n, shape[i], &n) || n > limit)
            return tg__fail(TG_ENOMEM, "%s: shape %s has too many elements to address", fn,
                            tg__shape_str(ndim, shape, buf));
    *numel = n;
    return TG_OK;
}

/* A leaf's header: no gradient, no flags, no tape, no node; the dims past ndim zero. */
static void leaf_init(tg_tensor *t, tg_dtype dtype, int ndim, const int64_t *shape, int64_t numel, void *data) {
    *t = (tg_tensor){.dtype = dtype, .ndim = ndim, .numel = numel, .data = data, .node = -1};
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
}

static tg_tensor *new_leaf(const char *fn, tg_dtype dtype, int ndim, const int64_t *shape, int param) {
    int64_t numel;
    if (tg__numel(fn, dtype, ndim, shape, &numel)) return NULL;
    size_t bytes = (size_t)numel * tg__dsize(dtype);
    tg_tensor *t = tg__calloc(sizeof *t);
    void *data = t ? tg__calloc(bytes) : NULL;
    void *grad = data && param ? tg__calloc(bytes) : NULL;
    if (!t || !data || (param && !grad)) {
        tg__free(t);
        tg__free(data);
        tg__fail(TG_ENOMEM, "%s: out of memory for %lld elements", fn, (long long)numel);
        return NULL;
    }
    leaf_init(t, dtype, ndim, shape, numel, data);
    t->grad = grad;
    t->flags = TG__OWNED | (param ? TG__PARAM | TG__NEEDS : 0);
    return t;
}

tg_tensor *tg_tensor_new(tg_dtype dtype, int ndim, const int64_t *shape) {
    return new_leaf("tg_tensor_new", dtype, ndim, shape, 0);
}

tg_tensor *tg_param_new(tg_dtype dtype, int ndim, const int64_t *shape) {
    if (dtype == TG_I64) {
        tg__fail(TG_EDTYPE, "tg_param_new: dtype i64 holds indices, which have no gradient; parameters "
                 "are f32 or f64");
        return NULL;
    }
    return new_leaf("tg_param_new", dtype, ndim, shape, 1);
}

tg_tensor *tg_tensor_from(tg_dtype dtype, int ndim, const int64_t *shape, const void *data) {
    tg_tensor *t = new_leaf("tg_tensor_from", dtype, ndim, shape, 0);
    if (!t) return NULL;
    if (t->numel && !data) {
        tg__fail(TG_EINVAL, "tg_tensor_from: data is NULL for %lld elements", (long long)t->numel);
        tg_tensor_free(t);
        return NULL;
    }
    if (t->numel) memcpy(t->data, data, (size_t)t->numel * tg__dsize(dtype));
    return t;
}

tg_tensor *tg_tensor_clone(const tg_tensor *t) {
    if (tg__arg("tg_tensor_clone", "t", t)) return NULL;
    return tg_tensor_from(t->dtype, t->ndim, t->shape, t->data);
}

void tg_tensor_free(tg_tensor *t) {
    if (!t || !(t->flags & TG__OWNED)) return;
    tg__free(t->name);
    tg__free(t->data);
    tg__free(t->grad);
    tg__free(t);
}

static char *name_copy(const char *name) {
    size_t len = strlen(name) + 1;
    char *copy = tg__malloc(len);
    return copy ? memcpy(copy, name, len) : NULL;
}

tg_status tg_tensor_set_name(tg_tensor *t, const char *name) {
    static const char fn[] = "tg_tensor_set_name";
    char sb[TG__SHAPE_STR];
    tg_status st = tg__arg(fn, "t", t);
    if (st) return st;
    if (!(t->flags & TG__OWNED))
        return tg__fail(TG_EINVAL, "%s: t %s is an op output; only a caller's leaf has a name", fn,
                        tg__shape_str(t->ndim, t->shape, sb));
    char *copy = NULL;
    if (name && !(copy = name_copy(name))) return tg__fail(TG_ENOMEM, "%s: out of memory for \"%.60s\"", fn, name);
    tg__free(__atomic_exchange_n(&t->name, copy, __ATOMIC_ACQ_REL));
    return TG_OK;
}

const char *tg_tensor_name(const tg_tensor *t) {
    return t && (t->flags & TG__OWNED) ? __atomic_load_n(&t->name, __ATOMIC_ACQUIRE) : NULL;
}

tg_status tg__name_once(const char *fn, tg_tensor *t, const char *name) {
    if (!(t->flags & TG__OWNED) || __atomic_load_n(&t->name, __ATOMIC_ACQUIRE)) return TG_OK;
    char *copy = name_copy(name), *none = NULL;
    if (!copy) return tg__fail(TG_ENOMEM, "%s: out of memory naming %s", fn, name);
    if (!__atomic_compare_exchange_n(&t->name, &none, copy, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) tg__free(copy);
    return TG_OK;
}

tg_dtype tg_tensor_dtype(const tg_tensor *t) { return t ? t->dtype : TG_F32; }
int tg_tensor_ndim(const tg_tensor *t) { return t ? t->ndim : 0; }
const int64_t *tg_tensor_shape(const tg_tensor *t) { return t ? t->shape : NULL; }
int64_t tg_tensor_numel(const tg_tensor *t) { return t ? t->numel : 0; }
void *tg_tensor_data(tg_tensor *t) { return t && !tg__stale("tg_tensor_data", "t", t) ? t->data : NULL; }
/* One check for the four typed views: the dtype the caller's code was written for, or a loud NULL. */
static void *typed(const char *fn, const char *what, const tg_tensor *t, void *p, tg_dtype want) {
    char sb[TG__SHAPE_STR];
    if (t->dtype == want) return p;
    tg__fail(TG_EDTYPE, "%s: %s %s is %s, not %s", fn, what, tg__shape_str(t->ndim, t->shape, sb),
             tg__dtype_name(t->dtype), tg__dtype_name(want));
    return NULL;
}
float *tg_tensor_f32(tg_tensor *t) {
    if (tg__arg("tg_tensor_f32", "t", t)) return NULL;
    return typed("tg_tensor_f32", "t", t, t->data, TG_F32);
}
double *tg_tensor_f64(tg_tensor *t) {
    if (tg__arg("tg_tensor_f64", "t", t)) return NULL;
    return typed("tg_tensor_f64", "t", t, t->data, TG_F64);
}
float *tg_grad_f32(const tg_tensor *input, void *grad) {
    if (!input) return tg__null("tg_grad_f32", "input"), NULL;
    return grad ? typed("tg_grad_f32", "the gradient of input", input, grad, TG_F32) : NULL;
}
double *tg_grad_f64(const tg_tensor *input, void *grad) {
    if (!input) return tg__null("tg_grad_f64", "input"), NULL;
    return grad ? typed("tg_grad_f64", "the gradient of input", input, grad, TG_F64) : NULL;
}
void *tg_tensor_grad(tg_tensor *t) { return t && !tg__stale("tg_tensor_grad", "t", t) ? t->grad : NULL; }
int tg_tensor_requires_grad(const tg_tensor *t) { return t && (t->flags & TG__NEEDS) ? 1 : 0; }

void tg_zero_grad(tg_tensor *t) {
    if (t && (t->flags & TG__PARAM)) memset(t->grad, 0, (size_t)t->numel * tg__dsize(t->dtype));
}

uint64_t tg_tensor_hash(const tg_tensor *t) {
    if (!t || tg__stale("tg_tensor_hash", "t", t)) return 0;
    /* dtype and shape are hashed too: a (2,3) and a (3,2) of equal bytes are different tensors. */
    int64_t head[2 + TG_MAX_DIMS] = {(int64_t)t->dtype, t->ndim};
    memcpy(head + 2, t->shape, (size_t)t->ndim * sizeof(int64_t));
    uint64_t seed = XXH3_64bits(head, (size_t)(2 + t->ndim) * sizeof(int64_t));
    return XXH3_64bits_withSeed(t->data, (size_t)t->numel * tg__dsize(t->dtype), seed);
}

double tg_tensor_get(const tg_tensor *t, int64_t i) {
    if (!t || i < 0 || i >= t->numel || tg__stale("tg_tensor_get", "t", t)) return NAN;
    if (t->dtype == TG_I64) return (double)((const int64_t *)t->data)[i];
    return t->dtype == TG_F32 ? ((const float *)t->data)[i] : ((const double *)t->data)[i];
}

tg_status tg_tensor_set(tg_tensor *t, int64_t i, double value) {
    if (!t) return tg__null("tg_tensor_set", "t");
    if (i < 0 || i >= t->numel)
        return tg__fail(TG_EINVAL, "tg_tensor_set: index %lld outside 0..%lld", (long long)i,
                        (long long)t->numel - 1);
    if (tg__stale("tg_tensor_set", "t", t)) return TG_ESTATE;
    if (t->dtype == TG_I64) {
        /* An index is an integer: a fraction or a value outside int64's range would be truncated. */
        if (!(value == floor(value) && value >= -0x1p63 && value < 0x1p63))
            return tg__fail(TG_EINVAL, "tg_tensor_set: %g is not an int64 value for an i64 tensor", value);
        ((int64_t *)t->data)[i] = (int64_t)value;
    } else if (t->dtype == TG_F32) {
        ((float *)t->data)[i] = (float)value;
    } else {
        ((double *)t->data)[i] = value;
    }
    return TG_OK;
}

int tg__nonfinite(const tg_tensor *t, const void *data) {
    if (t->dtype == TG_I64) return 0;
    if (t->dtype == TG_F32) {
        const float *p = data;
        for (int64_t i = 0; i < t->numel; i++)
            if (!isfinite(p[i])) return 1;
    } else {
        const double *p = data;
        for (int64_t i = 0; i < t->numel; i++)
            if (!isfinite(p[i])) return 1;
    }
    return 0;
}

/* ---- printing, as NumPy's repr of an array ---- */

/* After an entry: ", " within the last axis; between rows a newline per axis they close, then the
   indent of the brackets still open. */
static void print_sep(FILE *out, int lines, int indent) {
    fputc(',', out);
    if (!lines) fputc(' ', out);
    for (int i = 0; i < lines; i++) fputc('\n', out);
    for (int i = 0; lines && i < indent; i++) fputc(' ', out);
}

static void print_axis(FILE *out, const tg_tensor *t, int d, int64_t off, const int64_t *stride, int summarize) {
    if (d == t->ndim) {
        if (t->dtype == TG_I64) fprintf(out, "%lld", (long long)((const int64_t *)t->data)[off]);
        else fprintf(out, "%g", tg_tensor_get(t, off));
        return;
    }
    int64_t n = t->shape[d];
    int lines = t->ndim - d - 1;
    fputc('[', out);
    for (int64_t k = 0; k < n; k++) {
        if (k) print_sep(out, lines, d + 1);
        if (summarize && n > 6 && k == 3) { /* NumPy's summary: the first and last 3 of each axis */
            fputs("...", out);
            print_sep(out, lines, d + 1);
            k = n - 3;
        }
        print_axis(out, t, d + 1, off + k * stride[d], stride, summarize);
    }
    fputc(']', out);
}

tg_status tg_tensor_print(const tg_tensor *t, FILE *out) {
    char sb[TG__SHAPE_STR];
    if (!t || !out) return tg__null("tg_tensor_print", t ? "out" : "t");
    if (tg__stale("tg_tensor_print", "t", t)) return TG_ESTATE;
    fprintf(out, "tensor %s %s\n", tg__dtype_name(t->dtype), tg__shape_str(t->ndim, t->shape, sb));
    if (t->numel == 0 && t->ndim) {
        fputs("[]\n", out);
    } else {
        /* Only now: an empty tensor's other dims may be huge, and their product overflow (fuzz_ops found
           (0,7,9223372036854775807)). A full tensor's strides are at most its element count. */
        int64_t stride[TG_MAX_DIMS], s = 1;
        for (int d = t->ndim - 1; d >= 0; d--) stride[d] = s, s *= t->shape[d];
        print_axis(out, t, 0, 0, stride, t->numel > 1000);
        fputc('\n', out);
    }
    return ferror(out) ? tg__fail(TG_EIO, "tg_tensor_print: writing failed") : TG_OK;
}

int tg__stale(const char *fn, const char *what, const tg_tensor *t) {
    /* An output two resets old may stand in a header that the current recording gave to an intermediate
       whose data a layer has released (tg__tape_release): its data is NULL, and it is refused as well. */
    if (!t->tape || (t->gen == t->tape->gen && t->data)) return 0;
    tg__fail(TG_ESTATE, "%s: %s is an output of a recording that tg_tape_reset ended", fn, what);
    return 1;
}

tg_status tg__arg(const char *fn, const char *what, const tg_tensor *t) {
    if (!t) return tg__null(fn, what);
    return tg__stale(fn, what, t) ? TG_ESTATE : TG_OK;
}
