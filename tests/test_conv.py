import numpy
import pytest

import xpnet as xn
from tests.helpers import host_rand
from tests.test_layers import _check_layer

CASES = {
    "conv_3x3": (lambda: xn.nn.Conv2D(2, 3, 3, dtype="float64"), (2, 2, 5, 5)),
    "conv_stride2_pad1": (lambda: xn.nn.Conv2D(2, 3, 3, stride=2, pad=1, dtype="float64"), (2, 2, 6, 5)),
    "conv_rect_kernel": (lambda: xn.nn.Conv2D(1, 2, (2, 3), pad=2, dtype="float64"), (1, 1, 4, 4)),
    "maxpool_2x2": (lambda: xn.nn.MaxPool2D(2, stride=2), (2, 3, 4, 6)),
    "maxpool_overlap_pad": (lambda: xn.nn.MaxPool2D(3, stride=2, pad=1), (1, 2, 5, 5)),
    "avgpool_2x2": (lambda: xn.nn.AvgPool2D(2, stride=2), (2, 3, 4, 4)),
    "avgpool_stride1": (lambda: xn.nn.AvgPool2D(2, stride=1), (1, 2, 3, 3)),
}


@pytest.mark.parametrize("name", CASES)
def test_conv_and_pool_backward_match_numerical_gradient(name, device, rng):
    make, shape = CASES[name]
    _check_layer(make(), host_rand(rng, *shape), rng, device)


def test_conv_matches_a_direct_convolution(device, rng):
    x = host_rand(rng, 2, 3, 7, 6)
    layer = xn.nn.Conv2D(3, 4, 3, stride=2, pad=1, dtype="float64")
    W, b = (xn.to_host(layer.params()[k]) for k in ("W", "b"))
    y = xn.to_host(layer(xn.to_device(x, device)))
    padded = numpy.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    direct = numpy.zeros_like(y)
    for i in range(y.shape[2]):
        for j in range(y.shape[3]):
            patch = padded[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
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


def test_simple_convnet_learns_on_a_small_slice(device):
    (x, t), (xt, tt) = xn.datasets.mnist(flatten=False)
    model = simple_convnet()
    history = xn.fit(model, xn.nn.SoftmaxCrossEntropy(), xn.optim.Adam(model, lr=0.001),
                     (x[:1500], t[:1500]), epochs=1, batch_size=50, validation=(xt[:500], tt[:500]), seed=0)
    assert numpy.mean(history.step_loss[-5:]) < 0.5 * numpy.mean(history.step_loss[:5])
    assert history.val_accuracy[-1] > 0.75  # chance is 0.10; a full run reaches 0.98+
