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

from . import _validate
from ._targets import softmax_targets
from .device import common_device, current_device, device_of, use_device
from .errors import ImplicitTransferError
from .transfer import to_device
from .tree import map_tree, tree_leaves

_state = threading.local()


def _recording() -> bool:
    return getattr(_state, "recording", True)


def _depth() -> int:
    return getattr(_state, "depth", 0)


class Tensor:
    """A traced array. Supports + - * / ** @, unary minus, indexing, sum/mean/max,
    reshape and transpose, and mixes with plain numbers and same-device arrays."""

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
    y = _data(a) ** _data(b)
    out = _node(y, (a, lambda g: _sum_to(g * b * a ** (b - 1), _shape(a))),
                (b, lambda g: _sum_to(g * out * log(a), _shape(b))))
    return out


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
    return _node(backend.mean_squared_error(_data(y), _data(t)),
                 (y, lambda g: backend.mean_squared_error_backward(g, y, t)),
                 (t, lambda g: -backend.mean_squared_error_backward(g, y, t)))


def sum_squared_error(y, t):
    """The book's 0.5 * sum((y - t)^2)."""
    backend = _backend(y, t)
    return _node(backend.sum_squared_error(_data(y), _data(t)),
                 (y, lambda g: backend.sum_squared_error_backward(g, y, t)),
                 (t, lambda g: -backend.sum_squared_error_backward(g, y, t)))


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
    "sqrt": sqrt, "tanh": tanh,
    "greater": lambda a, b: _data(a) > _data(b), "less": lambda a, b: _data(a) < _data(b),
    "greater_equal": lambda a, b: _data(a) >= _data(b), "less_equal": lambda a, b: _data(a) <= _data(b),
}
SUPPORTED = ("+ - * / ** @", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "leaky_relu", "softmax",
             "softmax_cross_entropy", "mean_squared_error", "sum_squared_error", "sum", "mean", "max",
             "reshape", "transpose", "astype", "indexing", "where", "stop_gradient")


# -- grad ------------------------------------------------------------------------------------
def _input(x, device, position):
    """A fresh traced leaf for an argument: numbers and host arrays are copied to ``device``,
    device arrays are copied on it. The leaf never shares memory with the caller's array, so
    changing that array in place inside ``f`` cannot change the gradient."""
    if type(x) is Tensor:
        return _node(x.data, (x, lambda g: g))  # a new node: the outer variable stays apart
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return Tensor(to_device(numpy.asarray(float(x)), device))  # a fresh array already
    dtype = getattr(x, "dtype", None)
    if dtype is not None and hasattr(x, "shape") and numpy.dtype(dtype).kind not in "fc":
        where = "the host" if isinstance(x, (numpy.ndarray, numpy.generic)) else _location(x)
        raise TypeError(
            f"grad differentiates with respect to floating-point values, but argument {position} "
            f"holds {numpy.dtype(dtype)} (shape {tuple(x.shape)}, on {where}). Cast it first "
            f"(x.astype('float64') or 'float32'); if it is data rather than a variable (labels, "
            f"indices), keep it out of argnums.")
    if isinstance(x, (numpy.ndarray, numpy.generic)):
        host = numpy.asarray(x)
        moved = to_device(host, device)
        return Tensor(moved.copy() if moved is x else moved)  # to_device copied it, or not
    try:
        device_of(x)
    except TypeError:
        raise TypeError(f"grad: cannot differentiate with respect to {type(x).__name__} (argument "
                        f"{position}); pass numbers or arrays (or dicts/lists/tuples of them).") from None
    return Tensor(x.copy())


def _location(x):
    try:
        return str(device_of(x))
    except TypeError:
        return type(x).__name__


def _backward(out, leaves, create_graph, seed=None):
    order, seen, stack = [], set(), [(out, False)]
    stop = {id(leaf) for leaf in leaves}
    while stack:  # iterative post-order DFS: deep graphs must not hit Python's recursion limit
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        if id(node) not in stop:
            stack.extend((p, False) for p, _ in node.parents)
    xp = device_of(out.data).xp
    grads = {id(out): Tensor(xp.ones_like(out.data) if seed is None else seed)}
    previous = _recording()
    _state.recording = create_graph
    try:
        for node in reversed(order):
            g = grads.get(id(node))
            if g is None or id(node) in stop:
                continue
            for parent, vjp in node.parents:
                contribution = vjp(g)
                if type(contribution) is not Tensor:
                    contribution = Tensor(contribution)
                old = grads.get(id(parent))
                grads[id(parent)] = contribution if old is None else old + contribution
    finally:
        _state.recording = previous
    return [grads[id(leaf)] if id(leaf) in grads else Tensor(xp.zeros_like(leaf.data))
            for leaf in leaves]


def _argnums(argnums):
    """``argnums`` as a tuple of ints, checked when ``grad`` is made."""
    nums = (argnums,) if isinstance(argnums, int) else argnums
    if (not isinstance(nums, (tuple, list)) or not nums
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in nums)):
        raise TypeError(f"grad: argnums must be an int or a non-empty tuple of ints (positions of "
                        f"f's positional arguments), got {argnums!r}.")
    return tuple(nums)


def value_and_grad(f, argnums=0, has_aux=False):
    """``f(*args, **kwargs)`` and its gradient with respect to the positional arguments at
    ``argnums``.

    ``f`` must return a scalar; with ``has_aux=True`` it returns a pair ``(value, aux)``
    and the result is ``((value, aux), grads)`` (JAX's meaning): ``aux`` (any tree) comes
    back as computed, not differentiated. An argument may be a number, a floating-point
    array, or a dict, list or tuple of them; its gradient has the same structure. With a
    tuple ``argnums`` the gradients come back as a tuple. Keyword arguments are passed to
    ``f`` and not differentiated. Results live on the arguments' device.

    Each differentiated argument is copied first, so ``f`` may change the caller's arrays
    in place. The gradient is computed after ``f`` returns, from the arrays each
    operation was given: an array ``f`` closes over (or takes by keyword) must not be
    changed in place before ``f`` returns, once it has been used.
    """
    nums = _argnums(argnums)

    def wrapped(*args, **kwargs):
        positions = _positions(nums, argnums, len(args))
        nested = _depth() > 0
        host_types = (int, float, numpy.ndarray, numpy.generic, Tensor)
        on_device = [a for a in tree_leaves([list(args), list(kwargs.values())])
                     if not isinstance(a, host_types)]
        device = common_device(on_device, "grad") or current_device()
        with use_device(device):  # f, and its backward, run on the arguments' device
            return _value_and_grad(f, argnums, positions, has_aux, nested, device, args, kwargs)
    return wrapped


def _positions(nums, argnums, count):
    """The positional indices ``nums`` names, for a call with ``count`` arguments."""
    if any(not -count <= i < count for i in nums):
        raise IndexError(f"grad: argnums={argnums!r}, but f was called with {count} positional "
                         f"argument{'s' if count != 1 else ''}"
                         f"{f' (positions 0 to {count - 1})' if count else ''}; argnums names the "
                         f"positions of the arguments to differentiate (keyword arguments are "
                         f"not differentiated).")
    positions = tuple(i % count for i in nums)
    if len(set(positions)) != len(positions):
        raise ValueError(f"grad: argnums={argnums!r} names one argument twice.")
    return positions


def _numbers_note(args, positions, device):
    """What to add to a device-mixing error when grad put number arguments on ``device``."""
    numbers = [f"argument {i} ({args[i]!r})" for i in positions
               if isinstance(args[i], (int, float, numpy.generic)) and not isinstance(args[i], bool)]
    if not numbers:
        return ""
    many = len(numbers) > 1
    return (f" Note: grad made the number{'s' if many else ''} you passed as {', '.join(numbers)} "
            f"into {'0-d arrays' if many else 'a 0-d array'} on {device}, the current device, since "
            f"no argument is an array on a device: an array of shape () in the message above is "
            f"{'one of them' if many else 'that number'}. Call grad inside `with xn.use_device(...)` "
            f"naming the device of the arrays f uses, or pass the number as an array on that "
            f"device (xn.to_device(numpy.float64(x), device)).")


def _value_and_grad(f, argnums, positions, has_aux, nested, device, args, kwargs):
    inputs = list(args)
    for i in positions:
        inputs[i] = map_tree(lambda a, i=i: _input(a, device, i), args[i])
    _state.depth = _depth() + 1
    try:
        out = f(*inputs, **kwargs)
    except ImplicitTransferError as exc:
        note = _numbers_note(args, positions, device)
        if not note:
            raise
        raise type(exc)(f"{exc}{note}").with_traceback(exc.__traceback__) from None
    finally:
        _state.depth -= 1
    out, aux = _split_result(out, has_aux, argnums)
    leaves = [leaf for i in positions for leaf in tree_leaves(inputs[i])]
    found = iter(_backward(out, leaves, create_graph=nested))
    unwrap = (lambda t: t) if nested else (lambda t: t.data)
    grads = tuple(map_tree(lambda _: unwrap(next(found)), inputs[i]) for i in positions)
    value = out if nested else out.data
    grads = grads[0] if isinstance(argnums, int) else grads
    if not has_aux:
        return value, grads
    if not nested:  # aux is a result, not part of a trace: plain arrays
        aux = map_tree(_data, aux)
    return (value, aux), grads


def _split_result(out, has_aux, argnums):
    """(value, aux) from what f returned, once the value is a traced scalar."""
    aux = None
    if has_aux:
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            what = f"{type(out).__name__} of {len(out)}" if isinstance(out, (tuple, list)) else type(out).__name__
            raise TypeError(f"grad with has_aux=True needs f to return a pair (value, aux), but it "
                            f"returned {what}. Return (value, aux), or drop has_aux.")
        out, aux = out
    elif isinstance(out, (tuple, list)):
        raise TypeError(f"grad needs f to return a scalar, but it returned a {type(out).__name__} "
                        f"of {len(out)}. If f returns (value, aux), pass has_aux=True: "
                        f"value_and_grad(f, has_aux=True) gives ((value, aux), grads), "
                        f"grad(f, has_aux=True) gives (grads, aux).")
    if type(out) is not Tensor:
        raise TypeError(f"grad: f returned {type(out).__name__}, which does not depend on the "
                        f"arguments at argnums={argnums}; differentiate a function of them.")
    if out.size != 1:
        raise ValueError(f"grad needs f to return a scalar, but it returned shape {out.shape}; "
                         f"reduce it first (for example .sum() or .mean()).")
    return out, aux


def vjp_of_traced(out, inputs, cotangent):
    """The gradients of traced ``out`` with respect to each traced value in ``inputs``,
    given dL/dout = ``cotangent`` (an array): the vector-Jacobian product, as plain arrays.
    An input ``out`` does not depend on gets zeros. (Layers whose backward comes from
    their forward use this.)"""
    if type(out) is not Tensor:  # out does not depend on any input
        return [device_of(i.data).xp.zeros_like(i.data) for i in inputs]
    return [g.data for g in _backward(out, list(inputs), create_graph=False, seed=cotangent)]


def grad(f, argnums=0, has_aux=False):
    """The gradient of scalar-valued ``f``: ``xn.grad(lambda x: x**3)(2.0)`` is 12.0.

    Takes the arguments of ``value_and_grad``; with ``has_aux=True`` (``f`` returns
    ``(value, aux)``) it gives ``(grads, aux)``."""
    vg = value_and_grad(f, argnums, has_aux)

    def gradient(*args, **kwargs):
        value, grads = vg(*args, **kwargs)
        return (grads, value[1]) if has_aux else grads
    return gradient
