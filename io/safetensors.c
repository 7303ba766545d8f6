/* .npy and safetensors files. A load reads the whole file and checks every size and offset against its
   real length before any of it is used; a save writes a temporary file and renames it over the target. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <threads.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "tg_io.h"
#include "tg_internal.h"

/* Both formats are little-endian and tensor data is copied as is. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tapegrad's file IO assumes a little-endian machine"
#endif

/* safetensors' own limit: a header past it is a hostile or broken file, not a big model. */
#define ST_MAX_HEADER 100000000u

/* Up to 72 bytes of untrusted text, made printable, for a message. out holds SNIP bytes. */
#define SNIP 80
static const char *snippet(const unsigned char *p, size_t n, char *out) {
    size_t k = 0;
    for (; k < n && k < SNIP - 8; k++) out[k] = p[k] >= 32 && p[k] < 127 ? (char)p[k] : '?';
    if (k < n) memcpy(out + k, "...", 3), k += 3;
    out[k] = '\0';
    return out;
}

/* A NULL element of an array argument: tg__null with the element named, "names[2]". */
static tg_status null_elem(const char *fn, const char *what, int i) {
    char name[48];
    snprintf(name, sizeof name, "%s[%d]", what, i);
    return tg__null(fn, name);
}

/* cJSON allocates through tapegrad's allocator, so that its out-of-memory is reported as such (and
   allocation-failure tests reach it). cJSON's hooks are one process-wide setting, written here once,
   before the first use, by whichever thread comes first: call_once makes that write race-free. */
static once_flag cjson_once = ONCE_FLAG_INIT;
static void cjson_hooks(void) {
    cJSON_Hooks h = {tg__malloc, tg__free};
    cJSON_InitHooks(&h);
}

/* A file that is not what it claims: TG_EFORMAT, with the function and the path before what was found. */
static tg_status bad(const char *fn, const char *path, const char *fmt, ...) {
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return tg__fail(TG_EFORMAT, "%s: %s: %s", fn, path, why);
}

/* tg_tensor_from's failure (out of memory), restated to name the file. */
static tg_status restate(const char *fn, const char *path) {
    char why[256];
    snprintf(why, sizeof why, "%s", tg_last_error());
    return tg__fail(tg_last_status(), "%s: %s: %s", fn, path, why);
}

/* The one place that names dtypes in files: .npy's descr and safetensors' dtype string. */
static const struct {
    tg_dtype dtype;
    const char *npy, *st;
} file_dtypes[] = {{TG_F32, "<f4", "F32"}, {TG_F64, "<f8", "F64"}, {TG_I64, "<i8", "I64"}};
#define N_FILE_DTYPES ((int)(sizeof file_dtypes / sizeof file_dtypes[0]))

static int dtype_index(tg_dtype dtype) {
    for (int i = 0; i < N_FILE_DTYPES; i++)
        if (file_dtypes[i].dtype == dtype) return i;
    return 0;
}

/* A file's dtype string (st: safetensors', else .npy's) into *dtype; 0 when tapegrad has no such dtype. */
static int dtype_from(const char *name, int st, tg_dtype *dtype) {
    for (int i = 0; i < N_FILE_DTYPES; i++)
        if (!strcmp(name, st ? file_dtypes[i].st : file_dtypes[i].npy)) return *dtype = file_dtypes[i].dtype, 1;
    return 0;
}

/* numel x size, or UINT64_MAX when that overflows, which no real byte count equals (it is odd; sizes are
   4 and 8). Messages say "overflows" rather than print it. */
#define OVERFLOWS UINT64_MAX
static uint64_t nbytes(int ndim, const int64_t *shape, size_t size) {
    uint64_t n = size;
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0) return 0;
    for (int i = 0; i < ndim; i++) {
        if (n > UINT64_MAX / (uint64_t)shape[i]) return OVERFLOWS;
        n *= (uint64_t)shape[i];
    }
    return n;
}

/* ---- the two halves every format shares: read a whole file, replace a file atomically ---- */

/* What a file that is not a regular one is, for a message. */
static const char *file_kind(mode_t mode) {
    return S_ISDIR(mode)    ? "a directory"
           : S_ISFIFO(mode) ? "a FIFO (named pipe)"
           : S_ISCHR(mode)  ? "a character device"
           : S_ISBLK(mode)  ? "a block device"
           : S_ISSOCK(mode) ? "a socket"
                            : "neither a file nor a directory";
}

/* The whole of a regular file, from tg__malloc. Opened non-blocking: a plain open of a FIFO waits for a
   writer that may never come, and only fstat on the open descriptor says what the path really is (a
   stat before the open could be of another file). For a regular file O_NONBLOCK changes nothing. */
static tg_status read_file(const char *fn, const char *path, unsigned char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return tg__fail(TG_EIO, "%s: cannot open %s: %s", fn, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return tg__fail(TG_EIO, "%s: cannot stat %s: %s", fn, path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return tg__fail(TG_EIO, "%s: %s is not a regular file: it is %s", fn, path, file_kind(st.st_mode));
    }
    /* The size is trusted: a file of /proc reports 0 and holds text, which no tensor file is. */
    if (st.st_size == 0) {
        close(fd);
        return tg__fail(TG_EFORMAT, "%s: %s: the file is empty (size 0)", fn, path);
    }
    if ((uintmax_t)st.st_size > SIZE_MAX / 2) {
        close(fd);
        return tg__fail(TG_ENOMEM, "%s: %s is too large to read (%jd bytes)", fn, path, (intmax_t)st.st_size);
    }
    size_t n = (size_t)st.st_size, got = 0;
    unsigned char *p = tg__malloc(n);
    if (!p) {
        close(fd);
        return tg__fail(TG_ENOMEM, "%s: out of memory for the %zu bytes of %s", fn, n, path);
    }
    int err = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r > 0) {
            got += (size_t)r;
        } else if (r == 0) {
            break;
        } else if (errno != EINTR) {
            err = errno;
            break;
        }
    }
    close(fd);
    if (got != n) {
        tg__free(p);
        return tg__fail(TG_EIO, "%s: cannot read %s: %s", fn, path,
                        err ? strerror(err) : "it shrank while read");
    }
    *buf = p;
    *len = n;
    return TG_OK;
}

/* Test hook: the k-th low-level write step of a save fails with EIO. Thread-local, as tg__alloc_fail_at. */
static _Thread_local int64_t write_steps, write_fail_at;

void tg__io_fail_write_at(int64_t k) {
    write_steps = 0;
    write_fail_at = k;
}

static int injected(void) {
    if (write_fail_at > 0 && ++write_steps == write_fail_at) {
        errno = EIO;
        return 1;
    }
    return 0;
}

/* mkstemp makes 0600; a saved file should get the mode a plain fopen would have given it: the old
   file's, else 0666 less the umask. umask() can only be read by setting it, which races other threads,
   so Linux's /proc is asked, and 022 assumed without it. */
static mode_t target_mode(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) return st.st_mode & 07777;
    unsigned mask = 022;
    char line[128];
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Umask: %o", &mask) == 1) break;
    if (f) fclose(f);
    return (mode_t)(0666 & ~mask);
}

typedef struct {
    const void *p;
    size_t n;
} chunk;

/* Writes the chunks to "<path>.tmpXXXXXX" beside path and renames it over path: readers see the old
   file or the new one, never a part. On failure the temporary file is removed and path is untouched. */
static tg_status save_atomic(const char *fn, const char *path, const chunk *c, int n) {
    size_t plen = strlen(path);
    char *tmp = tg__malloc(plen + sizeof ".tmpXXXXXX");
    if (!tmp) return tg__fail(TG_ENOMEM, "%s: out of memory for a temporary name beside %s", fn, path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmpXXXXXX", sizeof ".tmpXXXXXX");
    mode_t mode = target_mode(path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        tg_status st =
            tg__fail(TG_EIO, "%s: cannot create a temporary file beside %s: %s", fn, path, strerror(errno));
        tg__free(tmp);
        return st;
    }
    const char *step = NULL;
    int err = 0;
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        step = "fdopen", err = errno;
        close(fd);
    }
    for (int i = 0; !step && i < n; i++)
        if (c[i].n && (injected() || fwrite(c[i].p, 1, c[i].n, f) != c[i].n)) step = "write", err = errno;
    if (!step && (injected() || fflush(f) != 0)) step = "flush", err = errno;
    /* Best effort: some filesystems (vfat) refuse modes, and the data matters more than its mode. */
    if (!step) (void)fchmod(fd, mode);
    if (!step && (injected() || fsync(fd) != 0)) step = "fsync", err = errno;
    if (f) {
        int closed = fclose(f);
        if (!step && (injected() || closed != 0)) step = "close", err = errno;
    }
    if (!step && (injected() || rename(tmp, path) != 0)) step = "rename", err = errno;
    tg_status st = TG_OK;
    if (step) {
        unlink(tmp);
        st = tg__fail(TG_EIO, "%s: cannot write %s (%s: %s)", fn, path, step, strerror(err));
    }
    tg__free(tmp);
    return st;
}

/* ---- .npy ---- */

/* NumPy's header is a Python dict literal, as {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
   This reads exactly the literals NumPy writes there, and nothing it would not accept. */
typedef struct {
    const unsigned char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int eat(cursor *c, char ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == (unsigned char)ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted string without escapes or control bytes, shorter than cap. */
static int py_str(cursor *c, char *out, size_t cap) {
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return 0;
    unsigned char quote = *c->p++;
    size_t n = 0;
    for (; c->p < c->end && *c->p != quote; c->p++) {
        if (*c->p == '\\' || *c->p < 32 || n + 1 >= cap) return 0;
        out[n++] = (char)*c->p;
    }
    if (c->p == c->end) return 0;
    c->p++;
    out[n] = '\0';
    return 1;
}

static int py_bool(cursor *c, int *v) {
    skip_ws(c);
    size_t left = (size_t)(c->end - c->p);
    if (left >= 4 && !memcmp(c->p, "True", 4)) return c->p += 4, *v = 1, 1;
    if (left >= 5 && !memcmp(c->p, "False", 5)) return c->p += 5, *v = 0, 1;
    return 0;
}

typedef struct {
    char descr[16];
    int fortran, ndim;
    int64_t shape[TG_MAX_DIMS];
} npy_header;

static const char *py_shape(cursor *c, npy_header *h) {
    if (!eat(c, '(')) return "shape is not a tuple";
    int comma = 1;
    h->ndim = 0;
    while (!eat(c, ')')) {
        if (!comma) return "shape is not a tuple";
        skip_ws(c);
        if (c->p < c->end && *c->p == '-') return "shape has a negative dimension";
        if (c->p == c->end || *c->p < '0' || *c->p > '9') return "shape holds something other than integers";
        int64_t d = 0;
        for (; c->p < c->end && *c->p >= '0' && *c->p <= '9'; c->p++) {
            if (d > (INT64_MAX - (*c->p - '0')) / 10) return "shape has a dimension of 2^63 or more";
            d = d * 10 + (*c->p - '0');
        }
        if (h->ndim == TG_MAX_DIMS) return "shape has more than 8 dimensions";
        h->shape[h->ndim++] = d;
        comma = eat(c, ',');
    }
    /* (3) is the integer 3 in Python, not a tuple */
    if (h->ndim == 1 && !comma) return "shape is not a tuple";
    return NULL;
}

/* NULL when the dict is well formed, else what is wrong (in why, or a constant). */
static const char *npy_dict(cursor *c, npy_header *h, char *why, size_t whylen) {
    static const char *const keys[] = {"descr", "fortran_order", "shape"};
    int seen = 0;
    if (!eat(c, '{')) return "it is not a dict";
    while (!eat(c, '}')) {
        char key[16];
        int k = 0;
        if (!py_str(c, key, sizeof key)) return "a key is not a short string";
        while (k < 3 && strcmp(key, keys[k])) k++;
        if (k == 3) return snprintf(why, whylen, "unknown key '%s'", key), why;
        if (seen & (1 << k)) return snprintf(why, whylen, "key '%s' appears twice", key), why;
        seen |= 1 << k;
        if (!eat(c, ':')) return "no ':' after a key";
        const char *wrong = k == 0 && !py_str(c, h->descr, sizeof h->descr) ? "descr is not a short string"
                            : k == 1 && !py_bool(c, &h->fortran) ? "fortran_order is not True or False"
                            : k == 2                             ? py_shape(c, h)
                                                                 : NULL;
        if (wrong) return wrong;
        if (!eat(c, ',')) {
            if (!eat(c, '}')) return "no ',' or '}' after a value";
            break;
        }
    }
    skip_ws(c);
    if (c->p != c->end) return "text follows the dict";
    for (int k = 0; k < 3; k++)
        if (!(seen & (1 << k))) return snprintf(why, whylen, "key '%s' is missing", keys[k]), why;
    return NULL;
}

static tg_status npy_parse(const char *path, const unsigned char *buf, size_t len, tg_tensor **out) {
    static const char fn[] = "tg_load_npy";
    char snip[SNIP];
    if (len < 6 || memcmp(buf, "\x93NUMPY", 6))
        return bad(fn, path, "bad magic \"%s\", not a .npy file", snippet(buf, len < 6 ? len : 6, snip));
    if (len < 8) return bad(fn, path, "truncated, %zu bytes end inside the preamble", len);
    /* 2.0 only widens the header length to 4 bytes; 3.0 allows utf-8 names tapegrad has no use for. */
    if ((buf[6] != 1 && buf[6] != 2) || buf[7] != 0)
        return bad(fn, path, "unsupported .npy version %d.%d (tapegrad reads 1.0 and 2.0)", buf[6], buf[7]);
    size_t pre = buf[6] == 1 ? 10 : 12;
    if (len < pre) return bad(fn, path, "truncated, %zu bytes end inside the preamble", len);
    uint64_t hlen = buf[8] | (uint64_t)buf[9] << 8;
    if (pre == 12) hlen |= (uint64_t)buf[10] << 16 | (uint64_t)buf[11] << 24;
    if (hlen > len - pre)
        return bad(fn, path, "header length %" PRIu64 " runs past the end of the file (%zu bytes)", hlen,
                   len);

    npy_header h = {0};
    cursor c = {buf + pre, buf + pre + hlen};
    char why[64];
    const char *wrong = npy_dict(&c, &h, why, sizeof why);
    if (wrong) return bad(fn, path, "malformed header (%s): %s", wrong, snippet(buf + pre, hlen, snip));
    tg_dtype dtype;
    if (!dtype_from(h.descr, 0, &dtype))
        return bad(fn, path, "%sdtype '%s' is not supported (tapegrad reads '<f4', '<f8' and '<i8')",
                   h.descr[0] == '>' ? "big-endian " : "", h.descr);
    if (h.fortran) return bad(fn, path, "Fortran-order (column-major) data is not supported");
    uint64_t want = nbytes(h.ndim, h.shape, tg__dsize(dtype)), have = len - pre - hlen;
    if (want != have) {
        char s[TG__SHAPE_STR];
        if (want == OVERFLOWS)
            return bad(fn, path, "header says shape %s of '%s', whose byte count overflows 64 bits (%" PRIu64
                       " data bytes follow)", tg__shape_str(h.ndim, h.shape, s), h.descr, have);
        return bad(fn, path,
                   "header says shape %s of '%s', %" PRIu64 " bytes, but %" PRIu64 " data bytes follow",
                   tg__shape_str(h.ndim, h.shape, s), h.descr, want, have);
    }
    *out = tg_tensor_from(dtype, h.ndim, h.shape, buf + pre + hlen);
    return *out ? TG_OK : restate(fn, path);
}

tg_tensor *tg_load_npy(const char *path) {
    if (!path) return tg__null("tg_load_npy", "path"), NULL;
    unsigned char *buf;
    size_t len;
    if (read_file("tg_load_npy", path, &buf, &len)) return NULL;
    tg_tensor *t = NULL;
    npy_parse(path, buf, len, &t);
    tg__free(buf);
    return t;
}

tg_status tg_save_npy(const char *path, tg_tensor *t) {
    if (!path) return tg__null("tg_save_npy", "path");
    tg_status st = tg__arg("tg_save_npy", "t", t);
    if (st) return st;
    /* Byte for byte what np.save writes: the dict, then spaces and '\n' up to a multiple of 64 bytes.
       (NumPy 1.24 also leaves room for the first dim to grow to 21 digits, and pads a whole 64 bytes
       when already aligned; for any shape NumPy can hold, neither changes the 128-byte header.) Eight
       19-digit dims fit far within version 1.0's 64 KiB header, so 2.0 is never needed. */
    char h[320];
    int n = 10 + snprintf(h + 10, 80, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                          file_dtypes[dtype_index(t->dtype)].npy);
    for (int i = 0; i < t->ndim; i++) n += snprintf(h + n, 24, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    n += snprintf(h + n, 8, t->ndim == 1 ? ",), }" : "), }");
    size_t total = ((size_t)n + 1 + 63) / 64 * 64;
    memset(h + n, ' ', total - 1 - (size_t)n);
    h[total - 1] = '\n';
    memcpy(h, "\x93NUMPY\x01\x00", 8);
    h[8] = (char)((total - 10) & 0xff);
    h[9] = (char)((total - 10) >> 8);
    chunk c[2] = {{h, total}, {t->data, (size_t)t->numel * tg__dsize(t->dtype)}};
    return save_atomic("tg_save_npy", path, c, 2);
}

/* ---- safetensors ---- */

typedef struct {
    const char *name; /* inside the cJSON tree */
    tg_dtype dtype;
    int ndim, index;
    int64_t shape[TG_MAX_DIMS];
    uint64_t begin, end;
} st_entry;

/* JSON numbers reach us as doubles, exact as integers up to 2^53: far more than any offset in a file. */
static int json_uint(const cJSON *j, uint64_t *v) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || (double)(uint64_t)d != d) return 0;
    *v = (uint64_t)d;
    return 1;
}

static tg_status st_entry_parse(const char *fn, const char *path, const cJSON *j, uint64_t data_len,
                                st_entry *e) {
    const char *name = j->string;
    if (!name[0]) return bad(fn, path, "a tensor has an empty name");
    if (!cJSON_IsObject(j)) return bad(fn, path, "tensor '%s' is not a JSON object", name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of))
        return bad(fn, path, "tensor '%s' lacks a string dtype, a shape array or a data_offsets array", name);
    if (!dtype_from(dt->valuestring, 1, &e->dtype))
        return bad(fn, path, "tensor '%s' has dtype '%s' (tapegrad reads F32, F64 and I64)", name,
                   dt->valuestring);
    e->name = name;
    e->ndim = cJSON_GetArraySize(sh);
    if (e->ndim > TG_MAX_DIMS)
        return bad(fn, path, "tensor '%s' has %d dimensions (at most %d)", name, e->ndim, TG_MAX_DIMS);
    int i = 0;
    for (const cJSON *d = sh->child; d; d = d->next, i++) {
        uint64_t v;
        if (!json_uint(d, &v))
            return bad(fn, path, "tensor '%s' has a shape entry that is not an integer in 0..2^53", name);
        e->shape[i] = (int64_t)v;
    }
    if (cJSON_GetArraySize(of) != 2 || !json_uint(of->child, &e->begin) ||
        !json_uint(of->child->next, &e->end))
        return bad(fn, path, "tensor '%s' has data_offsets that are not [begin, end] integers", name);
    if (e->begin > e->end)
        return bad(fn, path, "tensor '%s' has data_offsets [%" PRIu64 ", %" PRIu64 "] out of order", name,
                   e->begin, e->end);
    if (e->end > data_len)
        return bad(fn, path,
                   "tensor '%s' has data_offsets [%" PRIu64 ", %" PRIu64 "] outside the %" PRIu64
                   "-byte data",
                   name, e->begin, e->end, data_len);
    uint64_t want = nbytes(e->ndim, e->shape, tg__dsize(e->dtype));
    if (e->end - e->begin != want) {
        char s[TG__SHAPE_STR];
        if (want == OVERFLOWS)
            return bad(fn, path, "tensor '%s' of %s and shape %s has a byte count that overflows 64 bits", name,
                       dt->valuestring, tg__shape_str(e->ndim, e->shape, s));
        return bad(fn, path,
                   "tensor '%s' of %s and shape %s needs %" PRIu64 " bytes, data_offsets [%" PRIu64
                   ", %" PRIu64 "] hold %" PRIu64,
                   name, dt->valuestring, tg__shape_str(e->ndim, e->shape, s), want, e->begin, e->end,
                   (e->end - e->begin));
    }
    return TG_OK;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

/* File order; an empty tensor sits before a full one at the same offset, ties keep the header's order. */
static int by_offset(const void *pa, const void *pb) {
    const st_entry *a = pa, *b = pb;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

/* The entries of the header, checked and in data order, and __metadata__ (NULL when absent). The data
   must be covered exactly: no overlap, no gap, no trailing byte, as the safetensors package demands. */
static tg_status st_entries(const char *fn, const char *path, const cJSON *root, uint64_t data_len,
                            st_entry **out, int *n_out, const cJSON **meta) {
    *meta = NULL;
    int n = 0;
    for (const cJSON *j = root->child; j; j = j->next) n += strcmp(j->string, "__metadata__") != 0;
    st_entry *e = n ? tg__calloc((size_t)n * sizeof *e) : NULL;
    if (n && !e) return tg__fail(TG_ENOMEM, "%s: %s: out of memory for %d tensor entries", fn, path, n);
    *out = e;
    int k = 0;
    for (const cJSON *j = root->child; j; j = j->next) {
        if (strcmp(j->string, "__metadata__")) {
            e[k].index = k;
            tg_status st = st_entry_parse(fn, path, j, data_len, &e[k++]);
            if (st) return st;
            continue;
        }
        if (*meta) return bad(fn, path, "__metadata__ appears twice");
        if (!cJSON_IsObject(j)) return bad(fn, path, "__metadata__ is not an object");
        for (const cJSON *m = j->child; m; m = m->next)
            if (!cJSON_IsString(m))
                return bad(fn, path, "__metadata__ value of '%s' is not a string", m->string);
        *meta = j;
    }
    if (n > 1) qsort(e, (size_t)n, sizeof *e, by_name); /* e is NULL when n is 0, and qsort may not take it */
    for (int i = 1; i < n; i++)
        if (!strcmp(e[i - 1].name, e[i].name))
            return bad(fn, path, "tensor name '%s' appears twice", e[i].name);
    if (n > 1) qsort(e, (size_t)n, sizeof *e, by_offset);
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        if (e[i].begin < at)
            return bad(fn, path,
                       "tensors '%s' [%" PRIu64 ", %" PRIu64 "] and '%s' [%" PRIu64 ", %" PRIu64 "] overlap",
                       e[i - 1].name, e[i - 1].begin, e[i - 1].end, e[i].name, e[i].begin, e[i].end);
        if (e[i].begin > at)
            return bad(fn, path, "the data has a gap at bytes [%" PRIu64 ", %" PRIu64 ") before tensor '%s'",
                       at, e[i].begin, e[i].name);
        at = e[i].end;
    }
    if (at != data_len)
        return bad(fn, path, "%" PRIu64 " trailing data bytes follow the last tensor, which ends at %" PRIu64,
                   (data_len - at), at);
    *n_out = n;
    return TG_OK;
}

/* The xxh3:<name> entry of __metadata__, when present, must be t's hash. */
static tg_status st_check_hash(const char *fn, const char *path, const cJSON *meta, const char *name,
                               const tg_tensor *t) {
    const cJSON *m = NULL;
    for (m = meta ? meta->child : NULL; m; m = m->next)
        if (!strncmp(m->string, "xxh3:", 5) && !strcmp(m->string + 5, name)) break;
    if (!m) return TG_OK;
    const char *s = m->valuestring;
    uint64_t want = 0;
    int i = 0;
    for (; i < 16 && ((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')); i++)
        want = want << 4 | (uint64_t)(s[i] <= '9' ? s[i] - '0' : s[i] - 'a' + 10);
    if (i != 16 || s[16])
        return bad(fn, path, "tensor '%s' has a malformed xxh3 checksum \"%.40s\" (want 16 hex digits)", name,
                   s);
    uint64_t got = tg_tensor_hash(t);
    if (got != want)
        return bad(fn, path,
                   "tensor '%s' fails its xxh3 checksum: the file says %s, the data hashes to %016" PRIx64,
                   name, s, got);
    return TG_OK;
}

/* A tg__malloc'ed copy of s, NULL when out of memory. */
static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = tg__malloc(n);
    return p ? memcpy(p, s, n) : NULL;
}

/* The __metadata__ entries other than the checksums, as key, value, key, value, ... */
static tg_status st_meta_pairs(const char *fn, const char *path, const cJSON *meta, char ***out, int *n_out) {
    int n = 0;
    for (const cJSON *m = meta ? meta->child : NULL; m; m = m->next) n += strncmp(m->string, "xxh3:", 5) != 0;
    char **kv = n ? tg__calloc((size_t)n * 2 * sizeof *kv) : NULL;
    if (n && !kv) return tg__fail(TG_ENOMEM, "%s: %s: out of memory for %d metadata entries", fn, path, n);
    int k = 0;
    for (const cJSON *m = meta ? meta->child : NULL; m; m = m->next) {
        if (!strncmp(m->string, "xxh3:", 5)) continue;
        kv[k] = dup_str(m->string);
        kv[k + 1] = kv[k] ? dup_str(m->valuestring) : NULL;
        k += 2;
        if (!kv[k - 1]) {
            tg_safetensors_free(kv, NULL, k);
            return tg__fail(TG_ENOMEM, "%s: %s: out of memory for the metadata", fn, path);
        }
    }
    *out = kv;
    *n_out = n;
    return TG_OK;
}

/* cJSON decodes "a\u0000b" into a C string that reads "a", and keeps a raw control byte as it is (a
   raw NUL truncating the same way): a name, dtype or metadata value with a NUL would load as another.
   JSON forbids raw control bytes in strings and a C string cannot hold a NUL, so either is refused.
   json is a whole JSON text cJSON accepted, so quotes and escapes pair up. The offending string's start
   into *at; 0 when there is none, else 1 for an escaped NUL, 2 for a raw control byte. */
static int nul_in_string(const char *json, size_t n, size_t *at) {
    size_t start = 0;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)json[i];
        if (!in_str) {
            if (ch == '"') in_str = 1, start = i;
        } else if (ch == '"') {
            in_str = 0;
        } else if (ch < 0x20) {
            return *at = start, 2;
        } else if (ch == '\\') {
            if (i + 5 < n && !memcmp(json + i + 1, "u0000", 5)) return *at = start, 1;
            i++; /* the escaped character, which may be a quote */
        }
    }
    return 0;
}

static tg_status st_parse(const char *fn, const char *path, const unsigned char *buf, size_t len,
                          char ***names_out, tg_tensor ***tensors_out, int *n_out, char ***meta_out,
                          int *n_meta_out) {
    char snip[SNIP];
    if (len < 8) return bad(fn, path, "truncated, %zu bytes end inside the 8-byte header length", len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    if (hlen > ST_MAX_HEADER)
        return bad(fn, path, "header length %" PRIu64 " exceeds the %u-byte limit", hlen, ST_MAX_HEADER);
    if (hlen > len - 8)
        return bad(fn, path, "header length %" PRIu64 " runs past the end of the file (%zu bytes)", hlen,
                   len);
    const unsigned char *hdr = buf + 8;
    if (hlen == 0 || hdr[0] != '{')
        return bad(fn, path, "header does not start with '{': \"%s\"", snippet(hdr, hlen, snip));
    /* cJSON gets its own NUL-terminated copy: older releases have read past a length-bounded buffer. */
    char *json = tg__malloc((size_t)hlen + 1);
    if (!json)
        return tg__fail(TG_ENOMEM, "%s: %s: out of memory for a %" PRIu64 "-byte header", fn, path, hlen);
    memcpy(json, hdr, (size_t)hlen);
    json[hlen] = '\0';
    const char *end = NULL;
    call_once(&cjson_once, cjson_hooks);
    (void)tg__alloc_failed(1);
    cJSON *root = cJSON_ParseWithLengthOpts(json, (size_t)hlen, &end, 0);
    tg_status st = TG_OK;
    size_t at = end ? (size_t)(end - json) : 0;
    if (!root && tg__alloc_failed(0)) {
        /* cJSON returns NULL for both: only the allocator knows which it was */
        st = tg__fail(TG_ENOMEM, "%s: %s: out of memory while parsing the %" PRIu64 "-byte JSON header", fn,
                      path, hlen);
    } else if (!root) {
        st = bad(fn, path, "bad JSON in the header at byte %zu: \"%s\"", at,
                 snippet(hdr + at, hlen - at, snip));
    } else {
        /* the format allows padding with spaces; serde_json, which the package uses, any JSON whitespace */
        while (at < hlen && (json[at] == ' ' || json[at] == '\t' || json[at] == '\n' || json[at] == '\r'))
            at++;
        if (at < hlen)
            st = bad(fn, path, "the header has bytes after the JSON object at byte %zu: \"%s\"", at,
                     snippet(hdr + at, hlen - at, snip));
        int nul = st ? 0 : nul_in_string(json, at, &at);
        if (nul)
            st = bad(fn, path, "the header has a string with %s at byte %zu: \"%s\" (a name or value cannot "
                     "hold one)", nul == 1 ? "an escaped NUL (\\u0000)" : "a raw control byte", at,
                     snippet(hdr + at, hlen - at, snip));
    }
    tg__free(json);
    st_entry *e = NULL;
    const cJSON *meta = NULL;
    int n = 0;
    const unsigned char *data = hdr + hlen;
    if (!st) st = st_entries(fn, path, root, len - 8 - hlen, &e, &n, &meta);
    char **names = NULL;
    tg_tensor **ts = NULL;
    if (!st && n) {
        names = tg__calloc((size_t)n * sizeof *names);
        ts = names ? tg__calloc((size_t)n * sizeof *ts) : NULL;
        if (!ts) st = tg__fail(TG_ENOMEM, "%s: %s: out of memory for %d tensors", fn, path, n);
    }
    for (int i = 0; !st && i < n; i++) {
        size_t nl = strlen(e[i].name) + 1;
        names[i] = tg__malloc(nl);
        if (!names[i]) {
            st = tg__fail(TG_ENOMEM, "%s: %s: out of memory for a tensor name", fn, path);
            break;
        }
        memcpy(names[i], e[i].name, nl);
        ts[i] = tg_tensor_from(e[i].dtype, e[i].ndim, e[i].shape, data + e[i].begin);
        st = ts[i] ? st_check_hash(fn, path, meta, names[i], ts[i]) : restate(fn, path);
    }
    tg__free(e);
    if (!st && meta_out) st = st_meta_pairs(fn, path, meta, meta_out, n_meta_out);
    cJSON_Delete(root);
    if (st) {
        tg_safetensors_free(names, ts, n);
        return st;
    }
    *names_out = names;
    *tensors_out = ts;
    *n_out = n;
    return TG_OK;
}

tg_status tg__load_safetensors_meta(const char *fn, const char *path, char ***names_out, tg_tensor ***tensors_out,
                                    int *n_out, char ***meta_out, int *n_meta_out) {
    if (names_out) *names_out = NULL;
    if (tensors_out) *tensors_out = NULL;
    if (n_out) *n_out = 0;
    if (meta_out) *meta_out = NULL;
    if (n_meta_out) *n_meta_out = 0;
    if (!path || !names_out || !tensors_out || !n_out)
        return tg__null(fn, !path          ? "path"
                            : !names_out   ? "names_out"
                            : !tensors_out ? "tensors_out"
                                           : "n_out");
    unsigned char *buf;
    size_t len;
    tg_status st = read_file(fn, path, &buf, &len);
    if (st) return st;
    st = st_parse(fn, path, buf, len, names_out, tensors_out, n_out, n_meta_out ? meta_out : NULL, n_meta_out);
    tg__free(buf);
    return st;
}

tg_status tg_load_safetensors(const char *path, char ***names_out, tg_tensor ***tensors_out, int *n_out) {
    return tg__load_safetensors_meta("tg_load_safetensors", path, names_out, tensors_out, n_out, NULL, NULL);
}

void tg_safetensors_free(char **names, tg_tensor **tensors, int n) {
    for (int i = 0; i < n; i++) {
        if (names) tg__free(names[i]);
        if (tensors) tg_tensor_free(tensors[i]);
    }
    tg__free(names);
    tg__free(tensors);
}

/* An int64 array written exactly: cJSON prints numbers past 10^17 with an exponent. */
static int add_ints(cJSON *obj, const char *key, const int64_t *v, int n) {
    cJSON *a = cJSON_AddArrayToObject(obj, key);
    for (int i = 0; a && i < n; i++) {
        char s[24];
        snprintf(s, sizeof s, "%lld", (long long)v[i]);
        cJSON *x = cJSON_CreateRaw(s);
        if (!x) return 0;
        cJSON_AddItemToArray(a, x);
    }
    return a != NULL;
}

/* The JSON header: __metadata__ first (as the safetensors package writes it), then one entry per tensor
   in the caller's order, which is also the data order, into *out (free with cJSON_free). Only an
   allocation can fail, in building the tree or in printing it; the message says which. */
static tg_status st_header_json(const char *fn, const char *const *names, tg_tensor *const *tensors, int n,
                                const char *const *kv, int n_meta, char **out) {
    *out = NULL;
    call_once(&cjson_once, cjson_hooks);
    cJSON *root = cJSON_CreateObject(), *meta = NULL;
    int ok = root != NULL;
    if (ok && n + n_meta) ok = (meta = cJSON_AddObjectToObject(root, "__metadata__")) != NULL;
    for (int i = 0; ok && i < n_meta; i++) ok = cJSON_AddStringToObject(meta, kv[2 * i], kv[2 * i + 1]) != NULL;
    size_t longest = 0;
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) > longest) longest = strlen(names[i]);
    char *key = ok && n ? tg__malloc(longest + 6) : NULL;
    if (n && !key) ok = 0;
    uint64_t off = 0;
    for (int i = 0; ok && i < n; i++) {
        const tg_tensor *t = tensors[i];
        uint64_t bytes = (uint64_t)t->numel * tg__dsize(t->dtype);
        int64_t offsets[2] = {(int64_t)off, (int64_t)(off + bytes)};
        off += bytes;
        char hash[17];
        snprintf(hash, sizeof hash, "%016" PRIx64, tg_tensor_hash(t));
        snprintf(key, longest + 6, "xxh3:%s", names[i]);
        cJSON *e = cJSON_AddObjectToObject(root, names[i]);
        ok = e && cJSON_AddStringToObject(e, "dtype", file_dtypes[dtype_index(t->dtype)].st) &&
             add_ints(e, "shape", t->shape, t->ndim) && add_ints(e, "data_offsets", offsets, 2) &&
             cJSON_AddStringToObject(meta, key, hash);
    }
    tg__free(key);
    if (!ok) {
        cJSON_Delete(root);
        return tg__fail(TG_ENOMEM, "%s: out of memory for the header of %d tensors", fn, n);
    }
    (void)tg__alloc_failed(1);
    *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (*out) return TG_OK;
    /* cJSON's printer fails only when an allocation does; say so even if it ever finds another reason */
    if (tg__alloc_failed(0))
        return tg__fail(TG_ENOMEM, "%s: out of memory while printing the JSON header of %d tensors", fn, n);
    return tg__fail(TG_EINVAL, "%s: cJSON could not print the header of %d tensors", fn, n);
}

tg_status tg__save_safetensors_meta(const char *fn, const char *path, const char *const *names,
                                    tg_tensor *const *tensors, int n, const char *const *meta, int n_meta) {
    if (!path || (n > 0 && (!names || !tensors)))
        return tg__null(fn, !path ? "path" : !names ? "names" : "tensors");
    if (n < 0) return tg__fail(TG_EINVAL, "%s: n is %d", fn, n);
    for (int i = 0; i < n; i++) {
        if (!names[i]) return null_elem(fn, "names", i);
        if (!names[i][0]) return tg__fail(TG_EINVAL, "%s: names[%d] is empty", fn, i);
        if (!strcmp(names[i], "__metadata__"))
            return tg__fail(TG_EINVAL, "%s: names[%d] is \"__metadata__\", which the format reserves", fn, i);
        char what[32];
        snprintf(what, sizeof what, "tensors[%d]", i);
        tg_status st = tg__arg(fn, what, tensors[i]);
        if (st) return st;
        for (int j = 0; j < i; j++)
            if (!strcmp(names[i], names[j]))
                return tg__fail(TG_EINVAL, "%s: names[%d] and names[%d] are both \"%s\"", fn, j, i, names[i]);
    }
    for (int i = 0; i < n_meta; i++) {
        if (!meta[2 * i] || !meta[2 * i + 1]) return null_elem(fn, "meta", 2 * i + !!meta[2 * i]);
        if (!strncmp(meta[2 * i], "xxh3:", 5))
            return tg__fail(TG_EINVAL, "%s: metadata key \"%s\" starts with \"xxh3:\", which checksums use", fn,
                            meta[2 * i]);
    }
    char *json;
    tg_status st = st_header_json(fn, names, tensors, n, meta, n_meta, &json);
    if (st) return st;
    /* Spaces pad the header to a multiple of 8 bytes, so the data is 8-byte aligned, as the package does. */
    size_t jl = strlen(json), hl = (jl + 7) / 8 * 8;
    unsigned char *head = tg__malloc(8 + hl);
    chunk *c = head ? tg__malloc(((size_t)n + 1) * sizeof *c) : NULL;
    if (!c) {
        tg__free(head);
        cJSON_free(json);
        return tg__fail(TG_ENOMEM, "%s: out of memory for the header of %d tensors", fn, n);
    }
    for (int i = 0; i < 8; i++) head[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(head + 8, json, jl);
    memset(head + 8 + jl, ' ', hl - jl);
    cJSON_free(json);
    c[0] = (chunk){head, 8 + hl};
    for (int i = 0; i < n; i++)
        c[i + 1] = (chunk){tensors[i]->data, (size_t)tensors[i]->numel * tg__dsize(tensors[i]->dtype)};
    st = save_atomic(fn, path, c, n + 1);
    tg__free(c);
    tg__free(head);
    return st;
}

tg_status tg_save_safetensors(const char *path, const char *const *names, tg_tensor *const *tensors, int n) {
    return tg__save_safetensors_meta("tg_save_safetensors", path, names, tensors, n, NULL, 0);
}
