/* libFuzzer target: bytes loaded as a checkpoint into a fixed list (W (3,2) f64, b (2,) f64, e (4,) f32)
 * and an Adam optimizer over it, then into the list alone. A load fails with TG_EFORMAT (or TG_ENOMEM)
 * and a message naming tg_checkpoint_load, changing nothing; or it succeeds. */
#include "fuzz.h"

static tg_tensor *W, *b, *e;
static tg_params *ps;
static tg_optim *opt;

static void cleanup(void) {
    tg_optim_free(opt);
    tg_params_free(ps);
    tg_tensor_free(W), tg_tensor_free(b), tg_tensor_free(e);
}

static void setup(void) {
    W = tg_param_new(TG_F64, 2, (int64_t[]){3, 2});
    b = tg_param_new(TG_F64, 1, (int64_t[]){2});
    e = tg_param_new(TG_F32, 1, (int64_t[]){4});
    ps = tg_params_new();
    fuzz_expect(ps && !tg_params_add(ps, "W", W) && !tg_params_add(ps, "b", b) && !tg_params_add(ps, "e", e),
                "setup");
    tg_optim_opts o = tg_optim_defaults(TG_OPTIM_ADAM);
    opt = tg_optim_new(ps, &o);
    fuzz_expect(opt != NULL, "setup");
    atexit(cleanup);
}

static uint64_t state(void) {
    return tg_tensor_hash(W) ^ 3 * tg_tensor_hash(b) ^ 5 * tg_tensor_hash(e) ^ (uint64_t)tg_optim_steps(opt);
}

static void load(const char *path, tg_optim *o) {
    uint64_t before = state();
    tg_clear_error();
    if (tg_checkpoint_load(path, ps, o) == TG_OK) return;
    fuzz_failed("tg_checkpoint_load", "tg_checkpoint_load: ");
    fuzz_expect(tg_last_status() == TG_EFORMAT || tg_last_status() == TG_ENOMEM, "an odd status");
    fuzz_expect(state() == before, "a failed load changed the parameters or the optimizer");
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (!ps) setup();
    const char *in = fuzz_write(data, size);
    load(in, opt);
    load(in, NULL);
    return 0;
}
