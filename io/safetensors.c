/* safetensors files: named tensors behind a JSON header, with tapegrad's XXH3 checksums in __metadata__. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>
#include <cjson/cJSON.h>
#include "io_internal.h"
#include "tg_io.h"

/* Both formats are little-endian and tensor data is copied as is. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tapegrad's file IO assumes a little-endian machine"
#endif

/* safetensors' own limit: a header past it is a hostile or broken file, not a big model. */
#define ST_MAX_HEADER 100000000u

/* cJSON allocates through tapegrad's allocator, so that its out-of-memory is reported as such (and
   allocation-failure tests reach it). cJSON's hooks are one process-wide setting, written here once,
   before the first use, by whichever thread comes first: call_once makes that write race-free. */
static once_flag cjson_once = ONCE_FLAG_INIT;
static void cjson_hooks(void) {
    cJSON_Hooks h = {tg__malloc, tg__free};
    cJSON_InitHooks(&h);
}

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
    if (!name[0]) return tg__io_bad(fn, path, "a tensor has an empty name");
    if (!cJSON_IsObject(j)) return tg__io_bad(fn, path, "tensor '%s' is not a JSON object", name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of))
        return tg__io_bad(fn, path, "tensor '%s' lacks a string dtype, a shape array or a data_offsets array", name);
    if (!tg__io_dtype_from(dt->valuestring, 1, &e->dtype))
        return tg__io_bad(fn, path, "tensor '%s' has dtype '%s' (tapegrad reads F32, F64 and I64)", name,
                   dt->valuestring);
    e->name = name;
    e->ndim = cJSON_GetArraySize(sh);
    if (e->ndim > TG_MAX_DIMS)
        return tg__io_bad(fn, path, "tensor '%s' has %d dimensions (at most %d)", name, e->ndim, TG_MAX_DIMS);
    int i = 0;
    for (const cJSON *d = sh->child; d; d = d->next, i++) {
        uint64_t v;
        if (!json_uint(d, &v))
            return tg__io_bad(fn, path, "tensor '%s' has a shape entry that is not an integer in 0..2^53", name);
        e->shape[i] = (int64_t)v;
    }
    if (cJSON_GetArraySize(of) != 2 || !json_uint(of->child, &e->begin) ||
        !json_uint(of->child->next, &e->end))
        return tg__io_bad(fn, path, "tensor '%s' has data_offsets that are not [begin, end] integers", name);
    if (e->begin > e->end)
        return tg__io_bad(fn, path, "tensor '%s' has data_offsets [%" PRIu64 ", %" PRIu64 "] out of order", name,
                   e->begin, e->end);
    if (e->end > data_len)
        return tg__io_bad(fn, path,
                   "tensor '%s' has data_offsets [%" PRIu64 ", %" PRIu64 "] outside the %" PRIu64
                   "-byte data",
                   name, e->begin, e->end, data_len);
    uint64_t want = tg__io_nbytes(e->ndim, e->shape, tg__dsize(e->dtype));
    if (e->end - e->begin != want) {
        char s[TG__SHAPE_STR];
        if (want == OVERFLOWS)
            return tg__io_bad(fn, path, "tensor '%s' of %s and shape %s has a byte count that overflows 64 bits", name,
                       dt->valuestring, tg__shape_str(e->ndim, e->shape, s));
        return tg__io_bad(fn, path,
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
        if (*meta) return tg__io_bad(fn, path, "__metadata__ appears twice");
        if (!cJSON_IsObject(j)) return tg__io_bad(fn, path, "__metadata__ is not an object");
        for (const cJSON *m = j->child; m; m = m->next)
            if (!cJSON_IsString(m))
                return tg__io_bad(fn, path, "__metadata__ value of '%s' is not a string", m->string);
        *meta = j;
    }
    if (n > 1) qsort(e, (size_t)n, sizeof *e, by_name); /* e is NULL when n is 0, and qsort may not take it */
    for (int i = 1; i < n; i++)
        if (!strcmp(e[i - 1].name, e[i].name))
            return tg__io_bad(fn, path, "tensor name '%s' appears twice", e[i].name);
    if (n > 1) qsort(e, (size_t)n, sizeof *e, by_offset);
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        if (e[i].begin < at)
            return tg__io_bad(fn, path,
                       "tensors '%s' [%" PRIu64 ", %" PRIu64 "] and '%s' [%" PRIu64 ", %" PRIu64 "] overlap",
                       e[i - 1].name, e[i - 1].begin, e[i - 1].end, e[i].name, e[i].begin, e[i].end);
        if (e[i].begin > at)
            return tg__io_bad(fn, path, "the data has a gap at bytes [%" PRIu64 ", %" PRIu64 ") before tensor '%s'",
                       at, e[i].begin, e[i].name);
        at = e[i].end;
    }
    if (at != data_len)
        return tg__io_bad(fn, path, "%" PRIu64 " trailing data bytes follow the last tensor, which ends at %" PRIu64,
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
        return tg__io_bad(fn, path, "tensor '%s' has a malformed xxh3 checksum \"%.40s\" (want 16 hex digits)", name,
                   s);
    uint64_t got = tg_tensor_hash(t);
    if (got != want)
        return tg__io_bad(fn, path,
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
    if (len < 8) return tg__io_bad(fn, path, "truncated, %zu bytes end inside the 8-byte header length", len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    if (hlen > ST_MAX_HEADER)
        return tg__io_bad(fn, path, "header length %" PRIu64 " exceeds the %u-byte limit", hlen, ST_MAX_HEADER);
    if (hlen > len - 8)
        return tg__io_bad(fn, path, "header length %" PRIu64 " runs past the end of the file (%zu bytes)", hlen,
                   len);
    const unsigned char *hdr = buf + 8;
    if (hlen == 0 || hdr[0] != '{')
        return tg__io_bad(fn, path, "header does not start with '{': \"%s\"", tg__io_snippet(hdr, hlen, snip));
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
        st = tg__io_bad(fn, path, "tg__io_bad JSON in the header at byte %zu: \"%s\"", at,
                 tg__io_snippet(hdr + at, hlen - at, snip));
    } else {
        /* the format allows padding with spaces; serde_json, which the package uses, any JSON whitespace */
        while (at < hlen && (json[at] == ' ' || json[at] == '\t' || json[at] == '\n' || json[at] == '\r'))
            at++;
        if (at < hlen)
            st = tg__io_bad(fn, path, "the header has bytes after the JSON object at byte %zu: \"%s\"", at,
                     tg__io_snippet(hdr + at, hlen - at, snip));
        int nul = st ? 0 : nul_in_string(json, at, &at);
        if (nul)
            st = tg__io_bad(fn, path, "the header has a string with %s at byte %zu: \"%s\" (a name or value cannot "
                     "hold one)", nul == 1 ? "an escaped NUL (\\u0000)" : "a raw control byte", at,
                     tg__io_snippet(hdr + at, hlen - at, snip));
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
        st = ts[i] ? st_check_hash(fn, path, meta, names[i], ts[i]) : tg__io_restate(fn, path);
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
    tg_status st = tg__io_read_file(fn, path, &buf, &len);
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
        ok = e && cJSON_AddStringToObject(e, "dtype", tg__io_dtypes[tg__io_dtype_index(t->dtype)].st) &&
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
        if (!names[i]) return tg__io_null_elem(fn, "names", i);
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
        if (!meta[2 * i] || !meta[2 * i + 1]) return tg__io_null_elem(fn, "meta", 2 * i + !!meta[2 * i]);
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
    tg__io_chunk *c = head ? tg__malloc(((size_t)n + 1) * sizeof *c) : NULL;
    if (!c) {
        tg__free(head);
        cJSON_free(json);
        return tg__fail(TG_ENOMEM, "%s: out of memory for the header of %d tensors", fn, n);
    }
    for (int i = 0; i < 8; i++) head[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(head + 8, json, jl);
    memset(head + 8 + jl, ' ', hl - jl);
    cJSON_free(json);
    c[0] = (tg__io_chunk){head, 8 + hl};
    for (int i = 0; i < n; i++)
        c[i + 1] = (tg__io_chunk){tensors[i]->data, (size_t)tensors[i]->numel * tg__dsize(tensors[i]->dtype)};
    st = tg__io_save_atomic(fn, path, c, n + 1);
    tg__free(c);
    tg__free(head);
    return st;
}

tg_status tg_save_safetensors(const char *path, const char *const *names, tg_tensor *const *tensors, int n) {
    return tg__save_safetensors_meta("tg_save_safetensors", path, names, tensors, n, NULL, 0);
}
