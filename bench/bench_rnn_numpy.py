#!/usr/bin/python3
"""bench_rnn_numpy: bench_rnn's computation in NumPy, with the seed's hand-derived formulas, fixed.

The classes follow the seed notebook (/work/shared/seed/rnn_timernn_notebook.txt, and
layers/rnn_ref.c for the fixes): RNN.forward
    t = h_prev @ Wh + x @ Wx + b;  h_next = tanh(t)
and RNN.backward
    dt = dh_next * (1 - h_next**2);  db = sum(dt, axis=0);  dWh = h_prev.T @ dt;  dh_prev = dt @ Wh.T
    dWx = x.T @ dt (FIX 3);  dx = dt @ Wx.T (FIX 4)
with np.tanh (FIX 1) and np.matmul (FIX 2); TimeRNN.backward takes N, T, H from dhs and D from Wx
(FIX 5), carries dh backwards and sums the parameter gradients over the steps. One liberty, for speed
only: RNN.backward returns its gradients and TimeRNN adds them up, instead of each step's RNN copying
them into zeros_like(Wx), zeros_like(Wh) buffers of its own, as the seed does (that costs two weight-
sized allocations and copies per step, which would flatter tapegrad). hs and dxs take the input's
dtype (the seed hard-codes 'f').

What is timed, per step: hs = forward(xs), then backward(dhs), which makes dxs, dWx, dWh and db, at
bench_rnn's workloads (W0 N 10 T 5 H 100, W1 N 32 T 35 H 128, W2 N 64 T 64 H 512, W2 at T 256), f32,
D = H; a table, then JSON lines. Threads: OpenBLAS's, from OPENBLAS_NUM_THREADS (compare.sh sets it).
step_MiB is the peak of tracemalloc over one (untimed) step, less what was allocated before it: the
memory a step needs beyond the parameters, as bench_rnn's step_MiB (the tape's arena at its peak).
It counts dxs, dWx, dWh and db, which tapegrad keeps in the parameters' gradient buffers instead.

Usage: bench_rnn_numpy.py [--quick] [--only W0|W1|W2|W2-T256]
  --quick   tiny sizes (a smoke run)       --only   one workload
A finite-difference check of the formulas runs first, in f64 at a small size; a mismatch exits 1.
NumPy and tapegrad share Debian's OpenBLAS (check with: ldd on numpy's _multiarray_umath).
"""
import json
import os
import sys
import time
import tracemalloc

import numpy as np


class RNN:
    def __init__(self, Wx, Wh, b):
        self.params = [Wx, Wh, b]
        self.cache = None

    def forward(self, x, h_prev):
        Wx, Wh, b = self.params
        t = np.matmul(h_prev, Wh) + np.matmul(x, Wx) + b
        h_next = np.tanh(t)  # FIX 1: np.tahn
        self.cache = (x, h_prev, h_next)
        return h_next

    def backward(self, dh_next):
        Wx, Wh, b = self.params
        x, h_prev, h_next = self.cache
        dt = dh_next * (1 - h_next ** 2)
        db = np.sum(dt, axis=0)
        dWh = np.matmul(h_prev.T, dt)
        dh_prev = np.matmul(dt, Wh.T)
        dWx = np.matmul(x.T, dt)  # FIX 2, 3: np.matul(dt, Wx.T)
        dx = np.matmul(dt, Wx.T)  # FIX 4: dx was returned but never computed
        return dx, dh_prev, (dWx, dWh, db)


class TimeRNN:
    def __init__(self, Wx, Wh, b, stateful=False):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.layers = None
        self.h, self.dh = None, None
        self.stateful = stateful

    def forward(self, xs):
        Wx, Wh, b = self.params
        N, T, D = xs.shape
        D, H = Wx.shape
        self.layers = []
        hs = np.empty((N, T, H), dtype=xs.dtype)
        if not self.stateful or self.h is None:
            self.h = np.zeros((N, H), dtype=xs.dtype)
        for t in range(T):
            layer = RNN(*self.params)
            self.h = layer.forward(xs[:, t, :], self.h)
            hs[:, t, :] = self.h
            self.layers.append(layer)
        return hs

    def backward(self, dhs):
        Wx, Wh, b = self.params
        N, T, H = dhs.shape  # FIX 5: xs is not in scope here
        D, H = Wx.shape
        dxs = np.empty((N, T, D), dtype=dhs.dtype)
        dh = 0
        grads = [0, 0, 0]
        for t in reversed(range(T)):
            layer = self.layers[t]
            dx, dh, layer_grads = layer.backward(dhs[:, t, :] + dh)
            dxs[:, t, :] = dx
            for i, grad in enumerate(layer_grads):
                grads[i] += grad
        for i, grad in enumerate(grads):
            self.grads[i][...] = grad
        self.dh = dh
        return dxs


def make_problem(dtype, N, T, D, H, seed=42):
    rng = np.random.default_rng(seed)
    u = lambda scale, *shape: rng.uniform(-scale, scale, shape).astype(dtype)
    xs = u(1.0, N, T, D)
    Wx, Wh, b = u(1 / np.sqrt(D), D, H), u(1 / np.sqrt(H), H, H), u(0.1, H)
    dhs = u(1.0, N, T, H)
    return xs, Wx, Wh, b, dhs


def step(layer, xs, dhs, times):
    t0 = time.perf_counter()
    hs = layer.forward(xs)
    t1 = time.perf_counter()
    dxs = layer.backward(dhs)
    t2 = time.perf_counter()
    del hs, dxs
    layer.layers = None  # what tg_tape_reset frees: the steps' caches
    t3 = time.perf_counter()
    times.append(((t3 - t0) * 1e3, (t1 - t0) * 1e3, (t2 - t1) * 1e3))


def check_gradients():
    """Central differences of L = sum(dhs * hs) against the formulas, in f64 at a small size."""
    N, T, D, H = 3, 5, 6, 7
    xs, Wx, Wh, b, dhs = make_problem(np.float64, N, T, D, H)
    layer = TimeRNN(Wx, Wh, b)
    layer.forward(xs)
    dxs = layer.backward(dhs)
    got = {"xs": dxs, "Wx": layer.grads[0], "Wh": layer.grads[1], "b": layer.grads[2]}
    arrays = {"xs": xs, "Wx": Wx, "Wh": Wh, "b": b}
    eps = 1e-6
    for name, a in arrays.items():
        num = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            keep = a[i]
            a[i] = keep + eps
            lp = np.sum(dhs * TimeRNN(Wx, Wh, b).forward(xs))
            a[i] = keep - eps
            lm = np.sum(dhs * TimeRNN(Wx, Wh, b).forward(xs))
            a[i] = keep
            num[i] = (lp - lm) / (2 * eps)
        err = np.max(np.abs(num - got[name]))
        if not err <= 1e-6:
            sys.exit(f"bench_rnn_numpy: d{name} differs from central differences by {err:.3g}")


WORKLOADS = {"W0": (10, 5, 100), "W1": (32, 35, 128), "W2": (64, 64, 512), "W2-T256": (64, 256, 512)}


def bench_workload(name, dtype, min_reps, budget_s):
    N, T, H = WORKLOADS[name]
    D = H
    xs, Wx, Wh, b, dhs = make_problem(dtype, N, T, D, H)
    layer = TimeRNN(Wx, Wh, b)
    warm = []
    step(layer, xs, dhs, warm)
    step(layer, xs, dhs, warm)
    # memory: one untimed step under tracemalloc (NumPy reports its buffers to it)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    step(layer, xs, dhs, warm)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    times = []
    start = time.perf_counter()
    # at least 3 steps; min_reps unless they would take over 10 s
    while len(times) < 400 and (len(times) < 3 or (len(times) < min_reps and time.perf_counter() - start < 10)
                                or time.perf_counter() - start < budget_s):
        step(layer, xs, dhs, times)
    med = [float(np.median([t[j] for t in times])) for j in range(3)]
    return (N, T, D, H), med, (peak - base) / 2**20


def main():
    args, quick, only = sys.argv[1:], False, None
    try:
        while args:
            a = args.pop(0)
            if a == "--quick":
                quick = True
            elif a == "--only" and args and args[0] in WORKLOADS:
                only = args.pop(0)
            else:
                raise ValueError(a)
    except ValueError:
        sys.exit("usage: bench_rnn_numpy.py [--quick] [--only W0|W1|W2|W2-T256]")
    check_gradients()
    if quick:
        WORKLOADS.clear()
        WORKLOADS.update({"Q0": (2, 3, 4), "Q1": (4, 6, 16)})
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    alloc = os.environ.get("GLIBC_TUNABLES", "default")
    print(f"# bench_rnn_numpy: the seed's TimeRNN (fixed), f32, D = H, NumPy {np.__version__}; "
          f"OPENBLAS_NUM_THREADS={threads}; glibc malloc tunables: {alloc}"
          + (" (--quick: tiny sizes, timings meaningless)" if quick else ""))
    print("# step_MiB: tracemalloc's peak over one step; median of >= 15 steps after 2 warm-up steps")
    print("%-8s %4s %4s %4s | %9s %9s %9s | %8s" % ("workload", "N", "T", "H", "ms/step", "fwd_ms", "bwd_ms",
                                                     "step_MiB"))
    rows = []
    for name in WORKLOADS:
        if only and name != only:
            continue
        (N, T, D, H), (ms, fwd, bwd), mib = bench_workload(name, np.float32, 3 if quick else 15,
                                                            0.0 if quick else 2.0)
        print("%-8s %4d %4d %4d | %9.3f %9.3f %9.3f | %8.2f" % (name, N, T, H, ms, fwd, bwd, mib), flush=True)
        rows.append({"bench": "numpy_seed", "workload": name, "N": N, "T": T, "D": D, "H": H, "threads": threads,
                     "ms": ms, "fwd_ms": fwd, "bwd_ms": bwd, "peak_mib": mib, "allocator": "glibc " + alloc})
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
