/* The C half of io_numpy_check.py, which checks tapegrad's files against NumPy both ways.
 *
 *   io_tool write DIR   writes c_*.npy and c_mixed.safetensors of known contents
 *   io_tool read DIR    loads the py_* files NumPy wrote and checks every value; prints "ok NAME" or
 *                       "FAIL NAME: why" per file and exits 1 on any failure
 *
 * Element i of every tensor is i/4 - 1 (f32), (i+1)/3 (f64) or 3i - 5 + 2^40 (i64), which C and NumPy
 * compute to the same bits. The file list here and in the script must agree.
 */
#include <stdio.h>
#include <string.h>
#include "tapegrad.h"

typedef struct {
    const char *name;
    tg_dtype dtype;
    int ndim;
    int64_t shape[TG_MAX_DIMS];
} spec;

static const spec c_npy[] = {
    {"c_f32_2x3.npy", TG_F32, 2, {2, 3}},
    {"c_f64_4.npy", TG_F64, 1, {4}},
    {"c_f64_0d.npy", TG_F64, 0, {0}},
    {"c_f32_empty.npy", TG_F32, 2, {0, 3}},
    {"c_f64_8d.npy", TG_F64, 8, {2, 1, 2, 1, 1, 2, 1, 2}},
    {"c_i64_2x2.npy", TG_I64, 2, {2, 2}},
};
/* in data order */
static const spec c_st[] = {
    {"w", TG_F32, 2, {2, 3}}, {"b", TG_F64, 1, {3}}, {"s", TG_F64, 0, {0}}, {"e", TG_F32, 1, {0}}};

static const spec py_npy[] = {
    {"py_f32_3x4.npy", TG_F32, 2, {3, 4}},
    {"py_f64_0d.npy", TG_F64, 0, {0}},
    {"py_f64_empty.npy", TG_F64, 2, {2, 0}},
    {"py_f32_v2.npy", TG_F32, 1, {5}},
    {"py_f64_8d.npy", TG_F64, 8, {1, 2, 1, 2, 1, 2, 1, 2}},
    {"py_i64_5.npy", TG_I64, 1, {5}},
};
/* the safetensors package's data order: F64 before F32, then by name */
static const spec py_st[] = {
    {"b", TG_F64, 1, {3}}, {"s", TG_F64, 0, {0}}, {"e", TG_F32, 1, {0}}, {"w", TG_F32, 2, {2, 3}}};

static tg_tensor *expected(const spec *s) {
    tg_tensor *t = tg_tensor_new(s->dtype, s->ndim, s->shape);
    for (int64_t i = 0; t && i < tg_tensor_numel(t); i++)
        tg_tensor_set(t, i, s->dtype == TG_F32   ? (double)i * 0.25 - 1.0
                            : s->dtype == TG_F64 ? (double)(i + 1) / 3.0
                                                 : (double)(3 * i - 5 + ((int64_t)1 << 40)));
    return t;
}

static void join(char *out, const char *dir, const char *name) { snprintf(out, 4096, "%s/%s", dir, name); }

/* 0 when got is the tensor s describes, else 1 after saying why. */
static int same(const char *what, const spec *s, tg_tensor *got) {
    tg_tensor *want = expected(s);
    int bad = !got || !want;
    if (bad)
        printf("FAIL %s: %s\n", what, tg_last_error());
    else if (tg_tensor_dtype(got) != s->dtype || tg_tensor_ndim(got) != s->ndim ||
             memcmp(tg_tensor_shape(got), s->shape, (size_t)s->ndim * sizeof(int64_t)))
        printf("FAIL %s: dtype %d, %d dims; want dtype %d, %d dims\n", what, (int)tg_tensor_dtype(got),
               tg_tensor_ndim(got), (int)s->dtype, s->ndim),
            bad = 1;
    else if (tg_tensor_hash(got) != tg_tensor_hash(want)) {
        for (int64_t i = 0; i < tg_tensor_numel(got); i++)
            if (tg_tensor_get(got, i) != tg_tensor_get(want, i)) {
                printf("FAIL %s: element %lld is %.17g, want %.17g\n", what, (long long)i,
                       tg_tensor_get(got, i), tg_tensor_get(want, i));
                break;
            }
        bad = 1;
    }
    tg_tensor_free(want);
    return bad;
}

static int write_files(const char *dir) {
    char path[4096];
    int bad = 0;
    for (size_t i = 0; i < sizeof c_npy / sizeof c_npy[0]; i++) {
        tg_tensor *t = expected(&c_npy[i]);
        join(path, dir, c_npy[i].name);
        if (tg_save_npy(path, t)) printf("FAIL write %s: %s\n", c_npy[i].name, tg_last_error()), bad = 1;
        tg_tensor_free(t);
    }
    const char *names[4];
    tg_tensor *ts[4];
    for (int i = 0; i < 4; i++) names[i] = c_st[i].name, ts[i] = expected(&c_st[i]);
    join(path, dir, "c_mixed.safetensors");
    if (tg_save_safetensors(path, names, ts, 4))
        printf("FAIL write c_mixed.safetensors: %s\n", tg_last_error()), bad = 1;
    for (int i = 0; i < 4; i++) tg_tensor_free(ts[i]);
    return bad;
}

/* NumPy's own Fortran-order and big-endian files must be refused, and say why. */
static int refused(const char *dir, const char *name, const char *needle) {
    char path[4096];
    join(path, dir, name);
    tg_clear_error();
    tg_tensor *t = tg_load_npy(path);
    int bad = t || tg_last_status() != TG_EFORMAT || !strstr(tg_last_error(), needle);
    if (bad)
        printf("FAIL %s: loaded, or refused without \"%s\": %s\n", name, needle, tg_last_error());
    else
        printf("ok %s (refused: %s)\n", name, tg_last_error());
    tg_tensor_free(t);
    return bad;
}

static int read_files(const char *dir) {
    char path[4096];
    int bad = 0;
    for (size_t i = 0; i < sizeof py_npy / sizeof py_npy[0]; i++) {
        join(path, dir, py_npy[i].name);
        tg_tensor *t = tg_load_npy(path);
        int b = same(py_npy[i].name, &py_npy[i], t);
        if (!b) printf("ok %s\n", py_npy[i].name);
        bad |= b;
        tg_tensor_free(t);
    }
    bad |= refused(dir, "py_fortran.npy", "Fortran-order");
    bad |= refused(dir, "py_bigendian.npy", "big-endian dtype '>f8'");

    char **names;
    tg_tensor **ts;
    int n, b = 0;
    join(path, dir, "py.safetensors");
    if (tg_load_safetensors(path, &names, &ts, &n)) {
        printf("FAIL py.safetensors: %s\n", tg_last_error());
        return 1;
    }
    if (n != 4) printf("FAIL py.safetensors: %d tensors, want 4\n", n), b = 1;
    for (int i = 0; !b && i < n; i++) {
        if (strcmp(names[i], py_st[i].name))
            printf("FAIL py.safetensors: tensor %d is '%s', want '%s'\n", i, names[i], py_st[i].name), b = 1;
        else
            b = same("py.safetensors", &py_st[i], ts[i]);
    }
    if (!b) printf("ok py.safetensors\n");
    tg_safetensors_free(names, ts, n);
    return bad | b;
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "write") && strcmp(argv[1], "read"))) {
        fprintf(stderr, "usage: io_tool write|read DIR\n");
        return 2;
    }
    return (strcmp(argv[1], "write") ? read_files(argv[2]) : write_files(argv[2])) ? 1 : 0;
}
