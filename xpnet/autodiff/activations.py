"""The activations' rules for ``xn.grad``, on the backend's own forward and backward
formulas (the ones the layers use)."""
from __future__ import annotations

from .. import _validate
from .core import _backend, _data, _node, _operand


def sigmoid(x):
    x = _operand(x)
    backend = _backend(x)
    out = _node(backend.sigmoid(_data(x)), (x, lambda g: backend.sigmoid_backward(g, out)))
    return out


def relu(x):
    x = _operand(x)
    backend = _backend(x)
    y = backend.relu(_data(x))
    return _node(y, (x, lambda g: backend.relu_backward(g, y)))


def leaky_relu(x, slope=0.01):
    """x where x > 0, slope * x elsewhere, for any finite real slope (PyTorch's definition)."""
    slope = _validate.real("leaky_relu", "slope", slope)
    x = _operand(x)
    backend = _backend(x)
    xd = _data(x)
    return _node(backend.leaky_relu(xd, slope), (x, lambda g: backend.leaky_relu_backward(g, xd, slope)))


def softmax(x, axis=-1):
    backend = _backend(x)
    out = _node(backend.softmax(_data(x), axis=axis), (x, lambda g: backend.softmax_backward(g, out, axis=axis)))
    return out
