/* .npy and safetensors: round trips, damaged files, failed saves, NULLs and allocation failures. */
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include "tg_testutil.h"

static void setup(void) { tt_dir_make("tg_io"); }

TestSuite(io, .init = setup, .fini = tt_dir_remove);

static void expect_same(const tg_tensor *a, tg_tensor *b, const char *what) {
    cr_assert(b, "%s: loaded nothing: %s", what, tg_last_error());
    cr_expect_eq(tg_tensor_dtype(a), tg_tensor_dtype(b), "%s: dtype", what);
    cr_assert_eq(tg_tensor_ndim(a), tg_tensor_ndim(b), "%s: ndim", what);
    cr_expect_arr_eq(tg_tensor_shape(a), tg_tensor_shape(b), (size_t)tg_tensor_ndim(a) * sizeof(int64_t),
                     "%s: shape", what);
    cr_assert_eq(tg_tensor_numel(a), tg_tensor_numel(b), "%s: numel", what);
    cr_expect_eq(tg_tensor_hash(a), tg_tensor_hash(b), "%s: hash", what);
    size_t bytes = (size_t)tg_tensor_numel(a) * (tg_tensor_dtype(a) == TG_F32 ? 4 : 8);
    cr_expect(!memcmp(tg_tensor_data((tg_tensor *)a), tg_tensor_data(b), bytes), "%s: data", what);
    cr_expect_null(tg_tensor_grad(b), "%s: a loaded tensor has no gradient", what);
}

/* 0-d, empty (a 0 anywhere), 1-d, 2-d and 8-d, in both dtypes. */
#define N_SHAPES 7
static tg_tensor *sample(int i, tg_dtype dtype) {
    static const int nd[N_SHAPES] = {0, 1, 3, 1, 2, 8, 3};
    static const int64_t shapes[N_SHAPES][8] = {
        {0}, {0}, {3, 0, 2}, {5}, {2, 3}, {2, 1, 2, 1, 2, 1, 2, 3}, {4, 1, 3}};
    tg_tensor *t = tt_rand(dtype, 0, 100 + (uint64_t)i, nd[i], shapes[i]);
    /* values a float might mangle: the sign of zero, NaN bits, infinities, subnormals */
    static const double odd[] = {-0.0, NAN, INFINITY, -INFINITY, 1e-310, 0x1.fffffep+127};
    for (int k = 0; k < 6 && k < tg_tensor_numel(t); k++) tg_tensor_set(t, k, odd[k]);
    return t;
}

static int has_bytes(const unsigned char *b, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (!memcmp(b + i, needle, k)) return 1;
    return 0;
}

/* Index tensors: values beyond int32 and doubles' 2^53, negative ones; both file kinds. */
Test(io, i64_round_trips_in_both_formats) {
    int64_t v[6] = {0, -1, INT64_MAX, INT64_MIN, ((int64_t)1 << 53) + 1, 42};
    tg_tensor *t = tg_tensor_from(TG_I64, 2, TT_SHAPE(2, 3), v), *e = tg_tensor_new(TG_I64, 1, TT_SHAPE(0));
    cr_assert_eq(tg_save_npy(tt_in_dir("i.npy"), t), TG_OK, "%s", tg_last_error());
    tg_tensor *u = tg_load_npy(tt_in_dir("i.npy"));
    expect_same(t, u, "npy i64");
    tg_tensor_free(u);
    size_t n;
    unsigned char *b = tt_read_file(tt_in_dir("i.npy"), &n);
    cr_expect(has_bytes(b, n, "'descr': '<i8'"), "the header names <i8");
    free(b);
    const char *names[2] = {"ids", "none"};
    tg_tensor *ts[2] = {t, e};
    cr_assert_eq(tg_save_safetensors(tt_in_dir("i.safetensors"), names, ts, 2), TG_OK, "%s", tg_last_error());
    char **ln;
    tg_tensor **lt;
    int m;
    cr_assert_eq(tg_load_safetensors(tt_in_dir("i.safetensors"), &ln, &lt, &m), TG_OK, "%s", tg_last_error());
    cr_assert_eq(m, 2);
    expect_same(t, lt[0], "safetensors i64");
    expect_same(e, lt[1], "safetensors empty i64");
    tg_safetensors_free(ln, lt, m);
    b = tt_read_file(tt_in_dir("i.safetensors"), &n);
    cr_expect(has_bytes(b, n, "\"dtype\":\"I64\""), "the header names I64");
    free(b);
    tg_tensor_free(t), tg_tensor_free(e);
}

Test(io, npy_round_trip_is_bit_exact) {
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < N_SHAPES; i++) {
            tg_tensor *t = sample(i, d ? TG_F64 : TG_F32);
            const char *p = tt_in_dir("t.npy");
            cr_assert_eq(tg_save_npy(p, t), TG_OK, "%s", tg_last_error());
            tg_tensor *u = tg_load_npy(p);
            char what[32];
            snprintf(what, sizeof what, "dtype %d shape %d", d, i);
            expect_same(t, u, what);
            tg_tensor_free(t);
            tg_tensor_free(u);
        }
    cr_expect_eq(tt_temp_files(), 0);
}

/* What np.save writes, byte for byte: the preamble, the dict, spaces to a 64-byte boundary, '\n'. */
Test(io, npy_header_is_numpys) {
    tg_tensor *t = TT_RAND(TG_F32, 0, 1, 2, 3), *v = TT_RAND(TG_F64, 0, 1, 7);
    cr_assert_eq(tg_save_npy(tt_in_dir("a.npy"), t), TG_OK);
    cr_assert_eq(tg_save_npy(tt_in_dir("v.npy"), v), TG_OK);
    size_t n;
    unsigned char *b = tt_read_file(tt_in_dir("a.npy"), &n);
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    cr_expect(!memcmp(b, "\x93NUMPY\x01\x00\x76\x00", 10));
    cr_expect(!memcmp(b + 10, dict, strlen(dict)));
    cr_expect_eq(b[127], '\n');
    cr_expect_eq(n, 128 + 24);
    free(b);
    b = tt_read_file(tt_in_dir("v.npy"), &n);
    dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (7,), }";
    cr_expect(!memcmp(b + 10, dict, strlen(dict)));
    cr_expect_eq(n, 128 + 56);
    free(b);
    tg_tensor_free(t);
    tg_tensor_free(v);
}

Test(io, npy_v2_is_read) {
    const char *dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }";
    unsigned char b[256] = "\x93NUMPY\x02\x00";
    size_t hl = 128 - 12;
    b[8] = (unsigned char)hl;
    memset(b + 12, ' ', hl);
    memcpy(b + 12, dict, strlen(dict));
    b[127] = '\n';
    const double x[4] = {1.5, -2.25, 0.0, 1e300};
    memcpy(b + 128, x, sizeof x);
    tt_write_file(tt_in_dir("v2.npy"), b, 128 + sizeof x);
    tg_tensor *t = tg_load_npy(tt_in_dir("v2.npy"));
    tg_tensor *want = tg_tensor_from(TG_F64, 2, TT_SHAPE(2, 2), x);
    expect_same(want, t, "v2.0");
    tg_tensor_free(t);
    /* a header past 64 KiB, which only 2.0's 4-byte length can hold */
    size_t big = 70000 - 12;
    unsigned char *h = malloc(70000 + sizeof x);
    memcpy(h, "\x93NUMPY\x02\x00", 8);
    for (int i = 0; i < 4; i++) h[8 + i] = (unsigned char)(big >> (8 * i));
    memset(h + 12, ' ', big);
    memcpy(h + 12, dict, strlen(dict));
    h[70000 - 1] = '\n';
    memcpy(h + 70000, x, sizeof x);
    tt_write_file(tt_in_dir("v2big.npy"), h, 70000 + sizeof x);
    free(h);
    t = tg_load_npy(tt_in_dir("v2big.npy"));
    expect_same(want, t, "v2.0 with a 70000-byte header");
    tg_tensor_free(t);
    tg_tensor_free(want);
}

/* A hand-made header: NumPy's own layout is not required, only a well-formed dict. */
Test(io, npy_loose_header_is_read) {
    const char *dict = "{ \"shape\" : ( 3 , ) ,'fortran_order':False,'descr':'<f4'}";
    unsigned char b[128] = "\x93NUMPY\x01\x00";
    b[8] = (unsigned char)strlen(dict);
    memcpy(b + 10, dict, strlen(dict));
    const float x[3] = {1, 2, 3};
    memcpy(b + 10 + strlen(dict), x, sizeof x);
    tt_write_file(tt_in_dir("l.npy"), b, 10 + strlen(dict) + sizeof x);
    tg_tensor *t = tg_load_npy(tt_in_dir("l.npy"));
    tg_tensor *want = tg_tensor_from(TG_F32, 1, TT_SHAPE(3), x);
    expect_same(want, t, "loose header");
    tg_tensor_free(t);
    tg_tensor_free(want);
}

/* ---- damaged .npy files ---- */

typedef struct {
    const char *what;
    const char *raw; /* the whole file, when set */
    size_t raw_len;
    int major, minor;
    const char *dict; /* else: a preamble of this version, this dict, data_len bytes */
    size_t data_len;
    const char *needle;
} npy_case;

#define RAW(s) s, sizeof s - 1, 0, 0, NULL, 0
#define NPY(dict, data) NULL, 0, 1, 0, dict, data
#define F4 "'descr': '<f4', 'fortran_order': False, "

static const npy_case npy_cases[] = {
    {"PNG magic", RAW("\x89PNG\r\n\x1a\n\0\0\0\0"), "bad magic \"?PNG??\""},
    {"empty file", RAW(""), "the file is empty (size 0)"},
    {"truncated magic", RAW("\x93NUM"), "bad magic"},
    {"preamble cut in the version", RAW("\x93NUMPY\x01"), "inside the preamble"},
    {"preamble cut in the length", RAW("\x93NUMPY\x01\x00\x10"), "inside the preamble"},
    {"v2 preamble cut in the length", RAW("\x93NUMPY\x02\x00\x10\x00\x00"), "inside the preamble"},
    {"header length past the end", RAW("\x93NUMPY\x01\x00\xff\xff{'descr': '<f4'}"),
     "header length 65535 runs past"},
    {"v2 header length past the end", RAW("\x93NUMPY\x02\x00\x00\x00\x00\x80{}"),
     "header length 2147483648 runs past"},
    {"version 3.0", NULL, 0, 3, 0, "{" F4 "'shape': (1,), }", 4, "unsupported .npy version 3.0"},
    {"version 1.1", NULL, 0, 1, 1, "{" F4 "'shape': (1,), }", 4, "unsupported .npy version 1.1"},
    {"version 0.0", NULL, 0, 0, 0, "{" F4 "'shape': (1,), }", 4, "unsupported .npy version 0.0"},
    {"data short of the shape", NPY("{" F4 "'shape': (2, 3), }", 20),
     "shape (2,3) of '<f4', 24 bytes, but 20 data"},
    {"data past the shape", NPY("{" F4 "'shape': (2, 3), }", 28), "24 bytes, but 28 data"},
    {"0-d without data", NPY("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", 0),
     "8 bytes, but 0 data"},
    {"empty with data", NPY("{" F4 "'shape': (0, 5), }", 4), "0 bytes, but 4 data"},
    {"shape overflowing 2^64", NPY("{" F4 "'shape': (4294967296, 4294967296, 4294967296), }", 8),
     "shape (4294967296,4294967296,4294967296) of '<f4', whose byte count overflows 64 bits (8 data bytes follow)"},
    {"Fortran order", NPY("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", 24), "Fortran-order"},
    {"big-endian f8", NPY("{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }", 8),
     "big-endian dtype '>f8'"},
    {"big-endian f4", NPY("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", 4),
     "big-endian dtype '>f4'"},
    {"int32", NPY("{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }", 4),
     "dtype '<i4' is not supported"},
    {"f16", NPY("{'descr': '<f2', 'fortran_order': False, 'shape': (1,), }", 2),
     "dtype '<f2' is not supported"},
    {"native-order f4", NPY("{'descr': '=f4', 'fortran_order': False, 'shape': (1,), }", 4), "dtype '=f4'"},
    {"structured dtype", NPY("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", 4),
     "descr is not a short string"},
    {"escape in descr", NPY("{'descr': '<f\\x34', 'fortran_order': False, 'shape': (1,), }", 4),
     "descr is not a short string"},
    {"NUL in descr", NULL, 0, 1, 0, "{'descr': '<f4\0', 'fortran_order': False, 'shape': (1,), }", 4,
     "descr is not a short string"},
    {"missing shape", NPY("{'descr': '<f4', 'fortran_order': False, }", 4), "key 'shape' is missing"},
    {"missing descr", NPY("{'fortran_order': False, 'shape': (1,), }", 4), "key 'descr' is missing"},
    {"unknown key", NPY("{" F4 "'shape': (1,), 'foo': 1, }", 4), "unknown key 'foo'"},
    {"key twice", NPY("{" F4 "'shape': (1,), 'shape': (1,), }", 4), "key 'shape' appears twice"},
    {"shape an int", NPY("{" F4 "'shape': 3, }", 12), "shape is not a tuple"},
    {"shape (3) without comma", NPY("{" F4 "'shape': (3), }", 12), "shape is not a tuple"},
    {"shape without commas", NPY("{" F4 "'shape': (3 4), }", 48), "shape is not a tuple"},
    {"shape a list", NPY("{" F4 "'shape': [3], }", 12), "shape is not a tuple"},
    {"float dimension", NPY("{" F4 "'shape': (2.5,), }", 8), "shape is not a tuple"},
    {"negative dimension", NPY("{" F4 "'shape': (-1,), }", 0), "negative dimension"},
    {"dimension of 2^64", NPY("{" F4 "'shape': (18446744073709551616,), }", 0), "2^63 or more"},
    {"9 dimensions", NPY("{" F4 "'shape': (1, 1, 1, 1, 1, 1, 1, 1, 1), }", 4), "more than 8 dimensions"},
    {"fortran_order not a bool", NPY("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }", 4),
     "fortran_order is not True or False"},
    {"not a dict", NPY("[1, 2]", 0), "it is not a dict"},
    {"empty header", NPY("", 0), "it is not a dict"},
    {"text after the dict", NPY("{" F4 "'shape': (1,), } x", 4), "text follows the dict"},
    {"dict not closed", NPY("{" F4 "'shape': (1,)", 4), "no ',' or '}' after a value"},
    {"no colon", NPY("{'descr' '<f4'}", 4), "no ':' after a key"},
    {"unquoted key", NPY("{descr: '<f4'}", 4), "a key is not a short string"},
    {"string not closed", NPY("{'descr': '<f4", 4), "descr is not a short string"},
};

/* The file a case describes, in a malloc'ed buffer. */
static unsigned char *npy_case_bytes(const npy_case *c, size_t *n) {
    unsigned char *b = calloc(1, 1024);
    if (c->raw) {
        memcpy(b, c->raw, c->raw_len);
        *n = c->raw_len;
        return b;
    }
    /* strlen would stop at an embedded NUL: find the end of the literal's dict instead */
    size_t dl = strlen(c->dict);
    if (strstr(c->what, "NUL")) dl += 1 + strlen(c->dict + dl + 1);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)c->major;
    b[7] = (unsigned char)c->minor;
    b[8] = (unsigned char)dl;
    memcpy(b + 10, c->dict, dl);
    for (size_t i = 0; i < c->data_len; i++) b[10 + dl + i] = (unsigned char)(0x3f + i);
    *n = 10 + dl + c->data_len;
    return b;
}

Test(io, npy_damaged_files_are_refused) {
    for (size_t i = 0; i < sizeof npy_cases / sizeof npy_cases[0]; i++) {
        const npy_case *c = &npy_cases[i];
        size_t n;
        unsigned char *b = npy_case_bytes(c, &n);
        const char *p = tt_in_dir("bad.npy");
        tt_write_file(p, b, n);
        free(b);
        tg_clear_error();
        tg_tensor *t = tg_load_npy(p);
        cr_expect_null(t, "%s: loaded", c->what);
        tg_tensor_free(t);
        cr_expect(strstr(tg_last_error(), "tg_load_npy: ") && strstr(tg_last_error(), p),
                  "%s: message \"%s\"", c->what, tg_last_error());
        cr_log_info("%s -> %s", c->what, tg_last_error());
        tt_expect_error(TG_EFORMAT, c->needle);
    }
}

Test(io, missing_and_odd_files_are_eio) {
    tg_clear_error();
    cr_expect_null(tg_load_npy(tt_in_dir("none.npy")));
    tt_expect_error(TG_EIO, "cannot open");
    cr_expect_null(tg_load_npy(tt_dir()));
    tt_expect_error(TG_EIO, "is not a regular file");
    char **names = (char **)1;
    tg_tensor **ts = (tg_tensor **)1;
    int n = 7;
    cr_expect_eq(tg_load_safetensors(tt_in_dir("none.safetensors"), &names, &ts, &n), TG_EIO);
    cr_expect(names == NULL && ts == NULL && n == 0);
    tt_expect_error(TG_EIO, "No such file");
}

/* Loads p both ways; each must fail with status and a message holding p and needle. */
static void expect_load_fails(const char *p, tg_status status, const char *needle) {
    char **names = (char **)1;
    tg_tensor **ts = (tg_tensor **)1;
    int n = 7;
    tg_clear_error();
    cr_expect_null(tg_load_npy(p), "%s loaded", p);
    cr_expect(strstr(tg_last_error(), "tg_load_npy: ") && strstr(tg_last_error(), p), "%s", tg_last_error());
    tt_expect_error(status, needle);
    cr_expect_eq(tg_load_safetensors(p, &names, &ts, &n), status, "%s", tg_last_error());
    cr_expect(names == NULL && ts == NULL && n == 0);
    cr_expect(strstr(tg_last_error(), "tg_load_safetensors: ") && strstr(tg_last_error(), p), "%s",
              tg_last_error());
    tt_expect_error(status, needle);
}

/* A FIFO with no writer once made the load wait in fopen forever (the timeout catches a regression);
   it, a device and a directory are refused saying what they are. A file of size 0 (an empty one, or one
   of /proc, which reports 0 and holds text) is called empty, not a bad magic "". */
Test(io, fifo_device_and_empty_files_are_refused, .timeout = 30) {
    const char *fifo = tt_in_dir("pipe.npy");
    cr_assert_eq(mkfifo(fifo, 0600), 0, "mkfifo: %s", strerror(errno));
    expect_load_fails(fifo, TG_EIO, "is not a regular file: it is a FIFO (named pipe)");
    expect_load_fails("/dev/null", TG_EIO, "/dev/null is not a regular file: it is a character device");
    expect_load_fails(tt_dir(), TG_EIO, "is not a regular file: it is a directory");
    const char *empty = tt_in_dir("empty.safetensors");
    tt_write_file(empty, "", 0);
    expect_load_fails(empty, TG_EFORMAT, "the file is empty (size 0)");
    struct stat st;
    if (stat("/proc/self/status", &st) == 0 && st.st_size == 0)
        expect_load_fails("/proc/self/status", TG_EFORMAT, "/proc/self/status: the file is empty (size 0)");
    else
        cr_log_warn("no /proc/self/status of size 0 here: that case is not checked");
}

/* ---- safetensors ---- */

static void expect_loaded(const char *path, const char *const *names, tg_tensor *const *ts, int n) {
    char **ln;
    tg_tensor **lt;
    int m;
    cr_assert_eq(tg_load_safetensors(path, &ln, &lt, &m), TG_OK, "%s", tg_last_error());
    cr_assert_eq(m, n);
    for (int i = 0; i < n; i++) {
        cr_expect_str_eq(ln[i], names[i]);
        expect_same(ts[i], lt[i], names[i]);
    }
    tg_safetensors_free(ln, lt, m);
}

Test(io, safetensors_round_trip_is_bit_exact) {
    const char *names[2 * N_SHAPES];
    tg_tensor *ts[2 * N_SHAPES];
    char buf[2 * N_SHAPES][16];
    for (int i = 0; i < 2 * N_SHAPES; i++) {
        /* names out of alphabetical order, so the data order cannot come from sorting by name */
        snprintf(buf[i], sizeof buf[i], "t%02d.%s", 2 * N_SHAPES - i, i % 2 ? "w" : "b");
        names[i] = buf[i];
        ts[i] = sample(i / 2, i % 2 ? TG_F64 : TG_F32);
    }
    const char *p = tt_in_dir("m.safetensors");
    cr_assert_eq(tg_save_safetensors(p, names, ts, 2 * N_SHAPES), TG_OK, "%s", tg_last_error());
    expect_loaded(p, names, ts, 2 * N_SHAPES);
    /* the layout the safetensors package expects: header padded to 8 bytes, hashes in __metadata__ */
    size_t n;
    unsigned char *b = tt_read_file(p, &n);
    uint64_t hl = 0;
    memcpy(&hl, b, 8);
    cr_expect_eq(hl % 8, 0);
    char *json = strndup((const char *)b + 8, hl);
    cr_expect(!strncmp(json, "{\"__metadata__\":{\"xxh3:t14.b\":\"", 31), "%s", json);
    cr_expect(strstr(json, "\"shape\":[2,1,2,1,2,1,2,3]"), "%s", json);
    free(json);
    free(b);
    for (int i = 0; i < 2 * N_SHAPES; i++) tg_tensor_free(ts[i]);
    cr_expect_eq(tt_temp_files(), 0);
}

Test(io, safetensors_with_no_tensors) {
    const char *p = tt_in_dir("e.safetensors");
    cr_assert_eq(tg_save_safetensors(p, NULL, NULL, 0), TG_OK, "%s", tg_last_error());
    size_t n;
    unsigned char *b = tt_read_file(p, &n);
    cr_expect_eq(n, 16);
    cr_expect(!memcmp(b, "\x08\0\0\0\0\0\0\0{}      ", 16));
    free(b);
    char **ln = (char **)1;
    tg_tensor **lt = (tg_tensor **)1;
    int m = 3;
    cr_expect_eq(tg_load_safetensors(p, &ln, &lt, &m), TG_OK);
    cr_expect(ln == NULL && lt == NULL && m == 0);
}

/* Files from other tools: no checksums, header order unlike data order, unknown fields, padding. */
static void write_st(const char *path, const char *json, size_t data_len, uint64_t len_field) {
    unsigned char *b = calloc(1, 8 + strlen(json) + data_len + 1);
    size_t jl = strlen(json);
    uint64_t hl = len_field ? len_field : jl;
    memcpy(b, &hl, 8);
    memcpy(b + 8, json, jl);
    for (size_t i = 0; i < data_len; i++) b[8 + jl + i] = (unsigned char)(i * 7);
    tt_write_file(path, b, 8 + jl + data_len);
    free(b);
}

Test(io, safetensors_from_other_writers) {
    const char *p = tt_in_dir("o.safetensors");
    const float a[2] = {1.0f, -2.0f};
    const double z = 0.25;
    unsigned char data[16];
    memcpy(data, &z, 8);
    memcpy(data + 8, a, 8);
    const char *json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16],\"extra\":1},"
                       "\"__metadata__\":{\"format\":\"pt\"},\"z\" : "
                       "{\"shape\":[],\"dtype\":\"F64\",\"data_offsets\":[0,8]}}\n\t  ";
    size_t jl = strlen(json);
    unsigned char b[512];
    uint64_t hl = jl;
    memcpy(b, &hl, 8);
    memcpy(b + 8, json, jl);
    memcpy(b + 8 + jl, data, 16);
    tt_write_file(p, b, 8 + jl + 16);
    tg_tensor *ts[2] = {tg_tensor_from(TG_F64, 0, NULL, &z), tg_tensor_from(TG_F32, 1, TT_SHAPE(2), a)};
    expect_loaded(p, (const char *const[]){"z", "a"}, ts, 2);
    tg_tensor_free(ts[0]);
    tg_tensor_free(ts[1]);
}

Test(io, safetensors_corrupted_data_fails_its_checksum) {
    tg_tensor *t = TT_RAND(TG_F64, 0, 3, 4, 4);
    const char *p = tt_in_dir("c.safetensors");
    cr_assert_eq(tg_save_safetensors(p, (const char *const[]){"weight"}, &t, 1), TG_OK);
    size_t n;
    unsigned char *b = tt_read_file(p, &n);
    b[n - 3] ^= 0x10;
    tt_write_file(p, b, n);
    free(b);
    char **ln;
    tg_tensor **lt;
    int m;
    tg_clear_error();
    cr_expect_eq(tg_load_safetensors(p, &ln, &lt, &m), TG_EFORMAT);
    tt_expect_error(TG_EFORMAT, "tensor 'weight' fails its xxh3 checksum");
    tg_tensor_free(t);
}

typedef struct {
    const char *what;
    const char *json;
    size_t data_len;
    uint64_t len_field; /* 0: the JSON's length */
    const char *needle;
} st_case;

#define A4 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":"
#define B8 "\"b\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":"

static const st_case st_cases[] = {
    {"huge header length", "{}", 0, 1ull << 63,
     "header length 9223372036854775808 exceeds the 100000000-byte limit"},
    {"header length just past the limit", "{}", 0, 100000001, "exceeds"},
    {"header length past the end", "{}", 4, 7, "header length 7 runs past the end of the file (14 bytes)"},
    {"zero header length", "", 0, 0, "header does not start with '{'"},
    {"header an array", "[]", 0, 0, "header does not start with '{'"},
    {"header with leading space", " {}", 0, 0, "header does not start with '{'"},
    {"bad JSON", "{\"a\": }", 0, 0, "bad JSON in the header at byte"},
    {"truncated JSON", "{" A4 "[0,4]", 4, 0, "bad JSON"},
    {"JSON cut by the length", "{" A4 "[0,4]}}", 4, 20, "bad JSON"},
    {"text after the JSON", "{} x", 0, 0, "bytes after the JSON object at byte 3: \"x\""},
    {"NUL padding", "{}\0\0\0\0\0\0", 0, 8, "bytes after the JSON object"},
    {"BF16", "{\"a\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2, 0,
     "tensor 'a' has dtype 'BF16' (tapegrad reads F32, F64 and I64)"},
    {"I32", "{\"ids\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0,
     "tensor 'ids' has dtype 'I32'"},
    {"I64 of the wrong size", "{\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0,
     "tensor 'ids' of I64 and shape (2,) needs 16 bytes"},
    {"lower-case dtype", "{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0,
     "dtype 'f32'"},
    {"entry not an object", "{\"a\":3}", 0, 0, "tensor 'a' is not a JSON object"},
    {"no data_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, 0, "tensor 'a' lacks"},
    {"dtype not a string", "{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0,
     "tensor 'a' lacks"},
    {"shape not an array", "{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4, 0,
     "tensor 'a' lacks"},
    {"negative dimension", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, 0,
     "tensor 'a' has a shape entry that is not an integer"},
    {"fractional dimension", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, 0,
     "shape entry that is not an integer"},
    {"string dimension", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, 0,
     "shape entry that is not an integer"},
    {"dimension of 1e300", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e300,0],\"data_offsets\":[0,0]}}", 0, 0,
     "shape entry that is not an integer"},
    {"9 dimensions", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, 0,
     "tensor 'a' has 9 dimensions (at most 8)"},
    {"three offsets", "{" A4 "[0,4,8]}}", 8, 0, "tensor 'a' has data_offsets that are not [begin, end]"},
    {"one offset", "{" A4 "[0]}}", 4, 0, "not [begin, end]"},
    {"negative offset", "{" A4 "[-4,0]}}", 4, 0, "not [begin, end]"},
    {"offsets out of order", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4, 0,
     "tensor 'a' has data_offsets [4, 0] out of order"},
    {"offsets out of the file", "{" A4 "[0,4]}," B8 "[4,12]}}", 8, 0,
     "tensor 'b' has data_offsets [4, 12] outside the 8-byte data"},
    {"offsets far out of the file", "{" A4 "[4000000000,4000000004]}}", 4, 0, "outside the 4-byte data"},
    {"size unlike the shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, 0,
     "tensor 'a' of F32 and shape (3,) needs 12 bytes, data_offsets [0, 8] hold 8"},
    {"overlapping offsets", "{" A4 "[0,4]}," B8 "[2,10]}}", 10, 0,
     "tensors 'a' [0, 4] and 'b' [2, 10] overlap"},
    {"same offsets twice", "{" A4 "[0,4]},\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     0, "overlap"},
    {"empty tensor inside another",
     "{" B8 "[0,8]},\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}", 8, 0,
     "tensors 'b' [0, 8] and 'e' [4, 4] overlap"},
    {"gap", "{" A4 "[0,4]}," B8 "[8,16]}}", 16, 0, "the data has a gap at bytes [4, 8) before tensor 'b'"},
    {"gap at the start", "{" A4 "[4,8]}}", 8, 0, "gap at bytes [0, 4)"},
    {"trailing data", "{" A4 "[0,4]}}", 9, 0, "5 trailing data bytes"},
    {"data but no tensors", "{}", 8, 0, "8 trailing data bytes"},
    {"name twice", "{" A4 "[0,4]}," A4 "[4,8]}}", 8, 0, "tensor name 'a' appears twice"},
    {"empty name", "{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0,
     "a tensor has an empty name"},
    {"wrong checksum", "{\"__metadata__\":{\"xxh3:a\":\"0123456789abcdef\"}," A4 "[0,4]}}", 4, 0,
     "tensor 'a' fails its xxh3 checksum: the file says 0123456789abcdef"},
    {"checksum in capitals", "{\"__metadata__\":{\"xxh3:a\":\"0123456789ABCDEF\"}," A4 "[0,4]}}", 4, 0,
     "tensor 'a' has a malformed xxh3 checksum \"0123456789ABCDEF\""},
    {"checksum too long", "{\"__metadata__\":{\"xxh3:a\":\"0123456789abcdef0\"}," A4 "[0,4]}}", 4, 0,
     "malformed xxh3 checksum"},
    {"checksum too short", "{\"__metadata__\":{\"xxh3:a\":\"\"}," A4 "[0,4]}}", 4, 0,
     "malformed xxh3 checksum"},
    {"__metadata__ not an object", "{\"__metadata__\":5," A4 "[0,4]}}", 4, 0,
     "__metadata__ is not an object"},
    {"__metadata__ value not a string", "{\"__metadata__\":{\"xxh3:a\":7}," A4 "[0,4]}}", 4, 0,
     "__metadata__ value of 'xxh3:a' is not a string"},
    {"__metadata__ twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, 0, "__metadata__ appears twice"},
    /* cJSON would hand these out as "a": a NUL or a control byte in a string is refused wherever it is */
    {"NUL in a name", "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0,
     "the header has a string with an escaped NUL (\\u0000) at byte 1: \"\"a\\u0000b\""},
    {"NUL at a name's end", "{\"a\\u0000\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0,
     "an escaped NUL"},
    {"NUL in a dtype", "{\"a\":{\"dtype\":\"F32\\u0000x\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0,
     "an escaped NUL (\\u0000) at byte 14"},
    {"NUL in a checksum", "{\"__metadata__\":{\"xxh3:a\":\"\\u0000\"}," A4 "[0,4]}}", 4, 0, "an escaped NUL"},
    {"raw control byte in a name", "{\"a\x01" "b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0,
     "a raw control byte at byte 1: \"\"a?b\""},
    {"shape overflowing 2^64", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
     "\"data_offsets\":[0,8]}}", 8, 0,
     "tensor 'a' of F32 and shape (4294967296,4294967296,4294967296) has a byte count that overflows 64 bits"},
};

Test(io, safetensors_damaged_files_are_refused) {
    for (size_t i = 0; i < sizeof st_cases / sizeof st_cases[0]; i++) {
        const st_case *c = &st_cases[i];
        const char *p = tt_in_dir("bad.safetensors");
        if (!strcmp(c->what, "NUL padding")) {
            unsigned char b[32] = "\x08\0\0\0\0\0\0\0{}";
            tt_write_file(p, b, 16);
        } else {
            write_st(p, c->json, c->data_len, c->len_field);
        }
        char **ln = (char **)1;
        tg_tensor **lt = (tg_tensor **)1;
        int m = 5;
        tg_clear_error();
        cr_expect_eq(tg_load_safetensors(p, &ln, &lt, &m), TG_EFORMAT, "%s: %s", c->what, tg_last_error());
        cr_expect(ln == NULL && lt == NULL && m == 0, "%s: outputs not cleared", c->what);
        cr_expect(strstr(tg_last_error(), "tg_load_safetensors: ") && strstr(tg_last_error(), p),
                  "%s: message \"%s\"", c->what, tg_last_error());
        cr_log_info("%s -> %s", c->what, tg_last_error());
        tt_expect_error(TG_EFORMAT, c->needle);
    }
    /* nesting past cJSON's limit is refused, not a stack overflow */
    char *deep = calloc(1, 20016);
    memcpy(deep, "{\"a\":", 5);
    memset(deep + 5, '[', 10000);
    memset(deep + 10005, ']', 10000);
    deep[20005] = '}';
    write_st(tt_in_dir("deep.safetensors"), deep, 0, 0);
    free(deep);
    char **ln;
    tg_tensor **lt;
    int m;
    cr_expect_eq(tg_load_safetensors(tt_in_dir("deep.safetensors"), &ln, &lt, &m), TG_EFORMAT);
    tt_expect_error(TG_EFORMAT, "bad JSON");
    /* the file too short for its length field */
    tt_write_file(tt_in_dir("short.safetensors"), "\x02\0\0\0", 4);
    cr_expect_eq(tg_load_safetensors(tt_in_dir("short.safetensors"), &ln, &lt, &m), TG_EFORMAT);
    tt_expect_error(TG_EFORMAT, "truncated, 4 bytes end inside the 8-byte header length");
}

/* ---- failed saves ---- */

/* Saves `good`, then makes every low-level write step of saving `bad` fail in turn: each failure must
   leave `good` in place and no temporary file. */
static void check_failed_saves(int safetensors) {
    tg_tensor *good = TT_RAND(TG_F32, 0, 1, 3, 5), *bad = TT_RAND(TG_F64, 0, 2, 4, 2, 2);
    const char *p = tt_in_dir(safetensors ? "f.safetensors" : "f.npy");
    const char *name = "w";
    tg_status st = safetensors ? tg_save_safetensors(p, &name, &good, 1) : tg_save_npy(p, good);
    cr_assert_eq(st, TG_OK, "%s", tg_last_error());
    int k = 1;
    for (;; k++) {
        cr_assert_lt(k, 50);
        tg__io_fail_write_at(k);
        tg_clear_error();
        st = safetensors ? tg_save_safetensors(p, &name, &bad, 1) : tg_save_npy(p, bad);
        tg__io_fail_write_at(0);
        if (st == TG_OK) break;
        cr_expect(strstr(tg_last_error(), p), "k=%d: %s", k, tg_last_error());
        tt_expect_error(TG_EIO, "Input/output error");
        cr_expect_eq(tt_temp_files(), 0, "k=%d: a temporary file is left", k);
        tg_tensor *now;
        char **ln = NULL;
        tg_tensor **lt = NULL;
        int m = 0;
        if (safetensors) {
            cr_assert_eq(tg_load_safetensors(p, &ln, &lt, &m), TG_OK, "k=%d: %s", k, tg_last_error());
            cr_assert_eq(m, 1);
            now = lt[0];
        } else {
            now = tg_load_npy(p);
        }
        expect_same(good, now, "the old file");
        if (safetensors)
            tg_safetensors_free(ln, lt, m);
        else
            tg_tensor_free(now);
    }
    /* a write per chunk, then flush, fsync, close and rename: each was made to fail once */
    cr_expect_geq(k, 7, "only %d write steps", k - 1);
    if (safetensors) {
        expect_loaded(p, &name, &bad, 1);
    } else {
        tg_tensor *now = tg_load_npy(p);
        expect_same(bad, now, "the new file");
        tg_tensor_free(now);
    }
    tg_tensor_free(good);
    tg_tensor_free(bad);
}

Test(io, npy_failed_write_keeps_old_file) { check_failed_saves(0); }
Test(io, safetensors_failed_write_keeps_old_file) { check_failed_saves(1); }

Test(io, save_to_missing_directory_or_onto_a_directory) {
    tg_tensor *t = TT_RAND(TG_F32, 0, 1, 2);
    const char *name = "t";
    tg_clear_error();
    cr_expect_eq(tg_save_npy(tt_in_dir("nodir/t.npy"), t), TG_EIO);
    tt_expect_error(TG_EIO, "cannot create a temporary file beside /tmp/tg_io_");
    cr_expect_eq(tg_save_safetensors(tt_in_dir("nodir/t.safetensors"), &name, &t, 1), TG_EIO);
    tt_expect_error(TG_EIO, "No such file or directory");
    cr_assert_eq(mkdir(tt_in_dir("d.npy"), 0755), 0);
    cr_expect_eq(tg_save_npy(tt_in_dir("d.npy"), t), TG_EIO);
    tt_expect_error(TG_EIO, "(rename: Is a directory)");
    cr_expect_eq(tg_save_safetensors(tt_in_dir("d.npy"), &name, &t, 1), TG_EIO);
    tt_expect_error(TG_EIO, "d.npy (rename");
    struct stat st;
    cr_expect(stat(tt_in_dir("d.npy"), &st) == 0 && S_ISDIR(st.st_mode));
    cr_expect_eq(tt_temp_files(), 0);
    tg_tensor_free(t);
}

/* Sets or clears the immutable attribute of a directory: an unwritable directory even for root, who
   ignores permission bits (the suite runs as root in CI). 0 when the filesystem or the process
   cannot do it. */
static int set_immutable(const char *path, int on) {
    int fd = open(path, O_RDONLY | O_DIRECTORY), flags = 0, ok = 0;
    if (fd < 0) return 0;
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
        flags = on ? flags | FS_IMMUTABLE_FL : flags & ~FS_IMMUTABLE_FL;
        ok = ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
    }
    close(fd);
    return ok;
}

Test(io, save_into_an_unwritable_directory_keeps_the_old_file) {
    tg_tensor *good = TT_RAND(TG_F64, 0, 1, 2, 3), *bad = TT_RAND(TG_F64, 0, 2, 2, 3);
    const char *name = "w";
    cr_assert_eq(mkdir(tt_in_dir("ro"), 0755), 0);
    cr_assert_eq(tg_save_npy(tt_in_dir("ro/w.npy"), good), TG_OK);
    cr_assert_eq(tg_save_safetensors(tt_in_dir("ro/w.safetensors"), &name, &good, 1), TG_OK);
    if (!set_immutable(tt_in_dir("ro"), 1)) {
        tg_tensor_free(good), tg_tensor_free(bad);
        cr_skip_test("this filesystem cannot make a directory immutable (FS_IOC_SETFLAGS)");
    }
    tg_clear_error();
    tg_status s1 = tg_save_npy(tt_in_dir("ro/w.npy"), bad);
    const char *msg1 = strstr(tg_last_error(), "ro/w.npy") ? "named" : tg_last_error();
    tg_clear_error();
    tg_status s2 = tg_save_safetensors(tt_in_dir("ro/w.safetensors"), &name, &bad, 1);
    const char *msg2 = strstr(tg_last_error(), "ro/w.safetensors") ? "named" : tg_last_error();
    set_immutable(tt_in_dir("ro"), 0); /* before any assertion, so teardown can clean up */
    cr_expect_eq(s1, TG_EIO);
    cr_expect_eq(s2, TG_EIO);
    cr_expect_str_eq(msg1, "named", "the message names the path: %s", msg1);
    cr_expect_str_eq(msg2, "named", "the message names the path: %s", msg2);
    tg_clear_error();
    tg_tensor *now = tg_load_npy(tt_in_dir("ro/w.npy"));
    expect_same(good, now, "the old .npy");
    tg_tensor_free(now);
    char **ln = NULL;
    tg_tensor **lt = NULL;
    int m = 0;
    cr_assert_eq(tg_load_safetensors(tt_in_dir("ro/w.safetensors"), &ln, &lt, &m), TG_OK, "%s", tg_last_error());
    expect_same(good, lt[0], "the old .safetensors");
    tg_safetensors_free(ln, lt, m);
    cr_expect_eq(tt_temp_files(), 0);
    unlink(tt_in_dir("ro/w.npy")), unlink(tt_in_dir("ro/w.safetensors")), rmdir(tt_in_dir("ro"));
    tg_tensor_free(good), tg_tensor_free(bad);
}

/* A new file gets the mode fopen would give it, an old one keeps its own. */
Test(io, saved_file_modes) {
    tg_tensor *t = TT_RAND(TG_F32, 0, 1, 2);
    mode_t old = umask(027);
    struct stat st;
    cr_assert_eq(tg_save_npy(tt_in_dir("m.npy"), t), TG_OK);
    cr_expect(stat(tt_in_dir("m.npy"), &st) == 0 && (st.st_mode & 0777) == 0640, "mode %o", st.st_mode & 0777);
    cr_assert_eq(chmod(tt_in_dir("m.npy"), 0604), 0);
    cr_assert_eq(tg_save_npy(tt_in_dir("m.npy"), t), TG_OK);
    cr_expect(stat(tt_in_dir("m.npy"), &st) == 0 && (st.st_mode & 0777) == 0604, "mode %o", st.st_mode & 0777);
    umask(old);
    tg_tensor_free(t);
}

/* ---- bad arguments ---- */

Test(io, null_arguments_are_einval) {
    tg_tensor *t = TT_RAND(TG_F32, 0, 1, 2);
    const char *p = tt_in_dir("n.npy"), *name = "t", *names2[2] = {"a", "a"};
    tg_tensor *ts2[2] = {t, t}, *none[2] = {t, NULL};
    tg_clear_error();
    cr_expect_eq(tg_save_npy(NULL, t), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_save_npy: path is NULL");
    cr_expect_eq(tg_save_npy(p, NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tg_save_npy: t is NULL");
    cr_expect_null(tg_load_npy(NULL));
    tt_expect_error(TG_EINVAL, "tg_load_npy: path is NULL");

    cr_expect_eq(tg_save_safetensors(NULL, &name, &t, 1), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "path is NULL");
    cr_expect_eq(tg_save_safetensors(p, NULL, &t, 1), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "names is NULL");
    cr_expect_eq(tg_save_safetensors(p, &name, NULL, 1), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tensors is NULL");
    cr_expect_eq(tg_save_safetensors(p, &name, &t, -1), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "n is -1");
    cr_expect_eq(tg_save_safetensors(p, (const char *const[]){NULL}, &t, 1), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "names[0] is NULL");
    cr_expect_eq(tg_save_safetensors(p, (const char *const[]){""}, &t, 1), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "names[0] is empty");
    cr_expect_eq(tg_save_safetensors(p, (const char *const[]){"__metadata__"}, &t, 1), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "reserves");
    cr_expect_eq(tg_save_safetensors(p, names2, ts2, 2), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "names[0] and names[1] are both \"a\"");
    cr_expect_eq(tg_save_safetensors(p, (const char *const[]){"a", "b"}, none, 2), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tensors[1] is NULL");

    char **ln = (char **)1;
    tg_tensor **lt = (tg_tensor **)1;
    int m = 4;
    cr_expect_eq(tg_load_safetensors(NULL, &ln, &lt, &m), TG_EINVAL);
    cr_expect(ln == NULL && lt == NULL && m == 0);
    tt_expect_error(TG_EINVAL, "path is NULL");
    cr_expect_eq(tg_load_safetensors(p, NULL, &lt, &m), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "names_out is NULL");
    cr_expect_eq(tg_load_safetensors(p, &ln, NULL, &m), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "tensors_out is NULL");
    cr_expect_eq(tg_load_safetensors(p, &ln, &lt, NULL), TG_EINVAL);
    tt_expect_error(TG_EINVAL, "n_out is NULL");
    tg_safetensors_free(NULL, NULL, 0);
    cr_expect_eq(access(p, F_OK), -1, "a failed save made a file");
    tg_tensor_free(t);
}

/* An op's failed output handed to a save keeps the op's message, as every call does with NULL inputs. */
Test(io, null_tensor_keeps_the_first_error) {
    tg__fail(TG_ESHAPE, "tg_matmul: inner dimensions differ");
    cr_expect_eq(tg_save_npy(tt_in_dir("x.npy"), NULL), TG_ESHAPE);
    const char *name = "x";
    tg_tensor *none = NULL;
    cr_expect_eq(tg_save_safetensors(tt_in_dir("x.safetensors"), &name, &none, 1), TG_ESHAPE);
    tt_expect_error(TG_ESHAPE, "tg_matmul: inner dimensions differ");
    cr_expect_eq(tt_temp_files(), 0);
}

/* Every NULL argument of the file functions, after a real failed op: each keeps that op's status and
   message (tg__null), so a chain of calls can be checked once at its end. */
Test(io, every_null_keeps_an_earlier_failure) {
    tg_tensor *a = TT_RAND(TG_F64, 0, 1, 4, 3), *t = TT_RAND(TG_F32, 0, 2, 2);
    tg_tape *tape = tg_tape_new();
    tg_clear_error();
    cr_assert_null(tg_matmul(tape, a, a));
    cr_assert_eq(tg_last_status(), TG_ESHAPE);
    char first[512];
    snprintf(first, sizeof first, "%s", tg_last_error());
    const char *p = tt_in_dir("n.safetensors"), *name = "t", *null_name[1] = {NULL};
    tg_tensor *null_t[2] = {t, NULL};
    char **ln;
    tg_tensor **lt;
    int m;
    tg_status st[12] = {
        tg_save_npy(NULL, t),
        tg_save_npy(p, NULL),
        tg_load_npy(NULL) ? TG_OK : tg_last_status(),
        tg_save_safetensors(NULL, &name, &t, 1),
        tg_save_safetensors(p, NULL, &t, 1),
        tg_save_safetensors(p, &name, NULL, 1),
        tg_save_safetensors(p, null_name, &t, 1),
        tg_save_safetensors(p, (const char *const[]){"a", "b"}, null_t, 2),
        tg_load_safetensors(NULL, &ln, &lt, &m),
        tg_load_safetensors(p, NULL, &lt, &m),
        tg_load_safetensors(p, &ln, NULL, &m),
        tg_load_safetensors(p, &ln, &lt, NULL),
    };
    for (int i = 0; i < 12; i++) cr_expect_eq(st[i], TG_ESHAPE, "call %d: %s", i, tg_status_name(st[i]));
    cr_expect_str_eq(tg_last_error(), first);
    cr_expect_eq(access(p, F_OK), -1, "a failed save made a file");
    cr_expect_eq(tt_temp_files(), 0);
    tg_clear_error();
    tg_tape_free(tape);
    tg_tensor_free(a), tg_tensor_free(t);
}

/* ---- allocation failures ---- */

typedef enum { SAVE_NPY, LOAD_NPY, SAVE_ST, LOAD_ST } io_op;

/* Makes the k-th allocation of op fail for k = 1, 2, ... until op succeeds: every failure must be
   TG_ENOMEM and leave the file as it was (valgrind checks that nothing leaks). */
static void alloc_loop(io_op op) {
    tg_tensor *ts[3] = {TT_RAND(TG_F32, 0, 1, 2, 3), TT_RAND(TG_F64, 0, 2, 0), TT_RAND(TG_F64, 0, 3, 1)};
    const char *names[3] = {"first", "second", "third"};
    const char *p = tt_in_dir(op < SAVE_ST ? "a.npy" : "a.safetensors");
    tg_status st = op < SAVE_ST ? tg_save_npy(p, ts[0]) : tg_save_safetensors(p, names, ts, 3);
    cr_assert_eq(st, TG_OK, "%s", tg_last_error());
    /* cJSON allocates through tg__malloc too: some k must fail inside its parser or printer, and be
       told from bad JSON. */
    const char *in_json = op == LOAD_ST ? "out of memory while parsing the"
                          : op == SAVE_ST ? "out of memory while printing the JSON header"
                                          : NULL;
    int json_failures = 0;
    int k = 1;
    for (;; k++) {
        cr_assert_lt(k, 2000);
        tg_clear_error();
        tg_tensor *t = NULL, **lt = NULL;
        char **ln = NULL;
        int m = 0;
        tg__alloc_fail_at(k);
        switch (op) {
        case SAVE_NPY:
            st = tg_save_npy(p, ts[1]);
            break;
        case LOAD_NPY:
            st = (t = tg_load_npy(p)) ? TG_OK : tg_last_status();
            break;
        case SAVE_ST:
            st = tg_save_safetensors(p, names + 1, ts + 1, 2);
            break;
        case LOAD_ST:
            st = tg_load_safetensors(p, &ln, &lt, &m);
            break;
        }
        tg__alloc_fail_at(0);
        if (st == TG_OK) {
            tg_tensor_free(t);
            tg_safetensors_free(ln, lt, m);
            break;
        }
        cr_expect(ln == NULL && lt == NULL && m == 0);
        cr_expect_eq(tt_temp_files(), 0);
        if (in_json && strstr(tg_last_error(), in_json)) {
            json_failures++;
            cr_expect(strstr(tg_last_error(), p) || op == SAVE_ST, "k=%d: %s", k, tg_last_error());
        }
        cr_expect_eq(tg_last_status(), TG_ENOMEM, "k=%d: %s", k, tg_last_error());
        tt_expect_error(TG_ENOMEM, "out of memory");
        if (op == SAVE_NPY || op == SAVE_ST) {
            if (op == SAVE_NPY) {
                tg_tensor *now = tg_load_npy(p);
                expect_same(ts[0], now, "after a failed save");
                tg_tensor_free(now);
            } else {
                expect_loaded(p, names, ts, 3);
            }
        }
    }
    cr_expect_gt(k, 1, "nothing was allocated");
    if (in_json) cr_expect_gt(json_failures, 0, "no allocation failed inside cJSON (op %d)", (int)op);
    cr_log_info("op %d: %d allocations, %d of them in cJSON", (int)op, k - 1, json_failures);
    for (int i = 0; i < 3; i++) tg_tensor_free(ts[i]);
}

Test(io, npy_save_out_of_memory) { alloc_loop(SAVE_NPY); }
Test(io, npy_load_out_of_memory) { alloc_loop(LOAD_NPY); }
Test(io, safetensors_save_out_of_memory) { alloc_loop(SAVE_ST); }
Test(io, safetensors_load_out_of_memory) { alloc_loop(LOAD_ST); }

/* An allocation that failed earlier does not make later bad JSON read as out of memory: the flag is
   reset before each parse. */
Test(io, bad_json_after_an_allocation_failure_is_still_bad_json) {
    write_st(tt_in_dir("b.safetensors"), "{\"a\":[1,}", 0, 0);
    tg__alloc_fail_at(1);
    cr_assert_null(tg_tensor_new(TG_F32, 1, TT_SHAPE(3)));
    tg__alloc_fail_at(0);
    tg_clear_error();
    char **ln;
    tg_tensor **lt;
    int m;
    cr_expect_eq(tg_load_safetensors(tt_in_dir("b.safetensors"), &ln, &lt, &m), TG_EFORMAT);
    tt_expect_error(TG_EFORMAT, "bad JSON in the header at byte");
}
