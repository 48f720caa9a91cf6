"""The book's activations (ch. 3 and 5) and their backward formulas.

A mixin of ``Backend``: every method works on ``self.xp``."""
from __future__ import annotations

import numpy


class ActivationRoutines:
    def step(self, x):
        return (x > 0).astype(x.dtype)

    def sigmoid(self, x, out=None):
        # 1/(1+e) for x >= 0 and e/(1+e) for x < 0, with e = exp(-|x|) in (0, 1]: exp never
        # overflows, and a small sigmoid(x) keeps its relative precision (the tanh form
        # 0.5*(1+tanh(x/2)) rounds float32 sigmoid(-20) = 2.06e-9 to 0, so log(sigmoid) = -inf).
        xp = self.xp
        if x.dtype.kind not in "fc":  # integers and booleans: float64, as x * 0.5 gave before
            x = x.astype(numpy.float64)
        e = xp.empty_like(x)  # with out=, NumPy keeps a 0-d input an array (not a scalar)
        xp.abs(x, out=e)
        xp.negative(e, out=e)
        xp.exp(e, out=e)
        # 1 where x >= 0 (as e <= 1), else e: ten times faster than where() in NumPy. x >= 0 is
        # read before ``out`` (which may be x itself) is written.
        numerator = xp.maximum(e, x >= 0, out=xp.empty_like(e) if out is None else out)
        e += 1
        return xp.divide(numerator, e, out=numerator)

    def sigmoid_backward(self, dout, y):
        """Operator-only: dL/dx = dout * y * (1 - y), y = sigmoid(x)."""
        return dout * (1.0 - y) * y

    def tanh(self, x, out=None):
        return self.xp.tanh(x, out=out)

    def tanh_backward(self, dout, y):
        """Operator-only: dL/dx = dout * (1 - y^2), y = tanh(x)."""
        return dout * (1.0 - y * y)

    def relu(self, x, out=None):
        return self.xp.maximum(x, 0, out=out)

    def relu_backward(self, dout, y, out=None, mask=None):
        """Operator-only without ``out``: dout where the forward output y was positive.

        Multiplying by the mask is much faster than ``dout[~mask] = 0`` in NumPy.
        ``mask`` is an optional boolean buffer to build the mask in.
        """
        mask = self.xp.greater(y, 0, out=mask)
        if out is None:
            return dout * mask
        return self.xp.multiply(dout, mask, out=out)

    def leaky_relu(self, x, slope, out=None):
        """x where x > 0, slope * x elsewhere (PyTorch's definition, for any real slope).

        For slope <= 1 that is max(x, slope*x), for slope >= 1 min(x, slope*x): one
        elementwise op after the product, and exact either way.
        """
        xp = self.xp
        scaled = xp.multiply(x, slope)
        return (xp.maximum if slope <= 1 else xp.minimum)(x, scaled, out=out)

    def leaky_relu_backward(self, dout, x, slope):
        """Operator-only in dout: dout * (1 where x > 0 else slope)."""
        scale = self.xp.where(x > 0, 1.0, slope).astype(x.dtype)
        return dout * scale

    def softmax(self, x, axis=-1, out=None):
        # Subtracting the row maximum keeps exp from overflowing; the result is unchanged.
        xp = self.xp
        out = xp.subtract(x, x.max(axis=axis, keepdims=True), out=out)
        xp.exp(out, out=out)
        out /= out.sum(axis=axis, keepdims=True)
        return out

    def softmax_backward(self, dout, y, axis=-1):
        """Operator-only: J^T dout for y = softmax(x) is y * (dout - sum(dout * y))."""
        return y * (dout - (dout * y).sum(axis=axis, keepdims=True))
