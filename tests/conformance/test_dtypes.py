"""Property d: a float32 model takes float64, integer and bool inputs and float64 upstream
gradients, and everything it returns or writes (outputs, dL/dx, gradients) stays float32."""
import numpy
import pytest

import xpnet as xn

from .registry import layer_samples
from .support import SHAPE_2D, SHAPE_4D, UNITS_2D, UNITS_4D, host_input

INPUTS = {
    "float64": lambda shape: host_input(shape),
    "int32": lambda shape: (host_input(shape) * 3).astype(numpy.int32),
    "uint8": lambda shape: (numpy.abs(host_input(shape)) * 40).astype(numpy.uint8),
    "bool": lambda shape: host_input(shape) > 0,
}
PARAM_SAMPLES = {id: s for id, e, s in layer_samples() if e.name in ("Affine", "BatchNorm", "Conv2D")}


def _check_float32(model, x, device):
    y = model(xn.to_device(x, device))
    assert y.dtype == numpy.float32, f"output is {y.dtype} for a {x.dtype} input"
    dx = model.backward(xn.to_device(host_input(tuple(y.shape), 1), device))  # a float64 upstream gradient
    assert dx is None or dx.dtype == numpy.float32, f"dL/dx is {dx.dtype} for a float64 upstream gradient"
    for name, g in model.grads().items():
        assert g.dtype == numpy.float32, f"gradient {name} is {g.dtype}"
    for name, p in model.params().items():
        assert p.dtype == numpy.float32, f"parameter {name} became {p.dtype}"


@pytest.mark.parametrize("kind", list(INPUTS))
@pytest.mark.parametrize("sample", list(PARAM_SAMPLES))
def test_float32_layer_keeps_float32(sample, kind, device):
    s = PARAM_SAMPLES[sample]
    layer = s.make("float32")
    if s.eval_mode:
        layer.eval()
    _check_float32(layer, INPUTS[kind](s.shape), device)


UNITS = {f"2d:{k}": (v, SHAPE_2D, lambda: xn.nn.Affine(4, 4, seed=1)) for k, v in UNITS_2D.items()}
UNITS.update({f"4d:{k}": (v, SHAPE_4D, lambda: xn.nn.Conv2D(2, 2, 3, pad=1, seed=1)) for k, v in UNITS_4D.items()})


@pytest.mark.parametrize("kind", ["float64", "int32", "bool"])
@pytest.mark.parametrize("unit", list(UNITS))
def test_float32_model_keeps_float32_through_every_layer(unit, kind, device):
    """A float32 layer with parameters first, then the block: what flows stays float32,
    and a float64 upstream gradient is cast, not let through."""
    make, shape, first = UNITS[unit]
    model = xn.nn.Sequential(first(), make("float32"), input_grad=True)
    _check_float32(model, INPUTS[kind](shape), device)


@pytest.mark.parametrize("unit", list(UNITS))
def test_block_after_a_float32_layer_casts_a_float64_upstream_gradient(unit, device):
    make, shape, first = UNITS[unit]
    model = xn.nn.Sequential(make("float32"), first(), input_grad=True)
    _check_float32(model, INPUTS["float64"](shape).astype(numpy.float32), device)
