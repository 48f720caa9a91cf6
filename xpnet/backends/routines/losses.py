"""The book's losses (ch. 4 and 5) and their gradients.

A mixin of ``Backend``: every method works on ``self.xp``."""
from __future__ import annotations

import math


class LossRoutines:
    def softmax_cross_entropy(self, z, t, out=None, bad=None, label_smoothing=0.0):
        """Mean cross-entropy of softmax(z) against labels t; returns (loss, softmax(z)).

        ``t`` is either class indices, shape (N,), or one-hot / soft labels, shape (N, C)
        (a row's loss is weighted by its sum: a zero row masks its sample, a multi-hot row
        counts each class). Computed as log-sum-exp of the shifted logits, so neither exp
        overflows nor log meets zero (the book's ``log(y + 1e-7)`` caps the loss instead).
        ``out`` receives softmax(z) and may be ``z`` itself. ``bad`` (optional, boolean (N,)
        on the device) marks samples whose labels are out of range: the loss and their
        softmax rows (hence their gradient) become NaN, the device's way of refusing them
        without a read on the host; their entries of ``t`` must still be valid indices.

        ``label_smoothing`` = e takes the target (1 - e) t + e s / C for a row t of sum s (PyTorch's
        definition, where s = 1): the row's loss is s lse - (1 - e) t.z - e s mean_j(z_j).
        """
        xp = self.xp
        n = z.shape[0]
        shifted = xp.subtract(z, z.max(axis=1, keepdims=True), out=out)
        if t.ndim == 1:
            picked = shifted[self.arange(n), t]
        else:  # sum_j t_j (lse - z_j) = lse * sum_j t_j - sum_j t_j z_j, for soft labels too
            picked = (shifted * t).sum(axis=1)
        if label_smoothing:  # before exp overwrites the shifted logits
            spread = shifted.sum(axis=1)
            spread *= label_smoothing / z.shape[1]
            if t.ndim != 1:
                spread *= t.sum(axis=1)
            picked *= 1.0 - label_smoothing
            picked += spread
        p = xp.exp(shifted, out=shifted)
        total = p.sum(axis=1, keepdims=True)
        lse = xp.log(total[:, 0])
        if t.ndim != 1:
            lse *= t.sum(axis=1)
        lse -= picked
        if bad is not None:
            xp.copyto(lse, math.nan, where=bad)
        loss = lse.sum() * (1.0 / n)  # .mean() costs more in NumPy
        p /= total
        if bad is not None:
            xp.copyto(p, math.nan, where=bad[:, None])
        return loss, p

    def softmax_cross_entropy_backward(self, p, t, dout=1.0, out=None, label_smoothing=0.0):
        """dL/dz = (softmax(z) * sum_j t_j - t') * dout / N for the mean loss above, t' the
        smoothed target; for class indices and one-hot rows (sum 1) without smoothing that is
        (softmax(z) - onehot(t)) * dout / N."""
        xp = self.xp
        n = p.shape[0]
        if out is None:
            out = p.copy()
        elif out is not p:
            xp.copyto(out, p)
        if t.ndim == 1:
            out[self.arange(n), t] -= 1.0 - label_smoothing
            if label_smoothing:
                out -= label_smoothing / p.shape[1]
        else:
            s = t.sum(axis=1, keepdims=True)
            out *= s
            if label_smoothing:
                out -= s * (label_smoothing / p.shape[1])
                out -= t * (1.0 - label_smoothing)
            else:
                out -= t
        out *= dout / n
        return out

    def cross_entropy_error(self, y, t):
        """The book's loss on probabilities y (not logits): -sum(t log(y + 1e-7)) / N."""
        xp = self.xp
        if y.ndim == 1:
            y = y.reshape(1, -1)
            t = t.reshape(1, -1) if t.ndim == 1 and t.size == y.size else t.reshape(-1)
        n = y.shape[0]
        if t.size == y.size:  # one-hot or soft labels: the book's sum, not the argmax's pick
            return -(t * xp.log(y + 1e-7)).sum() / n
        return -xp.log(y[self.arange(n), t] + 1e-7).sum() / n

    def mean_squared_error(self, y, t):
        d = y - t
        return (d * d).mean()

    def mean_squared_error_backward(self, dout, y, t):
        """Operator-only in dout: d/dy mean((y - t)^2) = 2 (y - t) / size."""
        return dout * ((y - t) * (2.0 / y.size))

    def sum_squared_error(self, y, t):
        """The book's 0.5 * sum((y - t)^2)."""
        d = y - t
        return 0.5 * (d * d).sum()

    def sum_squared_error_backward(self, dout, y, t):
        """Operator-only in dout."""
        return dout * (y - t)
