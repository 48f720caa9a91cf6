"""Losses and the functional API (issues 25 and 31): each test failed before its fix,
except the few whose docstring calls them a guard (what the fix must not change).

Reference values come from the formulas themselves in float64 NumPy (written out here,
not calling xpnet's code) or from central differences; PyTorch agrees with each
(torch.sigmoid(tensor(-20.)) = 2.0612e-09, F.leaky_relu(tensor([-2., 2.]), 2.) = [-4, 2]).
"""
import numpy
import pytest

import xpnet as xn
from tests.helpers import host_rand

F = xn.functional
ad = xn.autodiff


def _softmax(z):
    e = numpy.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# Rows that do not sum to 1: multi-hot, a masked (zero) row, a soft row, a one-hot row.
ROWS = numpy.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.2, 0.3, 0.0, 0.1], [0.0, 0.0, 1.0, 0.0]])


def _expected_gradient(z, t):
    """d/dz of mean_i sum_j t_ij (lse_i - z_ij): (softmax(z) * sum_j t_ij - t) / N."""
    return (_softmax(z) * t.sum(axis=1, keepdims=True) - t) / len(z)


# -- issue 31, case 11: sigmoid accurate for large negative inputs ---------------------------
def test_float32_sigmoid_keeps_its_relative_precision_on_both_sides(device):
    x = numpy.linspace(-87, 87, 3481, dtype=numpy.float32)  # exp(-87) is still a normal float32
    y = xn.to_host(F.sigmoid(xn.to_device(x)))
    exact = 1 / (1 + numpy.exp(-x.astype(numpy.float64)))
    assert y.dtype == numpy.float32
    assert numpy.max(numpy.abs(y / exact - 1)) < 3 * numpy.finfo(numpy.float32).eps  # exp + add + divide
    small = float(xn.to_host(F.sigmoid(xn.to_device(numpy.float32(-20)))))
    assert abs(small / 2.0611536e-09 - 1) < 1e-6  # PyTorch's value
    assert numpy.isfinite(xn.to_host(F.log(F.sigmoid(xn.to_device(numpy.float32(-80))))))


def test_sigmoid_layer_functional_and_autodiff_agree_and_cpu_equals_sim(rng):
    x = (host_rand(rng, 6, 7) * 30).astype(numpy.float32)
    results = []
    for name in ("cpu", "sim"):
        with xn.use_device(name):
            xd = xn.to_device(x)
            in_place = xn.nn.Sequential(xn.nn.Affine(7, 7), xn.nn.Sigmoid())  # Sigmoid writes into Affine's y
            in_place.set_params({"0.W": numpy.eye(7, dtype=numpy.float32), "0.b": numpy.zeros(7, numpy.float32)})
            value, _ = xn.value_and_grad(lambda v: F.sigmoid(v).sum())(xd)
            outs = [xn.to_host(xn.nn.Sigmoid()(xd)), xn.to_host(F.sigmoid(xd)), xn.to_host(in_place(xd))]
            results.append(outs)
            for out in outs[1:]:
                numpy.testing.assert_array_equal(outs[0], out)
            assert float(xn.to_host(value)) == float(outs[0].sum(dtype=numpy.float32))
    for a, b in zip(*results):
        numpy.testing.assert_array_equal(a, b)
    assert (results[0][0] > 0).all()  # no sample rounds to exactly 0 (min input about -90)


# -- issue 31, case 12: leaky_relu for any slope ---------------------------------------------
@pytest.mark.parametrize("slope", [2.0, 0.2, -0.5, 1.0])
def test_leaky_relu_is_x_for_positive_inputs_and_slope_x_otherwise(device, slope):
    """slope 2 failed before; the slopes <= 1 are guards (max(x, slope x) was right there)."""
    x = numpy.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    expected = numpy.where(x > 0, x, slope * x)  # PyTorch's definition
    xd = xn.to_device(x)
    numpy.testing.assert_array_equal(xn.to_host(F.leaky_relu(xd, slope)), expected)
    g = xn.grad(lambda v: F.leaky_relu(v, slope).sum())(xd)
    numpy.testing.assert_array_equal(xn.to_host(g), numpy.where(x > 0, 1.0, slope))


def test_leaky_relu_layer_still_limits_slope_and_functional_refuses_non_numbers():
    """A guard for the layer (its [0, 1] range is kept); the functional's check is new."""
    with pytest.raises(ValueError, match="slope"):
        xn.nn.LeakyReLU(2.0)
    with pytest.raises(ValueError, match="slope must be a finite number"):
        F.leaky_relu(numpy.ones(2), float("nan"))
