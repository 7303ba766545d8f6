/* .npy files: NumPy's format for one array. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "io_internal.h"
#include "tg_io.h"

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
        return tg__io_bad(fn, path, "tg__io_bad magic \"%s\", not a .npy file", tg__io_snippet(buf, len < 6 ? len : 6, snip));
    if (len < 8) return tg__io_bad(fn, path, "truncated, %zu bytes end inside the preamble", len);
    /* 2.0 only widens the header length to 4 bytes; 3.0 allows utf-8 names tapegrad has no use for. */
    if ((buf[6] != 1 && buf[6] != 2) || buf[7] != 0)
        return tg__io_bad(fn, path, "unsupported .npy version %d.%d (tapegrad reads 1.0 and 2.0)", buf[6], buf[7]);
    size_t pre = buf[6] == 1 ? 10 : 12;
    if (len < pre) return tg__io_bad(fn, path, "truncated, %zu bytes end inside the preamble", len);
    uint64_t hlen = buf[8] | (uint64_t)buf[9] << 8;
    if (pre == 12) hlen |= (uint64_t)buf[10] << 16 | (uint64_t)buf[11] << 24;
    if (hlen > len - pre)
        return tg__io_bad(fn, path, "header length %" PRIu64 " runs past the end of the file (%zu bytes)", hlen,
                   len);

    npy_header h = {0};
    cursor c = {buf + pre, buf + pre + hlen};
    char why[64];
    const char *wrong = npy_dict(&c, &h, why, sizeof why);
    if (wrong) return tg__io_bad(fn, path, "malformed header (%s): %s", wrong, tg__io_snippet(buf + pre, hlen, snip));
    tg_dtype dtype;
    if (!tg__io_dtype_from(h.descr, 0, &dtype))
        return tg__io_bad(fn, path, "%sdtype '%s' is not supported (tapegrad reads '<f4', '<f8' and '<i8')",
                   h.descr[0] == '>' ? "big-endian " : "", h.descr);
    if (h.fortran) return tg__io_bad(fn, path, "Fortran-order (column-major) data is not supported");
    uint64_t want = tg__io_nbytes(h.ndim, h.shape, tg__dsize(dtype)), have = len - pre - hlen;
    if (want != have) {
        char s[TG__SHAPE_STR];
        if (want == OVERFLOWS)
            return tg__io_bad(fn, path, "header says shape %s of '%s', whose byte count overflows 64 bits (%" PRIu64
                       " data bytes follow)", tg__shape_str(h.ndim, h.shape, s), h.descr, have);
        return tg__io_bad(fn, path,
                   "header says shape %s of '%s', %" PRIu64 " bytes, but %" PRIu64 " data bytes follow",
                   tg__shape_str(h.ndim, h.shape, s), h.descr, want, have);
    }
    *out = tg_tensor_from(dtype, h.ndim, h.shape, buf + pre + hlen);
    return *out ? TG_OK : tg__io_restate(fn, path);
}

tg_tensor *tg_load_npy(const char *path) {
    if (!path) return tg__null("tg_load_npy", "path"), NULL;
    unsigned char *buf;
    size_t len;
    if (tg__io_read_file("tg_load_npy", path, &buf, &len)) return NULL;
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
                          tg__io_dtypes[tg__io_dtype_index(t->dtype)].npy);
    for (int i = 0; i < t->ndim; i++) n += snprintf(h + n, 24, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    n += snprintf(h + n, 8, t->ndim == 1 ? ",), }" : "), }");
    size_t total = ((size_t)n + 1 + 63) / 64 * 64;
    memset(h + n, ' ', total - 1 - (size_t)n);
    h[total - 1] = '\n';
    memcpy(h, "\x93NUMPY\x01\x00", 8);
    h[8] = (char)((total - 10) & 0xff);
    h[9] = (char)((total - 10) >> 8);
    tg__io_chunk c[2] = {{h, total}, {t->data, (size_t)t->numel * tg__dsize(t->dtype)}};
    return tg__io_save_atomic("tg_save_npy", path, c, 2);
}
