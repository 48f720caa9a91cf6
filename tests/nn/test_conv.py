import numpy
import pytest

import xpnet as xn
from tests.helpers import host_rand
from tests.nn.test_layers import _check_layer

CASES = {
    "conv_3x3": (lambda: xn.nn.Conv2D(2, 3, 3, dtype="float64"), (2, 2, 5, 5)),
    "conv_stride2_pad1": (lambda: xn.nn.Conv2D(2, 3, 3, stride=2, pad=1, dtype="float64"), (2, 2, 6, 5)),
    "conv_rect_kernel": (lambda: xn.nn.Conv2D(1, 2, (2, 3), pad=2, dtype="float64"), (1, 1, 4, 4)),
    "maxpool_2x2": (lambda: xn.nn.MaxPool2D(2, stride=2), (2, 3, 4, 6)),
    "maxpool_overlap_pad": (lambda: xn.nn.MaxPool2D(3, stride=2, pad=1), (1, 2, 5, 5)),
    "avgpool_2x2": (lambda: xn.nn.AvgPool2D(2, stride=2), (2, 3, 4, 4)),
    "avgpool_stride1": (lambda: xn.nn.AvgPool2D(2, stride=1), (1, 2, 3, 3)),
    "conv_stride_pad_pairs": (lambda: xn.nn.Conv2D(2, 2, (3, 2), stride=(2, 1), pad=(1, 0), dtype="float64"),
                              (2, 2, 5, 4)),
    "conv_1x1": (lambda: xn.nn.Conv2D(3, 2, 1, dtype="float64"), (2, 3, 3, 3)),
    # dW's product runs as cols @ dy.T where the columns' rows (C*kh*kw) outnumber the
    # filters (the cases above), else as dy @ cols.T: this one (routines/conv.py)
    "conv_more_filters_than_column_rows": (lambda: xn.nn.Conv2D(1, 12, 3, pad=1, dtype="float64"), (2, 1, 4, 4)),
    # a stride-1 input gradient runs as a convolution where its columns are about as large as
    # col2im's (this one), else as W.T @ dy and col2im (conv_3x3: unpadded, 5.8x larger)
    "conv_input_grad_as_convolution": (lambda: xn.nn.Conv2D(3, 2, 3, pad=1, dtype="float64"), (2, 3, 6, 6)),
    "maxpool_rect": (lambda: xn.nn.MaxPool2D((2, 3)), (2, 2, 4, 6)),
    "maxpool_uncovered_border": (lambda: xn.nn.MaxPool2D(2), (1, 2, 5, 5)),
    "maxpool_pad_pair": (lambda: xn.nn.MaxPool2D((2, 3), pad=(1, 1)), (1, 2, 4, 5)),
    "maxpool_overlap_rect_stride": (lambda: xn.nn.MaxPool2D(3, stride=(1, 2)), (1, 2, 5, 6)),
    "avgpool_pad": (lambda: xn.nn.AvgPool2D(3, stride=2, pad=1), (1, 2, 5, 5)),
    "avgpool_rect": (lambda: xn.nn.AvgPool2D((1, 2)), (2, 2, 3, 4)),
}


@pytest.mark.parametrize("name", CASES)
def test_conv_and_pool_backward_match_numerical_gradient(name, device, rng):
    make, shape = CASES[name]
    _check_layer(make(), host_rand(rng, *shape), rng, device)


@pytest.mark.parametrize("shapes, pad, convolution", [
    (((128, 32, 10, 10), (32, 16, 3, 3), (128, 16, 12, 12)), (0, 0), False),  # the speedrun's unpadded layer
    (((100, 16, 28, 28), (16, 16, 3, 3), (100, 16, 28, 28)), (1, 1), True),  # DeepConvNet's first 3x3 layers
    (((100, 32, 14, 14), (32, 16, 3, 3), (100, 16, 14, 14)), (1, 1), False),  # half the channels back
    (((2, 2, 8, 8), (2, 3, 3, 3), (2, 3, 4, 4)), (3, 3), False),  # padded past the kernel: never a convolution
])
def test_a_stride_1_input_gradient_runs_as_a_convolution_where_its_columns_are_not_larger(shapes, pad,
                                                                                         convolution):
    """routines/conv.py's ``input_grad_scatter_ratio``: the convolution's columns against
    col2im's, measured on the 2-core EPYC; None (cuda) takes the convolution wherever it can."""
    backend = xn.Device("cpu").backend
    assert backend._input_grad_by_convolution(*shapes, pad) is convolution
    backend = type(backend)()
    backend.input_grad_scatter_ratio = None
    assert backend._input_grad_by_convolution(*shapes, pad) is (pad[0] < 3)


@pytest.mark.parametrize("pad", [0, 1, 2])
def test_both_ways_of_a_stride_1_input_gradient_agree(pad, device, rng):
    """The input gradient as a convolution of dy and as W.T @ dy scattered by col2im: the
    same sums in another order."""
    backend = xn.Device(device).backend
    xp = backend.xp
    dy, W = (xp.asarray(host_rand(rng, *shape)) for shape in ((3, 4, 5 + 2 * pad - 2, 6 + 2 * pad - 2), (4, 2, 3, 3)))
    x_shape = (3, 2, 5, 6)
    ways = []
    for ratio in (None, 0.0):  # always the convolution, never
        backend.input_grad_scatter_ratio = ratio
        try:
            ways.append(xn.to_host(backend._input_grad(dy, W, x_shape, (1, 1), (pad, pad))))
        finally:
            del backend.input_grad_scatter_ratio
    assert ways[0].shape == x_shape
    numpy.testing.assert_allclose(ways[0], ways[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride, pad, filters", [(1, 1, 3), (1, 0, 8), (2, 1, 3)])  # convolution, scatter, col2im
def test_conv2d_backward_called_directly_takes_a_dout_of_another_dtype(stride, pad, filters, device, rng):
    """Both ways of the input gradient compute in the result dtype of W and dout (a float32
    or integer dout with float64 W raised ValueError from a product's out= on one way or the
    other); the layers always pass one dtype."""
    backend = xn.Device(device).backend
    x, W = (backend.xp.asarray(host_rand(rng, *shape)) for shape in ((2, 4, 8, 8), (filters, 4, 3, 3)))
    y, col = backend.conv2d(x, W, backend.xp.zeros(filters), (stride, stride), (pad, pad))
    dW, db = backend.xp.empty_like(W), backend.xp.empty(filters)
    for dtype in ("float32", "int64"):
        dout = y.astype(dtype)
        dx = backend.conv2d_backward(dout, col, W, x.shape, (stride, stride), (pad, pad), dW, db)
        assert dx.dtype == numpy.float64 and dx.shape == x.shape
        dout64 = dout.astype("float64")
        again = backend.conv2d_backward(dout64, col, W, x.shape, (stride, stride), (pad, pad), dW, db)
        numpy.testing.assert_array_equal(xn.to_host(dx), xn.to_host(again))


@pytest.mark.parametrize("stride", [1, 2])  # stride 1 gathers its columns over the padded width
def test_conv_matches_a_direct_convolution(stride, device, rng):
    x = host_rand(rng, 2, 3, 7, 6)
    layer = xn.nn.Conv2D(3, 4, 3, stride=stride, pad=1, dtype="float64")
    W, b = (xn.to_host(layer.params()[k]) for k in ("W", "b"))
    y = xn.to_host(layer(xn.to_device(x, device)))
    padded = numpy.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    direct = numpy.zeros_like(y)
    for i in range(y.shape[2]):
        for j in range(y.shape[3]):
            patch = padded[:, :, stride * i:stride * i + 3, stride * j:stride * j + 3]
            direct[:, :, i, j] = numpy.tensordot(patch, W, axes=([1, 2, 3], [1, 2, 3])) + b
    numpy.testing.assert_allclose(y, direct, rtol=1e-12, atol=1e-12)


def test_pooling_values(device):
    x = xn.to_device(numpy.arange(16.0).reshape(1, 1, 4, 4), device)
    assert xn.to_host(xn.nn.MaxPool2D(2)(x)).ravel().tolist() == [5, 7, 13, 15]
    assert xn.to_host(xn.nn.AvgPool2D(2)(x)).ravel().tolist() == [2.5, 4.5, 10.5, 12.5]


def test_conv_shape_errors_name_the_layer(device):
    with pytest.raises(xn.ShapeError, match=r"Conv2D 1->2 5x5.*\(4, 784\)"):
        xn.nn.Conv2D(1, 2, 5)(xn.xp.zeros((4, 784), dtype="float32"))
    with pytest.raises(xn.ShapeError, match="leaves no output"):
        xn.nn.Conv2D(1, 2, 5)(xn.xp.zeros((1, 1, 3, 3), dtype="float32"))


def simple_convnet(seed=0):
    xn.seed(seed)
    return xn.nn.Sequential(
        xn.nn.Conv2D(1, 30, 5), xn.nn.ReLU(), xn.nn.MaxPool2D(2, stride=2),
        xn.nn.Affine(30 * 12 * 12, 100), xn.nn.ReLU(), xn.nn.Affine(100, 10))


@pytest.mark.slow
@pytest.mark.mnist
def test_simple_convnet_learns_on_a_small_slice(device):
    (x, t), (xt, tt) = xn.datasets.mnist(flatten=False)
    model = simple_convnet()
    history = xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.Adam(model, lr=0.001),
                     (x[:1500], t[:1500]), epochs=1, batch_size=50, validation=(xt[:500], tt[:500]), seed=0)
    assert numpy.mean(history.step_loss[-5:]) < 0.5 * numpy.mean(history.step_loss[:5])
    assert history.val_accuracy[-1] > 0.75  # chance is 0.10; a full run reaches 0.98+


def test_max_pooling_routes_ties_to_the_first_maximum(device):
    """The book's argmax: a window of equal values sends its whole gradient to its first
    element (row-major), never to all of them."""
    layer = xn.nn.MaxPool2D(2)
    x = xn.to_device(numpy.array([[[[1.0, 1.0, 0.0, 2.0], [1.0, 1.0, 2.0, 2.0]]]]))
    layer(x)
    dx = xn.to_host(layer.backward(xn.to_device(numpy.array([[[[10.0, 20.0]]]]))))
    numpy.testing.assert_array_equal(dx[0, 0], [[10, 0, 0, 20], [0, 0, 0, 0]])


def test_conv_and_pool_take_any_input_layout(device, rng):
    """A transposed (non-contiguous) input gives the same outputs and gradients."""
    x = host_rand(rng, 2, 3, 6, 6)
    strided = xn.to_device(x.transpose(1, 0, 2, 3).copy()).transpose(1, 0, 2, 3)
    for make in (lambda: xn.nn.Conv2D(3, 2, 3, pad=1, dtype="float64"), lambda: xn.nn.MaxPool2D(2)):
        a, b = make(), make()
        b.set_params(xn.to_host(a.params()))
        ya, yb = a(xn.to_device(x)), b(strided)
        numpy.testing.assert_allclose(xn.to_host(ya), xn.to_host(yb), rtol=1e-12)
        dout = xn.to_device(host_rand(rng, *ya.shape))
        numpy.testing.assert_allclose(xn.to_host(a.backward(dout)), xn.to_host(b.backward(dout)), rtol=1e-12)


def test_maxpool_padding_larger_than_half_the_window_is_refused(device):
    with pytest.raises(ValueError, match="more than half the window"):
        xn.nn.MaxPool2D(2, pad=2)


# Conv2D [-> ReLU] -> MaxPool2D inside a Sequential runs as one stage (Backend.conv2d_maxpool)
# when the windows tile the convolution's output; these check it against the layers run
# one by one, alone, on the same weights and input.
FUSED = {
    "book": (lambda: [xn.nn.Conv2D(1, 4, 5, dtype="float64"), xn.nn.ReLU(), xn.nn.MaxPool2D(2)],
             (3, 1, 12, 12)),
    "no_relu_stride_pad_rect_pool": (
        lambda: [xn.nn.Conv2D(2, 3, 3, stride=2, pad=1, dtype="float64"), xn.nn.MaxPool2D((1, 3))],
        (2, 2, 5, 11)),
    "channels_rect_kernel": (
        lambda: [xn.nn.Conv2D(3, 2, (2, 3), pad=(1, 0), dtype="float64"), xn.nn.ReLU(), xn.nn.MaxPool2D(2)],
        (2, 3, 5, 6)),
    "window_of_272_places": (lambda: [xn.nn.Conv2D(1, 2, 3, dtype="float64"), xn.nn.MaxPool2D((16, 17))],
                             (2, 1, 18, 19)),
    "untiled_falls_back": (lambda: [xn.nn.Conv2D(1, 2, 3, dtype="float64"), xn.nn.ReLU(), xn.nn.MaxPool2D(2)],
                           (2, 1, 7, 7)),
}


def _one_by_one(layers, x, dout):
    for layer in layers:
        x = layer(x)
    y = x
    for layer in reversed(layers):
        dout = layer.backward(dout)
    return y, dout, layers[0].grads()


@pytest.mark.parametrize("ties", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("name", FUSED)
def test_conv_relu_maxpool_stage_equals_the_layers_one_by_one(name, ties, device, rng):
    """Same output, input gradient and weight gradients. With ``ties`` every product in a
    window is equal (constant input, constant weights), so the gradient must go to each
    window's first element, as MaxPool2D's does."""
    make, shape = FUSED[name]
    xn.seed(0)
    model = xn.nn.Sequential(*make(), xn.nn.Tanh(), input_grad=True)
    xn.seed(0)
    alone = make() + [xn.nn.Tanh()]
    x = numpy.full(shape, 0.5) if ties else host_rand(rng, *shape)
    if ties:
        for layers in (model.layers, alone):
            layers[0].set_params({"W": numpy.full(layers[0].params()["W"].shape, 0.25)})
    for _ in range(2):  # the second call runs on the stage's reused buffers
        y = model(xn.to_device(x))
        dout = host_rand(rng, *y.shape)
        dx = model.backward(xn.to_device(dout))
        y1, dx1, grads1 = _one_by_one(alone, xn.to_device(x), xn.to_device(dout))
        numpy.testing.assert_allclose(xn.to_host(y), xn.to_host(y1), rtol=1e-12, atol=1e-12)
        numpy.testing.assert_allclose(xn.to_host(dx), xn.to_host(dx1), rtol=1e-12, atol=1e-12)
        for k, g in model.layers[0].grads().items():
            numpy.testing.assert_allclose(xn.to_host(g), xn.to_host(grads1[k]), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in FUSED if n != "window_of_272_places"])  # slow: 272 products a call
def test_conv_relu_maxpool_stage_gradients_match_numerical(name, device, rng):
    make, shape = FUSED[name]
    model = xn.nn.Sequential(*make(), input_grad=True)
    errors = xn.testing.check_gradients(model, host_rand(rng, *shape))
    assert set(errors) == {"0.W", "0.b", "input"}


@pytest.mark.parametrize("name", FUSED)
def test_sequential_takes_the_stage_where_the_windows_tile_the_output(name, device, rng):
    make, shape = FUSED[name]
    model = xn.nn.Sequential(*make(), xn.nn.Tanh())
    model(xn.to_device(host_rand(rng, *shape)))
    ran = [type(stage).__name__ for _, _, stage in model._ran]
    if name == "untiled_falls_back":
        assert ran == ["Conv2D", "ReLU", "MaxPool2D", "Tanh"]
    else:
        assert ran == ["_ConvMaxPool", "Tanh"]


def test_a_pooling_changed_after_the_sequential_was_built_is_run_as_it_now_is(device, rng):
    """The stage is chosen when the Sequential is built; a MaxPool2D given an overlapping
    stride afterwards must not be pooled as if it had none."""
    make, shape = FUSED["book"]
    xn.seed(0)
    model = xn.nn.Sequential(*make())
    xn.seed(0)
    alone = make()
    for layers in (model.layers, alone):
        layers[2].stride = (1, 1)
    x = xn.to_device(host_rand(rng, *shape))
    y, expected = model(x), x
    for layer in alone:
        expected = layer(expected)
    assert y.shape == expected.shape == (3, 4, 7, 7)
    numpy.testing.assert_allclose(xn.to_host(y), xn.to_host(expected), rtol=1e-12)


def test_a_conv_relu_maxpool_stage_takes_an_empty_batch(device):
    """The stage split its columns with reshape(places, -1, 0), which an empty batch cannot
    take (ValueError): now y and dx are empty, and dW and db zero, as for the layers alone."""
    xn.seed(0)
    model = xn.nn.Sequential(xn.nn.Conv2D(3, 4, 3), xn.nn.ReLU(), xn.nn.MaxPool2D(2), input_grad=True)
    y = model(xn.to_device(numpy.zeros((0, 3, 14, 14), numpy.float32)))
    assert y.shape == (0, 4, 6, 6)
    dx = model.backward(xn.to_device(numpy.zeros((0, 4, 6, 6), numpy.float32)))
    assert dx.shape == (0, 3, 14, 14)
    for name, g in xn.to_host(model.grads()).items():
        assert not numpy.any(g), name
