"""``xn.testing.check_gradients`` itself: it passes correct layers whatever their input,
leaves them as they started, and fails deliberately broken ones (property c)."""
import numpy
import pytest

import xpnet as xn


def _x(shape=(4, 5), seed=0):
    return numpy.random.default_rng(seed).standard_normal(shape)


class Square(xn.nn.Layer):
    """x**2 with a hand-written backward: the correct twin of the broken layers below."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, dout):
        return 2 * self.x * dout


class Scale(xn.nn.Layer):
    """y = x * s, one factor per feature, with a hand-written backward."""

    def __init__(self, features=5):
        super().__init__()
        self.add_param("s", numpy.linspace(0.5, 1.5, features))

    def forward(self, x):
        self.x = x
        return x * self.param("s")

    def backward(self, dout):
        (dout * self.x).sum(axis=0, out=self.grad("s"))
        return dout * self.param("s")


class ForgetsReturn(Square):
    def backward(self, dout):
        2 * self.x * dout  # noqa: B018 (the bug: no return)


class Accumulates(Scale):
    def backward(self, dout):
        self.grad("s")[...] += (dout * self.x).sum(axis=0)  # the bug: adds to last step's
        return dout * self.param("s")


class WrongSign(Square):
    def backward(self, dout):
        return -2 * self.x * dout


class OffByAFactor(Square):
    def backward(self, dout):
        return self.x * dout  # forgot the 2


class WrongForOneElement(Scale):
    def backward(self, dout):
        (dout * self.x).sum(axis=0, out=self.grad("s"))
        self.grad("s")[2:3] *= 1.01  # one element of one gradient slightly off
        return dout * self.param("s")


class WrongParamGradSign(Scale):
    def backward(self, dout):
        (dout * self.x).sum(axis=0, out=self.grad("s"))
        self.grad("s")[...] *= -1
        return dout * self.param("s")


BROKEN = {
    "forgets_return": (ForgetsReturn, "backward returned None"),
    "accumulates": (Accumulates, "depends on what the gradient array held before backward"),
    "wrong_sign": (WrongSign, "input: relative error"),
    "off_by_a_factor": (OffByAFactor, "input: relative error"),
    "wrong_for_one_element": (WrongForOneElement, "s: relative error"),
    "wrong_sign_of_a_parameter_gradient": (WrongParamGradSign, "s: relative error"),
}


@pytest.mark.parametrize("name", BROKEN)
def test_check_gradients_fails_a_broken_layer(name, device):
    make, says = BROKEN[name]
    with pytest.raises(xn.testing.GradientCheckError, match=says):
        xn.testing.check_gradients(make(), _x())


@pytest.mark.parametrize("make", [Square, Scale], ids=["square", "scale"])
def test_check_gradients_passes_the_correct_twins(make, device):
    errors = xn.testing.check_gradients(make(), _x())
    assert max(errors.values()) < 1e-8  # float64 central differences with h=1e-6: ~1e-10


def test_check_gradients_fails_a_sequential_whose_inner_layer_forgets_return(device):
    model = xn.nn.Sequential(Scale(), ForgetsReturn(), Scale(), input_grad=True)
    with pytest.raises(xn.testing.GradientCheckError, match="returned None"):
        xn.testing.check_gradients(model, _x())


def test_check_gradients_lets_a_sequential_without_input_grad_return_none(device):
    model = xn.nn.Sequential(xn.nn.Affine(5, 4, dtype="float64"), xn.nn.Tanh())
    errors = xn.testing.check_gradients(model, _x())
    assert set(errors) == {"0.W", "0.b"}


def test_check_gradients_restores_batchnorm_running_statistics(device):
    """Issue case 4: the check ran ~100 training-mode forwards, each moving the running
    statistics; the docs promise the layer ends as it started."""
    layer = xn.nn.BatchNorm(4, dtype="float64")
    layer.set_params({"running_mean": numpy.full(4, 5.0), "running_var": numpy.full(4, 3.0)})
    xn.testing.check_gradients(layer, _x((3, 4), seed=1))
    numpy.testing.assert_array_equal(xn.to_host(layer.buffer("running_mean")), numpy.full(4, 5.0))
    numpy.testing.assert_array_equal(xn.to_host(layer.buffer("running_var")), numpy.full(4, 3.0))


def test_check_gradients_restores_buffers_inside_a_sequential(device):
    model = xn.nn.Sequential(xn.nn.Affine(4, 4, dtype="float64"), xn.nn.BatchNorm(4, dtype="float64"),
                             input_grad=True)
    before = {k: xn.to_host(v).copy() for k, v in model.buffers().items()}
    xn.testing.check_gradients(model, _x((3, 4), seed=1))
    for k, v in model.buffers().items():
        numpy.testing.assert_array_equal(xn.to_host(v), before[k])


def test_check_gradients_probe_is_independent_of_the_docs_input(device):
    """Issue case 23: with the probe w drawn from default_rng(0) like the input, sum(BN(x) * x)
    has a gradient of ~0 in x (BN removes exactly the direction x), and a correct BatchNorm
    failed on rounding noise."""
    errors = xn.testing.check_gradients(xn.nn.BatchNorm(4, dtype="float64"),
                                        numpy.random.default_rng(0).standard_normal((3, 4)))
    assert errors["input"] < 1e-6


@pytest.mark.parametrize("view", ["slice", "transposed", "strided"])
def test_check_gradients_takes_a_non_contiguous_input(view, device):
    """Issue case 17: a slice x[:4, :5] on cpu was perturbed through a reshape copy, so the
    numerical gradient of the input was 0 and a correct layer was reported at error 1.00."""
    big = _x((8, 10))
    x = {"slice": big[:4, :5], "transposed": big[:5, :4].T, "strided": big[::2, ::2]}[view]
    layer = xn.nn.Affine(x.shape[1], 3, dtype="float64", seed=0)
    errors = xn.testing.check_gradients(layer, x)
    assert errors["input"] < 1e-6


def test_check_gradients_takes_a_non_contiguous_device_input(device):
    x = xn.to_device(_x((8, 10)), device)[:4, :5]
    errors = xn.testing.check_gradients(xn.nn.Affine(5, 3, dtype="float64", seed=0), x)
    assert errors["input"] < 1e-6


def test_check_gradients_leaves_the_callers_input_and_parameters_alone(device):
    x = _x()
    before = x.copy()
    layer = Scale()
    s = xn.to_host(layer.param("s")).copy()
    xn.testing.check_gradients(layer, x)
    numpy.testing.assert_array_equal(x, before)
    numpy.testing.assert_array_equal(xn.to_host(layer.param("s")), s)


def test_check_gradients_passes_a_gradient_that_is_zero_in_truth(device):
    """A bias before BatchNorm has a gradient of exactly 0 (the normalisation removes it):
    judged relative to its own size, its rounding noise read as an error of 1.00."""
    model = xn.nn.Sequential(xn.nn.Affine(4, 4, dtype="float64", seed=0), xn.nn.BatchNorm(4, dtype="float64"),
                             input_grad=True)
    errors = xn.testing.check_gradients(model, _x((3, 4), seed=1))
    assert errors["0.b"] < 1e-6
