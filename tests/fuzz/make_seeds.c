/* Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/ (committed; rerun after changing a
 * format or fuzz_ops.c's encoding). From the repository root, with a build in build/:
 *   cc -std=c11 -D_POSIX_C_SOURCE=200809L -Icore -Iops -Ilayers tests/fuzz/make_seeds.c build/libtapegrad.a \
 *       $(pkg-config --libs openblas libcjson libxxhash) -lm -o /tmp/make_seeds && /tmp/make_seeds tests/fuzz/corpus
 */
#include <stdio.h>
#include <string.h>
#include "tapegrad.h"

static const char *dir;

static const char *at(const char *target, const char *name) {
    static char p[512];
    snprintf(p, sizeof p, "%s/%s/%s", dir, target, name);
    return p;
}

static void raw(const char *target, const char *name, const void *b, size_t n) {
    FILE *f = fopen(at(target, name), "wb");
    if (!f || fwrite(b, 1, n, f) != n || fclose(f)) perror(name);
}

static tg_tensor *filled(tg_dtype dt, int ndim, const int64_t *shape) {
    tg_tensor *t = tg_tensor_new(dt, ndim, shape);
    for (int64_t i = 0; i < tg_tensor_numel(t); i++) tg_tensor_set(t, i, (double)(i % 5) - 1);
    return t;
}

static void files(void) {
    tg_tensor *a = filled(TG_F32, 2, (int64_t[]){2, 3}), *s = filled(TG_F64, 0, NULL);
    tg_tensor *i = filled(TG_I64, 1, (int64_t[]){4}), *e = filled(TG_F64, 2, (int64_t[]){0, 5});
    tg_save_npy(at("npy", "f32_2x3.npy"), a);
    tg_save_npy(at("npy", "f64_scalar.npy"), s);
    tg_save_npy(at("npy", "i64_4.npy"), i);
    tg_save_npy(at("npy", "f64_empty.npy"), e);
    /* version 2.0: a 4-byte header length */
    static const char v2[] = "\x93NUMPY\x02\x00\x3c\x00\x00\x00"
                             "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }  \n\x00\x00\x80\x3f";
    raw("npy", "v2.npy", v2, sizeof v2 - 1);
    tg_save_safetensors(at("safetensors", "three.safetensors"), (const char *[]){"a", "s", "i"},
                        (tg_tensor *[]){a, s, i}, 3);
    tg_save_safetensors(at("safetensors", "empty.safetensors"), NULL, NULL, 0);
    /* the defect once loaded as "a": a name with an escaped NUL */
    static const char nul[] = "\x40\x00\x00\x00\x00\x00\x00\x00"
                              "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}   "
                              "\x00\x00\x80\x3f";
    raw("safetensors", "nul_name.safetensors", nul, sizeof nul - 1);
    tg_tensor_free(a), tg_tensor_free(s), tg_tensor_free(i), tg_tensor_free(e);
}

/* fuzz_checkpoint.c's list, trained two steps by Adam, saved with and without the optimizer; and SGD's. */
static void checkpoints(void) {
    tg_tensor *W = tg_param_new(TG_F64, 2, (int64_t[]){3, 2}), *b = tg_param_new(TG_F64, 1, (int64_t[]){2});
    tg_tensor *e = tg_param_new(TG_F32, 1, (int64_t[]){4});
    tg_params *ps = tg_params_new();
    tg_params_add(ps, "W", W), tg_params_add(ps, "b", b), tg_params_add(ps, "e", e);
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_ADAM);
    tg_optim *opt = tg_optim_new(ps, &o);
    tg_tape *tape = tg_tape_new();
    for (int step = 0; step < 2; step++) {
        tg_backward(tape, tg_add(tape, tg_sum(tape, tg_tanh(tape, tg_add(tape, W, b))), tg_sum(tape, W)), NULL);
        tg_backward(tape, e, NULL);
        tg_optim_step(opt);
        tg_tape_reset(tape);
    }
    tg_checkpoint_save(at("checkpoint", "adam.safetensors"), ps, opt);
    tg_checkpoint_save(at("checkpoint", "params.safetensors"), ps, NULL);
    tg_optim_free(opt);
    o = tg_optim_defaults(TG_OPTIM_SGD);
    o.momentum = 0.9;
    opt = tg_optim_new(ps, &o);
    tg_optim_step(opt);
    tg_checkpoint_save(at("checkpoint", "sgd.safetensors"), ps, opt);
    tg_optim_free(opt);
    tg_params_free(ps);
    tg_tape_free(tape);
    tg_tensor_free(W), tg_tensor_free(b), tg_tensor_free(e);
}

/* fuzz_ops.c's instructions, by their bytes (see its LLVMFuzzerTestOneInput and the functions it calls).
   Slots 0, 1, 2 start as the TimeRNN's Wx (3,4), Wh (4,4) and b (4,). */
typedef struct {
    unsigned char b[512];
    size_t n;
} prog;
static void emit(prog *p, int n, const unsigned char *bytes) {
    memcpy(p->b + p->n, bytes, (size_t)n), p->n += (size_t)n;
}
#define E(p, ...) emit(p, (int)sizeof((unsigned char[]){__VA_ARGS__}), (unsigned char[]){__VA_ARGS__})
/* dims[] indices: 0:0 1:1 2:2 3:3 4:4 5:5 7:8 9:64 10:512; dtype byte: 0 f32, 1 f64, 2 i64, +4 param */
enum { F32 = 0, F64 = 1, I64 = 2, PARAM = 4 };
static void leaf2(prog *p, int dt, int d0, int d1, int slot) {
    E(p, 0, (unsigned char)dt, 2, (unsigned char)d0, (unsigned char)d1, 9, (unsigned char)slot);
}
/* unary(which): tape 0, x from slot, axes a0 a1 (raw bytes: iarg is v % 16 - 6), l0 l1, scalar index, out slot */
static void un(prog *p, int which, int x, int a0, int a1, int sc, int out) {
    E(p, 2, 0, (unsigned char)which, (unsigned char)x, (unsigned char)a0, (unsigned char)a1, 4, 6, (unsigned char)sc,
      (unsigned char)out);
}
static void bin(prog *p, int which, int x, int w, int c, int out) {
    E(p, 4, 0, (unsigned char)which, (unsigned char)x, (unsigned char)w, (unsigned char)c, 3, (unsigned char)out);
}
static void backward(prog *p, int out, int gout) {
    if (gout < 0) E(p, 7, 0, (unsigned char)out, 0);
    else E(p, 7, 0, (unsigned char)out, 1, (unsigned char)gout);
}
static void reset(prog *p) { E(p, 8, 0); }

static void ops(void) {
    prog p = {{0}, 0};
    /* the reproducer: a (512,512) output spans chunks, so the reset frees the kept (512,4) one */
    E(&p, 1);
    leaf2(&p, F64 | PARAM, 10, 10, 3);
    leaf2(&p, F64 | PARAM, 10, 4, 6);
    un(&p, 1, 3, 6, 6, 4, 4); /* scale (512,512) -> slot 4 */
    un(&p, 1, 6, 6, 6, 4, 7); /* scale (512,4) -> slot 7, kept past the reset */
    reset(&p);
    un(&p, 1, 3, 6, 6, 3, 5);
    backward(&p, 5, 4);
    E(&p, 10, 0, 0, 7);       /* tg_time_rnn_set_state(stale (512,4)) */
    E(&p, 10, 1, 0, 7, 6);    /* tg_time_rnn_forward(stale) */
    E(&p, 9, 8, 7, 0, 0);     /* accessors: read its data */
    raw("ops", "stale_state.bin", p.b, p.n);

    /* a small MLP: linear, relu, cross_entropy with i64 targets, backward, a reset, the same again */
    p.n = 0;
    E(&p, 0);
    leaf2(&p, F64, 4, 3, 3);          /* x (4,3) */
    leaf2(&p, F64 | PARAM, 3, 5, 4);  /* W (3,5) */
    E(&p, 0, I64, 1, 4, 9, 5);        /* targets (4,) */
    bin(&p, 5, 3, 4, 8, 6);           /* linear(x, W, NULL) */
    un(&p, 8, 6, 6, 6, 0, 6);         /* relu */
    bin(&p, 7, 6, 5, 8, 7);           /* cross_entropy */
    backward(&p, 7, -1);
    reset(&p);
    bin(&p, 5, 3, 4, 8, 6);
    bin(&p, 7, 6, 5, 8, 7);
    backward(&p, 7, -1);
    raw("ops", "mlp.bin", p.b, p.n);

    /* a TimeRNN forward from a kept state, and backward through a sum */
    p.n = 0;
    E(&p, 1);
    E(&p, 10, 4, 0, 3, 2, 3);          /* an (N,T,3) input: N dims[3] = 3, T dims[1 + 2] = 3, slot 3 */
    E(&p, 10, 1, 0, 3, 4);             /* forward -> slot 4 */
    un(&p, 9, 4, 6, 6, 0, 5);          /* sum */
    backward(&p, 5, -1);
    E(&p, 10, 3, 0, 0);                /* dh */
    reset(&p);
    E(&p, 10, 1, 0, 3, 4);
    un(&p, 16, 4, 7, 7, 0, 5);         /* max_axis(1, keepdims) */
    un(&p, 12, 5, 5, 0, 0, 6);         /* softmax(-1) */
    backward(&p, 6, 5);
    raw("ops", "rnn.bin", p.b, p.n);

    /* shapes: stack, concat, select, slice, transpose, reshape, then backward with a grad_out of a reset */
    p.n = 0;
    E(&p, 0);
    leaf2(&p, F32 | PARAM, 2, 3, 3);
    leaf2(&p, F32 | PARAM, 2, 3, 4);
    E(&p, 6, 0, 2, 6, 3, 4, 8, 8, 8, 5);     /* stack(2 of them, axis 0) -> slot 5 */
    E(&p, 6, 0, 10, 7, 3, 4, 8, 8, 8, 6);    /* concat(2, axis 1) -> slot 6 */
    un(&p, 18, 5, 6, 6, 0, 7);               /* select */
    un(&p, 20, 6, 6, 7, 0, 7);               /* transpose(0, 1) */
    E(&p, 2, 0, 21, 7, 6, 7, 4, 6, 0, 0, 7); /* reshape to (numel,) */
    backward(&p, 7, 7);
    reset(&p);
    backward(&p, 5, 7);
    raw("ops", "shapes.bin", p.b, p.n);
}

int main(int argc, char **argv) {
    dir = argc > 1 ? argv[1] : "tests/fuzz/corpus";
    files();
    checkpoints();
    ops();
    return 0;
}
