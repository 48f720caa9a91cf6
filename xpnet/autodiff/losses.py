"""The losses' rules for ``xn.grad``: softmax cross-entropy (its second derivative traced
too) and the squared errors, on the backend's own formulas."""
from __future__ import annotations

import numpy

from .. import _validate
from .._targets import softmax_targets
from ..device import device_of
from ..transfer import to_device
from .activations import softmax
from .core import _backend, _data, _node, _recording


# -- losses ----------------------------------------------------------------------------------
def softmax_cross_entropy(z, t, label_smoothing=0.0):
    """Mean cross-entropy of softmax(z) against labels t; t gets no gradient.

    ``z`` is logits (N, C); ``t`` is integer class indices (N,) or one-hot / soft labels
    (N, C) in [0, 1] (a row's loss is weighted by its sum), checked as
    ``xn.nn.SoftmaxCrossEntropy`` checks them. A list of labels is taken as a host array
    (checked there, then copied to z's device). ``label_smoothing`` = e in [0, 1] takes the
    target (1 - e) t + e / C, as PyTorch's ``cross_entropy(label_smoothing=e)``."""
    ls = _validate.real("softmax_cross_entropy", "label_smoothing", label_smoothing, low=0, high=1)
    zd = _data(z)
    if isinstance(t, (list, tuple)) and hasattr(zd, "shape"):  # checked on the host, then copied
        t, bad = softmax_targets("softmax_cross_entropy", zd, numpy.asarray(t))
        t = to_device(t, device_of(zd))
        backend = _backend(z, t)
    else:
        t = _data(t)
        if not (hasattr(zd, "shape") and hasattr(t, "shape")):
            raise TypeError(f"softmax_cross_entropy takes arrays z (logits, (N, C)) and t (labels), "
                            f"got {type(zd).__name__} and {type(t).__name__}.")
        backend = _backend(z, t)  # arrays of two devices: ImplicitTransferError before label checks
        t, bad = softmax_targets("softmax_cross_entropy", zd, t)
    loss, p = backend.softmax_cross_entropy(_data(z), t, bad=bad, label_smoothing=ls)

    def vjp(g):
        if _recording():  # differentiable again: (softmax(z) * sum_j t_j - t') / N, from recorded ops
            c = z.shape[1]
            if t.ndim == 2:
                s = t.sum(axis=1, keepdims=True)
                target = t * (1.0 - ls) + s * (ls / c) if ls else t
                return (softmax(z, axis=1) * s - target) * (g / z.shape[0])
            onehot = backend.xp.eye(c, dtype=z.dtype)[t]
            if ls:
                onehot = onehot * (1.0 - ls) + ls / c
            return (softmax(z, axis=1) - onehot) * (g / z.shape[0])
        return g * backend.softmax_cross_entropy_backward(p, t, label_smoothing=ls)
    return _node(loss, (z, vjp))


def mean_squared_error(y, t):
    """mean((y - t)^2) over every element."""
    backend = _backend(y, t)
    _validate.nonempty_batch("mean_squared_error", _data(y))
    return _node(backend.mean_squared_error(_data(y), _data(t)),
                 (y, lambda g: backend.mean_squared_error_backward(g, y, t)),
                 (t, lambda g: -backend.mean_squared_error_backward(g, y, t)))


def sum_squared_error(y, t):
    """The book's 0.5 * sum((y - t)^2)."""
    backend = _backend(y, t)
    return _node(backend.sum_squared_error(_data(y), _data(t)),
                 (y, lambda g: backend.sum_squared_error_backward(g, y, t)),
                 (t, lambda g: -backend.sum_squared_error_backward(g, y, t)))
