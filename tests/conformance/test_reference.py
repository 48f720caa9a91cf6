"""Every part against a plain NumPy float64 reference that does not call xpnet: forward
values, and backward against central differences of the reference (so a formula that is
wrong in both the forward and the backward of the library is still caught); each layer
sample also passes ``check_gradients``. Losses, functions, optimizers and schedules too."""
import numpy
import pytest

import xpnet as xn

from .registry import FUNCTIONAL, OPTIMIZERS, SCHEDULES, layer_samples, loss_samples
from .support import host_input

SAMPLES = {id: (entry, sample) for id, entry, sample in layer_samples()}
LOSS_SAMPLES = {id: (name, sample) for id, name, sample in loss_samples()}


def build(sample, dtype="float64", seed=0):
    """The sample's layer with its parameters and buffers set to varied values (gamma=1,
    beta=0 or a zero running mean would hide a wrong formula); eval mode where asked."""
    layer = sample.make(dtype)
    values = {k: host_input(tuple(v.shape), seed + i) for i, (k, v) in enumerate(layer.params().items())}
    values.update({k: numpy.abs(host_input(tuple(v.shape), seed + 50 + i)) + 0.5
                   for i, (k, v) in enumerate(layer.buffers().items())})
    if values:
        layer.set_params(values)
    if sample.eval_mode:
        layer.eval()
    return layer


def central(f, x, h=1e-6):
    g = numpy.zeros(x.shape)
    for i in numpy.ndindex(*x.shape):
        old = x[i]
        x[i] = old + h
        up = f()
        x[i] = old - h
        down = f()
        x[i] = old
        g[i] = (up - down) / (2 * h)
    return g


def close(actual, expected, rtol, what):
    actual, expected = numpy.asarray(xn.to_host(actual), dtype=float), numpy.asarray(expected, dtype=float)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, the reference's {expected.shape}"
    scale = max(float(numpy.max(numpy.abs(expected), initial=0.0)), 1e-3)
    err = float(numpy.max(numpy.abs(actual - expected), initial=0.0)) / scale
    assert err <= rtol, f"{what}: relative error {err:.2e} against the NumPy reference (tolerance {rtol:g})"


@pytest.mark.parametrize("sample", list(SAMPLES))
def test_layer_forward_and_backward_match_the_numpy_reference(sample, device):
    entry, s = SAMPLES[sample]
    layer = build(s)
    x = host_input(s.shape)
    params = {k: xn.to_host(v).copy() for k, v in layer.params().items()}
    buffers = {k: xn.to_host(v).copy() for k, v in layer.buffers().items()}
    y = layer(xn.to_device(x, device))
    w = host_input(tuple(y.shape), 99)
    dx = layer.backward(xn.to_device(w, device))
    if s.reference is None:  # Dropout in training: each output is 0 or x / (1 - p), dx the same mask
        yh, kept = xn.to_host(y), xn.to_host(y) != 0
        numpy.testing.assert_allclose(yh[kept], x[kept] / (1 - layer.p), rtol=1e-12)
        numpy.testing.assert_allclose(xn.to_host(dx), numpy.where(kept, w / (1 - layer.p), 0.0), rtol=1e-12)
        return
    close(y, s.reference(x, params, buffers, layer), 1e-10, f"{sample} forward")

    def objective():
        return float((s.reference(x, params, buffers, layer) * w).sum())
    close(dx, central(objective, x), 1e-6, f"{sample} dL/dx")
    for name in params:
        close(layer.grads()[name], central(objective, params[name]), 1e-6, f"{sample} dL/d{name}")


@pytest.mark.parametrize("sample", list(SAMPLES))
def test_layer_passes_check_gradients(sample, device):
    entry, s = SAMPLES[sample]
    errors = xn.testing.check_gradients(build(s), host_input(s.shape))
    assert "input" in errors and set(build(s).params()) <= set(errors)


@pytest.mark.parametrize("sample", list(LOSS_SAMPLES))
def test_loss_and_its_gradient_match_the_numpy_reference(sample, device):
    name, s = LOSS_SAMPLES[sample]
    rng = numpy.random.default_rng(3)
    y, t = host_input(s.y_shape, 4), s.target(rng)
    loss_fn = s.make()
    value = loss_fn(xn.to_device(y, device), xn.to_device(t, device))
    close(value, s.reference(y, t), 1e-12, f"{sample} value")
    close(loss_fn.backward(), central(lambda: s.reference(y, t), y), 1e-6, f"{sample} dL/dy")


FUNCTIONS = {e.name: e for e in FUNCTIONAL}


def _function_input(entry):
    x = host_input(entry.shape, 5)
    return numpy.abs(x) + 0.1 if entry.positive else x


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_functional_matches_the_numpy_reference(name, device):
    entry = FUNCTIONS[name]
    x = _function_input(entry)
    close(entry.call(xn.functional, xn.to_device(x, device)), entry.reference(x), 1e-10, f"{name} value")


@pytest.mark.parametrize("name", [n for n, e in FUNCTIONS.items() if e.differentiable])
def test_functional_gradient_matches_the_numpy_reference(name, device):
    entry = FUNCTIONS[name]
    x = _function_input(entry)
    w = host_input(numpy.shape(entry.reference(x)), 6)
    wd = xn.to_device(w, device)
    g = xn.grad(lambda v: (entry.call(xn.functional, v) * wd).sum())(xn.to_device(x, device))
    close(g, central(lambda: float((entry.reference(x) * w).sum()), x), 1e-6, f"{name} gradient")


OPTIM = {e.name: e for e in OPTIMIZERS}


@pytest.mark.parametrize("name", list(OPTIM))
def test_optimizer_steps_match_the_numpy_reference(name, device):
    entry = OPTIM[name]
    model = xn.nn.Affine(3, 2, dtype="float64", seed=0)
    opt = entry.make(model)
    p = {k: xn.to_host(v).copy() for k, v in model.params().items()}
    state = {k: {} for k in p}
    for t in range(1, 4):
        grads = {k: host_input(v.shape, 10 * t + i) for i, (k, v) in enumerate(p.items())}
        for k, g in grads.items():
            model.grads()[k][...] = xn.to_device(g, device)
        opt.step()
        p = {k: entry.reference(p[k], grads[k], state[k], t) for k in p}
        for k in p:
            close(model.params()[k], p[k], 1e-12, f"{name} step {t}, {k}")


SCHED = {e.name: e for e in SCHEDULES}


@pytest.mark.parametrize("name", list(SCHED))
def test_schedule_rates_match_the_formula(name, device):
    entry = SCHED[name]
    opt = xn.optim.SGD(xn.nn.Affine(2, 2, dtype="float64"), lr=0.1)
    schedule = entry.make(opt)
    for epoch in range(1, 7):
        assert schedule.step() == pytest.approx(entry.reference(0.1, epoch), rel=1e-12)
        assert opt.lr == pytest.approx(entry.reference(0.1, epoch), rel=1e-12)
