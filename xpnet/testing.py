"""The book's gradient check, for layers you write: ``check_gradients(layer, x)``.

It compares a layer's (or a model's) ``backward`` with central differences of its forward,
over every parameter and the input, and reports the largest relative error of each. It
works on any device (on sim and CUDA each difference reads one number to the host, so keep
the layer small). Check in float64 (``dtype="float64"`` for the built-in layers): in
float32 the differences themselves are only good to about 1e-3.
"""
from __future__ import annotations

import numpy

from .device import use_device
from .transfer import to_device, to_host


class GradientCheckError(AssertionError):
    """A backward pass disagrees with the numerical gradient of its forward."""


def _relative_error(analytic, numerical, floor=0.0) -> float:
    """max |a - n| / max(|a| + |n|, floor): 0 when equal, 1 when unrelated; scale-free. The
    floor keeps a gradient that is zero in truth (a bias before BatchNorm) from being
    judged by its rounding noise alone."""
    if not analytic.size:
        return 0.0
    scale = max(float(numpy.max(numpy.abs(analytic) + numpy.abs(numerical))), floor, 1e-12)
    return float(numpy.max(numpy.abs(analytic - numerical))) / scale


# Streams of their own for what the check draws (the probe direction, the garbage written
# into the gradients): a user's input drawn from default_rng(seed) is never the probe too.
_PROBE, _GARBAGE = 0x9D0BE, 0x6A5BA6E


def _needs_dx(layer) -> bool:
    """Whether ``layer``'s backward must return dL/dx: always, unless it was told no dx is
    needed (a Sequential built without ``input_grad``, or a first layer inside one)."""
    return bool(getattr(layer, "_need_dx", True)) and bool(getattr(layer, "input_grad", True))


def check_gradients(layer, x, t=None, loss=None, tol=None, h=None, seed=0) -> dict:
    """The largest relative error of ``layer``'s gradients, by name, against central
    differences: one entry per parameter (``"W"``, or ``"0.W"`` in a Sequential) and
    ``"input"`` where backward returns dL/dx.

    Without ``t`` the objective is ``sum(layer(x) * w)`` for a random ``w`` drawn from
    ``seed`` on a stream of its own, never the input's (so the whole Jacobian is checked,
    not one direction of it); with ``t`` it is ``loss(layer(x), t)`` (``loss`` defaults to
    ``xn.nn.SoftmaxCrossEntropy()``). ``x`` may be a host array of any layout: it is copied
    to the layer's device in the parameters' dtype, and each evaluation gets a fresh copy,
    so the caller's array is never touched. Raises ``GradientCheckError`` with a per-name
    report when an error exceeds ``tol`` (1e-6 in float64, 1e-2 in float32), when backward
    returns None although dL/dx is needed (a forgotten ``return dx``; only a Sequential
    built without ``input_grad`` may return None), or when a gradient depends on what its
    array held before backward (a backward that adds to ``self.grad(name)`` instead of
    overwriting it: the check fills the gradients with garbage before each backward). The
    layer's random draws (``random_state``, Dropout's) are replayed for every evaluation;
    its parameters and buffers (BatchNorm's running statistics) end as they started.
    """
    params = layer.params()
    dtype = next(iter(params.values())).dtype if params else numpy.dtype(numpy.float64)
    double = dtype == numpy.float64
    tol = (1e-6 if double else 1e-2) if tol is None else tol
    h = (1e-6 if double else 1e-3) if h is None else h
    with use_device(layer.device) as device:
        x = _device_input(x, dtype, device)
        replay = _Replay(layer, x)
        try:
            objective, dout = _objective(replay, t, loss, seed, dtype, device)
            analytic, dx, changed = _analytic(layer, dout, seed, device)
            targets = dict(params)
            if _checked_dx(layer, dx, x) is not None:
                analytic["input"], targets["input"] = to_host(dx).astype(numpy.float64, copy=True), x
            numerical = {name: _numerical(objective, targets[name], h) for name in analytic}
            errors = _errors(analytic, numerical)
        finally:
            replay.restore_buffers()
    _report(layer, errors, changed, tol, dtype)
    return errors


def _device_input(x, dtype, device):
    """``x`` on the layer's device in the parameters' dtype, contiguous, a copy of its own."""
    if isinstance(x, (numpy.ndarray, numpy.generic, list, tuple, int, float)):
        return to_device(numpy.array(x, dtype=dtype, order="C"), device)
    return device.xp.ascontiguousarray(x.astype(dtype))


class _Replay:
    """The layer's forward on a fresh copy of ``x``, its random draws and buffers (Dropout's
    counters, BatchNorm's running statistics) put back as they were before every call."""

    def __init__(self, layer, x):
        self.layer, self.x = layer, x
        self.random = {k: v.copy() for k, v in layer.random_state().items()}
        self.buffers = {k: v.copy() for k, v in layer.buffers().items()}

    def restore_buffers(self):
        for name, value in self.layer.buffers().items():
            value[...] = self.buffers[name]

    def __call__(self):
        for name, value in self.layer.random_state().items():
            value[...] = self.random[name]
        self.restore_buffers()
        return self.layer(self.x.copy())  # a layer that wrote into its input would spoil the differences


def _objective(forward, t, loss, seed, dtype, device):
    """The scalar the differences are taken of, and its gradient with respect to the output:
    ``loss(forward(), t)``, or ``sum(forward() * w)`` with ``w`` from the probe's stream."""
    y = forward()
    if t is not None:
        from .nn.losses import SoftmaxCrossEntropy
        loss = SoftmaxCrossEntropy() if loss is None else loss
        t = to_device(t, device)
        loss(y, t)
        return (lambda: float(loss(forward(), t))), loss.backward().copy()
    dout = to_device(numpy.random.default_rng([seed, _PROBE]).standard_normal(y.shape).astype(dtype), device)
    return (lambda: float(to_host((forward() * dout).sum()))), dout


def _checked_dx(layer, dx, x):
    """``dx`` once it is a fit answer: None only where no dL/dx is needed, of x's shape."""
    if dx is None and _needs_dx(layer):
        raise GradientCheckError(
            f"{layer.describe()}: backward returned None, but dL/dx is needed (the layer "
            f"before it trains on it). End backward with `return dx`; a Sequential returns "
            f"None only when built without input_grad=True.")
    if dx is not None and tuple(dx.shape) != tuple(x.shape):
        raise GradientCheckError(f"{layer.describe()}: backward returned dL/dx of shape "
                                 f"{tuple(dx.shape)} for an input of shape {tuple(x.shape)}; "
                                 f"they must match.")
    return dx


def _errors(analytic, numerical):
    """Each gradient's relative error, relative to its own size but never to less than a
    thousandth of the largest gradient's: below that, rounding noise dominates."""
    floor = 1e-3 * max((float(numpy.max(numpy.abs(a))) for a in analytic.values() if a.size), default=0.0)
    return {name: _relative_error(analytic[name], numerical[name], floor) for name in analytic}


def _report(layer, errors, changed, tol, dtype):
    """Raise ``GradientCheckError`` with a per-name report if any gradient failed."""
    bad = {name: e for name, e in errors.items() if not e <= tol}
    if not bad and not changed:
        return
    lines = [f"  {name}: relative error {e:.2e}{'  <- above' if name in bad else ''}"
             + ("  <- depends on what the gradient array held before backward" if name in changed else "")
             for name, e in errors.items()]
    hint = ("\n  backward must overwrite each gradient (self.grad(name)[...] = g, or a routine's out=), "
            "not add to it: training would sum every step's gradient." if changed else "")
    raise GradientCheckError(f"{layer.describe()}: backward disagrees with the numerical gradient "
                             f"(tolerance {tol:g}, {dtype}):\n" + "\n".join(lines) + hint)


def _analytic(layer, dout, seed, device):
    """The parameters' gradients (on the host, float64) and dL/dx from ``layer.backward``,
    run twice with the gradient arrays first filled with two different kinds of garbage;
    also the names whose gradient came out different the two times."""
    garbage = numpy.random.default_rng([seed, _GARBAGE])
    runs = []
    for _ in range(2):
        for g in layer.grads().values():
            g[...] = to_device(garbage.uniform(-1e3, 1e3, g.shape).astype(g.dtype), device)
        try:
            dx = layer.backward(dout.copy())  # a backward may work in place on what it is given
        except RuntimeError as exc:  # a Sequential naming its layer whose backward returned None
            if "backward returned None" not in str(exc):
                raise
            raise GradientCheckError(f"{layer.describe()}: {exc}") from None
        runs.append(({n: to_host(g).astype(numpy.float64, copy=True) for n, g in layer.grads().items()}, dx))
    (first, _), (second, dx) = runs
    changed = {n for n in second if not numpy.array_equal(first[n], second[n], equal_nan=True)}
    return second, dx, changed


def _numerical(objective, array, h):
    """Central differences of ``objective()`` in each element of ``array``, perturbed in
    place one element at a time (by index, so any memory layout works)."""
    out = numpy.zeros(array.shape)
    for index in numpy.ndindex(*array.shape):
        old = float(to_host(array[index]))
        array[index] = old + h
        up = objective()
        array[index] = old - h
        down = objective()
        array[index] = old
        out[index] = (up - down) / (2 * h)
    return out
