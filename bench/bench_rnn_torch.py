#!/usr/bin/python3
"""bench_rnn_torch: bench_rnn's TimeRNN training step in PyTorch, two ways, and torch's gradcheck of it.

  nn.RNN      torch.nn.RNN(D, H, nonlinearity="tanh", batch_first=True) (two bias vectors; PyTorch's fused
              CPU kernel for the whole sequence)
  torch_ops   the seed's loop written from tensor ops, h = tanh(h @ Wh + x_t @ Wx + b), hs = stack(h's): what
              tapegrad records, on PyTorch's autograd tape
  nn.LSTM     at LSTM-W1 and LSTM-W2 (W1's and W2's sizes), torch.nn.LSTM(D, H, batch_first=True): bench_rnn's
              TimeLSTM rows (its weights are laid out and its gates ordered otherwise, the work is the same)
A step is: zero the gradients, hs = forward(xs), hs.backward(dhs), with xs and every weight needing a
gradient, f32, D = H, at the workloads W0-W2 (and W2 at T 256), at 1 and 2 threads (torch.set_num_threads).
Then torch.autograd.gradcheck (full mode, fast_mode=False, f64) of torch_ops at N 2, T 5, D 3, H 4 on xs,
Wx, Wh and b: the function tg_gradcheck checks in bench_rnn. A table, then JSON lines.

Usage: bench_rnn_torch.py [--quick] [--only W0|W1|W2|W2-T256|LSTM-W1|LSTM-W2]
"""
import json
import sys
import time

import torch

WORKLOADS = {"W0": (10, 5, 100), "W1": (32, 35, 128), "W2": (64, 64, 512), "W2-T256": (64, 256, 512),
             "LSTM-W1": (32, 35, 128), "LSTM-W2": (64, 64, 512)}


def time_rnn_ops(xs, Wx, Wh, b):
    N, T, _ = xs.shape
    h = torch.zeros(N, Wh.shape[0], dtype=xs.dtype)
    hs = []
    for t in range(T):
        h = torch.tanh(h @ Wh + xs[:, t, :] @ Wx + b)
        hs.append(h)
    return torch.stack(hs, dim=1)


def problem(N, T, D, H, dtype=torch.float32, seed=42):
    g = torch.Generator().manual_seed(seed)
    u = lambda scale, *shape: ((torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * scale).to(dtype)
    xs = u(1.0, N, T, D).requires_grad_()
    Wx, Wh, b = u(D ** -0.5, D, H), u(H ** -0.5, H, H), u(0.1, H)
    return xs, Wx.requires_grad_(), Wh.requires_grad_(), b.requires_grad_(), u(1.0, N, T, H)


def median_ms(fn, min_reps, budget_s):
    fn(), fn()
    times, start = [], time.perf_counter()
    # at least 3 steps; min_reps unless they would take over 10 s (a loaded machine's 2-thread torch)
    while len(times) < 400 and (len(times) < 3 or (len(times) < min_reps and time.perf_counter() - start < 10)
                                or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    n = len(times)
    return times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])


def bench(name, threads, min_reps, budget_s):
    torch.set_num_threads(threads)
    N, T, H = WORKLOADS[name]
    D = H
    xs, Wx, Wh, b, dhs = problem(N, T, D, H)
    lstm = name.startswith("LSTM")
    rnn = torch.nn.LSTM(D, H, batch_first=True) if lstm else torch.nn.RNN(D, H, nonlinearity="tanh", batch_first=True)

    def step_nn():
        rnn.zero_grad(set_to_none=False)
        xs.grad = None
        hs, _ = rnn(xs)
        hs.backward(dhs)

    def step_ops():
        for p in (xs, Wx, Wh, b):
            p.grad = None
        time_rnn_ops(xs, Wx, Wh, b).backward(dhs)

    rows = []
    for impl, fn in (("nn.LSTM", step_nn),) if lstm else (("nn.RNN", step_nn), ("torch_ops", step_ops)):
        ms = median_ms(fn, min_reps, budget_s)
        rows.append({"bench": impl, "workload": name, "N": N, "T": T, "D": D, "H": H, "threads": threads, "ms": ms,
                     "allocator": "torch CPU allocator"})
    return rows


def gradcheck_ms(reps):
    torch.set_num_threads(1)
    ins = problem(2, 5, 3, 4, dtype=torch.float64)[:4]
    f = lambda *a: time_rnn_ops(*a)
    return median_ms(lambda: torch.autograd.gradcheck(f, ins, fast_mode=False), reps, 0.0)


def main():
    args, quick, only = sys.argv[1:], False, None
    while args:
        a = args.pop(0)
        if a == "--quick":
            quick = True
        elif a == "--only" and args and args[0] in WORKLOADS:
            only = args.pop(0)
        else:
            sys.exit("usage: bench_rnn_torch.py [--quick] [--only W0|W1|W2|W2-T256|LSTM-W1|LSTM-W2]")
    if quick:
        WORKLOADS.clear()
        WORKLOADS.update({"Q0": (2, 3, 4), "Q1": (4, 6, 16), "LSTM-Q": (3, 4, 8)})
    print(f"# bench_rnn_torch: PyTorch {torch.__version__}, f32, D = H; threads by torch.set_num_threads"
          + (" (--quick: tiny sizes, timings meaningless)" if quick else ""))
    print("%-10s %-8s %4s %4s %4s %3s | %9s" % ("impl", "workload", "N", "T", "H", "thr", "ms/step"))
    rows = []
    for name in WORKLOADS:
        if only and name != only:
            continue
        for threads in (1, 2):
            if name == "W2-T256" and threads == 1:
                continue
            for r in bench(name, threads, 3 if quick else 15, 0.0 if quick else 2.0):
                print("%-10s %-8s %4d %4d %4d %3d | %9.3f" % (r["bench"], name, r["N"], r["T"], r["H"], threads,
                                                              r["ms"]), flush=True)
                rows.append(r)
    gc = gradcheck_ms(1 if quick else 5)
    print(f"# torch.autograd.gradcheck (full, f64) of torch_ops at N 2 T 5 D 3 H 4, 1 thread: {gc:.2f} ms")
    rows.append({"bench": "torch_gradcheck", "threads": 1, "ms": gc})
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
