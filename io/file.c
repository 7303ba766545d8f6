/* What .npy and safetensors share: reading a whole file, replacing a file atomically, the dtype names and
   the messages about files. A load reads the whole file and checks every size and offset against its real
   length before any of it is used; a save writes a temporary file and renames it over the target. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "io_internal.h"

const char *tg__io_snippet(const unsigned char *p, size_t n, char *out) {
    size_t k = 0;
    for (; k < n && k < SNIP - 8; k++) out[k] = p[k] >= 32 && p[k] < 127 ? (char)p[k] : '?';
    if (k < n) memcpy(out + k, "...", 3), k += 3;
    out[k] = '\0';
    return out;
}

/* A NULL element of an array argument: tg__null with the element named, "names[2]". */
tg_status tg__io_null_elem(const char *fn, const char *what, int i) {
    char name[48];
    snprintf(name, sizeof name, "%s[%d]", what, i);
    return tg__null(fn, name);
}

/* A file that is not what it claims: TG_EFORMAT, with the function and the path before what was found. */
tg_status tg__io_bad(const char *fn, const char *path, const char *fmt, ...) {
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return tg__fail(TG_EFORMAT, "%s: %s: %s", fn, path, why);
}

/* tg_tensor_from's failure (out of memory), restated to name the file. */
tg_status tg__io_restate(const char *fn, const char *path) {
    char why[256];
    snprintf(why, sizeof why, "%s", tg_last_error());
    return tg__fail(tg_last_status(), "%s: %s: %s", fn, path, why);
}

const tg__io_dtype tg__io_dtypes[TG__IO_N_DTYPES] = {{TG_F32, "<f4", "F32"}, {TG_F64, "<f8", "F64"}, {TG_I64, "<i8", "I64"}};

int tg__io_dtype_index(tg_dtype dtype) {
    for (int i = 0; i < TG__IO_N_DTYPES; i++)
        if (tg__io_dtypes[i].dtype == dtype) return i;
    return 0;
}

/* A file's dtype string (st: safetensors', else .npy's) into *dtype; 0 when tapegrad has no such dtype. */
int tg__io_dtype_from(const char *name, int st, tg_dtype *dtype) {
    for (int i = 0; i < TG__IO_N_DTYPES; i++)
        if (!strcmp(name, st ? tg__io_dtypes[i].st : tg__io_dtypes[i].npy)) return *dtype = tg__io_dtypes[i].dtype, 1;
    return 0;
}

uint64_t tg__io_nbytes(int ndim, const int64_t *shape, size_t size) {
    uint64_t n = size;
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0) return 0;
    for (int i = 0; i < ndim; i++) {
        if (n > UINT64_MAX / (uint64_t)shape[i]) return OVERFLOWS;
        n *= (uint64_t)shape[i];
    }
    return n;
}


/* What a file that is not a regular one is, for a message. */
static const char *file_kind(mode_t mode) {
    return S_ISDIR(mode)    ? "a directory"
           : S_ISFIFO(mode) ? "a FIFO (named pipe)"
           : S_ISCHR(mode)  ? "a character device"
           : S_ISBLK(mode)  ? "a block device"
           : S_ISSOCK(mode) ? "a socket"
                            : "neither a file nor a directory";
}

/* The whole of a regular file, from tg__malloc. Opened non-blocking: a plain open of a FIFO waits for a
   writer that may never come, and only fstat on the open descriptor says what the path really is (a
   stat before the open could be of another file). For a regular file O_NONBLOCK changes nothing. */
tg_status tg__io_read_file(const char *fn, const char *path, unsigned char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return tg__fail(TG_EIO, "%s: cannot open %s: %s", fn, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return tg__fail(TG_EIO, "%s: cannot stat %s: %s", fn, path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return tg__fail(TG_EIO, "%s: %s is not a regular file: it is %s", fn, path, file_kind(st.st_mode));
    }
    /* The size is trusted: a file of /proc reports 0 and holds text, which no tensor file is. */
    if (st.st_size == 0) {
        close(fd);
        return tg__fail(TG_EFORMAT, "%s: %s: the file is empty (size 0)", fn, path);
    }
    if ((uintmax_t)st.st_size > SIZE_MAX / 2) {
        close(fd);
        return tg__fail(TG_ENOMEM, "%s: %s is too large to read (%jd bytes)", fn, path, (intmax_t)st.st_size);
    }
    size_t n = (size_t)st.st_size, got = 0;
    unsigned char *p = tg__malloc(n);
    if (!p) {
        close(fd);
        return tg__fail(TG_ENOMEM, "%s: out of memory for the %zu bytes of %s", fn, n, path);
    }
    int err = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r > 0) {
            got += (size_t)r;
        } else if (r == 0) {
            break;
        } else if (errno != EINTR) {
            err = errno;
            break;
        }
    }
    close(fd);
    if (got != n) {
        tg__free(p);
        return tg__fail(TG_EIO, "%s: cannot read %s: %s", fn, path,
                        err ? strerror(err) : "it shrank while read");
    }
    *buf = p;
    *len = n;
    return TG_OK;
}

/* Test hook: the k-th low-level write step of a save fails with EIO. Thread-local, as tg__alloc_fail_at. */
static _Thread_local int64_t write_steps, write_fail_at;

void tg__io_fail_write_at(int64_t k) {
    write_steps = 0;
    write_fail_at = k;
}

static int injected(void) {
    if (write_fail_at > 0 && ++write_steps == write_fail_at) {
        errno = EIO;
        return 1;
    }
    return 0;
}

/* mkstemp makes 0600; a saved file should get the mode a plain fopen would have given it: the old
   file's, else 0666 less the umask. umask() can only be read by setting it, which races other threads,
   so Linux's /proc is asked, and 022 assumed without it. */
static mode_t target_mode(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) return st.st_mode & 07777;
    unsigned mask = 022;
    char line[128];
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Umask: %o", &mask) == 1) break;
    if (f) fclose(f);
    return (mode_t)(0666 & ~mask);
}

/* Writes the chunks to "<path>.tmpXXXXXX" beside path and renames it over path: readers see the old
   file or the new one, never a part. On failure the temporary file is removed and path is untouched. */
tg_status tg__io_save_atomic(const char *fn, const char *path, const tg__io_chunk *c, int n) {
    size_t plen = strlen(path);
    char *tmp = tg__malloc(plen + sizeof ".tmpXXXXXX");
    if (!tmp) return tg__fail(TG_ENOMEM, "%s: out of memory for a temporary name beside %s", fn, path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmpXXXXXX", sizeof ".tmpXXXXXX");
    mode_t mode = target_mode(path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        tg_status st =
            tg__fail(TG_EIO, "%s: cannot create a temporary file beside %s: %s", fn, path, strerror(errno));
        tg__free(tmp);
        return st;
    }
    const char *step = NULL;
    int err = 0;
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        step = "fdopen", err = errno;
        close(fd);
    }
    for (int i = 0; !step && i < n; i++)
        if (c[i].n && (injected() || fwrite(c[i].p, 1, c[i].n, f) != c[i].n)) step = "write", err = errno;
    if (!step && (injected() || fflush(f) != 0)) step = "flush", err = errno;
    /* Best effort: some filesystems (vfat) refuse modes, and the data matters more than its mode. */
    if (!step) (void)fchmod(fd, mode);
    if (!step && (injected() || fsync(fd) != 0)) step = "fsync", err = errno;
    if (f) {
        int closed = fclose(f);
        if (!step && (injected() || closed != 0)) step = "close", err = errno;
    }
    if (!step && (injected() || rename(tmp, path) != 0)) step = "rename", err = errno;
    tg_status st = TG_OK;
    if (step) {
        unlink(tmp);
        st = tg__fail(TG_EIO, "%s: cannot write %s (%s: %s)", fn, path, step, strerror(err));
    }
    tg__free(tmp);
    return st;
}
