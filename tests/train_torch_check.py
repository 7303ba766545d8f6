#!/usr/bin/env python3
"""tapegrad's optimizers and gradient clipping against PyTorch's, step by step, in f64.

    python3 train_torch_check.py PATH/TO/train_tool

For each setting, runs train_tool (which prints the problem, then the parameters after every step) and
replays the same steps with torch.optim and torch.nn.utils.clip_grad_norm_: a parameter whose loss
term has not started has grad None (skipped), and zero_grad(set_to_none=False) keeps a zeroed gradient
after its term ends, as tapegrad does. Each value must agree to 1e-12, relative to 1 + |value|. The last
line is "train_torch: P passed, F failed"; the exit status is non-zero on any failure.
"""
import subprocess
import sys

import torch

from checks import Checks

JOIN = {"W": 0, "b": 3, "u": 2}
LEAVE = {"W": 1000, "b": 1000, "u": 5}
STEPS = 12
TOL = 1e-12

# kind, lr, momentum, nesterov, weight_decay, beta1, beta2, eps, max_norm (0: no clipping)
SETTINGS = [
    ("sgd", 0.1, 0.0, 0, 0.0, 0.9, 0.999, 1e-8, 0),
    ("sgd", 0.05, 0.9, 0, 0.0, 0.9, 0.999, 1e-8, 0),
    ("sgd", 0.05, 0.7, 1, 0.2, 0.9, 0.999, 1e-8, 0),
    ("sgd", 0.1, 0.5, 0, 0.3, 0.9, 0.999, 1e-8, 1.0),
    ("adam", 0.1, 0.0, 0, 0.0, 0.9, 0.999, 1e-8, 0),
    ("adam", 0.05, 0.0, 0, 0.3, 0.8, 0.99, 1e-6, 0),
    ("adam", 0.1, 0.0, 0, 0.0, 0.9, 0.999, 1e-8, 0.5),
    ("adamw", 0.1, 0.0, 0, 0.3, 0.9, 0.999, 1e-8, 0),
    ("adamw", 0.05, 0.0, 0, 1e-2, 0.5, 0.6, 1e-3, 2.0),
]


def run(tool, s):
    kind, lr, mom, nest, wd, b1, b2, eps, max_norm = s
    args = [tool, kind, repr(lr), repr(mom), str(nest), repr(wd), repr(b1), repr(b2), repr(eps), repr(max_norm),
            str(STEPS)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    vals = {}
    for line in out.splitlines():
        f = line.split()
        if f[0] == "norm":
            vals[("norm", int(f[1]))] = float(f[2])
        elif f[0] == "p":
            vals[("p", int(f[1]), f[2])] = [float(x) for x in f[3:]]
        else:
            vals[(f[0], f[1])] = [float(x) for x in f[2:]]
    return vals


def replay(vals, s):
    kind, lr, mom, nest, wd, b1, b2, eps, max_norm = s
    shapes = {"W": (2, 3), "b": (3,), "u": (2,)}
    names = list(shapes)
    t = lambda v, n: torch.tensor(v, dtype=torch.float64).reshape(shapes[n])
    ps = {n: t(vals[("p", 0, n)], n).requires_grad_() for n in names}
    a = {n: t(vals[("a", n)], n) for n in names}
    c = {n: t(vals[("c", n)], n) for n in names}
    plist = [ps[n] for n in names]
    if kind == "sgd":
        opt = torch.optim.SGD(plist, lr=lr, momentum=mom, nesterov=bool(nest), weight_decay=wd)
    else:
        cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
        opt = cls(plist, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    worst = 0.0
    for step in range(STEPS):
        opt.zero_grad(set_to_none=False)
        loss = sum((a[n] * (ps[n] - c[n]) * (ps[n] - c[n])).sum() for n in names if JOIN[n] <= step < LEAVE[n])
        loss.backward()
        if max_norm:
            norm = float(torch.nn.utils.clip_grad_norm_(plist, max_norm))
            worst = max(worst, abs(norm - vals[("norm", step)]) / (1 + abs(norm)))
        opt.step()
        for n in names:
            want = ps[n].detach().reshape(-1).tolist()
            got = vals[("p", step + 1, n)]
            for g, w in zip(got, want):
                err = abs(g - w) / (1 + abs(w))
                if err > worst:
                    worst = err
                if err > TOL:
                    return f"step {step}, {n}: tapegrad {g!r}, torch {w!r} (relative error {err:.3g})"
    print(f"     worst relative error {worst:.3g}")
    return None


def main():
    tool = sys.argv[1]
    checks = Checks("train_torch")
    print(f"torch {torch.__version__}")
    for s in SETTINGS:
        checks.result(" ".join(str(x) for x in s), replay(run(tool, s), s))
    checks.finish()


if __name__ == "__main__":
    main()
