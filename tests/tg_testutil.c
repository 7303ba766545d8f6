#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "tg_testutil.h"

static char dir[64];

void tt_dir_make(const char *prefix) {
    snprintf(dir, sizeof dir, "/tmp/%s_XXXXXX", prefix);
    cr_assert(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
}

const char *tt_dir(void) { return dir; }

void tt_dir_remove(void) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (unlink(p) != 0) rmdir(p);
        }
    if (d) closedir(d);
    rmdir(dir);
    tg__alloc_fail_at(0);
    tg__io_fail_write_at(0);
}

const char *tt_in_dir(const char *name) {
    static char names[64][64], paths[64][512];
    static int n;
    int i = 0;
    while (i < n && strcmp(names[i], name)) i++;
    if (i == n) {
        cr_assert_lt(n, 64, "tt_in_dir: more than 64 names in one test");
        snprintf(names[n], sizeof names[n], "%s", name);
        n++;
    }
    snprintf(paths[i], sizeof paths[i], "%s/%s", dir, name); /* the directory is the test's: renew it */
    return paths[i];
}

tg_tensor *tt_rand(tg_dtype dtype, int param, uint64_t seed, int ndim, const int64_t *shape) {
    tg_tensor *t = param ? tg_param_new(dtype, ndim, shape) : tg_tensor_new(dtype, ndim, shape);
    cr_assert(t, "tt_rand: %s", tg_last_error());
    tg_tensor_fill_uniform(t, -1.0, 1.0, &seed);
    return t;
}

tg_status tt_same_shape(tg_tensor *const *in, int n, void *user, int *ndim, int64_t *shape) {
    (void)n, (void)user;
    *ndim = tg_tensor_ndim(in[0]);
    memcpy(shape, tg_tensor_shape(in[0]), (size_t)*ndim * sizeof *shape);
    return TG_OK;
}

char *tt_tape_text(const tg_tape *tape, int dot) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert(f);
    tg_status st = dot ? tg_tape_write_dot(tape, f) : tg_tape_print(tape, f);
    fclose(f);
    cr_assert_eq(st, TG_OK, "%s", tg_last_error());
    return buf;
}

unsigned char *tt_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "fopen %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)len + 1);
    cr_assert(p);
    *n = fread(p, 1, (size_t)len, f);
    fclose(f);
    return p;
}

void tt_write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert(f, "fopen %s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(p, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

int tt_temp_files(void) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d))) n += strstr(e->d_name, ".tmp") != NULL;
    if (d) closedir(d);
    return n;
}

double tt_max_rel(tg_tensor *a, int grad, tg_tensor *r) {
    double worst = 0.0;
    const void *p = grad ? tg_tensor_grad(a) : tg_tensor_data(a);
    cr_assert(p && tg_tensor_numel(a) == tg_tensor_numel(r), "tt_max_rel: no gradient, or sizes differ");
    for (int64_t i = 0; i < tg_tensor_numel(a); i++) {
        double x = tg_tensor_dtype(a) == TG_F32 ? ((const float *)p)[i] : ((const double *)p)[i];
        double y = tg_tensor_get(r, i);
        double e = fabs(x - y) / fmax(fabs(y), 1e-12);
        if (!(e <= worst)) worst = e;
    }
    return worst;
}

void tt_check3(tg_fn f, tg_ref_fn ref, void *ctx, tg_tensor *const *in, int n, const char *label) {
    tg_gradcheck_opts o = tg_gradcheck_defaults();
    o.atol = 1e-8, o.rtol = 1e-6;
    tg_gradcheck_report vr, vn;
    int ok = tg_gradcheck_ref(f, ref, ctx, in, n, &o, &vr, &vn);
    cr_expect(ok, "%s, full mode\n vs ref: %s\n vs numeric: %s", label, vr.message, vn.message);
    cr_expect_leq(vr.max_rel_err, 1e-10, "%s, full mode vs reference: %s", label, vr.message);
    o.fast = 1, o.atol = 0;
    for (uint64_t seed = 1; seed <= 4; seed++) {
        o.seed = seed;
        ok = tg_gradcheck_ref(f, ref, ctx, in, n, &o, &vr, &vn);
        cr_expect(ok, "%s, fast mode seed %llu\n vs ref: %s\n vs numeric: %s", label, (unsigned long long)seed,
                  vr.message, vn.message);
        cr_expect_leq(vn.max_rel_err, 1e-6, "%s, fast mode vs numeric: %s", label, vn.message);
        cr_expect_leq(vr.max_rel_err, 1e-10, "%s, fast mode vs reference: %s", label, vr.message);
    }
}

void tt_each_alloc_failure(tg_tensor *(*call)(tg_tape *tape, void *ctx), void *ctx, const char *prefix) {
    int failures = 0, done = 0;
    for (int64_t k = 1; k < 10000 && !done; k++) {
        tg_tape *tape = tg_tape_new();
        cr_assert(tape);
        tg_clear_error();
        tg__alloc_fail_at(k);
        tg_tensor *y = call(tape, ctx);
        int64_t used = tg__alloc_count(); /* read before tg__alloc_fail_at(0) zeroes it */
        tg__alloc_fail_at(0);
        if (y) {
            done = used < k; /* the k-th allocation never came: every point has been failed */
        } else {
            failures++;
            cr_expect_eq(tg_last_status(), TG_ENOMEM, "k=%lld: %s", (long long)k, tg_last_error());
            cr_expect(!strncmp(tg_last_error(), prefix, strlen(prefix)), "k=%lld: %s", (long long)k, tg_last_error());
        }
        tg_tape_free(tape);
    }
    cr_expect(done && failures > 0, "done %d after %d failures", done, failures);
}
