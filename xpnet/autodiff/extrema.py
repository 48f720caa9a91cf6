"""|x|, elementwise maximum and minimum, and clip for ``xn.grad``, with PyTorch's gradients;
registered with the traced ``Tensor`` (``abs(x)``, ``x.clip``, ``numpy.maximum``...) when
the package loads, so that core.py does not import them back."""
from __future__ import annotations

from .core import _UFUNCS, _backend, _data, _node, _operand, _shape, _sum_to


def absolute(x):
    """|x|; the gradient is sign(x), 0 at 0 (as PyTorch's)."""
    x = _operand(x)
    xp = _backend(x).xp
    sign = xp.sign(_data(x))  # a constant: sign's own derivative is 0 wherever it has one
    return _node(xp.abs(_data(x)), (x, lambda g: g * sign))


def _extremum(a, b, pick):
    """``pick`` (maximum or minimum) of a and b elementwise; the gradient goes to the one
    picked, half to each where they tie (as PyTorch's)."""
    xp = _backend(a, b).xp
    ad, bd = _data(a), _data(b)  # a Python number stays one, so it does not change the dtype
    y = getattr(xp, pick)(ad, bd)
    tie = (ad == bd).astype(y.dtype) * 0.5
    to_a = (ad == y).astype(y.dtype) - tie  # 1 where a is picked, 1/2 on a tie, else 0
    to_b = (bd == y).astype(y.dtype) - tie
    return _node(y, (a, lambda g: _sum_to(g * to_a, _shape(a))), (b, lambda g: _sum_to(g * to_b, _shape(b))))


def maximum(a, b):
    """Elementwise maximum (ties share the gradient equally)."""
    return _extremum(a, b, "maximum")


def minimum(a, b):
    """Elementwise minimum (ties share the gradient equally)."""
    return _extremum(a, b, "minimum")


def clip(x, low=None, high=None):
    """``x`` limited to [low, high] (None: no limit on that side); the gradient passes where
    low <= x <= high, as PyTorch's clamp, and the limits get none."""
    if low is None and high is None:
        raise ValueError("clip of a traced value needs low or high (or both); got neither.")
    xd = _data(x)
    xp = _backend(x).xp
    y, inside = xd, xp.ones(xd.shape, dtype=bool)
    if low is not None:
        inside = inside & (xd >= _data(low))
        y = xp.maximum(y, _data(low))
    if high is not None:
        inside = inside & (xd <= _data(high))
        y = xp.minimum(y, _data(high))
    return _node(y, (x, lambda g: _sum_to(g * inside, _shape(x))))


_UFUNCS.update(absolute=absolute, maximum=maximum, minimum=minimum, clip=clip)
