"""Reverse-mode autodiff over the same ``xp`` arrays, micrograd-sized.

A ``Tensor`` wraps a device array and remembers, for each input it was computed from,
a closure that maps the output's gradient to that input's (a vector-Jacobian product).
``grad`` walks the recorded graph backwards in topological order.

Every closure is written with ``Tensor`` operations, and the layer-level rules call the
backend's backward formulas, the very ones the layers use (one formula per operation).
So when ``grad`` runs inside another ``grad`` it records its own backward pass as a new
graph, and ``grad(grad(f))`` is a second derivative, the way Nx builds its backward pass
as another expression. Each inner input is a fresh node, so a closure over an outer
variable is held constant, as it should be (no perturbation confusion).
"""
from __future__ import annotations

import operator
import threading

import numpy

from ..device import common_device, current_device
from ..transfer import to_device

_state = threading.local()


def _recording() -> bool:
    return getattr(_state, "recording", True)


def _depth() -> int:
    return getattr(_state, "depth", 0)


class Tensor:
    """A traced array. Supports + - * / ** @, unary minus, abs, indexing, sum/mean/max/min,
    clip, reshape and transpose, and mixes with plain numbers and same-device arrays."""

    __slots__ = ("data", "parents")
    __array_priority__ = 1000  # CuPy arrays on the left defer to our reflected operators

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """NumPy ufuncs on traced values: the differentiable ones are recorded, the rest
        are refused by name (rather than silently dropping out of the trace)."""
        op = _UFUNCS.get(ufunc.__name__) if method == "__call__" and not kwargs else None
        if op is None:
            raise TypeError(
                f"xpnet.autodiff cannot differentiate numpy.{ufunc.__name__}"
                f"{'' if method == '__call__' else '.' + method}{' with ' + ', '.join(kwargs) if kwargs else ''}. "
                f"Use an operation it knows: {', '.join(SUPPORTED)}; or wrap a constant in stop_gradient.")
        return op(*inputs)

    def __array__(self, dtype=None, copy=None):
        raise TypeError("a traced value cannot become a plain array inside grad; use xpnet.autodiff "
                        "operations on it, or stop_gradient(x).data for its value as a constant.")

    def __init__(self, data, parents=()):
        self.data = data
        self.parents = parents  # ((input Tensor, vjp closure), ...)

    _xpnet_array = property(lambda self: self.data)
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    T = property(lambda self: transpose(self))

    def __repr__(self):
        return f"Tensor({self.data!r})"

    def __len__(self):
        return len(self.data)

    __add__ = lambda a, b: add(a, b)
    __radd__ = lambda a, b: add(b, a)
    __sub__ = lambda a, b: add(a, negative(b))
    __rsub__ = lambda a, b: add(b, negative(a))
    __mul__ = lambda a, b: multiply(a, b)
    __rmul__ = lambda a, b: multiply(b, a)
    __truediv__ = lambda a, b: divide(a, b)
    __rtruediv__ = lambda a, b: divide(b, a)
    __pow__ = lambda a, b: power(a, b)
    __rpow__ = lambda a, b: power(b, a)
    __matmul__ = lambda a, b: matmul(a, b)
    __rmatmul__ = lambda a, b: matmul(b, a)
    __neg__ = lambda a: negative(a)
    __abs__ = lambda a: _UFUNCS["absolute"](a)  # autodiff/extrema.py
    __getitem__ = lambda a, key: getitem(a, key)
    # Comparisons give plain boolean arrays: they have no gradient.
    __gt__ = lambda a, b: _data(a) > _data(b)
    __lt__ = lambda a, b: _data(a) < _data(b)
    __ge__ = lambda a, b: _data(a) >= _data(b)
    __le__ = lambda a, b: _data(a) <= _data(b)

    def __setitem__(self, key, value):
        raise TypeError("a traced value cannot be changed in place inside grad (its gradient needs "
                        "it as it was); build a new value instead, for example "
                        "xn.autodiff.where(mask, new, x) in place of x[mask] = new.")

    # NumPy's signatures, so that numpy.sum(x), numpy.transpose(x, axes) and the like work:
    # the arguments a traced value cannot honour (out=, where=, order='F') are refused by name.
    def sum(self, axis=None, dtype=None, out=None, keepdims=False, **kwargs):
        _plain_reduction("sum", out, kwargs)
        return sum(self if dtype is None else astype(self, dtype), axis, keepdims)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False, **kwargs):
        _plain_reduction("mean", out, kwargs)
        return mean(self if dtype is None else astype(self, dtype), axis, keepdims)

    def max(self, axis=None, out=None, keepdims=False, **kwargs):
        _plain_reduction("max", out, kwargs)
        return max(self, axis, keepdims)

    def min(self, axis=None, out=None, keepdims=False, **kwargs):
        _plain_reduction("min", out, kwargs)
        return min(self, axis, keepdims)

    def clip(self, min=None, max=None, out=None, **kwargs):
        _plain_reduction("clip", out, kwargs)
        return _UFUNCS["clip"](self, min, max)  # autodiff/extrema.py

    def astype(self, dtype, copy=True):
        return astype(self, dtype)

    def reshape(self, *shape, order="C", copy=None):
        if order != "C":
            raise ValueError(f"a traced value is reshaped in C order only, got order={order!r}; "
                             f"transpose it first (x.T.reshape(...)) for Fortran order.")
        return reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes):
        if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))):
            axes = axes[0]  # NumPy's transpose(axes) as well as transpose(*axes)
        return transpose(self, tuple(axes) if axes else None)


def _data(x):
    return x.data if type(x) is Tensor else x


def _plain_reduction(name, out, kwargs):
    """Refuse what NumPy's reductions take but a traced value cannot give: an ``out``
    array to write into, ``where=`` or ``initial=``."""
    refused = (["out"] if out is not None else []) + sorted(kwargs)
    if refused:
        raise TypeError(f"{name} of a traced value (inside grad) takes axis, dtype and keepdims, "
                        f"not {', '.join(refused)}: it returns a new value rather than writing into "
                        f"an array. Drop {', '.join(refused)} and use the returned value.")


def _shape(x):
    return numpy.shape(x) if not hasattr(x, "shape") else x.shape


def _node(y, *edges):
    """Result of an operation: a plain array when no input is traced, else a Tensor that
    records (input, vjp) for each traced input while recording is on."""
    traced = tuple(e for e in edges if type(e[0]) is Tensor)
    if not traced:
        return y
    return Tensor(y, traced if _recording() else ())


def _backend(*xs):
    device = common_device([_data(x) for x in xs], "autodiff")
    return (device or current_device()).backend


def _operand(x):
    """A Python or NumPy number as a 0-d float array on the current device (counted, as
    any copy to a device is); arrays and traced values pass through."""
    if isinstance(x, (int, float, numpy.generic)) and not isinstance(x, bool):
        value = numpy.asarray(x)
        return to_device(value if value.dtype.kind in "fc" else value.astype(numpy.float64), current_device())
    return x


def _sum_to(g, shape):
    """Sum a broadcast gradient back to ``shape`` (NumPy broadcasting in reverse)."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1)
    g = sum(g, axes, keepdims=True) if axes else g
    return reshape(g, shape)


# -- arithmetic ----------------------------------------------------------------------------
def add(a, b):
    return _node(_data(a) + _data(b),
                 (a, lambda g: _sum_to(g, _shape(a))), (b, lambda g: _sum_to(g, _shape(b))))


def negative(a):
    return _node(-_data(a), (a, lambda g: -g))


def multiply(a, b):
    return _node(_data(a) * _data(b),
                 (a, lambda g: _sum_to(g * b, _shape(a))), (b, lambda g: _sum_to(g * a, _shape(b))))


def divide(a, b):
    return _node(_data(a) / _data(b),
                 (a, lambda g: _sum_to(g / b, _shape(a))),
                 (b, lambda g: _sum_to(-g * a / (b * b), _shape(b))))


def power(a, b):
    """a ** b. Its derivatives are 0, as PyTorch's, where their formulas meet 0 * inf:
    d/da at b = 0 (a ** 0 is 1), d/db at a = 0 and b >= 0 (0 ** b is constant there)."""
    ad, bd = _data(a), _data(b)
    y = ad ** bd
    out = _node(y, (a, lambda g: _sum_to(_zero_where(bd == 0, g * b * a ** (b - 1)), _shape(a))),
                (b, lambda g: _sum_to(_zero_where((ad == 0) & (bd >= 0), g * out * log(a)), _shape(b))))
    return out


def _zero_where(mask, value):
    """``value`` with 0 where ``mask`` (a device bool array, or a number's Python bool) holds."""
    if mask is False or mask is numpy.False_:
        return value
    return where(mask, 0.0, value)


def matmul(a, b):
    """Matrix product of 1-D or 2-D operands (vectors are treated as a row / a column)."""
    if a.ndim > 2 or b.ndim > 2:
        raise ValueError(f"autodiff matmul takes 1-D or 2-D operands, got shapes {a.shape} and {b.shape}.")
    a2 = reshape(a, (1, -1)) if a.ndim == 1 else a
    b2 = reshape(b, (-1, 1)) if b.ndim == 1 else b
    y = _node(_data(a2) @ _data(b2), (a2, lambda g: g @ transpose(b2)), (b2, lambda g: transpose(a2) @ g))
    shape = a.shape[:-1] + b.shape[1:]
    return reshape(y, shape) if shape != y.shape else y


# -- elementwise functions ----------------------------------------------------------------
def exp(x):
    x = _operand(x)
    out = _node(_backend(x).xp.exp(_data(x)), (x, lambda g: g * out))
    return out


def log(x):
    x = _operand(x)
    return _node(_backend(x).xp.log(_data(x)), (x, lambda g: g / x))


def sqrt(x):
    x = _operand(x)
    out = _node(_backend(x).xp.sqrt(_data(x)), (x, lambda g: g / (2.0 * out)))
    return out


def tanh(x):
    x = _operand(x)
    backend = _backend(x)
    out = _node(backend.tanh(_data(x)), (x, lambda g: backend.tanh_backward(g, out)))
    return out


def where(condition, a, b):
    """a where condition else b; the condition gets no gradient."""
    cond = _data(condition)
    xp = _backend(a, b, cond).xp
    if getattr(cond, "dtype", None) is not None and cond.dtype != bool:
        cond = cond != 0  # as xp.where reads it; ~cond of integers would be -cond - 1
    return _node(xp.where(cond, _data(a), _data(b)),
                 (a, lambda g: _sum_to(g * cond, _shape(a))),
                 (b, lambda g: _sum_to(g * ~cond, _shape(b))))


def stop_gradient(x):
    """x's value, treated as a constant by ``grad``."""
    return Tensor(_data(x)) if type(x) is Tensor else x


# -- reductions and shapes ---------------------------------------------------------------
def _expand(g, shape, axis, keepdims):
    """Broadcast a reduced gradient back over the reduced axes."""
    if axis is not None and not keepdims:
        axes = (axis,) if isinstance(axis, int) else axis
        kept = list(shape)
        for ax in axes:
            kept[ax % len(shape)] = 1
        g = reshape(g, tuple(kept))
    return broadcast_to(g, shape)


def sum(x, axis=None, keepdims=False):
    return _node(_data(x).sum(axis=axis, keepdims=keepdims), (x, lambda g: _expand(g, x.shape, axis, keepdims)))


def mean(x, axis=None, keepdims=False):
    xd = _data(x)
    count = xd.size if axis is None else numpy.prod([xd.shape[a] for a in ((axis,) if isinstance(axis, int) else axis)])
    return sum(x, axis, keepdims) / float(count)


def max(x, axis=None, keepdims=False):
    """Maximum; the gradient is shared equally among tied maxima."""
    xd = _data(x)
    y = xd.max(axis=axis, keepdims=True)
    hits = (xd == y).astype(xd.dtype)
    hits /= hits.sum(axis=axis, keepdims=True)
    return _node(y if keepdims else y.reshape(xd.max(axis=axis).shape),
                 (x, lambda g: _expand(g, x.shape, axis, keepdims) * hits))


def min(x, axis=None, keepdims=False):
    """Minimum; the gradient is shared equally among tied minima."""
    return negative(max(negative(x), axis, keepdims))


def broadcast_to(x, shape):
    xd = _data(x)
    return _node(_backend(x).xp.broadcast_to(xd, shape), (x, lambda g: _sum_to(g, xd.shape)))


def reshape(x, shape):
    xd = _data(x)
    return _node(xd.reshape(shape), (x, lambda g: reshape(g, xd.shape)))


def transpose(x, axes=None):
    xd = _data(x)
    if axes is not None:
        axes = _permutation(axes, xd.shape)
    inverse = None if axes is None else tuple(int(i) for i in numpy.argsort(axes))
    return _node(xd.transpose(axes), (x, lambda g: transpose(g, inverse)))


def _permutation(axes, shape):
    """``axes`` with negative entries made positive; each of the len(shape) axes once."""
    ndim = len(shape)
    try:
        normal = tuple(operator.index(a) % ndim if -ndim <= operator.index(a) < ndim else None for a in axes)
    except (TypeError, ValueError):
        normal = None
    if normal is None or None in normal or sorted(normal) != list(range(ndim)):
        given = tuple(axes) if isinstance(axes, (list, tuple)) else axes
        hint = "give none" if ndim == 0 else f"give each of 0..{ndim - 1} (or -{ndim}..-1) once"
        raise ValueError(f"transpose: axes {given!r} are not an order of the {ndim} axes of shape "
                         f"{tuple(shape)}; {hint}.")
    return normal


def astype(x, dtype):
    """``x`` cast to floating-point ``dtype``; the gradient is cast back."""
    xd = _data(x)
    dtype = numpy.dtype(dtype)
    if type(x) is not Tensor:
        return xd.astype(dtype)
    if dtype.kind not in "fc":
        raise TypeError(f"a traced value (inside grad) can be cast to a floating-point dtype only, "
                        f"got {dtype}: a cast to {dtype} has no gradient. Cast "
                        f"stop_gradient(x).data for a constant of that dtype.")
    source = xd.dtype
    return _node(xd.astype(dtype), (x, lambda g: astype(g, source)))


def getitem(x, key):
    """Indexing: basic (ints, slices, None, Ellipsis) and advanced (integer or boolean
    arrays and lists). A repeated index gets the sum of its gradients (scatter-add)."""
    xd = _data(x)
    key = tuple(_data(k) for k in key) if type(key) is tuple else _data(key)

    def vjp(g):
        return _scatter(g, xd.shape, key, xd.dtype)
    return _node(xd[key], (x, vjp))


def _is_basic(key) -> bool:
    parts = key if type(key) is tuple else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, (int, slice)) and not isinstance(k, bool)
               for k in parts)


def _scatter(g, shape, key, dtype):
    backend = _backend(g)
    zeros = backend.xp.zeros(shape, dtype=dtype)
    if _is_basic(key):  # each element is picked at most once: a plain write will do
        zeros[key] = _data(g)
    else:
        backend.scatter_add(zeros, key, _data(g))
    return _node(zeros, (g, lambda h: getitem(h, key)))


_UFUNCS = {
    "add": add, "subtract": lambda a, b: add(a, negative(b)), "multiply": multiply, "divide": divide,
    "true_divide": divide, "power": power, "negative": negative, "matmul": matmul, "exp": exp, "log": log,
    "sqrt": sqrt, "tanh": tanh,  # absolute, maximum, minimum and clip: added by autodiff/extrema.py
    "greater": lambda a, b: _data(a) > _data(b), "less": lambda a, b: _data(a) < _data(b),
    "greater_equal": lambda a, b: _data(a) >= _data(b), "less_equal": lambda a, b: _data(a) <= _data(b),
}
SUPPORTED = ("+ - * / ** @", "abs", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "leaky_relu", "softmax",
             "softmax_cross_entropy", "mean_squared_error", "sum_squared_error", "sum", "mean", "max", "min",
             "maximum", "minimum", "clip", "reshape", "transpose", "astype", "indexing", "where", "stop_gradient")
