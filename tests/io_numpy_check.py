#!/usr/bin/env python3
"""tapegrad's .npy and safetensors files against NumPy, both ways.

    python3 io_numpy_check.py PATH/TO/io_tool

Runs `io_tool write` and reads its files with numpy.load, and its safetensors file with json and
numpy.frombuffer laid out as the safetensors package lays it out; then writes files with numpy.save,
numpy.lib.format.write_array (version 2.0) and by hand, and runs `io_tool read` on them. The last line
is "io_numpy: P passed, F failed"; the exit status is non-zero on any failure. The file list must agree
with tests/io_tool.c; element i is i/4 - 1 (f32) or (i+1)/3 (f64).
"""
import io
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile

from checks import Checks

checks = Checks("io_numpy")
check, finish = checks.check, checks.finish


try:
    import numpy as np
except ImportError as e:
    checks.result("import numpy", f"{e} (run with an interpreter that has NumPy: apt-get install python3-numpy)")
    finish()


def values(dtype, shape):
    n = int(np.prod(shape, dtype=np.int64))
    i = np.arange(n, dtype=np.float64)
    if dtype == "<i8":
        return (np.arange(n, dtype=np.int64) * 3 - 5 + (1 << 40)).reshape(shape)  # beyond int32 too
    v = i * 0.25 - 1.0 if dtype == "<f4" else (i + 1) / 3.0
    return v.astype(dtype).reshape(shape)


def same(got, dtype, shape):
    if got.dtype.str != dtype or got.shape != shape:
        return f"dtype {got.dtype.str} shape {got.shape}, want {dtype} {shape}"
    if got.tobytes() != values(dtype, shape).tobytes():
        return f"values {got.ravel()[:8]}..., want {values(dtype, shape).ravel()[:8]}..."
    return None


C_NPY = {
    "c_f32_2x3.npy": ("<f4", (2, 3)),
    "c_f64_4.npy": ("<f8", (4,)),
    "c_f64_0d.npy": ("<f8", ()),
    "c_f32_empty.npy": ("<f4", (0, 3)),
    "c_f64_8d.npy": ("<f8", (2, 1, 2, 1, 1, 2, 1, 2)),
    "c_i64_2x2.npy": ("<i8", (2, 2)),
}
C_ST = [("w", "<f4", (2, 3)), ("b", "<f8", (3,)), ("s", "<f8", ()), ("e", "<f4", (0,))]  # data order
ST_DTYPES = {"F32": "<f4", "F64": "<f8"}


def main():
    tool = sys.argv[1]
    d = tempfile.mkdtemp(prefix="tg_io_numpy_")
    try:
        run = subprocess.run([tool, "write", d], capture_output=True, text=True)
        check("io_tool write",
              lambda: None if run.returncode == 0 else f"exit {run.returncode}: {run.stdout}{run.stderr}")
        for name, (dtype, shape) in C_NPY.items():
            check(f"numpy.load {name}", lambda: npy_from_c(f"{d}/{name}", dtype, shape))
        raw = open(f"{d}/c_mixed.safetensors", "rb").read()
        check("c_mixed.safetensors layout", lambda: st_layout(raw))
        check("c_mixed.safetensors values", lambda: st_values(raw))
        check("c_mixed.safetensors xxh3 metadata", lambda: st_hashes(raw))

        write_python_files(d)
        run = subprocess.run([tool, "read", d], capture_output=True, text=True)
        reports = {}
        for line in run.stdout.splitlines():
            m = re.match(r"(?:ok|FAIL) ([^\s:]+)", line)
            if m:
                reports.setdefault(m[1], line)
        for name in ["py_f32_3x4.npy", "py_f64_0d.npy", "py_f64_empty.npy", "py_f32_v2.npy", "py_f64_8d.npy",
                     "py_i64_5.npy", "py_fortran.npy", "py_bigendian.npy", "py.safetensors"]:
            line = reports.get(name)
            check(f"io_tool read {name}",
                  lambda: "no report" if line is None else None if line.startswith("ok") else line)
        check("io_tool read", lambda: None if run.returncode == 0 else f"exit {run.returncode}: {run.stderr}")
    finally:
        shutil.rmtree(d)
    finish()


def npy_from_c(path, dtype, shape):
    raw = open(path, "rb").read()
    why = same(np.load(path, allow_pickle=False), dtype, shape)
    if why:
        return why
    # np.save of this NumPy writes the same bytes (version 1.0, header padded for growth and to 64 bytes)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, values(dtype, shape), version=(1, 0))
    if raw != buf.getvalue():
        return f"bytes differ from np.save's: {raw[:128]!r} vs {buf.getvalue()[:128]!r}"
    return None


def st_header(raw):
    (n,) = struct.unpack("<Q", raw[:8])
    return n, json.loads(raw[8:8 + n].decode("utf-8")), raw[8 + n:]


def st_layout(raw):
    n, header, data = st_header(raw)
    if n % 8:
        return f"header length {n} is not a multiple of 8"
    body = raw[8:8 + n].rstrip(b" ")
    if not body.endswith(b"}"):
        return f"header padding is not spaces: {raw[8 + len(body):8 + n]!r}"
    entries = sorted((v["data_offsets"], k) for k, v in header.items() if k != "__metadata__")
    at = 0
    for (begin, end), name in entries:
        if begin != at:
            return f"tensor {name} starts at {begin}, want {at}"
        at = end
    if at != len(data):
        return f"tensors cover {at} of {len(data)} data bytes"
    if [k for _, k in entries] != [name for name, _, _ in C_ST]:
        return f"data order {[k for _, k in entries]}"
    return None


def st_values(raw):
    _, header, data = st_header(raw)
    for name, dtype, shape in C_ST:
        e = header[name]
        begin, end = e["data_offsets"]
        arr = np.frombuffer(data[begin:end], dtype=ST_DTYPES[e["dtype"]]).reshape(e["shape"])
        why = same(arr, dtype, shape)
        if why:
            return f"{name}: {why}"
    return None


def st_hashes(raw):
    _, header, _ = st_header(raw)
    meta = header.get("__metadata__", {})
    for name, _, _ in C_ST:
        h = meta.get(f"xxh3:{name}")
        if not isinstance(h, str) or not re.fullmatch(r"[0-9a-f]{16}", h):
            return f"xxh3:{name} is {h!r}"
    return None


def write_python_files(d):
    np.save(f"{d}/py_f32_3x4.npy", values("<f4", (3, 4)))
    np.save(f"{d}/py_f64_0d.npy", values("<f8", ()))
    np.save(f"{d}/py_f64_empty.npy", values("<f8", (2, 0)))
    with open(f"{d}/py_f32_v2.npy", "wb") as f:
        np.lib.format.write_array(f, values("<f4", (5,)), version=(2, 0))
    np.save(f"{d}/py_f64_8d.npy", values("<f8", (1, 2, 1, 2, 1, 2, 1, 2)))
    np.save(f"{d}/py_i64_5.npy", values("<i8", (5,)))
    np.save(f"{d}/py_fortran.npy", np.asfortranarray(values("<f8", (2, 3))))
    np.save(f"{d}/py_bigendian.npy", values("<f8", (3,)).astype(">f8"))

    # As the safetensors package writes: data sorted by dtype (F64 first) then name, header padded with
    # spaces to 8 bytes, offsets relative to the data. No xxh3 keys: other writers have none.
    tensors = {"w": values("<f4", (2, 3)), "b": values("<f8", (3,)), "s": values("<f8", ()),
               "e": values("<f4", (0,))}
    order = sorted(tensors, key=lambda k: (tensors[k].dtype.itemsize != 8, k))
    header, data = {"__metadata__": {"format": "pt"}}, b""
    for k in order:
        a = tensors[k]
        header[k] = {"dtype": "F64" if a.dtype.itemsize == 8 else "F32", "shape": list(a.shape),
                     "data_offsets": [len(data), len(data) + a.nbytes]}
        data += a.tobytes()
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(f"{d}/py.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: io_numpy_check.py IO_TOOL", file=sys.stderr)
        sys.exit(2)
    main()
