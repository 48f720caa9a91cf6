"""Issue 16, "wrong results": each case gave a silently wrong answer or an unhelpful
internal error before it was fixed. One test (or one table row) per numbered case."""
import collections

import numpy
import pytest

import xpnet as xn
from tests.helpers import host_rand, numerical_grad, relative_error


# 1. Advanced indexing under autodiff: a repeated index gets every gradient.
@pytest.mark.parametrize("key, expected", [
    (lambda: [0, 0], [2, 0, 0]),
    (lambda: xn.to_device(numpy.array([2, 0, 2, 2])), [1, 0, 3]),  # index arrays live on the device
    (lambda: (xn.to_device(numpy.array([0, 0])),), [2, 0, 0]),
    (lambda: xn.to_device(numpy.array([True, False, True])), [1, 0, 1]),
])
def test_grad_of_repeated_fancy_index_adds_up(device, key, expected):
    key = key()
    g = xn.grad(lambda x: x[key].sum())(numpy.arange(3.0))
    numpy.testing.assert_array_equal(xn.to_host(g), expected)


def test_grad_of_fancy_index_matches_finite_differences(device, rng):
    idx = xn.to_device(numpy.array([[1, 1], [0, 3]]))
    w = rng.standard_normal(4)
    f = lambda x: (x[idx] ** 3).sum()
    g = xn.to_host(xn.grad(f)(w))
    wd = xn.to_device(w.copy(), device)
    numpy.testing.assert_allclose(g, numerical_grad(lambda: f(wd), wd), rtol=1e-6)
    # and the second derivative goes through the scatter too: d/dx sum(3 x[idx]^2) = 6 x * count
    g2 = xn.grad(lambda x: xn.grad(f)(x).sum())(w)
    numpy.testing.assert_allclose(xn.to_host(g2), 6 * w * numpy.array([1, 2, 0, 1]), rtol=1e-12)


# 2. A layer object used twice in one Sequential is refused (its backward would be wrong).
def test_a_layer_used_twice_in_a_sequential_is_refused(device):
    a = xn.nn.Affine(3, 3)
    with pytest.raises(ValueError, match="Affine 3->3 layer object is used twice"):
        xn.nn.Sequential(a, xn.nn.Tanh(), a)
    inner = xn.nn.Sequential(a, xn.nn.Tanh())
    with pytest.raises(ValueError, match="used twice"):
        xn.nn.Sequential(inner, a)


# 3. BatchNorm's backward after an eval-mode forward: dout * gamma / sqrt(running_var + eps).
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 2, 2)])
def test_batchnorm_backward_in_eval_mode(device, rng, shape):
    bn = xn.nn.BatchNorm(3, dtype="float64")
    gamma, var = rng.uniform(0.5, 2, 3), rng.uniform(0.5, 2, 3)
    bn.set_params({"gamma": gamma, "running_var": var, "running_mean": rng.standard_normal(3)})
    bn.eval()
    x, dout = host_rand(rng, *shape), host_rand(rng, *shape)
    bn(xn.to_device(x))
    dx = xn.to_host(bn.backward(xn.to_device(dout)))
    scale = (gamma / numpy.sqrt(var + bn.eps)).reshape((1, 3) + (1,) * (len(shape) - 2))
    numpy.testing.assert_allclose(dx, dout * scale, rtol=1e-12)
    xd = xn.to_device(x.copy())
    numerical = numerical_grad(lambda: (bn(xd) * xn.to_device(dout)).sum(), xd)
    assert relative_error(dx, numerical) < 1e-7


# 4. Scalars and 0-d arrays work in every function on every device.
F = xn.functional
SCALAR_CASES = {
    "step": (F.step, lambda v: float(v > 0)),
    "sigmoid": (F.sigmoid, lambda v: 1 / (1 + numpy.exp(-v))),
    "tanh": (F.tanh, numpy.tanh),
    "relu": (F.relu, lambda v: max(v, 0.0)),
    "leaky_relu": (F.leaky_relu, lambda v: v if v > 0 else 0.01 * v),
    "exp": (F.exp, numpy.exp),
    "log": (F.log, numpy.log),
    "sqrt": (F.sqrt, numpy.sqrt),
}


@pytest.mark.parametrize("name", SCALAR_CASES)
@pytest.mark.parametrize("value", [0.6, numpy.float64(0.6), numpy.float32(0.6), 2])
def test_functions_take_python_and_numpy_scalars(device, name, value):
    fn, reference = SCALAR_CASES[name]
    y = fn(value)
    assert numpy.ndim(xn.to_host(y)) == 0
    assert float(xn.to_host(y)) == pytest.approx(reference(float(value)), rel=1e-6)


@pytest.mark.parametrize("name", [n for n in SCALAR_CASES if n != "step"])
def test_grad_of_functions_at_a_scalar(device, name):
    fn, reference = SCALAR_CASES[name]
    h = 1e-6
    expected = (reference(0.6 + h) - reference(0.6 - h)) / (2 * h)
    assert float(xn.to_host(xn.grad(fn)(0.6))) == pytest.approx(expected, rel=1e-6)


def test_sim_refuses_out_where_numpy_returns_a_scalar():
    """The cpu failure behind case 4, reproduced on sim: NumPy hands back a scalar for a 0-d
    input, which cannot be written into; sim must fail where cpu would."""
    with xn.use_device("sim"):
        half = xn.xp.multiply(xn.to_device(numpy.asarray(1.0)), 0.5)
        with pytest.raises(TypeError, match="scalar"):
            xn.xp.tanh(half, out=half)
        fixed = xn.xp.asarray(half)
        xn.xp.tanh(fixed, out=fixed)  # numpy.asarray makes it an array on cpu too


# 5 and 6. Pooling: rectangular windows stride by their own shape; max pooling pads with -inf.
def test_rectangular_pooling_strides_by_the_window(device):
    x = xn.to_device(numpy.arange(54.0).reshape(1, 1, 6, 9))
    assert xn.nn.MaxPool2D((2, 3))(x).shape == (1, 1, 3, 3)
    assert xn.nn.AvgPool2D((2, 3), stride=(2, 1), pad=(0, 1))(x).shape == (1, 1, 3, 9)
    out = xn.to_host(xn.nn.MaxPool2D((2, 3))(x))[0, 0]
    numpy.testing.assert_array_equal(out[0], [11, 14, 17])


def test_max_pooling_pads_with_minus_infinity(device, rng):
    x = -1 - numpy.abs(host_rand(rng, 1, 2, 4, 4))  # every value negative
    layer = xn.nn.MaxPool2D(2, stride=2, pad=1)
    y = xn.to_host(layer(xn.to_device(x)))
    assert y.shape == (1, 2, 3, 3) and (y < 0).all()
    assert y[0, 0, 0, 0] == x[0, 0, 0, 0]  # the corner window holds one real input
    dx = xn.to_host(layer.backward(xn.to_device(numpy.ones_like(y))))
    assert dx.sum() == y.size  # every window routes its gradient to a real input


@pytest.mark.parametrize("make, match", [
    (lambda: xn.nn.MaxPool2D(0), "size must be an integer >= 1"),
    (lambda: xn.nn.MaxPool2D(2, stride=0), "stride must be an integer >= 1"),
    (lambda: xn.nn.AvgPool2D(2, pad=-1), "pad must be an integer >= 0"),
    (lambda: xn.nn.MaxPool2D(2.7), "size must be an integer"),
    (lambda: xn.nn.MaxPool2D((2, 2, 2)), "pair"),
    (lambda: xn.nn.Conv2D(1, 2, 2.7), "kernel_size must be an integer"),
    (lambda: xn.nn.Conv2D(1, 2, 0), "kernel_size must be an integer >= 1"),
    (lambda: xn.nn.Conv2D(1, 2, 3, stride=0), "stride must be an integer >= 1"),
    (lambda: xn.nn.Conv2D(1, 2, 3, pad=-1), "pad must be an integer >= 0"),
    (lambda: xn.nn.Conv2D(0, 2, 3), "in_channels"),
    (lambda: xn.nn.Affine(0, 3), r"Affine: in_features must be an integer >= 1, got 0"),
    (lambda: xn.nn.Affine(3, 2.0), "out_features must be an integer"),
    (lambda: xn.nn.BatchNorm(3, eps=0), r"eps must be a finite number in \(0, inf\), got 0.0"),
    (lambda: xn.nn.BatchNorm(3, momentum=1.5), r"momentum must be a finite number in \[0, 1\]"),
    (lambda: xn.nn.Dropout(1.0), r"p must be a finite number in \[0, 1\)"),
    (lambda: xn.nn.LeakyReLU(-1), "slope"),
])
def test_layer_hyperparameters_are_validated_when_built(device, make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


# 7. An optimizer built for another model is refused by fit, save and load.
def test_an_optimizer_for_another_model_is_refused(device, tmp_path):
    model, other = xn.nn.Sequential(xn.nn.Affine(4, 2)), xn.nn.Sequential(xn.nn.Affine(4, 3))
    opt = xn.optim.SGD(other, lr=0.1)
    data = (numpy.zeros((8, 4), numpy.float32), numpy.zeros(8, numpy.int64))
    with pytest.raises(ValueError, match=r"fit: the optimizer SGD was built for another model.*'0.W'"):
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), opt, data)
    with pytest.raises(ValueError, match="save: the optimizer SGD was built for another model"):
        xn.save(model, tmp_path / "m.npz", optimizer=opt)
    assert not (tmp_path / "m.npz").exists()
    xn.save(model, tmp_path / "m.npz")
    with pytest.raises(ValueError, match="load: the optimizer"):
        xn.load(model, tmp_path / "m.npz", optimizer=opt)


# 8. Labels out of range are named with their position, before any training.
def _classifier():
    xn.seed(0)
    return xn.nn.Sequential(xn.nn.Affine(4, 3))


@pytest.mark.parametrize("bad, match", [(-1, "label -1 at position 5"), (3, "label 3 at position 5.*3 outputs")])
def test_labels_out_of_range_are_named(device, bad, match):
    model = _classifier()
    x, t = numpy.ones((8, 4), numpy.float32), numpy.zeros(8, numpy.int64)
    t[5] = bad
    before = xn.to_host(model.params())
    with pytest.raises(ValueError, match=match):
        xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1), (x, t), batch_size=4)
    for name, value in xn.to_host(model.params()).items():
        numpy.testing.assert_array_equal(value, before[name])
    with pytest.raises(ValueError, match=match):
        xn.evaluate(model, (x, t))
    with pytest.raises(ValueError, match=match):  # labels already on the device are checked too
        xn.evaluate(model, xn.to_device((x, t)))


# 9. BatchNorm refuses a training batch of one; fit can drop a short last batch.
def test_batchnorm_refuses_a_training_batch_of_one(device):
    bn = xn.nn.BatchNorm(3)
    with pytest.raises(xn.ShapeError, match="batch of one"):
        bn(xn.xp.ones((1, 3), dtype="float32"))
    bn.eval()
    assert bn(xn.xp.ones((1, 3), dtype="float32")).shape == (1, 3)
    bn.train()
    assert bn(xn.xp.ones((1, 3, 2, 2), dtype="float32")).shape == (1, 3, 2, 2)  # 4 values a channel


@pytest.mark.parametrize("shape", [(0, 3), (0, 3, 2, 2), (2, 3, 0, 2)])
def test_batchnorm_refuses_an_empty_training_batch_and_keeps_its_statistics(device, shape):
    """An empty training batch made the running mean and variance NaN, silently on the 4-D
    kernels (the routine only warned "Mean of empty slice"); now it is refused, the
    statistics untouched, and an eval-mode pass over it is empty."""
    bn = xn.nn.BatchNorm(3)
    before = xn.to_host(bn.buffers())
    with pytest.raises(xn.ShapeError, match=r"empty training batch.*running statistics would become NaN"):
        bn(xn.xp.ones(shape, dtype="float32"))
    for name, value in xn.to_host(bn.buffers()).items():
        numpy.testing.assert_array_equal(value, before[name])
    bn.eval()
    assert bn(xn.xp.ones(shape, dtype="float32")).shape == shape


def test_fit_drop_last_leaves_out_the_short_batch(device):
    xn.seed(0)
    model = xn.nn.Sequential(xn.nn.Affine(4, 3), xn.nn.BatchNorm(3))
    x, t = numpy.random.default_rng(0).standard_normal((9, 4)).astype("float32"), numpy.zeros(9, numpy.int64)
    loss, opt = xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(model, lr=0.1)
    with pytest.raises(xn.ShapeError, match="drop_last=True"):
        xn.fit(model, loss, opt, (x, t), batch_size=4)
    history = xn.fit(model, loss, opt, (x, t), batch_size=4, drop_last=True, epochs=2)
    assert len(history.step_loss) == 4
    with pytest.raises(xn.ShapeError, match="leaves no batch"):
        xn.fit(model, loss, opt, (x, t), batch_size=10, drop_last=True)


# 10 and 20. Batch sizes, epochs and empty inputs.
@pytest.mark.parametrize("call, error, match", [
    (lambda m, d: xn.evaluate(m, d, batch_size=-1), ValueError, "evaluate: batch_size must be an integer >= 1, got -1"),
    (lambda m, d: xn.evaluate(m, d, batch_size=0), ValueError, "batch_size"),
    (lambda m, d: xn.predict(m, d[0], batch_size=0), ValueError, "predict: batch_size"),
    (lambda m, d: xn.predict(m, d[0][:0]), xn.ShapeError, "no samples"),
    (lambda m, d: xn.fit(m, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(m, lr=0.1), d, batch_size=2.5),
     TypeError, "fit: batch_size must be an integer >= 1, got float 2.5"),
    (lambda m, d: xn.fit(m, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(m, lr=0.1), d, batch_size="5"),
     TypeError, "batch_size"),
    (lambda m, d: xn.fit(m, xn.nn.SoftmaxCrossEntropy(), xn.optim.SGD(m, lr=0.1), d, epochs=None),
     TypeError, "fit: epochs must be an integer >= 1, got NoneType None"),
])
def test_bad_batch_sizes_and_epochs_are_named(device, call, error, match):
    data = (numpy.ones((6, 4), numpy.float32), numpy.zeros(6, numpy.int64))
    with pytest.raises(error, match=match):
        call(_classifier(), data)


# 11. Optimizer hyperparameters are validated when the optimizer is built.
@pytest.mark.parametrize("make, match", [
    (lambda m: xn.optim.Momentum(m, momentum=-5), r"Momentum: momentum must be a finite number in \[0, 1\), got -5.0"),
    (lambda m: xn.optim.Adam(m, beta1=1), r"Adam: beta1 must be a finite number in \[0, 1\)"),
    (lambda m: xn.optim.Adam(m, beta2=1.5), "beta2"),
    (lambda m: xn.optim.Adam(m, eps=-1e-8), r"eps must be a finite number in \[0, inf\)"),  # eps=0 is allowed (case 29)
    (lambda m: xn.optim.RMSProp(m, decay=1), "decay"),
    (lambda m: xn.optim.AdaGrad(m, eps=-1), "eps"),
    (lambda m: xn.optim.SGD(m, lr=float("nan")), "lr must be a finite number"),
    (lambda m: xn.optim.SGD(m, lr=0), "lr"),
    (lambda m: xn.optim.SGD(m, lr=0.1, weight_decay=float("inf")), "weight_decay must be a finite number"),
    (lambda m: xn.optim.SGD(m, lr=0.1, weight_decay=float("nan")), "weight_decay"),
    (lambda m: xn.optim.SGD(m, lr="0.1"), "lr must be a number, got str"),
])
def test_optimizer_hyperparameters_are_validated_when_built(device, make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make(_classifier())


# 12. Sequential's structure is fixed: changing it in place is refused with what to do.
def test_sequential_layers_cannot_change_under_its_optimizer(device):
    model = xn.nn.Sequential(xn.nn.Affine(4, 3), xn.nn.ReLU(), xn.nn.Affine(3, 2))
    for change in (lambda l: l.pop(), lambda l: l.append(xn.nn.ReLU()), lambda l: l.insert(1, xn.nn.ReLU()),
                   lambda l: l.__setitem__(0, xn.nn.ReLU()), lambda l: l.__delitem__(0)):
        with pytest.raises(TypeError, match="Build a new one instead"):
            change(model.layers)
    assert len(model) == 3
    wider = xn.nn.Sequential(*model.layers[:2], xn.nn.Dropout(0.5), *model.layers[2:])
    assert [type(l).__name__ for l in wider.layers] == ["Affine", "ReLU", "Dropout", "Affine"]


# 13. grad over a namedtuple of weights keeps the namedtuple.
def test_grad_over_a_namedtuple(device):
    Weights = collections.namedtuple("Weights", "a b")
    g = xn.grad(lambda w: (w.a * w.b).sum())(Weights(numpy.array([1.0, 2.0]), numpy.array([3.0, 4.0])))
    assert type(g) is Weights
    numpy.testing.assert_array_equal(xn.to_host(g.a), [3, 4])
    numpy.testing.assert_array_equal(xn.to_host(g.b), [1, 2])


# 14. sim follows CuPy where NumPy is more lenient; each rule is one row, checked on every
# accelerator (sim always, cuda where present).
def _accelerators():
    yield pytest.param("sim", id="sim")
    why = xn.cuda_unavailable_reason()
    yield pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu,
                                                 pytest.mark.skipif(why is not None, reason=f"cuda: {why}")])


CUPY_RULES = {
    "a list as an operand": (lambda a: a + [1, 2, 3], TypeError),
    "a list in a ufunc": (lambda a: xn.get_array_module(a).multiply(a, [1, 2, 3]), TypeError),
    "a tuple as an operand": (lambda a: a * (1, 2, 3), TypeError),
    "a NumPy array as an operand": (lambda a: a + numpy.ones(3), TypeError),
    "numpy.asarray of it": (lambda a: numpy.asarray(a), TypeError),
    "a string array": (lambda a: xn.asarray("abc", device=xn.device_of(a)), ValueError),
    "an object array": (lambda a: xn.to_device(numpy.array([object()]), xn.device_of(a)), ValueError),
    "a NumPy-only method": (lambda a: a.setflags(write=False), AttributeError),
    "the host buffer": (lambda a: a.__array_interface__, AttributeError),
    "ctypes": (lambda a: a.ctypes, AttributeError),
}


@pytest.mark.parametrize("rule", CUPY_RULES)
@pytest.mark.parametrize("accelerator", list(_accelerators()))
def test_device_arrays_follow_cupy_rules(accelerator, rule):
    op, error = CUPY_RULES[rule]
    a = xn.to_device(numpy.ones(3), accelerator)
    with pytest.raises(error):
        op(a)


def test_host_reading_methods_count_a_copy():
    """sim counts the copies CuPy's own host-reading methods make, so a test can catch one;
    on cuda transfer_stats sees xpnet's copies only (as its docstring says)."""
    a = xn.to_device(numpy.arange(3.0), "sim")
    for read in (lambda: a.tobytes(), lambda: a.tolist(), lambda: a.item(1)):
        before = xn.transfer_stats()
        read()
        assert (xn.transfer_stats() - before).d2h_count == 1
