"""``grad`` and ``value_and_grad``: trace ``f`` on copies of its arguments, then walk the
recorded graph backwards; and ``vjp_of_traced``, the backward of a layer whose backward
comes from autodiff."""
from __future__ import annotations

import numpy

from ..device import common_device, current_device, device_of, use_device
from ..errors import ImplicitTransferError
from ..transfer import to_device
from ..tree import map_tree, tree_leaves
from .core import Tensor, _data, _depth, _node, _recording, _state


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
    ``f`` and not differentiated. Results live on the arguments' device, each gradient in
    its argument's dtype (inside another grad, the traced gradient as computed).

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
    unwrap = (lambda t, leaf: t) if nested else _plain_gradient
    grads = tuple(map_tree(lambda leaf: unwrap(next(found), leaf), inputs[i]) for i in positions)
    value = out if nested else out.data
    grads = grads[0] if isinstance(argnums, int) else grads
    if not has_aux:
        return value, grads
    if not nested:  # aux is a result, not part of a trace: plain arrays
        aux = map_tree(_data, aux)
    return (value, aux), grads


def _plain_gradient(g, leaf):
    """The gradient of argument ``leaf`` as a plain array of the argument's dtype (JAX's and
    PyTorch's rule: a float32 argument that met float64 constants gets a float32 gradient)."""
    dtype = leaf.data.dtype
    return g.data if g.data.dtype == dtype else g.data.astype(dtype)


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
