"""The floor for issue 15: a hand-tuned plain-NumPy training step of the book's SimpleConvNet
(conv 30x5x5 - ReLU - max pool 2x2 - affine 100 - ReLU - affine 10) with Adam.

No xpnet. Every array is preallocated and written with ``out=``; the convolution is im2col
with the batch folded into one product; pooling is a running maximum of the four strided
slices; the pooling backward routes each gradient to its window's first maximum and, since
ReLU comes just before the pooling, skips windows whose maximum is 0 (ReLU's gradient there
is 0), which makes ReLU's own backward pass unnecessary; the input gradient of the conv is
never computed. Adam is the book's (bias correction folded into the rate, eps 1e-7).
"""
import numpy as np
from floor import softmax_cross_entropy


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
        self.prod = np.empty((30, n * 576), dtype)
        self.h1 = np.empty((n, 30, 24, 24), dtype)
        self.p = np.empty((n, 30, 12, 12), dtype)
        self.h2 = np.empty((n, 100), dtype)
        self.z = np.empty((n, 10), dtype)
        self.dh2 = np.empty((n, 100), dtype)
        self.da = np.empty((n, 4320), dtype)
        self.dh1 = np.empty((n, 30, 24, 24), dtype)
        self.hit = np.empty((n, 30, 12, 12), bool)
        self.free = np.empty((n, 30, 12, 12), bool)
        self.mask = np.empty((n, 100), bool)
        self.rows = np.arange(n)
        self.lr, self.t = lr, 0

    def step(self, x, t):
        W1, b1, W2, b2, W3, b3 = self.params
        dW1, db1, dW2, db2, dW3, db3 = self.grads
        n = len(x)
        col = self.col.reshape(25, n, 24, 24)
        for i in range(5):  # im2col: C=1, so row i*5+j is the image shifted by (i, j)
            for j in range(5):
                col[i * 5 + j] = x[:, 0, i:i + 24, j:j + 24]
        np.dot(W1, self.col, out=self.prod)
        h1 = self.h1
        np.add(self.prod.reshape(30, n, 24, 24).transpose(1, 0, 2, 3), b1.reshape(1, 30, 1, 1), out=h1)
        np.maximum(h1, 0, out=h1)
        p = self.p
        slices = [h1[:, :, i::2, j::2] for i in (0, 1) for j in (0, 1)]
        np.maximum(slices[0], slices[1], out=p)
        np.maximum(p, slices[2], out=p)
        np.maximum(p, slices[3], out=p)
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
        hit, free = self.hit, self.free
        np.greater(p, 0, out=free)  # a window whose max is 0 passes no gradient through ReLU
        for k, s in enumerate(slices):
            np.equal(s, p, out=hit)
            hit &= free
            np.multiply(da, hit, out=self.dh1[:, :, k // 2::2, k % 2::2])
            if k < 3:
                np.greater(free, hit, out=free)
        d2 = self.prod.reshape(30, n, 24, 24)
        d2[...] = self.dh1.transpose(1, 0, 2, 3)
        np.dot(self.prod, self.col.T, out=dW1)
        self.prod.sum(axis=1, out=db1)
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
