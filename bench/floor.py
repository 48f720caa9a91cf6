"""The floor for issue 7: a hand-tuned NumPy training step of the TF2 article's MLP.

Plain NumPy, no xpnet. Every array is preallocated, every call writes with ``out=``,
ReLU's backward multiplies by a mask, softmax cross-entropy is fused, the learning rate
is folded into the output gradient (valid for plain SGD only), and the input gradient
nobody reads is never computed.
"""
import numpy as np


def softmax_cross_entropy(z, t, rows, scale):
    """Fused softmax cross-entropy: returns the mean loss and overwrites the logits z with
    dz = (softmax(z) - onehot(t)) * scale."""
    z -= z.max(axis=1, keepdims=True)
    picked = z[rows, t]
    np.exp(z, out=z)
    s = z.sum(axis=1, keepdims=True)
    loss = (np.log(s[:, 0]) - picked).mean()
    z /= s
    z[rows, t] -= 1
    z *= scale
    return loss


class FloorMLP:
    def __init__(self, sizes, batch, seed=0, dtype=np.float32):
        rng = np.random.default_rng(seed)
        self.W = [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(dtype) for a, b in zip(sizes, sizes[1:])]
        self.b = [np.zeros(b, dtype=dtype) for b in sizes[1:]]
        self.h = [np.empty((batch, b), dtype=dtype) for b in sizes[1:]]
        self.d = [np.empty((batch, b), dtype=dtype) for b in sizes[1:]]
        self.dW = [np.empty_like(w) for w in self.W]
        self.db = [np.empty_like(b) for b in self.b]
        self.mask = [np.empty((batch, b), dtype=bool) for b in sizes[1:]]
        self.rows = np.arange(batch)

    def step(self, x, t, lr):
        n = len(self.W)
        a = x
        for i in range(n):  # forward
            np.dot(a, self.W[i], out=self.h[i])
            self.h[i] += self.b[i]
            if i < n - 1:
                np.maximum(self.h[i], 0, out=self.h[i])
            a = self.h[i]
        d = z = self.h[-1]
        loss = softmax_cross_entropy(z, t, self.rows, lr / len(t))
        for i in range(n - 1, -1, -1):  # backward and update together
            prev = x if i == 0 else self.h[i - 1]
            np.dot(prev.T, d, out=self.dW[i])
            d.sum(axis=0, out=self.db[i])
            if i > 0:
                np.dot(d, self.W[i].T, out=self.d[i - 1])
                np.greater(prev, 0, out=self.mask[i - 1])
                self.d[i - 1] *= self.mask[i - 1]
                d = self.d[i - 1]
            self.W[i] -= self.dW[i]
            self.b[i] -= self.db[i]
        return loss
