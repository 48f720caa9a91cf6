"""How ``Layer`` wraps the methods its subclasses write: each runs under the layer's device,
an ``__init__`` that forgot ``super().__init__()`` says so, and a layer with a forward but
no backward gets its backward from autodiff (forward traced, backward the traced graph's
vector-Jacobian product). Also the reusable buffers of a layer's or loss's workspace."""
from __future__ import annotations

import functools

from .. import autodiff
from ..device import current_device


def _under(backend_of, method):
    """``method`` run under the device ``backend_of(self)`` names (its ``activate()``), as
    CuPy needs: arrays are allocated, and kernels launched, on the current device. A
    no-op where the device has no notion of a current one (the CPU)."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        backend = backend_of(self)
        if not backend.scoped:
            return method(self, *args, **kwargs)
        with backend.activate():
            return method(self, *args, **kwargs)
    return run


def on_device(method):
    """``method`` run under its object's device (``self.backend``)."""
    return _under(lambda self: self.backend, method)


def _on_current_device(init):
    """``__init__`` under the device the layer is built on (the current one)."""
    return _under(lambda self: current_device().backend, init)


def _unwrapped(fn):
    return getattr(fn, "__wrapped__", fn)


def _untraced(forward):
    """The user's forward behind a traced one, or None if ``forward`` is not traced."""
    return getattr(_unwrapped(forward), "_untraced", None)


def _traced(forward):
    """forward(x), run on traced values (the input and every parameter), so that
    backward can be the graph's vector-Jacobian product."""
    def run(self, x):
        if type(x) is autodiff.Tensor:  # inside xn.grad: part of the caller's trace, the
            return forward(self, x)     # parameters constants, the layer's own graph kept
        self._traced = {name: autodiff.Tensor(p) for name, p in self._params.items()}
        x_in = autodiff.Tensor(x)
        try:
            y = forward(self, x_in)
        finally:
            traced, self._traced = self._traced, None
        self._graph = (x_in, traced, y)
        return y.data if type(y) is autodiff.Tensor else y
    run._untraced = forward
    run.__name__, run.__doc__ = forward.__name__, forward.__doc__
    return run


def _leaf_layers(layers):
    """Every layer in ``layers`` and inside them, containers included."""
    for layer in layers:
        yield from _leaf_layers(layer.sublayers())
        yield layer


def _refuse_traced(layer):
    """Raise, naming the layer and the way that works, if ``layer`` (or a layer inside it)
    cannot run on a traced value: its backward is hand-written, so xn.grad cannot see
    through it."""
    for leaf in _leaf_layers([layer]):
        if not leaf.sublayers() and _untraced(type(leaf).forward) is None:
            raise TypeError(
                f"{leaf.describe()} has a hand-written backward, so it cannot run on a traced value "
                f"inside xn.grad (only layers whose backward comes from autodiff can, such as "
                f"xn.nn.Lambda). For the gradient of a model's output with respect to its input "
                f"(a saliency map), use backward outside grad: model = Sequential(..., "
                f"input_grad=True); y = model(x); dy = zeros_like(y); dy[:, 1] = 1 (for "
                f"y[:, 1].sum()); dx = model.backward(dy). Or write the function with "
                f"xn.functional operations on model.params(), which grad traces.")


def _traced_param(self, name):
    traced = getattr(self, "_traced", None)
    return traced[name] if traced else self._params[name]


def _autodiff_backward(self, dout):
    """dL/dx, and every parameter's gradient written in place, from the traced forward."""
    x_in, traced, y = self._graph
    names = list(traced)
    dout = _cast_dout(dout, getattr(y, "data", y))
    grads = autodiff.vjp_of_traced(y, [x_in] + [traced[n] for n in names], dout)
    for name, g in zip(names, grads[1:]):
        self._grads[name][...] = g
    return grads[0]


def _cast_dout(dout, y):
    """The upstream gradient in the dtype of the output it belongs to (a float64 gradient
    into a float32 layer is cast on the device, as its input was)."""
    dtype = getattr(y, "dtype", None)
    if dtype is None or getattr(dout, "dtype", dtype) == dtype or dtype.kind != "f":
        return dout
    return dout.astype(dtype)


_AUTODIFF_BACKWARD = on_device(_autodiff_backward)


def _checked_init(init):
    """``__init__`` that says what to add when it forgot ``super().__init__()``."""
    @functools.wraps(init)
    def run(self, *args, **kwargs):
        try:
            init(self, *args, **kwargs)
        except AttributeError as exc:
            if "_device" in vars(self):
                raise
            raise TypeError(_no_super_init(self)) from exc
        if "_device" not in vars(self):
            raise TypeError(_no_super_init(self))
    return run


def _no_super_init(layer):
    name = type(layer).__name__
    return (f"{name}.__init__ did not call super().__init__(), which sets up the layer's device, "
            f"parameters and buffers. Add super().__init__() as the first line of {name}.__init__.")


def reusable(cache: dict, name, shape, dtype, xp):
    """``cache[name]`` if it has this shape and dtype, else a new empty array kept there."""
    buf = cache.get(name)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = cache[name] = xp.empty(shape, dtype=dtype)
    return buf
