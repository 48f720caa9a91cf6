"""The book's functions (ch. 3 to 5), on plain arrays of any device or on traced values.

Each works on a NumPy, CuPy or sim array and returns one of the same device; given an
``xpnet.autodiff.Tensor`` (inside ``xn.grad``) it is recorded and differentiable. The
formulas are the backend's, shared with the layers.
"""
from __future__ import annotations

from . import _validate
from .autodiff import (
    _backend,
    _operand,
    exp,
    leaky_relu,
    log,
    mean_squared_error,
    relu,
    sigmoid,
    softmax,
    softmax_cross_entropy,
    sqrt,
    stop_gradient,
    sum_squared_error,
    tanh,
    where,
)
from .device import device_of


def identity(x):
    return x


def step(x):
    """1 where x > 0, else 0 (the perceptron's activation; it has no useful gradient)."""
    x = _operand(x)
    return _backend(x).step(x)


def cross_entropy_error(y, t):
    """The book's cross-entropy on probabilities y (after softmax): -sum(t log(y + 1e-7)) / N.

    For logits, prefer ``softmax_cross_entropy``: it never takes the log of zero.
    """
    _validate.nonempty_batch("cross_entropy_error", y)
    return device_of(y).backend.cross_entropy_error(y, t)


__all__ = ["identity", "step", "sigmoid", "tanh", "relu", "leaky_relu", "softmax", "exp", "log",
           "sqrt", "where", "stop_gradient", "cross_entropy_error", "softmax_cross_entropy",
           "mean_squared_error", "sum_squared_error"]
