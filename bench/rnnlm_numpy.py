#!/usr/bin/env python3
"""The seed book's SimpleRnnlm in NumPy (Embedding -> TimeRNN -> TimeAffine -> TimeSoftmaxWithLoss, SGD,
truncated BPTT with the book's batch layout), on the text examples/rnnlm.c reads, in float32: the
comparison for rnnlm's tokens/s. Prints one JSON line with its perplexity and tokens/s.

usage: rnnlm_numpy.py [--words N] [--epochs K] [--batch B] [--embed E] [--hidden H] [--bptt T] [--lr LR]
"""
import argparse
import json
import time

import numpy as np


def read_corpus(path, max_words):
    words, ids, vocab = 0, [], {}
    for line in open(path, encoding="utf-8", errors="replace"):
        for w in line.split():
            if words == max_words:
                return np.array(ids), vocab
            ids.append(vocab.setdefault(w.lower(), len(vocab)))
            words += 1
        ids.append(vocab.setdefault("<eos>", len(vocab)))
    return np.array(ids), vocab


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="/usr/share/common-licenses/GPL-3")
    for k, v in {"words": 1000, "epochs": 20, "batch": 10, "embed": 100, "hidden": 100, "bptt": 5}.items():
        ap.add_argument("--" + k, type=int, default=v)
    ap.add_argument("--lr", type=float, default=0.1)
    a = ap.parse_args()
    corpus, vocab = read_corpus(a.corpus, a.words)
    V, D, H, B, T = len(vocab), a.embed, a.hidden, a.batch, a.bptt
    rn = np.random.randn
    f = np.float32
    embed, Wx, Wh = (rn(V, D) / 100).astype(f), (rn(D, H) / np.sqrt(D)).astype(f), (rn(H, H) / np.sqrt(H)).astype(f)
    b, Wo, bo = np.zeros(H, f), (rn(H, V) / np.sqrt(H)).astype(f), np.zeros(V, f)
    xs_all, ts_all = corpus[:-1], corpus[1:]
    n = len(xs_all)
    jump, iters = n // B, n // (B * T)
    offsets = [i * jump for i in range(B)]
    h = None
    time_idx, tokens, t0, ppl = 0, 0, None, 0.0
    for epoch in range(a.epochs):
        if epoch == 1:  # the first epoch warms up caches and allocations
            t0, tokens = time.perf_counter(), 0
        loss_sum = 0.0
        for _ in range(iters):
            bx, bt = np.empty((B, T), np.int64), np.empty((B, T), np.int64)
            for t in range(T):
                for i, o in enumerate(offsets):
                    bx[i, t], bt[i, t] = xs_all[(o + time_idx) % n], ts_all[(o + time_idx) % n]
                time_idx += 1
            # forward
            x = embed[bx]  # (B,T,D)
            hs = np.empty((B, T, H), f)
            hprev = np.zeros((B, H), f) if h is None else h
            for t in range(T):
                hprev = np.tanh(hprev @ Wh + x[:, t] @ Wx + b)
                hs[:, t] = hprev
            h = hprev
            z = hs.reshape(B * T, H) @ Wo + bo
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            tt = bt.reshape(-1)
            loss_sum += -np.log(p[np.arange(B * T), tt] + 1e-7).mean()
            # backward
            dz = p
            dz[np.arange(B * T), tt] -= 1
            dz /= B * T
            dWo, dbo, dhs = hs.reshape(B * T, H).T @ dz, dz.sum(axis=0), (dz @ Wo.T).reshape(B, T, H)
            dWx, dWh, db, dx = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b), np.empty((B, T, D), f)
            dh = np.zeros((B, H), f)
            for t in reversed(range(T)):
                dt = (dhs[:, t] + dh) * (1 - hs[:, t] ** 2)
                hp = hs[:, t - 1] if t else np.zeros((B, H), f)
                db += dt.sum(axis=0)
                dWh += hp.T @ dt
                dWx += x[:, t].T @ dt
                dh, dx[:, t] = dt @ Wh.T, dt @ Wx.T
            dembed = np.zeros_like(embed)
            np.add.at(dembed, bx.reshape(-1), dx.reshape(-1, D))
            for w, g in ((embed, dembed), (Wx, dWx), (Wh, dWh), (b, db), (Wo, dWo), (bo, dbo)):
                w -= a.lr * g
            tokens += B * T
        ppl = float(np.exp(loss_sum / iters))
    dt = time.perf_counter() - t0
    print(json.dumps({"impl": "numpy", "epochs": a.epochs, "perplexity": round(ppl, 3),
                      "tokens_per_s": round(tokens / dt)}))


if __name__ == "__main__":
    main()
