"""The floor for issue 15: a hand-tuned plain-NumPy training step of the book's SimpleConvNet
(conv 30x5x5 - ReLU - max pool 2x2 - affine 100 - ReLU - affine 10) with Adam.

No xpnet. Every array is preallocated and written with ``out=``. The convolution is im2col
with the batch folded into the columns, laid out place by place in the 2x2 pooling window,
so the conv is four products, one per place, each followed by a running maximum that notes
the place of each window's first maximum; the full-size conv output is never stored. Bias
and ReLU come after the pooling (both commute with max), on a 4x smaller array. The
backward routes each gradient, after ReLU's mask, to its window's first maximum, and the
weight gradient is four products; the input gradient of the conv is never computed. Adam
is the book's (bias correction folded into the rate, eps 1e-7).
"""
import numpy as np
from floor import softmax_cross_entropy
from numpy.lib.stride_tricks import as_strided


class FloorConvNet:
    def __init__(self, batch, seed=0, lr=1e-3, dtype=np.float32):
        rng = np.random.default_rng(seed)
        he = lambda shape, fan_in: (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)
        self.params = [he((30, 25), 25), np.zeros(30, dtype), he((4320, 100), 4320), np.zeros(100, dtype),
                       he((100, 10), 100), np.zeros(10, dtype)]
        self.grads = [np.empty_like(p) for p in self.params]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.scratch = np.empty(4320 * 100, dtype)
        n = batch
        self.col = np.empty((25, n * 576), dtype)
        self.place = np.empty((30, n * 144), dtype)
        self.pooled = np.empty((30, n * 144), dtype)
        self.first = np.empty((30, n * 144), np.uint8)
        self.marks = np.empty((30, n * 144), np.uint8)
        self.dk = np.empty((30, n * 144), dtype)
        self.d = np.empty((30, n * 144), dtype)
        self.p = np.empty((n, 30, 12, 12), dtype)
        self.positive = np.empty((n, 30, 12, 12), bool)
        self.h2 = np.empty((n, 100), dtype)
        self.z = np.empty((n, 10), dtype)
        self.dh2 = np.empty((n, 100), dtype)
        self.da = np.empty((n, 4320), dtype)
        self.hit = np.empty((30, n * 144), bool)
        self.mask = np.empty((n, 100), bool)
        self.rows = np.arange(n)
        self.lr, self.t = lr, 0

    def step(self, x, t):
        W1, b1, W2, b2, W3, b3 = self.params
        dW1, db1, dW2, db2, dW3, db3 = self.grads
        n = len(x)
        col = self.col.reshape(2, 2, 5, 5, n, 12, 12)  # (a, b, i, j, image, row, column)
        sn, _, sy, sx = x.strides
        for i in range(5):  # im2col, C=1: [a, b, i, j, n, r, c] = x[n, 0, 2r + a + i, 2c + b + j]
            col[:, :, i] = as_strided(x[:, 0, i:], (2, 2, 5, n, 12, 12), (sy, sx, sx, sn, 2 * sy, 2 * sx))
        blocks = self.col.reshape(4, 25, n * 144)  # place k's columns: a contiguous matrix
        pooled, place, first, marks, hit = self.pooled, self.place, self.first, self.marks, self.hit
        np.dot(W1, blocks[0], out=pooled)
        first[...] = 0
        for k in range(1, 4):
            np.dot(W1, blocks[k], out=place)
            np.greater(place, pooled, out=hit)
            np.maximum(pooled, place, out=pooled)
            np.multiply(hit, k, out=marks, dtype=np.uint8)
            np.maximum(first, marks, out=first)
        p = self.p
        np.add(pooled.reshape(30, n, 12, 12).transpose(1, 0, 2, 3), b1.reshape(1, 30, 1, 1), out=p)
        np.maximum(p, 0, out=p)
        a = p.reshape(n, 4320)
        np.dot(a, W2, out=self.h2)
        self.h2 += b2
        np.maximum(self.h2, 0, out=self.h2)
        z = self.z
        np.dot(self.h2, W3, out=z)
        z += b3
        loss = softmax_cross_entropy(z, t, self.rows, 1.0 / n)
        np.dot(self.h2.T, z, out=dW3)
        z.sum(axis=0, out=db3)
        np.dot(z, W3.T, out=self.dh2)
        np.greater(self.h2, 0, out=self.mask)
        self.dh2 *= self.mask
        np.dot(a.T, self.dh2, out=dW2)
        self.dh2.sum(axis=0, out=db2)
        np.dot(self.dh2, W2.T, out=self.da)
        da = self.da.reshape(n, 30, 12, 12)
        d = self.d
        np.multiply(da, np.greater(p, 0, out=self.positive), out=d.reshape(30, n, 12, 12).transpose(1, 0, 2, 3))
        d.sum(axis=1, out=db1)
        dk = self.dk
        for k in range(4):
            np.equal(first, k, out=hit)
            np.multiply(d, hit, out=dk)
            if k == 0:
                np.dot(dk, blocks[0].T, out=dW1)
            else:
                dW1 += np.dot(dk, blocks[k].T)
        self.t += 1
        lr_t = self.lr * np.sqrt(1 - 0.999 ** self.t) / (1 - 0.9 ** self.t)
        for param, g, m, v in zip(self.params, self.grads, self.m, self.v):
            s = self.scratch[:param.size].reshape(param.shape)
            np.subtract(g, m, out=s)
            s *= 0.1
            m += s
            np.multiply(g, g, out=s)
            s -= v
            s *= 0.001
            v += s
            np.sqrt(v, out=s)
            s += 1e-7
            np.divide(m, s, out=s)
            s *= lr_t
            param -= s
        return loss
