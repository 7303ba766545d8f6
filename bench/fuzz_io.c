/* libFuzzer harness for the file loaders: arbitrary bytes are loaded as a .npy file and as a safetensors
 * file. A load must fail with TG_EFORMAT (or TG_ENOMEM) and a message, or succeed with tensors that save
 * and load back equal. Not built by meson; from the repository root:
 *
 *   clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -D_POSIX_C_SOURCE=200809L \
 *       -Icore -Iops -Ilayers bench/fuzz_io.c core/io.c core/tensor.c core/error.c \
 *       -lxxhash -lcjson -lm -o fuzz_io
 *   mkdir -p corpus && ./fuzz_io -max_total_time=180 corpus
 *
 * Seeds: the files `io_tool write DIR` makes (tests/io_tool.c) and those tests/io_numpy_check.py writes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tg_io.h"

static char dir[] = "/tmp/fuzz_io_XXXXXX", in[64], out[64];

static void expect(int ok, const char *what) {
    if (ok) return;
    fprintf(stderr, "fuzz_io: %s (last error: %s %s)\n", what, tg_status_name(tg_last_status()),
            tg_last_error());
    abort();
}

/* A refusal is TG_EFORMAT with a message; TG_ENOMEM only for shapes too large to address. */
static void expect_refusal(void) {
    expect(tg_last_status() == TG_EFORMAT || tg_last_status() == TG_ENOMEM,
           "a load failed with an odd status");
    expect(tg_last_error()[0] != '\0', "a load failed without a message");
}

static void cleanup(void) {
    unlink(in);
    unlink(out);
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    if (!in[0]) {
        expect(mkdtemp(dir) != NULL, "mkdtemp");
        snprintf(in, sizeof in, "%s/in", dir);
        snprintf(out, sizeof out, "%s/out", dir);
        atexit(cleanup);
    }
    FILE *f = fopen(in, "wb");
    expect(f && fwrite(data, 1, size, f) == size && fclose(f) == 0, "cannot write the input file");

    tg_clear_error();
    tg_tensor *t = tg_load_npy(in);
    if (t) {
        expect(tg_save_npy(out, t) == TG_OK, "a loaded .npy does not save");
        tg_tensor *u = tg_load_npy(out);
        expect(u && tg_tensor_hash(u) == tg_tensor_hash(t), "a saved .npy loads different");
        tg_tensor_free(u);
        tg_tensor_free(t);
    } else {
        expect_refusal();
    }

    tg_clear_error();
    char **names, **names2;
    tg_tensor **ts, **ts2;
    int n, n2;
    if (tg_load_safetensors(in, &names, &ts, &n) == TG_OK) {
        expect(tg_save_safetensors(out, (const char *const *)names, ts, n) == TG_OK,
               "loaded safetensors do not save");
        expect(tg_load_safetensors(out, &names2, &ts2, &n2) == TG_OK && n2 == n,
               "saved safetensors do not load");
        for (int i = 0; i < n; i++)
            expect(!strcmp(names[i], names2[i]) && tg_tensor_hash(ts[i]) == tg_tensor_hash(ts2[i]),
                   "saved safetensors load different");
        tg_safetensors_free(names, ts, n);
        tg_safetensors_free(names2, ts2, n2);
    } else {
        expect_refusal();
    }
    tg_clear_error();
    return 0;
}
