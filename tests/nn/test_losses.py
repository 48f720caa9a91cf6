"""Losses and the functional API (issues 25 and 31): each test failed before its fix,
except the few whose docstring calls them a guard (what the fix must not change).

Reference values come from the formulas themselves in float64 NumPy (written out here,
not calling xpnet's code) or from central differences; PyTorch agrees with each
(torch.sigmoid(tensor(-20.)) = 2.0612e-09, F.leaky_relu(tensor([-2., 2.]), 2.) = [-4, 2]).
"""
import numpy
import pytest

import xpnet as xn
from tests.helpers import host_rand, numerical_grad, relative_error

F = xn.functional
ad = xn.autodiff
TOL = 1e-6  # central differences in float64: O(h^2) + eps/h, about 1e-9


def _softmax(z):
    e = numpy.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# Rows that do not sum to 1: multi-hot, a masked (zero) row, a soft row, a one-hot row.
ROWS = numpy.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.2, 0.3, 0.0, 0.1], [0.0, 0.0, 1.0, 0.0]])


def _expected_gradient(z, t):
    """d/dz of mean_i sum_j t_ij (lse_i - z_ij): (softmax(z) * sum_j t_ij - t) / N."""
    return (_softmax(z) * t.sum(axis=1, keepdims=True) - t) / len(z)


# -- issue 25, case 5: the gradient for (N, C) targets whose rows do not sum to 1 ------------
def test_softmax_cross_entropy_backward_weights_each_row_by_its_sum(device):
    loss = xn.nn.SoftmaxCrossEntropy()
    loss(xn.to_device(numpy.zeros((2, 3))), xn.to_device(numpy.array([[1.0, 1, 0], [0, 0, 0]])))
    expected = [[-1 / 6, -1 / 6, 1 / 3], [0, 0, 0]]  # the example, from the formula above
    numpy.testing.assert_allclose(xn.to_host(loss.backward()), expected, rtol=1e-15, atol=1e-17)


def test_softmax_cross_entropy_gradient_for_multi_hot_and_masked_rows_matches_finite_differences(device, rng):
    z_host = host_rand(rng, 4, 4)
    z, t = xn.to_device(z_host), xn.to_device(ROWS)
    loss = xn.nn.SoftmaxCrossEntropy()
    objective = lambda: loss(z, t)
    objective()
    layer_grad = loss.backward()
    assert relative_error(layer_grad, numerical_grad(objective, z)) < TOL
    assert relative_error(layer_grad, _expected_gradient(z_host, ROWS)) < 1e-14
    auto_grad = xn.grad(lambda z_: F.softmax_cross_entropy(z_, t))(z)
    assert relative_error(auto_grad, _expected_gradient(z_host, ROWS)) < 1e-14


def test_softmax_cross_entropy_second_order_uses_the_row_sums(device, rng):
    """The rule's recorded (differentiable) backward, used inside an outer grad, against the
    formula's value and the formula's own central differences."""
    z_host, v_host = host_rand(rng, 4, 4), host_rand(rng, 4, 4)
    z, t, v = xn.to_device(z_host), xn.to_device(ROWS), xn.to_device(v_host)
    f = lambda z_: F.softmax_cross_entropy(z_, t)
    value, hvp = xn.value_and_grad(lambda z_: (xn.grad(f)(z_) * v).sum())(z)
    assert abs(float(xn.to_host(value)) - (_expected_gradient(z_host, ROWS) * v_host).sum()) < 1e-14
    probe = z_host.copy()
    expected = numerical_grad(lambda: (_expected_gradient(probe, ROWS) * v_host).sum(), probe)
    assert relative_error(hvp, expected) < TOL


def test_one_hot_rows_give_the_index_labels_gradient_bit_for_bit(device, rng):
    """A guard for the fix above: a one-hot row sums to exactly 1, so nothing changes for it."""
    z = xn.to_device(host_rand(rng, 5, 3).astype(numpy.float32))
    labels = numpy.array([0, 2, 1, 1, 0])
    grads = []
    for t in (labels, numpy.eye(3, dtype=numpy.float32)[labels]):
        loss = xn.nn.SoftmaxCrossEntropy()
        loss(z, xn.to_device(t))
        grads.append(xn.to_host(loss.backward()).copy())
    numpy.testing.assert_array_equal(grads[0], grads[1])


# -- issue 25, case 13: C = 1 and "soft labels" outside [0, 1] are not classification ----------
def test_evaluate_of_a_regression_model_without_loss_fn_names_mean_squared_error(device):
    model = xn.nn.Sequential(xn.nn.Affine(3, 1))
    x, t = numpy.ones((4, 3), numpy.float32), numpy.full((4, 1), 5.0, numpy.float32)
    with pytest.raises(ValueError, match=r"loss_fn=MeanSquaredError\(\)"):
        xn.evaluate(model, (x, t))
    assert xn.evaluate(model, (x, t), loss_fn=xn.nn.MeanSquaredError())["accuracy"] is None


@pytest.mark.parametrize("call", ["layer", "functional"])
def test_softmax_cross_entropy_refuses_one_class(device, call):
    y, t = xn.to_device(numpy.zeros((3, 1))), xn.to_device(numpy.ones((3, 1)))
    fn = xn.nn.SoftmaxCrossEntropy() if call == "layer" else F.softmax_cross_entropy
    with pytest.raises(ValueError, match=r"C >= 2.*loss_fn=MeanSquaredError\(\)"):
        fn(y, t)


@pytest.mark.parametrize("bad", [-0.5, 3.0, numpy.nan])
def test_host_soft_labels_outside_0_1_are_refused_naming_mean_squared_error(bad):
    t = numpy.array([[0.0, 1.0], [bad, 0.5]])
    for fn in (xn.nn.SoftmaxCrossEntropy(), F.softmax_cross_entropy):
        with pytest.raises(ValueError, match=r"t\[1, 0\].*outside \[0, 1\].*loss_fn=MeanSquaredError\(\)"):
            fn(numpy.zeros((2, 2)), t)
    # evaluate refuses host data holding NaN up front, naming where it is
    match = r"t holds nan at position \(1, 0\)" if numpy.isnan(bad) else r"loss_fn=MeanSquaredError\(\)"
    with pytest.raises(ValueError, match=match):
        xn.evaluate(xn.nn.Sequential(xn.nn.Affine(3, 2)), (numpy.ones((2, 3), numpy.float32), t))


def test_soft_labels_outside_0_1_raise_on_the_host_and_are_nan_on_a_device(device):
    """On a device the labels are not read on the host (that would copy every step, and a
    recorded step refuses it): the bad sample's loss and gradient row are NaN instead."""
    z = xn.to_device(numpy.zeros((2, 2)))
    t = xn.to_device(numpy.array([[0.0, 1.0], [3.0, 0.0]]))
    loss = xn.nn.SoftmaxCrossEntropy()
    if device.kind == "cpu":
        with pytest.raises(ValueError, match=r"t\[1, 0\] = 3.0 is outside \[0, 1\]"):
            loss(z, t)
        return
    value = loss(z, t)
    g = xn.to_host(loss.backward())
    assert numpy.isnan(float(xn.to_host(value)))
    assert numpy.isnan(g[1]).all() and numpy.allclose(g[0], [0.25, -0.25])


# -- issue 25, case 20: one loss object used on two devices ------------------------------
@pytest.mark.parametrize("devices", [("sim", "cpu"), ("cpu", "sim"), ("sim:0", "sim:1")])
def test_one_loss_serves_one_device_then_another(devices, rng):
    z_host, t_host = host_rand(rng, 4, 3), numpy.array([0, 2, 1, 0])
    loss = xn.nn.SoftmaxCrossEntropy()
    results = []
    for name in devices:
        with xn.use_device(name) as dev:
            value = loss(xn.to_device(z_host, dev), xn.to_device(t_host, dev))
            g = loss.backward()
            assert xn.device_of(g) == dev
            results.append((float(xn.to_host(value)), xn.to_host(g)))
    assert results[0][0] == results[1][0]
    numpy.testing.assert_array_equal(results[0][1], results[1][1])


# -- issue 31, case 8: negative labels ------------------------------------------------------
@pytest.mark.parametrize("labels", [[0, -1], [0, 3]])
def test_functional_refuses_out_of_range_list_labels_on_every_device(device, labels):
    z = xn.to_device(numpy.zeros((2, 3)))
    with pytest.raises(ValueError, match=f"label {labels[1]} at position 1 is not a class index"):
        F.softmax_cross_entropy(z, labels)
    with pytest.raises(ValueError, match=f"label {labels[1]} at position 1"):
        xn.grad(lambda z_: F.softmax_cross_entropy(z_, labels))(z)


@pytest.mark.parametrize("labels", [[0, -1], [2, -3], [0, 3]])
def test_host_labels_out_of_range_are_refused_by_the_layer_and_the_functional(labels):
    z, t = numpy.zeros((2, 3)), numpy.array(labels)
    for fn in (xn.nn.SoftmaxCrossEntropy(), F.softmax_cross_entropy):
        with pytest.raises(ValueError, match=f"label {labels[1]} at position 1 is not a class index.*0..2"):
            fn(z, t)


@pytest.mark.parametrize("labels", [[0, -1], [0, 3], [0, -4]])
def test_labels_out_of_range_raise_on_the_host_and_give_nan_on_a_device(device, labels):
    """Labels on a device are checked on the device with no copy: the bad sample's loss and
    gradient row are NaN, never another class's."""
    z = xn.to_device(numpy.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]))
    t = xn.to_device(numpy.array(labels))
    if device.kind == "cpu":  # host arrays: reading them is free, so they are refused at once
        with pytest.raises(ValueError, match=f"label {labels[1]} at position 1"):
            xn.nn.SoftmaxCrossEntropy()(z, t)
        return
    before = xn.transfer_stats()
    loss = xn.nn.SoftmaxCrossEntropy()
    value, g = loss(z, t), loss.backward()
    f_value = F.softmax_cross_entropy(z, t)
    assert (xn.transfer_stats() - before).count == 0  # checked on the device, not read
    g = xn.to_host(g)
    assert numpy.isnan(float(xn.to_host(value))) and numpy.isnan(float(xn.to_host(f_value)))
    assert numpy.isnan(g[1]).all() and numpy.isfinite(g[0]).all()


def test_a_recorded_step_through_the_checked_loss_still_records_and_replays():
    """A guard: the device-side label check reads nothing on the host, so sim records it
    (a host read there would raise CaptureError)."""
    with xn.use_device("sim") as dev:
        xn.seed(0)
        model = xn.nn.Sequential(xn.nn.Affine(3, 4, dtype="float64"))
        loss = xn.nn.SoftmaxCrossEntropy()
        x = xn.to_device(numpy.ones((2, 3)))
        for t in (xn.to_device(numpy.array([0, 3])), xn.to_device(numpy.eye(4)[[1, 2]])):
            step = dev.backend.record(lambda t=t: loss(model(x), t), owners=(model, loss))
            first, again = float(xn.to_host(step())), float(xn.to_host(step()))
            assert first == again and numpy.isfinite(first)


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


# -- issue 31, case 26: wrong inputs to F.softmax_cross_entropy get messages ---------------
@pytest.mark.parametrize("z, t, error, message", [
    (numpy.zeros((2, 3)), numpy.array([0.0, 1.0]), xn.DTypeError, r"not class indices.*t\.astype\(int\)"),
    (numpy.zeros((2, 3)), [0.0, 1.0], xn.DTypeError, r"not class indices.*t\.astype\(int\)"),
    (numpy.zeros(3), numpy.array([1]), xn.ShapeError, r"must be \(N, C\), got shape \(3,\).*reshape\(1, -1\)"),
    (numpy.zeros((2, 3)), numpy.array(1), xn.ShapeError, r"t as integer class indices \(N,\)"),
    (numpy.zeros((2, 3)), numpy.zeros((2, 4)), xn.ShapeError, r"\(N, C\) = \(2, 3\)"),
    (numpy.zeros((2, 3)), numpy.array([0, 1, 2]), xn.ShapeError, "y has 2 samples but t has 3"),
    (numpy.zeros((2, 3), int), numpy.array([0, 1]), xn.DTypeError, "logits y must be floating point"),
    (numpy.zeros((2, 3)), 1, TypeError, "takes arrays z .* and t .*, got ndarray and int"),
])
def test_softmax_cross_entropy_input_errors_say_what_to_do(z, t, error, message):
    with pytest.raises(error, match=message):
        F.softmax_cross_entropy(z, t)


def test_list_labels_equal_array_labels(device, rng):
    z = xn.to_device(host_rand(rng, 3, 4))
    by_list = F.softmax_cross_entropy(z, [3, 0, 1])
    by_array = F.softmax_cross_entropy(z, xn.to_device(numpy.array([3, 0, 1])))
    assert float(xn.to_host(by_list)) == float(xn.to_host(by_array))


def test_the_loss_layer_names_a_zero_dimensional_label(device):
    with pytest.raises(xn.ShapeError, match="one sample per row"):
        xn.nn.SoftmaxCrossEntropy()(xn.to_device(numpy.zeros((2, 3))), xn.to_device(numpy.array(1)))


@pytest.mark.parametrize("loss", ["SoftmaxCrossEntropy", "MeanSquaredError", "softmax_cross_entropy",
                                  "mean_squared_error", "cross_entropy_error"])
def test_an_empty_batch_is_refused_by_name_not_divided_by_zero(loss, device):
    """A prober's finding (session 5): the losses raised a bare ZeroDivisionError (softmax
    cross-entropy; MeanSquaredError's backward) or returned NaN with a warning on 0 samples."""
    y = xn.to_device(numpy.zeros((0, 3), dtype=numpy.float32), device)
    t = xn.to_device(numpy.zeros(0, dtype=numpy.int64), device) if "softmax" in loss else y
    call = getattr(xn.nn, loss, None)
    call = call() if call is not None else getattr(F, loss)
    with pytest.raises(xn.ShapeError, match=rf"{loss}: got an empty batch \(y of shape \(0, 3\)\)"):
        call(y, t)
