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


def _relative_error(analytic, numerical) -> float:
    """max |a - n| / max(|a| + |n|): 0 when equal, 1 when unrelated; scale-free."""
    scale = numpy.max(numpy.abs(analytic) + numpy.abs(numerical)) if analytic.size else 0.0
    return float(numpy.max(numpy.abs(analytic - numerical)) / max(scale, 1e-12)) if analytic.size else 0.0


def check_gradients(layer, x, t=None, loss=None, tol=None, h=None, seed=0) -> dict:
    """The largest relative error of ``layer``'s gradients, by name, against central
    differences: one entry per parameter (``"W"``, or ``"0.W"`` in a Sequential) and
    ``"input"`` where backward returns dL/dx.

    Without ``t`` the objective is ``sum(layer(x) * w)`` for a fixed random ``w`` (so the
    whole Jacobian is checked, not one direction of it); with ``t`` it is ``loss(layer(x),
    t)`` (``loss`` defaults to ``xn.nn.SoftmaxCrossEntropy()``). ``x`` may be a host array:
    it is copied to the layer's device in the parameters' dtype. Raises
    ``GradientCheckError`` with a per-name report when an error exceeds ``tol`` (1e-6 in
    float64, 1e-2 in float32). The layer's random draws (``random_state``, Dropout's) are
    replayed for every evaluation; its parameters end as they started.
    """
    from .nn.losses import SoftmaxCrossEntropy
    params = layer.params()
    dtype = next(iter(params.values())).dtype if params else numpy.dtype(numpy.float64)
    double = dtype == numpy.float64
    tol = (1e-6 if double else 1e-2) if tol is None else tol
    h = (1e-6 if double else 1e-3) if h is None else h
    with use_device(layer.device) as device:
        x = to_device(numpy.asarray(x, dtype=dtype) if isinstance(x, (numpy.ndarray, list)) else x.astype(dtype),
                      device)
        random = {k: v.copy() for k, v in layer.random_state().items()}

        def forward():
            for name, value in layer.random_state().items():
                value[...] = random[name]
            return layer(x)

        y = forward()
        if t is not None:
            loss = SoftmaxCrossEntropy() if loss is None else loss
            t = to_device(t, device)
            objective = lambda: float(loss(forward(), t))  # noqa: E731
            loss(y, t)
            dout = loss.backward()
        else:
            w = to_device(numpy.random.default_rng(seed).standard_normal(y.shape).astype(dtype), device)
            objective = lambda: float(to_host((forward() * w).sum()))  # noqa: E731
            dout = w
        dx = layer.backward(dout)
        analytic = {name: to_host(g).astype(numpy.float64, copy=True) for name, g in layer.grads().items()}
        targets = dict(params)
        if dx is not None:
            analytic["input"], targets["input"] = to_host(dx).astype(numpy.float64, copy=True), x
        errors = {name: _relative_error(analytic[name], _numerical(objective, targets[name], h))
                  for name in analytic}
    bad = {name: e for name, e in errors.items() if not e <= tol}
    if bad:
        lines = [f"  {name}: relative error {e:.2e}{'  <- above' if name in bad else ''}"
                 for name, e in errors.items()]
        raise GradientCheckError(f"{layer.describe()}: backward disagrees with the numerical gradient "
                                 f"(tolerance {tol:g}, {dtype}):\n" + "\n".join(lines))
    return errors


def _numerical(objective, array, h):
    """Central differences of ``objective()`` in each element of ``array`` (perturbed in place)."""
    flat = array.reshape(-1)  # a view: perturbing it perturbs the array
    out = numpy.zeros(flat.shape[0])
    for i in range(flat.shape[0]):
        old = float(to_host(flat[i]))
        flat[i] = old + h
        up = objective()
        flat[i] = old - h
        down = objective()
        flat[i] = old
        out[i] = (up - down) / (2 * h)
    return out.reshape(array.shape)
