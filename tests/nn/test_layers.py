"""Every layer's and loss's backward against central differences, float64, on each device."""
import numpy
import pytest

import xpnet as xn
from tests.helpers import host_rand, numerical_grad, relative_error

TOL = 1e-6  # the bar; float64 central differences land near 1e-9


def _check_layer(layer, x_host, rng, device):
    """The book's gradient check, as users run it: xn.testing.check_gradients."""
    errors = xn.testing.check_gradients(layer, x_host, tol=TOL)
    assert set(errors) >= set(layer.params())


LAYERS = {
    "affine": (lambda: xn.nn.Affine(5, 3, dtype="float64"), (4, 5)),
    "affine_4d_input": (lambda: xn.nn.Affine(12, 3, dtype="float64"), (2, 3, 2, 2)),
    "relu": (xn.nn.ReLU, (4, 5)),
    "leaky_relu": (lambda: xn.nn.LeakyReLU(0.2), (4, 5)),
    "sigmoid": (xn.nn.Sigmoid, (4, 5)),
    "tanh": (xn.nn.Tanh, (4, 5)),
    "softmax": (xn.nn.Softmax, (4, 5)),
    "flatten": (xn.nn.Flatten, (2, 3, 2)),
    "batchnorm": (lambda: xn.nn.BatchNorm(5, dtype="float64"), (6, 5)),
    "batchnorm_4d": (lambda: xn.nn.BatchNorm(2, dtype="float64"), (3, 2, 2, 2)),
    "dropout": (lambda: xn.nn.Dropout(0.3, seed=1), (4, 5)),  # its draws are replayed for every evaluation
    "lambda_swish": (lambda: xn.nn.Lambda(lambda x: x * xn.functional.sigmoid(x)), (4, 5)),
    "sequential_with_dropout": (lambda: xn.nn.Sequential(xn.nn.Affine(5, 4, dtype="float64"), xn.nn.Dropout(0.5),
                                                         xn.nn.Affine(4, 3, dtype="float64"), input_grad=True),
                                (6, 5)),  # its draws replayed through Sequential.random_state
    "sequential_with_input_grad": (lambda: xn.nn.Sequential(xn.nn.Affine(5, 4, dtype="float64"), xn.nn.Tanh(),
                                                            xn.nn.BatchNorm(4, dtype="float64"),
                                                            xn.nn.Affine(4, 3, dtype="float64"), input_grad=True),
                                   (6, 5)),
}


@pytest.mark.parametrize("name", LAYERS)
def test_layer_backward_matches_numerical_gradient(name, device, rng):
    make, shape = LAYERS[name]
    _check_layer(make(), host_rand(rng, *shape), rng, device)


def test_dropout_backward_uses_the_forward_mask(device, rng):
    layer = xn.nn.Dropout(0.5, seed=3)
    x = xn.to_device(host_rand(rng, 200, 10), device)
    y = xn.to_host(layer(x))
    kept = y != 0
    assert 0.35 < kept.mean() < 0.65  # 2000 draws of p=0.5: 10 standard deviations of slack
    numpy.testing.assert_allclose(y[kept], 2 * xn.to_host(x)[kept])
    dx = xn.to_host(layer.backward(xn.xp.ones((200, 10))))
    numpy.testing.assert_array_equal(dx != 0, kept)
    layer.eval()
    assert layer(x) is x


PHILOX_KNOWN_ANSWERS = [  # Random123's kat_vectors, philox4x32 10: counter, key, result
    ((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff,) * 4, (0xffffffff,) * 2, (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
]


def test_philox_matches_the_published_known_answers(device):
    counters = numpy.array([c for c, _, _ in PHILOX_KNOWN_ANSWERS], dtype=numpy.uint64).T
    for i, (_, key, expected) in enumerate(PHILOX_KNOWN_ANSWERS):
        out = device.backend.philox4x32(xn.to_device(counters[:, i:i + 1].copy(), device), key)
        assert xn.to_host(out)[:, 0].tolist() == list(expected)


def test_dropout_draws_a_new_mask_each_step_and_keeps_1_minus_p(device):
    layer = xn.nn.Dropout(0.25, seed=11)
    ones = xn.xp.ones((100, 100), dtype="float32")
    first, second = xn.to_host(layer(ones)) != 0, xn.to_host(layer(ones)) != 0
    assert not numpy.array_equal(first, second)
    assert abs(first.mean() - 0.75) < 0.02 and abs(second.mean() - 0.75) < 0.02  # 10000 draws: 4.6 sigma


def test_dropout_mask_is_the_same_on_every_device():
    masks = []
    for dev in ("cpu", "sim"):
        with xn.use_device(dev):
            layer = xn.nn.Dropout(0.3, seed=7)
            masks.append(xn.to_host(layer(xn.xp.ones((4, 6), dtype="float32"))))
    numpy.testing.assert_array_equal(*masks)


def test_batchnorm_eval_uses_running_statistics(device, rng):
    layer = xn.nn.BatchNorm(3, momentum=0.0, dtype="float64")
    x = xn.to_device(host_rand(rng, 50, 3) * 4 + 2, device)
    layer(x)
    layer.eval()
    y = xn.to_host(layer(x))
    numpy.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-6)
    numpy.testing.assert_allclose(y.std(axis=0), 1, atol=1e-3)  # eps=1e-5 in the denominator


@pytest.mark.parametrize("labels", ["indices", "onehot"])
def test_softmax_cross_entropy_backward_matches_numerical_gradient(labels, device, rng):
    z = xn.to_device(host_rand(rng, 4, 5), device)
    t_host = numpy.array([0, 3, 1, 4])
    t = xn.to_device(t_host if labels == "indices" else numpy.eye(5)[t_host], device)
    loss = xn.nn.SoftmaxCrossEntropy()
    objective = lambda: loss(z, t)
    objective()
    assert relative_error(loss.backward(), numerical_grad(objective, z)) < TOL


def test_softmax_cross_entropy_value_matches_the_book(device):
    z = xn.to_device(numpy.array([[0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]]), device)
    p = numpy.array([[0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]])
    expected = -numpy.log(numpy.exp(p[0, 2]) / numpy.exp(p).sum())
    value = float(xn.to_host(xn.nn.SoftmaxCrossEntropy()(z, xn.to_device(numpy.array([2]), device))))
    assert abs(value - expected) < 1e-12


def test_softmax_survives_huge_logits(device):
    z = xn.to_device(numpy.array([[1010.0, 1000.0, 990.0]], dtype=numpy.float32), device)
    p = xn.to_host(xn.nn.Softmax()(z))
    assert numpy.isfinite(p).all() and abs(p.sum() - 1) < 1e-6
    loss = xn.nn.SoftmaxCrossEntropy()(z, xn.to_device(numpy.array([2]), device))
    assert abs(float(xn.to_host(loss)) - 20.0) < 1e-3  # log-sum-exp: 20 + log(1 + e^-10 + e^-20)


def test_mean_squared_error_backward_matches_numerical_gradient(device, rng):
    y, t = (xn.to_device(host_rand(rng, 3, 4), device) for _ in range(2))
    loss = xn.nn.MeanSquaredError()
    objective = lambda: loss(y, t)
    objective()
    assert relative_error(loss.backward(), numerical_grad(objective, y)) < TOL


def test_sequential_backward_matches_numerical_gradient(device, rng):
    xn.seed(0)
    model = xn.nn.Sequential(xn.nn.Affine(6, 5, dtype="float64"), xn.nn.Tanh(),
                             xn.nn.Affine(5, 4, dtype="float64"), xn.nn.ReLU(),
                             xn.nn.Affine(4, 3, dtype="float64"))
    loss = xn.nn.SoftmaxCrossEntropy()
    x = xn.to_device(host_rand(rng, 7, 6), device)
    t = xn.to_device(numpy.array([0, 1, 2, 0, 1, 2, 0]), device)
    objective = lambda: loss(model.forward(x), t)
    for name, p in model.params().items():
        objective()
        model.backward(loss.backward())
        analytic = xn.to_host(model.grads()[name]).copy()
        assert relative_error(analytic, numerical_grad(objective, p)) < TOL, name


def test_sequential_names_parameters_by_layer_index(device):
    model = xn.nn.Sequential(xn.nn.Affine(4, 3), xn.nn.ReLU(), xn.nn.Affine(3, 2))
    assert list(model.params()) == ["0.W", "0.b", "2.W", "2.b"]
    assert list(model.grads()) == list(model.params())
    assert list(xn.nn.Affine(2, 2).params()) == ["W", "b"]


def test_sequential_output_is_not_overwritten_by_the_next_call(device, rng):
    model = xn.nn.Sequential(xn.nn.Affine(4, 3), xn.nn.ReLU(), xn.nn.Affine(3, 2))
    a = model(xn.to_device(host_rand(rng, 5, 4, dtype="float32"), device))
    keep = xn.to_host(a).copy()
    model(xn.to_device(host_rand(rng, 5, 4, dtype="float32"), device))
    numpy.testing.assert_array_equal(xn.to_host(a), keep)


@pytest.mark.parametrize("tail", [xn.nn.Dropout, xn.nn.Flatten])
def test_output_stays_fresh_when_the_last_layer_passes_its_input_through(device, rng, tail):
    model = xn.nn.Sequential(xn.nn.Affine(4, 3), xn.nn.ReLU(), xn.nn.Affine(3, 2), tail()).eval()
    a = model(xn.to_device(host_rand(rng, 5, 4, dtype="float32"), device))
    keep = xn.to_host(a).copy()
    model(xn.to_device(host_rand(rng, 5, 4, dtype="float32"), device))
    numpy.testing.assert_array_equal(xn.to_host(a), keep)


def test_sequential_does_not_modify_its_input(device, rng):
    model = xn.nn.Sequential(xn.nn.ReLU(), xn.nn.Affine(4, 3), xn.nn.ReLU(), xn.nn.Affine(3, 2))
    host = host_rand(rng, 5, 4, dtype="float32")
    x = xn.to_device(host, device)
    model(x)
    model.backward(xn.xp.ones((5, 2), dtype="float32"))
    numpy.testing.assert_array_equal(xn.to_host(x), host)


def test_input_gradient_on_request(device, rng):
    model = xn.nn.Sequential(xn.nn.Affine(4, 3), xn.nn.ReLU(), xn.nn.Affine(3, 2), input_grad=True)
    x = xn.to_device(host_rand(rng, 5, 4, dtype="float32"), device)
    model(x)
    assert model.backward(xn.xp.ones((5, 2), dtype="float32")).shape == (5, 4)
    plain = xn.nn.Sequential(xn.nn.Affine(4, 3), xn.nn.ReLU(), xn.nn.Affine(3, 2))
    plain(x)
    assert plain.backward(xn.xp.ones((5, 2), dtype="float32")) is None


def test_same_seed_same_weights_on_every_device():
    weights = []
    for dev in ("cpu", "sim"):
        with xn.use_device(dev):
            weights.append(xn.to_host(xn.nn.Affine(10, 4, seed=42).params()["W"]))
    numpy.testing.assert_array_equal(*weights)
    assert abs(weights[0].std() - numpy.sqrt(2 / 10)) < 0.15  # He init; 40 draws


def test_float32_stays_float32(device, rng):
    model = xn.nn.Sequential(xn.nn.Affine(4, 8), xn.nn.Sigmoid(), xn.nn.Affine(8, 8), xn.nn.ReLU(),
                             xn.nn.BatchNorm(8), xn.nn.Dropout(0.1), xn.nn.Affine(8, 3))
    loss = xn.nn.SoftmaxCrossEntropy()
    opt = xn.optim.Adam(model, weight_decay=1e-4)
    y = model(xn.to_device(host_rand(rng, 6, 4, dtype="float32"), device))
    value = loss(y, xn.to_device(numpy.array([0, 1, 2, 0, 1, 2]), device))
    model.backward(loss.backward())
    opt.step()
    assert y.dtype == numpy.float32 and value.dtype == numpy.float32
    for arrays in (model.params(), model.grads(), *opt.state.values()):
        assert all(a.dtype == numpy.float32 for a in arrays.values())


def test_shape_error_names_the_layer_and_shapes(device):
    model = xn.nn.Sequential(xn.nn.Affine(784, 100), xn.nn.ReLU(), xn.nn.Affine(100, 50))
    with pytest.raises(xn.ShapeError, match=r"Sequential layer 0 \(Affine 784->100\).*\(32, 80\).*\(N, 784\)"):
        model(xn.xp.zeros((32, 80), dtype="float32"))
    with pytest.raises(xn.ShapeError, match="SoftmaxCrossEntropy"):
        xn.nn.SoftmaxCrossEntropy()(xn.xp.zeros((3, 4)), xn.xp.zeros((3, 5)))
    with pytest.raises(xn.ShapeError, match="3 samples but t has 2"):
        xn.nn.SoftmaxCrossEntropy()(xn.xp.zeros((3, 4)), xn.xp.zeros(2, dtype="int64"))


def test_dtype_error_names_the_layer(device):
    with pytest.raises(xn.DTypeError, match=r"Affine 4->2: got complex128 input.*float32"):
        xn.nn.Affine(4, 2)(xn.xp.zeros((3, 4), dtype="complex128"))


def test_wrong_device_input_gets_the_device_error(device):
    other = "sim:1" if device.kind != "sim" or device.index != 1 else "cpu"
    layer = xn.nn.Affine(4, 2)
    x = xn.to_device(numpy.zeros((3, 4), dtype="float32"), other)
    with pytest.raises(xn.ImplicitTransferError, match=f"lives on {device}.*{other}"):
        layer(x)
    with pytest.raises(xn.ImplicitTransferError):
        xn.nn.SoftmaxCrossEntropy()(xn.xp.zeros((3, 4)), xn.to_device(numpy.zeros(3, dtype="int64"), other))


def test_set_params_moves_host_values_and_checks_everything_first(device):
    model = xn.nn.Sequential(xn.nn.Affine(3, 2), xn.nn.ReLU(), xn.nn.Affine(2, 2))
    before = xn.to_host(model.params())
    with pytest.raises(xn.ShapeError, match="'2.W'"):
        model.set_params({"0.W": numpy.ones((3, 2)), "2.W": numpy.ones((5, 5))})
    numpy.testing.assert_array_equal(xn.to_host(model.params()["0.W"]), before["0.W"])
    with pytest.raises(KeyError, match="9.W"):
        model.set_params({"9.W": numpy.ones(2)})
    model.set_params({"0.W": numpy.ones((3, 2))})
    assert xn.to_host(model.params()["0.W"]).tolist() == [[1, 1]] * 3


def test_model_to_moves_parameters_and_gradients(rng):
    with xn.use_device("cpu"):
        model = xn.nn.Sequential(xn.nn.Affine(3, 2), xn.nn.BatchNorm(2))
    model.to("sim")
    assert model.device == xn.Device("sim")
    for arrays in (model.params(), model.grads(), model.buffers()):
        assert all(xn.device_of(a) == xn.Device("sim") for a in arrays.values())
    y = model(xn.to_device(host_rand(rng, 4, 3, dtype="float32"), "sim"))
    assert xn.device_of(y) == xn.Device("sim")


def test_activation_values(device):
    F = xn.functional
    x = xn.to_device(numpy.array([-2.0, 0.0, 3.0]), device)
    h = lambda a: xn.to_host(a).tolist()
    assert h(F.step(x)) == [0, 0, 1]
    assert h(F.relu(x)) == [0, 0, 3]
    assert h(F.leaky_relu(x, 0.1)) == [-0.2, 0, 3]
    numpy.testing.assert_allclose(h(F.sigmoid(x)), 1 / (1 + numpy.exp([2.0, 0.0, -3.0])), rtol=1e-15)
    numpy.testing.assert_allclose(h(F.tanh(x)), numpy.tanh([-2.0, 0.0, 3.0]), rtol=1e-15)
    assert F.identity(x) is x


def test_book_loss_functions(device):
    F = xn.functional
    # The book's ch. 4 example: t = 2, y has 0.6 on it.
    y = xn.to_device(numpy.array([0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]), device)
    t = xn.to_device(numpy.eye(10)[2], device)
    assert abs(float(xn.to_host(F.cross_entropy_error(y, t))) - 0.510825457099338) < 1e-9
    assert abs(float(xn.to_host(F.sum_squared_error(y, t))) - 0.0975) < 1e-12


def test_sequential_backward_without_a_forward_pass_is_refused(device, rng):
    """After a failed forward (or none), backward would run on the previous call's state."""
    model = xn.nn.Sequential(xn.nn.Affine(3, 2), xn.nn.ReLU(), xn.nn.Affine(2, 2))
    with pytest.raises(RuntimeError, match="needs a forward pass first"):
        model.backward(xn.xp.ones((4, 2)))
    model(xn.to_device(host_rand(rng, 4, 3)))
    with pytest.raises(xn.ShapeError):
        model(xn.to_device(host_rand(rng, 4, 5)))
    with pytest.raises(RuntimeError, match="needs a forward pass first"):
        model.backward(xn.xp.ones((4, 2)))


@pytest.mark.parametrize("make, setting, value", [
    (lambda: xn.nn.LeakyReLU(0.1), "slope", 0.2), (lambda: xn.nn.BatchNorm(3), "eps", 1e-3),
    (lambda: xn.nn.BatchNorm(3), "momentum", 0.8), (lambda: xn.nn.Dropout(0.5, seed=1), "p", 0.25)])
def test_a_setting_set_to_a_numpy_number_is_the_python_number(make, setting, value, device):
    """A prober's finding (session 5): LeakyReLU(slope=numpy.float64) put out float64, and a
    BatchNorm eps or momentum from NumPy computed in float64: other bits than the same value
    as a Python float. A setting is checked whenever it is set, as the constructor checks it."""
    x = xn.to_device(numpy.random.default_rng(0).standard_normal((4, 3)).astype(numpy.float32), device)
    outputs = []
    for given in (value, numpy.float64(value)):
        with xn.use_device(device):
            xn.seed(0)
            layer = make()
        setattr(layer, setting, given)
        assert type(getattr(layer, setting)) is float
        y = layer.forward(x)
        outputs.append(xn.to_host(y))
    assert outputs[1].dtype == numpy.float32
    numpy.testing.assert_array_equal(outputs[1], outputs[0])
    with pytest.raises(ValueError, match=rf"{setting} must be a finite number"):
        setattr(layer, setting, -1.0)



@pytest.mark.parametrize("make, setting, bad", [
    (lambda m: xn.optim.Momentum(m), "momentum", 1.5), (lambda m: xn.optim.Momentum(m), "nesterov", "yes"),
    (lambda m: xn.optim.Adam(m), "beta1", -3.0), (lambda m: xn.optim.Adam(m), "eps", float("nan")),
    (lambda m: xn.optim.RMSProp(m), "decay", 2.0), (lambda m: xn.optim.AdaGrad(m), "eps", numpy.array(0.1)),
    (lambda m: xn.nn.SoftmaxCrossEntropy(), "label_smoothing", 5.0),
    (lambda m: xn.nn.SoftmaxCrossEntropy(), "label_smoothing", numpy.array(0.1))])
def test_an_optimizers_or_losss_setting_is_checked_whenever_it_is_set(make, setting, bad):
    """A prober's finding (session 5): after construction anything was taken (momentum 1.5
    trained to a loss of 68889; a 0-d array was rounded one way by the cpu kernel and another
    by the routine). A NumPy number is kept as the Python number."""
    part = make(xn.nn.Sequential(xn.nn.Affine(2, 2)))
    with pytest.raises((ValueError, TypeError), match=rf"{setting} must be"):
        setattr(part, setting, bad)
    good = {"nesterov": numpy.bool_(True)}.get(setting, numpy.float32(0.5))
    setattr(part, setting, good)
    assert type(getattr(part, setting)) in (float, bool)


def test_a_setting_read_before_it_is_set_is_a_missing_attribute():
    """Not a KeyError (a prober's finding on this session's Setting): hasattr, getattr with a
    default and a subclass's __getattr__ keep working before __init__ sets it."""
    bare = object.__new__(xn.nn.Dropout)
    assert not hasattr(bare, "p") and getattr(bare, "p", None) is None


def test_an_optimizer_of_yours_keeps_a_device_array_attribute(device):
    """A prober's finding: converting 0-d arrays to numbers turned a custom optimizer's 0-d
    cpu array into a float."""
    class Halving(xn.optim.SGD):
        def __init__(self, model, lr):
            super().__init__(model, lr)
            self.scale = model.device.xp.ones((), dtype=numpy.float32)

        def _update(self, group, g):
            group.xp.multiply(self.scale, 0.5, out=self.scale)
            super()._update(group, g * self.scale)
    with xn.use_device(device):
        model = xn.nn.Sequential(xn.nn.Affine(2, 2))
        opt = Halving(model, lr=0.1)
    opt.step()
    assert float(xn.to_host(opt.scale)) == 0.5


def test_an_optimizer_or_loss_of_yours_keeps_numpy_numbers_as_python_ones_and_its_own_names(device):
    """A prober's findings on this session's descriptors: a subclass's own numpy.float64
    setting made cpu and sim differ again, a float64 weight made a loss of yours put out
    float64, and a Setting kept in _momentum hid a subclass's method of that name."""
    class Warm(xn.optim.Momentum):
        def __init__(self, model):
            super().__init__(model, lr=0.1)
            self.mu = numpy.float64(0.7)

        def _momentum(self):  # a helper of its own, named as the setting's old storage was
            return self.mu
    with xn.use_device(device):
        model = xn.nn.Sequential(xn.nn.Affine(2, 2))
    opt = Warm(model)
    assert type(opt.mu) is float and opt._momentum() == 0.7 and opt.momentum == 0.9

    class Weighted(xn.nn.SoftmaxCrossEntropy):
        def __init__(self):
            super().__init__()
            self.w = numpy.float64(0.5)

        def forward(self, y, t):
            return super().forward(y, t) * self.w
    y, t = xn.to_device((numpy.zeros((2, 3), numpy.float32), numpy.array([0, 1])), device)
    loss = Weighted()(y, t)
    assert loss.dtype == numpy.float32
