/* io/ internals: what the .npy and safetensors files share (io/file.c), and the hooks of the files'
   tests and of checkpoints (train/). Never installed. */
#ifndef TG_IO_INTERNAL_H
#define TG_IO_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "tg_internal.h"

/* Up to 72 bytes of untrusted text, made printable, for a message. out holds SNIP bytes. */
#define SNIP 80
const char *tg__io_snippet(const unsigned char *p, size_t n, char *out);
/* A NULL element of an array argument: tg__null with the element named, "names[2]". */
tg_status tg__io_null_elem(const char *fn, const char *what, int i);
/* A file that is not what it claims: TG_EFORMAT, with the function and the path before what was found. */
tg_status tg__io_bad(const char *fn, const char *path, const char *fmt, ...);
/* tg_tensor_from's failure (out of memory), restated to name the file. */
tg_status tg__io_restate(const char *fn, const char *path);

/* The one place that names dtypes in files: .npy's descr and safetensors' dtype string. */
typedef struct {
    tg_dtype dtype;
    const char *npy, *st;
} tg__io_dtype;
#define TG__IO_N_DTYPES 3
extern const tg__io_dtype tg__io_dtypes[TG__IO_N_DTYPES];
int tg__io_dtype_index(tg_dtype dtype);
/* A file's dtype string (st: safetensors', else .npy's) into *dtype; 0 when tapegrad has no such dtype. */
int tg__io_dtype_from(const char *name, int st, tg_dtype *dtype);

/* numel x size, or UINT64_MAX when that overflows, which no real byte count equals (it is odd; sizes are
   4 and 8). Messages say "overflows" rather than print it. */
#define OVERFLOWS UINT64_MAX
uint64_t tg__io_nbytes(int ndim, const int64_t *shape, size_t size);

/* The whole of a regular file, from tg__malloc, into *buf and *len; messages name fn and path. */
tg_status tg__io_read_file(const char *fn, const char *path, unsigned char **buf, size_t *len);
typedef struct {
    const void *p;
    size_t n;
} tg__io_chunk;
/* Writes the chunks to "<path>.tmpXXXXXX" beside path and renames it over path: readers see the old
   file or the new one, never a part. On failure the temporary file is removed and path is untouched. */
tg_status tg__io_save_atomic(const char *fn, const char *path, const tg__io_chunk *c, int n);

/* Tests: the k-th low-level write step of a save (write, flush, fsync, close, rename) fails with EIO
   (0: never), to prove a failed save leaves the old file and no temp file. */
void tg__io_fail_write_at(int64_t k);
/* safetensors with __metadata__ entries of the caller's besides the checksums (checkpoints): meta holds
   n_meta pairs as 2 * n_meta strings, key, value, key, value, ...; a key may not start with "xxh3:".
   fn names the caller in messages. tg_save_safetensors and tg_load_safetensors are these without pairs. */
tg_status tg__save_safetensors_meta(const char *fn, const char *path, const char *const *names,
                                    tg_tensor *const *tensors, int n, const char *const *meta, int n_meta);
/* Also hands out the pairs found (checksums left out), freed with tg_safetensors_free(*meta_out, NULL,
   2 * *n_meta_out); meta_out and n_meta_out may be NULL when they are not wanted. */
tg_status tg__load_safetensors_meta(const char *fn, const char *path, char ***names_out, tg_tensor ***tensors_out,
                                    int *n_out, char ***meta_out, int *n_meta_out);

#endif
