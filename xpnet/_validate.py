"""Argument checks for constructors and entry points: each names the argument, the value
given and what is valid, so a bad hyperparameter fails where it was written, not steps later."""
from __future__ import annotations

import math
import numbers

import numpy

from .errors import ShapeError


def integer(owner: str, name: str, value, minimum: int = 1) -> int:
    """``value`` as an int >= minimum; floats (2.7), strings and bools are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an integer >= {minimum}, got "
                        f"{type(value).__name__} {value!r}.")
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def pair(owner: str, name: str, value, minimum: int = 1) -> tuple:
    """An int or a pair of ints (height, width), each >= minimum, as a pair."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{owner}: {name} must be an integer or a pair (height, width), "
                             f"got {value!r}.")
        return tuple(integer(owner, f"{name}[{i}]", v, minimum) for i, v in enumerate(value))
    v = integer(owner, name, value, minimum)
    return (v, v)


def real(owner: str, name: str, value, low=None, high=None, low_open=False, high_open=False) -> float:
    """A finite real number within [low, high] (either end open or absent)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a number, got {type(value).__name__} {value!r}.")
    try:
        value = float(value)
    except OverflowError:  # an int past float's range
        value = math.inf
    ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "(-inf" if low is None else f"{'(' if low_open else '['}{low:g}"
        hi = "inf)" if high is None else f"{high:g}{')' if high_open else ']'}"
        raise ValueError(f"{owner}: {name} must be a finite number in {lo}, {hi}, got {value!r}.")
    return value


def nonempty_batch(owner: str, y) -> None:
    """Refuse a loss's ``y`` without values: a mean over no samples is 0 / 0 (PyTorch's NaN,
    which ``fit``'s guard would then stop on), so it is named here instead."""
    if y.size == 0:
        raise ShapeError(f"{owner}: got an empty batch (y of shape {tuple(y.shape)}); the loss is a mean "
                         f"over its values and there are none. Leave empty batches out (check len(y) before "
                         f"the call).")


class Setting:
    """A hyperparameter attribute checked by ``check(owner, name, value)`` whenever it is set,
    not only by the constructor: ``layer.slope = numpy.float64(0.2)`` is kept as the Python
    float (a NumPy number would make a float32 layer compute in float64), and
    ``dropout.p = 1.5`` is refused as ``Dropout(1.5)`` is. Kept in the instance as
    ``_setting_<name>`` (a name no subclass's own ``_momentum`` or ``_eps`` meets)."""

    def __init__(self, check):
        self.check = check

    def __set_name__(self, owner, name):
        self.name, self.key = name, "_setting_" + name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        try:
            return obj.__dict__[self.key]
        except KeyError:  # not set yet (before __init__ set it): as any missing attribute
            raise AttributeError(f"{type(obj).__name__!r} object has no attribute {self.name!r}") from None

    def __set__(self, obj, value):
        obj.__dict__[self.key] = self.check(type(obj).__name__, self.name, value)


def python_number(value):
    """A NumPy number as the Python one (which NumPy treats as weak: it takes the dtype of the
    arrays it meets, where a numpy.float64 would make float32 arithmetic float64); anything
    else as it is."""
    return value.item() if isinstance(value, numpy.generic) else value


def flag(owner: str, name: str, value) -> bool:
    """``value`` as a bool: True or False (NumPy's too); anything else is refused."""
    if not isinstance(value, (bool, numpy.bool_)):
        raise TypeError(f"{owner}: {name} must be True or False, got {type(value).__name__} {value!r}.")
    return bool(value)


def between(low=None, high=None, **bounds):
    """``real``'s check with these bounds, as a ``Setting``'s ``check``."""
    return lambda owner, name, value: real(owner, name, value, low=low, high=high, **bounds)
