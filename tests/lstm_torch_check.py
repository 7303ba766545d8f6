#!/usr/bin/env python3
"""TimeLSTM and TimeGRU against PyTorch: forward values and every gradient.

    python3 lstm_torch_check.py PATH/TO/lstm_tool

Writes inputs as .npy files, runs `lstm_tool DIR lstm|gru` on them, and compares its outputs with
PyTorch's, after mapping the book's weights onto PyTorch's:

- LSTM: torch.nn.LSTM, exactly. The book's Wx (D,4H) holds the gates' columns in the order f, g, i, o;
  PyTorch's weight_ih (4H,D) holds their rows in the order i, f, g, o, transposed, with two biases (the
  book's b goes into bias_ih, bias_hh is 0).
- GRU: torch.nn.GRU cannot hold the book's GRU in general: PyTorch applies the reset gate after Whh,
  r * (h Whh + b_hn), where the book's is (r * h) Whh, and it keeps h where the book's z takes h~
  (h' = (1 - z) n + z h). The second is a change of sign (sigmoid(-a) = 1 - sigmoid(a): negate the z
  weights and bias); the first vanishes when Whh is diagonal. So nn.GRU is compared with a diagonal
  Whh (Whh's gradient on its diagonal only), and the book's GRU written in torch ops, under autograd,
  with any Whh. A last check shows nn.GRU differs from the book's GRU for a full Whh, which is why.

The last line is "lstm_torch: P passed, F failed"; the exit status is non-zero on any failure. Without
torch it says so and exits 77, which meson reports as a skip (the README's test command installs python3-torch).
"""
import os
import subprocess
import sys
import tempfile

from checks import Checks

checks = Checks("lstm_torch")
check = checks.check


try:
    import numpy as np
    import torch
except ImportError as e:
    print(f"SKIP lstm_torch: {e} (needs NumPy and PyTorch: apt-get install python3-numpy python3-torch)")
    sys.exit(77)

tool = sys.argv[1]
LSTM_ORDER = [2, 0, 1, 3]  # PyTorch's row blocks i, f, g, o are the book's column blocks 2, 0, 1, 3


def run_tool(kind, arrays):
    """Writes arrays to a scratch dir, runs lstm_tool there, returns its outputs by name."""
    with tempfile.TemporaryDirectory() as d:
        for name, a in arrays.items():
            np.save(os.path.join(d, name + ".npy"), a)
        r = subprocess.run([tool, d, kind], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"lstm_tool failed: {r.stderr.strip()}")
        names = ["hs", "dxs", "dWx", "dWh", "db", "dh0"] + (["dc0"] if kind == "lstm" else [])
        return {n: np.load(os.path.join(d, n + ".npy")) for n in names}


def compare(got, want, dtype):
    """None when got matches want within the dtype's tolerance, else where it does not."""
    rtol, atol = (1e-9, 1e-12) if dtype == np.float64 else (1e-4, 1e-5)
    for name, w in want.items():
        g = got[name]
        if g.shape != w.shape:
            return f"{name}: shape {g.shape}, want {w.shape}"
        if not np.allclose(g, w, rtol=rtol, atol=atol):
            i = np.unravel_index(np.argmax(np.abs(g - w)), g.shape)
            return f"{name}{list(i)}: {g[i]!r} vs torch {w[i]!r} (max |diff| {np.max(np.abs(g - w)):.3g})"
    return None


def inputs(seed, N, T, D, H, G, dtype, state):
    rng = np.random.default_rng(seed)
    a = {"xs": rng.uniform(-1, 1, (N, T, D)), "Wx": rng.uniform(-1, 1, (D, G * H)),
         "Wh": rng.uniform(-1, 1, (H, G * H)), "b": rng.uniform(-1, 1, (G * H,)),
         "gout": rng.uniform(-1, 1, (N, T, H))}
    if state:
        a["h0"] = rng.uniform(-1, 1, (N, H))
        if G == 4:
            a["c0"] = rng.uniform(-1, 1, (N, H))
    return {k: v.astype(dtype) for k, v in a.items()}


def tt(a, grad=True):
    return torch.tensor(a, requires_grad=grad)


def blocks(W, H, order, signs=None):
    """The book's (K,GH) columns as PyTorch's (GH,K) rows: block k of the result is the book's order[k]."""
    signs = signs or [1] * len(order)
    return np.concatenate([s * W[:, j * H:(j + 1) * H].T for j, s in zip(order, signs)])


def unblocks(Wt, H, order, signs=None):
    """The inverse of blocks, for gradients."""
    signs = signs or [1] * len(order)
    out = np.zeros((Wt.shape[1], len(order) * H), Wt.dtype)
    for k, (j, s) in enumerate(zip(order, signs)):
        out[:, j * H:(j + 1) * H] = s * Wt[k * H:(k + 1) * H].T
    return out


def torch_rnn(module, a, H, G, order, signs=None):
    """Runs an nn.LSTM or nn.GRU holding the book's weights; returns hs and the book's gradients."""
    N = a["xs"].shape[0]
    m = module(a["xs"].shape[2], H, batch_first=True)
    m = m.double() if a["xs"].dtype == np.float64 else m.float()
    with torch.no_grad():
        m.weight_ih_l0.copy_(torch.tensor(blocks(a["Wx"], H, order, signs)))
        m.weight_hh_l0.copy_(torch.tensor(blocks(a["Wh"], H, order, signs)))
        m.bias_ih_l0.copy_(torch.tensor(blocks(a["b"][None, :], H, order, signs)[:, 0]))
        m.bias_hh_l0.zero_()
    xs = tt(a["xs"])
    zeros = np.zeros((N, H), a["xs"].dtype)
    h0, c0 = tt(a.get("h0", zeros)[None]), tt(a.get("c0", zeros)[None])
    hs, _ = m(xs, (h0, c0) if G == 4 else h0)
    hs.backward(torch.tensor(a["gout"]))
    want = {"hs": hs.detach().numpy(), "dxs": xs.grad.numpy(), "dh0": h0.grad.numpy()[0],
            "dWx": unblocks(m.weight_ih_l0.grad.numpy(), H, order, signs),
            "dWh": unblocks(m.weight_hh_l0.grad.numpy(), H, order, signs),
            "db": unblocks(m.bias_ih_l0.grad.numpy()[:, None], H, order, signs)[0]}
    if G == 4:
        want["dc0"] = c0.grad.numpy()[0]
    return want


def lstm_case(seed, N, T, D, H, dtype, state):
    a = inputs(seed, N, T, D, H, 4, dtype, state)
    return compare(run_tool("lstm", a), torch_rnn(torch.nn.LSTM, a, H, 4, LSTM_ORDER), dtype)


# nn.GRU's row blocks r, z, n are the book's blocks 1, 0 (negated: PyTorch's z is the book's 1 - z), 2.
GRU_ORDER, GRU_SIGNS = [1, 0, 2], [1, -1, 1]


def gru_diagonal_case(seed, N, T, D, H, dtype, state):
    a = inputs(seed, N, T, D, H, 3, dtype, state)
    a["Wh"][:, 2 * H:] = np.diag(np.diag(a["Wh"][:, 2 * H:]))  # diagonal Whh: r * (h Whh) = (r * h) Whh
    got, want = run_tool("gru", a), torch_rnn(torch.nn.GRU, a, H, 3, GRU_ORDER, GRU_SIGNS)
    # Off the diagonal the two forms' gradients differ though the weights are 0: compare the diagonal
    for d in (got, want):
        d["dWh_zr"], d["dWhh_diag"] = d["dWh"][:, :2 * H], np.diag(d["dWh"][:, 2 * H:]).copy()
        del d["dWh"]
    return compare(got, want, dtype)


def book_gru_torch(a, H):
    """The book's GRU in torch ops, under autograd: hs and the gradients."""
    xs, Wx, Wh, b = tt(a["xs"]), tt(a["Wx"]), tt(a["Wh"]), tt(a["b"])
    N, T, _ = a["xs"].shape
    h0 = tt(a.get("h0", np.zeros((N, H), a["xs"].dtype)))
    h, hs = h0, []
    for t in range(T):
        x = xs[:, t, :]
        z = torch.sigmoid(x @ Wx[:, :H] + h @ Wh[:, :H] + b[:H])
        r = torch.sigmoid(x @ Wx[:, H:2 * H] + h @ Wh[:, H:2 * H] + b[H:2 * H])
        h_hat = torch.tanh(x @ Wx[:, 2 * H:] + (r * h) @ Wh[:, 2 * H:] + b[2 * H:])
        h = (1 - z) * h + z * h_hat
        hs.append(h)
    hs = torch.stack(hs, 1)
    hs.backward(torch.tensor(a["gout"]))
    return {"hs": hs.detach().numpy(), "dxs": xs.grad.numpy(), "dWx": Wx.grad.numpy(), "dWh": Wh.grad.numpy(),
            "db": b.grad.numpy(), "dh0": h0.grad.numpy()}


def gru_book_case(seed, N, T, D, H, dtype, state):
    a = inputs(seed, N, T, D, H, 3, dtype, state)
    return compare(run_tool("gru", a), book_gru_torch(a, H), dtype)


def gru_full_whh_differs():
    a = inputs(9, 2, 3, 3, 4, 3, np.float64, True)
    got, want = run_tool("gru", a), torch_rnn(torch.nn.GRU, a, 4, 3, GRU_ORDER, GRU_SIGNS)
    diff = np.max(np.abs(got["hs"] - want["hs"]))
    return None if diff > 1e-3 else f"nn.GRU equals the book's GRU for a full Whh (max |diff| {diff:.3g})"


f64, f32 = np.float64, np.float32
for seed, (N, T, D, H, dt, state) in enumerate([(1, 1, 3, 2, f64, False), (3, 5, 4, 2, f64, True),
                                                 (2, 4, 3, 5, f64, False), (2, 4, 3, 5, f32, True)]):
    label = f"N={N} T={T} D={D} H={H} {np.dtype(dt).name} {'state' if state else 'zeros'}"
    check(f"TimeLSTM vs nn.LSTM, {label}", lambda: lstm_case(seed, N, T, D, H, dt, state))
    check(f"TimeGRU vs nn.GRU (diagonal Whh), {label}", lambda: gru_diagonal_case(seed, N, T, D, H, dt, state))
    check(f"TimeGRU vs the book's GRU in torch, {label}", lambda: gru_book_case(seed, N, T, D, H, dt, state))
check("nn.GRU is not the book's GRU for a full Whh", gru_full_whh_differs)
checks.finish()
