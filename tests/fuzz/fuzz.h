/* What the fuzz targets share: a failed call must leave a status and a message, or the target aborts
 * (libFuzzer then keeps the input as a crash). Each target is built by tests/fuzz/run.sh. */
#ifndef TG_FUZZ_H
#define TG_FUZZ_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tapegrad.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static inline void fuzz_expect(int ok, const char *what) {
    if (ok) return;
    fprintf(stderr, "fuzz: %s (last error: %s \"%s\")\n", what, tg_status_name(tg_last_status()), tg_last_error());
    abort();
}

/* After a call that failed: its status, and a message naming the function (prefix, when not NULL). */
static inline void fuzz_failed(const char *fn, const char *prefix) {
    char what[160];
    snprintf(what, sizeof what, "%s failed without a status", fn);
    fuzz_expect(tg_last_status() != TG_OK, what);
    snprintf(what, sizeof what, "%s failed without a message", fn);
    fuzz_expect(tg_last_error()[0] != '\0', what);
    if (prefix) {
        snprintf(what, sizeof what, "%s's message does not start with \"%s\"", fn, prefix);
        fuzz_expect(!strncmp(tg_last_error(), prefix, strlen(prefix)), what);
    }
}

/* A private directory for the files a target writes, removed at exit. */
static char fuzz_dir[] = "/tmp/tg_fuzz_XXXXXX";
static inline void fuzz_rmdir(void) {
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", fuzz_dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir);
}
static inline const char *fuzz_path(const char *name) {
    static char bufs[2][96];
    static int next, made; /* not "the name still ends in X": mkdtemp's own letters may end in one */
    if (!made) {
        fuzz_expect(mkdtemp(fuzz_dir) != NULL, "mkdtemp");
        made = 1;
        atexit(fuzz_rmdir);
    }
    char *p = bufs[next++ & 1];
    snprintf(p, sizeof bufs[0], "%s/%s", fuzz_dir, name);
    return p;
}

static inline const char *fuzz_write(const unsigned char *data, size_t size) {
    const char *p = fuzz_path("in");
    FILE *f = fopen(p, "wb");
    fuzz_expect(f && fwrite(data, 1, size, f) == size && fclose(f) == 0, "cannot write the input file");
    return p;
}

#endif
