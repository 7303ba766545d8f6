/* libFuzzer target: bytes loaded as a .npy file. A load fails with TG_EFORMAT (TG_ENOMEM for shapes too
 * large to hold) and a message naming tg_load_npy, or gives a tensor that saves and loads back equal. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    const char *in = fuzz_write(data, size);
    tg_clear_error();
    tg_tensor *t = tg_load_npy(in);
    if (!t) {
        fuzz_failed("tg_load_npy", "tg_load_npy: ");
        fuzz_expect(tg_last_status() == TG_EFORMAT || tg_last_status() == TG_ENOMEM, "an odd status");
        return 0;
    }
    const char *out = fuzz_path("out.npy");
    fuzz_expect(tg_save_npy(out, t) == TG_OK, "a loaded .npy does not save");
    tg_tensor *u = tg_load_npy(out);
    fuzz_expect(u && tg_tensor_hash(u) == tg_tensor_hash(t), "a saved .npy loads different");
    tg_tensor_free(u);
    tg_tensor_free(t);
    return 0;
}
