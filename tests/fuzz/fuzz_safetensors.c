/* libFuzzer target: bytes loaded as a safetensors file. A load fails with TG_EFORMAT (TG_ENOMEM for shapes
 * too large to hold) and a message naming tg_load_safetensors, with its outputs NULL; or it gives named
 * tensors that save and load back equal, names included (a name cut at a NUL would not). */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    const char *in = fuzz_write(data, size);
    char **names = (char **)1, **names2;
    tg_tensor **ts = (tg_tensor **)1, **ts2;
    int n = -1, n2;
    tg_clear_error();
    if (tg_load_safetensors(in, &names, &ts, &n) != TG_OK) {
        fuzz_failed("tg_load_safetensors", "tg_load_safetensors: ");
        fuzz_expect(tg_last_status() == TG_EFORMAT || tg_last_status() == TG_ENOMEM, "an odd status");
        fuzz_expect(!names && !ts && n == 0, "a failed load left outputs");
        return 0;
    }
    const char *out = fuzz_path("out.safetensors");
    fuzz_expect(tg_save_safetensors(out, (const char *const *)names, ts, n) == TG_OK, "loaded tensors do not save");
    fuzz_expect(tg_load_safetensors(out, &names2, &ts2, &n2) == TG_OK && n2 == n, "saved tensors do not load");
    for (int i = 0; i < n; i++)
        fuzz_expect(!strcmp(names[i], names2[i]) && tg_tensor_hash(ts[i]) == tg_tensor_hash(ts2[i]),
                    "saved tensors load different");
    tg_safetensors_free(names, ts, n);
    tg_safetensors_free(names2, ts2, n2);
    return 0;
}
