"""The minor findings of the hostile pass: abs/maximum/minimum/clip/min of traced values,
non-finite values given to set_params and to fit/evaluate/predict, ModelCheckpoint paths
that cannot work, and examples' numeric options that are not numbers they can use."""
import numpy
import pytest

import xpnet as xn
from tests.helpers import numerical_grad, relative_error
from xpnet import autodiff as ad


# -- 12: abs, maximum, minimum, clip, min of traced values --------------------------------
def test_abs_of_a_traced_value_has_the_sign_as_gradient(device):
    x = xn.to_device(numpy.array([1.5, -2.0, 0.0, 0.25], dtype=numpy.float32))
    for f in (lambda t: abs(t).sum(), lambda t: numpy.abs(t).sum(), lambda t: (abs(t) * t).sum()):
        g = ad.grad(f)(x)
        assert g.dtype == numpy.float32
    numpy.testing.assert_array_equal(xn.to_host(ad.grad(lambda t: abs(t).sum())(x)), [1, -1, 0, 1])  # 0 at 0
    numpy.testing.assert_array_equal(xn.to_host(ad.grad(lambda t: numpy.abs(t).sum())(x)), [1, -1, 0, 1])
    # d/dx (|x| x) = 2 |x|
    numpy.testing.assert_allclose(xn.to_host(ad.grad(lambda t: (abs(t) * t).sum())(x)), [3, 4, 0, 0.5])


def test_abs_gradient_matches_finite_differences(device):
    x = numpy.array([[0.7, -1.3], [2.1, -0.4]])
    analytic = xn.to_host(ad.grad(lambda t: (abs(t) ** 3).sum())(xn.to_device(x)))
    numeric = numerical_grad(lambda: (numpy.abs(x) ** 3).sum(), x)
    assert relative_error(analytic, numeric) < 1e-6


def test_maximum_minimum_clip_min_of_traced_values(device):
    x = xn.to_device(numpy.array([1.0, -2.0, 0.0, 0.5], dtype=numpy.float32))
    grad = lambda f: xn.to_host(ad.grad(f)(x))
    # ties share the gradient equally, as PyTorch's maximum/minimum
    numpy.testing.assert_array_equal(grad(lambda t: numpy.maximum(t, 0).sum()), [1, 0, 0.5, 1])
    numpy.testing.assert_array_equal(grad(lambda t: numpy.minimum(t, 0.5).sum()), [0, 1, 1, 0.5])
    # clip passes the gradient where low <= x <= high, as PyTorch's clamp
    numpy.testing.assert_array_equal(grad(lambda t: numpy.clip(t, -1, 0.5).sum()), [0, 0, 1, 1])
    numpy.testing.assert_array_equal(grad(lambda t: t.clip(max=0.0).sum()), [0, 1, 1, 0])
    numpy.testing.assert_array_equal(grad(lambda t: numpy.min(t)), [0, 1, 0, 0])
    numpy.testing.assert_array_equal(grad(lambda t: (t * 3).min()), [0, 3, 0, 0])
    assert float(xn.to_host(ad.grad(lambda t: numpy.maximum(t, 0).sum())(x).sum())) == 2.5
    assert ad.grad(lambda t: numpy.maximum(t, 0).sum())(x).dtype == numpy.float32  # a number keeps the dtype


def test_an_unsupported_ufunc_is_refused_with_the_supported_list(device):
    x = xn.to_device(numpy.array([1.0, -2.0]))
    with pytest.raises(TypeError, match=r"numpy\.sin.*abs.*maximum.*clip"):
        ad.grad(lambda t: numpy.sin(t).sum())(x)
