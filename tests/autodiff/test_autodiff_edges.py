"""Autodiff's edge cases from the reliability issue (31: cases 9, 10, 13, 20 to 25, 27):
each was a wrong gradient with no error, or an error that named the wrong thing."""
import collections

import numpy
import pytest

import xpnet as xn
from tests.helpers import host_rand, numerical_grad, relative_error
from xpnet import autodiff as ad

F = xn.functional


def _host(x):
    return numpy.asarray(xn.to_host(x))


# -- 9, 27: transpose with negative axes and NumPy's signatures -------------------------------
@pytest.mark.parametrize("spell", ["negative", "tuple", "numpy"])
def test_transpose_with_negative_or_tuple_axes_is_transposed_back(spell, device, rng):
    x = xn.to_device(host_rand(rng, 2, 3, 4), device)
    w = xn.to_device(host_rand(rng, 4, 2, 3), device)
    transposed = {"negative": lambda z: z.transpose(-1, 0, 1), "tuple": lambda z: z.transpose((2, 0, 1)),
                  "numpy": lambda z: numpy.transpose(z, (-1, -3, -2))}[spell]
    g = xn.grad(lambda z: (transposed(z) * w).sum())(x)
    # d/dz sum(z.transpose(2, 0, 1) * w) = w put back in z's order: w.transpose(1, 2, 0)
    numpy.testing.assert_array_equal(_host(g), _host(w).transpose(1, 2, 0))


def test_transpose_refuses_axes_that_are_not_an_order_of_the_axes():
    with pytest.raises(ValueError, match=r"axes \(0, 0, 1\) are not an order of the 3 axes of shape \(2, 3, 4\)"):
        xn.grad(lambda z: z.transpose(0, 0, 1).sum())(numpy.ones((2, 3, 4)))


def test_numpy_reductions_and_reshape_take_numpys_signatures(device, rng):
    x = xn.to_device(host_rand(rng, 3, 4), device)
    w = xn.to_device(host_rand(rng, 4, 3), device)

    def objective(z):
        return (numpy.sum(numpy.reshape(z, (4, 3)) * w) + numpy.mean(z, axis=0).sum()
                + numpy.max(z, axis=1, keepdims=True).sum() + numpy.transpose(z).sum(axis=-1).sum())
    g = xn.grad(objective)(x)
    assert relative_error(g, numerical_grad(lambda: objective(x), x)) < 1e-6
    g32 = xn.grad(lambda z: numpy.sum(z, dtype=numpy.float32))(x)
    assert g32.dtype == x.dtype and numpy.all(_host(g32) == 1)


def test_numpy_reduction_arguments_a_traced_value_cannot_honour_are_refused_by_name():
    out = numpy.zeros(())
    with pytest.raises(TypeError, match="sum of a traced value .* not out"):
        xn.grad(lambda z: numpy.sum(z, out=out))(numpy.ones(3))
    with pytest.raises(TypeError, match="not where"):
        xn.grad(lambda z: numpy.sum(z, where=numpy.array([True, False, True])))(numpy.ones(3))
    with pytest.raises(ValueError, match="C order only"):
        xn.grad(lambda z: z.reshape(6, order="F").sum())(numpy.ones((2, 3)))


# -- 10: where with a non-boolean condition ----------------------------------------------------
@pytest.mark.parametrize("condition", [[1, 0, 1], [2.0, 0.0, -1.0], [True, False, True]])
def test_where_reads_a_non_boolean_condition_as_truth_not_arithmetic(condition, device):
    cond = xn.to_device(numpy.array(condition), device)
    a = xn.to_device(numpy.array([1.0, 2.0, 3.0]), device)
    b = xn.to_device(numpy.array([4.0, 5.0, 6.0]), device)
    ga, gb = xn.grad(lambda a_, b_: F.where(cond, a_, b_).sum(), argnums=(0, 1))(a, b)
    numpy.testing.assert_array_equal(_host(ga), [1.0, 0.0, 1.0])
    numpy.testing.assert_array_equal(_host(gb), [0.0, 1.0, 0.0])


# -- 13: arrays changed in place inside f -------------------------------------------------------
@pytest.mark.parametrize("given", ["host", "device"])
def test_changing_the_argument_in_place_inside_f_leaves_its_gradient_right(given, device):
    x = numpy.array([1.0, 2.0, 3.0])
    if given == "device":
        x = xn.to_device(x, device)

    def f(z):
        out = (z * z).sum()
        x[...] = 0  # the caller's array, after f has used it
        return out
    numpy.testing.assert_array_equal(_host(xn.grad(f)(x)), [2.0, 4.0, 6.0])
    assert numpy.all(_host(x) == 0)  # f's write still reached the caller's array


def test_a_traced_value_cannot_be_changed_in_place(device):
    def f(z):
        z[0] = 5.0
        return z.sum()
    with pytest.raises(TypeError, match="cannot be changed in place inside grad.*where"):
        xn.grad(f)(xn.to_device(numpy.ones(3), device))


# -- 20: integer arguments ----------------------------------------------------------------------
@pytest.mark.parametrize("given", ["device", "host", "numpy_scalar", "bool"])
def test_integer_arguments_are_refused_on_every_device(given, device):
    x = {"device": xn.to_device(numpy.array([1, 5, 3]), device), "host": numpy.array([1, 5, 3]),
         "numpy_scalar": numpy.int64(3), "bool": xn.to_device(numpy.array([True, False]), device)}[given]
    with pytest.raises(TypeError, match=r"floating-point values, but argument 0 holds (int64|bool).*astype"):
        xn.grad(lambda z: z.max())(x)


def test_a_python_int_is_a_number_and_is_differentiated_as_a_float(device):
    assert float(xn.to_host(xn.grad(lambda x: x ** 3)(2))) == 12.0


# -- 21: has_aux ----------------------------------------------------------------------------------
def test_has_aux_returns_the_auxiliary_result_alongside(device, rng):
    x = xn.to_device(host_rand(rng, 3), device)

    def f(z):
        y = z * z
        return y.sum(), {"y": y, "n": 3}
    (value, aux), g = xn.value_and_grad(f, has_aux=True)(x)
    g2, aux2 = xn.grad(f, has_aux=True)(x)
    hx = _host(x)
    assert float(xn.to_host(value)) == pytest.approx(float((hx * hx).sum()), rel=1e-15)
    assert type(aux["y"]) is not ad.Tensor and xn.device_of(aux["y"]) == device and aux["n"] == 3
    numpy.testing.assert_array_equal(_host(aux["y"]), hx * hx)
    numpy.testing.assert_array_equal(_host(g), 2 * hx)
    numpy.testing.assert_array_equal(_host(g2), 2 * hx)
    numpy.testing.assert_array_equal(_host(aux2["y"]), hx * hx)


def test_has_aux_inside_another_grad_is_differentiated_once_more():
    # d/dx of d/dy [y^3] at y=x is 6x; aux (y * 2) rides along
    g = xn.grad(lambda x: xn.grad(lambda y: ((y ** 3).sum(), y * 2), has_aux=True)(x)[0].sum())(numpy.array([1.0, 2.0]))
    numpy.testing.assert_array_equal(g, [6.0, 12.0])


def test_a_tuple_without_has_aux_says_how_and_has_aux_without_a_pair_says_what_it_needs():
    with pytest.raises(TypeError, match=r"returned a tuple of 2.*has_aux=True"):
        xn.value_and_grad(lambda x: ((x * x).sum(), 3))(1.0)
    with pytest.raises(TypeError, match=r"has_aux=True needs f to return a pair \(value, aux\).*Tensor"):
        xn.grad(lambda x: (x * x).sum(), has_aux=True)(1.0)


# -- 22: a model inside grad (an input gradient) --------------------------------------------------
def test_a_model_with_hand_written_backward_inside_grad_says_how_to_get_the_input_gradient(device, rng):
    xn.seed(0)
    model = xn.nn.Sequential(xn.nn.Affine(4, 3, dtype="float64"), xn.nn.ReLU(), xn.nn.Affine(3, 2, dtype="float64"))
    x = xn.to_device(host_rand(rng, 5, 4), device)
    y = model(x)  # a plain forward first: the failed traced call must not spoil its backward
    with pytest.raises(TypeError, match=r"Affine 4->3 has a hand-written backward.*input_grad=True.*model.backward"):
        xn.grad(lambda x_: model(x_)[:, 1].sum())(x)
    with pytest.raises(TypeError, match="hand-written backward"):
        xn.grad(lambda x_: model.layers[0](x_).sum())(x)
    model.backward(xn.to_device(numpy.ones(y.shape), device))  # still has its forward's state


class _TracedScale(xn.nn.Layer):
    """A layer with a parameter and no backward: autodiff derives it."""

    def __init__(self, n):
        super().__init__()
        self.add_param("s", numpy.linspace(0.5, 1.5, n))

    def forward(self, x):
        return F.tanh(x) * self.param("s")


def test_the_input_gradient_of_a_model_of_traced_layers_is_right_and_keeps_its_backward_state(device, rng):
    model = xn.nn.Sequential(xn.nn.Lambda(lambda v: v * F.sigmoid(v), name="swish"), _TracedScale(4),
                             xn.nn.Sequential(xn.nn.Lambda(F.tanh)))
    x = xn.to_device(host_rand(rng, 3, 4), device)
    objective = lambda x_: model(x_)[:, 1].sum()
    g = xn.grad(objective)(x)
    assert relative_error(g, numerical_grad(lambda: objective(x), x)) < 1e-6
    numpy.testing.assert_array_equal(_host(g)[:, [0, 2, 3]], 0)  # elementwise: only column 1 counts
    assert numpy.all(_host(g)[:, 1] != 0)

    plain = xn.to_device(host_rand(rng, 2, 4), device)
    dout = xn.to_device(host_rand(rng, 2, 4), device)
    model(plain)
    xn.grad(objective)(x)  # a traced call between forward and backward
    model.backward(dout)
    after = _host(model.grads()["1.s"])
    model(plain)
    model.backward(dout)
    numpy.testing.assert_array_equal(after, _host(model.grads()["1.s"]))


# -- 23: a number argument next to a device array --------------------------------------------------
def test_a_number_argument_meeting_a_device_array_is_named_in_the_error():
    w_sim = xn.to_device(numpy.ones(3), "sim")
    with xn.use_device("cpu"):
        with pytest.raises(xn.ImplicitTransferError, match=r"number you passed as argument 0 \(2\.0\).*use_device"):
            xn.grad(lambda s: (w_sim * s).sum())(2.0)
    with xn.use_device("sim"):
        assert float(xn.to_host(xn.grad(lambda s: (w_sim * s).sum())(2.0))) == 3.0


# -- 24: defaultdict trees ----------------------------------------------------------------------------
def test_a_defaultdict_tree_moves_and_is_differentiated_as_a_defaultdict(device):
    tree = collections.defaultdict(list, {"a": numpy.ones(2), "b": [numpy.zeros(1)]})
    moved = xn.to_device(tree, device)
    assert type(moved) is collections.defaultdict and moved.default_factory is list
    assert xn.device_of(moved["a"]) == device and xn.device_of(moved["b"][0]) == device
    back = xn.to_host(moved)
    assert type(back) is collections.defaultdict and back["missing"] == []
    g = xn.grad(lambda p: (p["a"] * 3.0).sum())(moved)
    assert type(g) is collections.defaultdict
    numpy.testing.assert_array_equal(_host(g["a"]), [3.0, 3.0])


# -- 25: argnums and keyword arguments -----------------------------------------------------------------
def test_argnums_out_of_range_names_argnums_and_the_arguments_given():
    with pytest.raises(IndexError, match=r"argnums=3, but f was called with 2 positional arguments"):
        xn.grad(lambda a, b: a * b, argnums=3)(1.0, 2.0)
    with pytest.raises(TypeError, match="argnums must be an int or a non-empty tuple of ints"):
        xn.grad(lambda a: a, argnums="a")


def test_keyword_arguments_pass_to_f_and_negative_argnums_count_from_the_end():
    assert float(xn.grad(lambda a, b=1.0: a * b)(3.0, b=2.0)) == 2.0
    assert float(xn.grad(lambda a, b: a * b * b, argnums=-1)(3.0, 2.0)) == 12.0


# -- a ** b where the derivative's formula is 0 * inf (a prober's finding, session 5) ---------
@pytest.mark.filterwarnings("ignore:divide by zero", "ignore:invalid value")
def test_power_at_zero_has_pytorchs_zero_derivatives_not_nan(device):
    a = xn.to_device(numpy.array([0.0, 2.0, 0.0]), device)
    b = xn.to_device(numpy.array([2.0, 3.0, 0.0]), device)
    da, db = xn.grad(lambda a, b: (a ** b).sum(), argnums=(0, 1))(a, b)
    # d/da = b a^(b-1): 0, 12, and 0 at b = 0 (a ** 0 is 1 everywhere);
    # d/db = a^b log a: 0 at a = 0 (0 ** b is 0 for b > 0, 1 at b = 0), 8 log 2
    numpy.testing.assert_allclose(_host(da), [0.0, 12.0, 0.0])
    numpy.testing.assert_allclose(_host(db), [0.0, 8 * numpy.log(2.0), 0.0])
    numpy.testing.assert_array_equal(_host(xn.grad(lambda a: (a ** 0).sum())(a)), [0.0, 0.0, 0.0])
    # a negative exponent at a = 0 keeps the formula's infinity (PyTorch's too)
    assert numpy.isinf(_host(xn.grad(lambda a: (a ** -1.0).sum())(a))[0])


def test_a_gradient_comes_back_in_its_arguments_dtype(device):
    """A prober's finding (session 5): a float32 argument that met a float64 constant got a
    float64 gradient (JAX and PyTorch give the argument's dtype)."""
    w = xn.to_device(numpy.ones(3, numpy.float32), device)
    k = xn.to_device(numpy.arange(3.0), device)
    g32, g64 = xn.grad(lambda w, v: (w * k).sum() + (v * w).sum(), argnums=(0, 1))(w, k)
    assert (g32.dtype, g64.dtype) == (numpy.float32, numpy.float64)
    numpy.testing.assert_array_equal(_host(g32), [0.0, 2.0, 4.0])  # k + v, v = k
    numpy.testing.assert_array_equal(_host(g64), [1.0, 1.0, 1.0])
