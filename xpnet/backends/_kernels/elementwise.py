"""Activations and their backward chains (routines/activations.py), on flat C-contiguous
arrays of one dtype: one pass where NumPy makes two or three (a bool mask, a product, a
temporary for ``1 - y``)."""
from __future__ import annotations

import numba

from ._flags import JIT
from .pool import _maximum


@numba.njit(**JIT)
def relu(x, zero, out):
    """np.maximum(x, 0): x where x > 0 or x is NaN, else +0.0 (NumPy returns the second
    operand of a tie, so relu(-0.0) is +0.0)."""
    for i in range(x.size):
        out[i] = _maximum(x[i], zero)


@numba.njit(**JIT)
def relu_backward(dout, y, zero, one, out):
    """dout * (y > 0), the mask cast to 1 or 0: d * 0 keeps the sign of d, and inf or NaN
    times 0 is NaN, as in NumPy."""
    for i in range(y.size):
        out[i] = dout[i] * (one if y[i] > 0 else zero)


@numba.njit(**JIT)
def sigmoid_backward(dout, y, one, out):
    """dout * (1 - y) * y, left to right."""
    for i in range(y.size):
        t = dout[i] * (one - y[i])
        out[i] = t * y[i]


@numba.njit(**JIT)
def tanh_backward(dout, y, one, out):
    """dout * (1 - y * y)."""
    for i in range(y.size):
        out[i] = dout[i] * (one - y[i] * y[i])


@numba.njit(**JIT)
def leaky_relu_backward(dout, x, one, slope, out):
    """dout * where(x > 0, 1, slope), slope already in the arrays' dtype."""
    for i in range(x.size):
        out[i] = dout[i] * (one if x[i] > 0 else slope)
