/* tapegrad: tensor files that NumPy and PyTorch read.
 *
 * .npy (NumPy's format, versions 1.0 and 2.0; little-endian f4/f8, C order) holds one tensor;
 * safetensors (8-byte little-endian header length, a JSON header, raw little-endian data) holds a
 * named set. Loading trusts nothing in the file: every size and offset is checked before use, and a
 * file that fails a check is refused with TG_EFORMAT and a message saying what was found.
 * Saving is atomic: a temporary file in the same directory is written, flushed, fsync'ed and renamed
 * over the target, so a failure leaves the previous file as it was.
 *
 * Loading reads regular files only: a FIFO, device, socket or directory is refused with TG_EIO naming
 * what it is (without waiting for a FIFO's writer), and a file whose size is 0 (an empty one, or one
 * of /proc, whose size the system reports as 0) with TG_EFORMAT "the file is empty (size 0)".
 * A NULL argument is TG_EINVAL naming it, unless an earlier failure is pending: then that failure's
 * status and message are kept, as every tapegrad call does (a NULL is most often a failed call's
 * result), so a chain of calls can be checked once at its end.
 * The safetensors functions parse and print JSON with cJSON, whose memory they route through
 * tapegrad's allocator (so running out of it is TG_ENOMEM, not a bad header). cJSON's allocator hooks
 * are process-wide: the first safetensors call installs tapegrad's, once (thread-safely). A program
 * that also uses cJSON gets them too, which is harmless (they allocate as malloc and free with free),
 * but it must not install hooks of its own while tapegrad uses cJSON.
 */
#ifndef TG_IO_H
#define TG_IO_H

#include "tg_tensor.h"

/* Writes t (f32 as '<f4', f64 as '<f8', C order) to path, as np.save does. TG_EINVAL (NULL path or t),
   TG_ESTATE (t an output of an ended recording), TG_EIO (the message names the path and the OS's
   reason), TG_ENOMEM. */
tg_status tg_save_npy(const char *path, tg_tensor *t);
/* Reads a tensor the caller owns (no gradient). NULL with TG_EINVAL, TG_EIO, TG_EFORMAT or TG_ENOMEM. */
tg_tensor *tg_load_npy(const char *path);

/* Writes n tensors under n distinct, non-empty names. The header's __metadata__ holds each tensor's
   XXH3-64 (tg_tensor_hash, as 16 hex digits, key "xxh3:<name>"), checked on load. TG_EINVAL (NULL,
   empty, duplicate or "__metadata__" name), TG_ESTATE (an output of an ended recording), TG_EIO,
   TG_ENOMEM. The data is in the given order. */
tg_status tg_save_safetensors(const char *path, const char *const *names, tg_tensor *const *tensors,
                              int n);
/* Loads every tensor; *names_out and *tensors_out are arrays of *n_out, in the file's data order,
   freed with tg_safetensors_free (NULL when the file holds none). On failure the outputs are NULL/0.
   TG_EINVAL, TG_EIO, TG_EFORMAT, TG_ENOMEM. A file without xxh3 keys (another writer's) loads unchecked.
   A string of the header holding a NUL ("a\u0000b") or a raw control byte is TG_EFORMAT: a C string
   would cut the name short, and JSON forbids the latter. */
tg_status tg_load_safetensors(const char *path, char ***names_out, tg_tensor ***tensors_out,
                              int *n_out);
void tg_safetensors_free(char **names, tg_tensor **tensors, int n);

#endif
