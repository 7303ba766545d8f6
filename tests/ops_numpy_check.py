#!/usr/bin/env python3
"""The ops' forward and backward against NumPy, in f32 and f64, on random inputs.

For each case this script writes the inputs and a random grad_out as .npy files, runs ops_tool (the C
half) on them, and compares tapegrad's output and input gradients with the same quantities computed
here in NumPy (in float64), from the textbook formulas: NumPy's broadcasting and axes, first-argmax
gradients, add.at for repeated embedding rows, (softmax - onehot) / count for cross-entropy. Dropout's
mask comes from a Python copy of tg_rng (xoshiro256** seeded by splitmix64), so the check also shows the
mask is the same on any machine. f64 must agree to 1e-12 (relative to the values' scale), f32 to 1e-5.
Usage: ops_numpy_check.py OPS_TOOL. Exits 1 on any failure.
"""
import os
import shutil
import subprocess
import sys
import tempfile

from checks import Checks

checks = Checks("ops_numpy")


try:
    import numpy as np
except ImportError as e:
    checks.result("import numpy", f"{e} (run with an interpreter that has NumPy: apt-get install python3-numpy)")
    checks.finish()

# ---- tg_rng in Python ----
M64 = (1 << 64) - 1


def rng_seed(seed):
    s, x = [], seed & M64
    for _ in range(4):
        x = (x + 0x9E3779B97F4A7C15) & M64
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        s.append(z ^ (z >> 31))
    return s


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


def rng_next(s):
    r = (rotl((s[1] * 5) & M64, 7) * 9) & M64
    u = (s[1] << 17) & M64
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= u
    s[3] = rotl(s[3], 45)
    return r


def rng_uniform(s):
    return (rng_next(s) >> 11) * 2.0**-53


def dropout_mask(n, p, seed):
    user = rng_seed(seed)
    stream = rng_seed(rng_next(user))
    return np.array([rng_uniform(stream) >= p for _ in range(n)])


# ---- the NumPy side: forward and the vector-Jacobian product of each op ----


def unbroadcast(g, shape):
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for d, n in enumerate(shape):
        if n == 1 and g.shape[d] != 1:
            g = g.sum(axis=d, keepdims=True)
    return g


def first_max_mask(x, axis):
    idx = np.expand_dims(np.argmax(x, axis=axis), axis)
    m = np.zeros(x.shape, dtype=bool)
    np.put_along_axis(m, idx, True, axis=axis)
    return m


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis):
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def ref(op, xs, a):
    """op's output, and a function of grad_out g giving the input gradients (None for index inputs),
    all in float64."""
    x = xs[0]
    if op == "matmul":
        b = xs[1]
        return x @ b, lambda g: [unbroadcast(g @ np.swapaxes(b, -1, -2), x.shape),
                                 unbroadcast(np.swapaxes(x, -1, -2) @ g, b.shape)]
    if op == "argmax":
        axis, keep = int(a[0]), bool(a[1])
        return np.argmax(x, axis=axis, keepdims=keep), lambda g: [None]
    if op == "div":
        b = xs[1]
        return x / b, lambda g: [unbroadcast(g / b, x.shape), unbroadcast(-g * x / b**2, b.shape)]
    if op == "neg":
        return -x, lambda g: [-g]
    if op == "add_scalar":
        return x + a[0], lambda g: [g]
    if op == "exp":
        return np.exp(x), lambda g: [g * np.exp(x)]
    if op == "log":
        return np.log(x), lambda g: [g / x]
    if op == "sqrt":
        return np.sqrt(x), lambda g: [g / (2 * np.sqrt(x))]
    if op == "sigmoid":
        s = 1 / (1 + np.exp(-x))
        return s, lambda g: [g * s * (1 - s)]
    if op == "relu":
        return np.maximum(x, 0), lambda g: [g * (x > 0)]
    if op in ("sum_axis", "mean_axis", "max_axis"):
        axis, keep = int(a[0]), bool(a[1])

        def spread(g):  # g back to x's shape
            return np.broadcast_to(g if keep else np.expand_dims(g, axis), x.shape)

        if op == "sum_axis":
            return x.sum(axis=axis, keepdims=keep), lambda g: [spread(g).copy()]
        if op == "mean_axis":
            return x.mean(axis=axis, keepdims=keep), lambda g: [spread(g) / x.shape[axis]]
        return x.max(axis=axis, keepdims=keep), lambda g: [np.where(first_max_mask(x, axis), spread(g), 0.0)]
    if op == "transpose":
        a0, a1 = int(a[0]), int(a[1])
        return np.swapaxes(x, a0, a1), lambda g: [np.swapaxes(g, a0, a1)]
    if op == "concat":
        axis = int(a[0])
        cuts = np.cumsum([t.shape[axis] for t in xs])[:-1]
        return np.concatenate(xs, axis=axis), lambda g: np.split(g, cuts, axis=axis)
    if op == "linear":
        W = xs[1]
        K, Mo = W.shape
        x2 = x.reshape(-1, K)

        def vjp(g):
            g2 = g.reshape(-1, Mo)
            return [(g2 @ W.T).reshape(x.shape), x2.T @ g2] + ([g2.sum(axis=0)] if len(xs) > 2 else [])

        return x @ W + (xs[2] if len(xs) > 2 else 0), vjp
    if op == "addmm":
        xm, W = xs[1], xs[2]
        K, Mo = W.shape
        x2 = xm.reshape(-1, K)

        def vjp(g):
            g2 = g.reshape(-1, Mo)
            return [g, (g2 @ W.T).reshape(xm.shape), x2.T @ g2]

        return x + xm @ W, vjp
    if op == "embedding":
        idx = xs[1]

        def vjp(g):
            gt = np.zeros_like(x)
            np.add.at(gt, idx.reshape(-1), g.reshape(-1, x.shape[1]))
            return [gt, None]

        return x[idx], vjp
    if op == "softmax":
        y = softmax(x, int(a[0]))
        return y, lambda g: [y * (g - (g * y).sum(axis=int(a[0]), keepdims=True))]
    if op == "log_softmax":
        y = log_softmax(x, int(a[0]))
        return y, lambda g: [g - np.exp(y) * g.sum(axis=int(a[0]), keepdims=True)]
    if op == "cross_entropy":
        t, ignore, V = xs[1].reshape(-1), int(a[0]), x.shape[-1]
        lp = log_softmax(x, -1).reshape(-1, V)
        keep = t != ignore
        count = int(keep.sum())
        rows = np.arange(len(t))[keep]

        def vjp(g):
            gl = np.exp(lp)
            gl[rows, t[keep]] -= 1
            gl[~keep] = 0
            return [(gl * g / count if count else gl * 0).reshape(x.shape), None]

        return np.array(-lp[rows, t[keep]].sum() / count if count else 0.0), vjp
    if op == "dropout":
        p = a[0]
        mask = dropout_mask(x.size, p, int(a[1])).reshape(x.shape)
        return x * mask / (1 - p), lambda g: [g * mask / (1 - p)]
    raise ValueError(op)


# ---- the cases ----
rs = np.random.default_rng(20261201)


def U(*shape, lo=-1.0, hi=1.0):
    return rs.uniform(lo, hi, size=shape)


def I(vmax, *shape):
    return rs.integers(0, vmax, size=shape).astype(np.int64)


def cases():
    yield "matmul 2-d", "matmul", [U(3, 4), U(4, 2)], []
    yield "matmul batch", "matmul", [U(2, 3, 4), U(2, 4, 5)], []
    yield "matmul batch @ 2-d", "matmul", [U(2, 3, 3, 4), U(4, 2)], []
    yield "matmul 2-d @ batch", "matmul", [U(3, 4), U(5, 4, 2)], []
    yield "matmul both broadcast (2,1,3,4) @ (5,4,2)", "matmul", [U(2, 1, 3, 4), U(5, 4, 2)], []
    yield "matmul size-1 batch", "matmul", [U(1, 3, 4), U(6, 4, 1)], []
    ties = np.round(U(3, 4, 5) * 2) / 2  # many ties: the first maximum must win
    ties[1, 2, 3] = np.nan
    ties[2, 0, 1] = ties[2, 0, 4] = np.nan
    yield "argmax axis -1, ties and NaN", "argmax", [ties], [-1, 0]
    yield "argmax axis 1 keepdims", "argmax", [ties], [1, 1]
    yield "argmax axis 0", "argmax", [U(4, 3)], [0, 0]
    yield "div broadcast", "div", [U(3, 4), U(4, lo=0.5, hi=2)], []
    yield "div scalar over 3-d", "div", [U(), U(2, 1, 3, lo=0.5, hi=2)], []
    yield "neg", "neg", [U(2, 3)], []
    yield "add_scalar", "add_scalar", [U(5)], [2.5]
    yield "exp", "exp", [U(3, 2, lo=-3, hi=3)], []
    yield "log", "log", [U(4, 3, lo=0.1, hi=5)], []
    yield "sqrt", "sqrt", [U(7, lo=0.1, hi=5)], []
    yield "sigmoid", "sigmoid", [U(2, 5, lo=-8, hi=8)], []
    yield "relu", "relu", [U(4, 4)], []
    for op in ("sum_axis", "mean_axis", "max_axis"):
        yield f"{op} axis 1", op, [U(3, 4, 2)], [1, 0]
        yield f"{op} axis -1 keepdims", op, [U(3, 4, 2)], [-1, 1]
        yield f"{op} of size-1 axis", op, [U(3, 1)], [1, 0]
    yield "transpose 3-d", "transpose", [U(2, 3, 4)], [0, -1]
    yield "concat axis 1", "concat", [U(2, 1, 3), U(2, 4, 3), U(2, 2, 3)], [1]
    yield "concat axis -1", "concat", [U(3, 2), U(3, 5)], [-1]
    yield "linear (N,T,H)", "linear", [U(2, 3, 4), U(4, 5), U(5)], []
    yield "linear 1-d, no bias", "linear", [U(4), U(4, 3)], []
    yield "addmm (N,T,H)", "addmm", [U(2, 3, 5), U(2, 3, 4), U(4, 5)], []
    yield "addmm 1-d x", "addmm", [U(3), U(4), U(4, 3)], []
    yield "embedding (N,T) with repeats", "embedding", [U(5, 3), np.array([[0, 4, 4], [2, 0, 4]])], []
    yield "softmax axis 0", "softmax", [U(3, 4, lo=-5, hi=5)], [0]
    yield "log_softmax axis -1", "log_softmax", [U(2, 3, 6, lo=-5, hi=5)], [-1]
    yield "log_softmax at 1e4", "log_softmax", [U(3, 5, lo=-1e4, hi=1e4)], [-1]
    t = I(6, 2, 4)
    t[0, 1] = t[1, 3] = -1
    yield "cross_entropy (N,T,V), ignored", "cross_entropy", [U(2, 4, 6, lo=-3, hi=3), t], [-1]
    yield "cross_entropy at 1e4", "cross_entropy", [U(4, 7, lo=-1e4, hi=1e4), I(7, 4)], [-100]
    yield "dropout p 0.4", "dropout", [U(6, 5)], [0.4, 12345]


def compare(what, got, want, dtype):
    want = np.asarray(want, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if got.shape != want.shape:
        return f"{what}: shape {got.shape}, want {want.shape}"
    if not np.all(np.isfinite(got)) and not np.array_equal(got, want, equal_nan=True):
        return f"{what}: not finite: {got.ravel()[:6]}"
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    tol = (1e-12 if dtype == "<f8" else 1e-5) * scale
    err = float(np.abs(got - want).max()) if want.size else 0.0
    return None if err <= tol else f"{what}: max |diff| {err:.3g} > {tol:.3g}"


def run_case(tool, d, name, op, xs, args, dtype):
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))
    ins = [x.astype(dtype) if x.dtype != np.int64 else x for x in xs]
    for i, x in enumerate(ins):
        np.save(f"{d}/in{i}.npy", x)
    x64 = [x.astype(np.float64) if x.dtype != np.int64 else x for x in ins]
    y, vjp = ref(op, x64, args)
    g = rs.uniform(-1, 1, size=np.shape(y)).astype(dtype)
    np.save(f"{d}/gout.npy", g)
    grads = vjp(g.astype(np.float64))
    run = subprocess.run([tool, d, op] + [repr(a) for a in args], capture_output=True, text=True)
    if run.returncode:
        return f"ops_tool exit {run.returncode}: {run.stderr.strip()}"
    why = compare("output", np.load(f"{d}/out.npy"), y, dtype)
    for i, gi in enumerate(grads):
        if why is None and gi is not None:
            why = compare(f"gradient of input {i}", np.load(f"{d}/grad{i}.npy"), gi, dtype)
    return why


def main():
    tool = sys.argv[1]
    d = tempfile.mkdtemp(prefix="tg_ops_numpy_")
    try:
        for name, op, xs, args in cases():
            for dtype in ("<f8", "<f4"):
                why = run_case(tool, d, name, op, xs, args, dtype)
                checks.result(f"{name} ({'f64' if dtype == '<f8' else 'f32'})", why)
    finally:
        shutil.rmtree(d)
    checks.finish()


if __name__ == "__main__":
    main()
