"""The buffer plan and nested Sequentials: no caller's array overwritten, no kept array
overwritten before backward reads it, no returned array changed by a later call, and
nested blocks trained and saved like any layer (issues 25 and 31)."""
import numpy
import pytest

import xpnet as xn
from xpnet.nn import (
    Affine,
    AvgPool2D,
    BatchNorm,
    Conv2D,
    Dropout,
    Flatten,
    Lambda,
    LeakyReLU,
    MaxPool2D,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
)

F = xn.functional


def _host(a):
    return xn.to_host(a).copy()


def test_an_activation_after_a_pass_through_layer_leaves_the_callers_input_alone(device):
    x = xn.to_device(numpy.array([[[[-1., 2.], [3., -4.]]]], numpy.float32))
    before = _host(x)
    for passing in (Flatten(), Dropout(0.5).eval(), Lambda(lambda z: z.reshape(z.shape[0], -1))):
        for act in (ReLU(), Sigmoid(), Tanh(), LeakyReLU(0.1), Softmax()):
            Sequential(passing if not isinstance(passing, Dropout) else Flatten(), act, Affine(4, 2))(x)
            numpy.testing.assert_array_equal(_host(x), before)


def test_validation_data_is_not_drifted_by_fit(device):
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((40, 1, 2, 2)).astype(numpy.float32)
    t = rng.integers(0, 2, 40)
    xv, tv = x[:20], t[:20]  # a slice of the training array, as the report had it
    before = x.copy()
    model = Sequential(Flatten(), ReLU(), Affine(4, 2))
    xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=1e-30), (x, t), epochs=2,
           batch_size=8, validation=(xv, tv))
    numpy.testing.assert_array_equal(x, before)


def test_a_view_returning_lambda_does_not_hand_out_a_reused_buffer(device):
    rng = numpy.random.default_rng(1)
    model = Sequential(Affine(4, 6), Lambda(lambda z: z[:, :3]))
    x1, x2 = (xn.to_device(rng.standard_normal((2, 4)).astype(numpy.float32)) for _ in range(2))
    y1 = model(x1)
    kept = _host(y1)
    model(x2)
    numpy.testing.assert_array_equal(_host(y1), kept)
    x = numpy.concatenate([xn.to_host(x1), xn.to_host(x2)])
    whole = _host(model(xn.to_device(x)))
    numpy.testing.assert_array_equal(xn.to_host(xn.predict(model, x, batch_size=2)), whole)


class BookSigmoid(xn.nn.Layer):
    """The book's Sigmoid: keeps its output for backward."""

    def forward(self, x):
        self.out = 1 / (1 + self.backend.xp.exp(-x))
        return self.out

    def backward(self, dout):
        return dout * (1.0 - self.out) * self.out


def _chains():
    f64 = dict(dtype="float64")
    yield "tanh-sigmoid", lambda: Sequential(Affine(4, 6, **f64), Tanh(), Sigmoid(), Affine(6, 3, **f64)), (5, 4)
    yield "relu-sigmoid", lambda: Sequential(Affine(4, 6, **f64), ReLU(), Sigmoid(), Affine(6, 3, **f64)), (5, 4)
    yield "sigmoid-tanh", lambda: Sequential(Affine(4, 6, **f64), Sigmoid(), Tanh(), Affine(6, 3, **f64)), (5, 4)
    yield "tanh-leaky", lambda: Sequential(Affine(4, 6, **f64), Tanh(), LeakyReLU(0.1), Affine(6, 3, **f64)), (5, 4)
    yield "pool-tanh", lambda: Sequential(Conv2D(1, 2, 3, pad=1, **f64), MaxPool2D(3, stride=2), Tanh(),
                                          Affine(18, 3, **f64)), (2, 1, 7, 7)
    yield "pool-flatten-tanh", lambda: Sequential(Conv2D(1, 2, 3, pad=1, **f64), MaxPool2D(3, stride=2), Flatten(),
                                                  Tanh(), Affine(18, 3, **f64)), (2, 1, 7, 7)
    yield "book-sigmoid-tanh", lambda: Sequential(Affine(4, 6, **f64), BookSigmoid(), Tanh(),
                                                  Affine(6, 3, **f64)), (5, 4)
    yield "lambda-tanh-sigmoid", lambda: Sequential(Affine(4, 6, **f64), Lambda(F.tanh), Sigmoid(),
                                                    Affine(6, 3, **f64)), (5, 4)


@pytest.mark.parametrize("name,build,shape", list(_chains()), ids=[c[0] for c in _chains()])
def test_a_layer_that_keeps_its_output_gets_right_gradients_in_any_chain(device, name, build, shape):
    x = numpy.random.default_rng(2).standard_normal(shape)
    errors = xn.testing.check_gradients(build(), x)
    assert max(errors.values()) < 1e-6


def test_a_layer_shared_by_two_sequentials_follows_the_one_that_runs_it(device):
    rng = numpy.random.default_rng(3)
    features = Sequential(Affine(4, 8), ReLU(), Affine(8, 8))
    Sequential(*features.layers, ReLU(), Affine(8, 3))  # built after: its plan must not leak into features
    x1, x2 = (xn.to_device(rng.standard_normal((3, 4)).astype(numpy.float32)) for _ in range(2))
    f1 = features(x1)
    kept = _host(f1)
    features(x2)
    numpy.testing.assert_array_equal(_host(f1), kept)
    x = rng.standard_normal((6, 4)).astype(numpy.float32)
    numpy.testing.assert_array_equal(xn.to_host(xn.predict(features, x, batch_size=2)),
                                     _host(features(xn.to_device(x))))


def test_a_layer_used_alone_after_a_sequential_returns_fresh_arrays(device):
    relu = ReLU()
    model = Sequential(Affine(3, 3), relu, Affine(3, 2))
    x = xn.to_device(numpy.ones((2, 3), numpy.float32))
    model(x)
    a = relu(x)
    kept = _host(a)
    relu(x * -1)
    numpy.testing.assert_array_equal(_host(a), kept)


def test_the_input_gradient_a_sequential_returns_is_not_overwritten_later(device):
    model = Sequential(Flatten(), Affine(4, 3), ReLU(), Affine(3, 2), input_grad=True)
    rng = numpy.random.default_rng(4)
    x = xn.to_device(rng.standard_normal((2, 1, 2, 2)).astype(numpy.float32))
    model(x)
    dx1 = model.backward(xn.to_device(numpy.ones((2, 2), numpy.float32)))
    kept = _host(dx1)
    model(x)
    model.backward(xn.to_device(numpy.full((2, 2), -3.0, numpy.float32)))
    numpy.testing.assert_array_equal(_host(dx1), kept)


def _nested(dtype="float32"):
    xn.seed(5)
    return Sequential(Sequential(Affine(4, 8, dtype=dtype), ReLU()), Affine(8, 3, dtype=dtype))


def test_nested_sequentials_name_train_and_check_every_weight(device):
    model = _nested()
    assert sorted(model.params()) == ["0.0.W", "0.0.b", "1.W", "1.b"]
    assert sorted(model.grads()) == sorted(model.params())
    x = numpy.random.default_rng(6).standard_normal((5, 4)).astype(numpy.float32)
    t = numpy.array([0, 1, 2, 0, 1])
    inner_before = _host(model.params()["0.0.W"])
    xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.5), (x, t), epochs=2, batch_size=5)
    assert not numpy.array_equal(_host(model.params()["0.0.W"]), inner_before)
    errors = xn.testing.check_gradients(_nested("float64"), x.astype(numpy.float64))
    assert set(errors) >= {"0.0.W", "0.0.b", "1.W", "1.b"} and max(errors.values()) < 1e-6


def test_nested_sequentials_save_and_load_every_weight(device, tmp_path):
    model = _nested()
    path = xn.save(model, tmp_path / "m.npz")
    other = Sequential(Sequential(Affine(4, 8), ReLU()), Affine(8, 3))
    other.set_params({"0.0.W": numpy.zeros((4, 8), numpy.float32)})
    xn.load(other, path)
    for name, value in model.params().items():
        numpy.testing.assert_array_equal(_host(other.params()[name]), _host(value))
    with pytest.raises(KeyError, match="0.0.W"):
        other.set_params({"0.W": numpy.zeros((4, 8), numpy.float32)})


def test_nested_sequential_with_batchnorm_saves_its_buffers(device, tmp_path):
    model = Sequential(Sequential(Affine(4, 3), BatchNorm(3)), Affine(3, 2))
    assert sorted(model.buffers()) == ["0.1.running_mean", "0.1.running_var"]


class Forgetful(xn.nn.Layer):
    def forward(self, x):
        self.x = x
        return x * 2

    def backward(self, dout):
        dout * 2  # forgot the return


def test_a_backward_that_returns_none_is_named_when_dx_is_needed(device):
    model = Sequential(Affine(3, 3), Forgetful(), Affine(3, 2))
    x = xn.to_device(numpy.ones((2, 3), numpy.float32))
    model(x)
    with pytest.raises(RuntimeError, match=r"layer 1 \(Forgetful\): backward returned None"):
        model.backward(xn.to_device(numpy.ones((2, 2), numpy.float32)))
    first = Sequential(Forgetful(), Affine(3, 2))  # nobody needs dx of layer 0
    first(x)
    assert first.backward(xn.to_device(numpy.ones((2, 2), numpy.float32))) is None
    first_asked = Sequential(Forgetful(), Affine(3, 2), input_grad=True)
    first_asked(x)
    with pytest.raises(RuntimeError, match="caller asked"):
        first_asked.backward(xn.to_device(numpy.ones((2, 2), numpy.float32)))


def test_an_integer_parameter_is_refused():
    class Scale(xn.nn.Layer):
        def __init__(self):
            super().__init__()
            self.add_param("s", [1, 1, 1])

    with pytest.raises(xn.DTypeError, match=r"add_param\('s'\).*int64.*floating point"):
        Scale()


def test_a_layer_that_forgets_super_init_is_told_what_to_add():
    class Scale(xn.nn.Layer):
        def __init__(self):
            self.add_param("s", numpy.ones(3, numpy.float32))

    class Quiet(xn.nn.Layer):
        def __init__(self, k):
            self.k = k

    for cls, args in ((Scale, ()), (Quiet, (2,))):
        with pytest.raises(TypeError, match=rf"{cls.__name__}.__init__ did not call super\(\).__init__\(\)"):
            cls(*args)


@pytest.mark.parametrize("build", [
    lambda: Affine(2, 3), lambda: Conv2D(1, 2, 2), lambda: BatchNorm(3), lambda: ReLU(), lambda: Sigmoid(),
    lambda: Tanh(), lambda: LeakyReLU(), lambda: Softmax(), lambda: MaxPool2D(2), lambda: AvgPool2D(2),
    lambda: Dropout(0.5), lambda: Flatten(), lambda: Sequential(Affine(2, 3), ReLU(), Affine(3, 2)),
], ids=["affine", "conv", "batchnorm", "relu", "sigmoid", "tanh", "leaky", "softmax", "maxpool", "avgpool",
        "dropout", "flatten", "sequential"])
def test_float64_upstream_gradients_are_cast_to_the_layers_dtype(device, build):
    layer = build()
    shape = {"Conv2D": (2, 1, 4, 4), "MaxPool2D": (2, 1, 4, 4), "AvgPool2D": (2, 1, 4, 4),
             "BatchNorm": (4, 3)}.get(type(layer).__name__, (4, 2))
    x = numpy.random.default_rng(7).standard_normal(shape)
    # a float32 model takes float64 data; a layer without parameters keeps its input's dtype
    y = layer(xn.to_device(x if layer.params() else x.astype(numpy.float32)))
    assert y.dtype == numpy.float32
    dx = layer.backward(xn.to_device(numpy.ones(y.shape)))  # float64 upstream gradient
    assert dx is None or dx.dtype == numpy.float32
    for g in layer.grads().values():
        assert g.dtype == numpy.float32


def test_the_books_printed_affine_example_in_float64(device):
    # ch. 5: x = [[1, 2]], W = [[4, 5, 6], [7, 8, 9]], dout = [[1, 2, 3]], all float64
    layer = Affine(2, 3, dtype="float64")
    layer.set_params({"W": numpy.array([[4., 5, 6], [7, 8, 9]]), "b": numpy.zeros(3)})
    y = layer(xn.to_device(numpy.array([[1., 2]])))
    numpy.testing.assert_array_equal(xn.to_host(y), [[18., 21, 24]])
    dx = layer.backward(xn.to_device(numpy.array([[1., 2, 3]])))
    numpy.testing.assert_array_equal(xn.to_host(dx), [[32., 50]])
    f32 = Affine(2, 3)
    f32(xn.to_device(numpy.array([[1., 2]])))
    assert f32.backward(xn.to_device(numpy.array([[1., 2, 3]]))).dtype == numpy.float32


@pytest.mark.parametrize("pool", [MaxPool2D, AvgPool2D])
def test_rectangular_windows_with_the_default_stride(device, pool):
    x = numpy.random.default_rng(8).standard_normal((1, 2, 6, 9)).astype(numpy.float32)
    layer = pool((2, 3))
    y = xn.to_host(layer(xn.to_device(x)))
    windows = x.reshape(1, 2, 3, 2, 3, 3)
    expected = windows.max(axis=(3, 5)) if pool is MaxPool2D else windows.mean(axis=(3, 5))
    numpy.testing.assert_allclose(y, expected, rtol=1e-6)
    assert layer.backward(xn.to_device(numpy.ones_like(y))).shape == x.shape
    model = Sequential(Conv2D(2, 2, 1), pool((2, 3)), Flatten(), Affine(18, 2))
    out = model(xn.to_device(x))
    model.backward(out * 0 + 1)


def test_integer_and_bool_inputs_to_parameter_free_layers_become_float32(device):
    x = xn.to_device(numpy.arange(-8, 8).reshape(1, 1, 4, 4))
    for layer in (ReLU(), Sigmoid(), Tanh(), LeakyReLU(), MaxPool2D(2), AvgPool2D(2), Dropout(0.5)):
        y = layer(x)
        assert y.dtype == numpy.float32, type(layer).__name__
    assert AvgPool2D(2)(x > 0).dtype == numpy.float32


def test_the_gradient_a_loss_returns_is_not_overwritten_by_its_next_call(device):
    loss = xn.nn.SoftmaxCrossEntropy()
    rng = numpy.random.default_rng(9)
    y1, y2 = (xn.to_device(rng.standard_normal((3, 4)).astype(numpy.float32)) for _ in range(2))
    t = xn.to_device(numpy.array([0, 1, 2]))
    loss(y1, t)
    d1 = loss.backward()
    kept = _host(d1)
    loss(y2, t)
    loss.backward()
    numpy.testing.assert_array_equal(_host(d1), kept)
