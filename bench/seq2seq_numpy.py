"""The book's seq2seq models in NumPy, as "Deep Learning from Scratch 2" writes them (ch. 7-8: Encoder,
Decoder, PeekyDecoder, AttentionEncoder/Decoder, TimeLSTM, TimeAttention, TimeSoftmaxWithLoss, Adam, clip_grads,
Trainer.fit's loop), float32 as the book's: the baseline of bench/seq2seq_compare.sh.

    seq2seq_numpy.py --data FILE [--model plain|peeky|attention] [--reverse] [--epochs E] [--wordvec W]
                     [--hidden H] [--batch B] [--seed S]

FILE is what `seq2seq --write-data FILE` writes (question '_' answer a line); the last 10% is left out as
tapegrad's example leaves it out (same rows: the file is written in the example's shuffled order). Prints
one line per epoch: "epoch E loss L (S s)", S the training seconds, as the example's line."""
import argparse
import sys
import time

import numpy as np


def softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    x = np.exp(x)
    return x / x.sum(axis=-1, keepdims=True)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


class Embedding:
    def __init__(self, W):
        self.params, self.grads, self.idx = [W], [np.zeros_like(W)], None

    def forward(self, idx):
        self.idx = idx
        return self.params[0][idx]

    def backward(self, dout):
        dW = self.grads[0]
        dW[...] = 0
        np.add.at(dW, self.idx, dout)


class TimeEmbedding:
    def __init__(self, W):
        self.params, self.grads, self.W = [W], [np.zeros_like(W)], W

    def forward(self, xs):
        N, T = xs.shape
        out = np.empty((N, T, self.W.shape[1]), dtype='f')
        self.layers = []
        for t in range(T):
            layer = Embedding(self.W)
            out[:, t, :] = layer.forward(xs[:, t])
            self.layers.append(layer)
        return out

    def backward(self, dout):
        grad = 0
        for t, layer in enumerate(self.layers):
            layer.backward(dout[:, t, :])
            grad += layer.grads[0]
        self.grads[0][...] = grad


class LSTM:
    def __init__(self, Wx, Wh, b):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]

    def forward(self, x, h_prev, c_prev):
        Wx, Wh, b = self.params
        H = h_prev.shape[1]
        A = x @ Wx + h_prev @ Wh + b
        f, g, i, o = sigmoid(A[:, :H]), np.tanh(A[:, H:2 * H]), sigmoid(A[:, 2 * H:3 * H]), sigmoid(A[:, 3 * H:])
        c_next = f * c_prev + g * i
        h_next = o * np.tanh(c_next)
        self.cache = (x, h_prev, c_prev, i, f, g, o, c_next)
        return h_next, c_next

    def backward(self, dh_next, dc_next):
        Wx, Wh, b = self.params
        x, h_prev, c_prev, i, f, g, o, c_next = self.cache
        tanh_c_next = np.tanh(c_next)
        ds = dc_next + (dh_next * o) * (1 - tanh_c_next ** 2)
        dc_prev = ds * f
        di, df, do, dg = ds * g, ds * c_prev, dh_next * tanh_c_next, ds * i
        di *= i * (1 - i)
        df *= f * (1 - f)
        do *= o * (1 - o)
        dg *= (1 - g ** 2)
        dA = np.hstack((df, dg, di, do))
        self.grads[0][...] = x.T @ dA
        self.grads[1][...] = h_prev.T @ dA
        self.grads[2][...] = dA.sum(axis=0)
        return dA @ Wx.T, dA @ Wh.T, dc_prev


class TimeLSTM:
    def __init__(self, Wx, Wh, b, stateful=False):
        self.params = [Wx, Wh, b]
        self.grads = [np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)]
        self.h, self.c, self.dh, self.stateful = None, None, None, stateful

    def forward(self, xs):
        Wx, Wh, b = self.params
        N, T, D = xs.shape
        H = Wh.shape[0]
        self.layers = []
        hs = np.empty((N, T, H), dtype='f')
        if not self.stateful or self.h is None:
            self.h = np.zeros((N, H), dtype='f')
        if not self.stateful or self.c is None:
            self.c = np.zeros((N, H), dtype='f')
        for t in range(T):
            layer = LSTM(*self.params)
            self.h, self.c = layer.forward(xs[:, t, :], self.h, self.c)
            hs[:, t, :] = self.h
            self.layers.append(layer)
        return hs

    def backward(self, dhs):
        Wx, Wh, b = self.params
        N, T, H = dhs.shape
        D = Wx.shape[0]
        dxs = np.empty((N, T, D), dtype='f')
        dh, dc = 0, 0
        grads = [0, 0, 0]
        for t in reversed(range(T)):
            layer = self.layers[t]
            dx, dh, dc = layer.backward(dhs[:, t, :] + dh, dc)
            dxs[:, t, :] = dx
            for i, grad in enumerate(layer.grads):
                grads[i] += grad
        for i, grad in enumerate(grads):
            self.grads[i][...] = grad
        self.dh = dh
        return dxs

    def set_state(self, h, c=None):
        self.h, self.c = h, c


class TimeAffine:
    def __init__(self, W, b):
        self.params, self.grads = [W, b], [np.zeros_like(W), np.zeros_like(b)]

    def forward(self, x):
        N, T, D = x.shape
        W, b = self.params
        self.x = x
        return (x.reshape(N * T, -1) @ W + b).reshape(N, T, -1)

    def backward(self, dout):
        x = self.x
        N, T, D = x.shape
        W, b = self.params
        dout = dout.reshape(N * T, -1)
        rx = x.reshape(N * T, -1)
        self.grads[0][...] = rx.T @ dout
        self.grads[1][...] = dout.sum(axis=0)
        return (dout @ W.T).reshape(*x.shape)


class TimeSoftmaxWithLoss:
    def forward(self, xs, ts):
        N, T, V = xs.shape
        mask = ts != -1
        xs, ts, mask = xs.reshape(N * T, V), ts.reshape(N * T), mask.reshape(N * T)
        ys = softmax(xs)
        ls = np.log(ys[np.arange(N * T), ts]) * mask
        self.cache = (ts, ys, mask, (N, T, V))
        return -np.sum(ls) / mask.sum()

    def backward(self, dout=1):
        ts, ys, mask, (N, T, V) = self.cache
        dx = ys
        dx[np.arange(N * T), ts] -= 1
        dx *= dout
        dx /= mask.sum()
        dx *= mask[:, np.newaxis]
        return dx.reshape((N, T, V))


class WeightSum:
    def forward(self, hs, a):
        N, T, H = hs.shape
        ar = a.reshape(N, T, 1)
        self.cache = (hs, ar)
        return np.sum(hs * ar, axis=1)

    def backward(self, dc):
        hs, ar = self.cache
        N, T, H = hs.shape
        dt = dc.reshape(N, 1, H).repeat(T, axis=1)
        return dt * ar, np.sum(dt * hs, axis=2)


class AttentionWeight:
    def forward(self, hs, h):
        N, T, H = hs.shape
        hr = h.reshape(N, 1, H)
        a = softmax(np.sum(hs * hr, axis=2))
        self.cache = (hs, hr, a)
        return a

    def backward(self, da):
        hs, hr, a = self.cache
        N, T, H = hs.shape
        ds = a * da
        ds -= a * np.sum(ds, axis=1, keepdims=True)
        dt = ds.reshape(N, T, 1).repeat(H, axis=2)
        return dt * hr, np.sum(dt * hs, axis=1)


class Attention:
    def forward(self, hs, h):
        self.w, self.s = AttentionWeight(), WeightSum()
        return self.s.forward(hs, self.w.forward(hs, h))

    def backward(self, dout):
        dhs0, da = self.s.backward(dout)
        dhs1, dh = self.w.backward(da)
        return dhs0 + dhs1, dh


class TimeAttention:
    def forward(self, hs_enc, hs_dec):
        N, T, H = hs_dec.shape
        out = np.empty_like(hs_dec)
        self.layers = []
        for t in range(T):
            layer = Attention()
            out[:, t, :] = layer.forward(hs_enc, hs_dec[:, t, :])
            self.layers.append(layer)
        return out

    def backward(self, dout):
        N, T, H = dout.shape
        dhs_enc, dhs_dec = 0, np.empty_like(dout)
        for t in range(T):
            dhs, dh = self.layers[t].backward(dout[:, t, :])
            dhs_enc += dhs
            dhs_dec[:, t, :] = dh
        return dhs_enc, dhs_dec


def rn(*shape, scale=1.0):
    return (np.random.randn(*shape) * scale).astype('f')


class Model:
    """Encoder + Decoder / PeekyDecoder / AttentionDecoder, as the book's Seq2seq, PeekySeq2seq and
    AttentionSeq2seq."""

    def __init__(self, kind, V, W, H):
        self.kind, self.H = kind, H
        D = W + H if kind == 'peeky' else W
        A = H if kind == 'plain' else 2 * H
        self.enc_embed = TimeEmbedding(rn(V, W, scale=0.01))
        self.enc_lstm = TimeLSTM(rn(W, 4 * H, scale=1 / np.sqrt(W)), rn(H, 4 * H, scale=1 / np.sqrt(H)),
                                 np.zeros(4 * H, 'f'), stateful=False)
        self.dec_embed = TimeEmbedding(rn(V, W, scale=0.01))
        self.dec_lstm = TimeLSTM(rn(D, 4 * H, scale=1 / np.sqrt(D)), rn(H, 4 * H, scale=1 / np.sqrt(H)),
                                 np.zeros(4 * H, 'f'), stateful=True)
        self.affine = TimeAffine(rn(A, V, scale=1 / np.sqrt(A)), np.zeros(V, 'f'))
        self.attention = TimeAttention()
        self.loss = TimeSoftmaxWithLoss()
        self.layers = [self.enc_embed, self.enc_lstm, self.dec_embed, self.dec_lstm, self.affine]

    def forward(self, xs, ts):
        dxs, dts = ts[:, :-1], ts[:, 1:]
        hs_enc = self.enc_lstm.forward(self.enc_embed.forward(xs))
        self.hs_enc = hs_enc
        h = hs_enc[:, -1, :]
        self.dec_lstm.set_state(h)
        out = self.dec_embed.forward(dxs)
        N, T = dxs.shape
        if self.kind == 'peeky':
            hs = np.repeat(h, T, axis=0).reshape(N, T, self.H)
            out = np.concatenate((hs, self.dec_lstm.forward(np.concatenate((hs, out), axis=2))), axis=2)
        elif self.kind == 'attention':
            dec_hs = self.dec_lstm.forward(out)
            out = np.concatenate((self.attention.forward(hs_enc, dec_hs), dec_hs), axis=2)
        else:
            out = self.dec_lstm.forward(out)
        return self.loss.forward(self.affine.forward(out), dts)

    def backward(self):
        H = self.H
        dout = self.affine.backward(self.loss.backward())
        dhs_enc = np.zeros_like(self.hs_enc)
        if self.kind == 'peeky':
            dout, dhs0 = dout[:, :, H:], dout[:, :, :H]
            dout = self.dec_lstm.backward(dout)
            dembed, dhs1 = dout[:, :, H:], dout[:, :, :H]
            self.dec_embed.backward(dembed)
            dhs_enc[:, -1, :] = self.dec_lstm.dh + np.sum(dhs0 + dhs1, axis=1)
        elif self.kind == 'attention':
            dc, ddec0 = dout[:, :, :H], dout[:, :, H:]
            dhs_enc, ddec1 = self.attention.backward(dc)
            self.dec_embed.backward(self.dec_lstm.backward(ddec0 + ddec1))
            dhs_enc[:, -1, :] += self.dec_lstm.dh
        else:
            self.dec_embed.backward(self.dec_lstm.backward(dout))
            dhs_enc[:, -1, :] = self.dec_lstm.dh
        self.enc_embed.backward(self.enc_lstm.backward(dhs_enc))

    def params_grads(self):
        ps, gs = [], []
        for layer in self.layers:
            ps += layer.params
            gs += layer.grads
        return ps, gs


class Adam:
    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr, self.beta1, self.beta2, self.iter, self.m, self.v = lr, beta1, beta2, 0, None, None

    def update(self, params, grads):
        if self.m is None:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.iter += 1
        lr_t = self.lr * np.sqrt(1.0 - self.beta2 ** self.iter) / (1.0 - self.beta1 ** self.iter)
        for i in range(len(params)):
            self.m[i] += (1 - self.beta1) * (grads[i] - self.m[i])
            self.v[i] += (1 - self.beta2) * (grads[i] ** 2 - self.v[i])
            params[i] -= lr_t * self.m[i] / (np.sqrt(self.v[i]) + 1e-7)


def clip_grads(grads, max_norm):
    total = np.sqrt(sum(np.sum(g ** 2) for g in grads))
    rate = max_norm / (total + 1e-6)
    if rate < 1:
        for g in grads:
            g *= rate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', required=True)
    ap.add_argument('--model', default='attention', choices=['plain', 'peeky', 'attention'])
    ap.add_argument('--reverse', action='store_true')
    ap.add_argument('--epochs', type=int, default=1)
    ap.add_argument('--wordvec', type=int, default=16)
    ap.add_argument('--hidden', type=int, default=256)
    ap.add_argument('--batch', type=int, default=128)
    ap.add_argument('--seed', type=int, default=1)
    a = ap.parse_args()
    np.random.seed(a.seed)
    lines = [ln.rstrip('\n') for ln in open(a.data) if ln.strip()]
    qs = [ln[:ln.index('_')] for ln in lines]
    ans = [ln[ln.index('_'):] for ln in lines]
    chars = sorted(set(''.join(qs) + ''.join(ans)))
    cid = {c: i for i, c in enumerate(chars)}
    x = np.array([[cid[c] for c in q] for q in qs])
    t = np.array([[cid[c] for c in s] for s in ans])
    n_train = len(lines) - len(lines) // 10
    x, t = x[:n_train], t[:n_train]
    if a.reverse:
        x = x[:, ::-1]
    model = Model(a.model, len(chars), a.wordvec, a.hidden)
    opt = Adam()
    iters = n_train // a.batch
    print(f"seq2seq_numpy: the book's {a.model} model{' (reversed input)' if a.reverse else ''}: {n_train} "
          f"training examples, {len(chars)} characters, wordvec {a.wordvec}, hidden {a.hidden}, batch {a.batch}")
    for epoch in range(a.epochs):
        t0, total = time.perf_counter(), 0.0
        idx = np.random.permutation(n_train)
        bx, bt = x[idx], t[idx]
        for i in range(iters):
            loss = model.forward(bx[i * a.batch:(i + 1) * a.batch], bt[i * a.batch:(i + 1) * a.batch])
            model.backward()
            ps, gs = model.params_grads()
            clip_grads(gs, 5.0)
            opt.update(ps, gs)
            total += loss
        print(f"epoch {epoch + 1} loss {total / iters:.4f} ({time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == '__main__':
    sys.exit(main())
